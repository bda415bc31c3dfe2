//! The reconcile loops. Regions are reconciled into members (clients,
//! probes, watches); apps are reconciled in phases (see `reconcile`):
//! gather, decide, scale up, publish, write status, scale down, announce.
//! Only the holder of the Lease writes (see `leader`).

mod cleanup;
mod context;
mod events;
mod gather;
mod hub_config;
pub mod leader;
mod metrics_auth;
mod placement;
mod reconcile;
mod resources;
mod server;
mod sinks;
mod status;
mod tenants;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{self, Action};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{Controller, WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;

use crate::api::{MultiRegionApp, REGION_IN_USE, Region};
use crate::deadline::Clients;
use crate::error::{Error, Result};
use crate::metrics::{ErrorLabels, Metrics};
use crate::regions::{Registry, Trigger, http_check};
pub use context::Context;
use leader::{Elector, Fence, Timing};
use server::Readiness;
use sinks::SinkCaches;

/// Apps reconciled at once. Each reconcile in flight holds a connection to
/// every member it writes to (HTTP/1.1, pooled afterwards): unbounded, a
/// start with a thousand apps opened thousands of connections and their
/// buffers. Reconciles wait on the network, so a few dozen keep the cores
/// busy; the rest queue, each app at most once.
const APP_RECONCILE_CONCURRENCY: u16 = 32;

/// How the operator runs.
#[derive(Clone, Debug)]
pub struct Options {
    /// Namespace the operator runs in (where Region Secrets live by default).
    pub namespace: String,
    /// Address of the metrics and health server.
    pub metrics_addr: std::net::SocketAddr,
    /// `/metrics` only for bearer tokens the hub allows `get` on it.
    pub metrics_auth: bool,
    /// Name used in Events and the Lease.
    pub identity: String,
    /// Only the holder of the Lease `multiregion-operator` in `namespace`
    /// works; other replicas wait and take over when it expires.
    pub leader_election: bool,
    /// Lease duration in seconds (a replica takes over within it).
    pub lease_seconds: u64,
    /// This hub's identity on the objects it places; empty: the UID of the
    /// hub's `kube-system` namespace.
    pub hub_name: String,
    /// Read Secrets in every namespace of the hub, so that apps can
    /// propagate them (`spec.propagate.secrets`).
    pub propagate_secrets: bool,
    /// The region this replica runs in (`--region`), if known.
    pub region: Option<String>,
    /// Member tokens are renewed once they expire within this much, if
    /// that comes before two thirds of their life.
    pub renew_tokens_within: Duration,
    /// The scraper whose short-lived token is kept in a Secret, if any.
    pub scraper: Option<crate::regions::tokens::ScraperToken>,
}

/// Serves metrics and health, waits for the Lease (with leader election),
/// then runs the controllers until the process is stopped. A leader that
/// cannot renew the Lease in time stops its controllers at once (so it can
/// never write next to the new leader) and stands by again, in process; on
/// SIGTERM it releases the Lease first.
pub async fn run(hub: Clients, options: Options) -> anyhow::Result<()> {
    let metrics = Arc::new(Metrics::default());
    let ready = Arc::new(Readiness::default());
    let auth = options
        .metrics_auth
        .then(|| metrics_auth::MetricsAuth::new(hub.requests.clone()));
    let mut server = tokio::spawn(server::serve(
        options.metrics_addr,
        metrics.clone(),
        ready.clone(),
        auth,
    ));

    // Read before taking the Lease: a leader that cannot place anything
    // must not hold it.
    let hub_id = tokio::select! {
        id = hub_identity(&hub.requests, &options.hub_name) => id,
        _ = shutdown_signal() => return Ok(()),
    };
    let options = Options {
        hub_name: hub_id,
        ..options
    };
    // Every replica observes, leader or not, for as long as it runs.
    let observing = crate::observe::Options {
        namespace: options.namespace.clone(),
        identity: options.identity.clone(),
        region: options.region.clone(),
        hub_id: options.hub_name.clone(),
        lease: Duration::from_secs(options.lease_seconds),
        asking: Arc::default(),
    };
    let observer = tokio::spawn(crate::observe::run(
        hub.clone(),
        observing.clone(),
        metrics.clone(),
    ));
    let _stop_observing = AbortOnDrop(observer);
    if !options.leader_election {
        metrics.leader.set(1);
        return tokio::select! {
            result = run_controllers(&hub, &options, metrics, ready, Fence::open(), &observing.asking) => result,
            result = &mut server => result?,
            _ = shutdown_signal() => {
                crate::observe::release(&hub.requests, &observing).await;
                Ok(())
            }
        };
    }
    let timing = Timing::for_lease(Duration::from_secs(options.lease_seconds));
    let elector = Elector::new(
        hub.requests.clone(),
        &options.namespace,
        &options.identity,
        timing,
    );
    loop {
        tracing::info!(identity = %options.identity, "waiting for the Lease");
        ready.standby();
        metrics.leader.set(0);
        let fence = tokio::select! {
            fence = elector.acquire() => fence,
            result = &mut server => return result?,
            _ = shutdown_signal() => {
                crate::observe::release(&hub.requests, &observing).await;
                return Ok(());
            }
        };
        tracing::info!(identity = %options.identity, "holding the Lease: this replica writes");
        metrics.leader.set(1);
        tokio::select! {
            result = run_controllers(&hub, &options, metrics.clone(), ready.clone(), fence.clone(), &observing.asking) => return result,
            result = &mut server => return result?,
            _ = elector.keep(&fence) => tracing::warn!(
                deadline = ?timing.renew_deadline,
                "the Lease was not renewed within its renew deadline: stopped writing; standing by"
            ),
            _ = shutdown_signal() => {
                elector.release().await;
                crate::observe::release(&hub.requests, &observing).await;
                return Ok(());
            }
        }
    }
}

/// Aborts a task when dropped (the observer stops with `run`).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// How long to wait between attempts to read the hub's identity.
const IDENTITY_RETRY: Duration = Duration::from_secs(2);

/// This hub's identity: the name given, else the UID of its `kube-system`
/// namespace (a cluster's stable identity), asked until it is read: with
/// no identity the operator would take every object it placed for another
/// hub's, and the other way round.
async fn hub_identity(hub: &Client, given: &str) -> String {
    if !given.is_empty() {
        return given.to_string();
    }
    let namespaces: Api<Namespace> = Api::all(hub.clone());
    loop {
        match namespaces.get("kube-system").await.map(|ns| ns.uid()) {
            Ok(Some(uid)) if !uid.is_empty() => return uid,
            Ok(_) => tracing::warn!("the hub's kube-system namespace has no UID; set --hub-name"),
            Err(err) => {
                tracing::warn!(error = %err, "cannot read the hub's kube-system namespace yet (or set --hub-name); asking again")
            }
        }
        tokio::time::sleep(IDENTITY_RETRY).await;
    }
}

/// The Region and app controllers, until one of them ends.
async fn run_controllers(
    clients: &Clients,
    options: &Options,
    metrics: Arc<Metrics>,
    ready: Arc<Readiness>,
    fence: Fence,
    asking: &Arc<crate::observe::Asking>,
) -> anyhow::Result<()> {
    let (hub, watches) = (clients.requests.clone(), clients.watches.clone());
    // `run` resolved it before the Lease.
    let hub_id = options.hub_name.clone();
    let (tx, rx) = mpsc::unbounded_channel();
    let registry = Registry::new(clients.clone(), tx.clone(), metrics.clone(), fence.clone());
    let checks = http_check::HttpChecks::new(http_check::client()?, tx.clone(), asking.clone());
    let sinks = SinkCaches::start(&watches, tx.clone());
    let (observers, observer_watch) = observer_leases(&watches, &options.namespace);
    let (tenants, namespace_watch) =
        tenants::Tenants::start(&watches, &options.namespace, tx.clone());
    let hub_config = hub_config::HubConfig::start(&watches, options.propagate_secrets, tx);
    let apps = app_controller(&watches);
    let app_store = apps.store();
    let context = Arc::new(Context::new(
        context::Parts {
            hub: hub.clone(),
            apps: app_store.clone(),
            hub_id,
            registry: registry.clone(),
            checks,
            sinks,
            hub_config,
            tenants,
            metrics,
            fence,
            observers,
        },
        &options.identity,
    ));
    let regions = Controller::new(
        Api::<Region>::all(watches.clone()),
        watcher::Config::default(),
    );
    let region_store = regions.store();
    let region_loop = region_controller(regions, &watches, &options.namespace, context.clone());
    let app_loop = apps
        .with_config(controller::Config::default().concurrency(APP_RECONCILE_CONCURRENCY))
        .reconcile_on(expand_triggers(rx, app_store.clone()))
        .run(reconcile::reconcile_app, app_error_policy, context)
        .for_each(|result| async move {
            if let Err(err) = result {
                tracing::debug!(error = %err, "app reconcile");
            }
        });
    let readiness = async {
        let _ = app_store.wait_until_ready().await;
        let _ = region_store.wait_until_ready().await;
        ready.leader();
        std::future::pending::<()>().await
    };
    tracing::info!(namespace = %options.namespace, "multiregion operator started");
    tokio::select! {
        _ = region_loop => {},
        _ = app_loop => {},
        _ = prune(registry.clone(), region_store.clone(), options.renew_tokens_within) => {},
        _ = scraper_token(registry, options) => {},
        _ = observer_watch => {},
        _ = namespace_watch => {},
        _ = readiness => {},
    }
    Ok(())
}

/// The apps' controller, whose cache keeps each app without its managed
/// fields and kubectl's last-applied copy of it (nothing reads them; they
/// are a large part of an app's size).
fn app_controller(watches: &Client) -> Controller<MultiRegionApp> {
    let (reader, writer) = reflector::store();
    let apps = watcher(
        Api::<MultiRegionApp>::all(watches.clone()),
        watcher::Config::default(),
    )
    .default_backoff()
    .modify(|app| {
        app.managed_fields_mut().clear();
        app.annotations_mut().remove(LAST_APPLIED);
    });
    let applied = reflector::reflector(writer, apps).applied_objects();
    Controller::for_stream(applied, reader)
}

/// kubectl's client-side apply keeps the whole manifest here.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// A cache of the replicas' observer Leases (in the operator's
/// namespace), and the watch that fills it.
fn observer_leases(
    hub: &Client,
    namespace: &str,
) -> (Store<Lease>, impl Future<Output = ()> + use<>) {
    let (store, writer) = reflector::store();
    let api: Api<Lease> = Api::namespaced(hub.clone(), namespace);
    let config = watcher::Config::default().labels(crate::observe::OBSERVER_LABEL);
    let watch = reflector::reflector(writer, watcher(api, config))
        .default_backoff()
        .touched_objects()
        .for_each(|_| async {});
    (store, watch)
}

/// A member per Region, rebuilt when its Secret changes.
fn region_controller(
    regions: Controller<Region>,
    hub: &Client,
    namespace: &str,
    context: Arc<Context>,
) -> impl Future<Output = ()> {
    let store = regions.store();
    let held = regions.store();
    regions
        .watches(
            Api::<Secret>::namespaced(hub.clone(), namespace),
            watcher::Config::default(),
            move |secret| regions_using(&store, &secret),
        )
        .watches(
            Api::<MultiRegionApp>::all(hub.clone()),
            watcher::Config::default().any_semantic(),
            move |app| unprotected(&held, &app),
        )
        .run(reconcile_region, region_error_policy, context)
        .for_each(|_| async {})
}

/// The Regions whose in-use finalizer may have to change after this app
/// changed: those it names that do not carry it yet, and those being
/// deleted that still do. (Every app write would otherwise reconcile every
/// Region it names.)
fn unprotected(regions: &Store<Region>, app: &MultiRegionApp) -> Vec<ObjectRef<Region>> {
    let named = regions_of(app);
    regions
        .state()
        .iter()
        .filter(|r| {
            let has = r.finalizers().iter().any(|f| f == REGION_IN_USE);
            let deleting = r.metadata.deletion_timestamp.is_some();
            (deleting && has) || (!has && named.iter().any(|n| n.name == r.name_any()))
        })
        .map(|r| ObjectRef::from_obj(&**r))
        .collect()
}

/// The Regions an app names (spec, status, pending cleanup).
fn regions_of(app: &MultiRegionApp) -> Vec<ObjectRef<Region>> {
    let status = app.status.as_ref();
    let mut names: Vec<&str> = app.spec.regions.iter().map(|r| r.name.as_str()).collect();
    if let Some(status) = status {
        names.extend(status.regions.iter().map(|r| r.name.as_str()));
        names.extend(status.cleanup_pending.iter().map(String::as_str));
    }
    names.sort_unstable();
    names.dedup();
    names.into_iter().map(ObjectRef::new).collect()
}

/// The Regions whose kubeconfig is in this Secret.
fn regions_using(store: &Store<Region>, secret: &Secret) -> Vec<ObjectRef<Region>> {
    let (namespace, name) = (secret.namespace().unwrap_or_default(), secret.name_any());
    store
        .state()
        .into_iter()
        .filter(|r| {
            r.spec
                .kubeconfig_secret_ref
                .as_ref()
                .is_some_and(|s| s.namespace == namespace && s.name == name)
        })
        .map(|r| ObjectRef::from_obj(&*r))
        .collect()
}

/// Keeps the scraper's token (`--scraper-service-account`) while this
/// replica leads; nothing without one.
async fn scraper_token(registry: Arc<Registry>, options: &Options) {
    match options.scraper.clone() {
        Some(scraper) => {
            let namespace = options.namespace.clone();
            crate::regions::tokens::keep_scraper_token(registry, namespace, scraper).await
        }
        None => std::future::pending().await,
    }
}

/// How often the member tokens are looked at (a Region's Secret is read
/// only when `plan::identity::next_check` says so).
const TOKEN_CHECK_INTERVAL: Duration = Duration::from_secs(10);

/// Forgets members whose Region is gone; marks the registry synced once
/// every listed Region has a member; keeps each Region's
/// `CredentialsConfined` current and its member token renewed.
async fn prune(registry: Arc<Registry>, store: Store<Region>, renew_within: Duration) {
    if store.wait_until_ready().await.is_err() {
        return;
    }
    let mut tokens_checked: Option<Instant> = None;
    let mut next_token_checks = HashMap::new();
    loop {
        if tokens_checked.is_none_or(|t| t.elapsed() >= TOKEN_CHECK_INTERVAL) {
            let regions = store.state();
            let checks = &mut next_token_checks;
            crate::regions::tokens::renew_due(&registry, &regions, renew_within, checks).await;
            tokens_checked = Some(Instant::now());
        }
        let names: HashSet<String> = store.state().iter().map(|r| r.name_any()).collect();
        if names.iter().all(|n| registry.get(n).is_some()) {
            registry.mark_synced();
        }
        registry.retain(&names);
        registry.report_confinements(&store.state()).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(_) => return ctrl_c.await.unwrap_or(()),
    };
    tokio::select! {
        _ = ctrl_c => {},
        _ = term.recv() => {},
    }
}

/// Turns region-level triggers into the apps placed in that region.
fn expand_triggers(
    rx: mpsc::UnboundedReceiver<Trigger>,
    apps: Store<MultiRegionApp>,
) -> impl futures::Stream<Item = ObjectRef<MultiRegionApp>> + Send + 'static {
    UnboundedReceiverStream::new(rx).flat_map(move |trigger| {
        let refs: Vec<ObjectRef<MultiRegionApp>> = match trigger {
            Trigger::App(r) => vec![r],
            Trigger::Propagated(namespace) => apps
                .state()
                .iter()
                .filter(|a| hub_config::propagates_from(a, &namespace))
                .map(|a| ObjectRef::from_obj(&**a))
                .collect(),
            Trigger::Namespace(namespace) => apps
                .state()
                .iter()
                .filter(|a| a.namespace().as_deref() == Some(namespace.as_str()))
                .map(|a| ObjectRef::from_obj(&**a))
                .collect(),
            Trigger::Region(region) => apps
                .state()
                .iter()
                .filter(|a| uses_region(a, &region))
                .map(|a| ObjectRef::from_obj(&**a))
                .collect(),
        };
        futures::stream::iter(refs)
    })
}

