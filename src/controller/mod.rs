//! The reconcile loops. `reconcile(app)` gathers what the regions report,
//! asks `plan::decide`, and applies the decision: scale-ups first, then the
//! weights (traffic sinks, then status), then scale-downs and cleanup.

mod placement;
mod server;
mod sinks;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::events::v1::Event as KubeEvent;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{self, Action};
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{Controller, watcher};
use kube::{Client, Resource, ResourceExt};
use serde_json::json;
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;

use crate::api::{FIELD_MANAGER, FINALIZER, MultiRegionApp, MultiRegionAppStatus, Region};
use crate::error::{Error, Result};
use crate::metrics::{AppRegionLabels, ErrorLabels, FailoverLabels, Metrics};
use crate::plan::health::{RegionState, WorkloadState};
use crate::plan::manifest::{self, AppKey};
use crate::plan::{self, EventType, Inputs, Observation};
use crate::regions::{Registry, Trigger};

pub use placement::PlaceError;

/// Longest a placement or removal in one member may take.
const MEMBER_WRITE_TIMEOUT: Duration = Duration::from_secs(10);
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
    /// Name used in Events and the Lease.
    pub identity: String,
    /// Only the holder of the Lease `multiregion-operator` in `namespace`
    /// works; other replicas wait and take over when it expires.
    pub leader_election: bool,
    /// Lease duration in seconds (a replica takes over within it).
    pub lease_seconds: u64,
}

/// Shared by every reconcile.
pub struct Context {
    hub: Client,
    registry: Arc<Registry>,
    pub metrics: Arc<Metrics>,
    /// This instance's name in Events and the Lease.
    identity: String,
    http: reqwest::Client,
    /// When each app last had a health round.
    rounds: Mutex<HashMap<AppKey, Instant>>,
    /// Per app: the status a decision started from and the status it wrote.
    /// The watch may hand back the older one for a moment after a write;
    /// deciding from it again would repeat a move (and its Event).
    written: Mutex<HashMap<AppKey, (MultiRegionAppStatus, MultiRegionAppStatus)>>,
    /// What was last written to the traffic sinks.
    sinks: sinks::Written,
}

impl Context {
    /// The app's status as of our last write, when the watched copy still
    /// shows the status before it.
    fn fresh_status(&self, key: &AppKey, watched: MultiRegionAppStatus) -> MultiRegionAppStatus {
        let Ok(written) = self.written.lock() else {
            return watched;
        };
        match written.get(key) {
            Some((before, after)) if *before == watched && *after != watched => after.clone(),
            _ => watched,
        }
    }

    fn remember_write(
        &self,
        key: &AppKey,
        before: MultiRegionAppStatus,
        after: MultiRegionAppStatus,
    ) {
        if let Ok(mut written) = self.written.lock() {
            written.insert(key.clone(), (before, after));
        }
    }
}

/// Serves metrics and health, waits for the Lease (with leader election),
/// then runs the controllers until the process is stopped. A replica that
/// loses the Lease exits, so that it can never write next to the new leader.
pub async fn run(hub: Client, options: Options) -> anyhow::Result<()> {
    let metrics = Arc::new(Metrics::default());
    let ready = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut server = tokio::spawn(server::serve(
        options.metrics_addr,
        metrics.clone(),
        ready.clone(),
    ));
    if !options.leader_election {
        return tokio::select! {
            result = run_controllers(hub, &options, metrics, ready) => result,
            result = &mut server => result?,
            _ = shutdown_signal() => Ok(()),
        };
    }
    let grace = (options.lease_seconds / 3).max(1);
    let manager = kube_lease_manager::LeaseManagerBuilder::new(hub.clone(), "multiregion-operator")
        .with_namespace(&options.namespace)
        .with_identity(&options.identity)
        .with_field_manager(format!("multiregion-lease-{}", options.identity))
        .with_grace(grace)
        .with_duration(options.lease_seconds.max(grace + 1))
        .build()
        .await?;
    let (mut leader, _lease_task) = manager.watch().await;
    tracing::info!(identity = %options.identity, "waiting for the Lease");
    // Readiness means "able to serve as a replica": a standby is ready too.
    ready.store(true, std::sync::atomic::Ordering::Relaxed);
    loop {
        if *leader.borrow_and_update() {
            break;
        }
        tokio::select! {
            changed = leader.changed() => changed?,
            _ = shutdown_signal() => return Ok(()),
        }
    }
    tracing::info!(identity = %options.identity, "holding the Lease: this replica writes");
    let lost = async {
        loop {
            if leader.changed().await.is_err() || !*leader.borrow_and_update() {
                return;
            }
        }
    };
    tokio::select! {
        result = run_controllers(hub, &options, metrics, ready) => result,
        result = &mut server => result?,
        _ = lost => anyhow::bail!("lost the Lease; exiting so that only the new leader writes"),
        _ = shutdown_signal() => Ok(()),
    }
}

