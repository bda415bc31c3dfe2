//! The spread hub's scale series: N ActiveActive apps over three regions,
//! one operator replica in each region, all three observing. Per size:
//! seconds from the replicas' start to every app Ready, each replica's
//! peak and steady RSS and CPU seconds, hub writes per app until Ready
//! (every replica's, Leases included), each replica's hub and member
//! requests and observer Lease writes a minute at steady state, and the
//! last app moved after a region (not the leader's) dies whole.
//! Figures, not assertions.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures::StreamExt;
use kube::api::{Api, DeleteParams, ListParams};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use localregions::Guard;
use multiregion::api::MultiRegionApp;
use serde_json::{Value, json};

use super::common::operator::{REGIONS, app_spec, apply_app, lease_holder};
use super::common::spread::{
    METRICS_PORT, every_replica_sees_every_region_serving, hub_in, start_replica_with,
};
use super::common::wait_for;

/// The replicas of one run, by region.
pub struct Replicas {
    /// Their Lease duration (`--lease-seconds`).
    pub lease: String,
    /// Each region's running replica.
    pub running: BTreeMap<String, std::process::Child>,
}

impl Replicas {
    /// One replica in each region.
    pub fn start(regions: &Guard, lease: &str) -> Self {
        let running = REGIONS
            .iter()
            .map(|r| (r.to_string(), start_replica_with(regions, r, lease)))
            .collect();
        Replicas {
            lease: lease.to_string(),
            running,
        }
    }

    /// Stops every replica and reaps it.
    pub fn stop(&mut self) {
        for (_, mut child) in std::mem::take(&mut self.running) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn pid(&self, region: &str) -> Option<i32> {
        self.running.get(region).map(|c| c.id() as i32)
    }
}

/// A field of `/proc/PID/status` in MiB (VmHWM: the peak RSS; VmRSS: now).
fn memory_mib(pid: i32, field: &str) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: f64 = status
        .lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some((kib / 1024.0 * 10.0).round() / 10.0)
}

/// One replica's metrics text.
async fn scrape(regions: &Guard, region: &str) -> String {
    let index = REGIONS.iter().position(|r| *r == region).unwrap();
    let address = regions.spread_hub().unwrap().network.region_address(index);
    let url = format!("http://{address}:{METRICS_PORT}/metrics");
    match reqwest::get(&url).await {
        Ok(answer) => answer.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

/// The sum of a counter's series whose labels contain every one of `with`.
fn counter(text: &str, family: &str, with: &[&str]) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(&format!("{family}{{")))
        .filter(|l| with.iter().all(|w| l.contains(w)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A replica's requests so far: hub writes, hub requests, member requests
/// and observer Lease writes.
fn requests(text: &str) -> [f64; 4] {
    const REQUESTS: &str = "multiregion_api_requests_total";
    let hub_writes: f64 = ["create", "patch", "update", "delete"]
        .iter()
        .map(|verb| {
            let verb = format!("verb=\"{verb}\"");
            counter(text, REQUESTS, &["apiserver=\"hub\"", &verb])
        })
        .sum();
    let hub = counter(text, REQUESTS, &["apiserver=\"hub\""]);
    let all = counter(text, REQUESTS, &[]);
    let observer = counter(
        text,
        "multiregion_api_writes_total",
        &["kind=\"observer_lease\""],
    );
    [hub_writes, hub, all - hub, observer]
}

/// One replica's writes so far by kind (`multiregion_api_writes_total`),
/// the leader Lease's renewals as `leader_lease` (its update verbs).
fn writes_by_kind(text: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("multiregion_api_writes_total{") else {
            continue;
        };
        let apiserver = rest
            .split("apiserver=\"")
            .nth(1)
            .and_then(|v| v.split('"').next());
        let kind = rest
            .split("kind=\"")
            .nth(1)
            .and_then(|v| v.split('"').next());
        let value = line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok());
        if let (Some(apiserver), Some(kind), Some(value)) = (apiserver, kind, value) {
            out.insert(format!("{apiserver} {kind}"), value);
        }
    }
    let lease = counter(
        text,
        "multiregion_api_requests_total",
        &["apiserver=\"hub\"", "verb=\"update\""],
    );
    out.insert("hub leader_lease".into(), lease);
    out
}

/// Waits until the leader has written no status for 15 s (three rounds
/// at 5 s), at most three minutes; returns how long that took.
async fn settle(regions: &Guard, leader: &str) -> f64 {
    let begun = Instant::now();
    let status = |text: &str| counter(text, "multiregion_api_writes_total", &["kind=\"status\""]);
    let mut last = status(&scrape(regions, leader).await);
    let mut quiet = 0;
    while quiet < 3 && begun.elapsed() < Duration::from_secs(180) {
        tokio::time::sleep(Duration::from_secs(5)).await;
        let now = status(&scrape(regions, leader).await);
        quiet = if now == last { quiet + 1 } else { 0 };
        last = now;
    }
    begun.elapsed().as_secs_f64()
}

/// Every replica's requests so far, by region.
async fn requests_by_replica(regions: &Guard) -> BTreeMap<String, [f64; 4]> {
    let mut out = BTreeMap::new();
    for region in REGIONS {
        out.insert(region.to_string(), requests(&scrape(regions, region).await));
    }
    out
}

/// Keeps the apps of a namespace mirrored by a watch (no repeated lists
/// of a thousand apps against the hub being measured).
async fn mirror(api: Api<MultiRegionApp>) -> (Store<MultiRegionApp>, tokio::task::JoinHandle<()>) {
    let (store, writer) = reflector::store();
    let config = watcher::Config::default().timeout(8);
    let task = tokio::spawn(
        watcher(api, config)
            .default_backoff()
            .reflect(writer)
            .for_each(|_| async {}),
    );
    let _ = store.wait_until_ready().await;
    (store, task)
}

fn ready_everywhere(app: &MultiRegionApp) -> bool {
    app.status.as_ref().is_some_and(|s| {
        s.conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True")
            && s.weights.as_deref() == Some("us-east=34 eu-west=33 ap-south=33")
    })
}

/// Which region to fail: neither the leader's nor ap-south (the bench's
/// view of the hub goes through it).
fn region_to_fail(leader: &str) -> &'static str {
    if leader == "us-east" {
        "eu-west"
    } else {
        "us-east"
    }
}

