//! Opening and reading a segment file. Everything is verified in `open`; accessors then only
//! index within ranges proven valid (and still use checked access, returning nothing rather
//! than panicking if that proof were ever wrong).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use strata_io::SharedFs;

use super::bloom::Bloom;
use super::cache::BlockCache;
use super::format::*;
use crate::ann::disk::{DiskIndex, NodeOrder};
use crate::ann::AnnBudget;
use crate::batch::decode_doc_ext;
use crate::bitset::Bitset;
use crate::filter::Filter;
use crate::mmap::{open_immutable, FileBytes};
use crate::{Document, Error, Result, Schema};

/// Largest segment file accepted (64 GiB).
const SEGMENT_BYTES_LIMIT: u64 = 64 << 30;
/// Largest decompressed document block (a block may exceed its target by one big document).
const BLOCK_RAW_BYTES_MAX: usize = 16 << 20;

#[derive(Debug)]
struct DocBlock {
    first: usize,
    n: usize,
    at: usize,
    len: usize,
}

#[derive(Debug)]
struct AttrCol {
    present: Bitset,
    values_at: usize,
    /// Per block of `ATTR_BLOCK_DOCS` ordinals: (min, max) of the present values.
    minmax_at: usize,
}

/// An open, verified segment.
#[derive(Debug)]
pub(crate) struct Segment {
    pub id: u64,
    pub path: PathBuf,
    bytes: FileBytes,
    n: usize,
    dim: usize,
    schema: Arc<Schema>,
    key_offsets_at: usize,
    key_bytes_at: usize,
    blocks: Vec<DocBlock>,
    vec_present: Bitset,
    /// `vec_present.count()`, counted once at open.
    vectors: usize,
    vec_at: usize,
    /// Per-chunk checksums of the vectors section, checked as vectors are read (`None`: the
    /// segment predates them and its vectors section was verified whole at open).
    vec_chunks: Option<super::chunks::VectorChunks>,
    /// The vectors section's table CRC when it was not checked at open (`verify` checks it).
    vectors_crc: Option<u32>,
    term_count: usize,
    term_offsets_at: usize,
    post_offsets_at: usize,
    term_bytes_at: usize,
    postings_at: usize,
    attrs: Vec<AttrCol>,
    bloom: Option<Bloom>,
    cache: Option<Arc<BlockCache>>,
    ann: Option<DiskIndex>,
    /// What the planner measured about this segment when its index was built (`None`:
    /// written before calibration existed, or not indexed).
    calibration: Option<crate::query::calibrated::Calibration>,
    /// Memory charged to the database's ANN budget (returned on drop).
    ann_charge: Option<(Arc<AnnBudget>, usize)>,
    /// Removes the file when the last holder drops a retired segment (`None` for segments
    /// not opened from a database directory).
    retire: Option<crate::retire::Retire>,
    /// Segment format version (v2: document blocks flag vectors, the vectors section has them).
    version: u32,
    /// Sparse in-memory index over the keys: the key of every `FENCE_EVERY`-th ordinal,
    /// concatenated, with end offsets. A lookup binary-searches this (cache-resident: ~n/64
    /// keys) and then at most `FENCE_EVERY` neighbouring keys of the mapped section, instead
    /// of ~log2(n) scattered probes into it (two cache misses each).
    fence_keys: Vec<u8>,
    fence_ends: Vec<u32>,
    /// Recently evaluated filters of a large segment (an immutable segment's answer to a
    /// filter never changes): most recent last, at most `FILTER_CACHE_ENTRIES`.
    filter_cache: parking_lot::Mutex<Vec<(String, Arc<Evaluated>)>>,
}

/// A filter evaluated on one segment (deletions not applied): its matches by ordinal, their
/// counts, and — built on first use by the partition plan, then kept with the cache entry —
/// the same matches numbered as graph nodes, where a partition is a run of ids.
#[derive(Debug)]
pub(crate) struct Evaluated {
    pub(crate) bits: Arc<Bitset>,
    pub(crate) counts: Counts,
    by_node: std::sync::OnceLock<Arc<NodeOrder>>,
    ones: std::sync::OnceLock<Arc<Vec<u32>>>,
}

impl Evaluated {
    /// The matching ordinals as a list, made once per cached filter: `(apply …)` walks the
    /// matches of its inner filter (a user's friends: a few dozen bits of a 1M-bit map) on
    /// every query, and scanning the map's words was a fifth of such a query. `None` when
    /// a list would be larger than the map (more than one match in 32).
    pub(crate) fn ones(&self) -> Option<Arc<Vec<u32>>> {
        if self.counts.all.saturating_mul(32) > self.bits.len() {
            return None;
        }
        Some(
            self.ones
                .get_or_init(|| Arc::new(self.bits.iter().map(|i| i as u32).collect()))
                .clone(),
        )
    }

