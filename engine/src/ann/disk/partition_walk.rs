//! The partition plan: walk the coarse lists nearest the query, scoring a filter's matches by
//! code, with a tail model that decides whether to go past the target; and the query
//! features the calibrated planner reads from the partitions.

use rayon::prelude::*;

use crate::ann::codes::QueryTable;
use crate::ann::{to_space, QueryStats, Space};
use crate::bitset::Bitset;

use super::topk::{order_bits, select_smallest, TopPool};
use super::DiskIndex;

/// Reused per-thread buffers of the partition walk (allocating them per query was a fifth of
/// a 100 % partition query, in malloc).
#[derive(Default)]
struct PartScratch {
    table: Vec<f32>,
    qs: Vec<f32>,
    order: Vec<u64>,
    cand: Vec<u32>,
    dist: Vec<f32>,
    /// Centroid distances.
    cdist: Vec<f32>,
    nearest: Vec<f32>,
}

thread_local! {
    static PART_SCRATCH: std::cell::RefCell<PartScratch> =
        std::cell::RefCell::new(PartScratch::default());
}

/// A filter's matches numbered as graph nodes, and how many fall in each partition (the walk
/// skips the empty ones without reading their bitmap words: a filter correlated with a far
/// cluster would otherwise walk every list).
#[derive(Debug)]
pub(crate) struct NodeOrder {
    pub bits: Bitset,
    pub per_list: Vec<u32>,
}

/// Most nodes [`DiskIndex::near_density`] ranks by code (it scores up to twice as many): a
/// bound on its cost (~2,000 code distances). Where `k / s` is larger than this or than the
/// fine scale, the near scale reads the fine one (samples and queries alike): the fine scale
/// then already covers the neighbourhood, and measuring cost the 1 % filters on 100k × 64
/// a quarter of their query time (k / s = 1,000 nodes: 2,000 codes scored).
pub(crate) const NEAR_MAX: usize = 1024;

/// See [`DiskIndex::query_features`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct QueryFeatures {
    /// Fine, coarse and near scale (see [`DiskIndex::query_features`]).
    pub density: [f64; 3],
    pub outside: f64,
}

/// How far a partition walk goes (see [`DiskIndex::scan_partitions`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct PartitionWant {
    /// Accepted nodes to score by code before stopping (after whole lists).
    pub target: usize,
    /// Candidates returned for the re-rank (the nearest by code).
    pub pool: usize,
    /// Past `target`, go on while the lists not walked are expected to hold matches nearer
    /// than the `k`-th found: more than `tail_start` to go past the target, more than
    /// `tail_stop` to go on (`k` = 0: stop at `target`; see [`DiskIndex::scan_partitions`]).
    pub k: usize,
    pub tail_start: f64,
    pub tail_stop: f64,
    /// Scored matches after which the walk stops whatever the expectation says.
    pub limit: usize,
}

/// How a list's members lie around the query, for the walk's tail estimate: a member `x` of
/// list `p` (centroid `c`, members' mean squared distance to it `r²`) is at
/// `‖q−x‖² = ‖q−c‖² + ‖x−c‖² − 2⟨q−c, x−c⟩`. Model: `x − c` isotropic with variance `r²/d`
/// per dimension, so the distance is about normal with mean `‖q−c‖² + r²` and variance
/// `4‖q−c‖² r²/d + 2 r⁴/d` (the projection, and `‖x−c‖²` as a scaled χ²). Inner product: the
/// distance `−⟨q,x⟩ = −⟨q,c⟩ − ⟨q, x−c⟩`, mean `−⟨q,c⟩`, variance `‖q‖² r²/d`.
///
/// Real clusters are not isotropic, so the estimate is a guide, not a bound: it only lets
/// the walk go *further* than its target (up to `PartitionWant::limit`), which is what a
/// filter anti-correlated with the query's neighbourhood needs — its matches sit in many
/// lists at almost the same distance, so the nearest lists by centroid hold few of the true
/// neighbours.
struct TailModel<'a> {
    spreads: &'a [f32],
    inv_dim: f64,
    ip: bool,
    /// `‖q‖²` (inner product).
    q_norm2: f64,
}

