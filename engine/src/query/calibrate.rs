//! Measuring a segment's calibration (see `calibrated.rs` for what it holds and how the
//! planner uses it): its own vectors as queries, filters from its own terms and attributes
//! across selectivity and correlation with the query's region, exact ground truth, and every
//! plan run at growing effort until it finds all `k`, costs more than the exact plan, or has no
//! effort left to add.

use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rayon::prelude::*;

use super::calibrated::{
    walk_want, Calibration, Curve, Sample, CODES, FULL_BEFORE, GRAPH, PARTITION, PLANS,
};
use super::exec::{self, Target};
use crate::ann::QueryStats;
use crate::bitset::Bitset;
use crate::deadline::Deadline;
use crate::distance::search_distance as distance;
use crate::segment::Segment;
use crate::{Filter, Result, SearchParams};

/// Largest value a stored feature or time takes (finite in f32).
const FEATURE_MAX: f64 = 1e30;

/// `x` as a stored feature: within `0..=FEATURE_MAX` (NaN, which no measurement here should
/// produce, as the neutral 1).
fn stored(x: f64) -> f32 {
    if x.is_nan() {
        1.0
    } else {
        x.clamp(0.0, FEATURE_MAX) as f32
    }
}

/// Filters measured per calibration query (drawn at random from its candidates): the time
/// goes to more queries rather than every filter kind of few queries, since the queries'
/// variety (position, neighbourhood) is what a new query's features are matched against.
const FILTERS_PER_QUERY: usize = 8;

/// Matches the exact plan is timed on per sample (a prefix in ordinal order, the order it
/// reads them in).
const EXACT_PROBE: usize = 1024;

/// How a calibration is measured.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CalibrateOptions {
    /// The `k` the recall is measured at (the default query's).
    pub k: usize,
    /// Effort levels per plan: efforts `k · 2^0 … k · 2^(levels−1)`.
    pub levels: usize,
    /// Query vectors sampled at most, and at least (when the segment has them).
    pub queries_max: usize,
    pub queries_min: usize,
    /// Time after which no further round of queries starts (once `queries_min` are done).
    pub budget: Duration,
    pub seed: u64,
    /// `c` counts the nearest lists holding `nodes / local_div` members (fine, coarse): with
    /// the default √n lists of √n members, at 28k–1M nodes n/256 is 1–4 lists, n/32 5–31.
    pub local_div: [u32; 2],
}

impl Default for CalibrateOptions {
    fn default() -> Self {
        CalibrateOptions {
            k: 10,
            // k · 2^11 = 20,480 at k 10: past it the exact plan is cheaper on every segment
            // the calibration runs on (it stops a plan's levels there anyway).
            levels: 12,
            queries_max: 128,
            // The tail of the promise needs samples: with 32 queries (~250 samples) three
            // families of ../shared/data had 5.0–6.6 % of queries below 0.85 (bound 5 %) in
            // two builds; with 64 (~500) every family stayed at or under 2.0 % in three builds,
            // and data2's at or under 4.4 %; 128 (~1,000) gave ≤ 2.3 % for 1.6× the 64-query
            // calibration time. It costs build time on small segments (data, 28.7k × 384:
            // 8.8–11.1 s against 7.7 s uncalibrated and 8.4–9.0 s at 32), more than the
            // tenth of the build the time budget allows; the promise comes first.
            queries_min: 64,
            budget: Duration::from_secs(3600),
            seed: 0xCA11,
            local_div: [256, 32],
        }
    }
}

/// [`calibrate`] within `budget` (the rest default): what a segment writer calls on the
/// segment it just encoded (`segment::Calibrator`).
pub(crate) fn for_writer(
    seg: &Segment,
    budget: std::time::Duration,
) -> Result<Option<Calibration>> {
    calibrate(
        seg,
        &CalibrateOptions {
            budget,
            ..Default::default()
        },
    )
}

