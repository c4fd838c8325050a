//! [`Wal`]: open with recovery, append with group commit, sync, truncate, replay.
//!
//! Invariants:
//! - a log file appears under its final name only with a complete, fsynced header (written to
//!   `NAME.wal.tmp`, fsynced, renamed, directory fsynced), so a bad header is always corruption;
//! - before a new file is started the previous one is fsynced, so only the newest file can have
//!   a torn tail;
//! - files are dropped only whole, oldest first, and never the file being appended to.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar as StdCondvar, Mutex as StdMutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::format::{FileHeader, RecordKind, FILE_HEADER_BYTES};
use crate::group_commit::{
    next_seed, Chunk, CommitStats, GroupCommit, NewFile, Pending, Sink, Wait,
};
use crate::options::{Options, RecoveryMode, SyncMode};
use crate::prealloc::Preallocator;
use crate::reader::{
    file_name, list_files, FileScan, LogFile, Stop, WalReader, FILE_READ_BYTES_MAX,
};
use crate::tail::{
    looks_torn, lost_found_path, meaningful_bytes, save_aside, TailKind, TailReport, LOST_FOUND_DIR,
};
use crate::{Error, Lsn, Result};
use strata_io::{FileHandle, SharedFs};

/// What [`Wal::open`] found and repaired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovery {
    /// LSN the next append gets; every lower LSN still present is readable. At least
    /// `Options::checkpoint_lsn + 1`, whatever is left of the log.
    pub next_lsn: Lsn,
    /// Log files present after recovery.
    pub files: usize,
    /// The bad tail found at the end of the newest file, if any: cut (a torn write, or
    /// damage under `SetAside`; bytes saved to `lost+found`) or, when the checkpoint covers
    /// it, left where it is.
    pub tail: Option<TailReport>,
    /// `SetAside` only: damage before the newest file's tail that was set aside (the file
    /// cut at the damage, every later file moved into `lost+found`).
    pub set_aside: Vec<TailReport>,
    /// The log ended at or below the checkpoint (a file was lost or cut), so a new file was
    /// started at `checkpoint_lsn + 1`: LSNs never repeat.
    pub restarted_after_checkpoint: bool,
    /// Leftover temporary files removed.
    pub temp_files_removed: usize,
}

fn lock<T>(m: &StdMutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Create `dir/NAME.wal` for `nf` durably: header into a temp file (a zero-filled spare when
/// one is ready), fsync, rename, fsync dir.
fn create_log_file(
    fs: &SharedFs,
    dir: &Path,
    nf: &NewFile,
) -> Result<(Arc<dyn FileHandle>, PathBuf)> {
    let path = dir.join(file_name(nf.first_lsn));
    let (tmp, file) = match &nf.spare {
        Some(spare) => {
            let file = fs
                .open(spare, true)
                .map_err(|e| Error::io("open spare", spare, e))?;
            (spare.clone(), file)
        }
        None => strata_io::durable::create_temp(fs.as_ref(), &path)?,
    };
    let header = FileHeader {
        version: crate::format::FORMAT_VERSION,
        crc_seed: nf.crc_seed,
        first_lsn: nf.first_lsn,
    };
    file.write_all_at(&header.encode(), 0)
        .map_err(|e| Error::io("write", &tmp, e))?;
    strata_io::durable::install(fs.as_ref(), file.as_ref(), &tmp, &path)?;
    Ok((file, path))
}

/// The sink writing to log files.
struct LogSink {
    fs: SharedFs,
    dir: PathBuf,
    file: Arc<dyn FileHandle>,
    path: PathBuf,
    offset: u64,
    files: Arc<StdMutex<Vec<LogFile>>>,
}

impl std::fmt::Debug for LogSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogSink")
            .field("path", &self.path)
            .field("offset", &self.offset)
            .finish()
    }
}

