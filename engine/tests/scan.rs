//! Lazy range and prefix reads (`Scan`) against a model: random puts, deletes, flushes and
//! compactions, so a key's versions spread over the active memtable, frozen memtables and
//! several segments (older copies deleted in their bitmaps, tombstones shadowing them); then
//! every read — forwards, backwards, keys only, bounded by any mix of included, excluded and
//! open ends, prefixes — must equal the same read of a `BTreeMap`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "test code: a failed assumption should abort the test loudly"
)]

use std::collections::BTreeMap;
use std::ops::Bound;

use proptest::prelude::*;
use strata::{Db, Document, Filter, Metric, Options, Schema};

#[derive(Debug, Clone)]
enum Op {
    Put(u8, u8),
    Delete(u8),
    Flush,
    Compact,
}

fn key(k: u8) -> Vec<u8> {
    // Keys share prefixes ("k1", "k10", "k100") and include a 0xff byte, so prefix ends and
    // byte order both matter.
    match k % 7 {
        0 => vec![b'k', 0xff, k],
        _ => format!("k{k}").into_bytes(),
    }
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (any::<u8>(), any::<u8>()).prop_map(|(k, v)| Op::Put(k % 60, v)),
        3 => any::<u8>().prop_map(|k| Op::Delete(k % 60)),
        1 => Just(Op::Flush),
        1 => Just(Op::Compact),
    ]
}

fn bound() -> impl Strategy<Value = Bound<Vec<u8>>> {
    prop_oneof![
        Just(Bound::Unbounded),
        any::<u8>().prop_map(|k| Bound::Included(key(k % 64))),
        any::<u8>().prop_map(|k| Bound::Excluded(key(k % 64))),
    ]
}

fn empty(lo: &Bound<Vec<u8>>, hi: &Bound<Vec<u8>>) -> bool {
    use Bound::*;
    match (lo, hi) {
        (Included(l), Included(h)) => l > h,
        (Included(l), Excluded(h)) | (Excluded(l), Included(h)) | (Excluded(l), Excluded(h)) => {
            l >= h
        }
        _ => false,
    }
}

fn options() -> Options {
    Options::default()
        // Tiny memtables: writes freeze them often, so frozen ones are read beside the active.
        .with_flush_threshold_bytes(2_000)
        .with_segments_max(3)
}

