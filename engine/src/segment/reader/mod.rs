//! Opening and reading a segment file. Everything is verified in `open`; accessors then only
//! index within ranges proven valid (and still use checked access, returning nothing rather
//! than panicking if that proof were ever wrong).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use strata_io::SharedFs;

mod decode;
mod filter_eval;

pub(crate) use filter_eval::Evaluated;

use super::bloom::Bloom;
use super::cache::BlockCache;
use super::format::*;
use crate::ann::disk::{DiskIndex, NodeOrder};
use crate::ann::AnnBudget;
use crate::batch::decode_doc_ext;
use crate::bitset::Bitset;
use crate::filter::Filter;
use crate::mmap::{open_immutable, FileBytes};
use crate::{DecodeError, Document, Error, Result, Schema};

/// Largest segment file accepted (64 GiB).
const SEGMENT_BYTES_LIMIT: u64 = 64 << 30;
/// Largest decompressed document block (a block may exceed its target by one big document).
const BLOCK_RAW_BYTES_MAX: usize = 16 << 20;

#[derive(Debug)]
pub(super) struct DocBlock {
    first: usize,
    n: usize,
    at: usize,
    len: usize,
}

#[derive(Debug)]
pub(super) struct AttrCol {
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
    calibration: Option<crate::segment::calibration::Calibration>,
    /// Memory charged to the database's ANN budget (returned on drop).
    ann_charge: Option<(Arc<AnnBudget>, usize)>,
    /// Removes the file when the last holder drops a retired segment (`None` for segments
    /// not opened from a database directory).
    retire: Option<crate::retire::Retire>,
    /// Segment format version (v2: document blocks flag vectors, the vectors section has them).
    version: u32,
    /// How the document blocks are compressed.
    codec: DocCodec,
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

/// An LZ4 document block: u32 raw length (at most [`BLOCK_RAW_BYTES_MAX`]), then the LZ4
/// block, which must decode to exactly that many bytes.
fn decompress_lz4(z: &[u8]) -> std::io::Result<Vec<u8>> {
    let bad = |m: String| std::io::Error::new(std::io::ErrorKind::InvalidData, m);
    let raw_len = le_u32(z, 0).ok_or_else(|| bad("block shorter than its length".into()))? as usize;
    if raw_len > BLOCK_RAW_BYTES_MAX {
        return Err(bad(format!("raw length {raw_len} over the limit")));
    }
    let mut out = vec![0u8; raw_len];
    let n = lz4_flex::block::decompress_into(z.get(4..).unwrap_or_default(), &mut out)
        .map_err(|e| bad(e.to_string()))?;
    if n != raw_len {
        return Err(bad(format!("decoded {n} bytes of {raw_len}")));
    }
    Ok(out)
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

    /// Verify a whole segment file in memory (every section but the vectors when they carry
    /// chunk checksums, and the graph's node sectors, checked on first read) and open it.
    pub(crate) fn from_bytes(
        bytes: FileBytes,
        path: &Path,
        id: u64,
        schema: Arc<Schema>,
    ) -> Result<Segment> {
        let b: &[u8] = &bytes;
        let corrupt = |e: DecodeError| Error::corruption("segment", path, e);
        let f = decode::footer(b, &schema).map_err(corrupt)?;
        let (n, dim) = (f.n, f.dim);
        let t = decode::section_table(b, &f).map_err(corrupt)?;
        let section = |k: SectionKind| t.range(k);
        let need = |k: SectionKind, name: &str| {
            section(k)
                .ok_or_else(|| corrupt(DecodeError::Invalid(format!("missing {name} section"))))
        };
        let bloom = match section(SectionKind::Bloom) {
            Some((at, len)) => Some(Bloom::parse(b, at, len).map_err(corrupt)?),
            None => None, // written before the bloom section existed
        };
        let keys = decode::keys(b, need(SectionKind::Keys, "keys")?, n, bloom.as_ref())
            .map_err(corrupt)?;
        let (blocks, codec) = decode::doc_blocks(b, need(SectionKind::Docs, "docs")?, n, f.version)
            .map_err(corrupt)?;
        let vecs = need(SectionKind::Vectors, "vectors")?;
        let words = n.div_ceil(64) * 8;
        let (v_at, v_len) = vecs;
        if v_len != words + n * dim * 4 {
            return Err(corrupt(DecodeError::invalid(
                "vectors section length mismatch",
            )));
        }
        let vec_chunks = match section(SectionKind::VectorChunks) {
            Some(c) => {
                let chunks = super::chunks::VectorChunks::parse(b, c, vecs).map_err(corrupt)?;
                chunks.check(b, v_at, v_at + words).map_err(corrupt)?;
                Some(chunks)
            }
            None => None,
        };
        // In bounds: the section's length was checked above and the table check put it in
        // the file.
        let vec_present = Bitset::from_le_bytes(b.get(v_at..v_at + words).unwrap_or_default(), n);
        let terms = decode::terms(b, need(SectionKind::Terms, "terms")?, n).map_err(corrupt)?;
        let attrs =
            decode::attrs(b, need(SectionKind::Attrs, "attrs")?, n, &schema).map_err(corrupt)?;
        let ann = match (
            section(SectionKind::AnnCodes),
            section(SectionKind::AnnGraph),
        ) {
            (None, None) => None,
            (Some(c), Some(g)) => {
                let idx = DiskIndex::open(path, b, c, g, n, &vec_present, dim, schema.metric)?;
                bytes.advise_random(g.0, g.1);
                Some(idx)
            }
            _ => {
                return Err(corrupt(DecodeError::invalid(
                    "one ANN section without the other",
                )))
            }
        };
        let calibration = match section(SectionKind::Calibration) {
            None => None,
            Some(_) if ann.is_none() => {
                return Err(corrupt(DecodeError::invalid(
                    "a calibration section without an index",
                )))
            }
            Some((at, len)) => Some(
                crate::segment::calibration::Calibration::decode(
                    b.get(at..at + len).unwrap_or_default(),
                )
                .map_err(corrupt)?,
            ),
        };

        let mut s = Segment {
            ann,
            calibration,
            ann_charge: None,
            retire: None,
            version: f.version,
            codec,
            fence_keys: Vec::new(),
            fence_ends: Vec::new(),
            filter_cache: parking_lot::Mutex::new(Vec::new()),
            id,
            path: path.to_owned(),
            n,
            dim,
            schema,
            key_offsets_at: keys.offsets_at,
            key_bytes_at: keys.bytes_at,
            blocks,
            vectors: vec_present.count(),
            vec_present,
            vec_at: v_at + words,
            vec_chunks,
            vectors_crc: t.vectors_crc,
            term_count: terms.count,
            term_offsets_at: terms.term_offsets_at,
            post_offsets_at: terms.post_offsets_at,
            term_bytes_at: terms.term_bytes_at,
            postings_at: terms.postings_at,
            attrs,
            bloom,
            bytes,
            cache: None,
        };
        let (mut keys, mut ends) = (Vec::new(), Vec::new());
        for i in (0..n).step_by(FENCE_EVERY) {
            keys.extend_from_slice(s.key(i));
            ends.push(
                u32::try_from(keys.len())
                    .map_err(|_| corrupt(DecodeError::invalid("keys too long")))?,
            );
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
    pub(crate) fn calibration(&self) -> Option<&crate::segment::calibration::Calibration> {
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
        let raw = match self.codec {
            DocCodec::Zstd => decompress(z),
            DocCodec::Lz4 => decompress_lz4(z),
        };
        let raw = Arc::new(
            raw.map_err(|e| bad(&self.path, format!("doc block {bi}: {:?}: {e}", self.codec)))?,
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
                .map_err(|r| Error::corruption("segment", &self.path, r))?;
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
            c.check_all(&self.bytes)
                .map_err(|r| Error::corruption("segment", &self.path, r))?;
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lz4_blocks_round_trip_and_damage_is_an_error_not_a_panic() {
        let raw: Vec<u8> = (0..5000u32).flat_map(|i| (i % 97).to_le_bytes()).collect();
        let mut z = (raw.len() as u32).to_le_bytes().to_vec();
        z.extend(lz4_flex::block::compress(&raw));
        assert_eq!(decompress_lz4(&z).unwrap(), raw);
        // Every truncation, every single-byte change: an error or (a change the format
        // cannot see, e.g. in a literal) the declared length — never a panic or more bytes.
        for cut in 0..z.len() {
            if let Ok(v) = decompress_lz4(z.get(..cut).unwrap()) {
                assert_eq!(v.len(), raw.len(), "cut {cut}");
            }
        }
        for at in 0..z.len() {
            for flip in [0x01u8, 0x80, 0xff] {
                let mut bad = z.clone();
                bad[at] ^= flip;
                if let Ok(v) = decompress_lz4(&bad) {
                    assert_eq!(v.len(), raw.len(), "byte {at} ^ {flip:#x}");
                }
            }
        }
        // A declared length over the limit is refused before allocating it.
        let mut huge = ((BLOCK_RAW_BYTES_MAX + 1) as u32).to_le_bytes().to_vec();
        huge.extend_from_slice(&z[4..]);
        assert!(decompress_lz4(&huge).is_err());
    }
}
