//! Label-scoped watches of what the operator placed in a member, and the
//! one place a watched Deployment becomes a `WorkloadState`.

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::Api;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use tokio::sync::mpsc::UnboundedSender;
use tokio::task::JoinHandle;

use super::Trigger;
use crate::api::{LABEL_APP, LABEL_APP_NAMESPACE, LABEL_ROLE, Role};
use crate::plan::health::WorkloadState;
use crate::plan::manifest::{self, AppKey};

/// Retry delays for the watches of placed objects: 200 ms doubling to at
/// most 2 s. kube's default grows to 30 s, which after a region's API server
/// comes back left new objects unseen for long after the region answered.
#[derive(Default)]
struct QuickRetry {
    attempt: u32,
}

impl Iterator for QuickRetry {
    type Item = std::time::Duration;

    fn next(&mut self) -> Option<Self::Item> {
        let millis = 200u64.saturating_mul(1 << self.attempt.min(4)).min(2000);
        self.attempt = self.attempt.saturating_add(1);
        Some(std::time::Duration::from_millis(millis))
    }
}

impl kube::runtime::utils::Backoff for QuickRetry {
    fn reset(&mut self) {
        self.attempt = 0;
    }
}

/// True once a store has listed everything.
pub(crate) fn store_ready<K>(store: &Store<K>) -> bool
where
    K: Resource + Clone + 'static,
    K::DynamicType: std::hash::Hash + Eq + Clone,
{
    use futures::FutureExt;
    store
        .wait_until_ready()
        .now_or_never()
        .is_some_and(|r| r.is_ok())
}

/// A label-scoped watch of one kind of object in a cluster; every change
/// triggers the app named in the object's labels.
pub(crate) fn watch_placed<K>(
    place: &str,
    client: &Client,
    selector: &str,
    triggers: UnboundedSender<Trigger>,
) -> (Store<K>, JoinHandle<()>)
where
    K: Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let (store, writer) = reflector::store::<K>();
    let api: Api<K> = Api::all(client.clone());
    let config = watcher::Config::default().labels(selector);
    let place = place.to_string();
    let task = tokio::spawn(async move {
        // The cache keeps what placement and health read; managed fields
        // are most of an object's size and neither reads them.
        let objects = watcher(api, config).modify(|object| {
            object.managed_fields_mut().clear();
        });
        let stream = reflector::reflector(writer, objects)
            .backoff(QuickRetry::default())
            .touched_objects();
        futures::pin_mut!(stream);
        while let Some(event) = stream.next().await {
            match event {
                Ok(object) => {
                    if let Some(app) = app_of(object.labels()) {
                        let _ = triggers.send(Trigger::App(app));
                    }
                }
                Err(err) => {
                    tracing::debug!(place = %place, error = %err, "watch of placed objects interrupted")
                }
            }
        }
    });
    (store, task)
}

/// The app an object was placed (or published) for, from its labels.
pub fn app_of(
    labels: &std::collections::BTreeMap<String, String>,
) -> Option<ObjectRef<crate::api::MultiRegionApp>> {
    let app = labels.get(LABEL_APP)?;
    let namespace = labels.get(LABEL_APP_NAMESPACE)?;
    Some(ObjectRef::new(app).within(namespace))
}

/// What a watched Deployment says about the app's workload in its region.
pub(crate) fn workload_state(
    deployment: &Deployment,
    app: &AppKey,
    region: &str,
    lag_annotation: Option<&str>,
) -> WorkloadState {
    if !manifest::owned_by(Some(deployment.labels()), app, region) {
        return WorkloadState::Missing;
    }
    let role = deployment
        .labels()
        .get(LABEL_ROLE)
        .map(|r| match r.as_str() {
            "active" => Role::Active,
            _ => Role::Standby,
        });
    let lag_seconds = lag_annotation
        .and_then(|a| deployment.annotations().get(a))
        .and_then(|v| v.trim().parse::<f64>().ok());
    WorkloadState::Placed {
        replicas: deployment
            .spec
            .as_ref()
            .and_then(|s| s.replicas)
            .unwrap_or(1),
        ready: deployment
            .status
            .as_ref()
            .and_then(|s| s.ready_replicas)
            .unwrap_or(0),
        lag_seconds,
        rolling_out: manifest::rolling_out(deployment),
        role,
    }
}
