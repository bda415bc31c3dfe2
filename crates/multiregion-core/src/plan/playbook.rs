//! The multi-region playbook's numbers for an app: for the strategy it is
//! written with and for the others, what a region failure costs (time,
//! traffic, data) and what the strategy costs (replicas). Each figure comes
//! from replaying health rounds through `decide` (`whatif`), not from a
//! table of assumptions.

use jiff::Timestamp;
use serde::Serialize;

use crate::api::{MultiRegionAppSpec, ReplicationMode, Strategy};
use crate::plan::whatif::{self, WhatIf};

/// The figures of one strategy for the app.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StrategyFigures {
    pub strategy: Strategy,
    /// The strategy the app is written with.
    pub as_written: bool,
    /// Why this strategy cannot run the app as written (FollowTheSun needs
    /// an activeWindow on every region); the figures are then absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_applicable: Option<String>,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub figures: Option<Figures>,
}

/// What a strategy costs and what a region failure costs under it.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Figures {
    /// Replicas placed across every region, relative to one region's full
    /// size (`workload.replicas`): what the strategy costs in compute.
    pub cost_multiple: f64,
    /// Probability that at least one region serves, for independent region
    /// failures of the given availability.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub availability: Option<f64>,
    /// From the failure to the weights moving: intervalSeconds x
    /// failureThreshold (plus up to one probe interval in a cluster).
    pub detection_seconds: i64,
    /// Share of the traffic sent to the failed region until it is
    /// detected: what clients of this strategy lose meanwhile (0..1).
    pub traffic_lost_until_detected: f64,
    /// Replicas that must start after the failure before the new region
    /// serves at full size (0 when it already runs them).
    pub replicas_to_start: i32,
    /// Writes that may be lost when the region fails.
    pub rpo: String,
    /// From the failure until clients reach the new region.
    pub rto: Rto,
}

/// Recovery time: detection from the spec's numbers, promotion and
/// publication from what this project measured (docs/benchmarks.md), and
/// what cannot be known offline named, not guessed.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Rto {
    /// The sum of the three parts below.
    pub seconds: f64,
    /// `intervalSeconds x failureThreshold` (the measured p99 stays within
    /// it plus one probe interval).
    pub detection_seconds: f64,
    /// The decision, and a database promotion where the operator promotes
    /// one (`lagFrom.postgres`).
    pub promotion_seconds: f64,
    /// The sinks: a gateway's HTTPRoute, or a DNS record's TTL.
    pub publication_seconds: f64,
    /// What comes on top and is not known offline: pods that must start,
    /// ExternalDNS's sync interval.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub plus: Vec<String>,
}

/// Measured: the decision's p99 (`multiregion_decision_latency_seconds`).
const DECISION_SECONDS: f64 = 0.05;
/// Measured: from the third failed round to a gateway's first answer from
/// the new region, p99 (`make bench-traffic`, Traefik, 1 s x 3).
const GATEWAY_SECONDS: f64 = 0.5;
/// Measured: `pg_promote` taking a standby out of recovery
/// (`make bench-replication`).
const DATABASE_PROMOTION_SECONDS: f64 = 0.11;

/// The RTO of a strategy for the spec: detection, then promotion, then
/// publication; `cold_pods` must start before a pilot-light region serves.
pub fn rto(spec: &MultiRegionAppSpec, cold_pods: i32) -> Rto {
    let hc = &spec.health_check;
    let detection = f64::from(hc.interval_seconds * hc.failure_threshold);
    let mut plus = Vec::new();
    let promotes_database = spec
        .failover
        .replication
        .as_ref()
        .is_some_and(|r| r.lag_from.postgres.is_some());
    let promotion = DECISION_SECONDS
        + if promotes_database {
            DATABASE_PROMOTION_SECONDS
        } else {
            0.0
        };
    if cold_pods > 0 {
        plus.push(format!("the start of {cold_pods} pods"));
    }
    let traffic = spec.traffic.as_ref();
    let publication = match (
        traffic.and_then(|t| t.http_route.as_ref()),
        traffic.and_then(|t| t.dns_endpoint.as_ref()),
    ) {
        (Some(_), _) => GATEWAY_SECONDS,
        (None, Some(dns)) => {
            plus.push("ExternalDNS's sync interval".to_string());
            dns.record_ttl as f64
        }
        (None, None) => 0.0,
    };
    Rto {
        seconds: detection + promotion + publication,
        detection_seconds: detection,
        promotion_seconds: promotion,
        publication_seconds: publication,
        plus,
    }
}

