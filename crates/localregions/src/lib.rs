//! Real Kubernetes control planes as plain processes on loopback.
//!
//! `localregions` starts one etcd and, for each named cluster, a
//! kube-apiserver (own CA and TLS, RBAC on, ServiceAccount tokens), a
//! kube-controller-manager (node monitor grace period of a few seconds), a
//! kube-scheduler and KWOK with two fake nodes labelled
//! `topology.kubernetes.io/region=<name>`. It is the environment of the
//! end-to-end tests and of the demo; the same code serves both.
//!
//! State (pids, ports, command lines) lives in `DIR/state.json`, so each
//! subcommand of the `localregions` command can act on what `up` started.

mod answers;
mod binaries;
pub mod cli;
mod components;
mod faults;
pub mod load;
mod netns;
pub mod pki;
mod postgres;
mod process;
mod spread;
mod traffic;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use k8s_openapi::api::core::v1::{Node, ServiceAccount};
use kube::api::{Api, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde::{Deserialize, Serialize};

pub use binaries::{Binaries, source_dir};
pub use postgres::{DATABASE, Database, Replication};
pub use process::{Component, free_port};
pub use spread::{HubMember, SpreadHub};
pub use traffic::{GATEWAY_NAME, GATEWAY_NAMESPACE, Traffic, ZONE};

/// Where clusters live unless `--dir` says otherwise.
pub const DEFAULT_DIR: &str = ".local/regions";

/// How long any one component may take to become ready.
const READY_TIMEOUT: Duration = Duration::from_secs(120);

/// KWOK renews node leases every quarter of this; the controller-manager's
/// grace period below is a few renewals, so a stopped KWOK is noticed fast.
pub(crate) const NODE_LEASE_SECONDS: u32 = 8;
pub(crate) const NODE_MONITOR_GRACE: &str = "10s";
const NODES_PER_CLUSTER: usize = 2;
/// Client-side request rate of each cluster's controller-manager and
/// scheduler (the upstream defaults are 20/30 and 50/100).
pub(crate) const CONTROLLER_QPS: u32 = 1000;
pub(crate) const CONTROLLER_BURST: u32 = 2000;
/// How long each component gets to exit on SIGTERM in `down`: nothing is
/// kept but etcd's data, and an API server would otherwise serve out its
/// shutdown delay (20 s) first.
pub(crate) const DOWN_GRACE: Duration = Duration::from_secs(1);
/// How long a restarted component gets to exit on SIGTERM.
const COMPONENT_STOP_GRACE: Duration = Duration::from_secs(2);

const KWOK_STAGES: &str = include_str!("../kwok-stages.yaml");

#[derive(Clone, Debug, Serialize, Deserialize)]
struct State {
    bin_dir: PathBuf,
    etcd_url: String,
    etcd: Component,
    /// The fault-injection proxy every operator path and endpoint runs through.
    toxiproxy: Component,
    toxiproxy_port: u16,
    /// The port every region's endpoint is published on, each region on its
    /// own loopback address (127.0.0.10 + its index): a DNS record (an
    /// address without a port) then tells regions apart.
    endpoint_port: u16,
    clusters: Vec<ClusterState>,
    watchdog: Option<Component>,
    /// Other processes to stop with the clusters (an operator under test).
    #[serde(default)]
    adopted: Vec<i32>,
    /// The gateway and DNS, once `start_traffic` ran.
    #[serde(default)]
    traffic: Option<Traffic>,
    /// The hub spread over the regions (`up --spread-hub`); `None` when
    /// the hub is a cluster of its own on the host.
    #[serde(default)]
    spread: Option<SpreadHub>,
    /// Each member region's PostgreSQL (`up --postgres`), the first
    /// started as the primary.
    #[serde(default)]
    databases: Vec<Database>,
    /// What commits wait for (`replication`).
    #[serde(default)]
    replication: Replication,
}

/// One running cluster.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ClusterState {
    pub name: String,
    /// `https://127.0.0.1:<port>` of its API server.
    pub server: String,
    pub kubeconfig: PathBuf,
    /// The same API server through the operator's proxy (see `partition`).
    pub operator_kubeconfig: PathBuf,
    /// The region's endpoint as clients and the operator reach it:
    /// `http://127.0.0.1:<port>`, through its proxy. It answers every
    /// request with the region's name.
    pub endpoint: String,
    apiserver: Component,
    controller_manager: Component,
    scheduler: Component,
    scheduler_port: u16,
    kwok: Component,
    /// The process behind the endpoint, and the port it listens on.
    endpoint_process: Component,
    endpoint_port: u16,
}

