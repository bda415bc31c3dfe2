//! The command lines of one cluster's processes: kube-apiserver,
//! kube-controller-manager, kube-scheduler and KWOK, with their ports,
//! certificates and logs.

use std::path::{Path, PathBuf};

use anyhow::Result;

use crate::binaries::Binaries;
use crate::pki::{self, ClusterPki};
use crate::process::{self, Component};
use crate::{CONTROLLER_BURST, CONTROLLER_QPS, NODE_LEASE_SECONDS, NODE_MONITOR_GRACE};

/// How long a terminated API server keeps serving with `/readyz` failing
/// (`drain-apiserver`), as one does during a rolling upgrade.
pub const APISERVER_SHUTDOWN_DELAY: std::time::Duration = std::time::Duration::from_secs(20);

/// Everything needed to write one cluster's command lines.
pub(crate) struct Recipe<'a> {
    dir: PathBuf,
    bins: &'a Binaries,
    name: String,
    /// Prefix of component names and logs: the cluster's name, or
    /// `HUB@REGION` for one region's part of a spread hub.
    label: String,
    index: usize,
    /// `--etcd-servers` of the API server.
    etcd_servers: String,
    /// The address the API server listens on and advertises.
    host: String,
    /// The network namespace the components run in (a spread hub's region).
    netns: Option<String>,
    /// Several controller-managers share the cluster (a spread hub).
    leader_elect: bool,
    pki: ClusterPki,
    api_port: u16,
    /// `https://HOST:PORT` of the API server.
    pub server: String,
    /// The admin kubeconfig, written by `new`.
    pub kubeconfig: PathBuf,
}

/// The port every region's hub API server listens on in a spread hub
/// (each in its own namespace, so each has the whole port space).
pub const HUB_API_PORT: u16 = 6443;
/// The service IP range index of a spread hub (members use their index).
const HUB_INDEX: usize = 50;

impl<'a> Recipe<'a> {
    /// Generates the cluster's certificates and admin kubeconfig and picks
    /// its API server port; it listens on `host`.
    pub fn new(
        dir: &Path,
        bins: &'a Binaries,
        name: &str,
        index: usize,
        etcd_url: &str,
        host: &str,
    ) -> Result<Self> {
        let addresses: Vec<std::net::IpAddr> = host.parse().into_iter().collect();
        let pki = ClusterPki::generate(&dir.join("pki").join(name), name, &addresses)?;
        let api_port = process::free_port()?;
        let server = format!("https://{host}:{api_port}");
        let kubeconfig = dir.join(format!("{name}.kubeconfig"));
        pki::write_private(&kubeconfig, &pki.admin_kubeconfig(name, &server))?;
        Ok(Recipe {
            dir: dir.to_path_buf(),
            bins,
            name: name.to_string(),
            label: name.to_string(),
            index,
            etcd_servers: etcd_url.to_string(),
            host: host.to_string(),
            netns: None,
            leader_elect: false,
            pki,
            api_port,
            server,
            kubeconfig,
        })
    }

