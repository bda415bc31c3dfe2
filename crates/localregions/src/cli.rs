//! The `localregions` command line, as clap reads it (here rather than in
//! the binary, so that a test can check every command the docs show).

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::DEFAULT_DIR;

#[derive(Parser)]
#[command(
    name = "localregions",
    version,
    about = "Real Kubernetes control planes as local processes"
)]
pub struct Cli {
    /// Directory holding state, kubeconfigs (DIR/NAME.kubeconfig), data and logs.
    #[arg(long, global = true, default_value = DEFAULT_DIR, env = "LOCALREGIONS_DIR")]
    pub dir: PathBuf,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Start clusters; returns when all are ready and leaves them running.
    Up {
        /// Cluster names, e.g. hub us-east eu-west (with --spread-hub: the
        /// regions only).
        #[arg(required = true)]
        names: Vec<String>,
        /// Spread the hub named HUB over the regions: an etcd member, an API
        /// server and a controller-manager in each region's own network
        /// namespace (needs root); DIR/HUB@REGION.kubeconfig for each,
        /// DIR/HUB.kubeconfig is the first region's.
        #[arg(long, value_name = "HUB")]
        spread_hub: Option<String>,
        /// Start PostgreSQL in every member region (every name but the
        /// first, the hub; with --spread-hub every region): the first
        /// member's is the primary, the others stream from it through
        /// their region's link. `env` prints POSTGRES_<REGION> URIs.
        #[arg(long)]
        postgres: bool,
    },
    /// What a commit on the primary waits for: async (nothing), semi-sync
    /// (any one standby) or sync (every standby).
    Replication { mode: crate::Replication },
    /// Add a round trip between every region and the primary on the
    /// replication links, e.g. `wan-latency 80ms` (0 removes it).
    WanLatency {
        #[arg(value_parser = parse_duration)]
        rtt: Duration,
    },
    /// Make REGION's database a standby of the current primary: an old
    /// primary, or a standby still following one; rewound (`pg_rewind`)
    /// to where their histories part, if they do, then streaming.
    RejoinDb { region: String },
    /// Run CMD inside a region's network namespace (spread hub only): in
    /// the foreground, with CMD's exit status; `fail REGION` kills it.
    Exec {
        region: String,
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// Cut every path between REGION and the other regions, both ways
    /// (spread hub only; the host keeps reaching every region).
    Isolate { region: String },
    /// Undo `isolate` (and every `cut` involving REGION).
    Rejoin { region: String },
    /// Cut only the paths between regions A and B (spread hub only).
    Cut { a: String, b: String },
    /// Move the hub's etcd leadership to REGION's member (spread hub only):
    /// under a cut, the member that cannot reach the leader stops serving.
    HubLeader { region: String },
    /// Undo `cut A B`.
    Mend { a: String, b: String },
    /// Stop everything `up` started.
    Down,
    /// Kill a cluster's API server: the region becomes unreachable (data kept).
    StopApiserver { name: String },
    /// Start a cluster's API server again and wait until it is ready.
    StartApiserver { name: String },
    /// Terminate a cluster's API server gracefully (a rolling upgrade):
    /// /readyz answers 500 for 20 s while it serves, then it exits.
    DrainApiserver { name: String },
    /// Stop a cluster's KWOK: its nodes and pods go NotReady.
    StopNodes { name: String },
    /// Start a cluster's KWOK again and wait until its nodes are Ready.
    StartNodes { name: String },
    /// A whole region down: its API server, its nodes and its endpoint (with
    /// a spread hub also the hub's member there and what was exec'd there).
    Fail { name: String },
    /// Bring back what `fail` stopped (not exec'd processes) and wait until
    /// it serves.
    Recover { name: String },
    /// Cut the operator off from a cluster's API server (black-holed, as a
    /// lost route); the cluster and its endpoint keep serving.
    Partition { name: String },
    /// Undo `partition`, `latency`, `answer` and `blackhole-endpoint` for a
    /// cluster.
    Heal { name: String },
    /// Add a delay to every answer on the operator's path to a cluster,
    /// e.g. `latency us-east 2s` or `500ms`.
    Latency {
        name: String,
        #[arg(value_parser = parse_duration)]
        delay: Duration,
    },
    /// The region's endpoint accepts connections but never answers.
    BlackholeEndpoint { name: String },
    /// The operator's path to a cluster's API server answers every request
    /// with CODE (429, 500, 503, ...) for a while, e.g. `answer us-east 429
    /// 30s`; the cluster keeps running. Runs in the foreground, then puts
    /// the real API server back.
    Answer {
        name: String,
        code: u16,
        #[arg(value_parser = parse_duration)]
        during: Duration,
    },
    /// Start the gateway (Traefik) and DNS (ExternalDNS, CoreDNS) that
    /// consume the operator's sinks in the hub; print where they listen.
    Traffic {
        #[arg(long, default_value = "hub")]
        hub: String,
    },
    /// Send requests at a fixed rate for a fixed time and print, each
    /// second, successes, failures and which region answered.
    Load {
        /// Through one address (the gateway: `localregions traffic`).
        #[arg(long, conflicts_with_all = ["dns_name", "regions"])]
        url: Option<String>,
        /// Resolve this name at the local DNS (honouring its TTL) and send
        /// to the address it gives, on --port.
        #[arg(long)]
        dns_name: Option<String>,
        #[arg(long, default_value_t = 80)]
        port: u16,
        /// Write rows instead of reading (`POST /writes?id=N`, answered
        /// after the region's database committed); at the end, print how
        /// many writes were acknowledged and which of them the current
        /// primary lacks.
        #[arg(long)]
        writes: bool,
        /// Client-side failover: these regions' endpoints, tried in order.
        #[arg(long, value_delimiter = ',')]
        regions: Vec<String>,
        #[arg(long, default_value_t = 20)]
        rate: u32,
        #[arg(long, default_value_t = 30)]
        seconds: u64,
    },
    /// Stop a region's endpoint process.
    StopEndpoint { name: String },
    /// Start a region's endpoint process again.
    StartEndpoint { name: String },
    /// Print shell lines exporting each cluster's kubeconfig path and
    /// endpoint.
    Env,
    /// Print the last lines of every component's log.
    Logs {
        #[arg(long, default_value_t = 40)]
        lines: usize,
    },
    /// Print resident memory of every running component as JSON.
    Memory,
}

/// A delay as the commands take it: `2s`, `500ms`, or seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.strip_suffix("ms") {
        Some(n) => (n, 0.001),
        None => (text.strip_suffix('s').unwrap_or(text), 1.0),
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration such as 2s or 500ms"))?;
    if value < 0.0 {
        return Err(format!("{text:?}: a delay cannot be negative"));
    }
    Ok(Duration::from_secs_f64(value * unit))
}
