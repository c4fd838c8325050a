//! Decoding and checking a segment file's footer, section table and sections
//! (`docs/format.md`, "Segment"): every number read from the file is checked before use, and a
//! failure names what broke.

use super::{AttrCol, DocBlock};
use crate::bitset::Bitset;
use crate::segment::bloom::Bloom;
use crate::segment::format::{
    le_u32, DocCodec, SectionKind, ATTR_BLOCK_DOCS, FOOTER_BYTES, SEGMENT_FORMAT_VERSION,
    SEGMENT_FORMAT_VERSION_MIN, SEGMENT_MAGIC, TABLE_ENTRY_BYTES,
};
use crate::{DecodeError, Schema};
use strata_io::le::Cursor;

type Decoded<T> = std::result::Result<T, DecodeError>;

fn invalid(what: impl Into<String>) -> DecodeError {
    DecodeError::Invalid(what.into())
}

/// The `u32` at `at` of `b` as a `usize`, or an error naming `what`.
fn u32_field(b: &[u8], at: usize, what: &str) -> Decoded<usize> {
    le_u32(b, at)
        .map(|x| x as usize)
        .ok_or_else(|| invalid(format!("{what} out of bounds")))
}

/// The footer's fields.
pub(super) struct Footer {
    pub version: u32,
    pub table_at: usize,
    pub table_len: usize,
    pub table_crc: u32,
    pub n: usize,
    pub dim: usize,
}

/// The footer (last [`FOOTER_BYTES`]): magic, version, section count, table offset and CRC,
/// document count, dimension, CRC of the footer.
pub(super) fn footer(b: &[u8], schema: &Schema) -> Decoded<Footer> {
    let flen = b.len();
    let fstart = flen
        .checked_sub(FOOTER_BYTES)
        .ok_or_else(|| invalid(format!("{flen} bytes is shorter than the footer")))?;
    let footer = b.get(fstart..).unwrap_or_default();
    let (body, crc) = footer
        .split_last_chunk::<4>()
        .ok_or(DecodeError::Truncated {
            at: fstart,
            need: FOOTER_BYTES,
        })?;
    if crc32fast::hash(body) != u32::from_le_bytes(*crc) {
        return Err(DecodeError::Checksum);
    }
    let mut c = Cursor::new(body);
    if c.take(8)? != SEGMENT_MAGIC {
        return Err(DecodeError::Magic);
    }
    let version = c.u32()?;
    if !(SEGMENT_FORMAT_VERSION_MIN..=SEGMENT_FORMAT_VERSION).contains(&version) {
        return Err(DecodeError::Version(version));
    }
    let count = c.u32()? as usize;
    let table_at = usize::try_from(c.u64()?).map_err(|_| invalid("table offset"))?;
    let table_crc = c.u32()?;
    let n = c.u32()? as usize;
    let dim = c.u32()? as usize;
    if dim != schema.dim as usize {
        return Err(invalid(format!(
            "dimension {dim}, schema says {}",
            schema.dim
        )));
    }
    let table_len = count
        .checked_mul(TABLE_ENTRY_BYTES)
        .filter(|l| table_at.checked_add(*l) == Some(fstart))
        .ok_or_else(|| invalid("section table does not end at the footer"))?;
    Ok(Footer {
        version,
        table_at,
        table_len,
        table_crc,
        n,
        dim,
    })
}

/// The section table, checked: where each known section lies.
pub(super) struct Sections {
    ranges: [Option<(usize, usize)>; SectionKind::ALL.len()],
    /// The vectors section's table CRC when it was not checked here (it has per-chunk
    /// checksums, checked as vectors are read, and whole by `verify`).
    pub vectors_crc: Option<u32>,
}

impl Sections {
    /// (offset, length) of the section of kind `k`, if the file has one.
    pub(super) fn range(&self, k: SectionKind) -> Option<(usize, usize)> {
        SectionKind::ALL
            .iter()
            .position(|x| *x == k)
            .and_then(|i| self.ranges.get(i).copied().flatten())
    }
}

