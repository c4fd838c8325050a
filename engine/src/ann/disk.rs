//! The two ANN sections of a segment and the beam search over them.
//!
//! - **ANN codes** (fully verified at open, copied into memory): quantiser parameters, the
//!   graph-node -> segment-ordinal map and one code per node.
//! - **ANN graph** (4 KiB sectors, starting at a 4 KiB-aligned file offset): sector 0 is a
//!   header; every other sector packs whole node records (full vector, degree, neighbour ids)
//!   or, for nodes larger than a sector, one node spans consecutive sectors. Each sector ends
//!   in a CRC-32 of its index and payload, checked the first time the sector is read, so a
//!   segment opens without reading its graph and a flipped bit or a swapped sector is a
//!   corruption error at query time, never a wrong neighbour.
//!
//! Layout details: `docs/format.md`.

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rayon::prelude::*;
use rustc_hash::FxHashSet;

use super::codes::{Pq, Quantizer, QueryTable, PQ_CENTROIDS};
use super::partition;
use super::vamana::{self, BuildParams};
use super::{prefetch, to_space, AnnOptions, QueryStats, SearchParams, Space, Visited};
use crate::mmap::{FileBytes, Resident};
use crate::segment::bitset::Bitset;
use crate::{DecodeError, Error, Metric, Result};

/// Sector size of the graph section (and its alignment in the file).
pub(crate) const SECTOR: usize = 4096;
/// Payload bytes of a sector (the last 4 hold its CRC).
const PAYLOAD: usize = SECTOR - 4;
const GRAPH_MAGIC: [u8; 8] = *b"STRAGRPH";
const GRAPH_VERSION: u32 = 1;
/// Version 2 added the coarse partitions (version 1 is still read: no partitions).
const CODES_VERSION: u32 = 2;
const CODES_HEADER: usize = 32;

fn u32_of(n: usize, what: &str) -> Result<u32> {
    u32::try_from(n).map_err(|_| Error::invalid(format!("ANN index: {what} exceeds u32")))
}

fn sector_crc(index: u64, payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&index.to_le_bytes());
    h.update(payload);
    h.finalize()
}

/// Geometry of node records in sectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Geometry {
    dim: usize,
    r: usize,
    node_bytes: usize,
    /// Nodes per sector, or 0 when a node spans `spn` sectors.
    nps: usize,
    spn: usize,
}

impl Geometry {
    fn new(dim: usize, r: usize) -> Geometry {
        let node_bytes = dim * 4 + 4 + r * 4;
        if node_bytes <= PAYLOAD {
            Geometry {
                dim,
                r,
                node_bytes,
                nps: PAYLOAD / node_bytes,
                spn: 1,
            }
        } else {
            Geometry {
                dim,
                r,
                node_bytes,
                nps: 0,
                spn: node_bytes.div_ceil(PAYLOAD),
            }
        }
    }

    /// First sector (counting the header as sector 0) and byte offset in its payload.
    fn locate(&self, node: usize) -> (usize, usize) {
        match node.checked_div(self.nps) {
            Some(q) => (1 + q, (node % self.nps) * self.node_bytes),
            None => (1 + node * self.spn, 0),
        }
    }

    fn sectors(&self, n: usize) -> usize {
        if self.nps > 0 {
            1 + n.div_ceil(self.nps)
        } else {
            1 + n * self.spn
        }
    }
}

