//! Label-scoped watches of what the operator placed in a member, and the
//! one place a watched Deployment becomes a `WorkloadState`.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, PartialObjectMeta};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use tokio::sync::mpsc::UnboundedSender;
use tokio::task::JoinHandle;

use super::Trigger;
use crate::api::{FIELD_MANAGER, LAG_OBSERVED_AT, MultiRegionApp};
use crate::api::{LABEL_APP, LABEL_APP_NAMESPACE, LABEL_ROLE, Role};
use crate::plan::health::{LagReport, WorkloadState};
use crate::plan::manifest::{self, AppKey};

/// A namespaced kind of object the operator places and watches by label
/// (Services, ConfigMaps, Secrets).
pub(crate) trait Copied:
    Resource<DynamicType = (), Scope = NamespaceResourceScope>
    + Clone
    + std::fmt::Debug
    + Send
    + Sync
    + 'static
{
}

impl<K> Copied for K where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + std::fmt::Debug
        + Send
        + Sync
        + 'static
{
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

/// Whether a watch hears from its server. kube's watcher does not show
/// bookmarks, and a watch that restarted fine shows nothing until an
/// object changes, so silence alone proves nothing; what does is failure
/// that goes on: every retry (at most 2 s apart) failing since the last
/// good answer.
#[derive(Default)]
pub struct Heard(std::sync::Mutex<Failing>);

#[derive(Default)]
struct Failing {
    since: Option<std::time::Instant>,
    last: Option<std::time::Instant>,
}

/// Retries of a failing watch come at most this far apart; an error older
/// than this means the last retry got through.
const RETRY_GAP: std::time::Duration = std::time::Duration::from_secs(10);

impl Heard {
    pub fn new() -> std::sync::Arc<Self> {
        std::sync::Arc::default()
    }

    fn answered(&self) {
        if let Ok(mut failing) = self.0.lock() {
            *failing = Failing::default();
        }
    }

    fn failed(&self) {
        let now = std::time::Instant::now();
        if let Ok(mut failing) = self.0.lock() {
            failing.since.get_or_insert(now);
            failing.last = Some(now);
        }
    }

    /// How long every attempt of the watch has failed; zero when it is
    /// not failing.
    pub fn silence(&self) -> std::time::Duration {
        let Ok(failing) = self.0.lock() else {
            return std::time::Duration::ZERO;
        };
        match (failing.since, failing.last) {
            (Some(since), Some(last)) if last.elapsed() < RETRY_GAP => since.elapsed(),
            _ => std::time::Duration::ZERO,
        }
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

/// How often a region that refuses a watch of propagated copies (joined
/// without `--allow-secrets`, or before ConfigMaps were propagated) is
/// asked again.
const PERMISSION_RECHECK: std::time::Duration = std::time::Duration::from_secs(300);

/// Like `watch_placed_meta`, but only once the member lets the operator list
/// the kind cluster-wide (asked with a SelfSubjectAccessReview, again every
/// five minutes): a refused watch would be retried, and logged, five times
/// a second for good. Until then the store is never ready, and regions
/// report the copies as not listed.
pub(crate) fn watch_placed_when_allowed<K>(
    place: &str,
    client: &Client,
    selector: &str,
    triggers: UnboundedSender<Trigger>,
    by_app: std::sync::Arc<ByApp>,
) -> (Store<PartialObjectMeta<K>>, JoinHandle<()>)
where
    K: Copied,
{
    let scope = Scope {
        place: place.to_string(),
        client: client.clone(),
        selector: selector.to_string(),
        namespace: None,
    };
    watch_in_scope(scope, triggers, by_app)
}

/// Where a watch of copies looks: one member, all of it or one namespace.
#[derive(Clone)]
struct Scope {
    place: String,
    client: Client,
    selector: String,
    namespace: Option<String>,
}

/// How soon a namespace where the operator may not list the kind yet is
/// asked again (then twice as long each time, up to half a minute): its
/// writer role is bound when the namespace is adopted, which may come
/// later (the region out of reach), and then its copies follow soon.
const NAMESPACE_RECHECK: std::time::Duration = std::time::Duration::from_secs(2);
const NAMESPACE_RECHECK_MAX: std::time::Duration = std::time::Duration::from_secs(30);

fn watch_in_scope<K>(
    scope: Scope,
    triggers: UnboundedSender<Trigger>,
    by_app: std::sync::Arc<ByApp>,
) -> (Store<PartialObjectMeta<K>>, JoinHandle<()>)
where
    K: Copied,
{
    let (store, writer) = reflector::store::<PartialObjectMeta<K>>();
    let task = tokio::spawn(async move {
        let resource = K::plural(&()).to_string();
        let namespace = scope.namespace.as_deref();
        // A namespace is asked again soon (it is being adopted), then less
        // and less often (a region joined without the grant).
        let (mut recheck, longest) = match namespace {
            None => (PERMISSION_RECHECK, PERMISSION_RECHECK),
            Some(_) => (NAMESPACE_RECHECK, NAMESPACE_RECHECK_MAX),
        };
        let mut told = false;
        while !may_list_in::<K>(&scope.client, &resource, namespace).await {
            if !told {
                tracing::info!(region = %scope.place, resource = %resource, namespace = namespace.unwrap_or("(all)"), "the operator may not list these here; copies of this kind are not propagated to this region until it may (join --allow-secrets grants Secrets)");
                told = true;
            }
            tokio::time::sleep(recheck).await;
            recheck = (recheck * 2).min(longest);
        }
        let watch = MetaWatch {
            triggers,
            heard: Heard::new(),
            by_app: Some(by_app),
        };
        run_meta_watch::<K>(scope, writer, watch).await;
    });
    (store, task)
}

/// One namespace's watch of copies, and its index by app.
pub(crate) struct NamespaceWatch<K: Resource<DynamicType = ()> + Clone + 'static> {
    pub store: Store<PartialObjectMeta<K>>,
    pub by_app: std::sync::Arc<ByApp>,
    task: Option<JoinHandle<()>>,
}

impl<K: Resource<DynamicType = ()> + Clone + 'static> Drop for NamespaceWatch<K> {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Copies of one kind, watched namespace by namespace as they are first
/// needed: for Secrets, which the member identity may list only in the
/// namespaces it adopted (its writer role is bound there with a
/// RoleBinding), never cluster-wide.
pub(crate) struct PerNamespace<K: Resource<DynamicType = ()> + Clone + 'static> {
    scope: Option<(Scope, UnboundedSender<Trigger>)>,
    watches: Mutex<HashMap<String, std::sync::Arc<NamespaceWatch<K>>>>,
    /// A store every namespace shares (tests, without a member).
    fixed: Option<Store<PartialObjectMeta<K>>>,
}

impl<K> PerNamespace<K>
where
    K: Copied,
{
    pub fn new(
        place: &str,
        client: &Client,
        selector: &str,
        triggers: UnboundedSender<Trigger>,
    ) -> Self {
        let scope = Scope {
            place: place.to_string(),
            client: client.clone(),
            selector: selector.to_string(),
            namespace: None,
        };
        PerNamespace {
            scope: Some((scope, triggers)),
            watches: Mutex::default(),
            fixed: None,
        }
    }

    /// Every namespace reads `store`, and no watch is started.
    #[cfg(test)]
    pub fn fixed(store: Store<PartialObjectMeta<K>>) -> Self {
        PerNamespace {
            scope: None,
            watches: Mutex::default(),
            fixed: Some(store),
        }
    }

    /// The watch of `namespace`, started on first use.
    pub fn namespace(&self, namespace: &str) -> std::sync::Arc<NamespaceWatch<K>> {
        let mut watches = match self.watches.lock() {
            Ok(watches) => watches,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(watch) = watches.get(namespace) {
            return watch.clone();
        }
        let watch = std::sync::Arc::new(self.start(namespace));
        watches.insert(namespace.to_string(), watch.clone());
        watch
    }

    fn start(&self, namespace: &str) -> NamespaceWatch<K> {
        let by_app = std::sync::Arc::<ByApp>::default();
        match (&self.scope, &self.fixed) {
            (Some((scope, triggers)), _) => {
                let scope = Scope {
                    namespace: Some(namespace.to_string()),
                    ..scope.clone()
                };
                let (store, task) = watch_in_scope(scope, triggers.clone(), by_app.clone());
                NamespaceWatch {
                    store,
                    by_app,
                    task: Some(task),
                }
            }
            (None, fixed) => NamespaceWatch {
                store: fixed.clone().unwrap_or_else(|| reflector::store().0),
                by_app,
                task: None,
            },
        }
    }
}

/// Whether the member lets this identity list `K` in `namespace` (one
/// read of at most one object's metadata: a read, where a review would be
/// a create the member counts as a write), or in every namespace (asked
/// with a SelfSubjectAccessReview, once at the member's start).
async fn may_list_in<K>(client: &Client, resource: &str, namespace: Option<&str>) -> bool
where
    K: Copied,
{
    let Some(namespace) = namespace else {
        return may_list(client, resource, None).await;
    };
    let api = Api::<PartialObjectMeta<K>>::namespaced(client.clone(), namespace);
    let params = kube::api::ListParams::default().limit(1);
    match api.list(&params).await {
        Ok(_) => true,
        Err(kube::Error::Api(status)) if status.code == 403 => false,
        // Unknown (the server is down): watch, and let the watch retry.
        Err(_) => true,
    }
}

/// Whether the member lets this identity list `resource` (core group) in
/// `namespace`, or in every namespace.
async fn may_list(client: &Client, resource: &str, namespace: Option<&str>) -> bool {
    use k8s_openapi::api::authorization::v1::{
        ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
    };
    let review = SelfSubjectAccessReview {
        spec: SelfSubjectAccessReviewSpec {
            resource_attributes: Some(ResourceAttributes {
                verb: Some("list".into()),
                resource: Some(resource.into()),
                namespace: namespace.map(str::to_string),
                ..ResourceAttributes::default()
            }),
            ..SelfSubjectAccessReviewSpec::default()
        },
        ..SelfSubjectAccessReview::default()
    };
    let api: Api<SelfSubjectAccessReview> = Api::all(client.clone());
    match api.create(&Default::default(), &review).await {
        Ok(answer) => answer.status.is_some_and(|s| s.allowed),
        // Unknown (the server is down, or reviews are not allowed): watch,
        // as before.
        Err(_) => true,
    }
}

/// A label-scoped watch of the placed Deployments, whose status is read
/// (`workload_state`), kept without their pod template (`trimmed`); every
/// change triggers the app named in the object's labels.
pub(crate) fn watch_deployments(
    place: &str,
    client: &Client,
    selector: &str,
    triggers: UnboundedSender<Trigger>,
    heard: std::sync::Arc<Heard>,
) -> (Store<Deployment>, JoinHandle<()>) {
    let (store, writer) = reflector::store::<Deployment>();
    let config = watcher::Config::default().labels(selector);
    let objects = watcher(Api::<Deployment>::all(client.clone()), config).modify(trimmed);
    let place = place.to_string();
    let task = tokio::spawn(async move {
        let watch = CachedWatch {
            place: &place,
            heard,
            by_app: None,
        };
        cache_events(objects, writer, watch, triggering(triggers)).await;
    });
    (store, task)
}

/// A watched Deployment as the operator keeps it: what `workload_state`
/// and placement read (the metadata a cache keeps, `spec.replicas`,
/// status), not its pod template nor the field sets of its managed fields
/// (the bulk of a Deployment; the applied-hash annotation says whether it
/// is current).
pub(crate) fn trimmed(deployment: &mut Deployment) {
    manifest::cached_meta(&mut deployment.metadata, FIELD_MANAGER);
    if let Some(spec) = deployment.spec.as_mut() {
        spec.template = Default::default();
        spec.selector = Default::default();
        spec.strategy = None;
    }
    // Of the conditions, `rolling_out` reads Progressing's status and
    // reason only.
    let conditions = deployment
        .status
        .as_mut()
        .and_then(|s| s.conditions.as_mut());
    if let Some(conditions) = conditions {
        conditions.retain(|c| c.type_ == "Progressing");
        for condition in conditions.iter_mut() {
            condition.message = None;
            condition.last_transition_time = None;
            condition.last_update_time = None;
        }
    }
}

/// Like `watch_deployments`, but names, labels and annotations only (a
/// metadata watch): for Services and copies, of which nothing else is
/// read, so a large ConfigMap or Secret costs the operator its metadata.
pub(crate) fn watch_placed_meta<K>(
    place: &str,
    client: &Client,
    selector: &str,
    triggers: UnboundedSender<Trigger>,
    heard: std::sync::Arc<Heard>,
) -> (Store<PartialObjectMeta<K>>, JoinHandle<()>)
where
    K: Copied,
{
    let (store, writer) = reflector::store::<PartialObjectMeta<K>>();
    let watch = MetaWatch {
        triggers,
        heard,
        by_app: None,
    };
    let scope = Scope {
        place: place.to_string(),
        client: client.clone(),
        selector: selector.to_string(),
        namespace: None,
    };
    let task = tokio::spawn(run_meta_watch::<K>(scope, writer, watch));
    (store, task)
}

/// What a metadata watch tells of what it sees: the apps to reconcile, its
/// server's answers, and (for copies) the index of objects by app.
struct MetaWatch {
    triggers: UnboundedSender<Trigger>,
    heard: std::sync::Arc<Heard>,
    by_app: Option<std::sync::Arc<ByApp>>,
}

async fn run_meta_watch<K>(
    scope: Scope,
    writer: reflector::store::Writer<PartialObjectMeta<K>>,
    meta: MetaWatch,
) where
    K: Copied,
{
    let config = watcher::Config::default().labels(&scope.selector);
    // An Api of PartialObjectMeta asks for metadata only.
    let api = match &scope.namespace {
        Some(namespace) => Api::<PartialObjectMeta<K>>::namespaced(scope.client, namespace),
        None => Api::<PartialObjectMeta<K>>::all(scope.client),
    };
    let objects = watcher(api, config);
    let watch = CachedWatch {
        place: &scope.place,
        heard: meta.heard,
        by_app: meta.by_app,
    };
    cache_events(objects, writer, watch, triggering(meta.triggers)).await;
}

/// The objects of a metadata cache by the app their labels name
/// (`app_of`): one app's copies are found without going through every
/// app's objects (every app's role ConfigMap is in the same cache; a scan
/// per app and region made most of the operator's CPU at 1,000 apps). It
/// follows the watch's events as the store applied them: an applied object
/// is noted, a deleted one forgotten, and a completed (re)list rebuilds it
/// from the store, so names missed while a watch was down go too.
#[derive(Default)]
pub(crate) struct ByApp(Mutex<Index>);

/// An object's namespace and name.
type NamespacedName = (String, String);

impl ByApp {
    /// Follows one watch event, already applied to `store`.
    fn observe<M>(&self, event: &watcher::Event<M>, store: &Store<M>)
    where
        M: Resource<DynamicType = ()> + Clone + 'static,
    {
        let Ok(mut index) = self.0.lock() else {
            return;
        };
        match event {
            watcher::Event::Apply(object) | watcher::Event::InitApply(object) => {
                note(&mut index, object)
            }
            watcher::Event::Delete(object) => {
                if let Some(app) = app_of(object.labels()) {
                    let names = index.entry(app.clone()).or_default();
                    names.remove(&name_of(object));
                    if names.is_empty() {
                        index.remove(&app);
                    }
                }
            }
            watcher::Event::InitDone => {
                index.clear();
                for object in store.state() {
                    note(&mut index, object.as_ref());
                }
            }
            watcher::Event::Init => {}
        }
    }

    /// The objects of `store` whose labels name `app` (none before the
    /// store is first listed).
    pub(crate) fn objects<M>(&self, store: &Store<M>, app: &AppKey) -> Vec<Arc<M>>
    where
        M: Resource<DynamicType = ()> + Clone + 'static,
    {
        let key = ObjectRef::new(&app.name).within(&app.namespace);
        let Ok(index) = self.0.lock() else {
            return Vec::new();
        };
        let Some(names) = index.get(&key) else {
            return Vec::new();
        };
        names
            .iter()
            .filter_map(|(namespace, name)| store.get(&ObjectRef::new(name).within(namespace)))
            .filter(|object| app_of(object.labels()).as_ref() == Some(&key))
            .collect()
    }
}

type Index = HashMap<ObjectRef<MultiRegionApp>, BTreeSet<NamespacedName>>;

fn note<M: Resource>(index: &mut Index, object: &M) {
    if let Some(app) = app_of(object.labels()) {
        index.entry(app).or_default().insert(name_of(object));
    }
}

fn name_of<M: Resource>(object: &M) -> NamespacedName {
    (object.namespace().unwrap_or_default(), object.name_any())
}

/// Triggers the app named in a changed object's labels.
fn triggering<M: Resource>(triggers: UnboundedSender<Trigger>) -> impl Fn(&M) {
    move |object: &M| {
        if let Some(app) = app_of(object.labels()) {
            let _ = triggers.send(Trigger::App(app));
        }
    }
}

/// Where a cached watch runs (named in its logs) and what it tells of its
/// server's answers.
pub(crate) struct CachedWatch<'a> {
    pub place: &'a str,
    pub heard: std::sync::Arc<Heard>,
    /// The cache's index by app, kept if given.
    pub by_app: Option<Arc<ByApp>>,
}

/// Keeps `writer`'s store in step with the objects `config` selects,
/// without their managed fields' field sets (most of an object's size;
/// only the operator's records are kept, for `manifest::fold_pending`),
/// retrying quickly after errors, and calls `on_change` for every
/// object that changed. Interruptions are logged at debug, naming the
/// place; every answer and failure is told to `heard`.
pub(crate) async fn cached_watch<K>(
    api: Api<K>,
    config: watcher::Config,
    writer: reflector::store::Writer<K>,
    watch: CachedWatch<'_>,
    on_change: impl Fn(&K),
) where
    K: Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    cache_events(watcher(api, config), writer, watch, on_change).await;
}

