//! The decisions, and nothing else: given an app's spec, what the operator
//! observed of each region, the previous status and `now`, decide each
//! region's health, role, replicas and weight, the new status, and the
//! Events to record. No client, no clock, no I/O: everything is an input,
//! so every rule is a table test.
//!
//! A decision runs in stages, each in its own file:
//! 1. `rounds`: one health round per region, folded into its counters;
//! 2. `single` (ActivePassive, FollowTheSun) or `spread` (ActiveActive):
//!    roles, replicas and weights;
//! 3. `status`: the new status, conditions and Events, assembled in one
//!    place;
//! 4. `settle`: after the operator applied the decision, what it reports
//!    back (sinks written, regions cleaned up) folded into that status.

pub mod conditions;
pub mod controls;
mod drill;
pub mod evidence;
pub mod health;
mod home;
pub mod identity;
pub mod manifest;
pub mod observers;
pub mod overrides;
pub mod playbook;
pub mod pod_security;
pub mod propagate;
pub mod replication;
pub mod resources;
pub mod schedule;
pub mod tenancy;
pub mod traffic;
pub mod weights;
pub mod whatif;

mod rounds;
mod settle;
mod single;
mod spread;
mod status;
mod writer;

use std::collections::BTreeMap;

use jiff::Timestamp;

use crate::api::{MoveReason, MultiRegionAppSpec, MultiRegionAppStatus, PendingMove, Strategy};
use health::{HttpResult, PlacementProblem, RegionState, WorkloadState};

pub use crate::api::Role;
pub use rounds::leaving_region;
pub use settle::{
    Applied, Moment, SinkOutcome, StatusWrite, held_basis, nothing_judged_yet,
    only_readiness_moved, settle, status_write, with_invalid_spec, with_refusal, worth_writing,
};

/// Everything observed of one region for one app at decision time.
#[derive(Clone, Debug, PartialEq)]
pub struct Observation {
    pub region: RegionState,
    /// `Region.spec.cordoned`.
    pub cordoned: bool,
    pub workload: WorkloadState,
    /// What the HTTP check of the region's endpoint says.
    pub http: HttpResult,
    /// The propagated ConfigMaps and Secrets (`spec.propagate`) missing in
    /// the region, named; None when every one is there (or none is asked
    /// for). Such a region is not promoted: ConfigNotPropagated.
    pub missing_config: Option<String>,
    /// What placing the app here last ran into, if anything. Such a region
    /// is not promoted; it is not evidence against a region that serves.
    pub placement: Option<PlacementProblem>,
    /// The Region is being deleted (held by its in-use finalizer while
    /// apps use it): it keeps serving, but nothing is promoted into it.
    pub deleting: bool,
    /// The region's database, read this round (`lagFrom.postgres` or
    /// `lagFrom.metrics`); its lag replaces the annotation's.
    pub replica: Option<replication::ReplicaLag>,
    /// What the live observers' own checks of the same URL say, when the
    /// leader's HTTP check of this region fails (`observers::gate`); None
    /// when it passes or nobody else checks.
    pub endpoint_seen: Option<observers::Sightings>,
}

impl Observation {
    /// Nothing known yet (no Region seen, nothing listed).
    pub fn unknown() -> Self {
        Observation {
            region: RegionState::Unknown,
            cordoned: false,
            workload: WorkloadState::Unknown,
            http: HttpResult::NotChecked,
            missing_config: None,
            placement: None,
            deleting: false,
            replica: None,
            endpoint_seen: None,
        }
    }

    /// A reachable region with its Deployment placed: `replicas` asked
    /// for, `ready` ready.
    pub fn ready(replicas: i32, ready: i32) -> Self {
        Observation {
            region: RegionState::Reachable,
            workload: WorkloadState::Placed {
                replicas,
                ready,
                lag: None,
                rolling_out: false,
                role: None,
            },
            ..Observation::unknown()
        }
    }

