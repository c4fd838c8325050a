//! The file envelope shared by Strata's small whole files (MANIFEST, SCHEMA, deletion
//! bitmaps): `magic (8) | version u32 | body | CRC-32 u32` of everything before the CRC.
//! `docs/format.md` describes each body; this module owns the frame around it.

use crate::DecodeError;

/// Bytes of the envelope before the body (magic and version).
pub const HEAD_BYTES: usize = 12;
/// Bytes of the envelope after the body (the CRC).
pub const TAIL_BYTES: usize = 4;

/// The file: `magic`, `version`, `body`, then the CRC-32 of those.
pub fn seal(magic: &[u8; 8], version: u32, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEAD_BYTES + body.len() + TAIL_BYTES);
    out.extend_from_slice(magic);
    out.extend_from_slice(&version.to_le_bytes());
    out.extend_from_slice(body);
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// Verify `file` (checksum first, then magic, then that `versions` holds its version) and
/// return its version and body.
pub fn open<'a>(
    file: &'a [u8],
    magic: &[u8; 8],
    versions: &[u32],
) -> Result<(u32, &'a [u8]), DecodeError> {
    if file.len() < HEAD_BYTES + TAIL_BYTES {
        return Err(DecodeError::Truncated {
            at: 0,
            need: HEAD_BYTES + TAIL_BYTES,
        });
    }
    let (framed, crc) = file.split_last_chunk::<4>().ok_or(DecodeError::Truncated {
        at: 0,
        need: TAIL_BYTES,
    })?;
    if crc32fast::hash(framed) != u32::from_le_bytes(*crc) {
        return Err(DecodeError::Checksum);
    }
    if framed.get(..8) != Some(&magic[..]) {
        return Err(DecodeError::Magic);
    }
    let version = crate::le::u32_at(framed, 8).ok_or(DecodeError::Truncated { at: 8, need: 4 })?;
    if !versions.contains(&version) {
        return Err(DecodeError::Version(version));
    }
    Ok((version, framed.get(HEAD_BYTES..).unwrap_or_default()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAGIC: [u8; 8] = *b"TESTMAGC";

    #[test]
    fn a_sealed_body_opens_and_every_damage_is_named() {
        let f = seal(&MAGIC, 3, b"body");
        assert_eq!(f.len(), HEAD_BYTES + 4 + TAIL_BYTES);
        assert_eq!(open(&f, &MAGIC, &[2, 3]), Ok((3, &b"body"[..])));
        assert_eq!(open(&f, &MAGIC, &[1]), Err(DecodeError::Version(3)));
        assert_eq!(open(&f, b"OTHERMAG", &[3]), Err(DecodeError::Magic));
        for i in 0..f.len() {
            for bit in 0..8 {
                let mut g = f.clone();
                if let Some(x) = g.get_mut(i) {
                    *x ^= 1 << bit;
                }
                assert_eq!(
                    open(&g, &MAGIC, &[3]),
                    Err(DecodeError::Checksum),
                    "byte {i}"
                );
            }
        }
        for cut in 0..f.len() {
            assert!(open(f.get(..cut).unwrap_or_default(), &MAGIC, &[3]).is_err());
        }
        let empty = seal(&MAGIC, 1, b"");
        assert_eq!(open(&empty, &MAGIC, &[1]), Ok((1, &b""[..])));
    }
}
