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
    index: usize,
    etcd_url: String,
    pki: ClusterPki,
    api_port: u16,
    /// `https://127.0.0.1:<port>` of the API server.
    pub server: String,
    /// The admin kubeconfig, written by `new`.
    pub kubeconfig: PathBuf,
}

impl<'a> Recipe<'a> {
    /// Generates the cluster's certificates and admin kubeconfig and picks
    /// its API server port.
    pub fn new(
        dir: &Path,
        bins: &'a Binaries,
        name: &str,
        index: usize,
        etcd_url: &str,
    ) -> Result<Self> {
        let pki = ClusterPki::generate(&dir.join("pki").join(name), name)?;
        let api_port = process::free_port()?;
        let server = format!("https://127.0.0.1:{api_port}");
        let kubeconfig = dir.join(format!("{name}.kubeconfig"));
        pki::write_private(&kubeconfig, &pki.admin_kubeconfig(name, &server))?;
        Ok(Recipe {
            dir: dir.to_path_buf(),
            bins,
            name: name.to_string(),
            index,
            etcd_url: etcd_url.to_string(),
            pki,
            api_port,
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

    /// The port the API server listens on.
    pub fn api_port(&self) -> u16 {
        self.api_port
    }

    fn component(&self, program: &str, args: Vec<String>) -> Component {
        Component {
            name: format!("{}/{program}", self.name),
            program: self.bins.path(program),
            args,
            env: Default::default(),
            log: self.dir.join(format!("logs/{}-{program}.log", self.name)),
            pid: None,
        }
    }

    /// The region's endpoint process (answers with the region's name), and
    /// its port.
    pub fn endpoint(&self) -> Result<(Component, u16)> {
        let port = process::free_port()?;
        let args = vec![
            format!("-region={}", self.name),
            format!("-listen=127.0.0.1:{port}"),
        ];
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
                format!("--etcd-servers={}", self.etcd_url),
                format!("--etcd-prefix=/localregions/{name}"),
                "--bind-address=127.0.0.1".into(),
                "--advertise-address=127.0.0.1".into(),
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
                // Every API server here advertises 127.0.0.1, which the
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
            "--leader-elect=false".into(),
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
    };
    Ok((toxiproxy, port))
}
