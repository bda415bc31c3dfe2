//! End-to-end: what happens around a failover — failback, manual controls,
//! the RPO gate, flap damping, traffic sinks and leader election — on a hub
//! and three local regions with the operator as a process.

mod common;

use std::time::Duration;

use common::operator::{
    HealOnPanic, Sinks, app_spec, apply_app, condition, delete_app, env, free_port,
    install_traffic_crds, placed, serial, status, wait_events, wait_weights, weights,
};
use common::wait_for;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, Patch, PatchParams};
use multiregion::api::{Health, MoveReason};
use serde_json::json;

/// Fails over from us-east to eu-west and brings us-east back Healthy.
async fn fail_over_and_recover(hub: &kube::Client, ns: &str) {
    let env = env();
    wait_weights(
        hub,
        ns,
        "web",
        "us-east=100 eu-west=0",
        "us-east to be active",
        Duration::from_secs(180),
    )
    .await;
    env.regions.lock().await.stop_apiserver("us-east").unwrap();
    wait_weights(
        hub,
        ns,
        "web",
        "us-east=0 eu-west=100",
        "eu-west to take over",
        Duration::from_secs(10),
    )
    .await;
    env.regions
        .lock()
        .await
        .start_apiserver("us-east")
        .await
        .unwrap();
    wait_for(
        "us-east to be Healthy again",
        Duration::from_secs(180),
        || async {
            let s = status(hub, ns, "web").await?;
            (s.regions.iter().find(|r| r.name == "us-east")?.health == Health::Healthy)
                .then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn a_stepped_failback_is_observed_step_by_step() {
    let _serial = serial().await;
    let _heal = HealOnPanic;
    let hub = env().client("hub").await;
    let ns = "stepped";
    let spec = app_spec(
        "ActivePassive",
        &["us-east", "eu-west"],
        json!({"failover": {"failbackHoldSeconds": 2, "failbackSteps": [25, 50], "failbackStepSeconds": 4}}),
    );
    apply_app(&hub, ns, "web", spec).await;
    fail_over_and_recover(&hub, ns).await;
    for (weights, share) in [
        ("us-east=25 eu-west=75", Some(25)),
        ("us-east=50 eu-west=50", Some(50)),
        ("us-east=100 eu-west=0", None),
    ] {
        let s = wait_for(
            &format!("the step {weights}"),
            Duration::from_secs(60),
            || async {
                let s = status(&hub, ns, "web").await?;
                (s.weights.as_deref() == Some(weights)).then_some(s)
            },
        )
        .await;
        let pending = s.pending_move.as_ref().and_then(|p| p.share);
        assert_eq!(
            pending, share,
            "status.pendingMove declares the ramp: {s:?}"
        );
        if share.is_some() {
            assert_eq!(s.active_region.as_deref(), Some("eu-west"));
            let us = env().client("us-east").await;
            assert_eq!(
                placed(&us, ns, "web").await.map(|(r, _)| r),
                Some(3),
                "full size"
            );
        }
    }
    let s = status(&hub, ns, "web").await.unwrap();
    assert_eq!(s.active_region.as_deref(), Some("us-east"));
    assert_eq!(s.last_failover.unwrap().reason, MoveReason::Failback);
    delete_app(&hub, ns, "web").await;
}

#[tokio::test]
async fn automatic_failback_happens_after_the_hold_and_not_before() {
    let _serial = serial().await;
    let _heal = HealOnPanic;
    let hub = env().client("hub").await;
    let ns = "failback";
    let spec = app_spec(
        "ActivePassive",
        &["us-east", "eu-west"],
        json!({"failover": {"failbackHoldSeconds": 8}}),
    );
    apply_app(&hub, ns, "web", spec).await;
    fail_over_and_recover(&hub, ns).await;
    let holding = status(&hub, ns, "web").await.unwrap();
    assert_eq!(holding.weights.as_deref(), Some("us-east=0 eu-west=100"));
    let (pending, reason, _) = condition(&holding, "FailbackPending").unwrap();
    assert_eq!((pending.as_str(), reason.as_str()), ("True", "Holding"));
    let s = wait_for("the failback", Duration::from_secs(180), || async {
        let s = status(&hub, ns, "web").await?;
        (s.weights.as_deref() == Some("us-east=100 eu-west=0")).then_some(s)
    })
    .await;
    let back = s.last_failover.clone().unwrap();
    assert_eq!(
        (back.to.as_str(), back.reason.as_str()),
        ("us-east", "Failback")
    );
    let healthy_since = s
        .regions
        .iter()
        .find(|r| r.name == "us-east")
        .unwrap()
        .last_transition_time
        .clone()
        .unwrap();
    let held = back.detected_at.0.as_second() - healthy_since.0.as_second();
    assert!(held >= 8, "failback after {held}s of health, hold is 8s");
    assert_eq!(s.failovers_in_last_hour, 2);
    assert_eq!(condition(&s, "FailedOver").unwrap().0, "False");
    delete_app(&hub, ns, "web").await;
}

#[tokio::test]
async fn manual_failback_waits_for_active_override() {
    let _serial = serial().await;
    let _heal = HealOnPanic;
    let hub = env().client("hub").await;
    let ns = "manual";
    let spec = app_spec(
        "ActivePassive",
        &["us-east", "eu-west"],
        json!({"failover": {"failback": "Manual", "failbackHoldSeconds": 0}}),
    );
    apply_app(&hub, ns, "web", spec.clone()).await;
    fail_over_and_recover(&hub, ns).await;
    let s = wait_for(
        "FailbackPending (Manual)",
        Duration::from_secs(10),
        || async {
            let s = status(&hub, ns, "web").await?;
            (condition(&s, "FailbackPending")?.1 == "Manual").then_some(s)
        },
    )
    .await;
    assert_eq!(condition(&s, "FailbackPending").unwrap().0, "True");
    // Several rounds later, still on eu-west.
    let before = s
        .regions
        .iter()
        .find(|r| r.name == "us-east")
        .unwrap()
        .consecutive_successes;
    assert!(before >= 2);
    assert_eq!(
        weights(&hub, ns, "web").await.as_deref(),
        Some("us-east=0 eu-west=100")
    );
    let mut with_override = spec;
    with_override["failover"]["activeOverride"] = json!("us-east");
    apply_app(&hub, ns, "web", with_override).await;
    let s = wait_for(
        "traffic back on us-east",
        Duration::from_secs(180),
        || async {
            let s = status(&hub, ns, "web").await?;
            (s.weights.as_deref() == Some("us-east=100 eu-west=0")).then_some(s)
        },
    )
    .await;
    assert_eq!(
        s.last_failover.as_ref().unwrap().reason,
        MoveReason::Override
    );
    assert_eq!(condition(&s, "FailbackPending").unwrap().0, "False");
    delete_app(&hub, ns, "web").await;
}

#[tokio::test]
async fn active_override_to_a_cold_region_moves_weights_only_when_its_pods_are_ready() {
    let _serial = serial().await;
    let _heal = HealOnPanic;
    let env = env();
    let hub = env.client("hub").await;
    let ap = env.client("ap-south").await;
    let ns = "override";
    let spec = app_spec(
        "ActivePassive",
        &["us-east", "ap-south"],
        json!({"standby": {"replicas": 0}}),
    );
    apply_app(&hub, ns, "web", spec.clone()).await;
    wait_for(
        "us-east active, ap-south cold",
        Duration::from_secs(180),
        || async {
            let cold = placed(&ap, ns, "web").await? == (0, 0);
            (weights(&hub, ns, "web").await? == "us-east=100 ap-south=0" && cold).then_some(())
        },
    )
    .await;
    // Slow the pods down: with KWOK stopped they are created but never ready.
    env.regions.lock().await.stop_nodes("ap-south").unwrap();
    let mut with_override = spec;
    with_override["failover"]["activeOverride"] = json!("ap-south");
    apply_app(&hub, ns, "web", with_override).await;
    let s = wait_for(
        "the planned move to start",
        Duration::from_secs(20),
        || async {
            let s = status(&hub, ns, "web").await?;
            (s.pending_move.as_ref()?.to == "ap-south").then_some(s)
        },
    )
    .await;
    assert_eq!(
        s.weights.as_deref(),
        Some("us-east=100 ap-south=0"),
        "weights wait for ready pods"
    );
    wait_for("ap-south scaled up", Duration::from_secs(20), || async {
        (placed(&ap, ns, "web").await?.0 == 3).then_some(())
    })
    .await;
    assert_eq!(
        weights(&hub, ns, "web").await.as_deref(),
        Some("us-east=100 ap-south=0")
    );
    env.regions
        .lock()
        .await
        .start_nodes("ap-south")
        .await
        .unwrap();
    let s = wait_for(
        "the move once pods are ready",
        Duration::from_secs(180),
        || async {
            let s = status(&hub, ns, "web").await?;
            (s.weights.as_deref() == Some("us-east=0 ap-south=100")).then_some(s)
        },
    )
    .await;
    let ready = placed(&ap, ns, "web").await.unwrap().1;
    assert!(ready >= 2, "{ready} ready when weights moved");
    assert_eq!(s.last_failover.unwrap().reason, MoveReason::Override);
    assert!(s.pending_move.is_none());
    delete_app(&hub, ns, "web").await;
}

#[tokio::test]
async fn rpo_gate_wait_blocks_and_promote_promotes_with_a_warning() {
    let _serial = serial().await;
    let _heal = HealOnPanic;
    let env = env();
    let hub = env.client("hub").await;
    let eu = env.client("eu-west").await;
    for (ns, mode) in [("rpo-wait", "Wait"), ("rpo-promote", "Promote")] {
        let spec = app_spec(
            "ActivePassive",
            &["us-east", "eu-west"],
            json!({"failover": {"replication": {"maxLagSeconds": 30, "onExceeded": mode}}}),
        );
        apply_app(&hub, ns, "web", spec).await;
        wait_for("us-east active", Duration::from_secs(180), || async {
            let standby = placed(&eu, ns, "web").await?;
            (weights(&hub, ns, "web").await? == "us-east=100 eu-west=0" && standby.1 == 1)
                .then_some(())
        })
        .await;
        // The standby reports 45 s of replication lag.
        let deployments: Api<Deployment> = Api::namespaced(eu.clone(), ns);
        deployments
            .patch(
                "web",
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"annotations": {
                    "multiregion.io/replication-lag-seconds": "45",
                    "multiregion.io/replication-lag-observed-at": jiff::Timestamp::now().to_string(),
                }}})),
            )
            .await
            .unwrap();
    }
    env.regions.lock().await.stop_apiserver("us-east").unwrap();
    let blocked = wait_for("PromotionBlocked", Duration::from_secs(15), || async {
        let s = status(&hub, "rpo-wait", "web").await?;
        let (state, _, message) = condition(&s, "PromotionBlocked")?;
        (state == "True").then_some((s, message))
    })
    .await;
    assert!(blocked.1.contains("45"), "the lag is shown: {}", blocked.1);
    assert_eq!(
        blocked.0.weights.as_deref(),
        Some("us-east=100 eu-west=0"),
        "Wait keeps traffic"
    );
    wait_for(
        "Promote to move traffic",
        Duration::from_secs(15),
        || async {
            (weights(&hub, "rpo-promote", "web").await? == "us-east=0 eu-west=100").then_some(())
        },
    )
    .await;
    let warnings = wait_events(
        &hub,
        "rpo-promote",
        "PromotedWithReplicationLag",
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("may be lost"), "{warnings:?}");
    assert_eq!(
        weights(&hub, "rpo-wait", "web").await.as_deref(),
        Some("us-east=100 eu-west=0")
    );
    env.regions
        .lock()
        .await
        .start_apiserver("us-east")
        .await
        .unwrap();
    delete_app(&hub, "rpo-wait", "web").await;
    delete_app(&hub, "rpo-promote", "web").await;
}

