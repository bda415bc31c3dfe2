//! Leader election on the Lease `multiregion-operator`, with a fence: only
//! the holder writes, and a holder that cannot renew before its renew
//! deadline stops writing by its own clock.
//!
//! - A replica takes the Lease when nobody holds it, when its holder
//!   released it, or when the record has not changed for a whole lease
//!   duration *as this replica observed it* (its own monotonic clock, so
//!   clock skew between replicas does not matter).
//! - The holder renews every `retry`; every write the operator makes first
//!   asks `Fence::check`, which refuses once `renew_deadline` (shorter than
//!   the lease) has passed since the last successful renewal. A paused
//!   (SIGSTOP) or cut-off leader therefore stops writing before anyone else
//!   may take over, and exits when it notices.
//! - On SIGTERM the holder releases the Lease, so a standby takes over
//!   within about a second instead of a whole lease.

use std::time::{Duration, Instant};

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::Client;
use kube::api::{Api, ObjectMeta, PostParams};

use crate::error::Result;
pub use crate::fence::Fence;

/// Name of the Lease in the operator's namespace.
pub const LEASE_NAME: &str = "multiregion-operator";

/// The timing of an election: renew deadline and retry period follow from
/// the lease duration, as client-go's defaults do (15 s / 10 s / 2 s).
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    pub lease: Duration,
    pub renew_deadline: Duration,
    pub retry: Duration,
}

impl Timing {
    pub fn for_lease(lease: Duration) -> Self {
        Timing {
            lease,
            renew_deadline: lease * 2 / 3,
            retry: (lease / 7).clamp(Duration::from_millis(200), Duration::from_secs(2)),
        }
    }

    /// The longest one renewal may take before it is given up and tried
    /// again: a third of the renew deadline, so a request lost on a dead
    /// connection (a hub API server gone behind a load balancer, a dropped
    /// NAT entry) costs one attempt, not the Lease: the next attempt goes
    /// out on another connection.
    pub fn renew_attempt(&self) -> Duration {
        (self.renew_deadline / 3).max(self.retry)
    }
}

/// One replica's part in the election.
pub struct Elector {
    api: Api<Lease>,
    identity: String,
    timing: Timing,
}

/// What this replica last saw of the Lease, and when (its own clock).
struct Observed {
    record: Option<LeaseSpec>,
    at: Instant,
}

impl Elector {
    pub fn new(hub: Client, namespace: &str, identity: &str, timing: Timing) -> Self {
        Elector {
            api: Api::namespaced(hub, namespace),
            identity: identity.to_string(),
            timing,
        }
    }

    /// Waits until this replica holds the Lease.
    pub async fn acquire(&self) -> Fence {
        let mut observed = Observed {
            record: None,
            at: Instant::now(),
        };
        loop {
            let attempt = Instant::now();
            match self.try_acquire(&mut observed).await {
                Ok(true) => return Fence::held(attempt, self.timing.renew_deadline),
                Ok(false) => {}
                Err(err) => tracing::debug!(error = %err, "Lease not taken"),
            }
            tokio::time::sleep(self.timing.retry).await;
        }
    }

    /// Renews until the renew deadline passes without a renewal (or the
    /// Lease is found taken); returns then. Every successful renewal moves
    /// the fence's deadline.
    pub async fn keep(&self, fence: &Fence) {
        loop {
            tokio::time::sleep(self.timing.retry).await;
            if fence.check().is_err() {
                return;
            }
            let attempt = Instant::now();
            let budget = self
                .timing
                .renew_deadline
                .saturating_sub(self.since_renewal(fence))
                .min(self.timing.renew_attempt());
            match tokio::time::timeout(budget, self.renew()).await {
                Ok(Ok(true)) => fence.renewed(attempt),
                Ok(Ok(false)) => return,
                Ok(Err(err)) => tracing::warn!(error = %err, "cannot renew the Lease"),
                Err(_) => tracing::warn!("renewing the Lease timed out"),
            }
        }
    }

    fn since_renewal(&self, fence: &Fence) -> Duration {
        fence.since_renewal().unwrap_or(self.timing.renew_deadline)
    }

