//! A hub and three regions started once per test binary, the CRDs installed
//! with the real kubectl, Regions registered from kubeconfig Secrets, and
//! the operator running as a process. Tests take turns (`serial()`), since
//! some of them stop regions.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams,
};
use kube::{Client, ResourceExt};
use localregions::{LocalRegions, UpOptions};
use multiregion::api::{MultiRegionApp, MultiRegionAppStatus, Region, RegionPhase};
use serde_json::{Value, json};

use super::wait_for;

pub const REGIONS: [&str; 3] = ["us-east", "eu-west", "ap-south"];
/// Regions joined with `--allow-secrets`; eu-west is not, so the operator
/// can neither read nor write a Secret there.
pub const SECRETS_ALLOWED: [&str; 2] = ["us-east", "ap-south"];
/// Kinds every region lets the operator place for `spec.resources`.
pub const RESOURCES_ALLOWED: [&str; 3] = [
    "serviceaccounts",
    "horizontalpodautoscalers.autoscaling",
    "persistentvolumeclaims",
];
pub const OPERATOR_NAMESPACE: &str = "multiregion-system";

pub struct Env {
    pub regions: tokio::sync::Mutex<LocalRegions>,
    pub dir: PathBuf,
    pub bin_dir: PathBuf,
    operator: Mutex<Option<Child>>,
    pub metrics_port: u16,
}

static ENV: OnceLock<Env> = OnceLock::new();
/// Start PostgreSQL in the regions too (`env_with_databases`).
static WITH_DATABASES: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// One test at a time in this binary; each starts once the operator sees
/// every region answering again (a previous test may have just restarted
/// one), so no test begins inside another's fault.
pub async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    let guard = SERIAL.lock().await;
    let hub = env().client("hub").await;
    let regions: Api<Region> = Api::all(hub);
    wait_for(
        "every region Reachable for the operator",
        Duration::from_secs(60),
        || async {
            for name in REGIONS {
                let status = regions.get(name).await.ok()?.status?;
                let settled = status.phase == Some(RegionPhase::Reachable)
                    && status.consecutive_failures == 0
                    && status.consecutive_successes >= 2;
                if !settled {
                    return None;
                }
            }
            Some(())
        },
    )
    .await;
    guard
}

/// When a test fails: prints the operator's log and leaves every region
/// running and the operator up for the next test.
pub struct HealOnPanic;

impl Drop for HealOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("----- operator log -----\n{}", env().operator_log_tail());
            env().heal();
        }
    }
}

/// The shared environment, started on first use. It is stopped by the
/// localregions watchdog when the test binary exits.
pub fn env() -> &'static Env {
    ENV.get_or_init(|| {
        std::thread::spawn(|| {
            tokio::runtime::Runtime::new()
                .expect("runtime")
                .block_on(Env::start())
        })
        .join()
        .expect("environment starts")
    })
}

/// The shared environment with PostgreSQL in every region (us-east's the
/// primary), for the data tier's tests: call it before anything else.
pub fn env_with_databases() -> &'static Env {
    WITH_DATABASES.store(true, std::sync::atomic::Ordering::SeqCst);
    env()
}