/// `cached_watch` over a stream of watch events already made (whole
/// objects or metadata only).
async fn cache_events<M>(
    events: impl futures::Stream<Item = watcher::Result<watcher::Event<M>>> + Send,
    writer: reflector::store::Writer<M>,
    watch: CachedWatch<'_>,
    on_change: impl Fn(&M),
) where
    M: Resource<DynamicType = ()> + Clone + std::fmt::Debug + Send + Sync + 'static,
{
    let CachedWatch {
        place,
        heard,
        by_app,
    } = watch;
    let reader = writer.as_reader();
    let objects = events
        .map(move |event| {
            match &event {
                Ok(_) => heard.answered(),
                Err(_) => heard.failed(),
            }
            event
        })
        .modify(|object| manifest::cached_meta(object.meta_mut(), FIELD_MANAGER));
    // The reflector has applied each event to the store when it is seen
    // here: the index follows the store.
    let stream = reflector::reflector(writer, objects)
        .inspect_ok(move |event| {
            if let Some(index) = &by_app {
                index.observe(event, &reader);
            }
        })
        .backoff(QuickRetry::default())
        .touched_objects();
    futures::pin_mut!(stream);
    while let Some(event) = stream.next().await {
        match event {
            Ok(object) => on_change(&object),
            Err(err) => {
                tracing::debug!(place = %place, kind = %M::kind(&()), error = %err, "watch interrupted")
            }
        }
    }
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
    let annotations = deployment.annotations();
    let lag = lag_annotation
        .and_then(|a| annotations.get(a))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|seconds| LagReport {
            seconds,
            observed_at: annotations
                .get(LAG_OBSERVED_AT)
                .and_then(|t| t.trim().parse::<jiff::Timestamp>().ok()),
        });
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
        lag,
        rolling_out: manifest::rolling_out(deployment),
        role,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::runtime::watcher::Event;
    use serde_json::json;

    fn copy(name: &str, app: &AppKey) -> PartialObjectMeta<ConfigMap> {
        let mut object = PartialObjectMeta::<ConfigMap>::default();
        object.metadata.name = Some(name.into());
        object.metadata.namespace = Some(app.namespace.clone());
        object.metadata.labels = Some(manifest::labels(app, "us-east"));
        object
    }

    #[test]
    fn an_apps_objects_are_found_by_its_labels_through_lists_and_deletes() {
        let app = |name: &str| AppKey {
            hub: "hub-1".into(),
            namespace: "shop".into(),
            name: name.into(),
        };
        let (cart, checkout) = (app("cart"), app("checkout"));
        let (store, mut writer) = reflector::store::<PartialObjectMeta<ConfigMap>>();
        let by_app = ByApp::default();
        // As the reflector does: the store applies the event, then the
        // index follows it.
        let mut seen = |event: Event<PartialObjectMeta<ConfigMap>>| {
            writer.apply_watcher_event(&event);
            by_app.observe(&event, &store);
        };
        let names = |found: Vec<Arc<PartialObjectMeta<ConfigMap>>>| -> Vec<String> {
            found.iter().map(|o| o.name_any()).collect()
        };
        // The first list: nothing is visible until it is done, then all.
        seen(Event::Init);
        for (name, owner) in [("a", &checkout), ("b", &checkout), ("c", &cart)] {
            seen(Event::InitApply(copy(name, owner)));
        }
        assert!(
            by_app.objects(&store, &checkout).is_empty(),
            "not listed yet"
        );
        seen(Event::InitDone);
        assert_eq!(names(by_app.objects(&store, &checkout)), ["a", "b"]);
        assert_eq!(names(by_app.objects(&store, &cart)), ["c"]);
        // Deleted, and relabelled for another app: no longer the app's.
        seen(Event::Delete(copy("a", &checkout)));
        seen(Event::Apply(copy("b", &cart)));
        assert!(by_app.objects(&store, &checkout).is_empty());
        assert_eq!(names(by_app.objects(&store, &cart)), ["b", "c"]);
        // A relist after the watch was down: what went meanwhile is gone
        // from the index too, and what came is there.
        seen(Event::Init);
        seen(Event::InitApply(copy("c", &cart)));
        seen(Event::InitApply(copy("d", &checkout)));
        seen(Event::InitDone);
        assert_eq!(names(by_app.objects(&store, &cart)), ["c"]);
        assert_eq!(names(by_app.objects(&store, &checkout)), ["d"]);
        assert_eq!(by_app.0.lock().unwrap().len(), 2, "nothing kept of b");
    }

    #[test]
    fn a_trimmed_deployment_says_the_same_about_the_workload() {
        let app = AppKey {
            hub: "hub-1".into(),
            namespace: "shop".into(),
            name: "checkout".into(),
        };
        let mut labels = manifest::labels(&app, "us-east");
        labels.insert(LABEL_ROLE.into(), "active".into());
        let placed: Deployment = serde_json::from_value(json!({
            "metadata": {"name": "checkout", "namespace": "shop", "generation": 2,
                         "uid": "5f0c", "creationTimestamp": "2026-12-07T08:00:00Z",
                         "labels": labels,
                         "annotations": {"lag": "1.5", "deployment.kubernetes.io/revision": "2"},
                         "managedFields": [
                             {"manager": FIELD_MANAGER, "operation": "Update",
                              "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:replicas": {}}}},
                             {"manager": FIELD_MANAGER, "operation": "Apply",
                              "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:template": {}}}},
                             {"manager": "kube-controller-manager", "operation": "Update",
                              "subresource": "status",
                              "fieldsType": "FieldsV1", "fieldsV1": {"f:status": {}}}]},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "checkout"}},
                     "template": {"metadata": {"labels": {"app": "checkout"}},
                                  "spec": {"containers": [{"name": "web", "image": "nginx"}]}}},
            "status": {"observedGeneration": 2, "readyReplicas": 2,
                       "conditions": [{"type": "Available", "status": "True",
                                       "reason": "MinimumReplicasAvailable"},
                                      {"type": "Progressing", "status": "True",
                                       "reason": "ReplicaSetUpdated",
                                       "message": "ReplicaSet \"checkout-5d8f\" is progressing."}]},
        }))
        .unwrap();
        let mut kept = placed.clone();
        trimmed(&mut kept);
        let state = |d: &Deployment| workload_state(d, &app, "us-east", Some("lag"));
        assert!(matches!(
            state(&placed),
            WorkloadState::Placed {
                ready: 2,
                rolling_out: true,
                ..
            }
        ));
        assert_eq!(state(&kept), state(&placed));
        // Of the managed fields, the operator's records without their
        // field sets: placement still sees the fold it owes.
        let fields = kept.metadata.managed_fields.as_deref().unwrap();
        assert_eq!(fields.len(), 2, "{fields:?}");
        assert!(fields.iter().all(|f| f.fields_v1.is_none()));
        assert!(manifest::fold_pending(fields, FIELD_MANAGER));
        let spec = kept.spec.unwrap();
        assert!(spec.template.spec.is_none(), "no pod template kept");
        assert_eq!(spec.replicas, Some(3));
    }
}
