//! What is wrong with the end of a log, and whether it can be an interrupted write.
//!
//! After a crash the newest log file may end in a *torn* frame: a write the OS had not made
//! durable, of which only a prefix (in whole sectors, in any order on some devices) reached the
//! disk. Such a record was never acknowledged under [`crate::SyncMode::Always`], so recovery
//! cuts it. Any other bad frame — a complete frame whose checksum fails with every sector
//! written, a bad frame followed by a valid one, a bad file header — is *damage* to bytes that
//! were once written, possibly acknowledged: recovery reports it and cuts nothing unless asked
//! to set it aside (`RecoveryMode::SetAside`), or unless every record at or after it is covered by
//! the caller's checkpoint (`Options::checkpoint_lsn`). The rule is in `docs/durability.md`.

use std::path::{Path, PathBuf};

use crate::format::{trailer_bytes, RECORD_BYTES_LIMIT, RECORD_HEADER_BYTES};
use crate::{Error, Lsn, Result};
use strata_io::SharedFs;

/// The sector a torn write is cut at (the smallest unit a disk writes atomically).
pub const TORN_SECTOR_BYTES: usize = 512;

/// Directory inside the log directory that receives bytes recovery cut off.
pub const LOST_FOUND_DIR: &str = "lost+found";

/// How a bad tail looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TailKind {
    /// An interrupted write: the frame runs past the end of the file, or a sector of it reads
    /// as zeros (never written). Expected after a crash; the record was not acknowledged.
    Torn,
    /// A written frame fails its checks (every sector present), or a bad frame is followed by
    /// a valid one, or a file header is bad: damage to bytes that were once durable.
    Damaged,
}

/// A bad stretch at the end of the readable log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TailReport {
    /// The log file.
    pub path: PathBuf,
    /// Offset of the first bad byte range (the frame that fails).
    pub offset: u64,
    /// LSN the bad frame should have carried: the first record not readable.
    pub lsn: Lsn,
    /// Bytes from `offset` to the last non-zero byte of the file (what a cut drops).
    pub bytes: u64,
    /// Torn write or damage.
    pub kind: TailKind,
    /// Whether every record from `lsn` on is covered by the checkpoint (nothing is lost).
    pub covered: bool,
    /// What check failed.
    pub reason: String,
    /// Where the cut bytes were saved, when recovery cut them.
    pub saved_to: Option<PathBuf>,
}

impl std::fmt::Display for TailReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = match self.kind {
            TailKind::Torn => "torn write (interrupted, never acknowledged)",
            TailKind::Damaged => "damaged record",
        };
        write!(
            f,
            "{} at offset {} (LSN {}): {what}: {}; {} byte(s) from there",
            self.path.display(),
            self.offset,
            self.lsn,
            self.reason,
            self.bytes
        )?;
        if self.covered {
            write!(
                f,
                "; every record from LSN {} on is in the segments",
                self.lsn
            )?;
        }
        if let Some(p) = &self.saved_to {
            write!(f, "; cut bytes saved to {}", p.display())?;
        }
        Ok(())
    }
}

/// Whether the bad frame at `offset` of `buf` (a whole log file in layout `version`) looks like
/// an interrupted write. Log files are zero-filled or extended before records land in them, so
/// a sector the write never reached reads as zeros.
///
/// - Any layout: the frame's declared length runs past the end of the file (a length field
///   that is itself implausible makes the frame span to the end of the file).
/// - Version 2 (frames end with a non-zero trailer): the frame's last sector — its part inside
///   the frame — reads as zeros (a tear in order), or a whole 512-byte sector inside the frame
///   does (sectors that reached the disk out of order). A flipped bit leaves the trailer
///   non-zero, so it is never taken for the first case.
/// - Version 1 (no trailer): any sector's part inside the frame reads as zeros — which a record
///   whose last bytes after a sector boundary are zeros also matches when a bit flips
///   elsewhere in it (the reason for the trailer).
pub fn looks_torn(buf: &[u8], offset: usize, version: u32) -> bool {
    let Some(rest) = buf.get(offset..) else {
        return false;
    };
    let len = rest
        .get(4..8)
        .and_then(|b| b.try_into().ok())
        .map(u32::from_le_bytes);
    let end = match len {
        // The header itself is cut short by the end of the file.
        None => return true,
        Some(len) if len <= RECORD_BYTES_LIMIT => {
            let end = offset + RECORD_HEADER_BYTES + len as usize + trailer_bytes(version);
            if end > buf.len() {
                return true;
            }
            end
        }
        Some(_) => buf.len(),
    };
    let zeros = |a: usize, b: usize| buf.get(a..b).is_some_and(|s| s.iter().all(|&x| x == 0));
    let mut start = offset;
    while start < end {
        let sector_end = ((start / TORN_SECTOR_BYTES) + 1) * TORN_SECTOR_BYTES;
        let stop = sector_end.min(end);
        let whole = stop - start == TORN_SECTOR_BYTES;
        let last = stop == end;
        let counts = version < 2 || whole || last;
        if counts && zeros(start, stop) {
            return true;
        }
        start = stop;
    }
    false
}

