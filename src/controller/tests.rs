//! Whole reconciles against a mocked API server: the requests a failover
//! and a planned move make, in order. Hub and members share one mocked
//! client, so the order of every write is observable.

use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{Method, Request, Response};
use k8s_openapi::api::apps::v1::{Deployment, DeploymentStatus};
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use kube::Client;
use kube::api::PartialObjectMeta;
use kube::client::Body;
use kube::runtime::reflector::{self, store::Writer};
use kube::runtime::watcher::Event as WatchEvent;
use serde_json::{Value, json};

use super::context::Parts;
use super::leader::Fence;
use super::sinks::SinkCaches;
use super::{Context, reconcile};
use crate::api::{MultiRegionApp, MultiRegionAppStatus, RegionSpec};
use crate::metrics::Metrics;
use crate::plan::health::Counters;
use crate::plan::manifest::{self, AppKey};
use crate::plan::{Placement, Role};
use crate::regions::http_check::{self, HttpChecks};
use crate::regions::{Member, Placed, ProbeState, Registry};
use kube::api::DynamicObject;

type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

/// One request the reconcile sent: method, path and the region it was for
/// (from the body's region label), when it names one.
#[derive(Debug, PartialEq, Eq)]
struct Sent {
    method: Method,
    path: String,
    region: Option<String>,
}

fn sent(method: Method, path: &str, region: Option<&str>) -> Sent {
    Sent {
        method,
        path: path.to_string(),
        region: region.map(str::to_string),
    }
}

const DEPLOYMENT: &str = "/apis/apps/v1/namespaces/shop/deployments/web";
const STATUS: &str = "/apis/multiregion.io/v1alpha1/namespaces/shop/multiregionapps/web/status";
const ROUTES: &str = "/apis/gateway.networking.k8s.io/v1/namespaces/shop/httproutes";
const ROUTE: &str = "/apis/gateway.networking.k8s.io/v1/namespaces/shop/httproutes/web";
const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/shop/events";

const BACKENDS: &str = "/api/v1/namespaces/shop/services";
/// The app's role ConfigMap, placed with the Deployment.
const ROLE_MAPS: &str = "/api/v1/namespaces/shop/configmaps";

fn app(status: Value) -> MultiRegionApp {
    serde_json::from_value(json!({
        "apiVersion": "multiregion.io/v1alpha1",
        "kind": "MultiRegionApp",
        "metadata": {"name": "web", "namespace": "shop", "uid": "u-1", "generation": 1},
        "spec": {
            "strategy": "ActivePassive",
            "regions": [
                {"name": "us-east", "endpoint": "http://us.example.com"},
                {"name": "eu-west", "endpoint": "http://eu.example.com"}
            ],
            "workload": {"replicas": 3, "template": {"spec": {"containers": [{"name": "c", "image": "nginx"}]}}},
            "healthCheck": {"intervalSeconds": 1, "failureThreshold": 3, "successThreshold": 1, "startupSeconds": 0},
            "failover": {"failbackHoldSeconds": 0},
            "traffic": {"httpRoute": {"name": "web", "parentRefs": [{"name": "gw"}]}}
        },
        "status": status
    }))
    .expect("a valid app")
}

fn key() -> AppKey {
    AppKey {
        hub: String::new(),
        namespace: "shop".into(),
        name: "web".into(),
    }
}

/// A region's line in a previous status.
fn region_status(name: &str, role: &str, weight: i32, replicas: i32, failures: i32) -> Value {
    json!({
        "name": name, "role": role, "health": "Healthy", "weight": weight,
        "desiredReplicas": replicas, "readyReplicas": replicas,
        "consecutiveFailures": failures, "consecutiveSuccesses": 1,
        "lastTransitionTime": "2026-01-01T00:00:00Z"
    })
}

fn active_status(active: &str, weights: &str, regions: Vec<Value>) -> Value {
    json!({"activeRegion": active, "weights": weights, "regions": regions, "conditions": []})
}

/// A member whose cache holds the operator's Deployment as it would place
/// it now, with every replica ready.
struct TestMember {
    deployments: Writer<Deployment>,
}

