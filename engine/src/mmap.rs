//! The only place Strata memory-maps files. Policy: map only immutable files (segments) whose
//! length was checked first and whose checksums are verified before any offset is trusted;
//! files behind a non-OS [`strata_io::Fs`] (tests) are read into memory instead.

use std::ops::Deref;
use std::path::Path;

use strata_io::SharedFs;

use crate::{Error, Result};

/// Read-only bytes of an immutable file.
#[derive(Debug)]
pub(crate) enum FileBytes {
    Mapped(memmap2::Mmap),
    Owned(Vec<u8>),
}

impl Deref for FileBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            FileBytes::Mapped(m) => m,
            FileBytes::Owned(v) => v,
        }
    }
}

/// Map (or read) the whole file at `path`, refusing files longer than `len_max` and, when the
/// manifest recorded it, files whose length is not `expected` (truncated or replaced: mapping
/// a file shorter than its recorded length would fault on the first read past its end).
pub(crate) fn open_immutable(
    fs: &SharedFs,
    path: &Path,
    len_max: u64,
    expected: Option<u64>,
) -> Result<FileBytes> {
    let f = fs
        .open(path, false)
        .map_err(|e| Error::io("open", path, e))?;
    let len = f.len().map_err(|e| Error::io("stat", path, e))?;
    if len > len_max {
        return Err(Error::corrupt(
            "segment file",
            path,
            format!("{len} bytes exceeds the {len_max}-byte bound"),
        ));
    }
    if let Some(want) = expected.filter(|&w| w != len) {
        return Err(Error::corrupt(
            "segment file",
            path,
            format!(
                "{len} bytes, the manifest recorded {want} (truncated or replaced); nothing was mapped"
            ),
        ));
    }
    if let Some(file) = f.std_file() {
        if len > 0 {
            // SAFETY: segment files are never modified after their rename (only created and
            // deleted), and we map them read-only; the length was read and checked against
            // the manifest above. A third party truncating the file *while it is mapped*
            // still raises SIGBUS in this process — documented in docs/durability.md
            // ("Files an operator must not touch").
            let m = unsafe { memmap2::Mmap::map(file) }.map_err(|e| Error::io("mmap", path, e))?;
            return Ok(FileBytes::Mapped(m));
        }
    }
    let bytes = f
        .read_all(len_max)
        .map_err(|e| Error::io("read", path, e))?;
    Ok(FileBytes::Owned(bytes))
}

impl FileBytes {
    /// Ask the OS to start reading `len` bytes at `at` (mapped files; a hint, errors ignored):
    /// several prefetches before the first access keep several reads in flight.
    pub(crate) fn prefetch(&self, at: usize, len: usize) {
        if let FileBytes::Mapped(m) = self {
            let _ = m.advise_range(memmap2::Advice::WillNeed, at, len);
        }
    }

    /// Tell the OS that `at..at + len` is read at random (no read-ahead around faults), so a
    /// cold graph hop reads its sectors and no more.
    pub(crate) fn advise_random(&self, at: usize, len: usize) {
        if let FileBytes::Mapped(m) = self {
            let _ = m.advise_range(memmap2::Advice::Random, at, len);
        }
    }
}

/// Bytes kept in memory for random access (ANN codes, node cache). Large buffers live in an
/// anonymous mapping advised to use transparent huge pages: a code lookup per graph edge over
/// tens of MiB otherwise pays a TLB miss on most accesses.
#[derive(Debug)]
pub(crate) enum Resident {
    Heap(Vec<u8>),
    Anon(memmap2::MmapMut),
}

impl Default for Resident {
    fn default() -> Self {
        Resident::Heap(Vec::new())
    }
}

impl Resident {
    const HUGE: usize = 2 << 20;

    pub(crate) fn copy_of(b: &[u8]) -> Resident {
        if b.len() >= Self::HUGE {
            if let Ok(mut m) = memmap2::MmapOptions::new().len(b.len()).map_anon() {
                let _ = m.advise(memmap2::Advice::HugePage);
                m.copy_from_slice(b);
                return Resident::Anon(m);
            }
        }
        Resident::Heap(b.to_vec())
    }
}

impl Deref for Resident {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Resident::Heap(v) => v,
            Resident::Anon(m) => m,
        }
    }
}
