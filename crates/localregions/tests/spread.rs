//! A hub spread over three regions (`up --spread-hub`): each region holds
//! an etcd member and an API server of the hub; the hub keeps answering
//! through any majority of regions; cuts are only between regions, so the
//! host (the tests, people, the traffic tier) keeps reaching every region.
//!
//! Needs root (network namespaces). CI runs as root; elsewhere the test
//! says so and passes without running, unless `CI` is set.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, PostParams};
use serde_json::json;

use localregions::{Guard, wait_for};

const HUB: &str = "hub";
const REGIONS: [&str; 3] = ["us-east", "eu-west", "ap-south"];

fn localregions(dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_localregions"));
    command.arg("--dir").arg(dir);
    command
}

/// `localregions exec REGION -- kubectl --kubeconfig KC get namespaces`
/// with a short timeout: whether `region` reaches that API server.
fn kubectl_from(regions: &Guard, region: &str, kubeconfig: &Path) -> Output {
    localregions(regions.dir())
        .args(["exec", region, "--"])
        .arg(regions.bin_dir().join("kubectl"))
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(["get", "namespaces", "-o", "name", "--request-timeout=2s"])
        .output()
        .expect("localregions exec runs")
}

fn reaches(regions: &Guard, from: &str, cluster: &str) -> bool {
    let kubeconfig = regions.operator_kubeconfig(cluster).unwrap();
    kubectl_from(regions, from, &kubeconfig).status.success()
}

/// Whether `region` gets an answer from an endpoint (curl, 2 s).
fn endpoint_from(regions: &Guard, region: &str, endpoint: &str) -> bool {
    localregions(regions.dir())
        .args([
            "exec",
            region,
            "--",
            "curl",
            "-sf",
            "-m",
            "2",
            "-o",
            "/dev/null",
        ])
        .arg(endpoint)
        .status()
        .expect("localregions exec runs")
        .success()
}

fn cli(regions: &Guard, args: &[&str]) {
    let status = localregions(regions.dir()).args(args).status().unwrap();
    assert!(status.success(), "localregions {args:?}: {status}");
}

async fn hub_in(regions: &Guard, region: &str) -> kube::Client {
    localregions::admin_client(&regions.hub_kubeconfig_in(region).unwrap())
        .await
        .unwrap()
}

/// Creates a ConfigMap through `region`'s hub API server, within 3 s.
async fn write_through(regions: &Guard, region: &str, name: &str) -> Result<(), String> {
    let maps: Api<ConfigMap> = Api::namespaced(hub_in(regions, region).await, "default");
    let map: ConfigMap = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
    match tokio::time::timeout(
        Duration::from_secs(3),
        maps.create(&PostParams::default(), &map),
    )
    .await
    {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(err)) => Err(err.to_string()),
        Err(_) => Err("no answer within 3 s".into()),
    }
}

async fn reads_back(regions: &Guard, region: &str, name: &str) -> bool {
    let maps: Api<ConfigMap> = Api::namespaced(hub_in(regions, region).await, "default");
    matches!(maps.get_opt(name).await, Ok(Some(_)))
}

async fn every_region_serves_one_hub(regions: &Guard) {
    write_through(regions, "us-east", "written-in-us-east")
        .await
        .expect("a write through us-east");
    for region in REGIONS {
        wait_for(
            &format!("{region}'s hub API server to read the write"),
            Duration::from_secs(10),
            || async {
                reads_back(regions, region, "written-in-us-east")
                    .await
                    .then_some(())
            },
        )
        .await;
    }
    let first = std::fs::read_to_string(regions.kubeconfig(HUB).unwrap()).unwrap();
    let us_east = std::fs::read_to_string(regions.hub_kubeconfig_in("us-east").unwrap()).unwrap();
    assert_eq!(first, us_east, "DIR/hub.kubeconfig is the first region's");
}

fn exec_keeps_the_working_directory_and_exit_status(regions: &Guard) {
    let here = tempdir_with_marker(regions);
    let status = localregions(regions.dir())
        .current_dir(&here)
        .args([
            "exec",
            "eu-west",
            "--",
            "sh",
            "-c",
            "test -f marker && exit 7",
        ])
        .status()
        .unwrap();
    assert_eq!(
        status.code(),
        Some(7),
        "exec runs in the caller's directory and exits with CMD's status"
    );
}

fn tempdir_with_marker(regions: &Guard) -> PathBuf {
    let here = regions.dir().join("exec-cwd");
    std::fs::create_dir_all(&here).unwrap();
    std::fs::write(here.join("marker"), "").unwrap();
    here
}

