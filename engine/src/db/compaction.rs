//! Maintenance: indexing segments flushed without a graph, the compaction policy and merge
//! (reusing the largest input's graph), recalibration, and installing a new version.

use super::*;

impl Inner {
    /// A segment big enough for a graph that was flushed without one.
    pub(super) fn needs_index(&self, ls: &LiveSegment) -> bool {
        ls.seg.ann().is_none() && ls.seg.vector_count() >= self.options.ann.min_vectors.max(2)
    }

    /// When writers have paused (no frozen memtable, the active one under 1/8 of the flush
    /// threshold): one flushed segment without its graph, the smallest first.
    pub(super) fn index_pick(&self) -> Vec<u64> {
        let v = self.version.lock().clone();
        let idle =
            v.frozen.is_empty() && v.active.mem_bytes() < self.options.flush_threshold_bytes / 8;
        if !idle {
            return Vec::new();
        }
        v.segments
            .iter()
            .filter(|ls| self.needs_index(ls))
            .min_by_key(|ls| (ls.seg.len(), ls.seg.id))
            .map(|ls| vec![ls.seg.id])
            .unwrap_or_default()
    }

    /// The segments the policy would merge now (ids), if any: every segment whose dead
    /// fraction passes `deleted_ratio_max`; every segment with dead documents when they are
    /// more than a third of all stored (space amplification above 1.5); and, when more than
    /// `segments_max` are live, the smallest ones (at most `MERGE_WIDTH`) toward
    /// `segments_max / 2`; otherwise, once writers pause, one segment to index.
    pub(super) fn compaction_pick(&self) -> Vec<u64> {
        let v = self.version.lock().clone();
        let dead: usize = v.segments.iter().map(|ls| ls.deleted.count()).sum();
        let stored: usize = v.segments.iter().map(|ls| ls.seg.len()).sum();
        let space_bound = dead * 3 > stored;
        let mut pick: Vec<u64> = v
            .segments
            .iter()
            .filter(|ls| {
                let d = ls.deleted.count();
                (d as f64 > self.options.deleted_ratio_max * ls.seg.len() as f64)
                    || (space_bound && d > 0)
            })
            .map(|ls| ls.seg.id)
            .collect();
        if pick.is_empty() {
            pick = self.index_pick();
        }
        if v.segments.len() > self.options.segments_max {
            let mut by_size: Vec<&LiveSegment> = v.segments.iter().collect();
            by_size.sort_by_key(|ls| (ls.seg.file_bytes().len(), ls.seg.id));
            // At most MERGE_WIDTH at a time: one merge of 11 of 14 equal segments (900k
            // documents, one graph) held the flusher for many minutes; the policy runs after
            // every flush, so the count still converges.
            let merge = (v.segments.len() - self.options.segments_max / 2 + 1).min(MERGE_WIDTH);
            for ls in by_size.into_iter().take(merge) {
                if !pick.contains(&ls.seg.id) {
                    pick.push(ls.seg.id);
                }
            }
        }
        pick
    }

