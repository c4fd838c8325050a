//! Deferred deletion of segment files: a file leaves the directory only when nothing can
//! read it any more.
//!
//! Protocol (model-checked by `loom_tests`, run with `--cfg loom`):
//! 1. every reader reaches a segment through an `Arc` cloned out of the current version under
//!    the version lock (a snapshot holds such a clone for as long as it lives);
//! 2. a compaction that replaces a segment marks its [`Retire`] *before* it drops its own
//!    reference to the old version (it still holds one while it installs the new version);
//! 3. [`Retire`] is a field of the segment, so it is dropped exactly when the last `Arc` goes,
//!    and only then, if marked, removes the file.
//!
//! So a file is never removed while any version or snapshot holds its segment (1, 3), and a
//! retired file is always removed once the last holder is gone (2: the mark cannot come after
//! the last drop). A crash in between leaves the file behind as an orphan, removed at the next
//! open because the manifest no longer names it.

#[cfg(loom)]
use loom::sync::atomic::{AtomicBool, Ordering};
#[cfg(not(loom))]
use std::sync::atomic::{AtomicBool, Ordering};

/// What to do with a retired file when its last holder goes (a closure, so the loom model can
/// observe it without a file system).
pub(crate) type OnRetire = Box<dyn Fn() + Send + Sync>;

/// Removes a file when dropped after [`Retire::retire`].
pub(crate) struct Retire {
    retired: AtomicBool,
    on_retire: OnRetire,
}

impl Retire {
    pub(crate) fn new(on_retire: OnRetire) -> Retire {
        Retire {
            retired: AtomicBool::new(false),
            on_retire,
        }
    }

    /// Mark the file for removal when the last holder drops it.
    pub(crate) fn retire(&self) {
        self.retired.store(true, Ordering::Release);
    }
}

impl Drop for Retire {
    fn drop(&mut self) {
        // `Arc`'s drop already orders every other holder's use before this point; Acquire pairs
        // with `retire`'s Release for a mark made on another thread.
        if self.retired.load(Ordering::Acquire) {
            (self.on_retire)();
        }
    }
}

impl std::fmt::Debug for Retire {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Retire")
            .field("retired", &self.retired.load(Ordering::Relaxed))
            .finish()
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::sync::{Arc, Mutex};

    /// A segment (just its retire guard) and a version (the segments it lists).
    struct Seg {
        retire: Retire,
    }
    struct Version {
        segs: Vec<Arc<Seg>>,
    }

    /// A reader takes a snapshot of the current version and reads the segment while a
    /// compaction installs a version without it: the file is never removed while the snapshot
    /// holds it, and it is removed once everything is dropped.
    #[test]
    fn loom_no_file_removed_while_a_snapshot_holds_it() {
        loom::model(|| {
            let removed = Arc::new(AtomicBool::new(false));
            let r = removed.clone();
            let seg = Arc::new(Seg {
                retire: Retire::new(Box::new(move || r.store(true, Ordering::SeqCst))),
            });
            let current = Arc::new(Mutex::new(Arc::new(Version { segs: vec![seg] })));

            let reader = {
                let current = current.clone();
                let removed = removed.clone();
                loom::thread::spawn(move || {
                    let snap = current.lock().unwrap().clone();
                    for _ in &snap.segs {
                        // "Reading the file": it must still be there.
                        assert!(!removed.load(Ordering::SeqCst), "file removed while held");
                    }
                    loom::thread::yield_now();
                    for _ in &snap.segs {
                        assert!(!removed.load(Ordering::SeqCst), "file removed while held");
                    }
                })
            };
            let compactor = {
                let current = current.clone();
                loom::thread::spawn(move || {
                    let old = current.lock().unwrap().clone();
                    // Install the merged version (the old segment is gone from it)...
                    *current.lock().unwrap() = Arc::new(Version { segs: Vec::new() });
                    // ...and retire the inputs while still holding `old`.
                    for s in &old.segs {
                        s.retire.retire();
                    }
                    drop(old);
                })
            };
            reader.join().unwrap();
            compactor.join().unwrap();
            // Every holder is gone: the retired file must have been removed.
            assert!(removed.load(Ordering::SeqCst), "retired file leaked");
        });
    }
}
