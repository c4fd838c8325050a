//! [`Db`]: create/open, the write path (validate → WAL → memtable → publish), freezing full
//! memtables and flushing them to segments in the background, and snapshots.
//!
//! Invariants:
//! - a batch reaches the memtable only after the WAL acknowledged it, with its LSN as sequence;
//! - the visible sequence advances only over a gap-free prefix of applied LSNs, and `write`
//!   returns only once its batch is visible (read-your-writes);
//! - writers hold the write gate (shared) from WAL append to publish; a freeze holds it
//!   exclusively, so a frozen memtable holds exactly the batches with LSN <= its mark;
//! - a flush makes its segment, deletion bitmaps and manifest durable before installing the new
//!   version, and truncates the WAL only below the manifest's checkpoint;
//! - after a failed write or flush the handle is poisoned: reads work, writes fail until reopen.

use std::ops::RangeBounds;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;

use parking_lot::{Condvar, Mutex};
use strata_io::{LockGuard, SharedFs, StdFs};
use strata_wal::{RecordKind, SyncMode, Wal};

use crate::ann::disk::ReuseGraph;
use crate::ann::{AnnBudget, AnnOptions, QueryStats};
use crate::batch::{self, WriteBatch};
use crate::bitset::Bitset;
use crate::files::FileType;
use crate::manifest::{self, deletes_name, segment_name, Manifest, SegmentMeta};
use crate::memtable::Memtable;
use crate::meta::{read_schema, write_schema, SCHEMA_FILE};
use crate::search::{Hit, Query};
use crate::segment::{deletes, write_segment_with, BlockCache, Segment};
use crate::version::{LiveSegment, Snapshot, Version};
use crate::write_path::WriteGate;
use crate::{Document, Error, Result, Schema};

/// WAL record kind of an encoded write batch.
pub const WAL_KIND_BATCH: RecordKind = RecordKind(1);
pub use crate::files::{LOCK_FILE, SEGMENTS_DIR, WAL_DIR};

mod compaction;
mod flush;
mod open;
mod options;
mod stats;

pub use open::RecoveryReport;
pub use options::Options;
pub use stats::{AnnInfo, CalibrationInfo, DbStats, SegmentInfo};

use compaction::manifest_segments;
use flush::{compactor_loop, flusher_loop};
use open::{remove_orphans, Sweep};

/// Flusher wake-ups and back-pressure.
#[derive(Debug, Default)]
struct FlushCtl {
    state: Mutex<FlushState>,
    cond: Condvar,
}

/// Copied whole by [`Db::stats`] (one lock for every counter).
#[derive(Debug, Default, Clone)]
struct FlushState {
    stop: bool,
    /// Flushes completed (tests and `Db::flush` wait on it).
    done: u64,
    /// Compactions completed.
    compactions: u64,
    /// Segment bytes written by flushes and by compactions (write amplification).
    flush_bytes: u64,
    compaction_bytes: u64,
    /// Seconds spent compacting.
    compaction_seconds: f64,
    /// Memtable bytes per second the last flush drained (0 until one is measured): the pace
    /// of writes during a slowdown.
    flush_rate: f64,
    /// During a slowdown: when the writes admitted so far have been paid for at `flush_rate`.
    paced_until: Option<std::time::Instant>,
    /// Writes delayed / stopped by back-pressure, and whether a slowdown is going on.
    slowdowns: u64,
    stalls: u64,
    slowed: bool,
    stalled: bool,
}

#[derive(Debug)]
struct Inner {
    dir: PathBuf,
    fs: SharedFs,
    options: Options,
    schema: Arc<Schema>,
    /// The log; `None` for a read-only handle.
    wal: Option<Wal>,
    version: Mutex<Arc<Version>>,
    /// The write gate and the visible sequence (`write_path.rs`, model-checked with loom).
    writes: WriteGate,
    manifest: Mutex<Manifest>,
    cache: Option<Arc<BlockCache>>,
    ann_budget: Arc<AnnBudget>,
    /// Held by a flush, and by a compaction while it takes its inputs and while it installs:
    /// both rewrite the manifest and the segment list.
    maintenance: Mutex<()>,
    /// Held by a compaction (or recalibration) for its whole run: one at a time. Taken before
    /// `maintenance`.
    compaction: Mutex<()>,
    /// The visible sequence the merge policy last saw, and since when (its "writers paused"
    /// test).
    last_write_seen: Mutex<(u64, std::time::Instant)>,
    /// Threads for flush and compaction work (graph builds), `Options::maintenance_threads`.
    pool: Option<rayon::ThreadPool>,
    flush: FlushCtl,
    poison: Mutex<Option<String>>,
    /// What open found (`Db::recovery`).
    recovery: RecoveryReport,
    /// The directory lock; `None` for a read-only handle (and then `wal` is `None` too).
    _lock: Option<LockGuard>,
}