impl LogSink {
    /// Cut the active file's zero padding (preallocation) past the last record, durably, so a
    /// closed log takes only the bytes it holds. The padding is zeros (a spare is zero-filled
    /// and fsynced before use), so a crash at any point leaves a log with the same records.
    fn trim_padding(&mut self) -> Result<()> {
        let len = self
            .file
            .len()
            .map_err(|e| Error::io("stat", &self.path, e))?;
        if len > self.offset {
            self.file
                .set_len(self.offset)
                .map_err(|e| Error::io("truncate", &self.path, e))?;
            self.file
                .sync_data()
                .map_err(|e| Error::io("fdatasync", &self.path, e))?;
        }
        Ok(())
    }
}

impl Sink for LogSink {
    type Handle = LogHandle;

    fn write(&mut self, chunks: &[Chunk]) -> Result<()> {
        for chunk in chunks {
            if let Some(nf) = &chunk.new_file {
                self.file
                    .sync_data()
                    .map_err(|e| Error::io("fdatasync before rotation", &self.path, e))?;
                let (file, path) = create_log_file(&self.fs, &self.dir, nf)?;
                lock(&self.files).push(LogFile {
                    first_lsn: nf.first_lsn,
                    path: path.clone(),
                });
                self.file = file;
                self.path = path;
                self.offset = FILE_HEADER_BYTES as u64;
            }
            if !chunk.bytes.is_empty() {
                self.file
                    .write_all_at(&chunk.bytes, self.offset)
                    .map_err(|e| Error::io("write", &self.path, e))?;
                self.offset += chunk.bytes.len() as u64;
            }
        }
        Ok(())
    }

    fn sync(&mut self) -> Result<()> {
        self.file
            .sync_data()
            .map_err(|e| Error::io("fdatasync", &self.path, e))
    }

    fn handle(&self) -> LogHandle {
        LogHandle {
            file: self.file.clone(),
            path: Arc::new(self.path.clone()),
        }
    }
}

/// A log file to fdatasync without holding the sink.
#[derive(Clone)]
struct LogHandle {
    file: Arc<dyn FileHandle>,
    path: Arc<PathBuf>,
}

impl crate::group_commit::SyncHandle for LogHandle {
    fn sync(&self) -> Result<()> {
        self.file
            .sync_data()
            .map_err(|e| Error::io("fdatasync", self.path.as_path(), e))
    }
}

struct Inner {
    fs: SharedFs,
    dir: PathBuf,
    options: Options,
    gc: GroupCommit<LogSink>,
    files: Arc<StdMutex<Vec<LogFile>>>,
}

/// Background fdatasync for [`SyncMode::Batch`].
struct Syncer {
    stop: Arc<(StdMutex<bool>, StdCondvar)>,
    handle: Option<JoinHandle<()>>,
}

impl Syncer {
    fn start(inner: &Arc<Inner>, window: Duration) -> Syncer {
        let stop = Arc::new((StdMutex::new(false), StdCondvar::new()));
        let weak = Arc::downgrade(inner);
        let stop2 = stop.clone();
        let handle = std::thread::Builder::new()
            .name("strata-wal-sync".into())
            .spawn(move || loop {
                {
                    let (m, cv) = &*stop2;
                    let g = lock(m);
                    let (g, _) = cv
                        .wait_timeout(g, window)
                        .unwrap_or_else(|e| e.into_inner());
                    if *g {
                        return;
                    }
                }
                let Some(inner) = weak.upgrade() else { return };
                let (written, durable, _) = inner.gc.marks();
                if written > durable && inner.gc.sync_written().is_err() {
                    return; // poisoned: appends report it
                }
            })
            .ok();
        Syncer { stop, handle }
    }

    fn stop(&mut self) {
        let (m, cv) = &*self.stop;
        *lock(m) = true;
        cv.notify_all();
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// A write-ahead log in one directory. Share it between threads with `Arc<Wal>`.
pub struct Wal {
    inner: Arc<Inner>,
    syncer: Option<Syncer>,
    /// Kept for its drop: stops the spare-file thread.
    _prealloc: Option<Preallocator>,
}

impl std::fmt::Debug for Wal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wal")
            .field("dir", &self.inner.dir)
            .field("options", &self.inner.options)
            .finish()
    }
}

fn random_state() -> u64 {
    let mut h = RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.write_u32(std::process::id());
    h.finish()
}

