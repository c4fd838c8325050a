//! `strata bench`: workloads measured against peers in the same run, with machine notes.

mod compaction;
mod filtered;
mod knn;
mod machine;
mod plot;
#[cfg(feature = "rocksdb")]
mod rocks;
mod store;
mod wal;

use clap::Subcommand;

pub use machine::MachineNotes;

use crate::CliResult;

#[derive(Subcommand)]
pub enum BenchCommand {
    /// WAL group commit (1/4/16/64 writers, Sync::Always) vs raw write+fdatasync and RocksDB,
    /// and replay speed of a large log.
    Wal(wal::WalBenchArgs),
    /// Document ingest and point gets vs RocksDB.
    Store(store::StoreBenchArgs),
    /// k-NN recall vs QPS of the disk graph, warm and cold, vs hnswlib (`--peers`).
    Knn(knn::KnnBenchArgs),
    /// Filtered k-NN by selectivity (real data, or the generated social set): recall, QPS,
    /// latency, chosen plans; peers with `--peers`.
    Filtered(filtered::FilteredBenchArgs),
    /// Update-heavy workload: write and space amplification, query latency during compaction.
    Compaction(compaction::CompactionBenchArgs),
    /// PNG plot of a knn or filtered `--json` report (recall–QPS curves; QPS by selectivity).
    Plot(plot::PlotArgs),
}

pub fn run(cmd: BenchCommand) -> CliResult {
    match cmd {
        BenchCommand::Wal(args) => wal::run(&args),
        BenchCommand::Store(args) => store::run(&args),
        BenchCommand::Knn(args) => knn::run(&args),
        BenchCommand::Filtered(args) => filtered::run(&args),
        BenchCommand::Compaction(args) => compaction::run(&args),
        BenchCommand::Plot(args) => plot::run(&args),
    }
}

/// Percentile of sorted samples (nearest rank).
pub fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted.get(rank.min(sorted.len() - 1)).copied().unwrap_or(0)
}

/// Peak resident memory of this process (VmHWM), in bytes; 0 where unknown.
pub fn peak_rss() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let l = s.lines().find(|l| l.starts_with("VmHWM:"))?;
            l.split_whitespace().nth(1)?.parse::<u64>().ok()
        })
        .map_or(0, |kib| kib * 1024)
}

/// Drop the page cache (needs root). Returns whether it worked.
pub fn drop_caches() -> bool {
    let synced = std::process::Command::new("sync")
        .status()
        .is_ok_and(|s| s.success());
    synced && std::fs::write("/proc/sys/vm/drop_caches", "3\n").is_ok()
}
