//! Completion for kubectl: kubectl (1.26 and later) runs
//! `kubectl_complete-multiregion ARGS... PARTIAL` to complete `kubectl
//! multiregion ARGS... PARTIAL<TAB>`. The binary, installed under that name
//! too (a symlink), answers as cobra's `__complete` does: one candidate per
//! line, then `:DIRECTIVE`. Verbs and flags come from the command line's
//! own definition; apps and regions from the hub.

use clap::CommandFactory;

use super::args::{Cli, value_flags};

/// cobra's directives: 4 = no file completion, 0 = the shell's default
/// (files).
const NO_FILES: u8 = 4;
const FILES: u8 = 0;

/// What the word being completed is.
#[derive(Debug, PartialEq, Eq)]
pub enum Wanted {
    Verbs,
    Flags(String),
    Apps {
        namespace: Option<String>,
    },
    Regions,
    RegionsOfApp {
        namespace: Option<String>,
        app: String,
    },
    Words(Vec<&'static str>),
    Files,
    Nothing,
}

/// The words typed after `multiregion` (the last one being completed):
/// what to offer, from the words alone.
pub fn wanted(words: &[String]) -> Wanted {
    let Some((current, typed)) = words.split_last() else {
        return Wanted::Verbs;
    };
    let namespace = flag_value(typed, &["-n", "--namespace"]);
    let valued = value_flags(&Cli::command());
    if let Some(flag) = typed.last().filter(|w| valued.contains(w)) {
        return value_of(flag, typed, namespace);
    }
    let positionals = positionals(typed);
    let Some((verb, args)) = positionals.split_first() else {
        return match current.starts_with('-') {
            true => Wanted::Nothing,
            false => Wanted::Verbs,
        };
    };
    if current.starts_with('-') {
        return Wanted::Flags(verb.clone());
    }
    match (verb.as_str(), args.len()) {
        ("status" | "failover" | "release" | "drill" | "drain" | "undrain", 0) => {
            Wanted::Apps { namespace }
        }
        ("drain" | "undrain", 1) => Wanted::RegionsOfApp {
            namespace,
            app: args[0].clone(),
        },
        ("cordon" | "uncordon" | "unjoin", 0) => Wanted::Regions,
        ("completion", 0) => Wanted::Words(vec!["bash", "zsh", "fish", "elvish", "powershell"]),
        _ => Wanted::Nothing,
    }
}

/// What completes the value of `flag`.
fn value_of(flag: &str, typed: &[String], namespace: Option<String>) -> Wanted {
    match flag {
        "-f" | "--file" => Wanted::Files,
        kubeconfig if kubeconfig.ends_with("kubeconfig") => Wanted::Files,
        "-o" | "--output" => {
            Wanted::Words(vec!["table", "wide", "name", "json", "yaml", "jsonpath="])
        }
        "--to" | "--fail" => match positionals(typed).get(1) {
            Some(app) => Wanted::RegionsOfApp {
                namespace,
                app: app.clone(),
            },
            None => Wanted::Regions,
        },
        _ => Wanted::Nothing,
    }
}

/// The words that are not flags or flag values.
fn positionals(typed: &[String]) -> Vec<String> {
    let valued = value_flags(&Cli::command());
    let mut out = Vec::new();
    let mut skip = false;
    for word in typed {
        if std::mem::take(&mut skip) {
            continue;
        }
        if valued.contains(word) {
            skip = true;
        } else if !word.starts_with('-') {
            out.push(word.clone());
        }
    }
    out
}

/// The value given to one of `names` (`-n shop`, `--namespace=shop`,
/// `-nshop`), the last one winning.
fn flag_value(typed: &[String], names: &[&str]) -> Option<String> {
    let mut value = None;
    for (i, word) in typed.iter().enumerate() {
        for name in names {
            if word == name {
                value = typed.get(i + 1).cloned();
            } else if let Some(v) = word.strip_prefix(&format!("{name}=")) {
                value = Some(v.to_string());
            } else if *name == "-n"
                && let Some(v) = word
                    .strip_prefix("-n")
                    .filter(|v| !v.is_empty() && !v.starts_with('-'))
            {
                value = Some(v.to_string());
            }
        }
    }
    value
}

/// The verbs, or a verb's long flags, from the command line's definition.
fn definition(verb: Option<&str>) -> Vec<String> {
    let cli = Cli::command();
    match verb {
        None => cli
            .get_subcommands()
            .filter(|c| !c.is_hide_set())
            .map(|c| c.get_name().to_string())
            .collect(),
        Some(verb) => cli
            .find_subcommand(verb)
            .map(|c| {
                c.get_arguments()
                    .filter(|a| !a.is_hide_set())
                    .filter_map(|a| a.get_long().map(|l| format!("--{l}")))
                    .collect()
            })
            .unwrap_or_default(),
    }
}

/// Answers kubectl: the candidates for the last word, then the directive.
/// A hub that cannot be reached offers nothing (and never an error).
pub async fn run(words: Vec<String>) -> anyhow::Result<()> {
    let current = words.last().cloned().unwrap_or_default();
    let (candidates, directive) = match wanted(&words) {
        Wanted::Verbs => (definition(None), NO_FILES),
        Wanted::Flags(verb) => (definition(Some(&verb)), NO_FILES),
        Wanted::Words(words) => (words.iter().map(ToString::to_string).collect(), NO_FILES),
        Wanted::Files => (Vec::new(), FILES),
        Wanted::Nothing => (Vec::new(), NO_FILES),
        hub => (from_hub(&words, hub).await.unwrap_or_default(), NO_FILES),
    };
    for candidate in candidates.iter().filter(|c| c.starts_with(&current)) {
        println!("{candidate}");
    }
    println!(":{directive}");
    Ok(())
}

/// Apps or regions, read from the hub the words name (`--kubeconfig`,
/// `--context`), for at most two seconds.
async fn from_hub(words: &[String], wanted: Wanted) -> anyhow::Result<Vec<String>> {
    use crate::api::{MultiRegionApp, Region};
    use kube::api::{Api, ListParams};
    let kubeconfig = flag_value(words, &["--kubeconfig"]).map(std::path::PathBuf::from);
    let context = flag_value(words, &["--context"]);
    let mut config = super::hub::config(kubeconfig.as_deref(), context.as_ref()).await?;
    config.read_timeout = Some(std::time::Duration::from_secs(2));
    config.connect_timeout = Some(std::time::Duration::from_secs(2));
    let default_namespace = config.default_namespace.clone();
    let client = kube::Client::try_from(config)?;
    let apps = |namespace: Option<String>| {
        Api::<MultiRegionApp>::namespaced(
            client.clone(),
            &namespace.unwrap_or(default_namespace.clone()),
        )
    };
    Ok(match wanted {
        Wanted::Apps { namespace } => apps(namespace)
            .list_metadata(&ListParams::default())
            .await?
            .items
            .into_iter()
            .filter_map(|a| a.metadata.name)
            .collect(),
        Wanted::RegionsOfApp { namespace, app } => apps(namespace)
            .get(&app)
            .await?
            .spec
            .regions
            .into_iter()
            .map(|r| r.name)
            .collect(),
        _ => Api::<Region>::all(client)
            .list_metadata(&ListParams::default())
            .await?
            .items
            .into_iter()
            .filter_map(|r| r.metadata.name)
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wanted_for(line: &str) -> Wanted {
        let mut words: Vec<String> = line.split(' ').map(String::from).collect();
        if line.is_empty() {
            words = vec![String::new()];
        }
        wanted(&words)
    }

    #[test]
    fn verbs_then_apps_then_regions() {
        assert_eq!(wanted_for(""), Wanted::Verbs);
        assert_eq!(wanted_for("dr"), Wanted::Verbs);
        assert_eq!(wanted_for("status "), Wanted::Apps { namespace: None });
        assert_eq!(
            wanted_for("drain -n shop web "),
            Wanted::RegionsOfApp {
                namespace: Some("shop".into()),
                app: "web".into()
            }
        );
        assert_eq!(
            wanted_for("-n shop failover web --to "),
            Wanted::RegionsOfApp {
                namespace: Some("shop".into()),
                app: "web".into()
            }
        );
        assert_eq!(wanted_for("cordon us"), Wanted::Regions);
        assert_eq!(
            wanted_for("status web -o "),
            Wanted::Words(vec!["table", "wide", "name", "json", "yaml", "jsonpath="])
        );
        assert_eq!(wanted_for("plan -f "), Wanted::Files);
        assert_eq!(wanted_for("status --"), Wanted::Flags("status".into()));
        assert_eq!(wanted_for("release web "), Wanted::Nothing);
    }

    #[test]
    fn flags_and_verbs_come_from_the_definition() {
        let verbs = definition(None);
        assert!(verbs.contains(&"drain".to_string()) && verbs.contains(&"cordon".to_string()));
        let status = definition(Some("status"));
        assert!(status.contains(&"--watch".to_string()), "{status:?}");
        assert!(!status.contains(&"--dry-run".to_string()), "{status:?}");
    }

    #[test]
    fn a_flags_value_is_told_from_a_positional_by_the_definition() {
        let valued = value_flags(&Cli::command());
        for flag in ["-n", "--namespace", "--to", "--member-kubeconfig", "-o"] {
            assert!(valued.contains(&flag.to_string()), "{flag}: {valued:?}");
        }
        assert!(!valued.contains(&"--dry-run".to_string()), "joined only");
        assert!(!valued.contains(&"--watch".to_string()), "a switch");
        assert_eq!(wanted_for("join --member-kubeconfig "), Wanted::Files);
        assert_eq!(
            wanted_for("join --hub-kubeconfig hub.yaml eu-west --allow-namespace "),
            Wanted::Nothing
        );
    }
}