impl Wal {
    /// Open (creating if needed) the log in `dir`, recovering it: leftover temp files are
    /// removed and, under [`RecoveryMode::TolerateCorruptTail`], a torn tail of the newest file
    /// is truncated. Older files are validated when replayed. Recovery is idempotent.
    pub fn open(fs: SharedFs, dir: &Path, options: Options) -> Result<(Wal, Recovery)> {
        options.validate()?;
        strata_io::create_dir_durable(fs.as_ref(), dir)
            .map_err(|e| Error::io("create directory", dir, e))?;
        let mut files = list_files(&fs, dir)?;
        let mut seed_state = random_state();
        let checkpoint = options.checkpoint_lsn;
        let set_aside = if options.recovery == RecoveryMode::SetAside {
            set_aside_older(&fs, dir, &mut files, checkpoint)?
        } else {
            Vec::new()
        };
        let mut tail = None;
        let recovered = match files.last() {
            None => None,
            Some(last) => {
                let (file, fe, t) = recover_last(&fs, dir, last, &options)?;
                tail = t;
                Some((file, last.path.clone(), fe))
            }
        };
        // A log that ends at or below the checkpoint (lost or cut files) restarts past it:
        // a new file at checkpoint + 1, so no LSN is ever handed out twice (replay skips
        // LSNs <= checkpoint). The older files hold only covered records.
        let restarted_after_checkpoint = recovered
            .as_ref()
            .map_or(checkpoint > 0, |(_, _, fe)| fe.next_lsn <= checkpoint);
        let (file, path, offset, next_lsn, file_seed) = match recovered {
            Some((file, path, fe))
                if !restarted_after_checkpoint && fe.version == crate::format::FORMAT_VERSION =>
            {
                (file, path, fe.end as u64, fe.next_lsn, fe.seed)
            }
            // A newest file of an older layout is left as it is (read, never appended to)
            // and a new one starts at the next LSN.
            r => {
                let first_lsn = match r {
                    Some((_, _, fe)) if !restarted_after_checkpoint => fe.next_lsn,
                    _ => checkpoint + 1,
                };
                let nf = NewFile {
                    first_lsn,
                    crc_seed: next_seed(&mut seed_state),
                    spare: None,
                };
                let (file, path) = create_log_file(&fs, dir, &nf)?;
                // An old-layout file with no record has the same name: it was replaced.
                files.retain(|f| f.first_lsn != nf.first_lsn);
                files.push(LogFile {
                    first_lsn: nf.first_lsn,
                    path: path.clone(),
                });
                (
                    file,
                    path,
                    FILE_HEADER_BYTES as u64,
                    nf.first_lsn,
                    nf.crc_seed,
                )
            }
        };
        // Leftover temporary files go once recovery succeeded (a refused open changes nothing).
        let temp_files_removed = remove_temp_files(&fs, dir)?;
        // A file as long as a segment was preallocated (its zeros are padding).
        let file_preallocated =
            file.len().map_err(|e| Error::io("stat", &path, e))? >= options.segment_bytes_max;
        let prealloc = options
            .preallocate
            .then(|| Preallocator::start(fs.clone(), dir));

        let pending = Pending {
            chunks: Vec::new(),
            file_seed,
            file_bytes: offset,
            segment_bytes_max: options.segment_bytes_max,
            seed_state,
            file_preallocated,
            file_capacity: options.segment_bytes_max,
            file_started: std::time::Instant::now(),
            spare_asked: false,
            spares: prealloc.as_ref().map(|p| p.pool.clone()),
            recycled: Vec::new(),
        };
        let files = Arc::new(StdMutex::new(files));
        let sink = LogSink {
            fs: fs.clone(),
            dir: dir.to_owned(),
            file,
            path,
            offset,
            files: files.clone(),
        };
        let inner = Arc::new(Inner {
            fs,
            dir: dir.to_owned(),
            options,
            gc: GroupCommit::new(sink, pending, next_lsn),
            files,
        });
        let syncer = match options.sync {
            SyncMode::Batch(window) => Some(Syncer::start(&inner, window)),
            _ => None,
        };
        let recovery = Recovery {
            next_lsn,
            files: lock(&inner.files).len(),
            tail,
            set_aside,
            restarted_after_checkpoint,
            temp_files_removed,
        };
        Ok((
            Wal {
                inner,
                syncer,
                _prealloc: prealloc,
            },
            recovery,
        ))
    }

