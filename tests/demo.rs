//! `make demo` runs to the failover and back unattended, and leaves nothing
//! running.

mod common;

use std::process::Command;
use std::sync::Mutex;

/// One demo at a time: each starts a hub and its regions, and two at once
/// on a small machine starve each other (the second one's clusters came up
/// too late).
static ONE_DEMO: Mutex<()> = Mutex::new(());

#[test]
fn the_demo_runs_unattended_to_the_failover_and_back() {
    let _one = ONE_DEMO.lock().unwrap_or_else(|e| e.into_inner());
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("demo");
    let _ = std::fs::remove_dir_all(&dir);
    let out = Command::new("bash")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/demo.sh"))
        .arg("--non-interactive")
        .env("DEMO_DIR", &dir)
        .env("MULTIREGION_BIN", env!("CARGO_BIN_EXE_multiregion"))
        .env("LOCALREGIONS_BIN", common::localregions_bin())
        .output()
        .expect("the demo runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "demo failed:\n{stdout}\n{stderr}");
    for step in [
        "==> installing the chart with Helm",
        "==> starting the gateway (Traefik) and DNS",
        "==> us-east fails",
        "requests through the gateway, second by second",
        "us-east=0 eu-west=100",
        "us-east Healthy again, as Standby",
        "==> demo finished",
        "==> stopping everything",
    ] {
        assert!(stdout.contains(step), "missing {step:?} in:\n{stdout}");
    }
    // Real answers switch from us-east to eu-west during the failover.
    let per_second: Vec<&str> = stdout
        .lines()
        .filter(|l| l.trim_start().starts_with("t="))
        .collect();
    let first_us = per_second.iter().position(|l| l.contains("us-east="));
    let last_eu = per_second.iter().rposition(|l| l.contains("eu-west="));
    assert!(
        matches!((first_us, last_eu), (Some(us), Some(eu)) if us < eu),
        "answers from us-east, then from eu-west: {per_second:?}"
    );
    assert!(!dir.join("state.json").exists(), "localregions down ran");
    let pids = std::fs::read_to_string(dir.join("pids")).unwrap_or_default();
    assert!(pids.trim().is_empty(), "nothing left to stop: {pids}");
}

/// `make demo | tee log`, then Ctrl-C: the pipe is gone before the cleanup
/// writes its first line, and the cleanup must still stop everything.
#[test]
fn the_demo_cleans_up_after_its_output_pipe_closes() {
    use std::io::{BufRead, BufReader};
    let _one = ONE_DEMO.lock().unwrap_or_else(|e| e.into_inner());
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("demo-pipe");
    let _ = std::fs::remove_dir_all(&dir);
    // Its errors, for a failure's message (the pipe test reads stdout only).
    let errors = dir.with_extension("stderr");
    let stderr = std::fs::File::create(&errors).unwrap();
    let mut demo = Command::new("bash")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/demo.sh"))
        .arg("--non-interactive")
        .env("DEMO_DIR", &dir)
        .env("MULTIREGION_BIN", env!("CARGO_BIN_EXE_multiregion"))
        .env("LOCALREGIONS_BIN", common::localregions_bin())
        .stdout(std::process::Stdio::piped())
        .stderr(stderr)
        .spawn()
        .expect("the demo runs");
    let mut lines = BufReader::new(demo.stdout.take().unwrap()).lines();
    // Read until the clusters run, then close the pipe (tee died).
    let started = lines
        .by_ref()
        .map_while(Result::ok)
        .any(|l| l.contains("==> installing the chart with Helm"));
    assert!(
        started,
        "the demo never got to the chart:\n{}",
        std::fs::read_to_string(&errors).unwrap_or_default()
    );
    drop(lines);
    assert!(dir.join("state.json").exists(), "clusters are running");
    let interrupt = Command::new("kill")
        .args(["-INT", &demo.id().to_string()])
        .status()
        .unwrap();
    assert!(interrupt.success());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
    while demo.try_wait().unwrap().is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "the demo did not end after Ctrl-C"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert!(
        !dir.join("state.json").exists(),
        "localregions down ran though the pipe was closed"
    );
    let pids = std::fs::read_to_string(dir.join("pids")).unwrap_or_default();
    assert!(pids.trim().is_empty(), "nothing left to stop: {pids}");
}
