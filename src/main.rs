//! The `multiregion` command: the operator and its tools. Installed as
//! `kubectl-multiregion` it also works as `kubectl multiregion ...`.
#![forbid(unsafe_code)]

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "multiregion",
    version,
    about = "Run one application across several Kubernetes clusters"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the CustomResourceDefinitions (Region, MultiRegionApp) as YAML.
    Crd,
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Crd => multiregion::api::crds_yaml()
            .map(|yaml| print!("{yaml}"))
            .map_err(anyhow::Error::from),
    };
    if let Err(err) = result {
        eprintln!("multiregion: {err:#}");
        std::process::exit(1);
    }
}
