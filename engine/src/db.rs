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

use std::collections::HashSet;
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
use crate::files::FileType;
use crate::manifest::{self, deletes_name, segment_name, Manifest, SegmentMeta};
use crate::memtable::Memtable;
use crate::meta::{read_schema, write_schema, SCHEMA_FILE};
use crate::search::{Hit, Query};
use crate::segment::bitset::Bitset;
use crate::segment::{deletes, write_segment_with, BlockCache, Segment};
use crate::version::{LiveSegment, Snapshot, Version};
use crate::write_path::WriteGate;
use crate::{Document, Error, Result, Schema};

/// WAL record kind of an encoded write batch.
pub const WAL_KIND_BATCH: RecordKind = RecordKind(1);
pub use crate::files::{LOCK_FILE, SEGMENTS_DIR, WAL_DIR};

/// Options of [`Db::open`] / [`Db::create_with`]: start from `Options::default()` and set
/// what differs with the `with_*` setters (or assign the public fields); more may be added.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Options {
    /// Durability of writes. Default: `SyncMode::Always` (acknowledged after fdatasync).
    pub sync: SyncMode,
    /// A memtable larger than this is frozen and flushed to a segment. Default 64 MiB.
    pub flush_threshold_bytes: usize,
    /// Writers wait while this many frozen memtables await their flush. Default 4.
    pub frozen_memtables_max: usize,
    /// Bytes of decompressed document blocks kept in memory for reads. Default 64 MiB; 0 = off.
    pub block_cache_bytes: usize,
    /// Largest encoded write batch (one WAL record). Default and maximum 8 MiB, minimum 4 KiB.
    pub batch_bytes_max: usize,
    /// WAL file size before rotation. Default 64 MiB (raised to `batch_bytes_max` + 4 KiB if
    /// smaller: a batch must fit in one file).
    pub wal_segment_bytes_max: u64,
    /// Keep a zero-filled spare WAL file ready (faster fdatasync). Default true.
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
    /// Threads that build segments (graphs, codes) for flushes and compactions. Default 0 =
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
    /// Set [`Options::ann_at_flush`].
    pub fn with_ann_at_flush(mut self, v: bool) -> Options {
        self.ann_at_flush = v;
        self
    }
}

impl Options {
    fn validate(&self) -> Result<()> {
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

    fn wal_options(&self) -> strata_wal::Options {
        let record_bytes_max = u32::try_from(self.batch_bytes_max).unwrap_or(u32::MAX);
        strata_wal::Options {
            sync: self.sync,
            segment_bytes_max: self
                .wal_segment_bytes_max
                .max(u64::from(record_bytes_max) + 4096),
            record_bytes_max,
            preallocate: self.wal_preallocate,
            recovery: self.recovery,
            ..strata_wal::Options::default()
        }
    }
}

/// Flusher wake-ups and back-pressure.
#[derive(Debug, Default)]
struct FlushCtl {
    state: Mutex<FlushState>,
    cond: Condvar,
}

#[derive(Debug, Default)]
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
    /// Held by a flush and by a compaction: both rewrite the manifest and the segment list.
    maintenance: Mutex<()>,
    /// Threads for flush and compaction work (graph builds), `Options::maintenance_threads`.
    pool: Option<rayon::ThreadPool>,
    flush: FlushCtl,
    poison: Mutex<Option<String>>,
    /// What open found (`Db::recovery`).
    recovery: RecoveryReport,
    /// The directory lock; `None` for a read-only handle (and then `wal` is `None` too).
    _lock: Option<LockGuard>,
}

