//! `strata-io`: the bottom layer of Strata, shared by the write-ahead log and the engine.
//!
//! - All file I/O goes through the [`Fs`] trait: [`StdFs`] for real disks and, behind the
//!   `testing` feature, `FaultFs` for tests that simulate crashes, torn writes, EIO, ENOSPC
//!   and bit rot.
//! - [`durable`]: the temp-file-then-rename protocol of every installed file.
//! - [`le`] and [`envelope`]: the byte vocabulary of the file formats (little-endian fields,
//!   the `magic | version | body | CRC` frame of small files) and [`DecodeError`], what a
//!   decoder reports.
//!
//! Invariants the rest of the code relies on:
//! - a file's bytes become durable only after [`FileHandle::sync_data`] returns `Ok`;
//! - a new, renamed or removed directory entry becomes durable only after [`Fs::sync_dir`]
//!   on its directory returns `Ok`;
//! - reads see every write that returned `Ok`, durable or not (the page cache).

#![warn(missing_docs)]

pub mod durable;
pub mod envelope;
#[cfg(feature = "testing")]
mod fault;
pub mod le;
mod std_fs;

use std::fmt::Debug;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[cfg(feature = "testing")]
pub use fault::{FaultConfig, FaultFs};
pub use std_fs::StdFs;

/// An open file. Positioned I/O only, so one handle can be shared by threads.
pub trait FileHandle: Send + Sync + Debug {
    /// Read up to `buf.len()` bytes at `offset`; returns how many were read (0 at end of file).
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;
    /// Write all of `buf` at `offset`, extending the file if needed.
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// Make the file's data durable (`fdatasync`).
    fn sync_data(&self) -> io::Result<()>;
    /// Current length in bytes.
    fn len(&self) -> io::Result<u64>;
    /// Truncate or extend to `len` bytes.
    fn set_len(&self, len: u64) -> io::Result<()>;

    /// The underlying OS file, when there is one (lets callers memory-map immutable files).
    fn std_file(&self) -> Option<&std::fs::File> {
        None
    }

    /// True when the file has no bytes.
    fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }

    /// Fill `buf` from `offset`, failing with `UnexpectedEof` if the file is shorter.
    fn read_exact_at(&self, mut buf: &mut [u8], mut offset: u64) -> io::Result<()> {
        while !buf.is_empty() {
            let n = self.read_at(buf, offset)?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "file shorter than expected",
                ));
            }
            buf = buf.get_mut(n..).unwrap_or_default();
            offset += n as u64;
        }
        Ok(())
    }

    /// Read the whole file into memory, refusing files longer than `len_max` bytes.
    fn read_all(&self, len_max: u64) -> io::Result<Vec<u8>> {
        let len = self.len()?;
        if len > len_max {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("file of {len} bytes exceeds the {len_max}-byte bound"),
            ));
        }
        let len = usize::try_from(len).map_err(|_| io::Error::other("file too large"))?;
        let mut buf = vec![0u8; len];
        self.read_exact_at(&mut buf, 0)?;
        Ok(buf)
    }
}

/// A file system: the directory operations Strata needs.
pub trait Fs: Send + Sync + Debug {
    /// Create `dir` and its parents if missing.
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// Create a new empty file for reading and writing; fails if it exists.
    fn create_new(&self, path: &Path) -> io::Result<Arc<dyn FileHandle>>;
    /// Open an existing file, read-only or read-write.
    fn open(&self, path: &Path, writable: bool) -> io::Result<Arc<dyn FileHandle>>;
    /// Atomically rename `from` to `to`, replacing `to` if it exists.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Remove a file.
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Names (not paths) of the files in `dir`, in no particular order.
    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>>;
    /// Make the entries of `dir` durable (fsync of the directory).
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// Whether `path` names an existing file or directory.
    fn exists(&self, path: &Path) -> bool;
    /// Take an exclusive advisory lock on `path` (created if missing), without blocking:
    /// `WouldBlock` if another handle or process holds it. The lock lives as long as the guard.
    fn lock_exclusive(&self, path: &Path) -> io::Result<LockGuard>;
}

/// Holds a lock taken by [`Fs::lock_exclusive`] until dropped.
pub type LockGuard = Box<dyn std::any::Any + Send + Sync>;

/// A shared file-system handle.
pub type SharedFs = Arc<dyn Fs>;

/// Create `dir` (and missing parents) durably: after `create_dir_all`, fsync the parent of
/// every directory this call created, so the new entries survive a power loss.
pub fn create_dir_durable(fs: &dyn Fs, dir: &Path) -> io::Result<()> {
    let missing: Vec<&Path> = dir
        .ancestors()
        .filter(|a| !a.as_os_str().is_empty())
        .take_while(|a| !fs.exists(a))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    fs.create_dir_all(dir)?;
    for created in missing.iter().rev() {
        if let Some(parent) = created.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs.sync_dir(parent)?;
        }
    }
    Ok(())
}

/// A failed operating-system call, with what was being done and to which path.
#[derive(Debug, thiserror::Error)]
#[error("I/O error during {op} on {}: {source}", path.display())]
pub struct IoError {
    /// What was being done (`"fdatasync"`, `"rename"`, ...).
    pub op: &'static str,
    /// The file or directory.
    pub path: PathBuf,
    /// The OS error.
    #[source]
    pub source: io::Error,
}

impl IoError {
    /// An error of `op` on `path`.
    pub fn new(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> IoError {
        IoError {
            op,
            path: path.into(),
            source,
        }
    }
}

/// Why bytes failed to decode: the structural failures every format shares, and
/// [`DecodeError::Invalid`] for a field that is present but breaks its format's rules.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The bytes end before a field.
    #[error("truncated: {need} bytes wanted at offset {at}")]
    Truncated {
        /// Offset of the field.
        at: usize,
        /// Its size.
        need: usize,
    },
    /// A checksum does not match its bytes.
    #[error("checksum mismatch")]
    Checksum,
    /// The file does not start with its kind's magic.
    #[error("bad magic")]
    Magic,
    /// A format version this build does not read.
    #[error("unsupported version {0}")]
    Version(u32),
    /// A field breaks its format's rules (what and where, in words).
    #[error("{0}")]
    Invalid(String),
}

impl DecodeError {
    /// [`DecodeError::Invalid`] from anything printable.
    pub fn invalid(what: impl Into<String>) -> DecodeError {
        DecodeError::Invalid(what.into())
    }
}
