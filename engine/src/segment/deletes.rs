//! Deletion bitmaps: which ordinals of a segment are dead (deleted or overwritten later).
//! A bitmap file is written once, under a new generation number, and named by the manifest;
//! `docs/format.md`, "Deletion bitmap".

use std::path::Path;

use strata_io::SharedFs;

use crate::bitset::Bitset;
use crate::files::write_durably;
use crate::{DecodeError, Error, Result};
use strata_io::envelope;
use strata_io::le::Cursor;

/// Magic of a deletion bitmap file.
pub const DELETES_MAGIC: [u8; 8] = *b"STRATDEL";
/// Layout version.
pub const DELETES_FORMAT_VERSION: u32 = 1;

/// Encode: the file envelope (magic, version u32, body, crc u32 of all before) around the
/// ordinal count u32 and the bitset words (LE).
pub(crate) fn encode(b: &Bitset) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&(b.len() as u32).to_le_bytes());
    body.extend_from_slice(&b.to_le_bytes());
    envelope::seal(&DELETES_MAGIC, DELETES_FORMAT_VERSION, &body)
}

/// Decode and verify against the segment's document count.
pub(crate) fn decode(bytes: &[u8], n: usize) -> std::result::Result<Bitset, DecodeError> {
    let (_, body) = envelope::open(bytes, &DELETES_MAGIC, &[DELETES_FORMAT_VERSION])?;
    let mut c = Cursor::new(body);
    if c.u32()? as usize != n {
        return Err(DecodeError::Invalid(format!(
            "covers a different number of documents than the segment ({n})"
        )));
    }
    let words = c.rest();
    if words.len() != n.div_ceil(64) * 8 {
        return Err(DecodeError::invalid("bitset length mismatch"));
    }
    let b = Bitset::from_le_bytes(words, n);
    if b.to_le_bytes() != words {
        return Err(DecodeError::invalid("bits set past the document count"));
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
    decode(&bytes, n).map_err(|kind| Error::corruption("deletion bitmap", path, kind))
}