#[tokio::test]
async fn a_flapping_region_is_damped_but_a_dead_active_still_fails_over() {
    let _serial = serial().await;
    let _heal = HealOnPanic;
    let env = env();
    let hub = env.client("hub").await;
    let ns = "flap";
    let spec = app_spec(
        "ActivePassive",
        &["us-east", "eu-west"],
        json!({"failover": {"maxFailoversPerHour": 3, "failbackHoldSeconds": 0}}),
    );
    apply_app(&hub, ns, "web", spec).await;
    wait_weights(
        &hub,
        ns,
        "web",
        "us-east=100 eu-west=0",
        "us-east active",
        Duration::from_secs(180),
    )
    .await;
    // The preferred region flaps for two minutes: its API server goes for
    // 6 s, comes back for 3 s. Each failover and failback is a move; past
    // the budget the failbacks wait.
    let started = std::time::Instant::now();
    let mut damped_seen = false;
    while started.elapsed() < Duration::from_secs(120) {
        env.regions.lock().await.stop_apiserver("us-east").unwrap();
        tokio::time::sleep(Duration::from_secs(6)).await; // the fault lasts 6 s
        env.regions
            .lock()
            .await
            .start_apiserver("us-east")
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_secs(3)).await; // and heals for 3 s
        let s = status(&hub, ns, "web").await.unwrap();
        damped_seen |= condition(&s, "FlapDamped").is_some_and(|c| c.0 == "True");
        assert!(
            s.failovers_in_last_hour <= 3,
            "{} moves",
            s.failovers_in_last_hour
        );
    }
    let s = status(&hub, ns, "web").await.unwrap();
    assert_eq!(
        s.failovers_in_last_hour, 3,
        "the budget was used, not exceeded"
    );
    assert!(damped_seen, "FlapDamped was raised");
    wait_events(&hub, ns, "FlapDamped", Duration::from_secs(10)).await;
    assert_eq!(
        s.active_region.as_deref(),
        Some("eu-west"),
        "the failback waits"
    );

    // The budget is spent and the active itself dies: damping never keeps
    // traffic on a dead active while a healthy region exists.
    env.regions.lock().await.stop_apiserver("eu-west").unwrap();
    wait_weights(
        &hub,
        ns,
        "web",
        "us-east=100 eu-west=0",
        "the failover past the budget",
        Duration::from_secs(15),
    )
    .await;
    env.regions
        .lock()
        .await
        .start_apiserver("eu-west")
        .await
        .unwrap();
    delete_app(&hub, ns, "web").await;
}