impl<'a> TailModel<'a> {
    fn new(idx: &'a DiskIndex, qs: &[f32]) -> TailModel<'a> {
        TailModel {
            spreads: idx.spreads(),
            inv_dim: 1.0 / idx.geo.dim.max(1) as f64,
            ip: idx.space == Space::Ip,
            q_norm2: qs.iter().map(|&x| f64::from(x) * f64::from(x)).sum(),
        }
    }

    /// Whether the lists of `rest` (order keys: list in the low 32 bits) are expected to
    /// hold more than `bar` candidates nearer than `kth`; `cdist` the query's centroid
    /// distances, `count(p)` list `p`'s candidates. Stops summing once past `bar`.
    fn expected_above(
        &self,
        bar: f64,
        kth: f32,
        rest: &[u64],
        cdist: &[f32],
        count: impl Fn(usize) -> f64,
    ) -> bool {
        let kth = f64::from(kth);
        let mut sum = 0.0;
        for &key in rest {
            let p = (key & u64::from(u32::MAX)) as usize;
            let (Some(&dc), Some(&r2)) = (cdist.get(p), self.spreads.get(p)) else {
                continue;
            };
            let (dc, r2) = (f64::from(dc), f64::from(r2).max(0.0));
            let (mean, var) = if self.ip {
                (dc, self.q_norm2 * r2 * self.inv_dim)
            } else {
                (
                    dc + r2,
                    (4.0 * dc.max(0.0) * r2 + 2.0 * r2 * r2) * self.inv_dim,
                )
            };
            // Beyond 5 deviations (Φ < 3e-7) a list adds nothing: rejected without the
            // square root and the exponential.
            let gap = mean - kth;
            if gap > 0.0 && gap * gap > 25.0 * var {
                continue;
            }
            let c = count(p);
            if c == 0.0 {
                continue;
            }
            sum += c * normal_cdf_fast((kth - mean) / var.sqrt().max(f64::MIN_POSITIVE));
            if sum > bar {
                return true;
            }
        }
        false
    }
}

/// [`normal_cdf`] from a table over [-6, 6] with linear interpolation (absolute error below
/// 1e-5; 0 and 1 outside): the tail estimate evaluates it for hundreds of lists per query at
/// low selectivity, where the exponential of the exact form was a tenth of the query.
pub(super) fn normal_cdf_fast(z: f64) -> f64 {
    const STEPS: usize = 2048;
    const SPAN: f64 = 6.0;
    static TABLE: std::sync::LazyLock<Vec<f64>> = std::sync::LazyLock::new(|| {
        (0..=STEPS)
            .map(|i| normal_cdf(-SPAN + 2.0 * SPAN * i as f64 / STEPS as f64))
            .collect()
    });
    if z <= -SPAN {
        return 0.0;
    }
    if z >= SPAN {
        return 1.0;
    }
    let x = (z + SPAN) / (2.0 * SPAN) * STEPS as f64;
    let i = (x as usize).min(STEPS - 1);
    let f = x - i as f64;
    match (TABLE.get(i), TABLE.get(i + 1)) {
        (Some(a), Some(b)) => a + (b - a) * f,
        _ => normal_cdf(z),
    }
}

/// The standard normal distribution function, `Φ(z) = erfc(−z/√2)/2`, with erfc by
/// Numerical Recipes' Chebyshev fit (relative error < 1.2e-7) — `std` has no erf, and this
/// is all the walk needs of one.
pub(super) fn normal_cdf(z: f64) -> f64 {
    let x = -z / std::f64::consts::SQRT_2;
    let t = 1.0 / (1.0 + 0.5 * x.abs());
    let y = t
        * (-x * x - 1.265_512_23
            + t * (1.000_023_68
                + t * (0.374_091_96
                    + t * (0.096_784_18
                        + t * (-0.186_288_06
                            + t * (0.278_868_07
                                + t * (-1.135_203_98
                                    + t * (1.488_515_87
                                        + t * (-0.822_152_23 + t * 0.170_872_77)))))))))
            .exp();
    let erfc = if x >= 0.0 { y } else { 2.0 - y };
    erfc / 2.0
}

/// What a partition walk did.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct PartitionWalk {
    /// Lists walked.
    pub lists: u64,
    /// Members of the lists walked (matches or not).
    pub members: u64,
    /// Times the walk past its target estimated the matches left in the lists not walked.
    pub tail_checks: u64,
    /// Live candidates scored by code.
    pub scored: u64,
}

