//! `strata-wal`: the write-ahead log of Strata.
//!
//! Records are framed and checksummed in bounded, rotated log files ([`format`]); many threads
//! append at once and share fdatasyncs through group commit; recovery truncates a torn tail and
//! treats anything else as corruption; all I/O goes through the `strata_io::Fs` trait so tests can
//! inject crashes and faults. The guarantees are spelled out in `docs/durability.md`, the bytes
//! in `docs/format.md`.
//!
//! ```
//! use std::sync::Arc;
//! use strata_io::StdFs;
//! use strata_wal::{Options, Wal};
//!
//! let dir = tempfile::tempdir()?;
//! let (wal, recovery) = Wal::open(StdFs::shared(), dir.path(), Options::default())?;
//! assert_eq!(recovery.next_lsn, 1);
//! let lsn = wal.append_data(b"hello")?; // returns after the fdatasync that covers it
//! drop(wal);
//!
//! let (wal, _) = Wal::open(StdFs::shared(), dir.path(), Options::default())?;
//! let mut reader = wal.reader(1)?;
//! let rec = reader.next_record()?.expect("one record");
//! assert_eq!((rec.lsn, rec.payload), (lsn, &b"hello"[..]));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![warn(missing_docs)]

mod error;
pub mod format;
/// Entry points of the WAL's fuzz targets (`fuzz/`): behind the `fuzzing` feature.
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
mod group_commit;
mod options;
mod prealloc;
mod reader;
mod sync;
mod tail;
mod wal;

pub use error::{Error, Result};
pub use format::{RecordKind, RecordRef};
pub use group_commit::CommitStats;
pub use options::{
    Options, RecoveryMode, SyncMode, BATCH_WINDOW_MAX, SEGMENT_BYTES_LIMIT, SEGMENT_BYTES_MIN,
};
pub use reader::{file_name, parse_file_name, LogFile, WalReader};
pub use tail::{looks_torn, TailKind, TailReport, LOST_FOUND_DIR, TORN_SECTOR_BYTES};
pub use wal::{LogView, Recovery, Wal};

/// Log sequence number: 1 for the first record of a log, +1 for each record after it.
pub type Lsn = u64;
