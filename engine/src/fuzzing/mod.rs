//! Entry points shared by the cargo-fuzz targets (`fuzz/`) and the corpus replay test
//! (`engine/tests/fuzz_corpus.rs`). Each panics only when it finds a bug.

use std::path::Path;
use std::sync::Arc;

use crate::manifest::Manifest;
use crate::meta::decode_schema;
use crate::mmap::FileBytes;
use crate::segment::Segment;
use crate::{Filter, Metric, Schema};

/// The schema every fuzzed record and segment is decoded against.
pub fn fuzz_schema() -> Schema {
    Schema::new(3, Metric::L2).with_attr("ts").with_attr("n")
}

/// Parse arbitrary text as a filter; a parsed filter prints to text that parses back equal.
pub fn filter_parse(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(f) = Filter::parse(text) {
        let again = Filter::parse(&f.to_string());
        assert!(
            again.as_ref().ok() == Some(&f),
            "{f} does not round-trip: {again:?}"
        );
    }
}

/// First byte picks a decoder (WAL batch, schema, manifest, deletion bitmap, calibration
/// section); the rest is input.
pub fn small_decoders(data: &[u8]) {
    let Some((which, rest)) = data.split_first() else {
        return;
    };
    let schema = fuzz_schema();
    match which % 5 {
        0 => {
            if let Ok(ops) = crate::batch::decode(rest, &schema) {
                let enc = crate::batch::encode(&ops, &schema, crate::limits::BATCH_BYTES_MAX).ok();
                let back = enc.as_deref().map(|e| crate::batch::decode(e, &schema));
                assert!(
                    matches!(back, Some(Ok(ref o)) if *o == ops),
                    "batch does not round-trip"
                );
            }
        }
        1 => {
            if let Ok(s) = decode_schema(rest) {
                assert_eq!(decode_schema(&crate::meta::encode_schema(&s)).ok(), Some(s));
            }
        }
        2 => {
            if let Ok(m) = Manifest::decode(rest) {
                assert_eq!(Manifest::decode(&m.encode()).ok(), Some(m));
            }
        }
        3 => {
            let n = rest.first().copied().unwrap_or(0) as usize;
            let _ = crate::segment::deletes::decode(rest.get(1..).unwrap_or_default(), n);
        }
        _ => {
            use crate::query::calibrated::Calibration;
            if let Ok(c) = Calibration::decode(rest) {
                assert_eq!(Calibration::decode(&c.encode()).ok(), Some(c));
            }
        }
    }
}

/// Open arbitrary bytes as a segment; if they verify, every accessor must work without panics.
/// The first byte is a mode: odd = recompute every checksum first, so mutations reach the
/// structural checks behind them instead of stopping at a CRC.
pub fn segment_bytes(data: &[u8]) {
    let Some((mode, rest)) = data.split_first() else {
        return;
    };
    let mut bytes = rest.to_vec();
    if mode & 1 == 1 {
        fix_segment_crcs(&mut bytes);
    }
    let Ok(seg) = Segment::from_bytes(
        FileBytes::Owned(bytes),
        Path::new("fuzz.seg"),
        1,
        Arc::new(fuzz_schema()),
    ) else {
        return;
    };
    let mut v = Vec::new();
    for i in 0..seg.len().min(64) {
        let k = seg.key(i).to_vec();
        assert_eq!(seg.find(&k), Some(i), "key {i} not found by its own bytes");
        let _ = seg.doc(i);
        let _ = seg.vector_into(i, &mut v);
    }
    for f in [
        "a",
        "(not a)",
        "(and a (range ts 0 10))",
        "(or b (range n -5 5))",
    ] {
        if let Ok(f) = Filter::parse(f) {
            let _ = seg.eval(&f);
        }
    }
    // The graph is verified lazily, sector by sector: a search must fail cleanly or succeed.
    if let Some(idx) = seg.ann() {
        let params = crate::SearchParams {
            list: 64,
            beam_width: 4,
            exact: false,
            ..crate::SearchParams::default()
        };
        let mut st = crate::QueryStats::default();
        let found = idx.search(
            seg.file_bytes(),
            &[0.5, -0.5, 1.0],
            10,
            &params,
            &|_| true,
            &mut st,
        );
        if let Ok(found) = found {
            assert!(
                found.iter().all(|(_, o)| *o < seg.len()),
                "ordinal out of range"
            );
        }
    }
}

