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
    /// Show each app's regions: role, health and reason, ready/desired, weight.
    Status(StatusArgs),
    /// What-if, without a cluster: placement and weights before and after a
    /// region fails, and how long detection takes.
    Plan(PlanArgs),
}

#[derive(clap::Args)]
struct StatusArgs {
    /// Only this app.
    name: Option<String>,
    /// Namespace of the apps (default: all namespaces).
    #[arg(short, long)]
    namespace: Option<String>,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Output::Table)]
    output: Output,
    /// Kubeconfig of the hub (default: $KUBECONFIG or ~/.kube/config).
    #[arg(long, env = "MULTIREGION_KUBECONFIG")]
    kubeconfig: Option<PathBuf>,
    /// Context of that kubeconfig.
    #[arg(long)]
    context: Option<String>,
}

#[derive(Clone, Copy, ValueEnum)]
enum Output {
    Table,
    Json,
    Yaml,
}

#[derive(clap::Args)]
struct PlanArgs {
    /// A MultiRegionApp manifest (YAML or JSON); `-` reads standard input.
    #[arg(short, long)]
    file: PathBuf,
    /// The region to fail.
    #[arg(long)]
    fail: String,
    /// Availability of one region (for example 0.999), to compute the app's
    /// availability with independent failures.
    #[arg(long)]
    region_availability: Option<f64>,
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
    /// Lease duration in seconds: a standby takes over within it. The leader
    /// stops writing when it could not renew for two thirds of it.
    #[arg(long, env = "MULTIREGION_LEASE_SECONDS", default_value_t = 15, value_parser = clap::value_parser!(u64).range(2..=300))]
    lease_seconds: u64,
    /// This hub's identity, put on every object placed in the regions
    /// (label multiregion.io/hub) so that two hubs never fight over one
    /// member cluster. Default: the UID of the hub's kube-system namespace.
    #[arg(long, env = "MULTIREGION_HUB_NAME", default_value = "")]
    hub_name: String,
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

async fn hub_client(
    kubeconfig: Option<&PathBuf>,
    context: Option<&String>,
) -> anyhow::Result<kube::Client> {
    let config = match kubeconfig {
        Some(path) => {
            let kubeconfig = kube::config::Kubeconfig::read_from(path)
                .with_context(|| format!("reading kubeconfig {}", path.display()))?;
            let options = kube::config::KubeConfigOptions {
                context: context.cloned(),
                ..Default::default()
            };
            kube::Config::from_custom_kubeconfig(kubeconfig, &options).await?
        }
        None if context.is_some() => {
            let options = kube::config::KubeConfigOptions {
                context: context.cloned(),
                ..Default::default()
            };
            kube::Config::from_kubeconfig(&options).await?
        }
        None => kube::Config::infer().await?,
    };
    Ok(multiregion::metrics::counted_client(config, "hub")?)
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Crd => multiregion::api::crds_yaml()
            .map(|yaml| print!("{yaml}"))
            .map_err(anyhow::Error::from),
        Command::Run(args) => run(args).await,
        Command::Status(args) => status(args).await,
        Command::Plan(args) => plan(args),
    };
    if let Err(err) = result {
        eprintln!("multiregion: {err:#}");
        std::process::exit(1);
    }
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    init_logging(args.log_format);
    let hub = hub_client(args.kubeconfig.as_ref(), args.context.as_ref()).await?;
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
            hub_name: args.hub_name,
        },
    )
    .await
}

async fn status(args: StatusArgs) -> anyhow::Result<()> {
    use kube::api::Api;
    use multiregion::api::MultiRegionApp;
    let hub = hub_client(args.kubeconfig.as_ref(), args.context.as_ref()).await?;
    let api: Api<MultiRegionApp> = match &args.namespace {
        Some(ns) => Api::namespaced(hub, ns),
        None => Api::all(hub),
    };
    let apps: Vec<MultiRegionApp> = match &args.name {
        Some(name) => {
            if args.namespace.is_none() {
                anyhow::bail!("name the namespace of {name} with -n");
            }
            vec![api.get(name).await?]
        }
        None => api.list(&Default::default()).await?.items,
    };
    match args.output {
        Output::Table => {
            use std::io::IsTerminal;
            let style = multiregion::cli::Style {
                colour: std::io::stdout().is_terminal(),
            };
            if apps.is_empty() {
                println!("no MultiRegionApps found");
            }
            print!("{}", multiregion::cli::status_table(&apps, style));
        }
        Output::Json => println!("{}", serde_json::to_string_pretty(&apps)?),
        Output::Yaml => print!("{}", serde_saphyr::to_string(&apps)?),
    }
    Ok(())
}

fn plan(args: PlanArgs) -> anyhow::Result<()> {
    use multiregion::api::MultiRegionApp;
    let text = if args.file.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin())?
    } else {
        std::fs::read_to_string(&args.file)
            .with_context(|| format!("reading {}", args.file.display()))?
    };
    let app: MultiRegionApp = serde_saphyr::from_str(&text)
        .with_context(|| format!("{} is not a MultiRegionApp", args.file.display()))?;
    if !app.spec.regions.iter().any(|r| r.name == args.fail) {
        anyhow::bail!("--fail {}: not one of spec.regions", args.fail);
    }
    if let Some(a) = args.region_availability
        && !(0.0..=1.0).contains(&a)
    {
        anyhow::bail!("--region-availability must be between 0 and 1");
    }
    let now = jiff::Timestamp::now();
    let whatif =
        multiregion::plan::whatif::simulate(&app.spec, &args.fail, now, args.region_availability);
    use std::io::IsTerminal;
    let style = multiregion::cli::Style {
        colour: std::io::stdout().is_terminal(),
    };
    let name = app.metadata.name.clone().unwrap_or_else(|| "app".into());
    print!(
        "{}",
        multiregion::cli::plan_report(&name, &args.fail, &whatif, style)
    );
    Ok(())
}
