//! Strata: an embedded, disk-native storage engine for hybrid retrieval — a boolean filter over
//! terms and attribute ranges combined with nearest-neighbour search over vectors
//! (`../shared/design.md`, `docs/architecture.md`).
//!
//! ```
//! use strata::{Db, Document, Filter, Metric, Query, Schema};
//!
//! let dir = tempfile::tempdir()?;
//! let db = Db::create(dir.path(), Schema::new(2, Metric::L2).with_attr("ts"))?;
//! db.put(Document::new("post-1", "hello").with_vector(vec![0.0, 1.0])
//!     .with_term("lang:en").with_attr("ts", 1_700_000_000))?;
//! db.put(Document::new("post-2", "hallo").with_vector(vec![5.0, 5.0]).with_term("lang:de"))?;
//!
//! let q = Query::knn(vec![0.0, 0.0], 10).with_filter_str("(and lang:en (range ts 0 1800000000))")?;
//! let hits = db.search(&q)?;
//! assert_eq!(hits.len(), 1);
//! assert_eq!(hits[0].key, b"post-1");
//! assert_eq!(hits[0].distance, Some(1.0));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Bounds on input (each violation is [`Error::InvalidInput`] and writes nothing) are the
//! constants of [`limits`]. The memtable is flushed to immutable segments, compacted in the
//! background, and each indexed segment answers k-NN through the planner's
//! calibrated plans (`engine/src/query/`; see `docs/architecture.md`).

#![warn(missing_docs)]

pub mod ann;
mod batch;
mod bitset;
pub mod build;
mod db;
mod deadline;
mod distance;
mod doc;
mod error;
mod files;
mod filter;
/// Entry points of the fuzz targets and the crash simulator (`fuzz/`, `strata crashsim`):
/// behind the `fuzzing` feature, out of the default library.
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
pub mod limits;
pub mod manifest;
mod memtable;
pub mod meta;
mod mmap;
mod query;
mod retire;
mod scan;
mod schema;
mod search;
pub mod segment;
pub mod shards;
pub mod simd;
mod sync;
mod version;
mod write_path;

pub use ann::{
    AnnOptions, CodeKind, Estimate, Plan, PlanHint, QueryStats, SearchParams, SegmentExplain,
};
pub use batch::{decode_document, encode_document, Op, WriteBatch};
pub use db::{
    AnnInfo, CalibrationInfo, Db, DbStats, Options, RecoveryReport, SegmentInfo, LOCK_FILE,
    SEGMENTS_DIR, WAL_DIR, WAL_KIND_BATCH,
};
pub use distance::distance;
pub use doc::{validate_key, validate_term, Document};
pub use error::{DecodeError, Error, ErrorKind, Result};
pub use filter::Filter;
pub use scan::{Keys, Scan};
pub use schema::{Metric, Schema};
pub use search::{Hit, Query};
pub use strata_wal as wal;
pub use strata_wal::SyncMode;
pub use version::Snapshot;
