//! [`FaultFs`]: an in-memory [`Fs`] that models what a crash keeps and injects faults.
//!
//! Model (documented in `docs/durability.md`):
//! - every file has *durable* bytes and a list of *unsynced* operations (writes, truncations);
//!   `sync_data` folds the unsynced operations into the durable bytes;
//! - directory entries (create, rename, remove) are visible at once but become durable only on
//!   `sync_dir` of their parent; directories themselves are always durable;
//! - [`FaultFs::crash`] keeps the durable entries and bytes plus a seeded random *prefix* of
//!   each file's unsynced operations, the last kept write possibly torn at a 512-byte boundary
//!   of the file; open handles become stale;
//! - faults: a countdown after which every operation fails as if the process had died, EIO on
//!   the n-th sync, ENOSPC on the n-th write, and direct bit flips / zeroing / truncation.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use super::{FileHandle, Fs, LockGuard};

/// Sector size used to tear writes on a simulated crash.
pub const TORN_SECTOR_BYTES: u64 = 512;

/// Faults to inject, counted in mutating operations from the moment they are set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FaultConfig {
    /// After this many more mutating operations (create, write, set_len, sync, rename, remove,
    /// sync_dir) every operation fails with EIO, as if the process had died at that point.
    pub crash_after_ops: Option<u64>,
    /// The n-th (1-based) `sync_data`/`sync_dir` from now fails with EIO; the data stays unsynced.
    pub fail_sync_at: Option<u64>,
    /// The n-th (1-based) write from now fails with ENOSPC and writes nothing.
    pub enospc_write_at: Option<u64>,
}

#[derive(Debug, Clone)]
enum Pending {
    Write { offset: u64, bytes: Vec<u8> },
    SetLen(u64),
}

#[derive(Debug, Default, Clone)]
struct Inode {
    data: Vec<u8>,
    durable: Vec<u8>,
    unsynced: Vec<Pending>,
}

fn apply(buf: &mut Vec<u8>, op: &Pending) {
    match op {
        Pending::Write { offset, bytes } => write_into(buf, *offset, bytes),
        Pending::SetLen(len) => buf.resize(usize::try_from(*len).unwrap_or(usize::MAX), 0),
    }
}

fn write_into(buf: &mut Vec<u8>, offset: u64, bytes: &[u8]) {
    let start = usize::try_from(offset).unwrap_or(usize::MAX);
    let end = start.saturating_add(bytes.len());
    if buf.len() < end {
        buf.resize(end, 0);
    }
    if let Some(dst) = buf.get_mut(start..end) {
        dst.copy_from_slice(bytes);
    }
}

#[derive(Debug, Default)]
struct State {
    inodes: HashMap<u64, Inode>,
    names: BTreeMap<PathBuf, u64>,
    durable_names: BTreeMap<PathBuf, u64>,
    dirs: BTreeSet<PathBuf>,
    next_ino: u64,
    generation: u64,
    faults: FaultConfig,
    crashed: bool,
    mutating_ops: u64,
    syncs: u64,
    writes: u64,
    /// Held locks: path -> lock id (locks die with the simulated process at a crash).
    locks: BTreeMap<PathBuf, u64>,
    next_lock: u64,
}

impl State {
    /// Count one mutating operation and fail if a crash point or injected fault says so.
    fn tick(&mut self) -> io::Result<()> {
        if self.crashed {
            return Err(crashed_error());
        }
        self.mutating_ops += 1;
        if let Some(n) = self.faults.crash_after_ops.as_mut() {
            if *n == 0 {
                self.crashed = true;
                return Err(crashed_error());
            }
            *n -= 1;
        }
        Ok(())
    }

    fn tick_sync(&mut self) -> io::Result<()> {
        self.tick()?;
        self.syncs += 1;
        if let Some(n) = self.faults.fail_sync_at.as_mut() {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.faults.fail_sync_at = None;
                return Err(io::Error::other("injected EIO on fsync"));
            }
        }
        Ok(())
    }

    fn tick_write(&mut self) -> io::Result<()> {
        self.tick()?;
        self.writes += 1;
        if let Some(n) = self.faults.enospc_write_at.as_mut() {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.faults.enospc_write_at = None;
                return Err(io::Error::from_raw_os_error(28)); // ENOSPC
            }
        }
        Ok(())
    }

    fn lookup(&self, path: &Path) -> io::Result<u64> {
        self.names
            .get(path)
            .copied()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("{}", path.display())))
    }

    fn check_parent(&self, path: &Path) -> io::Result<()> {
        match path.parent() {
            Some(p) if p.as_os_str().is_empty() || self.dirs.contains(p) => Ok(()),
            _ => Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("parent directory of {} does not exist", path.display()),
            )),
        }
    }
}

