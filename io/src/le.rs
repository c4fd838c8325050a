//! Little-endian fields: the one vocabulary every Strata file format reads and writes its
//! integers with. [`Cursor`] reads fields in order (a decoder names each field as it reads
//! it instead of indexing literal offsets); the free functions read one field at an offset.

use crate::DecodeError;

/// The `u16` at `at`, if `b` holds it.
#[inline]
pub fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    let s = b.get(at..at.checked_add(2)?)?;
    Some(u16::from_le_bytes(s.try_into().ok()?))
}

/// The `u32` at `at`, if `b` holds it.
#[inline]
pub fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes(s.try_into().ok()?))
}

/// The `u64` at `at`, if `b` holds it.
#[inline]
pub fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    let s = b.get(at..at.checked_add(8)?)?;
    Some(u64::from_le_bytes(s.try_into().ok()?))
}

/// The `i64` at `at`, if `b` holds it.
#[inline]
pub fn i64_at(b: &[u8], at: usize) -> Option<i64> {
    let s = b.get(at..at.checked_add(8)?)?;
    Some(i64::from_le_bytes(s.try_into().ok()?))
}

/// The `f32` at `at`, if `b` holds it.
#[inline]
pub fn f32_at(b: &[u8], at: usize) -> Option<f32> {
    u32_at(b, at).map(f32::from_bits)
}

/// Reads fields in order from a byte slice; every read past the end is
/// [`DecodeError::Truncated`] with the offset it wanted.
#[derive(Debug, Clone)]
pub struct Cursor<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    /// A cursor at the start of `b`.
    pub fn new(b: &'a [u8]) -> Cursor<'a> {
        Cursor { b, at: 0 }
    }

    /// Offset of the next read.
    pub fn position(&self) -> usize {
        self.at
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.b.len().saturating_sub(self.at)
    }

    /// The next `n` bytes.
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&e| e <= self.b.len())
            .ok_or(DecodeError::Truncated {
                at: self.at,
                need: n,
            })?;
        let s = self.b.get(self.at..end).ok_or(DecodeError::Truncated {
            at: self.at,
            need: n,
        })?;
        self.at = end;
        Ok(s)
    }

    /// The next `N` bytes as an array.
    pub fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let at = self.at;
        self.take(N)?
            .try_into()
            .map_err(|_| DecodeError::Truncated { at, need: N })
    }

    /// The next byte.
    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(u8::from_le_bytes(self.array()?))
    }

    /// The next `u16`.
    pub fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    /// The next `u32`.
    pub fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    /// The next `u64`.
    pub fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    /// The next `i64`.
    pub fn i64(&mut self) -> Result<i64, DecodeError> {
        Ok(i64::from_le_bytes(self.array()?))
    }

    /// The next `f32`.
    pub fn f32(&mut self) -> Result<f32, DecodeError> {
        Ok(f32::from_le_bytes(self.array()?))
    }

    /// A `u32` length, then that many bytes.
    pub fn len_prefixed(&mut self) -> Result<&'a [u8], DecodeError> {
        let n = self.u32()?;
        let n = usize::try_from(n).map_err(|_| DecodeError::Truncated {
            at: self.at,
            need: usize::MAX,
        })?;
        self.take(n)
    }

    /// The rest of the slice.
    pub fn rest(&mut self) -> &'a [u8] {
        let s = self.b.get(self.at..).unwrap_or_default();
        self.at = self.b.len();
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_read_in_order_and_truncation_names_its_offset() {
        let mut b = Vec::new();
        b.push(7u8);
        b.extend_from_slice(&0xBEEFu16.to_le_bytes());
        b.extend_from_slice(&0xDEAD_BEEFu32.to_le_bytes());
        b.extend_from_slice(&u64::MAX.to_le_bytes());
        b.extend_from_slice(&(-5i64).to_le_bytes());
        b.extend_from_slice(&1.5f32.to_le_bytes());
        let mut c = Cursor::new(&b);
        assert_eq!(c.u8(), Ok(7));
        assert_eq!(c.u16(), Ok(0xBEEF));
        assert_eq!(c.u32(), Ok(0xDEAD_BEEF));
        assert_eq!(c.u64(), Ok(u64::MAX));
        assert_eq!(c.i64(), Ok(-5));
        assert_eq!(c.f32(), Ok(1.5));
        assert_eq!(c.remaining(), 0);
        assert_eq!(c.u32(), Err(DecodeError::Truncated { at: 27, need: 4 }));
        assert_eq!(u32_at(&b, 3), Some(0xDEAD_BEEF));
        assert_eq!(u64_at(&b, 7), Some(u64::MAX));
        assert_eq!(u32_at(&b, usize::MAX - 1), None);
        assert_eq!(u16_at(&b, 1), Some(0xBEEF));
        assert_eq!(f32_at(&b, 23), Some(1.5));
    }
}