impl TestMember {
    fn add(
        registry: &Registry,
        client: &Client,
        name: &str,
        reachable: bool,
        role: Role,
        replicas: i32,
    ) -> Self {
        let (deployment_store, deployments) = reflector::store::<Deployment>();
        let (service_store, mut services) = reflector::store::<PartialObjectMeta<Service>>();
        services.apply_watcher_event(&WatchEvent::InitDone);
        let probe = ProbeState {
            last_ok: Some(reachable),
            troubled: None,
            last_error: if reachable {
                String::new()
            } else {
                "connection refused".into()
            },
            counters: Counters::UNKNOWN,
            version: None,
        };
        let (config_maps, mut config_map_writer) =
            reflector::store::<PartialObjectMeta<ConfigMap>>();
        config_map_writer.apply_watcher_event(&WatchEvent::InitDone);
        let (secrets, mut secret_writer) = reflector::store::<PartialObjectMeta<Secret>>();
        secret_writer.apply_watcher_event(&WatchEvent::InitDone);
        let placed = Placed {
            deployments: deployment_store,
            heard: crate::regions::Heard::new(),
            services: service_store,
            config_maps,
            config_maps_by_app: Default::default(),
            secrets: crate::regions::PerNamespace::fixed(secrets),
        };
        let spec = RegionSpec {
            allowed_namespaces: Some(Default::default()),
            app_endpoints: Some(crate::api::AppEndpoints {
                domains: vec!["example.com".into()],
                ..Default::default()
            }),
            ..RegionSpec::default()
        };
        let member = Member::connected(name, spec, client.clone(), "test".into(), probe, placed);
        member.namespace_exists("shop");
        registry.insert_for_test(member);
        let mut this = TestMember { deployments };
        let placed = WatchEvent::InitApply(placed_deployment(name, role, replicas));
        for event in [WatchEvent::Init, placed, WatchEvent::InitDone] {
            this.deployments.apply_watcher_event(&event);
        }
        this
    }

    /// The cached Deployment becomes what the operator places for `role`
    /// and `replicas`, all ready.
    fn set(&mut self, region: &str, role: Role, replicas: i32) {
        let deployment = placed_deployment(region, role, replicas);
        self.deployments
            .apply_watcher_event(&WatchEvent::Apply(deployment));
    }
}

/// The Deployment the operator places in `region` for `role` and
/// `replicas`, with every replica ready.
fn placed_deployment(region: &str, role: Role, replicas: i32) -> Deployment {
    {
        let template = manifest::validate_template(&app(json!({})).spec).unwrap();
        let placement = Placement {
            region: region.into(),
            replicas,
            role,
            touch: true,
            scale_down: false,
            self_fence: None,
        };
        let mut deployment = manifest::deployment(&key(), &template, &placement);
        deployment.metadata.generation = Some(1);
        deployment.status = Some(DeploymentStatus {
            observed_generation: Some(1),
            replicas: Some(replicas),
            ready_replicas: Some(replicas),
            ..DeploymentStatus::default()
        });
        deployment
    }
}

/// The mocked API server, and the sink caches it feeds as a watch would.
struct Server {
    handle: Handle,
    sinks: Vec<Writer<DynamicObject>>,
}

impl Server {
    /// A sink object written: the watch would deliver it.
    fn published(&mut self, path: &str, body: &Value) {
        let kind = match path {
            p if p.contains("/services") => 0,
            p if p.contains("/endpointslices") => 1,
            p if p.contains("/httproutes") => 2,
            p if p.contains("/dnsendpoints") => 3,
            _ => return,
        };
        if let Ok(object) = serde_json::from_value::<DynamicObject>(body.clone()) {
            self.sinks[kind].apply_watcher_event(&WatchEvent::Apply(object));
        }
    }
}

/// A context whose hub and members are one mocked client.
fn context() -> (Arc<Context>, Client, Server) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "default");
    let (triggers, _) = tokio::sync::mpsc::unbounded_channel();
    let metrics = Arc::new(Metrics::default());
    let registry = Registry::new(
        crate::deadline::Clients::single(client.clone()),
        triggers.clone(),
        metrics.clone(),
        Fence::open(),
    );
    registry.mark_synced();
    let (sinks, writers) = SinkCaches::detached();
    let parts = Parts {
        hub: client.clone(),
        hub_id: String::new(),
        registry,
        checks: HttpChecks::new(http_check::client().unwrap(), triggers, Arc::default()),
        sinks,
        hub_config: super::hub_config::HubConfig::none(),
        tenants: super::tenants::Tenants::none("multiregion-system"),
        apps: reflector::store::<MultiRegionApp>().0,
        metrics,
        fence: Fence::open(),
        observers: reflector::store().0,
    };
    let server = Server {
        handle,
        sinks: writers,
    };
    (Arc::new(Context::new(parts, "test")), client, server)
}

