//! The bytes of a log file (spec: `docs/format.md`, section "WAL").
//!
//! A log file is a 32-byte [`FileHeader`] followed by back-to-back record frames. A frame is a
//! 20-byte header (`crc`, `len`, `kind`, `flags`, `reserved`, `lsn`, little-endian) and `len`
//! payload bytes. `crc` is CRC-32 (IEEE polynomial, `crc32fast`) **seeded with the
//! file's random seed** over header bytes 4..20 and the payload, so a zeroed frame, or a frame
//! left over from another file, never validates.

use strata_io::le::{u32_at as le_u32, u64_at as le_u64, Cursor};
use strata_io::DecodeError;

use crate::Lsn;

/// First 8 bytes of every log file.
pub const FILE_MAGIC: [u8; 8] = *b"STRATWAL";
/// Version of the file header and frame layout written: 2 (frames end with
/// [`FRAME_TRAILER`]). Readers accept [`FORMAT_VERSION_MIN`]..=this, per file.
pub const FORMAT_VERSION: u32 = 2;
/// Oldest layout still read: 1 (frames without a trailer).
pub const FORMAT_VERSION_MIN: u32 = 1;
/// The last byte of every version-2 frame. A valid frame never ends in a zero byte, so a
/// frame whose last sector reads as zeros was cut short by an interrupted write, and a bit
/// flip (which leaves this byte non-zero) is told apart from a tear (`crate::looks_torn`).
pub const FRAME_TRAILER: u8 = 0xA5;
/// Bytes of the file header.
pub const FILE_HEADER_BYTES: usize = 32;
/// Bytes of a record frame header.
pub const RECORD_HEADER_BYTES: usize = 20;
/// Hard upper bound on a record payload whatever the options say (64 MiB).
pub const RECORD_BYTES_LIMIT: u32 = 64 << 20;

/// Kind byte of a record.
///
/// - `0` is invalid (a zeroed frame must never parse);
/// - `1..=127` must be understood: a reader that does not know one fails;
/// - `128..=255` are *ignorable*: a reader that does not know one skips it, so newer writers
///   can add optional records without breaking older readers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RecordKind(pub u8);

impl RecordKind {
    /// The generic application payload kind.
    pub const DATA: RecordKind = RecordKind(1);
    /// First ignorable kind.
    pub const IGNORABLE_MIN: u8 = 128;

    /// Whether readers that do not know this kind may skip it.
    pub fn is_ignorable(self) -> bool {
        self.0 >= Self::IGNORABLE_MIN
    }
}

/// The header at offset 0 of every log file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileHeader {
    /// Layout version of the file's frames ([`FORMAT_VERSION_MIN`]..=[`FORMAT_VERSION`]).
    pub version: u32,
    /// Seed of every record CRC in this file.
    pub crc_seed: u32,
    /// LSN of the first record this file holds (or would hold).
    pub first_lsn: Lsn,
}

impl FileHeader {
    /// Encode: magic, version u32, crc_seed u32, first_lsn u64, reserved u32 (0), crc u32 of
    /// bytes 0..28.
    pub fn encode(&self) -> [u8; FILE_HEADER_BYTES] {
        let mut b = [0u8; FILE_HEADER_BYTES];
        b[0..8].copy_from_slice(&FILE_MAGIC);
        b[8..12].copy_from_slice(&self.version.to_le_bytes());
        b[12..16].copy_from_slice(&self.crc_seed.to_le_bytes());
        b[16..24].copy_from_slice(&self.first_lsn.to_le_bytes());
        let crc = crc32fast::hash(&b[0..28]);
        b[28..32].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Decode and verify; the error says which check failed (the header is fixed-size: each
    /// field is read in order from its 32 bytes).
    pub fn decode(b: &[u8]) -> Result<FileHeader, DecodeError> {
        let h = b.get(..FILE_HEADER_BYTES).ok_or(DecodeError::Truncated {
            at: 0,
            need: FILE_HEADER_BYTES,
        })?;
        let mut c = Cursor::new(h);
        if c.take(8)? != FILE_MAGIC {
            return Err(DecodeError::Magic);
        }
        let stored = le_u32(h, 28).ok_or(DecodeError::Truncated { at: 28, need: 4 })?;
        let computed = crc32fast::hash(h.get(0..28).unwrap_or_default());
        if stored != computed {
            return Err(DecodeError::Checksum);
        }
        let version = c.u32()?;
        if !(FORMAT_VERSION_MIN..=FORMAT_VERSION).contains(&version) {
            return Err(DecodeError::Version(version));
        }
        let crc_seed = c.u32()?;
        let first_lsn = c.u64()?;
        if c.u32()? != 0 {
            return Err(DecodeError::invalid("reserved header field is not zero"));
        }
        Ok(FileHeader {
            version,
            crc_seed,
            first_lsn,
        })
    }
}

/// A decoded record borrowing its payload from the buffer it was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordRef<'a> {
    /// Log sequence number: 1 for the first record ever, +1 per record.
    pub lsn: Lsn,
    /// The record kind.
    pub kind: RecordKind,
    /// The payload bytes.
    pub payload: &'a [u8],
}

/// Outcome of decoding the frame at the start of a buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// A valid frame of `frame_bytes` total bytes.
    Valid {
        /// The record.
        record: RecordRef<'a>,
        /// Header, payload and trailer bytes.
        frame_bytes: usize,
    },
    /// The buffer ends before the frame does (a torn tail, or a corrupt length).
    Incomplete,
    /// The frame fails a check.
    Invalid(&'static str),
}

/// Append the frame of one record to `out` in the current layout ([`FORMAT_VERSION`]).
pub fn encode_record(out: &mut Vec<u8>, seed: u32, lsn: Lsn, kind: RecordKind, payload: &[u8]) {
    encode_frame(out, seed, lsn, kind, payload, FORMAT_VERSION);
}

/// Append the frame of one record in layout `version` (1: no trailer; tests of old files).
pub fn encode_frame(
    out: &mut Vec<u8>,
    seed: u32,
    lsn: Lsn,
    kind: RecordKind,
    payload: &[u8],
    version: u32,
) {
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    let mut h = [0u8; RECORD_HEADER_BYTES];
    h[4..8].copy_from_slice(&len.to_le_bytes());
    h[8] = kind.0;
    // h[9] flags, h[10..12] reserved: zero in version 1.
    h[12..20].copy_from_slice(&lsn.to_le_bytes());
    let mut hasher = crc32fast::Hasher::new_with_initial(seed);
    hasher.update(&h[4..]);
    hasher.update(payload);
    h[0..4].copy_from_slice(&hasher.finalize().to_le_bytes());
    out.extend_from_slice(&h);
    out.extend_from_slice(payload);
    if version >= 2 {
        out.push(FRAME_TRAILER);
    }
}

/// Bytes after the payload of a frame in layout `version`.
pub fn trailer_bytes(version: u32) -> usize {
    usize::from(version >= 2)
}

/// Total frame bytes of a payload of `len` bytes, in the current layout.
pub fn frame_bytes(len: usize) -> usize {
    RECORD_HEADER_BYTES + len + trailer_bytes(FORMAT_VERSION)
}

/// Decode the frame at the start of `b` in the current layout; see [`decode_frame`].
pub fn decode_record(b: &[u8], seed: u32) -> Frame<'_> {
    decode_frame(b, seed, FORMAT_VERSION)
}