async fn run_controllers(
    hub: Client,
    options: &Options,
    metrics: Arc<Metrics>,
    ready: Arc<std::sync::atomic::AtomicBool>,
) -> anyhow::Result<()> {
    let (tx, rx) = mpsc::unbounded_channel();
    let registry = Registry::new(hub.clone(), tx, metrics.clone());

    let context = Arc::new(Context {
        hub: hub.clone(),
        registry: registry.clone(),
        metrics: metrics.clone(),
        identity: options.identity.clone(),
        http: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()?,
        rounds: Mutex::default(),
        written: Mutex::default(),
        sinks: sinks::Written::default(),
    });

    // Regions: a member per Region, rebuilt when its Secret changes.
    let regions_api: Api<Region> = Api::all(hub.clone());
    let region_controller = Controller::new(regions_api, watcher::Config::default());
    let region_store = region_controller.store();
    let secret_regions = region_store.clone();
    let region_controller = region_controller
        .watches(
            Api::<Secret>::namespaced(hub.clone(), &options.namespace),
            watcher::Config::default(),
            move |secret| {
                let (ns, name) = (secret.namespace().unwrap_or_default(), secret.name_any());
                secret_regions
                    .state()
                    .into_iter()
                    .filter(|r| {
                        r.spec
                            .kubeconfig_secret_ref
                            .as_ref()
                            .is_some_and(|s| s.namespace == ns && s.name == name)
                    })
                    .map(|r| ObjectRef::from_obj(&*r))
                    .collect::<Vec<_>>()
            },
        )
        .run(reconcile_region, region_error_policy, context.clone())
        .for_each(|_| async {});

    // Forget members whose Region is gone.
    let pruner = {
        let registry = registry.clone();
        let store = region_store.clone();
        async move {
            if store.wait_until_ready().await.is_err() {
                return;
            }
            loop {
                let names: HashSet<String> = store.state().iter().map(|r| r.name_any()).collect();
                if names.iter().all(|n| registry.get(n).is_some()) {
                    registry.mark_synced();
                }
                registry.retain(&names);
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    };

    // Apps: reconciled on their own changes and on any change in a region.
    let apps: Api<MultiRegionApp> = Api::all(hub.clone());
    let app_controller = Controller::new(apps, watcher::Config::default());
    let app_store = app_controller.store();
    let triggers = expand_triggers(rx, app_store.clone());
    let app_controller = app_controller
        .with_config(controller::Config::default().concurrency(APP_RECONCILE_CONCURRENCY))
        .reconcile_on(triggers)
        .run(reconcile_app, app_error_policy, context.clone())
        .for_each(|result| async move {
            if let Err(err) = result {
                tracing::debug!(error = %err, "app reconcile");
            }
        });

    let readiness = {
        let ready = ready.clone();
        async move {
            let _ = app_store.wait_until_ready().await;
            let _ = region_store.wait_until_ready().await;
            ready.store(true, std::sync::atomic::Ordering::Relaxed);
            std::future::pending::<()>().await
        }
    };

    tracing::info!(namespace = %options.namespace, "multiregion operator started");
    tokio::select! {
        _ = region_controller => {},
        _ = app_controller => {},
        _ = pruner => {},
        _ = readiness => {},
    }
    Ok(())
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
            Trigger::Region(region) => apps
                .state()
                .iter()
                .filter(|a| {
                    a.spec.regions.iter().any(|r| r.name == region)
                        || a.status.as_ref().is_some_and(|s| {
                            s.cleanup_pending.contains(&region)
                                || s.regions.iter().any(|r| r.name == region)
                        })
                })
                .map(|a| ObjectRef::from_obj(&**a))
                .collect(),
        };
        futures::stream::iter(refs)
    })
}

