//! The write protocol's concurrency core: the write gate and the visible sequence.
//!
//! - A writer holds the gate *shared* from its WAL append to its publish: it appends (getting
//!   its LSN), applies the batch to the active memtable, marks the LSN applied and waits until
//!   every LSN up to it is visible (read-your-writes; visibility advances only over a gap-free
//!   prefix).
//! - A freeze holds the gate *exclusively*: no writer is between append and publish then, so
//!   every appended batch is applied and visible, and the mark (the visible sequence) splits the
//!   memtables exactly: the frozen one holds the LSNs <= mark, the new one those above.
//! - A flush makes the segment and the manifest (checkpoint = mark) durable, then installs a
//!   version without the frozen memtable and with the segment in one swap, then truncates the
//!   WAL below the mark — so at every instant an acknowledged write is in the WAL above the
//!   checkpoint or in a segment the manifest names, and a reader sees every visible LSN once.
//!
//! The primitives come from `crate::sync`; under `--cfg loom` the models below check these
//! claims over every interleaving (`scripts/test`).

use std::collections::BTreeSet;

use crate::sync::{Condvar, Mutex, RwLock};

/// Tracks which sequences are applied and publishes the gap-free prefix.
#[derive(Debug)]
pub(crate) struct Visibility {
    state: Mutex<VisState>,
    cond: Condvar,
}

#[derive(Debug)]
struct VisState {
    visible: u64,
    /// Applied sequences above a gap.
    ahead: BTreeSet<u64>,
    /// Writers waiting for the gap below their sequence to close.
    waiters: usize,
}

impl Visibility {
    pub(crate) fn new(visible: u64) -> Self {
        Visibility {
            state: Mutex::new(VisState {
                visible,
                ahead: BTreeSet::new(),
                waiters: 0,
            }),
            cond: Condvar::new(),
        }
    }

    pub(crate) fn visible(&self) -> u64 {
        self.state.lock().visible
    }

    /// Mark `seq` applied, then wait until everything up to it is visible. In the common case
    /// (`seq` is next) this neither waits nor wakes anyone.
    pub(crate) fn publish_and_wait(&self, seq: u64) {
        let mut st = self.state.lock();
        if seq == st.visible + 1 {
            st.visible = seq;
            while st.ahead.first() == Some(&(st.visible + 1)) {
                st.ahead.pop_first();
                st.visible += 1;
            }
            if st.waiters > 0 {
                self.cond.notify_all();
            }
            return;
        }
        st.ahead.insert(seq);
        st.waiters += 1;
        while st.visible < seq {
            self.cond.wait(&mut st);
        }
        st.waiters -= 1;
    }
}

/// The write gate with the visible sequence.
#[derive(Debug)]
pub(crate) struct WriteGate {
    gate: RwLock<()>,
    visibility: Visibility,
}

impl WriteGate {
    pub(crate) fn new(visible: u64) -> Self {
        WriteGate {
            gate: RwLock::new(()),
            visibility: Visibility::new(visible),
        }
    }

    /// The highest sequence below which everything is applied.
    pub(crate) fn visible(&self) -> u64 {
        self.visibility.visible()
    }

    /// One write: under the shared gate, `append` (the WAL; returns the LSN) then `apply(lsn)`
    /// (the memtable); returns once the LSN is visible. A failed append applies nothing.
    pub(crate) fn write<T, E>(
        &self,
        append: impl FnOnce() -> Result<u64, E>,
        apply: impl FnOnce(u64) -> T,
    ) -> Result<T, E> {
        let _gate = self.gate.read();
        let lsn = append()?;
        let out = apply(lsn);
        self.visibility.publish_and_wait(lsn);
        Ok(out)
    }

