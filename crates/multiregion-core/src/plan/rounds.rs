//! Stage 1: a health round per region, folded into the counters carried
//! over from the previous status. Produces one `RegionView` per spec region:
//! everything the later stages need to know about it.

use std::borrow::Cow;

use jiff::Timestamp;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::drill::DrillRole;
use super::evidence::{self, Evidence, Judging, UnknownCause};
use super::health::{self, Counters, Health, Thresholds, WorkloadState};
use super::observers;
use super::{Event, EventReason, Inputs, Observation};
use crate::api::{AppRegion, Reason, RegionAppStatus, Strategy, UnknownEvidence};

/// One spec region as the decision sees it.
#[derive(Debug)]
pub(super) struct RegionView<'a> {
    pub spec: Cow<'a, AppRegion>,
    /// The active region was removed from `spec.regions`: it keeps its
    /// traffic until a planned move has taken it elsewhere, then leaves.
    pub leaving: bool,
    pub obs: Observation,
    pub counters: Counters,
    /// Why the last counted round failed, with details.
    pub reason: Option<Reason>,
    pub message: Option<String>,
    /// The current run of rounds without evidence either way, if any.
    pub unknown: Option<UnknownEvidence>,
    /// The replication lag reported here, when the report can be believed
    /// now (finite, not negative, dated and fresh).
    pub lag: Option<f64>,
    /// Ready replicas, as observed (or as last recorded).
    pub ready: i32,
    /// Replicas when active.
    pub full: i32,
    /// Replicas when standing by.
    pub standby: i32,
    pub cordoned: bool,
    /// This region in the previous status, if it was there.
    pub previous: Option<&'a RegionAppStatus>,
    /// What a failover drill does to it in this decision.
    pub drill: DrillRole,
}

impl RegionView<'_> {
    pub fn name(&self) -> &str {
        &self.spec.name
    }

    pub fn healthy(&self) -> bool {
        self.counters.health == Health::Healthy
    }

    /// May carry traffic: Healthy, not drained, not cordoned, not leaving.
    pub fn eligible(&self) -> bool {
        self.healthy() && !self.taken_out() && !self.leaving && self.drill != DrillRole::HeldOut
    }

    /// Serving on the data plane's word only: its API server is out of
    /// reach, its endpoint answers.
    pub fn degraded(&self) -> bool {
        self.reason == Some(Reason::ControlPlaneUnreachable)
    }

    /// Health as the status shows it: `Degraded` for a Healthy region
    /// serving on its endpoint's word only.
    pub fn shown_health(&self) -> Health {
        match self.counters.health {
            Health::Healthy if self.degraded() => Health::Degraded,
            judged => judged,
        }
    }

    /// The believable replication lag reported here, if any.
    pub fn lag_seconds(&self) -> Option<f64> {
        self.lag
    }

    /// Drained or cordoned: weight 0 whatever its health.
    pub fn taken_out(&self) -> bool {
        self.spec.drain || self.cordoned
    }

    /// The target of a planned move has enough ready replicas at full size.
    pub fn ready_at_full(&self, min_ready_ratio: f64) -> bool {
        self.obs.placed().is_some_and(|(replicas, ready)| {
            replicas >= self.full && ready >= health::ready_needed(min_ready_ratio, self.full)
        })
    }
}

/// Judges every spec region, in spec order, and last the active region if
/// it was removed from the spec and still carries the traffic.
pub(super) fn judge<'a>(inputs: &'a Inputs) -> Vec<RegionView<'a>> {
    let mut views: Vec<RegionView> = inputs
        .spec
        .regions
        .iter()
        .map(|region| judge_one(inputs, Cow::Borrowed(region)))
        .collect();
    if let Some(name) = leaving_region(inputs.spec, inputs.previous) {
        let mut view = judge_one(inputs, Cow::Owned(leaving_spec(name)));
        view.leaving = true;
        views.push(view);
    }
    views
}

/// The active region, when it is no longer in `spec.regions` (ActivePassive
/// and FollowTheSun): it stays until a planned move takes traffic from it.
pub fn leaving_region<'a>(
    spec: &crate::api::MultiRegionAppSpec,
    previous: &'a crate::api::MultiRegionAppStatus,
) -> Option<&'a str> {
    if spec.strategy == Strategy::ActiveActive {
        return None;
    }
    let active = previous.active_region.as_deref()?;
    (!spec.regions.iter().any(|r| r.name == active)).then_some(active)
}

fn leaving_spec(name: &str) -> AppRegion {
    AppRegion {
        name: name.to_string(),
        weight: 0,
        replicas: None,
        endpoint: None,
        active_window: None,
        drain: false,
        overrides: None,
        home: None,
    }
}

