//! Where an ActiveActive app's writable database belongs. Every region
//! serves, but a single-primary store (PostgreSQL read through
//! `lagFrom.postgres`) takes writes in one region only. The primary stays
//! where it is unless its region is positively out (Unhealthy, drained,
//! cordoned, held out by a drill) and carries no traffic: a region not
//! judged yet keeps it, and so does one whose weight was kept because no
//! region is Healthy. Out,
//! it goes to the region that carries traffic and whose standby lacks
//! least, through the same RPO gate as an ActivePassive failover. The data
//! tier then takes the steps (`replication::steps`: fence, replay, promote).

use super::drill::DrillRole;
use super::health::Health;
use super::replication::{DbRole, ReplicaLag};
use super::rounds::RegionView;
use super::single::{admit, blocked_message, replication_rank};
use super::{Event, Inputs, Writer};
use crate::api::Replication;

/// What the writer choice decided: where the primary belongs (with whether
/// getting it there is a move, and a planned one), the Warnings of a
/// promotion past the lag limit, and why none is promotable.
#[derive(Debug, Default)]
pub(super) struct Choice {
    pub writer: Option<Writer>,
    pub warnings: Vec<Event>,
    pub blocked: Option<(&'static str, String)>,
}

/// The writer region for an ActiveActive app whose lag is read from
/// PostgreSQL, given the decided weights (spec order); nothing for other
/// apps, or while no primary is known.
pub(super) fn choose(inputs: &Inputs, regions: &[RegionView], weights: &[i32]) -> Choice {
    let Some(replication) = inputs.spec.failover.replication.as_ref() else {
        return Choice::default();
    };
    if replication.lag_from.postgres.is_none() {
        return Choice::default();
    }
    let Some(current) = primary_region(inputs, regions) else {
        return Choice::default();
    };
    let Some(at) = regions.iter().position(|r| r.name() == current) else {
        return left_the_spec(&current);
    };
    let holder = &regions[at];
    let carrying = |i: usize| weights.get(i).is_some_and(|&w| w > 0);
    if !out(holder) || carrying(at) {
        // Where it is (its region serves, or no region is Healthy and the
        // weights were kept): the data tier still fences any other
        // primary that takes writes.
        return stay(current);
    }
    let candidates: Vec<&RegionView> = (0..regions.len())
        .filter(|&i| carrying(i) && regions[i].obs.promotion_block().is_none())
        .map(|i| &regions[i])
        .collect();
    if candidates.is_empty() {
        // Nowhere better: it stays, and the weights say why.
        return stay(current);
    }
    let mut choice = promote(candidates, replication);
    if let Some(writer) = &mut choice.writer {
        let planned = answers(holder);
        writer.moving = Some(planned);
        // A planned move waits until the target has replayed all the old
        // primary wrote: past the limit, nothing is lost all the same. A
        // retry of a failover warned on its first try.
        if planned || warned_before(inputs, &writer.region) {
            choice.warnings.clear();
        }
    }
    choice
}

fn stay(region: String) -> Choice {
    Choice {
        writer: Some(Writer {
            region,
            moving: None,
        }),
        ..Choice::default()
    }
}

/// The primary's region is no longer in `spec.regions`: nothing is moved
/// blind (its database would be neither fenced nor replayed from).
fn left_the_spec(region: &str) -> Choice {
    Choice {
        blocked: Some((
            "PrimaryRegionRemoved",
            format!(
                "the database's primary is in {region}, no longer in spec.regions: put it back and drain it, so the primary moves before the region goes"
            ),
        )),
        ..Choice::default()
    }
}

/// The region may not keep the primary: Unhealthy, drained, cordoned,
/// held out by a drill. Not one whose health is not known yet.
fn out(region: &RegionView) -> bool {
    region.counters.health == Health::Unhealthy
        || region.taken_out()
        || region.drill == DrillRole::HeldOut
}

/// The region of the primary the data is measured against (the data
/// tier's mark: it only follows a primary that is unambiguous, or one this
/// operator promoted), else the one the status kept, else the one primary
/// that takes writes this round.
fn primary_region(inputs: &Inputs, regions: &[RegionView]) -> Option<String> {
    if let Some(mark) = inputs.primary_mark {
        return Some(mark.region.clone());
    }
    if let Some(kept) = &inputs.previous.primary_position {
        return Some(kept.region.clone());
    }
    let writing: Vec<&str> = regions
        .iter()
        .filter(|r| r.obs.replica.as_ref().is_some_and(takes_writes))
        .map(RegionView::name)
        .collect();
    match writing[..] {
        [one] => Some(one.to_string()),
        _ => None,
    }
}

fn takes_writes(lag: &ReplicaLag) -> bool {
    lag.role == DbRole::Primary && !lag.fenced && !lag.parted
}

/// The old primary's database answers (fenced by an earlier attempt or
/// not): the move is planned and waits until the new primary has replayed
/// all it wrote.
pub(super) fn answers(holder: &RegionView) -> bool {
    holder
        .obs
        .replica
        .as_ref()
        .is_some_and(|l| l.role == DbRole::Primary && !l.parted)
}

/// A failover of the primary to `region` already tried and stopped at a
/// failed step (`PromotionBlocked`, `DataStepFailed`): its Warning was
/// given. Not a planned move that failed (it waited for replay, so it gave
/// none), even if the old primary no longer answers now.
fn warned_before(inputs: &Inputs, region: &str) -> bool {
    let blocked = inputs.previous.conditions.iter().any(|c| {
        c.type_ == "PromotionBlocked" && c.status == "True" && c.reason == "DataStepFailed"
    });
    let steps = &inputs.previous.data_steps;
    blocked
        && steps.iter().any(|s| s.region == region)
        && !steps.iter().any(|s| s.stage == "AwaitReplay")
}

/// The candidate whose standby lacks least and passes the RPO gate
/// (`onExceeded: Promote` passes the first anyway, with a Warning).
fn promote(mut candidates: Vec<&RegionView>, replication: &Replication) -> Choice {
    candidates.sort_by_key(|r| replication_rank(r));
    let mut refused = Vec::new();
    for region in candidates {
        match admit(region, replication, false) {
            Ok(warning) => {
                return Choice {
                    writer: Some(Writer {
                        region: region.name().to_string(),
                        moving: Some(false),
                    }),
                    warnings: warning.into_iter().collect(),
                    blocked: None,
                };
            }
            Err(why) => refused.push(why),
        }
    }
    Choice {
        blocked: Some((
            "ReplicationLag",
            format!(
                "the database cannot follow the traffic: {}",
                blocked_message(replication, &refused)
            ),
        )),
        ..Choice::default()
    }
}