    /// Append a [`RecordKind::DATA`] record; see [`Wal::append`].
    pub fn append_data(&self, payload: &[u8]) -> Result<Lsn> {
        self.append(RecordKind::DATA, payload)
    }

    /// Append one record and return its LSN once the sync mode's promise holds: after the
    /// covering fdatasync under [`SyncMode::Always`], after the write to the OS otherwise.
    /// Many threads may append at once; their records share writes and fsyncs.
    pub fn append(&self, kind: RecordKind, payload: &[u8]) -> Result<Lsn> {
        if kind.0 == 0 {
            return Err(Error::ReservedKind(kind.0));
        }
        let max = self.inner.options.record_bytes_max;
        if payload.len() > max as usize {
            return Err(Error::RecordTooLarge {
                len: payload.len(),
                max,
            });
        }
        let wait = match self.inner.options.sync {
            SyncMode::Always => Wait::Durable,
            SyncMode::Batch(_) | SyncMode::Never => Wait::Written,
        };
        self.inner.gc.append(kind, payload, wait)
    }

    /// Make every appended record durable; returns the durable LSN.
    pub fn sync(&self) -> Result<Lsn> {
        self.inner.gc.sync()
    }

    /// LSN of the last appended record (0 if none).
    pub fn last_lsn(&self) -> Lsn {
        self.inner.gc.marks().2.saturating_sub(1)
    }

    /// LSN up to which records are known durable.
    pub fn durable_lsn(&self) -> Lsn {
        self.inner.gc.marks().1
    }

    /// The failure that poisoned the log, if any.
    pub fn poisoned(&self) -> Option<String> {
        self.inner.gc.poison_cause()
    }

    /// Counters of the commit pipeline (records, writes, fsyncs).
    pub fn stats(&self) -> CommitStats {
        self.inner.gc.stats()
    }

    /// The options the log was opened with.
    pub fn options(&self) -> &Options {
        &self.inner.options
    }

    /// The log files, oldest first.
    pub fn files(&self) -> Vec<LogFile> {
        lock(&self.inner.files).clone()
    }

    /// Remove, durably, every whole log file whose records all have LSN <= `checkpoint_lsn`.
    /// The file being appended to is kept. Returns how many files were removed.
    pub fn truncate_below(&self, checkpoint_lsn: Lsn) -> Result<usize> {
        let mut files = lock(&self.inner.files);
        let removable = files
            .windows(2)
            .take_while(|w| {
                w.get(1)
                    .is_some_and(|next| next.first_lsn <= checkpoint_lsn + 1)
            })
            .count();
        if removable == 0 {
            return Ok(0);
        }
        for f in files.iter().take(removable) {
            self.inner
                .fs
                .remove_file(&f.path)
                .map_err(|e| Error::io("remove", &f.path, e))?;
        }
        files.drain(..removable);
        drop(files);
        self.inner
            .fs
            .sync_dir(&self.inner.dir)
            .map_err(|e| Error::io("fsync directory", &self.inner.dir, e))?;
        Ok(removable)
    }

    /// Read records with LSN >= `from_lsn` written before this call, in LSN order. Every frame
    /// read is verified; damage is an [`Error::Corruption`] naming file, offset and LSN.
    pub fn reader(&self, from_lsn: Lsn) -> Result<WalReader> {
        let (written, _, _) = self.inner.gc.marks();
        WalReader::new(
            self.inner.fs.clone(),
            self.files(),
            from_lsn,
            written + 1,
            self.inner.options.known_kinds_max,
        )
    }

    /// Sync (unless poisoned), cut the active file's preallocated zero padding, and close.
    /// Errors are reported, unlike on drop (which does the same, best effort).
    pub fn close(mut self) -> Result<()> {
        if let Some(mut s) = self.syncer.take() {
            s.stop();
        }
        if self.poisoned().is_some() {
            return Ok(());
        }
        self.sync()?;
        self.trim_padding()
    }

