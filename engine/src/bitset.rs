//! A fixed-size bitset over segment ordinals (hand-written: the few operations filters need,
//! over words we also serialise byte for byte).

/// Bits `0..len`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Bitset {
    words: Vec<u64>,
    len: usize,
}

impl Bitset {
    pub(crate) fn new(len: usize) -> Bitset {
        Bitset {
            words: vec![0; len.div_ceil(64)],
            len,
        }
    }

    pub(crate) fn full(len: usize) -> Bitset {
        let mut b = Bitset {
            words: vec![u64::MAX; len.div_ceil(64)],
            len,
        };
        b.trim();
        b
    }

    /// From little-endian words (as stored on disk); bits past `len` are cleared.
    pub(crate) fn from_le_bytes(bytes: &[u8], len: usize) -> Bitset {
        let mut b = Bitset::new(len);
        for (w, chunk) in b.words.iter_mut().zip(bytes.chunks(8)) {
            let mut a = [0u8; 8];
            for (d, s) in a.iter_mut().zip(chunk) {
                *d = *s;
            }
            *w = u64::from_le_bytes(a);
        }
        b.trim();
        b
    }

    pub(crate) fn to_le_bytes(&self) -> Vec<u8> {
        self.words.iter().flat_map(|w| w.to_le_bytes()).collect()
    }

    fn trim(&mut self) {
        let extra = self.words.len() * 64 - self.len;
        if extra > 0 {
            if let Some(last) = self.words.last_mut() {
                *last &= u64::MAX >> extra;
            }
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn get(&self, i: usize) -> bool {
        self.words
            .get(i / 64)
            .is_some_and(|w| w >> (i % 64) & 1 == 1)
    }

    pub(crate) fn set(&mut self, i: usize) {
        if i < self.len {
            if let Some(w) = self.words.get_mut(i / 64) {
                *w |= 1 << (i % 64);
            }
        }
    }

    pub(crate) fn and_with(&mut self, o: &Bitset) {
        for (a, b) in self.words.iter_mut().zip(&o.words) {
            *a &= b;
        }
    }

    pub(crate) fn or_with(&mut self, o: &Bitset) {
        for (a, b) in self.words.iter_mut().zip(&o.words) {
            *a |= b;
        }
    }

    pub(crate) fn and_not_with(&mut self, o: &Bitset) {
        for (a, b) in self.words.iter_mut().zip(&o.words) {
            *a &= !b;
        }
    }

    pub(crate) fn negate(&mut self) {
        for w in &mut self.words {
            *w = !*w;
        }
        self.trim();
    }

    /// Whether any bit is set (a plain OR over the words: cheaper than `count` without a
    /// hardware popcount).
    pub(crate) fn any(&self) -> bool {
        self.words.iter().fold(0u64, |a, w| a | w) != 0
    }

    /// Bits set in both `self` and `other` (no allocation).
    pub(crate) fn count_and(&self, other: &Bitset) -> usize {
        self.words
            .iter()
            .zip(&other.words)
            .map(|(a, b)| (a & b).count_ones() as usize)
            .sum()
    }

    pub(crate) fn count(&self) -> usize {
        self.words.iter().map(|w| w.count_ones() as usize).sum()
    }

    /// Set bits in `lo..hi`, in increasing order.
    pub(crate) fn iter_range(&self, lo: usize, hi: usize) -> impl Iterator<Item = usize> + '_ {
        let hi = hi.min(self.len);
        let (first, last) = (lo / 64, hi.div_ceil(64));
        self.words
            .get(first..last.max(first))
            .unwrap_or_default()
            .iter()
            .enumerate()
            .flat_map(move |(k, &w)| {
                let wi = first + k;
                let mut w = w;
                if wi == lo / 64 {
                    w &= u64::MAX << (lo % 64);
                }
                if wi * 64 + 64 > hi {
                    w &= u64::MAX
                        .checked_shr(64 - (hi - wi * 64) as u32)
                        .unwrap_or(0);
                }
                std::iter::from_fn(move || {
                    if w == 0 {
                        return None;
                    }
                    let t = w.trailing_zeros() as usize;
                    w &= w - 1;
                    Some(wi * 64 + t)
                })
            })
    }

    /// Set bits in increasing order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        self.iter_range(0, self.len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_match_a_bool_vector() {
        let n = 130;
        let mut a = Bitset::new(n);
        let mut b = Bitset::new(n);
        for i in (0..n).step_by(3) {
            a.set(i);
        }
        for i in (0..n).step_by(5) {
            b.set(i);
        }
        let mut x = a.clone();
        x.and_with(&b);
        assert_eq!(
            x.iter().collect::<Vec<_>>(),
            (0..n).filter(|i| i % 15 == 0).collect::<Vec<_>>()
        );
        let mut y = a.clone();
        y.negate();
        assert_eq!(y.count(), n - a.count());
        assert!(!y.get(n), "no bits past len");
        assert_eq!(Bitset::from_le_bytes(&a.to_le_bytes(), n), a);
        assert_eq!(Bitset::full(n).count(), n);
    }

    #[test]
    fn range_iteration_equals_filtering_every_bit() {
        let n = 200;
        let mut a = Bitset::new(n);
        for i in (0..n).filter(|i| i % 3 == 0 || i % 7 == 1) {
            a.set(i);
        }
        let full = Bitset::full(n);
        for lo in [0, 1, 5, 63, 64, 65, 127, 128, 150, 199, 200, 250] {
            for hi in [0, 1, 63, 64, 65, 128, 129, 191, 192, 199, 200, 300] {
                for b in [&a, &full] {
                    let want: Vec<usize> = b.iter().filter(|&i| i >= lo && i < hi).collect();
                    assert_eq!(b.iter_range(lo, hi).collect::<Vec<_>>(), want, "{lo}..{hi}");
                }
            }
        }
    }
}
