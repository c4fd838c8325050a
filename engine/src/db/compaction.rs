//! Maintenance: indexing segments flushed without a graph, the compaction policy and merge
//! (reusing the largest input's graph), recalibration, and installing a new version.

use super::*;

/// What the merge policy does next: merge (or rewrite) `ids`, and whether the output gets
/// its graph now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct MergePick {
    pub ids: Vec<u64>,
    pub index: bool,
}

impl MergePick {
    pub(super) fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

impl Inner {
    /// A segment big enough for a graph that was flushed without one.
    pub(super) fn needs_index(&self, ls: &LiveSegment) -> bool {
        ls.seg.ann().is_none() && ls.seg.vector_count() >= self.options.ann.min_vectors.max(2)
    }

    /// Whether writers have paused: no frozen memtable, and the active one under 1/8 of the
    /// flush threshold or no write made visible for `QUIET` (a load that stops with a part-full
    /// memtable is paused too: before, its segments waited for graphs until the next write).
    fn writers_idle(&self, v: &Version) -> bool {
        if !v.frozen.is_empty() {
            return false;
        }
        let seq = self.writes.visible();
        let now = std::time::Instant::now();
        let mut last = self.last_write_seen.lock();
        if last.0 != seq {
            *last = (seq, now);
        }
        v.active.mem_bytes() < self.options.flush_threshold_bytes / 8
            || now.duration_since(last.1) >= QUIET
    }

    /// When writers have paused: every flushed segment without its graph (the smallest first,
    /// up to `index_merge_docs_max` documents in all), merged into one that gets one graph —
    /// a bulk load through `Db::write` ends as the offline builder's segments would, its
    /// graph built once instead of once per merge.
    pub(super) fn index_pick(&self) -> MergePick {
        let v = self.version.lock().clone();
        if !self.writers_idle(&v) {
            return MergePick::default();
        }
        let mut unindexed: Vec<&LiveSegment> = v
            .segments
            .iter()
            .filter(|ls| self.needs_index(ls))
            .collect();
        unindexed.sort_by_key(|ls| (ls.seg.len(), ls.seg.id));
        let cap = self.options.index_merge_docs_max.max(1);
        let mut docs = 0usize;
        let mut ids = Vec::new();
        for ls in unindexed {
            let live = ls.seg.len() - ls.deleted.count();
            if !ids.is_empty() && docs + live > cap {
                break;
            }
            docs += live;
            ids.push(ls.seg.id);
        }
        MergePick { ids, index: true }
    }

    /// The segments the policy would merge now (ids), if any: every segment whose dead
    /// fraction passes `deleted_ratio_max`; every segment with dead documents when they are
    /// more than a third of all stored (space amplification above 1.5); and, when more than
    /// `segments_max` are live, the smallest ones (at most `MERGE_WIDTH`) toward
    /// `segments_max / 2`; otherwise, once writers pause, the segments to index.
    ///
    /// While writers are busy, a merge of segments that have no graph writes none either
    /// (unless its output reaches `index_merge_docs_max`): building graphs that the next merge
    /// would rebuild is what made a bulk load through `Db::write` slow; the graph is built once
    /// writers pause. Queries over graph-less segments are exact scans (correct, slower).
    pub(super) fn compaction_pick(&self) -> MergePick {
        let v = self.version.lock().clone();
        // Flushes first: while memtables wait for the flusher, a merge would take the CPU and
        // disk it needs (writers then stall). Merges wait, unless the segment count passes
        // twice `segments_max` (reads probe every segment: a bound even for endless ingest).
        if !v.frozen.is_empty() && v.segments.len() <= 2 * self.options.segments_max {
            return MergePick::default();
        }
        let dead: usize = v.segments.iter().map(|ls| ls.deleted.count()).sum();
        let stored: usize = v.segments.iter().map(|ls| ls.seg.len()).sum();
        let space_bound = dead * 3 > stored;
        let mut ids: Vec<u64> = v
            .segments
            .iter()
            .filter(|ls| {
                let d = ls.deleted.count();
                (d as f64 > self.options.deleted_ratio_max * ls.seg.len() as f64)
                    || (space_bound && d > 0)
            })
            .map(|ls| ls.seg.id)
            .collect();
        if ids.is_empty() {
            ids = self.index_pick().ids;
        }
        if v.segments.len() > self.options.segments_max {
            let mut by_size: Vec<&LiveSegment> = v.segments.iter().collect();
            by_size.sort_by_key(|ls| (ls.seg.file_bytes().len(), ls.seg.id));
            // At most MERGE_WIDTH at a time: one merge of 11 of 14 equal segments (900k
            // documents, one graph) took many minutes; the policy runs after every flush, so
            // the count still converges.
            let merge = (v.segments.len() - self.options.segments_max / 2 + 1).min(MERGE_WIDTH);
            for ls in by_size.into_iter().take(merge) {
                if !ids.contains(&ls.seg.id) {
                    ids.push(ls.seg.id);
                }
            }
        }
        let inputs = v.segments.iter().filter(|ls| ids.contains(&ls.seg.id));
        let (mut any_graph, mut live) = (false, 0usize);
        for ls in inputs {
            any_graph |= ls.seg.ann().is_some();
            live += ls.seg.len() - ls.deleted.count();
        }
        let index = self.writers_idle(&v) || any_graph || live >= self.options.index_merge_docs_max;
        MergePick { ids, index }
    }