impl std::fmt::Display for Rto {
    /// `15.6 s (15 s detection + 0.05 s promotion + 0.5 s publication) + the start of 3 pods`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:.1} s ({} s detection + {} s promotion + {} s publication)",
            self.seconds, self.detection_seconds, self.promotion_seconds, self.publication_seconds
        )?;
        for extra in &self.plus {
            write!(f, " + {extra}")?;
        }
        Ok(())
    }
}

/// Figures for the app's strategy first, then the other two, for a failure
/// of `failed` (default: each strategy's busiest region).
pub fn compare(
    spec: &MultiRegionAppSpec,
    failed: Option<&str>,
    now: Timestamp,
    region_availability: Option<f64>,
) -> Vec<StrategyFigures> {
    let others = [
        Strategy::ActiveActive,
        Strategy::ActivePassive,
        Strategy::FollowTheSun,
    ]
    .into_iter()
    .filter(|s| *s != spec.strategy);
    std::iter::once(spec.strategy)
        .chain(others)
        .map(|strategy| figures_of(spec, strategy, failed, now, region_availability))
        .collect()
}

fn figures_of(
    spec: &MultiRegionAppSpec,
    strategy: Strategy,
    failed: Option<&str>,
    now: Timestamp,
    region_availability: Option<f64>,
) -> StrategyFigures {
    let as_written = strategy == spec.strategy;
    let not_applicable = (strategy == Strategy::FollowTheSun
        && spec.regions.iter().any(|r| r.active_window.is_none()))
    .then(|| "needs spec.regions[].activeWindow on every region".to_string());
    let figures = not_applicable.is_none().then(|| {
        let mut spec = spec.clone();
        spec.strategy = strategy;
        let failed = failed.map_or_else(|| busiest_region(&spec, now), str::to_string);
        let whatif = whatif::simulate(&spec, &failed, now, region_availability);
        measure(&spec, &whatif, &failed)
    });
    StrategyFigures {
        strategy,
        as_written,
        not_applicable,
        figures,
    }
}

/// The region with the most traffic while every region is healthy.
pub fn busiest_region(spec: &MultiRegionAppSpec, now: Timestamp) -> String {
    whatif::simulate(spec, "", now, None)
        .before
        .weights
        .iter()
        .filter(|(_, w)| *w > 0)
        .max_by_key(|(_, w)| *w)
        .or(spec.regions.first().map(|r| (r.name.clone(), 0)).as_ref())
        .map(|(r, _)| r.clone())
        .unwrap_or_default()
}

fn measure(spec: &MultiRegionAppSpec, whatif: &WhatIf, failed: &str) -> Figures {
    let full = spec.workload.replicas.max(1);
    let placed: i32 = whatif.before.placements.iter().map(|p| p.replicas).sum();
    let total_weight: i32 = whatif.before.weights.iter().map(|(_, w)| *w).sum();
    let failed_weight = weight_of(&whatif.before.weights, failed);
    let replicas_to_start = whatif
        .after
        .placements
        .iter()
        .filter(|p| weight_of(&whatif.after.weights, &p.region) > 0)
        .map(|p| {
            let before = whatif
                .before
                .placements
                .iter()
                .find(|b| b.region == p.region)
                .map_or(0, |b| b.replicas);
            (p.replicas - before).max(0)
        })
        .sum();
    Figures {
        cost_multiple: f64::from(placed) / f64::from(full),
        availability: whatif.availability,
        detection_seconds: whatif.detection_seconds,
        traffic_lost_until_detected: if total_weight > 0 {
            f64::from(failed_weight) / f64::from(total_weight)
        } else {
            0.0
        },
        replicas_to_start,
        rpo: rpo(spec),
        rto: rto(spec, cold_pods(whatif)),
    }
}

