//! Chaos, end to end: the faults a failover controller exists for, each
//! against real API servers (a hub and three local regions, the operator
//! as a process), each asserting what users care about: which region
//! carries traffic at every sample, what happens in the regions, what a
//! stale leader writes, what status says.
//!
//! Each test prints one `chaos:` line with what it observed (samples taken,
//! most regions with weight at once, writes by a stale leader, seconds to
//! recover).

mod common;

use std::process::Child;
use std::time::{Duration, Instant};

use common::operator::{
    HealOnPanic, Refusal, Sinks, app_spec, apply_app, condition, delete_app, env, events_by,
    free_port, install_traffic_crds, lease_holder, placed, refuse_writes, sample, serial, status,
    wait_weights, weights,
};
use common::wait_for;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::Client;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use multiregion::api::{Health, MoveReason, Reason};
use serde_json::json;

const ELECTION: [&str; 3] = ["--leader-election", "--lease-seconds", "4"];

/// How many regions carry weight in a weights summary.
fn weighted(summary: &str) -> usize {
    summary
        .split_whitespace()
        .filter(|pair| pair.split_once('=').is_some_and(|(_, w)| w != "0"))
        .count()
}

fn report(test: &str, samples: &[String], stale_writes: usize, recover: Option<Duration>) {
    let max = samples.iter().map(|s| weighted(s)).max().unwrap_or(0);
    let recover = recover.map_or("-".to_string(), |d| format!("{:.1}", d.as_secs_f64()));
    eprintln!(
        "chaos: {test}: samples={} max_weighted={max} stale_writes={stale_writes} recover_s={recover}",
        samples.len()
    );
}

/// Samples the app's weights every 200 ms for `span`.
async fn weights_over(hub: &Client, ns: &str, span: Duration) -> Vec<String> {
    sample(span, Duration::from_millis(200), || async {
        weights(hub, ns, "web").await.unwrap_or_default()
    })
    .await
}

/// An ActivePassive app on us-east and eu-west, us-east active and
/// eu-west's standby placed.
async fn active_passive(hub: &Client, ns: &str, extra: serde_json::Value) {
    apply_app(
        hub,
        ns,
        "web",
        app_spec("ActivePassive", &["us-east", "eu-west"], extra),
    )
    .await;
    wait_weights(
        hub,
        ns,
        "web",
        "us-east=100 eu-west=0",
        "us-east active",
        Duration::from_secs(180),
    )
    .await;
    let eu = env().client("eu-west").await;
    wait_for("eu-west's standby", Duration::from_secs(180), || async {
        (placed(&eu, ns, "web").await? == (1, 1)).then_some(())
    })
    .await;
}

fn http_check() -> serde_json::Value {
    json!({"healthCheck": {"http": {"path": "/healthz"}}})
}

#[tokio::test]
async fn a_region_whose_control_plane_is_down_or_cut_off_keeps_its_traffic_while_it_serves() {
    let _serial = serial().await;
    let _heal = HealOnPanic;
    let env = env();
    let hub = env.client("hub").await;
    let ns = "chaos-control-plane";
    active_passive(&hub, ns, http_check()).await;

    // The API server crashes; the region's endpoint keeps serving.
    env.regions.lock().await.stop_apiserver("us-east").unwrap();
    let mut samples = weights_over(&hub, ns, Duration::from_secs(8)).await;
    let s = status(&hub, ns, "web").await.unwrap();
    let us = s.regions.iter().find(|r| r.name == "us-east").unwrap();
    assert_eq!(us.reason, Some(Reason::ControlPlaneUnreachable));
    assert_eq!(us.health, Health::Degraded, "shown as its own health value");
    assert_eq!(
        condition(&s, "Degraded").unwrap().1,
        "ControlPlaneUnreachable"
    );
    env.regions
        .lock()
        .await
        .start_apiserver("us-east")
        .await
        .unwrap();

    // The operator is cut off from the API server (black-holed).
    env.regions.lock().await.partition("us-east").await.unwrap();
    samples.extend(weights_over(&hub, ns, Duration::from_secs(8)).await);
    env.regions.lock().await.heal("us-east").await.unwrap();
    let started = Instant::now();
    wait_for(
        "us-east no longer degraded",
        Duration::from_secs(60),
        || async {
            let s = status(&hub, ns, "web").await?;
            let us = s.regions.into_iter().find(|r| r.name == "us-east")?;
            us.reason.is_none().then_some(())
        },
    )
    .await;
    assert!(
        samples.iter().all(|w| w == "us-east=100 eu-west=0"),
        "traffic never left the serving region: {samples:?}"
    );
    report(
        "control plane down / partitioned",
        &samples,
        0,
        Some(started.elapsed()),
    );
    delete_app(&hub, ns, "web").await;
}

