//! [`Options`]: what a database is opened with, their defaults, setters and bounds.

use super::*;

/// Options of [`Db::open`] / [`Db::create_with`]: start from `Options::default()` and set
/// what differs with the `with_*` setters (or assign the public fields); more may be added.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Options {
    /// Durability of writes. Default: `SyncMode::Always` (acknowledged after fdatasync).
    pub sync: SyncMode,
    /// A memtable larger than this is frozen and flushed to a segment. Default 64 MiB.
    pub flush_threshold_bytes: usize,
    /// Writers wait while this many frozen memtables await their flush, and are paced at the
    /// flush rate while one fewer do. Default 4.
    pub frozen_memtables_max: usize,
    /// Bytes of decompressed document blocks kept in memory for reads. Default 64 MiB; 0 = off.
    pub block_cache_bytes: usize,
    /// Largest encoded write batch (one WAL record). Default and maximum 8 MiB, minimum 4 KiB.
    pub batch_bytes_max: usize,
    /// WAL file size before rotation. Default 64 MiB (raised to `batch_bytes_max` + 4 KiB if
    /// smaller: a batch must fit in one file).
    pub wal_segment_bytes_max: u64,
    /// Keep a zero-filled spare WAL file ready (faster fdatasync). Default true; done only under
    /// `SyncMode::Always`, the one mode where writes wait for fdatasync: elsewhere the zeros
    /// doubled the bytes a bulk load writes to the log, and a write into a zero-filled page
    /// costs the kernel twice an append (2.25 vs 1.12 µs per 800-byte pwrite, ext4).
    pub wal_preallocate: bool,
    /// File system (tests pass a fault-injecting one). Default: the real one.
    pub fs: SharedFs,
    /// ANN graphs of segments: when to build them, how, and their memory budget.
    pub ann: AnnOptions,
    /// Background compaction after flushes (policy in `docs/architecture.md`). Default true.
    pub compaction: bool,
    /// More live segments than this triggers a merge of the smallest ones. Default 8.
    pub segments_max: usize,
    /// A segment whose dead fraction passes this is rewritten. Default 0.3.
    pub deleted_ratio_max: f64,
    /// Compaction starts from the largest input's graph (deleted nodes repaired out, the other
    /// inputs' vectors inserted) when at least half of that input is live, instead of
    /// building the merged graph from scratch. Default true.
    pub compaction_reuse_graph: bool,
    /// Threads that build segments with a graph (graphs, codes) for flushes and compactions
    /// (a segment without one is written on the flusher's or compactor's own thread, so a
    /// flush never queues behind a merge's graph build). Default 0 =
    /// one fewer than the machine's cores, at least one, so queries keep a core during a
    /// large merge (measured on 2 cores: query p99 during a compaction 9.3x idle with both
    /// cores building, 0.9x with one). Bulk loads that run no queries can use every core.
    pub maintenance_threads: usize,
    /// Build segment graphs (and codes) during flushes. Default false: a flush writes the
    /// segment without them — its vectors are searched exactly meanwhile — and the maintenance
    /// thread indexes it once writers pause (no frozen memtable, the active one under 1/8 of
    /// `flush_threshold_bytes`), or when it merges it. A graph build takes ~20x the rest of a
    /// flush of vector-heavy documents, so building at flush made sustained ingest wait for
    /// graphs (measured: `Sync::Batch` puts at 0.36x RocksDB). `Db::settle` indexes everything.
    pub ann_at_flush: bool,
    /// Most live documents one graph build over merged graph-less segments takes. Once
    /// writers pause, the segments flushed without a graph are merged (smallest first, up to
    /// this many documents) and indexed once; while writers are busy, merges of graph-less
    /// segments stay graph-less unless their output reaches it. Default 2,000,000, the offline
    /// builder's segment size (`BuildOptions::segment_docs_max`), so a bulk load through
    /// `Db::write` ends with the segments `strata build` writes. A merge holds its documents
    /// in memory and builds the graph there (measured 4.3 GB peak for 1M × 128-d in one
    /// segment): lower it where memory is short or vectors are wide.
    pub index_merge_docs_max: usize,
    /// What recovery does with a damaged log past the checkpoint. Default
    /// `RecoveryMode::TolerateCorruptTail`: cut a torn (never acknowledged) write, refuse to
    /// open on any other damage. `SetAside` is the explicit repair of `strata recover`.
    pub recovery: strata_wal::RecoveryMode,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            sync: SyncMode::Always,
            flush_threshold_bytes: 64 << 20,
            frozen_memtables_max: 4,
            block_cache_bytes: 64 << 20,
            batch_bytes_max: crate::limits::BATCH_BYTES_MAX,
            wal_segment_bytes_max: 64 << 20,
            wal_preallocate: true,
            fs: StdFs::shared(),
            ann: AnnOptions::default(),
            compaction: true,
            segments_max: 8,
            deleted_ratio_max: 0.3,
            compaction_reuse_graph: true,
            maintenance_threads: 0,
            ann_at_flush: false,
            index_merge_docs_max: 2_000_000,
            recovery: strata_wal::RecoveryMode::TolerateCorruptTail,
        }
    }
}