impl ClusterState {
    fn components(&self) -> [&Component; 5] {
        [
            &self.apiserver,
            &self.controller_manager,
            &self.scheduler,
            &self.kwok,
            &self.endpoint_process,
        ]
    }
}

/// Where the operator reaches a new cluster, and where clients reach it.
struct ProxiedPaths {
    operator_kubeconfig: PathBuf,
    endpoint: String,
}

/// Options for [`LocalRegions::up`].
#[derive(Clone, Debug)]
pub struct UpOptions {
    pub dir: PathBuf,
    pub names: Vec<String>,
    /// Also start a watchdog that stops everything when this process exits,
    /// however it exits (tests: a panic, a SIGKILL from a timeout).
    pub stop_with_this_process: bool,
    /// Spread the hub with this name over every cluster in `names` (each
    /// then a region with its own network namespace; needs root) instead of
    /// starting it as a cluster of its own.
    pub spread_hub: Option<String>,
    /// Start PostgreSQL in every member region (every name but the first,
    /// the hub; with a spread hub every name): the first member's is the
    /// primary, the others stream from it.
    pub postgres: bool,
}

/// A set of local clusters started by `up` (or found by `open`).
#[derive(Debug)]
pub struct LocalRegions {
    dir: PathBuf,
    state: State,
}

impl LocalRegions {
    /// Starts etcd and every named cluster, one after another, and returns
    /// when all of them are ready. The processes keep running after this
    /// process exits unless `stop_with_this_process` is set.
    pub async fn up(options: UpOptions) -> Result<Self> {
        if options.names.is_empty() {
            bail!("name at least one cluster to start");
        }
        for name in options.names.iter().chain(&options.spread_hub) {
            validate_name(name)?;
        }
        if let Some(hub) = &options.spread_hub
            && options.names.contains(hub)
        {
            bail!(
                "the spread hub {hub:?} is not also a region: name the hub once, after --spread-hub"
            );
        }
        let dir = absolute(&options.dir)?;
        if let Ok(existing) = Self::open(&dir)
            && existing.any_running()
        {
            bail!(
                "clusters are already running in {} (run `localregions down --dir {}` first)",
                dir.display(),
                dir.display()
            );
        }
        clean(&dir)?;
        std::fs::create_dir_all(dir.join("logs"))?;
        let bins = Binaries::locate()?;
        std::fs::write(dir.join("kwok-stages.yaml"), KWOK_STAGES)?;

        let (etcd, etcd_url) = components::etcd(&dir, &bins)?;
        let (toxiproxy, toxiproxy_port) = components::toxiproxy(&dir, &bins)?;
        let mut regions = LocalRegions {
            dir: dir.clone(),
            state: State {
                bin_dir: bins.dir.clone(),
                etcd_url,
                etcd,
                toxiproxy,
                toxiproxy_port,
                endpoint_port: process::free_port()?,
                clusters: Vec::new(),
                watchdog: None,
                adopted: Vec::new(),
                traffic: None,
                spread: None,
                databases: Vec::new(),
                replication: Replication::Async,
            },
        };
        if options.stop_with_this_process {
            regions.start_watchdog()?;
        }
        if let Some(hub) = &options.spread_hub {
            regions.create_network(&bins, hub, &options.names)?;
        }
        regions.state.etcd.start()?;
        regions.state.toxiproxy.start()?;
        regions.save()?;
        let result = regions.start_all(&bins, &options).await;
        if let Err(err) = result {
            eprintln!("{}", regions.logs_tail(40));
            regions.down();
            return Err(err);
        }
        Ok(regions)
    }