    /// Run the policy once: pick under the compaction lock (so a pick never races another
    /// compaction) and merge. Returns whether anything changed.
    pub(super) fn compact_policy(&self) -> Result<bool> {
        let _compaction = self.compaction.lock();
        let pick = if self.options.compaction {
            self.compaction_pick()
        } else {
            self.index_pick()
        };
        if pick.is_empty() {
            return Ok(false);
        }
        self.compact_locked(Some(&pick.ids), pick.index, &|_, _| {})
    }

    /// Merge the segments `ids` into one: live documents only (dead and superseded copies
    /// dropped), postings, columns and — with `index` — a graph rebuilt over the merged vectors
    /// (from the largest input's graph where it can). Installed with one manifest; the inputs'
    /// files go when the manifest is durable (snapshots keep their mappings). Returns whether
    /// anything changed.
    pub(super) fn compact_segments(
        &self,
        ids: Option<&[u64]>,
        index: bool,
        progress: &(dyn Fn(u64, u64) + Sync),
    ) -> Result<bool> {
        let _compaction = self.compaction.lock();
        self.compact_locked(ids, index, progress)
    }

    /// [`Inner::compact_segments`] with the compaction lock held. The maintenance lock is
    /// held only to take the inputs (and reserve the output's id) and to install: flushes go
    /// on while the merge reads, encodes and builds its graph, so writers never wait for a
    /// graph build. Documents a flush overwrote or deleted in the inputs meanwhile die in the
    /// output's deletion bitmap at install.
    fn compact_locked(
        &self,
        ids: Option<&[u64]>,
        index: bool,
        progress: &(dyn Fn(u64, u64) + Sync),
    ) -> Result<bool> {
        let started = std::time::Instant::now();
        let _maintenance = self.maintenance.lock();
        let v = self.version.lock().clone();
        // `None` = every segment, as of now.
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
                .all(|ls| ls.deleted.count() == 0 && !(index && self.needs_index(ls)));
        if inputs.is_empty() || single_clean {
            return Ok(false);
        }
        // Reserve the output's id (flushes meanwhile take the ones after it; a crash leaves
        // an orphan file that open sweeps), then let flushes go on.
        let id = {
            let mut m = self.manifest.lock();
            m.next_segment_id += 1;
            m.next_segment_id - 1
        };
        drop(_maintenance);
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
        let reuse = if index && self.options.compaction_reuse_graph {
            reuse_plan(&inputs, &docs)?
        } else {
            None
        };
        let total = docs.len() as u64;
        // A closing handle abandons the build (before anything is written).
        let go_on = |done| {
            progress(done, total);
            !self.flush.state.lock().stop
        };
        let (new_seg, bytes) = self.new_segment(id, &docs, reuse, index, &go_on)?;
        drop(docs);
        self.flush.state.lock().compaction_bytes += bytes;
        let _maintenance = self.maintenance.lock();
        let cur = self.version.lock().clone();
        // What flushes deleted in the inputs since they were taken dies in the output too; an
        // input a flush dropped (all of it dead) lost every document it had.
        let mut out = None;
        if let Some(seg) = &new_seg {
            let mut deleted = Bitset::new(seg.len());
            for ls in &inputs {
                let now = cur.segments.iter().find(|c| c.seg.id == ls.seg.id);
                let mut newly = match now {
                    Some(c) => (*c.deleted).clone(),
                    None => Bitset::full(ls.seg.len()),
                };
                newly.and_not_with(&ls.deleted);
                for i in newly.iter() {
                    if let Some(j) = seg.find(ls.seg.key(i)) {
                        deleted.set(j);
                    }
                }
            }
            let gen = if deleted.any() {
                let seg_dir = self.dir.join(SEGMENTS_DIR);
                deletes::write(&self.fs, &seg_dir.join(deletes_name(id, 1)), &deleted)?;
                1
            } else {
                0
            };
            if deleted.count() < seg.len() {
                out = Some(LiveSegment::new(seg.clone(), Arc::new(deleted), gen));
            }
        }
        let mut segments: Vec<LiveSegment> = cur
            .segments
            .iter()
            .filter(|ls| !ids.contains(&ls.seg.id))
            .cloned()
            .chain(out)
            .collect();
        // Newest (highest id) first, as manifests list ids increasing; flushes during the
        // merge took higher ids than the output. (Reads do not depend on the order: a key is
        // live in at most one segment.)
        segments.sort_by_key(|ls| std::cmp::Reverse(ls.seg.id));
        let m = self.manifest.lock().clone();
        self.install(&cur, m, segments, ids)?;
        if let Some(seg) = &new_seg {
            if !self
                .version
                .lock()
                .segments
                .iter()
                .any(|ls| ls.seg.id == id)
            {
                seg.retire(); // entirely dead before it was installed
            }
        }
        let mut st = self.flush.state.lock();
        st.compactions += 1;
        st.compaction_seconds += started.elapsed().as_secs_f64();
        Ok(true)
    }
}

impl Inner {
    /// See [`Db::recalibrate`]. Under the compaction and maintenance locks: the segment list
    /// changes only here, in flushes and in compactions.
    pub(super) fn recalibrate(
        &self,
        queries: &[Vec<f32>],
        filters: Option<&[Option<crate::Filter>]>,
    ) -> Result<usize> {
        let _compaction = self.compaction.lock();
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
    /// segment list, and all hold it while they install — and `v` is the current version.
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

/// No write for this long means writers have paused (the compactor looks every 250 ms: four
/// looks). Mistaking a pause for the end of a load costs a graph build beside the writes,
/// never a wait for them.
pub(super) const QUIET: std::time::Duration = std::time::Duration::from_secs(1);

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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code")]

    use super::*;
    use crate::{AnnOptions, Metric};

    fn put_generation(db: &Db, gen: u32, n: u32) {
        for i in 0..n {
            let v = (0..4).map(|j| ((i * 7 + j + gen) % 13) as f32).collect();
            db.put(Document::new(format!("g{gen:02}-{i:04}"), "v").with_vector(v))
                .unwrap();
        }
    }

    /// While writers are busy, a size-tier merge of graph-less segments builds no graph; once
    /// they pause, every graph-less segment is merged and indexed at once (one graph), not one
    /// segment per pass.
    #[test]
    fn busy_merges_skip_the_graph_and_idle_indexes_everything_once() {
        let tmp = tempfile::tempdir().unwrap();
        let opts = Options::default()
            .with_wal_preallocate(false)
            .with_flush_threshold_bytes(1 << 20)
            .with_segments_max(4)
            .with_ann(AnnOptions {
                min_vectors: 16,
                ..AnnOptions::default()
            });
        let db = Db::create_with(tmp.path(), Schema::new(4, Metric::L2), opts).unwrap();
        let inner = db.inner();
        // Keep the background compactor out while the scene is set (flushes do not need
        // this lock: they go on during a compaction).
        let hold = inner.compaction.lock();
        for gen in 0..6 {
            put_generation(&db, gen, 100);
            db.flush().unwrap();
        }
        // Writers busy: the active memtable holds more than 1/8 of the flush threshold.
        let mut gen = 6;
        while inner.version.lock().active.mem_bytes() < (1 << 20) / 8 {
            put_generation(&db, gen, 100);
            gen += 1;
        }
        let busy = inner.compaction_pick();
        assert_eq!(busy.ids.len(), MERGE_WIDTH, "{busy:?}");
        assert!(
            !busy.index,
            "a busy merge of graph-less segments builds no graph"
        );
        // No write for `QUIET`: paused, part-full memtable or not.
        std::thread::sleep(QUIET + std::time::Duration::from_millis(100));
        assert!(inner.compaction_pick().index);
        assert!(!inner.index_pick().is_empty());
        db.flush().unwrap();
        let idle = inner.compaction_pick();
        assert!(idle.index);
        assert_eq!(
            inner.index_pick().ids.len(),
            inner.version.lock().segments.len(),
            "every graph-less segment is indexed in one merge"
        );
        drop(hold);
        db.settle().unwrap();
        let st = db.stats();
        assert_eq!((st.segments, st.ann_segments), (1, 1), "{st:?}");
        assert_eq!(db.scan(..).unwrap().len(), gen as usize * 100);
    }

    /// Closing the handle abandons a merge's graph build: the merge fails with `Cancelled`
    /// (which the compactor takes as "closing", not as a failure), installs nothing and
    /// leaves no file behind.
    #[test]
    fn a_closing_handle_cancels_a_merge_and_changes_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let opts = Options::default()
            .with_wal_preallocate(false)
            .with_compaction(false)
            .with_ann(AnnOptions {
                min_vectors: 16,
                ..AnnOptions::default()
            });
        let db = Db::create_with(tmp.path(), Schema::new(4, Metric::L2), opts.clone()).unwrap();
        let inner = db.inner();
        // Hold the compactor off so the segments stay graph-less until the merge below.
        let hold = inner.compaction.lock();
        let ids = || -> Vec<u64> {
            let v = inner.version.lock().clone();
            v.segments.iter().map(|ls| ls.seg.id).collect()
        };
        for gen in 0..3 {
            put_generation(&db, gen, 500);
            db.flush().unwrap();
        }
        let before = ids();
        let files = |dir: &Path| {
            let mut v: Vec<_> = std::fs::read_dir(dir.join(SEGMENTS_DIR))
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            v.sort();
            v
        };
        let files_before = files(tmp.path());
        inner.flush.state.lock().stop = true;
        let r = inner.compact_locked(None, true, &|_, _| {});
        drop(hold);
        assert!(matches!(r, Err(Error::Cancelled(_))), "{r:?}");
        let after = ids();
        assert_eq!(before, after);
        assert_eq!(files_before, files(tmp.path()));
        assert!(inner.poison.lock().is_none());
        drop(db);
        let db = Db::open(tmp.path(), opts).unwrap();
        db.verify().unwrap();
        assert_eq!(db.scan(..).unwrap().len(), 1500);
    }

