//! End-to-end: the operator as a process against a hub and three regions
//! running as real control planes (localregions).

mod common;
#[path = "operator/evidence.rs"]
mod evidence;
#[path = "operator/overrides.rs"]
mod overrides;
#[path = "operator/propagation.rs"]
mod propagation;
#[path = "operator/resources.rs"]
mod resources;
#[path = "operator/tenancy.rs"]
mod tenancy;
#[path = "operator/validation.rs"]
mod validation;

use std::time::{Duration, Instant};

use common::operator::{
    HealOnPanic, REGIONS, app_spec, apply_app, condition, delete_app, env, events,
    handmade_deployment, placed, register_region, serial, status, wait_weights, weights,
};
use common::wait_for;
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, Patch, PatchParams};
use multiregion::api::{Health, Reason, Region, RegionPhase, Role};
use serde_json::json;

#[tokio::test]
async fn active_active_drops_an_unreachable_region_and_takes_it_back() {
    let _serial = serial().await;
    let _heal = HealOnPanic;
    let env = env();
    let hub = env.client("hub").await;
    let ns = "aa";
    apply_app(
        &hub,
        ns,
        "web",
        app_spec("ActiveActive", &REGIONS, json!({})),
    )
    .await;
    wait_weights(
        &hub,
        ns,
        "web",
        "us-east=34 eu-west=33 ap-south=33",
        "all three regions to carry traffic",
        Duration::from_secs(180),
    )
    .await;
    for region in REGIONS {
        let client = env.client(region).await;
        assert_eq!(
            placed(&client, ns, "web").await,
            Some((3, 3)),
            "full replicas in {region}"
        );
    }

    env.regions.lock().await.stop_apiserver("eu-west").unwrap();
    let stopped = Instant::now();
    // intervalSeconds * failureThreshold + 2 s
    wait_weights(
        &hub,
        ns,
        "web",
        "us-east=50 eu-west=0 ap-south=50",
        "eu-west's weight to go to 0",
        Duration::from_secs(3 + 2),
    )
    .await;
    eprintln!(
        "eu-west dropped {:?} after its API server stopped",
        stopped.elapsed()
    );
    let s = status(&hub, ns, "web").await.unwrap();
    let eu = s.regions.iter().find(|r| r.name == "eu-west").unwrap();
    assert_eq!(
        (eu.health, eu.reason.clone()),
        (Health::Unhealthy, Some(Reason::RegionUnreachable))
    );
    assert_eq!(condition(&s, "Degraded").unwrap().0, "True");
    assert_eq!(condition(&s, "Ready").unwrap().0, "True");

    env.regions
        .lock()
        .await
        .start_apiserver("eu-west")
        .await
        .unwrap();
    wait_weights(
        &hub,
        ns,
        "web",
        "us-east=34 eu-west=33 ap-south=33",
        "eu-west's weight to come back",
        Duration::from_secs(20),
    )
    .await;
    let s = status(&hub, ns, "web").await.unwrap();
    assert_eq!(condition(&s, "Degraded").unwrap().0, "False");
    delete_app(&hub, ns, "web").await;
}

#[tokio::test]
async fn active_passive_fails_over_and_fences_the_old_active() {
    let _serial = serial().await;
    let _heal = HealOnPanic;
    let env = env();
    let hub = env.client("hub").await;
    let ns = "ap";
    apply_app(
        &hub,
        ns,
        "web",
        app_spec("ActivePassive", &["us-east", "eu-west"], json!({})),
    )
    .await;
    wait_weights(
        &hub,
        ns,
        "web",
        "us-east=100 eu-west=0",
        "us-east to be active",
        Duration::from_secs(180),
    )
    .await;
    let eu = env.client("eu-west").await;
    let us = env.client("us-east").await;
    wait_for(
        "a warm standby of 1 in eu-west",
        Duration::from_secs(180),
        || async { (placed(&eu, ns, "web").await? == (1, 1)).then_some(()) },
    )
    .await;

    env.regions.lock().await.stop_apiserver("us-east").unwrap();
    wait_weights(
        &hub,
        ns,
        "web",
        "us-east=0 eu-west=100",
        "eu-west to take all traffic",
        Duration::from_secs(5),
    )
    .await;
    wait_for(
        "eu-west to run full replicas",
        Duration::from_secs(180),
        || async { (placed(&eu, ns, "web").await? == (3, 3)).then_some(()) },
    )
    .await;
    let s = status(&hub, ns, "web").await.unwrap();
    assert_eq!(s.active_region.as_deref(), Some("eu-west"));
    let f = s.last_failover.clone().unwrap();
    assert_eq!(
        (f.from.as_str(), f.to.as_str(), f.reason.as_str()),
        ("us-east", "eu-west", "RegionUnreachable")
    );
    assert!(f.completed_at.is_some());
    assert_eq!(condition(&s, "FailedOver").unwrap().0, "True");

    env.regions
        .lock()
        .await
        .start_apiserver("us-east")
        .await
        .unwrap();
    wait_for(
        "us-east fenced: standby replicas",
        Duration::from_secs(180),
        || async { (placed(&us, ns, "web").await?.0 == 1).then_some(()) },
    )
    .await;
    let d: Deployment = Api::namespaced(us.clone(), ns).get("web").await.unwrap();
    assert_eq!(
        d.labels().get("multiregion.io/role").map(String::as_str),
        Some("standby")
    );
    let s = status(&hub, ns, "web").await.unwrap();
    let us_status = s.regions.iter().find(|r| r.name == "us-east").unwrap();
    assert_eq!((us_status.role, us_status.weight), (Role::Standby, 0));
    assert_eq!(s.weights.as_deref(), Some("us-east=0 eu-west=100"));
    delete_app(&hub, ns, "web").await;
}