impl DiskIndex {
    /// Coarse partitions (IVF lists) of this index (0: none, the segment predates them or was
    /// built without).
    pub(crate) fn partitions(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }

    /// Per list, the members' mean squared distance to the centroid in code space (what
    /// [`TailModel`] needs), computed from the codes once per open segment — on the first
    /// partition walk that goes past its target (1M × 64: measured 15 ms on one thread, 6.4 ms
    /// on the 2-core pool), so opening stays free of it and the format of the lists unchanged.
    pub(super) fn spreads(&self) -> &[f32] {
        self.spreads.get_or_init(|| {
            let lists = self.partitions();
            let dim = self.geo.dim;
            (0..lists)
                .into_par_iter()
                .map(|p| {
                    let c: Vec<f32> = (0..dim)
                        .map(|t| self.centroids.get(t * lists + p).copied().unwrap_or(0.0))
                        .collect();
                    let lo = self.offsets.get(p).copied().unwrap_or(0);
                    let hi = self.offsets.get(p + 1).copied().unwrap_or(0).max(lo);
                    if hi == lo {
                        return 0.0;
                    }
                    let table = self.quant.query_table(Space::L2, &c, Vec::new());
                    let nodes: Vec<u32> = (lo..hi).collect();
                    let mut d = Vec::with_capacity(nodes.len());
                    table.distances(&nodes, |node| self.code(node), &mut d);
                    (d.iter().map(|&x| f64::from(x)).sum::<f64>() / d.len() as f64) as f32
                })
                .collect()
        })
    }

    /// `b` (segment ordinals) renumbered as graph nodes — a partition's matches are then the
    /// set bits of one range — with each partition's count.
    pub(crate) fn to_node_order(&self, b: &Bitset) -> NodeOrder {
        let mut bits = Bitset::new(self.n);
        for ord in b.iter() {
            if let Some(node) = self.node_of(ord) {
                bits.set(node as usize);
            }
        }
        let per_list = self
            .offsets
            .windows(2)
            .map(|w| {
                let (lo, hi) = (
                    w.first().copied().unwrap_or(0),
                    w.get(1).copied().unwrap_or(0),
                );
                bits.iter_range(lo as usize, hi as usize).count() as u32
            })
            .collect();
        NodeOrder { bits, per_list }
    }