/// The app names the region in its spec or in its status's regions.
fn serves_in(app: &MultiRegionApp, region: &str) -> bool {
    app.spec.regions.iter().any(|r| r.name == region)
        || app
            .status
            .as_ref()
            .is_some_and(|s| s.regions.iter().any(|r| r.name == region))
}

/// The app is placed in the region, or still being cleaned up there.
fn uses_region(app: &MultiRegionApp, region: &str) -> bool {
    app.spec.regions.iter().any(|r| r.name == region)
        || app.status.as_ref().is_some_and(|s| {
            s.cleanup_pending.iter().any(|r| r == region)
                || s.regions.iter().any(|r| r.name == region)
        })
}

async fn reconcile_region(region: Arc<Region>, ctx: Arc<Context>) -> Result<Action> {
    let deleting = region.metadata.deletion_timestamp.is_some();
    if let Some(in_use) = ctx.region_in_use(&region.name_any(), deleting)
        && let Err(err) = protect_region(&ctx, &region, in_use).await
    {
        tracing::warn!(region = %region.name_any(), error = %err, "in-use finalizer not updated");
    }
    ctx.registry().upsert(&region).await;
    // Secrets are watched; this also retries credentials that failed for
    // reasons no watch sees (RBAC granted later, for example).
    Ok(Action::requeue(Duration::from_secs(60)))
}

