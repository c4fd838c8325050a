//! Filters on one segment: postings and attribute columns to a bitset, the selectivity
//! estimate the planner starts from, and the per-segment cache of evaluated filters.

use std::sync::Arc;

use super::*;

/// A filter evaluated on one segment (deletions not applied): its matches by ordinal, their
/// counts, and — built on first use by the partition plan, then kept with the cache entry —
/// the same matches numbered as graph nodes, where a partition is a run of ids.
#[derive(Debug)]
pub(crate) struct Evaluated {
    pub(crate) bits: Arc<Bitset>,
    pub(crate) counts: Counts,
    by_node: std::sync::OnceLock<Arc<NodeOrder>>,
    ones: std::sync::OnceLock<Arc<Vec<u32>>>,
}

impl Evaluated {
    /// The matching ordinals as a list, made once per cached filter: `(apply …)` walks the
    /// matches of its inner filter (a user's friends: a few dozen bits of a 1M-bit map) on
    /// every query, and scanning the map's words was a fifth of such a query. `None` when
    /// a list would be larger than the map (more than one match in 32).
    pub(crate) fn ones(&self) -> Option<Arc<Vec<u32>>> {
        if self.counts.all.saturating_mul(32) > self.bits.len() {
            return None;
        }
        Some(
            self.ones
                .get_or_init(|| Arc::new(self.bits.iter().map(|i| i as u32).collect()))
                .clone(),
        )
    }

    /// The matches as graph nodes of `idx` (this segment's index).
    pub(crate) fn by_node(&self, idx: &DiskIndex) -> Arc<NodeOrder> {
        self.by_node
            .get_or_init(|| Arc::new(idx.to_node_order(&self.bits)))
            .clone()
    }
}

/// A filter's matches in a segment, all of them and those with a vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Counts {
    pub(crate) all: usize,
    pub(crate) with_vector: usize,
}

/// Filters a segment remembers (each costs n/8 bytes: 4 MB in all at 1M documents).
const FILTER_CACHE_ENTRIES: usize = 32;
/// Segments below this many documents evaluate every time (it is cheap there).
const FILTER_CACHE_MIN_DOCS: usize = 16_384;

impl Segment {
    fn term(&self, t: usize) -> &[u8] {
        let o = |j: usize| le_u32(&self.bytes, self.term_offsets_at + j * 4).unwrap_or(0) as usize;
        self.bytes
            .get(self.term_bytes_at + o(t)..self.term_bytes_at + o(t + 1))
            .unwrap_or_default()
    }