#[tokio::test]
async fn http_route_and_dns_endpoint_follow_the_status_weights() {
    let _serial = serial().await;
    let _heal = HealOnPanic;
    let env = env();
    let hub = env.client("hub").await;
    install_traffic_crds();
    let ns = "sinks";
    let spec = app_spec(
        "ActivePassive",
        &["us-east", "eu-west"],
        json!({
            "regions": [
                {"name": "us-east", "endpoint": "http://10.10.0.1:30080"},
                {"name": "eu-west", "endpoint": "https://eu-west.example.com"}
            ],
            "traffic": {
                "httpRoute": {"name": "web", "parentRefs": [{"name": "global-gw", "namespace": "gateway"}]},
                "dnsEndpoint": {"dnsName": "web.example.com", "recordTTL": 30}
            }
        }),
    );
    let sinks = Sinks::new(&hub, ns);
    apply_app(&hub, ns, "web", spec).await;
    wait_for("sinks at us-east=100", Duration::from_secs(180), || async {
        let w = sinks.weights("web", "web").await?;
        (w == (vec![100, 0], vec![100, 0])
            && weights(&hub, ns, "web").await? == "us-east=100 eu-west=0")
            .then_some(())
    })
    .await;
    let s = status(&hub, ns, "web").await.unwrap();
    assert_eq!(condition(&s, "TrafficPublished").unwrap().0, "True");
    assert_backends(&hub, ns).await;

    env.regions.lock().await.stop_apiserver("us-east").unwrap();
    wait_weights(
        &hub,
        ns,
        "web",
        "us-east=0 eu-west=100",
        "status to fail over",
        Duration::from_secs(10),
    )
    .await;
    // Status is written first (so a refused status write moves no
    // traffic), the sinks right after it in the same reconcile.
    wait_for(
        "sinks to follow status",
        Duration::from_secs(10),
        || async {
            (sinks.weights("web", "web").await? == (vec![0, 100], vec![0, 100])).then_some(())
        },
    )
    .await;
    assert_eq!(
        sinks.dns_identifiers("web").await,
        ["us-east", "eu-west"],
        "a failed region keeps its record, at weight 0"
    );
    env.regions
        .lock()
        .await
        .start_apiserver("us-east")
        .await
        .unwrap();
    delete_app(&hub, ns, "web").await;
}