    /// A flush that lands during a merge (overwriting and deleting documents of its inputs)
    /// makes the merge write its output's first deletion bitmap at install. A crash at every
    /// file operation from that flush's return to the end of the merge — the output's file,
    /// the bitmap, the manifest, the cleanup — loses no acknowledged write and brings back
    /// no overwritten or deleted document.
    #[test]
    fn crash_at_every_step_of_a_merge_that_a_flush_overtook() {
        use std::collections::BTreeMap;
        use std::sync::atomic::{AtomicBool, Ordering as AtomicOrdering};
        use strata_io::{FaultConfig, FaultFs, Fs};

        let dir = Path::new("/db");
        let state = |db: &Db| -> BTreeMap<Vec<u8>, Vec<u8>> {
            db.scan(..)
                .unwrap()
                .into_iter()
                .map(|d| (d.key.clone(), d.value.clone()))
                .collect()
        };
        let mut points = 0;
        let mut installs = 0;
        for crash_at in 0..400u64 {
            let fs = FaultFs::new();
            let opts = Options::default()
                .with_fs(Arc::new(fs.clone()))
                .with_wal_preallocate(false)
                .with_compaction(false)
                .with_ann(AnnOptions {
                    min_vectors: 16,
                    calibrate: false,
                    ..AnnOptions::default()
                });
            let db = Db::create_with(dir, Schema::new(4, Metric::L2), opts.clone()).unwrap();
            for gen in 0..3 {
                put_generation(&db, gen, 200);
                db.flush().unwrap();
            }
            let mut model = state(&db);
            let inner = db.inner();
            // The id the merge reserves for its output.
            let out_id = inner.manifest.lock().next_segment_id;
            let fired = AtomicBool::new(false);
            let overtaken = std::sync::Mutex::new(None);
            let r = inner.compact_locked(None, true, &|_, _| {
                if fired.swap(true, AtomicOrdering::SeqCst) {
                    return;
                }
                // Mid-merge: overwrite ten documents of one input, delete ten of another,
                // flush (acknowledged and durable), then arm the crash.
                let mut b = crate::WriteBatch::new();
                for i in 0..10 {
                    b.put(Document::new(format!("g00-{i:04}"), "new"));
                    b.delete(format!("g01-{i:04}"));
                }
                let flushed = db.write(b).and_then(|()| db.flush());
                *overtaken.lock().unwrap() = Some(flushed.is_ok());
                fs.set_faults(FaultConfig {
                    crash_after_ops: Some(crash_at),
                    ..FaultConfig::default()
                });
            });
            assert_eq!(
                *overtaken.lock().unwrap(),
                Some(true),
                "crash at {crash_at}: the mid-merge flush did not happen or failed"
            );
            for i in 0..10 {
                model.insert(format!("g00-{i:04}").into_bytes(), b"new".to_vec());
                model.remove(format!("g01-{i:04}").as_bytes());
            }
            // Done: the merge ran to its end before the crash point (a crash in its last
            // steps, the cleanup, still returns Ok).
            let done = r.is_ok() && !fs.is_crashed();
            let files = fs.list_dir(&dir.join(SEGMENTS_DIR)).unwrap_or_default();
            let had_bitmap = fs.exists(&dir.join(SEGMENTS_DIR).join(deletes_name(out_id, 1)));
            fs.set_faults(FaultConfig {
                crash_after_ops: Some(0),
                ..FaultConfig::default()
            });
            drop(db);
            fs.crash(crash_at.wrapping_mul(0x9E37_79B9));
            let db = Db::open(dir, opts).unwrap_or_else(|e| panic!("crash at {crash_at}: {e}"));
            assert_eq!(state(&db), model, "crash at {crash_at}");
            db.verify()
                .unwrap_or_else(|e| panic!("crash at {crash_at}: {e}"));
            points += 1;
            installs += usize::from(had_bitmap);
            if done {
                // The merge's output carries the mid-merge flush's deaths in its bitmap.
                assert!(
                    had_bitmap,
                    "crash at {crash_at}: the completed merge wrote no deletion bitmap: {files:?}"
                );
                break;
            }
        }
        eprintln!(
            "{points} crash points, {installs} of them after the output's bitmap was written"
        );
        assert!(
            points > 10 && installs >= 1,
            "{points} points, {installs} installs"
        );
    }
}
