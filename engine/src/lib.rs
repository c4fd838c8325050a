//! Strata: an embedded, disk-native storage engine for hybrid retrieval (a boolean filter over
//! an inverted index combined with approximate nearest-neighbour search), per
//! `../shared/design.md` and `docs/architecture.md`.
//!
//! Today this crate exposes the write-ahead log ([`wal`]) the engine writes through; the
//! document store (memtable, segments, manifest, snapshots, search) lands on top of it
//! (see the open issues listed in `docs/architecture.md`).

pub use strata_wal as wal;
