//! What-if: replays health rounds through `decide` to show what the
//! operator would do if a region failed, without a cluster.

use std::collections::BTreeMap;

use jiff::Timestamp;

use crate::api::{MultiRegionAppSpec, MultiRegionAppStatus};
use crate::plan::health::{LagReport, RegionState};
use crate::plan::{Decision, Inputs, Observation, Placement, decide};

/// The outcome of a what-if.
#[derive(Clone, Debug, PartialEq)]
pub struct WhatIf {
    /// Placement and weights with every region healthy.
    pub before: Snapshot,
    /// After the failed region was detected.
    pub after: Snapshot,
    /// `intervalSeconds * failureThreshold`: rounds from the failure to the
    /// decision (plus up to one probe interval in a real cluster).
    pub detection_seconds: i64,
    /// Probability that at least one region serves, for independent
    /// failures with the given per-region availability.
    pub availability: Option<f64>,
}

/// Placement and weights at one moment.
#[derive(Clone, Debug, PartialEq)]
pub struct Snapshot {
    pub placements: Vec<Placement>,
    pub weights: Vec<(String, i32)>,
    pub active: Option<String>,
}

impl From<&Decision> for Snapshot {
    fn from(d: &Decision) -> Self {
        Snapshot {
            placements: d.placements.clone(),
            weights: d.weights.clone(),
            active: d.status.active_region.clone(),
        }
    }
}

/// Every region reachable and running what was last decided, ready, with
/// standbys in sync (the what-if shows the move the RPO gate allows when
/// replication keeps up); `failed`'s API server unreachable.
fn observe(
    spec: &MultiRegionAppSpec,
    last: Option<&Decision>,
    failed: Option<&str>,
    now: Timestamp,
) -> BTreeMap<String, Observation> {
    spec.regions
        .iter()
        .map(|r| {
            let replicas = last
                .and_then(|d| d.placements.iter().find(|p| p.region == r.name))
                .map_or(spec.workload.replicas, |p| p.replicas);
            let region = match failed {
                Some(name) if name == r.name => {
                    RegionState::Unreachable("simulated failure".into())
                }
                _ => RegionState::Reachable,
            };
            let in_sync = LagReport {
                seconds: 0.0,
                observed_at: Some(now),
            };
            let obs = Observation {
                region,
                ..Observation::ready(replicas, replicas)
            }
            .with_lag(in_sync);
            (r.name.clone(), obs)
        })
        .collect()
}

/// Runs rounds with every region healthy until the decision settles, then
/// fails `failed` (its API server unreachable) until it is detected.
pub fn simulate(
    spec: &MultiRegionAppSpec,
    failed: &str,
    now: Timestamp,
    region_availability: Option<f64>,
) -> WhatIf {
    let interval = spec.health_check.interval_seconds.max(1) as i64;
    let mut status = MultiRegionAppStatus::default();
    let mut last: Option<Decision> = None;
    let mut t = now;
    let round = |status: &mut MultiRegionAppStatus,
                 last: &Option<Decision>,
                 fail: bool,
                 t: Timestamp|
     -> Decision {
        let observations = observe(spec, last.as_ref(), fail.then_some(failed), t);
        let d = decide(&Inputs {
            spec,
            generation: None,
            previous: status,
            observations: &observations,
            round: true,
            published: &[],
            drill_requested: None,
            move_request: None,
            sightings: &BTreeMap::new(),
            observers: &[],
            primary_mark: None,
            now: t,
        });
        *status = d.status.clone();
        d
    };
    // Settle: enough healthy rounds for every threshold and a planned move.
    for _ in 0..(spec.health_check.success_threshold.max(1) + 3) {
        last = Some(round(&mut status, &last, false, t));
        t = Timestamp::from_second(t.as_second() + interval).unwrap_or(t);
    }
    let before = Snapshot::from(last.as_ref().expect("at least one round"));
    for _ in 0..spec.health_check.failure_threshold.max(1) {
        last = Some(round(&mut status, &last, true, t));
        t = Timestamp::from_second(t.as_second() + interval).unwrap_or(t);
    }
    let after = Snapshot::from(last.as_ref().expect("at least one round"));
    let availability = region_availability.map(|a| {
        let n = spec.regions.len() as i32;
        1.0 - (1.0 - a.clamp(0.0, 1.0)).powi(n)
    });
    WhatIf {
        before,
        after,
        detection_seconds: interval * spec.health_check.failure_threshold.max(1) as i64,
        availability,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(strategy: &str) -> MultiRegionAppSpec {
        serde_json::from_value(json!({
            "strategy": strategy,
            "regions": [{"name": "us-east"}, {"name": "eu-west"}, {"name": "ap-south"}],
            "workload": {"replicas": 3, "template": {}},
        }))
        .unwrap()
    }

    #[test]
    fn active_passive_what_if_moves_to_the_next_region() {
        let w = simulate(
            &spec("ActivePassive"),
            "us-east",
            Timestamp::from_second(1_800_000_000).unwrap(),
            Some(0.99),
        );
        assert_eq!(w.before.active.as_deref(), Some("us-east"));
        assert_eq!(w.after.active.as_deref(), Some("eu-west"));
        assert_eq!(w.after.weights[1], ("eu-west".to_string(), 100));
        assert_eq!(w.after.placements[1].replicas, 3);
        assert_eq!(w.detection_seconds, 15, "defaults: 5 s x 3");
        let a = w.availability.unwrap();
        assert!((a - (1.0 - 0.01f64.powi(3))).abs() < 1e-12);
    }

    #[test]
    fn active_active_what_if_spreads_over_the_rest() {
        let w = simulate(
            &spec("ActiveActive"),
            "eu-west",
            Timestamp::from_second(1_800_000_000).unwrap(),
            None,
        );
        let after: Vec<i32> = w.after.weights.iter().map(|(_, x)| *x).collect();
        assert_eq!(after, [50, 0, 50]);
        assert_eq!(w.availability, None);
    }
}
