//! Compaction: merged segments hold exactly the live documents, snapshots taken before a
//! compaction keep reading the old files, a crash at any file operation of a compaction leaves
//! the old or the new state (never a mix) and no orphans after reopen, ANN recall survives the
//! merge, and the background policy bounds the segment count.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "test code: a failed assumption should abort the test loudly"
)]

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use strata::{AnnOptions, Db, Document, Metric, Options, Query, Schema, SyncMode, SEGMENTS_DIR};
use strata_io::{FaultConfig, FaultFs, Fs};

mod common;

fn state(db: &Db) -> BTreeMap<Vec<u8>, Vec<u8>> {
    db.scan(..)
        .unwrap()
        .iter()
        .map(|d| (d.key.clone(), d.value.clone()))
        .collect()
}

/// Three flushed generations with overwrites and deletes across them.
fn load(db: &Db, model: &mut BTreeMap<Vec<u8>, Vec<u8>>) {
    for round in 0..3u32 {
        for i in 0..40u32 {
            let k = format!("k{:02}", (i * 7 + round * 3) % 50);
            let v = format!("r{round}-{i}");
            db.put(Document::new(k.clone(), v.clone()).with_vector(vec![i as f32, round as f32]))
                .unwrap();
            model.insert(k.into_bytes(), v.into_bytes());
        }
        for d in 0..4u32 {
            let k = format!("k{:02}", round * 11 + d);
            db.delete(k.as_bytes()).unwrap();
            model.remove(k.as_bytes());
        }
        db.flush().unwrap();
    }
}

fn manual() -> Options {
    Options::default()
        .with_compaction(false)
        .with_ann_at_flush(true)
        .with_flush_threshold_bytes(usize::MAX)
        .with_wal_preallocate(false)
}

#[test]
fn compaction_keeps_exactly_the_live_documents_and_old_snapshots_keep_reading() {
    let tmp = tempfile::tempdir().unwrap();
    let db = Db::create_with(tmp.path(), Schema::new(2, Metric::L2), manual()).unwrap();
    let mut model = BTreeMap::new();
    load(&db, &mut model);
    assert!(db.stats().segments >= 2, "{:?}", db.stats());
    let snap = db.snapshot();
    let before: Vec<Vec<u8>> = snap
        .scan(..)
        .unwrap()
        .iter()
        .map(|d| d.key.clone())
        .collect();
    let seg_files = |p: &Path| -> HashSet<String> {
        std::fs::read_dir(p.join(SEGMENTS_DIR))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    };
    let old_files = seg_files(tmp.path());
    assert!(db.compact().unwrap());
    let st = db.stats();
    assert_eq!(st.segments, 1);
    assert_eq!(st.compactions, 1);
    assert!(st.compaction_bytes_written > 0);
    assert_eq!(state(&db), model);
    // The inputs' segment files stay while the snapshot holds them (their bitmaps, read into
    // memory, are gone)...
    let new_files = seg_files(tmp.path());
    let old_segs: HashSet<String> = old_files
        .iter()
        .filter(|n| n.ends_with(".seg"))
        .cloned()
        .collect();
    assert!(!old_segs.is_empty());
    assert!(
        old_segs.is_subset(&new_files),
        "{old_files:?} / {new_files:?}"
    );
    assert!(new_files
        .iter()
        .all(|n| !n.ends_with(".del") || !old_files.contains(n)));
    // ...and the snapshot taken before still reads them.
    let again: Vec<Vec<u8>> = snap
        .scan(..)
        .unwrap()
        .iter()
        .map(|d| d.key.clone())
        .collect();
    assert_eq!(before, again);
    for k in &before {
        assert!(snap.get(k).unwrap().is_some());
    }
    // Nothing to do the second time; after a reopen the state is the same.
    assert!(!db.compact().unwrap());
    // The last holder gone, the files go.
    drop(snap);
    let after = seg_files(tmp.path());
    assert!(old_files.is_disjoint(&after), "{old_files:?} / {after:?}");
    drop(db);
    let db = Db::open(tmp.path(), manual()).unwrap();
    assert_eq!(state(&db), model);
    let hits = db
        .search(
            &Query::knn(vec![3.0, 1.0], 5)
                .with_filter_str("(not k00)")
                .unwrap(),
        )
        .unwrap();
    assert_eq!(hits.len(), 5);
}