    /// One region's part of a spread hub: an API server on the region's
    /// address (port [`HUB_API_PORT`]) in its namespace, with the hub's
    /// shared certificates; its kubeconfig is `DIR/HUB@REGION.kubeconfig`.
    pub fn hub_member(
        dir: &Path,
        bins: &'a Binaries,
        hub: &str,
        pki: &ClusterPki,
        member: &HubPlace,
    ) -> Result<Self> {
        let label = format!("{hub}@{}", member.region);
        let server = format!("https://{}:{HUB_API_PORT}", member.address);
        let kubeconfig = dir.join(format!("{label}.kubeconfig"));
        pki::write_private(&kubeconfig, &pki.admin_kubeconfig(hub, &server))?;
        Ok(Recipe {
            dir: dir.to_path_buf(),
            bins,
            name: hub.to_string(),
            label,
            index: HUB_INDEX,
            etcd_servers: member.etcd_servers.clone(),
            host: member.address.clone(),
            netns: Some(member.netns.clone()),
            leader_elect: true,
            pki: pki.clone(),
            api_port: HUB_API_PORT,
            server,
            kubeconfig,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The cluster's place in start order.
    pub fn index(&self) -> usize {
        self.index
    }

    /// The address the API server listens on.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port the API server listens on.
    pub fn api_port(&self) -> u16 {
        self.api_port
    }

    fn component(&self, program: &str, args: Vec<String>) -> Component {
        Component {
            name: format!("{}/{program}", self.label),
            program: self.bins.path(program),
            args,
            env: Default::default(),
            log: self.dir.join(format!("logs/{}-{program}.log", self.label)),
            pid: None,
            netns: self.netns.clone(),
            run_as: None,
        }
    }

    /// The region's endpoint process (answers with the region's name;
    /// writes to `database`, a libpq URI, when given), and its port.
    pub fn endpoint(&self, database: Option<String>) -> Result<(Component, u16)> {
        let port = process::free_port()?;
        let mut args = vec![
            format!("-region={}", self.name),
            format!("-listen=127.0.0.1:{port}"),
        ];
        args.extend(database.map(|uri| format!("-database={uri}")));
        Ok((self.component("regionapp", args), port))
    }

    fn kubeconfig_flags(&self) -> Vec<String> {
        let kc = self.kubeconfig.display();
        vec![
            format!("--kubeconfig={kc}"),
            format!("--authentication-kubeconfig={kc}"),
            format!("--authorization-kubeconfig={kc}"),
        ]
    }

    pub fn apiserver(&self) -> Component {
        let name = &self.name;
        let api_port = self.api_port;
        let index = self.index;
        self.component(
            "kube-apiserver",
            vec![
                format!("--etcd-servers={}", self.etcd_servers),
                format!("--etcd-prefix=/localregions/{name}"),
                format!("--bind-address={}", self.host),
                format!("--advertise-address={}", self.host),
                format!("--secure-port={api_port}"),
                format!("--tls-cert-file={}", self.pki.serving_cert.display()),
                format!("--tls-private-key-file={}", self.pki.serving_key.display()),
                format!("--client-ca-file={}", self.pki.ca_cert.display()),
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local".into(),
                format!(
                    "--service-account-key-file={}",
                    self.pki.service_account_pub.display()
                ),
                format!(
                    "--service-account-signing-key-file={}",
                    self.pki.service_account_key.display()
                ),
                format!("--service-cluster-ip-range=10.{}.0.0/16", 96 + index),
                "--authorization-mode=Node,RBAC".into(),
                "--allow-privileged=true".into(),
                "--profiling=false".into(),
                // Every API server here advertises a local address, which the
                // `kubernetes` Service endpoints reject; nothing uses them.
                "--endpoint-reconciler-type=none".into(),
                // On SIGTERM (`drain-apiserver`: a rolling upgrade) /readyz
                // answers 500 for this long while the API still serves.
                format!(
                    "--shutdown-delay-duration={}s",
                    APISERVER_SHUTDOWN_DELAY.as_secs()
                ),
                format!("--cert-dir={}", self.dir.join("pki").join(name).display()),
            ],
        )
    }

    pub fn controller_manager(&self) -> Result<Component> {
        let name = &self.name;
        let cm_port = process::free_port()?;
        let mut args = self.kubeconfig_flags();
        args.extend([
            "--bind-address=127.0.0.1".into(),
            format!("--secure-port={cm_port}"),
            format!("--leader-elect={}", self.leader_elect),
            format!("--cluster-name={name}"),
            format!(
                "--service-account-private-key-file={}",
                self.pki.service_account_key.display()
            ),
            format!("--root-ca-file={}", self.pki.ca_cert.display()),
            "--use-service-account-credentials=true".into(),
            "--node-monitor-period=1s".into(),
            format!("--node-monitor-grace-period={NODE_MONITOR_GRACE}"),
            // All clusters share a few cores: the client-side rate limit
            // (20 requests/s by default) would make a thousand
            // Deployments take minutes to get their pods, which measures
            // the throttle, not the operator. kwokctl lifts it likewise.
            format!("--kube-api-qps={CONTROLLER_QPS}"),
            format!("--kube-api-burst={CONTROLLER_BURST}"),
            "--profiling=false".into(),
        ]);
        Ok(self.component("kube-controller-manager", args))
    }

    /// The scheduler, and the port of its /readyz.
    pub fn scheduler(&self) -> Result<(Component, u16)> {
        let scheduler_port = process::free_port()?;
        let mut args = self.kubeconfig_flags();
        args.extend([
            "--bind-address=127.0.0.1".into(),
            format!("--secure-port={scheduler_port}"),
            "--leader-elect=false".into(),
            format!("--kube-api-qps={CONTROLLER_QPS}"),
            format!("--kube-api-burst={CONTROLLER_BURST}"),
            "--profiling=false".into(),
        ]);
        Ok((self.component("kube-scheduler", args), scheduler_port))
    }

    pub fn kwok(&self) -> Result<Component> {
        let kc = self.kubeconfig.display();
        let index = self.index;
        let kwok_port = process::free_port()?;
        Ok(self.component(
            "kwok",
            vec![
                format!("--kubeconfig={kc}"),
                format!("--config={}", self.dir.join("kwok-stages.yaml").display()),
                "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake".into(),
                format!("--node-lease-duration-seconds={NODE_LEASE_SECONDS}"),
                format!("--server-address=127.0.0.1:{kwok_port}"),
                format!("--cidr=10.{}.0.1/16", 200 + index),
                "--node-ip=127.0.0.1".into(),
            ],
        ))
    }
}

/// Where one region's part of a spread hub lives.
pub(crate) struct HubPlace {
    pub region: String,
    /// The region's address in its namespace.
    pub address: String,
    pub netns: String,
    /// `--etcd-servers`: this region's member.
    pub etcd_servers: String,
}

/// One region's etcd member of a spread hub, in the region's namespace:
/// clients on ADDRESS:2379, peers on ADDRESS:2380. `initial_cluster` lists
/// every member (`REGION=http://ADDRESS:2380,...`); a restart reuses the
/// data directory and ignores it.
pub(crate) fn hub_etcd(
    dir: &Path,
    bins: &Binaries,
    hub: &str,
    place: &HubPlace,
    initial_cluster: &str,
) -> Component {
    let address = &place.address;
    let region = &place.region;
    Component {
        name: format!("{hub}@{region}/etcd"),
        program: bins.path("etcd"),
        args: vec![
            format!("--name={region}"),
            format!("--data-dir={}", dir.join("hub-etcd").join(region).display()),
            format!("--listen-client-urls=http://{address}:2379"),
            format!("--advertise-client-urls=http://{address}:2379"),
            format!("--listen-peer-urls=http://{address}:2380"),
            format!("--initial-advertise-peer-urls=http://{address}:2380"),
            format!("--initial-cluster={initial_cluster}"),
            "--initial-cluster-state=new".into(),
            format!("--initial-cluster-token={hub}"),
            "--unsafe-no-fsync=true".into(),
            "--log-level=warn".into(),
        ],
        env: Default::default(),
        log: dir.join(format!("logs/{hub}@{region}-etcd.log")),
        pid: None,
        netns: Some(place.netns.clone()),
        run_as: None,
    }
}

/// etcd, shared by every cluster (each under its own prefix), and its URL.
pub(crate) fn etcd(dir: &Path, bins: &Binaries) -> Result<(Component, String)> {
    let etcd_port = process::free_port()?;
    let peer_port = process::free_port()?;
    let etcd_url = format!("http://127.0.0.1:{etcd_port}");
    let peer_url = format!("http://127.0.0.1:{peer_port}");
    let etcd = Component {
        name: "etcd".into(),
        program: bins.path("etcd"),
        args: vec![
            "--name=localregions".into(),
            format!("--data-dir={}", dir.join("etcd").display()),
            format!("--listen-client-urls={etcd_url}"),
            format!("--advertise-client-urls={etcd_url}"),
            format!("--listen-peer-urls={peer_url}"),
            format!("--initial-advertise-peer-urls={peer_url}"),
            format!("--initial-cluster=localregions={peer_url}"),
            "--unsafe-no-fsync=true".into(),
            "--log-level=warn".into(),
        ],
        env: Default::default(),
        log: dir.join("logs/etcd.log"),
        pid: None,
        netns: None,
        run_as: None,
    };
    Ok((etcd, etcd_url))
}

/// The Toxiproxy server, and the port of its API.
pub(crate) fn toxiproxy(dir: &Path, bins: &Binaries) -> Result<(Component, u16)> {
    let port = process::free_port()?;
    let toxiproxy = Component {
        name: "toxiproxy".into(),
        program: bins.path("toxiproxy-server"),
        args: vec!["-host=127.0.0.1".into(), format!("-port={port}")],
        env: Default::default(),
        log: dir.join("logs/toxiproxy.log"),
        pid: None,
        netns: None,
        run_as: None,
    };
    Ok((toxiproxy, port))
}
