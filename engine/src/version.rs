//! Versions (the set of memtables and segments at one moment) and the read path over them.
//!
//! Invariants:
//! - a [`Snapshot`] is a version plus a sequence read together under the version lock, so it
//!   sees exactly the batches with LSN <= its sequence: memtables are filtered by sequence, and
//!   every segment in the version holds only batches the sequence already covers;
//! - a key is live in at most one segment of a version (a flush marks older copies dead in their
//!   deletion bitmaps), and any memtable entry for a key (put or delete) shadows all segments.

use std::collections::{BTreeMap, HashMap};
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use crate::ann::{Plan, PlanHint, QueryStats, SegmentExplain};
use crate::bitset::Bitset;
use crate::deadline::Deadline;
use crate::filter::docs::MemDocs;
use crate::memtable::{Entry, Memtable};
use crate::query::calibrated;
use crate::query::exec::{self, Target};
use crate::query::plan::{self, Choice, IndexShape};
use crate::scan::Scan;
use crate::search::{exact, Hit, Query};
use crate::segment::Segment;
use crate::{Document, Filter, Result, Schema};

/// A segment with the deletion bitmap current in one version.
#[derive(Debug, Clone)]
pub(crate) struct LiveSegment {
    pub seg: Arc<Segment>,
    pub deleted: Arc<Bitset>,
    pub deletes_gen: u32,
    /// Whether `deleted` has any bit set (known once per version: scanning a 1M-bit map per
    /// query was 8 % of a 10 % partition query).
    pub any_deleted: bool,
}

impl LiveSegment {
    pub(crate) fn new(seg: Arc<Segment>, deleted: Arc<Bitset>, deletes_gen: u32) -> LiveSegment {
        let any_deleted = deleted.any();
        LiveSegment {
            seg,
            deleted,
            deletes_gen,
            any_deleted,
        }
    }
}

/// Memtables and segments at one moment. Immutable; replaced as a whole.
#[derive(Debug, Clone)]
pub(crate) struct Version {
    pub active: Arc<Memtable>,
    /// Frozen memtables, newest first, each with the last LSN it holds.
    pub frozen: Vec<(Arc<Memtable>, u64)>,
    /// Segments, newest first.
    pub segments: Vec<LiveSegment>,
}

impl Version {
    fn memtables(&self) -> impl Iterator<Item = &Arc<Memtable>> {
        std::iter::once(&self.active).chain(self.frozen.iter().map(|(m, _)| m))
    }
}

/// A consistent read view: it sees exactly the batches visible when it was taken, and stays
/// valid (and unchanged) while writes, flushes and compactions go on.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub(crate) seq: u64,
    pub(crate) schema: Arc<Schema>,
    pub(crate) version: Arc<Version>,
    /// The mandatory filter, with its `(apply …)` operators already resolved against this
    /// snapshot (which never changes, so the resolution stays valid).
    pub(crate) mandatory: Option<Arc<Filter>>,
}

impl Snapshot {
    /// This snapshot restricted by a mandatory filter (visibility, tenant, …): every query is
    /// answered as if the filter were AND-ed into it — whatever plan runs, including the
    /// documents an `(apply …)` expands over — and `get`, `scan` and `scan_prefix` return only
    /// documents it admits. Restricting an already restricted snapshot ANDs both filters; there
    /// is no way to widen a restriction.
    ///
    /// ```
    /// # fn main() -> strata::Result<()> {
    /// use strata::{Db, Document, Filter, Query, Schema, Metric};
    /// let dir = tempfile::tempdir().unwrap();
    /// let db = Db::create(dir.path(), Schema::new(2, Metric::L2))?;
    /// db.put(Document::new("a", "").with_vector(vec![0.0, 0.0]).with_term("tenant:1"))?;
    /// db.put(Document::new("b", "").with_vector(vec![0.1, 0.0]).with_term("tenant:2"))?;
    /// let t1 = db.restricted_snapshot(Filter::term("tenant:1"))?;
    /// let hits = t1.search(&Query::knn(vec![0.1, 0.0], 10))?;
    /// assert_eq!(hits.len(), 1);
    /// assert!(t1.get(b"b")?.is_none());
    /// # Ok(()) }
    /// ```
    pub fn with_mandatory_filter(&self, filter: Filter) -> Result<Snapshot> {
        filter.validate(&self.schema)?;
        let mut stats = QueryStats::default();
        let mem = self.memtable_entries(Bound::Unbounded, Bound::Unbounded);
        let mem_docs: Vec<Arc<Document>> = mem.values().flatten().cloned().collect();
        let docs = MemDocs::new(&mem_docs);
        let mut ctx = Resolve {
            mem: &mem,
            docs: &docs,
            deadline: &Deadline::at(None),
            fanout_max: usize::MAX,
            done: HashMap::new(),
        };
        let resolved = self.resolve(&filter, &mut ctx, &mut stats)?;
        let combined = match &self.mandatory {
            Some(old) => Filter::And(vec![Filter::clone(old), resolved]),
            None => resolved,
        };
        Ok(Snapshot {
            mandatory: Some(Arc::new(combined)),
            ..self.clone()
        })
    }

