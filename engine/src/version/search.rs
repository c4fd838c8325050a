//! The read path's search: one query over a snapshot — the memtable by brute force, then
//! each segment by the plan the (calibrated) planner picks, merged by (distance, key).

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::Arc;

use super::{LiveSegment, Snapshot};
use crate::ann::disk::DiskIndex;
use crate::ann::{Plan, PlanHint, QueryStats, SegmentExplain};
use crate::bitset::Bitset;
use crate::deadline::Deadline;
use crate::filter::docs::MemDocs;
use crate::memtable::Entry;
use crate::query::calibrated;
use crate::query::exec::{self, Target};
use crate::query::plan::{self, Choice, IndexShape};
use crate::search::{exact, Hit, Query};
use crate::{Document, Filter, Metric, Result};

/// What every segment's search shares within one query.
struct Ctx<'a> {
    q: &'a Query,
    /// The memtable's entries as this query sees them (they shadow segment copies).
    mem: &'a BTreeMap<Vec<u8>, Entry>,
    deadline: &'a Deadline,
}

/// A graph search's inputs on one segment.
struct GraphRun<'a> {
    target: Target<'a>,
    idx: &'a DiskIndex,
    list: usize,
    /// Uncalibrated: give up early on an anti-correlated filter (and fall back).
    guarded: bool,
    /// Matches with a vector (`None`: no filter).
    knn_matches: Option<u64>,
    accept: &'a dyn Fn(usize) -> bool,
    filtered: bool,
}

impl Snapshot {
    /// Run a query. Boolean, filtered, radius and `exact()` queries equal brute force over
    /// this snapshot; unfiltered k-NN queries use the segments' graphs where they have one.
    pub fn search(&self, q: &Query) -> Result<Vec<Hit>> {
        Ok(self.search_with_stats(q)?.0)
    }

    /// [`Snapshot::search`], also reporting what the query cost.
    pub fn search_with_stats(&self, q: &Query) -> Result<(Vec<Hit>, QueryStats)> {
        q.validate(&self.schema)?;
        // Distances are reported (and radii given) in `crate::distance`'s convention; the
        // search itself ranks by `search_distance` (Euclidean, not squared, for L2).
        let metric = self.schema.metric;
        let user_radius = q.radius;
        let q = in_search_units(q, metric);
        let deadline = Deadline::at(q.ann.deadline);
        let mut stats = QueryStats::default();
        // The memtable as this query sees it, read once: its entries (shadowing segment
        // copies) and its live documents, which filters (`(apply …)` expansions included) are
        // evaluated over by `MemDocs` — large ones through a term index built once per query.
        let mem = self.memtable_entries(Bound::Unbounded, Bound::Unbounded);
        let mem_docs: Vec<Arc<Document>> = mem.values().flatten().cloned().collect();
        let mem_eval = MemDocs::new(&mem_docs);
        let q = self.resolve_filter(q, &mem, &mem_eval, &deadline, &mut stats)?;
        let mut hits = self.search_memtable(&q, &mem_docs, &mem_eval, &deadline, &mut stats)?;
        // ...and each segment by the plan its cost model picks.
        let ctx = Ctx {
            q: &q,
            mem: &mem,
            deadline: &deadline,
        };
        for ls in &self.version.segments {
            deadline.check("searching the segments")?;
            let ex = self.search_segment(&ctx, ls, &mut stats, &mut hits)?;
            stats.explain.push(ex);
        }
        Ok((merge(hits, &q, metric, user_radius), stats))
    }