    async fn start_all(&mut self, bins: &Binaries, options: &UpOptions) -> Result<()> {
        let names = &options.names;
        wait_etcd(&self.state.etcd_url, &self.state.etcd).await?;
        let toxiproxy = faults::Toxiproxy::new(self.state.toxiproxy_port)?;
        wait_until(&self.state.toxiproxy, "toxiproxy /version", || {
            toxiproxy.ready()
        })
        .await?;
        if self.state.spread.is_some() {
            let started = Instant::now();
            self.start_spread_hub().await?;
            tracing::info!(
                seconds = started.elapsed().as_secs_f32(),
                "spread hub ready"
            );
        }
        if options.postgres {
            let started = Instant::now();
            self.start_databases(&self.database_places(names)).await?;
            tracing::info!(seconds = started.elapsed().as_secs_f32(), "databases ready");
        }
        for (index, name) in names.iter().enumerate() {
            let started = Instant::now();
            self.start_cluster(bins, name, index).await?;
            tracing::info!(cluster = %name, seconds = started.elapsed().as_secs_f32(), "cluster ready");
        }
        Ok(())
    }

    /// The address a cluster's host processes listen on: loopback, or the
    /// region's host address with a spread hub.
    fn host_of(&self, index: usize) -> String {
        match &self.state.spread {
            Some(spread) => spread.network.host_address(index),
            None => "127.0.0.1".to_string(),
        }
    }

    /// The member regions that get a database, and where each listens:
    /// every cluster but the first (the hub), or every region of a spread
    /// hub.
    fn database_places(&self, names: &[String]) -> Vec<(String, String)> {
        let skip = usize::from(self.state.spread.is_none());
        names
            .iter()
            .enumerate()
            .skip(skip)
            .map(|(index, name)| (name.clone(), self.host_of(index)))
            .collect()
    }

