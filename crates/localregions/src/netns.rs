//! The regions' network for a spread hub: one network namespace per region,
//! all on one host bridge, and cuts between regions.
//!
//! Layout, for network number `N` (the first free one, 0..=199):
//! - the bridge `lrbN` holds 10.252.N.1/24 on the host (the outside: the
//!   tests, people, the traffic tier);
//! - region `i` (in start order) has the namespace `lrN-REGION` with
//!   10.252.N.(10+i) (its hub etcd member and API server, and whatever runs
//!   there with `exec`), and the host address 10.252.N.(110+i) on the
//!   bridge, where its member API server, the operator's proxy to it and its
//!   endpoint listen. Both addresses are the region: a cut between A and B
//!   drops, inside A's and B's namespaces, every packet to or from the
//!   other's two addresses (iptables DROP: connections hang, as across a
//!   lost WAN path, rather than fail at once).
//!
//! Cuts are only between regions: the host reaches every address whatever
//! is cut.

use std::collections::BTreeSet;
use std::process::Command;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

/// The iptables chain of cuts inside each region's namespace.
const CUT_CHAIN: &str = "LOCALREGIONS-CUT";
/// The highest network number tried (10.252.N.0/24).
const MAX_NETWORK: u8 = 199;

/// The namespaces, the bridge and the cuts made for one spread hub.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Network {
    /// N of 10.252.N.0/24 and of the names `lrbN`, `lrN-REGION`.
    pub number: u8,
    /// Regions in start order.
    pub regions: Vec<String>,
    /// Region pairs cut, each written (smaller, larger).
    #[serde(default)]
    pub cuts: BTreeSet<(String, String)>,
}

impl Network {
    /// Makes the bridge, one namespace per region and the host addresses.
    /// Needs root.
    pub fn create(regions: &[String]) -> Result<Self> {
        if !nix::unistd::Uid::effective().is_root() {
            bail!(
                "a spread hub needs root (it makes a network namespace per region); run as root or without --spread-hub"
            );
        }
        let number = free_number()?;
        let network = Network {
            number,
            regions: regions.to_vec(),
            cuts: BTreeSet::new(),
        };
        let result = network.build();
        if result.is_err() {
            network.destroy();
        }
        result.map(|()| network)
    }

    fn build(&self) -> Result<()> {
        let bridge = self.bridge();
        let gateway = format!("{}/24", self.address(1));
        ip(&["link", "add", &bridge, "type", "bridge"])?;
        ip(&["addr", "add", &gateway, "dev", &bridge])?;
        ip(&["link", "set", &bridge, "up"])?;
        // Docker's FORWARD policy drops bridged traffic when br_netfilter
        // is loaded; region-to-region packets cross this bridge.
        let _ = iptables(
            None,
            &[
                "-I", "FORWARD", "-i", &bridge, "-o", &bridge, "-j", "ACCEPT",
            ],
        );
        for (index, region) in self.regions.iter().enumerate() {
            self.build_region(index, region)?;
        }
        Ok(())
    }

    fn build_region(&self, index: usize, region: &str) -> Result<()> {
        let ns = self.namespace(region);
        let host_side = self.host_link(index);
        let region_side = format!("lr{}r{index}", self.number);
        let inside = format!("{}/24", self.region_address(index));
        let host_address = format!("{}/32", self.host_address(index));
        ip(&["addr", "add", &host_address, "dev", &self.bridge()])?;
        ip(&["netns", "add", &ns])?;
        ip(&[
            "link",
            "add",
            &host_side,
            "type",
            "veth",
            "peer",
            "name",
            &region_side,
        ])?;
        ip(&["link", "set", &region_side, "netns", &ns])?;
        ip(&["link", "set", &host_side, "master", &self.bridge(), "up"])?;
        ip(&["-n", &ns, "link", "set", &region_side, "name", "eth0"])?;
        ip(&["-n", &ns, "addr", "add", &inside, "dev", "eth0"])?;
        ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
        ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        ip(&[
            "-n",
            &ns,
            "route",
            "add",
            "default",
            "via",
            &self.address(1),
        ])?;
        iptables(Some(&ns), &["-N", CUT_CHAIN])?;
        iptables(Some(&ns), &["-I", "INPUT", "-j", CUT_CHAIN])?;
        iptables(Some(&ns), &["-I", "OUTPUT", "-j", CUT_CHAIN])?;
        Ok(())
    }

    /// Removes every namespace, link, address and rule `create` made.
    /// Errors are ignored: it also cleans up after a half-made network.
    pub fn destroy(&self) {
        for (index, region) in self.regions.iter().enumerate() {
            let _ = ip(&["netns", "del", &self.namespace(region)]);
            // The kernel frees a namespace (and its end of the pair) only
            // when nothing refers to it any more; the host's end goes now.
            let _ = ip(&["link", "del", &self.host_link(index)]);
        }
        let bridge = self.bridge();
        let _ = iptables(
            None,
            &[
                "-D", "FORWARD", "-i", &bridge, "-o", &bridge, "-j", "ACCEPT",
            ],
        );
        let _ = ip(&["link", "del", &bridge]);
    }

    /// Shell lines doing what `destroy` does, for the watchdog.
    pub fn destroy_script(&self) -> String {
        let bridge = self.bridge();
        let mut script = String::new();
        for (index, region) in self.regions.iter().enumerate() {
            script.push_str(&format!(
                "ip netns del {} 2>/dev/null\nip link del {} 2>/dev/null\n",
                self.namespace(region),
                self.host_link(index)
            ));
        }
        script.push_str(&format!(
            "iptables -w -D FORWARD -i {bridge} -o {bridge} -j ACCEPT 2>/dev/null\nip link del {bridge} 2>/dev/null\n"
        ));
        script
    }