    /// `(apply …)` becomes plain terms, evaluated against this snapshot, and the mandatory
    /// filter is AND-ed in — before any plan is chosen, so no plan can see a document it
    /// excludes.
    fn resolve_filter<'q, 'm>(
        &self,
        q: Cow<'q, Query>,
        mem: &'m BTreeMap<Vec<u8>, Entry>,
        mem_eval: &'m MemDocs<'m>,
        deadline: &'m Deadline,
        stats: &mut QueryStats,
    ) -> Result<Cow<'q, Query>> {
        Ok(match (&q.filter, &self.mandatory) {
            (Some(f), _) if f.has_apply() || self.mandatory.is_some() => {
                let f = if f.has_apply() {
                    let mut ctx = Resolve {
                        mem,
                        docs: mem_eval,
                        deadline,
                        fanout_max: q.apply_fanout_max,
                        done: HashMap::new(),
                    };
                    self.resolve(f, &mut ctx, stats)?
                } else {
                    f.clone()
                };
                let mut r = q.into_owned();
                r.filter = Some(match &self.mandatory {
                    Some(m) => Filter::And(vec![Filter::clone(m), f]),
                    None => f,
                });
                Cow::Owned(r)
            }
            (None, Some(m)) => {
                let mut r = q.into_owned();
                r.filter = Some(Filter::clone(m));
                Cow::Owned(r)
            }
            _ => q,
        })
    }

    /// Memtable candidates: the filter through the memtable's term index, then brute force.
    fn search_memtable(
        &self,
        q: &Query,
        mem_docs: &[Arc<Document>],
        mem_eval: &MemDocs<'_>,
        deadline: &Deadline,
        stats: &mut QueryStats,
    ) -> Result<Vec<Hit>> {
        let t = std::time::Instant::now();
        let mem_match = q
            .filter
            .as_ref()
            .map(|f| mem_eval.eval(f, deadline))
            .transpose()?;
        let matching_mem = mem_docs
            .iter()
            .enumerate()
            .filter(|(i, _)| mem_match.as_ref().is_none_or(|b| b.get(*i)))
            .map(|(_, d)| d);
        let hits = exact(q, &self.schema, matching_mem, deadline)?;
        stats.exact_segments += 1;
        stats.explain.push(SegmentExplain {
            segment: None,
            plan: Plan::Exact,
            documents: mem_docs.len() as u64,
            matches: None,
            micros: t.elapsed().as_micros() as u64,
            ..SegmentExplain::default()
        });
        Ok(hits)
    }

    /// One segment: evaluate the filter, let the planner choose (calibrated, or the fixed
    /// model), run the plan, fall back to filter-first when a graph search comes up short;
    /// pushes the segment's hits and returns what it did.
    fn search_segment(
        &self,
        c: &Ctx<'_>,
        ls: &LiveSegment,
        stats: &mut QueryStats,
        hits: &mut Vec<Hit>,
    ) -> Result<SegmentExplain> {
        let (q, mem) = (c.q, c.mem);
        let t = std::time::Instant::now();
        let shadowed = |i: usize| mem.contains_key(ls.seg.key(i));
        let mut ex = SegmentExplain {
            segment: Some(ls.seg.id),
            documents: ls.seg.len() as u64,
            ..SegmentExplain::default()
        };
        ex.estimate = q.filter.as_ref().map(|f| ls.seg.estimate(f));
        // The filter as a bitmap of live matching ordinals (postings and columns): the
        // planner decides on the exact count, because evaluating postings and the
        // block-skipping column scan costs less than one distance per match — the
        // estimate is reported next to it in `explain`.
        // (Shared with the segment's filter cache unless deletions must be masked out.)
        let cached = q.filter.as_ref().map(|f| ls.seg.eval_cached(f));
        let evaluated = cached.as_ref().map(|e| {
            if ls.any_deleted {
                let mut b = Bitset::clone(&e.bits);
                b.and_not_with(&ls.deleted);
                let counts = ls.seg.counts(&b);
                (Arc::new(b), counts)
            } else {
                (e.bits.clone(), e.counts)
            }
        });
        ex.matches = evaluated.as_ref().map(|(_, c)| c.all as u64);
        // What the k-NN plans can return: matches that carry a vector.
        let knn_matches = evaluated.as_ref().map(|(_, c)| c.with_vector as u64);
        let matching: Option<Arc<Bitset>> = evaluated.map(|(b, _)| b);
        let ann = match (&q.vector, ls.seg.ann(), q.ann.exact, q.k > 0) {
            (Some(qv), Some(idx), false, true) => Some((qv, idx)),
            _ => None,
        };
        let Some((qv, idx)) = ann else {
            // Boolean queries, segments without a graph, `Query::exact`.
            ex.plan = Plan::Exact;
            let live = live_bits(matching, ls);
            self.exact_segment(q, ls, &live, &shadowed, c.deadline, stats, hits)?;
            ex.micros = t.elapsed().as_micros() as u64;
            return Ok(ex);
        };
        let target = Target {
            seg: &ls.seg,
            idx,
            metric: self.schema.metric,
            q: qv,
            k: q.k,
        };
        // The filter's matches numbered as nodes (cached with the filter; the deletions
        // are checked per candidate instead).
        let by_node = cached.as_ref().map(|e| e.by_node(idx));
        // The calibrated planner for k-NN; a radius query keeps the graph's own doubling
        // (its completeness check never cuts a ball short), planned by the fixed model.
        let decision = match (ls.seg.calibration(), q.ann.list, q.ann.plan, q.radius) {
            (Some(cal), 0, PlanHint::Auto, None) => cal.choose(&calibrated::Ask {
                target,
                recall: q.ann.recall,
                matches: knn_matches,
                by_node: by_node.as_deref(),
            }),
            _ => {
                let shape = IndexShape {
                    nodes: idx.len(),
                    degree: idx.degree_max(),
                    lists: idx.partitions(),
                };
                plan::choose_plan(q, shape, knn_matches)
            }
        };
        ex.predicted_recall = decision.predicted_recall;
        ex.local_density = decision.local_density;
        ex.near_density = decision.near_density;
        ex.outside = decision.outside;
        let mut fallback = decision.fallback_pool;
        match decision.choice {
            Choice::Partition { want, retry } => {
                let shadow = (!mem.is_empty()).then_some(&shadowed as &dyn Fn(usize) -> bool);
                let (best, walk) = exec::partition(
                    target,
                    want,
                    retry,
                    by_node.as_deref(),
                    ls.any_deleted.then_some(&*ls.deleted),
                    shadow,
                    stats,
                )?;
                for (dist, i) in best {
                    hits.push(self.hit(ls, i, Some(dist), q.include_docs)?);
                }
                ex.plan = Plan::Partition;
                ex.lists_probed = walk.lists;
                ex.members_scanned = walk.members;
                stats.partition_segments += 1;
                ex.micros = t.elapsed().as_micros() as u64;
                return Ok(ex);
            }
            Choice::Graph { list, guarded } => {
                let accept = |i: usize| {
                    let live = match &matching {
                        Some(b) => b.get(i),
                        None => !ls.deleted.get(i),
                    };
                    live && (mem.is_empty() || !shadowed(i))
                };
                let run = GraphRun {
                    target,
                    idx,
                    list,
                    guarded,
                    knn_matches,
                    accept: &accept,
                    filtered: matching.is_some(),
                };
                if let Some(found) = graph_segment(q, &run, &mut ex, stats)? {
                    for (dist, i) in found {
                        hits.push(self.hit(ls, i, Some(dist), q.include_docs)?);
                    }
                    ex.micros = t.elapsed().as_micros() as u64;
                    return Ok(ex);
                }
                ex.plan = Plan::GraphThenExact;
            }
            Choice::FilterFirst { pool } => {
                ex.plan = Plan::FilterFirst;
                fallback = pool;
            }
        }
        let live = live_bits(matching, ls);
        // Filter-first, chosen or after a graph search fell back: by codes with a re-rank
        // pool (k-NN only: a radius query's ball can be larger than the pool), else every
        // match at full precision.
        if let (Some(pool), None) = (fallback, q.radius) {
            let accept = |i: usize| mem.is_empty() || !shadowed(i);
            let mut cands = live.iter();
            for (dist, i) in exec::codes(target, pool, &mut cands, &accept, stats)? {
                hits.push(self.hit(ls, i, Some(dist), q.include_docs)?);
            }
            ex.plan = if ex.plan == Plan::FilterFirst {
                Plan::FilterFirstCodes
            } else {
                Plan::GraphThenCodes
            };
            stats.exact_segments += 1;
        } else {
            self.exact_segment(q, ls, &live, &shadowed, c.deadline, stats, hits)?;
        }
        ex.micros = t.elapsed().as_micros() as u64;
        Ok(ex)
    }

    /// Score a segment exactly: the `k` nearest live matches of `live` not shadowed by the
    /// memtable (boolean queries: the first `k` by key).
    #[allow(
        clippy::too_many_arguments,
        reason = "the read path's state, passed down unchanged"
    )]
    fn exact_segment(
        &self,
        q: &Query,
        ls: &LiveSegment,
        live: &Bitset,
        shadowed: &dyn Fn(usize) -> bool,
        deadline: &Deadline,
        stats: &mut QueryStats,
        hits: &mut Vec<Hit>,
    ) -> Result<()> {
        stats.exact_segments += 1;
        match &q.vector {
            None => {
                for i in live.iter().filter(|&i| !shadowed(i)).take(q.k) {
                    hits.push(self.hit(ls, i, None, q.include_docs)?);
                }
            }
            Some(qv) => {
                let probe = exec::Exact {
                    seg: &ls.seg,
                    metric: self.schema.metric,
                    q: qv,
                    k: q.k,
                    radius: q.radius,
                };
                for (dist, i) in probe.run(live, shadowed, deadline, stats)? {
                    hits.push(self.hit(ls, i, Some(dist), q.include_docs)?);
                }
            }
        }
        Ok(())
    }

    /// Replace every `(apply PREFIX ATTR F)` by the OR of `PREFIX:<v>` over the values `v` of
    /// `ATTR` among this snapshot's live documents matching `F` (innermost first). Each
    /// distinct `apply` is expanded once per query (`ctx.done`); the memtable's matches come
    /// from its term index.
    pub(super) fn resolve(
        &self,
        f: &Filter,
        ctx: &mut Resolve<'_>,
        stats: &mut QueryStats,
    ) -> Result<Filter> {
        Ok(match f {
            Filter::And(fs) => Filter::And(
                fs.iter()
                    .map(|x| self.resolve(x, ctx, stats))
                    .collect::<Result<_>>()?,
            ),
            Filter::Or(fs) => Filter::Or(
                fs.iter()
                    .map(|x| self.resolve(x, ctx, stats))
                    .collect::<Result<_>>()?,
            ),
            Filter::Not(x) => Filter::Not(Box::new(self.resolve(x, ctx, stats)?)),
            Filter::Apply { prefix, attr, expr } => {
                if let Some(done) = ctx.done.get(f) {
                    return Ok(done.clone());
                }
                ctx.deadline.check("expanding (apply …)")?;
                let inner = self.resolve(expr, ctx, stats)?;
                // A restricted snapshot expands only over the documents it admits.
                let inner = match &self.mandatory {
                    Some(m) => Filter::And(vec![Filter::clone(m), inner]),
                    None => inner,
                };
                let mut values = std::collections::BTreeSet::new();
                let in_mem = ctx.docs.eval(&inner, ctx.deadline)?;
                for i in in_mem.iter() {
                    if let Some(v) = ctx.docs.docs().get(i).and_then(|d| d.attrs.get(attr)) {
                        values.insert(*v);
                    }
                }
                if let Some(a) = self.schema.attr_index(attr) {
                    for ls in &self.version.segments {
                        ctx.deadline.check("expanding (apply …)")?;
                        // Through the segment's filter cache (a user's friend list is asked
                        // again by each of their queries); deletions masked per version.
                        let cached = ls.seg.eval_cached(&inner);
                        let ones = cached.ones();
                        let matches: Box<dyn Iterator<Item = usize>> = match &ones {
                            Some(v) => Box::new(v.iter().map(|&i| i as usize)),
                            None => Box::new(cached.bits.iter()),
                        };
                        for (j, i) in matches.enumerate() {
                            ctx.deadline.check_every(j, "expanding (apply …)")?;
                            if ls.any_deleted && ls.deleted.get(i) {
                                continue;
                            }
                            if ctx.mem.contains_key(ls.seg.key(i)) {
                                continue; // the memtable's version decided above
                            }
                            if let Some(v) = ls.seg.attr(a, i) {
                                values.insert(v);
                            }
                        }
                    }
                }
                if values.len() > ctx.fanout_max {
                    stats.apply_truncated = true;
                }
                let terms: Vec<Filter> = values
                    .into_iter()
                    .take(ctx.fanout_max)
                    .map(|v| Filter::Term(format!("{prefix}:{v}")))
                    .collect();
                stats.apply_fanout += terms.len() as u64;
                // An empty OR matches nothing.
                let out = Filter::Or(terms);
                ctx.done.insert(f.clone(), out.clone());
                out
            }
            Filter::Term(_) | Filter::Range { .. } => f.clone(),
        })
    }

    fn hit(
        &self,
        ls: &LiveSegment,
        i: usize,
        distance: Option<f32>,
        with_doc: bool,
    ) -> Result<Hit> {
        Ok(Hit {
            key: ls.seg.key(i).to_vec(),
            distance,
            doc: if with_doc {
                Some(Arc::new(ls.seg.doc(i)?))
            } else {
                None
            },
        })
    }
}

