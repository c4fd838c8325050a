//! [`Db`]: create/open, the write path (validate → WAL → memtable → publish) and the read path
//! over [`Snapshot`]s.
//!
//! Invariants:
//! - a batch reaches the memtable only after the WAL acknowledged it, with its LSN as sequence;
//! - the visible sequence advances only over a gap-free prefix of applied LSNs, so a snapshot
//!   never sees batch N+1 without batch N, and `write` returns only once its batch is visible
//!   (read-your-writes);
//! - after a failed WAL append the handle is poisoned: reads work, writes fail until reopen.

use std::collections::BTreeSet;
use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::{Condvar, Mutex};
use strata_wal::io::{LockGuard, SharedFs, StdFs};
use strata_wal::{RecordKind, SyncMode, Wal};

use crate::batch::{self, WriteBatch};
use crate::doc::validate_key;
use crate::memtable::Memtable;
use crate::meta::{read_schema, write_schema, SCHEMA_FILE};
use crate::search::{exact, Hit, Query};
use crate::{Document, Error, Result, Schema};

/// WAL record kind of an encoded write batch.
pub const WAL_KIND_BATCH: RecordKind = RecordKind(1);
/// Lock file inside the database directory.
pub const LOCK_FILE: &str = "LOCK";
/// WAL directory inside the database directory.
pub const WAL_DIR: &str = "wal";

/// Options of [`Db::open`] / [`Db::create_with`].
#[derive(Debug, Clone)]
pub struct Options {
    /// Durability of writes. Default: `SyncMode::Always` (acknowledged after fdatasync).
    pub sync: SyncMode,
    /// WAL file size before rotation. Default 64 MiB (at least 8 MiB + 4 KiB: a batch must fit).
    pub wal_segment_bytes_max: u64,
    /// Keep a zero-filled spare WAL file ready (faster fdatasync). Default true.
    pub wal_preallocate: bool,
    /// File system (tests pass a fault-injecting one). Default: the real one.
    pub fs: SharedFs,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            sync: SyncMode::Always,
            wal_segment_bytes_max: 64 << 20,
            wal_preallocate: true,
            fs: StdFs::shared(),
        }
    }
}

impl Options {
    fn wal_options(&self) -> strata_wal::Options {
        let record_bytes_max = u32::try_from(crate::limits::BATCH_BYTES_MAX).unwrap_or(u32::MAX);
        strata_wal::Options {
            sync: self.sync,
            segment_bytes_max: self
                .wal_segment_bytes_max
                .max(u64::from(record_bytes_max) + 4096),
            record_bytes_max,
            preallocate: self.wal_preallocate,
            ..strata_wal::Options::default()
        }
    }
}

/// Tracks which sequences are applied and publishes the gap-free prefix.
#[derive(Debug)]
struct Visibility {
    state: Mutex<(u64, BTreeSet<u64>)>,
    cond: Condvar,
}

impl Visibility {
    fn new(visible: u64) -> Self {
        Visibility {
            state: Mutex::new((visible, BTreeSet::new())),
            cond: Condvar::new(),
        }
    }

    fn visible(&self) -> u64 {
        self.state.lock().0
    }

    /// Mark `seq` applied, then wait until everything up to it is visible.
    fn publish_and_wait(&self, seq: u64) {
        let mut st = self.state.lock();
        st.1.insert(seq);
        loop {
            let next = st.0 + 1;
            if !st.1.remove(&next) {
                break;
            }
            st.0 = next;
        }
        self.cond.notify_all();
        while st.0 < seq {
            self.cond.wait(&mut st);
        }
    }
}

#[derive(Debug)]
struct Inner {
    dir: PathBuf,
    schema: Arc<Schema>,
    wal: Wal,
    mem: Arc<Memtable>,
    visibility: Visibility,
    poison: Mutex<Option<String>>,
    _lock: LockGuard,
}

/// An open database. Cheap to clone; share it between threads.
#[derive(Debug, Clone)]
pub struct Db {
    inner: Arc<Inner>,
}

