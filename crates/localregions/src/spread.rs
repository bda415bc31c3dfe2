//! A hub spread over the regions (`up --spread-hub HUB REGION...`): the
//! hub's etcd has one member in each region's network namespace and each
//! region runs a hub API server (on its own member) and a hub
//! controller-manager (leader elected) there. Losing a minority of regions leaves a hub that answers;
//! an isolated region's hub API server loses its etcd quorum.
//!
//! Processes run inside a region with `exec` (the CLI's `exec REGION --
//! CMD`, or [`LocalRegions::command_in`] for tests) are recorded in
//! `DIR/exec/REGION.pids`; `fail REGION` and `down` kill them.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::binaries::Binaries;
use crate::components::{self, HubPlace, Recipe};
use crate::netns::Network;
use crate::pki::{self, ClusterPki};
use crate::process::{self, Component};
use crate::{LocalRegions, admin_client, wait_apiserver};

/// The hub's part in one region.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct HubMember {
    pub region: String,
    /// `https://ADDRESS:6443`, inside the region.
    pub server: String,
    /// `DIR/HUB@REGION.kubeconfig`.
    pub kubeconfig: PathBuf,
    etcd: Component,
    etcd_url: String,
    apiserver: Component,
    controller_manager: Component,
}

impl HubMember {
    pub(crate) fn components(&self) -> [&Component; 3] {
        [&self.etcd, &self.apiserver, &self.controller_manager]
    }
}

/// A spread hub: its name, the regions' network and each region's part.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SpreadHub {
    pub name: String,
    pub network: Network,
    pub members: Vec<HubMember>,
}

impl SpreadHub {
    /// Writes every region's command lines and kubeconfigs (nothing runs
    /// yet); `DIR/HUB.kubeconfig` is the first region's.
    pub(crate) fn plan(dir: &Path, bins: &Binaries, hub: &str, network: Network) -> Result<Self> {
        let addresses: Vec<String> = (0..network.regions.len())
            .map(|i| network.region_address(i))
            .collect();
        let ips = addresses
            .iter()
            .map(|a| a.parse())
            .collect::<Result<Vec<std::net::IpAddr>, _>>()?;
        let pki = ClusterPki::generate(&dir.join("pki").join(hub), hub, &ips)?;
        let initial_cluster = network
            .regions
            .iter()
            .zip(&addresses)
            .map(|(region, address)| format!("{region}=http://{address}:2380"))
            .collect::<Vec<_>>()
            .join(",");
        let mut members = Vec::new();
        for (index, region) in network.regions.iter().enumerate() {
            let place = HubPlace {
                region: region.clone(),
                address: addresses[index].clone(),
                netns: network.namespace(region),
                // Its own member only, as kubeadm's stacked etcd does:
                // etcd's client spreads requests over every URL it is
                // given, so a black-holed member would stall a share of
                // the majority's requests until its keepalive gives up.
                etcd_servers: format!("http://{}:2379", addresses[index]),
            };
            let recipe = Recipe::hub_member(dir, bins, hub, &pki, &place)?;
            members.push(HubMember {
                region: region.clone(),
                server: recipe.server.clone(),
                kubeconfig: recipe.kubeconfig.clone(),
                etcd: components::hub_etcd(dir, bins, hub, &place, &initial_cluster),
                etcd_url: format!("http://{}:2379", place.address),
                apiserver: recipe.apiserver(),
                controller_manager: recipe.controller_manager()?,
            });
        }
        let first = std::fs::read_to_string(&members[0].kubeconfig)?;
        pki::write_private(&dir.join(format!("{hub}.kubeconfig")), &first)?;
        Ok(SpreadHub {
            name: hub.to_string(),
            network,
            members,
        })
    }

    pub(crate) fn member_mut(&mut self, region: &str) -> Result<&mut HubMember> {
        let index = self.network.index(region)?;
        Ok(&mut self.members[index])
    }

    pub(crate) fn components(&self) -> impl Iterator<Item = &Component> {
        self.members.iter().flat_map(|m| m.components())
    }
}

impl LocalRegions {
    /// Starts every region's hub etcd member (together: they need each
    /// other to form the cluster), then the API servers and
    /// controller-managers, and waits until each API server is ready.
    pub(crate) async fn start_spread_hub(&mut self) -> Result<()> {
        let regions = self.spread()?.network.regions.clone();
        for region in &regions {
            self.spread_mut()?.member_mut(region)?.etcd.start()?;
        }
        self.save()?;
        for region in &regions {
            let member = self.spread_mut()?.member_mut(region)?.clone();
            crate::wait_etcd(&member.etcd_url, &member.etcd).await?;
        }
        for region in &regions {
            self.start_hub_member(region).await?;
        }
        Ok(())
    }

