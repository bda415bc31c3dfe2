//! The traffic path of the local regions, from real components that consume
//! the operator's sinks in the hub:
//! - Traefik (v3, Gateway API provider) serves the Gateway
//!   `gateway/multiregion` on a loopback port and routes by the weights of
//!   the HTTPRoutes attached to it;
//! - ExternalDNS (DNSEndpoint source, CoreDNS provider) writes the
//!   DNSEndpoints' records into etcd, and CoreDNS serves them on a loopback
//!   port, for the zone `multiregion.test`.
//!
//! The Gateway API and DNSEndpoint CRDs come from the Go modules the
//! components are built from (in the module cache), not from this repository.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::binaries::{Binaries, source_dir};
use crate::process::{self, Component};
use crate::{LocalRegions, wait_until};

/// Namespace and name of the Gateway the HTTPRoutes attach to.
pub const GATEWAY_NAMESPACE: &str = "gateway";
pub const GATEWAY_NAME: &str = "multiregion";
/// The DNS zone CoreDNS serves.
pub const ZONE: &str = "multiregion.test";

/// Where clients reach the traffic path.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Traffic {
    /// `http://127.0.0.1:<port>`: the Gateway.
    pub gateway: String,
    /// `127.0.0.1:<port>`: CoreDNS (UDP and TCP).
    pub dns: String,
    components: Vec<Component>,
}

impl Traffic {
    pub(crate) fn components(&self) -> impl Iterator<Item = &Component> {
        self.components.iter()
    }

    pub(crate) fn stop(&mut self) {
        for component in &mut self.components {
            component.stop(Duration::from_secs(2));
        }
    }
}

impl LocalRegions {
    /// Starts the gateway and DNS against the cluster `hub` (once; later
    /// calls return the running ones). Builds Traefik, CoreDNS and
    /// ExternalDNS on first use (minutes; then cached).
    pub async fn start_traffic(&mut self, hub: &str) -> Result<Traffic> {
        if let Some(traffic) = &self.state.traffic {
            return Ok(traffic.clone());
        }
        let bins = Binaries::traffic(&["traefik", "coredns", "externaldns"])?;
        let kubeconfig = self.kubeconfig(hub)?;
        self.install_crds(&kubeconfig)?;
        let gateway_port = process::free_port()?;
        self.kubectl_apply(&kubeconfig, &gateway_objects(gateway_port))?;
        let mut traffic = Traffic {
            gateway: format!("http://127.0.0.1:{gateway_port}"),
            dns: String::new(),
            components: Vec::new(),
        };
        let dir = self.dir.join("traffic");
        std::fs::create_dir_all(&dir)?;
        let traefik = traefik(&bins, &dir, &kubeconfig, gateway_port)?;
        let (coredns, dns_port, ready_port) = coredns(&bins, &dir, &self.state.etcd_url)?;
        let external_dns = external_dns(&bins, &dir, &kubeconfig, &self.state.etcd_url)?;
        traffic.dns = format!("127.0.0.1:{dns_port}");
        for mut component in [traefik.0.clone(), coredns, external_dns] {
            component.start()?;
            traffic.components.push(component);
        }
        self.state.traffic = Some(traffic.clone());
        self.save()?;
        wait_http(
            &traffic.components[0],
            &format!("http://127.0.0.1:{}/ping", traefik.1),
        )
        .await?;
        wait_http(
            &traffic.components[1],
            &format!("http://127.0.0.1:{ready_port}/ready"),
        )
        .await?;
        Ok(traffic)
    }

    /// The traffic path, if `start_traffic` ran.
    pub fn traffic(&self) -> Option<&Traffic> {
        self.state.traffic.as_ref()
    }

    fn install_crds(&self, kubeconfig: &Path) -> Result<()> {
        let gateway = module_dir("traefik", "sigs.k8s.io/gateway-api")?.join("config/crd/standard");
        let dns = module_dir("externaldns", "sigs.k8s.io/external-dns")?
            .join("config/crd/standard/dnsendpoints.externaldns.k8s.io.yaml");
        for path in [&gateway, &dns] {
            self.kubectl(
                kubeconfig,
                &["apply", "--server-side", "-f", &path.display().to_string()],
                None,
            )?;
        }
        let wait = [
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd",
            "--all",
        ];
        self.kubectl(kubeconfig, &wait, None).map(|_| ())
    }

    fn kubectl_apply(&self, kubeconfig: &Path, yaml: &str) -> Result<()> {
        self.kubectl(kubeconfig, &["apply", "-f", "-"], Some(yaml))
            .map(|_| ())
    }

