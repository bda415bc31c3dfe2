//! Faults the way regions fail: processes stopped (a whole region, its
//! control plane, its nodes, its endpoint) and the network between the
//! operator and a region cut, slowed, black-holed or answered with errors
//! only (`answer`, see `answers.rs`).
//!
//! The network faults come from Toxiproxy: every cluster's API server is
//! reached by the operator through a proxy (`NAME.operator.kubeconfig`),
//! and every region's endpoint is published through one. A partition
//! black-holes the operator's path to the API server while the region keeps
//! serving; tests and people keep their direct view (`NAME.kubeconfig`).
//! Endpoints are published on 127.0.0.10, 127.0.0.11, ... (one loopback
//! address per cluster, in start order, all on one port), so that DNS
//! records, which carry no port, tell regions apart.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::json;

use crate::LocalRegions;

/// Talks to the Toxiproxy server's HTTP API.
pub(crate) struct Toxiproxy {
    api: String,
    http: reqwest::Client,
}

impl Toxiproxy {
    pub fn new(port: u16) -> Result<Self> {
        Ok(Toxiproxy {
            api: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()?,
        })
    }

    pub async fn ready(&self) -> Result<bool> {
        Ok(self
            .http
            .get(format!("{}/version", self.api))
            .send()
            .await?
            .status()
            .is_success())
    }

    /// A proxy from `listen` to `upstream` (each ADDRESS:PORT).
    pub async fn proxy(&self, name: &str, listen: &str, upstream: &str) -> Result<()> {
        let body = json!({
            "name": name,
            "listen": listen,
            "upstream": upstream,
            "enabled": true,
        });
        let response = self
            .http
            .post(format!("{}/proxies", self.api))
            .json(&body)
            .send()
            .await?;
        match response.status().as_u16() {
            200 | 201 | 409 => Ok(()),
            code => bail!("creating proxy {name}: {code} {}", response.text().await?),
        }
    }

    /// Adds a toxic (`kind`: timeout, latency, ...) on one direction.
    pub async fn toxic(
        &self,
        proxy: &str,
        name: &str,
        kind: &str,
        stream: &str,
        attributes: serde_json::Value,
    ) -> Result<()> {
        let body = json!({
            "name": name,
            "type": kind,
            "stream": stream,
            "toxicity": 1.0,
            "attributes": attributes,
        });
        let response = self
            .http
            .post(format!("{}/proxies/{proxy}/toxics", self.api))
            .json(&body)
            .send()
            .await?;
        match response.status().as_u16() {
            200 | 201 | 409 => Ok(()),
            code => bail!(
                "adding {kind} to {proxy}: {code} {}",
                response.text().await?
            ),
        }
    }

    /// Points a proxy at `upstream` (ADDRESS:PORT); the connections open
    /// through it are closed.
    pub async fn upstream(&self, proxy: &str, upstream: &str) -> Result<()> {
        let response = self
            .http
            .post(format!("{}/proxies/{proxy}", self.api))
            .json(&json!({"upstream": upstream}))
            .send()
            .await?;
        if !response.status().is_success() {
            bail!("pointing {proxy} at {upstream}: {}", response.text().await?);
        }
        Ok(())
    }

    /// The `ADDRESS:PORT` a proxy forwards to.
    pub async fn upstream_of(&self, proxy: &str) -> Result<String> {
        let body: serde_json::Value = self
            .http
            .get(format!("{}/proxies/{proxy}", self.api))
            .send()
            .await?
            .json()
            .await
            .with_context(|| format!("reading proxy {proxy}"))?;
        body["upstream"]
            .as_str()
            .map(str::to_string)
            .with_context(|| format!("proxy {proxy} has no upstream: {body}"))
    }

    /// Enables or disables a proxy (disabled: its connections are closed
    /// and new ones refused).
    pub async fn enable(&self, proxy: &str, enabled: bool) -> Result<()> {
        let response = self
            .http
            .post(format!("{}/proxies/{proxy}", self.api))
            .json(&json!({"enabled": enabled}))
            .send()
            .await?;
        if !response.status().is_success() {
            bail!("enabling {proxy}: {}", response.text().await?);
        }
        Ok(())
    }

    /// Removes every toxic of a proxy.
    pub async fn clear(&self, proxy: &str) -> Result<()> {
        let toxics: Vec<serde_json::Value> = self
            .http
            .get(format!("{}/proxies/{proxy}/toxics", self.api))
            .send()
            .await?
            .json()
            .await
            .with_context(|| format!("listing the toxics of {proxy}"))?;
        for toxic in toxics {
            let Some(name) = toxic["name"].as_str() else {
                continue;
            };
            self.http
                .delete(format!("{}/proxies/{proxy}/toxics/{name}", self.api))
                .send()
                .await?;
        }
        Ok(())
    }
}

/// The proxy of a cluster's API server, on the operator's path.
pub(crate) fn api_proxy(cluster: &str) -> String {
    format!("{cluster}-api")
}

/// The proxy publishing a region's endpoint.
pub(crate) fn endpoint_proxy(cluster: &str) -> String {
    format!("{cluster}-endpoint")
}