    /// The matches as graph nodes of `idx` (this segment's index).
    pub(crate) fn by_node(&self, idx: &DiskIndex) -> Arc<NodeOrder> {
        self.by_node
            .get_or_init(|| Arc::new(idx.to_node_order(&self.bits)))
            .clone()
    }
}

/// A filter's matches in a segment, all of them and those with a vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Counts {
    pub(crate) all: usize,
    pub(crate) with_vector: usize,
}

/// Filters a segment remembers (each costs n/8 bytes: 4 MB in all at 1M documents).
const FILTER_CACHE_ENTRIES: usize = 32;
/// Segments below this many documents evaluate every time (it is cheap there).
const FILTER_CACHE_MIN_DOCS: usize = 16_384;

/// Ordinals per entry of a segment's in-memory key fence.
const FENCE_EVERY: usize = 64;

impl Segment {
    /// Mark the file for removal once the last version or snapshot holding this segment is
    /// gone (the manifest that drops it must already be durable). See `crate::retire`.
    pub(crate) fn retire(&self) {
        if let Some(r) = &self.retire {
            r.retire();
        }
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        if let Some((b, n)) = self.ann_charge.take() {
            b.release(n);
        }
    }
}

thread_local! {
    /// One zstd decompression context per thread: creating one per block cost ~20 % of a get.
    static DCTX: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { std::cell::RefCell::new(None) };
}

fn decompress(z: &[u8]) -> std::io::Result<Vec<u8>> {
    // Allocate what the frame header announces (bounded), not the bound itself: a 16 MiB
    // allocation per read is an mmap + page faults.
    let cap = zstd::zstd_safe::get_frame_content_size(z)
        .ok()
        .flatten()
        .map_or(BLOCK_RAW_BYTES_MAX, |n| {
            (n as usize).min(BLOCK_RAW_BYTES_MAX)
        });
    DCTX.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            *slot = Some(zstd::bulk::Decompressor::new()?);
        }
        match slot.as_mut() {
            Some(d) => d.decompress(z, cap),
            None => zstd::bulk::decompress(z, cap),
        }
    })
}

fn bad(path: &Path, reason: impl Into<String>) -> Error {
    Error::corrupt("segment", path, reason)
}

impl Segment {
    /// Open and fully verify the segment at `path` (of `expected_len` bytes, when the manifest
    /// recorded its length).
    pub(crate) fn open(
        fs: &SharedFs,
        path: &Path,
        id: u64,
        schema: Arc<Schema>,
        cache: Option<Arc<BlockCache>>,
        budget: Option<Arc<AnnBudget>>,
        expected_len: Option<u64>,
    ) -> Result<Segment> {
        let bytes = open_immutable(fs, path, SEGMENT_BYTES_LIMIT, expected_len)?;
        let mut s = Segment::from_bytes(bytes, path, id, schema)?;
        s.cache = cache;
        let (rfs, rpath) = (fs.clone(), path.to_owned());
        s.retire = Some(crate::retire::Retire::new(Box::new(move || {
            // Best effort: a file left behind is an orphan the next open removes.
            if let Err(e) = rfs.remove_file(&rpath) {
                log::warn!("removing retired segment {}: {e}", rpath.display());
            }
        })));
        if let (Some(idx), Some(budget)) = (s.ann.as_mut(), budget) {
            // Codes are always resident. The graph gets what the budget has left: with
            // `AnnOptions::warm` its nodes nearest the entry point are copied into the node
            // cache now; lazily (the default) nothing is copied and a graph that fits is
            // charged in full, its pages read from the mapping as queries first need them
            // (each sector's checksum verified once), so an open costs milliseconds and
            // resident memory grows with use up to that charge. A graph that does not fit is
            // read from disk either way (sector mates scored with each read).
            let base = idx.base_bytes();
            budget.charge(base);
            let graph = idx.graph_bytes();
            let want = budget.take_up_to(graph);
            let used = if budget.warm() {
                if want > 0 {
                    idx.fill_cache(&s.bytes, want)?
                } else {
                    idx.set_fits(false);
                    0
                }
            } else {
                idx.set_fits(want == graph);
                if want == graph {
                    want
                } else {
                    0
                }
            };
            budget.release(want.saturating_sub(used));
            s.ann_charge = Some((budget, base + used));
        }
        Ok(s)
    }