/// Who serves each home region now, from status.
async fn homes(hub: &kube::Client, ns: &str) -> Option<String> {
    let s = status(hub, ns, "web").await?;
    Some(
        s.homes
            .iter()
            .map(|h| format!("{}<-{}", h.home, h.served_by))
            .collect::<Vec<_>>()
            .join(" "),
    )
}

#[tokio::test]
async fn home_users_follow_their_failed_home_region_and_return_after_the_hold() {
    let _serial = serial().await;
    let _heal = HealOnPanic;
    let env = env();
    let hub = env.client("hub").await;
    install_traffic_crds();
    let ns = "homes";
    let spec = app_spec(
        "ActiveActive",
        &["us-east", "eu-west"],
        json!({
            "regions": [
                {"name": "us-east", "endpoint": "http://10.10.0.1:30080", "home": {"continents": ["NA"]}},
                {"name": "eu-west", "endpoint": "http://10.10.0.2:30080", "home": {"continents": ["EU"], "countries": ["IL"]}}
            ],
            "failover": {"failbackHoldSeconds": 20},
            "traffic": {
                "httpRoute": {"name": "web", "homeHeader": "X-User-Home"},
                "dnsEndpoint": {"dnsName": "web.example.com", "recordTTL": 30}
            }
        }),
    );
    let web = multiregion::plan::manifest::AppKey {
        name: "web".into(),
        ..Default::default()
    };
    let backend = |region| multiregion::plan::traffic::backend_name(&web, region);
    let sinks = Sinks::new(&hub, ns);
    apply_app(&hub, ns, "web", spec).await;
    let at_home = (backend("eu-west"), "[\"10.10.0.2\"]".to_string());
    let away = (backend("us-east"), "[\"10.10.0.1\"]".to_string());
    // The sinks are written before the status: wait for both.
    let settled = |want: (String, String), served: &'static str| {
        let (sinks, hub) = (&sinks, &hub);
        async move {
            let got = sinks
                .home("web", "eu-west", "web", "home-eu-west-eu")
                .await?;
            (got == want && homes(hub, ns).await.as_deref() == Some(served)).then_some(())
        }
    };
    let home = "us-east<-us-east eu-west<-eu-west";
    let covered = "us-east<-us-east eu-west<-us-east";
    wait_for("eu-west's users at home", Duration::from_secs(180), || {
        settled(at_home.clone(), home)
    })
    .await;

    env.regions.lock().await.stop_apiserver("eu-west").unwrap();
    wait_for(
        "eu-west's users sent to us-east",
        Duration::from_secs(30),
        || settled(away.clone(), covered),
    )
    .await;

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
        "us-east=50 eu-west=50",
        "eu-west to carry traffic again",
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(
        homes(&hub, ns).await.as_deref(),
        Some(covered),
        "home users wait for the failback hold"
    );
    assert_eq!(
        sinks.home("web", "eu-west", "web", "home-eu-west-eu").await,
        Some(away.clone())
    );
    wait_for("eu-west's users back home", Duration::from_secs(60), || {
        settled(at_home.clone(), home)
    })
    .await;
    delete_app(&hub, ns, "web").await;
}

