//! The observer Lease: written by its replica, read by the leader.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

use super::checks::Ask;
use super::{Options, View};
use crate::plan::observers::{Observer, Report, Sightings};

/// The label every observer Lease carries (value `true`).
pub const OBSERVER_LABEL: &str = "multiregion.io/observer";
/// The annotation holding the observer's view (JSON, see `View`).
pub const OBSERVATIONS_ANNOTATION: &str = "multiregion.io/observations";
/// The annotation naming the region the observer runs in.
pub const REGION_ANNOTATION: &str = "multiregion.io/observer-region";
/// The annotation listing the HTTP checks this replica asks the others
/// about (JSON, a list of `Ask`); absent when it asks nothing.
pub const ASKED_ANNOTATION: &str = "multiregion.io/checks-asked";
/// The annotation holding what this replica's own checks of the asks saw
/// (JSON, ask id to `Serving`/`Failing`/`Unknown`); absent when nothing
/// is asked.
pub const CHECKS_ANNOTATION: &str = "multiregion.io/check-observations";

/// Everything one replica publishes on its observer Lease.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Published {
    /// Its view of every region's API server.
    pub view: View,
    /// The checks it asks the others about.
    pub asked: Vec<Ask>,
    /// What its own checks of every live observer's asks saw, by ask id.
    pub checks: View,
}
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
    written: Option<(Published, Instant)>,
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
    pub async fn publish(&mut self, view: &Published) -> bool {
        let renew = self.options.lease / 3;
        let due = match &self.written {
            None => true,
            Some((last, at)) => last != view || at.elapsed() >= renew,
        };
        if !due {
            return false;
        }
        let attempt = renew.max(Duration::from_millis(500));
        let mut result = tokio::time::timeout(attempt, self.write(view)).await;
        if let Ok(Err(kube::Error::Api(status))) = &result
            && [413, 422].contains(&status.code)
        {
            // Refused for what it holds (too large), not for where it is:
            // renewed with the regions' view alone, so the replica is
            // never taken for one cut off from the hub.
            tracing::warn!(error = %status.message, "the observer Lease was refused with its checks; renewing it with the regions' view alone");
            let alone = Published {
                view: view.view.clone(),
                ..Published::default()
            };
            result = tokio::time::timeout(attempt, self.write(&alone)).await;
        }
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
        let empty = Published::default();
        let released = tokio::time::timeout(Duration::from_secs(2), self.write_at(&empty, renewed));
        match released.await {
            Ok(Ok(())) => tracing::info!("released the observer Lease"),
            _ => tracing::warn!("cannot release the observer Lease; it runs out by itself"),
        }
    }

    async fn write(&self, view: &Published) -> Result<(), kube::Error> {
        self.write_at(view, Timestamp::now()).await
    }

    async fn write_at(&self, published: &Published, renewed: Timestamp) -> Result<(), kube::Error> {
        let mut annotations = BTreeMap::new();
        annotations.insert(
            OBSERVATIONS_ANNOTATION.to_string(),
            serde_json::to_string(&published.view).unwrap_or_default(),
        );
        if !published.asked.is_empty() {
            annotations.insert(
                ASKED_ANNOTATION.to_string(),
                serde_json::to_string(&published.asked).unwrap_or_default(),
            );
        }
        if !published.checks.0.is_empty() {
            annotations.insert(
                CHECKS_ANNOTATION.to_string(),
                serde_json::to_string(&published.checks).unwrap_or_default(),
            );
        }
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

/// An annotation of the Lease, read as JSON; its default when absent or
/// unreadable (it says nothing).
fn annotation<T: serde::de::DeserializeOwned + Default>(lease: &Lease, name: &str) -> T {
    lease
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(name))
        .and_then(|text| serde_json::from_str(text).ok())
        .unwrap_or_default()
}

/// The HTTP checks the live observers ask about, each once.
pub fn live_asks<'a>(
    leases: impl IntoIterator<Item = &'a Lease>,
    now: Timestamp,
) -> BTreeMap<String, Ask> {
    let asked: Vec<Vec<Ask>> = leases
        .into_iter()
        .filter(|lease| read(lease).is_some_and(|(o, _)| o.live(now)))
        .map(|lease| annotation(lease, ASKED_ANNOTATION))
        .collect();
    super::checks::union(&asked)
}

/// What the live observers' own checks of the ask `id` saw; an observer
/// that has not checked it yet is `Unknown`.
pub fn check_sightings<'a>(
    leases: impl IntoIterator<Item = &'a Lease>,
    id: &str,
    now: Timestamp,
) -> Sightings {
    let reports: Vec<Report> = leases
        .into_iter()
        .filter_map(|lease| {
            let (observer, _) = read(lease)?;
            let checks: View = annotation(lease, CHECKS_ANNOTATION);
            Some(Report {
                observer,
                seen: checks.seen(id),
            })
        })
        .collect();
    Sightings::of_live(&reports, now)
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

    fn with_annotation(mut lease: Lease, name: &str, value: &str) -> Lease {
        lease
            .metadata
            .annotations
            .get_or_insert_default()
            .insert(name.into(), value.into());
        lease
    }

    #[test]
    fn asks_are_read_from_live_observers_and_answered_per_id() {
        let now = Timestamp::from_second(1_800_000_000).unwrap();
        let old = now - jiff::SignedDuration::from_secs(60);
        let asked = r#"[{"url":"http://10.0.0.1/healthz","timeoutMs":1000}]"#;
        let stale_ask = r#"[{"url":"http://10.0.0.9/","timeoutMs":1000}]"#;
        let leader = with_annotation(lease("leader", now, "{}"), ASKED_ANNOTATION, asked);
        let gone = with_annotation(lease("gone", old, "{}"), ASKED_ANNOTATION, stale_ask);
        let asks = live_asks([&leader, &gone], now);
        assert_eq!(asks.len(), 1, "an expired observer asks nothing");
        let (id, ask) = asks.into_iter().next().unwrap();
        assert_eq!(ask.url, "http://10.0.0.1/healthz");

        let since = serde_json::to_string(&now).unwrap();
        let failing = format!(r#"{{"{id}":{{"seen":"Failing","since":{since}}}}}"#);
        let serving = format!(r#"{{"{id}":{{"seen":"Serving"}}}}"#);
        let leases = [
            with_annotation(leader, CHECKS_ANNOTATION, &failing),
            with_annotation(lease("b", now, "{}"), CHECKS_ANNOTATION, &serving),
            lease("c", now, "{}"),
        ];
        let seen = check_sightings(&leases, &id, now);
        assert_eq!(seen.failing, ["leader"]);
        assert_eq!(seen.serving, ["b"]);
        assert_eq!(seen.unknown, ["c"], "not checked yet: no word either way");
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