    pub(crate) fn from_bytes(
        bytes: FileBytes,
        path: &Path,
        id: u64,
        schema: Arc<Schema>,
    ) -> Result<Segment> {
        let b: &[u8] = &bytes;
        let err = |r: String| bad(path, r);
        let flen = b.len();
        let fstart = flen
            .checked_sub(FOOTER_BYTES)
            .ok_or_else(|| err(format!("{flen} bytes is shorter than the footer")))?;
        let footer = b.get(fstart..).unwrap_or_default();
        let stored = le_u32(footer, FOOTER_BYTES - 4).unwrap_or(0);
        if crc32fast::hash(footer.get(..FOOTER_BYTES - 4).unwrap_or_default()) != stored {
            return Err(err("footer checksum mismatch".into()));
        }
        if footer.get(..8) != Some(&SEGMENT_MAGIC[..]) {
            return Err(err("bad footer magic".into()));
        }
        let version = le_u32(footer, 8).unwrap_or(0);
        if !(SEGMENT_FORMAT_VERSION_MIN..=SEGMENT_FORMAT_VERSION).contains(&version) {
            return Err(err(format!("unsupported segment version {version}")));
        }
        let count = le_u32(footer, 12).unwrap_or(0) as usize;
        let table_at = le_u64(footer, 16).unwrap_or(u64::MAX) as usize;
        let table_crc = le_u32(footer, 24).unwrap_or(0);
        let n = le_u32(footer, 28).unwrap_or(0) as usize;
        let dim = le_u32(footer, 32).unwrap_or(0) as usize;
        if dim != schema.dim as usize {
            return Err(err(format!("dimension {dim}, schema says {}", schema.dim)));
        }
        let table_len = count
            .checked_mul(TABLE_ENTRY_BYTES)
            .filter(|l| table_at.checked_add(*l) == Some(fstart))
            .ok_or_else(|| err("section table does not end at the footer".into()))?;
        let table = b.get(table_at..table_at + table_len).unwrap_or_default();
        if crc32fast::hash(table) != table_crc {
            return Err(err("section table checksum mismatch".into()));
        }
        let mut ranges: [Option<(usize, usize)>; SectionKind::ALL.len()] =
            [None; SectionKind::ALL.len()];
        // With per-chunk checksums (kind 10) the vectors section is not read at open: its
        // chunks are checked as vectors are read, and its table CRC by `verify`.
        let chunked = table
            .chunks_exact(TABLE_ENTRY_BYTES)
            .any(|e| le_u32(e, 0) == Some(SectionKind::VectorChunks as u32));
        let mut vectors_crc = None;
        for e in table.chunks_exact(TABLE_ENTRY_BYTES) {
            let kind = le_u32(e, 0).unwrap_or(0);
            let crc = le_u32(e, 4).unwrap_or(0);
            let at = le_u64(e, 8).unwrap_or(u64::MAX) as usize;
            let len = le_u64(e, 16).unwrap_or(u64::MAX) as usize;
            let body = at
                .checked_add(len)
                .filter(|end| *end <= table_at)
                .and_then(|end| b.get(at..end))
                .ok_or_else(|| err(format!("section {kind} out of bounds")))?;
            let crc_len = crate::segment::SectionKind::table_crc_bytes(kind, len);
            if chunked && kind == SectionKind::Vectors as u32 {
                vectors_crc = Some(crc);
            } else if crc32fast::hash(body.get(..crc_len).unwrap_or_default()) != crc {
                return Err(err(format!("section {kind} checksum mismatch")));
            }
            if let Some(slot) = SectionKind::ALL
                .iter()
                .position(|k| *k as u32 == kind)
                .and_then(|i| ranges.get_mut(i))
            {
                if slot.replace((at, len)).is_some() {
                    return Err(err(format!("section {kind} appears twice")));
                }
            } // unknown kinds: newer optional sections, ignored
        }
        // Padding between sections is zero, so no byte of the file goes unchecked.
        let mut spans: Vec<(usize, usize)> = table
            .chunks_exact(TABLE_ENTRY_BYTES)
            .map(|e| {
                let at = le_u64(e, 8).unwrap_or(0) as usize;
                (at, at + le_u64(e, 16).unwrap_or(0) as usize)
            })
            .collect();
        spans.sort_unstable();
        let mut pos = 0usize;
        for (s, e) in spans.iter().copied().chain([(table_at, table_at)]) {
            if s < pos || b.get(pos..s).is_none_or(|gap| gap.iter().any(|&x| x != 0)) {
                return Err(err(format!(
                    "overlapping sections or non-zero padding before offset {s}"
                )));
            }
            pos = e;
        }
        let get = |i: usize, name: &str| {
            ranges
                .get(i)
                .copied()
                .flatten()
                .ok_or_else(|| err(format!("missing {name} section")))
        };
        let keys = get(0, "keys")?;
        let docs = get(1, "docs")?;
        let vecs = get(2, "vectors")?;
        let terms = get(3, "terms")?;
        let attrs = get(4, "attrs")?;
        let bloom = match ranges.get(5).copied().flatten() {
            Some((at, len)) => Some(Bloom::parse(b, at, len).map_err(err)?),
            None => None, // written before the bloom section existed
        };

        // Keys: count, offsets, sorted non-empty keys.
        let (k_at, k_len) = keys;
        if le_u32(b, k_at) != Some(n as u32) {
            return Err(err("key count differs from the footer".into()));
        }
        let key_offsets_at = k_at + 8;
        let key_bytes_at = key_offsets_at + (n + 1) * 4;
        let off = |i: usize| le_u32(b, key_offsets_at + i * 4).map(|o| o as usize);
        let total = off(n).ok_or_else(|| err("key offsets truncated".into()))?;
        if key_bytes_at.checked_add(total) != Some(k_at + k_len) || off(0) != Some(0) {
            return Err(err("keys section length mismatch".into()));
        }
        let mut prev: Option<&[u8]> = None;
        for i in 0..n {
            let (s, e) = (off(i).unwrap_or(0), off(i + 1).unwrap_or(0));
            let k = b
                .get(key_bytes_at + s..key_bytes_at + e)
                .filter(|k| !k.is_empty() && s <= e)
                .ok_or_else(|| err(format!("bad key offsets at ordinal {i}")))?;
            if prev.is_some_and(|p| p >= k) {
                return Err(err(format!("keys not strictly increasing at ordinal {i}")));
            }
            // A filter missing one of its own keys would turn lookups into wrong answers
            // (fuzzing found a checksum-consistent one), so every key is checked.
            if bloom.is_some_and(|bl| !bl.may_contain(b, k)) {
                return Err(err(format!("bloom filter does not contain key {i}")));
            }
            prev = Some(k);
        }

        // Docs: contiguous blocks covering every ordinal.
        let (d_at, d_len) = docs;
        let nblocks = le_u32(b, d_at).unwrap_or(0) as usize;
        let index_at = d_at + 8;
        let blocks_at = index_at + nblocks * 24;
        if blocks_at > d_at + d_len {
            return Err(err("doc block index truncated".into()));
        }
        let mut blocks = Vec::with_capacity(nblocks);
        let mut next_first = 0usize;
        let mut next_off = 0usize;
        for i in 0..nblocks {
            let e = index_at + i * 24;
            let first = le_u32(b, e).unwrap_or(u32::MAX) as usize;
            let cnt = le_u32(b, e + 4).unwrap_or(0) as usize;
            let o = le_u64(b, e + 8).unwrap_or(u64::MAX) as usize;
            let len = le_u64(b, e + 16).unwrap_or(u64::MAX) as usize;
            if first != next_first || o != next_off || cnt == 0 {
                return Err(err(format!("doc block {i} is not contiguous")));
            }
            // Every offset is checked arithmetic: these numbers come from the file.
            blocks_at
                .checked_add(o)
                .and_then(|s| s.checked_add(len))
                .filter(|end| *end <= d_at + d_len)
                .ok_or_else(|| err(format!("doc block {i} runs past its section")))?;
            next_first = next_first
                .checked_add(cnt)
                .ok_or_else(|| err(format!("doc block {i}: ordinal overflow")))?;
            next_off = o + len;
            blocks.push(DocBlock {
                first,
                n: cnt,
                at: blocks_at + o,
                len,
            });
        }
        if next_first != n || blocks_at + next_off != d_at + d_len {
            return Err(err("doc blocks do not cover the segment".into()));
        }

        // Vectors.
        let words = n.div_ceil(64) * 8;
        let (v_at, v_len) = vecs;
        if v_len != words + n * dim * 4 {
            return Err(err("vectors section length mismatch".into()));
        }
        let vec_chunks = match ranges.get(9).copied().flatten() {
            Some(c) => {
                let chunks = super::chunks::VectorChunks::parse(b, c, vecs).map_err(err)?;
                chunks.check(b, v_at, v_at + words).map_err(err)?;
                Some(chunks)
            }
            None => None,
        };
        let vec_present = Bitset::from_le_bytes(b.get(v_at..v_at + words).unwrap_or_default(), n);

        // Terms: sorted UTF-8 terms, sorted in-range postings.
        let (t_at, t_len) = terms;
        let tc = le_u32(b, t_at).unwrap_or(0) as usize;
        let term_offsets_at = t_at + 8;
        let post_offsets_at = term_offsets_at + (tc + 1) * 4;
        let term_bytes_at = post_offsets_at + (tc + 1) * 4;
        let tb = le_u32(b, post_offsets_at - 4).unwrap_or(u32::MAX) as usize;
        let np = le_u32(b, term_bytes_at - 4).unwrap_or(u32::MAX) as usize;
        let postings_at = (term_bytes_at + tb).next_multiple_of(4);
        if postings_at.checked_add(np.saturating_mul(4)) != Some(t_at + t_len) {
            return Err(err("terms section length mismatch".into()));
        }
        let mut prev: Option<&[u8]> = None;
        for i in 0..tc {
            let ts = le_u32(b, term_offsets_at + i * 4).unwrap_or(0) as usize;
            let te = le_u32(b, term_offsets_at + i * 4 + 4).unwrap_or(0) as usize;
            let ps = le_u32(b, post_offsets_at + i * 4).unwrap_or(0) as usize;
            let pe = le_u32(b, post_offsets_at + i * 4 + 4).unwrap_or(0) as usize;
            let t = b
                .get(term_bytes_at + ts..term_bytes_at + te)
                .filter(|t| ts < te && te <= tb && std::str::from_utf8(t).is_ok())
                .ok_or_else(|| err(format!("bad term {i}")))?;
            if prev.is_some_and(|p| p >= t) || ps >= pe || pe > np {
                return Err(err(format!("terms or postings out of order at term {i}")));
            }
            prev = Some(t);
            let mut last: Option<u32> = None;
            for j in ps..pe {
                let o = le_u32(b, postings_at + j * 4).unwrap_or(u32::MAX);
                if o as usize >= n || last.is_some_and(|l| l >= o) {
                    return Err(err(format!(
                        "posting list of term {i} is not sorted ordinals"
                    )));
                }
                last = Some(o);
            }
        }

        // Attributes.
        let (a_at, a_len) = attrs;
        if le_u32(b, a_at) != Some(schema.attrs.len() as u32) {
            return Err(err("attribute count differs from the schema".into()));
        }
        let per_attr = words + n * 8 + n.div_ceil(ATTR_BLOCK_DOCS) * 16;
        if a_len != 8 + per_attr * schema.attrs.len() {
            return Err(err("attrs section length mismatch".into()));
        }
        let attrs = (0..schema.attrs.len())
            .map(|i| {
                let at = a_at + 8 + i * per_attr;
                AttrCol {
                    present: Bitset::from_le_bytes(b.get(at..at + words).unwrap_or_default(), n),
                    values_at: at + words,
                    minmax_at: at + words + n * 8,
                }
            })
            .collect();

        let ann = match (
            ranges.get(6).copied().flatten(),
            ranges.get(7).copied().flatten(),
        ) {
            (None, None) => None,
            (Some(c), Some(g)) => {
                let idx = DiskIndex::open(path, b, c, g, n, &vec_present, dim, schema.metric)?;
                bytes.advise_random(g.0, g.1);
                Some(idx)
            }
            _ => return Err(err("one ANN section without the other".into())),
        };
        let calibration = match ranges.get(8).copied().flatten() {
            None => None,
            Some(_) if ann.is_none() => {
                return Err(err("a calibration section without an index".into()))
            }
            Some((at, len)) => Some(
                crate::query::calibrated::Calibration::decode(
                    b.get(at..at + len).unwrap_or_default(),
                )
                .map_err(err)?,
            ),
        };

        let mut s = Segment {
            ann,
            calibration,
            ann_charge: None,
            retire: None,
            version,
            fence_keys: Vec::new(),
            fence_ends: Vec::new(),
            filter_cache: parking_lot::Mutex::new(Vec::new()),
            id,
            path: path.to_owned(),
            n,
            dim,
            schema,
            key_offsets_at,
            key_bytes_at,
            blocks,
            vectors: vec_present.count(),
            vec_present,
            vec_at: v_at + words,
            vec_chunks,
            vectors_crc,
            term_count: tc,
            term_offsets_at,
            post_offsets_at,
            term_bytes_at,
            postings_at,
            attrs,
            bloom,
            bytes,
            cache: None,
        };
        let (mut keys, mut ends) = (Vec::new(), Vec::new());
        for i in (0..n).step_by(FENCE_EVERY) {
            keys.extend_from_slice(s.key(i));
            ends.push(u32::try_from(keys.len()).map_err(|_| err("keys too long".into()))?);
        }
        s.fence_keys = keys;
        s.fence_ends = ends;
        Ok(s)
    }

