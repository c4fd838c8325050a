//! Building both ANN sections of a segment: codes (trained or kept from a merged index),
//! the Vamana graph (from scratch, or repaired from the merged index's graph), coarse
//! partitions, and the disk order of nodes.

use rayon::prelude::*;

use super::format::{
    seal_sectors, space_tag, u32_of, CodesHeader, Geometry, GraphHeader, CODES_VERSION,
    GRAPH_VERSION, PAYLOAD, SECTOR,
};
use crate::ann::codes::{code_recall, default_pq, sample_truth, Quantizer, CODE_RECALL_TARGET};
use crate::ann::vamana::{self, BuildParams};
use crate::ann::{partition, to_space, AnnOptions, Space};
use crate::{Metric, Result};

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

/// Build the ANN sections over `rows` (segment ordinal, vector), ordinals increasing; from
/// `reuse` when given: its deleted nodes are repaired out and only the rows it does not hold
/// are inserted (FreshDiskANN-style), instead of a build from scratch.
pub(crate) fn build_reusing(
    rows: &[(u32, &[f32])],
    dim: usize,
    metric: Metric,
    opts: &AnnOptions,
    mut reuse: Option<ReuseGraph>,
    progress: &(dyn Fn(u64) -> bool + Sync),
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
    let (quant, codes) = match reuse
        .as_mut()
        .and_then(|r| keep_codes(r, &data, dim, n, opts))
    {
        Some(qc) => {
            lap("encode inserted rows (codebook kept)");
            qc
        }
        None => {
            let quant = Quantizer::train(opts.codes, &data, dim, opts.seed);
            lap("train codes");
            let codes = encode_all(&quant, &data, dim);
            lap("encode");
            (quant, codes)
        }
    };
    // `Auto` measures its smaller codes on every build, a merge's kept ones included: a
    // segment that grows denser (1M merged from flushes) can outgrow them.
    let small = crate::CodeKind::Pq(default_pq(dim).0);
    let (quant, codes) = if opts.codes == crate::CodeKind::Auto && quant.kind() == small {
        let chosen = choose_auto_codes(quant, codes, &data, dim, space, opts);
        lap("measure codes");
        chosen
    } else {
        (quant, codes)
    };
    let params = BuildParams {
        r: opts.degree,
        l: opts.build_list,
        alpha: opts.alpha,
        seed: opts.seed,
    };
    let initial = reuse.map(|r| initial_graph(r, &data, dim, n, space, params));
    if initial.is_some() {
        lap("repair deletes");
    }
    let graph = vamana::build_from(&data, dim, space, params, initial, progress)
        .ok_or(crate::Error::Cancelled("graph build"))?;
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
    let (perm, offsets, inv) = disk_order(&graph, &list_of, lists, n);
    debug_assert_eq!(perm.len(), n);
    let codes = codes_section(
        rows, dim, space, &quant, &codes, &centroids, &offsets, &perm,
    )?;
    let graph = graph_section(rows, dim, opts.degree, &graph, &perm, &inv)?;
    lap("layout");
    Ok(Built {
        codes,
        graph,
        phases,
    })
}

/// [`crate::CodeKind::Auto`]: codes chosen by measurement on the segment's own vectors:
/// the `dim / 4`-byte codes `small` (trained and encoded) are kept when they rank at least
/// [`CODE_RECALL_TARGET`] of sample rows' true 10 nearest among their 20 nearest by code
/// distance ([`code_recall`]). Otherwise `dim / 2`-byte codes are trained and measured, and
/// kept if they rank more and fit the memory budget (codes are always resident). Twice the
/// bytes cost 30–40 % of the QPS where the small codes already rank well (the two real sets,
/// both ≥ 0.98), and buy 3× fewer hops where they do not (1M × 128 SIFT-shaped: 0.91): see
/// `docs/benchmarks.md`, "Codes that measure themselves".
fn choose_auto_codes(
    small: Quantizer,
    small_codes: Vec<u8>,
    data: &[f32],
    dim: usize,
    space: Space,
    opts: &AnnOptions,
) -> (Quantizer, Vec<u8>) {
    let (m_small, m_big) = default_pq(dim);
    let n = data.len() / dim.max(1);
    let fits = (n as u64).saturating_mul(u64::from(m_big)) <= opts.memory_budget_bytes;
    if m_big <= m_small || !fits {
        return (small, small_codes);
    }
    let truth = sample_truth(data, dim, space, opts.seed);
    let r_small = code_recall(&small, &small_codes, data, dim, space, &truth);
    if r_small >= CODE_RECALL_TARGET {
        log::debug!("codes: {m_small} B rank {r_small:.3} of the sample's neighbours: kept");
        return (small, small_codes);
    }
    let big = Quantizer::train(crate::CodeKind::Pq(m_big), data, dim, opts.seed);
    let big_codes = encode_all(&big, data, dim);
    let r_big = code_recall(&big, &big_codes, data, dim, space, &truth);
    log::debug!("codes: {m_small} B rank {r_small:.3}, {m_big} B rank {r_big:.3}");
    if r_big > r_small {
        (big, big_codes)
    } else {
        (small, small_codes)
    }
}

