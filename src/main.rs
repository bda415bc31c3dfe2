//! The `multiregion` command: the operator and its tools.

use clap::Parser;

fn main() {
    let _ = Cli::parse();
}

#[derive(Parser)]
#[command(
    name = "multiregion",
    version,
    about = "Run one application across several Kubernetes clusters"
)]
struct Cli {}
