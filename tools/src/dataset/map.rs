//! The tool's one memory mapping: read-only input files (datasets), mapped after their length
//! was read. Unlike segments they are the user's files: if another process truncates one while
//! we read it, the OS raises SIGBUS — stated in `docs/architecture.md`.

use std::ops::Deref;
use std::path::Path;

use super::DataError;

#[derive(Debug)]
pub(crate) enum Mapped {
    Map(memmap2::Mmap),
    Empty,
}

impl Mapped {
    pub(crate) fn open(path: &Path) -> Result<Mapped, DataError> {
        let io = |source| DataError::Io {
            path: path.to_owned(),
            source,
        };
        let f = std::fs::File::open(path).map_err(io)?;
        if f.metadata().map_err(io)?.len() == 0 {
            return Ok(Mapped::Empty);
        }
        // SAFETY: mapped read-only; every access is bounds-checked against the mapping's length.
        // Concurrent truncation by another process is outside our control (see module docs).
        let m = unsafe { memmap2::Mmap::map(&f) }.map_err(io)?;
        Ok(Mapped::Map(m))
    }
}

impl Mapped {
    /// Drop the pages of `..end` from this process's resident set (they stay in the page
    /// cache): a streaming reader of a file larger than its memory budget calls this behind it.
    pub(crate) fn release_below(&self, end: usize) {
        if let Mapped::Map(m) = self {
            let len = end.min(m.len()) & !4095;
            if len > 0 {
                // SAFETY: a read-only, shared mapping of a file: MADV_DONTNEED only drops the
                // pages from this mapping; a later read faults them back in from the file with
                // the same contents. No reference into the range is held across this call by
                // the only caller (`VectorFile::release_rows_below`, between row reads).
                let _ =
                    unsafe { m.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, 0, len) };
            }
        }
    }
}

impl Deref for Mapped {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Mapped::Map(m) => m,
            Mapped::Empty => &[],
        }
    }
}