impl Env {
    async fn start() -> Env {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
            "operator-{}",
            std::path::Path::new(&std::env::args().next().unwrap_or_default())
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default()
        ));
        let mut names = vec!["hub"];
        names.extend(REGIONS);
        let regions = LocalRegions::up(UpOptions {
            dir: dir.clone(),
            names: names.iter().map(|n| n.to_string()).collect(),
            stop_with_this_process: true,
            spread_hub: None,
            postgres: WITH_DATABASES.load(std::sync::atomic::Ordering::SeqCst),
        })
        .await
        .expect("local clusters start");
        let bin_dir = regions.bin_dir().to_path_buf();
        let hub_kc = regions.kubeconfig("hub").unwrap();

        // CRDs with the real kubectl, as users install them.
        let crds = Path::new(env!("CARGO_MANIFEST_DIR")).join("crds");
        run(
            &bin_dir.join("kubectl"),
            &[
                "--kubeconfig",
                hub_kc.to_str().unwrap(),
                "apply",
                "--server-side",
                "-f",
                crds.to_str().unwrap(),
            ],
        );
        run(
            &bin_dir.join("kubectl"),
            &[
                "--kubeconfig",
                hub_kc.to_str().unwrap(),
                "wait",
                "--for=condition=Established",
                "crd/regions.multiregion.io",
                "crd/multiregionapps.multiregion.io",
            ],
        );
        let hub = regions.client("hub").await.unwrap();
        ensure_namespace(&hub, OPERATOR_NAMESPACE).await;
        for name in REGIONS {
            join_region(&regions, name).await;
        }
        let metrics_port = free_port();
        let env = Env {
            regions: tokio::sync::Mutex::new(regions),
            dir,
            bin_dir,
            operator: Mutex::new(None),
            metrics_port,
        };
        env.start_operator().await;
        env
    }

    pub fn kubeconfig(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.kubeconfig"))
    }

    pub async fn client(&self, name: &str) -> Client {
        localregions::admin_client(&self.kubeconfig(name))
            .await
            .expect("client")
    }

    /// Starts the operator process (after a previous one was killed). It
    /// reads the hub's Secrets, so that apps can propagate them.
    pub async fn start_operator(&self) {
        let child = self
            .spawn_operator(
                "operator-under-test",
                self.metrics_port,
                // Tokens of 10 minutes (the shortest) renewed 5 s after
                // they are issued: the renewal test's; every other joined
                // region's lives a day.
                &[
                    "--propagate-secrets",
                    "--renew-member-tokens-within",
                    "595s",
                ],
            )
            .await;
        *self.operator.lock().unwrap() = Some(child);
    }

    /// Starts one more operator process and waits for its /readyz.
    pub async fn spawn_operator(&self, identity: &str, metrics_port: u16, extra: &[&str]) -> Child {
        let kubeconfig = self.kubeconfig("hub");
        self.spawn_operator_via(&kubeconfig, identity, metrics_port, extra)
            .await
    }

    /// Starts one more operator process that reaches the hub with
    /// `kubeconfig` (the hub's proxy, for a partition), and waits for its
    /// /readyz.
    pub async fn spawn_operator_via(
        &self,
        kubeconfig: &Path,
        identity: &str,
        metrics_port: u16,
        extra: &[&str],
    ) -> Child {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("logs/operator.log"))
            .unwrap();
        let metrics_addr = format!("127.0.0.1:{metrics_port}");
        let kubeconfig = kubeconfig.display().to_string();
        let mut args = vec![
            "run",
            "--kubeconfig",
            kubeconfig.as_str(),
            "--namespace",
            OPERATOR_NAMESPACE,
            "--metrics-addr",
            metrics_addr.as_str(),
            "--identity",
            identity,
        ];
        args.extend_from_slice(extra);
        let child = operator_command()
            .args(&args)
            .env("RUST_LOG", operator_log_filter())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("operator starts");
        self.regions.lock().await.adopt(child.id()).unwrap();
        let url = format!("http://{metrics_addr}/readyz");
        wait_for(
            "the operator to be ready",
            Duration::from_secs(30),
            || async {
                let ok = reqwest::get(&url).await.ok()?.status().is_success();
                ok.then_some(())
            },
        )
        .await;
        child
    }

    /// Pid of the default operator process.
    pub fn operator_pid(&self) -> Option<u32> {
        self.operator.lock().unwrap().as_ref().map(|c| c.id())
    }

    /// True while the default operator process runs.
    pub fn operator_running(&self) -> bool {
        self.operator
            .lock()
            .unwrap()
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// After a failed test: every region up again and the default operator
    /// running, so the next test starts from the same place.
    pub fn heal(&'static self) {
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Runtime::new().unwrap();
            runtime.block_on(async {
                let _ = self.regions.lock().await.restore_all().await;
                if !self.operator_running() {
                    self.start_operator().await;
                }
            });
        })
        .join()
        .ok();
    }

    /// SIGKILLs the operator, as a crash would.
    pub fn kill_operator(&self) {
        if let Some(mut child) = self.operator.lock().unwrap().take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Everything the operators of this test binary logged.
    pub fn operator_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("logs/operator.log")).unwrap_or_default()
    }

    pub fn operator_log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.dir.join("logs/operator.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(60)..].join("\n")
    }

    pub async fn metrics(&self) -> String {
        reqwest::get(format!("http://127.0.0.1:{}/metrics", self.metrics_port))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }
}

fn run(program: &Path, args: &[&str]) {
    let out = Command::new(program)
        .args(args)
        .output()
        .expect("command runs");
    assert!(
        out.status.success(),
        "{} {:?} failed: {}{}",
        program.display(),
        args,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

pub async fn ensure_namespace(client: &Client, name: &str) {
    let api: Api<Namespace> = Api::all(client.clone());
    api.patch(
        name,
        &PatchParams::apply("test").force(),
        &Patch::Apply(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})),
    )
    .await
    .expect("namespace");
}

