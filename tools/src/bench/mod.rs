//! `strata bench`: workloads measured against peers in the same run, with machine notes.

mod compaction;
mod filtered;
mod ingest;
mod knn;
mod machine;
#[cfg(feature = "plot")]
mod plot;

/// Arguments of `strata bench plot` (the same with or without the `plot` feature).
#[derive(clap::Args)]
pub struct PlotArgs {
    /// A `--json` report of `strata bench knn` or `strata bench filtered`.
    #[arg(long)]
    pub(crate) input: std::path::PathBuf,
    /// The PNG to write.
    #[arg(long)]
    pub(crate) out: std::path::PathBuf,
    /// Title (default: from the report).
    #[arg(long)]
    pub(crate) title: Option<String>,
    /// knn reports: what the y axis shows — `qps`, or `disk` (KiB the block device read per
    /// query, cold points only: the I/O figure of a disk index).
    #[arg(long, default_value = "qps")]
    pub(crate) y: String,
}

/// Without the `plot` feature, `strata bench plot` says how to get it.
#[cfg(not(feature = "plot"))]
mod plot {
    pub fn run(a: &super::PlotArgs) -> crate::CliResult {
        let _ = (&a.input, &a.out, &a.title);
        Err("this strata was built without the `plot` feature: \
             cargo build --release -p strata-tools --features plot"
            .into())
    }
}
#[cfg(feature = "rocksdb")]
mod rocks;
mod store;
mod wal;
mod workload;

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
    /// Loading documents with vectors through `Db::write` (indexing included) vs the same load
    /// without vectors and vs `strata build`.
    Ingest(ingest::IngestBenchArgs),
    /// k-NN recall vs QPS of the disk graph, warm and cold, vs hnswlib (`--peers`).
    Knn(knn::KnnBenchArgs),
    /// Filtered k-NN by selectivity (real data, or the generated social set): recall, QPS,
    /// latency, chosen plans; peers with `--peers`.
    Filtered(filtered::FilteredBenchArgs),
    /// Update-heavy workload: write and space amplification, query latency during compaction.
    Compaction(compaction::CompactionBenchArgs),
    /// PNG plot of a knn or filtered `--json` report (recall–QPS curves; QPS by selectivity).
    Plot(PlotArgs),
}

pub fn run(cmd: BenchCommand) -> CliResult {
    match cmd {
        BenchCommand::Wal(args) => wal::run(&args),
        BenchCommand::Store(args) => store::run(&args),
        BenchCommand::Ingest(args) => ingest::run(&args),
        BenchCommand::Knn(args) => knn::run(&args),
        BenchCommand::Filtered(args) => filtered::run(&args),
        BenchCommand::Compaction(args) => compaction::run(&args),
        BenchCommand::Plot(args) => plot::run(&args),
    }
}

/// Percentile of sorted samples (nearest rank).
/// recall@k of `results` (hits whose keys are decimal base-row ordinals, as every benchmark
/// writes them) against `gt` (ordinals, best first): the true top-k found, over
/// Σ min(k, |gt row|) — a query with fewer than k true answers is not counted short. 1.0
/// when there is nothing to find.
pub fn recall_at(results: &[Vec<strata::Hit>], gt: &[Vec<usize>], k: usize) -> f64 {
    let (mut hit, mut total) = (0usize, 0usize);
    for (h, want) in results.iter().zip(gt) {
        let want: std::collections::HashSet<usize> = want.iter().take(k).copied().collect();
        total += want.len();
        hit += h
            .iter()
            .take(k)
            .filter_map(|x| std::str::from_utf8(&x.key).ok()?.parse::<usize>().ok())
            .filter(|i| want.contains(i))
            .count();
    }
    if total == 0 {
        1.0
    } else {
        hit as f64 / total as f64
    }
}

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
/// Bytes the block device holding `path` has read since boot (`/sys/dev/block/MAJ:MIN/stat`,
/// sectors × 512): I/O below the page cache and readahead, counted the same way for every
/// system a cold benchmark runs (`None` where the file is not there, e.g. not Linux).
pub fn device_read_bytes(path: &std::path::Path) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    let dev = std::fs::metadata(path).ok()?.dev();
    // glibc's major()/minor() encoding of dev_t.
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
    let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
    let stat = std::fs::read_to_string(format!("/sys/dev/block/{major}:{minor}/stat")).ok()?;
    let sectors: u64 = stat.split_whitespace().nth(2)?.parse().ok()?;
    Some(sectors * 512)
}

pub fn drop_caches() -> bool {
    let synced = std::process::Command::new("sync")
        .status()
        .is_ok_and(|s| s.success());
    synced && std::fs::write("/proc/sys/vm/drop_caches", "3\n").is_ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::float_cmp, reason = "exact fractions")]
    use super::*;

    fn hits(keys: &[&str]) -> Vec<strata::Hit> {
        keys.iter()
            .map(|k| strata::Hit {
                key: k.as_bytes().to_vec(),
                distance: Some(0.0),
                doc: None,
            })
            .collect()
    }

    #[test]
    fn recall_on_hand_made_cases() {
        // 2 of 3 true answers found, and a query whose one true answer is found.
        let r = vec![
            hits(&["00000001", "00000007", "00000003"]),
            hits(&["00000042"]),
        ];
        let gt = vec![vec![1, 2, 3], vec![42]];
        assert_eq!(recall_at(&r, &gt, 3), 3.0 / 4.0);
        // Only the first k of the ground truth count, and only the first k results.
        assert_eq!(
            recall_at(&[hits(&["00000009", "00000001"])], &[vec![1, 9, 5]], 1),
            0.0
        );
        assert_eq!(
            recall_at(&[hits(&["00000001", "00000009"])], &[vec![1, 9, 5]], 1),
            1.0
        );
        // Keys that are not ordinals (user documents) never count as hits.
        assert_eq!(recall_at(&[hits(&["user-0000001"])], &[vec![1]], 10), 0.0);
        // Nothing to find: recall 1.
        assert_eq!(recall_at(&[hits(&[])], &[vec![]], 10), 1.0);
        assert_eq!(percentile(&[1, 2, 3, 4, 5], 50.0), 3);
        assert_eq!(percentile(&[], 99.0), 0);
    }
}
