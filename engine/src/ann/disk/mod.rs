//! The two ANN sections of a segment and the beam search over them.
//!
//! - **ANN codes** (fully verified at open, copied into memory): quantiser parameters, the
//!   graph-node -> segment-ordinal map and one code per node.
//! - **ANN graph** (4 KiB sectors, starting at a 4 KiB-aligned file offset): sector 0 is a
//!   header; every other sector packs whole node records (full vector, degree, neighbour ids)
//!   or, for nodes larger than a sector, one node spans consecutive sectors. Each sector ends
//!   in a CRC-32 of its index and payload, checked the first time the sector is read, so a
//!   segment opens without reading its graph and a flipped bit or a swapped sector is a
//!   corruption error at query time, never a wrong neighbour.
//!
//! Layout details: `docs/format.md`.
//!
//! | file | concept |
//! |---|---|
//! | `format.rs` | the bytes: sector size, magic, versions, header fields, node geometry, sector CRCs |
//! | `build.rs` | building both sections (codes, graph, partitions, disk order) |
//! | `index.rs` | [`DiskIndex`]: open and verify, the node cache, reading nodes |
//! | `beam.rs` | the beam search (unfiltered and filtered), sector mates |
//! | `code_scan.rs` | filter-first: code distances of a filter's matches |
//! | `partition_walk.rs` | the partition walk and its tail model, query features for the planner |
//! | `topk.rs` | bounded selection of the nearest candidates |

mod beam;
mod build;
mod code_scan;
pub(crate) mod format;
mod index;
mod partition_walk;
#[cfg(test)]
mod tests;
pub(crate) mod topk;

use std::borrow::Cow;
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;

pub(crate) use build::{build_reusing, ReuseGraph};
#[cfg(feature = "fuzzing")]
pub(crate) use format::fix_sector_crcs;
use format::Geometry;
pub(crate) use format::SECTOR;
pub(crate) use partition_walk::{NodeOrder, PartitionWalk, PartitionWant};

use super::codes::Quantizer;
use super::Space;
use crate::mmap::Resident;
use crate::Metric;

/// An opened ANN index of one segment.
#[derive(Debug)]
pub(crate) struct DiskIndex {
    path: PathBuf,
    metric: Metric,
    space: Space,
    geo: Geometry,
    n: usize,
    entry: u32,
    /// File offset of the graph section (sector 0).
    graph_at: usize,
    /// Node -> segment ordinal (nodes are numbered in the graph's layout order); empty when
    /// they are equal, which saves a random memory access per hop.
    ordinals: Vec<u32>,
    /// Segment ordinal -> node (`u32::MAX`: no vector), the inverse of `ordinals` for the
    /// code scan over a filter's matches; empty when `ordinals` is.
    nodes: Vec<u32>,
    code_bytes: usize,
    codes: Resident,
    quant: Quantizer,
    /// Coarse partitions (empty: none): centroids (dimension-major in memory, so one pass
    /// ranks them all; index space) and list offsets — list `p` is nodes
    /// `offsets[p]..offsets[p+1]`.
    centroids: Vec<f32>,
    offsets: Vec<u32>,
    /// Per list, its members' mean squared distance to the centroid (code space; computed
    /// from the codes on the first partition walk that needs it, see [`DiskIndex::spreads`]).
    spreads: std::sync::OnceLock<Vec<f32>>,
    /// One bit per sector: CRC already checked.
    verified: Vec<AtomicU64>,
    /// Node cache: node -> slot in `cache_arena` (`u32::MAX` = not cached); empty when
    /// nothing is cached. Dense, not hashed: the lookup is on every hop.
    cache_slot: Vec<u32>,
    cache_arena: Resident,
    /// Whether a node read from the mapping (not the node cache) also scores the other nodes
    /// of its sector. True for an index that does not fit in its share of the memory budget
    /// (it is read from disk: sector mates come at no I/O); false for one that fits, whether
    /// its nodes were copied at open or are read lazily from the mapping, so that a lazy and
    /// a warm open search alike — and alike to the calibration, which ran the same rule.
    mates: bool,
}

/// A node read from the graph.
struct NodeRec<'a>(Cow<'a, [u8]>);
