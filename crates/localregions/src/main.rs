//! `localregions`: start and stop real Kubernetes control planes as processes
//! on loopback, one per region (see docs/design.md, "Local regions").

use std::time::{Duration, Instant};

use anyhow::Result;
use clap::Parser;
use localregions::cli::{Cli, Command};
use localregions::load::{Load, Route, Sample};
use localregions::{LocalRegions, UpOptions};

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
