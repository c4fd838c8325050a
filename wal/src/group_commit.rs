//! Group commit: the leader/follower handoff that lets one fsync acknowledge many writers.
//!
//! Invariants (model-checked by `loom_tests`, run with `--cfg loom`):
//! - LSNs are assigned under the state lock, so encoded records sit in `pending` in LSN order;
//! - at most one thread (the *leader*) holds the sink; it takes every pending record, writes
//!   them and, when someone waits for durability, fsyncs — outside the lock, so others keep
//!   appending into the next batch meanwhile;
//! - `written_lsn` / `durable_lsn` only advance after the sink call that covers them returned
//!   `Ok`; a writer is acknowledged only once the mark it waits for covers its LSN;
//! - the first failed write or fsync poisons the state: the failing leader gets the error,
//!   every waiter not yet covered gets [`Error::Poisoned`], and so does every later call.
//!   Nothing is ever retried.
//! - *Gathering* (a performance heuristic, not a correctness mechanism): a leader that is about
//!   to fsync for appenders waits briefly — at most a quarter of the recent fsync time — until as many
//!   records are pending as the previous round acknowledged plus those that queued behind it,
//!   so writers acknowledged a moment ago join this fsync instead of the next one (without it a
//!   steady state of N writers splits into two alternating halves of N/2 per fsync). A lone
//!   writer never waits: it is the only record expected.
//! - *Per-waiter parking*: a writer that finds another leader at work files a [`Slot`] (its
//!   LSN, what it waits for, its thread) and parks outside the lock. The leader, after its
//!   round, marks every slot its marks now cover `DONE` and unparks that thread, which returns
//!   **without taking the lock again**; slots not covered stay parked, except one that is told
//!   to `RETRY` (take the lock and lead the next round) — and on poison every slot is told to
//!   retry, to read the cause. With a condition variable every acknowledged writer had to
//!   re-take the lock in turn to see its mark, a chain of wake-ups as long as the round.

use std::path::PathBuf;
use std::sync::Arc;
#[cfg(not(loom))]
use std::time::{Duration, Instant};

use crate::format::{encode_record, frame_bytes, RecordKind, FILE_HEADER_BYTES};
use crate::prealloc::SparePool;
use crate::sync::{current, park, AtomicU8, Condvar, Mutex, Ordering, Thread};
use crate::{Error, Lsn, Result};

/// A file the sink must start before writing the chunk that carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NewFile {
    pub first_lsn: Lsn,
    pub crc_seed: u32,
    /// A zero-filled spare to turn into this file, if one was ready.
    pub spare: Option<PathBuf>,
}

/// Encoded frames destined for one log file.
#[derive(Debug, Default)]
pub(crate) struct Chunk {
    pub new_file: Option<NewFile>,
    pub bytes: Vec<u8>,
}

/// Records encoded but not yet handed to the sink, and the layout of the file they go to.
#[derive(Debug)]
pub(crate) struct Pending {
    pub chunks: Vec<Chunk>,
    /// CRC seed of the file the next record lands in.
    pub file_seed: u32,
    /// Bytes of that file counting pending frames.
    pub file_bytes: u64,
    pub segment_bytes_max: u64,
    /// State of the seed generator for new files.
    pub seed_state: u64,
    /// Whether that file was preallocated (zero-filled); if not, rotate as soon as a spare is ready.
    pub file_preallocated: bool,
    /// Bytes that file takes before the next record starts a new one: its spare's size, or
    /// `segment_bytes_max` for a file that was not preallocated.
    pub file_capacity: u64,
    /// When the records of that file started (for sizing the next spare to the write rate).
    pub file_started: std::time::Instant,
    /// Whether the next spare was asked for.
    pub spare_asked: bool,
    /// Source of preallocated files, if enabled.
    pub spares: Option<Arc<SparePool>>,
    /// A written round's buffer, emptied, for the next round's first chunk (so a steady stream
    /// of small records allocates nothing here).
    pub recycled: Vec<u8>,
}

