//! The README's quick start runs as written: its step-by-step block is
//! taken from README.md and run by bash against local regions, and the
//! YAML of "The API in five minutes" is accepted by the API server.
//!
//! Two things differ from a reader's shell, both about where the binaries
//! are: `cargo test` has built them already (so the block's `cargo build`
//! line is skipped), and `./target/debug/` is wherever Cargo put them (in
//! CI, `CARGO_TARGET_DIR`). The block runs in a directory of its own, with
//! `crds/` and `examples/` linked from the checkout.

mod common;

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const README: &str = include_str!("../README.md");

/// The first fenced block of `lang` after the line `after`.
fn block_after(after: &str, lang: &str) -> String {
    let start = README
        .find(after)
        .unwrap_or_else(|| panic!("README has {after:?}"));
    let rest = &README[start..];
    let fence = format!("```{lang}\n");
    let open = rest.find(&fence).expect("a fenced block follows") + fence.len();
    let close = rest[open..].find("```").expect("the block ends") + open;
    rest[open..close].to_string()
}

/// The quick start as bash, with the binaries where Cargo built them.
fn quick_start_script(bin_dir: &Path) -> String {
    let block = block_after("Or step by step, by hand, on local clusters:", "sh");
    assert!(
        block.contains("localregions up"),
        "the block starts clusters"
    );
    let body: Vec<String> = block
        .lines()
        .filter(|line| !line.starts_with("cargo build"))
        .map(|line| line.replace("./target/debug/", &format!("{}/", bin_dir.display())))
        .collect();
    format!("set -euo pipefail\nset -x\n{}\n", body.join("\n"))
}

/// Where the block runs: its own directory, the checkout's CRDs and examples.
fn workdir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("readme-quick-start");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for linked in ["crds", "examples"] {
        let from = Path::new(env!("CARGO_MANIFEST_DIR")).join(linked);
        std::os::unix::fs::symlink(from, dir.join(linked)).unwrap();
    }
    dir
}

/// Stops whatever the block left running when it failed half-way.
fn clean_up(dir: &Path, localregions: &Path, group: u32) {
    let _ = Command::new("kill")
        .args(["-TERM", "--", &format!("-{group}")])
        .stderr(Stdio::null())
        .status();
    if dir.join(".local/regions/state.json").exists() {
        let _ = Command::new(localregions)
            .arg("down")
            .current_dir(dir)
            .status();
    }
}

#[test]
fn the_quick_start_runs_as_written() {
    let localregions = common::localregions_bin();
    let bin_dir = localregions.parent().unwrap().to_path_buf();
    assert!(
        bin_dir.join("multiregion").exists(),
        "cargo built multiregion"
    );
    let dir = workdir();
    let script = quick_start_script(&bin_dir);
    let mut run = Command::new("bash");
    run.arg("-c")
        .arg(&script)
        .current_dir(&dir)
        .process_group(0)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = run.spawn().expect("bash runs");
    let group = child.id();
    let out = child.wait_with_output().expect("the quick start ends");
    clean_up(&dir, &localregions, group);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the quick start failed:\n{script}\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
    );
    assert!(
        stdout.contains("us-east=100 eu-west=0") && stdout.contains("us-east=0 eu-west=100"),
        "the weights moved from us-east to eu-west:\n{stdout}"
    );
    assert!(
        !dir.join(".local/regions/state.json").exists(),
        "its last line stopped the clusters"
    );
}

/// The README's tour example is a valid MultiRegionApp: a server-side dry
/// run against a real API server with the CRDs accepts it.
#[tokio::test]
async fn the_api_tour_example_is_accepted_by_the_api_server() {
    let yaml = block_after("## The API in five minutes", "yaml");
    let regions = common::clusters("readme-tour", &["hub"]).await;
    common::spread::install_crds(&regions);
    let file = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("readme-tour.yaml");
    std::fs::write(&file, &yaml).unwrap();
    let kubectl = |args: &[&str]| {
        Command::new(regions.bin_dir().join("kubectl"))
            .arg("--kubeconfig")
            .arg(regions.kubeconfig("hub").unwrap())
            .args(args)
            .output()
            .unwrap()
    };
    assert!(kubectl(&["create", "namespace", "shop"]).status.success());
    let out = kubectl(&["apply", "--dry-run=server", "-f", file.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "the API server refused the README's example:\n{yaml}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
