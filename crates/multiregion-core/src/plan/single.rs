//! Stage 2 for ActivePassive and FollowTheSun: exactly one region carries
//! traffic. In order: choose where traffic should go (`want`), hold it if
//! moves are damped (`damp`), carry the move out (`execute`), then give
//! every region its role, replicas and weight (`assign`).
//!
//! Every promotion passes the RPO gate (`promotable`): a failover, a
//! failback, a FollowTheSun hand-over, the first choice and the move away
//! from a region removed from the spec. Only `activeOverride` promotes a
//! lagging region (a person decided), with a Warning naming the lag.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::drill::DrillRole;
use super::health::RegionState;
use super::observers::{self, PromotionGate};
use super::rounds::RegionView;
use super::{
    Assignment, Event, EventReason, Flags, Inputs, Move, Outcome, Role, controls, schedule,
};
use crate::api::{
    Failback, Health, MoveReason, OnLagExceeded, PendingMove, Reason, Replication, ReplicationMode,
    Strategy,
};

/// Where traffic should go, and how.
#[derive(Clone, Debug, PartialEq)]
enum Want {
    Stay,
    /// First placement: no move is counted.
    Initial(usize),
    /// Weights move now and the target scales up in the same decision: a
    /// failover, or a drain or cordon of the active region (weight 0 is what
    /// those mean, so they cannot wait for make-before-break).
    Immediate(usize, MoveReason),
    /// Make-before-break: weights move once the target is ready.
    Planned(usize, MoveReason),
}

/// The move carried out: who is active now, and what is still pending.
struct Execution {
    active: Option<usize>,
    pending: Option<PendingMove>,
    moved: Option<Move>,
    /// Regions running full replicas besides the active one.
    warm: Vec<usize>,
    /// A stepped failback in progress: the returning region and its share
    /// of traffic in percent (the active region keeps the rest).
    ramp: Option<(usize, i32)>,
}

/// Where a stepped failback stands this decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    /// The returning region's share, in percent; 100 completes the move.
    Share(i32),
    /// The returning region failed a round (or has not passed
    /// successThreshold rounds since): its share drops to 0 at once.
    Abort,
}

/// One decision for a single-active app.
struct Single<'a> {
    inputs: &'a Inputs<'a>,
    regions: &'a [RegionView<'a>],
    /// Preference order: list order, with FollowTheSun's open window first.
    order: Vec<usize>,
    /// FollowTheSun: the region whose window is open now.
    scheduled: Option<usize>,
    previous_active: Option<usize>,
    flags: Flags,
    events: Vec<Event>,
    /// A Warning about a promotion past the RPO gate, recorded only if the
    /// promotion happens in this decision.
    promotion_warnings: Vec<Event>,
}

/// Roles, replicas and weights with one active region.
pub(super) fn decide(inputs: &Inputs, regions: &[RegionView], recent: &[Timestamp]) -> Outcome {
    let previous_active = match previous_active(inputs, regions) {
        Ok(active) => active,
        Err(why) => {
            return Outcome {
                hold: Some(why),
                ..Outcome::default()
            };
        }
    };
    let mut single = Single::new(inputs, regions, previous_active);
    let want = single.want();
    let want = single.damp(want, recent);
    let execution = single.execute(want);
    let assignments = single.assign(&execution);
    Outcome {
        drops: vec![Vec::new(); regions.len()],
        ramps: Vec::new(),
        assignments,
        active: execution.active.map(|i| regions[i].name().to_string()),
        pending: execution.pending,
        moved: execution.moved,
        writer: None,
        flags: single.flags,
        events: single.events,
        hold: None,
    }
}

