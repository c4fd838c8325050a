//! A query's deadline (`SearchParams::deadline`): long steps check it and stop with
//! [`Error::Timeout`] once it has passed, so one query cannot hold a core for minutes.

use std::time::Instant;

use crate::{Error, Result};

/// When a query must stop, and when it started (for the error's elapsed time).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Deadline {
    at: Option<Instant>,
    started: Instant,
}

impl Deadline {
    /// No deadline.
    pub(crate) fn none() -> Deadline {
        Deadline::at(None)
    }

    /// Stop at `at` (if any).
    pub(crate) fn at(at: Option<Instant>) -> Deadline {
        Deadline {
            at,
            started: Instant::now(),
        }
    }

    /// `Err(Timeout)` once the deadline has passed; `during` names the step.
    pub(crate) fn check(&self, during: &'static str) -> Result<()> {
        match self.at {
            Some(at) if Instant::now() >= at => Err(Error::Timeout {
                elapsed: self.started.elapsed(),
                during,
            }),
            _ => Ok(()),
        }
    }

    /// [`Deadline::check`] every 1,024th call of a loop (`i` is the loop counter).
    #[inline]
    pub(crate) fn check_every(&self, i: usize, during: &'static str) -> Result<()> {
        if i.is_multiple_of(1024) && self.at.is_some() {
            self.check(during)
        } else {
            Ok(())
        }
    }
}