/// One size of the series.
pub async fn run(regions: &mut Guard, replicas: &mut Replicas, apps: usize) -> Value {
    let hub = hub_in(regions, "ap-south").await;
    replicas.stop();
    let ns = format!("spread-scale-{apps}");
    let spec = app_spec(
        "ActiveActive",
        &REGIONS,
        json!({"workload": {"replicas": 1}, "healthCheck": {"intervalSeconds": 5}}),
    );
    for i in 0..apps {
        apply_app(&hub, &ns, &format!("app-{i}"), spec.clone()).await;
    }
    let api: Api<MultiRegionApp> = Api::namespaced(hub.clone(), &ns);
    let (seen, watch) = mirror(api.clone()).await;
    let cpu_before = regions.cpu_seconds();
    let started = Instant::now();
    *replicas = Replicas::start(regions, &replicas.lease);
    let deadline = Duration::from_secs(900.max(apps as u64));
    wait_for("every app Ready", deadline, || async {
        let ready = seen.state().iter().filter(|a| ready_everywhere(a)).count();
        (ready == apps).then_some(())
    })
    .await;
    let all_ready = started.elapsed().as_secs_f64();
    let cpu_after = regions.cpu_seconds();
    let at_ready = requests_by_replica(regions).await;
    let hub_writes: f64 = at_ready.values().map(|r| r[0]).sum();
    let peak_until_ready = per_replica(replicas, |pid| memory_mib(pid, "VmHWM:"));

    // Steady state: once the leader's status writes stop (no write for
    // three rounds), a minute.
    let leader = lease_holder(&hub)
        .await
        .and_then(|h| h.strip_prefix("replica-").map(str::to_string))
        .unwrap_or_default();
    let settled_after = settle(regions, &leader).await;
    let before = requests_by_replica(regions).await;
    let kinds_before = writes_by_kind(&scrape(regions, &leader).await);
    tokio::time::sleep(Duration::from_secs(60)).await;
    let after = requests_by_replica(regions).await;
    let kinds_after = writes_by_kind(&scrape(regions, &leader).await);
    let leader_writes: BTreeMap<&String, f64> = kinds_after
        .iter()
        .map(|(kind, n)| (kind, n - kinds_before.get(kind).copied().unwrap_or(0.0)))
        .filter(|(_, n)| *n > 0.0)
        .collect();
    let steady: BTreeMap<&String, Value> = after
        .iter()
        .map(|(region, a)| {
            let b = before.get(region).copied().unwrap_or_default();
            let minute = |i: usize| a[i] - b[i];
            let figures = json!({
                "hub_requests_per_minute": minute(1),
                "hub_writes_per_minute": minute(0),
                "member_requests_per_minute": minute(2),
                "observer_lease_writes_per_minute": minute(3),
            });
            (region, figures)
        })
        .collect();
    let cpu = per_replica(replicas, localregions::cpu_seconds);
    // The peak since the start: VmHWM, read again (the larger of the two
    // readings is reported as the peak until Ready).
    let peak = per_replica(replicas, |pid| memory_mib(pid, "VmHWM:"));
    let rss = per_replica(replicas, |pid| memory_mib(pid, "VmRSS:"));
    let moved = region_dies(regions, replicas, &seen, &leader, apps).await;
    watch.abort();
    remove_all(&api).await;
    let cluster_cpu: BTreeMap<String, f64> = cpu_after
        .iter()
        .map(|(name, after)| {
            let used = after - cpu_before.get(name).copied().unwrap_or(0.0);
            (name.clone(), (used * 100.0).round() / 100.0)
        })
        .collect();
    json!({
        "apps": apps,
        "all_ready_seconds": all_ready,
        "steady_state_note": "a minute once the leader wrote no status for three rounds; hub writes include the leader Lease (update verbs)",
        "leader": leader,
        "hub_writes_until_ready": hub_writes,
        "hub_writes_per_app_until_ready": hub_writes / apps as f64,
        "requests_until_ready_by_replica": at_ready
            .iter()
            .map(|(r, a)| (r.clone(), json!({"hub_writes": a[0], "hub": a[1], "members": a[2], "observer_lease_writes": a[3]})))
            .collect::<serde_json::Map<_, _>>(),
        "peak_rss_until_ready_mib": peak_until_ready,
        "peak_rss_mib": peak,
        "steady_rss_mib": rss,
        "operator_cpu_seconds_start_settle_and_steady_minute": cpu,
        "settled_seconds_after_ready": settled_after,
        "steady_state": steady,
        "leader_writes_per_minute_by_kind": leader_writes,
        "cluster_cpu_seconds_until_ready": cluster_cpu,
        "region_dies": moved,
    })
}