/// Sections built for one segment.
pub(crate) struct Built {
    pub codes: Vec<u8>,
    pub graph: Vec<u8>,
    /// Seconds per phase (PQ/SQ8 training, encoding, graph, layout).
    pub phases: Vec<(&'static str, f64)>,
}

/// An existing graph to start from: adjacency in its own node ids, and for each of its nodes
/// the row of the new build it became (`None`: the document is gone).
#[derive(Debug, Clone)]
pub(crate) struct ReuseGraph {
    pub adj: Vec<Vec<u32>>,
    pub new_row: Vec<Option<u32>>,
    pub entry: u32,
    /// The old index's quantiser and its codes (node order): kept when the options still ask
    /// for the same code kind, so a merge neither retrains nor re-encodes the reused rows
    /// (FreshDiskANN also keeps its PQ pivots across merges).
    pub quant: Quantizer,
    pub codes: Vec<u8>,
}

/// Build the ANN sections over `rows` (segment ordinal, vector), ordinals increasing.
#[cfg(test)]
pub(crate) fn build(
    rows: &[(u32, &[f32])],
    dim: usize,
    metric: Metric,
    opts: &AnnOptions,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Built> {
    build_reusing(rows, dim, metric, opts, None, progress)
}

/// [`build`], starting from `reuse` when given: its deleted nodes are repaired out and only
/// the rows it does not hold are inserted (FreshDiskANN-style), instead of a build from
/// scratch.
pub(crate) fn build_reusing(
    rows: &[(u32, &[f32])],
    dim: usize,
    metric: Metric,
    opts: &AnnOptions,
    mut reuse: Option<ReuseGraph>,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Built> {
    let n = rows.len();
    let space = Space::of(metric);
    let mut data = Vec::with_capacity(n * dim);
    let mut tmp = Vec::new();
    for (_, v) in rows {
        to_space(metric, v, &mut tmp);
        data.extend_from_slice(&tmp);
    }
    let mut phases = Vec::new();
    let mut t = std::time::Instant::now();
    let mut lap = |name: &'static str| {
        phases.push((name, t.elapsed().as_secs_f64()));
        t = std::time::Instant::now();
    };
    // A merge keeps the old quantiser and the codes of its surviving rows when the options
    // still ask for that code kind; only the inserted rows are encoded.
    let kept = reuse.as_mut().and_then(|r| {
        let cb = r.quant.code_bytes();
        let same_kind = match (opts.codes, r.quant.kind()) {
            (crate::CodeKind::Pq(0), crate::CodeKind::Pq(m)) => m as usize == (dim / 4).max(1),
            (want, have) => want == have,
        };
        (same_kind && r.codes.len() == r.new_row.len() * cb).then(|| {
            let mut old_code: Vec<Option<&[u8]>> = vec![None; n];
            for (old, nr) in r.new_row.iter().enumerate() {
                if let (Some(nr), Some(c)) = (nr, r.codes.get(old * cb..(old + 1) * cb)) {
                    if let Some(slot) = old_code.get_mut(*nr as usize) {
                        *slot = Some(c);
                    }
                }
            }
            let codes: Vec<u8> = data
                .par_chunks(dim.max(1))
                .zip(old_code.par_iter())
                .flat_map_iter(|(v, old)| {
                    let mut c = Vec::with_capacity(cb);
                    match old {
                        Some(o) => c.extend_from_slice(o),
                        None => r.quant.encode(v, &mut c),
                    }
                    c
                })
                .collect();
            (
                std::mem::replace(
                    &mut r.quant,
                    Quantizer::Sq8 {
                        lo: Vec::new(),
                        step: Vec::new(),
                    },
                ),
                codes,
            )
        })
    });
    let (quant, codes) = match kept {
        Some(qc) => {
            lap("encode inserted rows (codebook kept)");
            qc
        }
        None => {
            let quant = Quantizer::train(opts.codes, &data, dim, opts.seed);
            lap("train codes");
            let cb = quant.code_bytes();
            let codes: Vec<u8> = data
                .par_chunks(dim.max(1))
                .flat_map_iter(|v| {
                    let mut c = Vec::with_capacity(cb);
                    quant.encode(v, &mut c);
                    c
                })
                .collect();
            lap("encode");
            (quant, codes)
        }
    };
    let cb = quant.code_bytes();
    let params = BuildParams {
        r: opts.degree,
        l: opts.build_list,
        alpha: opts.alpha,
        seed: opts.seed,
    };
    let initial = reuse.map(|r| {
        // Extended ids: new rows 0..n, then the old graph's dead nodes (no vectors; only
        // their adjacency is read while repairing).
        let mut ext = Vec::with_capacity(r.new_row.len());
        let mut dead = n as u32;
        for nr in &r.new_row {
            ext.push(match nr {
                Some(x) if (*x as usize) < n => *x,
                _ => {
                    dead += 1;
                    dead - 1
                }
            });
        }
        let total = dead as usize;
        let mut adj = vec![Vec::new(); total];
        for (old, nb) in r.adj.iter().enumerate() {
            if let Some(slot) = ext.get(old).and_then(|&e| adj.get_mut(e as usize)) {
                *slot = nb
                    .iter()
                    .filter_map(|&x| ext.get(x as usize).copied())
                    .collect();
            }
        }
        let deleted: Vec<bool> = (0..total).map(|i| i >= n).collect();
        vamana::repair_deletes(&data, dim, space, params, &mut adj, &deleted);
        adj.truncate(n);
        let mut present = vec![false; n];
        for nr in r.new_row.iter().flatten() {
            if let Some(p) = present.get_mut(*nr as usize) {
                *p = true;
            }
        }
        let entry = match ext.get(r.entry as usize) {
            Some(&e) if (e as usize) < n => e,
            _ => vamana::medoid(&data, dim, space),
        };
        vamana::Initial {
            adj,
            present,
            entry,
        }
    });
    if initial.is_some() {
        lap("repair deletes");
    }
    let graph = vamana::build_from(&data, dim, space, params, initial, progress);
    lap("graph");
    // Coarse partitions (IVF lists) for the planner's partition plan.
    let want_lists = match opts.partitions {
        None => partition::auto_count(n),
        Some(p) => p.min(n).min(partition::MAX_PARTITIONS),
    };
    let (centroids, list_of) = if want_lists > 0 {
        let c = partition::train(&data, dim, want_lists, opts.seed);
        let a = partition::assign(&data, dim, &c);
        lap("partitions");
        (c, a)
    } else {
        (Vec::new(), Vec::new())
    };
    let lists = centroids.len() / dim.max(1);
    // Disk order: list by list, breadth-first from the entry within a list (node ids below
    // are the new ones) — a list is a run of node ids, and graph neighbours still tend to
    // share sectors.
    let mut perm = vamana::bfs_order(&graph);
    let mut offsets = vec![0u32; lists + 1];
    if lists > 0 {
        let list = |old: u32| list_of.get(old as usize).copied().unwrap_or(0) as usize;
        for &old in &perm {
            if let Some(c) = offsets.get_mut(list(old) + 1) {
                *c += 1;
            }
        }
        for p in 0..lists {
            let prev = offsets.get(p).copied().unwrap_or(0);
            if let Some(c) = offsets.get_mut(p + 1) {
                *c += prev;
            }
        }
        let mut next = offsets.clone();
        let mut grouped = vec![0u32; perm.len()];
        for &old in &perm {
            if let Some(at) = next.get_mut(list(old)) {
                if let Some(slot) = grouped.get_mut(*at as usize) {
                    *slot = old;
                }
                *at += 1;
            }
        }
        perm = grouped;
    }
    let mut inv = vec![0u32; n];
    for (new, &old) in perm.iter().enumerate() {
        if let Some(slot) = inv.get_mut(old as usize) {
            *slot = new as u32;
        }
    }
    let old_of = |new: usize| perm.get(new).copied().unwrap_or(0) as usize;

    // Codes section.
    let mut c = Vec::new();
    for x in [
        CODES_VERSION,
        match space {
            Space::L2 => 1,
            Space::Ip => 2,
        },
        quant.kind().tag(),
        u32_of(cb, "code bytes")?,
        u32_of(n, "nodes")?,
        u32_of(dim, "dim")?,
        match &quant {
            Quantizer::Pq(p) => u32_of(p.m(), "m")?,
            Quantizer::Sq8 { .. } => 0,
        },
        u32_of(lists, "partitions")?,
    ] {
        c.extend_from_slice(&x.to_le_bytes());
    }
    match &quant {
        Quantizer::Sq8 { lo, step } => {
            for x in lo.iter().chain(step) {
                c.extend_from_slice(&x.to_le_bytes());
            }
        }
        Quantizer::Pq(p) => {
            for b in &p.bounds {
                c.extend_from_slice(&u32_of(*b, "bound")?.to_le_bytes());
            }
            for x in &p.centroids {
                c.extend_from_slice(&x.to_le_bytes());
            }
        }
    }
    for new in 0..n {
        let o = rows.get(old_of(new)).map_or(0, |r| r.0);
        c.extend_from_slice(&o.to_le_bytes());
    }
    for new in 0..n {
        let at = old_of(new) * cb;
        c.extend_from_slice(codes.get(at..at + cb).unwrap_or_default());
    }
    if lists > 0 {
        for x in &centroids {
            c.extend_from_slice(&x.to_le_bytes());
        }
        for o in &offsets {
            c.extend_from_slice(&o.to_le_bytes());
        }
    }

    // Graph section.
    let geo = Geometry::new(dim, opts.degree);
    let sectors = geo.sectors(n);
    let mut g = vec![0u8; sectors * SECTOR];
    let mut header = Vec::with_capacity(48);
    header.extend_from_slice(&GRAPH_MAGIC);
    for x in [
        GRAPH_VERSION,
        u32_of(dim, "dim")?,
        u32_of(geo.r, "degree")?,
        u32_of(n, "nodes")?,
        inv.get(graph.entry as usize).copied().unwrap_or(0),
        u32_of(geo.node_bytes, "node bytes")?,
        u32_of(geo.nps, "nodes per sector")?,
        u32_of(geo.spn, "sectors per node")?,
    ] {
        header.extend_from_slice(&x.to_le_bytes());
    }
    header.extend_from_slice(&(sectors as u64).to_le_bytes());
    if let Some(dst) = g.get_mut(..header.len()) {
        dst.copy_from_slice(&header);
    }
    let mut rec = Vec::with_capacity(geo.node_bytes);
    for i in 0..n {
        let old = old_of(i);
        let v = rows.get(old).map(|r| r.1).unwrap_or_default();
        rec.clear();
        v.iter()
            .for_each(|x| rec.extend_from_slice(&x.to_le_bytes()));
        let nb = graph.adj.get(old).map(Vec::as_slice).unwrap_or_default();
        rec.extend_from_slice(&u32_of(nb.len(), "degree")?.to_le_bytes());
        nb.iter().for_each(|x| {
            let new = inv.get(*x as usize).copied().unwrap_or(0);
            rec.extend_from_slice(&new.to_le_bytes())
        });
        rec.resize(geo.node_bytes, 0);
        let (s, off) = geo.locate(i);
        for (k, chunk) in rec.chunks(PAYLOAD).enumerate() {
            let at = (s + k) * SECTOR + if k == 0 { off } else { 0 };
            if let Some(dst) = g.get_mut(at..at + chunk.len()) {
                dst.copy_from_slice(chunk);
            }
        }
    }
    for (s, sector) in g.chunks_exact_mut(SECTOR).enumerate() {
        let (payload, crc) = sector.split_at_mut(PAYLOAD);
        crc.copy_from_slice(&sector_crc(s as u64, payload).to_le_bytes());
    }
    lap("layout");
    Ok(Built {
        codes: c,
        graph: g,
        phases,
    })
}

/// An opened ANN index of one segment.
#[derive(Debug)]
pub(crate) struct DiskIndex {
    path: PathBuf,
    metric: Metric,
    space: Space,
    geo: Geometry,
    n: usize,
    entry: u32,
    /// File offset of the graph section (sector 0).
    graph_at: usize,
    /// Node -> segment ordinal (nodes are numbered in the graph's layout order); empty when
    /// they are equal, which saves a random memory access per hop.
    ordinals: Vec<u32>,
    /// Segment ordinal -> node (`u32::MAX`: no vector), the inverse of `ordinals` for the
    /// code scan over a filter's matches; empty when `ordinals` is.
    nodes: Vec<u32>,
    code_bytes: usize,
    codes: Resident,
    quant: Quantizer,
    /// Coarse partitions (empty: none): centroids (dimension-major in memory, so one pass
    /// ranks them all; index space) and list offsets — list `p` is nodes
    /// `offsets[p]..offsets[p+1]`.
    centroids: Vec<f32>,
    offsets: Vec<u32>,
    /// Per list, its members' mean squared distance to the centroid (code space; computed
    /// from the codes on the first partition walk that needs it, see [`DiskIndex::spreads`]).
    spreads: std::sync::OnceLock<Vec<f32>>,
    /// One bit per sector: CRC already checked.
    verified: Vec<AtomicU64>,
    /// Node cache: node -> slot in `cache_arena` (`u32::MAX` = not cached); empty when
    /// nothing is cached. Dense, not hashed: the lookup is on every hop.
    cache_slot: Vec<u32>,
    cache_arena: Resident,
    /// Whether a node read from the mapping (not the node cache) also scores the other nodes
    /// of its sector. True for an index that does not fit in its share of the memory budget
    /// (it is read from disk: sector mates come at no I/O); false for one that fits, whether
    /// its nodes were copied at open or are read lazily from the mapping, so that a lazy and
    /// a warm open search alike — and alike to the calibration, which ran the same rule.
    mates: bool,
}

fn rd_u32(b: &[u8], at: usize) -> Option<u32> {
    crate::segment::format_helpers::le_u32(b, at)
}

fn rd_f32(b: &[u8], at: usize) -> Option<f32> {
    rd_u32(b, at).map(f32::from_bits)
}

/// Reused per-thread search buffers (allocating them per query showed up in profiles).
#[derive(Default)]
struct Scratch {
    table: Vec<f32>,
    seen: Visited,
    expanded: Visited,
    list: Vec<(f32, u32, bool)>,
    v: Vec<f32>,
    qs: Vec<f32>,
    beam: Vec<u32>,
    fresh: Vec<u32>,
    nbs: Vec<u32>,
    /// Filtered searches: admitted neighbours scored by code (result candidates).
    side: Vec<(f32, u32)>,
}

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

/// The `pool` smallest (distance, ordinal) pairs of a stream: a buffer of up to `2 · pool`
/// cut back to `pool` when full, and a bound (the pool's worst) that turns away most pushes
/// without a write (selecting over every scored code was most of a 100 % partition query).
struct TopPool {
    pool: usize,
    items: Vec<(f32, usize)>,
    bound: f32,
    /// Pushes seen (codes scored).
    scored: usize,
}

impl TopPool {
    fn new(pool: usize) -> TopPool {
        TopPool {
            pool: pool.max(1),
            // Grows with what is kept: a pool sized from a large `k` costs nothing up front.
            items: Vec::with_capacity(2 * pool.clamp(1, 1 << 14)),
            bound: f32::INFINITY,
            scored: 0,
        }
    }

    fn by(a: &(f32, usize), b: &(f32, usize)) -> std::cmp::Ordering {
        a.0.total_cmp(&b.0).then(a.1.cmp(&b.1))
    }

    /// Keep `(d, ord)` if it may be among the best (the caller counted it in `scored`).
    #[inline]
    fn keep(&mut self, d: f32, ord: usize) {
        if d > self.bound {
            return;
        }
        self.items.push((d, ord));
        if self.items.len() >= 2 * self.pool {
            self.cut();
        }
    }

    fn cut(&mut self) {
        if self.items.len() > self.pool {
            self.items.select_nth_unstable_by(self.pool - 1, Self::by);
            self.items.truncate(self.pool);
            self.bound = self
                .items
                .iter()
                .map(|x| x.0)
                .fold(f32::NEG_INFINITY, f32::max);
        }
    }

    fn finish(mut self) -> Vec<(f32, usize)> {
        self.cut();
        self.items
    }
}

/// A u32 that orders like the (non-NaN) float: the sign bit flipped for positives, every bit
/// for negatives.
#[inline]
fn order_bits(d: f32) -> u32 {
    let b = d.to_bits();
    if b >> 31 == 1 {
        !b
    } else {
        b | (1 << 31)
    }
}

/// A filter's matches numbered as graph nodes, and how many fall in each partition (the walk
/// skips the empty ones without reading their bitmap words: a filter correlated with a far
/// cluster would otherwise walk every list).
#[derive(Debug)]
pub(crate) struct NodeOrder {
    pub bits: Bitset,
    pub per_list: Vec<u32>,
}

/// See [`DiskIndex::query_features`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct QueryFeatures {
    pub density: [f64; 2],
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
fn normal_cdf_fast(z: f64) -> f64 {
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
fn normal_cdf(z: f64) -> f64 {
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

/// A node read from the graph.
struct NodeRec<'a>(Cow<'a, [u8]>);

impl DiskIndex {
    fn bad(path: &Path, reason: impl Into<String>) -> Error {
        Error::corrupt("segment ANN index", path, reason)
    }

    /// Parse and verify the codes section and the graph header. `seg_n` is the segment's
    /// document count and `has_vector` says which ordinals carry a vector.
    #[allow(
        clippy::too_many_arguments,
        reason = "the section ranges and the segment facts the index is checked against, each one value"
    )]
    pub(crate) fn open(
        path: &Path,
        bytes: &[u8],
        codes: (usize, usize),
        graph: (usize, usize),
        seg_n: usize,
        has_vector: &Bitset,
        dim: usize,
        metric: Metric,
    ) -> Result<DiskIndex> {
        let err = |r: String| DiskIndex::bad(path, r);
        let (c_at, c_len) = codes;
        let c = bytes
            .get(c_at..c_at + c_len)
            .ok_or_else(|| err("codes section out of bounds".into()))?;
        let h = |i: usize| rd_u32(c, i * 4).unwrap_or(u32::MAX) as usize;
        if !(1..=CODES_VERSION as usize).contains(&h(0)) {
            return Err(err(format!("unsupported codes version {}", h(0))));
        }
        // Version 1 has no partitions (the field was reserved, zero).
        let lists = h(7);
        if lists > partition::MAX_PARTITIONS || (h(0) == 1 && lists != 0) {
            return Err(err(format!("{lists} partitions")));
        }
        let space = Space::of(metric);
        let want_space = match space {
            Space::L2 => 1,
            Space::Ip => 2,
        };
        if h(1) != want_space || h(5) != dim {
            return Err(err(
                "codes space or dimension differs from the schema".into()
            ));
        }
        let (kind, cb, n, m) = (h(2), h(3), h(4), h(6));
        if n == 0 || n > seg_n {
            return Err(err(format!(
                "{n} graph nodes in a {seg_n}-document segment"
            )));
        }
        let mut at = CODES_HEADER;
        let floats = |at: usize, k: usize| -> Result<Vec<f32>> {
            (0..k)
                .map(|i| {
                    rd_f32(c, at + i * 4)
                        .filter(|x| x.is_finite())
                        .ok_or_else(|| {
                            err("codes: quantiser parameter missing or not finite".into())
                        })
                })
                .collect()
        };
        let quant = match kind {
            1 => {
                if cb != dim || m != 0 {
                    return Err(err("SQ8 code size differs from the dimension".into()));
                }
                let lo = floats(at, dim)?;
                let step = floats(at + dim * 4, dim)?;
                at += dim * 8;
                Quantizer::Sq8 { lo, step }
            }
            2 => {
                if m == 0 || m > dim || cb != m {
                    return Err(err(format!("PQ with {m} sub-spaces, {cb}-byte codes")));
                }
                let bounds: Vec<usize> = (0..=m)
                    .map(|j| rd_u32(c, at + j * 4).unwrap_or(u32::MAX) as usize)
                    .collect();
                if bounds.first() != Some(&0)
                    || bounds.last() != Some(&dim)
                    || bounds.windows(2).any(|w| w.first() >= w.get(1))
                {
                    return Err(err(
                        "PQ sub-space bounds are not increasing over 0..dim".into()
                    ));
                }
                at += (m + 1) * 4;
                let centroids = floats(at, dim * PQ_CENTROIDS)?;
                at += dim * PQ_CENTROIDS * 4;
                Quantizer::Pq(Pq {
                    dim,
                    bounds,
                    centroids,
                })
            }
            k => return Err(err(format!("unknown code kind {k}"))),
        };
        let part_bytes = if lists > 0 {
            lists * dim * 4 + (lists + 1) * 4
        } else {
            0
        };
        if lists > n || at + n * 4 + n * cb + part_bytes != c_len {
            return Err(err("codes section length mismatch".into()));
        }
        let mut ordinals = Vec::with_capacity(n);
        let mut used = Bitset::new(seg_n);
        for i in 0..n {
            let o = rd_u32(c, at + i * 4).unwrap_or(u32::MAX);
            if o as usize >= seg_n || !has_vector.get(o as usize) || used.get(o as usize) {
                return Err(err(format!(
                    "node {i} maps to a bad or repeated ordinal {o}"
                )));
            }
            used.set(o as usize);
            ordinals.push(o);
        }
        let mut nodes = Vec::new();
        if ordinals.iter().enumerate().all(|(i, &o)| i == o as usize) {
            // The identity: no lookup per hop.
            ordinals = Vec::new();
        } else {
            nodes = vec![u32::MAX; seg_n];
            for (node, &o) in ordinals.iter().enumerate() {
                if let Some(x) = nodes.get_mut(o as usize) {
                    *x = node as u32;
                }
            }
        }
        at += n * 4;
        let codes = Resident::copy_of(c.get(at..at + n * cb).unwrap_or_default());
        at += n * cb;
        // Partitions: centroids, then list offsets (0, non-decreasing, ending at `n`).
        let mut centroids = Vec::new();
        let mut offsets = Vec::new();
        if lists > 0 {
            centroids = partition::to_soa(&floats(at, lists * dim)?, dim);
            at += lists * dim * 4;
            offsets = (0..=lists)
                .map(|p| rd_u32(c, at + p * 4).unwrap_or(u32::MAX))
                .collect();
            if offsets.first() != Some(&0)
                || offsets.last() != Some(&(n as u32))
                || offsets.windows(2).any(|w| w.first() > w.get(1))
            {
                return Err(err(
                    "partition offsets are not 0..=nodes, non-decreasing".into()
                ));
            }
        }

        // Graph header (its CRC was checked with the section table).
        let (g_at, g_len) = graph;
        if g_at % SECTOR != 0 || g_len % SECTOR != 0 || g_len == 0 {
            return Err(err("graph section is not sector-aligned".into()));
        }
        let hdr = bytes
            .get(g_at..g_at + SECTOR)
            .ok_or_else(|| err("graph header out of bounds".into()))?;
        if hdr.get(..8) != Some(&GRAPH_MAGIC[..]) {
            return Err(err("bad graph magic".into()));
        }
        let g = |i: usize| rd_u32(hdr, 8 + i * 4).unwrap_or(u32::MAX) as usize;
        if g(0) != GRAPH_VERSION as usize {
            return Err(err(format!("unsupported graph version {}", g(0))));
        }
        let (gdim, r, gn, entry) = (g(1), g(2), g(3), g(4));
        if gdim != dim || gn != n || !(1..=4096).contains(&r) || entry >= n {
            return Err(err("graph header disagrees with the codes section".into()));
        }
        let geo = Geometry::new(dim, r);
        if (geo.node_bytes, geo.nps, geo.spn) != (g(5), g(6), g(7)) {
            return Err(err("graph node geometry mismatch".into()));
        }
        let sectors = crate::segment::format_helpers::le_u64(hdr, 40).unwrap_or(0) as usize;
        if sectors != geo.sectors(n) || sectors * SECTOR != g_len {
            return Err(err("graph sector count mismatch".into()));
        }
        let verified = (0..sectors.div_ceil(64))
            .map(|_| AtomicU64::new(0))
            .collect();
        let idx = DiskIndex {
            path: path.to_owned(),
            metric,
            space,
            geo,
            n,
            entry: entry as u32,
            graph_at: g_at,
            ordinals,
            nodes,
            code_bytes: cb,
            codes,
            quant,
            centroids,
            offsets,
            spreads: std::sync::OnceLock::new(),
            verified,
            cache_slot: Vec::new(),
            cache_arena: Resident::default(),
            mates: true,
        };
        idx.verify_sector(bytes, 0)?;
        Ok(idx)
    }

    /// Nodes in the graph.
    pub(crate) fn len(&self) -> usize {
        self.n
    }

    /// Degree bound `R`.
    pub(crate) fn degree_max(&self) -> usize {
        self.geo.r
    }

    /// The quantiser and every node's code (node order), for a merge that keeps them.
    pub(crate) fn quantizer_and_codes(&self) -> (Quantizer, Vec<u8>) {
        (self.quant.clone(), self.codes.to_vec())
    }

    /// The whole adjacency (reads, and checks, every sector) with each node's segment
    /// ordinal, and the entry node: what a compaction reuses.
    pub(crate) fn adjacency(&self, bytes: &[u8]) -> Result<(Vec<Vec<u32>>, Vec<usize>, u32)> {
        let mut adj = Vec::with_capacity(self.n);
        let mut ords = Vec::with_capacity(self.n);
        let mut nbs = Vec::new();
        for node in 0..self.n as u32 {
            let rec = self.read_node(bytes, node)?;
            self.neighbours_into(&rec.0, node, &mut nbs)?;
            adj.push(nbs.clone());
            ords.push(self.ordinal(node));
        }
        Ok((adj, ords, self.entry))
    }

    /// Code kind and bytes per code.
    pub(crate) fn code_kind(&self) -> (crate::CodeKind, usize) {
        (self.quant.kind(), self.code_bytes)
    }

    /// Read every node (checking every sector CRC, degree and neighbour id): the degree
    /// histogram (index = degree), or the first corruption found.
    pub(crate) fn degree_histogram(&self, bytes: &[u8]) -> Result<Vec<u64>> {
        let mut hist = vec![0u64; self.geo.r + 1];
        let mut nbs = Vec::new();
        for node in 0..self.n as u32 {
            let rec = self.read_node(bytes, node)?;
            self.neighbours_into(&rec.0, node, &mut nbs)?;
            if let Some(h) = hist.get_mut(nbs.len()) {
                *h += 1;
            }
        }
        Ok(hist)
    }

    /// Bytes this index keeps in memory (codes, node map, quantiser, node cache).
    pub(crate) fn resident_bytes(&self) -> usize {
        let q = match &self.quant {
            Quantizer::Sq8 { lo, .. } => lo.len() * 8,
            Quantizer::Pq(p) => p.centroids.len() * 4,
        };
        self.codes.len()
            + self.centroids.len() * 4
            + self.offsets.len() * 4
            + self.ordinals.len() * 4
            + self.nodes.len() * 4
            + q
            + self.cache_bytes()
            + self.verified.len() * 8
    }

    /// Cache bytes per node (the record; the node -> slot map adds 4 bytes per graph node).
    pub(crate) fn node_bytes_cached(&self) -> usize {
        self.geo.node_bytes
    }

    fn cache_bytes(&self) -> usize {
        self.cache_slot.len() * 4 + self.cache_arena.len()
    }

    /// The graph node of segment ordinal `ord`, if that document has a vector.
    #[inline]
    pub(crate) fn node_of(&self, ord: usize) -> Option<u32> {
        if self.ordinals.is_empty() {
            return (ord < self.n).then_some(ord as u32);
        }
        self.nodes.get(ord).copied().filter(|&n| n != u32::MAX)
    }

    #[inline]
    pub(crate) fn ordinal(&self, node: u32) -> usize {
        if self.ordinals.is_empty() {
            node as usize
        } else {
            self.ordinals.get(node as usize).copied().unwrap_or(0) as usize
        }
    }

    /// The cached record of `node`. When every node is cached the arena is in node order and
    /// needs no slot map (one random access less per hop).
    #[inline]
    fn cached(&self, node: u32) -> Option<&[u8]> {
        let slot = if self.cache_slot.is_empty() {
            node as usize
        } else {
            *self.cache_slot.get(node as usize)? as usize
        };
        let b = self.geo.node_bytes;
        self.cache_arena.get(slot * b..slot * b + b)
    }

    /// Memory of the index without its cache (what opening it costs).
    pub(crate) fn base_bytes(&self) -> usize {
        self.resident_bytes() - self.cache_bytes()
    }

    /// Bytes of the whole graph's node records: what a node cache holding every node takes
    /// (with no slot map: when every node is cached the arena is in node order).
    pub(crate) fn graph_bytes(&self) -> usize {
        self.n.saturating_mul(self.geo.node_bytes)
    }

    /// Declare whether the whole graph is within this index's share of the memory budget
    /// (read lazily from the mapping, or copied by [`DiskIndex::fill_cache`]): an index that
    /// fits searches without sector mates, one that does not scores a read sector's mates.
    pub(crate) fn set_fits(&mut self, fits: bool) {
        self.mates = !fits;
    }

    /// Cache the nodes nearest the entry point (breadth-first) within `budget` bytes; returns
    /// the bytes used. The index fits (see [`DiskIndex::set_fits`]) when every node was cached.
    pub(crate) fn fill_cache(&mut self, bytes: &[u8], budget: usize) -> Result<usize> {
        self.cache_slot = Vec::new();
        self.cache_arena = Resident::default();
        self.mates = self.graph_bytes() > budget;
        let per = self.node_bytes_cached();
        let map = self.n * 4;
        let max = (budget.saturating_sub(map) / per.max(1)).min(self.n);
        if max == 0 {
            return Ok(0);
        }
        if self.n * per <= budget {
            let mut arena = Vec::with_capacity(self.n * per);
            for node in 0..self.n as u32 {
                let rec = self.read_node(bytes, node)?;
                self.neighbours_into(&rec.0, node, &mut Vec::new())?;
                arena.extend_from_slice(&rec.0);
            }
            self.cache_arena = Resident::copy_of(&arena);
            return Ok(self.cache_bytes());
        }
        let mut slot = vec![u32::MAX; self.n];
        let mut arena = Vec::with_capacity(max * per);
        let mut queue = std::collections::VecDeque::from([self.entry]);
        let mut seen = FxHashSet::default();
        seen.insert(self.entry);
        let mut nbs = Vec::new();
        let mut cached = 0usize;
        while let Some(node) = queue.pop_front() {
            if cached >= max {
                break;
            }
            let rec = self.read_node(bytes, node)?;
            self.neighbours_into(&rec.0, node, &mut nbs)?;
            for &nb in &nbs {
                if seen.insert(nb) {
                    queue.push_back(nb);
                }
            }
            arena.extend_from_slice(&rec.0);
            if let Some(s) = slot.get_mut(node as usize) {
                *s = cached as u32;
            }
            cached += 1;
        }
        self.cache_slot = slot;
        self.cache_arena = Resident::copy_of(&arena);
        Ok(self.cache_bytes())
    }

    fn verify_sector<'a>(&self, bytes: &'a [u8], s: usize) -> Result<&'a [u8]> {
        let at = self.graph_at + s * SECTOR;
        let sector = bytes
            .get(at..at + SECTOR)
            .ok_or_else(|| DiskIndex::bad(&self.path, format!("graph sector {s} out of bounds")))?;
        let (word, bit) = (s / 64, 1u64 << (s % 64));
        let w = self.verified.get(word);
        if w.is_some_and(|w| w.load(Ordering::Relaxed) & bit != 0) {
            return Ok(sector);
        }
        let payload = sector.get(..PAYLOAD).unwrap_or_default();
        if rd_u32(sector, PAYLOAD) != Some(sector_crc(s as u64, payload)) {
            return Err(Error::corruption(
                "segment ANN graph sector",
                &self.path,
                DecodeError::Checksum,
            )
            .at(at as u64));
        }
        if let Some(w) = w {
            w.fetch_or(bit, Ordering::Relaxed);
        }
        Ok(sector)
    }

    /// `node`'s record from the node cache, else read (and verified) from its sector; counts
    /// the hit or the sectors read. The flag says it came from disk.
    fn fetch<'a>(
        &'a self,
        bytes: &'a [u8],
        node: u32,
        stats: &mut QueryStats,
    ) -> Result<(NodeRec<'a>, bool)> {
        match self.cached(node) {
            Some(r) => {
                stats.cache_hits += 1;
                Ok((NodeRec(Cow::Borrowed(r)), false))
            }
            None => {
                stats.sectors_read += self.geo.spn as u64;
                Ok((self.read_node(bytes, node)?, true))
            }
        }
    }

    fn read_node<'a>(&self, bytes: &'a [u8], node: u32) -> Result<NodeRec<'a>> {
        let (s, off) = self.geo.locate(node as usize);
        if self.geo.spn == 1 {
            let sector = self.verify_sector(bytes, s)?;
            let rec = sector
                .get(off..off + self.geo.node_bytes)
                .ok_or_else(|| DiskIndex::bad(&self.path, format!("node {node} out of sector")))?;
            return Ok(NodeRec(Cow::Borrowed(rec)));
        }
        let mut rec = Vec::with_capacity(self.geo.node_bytes);
        for k in 0..self.geo.spn {
            let sector = self.verify_sector(bytes, s + k)?;
            let take = (self.geo.node_bytes - rec.len()).min(PAYLOAD);
            rec.extend_from_slice(sector.get(..take).unwrap_or_default());
        }
        Ok(NodeRec(Cow::Owned(rec)))
    }

    fn neighbours_into(&self, rec: &[u8], node: u32, out: &mut Vec<u32>) -> Result<()> {
        let base = self.geo.dim * 4;
        let deg = rd_u32(rec, base).unwrap_or(u32::MAX) as usize;
        if deg > self.geo.r {
            return Err(DiskIndex::bad(
                &self.path,
                format!("node {node}: degree {deg} > {}", self.geo.r),
            ));
        }
        out.clear();
        for j in 0..deg {
            let x = rd_u32(rec, base + 4 + j * 4)
                .filter(|&x| (x as usize) < self.n && x != node)
                .ok_or_else(|| {
                    DiskIndex::bad(
                        &self.path,
                        format!("node {node}: neighbour {j} out of range"),
                    )
                })?;
            out.push(x);
        }
        Ok(())
    }

    /// The vector of a node record: borrowed in place when the bytes are 4-aligned (cached
    /// records and mapped sectors are), copied otherwise.
    fn vector_of<'a>(&self, rec: &'a [u8], out: &'a mut Vec<f32>) -> &'a [f32] {
        let raw = rec.get(..self.geo.dim * 4).unwrap_or_default();
        #[cfg(target_endian = "little")]
        if let Ok(v) = bytemuck::try_cast_slice::<u8, f32>(raw) {
            return v;
        }
        out.clear();
        out.extend(
            rec.get(..self.geo.dim * 4)
                .unwrap_or_default()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes(b.try_into().unwrap_or([0; 4]))),
        );
        out
    }

    /// Filter-first with codes: the code distance of every node whose ordinal `accept`s, and
    /// the `pool` nearest by code (ordinal, code distance), for a re-rank with full vectors.
    /// Codes are in memory, so this reads nothing from disk.
    pub(crate) fn scan_codes(
        &self,
        q: &[f32],
        pool: usize,
        candidates: &mut dyn Iterator<Item = usize>,
        accept: &dyn Fn(usize) -> bool,
        stats: &mut QueryStats,
    ) -> Vec<(f32, usize)> {
        let mut qs = Vec::new();
        to_space(self.metric, q, &mut qs);
        let table = self.quant.query_table(self.space, &qs, Vec::new());
        // Only the candidates (the filter's matches), not every node: at 0.1 % of 1M the
        // walk over all nodes cost 2.8 ms of a query's 2.9 (measured).
        let picked: Vec<(u32, usize)> = candidates
            .filter_map(|ord| Some((self.node_of(ord)?, ord))) // None: no vector
            .filter(|&(_, ord)| accept(ord))
            .collect();
        // Sparse matches make each code a cache miss the hardware prefetcher cannot predict:
        // fetch a few ahead (a 1 % filter on 1M × 64: 2,224 -> 2,811 QPS).
        const AHEAD: usize = 8;
        for &(node, _) in picked.iter().take(AHEAD) {
            self.prefetch_code(node);
        }
        let mut all: Vec<(f32, usize)> = Vec::with_capacity(picked.len());
        for (j, &(node, ord)) in picked.iter().enumerate() {
            if let Some(&(ahead, _)) = picked.get(j + AHEAD) {
                self.prefetch_code(ahead);
            }
            all.push((table.distance(self.code(node)), ord));
        }
        stats.distance_computations += all.len() as u64;
        if all.len() > pool && pool > 0 {
            all.select_nth_unstable_by(pool - 1, |a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            all.truncate(pool);
        }
        all
    }

    /// Coarse partitions (IVF lists) of this index (0: none, the segment predates them or was
    /// built without).
    pub(crate) fn partitions(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }

    /// Per list, the members' mean squared distance to the centroid in code space (what
    /// [`TailModel`] needs), computed from the codes once per open segment — on the first
    /// partition walk that goes past its target (1M × 64: measured 15 ms on one thread, 6.4 ms
    /// on the 2-core pool), so opening stays free of it and the format of the lists unchanged.
    fn spreads(&self) -> &[f32] {
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
    pub(crate) fn query_features(
        &self,
        q: &[f32],
        filter: Option<(&NodeOrder, u64)>,
        divs: [u32; 2],
    ) -> Option<QueryFeatures> {
        let lists = self.partitions();
        if lists == 0 || self.n == 0 {
            return None;
        }
        let mut qs = Vec::new();
        to_space(self.metric, q, &mut qs);
        let mut cdist = vec![0.0f32; lists];
        super::simd::distances_soa(&qs, &self.centroids, &mut cdist, self.space == Space::Ip);
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
        let mut density = [1.0f64; 2];
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
        }
        Some(QueryFeatures { density, outside })
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
        super::simd::distances_soa(
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

    #[inline]
    fn prefetch_code(&self, node: u32) {
        if let Some(code) = self.codes.get(node as usize * self.code_bytes..) {
            for line in (0..self.code_bytes).step_by(64) {
                prefetch(code.get(line..).unwrap_or_default());
            }
        }
    }

    fn code(&self, node: u32) -> &[u8] {
        let at = node as usize * self.code_bytes;
        self.codes.get(at..at + self.code_bytes).unwrap_or_default()
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
        let l = crate::query::plan::effort_list(params.list).max(k).max(1);
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
            beam,
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
        // Sector mates expanded along with an uncached read: they add matches to `out` as
        // beam nodes do, so the exit below counts them too (uncounted, an anti-correlated
        // filter looked healthy whenever nodes came from the mapping rather than the node
        // cache). The caller falls back whenever the exit fires (`anti_correlated_exits`).
        let mut mates = 0usize;
        loop {
            if taken >= cap {
                break;
            }
            if min_match_rate > 0.0
                && taken >= probe
                && (step.out.len() as f64) < min_match_rate * (taken + mates) as f64
            {
                // Anti-correlated filter: the caller scans the matches instead.
                step.stats.anti_correlated_exits += 1;
                break;
            }
            beam.clear();
            for c in step.list.iter_mut().filter(|c| !c.2).take(w) {
                c.2 = true;
                taken += 1;
                beam.push(c.1);
                // Marked before any read: a beam node that is a sector mate of an earlier one
                // in this beam must not be expanded twice.
                expanded.insert(c.1);
            }
            if beam.is_empty() {
                break;
            }
            // Start every read of the beam (sectors from disk, cached records from memory)
            // before using any of them.
            for &node in beam.iter() {
                match self.cached(node) {
                    Some(rec) => (0..rec.len())
                        .step_by(64)
                        .for_each(|at| prefetch(rec.get(at..).unwrap_or_default())),
                    // A graph read from disk: ask the OS to start the reads. One that fits
                    // in memory (its pages resident after first use): a CPU prefetch, as for
                    // the node cache — the `madvise` per hop was ~11 % of a process of 1,000
                    // filtered queries on a lazily opened 65k × 768 segment.
                    None if self.mates => {
                        let (s, _) = self.geo.locate(node as usize);
                        file.prefetch(self.graph_at + s * SECTOR, self.geo.spn * SECTOR);
                    }
                    None => {
                        let (s, off) = self.geo.locate(node as usize);
                        let at = self.graph_at + s * SECTOR + off;
                        if let Some(rec) = bytes.get(at..at + self.geo.node_bytes) {
                            (0..rec.len())
                                .step_by(64)
                                .for_each(|i| prefetch(rec.get(i..).unwrap_or_default()));
                        }
                    }
                }
            }
            step.fresh.clear();
            for &node in beam.iter() {
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
            {
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
        }
        // Filtered: matching neighbours that were scored (by code) but never expanded are
        // result candidates too — the best `rerank` of them get their exact distance. A
        // match then counts once it is *seen* near the query, not only once it is expanded,
        // so the list need not be widened by 1 / selectivity to expand enough matches.
        // Not when the expanded nodes matched too rarely (anti-correlated filter): the caller
        // then sees that rate and scans the matches instead.
        let anti = (out.len() as f64) < min_match_rate * taken as f64;
        if filtered && !anti && !side.is_empty() {
            side.retain(|&(_, nb)| !expanded.contains(nb));
            let rerank = (4 * k).max(40);
            if side.len() > rerank {
                side.select_nth_unstable_by(rerank - 1, |a, b| {
                    a.0.total_cmp(&b.0).then(a.1.cmp(&b.1))
                });
                side.truncate(rerank);
            }
            for &(_, nb) in side.iter() {
                let (rec, _) = self.fetch(bytes, nb, stats)?;
                let exact =
                    crate::distance::search_distance(self.metric, q, self.vector_of(&rec.0, v));
                stats.distance_computations += 1;
                out.push((exact, self.ordinal(nb)));
            }
        }
        out.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
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

#[cfg(feature = "fuzzing")]
/// Recompute every sector CRC of a graph section at `at..at + len` of `b` (fuzzing: lets
/// mutations reach the structural checks).
pub(crate) fn fix_sector_crcs(b: &mut [u8], at: usize, len: usize) {
    let Some(sec) = at.checked_add(len).and_then(|end| b.get_mut(at..end)) else {
        return;
    };
    for (s, sector) in sec.chunks_exact_mut(SECTOR).enumerate() {
        let (payload, crc) = sector.split_at_mut(PAYLOAD);
        crc.copy_from_slice(&sector_crc(s as u64, payload).to_le_bytes());
    }
}

/// Whether a section kind is checksummed per sector (its table CRC covers only sector 0).
pub(crate) fn table_crc_bytes(kind: u32, len: usize) -> usize {
    if kind == crate::segment::SectionKind::AnnGraph as u32 {
        len.min(SECTOR)
    } else {
        len
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ann::testdata::{brute_force, clustered};
    use crate::ann::CodeKind;

    #[derive(Clone)]
    struct Fixture {
        bytes: Vec<u8>,
        codes: (usize, usize),
        graph: (usize, usize),
        n: usize,
    }

    fn fixture(n: usize, dim: usize, codes: CodeKind, metric: Metric) -> (Fixture, Vec<f32>) {
        // Low intrinsic dimension (8), repeated up to `dim`: neighbours stay meaningful even
        // in the wide case that makes one node span two sectors.
        let base = clustered(n, 8, 10, 4);
        let data: Vec<f32> = base
            .chunks_exact(8)
            .flat_map(|r| (0..dim).map(move |j| r[j % 8]))
            .collect();
        (fixture_of(&data, dim, codes, metric), data)
    }

    /// A segment's ANN sections built over `data` (`dim` floats per row).
    fn fixture_of(data: &[f32], dim: usize, codes: CodeKind, metric: Metric) -> Fixture {
        let n = data.len() / dim;
        let rows: Vec<(u32, &[f32])> = data
            .chunks_exact(dim)
            .enumerate()
            .map(|(i, v)| (i as u32, v))
            .collect();
        let opts = AnnOptions {
            degree: 16,
            build_list: 40,
            codes,
            ..AnnOptions::default()
        };
        let built = build(&rows, dim, metric, &opts, &|_| {}).unwrap();
        let mut bytes = built.codes.clone();
        let codes = (0, bytes.len());
        bytes.resize(bytes.len().next_multiple_of(SECTOR), 0);
        let g_at = bytes.len();
        bytes.extend_from_slice(&built.graph);
        let graph = (g_at, built.graph.len());
        Fixture {
            bytes,
            codes,
            graph,
            n,
        }
    }

    fn open(f: &Fixture, dim: usize, metric: Metric) -> Result<DiskIndex> {
        DiskIndex::open(
            Path::new("t"),
            &f.bytes,
            f.codes,
            f.graph,
            f.n,
            &Bitset::full(f.n),
            dim,
            metric,
        )
    }

    fn search(idx: &DiskIndex, f: &Fixture, q: &[f32]) -> Result<Vec<(f32, usize)>> {
        let file = FileBytes::Owned(f.bytes.clone());
        let mut st = QueryStats::default();
        idx.search(&file, q, 10, &SearchParams::default(), &|_| true, &mut st)
    }

    #[test]
    fn every_code_kind_and_geometry_finds_neighbours() {
        // 8 dims: many nodes per sector; 1100 dims: one node spans two sectors.
        for (dim, kind) in [
            (8, CodeKind::Sq8),
            (8, CodeKind::Pq(0)),
            (1100, CodeKind::Pq(64)),
        ] {
            let (f, data) = fixture(600, dim, kind, Metric::L2);
            let idx = open(&f, dim, Metric::L2).unwrap();
            let mut hit = 0;
            for qi in 0..20 {
                let q = data.get(qi * 29 * dim..(qi * 29 + 1) * dim).unwrap();
                let want = brute_force(&data, dim, q, 10);
                let got = search(&idx, &f, q).unwrap();
                hit += got
                    .iter()
                    .take(10)
                    .filter(|(_, o)| want.contains(&(*o as u32)))
                    .count();
            }
            assert!(hit >= 180, "dim {dim} {kind:?}: {hit}/200");
        }
    }

    #[test]
    fn corrupt_sectors_and_bad_adjacency_are_errors() {
        let dim = 8;
        let (f, data) = fixture(400, dim, CodeKind::Pq(0), Metric::L2);
        let q = data.get(..dim).unwrap().to_vec();
        let sectors = f.graph.1 / SECTOR;
        // A flipped bit anywhere in a node sector: the query touching it fails cleanly (sector
        // 0 is the header, checked at open).
        for s in 1..sectors {
            let mut g = Fixture {
                bytes: f.bytes.clone(),
                ..f
            };
            let at = f.graph.0 + s * SECTOR + (s * 37) % SECTOR;
            g.bytes[at] ^= 0x10;
            let idx = open(&g, dim, Metric::L2).unwrap();
            let file = FileBytes::Owned(g.bytes.clone());
            // Visit every node so the damaged sector is read.
            let mut st = QueryStats::default();
            let p = SearchParams {
                list: 400,
                beam_width: 8,
                exact: false,
                ..SearchParams::default()
            };
            match idx.search(&file, &q, 10, &p, &|_| true, &mut st) {
                Err(Error::Corruption {
                    what, kind, offset, ..
                }) => {
                    assert_eq!(what, "segment ANN graph sector");
                    assert_eq!(kind, DecodeError::Checksum);
                    let want = (f.graph.0 + s * SECTOR) as u64;
                    assert_eq!(offset, Some(want), "sector {s}");
                }
                other => panic!("sector {s}: {other:?}"),
            }
        }
        // Header flips are caught at open.
        let mut g = Fixture {
            bytes: f.bytes.clone(),
            ..f
        };
        g.bytes[f.graph.0 + 20] ^= 1;
        assert!(open(&g, dim, Metric::L2).is_err());
        // Swapping two sectors is caught (the CRC covers the sector index).
        if sectors > 3 {
            let mut g = Fixture {
                bytes: f.bytes.clone(),
                ..f
            };
            let (a, b) = (f.graph.0 + SECTOR, f.graph.0 + 2 * SECTOR);
            let tmp = g.bytes[a..a + SECTOR].to_vec();
            g.bytes.copy_within(b..b + SECTOR, a);
            g.bytes[b..b + SECTOR].copy_from_slice(&tmp);
            let idx = open(&g, dim, Metric::L2).unwrap();
            let file = FileBytes::Owned(g.bytes.clone());
            let mut st = QueryStats::default();
            let p = SearchParams {
                list: 400,
                beam_width: 8,
                exact: false,
                ..SearchParams::default()
            };
            assert!(idx.search(&file, &q, 10, &p, &|_| true, &mut st).is_err());
        }
        // A neighbour id out of range, with a valid CRC: corruption, not a panic.
        let mut g = Fixture {
            bytes: f.bytes.clone(),
            ..f
        };
        let geo = Geometry::new(dim, 16);
        let (s, off) = geo.locate(0);
        let sector_at = f.graph.0 + s * SECTOR;
        let nb_at = sector_at + off + dim * 4 + 4;
        g.bytes[nb_at..nb_at + 4].copy_from_slice(&999_999u32.to_le_bytes());
        let crc = sector_crc(s as u64, &g.bytes[sector_at..sector_at + PAYLOAD]);
        g.bytes[sector_at + PAYLOAD..sector_at + SECTOR].copy_from_slice(&crc.to_le_bytes());
        let idx = open(&g, dim, Metric::L2).unwrap();
        let file = FileBytes::Owned(g.bytes.clone());
        let mut st = QueryStats::default();
        let p = SearchParams {
            list: 400,
            beam_width: 8,
            exact: false,
            ..SearchParams::default()
        };
        match idx.search(&file, &q, 10, &p, &|_| true, &mut st) {
            Err(Error::Corruption { kind, .. }) => {
                assert!(kind.to_string().contains("out of range"), "{kind}")
            }
            other => panic!("{other:?}"),
        }
        // Every flipped bit of the codes section is caught at open or gives a clean result
        // (never a panic); damaged ordinals and parameters are errors.
        for i in (0..f.codes.1).step_by(3) {
            let mut g = Fixture {
                bytes: f.bytes.clone(),
                ..f
            };
            g.bytes[i] ^= 0x40;
            if let Ok(idx) = open(&g, dim, Metric::L2) {
                let _ = search(&idx, &g, &q);
            }
        }
    }

    #[test]
    fn cosine_and_inner_product_spaces() {
        let dim = 16;
        for metric in [Metric::Cosine, Metric::InnerProduct] {
            let (f, data) = fixture(800, dim, CodeKind::Pq(0), metric);
            let idx = open(&f, dim, metric).unwrap();
            let mut hit = 0;
            for qi in 0..20 {
                let q = data.get(qi * 31 * dim..(qi * 31 + 1) * dim).unwrap();
                let mut want: Vec<(f32, usize)> = data
                    .chunks_exact(dim)
                    .enumerate()
                    .map(|(i, v)| (crate::distance::search_distance(metric, q, v), i))
                    .collect();
                want.sort_by(|a, b| a.0.total_cmp(&b.0));
                let want: Vec<usize> = want.iter().take(10).map(|x| x.1).collect();
                let p = SearchParams {
                    list: 100,
                    ..SearchParams::default()
                };
                let file = FileBytes::Owned(f.bytes.clone());
                let mut st = QueryStats::default();
                let got = idx.search(&file, q, 10, &p, &|_| true, &mut st).unwrap();
                hit += got
                    .iter()
                    .take(10)
                    .filter(|(_, o)| want.contains(o))
                    .count();
            }
            assert!(hit >= 170, "{metric:?}: {hit}/200");
        }
    }

    /// The partition walk over every list equals the code scan over every match (same codes,
    /// same pool); a short walk returns only members of the first list; deleted ordinals
    /// never come back; corrupt partition offsets are a corruption error.
    #[test]
    fn partition_walk_equals_code_scan_when_it_walks_every_list() {
        let (dim, n) = (16, 3000);
        let (f, data) = fixture(n, dim, CodeKind::Pq(4), Metric::L2);
        let idx = open(&f, dim, Metric::L2).unwrap();
        let lists = idx.partitions();
        assert_eq!(lists, partition::auto_count(n));
        let mut filter = Bitset::new(n);
        for i in (0..n).filter(|i| i % 3 != 1) {
            filter.set(i);
        }
        let by_node = idx.to_node_order(&filter);
        assert_eq!(
            by_node.per_list.iter().map(|&c| c as usize).sum::<usize>(),
            filter.count()
        );
        for q in data.chunks_exact(dim).step_by(301) {
            let mut st = QueryStats::default();
            let want = PartitionWant {
                target: usize::MAX,
                pool: 50,
                k: 0,
                limit: usize::MAX,
                tail_start: 0.0,
                tail_stop: 0.0,
            };
            let (mut got, walk) = idx.scan_partitions(q, want, Some(&by_node), None, None, &mut st);
            let nonempty = by_node.per_list.iter().filter(|&&c| c > 0).count();
            assert_eq!(walk.lists as usize, nonempty);
            let mut all = (0..n).filter(|&i| filter.get(i));
            let mut exp = idx.scan_codes(q, 50, &mut all, &|_| true, &mut st);
            let by = |a: &(f32, usize), b: &(f32, usize)| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1));
            got.sort_by(by);
            exp.sort_by(by);
            assert_eq!(got, exp);
            // A short walk: the first list alone, every result a match in it.
            let want = PartitionWant {
                target: 1,
                pool: 10,
                k: 0,
                limit: 1,
                tail_start: 0.0,
                tail_stop: 0.0,
            };
            let (got, walk) = idx.scan_partitions(q, want, Some(&by_node), None, None, &mut st);
            assert_eq!(walk.lists, 1);
            let list_of = |ord: usize| {
                let node = idx.node_of(ord).unwrap() as usize;
                idx.offsets
                    .windows(2)
                    .position(|w| (w[0] as usize..w[1] as usize).contains(&node))
                    .unwrap()
            };
            let first = list_of(got[0].1);
            assert!(got
                .iter()
                .all(|&(_, ord)| list_of(ord) == first && filter.get(ord)));
            // Deleted ordinals never come back.
            let want = PartitionWant {
                target: usize::MAX,
                pool: 3000,
                k: 0,
                limit: usize::MAX,
                tail_start: 0.0,
                tail_stop: 0.0,
            };
            let (got, _) = idx.scan_partitions(q, want, None, Some(&filter), None, &mut st);
            assert_eq!(got.len(), n - filter.count());
            assert!(got.iter().all(|&(_, ord)| !filter.get(ord)));
        }
        // Offsets that do not end at the node count: corruption at open.
        let mut bad = f.clone();
        let (c_at, c_len) = bad.codes;
        let last = c_at + c_len - 4;
        bad.bytes[last..last + 4].copy_from_slice(&(n as u32 - 1).to_le_bytes());
        let err = open(&bad, dim, Metric::L2).unwrap_err().to_string();
        assert!(err.contains("partition offsets"), "{err}");
    }

    /// A filter anti-correlated with the query's neighbourhood (no match among the query's
    /// nearest 5 %; a random 10 % beyond): its nearest matches lie in many lists at nearly
    /// the same distance, so a walk that stops at its target misses many of them. Past the
    /// target the tail estimate keeps the walk going; on a filter spread like the data it
    /// adds nothing.
    #[test]
    fn partition_walk_goes_past_its_target_for_an_anti_correlated_filter() {
        use rand::{Rng, SeedableRng};
        let (dim, n) = (16, 20_000);
        let data = clustered(n, dim, 200, 7);
        let f = fixture_of(&data, dim, CodeKind::Pq(4), Metric::L2);
        let idx = open(&f, dim, Metric::L2).unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let (mut hit_short, mut hit_long, mut hit_random) = (0, 0, 0);
        let queries = 20;
        let (mut lists_random_short, mut lists_random_long) = (0, 0);
        let (mut lists_anti_short, mut lists_anti_long) = (0, 0);
        for qi in 0..queries {
            let q = data.chunks_exact(dim).nth(qi * 997).unwrap();
            let mut by_dist: Vec<(f32, usize)> = data
                .chunks_exact(dim)
                .enumerate()
                .map(|(i, r)| (super::super::simd::l2_sq_scalar(q, r), i))
                .collect();
            by_dist.sort_by(|a, b| a.0.total_cmp(&b.0));
            let mut anti = Bitset::new(n);
            let mut random = Bitset::new(n);
            for (rank, &(_, i)) in by_dist.iter().enumerate() {
                let tagged = rng.gen_bool(0.1);
                if tagged && rank >= n / 20 {
                    anti.set(i);
                }
                if tagged {
                    random.set(i);
                }
            }
            // The best 10 by code over every match: what a walk of every list returns.
            let best = |filter: &Bitset| {
                let mut st = QueryStats::default();
                let mut all = (0..n).filter(|&i| filter.get(i));
                let mut v = idx.scan_codes(q, 10, &mut all, &|_| true, &mut st);
                v.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
                v.into_iter().map(|x| x.1).collect::<Vec<_>>()
            };
            let walk = |filter: &Bitset, k: usize| {
                let by_node = idx.to_node_order(filter);
                let want = PartitionWant {
                    target: 200,
                    pool: 200,
                    k,
                    limit: 200 * 16,
                    tail_start: 2.0,
                    tail_stop: 0.2,
                };
                let mut st = QueryStats::default();
                let (got, walk) = idx.scan_partitions(q, want, Some(&by_node), None, None, &mut st);
                (got.into_iter().map(|x| x.1).collect::<Vec<_>>(), walk)
            };
            let found =
                |got: &[usize], best: &[usize]| best.iter().filter(|b| got.contains(b)).count();
            let exp = best(&anti);
            let (short, ws) = walk(&anti, 0);
            let (long, wl) = walk(&anti, 10);
            assert!(wl.lists >= ws.lists && wl.tail_checks > 0);
            lists_anti_short += ws.lists;
            lists_anti_long += wl.lists;
            hit_short += found(&short, &exp);
            hit_long += found(&long, &exp);
            let exp = best(&random);
            let (_, ws) = walk(&random, 0);
            let (long, wl) = walk(&random, 10);
            lists_random_short += ws.lists;
            lists_random_long += wl.lists;
            hit_random += found(&long, &exp);
        }
        let total = queries * 10;
        assert!(
            hit_long * 100 >= total * 95 && hit_long > hit_short,
            "anti-correlated: {hit_short} of {total} at the target, {hit_long} past it"
        );
        assert!(
            hit_random * 100 >= total * 95,
            "random: {hit_random} of {total}"
        );
        // The tail walk is for the anti-correlated filter (measured: 294 → 1,511 lists); a
        // filter spread like the data gains a few lists at most (226 → 320).
        assert!(
            lists_anti_long >= 3 * lists_anti_short
                && lists_random_long * 2 <= lists_random_short * 3,
            "lists at the target / past it: anti {lists_anti_short} / {lists_anti_long}, \
             random {lists_random_short} / {lists_random_long}"
        );
    }

    #[test]
    fn normal_cdf_matches_known_values() {
        for (z, p) in [
            (0.0, 0.5),
            (1.0, 0.841_344_746),
            (-1.0, 0.158_655_254),
            (1.96, 0.975_002_105),
            (-3.0, 0.001_349_898),
            (5.0, 0.999_999_713),
        ] {
            let got = normal_cdf(z);
            assert!(
                (got - p).abs() < 1e-7 + 1e-6 * p,
                "Φ({z}) = {got}, want {p}"
            );
        }
        assert_eq!(normal_cdf(-40.0), 0.0);
        for i in -700..=700 {
            let z = f64::from(i) / 100.0;
            let (fast, exact) = (normal_cdf_fast(z), normal_cdf(z));
            assert!(
                (fast - exact).abs() < 1e-5,
                "Φ({z}): table {fast}, exact {exact}"
            );
        }
        assert!((normal_cdf(40.0) - 1.0).abs() < 1e-12);
    }

    #[test]
    fn node_cache_serves_hops_without_sector_reads() {
        let dim = 8;
        let (f, data) = fixture(500, dim, CodeKind::Pq(0), Metric::L2);
        let mut idx = open(&f, dim, Metric::L2).unwrap();
        let q = data.get(..dim).unwrap();
        let cold = {
            let file = FileBytes::Owned(f.bytes.clone());
            let mut st = QueryStats::default();
            let r = idx
                .search(&file, q, 10, &SearchParams::default(), &|_| true, &mut st)
                .unwrap();
            (r, st)
        };
        // A budget for part of the graph: breadth-first from the entry, with a slot map.
        let part = idx
            .fill_cache(&f.bytes, 100 * idx.node_bytes_cached() + 500 * 4)
            .unwrap();
        assert_eq!(part, 100 * idx.node_bytes_cached() + 500 * 4);
        let file = FileBytes::Owned(f.bytes.clone());
        let mut st = QueryStats::default();
        let r = idx
            .search(&file, q, 10, &SearchParams::default(), &|_| true, &mut st)
            .unwrap();
        // Sector mates are expanded only when a sector is read, so the expanded set (and the
        // tail of the candidates) depends on what is cached; the top 10 must not.
        let top = |x: &[(f32, usize)]| x.iter().take(10).map(|p| p.1).collect::<Vec<_>>();
        assert_eq!(top(&r), top(&cold.0), "a partial cache changed the top 10");
        assert!(st.cache_hits > 0 && st.sectors_read > 0);
        // Everything fits: node order, no slot map.
        let used = idx.fill_cache(&f.bytes, usize::MAX).unwrap();
        assert_eq!(
            used,
            500 * idx.node_bytes_cached(),
            "every record, no slot map"
        );
        let file = FileBytes::Owned(f.bytes.clone());
        let mut st = QueryStats::default();
        let r = idx
            .search(&file, q, 10, &SearchParams::default(), &|_| true, &mut st)
            .unwrap();
        assert_eq!(top(&r), top(&cold.0), "the full cache changed the top 10");
        assert_eq!(st.sectors_read, 0);
        assert_eq!(
            st.cache_hits, st.nodes_visited,
            "every hop served from memory"
        );
        assert!(cold.1.sectors_read > 0);
    }
}