impl LocalRegions {
    pub(crate) fn toxiproxy(&self) -> Result<Toxiproxy> {
        Toxiproxy::new(self.state.toxiproxy_port)
    }

    /// Cuts the operator off from a cluster's API server (requests and
    /// answers are black-holed, as a lost route does); the cluster and its
    /// endpoint keep running and serving.
    pub async fn partition(&self, name: &str) -> Result<()> {
        self.cluster(name)?;
        let proxy = api_proxy(name);
        let toxiproxy = self.toxiproxy()?;
        for stream in ["upstream", "downstream"] {
            let toxic = format!("partition-{stream}");
            toxiproxy
                .toxic(&proxy, &toxic, "timeout", stream, json!({"timeout": 0}))
                .await?;
        }
        Ok(())
    }

    /// Adds `delay` to every answer on the operator's path to a cluster.
    pub async fn latency(&self, name: &str, delay: Duration) -> Result<()> {
        self.cluster(name)?;
        let attributes = json!({"latency": delay.as_millis() as u64, "jitter": 0});
        self.toxiproxy()?
            .toxic(
                &api_proxy(name),
                "latency",
                "latency",
                "downstream",
                attributes,
            )
            .await
    }

    /// The operator's path to a cluster's API server answers every request
    /// with `code` (429, 500, 503, ...) while the cluster runs and serves;
    /// `None` puts the real API server back. Only the operator's path
    /// changes: tests and people keep their direct view.
    pub async fn answer(&self, name: &str, code: Option<u16>) -> Result<()> {
        let cluster = self.cluster(name)?;
        let upstream = match code {
            Some(code) => {
                let pki = self.dir.join("pki").join(name);
                let port = crate::answers::server(
                    &pki.join("apiserver.crt"),
                    &pki.join("apiserver.key"),
                    code,
                )?;
                format!("127.0.0.1:{port}")
            }
            None => crate::authority_of(&cluster.server)?,
        };
        self.toxiproxy()?
            .upstream(&api_proxy(name), &upstream)
            .await
    }

    /// The region's endpoint accepts connections but never answers.
    pub async fn blackhole_endpoint(&self, name: &str) -> Result<()> {
        self.cluster(name)?;
        self.toxiproxy()?
            .toxic(
                &endpoint_proxy(name),
                "blackhole",
                "timeout",
                "upstream",
                json!({"timeout": 0}),
            )
            .await
    }

    /// Undoes `partition`, `latency`, `answer` and `blackhole_endpoint` for
    /// a cluster.
    pub async fn heal(&self, name: &str) -> Result<()> {
        let server = crate::authority_of(&self.cluster(name)?.server)?;
        let toxiproxy = self.toxiproxy()?;
        toxiproxy.upstream(&api_proxy(name), &server).await?;
        toxiproxy.clear(&api_proxy(name)).await?;
        toxiproxy.clear(&endpoint_proxy(name)).await
    }

    /// A whole region down: its API server, its nodes, its endpoint and
    /// its database (killed, its replication links cut); with a spread hub
    /// also the hub's etcd member, API server and controller-manager there,
    /// and every process `exec`'d there.
    pub async fn fail(&mut self, name: &str) -> Result<()> {
        self.cluster(name)?;
        self.fail_database(name).await?;
        let cluster = self.cluster_mut(name)?;
        cluster.endpoint_process.stop(Duration::ZERO);
        cluster.kwok.stop(Duration::ZERO);
        cluster.apiserver.stop(Duration::ZERO);
        self.save()?;
        self.fail_hub_member(name)
    }

    /// Brings back what `fail` stopped (not the `exec`'d processes), and
    /// waits until it serves: the hub's part in the region first, then the
    /// API server (as a real region's control plane comes back before
    /// its workloads), then the nodes, then the database (as it was: a
    /// primary comes back a primary), then the endpoint.
    pub async fn recover(&mut self, name: &str) -> Result<()> {
        self.cluster(name)?;
        self.recover_hub_member(name).await?;
        self.start_apiserver(name).await?;
        self.start_nodes(name).await?;
        self.recover_database(name).await?;
        self.start_endpoint(name).await
    }

    /// Stops a region's endpoint process (its proxy stays: connections are
    /// refused behind it).
    pub fn stop_endpoint(&mut self, name: &str) -> Result<()> {
        self.cluster_mut(name)?
            .endpoint_process
            .stop(Duration::ZERO);
        self.save()
    }

    /// Starts a region's endpoint again and waits until it answers.
    pub async fn start_endpoint(&mut self, name: &str) -> Result<()> {
        let cluster = self.cluster_mut(name)?;
        if !cluster.endpoint_process.is_running() {
            cluster.endpoint_process.start()?;
        }
        let (endpoint, port) = (cluster.endpoint_process.clone(), cluster.endpoint_port);
        self.save()?;
        crate::wait_endpoint(&endpoint, port).await
    }

    /// Every cluster whole again: processes running, no network fault.
    pub async fn restore_all(&mut self) -> Result<()> {
        let names: Vec<String> = self.state.clusters.iter().map(|c| c.name.clone()).collect();
        for name in names {
            self.heal(&name).await?;
            self.recover(&name).await?;
        }
        Ok(())
    }
}
