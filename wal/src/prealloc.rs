//! Spare log files, zero-filled and fsynced ahead of time by a background thread.
//!
//! Why: appending to a file changes its size, so every fdatasync must also commit the inode
//! (a journal write on ext4/xfs). Overwriting bytes that are already allocated and written
//! needs no metadata, and fdatasync is then a data write plus a cache flush — measured ~1.7x
//! faster on the reference machine (`docs/benchmarks.md`). A spare is `prealloc-N.wal.tmp`;
//! rotation writes the header into it and renames it into place. Zero padding after the last
//! record is a clean end of file to the reader (see `reader::FileScan`).
//!
//! Spares are made on demand, sized to the write rate (`Pending` asks): none while a log
//! takes no writes, so an open, idle database holds no preallocated bytes; the first asked
//! for after open is [`SPARE_BYTES_MIN`], and each next one grows (×4, up to the log's
//! `segment_bytes_max`) when the file before filled quickly, or shrinks when it filled slowly.
//!
//! Invariant: a spare is handed out only after its zeros are durable; spares are temporary
//! files (removed at open), never part of the log until renamed.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use strata_io::SharedFs;

/// Zero-fill granularity.
const FILL_CHUNK_BYTES: usize = 1 << 20;
/// Size of the first spare a log asks for (capped by its `segment_bytes_max`).
pub(crate) const SPARE_BYTES_MIN: u64 = 1 << 20;

#[derive(Debug, Default)]
struct State {
    /// A ready spare and its size.
    ready: Option<(PathBuf, u64)>,
    /// Size of the spare asked for and not yet made (0: none asked).
    want: u64,
    stop: bool,
    seq: u64,
    /// The last attempt failed (e.g. ENOSPC); rotation falls back to plain files.
    failed: bool,
}

/// The pool of (at most one) ready spare file, refilled by a background thread.
#[derive(Debug)]
pub(crate) struct SparePool {
    state: Mutex<State>,
    cond: Condvar,
}

impl SparePool {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Take the ready spare (path, size), if any.
    pub(crate) fn claim(&self) -> Option<(PathBuf, u64)> {
        self.lock().ready.take()
    }

    /// Ask for a spare of `bytes` (no-op while one is ready or being made).
    pub(crate) fn request(&self, bytes: u64) {
        let mut st = self.lock();
        if st.ready.is_none() && st.want == 0 && bytes > 0 {
            st.want = bytes;
            drop(st);
            self.cond.notify_all();
        }
    }

    /// Whether a spare is ready now.
    pub(crate) fn has_spare(&self) -> bool {
        self.lock().ready.is_some()
    }
}

/// Owns the filler thread; stops it (and removes an unused spare) on drop.
#[derive(Debug)]
pub(crate) struct Preallocator {
    pub pool: Arc<SparePool>,
    handle: Option<JoinHandle<()>>,
    fs: SharedFs,
}

impl Preallocator {
    pub(crate) fn start(fs: SharedFs, dir: &Path) -> Preallocator {
        let pool = Arc::new(SparePool {
            state: Mutex::new(State::default()),
            cond: Condvar::new(),
        });
        let (p, fs2) = (pool.clone(), fs.clone());
        let dir = dir.to_owned();
        let handle = std::thread::Builder::new()
            .name("strata-wal-prealloc".into())
            .spawn(move || fill_loop(&p, &fs2, &dir))
            .ok();
        Preallocator { pool, handle, fs }
    }
}

impl Drop for Preallocator {
    fn drop(&mut self) {
        self.pool.lock().stop = true;
        self.pool.cond.notify_all();
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
        if let Some((spare, _)) = self.pool.claim() {
            let _ = self.fs.remove_file(&spare); // best effort: open removes leftovers anyway
        }
    }
}

fn fill_loop(pool: &SparePool, fs: &SharedFs, dir: &Path) {
    loop {
        let (seq, file_bytes) = {
            let mut st = pool.lock();
            while !st.stop && (st.ready.is_some() || st.failed || st.want == 0) {
                st = pool.cond.wait(st).unwrap_or_else(|e| e.into_inner());
            }
            if st.stop {
                return;
            }
            st.seq += 1;
            (st.seq, st.want)
        };
        let path = dir.join(format!("prealloc-{seq}.wal.tmp"));
        let made = make_spare(fs, &path, file_bytes, pool);
        let mut st = pool.lock();
        st.want = 0;
        match made {
            Ok(true) => st.ready = Some((path, file_bytes)),
            Ok(false) | Err(_) => {
                let _ = fs.remove_file(&path);
                st.failed = made.is_err();
                if st.stop {
                    return;
                }
            }
        }
    }
}

/// Write `file_bytes` zeros and fsync. `Ok(false)` if asked to stop midway.
fn make_spare(
    fs: &SharedFs,
    path: &Path,
    file_bytes: u64,
    pool: &SparePool,
) -> std::io::Result<bool> {
    let file = fs.create_new(path)?;
    let zeros = vec![0u8; FILL_CHUNK_BYTES];
    let mut off = 0u64;
    while off < file_bytes {
        if pool.lock().stop {
            return Ok(false);
        }
        let n = (file_bytes - off).min(FILL_CHUNK_BYTES as u64) as usize;
        file.write_all_at(zeros.get(..n).unwrap_or_default(), off)?;
        off += n as u64;
    }
    file.sync_data()?;
    Ok(true)
}