fn fault_opts(fs: &FaultFs) -> Options {
    let shared: Arc<dyn Fs> = Arc::new(fs.clone());
    manual().with_fs(shared)
}

#[test]
fn crash_at_every_step_of_a_compaction() {
    let dir = Path::new("/db");
    let mut points = 0;
    for crash_at in 0..300u64 {
        let fs = FaultFs::new();
        let db = Db::create_with(dir, Schema::new(2, Metric::L2), fault_opts(&fs)).unwrap();
        let mut model = BTreeMap::new();
        load(&db, &mut model);
        let before = db.stats().segments;
        assert!(before >= 2);
        fs.set_faults(FaultConfig {
            crash_after_ops: Some(crash_at),
            ..FaultConfig::default()
        });
        let done = db.compact().is_ok();
        common::power_loss(&fs, db, crash_at.wrapping_mul(0x9E37_79B9));
        let db = Db::open(dir, fault_opts(&fs))
            .unwrap_or_else(|e| panic!("crash at op {crash_at}: {e}"));
        assert_eq!(state(&db), model, "crash at op {crash_at}");
        let m = common::assert_no_orphans(&fs, dir, &format!("crash at op {crash_at}"))
            .unwrap_or_else(|| panic!("crash at op {crash_at}: no manifest"));
        assert!(
            m.segments.len() == 1 || m.segments.len() == before,
            "crash at op {crash_at}: a mix of old and new: {:?}",
            m.segments
        );
        points += 1;
        if done {
            break;
        }
    }
    eprintln!("compaction_crash: {points} crash points checked");
    assert!(points > 5, "too few crash points: {points}");
}

#[test]
fn ann_recall_after_compaction_is_not_worse_and_deletes_free_space() {
    // Both ways of building the merged graph: reusing the largest input's, and from scratch.
    let reuse = recall_across_compaction(true);
    let rebuild = recall_across_compaction(false);
    assert!(
        reuse.0 >= rebuild.0 - 0.01,
        "reuse {reuse:?} vs rebuild {rebuild:?}"
    );
    eprintln!(
        "merged graph: reuse {:.3} recall in {:.2} s, rebuild {:.3} in {:.2} s",
        reuse.0, reuse.1, rebuild.0, rebuild.1
    );
}

/// Key of document `i` of segment `seg` in the graph tests.
fn seg_key(seg: usize, i: usize) -> String {
    format!("d{seg}-{i:06}")
}

/// One flushed segment per entry of `sizes`, vectors drawn by `point`.
fn flush_segments(
    db: &Db,
    sizes: &[usize],
    rng: &mut StdRng,
    point: impl Fn(&mut StdRng) -> Vec<f32>,
) {
    for (seg, &n) in sizes.iter().enumerate() {
        let mut b = strata::WriteBatch::new();
        for i in 0..n {
            b.put(Document::new(seg_key(seg, i), "").with_vector(point(rng)));
            if b.len() == 1000 {
                db.write(std::mem::take(&mut b)).unwrap();
            }
        }
        db.write(b).unwrap();
        db.flush().unwrap();
    }
}

