//! The beam search over a graph (DiskANN's): unfiltered, and filtered with the side list of
//! scored matches and the early exit for anti-correlated filters; sector mates expanded at
//! no I/O.

use crate::ann::codes::QueryTable;
use crate::ann::{prefetch_lines, to_space, QueryStats, SearchParams, Visited};
use crate::mmap::FileBytes;
use crate::{Metric, Result};

use super::format::SECTOR;
use super::topk::{by_distance, select_smallest};
use super::DiskIndex;

/// Reused per-thread search buffers (allocating them per query showed up in profiles).
#[derive(Default)]
struct Scratch {
    table: Vec<f32>,
    seen: Visited,
    expanded: Visited,
    list: Vec<(f32, u32, bool)>,
    v: Vec<f32>,
    qs: Vec<f32>,
    /// The nodes whose reads are in flight, oldest first.
    window: std::collections::VecDeque<u32>,
    fresh: Vec<u32>,
    nbs: Vec<u32>,
    /// Filtered searches: admitted neighbours scored by code (result candidates).
    side: Vec<(f32, u32)>,
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::new(Scratch::default());
}

/// The mutable state one search step works on.
struct Step<'a> {
    list: &'a mut Vec<(f32, u32, bool)>,
    seen: &'a mut Visited,
    fresh: &'a mut Vec<u32>,
    nbs: &'a mut Vec<u32>,
    out: &'a mut Vec<(f32, usize)>,
    stats: &'a mut QueryStats,
}

impl DiskIndex {
    /// An exact distance (the schema's metric) in the units of code distances (so it can
    /// replace or be compared with a code distance).
    #[inline]
    pub(crate) fn to_code_space(&self, exact: f32) -> f32 {
        match self.metric {
            Metric::L2 => exact * exact,
            Metric::Cosine => 2.0 * exact,
            Metric::InnerProduct => exact,
        }
    }

