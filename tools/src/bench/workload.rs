//! The workloads the KV benchmarks share between Strata and its peer (RocksDB): the
//! document shape, its keys, the multi-writer driver, and the measured points. The peer and
//! the benchmarks both build on this module, so neither depends on the other's internals.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use strata::{Document, Metric, Schema};

use super::percentile;
use crate::CliResult;

/// One measured point.
#[derive(Debug, Clone, Serialize)]
pub struct Point {
    pub system: String,
    pub threads: usize,
    pub records_per_s: f64,
    pub fsyncs_per_s: f64,
    pub p50_us: u64,
    pub p99_us: u64,
}

/// Run `threads` workers calling `op(thread, i)` until the deadline; returns
/// (records, elapsed, sorted latencies in µs).
pub fn drive<F>(threads: usize, seconds: f64, op: F) -> CliResult<(u64, f64, Vec<u64>)>
where
    F: Fn(usize, u64) -> CliResult + Send + Sync + 'static,
{
    let op = Arc::new(op);
    let stop = Arc::new(AtomicBool::new(false));
    let t0 = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (op, stop) = (op.clone(), stop.clone());
            std::thread::spawn(move || -> CliResult<Vec<u64>> {
                let mut lat = Vec::new();
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let s = Instant::now();
                    op(t, i)?;
                    lat.push(s.elapsed().as_micros() as u64);
                    i += 1;
                }
                Ok(lat)
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs_f64(seconds));
    stop.store(true, Ordering::Relaxed);
    let mut lat = Vec::new();
    for h in handles {
        lat.extend(h.join().map_err(|_| "worker panicked")??);
    }
    let elapsed = t0.elapsed().as_secs_f64();
    lat.sort_unstable();
    Ok((lat.len() as u64, elapsed, lat))
}

pub const DIM: usize = 128;

pub fn schema() -> Schema {
    Schema::new(DIM as u32, Metric::L2)
        .with_attr("ts")
        .with_attr("likes")
}

pub fn key(i: u64) -> Vec<u8> {
    format!("doc-{i:012}").into_bytes()
}

/// A document of the shape: 128-d vector, 5 terms, 2 attributes, 100-byte value.
pub fn doc(i: u64) -> Document {
    let mut x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let vector = (0..DIM)
        .map(|_| (next() % 2000) as f32 / 1000.0 - 1.0)
        .collect();
    Document::new(key(i), vec![b'v'; 100])
        .with_vector(vector)
        .with_term(format!("lang:{}", next() % 8))
        .with_term(format!("author:{}", next() % 10_000))
        .with_term(format!("topic:{}", next() % 100))
        .with_term(format!("friend-of:{}", next() % 10_000))
        .with_term(if next() % 20 == 0 { "spam" } else { "ham" })
        .with_attr("ts", 1_700_000_000 + (next() % 1_000_000) as i64)
        .with_attr("likes", (next() % 1000) as i64)
}

#[derive(Debug, Clone, Serialize)]
pub struct IngestPoint {
    pub system: String,
    pub sync: String,
    pub threads: usize,
    pub docs_per_s: f64,
    pub p50_us: u64,
    pub p99_us: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct GetPoint {
    pub system: String,
    pub docs: u64,
    pub gets_per_s: f64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub load_s: f64,
}

/// Random-key gets on one thread; returns (gets/s, p50, p99).
pub fn measure_gets(
    n_docs: u64,
    gets: u64,
    mut get: impl FnMut(&[u8]) -> CliResult<bool>,
) -> CliResult<(f64, u64, u64)> {
    let mut x: u64 = 0x1234_5678;
    let mut lat = Vec::with_capacity(gets as usize);
    // Warm-up pass over a sample, then the measured pass.
    for pass in 0..2 {
        let t0 = Instant::now();
        lat.clear();
        for _ in 0..gets {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let k = key(x % n_docs);
            let s = Instant::now();
            if !get(&k)? {
                return Err(format!("key {} missing", String::from_utf8_lossy(&k)).into());
            }
            lat.push(s.elapsed().as_nanos() as u64);
        }
        if pass == 1 {
            let secs = t0.elapsed().as_secs_f64();
            lat.sort_unstable();
            return Ok((
                gets as f64 / secs,
                percentile(&lat, 50.0) / 1000,
                percentile(&lat, 99.0) / 1000,
            ));
        }
    }
    Err("unreachable".into())
}
