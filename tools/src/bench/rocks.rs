//! RocksDB peer (`--features rocksdb`): the same records through `DB::put` with
//! `WriteOptions::set_sync(true)`, the same thread counts, in the same run.

use std::path::Path;
use std::sync::Arc;

use super::wal::{drive, Point};
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