use strata_io::le::u32_at as le32;

fn le64(b: &[u8], at: usize) -> Option<usize> {
    strata_io::le::u64_at(b, at).map(|x| x as usize)
}

fn put32(b: &mut [u8], at: usize, v: u32) {
    if let Some(d) = b.get_mut(at..at + 4) {
        d.copy_from_slice(&v.to_le_bytes());
    }
}

/// Rewrite section, table and footer CRCs of a segment-shaped buffer (best effort).
fn fix_segment_crcs(b: &mut [u8]) {
    let Some(f) = b.len().checked_sub(64) else {
        return;
    };
    let (Some(count), Some(table_at)) = (le32(b, f + 12), le64(b, f + 16)) else {
        return;
    };
    let table_len = (count as usize).saturating_mul(24);
    if table_at.checked_add(table_len) == Some(f) {
        // Vector chunk checksums first: their section's own CRC is computed below.
        let range = |kind: crate::segment::SectionKind| {
            (table_at..f).step_by(24).find_map(|e| {
                (le32(b, e) == Some(kind as u32))
                    .then(|| Some((le64(b, e + 8)?, le64(b, e + 16)?)))
                    .flatten()
            })
        };
        use crate::segment::SectionKind as K;
        if let (Some(v), Some(c)) = (range(K::Vectors), range(K::VectorChunks)) {
            crate::segment::chunks::fix(b, c, v);
        }
        for e in (table_at..f).step_by(24) {
            let (Some(kind), Some(at), Some(len)) = (le32(b, e), le64(b, e + 8), le64(b, e + 16))
            else {
                continue;
            };
            if kind == crate::segment::SectionKind::AnnGraph as u32 {
                crate::ann::disk::fix_sector_crcs(b, at, len);
            }
            let covered = crate::segment::SectionKind::table_crc_bytes(kind, len);
            let crc = at
                .checked_add(covered)
                .and_then(|end| b.get(at..end))
                .map(crc32fast::hash);
            if let Some(crc) = crc {
                put32(b, e + 4, crc);
            }
        }
        let crc = crc32fast::hash(b.get(table_at..f).unwrap_or_default());
        put32(b, f + 24, crc);
    }
    let crc = crc32fast::hash(b.get(f..f + 60).unwrap_or_default());
    put32(b, f + 60, crc);
}

/// A small valid segment under [`fuzz_schema`], as a seed for the segment target (mode byte 1
/// first: checksums are fixed up).
pub fn seed_segment() -> Vec<u8> {
    let schema = fuzz_schema();
    let docs: Vec<Arc<crate::Document>> = (0..5)
        .filter_map(|i| {
            crate::Document::new(format!("k{i}"), vec![b'x'; i * 10])
                .with_vector(vec![i as f32, 0.5, -1.0])
                .with_term(if i % 2 == 0 { "a" } else { "b" })
                .with_attr("ts", i as i64)
                .validate(&schema)
                .ok()
                .map(Arc::new)
        })
        .collect();
    let mut out = vec![1u8];
    out.extend_from_slice(&crate::segment::encode_for_fuzz(&docs, &schema, None));
    out
}

/// A valid segment with ANN sections (40 vectors, degree 4), a seed for the segment target.
pub fn seed_segment_ann() -> Vec<u8> {
    let schema = fuzz_schema();
    let docs: Vec<Arc<crate::Document>> = (0..40)
        .filter_map(|i| {
            let x = i as f32;
            crate::Document::new(format!("k{i:02}"), "v")
                .with_vector(vec![x.sin(), x.cos(), x / 40.0])
                .validate(&schema)
                .ok()
                .map(Arc::new)
        })
        .collect();
    let ann = crate::AnnOptions {
        min_vectors: 2,
        degree: 4,
        build_list: 8,
        ..crate::AnnOptions::default()
    };
    let mut out = vec![1u8];
    out.extend_from_slice(&crate::segment::encode_for_fuzz(&docs, &schema, Some(&ann)));
    out
}

mod engine_ops;
mod operator_faults;

pub use engine_ops::{engine_ops, engine_ops_run, sim_input, SimOutcome};
