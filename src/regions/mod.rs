//! Member clusters: a client per Region (from its kubeconfig Secret, or the
//! hub itself for `local: true`), a probe task per Region, and label-scoped
//! watches of the Deployments and Services the operator placed there.
//!
//! Everything observed here feeds the app reconciles through triggers; the
//! decisions are made in `plan/`.

mod credentials;
mod probe;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use kube::api::Api;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use tokio::sync::mpsc::UnboundedSender;
use tokio::task::JoinHandle;

use crate::api::{
    LABEL_APP, LABEL_APP_NAMESPACE, LABEL_MANAGED_BY, MultiRegionApp, Region, RegionSpec,
};
use crate::metrics::Metrics;
use crate::plan::health::{Counters, RegionState};
use crate::plan::manifest::AppKey;

pub use credentials::CredentialsError;

/// Something changed that apps should look at again.
#[derive(Clone, Debug)]
pub enum Trigger {
    /// Every app placed in this region.
    Region(String),
    /// One app.
    App(ObjectRef<MultiRegionApp>),
}

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

/// What the probe task last saw.
#[derive(Clone, Debug)]
pub struct ProbeState {
    /// Result of the last probe; None before the first.
    pub last_ok: Option<bool>,
    pub last_error: String,
    pub counters: Counters,
    pub version: Option<String>,
}

/// One member cluster as the operator currently knows it.
pub struct Member {
    pub name: String,
    /// None when the credentials are unusable (see `credentials_error`).
    pub client: Option<Client>,
    pub credentials_error: Option<CredentialsError>,
    /// Identifies the credentials the client was built from.
    config_key: String,
    spec: RwLock<RegionSpec>,
    pub probe: Mutex<ProbeState>,
    pub deployments: Option<Store<Deployment>>,
    pub services: Option<Store<Service>>,
    /// Objects of an app's name that exist here but are not the operator's.
    pub conflicts: Mutex<HashMap<AppKey, String>>,
    /// The member API server's last refusal of an app's objects.
    pub refused: Mutex<HashMap<AppKey, String>>,
    /// Namespaces known to exist here.
    pub namespaces: Mutex<HashSet<String>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl Drop for Member {
    fn drop(&mut self) {
        if let Ok(tasks) = self.tasks.lock() {
            for task in tasks.iter() {
                task.abort();
            }
        }
    }
}

impl Member {
    pub fn spec(&self) -> RegionSpec {
        self.spec.read().map(|s| s.clone()).unwrap_or_default()
    }

    /// Reachability as the plan sees it: the last probe's result, so an app
    /// round never waits for the Region's own thresholds on top of its own.
    pub fn state(&self) -> RegionState {
        if let Some(err) = &self.credentials_error {
            return RegionState::NoCredentials(err.to_string());
        }
        let probe = self.probe.lock().map(|p| p.clone());
        match probe {
            Ok(ProbeState {
                last_ok: Some(true),
                ..
            }) => RegionState::Reachable,
            Ok(ProbeState {
                last_ok: Some(false),
                last_error,
                ..
            }) => RegionState::Unreachable(last_error),
            _ => RegionState::Unknown,
        }
    }

    /// True once the watches of placed objects have listed everything.
    pub fn listed(&self) -> bool {
        store_ready(&self.deployments) && store_ready(&self.services)
    }
}

fn store_ready<K>(store: &Option<Store<K>>) -> bool
where
    K: Resource + Clone + 'static,
    K::DynamicType: std::hash::Hash + Eq + Clone,
{
    use futures::FutureExt;
    store.as_ref().is_some_and(|s| {
        s.wait_until_ready()
            .now_or_never()
            .is_some_and(|r| r.is_ok())
    })
}

/// All members, shared by the Region controller, the probes and the app
/// reconciles.
pub struct Registry {
    members: RwLock<HashMap<String, Arc<Member>>>,
    /// The Region list has been read once: a missing member means the
    /// Region does not exist.
    synced: AtomicBool,
    hub: Client,
    triggers: UnboundedSender<Trigger>,
    metrics: Arc<Metrics>,
}

impl Registry {
    pub fn new(
        hub: Client,
        triggers: UnboundedSender<Trigger>,
        metrics: Arc<Metrics>,
    ) -> Arc<Self> {
        Arc::new(Registry {
            members: RwLock::default(),
            synced: AtomicBool::new(false),
            hub,
            triggers,
            metrics,
        })
    }

    pub fn get(&self, name: &str) -> Option<Arc<Member>> {
        self.members.read().ok()?.get(name).cloned()
    }

    pub fn is_synced(&self) -> bool {
        self.synced.load(Ordering::Relaxed)
    }

    pub fn mark_synced(&self) {
        self.synced.store(true, Ordering::Relaxed);
    }