/// Runs one reconcile of `app`, answering every request: writes echo
/// their body (a status write answers with the app). Returns the requests
/// in order, and the status written, if any.
async fn reconcile_once(
    ctx: &Arc<Context>,
    server: &mut Server,
    app: MultiRegionApp,
) -> (Vec<Sent>, Option<MultiRegionAppStatus>) {
    let (seen, written, result) = reconcile_answering(ctx, server, app, 200).await;
    result.expect("the reconcile succeeds");
    (seen, written)
}

/// Like `reconcile_once`, with status writes answered `status_code`;
/// also returns how the reconcile ended.
async fn reconcile_answering(
    ctx: &Arc<Context>,
    server: &mut Server,
    app: MultiRegionApp,
    status_code: u16,
) -> (
    Vec<Sent>,
    Option<MultiRegionAppStatus>,
    crate::error::Result<kube::runtime::controller::Action>,
) {
    let running = tokio::spawn(reconcile::apply(
        Arc::new(app.clone()),
        ctx.clone(),
        Instant::now(),
    ));
    let mut seen = Vec::new();
    let mut written = None;
    loop {
        let next =
            tokio::time::timeout(Duration::from_millis(500), server.handle.next_request()).await;
        let Ok(Some((request, respond))) = next else {
            break;
        };
        let method = request.method().clone();
        let path = request.uri().path().to_string();
        let bytes = request.into_body().collect_bytes().await.unwrap();
        let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        let region = body["metadata"]["labels"]["multiregion.io/region"]
            .as_str()
            .map(str::to_string);
        server.published(&path, &body);
        let refused = path == STATUS && status_code != 200;
        let answer = if refused {
            json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": status_code,
                   "reason": "Forbidden", "message": "status writes are refused"})
        } else if path == STATUS {
            // A JSON patch whose last operation adds the whole status.
            let add = body.as_array().and_then(|ops| ops.last()).unwrap();
            assert_eq!(
                (&add["op"], &add["path"]),
                (&json!("add"), &json!("/status"))
            );
            let status: MultiRegionAppStatus =
                serde_json::from_value(add["value"].clone()).unwrap();
            written = Some(status);
            serde_json::to_value(&app).unwrap()
        } else {
            body
        };
        let code = if refused { status_code } else { 200 };
        respond.send_response(
            Response::builder()
                .status(code)
                .body(Body::from(serde_json::to_vec(&answer).unwrap()))
                .unwrap(),
        );
        seen.push(Sent {
            method,
            path,
            region,
        });
    }
    (seen, written, running.await.unwrap())
}

/// The requests other than Events, and how many Events were created.
fn split_events(seen: Vec<Sent>) -> (Vec<Sent>, usize) {
    let (events, writes): (Vec<Sent>, Vec<Sent>) = seen.into_iter().partition(|s| s.path == EVENTS);
    (writes, events.len())
}

/// us-east active but unreachable, eu-west a ready standby: the status
/// before the failover.
fn us_east_down(ctx: &Context, client: &Client) -> ([TestMember; 2], Value) {
    let us = TestMember::add(&ctx.registry, client, "us-east", false, Role::Active, 3);
    let eu = TestMember::add(&ctx.registry, client, "eu-west", true, Role::Standby, 1);
    let previous = active_status(
        "us-east",
        "us-east=100 eu-west=0",
        vec![
            region_status("us-east", "Active", 100, 3, 2),
            region_status("eu-west", "Standby", 0, 1, 0),
        ],
    );
    ([us, eu], previous)
}

#[tokio::test]
async fn a_failover_scales_the_standby_up_records_the_move_then_publishes_then_writes_status() {
    let (ctx, client, mut server) = context();
    let (_members, previous) = us_east_down(&ctx, &client);

    let (seen, status) = reconcile_once(&ctx, &mut server, app(previous)).await;

    let (writes, events) = split_events(seen);
    assert_eq!(
        writes,
        [
            sent(Method::PATCH, DEPLOYMENT, Some("eu-west")),
            sent(Method::POST, ROLE_MAPS, Some("eu-west")),
            sent(Method::PATCH, STATUS, None),
            sent(Method::POST, BACKENDS, Some("us-east")),
            sent(Method::POST, BACKENDS, Some("eu-west")),
            sent(Method::POST, ROUTES, Some("all")),
            sent(Method::PATCH, STATUS, None),
        ],
        "the standby scales up first (its role ConfigMap says active), the move is recorded, then every sink, then the settled status; nothing is sent to the unreachable region"
    );
    assert!(
        events >= 3,
        "RegionUnhealthy, WeightsChanged and FailedOver at least"
    );
    let status = status.unwrap();
    assert_eq!(status.weights.as_deref(), Some("us-east=0 eu-west=100"));
    assert!(status.last_failover.unwrap().completed_at.is_some());
}

