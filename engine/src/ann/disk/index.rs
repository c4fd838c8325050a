//! Opening an index (decoding and checking both sections), the node cache, and reading
//! node records from the graph's sectors.

use std::borrow::Cow;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use rustc_hash::FxHashSet;
use strata_io::le::Cursor;

use super::format::{
    rd_u32, sector_ok, space_tag, CodesHeader, Geometry, GraphHeader, CODES_HEADER, CODES_VERSION,
    DEGREE_MAX, GRAPH_VERSION, KIND_PQ, KIND_SQ8, PAYLOAD, SECTOR,
};
use super::{DiskIndex, NodeRec};
use crate::ann::codes::{Pq, Quantizer, PQ_CENTROIDS};
use crate::ann::{partition, prefetch_lines, QueryStats, Space};
use crate::bitset::Bitset;
use crate::mmap::Resident;
use crate::{DecodeError, Error, Metric, Result};

/// What the codes section holds, decoded and checked.
struct CodesSection {
    n: usize,
    code_bytes: usize,
    quant: Quantizer,
    ordinals: Vec<u32>,
    nodes: Vec<u32>,
    codes: Resident,
    centroids: Vec<f32>,
    offsets: Vec<u32>,
}

fn invalid(what: impl Into<String>) -> DecodeError {
    DecodeError::Invalid(what.into())
}

/// `k` finite floats.
fn floats(c: &mut Cursor<'_>, k: usize) -> std::result::Result<Vec<f32>, DecodeError> {
    (0..k)
        .map(|_| {
            let x = c.f32()?;
            if x.is_finite() {
                Ok(x)
            } else {
                Err(invalid("quantiser parameter not finite"))
            }
        })
        .collect()
}