/// Registers a region as users do, with least privilege: `multiregion
/// join` with the member's admin kubeconfig creates the operator's identity
/// there and a kubeconfig Secret from its token. The operator reaches the
/// region through its proxy (so tests can cut it off), checks the region's
/// endpoint, and probes every second.
pub async fn join_region(regions: &LocalRegions, name: &str) {
    let proxied = kube::config::Kubeconfig::read_from(regions.operator_kubeconfig(name).unwrap())
        .expect("operator kubeconfig");
    let through_proxy = proxied.clusters[0]
        .cluster
        .as_ref()
        .and_then(|c| c.server.clone())
        .expect("a server");
    let mut join = join_command(regions, name);
    if SECRETS_ALLOWED.contains(&name) {
        join.arg("--allow-secrets");
    }
    for kind in RESOURCES_ALLOWED {
        join.args(["--allow-resource", kind]);
    }
    let out = join
        .args(["--internal-server", &through_proxy])
        .args(["--endpoint", &regions.endpoint(name).unwrap()])
        .output()
        .expect("multiregion join runs");
    assert!(
        out.status.success(),
        "join {name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let hub = regions.client("hub").await.unwrap();
    let regions: Api<Region> = Api::all(hub);
    regions
        .patch(
            name,
            &PatchParams::apply("test").force(),
            &Patch::Apply(json!({
                "apiVersion": "multiregion.io/v1alpha1", "kind": "Region",
                "metadata": {"name": name},
                "spec": {"probe": {"intervalSeconds": 1, "timeoutSeconds": 1, "failureThreshold": 3, "successThreshold": 2},
                         "allowedNamespaces": {}, "appEndpoints": LOCAL_APP_ENDPOINTS.clone()}
            })),
        )
        .await
        .expect("probe settings");
}

/// `multiregion join NAME` with the member's admin kubeconfig and the hub's.
pub fn join_command(regions: &LocalRegions, name: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_multiregion"));
    command
        .args(["join", name, "--member-kubeconfig"])
        .arg(regions.kubeconfig(name).unwrap())
        .arg("--hub-kubeconfig")
        .arg(regions.kubeconfig("hub").unwrap());
    command
}

/// What the tests' Regions let apps point their own endpoints at: this
/// machine, and the made-up addresses of the sink tests.
pub static LOCAL_APP_ENDPOINTS: std::sync::LazyLock<Value> = std::sync::LazyLock::new(
    || json!({"cidrs": ["127.0.0.0/8", "10.10.0.0/16"], "domains": ["example.com"], "allowLocalAddresses": true}),
);

/// A kubeconfig Secret and a Region probed every second, admitting apps
/// of every namespace; `extra` is merged into the Region's spec.
pub async fn register_region(hub: &Client, name: &str, kubeconfig: &str, extra: Value) {
    let secrets: Api<Secret> = Api::namespaced(hub.clone(), OPERATOR_NAMESPACE);
    secrets
        .patch(
            &format!("{name}-kubeconfig"),
            &PatchParams::apply("test").force(),
            &Patch::Apply(json!({
                "apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": format!("{name}-kubeconfig")},
                "stringData": {"kubeconfig": kubeconfig}
            })),
        )
        .await
        .expect("secret");
    let mut spec = json!({
        "kubeconfigSecretRef": {"namespace": OPERATOR_NAMESPACE, "name": format!("{name}-kubeconfig")},
        "probe": {"intervalSeconds": 1, "timeoutSeconds": 1, "failureThreshold": 3, "successThreshold": 2},
        "allowedNamespaces": {},
        "appEndpoints": LOCAL_APP_ENDPOINTS.clone(),
    });
    if let (Some(s), Some(e)) = (spec.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            s.insert(k.clone(), v.clone());
        }
    }
    let regions: Api<Region> = Api::all(hub.clone());
    regions
        .patch(
            name,
            &PatchParams::apply("test").force(),
            &Patch::Apply(json!({
                "apiVersion": "multiregion.io/v1alpha1", "kind": "Region",
                "metadata": {"name": name}, "spec": spec
            })),
        )
        .await
        .expect("region");
}

/// A free port on 127.0.0.1, outside the range outgoing connections use.
pub fn free_port() -> u16 {
    localregions::free_port().expect("a free port")
}