/// Measure `seg`'s calibration (`None`: no index, or too few vectors to sample).
pub(crate) fn calibrate(seg: &Segment, opts: &CalibrateOptions) -> Result<Option<Calibration>> {
    let Some(idx) = seg.ann() else {
        return Ok(None);
    };
    let k = opts.k.max(1);
    let nodes = idx.len();
    if nodes <= 2 * k {
        return Ok(None);
    }
    let started = Instant::now();
    let mut rng = StdRng::seed_from_u64(opts.seed);
    // Distinct query nodes, in a random order.
    let want = opts.queries_max.min(nodes / 4).max(1);
    let mut picked = std::collections::BTreeSet::new();
    let mut order = Vec::with_capacity(want);
    while order.len() < want {
        let node = rng.gen_range(0..nodes as u32);
        if picked.insert(node) {
            let other = idx.ordinal(rng.gen_range(0..nodes as u32));
            // Four kinds in turn: one of the segment's own vectors (excluded from its results
            // and hidden from the graph search); a vector moved a tenth of the way towards
            // another (a query like the data that is not in the index); a point between two
            // random vectors; a vector moved a quarter of the way (queries unlike the data).
            // Own vectors alone were optimistic: on ../shared/data, "own corpus AND NOT
            // label" measured 0.955 with 11 % of queries below 0.85 against a predicted
            // 0.989; with the mix (and the kernel of calibrated.rs), 0.957–0.981 and 3.6–9.7 %
            // across seven rebuilds at 32 queries; with every source hidden and 64 queries,
            // 0.986–0.987 and 1.0 % in three (docs/benchmarks.md).
            let kind = match order.len() % 4 {
                0 => Kind::Own,
                1 => Kind::Between(0.9, other),
                2 => Kind::Between(rng.gen_range(0.3f32..0.7), other),
                _ => Kind::Between(0.75, other),
            };
            order.push((idx.ordinal(node), kind, rng.gen::<u64>()));
        }
    }
    let round = rayon::current_num_threads().max(1) * 2;
    let mut samples = Vec::new();
    let (mut ns_sum, mut ns_n) = (0.0f64, 0usize);
    let mut done = 0usize;
    for chunk in order.chunks(round) {
        if done >= opts.queries_min && started.elapsed() >= opts.budget {
            break;
        }
        let measured: Vec<Result<(Vec<Sample>, f64)>> = chunk
            .par_iter()
            .map(|&(qo, kind, seed)| measure_query(seg, qo, kind, seed, opts))
            .collect();
        for m in measured {
            let (s, ns) = m?;
            samples.extend(s);
            ns_sum += ns;
            ns_n += 1;
        }
        done += chunk.len();
    }
    log::info!(
        "calibration: {} samples from {done} queries in {:.2} s (budget {:.2} s)",
        samples.len(),
        started.elapsed().as_secs_f64(),
        opts.budget.as_secs_f64()
    );
    Ok(Some(Calibration {
        k: k as u32,
        levels: opts.levels,
        exact_ns: (ns_sum / ns_n.max(1) as f64) as f32,
        local_div: opts.local_div,
        near: true,
        samples,
    }))
}

/// Queries a calibration from a user's query log measures at most: their exact ground truth
/// and plans cost about what 8 sample queries of the build cost each (more filters per query
/// when none are given).
pub(crate) const LOG_QUERIES_MAX: usize = 4096;