/// A round's buffer larger than this is freed rather than kept for the next round.
const RECYCLE_BYTES_MAX: usize = 1 << 20;

/// A preallocated file whose first half filled faster than this asks for a spare four times
/// its size (up to `segment_bytes_max`).
const SPARE_GROW_WITHIN: std::time::Duration = std::time::Duration::from_secs(10);
/// ... and slower than this, a quarter of its size (down to `SPARE_BYTES_MIN`).
const SPARE_SHRINK_AFTER: std::time::Duration = std::time::Duration::from_secs(600);

impl Pending {
    fn push(&mut self, lsn: Lsn, kind: RecordKind, payload: &[u8]) {
        let need = frame_bytes(payload.len()) as u64;
        let started = self.file_bytes > FILE_HEADER_BYTES as u64;
        let full = started && self.file_bytes + need > self.file_capacity;
        let upgrade = started
            && !self.file_preallocated
            && self.spares.as_ref().is_some_and(|p| p.has_spare());
        if full || upgrade {
            let spare = self.spares.as_ref().and_then(|p| p.claim());
            self.file_preallocated = spare.is_some();
            self.file_capacity = spare.as_ref().map_or(self.segment_bytes_max, |s| {
                s.1.max(FILE_HEADER_BYTES as u64 + 1)
            });
            self.file_started = std::time::Instant::now();
            self.spare_asked = false;
            let spare = spare.map(|s| s.0);
            self.file_seed = next_seed(&mut self.seed_state);
            self.file_bytes = FILE_HEADER_BYTES as u64;
            self.chunks.push(Chunk {
                new_file: Some(NewFile {
                    first_lsn: lsn,
                    crc_seed: self.file_seed,
                    spare,
                }),
                bytes: std::mem::take(&mut self.recycled),
            });
        }
        if self.chunks.is_empty() {
            self.chunks.push(Chunk {
                new_file: None,
                bytes: std::mem::take(&mut self.recycled),
            });
        }
        if let Some(last) = self.chunks.last_mut() {
            last.bytes.reserve(frame_bytes(payload.len()));
            encode_record(&mut last.bytes, self.file_seed, lsn, kind, payload);
        }
        self.file_bytes += need;
        self.ask_for_spare();
    }

    /// Ask the preallocator for the next file once it is in sight: at the first record into
    /// a file that was not preallocated (to move onto one), or when a preallocated file is
    /// half full — sized by how fast that half filled, so a log that takes few writes keeps
    /// small files and one under load reaches `segment_bytes_max`.
    fn ask_for_spare(&mut self) {
        let Some(pool) = &self.spares else {
            return;
        };
        if self.spare_asked {
            return;
        }
        let bytes = if !self.file_preallocated {
            crate::prealloc::SPARE_BYTES_MIN
        } else if self.file_bytes.saturating_mul(2) >= self.file_capacity {
            let half = self.file_started.elapsed();
            if half < SPARE_GROW_WITHIN {
                self.file_capacity.saturating_mul(4)
            } else if half > SPARE_SHRINK_AFTER {
                self.file_capacity / 4
            } else {
                self.file_capacity
            }
        } else {
            return;
        };
        let bytes = bytes
            .max(crate::prealloc::SPARE_BYTES_MIN)
            .min(self.segment_bytes_max);
        self.spare_asked = true;
        pool.request(bytes);
    }
}

/// Derive the next file seed (splitmix64 step; the generator is seeded randomly at open).
pub(crate) fn next_seed(state: &mut u64) -> u32 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    (z ^ (z >> 31)) as u32
}

