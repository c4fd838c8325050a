//! `strata bench wal`: group-commit throughput with `Sync::Always` at several writer counts,
//! against this disk's raw write+fdatasync rate and RocksDB (`--features rocksdb`) in the same
//! run, and replay speed of a large log (warm and cold cache).

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use strata_io::{Fs, StdFs};
use strata_wal::{Options, SyncMode, Wal};

use super::workload::{drive, Point};
use super::{drop_caches, percentile, MachineNotes};
use crate::CliResult;

#[derive(Args)]
pub struct WalBenchArgs {
    /// Scratch directory (on the disk under test); wiped per run.
    #[arg(long, default_value = "bench-out/wal")]
    dir: PathBuf,
    /// Writer thread counts, comma-separated.
    #[arg(long, default_value = "1,4,16,64", value_delimiter = ',')]
    threads: Vec<usize>,
    /// Seconds per measured point.
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
    /// Payload bytes per record.
    #[arg(long, default_value_t = 256)]
    record_bytes: usize,
    /// Size of the log replayed for the replay figure, in MiB (0 skips it).
    #[arg(long, default_value_t = 1024)]
    replay_mib: u64,
    /// Write the results as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Skip the cold-cache replay (which drops the whole machine's page cache when root).
    #[arg(long)]
    warm_only: bool,
}

#[derive(Debug, Serialize)]
struct Replay {
    bytes: u64,
    records: u64,
    warm_mb_per_s: f64,
    cold_mb_per_s: Option<f64>,
    caches_dropped: bool,
}

#[derive(Debug, Serialize)]
struct Report {
    workload: &'static str,
    record_bytes: usize,
    seconds_per_point: f64,
    machine: MachineNotes,
    points: Vec<Point>,
    replay: Option<Replay>,
}

fn fresh(dir: &Path) -> CliResult<PathBuf> {
    if dir.exists() {
        std::fs::remove_dir_all(dir)?;
    }
    std::fs::create_dir_all(dir)?;
    Ok(dir.to_owned())
}

fn point(system: &str, threads: usize, n: u64, secs: f64, syncs: u64, lat: &[u64]) -> Point {
    Point {
        system: system.to_owned(),
        threads,
        records_per_s: n as f64 / secs,
        fsyncs_per_s: syncs as f64 / secs,
        p50_us: percentile(lat, 50.0),
        p99_us: percentile(lat, 99.0),
    }
}

/// The disk's raw rate: one thread, append one frame-sized write, fdatasync, repeat.
fn raw_disk(dir: &Path, args: &WalBenchArgs) -> CliResult<Point> {
    let dir = fresh(&dir.join("raw"))?;
    let file = StdFs.create_new(&dir.join("raw.log"))?;
    let buf = vec![0x5Au8; args.record_bytes + 20];
    let offset = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let (n, secs, lat) = drive(1, args.seconds, move |_, _| {
        let off = offset.fetch_add(buf.len() as u64, Ordering::Relaxed);
        file.write_all_at(&buf, off)?;
        file.sync_data()?;
        Ok(())
    })?;
    Ok(point("raw write+fdatasync", 1, n, secs, n, &lat))
}

fn strata(dir: &Path, threads: usize, args: &WalBenchArgs) -> CliResult<Point> {
    let dir = fresh(&dir.join(format!("strata-{threads}")))?;
    let opts = Options {
        sync: SyncMode::Always,
        ..Options::default()
    };
    let (wal, _) = Wal::open(StdFs::shared(), &dir, opts)?;
    let wal = Arc::new(wal);
    let w = wal.clone();
    let payload = vec![0xA5u8; args.record_bytes];
    let (n, secs, lat) = drive(threads, args.seconds, move |_, _| {
        w.append_data(&payload)?;
        Ok(())
    })?;
    let st = wal.stats();
    eprintln!(
        "  strata {threads} writers: avg fsync {:.0} µs, avg gather {:.0} µs per round",
        st.sync_ns as f64 / st.syncs.max(1) as f64 / 1e3,
        st.gather_ns as f64 / st.syncs.max(1) as f64 / 1e3
    );
    Ok(point("strata", threads, n, secs, st.syncs, &lat))
}