/// An app spec with fast health rounds (1 s x 3 / 2) and a small workload.
pub fn app_spec(strategy: &str, regions: &[&str], extra: Value) -> Value {
    let mut spec = json!({
        "strategy": strategy,
        "regions": regions.iter().map(|r| json!({"name": r})).collect::<Vec<_>>(),
        "workload": {
            "replicas": 3,
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]}
            },
            "service": {"ports": [{"name": "http", "port": 80, "targetPort": 8080}]}
        },
        "healthCheck": {"intervalSeconds": 1, "timeoutSeconds": 1, "failureThreshold": 3, "successThreshold": 2},
        "failover": {"failbackHoldSeconds": 3600}
    });
    merge(&mut spec, extra);
    spec
}

pub fn merge(base: &mut Value, patch: Value) {
    match (base, patch) {
        (Value::Object(b), Value::Object(p)) => {
            for (k, v) in p {
                merge(b.entry(k).or_insert(Value::Null), v);
            }
        }
        (b, p) => *b = p,
    }
}

pub async fn apply_app(hub: &Client, namespace: &str, name: &str, spec: Value) {
    ensure_namespace(hub, namespace).await;
    let api: Api<MultiRegionApp> = Api::namespaced(hub.clone(), namespace);
    api.patch(
        name,
        &PatchParams::apply("test").force(),
        &Patch::Apply(json!({
            "apiVersion": "multiregion.io/v1alpha1", "kind": "MultiRegionApp",
            "metadata": {"name": name}, "spec": spec
        })),
    )
    .await
    .expect("app applied");
}

pub async fn status(hub: &Client, namespace: &str, name: &str) -> Option<MultiRegionAppStatus> {
    let api: Api<MultiRegionApp> = Api::namespaced(hub.clone(), namespace);
    api.get(name).await.ok()?.status
}

/// Waits until the app's weights summary is `want`.
pub async fn wait_weights(
    hub: &Client,
    namespace: &str,
    name: &str,
    want: &str,
    what: &str,
    timeout: Duration,
) {
    wait_for(what, timeout, || async {
        (weights(hub, namespace, name).await? == want).then_some(())
    })
    .await;
}

/// The weights summary, once the app has one.
pub async fn weights(hub: &Client, namespace: &str, name: &str) -> Option<String> {
    status(hub, namespace, name).await?.weights
}

pub fn condition(status: &MultiRegionAppStatus, type_: &str) -> Option<(String, String, String)> {
    status
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
}

/// (spec.replicas, readyReplicas) of the placed Deployment in a region.
pub async fn placed(region: &Client, namespace: &str, name: &str) -> Option<(i32, i32)> {
    let api: Api<Deployment> = Api::namespaced(region.clone(), namespace);
    let d = api.get_opt(name).await.ok()??;
    Some((
        d.spec.and_then(|s| s.replicas).unwrap_or(1),
        d.status.and_then(|s| s.ready_replicas).unwrap_or(0),
    ))
}

/// Deletes an app, asking again while the hub does not take the request
/// (a busy API server answers a timeout; gone already is done).
pub async fn delete_app(hub: &Client, namespace: &str, name: &str) {
    let api: Api<MultiRegionApp> = Api::namespaced(hub.clone(), namespace);
    wait_for(
        &format!("the hub to take the deletion of {namespace}/{name}"),
        Duration::from_secs(120),
        || async {
            match api.delete(name, &DeleteParams::default()).await {
                Ok(_) => Some(()),
                Err(kube::Error::Api(s)) if s.code == 404 => Some(()),
                Err(_) => None,
            }
        },
    )
    .await;
}

/// A namespace an admin made in a member and let the operator use (the
/// label a joined identity needs to write there).
pub async fn adopted_namespace(region: &Client, name: &str) {
    let api: Api<Namespace> = Api::all(region.clone());
    api.patch(
        name,
        &PatchParams::apply("test").force(),
        &Patch::Apply(json!({"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": name, "labels": {"app.kubernetes.io/managed-by": "multiregion",
                "pod-security.kubernetes.io/enforce": "baseline"}}})),
    )
    .await
    .expect("namespace");
}

/// Creates a Deployment by hand (not labelled as the operator's), in a
/// namespace the operator may use.
pub async fn handmade_deployment(region: &Client, namespace: &str, name: &str) -> Deployment {
    adopted_namespace(region, namespace).await;
    let api: Api<Deployment> = Api::namespaced(region.clone(), namespace);
    let d: Deployment = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "labels": {"owner": "a-person"}},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "handmade"}},
            "template": {"metadata": {"labels": {"app": "handmade"}}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}}
        }
    }))
    .unwrap();
    api.create(&PostParams::default(), &d)
        .await
        .expect("handmade deployment")
}

