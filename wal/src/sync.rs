//! Synchronisation shim: std primitives normally, `loom`'s under `--cfg loom` so the
//! group-commit handoff can be model-checked (see `group_commit::loom_tests`).
//! Only poison-free `lock`/`wait` are exposed: a panicking thread cannot wedge the log.

#[cfg(loom)]
pub(crate) use loom::sync::{Condvar as RawCondvar, Mutex as RawMutex, MutexGuard};
#[cfg(not(loom))]
pub(crate) use std::sync::{Condvar as RawCondvar, Mutex as RawMutex, MutexGuard};

/// A mutex whose `lock` ignores poisoning.
#[derive(Debug)]
pub(crate) struct Mutex<T>(RawMutex<T>);

impl<T> Mutex<T> {
    pub(crate) fn new(v: T) -> Self {
        Mutex(RawMutex::new(v))
    }
    pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A condition variable paired with [`Mutex`].
#[derive(Debug, Default)]
pub(crate) struct Condvar(RawCondvar);

impl Condvar {
    pub(crate) fn new() -> Self {
        Condvar(RawCondvar::new())
    }
    pub(crate) fn wait<'a, T>(&self, g: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
        self.0.wait(g).unwrap_or_else(|e| e.into_inner())
    }
    #[cfg(not(loom))]
    pub(crate) fn wait_timeout<'a, T>(
        &self,
        g: MutexGuard<'a, T>,
        dur: std::time::Duration,
    ) -> MutexGuard<'a, T> {
        match self.0.wait_timeout(g, dur) {
            Ok((g, _)) => g,
            Err(e) => e.into_inner().0,
        }
    }
    pub(crate) fn notify_all(&self) {
        self.0.notify_all();
    }
}