/// The section table: its CRC, each section in bounds and (but for a chunked vectors section)
/// matching its CRC, no kind twice, and zero padding between sections (no byte of the file
/// goes unchecked). Unknown kinds are newer optional sections: skipped.
pub(super) fn section_table(b: &[u8], f: &Footer) -> Decoded<Sections> {
    let table = b
        .get(f.table_at..f.table_at + f.table_len)
        .ok_or_else(|| invalid("section table out of bounds"))?;
    if crc32fast::hash(table) != f.table_crc {
        return Err(DecodeError::Checksum);
    }
    let entries: Vec<(u32, u32, usize, usize)> = table
        .chunks_exact(TABLE_ENTRY_BYTES)
        .map(|e| {
            let mut c = Cursor::new(e);
            let field = |x: u64| usize::try_from(x).unwrap_or(usize::MAX);
            Ok((c.u32()?, c.u32()?, field(c.u64()?), field(c.u64()?)))
        })
        .collect::<Decoded<_>>()?;
    let chunked = entries
        .iter()
        .any(|e| e.0 == SectionKind::VectorChunks as u32);
    let mut s = Sections {
        ranges: [None; SectionKind::ALL.len()],
        vectors_crc: None,
    };
    for &(kind, crc, at, len) in &entries {
        let body = at
            .checked_add(len)
            .filter(|end| *end <= f.table_at)
            .and_then(|end| b.get(at..end))
            .ok_or_else(|| invalid(format!("section {kind} out of bounds")))?;
        let crc_len = SectionKind::table_crc_bytes(kind, len);
        if chunked && kind == SectionKind::Vectors as u32 {
            s.vectors_crc = Some(crc);
        } else if crc32fast::hash(body.get(..crc_len).unwrap_or_default()) != crc {
            return Err(invalid(format!("section {kind} checksum mismatch")));
        }
        if let Some(slot) = SectionKind::ALL
            .iter()
            .position(|k| *k as u32 == kind)
            .and_then(|i| s.ranges.get_mut(i))
        {
            if slot.replace((at, len)).is_some() {
                return Err(invalid(format!("section {kind} appears twice")));
            }
        }
    }
    // Every span is in bounds (checked above), so `at + len` cannot overflow.
    let mut spans: Vec<(usize, usize)> = entries.iter().map(|e| (e.2, e.2 + e.3)).collect();
    spans.sort_unstable();
    let mut pos = 0usize;
    for (s, e) in spans.iter().copied().chain([(f.table_at, f.table_at)]) {
        if s < pos || b.get(pos..s).is_none_or(|gap| gap.iter().any(|&x| x != 0)) {
            return Err(invalid(format!(
                "overlapping sections or non-zero padding before offset {s}"
            )));
        }
        pos = e;
    }
    Ok(s)
}

/// Where the keys lie: the offsets array and the key bytes.
pub(super) struct KeysLayout {
    pub offsets_at: usize,
    pub bytes_at: usize,
}

/// Keys: count, offsets, sorted non-empty keys, each one in the bloom filter.
pub(super) fn keys(
    b: &[u8],
    (k_at, k_len): (usize, usize),
    n: usize,
    bloom: Option<&Bloom>,
) -> Decoded<KeysLayout> {
    if le_u32(b, k_at) != Some(n as u32) {
        return Err(invalid("key count differs from the footer"));
    }
    let offsets_at = k_at + 8;
    let bytes_at = offsets_at + (n + 1) * 4;
    let off = |i: usize| u32_field(b, offsets_at + i * 4, "key offset");
    let total = off(n)?;
    if bytes_at.checked_add(total) != Some(k_at + k_len) || off(0)? != 0 {
        return Err(invalid("keys section length mismatch"));
    }
    let mut prev: Option<&[u8]> = None;
    for i in 0..n {
        let (s, e) = (off(i)?, off(i + 1)?);
        let k = b
            .get(bytes_at + s..bytes_at + e)
            .filter(|k| !k.is_empty() && s <= e)
            .ok_or_else(|| invalid(format!("bad key offsets at ordinal {i}")))?;
        if prev.is_some_and(|p| p >= k) {
            return Err(invalid(format!(
                "keys not strictly increasing at ordinal {i}"
            )));
        }
        // A filter missing one of its own keys would turn lookups into wrong answers
        // (fuzzing found a checksum-consistent one), so every key is checked.
        if bloom.is_some_and(|bl| !bl.may_contain(b, k)) {
            return Err(invalid(format!("bloom filter does not contain key {i}")));
        }
        prev = Some(k);
    }
    Ok(KeysLayout {
        offsets_at,
        bytes_at,
    })
}

