//! End-to-end: the day-2 commands against a hub and three regions (real
//! control planes) whose Regions were registered with `multiregion join`,
//! and the operator running as a process with the joined identities.

mod common;
#[path = "day2/confinement.rs"]
mod confinement;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use common::operator::{
    HealOnPanic, OPERATOR_NAMESPACE, app_spec, apply_app, env, join_region, register_region,
    serial, wait_weights, weights,
};
use k8s_openapi::api::admissionregistration::v1::ValidatingAdmissionPolicy;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, RoleBinding};
use kube::api::{Api, ListParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config, ResourceExt};
use multiregion::api::{LABEL_MANAGED_BY, MultiRegionApp, Region};
use serde_json::json;

/// `kubectl multiregion ARGS --kubeconfig HUB` through the real kubectl,
/// with the binary installed as the plugin; the output, whether it
/// succeeded or not.
fn multiregion(args: &[&str]) -> Output {
    plugin(args).output().expect("kubectl multiregion runs")
}

/// `kubectl multiregion ARGS --kubeconfig HUB`, the plugin on $PATH.
fn plugin(args: &[&str]) -> Command {
    let mut command = Command::new(env().bin_dir.join("kubectl"));
    command
        .arg("multiregion")
        .args(args)
        .arg("--kubeconfig")
        .arg(env().kubeconfig("hub"))
        .env("PATH", plugin_path());
    command
}

/// $PATH with a directory holding `kubectl-multiregion`.
fn plugin_path() -> String {
    static PATH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    PATH.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("day2-plugin");
        std::fs::create_dir_all(&dir).unwrap();
        for name in ["kubectl-multiregion", "kubectl_complete-multiregion"] {
            let plugin = dir.join(name);
            let _ = std::fs::remove_file(&plugin);
            std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_multiregion"), &plugin).unwrap();
        }
        format!(
            "{}:{}",
            dir.display(),
            std::env::var("PATH").unwrap_or_default()
        )
    })
    .clone()
}

