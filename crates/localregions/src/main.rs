//! `localregions`: start and stop real Kubernetes control planes as processes
//! on loopback, one per region (see docs/design.md, "Local regions").

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Result;
use clap::{Parser, Subcommand};
use localregions::load::{Load, Route, Sample};
use localregions::{DEFAULT_DIR, LocalRegions, UpOptions};

#[derive(Parser)]
#[command(
    name = "localregions",
    version,
    about = "Real Kubernetes control planes as local processes"
)]
struct Cli {
    /// Directory holding state, kubeconfigs (DIR/NAME.kubeconfig), data and logs.
    #[arg(long, global = true, default_value = DEFAULT_DIR, env = "LOCALREGIONS_DIR")]
    dir: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
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
    Replication { mode: localregions::Replication },
    /// Add a round trip between every region and the primary on the
    /// replication links, e.g. `wan-latency 80ms` (0 removes it).
    WanLatency {
        #[arg(value_parser = parse_duration)]
        rtt: Duration,
    },
    /// Make REGION's database a standby of the current primary: rewound
    /// (`pg_rewind`) to where their histories part, then streaming.
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

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,kube_client=off".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    if let Err(err) = run(Cli::parse()).await {
        eprintln!("localregions: {err:#}");
        std::process::exit(1);
    }
}

async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Up {
            names,
            spread_hub,
            postgres,
        } => {
            let started = Instant::now();
            let regions = LocalRegions::up(UpOptions {
                dir: cli.dir,
                names,
                stop_with_this_process: false,
                spread_hub,
                postgres,
            })
            .await?;
            if let Some(hub) = regions.spread_hub() {
                for member in &hub.members {
                    println!(
                        "{}@{}\t{}\t{}",
                        hub.name,
                        member.region,
                        member.server,
                        member.kubeconfig.display()
                    );
                }
            }
            for cluster in regions.clusters() {
                println!(
                    "{}\t{}\t{}",
                    cluster.name,
                    cluster.server,
                    cluster.kubeconfig.display()
                );
            }
            eprintln!(
                "ready in {:.1}s; stop with `localregions down`",
                started.elapsed().as_secs_f64()
            );
        }
        Command::Exec { region, command } => {
            LocalRegions::open(&cli.dir)?.exec_in(&region, &command)?
        }
        Command::Isolate { region } => LocalRegions::open(&cli.dir)?.isolate(&region)?,
        Command::Rejoin { region } => LocalRegions::open(&cli.dir)?.rejoin(&region)?,
        Command::Cut { a, b } => LocalRegions::open(&cli.dir)?.cut(&a, &b)?,
        Command::HubLeader { region } => {
            LocalRegions::open(&cli.dir)?
                .move_hub_leader(&region)
                .await?
        }
        Command::Mend { a, b } => LocalRegions::open(&cli.dir)?.mend(&a, &b)?,
        Command::Down => match LocalRegions::open(&cli.dir) {
            Ok(mut regions) => regions.down(),
            Err(_) => eprintln!("nothing running in {}", cli.dir.display()),
        },
        Command::StopApiserver { name } => LocalRegions::open(&cli.dir)?.stop_apiserver(&name)?,
        Command::DrainApiserver { name } => LocalRegions::open(&cli.dir)?.drain_apiserver(&name)?,
        Command::StartApiserver { name } => {
            LocalRegions::open(&cli.dir)?.start_apiserver(&name).await?
        }
        Command::StopNodes { name } => LocalRegions::open(&cli.dir)?.stop_nodes(&name)?,
        Command::StartNodes { name } => LocalRegions::open(&cli.dir)?.start_nodes(&name).await?,
        Command::Fail { name } => LocalRegions::open(&cli.dir)?.fail(&name).await?,
        Command::Replication { mode } => {
            LocalRegions::open(&cli.dir)?.set_replication(mode).await?
        }
        Command::WanLatency { rtt } => LocalRegions::open(&cli.dir)?.wan_latency(rtt).await?,
        Command::RejoinDb { region } => {
            LocalRegions::open(&cli.dir)?
                .rejoin_database(&region)
                .await?
        }
        Command::Recover { name } => LocalRegions::open(&cli.dir)?.recover(&name).await?,
        Command::Partition { name } => LocalRegions::open(&cli.dir)?.partition(&name).await?,
        Command::Heal { name } => LocalRegions::open(&cli.dir)?.heal(&name).await?,
        Command::Latency { name, delay } => {
            LocalRegions::open(&cli.dir)?.latency(&name, delay).await?
        }
        Command::Answer { name, code, during } => {
            let regions = LocalRegions::open(&cli.dir)?;
            regions.answer(&name, Some(code)).await?;
            tokio::select! {
                _ = tokio::time::sleep(during) => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            regions.answer(&name, None).await?
        }
        Command::BlackholeEndpoint { name } => {
            LocalRegions::open(&cli.dir)?
                .blackhole_endpoint(&name)
                .await?
        }
        Command::Traffic { hub } => {
            let traffic = LocalRegions::open(&cli.dir)?.start_traffic(&hub).await?;
            println!("gateway\t{}\ndns\t{}", traffic.gateway, traffic.dns);
        }
        Command::Load {
            url,
            dns_name,
            port,
            regions,
            rate,
            seconds,
            writes,
        } => {
            let dir = cli.dir.clone();
            let route = load_route(&dir, url, dns_name, port, regions)?;
            let samples = load(route, rate, seconds, writes).await?;
            if writes {
                report_writes(&LocalRegions::open(&dir)?, &samples).await?;
            }
        }
        Command::StopEndpoint { name } => LocalRegions::open(&cli.dir)?.stop_endpoint(&name)?,
        Command::StartEndpoint { name } => {
            LocalRegions::open(&cli.dir)?.start_endpoint(&name).await?
        }
        Command::Env => print!("{}", LocalRegions::open(&cli.dir)?.env_lines()),
        Command::Logs { lines } => print!("{}", LocalRegions::open(&cli.dir)?.logs_tail(lines)),
        Command::Memory => {
            let regions = LocalRegions::open(&cli.dir)?;
            println!(
                "{}",
                serde_json::to_string_pretty(&regions.resident_memory())?
            );
        }
    }
    Ok(())
}