    /// Range of `term`'s posting list in the postings array (empty if the term is absent).
    fn posting_range(&self, term: &str) -> std::ops::Range<usize> {
        let t = term.as_bytes();
        let (mut lo, mut hi) = (0, self.term_count);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.term(mid) < t {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        if lo < self.term_count && self.term(lo) == t {
            let p =
                |j: usize| le_u32(&self.bytes, self.post_offsets_at + j * 4).unwrap_or(0) as usize;
            p(lo)..p(lo + 1)
        } else {
            0..0
        }
    }

    /// Ordinals carrying `term`, as a bitset.
    fn postings(&self, term: &str) -> Bitset {
        let mut out = Bitset::new(self.n);
        for k in self.posting_range(term) {
            if let Some(o) = le_u32(&self.bytes, self.postings_at + k * 4) {
                out.set(o as usize);
            }
        }
        out
    }

    /// Attribute `a` (schema index) of ordinal `i`.
    pub(crate) fn attr(&self, a: usize, i: usize) -> Option<i64> {
        let col = self.attrs.get(a)?;
        if !col.present.get(i) {
            return None;
        }
        le_i64(&self.bytes, col.values_at + i * 8)
    }

    /// (min, max) of attribute `a`'s present values in block `blk`; `None` if it has none.
    fn block_minmax(&self, a: usize, blk: usize) -> Option<(i64, i64)> {
        let col = self.attrs.get(a)?;
        let at = col.minmax_at + blk * 16;
        let (lo, hi) = (le_i64(&self.bytes, at)?, le_i64(&self.bytes, at + 8)?);
        (lo <= hi).then_some((lo, hi))
    }

    /// Matching documents of `f` (deleted ones included) estimated without evaluating it:
    /// terms from their posting lengths (exact), ranges from the attribute blocks' (min, max)
    /// (blocks inside the range count fully for the minimum — values absent from a block are
    /// not known, so presence is not assumed — and overlapping blocks for the maximum; the
    /// expectation assumes values spread uniformly between a block's min and max). AND/OR/NOT
    /// combine the bounds exactly (Fréchet bounds) and the expectation assuming independence.
    pub(crate) fn estimate(&self, f: &Filter) -> crate::ann::Estimate {
        use crate::ann::Estimate;
        let n = self.n as f64;
        match f {
            Filter::Term(t) => Estimate::exact(self.posting_range(t).len() as u64),
            Filter::And(fs) => {
                let parts: Vec<Estimate> = fs.iter().map(|x| self.estimate(x)).collect();
                Estimate::and(&parts, self.n as u64)
            }
            Filter::Or(fs) => {
                let parts: Vec<Estimate> = fs.iter().map(|x| self.estimate(x)).collect();
                Estimate::or(&parts, self.n as u64)
            }
            Filter::Not(x) => self.estimate(x).not(self.n as u64),
            Filter::Range { attr, lo, hi } => {
                let Some(a) = self.schema.attr_index(attr) else {
                    return Estimate::exact(0);
                };
                let (mut max, mut exp) = (0u64, 0f64);
                for blk in 0..self.n.div_ceil(ATTR_BLOCK_DOCS) {
                    let docs =
                        (((blk + 1) * ATTR_BLOCK_DOCS).min(self.n) - blk * ATTR_BLOCK_DOCS) as u64;
                    let Some((bmin, bmax)) = self.block_minmax(a, blk) else {
                        continue;
                    };
                    if bmax < *lo || bmin > *hi {
                        continue;
                    }
                    max += docs;
                    if *lo <= bmin && bmax <= *hi {
                        exp += docs as f64;
                    } else {
                        // Overlapping fraction of [bmin, bmax], uniform assumption.
                        let span = (bmax as f64 - bmin as f64) + 1.0;
                        let ov = ((*hi).min(bmax) as f64 - (*lo).max(bmin) as f64) + 1.0;
                        exp += docs as f64 * (ov / span).clamp(0.0, 1.0);
                    }
                }
                Estimate {
                    min: 0,
                    expected: (exp.min(n).round() as u64).min(max),
                    max,
                }
            }
            Filter::Apply { .. } => Estimate {
                min: 0,
                expected: self.n as u64 / 2,
                max: self.n as u64,
            },
        }
    }

    /// Evaluate a (validated) filter to the set of matching ordinals.
    /// [`Segment::eval`] through the segment's cache of recent filters (large segments only):
    /// a repeated filter — a tenant or visibility restriction, a popular tag — costs a copy
    /// of its bitmap instead of decoding its postings or scanning a column again.
    /// Returns the bitmap (shared with the cache) and its counts.
    pub(crate) fn eval_cached(&self, f: &Filter) -> Arc<Evaluated> {
        let fresh = |b: Bitset| {
            let counts = self.counts(&b);
            Arc::new(Evaluated {
                bits: Arc::new(b),
                counts,
                by_node: std::sync::OnceLock::new(),
                ones: std::sync::OnceLock::new(),
            })
        };
        if self.n < FILTER_CACHE_MIN_DOCS {
            return fresh(self.eval(f));
        }
        let key = f.to_string();
        {
            let mut c = self.filter_cache.lock();
            if let Some(at) = c.iter().position(|(k, _)| *k == key) {
                let hit = c.remove(at);
                let out = hit.1.clone();
                c.push(hit);
                return out;
            }
        }
        let e = fresh(self.eval(f));
        let mut c = self.filter_cache.lock();
        if c.len() >= FILTER_CACHE_ENTRIES {
            c.remove(0);
        }
        c.push((key, e.clone()));
        e
    }

    /// How many of `b`'s documents there are, and how many of them carry a vector (documents
    /// without one — user profiles next to posts — can match a filter but never a k-NN
    /// query, so the planner must not count them).
    pub(crate) fn counts(&self, b: &Bitset) -> Counts {
        let all = b.count();
        let with_vector = if self.vectors == self.n {
            all
        } else {
            b.count_and(&self.vec_present)
        };
        Counts { all, with_vector }
    }

    pub(crate) fn eval(&self, f: &Filter) -> Bitset {
        match f {
            Filter::Term(t) => self.postings(t),
            Filter::And(fs) => {
                let mut acc = Bitset::full(self.n);
                for x in fs {
                    acc.and_with(&self.eval(x));
                }
                acc
            }
            Filter::Or(fs) => {
                let mut acc = Bitset::new(self.n);
                for x in fs {
                    acc.or_with(&self.eval(x));
                }
                acc
            }
            Filter::Not(x) => {
                let mut b = self.eval(x);
                b.negate();
                b
            }
            Filter::Range { attr, lo, hi } => {
                let mut out = Bitset::new(self.n);
                if let Some(a) = self.schema.attr_index(attr) {
                    // Blocks whose (min, max) misses the range are skipped unread.
                    for blk in 0..self.n.div_ceil(ATTR_BLOCK_DOCS) {
                        let Some((bmin, bmax)) = self.block_minmax(a, blk) else {
                            continue;
                        };
                        if bmax < *lo || bmin > *hi {
                            continue;
                        }
                        let end = ((blk + 1) * ATTR_BLOCK_DOCS).min(self.n);
                        for i in blk * ATTR_BLOCK_DOCS..end {
                            if self.attr(a, i).is_some_and(|v| (*lo..=*hi).contains(&v)) {
                                out.set(i);
                            }
                        }
                    }
                }
                out
            }
            // Resolved by the snapshot before evaluation; unresolved, it matches nothing.
            Filter::Apply { .. } => Bitset::new(self.n),
        }
    }
}