use kube::ResourceExt;

#[tokio::test]
async fn pods_going_not_ready_fail_the_app_over_with_the_api_still_up() {
    let _serial = serial().await;
    let _heal = HealOnPanic;
    let env = env();
    let hub = env.client("hub").await;
    let ns = "nodes";
    apply_app(
        &hub,
        ns,
        "web",
        app_spec("ActivePassive", &["ap-south", "us-east"], json!({})),
    )
    .await;
    wait_weights(
        &hub,
        ns,
        "web",
        "ap-south=100 us-east=0",
        "ap-south to be active",
        Duration::from_secs(180),
    )
    .await;
    env.regions.lock().await.stop_nodes("ap-south").unwrap();
    // The node monitor grace period (10 s) marks the pods NotReady, then
    // three failed rounds move the traffic.
    wait_weights(
        &hub,
        ns,
        "web",
        "ap-south=0 us-east=100",
        "traffic to leave ap-south",
        Duration::from_secs(180),
    )
    .await;
    let s = status(&hub, ns, "web").await.unwrap();
    let ap = s.regions.iter().find(|r| r.name == "ap-south").unwrap();
    assert_eq!(ap.reason, Some(Reason::NotEnoughReadyReplicas));
    env.regions
        .lock()
        .await
        .start_nodes("ap-south")
        .await
        .unwrap();
    delete_app(&hub, ns, "web").await;
}

#[tokio::test]
async fn an_operator_killed_mid_failover_is_finished_by_the_next_one_counted_once() {
    let _serial = serial().await;
    let _heal = HealOnPanic;
    let env = env();
    let hub = env.client("hub").await;
    let ns = "crash";
    let spec = app_spec(
        "ActivePassive",
        &["us-east", "ap-south"],
        json!({"healthCheck": {"intervalSeconds": 2, "failureThreshold": 4}}),
    );
    apply_app(&hub, ns, "web", spec).await;
    wait_weights(
        &hub,
        ns,
        "web",
        "us-east=100 ap-south=0",
        "us-east to be active",
        Duration::from_secs(180),
    )
    .await;
    env.regions.lock().await.stop_apiserver("us-east").unwrap();
    wait_for(
        "the failover to be under way (2 failed rounds)",
        Duration::from_secs(20),
        || async {
            let s = status(&hub, ns, "web").await?;
            let us = s.regions.iter().find(|r| r.name == "us-east")?;
            (us.consecutive_failures >= 2).then_some(())
        },
    )
    .await;
    env.kill_operator();
    let s = status(&hub, ns, "web").await.unwrap();
    assert_eq!(
        s.weights.as_deref(),
        Some("us-east=100 ap-south=0"),
        "not moved yet when killed"
    );
    env.start_operator().await;
    wait_weights(
        &hub,
        ns,
        "web",
        "us-east=0 ap-south=100",
        "the new operator to finish the failover",
        Duration::from_secs(180),
    )
    .await;
    let ap = env.client("ap-south").await;
    wait_for(
        "ap-south at full replicas",
        Duration::from_secs(180),
        || async { (placed(&ap, ns, "web").await? == (3, 3)).then_some(()) },
    )
    .await;
    // A few more rounds: no extra move happens.
    let settled = status(&hub, ns, "web").await.unwrap();
    wait_for("three more rounds", Duration::from_secs(20), || async {
        let s = status(&hub, ns, "web").await?;
        let us = s.regions.iter().find(|r| r.name == "us-east")?;
        (us.consecutive_failures >= 4).then_some(())
    })
    .await;
    let s = status(&hub, ns, "web").await.unwrap();
    assert_eq!(s.failovers_in_last_hour, 1, "counted once");
    assert_eq!(s.last_failover, settled.last_failover);
    assert_eq!(
        events(&hub, ns, "FailedOver").await.len(),
        1,
        "one FailedOver event"
    );
    env.regions
        .lock()
        .await
        .start_apiserver("us-east")
        .await
        .unwrap();
    delete_app(&hub, ns, "web").await;
}