fn succeeded(args: &[&str]) -> String {
    let out = multiregion(args);
    assert!(
        out.status.success(),
        "multiregion {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn failed(args: &[&str]) -> String {
    let out = multiregion(args);
    assert!(!out.status.success(), "multiregion {args:?} should fail");
    String::from_utf8(out.stderr).unwrap()
}

/// What a GitOps tool does on its next sync of the app's manifest, with
/// the manifest's region list edited in git meanwhile (weights written
/// out): a server-side apply that forces its fields (Flux), then a
/// client-side `kubectl apply` (Argo CD's default).
async fn gitops_sync(hub: &Client, ns: &str, spec: &serde_json::Value) {
    let mut synced = spec.clone();
    synced["regions"] =
        json!([{"name": "us-east", "weight": 100}, {"name": "eu-west", "weight": 100}]);
    common::operator::apply_app(hub, ns, "web", synced.clone()).await;
    let manifest = json!({
        "apiVersion": "multiregion.io/v1alpha1", "kind": "MultiRegionApp",
        "metadata": {"name": "web", "namespace": ns}, "spec": synced
    });
    let file = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("day2-gitops.json");
    std::fs::write(&file, manifest.to_string()).unwrap();
    let out = Command::new(env().bin_dir.join("kubectl"))
        .args(["apply", "-f"])
        .arg(&file)
        .arg("--kubeconfig")
        .arg(env().kubeconfig("hub"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `kubectl multiregion status ... -w` running, its output collected;
/// stopped when dropped.
struct StatusWatch {
    child: std::process::Child,
    printed: std::sync::Arc<std::sync::Mutex<String>>,
}

impl StatusWatch {
    fn start(args: &[&str]) -> Self {
        use std::io::BufRead as _;
        let mut child = plugin(args)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("kubectl multiregion status -w runs");
        let stdout = child.stdout.take().unwrap();
        let printed = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let sink = printed.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                let mut all = sink.lock().unwrap();
                all.push_str(&line);
                all.push('\n');
            }
        });
        StatusWatch { child, printed }
    }

    fn printed(&self) -> String {
        self.printed.lock().unwrap().clone()
    }
}

impl Drop for StatusWatch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn app(hub: &Client, ns: &str, name: &str) -> MultiRegionApp {
    let api: Api<MultiRegionApp> = Api::namespaced(hub.clone(), ns);
    api.get(name).await.unwrap()
}

/// A client with the credentials `join` stored in the hub for `region`,
/// reaching the member through the same address the operator uses.
async fn joined_identity(hub: &Client, region: &str) -> Client {
    let secrets: Api<Secret> = Api::namespaced(hub.clone(), OPERATOR_NAMESPACE);
    let secret = secrets.get(&format!("{region}-kubeconfig")).await.unwrap();
    let yaml = String::from_utf8(secret.data.unwrap()["kubeconfig"].0.clone()).unwrap();
    assert!(
        !yaml.contains("client-key-data"),
        "join stores a token, never the admin's certificate"
    );
    let kubeconfig = Kubeconfig::from_yaml(&yaml).unwrap();
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap();
    Client::try_from(config).unwrap()
}

fn forbidden<T: std::fmt::Debug>(result: Result<T, kube::Error>) -> bool {
    matches!(result, Err(kube::Error::Api(status)) if status.code == 403)
}

#[tokio::test]
async fn a_joined_region_grants_the_operator_only_its_verbs() {
    let _serial = serial().await;
    let _heal = HealOnPanic;
    let hub = env().client("hub").await;
    let region: Region = Api::all(hub.clone()).get("eu-west").await.unwrap();
    assert_eq!(
        region.metadata.labels.unwrap()[LABEL_MANAGED_BY],
        "multiregion"
    );
    assert!(region.spec.endpoint.is_some(), "--endpoint was set");
    let member = joined_identity(&hub, "eu-west").await;
    let deployments: Api<Deployment> = Api::all(member.clone());
    deployments
        .list(&ListParams::default())
        .await
        .expect("the operator's identity lists Deployments");
    let config_maps: Api<ConfigMap> = Api::all(member.clone());
    config_maps
        .list(&ListParams::default())
        .await
        .expect("the operator's identity lists ConfigMaps (propagated copies)");
    let secrets: Api<Secret> = Api::all(member.clone());
    assert!(
        forbidden(secrets.list(&ListParams::default()).await),
        "eu-west was joined without --allow-secrets"
    );
    let bindings: Api<ClusterRoleBinding> = Api::all(member);
    assert!(forbidden(bindings.list(&ListParams::default()).await));
    // --allow-secrets grants Secrets only where the writer role is bound
    // (confinement::the_member_identity_writes_only_where_the_operator_bound_it),
    // never cluster-wide.
    let allowed = joined_identity(&hub, "us-east").await;
    assert!(
        forbidden(
            Api::<Secret>::all(allowed)
                .list(&ListParams::default())
                .await
        ),
        "us-east was joined with --allow-secrets, which grants no cluster-wide read"
    );
}

#[tokio::test]
async fn join_refuses_a_region_it_did_not_make() {
    let _serial = serial().await;
    let hub = env().client("hub").await;
    register_region(&hub, "handmade", "not used", json!({})).await;
    let _delete = DeleteRegion("handmade");
    let regions = env().regions.lock().await;
    let mut command = Command::new(env!("CARGO_BIN_EXE_multiregion"));
    command
        .args(["join", "handmade", "--member-kubeconfig"])
        .arg(regions.kubeconfig("us-east").unwrap())
        .arg("--hub-kubeconfig")
        .arg(regions.kubeconfig("hub").unwrap());
    drop(regions);
    let out = command.output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("Region handmade exists and was not made by join"),
        "{stderr}"
    );
    let api: Api<Region> = Api::all(hub);
    let kept = api.get("handmade").await.expect("the Region is kept");
    assert!(kept.spec.endpoint.is_none());
}