/// Owns the flusher and compactor threads; stops and joins them when the last [`Db`] clone
/// drops (a compaction under way finishes first).
#[derive(Debug)]
struct Handle {
    inner: Arc<Inner>,
    threads: Vec<JoinHandle<()>>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.inner.flush.state.lock().stop = true;
        self.inner.flush.cond.notify_all();
        for h in self.threads.drain(..) {
            let _ = h.join();
        }
    }
}

/// An open database. Cheap to clone; share it between threads.
#[derive(Debug, Clone)]
pub struct Db {
    handle: Arc<Handle>,
}

impl Db {
    /// Whether this handle was opened with [`Db::open_read_only`].
    pub fn is_read_only(&self) -> bool {
        self.inner().wal.is_none()
    }

    /// What opening found and did: a bad log tail (cut if torn, reported if read-only or
    /// covered by the checkpoint), damage set aside by an explicit repair, a log restarted
    /// past the checkpoint, and the orphaned files of crashed flushes removed.
    pub fn recovery(&self) -> &RecoveryReport {
        &self.inner().recovery
    }

    fn inner(&self) -> &Inner {
        &self.handle.inner
    }

    /// The schema.
    pub fn schema(&self) -> &Schema {
        &self.inner().schema
    }

    /// The database directory.
    pub fn path(&self) -> &Path {
        &self.inner().dir
    }

    /// Insert or replace a document.
    pub fn put(&self, doc: Document) -> Result<()> {
        let mut b = WriteBatch::new();
        b.put(doc);
        self.write(b)
    }

    /// Delete the document under `key` (no error if absent).
    pub fn delete(&self, key: &[u8]) -> Result<()> {
        let mut b = WriteBatch::new();
        b.delete(key);
        self.write(b)
    }

    /// Apply a batch atomically: every operation is validated first (an invalid one fails the
    /// batch and writes nothing); the batch is one WAL record, so after a crash it is present
    /// in full or not at all. Returns once durable per the sync mode and visible to readers.
    pub fn write(&self, batch: WriteBatch) -> Result<()> {
        let inner = self.inner();
        inner.check_poison()?;
        if batch.is_empty() {
            return Ok(());
        }
        let ops = batch.validate(&inner.schema)?;
        let payload = batch::encode(&ops, &inner.schema, inner.options.batch_bytes_max)?;
        let wal = inner.wal()?;
        inner.wait_for_flush_room();
        let (active, added) = inner.writes.write(
            || {
                wal.append(WAL_KIND_BATCH, &payload).inspect_err(|e| {
                    inner.set_poison(e.to_string());
                })
            },
            |lsn| {
                let active = inner.version.lock().active.clone();
                let added = active.apply(lsn, ops);
                (active, added)
            },
        )?;
        if active.mem_bytes() >= inner.options.flush_threshold_bytes {
            inner.freeze(false);
        }
        inner.pace(added);
        Ok(())
    }

    /// A consistent read view of everything visible now.
    pub fn snapshot(&self) -> Snapshot {
        let inner = self.inner();
        let version = inner.version.lock();
        Snapshot {
            seq: inner.writes.visible(),
            schema: inner.schema.clone(),
            version: version.clone(),
            mandatory: None,
        }
    }

    /// A snapshot restricted by a mandatory filter (e.g. `(and tenant:7 (not hidden))`): it is
    /// AND-ed into every query of the snapshot, by every plan, and `get`/`scan` return only
    /// documents it admits. See [`Snapshot::with_mandatory_filter`].
    pub fn restricted_snapshot(&self, filter: crate::Filter) -> Result<Snapshot> {
        self.snapshot().with_mandatory_filter(filter)
    }

    /// Read one document.
    pub fn get(&self, key: &[u8]) -> Result<Option<Arc<Document>>> {
        self.snapshot().get(key)
    }

    /// A lazy read of the documents with keys in `range`, in key order, over a fresh
    /// snapshot (see [`crate::Scan`]: `.reverse()`, `.keys()`).
    pub fn range<R: RangeBounds<Vec<u8>>>(&self, range: R) -> crate::Scan {
        self.snapshot().range(range)
    }

    /// A lazy read of the documents whose key starts with `prefix`, over a fresh snapshot.
    pub fn prefix(&self, prefix: &[u8]) -> crate::Scan {
        self.snapshot().prefix(prefix)
    }

    /// Documents with keys in `range`, in key order, read into memory.
    pub fn scan<R: RangeBounds<Vec<u8>>>(&self, range: R) -> Result<Vec<Arc<Document>>> {
        self.snapshot().scan(range)
    }

    /// Documents whose key starts with `prefix`, in key order, read into memory.
    pub fn scan_prefix(&self, prefix: &[u8]) -> Result<Vec<Arc<Document>>> {
        self.snapshot().scan_prefix(prefix)
    }

