//! One executor per k-NN plan on an indexed segment, with the effort as an explicit knob: the
//! planner (`plan.rs`, `calibrated.rs`) decides the effort, calibration (`calibrate.rs`) runs the
//! same executors at many efforts to measure what each buys. Results are (exact distance,
//! ordinal), nearest first, at most `k`.

use crate::ann::disk::topk::sort_next;
use crate::ann::disk::{DiskIndex, NodeOrder, PartitionWalk, PartitionWant};
use crate::ann::QueryStats;
use crate::bitset::Bitset;
use crate::distance::search_distance as distance;
use crate::segment::Segment;
use crate::{Metric, Result, SearchParams};

/// An adaptive re-rank scores at least this many candidates before it may stop (the error
/// estimate needs a few).
const RERANK_MIN: usize = 16;

/// An adaptive re-rank sorts its pool this many candidates at a time (at least).
const RERANK_CHUNK: usize = 128;

/// How far past its pool a filter-first-by-codes re-rank may go while its adaptive stop says
/// the next candidate could still beat the k-th (see [`codes`]). Where codes rank well the
/// stop fires inside the pool and this costs nothing; where they rank poorly for this query
/// (matches all far from it, at nearly equal distances: an anti-correlated filter) the pool the
/// calibration chose from other queries is too short — at 100k generated social posts the
/// `anti10` filter's code-plan queries had recall@10 0.85 with the pool alone, 1.00 with up to
/// 8× (1 % more distances over all its queries). A bound, not a tuned value: it caps the extra
/// cost of a query whose stop never fires at 8× its predicted re-rank.
pub(crate) const CODES_POOL_STRETCH: usize = 8;

/// Vectors read ahead of the one being scored by a re-rank (they are read at random: a pool of
/// 100 at 1M × 64 spent most of its time waiting on each vector's cache lines in turn).
const RERANK_AHEAD: usize = 6;

/// Bytes of vectors an exact scan keeps requested ahead of the one it scores.
const EXACT_AHEAD_BYTES: usize = 8 * 1024;

/// What every executor needs: the segment, its index, the query.
#[derive(Clone, Copy)]
pub(crate) struct Target<'a> {
    pub seg: &'a Segment,
    pub idx: &'a DiskIndex,
    pub metric: Metric,
    pub q: &'a [f32],
    pub k: usize,
}

/// Running mean and variance (Welford).
#[derive(Debug, Default)]
struct Welford {
    n: f64,
    mean: f64,
    m2: f64,
}

impl Welford {
    fn add(&mut self, x: f64) {
        self.n += 1.0;
        let d = x - self.mean;
        self.mean += d / self.n;
        self.m2 += d * (x - self.mean);
    }

    fn deviation(&self) -> f64 {
        if self.n < 2.0 {
            0.0
        } else {
            (self.m2 / (self.n - 1.0)).sqrt()
        }
    }
}

