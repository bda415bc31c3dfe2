//! Stage 3: the new status, its conditions and the Events announcing what
//! changed, assembled in one place from the judged regions and the
//! strategy's outcome.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use super::conditions::{self, Conditions};
use super::health::{Health, PlacementProblem, RegionState};
use super::rounds::{self, RegionView};
use super::{
    Decision, Event, EventReason, Inputs, Outcome, Placement, Writer, controls, drill, home,
    weights,
};
use crate::api::{
    AllUnhealthy, FailoverRecord, MoveReason, MultiRegionAppStatus, Ramp, Reason, RegionAppStatus,
    Strategy,
};

/// Builds the decision: status, placements, weights and Events.
pub(super) fn assemble(
    inputs: &Inputs,
    regions: Vec<RegionView>,
    mut outcome: Outcome,
    recent: Vec<Timestamp>,
    drilling: drill::Drilling,
) -> Decision {
    if let Some(why) = outcome.hold.take() {
        return held(inputs, why);
    }
    let mut events = rounds::health_events(&regions);
    events.append(&mut outcome.events);

    let weights: Vec<(String, i32)> = regions
        .iter()
        .zip(&outcome.assignments)
        .map(|(r, a)| (r.name().to_string(), a.weight))
        .collect();
    let summary = weights::summary(weights.iter().map(|(n, w)| (n.as_str(), *w)));
    let weights_changed = inputs.previous.weights.as_deref() != Some(summary.as_str())
        && !(inputs.previous.weights.is_none() && weights.iter().all(|(_, w)| *w == 0));
    // An app's first weights move no traffic (there was none): they are
    // in its status, not announced.
    if weights_changed && inputs.previous.weights.is_some() {
        events.push(Event::normal(EventReason::WeightsChanged, summary.clone()));
    }
    let (recent_failovers, last_failover) = record_move(inputs, &outcome, recent, &mut events);
    let region_statuses = region_statuses(inputs, &regions, &outcome, &mut events);
    let conditions = build_conditions(
        inputs,
        &regions,
        &region_statuses,
        &outcome,
        last_failover.as_ref(),
        &mut events,
    );
    let cleanup = removed_regions(inputs, outcome.active.as_deref());
    let decided: Vec<i32> = weights.iter().map(|(_, w)| *w).collect();
    let ramping: Vec<bool> = outcome.ramps.iter().map(Option::is_some).collect();
    let homes = home::route(inputs, &regions, &decided, &ramping);
    let (drill_run, drills, drill_events) = drill::settle(inputs, drilling, &weights);
    events.extend(drill_events);
    events.extend(home::moves(inputs, &homes));
    let healthy = regions.iter().filter(|r| r.healthy()).count();
    let status = MultiRegionAppStatus {
        observed_generation: inputs.generation,
        active_region: outcome.active.clone(),
        weights: Some(summary),
        healthy: Some(format!("{healthy}/{}", regions.len())),
        regions: region_statuses,
        last_failover,
        failovers_in_last_hour: recent_failovers.len() as i32,
        recent_failovers: recent_failovers.into_iter().map(Time).collect(),
        move_request: controls::record(
            inputs.move_request,
            inputs.previous.move_request.as_ref(),
            outcome.active.as_deref(),
            outcome.pending.is_some(),
            inputs.now,
        ),
        pending_move: outcome.pending.clone(),
        cleanup_pending: cleanup.clone(),
        drill: drill_run,
        drills,
        homes,
        // The edge records what it placed and removed (`settle`).
        resources: inputs.previous.resources.clone(),
        data_steps: inputs.previous.data_steps.clone(),
        primary_position: primary_position(inputs),
        conditions,
    };
    Decision {
        status,
        placements: placements(inputs, &regions, &outcome),
        cleanup,
        weights,
        weights_changed,
        writer: writer(&outcome),
        moved: outcome.moved,
        events,
        hold: None,
    }
}

