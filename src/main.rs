//! The `multiregion` command: the operator and its tools. Installed as
//! `kubectl-multiregion` it also works as `kubectl multiregion ...`.
#![forbid(unsafe_code)]

use multiregion::cli::{self, Command, LogFormat, RunArgs};

/// jemalloc instead of glibc's malloc (measured in docs/benchmarks.md);
/// built without the `jemalloc` feature, the system's.
#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

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

#[tokio::main]
async fn main() {
    if cli::invoked_for_completion() {
        let words = std::env::args().skip(1).collect();
        let _ = cli::complete(words).await;
        return;
    }
    let cli = cli::parse();
    let result = match cli.command {
        Command::Run(args) => run(args).await,
        command => cli::dispatch(command).await,
    };
    if let Err(err) = result {
        eprintln!("{}: {}", cli::display_name(), cli::explain(&err));
        std::process::exit(1);
    }
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    init_logging(args.log_format);
    let hub = cli::hub_clients(args.kubeconfig.as_ref(), args.context.as_ref()).await?;
    let identity = args.identity.clone().unwrap_or_else(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "multiregion".into())
    });
    let region = match args.region {
        Some(region) => Some(region),
        None => cli::node_region(&hub.requests).await,
    };
    multiregion::controller::run(
        hub,
        multiregion::controller::Options {
            region,
            namespace: args.namespace,
            metrics_addr: args.metrics_addr,
            metrics_auth: args.metrics_auth == cli::MetricsAuth::Kubernetes,
            identity,
            leader_election: args.leader_election,
            lease_seconds: args.lease_seconds,
            hub_name: args.hub_name,
            propagate_secrets: args.propagate_secrets,
            renew_tokens_within: args.renew_member_tokens_within,
            scraper: args.scraper_service_account.map(|account| {
                multiregion::regions::tokens::ScraperToken {
                    account,
                    ttl: args.scraper_token_ttl,
                }
            }),
        },
    )
    .await
}
