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
    let carries: Vec<bool> = regions
        .iter()
        .zip(&damped)
        .map(|(r, damped)| r.eligible() && !damped && !unconfigured(r))
        .collect();
    let mut steps: Vec<Ramp> = regions
        .iter()
        .zip(&carries)
        .map(|(r, &carries)| if carries { ramp(inputs, r) } else { Ramp::Full })
        .collect();
    // A ramp hands traffic over from regions at full weight: with none of
    // those, the returning regions take it all.
    let anyone_full = steps
        .iter()
        .zip(&carries)
        .any(|(s, &c)| c && matches!(s, Ramp::Full));
    if !anyone_full {
        steps = regions.iter().map(|_| Ramp::Full).collect();
    }
    let ramps = steps.iter().map(Ramp::recorded).collect();
    let shares: Vec<i32> = regions
        .iter()
        .zip(carries.iter().zip(&steps))
        .map(|(r, (&carries, step))| match step {
            _ if !carries => 0,
            Ramp::Full => r.spec.weight,
            Ramp::Held => 0,
            Ramp::Step(share, _) => (r.spec.weight * share / 100).max(1),
        })
        .collect();
    let weights = if shares.iter().any(|&s| s > 0) {
        weights::normalise(&shares)
    } else {
        no_healthy_weights(inputs, regions)
    };
    let writer = super::writer::choose(inputs, regions, &weights);
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
    outcome.writer = writer.writer;
    outcome.events = writer.warnings;
    // The database's reason first: a missing copy only holds a region back.
    outcome.flags.promotion_blocked = writer.blocked.or(unconfigured_message(regions));
    outcome.drops = drops;
    outcome.ramps = ramps;
    outcome
}

/// Where a region that may carry traffic stands on its way back.
enum Ramp {
    /// Its full weight: no steps configured, seen for the first time, or
    /// already carrying traffic outside a ramp.
    Full,
    /// Coming back but not trusted yet (a failed round, or fewer than
    /// successThreshold good rounds since): weight 0.
    Held,
    /// This percent of its weight, since then.
    Step(i32, Timestamp),
}

impl Ramp {
    fn recorded(&self) -> Option<(i32, Timestamp)> {
        match self {
            Ramp::Step(share, since) => Some((*share, *since)),
            _ => None,
        }
    }
}

/// Stepped recovery (`failover.failbackSteps`): a region that comes back
/// to traffic (it had weight 0 after being judged) climbs the steps, one
/// per `failbackStepSeconds`, and drops to 0 on a failed round.
fn ramp(inputs: &Inputs, region: &RegionView) -> Ramp {
    let failover = &inputs.spec.failover;
    let Some(previous) = region.previous else {
        return Ramp::Full;
    };
    let ramping = previous.ramp.as_ref();
    let carried = previous.weight > 0 || previous.health == crate::api::Health::Unknown;
    if failover.failback_steps.is_empty()
        || region.spec.weight == 0
        || (ramping.is_none() && carried)
    {
        return Ramp::Full;
    }
    let threshold = inputs.spec.health_check.success_threshold;
    if region.counters.failures > 0 || region.counters.successes < threshold {
        return Ramp::Held;
    }
    let Some(step) = ramping else {
        return Ramp::Step(failover.failback_steps[0], inputs.now);
    };
    let since = step.since.0;
    if inputs.now.as_second() - since.as_second() < i64::from(failover.failback_step_seconds) {
        return Ramp::Step(step.share, since);
    }
    match failover
        .failback_steps
        .iter()
        .copied()
        .find(|&s| s > step.share)
    {
        Some(next) if next < 100 => Ramp::Step(next, inputs.now),
        _ => Ramp::Full,
    }
}

/// A region that does not carry traffic yet and misses a propagated
/// ConfigMap or Secret, or could not be placed (Conflict, refused): it
/// gains no weight until that is mended. One that carries traffic keeps it
/// (a copy deleted by hand is put back; a refusal is no sign it stopped
/// serving).
fn unconfigured(region: &RegionView) -> bool {
    let carried = region.previous.is_some_and(|p| p.weight > 0);
    region.obs.promotion_block().is_some() && !carried
}

fn unconfigured_message(regions: &[RegionView]) -> Option<(&'static str, String)> {
    let held: Vec<String> = regions
        .iter()
        .filter(|r| r.eligible() && unconfigured(r))
        .map(|r| {
            let (_, missing) = r.obs.promotion_block().unwrap_or_default();
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