    /// Fence entry `j`'s key.
    fn fence_key(&self, j: usize) -> &[u8] {
        let start = match j.checked_sub(1) {
            Some(p) => self.fence_ends.get(p).copied().unwrap_or(0) as usize,
            None => 0,
        };
        let end = self.fence_ends.get(j).copied().unwrap_or(0) as usize;
        self.fence_keys.get(start..end).unwrap_or_default()
    }

    /// Documents with a vector.
    pub(crate) fn vector_count(&self) -> usize {
        self.vectors
    }

    /// The segment's ANN index, if it has one.
    pub(crate) fn ann(&self) -> Option<&DiskIndex> {
        self.ann.as_ref()
    }

    /// The segment's calibration, if it has one.
    pub(crate) fn calibration(&self) -> Option<&crate::query::calibrated::Calibration> {
        self.calibration.as_ref()
    }

    /// The schema the segment was opened with.
    pub(crate) fn schema(&self) -> &Schema {
        &self.schema
    }

    /// Prepare the index to be read as a database open with an ANN memory budget of `budget`
    /// bytes would leave it (a segment opened from bytes, not charged to any budget): a graph
    /// that fits is copied into the node cache (a lazy open reads it from the mapping with the
    /// same search behaviour; copied, the calibration's timings are those of pages already
    /// resident), one that does not is left uncached, as a lazy open leaves it. Returns the
    /// bytes cached.
    pub(crate) fn prepare_as_opened(&mut self, budget: usize) -> Result<usize> {
        let bytes = &self.bytes;
        match self.ann.as_mut() {
            Some(idx) if idx.graph_bytes() <= budget => idx.fill_cache(bytes, budget),
            Some(idx) => {
                idx.set_fits(false);
                Ok(0)
            }
            None => Ok(0),
        }
    }