/// Bytes of `buf` from `offset` to its last non-zero byte.
pub(crate) fn meaningful_bytes(buf: &[u8], offset: usize) -> &[u8] {
    let rest = buf.get(offset..).unwrap_or_default();
    let keep = rest.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    rest.get(..keep).unwrap_or_default()
}

/// A fresh path `dir/lost+found/<name>@<offset>[.n]` (the directory created durably): never
/// one that exists, so a later repair never replaces the evidence of an earlier one.
pub(crate) fn lost_found_path(
    fs: &SharedFs,
    dir: &Path,
    name: &str,
    offset: u64,
) -> Result<PathBuf> {
    let lost = dir.join(LOST_FOUND_DIR);
    strata_io::create_dir_durable(fs.as_ref(), &lost)
        .map_err(|e| Error::io("create directory", &lost, e))?;
    let mut path = lost.join(format!("{name}@{offset}"));
    let mut n = 1;
    while fs.exists(&path) {
        path = lost.join(format!("{name}@{offset}.{n}"));
        n += 1;
    }
    Ok(path)
}

/// Save `bytes` durably under [`lost_found_path`] before recovery cuts them, so a repair never
/// destroys evidence. Returns the path, or `None` when there is nothing to save.
pub(crate) fn save_aside(
    fs: &SharedFs,
    dir: &Path,
    name: &str,
    offset: u64,
    bytes: &[u8],
) -> Result<Option<PathBuf>> {
    if bytes.is_empty() {
        return Ok(None);
    }
    let path = lost_found_path(fs, dir, name, offset)?;
    let f = fs
        .create_new(&path)
        .map_err(|e| Error::io("create", &path, e))?;
    f.write_all_at(bytes, 0)
        .map_err(|e| Error::io("write", &path, e))?;
    f.sync_data()
        .map_err(|e| Error::io("fdatasync", &path, e))?;
    let lost = dir.join(LOST_FOUND_DIR);
    fs.sync_dir(&lost)
        .map_err(|e| Error::io("fsync directory", &lost, e))?;
    Ok(Some(path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::{encode_frame, RecordKind, FORMAT_VERSION};

    fn frame_v(len: usize, version: u32, zero_tail: usize) -> Vec<u8> {
        let mut out = vec![7u8; 32]; // a stand-in file header
        let mut payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8 | 1).collect();
        let n = payload.len();
        payload[n - zero_tail..].fill(0);
        encode_frame(&mut out, 9, 1, RecordKind::DATA, &payload, version);
        out
    }

    fn frame(len: usize) -> Vec<u8> {
        frame_v(len, FORMAT_VERSION, 0)
    }

    #[test]
    fn cut_or_unwritten_sectors_are_torn_flips_are_damage() {
        let f = frame(2000);
        // Cut inside the header, inside the payload: runs past the end.
        let v = FORMAT_VERSION;
        assert!(looks_torn(&f[..40], 32, v));
        assert!(looks_torn(&f[..1500], 32, v));
        // A prefix written up to a sector boundary, zeros after it (a zero-filled file).
        let mut z = f.clone();
        z[1024..].fill(0);
        assert!(looks_torn(&z, 32, v));
        // A middle sector never written (out-of-order persistence).
        let mut m = f.clone();
        m[512..1024].fill(0);
        assert!(looks_torn(&m, 32, v));
        // One flipped bit with every sector present: damage.
        for at in [33usize, 40, 600, 2000] {
            let mut d = f.clone();
            d[at] ^= 0x10;
            assert!(!looks_torn(&d, 32, v), "flip at {at}");
        }
    }

    #[test]
    fn the_trailer_tells_a_flip_in_a_zero_ended_record_from_a_tear() {
        // A record whose last 40 payload bytes are zeros, spanning a sector boundary 20 bytes
        // before its end: a flip elsewhere is damage in version 2, a tear in version 1.
        let len = 512 - 32 - 20 + 20 - 1; // frame ends 20 bytes past offset 512
        for (version, torn) in [(2, false), (1, true)] {
            let mut f = frame_v(len, version, 40);
            f[100] ^= 0x04;
            assert_eq!(looks_torn(&f, 32, version), torn, "version {version}");
        }
        // The same record really torn at 512: zeros from there (trailer included).
        let mut t = frame_v(len, 2, 40);
        t[512..].fill(0);
        assert!(looks_torn(&t, 32, 2));
    }

    #[test]
    fn meaningful_bytes_drop_trailing_zeros() {
        assert_eq!(meaningful_bytes(&[1, 2, 0, 3, 0, 0], 1), &[2, 0, 3]);
        assert!(meaningful_bytes(&[1, 0, 0], 1).is_empty());
        assert!(meaningful_bytes(&[1], 5).is_empty());
    }
}
