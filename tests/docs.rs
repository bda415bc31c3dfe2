//! What the docs tell a user to type exists: every `multiregion` (or
//! `kubectl multiregion`) and `localregions` command in a shell block of the
//! README and `docs/` parses as the binaries would read it, and every verb
//! and `--flag` the prose and the synopses name is one the verb takes. (The
//! quick start itself runs in `readme.rs`.)

use clap::{CommandFactory, Parser};

/// The README and every page of `docs/`, with their paths.
fn pages() -> Vec<(String, String)> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut paths = vec![root.join("README.md")];
    let mut docs: Vec<_> = std::fs::read_dir(root.join("docs"))
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    docs.sort();
    paths.extend(docs);
    paths
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            (p.strip_prefix(root).unwrap().display().to_string(), text)
        })
        .collect()
}

/// The fenced blocks of a page, with their language (empty when none).
fn blocks(text: &str) -> Vec<(&str, &str)> {
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find("```") {
        let after = &rest[open + 3..];
        let Some(eol) = after.find('\n') else { break };
        let lang = after[..eol].trim();
        let body = &after[eol + 1..];
        let Some(close) = body.find("```") else { break };
        found.push((lang, &body[..close]));
        rest = &body[close + 3..];
    }
    found
}

/// Words as a shell splits them, quotes removed (variables stay as
/// written: they are values to the parser).
fn words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quote = None;
    let mut started = false;
    for c in line.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => word.push(c),
            (None, '"' | '\'') => {
                quote = Some(c);
                started = true;
            }
            (None, c) if c.is_whitespace() => {
                if started || !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
                started = false;
            }
            (None, c) => word.push(c),
        }
    }
    if started || !word.is_empty() {
        words.push(word);
    }
    words
}

/// Which binary a command line runs, and its arguments after the binary.
#[derive(Debug, PartialEq)]
enum Invocation {
    Multiregion(Vec<String>),
    Localregions(Vec<String>),
}

/// The command a line (or an inline code span) runs, if it is one of
/// ours: its first command only, up to a pipe, `&&`, `;`, `&`, a
/// redirection or a comment.
fn invocation(line: &str) -> Option<Invocation> {
    let line = line.trim().trim_start_matches("$ ");
    let end = line.find(['|', ';', '&', '#', '>']).unwrap_or(line.len());
    let mut words = words(&line[..end]);
    // Leading environment assignments (`KUBECONFIG=... multiregion ...`).
    while words
        .first()
        .is_some_and(|w| w.contains('=') && !w.starts_with('-'))
    {
        words.remove(0);
    }
    let first = words.first()?.clone();
    // The binary by its name, or where Cargo builds it (not a source path
    // such as `crates/localregions`).
    let (dir, bin) = first.rsplit_once('/').unwrap_or(("", &first));
    if !(dir.is_empty() || dir.contains("target/")) {
        return None;
    }
    let cargo_run = |package: &str| {
        let dashes = words.iter().position(|w| w == "--")?;
        let named = words
            .iter()
            .position(|w| w == "-p")
            .map(|i| words[i + 1].as_str());
        (named == Some(package) || (package == "multiregion" && named.is_none()))
            .then(|| words[dashes + 1..].to_vec())
    };
    match bin {
        "kubectl" if words.get(1).is_some_and(|w| w == "multiregion") => {
            Some(Invocation::Multiregion(words[2..].to_vec()))
        }
        "multiregion" | "kubectl-multiregion" => Some(Invocation::Multiregion(words[1..].to_vec())),
        "localregions" => Some(Invocation::Localregions(words[1..].to_vec())),
        "cargo" if words.get(1).is_some_and(|w| w == "run") => cargo_run("localregions")
            .map(Invocation::Localregions)
            .or_else(|| cargo_run("multiregion").map(Invocation::Multiregion)),
        _ => None,
    }
}

/// A synopsis rather than a command: `[optional]`, `a / b`, `...`,
/// `(comment)`.
fn synopsis(line: &str) -> bool {
    let code = line.split('#').next().unwrap_or_default();
    ["[", " / ", "...", "("].iter().any(|s| code.contains(s))
}

/// Parses as the binary would; the error as clap gives it.
fn parses(invocation: &Invocation) -> Result<(), String> {
    match invocation {
        Invocation::Multiregion(args) => {
            let argv: Vec<std::ffi::OsString> = std::iter::once("kubectl-multiregion".to_string())
                .chain(args.iter().cloned())
                .map(Into::into)
                .collect();
            let argv = multiregion::cli::hoist_connection_flags(argv);
            multiregion::cli::Cli::try_parse_from(argv)
                .map(drop)
                .map_err(|e| e.to_string())
        }
        Invocation::Localregions(args) => {
            let argv = std::iter::once("localregions".to_string()).chain(args.iter().cloned());
            localregions::cli::Cli::try_parse_from(argv)
                .map(drop)
                .map_err(|e| e.to_string())
        }
    }
}