#[tokio::test]
async fn join_grants_only_namespaced_kinds_the_member_serves() {
    let _serial = serial().await;
    let hub = env().client("hub").await;
    let refused = [
        ("*", "wildcards"),
        ("serviceaccounts/token", "subresources"),
        ("nodes", "cluster-scoped"),
        ("rolebindings", "never granted"),
        ("pods", "never granted"),
        ("hpa", "serves no such resource"),
    ];
    for (kind, why) in refused {
        let regions = env().regions.lock().await;
        let mut command = Command::new(env!("CARGO_BIN_EXE_multiregion"));
        // The first goes through the deprecated name of the member's flag.
        let flag = match kind {
            "*" => "--kubeconfig",
            _ => "--member-kubeconfig",
        };
        command
            .args(["join", "granted", "--allow-resource", kind, flag])
            .arg(regions.kubeconfig("us-east").unwrap())
            .arg("--hub-kubeconfig")
            .arg(regions.kubeconfig("hub").unwrap());
        drop(regions);
        let out = command.output().unwrap();
        assert!(!out.status.success(), "--allow-resource {kind} was granted");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(why), "--allow-resource {kind}: {stderr}");
        assert_eq!(
            stderr.contains("join --kubeconfig is deprecated"),
            flag == "--kubeconfig",
            "{stderr}"
        );
    }
    let api: Api<Region> = Api::all(hub);
    assert!(
        api.get_opt("granted").await.unwrap().is_none(),
        "a refused join creates no Region"
    );
}

#[tokio::test]
async fn failover_and_release_move_traffic_and_dry_run_changes_nothing() {
    let _serial = serial().await;
    let _heal = HealOnPanic;
    let hub = env().client("hub").await;
    let ns = "day2-failover";
    let spec = app_spec(
        "ActivePassive",
        &["us-east", "eu-west"],
        json!({"failover": {"failbackHoldSeconds": 5}}),
    );
    apply_app(&hub, ns, "web", spec).await;
    let minutes = Duration::from_secs(120);
    wait_weights(
        &hub,
        ns,
        "web",
        "us-east=100 eu-west=0",
        "us-east active",
        minutes,
    )
    .await;

    for flag in ["--dry-run", "--dry-run=server"] {
        let dry = succeeded(&[
            "failover", "web", "--to", "eu-west", "--pin", "-n", ns, flag,
        ]);
        assert!(dry.contains("(none) -> eu-west (server dry run)"), "{dry}");
        let dry = succeeded(&["failover", "web", "--to", "eu-west", "-n", ns, flag]);
        assert!(
            dry.contains(
                "move requested (multiregion.io/move-to): (none) -> eu-west (server dry run)"
            ),
            "{dry}"
        );
    }
    let untouched = app(&hub, ns, "web").await;
    assert_eq!(untouched.spec.failover.active_override, "");
    assert!(
        !untouched
            .annotations()
            .contains_key("multiregion.io/move-to")
    );

    let wrong = failed(&["failover", "web", "--to", "mars", "-n", ns]);
    assert!(
        wrong.contains("mars is not one of spec.regions of web (us-east, eu-west)"),
        "{wrong}"
    );

    // One-shot: there until the hold (5 s) has passed, then failed back.
    let moved = succeeded(&["failover", "web", "--to", "eu-west", "--wait", "-n", ns]);
    assert!(
        moved.contains("traffic of web is in eu-west: us-east=0 eu-west=100"),
        "{moved}"
    );
    let record = app(&hub, ns, "web")
        .await
        .status
        .unwrap()
        .move_request
        .unwrap();
    assert!(
        record.region == "eu-west" && record.completed_at.is_some(),
        "{record:?}"
    );
    wait_weights(
        &hub,
        ns,
        "web",
        "us-east=100 eu-west=0",
        "the usual failback after the hold",
        minutes,
    )
    .await;

    // Pinned: held until release.
    let pinned = succeeded(&[
        "failover", "web", "--to", "eu-west", "--pin", "--wait", "-n", ns,
    ]);
    assert!(
        pinned.contains("spec.failover.activeOverride: (none) -> eu-west"),
        "{pinned}"
    );
    let samples =
        common::operator::sample(Duration::from_secs(8), Duration::from_millis(500), || {
            common::operator::weights(&hub, ns, "web")
        })
        .await;
    assert!(
        samples
            .iter()
            .all(|w| w.as_deref() == Some("us-east=0 eu-west=100")),
        "a pin outlasts the hold: {samples:?}"
    );
    let refused = failed(&["failover", "web", "--to", "us-east", "-n", ns]);
    assert!(refused.contains("pinned to eu-west"), "{refused}");

    let released = succeeded(&["release", "web", "-n", ns]);
    assert!(released.contains("eu-west -> (none)"), "{released}");
    assert_eq!(app(&hub, ns, "web").await.spec.failover.active_override, "");
    let again = succeeded(&["release", "web", "-n", ns]);
    assert!(again.contains("unchanged"), "{again}");
    common::operator::delete_app(&hub, ns, "web").await;
}