/// The region whose database should take writes, for the roles shown.
fn writer_region(outcome: &Outcome) -> Option<&str> {
    match &outcome.writer {
        Some(writer) => Some(&writer.region),
        None => outcome.active.as_deref(),
    }
}

/// Where the writable database belongs: the strategy's choice
/// (ActiveActive), else the active region, moving with the traffic.
fn writer(outcome: &Outcome) -> Option<Writer> {
    outcome.writer.clone().or_else(|| {
        let region = outcome.active.clone()?;
        let moving = outcome.moved.as_ref().map(|m| m.planned);
        Some(Writer { region, moving })
    })
}

/// A decision that applies nothing: the previous status as it was.
fn held(inputs: &Inputs, why: String) -> Decision {
    Decision {
        status: inputs.previous.clone(),
        placements: Vec::new(),
        cleanup: Vec::new(),
        weights: Vec::new(),
        weights_changed: false,
        writer: None,
        moved: None,
        events: Vec::new(),
        hold: Some(why),
    }
}

/// A move is recorded in `lastFailover` and counted for flap damping
/// (except an override, which resets the count), and announced.
fn record_move(
    inputs: &Inputs,
    outcome: &Outcome,
    mut recent: Vec<Timestamp>,
    events: &mut Vec<Event>,
) -> (Vec<Timestamp>, Option<FailoverRecord>) {
    let Some(moved) = &outcome.moved else {
        return (recent, inputs.previous.last_failover.clone());
    };
    match moved.reason {
        MoveReason::Override => recent.clear(),
        // Practice does not spend the flap budget.
        MoveReason::Drill => {}
        _ => recent.push(inputs.now),
    }
    let message = format!(
        "traffic moved from {} to {} ({})",
        moved.from.as_deref().unwrap_or("nowhere"),
        moved.to,
        moved.reason
    );
    events.push(if moved.planned {
        Event::normal(EventReason::PlannedMove, message)
    } else {
        Event::warning(EventReason::FailedOver, message)
    });
    let record = FailoverRecord {
        from: moved.from.clone().unwrap_or_default(),
        to: moved.to.clone(),
        reason: moved.reason.clone(),
        detected_at: Time(inputs.now),
        completed_at: None,
    };
    (recent, Some(record))
}

/// Each region's status line; a `RoleChanged` Event for each new role.
fn region_statuses(
    inputs: &Inputs,
    regions: &[RegionView],
    outcome: &Outcome,
    events: &mut Vec<Event>,
) -> Vec<RegionAppStatus> {
    regions
        .iter()
        .zip(&outcome.assignments)
        .zip(&outcome.drops)
        .enumerate()
        .map(|(i, ((region, assigned), drops))| {
            if let Some(previous) = region.previous
                && previous.role != assigned.role
            {
                events.push(Event::normal(
                    EventReason::RoleChanged,
                    format!("{}: {} -> {}", region.name(), previous.role, assigned.role),
                ));
            }
            let scaled_up_at = match region.previous {
                Some(p) if assigned.replicas <= p.desired_replicas => p.scaled_up_at.clone(),
                _ if assigned.replicas > 0 => Some(Time(inputs.now)),
                _ => None,
            };
            RegionAppStatus {
                name: region.name().to_string(),
                role: assigned.role,
                health: region.shown_health(),
                reason: region.reason.clone(),
                message: region.message.clone(),
                weight: assigned.weight,
                desired_replicas: assigned.replicas,
                ready_replicas: region.ready,
                consecutive_failures: region.counters.failures,
                consecutive_successes: region.counters.successes,
                last_transition_time: region.counters.since.map(Time),
                scaled_up_at,
                recent_drops: drops.iter().copied().map(Time).collect(),
                ramp: outcome
                    .ramps
                    .get(i)
                    .copied()
                    .flatten()
                    .map(|(share, since)| Ramp {
                        share,
                        since: Time(since),
                    }),
                unknown: region.unknown.clone(),
                replication: replica_status(inputs, region, writer_region(outcome)),
            }
        })
        .collect()
}

