//! Options of a log and their bounds.

use std::time::Duration;

use crate::format::{FILE_HEADER_BYTES, RECORD_BYTES_LIMIT, RECORD_HEADER_BYTES};
use crate::{Error, Lsn, Result};

/// When an append is acknowledged. See `docs/durability.md`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SyncMode {
    /// Acknowledge after the fdatasync that covers the record (group commit). Survives power loss.
    #[default]
    Always,
    /// Acknowledge once the record is written to the OS (survives a process crash); a background
    /// thread fdatasyncs at most this long after a write, bounding what power loss can take.
    Batch(Duration),
    /// Acknowledge once written to the OS; fdatasync only on rotation, `sync()` and close.
    Never,
}

/// What recovery does with bad bytes at the end of the newest log file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RecoveryMode {
    /// A torn last record (an interrupted write: it runs past the end of the file or has a
    /// sector of zeros, and no valid record follows) is cut (its bytes saved to `lost+found`)
    /// and appending resumes there. Any other bad byte past the checkpoint is a hard error
    /// (`docs/durability.md`, "What recovery cuts").
    #[default]
    TolerateCorruptTail,
    /// Any bad byte is a hard error (for verification tools).
    Strict,
    /// Explicit repair: the first damage in the records past the checkpoint (a damaged tail
    /// frame, a bad frame with valid ones after it, a gap between files) and everything after
    /// it is set aside — bytes copied to `lost+found` before the file is cut there, later
    /// files moved there whole — and reported in [`crate::Recovery`]. Never the default.
    SetAside,
}

/// Smallest allowed `segment_bytes_max`.
pub const SEGMENT_BYTES_MIN: u64 = 4096;
/// Largest allowed `segment_bytes_max` (1 GiB).
pub const SEGMENT_BYTES_LIMIT: u64 = 1 << 30;
/// Longest allowed `Batch` window.
pub const BATCH_WINDOW_MAX: Duration = Duration::from_secs(60);

/// Options of [`crate::Wal::open`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// Durability of appends. Default: [`SyncMode::Always`].
    pub sync: SyncMode,
    /// A log file is rotated before it would grow past this many bytes. Default 64 MiB.
    pub segment_bytes_max: u64,
    /// Largest payload accepted by `append`. Default 8 MiB.
    pub record_bytes_max: u32,
    /// Tail handling at open. Default: [`RecoveryMode::TolerateCorruptTail`].
    pub recovery: RecoveryMode,
    /// Keep a zero-filled, fsynced spare log file ready (background thread) so appends overwrite
    /// allocated bytes and fdatasync commits no metadata. Default true.
    pub preallocate: bool,
    /// Every record with LSN <= this is durable elsewhere (the caller's checkpoint, e.g. the
    /// database manifest). Damage at or below it loses nothing and is not an error, and the
    /// next LSN handed out is at least this + 1 even when the log lost its tail or its files.
    /// Default 0.
    pub checkpoint_lsn: Lsn,
    /// Highest record kind the reader understands; unknown kinds above it fail unless ignorable
    /// (>= 128), which are skipped. Default 255 (every kind is passed to the caller).
    pub known_kinds_max: u8,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            sync: SyncMode::Always,
            segment_bytes_max: 64 << 20,
            record_bytes_max: 8 << 20,
            recovery: RecoveryMode::TolerateCorruptTail,
            preallocate: true,
            checkpoint_lsn: 0,
            known_kinds_max: u8::MAX,
        }
    }
}

impl Options {
    /// Check the bounds; every violation is an [`Error::InvalidOptions`].
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::InvalidOptions(m));
        if !(SEGMENT_BYTES_MIN..=SEGMENT_BYTES_LIMIT).contains(&self.segment_bytes_max) {
            return bad(format!(
                "segment_bytes_max {} outside {SEGMENT_BYTES_MIN}..={SEGMENT_BYTES_LIMIT}",
                self.segment_bytes_max
            ));
        }
        if self.record_bytes_max == 0 || self.record_bytes_max > RECORD_BYTES_LIMIT {
            return bad(format!(
                "record_bytes_max {} outside 1..={RECORD_BYTES_LIMIT}",
                self.record_bytes_max
            ));
        }
        let largest_file =
            (FILE_HEADER_BYTES + RECORD_HEADER_BYTES) as u64 + u64::from(self.record_bytes_max);
        if largest_file > self.segment_bytes_max {
            return bad(format!(
                "record_bytes_max {} does not fit a {}-byte log file with its headers",
                self.record_bytes_max, self.segment_bytes_max
            ));
        }
        if let SyncMode::Batch(w) = self.sync {
            if w.is_zero() || w > BATCH_WINDOW_MAX {
                return bad(format!(
                    "Batch window {w:?} outside (0, {BATCH_WINDOW_MAX:?}]"
                ));
            }
        }
        Ok(())
    }
}
