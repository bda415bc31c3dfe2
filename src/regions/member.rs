//! One member cluster as the operator currently knows it: its client, its
//! probe state, the watched copies of what the operator placed there, and
//! what the last placements there ran into. The state is private: callers
//! ask (`state`, `observe`) and report (`record`, `forget`).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use kube::Client;
use kube::api::PartialObjectMeta;
use kube::core::{ApiResource, GroupVersionKind};
use kube::discovery::Scope;
use kube::runtime::reflector::{ObjectRef, Store};
use tokio::task::JoinHandle;

use super::CredentialsError;
use super::watch::{self, store_ready};
use crate::api::{RegionSpec, ResourceRef};
use crate::error::{Error, Result};
use crate::plan::health::{Counters, PlacementProblem, RegionState, WorkloadState};
use crate::plan::manifest::AppKey;
use crate::plan::propagate::Propagation;
use crate::text::member_text;

/// A Deployment watch whose every attempt has failed for this long (its
/// list or watch refused, or cut while the probe gets through) holds data
/// of unknown age: the workload is judged `Stale` (Unknown evidence) until
/// an attempt succeeds.
pub const WATCH_SILENCE: Duration = Duration::from_secs(30);

/// How long an object of `spec.resources` seen as wanted is taken to be
/// still so (these kinds are not watched).
pub const RESOURCE_RECHECK: Duration = Duration::from_secs(30);

/// What the probe task last saw.
#[derive(Clone, Debug)]
pub struct ProbeState {
    /// Result of the last probe; None before the first.
    pub last_ok: Option<bool>,
    /// The last probe was answered with an error code that is no evidence
    /// (429, 5xx, 401, 403): which.
    pub troubled: Option<u16>,
    pub last_error: String,
    pub counters: Counters,
    pub version: Option<String>,
}

/// The watched copies of the objects placed in a member.
pub(crate) struct Placed {
    pub deployments: Store<Deployment>,
    /// When the Deployment watch last heard from the member.
    pub heard: Arc<watch::Heard>,
    /// Services, and copies of propagated ConfigMaps and Secrets: their
    /// metadata only (names, labels and annotations are all that is read).
    pub services: Store<PartialObjectMeta<Service>>,
    pub config_maps: Store<PartialObjectMeta<ConfigMap>>,
    /// Which of those each app's labels name.
    pub config_maps_by_app: Arc<watch::ByApp>,
    /// Copies of Secrets, watched in each namespace the operator uses
    /// (the member identity may list Secrets only where its writer role
    /// is bound, never cluster-wide).
    pub secrets: watch::PerNamespace<Secret>,
}

/// Names of the copies among `objects` (the app's, found by its labels)
/// that are the app's in this region.
fn held<K>(objects: Vec<Arc<K>>, app: &AppKey, region: &str) -> Vec<String>
where
    K: kube::Resource<DynamicType = ()> + Clone + 'static,
{
    use kube::ResourceExt;
    objects
        .iter()
        .filter(|o| {
            o.namespace().as_deref() == Some(app.namespace.as_str())
                && crate::plan::manifest::owned_by(Some(o.labels()), app, region)
                && !o.labels().contains_key(crate::api::LABEL_RESOURCE)
        })
        .map(|o| o.name_any())
        .collect()
}

/// What the last placement of an app in this member ran into.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Note {
    /// An object of the app's name that is not the operator's.
    Conflict(String),
    /// The member API server's refusal.
    Refused(String),
}

/// One member cluster.
pub struct Member {
    name: String,
    /// None when the credentials are unusable (see `credentials_error`).
    client: Option<Client>,
    credentials_error: Option<CredentialsError>,
    /// Identifies the credentials the client was built from.
    config_key: String,
    spec: RwLock<RegionSpec>,
    /// The Region has a deletionTimestamp (held by its in-use finalizer).
    deleting: std::sync::atomic::AtomicBool,
    probe: Mutex<ProbeState>,
    placed: Option<Placed>,
    notes: Mutex<HashMap<AppKey, Note>>,
    /// Namespaces known to exist here (and, for a confined identity, to
    /// hold its writer binding).
    namespaces: Mutex<HashSet<String>>,
    /// The confined identity whose writer role the operator binds in each
    /// namespace it uses here (the Region's
    /// `multiregion.io/confined-identity`); None: the credentials write
    /// wherever their RBAC says.
    confined: RwLock<Option<String>>,
    /// Kinds found served here: (apiVersion, kind) -> the resource and
    /// whether it is namespaced.
    kinds: Mutex<HashMap<(String, String), (ApiResource, bool)>>,
    /// Objects of `spec.resources` known to be here as wanted: the hash
    /// applied and when that was last seen.
    resources: Mutex<HashMap<(AppKey, ResourceRef), (String, Instant)>>,
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
    /// A member with a working client and watched placed objects.
    pub(crate) fn connected(
        name: &str,
        spec: RegionSpec,
        client: Client,
        config_key: String,
        probe: ProbeState,
        placed: Placed,
    ) -> Self {
        let mut member = Member::unusable(name, spec, None, config_key, probe);
        member.client = Some(client);
        member.placed = Some(placed);
        member
    }

