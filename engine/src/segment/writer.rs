//! Building a segment file from documents sorted by key.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use strata_io::SharedFs;

use super::format::*;
use super::reader::Segment;
use crate::ann::disk::ReuseGraph;
use crate::batch::encode_doc_with;
use crate::bitset::Bitset;
use crate::mmap::FileBytes;
use crate::{AnnOptions, Document, Error, Result, Schema};

fn u32_of(n: usize, what: &str) -> Result<u32> {
    u32::try_from(n).map_err(|_| Error::invalid(format!("segment {what} exceeds 4 GiB")))
}

fn keys_section(docs: &[Arc<Document>]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    out.extend_from_slice(&u32_of(docs.len(), "document count")?.to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    let mut off = 0usize;
    out.extend_from_slice(&0u32.to_le_bytes());
    for d in docs {
        off += d.key.len();
        out.extend_from_slice(&u32_of(off, "key bytes")?.to_le_bytes());
    }
    for d in docs {
        out.extend_from_slice(&d.key);
    }
    Ok(out)
}

fn docs_section(docs: &[Arc<Document>], schema: &Schema) -> Result<Vec<u8>> {
    // Raw blocks: offsets u32[n+1] then the encoded documents, each stored as its u32 raw
    // length and an LZ4 block (DocCodec::Lz4).
    let mut blocks: Vec<(u32, u32, Vec<u8>)> = Vec::new();
    let mut first = 0usize;
    while first < docs.len() {
        let mut body = Vec::new();
        let mut offsets = vec![0u32];
        let mut n = 0usize;
        for d in docs.get(first..).unwrap_or_default() {
            if n > 0 && body.len() >= DOC_BLOCK_BYTES {
                break;
            }
            // Vectors live in the vectors section only (format v2): a block holds ~5x more
            // 128-d documents, so a point read decompresses less and the cache holds more.
            encode_doc_with(&mut body, d, schema, false)?;
            offsets.push(u32_of(body.len(), "block")?);
            n += 1;
        }
        let mut raw = Vec::with_capacity(offsets.len() * 4 + body.len());
        for o in &offsets {
            raw.extend_from_slice(&o.to_le_bytes());
        }
        raw.extend_from_slice(&body);
        let mut z = u32_of(raw.len(), "block")?.to_le_bytes().to_vec();
        let at = z.len();
        z.resize(at + lz4_flex::block::get_maximum_output_size(raw.len()), 0);
        let zn = lz4_flex::block::compress_into(&raw, z.get_mut(at..).unwrap_or_default())
            .map_err(|e| Error::io("lz4 compress", "segment", std::io::Error::other(e)))?;
        z.truncate(at + zn);
        blocks.push((u32_of(first, "ordinal")?, u32_of(n, "block")?, z));
        first += n;
    }
    let mut out = Vec::new();
    out.extend_from_slice(&u32_of(blocks.len(), "block count")?.to_le_bytes());
    out.extend_from_slice(&(DocCodec::Lz4 as u32).to_le_bytes());
    let mut off = 0u64;
    for (first, n, z) in &blocks {
        out.extend_from_slice(&first.to_le_bytes());
        out.extend_from_slice(&n.to_le_bytes());
        out.extend_from_slice(&off.to_le_bytes());
        out.extend_from_slice(&(z.len() as u64).to_le_bytes());
        off += z.len() as u64;
    }
    for (_, _, z) in &blocks {
        out.extend_from_slice(z);
    }
    Ok(out)
}

fn vectors_section(docs: &[Arc<Document>], dim: usize) -> Vec<u8> {
    let mut present = Bitset::new(docs.len());
    for (i, d) in docs.iter().enumerate() {
        if d.vector.is_some() {
            present.set(i);
        }
    }
    let mut out = present.to_le_bytes();
    out.reserve(docs.len() * dim * 4);
    for d in docs {
        match &d.vector {
            Some(v) => crate::batch::put_f32s(&mut out, v),
            None => out.extend(std::iter::repeat_n(0u8, dim * 4)),
        }
    }
    out
}

fn terms_section(docs: &[Arc<Document>]) -> Result<Vec<u8>> {
    // Hashed while collecting, sorted once: a B-tree's string compares per insertion were a
    // quarter of a flush's CPU (1M documents with 5 terms each, ~20k distinct terms).
    let mut by_term: HashMap<&str, Vec<u32>> = HashMap::new();
    for (i, d) in docs.iter().enumerate() {
        for t in &d.terms {
            by_term
                .entry(t.as_str())
                .or_default()
                .push(u32_of(i, "ordinal")?);
        }
    }
    let mut postings: Vec<(&str, Vec<u32>)> = by_term.into_iter().collect();
    postings.sort_unstable_by(|a, b| a.0.cmp(b.0));
    let mut out = Vec::new();
    out.extend_from_slice(&u32_of(postings.len(), "term count")?.to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    let (mut toff, mut poff) = (0usize, 0usize);
    let mut term_offsets = vec![0u32];
    let mut post_offsets = vec![0u32];
    for (t, p) in &postings {
        toff += t.len();
        poff += p.len();
        term_offsets.push(u32_of(toff, "term bytes")?);
        post_offsets.push(u32_of(poff, "postings")?);
    }
    for o in term_offsets.iter().chain(&post_offsets) {
        out.extend_from_slice(&o.to_le_bytes());
    }
    for (t, _) in &postings {
        out.extend_from_slice(t.as_bytes());
    }
    pad_to(&mut out, 4);
    for (_, p) in &postings {
        for o in p {
            out.extend_from_slice(&o.to_le_bytes());
        }
    }
    Ok(out)
}

fn attrs_section(docs: &[Arc<Document>], schema: &Schema) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    out.extend_from_slice(&u32_of(schema.attrs.len(), "attribute count")?.to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    for name in &schema.attrs {
        let mut present = Bitset::new(docs.len());
        let mut values = Vec::with_capacity(docs.len() * 8);
        let mut minmax = Vec::new();
        for (i, d) in docs.iter().enumerate() {
            let v = d.attrs.get(name).copied();
            if v.is_some() {
                present.set(i);
            }
            values.extend_from_slice(&v.unwrap_or(0).to_le_bytes());
            if i % ATTR_BLOCK_DOCS == 0 {
                minmax.push((i64::MAX, i64::MIN));
            }
            if let (Some(v), Some(mm)) = (v, minmax.last_mut()) {
                mm.0 = mm.0.min(v);
                mm.1 = mm.1.max(v);
            }
        }
        out.extend_from_slice(&present.to_le_bytes());
        out.extend_from_slice(&values);
        for (lo, hi) in minmax {
            out.extend_from_slice(&lo.to_le_bytes());
            out.extend_from_slice(&hi.to_le_bytes());
        }
    }
    Ok(out)
}

#[cfg(any(test, feature = "fuzzing"))]
/// Encode a whole segment file for `docs` (sorted by key, unique, validated). With `ann`, a
/// segment holding at least `ann.min_vectors` vectors also gets its ANN sections (no
/// calibration: that needs the planner, see [`write_segment_with`]).
pub(crate) fn encode_segment(
    docs: &[Arc<Document>],
    schema: &Schema,
    ann: Option<&AnnOptions>,
) -> Result<Vec<u8>> {
    Ok(assemble(build_parts(
        docs,
        schema,
        ann,
        None,
        false,
        &|_| true,
    )?))
}

/// Measures a freshly encoded segment for the planner within a time budget (the caller
/// passes `query::calibrate::for_writer`; the segment layer does not call up into the
/// planner): the section to append, or `None` when the segment cannot be calibrated.
pub(crate) type Calibrator =
    fn(&Segment, std::time::Duration) -> Result<Option<crate::segment::calibration::Calibration>>;

/// A segment's sections, in file order, before they are laid out, and the time and cache
/// budgets of its calibration (`None`: not calibrated).
struct Parts {
    sections: Vec<(SectionKind, Vec<u8>)>,
    docs: u32,
    dim: u32,
    calibrate_within: Option<(std::time::Duration, usize)>,
}

/// Encode every section of a segment for `docs`, building its graph if `ann` asks (reporting
/// insertions to `progress`).
fn build_parts(
    docs: &[Arc<Document>],
    schema: &Schema,
    ann: Option<&AnnOptions>,
    reuse: Option<ReuseGraph>,
    calibrate: bool,
    progress: &(dyn Fn(u64) -> bool + Sync),
) -> Result<Parts> {
    let vectors = vectors_section(docs, schema.dim as usize);
    let chunks = super::chunks::encode(&vectors);
    let mut sections = vec![
        (SectionKind::Keys, keys_section(docs)?),
        (SectionKind::Docs, docs_section(docs, schema)?),
        (SectionKind::Vectors, vectors),
        (SectionKind::VectorChunks, chunks),
        (SectionKind::Terms, terms_section(docs)?),
        (SectionKind::Attrs, attrs_section(docs, schema)?),
        (
            SectionKind::Bloom,
            super::bloom::encode(docs.iter().map(|d| d.key.as_slice())),
        ),
    ];
    let mut calibrate_within = None;
    if let Some(opts) = ann {
        let rows: Vec<(u32, &[f32])> = docs
            .iter()
            .enumerate()
            .filter_map(|(i, d)| Some((i as u32, d.vector.as_deref()?)))
            .collect();
        if rows.len() >= opts.min_vectors.max(2) {
            let built = crate::ann::disk::build_reusing(
                &rows,
                schema.dim as usize,
                schema.metric,
                opts,
                reuse,
                progress,
            )?;
            log::debug!("ANN build of {} vectors: {:?}", rows.len(), built.phases);
            // Calibration starts no new round of queries past a tenth of the index build (the
            // issue's bound on what it adds to build time) once it has its minimum of queries
            // (which the recall tail needs; see `CalibrateOptions::default`).
            let build_secs: f64 = built.phases.iter().map(|(_, s)| s).sum();
            calibrate_within = (opts.calibrate && calibrate).then(|| {
                (
                    std::time::Duration::from_secs_f64(build_secs / 10.0),
                    usize::try_from(opts.memory_budget_bytes).unwrap_or(usize::MAX),
                )
            });
            sections.push((SectionKind::AnnCodes, built.codes));
            sections.push((SectionKind::AnnGraph, built.graph));
        }
    }
    Ok(Parts {
        sections,
        docs: u32_of(docs.len(), "document count")?,
        dim: schema.dim,
        calibrate_within,
    })
}

/// Where each section of `sections` starts in the file, and the bytes after the last one:
/// padding to 8, the section table, the footer.
fn layout(sections: &[(SectionKind, Vec<u8>)], docs: u32, dim: u32) -> (Vec<u64>, u64, Vec<u8>) {
    let mut offsets = Vec::with_capacity(sections.len());
    let mut table = Vec::with_capacity(sections.len() * TABLE_ENTRY_BYTES);
    let mut at = 0u64;
    for (kind, body) in sections {
        at = at.next_multiple_of(kind.align() as u64);
        offsets.push(at);
        let crc_len = crate::segment::SectionKind::table_crc_bytes(*kind as u32, body.len());
        table.extend_from_slice(&(*kind as u32).to_le_bytes());
        table.extend_from_slice(
            &crc32fast::hash(body.get(..crc_len).unwrap_or_default()).to_le_bytes(),
        );
        table.extend_from_slice(&at.to_le_bytes());
        table.extend_from_slice(&(body.len() as u64).to_le_bytes());
        at += body.len() as u64;
    }
    let end = at;
    let table_offset = end.next_multiple_of(8);
    let mut tail = vec![0u8; (table_offset - end) as usize];
    tail.extend_from_slice(&table);
    let mut footer = Vec::with_capacity(FOOTER_BYTES);
    footer.extend_from_slice(&SEGMENT_MAGIC);
    footer.extend_from_slice(&SEGMENT_FORMAT_VERSION.to_le_bytes());
    footer.extend_from_slice(&(sections.len() as u32).to_le_bytes());
    footer.extend_from_slice(&table_offset.to_le_bytes());
    footer.extend_from_slice(&crc32fast::hash(&table).to_le_bytes());
    footer.extend_from_slice(&docs.to_le_bytes());
    footer.extend_from_slice(&dim.to_le_bytes());
    footer.resize(FOOTER_BYTES - 4, 0);
    let crc = crc32fast::hash(&footer);
    footer.extend_from_slice(&crc.to_le_bytes());
    tail.extend_from_slice(&footer);
    (offsets, end, tail)
}

/// The whole file of `parts` in memory (allocated once at its final size; each section is
/// dropped as soon as it is copied: growing the buffer by doubling while every section was
/// still alive took about three times the file size at the peak).
fn assemble(parts: Parts) -> Vec<u8> {
    let (offsets, end, tail) = layout(&parts.sections, parts.docs, parts.dim);
    let mut out = Vec::with_capacity(end as usize + tail.len());
    for ((_, body), at) in parts.sections.into_iter().zip(offsets) {
        out.resize(at as usize, 0);
        out.extend_from_slice(&body);
    }
    out.extend_from_slice(&tail);
    out
}

/// Write `parts` to `file` section by section, each dropped once written (no copy of the
/// whole file in memory: at a flush that copy's fresh pages and memcpy were ~30 % of the
/// encoder thread). Returns the file's length.
fn write_parts(file: &dyn strata_io::FileHandle, tmp: &Path, parts: Parts) -> Result<u64> {
    let (offsets, end, tail) = layout(&parts.sections, parts.docs, parts.dim);
    let io = |e| Error::from(strata_io::IoError::new("write", tmp, e));
    let mut written = 0u64;
    for ((_, body), at) in parts.sections.into_iter().zip(offsets) {
        if at > written {
            file.write_all_at(&vec![0u8; (at - written) as usize], written)
                .map_err(io)?;
        }
        file.write_all_at(&body, at).map_err(io)?;
        written = at + body.len() as u64;
    }
    file.write_all_at(&tail, end).map_err(io)?;
    Ok(end + tail.len() as u64)
}

/// The file of `parts`, with the calibration section appended when they ask for one.
fn calibrated(parts: Parts, schema: &Schema, calibrator: Option<Calibrator>) -> Result<Vec<u8>> {
    let calibrate_within = parts.calibrate_within;
    let out = assemble(parts);
    let Some((budget, cache_budget)) = calibrate_within else {
        return Ok(out);
    };
    // Calibrate on the segment as it will be read (opened from these bytes, fully verified),
    // then append the section.
    let path = std::path::Path::new("<segment being written>");
    let mut seg = Segment::from_bytes(FileBytes::Owned(out), path, 0, Arc::new(schema.clone()))?;
    // Calibrate as queries will run. An uncached read also scores the other nodes of the
    // sector it reads (17 per sector at 32-d, degree 24), which at the same list buys recall a
    // cached read does not get: in engine/tests/calibration.rs every unfiltered sample found
    // 10/10 at list 40 uncached while cached queries at list 40 found 6–8/10, and recall asked
    // at 0.99 measured 0.91. A graph that fits in the memory budget is searched without sector
    // mates at run time (lazy or warm open), one that does not with them; calibration does the
    // same (`Segment::prepare_as_opened`).
    seg.prepare_as_opened(cache_budget)?;
    let cal = match calibrator {
        Some(measure) => measure(&seg, budget)?,
        None => None,
    };
    let FileBytes::Owned(out) = seg.take_bytes() else {
        return Err(crate::Error::invalid("segment bytes were not owned"));
    };
    match cal {
        Some(cal) => append_section(out, SectionKind::Calibration, &cal.encode()),
        None => Ok(out),
    }
}

/// `file` (a whole, verified segment) with its calibration section replaced by `body` (or
/// added): the calibration is the last section a writer appends, so the file is cut where it
/// starts, its table entry dropped, and the new one appended. A calibration that is not the
/// last section (no writer produces one) is refused.
pub(crate) fn with_calibration(mut file: Vec<u8>, body: &[u8]) -> Result<Vec<u8>> {
    let bad = |what: &str| crate::Error::invalid(format!("replacing the calibration: {what}"));
    let Tail {
        footer,
        count,
        table_at,
        table,
    } = tail(&file, "replacing the calibration")?;
    let entries: Vec<&[u8]> = table.chunks_exact(TABLE_ENTRY_BYTES).collect();
    let kind = SectionKind::Calibration as u32;
    let Some(pos) = entries.iter().position(|e| le_u32(e, 0) == Some(kind)) else {
        return append_section(file, SectionKind::Calibration, body);
    };
    let entry = entries.get(pos).ok_or_else(|| bad("table"))?;
    let at = le_u64(entry, 8).ok_or_else(|| bad("table"))? as usize;
    let end = at + le_u64(entry, 16).ok_or_else(|| bad("table"))? as usize;
    let last = entries
        .iter()
        .filter_map(|e| Some(le_u64(e, 8)? as usize + le_u64(e, 16)? as usize))
        .max();
    if last != Some(end) || end > table_at {
        return Err(bad("the calibration is not the last section"));
    }
    let rest: Vec<u8> = entries
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != pos)
        .flat_map(|(_, e)| e.iter().copied())
        .collect();
    file.truncate(at);
    let file = finish_with_table(file, &rest, footer, count - 1)?;
    append_section(file, SectionKind::Calibration, body)
}

/// A segment's footer, section count, table offset and table.
struct Tail {
    footer: Vec<u8>,
    count: usize,
    table_at: usize,
    table: Vec<u8>,
}

fn tail(file: &[u8], doing: &str) -> Result<Tail> {
    let bad = |what: &str| crate::Error::invalid(format!("{doing}: {what}"));
    let fstart = file
        .len()
        .checked_sub(FOOTER_BYTES)
        .ok_or_else(|| bad("no footer"))?;
    let footer = file.get(fstart..).ok_or_else(|| bad("no footer"))?.to_vec();
    let count = le_u32(&footer, 12).ok_or_else(|| bad("footer"))? as usize;
    let table_at = le_u64(&footer, 16).ok_or_else(|| bad("footer"))? as usize;
    let table = file
        .get(table_at..fstart)
        .ok_or_else(|| bad("table"))?
        .to_vec();
    Ok(Tail {
        footer,
        count,
        table_at,
        table,
    })
}

/// `file` (its sections) followed by `table` (`count` entries) and `footer` with the count,
/// table offset and CRCs brought up to date.
fn finish_with_table(
    mut file: Vec<u8>,
    table: &[u8],
    mut footer: Vec<u8>,
    count: usize,
) -> Result<Vec<u8>> {
    pad_to(&mut file, 8);
    let table_offset = file.len() as u64;
    file.extend_from_slice(table);
    footer.truncate(FOOTER_BYTES - 4);
    let mut put = |at: usize, v: &[u8]| {
        if let Some(dst) = footer.get_mut(at..at + v.len()) {
            dst.copy_from_slice(v);
        }
    };
    put(12, &u32_of(count, "section count")?.to_le_bytes());
    put(16, &table_offset.to_le_bytes());
    put(24, &crc32fast::hash(table).to_le_bytes());
    let crc = crc32fast::hash(&footer);
    footer.extend_from_slice(&crc.to_le_bytes());
    file.extend_from_slice(&footer);
    Ok(file)
}

/// `file` (a whole segment) with one more section: written where the table was, the table
/// and footer rewritten after it.
fn append_section(mut file: Vec<u8>, kind: SectionKind, body: &[u8]) -> Result<Vec<u8>> {
    let Tail {
        footer,
        count,
        table_at,
        mut table,
    } = tail(&file, "appending a section")?;
    file.truncate(table_at);
    pad_to(&mut file, kind.align());
    let crc_len = crate::segment::SectionKind::table_crc_bytes(kind as u32, body.len());
    table.extend_from_slice(&(kind as u32).to_le_bytes());
    table
        .extend_from_slice(&crc32fast::hash(body.get(..crc_len).unwrap_or_default()).to_le_bytes());
    table.extend_from_slice(&(file.len() as u64).to_le_bytes());
    table.extend_from_slice(&(body.len() as u64).to_le_bytes());
    file.extend_from_slice(body);
    finish_with_table(file, &table, footer, count + 1)
}

/// Write a segment file durably (temp file, fsync, rename, directory fsync), its graph
/// started from `reuse` if given, reporting graph insertions to `progress`. Returns its size.
#[allow(
    clippy::too_many_arguments,
    reason = "where, what, and how to index and calibrate it: each one value"
)]
pub(crate) fn write_segment_with(
    fs: &SharedFs,
    path: &Path,
    docs: &[Arc<Document>],
    schema: &Schema,
    ann: Option<&AnnOptions>,
    reuse: Option<ReuseGraph>,
    calibrator: Option<Calibrator>,
    progress: &(dyn Fn(u64) -> bool + Sync),
) -> Result<u64> {
    let parts = build_parts(docs, schema, ann, reuse, calibrator.is_some(), progress)?;
    if parts.calibrate_within.is_some() {
        // Calibration opens the segment from its bytes: assemble it in memory.
        let bytes = calibrated(parts, schema, calibrator)?;
        crate::files::write_durably(fs, path, &bytes)?;
        return Ok(bytes.len() as u64);
    }
    let (tmp, file) = strata_io::durable::create_temp(fs.as_ref(), path)?;
    let len = write_parts(file.as_ref(), &tmp, parts)?;
    strata_io::durable::install(fs.as_ref(), file.as_ref(), &tmp, path)?;
    Ok(len)
}