/// `2s`, `500ms` or a number of seconds.
fn parse_duration(text: &str) -> Result<Duration, String> {
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

fn load_route(
    dir: &std::path::Path,
    url: Option<String>,
    dns_name: Option<String>,
    port: u16,
    regions: Vec<String>,
) -> Result<Route> {
    if let Some(url) = url {
        return Ok(Route::Url(url));
    }
    if let Some(name) = dns_name {
        let local = LocalRegions::open(dir)?;
        let Some(traffic) = local.traffic() else {
            anyhow::bail!("no local DNS: run `localregions traffic` first");
        };
        let server = traffic.dns.clone();
        return Ok(Route::Dns { server, name, port });
    }
    if regions.is_empty() {
        anyhow::bail!("name a route: --url, --dns-name or --regions");
    }
    Ok(Route::Regions(regions))
}

async fn load(route: Route, rate: u32, seconds: u64, writes: bool) -> Result<Vec<Sample>> {
    let options = Load {
        rate,
        duration: Duration::from_secs(seconds),
        timeout: Duration::from_secs(2),
        writes,
    };
    let samples = localregions::load::run(&route, options).await?;
    for line in localregions::load::per_second(&samples) {
        println!("{line}");
    }
    Ok(samples)
}

/// Acknowledged writes, and those the current primary lacks.
async fn report_writes(regions: &LocalRegions, samples: &[Sample]) -> Result<()> {
    let acknowledged = localregions::load::acknowledged(samples);
    println!("acknowledged writes: {}", acknowledged.len());
    let primary = regions.primary().await?;
    let missing = primary.missing(&acknowledged).await?;
    println!(
        "the primary ({}) lacks {} of them{}",
        primary.region,
        missing.len(),
        if missing.is_empty() {
            String::new()
        } else {
            format!(": ids {missing:?}")
        }
    );
    Ok(())
}
