//! Prometheus metrics (see docs/design.md, "Observability"), served on `/metrics`.

use std::sync::LazyLock;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RegionLabels {
    pub region: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConditionLabels {
    pub namespace: String,
    pub app: String,
    pub condition: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AppRegionLabels {
    pub namespace: String,
    pub app: String,
    pub region: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FailoverLabels {
    pub namespace: String,
    pub app: String,
    pub reason: String,
    /// `true` for a planned move (failback, override, schedule, drain,
    /// cordon, removal, drill), `false` for a failover forced by a failure:
    /// page on `planned="false"`.
    pub planned: String,
}

impl FailoverLabels {
    pub fn new(namespace: &str, app: &str, reason: &str) -> Self {
        let planned = multiregion_core::api::MoveReason::parse(reason).is_planned();
        FailoverLabels {
            namespace: namespace.to_string(),
            app: app.to_string(),
            reason: reason.to_string(),
            planned: planned.to_string(),
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DrillLabels {
    pub namespace: String,
    pub app: String,
    /// Succeeded, Aborted or Skipped.
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AppLabels {
    pub namespace: String,
    pub app: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WriteLabels {
    /// `hub` or `member` (not `cluster`, which Thanos and Mimir use as an
    /// external label).
    pub apiserver: String,
    /// What was written: status, region_status, event, sink, placement, removal.
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// `hub` or `member` (not `cluster`, which Thanos and Mimir use as an
    /// external label).
    pub apiserver: String,
    /// The Kubernetes verb: get, list, watch, create, update, patch, delete,
    /// deletecollection, or `other` for paths that are not resources.
    pub verb: String,
}

/// Every request this process sends to an API server through a client from
/// [`counted_client`], by API server (hub, member) and verb. One family for the process, so
/// clients built before the operator's [`Metrics`] exist are counted too.
static API_REQUESTS: LazyLock<Family<RequestLabels, Counter>> = LazyLock::new(Default::default);

/// A kube client whose requests count in `multiregion_api_requests_total`.
pub fn counted_client(config: kube::Config, cluster: &str) -> Result<kube::Client, kube::Error> {
    let cluster = cluster.to_string();
    let count =
        tower::util::MapRequestLayer::new(move |request: http::Request<kube::client::Body>| {
            let verb = verb(request.method(), request.uri());
            API_REQUESTS
                .get_or_create(&RequestLabels {
                    apiserver: cluster.clone(),
                    verb: verb.to_string(),
                })
                .inc();
            request
        });
    Ok(kube::client::ClientBuilder::try_from(config)?
        .with_layer(&count)
        .build())
}

/// The Kubernetes verb of a request, from its method and path: a GET of a
/// collection is a list (or a watch with `watch=`), a GET of a named object
/// (or its subresource) is a get.
pub fn verb(method: &http::Method, uri: &http::Uri) -> &'static str {
    let segments: Vec<&str> = uri.path().split('/').filter(|s| !s.is_empty()).collect();
    // What follows the group and version: /api/v1/... or /apis/group/version/...
    let resource = match segments.first() {
        Some(&"api") if segments.len() >= 2 => &segments[2..],
        Some(&"apis") if segments.len() >= 3 => &segments[3..],
        _ => return "other",
    };
    let resource = match resource {
        ["namespaces", _namespace, rest @ ..] if !rest.is_empty() => rest,
        other => other,
    };
    let named = resource.len() >= 2;
    let watching = uri
        .query()
        .is_some_and(|q| q.split('&').any(|p| p == "watch=true" || p == "watch=1"));
    match (method.as_str(), named) {
        (_, _) if resource.is_empty() => "other",
        ("GET", _) if watching => "watch",
        ("GET", true) => "get",
        ("GET", false) => "list",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", true) => "delete",
        ("DELETE", false) => "deletecollection",
        _ => "other",
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BuildLabels {
    pub version: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub error: String,
}

/// Every metric the operator exports.
pub struct Metrics {
    pub region_reachable: Family<RegionLabels, Gauge>,
    /// 1 while a region's member keeps working credentials because the
    /// Region's current ones are unusable.
    pub region_credentials_stale: Family<RegionLabels, Gauge>,
    pub app_region_healthy: Family<AppRegionLabels, Gauge>,
    pub traffic_weight: Family<AppRegionLabels, Gauge>,
    /// The same weight as a share of the app's traffic, 0..1.
    pub traffic_weight_ratio: Family<AppRegionLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    /// Each region's replication lag as the data tier last read it.
    pub replication_lag: Family<AppRegionLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    /// 1 when the app's condition is True, else 0.
    pub app_condition: Family<ConditionLabels, Gauge>,
    pub failovers: Family<FailoverLabels, Counter>,
    /// Failover drills ended, by result.
    pub drills: Family<DrillLabels, Counter>,
    /// The last drill's measured time to move traffic away.
    pub drill_move_seconds: Family<AppLabels, Gauge>,
    pub decision_latency: Histogram,
    pub reconcile_duration: Histogram,
    pub reconcile_errors: Family<ErrorLabels, Counter>,
    pub probe_duration: Family<RegionLabels, Histogram>,
    pub api_writes: Family<WriteLabels, Counter>,
    /// 1 while this replica holds the Lease (or runs without election).
    pub leader: Gauge,
    pub registry: Registry,
}

fn latency_buckets() -> impl Iterator<Item = f64> {
    [
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0, 30.0,
        60.0, 120.0,
    ]
    .into_iter()
}

/// The request counter every client shares, and the build's version.
fn register_process_info(r: &mut Registry) {
    r.register(
        "api_requests",
        "Requests the operator sent to API servers, by API server (hub, member) and verb",
        API_REQUESTS.clone(),
    );
    let build_info = Family::<BuildLabels, Gauge>::default();
    let version = BuildLabels {
        version: env!("CARGO_PKG_VERSION").to_string(),
    };
    build_info.get_or_create(&version).set(1);
    r.register(
        "build_info",
        "The operator's version, as a label; always 1",
        build_info,
    );
}

/// `register` in one line per metric.
macro_rules! reg {
    ($registry:ident, $name:literal, $help:literal, $metric:expr) => {
        register(&mut $registry, $name, $help, $metric)
    };
}

/// Registers a metric and hands it back.
fn register<M>(registry: &mut Registry, name: &str, help: &str, metric: M) -> M
where
    M: prometheus_client::registry::Metric + Clone,
{
    registry.register(name, help, metric.clone());
    metric
}

impl Default for Metrics {
    fn default() -> Self {
        let mut r = Registry::with_prefix("multiregion");
        let histogram = || Histogram::new(latency_buckets());
        let metrics = Metrics {
            region_reachable: reg! { r, "region_reachable", "1 when the region's API server answers its probes", Family::default() },
            region_credentials_stale: reg! { r, "region_credentials_stale", "1 while the region is reached with its last working credentials because its Secret's are unusable", Family::default() },
            app_region_healthy: reg! { r, "app_region_healthy", "1 when the app is Healthy in the region, or Degraded (serving on its endpoint alone while its API server is out of reach)", Family::default() },
            traffic_weight: reg! { r, "traffic_weight", "Published traffic weight of the app in the region (0..100)", Family::default() },
            traffic_weight_ratio: reg! { r, "traffic_weight_ratio", "Share of the app's traffic the region gets (0..1)", Family::default() },
            replication_lag: reg! { r, "replication_lag_seconds", "Seconds of writes the region's database lacks, as failover.replication.lagFrom (postgres or metrics) last read it; absent when not known", Family::default() },
            app_condition: reg! { r, "app_condition", "1 when the app's condition (Ready, Degraded, FailedOver, FlapDamped, PromotionBlocked, TrafficPublished, ...) is True", Family::default() },
            failovers: reg! { r, "failovers", "Moves of traffic from one region to another, by reason; planned=\"false\" for failovers forced by a failure", Family::default() },
            drills: reg! { r, "drills", "Failover drills ended, by result (Succeeded, Aborted, Skipped)", Family::default() },
            drill_move_seconds: reg! { r, "drill_move_seconds", "Seconds the app's last drill took to move traffic away", Family::default() },
            decision_latency: reg! { r, "decision_latency_seconds", "From the health round that decided a move to the new weights in every sink", histogram() },
            reconcile_duration: reg! { r, "reconcile_duration_seconds", "Duration of one app reconcile", histogram() },
            reconcile_errors: reg! { r, "reconcile_errors", "Failed reconciles by kind of error", Family::default() },
            probe_duration: reg! { r, "probe_duration_seconds", "Duration of region API server probes", Family::new_with_constructor(histogram) },
            api_writes: reg! { r, "api_writes", "Writes the operator sent, by API server (hub, member) and kind (at steady state only observer_lease renewals)", Family::default() },
            leader: reg! { r, "leader", "1 while this replica holds the Lease and writes, 0 while it stands by", Gauge::default() },
            registry: Registry::default(),
        };
        register_process_info(&mut r);
        Metrics {
            registry: r,
            ..metrics
        }
    }
}

/// The app conditions exported as `multiregion_app_condition`.
pub const CONDITIONS: [&str; 11] = [
    "Ready",
    "Degraded",
    "FailedOver",
    "FailbackPending",
    "PromotionBlocked",
    "FlapDamped",
    "AllRegionsUnhealthy",
    "Conflict",
    "TrafficPublished",
    "OverrideUnhealthy",
    "EvidenceUnknown",
];

/// The process's resident memory, CPU time, open files and start time,
/// from /proc/self (Linux), in the names Prometheus' clients use.
fn process_metrics(out: &mut String) {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let number = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok());
    // USER_HZ is 100 on Linux; the page size 4 KiB on the platforms served.
    let cpu = number(11).zip(number(12)).map(|(u, s)| (u + s) / 100.0);
    let rss = number(21).map(|pages| pages * 4096.0);
    let fds = std::fs::read_dir("/proc/self/fd").map(|d| d.count()).ok();
    let lines = [
        (
            "process_cpu_seconds_total",
            "counter",
            "CPU time used, user and system",
            cpu,
        ),
        (
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory",
            rss,
        ),
        (
            "process_open_fds",
            "gauge",
            "Open file descriptors",
            fds.map(|n| n as f64),
        ),
    ];
    let body = out.strip_suffix("# EOF\n").map(str::to_string);
    let Some(mut body) = body else {
        return;
    };
    for (name, kind, help, value) in lines {
        if let Some(value) = value {
            body.push_str(&format!(
                "# HELP {name} {help}.\n# TYPE {name} {kind}\n{name} {value}\n"
            ));
        }
    }
    body.push_str("# EOF\n");
    *out = body;
}

/// Records the time from its creation to its drop into a histogram:
/// `let _timer = metrics.time(&metrics.reconcile_duration);`.
pub struct Timer<'a> {
    histogram: &'a Histogram,
    started: std::time::Instant,
}

impl Drop for Timer<'_> {
    fn drop(&mut self) {
        self.histogram.observe(self.started.elapsed().as_secs_f64());
    }
}

impl Metrics {
    /// Times what runs until the returned guard drops.
    pub fn time<'a>(&self, histogram: &'a Histogram) -> Timer<'a> {
        Timer {
            histogram,
            started: std::time::Instant::now(),
        }
    }

    /// Drops every series of a deleted app, so /metrics shows only apps
    /// that exist.
    pub fn forget_app(&self, namespace: &str, app: &str, regions: &[String], reasons: &[String]) {
        for region in regions {
            let labels = AppRegionLabels {
                namespace: namespace.to_string(),
                app: app.to_string(),
                region: region.clone(),
            };
            self.app_region_healthy.remove(&labels);
            self.traffic_weight.remove(&labels);
            self.traffic_weight_ratio.remove(&labels);
        }
        for condition in CONDITIONS {
            self.app_condition.remove(&ConditionLabels {
                namespace: namespace.to_string(),
                app: app.to_string(),
                condition: condition.to_string(),
            });
        }
        for reason in reasons {
            self.failovers
                .remove(&FailoverLabels::new(namespace, app, reason));
        }
        for result in ["Succeeded", "Aborted", "Skipped"] {
            self.drills.remove(&DrillLabels {
                namespace: namespace.to_string(),
                app: app.to_string(),
                result: result.to_string(),
            });
        }
        self.drill_move_seconds.remove(&AppLabels {
            namespace: namespace.to_string(),
            app: app.to_string(),
        });
    }

    /// Counts one write.
    pub fn wrote(&self, cluster: &str, kind: &str) {
        self.api_writes
            .get_or_create(&WriteLabels {
                apiserver: cluster.to_string(),
                kind: kind.to_string(),
            })
            .inc();
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        process_metrics(&mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::verb;
    use http::{Method, Uri};

    #[test]
    fn the_exposition_carries_process_and_build_metrics_and_ends_with_eof() {
        let text = super::Metrics::default().encode();
        for name in [
            "process_resident_memory_bytes",
            "process_cpu_seconds_total",
            "multiregion_build_info",
            "multiregion_leader",
        ] {
            assert!(text.contains(name), "{name} in {text}");
        }
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn verbs_follow_the_path_shape() {
        let cases = [
            (Method::GET, "/api/v1/namespaces/a/services/web", "get"),
            (
                Method::GET,
                "/api/v1/namespaces/a/services?labelSelector=x",
                "list",
            ),
            (
                Method::GET,
                "/api/v1/namespaces/a/services?labelSelector=x&watch=true",
                "watch",
            ),
            (
                Method::GET,
                "/apis/apps/v1/deployments?watch=true&resourceVersion=1",
                "watch",
            ),
            (Method::GET, "/apis/apps/v1/deployments", "list"),
            (Method::GET, "/api/v1/namespaces/a", "get"),
            (Method::GET, "/api/v1/namespaces", "list"),
            (
                Method::POST,
                "/apis/apps/v1/namespaces/a/deployments",
                "create",
            ),
            (
                Method::PATCH,
                "/apis/x.io/v1/namespaces/a/apps/web/status",
                "patch",
            ),
            (
                Method::PUT,
                "/apis/coordination.k8s.io/v1/namespaces/a/leases/l",
                "update",
            ),
            (
                Method::DELETE,
                "/apis/apps/v1/namespaces/a/deployments/web",
                "delete",
            ),
            (
                Method::DELETE,
                "/apis/apps/v1/namespaces/a/deployments?labelSelector=x",
                "deletecollection",
            ),
            (Method::GET, "/readyz", "other"),
            (Method::GET, "/version", "other"),
            (Method::GET, "/apis/apps/v1", "other"),
        ];
        for (method, uri, want) in cases {
            assert_eq!(
                verb(&method, &uri.parse::<Uri>().unwrap()),
                want,
                "{method} {uri}"
            );
        }
    }
}