    /// The mandatory filter in force, if any (resolved: no `(apply …)` left).
    pub fn mandatory_filter(&self) -> Option<&Filter> {
        self.mandatory.as_deref()
    }

    pub(crate) fn admits(&self, d: &Document) -> bool {
        self.mandatory.as_ref().is_none_or(|m| m.matches(d))
    }
    /// The sequence (last visible WAL LSN) this view reads at.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Read one document.
    pub fn get(&self, key: &[u8]) -> Result<Option<Arc<Document>>> {
        crate::doc::validate_key(key)?;
        for m in self.version.memtables() {
            if let Some(e) = m.get(key, self.seq) {
                return Ok(e.filter(|d| self.admits(d)));
            }
        }
        for ls in &self.version.segments {
            if let Some(i) = ls.seg.find(key) {
                if !ls.deleted.get(i) {
                    let d = ls.seg.doc(i)?;
                    return Ok(self.admits(&d).then(|| Arc::new(d)));
                }
            }
        }
        Ok(None)
    }

    /// Newest memtable entry of every key in the bounds (puts and deletes).
    fn memtable_entries(&self, lo: Bound<&[u8]>, hi: Bound<&[u8]>) -> BTreeMap<Vec<u8>, Entry> {
        let mut out = BTreeMap::new();
        for m in self.version.memtables() {
            m.for_each_visible(self.seq, lo, hi, |k, e| {
                out.entry(k.to_vec()).or_insert_with(|| e.clone());
                true
            });
        }
        out
    }

    /// A lazy read of the documents with keys in `range`, in key order (see [`Scan`]).
    pub fn range<R: RangeBounds<Vec<u8>>>(&self, range: R) -> Scan {
        Scan::new(self.clone(), range)
    }

    /// A lazy read of the documents whose key starts with `prefix`, in key order; it stops
    /// at the first key past the prefix.
    pub fn prefix(&self, prefix: &[u8]) -> Scan {
        Scan::with_prefix(self.clone(), prefix)
    }

    /// Documents with keys in `range`, in key order, read into memory ([`Snapshot::range`]
    /// reads them lazily).
    pub fn scan<R: RangeBounds<Vec<u8>>>(&self, range: R) -> Result<Vec<Arc<Document>>> {
        self.range(range).collect()
    }

