//! Synchronisation shim: `parking_lot` normally, `loom`'s primitives under `--cfg loom` so the
//! group-commit handoff can be model-checked (see `group_commit::loom_tests`).
//! Only poison-free `lock`/`wait` are exposed: a panicking thread cannot wedge the log.
//! Thread parking and the atomics of a waiter's slot come from the same place, so the
//! per-waiter handoff is model-checked too.
//!
//! Why `parking_lot`: its `notify_all` requeues waiters onto the mutex instead of waking them
//! all to fight for it, which measurably cuts context switches per acknowledged append
//! (`docs/benchmarks.md`, WAL section).

#[cfg(loom)]
mod imp {
    pub(crate) use loom::sync::atomic::{AtomicU8, Ordering};
    pub(crate) use loom::sync::MutexGuard;
    pub(crate) use loom::thread::{current, park, Thread};

    #[derive(Debug)]
    pub(crate) struct Mutex<T>(loom::sync::Mutex<T>);

    impl<T> Mutex<T> {
        pub(crate) fn new(v: T) -> Self {
            Mutex(loom::sync::Mutex::new(v))
        }
        pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
            self.0.lock().unwrap_or_else(|e| e.into_inner())
        }
    }

    #[derive(Debug, Default)]
    pub(crate) struct Condvar(loom::sync::Condvar);

    impl Condvar {
        pub(crate) fn new() -> Self {
            Condvar(loom::sync::Condvar::new())
        }
        pub(crate) fn wait<'a, T>(&self, g: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
            self.0.wait(g).unwrap_or_else(|e| e.into_inner())
        }
        pub(crate) fn notify_all(&self) {
            self.0.notify_all();
        }
    }
}

#[cfg(not(loom))]
mod imp {
    pub(crate) use parking_lot::MutexGuard;
    pub(crate) use std::sync::atomic::{AtomicU8, Ordering};
    pub(crate) use std::thread::{current, park, Thread};

    #[derive(Debug)]
    pub(crate) struct Mutex<T>(parking_lot::Mutex<T>);

    impl<T> Mutex<T> {
        pub(crate) fn new(v: T) -> Self {
            Mutex(parking_lot::Mutex::new(v))
        }
        pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
            self.0.lock()
        }
    }

    #[derive(Debug, Default)]
    pub(crate) struct Condvar(parking_lot::Condvar);

    impl Condvar {
        pub(crate) fn new() -> Self {
            Condvar(parking_lot::Condvar::new())
        }
        pub(crate) fn wait<'a, T>(&self, mut g: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
            self.0.wait(&mut g);
            g
        }
        pub(crate) fn wait_timeout<'a, T>(
            &self,
            mut g: MutexGuard<'a, T>,
            dur: std::time::Duration,
        ) -> MutexGuard<'a, T> {
            let _timed_out = self.0.wait_for(&mut g, dur);
            g
        }
        pub(crate) fn notify_all(&self) {
            self.0.notify_all();
        }
    }
}

pub(crate) use imp::{current, park, AtomicU8, Condvar, Mutex, MutexGuard, Ordering, Thread};