/// A merge keeps the old quantiser and the codes of its surviving rows when the options
/// still ask for that code kind; only the inserted rows are encoded. `None`: train anew.
fn keep_codes(
    r: &mut ReuseGraph,
    data: &[f32],
    dim: usize,
    n: usize,
    opts: &AnnOptions,
) -> Option<(Quantizer, Vec<u8>)> {
    let cb = r.quant.code_bytes();
    let same_kind = match (opts.codes, r.quant.kind()) {
        (crate::CodeKind::Pq(0), crate::CodeKind::Pq(m)) => m == default_pq(dim).0,
        // `Auto` keeps whichever of its two sizes an earlier build measured.
        (crate::CodeKind::Auto, crate::CodeKind::Pq(m)) => {
            let (small, big) = default_pq(dim);
            m == small || m == big
        }
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
}

/// Every row of `data` encoded by `quant`, in row order.
fn encode_all(quant: &Quantizer, data: &[f32], dim: usize) -> Vec<u8> {
    let cb = quant.code_bytes();
    data.par_chunks(dim.max(1))
        .flat_map_iter(|v| {
            let mut c = Vec::with_capacity(cb);
            quant.encode(v, &mut c);
            c
        })
        .collect()
}

/// The starting graph of a merge: the old graph in the new rows' ids with its deleted nodes
/// repaired out (FreshDiskANN's delete consolidation).
fn initial_graph(
    r: ReuseGraph,
    data: &[f32],
    dim: usize,
    n: usize,
    space: Space,
    params: BuildParams,
) -> vamana::Initial {
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
    vamana::repair_deletes(data, dim, space, params, &mut adj, &deleted);
    adj.truncate(n);
    let mut present = vec![false; n];
    for nr in r.new_row.iter().flatten() {
        if let Some(p) = present.get_mut(*nr as usize) {
            *p = true;
        }
    }
    let entry = match ext.get(r.entry as usize) {
        Some(&e) if (e as usize) < n => e,
        _ => vamana::medoid(data, dim, space),
    };
    vamana::Initial {
        adj,
        present,
        entry,
    }
}

/// Disk order: list by list, breadth-first from the entry within a list — a list is a run
/// of node ids, and graph neighbours still tend to share sectors. Returns the new order (new
/// id -> row), list offsets (`lists + 1`) and the inverse (row -> new id).
fn disk_order(
    graph: &vamana::Graph,
    list_of: &[u32],
    lists: usize,
    n: usize,
) -> (Vec<u32>, Vec<u32>, Vec<u32>) {
    let mut perm = vamana::bfs_order(graph);
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
    (perm, offsets, inv)
}

/// The codes section (`docs/format.md`, "ANN codes") in disk order.
#[allow(
    clippy::too_many_arguments,
    reason = "the pieces of the section, each one value"
)]
fn codes_section(
    rows: &[(u32, &[f32])],
    dim: usize,
    space: Space,
    quant: &Quantizer,
    codes: &[u8],
    centroids: &[f32],
    offsets: &[u32],
    perm: &[u32],
) -> Result<Vec<u8>> {
    let (n, cb) = (rows.len(), quant.code_bytes());
    let lists = centroids.len() / dim.max(1);
    // Bound: `perm` is a permutation of 0..n (disk_order), so every lookup hits.
    let old_of = |new: usize| perm.get(new).copied().unwrap_or(0) as usize;
    let mut c = Vec::new();
    CodesHeader {
        version: CODES_VERSION,
        space: space_tag(space),
        kind: quant.kind().tag(),
        code_bytes: u32_of(cb, "code bytes")?,
        nodes: u32_of(n, "nodes")?,
        dim: u32_of(dim, "dim")?,
        m: match quant {
            Quantizer::Pq(p) => u32_of(p.m(), "m")?,
            Quantizer::Sq8 { .. } => 0,
        },
        lists: u32_of(lists, "partitions")?,
    }
    .encode(&mut c);
    match quant {
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
        for x in centroids {
            c.extend_from_slice(&x.to_le_bytes());
        }
        for o in offsets {
            c.extend_from_slice(&o.to_le_bytes());
        }
    }
    Ok(c)
}

/// The graph section (`docs/format.md`, "ANN graph"): header sector, node records in disk
/// order, every sector sealed with its CRC.
fn graph_section(
    rows: &[(u32, &[f32])],
    dim: usize,
    degree: usize,
    graph: &vamana::Graph,
    perm: &[u32],
    inv: &[u32],
) -> Result<Vec<u8>> {
    let n = rows.len();
    // Bound: `perm` and `inv` are inverse permutations of 0..n (disk_order).
    let old_of = |new: usize| perm.get(new).copied().unwrap_or(0) as usize;
    let geo = Geometry::new(dim, degree);
    let sectors = geo.sectors(n);
    let mut g = vec![0u8; sectors * SECTOR];
    let header = GraphHeader {
        version: GRAPH_VERSION,
        dim: u32_of(dim, "dim")?,
        r: u32_of(geo.r, "degree")?,
        nodes: u32_of(n, "nodes")?,
        entry: inv.get(graph.entry as usize).copied().unwrap_or(0),
        node_bytes: u32_of(geo.node_bytes, "node bytes")?,
        nodes_per_sector: u32_of(geo.nps, "nodes per sector")?,
        sectors_per_node: u32_of(geo.spn, "sectors per node")?,
        sectors: sectors as u64,
    }
    .encode();
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
    seal_sectors(&mut g);
    Ok(g)
}
