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

    /// Back-pressure while too many frozen memtables await their flush, in two stages. With
    /// one frozen memtable short of the limit, writes are *paced* ([`Inner::pace`]: admitted at
    /// the rate the last flush drained memtable bytes, so writers keep moving at what the
    /// flusher sustains); at the limit, writers wait here. Both are counted, and the first of
    /// each stage per episode is logged.
    pub(super) fn wait_for_flush_room(&self) {
        let max = self.options.frozen_memtables_max.max(1);
        let frozen = self.version.lock().frozen.len();
        let mut st = self.flush.state.lock();
        if frozen < max {
            if frozen + 1 < max {
                st.slowed = false;
            }
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

    /// The slowdown stage of back-pressure, after a write that added `bytes` to the memtable:
    /// while the frozen memtables are one short of the limit, each write books `bytes /
    /// flush_rate` seconds on a shared clock and sleeps once its booking runs more than
    /// [`PACE_SLEEP_MIN`] ahead of now. (Before: 1 ms per write whatever its size — at 140k
    /// one-document puts/s that held writers to < 1k/s, a near-stall.)
    pub(super) fn pace(&self, bytes: usize) {
        let max = self.options.frozen_memtables_max.max(1);
        if max < 2 || self.version.lock().frozen.len() + 1 < max {
            return;
        }
        let wait = {
            let mut st = self.flush.state.lock();
            let rate = if st.flush_rate > 0.0 {
                st.flush_rate
            } else {
                PACE_RATE_UNMEASURED
            };
            let now = std::time::Instant::now();
            let until = book(st.paced_until, now, bytes, rate);
            st.paced_until = Some(until);
            let wait = until.saturating_duration_since(now);
            if wait >= PACE_SLEEP_MIN {
                st.slowdowns += 1;
                st.stalled = false;
                if !std::mem::replace(&mut st.slowed, true) {
                    log::warn!(
                        "strata {}: writes slowed down to the flush rate ({:.1} MB/s; {} memtables await their flush)",
                        self.dir.display(),
                        rate / 1e6,
                        max - 1
                    );
                }
            }
            wait
        };
        if wait >= PACE_SLEEP_MIN {
            std::thread::sleep(wait);
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
        // Only a graph build goes to the maintenance pool. A segment without one (every flush
        // by default) is written on the caller's thread: queued on the pool it waited for
        // whatever ran there — with one maintenance thread (the default on two cores) a
        // merge's whole graph build, so a flush during a merge stalled the writers.
        let bytes = match &self.pool {
            Some(pool) if index => pool.install(write)?,
            _ => write()?,
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

/// Pace of writes in a slowdown before any flush was measured: RocksDB's default
/// `delayed_write_rate` (16 MiB/s), a rate any disk sustains.
const PACE_RATE_UNMEASURED: f64 = 16.0 * 1024.0 * 1024.0;
/// A paced writer sleeps once it is this far ahead of its booking (shorter sleeps overshoot).
const PACE_SLEEP_MIN: std::time::Duration = std::time::Duration::from_millis(1);

/// The pacing clock: a write of `bytes` at `rate` bytes/s books its time after the bookings
/// before it (or from `now`, if they are past); returns when it is paid for.
fn book(
    booked: Option<std::time::Instant>,
    now: std::time::Instant,
    bytes: usize,
    rate: f64,
) -> std::time::Instant {
    let from = booked.filter(|t| *t > now).unwrap_or(now);
    let secs = bytes as f64 / rate.max(1.0);
    // A booking past an hour means a broken rate, not a real pace.
    from + std::time::Duration::from_secs_f64(secs.min(3600.0))
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
        let bytes = inner
            .version
            .lock()
            .frozen
            .last()
            .map_or(0, |(m, _)| m.mem_bytes());
        let start = std::time::Instant::now();
        match inner.flush_one() {
            Ok(flushed) => {
                let secs = start.elapsed().as_secs_f64();
                let mut st = inner.flush.state.lock();
                st.done += 1;
                if flushed && bytes > 0 && secs > 0.0 {
                    st.flush_rate = bytes as f64 / secs;
                }
                drop(st);
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

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::book;

    #[test]
    fn pacing_books_writes_back_to_back_at_the_rate() {
        let now = Instant::now();
        let mut until = None;
        for _ in 0..100 {
            until = Some(book(until, now, 10_000, 1e6));
        }
        // 1 MB at 1 MB/s: one second booked, whoever wrote it.
        let booked = until.unwrap() - now;
        assert!((booked.as_secs_f64() - 1.0).abs() < 1e-6, "{booked:?}");
        // A booking already past is not owed: the next write starts from now.
        let later = now + Duration::from_secs(5);
        let next = book(until, later, 10_000, 1e6) - later;
        assert!((next.as_secs_f64() - 0.01).abs() < 1e-6, "{next:?}");
        // A nonsense rate cannot book past an hour.
        assert!(book(None, now, usize::MAX, 0.0) - now <= Duration::from_secs(3600));
    }
}
