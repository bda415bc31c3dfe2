//! Helpers shared by the end-to-end tests: local clusters in a per-test
//! directory, and waiting on a condition with a deadline.
#![allow(dead_code)]

use std::path::PathBuf;

use localregions::Guard;
pub use localregions::wait_for;

/// Starts local clusters for one test in `target/tmp/<test>`; they are
/// stopped when the guard drops, and by a watchdog if the test process dies.
pub async fn clusters(test: &str, names: &[&str]) -> Guard {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(test);
    localregions::start_for_test(dir, names).await
}

pub mod operator;
pub mod spread;

/// The `localregions` binary (another package of the workspace), built if
/// needed into the target directory this test was built in.
pub fn localregions_bin() -> PathBuf {
    let status = std::process::Command::new(env!("CARGO"))
        .args([
            "build",
            "--quiet",
            "-p",
            "localregions",
            "--bin",
            "localregions",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .expect("cargo runs");
    assert!(status.success(), "cargo build -p localregions failed");
    // The test runs from <target>/<profile>/deps/.
    let exe = std::env::current_exe().expect("test executable");
    exe.parent()
        .and_then(|deps| deps.parent())
        .map(|profile| profile.join("localregions"))
        .expect("target directory")
}