/// Owns the flusher thread; stops and joins it when the last [`Db`] clone drops.
#[derive(Debug)]
struct Handle {
    inner: Arc<Inner>,
    flusher: Option<JoinHandle<()>>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.inner.flush.state.lock().stop = true;
        self.inner.flush.cond.notify_all();
        if let Some(h) = self.flusher.take() {
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
    /// Create a database in `dir` (created if missing; must not already hold one).
    pub fn create(dir: impl AsRef<Path>, schema: Schema) -> Result<Db> {
        Db::create_with(dir, schema, Options::default())
    }

    /// [`Db::create`] with options.
    pub fn create_with(dir: impl AsRef<Path>, schema: Schema, options: Options) -> Result<Db> {
        let dir = dir.as_ref();
        schema.validate()?;
        let fs = &options.fs;
        strata_io::create_dir_durable(fs.as_ref(), dir)
            .map_err(|e| Error::io("create directory", dir, e))?;
        let lock = lock_dir(fs, dir)?;
        if fs.exists(&dir.join(SCHEMA_FILE)) {
            return Err(Error::AlreadyExists(dir.to_owned()));
        }
        write_schema(fs, dir, &schema)?;
        // An empty manifest from the start: from here on "no manifest" always means a lost
        // one, even when a crash interrupts the first flush (a segment file, no manifest).
        manifest::write(fs, dir, &Manifest::empty())?;
        Db::open_locked(dir, options, lock)
    }

    /// Open the database in `dir`, creating it with `schema` if `dir` holds none. An
    /// existing database must have exactly this schema ([`Error::InvalidInput`] otherwise,
    /// nothing changed).
    ///
    /// ```
    /// use strata::{Db, Metric, Options, Schema, SyncMode};
    /// let dir = tempfile::tempdir().unwrap();
    /// let schema = Schema::new(3, Metric::Cosine).with_attr("ts");
    /// let options = Options::default().with_sync(SyncMode::Never).with_flush_threshold_bytes(8 << 20);
    /// let db = Db::open_or_create(dir.path(), schema.clone(), options.clone())?;
    /// drop(db);
    /// let again = Db::open_or_create(dir.path(), schema, options)?; // opens it
    /// assert_eq!(again.schema().dim, 3);
    /// # Ok::<(), strata::Error>(())
    /// ```
    pub fn open_or_create(dir: impl AsRef<Path>, schema: Schema, options: Options) -> Result<Db> {
        let dir = dir.as_ref();
        if options.fs.exists(&dir.join(SCHEMA_FILE)) {
            let db = Db::open(dir, options)?;
            if *db.schema() != schema {
                return Err(Error::invalid(format!(
                    "{} holds a database with schema {:?}, not {schema:?}",
                    dir.display(),
                    db.schema()
                )));
            }
            return Ok(db);
        }
        match Db::create_with(dir, schema.clone(), options.clone()) {
            // Another process created it in between: open that one.
            Err(Error::AlreadyExists(_)) => Db::open_or_create(dir, schema, options),
            r => r,
        }
    }

    /// Open an existing database: schema → manifest → segments → WAL replay.
    ///
    /// Recovery cuts a torn tail of the log (an interrupted, never-acknowledged write; its bytes
    /// are saved to `wal/lost+found`) and fails with [`Error::Corruption`] on any other damage
    /// to records past the checkpoint, cutting nothing; `Options::recovery =
    /// RecoveryMode::SetAside` (`strata recover`) sets such damage aside instead. What it found
    /// is in [`Db::recovery`].
    pub fn open(dir: impl AsRef<Path>, options: Options) -> Result<Db> {
        let dir = dir.as_ref();
        let lock = lock_dir(&options.fs, dir)?;
        Db::open_locked(dir, options, lock)
    }

    /// Open a database for reading only: no lock (any number of read-only handles, next to
    /// one writer in this or another process), no file created, changed or removed, no
    /// background thread. The log is replayed in memory; a bad tail is reported in
    /// [`Db::recovery`] (the handle sees the records before it) instead of being cut. The
    /// handle sees the database as of its open; writes fail with [`Error::ReadOnly`].
    /// A writer's flush or compaction that removes files during the open makes it retry
    /// (a few times) from the newer manifest.
    pub fn open_read_only(dir: impl AsRef<Path>, options: Options) -> Result<Db> {
        let dir = dir.as_ref();
        options.validate()?;
        if !options.fs.exists(dir) {
            return Err(Error::NotFound(dir.to_owned()));
        }
        let mut attempt = 0;
        loop {
            let before = manifest::latest_number(&options.fs, dir)?;
            match Db::open_inner(dir, options.clone(), None) {
                Ok(db) => return Ok(db),
                Err(e) => {
                    attempt += 1;
                    let after = manifest::latest_number(&options.fs, dir)?;
                    if after == before || attempt >= READ_ONLY_OPEN_ATTEMPTS {
                        return Err(e);
                    }
                }
            }
        }
    }

    fn open_locked(dir: &Path, options: Options, lock: LockGuard) -> Result<Db> {
        Db::open_inner(dir, options, Some(lock))
    }

    /// Open with `lock` for writing, or read-only without one.
    fn open_inner(dir: &Path, options: Options, lock: Option<LockGuard>) -> Result<Db> {
        options.validate()?;
        let read_only = lock.is_none();
        let fs = options.fs.clone();
        let schema = Arc::new(read_schema(&fs, dir)?);
        let seg_dir = dir.join(SEGMENTS_DIR);
        let wal_dir = dir.join(WAL_DIR);
        if !read_only {
            strata_io::create_dir_durable(fs.as_ref(), &seg_dir)
                .map_err(|e| Error::io("create directory", &seg_dir, e))?;
        }
        let manifest = match manifest::read_latest(&fs, dir)? {
            Some(m) => m,
            None => {
                // No manifest: a database that never flushed — unless its files say otherwise.
                // Then open refuses (deleting the segments as orphans would lose them all).
                if let Some(evidence) = flushed_evidence(&fs, &seg_dir, &wal_dir)? {
                    return Err(Error::MissingManifest {
                        dir: dir.to_owned(),
                        evidence,
                    });
                }
                Manifest::empty()
            }
        };
        let cache = (options.block_cache_bytes > 0)
            .then(|| Arc::new(BlockCache::new(options.block_cache_bytes)));
        let ann_budget = Arc::new(AnnBudget::new(
            options.ann.memory_budget_bytes,
            options.ann.warm,
        ));
        let mut segments = Vec::new();
        for m in manifest.segments.iter().rev() {
            let path = seg_dir.join(segment_name(m.id));
            let seg = Segment::open(
                &fs,
                &path,
                m.id,
                schema.clone(),
                cache.clone(),
                Some(ann_budget.clone()),
                m.file_bytes,
            )?;
            if seg.len() != m.doc_count as usize {
                return Err(Error::corrupt(
                    "manifest",
                    dir,
                    format!(
                        "segment {} has {} documents, manifest says {}",
                        m.id,
                        seg.len(),
                        m.doc_count
                    ),
                ));
            }
            let deleted = match m.deletes_gen {
                0 => Bitset::new(seg.len()),
                g => deletes::read(&fs, &seg_dir.join(deletes_name(m.id, g)), seg.len())?,
            };
            segments.push(LiveSegment::new(
                Arc::new(seg),
                Arc::new(deleted),
                m.deletes_gen,
            ));
        }
        let mut report = RecoveryReport::default();

        let checkpoint = manifest.checkpoint_lsn;
        let wal_options = strata_wal::Options {
            checkpoint_lsn: checkpoint,
            ..options.wal_options()
        };
        let active = Arc::new(Memtable::new());
        let replay = |mut reader: strata_wal::WalReader| -> Result<()> {
            while let Some(rec) = reader.next_record()? {
                if rec.kind != WAL_KIND_BATCH {
                    continue; // only ignorable kinds get here: the reader rejects unknown ones
                }
                let ops = batch::decode(rec.payload, &schema).map_err(|kind| {
                    Error::corrupt(
                        "WAL batch record",
                        &wal_dir,
                        format!("LSN {}: {kind}", rec.lsn),
                    )
                })?;
                active.apply(rec.lsn, ops);
            }
            Ok(())
        };
        let (wal, visible) = if read_only {
            let view = strata_wal::LogView::open(fs.clone(), &wal_dir, &wal_options)?;
            replay(view.reader(checkpoint + 1)?)?;
            report.wal_tail = view.tail().cloned();
            (None, view.next_lsn().saturating_sub(1))
        } else {
            let (wal, recovery) = Wal::open(fs.clone(), &wal_dir, wal_options)?;
            if wal.last_lsn() > checkpoint {
                replay(wal.reader(checkpoint + 1)?)?;
            }
            if recovery.restarted_after_checkpoint {
                // The files before the new one hold only records the segments cover.
                wal.truncate_below(checkpoint)?;
            }
            for t in recovery.set_aside.iter().chain(&recovery.tail) {
                log::warn!("strata {}: WAL recovery: {t}", dir.display());
            }
            report.wal_tail = recovery.tail;
            report.wal_set_aside = recovery.set_aside;
            report.wal_restarted = recovery.restarted_after_checkpoint;
            // Only once recovery succeeded: an open that refuses changes nothing.
            report.removed = remove_orphans(&fs, dir, &manifest, Sweep::All)?;
            // Every LSN up to the log's end is applied (batches) or skipped (ignorable kinds).
            let visible = wal.last_lsn().max(checkpoint);
            (Some(wal), visible)
        };
        let pool = (!read_only)
            .then(|| {
                let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
                let n = match options.maintenance_threads {
                    0 => cores.saturating_sub(1).max(1),
                    n => n,
                };
                rayon::ThreadPoolBuilder::new()
                    .num_threads(n)
                    .thread_name(|i| format!("strata-build-{i}"))
                    .build()
                    .ok()
            })
            .flatten();
        let inner = Arc::new(Inner {
            dir: dir.to_owned(),
            fs,
            options,
            schema,
            wal,
            version: Mutex::new(Arc::new(Version {
                active,
                frozen: Vec::new(),
                segments,
            })),
            writes: WriteGate::new(visible),
            manifest: Mutex::new(manifest),
            cache,
            ann_budget,
            maintenance: Mutex::new(()),
            pool,
            flush: FlushCtl::default(),
            poison: Mutex::new(None),
            recovery: report,
            _lock: lock,
        });
        let flusher = if read_only {
            None
        } else {
            let inner = inner.clone();
            Some(
                std::thread::Builder::new()
                    .name("strata-flush".into())
                    .spawn(move || flusher_loop(&inner))
                    .map_err(|e| Error::io("spawn flusher thread", dir, e))?,
            )
        };
        Ok(Db {
            handle: Arc::new(Handle { inner, flusher }),
        })
    }

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
        let active = inner.writes.write(
            || {
                wal.append(WAL_KIND_BATCH, &payload).inspect_err(|e| {
                    inner.set_poison(e.to_string());
                })
            },
            |lsn| {
                let active = inner.version.lock().active.clone();
                active.apply(lsn, ops);
                active
            },
        )?;
        if active.mem_bytes() >= inner.options.flush_threshold_bytes {
            inner.freeze(false);
        }
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

    /// Describe every live segment; with `graphs`, also read every graph node for the degree
    /// histogram and every vector chunk (which checks every byte an open leaves to first use,
    /// like [`Db::verify`]).
    pub fn segment_info(&self, graphs: bool) -> Result<Vec<SegmentInfo>> {
        self.segment_info_with(graphs, &|_, _| {})
    }

    /// [`Db::segment_info`], calling `progress(done, total)` after each segment (for progress
    /// bars over large databases).
    pub fn segment_info_with(
        &self,
        graphs: bool,
        progress: &dyn Fn(usize, usize),
    ) -> Result<Vec<SegmentInfo>> {
        let v = self.inner().version.lock().clone();
        let total = v.segments.len();
        v.segments
            .iter()
            .enumerate()
            .map(|(done, ls)| {
                progress(done, total);
                let seg = &ls.seg;
                if graphs {
                    seg.verify_deferred()?;
                }
                let ann = match seg.ann() {
                    None => None,
                    Some(idx) => {
                        let (codes, code_bytes) = idx.code_kind();
                        Some(AnnInfo {
                            nodes: idx.len(),
                            degree_max: idx.degree_max(),
                            codes,
                            code_bytes,
                            resident_bytes: idx.resident_bytes(),
                            degree_histogram: if graphs {
                                idx.degree_histogram(seg.file_bytes())?
                            } else {
                                Vec::new()
                            },
                            calibration: seg.calibration().map(|c| CalibrationInfo {
                                samples: c.samples.len(),
                                filtered: c.samples.iter().filter(|x| x.filtered).count(),
                                k: c.k,
                                levels: c.levels,
                                exact_ns: c.exact_ns,
                            }),
                        })
                    }
                };
                Ok(SegmentInfo {
                    id: seg.id,
                    documents: seg.len(),
                    deleted: ls.deleted.count(),
                    file_bytes: seg.file_bytes().len() as u64,
                    terms: seg.term_count(),
                    ann,
                })
            })
            .collect()
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
    /// rebuilding postings and the graph). Readers are never blocked; writers may wait for the
    /// flushes queued behind it. Returns whether anything was rewritten.
    pub fn compact(&self) -> Result<bool> {
        self.compact_with(&|_, _| {})
    }

    /// [`Db::compact`], calling `progress(done, total)` as the merged segment's graph is built
    /// (insertions done of the merged documents), for progress bars.
    pub fn compact_with(&self, progress: &(dyn Fn(u64, u64) + Sync)) -> Result<bool> {
        self.flush()?;
        let inner = self.inner();
        let r = inner.compact_segments(None, progress);
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
            let pick = inner.compaction_pick();
            if pick.is_empty() {
                return Ok(());
            }
            if let Err(e) = inner.compact_segments(Some(&pick), &|_, _| {}) {
                inner.set_poison(format!("compaction failed: {e}"));
                return Err(e);
            }
        }
    }

    /// Counters: segments, frozen memtables, memtable bytes, flushes completed.
    pub fn stats(&self) -> DbStats {
        let inner = self.inner();
        let v = inner.version.lock().clone();
        let fs_state = {
            let st = inner.flush.state.lock();
            CompactionCounters {
                compactions: st.compactions,
                flush_bytes: st.flush_bytes,
                compaction_bytes: st.compaction_bytes,
                compaction_seconds: st.compaction_seconds,
                slowdowns: st.slowdowns,
                stalls: st.stalls,
            }
        };
        DbStats {
            segments: v.segments.len(),
            frozen_memtables: v.frozen.len(),
            memtable_bytes: v.active.mem_bytes(),
            flushes: inner.flush.state.lock().done,
            checkpoint_lsn: inner.manifest.lock().checkpoint_lsn,
            ann_segments: v.segments.iter().filter(|s| s.seg.ann().is_some()).count(),
            ann_resident_bytes: v
                .segments
                .iter()
                .filter_map(|s| s.seg.ann())
                .map(|a| a.resident_bytes() as u64)
                .sum(),
            compactions: fs_state.compactions,
            flush_bytes_written: fs_state.flush_bytes,
            compaction_bytes_written: fs_state.compaction_bytes,
            compaction_seconds: fs_state.compaction_seconds,
            live_bytes: v
                .segments
                .iter()
                .map(|s| s.seg.file_bytes().len() as u64)
                .sum(),
            write_slowdowns: fs_state.slowdowns,
            write_stalls: fs_state.stalls,
        }
    }
}

/// One segment, as `strata inspect` shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct SegmentInfo {
    /// Segment id (file name).
    pub id: u64,
    /// Documents stored (live and dead).
    pub documents: usize,
    /// Dead documents (deleted or overwritten later).
    pub deleted: usize,
    /// Size of the segment file.
    pub file_bytes: u64,
    /// Distinct terms.
    pub terms: usize,
    /// The ANN index, if the segment has one.
    pub ann: Option<AnnInfo>,
}