/// The primary database's position to keep (apps whose lag is read from
/// PostgreSQL only).
fn primary_position(inputs: &Inputs) -> Option<crate::api::PrimaryPosition> {
    let replication = inputs.spec.failover.replication.as_ref()?;
    replication.lag_from.postgres.as_ref()?;
    super::replication::kept_position(
        inputs.previous.primary_position.as_ref(),
        inputs.primary_mark,
        inputs.now,
    )
}

/// The region's database as read this round, for the status.
fn replica_status(
    inputs: &Inputs,
    region: &RegionView,
    active: Option<&str>,
) -> Option<crate::api::ReplicaStatus> {
    let lag = region.obs.replica.as_ref()?;
    let allowed = inputs
        .spec
        .failover
        .replication
        .as_ref()
        .map_or(0.0, |r| r.allowed_lag_seconds());
    let previous = region.previous.and_then(|p| p.replication.as_ref());
    let role = super::replication::shown_role(region.name(), lag, active);
    Some(super::replication::status(
        previous, lag, role, allowed, inputs.now,
    ))
}

/// Regions that left the spec (or are still being cleaned up), except one
/// that still carries the traffic (it leaves once a planned move is done).
fn removed_regions(inputs: &Inputs, active: Option<&str>) -> Vec<String> {
    let in_spec =
        |name: &str| inputs.spec.regions.iter().any(|r| r.name == name) || Some(name) == active;
    let mut cleanup: Vec<String> = inputs
        .previous
        .regions
        .iter()
        .map(|r| r.name.clone())
        .chain(inputs.previous.cleanup_pending.iter().cloned())
        .filter(|name| !in_spec(name))
        .collect();
    cleanup.sort();
    cleanup.dedup();
    cleanup
}

/// The Secret of the app's PostgreSQL data tier, if it has one.
fn database_secret(inputs: &Inputs) -> Option<String> {
    let replication = inputs.spec.failover.replication.as_ref()?;
    let postgres = replication.lag_from.postgres.as_ref()?;
    Some(postgres.secret_ref.name.clone())
}

fn placements(inputs: &Inputs, regions: &[RegionView], outcome: &Outcome) -> Vec<Placement> {
    let seconds = inputs.spec.failover.self_fence_seconds;
    let one_active = inputs.spec.strategy != crate::api::Strategy::ActiveActive;
    regions
        .iter()
        .zip(&outcome.assignments)
        .map(|(region, assigned)| Placement {
            self_fence: (one_active && seconds > 0 && assigned.role == crate::api::Role::Active)
                .then(|| super::SelfFence {
                    seconds,
                    standby_replicas: region.standby,
                    database_secret: database_secret(inputs),
                }),
            region: region.name().to_string(),
            replicas: assigned.replicas,
            role: assigned.role,
            touch: region.obs.region == RegionState::Reachable,
            scale_down: region
                .obs
                .placed()
                .is_some_and(|(placed, _)| assigned.replicas < placed),
        })
        .collect()
}