fn replay(dir: &Path, args: &WalBenchArgs) -> CliResult<Replay> {
    let dir = fresh(&dir.join("replay"))?;
    let target = args.replay_mib << 20;
    let frame = (args.record_bytes + 20) as u64;
    let records = target / frame;
    let opts = Options {
        sync: SyncMode::Never,
        ..Options::default()
    };
    let bar = ProgressBar::new(records).with_style(
        ProgressStyle::with_template("writing replay log {bar:40} {pos}/{len} records ETA {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    {
        let (wal, _) = Wal::open(StdFs::shared(), &dir, opts)?;
        let wal = Arc::new(wal);
        let writers = 4u64;
        let handles: Vec<_> = (0..writers)
            .map(|t| {
                let (wal, bar) = (wal.clone(), bar.clone());
                let payload = vec![t as u8 + 1; args.record_bytes];
                std::thread::spawn(move || -> strata_wal::Result<()> {
                    for i in 0..records / writers {
                        wal.append_data(&payload)?;
                        if i % 4096 == 0 {
                            bar.inc(4096);
                        }
                    }
                    Ok(())
                })
            })
            .collect();
        for h in handles {
            h.join().map_err(|_| "writer panicked")??;
        }
        wal.sync()?;
    }
    bar.finish_and_clear();
    let measure = || -> CliResult<(u64, u64, f64)> {
        let t0 = Instant::now();
        let (wal, _) = Wal::open(StdFs::shared(), &dir, opts)?;
        let mut r = wal.reader(1)?;
        let (mut n, mut bytes) = (0u64, 0u64);
        while let Some(rec) = r.next_record()? {
            n += 1;
            bytes += rec.payload.len() as u64 + 20;
        }
        Ok((n, bytes, t0.elapsed().as_secs_f64()))
    };
    let _ = measure()?; // warm the page cache
    let (n, bytes, warm) = measure()?;
    let caches_dropped = !args.warm_only && drop_caches();
    let cold = if caches_dropped {
        Some(measure()?.2)
    } else {
        if !args.warm_only {
            eprintln!("note: cannot drop the page cache (not root?); cold replay skipped");
        }
        None
    };
    let mb = bytes as f64 / 1e6;
    Ok(Replay {
        bytes,
        records: n,
        warm_mb_per_s: mb / warm,
        cold_mb_per_s: cold.map(|c| mb / c),
        caches_dropped,
    })
}

pub fn run(args: &WalBenchArgs) -> CliResult {
    let dir = fresh(&args.dir)?;
    let mut peers = vec!["raw write+fdatasync".to_owned()];
    if cfg!(feature = "rocksdb") {
        peers
            .push("rocksdb crate 0.20.1 (Debian librocksdb 7.8.3), WriteOptions::sync=true".into());
    }
    let machine = MachineNotes::gather(&dir, peers);
    let mut points = vec![raw_disk(&dir, args)?];
    for &t in &args.threads {
        eprintln!("measuring strata with {t} writers ...");
        points.push(strata(&dir, t, args)?);
        #[cfg(feature = "rocksdb")]
        {
            eprintln!("measuring rocksdb with {t} writers ...");
            points.push(super::rocks::wal_point(
                &dir,
                t,
                args.seconds,
                args.record_bytes,
            )?);
        }
    }
    let replay = if args.replay_mib > 0 {
        Some(replay(&dir, args)?)
    } else {
        None
    };
    let report = Report {
        workload: "wal",
        record_bytes: args.record_bytes,
        seconds_per_point: args.seconds,
        machine,
        points,
        replay,
    };
    print_report(&report);
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)?;
        eprintln!("wrote {}", path.display());
    }
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

fn print_report(r: &Report) {
    println!(
        "WAL group commit — Sync::Always, {}-byte records, {:.1} s per point",
        r.record_bytes, r.seconds_per_point
    );
    println!("machine: {}", r.machine.line());
    println!(
        "{:<22} {:>7} {:>12} {:>10} {:>10} {:>8} {:>8}",
        "system", "threads", "records/s", "fsyncs/s", "rec/fsync", "p50 µs", "p99 µs"
    );
    for p in &r.points {
        println!(
            "{:<22} {:>7} {:>12.0} {:>10.0} {:>10.1} {:>8} {:>8}",
            p.system,
            p.threads,
            p.records_per_s,
            p.fsyncs_per_s,
            p.records_per_s / p.fsyncs_per_s.max(1e-9),
            p.p50_us,
            p.p99_us
        );
    }
    let get = |sys: &str, t: usize| {
        r.points
            .iter()
            .find(|p| p.system == sys && p.threads == t)
            .map(|p| p.records_per_s)
    };
    let raw = get("raw write+fdatasync", 1);
    if let (Some(one), Some(raw)) = (get("strata", 1), raw) {
        println!(
            "single writer vs raw disk: {:.2}x (goal >= 0.80x)",
            one / raw
        );
    }
    if let (Some(one), Some(sixteen)) = (get("strata", 1), get("strata", 16)) {
        println!(
            "16 writers vs 1 writer:    {:.1}x (goal >= 10x)",
            sixteen / one
        );
    }
    for p in r.points.iter().filter(|p| p.system == "strata") {
        if let Some(rocks) = get("rocksdb", p.threads) {
            println!(
                "strata vs rocksdb, {:>2} writers: {:.2}x (goal >= 1x)",
                p.threads,
                p.records_per_s / rocks
            );
        }
    }
    if let Some(rep) = &r.replay {
        println!(
            "replay of {:.2} GiB ({} records): warm {:.0} MB/s, cold {} (goal >= 300 MB/s)",
            rep.bytes as f64 / (1u64 << 30) as f64,
            rep.records,
            rep.warm_mb_per_s,
            rep.cold_mb_per_s
                .map_or("not measured".to_owned(), |c| format!("{c:.0} MB/s"))
        );
    }
}
