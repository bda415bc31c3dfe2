//! The fence: whether this process may write now. Every write the
//! operator makes (status, Events, placements, sinks, Region status) asks
//! first. With leader election, a replica may write only while its last
//! renewal of the Lease is younger than the renew deadline, measured on its
//! own monotonic clock; so a paused or cut-off leader stops writing before
//! anyone else can take over.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// Whether this process may write now. Without leader election it always
/// may.
#[derive(Clone)]
pub struct Fence(Option<Arc<Holding>>);

struct Holding {
    renewed: Mutex<Instant>,
    deadline: Duration,
}

impl Fence {
    /// A fence that never refuses (leader election off).
    pub fn open() -> Self {
        Fence(None)
    }

    /// Ok while the last renewal is younger than the renew deadline.
    pub fn check(&self) -> Result<()> {
        let Some(holding) = &self.0 else {
            return Ok(());
        };
        let renewed = holding
            .renewed
            .lock()
            .map(|r| *r)
            .unwrap_or_else(|_| Instant::now() - holding.deadline * 2);
        if renewed.elapsed() < holding.deadline {
            Ok(())
        } else {
            Err(Error::NotLeader)
        }
    }

    /// Holding the Lease since a renewal at `at`.
    pub(crate) fn held(at: Instant, deadline: Duration) -> Self {
        Fence(Some(Arc::new(Holding {
            renewed: Mutex::new(at),
            deadline,
        })))
    }

    /// Time since the last renewal (None without leader election).
    pub(crate) fn since_renewal(&self) -> Option<Duration> {
        let holding = self.0.as_ref()?;
        holding.renewed.lock().ok().map(|r| r.elapsed())
    }

    pub(crate) fn renewed(&self, at: Instant) {
        if let Some(holding) = &self.0
            && let Ok(mut renewed) = holding.renewed.lock()
        {
            *renewed = at;
        }
    }
}
