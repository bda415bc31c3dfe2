//! No region is special, end to end: the hub spread over three regions
//! (`localregions up --spread-hub`, network namespaces: root), one
//! operator replica in each region, each observing every region from
//! there and publishing what it sees on its observer Lease.
//!
//! - The leader alone cut off from the active region moves nothing for
//!   45 s, neither for an app judged by its API server nor for one judged
//!   by an HTTP check of its endpoint: the two other replicas still reach
//!   both (their own checks of the endpoint pass), and status says so.
//! - An isolated active region: its replica, cut off from the hub and from
//!   the other regions, fences it (role standby, standby replicas) before
//!   the majority promotes another region; never two regions active. The
//!   HTTP-checked app moves too: a loss the majority sees still counts.
//!   An app's PostgreSQL primary in the isolated region is fenced by that
//!   region's replica (read only, sessions ended) before the majority
//!   promotes the standby elsewhere: never two databases taking writes.
//! - The leader's region (then the active one) lost whole, its replica and
//!   its part of the hub with it: another replica leads and moves the
//!   traffic, though a minority of observers lies (a Lease renewed all
//!   along that says every region serves) or is stale.
//!
//! Prints one `spread:` line with what it observed.

mod common;

use std::time::{Duration, Instant};

use common::operator::{app_spec, apply_app, lease_holder, sample, status, wait_weights, weights};
use common::spread::{
    every_replica_sees_every_region_serving, is_root, lie, observer_views, observer_writes,
    publish_observer, start_replica,
};
use common::wait_for;
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::Api;
use kube::{Client, ResourceExt};
use localregions::Guard;
use serde_json::json;

const NAMESPACE: &str = "spread";
/// The app whose regions are judged by an HTTP check of their endpoints.
const CHECKED: &str = "checked";
/// The app with a PostgreSQL data tier (us-east's database the primary).
const STORED: &str = "stored";

/// The Secret of the regions' database URIs the stored app names.
async fn database_secret(regions: &Guard, hub: &Client) {
    let uris: std::collections::BTreeMap<String, String> = regions
        .databases()
        .iter()
        .map(|d| (d.region.clone(), d.uri()))
        .collect();
    let api: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(hub.clone(), NAMESPACE);
    let secret = json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "shop-db"}, "stringData": uris,
    });
    let params = kube::api::PatchParams::apply("test").force();
    api.patch("shop-db", &params, &kube::api::Patch::Apply(secret))
        .await
        .expect("the Secret of database URIs");
}

/// Whether a region's database takes writes now: a primary (not in
/// recovery) whose new transactions are not read only (the fence).
async fn takes_writes(regions: &Guard, region: &str) -> Option<bool> {
    let client = regions
        .database(region)
        .ok()?
        .connect("postgres")
        .await
        .ok()?;
    let row = client
        .query_one(
            "SELECT NOT pg_is_in_recovery() AND current_setting('default_transaction_read_only') = 'off'",
            &[],
        )
        .await
        .ok()?;
    Some(row.get(0))
}

/// The role label and replicas of the app's Deployment in a region, as
/// the region's own API server says (the test's view is never cut).
async fn role_in(regions: &Guard, region: &str) -> Option<(String, i32)> {
    let client = regions.client(region).await.ok()?;
    let api: Api<Deployment> = Api::namespaced(client, NAMESPACE);
    let deployment = api.get_opt("shop").await.ok()??;
    let role = deployment.labels().get("multiregion.io/role")?.clone();
    Some((role, deployment.spec?.replicas?))
}

/// What the app's role ConfigMap in a region says: role and who decided.
async fn role_map(regions: &Guard, region: &str) -> Option<(String, String)> {
    let client = regions.client(region).await.ok()?;
    let api: Api<ConfigMap> = Api::namespaced(client, NAMESPACE);
    let data = api.get_opt("shop-multiregion-role").await.ok()??.data?;
    Some((data.get("role")?.clone(), data.get("decidedBy")?.clone()))
}

async fn wait_role_map(regions: &Guard, region: &str, role: &str, by: &str) {
    wait_for(
        &format!("{region}'s role ConfigMap to say {role} ({by})"),
        Duration::from_secs(20),
        || async {
            let seen = role_map(regions, region).await?;
            (seen.0 == role && seen.1 == by).then_some(())
        },
    )
    .await;
}

/// When, after the isolation, the old active was fenced and the new one
/// promoted; how many samples showed two regions active; the same for the
/// stored app's databases.
struct Isolation {
    fenced: Duration,
    promoted: Duration,
    both_active: usize,
    database_fenced: Duration,
    database_promoted: Duration,
    both_writable: usize,
}