/// (recall after, seconds the compaction took)
fn recall_across_compaction(reuse: bool) -> (f64, f64) {
    const DIM: usize = 32;
    let tmp = tempfile::tempdir().unwrap();
    let opts = manual()
        .with_sync(SyncMode::Never)
        .with_ann(AnnOptions {
            min_vectors: 1000,
            memory_budget_bytes: 0,
            ..AnnOptions::default()
        })
        .with_compaction_reuse_graph(reuse);
    let db = Db::create_with(tmp.path(), Schema::new(DIM as u32, Metric::L2), opts).unwrap();
    let mut crng = StdRng::seed_from_u64(5);
    let centres: Vec<Vec<f32>> = (0..20)
        .map(|_| (0..DIM).map(|_| crng.gen_range(-10.0f32..10.0)).collect())
        .collect();
    let mut rng = StdRng::seed_from_u64(6);
    let point = |rng: &mut StdRng| -> Vec<f32> {
        let c = &centres[rng.gen_range(0..centres.len())];
        c.iter().map(|x| x + rng.gen_range(-2.0f32..2.0)).collect()
    };
    flush_segments(&db, &[3000, 3000, 3000], &mut rng, point);
    // Delete half of the first segment.
    for i in (0..3000).step_by(2) {
        db.delete(seg_key(0, i).as_bytes()).unwrap();
    }
    db.flush().unwrap();
    let queries: Vec<Vec<f32>> = (0..100).map(|_| point(&mut rng)).collect();
    let recall = |db: &Db| -> f64 {
        let mut hit = 0;
        for q in &queries {
            let want: HashSet<Vec<u8>> = db
                .search(&Query::knn(q.clone(), 10).exact())
                .unwrap()
                .into_iter()
                .map(|h| h.key)
                .collect();
            // Default search parameters. (`L_search` applies per segment: three segments
            // searched with L each do more work than their merge searched with L, so a small
            // L would measure that, not the merged graph.)
            // The graphs are what the merge rebuilds: forced, so the planner's partition
            // plan does not stand in for them.
            let (got, st) = db
                .search_with_stats(&Query::knn(q.clone(), 10).with_plan(strata::PlanHint::Graph))
                .unwrap();
            assert!(st.graph_segments >= 1);
            hit += got.iter().filter(|h| want.contains(&h.key)).count();
        }
        hit as f64 / 1000.0
    };
    let before = recall(&db);
    let bytes_before = db.stats().live_bytes;
    assert!(db.compact().unwrap());
    let st = db.stats();
    assert_eq!((st.segments, st.ann_segments), (1, 1));
    let after = recall(&db);
    eprintln!("recall before {before:.3}, after {after:.3}");
    assert!(after >= before - 0.01, "recall {before} -> {after}");
    assert!(
        st.live_bytes < bytes_before,
        "space not reclaimed: {bytes_before} -> {}",
        st.live_bytes
    );
    assert_eq!(db.scan(..).unwrap().len(), 7500);
    (after, st.compaction_seconds)
}

#[test]
fn background_policy_bounds_the_segment_count() {
    let tmp = tempfile::tempdir().unwrap();
    let opts = manual().with_compaction(true).with_segments_max(4);
    let db = Db::create_with(tmp.path(), Schema::new(2, Metric::L2), opts).unwrap();
    let mut model = BTreeMap::new();
    for round in 0..12u32 {
        for i in 0..20u32 {
            let k = format!("k{round:02}-{i:02}");
            db.put(Document::new(k.clone(), "v").with_vector(vec![i as f32, 0.0]))
                .unwrap();
            model.insert(k.into_bytes(), b"v".to_vec());
        }
        db.flush().unwrap();
        // The flusher compacts right after the flush `flush()` waited for: give it a moment
        // (a loaded machine showed the race).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while db.stats().segments > 4 && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(db.stats().segments <= 4, "round {round}: {:?}", db.stats());
    }
    let st = db.stats();
    assert!(st.compactions > 0);
    assert_eq!(state(&db), model);
}

/// Measurement (run with `--ignored --nocapture`, release): one large segment plus a small
/// one, merged by reusing the large graph vs building from scratch.
#[test]
#[ignore]
fn measure_graph_reuse_vs_rebuild() {
    const DIM: usize = 64;
    let mut results = Vec::new();
    for reuse in [true, false] {
        let tmp = tempfile::tempdir().unwrap();
        let opts = manual()
            .with_sync(SyncMode::Never)
            .with_ann(AnnOptions {
                min_vectors: 1000,
                ..AnnOptions::default()
            })
            .with_compaction_reuse_graph(reuse);
        let db = Db::create_with(tmp.path(), Schema::new(DIM as u32, Metric::L2), opts).unwrap();
        let mut rng = StdRng::seed_from_u64(1);
        let centres: Vec<Vec<f32>> = (0..100)
            .map(|_| (0..DIM).map(|_| rng.gen_range(-10.0f32..10.0)).collect())
            .collect();
        let point = |rng: &mut StdRng| -> Vec<f32> {
            let c = &centres[rng.gen_range(0..centres.len())];
            (0..DIM)
                .map(|j| c[j] + rng.gen_range(-1.0f32..1.0) * rng.gen_range(0.0f32..1.0))
                .collect()
        };
        flush_segments(&db, &[100_000, 10_000], &mut rng, point);
        for i in (0..100_000).step_by(10) {
            db.delete(seg_key(0, i).as_bytes()).unwrap();
        }
        db.flush().unwrap();
        let queries: Vec<Vec<f32>> = (0..200).map(|_| point(&mut rng)).collect();
        db.compact().unwrap();
        let st = db.stats();
        let mut hit = 0;
        for q in &queries {
            let want: HashSet<Vec<u8>> = db
                .search(&Query::knn(q.clone(), 10).exact())
                .unwrap()
                .into_iter()
                .map(|h| h.key)
                .collect();
            let got = db
                .search(&Query::knn(q.clone(), 10).with_search_list(64))
                .unwrap();
            hit += got.iter().filter(|h| want.contains(&h.key)).count();
        }
        let recall = hit as f64 / 2000.0;
        eprintln!(
            "reuse={reuse}: compaction {:.2} s, recall@10 (L=64) {recall:.4}",
            st.compaction_seconds
        );
        results.push((recall, st.compaction_seconds));
    }
    assert!(
        results[0].0 >= results[1].0 - 0.01,
        "reuse lost recall: {results:?}"
    );
}

