//! `strata bench store`: document ingest (1 and 16 writers, `Sync::Batch` and `Sync::Always`)
//! and warm point `get` latency on a loaded database, against RocksDB (`--features rocksdb`)
//! with the same keys, the same encoded documents as values, the same sync setting and threads.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use strata::{Db, Options, SyncMode, WriteBatch};

use super::workload::{doc, drive, measure_gets, schema, GetPoint, IngestPoint};
use super::{percentile, MachineNotes};
use crate::CliResult;

#[derive(Args)]
pub struct StoreBenchArgs {
    /// Scratch directory (on the disk under test); wiped per run.
    #[arg(long, default_value = "bench-out/store")]
    dir: PathBuf,
    /// Seconds per ingest point.
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
    /// Writer thread counts for ingest.
    #[arg(long, default_value = "1,16", value_delimiter = ',')]
    threads: Vec<usize>,
    /// Documents loaded for the get workload.
    #[arg(long, default_value_t = 1_000_000)]
    docs: u64,
    /// Point gets measured (random keys, one thread).
    #[arg(long, default_value_t = 200_000)]
    gets: u64,
    /// Write the results as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Skip the ingest points (measure gets only).
    #[arg(long)]
    no_ingest: bool,
    /// Keep the loaded get databases in `--dir` after the run (for `--reuse`).
    #[arg(long)]
    keep: bool,
    /// Open the get databases a previous `--keep` run loaded with the same `--docs` instead of
    /// loading them again (their load time is then reported as 0).
    #[arg(long)]
    reuse: bool,
}

/// Marker a kept directory's get databases were loaded with: `--docs`.
const LOADED: &str = "loaded-docs";

/// Whether `--reuse` may open the get databases in `dir` as loaded.
fn reusable(dir: &Path, args: &StoreBenchArgs) -> bool {
    args.reuse
        && std::fs::read_to_string(dir.join(LOADED))
            .is_ok_and(|s| s.trim() == args.docs.to_string())
}

#[derive(Debug, Serialize)]
struct Report {
    workload: &'static str,
    machine: MachineNotes,
    ingest: Vec<IngestPoint>,
    get: Vec<GetPoint>,
}

pub(super) fn fresh(dir: &Path) -> CliResult<PathBuf> {
    if dir.exists() {
        std::fs::remove_dir_all(dir)?;
    }
    std::fs::create_dir_all(dir)?;
    Ok(dir.to_owned())
}