async fn reconcile_region(region: Arc<Region>, ctx: Arc<Context>) -> Result<Action> {
    ctx.registry.upsert(&region).await;
    // Secrets are watched; this also retries credentials that failed for
    // reasons no watch sees (RBAC granted later, for example).
    Ok(Action::requeue(Duration::from_secs(60)))
}

fn region_error_policy(_region: Arc<Region>, err: &Error, _ctx: Arc<Context>) -> Action {
    tracing::warn!(error = %err, "region reconcile failed");
    Action::requeue(Duration::from_secs(5))
}

fn app_error_policy(app: Arc<MultiRegionApp>, err: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics
        .reconcile_errors
        .get_or_create(&ErrorLabels {
            error: err.metric_label().into(),
        })
        .inc();
    // Back off with the age of a pending deletion, else retry soon.
    let wait = app
        .meta()
        .deletion_timestamp
        .as_ref()
        .map(|t| {
            let age = Timestamp::now().as_second() - t.0.as_second();
            Duration::from_secs((age / 4).clamp(2, 60) as u64)
        })
        .unwrap_or(Duration::from_secs(2));
    tracing::warn!(app = %app.name_any(), namespace = ?app.namespace(), error = %err, retry_in = ?wait, "app reconcile failed");
    Action::requeue(wait)
}

async fn reconcile_app(app: Arc<MultiRegionApp>, ctx: Arc<Context>) -> Result<Action> {
    let started = Instant::now();
    let namespace = app.namespace().unwrap_or_default();
    let api: Api<MultiRegionApp> = Api::namespaced(ctx.hub.clone(), &namespace);
    let result = finalizer(&api, FINALIZER, app, |event| async {
        match event {
            Finalizer::Apply(app) => apply(app, ctx.clone(), started).await,
            Finalizer::Cleanup(app) => cleanup(app, ctx.clone()).await,
        }
    })
    .await
    .map_err(|e| match e {
        kube::runtime::finalizer::Error::ApplyFailed(e)
        | kube::runtime::finalizer::Error::CleanupFailed(e) => e,
        other => Error::Finalizer(other.to_string()),
    });
    ctx.metrics
        .reconcile_duration
        .observe(started.elapsed().as_secs_f64());
    result
}

fn key_of(app: &MultiRegionApp) -> AppKey {
    AppKey {
        namespace: app.namespace().unwrap_or_default(),
        name: app.name_any(),
    }
}

/// Whether a health round is due for the app, and how long until the next.
fn round_due(ctx: &Context, key: &AppKey, interval: Duration) -> (bool, Duration) {
    let Ok(mut rounds) = ctx.rounds.lock() else {
        return (true, interval);
    };
    let now = Instant::now();
    match rounds.get(key) {
        // A little slack so a requeue that fires a hair early still counts.
        Some(last) if now.duration_since(*last) + Duration::from_millis(50) < interval => {
            (false, interval.saturating_sub(now.duration_since(*last)))
        }
        _ => {
            rounds.insert(key.clone(), now);
            (true, interval)
        }
    }
}

