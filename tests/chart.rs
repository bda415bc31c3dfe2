//! The Helm chart: lint, render with defaults and with every optional block,
//! install into a real hub whose namespace enforces the `restricted` Pod
//! Security Standard, and run the operator with the chart's ServiceAccount
//! token (not admin) through a failover.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::operator::{app_spec, apply_app, register_region, wait_weights};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

const NS: &str = "multiregion-system";

fn chart() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("charts/multiregion")
}

fn run(program: &Path, args: &[&str]) -> String {
    let out = Command::new(program).args(args).output().expect("runs");
    assert!(
        out.status.success(),
        "{} {args:?}: {}{}",
        program.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn kinds(rendered: &str) -> Vec<String> {
    rendered
        .lines()
        .filter_map(|l| l.strip_prefix("kind: "))
        .map(str::to_string)
        .collect()
}

#[test]
fn the_chart_lints_and_renders_with_and_without_its_options() {
    let helm = localregions::Binaries::locate().unwrap().path("helm");
    let chart = chart();
    let chart = chart.to_str().unwrap();
    let lint = run(&helm, &["lint", "--strict", chart]);
    assert!(lint.contains("0 chart(s) failed"), "{lint}");
    let defaults = run(&helm, &["template", "t", chart, "-n", NS]);
    let mut got = kinds(&defaults);
    got.sort();
    assert_eq!(
        got,
        [
            "ClusterRole",
            "ClusterRoleBinding",
            "Deployment",
            "PodDisruptionBudget",
            "Role",
            "RoleBinding",
            "Service",
            "ServiceAccount"
        ]
    );
    assert!(!defaults.contains("\"*\""), "no wildcards in RBAC");
    let everything = run(
        &helm,
        &[
            "template",
            "t",
            chart,
            "-n",
            NS,
            "--set",
            "serviceMonitor.enabled=true,networkPolicy.enabled=true,rbac.hubIsRegion=true,metrics.service.type=NodePort",
        ],
    );
    let got = kinds(&everything);
    assert!(
        got.contains(&"ServiceMonitor".to_string()) && got.contains(&"NetworkPolicy".to_string())
    );
    assert!(
        everything.contains("deployments"),
        "hubIsRegion grants Deployments"
    );
    // The schema refuses bad values.
    let out = Command::new(&helm)
        .args(["template", "t", chart, "--set", "logFormat=xml"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("logFormat"));
}

/// The namespace enforces the restricted Pod Security Standard; the CRDs
/// are applied with kubectl and the chart installed with Helm (KWOK runs the
/// pods, so --wait proves the Deployment is admitted and becomes available
/// under the restricted policy).
async fn install(regions: &localregions::Guard, hub: &kube::Client) {
    let bin = regions.bin_dir();
    let hub_kc = regions.kubeconfig("hub").unwrap();
    let hub_kc = hub_kc.to_str().unwrap();
    let namespaces: Api<Namespace> = Api::all(hub.clone());
    namespaces
        .patch(
            NS,
            &PatchParams::apply("test").force(),
            &Patch::Apply(json!({
                "apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": NS, "labels": {"pod-security.kubernetes.io/enforce": "restricted"}}
            })),
        )
        .await
        .unwrap();
    let crds = Path::new(env!("CARGO_MANIFEST_DIR")).join("crds");
    let kubectl = bin.join("kubectl");
    run(
        &kubectl,
        &[
            "--kubeconfig",
            hub_kc,
            "apply",
            "--server-side",
            "-f",
            crds.to_str().unwrap(),
        ],
    );
    run(
        &kubectl,
        &[
            "--kubeconfig",
            hub_kc,
            "wait",
            "--for=condition=Established",
            "crd/multiregionapps.multiregion.io",
        ],
    );
    let chart = chart();
    run(
        &bin.join("helm"),
        &[
            "--kubeconfig",
            hub_kc,
            "install",
            "multiregion",
            chart.to_str().unwrap(),
            "-n",
            NS,
            "--set",
            "image.repository=multiregion,image.tag=test",
            "--wait",
            "--timeout",
            "90s",
        ],
    );
    let status = run(
        &bin.join("helm"),
        &["--kubeconfig", hub_kc, "status", "multiregion", "-n", NS],
    );
    assert!(status.contains("STATUS: deployed"), "{status}");
}

/// A kubeconfig for the hub with the chart's ServiceAccount token.
fn service_account_kubeconfig(regions: &localregions::Guard) -> PathBuf {
    let hub_kc = regions.kubeconfig("hub").unwrap();
    let token = run(
        &regions.bin_dir().join("kubectl"),
        &[
            "--kubeconfig",
            hub_kc.to_str().unwrap(),
            "-n",
            NS,
            "create",
            "token",
            "multiregion",
            "--duration",
            "1h",
        ],
    );
    let admin = std::fs::read_to_string(&hub_kc).unwrap();
    let server = admin
        .lines()
        .find_map(|l| l.trim().strip_prefix("server: "))
        .unwrap();
    let ca = admin
        .lines()
        .find_map(|l| l.trim().strip_prefix("certificate-authority-data: "))
        .unwrap();
    let sa_kc = regions.dir().join("hub-serviceaccount.kubeconfig");
    std::fs::write(
        &sa_kc,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: hub\n  cluster:\n    server: {server}\n    certificate-authority-data: {ca}\nusers:\n- name: sa\n  user:\n    token: {}\ncontexts:\n- name: sa\n  context: {{cluster: hub, user: sa}}\ncurrent-context: sa\n",
            token.trim()
        ),
    )
    .unwrap();
    sa_kc
}

/// The operator as a process with the given hub kubeconfig; killed on drop.
struct Operator(std::process::Child);

impl Operator {
    fn start(regions: &localregions::Guard, kubeconfig: &Path) -> Self {
        let metrics_port = common::operator::free_port();
        let log = std::fs::File::create(regions.dir().join("logs/operator.log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_multiregion"))
            .args([
                "run",
                "--kubeconfig",
                kubeconfig.to_str().unwrap(),
                "--namespace",
                NS,
            ])
            .args(["--leader-election", "--lease-seconds", "4"])
            .args([
                "--metrics-addr",
                &format!("127.0.0.1:{metrics_port}"),
                "--identity",
                "chart-sa",
            ])
            .env("RUST_LOG", "info,kube_client=off")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        Operator(child)
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_with_the_charts_service_account_does_a_failover() {
    let mut regions = common::clusters("chart", &["hub", "us-east", "eu-west"]).await;
    let hub = regions.client("hub").await.unwrap();
    install(&regions, &hub).await;
    let sa_kc = service_account_kubeconfig(&regions);
    let sa = localregions::admin_client(&sa_kc).await.unwrap();
    let other: Api<Secret> = Api::namespaced(sa.clone(), "default");
    match other.list(&Default::default()).await {
        Err(kube::Error::Api(s)) => assert_eq!(s.code, 403, "{}", s.message),
        other => panic!("reading Secrets in another namespace must be refused: {other:?}"),
    }
    for region in ["us-east", "eu-west"] {
        let kubeconfig = std::fs::read_to_string(regions.kubeconfig(region).unwrap()).unwrap();
        register_region(&hub, region, &kubeconfig, json!({})).await;
    }
    let _operator = Operator::start(&regions, &sa_kc);

    let ns = "chart-app";
    let spec = app_spec("ActivePassive", &["us-east", "eu-west"], json!({}));
    apply_app(&hub, ns, "web", spec).await;
    wait_weights(
        &hub,
        ns,
        "web",
        "us-east=100 eu-west=0",
        "us-east active under the chart's RBAC",
        Duration::from_secs(90),
    )
    .await;
    regions.stop_apiserver("us-east").unwrap();
    wait_weights(
        &hub,
        ns,
        "web",
        "us-east=0 eu-west=100",
        "the failover under the chart's RBAC",
        Duration::from_secs(15),
    )
    .await;
    let events =
        common::operator::wait_events(&hub, ns, "FailedOver", Duration::from_secs(10)).await;
    assert_eq!(events.len(), 1, "Events are allowed: {events:?}");
}
