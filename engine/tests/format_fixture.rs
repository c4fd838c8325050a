//! Committed databases written by segment format versions 1 and 2 (`tests/fixtures/v1-db/`,
//! `v2-db/`: SCHEMA, a manifest, two segments — one with a deletion bitmap — and a WAL holding
//! one unflushed batch) must keep opening with the same content. They exercise every decoder of
//! `docs/format.md` (v2: vectors only in the vectors section, flagged in document blocks);
//! `tests/fixtures/v1-ann-db/` pins the ANN codes (version 1) and graph sections,
//! `tests/fixtures/v2-ann-db/` the codes version 2 with partitions.
//!
//! Regenerate the newest only with a format version bump:
//! `STRATA_REGEN_FIXTURES=1 cargo test -p strata --test format_fixture`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "test code: a failed assumption should abort the test loudly"
)]

use std::path::{Path, PathBuf};

use strata::manifest::{Manifest, SegmentMeta};
use strata::meta::decode_schema;
use strata::{Db, Document, Filter, Metric, Options, Query, Schema};

mod common;
use common::copy_dir;

fn fixture(version: u32) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/v{version}-db"))
}

fn opts() -> Options {
    Options::default().with_wal_preallocate(false)
}

fn schema() -> Schema {
    Schema::new(2, Metric::L2).with_attr("ts")
}

fn doc(k: &str, x: f32, t: &str, ts: i64) -> Document {
    Document::new(k, format!("value of {k}"))
        .with_vector(vec![x, 0.0])
        .with_term(t)
        .with_attr("ts", ts)
}

fn regenerate(dir: &Path) {
    let _ = std::fs::remove_dir_all(dir);
    // No background compaction: the fixture keeps a segment with a deletion bitmap.
    let o = opts().with_compaction(false);
    let db = Db::create_with(dir, schema(), o).unwrap();
    for (i, k) in ["a", "b", "c", "d"].iter().enumerate() {
        db.put(doc(k, i as f32, "lang:en", 100 + i as i64)).unwrap();
    }
    db.flush().unwrap(); // segment 1: a b c d
    db.delete(b"b").unwrap();
    db.put(doc("c", 9.0, "lang:de", 300)).unwrap();
    db.flush().unwrap(); // segment 2: c'; segment 1 bitmap: b, c dead
    db.put(Document::new("e", "only in the WAL")).unwrap();
    drop(db);
    std::fs::remove_file(dir.join(strata::LOCK_FILE)).unwrap();
}

#[test]
fn committed_v1_database_opens_with_the_same_content() {
    check_fixture(1);
}

#[test]
fn committed_v2_database_opens_with_the_same_content() {
    if std::env::var_os("STRATA_REGEN_FIXTURES").is_some() {
        regenerate(&fixture(2));
    }
    // Its segments really are v2 (footer version at 8 bytes past the footer's start).
    let seg = fixture(2)
        .join(strata::SEGMENTS_DIR)
        .join(strata::manifest::segment_name(1));
    let bytes = std::fs::read(seg).unwrap();
    let footer = &bytes[bytes.len() - 64..]; // the 64-byte footer of docs/format.md
    assert_eq!(u32::from_le_bytes(footer[8..12].try_into().unwrap()), 2);
    check_fixture(2);
}

fn check_fixture(version: u32) {
    let fixture = || fixture(version);
    assert_eq!(
        decode_schema(&std::fs::read(fixture().join("SCHEMA")).unwrap()).unwrap(),
        schema()
    );
    let manifest = std::fs::read_dir(fixture())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("MANIFEST-")
        })
        .unwrap();
    let m = Manifest::decode(&std::fs::read(manifest).unwrap()).unwrap();
    assert_eq!(
        m.segments,
        vec![
            SegmentMeta {
                id: 1,
                doc_count: 4,
                deletes_gen: 1,
                file_bytes: None
            },
            SegmentMeta {
                id: 2,
                doc_count: 1,
                deletes_gen: 0,
                file_bytes: None
            },
        ]
    );

    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    copy_dir(&fixture(), &dir);
    let db = Db::open(&dir, opts()).unwrap();
    let keys: Vec<Vec<u8>> = db.scan(..).unwrap().iter().map(|d| d.key.clone()).collect();
    assert_eq!(
        keys,
        vec![b"a".to_vec(), b"c".to_vec(), b"d".to_vec(), b"e".to_vec()]
    );
    assert_eq!(
        *db.get(b"c").unwrap().unwrap(),
        doc("c", 9.0, "lang:de", 300)
    );
    assert_eq!(db.get(b"e").unwrap().unwrap().value, b"only in the WAL");
    let hits = db
        .search(&Query::knn(vec![0.0, 0.0], 10).with_filter(Filter::term("lang:en")))
        .unwrap();
    let got: Vec<(Vec<u8>, Option<f32>)> = hits.into_iter().map(|h| (h.key, h.distance)).collect();
    assert_eq!(
        got,
        // Squared L2 (the reported convention): d lies 3 away.
        vec![(b"a".to_vec(), Some(0.0)), (b"d".to_vec(), Some(9.0))]
    );
    let q = Query::boolean(Filter::range("ts", 100, 300), 10);
    assert_eq!(db.search(&q).unwrap().len(), 3);
}

