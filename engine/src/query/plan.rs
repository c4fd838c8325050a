//! The uncalibrated cost model: the planner of segments that carry no calibration section
//! (written before it existed, or too small to calibrate), and of queries that set an explicit
//! list (`SearchParams::list`, the expert override). Its constants were measured on the
//! generated social set and the 28k shared set; the calibrated planner (`calibrated.rs`)
//! replaces them with what each segment measured about itself.

use crate::ann::disk::PartitionWant;
use crate::ann::PlanHint;
use crate::search::Query;

pub(crate) use crate::ann::{effort_list, LIST_UNCALIBRATED};

/// From this many matches on, filter-first ranks by codes and re-ranks (below it, scoring every
/// match at full precision is as fast and exact).
pub(crate) const CODE_SCAN_MIN: usize = 500;

/// Candidates a code scan over `m` matches re-ranks with full vectors. More for a large match
/// set: at 100k matches the codes' top 200 held 94 % of the true top 10 (anti-correlated 10 %
/// bucket, 1M × 64).
pub(crate) fn rerank_pool(k: usize, m: usize) -> usize {
    (k * 10).max(200).max((m / 200).min(2000))
}

/// A filtered graph search's list. The search keeps every admitted neighbour it scores (by
/// code) as a result candidate and re-ranks the best with exact distances, so a match counts
/// once it is *seen* near the query; the true `k` nearest matches lie among about the `k / s`
/// nearest nodes at selectivity `s`, so the list covers `FILTER_WIDEN · k / s` nodes, and at
/// least `L / s^¼` (at high selectivity the list must still hold enough matches). Measured on
/// 1M × 64 (`strata bench filtered --dataset social`): at 10 % this list (114) gives recall
/// of at least 0.989 at 2× the QPS of the earlier 3k/s (300); lists of ~200 at 1 % lost
/// recall (0.86), where the code scan wins anyway.
const FILTER_WIDEN: f64 = 1.0;

/// Partition plan: accepted nodes scored by code per unit of `L` (the search-list knob the
/// user turns for recall), and per `L` and unit of selectivity.
const PARTITION_TARGET_PER_L: usize = 16;
const PARTITION_MEMBERS_PER_L: usize = 160;

/// Candidates a partition walk hands to the (adaptive) re-rank: as many as a code scan's,
/// or a tenth of what it scored —
/// the re-rank stops by itself where codes rank well (1M × 64 social set: ~40 of 400 at
/// 100 %), and goes deeper where they do not (32-d Gaussian clusters with 8-byte codes: a
/// pool of 1/40 gave recall 0.82).
fn partition_pool(k: usize, scored: usize) -> usize {
    rerank_pool(k, 0).max(scored / 10)
}

/// A partition walk whose adaptive re-rank used up the whole pool without its stop firing
/// walks again with a pool this many times longer: the matches are at nearly equal distances,
/// which codes rank poorly (a correlated 0.1 % filter seen from another cluster: 1M × 64
/// social, `g1000:0`, recall 0.955 with a pool of 200, 0.994 with 800 — 141 more exact
/// distances per query). A longer pool for every walk cost ~10 % of QPS on the 10 % filters
/// (every candidate then passes the pool's bound and has its ordinal looked up).
const PARTITION_POOL_RETRY: usize = 4;

/// A partition walk past its target (see `PartitionWant::k`) stops at this many times the
/// target whatever the tail estimate says. 1M × 64 social, the anti-correlated 10 % filter
/// at the default L = 128: the estimate keeps walking to the limit (89 lists), recall 0.69
/// at the target → 0.992; no other of the 26 filters moved by more than a list.
const PARTITION_WALK_LIMIT: usize = 8;

