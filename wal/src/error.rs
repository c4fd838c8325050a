//! The one error type of `strata-wal`. Every variant carries enough context (path, offset, LSN)
//! to act on without a debugger.

use std::io;
use std::path::PathBuf;

use crate::Lsn;

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the write-ahead log.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An operating-system call failed.
    #[error("I/O error during {op} on {}: {source}", path.display())]
    Io {
        /// What the log was doing (`"write"`, `"fdatasync"`, `"rename"`, ...).
        op: &'static str,
        /// The file or directory involved.
        path: PathBuf,
        /// The error from the operating system.
        #[source]
        source: io::Error,
    },
    /// Bytes on disk fail validation somewhere other than a tolerable torn tail.
    #[error("corrupt WAL file {} at offset {offset} (expected LSN {lsn}): {reason}", path.display())]
    Corruption {
        /// The log file.
        path: PathBuf,
        /// Byte offset of the bad frame or header.
        offset: u64,
        /// The LSN the reader expected at that point.
        lsn: Lsn,
        /// What check failed.
        reason: String,
    },
    /// A record longer than `record_bytes_max` was appended.
    #[error("record of {len} bytes exceeds record_bytes_max ({max} bytes)")]
    RecordTooLarge {
        /// Payload length of the rejected record.
        len: usize,
        /// The configured bound.
        max: u32,
    },
    /// An earlier write or fsync failed; the log refuses all further appends until reopened.
    #[error("WAL is poisoned by an earlier I/O failure ({cause}); reopen it to recover")]
    Poisoned {
        /// The failure that poisoned the log.
        cause: String,
    },
    /// Options that cannot work together.
    #[error("invalid WAL options: {0}")]
    InvalidOptions(String),
    /// A record kind reserved as 0 (invalid) was passed to append.
    #[error("record kind {0} is reserved and cannot be appended")]
    ReservedKind(u8),
    /// A record kind this reader does not understand and may not skip.
    #[error("unknown record kind {kind} at LSN {lsn} in {}", path.display())]
    UnknownKind {
        /// The kind byte.
        kind: u8,
        /// LSN of the record.
        lsn: Lsn,
        /// The log file.
        path: PathBuf,
    },
    /// Replay was asked to start at an LSN that truncation already removed.
    #[error("LSN {requested} is no longer in the log (oldest available is {oldest})")]
    LsnTruncated {
        /// The LSN asked for.
        requested: Lsn,
        /// The oldest LSN still present.
        oldest: Lsn,
    },
}

impl From<strata_io::IoError> for Error {
    fn from(e: strata_io::IoError) -> Error {
        Error::Io {
            op: e.op,
            path: e.path,
            source: e.source,
        }
    }
}

impl Error {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn corruption(
        path: impl Into<PathBuf>,
        offset: u64,
        lsn: Lsn,
        reason: impl Into<String>,
    ) -> Self {
        Error::Corruption {
            path: path.into(),
            offset,
            lsn,
            reason: reason.into(),
        }
    }

    /// True for errors that mean the bytes on disk are bad (as opposed to the OS failing).
    pub fn is_corruption(&self) -> bool {
        matches!(self, Error::Corruption { .. })
    }
}
