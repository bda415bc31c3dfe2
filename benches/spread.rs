//! Failover when the leader's region dies, on a hub spread over three
//! regions (root: network namespaces), one operator replica in each.
//!
//! Each trial first makes the leader's region the active one (a planned
//! move with `activeOverride`, then the override cleared; failback waits an
//! hour), then fails that region whole (`localregions fail`: its member,
//! its part of the hub, its replica) and times how long until the hub shows
//! the traffic elsewhere; then it brings the region and its replica back.
//! Also measured: one replica's observer Lease writes per minute at steady
//! state.
//!
//! `BENCH_TRIALS` (default 10), `BENCH_LEASE` (seconds, default 6),
//! `BENCH_SELF_FENCE` (seconds, default 10), `BENCH_OUT` (a JSON file).
//! Run with `make bench-spread` (as root).
//!
//! `BENCH_APPS` (comma-separated app counts, default none) adds the spread
//! hub's scale series after the trials (`scale.rs`); `make
//! bench-spread-scale` runs it alone (`BENCH_TRIALS=0`).

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "spread/scale.rs"]
mod scale;

use std::time::{Duration, Instant};

use common::operator::{REGIONS, app_spec, apply_app, lease_holder, status, weights};
use common::spread::{every_replica_sees_every_region_serving, hub_in, is_root, observer_writes};
use common::wait_for;
use kube::Client;
use serde_json::json;

const NAMESPACE: &str = "bench-spread";

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn active(hub: &Client) -> Option<String> {
    status(hub, NAMESPACE, "shop").await?.active_region
}

/// Makes `region` the active one (planned), then clears the override.
async fn make_active(hub: &Client, region: &str, self_fence: u64) {
    let spec = |over: &str| {
        app_spec(
            "ActivePassive",
            &REGIONS,
            json!({"failover": {"activeOverride": over, "failbackHoldSeconds": 3600, "selfFenceSeconds": self_fence}}),
        )
    };
    apply_app(hub, NAMESPACE, "shop", spec(region)).await;
    wait_for(
        &format!("{region} to be active"),
        Duration::from_secs(120),
        || async { (active(hub).await.as_deref() == Some(region)).then_some(()) },
    )
    .await;
    apply_app(hub, NAMESPACE, "shop", spec("")).await;
}

fn commit() -> String {
    std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// The machine's cores and memory, as the other benches report them.
fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .next()?
                .split_whitespace()
                .nth(1)?
                .parse::<f64>()
                .ok()
        })
        .unwrap_or(0.0);
    format!("{cores} cores, {} GiB", (kib / 1024.0 / 1024.0).round())
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if !is_root() {
        eprintln!("bench spread: a spread hub needs root (network namespaces); run as root");
        std::process::exit(1);
    }
    let trials = env_u64("BENCH_TRIALS", 10);
    let lease = env_u64("BENCH_LEASE", 6);
    let self_fence = env_u64("BENCH_SELF_FENCE", 10);
    let (mut regions, hub) = common::spread::start("bench-spread").await;
    let lease_flag = lease.to_string();
    let mut replicas = scale::Replicas::start(&regions, &lease_flag);
    every_replica_sees_every_region_serving(&hub).await;
    let spec = app_spec(
        "ActivePassive",
        &REGIONS,
        json!({"failover": {"failbackHoldSeconds": 3600, "selfFenceSeconds": self_fence}}),
    );
    apply_app(&hub, NAMESPACE, "shop", spec).await;
    wait_for("the app to serve", Duration::from_secs(120), || async {
        active(&hub).await.map(|_| ())
    })
    .await;

    // Steady state: nothing changes for a minute.
    let before = observer_writes(&regions, "ap-south").await;
    tokio::time::sleep(Duration::from_secs(60)).await;
    let writes_per_minute = observer_writes(&regions, "ap-south").await - before;

    let mut seconds = Vec::new();
    for trial in 0..trials {
        let leader = wait_for("a leader", Duration::from_secs(60), || async {
            lease_holder(&hub)
                .await?
                .strip_prefix("replica-")
                .map(str::to_string)
        })
        .await;
        // The bench's view of the hub goes through a region that stays.
        let stays = REGIONS.iter().find(|r| **r != leader).unwrap();
        let view = hub_in(&regions, stays).await;
        make_active(&view, &leader, self_fence).await;
        regions.fail(&leader).await.unwrap();
        let failed = Instant::now();
        wait_for(
            "the traffic to leave the leader's region",
            Duration::from_secs(120),
            || async {
                let now = active(&view).await?;
                let weights = weights(&view, NAMESPACE, "shop").await?;
                (now != leader && weights.contains(&format!("{leader}=0"))).then_some(())
            },
        )
        .await;
        let took = failed.elapsed().as_secs_f64();
        let now_leading = lease_holder(&view).await.unwrap_or_default();
        eprintln!(
            "trial {trial}: {leader} (leader and active) failed; {now_leading} leads; traffic moved in {took:.1} s"
        );
        seconds.push(took);
        regions.recover(&leader).await.unwrap();
        let again = common::spread::start_replica_with(&regions, &leader, &lease_flag);
        if let Some(mut old) = replicas.running.insert(leader.clone(), again) {
            let _ = old.wait();
        }
        every_replica_sees_every_region_serving(&view).await;
    }
    let sizes: Vec<usize> = std::env::var("BENCH_APPS")
        .unwrap_or_default()
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let mut series = Vec::new();
    for apps in sizes {
        eprintln!("spread scale: {apps} apps x 3 regions, 3 replicas observing");
        let size = scale::run(&mut regions, &mut replicas, apps).await;
        eprintln!("{}", serde_json::to_string(&size).unwrap());
        series.push(size);
    }
    replicas.stop();
    let mut sorted = seconds.clone();
    sorted.sort_by(|a, b| a.total_cmp(b));
    let result = json!({
        "bench": "spread-failover",
        "what": "failover when the leader's region (holding the active app) dies whole, hub spread over 3 regions, 1 s x 3",
        "commit": commit(),
        "trials": seconds,
        "p50_seconds": percentile(&sorted, 50.0),
        "p99_seconds": percentile(&sorted, 99.0),
        "max_seconds": sorted.last(),
        "lease_seconds": lease,
        "self_fence_seconds": self_fence,
        "observer_lease_writes_per_minute_one_replica": writes_per_minute,
        "machine": machine(),
        "scale": series,
    });
    println!("{}", serde_json::to_string_pretty(&result).unwrap());
    if let Ok(path) = std::env::var("BENCH_OUT") {
        std::fs::write(path, serde_json::to_string_pretty(&result).unwrap()).unwrap();
    }
}