/// A segment's ANN index.
#[derive(Debug, Clone, PartialEq)]
pub struct AnnInfo {
    /// Graph nodes (documents with a vector).
    pub nodes: usize,
    /// Degree bound `R`.
    pub degree_max: usize,
    /// Code kind.
    pub codes: crate::CodeKind,
    /// Bytes per code.
    pub code_bytes: usize,
    /// Bytes it keeps in memory now (codes, node map, cache).
    pub resident_bytes: usize,
    /// Nodes per out-degree (index = degree); empty unless asked for.
    pub degree_histogram: Vec<u64>,
    /// What the planner measured about this segment (`None`: no calibration section).
    pub calibration: Option<CalibrationInfo>,
}

/// A segment's calibration (see `docs/format.md`, "Calibration").
#[derive(Debug, Clone, PartialEq)]
pub struct CalibrationInfo {
    /// Samples (a query with a filter or none).
    pub samples: usize,
    /// Of which filtered.
    pub filtered: usize,
    /// The `k` recall was measured at.
    pub k: u32,
    /// Effort levels per plan (efforts `k · 2^0 … k · 2^(levels−1)`).
    pub levels: usize,
    /// Measured time of one exact distance, in nanoseconds.
    pub exact_ns: f32,
}

/// Counters of a database.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DbStats {
    /// Live segments.
    pub segments: usize,
    /// Memtables frozen and waiting for their flush.
    pub frozen_memtables: usize,
    /// Approximate bytes of the active memtable.
    pub memtable_bytes: usize,
    /// Flushes completed by this handle.
    pub flushes: u64,
    /// WAL position covered by the segments.
    pub checkpoint_lsn: u64,
    /// Segments with an ANN graph.
    pub ann_segments: usize,
    /// Bytes the ANN indexes hold in memory of their own (codes, maps, node caches). Graph
    /// pages a lazy open reads from the mapping are the OS page cache's and not counted here
    /// (the memory budget reserves room for them).
    pub ann_resident_bytes: u64,
    /// Compactions completed by this handle.
    pub compactions: u64,
    /// Segment bytes written by flushes / by compactions (their sum over the flushed bytes is
    /// the write amplification of the segment files).
    pub flush_bytes_written: u64,
    /// See `flush_bytes_written`.
    pub compaction_bytes_written: u64,
    /// Seconds spent compacting.
    pub compaction_seconds: f64,
    /// Bytes of the live segment files (space amplification = this over the live data).
    pub live_bytes: u64,
    /// Writes delayed 1 ms because flushes fell behind (one frozen memtable short of
    /// `frozen_memtables_max`).
    pub write_slowdowns: u64,
    /// Writes that waited for a flush (`frozen_memtables_max` frozen memtables).
    pub write_stalls: u64,
}

