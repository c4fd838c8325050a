//! The one error type of the `strata` crate.

use std::path::PathBuf;

pub use strata_io::DecodeError;

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in a database. Match on [`Error::kind`] for the handful of
/// cases a program acts on; variants may be added.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The write-ahead log failed (I/O, corruption, poisoning).
    #[error(transparent)]
    Wal(#[from] strata_wal::Error),
    /// An operating-system call failed.
    #[error("I/O error during {op} on {}: {source}", path.display())]
    Io {
        /// What the database was doing.
        op: &'static str,
        /// File or directory involved.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Bytes on disk fail validation.
    #[error(
        "corrupt {what} in {}{}: {kind}",
        path.display(),
        offset.map(|o| format!(" at byte {o}")).unwrap_or_default()
    )]
    Corruption {
        /// Which structure (`"schema file"`, `"WAL batch record"`, ...).
        what: &'static str,
        /// The file (or directory, for a log record).
        path: PathBuf,
        /// Where in the file, when known.
        offset: Option<u64>,
        /// What check failed: a checksum, a magic, a version, a truncation, or a field
        /// that breaks its format's rules ([`DecodeError::Invalid`], in words).
        kind: DecodeError,
    },
    /// A document, key, batch or query violates the schema or a documented bound.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// A filter expression does not parse.
    #[error("filter syntax error at byte {position}: expected {expected}, found {found}")]
    FilterSyntax {
        /// Byte offset in the filter text.
        position: usize,
        /// What the parser expected there.
        expected: String,
        /// What it found.
        found: String,
    },
    /// `Db::create` on a directory that already holds a database.
    #[error("a database already exists at {}", .0.display())]
    AlreadyExists(PathBuf),
    /// `Db::open` on a directory that holds no database.
    #[error("no database at {} (missing SCHEMA file; use Db::create)", .0.display())]
    NotFound(PathBuf),
    /// Another handle (this or another process) has the database open.
    #[error("database {} is locked by another handle or process", .0.display())]
    Locked(PathBuf),
    /// The database has flushed segments (or a checkpointed log) but no manifest: it was
    /// lost. Opening refuses rather than treat every segment as an orphan; nothing is changed.
    #[error(
        "database {} has no MANIFEST file but was flushed before ({evidence}): the manifest is \
         lost; nothing was changed (restore MANIFEST-* from a backup)",
        dir.display()
    )]
    MissingManifest {
        /// The database directory.
        dir: PathBuf,
        /// What shows the database had flushed.
        evidence: String,
    },
    /// A write, flush or compaction on a handle from `Db::open_read_only`.
    #[error("database {} is open read-only", .0.display())]
    ReadOnly(PathBuf),
    /// A query passed its deadline (`SearchParams::deadline`, `Query::with_timeout`).
    #[error("query timed out after {} ms while {during}", elapsed.as_millis())]
    Timeout {
        /// Time the query had run.
        elapsed: std::time::Duration,
        /// The step it was in.
        during: &'static str,
    },
    /// A write failed earlier; the handle is read-only until reopened.
    #[error("database is read-only after an earlier write failure ({0}); reopen it to recover")]
    Poisoned(String),
    /// A background operation stopped because its database handle was closed (a merge's graph
    /// build abandoned; nothing was installed).
    #[error("{0} cancelled: the database is closing")]
    Cancelled(&'static str),
    /// One shard of a shard set (`crate::shards`) failed; `source` says how.
    #[error("shard {shard} ({}): {source}", path.display())]
    ShardFailed {
        /// The shard's index in its set.
        shard: usize,
        /// The shard's database directory.
        path: PathBuf,
        /// What went wrong in it.
        #[source]
        source: Box<Error>,
    },
}

/// What kind of failure an [`Error`] is: the cases a program acts on differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// No database (or shard set) at the path.
    NotFound,
    /// `Db::create` on a path that already holds a database.
    AlreadyExists,
    /// Another handle or process has the database open for writing.
    Locked,
    /// Bytes on disk failed a checksum or format check (or a manifest is missing).
    Corruption,
    /// A key, document, filter, query or option the engine refuses; nothing was written.
    InvalidInput,
    /// A write on a read-only handle.
    ReadOnly,
    /// A query passed its deadline.
    Timeout,
    /// The handle refuses writes after an earlier write failure; reopen it.
    Poisoned,
    /// The operating system failed a call (disk full, permissions, ...).
    Io,
    /// A background operation stopped because its handle closed.
    Cancelled,
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
    /// The kind of this error (for a shard's error, the kind of what went wrong in the shard).
    ///
    /// ```
    /// let e = strata::Db::open("/nonexistent/db", strata::Options::default()).unwrap_err();
    /// assert_eq!(e.kind(), strata::ErrorKind::NotFound);
    /// ```
    pub fn kind(&self) -> ErrorKind {
        use strata_wal::Error as W;
        match self {
            Error::Wal(w) if w.is_corruption() => ErrorKind::Corruption,
            Error::Wal(W::Poisoned { .. }) => ErrorKind::Poisoned,
            Error::Wal(W::Io { .. }) => ErrorKind::Io,
            Error::Wal(_) => ErrorKind::InvalidInput,
            Error::Io { .. } => ErrorKind::Io,
            Error::Corruption { .. } | Error::MissingManifest { .. } => ErrorKind::Corruption,
            Error::InvalidInput(_) | Error::FilterSyntax { .. } => ErrorKind::InvalidInput,
            Error::AlreadyExists(_) => ErrorKind::AlreadyExists,
            Error::NotFound(_) => ErrorKind::NotFound,
            Error::Locked(_) => ErrorKind::Locked,
            Error::ReadOnly(_) => ErrorKind::ReadOnly,
            Error::Timeout { .. } => ErrorKind::Timeout,
            Error::Poisoned(_) => ErrorKind::Poisoned,
            Error::Cancelled(_) => ErrorKind::Cancelled,
            Error::ShardFailed { source, .. } => source.kind(),
        }
    }

    /// [`Error::Corruption`] of `what` in `path` (no offset).
    pub fn corruption(what: &'static str, path: impl Into<PathBuf>, kind: DecodeError) -> Self {
        Error::Corruption {
            what,
            path: path.into(),
            offset: None,
            kind,
        }
    }

    /// [`Error::Corruption`] with a reason in words ([`DecodeError::Invalid`]).
    pub(crate) fn corrupt(
        what: &'static str,
        path: impl Into<PathBuf>,
        reason: impl Into<String>,
    ) -> Self {
        Error::corruption(what, path, DecodeError::Invalid(reason.into()))
    }

    /// This error with the file offset it was found at (a no-op on other variants).
    pub(crate) fn at(mut self, at: u64) -> Self {
        if let Error::Corruption { offset, .. } = &mut self {
            *offset = Some(at);
        }
        self
    }

    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn invalid(msg: impl Into<String>) -> Self {
        Error::InvalidInput(msg.into())
    }

    /// True if bytes on disk were found damaged.
    pub fn is_corruption(&self) -> bool {
        match self {
            Error::Corruption { .. } | Error::MissingManifest { .. } => true,
            Error::Wal(w) => w.is_corruption(),
            Error::ShardFailed { source, .. } => source.is_corruption(),
            _ => false,
        }
    }
}
