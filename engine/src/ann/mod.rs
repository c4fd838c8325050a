//! Disk-resident approximate nearest-neighbour search, the DiskANN way: a Vamana graph per
//! segment whose nodes (full vector + neighbour list) are packed in 4 KiB sectors, compressed
//! codes (PQ or SQ8) kept in memory to steer a beam search, full vectors read with the
//! adjacency re-rank the candidates. Formats: `docs/format.md`, "ANN codes" and "ANN graph".

pub(crate) mod codes;
pub(crate) mod disk;
pub(crate) mod partition;
/// The SIMD distance kernels (they live in `crate::simd`, below both the index and the
/// exact distances; re-exported here where they were first published).
pub use crate::simd;
#[cfg(test)]
pub(crate) mod testdata;
pub(crate) mod vamana;

pub use codes::CodeKind;

use crate::Metric;

/// The space the graph and codes work in: cosine is L2 over unit vectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Space {
    /// Squared Euclidean distance.
    L2,
    /// Negative inner product.
    Ip,
}

impl Space {
    pub(crate) fn of(metric: Metric) -> Space {
        match metric {
            Metric::L2 | Metric::Cosine => Space::L2,
            Metric::InnerProduct => Space::Ip,
        }
    }
}

#[inline]
pub(crate) fn space_distance(space: Space, a: &[f32], b: &[f32]) -> f32 {
    match space {
        Space::L2 => simd::l2_sq(a, b),
        Space::Ip => -simd::dot(a, b),
    }
}

/// Hint the CPU to load the cache line holding `b[0]` (a no-op elsewhere than x86-64).
#[inline]
pub(crate) fn prefetch<T>(b: &[T]) {
    #[cfg(target_arch = "x86_64")]
    if !b.is_empty() {
        // SAFETY: prefetching is a hint; it never faults or reads into Rust-visible memory,
        // and the pointer comes from a live slice.
        unsafe {
            std::arch::x86_64::_mm_prefetch(
                b.as_ptr().cast::<i8>(),
                std::arch::x86_64::_MM_HINT_T0,
            );
        }
    }
}

/// [`prefetch`] every 64-byte cache line of `b`.
#[inline]
pub(crate) fn prefetch_lines(b: &[u8]) {
    for at in (0..b.len()).step_by(64) {
        prefetch(b.get(at..).unwrap_or_default());
    }
}

/// Map a vector into the index space (unit length for cosine; zero vectors stay zero).
pub(crate) fn to_space(metric: Metric, v: &[f32], out: &mut Vec<f32>) {
    out.clear();
    out.extend_from_slice(v);
    if metric == Metric::Cosine {
        let n = simd::dot(v, v).sqrt();
        if n > 0.0 {
            out.iter_mut().for_each(|x| *x /= n);
        }
    }
}

/// The graph list of the uncalibrated model when the query asks for none (`list` 0): d/4-byte
/// PQ codes on hard, high-intrinsic-dimension data need about that for recall@10 ≥ 0.95.
pub(crate) const LIST_UNCALIBRATED: usize = 128;

/// The list a query's `SearchParams::list` asks for (0: the uncalibrated default).
pub(crate) fn effort_list(list: usize) -> usize {
    if list == 0 {
        LIST_UNCALIBRATED
    } else {
        list
    }
}

/// How segments get and use their ANN index.
#[derive(Debug, Clone, PartialEq)]
pub struct AnnOptions {
    /// Segments with at least this many vectors get a graph at flush; smaller ones stay brute
    /// force. Default 5,000.
    pub min_vectors: usize,
    /// Degree bound `R`. Default 48.
    pub degree: usize,
    /// Build list size `L`. Default 64 (measured on 200k x 128: the same recall curve as 96
    /// in two thirds of the build time).
    pub build_list: usize,
    /// Robust-prune `alpha` (>= 1). Default 1.2.
    pub alpha: f32,
    /// Code kind. Default PQ with `dim / 4` sub-spaces; [`CodeKind::Auto`] measures.
    pub codes: CodeKind,
    /// Seed of the build (shuffle order, PQ training): same seed + data, same index.
    pub seed: u64,
    /// Bytes the indexes may keep in memory: codes (always loaded) plus a cache of the nodes
    /// nearest each entry point, filled while budget remains. Default 256 MiB.
    pub memory_budget_bytes: u64,
    /// Coarse partitions (IVF lists) per indexed segment, for the planner's partition plan:
    /// `None` = about `√n` lists (the default), `Some(0)` = none, `Some(p)` = `p` lists (at
    /// most 65,535 and the segment's vectors).
    pub partitions: Option<usize>,
    /// Fill the node cache when a segment opens: copy the nodes nearest each entry point into
    /// memory, within `memory_budget_bytes`. Default false (a lazy open): the graph is mapped
    /// and each node is read from the mapping when a query first needs it (its sector
    /// checksum verified once), so an open costs milliseconds and resident memory grows with
    /// use up to the budget — 1,000 unfiltered queries on a 65k × 768 database in one
    /// `strata query` process: 0.87 s lazy, 1.86–2.25 s warm (`docs/benchmarks.md`, "Lazy
    /// open"). A graph within the budget searches alike either way (no sector mates); warm
    /// buys steady latency from the first query at the price of the copy.
    pub warm: bool,
    /// Calibrate each index when it is built (default true): the planner's measurements of
    /// recall and time per plan and effort on the segment's own vectors and filters: 64
    /// sample queries at least, more while it has taken less than a tenth of the index
    /// build's time (`docs/format.md`, "Calibration section"). On small segments the 64
    /// dominate: +14–44 % on a 28.7k × 384 build (four builds), +21–35 % on 65k × 768 (two).
    /// Without one, a segment is planned by the uncalibrated cost model.
    pub calibrate: bool,
}