    /// Merge the segments `ids` into one: live documents only (dead and superseded copies
    /// dropped), postings, columns and a graph rebuilt over the merged vectors. Installed with
    /// one manifest; the inputs' files go when the manifest is durable (snapshots keep their
    /// mappings). Returns whether anything changed.
    pub(super) fn compact_segments(
        &self,
        ids: Option<&[u64]>,
        progress: &(dyn Fn(u64, u64) + Sync),
    ) -> Result<bool> {
        let _maintenance = self.maintenance.lock();
        let started = std::time::Instant::now();
        let v = self.version.lock().clone();
        // `None` = every segment, as of now (under the lock: a background compaction may
        // have just replaced some).
        let all: Vec<u64> = v.segments.iter().map(|ls| ls.seg.id).collect();
        let ids = ids.unwrap_or(&all);
        let inputs: Vec<&LiveSegment> = v
            .segments
            .iter()
            .filter(|ls| ids.contains(&ls.seg.id))
            .collect();
        // One segment with nothing to drop is rewritten only to give it its graph.
        let single_clean = inputs.len() == 1
            && inputs
                .iter()
                .all(|ls| ls.deleted.count() == 0 && !self.needs_index(ls));
        if inputs.is_empty() || single_clean {
            return Ok(false);
        }
        let mut docs = Vec::new();
        for ls in &inputs {
            for i in 0..ls.seg.len() {
                if !ls.deleted.get(i) {
                    docs.push(Arc::new(ls.seg.doc(i)?));
                }
            }
        }
        // A key is live in at most one segment, so the merge is a sort.
        docs.sort_by(|a, b| a.key.cmp(&b.key));
        let mut m = self.manifest.lock().clone();
        let id = m.next_segment_id;
        let reuse = if self.options.compaction_reuse_graph {
            reuse_plan(&inputs, &docs)?
        } else {
            None
        };
        let total = docs.len() as u64;
        let (new_seg, bytes) =
            self.new_segment(id, &docs, reuse, true, &|done| progress(done, total))?;
        self.flush.state.lock().compaction_bytes += bytes;
        // The merged segment has the highest id, so it is listed as the newest (manifests
        // keep ids increasing); order does not matter to reads, as a key is live in at most
        // one segment.
        let mut segments: Vec<LiveSegment> = v
            .segments
            .iter()
            .filter(|ls| !ids.contains(&ls.seg.id))
            .cloned()
            .collect();
        if let Some(seg) = &new_seg {
            segments.insert(
                0,
                LiveSegment::new(seg.clone(), Arc::new(Bitset::new(seg.len())), 0),
            );
        }
        m.next_segment_id = id + 1;
        self.install(&v, m, segments, ids)?;
        let mut st = self.flush.state.lock();
        st.compactions += 1;
        st.compaction_seconds += started.elapsed().as_secs_f64();
        Ok(true)
    }
}

impl Inner {
    /// See [`Db::recalibrate`]. Under the maintenance lock: the segment list changes only
    /// here, in flushes and in compactions.
    pub(super) fn recalibrate(
        &self,
        queries: &[Vec<f32>],
        filters: Option<&[Option<crate::Filter>]>,
    ) -> Result<usize> {
        let _maintenance = self.maintenance.lock();
        let v = self.version.lock().clone();
        let mut m = self.manifest.lock().clone();
        let seg_dir = self.dir.join(SEGMENTS_DIR);
        let opts = crate::query::calibrate::CalibrateOptions::default();
        let mut segments = Vec::with_capacity(v.segments.len());
        let mut replaced = Vec::new();
        for ls in &v.segments {
            let cal = match &self.pool {
                Some(pool) => pool.install(|| {
                    crate::query::calibrate::calibrate_from_queries(
                        &ls.seg, queries, filters, &opts,
                    )
                })?,
                None => crate::query::calibrate::calibrate_from_queries(
                    &ls.seg, queries, filters, &opts,
                )?,
            };
            let Some(cal) = cal else {
                segments.push(ls.clone());
                continue;
            };
            let bytes =
                crate::segment::with_calibration(ls.seg.file_bytes().to_vec(), &cal.encode())?;
            let id = m.next_segment_id;
            m.next_segment_id = id + 1;
            let path = seg_dir.join(segment_name(id));
            crate::files::write_durably(&self.fs, &path, &bytes)?;
            let seg = self.open_segment(&path, id, bytes.len() as u64)?;
            // The same documents in the same order: the deletions carry over, under the new id.
            let gen = if ls.deleted.count() > 0 {
                deletes::write(&self.fs, &seg_dir.join(deletes_name(id, 1)), &ls.deleted)?;
                1
            } else {
                0
            };
            segments.push(LiveSegment::new(seg, ls.deleted.clone(), gen));
            replaced.push(ls.seg.id);
        }
        if replaced.is_empty() {
            return Ok(0);
        }
        // A version lists segments newest (highest id) first, a manifest in increasing ids;
        // the rewritten ones took new ids. (Reads do not depend on the order: a key is live in
        // at most one segment.)
        segments.sort_by_key(|ls| std::cmp::Reverse(ls.seg.id));
        self.install(&v, m, segments, &replaced)?;
        Ok(replaced.len())
    }