pub fn sync_modes() -> [(&'static str, SyncMode); 2] {
    [
        ("batch(10ms)", SyncMode::Batch(Duration::from_millis(10))),
        ("always", SyncMode::Always),
    ]
}

fn ingest(
    dir: &Path,
    threads: usize,
    sync: (&str, SyncMode),
    seconds: f64,
) -> CliResult<IngestPoint> {
    let dir = fresh(&dir.join(format!("strata-ingest-{threads}-{}", sync.0)))?;
    let db = Db::create_with(&dir, schema(), Options::default().with_sync(sync.1))?;
    let d = db.clone();
    let (n, secs, lat) = drive(threads, seconds, move |t, i| {
        d.put(doc(((t as u64) << 40) | i))?;
        Ok(())
    })?;
    // Where a point's time went beyond the puts themselves: back-pressure (paced writes that
    // slept, stalls) shows as puts over 1 ms.
    let st = db.stats();
    let slow: Vec<u64> = lat.iter().copied().filter(|l| *l > 1000).collect();
    eprintln!(
        "  strata: {} flushes, {} paced writes slept, {} stalls; {} puts over 1 ms took {} of {} ms",
        st.flushes,
        st.write_slowdowns,
        st.write_stalls,
        slow.len(),
        slow.iter().sum::<u64>() / 1000,
        lat.iter().sum::<u64>() / 1000,
    );
    Ok(IngestPoint {
        system: "strata".into(),
        sync: sync.0.into(),
        threads,
        docs_per_s: n as f64 / secs,
        p50_us: percentile(&lat, 50.0),
        p99_us: percentile(&lat, 99.0),
    })
}

pub(super) fn bar(len: u64, what: &str) -> ProgressBar {
    ProgressBar::new(len).with_style(
        ProgressStyle::with_template(&format!("{what} {{bar:40}} {{pos}}/{{len}} ETA {{eta}}"))
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    )
}

fn get_point(dir: &Path, args: &StoreBenchArgs, reuse: bool) -> CliResult<GetPoint> {
    let dir = dir.join("strata-get");
    let t0 = Instant::now();
    if !reuse {
        fresh(&dir)?;
        let db = Db::create_with(
            &dir,
            schema(),
            Options::default()
                .with_sync(SyncMode::Never)
                // A bulk load with no concurrent queries: segment (graph) builds get every core.
                .with_maintenance_threads(
                    std::thread::available_parallelism().map_or(1, |n| n.get()),
                ),
        )?;
        let pb = bar(args.docs, "loading strata");
        let mut i = 0;
        while i < args.docs {
            let mut b = WriteBatch::new();
            for j in i..(i + 1000).min(args.docs) {
                b.put(doc(j));
            }
            db.write(b)?;
            i = (i + 1000).min(args.docs);
            pb.set_position(i);
        }
        // The load is done when its index is: every flushed segment has its graph (the
        // background worker builds them once writes pause) and the merge policy is at rest,
        // so the gets below measure a quiet database and `load s` includes the indexing.
        db.settle()?;
        db.sync()?;
        pb.finish_and_clear();
    }
    let load_s = if reuse {
        0.0
    } else {
        t0.elapsed().as_secs_f64()
    };
    let db = Db::open(&dir, Options::default())?;
    let (gets_per_s, p50_us, p99_us) =
        measure_gets(args.docs, args.gets, |k| Ok(db.get(k)?.is_some()))?;
    eprintln!("  strata: {} segments", db.stats().segments);
    Ok(GetPoint {
        system: "strata".into(),
        docs: args.docs,
        gets_per_s,
        p50_us,
        p99_us,
        load_s,
    })
}

pub fn run(args: &StoreBenchArgs) -> CliResult {
    let reuse = reusable(&args.dir, args);
    let dir = if reuse {
        args.dir.clone()
    } else {
        fresh(&args.dir)?
    };
    let mut peers = Vec::new();
    if cfg!(feature = "rocksdb") {
        peers.push("rocksdb crate 0.20.1 (Debian librocksdb 7.8.3)".to_owned());
    }
    let machine = MachineNotes::gather(&dir, peers);
    let mut ingest_points = Vec::new();
    for sync in sync_modes().into_iter().filter(|_| !args.no_ingest) {
        for &t in &args.threads {
            eprintln!("ingest: strata, {t} writers, sync {}", sync.0);
            ingest_points.push(ingest(&dir, t, sync, args.seconds)?);
            #[cfg(feature = "rocksdb")]
            {
                eprintln!("ingest: rocksdb, {t} writers, sync {}", sync.0);
                ingest_points.push(super::rocks::ingest_point(&dir, t, sync, args.seconds)?);
            }
        }
    }
    #[cfg_attr(not(feature = "rocksdb"), allow(unused_mut))]
    let mut gets = vec![get_point(&dir, args, reuse)?];
    #[cfg(feature = "rocksdb")]
    gets.push(super::rocks::get_point(&dir, args.docs, args.gets, reuse)?);
    if args.keep {
        std::fs::write(dir.join(LOADED), args.docs.to_string())?;
    }
    let report = Report {
        workload: "store",
        machine,
        ingest: ingest_points,
        get: gets,
    };
    print_report(&report);
    if let Some(p) = &args.json {
        std::fs::write(p, serde_json::to_string_pretty(&report)?)?;
        eprintln!("wrote {}", p.display());
    }
    if args.keep {
        // The ingest databases go; the loaded get databases stay for `--reuse`.
        for e in std::fs::read_dir(&dir)? {
            let p = e?.path();
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            if p.is_dir() && !name.ends_with("-get") {
                std::fs::remove_dir_all(&p)?;
            }
        }
    } else {
        std::fs::remove_dir_all(&dir)?;
    }
    Ok(())
}

fn print_report(r: &Report) {
    println!("Store — documents: 128-d vector, 5 terms, 2 attrs, 100-byte value");
    println!("machine: {}", r.machine.line());
    println!(
        "{:<10} {:<12} {:>7} {:>12} {:>8} {:>8}",
        "system", "sync", "threads", "docs/s", "p50 µs", "p99 µs"
    );
    for p in &r.ingest {
        println!(
            "{:<10} {:<12} {:>7} {:>12.0} {:>8} {:>8}",
            p.system, p.sync, p.threads, p.docs_per_s, p.p50_us, p.p99_us
        );
    }
    for p in r.ingest.iter().filter(|p| p.system == "strata") {
        if let Some(o) = r
            .ingest
            .iter()
            .find(|o| o.system == "rocksdb" && o.sync == p.sync && o.threads == p.threads)
        {
            println!(
                "put: strata vs rocksdb, sync {}, {} writers: {:.2}x (goal >= 1x)",
                p.sync,
                p.threads,
                p.docs_per_s / o.docs_per_s
            );
        }
    }
    println!(
        "\n{:<10} {:>10} {:>12} {:>8} {:>8} {:>8}",
        "system", "docs", "gets/s", "p50 µs", "p99 µs", "load s"
    );
    for g in &r.get {
        println!(
            "{:<10} {:>10} {:>12.0} {:>8} {:>8} {:>8.1}",
            g.system, g.docs, g.gets_per_s, g.p50_us, g.p99_us, g.load_s
        );
    }
    if let (Some(s), Some(o)) = (
        r.get.iter().find(|g| g.system == "strata"),
        r.get.iter().find(|g| g.system == "rocksdb"),
    ) {
        println!(
            "get: strata vs rocksdb: {:.2}x throughput (goal >= 1x)",
            s.gets_per_s / o.gets_per_s
        );
    }
}
