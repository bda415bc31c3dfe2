//! The decisions, and nothing else: given an app's spec, what the operator
//! observed of each region, the previous status and `now`, decide each
//! region's health, role, replicas and weight, the new status, and the
//! Events to record. No client, no clock, no I/O: everything is an input,
//! so every rule is a table test.

pub mod conditions;
pub mod health;
pub mod manifest;
pub mod schedule;
pub mod traffic;
pub mod weights;
pub mod whatif;

use std::collections::BTreeMap;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::api::{
    AllUnhealthy, AppRegion, Failback, FailoverRecord, MultiRegionAppSpec, MultiRegionAppStatus,
    OnLagExceeded, PendingMove, RegionAppStatus, Strategy,
};
use conditions::Conditions;
use health::{Counters, Health, RegionState, Round, Thresholds, WorkloadState};

/// Everything observed of one region for one app at decision time.
#[derive(Clone, Debug, PartialEq)]
pub struct Observation {
    pub region: RegionState,
    /// `Region.spec.cordoned`.
    pub cordoned: bool,
    pub workload: WorkloadState,
    /// Result of the HTTP probe of the endpoint, when one is configured.
    pub http: Option<Result<(), String>>,
}

impl Observation {
    /// Nothing known yet (no Region seen, nothing listed).
    pub fn unknown() -> Self {
        Observation {
            region: RegionState::Unknown,
            cordoned: false,
            workload: WorkloadState::Unknown,
            http: None,
        }
    }

    fn lag_seconds(&self) -> Option<f64> {
        match &self.workload {
            WorkloadState::Placed { lag_seconds, .. } => *lag_seconds,
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
    pub now: Timestamp,
}

/// What a region runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Active,
    Standby,
    Drained,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Active => "Active",
            Role::Standby => "Standby",
            Role::Drained => "Drained",
        }
    }

    /// The `multiregion.io/role` label value.
    pub fn label(self) -> &'static str {
        match self {
            Role::Active => "active",
            Role::Standby | Role::Drained => "standby",
        }
    }
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
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    Normal,
    Warning,
}

/// A Kubernetes Event to record on the app.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub type_: EventType,
    pub reason: String,
    pub message: String,
}

/// A move of traffic from one region to another.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Move {
    pub from: Option<String>,
    pub to: String,
    pub reason: String,
    /// Planned (make-before-break) rather than a failover.
    pub planned: bool,
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
    pub events: Vec<Event>,
}

/// Per-region working state of one decision.
struct Slot<'a> {
    spec: &'a AppRegion,
    obs: Observation,
    counters: Counters,
    reason: Option<String>,
    message: Option<String>,
    ready: i32,
    full: i32,
    standby: i32,
    cordoned: bool,
    previous: Option<&'a RegionAppStatus>,
}

impl Slot<'_> {
    fn name(&self) -> &str {
        &self.spec.name
    }
    fn healthy(&self) -> bool {
        self.counters.health == Health::Healthy
    }
    /// May carry traffic: Healthy, not drained, not cordoned.
    fn eligible(&self) -> bool {
        self.healthy() && !self.spec.drain && !self.cordoned
    }
    fn taken_out(&self) -> bool {
        self.spec.drain || self.cordoned
    }
    /// The target of a planned move has enough ready replicas at full size.
    fn ready_at_full(&self, min_ready_ratio: f64) -> bool {
        self.obs.placed().is_some_and(|(replicas, ready)| {
            replicas >= self.full && ready >= health::ready_needed(min_ready_ratio, self.full)
        })
    }
}