fn crashed_error() -> io::Error {
    io::Error::other("simulated crash: the process is dead")
}

/// splitmix64: a tiny, version-stable PRNG so a crash seed replays the same image forever
/// (a `rand` upgrade could silently change streams).
fn next_rand(seed: &mut u64) -> u64 {
    *seed = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *seed;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// In-memory fault-injecting file system. Cloning gives another handle to the same state.
#[derive(Debug, Clone, Default)]
pub struct FaultFs {
    state: Arc<Mutex<State>>,
}

impl FaultFs {
    /// An empty file system with no faults armed.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock can only come from a test; keep going.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Arm faults; counters start from now. Replaces earlier faults.
    pub fn set_faults(&self, faults: FaultConfig) {
        self.lock().faults = faults;
    }

    /// Whether the crash countdown has fired.
    pub fn is_crashed(&self) -> bool {
        self.lock().crashed
    }

    /// Mutating operations so far (the unit of `crash_after_ops`).
    pub fn mutating_ops(&self) -> u64 {
        self.lock().mutating_ops
    }

    /// Simulate power loss: keep durable state plus a seeded prefix of unsynced operations per
    /// file (the last one possibly torn at a 512-byte boundary). Clears faults; old handles go stale.
    pub fn crash(&self, seed: u64) {
        let mut st = self.lock();
        let mut rng = seed ^ 0x005E_ED0F_C2A5;
        let names = st.durable_names.clone();
        let live: BTreeSet<u64> = names.values().copied().collect();
        let mut inodes = HashMap::new();
        for ino in live {
            let Some(node) = st.inodes.get(&ino) else {
                continue;
            };
            let mut data = node.durable.clone();
            let n = node.unsynced.len() as u64;
            let keep = next_rand(&mut rng) % (n + 1);
            for (i, op) in node.unsynced.iter().enumerate() {
                let i = i as u64;
                if i < keep {
                    apply(&mut data, op);
                } else if i == keep {
                    if let Pending::Write { offset, bytes } = op {
                        // Keep a prefix of the write that ends on a file-sector boundary.
                        let end = offset + bytes.len() as u64;
                        let first_cut = (offset / TORN_SECTOR_BYTES + 1) * TORN_SECTOR_BYTES;
                        if first_cut < end {
                            let cuts = (end - first_cut).div_ceil(TORN_SECTOR_BYTES);
                            let cut = first_cut + (next_rand(&mut rng) % cuts) * TORN_SECTOR_BYTES;
                            let kept = usize::try_from(cut - offset).unwrap_or(0);
                            if let Some(prefix) = bytes.get(..kept) {
                                write_into(&mut data, *offset, prefix);
                            }
                        }
                    }
                    break;
                }
            }
            inodes.insert(
                ino,
                Inode {
                    durable: data.clone(),
                    data,
                    unsynced: Vec::new(),
                },
            );
        }
        st.inodes = inodes;
        st.names = names;
        st.generation += 1;
        st.locks.clear();
        st.crashed = false;
        st.faults = FaultConfig::default();
    }

    /// The current (page-cache) bytes of a file.
    pub fn read_file(&self, path: &Path) -> io::Result<Vec<u8>> {
        let st = self.lock();
        let ino = st.lookup(path)?;
        Ok(st
            .inodes
            .get(&ino)
            .map(|n| n.data.clone())
            .unwrap_or_default())
    }

    /// Replace a file's bytes, durably (models writing a crafted file to disk).
    pub fn write_file_durable(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        let mut st = self.lock();
        st.check_parent(path)?;
        let ino = match st.names.get(path) {
            Some(ino) => *ino,
            None => {
                st.next_ino += 1;
                let ino = st.next_ino;
                st.names.insert(path.to_owned(), ino);
                ino
            }
        };
        st.durable_names.insert(path.to_owned(), ino);
        st.inodes.insert(
            ino,
            Inode {
                data: bytes.to_vec(),
                durable: bytes.to_vec(),
                unsynced: Vec::new(),
            },
        );
        Ok(())
    }

    /// Flip one bit of a file, in both its visible and durable bytes (bit rot).
    pub fn flip_bit(&self, path: &Path, offset: u64, bit: u8) -> io::Result<()> {
        self.edit(path, |buf| {
            if let Some(b) = usize::try_from(offset).ok().and_then(|o| buf.get_mut(o)) {
                *b ^= 1 << (bit % 8);
            }
        })
    }

    /// Zero `len` bytes of a file at `offset`, in both visible and durable bytes.
    pub fn zero_range(&self, path: &Path, offset: u64, len: u64) -> io::Result<()> {
        self.edit(path, |buf| {
            let start = usize::try_from(offset).unwrap_or(usize::MAX).min(buf.len());
            let end = start
                .saturating_add(usize::try_from(len).unwrap_or(usize::MAX))
                .min(buf.len());
            if let Some(s) = buf.get_mut(start..end) {
                s.fill(0);
            }
        })
    }

    /// Truncate a file durably.
    pub fn truncate(&self, path: &Path, len: u64) -> io::Result<()> {
        self.edit(path, |buf| {
            buf.truncate(usize::try_from(len).unwrap_or(usize::MAX))
        })
    }

    fn edit(&self, path: &Path, f: impl Fn(&mut Vec<u8>)) -> io::Result<()> {
        let mut st = self.lock();
        let ino = st.lookup(path)?;
        if let Some(node) = st.inodes.get_mut(&ino) {
            f(&mut node.data);
            f(&mut node.durable);
        }
        Ok(())
    }
}

#[derive(Debug)]
struct FaultFile {
    fs: FaultFs,
    ino: u64,
    generation: u64,
    writable: bool,
}

impl FaultFile {
    fn with<T>(
        &self,
        mutating: bool,
        f: impl FnOnce(&mut State, &mut Inode) -> io::Result<T>,
    ) -> io::Result<T> {
        let mut st = self.fs.lock();
        if st.generation != self.generation {
            return Err(io::Error::other("stale handle after simulated crash"));
        }
        if st.crashed {
            return Err(crashed_error());
        }
        if mutating && !self.writable {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                "file opened read-only",
            ));
        }
        let mut node = st
            .inodes
            .remove(&self.ino)
            .ok_or_else(|| io::Error::other("inode vanished"))?;
        let r = f(&mut st, &mut node);
        st.inodes.insert(self.ino, node);
        r
    }
}