/// The longest a Region finalizer patch may take (less if the leader's
/// fence has less time left).
const FINALIZER_WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Keeps the in-use finalizer on a Region exactly while some app uses it.
/// The list is written whole over the resourceVersion read, so another
/// controller's finalizer is never lost.
async fn protect_region(ctx: &Context, region: &Region, in_use: bool) -> Result<()> {
    let finalizers = region.finalizers();
    let has = finalizers.iter().any(|f| f == REGION_IN_USE);
    if has == in_use || ctx.fence.check().is_err() {
        return Ok(());
    }
    let mut wanted: Vec<String> = finalizers
        .iter()
        .filter(|f| *f != REGION_IN_USE)
        .cloned()
        .collect();
    if in_use {
        wanted.push(REGION_IN_USE.to_string());
    }
    let patch = serde_json::json!({
        "metadata": {"finalizers": wanted, "resourceVersion": region.resource_version()}
    });
    let api: Api<Region> = Api::all(ctx.hub.clone());
    let name = region.name_any();
    let what = format!("set the in-use finalizer of Region {name}");
    let patching = async {
        api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(Error::hub(what.clone()))
    };
    let late = || Error::Unreachable {
        region: "hub".into(),
        reason: format!("{what}: no answer within {FINALIZER_WRITE_TIMEOUT:?}"),
    };
    ctx.fence
        .bounded(FINALIZER_WRITE_TIMEOUT, patching, late)
        .await?;
    ctx.metrics.wrote("hub", "region_finalizer");
    Ok(())
}