fn apply(db: &Db, model: &mut BTreeMap<Vec<u8>, Vec<u8>>, ops: &[Op]) {
    for op in ops {
        match op {
            Op::Put(k, v) => {
                db.put(Document::new(key(*k), vec![*v; 1 + *v as usize % 40]))
                    .unwrap();
                model.insert(key(*k), vec![*v; 1 + *v as usize % 40]);
            }
            Op::Delete(k) => {
                db.delete(&key(*k)).unwrap();
                model.remove(&key(*k));
            }
            Op::Flush => db.flush().unwrap(),
            Op::Compact => {
                db.compact().unwrap();
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn scans_equal_the_model(
        ops in prop::collection::vec(op(), 1..160),
        ranges in prop::collection::vec((bound(), bound()), 8),
        prefixes in prop::collection::vec(prop_oneof![Just(vec![]), Just(b"k".to_vec()),
            Just(b"k1".to_vec()), Just(b"k5".to_vec()), Just(vec![b'k', 0xff]),
            Just(b"q".to_vec())], 3),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::create_with(dir.path(), Schema::new(2, Metric::L2), options()).unwrap();
        let mut model = BTreeMap::new();
        apply(&db, &mut model, &ops);
        let snap = db.snapshot();
        for (lo, hi) in &ranges {
            let want: Vec<(Vec<u8>, Vec<u8>)> = if empty(lo, hi) {
                Vec::new()
            } else {
                model.range((lo.clone(), hi.clone())).map(|(k, v)| (k.clone(), v.clone())).collect()
            };
            let got: Vec<(Vec<u8>, Vec<u8>)> = snap
                .range((lo.clone(), hi.clone()))
                .map(|d| d.map(|d| (d.key.clone(), d.value.clone())))
                .collect::<strata::Result<_>>()
                .unwrap();
            prop_assert_eq!(&got, &want, "range {:?}..{:?}", lo, hi);
            let mut back: Vec<Vec<u8>> = snap
                .range((lo.clone(), hi.clone()))
                .reverse()
                .keys()
                .collect::<strata::Result<_>>()
                .unwrap();
            back.reverse();
            let want_keys: Vec<Vec<u8>> = want.iter().map(|(k, _)| k.clone()).collect();
            prop_assert_eq!(back, want_keys, "reverse keys {:?}..{:?}", lo, hi);
        }
        for p in &prefixes {
            let want: Vec<Vec<u8>> = model.keys().filter(|k| k.starts_with(p)).cloned().collect();
            let got: Vec<Vec<u8>> = snap.prefix(p).keys().collect::<strata::Result<_>>().unwrap();
            prop_assert_eq!(&got, &want, "prefix {:?}", p);
            let mut back: Vec<Vec<u8>> = snap
                .prefix(p)
                .reverse()
                .map(|d| d.map(|d| d.key.clone()))
                .collect::<strata::Result<_>>()
                .unwrap();
            back.reverse();
            prop_assert_eq!(back, want, "reverse prefix {:?}", p);
        }
    }
}

/// A scan reads its snapshot: writes, flushes and compactions after it starts (or between
/// its steps) change nothing it yields; and a mandatory filter hides what it excludes.
#[test]
fn a_scan_reads_its_snapshot_while_the_database_changes() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::create_with(dir.path(), Schema::new(2, Metric::L2), options()).unwrap();
    for i in 0..500u32 {
        db.put(
            Document::new(format!("a{i:04}"), vec![1u8; 30]).with_term(if i % 3 == 0 {
                "three"
            } else {
                "other"
            }),
        )
        .unwrap();
    }
    let mut scan = db.prefix(b"a");
    let first: Vec<Vec<u8>> = scan
        .by_ref()
        .take(10)
        .map(|d| d.unwrap().key.clone())
        .collect();
    for i in 0..500u32 {
        if i % 2 == 0 {
            db.delete(format!("a{i:04}").as_bytes()).unwrap();
        } else {
            db.put(Document::new(format!("a{i:04}"), vec![2u8; 30]))
                .unwrap();
        }
    }
    db.put(Document::new("a0003x", "new")).unwrap();
    db.put(Document::new("b001", "").with_term("three"))
        .unwrap();
    db.put(Document::new("b002", "")).unwrap();
    db.flush().unwrap();
    db.compact().unwrap();
    db.put(Document::new("b003", "").with_term("three"))
        .unwrap();
    let rest: Vec<std::sync::Arc<Document>> = scan.map(|d| d.unwrap()).collect();
    assert_eq!(first.len() + rest.len(), 500);
    assert!(rest.iter().all(|d| d.value == vec![1u8; 30]));
    assert_eq!(rest.last().unwrap().key, b"a0499");
    // Now: 250 odd keys plus the new one; newest first backwards.
    let now: Vec<Vec<u8>> = db
        .prefix(b"a")
        .reverse()
        .keys()
        .map(|k| k.unwrap())
        .collect();
    assert_eq!(now.len(), 251);
    assert_eq!(now[0], b"a0499");
    assert_eq!(
        now[now.len() - 3..],
        [b"a0003x".to_vec(), b"a0003".to_vec(), b"a0001".to_vec()]
    );
    // A restricted snapshot's scans see only what its filter admits, keys-only included.
    let t = db.restricted_snapshot(Filter::term("three")).unwrap();
    let keys: Vec<Vec<u8>> = t.range(..).keys().map(|k| k.unwrap()).collect();
    // The rewritten odd keys carry no term; the term is on b001 (flushed) and b003 (memtable).
    assert_eq!(keys, [b"b001".to_vec(), b"b003".to_vec()]);
    // The reverse of an empty or inverted range is empty.
    assert_eq!(db.range(b"b".to_vec()..b"a".to_vec()).count(), 0);
}
