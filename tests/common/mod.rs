//! Helpers shared by the end-to-end tests: local clusters in a per-test
//! directory, and waiting on a condition with a deadline.
#![allow(dead_code)]

use std::future::Future;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use multiregion::localregions::{Guard, LocalRegions, UpOptions};

/// Starts local clusters for one test in `target/tmp/<test>`; they are
/// stopped when the guard drops, and by a watchdog if the test process dies.
pub async fn clusters(test: &str, names: &[&str]) -> Guard {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(test);
    let regions = LocalRegions::up(UpOptions {
        dir,
        names: names.iter().map(|n| n.to_string()).collect(),
        stop_with_this_process: true,
    })
    .await
    .expect("local clusters start");
    Guard(regions)
}

/// Polls `check` every 100 ms until it yields `Some`, or panics after `timeout`
/// naming what it waited for.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
pub mod operator;
