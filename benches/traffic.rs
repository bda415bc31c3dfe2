//! `make bench-traffic`: failover measured where clients feel it. A whole
//! region fails (`localregions fail us-east`: API server, nodes, endpoint)
//! while bounded load clients (50 requests/s each, loopback only) send
//! requests along four routes at once:
//! - through the gateway (Traefik, routing by the operator's HTTPRoute);
//! - through DNS (ExternalDNS into CoreDNS, Failover mode) with a client that
//!   honours the TTL, at TTL 5 s and at TTL 30 s;
//! - client-side: the client knows both regions' endpoints and tries the
//!   next when one fails.
//!
//! For each route and trial: the error window (from the fault to the first
//! of 20 successes in a row from the new region) and the failed requests;
//! for the gateway also the operator's share: from the decision (the moment
//! the HTTPRoute holds the new weights, polled every 20 ms, less the
//! reconcile's own decision latency from the operator's metrics) to the
//! gateway's first answer from the new region, and Traefik's part of it
//! (from the HTTPRoute change to that answer). Series at 1 s x 3 and at the
//! defaults (5 s x 3).
//!
//! Environment: `BENCH_TRIALS` (default 20) per series; `BENCH_SERIES`
//! (default `1s_x3,5s_x3`); `BENCH_OUT` (default
//! `bench/results/latest-traffic.json`). Figures, not assertions.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::operator::{app_spec, apply_app, env, status};
use localregions::load::{self, Load, Route, Sample};
use serde_json::{Value, json};

const FAULT_AT: Duration = Duration::from_secs(3);
const STREAK: usize = 20;

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
        "p50": percentile(&samples, 50.0),
        "p99": percentile(&samples, 99.0),
        "max": samples.last().copied().unwrap_or(f64::NAN),
        "samples": samples,
    })
}

/// The apps of a series: one for the gateway, one per DNS TTL.
fn apps(interval: u32) -> Vec<(&'static str, Value)> {
    let base = |traffic: Value| {
        app_spec(
            "ActivePassive",
            &["us-east", "eu-west"],
            json!({
                "healthCheck": {"intervalSeconds": interval, "timeoutSeconds": 1, "failureThreshold": 3, "successThreshold": 2, "http": {"path": "/healthz"}},
                "failover": {"failbackHoldSeconds": 2, "maxFailoversPerHour": 1000},
                "traffic": traffic,
            }),
        )
    };
    let gateway = json!({"httpRoute": {"name": "gw", "parentRefs": [{"name": localregions::GATEWAY_NAME, "namespace": localregions::GATEWAY_NAMESPACE}]}});
    let dns = |ttl: u32, name: &str| json!({"dnsEndpoint": {"dnsName": format!("{name}.{}", localregions::ZONE), "recordTTL": ttl, "mode": "Failover"}});
    vec![
        ("gw", base(gateway)),
        ("dns5", base(dns(5, "dns5"))),
        ("dns30", base(dns(30, "dns30"))),
    ]
}