/// Docs: contiguous compressed blocks covering every ordinal, and their codec (valid for the
/// segment's format `version`).
pub(super) fn doc_blocks(
    b: &[u8],
    (d_at, d_len): (usize, usize),
    n: usize,
    version: u32,
) -> Decoded<(Vec<DocBlock>, DocCodec)> {
    let nblocks = u32_field(b, d_at, "doc block count")?;
    let code = u32_field(b, d_at + 4, "doc block codec")? as u32;
    let codec = DocCodec::of(version, code).ok_or_else(|| {
        invalid(format!(
            "doc block codec {code} in a segment of format {version}"
        ))
    })?;
    let index_at = d_at + 8;
    let end = d_at + d_len;
    let blocks_at = nblocks
        .checked_mul(24)
        .and_then(|x| x.checked_add(index_at))
        .filter(|&x| x <= end)
        .ok_or_else(|| invalid("doc block index truncated"))?;
    let mut blocks = Vec::with_capacity(nblocks);
    let (mut next_first, mut next_off) = (0usize, 0usize);
    for i in 0..nblocks {
        let mut c = Cursor::new(
            b.get(index_at + i * 24..index_at + i * 24 + 24)
                .unwrap_or_default(),
        );
        let first = c.u32()? as usize;
        let cnt = c.u32()? as usize;
        let o = usize::try_from(c.u64()?).unwrap_or(usize::MAX);
        let len = usize::try_from(c.u64()?).unwrap_or(usize::MAX);
        if first != next_first || o != next_off || cnt == 0 {
            return Err(invalid(format!("doc block {i} is not contiguous")));
        }
        // Every offset is checked arithmetic: these numbers come from the file.
        blocks_at
            .checked_add(o)
            .and_then(|s| s.checked_add(len))
            .filter(|e| *e <= end)
            .ok_or_else(|| invalid(format!("doc block {i} runs past its section")))?;
        next_first = next_first
            .checked_add(cnt)
            .ok_or_else(|| invalid(format!("doc block {i}: ordinal overflow")))?;
        next_off = o + len;
        blocks.push(DocBlock {
            first,
            n: cnt,
            at: blocks_at + o,
            len,
        });
    }
    if next_first != n || blocks_at + next_off != end {
        return Err(invalid("doc blocks do not cover the segment"));
    }
    Ok((blocks, codec))
}

/// Where the terms section's arrays lie.
pub(super) struct TermsLayout {
    pub count: usize,
    pub term_offsets_at: usize,
    pub post_offsets_at: usize,
    pub term_bytes_at: usize,
    pub postings_at: usize,
}

/// Terms: sorted UTF-8 terms, each with a sorted, in-range posting list.
pub(super) fn terms(b: &[u8], (t_at, t_len): (usize, usize), n: usize) -> Decoded<TermsLayout> {
    let end = t_at + t_len;
    let tc = u32_field(b, t_at, "term count")?;
    let term_offsets_at = t_at + 8;
    let arrays = tc
        .checked_add(1)
        .and_then(|x| x.checked_mul(8))
        .and_then(|x| x.checked_add(term_offsets_at))
        .filter(|&x| x <= end)
        .ok_or_else(|| invalid("terms section length mismatch"))?;
    let post_offsets_at = term_offsets_at + (tc + 1) * 4;
    let term_bytes_at = arrays;
    let tb = u32_field(b, post_offsets_at - 4, "term bytes")?;
    let np = u32_field(b, term_bytes_at - 4, "posting count")?;
    let postings_at = (term_bytes_at + tb).next_multiple_of(4);
    if postings_at.checked_add(np.saturating_mul(4)) != Some(end) {
        return Err(invalid("terms section length mismatch"));
    }
    let mut prev: Option<&[u8]> = None;
    for i in 0..tc {
        let ts = u32_field(b, term_offsets_at + i * 4, "term offset")?;
        let te = u32_field(b, term_offsets_at + i * 4 + 4, "term offset")?;
        let ps = u32_field(b, post_offsets_at + i * 4, "posting offset")?;
        let pe = u32_field(b, post_offsets_at + i * 4 + 4, "posting offset")?;
        let t = b
            .get(term_bytes_at + ts..term_bytes_at + te)
            .filter(|t| ts < te && te <= tb && std::str::from_utf8(t).is_ok())
            .ok_or_else(|| invalid(format!("bad term {i}")))?;
        if prev.is_some_and(|p| p >= t) || ps >= pe || pe > np {
            return Err(invalid(format!(
                "terms or postings out of order at term {i}"
            )));
        }
        prev = Some(t);
        let mut last: Option<u32> = None;
        for j in ps..pe {
            let o = u32_field(b, postings_at + j * 4, "posting")? as u32;
            if o as usize >= n || last.is_some_and(|l| l >= o) {
                return Err(invalid(format!(
                    "posting list of term {i} is not sorted ordinals"
                )));
            }
            last = Some(o);
        }
    }
    Ok(TermsLayout {
        count: tc,
        term_offsets_at,
        post_offsets_at,
        term_bytes_at,
        postings_at,
    })
}

