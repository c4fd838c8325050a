//! Deletion bitmaps: which ordinals of a segment are dead (deleted or overwritten later).
//! A bitmap file is written once, under a new generation number, and named by the manifest;
//! `docs/format.md`, "Deletion bitmap".

use std::path::Path;

use strata_wal::io::SharedFs;

use super::bitset::Bitset;
use super::format::le_u32;
use crate::files::write_durably;
use crate::{Error, Result};

/// Magic of a deletion bitmap file.
pub const DELETES_MAGIC: [u8; 8] = *b"STRATDEL";
/// Layout version.
pub const DELETES_FORMAT_VERSION: u32 = 1;

/// Encode: magic, version u32, ordinal count u32, bitset words (LE), crc u32 of all before.
pub(crate) fn encode(b: &Bitset) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&DELETES_MAGIC);
    out.extend_from_slice(&DELETES_FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
    out.extend_from_slice(&b.to_le_bytes());
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// Decode and verify against the segment's document count.
pub(crate) fn decode(bytes: &[u8], n: usize) -> std::result::Result<Bitset, String> {
    let (body, crc) = bytes
        .split_last_chunk::<4>()
        .ok_or("shorter than its checksum")?;
    if crc32fast::hash(body) != u32::from_le_bytes(*crc) {
        return Err("checksum mismatch".into());
    }
    if body.get(..8) != Some(&DELETES_MAGIC[..]) {
        return Err("bad magic".into());
    }
    if le_u32(body, 8) != Some(DELETES_FORMAT_VERSION) {
        return Err("unsupported version".into());
    }
    if le_u32(body, 12) != Some(n as u32) {
        return Err(format!(
            "covers a different number of documents than the segment ({n})"
        ));
    }
    let words = body.get(16..).unwrap_or_default();
    if words.len() != n.div_ceil(64) * 8 {
        return Err("bitset length mismatch".into());
    }
    let b = Bitset::from_le_bytes(words, n);
    if b.to_le_bytes() != words {
        return Err("bits set past the document count".into());
    }
    Ok(b)
}

pub(crate) fn write(fs: &SharedFs, path: &Path, b: &Bitset) -> Result<()> {
    write_durably(fs, path, &encode(b))
}

pub(crate) fn read(fs: &SharedFs, path: &Path, n: usize) -> Result<Bitset> {
    let f = fs
        .open(path, false)
        .map_err(|e| Error::io("open", path, e))?;
    let bytes = f
        .read_all((n as u64 / 8) + 1024)
        .map_err(|e| Error::io("read", path, e))?;
    decode(&bytes, n).map_err(|reason| Error::Corruption {
        what: "deletion bitmap",
        path: path.to_owned(),
        reason,
    })
}
