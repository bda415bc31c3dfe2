//! Prometheus metrics of DESIGN.md section 4, served on `/metrics`.

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
    pub registry: Registry,
}

fn latency_buckets() -> impl Iterator<Item = f64> {
    [
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1.0, 2.5, 5.0, 10.0,
    ]
    .into_iter()
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("multiregion");
        let region_reachable = Family::<RegionLabels, Gauge>::default();
        let app_region_healthy = Family::<AppRegionLabels, Gauge>::default();
        let traffic_weight = Family::<AppRegionLabels, Gauge>::default();
        let failovers = Family::<FailoverLabels, Counter>::default();
        let decision_latency = Histogram::new(latency_buckets());
        let reconcile_duration = Histogram::new(latency_buckets());
        let reconcile_errors = Family::<ErrorLabels, Counter>::default();
        let probe_duration = Family::<RegionLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(latency_buckets())
        });
        registry.register(
            "region_reachable",
            "1 when the region's API server answers its probes",
            region_reachable.clone(),
        );
        registry.register(
            "app_region_healthy",
            "1 when the app is Healthy in the region",
            app_region_healthy.clone(),
        );
        registry.register(
            "traffic_weight",
            "Published traffic weight of the app in the region (0..100)",
            traffic_weight.clone(),
        );
        registry.register(
            "failovers",
            "Moves of traffic from one region to another",
            failovers.clone(),
        );
        registry.register(
            "decision_latency_seconds",
            "From the health round that decided a move to the new weights in every sink",
            decision_latency.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Duration of one app reconcile",
            reconcile_duration.clone(),
        );
        registry.register(
            "reconcile_errors",
            "Failed reconciles by kind of error",
            reconcile_errors.clone(),
        );
        registry.register(
            "probe_duration_seconds",
            "Duration of region API server probes",
            probe_duration.clone(),
        );
        let api_writes = Family::<WriteLabels, Counter>::default();
        registry.register(
            "api_writes",
            "Writes the operator sent, by cluster and kind (zero at steady state)",
            api_writes.clone(),
        );
        Metrics {
            region_reachable,
            app_region_healthy,
            traffic_weight,
            failovers,
            decision_latency,
            reconcile_duration,
            reconcile_errors,
            probe_duration,
            api_writes,
            registry,
        }
    }
}

impl Metrics {
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