impl<'a> Single<'a> {
    fn new(
        inputs: &'a Inputs<'a>,
        regions: &'a [RegionView<'a>],
        previous_active: Option<usize>,
    ) -> Self {
        let scheduled = (inputs.spec.strategy == Strategy::FollowTheSun)
            .then(|| {
                regions.iter().position(|r| {
                    r.spec
                        .active_window
                        .as_ref()
                        .is_some_and(|w| schedule::contains(w, inputs.now))
                })
            })
            .flatten();
        let mut order: Vec<usize> = (0..regions.len())
            .filter(|&i| !regions[i].leaving)
            .collect();
        if let Some(first) = scheduled {
            order.retain(|&i| i != first);
            order.insert(0, first);
        }
        Single {
            inputs,
            regions,
            order,
            scheduled,
            previous_active,
            flags: Flags::default(),
            events: Vec::new(),
            promotion_warnings: Vec::new(),
        }
    }

    /// The region `failover.activeOverride` names, if any.
    fn override_target(&self) -> Option<usize> {
        let name = &self.inputs.spec.failover.active_override;
        if name.is_empty() {
            return None;
        }
        self.regions.iter().position(|r| r.name() == name)
    }

    /// Where traffic should go: an override wins; otherwise the first
    /// choice, or what the current active region's state asks for.
    fn want(&mut self) -> Want {
        match (self.override_target(), self.previous_active) {
            (Some(target), _) => self.want_override(target),
            (None, None) => self.want_first(),
            (None, Some(active)) => self.want_from(active),
        }
    }

    /// A person pinned traffic: it moves there whatever the region's health
    /// or lag, with a Warning for either.
    fn want_override(&mut self, target: usize) -> Want {
        let region = &self.regions[target];
        if !region.healthy() {
            let message = format!(
                "activeOverride makes {} active although it is {}",
                region.name(),
                region.counters.health
            );
            self.flags.override_unhealthy = Some(message);
        }
        if self.previous_active == Some(target) {
            return Want::Stay;
        }
        // With the old primary's database answering, the data tier waits
        // until the target has replayed all it wrote: nothing is lost.
        let switchover = self
            .previous_active
            .is_some_and(|old| super::writer::answers(&self.regions[old]));
        if let Some(replication) = &self.inputs.spec.failover.replication
            && !switchover
            && let Err(lag) = within_lag(region, replication)
        {
            self.promotion_warnings.push(lag_warning(
                region,
                &lag,
                replication,
                "activeOverride promotes",
            ));
        }
        Want::Planned(target, MoveReason::Override)
    }

    /// The first choice waits until every preferred region before it has
    /// been judged, so a region whose pods are still starting is not passed
    /// over for good; among the judged ones, the RPO gate decides.
    fn want_first(&mut self) -> Want {
        let mut candidates = Vec::new();
        for &i in &self.order {
            let region = &self.regions[i];
            if region.taken_out() {
                continue;
            }
            if region.counters.health == Health::Unknown {
                break;
            }
            if region.eligible() {
                candidates.push(i);
            }
        }
        self.gate(&candidates, Unreported::Allowed)
            .map_or(Want::Stay, Want::Initial)
    }

    /// With a region active: leave a removed region, fail over, drain,
    /// follow the schedule or fail back, in that order of urgency.
    fn want_from(&mut self, active: usize) -> Want {
        let current = &self.regions[active];
        let candidates: Vec<usize> = self
            .order
            .iter()
            .copied()
            .filter(|&i| i != active && self.regions[i].eligible())
            .collect();
        if current.leaving {
            return self
                .promotable(&candidates)
                .map_or(Want::Stay, |t| Want::Planned(t, MoveReason::RegionRemoved));
        }
        if current.counters.health == Health::Unhealthy {
            if !self.inputs.spec.failover.automatic {
                return Want::Stay;
            }
            let reason = current.reason.clone().unwrap_or(Reason::Unhealthy);
            let Some(target) = self.promotable(&candidates) else {
                return Want::Stay;
            };
            if !self.fenced(active, target) {
                return Want::Stay;
            }
            return Want::Immediate(target, MoveReason::Failure(reason));
        }
        if current.drill == DrillRole::HeldOut {
            return self
                .promotable(&candidates)
                .map_or(Want::Stay, |t| Want::Planned(t, MoveReason::Drill));
        }
        if current.taken_out() {
            let why = if current.spec.drain {
                MoveReason::Drain
            } else {
                MoveReason::Cordon
            };
            return self
                .promotable(&candidates)
                .map_or(Want::Stay, |t| Want::Immediate(t, why));
        }
        self.want_better(active, &candidates)
    }

    /// Whether the failed active region may be replaced now: when the
    /// observers see its API server failing, its replicas may be cut off
    /// from the hub and fencing it, so only once they have had the time
    /// (`observers::promotion_gate`). Without replicas that say their
    /// region (a single hub), or with the region's API server answering
    /// them (the leader fences it), there is nothing to wait for.
    fn fenced(&mut self, active: usize, target: usize) -> bool {
        let observers = self.inputs.observers;
        if observers.iter().all(|o| o.region.is_none()) {
            return true;
        }
        let region = self.regions[active].name();
        let Some(since) = self
            .inputs
            .sightings
            .get(region)
            .and_then(|s| s.failing_since)
        else {
            return true;
        };
        let seconds = self.inputs.spec.failover.self_fence_seconds.max(0) as u64;
        let self_fence = std::time::Duration::from_secs(seconds);
        match observers::promotion_gate(region, observers, self_fence, since, self.inputs.now) {
            PromotionGate::Now => true,
            PromotionGate::After(at) => {
                self.flags.promotion_blocked = Some((
                    "AwaitingSelfFence",
                    format!(
                        "{region} is cut off from the hub; its replica fences it by {at}, then {} is promoted",
                        self.regions[target].name()
                    ),
                ));
                false
            }
            PromotionGate::Unfenced(why) => {
                self.promotion_warnings.push(Event::warning(
                    EventReason::PromotedUnfenced,
                    format!("{region} was not fenced before the move: {why}"),
                ));
                true
            }
        }
    }

    /// A one-shot move a person asked for, away from a healthy active
    /// region: only to a region that may carry traffic (Healthy, not
    /// drained, cordoned or held out by a drill), through the RPO gate. A
    /// failure, a drain or a removal of the active region comes first
    /// (`want_from`); a request that cannot be followed waits, then lapses
    /// (`controls::request_pending`).
    fn want_requested(&mut self, active: usize) -> Option<Want> {
        let request = self.inputs.move_request?;
        let previous = self.inputs.previous.move_request.as_ref();
        if !controls::request_pending(request, previous, self.inputs.now) {
            return None;
        }
        let target = self
            .regions
            .iter()
            .position(|r| r.name() == request.region)?;
        if target == active || !self.regions[target].eligible() {
            return None;
        }
        self.promotable(&[target])
            .map(|t| Want::Planned(t, MoveReason::Override))
    }

    /// A healthy active region: a move a person asked for, else it stays
    /// where a person moved it for the hold, then the usual rules apply
    /// (`want_usual`).
    fn want_better(&mut self, active: usize, candidates: &[usize]) -> Want {
        if let Some(requested) = self.want_requested(active) {
            return requested;
        }
        let want = self.want_usual(active, candidates);
        let held = controls::held_until(
            self.inputs.move_request,
            self.inputs.previous.move_request.as_ref(),
            self.regions[active].name(),
            self.inputs.spec.failover.failback_hold_seconds,
            self.inputs.now,
        );
        match (want, held) {
            (Want::Planned(_, MoveReason::Failback | MoveReason::Schedule), Some(until)) => {
                self.flags.failback_pending = Some((
                    "Holding",
                    format!(
                        "{} was asked for (kubectl multiregion failover): traffic stays there until {until}",
                        self.regions[active].name()
                    ),
                ));
                Want::Stay
            }
            (want, _) => want,
        }
    }

    /// A healthy active region: the schedule's region, or a more preferred
    /// one (failback), once they pass the RPO gate.
    fn want_usual(&mut self, active: usize, candidates: &[usize]) -> Want {
        if let Some(back) = candidates
            .iter()
            .copied()
            .find(|&c| self.regions[c].drill == DrillRole::Returning)
        {
            return self
                .promotable(&[back])
                .map_or(Want::Stay, |t| Want::Planned(t, MoveReason::Drill));
        }
        if let Some(target) = self
            .scheduled
            .filter(|&s| s != active && self.regions[s].eligible())
        {
            return self
                .promotable(&[target])
                .map_or(Want::Stay, |t| Want::Planned(t, MoveReason::Schedule));
        }
        if self.inputs.spec.strategy == Strategy::ActivePassive
            && let Some(better) = candidates.first().copied().filter(|&c| c < active)
        {
            return self.want_failback(better);
        }
        Want::Stay
    }

    /// Back to a more preferred region, once it has been Healthy for the
    /// hold (Automatic), or never by itself (Manual).
    fn want_failback(&mut self, better: usize) -> Want {
        let failover = &self.inputs.spec.failover;
        let region = &self.regions[better];
        let healthy_for = region
            .counters
            .since
            .map_or(0, |since| self.inputs.now.as_second() - since.as_second());
        let hold = i64::from(failover.failback_hold_seconds);
        match failover.failback {
            Failback::Automatic if healthy_for >= hold => self
                .promotable(&[better])
                .map_or(Want::Stay, |t| Want::Planned(t, MoveReason::Failback)),
            Failback::Automatic => {
                self.flags.failback_pending = Some((
                    "Holding",
                    format!(
                        "{} has been Healthy for {healthy_for}s of the {hold}s hold",
                        region.name()
                    ),
                ));
                Want::Stay
            }
            Failback::Manual => {
                self.flags.failback_pending = Some((
                    "Manual",
                    format!(
                        "{} is Healthy; move traffic back with kubectl multiregion failover (or spec.failover.activeOverride)",
                        region.name()
                    ),
                ));
                Want::Stay
            }
        }
    }

    /// The RPO gate for a move away from an active region: a candidate
    /// that reports no lag is treated as one over the limit.
    fn promotable(&mut self, candidates: &[usize]) -> Option<usize> {
        self.gate(candidates, Unreported::OverTheLimit)
    }

    /// The RPO gate: the first candidate whose replication lag allows it.
    /// With `onExceeded: Promote` the first candidate is promoted anyway,
    /// with a Warning about possible data loss; with `Wait` none is, and
    /// PromotionBlocked says why.
    fn gate(&mut self, candidates: &[usize], unreported: Unreported) -> Option<usize> {
        let mut candidates = self.targets(candidates);
        // The standby holding most WAL goes first (in preference order
        // among equals): with semi-synchronous replication only the
        // standby that confirmed the last commits has them all, and no
        // standby is left ahead of the new primary (its history would part
        // from the new primary's). Regions without a byte count keep their
        // order, after those with one.
        candidates.sort_by_key(|&c| replication_rank(&self.regions[c]));
        let Some(replication) = &self.inputs.spec.failover.replication else {
            return candidates.first().copied();
        };
        let mut blocked = Vec::new();
        for &c in &candidates {
            let region = &self.regions[c];
            let unreported_ok = unreported == Unreported::Allowed && region.lag_seconds().is_none();
            match admit(region, replication, unreported_ok) {
                Ok(warning) => {
                    self.promotion_warnings.extend(warning);
                    return Some(c);
                }
                Err(why) => blocked.push(why),
            }
        }
        if !blocked.is_empty() {
            self.flags.promotion_blocked =
                Some(("ReplicationLag", blocked_message(replication, &blocked)));
        }
        None
    }

    /// The candidates promotion may go to: those nothing blocks (a
    /// propagated copy missing, a Conflict, a refused placement; when none
    /// is left, PromotionBlocked says what and where), and among them those
    /// whose API server answers, so the target can be scaled up. A Degraded
    /// one is a target only when no other is, with a Warning saying so.
    fn targets(&mut self, candidates: &[usize]) -> Vec<usize> {
        let (free, blocked): (Vec<usize>, Vec<usize>) = candidates
            .iter()
            .partition(|&&c| self.regions[c].obs.promotion_block().is_none());
        if free.is_empty() && !blocked.is_empty() {
            let mut cause = "";
            let what: Vec<String> = blocked
                .iter()
                .filter_map(|&c| {
                    let region = &self.regions[c];
                    let (why, details) = region.obs.promotion_block()?;
                    cause = why;
                    Some(format!("{}: {details}", region.name()))
                })
                .collect();
            let message = format!("no standby can be promoted ({})", what.join("; "));
            self.flags.promotion_blocked = Some((cause, message));
        }
        let (answering, others): (Vec<usize>, Vec<usize>) = free
            .iter()
            .partition(|&&c| self.regions[c].obs.region == RegionState::Reachable);
        // Without an answering API server a region is a target only as a
        // last resort, while still Healthy (its endpoint serves, or its
        // failures have not reached the threshold yet); never one the hub
        // cannot reach at all (deleted Region, no credentials) or has not
        // probed yet: nothing could ever be placed or scaled there.
        let degraded: Vec<usize> = others
            .into_iter()
            .filter(|&c| {
                matches!(
                    self.regions[c].obs.region,
                    RegionState::Unreachable(_) | RegionState::Troubled { .. }
                )
            })
            .collect();
        if answering.is_empty()
            && let Some(&only) = degraded.first()
        {
            let region = &self.regions[only];
            self.promotion_warnings.push(Event::warning(
                EventReason::PromotedDegraded,
                format!(
                    "promoting {} although its API server is out of reach ({}): it cannot be scaled up until it answers",
                    region.name(),
                    region.message.as_deref().unwrap_or_default()
                ),
            ));
            return degraded;
        }
        answering
    }

    /// Flap damping: past the hourly budget, planned moves (failback, the
    /// schedule, a drill) wait until the hour has room; failovers away from
    /// an Unhealthy active, drains, cordons and overrides still move.
    fn damp(&mut self, want: Want, recent: &[Timestamp]) -> Want {
        let failover = &self.inputs.spec.failover;
        let damped = recent.len() as i32 >= failover.max_failovers_per_hour;
        let overridden = self.override_target().is_some();
        match want {
            // A failure, a drain or a cordon still moves: damping never
            // keeps traffic on a region that must lose it.
            Want::Planned(..) if damped && !overridden => {
                self.flags.flap_damped = Some(format!(
                    "{} moves in the last hour (max {}); planned moves wait until the hour has room or activeOverride is set; failovers still happen",
                    recent.len(),
                    failover.max_failovers_per_hour
                ));
                Want::Stay
            }
            other => other,
        }
    }

    /// Carries out the move: at once, or once a planned target is ready.
    fn execute(&mut self, want: Want) -> Execution {
        let mut execution = Execution {
            active: self.previous_active,
            pending: None,
            moved: None,
            warm: self.prewarmed(),
            ramp: None,
        };
        match want {
            Want::Stay => {}
            Want::Initial(target) => execution.active = Some(target),
            Want::Immediate(target, reason) => {
                execution.moved = Some(self.move_to(target, reason, false));
                execution.active = Some(target);
            }
            Want::Planned(target, reason) => {
                execution.warm.push(target);
                let min_ready_ratio = self.inputs.spec.health_check.min_ready_ratio;
                if !self.regions[target].ready_at_full(min_ready_ratio) {
                    execution.pending = Some(self.pending(target, reason, None));
                } else if let Some(step) = self.stepped(target, &reason) {
                    self.ramp_to(target, step, &mut execution);
                } else {
                    execution.moved = Some(self.move_to(target, reason, true));
                    execution.active = Some(target);
                }
            }
        }
        if execution.active != self.previous_active {
            self.events.append(&mut self.promotion_warnings);
        }
        execution
    }

    fn move_to(&self, target: usize, reason: MoveReason, planned: bool) -> Move {
        let planned = planned || matches!(reason, MoveReason::Drain | MoveReason::Cordon);
        Move {
            from: self
                .previous_active
                .map(|i| self.regions[i].name().to_string()),
            to: self.regions[target].name().to_string(),
            reason,
            planned,
        }
    }

    /// A planned move waiting for its target (or stepping traffic to it:
    /// `share`); `since` and the step's start survive reconciles.
    fn pending(&self, target: usize, reason: MoveReason, share: Option<i32>) -> PendingMove {
        let to = self.regions[target].name().to_string();
        let previous = self.previous_pending(target);
        let since = previous.map_or(Time(self.inputs.now), |p| p.since.clone());
        let step_since = share.map(|share| match previous {
            Some(p) if p.share == Some(share) => {
                p.step_since.clone().unwrap_or(Time(self.inputs.now))
            }
            _ => Time(self.inputs.now),
        });
        PendingMove {
            to,
            reason,
            since,
            share,
            step_since,
        }
    }

    fn previous_pending(&self, target: usize) -> Option<&'a PendingMove> {
        self.inputs
            .previous
            .pending_move
            .as_ref()
            .filter(|p| p.to == self.regions[target].name())
    }

    /// A failback with `failbackSteps`: where its ramp stands. None for
    /// every other move, and for a failback in one step.
    fn stepped(&self, target: usize, reason: &MoveReason) -> Option<Step> {
        let failover = &self.inputs.spec.failover;
        if *reason != MoveReason::Failback || failover.failback_steps.is_empty() {
            return None;
        }
        let region = &self.regions[target];
        let threshold = self.inputs.spec.health_check.success_threshold;
        if region.counters.failures > 0 || region.counters.successes < threshold {
            return Some(Step::Abort);
        }
        let current = self
            .previous_pending(target)
            .and_then(|p| Some((p.share?, p.step_since.as_ref()?.0)));
        let Some((share, step_since)) = current else {
            return Some(Step::Share(failover.failback_steps[0]));
        };
        let elapsed = self.inputs.now.as_second() - step_since.as_second();
        if elapsed < i64::from(failover.failback_step_seconds) {
            return Some(Step::Share(share));
        }
        let next = failover.failback_steps.iter().copied().find(|&s| s > share);
        Some(Step::Share(next.unwrap_or(100)))
    }

    /// Carries out one step of a stepped failback: the target's share
    /// grows (100 completes the move), or drops to 0 on a failed round.
    fn ramp_to(&mut self, target: usize, step: Step, execution: &mut Execution) {
        match step {
            Step::Share(share) if share >= 100 => {
                execution.moved = Some(self.move_to(target, MoveReason::Failback, true));
                execution.active = Some(target);
            }
            Step::Share(share) => {
                execution.pending = Some(self.pending(target, MoveReason::Failback, Some(share)));
                execution.ramp = Some((target, share));
                self.flags.failback_pending = Some((
                    "Stepping",
                    format!(
                        "{} carries {share}% of the traffic on its way back",
                        self.regions[target].name()
                    ),
                ));
            }
            Step::Abort => {
                self.flags.failback_pending = Some((
                    "Stepping",
                    format!(
                        "{} failed a round during the stepped failback: its share is back to 0 until it passes again",
                        self.regions[target].name()
                    ),
                ));
            }
        }
    }

    /// FollowTheSun pre-warm: the next window's region runs full replicas
    /// `prewarmSeconds` before its window opens.
    fn prewarmed(&self) -> Vec<usize> {
        if self.inputs.spec.strategy != Strategy::FollowTheSun {
            return Vec::new();
        }
        let prewarm = i64::from(self.inputs.spec.failover.prewarm_seconds);
        (0..self.regions.len())
            .filter(|&i| {
                self.regions[i]
                    .spec
                    .active_window
                    .as_ref()
                    .is_some_and(|w| {
                        schedule::seconds_until_open(w, self.inputs.now)
                            .is_some_and(|s| s <= prewarm)
                    })
            })
            .collect()
    }

    /// Role, replicas and weight of every region once the move is done.
    fn assign(&self, execution: &Execution) -> Vec<Assignment> {
        self.regions
            .iter()
            .enumerate()
            .map(|(i, region)| {
                let active = execution.active == Some(i);
                let role = if active {
                    Role::Active
                } else if region.taken_out() {
                    Role::Drained
                } else {
                    Role::Standby
                };
                let replicas = if active || execution.warm.contains(&i) {
                    region.full
                } else {
                    region.standby
                };
                let weight = match execution.ramp {
                    Some((target, share)) if target == i => share,
                    Some((_, share)) if active => 100 - share,
                    _ if active => 100,
                    _ => 0,
                };
                Assignment {
                    role,
                    replicas,
                    weight,
                }
            })
            .collect()
    }
}