    /// What the calibrated planner measures of a query on this index (`None` without
    /// partitions): where it lies — `outside`, its squared distance to the nearest list's
    /// centroid over that list's mean squared member distance (about 1 for a query like the
    /// data, larger between clusters or off the data) — and, given a filter's `matches`
    /// (numbered as nodes) and their count, how concentrated they are near it at two scales:
    /// for each divisor `d` of `divs` (finest first), their share among the members of the
    /// lists nearest the query that together hold at least `nodes / d` members, over their
    /// share among all nodes, smoothed by one (`(local + 1) / (expected + 1)`) so that a small
    /// sample does not read as 0 or ∞ (1 without a filter).
    ///
    /// A third scale, `density[2]`: with `near_k` (the calibration's `k`) and where it is finer
    /// than the fine scale, the same ratio among the query's `k / s` nearest nodes by code —
    /// where a graph search expects to find its `k` matches ([`DiskIndex::near_density`]);
    /// otherwise the fine scale's value.
    pub(crate) fn query_features(
        &self,
        q: &[f32],
        filter: Option<(&NodeOrder, u64)>,
        divs: [u32; 2],
        near_k: Option<usize>,
    ) -> Option<QueryFeatures> {
        let lists = self.partitions();
        if lists == 0 || self.n == 0 {
            return None;
        }
        let mut qs = Vec::new();
        to_space(self.metric, q, &mut qs);
        let mut cdist = vec![0.0f32; lists];
        crate::simd::distances_soa(&qs, &self.centroids, &mut cdist, self.space == Space::Ip);
        let mut order: Vec<(f32, usize)> = cdist.into_iter().zip(0..lists).collect();
        let nearest = order
            .iter()
            .copied()
            .min_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)))
            .map_or(0, |x| x.1);
        let centroid: Vec<f32> = (0..self.geo.dim)
            .map(|t| {
                self.centroids
                    .get(t * lists + nearest)
                    .copied()
                    .unwrap_or(0.0)
            })
            .collect();
        let d2: f64 = qs
            .iter()
            .zip(&centroid)
            .map(|(a, b)| f64::from(a - b).powi(2))
            .sum();
        let spread = f64::from(self.spreads().get(nearest).copied().unwrap_or(0.0));
        let outside = if spread > 0.0 { d2 / spread } else { 1.0 };
        let mut density = [1.0f64; 3];
        if let Some((by_node, matches)) = filter {
            order.sort_unstable_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            let (mut members, mut local, mut scale) = (0usize, 0u64, 0usize);
            for &(_, p) in &order {
                let lo = self.offsets.get(p).copied().unwrap_or(0) as usize;
                let hi = (self.offsets.get(p + 1).copied().unwrap_or(0) as usize).max(lo);
                members += hi - lo;
                local += u64::from(by_node.per_list.get(p).copied().unwrap_or(0));
                while let (Some(&d), Some(slot)) = (divs.get(scale), density.get_mut(scale)) {
                    if members < (self.n / d.max(1) as usize).max(1) {
                        break;
                    }
                    let expected = members as f64 * matches as f64 / self.n as f64;
                    *slot = (local as f64 + 1.0) / (expected + 1.0);
                    scale += 1;
                }
                if scale >= divs.len() {
                    break;
                }
            }
            // The near scale where it is finer than the fine one; else the fine one is the
            // finest there is (and the same for samples and queries).
            density[2] = density[0];
            if let Some(k) = near_k {
                let fine = (self.n / divs[0].max(1) as usize).max(1);
                if let Some(c) = self.near_density(&qs, &order, by_node, matches, k, fine) {
                    density[2] = c;
                }
            }
        }
        Some(QueryFeatures { density, outside })
    }

    /// The filter's density among the query's `M = k / s` nearest nodes by code (`None`, not
    /// measured, when `M` exceeds [`NEAR_MAX`] or the fine scale's `fine` members): the
    /// members of the lists nearest the query (`order`, by centroid distance) until they hold
    /// `2M`, the `M` nearest of them by code, and among those the matches over the `M · s`
    /// expected, smoothed by one. `k / s` nodes are where a graph
    /// search expects to find its `k` matches; the lists' scales (hundreds to thousands of
    /// nodes) cannot see a filter that excludes exactly the query's own neighbourhood — the
    /// generated social set's `anti10` (no match in the query's cluster of 100 posts, 10 % of
    /// all posts elsewhere) measured 0.9 at the fine scale, and the planner then trusted the
    /// graph at recall 0.93 where it predicted 0.99.
    fn near_density(
        &self,
        qs: &[f32],
        order: &[(f32, usize)],
        by_node: &NodeOrder,
        matches: u64,
        k: usize,
        fine: usize,
    ) -> Option<f64> {
        let s = matches as f64 / self.n.max(1) as f64;
        if s.is_nan() || s <= 0.0 {
            return None;
        }
        let m = (k.max(1) as f64 / s).ceil();
        if m > NEAR_MAX.min(fine) as f64 {
            return None;
        }
        let m = (m as usize).max(1);
        let table = self.quant.query_table(self.space, qs, Vec::new());
        let mut scored: Vec<(f32, u32)> = Vec::with_capacity(2 * m);
        for &(_, p) in order {
            let lo = self.offsets.get(p).copied().unwrap_or(0);
            let hi = self.offsets.get(p + 1).copied().unwrap_or(0).max(lo);
            for node in lo..hi {
                scored.push((table.distance(self.code(node)), node));
            }
            if scored.len() >= 2 * m {
                break;
            }
        }
        let m = m.min(scored.len());
        if m == 0 {
            return None;
        }
        select_smallest(&mut scored, m);
        let local = scored
            .iter()
            .filter(|&&(_, node)| by_node.bits.get(node as usize))
            .count();
        Some((local as f64 + 1.0) / (m as f64 * s + 1.0))
    }

    /// The partition plan: walk the lists nearest `q` (by centroid), nearest first, scoring
    /// by code every accepted node, until at least `want.target` are scored (whole lists);
    /// returns the `want.pool` nearest by code (ordinal, code distance) for a re-rank with
    /// full vectors.
    ///
    /// Past the target (when `want.k > 0`) the walk estimates how many matches nearer than
    /// the `k`-th found the lists not walked hold ([`TailModel`]: each list's centroid
    /// distance, spread and candidate count) and goes on while that exceeds
    /// `want.tail_start` (then `want.tail_stop`), up to `want.limit` scored, the pool
    /// growing with the walk — the case is a filter anti-correlated with the query's
    /// neighbourhood, whose matches lie in many lists at nearly equal distances. The
    /// estimate is checked again after every further quarter of the lists walked.
    ///
    /// A list is a run of node ids, so its candidates are the set bits of one range of
    /// `by_node` (the filter's matches numbered as nodes; `None`: no filter, every node) and
    /// their codes are read in order: the walk costs the lists' bitmap words plus the codes
    /// scored, however sparse the filter. A candidate is then dropped if its ordinal is in
    /// `deleted` or `shadowed` (a newer version in the memtable) claims it.
    #[allow(
        clippy::too_many_arguments,
        reason = "the walk's inputs: query, stop rule, match order, deletions, shadowing, counters"
    )]
    pub(crate) fn scan_partitions(
        &self,
        q: &[f32],
        want: PartitionWant,
        by_node: Option<&NodeOrder>,
        deleted: Option<&Bitset>,
        shadowed: Option<&dyn Fn(usize) -> bool>,
        stats: &mut QueryStats,
    ) -> (Vec<(f32, usize)>, PartitionWalk) {
        PART_SCRATCH.with(|cell| {
            let mut own = None;
            let mut held = cell.try_borrow_mut();
            let sc: &mut PartScratch = match held.as_deref_mut() {
                Ok(sc) => sc,
                Err(_) => own.insert(PartScratch::default()),
            };
            self.scan_partitions_in(sc, q, want, by_node, deleted, shadowed, stats)
        })
    }

    // One function (~170 lines) on purpose: the walk's loop holds the scratch buffers, the
    // pool and the tail state together; the tail estimate (`TailModel`) and the selection
    // (`TopPool`) stand alone.
    #[allow(
        clippy::too_many_arguments,
        reason = "scan_partitions' inputs plus its reused scratch"
    )]
    fn scan_partitions_in(
        &self,
        sc: &mut PartScratch,
        q: &[f32],
        want: PartitionWant,
        by_node: Option<&NodeOrder>,
        deleted: Option<&Bitset>,
        shadowed: Option<&dyn Fn(usize) -> bool>,
        stats: &mut QueryStats,
    ) -> (Vec<(f32, usize)>, PartitionWalk) {
        let lists = self.partitions();
        let mut walk = PartitionWalk::default();
        if lists == 0 {
            return (Vec::new(), walk);
        }
        to_space(self.metric, q, &mut sc.qs);
        let table = self
            .quant
            .query_table(self.space, &sc.qs, std::mem::take(&mut sc.table));
        // Lists by centroid distance; sorting all of them costs more than the centroid
        // distances, so only a head is sorted unless the walk goes past it.
        sc.cdist.clear();
        sc.cdist.resize(lists, 0.0);
        crate::simd::distances_soa(
            &sc.qs,
            &self.centroids,
            &mut sc.cdist,
            self.space == Space::Ip,
        );
        // (distance, list) packed in a u64 that orders like the pair: selecting and sorting
        // plain integers is ~3× faster than through a float comparator.
        let key = |d: f32, p: usize| (u64::from(order_bits(d)) << 32) | p as u64;
        let order = &mut sc.order;
        order.clear();
        match by_node {
            // Only the lists holding matches.
            Some(b) => order.extend(
                sc.cdist
                    .iter()
                    .zip(&b.per_list)
                    .enumerate()
                    .filter(|(_, (_, &c))| c > 0)
                    .map(|(p, (&d, _))| key(d, p)),
            ),
            None => order.extend(sc.cdist.iter().enumerate().map(|(p, &d)| key(d, p))),
        }
        stats.distance_computations += lists as u64;
        let lists = order.len();
        let head = 32.min(lists);
        if head > 0 && head < lists {
            order.select_nth_unstable(head - 1);
        }
        if let Some(h) = order.get_mut(..head) {
            h.sort_unstable();
        }
        let mut sorted = head;
        let mut top = TopPool::new(want.pool);
        // Per list: its candidate nodes, then their code distances in one tight loop, then
        // the few that beat the pool's bound are checked (deleted, shadowed) and kept.
        let (cand, dist) = (&mut sc.cand, &mut sc.dist);
        let mut j = 0;
        let mut computed = 0usize;
        // The nearest `want.k` code distances so far (ascending), for the tail check.
        let nearest = &mut sc.nearest;
        nearest.clear();
        let tail = (want.k > 0).then(|| TailModel::new(self, &sc.qs));
        // Lists walked past `target` before the tail is estimated again.
        let mut next_check = 0usize;
        loop {
            if j >= lists {
                break;
            }
            if top.scored >= want.target {
                let (Some(tm), Some(&kth)) = (&tail, nearest.get(want.k.saturating_sub(1))) else {
                    break;
                };
                if top.scored >= want.limit {
                    break;
                }
                if j >= next_check {
                    let rest = order.get(j..).unwrap_or_default();
                    let count = |p: usize| match by_node {
                        Some(b) => b.per_list.get(p).copied().unwrap_or(0) as f64,
                        None => f64::from(
                            self.offsets
                                .get(p + 1)
                                .copied()
                                .unwrap_or(0)
                                .saturating_sub(self.offsets.get(p).copied().unwrap_or(0)),
                        ),
                    };
                    walk.tail_checks += 1;
                    // Going past the target takes `tail_start`, going on `tail_stop`.
                    let bar = if walk.tail_checks == 1 {
                        want.tail_start
                    } else {
                        want.tail_stop
                    };
                    if !tm.expected_above(bar, kth, rest, &sc.cdist, count) {
                        break;
                    }
                    // Estimate again after another quarter of the lists walked so far.
                    next_check = j + (j / 4).max(1);
                }
            }
            if j >= sorted {
                // The next lists, as many again as are sorted: selected, then sorted.
                let more = sorted.max(32).min(lists - sorted);
                if let Some(rest) = order.get_mut(sorted..) {
                    if more > 0 && more < rest.len() {
                        rest.select_nth_unstable(more - 1);
                    }
                    if let Some(h) = rest.get_mut(..more) {
                        h.sort_unstable();
                    }
                }
                sorted += more;
            }
            let Some(p) = order.get(j).map(|&x| (x & u64::from(u32::MAX)) as usize) else {
                break;
            };
            let lo = self.offsets.get(p).copied().unwrap_or(0) as usize;
            let hi = (self.offsets.get(p + 1).copied().unwrap_or(0) as usize).max(lo);
            walk.members += (hi - lo) as u64;
            cand.clear();
            match by_node {
                Some(b) => cand.extend(b.bits.iter_range(lo, hi).map(|x| x as u32)),
                None => cand.extend(lo as u32..hi as u32),
            }
            table.distances(cand, |node| self.code(node), dist);
            computed += cand.len();
            for (&node, &d) in cand.iter().zip(dist.iter()) {
                if d > top.bound {
                    // Worse than a full pool of live candidates: counts as scored without
                    // the ordinal lookup (live or not, the pool already holds enough).
                    top.scored += 1;
                    continue;
                }
                let ord = self.ordinal(node);
                if deleted.is_some_and(|d| d.get(ord)) || shadowed.is_some_and(|f| f(ord)) {
                    // Not counted: the walk goes on until `target` live ones are scored
                    // (or every list is walked), so deletions never cut a result short.
                    continue;
                }
                top.scored += 1;
                top.keep(d, ord);
                if want.k > 0 && (nearest.len() < want.k || nearest.last().is_some_and(|&w| d < w))
                {
                    let at = nearest.partition_point(|&x| x <= d);
                    nearest.insert(at, d);
                    nearest.truncate(want.k);
                }
            }
            j += 1;
            if top.scored > want.target {
                // Past the target the pool grows with the walk (the wider walk exists for
                // matches at nearly equal distances, which codes rank poorly).
                let grown = (want.pool as u128 * top.scored as u128 / want.target.max(1) as u128)
                    .min(want.limit as u128) as usize;
                top.pool = top.pool.max(grown);
            }
        }
        walk.lists = j as u64;
        walk.scored = top.scored as u64;
        stats.distance_computations += computed as u64;
        if let QueryTable::Pq(t) = table {
            sc.table = t;
        }
        (top.finish(), walk)
    }
}
