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

/// First byte picks a decoder (WAL batch, schema, manifest, deletion bitmap); the rest is input.
pub fn small_decoders(data: &[u8]) {
    let Some((which, rest)) = data.split_first() else {
        return;
    };
    let schema = fuzz_schema();
    match which % 4 {
        0 => {
            if let Ok(ops) = crate::batch::decode(rest, &schema) {
                let enc = crate::batch::encode(&ops, &schema).ok();
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
        _ => {
            let n = rest.first().copied().unwrap_or(0) as usize;
            let _ = crate::segment::deletes::decode(rest.get(1..).unwrap_or_default(), n);
        }
    }
}

/// Open arbitrary bytes as a segment; if they verify, every accessor must work without panics.
pub fn segment_bytes(data: &[u8]) {
    let Ok(seg) = Segment::from_bytes(
        FileBytes::Owned(data.to_vec()),
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
}

/// A small valid segment under [`fuzz_schema`], as a seed for the segment target.
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
    crate::segment::encode_for_fuzz(&docs, &schema)
}
