//! Create and open: the directory lock, manifest → segments → WAL replay, orphan cleanup, and
//! what opening found ([`RecoveryReport`]).

use super::*;

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

    pub(super) fn open_locked(dir: &Path, options: Options, lock: LockGuard) -> Result<Db> {
        Db::open_inner(dir, options, Some(lock))
    }

    /// Open with `lock` for writing, or read-only without one.
    pub(super) fn open_inner(dir: &Path, options: Options, lock: Option<LockGuard>) -> Result<Db> {
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
        let segments = open_segments(&fs, dir, &schema, &manifest, &cache, &ann_budget)?;
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
        let pool = (!read_only).then(|| maintenance_pool(&options)).flatten();
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
            compaction: Mutex::new(()),
            last_write_seen: Mutex::new((visible, std::time::Instant::now())),
            pool,
            flush: FlushCtl::default(),
            poison: Mutex::new(None),
            recovery: report,
            _lock: lock,
        });
        let mut threads = Vec::new();
        if !read_only {
            type Loop = fn(&Arc<Inner>);
            let loops: [(&str, Loop); 2] = [
                ("strata-flush", flusher_loop),
                ("strata-compact", compactor_loop),
            ];
            for (name, body) in loops {
                let mine = inner.clone();
                let spawned = std::thread::Builder::new()
                    .name(name.into())
                    .spawn(move || body(&mine));
                match spawned {
                    Ok(h) => threads.push(h),
                    Err(e) => {
                        // Stop what was started before failing the open.
                        let _ = Handle {
                            inner: inner.clone(),
                            threads,
                        };
                        return Err(Error::io("spawn maintenance thread", dir, e));
                    }
                }
            }
        }
        Ok(Db {
            handle: Arc::new(Handle { inner, threads }),
        })
    }
}

/// The live segments the manifest names (newest first), each opened and verified, with its
/// deletion bitmap; a document count that differs from the manifest's is corruption.
fn open_segments(
    fs: &SharedFs,
    dir: &Path,
    schema: &Arc<Schema>,
    manifest: &Manifest,
    cache: &Option<Arc<BlockCache>>,
    ann_budget: &Arc<AnnBudget>,
) -> Result<Vec<LiveSegment>> {
    let seg_dir = dir.join(SEGMENTS_DIR);
    let mut segments = Vec::new();
    for m in manifest.segments.iter().rev() {
        let path = seg_dir.join(segment_name(m.id));
        let seg = Segment::open(
            fs,
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
            g => deletes::read(fs, &seg_dir.join(deletes_name(m.id, g)), seg.len())?,
        };
        segments.push(LiveSegment::new(
            Arc::new(seg),
            Arc::new(deleted),
            m.deletes_gen,
        ));
    }
    Ok(segments)
}

/// The pool background index builds and merges run on (`maintenance_threads`, 0: all cores
/// but one); `None` if the OS refuses threads (maintenance then runs on the caller's pool).
fn maintenance_pool(options: &Options) -> Option<rayon::ThreadPool> {
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
}

/// Which files [`remove_orphans`] may remove.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Sweep {
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
pub(super) fn remove_orphans(
    fs: &SharedFs,
    dir: &Path,
    m: &Manifest,
    sweep: Sweep,
) -> Result<Vec<String>> {
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
        // (A segment's `.tmp` may be a compaction's output being written.)
        let held = sweep == Sweep::NotSegments && matches!(kind, FileType::Segment { .. });
        if held || (!temp && keep.contains(n)) {
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
pub(super) fn flushed_evidence(
    fs: &SharedFs,
    seg_dir: &Path,
    wal_dir: &Path,
) -> Result<Option<String>> {
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
pub(super) const READ_ONLY_OPEN_ATTEMPTS: usize = 5;

pub(super) fn lock_dir(fs: &SharedFs, dir: &Path) -> Result<LockGuard> {
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