async fn apply(app: Arc<MultiRegionApp>, ctx: Arc<Context>, started: Instant) -> Result<Action> {
    let key = key_of(&app);
    let spec = &app.spec;
    let previous = ctx.fresh_status(&key, app.status.clone().unwrap_or_default());
    let api: Api<MultiRegionApp> = Api::namespaced(ctx.hub.clone(), &key.namespace);

    if let Err(invalid) = manifest::validate_template(spec) {
        let mut status = previous.clone();
        let mut c = plan::conditions::Conditions::new(
            &previous.conditions,
            Timestamp::now(),
            app.metadata.generation,
        );
        c.set("Ready", false, "InvalidSpec", invalid.to_string());
        status.conditions = c.finish();
        status.observed_generation = app.metadata.generation;
        if status != previous {
            publish_event(
                &ctx,
                &app,
                EventType::Warning,
                "InvalidSpec",
                &invalid.to_string(),
            )
            .await;
            write_status(&api, &key, &status).await?;
        }
        return Ok(Action::await_change());
    }

    let interval = Duration::from_secs(spec.health_check.interval_seconds.max(1) as u64);
    let (round, next_round) = round_due(&ctx, &key, interval);
    let observations = gather(&ctx, &app, round).await;
    let now = Timestamp::now();
    let decision = plan::decide(&Inputs {
        spec,
        generation: app.metadata.generation,
        previous: &previous,
        observations: &observations,
        round,
        now,
    });

    // 1. Scale up and create, in parallel across regions.
    let ups = decision
        .placements
        .iter()
        .filter(|p| p.touch && !p.scale_down);
    let mut wrote_members =
        futures::future::join_all(ups.map(|p| place_in(&ctx, &key, spec, p))).await;

    // 2. Publish the weights: the traffic sinks first, then status.
    let mut status = decision.status.clone();

    // The sinks, before status says the move is done.
    if spec.traffic.is_some() {
        let published = sinks::publish(
            &ctx.hub,
            &ctx.registry,
            &ctx.sinks,
            &app,
            &decision.weights,
            &decision.cleanup,
        )
        .await;
        let (ok, reason, message) = match published {
            Ok(written) => {
                for _ in 0..written {
                    ctx.metrics.wrote("hub", "sink");
                }
                (
                    true,
                    "Published",
                    "weights are in every traffic sink".to_string(),
                )
            }
            Err(message) => (false, "SinkWriteFailed", message),
        };
        let mut c =
            plan::conditions::Conditions::new(&previous.conditions, now, app.metadata.generation);
        c.set("TrafficPublished", ok, reason, message);
        c.merge_into(&mut status.conditions);
    }

    // Status is the last sink: the move is complete when it is written.
    if let Some(moved) = &decision.moved
        && let Some(record) = status.last_failover.as_mut()
    {
        record.completed_at = Some(Time(Timestamp::now()));
        ctx.metrics
            .failovers
            .get_or_create(&FailoverLabels {
                namespace: key.namespace.clone(),
                app: key.name.clone(),
                reason: moved.reason.clone(),
            })
            .inc();
    }

    // 3. Cleanup of regions removed from spec.
    if !decision.cleanup.is_empty() {
        let mut still = Vec::new();
        for region in &decision.cleanup {
            if remove_from(&ctx, &key, region).await.is_err() {
                still.push(region.clone());
            }
        }
        status.cleanup_pending = still;
    }

    if status != previous {
        write_status(&api, &key, &status).await?;
        ctx.metrics.wrote("hub", "status");
        ctx.remember_write(&key, previous.clone(), status.clone());
    }
    if decision.weights_changed {
        ctx.metrics
            .decision_latency
            .observe(started.elapsed().as_secs_f64());
    }

    // 4. Scale down only now that traffic has left (make-before-break).
    let downs = decision
        .placements
        .iter()
        .filter(|p| p.touch && p.scale_down);
    wrote_members
        .extend(futures::future::join_all(downs.map(|p| place_in(&ctx, &key, spec, p))).await);

    for event in &decision.events {
        publish_event(&ctx, &app, event.type_, &event.reason, &event.message).await;
    }
    record_metrics(&ctx, &key, &status);

    // A placement that hit a new conflict or refusal is judged right away.
    let changed_outcome = wrote_members
        .iter()
        .any(|r| matches!(r, Err(PlaceError::Conflict(_) | PlaceError::Refused(_))));
    let wait = if changed_outcome || !status.cleanup_pending.is_empty() {
        next_round.min(Duration::from_secs(2))
    } else {
        next_round
    };
    Ok(Action::requeue(wait.max(Duration::from_millis(100))))
}

async fn place_in(
    ctx: &Context,
    key: &AppKey,
    spec: &crate::api::MultiRegionAppSpec,
    p: &plan::Placement,
) -> Result<bool, PlaceError> {
    let Some(member) = ctx.registry.get(&p.region) else {
        return Err(PlaceError::Unreachable("no such Region".into()));
    };
    // A member that accepts connections but does not answer (an API server
    // still starting, a half-open link) must not hold the reconcile.
    let result = tokio::time::timeout(
        MEMBER_WRITE_TIMEOUT,
        placement::place(&member, key, spec, p),
    )
    .await
    .unwrap_or_else(|_| {
        Err(PlaceError::Unreachable(format!(
            "no answer within {MEMBER_WRITE_TIMEOUT:?}"
        )))
    });
    match &result {
        Ok(true) => ctx.metrics.wrote("member", "placement"),
        Ok(false) => {}
        Err(err) => {
            tracing::info!(app = %key.name, namespace = %key.namespace, region = %p.region, error = ?err, "placement not applied")
        }
    }
    result
}

