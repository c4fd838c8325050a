//! Per-chunk checksums of the vectors section (section kind 10, `docs/format.md`, "Vector
//! chunk checksums"): the vectors are most of a segment's bytes (65k × 768 f32 is 200 MB), and
//! one CRC over the section made every open read all of them. With this section a reader
//! checks the presence bitset's chunks at open and every other chunk the first time a vector
//! in it is read (one bit per chunk remembers it); `Db::verify` checks every chunk and the
//! section's own table CRC. Segments written without it are verified whole at open, as before.

use std::sync::atomic::{AtomicU64, Ordering};

use super::format::{le_u32, le_u64};
use crate::DecodeError;

/// Layout version of the section.
pub(crate) const VERSION: u32 = 1;
/// Chunks of 64 KiB: 16 vectors of 1,024-d per check, 4 bytes of checksum per 64 KiB (an open
/// reads 0.006 % of the section).
pub(crate) const CHUNK_SHIFT: u32 = 16;
/// version u32, chunk shift u32, covered length u64.
const HEADER: usize = 16;

/// The section body for a vectors section `vectors`.
pub(crate) fn encode(vectors: &[u8]) -> Vec<u8> {
    let chunk = 1usize << CHUNK_SHIFT;
    let mut out = Vec::with_capacity(HEADER + vectors.len().div_ceil(chunk) * 4);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&CHUNK_SHIFT.to_le_bytes());
    out.extend_from_slice(&(vectors.len() as u64).to_le_bytes());
    for c in vectors.chunks(chunk) {
        out.extend_from_slice(&crc32fast::hash(c).to_le_bytes());
    }
    out
}

#[cfg(any(test, feature = "fuzzing"))]
/// Rewrite the checksums of `b[checks]` from `b[vectors]` (fuzzing: lets mutations of the
/// vectors reach the checks behind the checksums). Best effort on malformed input.
pub(crate) fn fix(b: &mut [u8], checks: (usize, usize), vectors: (usize, usize)) {
    let Some(src) = vectors
        .0
        .checked_add(vectors.1)
        .and_then(|end| b.get(vectors.0..end))
    else {
        return;
    };
    let body = encode(src);
    if let Some(dst) = b.get_mut(checks.0..checks.0.saturating_add(checks.1)) {
        if dst.len() == body.len() {
            dst.copy_from_slice(&body);
        }
    }
}

/// The parsed section: where the vectors section is, and a checksum per chunk of it.
#[derive(Debug)]
pub(crate) struct VectorChunks {
    /// File offset and length of the vectors section the checksums cover.
    at: usize,
    len: usize,
    shift: u32,
    crcs: Vec<u32>,
    /// One bit per chunk: checksum already matched.
    verified: Vec<AtomicU64>,
}

impl VectorChunks {
    /// Parse the section at `checks` of `b`, covering the vectors section at `vectors`.
    pub(crate) fn parse(
        b: &[u8],
        checks: (usize, usize),
        vectors: (usize, usize),
    ) -> Result<VectorChunks, DecodeError> {
        let body = checks
            .0
            .checked_add(checks.1)
            .and_then(|end| b.get(checks.0..end))
            .ok_or(DecodeError::invalid("vector chunk checksums out of bounds"))?;
        let version =
            le_u32(body, 0).ok_or(DecodeError::invalid("vector chunk checksums: short header"))?;
        if version != VERSION {
            return Err(DecodeError::Invalid(format!(
                "unsupported vector chunk checksum version {version}"
            )));
        }
        let shift =
            le_u32(body, 4).ok_or(DecodeError::invalid("vector chunk checksums: short header"))?;
        if !(12..=24).contains(&shift) {
            return Err(DecodeError::Invalid(format!(
                "vector chunk size 2^{shift} outside 2^12..=2^24"
            )));
        }
        let covered =
            le_u64(body, 8).ok_or(DecodeError::invalid("vector chunk checksums: short header"))?;
        if covered != vectors.1 as u64 {
            return Err(DecodeError::Invalid(format!(
                "vector chunk checksums cover {covered} bytes, the vectors section has {}",
                vectors.1
            )));
        }
        let chunks = vectors.1.div_ceil(1usize << shift);
        if body.len() != HEADER + chunks * 4 {
            return Err(DecodeError::Invalid(format!(
                "vector chunk checksums: {} bytes for {chunks} chunks",
                body.len()
            )));
        }
        let crcs = (0..chunks)
            .map(|c| {
                le_u32(body, HEADER + c * 4)
                    .ok_or(DecodeError::invalid("vector chunk checksums: short"))
            })
            .collect::<Result<Vec<u32>, _>>()?;
        Ok(VectorChunks {
            at: vectors.0,
            len: vectors.1,
            shift,
            crcs,
            verified: (0..chunks.div_ceil(64))
                .map(|_| AtomicU64::new(0))
                .collect(),
        })
    }