/// Where encoded chunks go: the log files, or a model in tests.
pub(crate) trait Sink: Send {
    /// Syncs, without the sink, what the sink had written when the handle was taken.
    type Handle: SyncHandle;
    /// Write the chunks in order (starting new files where a chunk says so).
    fn write(&mut self, chunks: &[Chunk]) -> Result<()>;
    /// Make everything written so far durable.
    fn sync(&mut self) -> Result<()>;
    /// A handle on the file the next record goes to (every earlier file was made durable when
    /// the sink moved on from it), so syncing it covers everything written until then.
    fn handle(&self) -> Self::Handle;
}

/// See [`Sink::handle`].
pub(crate) trait SyncHandle: Clone + Send {
    /// Make durable everything written through the sink up to when this was taken (and after,
    /// to this file).
    fn sync(&self) -> Result<()>;
}

/// What an append waits for before it returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wait {
    /// The record has been handed to the OS (survives a process crash).
    Written,
    /// The record has been fsynced (survives power loss).
    Durable,
}

/// Counters of the commit pipeline.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CommitStats {
    /// Records appended.
    pub records: u64,
    /// Sink writes (each covering one or more records).
    pub writes: u64,
    /// fsyncs issued.
    pub syncs: u64,
    /// Nanoseconds spent in fsync (leaders, summed).
    pub sync_ns: u64,
    /// Nanoseconds leaders spent gathering writers before a round.
    pub gather_ns: u64,
}

/// A parked waiter: what it waits for and how the leader tells it the outcome.
struct Slot {
    lsn: Lsn,
    wait: Wait,
    /// [`WAITING`], [`DONE`] (covered: return) or [`RETRY`] (take the lock and look again).
    outcome: AtomicU8,
    thread: Thread,
}

const WAITING: u8 = 0;
const DONE: u8 = 1;
const RETRY: u8 = 2;

/// Upper bound of the gathering wait.
#[cfg(not(loom))]
const GATHER_NS_MAX: u64 = 500_000;

struct State<S: Sink> {
    sink: Option<S>,
    /// Records the next durable round expects to carry (see the module docs on gathering).
    expect_next: u64,
    /// Moving average of fsync time, in nanoseconds.
    sync_ns_avg: u64,
    /// A leader is waiting for more records; appenders signal `gather_cond`.
    gathering: bool,
    pending: Pending,
    next_lsn: Lsn,
    written_lsn: Lsn,
    durable_lsn: Lsn,
    poison: Option<String>,
    stats: CommitStats,
    /// Writers parked while a leader works (see the module docs).
    parked: Vec<Arc<Slot>>,
    /// The sink's handle as of `written_lsn` (see [`GroupCommit::sync_written`]).
    handle: S::Handle,
}

pub(crate) struct GroupCommit<S: Sink> {
    state: Mutex<State<S>>,
    cond: Condvar,
    gather_cond: Condvar,
}

impl<S: Sink> GroupCommit<S> {
    /// `next_lsn` is the LSN of the next record; everything before it is durable.
    pub(crate) fn new(sink: S, pending: Pending, next_lsn: Lsn) -> Self {
        let last = next_lsn.saturating_sub(1);
        GroupCommit {
            state: Mutex::new(State {
                handle: sink.handle(),
                sink: Some(sink),
                expect_next: 0,
                sync_ns_avg: 0,
                gathering: false,
                pending,
                next_lsn,
                written_lsn: last,
                durable_lsn: last,
                poison: None,
                stats: CommitStats::default(),
                parked: Vec::new(),
            }),
            cond: Condvar::new(),
            gather_cond: Condvar::new(),
        }
    }

    /// Assign the next LSN to a record, queue it, and wait until `wait` covers it.
    pub(crate) fn append(&self, kind: RecordKind, payload: &[u8], wait: Wait) -> Result<Lsn> {
        let mut st = self.state.lock();
        if let Some(cause) = &st.poison {
            return Err(Error::Poisoned {
                cause: cause.clone(),
            });
        }
        let lsn = st.next_lsn;
        st.next_lsn += 1;
        st.stats.records += 1;
        st.pending.push(lsn, kind, payload);
        // Wake a gathering leader only once its round is complete (one wakeup, not one per record).
        if st.gathering && st.next_lsn - 1 - st.written_lsn >= st.expect_next {
            self.gather_cond.notify_all();
        }
        self.wait_for(st, lsn, wait)
    }

