//! fsync EIO at every sync call site and ENOSPC at every write of a workload of puts, flushes
//! and a compaction: the failing operation is never acknowledged, the handle turns read-only
//! (poisoned), and reopening after a power loss recovers exactly the acknowledged writes with
//! no partial segment in the manifest and no orphan files.
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

use strata::{Db, Document, Error, Metric, Options, Schema};
use strata_io::{FaultConfig, FaultFs, Fs};

mod common;

fn opts(fs: &FaultFs) -> Options {
    let shared: Arc<dyn Fs> = Arc::new(fs.clone());
    Options::default()
        .with_fs(shared)
        .with_wal_preallocate(false)
        .with_flush_threshold_bytes(usize::MAX)
        .with_compaction(false)
        .with_batch_bytes_max(4096)
        .with_wal_segment_bytes_max(8192)
}

/// The write that failed, if one did: its key and what it would have made of it (its WAL
/// record may have become durable although its fsync failed).
type InFlight = Option<(Vec<u8>, Option<Vec<u8>>)>;

/// Puts, two flushes, deletes, a third flush and a compaction; the model holds what was
/// acknowledged. Returns whether the workload ran to its end, and the failed write.
fn workload(db: &Db, model: &mut BTreeMap<Vec<u8>, Vec<u8>>) -> (bool, InFlight) {
    for round in 0..3u32 {
        for i in 0..25u32 {
            let k = format!("k{:02}", (i * 7 + round * 5) % 40);
            let v = format!("r{round}-{i}");
            match db.put(Document::new(k.clone(), v.clone()).with_vector(vec![i as f32, 0.0])) {
                Ok(()) => {
                    model.insert(k.into_bytes(), v.into_bytes());
                }
                Err(_) => return (false, Some((k.into_bytes(), Some(v.into_bytes())))),
            }
        }
        let k = format!("k{:02}", round * 3);
        if db.delete(k.as_bytes()).is_err() {
            return (false, Some((k.into_bytes(), None)));
        }
        model.remove(k.as_bytes());
        if db.flush().is_err() {
            return (false, None);
        }
    }
    (db.compact().is_ok(), None)
}

fn check_after(
    fs: &FaultFs,
    db: Db,
    dir: &Path,
    model: &BTreeMap<Vec<u8>, Vec<u8>>,
    in_flight: &InFlight,
    ctx: &str,
) {
    common::power_loss(fs, db, 0x5EED);
    let db = Db::open(dir, opts(fs)).unwrap_or_else(|e| panic!("{ctx}: reopen failed: {e}"));
    let got: BTreeMap<Vec<u8>, Vec<u8>> = db
        .scan(..)
        .unwrap()
        .iter()
        .map(|d| (d.key.clone(), d.value.clone()))
        .collect();
    // Sync::Always: every acknowledged write survives; the failed one may or may not (its
    // WAL record can be durable although its fsync reported EIO): both outcomes are allowed
    // for its key, nothing else may differ.
    let mut with_it = model.clone();
    if let Some((k, v)) = in_flight {
        match v {
            Some(v) => with_it.insert(k.clone(), v.clone()),
            None => with_it.remove(k),
        };
    }
    assert!(
        got == *model || got == with_it,
        "{ctx}: recovered state is neither the acknowledged one nor it plus the failed write"
    );
    common::assert_no_orphans(fs, dir, ctx);
}

/// Run the workload once per fault site `n = 1, 2, …` (`fault(n)` armed after create) until a
/// run finishes untouched; after each, the failed handle is checked and the store recovered.
/// Returns the number of sites.
fn every_site(what: &str, limit: u64, fault: impl Fn(u64) -> FaultConfig) -> usize {
    let dir = Path::new("/db");
    let mut sites = 0;
    for n in 1..limit {
        let fs = FaultFs::new();
        let db = Db::create_with(dir, Schema::new(2, Metric::L2), opts(&fs)).unwrap();
        fs.set_faults(fault(n));
        let mut model = BTreeMap::new();
        let (finished, in_flight) = workload(&db, &mut model);
        if !finished {
            // The handle is poisoned: writes fail, reads work.
            let e = db.put(Document::new("after", "x")).unwrap_err();
            assert!(matches!(e, Error::Poisoned(_)), "{what} #{n}: {e}");
            db.scan(..).unwrap();
        }
        check_after(&fs, db, dir, &model, &in_flight, &format!("{what} #{n}"));
        sites += 1;
        if finished {
            break; // n is past the workload's last site
        }
    }
    sites
}

#[test]
fn fsync_eio_at_every_call_site() {
    let sites = every_site("EIO at sync", 400, |n| FaultConfig {
        fail_sync_at: Some(n),
        ..FaultConfig::default()
    });
    eprintln!("io_faults: EIO injected at {sites} sync call sites");
    assert!(sites > 20, "too few sync sites: {sites}");
}

#[test]
fn enospc_at_every_write() {
    let sites = every_site("ENOSPC at write", 2000, |n| FaultConfig {
        enospc_write_at: Some(n),
        ..FaultConfig::default()
    });
    eprintln!("io_faults: ENOSPC injected at {sites} writes");
    assert!(sites > 20, "too few write sites: {sites}");
}
