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
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WriteLabels {
    /// `hub` or `member`.
    pub cluster: String,
    /// What was written: status, region_status, event, sink, placement, removal.
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// `hub` or `member`.
    pub cluster: String,
    /// The Kubernetes verb: get, list, watch, create, update, patch, delete,
    /// deletecollection, or `other` for paths that are not resources.
    pub verb: String,
}

/// Every request this process sends to an API server through a client from
/// [`counted_client`], by cluster and verb. One family for the process, so
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
                    cluster: cluster.clone(),
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
    pub app_region_healthy: Family<AppRegionLabels, Gauge>,
    pub traffic_weight: Family<AppRegionLabels, Gauge>,
    pub failovers: Family<FailoverLabels, Counter>,
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
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1.0, 2.5, 5.0, 10.0,
    ]
    .into_iter()
}

/// The request counter every client shares, and the build's version.
fn register_process_info(r: &mut Registry) {
    r.register(
        "api_requests",
        "Requests the operator sent to API servers, by cluster and verb",
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
            region_reachable: register(
                &mut r,
                "region_reachable",
                "1 when the region's API server answers its probes",
                Family::default(),
            ),
            app_region_healthy: register(
                &mut r,
                "app_region_healthy",
                "1 when the app is Healthy in the region",
                Family::default(),
            ),
            traffic_weight: register(
                &mut r,
                "traffic_weight",
                "Published traffic weight of the app in the region (0..100)",
                Family::default(),
            ),
            failovers: register(
                &mut r,
                "failovers",
                "Moves of traffic from one region to another",
                Family::default(),
            ),
            decision_latency: register(
                &mut r,
                "decision_latency_seconds",
                "From the health round that decided a move to the new weights in every sink",
                histogram(),
            ),
            reconcile_duration: register(
                &mut r,
                "reconcile_duration_seconds",
                "Duration of one app reconcile",
                histogram(),
            ),
            reconcile_errors: register(
                &mut r,
                "reconcile_errors",
                "Failed reconciles by kind of error",
                Family::default(),
            ),
            probe_duration: register(
                &mut r,
                "probe_duration_seconds",
                "Duration of region API server probes",
                Family::new_with_constructor(histogram),
            ),
            api_writes: register(
                &mut r,
                "api_writes",
                "Writes the operator sent, by cluster and kind (zero at steady state)",
                Family::default(),
            ),
            leader: register(
                &mut r,
                "leader",
                "1 while this replica holds the Lease and writes, 0 while it stands by",
                Gauge::default(),
            ),
            registry: Registry::default(),
        };
        register_process_info(&mut r);
        Metrics {
            registry: r,
            ..metrics
        }
    }
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
        }
        for reason in reasons {
            self.failovers.remove(&FailoverLabels {
                namespace: namespace.to_string(),
                app: app.to_string(),
                reason: reason.clone(),
            });
        }
    }

    /// Counts one write.
    pub fn wrote(&self, cluster: &str, kind: &str) {
        self.api_writes
            .get_or_create(&WriteLabels {
                cluster: cluster.to_string(),
                kind: kind.to_string(),
            })
            .inc();
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::verb;
    use http::{Method, Uri};

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