/// `seg`'s calibration measured on `queries` — a user's own query vectors, which need not
/// look like the documents (two-tower retrieval) — each unfiltered and with its filter from
/// `filters` (one per query, `None` = unfiltered only), or, without `filters`, with filters
/// drawn from the segment's terms near and far from it as the build does. Nothing is hidden:
/// the queries are not in the index. At most [`LOG_QUERIES_MAX`] queries (the first ones).
pub(crate) fn calibrate_from_queries(
    seg: &Segment,
    queries: &[Vec<f32>],
    filters: Option<&[Option<Filter>]>,
    opts: &CalibrateOptions,
) -> Result<Option<Calibration>> {
    if seg.ann().is_none() {
        return Ok(None);
    }
    if let Some(f) = filters {
        if f.len() != queries.len() {
            return Err(crate::Error::invalid(format!(
                "{} filters for {} calibration queries",
                f.len(),
                queries.len()
            )));
        }
    }
    let log = queries.get(..LOG_QUERIES_MAX).unwrap_or(queries);
    let measured: Vec<Result<(Vec<Sample>, f64)>> = log
        .par_iter()
        .enumerate()
        .map(|(i, q)| {
            let mut rng = StdRng::seed_from_u64(opts.seed ^ (i as u64).wrapping_mul(0x9E37_79B9));
            let given =
                filters.map(|f| f.get(i).cloned().flatten().into_iter().collect::<Vec<_>>());
            measure_vector(seg, q, None, given.as_deref(), &mut rng, opts)
        })
        .collect();
    let (mut samples, mut ns_sum, mut ns_n) = (Vec::new(), 0.0f64, 0usize);
    for m in measured {
        let (s, ns) = m?;
        samples.extend(s);
        ns_sum += ns;
        ns_n += 1;
    }
    Ok(Some(Calibration {
        k: opts.k.max(1) as u32,
        levels: opts.levels,
        exact_ns: (ns_sum / ns_n.max(1) as f64) as f32,
        local_div: opts.local_div,
        near: true,
        samples,
    }))
}

/// A calibration query: a vector `x` of the segment, or `t · x + (1 − t) · y` for it and
/// another `y`; `x` is hidden from the graph search and excluded from the results either way.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Own,
    Between(f32, usize),
}

/// One query made from ordinal `qo`: its samples, and the time of one exact distance.
fn measure_query(
    seg: &Segment,
    qo: usize,
    kind: Kind,
    seed: u64,
    opts: &CalibrateOptions,
) -> Result<(Vec<Sample>, f64)> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut q = Vec::new();
    if !seg.vector_into(qo, &mut q)? {
        return Ok((Vec::new(), 0.0));
    }
    let exclude = match kind {
        Kind::Own => Some(qo),
        Kind::Between(t, other) => {
            let mut y = Vec::new();
            if !seg.vector_into(other, &mut y)? {
                return Ok((Vec::new(), 0.0));
            }
            for (a, b) in q.iter_mut().zip(&y) {
                *a = t * *a + (1.0 - t) * b;
            }
            // `x` itself stays out of the index too (hidden and excluded): left in, a query
            // moved a tenth of the way has `x` as its nearest neighbour, and `x`'s curated
            // adjacency leads the graph search to the rest — the advantage hiding removes for
            // own vectors, which no new query has. Measured on ../shared/data at 64 queries,
            // two builds each: with `x` visible the families' shares below 0.85 were 0.3–3.6 %,
            // hidden 0.7–2.0 % (docs/benchmarks.md, "Calibration sample size").
            Some(qo)
        }
    };
    measure_vector(seg, &q, exclude, None, &mut rng, opts)
}