impl Default for AnnOptions {
    fn default() -> Self {
        AnnOptions {
            min_vectors: 5_000,
            degree: 48,
            build_list: 64,
            alpha: 1.2,
            codes: CodeKind::Pq(0),
            seed: 0x5EED,
            memory_budget_bytes: 256 << 20,
            partitions: None,
            warm: false,
            calibrate: true,
        }
    }
}

impl AnnOptions {
    pub(crate) fn validate(&self) -> crate::Result<()> {
        if !(2..=512).contains(&self.degree) {
            return Err(crate::Error::invalid("ann degree must be in 2..=512"));
        }
        if self.build_list < self.degree {
            return Err(crate::Error::invalid("ann build_list must be >= degree"));
        }
        if !(1.0..=4.0).contains(&self.alpha) {
            return Err(crate::Error::invalid("ann alpha must be in 1.0..=4.0"));
        }
        if self
            .partitions
            .is_some_and(|p| p > partition::MAX_PARTITIONS)
        {
            return Err(crate::Error::invalid(
                "ann partitions must be at most 65,535",
            ));
        }
        Ok(())
    }
}

/// Per-query search knobs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SearchParams {
    /// The recall@k the query asks for, in `0.0..=1.0` (default 0.95): on every segment with
    /// a calibration the planner picks the cheapest plan and effort whose measured recall
    /// reaches it (1.0: exact). `explain` reports the recall predicted for the plan chosen.
    pub recall: f64,
    /// Expert override: the candidate list `L_search` of the graph (raised to `k` if
    /// smaller), which also sets the partition walk's effort; larger = better recall, slower.
    /// 0 (the default) lets `recall` decide; segments without a calibration then use 128.
    pub list: usize,
    /// Sectors fetched per hop. Default 4.
    pub beam_width: usize,
    /// Ignore the graphs and scan exactly.
    pub exact: bool,
    /// Which plan indexed segments run: `Auto` (the cost model, the default) or one forced
    /// (benchmarks and tests; a plan a segment cannot run falls back to the cost model).
    pub plan: PlanHint,
    /// Stop with `Error::Timeout` once this instant has passed (checked between segments,
    /// while expanding `(apply …)`, evaluating filters over the memtable and in exact scans).
    /// Default none. `Query::with_timeout` sets it from now.
    pub deadline: Option<std::time::Instant>,
}

/// A plan forced on every indexed segment (see [`SearchParams::plan`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum PlanHint {
    /// The cost model chooses.
    #[default]
    Auto,
    /// Graph search (filtered when there is a filter).
    Graph,
    /// Score the filter's matches (by codes from 500 on) and re-rank.
    FilterFirst,
    /// Walk the coarse partitions nearest the query (segments built with partitions).
    Partition,
}

impl Default for SearchParams {
    fn default() -> Self {
        SearchParams {
            recall: 0.95,
            list: 0,
            beam_width: 4,
            exact: false,
            plan: PlanHint::Auto,
            deadline: None,
        }
    }
}

/// The plan a query ran on one segment (or the memtable).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum Plan {
    /// Every (matching) document scored exactly: the memtable, segments without a graph,
    /// boolean queries, `Query::exact`.
    #[default]
    Exact,
    /// The filter is selective enough that scoring its matches exactly is cheaper than a
    /// graph search.
    FilterFirst,
    /// Unfiltered graph search.
    Graph,
    /// Graph search that admits only matching nodes but traverses through the others, with
    /// the candidate list widened by 1/selectivity.
    FilteredGraph,
    /// A graph search found fewer than k live matches (or matches far rarer near the query
    /// than overall); the segment was then scored exactly.
    GraphThenExact,
    /// Filter-first over many matches: ranked by in-memory codes, the best re-ranked with
    /// full vectors.
    FilterFirstCodes,
    /// `GraphThenExact`, with the exact pass ranked by codes and re-ranked.
    GraphThenCodes,
    /// Radius search through the graph (filtered or not): the candidate list doubles while
    /// every candidate is inside the radius, up to 8× or the count bound; results are the
    /// candidates inside the radius, at most `k`.
    GraphRange,
    /// The coarse partitions (IVF lists) nearest the query, nearest first, until enough
    /// matches are scored by code: every member tested against the filter (dense filters) or
    /// only the filter's matches bucketed by list (sparse ones); the best re-ranked with full
    /// vectors.
    Partition,
}