    /// Check every chunk overlapping file bytes `from..to` (within the vectors section) that
    /// has not been checked yet.
    pub(crate) fn check(&self, b: &[u8], from: usize, to: usize) -> Result<(), DecodeError> {
        if from < self.at || to > self.at + self.len || from > to {
            return Err(DecodeError::Invalid(format!(
                "bytes {from}..{to} outside the vectors section {}..{}",
                self.at,
                self.at + self.len
            )));
        }
        if from == to {
            return Ok(());
        }
        let first = (from - self.at) >> self.shift;
        let last = (to - 1 - self.at) >> self.shift;
        for c in first..=last {
            let (word, bit) = (c / 64, 1u64 << (c % 64));
            let w = self.verified.get(word);
            if w.is_some_and(|w| w.load(Ordering::Relaxed) & bit != 0) {
                continue;
            }
            let start = self.at + (c << self.shift);
            let end = (start + (1usize << self.shift)).min(self.at + self.len);
            let bytes = b
                .get(start..end)
                .ok_or_else(|| DecodeError::Invalid(format!("vector chunk {c} out of bounds")))?;
            if self.crcs.get(c) != Some(&crc32fast::hash(bytes)) {
                return Err(DecodeError::Invalid(format!(
                    "vector chunk {c} checksum mismatch"
                )));
            }
            if let Some(w) = w {
                w.fetch_or(bit, Ordering::Relaxed);
            }
        }
        Ok(())
    }

    /// Check every chunk.
    pub(crate) fn check_all(&self, b: &[u8]) -> Result<(), DecodeError> {
        self.check(b, self.at, self.at + self.len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(vectors: &[u8]) -> (Vec<u8>, (usize, usize), (usize, usize)) {
        let checks = encode(vectors);
        let mut b = vec![0u8; 8];
        b.extend_from_slice(vectors);
        let c_at = b.len();
        b.extend_from_slice(&checks);
        (b, (c_at, checks.len()), (8, vectors.len()))
    }

    #[test]
    fn a_flipped_byte_fails_its_chunk_only() {
        let v: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let (mut b, checks, vectors) = file(&v);
        let p = VectorChunks::parse(&b, checks, vectors).unwrap();
        p.check_all(&b).unwrap();
        // Chunk 1 damaged: a fresh reader fails there and nowhere else.
        let at = 8 + (1 << CHUNK_SHIFT) + 5;
        b[at] ^= 1;
        let p = VectorChunks::parse(&b, checks, vectors).unwrap();
        p.check(&b, 8, 8 + 100).unwrap();
        p.check(&b, 8 + 3 * (1 << CHUNK_SHIFT), 8 + v.len())
            .unwrap();
        let e = p.check(&b, at - 10, at + 10).unwrap_err();
        assert!(e.to_string().contains("chunk 1 checksum"), "{e}");
        assert!(p.check_all(&b).is_err());
        // A range that spans chunks 0..=2 includes the damage.
        assert!(p
            .check(&b, 8 + 10, 8 + 2 * (1 << CHUNK_SHIFT) + 10)
            .is_err());
        // Out of the section: refused, never a panic.
        assert!(p.check(&b, 0, 9).is_err());
        assert!(p.check(&b, 8, b.len()).is_err());
    }

    #[test]
    fn malformed_headers_are_errors() {
        let v = vec![3u8; 70_000];
        let (b, checks, vectors) = file(&v);
        let mut bad = b.clone();
        bad[checks.0] = 2; // version
        assert!(VectorChunks::parse(&bad, checks, vectors).is_err());
        let mut bad = b.clone();
        bad[checks.0 + 4] = 40; // chunk shift
        assert!(VectorChunks::parse(&bad, checks, vectors).is_err());
        // Covering another length, or a truncated list of checksums.
        assert!(VectorChunks::parse(&b, checks, (8, v.len() - 1)).is_err());
        assert!(VectorChunks::parse(&b, (checks.0, checks.1 - 4), vectors).is_err());
        assert!(VectorChunks::parse(&b, (checks.0, checks.1 + 4), vectors).is_err());
    }

    #[test]
    fn fix_rewrites_the_checksums() {
        let v = vec![9u8; 140_000];
        let (mut b, checks, vectors) = file(&v);
        b[8 + 100_000] = 1;
        assert!(VectorChunks::parse(&b, checks, vectors)
            .unwrap()
            .check_all(&b)
            .is_err());
        fix(&mut b, checks, vectors);
        VectorChunks::parse(&b, checks, vectors)
            .unwrap()
            .check_all(&b)
            .unwrap();
    }
}