/// Deletes the app's objects from one region. Done when the Region itself
/// no longer exists.
async fn remove_from(ctx: &Context, key: &AppKey, region: &str) -> Result<(), PlaceError> {
    let Some(member) = ctx.registry.get(region) else {
        return if ctx.registry.is_synced() {
            Ok(())
        } else {
            Err(PlaceError::Unreachable("regions not listed yet".into()))
        };
    };
    if let RegionState::Unreachable(why) = member.state() {
        return Err(PlaceError::Unreachable(why));
    }
    tokio::time::timeout(MEMBER_WRITE_TIMEOUT, placement::remove(&member, key))
        .await
        .unwrap_or_else(|_| {
            Err(PlaceError::Unreachable(format!(
                "no answer within {MEMBER_WRITE_TIMEOUT:?}"
            )))
        })
}

/// Collects what each spec region reports for this app.
async fn gather(ctx: &Context, app: &MultiRegionApp, round: bool) -> BTreeMap<String, Observation> {
    let key = key_of(app);
    let spec = &app.spec;
    let lag_annotation = spec
        .failover
        .replication
        .as_ref()
        .map(|r| r.lag_from.annotation.clone());
    let probes = spec.regions.iter().map(|region| {
        let key = key.clone();
        let lag_annotation = lag_annotation.clone();
        async move {
            let Some(member) = ctx.registry.get(&region.name) else {
                let state = if ctx.registry.is_synced() {
                    RegionState::NotFound
                } else {
                    RegionState::Unknown
                };
                return (
                    region.name.clone(),
                    Observation {
                        region: state,
                        ..Observation::unknown()
                    },
                );
            };
            let state = member.state();
            let region_spec = member.spec();
            let conflict = member
                .conflicts
                .lock()
                .ok()
                .and_then(|m| m.get(&key).cloned());
            let refused = member
                .refused
                .lock()
                .ok()
                .and_then(|m| m.get(&key).cloned());
            let workload = if let Some(msg) = conflict {
                WorkloadState::Conflict(msg)
            } else if let Some(msg) = refused {
                WorkloadState::Refused(msg)
            } else if !member.listed() {
                WorkloadState::Unknown
            } else {
                let placed = member
                    .deployments
                    .as_ref()
                    .and_then(|s| s.get(&ObjectRef::new(&key.name).within(&key.namespace)))
                    .filter(|d| manifest::owned_by(Some(d.labels()), &key));
                match placed {
                    Some(d) => WorkloadState::Placed {
                        replicas: d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
                        ready: d
                            .status
                            .as_ref()
                            .and_then(|s| s.ready_replicas)
                            .unwrap_or(0),
                        lag_seconds: lag_annotation
                            .as_ref()
                            .and_then(|a| d.annotations().get(a))
                            .and_then(|v| v.trim().parse::<f64>().ok()),
                        rolling_out: manifest::rolling_out(&d),
                    },
                    None => WorkloadState::Missing,
                }
            };
            let http = match (&spec.health_check.http, round, &state) {
                (Some(check), true, RegionState::Reachable) => {
                    let endpoint = region.endpoint.clone().or(region_spec.endpoint.clone());
                    Some(
                        http_probe(
                            ctx,
                            endpoint.as_deref(),
                            &check.path,
                            spec.health_check.timeout_seconds,
                        )
                        .await,
                    )
                }
                _ => None,
            };
            (
                region.name.clone(),
                Observation {
                    region: state,
                    cordoned: region_spec.cordoned,
                    workload,
                    http,
                },
            )
        }
    });
    futures::future::join_all(probes)
        .await
        .into_iter()
        .collect()
}

async fn http_probe(
    ctx: &Context,
    endpoint: Option<&str>,
    path: &str,
    timeout_seconds: i32,
) -> std::result::Result<(), String> {
    let Some(endpoint) = endpoint else {
        return Err(
            "no endpoint: set spec.regions[].endpoint or the Region's spec.endpoint".into(),
        );
    };
    let url = format!("{}{}", endpoint.trim_end_matches('/'), path);
    let response = ctx
        .http
        .get(&url)
        .timeout(Duration::from_secs(timeout_seconds.max(1) as u64))
        .send()
        .await
        .map_err(|e| format!("GET {url}: {e}"))?;
    let code = response.status();
    if code.is_success() || code.is_redirection() {
        Ok(())
    } else {
        Err(format!("GET {url}: {code}"))
    }
}

