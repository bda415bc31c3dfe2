//! `make bench`: how fast failover is, and how the operator's cost grows
//! with apps, on local regions (hub + 3 regions, operator in release mode).
//!
//! Environment:
//! - `BENCH_TRIALS` (default 20): failover trials per kind of fault at 1 s x 3;
//! - `BENCH_NODE_TRIALS` (default `BENCH_TRIALS`): trials of the node fault at 1 s x 3;
//! - `BENCH_DEFAULT_TRIALS` (default 20): trials at the defaults (5 s x 3);
//! - `BENCH_APPS` (default `100,300,1000`): comma-separated app counts for the scale run;
//! - `BENCH_SERIES` (default all): comma-separated failover series to run,
//!   of `apiserver_1s_x3`, `nodes_1s_x3`, `apiserver_5s_x3`, `nodes_5s_x3`;
//! - `BENCH_OUT` (default `bench/results/latest.json`): where the JSON goes.
//!
//! Each failover trial starts from a settled app (both regions Healthy, the
//! active one fully ready and past `startupSeconds`); a trial whose region
//! does not recover is reported as discarded and does not count. Each scale
//! size starts once the previous one's pods are gone. Prints a table, CPU
//! seconds by process until Ready, and the JSON report. Figures, not
//! assertions.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::operator::{app_spec, apply_app, env, status, weights};
use common::wait_for;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use multiregion::api::{Health, MultiRegionApp, Role};
use serde_json::{Value, json};