/// The app's newest drill outcome, once it has `count` of them.
async fn drill_outcome(
    hub: &Client,
    ns: &str,
    count: usize,
) -> Option<multiregion::api::DrillOutcome> {
    let s = common::operator::status(hub, ns, "web").await?;
    (s.drills.len() == count && s.drill.is_none()).then(|| s.drills[0].clone())
}

#[tokio::test]
async fn a_drill_on_request_moves_traffic_away_and_back_and_records_the_outcome() {
    let _serial = serial().await;
    let _heal = HealOnPanic;
    let hub = env().client("hub").await;
    let ns = "day2-drill";
    let spec = app_spec(
        "ActivePassive",
        &["us-east", "eu-west"],
        json!({"failover": {"drill": {"awaySeconds": 3, "maxDurationSeconds": 120}}}),
    );
    apply_app(&hub, ns, "web", spec).await;
    let minutes = Duration::from_secs(120);
    wait_weights(
        &hub,
        ns,
        "web",
        "us-east=100 eu-west=0",
        "us-east active",
        minutes,
    )
    .await;

    let asked = succeeded(&["drill", "web", "--now", "-n", ns]);
    assert!(asked.contains("drill requested: (none) ->"), "{asked}");
    wait_weights(
        &hub,
        ns,
        "web",
        "us-east=0 eu-west=100",
        "the drill's move away",
        minutes,
    )
    .await;
    let outcome = common::wait_for("the drill to succeed", minutes, || {
        drill_outcome(&hub, ns, 1)
    })
    .await;
    assert_eq!(outcome.result, "Succeeded", "{outcome:?}");
    assert_eq!(outcome.away_from, "us-east");
    assert_eq!(outcome.trigger, "Request");
    assert!(outcome.seconds_to_move.is_some() && outcome.back_at.is_some());
    assert_eq!(
        weights(&hub, ns, "web").await.as_deref(),
        Some("us-east=100 eu-west=0")
    );
    let metrics = env().metrics().await;
    assert!(
        metrics.contains(&format!(
            "multiregion_drills_total{{namespace=\"{ns}\",app=\"web\",result=\"Succeeded\"}} 1"
        )),
        "{metrics}"
    );

    // A drill that meets a real fault gives up, and failover takes over.
    let long = app_spec(
        "ActivePassive",
        &["us-east", "eu-west"],
        json!({"failover": {"drill": {"awaySeconds": 600, "maxDurationSeconds": 900}}}),
    );
    apply_app(&hub, ns, "web", long).await;
    succeeded(&["drill", "web", "--now", "-n", ns]);
    wait_weights(
        &hub,
        ns,
        "web",
        "us-east=0 eu-west=100",
        "the second drill's move",
        minutes,
    )
    .await;
    env()
        .regions
        .lock()
        .await
        .stop_apiserver("eu-west")
        .unwrap();
    let aborted =
        common::wait_for("the drill to abort", minutes, || drill_outcome(&hub, ns, 2)).await;
    assert_eq!(aborted.result, "Aborted");
    assert!(
        aborted.reason.contains("eu-west is Unhealthy"),
        "{aborted:?}"
    );
    wait_weights(
        &hub,
        ns,
        "web",
        "us-east=100 eu-west=0",
        "failover back to us-east",
        minutes,
    )
    .await;
    env()
        .regions
        .lock()
        .await
        .start_apiserver("eu-west")
        .await
        .unwrap();
    common::operator::delete_app(&hub, ns, "web").await;
}

