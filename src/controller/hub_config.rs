//! The hub's ConfigMaps (and, when enabled, Secrets) that apps propagate
//! (`spec.propagate`): watched in every namespace, so that a change reaches
//! the regions at once, and resolved per app in `plan::propagate`.

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use tokio::sync::mpsc::UnboundedSender;
use tokio::task::JoinHandle;

use crate::api::MultiRegionApp;
use crate::plan::propagate::{self, Propagation};
use crate::regions::{CachedWatch, Heard, Trigger, cached_watch, store_ready};

/// Watched copies of the hub's ConfigMaps and Secrets.
pub struct HubConfig {
    config_maps: Option<Store<ConfigMap>>,
    /// None unless the operator runs with `--propagate-secrets`.
    secrets: Option<Store<Secret>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for HubConfig {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl HubConfig {
    /// Starts the watches; every change triggers the apps of the object's
    /// namespace that propagate something.
    pub fn start(hub: &Client, secrets: bool, triggers: UnboundedSender<Trigger>) -> Self {
        let (config_maps, maps_task) = watch::<ConfigMap>(hub, triggers.clone());
        let mut tasks = vec![maps_task];
        let secrets = secrets.then(|| {
            let (store, task) = watch::<Secret>(hub, triggers);
            tasks.push(task);
            store
        });
        HubConfig {
            config_maps: Some(config_maps),
            secrets,
            tasks,
        }
    }

    /// Reads nothing: for tests of apps that propagate nothing.
    #[cfg(test)]
    pub fn none() -> Self {
        HubConfig {
            config_maps: None,
            secrets: None,
            tasks: Vec::new(),
        }
    }

    /// What the app propagates, as the hub holds it now.
    pub fn resolve(&self, app: &MultiRegionApp) -> Propagation {
        let Some(spec) = app.spec.propagate.as_ref() else {
            return Propagation::default();
        };
        let namespace = app.namespace().unwrap_or_default();
        propagate::resolve(
            Some(spec),
            in_namespace(self.config_maps.as_ref(), &namespace),
            in_namespace(self.secrets.as_ref(), &namespace),
        )
    }

    /// Whether every kind the app propagates has been listed from the hub
    /// (at start and after a new leader takes over): until then the app
    /// is not reconciled, since an empty cache would drop the pods'
    /// checksum and roll them, and count every copy as unwanted.
    pub fn listed(&self, app: &MultiRegionApp) -> bool {
        let Some(spec) = app.spec.propagate.as_ref() else {
            return true;
        };
        let ready = |wanted: bool, store: Option<bool>| !wanted || store.unwrap_or(true);
        ready(
            !spec.config_maps.is_empty(),
            self.config_maps.as_ref().map(store_ready),
        ) && ready(
            !spec.secrets.is_empty(),
            self.secrets.as_ref().map(store_ready),
        )
    }
}

fn in_namespace<K>(store: Option<&Store<K>>, namespace: &str) -> Option<Vec<K>>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    let store = store?;
    Some(
        store
            .state()
            .iter()
            .filter(|o| o.namespace().as_deref() == Some(namespace))
            .map(|o| (**o).clone())
            .collect(),
    )
}

fn watch<K>(hub: &Client, triggers: UnboundedSender<Trigger>) -> (Store<K>, JoinHandle<()>)
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
    let api: Api<K> = Api::all(hub.clone());
    let on_change = move |object: &K| {
        let namespace = object.namespace().unwrap_or_default();
        let _ = triggers.send(Trigger::Propagated(namespace));
    };
    let task = tokio::spawn(async move {
        let watch = CachedWatch {
            place: "hub",
            heard: Heard::new(),
        };
        cached_watch(api, watcher::Config::default(), writer, watch, on_change).await;
    });
    (store, task)
}

/// The app propagates something from this namespace.
pub fn propagates_from(app: &MultiRegionApp, namespace: &str) -> bool {
    app.spec.propagate.is_some() && app.namespace().as_deref() == Some(namespace)
}
