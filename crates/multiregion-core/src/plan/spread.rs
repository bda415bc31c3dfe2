//! Stage 2 for ActiveActive: every Healthy region that is not taken out
//! carries its share of traffic; every region runs full replicas.
//!
//! Flap damping: each time a region loses its traffic because it turned
//! Unhealthy, that is counted for the region; past `maxFailoversPerHour` in
//! the sliding hour, the region keeps weight 0, even when Healthy, until the
//! hour has room again.

use jiff::Timestamp;

use super::rounds::RegionView;
use super::{Assignment, Inputs, Outcome, Role, weights};
use crate::api::AllUnhealthy;

/// Roles, replicas and weights for ActiveActive.
pub(super) fn decide(inputs: &Inputs, regions: &[RegionView]) -> Outcome {
    // With no region eligible, weights are kept (or spread): nothing drops.
    let any_eligible = regions.iter().any(|r| r.eligible());
    let drops: Vec<Vec<Timestamp>> = regions
        .iter()
        .map(|r| drops(inputs, r, any_eligible))
        .collect();
    let max = inputs.spec.failover.max_failovers_per_hour as usize;
    let damped: Vec<bool> = drops.iter().map(|d| d.len() >= max).collect();
    let shares: Vec<i32> = regions
        .iter()
        .zip(&damped)
        .map(|(r, damped)| {
            if r.eligible() && !damped && !unconfigured(r) {
                r.spec.weight
            } else {
                0
            }
        })
        .collect();
    let weights = if shares.iter().any(|&s| s > 0) {
        weights::normalise(&shares)
    } else {
        no_healthy_weights(inputs, regions)
    };
    let assignments = regions
        .iter()
        .zip(weights)
        .map(|(region, weight)| Assignment {
            role: if region.taken_out() {
                Role::Drained
            } else {
                Role::Active
            },
            replicas: region.full,
            weight,
        })
        .collect();
    let mut outcome = Outcome {
        assignments,
        ..Outcome::default()
    };
    outcome.flags.flap_damped = damped_message(regions, &drops, &damped, max);
    outcome.flags.promotion_blocked = unconfigured_message(regions);
    outcome.drops = drops;
    outcome
}

/// A region that does not carry traffic yet and misses a propagated
/// ConfigMap or Secret: it gains no weight until the copy is there. One
/// that carries traffic keeps it (a copy deleted by hand is put back).
fn unconfigured(region: &RegionView) -> bool {
    let carried = region.previous.is_some_and(|p| p.weight > 0);
    region.obs.missing_config.is_some() && !carried
}

fn unconfigured_message(regions: &[RegionView]) -> Option<(&'static str, String)> {
    let held: Vec<String> = regions
        .iter()
        .filter(|r| r.eligible() && unconfigured(r))
        .map(|r| {
            let missing = r.obs.missing_config.as_deref().unwrap_or_default();
            format!("{}: {missing}", r.name())
        })
        .collect();
    (!held.is_empty()).then(|| {
        (
            "ConfigNotPropagated",
            format!(
                "held at weight 0 until the propagated config is there ({})",
                held.join("; ")
            ),
        )
    })
}

/// When the region lost its traffic to ill health in the sliding hour,
/// this decision included.
fn drops(inputs: &Inputs, region: &RegionView, any_eligible: bool) -> Vec<Timestamp> {
    let mut drops: Vec<Timestamp> = region
        .previous
        .map(|p| p.recent_drops.iter().map(|t| t.0).collect())
        .unwrap_or_default();
    drops.retain(|t| inputs.now.as_second() - t.as_second() < 3600);
    let carried = region.previous.is_some_and(|p| p.weight > 0);
    if any_eligible && carried && !region.healthy() && !region.taken_out() {
        drops.push(inputs.now);
    }
    drops
}

fn damped_message(
    regions: &[RegionView],
    drops: &[Vec<Timestamp>],
    damped: &[bool],
    max: usize,
) -> Option<String> {
    let held: Vec<String> = regions
        .iter()
        .zip(drops)
        .zip(damped)
        .filter(|(_, damped)| **damped)
        .map(|((r, d), _)| format!("{} ({} drops)", r.name(), d.len()))
        .collect();
    (!held.is_empty()).then(|| {
        format!(
            "{} lost traffic at least {max} times in the last hour; weight 0 until the hour has room",
            held.join(", ")
        )
    })
}

/// Weights when no region may carry traffic. KeepLast: what was published
/// (drained and cordoned regions still go to 0). Even: equal shares over the
/// regions not taken out.
fn no_healthy_weights(inputs: &Inputs, regions: &[RegionView]) -> Vec<i32> {
    match inputs.spec.failover.all_unhealthy {
        AllUnhealthy::KeepLast => {
            let last: Vec<i32> = regions
                .iter()
                .map(|r| {
                    if r.taken_out() {
                        0
                    } else {
                        r.previous.map_or(0, |p| p.weight)
                    }
                })
                .collect();
            if last.iter().sum::<i32>() == 0 && inputs.previous.weights.is_some() {
                // Everything that served was taken out by hand: nothing to keep.
                last
            } else {
                weights::normalise(&last)
            }
        }
        AllUnhealthy::Even => {
            let shares: Vec<i32> = regions.iter().map(|r| i32::from(!r.taken_out())).collect();
            weights::normalise(&shares)
        }
    }
}