#[tokio::test]
async fn bad_regions_get_clear_conditions_and_apps_keep_working_elsewhere() {
    let _serial = serial().await;
    let _heal = HealOnPanic;
    let env = env();
    let hub = env.client("hub").await;
    let regions: Api<Region> = Api::all(hub.clone());
    let good = std::fs::read_to_string(env.kubeconfig("us-east")).unwrap();

    // A Secret that does not exist.
    regions
        .patch(
            "no-secret",
            &PatchParams::apply("test").force(),
            &Patch::Apply(json!({
                "apiVersion": "multiregion.io/v1alpha1", "kind": "Region", "metadata": {"name": "no-secret"},
                "spec": {"kubeconfigSecretRef": {"namespace": "multiregion-system", "name": "absent"}, "allowedNamespaces": {}}
            })),
        )
        .await
        .unwrap();
    // Garbage in the Secret.
    register_region(&hub, "garbage", "this: is: not: a kubeconfig: [", json!({})).await;
    // A context the kubeconfig does not have.
    register_region(&hub, "no-context", &good, json!({"context": "missing"})).await;
    // A dead address.
    let dead = good.replace(
        &good
            .lines()
            .find(|l| l.trim_start().starts_with("server:"))
            .unwrap()
            .to_string(),
        "    server: https://127.0.0.1:1",
    );
    register_region(&hub, "dead", &dead, json!({})).await;

    for (name, reason, words) in [
        ("no-secret", "SecretNotFound", "not found"),
        ("garbage", "KubeconfigInvalid", "not a kubeconfig"),
        ("no-context", "ContextNotFound", "missing"),
        ("dead", "ProbeFailed", "/readyz"),
    ] {
        let got = wait_for(
            &format!("the {name} Region's condition"),
            Duration::from_secs(20),
            || async {
                let r = regions.get(name).await.ok()?;
                let c = r
                    .status?
                    .conditions
                    .into_iter()
                    .find(|c| c.type_ == "Reachable")?;
                (c.status == "False" && c.reason == reason).then_some(c.message)
            },
        )
        .await;
        assert!(got.contains(words), "{name}: {got}");
    }
    let dead_phase = regions.get("dead").await.unwrap().status.unwrap().phase;
    assert_eq!(dead_phase, Some(RegionPhase::Unreachable));

    // An app across a good region, the bad ones and one that does not exist.
    let ns = "faults";
    let spec = app_spec(
        "ActiveActive",
        &["us-east", "no-secret", "garbage", "dead", "nowhere"],
        json!({}),
    );
    apply_app(&hub, ns, "web", spec).await;
    wait_for(
        "us-east to carry all traffic",
        Duration::from_secs(180),
        || async {
            (weights(&hub, ns, "web").await?
                == "us-east=100 no-secret=0 garbage=0 dead=0 nowhere=0")
                .then_some(())
        },
    )
    .await;
    let s = status(&hub, ns, "web").await.unwrap();
    let region = |n: &str| s.regions.iter().find(|r| r.name == n).unwrap();
    // A dead API server is evidence; the hub's own mistakes (no Secret, a
    // broken kubeconfig, no Region) are not: no round counts against them.
    assert_eq!(
        region("dead").reason.as_ref().map(|r| r.to_string()),
        Some("RegionUnreachable".into())
    );
    for hub_side in ["no-secret", "garbage", "nowhere"] {
        let r = region(hub_side);
        let unknown = r.unknown.as_ref().expect("hub-side Unknown");
        assert_eq!(unknown.cause, "HubSide", "{hub_side}");
        assert_eq!((r.health, r.consecutive_failures), (Health::Unknown, 0));
    }
    assert!(
        region("no-secret")
            .unknown
            .as_ref()
            .unwrap()
            .message
            .contains("absent")
    );
    assert_eq!(condition(&s, "Ready").unwrap().0, "True");
    let us = env.client("us-east").await;
    assert_eq!(placed(&us, ns, "web").await, Some((3, 3)));

    delete_app(&hub, ns, "web").await;
    for name in ["no-secret", "garbage", "no-context", "dead"] {
        let _ = regions.delete(name, &Default::default()).await;
    }
}