fn judge_one<'a>(inputs: &'a Inputs, region: Cow<'a, AppRegion>) -> RegionView<'a> {
    let spec = inputs.spec;
    let previous = inputs
        .previous
        .regions
        .iter()
        .find(|p| p.name == region.name);
    let mut obs = inputs
        .observations
        .get(&region.name)
        .cloned()
        .unwrap_or_else(Observation::unknown);
    let counters = previous.map_or(Counters::UNKNOWN, counters_of);
    let hc = &spec.health_check;
    let just_scaled = starting(previous, hc.startup_seconds, inputs.now);
    if just_scaled && let WorkloadState::Placed { rolling_out, .. } = &mut obs.workload {
        *rolling_out = true;
    }
    let mut round = Counted {
        counters,
        reason: previous.and_then(|p| p.reason.clone()),
        message: previous.and_then(|p| p.message.clone()),
        unknown: previous.and_then(|p| p.unknown.clone()),
    };
    if inputs.round {
        let never_judged = counters.health == Health::Unknown;
        let judging = Judging {
            min_ready_ratio: hc.min_ready_ratio,
            starting: just_scaled || never_judged,
            never_judged,
        };
        let sightings = inputs.sightings.get(&region.name);
        let classified = evidence::classify(&obs, judging);
        let endpoint = obs.endpoint_seen.as_ref();
        let evidence = observers::gate(classified, &region.name, sightings, endpoint);
        if held_elsewhere(&evidence, sightings, inputs) {
            round.counters.failures = round
                .counters
                .failures
                .max(inputs.spec.health_check.failure_threshold - 1);
        }
        round = count(round, evidence, inputs);
    }
    let ready = obs
        .placed()
        .map(|(_, ready)| ready)
        .or(previous.map(|p| p.ready_replicas))
        .unwrap_or(0);
    let full = region.replicas.unwrap_or(spec.workload.replicas).max(0);
    RegionView {
        spec: region,
        leaving: false,
        cordoned: obs.cordoned,
        lag: obs.lag_report().and_then(|r| r.valid(inputs.now)),
        obs,
        counters: round.counters,
        reason: round.reason,
        message: round.message,
        unknown: round.unknown,
        ready,
        full,
        standby: spec.standby.replicas.clamp(0, full),
        previous,
        drill: DrillRole::None,
    }
}

/// The region failed this round and a majority of the observers have seen
/// it failing for the whole threshold already (a leader that just took over,
/// or whose own rounds lag): this round completes the threshold.
fn held_elsewhere(
    evidence: &Evidence,
    sightings: Option<&observers::Sightings>,
    inputs: &Inputs,
) -> bool {
    let hc = &inputs.spec.health_check;
    let rounds = u32::try_from(hc.failure_threshold.max(1)).unwrap_or(1);
    let hold = std::time::Duration::from_secs(hc.interval_seconds.max(1) as u64) * rounds;
    let unreachable = matches!(
        evidence,
        Evidence::NotServing {
            reason: Reason::RegionUnreachable,
            ..
        }
    );
    unreachable && sightings.is_some_and(|s| s.held_by_majority(hold, inputs.now))
}

/// A region's health memory across rounds.
struct Counted {
    counters: Counters,
    reason: Option<Reason>,
    message: Option<String>,
    unknown: Option<UnknownEvidence>,
}

/// Folds one round's evidence into the region's memory. Unknown evidence
/// counts nothing, until a region-side cause has lasted
/// `healthCheck.unknownSeconds`: then each round counts as failed.
fn count(mut round: Counted, evidence: Evidence, inputs: &Inputs) -> Counted {
    let hc = &inputs.spec.health_check;
    let thresholds = Thresholds {
        failure: hc.failure_threshold,
        success: hc.success_threshold,
    };
    let (passed, reason, message) = match evidence {
        // A region that failed recovers only on a round whose API server
        // answers: its endpoint alone says nothing can be placed or scaled
        // there, so it stays Unhealthy (its last reason kept) meanwhile.
        Evidence::Serving { degraded: Some(_) } if round.counters.health == Health::Unhealthy => {
            return round;
        }
        Evidence::Serving { degraded } => {
            let reason = degraded.as_ref().map(|_| Reason::ControlPlaneUnreachable);
            let message = degraded.map(|why| format!("{why}; its endpoint still serves"));
            (true, reason, message)
        }
        Evidence::NotServing { reason, message } => (false, Some(reason), Some(message)),
        Evidence::Unknown { cause, message } => {
            let since = unknown_since(round.unknown.as_ref(), cause, inputs.now);
            let lasted = inputs.now.as_second() - since.as_second();
            round.unknown = Some(UnknownEvidence {
                cause: cause.as_str().to_string(),
                message: message.clone(),
                since: Time(since),
            });
            if !cause.bounded() || lasted < i64::from(hc.unknown_seconds) {
                return round;
            }
            // No running figure in the text: a steady state writes nothing.
            let message = format!(
                "no evidence either way since {since} ({}): {message}",
                cause.as_str()
            );
            (false, Some(Reason::EvidenceUnknown), Some(message))
        }
    };
    if reason != Some(Reason::EvidenceUnknown) {
        round.unknown = None;
    }
    round.counters = health::step(round.counters, passed, thresholds, inputs.now);
    (round.reason, round.message) = (reason, message);
    round
}