struct CompactionCounters {
    compactions: u64,
    flush_bytes: u64,
    compaction_bytes: u64,
    compaction_seconds: f64,
    slowdowns: u64,
    stalls: u64,
}

impl Inner {
    /// The log of a writable handle.
    fn wal(&self) -> Result<&Wal> {
        self.wal
            .as_ref()
            .ok_or_else(|| Error::ReadOnly(self.dir.clone()))
    }

    fn check_poison(&self) -> Result<()> {
        if self.wal.is_none() {
            return Err(Error::ReadOnly(self.dir.clone()));
        }
        match self.poison.lock().clone() {
            Some(cause) => Err(Error::Poisoned(cause)),
            None => Ok(()),
        }
    }

    fn set_poison(&self, cause: String) {
        self.poison.lock().get_or_insert(cause);
        self.flush.cond.notify_all();
    }

    /// Back-pressure while too many frozen memtables await their flush, in two stages: with one frozen memtable short of the limit, each write
    /// is delayed 1 ms (the flusher and compactions catch up while writers keep moving); at
    /// the limit, writers wait. Both are counted, and the first of each stage per episode is
    /// logged.
    fn wait_for_flush_room(&self) {
        let max = self.options.frozen_memtables_max.max(1);
        let frozen = self.version.lock().frozen.len();
        if frozen + 1 == max && max > 1 {
            let already = {
                let mut st = self.flush.state.lock();
                st.slowdowns += 1;
                st.stalled = false;
                std::mem::replace(&mut st.slowed, true)
            };
            if !already {
                log::warn!(
                    "strata {}: writes slowed down ({frozen} memtables await their flush)",
                    self.dir.display()
                );
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
            return;
        }
        let mut st = self.flush.state.lock();
        if frozen < max {
            st.slowed = false;
            st.stalled = false;
            return;
        }
        st.stalls += 1;
        if !std::mem::replace(&mut st.stalled, true) {
            log::warn!(
                "strata {}: writes stalled until a flush completes ({frozen} memtables await it)",
                self.dir.display()
            );
        }
        while self.version.lock().frozen.len() >= max && self.poison.lock().is_none() && !st.stop {
            self.flush
                .cond
                .wait_for(&mut st, std::time::Duration::from_millis(50));
        }
    }

    /// Swap in an empty memtable; the old one joins the frozen list. With `force`, freeze any
    /// non-empty memtable; otherwise only one past the threshold (another writer may have won).
    fn freeze(&self, force: bool) {
        let frozen = self.writes.exclusive(|mark| {
            let mut v = self.version.lock();
            let bytes = v.active.mem_bytes();
            if bytes == 0 || (!force && bytes < self.options.flush_threshold_bytes) {
                return false;
            }
            let mut next = Version::clone(&v);
            next.frozen.insert(0, (v.active.clone(), mark));
            next.active = Arc::new(Memtable::new());
            *v = Arc::new(next);
            true
        });
        if !frozen {
            return;
        }
        // Pass through the flusher's mutex before notifying: the flusher checks "nothing
        // frozen" and starts waiting under that mutex, so a notify sent between its check and
        // its wait would be lost (seen as a hang once compaction changed the timing).
        drop(self.flush.state.lock());
        self.flush.cond.notify_all();
    }

    /// Write `docs` (sorted, unique) as segment `id` and open it; nothing for no documents.
    /// Returns the segment and the bytes written.
    fn new_segment(
        &self,
        id: u64,
        docs: &[Arc<Document>],
        reuse: Option<ReuseGraph>,
        index: bool,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<(Option<Arc<Segment>>, u64)> {
        if docs.is_empty() {
            return Ok((None, 0));
        }
        let path = self.dir.join(SEGMENTS_DIR).join(segment_name(id));
        let write = || {
            write_segment_with(
                &self.fs,
                &path,
                docs,
                &self.schema,
                index.then_some(&self.options.ann),
                reuse,
                progress,
            )
        };
        let bytes = match &self.pool {
            Some(pool) => pool.install(write)?,
            None => write()?,
        };
        Ok((Some(self.open_segment(&path, id, bytes)?), bytes))
    }

    /// Open segment `id` just written at `path` (`bytes` long) with the database's cache and
    /// ANN budget.
    fn open_segment(&self, path: &Path, id: u64, bytes: u64) -> Result<Arc<Segment>> {
        Ok(Arc::new(Segment::open(
            &self.fs,
            path,
            id,
            self.schema.clone(),
            self.cache.clone(),
            Some(self.ann_budget.clone()),
            Some(bytes),
        )?))
    }

    /// Flush the oldest frozen memtable, if any. Returns whether one was flushed.
    fn flush_one(&self) -> Result<bool> {
        let _maintenance = self.maintenance.lock();
        let v = self.version.lock().clone();
        let Some((mem, mark)) = v.frozen.last().cloned() else {
            return Ok(false);
        };
        // The memtable's state at its mark: live documents and every key it touched.
        let mut docs = Vec::new();
        let mut touched = HashSet::new();
        mem.for_each_visible(
            mark,
            std::ops::Bound::Unbounded,
            std::ops::Bound::Unbounded,
            |k, e| {
                touched.insert(k.to_vec());
                if let Some(d) = e {
                    docs.push(d.clone());
                }
                true
            },
        );
        let seg_dir = self.dir.join(SEGMENTS_DIR);
        let mut m = self.manifest.lock().clone();
        let id = m.next_segment_id;
        let (new_seg, bytes) =
            self.new_segment(id, &docs, None, self.options.ann_at_flush, &|_| {})?;
        self.flush.state.lock().flush_bytes += bytes;
        // Older copies of every touched key die in their segment's deletion bitmap.
        let mut segments = Vec::with_capacity(v.segments.len() + 1);
        for ls in &v.segments {
            let mut deleted = (*ls.deleted).clone();
            let mut changed = false;
            for k in &touched {
                if let Some(i) = ls.seg.find(k) {
                    if !deleted.get(i) {
                        deleted.set(i);
                        changed = true;
                    }
                }
            }
            if changed {
                let gen = ls.deletes_gen + 1;
                deletes::write(
                    &self.fs,
                    &seg_dir.join(deletes_name(ls.seg.id, gen)),
                    &deleted,
                )?;
                segments.push(LiveSegment::new(ls.seg.clone(), Arc::new(deleted), gen));
            } else {
                segments.push(ls.clone());
            }
        }
        if let Some(seg) = &new_seg {
            segments.insert(
                0,
                LiveSegment::new(seg.clone(), Arc::new(Bitset::new(seg.len())), 0),
            );
        }
        // Segments that are now entirely dead are dropped from the manifest (and their files
        // retired once it is durable; holding them here keeps the mark before the last drop).
        let dead: Vec<Arc<Segment>> = segments
            .iter()
            .filter(|ls| ls.deleted.count() >= ls.seg.len())
            .map(|ls| ls.seg.clone())
            .collect();
        segments.retain(|ls| ls.deleted.count() < ls.seg.len());
        m.number += 1;
        m.next_segment_id = id + 1;
        m.checkpoint_lsn = mark;
        m.segments = manifest_segments(&segments);
        manifest::write(&self.fs, &self.dir, &m)?;
        // Durable: install, then clean up.
        {
            let mut cur = self.version.lock();
            let mut next = Version::clone(&cur);
            next.frozen.retain(|(f, _)| !Arc::ptr_eq(f, &mem));
            next.segments = segments;
            *cur = Arc::new(next);
        }
        *self.manifest.lock() = m.clone();
        self.wal()?.truncate_below(mark)?;
        // Everything the new manifest does not name goes: the old manifest, superseded bitmap
        // generations (snapshots read bitmaps into memory). Segments that died entirely go
        // when the last snapshot holding them does.
        for seg in &dead {
            seg.retire();
        }
        drop(dead);
        remove_orphans(&self.fs, &self.dir, &m, Sweep::NotSegments)?;
        Ok(true)
    }
}

impl Inner {
    /// A segment big enough for a graph that was flushed without one.
    fn needs_index(&self, ls: &LiveSegment) -> bool {
        ls.seg.ann().is_none() && ls.seg.vector_count() >= self.options.ann.min_vectors.max(2)
    }

    /// When writers have paused (no frozen memtable, the active one under 1/8 of the flush
    /// threshold): one flushed segment without its graph, the smallest first.
    fn index_pick(&self) -> Vec<u64> {
        let v = self.version.lock().clone();
        let idle =
            v.frozen.is_empty() && v.active.mem_bytes() < self.options.flush_threshold_bytes / 8;
        if !idle {
            return Vec::new();
        }
        v.segments
            .iter()
            .filter(|ls| self.needs_index(ls))
            .min_by_key(|ls| (ls.seg.len(), ls.seg.id))
            .map(|ls| vec![ls.seg.id])
            .unwrap_or_default()
    }

    /// The segments the policy would merge now (ids), if any: every segment whose dead
    /// fraction passes `deleted_ratio_max`; every segment with dead documents when they are
    /// more than a third of all stored (space amplification above 1.5); and, when more than
    /// `segments_max` are live, the smallest ones (at most `MERGE_WIDTH`) toward
    /// `segments_max / 2`; otherwise, once writers pause, one segment to index.
    fn compaction_pick(&self) -> Vec<u64> {
        let v = self.version.lock().clone();
        let dead: usize = v.segments.iter().map(|ls| ls.deleted.count()).sum();
        let stored: usize = v.segments.iter().map(|ls| ls.seg.len()).sum();
        let space_bound = dead * 3 > stored;
        let mut pick: Vec<u64> = v
            .segments
            .iter()
            .filter(|ls| {
                let d = ls.deleted.count();
                (d as f64 > self.options.deleted_ratio_max * ls.seg.len() as f64)
                    || (space_bound && d > 0)
            })
            .map(|ls| ls.seg.id)
            .collect();
        if pick.is_empty() {
            pick = self.index_pick();
        }
        if v.segments.len() > self.options.segments_max {
            let mut by_size: Vec<&LiveSegment> = v.segments.iter().collect();
            by_size.sort_by_key(|ls| (ls.seg.file_bytes().len(), ls.seg.id));
            // At most MERGE_WIDTH at a time: one merge of 11 of 14 equal segments (900k
            // documents, one graph) held the flusher for many minutes; the policy runs after
            // every flush, so the count still converges.
            let merge = (v.segments.len() - self.options.segments_max / 2 + 1).min(MERGE_WIDTH);
            for ls in by_size.into_iter().take(merge) {
                if !pick.contains(&ls.seg.id) {
                    pick.push(ls.seg.id);
                }
            }
        }
        pick
    }

    /// Merge the segments `ids` into one: live documents only (dead and superseded copies
    /// dropped), postings, columns and a graph rebuilt over the merged vectors. Installed with
    /// one manifest; the inputs' files go when the manifest is durable (snapshots keep their
    /// mappings). Returns whether anything changed.
    fn compact_segments(
        &self,
        ids: Option<&[u64]>,
        progress: &(dyn Fn(u64, u64) + Sync),
    ) -> Result<bool> {
        let _maintenance = self.maintenance.lock();
        let started = std::time::Instant::now();
        let v = self.version.lock().clone();
        // `None` = every segment, as of now (under the lock: a background compaction may
        // have just replaced some).
        let all: Vec<u64> = v.segments.iter().map(|ls| ls.seg.id).collect();
        let ids = ids.unwrap_or(&all);
        let inputs: Vec<&LiveSegment> = v
            .segments
            .iter()
            .filter(|ls| ids.contains(&ls.seg.id))
            .collect();
        // One segment with nothing to drop is rewritten only to give it its graph.
        let single_clean = inputs.len() == 1
            && inputs
                .iter()
                .all(|ls| ls.deleted.count() == 0 && !self.needs_index(ls));
        if inputs.is_empty() || single_clean {
            return Ok(false);
        }
        let mut docs = Vec::new();
        for ls in &inputs {
            for i in 0..ls.seg.len() {
                if !ls.deleted.get(i) {
                    docs.push(Arc::new(ls.seg.doc(i)?));
                }
            }
        }
        // A key is live in at most one segment, so the merge is a sort.
        docs.sort_by(|a, b| a.key.cmp(&b.key));
        let mut m = self.manifest.lock().clone();
        let id = m.next_segment_id;
        let reuse = if self.options.compaction_reuse_graph {
            reuse_plan(&inputs, &docs)?
        } else {
            None
        };
        let total = docs.len() as u64;
        let (new_seg, bytes) =
            self.new_segment(id, &docs, reuse, true, &|done| progress(done, total))?;
        self.flush.state.lock().compaction_bytes += bytes;
        // The merged segment has the highest id, so it is listed as the newest (manifests
        // keep ids increasing); order does not matter to reads, as a key is live in at most
        // one segment.
        let mut segments: Vec<LiveSegment> = v
            .segments
            .iter()
            .filter(|ls| !ids.contains(&ls.seg.id))
            .cloned()
            .collect();
        if let Some(seg) = &new_seg {
            segments.insert(
                0,
                LiveSegment::new(seg.clone(), Arc::new(Bitset::new(seg.len())), 0),
            );
        }
        m.next_segment_id = id + 1;
        self.install(&v, m, segments, ids)?;
        let mut st = self.flush.state.lock();
        st.compactions += 1;
        st.compaction_seconds += started.elapsed().as_secs_f64();
        Ok(true)
    }
}

impl Inner {
    /// See [`Db::recalibrate`]. Under the maintenance lock: the segment list changes only
    /// here, in flushes and in compactions.
    fn recalibrate(
        &self,
        queries: &[Vec<f32>],
        filters: Option<&[Option<crate::Filter>]>,
    ) -> Result<usize> {
        let _maintenance = self.maintenance.lock();
        let v = self.version.lock().clone();
        let mut m = self.manifest.lock().clone();
        let seg_dir = self.dir.join(SEGMENTS_DIR);
        let opts = crate::query::calibrate::CalibrateOptions::default();
        let mut segments = Vec::with_capacity(v.segments.len());
        let mut replaced = Vec::new();
        for ls in &v.segments {
            let cal = match &self.pool {
                Some(pool) => pool.install(|| {
                    crate::query::calibrate::calibrate_from_queries(
                        &ls.seg, queries, filters, &opts,
                    )
                })?,
                None => crate::query::calibrate::calibrate_from_queries(
                    &ls.seg, queries, filters, &opts,
                )?,
            };
            let Some(cal) = cal else {
                segments.push(ls.clone());
                continue;
            };
            let bytes =
                crate::segment::with_calibration(ls.seg.file_bytes().to_vec(), &cal.encode())?;
            let id = m.next_segment_id;
            m.next_segment_id = id + 1;
            let path = seg_dir.join(segment_name(id));
            crate::files::write_durably(&self.fs, &path, &bytes)?;
            let seg = self.open_segment(&path, id, bytes.len() as u64)?;
            // The same documents in the same order: the deletions carry over, under the new id.
            let gen = if ls.deleted.count() > 0 {
                deletes::write(&self.fs, &seg_dir.join(deletes_name(id, 1)), &ls.deleted)?;
                1
            } else {
                0
            };
            segments.push(LiveSegment::new(seg, ls.deleted.clone(), gen));
            replaced.push(ls.seg.id);
        }
        if replaced.is_empty() {
            return Ok(0);
        }
        // A version lists segments newest (highest id) first, a manifest in increasing ids;
        // the rewritten ones took new ids. (Reads do not depend on the order: a key is live in
        // at most one segment.)
        segments.sort_by_key(|ls| std::cmp::Reverse(ls.seg.id));
        self.install(&v, m, segments, &replaced)?;
        Ok(replaced.len())
    }

    /// Publish `segments` (newest first) as the segment list replacing `v`'s, with manifest
    /// `m` (its next segment id already advanced): the manifest is written first, then the
    /// version swapped; the `retired` segments' files go when the last snapshot holding them
    /// does (`v` still holds them here, so the mark always precedes the last drop). Callers
    /// hold the maintenance lock — only flushes, compactions and recalibrations change the
    /// segment list, and all hold it — so the current list is still `v`'s.
    fn install(
        &self,
        v: &Version,
        mut m: Manifest,
        segments: Vec<LiveSegment>,
        retired: &[u64],
    ) -> Result<()> {
        m.number += 1;
        m.segments = manifest_segments(&segments);
        manifest::write(&self.fs, &self.dir, &m)?;
        {
            let mut cur = self.version.lock();
            let mut next = Version::clone(&cur);
            next.segments = segments;
            *cur = Arc::new(next);
        }
        *self.manifest.lock() = m.clone();
        for ls in v.segments.iter().filter(|ls| retired.contains(&ls.seg.id)) {
            ls.seg.retire();
        }
        remove_orphans(&self.fs, &self.dir, &m, Sweep::NotSegments)?;
        Ok(())
    }
}

fn flusher_loop(inner: &Arc<Inner>) {
    loop {
        let policy = || {
            if inner.options.compaction {
                inner.compaction_pick()
            } else {
                inner.index_pick()
            }
        };
        {
            let mut st = inner.flush.state.lock();
            // Woken by a freeze; every 250 ms also look for maintenance to do once writers
            // pause (indexing segments flushed without a graph).
            while !st.stop && inner.version.lock().frozen.is_empty() {
                let timed_out = inner
                    .flush
                    .cond
                    .wait_for(&mut st, std::time::Duration::from_millis(250))
                    .timed_out();
                if timed_out && !st.stop && inner.poison.lock().is_none() && !policy().is_empty() {
                    break;
                }
            }
            if st.stop {
                return;
            }
        }
        if inner.poison.lock().is_some() {
            return;
        }
        let flushed = inner.flush_one().and_then(|f| {
            // Compact between flushes, unless writers are about to feel back-pressure (then
            // the queued memtables go first).
            let frozen = inner.version.lock().frozen.len();
            if frozen + 1 < inner.options.frozen_memtables_max {
                let pick = policy();
                if !pick.is_empty() {
                    inner.compact_segments(Some(&pick), &|_, _| {})?;
                }
            }
            Ok(f)
        });
        match flushed {
            Ok(_) => {
                inner.flush.state.lock().done += 1;
                inner.flush.cond.notify_all();
            }
            Err(e) => {
                inner.set_poison(format!("flush failed: {e}"));
                return;
            }
        }
    }
}

/// Most segments one policy-driven merge takes (`Db::compact` takes all).
const MERGE_WIDTH: usize = 4;

/// The graph a compaction starts from: the largest input graph, if at least half of its
/// segment is live, mapped onto the merged rows (`docs` sorted by key; rows = documents with a
/// vector, in order).
fn reuse_plan(inputs: &[&LiveSegment], docs: &[Arc<Document>]) -> Result<Option<ReuseGraph>> {
    let Some((ls, idx)) = inputs
        .iter()
        .filter_map(|ls| Some((*ls, ls.seg.ann()?)))
        .max_by_key(|(ls, idx)| (idx.len(), ls.seg.id))
    else {
        return Ok(None);
    };
    let live = ls.seg.len() - ls.deleted.count();
    if live * 2 < ls.seg.len() {
        return Ok(None); // mostly dead: a rebuild is cheaper and no worse
    }
    let (adj, ords, entry) = idx.adjacency(ls.seg.file_bytes())?;
    let mut row_of_doc = Vec::with_capacity(docs.len());
    let mut rows = 0u32;
    for d in docs {
        row_of_doc.push(d.vector.is_some().then(|| {
            rows += 1;
            rows - 1
        }));
    }
    let new_row = ords
        .iter()
        .map(|&o| {
            if ls.deleted.get(o) {
                return None;
            }
            let key = ls.seg.key(o);
            let j = docs.binary_search_by(|d| d.key.as_slice().cmp(key)).ok()?;
            row_of_doc.get(j).copied().flatten()
        })
        .collect();
    let (quant, codes) = idx.quantizer_and_codes();
    Ok(Some(ReuseGraph {
        adj,
        new_row,
        entry,
        quant,
        codes,
    }))
}

/// Manifest entries of `segments` (newest first in a version, oldest first in a manifest).
fn manifest_segments(segments: &[LiveSegment]) -> Vec<SegmentMeta> {
    segments
        .iter()
        .rev()
        .map(|ls| SegmentMeta {
            id: ls.seg.id,
            doc_count: ls.seg.len() as u32,
            deletes_gen: ls.deletes_gen,
            file_bytes: Some(ls.seg.file_bytes().len() as u64),
        })
        .collect()
}

/// Which files [`remove_orphans`] may remove.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Sweep {
    /// At open: nothing is held yet, every unnamed file goes.
    All,
    /// While open: segment files may still be held by snapshots; they go through
    /// `Segment::retire` instead.
    NotSegments,
}

/// Remove the files of the database directory that are provably this database's own garbage:
/// names of its own kinds (segment, deletion bitmap, manifest, and their `.tmp`) that `m` does
/// not name — the leftovers of crashed flushes and compactions, superseded bitmaps and
/// manifests. Anything else (`NOTES.txt`, `x.seg.bak`, `MANIFEST-backup`, `other.tmp`) is
/// left alone. Returns the names removed.
fn remove_orphans(fs: &SharedFs, dir: &Path, m: &Manifest, sweep: Sweep) -> Result<Vec<String>> {
    let seg_dir = dir.join(SEGMENTS_DIR);
    let keep = m.file_names();
    let names = fs
        .list_dir(&seg_dir)
        .map_err(|e| Error::io("list directory", &seg_dir, e))?;
    let mut removed = Vec::new();
    for n in &names {
        let (own, temp) = match n.strip_suffix(".tmp") {
            Some(base) => (FileType::parse(base), true),
            None => (FileType::parse(n), false),
        };
        let Some(kind) = own.filter(FileType::in_segments_dir) else {
            continue;
        };
        // Segment files still named by the manifest stay; while open, unnamed segments may
        // still be held by snapshots and go through `Segment::retire` instead.
        let held = sweep == Sweep::NotSegments && matches!(kind, FileType::Segment { .. });
        if !temp && (keep.contains(n) || held) {
            continue;
        }
        let p = seg_dir.join(n);
        fs.remove_file(&p).map_err(|e| Error::io("remove", &p, e))?;
        removed.push(format!("{SEGMENTS_DIR}/{n}"));
    }
    let names = fs
        .list_dir(dir)
        .map_err(|e| Error::io("list directory", dir, e))?;
    for n in &names {
        let stale_manifest = manifest::parse_manifest_name(n).is_some_and(|k| k != m.number);
        let own_temp = n.strip_suffix(".tmp").is_some_and(|base| {
            matches!(
                FileType::parse(base),
                Some(FileType::Manifest { .. } | FileType::Schema)
            )
        });
        if stale_manifest || own_temp {
            let p = dir.join(n);
            fs.remove_file(&p).map_err(|e| Error::io("remove", &p, e))?;
            removed.push(n.clone());
        }
    }
    if !removed.is_empty() {
        fs.sync_dir(&seg_dir)
            .map_err(|e| Error::io("fsync directory", &seg_dir, e))?;
        fs.sync_dir(dir)
            .map_err(|e| Error::io("fsync directory", dir, e))?;
    }
    Ok(removed)
}

/// With no manifest: what says the database did flush once (so its manifest is lost, not
/// unwritten) — segment or bitmap files, or a log that no longer starts at LSN 1.
fn flushed_evidence(fs: &SharedFs, seg_dir: &Path, wal_dir: &Path) -> Result<Option<String>> {
    if fs.exists(seg_dir) {
        let names = fs
            .list_dir(seg_dir)
            .map_err(|e| Error::io("list directory", seg_dir, e))?;
        let own: Vec<&String> = names
            .iter()
            .filter(|n| FileType::parse(n).is_some_and(|t| t.in_segments_dir()))
            .collect();
        if let Some(first) = own.first() {
            return Ok(Some(format!(
                "{} segment or bitmap file(s) in {} (e.g. {first})",
                own.len(),
                seg_dir.display()
            )));
        }
    }
    if fs.exists(wal_dir) {
        let names = fs
            .list_dir(wal_dir)
            .map_err(|e| Error::io("list directory", wal_dir, e))?;
        if let Some(first) = names
            .iter()
            .filter_map(|n| strata_wal::parse_file_name(n))
            .min()
        {
            if first > 1 {
                return Ok(Some(format!(
                    "the log starts at LSN {first}: records before it were checkpointed"
                )));
            }
        }
    }
    Ok(None)
}

/// What [`Db::open`] found and did (see [`Db::recovery`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RecoveryReport {
    /// A bad tail at the end of the log: cut if it was a torn write (bytes saved in
    /// `wal/lost+found`), or left in place when the checkpoint covers it or the handle is
    /// read-only (which then sees the records before it).
    pub wal_tail: Option<strata_wal::TailReport>,
    /// Damage set aside by an explicit repair (`RecoveryMode::SetAside`, `strata recover`).
    pub wal_set_aside: Vec<strata_wal::TailReport>,
    /// The log ended at or below the checkpoint (files lost or cut) and restarted past it.
    pub wal_restarted: bool,
    /// Orphaned files removed (relative to the database directory).
    pub removed: Vec<String>,
}

impl RecoveryReport {
    /// Records that recovery cut or that a read-only handle cannot see, past the checkpoint
    /// — the acknowledged writes at risk. A torn write (`TailKind::Torn`) was not acknowledged
    /// under `SyncMode::Always`.
    pub fn lost_past_checkpoint(&self) -> impl Iterator<Item = &strata_wal::TailReport> {
        self.wal_set_aside
            .iter()
            .chain(&self.wal_tail)
            .filter(|t| !t.covered)
    }
}

/// How often [`Db::open_read_only`] retries when a writer changes the manifest under it.
const READ_ONLY_OPEN_ATTEMPTS: usize = 5;

fn lock_dir(fs: &SharedFs, dir: &Path) -> Result<LockGuard> {
    if !fs.exists(dir) {
        return Err(Error::NotFound(dir.to_owned()));
    }
    let path = dir.join(LOCK_FILE);
    fs.lock_exclusive(&path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::WouldBlock {
            Error::Locked(dir.to_owned())
        } else {
            Error::io("lock", &path, e)
        }
    })
}
