//! The `SCHEMA` file (`docs/format.md`, "SCHEMA"): magic, version, the schema, CRC-32 trailer.
//! Written once by `Db::create` (temp file, fsync, rename, directory fsync).

use std::path::Path;

use strata_io::SharedFs;

use strata_io::envelope;
use strata_io::le::Cursor;

use crate::{DecodeError, Error, Metric, Result, Schema};

/// Magic of the schema file.
pub const SCHEMA_MAGIC: [u8; 8] = *b"STRATSCH";
/// Version of the schema file layout.
pub const SCHEMA_FORMAT_VERSION: u32 = 1;
pub use crate::files::SCHEMA_FILE;

/// Encode: the file envelope (magic, version u32, body, crc u32 over everything before it)
/// around dim u32, metric u8, attr count u16, (u16 len, bytes)*.
pub fn encode_schema(s: &Schema) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&s.dim.to_le_bytes());
    out.push(s.metric.code());
    out.extend_from_slice(&(s.attrs.len() as u16).to_le_bytes());
    for a in &s.attrs {
        out.extend_from_slice(&(a.len() as u16).to_le_bytes());
        out.extend_from_slice(a.as_bytes());
    }
    envelope::seal(&SCHEMA_MAGIC, SCHEMA_FORMAT_VERSION, &out)
}

/// Decode and verify (checksum first, then every field and the schema's own bounds).
pub fn decode_schema(b: &[u8]) -> std::result::Result<Schema, DecodeError> {
    let (_, body) = envelope::open(b, &SCHEMA_MAGIC, &[SCHEMA_FORMAT_VERSION])?;
    let mut c = Cursor::new(body);
    let dim = c.u32()?;
    let metric = Metric::from_code(c.u8()?).ok_or(DecodeError::invalid("bad metric code"))?;
    let n = c.u16()? as usize;
    let mut attrs = Vec::new();
    for _ in 0..n {
        let len = c.u16()? as usize;
        let name = c.take(len)?;
        attrs.push(
            String::from_utf8(name.to_vec())
                .map_err(|_| DecodeError::invalid("attribute not UTF-8"))?,
        );
    }
    if c.remaining() != 0 {
        return Err(DecodeError::invalid("trailing bytes"));
    }
    let s = Schema { dim, metric, attrs };
    s.validate()
        .map_err(|e| DecodeError::Invalid(e.to_string()))?;
    Ok(s)
}

/// Write the schema file durably.
pub(crate) fn write_schema(fs: &SharedFs, dir: &Path, s: &Schema) -> Result<()> {
    crate::files::write_durably(fs, &dir.join(SCHEMA_FILE), &encode_schema(s))
}

/// Read and verify the schema file.
pub(crate) fn read_schema(fs: &SharedFs, dir: &Path) -> Result<Schema> {
    let path = dir.join(SCHEMA_FILE);
    if !fs.exists(&path) {
        return Err(Error::NotFound(dir.to_owned()));
    }
    let f = fs
        .open(&path, false)
        .map_err(|e| Error::io("open", &path, e))?;
    let bytes = f
        .read_all(1 << 20)
        .map_err(|e| Error::io("read", &path, e))?;
    decode_schema(&bytes).map_err(|kind| Error::corruption("schema file", path, kind))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_every_flip_detected() {
        let s = Schema::new(384, Metric::Cosine)
            .with_attr("ts")
            .with_attr("likes");
        let b = encode_schema(&s);
        assert_eq!(decode_schema(&b).unwrap(), s);
        for i in 0..b.len() {
            for bit in 0..8 {
                let mut c = b.clone();
                c[i] ^= 1 << bit;
                assert!(decode_schema(&c).is_err(), "byte {i} bit {bit}");
            }
        }
        for cut in 0..b.len() {
            assert!(decode_schema(&b[..cut]).is_err());
        }
    }
}