fn region_error_policy(_region: Arc<Region>, err: &Error, _ctx: Arc<Context>) -> Action {
    tracing::warn!(error = %err, "region reconcile failed");
    Action::requeue(Duration::from_secs(5))
}

fn app_error_policy(app: Arc<MultiRegionApp>, err: &Error, ctx: Arc<Context>) -> Action {
    if let Error::DeletionHeld(_) = err {
        // Waiting for a person, not failing: the annotation (or a changed
        // deletionPolicy) wakes the app; looked at again every minute.
        return Action::requeue(Duration::from_secs(60));
    }
    ctx.metrics
        .reconcile_errors
        .get_or_create(&ErrorLabels {
            error: err.metric_label().into(),
        })
        .inc();
    // Decide again at once after a status conflict; back off with the age
    // of a pending deletion; else retry soon.
    let wait = match (err, app.meta().deletion_timestamp.as_ref()) {
        (Error::StatusConflict { .. }, _) => Duration::from_millis(100),
        (_, Some(t)) => {
            let age = Timestamp::now().as_second() - t.0.as_second();
            Duration::from_secs((age / 4).clamp(2, 60) as u64)
        }
        (_, None) => Duration::from_secs(2),
    };
    tracing::warn!(app = %app.name_any(), namespace = ?app.namespace(), error = %err, retry_in = ?wait, "app reconcile failed");
    Action::requeue(wait)
}