    /// Gives the Lease up so that a standby takes over at once.
    pub async fn release(&self) {
        let Ok(mut lease) = self.api.get(LEASE_NAME).await else {
            return;
        };
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        if spec.holder_identity.as_deref() != Some(&self.identity) {
            return;
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(MicroTime(Timestamp::now()));
        match self
            .api
            .replace(LEASE_NAME, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => tracing::info!(identity = %self.identity, "released the Lease"),
            Err(err) => tracing::warn!(error = %err, "cannot release the Lease"),
        }
    }

    /// One attempt: true when this replica now holds the Lease.
    async fn try_acquire(&self, observed: &mut Observed) -> Result<bool, kube::Error> {
        let Some(lease) = self.api.get_opt(LEASE_NAME).await? else {
            let lease = self.held(ObjectMeta::default(), None);
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                Err(err) => Err(err),
            };
        };
        let record = lease.spec.clone().unwrap_or_default();
        if observed.record.as_ref() != Some(&record) {
            *observed = Observed {
                record: Some(record.clone()),
                at: Instant::now(),
            };
        }
        if !self.free(&record, observed.at) {
            return Ok(false);
        }
        let taken = self.held(lease.metadata, Some(&record));
        match self
            .api
            .replace(LEASE_NAME, &PostParams::default(), &taken)
            .await
        {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(err) => Err(err),
        }
    }

    /// Nobody holds it, its holder is this replica or released it, or its
    /// record has not changed for a whole lease as seen from here.
    fn free(&self, record: &LeaseSpec, observed_at: Instant) -> bool {
        let holder = record.holder_identity.as_deref().unwrap_or_default();
        let duration =
            Duration::from_secs(record.lease_duration_seconds.unwrap_or(0).max(0) as u64);
        holder.is_empty() || holder == self.identity || observed_at.elapsed() > duration
    }

    /// Renews the Lease; false when someone else holds it now.
    async fn renew(&self) -> Result<bool, kube::Error> {
        let lease = self.api.get(LEASE_NAME).await?;
        let record = lease.spec.clone().unwrap_or_default();
        if record.holder_identity.as_deref() != Some(&self.identity) {
            return Ok(false);
        }
        let renewed = self.held(lease.metadata, Some(&record));
        match self
            .api
            .replace(LEASE_NAME, &PostParams::default(), &renewed)
            .await
        {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(err) => Err(err),
        }
    }

    /// The Lease held by this replica, renewed now; `metadata` carries the
    /// resourceVersion the change was decided from.
    fn held(&self, metadata: ObjectMeta, previous: Option<&LeaseSpec>) -> Lease {
        let now = MicroTime(Timestamp::now());
        let ours = previous.and_then(|p| p.holder_identity.as_deref()) == Some(&self.identity);
        let transitions = previous.and_then(|p| p.lease_transitions).unwrap_or(0);
        Lease {
            metadata: ObjectMeta {
                name: Some(LEASE_NAME.to_string()),
                ..metadata
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(self.identity.clone()),
                lease_duration_seconds: Some(self.timing.lease.as_secs().max(1) as i32),
                acquire_time: match ours {
                    true => previous.and_then(|p| p.acquire_time.clone()),
                    false => Some(now.clone()),
                },
                renew_time: Some(now),
                lease_transitions: Some(if ours { transitions } else { transitions + 1 }),
                ..LeaseSpec::default()
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use http::{Request, Response};
    use kube::client::Body;
    use serde_json::json;

    use super::*;

    fn lease(identity: &str) -> serde_json::Value {
        json!({
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": LEASE_NAME, "namespace": "ops", "resourceVersion": "7"},
            "spec": {"holderIdentity": identity, "leaseDurationSeconds": 3}
        })
    }

    #[tokio::test]
    async fn a_renewal_lost_on_a_dead_connection_costs_one_attempt_not_the_lease() {
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let client = kube::Client::new(service, "ops");
        let timing = Timing::for_lease(Duration::from_secs(3));
        let elector = Elector::new(client, "ops", "me", timing);
        let fence = Fence::held(Instant::now(), timing.renew_deadline);
        let keeping = tokio::spawn(async move {
            tokio::select! {
                _ = elector.keep(&fence) => false,
                _ = tokio::time::sleep(Duration::from_secs(4)) => fence.check().is_ok(),
            }
        });
        // The first request is never answered (its connection died).
        let (_lost, _unanswered) = handle.next_request().await.expect("a renewal");
        // Every later one is: the Lease is still this replica's.
        let server = tokio::spawn(async move {
            while let Some((request, send)) = handle.next_request().await {
                let _ = request;
                let body = serde_json::to_vec(&lease("me")).unwrap();
                send.send_response(Response::builder().body(Body::from(body)).unwrap());
            }
        });
        assert!(
            keeping.await.unwrap(),
            "the Lease was kept: a later attempt renewed it before the renew deadline"
        );
        server.abort();
    }
}
