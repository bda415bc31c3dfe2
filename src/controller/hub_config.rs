//! The hub's ConfigMaps (and, when enabled, Secrets) that apps propagate
//! (`spec.propagate`): watched only in the namespaces where some app
//! propagates (a watch starts when such an app is first reconciled and
//! stops when no app of the namespace asked for a while), so memory grows
//! with what apps use, not with the hub; a change reaches the regions at
//! once. Resolved per app in `plan::propagate`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::Api;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use tokio::sync::mpsc::UnboundedSender;
use tokio::task::JoinHandle;

use crate::api::{CaBundleRef, MultiRegionApp};
use crate::plan::propagate::{self, Propagation};
use crate::regions::{CachedWatch, Heard, Trigger, cached_watch, store_ready};

/// A namespace's watches stop when no app there asked for this long (its
/// apps stopped propagating, or were deleted).
const IDLE: Duration = Duration::from_secs(600);

/// The watched ConfigMaps and Secrets of one hub namespace.
struct Watched {
    config_maps: Store<ConfigMap>,
    /// None unless the operator runs with `--propagate-secrets`.
    secrets: Option<Store<Secret>>,
    tasks: Vec<JoinHandle<()>>,
    asked: Instant,
}

impl Drop for Watched {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// The hub's propagated objects, by namespace.
pub struct HubConfig {
    /// None: reads nothing (tests of apps that propagate nothing).
    hub: Option<Client>,
    secrets: bool,
    triggers: Option<UnboundedSender<Trigger>>,
    namespaces: Mutex<HashMap<String, Watched>>,
}

impl HubConfig {
    /// Ready to watch; every change triggers the apps of the object's
    /// namespace that propagate something.
    pub fn start(hub: &Client, secrets: bool, triggers: UnboundedSender<Trigger>) -> Self {
        HubConfig {
            hub: Some(hub.clone()),
            secrets,
            triggers: Some(triggers),
            namespaces: Mutex::default(),
        }
    }

    /// Reads nothing: for tests of apps that propagate nothing.
    #[cfg(test)]
    pub fn none() -> Self {
        HubConfig {
            hub: None,
            secrets: false,
            triggers: None,
            namespaces: Mutex::default(),
        }
    }

    /// What the app propagates, as the hub holds it now.
    pub fn resolve(&self, app: &MultiRegionApp) -> Propagation {
        let Some(spec) = app.spec.propagate.as_ref() else {
            return Propagation::default();
        };
        let namespace = app.namespace().unwrap_or_default();
        let (maps, secrets) = self
            .with(&namespace, |w| {
                (contents(Some(&w.config_maps)), contents(w.secrets.as_ref()))
            })
            .unwrap_or_default();
        propagate::resolve(Some(spec), maps, secrets)
    }

    /// Whether every kind the app propagates has been listed from the hub
    /// (at start, after a new leader takes over, and when its namespace is
    /// first watched): until then the app is not reconciled, since an empty
    /// cache would drop the pods' checksum and roll them, and count every
    /// copy as unwanted.
    pub fn listed(&self, app: &MultiRegionApp) -> bool {
        let Some(spec) = app.spec.propagate.as_ref() else {
            return true;
        };
        let namespace = app.namespace().unwrap_or_default();
        let ready = |wanted: bool, store: Option<bool>| !wanted || store.unwrap_or(true);
        self.with(&namespace, |w| {
            ready(
                !spec.config_maps.is_empty(),
                Some(store_ready(&w.config_maps)),
            ) && ready(
                !spec.secrets.is_empty(),
                w.secrets.as_ref().map(store_ready),
            )
        })
        .unwrap_or(true)
    }

    /// The PEM text of a check's CA bundle: Ok(None) while its namespace is
    /// not listed yet, Err naming what is missing.
    pub fn ca_bundle(
        &self,
        namespace: &str,
        bundle: &CaBundleRef,
    ) -> Result<Option<String>, String> {
        let found = self.with(namespace, |w| {
            if !store_ready(&w.config_maps) {
                return Ok(None);
            }
            let reference = ObjectRef::new(&bundle.config_map).within(namespace);
            let map = w.config_maps.get(&reference).ok_or_else(|| {
                format!(
                    "healthCheck.http.caBundle: ConfigMap {namespace}/{} not found",
                    bundle.config_map
                )
            })?;
            let pem = map
                .data
                .as_ref()
                .and_then(|d| d.get(&bundle.key))
                .ok_or_else(|| {
                    format!(
                        "healthCheck.http.caBundle: ConfigMap {namespace}/{} has no key {}",
                        bundle.config_map, bundle.key
                    )
                })?;
            Ok(Some(pem.clone()))
        });
        found.unwrap_or(Ok(None))
    }

    /// Runs `read` on the namespace's watches, started if needed; watches
    /// nobody asked for in `IDLE` stop. None when nothing is watched.
    fn with<T>(&self, namespace: &str, read: impl FnOnce(&Watched) -> T) -> Option<T> {
        let (hub, triggers) = (self.hub.as_ref()?, self.triggers.as_ref()?);
        let mut all = self.namespaces.lock().ok()?;
        all.retain(|name, w| name == namespace || w.asked.elapsed() < IDLE);
        let watched = all
            .entry(namespace.to_string())
            .or_insert_with(|| self.watch(hub, namespace, triggers));
        watched.asked = Instant::now();
        Some(read(watched))
    }

    fn watch(&self, hub: &Client, namespace: &str, triggers: &UnboundedSender<Trigger>) -> Watched {
        let (config_maps, maps_task) = watch::<ConfigMap>(hub, namespace, triggers.clone());
        let mut tasks = vec![maps_task];
        let secrets = self.secrets.then(|| {
            let (store, task) = watch::<Secret>(hub, namespace, triggers.clone());
            tasks.push(task);
            store
        });
        Watched {
            config_maps,
            secrets,
            tasks,
            asked: Instant::now(),
        }
    }
}

fn contents<K>(store: Option<&Store<K>>) -> Option<Vec<K>>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    Some(store?.state().iter().map(|o| (**o).clone()).collect())
}

fn watch<K>(
    hub: &Client,
    namespace: &str,
    triggers: UnboundedSender<Trigger>,
) -> (Store<K>, JoinHandle<()>)
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let (store, writer) = reflector::store::<K>();
    let api: Api<K> = Api::namespaced(hub.clone(), namespace);
    let namespace = namespace.to_string();
    let on_change = move |_: &K| {
        let _ = triggers.send(Trigger::Propagated(namespace.clone()));
    };
    let task = tokio::spawn(async move {
        let watch = CachedWatch {
            place: "hub",
            heard: Heard::new(),
            by_app: None,
        };
        cached_watch(api, watcher::Config::default(), writer, watch, on_change).await;
    });
    (store, task)
}

/// The app propagates something from this namespace.
pub fn propagates_from(app: &MultiRegionApp, namespace: &str) -> bool {
    app.spec.propagate.is_some() && app.namespace().as_deref() == Some(namespace)
}