async fn isolate_the_active(regions: &mut Guard, hub: &Client) -> Isolation {
    regions.isolate("us-east").unwrap();
    let cut = Instant::now();
    let (mut fenced, mut promoted, mut both_active) = (None, None, 0);
    let (mut database_fenced, mut database_promoted, mut both_writable) = (None, None, 0);
    while (promoted.is_none() || database_promoted.is_none())
        && cut.elapsed() < Duration::from_secs(90)
    {
        let east = role_in(regions, "us-east").await;
        let west = role_in(regions, "eu-west").await;
        let active =
            |r: &Option<(String, i32)>| r.as_ref().is_some_and(|(role, _)| role == "active");
        if active(&east) && active(&west) {
            both_active += 1;
        }
        if fenced.is_none()
            && east
                .as_ref()
                .is_some_and(|(role, replicas)| role == "standby" && *replicas == 1)
        {
            fenced = Some(cut.elapsed());
        }
        if active(&west) {
            promoted.get_or_insert(cut.elapsed());
        }
        let east_writes = takes_writes(regions, "us-east").await;
        let west_writes = takes_writes(regions, "eu-west").await;
        if east_writes == Some(true) && west_writes == Some(true) {
            both_writable += 1;
        }
        if east_writes == Some(false) {
            database_fenced.get_or_insert(cut.elapsed());
        }
        if west_writes == Some(true) {
            database_promoted.get_or_insert(cut.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let promoted = promoted.expect("eu-west promoted within 90 s");
    let fenced = fenced.expect("us-east fenced itself before eu-west was promoted");
    assert_eq!(both_active, 0, "never two regions active at once");
    let database_promoted = database_promoted.expect("eu-west's database promoted within 90 s");
    let database_fenced = database_fenced
        .expect("us-east's database fenced by its replica before eu-west's took writes");
    assert!(
        database_fenced < database_promoted,
        "us-east's database refused writes ({database_fenced:?}) before eu-west's took them ({database_promoted:?})"
    );
    assert_eq!(
        both_writable, 0,
        "never two databases taking writes at once"
    );
    wait_role_map(regions, "us-east", "standby", "self-fence").await;
    wait_role_map(regions, "eu-west", "active", "operator").await;
    assert_eq!(
        weights(hub, NAMESPACE, "shop").await.as_deref(),
        Some("us-east=0 eu-west=100")
    );
    // A real loss of the endpoint, seen by the majority, still moves.
    wait_weights(
        hub,
        NAMESPACE,
        CHECKED,
        "us-east=0 eu-west=100",
        "the HTTP-checked app to leave the isolated region",
        Duration::from_secs(60),
    )
    .await;
    regions.rejoin("us-east").unwrap();
    every_replica_sees_every_region_serving(hub).await;
    Isolation {
        fenced,
        promoted,
        both_active,
        database_fenced,
        database_promoted,
        both_writable,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_region_is_special() {
    if !is_root() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must run the spread-hub tests as root"
        );
        eprintln!("skipped: a spread hub needs root (network namespaces)");
        return;
    }
    let (mut regions, hub) = common::spread::start_with_databases("spread").await;

    // The eu-west replica first, so that it leads.
    let mut replicas = vec![start_replica(&regions, "eu-west")];
    wait_for(
        "eu-west's replica to lead",
        Duration::from_secs(60),
        || async { (lease_holder(&hub).await.as_deref() == Some("replica-eu-west")).then_some(()) },
    )
    .await;
    replicas.push(start_replica(&regions, "us-east"));
    replicas.push(start_replica(&regions, "ap-south"));
    every_replica_sees_every_region_serving(&hub).await;

    let spec = app_spec("ActivePassive", &["us-east", "eu-west"], json!({}));
    apply_app(&hub, NAMESPACE, "shop", spec).await;
    // The same app with an HTTP check of each Region's endpoint.
    let http = json!({"healthCheck": {"http": {"path": "/healthz"}}});
    let spec = app_spec("ActivePassive", &["us-east", "eu-west"], http);
    apply_app(&hub, NAMESPACE, CHECKED, spec).await;
    database_secret(&regions, &hub).await;
    let data_tier = json!({"failover": {"replication": {
        "mode": "Asynchronous", "maxLagSeconds": 30,
        "lagFrom": {"postgres": {"secretRef": {"name": "shop-db"}}}
    }}});
    let spec = app_spec("ActivePassive", &["us-east", "eu-west"], data_tier);
    apply_app(&hub, NAMESPACE, STORED, spec).await;
    for app in ["shop", CHECKED, STORED] {
        wait_weights(
            &hub,
            NAMESPACE,
            app,
            "us-east=100 eu-west=0",
            "the app to serve from us-east",
            Duration::from_secs(90),
        )
        .await;
    }
    wait_role_map(&regions, "us-east", "active", "operator").await;
    wait_role_map(&regions, "eu-west", "standby", "operator").await;

    // The leader alone loses the active region. The hub's etcd leader is
    // in ap-south, so the leader's region keeps its hub through the cut (a
    // member cut from the etcd leader stops serving; see move_hub_leader).
    regions.move_hub_leader("ap-south").await.unwrap();
    regions.cut("eu-west", "us-east").unwrap();
    let cut_at = Instant::now();
    wait_for(
        "the leader to lose sight of us-east",
        Duration::from_secs(20),
        || async {
            let views = observer_views(&hub, "us-east").await;
            views
                .iter()
                .any(|(who, seen)| who == "replica-eu-west" && seen == "Failing")
                .then_some(())
        },
    )
    .await;
    let writes_before = observer_writes(&regions, "ap-south").await;
    let samples = sample(Duration::from_secs(45), Duration::from_millis(500), || {
        let hub = hub.clone();
        async move {
            let shop = weights(&hub, NAMESPACE, "shop").await;
            let checked = weights(&hub, NAMESPACE, CHECKED).await;
            (shop == checked).then_some(shop).flatten()
        }
    })
    .await;
    // ap-south's view did not change meanwhile: only renewals.
    let steady_writes = observer_writes(&regions, "ap-south").await - writes_before;
    let moved: Vec<&Option<String>> = samples
        .iter()
        .filter(|w| w.as_deref() != Some("us-east=100 eu-west=0"))
        .collect();
    assert!(
        moved.is_empty(),
        "the leader alone lost sight of us-east (its API server, its endpoint): nothing may move; \
         {} of {} samples differ (None: the two apps disagree), the first {:?}",
        moved.len(),
        samples.len(),
        moved.first()
    );
    let shown = status(&hub, NAMESPACE, "shop").await.unwrap();
    let us_east = shown.regions.iter().find(|r| r.name == "us-east").unwrap();
    let unknown = us_east
        .unknown
        .clone()
        .expect("status says why nothing counts");
    assert_eq!(unknown.cause, "ObserversSeeItServing", "{unknown:?}");
    assert!(
        unknown.message.contains("replica-ap-south") && unknown.message.contains("replica-us-east"),
        "status names who still reaches us-east: {}",
        unknown.message
    );
    let checked = status(&hub, NAMESPACE, CHECKED).await.unwrap();
    let us_east = checked
        .regions
        .iter()
        .find(|r| r.name == "us-east")
        .unwrap();
    let unknown = us_east
        .unknown
        .clone()
        .expect("status says why nothing counts");
    assert_eq!(unknown.cause, "ObserversSeeItServing", "{unknown:?}");
    assert!(
        unknown.message.contains("us-east's endpoint answers")
            && unknown.message.contains("replica-ap-south"),
        "status says the other replicas' checks of the endpoint pass: {}",
        unknown.message
    );
    let shown = std::process::Command::new(env!("CARGO_BIN_EXE_multiregion"))
        .args(["status", "shop", "-n", NAMESPACE, "--kubeconfig"])
        .arg(regions.hub_kubeconfig_in("ap-south").unwrap())
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&shown.stdout);
    assert!(
        shown.contains("us-east: no round counted (ObserversSeeItServing)")
            && shown.contains("replica-ap-south"),
        "`multiregion status` names who still reaches us-east:\n{shown}"
    );
    let held = cut_at.elapsed();
    regions.mend("eu-west", "us-east").unwrap();
    every_replica_sees_every_region_serving(&hub).await;

    // The active region isolated: its replica fences it before the
    // majority promotes another; never two regions active at once.
    let isolation = isolate_the_active(&mut regions, &hub).await;

    // The leader's region (now the active one) lost whole: another replica
    // leads and moves the traffic back to us-east, though a minority of
    // observers lies (says every region serves, renewed all along) or is
    // stale (its Lease long expired).
    let liar = tokio::spawn(lie(hub.clone()));
    publish_observer(
        &hub,
        "stale",
        Timestamp::now() - SignedDuration::from_mins(5),
    )
    .await;
    regions.fail("eu-west").await.unwrap();
    let failed_at = Instant::now();
    wait_for(
        "the traffic to leave the leader's failed region",
        Duration::from_secs(90),
        || async {
            (weights(&hub, NAMESPACE, "shop").await.as_deref() == Some("us-east=100 eu-west=0"))
                .then_some(())
        },
    )
    .await;
    let moved_after = failed_at.elapsed();
    let leader = lease_holder(&hub).await;
    assert_ne!(
        leader.as_deref(),
        Some("replica-eu-west"),
        "another replica leads"
    );
    liar.abort();
    for mut replica in replicas {
        let _ = replica.kill();
        let _ = replica.wait();
    }
    eprintln!(
        "spread: {} samples over {:.0} s with the leader cut from the active: 0 moved; \
         {steady_writes} observer Lease writes by one replica in 45 s at steady state; \
         active region isolated: fenced {:.1} s after the cut, promoted elsewhere {:.1} s after \
         (margin {:.1} s), {} samples with two active; its database fenced {:.1} s after the cut, \
         the other promoted {:.1} s after (margin {:.1} s), {} samples with two taking writes; \
         the leader's region failed whole: {} leads, traffic moved in {:.1} s",
        samples.len(),
        held.as_secs_f64(),
        isolation.fenced.as_secs_f64(),
        isolation.promoted.as_secs_f64(),
        (isolation.promoted - isolation.fenced).as_secs_f64(),
        isolation.both_active,
        isolation.database_fenced.as_secs_f64(),
        isolation.database_promoted.as_secs_f64(),
        (isolation.database_promoted - isolation.database_fenced).as_secs_f64(),
        isolation.both_writable,
        leader.unwrap_or_default(),
        moved_after.as_secs_f64()
    );
}
