//! A hub spread over three regions with one operator replica in each,
//! for the spread tests and bench (root: network namespaces).

use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::Client;
use kube::api::{Api, ListParams, Patch, PatchParams};
use localregions::Guard;
use serde_json::json;

use super::operator::{OPERATOR_NAMESPACE, REGIONS, ensure_namespace, join_region};
use super::wait_for;

pub const METRICS_PORT: u16 = 18080;

/// Whether the tests run as root (a spread hub needs it).
pub fn is_root() -> bool {
    localregions::is_root()
}

/// The CRDs, with the real kubectl, through the first region's hub.
pub fn install_crds(regions: &Guard) {
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
/// region's hub API server, with leader election on a 6 s Lease.
pub fn start_replica(regions: &Guard, region: &str) -> Child {
    start_replica_with(regions, region, "6")
}

/// `start_replica` with a Lease of `lease_seconds`.
pub fn start_replica_with(regions: &Guard, region: &str, lease_seconds: &str) -> Child {
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
        .args(["--lease-seconds", lease_seconds, "--region", region])
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
pub async fn observer_views(hub: &Client, region: &str) -> Vec<(String, String)> {
    dated_observer_views(hub, region)
        .await
        .into_iter()
        .map(|(who, seen, _)| (who, seen))
        .collect()
}

/// `observer_views` with each Lease's last renewal.
async fn dated_observer_views(hub: &Client, region: &str) -> Vec<(String, String, Timestamp)> {
    let leases: Api<Lease> = Api::namespaced(hub.clone(), OPERATOR_NAMESPACE);
    let list = leases
        .list(&ListParams::default().labels("multiregion.io/observer"))
        .await
        .map(|l| l.items)
        .unwrap_or_default();
    let mut views: Vec<(String, String, Timestamp)> = list
        .iter()
        .filter_map(|lease| {
            let spec = lease.spec.as_ref()?;
            let holder = spec.holder_identity.clone()?;
            let renewed = spec.renew_time.as_ref()?.0;
            let text = lease
                .metadata
                .annotations
                .as_ref()?
                .get("multiregion.io/observations")?;
            let view: serde_json::Value = serde_json::from_str(text).ok()?;
            let seen = view[region]["seen"].as_str().unwrap_or("-").to_string();
            Some((holder, seen, renewed))
        })
        .collect();
    views.sort();
    views
}

/// Waits until all three replicas, in Leases renewed from now on (a view
/// published before a cut was mended says nothing of after it), see every
/// region serving.
pub async fn every_replica_sees_every_region_serving(hub: &Client) {
    let from = Timestamp::now();
    for region in REGIONS {
        wait_for(
            &format!("three observers to see {region} serving"),
            Duration::from_secs(60),
            || async {
                let views = dated_observer_views(hub, region).await;
                (views.len() == 3
                    && views
                        .iter()
                        .all(|(_, seen, renewed)| seen == "Serving" && *renewed > from))
                .then_some(())
            },
        )
        .await;
    }
}

/// The observer Lease writes one replica has sent so far (its metrics).
pub async fn observer_writes(regions: &Guard, region: &str) -> u64 {
    let index = REGIONS.iter().position(|r| *r == region).unwrap();
    let address = regions.spread_hub().unwrap().network.region_address(index);
    let url = format!("http://{address}:{METRICS_PORT}/metrics");
    let text = reqwest::get(&url).await.unwrap().text().await.unwrap();
    text.lines()
        .find(|l| {
            l.starts_with("multiregion_api_writes_total") && l.contains("kind=\"observer_lease\"")
        })
        .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

/// An observer Lease that says every region serves, renewed at `renewed`.
pub async fn publish_observer(hub: &Client, identity: &str, renewed: Timestamp) {
    let leases: Api<Lease> = Api::namespaced(hub.clone(), OPERATOR_NAMESPACE);
    let view = r#"{"us-east":{"seen":"Serving"},"eu-west":{"seen":"Serving"},"ap-south":{"seen":"Serving"}}"#;
    let lease = json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {
            "name": format!("multiregion-observer-{identity}"),
            "labels": {"multiregion.io/observer": "true"},
            "annotations": {"multiregion.io/observations": view},
        },
        "spec": {"holderIdentity": identity, "leaseDurationSeconds": 6, "renewTime": MicroTime(renewed)}
    });
    let params = PatchParams::apply("test").force();
    let name = format!("multiregion-observer-{identity}");
    let _ = leases.patch(&name, &params, &Patch::Apply(&lease)).await;
}

/// A lying observer: renewed every second, always saying every region
/// serves.
pub async fn lie(hub: Client) {
    loop {
        publish_observer(&hub, "liar", Timestamp::now()).await;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// An admin client of the hub through `region`'s hub API server.
pub async fn hub_in(regions: &Guard, region: &str) -> Client {
    localregions::admin_client(&regions.hub_kubeconfig_in(region).unwrap())
        .await
        .unwrap()
}

/// Regions with a spread hub (`DIR` under the target's tmp), the CRDs
/// installed, the operator's namespace made and every region joined; the
/// hub client goes through ap-south's hub API server (tests fail other
/// regions, whose hub API servers go with them).
pub async fn start(test: &str) -> (Guard, Client) {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(test);
    let regions = localregions::start_spread_for_test(dir, "hub", &REGIONS).await;
    prepare(regions).await
}

/// `start` with PostgreSQL in every region, us-east's the primary.
pub async fn start_with_databases(test: &str) -> (Guard, Client) {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(test);
    let regions = localregions::start_spread_with_databases_for_test(dir, "hub", &REGIONS).await;
    prepare(regions).await
}

async fn prepare(regions: Guard) -> (Guard, Client) {
    install_crds(&regions);
    let hub = hub_in(&regions, "ap-south").await;
    ensure_namespace(&hub, OPERATOR_NAMESPACE).await;
    for region in REGIONS {
        join_region(&regions, region).await;
    }
    (regions, hub)
}
