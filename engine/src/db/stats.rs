//! What a database reports about itself: statistics and per-segment information.

use super::*;

impl Db {
    /// Describe every live segment; with `graphs`, also read every graph node for the degree
    /// histogram and every vector chunk (which checks every byte an open leaves to first use,
    /// like [`Db::verify`]).
    pub fn segment_info(&self, graphs: bool) -> Result<Vec<SegmentInfo>> {
        self.segment_info_with(graphs, &|_, _| {})
    }

    /// [`Db::segment_info`], calling `progress(done, total)` after each segment (for progress
    /// bars over large databases).
    pub fn segment_info_with(
        &self,
        graphs: bool,
        progress: &dyn Fn(usize, usize),
    ) -> Result<Vec<SegmentInfo>> {
        let v = self.inner().version.lock().clone();
        let total = v.segments.len();
        v.segments
            .iter()
            .enumerate()
            .map(|(done, ls)| {
                progress(done, total);
                let seg = &ls.seg;
                if graphs {
                    seg.verify_deferred()?;
                }
                let ann = match seg.ann() {
                    None => None,
                    Some(idx) => {
                        let (codes, code_bytes) = idx.code_kind();
                        Some(AnnInfo {
                            nodes: idx.len(),
                            degree_max: idx.degree_max(),
                            codes,
                            code_bytes,
                            resident_bytes: idx.resident_bytes(),
                            degree_histogram: if graphs {
                                idx.degree_histogram(seg.file_bytes())?
                            } else {
                                Vec::new()
                            },
                            calibration: seg.calibration().map(|c| CalibrationInfo {
                                samples: c.samples.len(),
                                filtered: c.samples.iter().filter(|x| x.filtered).count(),
                                k: c.k,
                                levels: c.levels,
                                exact_ns: c.exact_ns,
                            }),
                        })
                    }
                };
                Ok(SegmentInfo {
                    id: seg.id,
                    documents: seg.len(),
                    deleted: ls.deleted.count(),
                    file_bytes: seg.file_bytes().len() as u64,
                    terms: seg.term_count(),
                    ann,
                })
            })
            .collect()
    }

    /// Counters: segments, frozen memtables, memtable bytes, flushes completed.
    pub fn stats(&self) -> DbStats {
        let inner = self.inner();
        let v = inner.version.lock().clone();
        let fs_state = inner.flush.state.lock().clone();
        DbStats {
            segments: v.segments.len(),
            frozen_memtables: v.frozen.len(),
            memtable_bytes: v.active.mem_bytes(),
            flushes: fs_state.done,
            checkpoint_lsn: inner.manifest.lock().checkpoint_lsn,
            ann_segments: v.segments.iter().filter(|s| s.seg.ann().is_some()).count(),
            ann_resident_bytes: v
                .segments
                .iter()
                .filter_map(|s| s.seg.ann())
                .map(|a| a.resident_bytes() as u64)
                .sum(),
            compactions: fs_state.compactions,
            flush_bytes_written: fs_state.flush_bytes,
            compaction_bytes_written: fs_state.compaction_bytes,
            compaction_seconds: fs_state.compaction_seconds,
            live_bytes: v
                .segments
                .iter()
                .map(|s| s.seg.file_bytes().len() as u64)
                .sum(),
            write_slowdowns: fs_state.slowdowns,
            write_stalls: fs_state.stalls,
        }
    }
}

/// One segment, as `strata inspect` shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct SegmentInfo {
    /// Segment id (file name).
    pub id: u64,
    /// Documents stored (live and dead).
    pub documents: usize,
    /// Dead documents (deleted or overwritten later).
    pub deleted: usize,
    /// Size of the segment file.
    pub file_bytes: u64,
    /// Distinct terms.
    pub terms: usize,
    /// The ANN index, if the segment has one.
    pub ann: Option<AnnInfo>,
}

/// A segment's ANN index.
#[derive(Debug, Clone, PartialEq)]
pub struct AnnInfo {
    /// Graph nodes (documents with a vector).
    pub nodes: usize,
    /// Degree bound `R`.
    pub degree_max: usize,
    /// Code kind.
    pub codes: crate::CodeKind,
    /// Bytes per code.
    pub code_bytes: usize,
    /// Bytes it keeps in memory now (codes, node map, cache).
    pub resident_bytes: usize,
    /// Nodes per out-degree (index = degree); empty unless asked for.
    pub degree_histogram: Vec<u64>,
    /// What the planner measured about this segment (`None`: no calibration section).
    pub calibration: Option<CalibrationInfo>,
}

/// A segment's calibration (see `docs/format.md`, "Calibration").
#[derive(Debug, Clone, PartialEq)]
pub struct CalibrationInfo {
    /// Samples (a query with a filter or none).
    pub samples: usize,
    /// Of which filtered.
    pub filtered: usize,
    /// The `k` recall was measured at.
    pub k: u32,
    /// Effort levels per plan (efforts `k · 2^0 … k · 2^(levels−1)`).
    pub levels: usize,
    /// Measured time of one exact distance, in nanoseconds.
    pub exact_ns: f32,
}

/// Counters of a database.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DbStats {
    /// Live segments.
    pub segments: usize,
    /// Memtables frozen and waiting for their flush.
    pub frozen_memtables: usize,
    /// Approximate bytes of the active memtable.
    pub memtable_bytes: usize,
    /// Flushes completed by this handle.
    pub flushes: u64,
    /// WAL position covered by the segments.
    pub checkpoint_lsn: u64,
    /// Segments with an ANN graph.
    pub ann_segments: usize,
    /// Bytes the ANN indexes hold in memory of their own (codes, maps, node caches). Graph
    /// pages a lazy open reads from the mapping are the OS page cache's and not counted here
    /// (the memory budget reserves room for them).
    pub ann_resident_bytes: u64,
    /// Compactions completed by this handle.
    pub compactions: u64,
    /// Segment bytes written by flushes / by compactions (their sum over the flushed bytes is
    /// the write amplification of the segment files).
    pub flush_bytes_written: u64,
    /// See `flush_bytes_written`.
    pub compaction_bytes_written: u64,
    /// Seconds spent compacting.
    pub compaction_seconds: f64,
    /// Bytes of the live segment files (space amplification = this over the live data).
    pub live_bytes: u64,
    /// Writes that slept because flushes fell behind (one frozen memtable short of
    /// `frozen_memtables_max`, writes are paced at the last flush's rate).
    pub write_slowdowns: u64,
    /// Writes that waited for a flush (`frozen_memtables_max` frozen memtables).
    pub write_stalls: u64,
}