#[tokio::test]
async fn a_refused_status_write_publishes_no_weights() {
    let (ctx, client, mut server) = context();
    let (_members, previous) = us_east_down(&ctx, &client);

    let (seen, _, result) = reconcile_answering(&ctx, &mut server, app(previous), 403).await;

    assert!(
        result.is_err(),
        "the refused write is the reconcile's error"
    );
    let (writes, _) = split_events(seen);
    assert_eq!(
        writes,
        [
            sent(Method::PATCH, DEPLOYMENT, Some("eu-west")),
            sent(Method::POST, ROLE_MAPS, Some("eu-west")),
            sent(Method::PATCH, STATUS, None),
        ],
        "no sink gets weights the status does not hold"
    );
}

#[tokio::test]
async fn a_planned_move_publishes_only_when_the_target_is_ready_and_scales_down_last() {
    let (ctx, client, mut server) = context();
    let mut us = TestMember::add(&ctx.registry, &client, "us-east", true, Role::Standby, 1);
    let _eu = TestMember::add(&ctx.registry, &client, "eu-west", true, Role::Active, 3);
    let previous = active_status(
        "eu-west",
        "us-east=0 eu-west=100",
        vec![
            region_status("us-east", "Standby", 0, 1, 0),
            region_status("eu-west", "Active", 100, 3, 0),
        ],
    );

    // The failback starts: us-east scales up, weights stay.
    let (seen, status) = reconcile_once(&ctx, &mut server, app(previous)).await;
    let (writes, _) = split_events(seen);
    assert_eq!(writes[0], sent(Method::PATCH, DEPLOYMENT, Some("us-east")));
    assert_eq!(writes.last(), Some(&sent(Method::PATCH, STATUS, None)));
    let pending = status.expect("a status with the pending move");
    assert_eq!(pending.weights.as_deref(), Some("us-east=0 eu-west=100"));
    assert_eq!(
        pending.pending_move.as_ref().map(|p| p.to.as_str()),
        Some("us-east")
    );

    // us-east is ready at full size: weights move, then eu-west scales down.
    us.set("us-east", Role::Standby, 3);
    let next = app(serde_json::to_value(&pending).unwrap());
    let (seen, status) = reconcile_once(&ctx, &mut server, next).await;
    let (writes, events) = split_events(seen);
    assert_eq!(
        writes,
        [
            sent(Method::PATCH, DEPLOYMENT, Some("us-east")),
            sent(Method::POST, ROLE_MAPS, Some("us-east")),
            sent(Method::PATCH, STATUS, None),
            sent(Method::PATCH, ROUTE, Some("all")),
            sent(Method::PATCH, STATUS, None),
            sent(Method::PATCH, DEPLOYMENT, Some("eu-west")),
            sent(Method::POST, ROLE_MAPS, Some("eu-west")),
        ],
        "make-before-break: the old active scales down only after the weights are written"
    );
    assert!(events >= 2, "WeightsChanged and PlannedMove at least");
    assert_eq!(
        status.unwrap().weights.as_deref(),
        Some("us-east=100 eu-west=0")
    );
}

/// Whether a round is due; a due round is remembered at once, as after a
/// successful status write.
fn take_round(ctx: &Context, interval: Duration, evidence: &str) -> bool {
    let (round, _) = ctx.round_due(&key(), interval, evidence);
    if let Some(round) = &round {
        ctx.round_recorded(&key(), round);
    }
    round.is_some()
}

#[tokio::test]
async fn a_round_whose_status_was_not_written_is_taken_again() {
    let (ctx, _, _server) = context();
    let interval = Duration::from_secs(60);
    let (first, _) = ctx.round_due(&key(), interval, "us-east:x+");
    assert!(first.is_some(), "the first round");
    // Its status write failed: nothing remembered.
    let (again, _) = ctx.round_due(&key(), interval, "us-east:x+");
    assert!(again.is_some(), "the round is taken again, not lost");
    ctx.round_recorded(&key(), &again.unwrap());
    assert!(
        ctx.round_due(&key(), interval, "us-east:x+").0.is_none(),
        "written: not due for an interval"
    );
}