    /// See [`LogSink::trim_padding`]: at close, once every record is durable.
    fn trim_padding(&self) -> Result<()> {
        self.inner
            .gc
            .with_idle_sink(LogSink::trim_padding)
            .unwrap_or(Ok(()))
    }
}

impl Drop for Wal {
    fn drop(&mut self) {
        if let Some(mut s) = self.syncer.take() {
            s.stop();
        }
        if self.inner.options.sync != SyncMode::Always && self.poisoned().is_none() {
            let _ = self.sync(); // best effort; use close() to see the error
        }
        // Best effort too: a log left padded is as valid, only larger.
        let _ = self.trim_padding();
    }
}

fn remove_temp_files(fs: &SharedFs, dir: &Path) -> Result<usize> {
    let names = fs
        .list_dir(dir)
        .map_err(|e| Error::io("list directory", dir, e))?;
    let mut removed = 0;
    for name in names.iter().filter(|n| n.ends_with(".wal.tmp")) {
        let p = dir.join(name);
        fs.remove_file(&p).map_err(|e| Error::io("remove", &p, e))?;
        removed += 1;
    }
    if removed > 0 {
        fs.sync_dir(dir)
            .map_err(|e| Error::io("fsync directory", dir, e))?;
    }
    Ok(removed)
}

/// What recovery of the newest file gives: its handle, how it ends (after any cut) and the
/// report of a bad tail.
type Recovered = (Arc<dyn FileHandle>, FileEnd, Option<TailReport>);

/// How one log file ends: after its last valid record (`end`, `next_lsn`), and what bad
/// frame (if any) stops the scan there.
pub(crate) struct FileEnd {
    pub end: usize,
    pub next_lsn: Lsn,
    pub seed: u32,
    /// The file's frame layout version.
    pub version: u32,
    pub bad: Option<BadFrame>,
}

/// The first bad frame of a file.
pub(crate) struct BadFrame {
    pub offset: usize,
    pub reason: String,
    pub kind: TailKind,
    /// A valid frame follows it in the file (whose LSN is unknown: it may be past any
    /// checkpoint, so such damage is never taken as covered).
    pub followed_by_valid: bool,
}

/// Scan `buf` (the whole file `file`) to its end. A bad header is an error; a bad frame is
/// returned with its classification (a torn write only when nothing valid follows it).
pub(crate) fn scan_file_end(buf: &[u8], file: &LogFile) -> Result<FileEnd> {
    let mut scan = FileScan::start(buf, &file.path, file.first_lsn)?;
    loop {
        let bad = match scan.next(buf) {
            Ok(_) => continue,
            Err(Stop::End) => None,
            Err(Stop::Corrupt { offset, reason }) => Some(BadFrame {
                offset,
                reason,
                kind: TailKind::Damaged,
                followed_by_valid: true,
            }),
            Err(Stop::Tail { offset, reason }) => Some(BadFrame {
                offset,
                reason: reason.to_owned(),
                kind: if looks_torn(buf, offset, scan.version) {
                    TailKind::Torn
                } else {
                    TailKind::Damaged
                },
                followed_by_valid: false,
            }),
        };
        return Ok(FileEnd {
            end: bad.as_ref().map_or(scan.pos, |b| b.offset),
            next_lsn: scan.next_lsn,
            seed: scan.seed,
            version: scan.version,
            bad,
        });
    }
}

/// The report of `fe`'s bad frame in `file`, whose records end before `next_first` (the next
/// file's first LSN, if there is one). Covered means every record from the bad frame on is at
/// or below the checkpoint, which only a bad frame with nothing valid after it can show.
fn tail_report(
    buf: &[u8],
    file: &LogFile,
    fe: &FileEnd,
    checkpoint: Lsn,
    next_first: Option<Lsn>,
) -> Option<TailReport> {
    let bad = fe.bad.as_ref()?;
    let last_held = next_first.map_or(fe.next_lsn, |n| n.saturating_sub(1).max(fe.next_lsn));
    Some(TailReport {
        path: file.path.clone(),
        offset: bad.offset as u64,
        lsn: fe.next_lsn,
        bytes: meaningful_bytes(buf, bad.offset).len() as u64,
        kind: bad.kind,
        covered: !bad.followed_by_valid && last_held <= checkpoint,
        reason: bad.reason.clone(),
        saved_to: None,
    })
}

