//! Where an ActiveActive app's writable database belongs. Every region
//! serves, but a single-primary store (PostgreSQL read through
//! `lagFrom.postgres`) takes writes in one region only. The primary stays
//! where it is while its region may carry traffic; once that region may
//! not (Unhealthy, drained, cordoned, held out by a drill), it goes to the
//! region that may and whose standby lacks least, through the same RPO gate
//! as an ActivePassive failover. The data tier then takes the steps
//! (`replication::steps`: fence, replay, promote) before the weights move.

use super::rounds::RegionView;
use super::single::{blocked_message, lag_warning, on_old_history, replication_rank, within_lag};
use super::{Event, Inputs, Writer};
use crate::api::{OnLagExceeded, Replication};

use super::replication::DbRole;

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
/// PostgreSQL; nothing for other apps, or while no primary is known.
pub(super) fn choose(inputs: &Inputs, regions: &[RegionView]) -> Choice {
    let Some(replication) = inputs.spec.failover.replication.as_ref() else {
        return Choice::default();
    };
    if replication.lag_from.postgres.is_none() {
        return Choice::default();
    }
    let Some(current) = primary_region(inputs, regions) else {
        return Choice::default();
    };
    let stays = |region: &RegionView| region.name() == current && region.eligible();
    if regions.iter().any(stays) || !regions.iter().any(RegionView::eligible) {
        // Where it is, or nowhere better: the data tier still fences any
        // other primary that takes writes.
        return stay(current);
    }
    let mut choice = promote(regions, replication);
    if let Some(writer) = &mut choice.writer {
        writer.moving = Some(answers(regions, current));
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

/// The region of the primary that takes writes, as read this round; where
/// the data tier last read one when none does (its region lost with it)
/// or when several do (an old primary back unfenced: it is the one fenced).
fn primary_region(inputs: &Inputs, regions: &[RegionView]) -> Option<String> {
    let writing: Vec<&str> = regions
        .iter()
        .filter(|r| {
            r.obs
                .replica
                .as_ref()
                .is_some_and(|l| l.role == DbRole::Primary && !l.fenced && !l.parted)
        })
        .map(RegionView::name)
        .collect();
    if let [one] = writing[..] {
        return Some(one.to_string());
    }
    let kept = inputs.previous.primary_position.as_ref();
    let marked = inputs.primary_mark.map(|m| &m.region);
    marked.or(kept.map(|p| &p.region)).cloned()
}

/// The old primary still answers and takes writes: the move is planned and
/// waits until the new primary has replayed all it wrote.
fn answers(regions: &[RegionView], current: String) -> bool {
    regions.iter().any(|r| {
        r.name() == current
            && r.obs
                .replica
                .as_ref()
                .is_some_and(|l| l.role == DbRole::Primary && !l.fenced)
    })
}

/// The eligible region whose standby lacks least and passes the RPO gate
/// (`onExceeded: Promote` passes the first anyway, with a Warning).
fn promote(regions: &[RegionView], replication: &Replication) -> Choice {
    let mut candidates: Vec<&RegionView> = regions.iter().filter(|r| r.eligible()).collect();
    candidates.sort_by_key(|r| replication_rank(r));
    let mut refused = Vec::new();
    for region in candidates {
        let name = region.name();
        if on_old_history(region) {
            refused.push(format!(
                "{name}: on an old primary's history (NeedsRejoin), never promoted"
            ));
            continue;
        }
        let mut warnings = Vec::new();
        match within_lag(region, replication) {
            Ok(()) => {}
            Err(lag) if replication.on_exceeded == OnLagExceeded::Promote => {
                warnings.push(lag_warning(region, &lag, replication, "promoting"));
            }
            Err(lag) => {
                refused.push(format!("{name}: lag {lag}"));
                continue;
            }
        }
        return Choice {
            writer: Some(Writer {
                region: name.to_string(),
                moving: Some(false),
            }),
            warnings,
            blocked: None,
        };
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