#[tokio::test]
async fn a_change_of_evidence_counts_one_early_round_per_interval() {
    let (ctx, _, _server) = context();
    let interval = Duration::from_secs(1);
    assert!(take_round(&ctx, interval, "us-east:r+"), "the first round");
    assert!(!take_round(&ctx, interval, "us-east:r+"), "not due yet");
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert!(
        take_round(&ctx, interval, "us-east:x+"),
        "the probe flipped: at once"
    );
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert!(
        !take_round(&ctx, interval, "us-east:x-"),
        "the HTTP check flipped too, within the same interval: no second early round"
    );
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(
        take_round(&ctx, interval, "us-east:x-"),
        "the interval after the early round"
    );
}

#[tokio::test]
async fn a_held_first_status_is_the_next_decisions_basis_until_written_or_the_app_changes() {
    let (ctx, _, _server) = context();
    let never = MultiRegionAppStatus::default();
    let mut held = never.clone();
    held.weights = Some("us-east=100 eu-west=0".into());
    held.failovers_in_last_hour = 1;
    assert_eq!(ctx.basis(&key(), Some("5"), &never), never, "nothing held");
    ctx.hold(&key(), Some("5"), held.clone());
    let basis = ctx.basis(&key(), Some("5"), &never);
    assert_eq!(basis.failovers_in_last_hour, 1, "what it holds counts");
    assert_eq!(basis.weights, None, "but its weights were never written");
    assert_eq!(
        ctx.basis(&key(), Some("6"), &never),
        never,
        "the app changed"
    );
    assert_eq!(
        ctx.basis(&key(), Some("5"), &never),
        never,
        "and it was dropped"
    );
    ctx.hold(&key(), Some("5"), held.clone());
    ctx.remember_write(&key(), Some("5".into()), held.clone(), Some("7".into()));
    assert_eq!(
        ctx.basis(&key(), Some("5"), &never),
        never,
        "written: not held"
    );
    ctx.hold(&key(), Some("7"), held.clone());
    ctx.forget(&key());
    assert_eq!(ctx.basis(&key(), Some("7"), &never), never, "a deleted app");
}

/// Every request a reconcile of `app` through `reconcile_app` (the
/// finalizer helper first) sends, answered 200 with the body sent.
async fn requests_of_full_reconcile(
    ctx: &Arc<Context>,
    server: &mut Server,
    app: MultiRegionApp,
) -> Vec<(Method, String)> {
    let running = tokio::spawn(reconcile::reconcile_app(Arc::new(app.clone()), ctx.clone()));
    let mut seen = Vec::new();
    loop {
        let next =
            tokio::time::timeout(Duration::from_millis(300), server.handle.next_request()).await;
        let Ok(Some((request, respond))) = next else {
            break;
        };
        seen.push((request.method().clone(), request.uri().path().to_string()));
        let mut answer = serde_json::to_value(&app).unwrap();
        answer["metadata"]["finalizers"] = json!([crate::api::FINALIZER]);
        respond.send_response(
            Response::builder()
                .status(200)
                .body(Body::from(serde_json::to_vec(&answer).unwrap()))
                .unwrap(),
        );
    }
    running.await.unwrap().expect("the reconcile succeeds");
    seen
}

#[tokio::test]
async fn a_finalizer_added_is_not_added_again_from_a_copy_the_cache_has_not_updated() {
    let (ctx, _client, mut server) = context();
    let new_app = app(json!(null));
    let first = requests_of_full_reconcile(&ctx, &mut server, new_app.clone()).await;
    assert_eq!(
        first,
        [(
            Method::PATCH,
            "/apis/multiregion.io/v1alpha1/namespaces/shop/multiregionapps/web".to_string()
        )],
        "the first reconcile adds the finalizer"
    );
    // Triggered again (a member watch) before the app's watch delivered
    // the patched app: the helper would add the finalizer again, and the
    // hub refuse it (422).
    let again = requests_of_full_reconcile(&ctx, &mut server, new_app.clone()).await;
    assert!(again.is_empty(), "nothing is sent: {again:?}");
    // Once the cache holds it, the app is reconciled as usual.
    let mut finalized = new_app;
    finalized.metadata.finalizers = Some(vec![crate::api::FINALIZER.to_string()]);
    assert!(!ctx.finalizer_not_seen_yet(&finalized, crate::api::FINALIZER));
}