    async fn start_cluster(&mut self, bins: &Binaries, name: &str, index: usize) -> Result<()> {
        let host = self.host_of(index);
        let recipe =
            components::Recipe::new(&self.dir, bins, name, index, &self.state.etcd_url, &host)?;
        let mut apiserver = recipe.apiserver();
        let mut controller_manager = recipe.controller_manager()?;
        let (mut scheduler, scheduler_port) = recipe.scheduler()?;
        let kwok = recipe.kwok()?;
        let database = self.database(name).ok().map(Database::uri);
        let (mut endpoint_process, endpoint_port) = recipe.endpoint(database)?;
        let paths = self.proxy(&recipe, endpoint_port).await?;
        apiserver.start()?;
        endpoint_process.start()?;
        self.state.clusters.push(ClusterState {
            name: name.to_string(),
            server: recipe.server.clone(),
            kubeconfig: recipe.kubeconfig.clone(),
            operator_kubeconfig: paths.operator_kubeconfig,
            endpoint: paths.endpoint,
            apiserver: apiserver.clone(),
            controller_manager: controller_manager.clone(),
            scheduler: scheduler.clone(),
            scheduler_port,
            kwok,
            endpoint_process: endpoint_process.clone(),
            endpoint_port,
        });
        self.save()?;
        wait_endpoint(&endpoint_process, endpoint_port).await?;

        let client = admin_client(&recipe.kubeconfig).await?;
        wait_apiserver(&client, &apiserver).await?;
        controller_manager.start()?;
        scheduler.start()?;
        self.cluster_mut(name)?.controller_manager = controller_manager.clone();
        self.cluster_mut(name)?.scheduler = scheduler.clone();
        self.save()?;
        create_nodes(&client, name).await?;
        self.start_nodes(name).await?;
        wait_until(
            &controller_manager,
            "the default ServiceAccount",
            || async {
                let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), "default");
                Ok(sas.get_opt("default").await?.is_some())
            },
        )
        .await?;
        wait_until(&scheduler, "scheduler /readyz", || async {
            scheduler_ready(scheduler_port).await
        })
        .await?;
        Ok(())
    }

    /// The proxies in front of a new cluster's API server (the operator's
    /// path) and endpoint, and the kubeconfig that goes through the first.
    async fn proxy(
        &self,
        recipe: &components::Recipe<'_>,
        endpoint_port: u16,
    ) -> Result<ProxiedPaths> {
        let toxiproxy = faults::Toxiproxy::new(self.state.toxiproxy_port)?;
        let name = recipe.name();
        let host = recipe.host();
        let api_port = process::free_port()?;
        let operator_path = format!("{host}:{api_port}");
        toxiproxy
            .proxy(
                &faults::api_proxy(name),
                &operator_path,
                &format!("{host}:{}", recipe.api_port()),
            )
            .await?;
        // A spread hub's region publishes on its own host address, so its
        // cuts apply; otherwise one loopback address per region.
        let public_host = match &self.state.spread {
            Some(_) => host.to_string(),
            None => format!("127.0.0.{}", 10 + recipe.index()),
        };
        let public = format!("{public_host}:{}", self.state.endpoint_port);
        toxiproxy
            .proxy(
                &faults::endpoint_proxy(name),
                &public,
                &format!("127.0.0.1:{endpoint_port}"),
            )
            .await?;
        let direct = std::fs::read_to_string(&recipe.kubeconfig)?;
        let operator_kubeconfig = self.dir.join(format!("{name}.operator.kubeconfig"));
        let through_proxy = direct.replace(&recipe.server, &format!("https://{operator_path}"));
        pki::write_private(&operator_kubeconfig, &through_proxy)?;
        Ok(ProxiedPaths {
            operator_kubeconfig,
            endpoint: format!("http://{public}"),
        })
    }

    /// Reads the state of clusters started earlier in `dir`.
    pub fn open(dir: &Path) -> Result<Self> {
        let dir = absolute(dir)?;
        let path = dir.join("state.json");
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "no local regions in {} (run `localregions up` first)",
                dir.display()
            )
        })?;
        let state =
            serde_json::from_str(&text).with_context(|| format!("reading {}", path.display()))?;
        Ok(LocalRegions { dir, state })
    }

    /// Stops every process `up` started and forgets them. Data stays on disk
    /// until the next `up` in the same directory.
    pub fn down(&mut self) {
        if let Some(traffic) = &mut self.state.traffic {
            traffic.stop();
        }
        for cluster in self.state.clusters.iter_mut().rev() {
            for component in [
                &mut cluster.endpoint_process,
                &mut cluster.kwok,
                &mut cluster.scheduler,
                &mut cluster.controller_manager,
                &mut cluster.apiserver,
            ] {
                component.stop(DOWN_GRACE);
            }
        }
        self.down_databases();
        self.down_spread();
        self.state.etcd.stop(Duration::from_secs(10));
        self.state.toxiproxy.stop(Duration::from_secs(2));
        for pid in self.state.adopted.drain(..) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        if let Some(watchdog) = &mut self.state.watchdog {
            watchdog.stop(Duration::ZERO);
        }
        let _ = std::fs::remove_file(self.dir.join("state.json"));
        let _ = std::fs::remove_file(self.dir.join("pids"));
    }

    /// Makes a cluster unreachable: its API server is killed (as in a crash).
    /// Its data stays in etcd.
    pub fn stop_apiserver(&mut self, name: &str) -> Result<()> {
        self.cluster_mut(name)?.apiserver.stop(Duration::ZERO);
        self.save()
    }

    /// Terminates a cluster's API server gracefully, as a rolling upgrade
    /// does: for `APISERVER_SHUTDOWN_DELAY` its `/readyz` answers 500
    /// while it still serves every request, then it exits (the region is
    /// then unreachable). Returns at once. To bring it back, `stop_apiserver`
    /// (a drained server may linger on its in-flight requests after it
    /// stopped listening) then `start_apiserver`.
    pub fn drain_apiserver(&mut self, name: &str) -> Result<()> {
        self.cluster_mut(name)?.apiserver.terminate();
        self.save()
    }

    /// Starts a cluster's API server again on the same port and waits for
    /// it. When it was down, the cluster's controller-manager, scheduler and
    /// KWOK (if running) are restarted around it, so the region comes back
    /// whole:
    /// - they are stopped before the API server returns: a controller-manager
    ///   that lived through the outage sees every node lease stale the moment
    ///   the server answers and marks all pods NotReady; the KWOK started
    ///   next could miss those pods (it skips pods of nodes it has not
    ///   registered yet) and leave them NotReady for good;
    /// - they are started after it, KWOK first, so node leases are fresh when
    ///   the new controller-manager looks, and no component waits out
    ///   client-go's reconnect backoff (up to a minute) to see new objects.
    pub async fn start_apiserver(&mut self, name: &str) -> Result<()> {
        let cluster = self.cluster_mut(name)?;
        let was_down = !cluster.apiserver.is_running();
        let kwok_was_running = cluster.kwok.is_running();
        if was_down {
            for component in [
                &mut cluster.controller_manager,
                &mut cluster.scheduler,
                &mut cluster.kwok,
            ] {
                component.stop(COMPONENT_STOP_GRACE);
            }
            cluster.apiserver.start()?;
        }
        let apiserver = cluster.apiserver.clone();
        let kubeconfig = cluster.kubeconfig.clone();
        self.save()?;
        wait_apiserver(&admin_client(&kubeconfig).await?, &apiserver).await?;
        if was_down {
            let cluster = self.cluster_mut(name)?;
            if kwok_was_running {
                cluster.kwok.start()?;
            }
            cluster.controller_manager.start()?;
            cluster.scheduler.start()?;
            self.save()?;
        }
        Ok(())
    }

    /// Stops a cluster's KWOK: its node leases stop being renewed, the
    /// controller-manager marks the nodes NotReady and their pods not ready.
    pub fn stop_nodes(&mut self, name: &str) -> Result<()> {
        self.cluster_mut(name)?.kwok.stop(Duration::ZERO);
        self.save()
    }

    /// Starts a cluster's KWOK again and waits until its nodes are Ready.
    pub async fn start_nodes(&mut self, name: &str) -> Result<()> {
        let cluster = self.cluster_mut(name)?;
        if !cluster.kwok.is_running() {
            cluster.kwok.start()?;
        }
        let kwok = cluster.kwok.clone();
        let kubeconfig = cluster.kubeconfig.clone();
        self.save()?;
        let client = admin_client(&kubeconfig).await?;
        wait_until(&kwok, "nodes Ready", || async {
            let nodes: Api<Node> = Api::all(client.clone());
            let list = nodes.list(&Default::default()).await?;
            Ok(!list.items.is_empty() && list.items.iter().all(node_ready))
        })
        .await
    }

    /// Has the watchdog (and `down`) also kill `pid`: for processes a test
    /// starts next to the clusters, such as the operator.
    pub fn adopt(&mut self, pid: u32) -> Result<()> {
        self.state.adopted.push(pid as i32);
        self.save()
    }

    /// The clusters, in the order they were started.
    pub fn clusters(&self) -> &[ClusterState] {
        &self.state.clusters
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Directory of the control-plane binaries (kubectl, helm, ...).
    pub fn bin_dir(&self) -> &Path {
        &self.state.bin_dir
    }

    /// A cluster's admin kubeconfig; for a spread hub, the hub's through
    /// its first region (`hub_kubeconfig_in` picks the region).
    pub fn kubeconfig(&self, name: &str) -> Result<PathBuf> {
        if self.is_spread_hub(name) {
            return Ok(self.dir.join(format!("{name}.kubeconfig")));
        }
        Ok(self.cluster(name)?.kubeconfig.clone())
    }

    /// The kubeconfig of a cluster through the operator's proxy (a spread
    /// hub has no proxy: its own kubeconfig).
    pub fn operator_kubeconfig(&self, name: &str) -> Result<PathBuf> {
        if self.is_spread_hub(name) {
            return self.kubeconfig(name);
        }
        Ok(self.cluster(name)?.operator_kubeconfig.clone())
    }

    fn is_spread_hub(&self, name: &str) -> bool {
        self.state.spread.as_ref().is_some_and(|s| s.name == name)
    }

    /// The spread hub, if the hub is spread over the regions.
    pub fn spread_hub(&self) -> Option<&SpreadHub> {
        self.state.spread.as_ref()
    }

    /// A region's endpoint (`http://127.0.0.1:<port>`).
    pub fn endpoint(&self, name: &str) -> Result<String> {
        Ok(self.cluster(name)?.endpoint.clone())
    }

    /// An admin client for one cluster.
    pub async fn client(&self, name: &str) -> Result<kube::Client> {
        admin_client(&self.kubeconfig(name)?).await
    }

    /// Shell lines exporting each cluster's kubeconfig path
    /// (`KUBECONFIG_US_EAST=...`) and putting kubectl and helm on PATH.
    pub fn env_lines(&self) -> String {
        let mut out = String::new();
        if let Some(spread) = &self.state.spread {
            let upper = spread.name.to_uppercase().replace('-', "_");
            let path = self.dir.join(format!("{}.kubeconfig", spread.name));
            out.push_str(&format!("export KUBECONFIG_{upper}={}\n", path.display()));
        }
        for cluster in &self.state.clusters {
            let upper = cluster.name.to_uppercase().replace('-', "_");
            out.push_str(&format!(
                "export KUBECONFIG_{upper}={}\n",
                cluster.kubeconfig.display()
            ));
            out.push_str(&format!("export ENDPOINT_{upper}={}\n", cluster.endpoint));
        }
        out.push_str(&self.database_env_lines());
        out.push_str(&format!(
            "export PATH={}:\"$PATH\"\n",
            self.state.bin_dir.display()
        ));
        out
    }

    /// etcd, the proxy, and every cluster's components.
    fn components(&self) -> impl Iterator<Item = &Component> {
        [&self.state.etcd, &self.state.toxiproxy]
            .into_iter()
            .chain(self.state.spread.iter().flat_map(|s| s.components()))
            .chain(self.state.clusters.iter().flat_map(|c| c.components()))
            .chain(self.state.traffic.iter().flat_map(|t| t.components()))
            .chain(self.state.databases.iter().map(Database::component))
    }

    /// A figure of every running process, by component name.
    fn per_process<T>(&self, figure: impl Fn(i32) -> Option<T>) -> BTreeMap<String, T> {
        self.components()
            .filter_map(|c| Some((c.name.clone(), figure(c.pid?)?)))
            .collect()
    }

    /// Resident memory (KiB) of every running process.
    pub fn resident_memory(&self) -> BTreeMap<String, u64> {
        self.per_process(rss_kib)
    }

    /// CPU seconds (user and system) each running process has used so far.
    pub fn cpu_seconds(&self) -> BTreeMap<String, f64> {
        self.per_process(cpu_seconds)
    }

    /// The last lines of every component's log, for a failing test.
    pub fn logs_tail(&self, lines: usize) -> String {
        let mut out = String::new();
        for component in self.components() {
            out.push_str(&format!(
                "----- {} ({}) -----\n{}\n",
                component.name,
                component.log.display(),
                component.log_tail(lines)
            ));
        }
        out
    }

    fn any_running(&self) -> bool {
        self.components().any(Component::is_running)
    }

    fn cluster(&self, name: &str) -> Result<&ClusterState> {
        self.state
            .clusters
            .iter()
            .find(|c| c.name == name)
            .ok_or_else(|| anyhow!("no local cluster named {name:?} in {}", self.dir.display()))
    }

    fn cluster_mut(&mut self, name: &str) -> Result<&mut ClusterState> {
        let dir = self.dir.clone();
        self.state
            .clusters
            .iter_mut()
            .find(|c| c.name == name)
            .ok_or_else(|| anyhow!("no local cluster named {name:?} in {}", dir.display()))
    }

    /// Writes the state file and the pid list the watchdog reads.
    fn save(&self) -> Result<()> {
        let json = serde_json::to_string_pretty(&self.state)?;
        std::fs::write(self.dir.join("state.json"), json)?;
        let pids: Vec<String> = self
            .components()
            .filter_map(|c| c.pid)
            .chain(self.state.adopted.iter().copied())
            .map(|p| p.to_string())
            .collect();
        std::fs::write(self.dir.join("pids"), pids.join("\n") + "\n")?;
        Ok(())
    }

    /// A shell loop that outlives nothing: when this process is gone it kills
    /// every pid in `DIR/pids`.
    fn start_watchdog(&mut self) -> Result<()> {
        let script = format!(
            "while kill -0 {parent} 2>/dev/null; do sleep 1; done; kill -9 $(cat '{pids}') 2>/dev/null; \
             for f in '{dir}'/exec/*.pids; do [ -f \"$f\" ] && kill -9 $(cut -d' ' -f1 \"$f\") 2>/dev/null; done; \
             [ -f '{dir}/network-down.sh' ] && sh '{dir}/network-down.sh'; exit 0",
            parent = std::process::id(),
            pids = self.dir.join("pids").display(),
            dir = self.dir.display(),
        );
        let mut watchdog = Component {
            name: "watchdog".into(),
            program: "/bin/sh".into(),
            args: vec!["-c".into(), script],
            env: Default::default(),
            log: self.dir.join("logs/watchdog.log"),
            pid: None,
            netns: None,
            run_as: None,
        };
        watchdog.start()?;
        self.state.watchdog = Some(watchdog);
        Ok(())
    }
}

