//! Stage 4: what applying a decision reported, folded into the decided
//! status, so the status the operator writes is built here, from results,
//! and nowhere else.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use super::conditions::Conditions;
use super::{Decision, Event, EventReason};
use crate::api::MultiRegionAppStatus;

/// How publishing the weights to the traffic sinks went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SinkOutcome {
    /// The app has no `spec.traffic`.
    NotConfigured,
    /// Not written yet: the move is recorded in status before the sinks
    /// get it, so a status write that fails afterwards cannot undo it.
    Pending,
    /// Every sink holds the decided weights.
    Published,
    /// Some sink could not be written; names which and why.
    Failed(String),
    /// A sink object of the chosen name exists and is not the operator's:
    /// it is left alone.
    Conflict(String),
}

impl SinkOutcome {
    /// Every configured sink holds the decided weights.
    pub fn confirmed(&self) -> bool {
        matches!(self, SinkOutcome::NotConfigured | SinkOutcome::Published)
    }
}

/// What the apply stages reported.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Applied {
    pub sinks: SinkOutcome,
    /// Regions removed from spec whose objects are now gone.
    pub cleaned_up: Vec<String>,
    /// `status.resources`: the objects of `spec.resources` that may be
    /// placed in a region now.
    pub resources: Vec<crate::api::ResourceRef>,
    /// When the weights were published (the status write that follows
    /// completes the move).
    pub now: Timestamp,
}

/// Whether `next` differs from `written` only in the regions' ready
/// replica counts. Between health rounds such a change (a Deployment's
/// pods becoming ready) is left for the next round to write, with what
/// that round judges: the counts are read from the regions' watches
/// again then, so nothing is lost, and three regions' pods becoming ready
/// cost one status write instead of three.
pub fn only_readiness_moved(written: &MultiRegionAppStatus, next: &MultiRegionAppStatus) -> bool {
    if written == next || written.regions.len() != next.regions.len() {
        return false;
    }
    let mut shown = next.clone();
    for (region, before) in shown.regions.iter_mut().zip(&written.regions) {
        region.ready_replicas = before.ready_replicas;
    }
    shown == *written
}

/// The status to write: the decision's, with the sinks' condition, the
/// move's completion time (once every sink has the weights) and what is
/// left to clean up.
pub fn settle(
    decision: &Decision,
    previous: &MultiRegionAppStatus,
    generation: Option<i64>,
    applied: &Applied,
) -> MultiRegionAppStatus {
    let mut status = decision.status.clone();
    let mut c = Conditions::new(&previous.conditions, applied.now, generation);
    match &applied.sinks {
        SinkOutcome::NotConfigured => {}
        SinkOutcome::Pending => c.unknown(
            "TrafficPublished",
            "Publishing",
            "the new weights are being written to the traffic sinks",
        ),
        SinkOutcome::Published => c.set(
            "TrafficPublished",
            true,
            "Published",
            "weights are in every traffic sink",
        ),
        SinkOutcome::Failed(message) => {
            c.set("TrafficPublished", false, "SinkWriteFailed", message)
        }
        SinkOutcome::Conflict(message) => {
            c.set("TrafficPublished", false, "SinkConflict", message);
            let mut conflicts = conflict_message(&status.conditions);
            conflicts.push(message.clone());
            c.set("Conflict", true, "ObjectNotOwned", conflicts.join("; "));
        }
    }
    c.merge_into(&mut status.conditions);
    if applied.sinks.confirmed()
        && let Some(record) = status.last_failover.as_mut()
        && record.completed_at.is_none()
    {
        record.completed_at = Some(Time(applied.now));
    }
    status
        .cleanup_pending
        .retain(|region| !applied.cleaned_up.contains(region));
    status.resources = applied.resources.clone();
    status
}

/// The placed objects' conflicts the decision already reports.
fn conflict_message(conditions: &[Condition]) -> Vec<String> {
    conditions
        .iter()
        .find(|c| c.type_ == "Conflict" && c.status == "True")
        .map(|c| vec![c.message.clone()])
        .unwrap_or_default()
}

/// `status` (decided with the last valid spec) marked `Ready=False` with
/// reason `InvalidSpec` naming the field, announced once per generation
/// (as `previous` tells).
pub fn with_invalid_spec(
    status: MultiRegionAppStatus,
    previous: &MultiRegionAppStatus,
    generation: Option<i64>,
    message: &str,
    now: Timestamp,
) -> (MultiRegionAppStatus, Option<Event>) {
    let refusal = (EventReason::InvalidSpec, message);
    with_refusal(status, previous, generation, refusal, now)
}

/// `status` (decided with the last spec that could be placed) marked
/// `Ready=False` with `reason` (InvalidSpec, NotAllowed) and the message
/// naming the field, announced once per generation and reason (as
/// `previous` tells).
pub fn with_refusal(
    mut status: MultiRegionAppStatus,
    previous: &MultiRegionAppStatus,
    generation: Option<i64>,
    (reason, message): (EventReason, &str),
    now: Timestamp,
) -> (MultiRegionAppStatus, Option<Event>) {
    let announced = previous.conditions.iter().any(|c| {
        c.type_ == "Ready" && c.reason == reason.as_str() && c.observed_generation == generation
    });
    let mut c = Conditions::new(&previous.conditions, now, generation);
    c.set("Ready", false, reason.as_str(), message);
    c.merge_into(&mut status.conditions);
    let event = (!announced).then(|| Event::warning(reason, message));
    (status, event)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{Health, RegionAppStatus};

    fn status(ready: [i32; 2]) -> MultiRegionAppStatus {
        let region = |name: &str, ready_replicas| RegionAppStatus {
            name: name.into(),
            health: Health::Unknown,
            desired_replicas: 1,
            ready_replicas,
            ..Default::default()
        };
        MultiRegionAppStatus {
            regions: vec![region("us-east", ready[0]), region("eu-west", ready[1])],
            ..Default::default()
        }
    }

    #[test]
    fn only_ready_counts_moving_is_left_for_the_next_round() {
        let written = status([0, 0]);
        assert!(only_readiness_moved(&written, &status([1, 0])));
        assert!(only_readiness_moved(&written, &status([1, 1])));
        assert!(!only_readiness_moved(&written, &written), "nothing moved");
        let mut judged = status([1, 0]);
        judged.regions[0].health = Health::Healthy;
        assert!(
            !only_readiness_moved(&written, &judged),
            "a verdict is written"
        );
        let mut fewer = status([1, 0]);
        fewer.regions.pop();
        assert!(!only_readiness_moved(&written, &fewer), "a region went");
    }
}