/// The active region as the previous status names it; when the status was
/// lost, as the operator's own writes tell it: the one placed Deployment
/// labelled active, else the one region the traffic sinks give weight.
/// When they disagree (two labelled active: a member's watch may still
/// show an old copy after an outage), nothing is decided until they agree.
fn previous_active(inputs: &Inputs, regions: &[RegionView]) -> Result<Option<usize>, String> {
    let index = |name: &str| regions.iter().position(|r| r.name() == name);
    if let Some(name) = inputs.previous.active_region.as_deref() {
        return Ok(index(name));
    }
    if !inputs.previous.regions.is_empty() {
        return Ok(None);
    }
    let labelled: Vec<usize> = (0..regions.len())
        .filter(|&i| regions[i].obs.placed_role() == Some(Role::Active))
        .collect();
    let weighted: Vec<usize> = inputs
        .published
        .iter()
        .filter(|(_, w)| *w > 0)
        .filter_map(|(name, _)| index(name))
        .collect();
    match (&labelled[..], &weighted[..]) {
        ([only], _) | ([], [only]) => Ok(Some(*only)),
        ([], _) => Ok(None),
        (several, _) => match weighted[..] {
            [only] if several.contains(&only) => Ok(Some(only)),
            _ => Err(format!(
                "the status is lost and {} are all labelled active; waiting until the regions agree",
                several
                    .iter()
                    .map(|&i| regions[i].name())
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        },
    }
}

/// Why no standby passes the RPO gate: the limit, and each one's lag.
pub(super) fn blocked_message(replication: &Replication, blocked: &[String]) -> String {
    let limit = match replication.mode {
        ReplicationMode::Asynchronous => {
            format!(
                "within maxLagSeconds {}s",
                replication.max_lag_seconds.unwrap_or_default()
            )
        }
        mode => format!("in sync ({mode:?} replication needs lag 0)"),
    };
    format!("no standby {limit} ({})", blocked.join(", "))
}

/// The RPO gate for one candidate: `Ok` when it may be promoted, with the
/// lag warning when `onExceeded: Promote` lets it past the limit; else why
/// not, as a line of the PromotionBlocked message. `unreported_ok`: a
/// region that reports no lag passes.
pub(super) fn admit(
    region: &RegionView,
    replication: &Replication,
    unreported_ok: bool,
) -> Result<Option<Event>, String> {
    let name = region.name();
    if on_old_history(region) {
        return Err(format!(
            "{name}: on an old primary's history (NeedsRejoin), never promoted"
        ));
    }
    match within_lag(region, replication) {
        Ok(()) => Ok(None),
        Err(_) if unreported_ok => Ok(None),
        Err(lag) if replication.on_exceeded == OnLagExceeded::Promote => {
            Ok(Some(lag_warning(region, &lag, replication, "promoting")))
        }
        Err(lag) => Err(format!("{name}: lag {lag}")),
    }
}

/// How the region's database ranks for promotion, least first: regions
/// whose WAL the data tier counted (measured against the same primary
/// position, so the one holding most lacks least) before those it did not
/// (an annotation or metric lag source, a database not read), and among
/// the counted the one holding most WAL on disk, replayed or not (a
/// promotion replays all it received).
pub(super) fn replication_rank(region: &RegionView) -> (bool, std::cmp::Reverse<u64>) {
    let replica = region.obs.replica.as_ref();
    let counted = replica.is_some_and(|r| r.bytes.is_some());
    let held = replica.and_then(|r| r.held).unwrap_or(0);
    (!counted, std::cmp::Reverse(held))
}

/// The region's database is on an old primary's history (`parted`): never
/// a promotion target, whatever `onExceeded` says.
pub(super) fn on_old_history(region: &RegionView) -> bool {
    region.obs.replica.as_ref().is_some_and(|r| r.parted)
}

/// How the RPO gate treats a region that reports no replication lag.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Unreported {
    /// Like a lag over the limit: a standby must show it has the data.
    OverTheLimit,
    /// Acceptable: the first choice, when no region wrote before it.
    Allowed,
}

/// Ok when the region's reported replication lag is within the limit; else
/// the lag as shown to people ("45s", "not reported").
pub(super) fn within_lag(region: &RegionView, replication: &Replication) -> Result<(), String> {
    match region.lag_seconds() {
        Some(lag) if lag <= replication.allowed_lag_seconds() => Ok(()),
        Some(lag) => Err(format!("{lag}s")),
        None => match region
            .obs
            .replica
            .as_ref()
            .and_then(|r| r.problem.as_deref())
        {
            Some(problem) => Err(format!("not known: {problem}")),
            None => Err("not reported".to_string()),
        },
    }
}

pub(super) fn lag_warning(
    region: &RegionView,
    lag: &str,
    replication: &Replication,
    what: &str,
) -> Event {
    Event::warning(
        EventReason::PromotedWithReplicationLag,
        format!(
            "{what} {} with replication lag {lag} (max {}s): writes not yet replicated may be lost",
            region.name(),
            replication.allowed_lag_seconds()
        ),
    )
}