#[tokio::test]
async fn the_hub_down_longer_than_every_resync_moves_nothing_and_rebuilds_nothing() {
    let _serial = serial().await;
    let _heal = HealOnPanic;
    let env = env();
    let hub = env.client("hub").await;
    let ns = "chaos-hub";
    active_passive(&hub, ns, json!({})).await;
    let before = status(&hub, ns, "web").await.unwrap();
    let clients_built = || env.operator_log().matches("region client ready").count();
    let built = clients_built();

    env.regions.lock().await.stop_apiserver("hub").unwrap();
    // Longer than the Regions' 60 s resync, which re-reads their Secrets.
    tokio::time::sleep(Duration::from_secs(70)).await;
    assert!(
        env.operator_running(),
        "the operator lives through the outage"
    );
    env.regions
        .lock()
        .await
        .start_apiserver("hub")
        .await
        .unwrap();
    let back = Instant::now();
    let hub = env.client("hub").await;
    let samples = weights_over(&hub, ns, Duration::from_secs(10)).await;
    let after = status(&hub, ns, "web").await.unwrap();
    assert!(
        samples.iter().all(|w| w == "us-east=100 eu-west=0"),
        "traffic stayed: {samples:?}"
    );
    assert_eq!(after.failovers_in_last_hour, before.failovers_in_last_hour);
    assert_eq!(
        clients_built(),
        built,
        "no member was torn down and rebuilt"
    );
    for region in &after.regions {
        assert_eq!(
            region.consecutive_failures, 0,
            "{} counted no failed round",
            region.name
        );
    }
    report("hub down 70 s", &samples, 0, Some(back.elapsed()));
    delete_app(&hub, ns, "web").await;
}

/// Two operators with leader election, `first` started (and leading)
/// before `second`. The default operator is stopped meanwhile.
async fn two_replicas(first: (&str, &std::path::Path), second: &str) -> (Leader, Child) {
    let env = env();
    let hub = env.client("hub").await;
    env.kill_operator();
    let metrics_port = free_port();
    let a = env
        .spawn_operator_via(first.1, first.0, metrics_port, &ELECTION)
        .await;
    wait_for(
        "the first replica to lead",
        Duration::from_secs(30),
        || async { (lease_holder(&hub).await? == first.0).then_some(()) },
    )
    .await;
    let b = env.spawn_operator(second, free_port(), &ELECTION).await;
    (
        Leader {
            child: a,
            metrics_port,
        },
        b,
    )
}

/// The first replica of `two_replicas`, and where its metrics are served.
struct Leader {
    child: Child,
    metrics_port: u16,
}