    /// A member whose credentials cannot be used: every call to it fails.
    pub(crate) fn unusable(
        name: &str,
        spec: RegionSpec,
        error: Option<CredentialsError>,
        config_key: String,
        probe: ProbeState,
    ) -> Self {
        Member {
            name: name.to_string(),
            client: None,
            credentials_error: error,
            config_key,
            spec: RwLock::new(spec),
            deleting: std::sync::atomic::AtomicBool::new(false),
            probe: Mutex::new(probe),
            placed: None,
            notes: Mutex::default(),
            namespaces: Mutex::default(),
            confined: RwLock::default(),
            kinds: Mutex::default(),
            resources: Mutex::default(),
            tasks: Mutex::default(),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn config_key(&self) -> &str {
        &self.config_key
    }

    /// The client, or why there is none.
    pub fn client(&self) -> Result<&Client> {
        self.client.as_ref().ok_or_else(|| Error::Unreachable {
            region: self.name.clone(),
            reason: "no usable credentials".into(),
        })
    }

    pub fn spec(&self) -> RegionSpec {
        self.spec.read().map(|s| s.clone()).unwrap_or_default()
    }

    /// Takes the Region's new spec; true when it changed.
    pub(crate) fn set_spec(&self, spec: &RegionSpec) -> bool {
        match self.spec.write() {
            Ok(mut current) if *current != *spec => {
                *current = spec.clone();
                true
            }
            _ => false,
        }
    }

    /// Whether the Region is being deleted.
    pub fn deleting(&self) -> bool {
        self.deleting.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Takes the Region's deletion state; true when it changed.
    pub(crate) fn set_deleting(&self, deleting: bool) -> bool {
        self.deleting
            .swap(deleting, std::sync::atomic::Ordering::Relaxed)
            != deleting
    }

    pub(crate) fn add_task(&self, task: JoinHandle<()>) {
        if let Ok(mut tasks) = self.tasks.lock() {
            tasks.push(task);
        }
    }

    /// Reachability as the plan sees it: the last probe's result, so an app
    /// round never waits for the Region's own thresholds on top of its own.
    pub fn state(&self) -> RegionState {
        if let Some(err) = &self.credentials_error {
            return RegionState::NoCredentials(err.to_string());
        }
        match self.probe_state() {
            Some(ProbeState {
                last_ok: Some(true),
                ..
            }) => RegionState::Reachable,
            Some(ProbeState {
                last_ok: Some(false),
                troubled: Some(code),
                last_error,
                ..
            }) => RegionState::Troubled {
                code,
                message: last_error,
            },
            Some(ProbeState {
                last_ok: Some(false),
                last_error,
                ..
            }) => RegionState::Unreachable(last_error),
            _ => RegionState::Unknown,
        }
    }

    pub fn probe_state(&self) -> Option<ProbeState> {
        self.probe.lock().ok().map(|p| p.clone())
    }

    /// Applies `change` to the probe state; returns (before, after).
    pub(crate) fn update_probe(
        &self,
        change: impl FnOnce(&mut ProbeState),
    ) -> Option<(ProbeState, ProbeState)> {
        let mut state = self.probe.lock().ok()?;
        let before = state.clone();
        change(&mut state);
        Some((before, state.clone()))
    }

    /// True once the watches of placed objects have listed everything.
    pub fn listed(&self) -> bool {
        self.placed
            .as_ref()
            .is_some_and(|p| store_ready(&p.deployments) && store_ready(&p.services))
    }

    /// What the operator knows of the app's workload here (`region` is the
    /// app's name for this member): from the watch, unless it has not
    /// listed yet or has failed for `WATCH_SILENCE`.
    pub fn observe(
        &self,
        app: &AppKey,
        region: &str,
        lag_annotation: Option<&str>,
    ) -> WorkloadState {
        if !self.listed() {
            return WorkloadState::Unknown;
        }
        if let Some(silent) = self.watch_silence().filter(|s| *s >= WATCH_SILENCE) {
            return WorkloadState::Stale {
                silent_seconds: silent.as_secs(),
            };
        }
        match self.cached_deployment(app) {
            Some(d) => watch::workload_state(&d, app, region, lag_annotation),
            None => WorkloadState::Missing,
        }
    }

    /// How long every attempt of the Deployment watch has failed.
    pub fn watch_silence(&self) -> Option<Duration> {
        self.placed.as_ref().map(|p| p.heard.silence())
    }

    /// What placing the app here last ran into, if anything.
    pub fn placement_problem(&self, app: &AppKey) -> Option<PlacementProblem> {
        let notes = self.notes.lock().ok()?;
        match notes.get(app)? {
            Note::Conflict(message) => Some(PlacementProblem::Conflict(message.clone())),
            Note::Refused(message) => Some(PlacementProblem::Refused(message.clone())),
        }
    }

    /// Records what placing the app here ran into, for the next round. The
    /// outcome of each attempt replaces the last, whatever it is: a
    /// refusal is forgotten once an attempt gets past it (or cannot tell).
    pub fn record(&self, app: &AppKey, outcome: &Result<bool>) {
        let Ok(mut notes) = self.notes.lock() else {
            return;
        };
        match outcome {
            Err(err @ Error::Conflict { .. }) => {
                notes.insert(app.clone(), Note::Conflict(member_text(&err.to_string())));
            }
            Err(Error::Refused { message, .. }) => {
                notes.insert(app.clone(), Note::Refused(member_text(message)));
            }
            _ => {
                notes.remove(app);
            }
        }
    }

    /// Forgets what placing the app ran into (its objects are gone).
    pub fn forget(&self, app: &AppKey) {
        if let Ok(mut notes) = self.notes.lock() {
            notes.remove(app);
        }
        if let Ok(mut resources) = self.resources.lock() {
            resources.retain(|(a, _), _| a != app);
        }
    }

    /// The resource serving `kind` of `api_version` here, and whether it is
    /// namespaced; None when this member does not serve it. Found by
    /// discovery once, then remembered.
    pub(crate) async fn served_kind(
        &self,
        api_version: &str,
        kind: &str,
    ) -> Result<Option<(ApiResource, bool)>> {
        let key = (api_version.to_string(), kind.to_string());
        if let Some(found) = self.kinds.lock().ok().and_then(|k| k.get(&key).cloned()) {
            return Ok(Some(found));
        }
        let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
        let gvk = GroupVersionKind::gvk(group, version, kind);
        let found = match kube::discovery::pinned_kind(self.client()?, &gvk).await {
            Ok((resource, caps)) => (resource, caps.scope == Scope::Namespaced),
            Err(kube::Error::Discovery(_)) => return Ok(None),
            Err(kube::Error::Api(status)) if status.code == 404 => return Ok(None),
            Err(err) => return Err(Error::member(&self.name, err)),
        };
        if let Ok(mut kinds) = self.kinds.lock() {
            kinds.insert(key, found.clone());
        }
        Ok(Some(found))
    }

    /// Forgets the kinds found by discovery (one may have gone).
    pub(crate) fn forget_kinds(&self) {
        if let Ok(mut kinds) = self.kinds.lock() {
            kinds.clear();
        }
    }

    /// True when the object was seen here with `hash` less than
    /// `RESOURCE_RECHECK` ago: nothing to send. After that it is read
    /// again, so an object deleted by hand comes back.
    pub(crate) fn resource_current(&self, app: &AppKey, object: &ResourceRef, hash: &str) -> bool {
        let key = (app.clone(), object.clone());
        self.resources.lock().is_ok_and(|r| {
            r.get(&key)
                .is_some_and(|(h, at)| h == hash && at.elapsed() < RESOURCE_RECHECK)
        })
    }

    /// The object is here as wanted (`hash`), or, with None, gone.
    pub(crate) fn resource_seen(&self, app: &AppKey, object: &ResourceRef, hash: Option<&str>) {
        if let Ok(mut resources) = self.resources.lock() {
            let key = (app.clone(), object.clone());
            match hash {
                Some(hash) => resources.insert(key, (hash.to_string(), Instant::now())),
                None => resources.remove(&key),
            };
        }
    }

    pub(crate) fn cached_deployment(&self, app: &AppKey) -> Option<Arc<Deployment>> {
        let key = ObjectRef::new(&app.name).within(&app.namespace);
        self.placed.as_ref()?.deployments.get(&key)
    }

    pub(crate) fn cached_service(&self, app: &AppKey) -> Option<Arc<PartialObjectMeta<Service>>> {
        let key = ObjectRef::new(&app.name).within(&app.namespace);
        self.placed.as_ref()?.services.get(&key)
    }

    pub(crate) fn deployments(&self) -> Option<&Store<Deployment>> {
        self.placed.as_ref().map(|p| &p.deployments)
    }

    pub(crate) fn services(&self) -> Option<&Store<PartialObjectMeta<Service>>> {
        self.placed.as_ref().map(|p| &p.services)
    }

    pub(crate) fn config_maps(&self) -> Option<&Store<PartialObjectMeta<ConfigMap>>> {
        self.placed.as_ref().map(|p| &p.config_maps)
    }

    /// The watch of copied Secrets in `namespace`, started on first use.
    pub(crate) fn secrets_in(&self, namespace: &str) -> Option<Arc<watch::NamespaceWatch<Secret>>> {
        self.placed.as_ref().map(|p| p.secrets.namespace(namespace))
    }

    /// The cached ConfigMaps whose labels name `app` (its copies and role
    /// ConfigMap here, and any other object labelled for it).
    pub(crate) fn app_config_maps(&self, app: &AppKey) -> Vec<Arc<PartialObjectMeta<ConfigMap>>> {
        let Some(placed) = self.placed.as_ref() else {
            return Vec::new();
        };
        placed.config_maps_by_app.objects(&placed.config_maps, app)
    }

    /// The cached Secrets whose labels name `app`.
    pub(crate) fn app_secrets(&self, app: &AppKey) -> Vec<Arc<PartialObjectMeta<Secret>>> {
        let Some(secrets) = self.secrets_in(&app.namespace) else {
            return Vec::new();
        };
        secrets.by_app.objects(&secrets.store, app)
    }

    /// What the app's region here misses of what it propagates; None when
    /// it holds a copy of every object (or propagates nothing).
    pub fn missing_config(
        &self,
        app: &AppKey,
        region: &str,
        propagation: &Propagation,
    ) -> Option<String> {
        if propagation.is_empty() {
            return None;
        }
        if self.spec().local {
            // The hub itself: the app's namespace holds the originals.
            let (maps, secrets) = (propagation.config_map_names(), propagation.secret_names());
            return propagation.missing(&maps, &secrets);
        }
        let (Some(maps), Some(secrets)) = (self.config_maps(), self.secrets_in(&app.namespace))
        else {
            return Some("no usable client for this region".into());
        };
        let listed = |kind: &str, needed: bool, ready: bool| {
            (needed && !ready).then(|| {
                format!("{kind} not listed here yet (may the operator list them? join --allow-secrets grants Secrets)")
            })
        };
        let unlisted = listed(
            "ConfigMaps",
            !propagation.config_maps.is_empty(),
            store_ready(maps),
        )
        .or_else(|| {
            listed(
                "Secrets",
                !propagation.secrets.is_empty(),
                store_ready(&secrets.store),
            )
        });
        if let Some(why) = unlisted {
            return Some(why);
        }
        let (maps, secrets) = (self.app_config_maps(app), self.app_secrets(app));
        propagation.missing(&held(maps, app, region), &held(secrets, app, region))
    }

    /// The confined identity the operator binds in each namespace, if any.
    pub fn confined_identity(&self) -> Option<String> {
        self.confined.read().ok()?.clone()
    }

    /// Takes the Region's `multiregion.io/confined-identity`; true when it
    /// changed.
    pub(crate) fn set_confined_identity(&self, identity: Option<String>) -> bool {
        match self.confined.write() {
            Ok(mut confined) if *confined != identity => {
                *confined = identity;
                true
            }
            _ => false,
        }
    }

    pub(crate) fn knows_namespace(&self, name: &str) -> bool {
        self.namespaces.lock().is_ok_and(|n| n.contains(name))
    }

    pub(crate) fn namespace_exists(&self, name: &str) {
        if let Ok(mut known) = self.namespaces.lock() {
            known.insert(name.to_string());
        }
    }

    /// The namespace was not there after all (deleted by someone): it is
    /// created again at the next placement.
    pub(crate) fn namespace_gone(&self, name: &str) {
        if let Ok(mut known) = self.namespaces.lock() {
            known.remove(name);
        }
    }
}
