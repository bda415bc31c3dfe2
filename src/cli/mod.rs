//! The `multiregion` command: the operator (`run`) and the tools people use
//! around it. Installed as `kubectl-multiregion` it is the kubectl plugin
//! `kubectl multiregion ...`, and follows kubectl's conventions: `-n` defaults
//! to the current context's namespace, `-A` means all namespaces, `-o
//! json|yaml` prints a List, `NO_COLOR` turns colours off.

mod args;
mod complete;
mod day2;
mod grants;
mod hub;
mod join;
mod jsonpath;
mod member;
pub mod render;
mod tenancy;
pub mod validate;

use std::io::IsTerminal;

use anyhow::Result;
use clap::{CommandFactory, FromArgMatches};

pub use args::{Cli, Command, LogFormat, MetricsAuth, RunArgs};
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

/// Run as `kubectl_complete-multiregion` (a symlink to this binary): kubectl
/// asks for the completions of `kubectl multiregion ...`.
pub fn invoked_for_completion() -> bool {
    let invoked = std::env::args().next().unwrap_or_default();
    std::path::Path::new(&invoked)
        .file_name()
        .is_some_and(|f| f == "kubectl_complete-multiregion")
}

/// Prints the completions kubectl asked for (see `complete`).
pub async fn complete(words: Vec<String>) -> Result<()> {
    complete::run(words).await
}

/// Parses the command line, naming the command as it was invoked.
pub fn parse() -> Cli {
    let name = display_name();
    let args = hoist_connection_flags(std::env::args_os().collect());
    let matches = Cli::command().bin_name(name).get_matches_from(args);
    Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
}

/// The verbs whose connection flags name the hub. (`join` and `unjoin`
/// name the member with `--kubeconfig`, `run` the operator's namespace with
/// `--namespace`: nothing is moved for them.)
const HUB_VERBS: [&str; 8] = [
    "status", "failover", "release", "drill", "drain", "undrain", "cordon", "uncordon",
];

/// Moves the connection flags given before the verb to after it, where each
/// verb declares those it takes: `multiregion -n shop status` is
/// `multiregion status -n shop`. A verb that does not take one refuses it
/// as usual. Anything else before the verb (`--help`) is left as it is.
pub fn hoist_connection_flags(args: Vec<std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    let text: Vec<Option<&str>> = args.iter().map(|a| a.to_str()).collect();
    let mut hoisted = Vec::new();
    let flags = args::connection_flags();
    let mut i = 1;
    while let Some(Some(arg)) = text.get(i) {
        let with_value = flags.iter().any(|f| f == arg);
        let joined = flags.iter().any(|f| arg.starts_with(&format!("{f}=")))
            || (arg.starts_with("-n") && !arg.starts_with("--") && arg.len() > 2);
        if with_value && i + 1 < args.len() {
            hoisted.extend([args[i].clone(), args[i + 1].clone()]);
            i += 2;
        } else if joined {
            hoisted.push(args[i].clone());
            i += 1;
        } else {
            break;
        }
    }
    let verb = text.get(i).copied().flatten();
    if hoisted.is_empty() || !verb.is_some_and(|v| HUB_VERBS.contains(&v)) {
        return args;
    }
    let mut out = vec![args[0].clone(), args[i].clone()];
    out.extend(hoisted);
    out.extend(args[i + 1..].iter().cloned());
    out
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

#[cfg(test)]
mod tests {
    use super::hoist_connection_flags;

    fn hoisted(line: &str) -> String {
        let args = line.split(' ').map(Into::into).collect();
        let out = hoist_connection_flags(args);
        out.iter()
            .map(|a| a.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn connection_flags_before_the_verb_go_after_it() {
        assert_eq!(hoisted("m -n shop status web"), "m status -n shop web");
        assert_eq!(
            hoisted("m --context hub -nshop --request-timeout=5s drain web us-east"),
            "m drain --context hub -nshop --request-timeout=5s web us-east"
        );
        assert_eq!(
            hoisted("m --kubeconfig=/k status -A"),
            "m status --kubeconfig=/k -A"
        );
    }

    #[test]
    fn anything_else_is_left_as_it_was() {
        for line in [
            "m status -n shop",
            "m --help",
            "m -n shop",
            "m -n shop --help",
            "m -A status",
            "m --namespace",
            "m --context hub unjoin eu-west",
            "m --kubeconfig hub.yaml join us-east",
        ] {
            assert_eq!(hoisted(line), line);
        }
    }
}