/// A compaction no longer holds flushes back: while one merges (and builds its graph),
/// writes overwrite and delete documents of its inputs and flushes install them. What the
/// flushes killed in the inputs must die in the merged output too (else an overwritten or
/// deleted document comes back), and nothing the writes added may be lost — checked against a
/// model after every round, after `settle` and after a reopen.
#[test]
fn writes_and_flushes_during_a_compaction_are_not_lost_or_resurrected() {
    let tmp = tempfile::tempdir().unwrap();
    let opts = manual().with_ann(AnnOptions {
        min_vectors: 16,
        ..AnnOptions::default()
    });
    let dim = 16usize;
    let db = Db::create_with(tmp.path(), Schema::new(dim as u32, Metric::L2), opts).unwrap();
    let mut rng = StdRng::seed_from_u64(7);
    let mut model: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
    let vector = |rng: &mut StdRng| (0..dim).map(|_| rng.gen::<f32>()).collect::<Vec<_>>();
    for s in 0..3 {
        for i in 0..3000 {
            let k = format!("k{:05}", i * 3 + s);
            db.put(Document::new(k.clone(), "v0").with_vector(vector(&mut rng)))
                .unwrap();
            model.insert(k.into_bytes(), b"v0".to_vec());
        }
        db.flush().unwrap();
    }
    let mut overlapped = 0;
    for round in 1..=4u32 {
        let merging = {
            let db = db.clone();
            std::thread::spawn(move || db.compact().unwrap())
        };
        // Overwrites, deletes and new keys, flushed in small generations while it merges.
        let mut flushes = 0;
        while !merging.is_finished() || flushes < 3 {
            for _ in 0..50 {
                let k = format!("k{:05}", rng.gen_range(0..12_000));
                if rng.gen_bool(0.3) {
                    db.delete(k.as_bytes()).unwrap();
                    model.remove(k.as_bytes());
                } else {
                    let v = format!("v{round}-{flushes}");
                    db.put(Document::new(k.clone(), v.clone()).with_vector(vector(&mut rng)))
                        .unwrap();
                    model.insert(k.into_bytes(), v.into_bytes());
                }
            }
            db.flush().unwrap();
            flushes += 1;
            if !merging.is_finished() {
                overlapped += 1;
            }
        }
        merging.join().unwrap();
        assert_eq!(state(&db), model, "round {round}");
        for (k, v) in model.iter().take(200) {
            assert_eq!(db.get(k).unwrap().map(|d| d.value.clone()), Some(v.clone()));
        }
    }
    // The test is about overlap: at least some flushes ran during a merge.
    assert!(overlapped > 0, "no flush overlapped a compaction");
    db.settle().unwrap();
    db.verify().unwrap();
    assert_eq!(state(&db), model);
    let hits = db
        .search(&Query::knn(vec![0.5; dim], 50).with_docs())
        .unwrap();
    for h in &hits {
        assert!(model.contains_key(&h.key), "search returned a dead key");
    }
    drop(db);
    let db = Db::open(tmp.path(), manual()).unwrap();
    db.verify().unwrap();
    assert_eq!(state(&db), model);
}
