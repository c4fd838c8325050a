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

use crate::ann::disk::PartitionWant;
use crate::ann::{Plan, PlanHint, QueryStats, SegmentExplain};
use crate::deadline::Deadline;
use crate::distance::distance;
use crate::filter::docs::MemDocs;
use crate::memtable::{Entry, Memtable};
use crate::search::{exact, Hit, Query, Scored};
use crate::segment::bitset::Bitset;
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

    fn admits(&self, d: &Document) -> bool {
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

    /// Live documents with keys in the bounds, in key order; `stop_after` caps the count.
    fn collect(
        &self,
        lo: Bound<&[u8]>,
        hi: Bound<&[u8]>,
        keep: impl Fn(&[u8]) -> bool,
    ) -> Result<Vec<Arc<Document>>> {
        let mem = self.memtable_entries(lo, hi);
        let mut out: BTreeMap<Vec<u8>, Arc<Document>> = BTreeMap::new();
        for (k, e) in &mem {
            if let Some(d) = e {
                if keep(k) {
                    out.insert(k.clone(), d.clone());
                }
            }
        }
        for ls in &self.version.segments {
            let start = match lo {
                Bound::Included(k) => ls.seg.lower_bound(k),
                Bound::Excluded(k) => {
                    let i = ls.seg.lower_bound(k);
                    if i < ls.seg.len() && ls.seg.key(i) == k {
                        i + 1
                    } else {
                        i
                    }
                }
                Bound::Unbounded => 0,
            };
            for i in start..ls.seg.len() {
                let k = ls.seg.key(i);
                let past = match hi {
                    Bound::Included(h) => k > h,
                    Bound::Excluded(h) => k >= h,
                    Bound::Unbounded => false,
                };
                if past {
                    break;
                }
                if ls.deleted.get(i) || mem.contains_key(k) || !keep(k) {
                    continue;
                }
                out.insert(k.to_vec(), Arc::new(ls.seg.doc(i)?));
            }
        }
        Ok(out.into_values().filter(|d| self.admits(d)).collect())
    }

    /// Documents with keys in `range`, in key order.
    pub fn scan<R: RangeBounds<Vec<u8>>>(&self, range: R) -> Result<Vec<Arc<Document>>> {
        let lo = range.start_bound().map(Vec::as_slice);
        let hi = range.end_bound().map(Vec::as_slice);
        self.collect(lo, hi, |_| true)
    }

    /// Documents whose key starts with `prefix`, in key order.
    pub fn scan_prefix(&self, prefix: &[u8]) -> Result<Vec<Arc<Document>>> {
        self.collect(Bound::Included(prefix), Bound::Unbounded, |k| {
            k.starts_with(prefix)
        })
        .map(|v| {
            v.into_iter()
                .take_while(|d| d.key.starts_with(prefix))
                .collect()
        })
    }

    /// Run a query. Boolean, filtered, radius and `exact()` queries equal brute force over
    /// this snapshot; unfiltered k-NN queries use the segments' graphs where they have one.
    pub fn search(&self, q: &Query) -> Result<Vec<Hit>> {
        Ok(self.search_with_stats(q)?.0)
    }

    /// [`Snapshot::search`], also reporting what the query cost.
    pub fn search_with_stats(&self, q: &Query) -> Result<(Vec<Hit>, QueryStats)> {
        q.validate(&self.schema)?;
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
            if let (Some(qv), Some(idx), false, true) =
                (&q.vector, ls.seg.ann(), q.ann.exact, q.k > 0)
            {
                let shape = IndexShape {
                    nodes: idx.len(),
                    degree: idx.degree_max(),
                    lists: idx.partitions(),
                };
                let choice = choose_plan(q, shape, knn_matches);
                // Re-rank code-ranked candidates with full vectors (ties by key).
                // Vectors are read at random: prefetch a few ahead (a pool of 100 at 1M × 64
                // spent most of its time waiting on each vector's cache lines in turn).
                //
                // `adaptive`: candidates in code order, and the re-rank stops once the next
                // one cannot plausibly beat the k-th exact distance found: code distances
                // err by `code − exact` (mean μ, deviation σ, measured on the candidates
                // re-ranked so far), so a candidate whose code distance exceeds the k-th
                // exact by more than μ + 3σ is skipped with the rest. The pool can then be
                // long (hard data: PQ ranks poorly) without paying for it on easy data.
                // `converged`: set when the adaptive stop fired (the rest of the pool could
                // not beat the k-th; unset, the pool may have been too short).
                let rerank = |mut cands: Vec<(f32, usize)>,
                              adaptive: bool,
                              converged: &mut bool,
                              stats: &mut QueryStats| {
                    // Adaptive: candidates in code order, sorted a chunk at a time (a long
                    // pool is rarely re-ranked far, so most of it is never sorted).
                    let by = |a: &(f32, usize), b: &(f32, usize)| {
                        a.0.total_cmp(&b.0).then(a.1.cmp(&b.1))
                    };
                    let mut sorted = 0usize;
                    let sort_more = |cands: &mut Vec<(f32, usize)>, sorted: &mut usize| {
                        let more = (*sorted).max(RERANK_CHUNK);
                        if let Some(rest) = cands.get_mut(*sorted..) {
                            if more < rest.len() {
                                rest.select_nth_unstable_by(more - 1, by);
                            }
                            let end = more.min(rest.len());
                            if let Some(h) = rest.get_mut(..end) {
                                h.sort_unstable_by(by);
                            }
                            *sorted += end;
                        }
                    };
                    if adaptive {
                        sort_more(&mut cands, &mut sorted);
                    }
                    let mut scored = Vec::with_capacity(cands.len());
                    let mut v = Vec::new();
                    const AHEAD: usize = 6;
                    for &(_, i) in cands.iter().take(AHEAD) {
                        ls.seg.prefetch_vector(i);
                    }
                    let mut err = Welford::default();
                    let mut kbest: Vec<f32> = Vec::with_capacity(q.k.min(cands.len()) + 1);
                    for j in 0..cands.len() {
                        if adaptive && j + AHEAD >= sorted && sorted < cands.len() {
                            sort_more(&mut cands, &mut sorted);
                        }
                        let Some(&(code_d, i)) = cands.get(j) else {
                            break;
                        };
                        if adaptive && j >= q.k.max(RERANK_MIN) && kbest.len() >= q.k {
                            let kth = kbest.last().copied().unwrap_or(f32::INFINITY);
                            let margin = err.mean + 3.0 * err.deviation();
                            if f64::from(code_d) - margin > f64::from(idx.to_code_space(kth)) {
                                *converged = true;
                                break;
                            }
                        }
                        if let Some(&(_, a)) = cands.get(j + AHEAD) {
                            ls.seg.prefetch_vector(a);
                        }
                        if ls.seg.vector_into(i, &mut v) {
                            let d = distance(self.schema.metric, qv, &v);
                            scored.push((d, i));
                            if adaptive {
                                err.add(f64::from(code_d) - f64::from(idx.to_code_space(d)));
                                let at = kbest.partition_point(|&x| x <= d);
                                if at < q.k {
                                    kbest.insert(at, d);
                                    kbest.truncate(q.k);
                                }
                            }
                        }
                    }
                    stats.distance_computations += scored.len() as u64;
                    scored.sort_by(|a, b| {
                        a.0.total_cmp(&b.0)
                            .then_with(|| ls.seg.key(a.1).cmp(ls.seg.key(b.1)))
                    });
                    scored.truncate(q.k);
                    scored
                };
                if let Choice::Partition(want) = choice {
                    // The filter's matches numbered as nodes (cached with the filter; the
                    // deletions are checked per candidate instead).
                    let by_node = cached.as_ref().map(|e| e.by_node(idx));
                    let shadow = (!mem.is_empty()).then_some(&shadowed as &dyn Fn(usize) -> bool);
                    let walk_lists = |want: PartitionWant, stats: &mut QueryStats| {
                        idx.scan_partitions(
                            qv,
                            want,
                            by_node.as_deref(),
                            ls.any_deleted.then_some(&*ls.deleted),
                            shadow,
                            stats,
                        )
                    };
                    let (cands, mut walk) = walk_lists(want, &mut stats);
                    // Candidates the pool dropped: a retry could re-rank them.
                    let dropped = walk.scored as usize >= 2 * want.pool;
                    let mut converged = false;
                    let mut best = rerank(cands, true, &mut converged, &mut stats);
                    if dropped && !converged {
                        // The whole pool was re-ranked and its last candidates could still
                        // beat the k-th: the codes rank these matches poorly (nearly equal
                        // distances), so walk again with a longer pool. Only when the walk
                        // scored at least twice the pool (at a small L the pool holds nearly
                        // every candidate: a second walk would add little).
                        let want = PartitionWant {
                            pool: want.pool.saturating_mul(PARTITION_POOL_RETRY),
                            ..want
                        };
                        let (cands, again) = walk_lists(want, &mut stats);
                        walk.lists += again.lists;
                        walk.members += again.members;
                        walk.scored += again.scored;
                        best = rerank(cands, true, &mut converged, &mut stats);
                    }
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
                if let Choice::Graph(list) = choice {
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
                    // Give up early on a filter anti-correlated with the query's
                    // neighbourhood (the check below then falls back).
                    let min_rate =
                        knn_matches.map_or(0.0, |m| m as f64 / idx.len().max(1) as f64 / 3.0);
                    let search = |params: &crate::SearchParams, s: &mut QueryStats| {
                        idx.search_filtered(
                            ls.seg.file_bytes(),
                            qv,
                            q.k,
                            params,
                            &accept,
                            min_rate,
                            s,
                        )
                    };
                    let mut found = search(&params, &mut s)?;
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
                            found = search(&params, &mut s)?;
                        }
                    }
                    stats.add(&s);
                    ex.nodes_visited = s.nodes_visited;
                    ex.sectors_read = s.sectors_read;
                    ex.list = params.list;
                    // Fewer than k live results (deletions, a filter the graph region does
                    // not hold), or a filter that matches far fewer of the visited nodes
                    // than of the segment (anti-correlated with the query's neighbourhood:
                    // the true matches lie elsewhere): this segment falls back to the exact
                    // scan, so neither costs recall.
                    // The search gave up (its own anti-correlation exit), or the matches
                    // among the nodes it visited are far rarer than in the segment.
                    let anti_correlated = s.anti_correlated_exits > 0
                        || match (knn_matches, s.nodes_visited) {
                            (Some(m), visited) if visited > 0 => {
                                let global = m as f64 / idx.len().max(1) as f64;
                                let local = found.len() as f64 / visited as f64;
                                local < global / 3.0
                            }
                            _ => false,
                        };
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
                } else {
                    ex.plan = Plan::FilterFirst;
                }
                // Many matches: rank them by their in-memory codes and re-rank the best with
                // full vectors, instead of a full-precision distance each (k-NN only: a
                // radius query's ball can be larger than the re-ranked pool).
                if knn_matches.is_some_and(|m| m as usize >= CODE_SCAN_MIN) && q.radius.is_none() {
                    let accept = |i: usize| {
                        matching.as_ref().is_some_and(|b| b.get(i))
                            && (mem.is_empty() || !shadowed(i))
                    };
                    let pool = rerank_pool(q.k, knn_matches.unwrap_or(0) as usize);
                    let mut matches = matching.iter().flat_map(|b| b.iter());
                    let cands = idx.scan_codes(qv, pool, &mut matches, &accept, &mut stats);
                    for (dist, i) in rerank(cands, false, &mut false, &mut stats) {
                        hits.push(self.hit(ls, i, Some(dist), q.include_docs)?);
                    }
                    ex.plan = if ex.plan == Plan::FilterFirst {
                        Plan::FilterFirstCodes
                    } else {
                        Plan::GraphThenCodes
                    };
                    stats.exact_segments += 1;
                    ex.micros = t.elapsed().as_micros() as u64;
                    stats.explain.push(ex);
                    continue;
                }
            } else {
                ex.plan = Plan::Exact;
            }
            stats.exact_segments += 1;
            // Live matches (the filter bitmap already excludes dead ordinals).
            let live = matching.unwrap_or_else(|| {
                let mut b = Bitset::full(ls.seg.len());
                b.and_not_with(&ls.deleted);
                Arc::new(b)
            });
            match &q.vector {
                None => {
                    for i in live.iter().filter(|&i| !shadowed(i)).take(q.k) {
                        hits.push(self.hit(ls, i, None, q.include_docs)?);
                    }
                }
                Some(qv) => {
                    let mut heap = std::collections::BinaryHeap::new();
                    let mut v = Vec::new();
                    for (j, i) in live.iter().enumerate() {
                        deadline.check_every(j, "scoring a segment exactly")?;
                        if !ls.seg.vector_into(i, &mut v) || shadowed(i) {
                            continue;
                        }
                        let dist = distance(self.schema.metric, qv, &v);
                        stats.distance_computations += 1;
                        if q.radius.is_some_and(|r| dist > r) {
                            continue;
                        }
                        heap.push(Scored::new(dist, ls.seg.key(i).to_vec(), i));
                        if heap.len() > q.k {
                            heap.pop();
                        }
                    }
                    for s in heap {
                        let (dist, _, i) = s.into_parts();
                        hits.push(self.hit(ls, i, Some(dist), q.include_docs)?);
                    }
                }
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
        hits.truncate(q.k);
        Ok((hits, stats))
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

/// From this many matches on, filter-first ranks by codes and re-ranks (below it, scoring every
/// match at full precision is as fast and exact).
const CODE_SCAN_MIN: usize = 500;

/// Candidates a code scan over `m` matches re-ranks with full vectors. More for a large match
/// set: at 100k matches the codes' top 200 held 94 % of the true top 10 (anti-correlated 10 %
/// bucket, 1M × 64).
fn rerank_pool(k: usize, m: usize) -> usize {
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

/// An adaptive re-rank scores at least this many candidates before it may stop (the error
/// estimate needs a few).
const RERANK_MIN: usize = 16;

/// An adaptive re-rank sorts its pool this many candidates at a time (at least).
const RERANK_CHUNK: usize = 128;

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

/// What the cost model needs of a segment's index.
#[derive(Debug, Clone, Copy)]
struct IndexShape {
    nodes: usize,
    degree: usize,
    /// Coarse partitions (0: none).
    lists: usize,
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

/// The plan [`choose_plan`] picked for one segment.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Choice {
    /// Graph search with this candidate list.
    Graph(usize),
    /// Score the matches (by code from `CODE_SCAN_MIN` on) and re-rank.
    FilterFirst,
    /// Walk the nearest partitions.
    Partition(PartitionWant),
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
fn choose_plan(q: &Query, shape: IndexShape, matches: Option<u64>) -> Choice {
    let l = q.ann.list.max(q.k).max(1);
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
        let tail_scale = crate::SearchParams::default().list as f64 / l as f64;
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
    match q.ann.plan {
        PlanHint::Graph => return Choice::Graph(list),
        PlanHint::FilterFirst if matches.is_some() => return Choice::FilterFirst,
        PlanHint::Partition => {
            if let Some((_, want)) = partition {
                return Choice::Partition(want);
            }
        }
        _ => {}
    }
    if m == 0 {
        return Choice::FilterFirst;
    }
    let mut best = (graph_cost, Choice::Graph(list));
    if first_cost < best.0 {
        best = (first_cost, Choice::FilterFirst);
    }
    if let Some((c, want)) = partition {
        if c < best.0 {
            best = (c, Choice::Partition(want));
        }
    }
    best.1
}
