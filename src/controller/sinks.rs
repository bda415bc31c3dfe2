//! Publishing weights to the traffic sinks in the hub: the HTTPRoute and
//! DNSEndpoint an app names, plus the per-region backend Services (and
//! EndpointSlices) the route points at.
//!
//! The operator watches what it published (label-scoped), so a sink object
//! edited or deleted by someone else is written again at once: a sink is
//! written when its live object no longer holds what the weights say, not
//! when a memory of earlier writes says so. An object of the chosen name
//! that the operator did not create is never taken over (`Conflict`).

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams,
};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use serde_json::Value;
use tokio::sync::mpsc::UnboundedSender;
use tokio::task::JoinHandle;

use crate::api::{FIELD_MANAGER, HomeRoute, LABEL_MANAGED_BY, LABEL_REGION, MultiRegionApp};
use crate::error::{Error, Result};
use crate::plan::SinkOutcome;
use crate::plan::manifest::{self, AppKey};
use crate::plan::traffic::{self, Target};
use crate::regions::{Registry, Trigger, watch_app_of};

/// The kinds of sink object, each with its watched copies.
pub struct SinkCaches {
    kinds: [Kind; 4],
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for SinkCaches {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

struct Kind {
    resource: ApiResource,
    store: Store<DynamicObject>,
}

const SERVICE: usize = 0;
const SLICE: usize = 1;
const ROUTE: usize = 2;
const DNS: usize = 3;

impl SinkCaches {
    /// Watches every sink object the operator published, in every
    /// namespace; a change triggers the app it belongs to.
    pub fn start(hub: &Client, triggers: UnboundedSender<Trigger>) -> Arc<Self> {
        let resources = [
            ApiResource::erase::<Service>(&()),
            ApiResource::erase::<EndpointSlice>(&()),
            resource("gateway.networking.k8s.io", "v1", "HTTPRoute", "httproutes"),
            resource(
                "externaldns.k8s.io",
                "v1alpha1",
                "DNSEndpoint",
                "dnsendpoints",
            ),
        ];
        let mut tasks = Vec::new();
        let kinds = resources.map(|resource| {
            let (store, task) = watch(hub, &resource, triggers.clone());
            tasks.push(task);
            Kind { resource, store }
        });
        Arc::new(SinkCaches { kinds, tasks })
    }

    /// The weights the app's sinks hold now, by region (DNSEndpoint first,
    /// else the HTTPRoute), for an app whose status was lost.
    pub fn published(&self, app: &MultiRegionApp, key: &AppKey) -> Vec<(String, i32)> {
        let Some(traffic) = &app.spec.traffic else {
            return Vec::new();
        };
        let get = |kind: usize, name: &str| {
            let store = &self.kinds[kind];
            let object = store
                .store
                .get(&ObjectRef::new_with(name, store.resource.clone()).within(&key.namespace))?;
            Some(serde_json::to_value(&*object).unwrap_or_default())
        };
        if traffic.dns_endpoint.is_some()
            && let Some(dns) = get(DNS, &key.name)
        {
            return traffic::dns_weights(&dns);
        }
        let regions: Vec<&str> = app.spec.regions.iter().map(|r| r.name.as_str()).collect();
        match traffic
            .http_route
            .as_ref()
            .and_then(|r| get(ROUTE, &r.name))
        {
            Some(route) => traffic::route_weights(key, &route, &regions),
            None => Vec::new(),
        }
    }
}

#[cfg(test)]
impl SinkCaches {
    /// Caches without watches, for tests that play the watch themselves:
    /// the writers, by kind (Service, EndpointSlice, HTTPRoute, DNSEndpoint).
    pub(crate) fn detached() -> (Arc<Self>, Vec<reflector::store::Writer<DynamicObject>>) {
        let resources = [
            ApiResource::erase::<Service>(&()),
            ApiResource::erase::<EndpointSlice>(&()),
            resource("gateway.networking.k8s.io", "v1", "HTTPRoute", "httproutes"),
            resource(
                "externaldns.k8s.io",
                "v1alpha1",
                "DNSEndpoint",
                "dnsendpoints",
            ),
        ];
        let mut writers = Vec::new();
        let kinds = resources.map(|resource| {
            let mut writer = reflector::store::Writer::<DynamicObject>::new(resource.clone());
            writer.apply_watcher_event(&watcher::Event::InitDone);
            let store = writer.as_reader();
            writers.push(writer);
            Kind { resource, store }
        });
        let caches = SinkCaches {
            kinds,
            tasks: Vec::new(),
        };
        (Arc::new(caches), writers)
    }
}

fn resource(group: &str, version: &str, kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural)
}

/// The first and the longest wait before a failed sink watch lists again.
const SINK_WATCH_RETRY_FIRST: Duration = Duration::from_secs(1);
const SINK_WATCH_RETRY_MOST: Duration = Duration::from_secs(60);

fn watch(
    hub: &Client,
    resource: &ApiResource,
    triggers: UnboundedSender<Trigger>,
) -> (Store<DynamicObject>, JoinHandle<()>) {
    let writer = reflector::store::Writer::<DynamicObject>::new(resource.clone());
    let store = writer.as_reader();
    let api: Api<DynamicObject> = Api::all_with(hub.clone(), resource);
    let config = watcher::Config::default().labels(&format!("{LABEL_MANAGED_BY}=multiregion"));
    let kind = resource.kind.clone();
    let task = tokio::spawn(async move {
        let objects = watcher(api, config).modify(|o| o.managed_fields_mut().clear());
        let stream = reflector::reflector(writer, objects).default_backoff();
        futures::pin_mut!(stream);
        // A kind the hub does not serve (no Gateway API or ExternalDNS CRDs)
        // fails every list: wait longer after each failure, up to a minute,
        // rather than list it twice a second for ever.
        let mut pause = Duration::ZERO;
        while let Some(event) = stream.next().await {
            match event {
                Ok(watcher::Event::Apply(object) | watcher::Event::InitApply(object)) => {
                    if let Some(app) = watch_app_of(object.labels()) {
                        let _ = triggers.send(Trigger::App(app));
                    }
                }
                Ok(watcher::Event::Delete(object)) => {
                    if let Some(app) = watch_app_of(object.labels()) {
                        let _ = triggers.send(Trigger::App(app));
                    }
                }
                Ok(watcher::Event::InitDone) => pause = Duration::ZERO,
                Ok(watcher::Event::Init) => {}
                Err(err) => {
                    pause = (pause * 2).clamp(SINK_WATCH_RETRY_FIRST, SINK_WATCH_RETRY_MOST);
                    tracing::debug!(kind = %kind, error = %err, retry_in = ?pause, "watch of sink objects interrupted");
                    tokio::time::sleep(pause).await;
                }
            }
        }
    });
    (store, task)
}

/// One sink object to publish.
struct Desired {
    kind: usize,
    object: DynamicObject,
    /// The region it stands for ("all" for the route and DNS records).
    region: String,
}

/// Deletes every sink object the app owns (its route, DNS record and
/// backends, found by their owner reference): an app being deleted whose
/// deletion is held must not keep sending traffic to regions whose
/// workload it removed. False when one could not be deleted.
pub async fn withdraw(hub: &Client, caches: &SinkCaches, app: &MultiRegionApp) -> bool {
    let (Some(uid), Some(namespace)) = (app.metadata.uid.as_deref(), app.namespace()) else {
        return true;
    };
    let mut withdrawn = true;
    for kind in &caches.kinds {
        let api: Api<DynamicObject> = Api::namespaced_with(hub.clone(), &namespace, &kind.resource);
        let owned = kind.store.state().into_iter().filter(|o| {
            o.namespace().as_deref() == Some(namespace.as_str())
                && o.owner_references().iter().any(|r| r.uid == uid)
        });
        for object in owned {
            match api
                .delete(&object.name_any(), &DeleteParams::default())
                .await
            {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(error) => {
                    tracing::warn!(app = %app.name_any(), object = %object.name_any(), %error, "sink object not withdrawn");
                    withdrawn = false;
                }
            }
        }
    }
    withdrawn
}

/// Writes every sink object of the app that does not hold what the weights
/// say, and removes backends of regions no longer among them.
pub async fn publish(
    hub: &Client,
    caches: &SinkCaches,
    registry: &Registry,
    app: &MultiRegionApp,
    key: &AppKey,
    weights: &[(String, i32)],
    homes: &[HomeRoute],
) -> (SinkOutcome, usize) {
    if app.spec.traffic.is_none() {
        return (SinkOutcome::NotConfigured, 0);
    }
    let mut writer = Writer {
        hub,
        caches,
        key,
        written: 0,
        conflicts: Vec::new(),
        failures: Vec::new(),
    };
    for desired in build(registry, app, key, weights, homes) {
        writer.publish(desired).await;
    }
    let regions: Vec<&str> = weights.iter().map(|(r, _)| r.as_str()).collect();
    writer.remove_backends(&regions).await;
    let outcome = match (writer.conflicts.is_empty(), writer.failures.is_empty()) {
        (false, _) => SinkOutcome::Conflict(join(&writer.conflicts)),
        (true, false) => SinkOutcome::Failed(join(&writer.failures)),
        (true, true) => SinkOutcome::Published,
    };
    (outcome, writer.written)
}

fn join(errors: &[Error]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// The app's sink objects, owned by the app (Kubernetes removes them with
/// it), one backend per region in `weights`.
fn build(
    registry: &Registry,
    app: &MultiRegionApp,
    key: &AppKey,
    weights: &[(String, i32)],
    homes: &[HomeRoute],
) -> Vec<Desired> {
    let Some(sinks) = &app.spec.traffic else {
        return Vec::new();
    };
    let targets: Vec<Option<Target>> = weights
        .iter()
        .map(|(region, _)| {
            let endpoint = app
                .spec
                .regions
                .iter()
                .find(|r| &r.name == region)
                .and_then(|r| r.endpoint.clone())
                .or_else(|| registry.get(region).and_then(|m| m.spec().endpoint));
            endpoint.as_deref().and_then(traffic::parse_endpoint)
        })
        .collect();
    let mut desired = Vec::new();
    let mut add = |kind: usize, object: Value, region: &str| {
        if let Ok(object) = serde_json::from_value::<DynamicObject>(object) {
            desired.push(Desired {
                kind,
                object,
                region: region.to_string(),
            });
        }
    };
    if sinks.http_route.is_some() {
        for ((region, _), target) in weights.iter().zip(&targets) {
            let backend = traffic::backend(key, region, target.as_ref());
            add(
                SERVICE,
                serde_json::to_value(backend.service).unwrap_or_default(),
                region,
            );
            if let Some(slice) = backend.slice {
                add(
                    SLICE,
                    serde_json::to_value(slice).unwrap_or_default(),
                    region,
                );
            }
        }
    }
    for (kind, object) in [
        (
            ROUTE,
            traffic::http_route(key, &app.spec, weights, &targets, homes),
        ),
        (
            DNS,
            traffic::dns_endpoint(key, &app.spec, weights, &targets, homes),
        ),
    ] {
        if let Some(object) = object {
            add(
                kind,
                serde_json::to_value(object).unwrap_or_default(),
                "all",
            );
        }
    }
    let owner = app.controller_owner_ref(&());
    for d in &mut desired {
        d.object.metadata.owner_references = owner.clone().map(|o| vec![o]);
    }
    desired
}

/// Writes sink objects and collects what went wrong.
struct Writer<'a> {
    hub: &'a Client,
    caches: &'a SinkCaches,
    key: &'a AppKey,
    written: usize,
    conflicts: Vec<Error>,
    failures: Vec<Error>,
}

impl Writer<'_> {
    async fn publish(&mut self, desired: Desired) {
        let kind = &self.caches.kinds[desired.kind];
        let name = desired.object.name_any();
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.hub.clone(), &self.key.namespace, &kind.resource);
        let cached = kind
            .store
            .get(&ObjectRef::new_with(&name, kind.resource.clone()).within(&self.key.namespace))
            .map(|o| (*o).clone());
        let result = match cached {
            Some(live) => self.update(&api, &desired, live).await,
            None => self.create(&api, &desired).await,
        };
        match result {
            Ok(true) => self.written += 1,
            Ok(false) => {}
            Err(err @ Error::Conflict { .. }) => self.conflicts.push(err),
            Err(err) => self.failures.push(err),
        }
    }

    /// Writes the object when the live one is ours and no longer holds it.
    async fn update(
        &self,
        api: &Api<DynamicObject>,
        desired: &Desired,
        live: DynamicObject,
    ) -> Result<bool> {
        if !manifest::owned_by(Some(live.labels()), self.key, &desired.region) {
            return Err(self.conflict(desired));
        }
        let want = comparable(&desired.object);
        if traffic::holds(&serde_json::to_value(&live).unwrap_or_default(), &want) {
            return Ok(false);
        }
        self.apply(api, desired).await.map(|_| true)
    }

    /// Creates the object; when the name is taken, reads what holds it.
    async fn create(&self, api: &Api<DynamicObject>, desired: &Desired) -> Result<bool> {
        let params = PostParams {
            field_manager: Some(FIELD_MANAGER.to_string()),
            ..Default::default()
        };
        match api.create(&params, &desired.object).await {
            Ok(_) => return Ok(true),
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(source) => return Err(self.failed(desired, source)),
        }
        match api.get_opt(&desired.object.name_any()).await {
            Ok(Some(live)) => self.update(api, desired, live).await,
            Ok(None) => Ok(false),
            Err(source) => Err(self.failed(desired, source)),
        }
    }

    async fn apply(&self, api: &Api<DynamicObject>, desired: &Desired) -> Result<()> {
        let params = PatchParams::apply(FIELD_MANAGER).force();
        api.patch(
            &desired.object.name_any(),
            &params,
            &Patch::Apply(&desired.object),
        )
        .await
        .map(|_| ())
        .map_err(|source| self.failed(desired, source))
    }

    fn conflict(&self, desired: &Desired) -> Error {
        Error::Conflict {
            place: "hub".into(),
            kind: self.caches.kinds[desired.kind].resource.kind.clone(),
            name: format!("{}/{}", self.key.namespace, desired.object.name_any()),
        }
    }

    fn failed(&self, desired: &Desired, source: kube::Error) -> Error {
        Error::Sink {
            kind: self.caches.kinds[desired.kind].resource.kind.clone(),
            name: format!("{}/{}", self.key.namespace, desired.object.name_any()),
            source,
        }
    }

    /// Backends of regions that are no longer among the weights go.
    async fn remove_backends(&mut self, regions: &[&str]) {
        for kind in [SERVICE, SLICE] {
            let resource = &self.caches.kinds[kind].resource;
            let stale: Vec<Arc<DynamicObject>> = self.caches.kinds[kind]
                .store
                .state()
                .into_iter()
                .filter(|o| o.namespace().as_deref() == Some(&self.key.namespace))
                .filter(|o| {
                    let region = o.labels().get(LABEL_REGION).cloned().unwrap_or_default();
                    manifest::owned_by(Some(o.labels()), self.key, &region)
                        && !regions.contains(&region.as_str())
                })
                .collect();
            let api: Api<DynamicObject> =
                Api::namespaced_with(self.hub.clone(), &self.key.namespace, resource);
            for object in stale {
                match api
                    .delete(&object.name_any(), &DeleteParams::default())
                    .await
                {
                    Ok(_) => self.written += 1,
                    Err(kube::Error::Api(s)) if s.code == 404 => {}
                    Err(source) => self.failures.push(Error::Sink {
                        kind: resource.kind.clone(),
                        name: object.name_any(),
                        source,
                    }),
                }
            }
        }
    }
}

/// What a live sink object must hold: the desired object without its name
/// and namespace (they found it).
fn comparable(desired: &DynamicObject) -> Value {
    let mut want = serde_json::to_value(desired).unwrap_or_default();
    if let Some(meta) = want.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("name");
        meta.remove("namespace");
    }
    want
}