/// A consistent read view: it sees exactly the batches visible when it was taken.
#[derive(Debug, Clone)]
pub struct Snapshot {
    seq: u64,
    schema: Arc<Schema>,
    mem: Arc<Memtable>,
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
        fs.create_dir_all(dir)
            .map_err(|e| Error::io("create directory", dir, e))?;
        let lock = lock_dir(fs, dir)?;
        if fs.exists(&dir.join(SCHEMA_FILE)) {
            return Err(Error::AlreadyExists(dir.to_owned()));
        }
        write_schema(fs, dir, &schema)?;
        Db::open_locked(dir, options, lock)
    }

    /// Open an existing database: read the schema, replay the WAL into the memtable.
    pub fn open(dir: impl AsRef<Path>, options: Options) -> Result<Db> {
        let dir = dir.as_ref();
        let lock = lock_dir(&options.fs, dir)?;
        Db::open_locked(dir, options, lock)
    }

    fn open_locked(dir: &Path, options: Options, lock: LockGuard) -> Result<Db> {
        let fs = options.fs.clone();
        let schema = Arc::new(read_schema(&fs, dir)?);
        let wal_dir = dir.join(WAL_DIR);
        let (wal, _recovery) = Wal::open(fs, &wal_dir, options.wal_options())?;
        let mem = Arc::new(Memtable::new());
        let mut reader = wal.reader(1)?;
        while let Some(rec) = reader.next_record()? {
            if rec.kind != WAL_KIND_BATCH {
                continue; // ignorable kinds only: the reader rejects unknown required ones
            }
            let ops = batch::decode(rec.payload, &schema).map_err(|reason| Error::Corruption {
                what: "WAL batch record",
                path: wal_dir.clone(),
                reason: format!("LSN {}: {reason}", rec.lsn),
            })?;
            mem.apply(rec.lsn, ops);
        }
        // Every LSN up to the log's end is applied (batches) or skipped (ignorable kinds).
        let visible = wal.last_lsn();
        Ok(Db {
            inner: Arc::new(Inner {
                dir: dir.to_owned(),
                schema,
                wal,
                mem,
                visibility: Visibility::new(visible),
                poison: Mutex::new(None),
                _lock: lock,
            }),
        })
    }

    /// The schema.
    pub fn schema(&self) -> &Schema {
        &self.inner.schema
    }

    /// The database directory.
    pub fn path(&self) -> &Path {
        &self.inner.dir
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
        if let Some(cause) = self.inner.poison.lock().clone() {
            return Err(Error::Poisoned(cause));
        }
        if batch.is_empty() {
            return Ok(());
        }
        let ops = batch.validate(&self.inner.schema)?;
        let payload = batch::encode(&ops, &self.inner.schema)?;
        let lsn = match self.inner.wal.append(WAL_KIND_BATCH, &payload) {
            Ok(lsn) => lsn,
            Err(e) => {
                self.inner
                    .poison
                    .lock()
                    .get_or_insert_with(|| e.to_string());
                return Err(e.into());
            }
        };
        self.inner.mem.apply(lsn, ops);
        self.inner.visibility.publish_and_wait(lsn);
        Ok(())
    }

    /// A consistent read view of everything visible now.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            seq: self.inner.visibility.visible(),
            schema: self.inner.schema.clone(),
            mem: self.inner.mem.clone(),
        }
    }

    /// Read one document.
    pub fn get(&self, key: &[u8]) -> Result<Option<Arc<Document>>> {
        self.snapshot().get(key)
    }

    /// Documents with keys in `range`, in key order.
    pub fn scan<R: RangeBounds<Vec<u8>>>(&self, range: R) -> Result<Vec<Arc<Document>>> {
        Ok(self.snapshot().scan(range))
    }

    /// Documents whose key starts with `prefix`, in key order.
    pub fn scan_prefix(&self, prefix: &[u8]) -> Result<Vec<Arc<Document>>> {
        Ok(self.snapshot().scan_prefix(prefix))
    }

    /// Run a query on a fresh snapshot.
    pub fn search(&self, q: &Query) -> Result<Vec<Hit>> {
        self.snapshot().search(q)
    }

    /// Make every acknowledged write durable (useful with `SyncMode::Batch`/`Never`).
    pub fn sync(&self) -> Result<()> {
        self.inner.wal.sync()?;
        Ok(())
    }

    /// Approximate bytes held by the memtable.
    pub fn memtable_bytes(&self) -> usize {
        self.inner.mem.mem_bytes()
    }
}

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

impl Snapshot {
    /// The sequence (last visible WAL LSN) this view reads at.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Read one document.
    pub fn get(&self, key: &[u8]) -> Result<Option<Arc<Document>>> {
        validate_key(key)?;
        Ok(self.mem.get(key, self.seq).flatten())
    }

    /// Documents with keys in `range`, in key order.
    pub fn scan<R: RangeBounds<Vec<u8>>>(&self, range: R) -> Vec<Arc<Document>> {
        let lo = range.start_bound().map(Vec::as_slice);
        let hi = range.end_bound().map(Vec::as_slice);
        self.collect(lo, hi)
    }

    /// Documents whose key starts with `prefix`, in key order.
    pub fn scan_prefix(&self, prefix: &[u8]) -> Vec<Arc<Document>> {
        let mut out = Vec::new();
        self.mem.for_each_visible(
            self.seq,
            Bound::Included(prefix),
            Bound::Unbounded,
            |k, v| {
                if !k.starts_with(prefix) {
                    return false;
                }
                if let Some(d) = v {
                    out.push(d.clone());
                }
                true
            },
        );
        out
    }

    fn collect(&self, lo: Bound<&[u8]>, hi: Bound<&[u8]>) -> Vec<Arc<Document>> {
        let mut out = Vec::new();
        self.mem.for_each_visible(self.seq, lo, hi, |_, v| {
            if let Some(d) = v {
                out.push(d.clone());
            }
            true
        });
        out
    }

    /// Run a query. Exact: equals brute force over this snapshot.
    pub fn search(&self, q: &Query) -> Result<Vec<Hit>> {
        q.validate(&self.schema)?;
        let docs = self.collect(Bound::Unbounded, Bound::Unbounded);
        Ok(exact(q, &self.schema, docs.iter()))
    }
}