/// Decode the frame at the start of `b`, in layout `version`. Nothing is trusted before the
/// CRC matches, except that `len` is bounded by [`RECORD_BYTES_LIMIT`] and by the bytes present.
pub fn decode_frame(b: &[u8], seed: u32, version: u32) -> Frame<'_> {
    let Some(h) = b.get(..RECORD_HEADER_BYTES) else {
        return Frame::Incomplete;
    };
    let (Some(stored), Some(len), Some(lsn)) = (le_u32(h, 0), le_u32(h, 4), le_u64(h, 12)) else {
        return Frame::Incomplete;
    };
    let kind = h.get(8).copied().unwrap_or(0);
    if kind == 0 {
        return Frame::Invalid("record kind 0 (zeroed or unwritten bytes)");
    }
    if h.get(9..12) != Some(&[0, 0, 0][..]) {
        return Frame::Invalid("non-zero flags or reserved bytes");
    }
    if len > RECORD_BYTES_LIMIT {
        return Frame::Invalid("length exceeds the record size limit");
    }
    let body = RECORD_HEADER_BYTES + len as usize;
    let total = body + trailer_bytes(version);
    let Some(payload) = b.get(RECORD_HEADER_BYTES..body) else {
        return Frame::Incomplete;
    };
    if version >= 2 {
        match b.get(body) {
            None => return Frame::Incomplete,
            Some(&t) if t != FRAME_TRAILER => return Frame::Invalid("bad frame trailer"),
            Some(_) => {}
        }
    }
    let mut hasher = crc32fast::Hasher::new_with_initial(seed);
    hasher.update(h.get(4..).unwrap_or_default());
    hasher.update(payload);
    if hasher.finalize() != stored {
        return Frame::Invalid("record checksum mismatch");
    }
    Frame::Valid {
        record: RecordRef {
            lsn,
            kind: RecordKind(kind),
            payload,
        },
        frame_bytes: total,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip_and_checks() {
        let h = FileHeader {
            version: FORMAT_VERSION,
            crc_seed: 0xdead_beef,
            first_lsn: 42,
        };
        let b = h.encode();
        assert_eq!(FileHeader::decode(&b), Ok(h));
        assert!(FileHeader::decode(&[0u8; 32]).is_err());
        assert!(FileHeader::decode(&b[..31]).is_err());
        for i in 0..32 {
            let mut c = b;
            c[i] ^= 0x10;
            assert!(
                FileHeader::decode(&c).is_err(),
                "flip in byte {i} undetected"
            );
        }
    }

    #[test]
    fn zeroed_frame_never_validates() {
        for seed in [0u32, 1, 0xffff_ffff] {
            assert!(matches!(decode_record(&[0u8; 64], seed), Frame::Invalid(_)));
        }
    }

    #[test]
    fn frame_from_another_seed_is_rejected() {
        let mut out = Vec::new();
        encode_record(&mut out, 7, 1, RecordKind::DATA, b"payload");
        assert!(matches!(decode_record(&out, 7), Frame::Valid { .. }));
        assert_eq!(
            decode_record(&out, 8),
            Frame::Invalid("record checksum mismatch")
        );
        assert_eq!(decode_record(&out[..out.len() - 1], 7), Frame::Incomplete);
    }
}