fn var<T: std::str::FromStr>(name: &str, default: T) -> T {
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

fn summary(mut samples: Vec<f64>) -> Value {
    samples.sort_by(|a, b| a.total_cmp(b));
    json!({
        "trials": samples.len(),
        "p50_seconds": percentile(&samples, 50.0),
        "p99_seconds": percentile(&samples, 99.0),
        "max_seconds": samples.last().copied().unwrap_or(f64::NAN),
        "samples": samples,
    })
}

/// `healthCheck.startupSeconds` of the failover trials: a promoted standby
/// is not judged on readiness for this long after its scale-up.
const STARTUP_SECONDS: i64 = 15;

/// Waits until both regions are Healthy with no failed round counted, and
/// the active one has all its replicas ready and is past its start-up
/// window: a trial that faults a region still starting, or one with failed
/// rounds already counted, would not measure the fault alone.
async fn settled(hub: &kube::Client, ns: &str) -> Option<String> {
    let deadline = Instant::now() + Duration::from_secs(180);
    while Instant::now() < deadline {
        if let Some(s) = status(hub, ns, "web").await
            && let Some(active) = s.active_region.clone()
            && s.regions.len() == 2
            && s.regions
                .iter()
                .all(|r| r.health == Health::Healthy && r.consecutive_failures == 0)
            && s.regions.iter().any(|r| {
                r.name == active
                    && r.ready_replicas >= r.desired_replicas
                    && r.scaled_up_at.as_ref().is_none_or(|t| {
                        jiff::Timestamp::now().as_second() - t.0.as_second() > STARTUP_SECONDS
                    })
            })
        {
            return Some(active);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    None
}

/// Seconds from injecting a fault in the active region until a watch on the
/// hub sees the app's weights leave it.
/// Returns the kept samples and the discarded trials (with why).
async fn failover_trials(fault: &str, interval: i32, trials: usize) -> (Vec<f64>, Vec<Value>) {
    let env = env();
    let hub = env.client("hub").await;
    let ns = format!("bench-{fault}-{interval}");
    let spec = app_spec(
        "ActivePassive",
        &["us-east", "eu-west"],
        // The trials move traffic back and forth on purpose: no flap damping.
        json!({
            "healthCheck": {"intervalSeconds": interval, "timeoutSeconds": 1, "failureThreshold": 3, "successThreshold": 2, "startupSeconds": STARTUP_SECONDS},
            "failover": {"maxFailoversPerHour": 1000}
        }),
    );
    apply_app(&hub, &ns, "web", spec).await;
    wait_for("an active region", Duration::from_secs(120), || async {
        let w = weights(&hub, &ns, "web").await?;
        (w == "us-east=100 eu-west=0" || w == "us-east=0 eu-west=100").then_some(())
    })
    .await;
    let api: Api<MultiRegionApp> = Api::namespaced(hub.clone(), &ns);
    let mut samples = Vec::new();
    let mut discarded = Vec::new();
    // Discarded trials do not count: the series runs until it has `trials`
    // samples (or three discarded).
    let mut trial = 0;
    while samples.len() < trials {
        trial += 1;
        let Some(active) = settled(&hub, &ns).await else {
            eprintln!(
                "  the app did not settle within 180 s; status: {}",
                serde_json::to_string(&status(&hub, &ns, "web").await).unwrap_or_default()
            );
            break;
        };
        let other = if active == "us-east" {
            "eu-west"
        } else {
            "us-east"
        };
        let want = if other == "eu-west" {
            "us-east=0 eu-west=100"
        } else {
            "us-east=100 eu-west=0"
        };
        let stream = watcher(api.clone(), watch_config().fields("metadata.name=web"))
            .default_backoff()
            .applied_objects();
        futures::pin_mut!(stream);
        let injected = Instant::now();
        match fault {
            "apiserver" => env.regions.lock().await.stop_apiserver(&active).unwrap(),
            _ => env.regions.lock().await.stop_nodes(&active).unwrap(),
        }
        let seen = tokio::time::timeout(Duration::from_secs(120), async {
            while let Some(event) = stream.next().await {
                if let Ok(app) = event
                    && app.status.and_then(|s| s.weights).as_deref() == Some(want)
                {
                    return injected.elapsed();
                }
            }
            injected.elapsed()
        })
        .await
        .unwrap_or_else(|_| injected.elapsed());
        eprintln!(
            "  {fault} {interval}s x 3, trial {trial}: {:.2} s",
            seen.as_secs_f64()
        );
        match fault {
            "apiserver" => env
                .regions
                .lock()
                .await
                .start_apiserver(&active)
                .await
                .unwrap(),
            _ => env.regions.lock().await.start_nodes(&active).await.unwrap(),
        }
        // The recovered region must be Healthy (and fenced) before the next
        // fault. If it is not within 3 minutes, something besides the
        // injected fault happened during the trial (on local regions, before
        // `start_apiserver` stopped the controllers during the outage: pods
        // marked NotReady at the comeback that the restarted KWOK missed):
        // the trial is discarded,
        // reported with the app's status, every region is healed, and the
        // series goes on; it stops after three such trials.
        let recovered = tokio::time::timeout(Duration::from_secs(180), async {
            loop {
                if let Some(s) = status(&hub, &ns, "web").await
                    && s.regions.iter().any(|r| {
                        r.name == active && r.health == Health::Healthy && r.role == Role::Standby
                    })
                {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
        .await;
        if recovered.is_err() {
            let s = status(&hub, &ns, "web").await;
            eprintln!(
                "  {active} did not recover within 180 s; trial discarded; status: {}",
                serde_json::to_string(&s).unwrap_or_default()
            );
            discarded.push(json!({
                "trial": trial,
                "seconds": seen.as_secs_f64(),
                "why": format!("{active} did not recover within 180 s"),
                "status": s,
            }));
            if discarded.len() >= 3 {
                break;
            }
            let _ = env.regions.lock().await.restore_all().await;
            continue;
        }
        samples.push(seen.as_secs_f64());
    }
    common::operator::delete_app(&hub, &ns, "web").await;
    (samples, discarded)
}

/// Watches for the bench. The clients have a 10 s read timeout, which fails a
/// watch that sees no change for that long; the watcher then waits out a
/// growing backoff (up to 30 s) before it watches again, and changes made
/// meanwhile are seen late, all at once. Asking the server to end each watch
/// after 8 s instead restarts it cleanly, with no gap.
fn watch_config() -> watcher::Config {
    watcher::Config::default().timeout(8)
}

/// A local copy of every object of `api`, kept current by a watch.
async fn mirror<K>(api: Api<K>) -> (Store<K>, AbortOnDrop)
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let (store, writer) = reflector::store();
    let task = tokio::spawn(
        watcher(api, watch_config())
            .default_backoff()
            .reflect(writer)
            .for_each(|_| async {}),
    );
    let _ = store.wait_until_ready().await;
    (store, AbortOnDrop(task))
}

/// Stops a background watch when the run is done with it.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Reads one counter or histogram series sum from the operator's /metrics.
fn metric(text: &str, prefix: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// How much a counter family grew between two scrapes, per label set: for
/// example `multiregion_api_requests_total` by `cluster` and `verb`.
fn growth_by_labels(before: &str, after: &str, family: &str, keys: &[&str]) -> Value {
    let series = |text: &str| -> std::collections::BTreeMap<String, f64> {
        text.lines()
            .filter(|l| l.starts_with(&format!("{family}{{")))
            .filter_map(|l| {
                let labels = l.split('{').nth(1)?.split('}').next()?;
                let get = |key: &str| {
                    labels
                        .split(',')
                        .find_map(|kv| kv.strip_prefix(&format!("{key}=\"")))
                        .map(|v| v.trim_end_matches('"').to_string())
                };
                let key: Option<Vec<String>> = keys.iter().map(|k| get(k)).collect();
                Some((key?.join(" "), l.rsplit(' ').next()?.parse().ok()?))
            })
            .collect()
    };
    let (before, after) = (series(before), series(after));
    let mut out = serde_json::Map::new();
    for (key, value) in &after {
        let delta = value - before.get(key).copied().unwrap_or(0.0);
        if delta > 0.0 {
            out.insert(key.clone(), json!(delta));
        }
    }
    Value::Object(out)
}

/// Start-up seconds and peak memory per app between consecutive sizes of
/// the scale run, so the slope shows.
fn growth(runs: &[Value]) -> Value {
    let steps: Vec<Value> = runs
        .windows(2)
        .filter_map(|pair| {
            let apps = |v: &Value| v["apps"].as_f64();
            let (from, to) = (apps(&pair[0])?, apps(&pair[1])?);
            let slope = |key: &str| {
                let (a, b) = (pair[0][key].as_f64()?, pair[1][key].as_f64()?);
                Some((b - a) / (to - from))
            };
            Some(json!({
                "from_apps": from,
                "to_apps": to,
                "ready_seconds_per_app": slope("all_ready_seconds"),
                "peak_rss_mib_per_app": slope("operator_peak_rss_mib"),
                "cpu_seconds_per_app": slope("operator_cpu_seconds_total"),
            }))
        })
        .collect();
    Value::Array(steps)
}

/// Peak and current resident MiB and CPU seconds of a process.
fn proc_figures(pid: u32) -> (f64, f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib = |key: &str| -> f64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0.0)
    };
    let (hwm_kib, rss_kib) = (kib("VmHWM:"), kib("VmRSS:"));
    let cpu = localregions::cpu_seconds(pid as i32).unwrap_or(f64::NAN);
    (hwm_kib / 1024.0, rss_kib / 1024.0, cpu)
}

async fn scale(apps: usize) -> Value {
    let env = env();
    let hub = env.client("hub").await;
    env.kill_operator();
    let ns = format!("scale-{apps}");
    let spec = app_spec(
        "ActiveActive",
        &["us-east", "eu-west", "ap-south"],
        json!({"workload": {"replicas": 1}, "healthCheck": {"intervalSeconds": 5}}),
    );
    for i in 0..apps {
        apply_app(&hub, &ns, &format!("app-{i}"), spec.clone()).await;
    }
    // The bench follows apps and placed Deployments through watches, not
    // repeated lists: listing a thousand objects every second would load
    // the same API servers whose speed is being measured.
    let api: Api<MultiRegionApp> = Api::namespaced(hub.clone(), &ns);
    let (apps_seen, _apps_watch) = mirror(api.clone()).await;
    let mut members = Vec::new();
    for region in ["us-east", "eu-west", "ap-south"] {
        let deployments: Api<Deployment> = Api::namespaced(env.client(region).await, &ns);
        members.push(mirror(deployments).await);
    }
    let ready_count = || {
        apps_seen
            .state()
            .iter()
            .filter(|a| {
                a.status.as_ref().is_some_and(|s| {
                    s.conditions
                        .iter()
                        .any(|c| c.type_ == "Ready" && c.status == "True")
                        && s.weights.as_deref() == Some("us-east=34 eu-west=33 ap-south=33")
                })
            })
            .count()
    };
    let cpu_before = env.regions.lock().await.cpu_seconds();
    let started = Instant::now();
    env.start_operator().await;
    // Where the start-up time goes: the operator placing every Deployment,
    // the member clusters running their pods, then the operator's health
    // rounds judging every app Ready.
    let (mut all_placed, mut all_available) = (None, None);
    // About 0.15 s per app on this machine: the bound leaves four times that.
    let deadline = Duration::from_secs(900.max(apps as u64 * 6 / 10));
    loop {
        let (mut placed, mut available) = (0, 0);
        for (store, _) in &members {
            let deployments = store.state();
            placed += deployments.len();
            available += deployments
                .iter()
                .filter(|d| {
                    d.status
                        .as_ref()
                        .and_then(|s| s.available_replicas)
                        .unwrap_or(0)
                        >= 1
                })
                .count();
        }
        if placed >= 3 * apps && all_placed.is_none() {
            all_placed = Some(started.elapsed().as_secs_f64());
        }
        if available >= 3 * apps && all_available.is_none() {
            all_available = Some(started.elapsed().as_secs_f64());
        }
        if ready_count() == apps {
            break;
        }
        assert!(
            started.elapsed() < deadline,
            "apps not Ready within {deadline:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let all_ready = started.elapsed().as_secs_f64();
    // Where the machine's CPU went until then, by component of the clusters.
    let cpu_after = env.regions.lock().await.cpu_seconds();
    let mut cpu_until_ready: serde_json::Map<String, Value> = cpu_after
        .iter()
        .map(|(name, after)| {
            let used = after - cpu_before.get(name).copied().unwrap_or(0.0);
            (name.clone(), json!((used * 100.0).round() / 100.0))
        })
        .collect();
    if let Some(seconds) = env
        .operator_pid()
        .and_then(|pid| localregions::cpu_seconds(pid as i32))
    {
        cpu_until_ready.insert("operator".into(), json!(seconds));
    }
    // What the start-up cost in requests (the operator process is new, so
    // its counters started at zero).
    let at_ready = env.metrics().await;
    let startup_requests = growth_by_labels(
        "",
        &at_ready,
        "multiregion_api_requests_total",
        &["apiserver", "verb"],
    );
    // Every write to the hub until Ready, per app: status writes, Events,
    // the finalizer, and the Leases and Region writes of the start.
    let hub_writes: f64 = startup_requests
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(key, _)| {
            ["hub create", "hub patch", "hub update", "hub delete"].contains(&key.as_str())
        })
        .filter_map(|(_, v)| v.as_f64())
        .sum();
    let startup_writes = growth_by_labels(
        "",
        &at_ready,
        "multiregion_api_writes_total",
        &["apiserver", "kind"],
    );
    // Steady state: let the success counters saturate (two rounds), then a
    // minute with nothing changing.
    tokio::time::sleep(Duration::from_secs(15)).await;
    let before = env.metrics().await;
    tokio::time::sleep(Duration::from_secs(60)).await;
    let after = env.metrics().await;
    let writes = metric(&after, "multiregion_api_writes_total")
        - metric(&before, "multiregion_api_writes_total");
    let requests = growth_by_labels(
        &before,
        &after,
        "multiregion_api_requests_total",
        &["apiserver", "verb"],
    );
    let (rss_mib, steady_rss_mib, cpu_seconds) =
        env.operator_pid()
            .map(proc_figures)
            .unwrap_or((f64::NAN, f64::NAN, f64::NAN));
    // Stop one region: when has the last app moved its weight away?
    let stop = Instant::now();
    env.regions.lock().await.stop_apiserver("ap-south").unwrap();
    let mut moved_at: Vec<f64> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    while seen.len() < apps && stop.elapsed() < Duration::from_secs(300) {
        for a in apps_seen.state() {
            let name = a.metadata.name.clone().unwrap_or_default();
            let moved = a.status.as_ref().and_then(|s| s.weights.as_deref())
                == Some("us-east=50 eu-west=50 ap-south=0");
            if moved && seen.insert(name) {
                moved_at.push(stop.elapsed().as_secs_f64());
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    env.regions
        .lock()
        .await
        .start_apiserver("ap-south")
        .await
        .unwrap();
    for i in 0..apps {
        common::operator::delete_app(&hub, &ns, &format!("app-{i}")).await;
    }
    wait_for(
        "the scale apps to be gone",
        Duration::from_secs(600.max(apps as u64 * 4 / 10)),
        || async {
            api.list(&Default::default())
                .await
                .ok()?
                .items
                .is_empty()
                .then_some(())
        },
    )
    .await;
    // The members' garbage collector deletes the ReplicaSets and pods of
    // the deleted Deployments after the apps are gone; the next size starts
    // only when that is done, so it is not charged for this one's cleanup.
    for region in ["us-east", "eu-west", "ap-south"] {
        let pods: Api<Pod> = Api::namespaced(env.client(region).await, &ns);
        let sets: Api<ReplicaSet> = Api::namespaced(env.client(region).await, &ns);
        wait_for(
            &format!("the scale pods in {region} to be gone"),
            Duration::from_secs(600.max(apps as u64 * 4 / 10)),
            || async {
                let no_pods = pods.list(&Default::default()).await.ok()?.items.is_empty();
                let no_sets = sets.list(&Default::default()).await.ok()?.items.is_empty();
                (no_pods && no_sets).then_some(())
            },
        )
        .await;
    }
    json!({
        "apps": apps,
        "regions": 3,
        "all_placed_seconds": all_placed,
        "all_available_in_members_seconds": all_available,
        "all_ready_seconds": all_ready,
        "operator_peak_rss_mib": rss_mib,
        "operator_steady_rss_mib": steady_rss_mib,
        "operator_cpu_seconds_total": cpu_seconds,
        "cpu_seconds_until_ready": cpu_until_ready,
        "steady_state_writes_per_minute": writes,
        "steady_state_requests_per_minute": requests,
        "startup_requests": startup_requests,
        "startup_writes": startup_writes,
        "hub_writes_per_app_until_ready": hub_writes / apps as f64,
        "region_stop_last_app_moved": summary(moved_at),
        "floor_seconds": 5 * 3,
    })
}

#[tokio::main]
async fn main() {
    let trials: usize = var("BENCH_TRIALS", 20);
    let default_trials: usize = var("BENCH_DEFAULT_TRIALS", 20);
    let apps: Vec<usize> = std::env::var("BENCH_APPS")
        .unwrap_or_else(|_| "100,300,1000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let out = std::env::var("BENCH_OUT").unwrap_or_else(|_| "bench/results/latest.json".into());

    eprintln!("starting hub + 3 regions and the operator (release build)");
    let _ = env();
    let metrics_before = env().metrics().await;
    let mut failover = serde_json::Map::new();
    let node_trials: usize = var("BENCH_NODE_TRIALS", trials);
    let series_wanted: Option<Vec<String>> = std::env::var("BENCH_SERIES")
        .ok()
        .map(|v| v.split(',').map(|s| s.trim().to_string()).collect());
    for (interval, n, m) in [
        (1, trials, node_trials),
        (5, default_trials, default_trials),
    ] {
        for (fault, n) in [("apiserver", n), ("nodes", m)] {
            let series = format!("{fault}_{interval}s_x3");
            if series_wanted.as_ref().is_some_and(|w| !w.contains(&series)) {
                continue;
            }
            eprintln!("failover: {fault} fault, {interval} s x 3, {n} trials");
            let (samples, discarded) = failover_trials(fault, interval, n).await;
            let mut s = summary(samples);
            s["floor_seconds"] = json!(interval * 3);
            s["discarded"] = json!(discarded);
            failover.insert(series, s);
        }
    }
    let metrics_after = env().metrics().await;
    let latency_sum = metric(&metrics_after, "multiregion_decision_latency_seconds_sum")
        - metric(&metrics_before, "multiregion_decision_latency_seconds_sum");
    let latency_count = metric(&metrics_after, "multiregion_decision_latency_seconds_count")
        - metric(
            &metrics_before,
            "multiregion_decision_latency_seconds_count",
        );
    let buckets: Vec<(f64, f64)> = metrics_after
        .lines()
        .filter(|l| l.starts_with("multiregion_decision_latency_seconds_bucket"))
        .filter_map(|l| {
            let le = l.split("le=\"").nth(1)?.split('"').next()?;
            let le: f64 = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((le, l.rsplit(' ').next()?.parse().ok()?))
        })
        .collect();
    let total = buckets.last().map_or(0.0, |b| b.1);
    let p99_bucket = buckets
        .iter()
        .find(|(_, c)| *c >= 0.99 * total)
        .map(|b| b.0);

    let mut scale_runs = Vec::new();
    for n in apps {
        eprintln!("scale: {n} apps x 3 regions");
        scale_runs.push(scale(n).await);
    }
    let machine = format!(
        "{} cores, {} GiB",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| m
                .lines()
                .next()?
                .split_whitespace()
                .nth(1)?
                .parse::<f64>()
                .ok())
            .map_or(0.0, |kib| (kib / 1024.0 / 1024.0).round())
    );
    // The commit measured (with "-dirty" when the tree had changes).
    let commit = std::process::Command::new("git")
        .args(["describe", "--always", "--dirty", "--abbrev=40"])
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let report = json!({
        "machine": machine,
        "commit": commit,
        "failover": failover,
        "decision_latency": {
            "count": latency_count,
            "mean_seconds": if latency_count > 0.0 { latency_sum / latency_count } else { f64::NAN },
            "p99_upper_bound_seconds": p99_bucket,
        },
        "scale": scale_runs,
        "growth": growth(&scale_runs),
    });
    println!(
        "{:<24} {:>7} {:>10} {:>8} {:>8} {:>8}",
        "failover", "trials", "discarded", "p50 s", "p99 s", "floor s"
    );
    for (k, v) in &failover {
        println!(
            "{:<24} {:>7} {:>10} {:>8.2} {:>8.2} {:>8}",
            k,
            v["trials"],
            v["discarded"].as_array().map_or(0, |d| d.len()),
            v["p50_seconds"].as_f64().unwrap_or(f64::NAN),
            v["p99_seconds"].as_f64().unwrap_or(f64::NAN),
            v["floor_seconds"]
        );
    }
    println!(
        "decision latency: mean {:.4} s, p99 <= {:?} s over {latency_count} decisions",
        report["decision_latency"]["mean_seconds"]
            .as_f64()
            .unwrap_or(f64::NAN),
        p99_bucket
    );
    for s in &report["scale"].as_array().cloned().unwrap_or_default() {
        println!(
            "scale {} apps: placed in {:.1} s, available in the regions {:.1} s, ready in {:.1} s, peak RSS {:.1} MiB (steady {:.1}), CPU {:.1} s, steady writes/min {}, last app moved p50 {:.2} s p99 {:.2} s",
            s["apps"],
            s["all_placed_seconds"].as_f64().unwrap_or(f64::NAN),
            s["all_available_in_members_seconds"]
                .as_f64()
                .unwrap_or(f64::NAN),
            s["all_ready_seconds"].as_f64().unwrap_or(f64::NAN),
            s["operator_peak_rss_mib"].as_f64().unwrap_or(f64::NAN),
            s["operator_steady_rss_mib"].as_f64().unwrap_or(f64::NAN),
            s["operator_cpu_seconds_total"].as_f64().unwrap_or(f64::NAN),
            s["steady_state_writes_per_minute"],
            s["region_stop_last_app_moved"]["p50_seconds"]
                .as_f64()
                .unwrap_or(f64::NAN),
            s["region_stop_last_app_moved"]["p99_seconds"]
                .as_f64()
                .unwrap_or(f64::NAN),
        );
    }
    for g in report["growth"].as_array().cloned().unwrap_or_default() {
        println!(
            "growth {} -> {} apps: {:.3} s, {:.3} MiB and {:.4} CPU s per app",
            g["from_apps"],
            g["to_apps"],
            g["ready_seconds_per_app"].as_f64().unwrap_or(f64::NAN),
            g["peak_rss_mib_per_app"].as_f64().unwrap_or(f64::NAN),
            g["cpu_seconds_per_app"].as_f64().unwrap_or(f64::NAN),
        );
    }
    for s in report["scale"].as_array().cloned().unwrap_or_default() {
        println!(
            "requests/min at steady state, {} apps: {}",
            s["apps"], s["steady_state_requests_per_minute"]
        );
        println!(
            "requests until Ready, {} apps: {}; of them writes: {}; hub writes per app: {:.2}",
            s["apps"],
            s["startup_requests"],
            s["startup_writes"],
            s["hub_writes_per_app_until_ready"]
                .as_f64()
                .unwrap_or(f64::NAN),
        );
        let by_process = s["cpu_seconds_until_ready"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        let total: f64 = by_process.values().filter_map(Value::as_f64).sum();
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        println!(
            "CPU until Ready, {} apps: {total:.1} s used of {:.1} s on {cores} cores; by process: {}",
            s["apps"],
            cores * s["all_ready_seconds"].as_f64().unwrap_or(f64::NAN),
            Value::Object(by_process)
        );
    }
    let text = serde_json::to_string_pretty(&report).unwrap();
    println!("{text}");
    if let Some(parent) = std::path::Path::new(&out).parent() {
        let _ = std::fs::create_dir_all(parent);
    }
    std::fs::write(&out, text + "\n").unwrap();
    eprintln!("report written to {out}");
    // The watchdog stops the clusters when this process exits.
    env().kill_operator();
}