    /// Run a query on a fresh snapshot.
    pub fn search(&self, q: &Query) -> Result<Vec<Hit>> {
        self.snapshot().search(q)
    }

    /// Check what opening does not: every sector of every graph (checksums, degrees, neighbour
    /// ids in range) and every chunk of every vectors section (with its whole-section CRC).
    /// Opening already verified every other byte of every file. The first problem is returned
    /// as an error naming the file.
    pub fn verify(&self) -> Result<()> {
        self.segment_info(true).map(|_| ())
    }

    /// [`Db::verify`], calling `progress(done, total)` per segment.
    pub fn verify_with(&self, progress: &dyn Fn(usize, usize)) -> Result<()> {
        self.segment_info_with(true, progress).map(|_| ())
    }

    /// Run a query on a fresh snapshot and report what it cost.
    pub fn search_with_stats(&self, q: &Query) -> Result<(Vec<Hit>, QueryStats)> {
        self.snapshot().search_with_stats(q)
    }

    /// Make every acknowledged write durable (useful with `SyncMode::Batch`/`Never`).
    pub fn sync(&self) -> Result<()> {
        if let Some(wal) = &self.inner().wal {
            wal.sync()?;
        }
        Ok(())
    }

    /// Freeze the memtable (if it holds anything) and wait until every frozen memtable is
    /// flushed to a segment.
    pub fn flush(&self) -> Result<()> {
        let inner = self.inner();
        inner.check_poison()?;
        inner.freeze(true);
        let mut st = inner.flush.state.lock();
        while !inner.version.lock().frozen.is_empty() {
            inner.check_poison()?;
            inner
                .flush
                .cond
                .wait_for(&mut st, std::time::Duration::from_millis(50));
        }
        inner.check_poison()
    }

    /// Flush, then merge every segment into one (dropping deleted and overwritten documents,
    /// rebuilding postings and the graph). Readers and writers are never blocked: flushes go on
    /// during the merge, and what they overwrite or delete in its inputs meanwhile is dead in
    /// its output too. Returns whether anything was rewritten.
    pub fn compact(&self) -> Result<bool> {
        self.compact_with(&|_, _| {})
    }

    /// [`Db::compact`], calling `progress(done, total)` as the merged segment's graph is built
    /// (insertions done of the merged documents), for progress bars.
    pub fn compact_with(&self, progress: &(dyn Fn(u64, u64) + Sync)) -> Result<bool> {
        self.flush()?;
        let inner = self.inner();
        let r = inner.compact_segments(None, true, progress);
        if let Err(e) = &r {
            inner.set_poison(format!("compaction failed: {e}"));
        }
        r
    }

    /// Recalibrate every indexed segment from a query log: the planner's measurements (recall
    /// and time per plan and effort, `docs/format.md`, "Calibration") taken on `queries` —
    /// the vectors users actually search with, which need not look like the documents — each
    /// unfiltered and with its filter from `filters` (one per query; `None` = unfiltered
    /// only), or, without `filters`, with filters drawn from the segment's own terms as a
    /// build does. Each segment's calibration is replaced by the new one (at most 4,096
    /// queries, the first ones): the segment is rewritten under a new
    /// id with the same documents, graph and deletions, and installed as a compaction
    /// installs its output. Returns the segments recalibrated. It holds the maintenance lock
    /// while it measures (about 0.2 s per query on a 65k × 768 segment, on the maintenance
    /// threads): flushes wait, so writes stall once the frozen memtables reach their limit;
    /// readers are never blocked.
    pub fn recalibrate(
        &self,
        queries: &[Vec<f32>],
        filters: Option<&[Option<crate::Filter>]>,
    ) -> Result<usize> {
        if self.is_read_only() {
            return Err(Error::ReadOnly(self.path().to_owned()));
        }
        if queries.is_empty() {
            return Err(Error::invalid("recalibration needs at least one query"));
        }
        let inner = self.inner();
        inner.check_poison()?;
        let r = inner.recalibrate(queries, filters);
        if let Err(e) = &r {
            if !matches!(e, Error::InvalidInput(_)) {
                inner.set_poison(format!("recalibration failed: {e}"));
            }
        }
        r
    }

    /// Flush, then run the compaction policy until it has nothing left to merge (what the
    /// background worker would reach once writes pause). Used by tools and benchmarks.
    pub fn settle(&self) -> Result<()> {
        self.flush()?;
        let inner = self.inner();
        loop {
            match inner.compact_policy() {
                Ok(true) => {}
                Ok(false) => return Ok(()),
                Err(e) => {
                    inner.set_poison(format!("compaction failed: {e}"));
                    return Err(e);
                }
            }
        }
    }
}
