//! The observer Lease: written by its replica, read by the leader.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

use super::{Options, View};
use crate::plan::observers::{Observer, Report, Sightings};

/// The label every observer Lease carries (value `true`).
pub const OBSERVER_LABEL: &str = "multiregion.io/observer";
/// The annotation holding the observer's view (JSON, see `View`).
pub const OBSERVATIONS_ANNOTATION: &str = "multiregion.io/observations";
/// The annotation naming the region the observer runs in.
pub const REGION_ANNOTATION: &str = "multiregion.io/observer-region";
const FIELD_MANAGER: &str = "multiregion-observer";

/// `multiregion-observer-IDENTITY`, made a valid object name.
pub fn observer_lease_name(identity: &str) -> String {
    let cleaned: String = identity
        .to_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let name = format!(
        "multiregion-observer-{}",
        cleaned.trim_matches(|c| c == '-' || c == '.')
    );
    name.chars().take(253).collect()
}

/// Writes one replica's observer Lease: when the view changed, and when a
/// renewal is due (a third of the Lease), never more.
pub(super) struct Publisher {
    api: Api<Lease>,
    name: String,
    options: Options,
    written: Option<(View, Instant)>,
    /// The last write attempt failed (or timed out).
    failing: bool,
    started: Instant,
}

impl Publisher {
    pub fn new(hub: kube::Client, options: &Options) -> Self {
        Publisher {
            api: Api::namespaced(hub, &options.namespace),
            name: observer_lease_name(&options.identity),
            options: options.clone(),
            written: None,
            failing: false,
            started: Instant::now(),
        }
    }

    /// How long the Lease has gone unrenewed, counted only while writes
    /// fail (a replica that writes when due is never "unrenewed").
    pub fn unrenewed(&self) -> Duration {
        if !self.failing {
            return Duration::ZERO;
        }
        self.written
            .as_ref()
            .map_or(self.started, |(_, at)| *at)
            .elapsed()
    }

    /// Publishes `view` if it changed or a renewal is due; true when a
    /// write went out and succeeded.
    pub async fn publish(&mut self, view: &View) -> bool {
        let renew = self.options.lease / 3;
        let due = match &self.written {
            None => true,
            Some((last, at)) => last != view || at.elapsed() >= renew,
        };
        if !due {
            return false;
        }
        let attempt = renew.max(Duration::from_millis(500));
        let result = tokio::time::timeout(attempt, self.write(view)).await;
        self.failing = !matches!(result, Ok(Ok(())));
        match result {
            Ok(Ok(())) => {
                self.written = Some((view.clone(), Instant::now()));
                true
            }
            Ok(Err(err)) => {
                tracing::warn!(error = %err, "cannot renew the observer Lease");
                false
            }
            Err(_) => {
                tracing::warn!(timeout = ?attempt, "renewing the observer Lease timed out");
                false
            }
        }
    }

    /// Gives the Lease up on shutdown: an empty view, renewed a whole
    /// Lease ago, so its last view is no vote from now on (and the region
    /// waits out its self-fence if it fails meanwhile, as for a replica
    /// that vanished).
    pub async fn release(&self) {
        let renewed = Timestamp::now()
            - jiff::SignedDuration::try_from(self.options.lease).unwrap_or_default();
        let empty = View::default();
        let released = tokio::time::timeout(Duration::from_secs(2), self.write_at(&empty, renewed));
        match released.await {
            Ok(Ok(())) => tracing::info!("released the observer Lease"),
            _ => tracing::warn!("cannot release the observer Lease; it runs out by itself"),
        }
    }

    async fn write(&self, view: &View) -> Result<(), kube::Error> {
        self.write_at(view, Timestamp::now()).await
    }