impl FileHandle for FaultFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.with(false, |_, node| {
            let start = usize::try_from(offset).unwrap_or(usize::MAX);
            let Some(src) = node.data.get(start..) else {
                return Ok(0);
            };
            let n = src.len().min(buf.len());
            if let (Some(d), Some(s)) = (buf.get_mut(..n), src.get(..n)) {
                d.copy_from_slice(s);
            }
            Ok(n)
        })
    }
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.with(true, |st, node| {
            st.tick_write()?;
            write_into(&mut node.data, offset, buf);
            node.unsynced.push(Pending::Write {
                offset,
                bytes: buf.to_vec(),
            });
            Ok(())
        })
    }
    fn sync_data(&self) -> io::Result<()> {
        self.with(false, |st, node| {
            st.tick_sync()?;
            for op in std::mem::take(&mut node.unsynced) {
                apply(&mut node.durable, &op);
            }
            Ok(())
        })
    }
    fn len(&self) -> io::Result<u64> {
        self.with(false, |_, node| Ok(node.data.len() as u64))
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.with(true, |st, node| {
            st.tick()?;
            let op = Pending::SetLen(len);
            apply(&mut node.data, &op);
            node.unsynced.push(op);
            Ok(())
        })
    }
}

impl Fs for FaultFs {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        let mut st = self.lock();
        if st.crashed {
            return Err(crashed_error());
        }
        for anc in dir.ancestors() {
            if !anc.as_os_str().is_empty() {
                st.dirs.insert(anc.to_owned());
            }
        }
        Ok(())
    }
    fn create_new(&self, path: &Path) -> io::Result<Arc<dyn FileHandle>> {
        let mut st = self.lock();
        st.check_parent(path)?;
        if st.names.contains_key(path) {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{}", path.display()),
            ));
        }
        st.tick()?;
        st.next_ino += 1;
        let ino = st.next_ino;
        st.inodes.insert(ino, Inode::default());
        st.names.insert(path.to_owned(), ino);
        Ok(Arc::new(FaultFile {
            fs: self.clone(),
            ino,
            generation: st.generation,
            writable: true,
        }))
    }
    fn open(&self, path: &Path, writable: bool) -> io::Result<Arc<dyn FileHandle>> {
        let st = self.lock();
        if st.crashed {
            return Err(crashed_error());
        }
        let ino = st.lookup(path)?;
        Ok(Arc::new(FaultFile {
            fs: self.clone(),
            ino,
            generation: st.generation,
            writable,
        }))
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut st = self.lock();
        let ino = st.lookup(from)?;
        st.check_parent(to)?;
        st.tick()?;
        st.names.remove(from);
        st.names.insert(to.to_owned(), ino);
        Ok(())
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut st = self.lock();
        st.lookup(path)?;
        st.tick()?;
        st.names.remove(path);
        Ok(())
    }
    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
        let st = self.lock();
        if st.crashed {
            return Err(crashed_error());
        }
        if !st.dirs.contains(dir) {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("{}", dir.display()),
            ));
        }
        Ok(st
            .names
            .keys()
            .filter(|p| p.parent() == Some(dir))
            .filter_map(|p| p.file_name()?.to_str().map(str::to_owned))
            .collect())
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut st = self.lock();
        st.tick_sync()?;
        let in_dir = |p: &PathBuf| p.parent() == Some(dir);
        st.durable_names.retain(|p, _| !in_dir(p));
        let entries: Vec<(PathBuf, u64)> = st
            .names
            .iter()
            .filter(|(p, _)| in_dir(p))
            .map(|(p, i)| (p.clone(), *i))
            .collect();
        st.durable_names.extend(entries);
        Ok(())
    }
    fn exists(&self, path: &Path) -> bool {
        let st = self.lock();
        st.names.contains_key(path) || st.dirs.contains(path)
    }
    fn lock_exclusive(&self, path: &Path) -> io::Result<LockGuard> {
        let mut st = self.lock();
        if st.crashed {
            return Err(crashed_error());
        }
        if st.locks.contains_key(path) {
            return Err(io::Error::new(io::ErrorKind::WouldBlock, "locked"));
        }
        st.next_lock += 1;
        let id = st.next_lock;
        st.locks.insert(path.to_owned(), id);
        Ok(Box::new(FaultLock {
            fs: self.clone(),
            path: path.to_owned(),
            id,
        }))
    }
}