    /// Publish `segments` (newest first) as the segment list replacing `v`'s, with manifest
    /// `m` (its next segment id already advanced): the manifest is written first, then the
    /// version swapped; the `retired` segments' files go when the last snapshot holding them
    /// does (`v` still holds them here, so the mark always precedes the last drop). Callers
    /// hold the maintenance lock — only flushes, compactions and recalibrations change the
    /// segment list, and all hold it — so the current list is still `v`'s.
    pub(super) fn install(
        &self,
        v: &Version,
        mut m: Manifest,
        segments: Vec<LiveSegment>,
        retired: &[u64],
    ) -> Result<()> {
        m.number += 1;
        m.segments = manifest_segments(&segments);
        manifest::write(&self.fs, &self.dir, &m)?;
        {
            let mut cur = self.version.lock();
            let mut next = Version::clone(&cur);
            next.segments = segments;
            *cur = Arc::new(next);
        }
        *self.manifest.lock() = m.clone();
        for ls in v.segments.iter().filter(|ls| retired.contains(&ls.seg.id)) {
            ls.seg.retire();
        }
        remove_orphans(&self.fs, &self.dir, &m, Sweep::NotSegments)?;
        Ok(())
    }
}

/// Most segments one policy-driven merge takes (`Db::compact` takes all).
pub(super) const MERGE_WIDTH: usize = 4;

/// The graph a compaction starts from: the largest input graph, if at least half of its
/// segment is live, mapped onto the merged rows (`docs` sorted by key; rows = documents with a
/// vector, in order).
pub(super) fn reuse_plan(
    inputs: &[&LiveSegment],
    docs: &[Arc<Document>],
) -> Result<Option<ReuseGraph>> {
    let Some((ls, idx)) = inputs
        .iter()
        .filter_map(|ls| Some((*ls, ls.seg.ann()?)))
        .max_by_key(|(ls, idx)| (idx.len(), ls.seg.id))
    else {
        return Ok(None);
    };
    let live = ls.seg.len() - ls.deleted.count();
    if live * 2 < ls.seg.len() {
        return Ok(None); // mostly dead: a rebuild is cheaper and no worse
    }
    let (adj, ords, entry) = idx.adjacency(ls.seg.file_bytes())?;
    let mut row_of_doc = Vec::with_capacity(docs.len());
    let mut rows = 0u32;
    for d in docs {
        row_of_doc.push(d.vector.is_some().then(|| {
            rows += 1;
            rows - 1
        }));
    }
    let new_row = ords
        .iter()
        .map(|&o| {
            if ls.deleted.get(o) {
                return None;
            }
            let key = ls.seg.key(o);
            let j = docs.binary_search_by(|d| d.key.as_slice().cmp(key)).ok()?;
            row_of_doc.get(j).copied().flatten()
        })
        .collect();
    let (quant, codes) = idx.quantizer_and_codes();
    Ok(Some(ReuseGraph {
        adj,
        new_row,
        entry,
        quant,
        codes,
    }))
}

/// Manifest entries of `segments` (newest first in a version, oldest first in a manifest).
pub(super) fn manifest_segments(segments: &[LiveSegment]) -> Vec<SegmentMeta> {
    segments
        .iter()
        .rev()
        .map(|ls| SegmentMeta {
            id: ls.seg.id,
            doc_count: ls.seg.len() as u32,
            deletes_gen: ls.deletes_gen,
            file_bytes: Some(ls.seg.file_bytes().len() as u64),
        })
        .collect()
}
