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

    /// How long a write started now may take: `limit`, or less when the
    /// renew deadline comes first. A stale leader gets `NotLeader`, so a
    /// write never outlives the fence it was checked against.
    pub fn time_for(&self, limit: Duration) -> Result<Duration> {
        self.check()?;
        let Some(holding) = &self.0 else {
            return Ok(limit);
        };
        let renewed = holding
            .renewed
            .lock()
            .map(|r| *r)
            .map_err(|_| Error::NotLeader)?;
        let left = holding.deadline.saturating_sub(renewed.elapsed());
        Ok(limit.min(left))
    }

    /// Runs `write` within `time_for(limit)`. Cut off by the fence, it is
    /// `NotLeader`; by `limit`, `late()`.
    pub async fn bounded<T>(
        &self,
        limit: Duration,
        write: impl std::future::Future<Output = Result<T>>,
        late: impl FnOnce() -> Error,
    ) -> Result<T> {
        let time = self.time_for(limit)?;
        match tokio::time::timeout(time, write).await {
            Ok(result) => result,
            Err(_) => {
                self.check()?;
                Err(late())
            }
        }
    }

    /// Runs a best-effort write (one that reports its own failures: a
    /// Region's status or condition, a finalizer) within `time_for(limit)`;
    /// None when this replica may not write or the time ran out.
    pub async fn within<T>(
        &self,
        limit: Duration,
        write: impl std::future::Future<Output = T>,
    ) -> Option<T> {
        let time = self.time_for(limit).ok()?;
        tokio::time::timeout(time, write).await.ok()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_write_never_outlives_the_fence() {
        let open = Fence::open();
        assert_eq!(
            open.time_for(Duration::from_secs(9)).unwrap(),
            Duration::from_secs(9)
        );
        let held = Fence::held(Instant::now(), Duration::from_millis(300));
        assert!(held.time_for(Duration::from_secs(9)).unwrap() <= Duration::from_millis(300));
        let slow = || async {
            tokio::time::sleep(Duration::from_secs(2)).await;
            Ok(())
        };
        let late = || Error::CleanupPending(vec!["late".into()]);
        let cut = held.bounded(Duration::from_secs(9), slow(), late).await;
        assert!(matches!(cut, Err(Error::NotLeader)), "cut at the deadline");
        let limited = open.bounded(Duration::from_millis(50), slow(), late).await;
        assert!(
            matches!(limited, Err(Error::CleanupPending(_))),
            "cut at the limit"
        );
        assert!(matches!(
            held.time_for(Duration::from_secs(1)),
            Err(Error::NotLeader)
        ));
    }

    #[tokio::test]
    async fn a_best_effort_write_is_abandoned_at_the_fence() {
        let held = Fence::held(Instant::now(), Duration::from_millis(200));
        let slow = tokio::time::sleep(Duration::from_secs(2));
        assert!(held.within(Duration::from_secs(9), slow).await.is_none());
        let quick = async { 7 };
        assert_eq!(
            Fence::open().within(Duration::from_secs(1), quick).await,
            Some(7)
        );
        let after = async { 7 };
        assert_eq!(
            held.within(Duration::from_secs(1), after).await,
            None,
            "past the renew deadline nothing starts"
        );
    }
}
