//! An in-process shard set against one database holding the same documents: routed writes
//! (puts, deletes, split batches), gets, and exact, filtered and boolean searches must give
//! the same answers; every key sits in its owner; read-only sets refuse writes.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "test code: a failed assumption should abort the test loudly"
)]

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use strata::shards::{shard_of, Shard, ShardSet, ShardedDb};
use strata::{Db, Document, Filter, Metric, Query, Schema, WriteBatch};

fn schema() -> Schema {
    Schema::new(4, Metric::L2).with_attr("ts")
}

fn doc(rng: &mut StdRng, i: u32) -> Document {
    Document::new(format!("d{i:05}"), format!("v{i}"))
        .with_vector((0..4).map(|_| rng.gen_range(-3..=3) as f32).collect())
        .with_term(if i.is_multiple_of(3) {
            "three"
        } else {
            "other"
        })
        .with_attr("ts", i64::from(i))
}

#[test]
fn a_shard_set_answers_like_one_database() {
    let tmp = tempfile::tempdir().unwrap();
    let set_dir = tmp.path().join("set");
    std::fs::create_dir(&set_dir).unwrap();
    let n = 3;
    let set = ShardSet {
        schema: schema(),
        shards: (0..n)
            .map(|i| {
                let path = format!("shard-{i:04}");
                drop(Db::create(set_dir.join(&path), schema()).unwrap());
                Shard {
                    build_id: Shard::new_build_id(&path),
                    path,
                    documents: 0,
                }
            })
            .collect(),
    };
    set.write(&set_dir).unwrap();
    let one = Db::create(tmp.path().join("one"), schema()).unwrap();
    let sharded = ShardedDb::open(&set_dir, false).unwrap();
    let mut rng = StdRng::seed_from_u64(7);
    for i in 0..300 {
        let d = doc(&mut rng, i);
        one.put(d.clone()).unwrap();
        sharded.put(d).unwrap();
    }
    let mut batch = WriteBatch::new();
    for i in (0..300).step_by(7) {
        batch.delete(format!("d{i:05}"));
    }
    for i in 300..320 {
        batch.put(doc(&mut rng, i));
    }
    one.write(batch.clone()).unwrap();
    sharded.write(batch).unwrap();
    one.delete(b"d00001").unwrap();
    sharded.delete(b"d00001").unwrap();
    for i in 0..3 {
        sharded.shard(i).unwrap().flush().unwrap();
    }
    assert_eq!(
        sharded.get(b"d00002").unwrap().map(|d| d.value.clone()),
        Some(b"v2".to_vec())
    );
    assert!(sharded.get(b"d00007").unwrap().is_none());
    for _ in 0..30 {
        let v: Vec<f32> = (0..4).map(|_| rng.gen_range(-3.0..3.0)).collect();
        for f in [None, Some("three"), Some("(and other (range ts 50 *))")] {
            let mut q = Query::knn(v.clone(), 12).exact();
            q.filter = f.map(|f| Filter::parse(f).unwrap());
            let key_dist = |h: Vec<strata::Hit>| {
                h.into_iter()
                    .map(|h| (h.key, h.distance))
                    .collect::<Vec<_>>()
            };
            assert_eq!(
                key_dist(sharded.search(&q).unwrap()),
                key_dist(one.search(&q).unwrap())
            );
        }
    }
    let b = Query::boolean(Filter::term("three"), 1000);
    let keys = |h: Vec<strata::Hit>| h.into_iter().map(|h| h.key).collect::<Vec<_>>();
    assert_eq!(
        keys(sharded.search(&b).unwrap()),
        keys(one.search(&b).unwrap())
    );
    // Every key in its owner, and the set verifies.
    for i in 0..n {
        for k in sharded.shard(i).unwrap().range(..).keys() {
            assert_eq!(shard_of(&k.unwrap(), n as u32).unwrap() as usize, i);
        }
    }
    drop(sharded);
    let report = ShardSet::read(&set_dir).unwrap().verify(&set_dir).unwrap();
    assert_eq!(report.documents.iter().sum::<u64>(), 320 - 43 - 1);
    // Read-only: reads work, writes are refused naming the shard.
    let ro = ShardedDb::open(&set_dir, true).unwrap();
    assert!(ro.get(b"d00003").unwrap().is_some());
    let e = ro.put(Document::new("x", "")).unwrap_err();
    assert!(matches!(e, strata::Error::ShardFailed { .. }), "{e}");
    assert!(e.to_string().contains("read-only"), "{e}");
    assert!((ro.shard_recall(0.95) - (1.0 - 0.05 / 3.0)).abs() < 1e-12);
}