#[tokio::test]
async fn deleting_an_app_removes_its_objects_and_leaves_a_handmade_one_alone() {
    let _serial = serial().await;
    let _heal = HealOnPanic;
    let env = env();
    let hub = env.client("hub").await;
    let ns = "cleanup";
    let us = env.client("us-east").await;
    let eu = env.client("eu-west").await;
    let ap = env.client("ap-south").await;
    let before = handmade_deployment(&ap, ns, "web").await;

    apply_app(
        &hub,
        ns,
        "web",
        app_spec("ActiveActive", &REGIONS, json!({})),
    )
    .await;
    let s = wait_for(
        "the app to report the conflict in ap-south",
        Duration::from_secs(180),
        || async {
            let s = status(&hub, ns, "web").await?;
            (condition(&s, "Conflict")?.0 == "True"
                && s.weights.as_deref() == Some("us-east=50 eu-west=50 ap-south=0"))
            .then_some(s)
        },
    )
    .await;
    let (_, reason, message) = condition(&s, "Conflict").unwrap();
    assert_eq!(reason, "ObjectNotOwned");
    assert!(
        message.contains("ap-south") && message.contains("not created by multiregion"),
        "{message}"
    );
    let untouched = |d: &Deployment| {
        let spec_same = d.spec.as_ref().and_then(|s| s.replicas) == Some(2);
        let labels_same = d.labels() == before.labels();
        let never_written = d
            .metadata
            .managed_fields
            .iter()
            .flatten()
            .all(|f| f.manager.as_deref() != Some("multiregion"));
        spec_same && labels_same && never_written
    };
    let after: Deployment = Api::namespaced(ap.clone(), ns).get("web").await.unwrap();
    assert!(
        untouched(&after),
        "never adopted or overwritten: {:?}",
        after.metadata
    );

    // Removing a region from spec removes what was placed there.
    apply_app(
        &hub,
        ns,
        "web",
        app_spec("ActiveActive", &["us-east", "ap-south"], json!({})),
    )
    .await;
    wait_for(
        "eu-west's objects to go",
        Duration::from_secs(180),
        || async { placed(&eu, ns, "web").await.is_none().then_some(()) },
    )
    .await;
    assert!(placed(&us, ns, "web").await.is_some());

    delete_app(&hub, ns, "web").await;
    wait_for("the app to be gone", Duration::from_secs(180), || async {
        status(&hub, ns, "web").await.is_none().then_some(())
    })
    .await;
    assert!(
        placed(&us, ns, "web").await.is_none(),
        "removed from us-east"
    );
    let services: Api<k8s_openapi::api::core::v1::Service> = Api::namespaced(us.clone(), ns);
    assert!(
        services.get_opt("web").await.unwrap().is_none(),
        "service removed too"
    );
    let handmade: Deployment = Api::namespaced(ap.clone(), ns).get("web").await.unwrap();
    assert!(untouched(&handmade), "left alone on delete");
}