/// Decides health, placement, weights and status for one app.
pub fn decide(inputs: &Inputs) -> Decision {
    let spec = inputs.spec;
    let now = inputs.now;
    let previous = inputs.previous;
    let hc = &spec.health_check;
    let thresholds = Thresholds {
        failure: hc.failure_threshold,
        success: hc.success_threshold,
    };
    let mut events = Vec::new();

    // 1. Health rounds.
    let mut slots: Vec<Slot> = spec
        .regions
        .iter()
        .map(|r| {
            let mut obs = inputs
                .observations
                .get(&r.name)
                .cloned()
                .unwrap_or_else(Observation::unknown);
            let prev = previous.regions.iter().find(|p| p.name == r.name);
            // Pods the operator asked for recently are still starting: a
            // scale-up (a promoted standby) is judged on readiness only after
            // healthCheck.startupSeconds, so a new active is not failed back.
            let starting = prev
                .and_then(|p| p.scaled_up_at.as_ref())
                .is_some_and(|at| {
                    now.as_second() - at.0.as_second() < i64::from(hc.startup_seconds)
                });
            if let WorkloadState::Placed { rolling_out, .. } = &mut obs.workload {
                *rolling_out |= starting;
            }
            let prev_counters = prev.map_or(Counters::UNKNOWN, |p| Counters {
                health: Health::parse(&p.health),
                failures: p.consecutive_failures,
                successes: p.consecutive_successes,
                since: p.last_transition_time.as_ref().map(|t| t.0),
            });
            let mut reason = prev.and_then(|p| p.reason.clone());
            let mut message = prev.and_then(|p| p.message.clone());
            let mut counters = prev_counters;
            if inputs.round {
                match health::judge(
                    &obs.region,
                    &obs.workload,
                    obs.http.as_ref(),
                    hc.min_ready_ratio,
                ) {
                    Round::Passed => {
                        counters = health::step(prev_counters, true, thresholds, now);
                        reason = None;
                        message = None;
                    }
                    Round::Failed {
                        reason: why,
                        message: details,
                    } => {
                        counters = health::step(prev_counters, false, thresholds, now);
                        reason = Some(why);
                        message = Some(details);
                    }
                    Round::Skipped => {}
                }
            }
            let ready = obs
                .placed()
                .map(|(_, ready)| ready)
                .or(prev.map(|p| p.ready_replicas))
                .unwrap_or(0);
            let full = r.replicas.unwrap_or(spec.workload.replicas).max(0);
            Slot {
                spec: r,
                cordoned: obs.cordoned,
                obs,
                counters,
                reason,
                message,
                ready,
                full,
                standby: spec.standby.replicas.clamp(0, full),
                previous: prev,
            }
        })
        .collect();

    for slot in &slots {
        let before = slot
            .previous
            .map_or(Health::Unknown, |p| Health::parse(&p.health));
        let after = slot.counters.health;
        // A region's first judgement is news only when it is bad: a region
        // found Healthy at the start is what everyone expects, the status
        // shows it, and an Event for it would be one write per region per
        // app each time apps are created.
        let announce = match (before, after) {
            (_, Health::Unknown) | (Health::Unknown, Health::Healthy) => false,
            (before, after) => before != after,
        };
        if announce {
            let (type_, reason) = match after {
                Health::Healthy => (EventType::Normal, "RegionHealthy"),
                _ => (EventType::Warning, "RegionUnhealthy"),
            };
            let detail = match (&slot.reason, &slot.message) {
                (Some(r), Some(m)) => format!(": {r}: {m}"),
                _ => String::new(),
            };
            events.push(Event {
                type_,
                reason: reason.into(),
                message: format!("{} is {}{detail}", slot.name(), after.as_str()),
            });
        }
    }

    // 2. Roles, weights, placement.
    let mut flags = Flags::default();
    let recent: Vec<Timestamp> = previous
        .recent_failovers
        .iter()
        .map(|t| t.0)
        .filter(|t| now.as_second() - t.as_second() < 3600)
        .collect();
    let outcome = match spec.strategy {
        Strategy::ActiveActive => active_active(spec, &slots, previous),
        Strategy::ActivePassive | Strategy::FollowTheSun => {
            single_active(inputs, &slots, &recent, &mut flags, &mut events)
        }
    };

    // 3. Status.
    let weights: Vec<(String, i32)> = slots
        .iter()
        .zip(&outcome.weights)
        .map(|(s, w)| (s.name().to_string(), *w))
        .collect();
    let summary = weights::summary(weights.iter().map(|(n, w)| (n.as_str(), *w)));
    let weights_changed = previous.weights.as_deref() != Some(summary.as_str())
        && !(previous.weights.is_none() && outcome.weights.iter().all(|&w| w == 0));
    if weights_changed {
        events.push(Event {
            type_: EventType::Normal,
            reason: "WeightsChanged".into(),
            message: summary.clone(),
        });
    }
    let mut recent_failovers = recent.clone();
    let mut last_failover = previous.last_failover.clone();
    if let Some(m) = &outcome.moved {
        if m.reason == "Override" {
            recent_failovers.clear();
        } else {
            recent_failovers.push(now);
        }
        last_failover = Some(FailoverRecord {
            from: m.from.clone().unwrap_or_default(),
            to: m.to.clone(),
            reason: m.reason.clone(),
            detected_at: Time(now),
            completed_at: None,
        });
        let (type_, reason) = if m.planned {
            (EventType::Normal, "PlannedMove")
        } else {
            (EventType::Warning, "FailedOver")
        };
        events.push(Event {
            type_,
            reason: reason.into(),
            message: format!(
                "traffic moved from {} to {} ({})",
                m.from.as_deref().unwrap_or("nowhere"),
                m.to,
                m.reason
            ),
        });
    }

    let region_statuses: Vec<RegionAppStatus> = slots
        .iter_mut()
        .zip(&outcome.roles)
        .zip(&outcome.replicas)
        .zip(&outcome.weights)
        .map(|(((slot, role), replicas), weight)| {
            if let Some(prev) = slot.previous
                && prev.role != role.as_str()
            {
                events.push(Event {
                    type_: EventType::Normal,
                    reason: "RoleChanged".into(),
                    message: format!("{}: {} -> {}", slot.name(), prev.role, role.as_str()),
                });
            }
            let scaled_up_at = match slot.previous {
                Some(p) if *replicas <= p.desired_replicas => p.scaled_up_at.clone(),
                _ if *replicas > 0 => Some(Time(now)),
                _ => None,
            };
            RegionAppStatus {
                name: slot.name().to_string(),
                role: role.as_str().to_string(),
                health: slot.counters.health.as_str().to_string(),
                reason: slot.reason.take(),
                message: slot.message.take(),
                weight: *weight,
                desired_replicas: *replicas,
                ready_replicas: slot.ready,
                consecutive_failures: slot.counters.failures,
                consecutive_successes: slot.counters.successes,
                last_transition_time: slot.counters.since.map(Time),
                scaled_up_at,
            }
        })
        .collect();

    let healthy_count = slots.iter().filter(|s| s.healthy()).count();
    let conditions = build_conditions(
        inputs,
        &slots,
        &region_statuses,
        &outcome,
        &flags,
        last_failover.as_ref(),
        &mut events,
    );

    let spec_names: Vec<&str> = spec.regions.iter().map(|r| r.name.as_str()).collect();
    let mut cleanup: Vec<String> = previous
        .regions
        .iter()
        .map(|r| r.name.clone())
        .chain(previous.cleanup_pending.iter().cloned())
        .filter(|n| !spec_names.contains(&n.as_str()))
        .collect();
    cleanup.sort();
    cleanup.dedup();

    let placements = slots
        .iter()
        .zip(&outcome.roles)
        .zip(&outcome.replicas)
        .map(|((slot, role), replicas)| Placement {
            region: slot.name().to_string(),
            replicas: *replicas,
            role: *role,
            touch: slot.obs.region == RegionState::Reachable,
            scale_down: slot
                .obs
                .placed()
                .is_some_and(|(placed, _)| *replicas < placed),
        })
        .collect();

    let status = MultiRegionAppStatus {
        observed_generation: inputs.generation,
        active_region: outcome.active.clone(),
        weights: Some(summary),
        healthy: Some(format!("{healthy_count}/{}", slots.len())),
        regions: region_statuses,
        last_failover,
        failovers_in_last_hour: recent_failovers.len() as i32,
        recent_failovers: recent_failovers.into_iter().map(Time).collect(),
        pending_move: outcome.pending.clone(),
        cleanup_pending: cleanup.clone(),
        conditions,
    };

    Decision {
        status,
        placements,
        cleanup,
        weights,
        weights_changed,
        moved: outcome.moved,
        events,
    }
}