    pub fn names(&self) -> Vec<String> {
        self.members
            .read()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Brings the member for `region` up to date: a new client (and new
    /// tasks) when its credentials changed, else only the spec.
    pub async fn upsert(self: &Arc<Self>, region: &Region) {
        let name = region.name_any();
        let built = credentials::build(&self.hub, &region.spec).await;
        let key = match &built {
            Ok((_, key)) => key.clone(),
            Err(err) => format!("error:{err}"),
        };
        if let Some(existing) = self.get(&name)
            && existing.config_key == key
        {
            if let Ok(mut spec) = existing.spec.write() {
                let changed = *spec != region.spec;
                *spec = region.spec.clone();
                if changed {
                    let _ = self.triggers.send(Trigger::Region(name.clone()));
                }
            }
            return;
        }
        let initial = probe::initial_state(region);
        let member = match built {
            Ok((client, key)) => {
                self.start_member(&name, region.spec.clone(), client, key, initial)
            }
            Err(err) => {
                tracing::warn!(region = %name, error = %err, "region credentials unusable");
                probe::report_credentials_error(&self.hub, &name, &err).await;
                Arc::new(Member {
                    name: name.clone(),
                    client: None,
                    credentials_error: Some(err),
                    config_key: key,
                    spec: RwLock::new(region.spec.clone()),
                    probe: Mutex::new(initial),
                    deployments: None,
                    services: None,
                    conflicts: Mutex::default(),
                    refused: Mutex::default(),
                    namespaces: Mutex::default(),
                    tasks: Mutex::default(),
                })
            }
        };
        if let Ok(mut members) = self.members.write() {
            members.insert(name.clone(), member);
        }
        let _ = self.triggers.send(Trigger::Region(name));
    }

    /// Forgets members whose Region is gone.
    pub fn retain(&self, existing: &HashSet<String>) {
        let removed: Vec<String> = match self.members.write() {
            Ok(mut members) => {
                let gone: Vec<String> = members
                    .keys()
                    .filter(|k| !existing.contains(*k))
                    .cloned()
                    .collect();
                for name in &gone {
                    members.remove(name);
                }
                gone
            }
            Err(_) => Vec::new(),
        };
        for name in removed {
            tracing::info!(region = %name, "region removed");
            let _ = self.triggers.send(Trigger::Region(name));
        }
    }

    fn start_member(
        self: &Arc<Self>,
        name: &str,
        spec: RegionSpec,
        client: Client,
        key: String,
        initial: ProbeState,
    ) -> Arc<Member> {
        let selector = format!("{LABEL_MANAGED_BY}=multiregion");
        let (deployments, deployment_task) =
            self.watch_placed::<Deployment>(name, &client, &selector);
        let (services, service_task) = self.watch_placed::<Service>(name, &client, &selector);
        tracing::info!(region = %name, "region client ready");
        let member = Arc::new(Member {
            name: name.to_string(),
            client: Some(client.clone()),
            credentials_error: None,
            config_key: key,
            spec: RwLock::new(spec),
            probe: Mutex::new(initial),
            deployments: Some(deployments),
            services: Some(services),
            conflicts: Mutex::default(),
            refused: Mutex::default(),
            namespaces: Mutex::default(),
            tasks: Mutex::new(vec![deployment_task, service_task]),
        });
        // The probe holds the member weakly: it ends when the member is
        // replaced or removed (whose Drop also aborts it).
        let probe_task = tokio::spawn(probe::run(
            Arc::downgrade(self),
            Arc::downgrade(&member),
            client,
            self.hub.clone(),
            self.metrics.clone(),
        ));
        if let Ok(mut tasks) = member.tasks.lock() {
            tasks.push(probe_task);
        }
        member
    }

    /// A label-scoped watch of one kind of placed object in a member; every
    /// change triggers the app named in the object's labels.
    fn watch_placed<K>(
        &self,
        region: &str,
        client: &Client,
        selector: &str,
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
        let triggers = self.triggers.clone();
        let region = region.to_string();
        let task = tokio::spawn(async move {
            // The cache keeps what placement and health read; managed
            // fields are most of an object's size and neither reads them.
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
                        let labels = object.labels();
                        if let (Some(app), Some(ns)) =
                            (labels.get(LABEL_APP), labels.get(LABEL_APP_NAMESPACE))
                        {
                            let _ = triggers.send(Trigger::App(ObjectRef::new(app).within(ns)));
                        }
                    }
                    Err(err) => {
                        tracing::debug!(region = %region, error = %err, "watch of placed objects interrupted")
                    }
                }
            }
        });
        (store, task)
    }

    pub(crate) fn trigger(&self, trigger: Trigger) {
        let _ = self.triggers.send(trigger);
    }
}