/// A partition walk goes past its target when the lists not walked are expected to hold more
/// than this many matches nearer than the `k`-th found, and goes on while they hold more than
/// `PARTITION_TAIL_STOP` (0.2 of 10: a 2 % recall loss, if the model is right) — both at the
/// default L, scaled by default L / L so that L stays the recall/speed knob: a smaller L
/// tolerates more misses (a random 1 % filter at L = 16 reached 0.951 at its target and went
/// on past it at 3× the cost with unscaled bars), a larger one fewer. The start bar is above
/// the stop bar so that filters spread like the data stay at their target, while an
/// anti-correlated one (recall 0.69 at L = 128: ~3 of 10 missed) goes on.
const PARTITION_TAIL_START: f64 = 2.0;
const PARTITION_TAIL_STOP: f64 = 0.2;

/// What the cost model needs of a segment's index.
#[derive(Debug, Clone, Copy)]
pub(crate) struct IndexShape {
    pub nodes: usize,
    pub degree: usize,
    /// Coarse partitions (0: none).
    pub lists: usize,
}

/// The plan picked for one segment, with its effort.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Choice {
    /// Graph search with this candidate list; `guarded`: the uncalibrated model's
    /// anti-correlation exits apply (a calibrated choice has measured them).
    Graph { list: usize, guarded: bool },
    /// Score the matches and keep the `k` nearest: by code with a re-rank pool of `pool`
    /// (`None`: every match at full precision, exact).
    FilterFirst { pool: Option<usize> },
    /// Walk the nearest partitions (a pool that fails to converge walks again `retry` times
    /// longer; 1: no retry).
    Partition { want: PartitionWant, retry: usize },
}

/// What the planner decided for one segment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Decision {
    pub choice: Choice,
    /// The filter-first pool a graph search that fell back uses (`None`: exact).
    pub fallback_pool: Option<usize>,
    /// The recall@k the calibration predicts for the choice (`None`: uncalibrated).
    pub predicted_recall: Option<f64>,
    /// The filter's local density near the query the calibrated choice used (`None`:
    /// uncalibrated or no filter).
    pub local_density: Option<[f64; 2]>,
    /// The near-scale density the calibrated choice used (`None`: not measured).
    pub near_density: Option<f64>,
    /// The query's position the calibrated choice used (`None`: uncalibrated, or the index
    /// has no partitions).
    pub outside: Option<f64>,
}

/// Cost units: one unit is a full-precision distance to a vector fetched from a random place
/// (graph node, re-rank) — about 150 ns on the benchmark machine (AMD EPYC, 64-d: a graph
/// expansion of 48 code distances measured ~13 units). The others, relative to it:
mod cost {
    /// A code distance to a node reached by a random access (graph neighbour, sparse match).
    pub const CODE_RANDOM: f64 = 0.25;
    /// A code distance read in order (a partition's members are consecutive nodes).
    pub const CODE_SEQ: f64 = 0.03;
    /// One 64-bit word of a partition's range of the node-ordered filter bitmap.
    pub const BITMAP_WORD: f64 = 0.01;
    /// A distance to a centroid (in order, in memory), per 64 dimensions.
    pub const CENTROID_PER_64D: f64 = 0.05;
}