/// Roles, replicas and weights per slot, in spec order.
struct Outcome {
    roles: Vec<Role>,
    replicas: Vec<i32>,
    weights: Vec<i32>,
    active: Option<String>,
    pending: Option<PendingMove>,
    moved: Option<Move>,
}

#[derive(Default)]
struct Flags {
    /// (reason, message) while a failback waits.
    failback_pending: Option<(String, String)>,
    promotion_blocked: Option<String>,
    flap_damped: Option<String>,
}

fn active_active(
    spec: &MultiRegionAppSpec,
    slots: &[Slot],
    previous: &MultiRegionAppStatus,
) -> Outcome {
    let shares: Vec<i32> = slots
        .iter()
        .map(|s| if s.eligible() { s.spec.weight } else { 0 })
        .collect();
    let weights = if shares.iter().any(|&s| s > 0) {
        weights::normalise(&shares)
    } else {
        no_healthy_weights(spec.failover.all_unhealthy, slots, previous)
    };
    Outcome {
        roles: slots
            .iter()
            .map(|s| {
                if s.taken_out() {
                    Role::Drained
                } else {
                    Role::Active
                }
            })
            .collect(),
        replicas: slots.iter().map(|s| s.full).collect(),
        weights,
        active: None,
        pending: None,
        moved: None,
    }
}