    /// The file's bytes back (a segment opened from bytes being written, to append to them).
    pub(crate) fn take_bytes(mut self) -> FileBytes {
        std::mem::replace(&mut self.bytes, FileBytes::Owned(Vec::new()))
    }

    /// The file's bytes (graph search reads sectors from them).
    pub(crate) fn file_bytes(&self) -> &FileBytes {
        &self.bytes
    }

    /// Distinct terms.
    pub(crate) fn term_count(&self) -> usize {
        self.term_count
    }

    /// Number of documents (ordinals `0..len`).
    pub(crate) fn len(&self) -> usize {
        self.n
    }

    /// Key of ordinal `i`.
    pub(crate) fn key(&self, i: usize) -> &[u8] {
        let off = |j: usize| le_u32(&self.bytes, self.key_offsets_at + j * 4).unwrap_or(0) as usize;
        self.bytes
            .get(self.key_bytes_at + off(i)..self.key_bytes_at + off(i + 1))
            .unwrap_or_default()
    }

    /// First ordinal whose key is >= `key`.
    pub(crate) fn lower_bound(&self, key: &[u8]) -> usize {
        // Fence first: the last fence entry with key < `key` bounds the range from below, the
        // next one from above.
        let f = self.fence_ends.len();
        let (mut flo, mut fhi) = (0, f);
        while flo < fhi {
            let mid = flo + (fhi - flo) / 2;
            if self.fence_key(mid) < key {
                flo = mid + 1;
            } else {
                fhi = mid;
            }
        }
        // Fence entries 0..flo are < key: the answer lies in (flo-1)*E+1 ..= flo*E.
        let mut lo = flo.saturating_sub(1) * FENCE_EVERY;
        let mut hi = (flo * FENCE_EVERY).min(self.n);
        if flo == 0 {
            return 0;
        }
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.key(mid) < key {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }

    /// Ordinal of `key`, if present.
    pub(crate) fn find(&self, key: &[u8]) -> Option<usize> {
        // Outside the segment's key range: no search (segments of ordered inserts are disjoint).
        let last = self.n.checked_sub(1)?;
        if key < self.key(0) || key > self.key(last) {
            return None;
        }
        if self
            .bloom
            .is_some_and(|bl| !bl.may_contain(&self.bytes, key))
        {
            return None;
        }
        let i = self.lower_bound(key);
        (i < self.n && self.key(i) == key).then_some(i)
    }

    /// The whole document at ordinal `i`.
    pub(crate) fn doc(&self, i: usize) -> Result<Document> {
        let bi = self.blocks.partition_point(|blk| blk.first + blk.n <= i);
        let blk = self
            .blocks
            .get(bi)
            .ok_or_else(|| bad(&self.path, format!("ordinal {i} in no block")))?;
        let raw = self.block(bi, blk)?;
        let j = i - blk.first;
        let o = |k: usize| le_u32(&raw, k * 4).map(|v| v as usize);
        let body_at = (blk.n + 1) * 4;
        let (s, e) = (o(j), o(j + 1));
        let rec = s
            .zip(e)
            .and_then(|(s, e)| raw.get(body_at + s..body_at + e))
            .ok_or_else(|| bad(&self.path, format!("doc block {bi}: bad offsets")))?;
        let (mut d, external) = decode_doc_ext(rec, &self.schema, self.version >= 2)
            .map_err(|r| bad(&self.path, format!("doc {i}: {r}")))?;
        if external {
            let mut v = Vec::with_capacity(self.dim);
            if !self.vector_into(i, &mut v)? {
                return Err(bad(
                    &self.path,
                    format!("doc {i}: vector flagged in the vectors section but absent there"),
                ));
            }
            d.vector = Some(v);
        }
        if d.key != self.key(i) {
            return Err(bad(
                &self.path,
                format!("doc {i}: key differs from the keys section"),
            ));
        }
        Ok(d)
    }

    /// Decompressed block `bi`, through the cache.
    fn block(&self, bi: usize, blk: &DocBlock) -> Result<Arc<Vec<u8>>> {
        let tag = bi as u32;
        if let Some(raw) = self.cache.as_ref().and_then(|c| c.get(self.id, tag)) {
            return Ok(raw);
        }
        let z = self.bytes.get(blk.at..blk.at + blk.len).unwrap_or_default();
        let raw = Arc::new(
            decompress(z).map_err(|e| bad(&self.path, format!("doc block {bi}: zstd: {e}")))?,
        );
        if let Some(c) = &self.cache {
            c.insert(self.id, tag, raw.clone());
        }
        Ok(raw)
    }

    /// Hint the CPU to load document `i`'s vector (a re-rank about to read it).
    pub(crate) fn prefetch_vector(&self, i: usize) {
        let at = self.vec_at + i * self.dim * 4;
        if let Some(v) = self.bytes.get(at..at + self.dim * 4) {
            for line in (0..v.len()).step_by(64) {
                crate::ann::prefetch(v.get(line..).unwrap_or_default());
            }
        }
    }

    /// Copy the vector of ordinal `i` into `out`; false if the document has none. The chunk it
    /// lies in is checked on its first read (a mismatch is a corruption error).
    pub(crate) fn vector_into(&self, i: usize, out: &mut Vec<f32>) -> Result<bool> {
        if !self.vec_present.get(i) {
            return Ok(false);
        }
        let at = self.vec_at + i * self.dim * 4;
        let end = at + self.dim * 4;
        if let Some(c) = &self.vec_chunks {
            c.check(&self.bytes, at, end)
                .map_err(|r| bad(&self.path, r))?;
        }
        let raw = self
            .bytes
            .get(at..end)
            .ok_or_else(|| bad(&self.path, format!("vector {i} out of bounds")))?;
        out.clear();
        // `chunks_exact(4)` yields 4-byte slices only: the conversion cannot fail.
        out.extend(
            raw.chunks_exact(4)
                .map_while(|c| c.try_into().ok().map(f32::from_le_bytes)),
        );
        Ok(true)
    }

    /// Check what an open leaves to first use: every chunk of the vectors section and its
    /// table CRC (segments with per-chunk checksums; others were verified whole at open).
    pub(crate) fn verify_deferred(&self) -> Result<()> {
        if let Some(c) = &self.vec_chunks {
            c.check_all(&self.bytes).map_err(|r| bad(&self.path, r))?;
        }
        if let Some(crc) = self.vectors_crc {
            let words = self.n.div_ceil(64) * 8;
            let start = self.vec_at - words;
            let body = self
                .bytes
                .get(start..self.vec_at + self.n * self.dim * 4)
                .ok_or_else(|| bad(&self.path, "vectors section out of bounds"))?;
            if crc32fast::hash(body) != crc {
                return Err(bad(&self.path, "section 3 checksum mismatch"));
            }
        }
        Ok(())
    }

    fn term(&self, t: usize) -> &[u8] {
        let o = |j: usize| le_u32(&self.bytes, self.term_offsets_at + j * 4).unwrap_or(0) as usize;
        self.bytes
            .get(self.term_bytes_at + o(t)..self.term_bytes_at + o(t + 1))
            .unwrap_or_default()
    }

    /// Range of `term`'s posting list in the postings array (empty if the term is absent).
    fn posting_range(&self, term: &str) -> std::ops::Range<usize> {
        let t = term.as_bytes();
        let (mut lo, mut hi) = (0, self.term_count);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.term(mid) < t {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        if lo < self.term_count && self.term(lo) == t {
            let p =
                |j: usize| le_u32(&self.bytes, self.post_offsets_at + j * 4).unwrap_or(0) as usize;
            p(lo)..p(lo + 1)
        } else {
            0..0
        }
    }

    /// Ordinals carrying `term`, as a bitset.
    fn postings(&self, term: &str) -> Bitset {
        let mut out = Bitset::new(self.n);
        for k in self.posting_range(term) {
            if let Some(o) = le_u32(&self.bytes, self.postings_at + k * 4) {
                out.set(o as usize);
            }
        }
        out
    }

    /// Attribute `a` (schema index) of ordinal `i`.
    pub(crate) fn attr(&self, a: usize, i: usize) -> Option<i64> {
        let col = self.attrs.get(a)?;
        if !col.present.get(i) {
            return None;
        }
        le_i64(&self.bytes, col.values_at + i * 8)
    }

    /// (min, max) of attribute `a`'s present values in block `blk`; `None` if it has none.
    fn block_minmax(&self, a: usize, blk: usize) -> Option<(i64, i64)> {
        let col = self.attrs.get(a)?;
        let at = col.minmax_at + blk * 16;
        let (lo, hi) = (le_i64(&self.bytes, at)?, le_i64(&self.bytes, at + 8)?);
        (lo <= hi).then_some((lo, hi))
    }

    /// Matching documents of `f` (deleted ones included) estimated without evaluating it:
    /// terms from their posting lengths (exact), ranges from the attribute blocks' (min, max)
    /// (blocks inside the range count fully for the minimum — values absent from a block are
    /// not known, so presence is not assumed — and overlapping blocks for the maximum; the
    /// expectation assumes values spread uniformly between a block's min and max). AND/OR/NOT
    /// combine the bounds exactly (Fréchet bounds) and the expectation assuming independence.
    pub(crate) fn estimate(&self, f: &Filter) -> crate::ann::Estimate {
        use crate::ann::Estimate;
        let n = self.n as f64;
        match f {
            Filter::Term(t) => Estimate::exact(self.posting_range(t).len() as u64),
            Filter::And(fs) => {
                let parts: Vec<Estimate> = fs.iter().map(|x| self.estimate(x)).collect();
                Estimate::and(&parts, self.n as u64)
            }
            Filter::Or(fs) => {
                let parts: Vec<Estimate> = fs.iter().map(|x| self.estimate(x)).collect();
                Estimate::or(&parts, self.n as u64)
            }
            Filter::Not(x) => self.estimate(x).not(self.n as u64),
            Filter::Range { attr, lo, hi } => {
                let Some(a) = self.schema.attr_index(attr) else {
                    return Estimate::exact(0);
                };
                let (mut max, mut exp) = (0u64, 0f64);
                for blk in 0..self.n.div_ceil(ATTR_BLOCK_DOCS) {
                    let docs =
                        (((blk + 1) * ATTR_BLOCK_DOCS).min(self.n) - blk * ATTR_BLOCK_DOCS) as u64;
                    let Some((bmin, bmax)) = self.block_minmax(a, blk) else {
                        continue;
                    };
                    if bmax < *lo || bmin > *hi {
                        continue;
                    }
                    max += docs;
                    if *lo <= bmin && bmax <= *hi {
                        exp += docs as f64;
                    } else {
                        // Overlapping fraction of [bmin, bmax], uniform assumption.
                        let span = (bmax as f64 - bmin as f64) + 1.0;
                        let ov = ((*hi).min(bmax) as f64 - (*lo).max(bmin) as f64) + 1.0;
                        exp += docs as f64 * (ov / span).clamp(0.0, 1.0);
                    }
                }
                Estimate {
                    min: 0,
                    expected: (exp.min(n).round() as u64).min(max),
                    max,
                }
            }
            Filter::Apply { .. } => Estimate {
                min: 0,
                expected: self.n as u64 / 2,
                max: self.n as u64,
            },
        }
    }

    /// Evaluate a (validated) filter to the set of matching ordinals.
    /// [`Segment::eval`] through the segment's cache of recent filters (large segments only):
    /// a repeated filter — a tenant or visibility restriction, a popular tag — costs a copy
    /// of its bitmap instead of decoding its postings or scanning a column again.
    /// Returns the bitmap (shared with the cache) and its counts.
    pub(crate) fn eval_cached(&self, f: &Filter) -> Arc<Evaluated> {
        let fresh = |b: Bitset| {
            let counts = self.counts(&b);
            Arc::new(Evaluated {
                bits: Arc::new(b),
                counts,
                by_node: std::sync::OnceLock::new(),
                ones: std::sync::OnceLock::new(),
            })
        };
        if self.n < FILTER_CACHE_MIN_DOCS {
            return fresh(self.eval(f));
        }
        let key = f.to_string();
        {
            let mut c = self.filter_cache.lock();
            if let Some(at) = c.iter().position(|(k, _)| *k == key) {
                let hit = c.remove(at);
                let out = hit.1.clone();
                c.push(hit);
                return out;
            }
        }
        let e = fresh(self.eval(f));
        let mut c = self.filter_cache.lock();
        if c.len() >= FILTER_CACHE_ENTRIES {
            c.remove(0);
        }
        c.push((key, e.clone()));
        e
    }

    /// How many of `b`'s documents there are, and how many of them carry a vector (documents
    /// without one — user profiles next to posts — can match a filter but never a k-NN
    /// query, so the planner must not count them).
    pub(crate) fn counts(&self, b: &Bitset) -> Counts {
        let all = b.count();
        let with_vector = if self.vectors == self.n {
            all
        } else {
            b.count_and(&self.vec_present)
        };
        Counts { all, with_vector }
    }

    pub(crate) fn eval(&self, f: &Filter) -> Bitset {
        match f {
            Filter::Term(t) => self.postings(t),
            Filter::And(fs) => {
                let mut acc = Bitset::full(self.n);
                for x in fs {
                    acc.and_with(&self.eval(x));
                }
                acc
            }
            Filter::Or(fs) => {
                let mut acc = Bitset::new(self.n);
                for x in fs {
                    acc.or_with(&self.eval(x));
                }
                acc
            }
            Filter::Not(x) => {
                let mut b = self.eval(x);
                b.negate();
                b
            }
            Filter::Range { attr, lo, hi } => {
                let mut out = Bitset::new(self.n);
                if let Some(a) = self.schema.attr_index(attr) {
                    // Blocks whose (min, max) misses the range are skipped unread.
                    for blk in 0..self.n.div_ceil(ATTR_BLOCK_DOCS) {
                        let Some((bmin, bmax)) = self.block_minmax(a, blk) else {
                            continue;
                        };
                        if bmax < *lo || bmin > *hi {
                            continue;
                        }
                        let end = ((blk + 1) * ATTR_BLOCK_DOCS).min(self.n);
                        for i in blk * ATTR_BLOCK_DOCS..end {
                            if self.attr(a, i).is_some_and(|v| (*lo..=*hi).contains(&v)) {
                                out.set(i);
                            }
                        }
                    }
                }
                out
            }
            // Resolved by the snapshot before evaluation; unresolved, it matches nothing.
            Filter::Apply { .. } => Bitset::new(self.n),
        }
    }
}