    /// The region's API server does not answer (`why`); its Deployment as
    /// last seen: `replicas`, all ready.
    pub fn unreachable(why: &str, replicas: i32) -> Self {
        Observation {
            region: RegionState::Unreachable(why.to_string()),
            ..Observation::ready(replicas, replicas)
        }
    }

    /// The same observation with a lag report.
    pub fn with_lag(mut self, report: health::LagReport) -> Self {
        if let WorkloadState::Placed { lag, .. } = &mut self.workload {
            *lag = Some(report);
        }
        self
    }

    /// The lag report: the database's when it was read, else the one on
    /// the placed Deployment, if any.
    pub fn lag_report(&self) -> Option<health::LagReport> {
        if let Some(replica) = &self.replica {
            return replica.seconds.map(|seconds| health::LagReport {
                seconds,
                observed_at: Some(replica.observed_at),
            });
        }
        match &self.workload {
            WorkloadState::Placed { lag, .. } => *lag,
            _ => None,
        }
    }

    /// Why the region may not be promoted, whatever its health: a
    /// propagated copy missing, or a placement problem.
    pub fn promotion_block(&self) -> Option<(&'static str, String)> {
        if self.deleting {
            let why = "the Region is being deleted (it stays while apps use it)";
            return Some(("RegionDeleting", why.to_string()));
        }
        if let Some(missing) = &self.missing_config {
            return Some(("ConfigNotPropagated", missing.clone()));
        }
        match &self.placement {
            Some(PlacementProblem::Conflict(m)) => Some(("Conflict", m.clone())),
            Some(PlacementProblem::Refused(m)) => Some(("PlacementRefused", m.clone())),
            None => None,
        }
    }

    /// The role label of the placed Deployment.
    fn placed_role(&self) -> Option<Role> {
        match &self.workload {
            WorkloadState::Placed { role, .. } => *role,
            _ => None,
        }
    }

    /// (replicas as placed, ready) when the Deployment is there.
    fn placed(&self) -> Option<(i32, i32)> {
        match &self.workload {
            WorkloadState::Placed {
                replicas, ready, ..
            } => Some((*replicas, *ready)),
            _ => None,
        }
    }
}

/// The inputs of one decision.
pub struct Inputs<'a> {
    pub spec: &'a MultiRegionAppSpec,
    pub generation: Option<i64>,
    pub previous: &'a MultiRegionAppStatus,
    /// Keyed by region name; a missing entry means nothing is known.
    pub observations: &'a BTreeMap<String, Observation>,
    /// A health round is due: count this observation in the thresholds.
    /// Otherwise only roles, weights and placement are recomputed.
    pub round: bool,
    /// The weights the traffic sinks hold now, by region, when known: with
    /// the placed objects' role labels, what tells the current active
    /// region when the status was lost.
    pub published: &'a [(String, i32)],
    /// When a person last asked for a failover drill
    /// (`kubectl multiregion drill APP --now`).
    pub drill_requested: Option<Timestamp>,
    /// A one-shot move a person asked for (`kubectl multiregion failover
    /// APP --to REGION`), from the app's annotations (`controls`).
    pub move_request: Option<&'a controls::MoveRequest>,
    /// What the live observers (operator replicas) see of each region, by
    /// region name; empty with a single replica. See `observers::gate`.
    pub sightings: &'a BTreeMap<String, observers::Sightings>,
    /// Every replica that published an observer Lease, live or not: whose
    /// region may have fenced itself (`observers::promotion_gate`).
    pub observers: &'a [observers::Observer],
    /// The primary database's position as this operator last read it (or
    /// restored it from the status): kept in status by `decide`.
    pub primary_mark: Option<&'a replication::PrimaryMark>,
    pub now: Timestamp,
}

/// What to place in one region.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placement {
    pub region: String,
    pub replicas: i32,
    pub role: Role,
    /// False while the region is unreachable or not probed yet: losing
    /// contact never changes anything in a region.
    pub touch: bool,
    /// Fewer replicas than are placed now: apply after the weights are
    /// published (make-before-break).
    pub scale_down: bool,
    /// An active region's self-fence (ActivePassive, FollowTheSun, with
    /// `selfFenceSeconds` above 0): what the replica in the region does to
    /// the Deployment when its region is cut off from the hub.
    pub self_fence: Option<SelfFence>,
}

