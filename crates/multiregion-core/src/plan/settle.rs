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

/// When a reconcile ran, as far as writing its status is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Moment {
    /// No health round judged the app in this reconcile (one woken by a
    /// Deployment's readiness changing, say).
    pub between_rounds: bool,
    /// The app is settling in: less than two health intervals (or its
    /// `startupSeconds`, if longer) since the operator (this process) first
    /// judged it.
    pub settling_in: bool,
    /// The reconcile announces something (an Event): its status is written.
    pub announcing: bool,
}

/// Whether the status a reconcile settled on is written. It is, unless it
/// announces nothing and tells nothing a round would soon tell: between
/// rounds, a change of ready replica counts alone
/// (`only_readiness_moved`); while a new app settles in, that its regions
/// wait for their workloads (`nothing_judged_yet`). Once it has settled in
/// (two intervals or `startupSeconds` after its first round, whichever is
/// longer), an app's status is written whatever it says.
pub fn worth_writing(
    written: &MultiRegionAppStatus,
    next: &MultiRegionAppStatus,
    moment: Moment,
) -> bool {
    let readiness_only = moment.between_rounds && only_readiness_moved(written, next);
    let too_early = moment.settling_in && nothing_judged_yet(written, next);
    moment.announcing || !(readiness_only || too_early)
}

/// What becomes of the status a reconcile settled on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatusWrite {
    /// Written to the hub.
    Write,
    /// A new app's first status, not worth writing yet
    /// (`nothing_judged_yet`): kept in memory as the next decision's
    /// basis (`held_basis`), so its verdicts and failed rounds count.
    HoldBack,
    /// Nothing to write: the hub holds it, or the change is left for the
    /// next round (`only_readiness_moved`).
    Skip,
}

/// Whether the status a reconcile settled on (`next`) is written, held
/// back or left, against what the hub holds (`written`).
pub fn status_write(
    written: &MultiRegionAppStatus,
    next: &MultiRegionAppStatus,
    moment: Moment,
) -> StatusWrite {
    if next == written {
        StatusWrite::Skip
    } else if worth_writing(written, next, moment) {
        StatusWrite::Write
    } else if *written == MultiRegionAppStatus::default() {
        StatusWrite::HoldBack
    } else {
        StatusWrite::Skip
    }
}

/// Whether `next` would be an app's first status and some of its regions
/// still wait for their first verdict while none is in trouble: each
/// region either `Healthy` or `Unknown` only because its workload is being
/// placed or its pods start (`WorkloadPending`, `NotObservedYet`,
/// `HttpPending`), at least one of them waiting; `Ready` `Unknown` or
/// `True`; no other condition raising a problem, nothing placed from
/// `spec.resources`, nothing to clean up, no move or drill. While the app
/// settles in, such a status is left to a later round, which writes it
/// with every region's verdict when their pods are ready by then: a new
/// app's first status write is usually its whole first verdict, and (for
/// an app without traffic sinks, whose first weights are recorded as soon
/// as they are published) no later region's verdict is announced as a
/// change of weights. The operator decides each round from the status it
/// held back, so verdicts, failed rounds and clocks count from the
/// rounds that made them.
pub fn nothing_judged_yet(written: &MultiRegionAppStatus, next: &MultiRegionAppStatus) -> bool {
    const ROUTINE: [&str; 3] = ["WorkloadPending", "NotObservedYet", "HttpPending"];
    let waiting = |r: &crate::api::RegionAppStatus| {
        r.health == crate::api::Health::Unknown
            && r.unknown
                .as_ref()
                .is_none_or(|u| ROUTINE.contains(&u.cause.as_str()))
    };
    let quiet_region = |r: &crate::api::RegionAppStatus| {
        let judged_well = r.health == crate::api::Health::Healthy && r.consecutive_failures == 0;
        (waiting(r) || judged_well)
            && r.replication.is_none()
            && r.recent_drops.is_empty()
            && r.ramp.is_none()
    };
    let quiet = |c: &Condition| match c.type_.as_str() {
        "Ready" => c.status != "False",
        "TrafficPublished" => c.status != "False",
        // Only routine causes, as every region is checked to be quiet.
        "EvidenceUnknown" => true,
        _ => c.status != "True",
    };
    *written == MultiRegionAppStatus::default()
        && next.conditions.iter().any(|c| c.type_ == "Ready")
        && next.conditions.iter().all(quiet)
        && next.regions.iter().all(quiet_region)
        && next.regions.iter().any(waiting)
        && next.resources.is_empty()
        && next.cleanup_pending.is_empty()
        && next.data_steps.is_empty()
        && next.last_failover.is_none()
        && next.move_request.is_none()
        && next.pending_move.is_none()
        && next.drill.is_none()
}