/// Scan the newest file and act on a bad tail per the mode: a torn write is cut (its bytes
/// saved to `lost+found` first); damage is an error unless `SetAside` (then cut the same way)
/// or every record from it on is covered by the checkpoint (then nothing is cut: the caller
/// starts a new file past the checkpoint).
fn recover_last(fs: &SharedFs, dir: &Path, last: &LogFile, options: &Options) -> Result<Recovered> {
    let path = &last.path;
    let (file, buf) = read_log_file(fs, last, true)?;
    let fe = scan_file_end(&buf, last)?;
    let Some(mut report) = tail_report(&buf, last, &fe, options.checkpoint_lsn, None) else {
        return Ok((file, fe, None));
    };
    let refuse = |report: &TailReport, advice: &str| {
        Err(Error::corruption(
            path,
            report.offset,
            report.lsn,
            format!("{}{advice}", report.reason),
        ))
    };
    match (options.recovery, report.kind) {
        (RecoveryMode::Strict, _) => return refuse(&report, ""),
        _ if report.covered => {
            // Everything from the bad frame on is in the caller's checkpoint: leave the file
            // as it is (nothing is appended to it again) and lose nothing.
            return Ok((file, fe, Some(report)));
        }
        (RecoveryMode::TolerateCorruptTail, TailKind::Damaged) => {
            return refuse(
                &report,
                "; the bad frame is not an interrupted write, so an acknowledged record may be \
                 damaged: nothing was cut (open with RecoveryMode::SetAside to set the bytes \
                 from here on aside)",
            )
        }
        (RecoveryMode::TolerateCorruptTail, TailKind::Torn) | (RecoveryMode::SetAside, _) => {}
    }
    report.saved_to = cut_aside(fs, dir, last, &file, &buf, fe.end)?;
    Ok((file, fe, Some(report)))
}

/// Save the bytes of `file` (held in `buf`) from `end` to `lost+found`, then cut the file at
/// `end` durably. Returns where the bytes went (`None`: only zeros were cut).
fn cut_aside(
    fs: &SharedFs,
    dir: &Path,
    file: &LogFile,
    handle: &Arc<dyn FileHandle>,
    buf: &[u8],
    end: usize,
) -> Result<Option<PathBuf>> {
    let saved = save_aside(
        fs,
        dir,
        &name_of(&file.path),
        end as u64,
        meaningful_bytes(buf, end),
    )?;
    handle
        .set_len(end as u64)
        .map_err(|e| Error::io("truncate bad tail", &file.path, e))?;
    handle
        .sync_data()
        .map_err(|e| Error::io("fdatasync", &file.path, e))?;
    Ok(saved)
}

/// Open a log file (`writable` for recovery's cuts) and read it whole.
fn read_log_file(
    fs: &SharedFs,
    file: &LogFile,
    writable: bool,
) -> Result<(Arc<dyn FileHandle>, Vec<u8>)> {
    let h = fs
        .open(&file.path, writable)
        .map_err(|e| Error::io("open", &file.path, e))?;
    let buf = h
        .read_all(FILE_READ_BYTES_MAX)
        .map_err(|e| Error::io("read", &file.path, e))?;
    Ok((h, buf))
}

