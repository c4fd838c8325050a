//! RocksDB peer (`--features rocksdb`): the same records through `DB::put` with
//! `WriteOptions::set_sync(true)`, the same thread counts, in the same run.

use std::path::Path;
use std::sync::Arc;

use super::workload::{self, drive, Point};
use crate::CliResult;

/// Value of a ticker in RocksDB's statistics dump (`NAME COUNT : N`).
fn ticker(stats: &str, name: &str) -> Option<u64> {
    let line = stats.lines().find(|l| l.starts_with(name))?;
    line.rsplit(':').next()?.trim().parse().ok()
}

pub fn wal_point(
    dir: &Path,
    threads: usize,
    seconds: f64,
    record_bytes: usize,
) -> CliResult<Point> {
    let path = dir.join(format!("rocksdb-{threads}"));
    if path.exists() {
        std::fs::remove_dir_all(&path)?;
    }
    let mut opts = rocksdb::Options::default();
    opts.create_if_missing(true);
    opts.enable_statistics();
    let db = Arc::new(rocksdb::DB::open(&opts, &path)?);
    // 16-byte key + value = record_bytes, like the WAL's payload.
    let value = vec![0xA5u8; record_bytes.saturating_sub(16)];
    let d = db.clone();
    let (n, secs, lat) = drive(threads, seconds, move |t, i| {
        let mut wo = rocksdb::WriteOptions::default();
        wo.set_sync(true);
        let key = (((t as u128) << 64) | i as u128).to_be_bytes();
        d.put_opt(key, &value, &wo)?;
        Ok(())
    })?;
    let syncs = opts
        .get_statistics()
        .and_then(|s| ticker(&s, "rocksdb.wal.synced"))
        .unwrap_or(0);
    Ok(Point {
        system: "rocksdb".to_owned(),
        threads,
        records_per_s: n as f64 / secs,
        fsyncs_per_s: syncs as f64 / secs,
        p50_us: super::percentile(&lat, 50.0),
        p99_us: super::percentile(&lat, 99.0),
    })
}

fn open(path: &Path) -> CliResult<rocksdb::DB> {
    if path.exists() {
        std::fs::remove_dir_all(path)?;
    }
    let mut opts = rocksdb::Options::default();
    opts.create_if_missing(true);
    Ok(rocksdb::DB::open(&opts, path)?)
}

/// Same documents (encoded with Strata's document encoding) under the same keys.
pub fn ingest_point(
    dir: &Path,
    threads: usize,
    sync: (&str, strata::SyncMode),
    seconds: f64,
) -> CliResult<workload::IngestPoint> {
    let db = Arc::new(open(
        &dir.join(format!("rocksdb-ingest-{threads}-{}", sync.0)),
    )?);
    let schema = workload::schema();
    let always = sync.1 == strata::SyncMode::Always;
    // Batch(window): RocksDB has no timed background sync; the closest is unsynced writes plus
    // a periodic flush_wal(true) from a side thread every window.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let syncer = (!always).then(|| {
        let (db, stop) = (db.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                std::thread::sleep(std::time::Duration::from_millis(10));
                let _ = db.flush_wal(true);
            }
        })
    });
    let d = db.clone();
    let (n, secs, lat) = drive(threads, seconds, move |t, i| {
        let doc = workload::doc(((t as u64) << 40) | i);
        let value = strata::encode_document(&doc, &schema)?;
        let mut wo = rocksdb::WriteOptions::default();
        wo.set_sync(always);
        d.put_opt(&doc.key, value, &wo)?;
        Ok(())
    })?;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    if let Some(h) = syncer {
        let _ = h.join();
    }
    Ok(workload::IngestPoint {
        system: "rocksdb".into(),
        sync: sync.0.into(),
        threads,
        docs_per_s: n as f64 / secs,
        p50_us: super::percentile(&lat, 50.0),
        p99_us: super::percentile(&lat, 99.0),
    })
}

pub fn get_point(dir: &Path, docs: u64, gets: u64, reuse: bool) -> CliResult<workload::GetPoint> {
    let path = dir.join("rocksdb-get");
    let schema = workload::schema();
    let t0 = std::time::Instant::now();
    if !reuse {
        let db = open(&path)?;
        let mut i = 0;
        while i < docs {
            let mut b = rocksdb::WriteBatch::default();
            for j in i..(i + 1000).min(docs) {
                let doc = workload::doc(j);
                b.put(&doc.key, strata::encode_document(&doc, &schema)?);
            }
            db.write(b)?;
            i = (i + 1000).min(docs);
        }
        db.flush()?;
    }
    let load_s = if reuse {
        0.0
    } else {
        t0.elapsed().as_secs_f64()
    };
    let mut opts = rocksdb::Options::default();
    opts.create_if_missing(false);
    let db = rocksdb::DB::open(&opts, &path)?;
    let (gets_per_s, p50_us, p99_us) = workload::measure_gets(docs, gets, |k| {
        Ok(match db.get_pinned(k)? {
            // Decode like Strata does, so both return a document.
            Some(v) => strata::decode_document(&v, &schema).is_ok(),
            None => false,
        })
    })?;
    Ok(workload::GetPoint {
        system: "rocksdb".into(),
        docs,
        gets_per_s,
        p50_us,
        p99_us,
        load_s,
    })
}
