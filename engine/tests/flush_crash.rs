//! Crash at every file operation of a flush (segment write, bitmap writes, manifest, WAL
//! truncation, cleanup), with random power-loss images: reopening must give exactly the
//! acknowledged state, and no orphan files may survive the reopen.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "test code: a failed assumption should abort the test loudly"
)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use strata::{Db, Document, Metric, Options, Schema};
use strata_io::{FaultConfig, FaultFs, Fs};

mod common;

fn opts(fs: &FaultFs) -> Options {
    let shared: Arc<dyn Fs> = Arc::new(fs.clone());
    Options::default()
        .with_fs(shared)
        .with_wal_preallocate(false)
        .with_flush_threshold_bytes(usize::MAX)
        // flushes only when asked
        // Small WAL files, so the flush's WAL truncation has files to remove.
        .with_batch_bytes_max(4096)
        .with_wal_segment_bytes_max(4096 + 4096)
}

fn state(db: &Db) -> BTreeMap<Vec<u8>, Vec<u8>> {
    db.scan(..)
        .unwrap()
        .iter()
        .map(|d| (d.key.clone(), d.value.clone()))
        .collect()
}

#[test]
fn crash_at_every_step_of_a_flush() {
    let dir = Path::new("/db");
    let mut points = 0;
    for crash_at in 0..200u64 {
        let fs = FaultFs::new();
        let db = Db::create_with(dir, Schema::new(2, Metric::L2), opts(&fs)).unwrap();
        let mut model = BTreeMap::new();
        // Two flushed generations, then a third that overwrites and deletes across them.
        for round in 0..3u32 {
            // The last round spans several WAL files, so its flush removes some.
            for i in 0..(if round == 2 { 120u32 } else { 20 }) {
                let k = format!("k{:02}", (i * 7 + round * 3) % 30);
                let v = format!("r{round}-{i}");
                db.put(Document::new(k.clone(), v.clone()).with_vector(vec![i as f32, 1.0]))
                    .unwrap();
                model.insert(k.into_bytes(), v.into_bytes());
            }
            db.delete(format!("k{:02}", round * 5).as_bytes()).unwrap();
            model.remove(format!("k{:02}", round * 5).as_bytes());
            if round < 2 {
                db.flush().unwrap();
            }
        }
        // The last flush dies after `crash_at` file operations.
        fs.set_faults(FaultConfig {
            crash_after_ops: Some(crash_at),
            ..FaultConfig::default()
        });
        let flushed = db.flush().is_ok();
        common::power_loss(&fs, db, crash_at.wrapping_mul(0x9E37_79B9));
        let db = Db::open(dir, opts(&fs)).unwrap_or_else(|e| panic!("crash at op {crash_at}: {e}"));
        assert_eq!(state(&db), model, "crash at op {crash_at}");
        // No file the manifest does not name survives the open.
        common::assert_no_orphans(&fs, dir, &format!("crash at op {crash_at}"));
        points += 1;
        if flushed {
            break; // crash_at is past the last operation of the flush
        }
    }
    eprintln!("flush_crash: {points} crash points checked");
    assert!(points > 10, "the flush has too few crash points: {points}");
}