impl Drop for Leader {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until the old leader has stopped its controllers and stands by
/// again, in process (its `multiregion_leader` gauge reads 0); returns how
/// long it took. It must still be running: losing the Lease is no crash.
async fn stands_by(leader: &mut Leader, within: Duration) -> Duration {
    let started = Instant::now();
    let url = format!("http://127.0.0.1:{}/metrics", leader.metrics_port);
    wait_for("the old leader to stand by", within, || {
        let url = url.clone();
        async move {
            let text = reqwest::get(&url).await.ok()?.text().await.ok()?;
            text.lines()
                .any(|l| l.trim() == "multiregion_leader 0")
                .then_some(())
        }
    })
    .await;
    assert!(
        matches!(leader.child.try_wait(), Ok(None)),
        "the old leader exited instead of standing by"
    );
    started.elapsed()
}

impl Leader {
    /// Every write this replica has sent: to the hub by kind (status,
    /// sinks, Events, Region status and finalizers) and to members by verb
    /// (placements, scaling, cleanup), from its own metrics.
    async fn writes_sent(&self) -> f64 {
        let url = format!("http://127.0.0.1:{}/metrics", self.metrics_port);
        let text = reqwest::get(&url).await.unwrap().text().await.unwrap();
        let member_write = |l: &str| {
            l.starts_with("multiregion_api_requests_total{")
                && l.contains("apiserver=\"member\"")
                && ["create", "patch", "update", "delete"]
                    .iter()
                    .any(|verb| l.contains(&format!("verb=\"{verb}\"")))
        };
        // Every replica, leader or not, renews its observer Lease: that is
        // not a leader's write.
        let leader_write = |l: &str| {
            l.starts_with("multiregion_api_writes_total{") && !l.contains("kind=\"observer_lease\"")
        };
        text.lines()
            .filter(|l| leader_write(l) || member_write(l))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }
}

/// After a leader test: the regions whole, the default operator back.
async fn back_to_one_operator(survivor: &mut Child) {
    let env = env();
    env.regions.lock().await.restore_all().await.unwrap();
    let _ = survivor.kill();
    let _ = survivor.wait();
    env.start_operator().await;
}

#[tokio::test]
async fn a_leader_frozen_past_its_lease_writes_nothing_when_it_wakes() {
    let _serial = serial().await;
    let _heal = HealOnPanic;
    let env = env();
    let hub = env.client("hub").await;
    let ns = "chaos-frozen";
    let hub_kubeconfig = env.kubeconfig("hub");
    install_traffic_crds();
    let (mut a, mut b) = two_replicas(("frozen-a", &hub_kubeconfig), "standby-b").await;
    let traffic = json!({"traffic": {
        "httpRoute": {"name": "web", "parentRefs": [{"name": "gw"}]},
        "dnsEndpoint": {"dnsName": "web.example.test", "recordTTL": 5}
    }});
    active_passive(&hub, ns, traffic).await;
    let sinks = Sinks::new(&hub, ns);

    // At steady state a leader writes nothing (its Lease and observer Lease
    // renewals are not counted): wait for that, so the count read is the
    // count at the stop.
    let sent_before = wait_for(
        "the leader at steady state",
        Duration::from_secs(30),
        || async {
            let before = a.writes_sent().await;
            tokio::time::sleep(Duration::from_secs(2)).await;
            (a.writes_sent().await == before).then_some(before)
        },
    )
    .await;
    signal(&a.child, "STOP");
    wait_for(
        "the standby to take the Lease",
        Duration::from_secs(30),
        || async { (lease_holder(&hub).await? == "standby-b").then_some(()) },
    )
    .await;
    env.regions.lock().await.stop_apiserver("us-east").unwrap();
    wait_weights(
        &hub,
        ns,
        "web",
        "us-east=0 eu-west=100",
        "the new leader's failover",
        Duration::from_secs(15),
    )
    .await;
    let woke = jiff::Timestamp::now();
    signal(&a.child, "CONT");
    let exited = stands_by(&mut a, Duration::from_secs(15)).await;
    let samples = weights_over(&hub, ns, Duration::from_secs(3)).await;
    let stale = events_by(&hub, ns, "frozen-a", woke).await;
    assert!(
        stale.is_empty(),
        "the old leader wrote after waking: {stale:?}"
    );
    assert_eq!(
        a.writes_sent().await,
        sent_before,
        "the old leader sent no write after waking: no status, sink, Event or Region write to the hub, no placement, scaling or cleanup to a member"
    );
    assert_eq!(
        sinks.weights("web", "web").await,
        Some((vec![0, 100], vec![0, 100])),
        "the sinks keep the new leader's weights"
    );
    assert!(
        samples.iter().all(|w| w == "us-east=0 eu-west=100"),
        "{samples:?}"
    );
    let s = status(&hub, ns, "web").await.unwrap();
    assert_eq!(
        s.failovers_in_last_hour, 1,
        "one failover, by the new leader"
    );
    report(
        "leader frozen past its lease",
        &samples,
        stale.len(),
        Some(exited),
    );
    drop(a);
    back_to_one_operator(&mut b).await;
    delete_app(&hub, ns, "web").await;
}

#[tokio::test]
async fn a_leader_cut_off_from_the_hub_stops_writing_and_the_other_takes_over() {
    let _serial = serial().await;
    let _heal = HealOnPanic;
    let env = env();
    let hub = env.client("hub").await;
    let ns = "chaos-cut-leader";
    let via_proxy = env.regions.lock().await.operator_kubeconfig("hub").unwrap();
    let (mut a, mut b) = two_replicas(("cut-a", &via_proxy), "reachable-b").await;
    active_passive(&hub, ns, json!({})).await;

    let cut = jiff::Timestamp::now();
    env.regions.lock().await.partition("hub").await.unwrap();
    let exited = stands_by(&mut a, Duration::from_secs(15)).await;
    wait_for(
        "the other replica to take the Lease",
        Duration::from_secs(30),
        || async { (lease_holder(&hub).await? == "reachable-b").then_some(()) },
    )
    .await;
    let took_over = Instant::now();
    env.regions.lock().await.stop_apiserver("us-east").unwrap();
    wait_weights(
        &hub,
        ns,
        "web",
        "us-east=0 eu-west=100",
        "a failover by the new leader",
        Duration::from_secs(15),
    )
    .await;
    let stale = events_by(&hub, ns, "cut-a", cut).await;
    assert!(stale.is_empty(), "the cut-off leader wrote: {stale:?}");
    let samples = vec![weights(&hub, ns, "web").await.unwrap_or_default()];
    report(
        "leader partitioned from the hub",
        &samples,
        stale.len(),
        Some(exited),
    );
    eprintln!(
        "chaos: new leader failed over {:.1}s after taking the Lease",
        took_over.elapsed().as_secs_f64()
    );
    env.regions.lock().await.heal("hub").await.unwrap();
    drop(a);
    back_to_one_operator(&mut b).await;
    delete_app(&hub, ns, "web").await;
}

#[tokio::test]
async fn a_hub_black_holed_for_less_than_the_renew_deadline_keeps_the_leader_leading() {
    let _serial = serial().await;
    let _heal = HealOnPanic;
    let env = env();
    let hub = env.client("hub").await;
    let ns = "chaos-hub-blip";
    let via_proxy = env.regions.lock().await.operator_kubeconfig("hub").unwrap();
    env.kill_operator();
    // Lease 9 s: renew deadline 6 s, a renewal every 1.3 s, each attempt
    // given at most 2 s.
    let election = ["--leader-election", "--lease-seconds", "9"];
    let metrics_port = free_port();
    let child = env
        .spawn_operator_via(&via_proxy, "blip-a", metrics_port, &election)
        .await;
    let mut leader = Leader {
        child,
        metrics_port,
    };
    wait_for("blip-a to lead", Duration::from_secs(30), || async {
        (lease_holder(&hub).await? == "blip-a").then_some(())
    })
    .await;
    active_passive(&hub, ns, json!({})).await;

    // The hub black-holed for 2.5 s (requests and answers dropped, as a
    // lost route does) while the active region dies.
    env.regions.lock().await.partition("hub").await.unwrap();
    env.regions.lock().await.stop_apiserver("us-east").unwrap();
    let leading = leader_samples(&leader, Duration::from_millis(2500)).await;
    env.regions.lock().await.heal("hub").await.unwrap();
    let healed = Instant::now();
    let mut after = leader_samples(&leader, Duration::from_secs(6)).await;
    after.extend(leading);
    assert!(
        after.iter().all(|l| *l == Some(true)),
        "the leader kept leading through a hub blip shorter than its renew deadline: {after:?}"
    );
    wait_weights(
        &hub,
        ns,
        "web",
        "us-east=0 eu-west=100",
        "the failover after the blip",
        Duration::from_secs(20),
    )
    .await;
    report(
        "hub black-holed 2.5 s (leader kept the Lease)",
        &[weights(&hub, ns, "web").await.unwrap_or_default()],
        0,
        Some(healed.elapsed()),
    );
    back_to_one_operator(&mut leader.child).await;
    delete_app(&hub, ns, "web").await;
}

/// Whether the replica leads (its `multiregion_leader` gauge), every 100 ms
/// for `span`; None when its metrics do not answer.
async fn leader_samples(leader: &Leader, span: Duration) -> Vec<Option<bool>> {
    let url = format!("http://127.0.0.1:{}/metrics", leader.metrics_port);
    sample(span, Duration::from_millis(100), || {
        let url = url.clone();
        async move {
            let text = reqwest::get(&url).await.ok()?.text().await.ok()?;
            let line = text
                .lines()
                .find(|l| l.starts_with("multiregion_leader "))?;
            Some(line.trim().ends_with(" 1"))
        }
    })
    .await
}

fn signal(child: &Child, signal: &str) {
    let status = std::process::Command::new("kill")
        .args([format!("-{signal}"), child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill -{signal}");
}

/// An admission policy that refuses every change to DNSEndpoints (`on`):
/// the DNS sink's writes fail until it is removed. Once on, it returns
/// when a (dry-run) DNSEndpoint write is refused in `ns`.
async fn refuse_dns_writes(hub: &Client, ns: &str, on: bool) {
    let refusal = Refusal {
        name: "refuse-dns",
        group: "externaldns.k8s.io",
        resource: "dnsendpoints",
        operations: &["CREATE", "UPDATE"],
        namespace: None,
    };
    refuse_writes(hub, &refusal, on).await;
    if !on {
        return;
    }
    let gvk = kube::api::GroupVersionKind::gvk("externaldns.k8s.io", "v1alpha1", "DNSEndpoint");
    let resource = kube::api::ApiResource::from_gvk_with_plural(&gvk, "dnsendpoints");
    let endpoints: Api<kube::api::DynamicObject> = Api::namespaced_with(hub.clone(), ns, &resource);
    let probe: kube::api::DynamicObject = serde_json::from_value(json!({
        "apiVersion": "externaldns.k8s.io/v1alpha1", "kind": "DNSEndpoint",
        "metadata": {"name": "refusal-probe"}, "spec": {"endpoints": []}
    }))
    .unwrap();
    let dry_run = kube::api::PostParams {
        dry_run: true,
        ..Default::default()
    };
    wait_for(
        "DNSEndpoint writes refused",
        Duration::from_secs(30),
        || async {
            endpoints
                .create(&dry_run, &probe)
                .await
                .is_err()
                .then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn a_sink_write_failing_mid_move_keeps_the_old_active_at_full_size() {
    let _serial = serial().await;
    let _heal = HealOnPanic;
    let env = env();
    let hub = env.client("hub").await;
    install_traffic_crds();
    let ns = "chaos-sink";
    let traffic = json!({"traffic": {
        "httpRoute": {"name": "web", "parentRefs": [{"name": "gw"}]},
        "dnsEndpoint": {"dnsName": "web.example.test", "recordTTL": 5}
    }});
    active_passive(&hub, ns, traffic).await;
    let sinks = Sinks::new(&hub, ns);
    wait_for("the sinks at us-east", Duration::from_secs(60), || async {
        (sinks.weights("web", "web").await? == (vec![100, 0], vec![100, 0])).then_some(())
    })
    .await;
    refuse_dns_writes(&hub, ns, true).await;

    let api: Api<multiregion::api::MultiRegionApp> = Api::namespaced(hub.clone(), ns);
    let over = json!({"spec": {"failover": {"activeOverride": "eu-west"}}});
    api.patch("web", &PatchParams::default(), &Patch::Merge(over))
        .await
        .unwrap();
    wait_for(
        "the route to move while DNS refuses",
        Duration::from_secs(60),
        || async {
            (sinks.weights("web", "web").await? == (vec![0, 100], vec![100, 0])).then_some(())
        },
    )
    .await;
    let us = env.client("us-east").await;
    let held = sample(
        Duration::from_secs(5),
        Duration::from_millis(500),
        || async { placed(&us, ns, "web").await.map(|(replicas, _)| replicas) },
    )
    .await;
    assert!(
        held.iter().all(|r| *r == Some(3)),
        "us-east kept full size: {held:?}"
    );
    let s = status(&hub, ns, "web").await.unwrap();
    let (published, reason, message) = condition(&s, "TrafficPublished").unwrap();
    assert_eq!(
        (published.as_str(), reason.as_str()),
        ("False", "SinkWriteFailed")
    );
    assert!(message.contains("DNSEndpoint"), "{message}");
    assert!(
        s.last_failover.unwrap().completed_at.is_none(),
        "the move is not complete"
    );

    refuse_dns_writes(&hub, ns, false).await;
    let started = Instant::now();
    wait_for(
        "us-east scaled down once DNS has the weights",
        Duration::from_secs(60),
        || async { (placed(&us, ns, "web").await?.0 == 1).then_some(()) },
    )
    .await;
    let s = status(&hub, ns, "web").await.unwrap();
    assert!(s.last_failover.unwrap().completed_at.is_some());
    assert_eq!(
        sinks.weights("web", "web").await,
        Some((vec![0, 100], vec![0, 100]))
    );
    report(
        "sink write failing mid-move",
        &[s.weights.unwrap_or_default()],
        0,
        Some(started.elapsed()),
    );
    delete_app(&hub, ns, "web").await;
}

/// Sets the replication lag annotation on the app's Deployment in a region,
/// measured now.
async fn report_lag(region: &str, ns: &str, seconds: u32) {
    let client = env().client(region).await;
    let api: Api<Deployment> = Api::namespaced(client, ns);
    let lag = json!({"metadata": {"annotations": {
        "multiregion.io/replication-lag-seconds": seconds.to_string(),
        "multiregion.io/replication-lag-observed-at": jiff::Timestamp::now().to_string(),
    }}});
    api.patch("web", &PatchParams::default(), &Patch::Merge(lag))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_failback_onto_a_lagging_region_waits_until_it_catches_up() {
    let _serial = serial().await;
    let _heal = HealOnPanic;
    let env = env();
    let hub = env.client("hub").await;
    let ns = "chaos-lag";
    let gate =
        json!({"failover": {"failbackHoldSeconds": 2, "replication": {"maxLagSeconds": 30}}});
    active_passive(&hub, ns, gate).await;
    report_lag("eu-west", ns, 0).await;
    env.regions.lock().await.stop_apiserver("us-east").unwrap();
    wait_weights(
        &hub,
        ns,
        "web",
        "us-east=0 eu-west=100",
        "the failover",
        Duration::from_secs(15),
    )
    .await;
    env.regions
        .lock()
        .await
        .start_apiserver("us-east")
        .await
        .unwrap();
    let us = env.client("us-east").await;
    wait_for("us-east placed again", Duration::from_secs(180), || async {
        placed(&us, ns, "web").await.map(|_| ())
    })
    .await;
    report_lag("us-east", ns, 500).await;
    let samples = weights_over(&hub, ns, Duration::from_secs(10)).await;
    assert!(
        samples.iter().all(|w| w == "us-east=0 eu-west=100"),
        "no failback onto stale data: {samples:?}"
    );
    let s = status(&hub, ns, "web").await.unwrap();
    assert_eq!(condition(&s, "PromotionBlocked").unwrap().0, "True");

    report_lag("us-east", ns, 3).await;
    let caught_up = Instant::now();
    wait_weights(
        &hub,
        ns,
        "web",
        "us-east=100 eu-west=0",
        "the failback once caught up",
        Duration::from_secs(60),
    )
    .await;
    report(
        "failback onto a lagging region",
        &samples,
        0,
        Some(caught_up.elapsed()),
    );
    delete_app(&hub, ns, "web").await;
}

#[tokio::test]
async fn removing_the_active_region_moves_traffic_make_before_break() {
    let _serial = serial().await;
    let _heal = HealOnPanic;
    let env = env();
    let hub = env.client("hub").await;
    let ns = "chaos-removed";
    active_passive(&hub, ns, json!({})).await;
    let mut spec = app_spec("ActivePassive", &["eu-west", "ap-south"], json!({}));
    spec["standby"] = json!({"replicas": 1});
    let removed = Instant::now();
    apply_app(&hub, ns, "web", spec).await;
    let eu = env.client("eu-west").await;
    let samples = sample(
        Duration::from_secs(6),
        Duration::from_millis(200),
        || async {
            let w = weights(&hub, ns, "web").await.unwrap_or_default();
            let eu_ready = placed(&eu, ns, "web").await.map_or(0, |(_, ready)| ready);
            (w, eu_ready)
        },
    )
    .await;
    for (w, eu_ready) in &samples {
        if w.contains("eu-west=100") {
            assert!(
                *eu_ready >= 2,
                "traffic moved to eu-west before it was ready: {w} with {eu_ready} ready"
            );
        }
    }
    wait_weights(
        &hub,
        ns,
        "web",
        "eu-west=100 ap-south=0",
        "the planned move",
        Duration::from_secs(60),
    )
    .await;
    let s = status(&hub, ns, "web").await.unwrap();
    assert_eq!(s.last_failover.unwrap().reason, MoveReason::RegionRemoved);
    let us = env.client("us-east").await;
    wait_for(
        "us-east's objects removed",
        Duration::from_secs(60),
        || async { placed(&us, ns, "web").await.is_none().then_some(()) },
    )
    .await;
    let weights: Vec<String> = samples.into_iter().map(|(w, _)| w).collect();
    report(
        "active region removed from spec",
        &weights,
        0,
        Some(removed.elapsed()),
    );
    delete_app(&hub, ns, "web").await;
}

#[tokio::test]
async fn a_wiped_status_is_rebuilt_without_moving_traffic() {
    let _serial = serial().await;
    let _heal = HealOnPanic;
    let env = env();
    let hub = env.client("hub").await;
    let ns = "chaos-wiped";
    active_passive(&hub, ns, json!({})).await;
    env.regions.lock().await.stop_apiserver("us-east").unwrap();
    wait_weights(
        &hub,
        ns,
        "web",
        "us-east=0 eu-west=100",
        "the failover",
        Duration::from_secs(15),
    )
    .await;
    env.regions
        .lock()
        .await
        .start_apiserver("us-east")
        .await
        .unwrap();
    let us = env.client("us-east").await;
    wait_for("us-east fenced", Duration::from_secs(180), || async {
        (placed(&us, ns, "web").await?.0 == 1).then_some(())
    })
    .await;

    // A restore without status, as from a backup.
    let api: Api<multiregion::api::MultiRegionApp> = Api::namespaced(hub.clone(), ns);
    let wiped = Instant::now();
    api.patch_status(
        "web",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": null})),
    )
    .await
    .unwrap();
    let samples = weights_over(&hub, ns, Duration::from_secs(8)).await;
    let seen: Vec<&String> = samples.iter().filter(|w| !w.is_empty()).collect();
    assert!(!seen.is_empty(), "the status was rebuilt");
    assert!(
        seen.iter().all(|w| *w == "us-east=0 eu-west=100"),
        "traffic stayed on eu-west: {samples:?}"
    );
    report("status wiped", &samples, 0, Some(wiped.elapsed()));
    delete_app(&hub, ns, "web").await;
}

#[tokio::test]
async fn a_member_namespace_deleted_by_hand_is_placed_again() {
    let _serial = serial().await;
    let _heal = HealOnPanic;
    let env = env();
    let hub = env.client("hub").await;
    let ns = "chaos-namespace";
    active_passive(&hub, ns, json!({})).await;
    let eu = env.client("eu-west").await;
    let namespaces: Api<Namespace> = Api::all(eu.clone());
    let deleted_uid = namespaces.get(ns).await.unwrap().metadata.uid;
    namespaces
        .delete(ns, &DeleteParams::default())
        .await
        .unwrap();
    let deleted = Instant::now();
    // The namespace goes once eu-west's KWOK has removed its pods: after
    // the 100-app test it may still be working through their deletions,
    // so the bound is wide. The operator may create it again between two
    // polls: a namespace with another uid is the old one gone.
    let gone = tokio::time::timeout(
        Duration::from_secs(300),
        wait_for("the namespace gone", Duration::from_secs(3600), || async {
            let now = namespaces.get_opt(ns).await.ok()?;
            now.is_none_or(|n| n.metadata.uid != deleted_uid)
                .then_some(())
        }),
    )
    .await;
    if gone.is_err() {
        panic!(
            "eu-west's namespace not gone after 300 s: {}",
            terminating_namespace(&eu, ns).await
        );
    }
    wait_for(
        "eu-west's standby placed again",
        Duration::from_secs(120),
        || async { (placed(&eu, ns, "web").await? == (1, 1)).then_some(()) },
    )
    .await;
    let s = wait_for("eu-west Healthy again", Duration::from_secs(60), || async {
        let s = status(&hub, ns, "web").await?;
        let healthy = s.regions.iter().all(|r| r.reason.is_none());
        healthy.then_some(s)
    })
    .await;
    assert_eq!(s.weights.as_deref(), Some("us-east=100 eu-west=0"));
    report(
        "member namespace deleted",
        &[s.weights.unwrap_or_default()],
        0,
        Some(deleted.elapsed()),
    );
    delete_app(&hub, ns, "web").await;
}

/// What keeps a member namespace from going: its conditions and the pods
/// left in it, for a test that timed out waiting.
async fn terminating_namespace(member: &Client, ns: &str) -> String {
    let namespace = Api::<Namespace>::all(member.clone()).get_opt(ns).await;
    let conditions = namespace.map(|n| {
        n.map(|n| {
            let deleting = n.metadata.deletion_timestamp.is_some();
            let conditions = n.status.and_then(|s| s.conditions);
            format!(
                "uid {:?}, deleting {deleting}, {conditions:?}",
                n.metadata.uid
            )
        })
    });
    let pods = Api::<Pod>::namespaced(member.clone(), ns)
        .list(&Default::default())
        .await
        .map(|l| {
            l.items
                .iter()
                .map(|p| {
                    format!(
                        "{} (finalizers {:?})",
                        p.metadata.name.clone().unwrap_or_default(),
                        p.metadata.finalizers
                    )
                })
                .collect::<Vec<_>>()
        });
    format!("conditions {conditions:?}; pods {pods:?}")
}

#[tokio::test]
async fn a_black_holed_endpoint_delays_no_other_apps_failover() {
    let _serial = serial().await;
    let _heal = HealOnPanic;
    let env = env();
    let hub = env.client("hub").await;
    const APPS: usize = 100;
    let ns = "chaos-blackhole";
    let regions = ["us-east", "eu-west", "ap-south"];
    let mut spec = app_spec("ActiveActive", &regions, http_check());
    spec["workload"]["replicas"] = json!(1);
    for i in 0..APPS {
        apply_app(&hub, ns, &format!("web-{i}"), spec.clone()).await;
    }
    let all = |want: &'static str| {
        let hub = hub.clone();
        async move {
            for i in 0..APPS {
                if weights(&hub, ns, &format!("web-{i}")).await.as_deref() != Some(want) {
                    return None;
                }
            }
            Some(())
        }
    };
    wait_for(
        "every app on all three regions",
        Duration::from_secs(300),
        || all("us-east=34 eu-west=33 ap-south=33"),
    )
    .await;
    env.regions
        .lock()
        .await
        .blackhole_endpoint("eu-west")
        .await
        .unwrap();
    wait_for(
        "every app off the black-holed endpoint",
        Duration::from_secs(120),
        || all("us-east=50 eu-west=0 ap-south=50"),
    )
    .await;

    // With eu-west's checks hanging until their timeout, another region's
    // failure is still seen by every app in about the detection time.
    env.regions.lock().await.stop_apiserver("us-east").unwrap();
    env.regions.lock().await.stop_endpoint("us-east").unwrap();
    let failed = Instant::now();
    wait_for("every app off us-east too", Duration::from_secs(30), || {
        all("us-east=0 eu-west=0 ap-south=100")
    })
    .await;
    let took = failed.elapsed();
    report(
        &format!("black-holed endpoint, {APPS} apps"),
        &[],
        0,
        Some(took),
    );
    for i in 0..APPS {
        delete_app(&hub, ns, &format!("web-{i}")).await;
    }
    env.regions.lock().await.restore_all().await.unwrap();
}