/// Stops the clusters when dropped, printing their logs if a test panicked.
pub struct Guard(pub LocalRegions);

impl Drop for Guard {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.0.logs_tail(60));
        }
        self.0.down();
    }
}

impl std::ops::Deref for Guard {
    type Target = LocalRegions;
    fn deref(&self) -> &LocalRegions {
        &self.0
    }
}

impl std::ops::DerefMut for Guard {
    fn deref_mut(&mut self) -> &mut LocalRegions {
        &mut self.0
    }
}

fn validate_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        bail!("cluster name {name:?} must be a DNS-1123 label (lowercase letters, digits, '-')")
    }
}

fn absolute(dir: &Path) -> Result<PathBuf> {
    Ok(if dir.is_absolute() {
        dir.to_path_buf()
    } else {
        std::env::current_dir()?.join(dir)
    })
}

/// Removes what an earlier `up` left in `dir`, and only that.
fn clean(dir: &Path) -> Result<()> {
    for sub in ["etcd", "hub-etcd", "pki", "logs", "exec", "postgres"] {
        let path = dir.join(sub);
        if path.exists() {
            std::fs::remove_dir_all(&path)?;
        }
    }
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().to_string();
            if name.ends_with(".kubeconfig") || name == "state.json" || name == "pids" {
                std::fs::remove_file(path)?;
            }
        }
    }
    Ok(())
}

