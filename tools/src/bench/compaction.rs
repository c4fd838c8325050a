//! `strata bench compaction`: an update-heavy workload (puts over a smaller key space, a
//! fraction of them deletes) with background compaction on; reports write amplification
//! (segment bytes written by flushes + compactions over the bytes of the documents written),
//! space amplification at rest (live segment bytes over those of the same data fully
//! compacted), and k-NN query latency idle vs during a compaction.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use clap::Args;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use strata::{Db, Document, Metric, Options, Query, Schema, SyncMode, WriteBatch};

use super::{percentile, MachineNotes};
use crate::CliResult;

#[derive(Args)]
pub struct CompactionBenchArgs {
    /// Scratch directory (wiped).
    #[arg(long, default_value = "bench-out/compaction")]
    dir: PathBuf,
    /// Operations (puts and deletes).
    #[arg(long, default_value_t = 1_000_000)]
    ops: u64,
    /// Distinct keys.
    #[arg(long, default_value_t = 200_000)]
    keys: u64,
    /// Fraction of operations that are deletes.
    #[arg(long, default_value_t = 0.2)]
    deletes: f64,
    /// Vector dimension of the documents.
    #[arg(long, default_value_t = 32)]
    dim: usize,
    /// Write the results as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

fn vector(rng: &mut StdRng, dim: usize) -> Vec<f32> {
    (0..dim).map(|_| rng.gen_range(-1.0f32..1.0)).collect()
}

fn latencies(db: &Db, queries: &[Vec<f32>]) -> CliResult<Vec<u64>> {
    let mut lat = Vec::with_capacity(queries.len());
    for q in queries {
        let t = Instant::now();
        db.search(&Query::knn(q.clone(), 10))?;
        lat.push(t.elapsed().as_micros() as u64);
    }
    lat.sort_unstable();
    Ok(lat)
}

pub fn run(a: &CompactionBenchArgs) -> CliResult {
    let _ = std::fs::remove_dir_all(&a.dir);
    let opts = Options::default()
        .with_sync(SyncMode::Never)
        .with_flush_threshold_bytes(8 << 20);
    let db = Arc::new(Db::create_with(
        &a.dir,
        Schema::new(a.dim as u32, Metric::L2),
        opts,
    )?);
    let mut rng = StdRng::seed_from_u64(42);
    let t0 = Instant::now();
    let mut logical = 0u64;
    let mut batch = WriteBatch::new();
    for _ in 0..a.ops {
        let k = format!("key-{:09}", rng.gen_range(0..a.keys));
        if rng.gen_bool(a.deletes) {
            batch.delete(k.into_bytes());
        } else {
            let d = Document::new(k, vec![b'v'; 100]).with_vector(vector(&mut rng, a.dim));
            logical += (d.key.len() + d.value.len() + a.dim * 4) as u64;
            batch.put(d);
        }
        if batch.len() >= 1000 {
            db.write(std::mem::take(&mut batch))?;
        }
    }
    db.write(batch)?;
    db.settle()?; // the last flush and the compactions the policy then wants
    let load_s = t0.elapsed().as_secs_f64();
    let at_rest = db.stats();

    // Query latency idle, then while a full compaction runs in another thread.
    let queries: Vec<Vec<f32>> = (0..2000).map(|_| vector(&mut rng, a.dim)).collect();
    latencies(&db, queries.get(..200).unwrap_or_default())?; // warm-up
    let idle = latencies(&db, &queries)?;
    let running = Arc::new(AtomicBool::new(true));
    let worker = {
        let db = db.clone();
        let running = running.clone();
        std::thread::spawn(move || {
            let r = db.compact();
            running.store(false, Ordering::SeqCst);
            r
        })
    };
    let mut during = Vec::new();
    while running.load(Ordering::SeqCst) {
        for q in queries.iter().take(50) {
            let t = Instant::now();
            db.search(&Query::knn(q.clone(), 10))?;
            during.push(t.elapsed().as_micros() as u64);
        }
    }
    worker.join().map_err(|_| "compaction thread panicked")??;
    during.sort_unstable();
    let compacted = db.stats();

    let write_amp = (at_rest.flush_bytes_written + at_rest.compaction_bytes_written) as f64
        / logical.max(1) as f64;
    let space_amp = at_rest.live_bytes as f64 / compacted.live_bytes.max(1) as f64;
    println!(
        "update-heavy: {} ops over {} keys ({:.0} % deletes), dim {}, loaded in {load_s:.1} s",
        a.ops,
        a.keys,
        a.deletes * 100.0,
        a.dim
    );
    println!(
        "  at rest: {} segments, {:.1} MiB live, {} background compactions ({:.1} s), {} slowdowns, {} stalls",
        at_rest.segments,
        at_rest.live_bytes as f64 / f64::from(1u32 << 20),
        at_rest.compactions,
        at_rest.compaction_seconds,
        at_rest.write_slowdowns,
        at_rest.write_stalls
    );
    println!(
        "  write amplification {write_amp:.2} (segment bytes written / document bytes put); \
         space amplification at rest {space_amp:.2} (live bytes / fully compacted {:.1} MiB)",
        compacted.live_bytes as f64 / f64::from(1u32 << 20)
    );
    let (ip50, ip99) = (percentile(&idle, 50.0), percentile(&idle, 99.0));
    let (dp50, dp99) = (percentile(&during, 50.0), percentile(&during, 99.0));
    println!(
        "  k-NN latency idle p50 {ip50} µs p99 {ip99} µs; during compaction ({} queries) p50 {dp50} µs p99 {dp99} µs ({:.2}× idle p99)",
        during.len(),
        dp99 as f64 / ip99.max(1) as f64
    );
    let machine = MachineNotes::gather(&a.dir, Vec::new());
    println!("machine: {}", machine.line());
    if let Some(p) = &a.json {
        std::fs::write(
            p,
            serde_json::to_string_pretty(&serde_json::json!({
                "machine": machine, "ops": a.ops, "keys": a.keys, "deletes": a.deletes,
                "dim": a.dim, "load_seconds": load_s, "write_amplification": write_amp,
                "space_amplification": space_amp, "segments_at_rest": at_rest.segments,
                "background_compactions": at_rest.compactions,
                "idle_p50_us": ip50, "idle_p99_us": ip99,
                "during_p50_us": dp50, "during_p99_us": dp99,
                "during_queries": during.len(),
            }))?,
        )?;
    }
    Ok(())
}