    async fn write_at(&self, view: &View, renewed: Timestamp) -> Result<(), kube::Error> {
        let mut annotations = BTreeMap::new();
        annotations.insert(
            OBSERVATIONS_ANNOTATION.to_string(),
            serde_json::to_string(view).unwrap_or_default(),
        );
        if let Some(region) = &self.options.region {
            annotations.insert(REGION_ANNOTATION.to_string(), region.clone());
        }
        let lease = json!({
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {
                "name": self.name,
                "labels": {OBSERVER_LABEL: "true", "app.kubernetes.io/managed-by": "multiregion"},
                "annotations": annotations,
            },
            "spec": {
                "holderIdentity": self.options.identity,
                "leaseDurationSeconds": self.options.lease.as_secs().max(1),
                "renewTime": MicroTime(renewed),
            }
        });
        let params = PatchParams::apply(FIELD_MANAGER).force();
        self.api
            .patch(&self.name, &params, &Patch::Apply(&lease))
            .await?;
        Ok(())
    }
}

/// One observer Lease read back: who, from where, when last renewed, and
/// its view. None for a Lease that is not an observer's.
fn read(lease: &Lease) -> Option<(Observer, View)> {
    let spec = lease.spec.as_ref()?;
    let annotations = lease.metadata.annotations.as_ref();
    let view = annotations
        .and_then(|a| a.get(OBSERVATIONS_ANNOTATION))
        .and_then(|text| serde_json::from_str(text).ok())
        .unwrap_or_default();
    let observer = Observer {
        identity: spec.holder_identity.clone()?,
        region: annotations.and_then(|a| a.get(REGION_ANNOTATION)).cloned(),
        renewed: spec.renew_time.as_ref()?.0,
        lease: Duration::from_secs(spec.lease_duration_seconds?.max(0) as u64),
    };
    Some((observer, view))
}

/// What the live observers see of each region, from their Leases.
pub fn sightings<'a>(
    leases: impl IntoIterator<Item = &'a Lease>,
    now: Timestamp,
) -> BTreeMap<String, Sightings> {
    let observers: Vec<(Observer, View)> = leases.into_iter().filter_map(read).collect();
    let regions: std::collections::BTreeSet<&String> = observers
        .iter()
        .flat_map(|(_, view)| view.0.keys())
        .collect();
    regions
        .into_iter()
        .map(|region| {
            let reports: Vec<Report> = observers
                .iter()
                .map(|(observer, view)| Report {
                    observer: observer.clone(),
                    seen: view.seen(region),
                })
                .collect();
            (region.clone(), Sightings::of_live(&reports, now))
        })
        .collect()
}

/// Every replica that published an observer Lease, live or not.
pub fn observers<'a>(leases: impl IntoIterator<Item = &'a Lease>) -> Vec<Observer> {
    leases
        .into_iter()
        .filter_map(read)
        .map(|(o, _)| o)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(identity: &str, renewed: Timestamp, view: &str) -> Lease {
        serde_json::from_value(json!({
            "metadata": {"name": observer_lease_name(identity), "annotations": {OBSERVATIONS_ANNOTATION: view}},
            "spec": {"holderIdentity": identity, "leaseDurationSeconds": 10, "renewTime": MicroTime(renewed)}
        }))
        .unwrap()
    }

    #[test]
    fn the_leases_make_sightings_of_live_observers_only() {
        let now = Timestamp::from_second(1_800_000_000).unwrap();
        let old = now - jiff::SignedDuration::from_secs(60);
        let since = serde_json::to_string(&now).unwrap();
        let leases = [
            lease("a", now, r#"{"us-east":{"seen":"Serving"}}"#),
            lease(
                "b",
                now,
                &format!(r#"{{"us-east":{{"seen":"Failing","since":{since}}}}}"#),
            ),
            lease("c", old, r#"{"us-east":{"seen":"Serving"}}"#),
            lease("d", now, "not json"),
        ];
        let seen = sightings(&leases, now);
        let us_east = &seen["us-east"];
        assert_eq!(us_east.serving, ["a"]);
        assert_eq!(us_east.failing, ["b"]);
        assert_eq!(
            us_east.unknown,
            ["d"],
            "a view that cannot be read says nothing"
        );
        assert_eq!(us_east.live(), 3, "c expired");
    }

    #[test]
    fn lease_names_are_valid_object_names() {
        assert_eq!(
            observer_lease_name("Operator_0"),
            "multiregion-observer-operator-0"
        );
        assert!(observer_lease_name(&"x".repeat(400)).len() <= 253);
    }
}
