//! Replays the committed fuzz corpora of the store's decoders (`fuzz/corpus/{filter_parse,
//! small_decoders,segment}`) through the same entry points the fuzz targets call.
//! `STRATA_REGEN_CORPUS=1` rewrites the generated seeds from real encoders.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "test code: a failed assumption should abort the test loudly"
)]

use std::path::{Path, PathBuf};

use strata::fuzzing::{filter_parse, fuzz_schema, segment_bytes, small_decoders};
use strata::manifest::{Manifest, SegmentMeta};
use strata::Document;

fn corpus(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target)
}

fn regenerate() {
    let schema = fuzz_schema();
    let f = corpus("filter_parse");
    std::fs::create_dir_all(&f).unwrap();
    for (i, t) in [
        "(and lang:en (or author:7 author:9) (not spam) (range ts 1700000000 1700600000))",
        "a",
        "(not (not (or a b)))",
        "(range ts -9223372036854775808 9223372036854775807)",
        "(and a",
    ]
    .iter()
    .enumerate()
    {
        std::fs::write(f.join(format!("seed-{i}")), t).unwrap();
    }
    let d = corpus("small_decoders");
    std::fs::create_dir_all(&d).unwrap();
    // Selector 0, then a one-put batch: version 1, count 1, tag 1 (put), the document.
    let doc = Document::new("k", "v")
        .with_vector(vec![1.0, 2.0, 3.0])
        .with_term("a")
        .with_attr("ts", 5);
    let mut batch = vec![0u8, 1];
    batch.extend_from_slice(&1u32.to_le_bytes());
    batch.push(1);
    batch.extend_from_slice(&strata::encode_document(&doc, &schema).unwrap());
    std::fs::write(d.join("batch-put"), &batch).unwrap();
    let mut s = vec![1u8];
    s.extend_from_slice(&strata::meta::encode_schema(&schema));
    std::fs::write(d.join("schema"), &s).unwrap();
    let m = Manifest {
        number: 3,
        next_segment_id: 5,
        checkpoint_lsn: 10,
        segments: vec![SegmentMeta {
            id: 4,
            doc_count: 2,
            deletes_gen: 1,
            file_bytes: Some(100),
        }],
    };
    let mut mb = vec![2u8];
    mb.extend_from_slice(&m.encode());
    std::fs::write(d.join("manifest"), &mb).unwrap();
    let s = corpus("segment");
    std::fs::create_dir_all(&s).unwrap();
    // engine_ops: mode (fault kind), countdown, then (op, arg) pairs covering every op.
    let e = corpus("engine_ops");
    std::fs::create_dir_all(&e).unwrap();
    let ops: Vec<u8> = (0..60u8)
        .flat_map(|i| [i % 8, i.wrapping_mul(37)])
        .collect();
    for (name, mode, count) in [
        ("no-fault", 0u8, 0u8),
        ("crash-after-30-ops", 1, 9),
        ("eio-at-sync-3", 2, 2),
        ("enospc-at-write-5", 3, 4),
    ] {
        let mut seed = vec![mode, count];
        seed.extend_from_slice(&ops);
        std::fs::write(e.join(name), seed).unwrap();
    }
    // Segment format v2 seeds (`five-docs` and `ann-40`, written by v1, stay as they are).
    std::fs::write(s.join("five-docs-v2"), strata::fuzzing::seed_segment()).unwrap();
    std::fs::write(s.join("ann-40-v2"), strata::fuzzing::seed_segment_ann()).unwrap();
}

fn replay(target: &str, f: fn(&[u8])) -> usize {
    let mut n = 0;
    for entry in std::fs::read_dir(corpus(target)).unwrap() {
        f(&std::fs::read(entry.unwrap().path()).unwrap());
        n += 1;
    }
    n
}

#[test]
fn store_decoder_corpora_replay_without_panics() {
    if std::env::var_os("STRATA_REGEN_CORPUS").is_some() {
        regenerate();
    }
    assert!(replay("filter_parse", filter_parse) >= 5);
    assert!(replay("small_decoders", small_decoders) >= 3);
    assert!(replay("segment", segment_bytes) >= 4);
    assert!(replay("engine_ops", strata::fuzzing::engine_ops) >= 4);
}

/// The simulated-crash campaign in miniature (`strata crashsim` runs it at scale): seeds of
/// `strata::fuzzing::sim_input` — every fault kind at many countdowns, random operation mixes.
/// `STRATA_ENGINE_OPS_RUNS=N` for more, `STRATA_SEED=N` for the first seed; a failure prints
/// the command that replays it.
#[test]
fn engine_ops_survive_random_inputs_with_injected_faults() {
    let runs: u64 = std::env::var("STRATA_ENGINE_OPS_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let first: u64 = std::env::var("STRATA_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let mut fired = 0;
    for seed in first..first + runs {
        let data = strata::fuzzing::sim_input(seed);
        let r = std::panic::catch_unwind(|| strata::fuzzing::engine_ops_run(&data));
        match r {
            Ok(o) => fired += usize::from(o.fired),
            Err(_) => panic!("seed {seed} failed; replay: strata crashsim --seed {seed}"),
        }
    }
    // The campaign is only worth something if the armed faults really fire.
    assert!(
        fired * 2 > runs as usize,
        "only {fired} of {runs} armed faults fired"
    );
}