/// Re-rank code-ranked candidates (code distance, ordinal) with full vectors (ties by key).
///
/// `adaptive`: candidates in code order, and the re-rank stops once the next one cannot
/// plausibly beat the k-th exact distance found: code distances err by `code − exact` (mean μ,
/// deviation σ, measured on the candidates re-ranked so far), so a candidate whose code
/// distance exceeds the k-th exact by more than μ + 3σ is skipped with the rest. The pool can
/// then be long (hard data: PQ ranks poorly) without paying for it on easy data. Returns
/// whether the adaptive stop fired (the rest of the pool could not beat the k-th; `false`: the
/// pool may have been too short).
pub(crate) fn rerank(
    t: Target<'_>,
    mut cands: Vec<(f32, usize)>,
    adaptive: bool,
    stats: &mut QueryStats,
) -> Result<(Vec<(f32, usize)>, bool)> {
    // Adaptive: candidates in code order, sorted a chunk at a time (a long pool is rarely
    // re-ranked far, so most of it is never sorted).
    let mut sorted = 0usize;
    let sort_more = |cands: &mut Vec<(f32, usize)>, sorted: &mut usize| {
        *sorted = sort_next(cands, *sorted, (*sorted).max(RERANK_CHUNK));
    };
    if adaptive {
        sort_more(&mut cands, &mut sorted);
    }
    let mut converged = false;
    let mut scored = Vec::with_capacity(cands.len());
    let mut v = Vec::new();
    for &(_, i) in cands.iter().take(RERANK_AHEAD) {
        t.seg.prefetch_vector(i);
    }
    let mut err = Welford::default();
    let mut kbest: Vec<f32> = Vec::with_capacity(t.k.min(cands.len()) + 1);
    for j in 0..cands.len() {
        if adaptive && j + RERANK_AHEAD >= sorted && sorted < cands.len() {
            sort_more(&mut cands, &mut sorted);
        }
        let Some(&(code_d, i)) = cands.get(j) else {
            break;
        };
        if adaptive && j >= t.k.max(RERANK_MIN) && kbest.len() >= t.k {
            let kth = kbest.last().copied().unwrap_or(f32::INFINITY);
            let margin = err.mean + 3.0 * err.deviation();
            if f64::from(code_d) - margin > f64::from(t.idx.to_code_space(kth)) {
                converged = true;
                break;
            }
        }
        if let Some(&(_, a)) = cands.get(j + RERANK_AHEAD) {
            t.seg.prefetch_vector(a);
        }
        if t.seg.vector_into(i, &mut v)? {
            let d = distance(t.metric, t.q, &v);
            scored.push((d, i));
            if adaptive {
                err.add(f64::from(code_d) - f64::from(t.idx.to_code_space(d)));
                let at = kbest.partition_point(|&x| x <= d);
                if at < t.k {
                    kbest.insert(at, d);
                    kbest.truncate(t.k);
                }
            }
        }
    }
    stats.distance_computations += scored.len() as u64;
    scored.sort_by(|a, b| {
        a.0.total_cmp(&b.0)
            .then_with(|| t.seg.key(a.1).cmp(t.seg.key(b.1)))
    });
    scored.truncate(t.k);
    Ok((scored, converged))
}

/// Filter-first by codes: every candidate ordinal `accept`ed is scored by its code, the `pool`
/// nearest are re-ranked with full vectors, adaptively (in code order, stopping once the next
/// cannot plausibly beat the k-th: a long pool costs little where codes rank well) — and when
/// that stop has not fired by the pool's end, the re-rank goes on in code order, up to
/// [`CODES_POOL_STRETCH`] times the pool, until it does: the query measures its own code error
/// and the k-th exact distance, and trusts that over the pool the planner predicted.
pub(crate) fn codes(
    t: Target<'_>,
    pool: usize,
    candidates: &mut dyn Iterator<Item = usize>,
    accept: &dyn Fn(usize) -> bool,
    stats: &mut QueryStats,
) -> Result<Vec<(f32, usize)>> {
    let cands = t.idx.scan_codes(
        t.q,
        pool.saturating_mul(CODES_POOL_STRETCH),
        candidates,
        accept,
        stats,
    );
    Ok(rerank(t, cands, true, stats)?.0)
}

/// Filter-first at full precision (and the exact plan of segments without a graph).
pub(crate) struct Exact<'a> {
    pub seg: &'a Segment,
    pub metric: Metric,
    pub q: &'a [f32],
    pub k: usize,
    pub radius: Option<f32>,
}