    /// Starts a region's hub API server and controller-manager (and its
    /// etcd member if it is down) and waits until the API server is ready.
    async fn start_hub_member(&mut self, region: &str) -> Result<()> {
        let member = self.spread_mut()?.member_mut(region)?;
        for component in [
            &mut member.etcd,
            &mut member.apiserver,
            &mut member.controller_manager,
        ] {
            if !component.is_running() {
                component.start()?;
            }
        }
        let member = member.clone();
        self.save()?;
        let client = admin_client(&member.kubeconfig).await?;
        wait_apiserver(&client, &member.apiserver).await
    }

    /// `fail REGION` for the hub's part: its etcd member, API server and
    /// controller-manager, and every process run there with `exec`.
    pub(crate) fn fail_hub_member(&mut self, region: &str) -> Result<()> {
        if self.state.spread.is_none() {
            return Ok(());
        }
        let member = self.spread_mut()?.member_mut(region)?;
        for component in [
            &mut member.controller_manager,
            &mut member.apiserver,
            &mut member.etcd,
        ] {
            component.stop(Duration::ZERO);
        }
        self.kill_exec(region);
        self.save()
    }

    /// `recover REGION` for the hub's part (not the exec'd processes).
    pub(crate) async fn recover_hub_member(&mut self, region: &str) -> Result<()> {
        if self.state.spread.is_none() {
            return Ok(());
        }
        self.start_hub_member(region).await
    }

    pub(crate) fn spread(&self) -> Result<&SpreadHub> {
        self.state
            .spread
            .as_ref()
            .context("these local regions have no spread hub (start them with `up --spread-hub HUB REGION...`)")
    }

    fn spread_mut(&mut self) -> Result<&mut SpreadHub> {
        self.state
            .spread
            .as_mut()
            .context("these local regions have no spread hub (start them with `up --spread-hub HUB REGION...`)")
    }

    /// The hub's kubeconfig through one region (`DIR/HUB@REGION.kubeconfig`).
    pub fn hub_kubeconfig_in(&self, region: &str) -> Result<PathBuf> {
        let spread = self.spread()?;
        let index = spread.network.index(region)?;
        Ok(spread.members[index].kubeconfig.clone())
    }

    /// Moves the hub's etcd leadership to `region`'s member and waits until
    /// every member follows it. Under a cut between two regions, the member
    /// that can no longer reach the leader stops serving (the others keep
    /// their leader and ignore its calls for an election, as etcd's
    /// CheckQuorum and PreVote have them): tests choose which region that
    /// is.
    pub async fn move_hub_leader(&self, region: &str) -> Result<()> {
        let spread = self.spread()?;
        let target = spread.network.index(region)?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(3))
            .build()?;
        let status = |url: String| {
            let http = http.clone();
            async move {
                let body: serde_json::Value = http
                    .post(format!("{url}/v3/maintenance/status"))
                    .json(&serde_json::json!({}))
                    .send()
                    .await?
                    .json()
                    .await?;
                let id = body["header"]["member_id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                let leader = body["leader"].as_str().unwrap_or_default().to_string();
                anyhow::Ok((id, leader))
            }
        };
        let urls: Vec<String> = spread.members.iter().map(|m| m.etcd_url.clone()).collect();
        let (target_id, leader_id) = status(urls[target].clone()).await?;
        if target_id != leader_id {
            let mut leader_url = None;
            for url in &urls {
                if let Ok((id, _)) = status(url.clone()).await
                    && id == leader_id
                {
                    leader_url = Some(url.clone());
                }
            }
            let leader_url = leader_url.context("no etcd member of the hub leads")?;
            let response = http
                .post(format!("{leader_url}/v3/maintenance/transfer-leadership"))
                .json(&serde_json::json!({"targetID": target_id}))
                .send()
                .await?;
            if !response.status().is_success() {
                bail!(
                    "moving the hub's etcd leadership to {region}: {}",
                    response.text().await?
                );
            }
        }
        let member = &spread.members[target];
        crate::wait_until(
            &member.etcd,
            "every hub etcd member to follow the new leader",
            || async {
                for url in &urls {
                    if status(url.clone()).await?.1 != target_id {
                        return Ok(false);
                    }
                }
                Ok(true)
            },
        )
        .await
    }