/// The verb exists and takes every `--flag` named after it (for prose and
/// synopses, which leave values out).
fn names_real_flags(invocation: &Invocation) -> Result<(), String> {
    let (mut command, args) = match invocation {
        Invocation::Multiregion(args) => {
            // `-n NS` may come before the verb, as kubectl has it.
            let argv = std::iter::once("multiregion".to_string())
                .chain(args.iter().cloned())
                .map(Into::into)
                .collect();
            let hoisted = multiregion::cli::hoist_connection_flags(argv)
                .into_iter()
                .skip(1)
                .map(|a| a.to_string_lossy().into_owned())
                .collect();
            (multiregion::cli::Cli::command(), hoisted)
        }
        Invocation::Localregions(args) => (localregions::cli::Cli::command(), args.clone()),
    };
    let globals: Vec<String> = command
        .get_arguments()
        .filter_map(|a| a.get_long().map(str::to_string))
        .collect();
    let Some(verb) = args.iter().find(|a| !a.starts_with('-')) else {
        return Ok(());
    };
    // A diagram's label (`multiregion (src/)`), not a command.
    if !verb.chars().all(|c| c.is_ascii_lowercase() || c == '-') {
        return Ok(());
    }
    let verb_args = command
        .find_subcommand_mut(verb)
        .ok_or_else(|| format!("no verb {verb:?}"))?
        .clone();
    let longs: Vec<String> = verb_args
        .get_arguments()
        .filter_map(|a| a.get_long().map(str::to_string))
        .chain(globals)
        .chain(["help".to_string()])
        .collect();
    for flag in args.iter().filter_map(|a| a.strip_prefix("--")) {
        let name = flag.split('=').next().unwrap_or_default();
        let name = name.trim_end_matches(|c: char| !c.is_ascii_alphanumeric() && c != '-');
        if !name.is_empty() && !longs.iter().any(|l| l == name) {
            return Err(format!("{verb} takes no --{name}"));
        }
    }
    Ok(())
}

/// Inline code spans of prose (outside fenced blocks) that name one of our
/// commands.
fn inline_commands(text: &str) -> Vec<String> {
    let mut prose = String::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
        } else if !fenced {
            prose.push_str(line);
            prose.push('\n');
        }
    }
    prose
        .split('`')
        .skip(1)
        .step_by(2)
        .filter(|span| invocation(span).is_some())
        .map(str::to_string)
        .collect()
}

#[test]
fn every_command_in_the_docs_shell_blocks_parses() {
    let mut checked = 0;
    let mut wrong = Vec::new();
    for (page, text) in pages() {
        for (lang, body) in blocks(&text) {
            if !["sh", "bash", "console", "shell"].contains(&lang) {
                continue;
            }
            for line in body.lines().filter(|l| !synopsis(l)) {
                let Some(invocation) = invocation(line) else {
                    continue;
                };
                checked += 1;
                if let Err(why) = parses(&invocation) {
                    wrong.push(format!("{page}: {}\n{why}", line.trim()));
                }
            }
        }
    }
    assert!(
        checked >= 20,
        "only {checked} commands found: is the extraction broken?"
    );
    assert!(
        wrong.is_empty(),
        "commands the binaries refuse:\n{}",
        wrong.join("\n\n")
    );
}

#[test]
fn every_verb_and_flag_the_docs_name_exists() {
    let mut checked = 0;
    let mut wrong = Vec::new();
    for (page, text) in pages() {
        let synopses = blocks(&text)
            .into_iter()
            .filter(|(lang, _)| lang.is_empty())
            .flat_map(|(_, body)| body.lines().map(str::to_string).collect::<Vec<_>>());
        for line in inline_commands(&text).into_iter().chain(synopses) {
            let Some(invocation) = invocation(&line) else {
                continue;
            };
            checked += 1;
            if let Err(why) = names_real_flags(&invocation) {
                wrong.push(format!("{page}: `{}`: {why}", line.trim()));
            }
        }
    }
    assert!(
        checked >= 30,
        "only {checked} mentions found: is the extraction broken?"
    );
    assert!(
        wrong.is_empty(),
        "verbs or flags that do not exist:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn the_extraction_reads_commands_as_a_shell_would() {
    use Invocation::*;
    let cases = [
        (
            "kubectl multiregion status -A   # every app",
            Some(Multiregion(vec!["status".into(), "-A".into()])),
        ),
        (
            "cargo run -p localregions -- load --url \"$ENDPOINT\" --seconds 10",
            Some(Localregions(
                ["load", "--url", "$ENDPOINT", "--seconds", "10"]
                    .map(String::from)
                    .to_vec(),
            )),
        ),
        (
            "./target/debug/multiregion run --kubeconfig $K &",
            Some(Multiregion(
                ["run", "--kubeconfig", "$K"].map(String::from).to_vec(),
            )),
        ),
        ("kubectl get pods", None),
    ];
    for (line, want) in cases {
        assert_eq!(invocation(line), want, "{line}");
    }
    assert!(parses(&invocation("kubectl multiregion status --no-such-flag").unwrap()).is_err());
    assert!(names_real_flags(&invocation("multiregion join --no-such-flag").unwrap()).is_err());
    assert!(names_real_flags(&invocation("multiregion frobnicate").unwrap()).is_err());
    assert!(synopsis("multiregion status [NAME] [-n NS]"));
}