/// What one segment did for a query (`explain`).
#[derive(Debug, Clone, Default, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct SegmentExplain {
    /// Segment id; `None` for the memtables.
    pub segment: Option<u64>,
    /// The plan that ran.
    pub plan: Plan,
    /// Documents in the segment.
    pub documents: u64,
    /// Live documents matching the filter (`None`: no filter).
    pub matches: Option<u64>,
    /// The filter's matches estimated before evaluation (deleted documents included), from
    /// posting lengths and attribute block min/max (`None`: no filter).
    pub estimate: Option<Estimate>,
    /// Candidate list of the graph search (0 if none ran).
    pub list: usize,
    /// Graph nodes expanded.
    pub nodes_visited: u64,
    /// Sectors read.
    pub sectors_read: u64,
    /// Partition plan: lists walked (0 if none).
    pub lists_probed: u64,
    /// Partition plan: list members tested (dense) or matches bucketed (sparse).
    pub members_scanned: u64,
    /// Time spent on this segment.
    pub micros: u64,
    /// The recall@k the segment's calibration predicted for the plan it chose (`None`: the
    /// segment has no calibration, or the query set an explicit list or plan).
    pub predicted_recall: Option<f64>,
    /// How concentrated the filter's matches are near the query, as the calibrated planner
    /// measured it (share among the nearest partitions' members over the share overall: 1
    /// spread like the data, below 1 anti-correlated; `None`: not measured).
    pub local_density: Option<[f64; 2]>,
    /// The same ratio among the query's `k / s` nearest nodes by code (s: the filter's
    /// selectivity; `None`: not measured — no filter, or a segment calibrated before the near
    /// scale existed).
    pub near_density: Option<f64>,
    /// Where the query lies, as the calibrated planner measured it: its squared distance to
    /// the nearest partition's centroid over that partition's mean squared member distance
    /// (about 1 for a query like the data; `None`: not measured).
    pub outside: Option<f64>,
}

/// Matching documents of a filter on one segment, estimated before it is evaluated:
/// `min <= actual <= max` always holds; `expected` is the point estimate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Estimate {
    /// Lower bound.
    pub min: u64,
    /// Point estimate (independence / uniformity assumptions).
    pub expected: u64,
    /// Upper bound.
    pub max: u64,
}

impl Estimate {
    /// The point estimate kept inside the bounds.
    fn clamped(mut self) -> Estimate {
        self.max = self.max.max(self.min);
        self.expected = self.expected.clamp(self.min, self.max);
        self
    }

    pub(crate) fn exact(n: u64) -> Estimate {
        Estimate {
            min: n,
            expected: n,
            max: n,
        }
    }

    /// AND of parts over `n` documents: at least what the parts must share
    /// (`Σ min − (k−1)·n`), at most the smallest part, expected `n · Π (e/n)`.
    pub(crate) fn and(parts: &[Estimate], n: u64) -> Estimate {
        let nf = n.max(1) as f64;
        let min_sum: u64 = parts.iter().map(|p| p.min).sum();
        let k = parts.len() as u64;
        Estimate {
            min: min_sum.saturating_sub(k.saturating_sub(1).saturating_mul(n)),
            expected: (nf
                * parts
                    .iter()
                    .map(|p| p.expected as f64 / nf)
                    .product::<f64>())
            .round() as u64,
            max: parts.iter().map(|p| p.max).min().unwrap_or(n),
        }
        .clamped()
    }

    /// OR of parts: at least the largest part, at most `min(n, Σ max)`, expected
    /// `n · (1 − Π (1 − e/n))`.
    pub(crate) fn or(parts: &[Estimate], n: u64) -> Estimate {
        let nf = n.max(1) as f64;
        Estimate {
            min: parts.iter().map(|p| p.min).max().unwrap_or(0),
            expected: (nf
                * (1.0
                    - parts
                        .iter()
                        .map(|p| 1.0 - p.expected as f64 / nf)
                        .product::<f64>()))
            .round() as u64,
            max: parts.iter().map(|p| p.max).sum::<u64>().min(n),
        }
        .clamped()
    }

    /// NOT over `n` documents.
    pub(crate) fn not(self, n: u64) -> Estimate {
        Estimate {
            min: n.saturating_sub(self.max),
            expected: n.saturating_sub(self.expected),
            max: n.saturating_sub(self.min),
        }
        .clamped()
    }
}