    /// Cuts every path between regions `a` and `b`, both ways.
    pub fn cut(&mut self, a: &str, b: &str) -> Result<()> {
        self.spread_mut()?.network.cut(a, b)?;
        self.save()
    }

    /// Undoes `cut`.
    pub fn mend(&mut self, a: &str, b: &str) -> Result<()> {
        self.spread_mut()?.network.mend(a, b)?;
        self.save()
    }

    /// Cuts every path between `region` and the other regions.
    pub fn isolate(&mut self, region: &str) -> Result<()> {
        self.spread_mut()?.network.isolate(region)?;
        self.save()
    }

    /// Undoes `isolate` (every cut involving `region`).
    pub fn rejoin(&mut self, region: &str) -> Result<()> {
        self.spread_mut()?.network.rejoin(region)?;
        self.save()
    }

    /// A command that runs `program` in `region`'s network namespace. Add
    /// arguments, spawn it, then pass its pid to
    /// [`LocalRegions::record_exec`] so `fail` and `down` kill it.
    pub fn command_in(&self, region: &str, program: &Path) -> Result<Command> {
        let ns = self.spread()?.network.namespace(region);
        Ok(process::command_in_namespace(&ns, program))
    }

    /// Records a process as running in `region` (killed by `fail REGION`
    /// and `down`).
    pub fn record_exec(&self, region: &str, pid: u32) -> Result<()> {
        self.spread()?.network.index(region)?;
        let pid = pid as i32;
        let started = process::start_time(pid).context("the process has already exited")?;
        let dir = self.dir.join("exec");
        std::fs::create_dir_all(&dir)?;
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join(format!("{region}.pids")))?;
        std::io::Write::write_all(&mut file, format!("{pid} {started}\n").as_bytes())?;
        Ok(())
    }

    /// `exec REGION -- CMD`: records this process, enters the region's
    /// namespace and replaces this process with CMD (same pid, working
    /// directory, environment and signals). Returns only on failure.
    pub fn exec_in(&self, region: &str, command: &[String]) -> Result<()> {
        let Some((program, args)) = command.split_first() else {
            bail!("name a command to run: exec REGION -- CMD ARGS...");
        };
        let ns = self.spread()?.network.namespace(region);
        self.record_exec(region, std::process::id())?;
        let mut command = process::command_in_namespace(&ns, Path::new(program));
        let err = std::os::unix::process::CommandExt::exec(command.args(args));
        Err(err).with_context(|| format!("running {program} in region {region}"))
    }

    /// Kills every process recorded with `record_exec` in `region`.
    pub(crate) fn kill_exec(&self, region: &str) {
        let path = self.dir.join("exec").join(format!("{region}.pids"));
        let Ok(text) = std::fs::read_to_string(&path) else {
            return;
        };
        for line in text.lines() {
            let mut fields = line.split_whitespace();
            let (Some(Ok(pid)), Some(Ok(started))) = (
                fields.next().map(str::parse::<i32>),
                fields.next().map(str::parse::<u64>),
            ) else {
                continue;
            };
            if process::start_time(pid) == Some(started) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
        let _ = std::fs::remove_file(path);
    }

    /// Makes the regions' network and records it (before anything starts,
    /// so the watchdog can remove it).
    pub(crate) fn create_network(
        &mut self,
        bins: &Binaries,
        hub: &str,
        regions: &[String],
    ) -> Result<()> {
        let network = Network::create(regions)?;
        std::fs::write(self.dir.join("network-down.sh"), network.destroy_script())?;
        let spread = SpreadHub::plan(&self.dir, bins, hub, network.clone());
        match spread {
            Ok(spread) => {
                self.state.spread = Some(spread);
                self.save()
            }
            Err(err) => {
                network.destroy();
                Err(err)
            }
        }
    }

    /// Stops the hub's parts and removes the network (for `down`).
    pub(crate) fn down_spread(&mut self) {
        let Some(spread) = &mut self.state.spread else {
            return;
        };
        for member in spread.members.iter_mut().rev() {
            for component in [
                &mut member.controller_manager,
                &mut member.apiserver,
                &mut member.etcd,
            ] {
                component.stop(crate::DOWN_GRACE);
            }
        }
        let network = spread.network.clone();
        for region in &network.regions {
            self.kill_exec(region);
        }
        network.destroy();
        let _ = std::fs::remove_file(self.dir.join("network-down.sh"));
    }
}