async fn write_status(
    api: &Api<MultiRegionApp>,
    key: &AppKey,
    status: &MultiRegionAppStatus,
) -> Result<()> {
    let body = json!({
        "apiVersion": "multiregion.io/v1alpha1",
        "kind": "MultiRegionApp",
        "status": status,
    });
    api.patch_status(
        &key.name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&body),
    )
    .await
    .map_err(Error::Hub)?;
    Ok(())
}

/// Records a Kubernetes Event on the app. Events are created directly (not
/// through kube's Recorder, which folds events of the same reason into one
/// series and keeps the first message): the plan only emits an event when
/// something changed, so each one is news.
async fn publish_event(
    ctx: &Context,
    app: &MultiRegionApp,
    type_: EventType,
    reason: &str,
    message: &str,
) {
    let now = Timestamp::now();
    let namespace = app.namespace().unwrap_or_default();
    let event = KubeEvent {
        metadata: kube::api::ObjectMeta {
            generate_name: Some(format!("{}-", app.name_any())),
            namespace: Some(namespace.clone()),
            ..Default::default()
        },
        event_time: Some(MicroTime(now)),
        type_: Some(
            match type_ {
                EventType::Normal => "Normal",
                EventType::Warning => "Warning",
            }
            .to_string(),
        ),
        reason: Some(reason.to_string()),
        note: Some(message.chars().take(1000).collect()),
        action: Some("Reconcile".into()),
        regarding: Some(app.object_ref(&())),
        reporting_controller: Some("multiregion.io/operator".into()),
        reporting_instance: Some(ctx.identity.clone()),
        ..Default::default()
    };
    let api: Api<KubeEvent> = Api::namespaced(ctx.hub.clone(), &namespace);
    ctx.metrics.wrote("hub", "event");
    if let Err(err) = api.create(&Default::default(), &event).await {
        tracing::warn!(error = %err, reason, "cannot record Event");
    }
    tracing::info!(app = %app.name_any(), namespace = %namespace, reason, message, "event");
}

fn record_metrics(ctx: &Context, key: &AppKey, status: &MultiRegionAppStatus) {
    for region in &status.regions {
        let labels = AppRegionLabels {
            namespace: key.namespace.clone(),
            app: key.name.clone(),
            region: region.name.clone(),
        };
        ctx.metrics
            .app_region_healthy
            .get_or_create(&labels)
            .set(i64::from(region.health == "Healthy"));
        ctx.metrics
            .traffic_weight
            .get_or_create(&labels)
            .set(i64::from(region.weight));
    }
}

/// The finalizer: removes the app's objects from every region it may have
/// placed them in. Holds until done, or until a Region no longer exists.
async fn cleanup(app: Arc<MultiRegionApp>, ctx: Arc<Context>) -> Result<Action> {
    let key = key_of(&app);
    let status = app.status.clone().unwrap_or_default();
    let mut regions: Vec<String> = app
        .spec
        .regions
        .iter()
        .map(|r| r.name.clone())
        .chain(status.regions.iter().map(|r| r.name.clone()))
        .chain(status.cleanup_pending.iter().cloned())
        .collect();
    regions.sort();
    regions.dedup();
    let mut pending = Vec::new();
    for region in &regions {
        if let Err(err) = remove_from(&ctx, &key, region).await {
            tracing::info!(app = %key.name, region = %region, error = ?err, "cleanup waits for region");
            pending.push(region.clone());
        }
    }
    if pending.is_empty() {
        if let Ok(mut rounds) = ctx.rounds.lock() {
            rounds.remove(&key);
        }
        if let Ok(mut written) = ctx.written.lock() {
            written.remove(&key);
        }
        return Ok(Action::await_change());
    }
    if status.cleanup_pending != pending {
        let api: Api<MultiRegionApp> = Api::namespaced(ctx.hub.clone(), &key.namespace);
        let mut status = status.clone();
        status.cleanup_pending = pending.clone();
        let _ = write_status(&api, &key, &status).await;
    }
    Err(Error::CleanupPending(pending.join(", ")))
}