/// `HOST:PORT` of `https://HOST:PORT`.
fn authority_of(server: &str) -> Result<String> {
    server
        .strip_prefix("https://")
        .filter(|rest| rest.contains(':'))
        .map(str::to_string)
        .ok_or_else(|| anyhow!("no https://HOST:PORT in {server}"))
}

/// An admin client with short timeouts, fit for readiness polls.
pub async fn admin_client(kubeconfig: &Path) -> Result<kube::Client> {
    let kc = Kubeconfig::read_from(kubeconfig)?;
    let mut config =
        kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await?;
    config.connect_timeout = Some(Duration::from_secs(2));
    config.read_timeout = Some(Duration::from_secs(10));
    Ok(kube::Client::try_from(config)?)
}

/// Polls `check` until it returns true, failing early when the component
/// has exited and with its log tail on timeout.
pub(crate) async fn wait_until<F, Fut>(
    component: &Component,
    what: &str,
    mut check: F,
) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<bool>>,
{
    let deadline = Instant::now() + READY_TIMEOUT;
    let mut last_error = String::new();
    loop {
        match check().await {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(err) => last_error = format!("{err:#}"),
        }
        if !component.is_running() {
            bail!(
                "{} exited while waiting for {what}; its log ends with:\n{}",
                component.name,
                component.log_tail(30)
            );
        }
        if Instant::now() > deadline {
            bail!(
                "timed out after {:?} waiting for {what} ({}); last error: {last_error}; log ends with:\n{}",
                READY_TIMEOUT,
                component.name,
                component.log_tail(30)
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

pub(crate) async fn wait_etcd(url: &str, etcd: &Component) -> Result<()> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()?;
    wait_until(etcd, "etcd /health", || async {
        let body = http
            .get(format!("{url}/health"))
            .send()
            .await?
            .text()
            .await?;
        Ok(body.contains("\"health\":\"true\""))
    })
    .await
}

/// Waits until a region's endpoint process answers its /healthz.
pub(crate) async fn wait_endpoint(endpoint: &Component, port: u16) -> Result<()> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()?;
    wait_until(endpoint, "the region endpoint", || async {
        let url = format!("http://127.0.0.1:{port}/healthz");
        Ok(http.get(url).send().await?.status().is_success())
    })
    .await
}

pub(crate) async fn wait_apiserver(client: &kube::Client, apiserver: &Component) -> Result<()> {
    wait_until(apiserver, "kube-apiserver /readyz", || async {
        let request = http::Request::get("/readyz").body(Vec::new())?;
        Ok(client.request_text(request).await? == "ok")
    })
    .await
}

async fn scheduler_ready(port: u16) -> Result<bool> {
    let http = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .timeout(Duration::from_secs(2))
        .build()?;
    let response = http
        .get(format!("https://127.0.0.1:{port}/readyz"))
        .send()
        .await?;
    Ok(response.status().is_success())
}

async fn create_nodes(client: &kube::Client, cluster: &str) -> Result<()> {
    let nodes: Api<Node> = Api::all(client.clone());
    for i in 0..NODES_PER_CLUSTER {
        let name = format!("{cluster}-node-{i}");
        let node: Node = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": name,
                "annotations": { "kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0" },
                "labels": {
                    "type": "kwok",
                    "kubernetes.io/hostname": name,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64",
                    "topology.kubernetes.io/region": cluster,
                    "topology.kubernetes.io/zone": format!("{cluster}-{}", (b'a' + i as u8) as char),
                }
            }
        }))?;
        match nodes.create(&PostParams::default(), &node).await {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 409 => {}
            Err(err) => return Err(err.into()),
        }
    }
    Ok(())
}

