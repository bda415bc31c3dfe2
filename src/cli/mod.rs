//! The `multiregion` command: the operator (`run`) and the tools people use
//! around it. Installed as `kubectl-multiregion` it is the kubectl plugin
//! `kubectl multiregion ...`, and follows kubectl's conventions: `-n` defaults
//! to the current context's namespace, `-A` means all namespaces, `-o
//! json|yaml` prints a List, `NO_COLOR` turns colours off.

mod args;
mod day2;
mod grants;
mod hub;
mod join;
mod member;
pub mod render;
pub mod validate;

use std::io::IsTerminal;

use anyhow::Result;
use clap::{CommandFactory, FromArgMatches};

pub use args::{Cli, Command, LogFormat, RunArgs};
pub use hub::client as hub_client;
pub use hub::clients as hub_clients;
pub use hub::explain;
pub use hub::node_region;
pub use render::{Style, plan_report, status_table};

/// The name people type: `kubectl multiregion` when run as the plugin.
pub fn display_name() -> String {
    let invoked = std::env::args().next().unwrap_or_default();
    let file = std::path::Path::new(&invoked)
        .file_name()
        .map(|f| f.to_string_lossy().to_string())
        .unwrap_or_default();
    match file.strip_prefix("kubectl-") {
        Some(plugin) => format!("kubectl {plugin}"),
        None => "multiregion".to_string(),
    }
}

/// Parses the command line, naming the command as it was invoked.
pub fn parse() -> Cli {
    let name = display_name();
    let matches = Cli::command().bin_name(name).get_matches();
    Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
}

/// Colour on a terminal, unless `NO_COLOR` is set.
pub fn style() -> Style {
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    Style {
        colour: std::io::stdout().is_terminal() && !no_color,
    }
}

/// Runs every command but `run` (the operator, started by `main`).
pub async fn dispatch(command: Command) -> Result<()> {
    match command {
        Command::Run(_) => unreachable!("the operator is started by main"),
        Command::Crd => {
            print!("{}", crate::api::crds_yaml()?);
            Ok(())
        }
        Command::Status(args) => day2::status(args).await,
        Command::Plan(args) => day2::plan(args),
        Command::Failover(args) => day2::failover(args).await,
        Command::Release(args) => day2::release(args).await,
        Command::Drill(args) => day2::drill(args).await,
        Command::Drain(args) => day2::drain(args, true).await,
        Command::Undrain(args) => day2::drain(args, false).await,
        Command::Cordon(args) => day2::cordon(args, true).await,
        Command::Uncordon(args) => day2::cordon(args, false).await,
        Command::Join(args) => join::join(args).await,
        Command::Unjoin(args) => join::unjoin(args).await,
        Command::MemberRbac {
            allow_secrets,
            allow_resource,
        } => {
            let resources = allow_resource
                .iter()
                .map(|r| grants::offline(r))
                .collect::<Result<Vec<_>>>()?;
            let grants = member::Grants {
                secrets: allow_secrets,
                resources,
            };
            print!("{}", member::rbac_yaml(&grants)?);
            Ok(())
        }
        Command::Completion { shell } => {
            let name = display_name().replace(' ', "-");
            clap_complete::generate(shell, &mut Cli::command(), name, &mut std::io::stdout());
            Ok(())
        }
    }
}