#[tokio::test]
async fn metrics_are_served() {
    let _serial = serial().await;
    let env = env();
    let text = env.metrics().await;
    for name in [
        "multiregion_region_reachable",
        "multiregion_probe_duration_seconds",
        "multiregion_reconcile_duration_seconds",
        "multiregion_decision_latency_seconds",
    ] {
        assert!(text.contains(name), "{name} missing from /metrics:\n{text}");
    }
    assert!(
        text.contains(r#"multiregion_region_reachable{region="us-east"} 1"#),
        "{text}"
    );
}

/// Each invalid MultiRegionApp spec (a patch on a valid one) and the words
/// the API server's refusal must contain.
fn invalid_app_patches() -> Vec<(&'static str, serde_json::Value, &'static str)> {
    let two = json!([{"name": "us-east"}, {"name": "eu-west"}]);
    let sun = |a: &str, b: &str| {
        json!([
            {"name": "us-east", "activeWindow": {"start": a, "end": "12:00"}},
            {"name": "eu-west", "activeWindow": {"start": "12:00", "end": b}}
        ])
    };
    vec![
        ("no regions", json!({"regions": []}), "spec.regions"),
        (
            "duplicate names",
            json!({"regions": [{"name": "a"}, {"name": "a"}]}),
            "region names must be unique",
        ),
        (
            "name not DNS-1123",
            json!({"regions": [{"name": "Us_East"}, {"name": "b"}]}),
            "spec.regions[0].name",
        ),
        (
            "unknown strategy",
            json!({"strategy": "RoundRobin"}),
            "spec.strategy",
        ),
        (
            "ActivePassive with one region",
            json!({"regions": [{"name": "a"}]}),
            "need at least 2 regions",
        ),
        (
            "FollowTheSun with one region",
            json!({"strategy": "FollowTheSun", "regions": [{"name": "a", "activeWindow": {"start": "00:00", "end": "12:00"}}]}),
            "need at least 2 regions",
        ),
        (
            "FollowTheSun without windows",
            json!({"strategy": "FollowTheSun", "regions": two}),
            "spec.regions[].activeWindow",
        ),
        (
            "window not HH:MM",
            json!({"strategy": "FollowTheSun", "regions": sun("7:00", "24:00")}),
            "spec.regions[0].activeWindow.start",
        ),
        (
            "weight above 1000",
            json!({"regions": [{"name": "a", "weight": 1001}, {"name": "b"}]}),
            "spec.regions[0].weight",
        ),
        (
            "negative weight",
            json!({"regions": [{"name": "a", "weight": -1}, {"name": "b"}]}),
            "spec.regions[0].weight",
        ),
        (
            "all weights 0",
            json!({"strategy": "ActiveActive", "regions": [{"name": "a", "weight": 0}, {"name": "b", "weight": 0}]}),
            "spec.regions[].weight",
        ),
        (
            "negative replicas",
            json!({"workload": {"replicas": -1}}),
            "spec.workload.replicas",
        ),
        (
            "negative region replicas",
            json!({"regions": [{"name": "a", "replicas": -2}, {"name": "b"}]}),
            "spec.regions[0].replicas",
        ),
        (
            "negative standby",
            json!({"standby": {"replicas": -1}}),
            "spec.standby.replicas",
        ),
        (
            "standby above replicas",
            json!({"standby": {"replicas": 4}}),
            "spec.standby.replicas",
        ),
        (
            "failureThreshold 0",
            json!({"healthCheck": {"failureThreshold": 0}}),
            "spec.healthCheck.failureThreshold",
        ),
        (
            "successThreshold 0",
            json!({"healthCheck": {"successThreshold": 0}}),
            "spec.healthCheck.successThreshold",
        ),
        (
            "interval 0",
            json!({"healthCheck": {"intervalSeconds": 0}}),
            "spec.healthCheck.intervalSeconds",
        ),
        (
            "interval above 3600",
            json!({"healthCheck": {"intervalSeconds": 3601}}),
            "spec.healthCheck.intervalSeconds",
        ),
        (
            "timeout 0",
            json!({"healthCheck": {"timeoutSeconds": 0}}),
            "spec.healthCheck.timeoutSeconds",
        ),
        (
            "timeout above interval",
            json!({"healthCheck": {"intervalSeconds": 2, "timeoutSeconds": 3}}),
            "spec.healthCheck.timeoutSeconds",
        ),
        (
            "activeOverride not a region",
            json!({"failover": {"activeOverride": "mars"}}),
            "spec.failover.activeOverride",
        ),
        (
            "minReadyRatio 0",
            json!({"healthCheck": {"minReadyRatio": 0}}),
            "spec.healthCheck.minReadyRatio",
        ),
        (
            "nodePort on a ClusterIP Service",
            json!({"workload": {"service": {"ports": [{"port": 80, "nodePort": 30080}]}}}),
            "nodePort needs type NodePort",
        ),
        (
            "nodePort out of range",
            json!({"workload": {"service": {"type": "NodePort", "ports": [{"port": 80, "nodePort": 80}]}}}),
            "spec.workload.service.ports[0].nodePort",
        ),
        (
            "minReadyRatio above 1",
            json!({"healthCheck": {"minReadyRatio": 1.5}}),
            "spec.healthCheck.minReadyRatio",
        ),
        (
            "propagated by name and selector at once",
            json!({"propagate": {"configMaps": [{"name": "a", "selector": {"matchLabels": {"x": "y"}}}]}}),
            "spec.propagate.configMaps[0]",
        ),
        (
            "propagated by neither name nor selector",
            json!({"propagate": {"secrets": [{}]}}),
            "spec.propagate.secrets[0]",
        ),
        (
            "home regions outside ActiveActive",
            json!({"regions": [{"name": "a", "home": {"continents": ["EU"]}}, {"name": "b"}]}),
            "home-region routing needs strategy ActiveActive",
        ),
        (
            "a home with no place",
            json!({"strategy": "ActiveActive", "regions": [{"name": "a", "home": {}}]}),
            "spec.regions[0].home",
        ),
        (
            "a country not in ISO capitals",
            json!({"strategy": "ActiveActive", "regions": [{"name": "a", "home": {"countries": ["de"]}}]}),
            "spec.regions[0].home.countries[0]",
        ),
        (
            "an unknown continent",
            json!({"strategy": "ActiveActive", "regions": [{"name": "a", "home": {"continents": ["EUR"]}}]}),
            "spec.regions[0].home.continents[0]",
        ),
        (
            "failback steps that do not grow",
            json!({"failover": {"failbackSteps": [50, 10]}}),
            "spec.failover.failbackSteps",
        ),
        (
            "a failback step above 100",
            json!({"failover": {"failbackSteps": [10, 150]}}),
            "spec.failover.failbackSteps[1]",
        ),
        (
            "a patch of the operator's replicas",
            json!({"regions": [{"name": "a", "overrides": {"patches": [{"op": "replace", "path": "/spec/replicas", "value": 9}]}}, {"name": "b"}]}),
            "spec.regions[0].overrides.patches: Invalid value",
        ),
        (
            "a resource patch of the object's name",
            json!({"regions": [{"name": "a", "overrides": {"resources": [{"kind": "ServiceAccount", "name": "web", "patches": [{"op": "replace", "path": "/metadata/name", "value": "x"}]}]}}, {"name": "b"}]}),
            "spec.regions[0].overrides.resources[0].patches: Invalid value",
        ),
        (
            "asynchronous replication without maxLagSeconds",
            json!({"failover": {"replication": {"mode": "Asynchronous"}}}),
            "spec.failover.replication.maxLagSeconds",
        ),
        (
            "a resource without a name",
            json!({"resources": [{"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {}}]}),
            "spec.resources[0].metadata.name",
        ),
        (
            "a resource without a kind",
            json!({"resources": [{"apiVersion": "v1", "metadata": {"name": "web"}}]}),
            "spec.resources[0].kind",
        ),
        (
            "a patch op outside add, replace and remove",
            json!({"regions": [{"name": "a", "overrides": {"patches": [{"op": "move", "path": "/spec/paused"}]}}, {"name": "b"}]}),
            "spec.regions[0].overrides.patches[0].op",
        ),
        (
            "propagation selector without labels",
            json!({"propagate": {"configMaps": [{"selector": {"matchLabels": {}}}]}}),
            "spec.propagate.configMaps[0].selector.matchLabels",
        ),
    ]
}

/// Each invalid Region spec and the words its refusal must contain.
fn invalid_region_specs() -> Vec<(&'static str, serde_json::Value, &'static str)> {
    let secret = json!({"namespace": "multiregion-system", "name": "x"});
    vec![
        (
            "both sources",
            json!({"local": true, "kubeconfigSecretRef": secret}),
            "spec.kubeconfigSecretRef or spec.local",
        ),
        (
            "no source",
            json!({}),
            "spec.kubeconfigSecretRef or spec.local",
        ),
        (
            "probe timeout above interval",
            json!({"local": true, "probe": {"intervalSeconds": 1, "timeoutSeconds": 2}}),
            "spec.probe.timeoutSeconds",
        ),
        (
            "probe threshold 0",
            json!({"local": true, "probe": {"failureThreshold": 0}}),
            "spec.probe.failureThreshold",
        ),
    ]
}

fn object(kind: &str, spec: serde_json::Value) -> kube::api::DynamicObject {
    serde_json::from_value(json!({
        "apiVersion": "multiregion.io/v1alpha1", "kind": kind,
        "metadata": {"name": "invalid"}, "spec": spec
    }))
    .unwrap()
}

/// A dry-run create that must be refused with a message naming `field`.
async fn assert_refused(
    api: &kube::Api<kube::api::DynamicObject>,
    what: &str,
    object: kube::api::DynamicObject,
    field: &str,
) {
    let dry_run = kube::api::PostParams {
        dry_run: true,
        ..Default::default()
    };
    match api.create(&dry_run, &object).await {
        Ok(_) => panic!("{what}: accepted"),
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 422, "{what}: {}", status.message);
            assert!(
                status.message.contains(field),
                "{what}: {:?} does not name {field}",
                status.message
            );
        }
        Err(other) => panic!("{what}: {other}"),
    }
}

#[tokio::test]
async fn the_api_server_refuses_every_invalid_spec_naming_the_field() {
    use kube::api::{ApiResource, DynamicObject, PostParams};
    use multiregion::api::MultiRegionApp;
    let _serial = serial().await;
    let hub = env().client("hub").await;
    common::operator::ensure_namespace(&hub, "validation").await;
    let apps: kube::Api<DynamicObject> = kube::Api::namespaced_with(
        hub.clone(),
        "validation",
        &ApiResource::erase::<MultiRegionApp>(&()),
    );
    // The valid base passes.
    let valid = app_spec("ActivePassive", &["us-east", "eu-west"], json!({}));
    let dry_run = PostParams {
        dry_run: true,
        ..Default::default()
    };
    apps.create(&dry_run, &object("MultiRegionApp", valid.clone()))
        .await
        .expect("the valid base is accepted");
    let mut synchronous = valid.clone();
    common::operator::merge(
        &mut synchronous,
        json!({"failover": {"replication": {"mode": "Synchronous"}}}),
    );
    apps.create(&dry_run, &object("MultiRegionApp", synchronous))
        .await
        .expect("Synchronous replication needs no maxLagSeconds");
    for (what, patch, field) in invalid_app_patches() {
        let mut spec = valid.clone();
        common::operator::merge(&mut spec, patch);
        assert_refused(&apps, what, object("MultiRegionApp", spec), field).await;
    }
    let regions: kube::Api<DynamicObject> =
        kube::Api::all_with(hub.clone(), &ApiResource::erase::<Region>(&()));
    for (what, spec, field) in invalid_region_specs() {
        assert_refused(&regions, what, object("Region", spec), field).await;
    }
}

#[tokio::test]
async fn status_command_shows_each_region() {
    let _serial = serial().await;
    let _heal = HealOnPanic;
    let env = env();
    let hub = env.client("hub").await;
    let ns = "cli";
    apply_app(
        &hub,
        ns,
        "web",
        app_spec("ActivePassive", &["us-east", "eu-west"], json!({})),
    )
    .await;
    wait_weights(
        &hub,
        ns,
        "web",
        "us-east=100 eu-west=0",
        "us-east active",
        Duration::from_secs(180),
    )
    .await;
    wait_for(
        "us-east at 3/3 in status",
        Duration::from_secs(180),
        || async {
            let s = status(&hub, ns, "web").await?;
            (s.regions
                .iter()
                .find(|r| r.name == "us-east")?
                .ready_replicas
                == 3)
                .then_some(())
        },
    )
    .await;
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_multiregion"))
            .args(args)
            .args(["--kubeconfig", env.kubeconfig("hub").to_str().unwrap()])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let table = run(&["status", "-n", ns]);
    let us = table
        .lines()
        .find(|l| l.starts_with("us-east"))
        .expect("a us-east row");
    assert_eq!(
        us.split_whitespace().collect::<Vec<_>>(),
        ["us-east", "Active", "Healthy", "3/3", "100"]
    );
    assert!(
        table.contains("cli/web  ActivePassive  active: us-east"),
        "{table}"
    );
    assert_eq!(
        run(&["status", "-n", ns, "-o", "name"]),
        "multiregionapp.multiregion.io/web\n",
        "-o name, as kubectl"
    );
    let wide = run(&["status", "-n", ns, "-o", "wide"]);
    assert!(
        wide.contains("FAILED") && wide.contains("UNKNOWN"),
        "{wide}"
    );
    let us = wide
        .lines()
        .find(|l| l.starts_with("us-east"))
        .expect("a us-east row");
    let wide_cells = us.split_whitespace().collect::<Vec<_>>();
    assert_eq!(
        (wide_cells[5], wide_cells[7]),
        ("0", "-"),
        "no failed round, no Unknown evidence: {wide}"
    );
    assert!(
        wide_cells[6].parse::<u32>().is_ok(),
        "good rounds in a row: {wide}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&run(&["status", "-n", ns, "web", "-o", "json"])).unwrap();
    assert_eq!(
        json["kind"], "MultiRegionApp",
        "one named app prints itself, as kubectl"
    );
    assert_eq!(json["status"]["weights"], "us-east=100 eu-west=0");
    assert_eq!(
        run(&[
            "status",
            "-n",
            ns,
            "web",
            "-o",
            "jsonpath={.status.weights}"
        ]),
        "us-east=100 eu-west=0",
        "-o jsonpath, as kubectl (no newline of its own)"
    );
    assert_eq!(
        run(&[
            "status",
            "-n",
            ns,
            "-o",
            r#"jsonpath={range .items[*]}{.metadata.name} {.status.activeRegion}{"\n"}{end}"#
        ]),
        "web us-east\n"
    );
    assert!(
        json["metadata"].get("managedFields").is_none(),
        "managedFields are left out"
    );
    delete_app(&hub, ns, "web").await;
}

/// A tiny HTTP endpoint whose /healthz answers 200 or 503.
async fn health_endpoint(healthy: std::sync::Arc<std::sync::atomic::AtomicBool>) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    // The operator runs in another process: serve from a thread of our own
    // so the server outlives this test's runtime turns.
    std::thread::spawn(move || {
        tokio::runtime::Runtime::new().unwrap().block_on(async move {
            loop {
                let Ok((mut socket, _)) = listener.accept().await else { return };
                let ok = healthy.load(std::sync::atomic::Ordering::Relaxed);
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    let _ = socket.read(&mut buf).await;
                    let status = if ok { "200 OK" } else { "503 Service Unavailable" };
                    let _ = socket
                        .write_all(format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").as_bytes())
                        .await;
                });
            }
        })
    });
    format!("http://{addr}")
}

#[tokio::test]
async fn a_failing_http_probe_takes_the_region_out() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let _serial = serial().await;
    let _heal = HealOnPanic;
    let env = env();
    let hub = env.client("hub").await;
    let ns = "http";
    let us_ok = Arc::new(AtomicBool::new(true));
    let eu_ok = Arc::new(AtomicBool::new(true));
    let us = health_endpoint(us_ok.clone()).await;
    let eu = health_endpoint(eu_ok.clone()).await;
    let spec = app_spec(
        "ActiveActive",
        &["us-east", "eu-west"],
        json!({
            "regions": [{"name": "us-east", "endpoint": us}, {"name": "eu-west", "endpoint": eu}],
            "healthCheck": {"http": {"path": "/healthz"}}
        }),
    );
    apply_app(&hub, ns, "web", spec).await;
    wait_weights(
        &hub,
        ns,
        "web",
        "us-east=50 eu-west=50",
        "both regions serving",
        Duration::from_secs(180),
    )
    .await;
    eu_ok.store(false, Ordering::Relaxed);
    wait_weights(
        &hub,
        ns,
        "web",
        "us-east=100 eu-west=0",
        "eu-west out on HTTP 503",
        Duration::from_secs(10),
    )
    .await;
    let s = status(&hub, ns, "web").await.unwrap();
    let eu_status = s.regions.iter().find(|r| r.name == "eu-west").unwrap();
    assert_eq!(eu_status.reason, Some(Reason::HttpProbeFailed));
    assert!(
        eu_status
            .message
            .as_deref()
            .unwrap_or_default()
            .contains("503"),
        "{eu_status:?}"
    );
    eu_ok.store(true, Ordering::Relaxed);
    wait_weights(
        &hub,
        ns,
        "web",
        "us-east=50 eu-west=50",
        "eu-west back",
        Duration::from_secs(10),
    )
    .await;
    delete_app(&hub, ns, "web").await;
}

#[tokio::test]
async fn kubectl_wait_for_condition_ready_returns_for_regions_and_apps() {
    let _serial = serial().await;
    let _heal = HealOnPanic;
    let env = env();
    let hub = env.client("hub").await;
    let ns = "wait-ready";
    apply_app(
        &hub,
        ns,
        "web",
        app_spec("ActivePassive", &["us-east", "eu-west"], json!({})),
    )
    .await;
    let kubeconfig = env.kubeconfig("hub");
    let wait = |args: &[&str]| {
        let out = std::process::Command::new(env.bin_dir.join("kubectl"))
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args(["wait", "--for=condition=Ready", "--timeout=180s"])
            .args(args)
            .output()
            .expect("kubectl runs");
        assert!(
            out.status.success(),
            "kubectl wait {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    assert!(wait(&["region/us-east"]).contains("condition met"));
    assert!(wait(&["-n", ns, "mra/web"]).contains("condition met"));
    delete_app(&hub, ns, "web").await;
}