    /// Run `f` on the sink once no leader holds it, if every appended record is durable and
    /// the log is not poisoned (`None` otherwise): the log's last words at close.
    pub(crate) fn with_idle_sink<R>(&self, f: impl FnOnce(&mut S) -> R) -> Option<R> {
        let mut st = self.state.lock();
        loop {
            if st.poison.is_some() || st.durable_lsn + 1 < st.next_lsn {
                return None;
            }
            match st.sink.as_mut() {
                Some(sink) => return Some(f(sink)),
                None => st = self.cond.wait(st),
            }
        }
    }

    /// Make every record *written* so far durable without holding the sink, so writers keep
    /// writing meanwhile (the `Sync::Batch` syncer: with the sink held through its fdatasync,
    /// every writer stalled for it each window — 40 % of a one-writer load's time). Records
    /// still pending are not acknowledged to anyone yet; the next call covers them. Returns
    /// the durable LSN.
    pub(crate) fn sync_written(&self) -> Result<Lsn> {
        let (target, handle) = {
            let st = self.state.lock();
            if let Some(cause) = &st.poison {
                return Err(Error::Poisoned {
                    cause: cause.clone(),
                });
            }
            if st.durable_lsn >= st.written_lsn {
                return Ok(st.durable_lsn);
            }
            (st.written_lsn, st.handle.clone())
        };
        #[cfg(not(loom))]
        let start = Instant::now();
        let res = handle.sync();
        let mut st = self.state.lock();
        #[cfg(not(loom))]
        {
            let ns = u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
            st.stats.sync_ns = st.stats.sync_ns.saturating_add(ns);
        }
        let out = match res {
            Ok(()) => {
                st.durable_lsn = st.durable_lsn.max(target);
                st.stats.syncs += 1;
                Ok(st.durable_lsn)
            }
            Err(e) => {
                if st.poison.is_none() {
                    st.poison = Some(e.to_string());
                }
                Err(e)
            }
        };
        let wake = release_parked(&mut st);
        self.cond.notify_all();
        drop(st);
        for t in wake {
            t.unpark();
        }
        out
    }

    /// Make every record appended so far durable; returns the durable LSN.
    pub(crate) fn sync(&self) -> Result<Lsn> {
        let st = self.state.lock();
        let target = st.next_lsn.saturating_sub(1);
        if st.durable_lsn >= target {
            return Ok(st.durable_lsn);
        }
        self.wait_for(st, target, Wait::Durable)
    }