    /// Expand `node` (its record read, its exact distance known): report it if accepted, put it
    /// in the list as expanded with its exact distance if `in_list` (the list's bound then
    /// tightens with real distances, which keeps coarse codes from ending the search early;
    /// sector mates stay out of the list so they do not crowd out candidates), and queue its
    /// unseen neighbours with their codes prefetched (random accesses into a large array:
    /// every load of the beam starts before the first code distance).
    #[allow(
        clippy::too_many_arguments,
        reason = "one hop's state, borrowed from the search loop so the hot path allocates nothing"
    )]
    fn expand(
        &self,
        node: u32,
        rec: &[u8],
        exact: f32,
        l: usize,
        accept: &dyn Fn(usize) -> bool,
        st: &mut Step,
        in_list: bool,
    ) -> Result<()> {
        st.stats.nodes_visited += 1;
        st.stats.distance_computations += 1;
        let ord = self.ordinal(node);
        if accept(ord) {
            st.out.push((exact, ord));
        }
        let refined = self.to_code_space(exact);
        if let Some(pos) = st.list.iter().position(|c| c.1 == node) {
            st.list.remove(pos);
        }
        if in_list {
            let at = st.list.partition_point(|x| x.0 <= refined);
            st.list.insert(at, (refined, node, true));
            st.list.truncate(l);
        }
        self.neighbours_into(rec, node, st.nbs)?;
        for &nb in st.nbs.iter() {
            if st.seen.insert(nb) {
                self.prefetch_code(nb);
                st.fresh.push(nb);
            }
        }
        Ok(())
    }

    /// Start reading `node`'s record without waiting for it: a sector from disk (the OS
    /// asked to read it), or a cached or resident record (a CPU prefetch).
    fn start_read(&self, file: &FileBytes, bytes: &[u8], node: u32) {
        match self.cached(node) {
            Some(rec) => prefetch_lines(rec),
            // A graph read from disk: ask the OS to start the reads. One that fits in memory
            // (its pages resident after first use): a CPU prefetch, as for the node cache —
            // the `madvise` per hop was ~11 % of a process of 1,000 filtered queries on a
            // lazily opened 65k × 768 segment.
            None if self.mates => {
                let (s, _) = self.geo.locate(node as usize);
                file.prefetch(self.graph_at + s * SECTOR, self.geo.spn * SECTOR);
            }
            None => {
                let (s, off) = self.geo.locate(node as usize);
                let at = self.graph_at + s * SECTOR + off;
                if let Some(rec) = bytes.get(at..at + self.geo.node_bytes) {
                    prefetch_lines(rec);
                }
            }
        }
    }

    #[cfg(any(test, feature = "fuzzing"))]
    /// Beam search for `q`. Returns (exact distance, segment ordinal) of every expanded node
    /// that `accept`s, closest first. Traversal goes through non-accepted nodes too.
    pub(crate) fn search(
        &self,
        file: &FileBytes,
        q: &[f32],
        k: usize,
        params: &SearchParams,
        accept: &dyn Fn(usize) -> bool,
        stats: &mut QueryStats,
    ) -> Result<Vec<(f32, usize)>> {
        self.search_filtered(file, q, k, params, accept, 0.0, None, stats)
    }

    /// [`DiskIndex::search`] that gives up early when, after a probe of `max(64, L/4)`
    /// expansions, fewer than `min_match_rate` of the expanded nodes were accepted: the filter
    /// is anti-correlated with the query's neighbourhood, and the caller's exact plan is
    /// cheaper than spending the whole widened list to learn that. A `hidden` node is never
    /// scored nor expanded, as if it were not in the graph (calibration hides the vector it
    /// uses as a query: its own curated adjacency would lead the search straight to its
    /// neighbours, which no query from outside the index gets).
    #[allow(
        clippy::too_many_arguments,
        reason = "the search's inputs: file, query, k, knobs, filter, exit rate, hidden node, counters"
    )]
    pub(crate) fn search_filtered(
        &self,
        file: &FileBytes,
        q: &[f32],
        k: usize,
        params: &SearchParams,
        accept: &dyn Fn(usize) -> bool,
        min_match_rate: f64,
        hidden: Option<u32>,
        stats: &mut QueryStats,
    ) -> Result<Vec<(f32, usize)>> {
        let mut run = |sc: &mut Scratch| {
            self.search_in(
                sc,
                file,
                q,
                k,
                params,
                accept,
                min_match_rate,
                hidden,
                stats,
            )
        };
        SCRATCH.with(|cell| match cell.try_borrow_mut() {
            Ok(mut sc) => run(&mut sc),
            Err(_) => run(&mut Scratch::default()),
        })
    }

    // One function (~210 lines) on purpose: the hop loop borrows every scratch buffer at once
    // (list, seen, fresh, neighbours, side list) and is the hottest code of a query; the
    // per-node steps that can stand alone are methods (`expand`, `fetch`, `prefetch_code`).
    #[allow(
        clippy::too_many_arguments,
        reason = "search_filtered's inputs plus its reused scratch"
    )]
    fn search_in(
        &self,
        sc: &mut Scratch,
        file: &FileBytes,
        q: &[f32],
        k: usize,
        params: &SearchParams,
        accept: &dyn Fn(usize) -> bool,
        min_match_rate: f64,
        hidden: Option<u32>,
        stats: &mut QueryStats,
    ) -> Result<Vec<(f32, usize)>> {
        let bytes: &[u8] = file;
        // List 0 (a query that left it to the planner): the uncalibrated default.
        let l = super::super::effort_list(params.list).max(k).max(1);
        let w = params.beam_width.clamp(1, 64);
        to_space(self.metric, q, &mut sc.qs);
        let table = self
            .quant
            .query_table(self.space, &sc.qs, std::mem::take(&mut sc.table));
        sc.seen.reset(self.n);
        sc.expanded.reset(self.n);
        // Sorted (code distance, node, expanded).
        sc.list.clear();
        // A hidden node is never scored nor expanded, as if absent from the graph (the entry
        // cannot be hidden: the search starts there).
        if let Some(h) = hidden.filter(|&h| h != self.entry && (h as usize) < self.n) {
            sc.seen.insert(h);
            sc.expanded.insert(h);
        }
        sc.seen.insert(self.entry);
        sc.list
            .push((table.distance(self.code(self.entry)), self.entry, false));
        stats.distance_computations += 1;
        let mut out = Vec::new();
        let Scratch {
            seen,
            expanded,
            list,
            v,
            window,
            fresh,
            nbs,
            side,
            ..
        } = sc;
        side.clear();
        // A filter is present (the caller passes its match rate): collect scored matches.
        let filtered = min_match_rate > 0.0;
        let mut step = Step {
            list,
            seen,
            fresh,
            nbs,
            out: &mut out,
            stats,
        };
        // A guard on expansions from the list. Exact distances replace (often lower) code
        // estimates as nodes are expanded, which loosens the list's bound; when every distance
        // is nearly equal (a query far from all data) that walked 4,185 of 28,677 nodes at
        // L=128. Normal queries expand about L + 15, far below the cap.
        let cap = 2 * l + 64;
        let probe = (l / 4).max(64);
        let mut taken = 0usize;
        // Nodes expanded from the list (the window's reads done), for the probe.
        let mut done = 0usize;
        // Sector mates expanded along with an uncached read: they add matches to `out` as
        // beam nodes do, so the exit below counts them too (uncounted, an anti-correlated
        // filter looked healthy whenever nodes came from the mapping rather than the node
        // cache). The caller falls back whenever the exit fires (`anti_correlated_exits`).
        let mut mates = 0usize;
        window.clear();
        loop {
            if min_match_rate > 0.0
                && done >= probe
                && (step.out.len() as f64) < min_match_rate * (done + mates) as f64
            {
                // Anti-correlated filter: the caller scans the matches instead.
                step.stats.anti_correlated_exits += 1;
                break;
            }
            // A pipelined beam (PipeANN's, over DiskANN's lock-step one): `w` reads stay in
            // flight while the oldest is expanded; each expansion scores its neighbours into
            // the list at once, so the next read started is the best candidate known *now*.
            // Lock-step, a hop waited for all `w` reads, then computed with none in flight:
            // the device saw 2.0 reads in flight for a beam of 4 (docs/benchmarks.md).
            while window.len() < w && taken < cap {
                let Some(c) = step.list.iter_mut().find(|c| !c.2) else {
                    break;
                };
                c.2 = true;
                taken += 1;
                // Marked before the read: a window node that is a sector mate of an earlier
                // one must not be expanded twice.
                expanded.insert(c.1);
                self.start_read(file, bytes, c.1);
                window.push_back(c.1);
            }
            if window.is_empty() {
                break;
            }
            // Disk reads: one node, then refill. In memory: the whole window, then score —
            // every neighbour code of the window prefetched before the first is scored (the
            // memory-level parallelism a lone node's neighbours do not give; measured on the
            // 65k × 768 set: filtered-graph queries 8–10 % slower node by node).
            let batch = if self.mates { 1 } else { window.len() };
            step.fresh.clear();
            for node in window.drain(..batch) {
                done += 1;
                let (rec, from_disk) = self.fetch(bytes, node, step.stats)?;
                let exact =
                    crate::distance::search_distance(self.metric, q, self.vector_of(&rec.0, v));
                self.expand(node, &rec.0, exact, l, accept, &mut step, true)?;
                if !from_disk || !self.mates || self.geo.nps < 2 {
                    continue;
                }
                // Sector mates came with the read: expand those that would enter the list,
                // at no I/O (the breadth-first layout makes them likely neighbours).
                let (s, _) = self.geo.locate(node as usize);
                let first = (s - 1) * self.geo.nps;
                for m in first..(first + self.geo.nps).min(self.n) {
                    let m = m as u32;
                    if m == node || !expanded.insert(m) {
                        continue;
                    }
                    let rec = self.read_node(bytes, m)?;
                    let exact =
                        crate::distance::search_distance(self.metric, q, self.vector_of(&rec.0, v));
                    step.stats.distance_computations += 1;
                    let refined = self.to_code_space(exact);
                    // Only mates that would rank in the better half of the list: admitting every
                    // mate that beats the list's worst multiplied expansions at large L
                    // (measured: 730 nodes at L=256 on 1M vectors) for no recall.
                    let half = (l / 2).max(k).max(1);
                    if step.list.len() >= half
                        && step.list.get(half - 1).is_some_and(|x| refined >= x.0)
                    {
                        continue;
                    }
                    step.seen.insert(m);
                    mates += 1;
                    self.expand(m, &rec.0, exact, l, accept, &mut step, false)?;
                }
            }
            let Step {
                list, fresh, stats, ..
            } = &mut step;
            for &nb in fresh.iter() {
                if expanded.contains(nb) {
                    continue; // expanded meanwhile as a sector mate
                }
                let d = table.distance(self.code(nb));
                stats.distance_computations += 1;
                if filtered && accept(self.ordinal(nb)) {
                    side.push((d, nb));
                }
                if list.len() >= l && list.last().is_some_and(|x| d >= x.0) {
                    continue;
                }
                let at = list.partition_point(|x| x.0 <= d);
                list.insert(at, (d, nb, false));
                list.truncate(l);
            }
        }
        // Filtered: matching neighbours that were scored (by code) but never expanded are
        // result candidates too — the best `rerank` of them get their exact distance. A
        // match then counts once it is *seen* near the query, not only once it is expanded,
        // so the list need not be widened by 1 / selectivity to expand enough matches.
        // Not when the expanded nodes matched too rarely (anti-correlated filter): the caller
        // then sees that rate and scans the matches instead.
        let anti = (out.len() as f64) < min_match_rate * done as f64;
        if filtered && !anti && !side.is_empty() {
            side.retain(|&(_, nb)| !expanded.contains(nb));
            let rerank = (4 * k).max(40);
            select_smallest(side, rerank);
            for &(_, nb) in side.iter() {
                let (rec, _) = self.fetch(bytes, nb, stats)?;
                let exact =
                    crate::distance::search_distance(self.metric, q, self.vector_of(&rec.0, v));
                stats.distance_computations += 1;
                out.push((exact, self.ordinal(nb)));
            }
        }
        out.sort_by(by_distance);
        debug_assert!(
            {
                let mut o: Vec<usize> = out.iter().map(|x| x.1).collect();
                o.sort_unstable();
                o.windows(2).all(|w| w.first() != w.get(1))
            },
            "a node was expanded twice"
        );
        // Equal entries are adjacent after the sort; never report one twice.
        out.dedup();
        if let QueryTable::Pq(t) = table {
            sc.table = t;
        }
        Ok(out)
    }
}