/// What a cut-off region's replica does to an app active there, carried on
/// the placed Deployment (`multiregion.io/self-fence`: `SECONDS/STANDBY`,
/// or `SECONDS/STANDBY/SECRET` with a database).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SelfFence {
    /// `spec.failover.selfFenceSeconds`.
    pub seconds: i32,
    /// Replicas when standing by.
    pub standby_replicas: i32,
    /// The Secret of `failover.replication.lagFrom.postgres` (in the app's
    /// hub namespace): the replica keeps its region's database URI from it
    /// while it reaches the hub, and fences that database too.
    pub database_secret: Option<String>,
}

/// Whether an Event is routine or needs attention.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    Normal,
    Warning,
}

impl EventType {
    /// The Event's `type` field.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        }
    }
}

/// The reasons of the Events the operator records on an app.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventReason {
    RegionHealthy,
    RegionUnhealthy,
    RegionDegraded,
    WeightsChanged,
    RoleChanged,
    FailedOver,
    PlannedMove,
    PromotionBlocked,
    PromotedWithReplicationLag,
    /// A region whose API server is out of reach was promoted: no other
    /// could be.
    PromotedDegraded,
    FlapDamped,
    OverrideToUnhealthyRegion,
    InvalidSpec,
    /// The app asks for what its namespace may not have (a Region that
    /// does not admit it, a pod its Pod Security level refuses, ...).
    NotAllowed,
    DrillStarted,
    DrillSucceeded,
    DrillAborted,
    /// A home region's users are sent to another region (or back home).
    HomeRouted,
    /// Traffic moved away from a region cut off from the hub that could
    /// not fence itself (no replica runs there, or the self-fence is off).
    PromotedUnfenced,
    /// The data tier took a step to follow the traffic (fence, replay,
    /// promote).
    DatabaseStep,
    /// A data tier step failed: the move waits.
    DatabaseStepFailed,
    /// Deleting the app keeps objects that hold data until a person
    /// confirms (`multiregion.io/delete-data`).
    DeletionHeld,
}

impl EventReason {
    /// The Event's `reason` field.
    pub fn as_str(self) -> &'static str {
        match self {
            EventReason::RegionHealthy => "RegionHealthy",
            EventReason::RegionUnhealthy => "RegionUnhealthy",
            EventReason::RegionDegraded => "RegionDegraded",
            EventReason::WeightsChanged => "WeightsChanged",
            EventReason::RoleChanged => "RoleChanged",
            EventReason::FailedOver => "FailedOver",
            EventReason::PlannedMove => "PlannedMove",
            EventReason::PromotionBlocked => "PromotionBlocked",
            EventReason::PromotedWithReplicationLag => "PromotedWithReplicationLag",
            EventReason::PromotedDegraded => "PromotedDegraded",
            EventReason::FlapDamped => "FlapDamped",
            EventReason::OverrideToUnhealthyRegion => "OverrideToUnhealthyRegion",
            EventReason::InvalidSpec => "InvalidSpec",
            EventReason::NotAllowed => "NotAllowed",
            EventReason::PromotedUnfenced => "PromotedUnfenced",
            EventReason::DrillStarted => "DrillStarted",
            EventReason::DrillSucceeded => "DrillSucceeded",
            EventReason::DrillAborted => "DrillAborted",
            EventReason::HomeRouted => "HomeRouted",
            EventReason::DatabaseStep => "DatabaseStep",
            EventReason::DatabaseStepFailed => "DatabaseStepFailed",
            EventReason::DeletionHeld => "DeletionHeld",
        }
    }
}

/// A Kubernetes Event to record on the app.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub type_: EventType,
    pub reason: EventReason,
    pub message: String,
}

impl Event {
    fn normal(reason: EventReason, message: impl Into<String>) -> Self {
        Event {
            type_: EventType::Normal,
            reason,
            message: message.into(),
        }
    }