/// A figure of each running replica, by region.
fn per_replica(replicas: &Replicas, figure: impl Fn(i32) -> Option<f64>) -> Value {
    let mut out = serde_json::Map::new();
    for region in REGIONS {
        if let Some(value) = replicas.pid(region).and_then(&figure) {
            out.insert(region.to_string(), json!(value));
        }
    }
    Value::Object(out)
}

/// Fails a region whole (its member, its hub member, its replica) and
/// times, per app, when its weight there is 0; then brings it and its
/// replica back and waits until every replica sees every region serving.
async fn region_dies(
    regions: &mut Guard,
    replicas: &mut Replicas,
    seen: &Store<MultiRegionApp>,
    leader: &str,
    apps: usize,
) -> Value {
    let region = region_to_fail(leader);
    let zero = format!("{region}=0");
    regions.fail(region).await.unwrap();
    if let Some(mut child) = replicas.running.remove(region) {
        let _ = child.kill();
        let _ = child.wait();
    }
    let failed = Instant::now();
    let mut moved: BTreeMap<String, f64> = BTreeMap::new();
    let limit = Duration::from_secs(300);
    while moved.len() < apps && failed.elapsed() < limit {
        for app in seen.state() {
            let away = app
                .status
                .as_ref()
                .and_then(|s| s.weights.as_deref())
                .is_some_and(|w| w.split(' ').any(|x| x == zero));
            let name = app.metadata.name.clone().unwrap_or_default();
            if away && !moved.contains_key(&name) {
                moved.insert(name, failed.elapsed().as_secs_f64());
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut seconds: Vec<f64> = moved.values().copied().collect();
    seconds.sort_by(|a, b| a.total_cmp(b));
    let at = |p: f64| {
        let rank = ((p / 100.0) * seconds.len() as f64).ceil() as usize;
        seconds
            .get(rank.clamp(1, seconds.len().max(1)) - 1)
            .copied()
    };
    regions.recover(region).await.unwrap();
    let again = start_replica_with(regions, region, &replicas.lease);
    if let Some(mut old) = replicas.running.insert(region.to_string(), again) {
        let _ = old.wait();
    }
    let view = hub_in(regions, "ap-south").await;
    every_replica_sees_every_region_serving(&view).await;
    json!({
        "region": region,
        "apps_moved": moved.len(),
        "p50_seconds": at(50.0),
        "p99_seconds": at(99.0),
        "max_seconds": seconds.last(),
        "floor_seconds": 15,
    })
}

/// Deletes every app of the size and waits until the hub has none left
/// (their finalizers done: the placed objects gone from the regions). A
/// deletion of a thousand apps at once can time out part way: asked
/// again every 10 s while apps not being deleted are left.
async fn remove_all(api: &Api<MultiRegionApp>) {
    let started = Instant::now();
    loop {
        let left = api.list_metadata(&ListParams::default()).await;
        let Ok(left) = left else {
            tokio::time::sleep(Duration::from_secs(2)).await;
            continue;
        };
        if left.items.is_empty() {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(1200),
            "{} apps not removed within 20 minutes",
            left.items.len()
        );
        if left
            .items
            .iter()
            .any(|a| a.metadata.deletion_timestamp.is_none())
        {
            let _ = api
                .delete_collection(&DeleteParams::default(), &ListParams::default())
                .await;
        }
        tokio::time::sleep(Duration::from_secs(10)).await;
    }
}
