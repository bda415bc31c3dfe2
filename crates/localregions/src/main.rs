//! `localregions`: start and stop real Kubernetes control planes as processes
//! on loopback, one per region (see docs/design.md, "Local regions").

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;
use clap::{Parser, Subcommand};
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
        /// Cluster names, e.g. hub us-east eu-west.
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Stop everything `up` started.
    Down,
    /// Kill a cluster's API server: the region becomes unreachable (data kept).
    StopApiserver { name: String },
    /// Start a cluster's API server again and wait until it is ready.
    StartApiserver { name: String },
    /// Stop a cluster's KWOK: its nodes and pods go NotReady.
    StopNodes { name: String },
    /// Start a cluster's KWOK again and wait until its nodes are Ready.
    StartNodes { name: String },
    /// Print shell lines exporting each cluster's kubeconfig path.
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
        Command::Up { names } => {
            let started = Instant::now();
            let regions = LocalRegions::up(UpOptions {
                dir: cli.dir,
                names,
                stop_with_this_process: false,
            })
            .await?;
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
        Command::Down => match LocalRegions::open(&cli.dir) {
            Ok(mut regions) => regions.down(),
            Err(_) => eprintln!("nothing running in {}", cli.dir.display()),
        },
        Command::StopApiserver { name } => LocalRegions::open(&cli.dir)?.stop_apiserver(&name)?,
        Command::StartApiserver { name } => {
            LocalRegions::open(&cli.dir)?.start_apiserver(&name).await?
        }
        Command::StopNodes { name } => LocalRegions::open(&cli.dir)?.stop_nodes(&name)?,
        Command::StartNodes { name } => LocalRegions::open(&cli.dir)?.start_nodes(&name).await?,
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