    fn kubectl(&self, kubeconfig: &Path, args: &[&str], input: Option<&str>) -> Result<String> {
        let mut command = Command::new(self.state.bin_dir.join("kubectl"));
        command
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .args(args)
            .stdin(if input.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().context("running kubectl")?;
        if let (Some(input), Some(mut stdin)) = (input, child.stdin.take()) {
            use std::io::Write;
            stdin.write_all(input.as_bytes())?;
        }
        let out = child.wait_with_output()?;
        if !out.status.success() {
            bail!(
                "kubectl {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

/// The directory of a Go module in the module cache, as the wrapper module
/// `wrapper` (under tests/controlplane) requires it.
fn module_dir(wrapper: &str, module: &str) -> Result<PathBuf> {
    let out = Command::new("go")
        .args(["mod", "download", "-json", module])
        .current_dir(source_dir().join("tests/controlplane").join(wrapper))
        .output()
        .context("running go mod download")?;
    if !out.status.success() {
        bail!(
            "go mod download {module}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let info: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    match info["Dir"].as_str() {
        Some(dir) => Ok(PathBuf::from(dir)),
        None => bail!("go mod download {module}: no Dir in {info}"),
    }
}

/// The GatewayClass Traefik serves and the Gateway the apps' HTTPRoutes
/// attach to; its listener port is Traefik's entry point's.
fn gateway_objects(port: u16) -> String {
    format!(
        "apiVersion: v1
kind: Namespace
metadata: {{name: {GATEWAY_NAMESPACE}}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {{name: traefik}}
spec: {{controllerName: traefik.io/gateway-controller}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: {GATEWAY_NAME}, namespace: {GATEWAY_NAMESPACE}}}
spec:
  gatewayClassName: traefik
  listeners:
  - name: web
    protocol: HTTP
    port: {port}
    allowedRoutes: {{namespaces: {{from: All}}}}
"
    )
}

fn component(name: &str, program: PathBuf, args: Vec<String>, dir: &Path) -> Component {
    Component {
        name: format!("traffic/{name}"),
        program,
        args,
        env: Default::default(),
        log: dir.join(format!("{name}.log")),
        pid: None,
        netns: None,
        run_as: None,
    }
}

/// Traefik, reading the hub with the admin kubeconfig; and its ping port.
fn traefik(bins: &Path, dir: &Path, kubeconfig: &Path, port: u16) -> Result<(Component, u16)> {
    let ping = process::free_port()?;
    let args = vec![
        "--global.checknewversion=false".into(),
        "--global.sendanonymoususage=false".into(),
        format!("--entrypoints.web.address=127.0.0.1:{port}"),
        format!("--entrypoints.traefik.address=127.0.0.1:{ping}"),
        "--ping=true".into(),
        "--ping.entrypoint=traefik".into(),
        // Apply route changes at once (the default waits 2 s between them).
        "--providers.providersthrottleduration=0s".into(),
        "--providers.kubernetesgateway=true".into(),
        "--providers.kubernetesgateway.statusaddress.ip=127.0.0.1".into(),
        "--log.level=INFO".into(),
    ];
    let mut traefik = component("traefik", bins.join("traefik"), args, dir);
    traefik
        .env
        .insert("KUBECONFIG".into(), kubeconfig.display().to_string());
    Ok((traefik, ping))
}

/// CoreDNS serving the zone from etcd; its DNS port and ready port.
fn coredns(bins: &Path, dir: &Path, etcd: &str) -> Result<(Component, u16, u16)> {
    let (port, ready, health) = (
        process::free_port()?,
        process::free_port()?,
        process::free_port()?,
    );
    let corefile = dir.join("Corefile");
    std::fs::write(
        &corefile,
        format!(
            "{ZONE}:{port} {{\n    bind 127.0.0.1\n    etcd {{\n        path /skydns\n        endpoint {etcd}\n    }}\n    errors\n}}\n.:{health} {{\n    bind 127.0.0.1\n    ready 127.0.0.1:{ready}\n}}\n"
        ),
    )?;
    let args = vec!["-conf".into(), corefile.display().to_string()];
    Ok((
        component("coredns", bins.join("coredns"), args, dir),
        port,
        ready,
    ))
}

/// ExternalDNS: the hub's DNSEndpoints into etcd, every second.
fn external_dns(bins: &Path, dir: &Path, kubeconfig: &Path, etcd: &str) -> Result<Component> {
    let metrics = process::free_port()?;
    let args = vec![
        format!("--kubeconfig={}", kubeconfig.display()),
        "--source=crd".into(),
        "--crd-source-apiversion=externaldns.k8s.io/v1alpha1".into(),
        "--crd-source-kind=DNSEndpoint".into(),
        "--provider=coredns".into(),
        format!("--domain-filter={ZONE}"),
        "--registry=txt".into(),
        "--txt-owner-id=multiregion".into(),
        "--interval=1s".into(),
        format!("--metrics-address=127.0.0.1:{metrics}"),
    ];
    let mut external_dns = component("external-dns", bins.join("external-dns"), args, dir);
    external_dns
        .env
        .insert("ETCD_URLS".into(), etcd.to_string());
    Ok(external_dns)
}

async fn wait_http(component: &Component, url: &str) -> Result<()> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()?;
    wait_until(component, url, || async {
        Ok(http.get(url).send().await?.status().is_success())
    })
    .await
}