    /// Run `f(mark)` with the gate held exclusively: no write is in flight and `mark` (the
    /// visible sequence) covers every appended batch.
    pub(crate) fn exclusive<R>(&self, f: impl FnOnce(u64) -> R) -> R {
        let _gate = self.gate.write();
        f(self.visibility.visible())
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use std::collections::BTreeSet;

    use loom::sync::Arc;

    use super::WriteGate;
    use crate::sync::Mutex;

    /// A memtable (the LSNs applied to it) and a version, shaped like `Version`.
    type Mem = Arc<Mutex<Vec<u64>>>;
    #[derive(Clone)]
    struct Version {
        active: Mem,
        frozen: Vec<(Mem, u64)>,
        segments: Vec<Arc<Vec<u64>>>,
    }

    struct Db {
        writes: WriteGate,
        /// The WAL: next LSN and the records present.
        wal: Mutex<(u64, Vec<u64>)>,
        version: Mutex<Arc<Version>>,
        /// The durable manifest: segment contents and checkpoint.
        manifest: Mutex<(Vec<Arc<Vec<u64>>>, u64)>,
    }

    impl Db {
        fn new() -> Db {
            Db {
                writes: WriteGate::new(0),
                wal: Mutex::new((1, Vec::new())),
                version: Mutex::new(Arc::new(Version {
                    active: Arc::new(Mutex::new(Vec::new())),
                    frozen: Vec::new(),
                    segments: Vec::new(),
                })),
                manifest: Mutex::new((Vec::new(), 0)),
            }
        }

        /// `Db::write`'s use of the gate.
        fn write(&self) -> u64 {
            let r: Result<u64, ()> = self.writes.write(
                || {
                    let mut w = self.wal.lock();
                    let lsn = w.0;
                    w.0 += 1;
                    w.1.push(lsn);
                    Ok(lsn)
                },
                |lsn| {
                    let active = self.version.lock().active.clone();
                    active.lock().push(lsn);
                    lsn
                },
            );
            let lsn = r.unwrap_or(0);
            assert!(
                self.writes.visible() >= lsn,
                "a write returned before it was visible"
            );
            lsn
        }

        /// `Inner::freeze`.
        fn freeze(&self) {
            self.writes.exclusive(|mark| {
                let mut v = self.version.lock();
                let mut next = Version::clone(&v);
                next.frozen.insert(0, (v.active.clone(), mark));
                next.active = Arc::new(Mutex::new(Vec::new()));
                *v = Arc::new(next);
            });
        }

        /// `Inner::flush_one`'s order: segment + manifest durable, install, truncate the WAL.
        fn flush_one(&self) {
            let v = self.version.lock().clone();
            let Some((mem, mark)) = v.frozen.last().cloned() else {
                return;
            };
            let seg: Vec<u64> = mem.lock().iter().copied().filter(|l| *l <= mark).collect();
            let seg = Arc::new(seg);
            let mut segments = v.segments.clone();
            segments.insert(0, seg);
            *self.manifest.lock() = (segments.clone(), mark);
            {
                let mut cur = self.version.lock();
                let mut next = Version::clone(&cur);
                next.frozen.retain(|(f, _)| !Arc::ptr_eq(f, &mem));
                next.segments = segments;
                *cur = Arc::new(next);
            }
            self.wal.lock().1.retain(|l| *l > mark);
        }

        /// A reader's snapshot (`Db::snapshot`): every LSN it sees, with repeats.
        fn snapshot(&self) -> (u64, Vec<u64>) {
            let v = self.version.lock();
            let seq = self.writes.visible();
            let v = v.clone();
            let mut seen: Vec<u64> = v.segments.iter().flat_map(|s| s.iter().copied()).collect();
            for (m, _) in &v.frozen {
                seen.extend(m.lock().iter().copied().filter(|l| *l <= seq));
            }
            seen.extend(v.active.lock().iter().copied().filter(|l| *l <= seq));
            (seq, seen)
        }

        /// What recovery would find if the power failed now: manifest segments, plus WAL
        /// records above the checkpoint (one instant: both locks held).
        fn crash_image(&self) -> BTreeSet<u64> {
            let m = self.manifest.lock();
            let w = self.wal.lock();
            let mut out: BTreeSet<u64> = m.0.iter().flat_map(|s| s.iter().copied()).collect();
            out.extend(w.1.iter().copied().filter(|l| *l > m.1));
            out
        }
    }

    /// Two writers race a freeze: the frozen memtable holds exactly the LSNs <= its mark and
    /// the new one exactly those above; every write returns visible.
    #[test]
    fn freeze_splits_the_memtables_at_the_mark() {
        loom::model(|| {
            let db = Arc::new(Db::new());
            let writers: Vec<_> = (0..2)
                .map(|_| {
                    let db = db.clone();
                    loom::thread::spawn(move || db.write())
                })
                .collect();
            db.freeze();
            for w in writers {
                let _ = w.join();
            }
            let v = db.version.lock().clone();
            let (frozen, mark) = v.frozen.first().cloned().expect("one frozen memtable");
            let frozen = frozen.lock().clone();
            let active = v.active.lock().clone();
            assert!(
                frozen.iter().all(|l| *l <= mark),
                "frozen {frozen:?} past mark {mark}"
            );
            assert!(
                active.iter().all(|l| *l > mark),
                "active {active:?} at or below mark {mark}"
            );
            let mut all: Vec<u64> = frozen.into_iter().chain(active).collect();
            all.sort_unstable();
            assert_eq!(all, vec![1, 2]);
        });
    }

    /// A flush publishes its manifest and version while a writer appends and a reader takes
    /// snapshots: no instant loses an acknowledged write (crash image), and a snapshot sees
    /// every visible LSN exactly once.
    #[test]
    fn flush_publish_never_loses_or_repeats_a_write() {
        loom::model(|| {
            let db = Arc::new(Db::new());
            let first = db.write();
            db.freeze();
            let acked = Arc::new(Mutex::new(vec![first]));
            let writer = {
                let (db, acked) = (db.clone(), acked.clone());
                loom::thread::spawn(move || {
                    let lsn = db.write();
                    acked.lock().push(lsn);
                })
            };
            let flusher = {
                let db = db.clone();
                loom::thread::spawn(move || db.flush_one())
            };
            for _ in 0..2 {
                let (seq, mut seen) = db.snapshot();
                seen.sort_unstable();
                assert_eq!(seen, (1..=seq).collect::<Vec<_>>(), "snapshot at {seq}");
                let acked_now = acked.lock().clone();
                let image = db.crash_image();
                for a in acked_now {
                    assert!(image.contains(&a), "acknowledged {a} lost in {image:?}");
                }
            }
            let _ = writer.join();
            let _ = flusher.join();
            let image = db.crash_image();
            assert_eq!(image.into_iter().collect::<Vec<_>>(), vec![1, 2]);
        });
    }
}