    fn wait_for<'a>(
        &'a self,
        mut st: crate::sync::MutexGuard<'a, State<S>>,
        lsn: Lsn,
        wait: Wait,
    ) -> Result<Lsn> {
        loop {
            let covered = match wait {
                Wait::Written => st.written_lsn >= lsn,
                Wait::Durable => st.durable_lsn >= lsn,
            };
            if covered {
                return Ok(lsn);
            }
            if let Some(cause) = &st.poison {
                return Err(Error::Poisoned {
                    cause: cause.clone(),
                });
            }
            let Some(mut sink) = st.sink.take() else {
                // Park outside the lock until the leader says this LSN is covered (return
                // without the lock) or asks this thread to look again.
                let slot = Arc::new(Slot {
                    lsn,
                    wait,
                    outcome: AtomicU8::new(WAITING),
                    thread: current(),
                });
                st.parked.push(slot.clone());
                drop(st);
                loop {
                    match slot.outcome.load(Ordering::Acquire) {
                        DONE => return Ok(lsn),
                        RETRY => break,
                        _ => park(),
                    }
                }
                st = self.state.lock();
                continue;
            };
            // Lead: take the whole pending batch and do the I/O without the lock.
            let need_sync = wait == Wait::Durable;
            if need_sync && lsn > st.written_lsn {
                st = self.gather(st);
            }
            let chunks = std::mem::take(&mut st.pending.chunks);
            let batch_last = st.next_lsn - 1;
            let batch_records = batch_last - st.written_lsn;
            drop(st);
            let mut res = if chunks.is_empty() {
                Ok(())
            } else {
                sink.write(&chunks)
            };
            #[cfg(not(loom))]
            let sync_start = Instant::now();
            if res.is_ok() && need_sync {
                res = sink.sync();
            }
            st = self.state.lock();
            if need_sync {
                #[cfg(not(loom))]
                {
                    let ns = u64::try_from(sync_start.elapsed().as_nanos()).unwrap_or(u64::MAX);
                    st.sync_ns_avg = (st.sync_ns_avg.saturating_mul(7) / 8).saturating_add(ns / 8);
                    st.stats.sync_ns = st.stats.sync_ns.saturating_add(ns);
                }
                // Acked writers come back for the next round, joining those already queued.
                st.expect_next = batch_records + (st.next_lsn - 1 - batch_last);
            }
            if res.is_ok() && chunks.iter().any(|c| c.new_file.is_some()) {
                st.handle = sink.handle();
            }
            st.sink = Some(sink);
            let wrote = !chunks.is_empty();
            if let Some(mut buf) = chunks.into_iter().next().map(|c| c.bytes) {
                if st.pending.recycled.capacity() == 0 && buf.capacity() <= RECYCLE_BYTES_MAX {
                    buf.clear();
                    st.pending.recycled = buf;
                }
            }
            let outcome = match res {
                Ok(()) => {
                    st.written_lsn = batch_last;
                    st.stats.writes += u64::from(wrote);
                    if need_sync {
                        st.durable_lsn = batch_last;
                        st.stats.syncs += 1;
                    }
                    None
                }
                Err(e) => {
                    st.poison = Some(e.to_string());
                    Some(e)
                }
            };
            // The round took every pending record, this one among them: on success its mark
            // covers it.
            debug_assert!(
                outcome.is_some()
                    || match wait {
                        Wait::Written => st.written_lsn >= lsn,
                        Wait::Durable => st.durable_lsn >= lsn,
                    }
            );
            let wake = release_parked(&mut st);
            self.cond.notify_all();
            // Unpark outside the lock (a futex wake each): appenders meanwhile queue the
            // next round instead of waiting for the leader to finish waking.
            drop(st);
            for t in wake {
                t.unpark();
            }
            return match outcome {
                Some(e) => Err(e),
                None => Ok(lsn),
            };
        }
    }
}

/// After a round (the sink is back): tell every parked writer the marks now cover that it is
/// done, and one of the others to lead the next round (all of them if the log is poisoned, to
/// read the cause); returns their threads to unpark. The rest stay parked for that round's
/// leader to release.
fn release_parked<S: Sink>(st: &mut State<S>) -> Vec<Thread> {
    let (written, durable, poisoned) = (st.written_lsn, st.durable_lsn, st.poison.is_some());
    let mut next_leader = false;
    let mut wake = Vec::new();
    st.parked.retain(|slot| {
        let covered = match slot.wait {
            Wait::Written => written >= slot.lsn,
            Wait::Durable => durable >= slot.lsn,
        };
        let outcome = if covered {
            DONE
        } else if poisoned || !next_leader {
            next_leader = true;
            RETRY
        } else {
            return true;
        };
        slot.outcome.store(outcome, Ordering::Release);
        wake.push(slot.thread.clone());
        false
    });
    wake
}