/// Pods the regions serving after the failure must start before they can
/// serve at all: those that ran none before (a pilot light). A warm
/// standby serves at once and grows meanwhile.
fn cold_pods(whatif: &WhatIf) -> i32 {
    let before = |region: &str| {
        whatif
            .before
            .placements
            .iter()
            .find(|b| b.region == region)
            .map_or(0, |b| b.replicas)
    };
    whatif
        .after
        .placements
        .iter()
        .filter(|p| weight_of(&whatif.after.weights, &p.region) > 0 && before(&p.region) == 0)
        .map(|p| p.replicas)
        .sum()
}

fn weight_of(weights: &[(String, i32)], region: &str) -> i32 {
    weights
        .iter()
        .find(|(r, _)| r == region)
        .map_or(0, |(_, w)| *w)
}

/// The writes a failure may lose, from the strategy and
/// `failover.replication`.
pub fn rpo(spec: &MultiRegionAppSpec) -> String {
    use crate::api::OnLagExceeded;
    let one_primary = spec
        .failover
        .replication
        .as_ref()
        .is_some_and(|r| r.lag_from.postgres.is_some());
    if spec.strategy == Strategy::ActiveActive && !one_primary {
        return "what the failed region had not replicated (every region writes; no promotion gate)"
            .to_string();
    }
    match &spec.failover.replication {
        None => "not gated (no failover.replication)".to_string(),
        Some(r) if r.on_exceeded == OnLagExceeded::Promote => {
            "not bounded: onExceeded Promote promotes a lagging standby".to_string()
        }
        Some(r) => match r.mode {
            ReplicationMode::Synchronous => "0 (synchronous)".to_string(),
            ReplicationMode::SemiSynchronous => {
                "0 when the promoted region acknowledged (semi-synchronous)".to_string()
            }
            ReplicationMode::Asynchronous => {
                format!(
                    "up to {} s (asynchronous, gated)",
                    r.max_lag_seconds.unwrap_or_default()
                )
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(strategy: &str, extra: serde_json::Value) -> MultiRegionAppSpec {
        let mut spec = json!({
            "strategy": strategy,
            "regions": [{"name": "us-east"}, {"name": "eu-west"}, {"name": "ap-south"}],
            "workload": {"replicas": 4, "template": {}},
            "healthCheck": {"intervalSeconds": 2, "failureThreshold": 3},
        });
        if let (Some(s), Some(e)) = (spec.as_object_mut(), extra.as_object()) {
            s.extend(e.clone());
        }
        serde_json::from_value(spec).unwrap()
    }

    fn now() -> Timestamp {
        Timestamp::from_second(1_800_000_000).unwrap()
    }

    #[test]
    fn the_strategy_as_written_comes_first_then_the_others() {
        let all = compare(&spec("ActivePassive", json!({})), None, now(), None);
        let order: Vec<Strategy> = all.iter().map(|s| s.strategy).collect();
        assert_eq!(
            order,
            [
                Strategy::ActivePassive,
                Strategy::ActiveActive,
                Strategy::FollowTheSun
            ]
        );
        assert!(all[0].as_written && !all[1].as_written);
    }

    #[test]
    fn active_passive_costs_one_full_region_plus_standbys_and_loses_all_traffic_until_detected() {
        let all = compare(&spec("ActivePassive", json!({})), None, now(), Some(0.99));
        let f = all[0].figures.as_ref().unwrap();
        // 4 active + 1 standby in each of the two others.
        assert_eq!(f.cost_multiple, 6.0 / 4.0);
        assert_eq!(f.traffic_lost_until_detected, 1.0);
        assert_eq!(f.detection_seconds, 6);
        assert_eq!(f.replicas_to_start, 3, "the standby grows from 1 to 4");
        assert!((f.availability.unwrap() - (1.0 - 0.01f64.powi(3))).abs() < 1e-12);
    }

    #[test]
    fn active_active_costs_every_region_and_loses_only_the_failed_share() {
        let all = compare(&spec("ActivePassive", json!({})), None, now(), None);
        let f = all[1].figures.as_ref().unwrap();
        assert_eq!(f.cost_multiple, 3.0);
        assert!((f.traffic_lost_until_detected - 0.34).abs() < 1e-9);
        assert_eq!(f.replicas_to_start, 0);
    }

    #[test]
    fn follow_the_sun_needs_windows_on_every_region() {
        let all = compare(&spec("ActiveActive", json!({})), None, now(), None);
        let fts = &all[2];
        assert_eq!(fts.strategy, Strategy::FollowTheSun);
        assert!(fts.figures.is_none());
        assert!(
            fts.not_applicable
                .as_deref()
                .unwrap()
                .contains("activeWindow")
        );
    }

    #[test]
    fn rpo_follows_the_replication_mode() {
        let with = |mode: &str| {
            rpo(&spec(
                "ActivePassive",
                json!({"failover": {"replication": {"maxLagSeconds": 30, "mode": mode}}}),
            ))
        };
        assert_eq!(with("Synchronous"), "0 (synchronous)");
        assert!(with("SemiSynchronous").starts_with("0 when"));
        assert_eq!(with("Asynchronous"), "up to 30 s (asynchronous, gated)");
        assert!(rpo(&spec("ActivePassive", json!({}))).starts_with("not gated"));
        let promote = spec(
            "ActivePassive",
            json!({"failover": {"replication": {"maxLagSeconds": 30, "mode": "Synchronous", "onExceeded": "Promote"}}}),
        );
        assert!(rpo(&promote).starts_with("not bounded"));
        assert!(rpo(&spec("ActiveActive", json!({}))).contains("every region writes"));
        let one_primary = spec(
            "ActiveActive",
            json!({"failover": {"replication": {"mode": "Synchronous", "lagFrom": {"postgres": {"secretRef": {"name": "db"}}}}}}),
        );
        assert_eq!(rpo(&one_primary), "0 (synchronous)");
    }

    #[test]
    fn rto_adds_detection_promotion_and_publication_and_names_the_rest() {
        let warm = compare(&spec("ActivePassive", json!({})), None, now(), None);
        let rto = &warm[0].figures.as_ref().unwrap().rto;
        assert_eq!((rto.detection_seconds, rto.publication_seconds), (6.0, 0.0));
        assert!(rto.plus.is_empty(), "a warm standby serves at once: {rto}");
        let gateway = spec(
            "ActivePassive",
            json!({"standby": {"replicas": 0}, "traffic": {"httpRoute": {"name": "web", "parentRefs": [{"name": "gw"}], "hostnames": ["web.example.com"]}}}),
        );
        let cold = compare(&gateway, None, now(), None);
        let rto = &cold[0].figures.as_ref().unwrap().rto;
        assert_eq!(rto.publication_seconds, 0.5);
        assert_eq!(
            rto.plus,
            ["the start of 4 pods"],
            "a pilot light starts them first"
        );
        assert_eq!(
            rto.to_string(),
            "6.5 s (6 s detection + 0.05 s promotion + 0.5 s publication) + the start of 4 pods"
        );
        let dns = spec(
            "ActivePassive",
            json!({"traffic": {"dnsEndpoint": {"dnsName": "web.example.com", "recordTTL": 30}},
                   "failover": {"replication": {"mode": "Synchronous", "lagFrom": {"postgres": {"secretRef": {"name": "dbs"}}}}}}),
        );
        let all = compare(&dns, None, now(), None);
        let rto = &all[0].figures.as_ref().unwrap().rto;
        assert!((rto.seconds - 36.16).abs() < 1e-9, "{rto}");
        assert_eq!(rto.plus, ["ExternalDNS's sync interval"]);
    }

    #[test]
    fn a_gated_app_still_fails_over_in_the_replay() {
        let gated = spec(
            "ActivePassive",
            json!({"failover": {"replication": {"maxLagSeconds": 30}}}),
        );
        let all = compare(&gated, Some("us-east"), now(), None);
        let f = all[0].figures.as_ref().unwrap();
        assert_eq!(f.replicas_to_start, 3, "the standby is promoted and grows");
    }
}