/// Weights when no region may carry traffic. KeepLast: what was published
/// (drained and cordoned regions still go to 0). Even: equal shares over the
/// regions not taken out.
fn no_healthy_weights(
    policy: AllUnhealthy,
    slots: &[Slot],
    previous: &MultiRegionAppStatus,
) -> Vec<i32> {
    match policy {
        AllUnhealthy::KeepLast => {
            let last: Vec<i32> = slots
                .iter()
                .map(|s| {
                    if s.taken_out() {
                        0
                    } else {
                        s.previous.map_or(0, |p| p.weight)
                    }
                })
                .collect();
            if last.iter().sum::<i32>() == 0 && previous.weights.is_some() {
                // Everything that served was taken out by hand: nothing to keep.
                last
            } else {
                weights::normalise(&last)
            }
        }
        AllUnhealthy::Even => {
            let shares: Vec<i32> = slots.iter().map(|s| i32::from(!s.taken_out())).collect();
            weights::normalise(&shares)
        }
    }
}

/// ActivePassive and FollowTheSun: exactly one region carries traffic.
fn single_active(
    inputs: &Inputs,
    slots: &[Slot],
    recent: &[Timestamp],
    flags: &mut Flags,
    events: &mut Vec<Event>,
) -> Outcome {
    let spec = inputs.spec;
    let now = inputs.now;
    let failover = &spec.failover;
    let index = |name: &str| slots.iter().position(|s| s.name() == name);

    // Preference order: FollowTheSun puts the region whose window is open first.
    let scheduled = (spec.strategy == Strategy::FollowTheSun)
        .then(|| {
            slots.iter().position(|s| {
                s.spec
                    .active_window
                    .as_ref()
                    .is_some_and(|w| schedule::contains(w, now))
            })
        })
        .flatten();
    let mut order: Vec<usize> = (0..slots.len()).collect();
    if let Some(first) = scheduled {
        order.retain(|&i| i != first);
        order.insert(0, first);
    }

    let previous_active = inputs.previous.active_region.as_deref().and_then(index);
    let damped = recent.len() as i32 >= failover.max_failovers_per_hour;
    let override_target = (!failover.active_override.is_empty())
        .then(|| index(&failover.active_override))
        .flatten();

    // Where traffic should go, and how.
    enum Want {
        Stay,
        /// First placement: no move is counted.
        Initial(usize),
        /// Weights move now and the target scales up in the same decision:
        /// a failover (unplanned) or a drain/cordon of the active region.
        Immediate(usize, String, bool),
        /// Make-before-break: weights move once the target is ready.
        Planned(usize, &'static str),
    }
    let want = if let Some(target) = override_target {
        if !slots[target].healthy() && previous_active != Some(target) {
            events.push(Event {
                type_: EventType::Warning,
                reason: "OverrideToUnhealthyRegion".into(),
                message: format!(
                    "activeOverride makes {} active although it is {}",
                    slots[target].name(),
                    slots[target].counters.health.as_str()
                ),
            });
        }
        if previous_active == Some(target) {
            Want::Stay
        } else {
            Want::Planned(target, "Override")
        }
    } else {
        match previous_active {
            // The first choice waits until every preferred region before it
            // has been judged, so a region whose pods are still starting is
            // not passed over for good.
            None => order
                .iter()
                .copied()
                .filter(|&i| !slots[i].taken_out())
                .find(|&i| slots[i].eligible() || slots[i].counters.health == Health::Unknown)
                .filter(|&i| slots[i].eligible())
                .map_or(Want::Stay, Want::Initial),
            Some(active) => {
                let current = &slots[active];
                let candidates: Vec<usize> = order
                    .iter()
                    .copied()
                    .filter(|&i| i != active && slots[i].eligible())
                    .collect();
                if current.counters.health == Health::Unhealthy {
                    if !failover.automatic {
                        Want::Stay
                    } else {
                        match promotable(inputs, slots, &candidates, flags, events) {
                            Some(target) => Want::Immediate(
                                target,
                                current.reason.clone().unwrap_or_else(|| "Unhealthy".into()),
                                false,
                            ),
                            None => Want::Stay,
                        }
                    }
                } else if current.taken_out() {
                    let why = if current.spec.drain {
                        "Drain"
                    } else {
                        "Cordon"
                    };
                    match promotable(inputs, slots, &candidates, flags, events) {
                        // Drained or cordoned means weight 0 now, so this
                        // cannot wait for make-before-break.
                        Some(target) => Want::Immediate(target, why.to_string(), true),
                        None => Want::Stay,
                    }
                } else if let Some(target) =
                    scheduled.filter(|&s| s != active && slots[s].eligible())
                {
                    Want::Planned(target, "Schedule")
                } else if spec.strategy == Strategy::ActivePassive {
                    // Failback to a more preferred region.
                    match candidates.first().copied().filter(|&c| c < active) {
                        Some(better) => {
                            let healthy_for = slots[better]
                                .counters
                                .since
                                .map_or(0, |since| now.as_second() - since.as_second());
                            let hold = failover.failback_hold_seconds as i64;
                            match failover.failback {
                                Failback::Automatic if healthy_for >= hold => {
                                    Want::Planned(better, "Failback")
                                }
                                Failback::Automatic => {
                                    flags.failback_pending = Some((
                                        "Holding".into(),
                                        format!(
                                            "{} has been Healthy for {healthy_for}s of the {hold}s hold",
                                            slots[better].name()
                                        ),
                                    ));
                                    Want::Stay
                                }
                                Failback::Manual => {
                                    flags.failback_pending = Some((
                                        "Manual".into(),
                                        format!(
                                            "{} is Healthy; set spec.failover.activeOverride to move traffic back",
                                            slots[better].name()
                                        ),
                                    ));
                                    Want::Stay
                                }
                            }
                        }
                        None => Want::Stay,
                    }
                } else {
                    Want::Stay
                }
            }
        }
    };

    // Flap damping: past the hourly budget, automatic moves freeze.
    let want = match want {
        Want::Immediate(..) | Want::Planned(..) if damped && override_target.is_none() => {
            flags.flap_damped = Some(format!(
                "{} moves in the last hour (max {}); weights are frozen until the hour passes or activeOverride is set",
                recent.len(),
                failover.max_failovers_per_hour
            ));
            Want::Stay
        }
        other => other,
    };

    // Execute.
    let mut active = previous_active;
    let mut pending = None;
    let mut moved = None;
    let mut extra_full: Vec<usize> = Vec::new();
    match want {
        Want::Stay => {}
        Want::Initial(target) => active = Some(target),
        Want::Immediate(target, reason, planned) => {
            moved = Some(Move {
                from: previous_active.map(|i| slots[i].name().to_string()),
                to: slots[target].name().to_string(),
                reason,
                planned,
            });
            active = Some(target);
        }
        Want::Planned(target, reason) => {
            extra_full.push(target);
            if slots[target].ready_at_full(spec.health_check.min_ready_ratio) {
                moved = Some(Move {
                    from: previous_active.map(|i| slots[i].name().to_string()),
                    to: slots[target].name().to_string(),
                    reason: reason.to_string(),
                    planned: true,
                });
                active = Some(target);
            } else {
                let since = inputs
                    .previous
                    .pending_move
                    .as_ref()
                    .filter(|p| p.to == slots[target].name())
                    .map_or(Time(now), |p| p.since.clone());
                pending = Some(PendingMove {
                    to: slots[target].name().to_string(),
                    reason: reason.to_string(),
                    since,
                });
            }
        }
    }

    // FollowTheSun pre-warm: the next window's region runs full replicas early.
    if spec.strategy == Strategy::FollowTheSun {
        for (i, slot) in slots.iter().enumerate() {
            if let Some(w) = &slot.spec.active_window
                && schedule::seconds_until_open(w, now)
                    .is_some_and(|s| s <= failover.prewarm_seconds as i64)
            {
                extra_full.push(i);
            }
        }
    }

    let roles: Vec<Role> = slots
        .iter()
        .enumerate()
        .map(|(i, s)| {
            if Some(i) == active {
                Role::Active
            } else if s.taken_out() {
                Role::Drained
            } else {
                Role::Standby
            }
        })
        .collect();
    let replicas = slots
        .iter()
        .enumerate()
        .map(|(i, s)| {
            if Some(i) == active || extra_full.contains(&i) {
                s.full
            } else {
                s.standby
            }
        })
        .collect();
    let weights = slots
        .iter()
        .enumerate()
        .map(|(i, _)| if Some(i) == active { 100 } else { 0 })
        .collect();
    Outcome {
        roles,
        replicas,
        weights,
        active: active.map(|i| slots[i].name().to_string()),
        pending,
        moved,
    }
}

/// The first candidate the RPO gate lets through. Records PromotionBlocked
/// or a Warning Event about possible data loss.
fn promotable(
    inputs: &Inputs,
    slots: &[Slot],
    candidates: &[usize],
    flags: &mut Flags,
    events: &mut Vec<Event>,
) -> Option<usize> {
    let Some(replication) = &inputs.spec.failover.replication else {
        return candidates.first().copied();
    };
    let max = replication.max_lag_seconds as f64;
    let mut blocked = Vec::new();
    for &c in candidates {
        let lag = slots[c].obs.lag_seconds();
        match lag {
            Some(l) if l <= max => return Some(c),
            _ if replication.on_exceeded == OnLagExceeded::Promote => {
                let shown = lag.map_or("unknown".to_string(), |l| format!("{l}s"));
                events.push(Event {
                    type_: EventType::Warning,
                    reason: "PromotedWithReplicationLag".into(),
                    message: format!(
                        "promoting {} with replication lag {shown} (max {}s): writes not yet replicated may be lost",
                        slots[c].name(),
                        replication.max_lag_seconds
                    ),
                });
                return Some(c);
            }
            _ => blocked.push(format!(
                "{}: lag {}",
                slots[c].name(),
                lag.map_or("not reported".to_string(), |l| format!("{l}s"))
            )),
        }
    }
    if !blocked.is_empty() {
        flags.promotion_blocked = Some(format!(
            "no standby within maxLagSeconds {}s ({})",
            replication.max_lag_seconds,
            blocked.join(", ")
        ));
    }
    None
}

fn build_conditions(
    inputs: &Inputs,
    slots: &[Slot],
    statuses: &[RegionAppStatus],
    outcome: &Outcome,
    flags: &Flags,
    last_failover: Option<&FailoverRecord>,
    events: &mut Vec<Event>,
) -> Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    let previous = &inputs.previous.conditions;
    let mut c = Conditions::new(previous, inputs.now, inputs.generation);

    let serving: Vec<&str> = statuses
        .iter()
        .filter(|s| s.weight > 0 && s.health == "Healthy")
        .map(|s| s.name.as_str())
        .collect();
    if serving.is_empty() {
        let anything_judged = slots.iter().any(|s| s.counters.health != Health::Unknown);
        let reason = if anything_judged {
            "NoHealthyRegion"
        } else {
            "Pending"
        };
        c.set("Ready", false, reason, "no Healthy region carries traffic");
    } else {
        c.set(
            "Ready",
            true,
            "Serving",
            format!("traffic on {}", serving.join(", ")),
        );
    }

    let unhealthy: Vec<String> = slots
        .iter()
        .filter(|s| s.counters.health == Health::Unhealthy)
        .map(|s| {
            format!(
                "{}: {}",
                s.name(),
                s.reason.as_deref().unwrap_or("Unhealthy")
            )
        })
        .collect();
    match unhealthy.is_empty() {
        true => c.set("Degraded", false, "AllHealthy", ""),
        false => c.set("Degraded", true, "RegionUnhealthy", unhealthy.join("; ")),
    }

    let failed_over = match inputs.spec.strategy {
        Strategy::ActiveActive => slots
            .iter()
            .zip(&outcome.weights)
            .any(|(s, w)| *w == 0 && !s.taken_out() && s.counters.health == Health::Unhealthy),
        _ => outcome.active.as_deref().is_some_and(|a| {
            last_failover
                .is_some_and(|f| f.to == a && f.reason != "Failback" && f.reason != "Schedule")
        }),
    };
    match (failed_over, last_failover) {
        (true, Some(f)) if inputs.spec.strategy != Strategy::ActiveActive => c.set(
            "FailedOver",
            true,
            &f.reason,
            format!("traffic moved from {} to {}", f.from, f.to),
        ),
        (true, _) => c.set("FailedOver", true, "RegionUnhealthy", unhealthy.join("; ")),
        (false, _) => c.set("FailedOver", false, "OnPreferredRegions", ""),
    }

    match &flags.failback_pending {
        Some((reason, message)) => c.set("FailbackPending", true, reason, message.clone()),
        None => c.set("FailbackPending", false, "None", ""),
    }

    let was = |t: &str| conditions::is_true(previous, t);
    match &flags.promotion_blocked {
        Some(message) => {
            if !was("PromotionBlocked") {
                events.push(Event {
                    type_: EventType::Warning,
                    reason: "PromotionBlocked".into(),
                    message: message.clone(),
                });
            }
            c.set("PromotionBlocked", true, "ReplicationLag", message.clone())
        }
        None => c.set("PromotionBlocked", false, "None", ""),
    }
    match &flags.flap_damped {
        Some(message) => {
            if !was("FlapDamped") {
                events.push(Event {
                    type_: EventType::Warning,
                    reason: "FlapDamped".into(),
                    message: message.clone(),
                });
            }
            c.set("FlapDamped", true, "TooManyMoves", message.clone())
        }
        None => c.set("FlapDamped", false, "None", ""),
    }

    let judged = slots.iter().any(|s| s.counters.health != Health::Unknown);
    let none_healthy = !slots.iter().any(|s| s.healthy());
    if judged && none_healthy {
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
    } else {
        c.set("AllRegionsUnhealthy", false, "SomeRegionHealthy", "");
    }

    let conflicts: Vec<String> = slots
        .iter()
        .filter_map(|s| match &s.obs.workload {
            WorkloadState::Conflict(m) => Some(format!("{}: {m}", s.name())),
            _ => None,
        })
        .collect();
    match conflicts.is_empty() {
        true => c.set("Conflict", false, "None", ""),
        false => c.set("Conflict", true, "ObjectNotOwned", conflicts.join("; ")),
    }
    c.finish()
}

#[cfg(test)]
mod tests;
