//! The manifest: which segments (and deletion-bitmap generations) make up the database, and
//! the WAL position they cover. Each version is a whole file `MANIFEST-<n:016x>` written durably
//! (temp, fsync, rename, directory fsync); open reads the highest-numbered one. Older manifests,
//! and files no manifest names, are removed only after a newer manifest is durable.
//! `docs/format.md`, "Manifest".

use std::path::Path;

use strata_io::SharedFs;

pub use crate::files::MANIFEST_PREFIX;
use crate::files::{write_durably, FileType};
use crate::{DecodeError, Error, Result};
use strata_io::envelope;
use strata_io::le::Cursor;

/// Magic of a manifest file.
pub const MANIFEST_MAGIC: [u8; 8] = *b"STRATMAN";
/// Layout version written (v2: each segment's file length). Version 1 is still read.
pub const MANIFEST_FORMAT_VERSION: u32 = 2;

/// One live segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentMeta {
    /// Segment id (file `segments/<id:016x>.seg`); higher ids are newer.
    pub id: u64,
    /// Documents in the segment.
    pub doc_count: u32,
    /// Generation of its deletion bitmap (`segments/<id:016x>-<gen:08x>.del`), 0 = none.
    pub deletes_gen: u32,
    /// Length of the segment file, checked before it is mapped (`None`: a version 1
    /// manifest, which did not record it).
    pub file_bytes: Option<u64>,
}

/// The content of a manifest.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Manifest {
    /// Number of this manifest (its file name).
    pub number: u64,
    /// Next segment id to allocate.
    pub next_segment_id: u64,
    /// Every WAL record with LSN <= this is reflected in the segments.
    pub checkpoint_lsn: u64,
    /// Live segments, oldest first.
    pub segments: Vec<SegmentMeta>,
}

/// File name of manifest `n` ([`FileType::Manifest`]).
pub fn manifest_name(n: u64) -> String {
    FileType::Manifest { number: n }.file_name()
}

/// Segment file name ([`FileType::Segment`]).
pub fn segment_name(id: u64) -> String {
    FileType::Segment { id }.file_name()
}

/// Deletion bitmap file name ([`FileType::Deletes`]).
pub fn deletes_name(id: u64, gen: u32) -> String {
    FileType::Deletes { id, gen }.file_name()
}

/// The number of a manifest file name (`MANIFEST-<n:016x>`), if `name` is one.
pub(crate) fn parse_manifest_name(name: &str) -> Option<u64> {
    match FileType::parse(name)? {
        FileType::Manifest { number } => Some(number),
        _ => None,
    }
}

/// The number of the newest manifest file in `dir` (`None`: no manifest).
pub(crate) fn latest_number(fs: &SharedFs, dir: &Path) -> Result<Option<u64>> {
    let names = fs
        .list_dir(dir)
        .map_err(|e| Error::io("list directory", dir, e))?;
    Ok(names.iter().filter_map(|n| parse_manifest_name(n)).max())
}

impl Manifest {
    /// The manifest of a new database: number 0, no segments, segment ids from 1.
    pub fn empty() -> Manifest {
        Manifest {
            number: 0,
            next_segment_id: 1,
            checkpoint_lsn: 0,
            segments: Vec::new(),
        }
    }

    /// Names of the segment-directory files this manifest keeps alive: every segment and its
    /// current deletion bitmap. Anything else there is an orphan.
    pub fn file_names(&self) -> std::collections::HashSet<String> {
        let mut names = std::collections::HashSet::new();
        for s in &self.segments {
            names.insert(segment_name(s.id));
            if s.deletes_gen > 0 {
                names.insert(deletes_name(s.id, s.deletes_gen));
            }
        }
        names
    }