/// The samples of query vector `q` (with ordinal `exclude` hidden from the graph and excluded
/// from the results): unfiltered, and with each of `given` filters, or, without them, with
/// filters drawn from the terms near and far from `q`.
// Long (~200 lines) as one recipe: ground truth, then each plan at each effort on the same
// query, recorded in one sample; its steps share the query's hidden node and its filters.
fn measure_vector(
    seg: &Segment,
    q: &[f32],
    exclude: Option<usize>,
    given: Option<&[Filter]>,
    rng: &mut StdRng,
    opts: &CalibrateOptions,
) -> Result<(Vec<Sample>, f64)> {
    let Some(idx) = seg.ann() else {
        return Ok((Vec::new(), 0.0));
    };
    let k = opts.k.max(1);
    let metric = seg.schema().metric;
    if q.len() != seg.schema().dim as usize {
        return Err(crate::Error::invalid(format!(
            "a calibration query has {} dimensions, the schema {}",
            q.len(),
            seg.schema().dim
        )));
    }
    // Exact distances to every vector (the ground truth), timed as the exact plan scores.
    let n = seg.len();
    let t = Instant::now();
    let mut dist = vec![f32::INFINITY; n];
    let mut v = Vec::new();
    let mut scored = 0usize;
    for (i, d) in dist.iter_mut().enumerate() {
        if Some(i) != exclude && seg.vector_into(i, &mut v)? {
            *d = distance(metric, q, &v);
            scored += 1;
        }
    }
    let exact_ns = t.elapsed().as_nanos() as f64 / scored.max(1) as f64;
    let at = |i: usize| dist.get(i).copied().unwrap_or(f32::INFINITY);
    let mut by_dist: Vec<usize> = (0..n).filter(|&i| at(i).is_finite()).collect();
    by_dist.sort_unstable_by(|&a, &b| at(a).total_cmp(&at(b)).then(a.cmp(&b)));
    let near: Vec<usize> = by_dist.iter().copied().take(50).collect();
    let far: Vec<usize> = by_dist
        .get(by_dist.len() / 2..)
        .unwrap_or_default()
        .to_vec();
    let mut filters: Vec<Option<Filter>> = vec![None];
    match given {
        Some(g) => filters.extend(g.iter().cloned().map(Some)),
        None => filters.extend(draw_filters(seg, &near, &far, rng)?.into_iter().map(Some)),
    }

    let mut me = Bitset::new(n);
    if let Some(x) = exclude {
        me.set(x);
    }
    let target = Target {
        seg,
        idx,
        metric,
        q,
        k,
    };
    let mut out = Vec::new();
    // Filters that select the same documents (a far corpus drawn twice, `(not own-corpus)`
    // of a two-corpus set) are one sample: copies would count as independent evidence.
    let mut seen = std::collections::HashSet::new();
    for f in &filters {
        let bits = match f {
            Some(f) => {
                let mut b = seg.eval(f);
                b.and_not_with(&me);
                if !seen.insert(b.to_le_bytes()) {
                    continue;
                }
                Some(b)
            }
            None => None,
        };
        let admits = |i: usize| Some(i) != exclude && bits.as_ref().is_none_or(|b| b.get(i));
        // The true k nearest matches.
        let truth: Vec<usize> = by_dist
            .iter()
            .copied()
            .filter(|&i| admits(i))
            .take(k)
            .collect();
        if truth.len() < k {
            continue; // too few matches: every plan answers such a filter exactly
        }
        let matches = match &bits {
            Some(b) => b.iter().filter(|&i| idx.node_of(i).is_some()).count(),
            None => idx.len().saturating_sub(usize::from(exclude.is_some())),
        };
        let by_node = bits.as_ref().map(|b| idx.to_node_order(b));
        let features = idx.query_features(
            q,
            by_node.as_ref().map(|b| (b, matches as u64)),
            opts.local_div,
            Some(k),
        );
        let c = features.map_or([1.0; 3], |f| f.density);
        let outside = features.map_or(1.0, |f| f.outside);
        // The exact plan on (a prefix of) these matches, in their own access pattern.
        let exact_per = match &bits {
            None => exact_ns,
            Some(b) => {
                let mut prefix = Bitset::new(n);
                let mut took = 0usize;
                for i in b.iter().take(EXACT_PROBE) {
                    prefix.set(i);
                    took += 1;
                }
                let probe = exec::Exact {
                    seg,
                    metric,
                    q,
                    k,
                    radius: None,
                };
                let t = Instant::now();
                probe.run(
                    &prefix,
                    &|_| false,
                    &Deadline::none(),
                    &mut QueryStats::default(),
                )?;
                t.elapsed().as_nanos() as f64 / took.max(1) as f64
            }
        };
        let exact_cost = exact_per * matches as f64;
        let found = |got: &[(f32, usize)]| {
            got.iter()
                .take(k)
                .filter(|(_, i)| truth.contains(i))
                .count() as u8
        };
        let mut curves: [Curve; PLANS] = std::array::from_fn(|_| Curve::not_run(opts.levels));
        // Each plan, effort k·2^level, until it finds all k, costs more than exact, or has
        // no effort left to add.
        let mut run = |plan: usize,
                       most: usize,
                       go: &mut dyn FnMut(usize) -> Result<Vec<(f32, usize)>>|
         -> Result<()> {
            let Some(curve) = curves.get_mut(plan) else {
                return Ok(());
            };
            for level in 0..opts.levels {
                let effort = k.saturating_mul(1 << level);
                let t = Instant::now();
                let got = go(effort)?;
                let ns = t.elapsed().as_nanos().min(u128::from(u32::MAX)) as u32;
                let f = found(&got);
                if let (Some(cf), Some(cn)) = (curve.found.get_mut(level), curve.ns.get_mut(level))
                {
                    *cf = f;
                    *cn = ns;
                }
                if usize::from(f) >= k || effort >= most {
                    for x in curve.found.iter_mut().skip(level + 1) {
                        *x = FULL_BEFORE;
                    }
                    break;
                }
                if f64::from(ns) > 1.5 * exact_cost {
                    break; // later levels stay NOT_RUN
                }
            }
            Ok(())
        };
        let mut stats = QueryStats::default();
        run(GRAPH, idx.len(), &mut |list| {
            let params = SearchParams {
                list,
                ..SearchParams::default()
            };
            exec::graph(target, &params, &admits, 0.0, exclude, &mut stats)
        })?;
        if idx.partitions() > 0 {
            run(PARTITION, matches, &mut |effort| {
                Ok(exec::partition(
                    target,
                    walk_want(k, effort),
                    1,
                    by_node.as_ref(),
                    exclude.is_some().then_some(&me),
                    None,
                    &mut stats,
                )?
                .0)
            })?;
        }
        if let Some(b) = &bits {
            run(CODES, matches, &mut |pool| {
                exec::codes(target, pool, &mut b.iter(), &admits, &mut stats)
            })?;
        }
        out.push(Sample {
            s: (matches as f64 / idx.len().max(1) as f64).clamp(f64::MIN_POSITIVE, 1.0) as f32,
            // Features are stored as finite f32 (a reader refuses anything else): a spread
            // near zero must not turn the position into infinity.
            c: c.map(stored),
            outside: stored(outside),
            matches: u32::try_from(matches).unwrap_or(u32::MAX),
            filtered: bits.is_some(),
            exact_ns: stored(exact_per),
            curves,
        });
    }
    Ok((out, exact_ns))
}