    /// Cuts every path between regions `a` and `b`, both ways.
    pub fn cut(&mut self, a: &str, b: &str) -> Result<()> {
        let pair = self.pair(a, b)?;
        for (here, there) in [(a, b), (b, a)] {
            for rule in self.cut_rules(there)? {
                let ns = self.namespace(here);
                let exists = iptables(Some(&ns), &with(&["-C", CUT_CHAIN], &rule)).is_ok();
                if !exists {
                    iptables(Some(&ns), &with(&["-A", CUT_CHAIN], &rule))?;
                }
            }
        }
        self.cuts.insert(pair);
        Ok(())
    }

    /// Undoes `cut a b`.
    pub fn mend(&mut self, a: &str, b: &str) -> Result<()> {
        let pair = self.pair(a, b)?;
        for (here, there) in [(a, b), (b, a)] {
            for rule in self.cut_rules(there)? {
                let ns = self.namespace(here);
                while iptables(Some(&ns), &with(&["-D", CUT_CHAIN], &rule)).is_ok() {}
            }
        }
        self.cuts.remove(&pair);
        Ok(())
    }

    /// Cuts `region` from every other region.
    pub fn isolate(&mut self, region: &str) -> Result<()> {
        for other in self.others(region)? {
            self.cut(region, &other)?;
        }
        Ok(())
    }

    /// Undoes `isolate` (and every cut that involves `region`).
    pub fn rejoin(&mut self, region: &str) -> Result<()> {
        for other in self.others(region)? {
            self.mend(region, &other)?;
        }
        Ok(())
    }

    /// Rules (without the chain) that drop a region's traffic with `there`.
    fn cut_rules(&self, there: &str) -> Result<Vec<Vec<String>>> {
        let index = self.index(there)?;
        let mut rules = Vec::new();
        for address in [self.region_address(index), self.host_address(index)] {
            for direction in ["-s", "-d"] {
                rules.push(vec![
                    direction.into(),
                    address.clone(),
                    "-j".into(),
                    "DROP".into(),
                ]);
            }
        }
        Ok(rules)
    }

    fn others(&self, region: &str) -> Result<Vec<String>> {
        self.index(region)?;
        Ok(self
            .regions
            .iter()
            .filter(|r| *r != region)
            .cloned()
            .collect())
    }

    fn pair(&self, a: &str, b: &str) -> Result<(String, String)> {
        self.index(a)?;
        self.index(b)?;
        if a == b {
            bail!("cannot cut region {a} from itself");
        }
        Ok(if a < b {
            (a.into(), b.into())
        } else {
            (b.into(), a.into())
        })
    }

    /// The region's place in start order.
    pub fn index(&self, region: &str) -> Result<usize> {
        self.regions
            .iter()
            .position(|r| r == region)
            .with_context(|| {
                format!(
                    "no region named {region:?} in the spread hub (regions: {})",
                    self.regions.join(", ")
                )
            })
    }

    /// The host's end of the region's link.
    fn host_link(&self, index: usize) -> String {
        format!("lr{}h{index}", self.number)
    }

    pub fn bridge(&self) -> String {
        format!("lrb{}", self.number)
    }

    /// The network namespace of a region (`/run/netns/NAME`).
    pub fn namespace(&self, region: &str) -> String {
        format!("lr{}-{region}", self.number)
    }

    fn address(&self, last: usize) -> String {
        format!("10.252.{}.{last}", self.number)
    }

    /// The region's address inside its namespace (its hub member).
    pub fn region_address(&self, index: usize) -> String {
        self.address(10 + index)
    }

    /// The region's address on the host bridge (its member cluster and
    /// endpoint).
    pub fn host_address(&self, index: usize) -> String {
        self.address(110 + index)
    }
}

fn with(head: &[&str], rule: &[String]) -> Vec<String> {
    head.iter()
        .map(|s| s.to_string())
        .chain(rule.iter().cloned())
        .collect()
}

/// The first N with no bridge `lrbN`, no link `lrNh...` and no address in
/// 10.252.N.0/24.
fn free_number() -> Result<u8> {
    let links = output("ip", &["-o", "link", "show"])?;
    let addresses = output("ip", &["-o", "addr", "show"])?;
    (0..=MAX_NETWORK)
        .find(|n| {
            !links.contains(&format!(" lrb{n}:"))
                && !links.contains(&format!(" lr{n}h"))
                && !addresses.contains(&format!(" 10.252.{n}."))
        })
        .context("no free network 10.252.N.0/24 for a spread hub (run `localregions down` in old directories)")
}

fn output(program: &str, args: &[&str]) -> Result<String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("running {program} (iproute2 is needed for a spread hub)"))?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn ip(args: &[&str]) -> Result<()> {
    run("ip", args)
}

/// iptables, in a region's namespace when `ns` is given.
fn iptables<S: AsRef<str>>(ns: Option<&str>, args: &[S]) -> Result<()> {
    let mut full: Vec<&str> = Vec::new();
    if let Some(ns) = ns {
        full.extend(["netns", "exec", ns, "iptables"]);
    }
    full.push("-w");
    full.extend(args.iter().map(|a| a.as_ref()));
    match ns {
        Some(_) => run("ip", &full),
        None => run("iptables", &full),
    }
}

fn run(program: &str, args: &[&str]) -> Result<()> {
    let out = Command::new(program).args(args).output().with_context(|| {
        format!("running {program} (iproute2 and iptables are needed for a spread hub)")
    })?;
    if !out.status.success() {
        bail!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}