#[tokio::test]
async fn drain_and_cordon_take_a_region_out_of_traffic_and_back() {
    let _serial = serial().await;
    let _heal = HealOnPanic;
    let hub = env().client("hub").await;
    let ns = "day2-drain";
    let spec = app_spec("ActiveActive", &["us-east", "eu-west"], json!({}));
    apply_app(&hub, ns, "web", spec.clone()).await;
    let both = "us-east=50 eu-west=50";
    let minutes = Duration::from_secs(120);
    wait_weights(&hub, ns, "web", both, "both regions serve", minutes).await;

    let watch = StatusWatch::start(&["status", "web", "-n", ns, "-w"]);
    common::wait_for("status -w lists the app", minutes, || async {
        watch.printed().contains(both).then_some(())
    })
    .await;
    // kubectl completes through kubectl_complete-multiregion: verbs, apps
    // of the namespace, the app's regions.
    let completed = |words: &[&str]| {
        let out = Command::new(env().bin_dir.join("kubectl"))
            .args(["__complete", "multiregion", "--kubeconfig"])
            .arg(env().kubeconfig("hub"))
            .args(words)
            .env("PATH", plugin_path())
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    assert!(
        completed(&["dr"]).contains("drain\n"),
        "{}",
        completed(&["dr"])
    );
    assert!(completed(&["drain", "-n", ns, ""]).contains("web\n"));
    let regions = completed(&["drain", "-n", ns, "web", ""]);
    assert!(
        regions.contains("us-east\n") && regions.contains("eu-west\n"),
        "{regions}"
    );
    // kubectl's habit: the namespace before the verb.
    succeeded(&["-n", ns, "drain", "web", "eu-west"]);
    wait_weights(
        &hub,
        ns,
        "web",
        "us-east=100 eu-west=0",
        "eu-west drained",
        minutes,
    )
    .await;
    common::wait_for("status -w prints the change", minutes, || async {
        watch
            .printed()
            .contains("weights: us-east=100 eu-west=0")
            .then_some(())
    })
    .await;
    drop(watch);
    let drained = app(&hub, ns, "web").await;
    assert_eq!(
        drained
            .annotations()
            .get("multiregion.io/drained")
            .map(String::as_str),
        Some("eu-west")
    );
    assert!(!drained.spec.regions[1].drain, "the spec is the manifest's");
    gitops_sync(&hub, ns, &spec).await;
    let samples =
        common::operator::sample(Duration::from_secs(6), Duration::from_millis(300), || {
            common::operator::weights(&hub, ns, "web")
        })
        .await;
    assert!(
        samples
            .iter()
            .all(|w| w.as_deref() == Some("us-east=100 eu-west=0")),
        "a GitOps sync keeps the drain: {samples:?}"
    );
    let refused = failed(&["failover", "web", "--to", "eu-west", "-n", ns]);
    assert!(refused.contains("ActiveActive"), "{refused}");
    let refused = failed(&["status", "-n", ns, "--dry-run"]);
    assert!(
        refused.contains("--dry-run"),
        "status changes nothing: {refused}"
    );
    let refused = failed(&["cordon", "eu-west", "-n", ns]);
    assert!(
        refused.contains("'-n'"),
        "Regions have no namespace: {refused}"
    );
    succeeded(&["undrain", "web", "eu-west", "-n", ns]);
    wait_weights(&hub, ns, "web", both, "eu-west undrained", minutes).await;

    let _uncordon = Uncordon("eu-west");
    let cordoned = succeeded(&["cordon", "eu-west"]);
    assert!(
        cordoned.contains("the cordon takes eu-west's traffic away from: ")
            && cordoned.contains("day2-drain/web (weight 50)"),
        "a cordon says what it moves: {cordoned}"
    );
    assert!(
        cordoned.contains("region/eu-west spec.cordoned: false -> true"),
        "{cordoned}"
    );
    wait_weights(
        &hub,
        ns,
        "web",
        "us-east=100 eu-west=0",
        "eu-west cordoned",
        minutes,
    )
    .await;
    succeeded(&["uncordon", "eu-west"]);
    wait_weights(&hub, ns, "web", both, "eu-west uncordoned", minutes).await;
    common::operator::delete_app(&hub, ns, "web").await;
}

/// Deletes a Region when the test ends, whatever happened.
struct DeleteRegion(&'static str);

impl Drop for DeleteRegion {
    fn drop(&mut self) {
        let _ = Command::new(env().bin_dir.join("kubectl"))
            .args([
                "delete",
                "region",
                self.0,
                "--ignore-not-found",
                "--kubeconfig",
            ])
            .arg(env().kubeconfig("hub"))
            .status();
    }
}

/// Uncordons a region when the test ends, whatever happened.
struct Uncordon(&'static str);

impl Drop for Uncordon {
    fn drop(&mut self) {
        let _ = multiregion(&["uncordon", self.0]);
    }
}

/// A copy of the hub's kubeconfig whose context selects `namespace`.
fn kubeconfig_in(namespace: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("hub-in-{namespace}"));
    std::fs::copy(env().kubeconfig("hub"), &path).unwrap();
    let status = Command::new(env().bin_dir.join("kubectl"))
        .args([
            "config",
            "set-context",
            "--current",
            "--namespace",
            namespace,
        ])
        .arg("--kubeconfig")
        .arg(&path)
        .status()
        .unwrap();
    assert!(status.success());
    path
}

fn status_with(kubeconfig: &Path, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_multiregion"))
        .arg("status")
        .args(args)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test]
async fn status_reads_the_contexts_namespace_and_all_namespaces() {
    let _serial = serial().await;
    let hub = env().client("hub").await;
    for ns in ["day2-one", "day2-two"] {
        let spec = app_spec("ActivePassive", &["us-east", "eu-west"], json!({}));
        apply_app(&hub, ns, "web", spec).await;
    }
    let in_one = kubeconfig_in("day2-one");
    let table = status_with(&in_one, &[]);
    assert!(table.contains("day2-one/web"), "{table}");
    assert!(!table.contains("day2-two/web"), "{table}");
    let all: serde_json::Value =
        serde_json::from_str(&status_with(&in_one, &["-A", "-o", "json"])).unwrap();
    assert_eq!(all["kind"], "List");
    let namespaces: Vec<&str> = all["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a["metadata"]["namespace"].as_str())
        .collect();
    assert!(namespaces.contains(&"day2-one") && namespaces.contains(&"day2-two"));
    let empty = status_with(&kubeconfig_in("day2-none"), &[]);
    assert!(
        empty.contains("No MultiRegionApps found in namespace day2-none."),
        "{empty}"
    );
    let one: serde_json::Value =
        serde_json::from_str(&status_with(&in_one, &["web", "-o", "json"])).unwrap();
    assert_eq!(one["kind"], "MultiRegionApp", "one named app prints itself");
    for ns in ["day2-one", "day2-two"] {
        common::operator::delete_app(&hub, ns, "web").await;
    }
}

#[tokio::test]
async fn unjoin_removes_both_sides_and_refuses_while_an_app_uses_the_region() {
    let _serial = serial().await;
    let _heal = HealOnPanic;
    let hub = env().client("hub").await;
    let ns = "day2-unjoin";
    let spec = app_spec("ActivePassive", &["us-east", "ap-south"], json!({}));
    apply_app(&hub, ns, "web", spec).await;
    // Placed there: the operator bound the identity's writer in the app's
    // namespace, which unjoin removes too.
    let member = env().client("ap-south").await;
    common::wait_for(
        "the standby placed in ap-south",
        Duration::from_secs(60),
        || async {
            Api::<Deployment>::namespaced(member.clone(), ns)
                .get_opt("web")
                .await
                .ok()?
        },
    )
    .await;
    let out = Command::new(env!("CARGO_BIN_EXE_multiregion"))
        .args(["unjoin", "ap-south", "--hub-kubeconfig", hub_kubeconfig()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let refused = String::from_utf8_lossy(&out.stderr);
    assert!(
        refused.contains("still used by day2-unjoin/web"),
        "{refused}"
    );
    common::operator::delete_app(&hub, ns, "web").await;
    let apps: Api<MultiRegionApp> = Api::namespaced(hub.clone(), ns);
    common::wait_for("the app's cleanup", Duration::from_secs(60), || async {
        apps.get_opt("web").await.ok()?.is_none().then_some(())
    })
    .await;

    let made: Vec<String> = identities(&member)
        .await
        .iter()
        .map(|n| n.split('/').next().unwrap().to_string())
        .collect();
    assert_eq!(
        made,
        ["cr", "cr", "crb", "rb", "rb", "sa", "vap"],
        "join made one account, its reader and writer roles, its binding, its own-token binding and admission policy; the operator bound the writer in the app's namespace"
    );
    let member_kc = env().regions.lock().await.kubeconfig("ap-south").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_multiregion"))
        .args([
            "unjoin",
            "ap-south",
            "--hub-kubeconfig",
            hub_kubeconfig(),
            "--kubeconfig",
        ])
        .arg(&member_kc)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let regions: Api<Region> = Api::all(hub.clone());
    assert!(regions.get_opt("ap-south").await.unwrap().is_none());
    let secrets: Api<Secret> = Api::namespaced(hub.clone(), OPERATOR_NAMESPACE);
    assert!(
        secrets
            .get_opt("ap-south-kubeconfig")
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(identities(&member).await, Vec::<String>::new());

    join_region(&*env().regions.lock().await, "ap-south").await;
}

/// The ServiceAccounts and ClusterRoleBindings `join` made for ap-south in
/// its member (named multiregion-ap-south-<hub>).
async fn identities(member: &Client) -> Vec<String> {
    let accounts: Api<ServiceAccount> = Api::namespaced(member.clone(), "multiregion-system");
    let bindings: Api<ClusterRoleBinding> = Api::all(member.clone());
    let mut names: Vec<String> = accounts
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(|a| format!("sa/{}", a.name_any()))
        .collect();
    let bound = bindings.list(&ListParams::default()).await.unwrap().items;
    names.extend(bound.iter().map(|b| format!("crb/{}", b.name_any())));
    let roles: Api<ClusterRole> = Api::all(member.clone());
    let roles = roles.list(&ListParams::default()).await.unwrap().items;
    names.extend(roles.iter().map(|r| format!("cr/{}", r.name_any())));
    let policies: Api<ValidatingAdmissionPolicy> = Api::all(member.clone());
    let policies = policies.list(&ListParams::default()).await.unwrap().items;
    names.extend(policies.iter().map(|p| format!("vap/{}", p.name_any())));
    let in_namespaces: Api<RoleBinding> = Api::all(member.clone());
    let in_namespaces = in_namespaces
        .list(&ListParams::default())
        .await
        .unwrap()
        .items;
    names.extend(in_namespaces.iter().map(|b| format!("rb/{}", b.name_any())));
    names.retain(|n| n.contains("/multiregion-ap-south-"));
    names.sort();
    names
}

fn hub_kubeconfig() -> &'static str {
    static PATH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    PATH.get_or_init(|| env().kubeconfig("hub").to_string_lossy().to_string())
}