fn a_cut_is_only_between_two_regions(regions: &Guard) {
    assert!(reaches(regions, "us-east", "eu-west"), "before the cut");
    cli(regions, &["cut", "us-east", "eu-west"]);
    assert!(
        !reaches(regions, "us-east", "eu-west"),
        "us-east cannot reach eu-west's API server"
    );
    assert!(
        !reaches(regions, "eu-west", "us-east"),
        "nor eu-west us-east's: both ways"
    );
    let eu_west = regions.endpoint("eu-west").unwrap();
    assert!(
        !endpoint_from(regions, "us-east", &eu_west),
        "nor its endpoint"
    );
    assert!(reaches(regions, "us-east", "ap-south"), "other paths stay");
    assert!(
        reaches(regions, "us-east", "us-east"),
        "a region reaches itself"
    );
    let host = Command::new(regions.bin_dir().join("kubectl"))
        .arg("--kubeconfig")
        .arg(regions.operator_kubeconfig("eu-west").unwrap())
        .args(["get", "namespaces", "--request-timeout=2s"])
        .output()
        .unwrap();
    assert!(host.status.success(), "the host still reaches eu-west");
    cli(regions, &["mend", "us-east", "eu-west"]);
    assert!(reaches(regions, "us-east", "eu-west"), "mended");
    assert!(
        endpoint_from(regions, "us-east", &eu_west),
        "mended: the endpoint too"
    );
}

async fn an_isolated_region_keeps_its_member_but_loses_the_hub(regions: &Guard) {
    cli(regions, &["isolate", "us-east"]);
    let refused = write_through(regions, "us-east", "written-while-isolated").await;
    assert!(
        refused.is_err(),
        "the isolated region's hub API server has no etcd quorum"
    );
    let cut = std::time::Instant::now();
    wait_for(
        "the majority's hub to write",
        Duration::from_secs(15),
        || async {
            write_through(regions, "eu-west", "written-by-the-majority")
                .await
                .ok()
        },
    )
    .await;
    eprintln!(
        "the majority wrote {:.1} s after the isolation",
        cut.elapsed().as_secs_f64()
    );
    assert!(
        reaches(regions, "us-east", "us-east"),
        "us-east still reaches its own member (to fence itself)"
    );
    assert!(!reaches(regions, "us-east", "ap-south"));
    assert!(!reaches(regions, "ap-south", "us-east"));
    let us_east = regions.endpoint("us-east").unwrap();
    assert!(
        endpoint_from(regions, "us-east", &us_east),
        "its own endpoint answers inside it"
    );
    assert!(
        reqwest::get(&us_east).await.is_ok(),
        "the outside reaches an isolated region"
    );
    cli(regions, &["rejoin", "us-east"]);
    wait_for(
        "the rejoined region's hub to catch up",
        Duration::from_secs(20),
        || async {
            reads_back(regions, "us-east", "written-by-the-majority")
                .await
                .then_some(())
        },
    )
    .await;
}

async fn a_failed_region_takes_its_hub_member_and_execd_processes(regions: &mut Guard) {
    let mut sleeper = localregions(regions.dir())
        .args(["exec", "eu-west", "--", "sleep", "600"])
        .spawn()
        .unwrap();
    let pid = sleeper.id();
    wait_for(
        "the exec'd process to be recorded",
        Duration::from_secs(5),
        || async {
            std::fs::read_to_string(regions.dir().join("exec/eu-west.pids"))
                .ok()
                .filter(|pids| pids.lines().any(|l| l.starts_with(&format!("{pid} "))))
        },
    )
    .await;
    cli(regions, &["fail", "eu-west"]);
    let status = sleeper.wait().unwrap();
    assert!(
        !status.success(),
        "fail killed the process exec'd in eu-west: {status}"
    );
    wait_for(
        "a hub write without eu-west",
        Duration::from_secs(15),
        || async {
            write_through(regions, "ap-south", "written-without-eu-west")
                .await
                .ok()
        },
    )
    .await;
    regions.recover("eu-west").await.expect("eu-west recovers");
    wait_for(
        "eu-west's hub to catch up",
        Duration::from_secs(20),
        || async {
            reads_back(regions, "eu-west", "written-without-eu-west")
                .await
                .then_some(())
        },
    )
    .await;
}

fn down_removes_every_namespace_and_link(mut regions: Guard) {
    let spread = regions.spread_hub().unwrap().clone();
    let namespaces: Vec<String> = REGIONS
        .iter()
        .map(|r| spread.network.namespace(r))
        .collect();
    let bridge = spread.network.bridge();
    regions.down();
    let left = String::from_utf8(
        Command::new("ip")
            .args(["netns", "list"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    for ns in namespaces {
        assert!(
            !left
                .lines()
                .any(|l| l.split_whitespace().next() == Some(&ns)),
            "{ns} left: {left}"
        );
    }
    let links = Command::new("ip")
        .args(["link", "show", &bridge])
        .output()
        .unwrap();
    assert!(!links.status.success(), "bridge {bridge} left behind");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spread_hub_survives_any_one_region() {
    if !localregions::is_root() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must run the spread-hub test as root"
        );
        eprintln!("skipped: a spread hub needs root (network namespaces)");
        return;
    }
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("spread_hub");
    let mut regions = localregions::start_spread_for_test(dir, HUB, &REGIONS).await;
    every_region_serves_one_hub(&regions).await;
    exec_keeps_the_working_directory_and_exit_status(&regions);
    a_cut_is_only_between_two_regions(&regions);
    an_isolated_region_keeps_its_member_but_loses_the_hub(&regions).await;
    a_failed_region_takes_its_hub_member_and_execd_processes(&mut regions).await;
    down_removes_every_namespace_and_link(regions);
}