/// Builder-style setters (each documented on its field).
impl Options {
    /// Set [`Options::sync`].
    pub fn with_sync(mut self, sync: SyncMode) -> Options {
        self.sync = sync;
        self
    }
    /// Set [`Options::flush_threshold_bytes`].
    pub fn with_flush_threshold_bytes(mut self, bytes: usize) -> Options {
        self.flush_threshold_bytes = bytes;
        self
    }
    /// Set [`Options::block_cache_bytes`].
    pub fn with_block_cache_bytes(mut self, bytes: usize) -> Options {
        self.block_cache_bytes = bytes;
        self
    }
    /// Set [`Options::ann`].
    pub fn with_ann(mut self, ann: AnnOptions) -> Options {
        self.ann = ann;
        self
    }
    /// Set [`Options::compaction`].
    pub fn with_compaction(mut self, on: bool) -> Options {
        self.compaction = on;
        self
    }
    /// Set [`Options::maintenance_threads`].
    pub fn with_maintenance_threads(mut self, threads: usize) -> Options {
        self.maintenance_threads = threads;
        self
    }
    /// Set [`Options::recovery`].
    pub fn with_recovery(mut self, mode: strata_wal::RecoveryMode) -> Options {
        self.recovery = mode;
        self
    }
    /// Set [`Options::fs`] (tests pass a fault-injecting file system).
    pub fn with_fs(mut self, fs: SharedFs) -> Options {
        self.fs = fs;
        self
    }
    /// Set [`Options::frozen_memtables_max`].
    pub fn with_frozen_memtables_max(mut self, v: usize) -> Options {
        self.frozen_memtables_max = v;
        self
    }
    /// Set [`Options::batch_bytes_max`].
    pub fn with_batch_bytes_max(mut self, v: usize) -> Options {
        self.batch_bytes_max = v;
        self
    }
    /// Set [`Options::wal_segment_bytes_max`].
    pub fn with_wal_segment_bytes_max(mut self, v: u64) -> Options {
        self.wal_segment_bytes_max = v;
        self
    }
    /// Set [`Options::wal_preallocate`].
    pub fn with_wal_preallocate(mut self, v: bool) -> Options {
        self.wal_preallocate = v;
        self
    }
    /// Set [`Options::segments_max`].
    pub fn with_segments_max(mut self, v: usize) -> Options {
        self.segments_max = v;
        self
    }
    /// Set [`Options::deleted_ratio_max`].
    pub fn with_deleted_ratio_max(mut self, v: f64) -> Options {
        self.deleted_ratio_max = v;
        self
    }
    /// Set [`Options::compaction_reuse_graph`].
    pub fn with_compaction_reuse_graph(mut self, v: bool) -> Options {
        self.compaction_reuse_graph = v;
        self
    }
    /// Set [`Options::index_merge_docs_max`].
    pub fn with_index_merge_docs_max(mut self, v: usize) -> Options {
        self.index_merge_docs_max = v;
        self
    }
    /// Set [`Options::ann_at_flush`].
    pub fn with_ann_at_flush(mut self, v: bool) -> Options {
        self.ann_at_flush = v;
        self
    }
}

impl Options {
    pub(super) fn validate(&self) -> Result<()> {
        self.ann.validate()?;
        if self.segments_max < 2 {
            return Err(Error::invalid("segments_max must be at least 2"));
        }
        if !(self.deleted_ratio_max > 0.0 && self.deleted_ratio_max <= 1.0) {
            return Err(Error::invalid("deleted_ratio_max must be in (0, 1]"));
        }
        if !(4096..=crate::limits::BATCH_BYTES_MAX).contains(&self.batch_bytes_max) {
            return Err(Error::invalid(format!(
                "batch_bytes_max {} outside 4096..={}",
                self.batch_bytes_max,
                crate::limits::BATCH_BYTES_MAX
            )));
        }
        Ok(())
    }

    pub(super) fn wal_options(&self) -> strata_wal::Options {
        let record_bytes_max = u32::try_from(self.batch_bytes_max).unwrap_or(u32::MAX);
        strata_wal::Options {
            sync: self.sync,
            segment_bytes_max: self
                .wal_segment_bytes_max
                .max(u64::from(record_bytes_max) + 4096),
            record_bytes_max,
            // Zeros only pay where a write waits for fdatasync (`SyncMode::Always`): elsewhere
            // they double a bulk load's log bytes (780 MB at 1M documents, `bench ingest`), and
            // overwriting a zero-filled page costs ext4 twice an append per write (2.25 vs
            // 1.12 µs per 800-byte pwrite), which `Sync::Batch` puts pay on every write while
            // its once-per-window fdatasync saves little.
            preallocate: self.wal_preallocate && matches!(self.sync, SyncMode::Always),
            recovery: self.recovery,
            ..strata_wal::Options::default()
        }
    }
}
