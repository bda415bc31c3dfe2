//! The `multiregion` command: the operator and its tools. Installed as
//! `kubectl-multiregion` it also works as `kubectl multiregion ...`.
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(
    name = "multiregion",
    version,
    about = "Run one application across several Kubernetes clusters and fail traffic over when a region fails"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the operator against the hub cluster.
    Run(RunArgs),
    /// Print the CustomResourceDefinitions (Region, MultiRegionApp) as YAML.
    Crd,
}

#[derive(clap::Args)]
struct RunArgs {
    /// Kubeconfig of the hub. Default: in-cluster config, else $KUBECONFIG or ~/.kube/config.
    #[arg(long, env = "MULTIREGION_KUBECONFIG")]
    kubeconfig: Option<PathBuf>,
    /// Context of that kubeconfig.
    #[arg(long, env = "MULTIREGION_CONTEXT")]
    context: Option<String>,
    /// Namespace the operator runs in; Region Secrets are read from here.
    #[arg(
        long,
        env = "MULTIREGION_NAMESPACE",
        default_value = "multiregion-system"
    )]
    namespace: String,
    /// Address of /metrics, /healthz and /readyz.
    #[arg(long, env = "MULTIREGION_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    metrics_addr: SocketAddr,
    /// Log format.
    #[arg(long, env = "MULTIREGION_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Name of this instance in Events and the Lease (defaults to the pod name or host name).
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    /// Leader election: only the holder of the Lease `multiregion-operator`
    /// in --namespace writes; other replicas stand by.
    #[arg(long, env = "MULTIREGION_LEADER_ELECTION", default_value_t = false)]
    leader_election: bool,
    /// Lease duration in seconds: a standby takes over within it.
    #[arg(long, env = "MULTIREGION_LEASE_SECONDS", default_value_t = 15, value_parser = clap::value_parser!(u64).range(2..=300))]
    lease_seconds: u64,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "info,kube_client=off,kube_runtime=warn".into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

async fn hub_client(args: &RunArgs) -> anyhow::Result<kube::Client> {
    let config = match &args.kubeconfig {
        Some(path) => {
            let kubeconfig = kube::config::Kubeconfig::read_from(path)
                .with_context(|| format!("reading kubeconfig {}", path.display()))?;
            let options = kube::config::KubeConfigOptions {
                context: args.context.clone(),
                ..Default::default()
            };
            kube::Config::from_custom_kubeconfig(kubeconfig, &options).await?
        }
        None => kube::Config::infer().await?,
    };
    Ok(kube::Client::try_from(config)?)
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Crd => multiregion::api::crds_yaml()
            .map(|yaml| print!("{yaml}"))
            .map_err(anyhow::Error::from),
        Command::Run(args) => run(args).await,
    };
    if let Err(err) = result {
        eprintln!("multiregion: {err:#}");
        std::process::exit(1);
    }
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    init_logging(args.log_format);
    let hub = hub_client(&args).await?;
    let identity = args.identity.clone().unwrap_or_else(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "multiregion".into())
    });
    multiregion::controller::run(
        hub,
        multiregion::controller::Options {
            namespace: args.namespace,
            metrics_addr: args.metrics_addr,
            identity,
            leader_election: args.leader_election,
            lease_seconds: args.lease_seconds,
        },
    )
    .await
}
