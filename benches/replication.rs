//! The classic replication table, measured: for each mode (async,
//! semi-sync, sync) and each round trip added between the regions, the
//! write latency clients see and the acknowledged writes lost when the
//! primary's region is lost.
//!
//! Local regions `hub us-east eu-west ap-south` with PostgreSQL 15 in the
//! three members (`up --postgres`). Each trial sends writes at a fixed rate
//! to the primary region's endpoint (each answered only after the commit
//! returned), kills that region's database and cuts its replication links
//! at once (`fail_database`: what is in flight is lost, as when a region
//! goes), promotes the standby that received the most WAL
//! (`pg_promote`), and counts the acknowledged writes it lacks. Then the
//! old primary and the other standby rejoin the new primary (`pg_rewind`)
//! and the next trial starts there.
//!
//! Latency percentiles come from the writes answered before the kill.
//! `BENCH_TRIALS` (default 5), `BENCH_RTTS` (milliseconds, default
//! 0,20,80), `BENCH_MODES` (default async,semi-sync,sync), `BENCH_RATE`
//! (writes per second, default 100), `BENCH_VERBOSE` (print each trial's
//! writes per second),
//! `BENCH_SECONDS` (of writes per trial, default 3), `BENCH_OUT` (a JSON
//! file). Run with `make bench-replication`.

use std::time::{Duration, Instant};

use localregions::load::{self, Load, Route};
use localregions::{LocalRegions, Replication};
use serde_json::json;