    fn warning(reason: EventReason, message: impl Into<String>) -> Self {
        Event {
            type_: EventType::Warning,
            reason,
            message: message.into(),
        }
    }
}

/// A move of traffic from one region to another.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Move {
    pub from: Option<String>,
    pub to: String,
    pub reason: MoveReason,
    /// Planned (make-before-break) rather than a failover.
    pub planned: bool,
}

/// Where the app's writable database belongs, for the data tier to follow
/// before anything of the decision is applied: the active region for
/// ActivePassive and FollowTheSun, `writer::choose` for ActiveActive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Writer {
    pub region: String,
    /// Getting it there moves the primary: `Some(planned)` (planned: the
    /// old primary answers, so nothing it wrote may be lost).
    pub moving: Option<bool>,
}

/// The outcome of one decision.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    pub status: MultiRegionAppStatus,
    /// One per spec region, in spec order.
    pub placements: Vec<Placement>,
    /// Regions no longer in spec whose placed objects must be deleted.
    pub cleanup: Vec<String>,
    /// Weights per spec region, in spec order.
    pub weights: Vec<(String, i32)>,
    pub weights_changed: bool,
    pub moved: Option<Move>,
    /// Where the writable database belongs (the data tier acts on it only
    /// for apps whose lag is read from PostgreSQL).
    pub writer: Option<Writer>,
    pub events: Vec<Event>,
    /// Nothing may be applied yet, and why: the inputs contradict each
    /// other (a lost status and two regions labelled active). The operator
    /// writes nothing and looks again shortly.
    pub hold: Option<String>,
}

/// What a region runs and carries, as decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Assignment {
    role: Role,
    replicas: i32,
    weight: i32,
}

/// Conditions the strategies raise for the status stage, with their
/// messages.
#[derive(Clone, Debug, Default)]
struct Flags {
    /// (reason, message) while a failback waits.
    failback_pending: Option<(&'static str, String)>,
    /// (reason, message): ReplicationLag or ConfigNotPropagated.
    promotion_blocked: Option<(&'static str, String)>,
    flap_damped: Option<String>,
    /// `activeOverride` pins traffic to a region that is Unhealthy.
    override_unhealthy: Option<String>,
}

/// What a strategy decided: one assignment per spec region, in spec order.
#[derive(Debug, Default)]
struct Outcome {
    assignments: Vec<Assignment>,
    /// ActiveActive flap damping: per region, when traffic was taken from
    /// it in the last hour because it turned Unhealthy.
    drops: Vec<Vec<Timestamp>>,
    /// ActiveActive stepped recovery: per region, its ramp step (share of
    /// its weight in percent, since when), if it is coming back.
    ramps: Vec<Option<(i32, Timestamp)>>,
    active: Option<String>,
    pending: Option<PendingMove>,
    moved: Option<Move>,
    /// ActiveActive: where the writable database belongs.
    writer: Option<Writer>,
    flags: Flags,
    events: Vec<Event>,
    /// Decide nothing yet, and why.
    hold: Option<String>,
}

/// Decides health, placement, weights and status for one app.
pub fn decide(inputs: &Inputs) -> Decision {
    let mut regions = rounds::judge(inputs);
    let drilling = drill::begin(inputs, &mut regions);
    let recent = recent_moves(inputs);
    let outcome = match inputs.spec.strategy {
        Strategy::ActiveActive => spread::decide(inputs, &regions),
        Strategy::ActivePassive | Strategy::FollowTheSun => {
            single::decide(inputs, &regions, &recent)
        }
    };
    status::assemble(inputs, regions, outcome, recent, drilling)
}

/// Moves of the sliding hour that count toward flap damping.
fn recent_moves(inputs: &Inputs) -> Vec<Timestamp> {
    inputs
        .previous
        .recent_failovers
        .iter()
        .map(|t| t.0)
        .filter(|t| inputs.now.as_second() - t.as_second() < 3600)
        .collect()
}

#[cfg(test)]
mod tests;
