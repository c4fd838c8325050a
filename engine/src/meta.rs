//! The `SCHEMA` file (`docs/format.md`, "SCHEMA"): magic, version, the schema, CRC-32 trailer.
//! Written once by `Db::create` (temp file, fsync, rename, directory fsync).

use std::path::Path;

use strata_wal::io::SharedFs;

use crate::{Error, Metric, Result, Schema};

/// Magic of the schema file.
pub const SCHEMA_MAGIC: [u8; 8] = *b"STRATSCH";
/// Version of the schema file layout.
pub const SCHEMA_FORMAT_VERSION: u32 = 1;
/// File name inside the database directory.
pub const SCHEMA_FILE: &str = "SCHEMA";

/// Encode: magic, version u32, dim u32, metric u8, attr count u16, (u16 len, bytes)*, crc u32
/// over everything before it.
pub fn encode_schema(s: &Schema) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&SCHEMA_MAGIC);
    out.extend_from_slice(&SCHEMA_FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&s.dim.to_le_bytes());
    out.push(s.metric.code());
    out.extend_from_slice(&(s.attrs.len() as u16).to_le_bytes());
    for a in &s.attrs {
        out.extend_from_slice(&(a.len() as u16).to_le_bytes());
        out.extend_from_slice(a.as_bytes());
    }
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// Decode and verify (checksum first, then every field and the schema's own bounds).
pub fn decode_schema(b: &[u8]) -> std::result::Result<Schema, String> {
    let (body, crc) = b
        .split_last_chunk::<4>()
        .ok_or("file shorter than its checksum")?;
    if crc32fast::hash(body) != u32::from_le_bytes(*crc) {
        return Err("checksum mismatch".into());
    }
    let magic = body.get(0..8).ok_or("file shorter than its magic")?;
    if magic != SCHEMA_MAGIC {
        return Err("bad magic: not a Strata schema file".into());
    }
    let rd32 = |at: usize| -> std::result::Result<u32, String> {
        Ok(u32::from_le_bytes(
            body.get(at..at + 4)
                .and_then(|s| s.try_into().ok())
                .ok_or("truncated")?,
        ))
    };
    let rd16 = |at: usize| -> std::result::Result<u16, String> {
        Ok(u16::from_le_bytes(
            body.get(at..at + 2)
                .and_then(|s| s.try_into().ok())
                .ok_or("truncated")?,
        ))
    };
    let version = rd32(8)?;
    if version != SCHEMA_FORMAT_VERSION {
        return Err(format!("unsupported schema format version {version}"));
    }
    let dim = rd32(12)?;
    let metric = body
        .get(16)
        .copied()
        .and_then(Metric::from_code)
        .ok_or("bad metric code")?;
    let n = rd16(17)? as usize;
    let mut at = 19;
    let mut attrs = Vec::new();
    for _ in 0..n {
        let len = rd16(at)? as usize;
        let name = body
            .get(at + 2..at + 2 + len)
            .ok_or("truncated attribute")?;
        attrs.push(String::from_utf8(name.to_vec()).map_err(|_| "attribute not UTF-8")?);
        at += 2 + len;
    }
    if at != body.len() {
        return Err("trailing bytes".into());
    }
    let s = Schema { dim, metric, attrs };
    s.validate().map_err(|e| e.to_string())?;
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
    decode_schema(&bytes).map_err(|reason| Error::Corruption {
        what: "schema file",
        path,
        reason,
    })
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