    /// Documents whose key starts with `prefix`, in key order, read into memory
    /// ([`Snapshot::prefix`] reads them lazily).
    pub fn scan_prefix(&self, prefix: &[u8]) -> Result<Vec<Arc<Document>>> {
        self.prefix(prefix).collect()
    }

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
        let in_search_units;
        let q = match q.radius {
            Some(r) if metric == crate::Metric::L2 => {
                let mut c = q.clone();
                c.radius = Some(crate::distance::search_radius(metric, r));
                in_search_units = c;
                &in_search_units
            }
            _ => q,
        };
        let deadline = Deadline::at(q.ann.deadline);
        let mut stats = QueryStats::default();
        // The memtable as this query sees it, read once: its entries (shadowing segment
        // copies) and its live documents, which filters (`(apply …)` expansions included) are
        // evaluated over by `MemDocs` — large ones through a term index built once per query.
        let mem = self.memtable_entries(Bound::Unbounded, Bound::Unbounded);
        let mem_docs: Vec<Arc<Document>> = mem.values().flatten().cloned().collect();
        let mem_eval = MemDocs::new(&mem_docs);
        // `(apply …)` becomes plain terms, evaluated against this snapshot.
        // The mandatory filter is AND-ed in here, before any plan is chosen, so no plan can
        // see a document it excludes.
        let resolved;
        let q = match (&q.filter, &self.mandatory) {
            (Some(f), _) if f.has_apply() || self.mandatory.is_some() => {
                let mut r = q.clone();
                let f = if f.has_apply() {
                    let mut ctx = Resolve {
                        mem: &mem,
                        docs: &mem_eval,
                        deadline: &deadline,
                        fanout_max: q.apply_fanout_max,
                        done: HashMap::new(),
                    };
                    self.resolve(f, &mut ctx, &mut stats)?
                } else {
                    f.clone()
                };
                r.filter = Some(match &self.mandatory {
                    Some(m) => Filter::And(vec![Filter::clone(m), f]),
                    None => f,
                });
                resolved = r;
                &resolved
            }
            (None, Some(m)) => {
                let mut r = q.clone();
                r.filter = Some(Filter::clone(m));
                resolved = r;
                &resolved
            }
            _ => q,
        };
        let t = std::time::Instant::now();
        // Memtable candidates: the filter through the memtable's term index, then brute force.
        let mem_match = q
            .filter
            .as_ref()
            .map(|f| mem_eval.eval(f, &deadline))
            .transpose()?;
        let matching_mem = mem_docs
            .iter()
            .enumerate()
            .filter(|(i, _)| mem_match.as_ref().is_none_or(|b| b.get(*i)))
            .map(|(_, d)| d);
        let mut hits = exact(q, &self.schema, matching_mem, &deadline)?;
        stats.exact_segments += 1;
        stats.explain.push(SegmentExplain {
            segment: None,
            plan: Plan::Exact,
            documents: mem_docs.len() as u64,
            matches: None,
            micros: t.elapsed().as_micros() as u64,
            ..SegmentExplain::default()
        });
        // ...and each segment by the plan its cost model picks.
        for ls in &self.version.segments {
            deadline.check("searching the segments")?;
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
                self.exact_segment(q, ls, &live, &shadowed, &deadline, &mut stats, &mut hits)?;
                ex.micros = t.elapsed().as_micros() as u64;
                stats.explain.push(ex);
                continue;
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
                        &mut stats,
                    )?;
                    for (dist, i) in best {
                        hits.push(self.hit(ls, i, Some(dist), q.include_docs)?);
                    }
                    ex.plan = Plan::Partition;
                    ex.lists_probed = walk.lists;
                    ex.members_scanned = walk.members;
                    stats.partition_segments += 1;
                    ex.micros = t.elapsed().as_micros() as u64;
                    stats.explain.push(ex);
                    continue;
                }
                Choice::Graph { list, guarded } => {
                    let accept = |i: usize| {
                        let live = match &matching {
                            Some(b) => b.get(i),
                            None => !ls.deleted.get(i),
                        };
                        live && (mem.is_empty() || !shadowed(i))
                    };
                    let mut params = q.ann;
                    params.list = list;
                    let mut s = QueryStats::default();
                    // Uncalibrated: give up early on a filter anti-correlated with the
                    // query's neighbourhood (the check below then falls back). A calibrated
                    // choice measured what the graph reaches at this correlation.
                    let min_rate = match (guarded, knn_matches) {
                        (true, Some(m)) => m as f64 / idx.len().max(1) as f64 / 3.0,
                        _ => 0.0,
                    };
                    let mut found = exec::graph(target, &params, &accept, min_rate, None, &mut s)?;
                    // A radius query searches the graph and doubles the list while every
                    // node it expanded lies inside the radius (more may lie beyond), until
                    // `k` are inside or the list reached 8× its start; still all inside at
                    // the cap with fewer than `k` → the exact scan, so a result is never
                    // cut short silently.
                    let mut range_complete = true;
                    if let Some(r) = q.radius {
                        let cap = list.saturating_mul(8).min(idx.len()).max(list);
                        let mut l = list;
                        loop {
                            let inside = found.iter().filter(|(d, _)| *d <= r).count();
                            // `found` holds every admitted node the search expanded (and,
                            // filtered, the best admitted ones it scored).
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
                            found = exec::graph(target, &params, &accept, min_rate, None, &mut s)?;
                        }
                    }
                    stats.add(&s);
                    ex.nodes_visited = s.nodes_visited;
                    ex.sectors_read = s.sectors_read;
                    ex.list = params.list;
                    // Fewer than k live results (deletions, a filter the graph region does
                    // not hold) → this segment falls back to scanning the matches, so it
                    // costs no recall. Uncalibrated, also when the search gave up (its own
                    // anti-correlation exit) or the matches among the nodes it visited are
                    // far rarer than in the segment (the true matches lie elsewhere).
                    let anti_correlated = guarded
                        && (s.anti_correlated_exits > 0
                            || match (knn_matches, s.nodes_visited) {
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
                    if complete && !anti_correlated {
                        stats.graph_segments += 1;
                        ex.plan = match (q.radius, &matching) {
                            (Some(_), _) => Plan::GraphRange,
                            (None, Some(_)) => Plan::FilteredGraph,
                            (None, None) => Plan::Graph,
                        };
                        let r = q.radius.unwrap_or(f32::INFINITY);
                        for (dist, i) in found.into_iter().filter(|x| x.0 <= r).take(q.k) {
                            hits.push(self.hit(ls, i, Some(dist), q.include_docs)?);
                        }
                        ex.micros = t.elapsed().as_micros() as u64;
                        stats.explain.push(ex);
                        continue;
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
                for (dist, i) in exec::codes(target, pool, &mut cands, &accept, &mut stats)? {
                    hits.push(self.hit(ls, i, Some(dist), q.include_docs)?);
                }
                ex.plan = if ex.plan == Plan::FilterFirst {
                    Plan::FilterFirstCodes
                } else {
                    Plan::GraphThenCodes
                };
                stats.exact_segments += 1;
            } else {
                self.exact_segment(q, ls, &live, &shadowed, &deadline, &mut stats, &mut hits)?;
            }
            ex.micros = t.elapsed().as_micros() as u64;
            stats.explain.push(ex);
        }
        // Merge: keys are unique across sources.
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
        Ok((hits, stats))
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
    fn resolve(&self, f: &Filter, ctx: &mut Resolve<'_>, stats: &mut QueryStats) -> Result<Filter> {
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
struct Resolve<'a> {
    mem: &'a BTreeMap<Vec<u8>, Entry>,
    docs: &'a MemDocs<'a>,
    deadline: &'a Deadline,
    fanout_max: usize,
    done: HashMap<Filter, Filter>,
}