/// Every app on us-east, settled (both regions Healthy, no failed round),
/// and every DNS route answering with us-east only: a trial that starts
/// while DNS still points at eu-west (ExternalDNS follows the failback a
/// sync later) would measure nothing.
async fn settled(
    hub: &kube::Client,
    ns: &str,
    names: &[&str],
    routes: &[(&'static str, Route, Duration)],
    us_ip: &str,
) -> bool {
    let deadline = Instant::now() + Duration::from_secs(240);
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
        if apps_on_us_east(hub, ns, names).await && dns_on(routes, us_ip).await {
            return true;
        }
    }
    false
}

async fn apps_on_us_east(hub: &kube::Client, ns: &str, names: &[&str]) -> bool {
    for name in names {
        let Some(s) = status(hub, ns, name).await else {
            return false;
        };
        let calm = s
            .regions
            .iter()
            .all(|r| r.consecutive_failures == 0 && r.reason.is_none());
        if s.weights.as_deref() != Some("us-east=100 eu-west=0") || !calm {
            return false;
        }
    }
    true
}

/// Whether every DNS route's name resolves to `ip` alone.
async fn dns_on(routes: &[(&'static str, Route, Duration)], ip: &str) -> bool {
    for (_, route, _) in routes {
        if let Route::Dns { server, name, .. } = route {
            let answer = load::resolve(server, name).await.unwrap_or_default();
            if answer.len() != 1 || answer[0].0.to_string() != ip {
                return false;
            }
        }
    }
    true
}

/// The routes measured, with how long each load runs (the fault, the
/// detection floor, the TTL and a margin).
fn routes(
    traffic: &localregions::Traffic,
    us: &str,
    eu: &str,
    floor: Duration,
) -> Vec<(&'static str, Route, Duration)> {
    let port: u16 = us
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or(80);
    let dns = |name: &str| Route::Dns {
        server: traffic.dns.clone(),
        name: format!("{name}.{}", localregions::ZONE),
        port,
    };
    let margin = FAULT_AT + floor + Duration::from_secs(15);
    vec![
        (
            "gateway",
            Route::Url(format!("{}/", traffic.gateway)),
            margin,
        ),
        ("dns_ttl5", dns("dns5"), margin + Duration::from_secs(5)),
        ("dns_ttl30", dns("dns30"), margin + Duration::from_secs(30)),
        (
            "client_side",
            Route::Regions(vec![format!("{us}/"), format!("{eu}/")]),
            FAULT_AT + Duration::from_secs(10),
        ),
    ]
}

/// What one trial measured.
struct Trial {
    /// Per route: error window seconds and failed requests.
    routes: Vec<(f64, usize)>,
    /// From the HTTPRoute holding the new weights to the gateway's first
    /// answer from the new region.
    gateway_reaction: Option<f64>,
}

/// One trial: the loads, the route watcher, the fault, the windows.
async fn trial(
    hub: &kube::Client,
    ns: &str,
    routes: &[(&'static str, Route, Duration)],
) -> Option<Trial> {
    let started = Instant::now();
    let loads: Vec<_> = routes
        .iter()
        .map(|(_, route, duration)| {
            let route = route.clone();
            let load = Load {
                rate: 50,
                duration: *duration,
                timeout: Duration::from_secs(1),
                writes: false,
            };
            tokio::spawn(async move { load::run(&route, load).await })
        })
        .collect();
    let flipped = tokio::spawn(route_flip(hub.clone(), ns.to_string(), started));
    tokio::time::sleep(FAULT_AT).await;
    env().regions.lock().await.fail("us-east").await.unwrap();
    let mut results = Vec::new();
    let mut gateway_samples = Vec::new();
    for (i, handle) in loads.into_iter().enumerate() {
        let samples: Vec<Sample> = handle.await.ok()?.ok()?;
        let window = load::window(&samples, FAULT_AT, "eu-west", STREAK)?;
        results.push((window.duration.as_secs_f64(), window.failed));
        if i == 0 {
            gateway_samples = samples;
        }
    }
    let first = gateway_samples
        .iter()
        .find(|s| s.at >= FAULT_AT && s.region.as_deref() == Some("eu-west"))?
        .at;
    let reaction = flipped
        .await
        .ok()?
        .map(|flip| first.as_secs_f64() - flip.as_secs_f64());
    Some(Trial {
        routes: results,
        gateway_reaction: reaction,
    })
}

/// When (since `started`) the gateway app's HTTPRoute first gives eu-west
/// all the weight, polled every 20 ms for up to a minute.
async fn route_flip(hub: kube::Client, ns: String, started: Instant) -> Option<Duration> {
    let resource = kube::api::ApiResource::from_gvk_with_plural(
        &kube::api::GroupVersionKind::gvk("gateway.networking.k8s.io", "v1", "HTTPRoute"),
        "httproutes",
    );
    let api: kube::Api<kube::api::DynamicObject> = kube::Api::namespaced_with(hub, &ns, &resource);
    let gw = multiregion::plan::manifest::AppKey {
        name: "gw".into(),
        ..Default::default()
    };
    let eu = multiregion::plan::traffic::backend_name(&gw, "eu-west");
    while started.elapsed() < Duration::from_secs(60) {
        if let Ok(route) = api.get("gw").await
            && let Some(refs) = route.data["spec"]["rules"][0]["backendRefs"].as_array()
            && refs
                .iter()
                .any(|r| r["name"] == eu.as_str() && r["weight"] == 100)
        {
            return Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

/// The mean decision latency (seconds) of the operator's moves between two
/// reads of its /metrics.
fn decision_latency(before: &str, after: &str) -> Option<f64> {
    let read = |text: &str, name: &str| {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().last())
            .and_then(|v| v.parse::<f64>().ok())
    };
    let sum = read(after, "multiregion_decision_latency_seconds_sum")?
        - read(before, "multiregion_decision_latency_seconds_sum")?;
    let count = read(after, "multiregion_decision_latency_seconds_count")?
        - read(before, "multiregion_decision_latency_seconds_count")?;
    (count > 0.0).then(|| sum / count)
}

async fn series(name: &str, interval: u32, trials: usize) -> Value {
    let env = env();
    let hub = env.client("hub").await;
    let (traffic, us, eu) = {
        let mut regions = env.regions.lock().await;
        let traffic = regions.start_traffic("hub").await.unwrap();
        (
            traffic,
            regions.endpoint("us-east").unwrap(),
            regions.endpoint("eu-west").unwrap(),
        )
    };
    let ns = format!("bench-traffic-{}", name.replace('_', "-"));
    let apps = apps(interval);
    for (app, spec) in &apps {
        apply_app(&hub, &ns, app, spec.clone()).await;
    }
    let names: Vec<&str> = apps.iter().map(|(n, _)| *n).collect();
    let floor = Duration::from_secs(u64::from(interval) * 3);
    let routes = routes(&traffic, &us, &eu, floor);
    let us_ip = us
        .trim_start_matches("http://")
        .split(':')
        .next()
        .unwrap_or_default()
        .to_string();
    let mut per_route: Vec<(Vec<f64>, Vec<f64>)> = vec![(Vec::new(), Vec::new()); routes.len()];
    let mut shares = Vec::new();
    let mut reactions = Vec::new();
    let mut discarded = Vec::new();
    for t in 0..trials {
        if !settled(&hub, &ns, &names, &routes, &us_ip).await {
            discarded.push(format!("trial {t}: not settled"));
            env.regions.lock().await.restore_all().await.unwrap();
            continue;
        }
        let metrics_before = env.metrics().await;
        match trial(&hub, &ns, &routes).await {
            Some(measured) => {
                for (i, (window, failed)) in measured.routes.into_iter().enumerate() {
                    per_route[i].0.push(window);
                    per_route[i].1.push(failed as f64);
                }
                let decision = decision_latency(&metrics_before, &env.metrics().await);
                if let (Some(reaction), Some(decision)) = (measured.gateway_reaction, decision) {
                    reactions.push(reaction);
                    shares.push(reaction + decision);
                }
                eprintln!(
                    "{name} trial {t}: {:?}",
                    per_route.iter().map(|r| r.0.last()).collect::<Vec<_>>()
                );
            }
            None => discarded.push(format!("trial {t}: a route never recovered")),
        }
        env.regions.lock().await.recover("us-east").await.unwrap();
    }
    let mut report =
        json!({"interval_seconds": interval, "failure_threshold": 3, "discarded": discarded});
    for ((route, _, _), (windows, failed)) in routes.iter().zip(per_route) {
        report[route] =
            json!({"error_window_seconds": summary(windows), "failed_requests": summary(failed)});
    }
    report["operator_share_seconds"] = summary(shares);
    report["gateway_reaction_seconds"] = summary(reactions);
    for name in names {
        common::operator::delete_app(&hub, &ns, name).await;
    }
    report
}

fn print(name: &str, report: &Value) {
    println!(
        "\n{name} (intervalSeconds {} x 3)",
        report["interval_seconds"]
    );
    println!(
        "{:<12} {:>8} {:>8} {:>8} {:>10}",
        "route", "p50 s", "p99 s", "max s", "failed p50"
    );
    for route in ["gateway", "dns_ttl5", "dns_ttl30", "client_side"] {
        let w = &report[route]["error_window_seconds"];
        let f = &report[route]["failed_requests"];
        println!(
            "{route:<12} {:>8.2} {:>8.2} {:>8.2} {:>10}",
            w["p50"].as_f64().unwrap_or(f64::NAN),
            w["p99"].as_f64().unwrap_or(f64::NAN),
            w["max"].as_f64().unwrap_or(f64::NAN),
            f["p50"]
        );
    }
    for (what, key) in [
        (
            "operator's share (decision to the gateway's first answer from the new region)",
            "operator_share_seconds",
        ),
        (
            "of which Traefik (HTTPRoute change to that answer)",
            "gateway_reaction_seconds",
        ),
    ] {
        let s = &report[key];
        let (p50, p99) = (
            s["p50"].as_f64().unwrap_or(f64::NAN),
            s["p99"].as_f64().unwrap_or(f64::NAN),
        );
        println!("{what}: p50 {p50:.3} s, p99 {p99:.3} s");
    }
}

#[tokio::main]
async fn main() {
    let trials: usize = var("BENCH_TRIALS", 20);
    let wanted: String = var("BENCH_SERIES", "1s_x3,5s_x3".to_string());
    let out: String = var("BENCH_OUT", "bench/results/latest-traffic.json".to_string());
    let started = Instant::now();
    let mut report = json!({"trials_per_series": trials, "rate_per_client": 50, "streak": STREAK});
    for (name, interval) in [("1s_x3", 1), ("5s_x3", 5)] {
        if wanted.split(',').any(|w| w == name) {
            let result = series(name, interval, trials).await;
            print(name, &result);
            report[name] = result;
        }
    }
    report["seconds"] = json!(started.elapsed().as_secs());
    let text = serde_json::to_string_pretty(&report).unwrap();
    std::fs::write(&out, &text).unwrap();
    println!("\n{text}");
}