/// The live ordinals a plan may return: the filter's matches (dead ones already masked out),
/// or every live ordinal.
fn live_bits(matching: Option<Arc<Bitset>>, ls: &LiveSegment) -> Arc<Bitset> {
    matching.unwrap_or_else(|| {
        let mut b = Bitset::full(ls.seg.len());
        b.and_not_with(&ls.deleted);
        Arc::new(b)
    })
}

/// What [`Snapshot::resolve`] needs for one query: the memtable's entries and index, the
/// deadline, the fan-out bound, and the `(apply …)` nodes already expanded.
pub(super) struct Resolve<'a> {
    pub mem: &'a BTreeMap<Vec<u8>, Entry>,
    pub docs: &'a MemDocs<'a>,
    pub deadline: &'a Deadline,
    pub fanout_max: usize,
    pub done: HashMap<Filter, Filter>,
}

/// The query with its radius in the search's units (Euclidean, not squared, for L2).
fn in_search_units(q: &Query, metric: Metric) -> Cow<'_, Query> {
    match q.radius {
        Some(r) if metric == Metric::L2 => {
            let mut c = q.clone();
            c.radius = Some(crate::distance::search_radius(metric, r));
            Cow::Owned(c)
        }
        _ => Cow::Borrowed(q),
    }
}