/// Ready, Degraded, FailedOver, FailbackPending, PromotionBlocked,
/// FlapDamped, AllRegionsUnhealthy and Conflict, each from its own rule.
fn build_conditions(
    inputs: &Inputs,
    regions: &[RegionView],
    statuses: &[RegionAppStatus],
    outcome: &Outcome,
    last_failover: Option<&FailoverRecord>,
    events: &mut Vec<Event>,
) -> Vec<Condition> {
    let previous = &inputs.previous.conditions;
    let mut c = Conditions::new(previous, inputs.now, inputs.generation);
    ready(&mut c, regions, statuses);
    let unhealthy = unhealthy_list(regions);
    degraded(&mut c, regions, &unhealthy);
    failed_over(&mut c, inputs, regions, outcome, last_failover, &unhealthy);
    match &outcome.flags.failback_pending {
        Some((reason, message)) => c.set("FailbackPending", true, reason, message.clone()),
        None => c.set("FailbackPending", false, "None", ""),
    }
    let flags = &outcome.flags;
    let blocked = flags.promotion_blocked.as_ref();
    let raised = [
        (
            RAISED[0],
            blocked.map(|(reason, message)| (*reason, message)),
        ),
        (
            RAISED[1],
            flags.flap_damped.as_ref().map(|m| (RAISED[1].reason, m)),
        ),
        (
            RAISED[2],
            flags
                .override_unhealthy
                .as_ref()
                .map(|m| (RAISED[2].reason, m)),
        ),
    ];
    for (raised, found) in raised {
        announced(&mut c, previous, events, raised, found);
    }
    all_unhealthy(&mut c, inputs, regions);
    conflict(&mut c, regions);
    evidence_unknown(&mut c, regions);
    c.finish()
}

/// `EvidenceUnknown`: some region's rounds say nothing either way (its API
/// server answering 429/5xx/401/403, a deleted Region, an unusable Secret,
/// a silent watch): named with the cause and since when.
fn evidence_unknown(c: &mut Conditions, regions: &[RegionView]) {
    let unknown: Vec<String> = regions
        .iter()
        .filter_map(|r| {
            let u = r.unknown.as_ref()?;
            let since = u.since.0;
            Some(format!(
                "{}: {} since {since}: {}",
                r.name(),
                u.cause,
                u.message
            ))
        })
        .collect();
    match unknown.is_empty() {
        true => c.set("EvidenceUnknown", false, "AllObserved", ""),
        false => c.set("EvidenceUnknown", true, "NoVerdict", unknown.join("; ")),
    }
}

fn ready(c: &mut Conditions, regions: &[RegionView], statuses: &[RegionAppStatus]) {
    let serving: Vec<&str> = statuses
        .iter()
        .filter(|s| s.weight > 0 && s.health.serves())
        .map(|s| s.name.as_str())
        .collect();
    if serving.is_empty() {
        let judged = regions.iter().any(|r| r.counters.health != Health::Unknown);
        match judged {
            true => c.set(
                "Ready",
                false,
                "NoHealthyRegion",
                "no Healthy region carries traffic",
            ),
            false => c.unknown("Ready", "Pending", "no region judged yet"),
        }
    } else {
        let message = format!("traffic on {}", serving.join(", "));
        c.set("Ready", true, "Serving", message);
    }
}

fn unhealthy_list(regions: &[RegionView]) -> Vec<String> {
    regions
        .iter()
        .filter(|r| r.counters.health == Health::Unhealthy)
        .map(|r| {
            let reason = r.reason.as_ref().map_or("Unhealthy", |x| x.as_str());
            format!("{}: {reason}", r.name())
        })
        .collect()
}

/// FailedOver: traffic is away from where it would be with every region
/// healthy (not for a failback or a scheduled hand-over).
fn failed_over(
    c: &mut Conditions,
    inputs: &Inputs,
    regions: &[RegionView],
    outcome: &Outcome,
    last_failover: Option<&FailoverRecord>,
    unhealthy: &[String],
) {
    if inputs.spec.strategy == Strategy::ActiveActive {
        let dropped = regions.iter().zip(&outcome.assignments).any(|(r, a)| {
            a.weight == 0 && !r.taken_out() && r.counters.health == Health::Unhealthy
        });
        match dropped {
            true => c.set("FailedOver", true, "RegionUnhealthy", unhealthy.join("; ")),
            false => c.set("FailedOver", false, "OnPreferredRegions", ""),
        }
        return;
    }
    let away = outcome.active.as_deref().and_then(|active| {
        last_failover.filter(|f| {
            f.to == active
                && !matches!(
                    f.reason,
                    MoveReason::Failback | MoveReason::Schedule | MoveReason::Drill
                )
        })
    });
    match away {
        Some(f) => c.set(
            "FailedOver",
            true,
            f.reason.as_str(),
            format!("traffic moved from {} to {}", f.from, f.to),
        ),
        None => c.set("FailedOver", false, "OnPreferredRegions", ""),
    }
}