/// The node's Ready condition is True.
pub fn node_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// User plus system CPU seconds of a process, from `/proc/<pid>/stat`.
pub fn cpu_seconds(pid: i32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold
    // spaces: state is the first, utime the 12th and stime the 13th.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // The kernel reports in USER_HZ, which is 100 on Linux.
    Some(ticks as f64 / 100.0)
}

fn rss_kib(pid: i32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Starts clusters for one test in `dir`; they are stopped when the guard
/// drops, and by a watchdog if the test process dies.
pub async fn start_for_test(dir: PathBuf, names: &[&str]) -> Guard {
    let regions = LocalRegions::up(UpOptions {
        dir,
        names: names.iter().map(|n| n.to_string()).collect(),
        stop_with_this_process: true,
        spread_hub: None,
        postgres: false,
    })
    .await
    .expect("local clusters start");
    Guard(regions)
}

/// As [`start_for_test`], with PostgreSQL in every cluster but the first
/// (the hub): the second's is the primary.
pub async fn start_with_databases_for_test(dir: PathBuf, names: &[&str]) -> Guard {
    let regions = LocalRegions::up(UpOptions {
        dir,
        names: names.iter().map(|n| n.to_string()).collect(),
        stop_with_this_process: true,
        spread_hub: None,
        postgres: true,
    })
    .await
    .expect("local clusters with databases start");
    Guard(regions)
}

/// Whether this process runs as root (a spread hub needs it).
pub fn is_root() -> bool {
    nix::unistd::Uid::effective().is_root()
}

/// Starts regions with a hub spread over them (needs root) for one test in
/// `dir`; stopped as by [`start_for_test`].
pub async fn start_spread_for_test(dir: PathBuf, hub: &str, regions: &[&str]) -> Guard {
    spread_for_test(dir, hub, regions, false).await
}

/// `start_spread_for_test` with PostgreSQL in every region (the first
/// region's the primary).
pub async fn start_spread_with_databases_for_test(
    dir: PathBuf,
    hub: &str,
    regions: &[&str],
) -> Guard {
    spread_for_test(dir, hub, regions, true).await
}

async fn spread_for_test(dir: PathBuf, hub: &str, regions: &[&str], postgres: bool) -> Guard {
    let regions = LocalRegions::up(UpOptions {
        dir,
        names: regions.iter().map(|n| n.to_string()).collect(),
        stop_with_this_process: true,
        spread_hub: Some(hub.to_string()),
        postgres,
    })
    .await
    .expect("local regions with a spread hub start");
    Guard(regions)
}

/// Polls `check` every 100 ms until it yields `Some`, or panics after
/// `timeout` naming what it waited for. For tests: a wait on a condition,
/// never a fixed sleep.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