/// The file name of a log file's path (for `lost+found` names).
fn name_of(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// `SetAside` only: find the first bad point in the files that hold records past the
/// checkpoint (a bad frame, a bad header, or a gap between files) short of the newest file's
/// tail, cut that file there (bytes saved aside) and move every later file into `lost+found`.
/// Returns what was set aside; `files` keeps the files left.
fn set_aside_older(
    fs: &SharedFs,
    dir: &Path,
    files: &mut Vec<LogFile>,
    checkpoint: Lsn,
) -> Result<Vec<TailReport>> {
    let mut reports = Vec::new();
    let start = files
        .iter()
        .rposition(|f| f.first_lsn <= checkpoint + 1)
        .unwrap_or(0);
    let mut i = start;
    while i + 1 < files.len() {
        let (Some(f), Some(next)) = (files.get(i), files.get(i + 1)) else {
            break;
        };
        let (h, buf) = read_log_file(fs, f, true)?;
        let fe = scan_file_end(&buf, f)?;
        let gap = fe.next_lsn != next.first_lsn;
        if fe.bad.is_none() && !gap {
            i += 1;
            continue;
        }
        let mut report =
            tail_report(&buf, f, &fe, checkpoint, Some(next.first_lsn)).unwrap_or(TailReport {
                path: f.path.clone(),
                offset: fe.end as u64,
                lsn: fe.next_lsn,
                bytes: 0,
                kind: TailKind::Damaged,
                covered: next.first_lsn.saturating_sub(1) <= checkpoint,
                reason: format!(
                    "the next log file starts at LSN {} instead of {}",
                    next.first_lsn, fe.next_lsn
                ),
                saved_to: None,
            });
        report.saved_to = cut_aside(fs, dir, f, &h, &buf, fe.end)?;
        reports.push(report);
        for later in files.drain(i + 1..) {
            let to = lost_found_path(fs, dir, &name_of(&later.path), 0)?;
            fs.rename(&later.path, &to)
                .map_err(|e| Error::io("rename", &later.path, e))?;
            reports.push(TailReport {
                path: later.path.clone(),
                offset: 0,
                lsn: later.first_lsn,
                bytes: 0,
                kind: TailKind::Damaged,
                covered: later.first_lsn <= checkpoint,
                reason: "follows the damage: moved aside whole".into(),
                saved_to: Some(to),
            });
        }
        let lost = dir.join(LOST_FOUND_DIR);
        fs.sync_dir(&lost)
            .map_err(|e| Error::io("fsync directory", &lost, e))?;
        fs.sync_dir(dir)
            .map_err(|e| Error::io("fsync directory", dir, e))?;
        break;
    }
    Ok(reports)
}

/// A log read without changing a byte (no lock, no truncation, no new file): what a read-only
/// database open replays and what verification reports.
#[derive(Debug)]
pub struct LogView {
    fs: SharedFs,
    files: Vec<LogFile>,
    next_lsn: Lsn,
    tail: Option<TailReport>,
    known_kinds_max: u8,
}

impl LogView {
    /// Look at the log in `dir` (missing: an empty log) as [`Wal::open`] would recover it,
    /// with `options.checkpoint_lsn` as the caller's checkpoint. Header damage is an error;
    /// a bad tail is reported ([`LogView::tail`]) and the view ends before it.
    pub fn open(fs: SharedFs, dir: &Path, options: &Options) -> Result<LogView> {
        let checkpoint = options.checkpoint_lsn;
        let mut files = if fs.exists(dir) {
            list_files(&fs, dir)?
        } else {
            Vec::new()
        };
        let (mut next_lsn, tail) = match files.last() {
            None => (checkpoint + 1, None),
            Some(last) => {
                let (_, buf) = read_log_file(&fs, last, false)?;
                let fe = scan_file_end(&buf, last)?;
                (fe.next_lsn, tail_report(&buf, last, &fe, checkpoint, None))
            }
        };
        if next_lsn <= checkpoint {
            // Everything left is covered by the checkpoint: nothing to replay.
            files.clear();
            next_lsn = checkpoint + 1;
        }
        Ok(LogView {
            fs,
            files,
            next_lsn,
            tail,
            known_kinds_max: options.known_kinds_max,
        })
    }

    /// The LSN a writer would append next.
    pub fn next_lsn(&self) -> Lsn {
        self.next_lsn
    }

    /// The bad tail of the newest file, if any (recovery would cut a torn one).
    pub fn tail(&self) -> Option<&TailReport> {
        self.tail.as_ref()
    }

    /// The log files, oldest first.
    pub fn files(&self) -> &[LogFile] {
        &self.files
    }

    /// Records with LSN >= `from_lsn`, up to the end of the readable log.
    pub fn reader(&self, from_lsn: Lsn) -> Result<WalReader> {
        WalReader::new(
            self.fs.clone(),
            self.files.clone(),
            from_lsn,
            self.next_lsn,
            self.known_kinds_max,
        )
    }
}
