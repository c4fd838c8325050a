//! The offline builder: a database built from documents equals the same documents written
//! through `Db::put` — same content, same exact answers, ANN recall >= 0.95 — and it accepts
//! writes afterwards.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "test code: a failed assumption should abort the test loudly"
)]

use std::collections::HashSet;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use strata::build::{build_database, BuildOptions};
use strata::{
    AnnOptions, Db, Document, Error, Metric, Options, Query, Schema, SyncMode, WriteBatch,
};

const DIM: usize = 16;

fn docs(n: usize) -> Vec<Document> {
    let mut rng = StdRng::seed_from_u64(11);
    let centres: Vec<Vec<f32>> = (0..10)
        .map(|_| (0..DIM).map(|_| rng.gen_range(-5.0f32..5.0)).collect())
        .collect();
    (0..n)
        .map(|i| {
            let c = &centres[i % centres.len()];
            let v: Vec<f32> = c.iter().map(|x| x + rng.gen_range(-1.0f32..1.0)).collect();
            Document::new(format!("doc-{:05}", (i * 7919) % n), format!("v{i}"))
                .with_vector(v)
                .with_term(if i % 4 == 0 { "lang:de" } else { "lang:en" })
                .with_attr("ts", i as i64)
        })
        .collect()
}

fn schema() -> Schema {
    Schema::new(DIM as u32, Metric::L2).with_attr("ts")
}

fn ann() -> AnnOptions {
    AnnOptions {
        min_vectors: 1000,
        ..AnnOptions::default()
    }
}

#[test]
fn offline_build_equals_put_and_accepts_writes() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("built"), tmp.path().join("put"));
    let all = docs(6000);
    let opts = BuildOptions {
        segment_docs_max: 2500, // three segments, three graphs
        ann: ann(),
    };
    let report = build_database(&a, schema(), all.clone(), &opts, &|_| {}).unwrap();
    assert_eq!((report.documents, report.segments), (6000, 3));
    let options = Options::default()
        .with_sync(SyncMode::Never)
        .with_ann(ann());
    let built = Db::open(&a, options.clone()).unwrap();
    assert_eq!(built.stats().ann_segments, 3);
    let put = Db::create_with(&b, schema(), options).unwrap();
    for chunk in all.chunks(500) {
        let mut batch = WriteBatch::new();
        chunk.iter().for_each(|d| {
            batch.put(d.clone());
        });
        put.write(batch).unwrap();
    }
    put.flush().unwrap();
    assert_eq!(built.scan(..).unwrap(), put.scan(..).unwrap());

    let mut rng = StdRng::seed_from_u64(12);
    let (mut hit, mut total) = (0, 0);
    for _ in 0..50 {
        let q: Vec<f32> = (0..DIM).map(|_| rng.gen_range(-5.0f32..5.0)).collect();
        // Exact answers agree (the approximate plans differ with the segment layout).
        for f in ["lang:de", "(and lang:en (range ts 100 3000))"] {
            let query = Query::knn(q.clone(), 10)
                .with_filter_str(f)
                .unwrap()
                .exact();
            assert_eq!(
                built.search(&query).unwrap(),
                put.search(&query).unwrap(),
                "{f}"
            );
        }
        let exact: HashSet<Vec<u8>> = put
            .search(&Query::knn(q.clone(), 10).exact())
            .unwrap()
            .into_iter()
            .map(|h| h.key)
            .collect();
        let got = built.search(&Query::knn(q, 10)).unwrap();
        hit += got.iter().filter(|h| exact.contains(&h.key)).count();
        total += 10;
    }
    let recall = hit as f64 / total as f64;
    assert!(recall >= 0.95, "recall of the built database {recall}");

    // It is a normal database: writes, flushes, reopen.
    built
        .put(Document::new("zz-new", "after").with_vector(vec![0.0; DIM]))
        .unwrap();
    built.flush().unwrap();
    drop(built);
    let built = Db::open(&a, Options::default()).unwrap();
    assert_eq!(built.get(b"zz-new").unwrap().unwrap().value, b"after");
    assert_eq!(built.scan(..).unwrap().len(), 6001);
}

#[test]
fn builder_rejects_bad_documents_and_existing_targets() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    let mut bad = docs(10);
    bad[3].vector = Some(vec![1.0; DIM + 1]);
    let e = build_database(&dir, schema(), bad, &BuildOptions::default(), &|_| {}).unwrap_err();
    assert!(
        matches!(e, Error::InvalidInput(_)) && e.to_string().contains("document 3"),
        "{e}"
    );
    assert!(!dir.exists(), "nothing may be written for bad input");
    let mut dup = docs(10);
    dup[5].key = dup[2].key.clone();
    let e = build_database(&dir, schema(), dup, &BuildOptions::default(), &|_| {}).unwrap_err();
    assert!(e.to_string().contains("duplicate key"), "{e}");
    build_database(&dir, schema(), docs(10), &BuildOptions::default(), &|_| {}).unwrap();
    let e =
        build_database(&dir, schema(), docs(10), &BuildOptions::default(), &|_| {}).unwrap_err();
    assert!(matches!(e, Error::AlreadyExists(_)), "{e}");
}