/// PromotionBlocked, FlapDamped and OverrideUnhealthy: raised by the
/// strategies, announced when they turn True.
const RAISED: [Raised; 3] = [
    Raised {
        type_: "PromotionBlocked",
        // Or ConfigNotPropagated: the strategy gives the reason.
        reason: "ReplicationLag",
        event: EventReason::PromotionBlocked,
    },
    Raised {
        type_: "FlapDamped",
        reason: "TooManyMoves",
        event: EventReason::FlapDamped,
    },
    Raised {
        type_: "OverrideUnhealthy",
        reason: "PinnedByActiveOverride",
        event: EventReason::OverrideToUnhealthyRegion,
    },
];

/// A condition that is announced by a Warning Event when it turns True.
#[derive(Clone, Copy)]
struct Raised {
    type_: &'static str,
    reason: &'static str,
    event: EventReason,
}

fn announced(
    c: &mut Conditions,
    previous: &[Condition],
    events: &mut Vec<Event>,
    raised: Raised,
    found: Option<(&str, &String)>,
) {
    let Some((reason, message)) = found else {
        c.set(raised.type_, false, "None", "");
        return;
    };
    if !conditions::is_true(previous, raised.type_) {
        events.push(Event::warning(raised.event, message.as_str()));
    }
    c.set(raised.type_, true, reason, message.clone());
}

/// Degraded: a region is Unhealthy, or serves on its endpoint's word only
/// while its API server is out of reach.
fn degraded(c: &mut Conditions, regions: &[RegionView], unhealthy: &[String]) {
    let mut why: Vec<String> = unhealthy.to_vec();
    why.extend(
        regions
            .iter()
            .filter(|r| r.degraded())
            .map(|r| format!("{}: {}", r.name(), Reason::ControlPlaneUnreachable)),
    );
    match (unhealthy.is_empty(), why.is_empty()) {
        (_, true) => c.set("Degraded", false, "AllHealthy", ""),
        (true, false) => c.set("Degraded", true, "ControlPlaneUnreachable", why.join("; ")),
        (false, false) => c.set("Degraded", true, "RegionUnhealthy", why.join("; ")),
    }
}

fn all_unhealthy(c: &mut Conditions, inputs: &Inputs, regions: &[RegionView]) {
    let judged = regions.iter().any(|r| r.counters.health != Health::Unknown);
    if !judged || regions.iter().any(|r| r.healthy()) {
        c.set("AllRegionsUnhealthy", false, "SomeRegionHealthy", "");
        return;
    }
    let policy = match inputs.spec.failover.all_unhealthy {
        AllUnhealthy::KeepLast => "keeping the last weights",
        AllUnhealthy::Even if inputs.spec.strategy == Strategy::ActiveActive => {
            "spreading weights evenly"
        }
        AllUnhealthy::Even => {
            "keeping the single active region (Even applies to ActiveActive only)"
        }
    };
    c.set("AllRegionsUnhealthy", true, "NoHealthyRegion", policy);
}

fn conflict(c: &mut Conditions, regions: &[RegionView]) {
    let conflicts: Vec<String> = regions
        .iter()
        .filter_map(|r| match &r.obs.placement {
            Some(PlacementProblem::Conflict(m)) => Some(format!("{}: {m}", r.name())),
            _ => None,
        })
        .collect();
    match conflicts.is_empty() {
        true => c.set("Conflict", false, "None", ""),
        false => c.set("Conflict", true, "ObjectNotOwned", conflicts.join("; ")),
    }
}
