//! Bounded selection of the nearest (distance, id) pairs: one order (distance, then id, so
//! results are deterministic) and the selections every search path uses.

use std::cmp::Ordering;

/// (distance, id) pairs by distance, ties by id.
#[inline]
pub(crate) fn by_distance<T: Ord>(a: &(f32, T), b: &(f32, T)) -> Ordering {
    a.0.total_cmp(&b.0).then(a.1.cmp(&b.1))
}

/// Keep the `n` smallest pairs of `v` ([`by_distance`]), in no particular order.
pub(crate) fn select_smallest<T: Ord>(v: &mut Vec<(f32, T)>, n: usize) {
    if n == 0 {
        v.clear();
    } else if v.len() > n {
        v.select_nth_unstable_by(n - 1, by_distance);
        v.truncate(n);
    }
}

/// Sort the next `want` smallest of `v[sorted..]` into place after the first `sorted`
/// (selected, then sorted: a long candidate list consumed from the front is never sorted
/// whole); returns the new sorted length.
pub(crate) fn sort_next<T: Ord>(v: &mut [(f32, T)], sorted: usize, want: usize) -> usize {
    let Some(rest) = v.get_mut(sorted..) else {
        return sorted;
    };
    if want > 0 && want < rest.len() {
        rest.select_nth_unstable_by(want - 1, by_distance);
    }
    let end = want.min(rest.len());
    if let Some(h) = rest.get_mut(..end) {
        h.sort_unstable_by(by_distance);
    }
    sorted + end
}

/// The `pool` smallest (distance, ordinal) pairs of a stream: a buffer of up to `2 · pool`
/// cut back to `pool` when full, and a bound (the pool's worst) that turns away most pushes
/// without a write (selecting over every scored code was most of a 100 % partition query).
pub(super) struct TopPool {
    pub pool: usize,
    items: Vec<(f32, usize)>,
    pub bound: f32,
    /// Pushes seen (codes scored).
    pub scored: usize,
}

impl TopPool {
    pub(super) fn new(pool: usize) -> TopPool {
        TopPool {
            pool: pool.max(1),
            // Grows with what is kept: a pool sized from a large `k` costs nothing up front.
            items: Vec::with_capacity(2 * pool.clamp(1, 1 << 14)),
            bound: f32::INFINITY,
            scored: 0,
        }
    }

    /// Keep `(d, ord)` if it may be among the best (the caller counted it in `scored`).
    #[inline]
    pub(super) fn keep(&mut self, d: f32, ord: usize) {
        if d > self.bound {
            return;
        }
        self.items.push((d, ord));
        if self.items.len() >= 2 * self.pool {
            self.cut();
        }
    }

    fn cut(&mut self) {
        if self.items.len() > self.pool {
            self.items
                .select_nth_unstable_by(self.pool - 1, by_distance);
            self.items.truncate(self.pool);
            self.bound = self
                .items
                .iter()
                .map(|x| x.0)
                .fold(f32::NEG_INFINITY, f32::max);
        }
    }

    pub(super) fn finish(mut self) -> Vec<(f32, usize)> {
        self.cut();
        self.items
    }
}

/// A u32 that orders like the (non-NaN) float: the sign bit flipped for positives, every bit
/// for negatives.
#[inline]
pub(super) fn order_bits(d: f32) -> u32 {
    let b = d.to_bits();
    if b >> 31 == 1 {
        !b
    } else {
        b | (1 << 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selections_agree_with_a_full_sort() {
        let v: Vec<(f32, usize)> = (0..200)
            .map(|i| (((i * 7919) % 101) as f32 - 50.0, i))
            .collect();
        let mut want = v.clone();
        want.sort_by(by_distance);
        for n in [0, 1, 5, 100, 200, 500] {
            let mut got = v.clone();
            select_smallest(&mut got, n);
            got.sort_by(by_distance);
            assert_eq!(
                got,
                want.iter().copied().take(n).collect::<Vec<_>>(),
                "n {n}"
            );
            let mut pool = TopPool::new(n.max(1));
            for &(d, i) in &v {
                pool.scored += 1;
                pool.keep(d, i);
            }
            let mut got = pool.finish();
            got.sort_by(by_distance);
            assert_eq!(got, want.iter().copied().take(n.max(1)).collect::<Vec<_>>());
        }
        let mut w = v.clone();
        let mut sorted = 0;
        while sorted < w.len() {
            sorted = sort_next(&mut w, sorted, sorted.max(16));
            assert_eq!(w.get(..sorted), want.get(..sorted));
        }
        let mut order: Vec<u32> = [-3.5f32, -0.0, 0.0, 1e-30, 2.0, f32::INFINITY]
            .iter()
            .map(|&d| order_bits(d))
            .collect();
        let copy = order.clone();
        order.sort_unstable();
        assert_eq!(order, copy, "order_bits orders like the floats");
    }
}