/// Filters for one calibration query (at most [`FILTERS_PER_QUERY`]), from the terms of
/// documents `near` it (correlated),
/// of random documents (spread like the data, drawn by frequency), of documents `far` from it
/// (anti-correlated), their AND / OR / NOT, and ranges of an attribute between two random
/// documents' values.
// ~120 lines: one recipe per filter family, in the order the samples record them; split, the
// families would each need the same draw state passed around.
fn draw_filters(
    seg: &Segment,
    near: &[usize],
    far: &[usize],
    rng: &mut StdRng,
) -> Result<Vec<Filter>> {
    let n = seg.len();
    // The near documents' terms are read once (they serve the counts and the draws).
    let near_terms: Vec<Vec<String>> = near
        .iter()
        .map(|&i| Ok(seg.doc(i)?.terms))
        .collect::<Result<_>>()?;
    let pick = |terms: &[String], rng: &mut StdRng| {
        terms.get(rng.gen_range(0..terms.len().max(1))).cloned()
    };
    let term_of = |from: &[usize], rng: &mut StdRng| -> Result<Option<String>> {
        for _ in 0..4 {
            let Some(&i) = from.get(rng.gen_range(0..from.len().max(1))) else {
                return Ok(None);
            };
            let terms = seg.doc(i)?.terms;
            if !terms.is_empty() {
                return Ok(pick(&terms, rng));
            }
        }
        Ok(None)
    };
    let near_term = |rng: &mut StdRng| -> Option<String> {
        (0..4).find_map(|_| {
            pick(
                near_terms.get(rng.gen_range(0..near_terms.len().max(1)))?,
                rng,
            )
        })
    };
    let all: Vec<usize> = (0..16).map(|_| rng.gen_range(0..n.max(1))).collect();
    let t = |x: Option<String>| x.map(Filter::Term);
    // The terms of the query's region by how many of its nearest documents carry them: the
    // most common one that is specific (on at most a fifth of the segment: a label) and the
    // most common broader one (a corpus). "Its corpus but not its label" is what real
    // families ask for and random draws of near terms rarely produce.
    let mut counts: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for term in near_terms.iter().flatten() {
        *counts.entry(term.as_str()).or_default() += 1;
    }
    let mut by_count: Vec<(usize, &str)> = counts.into_iter().map(|(t, c)| (c, t)).collect();
    by_count.sort_unstable_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(b.1)));
    // Posting lengths (a new segment has no deletions).
    let global = |term: &str| seg.estimate(&Filter::Term(term.to_owned())).expected as usize;
    let mut label: Option<(String, usize)> = None;
    let mut corpus: Option<String> = None;
    for &(_, term) in by_count.iter().take(12) {
        let g = global(term);
        match &label {
            None if g * 5 <= n => label = Some((term.to_owned(), g)),
            Some((_, lg)) if g > *lg && corpus.is_none() => corpus = Some(term.to_owned()),
            _ => {}
        }
    }
    let label = t(label.map(|x| x.0));
    let corpus = t(corpus);
    let near1 = t(near_term(rng));
    let near2 = t(near_term(rng));
    let rand1 = t(term_of(&all, rng)?);
    let rand2 = t(term_of(&all, rng)?);
    let far1 = t(term_of(far, rng)?);
    let far2 = t(term_of(far, rng)?);
    let far3 = t(term_of(far, rng)?);
    let not = |x: &Option<Filter>| x.clone().map(|f| Filter::Not(Box::new(f)));
    let and =
        |a: &Option<Filter>, b: &Option<Filter>| Some(Filter::And(vec![a.clone()?, b.clone()?]));
    let or =
        |a: &Option<Filter>, b: &Option<Filter>| Some(Filter::Or(vec![a.clone()?, b.clone()?]));
    let mut out: Vec<Filter> = [
        near1.clone(),
        rand1.clone(),
        far1.clone(),
        not(&near1),
        not(&rand1),
        and(&near1, &near2),
        and(&near1, &not(&rand1)),
        and(&far1, &far2),
        or(&rand1, &rand2),
        or(&far1, &near2),
        // Anti-correlated filters are what the uncalibrated model got wrong: a few more.
        not(&near2),
        far3.clone(),
        and(&far3, &not(&near1)),
        // A broad term of the query's region without a narrow one (its corpus but not its
        // label): the nearest matches are then not in the nearest lists.
        and(&near1, &not(&near2)),
        and(&near2, &not(&near1)),
        not(&label),
        or(&label, &far1),
    ]
    .into_iter()
    .flatten()
    .collect();
    let attrs = seg.schema().attrs.len();
    if attrs > 0 {
        let a = rng.gen_range(0..attrs);
        let x = seg.attr(a, rng.gen_range(0..n.max(1)));
        let y = seg.attr(a, rng.gen_range(0..n.max(1)));
        if let (Some(x), Some(y)) = (x, y) {
            if let Some(name) = seg.schema().attrs.get(a) {
                out.push(Filter::Range {
                    attr: name.clone(),
                    lo: x.min(y),
                    hi: x.max(y),
                });
            }
        }
    }
    // The query's own label and "its corpus but not its label" every time (the rest are
    // drawn): the filters real applications put on a query are mostly its own tags, and the
    // second is the hardest of them for a graph (the nearest documents are all excluded).
    out.shuffle(rng);
    out.truncate(FILTERS_PER_QUERY.saturating_sub(2));
    let hard = and(&corpus, &not(&label));
    out.extend([label, hard].into_iter().flatten());
    Ok(out)
}