/// The cost model of a k-NN query on a segment with a graph, in the units of [`cost`]: the
/// cheapest of
///
/// - **filter-first**: one full distance per match, or, from `CODE_SCAN_MIN` matches, one code
///   distance per match plus a re-rank pool;
/// - **graph**: a search that admits only matching nodes needs about `max(L / s^¼, k / s)`
///   expansions at selectivity `s` (traversing non-matching nodes on the way), each a full
///   distance and about `R` code distances — assumption: matches are spread over the graph
///   like the query's neighbourhood (a correlated filter does better; an anti-correlated one
///   is detected during the search and falls back to filter-first);
/// - **partition** (segments with lists, k-NN without a radius): the centroid distances, then
///   the nearest lists until `16 L` matches are scored (at least `L / 8` lists): dense, about
///   `16 L / s` members tested and `16 L` codes read in order; sparse, every match bucketed
///   and `16 L` codes read at random — assumption: matches spread over the lists like the
///   vectors (an anti-correlated filter walks further — up to `PARTITION_WALK_LIMIT` times
///   the target when the walk's tail estimate says the lists left hold nearer matches — at
///   a cost the model does not count).
///
/// `q.ann.plan` forces a plan where the segment can run it.
pub(crate) fn choose_plan(q: &Query, shape: IndexShape, matches: Option<u64>) -> Decision {
    let l = effort_list(q.ann.list).max(q.k).max(1);
    let nodes = shape.nodes.max(1);
    let m = matches.unwrap_or(nodes as u64);
    let s = (m as f64 / nodes as f64).min(1.0);
    let list = if matches.is_none() {
        l
    } else {
        (FILTER_WIDEN * q.k.max(1) as f64 / s.max(1e-9))
            .max(l as f64 / s.max(1e-9).powf(0.25))
            .ceil()
            .min(nodes.max(l) as f64) as usize
    }
    .max(l);
    let graph_cost = list as f64 * (1.0 + shape.degree as f64 * cost::CODE_RANDOM);
    let first_cost = match matches {
        None => f64::INFINITY,
        Some(m) if m as usize >= CODE_SCAN_MIN => {
            m as f64 * cost::CODE_RANDOM + rerank_pool(q.k, m as usize) as f64
        }
        Some(m) => m as f64,
    };
    let partition = (shape.lists > 0 && q.radius.is_none() && m > 0).then(|| {
        // Matches to score: `16 L`, and at high selectivity `160 L · s` — the lists must
        // also cover the query's neighbourhood (its true neighbours near a list's border lie
        // in the next lists too), measured on 1M × 64: 100 % needed ~4,000 codes.
        let target = (l.saturating_mul(PARTITION_TARGET_PER_L) as f64)
            .max(l as f64 * PARTITION_MEMBERS_PER_L as f64 * s)
            .max(q.k as f64) as usize;
        let per_list = nodes as f64 / shape.lists as f64;
        let walked = (target as f64 / (s.max(1e-9) * per_list)).min(shape.lists as f64);
        let scored = (walked * per_list * s).min(m as f64);
        let dim_units = (q.vector.as_ref().map_or(64, Vec::len) as f64 / 64.0).max(0.25);
        let walk = walked * per_list / 64.0 * cost::BITMAP_WORD + scored * cost::CODE_SEQ;
        let reranked = partition_pool(q.k, scored as usize);
        // The tail bars scale with the user's effort knob, as the target does.
        let tail_scale = LIST_UNCALIBRATED as f64 / l as f64;
        let fixed = shape.lists as f64 * cost::CENTROID_PER_64D * dim_units + reranked as f64;
        (
            fixed + walk,
            PartitionWant {
                target,
                pool: reranked,
                k: q.k,
                limit: target.saturating_mul(PARTITION_WALK_LIMIT),
                tail_start: PARTITION_TAIL_START * tail_scale,
                tail_stop: PARTITION_TAIL_STOP * tail_scale,
            },
        )
    });
    let codes_pool = match matches {
        Some(m) if m as usize >= CODE_SCAN_MIN => Some(rerank_pool(q.k, m as usize)),
        _ => None,
    };
    let decide = |choice| Decision {
        choice,
        fallback_pool: codes_pool,
        predicted_recall: None,
        local_density: None,
        near_density: None,
        outside: None,
    };
    let graph = Choice::Graph {
        list,
        guarded: true,
    };
    let first = Choice::FilterFirst { pool: codes_pool };
    let walk = |want| Choice::Partition {
        want,
        retry: PARTITION_POOL_RETRY,
    };
    match q.ann.plan {
        PlanHint::Graph => return decide(graph),
        PlanHint::FilterFirst if matches.is_some() => return decide(first),
        PlanHint::Partition => {
            if let Some((_, want)) = partition {
                return decide(walk(want));
            }
        }
        _ => {}
    }
    if m == 0 {
        return decide(first);
    }
    let mut best = (graph_cost, graph);
    if first_cost < best.0 {
        best = (first_cost, first);
    }
    if let Some((c, want)) = partition {
        if c < best.0 {
            best = (c, walk(want));
        }
    }
    decide(best.1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Filter, PlanHint};

    const SHAPE: IndexShape = IndexShape {
        nodes: 100_000,
        degree: 48,
        lists: 316,
    };

    fn knn() -> Query {
        Query::knn(vec![0.5; 64], 10)
    }

    fn filtered() -> Query {
        knn().with_filter(Filter::Term("lang:en".into()))
    }

    #[test]
    fn an_unfiltered_query_searches_the_graph_at_its_list() {
        let no_lists = IndexShape { lists: 0, ..SHAPE };
        let d = choose_plan(&knn(), no_lists, None);
        assert_eq!(
            d.choice,
            Choice::Graph {
                list: LIST_UNCALIBRATED,
                guarded: true
            }
        );
        assert_eq!(d.fallback_pool, None);
        let d = choose_plan(&knn().with_search_list(300), no_lists, None);
        assert!(matches!(d.choice, Choice::Graph { list: 300, .. }));
        // k above the list: the list grows to k.
        let d = choose_plan(&Query::knn(vec![0.5; 64], 500), no_lists, None);
        assert!(matches!(d.choice, Choice::Graph { list: 500, .. }));
    }

    #[test]
    fn few_matches_are_scored_directly_and_none_need_no_search() {
        let d = choose_plan(&filtered(), SHAPE, Some(40));
        assert_eq!(d.choice, Choice::FilterFirst { pool: None });
        let d = choose_plan(&filtered(), SHAPE, Some(0));
        assert!(matches!(d.choice, Choice::FilterFirst { .. }));
        // From CODE_SCAN_MIN matches on, filter-first ranks by codes and re-ranks a pool,
        // which is also every other plan's fallback.
        let d = choose_plan(&filtered(), SHAPE, Some(CODE_SCAN_MIN as u64));
        assert_eq!(
            d.fallback_pool,
            Some(rerank_pool(10, CODE_SCAN_MIN)),
            "{d:?}"
        );
    }

    #[test]
    fn the_choice_moves_to_filter_first_as_matches_fall_and_never_back() {
        let mut seen_first = false;
        let mut last_list = 0usize;
        for m in (0..=17).rev().map(|e| 1u64 << e).chain([0]) {
            let d = choose_plan(&filtered(), IndexShape { lists: 0, ..SHAPE }, Some(m));
            match d.choice {
                Choice::FilterFirst { .. } => seen_first = true,
                Choice::Graph { list, .. } => {
                    assert!(!seen_first, "graph again at {m} matches after filter-first");
                    assert!(list >= last_list, "the graph list shrank as matches fell");
                    assert!(list <= SHAPE.nodes);
                    last_list = list;
                }
                Choice::Partition { .. } => panic!("no lists, no partition plan"),
            }
        }
        assert!(seen_first);
    }

    #[test]
    fn hints_force_a_plan_the_segment_can_run_and_radius_never_walks_partitions() {
        let d = choose_plan(&filtered().with_plan(PlanHint::Graph), SHAPE, Some(5));
        assert!(matches!(d.choice, Choice::Graph { .. }));
        let d = choose_plan(
            &filtered().with_plan(PlanHint::Partition),
            SHAPE,
            Some(50_000),
        );
        assert!(matches!(d.choice, Choice::Partition { .. }));
        if let Choice::Partition { want, .. } = d.choice {
            assert!(want.target >= 10 && want.limit >= want.target && want.pool >= 10);
        }
        // No lists: the hint cannot be honoured; the cost model decides.
        let no_lists = IndexShape { lists: 0, ..SHAPE };
        let d = choose_plan(
            &filtered().with_plan(PlanHint::Partition),
            no_lists,
            Some(50_000),
        );
        assert!(!matches!(d.choice, Choice::Partition { .. }));
        // Filter-first needs a filter.
        let d = choose_plan(&knn().with_plan(PlanHint::FilterFirst), no_lists, None);
        assert!(matches!(d.choice, Choice::Graph { .. }));
        for m in [100u64, 5_000, 50_000, 100_000] {
            let d = choose_plan(&filtered().with_radius(1.0), SHAPE, Some(m));
            assert!(!matches!(d.choice, Choice::Partition { .. }), "{m}");
        }
    }
}