impl<S: Sink> GroupCommit<S> {
    /// As leader (holding the sink), wait a little for the writers expected in this round.
    #[cfg(not(loom))]
    fn gather<'a>(
        &'a self,
        mut st: crate::sync::MutexGuard<'a, State<S>>,
    ) -> crate::sync::MutexGuard<'a, State<S>> {
        let pending = |st: &State<S>| st.next_lsn - 1 - st.written_lsn;
        if pending(&st) >= st.expect_next {
            return st;
        }
        let budget = Duration::from_nanos((st.sync_ns_avg / 4).min(GATHER_NS_MAX));
        let start = Instant::now();
        let deadline = start + budget;
        st.gathering = true;
        while pending(&st) < st.expect_next {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            st = self.gather_cond.wait_timeout(st, deadline - now);
        }
        st.gathering = false;
        let waited = u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
        st.stats.gather_ns = st.stats.gather_ns.saturating_add(waited);
        st
    }

    /// Under loom, gathering is off: it only changes batch sizes, not correctness.
    #[cfg(loom)]
    fn gather<'a>(
        &'a self,
        st: crate::sync::MutexGuard<'a, State<S>>,
    ) -> crate::sync::MutexGuard<'a, State<S>> {
        st
    }

    /// (written, durable, next) LSN marks.
    pub(crate) fn marks(&self) -> (Lsn, Lsn, Lsn) {
        let st = self.state.lock();
        (st.written_lsn, st.durable_lsn, st.next_lsn)
    }

    pub(crate) fn stats(&self) -> CommitStats {
        self.state.lock().stats
    }

    pub(crate) fn poison_cause(&self) -> Option<String> {
        self.state.lock().poison.clone()
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    //! Run with: `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=2 cargo test -p strata-wal --lib loom`
    use super::*;
    use loom::sync::atomic::{AtomicU64, Ordering};
    use loom::sync::Arc;

    /// A sink that counts records it has written and fsynced, and can fail its n-th sync
    /// (counting syncs through the sink and through its handles).
    struct ModelSink {
        handle: ModelHandle,
    }

    #[derive(Clone)]
    struct ModelHandle {
        written: Arc<AtomicU64>,
        durable: Arc<AtomicU64>,
        syncs: Arc<AtomicU64>,
        fail_sync_at: Option<u64>,
    }

    impl SyncHandle for ModelHandle {
        fn sync(&self) -> Result<()> {
            // What was written when the sync started is durable when it returns.
            let written = self.written.load(Ordering::SeqCst);
            let n = self.syncs.fetch_add(1, Ordering::SeqCst) + 1;
            if self.fail_sync_at == Some(n) {
                return Err(Error::io(
                    "fdatasync",
                    "model",
                    std::io::Error::other("model EIO"),
                ));
            }
            self.durable.fetch_max(written, Ordering::SeqCst);
            Ok(())
        }
    }

    impl Sink for ModelSink {
        type Handle = ModelHandle;
        fn write(&mut self, chunks: &[Chunk]) -> Result<()> {
            for c in chunks {
                self.handle
                    .written
                    .fetch_add(count_frames(&c.bytes), Ordering::SeqCst);
            }
            Ok(())
        }
        fn sync(&mut self) -> Result<()> {
            self.handle.sync()
        }
        fn handle(&self) -> ModelHandle {
            self.handle.clone()
        }
    }

    fn count_frames(mut b: &[u8]) -> u64 {
        let mut n = 0;
        while let Some(len) = b.get(4..8) {
            let len = u32::from_le_bytes(len.try_into().unwrap()) as usize;
            b = &b[frame_bytes(len)..];
            n += 1;
        }
        n
    }

    fn model(fail_sync_at: Option<u32>) -> (Arc<GroupCommit<ModelSink>>, Arc<AtomicU64>) {
        let durable = Arc::new(AtomicU64::new(0));
        let sink = ModelSink {
            handle: ModelHandle {
                written: Arc::new(AtomicU64::new(0)),
                durable: durable.clone(),
                syncs: Arc::new(AtomicU64::new(0)),
                fail_sync_at: fail_sync_at.map(u64::from),
            },
        };
        let pending = Pending {
            chunks: Vec::new(),
            file_seed: 1,
            file_bytes: FILE_HEADER_BYTES as u64,
            segment_bytes_max: 1 << 20,
            seed_state: 1,
            file_preallocated: true,
            file_capacity: 1 << 20,
            file_started: std::time::Instant::now(),
            spare_asked: false,
            spares: None,
            recycled: Vec::new(),
        };
        (Arc::new(GroupCommit::new(sink, pending, 1)), durable)
    }

    #[test]
    fn loom_ack_only_after_covering_fsync() {
        loom::model(|| {
            let (gc, durable) = model(None);
            // Three writers: the third can only be covered by another thread's batch.
            let handles: Vec<_> = (0..3)
                .map(|_| {
                    let gc = gc.clone();
                    let durable = durable.clone();
                    loom::thread::spawn(move || {
                        let lsn = gc.append(RecordKind::DATA, b"x", Wait::Durable).unwrap();
                        assert!(durable.load(Ordering::SeqCst) >= lsn, "acked before fsync");
                        lsn
                    })
                })
                .collect();
            let mut lsns: Vec<Lsn> = handles.into_iter().map(|h| h.join().unwrap()).collect();
            lsns.sort_unstable();
            assert_eq!(lsns, vec![1, 2, 3]);
            assert_eq!(gc.marks(), (3, 3, 4));
        });
    }

    #[test]
    fn loom_failed_fsync_fans_out_to_every_waiter() {
        loom::model(|| {
            let (gc, durable) = model(Some(1));
            let handles: Vec<_> = (0..2)
                .map(|_| {
                    let gc = gc.clone();
                    loom::thread::spawn(move || gc.append(RecordKind::DATA, b"x", Wait::Durable))
                })
                .collect();
            let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
            // The first fsync fails and nothing was durable before it: nobody is acked.
            assert!(results.iter().all(|r| r.is_err()), "{results:?}");
            assert_eq!(durable.load(Ordering::SeqCst), 0);
            assert!(matches!(
                gc.append(RecordKind::DATA, b"y", Wait::Written),
                Err(Error::Poisoned { .. })
            ));
        });
    }

    #[test]
    fn loom_written_waiters_and_syncer() {
        loom::model(|| {
            let (gc, durable) = model(None);
            let gc2 = gc.clone();
            let t = loom::thread::spawn(move || gc2.append(RecordKind::DATA, b"x", Wait::Written));
            let synced = gc.sync().unwrap();
            let lsn = t.join().unwrap().unwrap();
            assert_eq!(lsn, 1);
            assert!(durable.load(Ordering::SeqCst) >= synced);
        });
    }

    /// The batch syncer's fdatasync runs without the sink: a writer racing it is never
    /// blocked by it, and whatever it reports durable was written before it synced.
    #[test]
    fn loom_sync_written_beside_a_writer() {
        loom::model(|| {
            let (gc, durable) = model(None);
            let first = gc.append(RecordKind::DATA, b"x", Wait::Written).unwrap();
            let gc2 = gc.clone();
            let t = loom::thread::spawn(move || gc2.append(RecordKind::DATA, b"y", Wait::Written));
            let synced = gc.sync_written().unwrap();
            assert!(synced >= first, "the written record {first} was not synced");
            assert!(durable.load(Ordering::SeqCst) >= synced);
            let second = t.join().unwrap().unwrap();
            assert_eq!(second, 2);
            let (written, d, next) = gc.marks();
            assert_eq!((written, next), (2, 3));
            assert!(d <= written);
        });
    }

    /// A failed handle sync poisons the log like a failed leader sync.
    #[test]
    fn loom_failed_sync_written_poisons() {
        loom::model(|| {
            let (gc, _durable) = model(Some(1));
            gc.append(RecordKind::DATA, b"x", Wait::Written).unwrap();
            assert!(gc.sync_written().is_err());
            assert!(matches!(
                gc.append(RecordKind::DATA, b"y", Wait::Written),
                Err(Error::Poisoned { .. })
            ));
        });
    }
}