const MODES: [(&str, Replication); 3] = [
    ("async", Replication::Async),
    ("semi-sync", Replication::SemiSync),
    ("sync", Replication::Sync),
];

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn commit() -> String {
    std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// One trial's figures.
struct Trial {
    latencies_ms: Vec<f64>,
    acknowledged: usize,
    lost: usize,
    promoted_seconds: f64,
}

/// The standby that has received the most WAL (it loses the least).
async fn most_advanced(regions: &LocalRegions, except: &str) -> String {
    let mut best: Option<(String, i64)> = None;
    for database in regions.databases().iter().filter(|d| d.region != except) {
        let client = database
            .connect("postgres")
            .await
            .expect("a standby answers");
        let row = client
            .query_one(
                "SELECT pg_wal_lsn_diff(pg_last_wal_receive_lsn(), '0/0')::bigint",
                &[],
            )
            .await
            .expect("received position");
        let received: i64 = row.get(0);
        if best.as_ref().is_none_or(|(_, b)| received > *b) {
            best = Some((database.region.clone(), received));
        }
    }
    best.expect("a standby").0
}

async fn trial(regions: &mut LocalRegions, rate: u32, seconds: u64) -> Trial {
    let primary = regions.primary().await.expect("one primary").region.clone();
    let endpoint = regions.endpoint(&primary).unwrap();
    let options = Load {
        rate,
        duration: Duration::from_secs(seconds),
        timeout: Duration::from_secs(2),
        writes: true,
    };
    let writer = tokio::spawn(async move { load::run(&Route::Url(endpoint), options).await });
    // The region goes two thirds into the run, while writes are in flight.
    tokio::time::sleep(Duration::from_secs_f64(seconds as f64 * 2.0 / 3.0)).await;
    regions.fail_database(&primary).await.unwrap();
    let failed = Instant::now();
    let target = most_advanced(regions, &primary).await;
    let database = regions.database(&target).unwrap();
    let client = database.connect("postgres").await.unwrap();
    client
        .query_one("SELECT pg_promote(true, 60)", &[])
        .await
        .expect("promoted");
    let promoted_seconds = failed.elapsed().as_secs_f64();
    let samples = writer.await.unwrap().unwrap();
    if std::env::var_os("BENCH_VERBOSE").is_some() {
        for line in load::per_second(&samples) {
            eprintln!("  {line}");
        }
    }
    let acknowledged = load::acknowledged(&samples);
    let lost = database.missing(&acknowledged).await.unwrap().len();
    let fault_at = samples
        .iter()
        .map(|s| s.at)
        .find(|at| *at >= Duration::from_secs_f64(seconds as f64 * 2.0 / 3.0))
        .unwrap_or(Duration::MAX);
    let mut latencies_ms: Vec<f64> = samples
        .iter()
        .filter(|s| s.ok && s.at + s.latency < fault_at)
        .map(|s| s.latency.as_secs_f64() * 1000.0)
        .collect();
    latencies_ms.sort_by(f64::total_cmp);
    // Everyone follows the new primary for the next trial: the old
    // primary first (it comes back a primary), then the other standby.
    regions.recover_database(&primary).await.unwrap();
    regions.rejoin_database(&primary).await.unwrap();
    let others: Vec<String> = regions
        .databases()
        .iter()
        .map(|d| d.region.clone())
        .filter(|r| *r != target && *r != primary)
        .collect();
    for region in others {
        regions.rejoin_database(&region).await.unwrap();
    }
    Trial {
        latencies_ms,
        acknowledged: acknowledged.len(),
        lost,
        promoted_seconds,
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let trials = env_u64("BENCH_TRIALS", 5);
    let rate = env_u64("BENCH_RATE", 100) as u32;
    let seconds = env_u64("BENCH_SECONDS", 3);
    let rtts: Vec<u64> = std::env::var("BENCH_RTTS")
        .unwrap_or_else(|_| "0,20,80".into())
        .split(',')
        .map(|v| v.trim().parse().expect("BENCH_RTTS: milliseconds"))
        .collect();
    let dir = std::env::temp_dir().join("multiregion-bench-replication");
    let mut regions = localregions::start_with_databases_for_test(
        dir,
        &["hub", "us-east", "eu-west", "ap-south"],
    )
    .await;
    let mut rows = Vec::new();
    for rtt in &rtts {
        regions
            .wan_latency(Duration::from_millis(*rtt))
            .await
            .unwrap();
        let only = std::env::var("BENCH_MODES").unwrap_or_default();
        for (name, mode) in MODES {
            if !only.is_empty() && !only.split(',').any(|m| m == name) {
                continue;
            }
            regions.set_replication(mode).await.unwrap();
            let mut latencies = Vec::new();
            let (mut acknowledged, mut lost, mut per_trial_lost, mut promoted) =
                (0, 0, Vec::new(), Vec::new());
            for _ in 0..trials {
                let t = trial(&mut regions, rate, seconds).await;
                latencies.extend(t.latencies_ms);
                acknowledged += t.acknowledged;
                lost += t.lost;
                per_trial_lost.push(t.lost);
                promoted.push(t.promoted_seconds);
            }
            latencies.sort_by(f64::total_cmp);
            promoted.sort_by(f64::total_cmp);
            let row = json!({
                "mode": name,
                "added_rtt_ms": rtt,
                "trials": trials,
                "write_p50_ms": percentile(&latencies, 50.0),
                "write_p99_ms": percentile(&latencies, 99.0),
                "acknowledged": acknowledged,
                "acknowledged_lost": lost,
                "lost_per_trial": per_trial_lost,
                "promote_p50_s": percentile(&promoted, 50.0),
            });
            eprintln!("{row}");
            rows.push(row);
        }
    }
    let result = json!({
        "bench": "replication",
        "commit": commit(),
        "machine": "2 cores, 24 GiB; PostgreSQL 15 (Debian), fsync off, loopback with Toxiproxy latency on the replication links",
        "rate_per_second": rate,
        "seconds_per_trial": seconds,
        "rows": rows,
    });
    println!("{}", serde_json::to_string_pretty(&result).unwrap());
    if let Ok(path) = std::env::var("BENCH_OUT") {
        std::fs::write(path, serde_json::to_string_pretty(&result).unwrap()).unwrap();
    }
}
