//! Failure judged on evidence, end to end against real API servers: a
//! member that answers 500, 429 or 503 while it serves, a Region deleted on the hub, lag reports that
//! cannot be believed, a config push rolling every region while the active
//! dies, and a spec made invalid while the active dies. Each test prints
//! its samples (the weights every 200 ms) and how long recovery took.

use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::{Client, ResourceExt};
use multiregion::api::{REGION_IN_USE, Region};
use serde_json::{Value, json};

use crate::common::operator::{
    HealOnPanic, Refusal, app_spec, apply_app, condition, delete_app, ensure_namespace, env,
    join_region, placed, refuse_writes, sample, serial, status, wait_weights, weights,
};
use crate::common::wait_for;

const US_ACTIVE: &str = "us-east=100 eu-west=0";
const EU_ACTIVE: &str = "us-east=0 eu-west=100";

/// The app's weights every 200 ms for `span`.
async fn weights_over(hub: &Client, ns: &str, span: Duration) -> Vec<String> {
    sample(span, Duration::from_millis(200), || async {
        weights(hub, ns, "web").await.unwrap_or_default()
    })
    .await
}

/// One line per test: samples, the regions with weight at each distinct
/// sample, and seconds to recover.
fn report(test: &str, samples: &[String], recovered: Option<Duration>) {
    let mut seen: Vec<&str> = samples.iter().map(String::as_str).collect();
    seen.dedup();
    eprintln!(
        "evidence: {test}: {} samples, weights seen {seen:?}, recovered in {}",
        samples.len(),
        recovered.map_or("-".into(), |d| format!("{:.1}s", d.as_secs_f64()))
    );
}