/// What the next decision starts from when a new app's first status was
/// held back (`nothing_judged_yet`): the held status, whose verdicts,
/// failed rounds and clocks count, with the weights the hub holds (none
/// yet): weights only decided, never written, are no change to announce
/// when the next round decides others.
pub fn held_basis(
    held: &MultiRegionAppStatus,
    written: &MultiRegionAppStatus,
) -> MultiRegionAppStatus {
    MultiRegionAppStatus {
        weights: written.weights.clone(),
        ..held.clone()
    }
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
    use crate::api::{Health, RegionAppStatus, UnknownEvidence};

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
    fn a_status_is_written_held_back_or_left() {
        let never = MultiRegionAppStatus::default();
        let mut starting = status([0, 0]);
        starting.conditions = vec![condition("Ready", "Unknown")];
        let mut judged = starting.clone();
        judged
            .regions
            .iter_mut()
            .for_each(|r| r.health = Health::Healthy);
        let mut readier = judged.clone();
        readier.regions[0].ready_replicas = 1;
        let moment = |between_rounds, settling_in, announcing| Moment {
            between_rounds,
            settling_in,
            announcing,
        };
        let round = moment(false, true, false);
        let cases = [
            (&never, &never, round, StatusWrite::Skip, "nothing at all"),
            (
                &never,
                &starting,
                round,
                StatusWrite::HoldBack,
                "first, too early",
            ),
            (&never, &judged, round, StatusWrite::Write, "first verdicts"),
            (
                &never,
                &starting,
                moment(false, false, false),
                StatusWrite::Write,
                "settled in",
            ),
            (
                &never,
                &starting,
                moment(false, true, true),
                StatusWrite::Write,
                "announced",
            ),
            (&judged, &judged, round, StatusWrite::Skip, "unchanged"),
            (
                &judged,
                &readier,
                moment(true, false, false),
                StatusWrite::Skip,
                "ready counts between rounds",
            ),
            (
                &judged,
                &readier,
                moment(false, false, false),
                StatusWrite::Write,
                "ready counts in a round",
            ),
        ];
        for (written, next, moment, expected, why) in cases {
            assert_eq!(status_write(written, next, moment), expected, "{why}");
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

    fn condition(type_: &str, status: &str) -> Condition {
        Condition {
            type_: type_.into(),
            status: status.into(),
            reason: "Because".into(),
            message: String::new(),
            last_transition_time: Time(Timestamp::UNIX_EPOCH),
            observed_generation: Some(1),
        }
    }

    #[test]
    fn a_new_apps_first_status_waits_for_its_first_verdict_unless_it_tells_something() {
        let never = MultiRegionAppStatus::default();
        let mut pending = status([0, 0]);
        pending.conditions = vec![
            condition("Ready", "Unknown"),
            condition("FailedOver", "False"),
            condition("EvidenceUnknown", "False"),
        ];
        pending.regions[0].unknown = Some(UnknownEvidence {
            cause: "WorkloadPending".into(),
            message: "the Deployment is not placed yet".into(),
            since: Time(Timestamp::UNIX_EPOCH),
        });
        pending.conditions[2] = condition("EvidenceUnknown", "True");
        assert!(nothing_judged_yet(&never, &pending));
        let moment = |between_rounds, settling_in, announcing| Moment {
            between_rounds,
            settling_in,
            announcing,
        };
        assert!(!worth_writing(&never, &pending, moment(false, true, false)));
        assert!(!worth_writing(&never, &pending, moment(true, true, false)));
        assert!(
            worth_writing(&never, &pending, moment(false, false, false)),
            "two intervals later, written whatever it says"
        );
        assert!(
            worth_writing(&never, &pending, moment(false, true, true)),
            "announced"
        );
        assert!(!nothing_judged_yet(&pending, &pending), "written before");

        let mut partly = pending.clone();
        partly.regions[1].health = Health::Healthy;
        partly.conditions[0] = condition("Ready", "True");
        assert!(
            nothing_judged_yet(&never, &partly),
            "one region judged, the other still starting: held"
        );
        let mut judged = partly.clone();
        judged.regions[0].health = Health::Healthy;
        judged.regions[0].unknown = None;
        assert!(!nothing_judged_yet(&never, &judged), "every verdict");
        let mut failing = partly.clone();
        failing.regions[1].consecutive_failures = 1;
        assert!(!nothing_judged_yet(&never, &failing), "a failed round");
        let mut unhealthy = partly.clone();
        unhealthy.regions[1].health = Health::Unhealthy;
        assert!(!nothing_judged_yet(&never, &unhealthy), "a bad verdict");
        let mut invalid = pending.clone();
        invalid.conditions[0] = condition("Ready", "False");
        assert!(!nothing_judged_yet(&never, &invalid), "an invalid spec");
        let mut conflict = pending.clone();
        conflict.conditions.push(condition("Conflict", "True"));
        assert!(!nothing_judged_yet(&never, &conflict), "a conflict");
        let mut placed = pending.clone();
        placed.resources.push(crate::api::ResourceRef::default());
        assert!(!nothing_judged_yet(&never, &placed), "objects to remember");
        let mut troubled = pending.clone();
        troubled.regions[1].unknown = Some(UnknownEvidence {
            cause: "MemberTroubled".into(),
            message: "API server answers 503".into(),
            since: Time(Timestamp::UNIX_EPOCH),
        });
        assert!(
            !nothing_judged_yet(&never, &troubled),
            "a member in trouble"
        );
        let mut silent = pending.clone();
        silent.conditions.clear();
        assert!(!nothing_judged_yet(&never, &silent), "no Ready condition");
    }
}