/// What a query cost (summed over segments), and per segment what ran.
#[derive(Debug, Clone, Default, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct QueryStats {
    /// Segments answered by the graph.
    pub graph_segments: u32,
    /// Segments answered by the partition walk (approximate, like the graph).
    pub partition_segments: u32,
    /// Segments (and the memtable) answered by an exact scan.
    pub exact_segments: u32,
    /// Graph nodes expanded (adjacency read).
    pub nodes_visited: u64,
    /// 4 KiB sectors read from the segment files (cache hits not counted).
    pub sectors_read: u64,
    /// Nodes served from the in-memory node cache.
    pub cache_hits: u64,
    /// Distance computations (codes and full precision).
    pub distance_computations: u64,
    /// Per segment (the memtables first): plan, matches, nodes, sectors, time.
    pub explain: Vec<SegmentExplain>,
    /// Terms the `(apply …)` operators expanded into (summed).
    pub apply_fanout: u64,
    /// Whether an `(apply …)` hit `Query::apply_fanout_max` and was truncated.
    pub apply_truncated: bool,
    /// Filtered graph searches that gave up on an anti-correlated filter (too few matches
    /// among the nodes expanded): their segments fell back to scanning the matches.
    pub anti_correlated_exits: u64,
}

impl QueryStats {
    pub(crate) fn add(&mut self, o: &QueryStats) {
        self.graph_segments += o.graph_segments;
        self.partition_segments += o.partition_segments;
        self.exact_segments += o.exact_segments;
        self.nodes_visited += o.nodes_visited;
        self.sectors_read += o.sectors_read;
        self.cache_hits += o.cache_hits;
        self.distance_computations += o.distance_computations;
        self.anti_correlated_exits += o.anti_correlated_exits;
    }
}

/// The database-wide memory budget of the ANN indexes, shared by every open segment.
#[derive(Debug)]
pub(crate) struct AnnBudget {
    limit: u64,
    used: std::sync::atomic::AtomicU64,
    /// Fill node caches at open (`AnnOptions::warm`).
    warm: bool,
}

impl AnnBudget {
    pub(crate) fn new(limit: u64, warm: bool) -> AnnBudget {
        AnnBudget {
            limit,
            used: std::sync::atomic::AtomicU64::new(0),
            warm,
        }
    }

    /// Whether segments fill their node cache when they open.
    pub(crate) fn warm(&self) -> bool {
        self.warm
    }

    /// Charge bytes that must be resident whatever the budget (codes).
    pub(crate) fn charge(&self, n: usize) {
        self.used
            .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
    }

    /// Reserve up to `want` bytes of what is left.
    pub(crate) fn take_up_to(&self, want: usize) -> usize {
        use std::sync::atomic::Ordering::Relaxed;
        let mut cur = self.used.load(Relaxed);
        loop {
            let take = (want as u64).min(self.limit.saturating_sub(cur));
            match self
                .used
                .compare_exchange_weak(cur, cur + take, Relaxed, Relaxed)
            {
                Ok(_) => return take as usize,
                Err(now) => cur = now,
            }
        }
    }

    pub(crate) fn release(&self, n: usize) {
        use std::sync::atomic::Ordering::Relaxed;
        let _ = self
            .used
            .fetch_update(Relaxed, Relaxed, |u| Some(u.saturating_sub(n as u64)));
    }
}

/// Visited marks as a bitset (small enough to stay in cache: a per-node stamp array missed
/// on most inserts in the query path); used by the graph build and the search, reset by clearing only the words a query touched.
#[derive(Default)]
pub(crate) struct Visited {
    words: Vec<u64>,
    touched: Vec<u32>,
}

impl Visited {
    pub(crate) fn reset(&mut self, n: usize) {
        for w in self.touched.drain(..) {
            if let Some(x) = self.words.get_mut(w as usize) {
                *x = 0;
            }
        }
        if self.words.len() < n.div_ceil(64) {
            self.words.resize(n.div_ceil(64), 0);
        }
    }

    #[inline]
    pub(crate) fn contains(&self, i: u32) -> bool {
        self.words
            .get((i / 64) as usize)
            .is_none_or(|x| x & (1u64 << (i % 64)) != 0)
    }

    /// Mark `i`; true if it was not marked yet (ids past the bitset count as marked).
    #[inline]
    pub(crate) fn insert(&mut self, i: u32) -> bool {
        let (w, bit) = ((i / 64) as usize, 1u64 << (i % 64));
        match self.words.get_mut(w) {
            Some(x) if *x & bit == 0 => {
                if *x == 0 {
                    self.touched.push(w as u32);
                }
                *x |= bit;
                true
            }
            _ => false,
        }
    }
}
