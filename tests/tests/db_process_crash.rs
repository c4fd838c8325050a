//! A real process crash of the store: a child applies 4-document batches with `SyncMode::Always`
//! from several threads while memtables are flushed to segments; we SIGKILL it at random
//! moments (some during open, recovery or a flush) and reopen. Every acknowledged batch must be
//! present in full; no batch may be half-applied; overwrites never go back in time.
//!
//! Iterations: 30 by default, `STRATA_DB_KILL_ITERS=N` for more; replay with `STRATA_SEED=N`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "test code: a failed assumption should abort the test loudly"
)]

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use rand::SeedableRng;
use strata::{Db, Filter, Query};
use strata_tests::{db_crash_options, env_u64, kill_delay, run_and_kill, seed};

#[test]
fn sigkill_keeps_every_acknowledged_batch_whole() {
    let iters = env_u64("STRATA_DB_KILL_ITERS", 30);
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed("db_process_crash"));
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    let mut acked: Vec<u64> = Vec::new();
    let mut last_acked_per_thread: HashMap<u64, u64> = HashMap::new();
    let mut compactions_seen = false;

    for run in 1..=iters {
        let delay = kill_delay(
            &mut rng,
            Duration::from_millis(3),
            Duration::from_millis(80),
        );
        let lines = run_and_kill(
            env!("CARGO_BIN_EXE_db_crash_child"),
            &[dir.to_str().unwrap(), "4", &run.to_string()],
            delay,
        )
        .unwrap();
        for line in lines {
            if let Some(id) = line
                .strip_prefix("ack ")
                .and_then(|s| s.parse::<u64>().ok())
            {
                acked.push(id);
                let e = last_acked_per_thread.entry((id >> 24) & 0xff).or_insert(0);
                *e = (*e).max(id);
            }
        }
        if !dir.join(strata::meta::SCHEMA_FILE).exists() {
            continue; // killed before create finished: nothing was ever acknowledged
        }
        let db = Db::open(&dir, db_crash_options())
            .unwrap_or_else(|e| panic!("run {run}: reopen failed: {e}"));
        // Group what is present by batch.
        let mut present: BTreeMap<u64, usize> = BTreeMap::new();
        for d in db.scan_prefix(b"b").unwrap() {
            let id: u64 = std::str::from_utf8(&d.value).unwrap().parse().unwrap();
            *present.entry(id).or_default() += 1;
        }
        for (id, n) in &present {
            assert_eq!(
                *n, 3,
                "run {run}: batch {id} is half-applied ({n} of 3 documents)"
            );
        }
        for id in &acked {
            assert_eq!(
                present.get(id),
                Some(&3),
                "run {run}: acknowledged batch {id} lost"
            );
        }
        // Postings and columns agree with the documents (whatever segment they live in).
        if let Some(id) = acked.last() {
            let q = Query::boolean(Filter::term(format!("batch:{id}")), 10);
            assert_eq!(
                db.search(&q).unwrap().len(),
                3,
                "run {run}: postings of batch {id}"
            );
            let q = Query::boolean(Filter::range("id", *id as i64, *id as i64), 10);
            assert_eq!(
                db.search(&q).unwrap().len(),
                3,
                "run {run}: attrs of batch {id}"
            );
        }
        // thread-T is overwritten by every batch of thread T (ids grow across runs): it never
        // goes back behind the newest acknowledged one.
        for (t, newest) in &last_acked_per_thread {
            let d = db.get(format!("thread-{t}").as_bytes()).unwrap().unwrap();
            let v: u64 = std::str::from_utf8(&d.value).unwrap().parse().unwrap();
            assert!(
                v >= *newest,
                "run {run}: thread-{t} went back in time: {v} < {newest}"
            );
        }
        drop(db);
        // After the open, only files the newest manifest names are left (kills land inside
        // flushes and compactions too: the crash options allow 3 segments).
        let manifests: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("MANIFEST-"))
            .collect();
        assert!(manifests.len() <= 1, "run {run}: {manifests:?}");
        if let Some(m) = manifests.first() {
            let m =
                strata::manifest::Manifest::decode(&std::fs::read(dir.join(m)).unwrap()).unwrap();
            compactions_seen |= m.segments.iter().any(|s| s.id > 1) && m.segments.len() <= 4;
            let keep = m.file_names();
            for e in std::fs::read_dir(dir.join(strata::SEGMENTS_DIR)).unwrap() {
                let n = e.unwrap().file_name().to_string_lossy().into_owned();
                assert!(keep.contains(&n), "run {run}: orphan {n} survived the open");
            }
        }
    }
    eprintln!(
        "db_process_crash: {iters} kills, {} acknowledged batches verified, compactions {}",
        acked.len(),
        if compactions_seen { "seen" } else { "not seen" }
    );
    assert!(!acked.is_empty(), "the child never acknowledged anything");
}