/// Attribute columns: one per schema attribute (presence bits, values, per-block min/max).
pub(super) fn attrs(
    b: &[u8],
    (a_at, a_len): (usize, usize),
    n: usize,
    schema: &Schema,
) -> Decoded<Vec<AttrCol>> {
    let words = n.div_ceil(64) * 8;
    if le_u32(b, a_at) != Some(schema.attrs.len() as u32) {
        return Err(invalid("attribute count differs from the schema"));
    }
    let per_attr = words + n * 8 + n.div_ceil(ATTR_BLOCK_DOCS) * 16;
    if a_len != 8 + per_attr * schema.attrs.len() {
        return Err(invalid("attrs section length mismatch"));
    }
    (0..schema.attrs.len())
        .map(|i| {
            let at = a_at + 8 + i * per_attr;
            let bits = b
                .get(at..at + words)
                .ok_or_else(|| invalid(format!("attribute {i} out of bounds")))?;
            Ok(AttrCol {
                present: Bitset::from_le_bytes(bits, n),
                values_at: at + words,
                minmax_at: at + words + n * 8,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::segment::writer::encode_segment;
    use crate::{Document, Metric};

    fn file() -> (Vec<u8>, Schema) {
        let schema = Schema::new(3, Metric::L2).with_attr("ts");
        let docs: Vec<Arc<Document>> = (0..50)
            .map(|i| {
                Arc::new(
                    Document::new(format!("k{i:03}"), "v")
                        .with_vector(vec![i as f32; 3])
                        .with_term(if i % 2 == 0 { "even" } else { "odd" })
                        .with_attr("ts", i),
                )
            })
            .collect();
        (encode_segment(&docs, &schema, None).unwrap(), schema)
    }

    /// Recompute the footer's CRC after an edit, so a check past it is reached.
    fn reseal_footer(b: &mut [u8]) {
        let n = b.len();
        let crc = crc32fast::hash(&b[n - FOOTER_BYTES..n - 4]);
        b[n - 4..].copy_from_slice(&crc.to_le_bytes());
    }

    #[test]
    fn each_footer_and_table_failure_has_its_kind() {
        let (good, schema) = file();
        let f = footer(&good, &schema).unwrap();
        assert_eq!((f.n, f.dim, f.version), (50, 3, SEGMENT_FORMAT_VERSION));
        let t = section_table(&good, &f).unwrap();
        for k in [
            SectionKind::Keys,
            SectionKind::Docs,
            SectionKind::Vectors,
            SectionKind::Terms,
        ] {
            assert!(t.range(k).is_some(), "{k:?}");
        }
        assert_eq!(t.range(SectionKind::AnnGraph), None);
        let n = good.len();
        let fs = n - FOOTER_BYTES;

        let mut b = good.clone();
        b[fs + 20] ^= 1; // table offset, CRC not fixed
        assert_eq!(footer(&b, &schema).err(), Some(DecodeError::Checksum));

        let mut b = good.clone();
        b[fs] ^= 1;
        reseal_footer(&mut b);
        assert_eq!(footer(&b, &schema).err(), Some(DecodeError::Magic));

        let mut b = good.clone();
        b[fs + 8..fs + 12].copy_from_slice(&99u32.to_le_bytes());
        reseal_footer(&mut b);
        assert_eq!(footer(&b, &schema).err(), Some(DecodeError::Version(99)));

        let other = Schema::new(4, Metric::L2);
        assert!(matches!(
            footer(&good, &other),
            Err(DecodeError::Invalid(_))
        ));
        assert!(matches!(
            footer(&good[..10], &schema),
            Err(DecodeError::Invalid(_))
        ));

        // A table entry's byte flipped: the table CRC catches it.
        let mut b = good.clone();
        b[f.table_at + 2] ^= 4;
        assert_eq!(section_table(&b, &f).err(), Some(DecodeError::Checksum));

        // Non-zero padding between sections (table CRC still good: padding is outside every
        // section) is found by the gap check.
        let gap = (0..f.table_at)
            .find(|&at| {
                let inside =
                    |k: SectionKind| t.range(k).is_some_and(|(a, l)| at >= a && at < a + l);
                !SectionKind::ALL.iter().any(|&k| inside(k))
            })
            .expect("some padding between sections");
        let mut b = good.clone();
        b[gap] = 1;
        assert!(
            matches!(section_table(&b, &f), Err(DecodeError::Invalid(m)) if m.contains("padding")),
            "byte {gap}"
        );
    }
}
