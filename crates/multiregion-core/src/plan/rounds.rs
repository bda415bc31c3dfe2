//! Stage 1: a health round per region, folded into the counters carried
//! over from the previous status. Produces one `RegionView` per spec region:
//! everything the later stages need to know about it.

use std::borrow::Cow;

use jiff::Timestamp;

use super::drill::DrillRole;
use super::health::{self, Counters, Health, Round, Thresholds, WorkloadState};
use super::{Event, EventReason, Inputs, Observation};
use crate::api::{AppRegion, Reason, RegionAppStatus, Strategy};

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
    if starting(previous, spec.health_check.startup_seconds, inputs.now)
        && let WorkloadState::Placed { rolling_out, .. } = &mut obs.workload
    {
        *rolling_out = true;
    }
    let mut counters = previous.map_or(Counters::UNKNOWN, counters_of);
    let mut reason = previous.and_then(|p| p.reason.clone());
    let mut message = previous.and_then(|p| p.message.clone());
    if inputs.round {
        let thresholds = Thresholds {
            failure: spec.health_check.failure_threshold,
            success: spec.health_check.success_threshold,
        };
        let round = first_judgement_grace(
            counters.health,
            &obs.workload,
            health::judge(
                &obs.region,
                &obs.workload,
                &obs.http,
                spec.health_check.min_ready_ratio,
            ),
        );
        match round {
            Round::Passed => {
                counters = health::step(counters, true, thresholds, inputs.now);
                (reason, message) = (None, None);
            }
            Round::Degraded {
                reason: why,
                message: details,
            } => {
                counters = health::step(counters, true, thresholds, inputs.now);
                (reason, message) = (Some(why), Some(details));
            }
            Round::Failed {
                reason: why,
                message: details,
            } => {
                counters = health::step(counters, false, thresholds, inputs.now);
                (reason, message) = (Some(why), Some(details));
            }
            Round::Skipped => {}
        }
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
        obs,
        counters,
        reason,
        message,
        ready,
        full,
        standby: spec.standby.replicas.clamp(0, full),
        previous,
        drill: DrillRole::None,
    }
}

/// A region never judged yet whose pods are still starting is not failed
/// for an HTTP check that fails because nothing listens yet: the first
/// choice then waits for the preferred region instead of passing it over.
fn first_judgement_grace(health: Health, workload: &WorkloadState, round: Round) -> Round {
    let starting = matches!(
        workload,
        WorkloadState::Placed {
            rolling_out: true,
            ..
        }
    );
    match round {
        Round::Failed {
            reason: Reason::HttpProbeFailed,
            ..
        } if health == Health::Unknown && starting => Round::Skipped,
        other => other,
    }
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
        health: previous.health,
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
            let before = region.previous.map_or(Health::Unknown, |p| p.health);
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
                "{} keeps its traffic: {}",
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