/// When the current run of Unknown evidence began: kept while the cause
/// stays on the same side (region or hub), restarted when it changes side.
/// Since when the region has had no evidence: the earlier start when the
/// cause stays of the same kind, else now, in whole seconds (as the
/// status stores it, so the messages built from it read the same after a
/// write and a read: a fraction would rewrite the status once more).
fn unknown_since(
    previous: Option<&UnknownEvidence>,
    cause: UnknownCause,
    now: Timestamp,
) -> Timestamp {
    let whole = || Timestamp::from_second(now.as_second()).unwrap_or(now);
    previous
        .filter(|p| UnknownCause::parse(&p.cause).bounded() == cause.bounded())
        .map_or_else(whole, |p| p.since.0)
}

/// Pods the operator asked for recently are still starting: a scale-up (a
/// promoted standby) is judged on readiness only after
/// `healthCheck.startupSeconds`, so a new active is not failed back.
fn starting(previous: Option<&RegionAppStatus>, startup_seconds: i32, now: Timestamp) -> bool {
    previous
        .and_then(|p| p.scaled_up_at.as_ref())
        .is_some_and(|at| now.as_second() - at.0.as_second() < i64::from(startup_seconds))
}

/// The state machine's memory as the previous status recorded it.
fn counters_of(previous: &RegionAppStatus) -> Counters {
    Counters {
        health: previous.health.judged(),
        failures: previous.consecutive_failures,
        successes: previous.consecutive_successes,
        since: previous.last_transition_time.as_ref().map(|t| t.0),
    }
}

/// `RegionHealthy` / `RegionUnhealthy` for each change of health.
///
/// A region's first judgement is news only when it is bad: a region found
/// Healthy at the start is what everyone expects, the status shows it, and
/// an Event for it would be one write per region per app each time apps
/// are created.
pub(super) fn health_events(regions: &[RegionView]) -> Vec<Event> {
    let mut events: Vec<Event> = regions
        .iter()
        .filter_map(|region| {
            let before = region
                .previous
                .map_or(Health::Unknown, |p| p.health.judged());
            let after = region.counters.health;
            let announce = match (before, after) {
                (_, Health::Unknown) | (Health::Unknown, Health::Healthy) => false,
                (before, after) => before != after,
            };
            announce.then(|| health_event(region, after))
        })
        .collect();
    events.extend(regions.iter().filter_map(degraded_event));
    events
}

/// `RegionDegraded` when a region starts serving on its endpoint's word
/// only (its API server out of reach).
fn degraded_event(region: &RegionView) -> Option<Event> {
    let was = region
        .previous
        .is_some_and(|p| p.reason == Some(Reason::ControlPlaneUnreachable));
    (region.degraded() && !was).then(|| {
        Event::warning(
            EventReason::RegionDegraded,
            format!(
                "{} is judged on its endpoint alone (nothing is placed or scaled there meanwhile): {}",
                region.name(),
                region.message.as_deref().unwrap_or_default()
            ),
        )
    })
}

fn health_event(region: &RegionView, after: Health) -> Event {
    let detail = match (&region.reason, &region.message) {
        (Some(r), Some(m)) => format!(": {r}: {m}"),
        _ => String::new(),
    };
    let message = format!("{} is {after}{detail}", region.name());
    match after {
        Health::Healthy => Event::normal(EventReason::RegionHealthy, message),
        _ => Event::warning(EventReason::RegionUnhealthy, message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_unknown_period_starts_on_a_whole_second() {
        let now: Timestamp = "2026-12-06T22:09:03.493568319Z".parse().unwrap();
        let since = unknown_since(None, UnknownCause::WorkloadPending, now);
        assert_eq!(since.to_string(), "2026-12-06T22:09:03Z");
        let earlier = UnknownEvidence {
            cause: "WorkloadPending".into(),
            message: String::new(),
            since: Time("2026-12-06T22:00:00Z".parse().unwrap()),
        };
        let kept = unknown_since(Some(&earlier), UnknownCause::WorkloadPending, now);
        assert_eq!(kept, earlier.since.0, "the earlier start is kept");
    }
}