/// Waits until an event with this reason is recorded in the namespace, and
/// returns all of them. The operator publishes Events after it writes the
/// status, so a test that has just seen the status change must wait for them.
pub async fn wait_events(
    hub: &Client,
    namespace: &str,
    reason: &str,
    timeout: Duration,
) -> Vec<String> {
    wait_for(&format!("a {reason} event"), timeout, || async {
        let found = events(hub, namespace, reason).await;
        (!found.is_empty()).then_some(found)
    })
    .await
}

/// Names of events with this reason recorded on the app.
pub async fn events(hub: &Client, namespace: &str, reason: &str) -> Vec<String> {
    let api: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(hub.clone(), namespace);
    api.list(&Default::default())
        .await
        .map(|l| {
            l.items
                .into_iter()
                .filter(|e| e.reason.as_deref() == Some(reason))
                .map(|e| format!("{}: {}", e.name_any(), e.note.unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default()
}

/// The HTTPRoute and DNSEndpoint CRDs (a minimal fixture), applied to the
/// hub with the real kubectl.
pub fn install_traffic_crds() {
    let env = env();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/traffic-crds.yaml");
    run(
        &env.bin_dir.join("kubectl"),
        &[
            "--kubeconfig",
            env.kubeconfig("hub").to_str().unwrap(),
            "apply",
            "--server-side",
            "-f",
            fixture.to_str().unwrap(),
        ],
    );
}

/// The traffic sinks of the apps in one namespace of the hub.
pub struct Sinks {
    routes: Api<DynamicObject>,
    dns: Api<DynamicObject>,
}

impl Sinks {
    pub fn new(hub: &Client, namespace: &str) -> Self {
        let resource = |group: &str, version: &str, kind: &str, plural: &str| {
            ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural)
        };
        Sinks {
            routes: Api::namespaced_with(
                hub.clone(),
                namespace,
                &resource("gateway.networking.k8s.io", "v1", "HTTPRoute", "httproutes"),
            ),
            dns: Api::namespaced_with(
                hub.clone(),
                namespace,
                &resource(
                    "externaldns.k8s.io",
                    "v1alpha1",
                    "DNSEndpoint",
                    "dnsendpoints",
                ),
            ),
        }
    }

    /// The weights in the HTTPRoute's backendRefs and in the DNSEndpoint's
    /// records, in order, once both exist.
    pub async fn weights(&self, route: &str, dns: &str) -> Option<(Vec<i64>, Vec<i64>)> {
        let route = self.routes.get(route).await.ok()?;
        let dns = self.dns.get(dns).await.ok()?;
        let route_weights = route.data["spec"]["rules"][0]["backendRefs"]
            .as_array()?
            .iter()
            .map(|b| b["weight"].as_i64().unwrap_or(-1))
            .collect();
        let dns_weights = dns.data["spec"]["endpoints"]
            .as_array()?
            .iter()
            .map(|e| {
                e["providerSpecific"][0]["value"]
                    .as_str()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(-1)
            })
            .collect();
        Some((route_weights, dns_weights))
    }

    /// Home-region routing as the sinks hold it: the backend the HTTPRoute
    /// sends `header: home` to, and the targets of the DNSEndpoint's record
    /// `setIdentifier`.
    pub async fn home(
        &self,
        route: &str,
        home: &str,
        dns: &str,
        record: &str,
    ) -> Option<(String, String)> {
        let route = self.routes.get(route).await.ok()?;
        let rule = route.data["spec"]["rules"]
            .as_array()?
            .iter()
            .find(|r| r["matches"][0]["headers"][0]["value"] == home)?
            .clone();
        let backend = rule["backendRefs"][0]["name"].as_str()?.to_string();
        let dns = self.dns.get(dns).await.ok()?;
        let record = dns.data["spec"]["endpoints"]
            .as_array()?
            .iter()
            .find(|e| e["setIdentifier"] == record)?
            .clone();
        Some((backend, record["targets"].to_string()))
    }

    /// The setIdentifier of each record of the DNSEndpoint.
    pub async fn dns_identifiers(&self, name: &str) -> Vec<String> {
        let dns = self.dns.get(name).await.unwrap();
        dns.data["spec"]["endpoints"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["setIdentifier"].as_str().unwrap().to_string())
            .collect()
    }
}

/// The identity holding the operators' Lease, once someone does.
pub async fn lease_holder(hub: &Client) -> Option<String> {
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> =
        Api::namespaced(hub.clone(), OPERATOR_NAMESPACE);
    leases
        .get("multiregion-operator")
        .await
        .ok()?
        .spec?
        .holder_identity
        .filter(|h| !h.is_empty())
}

/// Takes a sample every `every` for `span` (what users see over time).
pub async fn sample<T, F, Fut>(span: Duration, every: Duration, mut take: F) -> Vec<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = T>,
{
    let end = tokio::time::Instant::now() + span;
    let mut samples = Vec::new();
    while tokio::time::Instant::now() < end {
        samples.push(take().await);
        tokio::time::sleep(every).await;
    }
    samples
}

/// The Events in the namespace an operator instance reported after `since`.
pub async fn events_by(
    hub: &Client,
    namespace: &str,
    identity: &str,
    since: jiff::Timestamp,
) -> Vec<String> {
    let api: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(hub.clone(), namespace);
    api.list(&Default::default())
        .await
        .map(|l| {
            l.items
                .into_iter()
                .filter(|e| e.reporting_instance.as_deref() == Some(identity))
                .filter(|e| e.event_time.as_ref().is_some_and(|t| t.0 > since))
                .map(|e| {
                    format!(
                        "{}: {}",
                        e.reason.unwrap_or_default(),
                        e.note.unwrap_or_default()
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// What a test's ValidatingAdmissionPolicy refuses: writes (`operations`)
/// of `group`'s `resource` (a subresource such as `multiregionapps/status`
/// included), in namespace `namespace` only when given.
pub struct Refusal<'a> {
    pub name: &'a str,
    pub group: &'a str,
    pub resource: &'a str,
    pub operations: &'a [&'a str],
    pub namespace: Option<&'a str>,
}

/// Puts the refusal in place on the hub (`on`), or removes it. The API
/// server reads policies from a cache: callers wait until a write is
/// actually refused.
pub async fn refuse_writes(hub: &Client, refusal: &Refusal<'_>, on: bool) {
    let api = |kind: &str, plural: &str| -> Api<DynamicObject> {
        let gvk = GroupVersionKind::gvk("admissionregistration.k8s.io", "v1", kind);
        Api::all_with(
            hub.clone(),
            &ApiResource::from_gvk_with_plural(&gvk, plural),
        )
    };
    let policies = api("ValidatingAdmissionPolicy", "validatingadmissionpolicies");
    let bindings = api(
        "ValidatingAdmissionPolicyBinding",
        "validatingadmissionpolicybindings",
    );
    let name = refusal.name;
    if !on {
        let _ = bindings.delete(name, &DeleteParams::default()).await;
        let _ = policies.delete(name, &DeleteParams::default()).await;
        return;
    }
    let apply = PatchParams::apply("test").force();
    let policy = json!({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": name},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {"resourceRules": [{
                "apiGroups": [refusal.group], "apiVersions": ["*"],
                "operations": refusal.operations, "resources": [refusal.resource]
            }]},
            "validations": [{"expression": "false", "message": format!("{name}: refused by the test")}]
        }
    });
    policies
        .patch(name, &apply, &Patch::Apply(policy))
        .await
        .unwrap();
    let mut binding_spec = json!({"policyName": name, "validationActions": ["Deny"]});
    if let Some(ns) = refusal.namespace {
        binding_spec["matchResources"] =
            json!({"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}}});
    }
    let binding = json!({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": name}, "spec": binding_spec
    });
    bindings
        .patch(name, &apply, &Patch::Apply(binding))
        .await
        .unwrap();
}

/// The operator's command: the binary, or `MULTIREGION_OPERATOR_WRAPPER`
/// given the binary's path and its arguments (a heap profiler, say:
/// `heaptrack -o /tmp/operator`).
fn operator_command() -> Command {
    let program = env!("CARGO_BIN_EXE_multiregion");
    match std::env::var_os("MULTIREGION_OPERATOR_WRAPPER") {
        Some(wrapper) => {
            let mut command = Command::new(wrapper);
            command.arg(program);
            command
        }
        None => Command::new(program),
    }
}

/// The operator's log filter: `MULTIREGION_OPERATOR_LOG` when set (say
/// `info,multiregion::controller=debug` to follow each app's decisions in
/// a bench), else info without kube's own lines.
fn operator_log_filter() -> String {
    std::env::var("MULTIREGION_OPERATOR_LOG")
        .unwrap_or_else(|_| "info,kube_client=off,kube_runtime=warn".into())
}