    /// Encode (version 2): magic, version u32, number u64, next_segment_id u64, checkpoint
    /// u64, count u32, (id u64, doc_count u32, deletes_gen u32, file_bytes u64)*, crc u32 of
    /// everything before. A segment whose length is unknown is written with 0.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&self.number.to_le_bytes());
        out.extend_from_slice(&self.next_segment_id.to_le_bytes());
        out.extend_from_slice(&self.checkpoint_lsn.to_le_bytes());
        out.extend_from_slice(&(self.segments.len() as u32).to_le_bytes());
        for s in &self.segments {
            out.extend_from_slice(&s.id.to_le_bytes());
            out.extend_from_slice(&s.doc_count.to_le_bytes());
            out.extend_from_slice(&s.deletes_gen.to_le_bytes());
            out.extend_from_slice(&s.file_bytes.unwrap_or(0).to_le_bytes());
        }
        envelope::seal(&MANIFEST_MAGIC, MANIFEST_FORMAT_VERSION, &out)
    }

    /// Decode and verify (versions 1 and 2).
    pub fn decode(b: &[u8]) -> std::result::Result<Manifest, DecodeError> {
        let (version, body) = envelope::open(b, &MANIFEST_MAGIC, &[1, 2])?;
        let mut c = Cursor::new(body);
        let (number, next_segment_id, checkpoint_lsn) = (c.u64()?, c.u64()?, c.u64()?);
        let count = c.u32()? as usize;
        let entry = if version == 1 { 16 } else { 24 };
        if c.remaining() != count.saturating_mul(entry) {
            return Err(DecodeError::invalid(
                "length does not match the segment count",
            ));
        }
        let mut segments = Vec::with_capacity(count);
        for i in 0..count {
            let s = SegmentMeta {
                id: c.u64()?,
                doc_count: c.u32()?,
                deletes_gen: c.u32()?,
                file_bytes: match version {
                    1 => None,
                    _ => Some(c.u64()?).filter(|&n| n > 0),
                },
            };
            if s.id >= next_segment_id
                || segments.last().is_some_and(|p: &SegmentMeta| p.id >= s.id)
            {
                return Err(DecodeError::Invalid(format!(
                    "segment ids out of order at entry {i}"
                )));
            }
            segments.push(s);
        }
        Ok(Manifest {
            number,
            next_segment_id,
            checkpoint_lsn,
            segments,
        })
    }
}

/// The newest manifest in `dir`, or `None` for a database that never flushed.
pub(crate) fn read_latest(fs: &SharedFs, dir: &Path) -> Result<Option<Manifest>> {
    let Some(n) = latest_number(fs, dir)? else {
        return Ok(None);
    };
    let path = dir.join(manifest_name(n));
    let f = fs
        .open(&path, false)
        .map_err(|e| Error::io("open", &path, e))?;
    let bytes = f
        .read_all(64 << 20)
        .map_err(|e| Error::io("read", &path, e))?;
    let m = Manifest::decode(&bytes).map_err(|kind| Error::corruption("manifest", &path, kind))?;
    if m.number != n {
        return Err(Error::corrupt(
            "manifest",
            path,
            format!("file name says {n}, content says {}", m.number),
        ));
    }
    Ok(Some(m))
}

/// Write `m` durably as `MANIFEST-<m.number>`.
pub(crate) fn write(fs: &SharedFs, dir: &Path, m: &Manifest) -> Result<()> {
    write_durably(fs, &dir.join(manifest_name(m.number)), &m.encode())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_flips_detected() {
        let m = Manifest {
            number: 7,
            next_segment_id: 12,
            checkpoint_lsn: 99,
            segments: vec![
                SegmentMeta {
                    id: 3,
                    doc_count: 10,
                    deletes_gen: 0,
                    file_bytes: Some(4096),
                },
                SegmentMeta {
                    id: 11,
                    doc_count: 5,
                    deletes_gen: 2,
                    file_bytes: Some(123),
                },
            ],
        };
        let b = m.encode();
        assert_eq!(Manifest::decode(&b).unwrap(), m);
        for i in 0..b.len() {
            let mut c = b.clone();
            c[i] ^= 4;
            assert!(Manifest::decode(&c).is_err(), "byte {i}");
        }
    }
}