/// A lock of [`FaultFs`]; released on drop unless a crash already released it.
#[derive(Debug)]
struct FaultLock {
    fs: FaultFs,
    path: PathBuf,
    id: u64,
}

impl Drop for FaultLock {
    fn drop(&mut self) {
        let mut st = self.fs.lock();
        if st.locks.get(&self.path) == Some(&self.id) {
            st.locks.remove(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> PathBuf {
        PathBuf::from(s)
    }

    #[test]
    fn unsynced_entry_is_lost_synced_entry_kept() {
        let fs = FaultFs::new();
        fs.create_dir_all(&p("/d")).unwrap();
        let f = fs.create_new(&p("/d/a")).unwrap();
        f.write_all_at(b"hello", 0).unwrap();
        f.sync_data().unwrap();
        fs.crash(1);
        assert!(!fs.exists(&p("/d/a")), "entry never synced must vanish");

        let f = fs.create_new(&p("/d/b")).unwrap();
        f.write_all_at(b"hello", 0).unwrap();
        f.sync_data().unwrap();
        fs.sync_dir(&p("/d")).unwrap();
        fs.crash(2);
        assert_eq!(fs.read_file(&p("/d/b")).unwrap(), b"hello");
        assert!(f.len().is_err(), "handle from before the crash is stale");
    }

    #[test]
    fn crash_keeps_a_prefix_of_unsynced_writes() {
        for seed in 0..200 {
            let fs = FaultFs::new();
            fs.create_dir_all(&p("/d")).unwrap();
            let f = fs.create_new(&p("/d/a")).unwrap();
            fs.sync_dir(&p("/d")).unwrap();
            let full: Vec<u8> = (0..3000u32).map(|i| (i % 251) as u8 + 1).collect();
            f.write_all_at(&full[..100], 0).unwrap();
            f.sync_data().unwrap();
            f.write_all_at(&full[100..1700], 100).unwrap();
            f.write_all_at(&full[1700..], 1700).unwrap();
            fs.crash(seed);
            let got = fs.read_file(&p("/d/a")).unwrap();
            assert!(got.len() >= 100, "synced bytes survive");
            assert_eq!(&got[..], &full[..got.len()], "a prefix, never a hole");
            assert!(
                got.len() == 100
                    || got.len() == 1700
                    || got.len() == 3000
                    || got.len().is_multiple_of(512),
                "tears land on sector boundaries, got {}",
                got.len()
            );
        }
    }

    #[test]
    fn faults_fire_once_at_the_requested_op() {
        let fs = FaultFs::new();
        fs.create_dir_all(&p("/d")).unwrap();
        let f = fs.create_new(&p("/d/a")).unwrap();
        fs.set_faults(FaultConfig {
            fail_sync_at: Some(2),
            enospc_write_at: Some(1),
            ..FaultConfig::default()
        });
        let e = f.write_all_at(b"x", 0).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(28));
        f.write_all_at(b"x", 0).unwrap();
        f.sync_data().unwrap();
        assert!(f.sync_data().is_err());
        f.sync_data().unwrap();

        fs.set_faults(FaultConfig {
            crash_after_ops: Some(1),
            ..FaultConfig::default()
        });
        f.write_all_at(b"y", 1).unwrap();
        assert!(f.write_all_at(b"z", 2).is_err());
        assert!(fs.is_crashed());
        assert!(f.sync_data().is_err(), "everything fails once dead");
    }
}