impl Exact<'_> {
    /// Every ordinal of `live` that has a vector and is not `shadowed`, scored exactly: the
    /// `k` nearest within the radius, nearest first (ties by key).
    pub(crate) fn run(
        &self,
        live: &Bitset,
        shadowed: &dyn Fn(usize) -> bool,
        deadline: &crate::deadline::Deadline,
        stats: &mut QueryStats,
    ) -> Result<Vec<(f32, usize)>> {
        let mut heap = std::collections::BinaryHeap::new();
        let mut v = Vec::new();
        // The matches' vectors are read in ordinal order but rarely contiguously: fetch a few
        // ahead (768-d on 9.3k of 65k matches: 850 ns per match without, a sequential scan of
        // every vector 430 ns).
        let ahead_n = (EXACT_AHEAD_BYTES / (self.q.len() * 4).max(1)).clamp(2, 16);
        let mut ahead = live.iter();
        for a in ahead.by_ref().take(ahead_n) {
            self.seg.prefetch_vector(a);
        }
        for (j, i) in live.iter().enumerate() {
            if let Some(a) = ahead.next() {
                self.seg.prefetch_vector(a);
            }
            deadline.check_every(j, "scoring a segment exactly")?;
            if !self.seg.vector_into(i, &mut v)? || shadowed(i) {
                continue;
            }
            let dist = distance(self.metric, self.q, &v);
            stats.distance_computations += 1;
            if self.radius.is_some_and(|r| dist > r) {
                continue;
            }
            heap.push(crate::search::Scored::new(
                dist,
                self.seg.key(i).to_vec(),
                i,
            ));
            if heap.len() > self.k {
                heap.pop();
            }
        }
        let mut out: Vec<(f32, usize)> = heap
            .into_iter()
            .map(|s| {
                let (d, _, i) = s.into_parts();
                (d, i)
            })
            .collect();
        out.sort_by(|a, b| {
            a.0.total_cmp(&b.0)
                .then_with(|| self.seg.key(a.1).cmp(self.seg.key(b.1)))
        });
        Ok(out)
    }
}

/// The partition walk: the lists nearest the query until `want` stops it, the pool re-ranked
/// adaptively. With `retry` (a factor > 1), a walk whose re-rank used the whole pool without
/// its stop firing walks again with a pool that many times longer — only when the walk scored
/// at least twice the pool (at a small effort the pool holds nearly every candidate, a second
/// walk would add little).
#[allow(
    clippy::too_many_arguments,
    reason = "the walk's inputs (target, stop rule, retry, match order, deletions, shadowing) and counters"
)]
pub(crate) fn partition(
    t: Target<'_>,
    want: PartitionWant,
    retry: usize,
    by_node: Option<&NodeOrder>,
    deleted: Option<&Bitset>,
    shadowed: Option<&dyn Fn(usize) -> bool>,
    stats: &mut QueryStats,
) -> Result<(Vec<(f32, usize)>, PartitionWalk)> {
    let (cands, mut walk) = t
        .idx
        .scan_partitions(t.q, want, by_node, deleted, shadowed, stats);
    let dropped = walk.scored as usize >= 2 * want.pool;
    let (mut best, converged) = rerank(t, cands, true, stats)?;
    if retry > 1 && dropped && !converged {
        let want = PartitionWant {
            pool: want.pool.saturating_mul(retry),
            ..want
        };
        let (cands, again) = t
            .idx
            .scan_partitions(t.q, want, by_node, deleted, shadowed, stats);
        walk.lists += again.lists;
        walk.members += again.members;
        walk.scored += again.scored;
        best = rerank(t, cands, true, stats)?.0;
    }
    Ok((best, walk))
}

/// The (filtered) graph search with list `params.list`: every admitted node it expanded or
/// scored, (exact distance, ordinal), nearest first. `min_rate` > 0 lets it give up on a filter
/// anti-correlated with the query's neighbourhood (`stats.anti_correlated_exits`); the node of
/// ordinal `hidden` is treated as absent from the graph.
pub(crate) fn graph(
    t: Target<'_>,
    params: &SearchParams,
    accept: &dyn Fn(usize) -> bool,
    min_rate: f64,
    hidden: Option<usize>,
    stats: &mut QueryStats,
) -> Result<Vec<(f32, usize)>> {
    t.idx.search_filtered(
        t.seg.file_bytes(),
        t.q,
        t.k,
        params,
        accept,
        min_rate,
        hidden.and_then(|o| t.idx.node_of(o)),
        stats,
    )
}