/// The codes section (`docs/format.md`, "ANN codes"): header, quantiser, node -> ordinal
/// map, codes, partitions; every field checked against the segment.
// ~130 lines: the section read front to back with its checks beside each field, in the order
// `docs/format.md` lists them.
fn decode_codes(
    c: &[u8],
    seg_n: usize,
    has_vector: &Bitset,
    dim: usize,
    space: Space,
) -> std::result::Result<CodesSection, DecodeError> {
    let h = CodesHeader::decode(c).ok_or(DecodeError::Truncated {
        at: 0,
        need: CODES_HEADER,
    })?;
    if !(1..=CODES_VERSION).contains(&h.version) {
        return Err(DecodeError::Version(h.version));
    }
    let (lists, n, cb, m) = (
        h.lists as usize,
        h.nodes as usize,
        h.code_bytes as usize,
        h.m as usize,
    );
    // Version 1 has no partitions (the field was reserved, zero).
    if lists > partition::MAX_PARTITIONS || (h.version == 1 && lists != 0) {
        return Err(invalid(format!("{lists} partitions")));
    }
    if h.space != space_tag(space) || h.dim as usize != dim {
        return Err(invalid("codes space or dimension differs from the schema"));
    }
    if n == 0 || n > seg_n {
        return Err(invalid(format!(
            "{n} graph nodes in a {seg_n}-document segment"
        )));
    }
    let mut cur = Cursor::new(c);
    cur.take(CODES_HEADER)?;
    let quant = match h.kind {
        KIND_SQ8 => {
            if cb != dim || m != 0 {
                return Err(invalid("SQ8 code size differs from the dimension"));
            }
            let lo = floats(&mut cur, dim)?;
            let step = floats(&mut cur, dim)?;
            Quantizer::Sq8 { lo, step }
        }
        KIND_PQ => {
            if m == 0 || m > dim || cb != m {
                return Err(invalid(format!("PQ with {m} sub-spaces, {cb}-byte codes")));
            }
            let bounds = (0..=m)
                .map(|_| cur.u32().map(|b| b as usize))
                .collect::<std::result::Result<Vec<usize>, _>>()?;
            if bounds.first() != Some(&0)
                || bounds.last() != Some(&dim)
                || bounds.windows(2).any(|w| w.first() >= w.get(1))
            {
                return Err(invalid(
                    "PQ sub-space bounds are not increasing over 0..dim",
                ));
            }
            let centroids = floats(&mut cur, dim * PQ_CENTROIDS)?;
            Quantizer::Pq(Pq {
                dim,
                bounds,
                centroids,
            })
        }
        k => return Err(invalid(format!("unknown code kind {k}"))),
    };
    let part_bytes = if lists > 0 {
        lists * dim * 4 + (lists + 1) * 4
    } else {
        0
    };
    if lists > n || cur.remaining() != n * 4 + n * cb + part_bytes {
        return Err(invalid("codes section length mismatch"));
    }
    let mut ordinals = Vec::with_capacity(n);
    let mut used = Bitset::new(seg_n);
    for i in 0..n {
        let o = cur.u32()?;
        if o as usize >= seg_n || !has_vector.get(o as usize) || used.get(o as usize) {
            return Err(invalid(format!(
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
    let codes = Resident::copy_of(cur.take(n * cb)?);
    // Partitions: centroids, then list offsets (0, non-decreasing, ending at `n`).
    let mut centroids = Vec::new();
    let mut offsets = Vec::new();
    if lists > 0 {
        centroids = partition::to_soa(&floats(&mut cur, lists * dim)?, dim);
        offsets = (0..=lists)
            .map(|_| cur.u32())
            .collect::<std::result::Result<Vec<u32>, _>>()?;
        if offsets.first() != Some(&0)
            || offsets.last() != Some(&(n as u32))
            || offsets.windows(2).any(|w| w.first() > w.get(1))
        {
            return Err(invalid(
                "partition offsets are not 0..=nodes, non-decreasing",
            ));
        }
    }
    debug_assert_eq!(cur.remaining(), 0, "the length check covered every field");
    Ok(CodesSection {
        n,
        code_bytes: cb,
        quant,
        ordinals,
        nodes,
        codes,
        centroids,
        offsets,
    })
}

/// The graph header (its CRC was checked with the section table), checked against the codes
/// section: geometry, entry node and sector count.
fn decode_graph_header(
    bytes: &[u8],
    (g_at, g_len): (usize, usize),
    dim: usize,
    n: usize,
) -> std::result::Result<(Geometry, u32, usize), DecodeError> {
    if g_at % SECTOR != 0 || g_len % SECTOR != 0 || g_len == 0 {
        return Err(invalid("graph section is not sector-aligned"));
    }
    let hdr = bytes
        .get(g_at..g_at.saturating_add(SECTOR))
        .ok_or(DecodeError::Truncated {
            at: 0,
            need: SECTOR,
        })?;
    let g = GraphHeader::decode(hdr)?;
    if g.version != GRAPH_VERSION {
        return Err(DecodeError::Version(g.version));
    }
    let (r, entry) = (g.r as usize, g.entry);
    if g.dim as usize != dim
        || g.nodes as usize != n
        || !(1..=DEGREE_MAX).contains(&r)
        || entry as usize >= n
    {
        return Err(invalid("graph header disagrees with the codes section"));
    }
    let geo = Geometry::new(dim, r);
    if (geo.node_bytes, geo.nps, geo.spn)
        != (
            g.node_bytes as usize,
            g.nodes_per_sector as usize,
            g.sectors_per_node as usize,
        )
    {
        return Err(invalid("graph node geometry mismatch"));
    }
    let sectors = usize::try_from(g.sectors).map_err(|_| invalid("graph sector count"))?;
    if sectors != geo.sectors(n) || sectors.checked_mul(SECTOR) != Some(g_len) {
        return Err(invalid("graph sector count mismatch"));
    }
    Ok((geo, entry, sectors))
}

impl DiskIndex {
    pub(super) fn bad(path: &Path, reason: impl Into<String>) -> Error {
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
        let space = Space::of(metric);
        let codes_at = codes.0 as u64;
        let graph_at = graph.0 as u64;
        let c = bytes
            .get(codes.0..codes.0.saturating_add(codes.1))
            .ok_or_else(|| DiskIndex::bad(path, "codes section out of bounds"))?;
        let sec = decode_codes(c, seg_n, has_vector, dim, space)
            .map_err(|e| Error::corruption("segment ANN codes section", path, e).at(codes_at))?;
        let (geo, entry, sectors) = decode_graph_header(bytes, graph, dim, sec.n)
            .map_err(|e| Error::corruption("segment ANN graph header", path, e).at(graph_at))?;
        let verified = (0..sectors.div_ceil(64))
            .map(|_| AtomicU64::new(0))
            .collect();
        let idx = DiskIndex {
            path: path.to_owned(),
            metric,
            space,
            geo,
            n: sec.n,
            entry,
            graph_at: graph.0,
            ordinals: sec.ordinals,
            nodes: sec.nodes,
            code_bytes: sec.code_bytes,
            codes: sec.codes,
            quant: sec.quant,
            centroids: sec.centroids,
            offsets: sec.offsets,
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

    pub(super) fn cache_bytes(&self) -> usize {
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
    pub(super) fn cached(&self, node: u32) -> Option<&[u8]> {
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

    pub(super) fn verify_sector<'a>(&self, bytes: &'a [u8], s: usize) -> Result<&'a [u8]> {
        let at = self.graph_at + s * SECTOR;
        let sector = bytes
            .get(at..at + SECTOR)
            .ok_or_else(|| DiskIndex::bad(&self.path, format!("graph sector {s} out of bounds")))?;
        let (word, bit) = (s / 64, 1u64 << (s % 64));
        let w = self.verified.get(word);
        if w.is_some_and(|w| w.load(Ordering::Relaxed) & bit != 0) {
            return Ok(sector);
        }
        if !sector_ok(sector, s as u64) {
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
    pub(super) fn fetch<'a>(
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

    pub(super) fn read_node<'a>(&self, bytes: &'a [u8], node: u32) -> Result<NodeRec<'a>> {
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

    pub(super) fn neighbours_into(&self, rec: &[u8], node: u32, out: &mut Vec<u32>) -> Result<()> {
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
    pub(super) fn vector_of<'a>(&self, rec: &'a [u8], out: &'a mut Vec<f32>) -> &'a [f32] {
        // A record is `node_bytes` long (read_node, the cache), which holds the vector.
        debug_assert!(rec.len() >= self.geo.dim * 4);
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

    #[inline]
    pub(super) fn prefetch_code(&self, node: u32) {
        let at = node as usize * self.code_bytes;
        if let Some(code) = self.codes.get(at..at + self.code_bytes) {
            prefetch_lines(code);
        }
    }

    /// `node`'s code. Bound proven at open: the codes hold `n · code_bytes` bytes and every
    /// node id the search meets was checked `< n` (neighbour lists on read, the entry and
    /// the partition offsets at open).
    pub(super) fn code(&self, node: u32) -> &[u8] {
        debug_assert!((node as usize) < self.n, "node {node} of {}", self.n);
        let at = node as usize * self.code_bytes;
        self.codes.get(at..at + self.code_bytes).unwrap_or_default()
    }
}
