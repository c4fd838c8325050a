//! The write path's background half: poisoning, back-pressure, freezing the active memtable,
//! flushing frozen memtables to segments, and the flusher thread.

use super::*;

impl Inner {
    /// The log of a writable handle.
    pub(super) fn wal(&self) -> Result<&Wal> {
        self.wal
            .as_ref()
            .ok_or_else(|| Error::ReadOnly(self.dir.clone()))
    }

    pub(super) fn check_poison(&self) -> Result<()> {
        if self.wal.is_none() {
            return Err(Error::ReadOnly(self.dir.clone()));
        }
        match self.poison.lock().clone() {
            Some(cause) => Err(Error::Poisoned(cause)),
            None => Ok(()),
        }
    }

    pub(super) fn set_poison(&self, cause: String) {
        self.poison.lock().get_or_insert(cause);
        self.flush.cond.notify_all();
    }

    /// Back-pressure while too many frozen memtables await their flush, in two stages: with one frozen memtable short of the limit, each write
    /// is delayed 1 ms (the flusher and compactions catch up while writers keep moving); at
    /// the limit, writers wait. Both are counted, and the first of each stage per episode is
    /// logged.
    pub(super) fn wait_for_flush_room(&self) {
        let max = self.options.frozen_memtables_max.max(1);
        let frozen = self.version.lock().frozen.len();
        if frozen + 1 == max && max > 1 {
            let already = {
                let mut st = self.flush.state.lock();
                st.slowdowns += 1;
                st.stalled = false;
                std::mem::replace(&mut st.slowed, true)
            };
            if !already {
                log::warn!(
                    "strata {}: writes slowed down ({frozen} memtables await their flush)",
                    self.dir.display()
                );
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
            return;
        }
        let mut st = self.flush.state.lock();
        if frozen < max {
            st.slowed = false;
            st.stalled = false;
            return;
        }
        st.stalls += 1;
        if !std::mem::replace(&mut st.stalled, true) {
            log::warn!(
                "strata {}: writes stalled until a flush completes ({frozen} memtables await it)",
                self.dir.display()
            );
        }
        while self.version.lock().frozen.len() >= max && self.poison.lock().is_none() && !st.stop {
            self.flush
                .cond
                .wait_for(&mut st, std::time::Duration::from_millis(50));
        }
    }

    /// Swap in an empty memtable; the old one joins the frozen list. With `force`, freeze any
    /// non-empty memtable; otherwise only one past the threshold (another writer may have won).
    pub(super) fn freeze(&self, force: bool) {
        let frozen = self.writes.exclusive(|mark| {
            let mut v = self.version.lock();
            let bytes = v.active.mem_bytes();
            if bytes == 0 || (!force && bytes < self.options.flush_threshold_bytes) {
                return false;
            }
            let mut next = Version::clone(&v);
            next.frozen.insert(0, (v.active.clone(), mark));
            next.active = Arc::new(Memtable::new());
            *v = Arc::new(next);
            true
        });
        if !frozen {
            return;
        }
        // Pass through the flusher's mutex before notifying: the flusher checks "nothing
        // frozen" and starts waiting under that mutex, so a notify sent between its check and
        // its wait would be lost (seen as a hang once compaction changed the timing).
        drop(self.flush.state.lock());
        self.flush.cond.notify_all();
    }

    /// Write `docs` (sorted, unique) as segment `id` and open it; nothing for no documents.
    /// Returns the segment and the bytes written. `progress` gets graph insertions done and
    /// returns whether to go on.
    pub(super) fn new_segment(
        &self,
        id: u64,
        docs: &[Arc<Document>],
        reuse: Option<ReuseGraph>,
        index: bool,
        progress: &(dyn Fn(u64) -> bool + Sync),
    ) -> Result<(Option<Arc<Segment>>, u64)> {
        if docs.is_empty() {
            return Ok((None, 0));
        }
        let path = self.dir.join(SEGMENTS_DIR).join(segment_name(id));
        let write = || {
            write_segment_with(
                &self.fs,
                &path,
                docs,
                &self.schema,
                index.then_some(&self.options.ann),
                reuse,
                Some(crate::query::calibrate::for_writer),
                progress,
            )
        };
        let bytes = match &self.pool {
            Some(pool) => pool.install(write)?,
            None => write()?,
        };
        Ok((Some(self.open_segment(&path, id, bytes)?), bytes))
    }

    /// Open segment `id` just written at `path` (`bytes` long) with the database's cache and
    /// ANN budget.
    pub(super) fn open_segment(&self, path: &Path, id: u64, bytes: u64) -> Result<Arc<Segment>> {
        Ok(Arc::new(Segment::open(
            &self.fs,
            path,
            id,
            self.schema.clone(),
            self.cache.clone(),
            Some(self.ann_budget.clone()),
            Some(bytes),
        )?))
    }

    /// Flush the oldest frozen memtable, if any. Returns whether one was flushed.
    pub(super) fn flush_one(&self) -> Result<bool> {
        let _maintenance = self.maintenance.lock();
        let v = self.version.lock().clone();
        let Some((mem, mark)) = v.frozen.last().cloned() else {
            return Ok(false);
        };
        // The memtable's state at its mark: live documents, and the keys it deleted (each key
        // is visited once; the live ones are the documents' own keys, not copied).
        let mut docs = Vec::new();
        let mut deleted_keys = Vec::new();
        mem.for_each_visible(
            mark,
            std::ops::Bound::Unbounded,
            std::ops::Bound::Unbounded,
            |k, e| {
                match e {
                    Some(d) => docs.push(d.clone()),
                    None => deleted_keys.push(k.to_vec()),
                }
                true
            },
        );
        let seg_dir = self.dir.join(SEGMENTS_DIR);
        let mut m = self.manifest.lock().clone();
        let id = m.next_segment_id;
        let (new_seg, bytes) =
            self.new_segment(id, &docs, None, self.options.ann_at_flush, &|_| true)?;
        self.flush.state.lock().flush_bytes += bytes;
        // Older copies of every touched key die in their segment's deletion bitmap.
        let mut segments = Vec::with_capacity(v.segments.len() + 1);
        for ls in &v.segments {
            let mut deleted = (*ls.deleted).clone();
            let mut changed = false;
            let touched = docs
                .iter()
                .map(|d| d.key.as_slice())
                .chain(deleted_keys.iter().map(Vec::as_slice));
            for k in touched {
                if let Some(i) = ls.seg.find(k) {
                    if !deleted.get(i) {
                        deleted.set(i);
                        changed = true;
                    }
                }
            }
            if changed {
                let gen = ls.deletes_gen + 1;
                deletes::write(
                    &self.fs,
                    &seg_dir.join(deletes_name(ls.seg.id, gen)),
                    &deleted,
                )?;
                segments.push(LiveSegment::new(ls.seg.clone(), Arc::new(deleted), gen));
            } else {
                segments.push(ls.clone());
            }
        }
        if let Some(seg) = &new_seg {
            segments.insert(
                0,
                LiveSegment::new(seg.clone(), Arc::new(Bitset::new(seg.len())), 0),
            );
        }
        // Segments that are now entirely dead are dropped from the manifest (and their files
        // retired once it is durable; holding them here keeps the mark before the last drop).
        let dead: Vec<Arc<Segment>> = segments
            .iter()
            .filter(|ls| ls.deleted.count() >= ls.seg.len())
            .map(|ls| ls.seg.clone())
            .collect();
        segments.retain(|ls| ls.deleted.count() < ls.seg.len());
        m.number += 1;
        m.next_segment_id = id + 1;
        m.checkpoint_lsn = mark;
        m.segments = manifest_segments(&segments);
        manifest::write(&self.fs, &self.dir, &m)?;
        // Durable: install, then clean up.
        {
            let mut cur = self.version.lock();
            let mut next = Version::clone(&cur);
            next.frozen.retain(|(f, _)| !Arc::ptr_eq(f, &mem));
            next.segments = segments;
            *cur = Arc::new(next);
        }
        *self.manifest.lock() = m.clone();
        self.wal()?.truncate_below(mark)?;
        // Everything the new manifest does not name goes: the old manifest, superseded bitmap
        // generations (snapshots read bitmaps into memory). Segments that died entirely go
        // when the last snapshot holding them does.
        for seg in &dead {
            seg.retire();
        }
        drop(dead);
        remove_orphans(&self.fs, &self.dir, &m, Sweep::NotSegments)?;
        Ok(true)
    }
}

pub(super) fn flusher_loop(inner: &Arc<Inner>) {
    loop {
        {
            let mut st = inner.flush.state.lock();
            while !st.stop && inner.version.lock().frozen.is_empty() {
                inner.flush.cond.wait(&mut st);
            }
            if st.stop {
                return;
            }
        }
        if inner.poison.lock().is_some() {
            return;
        }
        match inner.flush_one() {
            Ok(_) => {
                inner.flush.state.lock().done += 1;
                inner.flush.cond.notify_all();
            }
            Err(e) => {
                inner.set_poison(format!("flush failed: {e}"));
                return;
            }
        }
    }
}

/// The compactor: runs the merge policy after every flush and, every 250 ms, to find the
/// segments to index once writers pause. Merges take the maintenance lock only to take their
/// inputs and to install, so the flusher keeps flushing (and writers keep writing) during a
/// graph build.
pub(super) fn compactor_loop(inner: &Arc<Inner>) {
    loop {
        {
            let mut st = inner.flush.state.lock();
            if st.stop {
                return;
            }
            let _ = inner
                .flush
                .cond
                .wait_for(&mut st, std::time::Duration::from_millis(250));
            if st.stop {
                return;
            }
        }
        if inner.poison.lock().is_some() {
            return;
        }
        // Until the policy has nothing left (a flush notifies again meanwhile).
        loop {
            match inner.compact_policy() {
                Ok(true) => {
                    inner.flush.cond.notify_all();
                    if inner.flush.state.lock().stop {
                        return;
                    }
                }
                Ok(false) => break,
                // The handle is closing: the merge was abandoned, nothing installed.
                Err(Error::Cancelled(_)) => return,
                Err(e) => {
                    inner.set_poison(format!("compaction failed: {e}"));
                    return;
                }
            }
        }
    }
}