/// Backends: an EndpointSlice for the IP, an ExternalName for the host.
async fn assert_backends(hub: &kube::Client, ns: &str) {
    let web = multiregion::plan::manifest::AppKey {
        name: "web".into(),
        ..Default::default()
    };
    let backend = |region| multiregion::plan::traffic::backend_name(&web, region);
    let services: Api<k8s_openapi::api::core::v1::Service> = Api::namespaced(hub.clone(), ns);
    let eu = services.get(&backend("eu-west")).await.unwrap();
    assert_eq!(
        eu.spec.unwrap().external_name.as_deref(),
        Some("eu-west.example.com")
    );
    let slices: Api<k8s_openapi::api::discovery::v1::EndpointSlice> =
        Api::namespaced(hub.clone(), ns);
    let us = slices.get(&backend("us-east")).await.unwrap();
    assert_eq!(us.endpoints[0].addresses, vec!["10.10.0.1".to_string()]);
}

#[tokio::test]
async fn with_two_operators_the_standby_finishes_a_failover_when_the_leader_dies() {
    let _serial = serial().await;
    let _heal = HealOnPanic;
    let env = env();
    let hub = env.client("hub").await;
    env.kill_operator();
    let election = ["--leader-election", "--lease-seconds", "4"];
    let mut a = env
        .spawn_operator("replica-a", free_port(), &election)
        .await;
    let mut b = env
        .spawn_operator("replica-b", free_port(), &election)
        .await;
    let leases: Api<Lease> = Api::namespaced(hub.clone(), "multiregion-system");
    let leader = wait_for("a leader", Duration::from_secs(20), || async {
        leases
            .get("multiregion-operator")
            .await
            .ok()?
            .spec?
            .holder_identity
    })
    .await;

    let ns = "election";
    let spec = app_spec(
        "ActivePassive",
        &["eu-west", "ap-south"],
        json!({"healthCheck": {"intervalSeconds": 2, "failureThreshold": 3}}),
    );
    apply_app(&hub, ns, "web", spec).await;
    wait_weights(
        &hub,
        ns,
        "web",
        "eu-west=100 ap-south=0",
        "eu-west active",
        Duration::from_secs(180),
    )
    .await;
    env.regions.lock().await.stop_apiserver("eu-west").unwrap();
    wait_for(
        "the failover under way",
        Duration::from_secs(20),
        || async {
            let s = status(&hub, ns, "web").await?;
            (s.regions
                .iter()
                .find(|r| r.name == "eu-west")?
                .consecutive_failures
                >= 1)
                .then_some(())
        },
    )
    .await;
    let (dead, mut survivor, survivor_name) = if leader == "replica-a" {
        (&mut a, b, "replica-b")
    } else {
        (&mut b, a, "replica-a")
    };
    dead.kill().unwrap();
    dead.wait().unwrap();
    let s = wait_for(
        "the other replica to finish the failover",
        Duration::from_secs(180),
        || async {
            let s = status(&hub, ns, "web").await?;
            (s.weights.as_deref() == Some("eu-west=0 ap-south=100")).then_some(s)
        },
    )
    .await;
    assert_eq!(s.failovers_in_last_hour, 1);
    let holder = leases
        .get("multiregion-operator")
        .await
        .unwrap()
        .spec
        .unwrap()
        .holder_identity;
    assert_eq!(holder.as_deref(), Some(survivor_name));
    env.regions
        .lock()
        .await
        .start_apiserver("eu-west")
        .await
        .unwrap();
    delete_app(&hub, ns, "web").await;
    wait_for("the app to be gone", Duration::from_secs(180), || async {
        status(&hub, ns, "web").await.is_none().then_some(())
    })
    .await;
    survivor.kill().unwrap();
    survivor.wait().unwrap();
    env.start_operator().await;
}
