//! No region is special, end to end: the hub spread over three regions
//! (`localregions up --spread-hub`, network namespaces: root), one
//! operator replica in each region, each observing every region from
//! there and publishing what it sees on its observer Lease.
//!
//! - The leader alone cut off from the active region (no HTTP check: the
//!   API server is the evidence) moves nothing for 45 s: the two other
//!   replicas still reach it, and status says so.
//! - A real loss still moves: the active region fails whole (its replica
//!   and its part of the hub with it) and the traffic goes to the standby.
//!
//! Prints one `spread:` line with what it observed.

mod common;

use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::operator::{
    OPERATOR_NAMESPACE, REGIONS, app_spec, apply_app, ensure_namespace, join_region, lease_holder,
    sample, status, wait_weights, weights,
};
use common::wait_for;
use k8s_openapi::api::coordination::v1::Lease;
use kube::Client;
use kube::api::{Api, ListParams};
use localregions::Guard;
use serde_json::json;

const METRICS_PORT: u16 = 18080;
const NAMESPACE: &str = "spread";

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|v| v.split_whitespace().nth(1).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

/// The CRDs, with the real kubectl, through the first region's hub.
fn install_crds(regions: &Guard) {
    let crds = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("crds");
    let kubeconfig = regions.kubeconfig("hub").unwrap();
    for args in [
        vec!["apply", "--server-side", "-f", crds.to_str().unwrap()],
        vec![
            "wait",
            "--for=condition=Established",
            "crd/regions.multiregion.io",
            "crd/multiregionapps.multiregion.io",
        ],
    ] {
        let status = std::process::Command::new(regions.bin_dir().join("kubectl"))
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args(&args)
            .status()
            .unwrap();
        assert!(status.success(), "kubectl {args:?}");
    }
}

/// Starts the operator replica of `region` inside it, talking to that
/// region's hub API server, with leader election.
fn start_replica(regions: &Guard, region: &str) -> Child {
    let index = REGIONS.iter().position(|r| *r == region).unwrap();
    let address = regions.spread_hub().unwrap().network.region_address(index);
    let hub = regions.hub_kubeconfig_in(region).unwrap();
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(regions.dir().join(format!("logs/operator-{region}.log")))
        .unwrap();
    let program = PathBuf::from(env!("CARGO_BIN_EXE_multiregion"));
    let mut command = regions.command_in(region, &program).unwrap();
    command
        .args([
            "run",
            "--namespace",
            OPERATOR_NAMESPACE,
            "--leader-election",
        ])
        .args(["--lease-seconds", "6", "--region", region])
        .arg("--identity")
        .arg(format!("replica-{region}"))
        .arg("--kubeconfig")
        .arg(hub)
        .arg("--metrics-addr")
        .arg(format!("{address}:{METRICS_PORT}"))
        .env("RUST_LOG", "info,kube_client=off,kube_runtime=warn")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log);
    let child = command.spawn().expect("the operator starts");
    regions.record_exec(region, child.id()).unwrap();
    child
}

/// The observer Leases, by holder, with what each says of `region`.
async fn observer_views(hub: &Client, region: &str) -> Vec<(String, String)> {
    let leases: Api<Lease> = Api::namespaced(hub.clone(), OPERATOR_NAMESPACE);
    let list = leases
        .list(&ListParams::default().labels("multiregion.io/observer"))
        .await
        .map(|l| l.items)
        .unwrap_or_default();
    let mut views: Vec<(String, String)> = list
        .iter()
        .filter_map(|lease| {
            let holder = lease.spec.as_ref()?.holder_identity.clone()?;
            let text = lease
                .metadata
                .annotations
                .as_ref()?
                .get("multiregion.io/observations")?;
            let view: serde_json::Value = serde_json::from_str(text).ok()?;
            let seen = view[region]["seen"].as_str().unwrap_or("-").to_string();
            Some((holder, seen))
        })
        .collect();
    views.sort();
    views
}

async fn every_replica_sees_every_region_serving(hub: &Client) {
    for region in REGIONS {
        wait_for(
            &format!("three observers to see {region} serving"),
            Duration::from_secs(60),
            || async {
                let views = observer_views(hub, region).await;
                (views.len() == 3 && views.iter().all(|(_, seen)| seen == "Serving")).then_some(())
            },
        )
        .await;
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
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("spread");
    let mut regions = localregions::start_spread_for_test(dir, "hub", &REGIONS).await;
    install_crds(&regions);
    // Through ap-south's hub API server: the test fails us-east, whose
    // hub API server `DIR/hub.kubeconfig` names.
    let hub = localregions::admin_client(&regions.hub_kubeconfig_in("ap-south").unwrap())
        .await
        .unwrap();
    ensure_namespace(&hub, OPERATOR_NAMESPACE).await;
    for region in REGIONS {
        join_region(&regions, region).await;
    }

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
    wait_weights(
        &hub,
        NAMESPACE,
        "shop",
        "us-east=100 eu-west=0",
        "the app to serve from us-east",
        Duration::from_secs(90),
    )
    .await;

    // The leader alone loses the active region.
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
    let samples = sample(Duration::from_secs(45), Duration::from_millis(500), || {
        weights(&hub, NAMESPACE, "shop")
    })
    .await;
    let moved: Vec<&Option<String>> = samples
        .iter()
        .filter(|w| w.as_deref() != Some("us-east=100 eu-west=0"))
        .collect();
    assert!(
        moved.is_empty(),
        "the leader alone lost sight of us-east: nothing may move; {} of {} samples differ, the first {:?}",
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
    let held = cut_at.elapsed();
    regions.mend("eu-west", "us-east").unwrap();
    every_replica_sees_every_region_serving(&hub).await;

    // A real loss still moves.
    regions.fail("us-east").unwrap();
    let failed_at = Instant::now();
    wait_for(
        "the traffic to leave the failed region",
        Duration::from_secs(60),
        || async {
            (weights(&hub, NAMESPACE, "shop").await.as_deref() == Some("us-east=0 eu-west=100"))
                .then_some(())
        },
    )
    .await;
    let moved_after = failed_at.elapsed();
    for mut replica in replicas {
        let _ = replica.kill();
        let _ = replica.wait();
    }
    eprintln!(
        "spread: {} samples over {:.0} s with the leader cut from the active: 0 moved; \
         active region failed whole: traffic moved in {:.1} s",
        samples.len(),
        held.as_secs_f64(),
        moved_after.as_secs_f64()
    );
}