/// The graph plan on one segment: `Some(hits)` (at most `k`, inside the radius) when the
/// search is complete, `None` when the segment must fall back to its matches — fewer than
/// `k` live results (deletions, a filter the graph region does not hold), a radius ball
/// still full at the list cap, or (uncalibrated) an anti-correlated filter.
fn graph_segment(
    q: &Query,
    run: &GraphRun<'_>,
    ex: &mut SegmentExplain,
    stats: &mut QueryStats,
) -> Result<Option<Vec<(f32, usize)>>> {
    let (target, idx, list) = (run.target, run.idx, run.list);
    let mut params = q.ann;
    params.list = list;
    let mut s = QueryStats::default();
    // Uncalibrated: give up early on a filter anti-correlated with the query's neighbourhood
    // (the check below then falls back). A calibrated choice measured what the graph reaches
    // at this correlation.
    let min_rate = match (run.guarded, run.knn_matches) {
        (true, Some(m)) => m as f64 / idx.len().max(1) as f64 / 3.0,
        _ => 0.0,
    };
    let mut found = exec::graph(target, &params, run.accept, min_rate, None, &mut s)?;
    // A radius query searches the graph and doubles the list while every node it expanded
    // lies inside the radius (more may lie beyond), until `k` are inside or the list reached
    // 8× its start; still all inside at the cap with fewer than `k` → the exact scan, so a
    // result is never cut short silently.
    let mut range_complete = true;
    if let Some(r) = q.radius {
        let cap = list.saturating_mul(8).min(idx.len()).max(list);
        let mut l = list;
        loop {
            let inside = found.iter().filter(|(d, _)| *d <= r).count();
            // `found` holds every admitted node the search expanded (and, filtered, the best
            // admitted ones it scored).
            let saturated = !found.is_empty() && inside == found.len();
            if !saturated || inside >= q.k {
                break;
            }
            if l >= cap {
                range_complete = false;
                break;
            }
            l = l.saturating_mul(2).min(cap);
            params.list = l;
            found = exec::graph(target, &params, run.accept, min_rate, None, &mut s)?;
        }
    }
    stats.add(&s);
    ex.nodes_visited = s.nodes_visited;
    ex.sectors_read = s.sectors_read;
    ex.list = params.list;
    // Uncalibrated, also fall back when the search gave up (its own anti-correlation exit)
    // or the matches among the nodes it visited are far rarer than in the segment (the true
    // matches lie elsewhere).
    let anti_correlated = run.guarded
        && (s.anti_correlated_exits > 0
            || match (run.knn_matches, s.nodes_visited) {
                (Some(m), visited) if visited > 0 => {
                    let global = m as f64 / idx.len().max(1) as f64;
                    let local = found.len() as f64 / visited as f64;
                    local < global / 3.0
                }
                _ => false,
            });
    let complete = match q.radius {
        Some(_) => range_complete,
        None => found.len() >= q.k,
    };
    if !complete || anti_correlated {
        return Ok(None);
    }
    stats.graph_segments += 1;
    ex.plan = match (q.radius, run.filtered) {
        (Some(_), _) => Plan::GraphRange,
        (None, true) => Plan::FilteredGraph,
        (None, false) => Plan::Graph,
    };
    let r = q.radius.unwrap_or(f32::INFINITY);
    Ok(Some(
        found.into_iter().filter(|x| x.0 <= r).take(q.k).collect(),
    ))
}

/// Merge: keys are unique across sources; by key (boolean) or (distance, key), distances in
/// the reported convention, the user's radius applied, `k` kept.
fn merge(mut hits: Vec<Hit>, q: &Query, metric: Metric, user_radius: Option<f32>) -> Vec<Hit> {
    match q.vector {
        None => hits.sort_by(|a, b| a.key.cmp(&b.key)),
        Some(_) => hits.sort_by(|a, b| {
            let (x, y) = (a.distance.unwrap_or(0.0), b.distance.unwrap_or(0.0));
            x.total_cmp(&y).then_with(|| a.key.cmp(&b.key))
        }),
    }
    for h in &mut hits {
        if let Some(d) = h.distance.as_mut() {
            *d = crate::distance::reported(metric, *d);
        }
    }
    if let Some(r) = user_radius {
        hits.retain(|h| h.distance.is_none_or(|d| d <= r));
    }
    hits.truncate(q.k);
    hits
}