/// An ActivePassive app on us-east and eu-west with `extra`, us-east
/// active and eu-west's standby placed.
async fn active_passive(hub: &Client, ns: &str, extra: Value) {
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
        US_ACTIVE,
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

/// The cause of the region's Unknown evidence in the app's status.
async fn unknown_cause(hub: &Client, ns: &str, region: &str) -> Option<(String, String)> {
    let s = status(hub, ns, "web").await?;
    let r = s.regions.into_iter().find(|r| r.name == region)?;
    r.unknown.map(|u| (u.cause, u.message))
}

#[tokio::test]
async fn a_member_answering_500_while_it_drains_keeps_its_traffic() {
    let _serial = serial().await;
    let _heal = HealOnPanic;
    let env = env();
    let hub = env.client("hub").await;
    let ns = "evidence-drain";
    // No HTTP check: the member's API server is the only evidence, and a
    // 5xx from it says nothing either way.
    active_passive(&hub, ns, json!({"healthCheck": {"unknownSeconds": 120}})).await;

    // A rolling upgrade: the API server is told to stop; for 20 s /readyz
    // answers 500 while it serves, then it exits.
    env.regions.lock().await.drain_apiserver("us-east").unwrap();
    let drained = Instant::now();
    wait_for(
        "us-east's evidence Unknown: /readyz answers 500",
        Duration::from_secs(10),
        || async {
            let (cause, message) = unknown_cause(&hub, ns, "us-east").await?;
            (cause == "MemberTroubled" && message.contains("500")).then_some(())
        },
    )
    .await;
    let left = Duration::from_secs(18).saturating_sub(drained.elapsed());
    let samples = weights_over(&hub, ns, left).await;
    assert!(
        samples.iter().all(|w| w == US_ACTIVE),
        "a region answering 500 keeps its traffic: {samples:?}"
    );
    let s = status(&hub, ns, "web").await.unwrap();
    assert_eq!(condition(&s, "EvidenceUnknown").unwrap().0, "True");
    let us = s.regions.iter().find(|r| r.name == "us-east").unwrap();
    assert_eq!(us.consecutive_failures, 0, "no failed round counted");
    assert_eq!(s.failovers_in_last_hour, 0);

    // Then it exits: that is evidence, and traffic moves.
    wait_weights(
        &hub,
        ns,
        "web",
        EU_ACTIVE,
        "the failover once it is gone",
        Duration::from_secs(30),
    )
    .await;
    report("member /readyz 500 while draining (18 s)", &samples, None);
    // A drained server may linger after it stopped listening (in-flight
    // requests): gone for sure, then back.
    let mut regions = env.regions.lock().await;
    regions.stop_apiserver("us-east").unwrap();
    regions.start_apiserver("us-east").await.unwrap();
    drop(regions);
    delete_app(&hub, ns, "web").await;
}

/// The operator's path to a member answers `code` to every request (the
/// member keeps running and its endpoint keeps serving).
async fn member_answers(region: &str, code: Option<u16>) {
    let regions = env().regions.lock().await;
    regions.answer(region, code).await.unwrap();
}

/// us-east's line in the app's status: reason and message.
async fn region_reason(hub: &Client, ns: &str, region: &str) -> Option<(String, String)> {
    let s = status(hub, ns, "web").await?;
    let r = s.regions.into_iter().find(|r| r.name == region)?;
    Some((format!("{:?}", r.reason?), r.message.unwrap_or_default()))
}

#[tokio::test]
async fn a_member_answering_429_then_503_while_it_serves_keeps_its_traffic() {
    let _serial = serial().await;
    let _heal = HealOnPanic;
    let env = env();
    let hub = env.client("hub").await;
    // Two apps: one with no HTTP check (the member's API server is the only
    // evidence), one whose HTTP check keeps passing.
    let (bare, checked) = ("evidence-errors", "evidence-errors-http");
    active_passive(&hub, bare, json!({"healthCheck": {"unknownSeconds": 120}})).await;
    active_passive(
        &hub,
        checked,
        json!({"healthCheck": {"http": {"path": "/healthz"}}}),
    )
    .await;
    let both = || async {
        let (a, b) = (
            weights(&hub, bare, "web").await,
            weights(&hub, checked, "web").await,
        );
        format!("{} | {}", a.unwrap_or_default(), b.unwrap_or_default())
    };
    let steady = format!("{US_ACTIVE} | {US_ACTIVE}");

    let mut samples = Vec::new();
    for code in [429, 503] {
        member_answers("us-east", Some(code)).await;
        let told = Instant::now();
        wait_for(
            &format!("both apps to see us-east answer {code}"),
            Duration::from_secs(20),
            || async {
                let (cause, message) = unknown_cause(&hub, bare, "us-east").await?;
                let (_, degraded) = region_reason(&hub, checked, "us-east").await?;
                let code = code.to_string();
                (cause == "MemberTroubled" && message.contains(&code) && degraded.contains(&code))
                    .then_some(())
            },
        )
        .await;
        let left = Duration::from_secs(15).saturating_sub(told.elapsed());
        samples.extend(sample(left, Duration::from_millis(200), both).await);
    }
    assert!(
        samples.iter().all(|w| *w == steady),
        "a member answering 429 or 503 keeps its traffic: {samples:?}"
    );
    for ns in [bare, checked] {
        let s = status(&hub, ns, "web").await.unwrap();
        let us = s.regions.iter().find(|r| r.name == "us-east").unwrap();
        assert_eq!(us.consecutive_failures, 0, "{ns}: no failed round counted");
        assert_eq!(s.failovers_in_last_hour, 0, "{ns}");
    }
    let s = status(&hub, bare, "web").await.unwrap();
    assert_eq!(condition(&s, "EvidenceUnknown").unwrap().0, "True");

    member_answers("us-east", None).await;
    let healed = Instant::now();
    wait_for(
        "us-east's evidence clear again",
        Duration::from_secs(30),
        || async {
            let bare_clear = unknown_cause(&hub, bare, "us-east").await.is_none()
                && status(&hub, bare, "web").await.is_some();
            let checked_clear = region_reason(&hub, checked, "us-east")
                .await
                .is_none_or(|(reason, _)| reason != "ControlPlaneUnreachable");
            (bare_clear && checked_clear).then_some(())
        },
    )
    .await;
    report(
        "member answering 429 for 15 s, then 503 for 15 s",
        &samples,
        Some(healed.elapsed()),
    );
    delete_app(&hub, bare, "web").await;
    delete_app(&hub, checked, "web").await;
}

#[tokio::test]
async fn a_region_deleted_under_a_serving_app_keeps_its_traffic() {
    let _serial = serial().await;
    let _heal = HealOnPanic;
    let env = env();
    let hub = env.client("hub").await;
    let ns = "evidence-region-deleted";
    active_passive(&hub, ns, json!({})).await;
    let regions: Api<Region> = Api::all(hub.clone());
    wait_for(
        "us-east held while in use",
        Duration::from_secs(30),
        || async {
            let region = regions.get("us-east").await.ok()?;
            region
                .finalizers()
                .iter()
                .any(|f| f == REGION_IN_USE)
                .then_some(())
        },
    )
    .await;

    regions
        .delete("us-east", &DeleteParams::default())
        .await
        .unwrap();
    let samples = weights_over(&hub, ns, Duration::from_secs(10)).await;
    assert!(
        samples.iter().all(|w| w == US_ACTIVE),
        "a deleted Region moves no traffic: {samples:?}"
    );
    let region = regions.get("us-east").await.unwrap();
    assert!(
        region.metadata.deletion_timestamp.is_some(),
        "still there, held while in use"
    );
    let s = status(&hub, ns, "web").await.unwrap();
    let us = s.regions.iter().find(|r| r.name == "us-east").unwrap();
    assert_eq!(us.consecutive_failures, 0, "no failed round counted");

    // The app leaves: the Region goes, and is joined again for the next
    // tests (other apps may still name us-east: their hold is lifted).
    delete_app(&hub, ns, "web").await;
    let started = Instant::now();
    let patch = json!({"metadata": {"finalizers": []}});
    let _ = regions
        .patch("us-east", &PatchParams::default(), &Patch::Merge(patch))
        .await;
    wait_for("us-east gone", Duration::from_secs(60), || async {
        regions
            .get_opt("us-east")
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await;
    join_region(&*env.regions.lock().await, "us-east").await;
    report(
        "Region deleted under a serving app",
        &samples,
        Some(started.elapsed()),
    );
}

/// Writes the lag annotations on the app's Deployment in a region; an
/// `observed_at` of None removes the time.
async fn report_lag(region: &str, ns: &str, seconds: &str, observed_at: Option<jiff::Timestamp>) {
    let client = env().client(region).await;
    let api: Api<Deployment> = Api::namespaced(client, ns);
    let lag = json!({"metadata": {"annotations": {
        "multiregion.io/replication-lag-seconds": seconds,
        "multiregion.io/replication-lag-observed-at": observed_at.map(|t| t.to_string()),
    }}});
    api.patch("web", &PatchParams::default(), &Patch::Merge(lag))
        .await
        .unwrap();
}

#[tokio::test]
async fn lag_reports_that_cannot_be_believed_promote_nothing() {
    let _serial = serial().await;
    let _heal = HealOnPanic;
    let env = env();
    let hub = env.client("hub").await;
    let ns = "evidence-lag";
    let gate = json!({"failover": {"replication": {"maxLagSeconds": 30}}});
    active_passive(&hub, ns, gate).await;
    let now = jiff::Timestamp::now;
    report_lag("eu-west", ns, "-1", Some(now())).await;
    env.regions.lock().await.stop_apiserver("us-east").unwrap();
    let mut samples = Vec::new();
    let hour_ago = now() - jiff::SignedDuration::from_hours(1);
    for (what, seconds, at) in [
        ("negative", "-1", Some(now())),
        ("-inf", "-inf", Some(now())),
        ("undated", "0", None),
        ("an hour old", "0", Some(hour_ago)),
    ] {
        report_lag("eu-west", ns, seconds, at).await;
        wait_for(
            &format!("PromotionBlocked with a {what} lag"),
            Duration::from_secs(15),
            || async {
                let s = status(&hub, ns, "web").await?;
                let (state, _, message) = condition(&s, "PromotionBlocked")?;
                (state == "True" && message.contains("not reported")).then_some(())
            },
        )
        .await;
        let seen = weights_over(&hub, ns, Duration::from_secs(3)).await;
        assert!(
            seen.iter().all(|w| w == US_ACTIVE),
            "{what}: nothing promoted: {seen:?}"
        );
        samples.extend(seen);
    }
    report_lag("eu-west", ns, "2", Some(now())).await;
    let believed = Instant::now();
    wait_weights(
        &hub,
        ns,
        "web",
        EU_ACTIVE,
        "promoted on a fresh report",
        Duration::from_secs(15),
    )
    .await;
    report(
        "lag reports negative, -inf, undated, stale",
        &samples,
        Some(believed.elapsed()),
    );
    env.regions
        .lock()
        .await
        .start_apiserver("us-east")
        .await
        .unwrap();
    delete_app(&hub, ns, "web").await;
}

/// A ConfigMap in the app's hub namespace, propagated by the app.
async fn config(hub: &Client, ns: &str, name: &str, value: &str) {
    ensure_namespace(hub, ns).await;
    let api: Api<ConfigMap> = Api::namespaced(hub.clone(), ns);
    let body = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"value": value}});
    api.patch(
        name,
        &PatchParams::apply("test").force(),
        &Patch::Apply(body),
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn a_config_push_rolling_every_region_does_not_hide_an_active_that_dies() {
    let _serial = serial().await;
    let _heal = HealOnPanic;
    let env = env();
    let hub = env.client("hub").await;
    let ns = "evidence-push";
    config(&hub, ns, "web-config", "1").await;
    active_passive(
        &hub,
        ns,
        json!({"propagate": {"configMaps": [{"name": "web-config"}]}}),
    )
    .await;

    // The push rolls both regions; us-east's nodes die with it, so its
    // rollout never ends.
    env.regions.lock().await.stop_nodes("us-east").unwrap();
    config(&hub, ns, "web-config", "2").await;
    let pushed = Instant::now();
    let samples = weights_over(&hub, ns, Duration::from_secs(2)).await;
    wait_weights(
        &hub,
        ns,
        "web",
        EU_ACTIVE,
        "the failover during the push",
        Duration::from_secs(45),
    )
    .await;
    let failed_over = pushed.elapsed();
    report(
        "config push while the active dies",
        &samples,
        Some(failed_over),
    );
    env.regions
        .lock()
        .await
        .start_nodes("us-east")
        .await
        .unwrap();
    delete_app(&hub, ns, "web").await;
}

#[tokio::test]
async fn an_invalid_spec_does_not_stop_the_failover() {
    let _serial = serial().await;
    let _heal = HealOnPanic;
    let env = env();
    let hub = env.client("hub").await;
    let ns = "evidence-invalid";
    active_passive(&hub, ns, json!({})).await;

    // An override that cannot apply (found only at run time): the spec is
    // invalid from then on.
    let bad = json!({"patches": [{"op": "remove", "path": "/spec/template/spec/containers/5"}]});
    let mut spec = app_spec("ActivePassive", &["us-east", "eu-west"], json!({}));
    spec["regions"][1]["overrides"] = bad;
    apply_app(&hub, ns, "web", spec).await;
    wait_for(
        "Ready=False InvalidSpec",
        Duration::from_secs(30),
        || async {
            let s = status(&hub, ns, "web").await?;
            (condition(&s, "Ready")?.1 == "InvalidSpec").then_some(())
        },
    )
    .await;

    env.regions.lock().await.stop_apiserver("us-east").unwrap();
    let stopped = Instant::now();
    let samples = weights_over(&hub, ns, Duration::from_secs(1)).await;
    wait_weights(
        &hub,
        ns,
        "web",
        EU_ACTIVE,
        "the failover with an invalid spec",
        Duration::from_secs(20),
    )
    .await;
    report(
        "invalid spec while the active dies",
        &samples,
        Some(stopped.elapsed()),
    );
    let s = status(&hub, ns, "web").await.unwrap();
    let (_, reason, message) = condition(&s, "Ready").unwrap();
    assert_eq!(reason, "InvalidSpec", "still said");
    assert!(
        message.contains("spec.regions[1].overrides.patches[0]"),
        "{message}"
    );
    let eu = env.client("eu-west").await;
    wait_for(
        "eu-west scaled up with the last valid spec",
        Duration::from_secs(30),
        || async { (placed(&eu, ns, "web").await?.0 == 3).then_some(()) },
    )
    .await;
    env.regions
        .lock()
        .await
        .start_apiserver("us-east")
        .await
        .unwrap();
    delete_app(&hub, ns, "web").await;
}

/// The CA certificate (PEM) and API server URL of a region, from its
/// kubeconfig: its API server is an HTTPS endpoint signed by that CA, whose
/// `/livez` answers anyone.
fn https_endpoint(region: &str) -> (String, String) {
    use base64::Engine as _;
    let kubeconfig = kube::config::Kubeconfig::read_from(env().kubeconfig(region)).unwrap();
    let cluster = kubeconfig.clusters[0].cluster.clone().unwrap();
    let ca = base64::engine::general_purpose::STANDARD
        .decode(cluster.certificate_authority_data.unwrap())
        .unwrap();
    (String::from_utf8(ca).unwrap(), cluster.server.unwrap())
}

#[tokio::test]
async fn https_checks_trust_the_ca_bundle_they_are_given() {
    let _serial = serial().await;
    let _heal = HealOnPanic;
    let hub = env().client("hub").await;
    let ns = "evidence-ca";
    let (us_ca, us_url) = https_endpoint("us-east");
    let (eu_ca, eu_url) = https_endpoint("eu-west");
    ensure_namespace(&hub, ns).await;
    let bundles: Api<ConfigMap> = Api::namespaced(hub.clone(), ns);
    let bundle = |pem: String| json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cas"}, "data": {"ca.crt": pem}});
    let apply = PatchParams::apply("test").force();
    bundles
        .patch(
            "cas",
            &apply,
            &Patch::Apply(bundle(format!("{us_ca}{eu_ca}"))),
        )
        .await
        .unwrap();
    let spec = app_spec(
        "ActiveActive",
        &["us-east", "eu-west"],
        json!({
            "regions": [{"name": "us-east", "endpoint": us_url}, {"name": "eu-west", "endpoint": eu_url}],
            "healthCheck": {"http": {"path": "/livez", "caBundle": {"configMap": "cas"}}}
        }),
    );
    apply_app(&hub, ns, "web", spec).await;
    wait_weights(
        &hub,
        ns,
        "web",
        "us-east=50 eu-west=50",
        "both trusted",
        Duration::from_secs(120),
    )
    .await;

    // eu-west's CA leaves the bundle: its API server's certificate is no
    // longer trusted, so its check fails.
    bundles
        .patch("cas", &apply, &Patch::Apply(bundle(us_ca)))
        .await
        .unwrap();
    let changed = Instant::now();
    wait_weights(
        &hub,
        ns,
        "web",
        "us-east=100 eu-west=0",
        "eu-west untrusted",
        Duration::from_secs(30),
    )
    .await;
    let s = status(&hub, ns, "web").await.unwrap();
    let eu = s.regions.iter().find(|r| r.name == "eu-west").unwrap();
    assert_eq!(
        eu.reason.as_ref().map(|r| r.to_string()),
        Some("HttpProbeFailed".into())
    );
    report(
        "CA bundle without eu-west's CA",
        &[],
        Some(changed.elapsed()),
    );

    // A bundle that is missing is the hub's mistake: the check is skipped
    // and each region's API server and pods decide, as without one.
    bundles
        .delete("cas", &DeleteParams::default())
        .await
        .unwrap();
    wait_weights(
        &hub,
        ns,
        "web",
        "us-east=50 eu-west=50",
        "judged without the check",
        Duration::from_secs(30),
    )
    .await;
    delete_app(&hub, ns, "web").await;
}

/// The Region's condition of this type: (status, reason).
async fn region_condition(hub: &Client, region: &str, type_: &str) -> Option<(String, String)> {
    let regions: Api<Region> = Api::all(hub.clone());
    let c = regions
        .get(region)
        .await
        .ok()?
        .status?
        .conditions
        .into_iter()
        .find(|c| c.type_ == type_)?;
    Some((c.status, c.reason))
}

#[tokio::test]
async fn a_kubeconfig_secret_replaced_by_a_broken_one_keeps_the_working_client() {
    let _serial = serial().await;
    let _heal = HealOnPanic;
    let hub = env().client("hub").await;
    let ns = "evidence-secret";
    active_passive(&hub, ns, json!({})).await;
    let secrets: Api<k8s_openapi::api::core::v1::Secret> =
        Api::namespaced(hub.clone(), crate::common::operator::OPERATOR_NAMESPACE);
    let good = secrets.get("us-east-kubeconfig").await.unwrap();
    let data = |value: &[u8]| {
        use base64::Engine as _;
        let encoded = base64::engine::general_purpose::STANDARD.encode(value);
        json!({"data": {"kubeconfig": encoded}})
    };

    // A GitOps Replace gone wrong: the key now holds no kubeconfig.
    let broken = data(b"this is not a kubeconfig");
    secrets
        .patch(
            "us-east-kubeconfig",
            &PatchParams::default(),
            &Patch::Merge(broken),
        )
        .await
        .unwrap();
    let replaced = Instant::now();
    wait_for(
        "CredentialsCurrent=False",
        Duration::from_secs(30),
        || async {
            let (state, reason) = region_condition(&hub, "us-east", "CredentialsCurrent").await?;
            (state == "False" && reason == "KeptLastWorking").then_some(())
        },
    )
    .await;
    let samples = weights_over(&hub, ns, Duration::from_secs(5)).await;
    assert!(samples.iter().all(|w| w == US_ACTIVE), "{samples:?}");
    let s = status(&hub, ns, "web").await.unwrap();
    let us = s.regions.iter().find(|r| r.name == "us-east").unwrap();
    assert_eq!(us.consecutive_failures, 0, "no failed round counted");
    let metrics = env().metrics().await;
    assert!(
        metrics.contains(r#"multiregion_region_credentials_stale{region="us-east"} 1"#),
        "the metric says so"
    );

    // The Secret fixed: the new credentials are used again.
    let original = good
        .data
        .as_ref()
        .and_then(|d| d.get("kubeconfig"))
        .map(|b| b.0.clone())
        .unwrap();
    secrets
        .patch(
            "us-east-kubeconfig",
            &PatchParams::default(),
            &Patch::Merge(data(&original)),
        )
        .await
        .unwrap();
    wait_for(
        "CredentialsCurrent=True",
        Duration::from_secs(30),
        || async {
            let (state, _) = region_condition(&hub, "us-east", "CredentialsCurrent").await?;
            (state == "True").then_some(())
        },
    )
    .await;
    report(
        "kubeconfig Secret broken for a while",
        &samples,
        Some(replaced.elapsed()),
    );
    delete_app(&hub, ns, "web").await;
}

/// Every write of the status of apps in `ns` refused (`on`), or no more.
async fn refuse_status_writes(hub: &Client, ns: &str, on: bool) {
    let refusal = Refusal {
        name: "evidence-refuse-status",
        group: "multiregion.io",
        resource: "multiregionapps/status",
        operations: &["UPDATE"],
        namespace: Some(ns),
    };
    refuse_writes(hub, &refusal, on).await;
}

#[tokio::test]
async fn a_refused_status_write_never_moves_the_sinks_back_and_forth() {
    use crate::common::operator::{Sinks, install_traffic_crds};
    let _serial = serial().await;
    let _heal = HealOnPanic;
    let env = env();
    let hub = env.client("hub").await;
    install_traffic_crds();
    let ns = "evidence-status-refused";
    let traffic = json!({"traffic": {
        "httpRoute": {"name": "web", "parentRefs": [{"name": "global-gw", "namespace": "gateway"}]},
        "dnsEndpoint": {"dnsName": "web.example.com", "recordTTL": 30}
    }});
    let sinks = Sinks::new(&hub, ns);
    active_passive(&hub, ns, traffic).await;
    let us = (vec![100, 0], vec![100, 0]);
    wait_for("sinks at us-east", Duration::from_secs(60), || async {
        (sinks.weights("web", "web").await? == us).then_some(())
    })
    .await;

    refuse_status_writes(&hub, ns, true).await;
    let apps: Api<multiregion::api::MultiRegionApp> = Api::namespaced(hub.clone(), ns);
    let generation = status(&hub, ns, "web").await.unwrap().observed_generation;
    wait_for("status writes refused", Duration::from_secs(30), || async {
        // The same value again: a write that changes nothing if it passes.
        let probe = json!({"status": {"observedGeneration": generation}});
        let refused = apps
            .patch_status("web", &PatchParams::default(), &Patch::Merge(probe))
            .await
            .is_err();
        refused.then_some(())
    })
    .await;
    env.regions.lock().await.stop_apiserver("us-east").unwrap();
    let samples = sample(
        Duration::from_secs(10),
        Duration::from_millis(200),
        || async { format!("{:?}", sinks.weights("web", "web").await) },
    )
    .await;
    let mut seen = samples.clone();
    seen.dedup();
    assert_eq!(
        seen.len(),
        1,
        "the sinks never moved while status was refused: {seen:?}"
    );

    refuse_status_writes(&hub, ns, false).await;
    let lifted = Instant::now();
    let eu = (vec![0, 100], vec![0, 100]);
    wait_for(
        "the failover once status is written",
        Duration::from_secs(30),
        || async { (sinks.weights("web", "web").await? == eu).then_some(()) },
    )
    .await;
    assert_eq!(weights(&hub, ns, "web").await.as_deref(), Some(EU_ACTIVE));
    report(
        "status writes refused during a failover",
        &samples,
        Some(lifted.elapsed()),
    );
    env.regions
        .lock()
        .await
        .start_apiserver("us-east")
        .await
        .unwrap();
    delete_app(&hub, ns, "web").await;
}