fn ann_fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v1-ann-db")
}

/// ANN codes version 2: the same points with 6 coarse partitions.
fn ann_v2_fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v2-ann-db")
}

fn ann_opts() -> Options {
    Options::default()
        .with_wal_preallocate(false)
        .with_ann(strata::AnnOptions {
            min_vectors: 2,
            degree: 8,
            build_list: 16,
            ..strata::AnnOptions::default()
        })
}

/// 60 points on a jittered grid; one segment with the ANN codes and graph sections.
fn regenerate_ann(dir: &Path, opts: Options) {
    let _ = std::fs::remove_dir_all(dir);
    let db = Db::create_with(dir, Schema::new(2, Metric::L2), opts).unwrap();
    for i in 0..60 {
        let (x, y) = ((i % 8) as f32, (i / 8) as f32);
        let j = (i as f32 * 0.37).sin() * 0.3;
        db.put(Document::new(format!("p{i:02}"), "").with_vector(vec![x + j, y - j]))
            .unwrap();
    }
    db.flush().unwrap();
    drop(db);
    std::fs::remove_file(dir.join(strata::LOCK_FILE)).unwrap();
}

/// `q`'s 5 nearest with `plan` forced and a list of 60 (every node of the fixtures).
fn forced(db: &Db, q: [f32; 2], plan: strata::PlanHint) -> (Vec<strata::Hit>, strata::QueryStats) {
    db.search_with_stats(
        &Query::knn(q.to_vec(), 5)
            .with_search_list(60)
            .with_plan(plan),
    )
    .unwrap()
}

#[test]
fn committed_v1_ann_segment_answers_through_its_graph() {
    if std::env::var_os("STRATA_REGEN_ANN_FIXTURE").is_some() {
        regenerate_ann(&ann_fixture(), ann_opts());
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    copy_dir(&ann_fixture(), &dir);
    let db = Db::open(&dir, ann_opts()).unwrap();
    assert_eq!(db.stats().ann_segments, 1);
    for q in [[0.0f32, 0.0], [5.0, -3.0], [-8.0, 8.0]] {
        // A list as long as the graph: the search reaches every node, so it equals exact.
        let (got, st) = forced(&db, q, strata::PlanHint::Graph);
        assert_eq!(st.graph_segments, 1, "the graph answered");
        let want = db.search(&Query::knn(q.to_vec(), 5).exact()).unwrap();
        assert_eq!(got, want, "query {q:?}");
        // A version-1 segment has no partitions: a forced partition plan falls back.
        let (_, st) = forced(&db, q, strata::PlanHint::Partition);
        assert_ne!(st.explain[1].plan, strata::Plan::Partition);
    }
}

fn ann_v2_opts() -> Options {
    let mut o = ann_opts();
    o.ann.partitions = Some(6);
    o
}

#[test]
fn committed_v2_ann_segment_answers_through_its_graph_and_partitions() {
    // Regenerate only with an ANN codes version bump (the v1 fixture stays as written).
    if std::env::var_os("STRATA_REGEN_ANN_V2_FIXTURE").is_some() {
        regenerate_ann(&ann_v2_fixture(), ann_v2_opts());
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    copy_dir(&ann_v2_fixture(), &dir);
    let db = Db::open(&dir, ann_v2_opts()).unwrap();
    assert_eq!(db.stats().ann_segments, 1);
    for q in [[0.0f32, 0.0], [5.0, -3.0], [-8.0, 8.0], [3.5, 3.5]] {
        let want = db.search(&Query::knn(q.to_vec(), 5).exact()).unwrap();
        let (got, st) = forced(&db, q, strata::PlanHint::Graph);
        assert_eq!(st.graph_segments, 1, "the graph answered");
        assert_eq!(got, want, "graph, query {q:?}");
        // L = 60: the walk must score 960 nodes, so it walks all 6 lists (every node).
        let (got, st) = forced(&db, q, strata::PlanHint::Partition);
        let e = &st.explain[1];
        assert_eq!(
            (e.plan, e.lists_probed, e.members_scanned),
            (strata::Plan::Partition, 6, 60)
        );
        assert_eq!(got, want, "partitions, query {q:?}");
    }
}
