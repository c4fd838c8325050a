//! Bloom filter over a segment's keys (section kind 6, optional: segments without it are read
//! by binary search alone). Hand-written: a bit array and double hashing of one stable 64-bit
//! XXH3 hash are the whole of it, and the bytes must be ours to specify in `docs/format.md`.

use super::format::{le_u32, le_u64};
use crate::DecodeError;

/// Bits per key (≈1 % false positives with 7 probes).
const BITS_PER_KEY: usize = 10;
/// Probes per key.
const PROBES: u32 = 7;

fn probes(key: &[u8], nbits: u64, k: u32) -> impl Iterator<Item = u64> {
    let h = xxhash_rust::xxh3::xxh3_64(key);
    let (h1, h2) = (h, h.rotate_left(32) | 1);
    (0..u64::from(k)).map(move |i| h1.wrapping_add(i.wrapping_mul(h2)) % nbits)
}

/// Encode: probes u32, pad u32, bit count u64, then the bits as u64 LE words.
pub(crate) fn encode<'a>(keys: impl ExactSizeIterator<Item = &'a [u8]>) -> Vec<u8> {
    let nbits = (keys.len() * BITS_PER_KEY).max(64).next_multiple_of(64);
    let mut words = vec![0u64; nbits / 64];
    for key in keys {
        for b in probes(key, nbits as u64, PROBES) {
            if let Some(w) = words.get_mut((b / 64) as usize) {
                *w |= 1 << (b % 64);
            }
        }
    }
    let mut out = Vec::with_capacity(16 + words.len() * 8);
    out.extend_from_slice(&PROBES.to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&(nbits as u64).to_le_bytes());
    words
        .iter()
        .for_each(|w| out.extend_from_slice(&w.to_le_bytes()));
    out
}

/// A verified view of a bloom section: (probes, bit count, offset of the words).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bloom {
    k: u32,
    nbits: u64,
    words_at: usize,
}

impl Bloom {
    /// Check the section at `at..at+len` of `b`.
    pub(crate) fn parse(b: &[u8], at: usize, len: usize) -> Result<Bloom, DecodeError> {
        let k = le_u32(b, at).ok_or(DecodeError::invalid("bloom truncated"))?;
        let nbits = le_u64(b, at + 8).ok_or(DecodeError::invalid("bloom truncated"))?;
        if !(1..=16).contains(&k) || nbits == 0 || nbits % 64 != 0 {
            return Err(DecodeError::Invalid(format!(
                "bloom parameters out of range (k {k}, bits {nbits})"
            )));
        }
        if (len as u64).checked_sub(16) != Some(nbits / 8) {
            return Err(DecodeError::invalid("bloom length mismatch"));
        }
        Ok(Bloom {
            k,
            nbits,
            words_at: at + 16,
        })
    }

    /// False only if `key` is certainly absent.
    pub(crate) fn may_contain(&self, b: &[u8], key: &[u8]) -> bool {
        probes(key, self.nbits, self.k).all(|bit| {
            le_u64(b, self.words_at + (bit / 64) as usize * 8)
                .is_some_and(|w| w >> (bit % 64) & 1 == 1)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_false_negatives_and_few_false_positives() {
        let keys: Vec<Vec<u8>> = (0..5000).map(|i| format!("key-{i}").into_bytes()).collect();
        let enc = encode(keys.iter().map(Vec::as_slice));
        let bloom = Bloom::parse(&enc, 0, enc.len()).unwrap();
        assert!(keys.iter().all(|k| bloom.may_contain(&enc, k)));
        let fp = (0..10_000)
            .filter(|i| bloom.may_contain(&enc, format!("other-{i}").as_bytes()))
            .count();
        assert!(fp < 300, "{fp} false positives in 10000");
    }
}
