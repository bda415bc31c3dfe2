//! Failover drills (`failover.drill`): a planned move away from a region
//! and back, on a schedule or on request, so that failover is practised
//! before it is needed.
//!
//! Before the strategy runs, `begin` decides whether a drill starts,
//! continues, or gives up, and which region it holds out of traffic (the
//! strategy treats it like a drained region, but moves make-before-break
//! and through the RPO gate). After the strategy, `settle` records when
//! traffic left and when it came back, and ends the drill.

use jiff::tz::TimeZone;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::health::Health;
use super::rounds::RegionView;
use super::{Event, EventReason, Inputs, conditions, schedule};
use crate::api::{Drill, DrillOutcome, DrillRun, Weekday};

/// Requests older than this are not acted on (a request left behind on an
/// app restored from a backup does not start a drill days later).
const REQUEST_TTL_SECONDS: i64 = 3600;

/// What a drill does to the regions in this decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DrillRole {
    /// Not drilled.
    None,
    /// Traffic moves away from it (and stays away).
    HeldOut,
    /// Traffic moves back to it.
    Returning,
}

/// The drill as `begin` leaves it for the strategy and for `settle`.
#[derive(Debug, Default)]
pub(super) struct Drilling {
    pub run: Option<DrillRun>,
    /// A drill that ended in this decision (aborted or skipped).
    pub ended: Option<DrillOutcome>,
    pub events: Vec<Event>,
}

fn config(inputs: &Inputs) -> Drill {
    inputs.spec.failover.drill.clone().unwrap_or_default()
}

/// Starts, continues or aborts the drill; marks the drilled region.
pub(super) fn begin(inputs: &Inputs, regions: &mut [RegionView]) -> Drilling {
    let mut drilling = Drilling::default();
    match inputs.previous.drill.clone() {
        Some(run) => match abort_reason(inputs, regions, &run) {
            Some(reason) => drilling.end(run, "Aborted", reason),
            None => drilling.run = Some(run),
        },
        None => drilling.start(inputs, regions),
    }
    if let Some(run) = &drilling.run {
        mark(inputs, regions, run);
    }
    drilling
}

impl Drilling {
    fn start(&mut self, inputs: &Inputs, regions: &[RegionView]) {
        let Some(trigger) = trigger(inputs) else {
            return;
        };
        let away = away_from(inputs, regions);
        let run = DrillRun {
            away_from: away.clone().unwrap_or_default(),
            trigger: trigger.to_string(),
            started: Time(inputs.now),
            moved_at: None,
        };
        match away
            .ok_or_else(|| "no region carries traffic".to_string())
            .and_then(|_| ready_to_drill(inputs, regions, &run.away_from))
        {
            Ok(()) => {
                self.events.push(Event::normal(
                    EventReason::DrillStarted,
                    format!(
                        "drill ({trigger}): moving traffic away from {}",
                        run.away_from
                    ),
                ));
                self.run = Some(run);
            }
            // A request is answered (and used up); the schedule waits in
            // its window for the app to be fit for a drill.
            Err(why) if trigger == "Request" => {
                self.end(run, "Skipped", format!("not started: {why}"))
            }
            Err(_) => {}
        }
    }

    fn end(&mut self, run: DrillRun, result: &str, reason: String) {
        let event = Event::warning(
            EventReason::DrillAborted,
            format!("drill away from {}: {result}, {reason}", run.away_from),
        );
        self.events.push(event);
        self.ended = Some(outcome(run, result, reason, None));
    }
}

fn outcome(run: DrillRun, result: &str, reason: String, back_at: Option<Time>) -> DrillOutcome {
    DrillOutcome {
        seconds_to_move: run
            .moved_at
            .as_ref()
            .map(|m| m.0.as_second() - run.started.0.as_second()),
        away_from: run.away_from,
        trigger: run.trigger,
        started: run.started,
        moved_at: run.moved_at,
        back_at,
        result: result.to_string(),
        reason,
    }
}

/// Why a drill should start now: a request from a later second than the
/// last drill's start (status times are whole seconds: a request answered
/// by a drill started in its own second is not answered twice), or the
/// schedule.
fn trigger(inputs: &Inputs) -> Option<&'static str> {
    let last_start = inputs
        .previous
        .drills
        .first()
        .map(|d| d.started.0.as_second());
    let requested = inputs.drill_requested.filter(|&t| {
        t <= inputs.now
            && inputs.now.as_second() - t.as_second() < REQUEST_TTL_SECONDS
            && last_start.is_none_or(|last| t.as_second() > last)
    });
    if requested.is_some() {
        return Some("Request");
    }
    scheduled(inputs, &config(inputs)).then_some("Schedule")
}

/// The schedule allows a drill now: a listed weekday, inside the window,
/// not a blocked date, and none started today.
fn scheduled(inputs: &Inputs, drill: &Drill) -> bool {
    let Some(window) = &drill.window else {
        return false;
    };
    let day = inputs.now.to_zoned(TimeZone::UTC);
    let date = day.date().to_string();
    let weekday = match day.weekday() {
        jiff::civil::Weekday::Monday => Weekday::Mon,
        jiff::civil::Weekday::Tuesday => Weekday::Tue,
        jiff::civil::Weekday::Wednesday => Weekday::Wed,
        jiff::civil::Weekday::Thursday => Weekday::Thu,
        jiff::civil::Weekday::Friday => Weekday::Fri,
        jiff::civil::Weekday::Saturday => Weekday::Sat,
        jiff::civil::Weekday::Sunday => Weekday::Sun,
    };
    let started_today = inputs
        .previous
        .drills
        .iter()
        .any(|d| d.started.0.to_zoned(TimeZone::UTC).date() == day.date());
    drill.weekdays.contains(&weekday)
        && schedule::contains(window, inputs.now)
        && !drill.blocked_dates.contains(&date)
        && !started_today
}

/// The region to move away from: as configured, else the active region
/// (ActiveActive: the first region carrying traffic).
fn away_from(inputs: &Inputs, regions: &[RegionView]) -> Option<String> {
    if let Some(name) = &config(inputs).away_from {
        return Some(name.clone());
    }
    if let Some(active) = &inputs.previous.active_region {
        return Some(active.clone());
    }
    regions
        .iter()
        .find(|r| r.previous.is_some_and(|p| p.weight > 0))
        .map(|r| r.name().to_string())
}

/// A drill never runs while the app is degraded: every region Healthy,
/// no move pending, no override, no damping or blocked promotion, the
/// region carrying traffic and another able to take it.
fn ready_to_drill(inputs: &Inputs, regions: &[RegionView], away: &str) -> Result<(), String> {
    if let Some(sick) = regions
        .iter()
        .find(|r| r.counters.health != Health::Healthy)
    {
        return Err(format!("{} is {}", sick.name(), sick.counters.health));
    }
    if inputs.previous.pending_move.is_some() {
        return Err("a move is pending".into());
    }
    if !inputs.spec.failover.active_override.is_empty() {
        return Err("activeOverride is set".into());
    }
    if request_in_force(inputs) {
        return Err("a move a person asked for is pending or holding".into());
    }
    for raised in ["FlapDamped", "PromotionBlocked"] {
        if conditions::is_true(&inputs.previous.conditions, raised) {
            return Err(format!("{raised} is True"));
        }
    }
    let carrying = |r: &RegionView| r.previous.is_some_and(|p| p.weight > 0);
    match regions.iter().find(|r| r.name() == away) {
        None => return Err(format!("{away} is not one of the app's regions")),
        Some(r) if !carrying(r) => return Err(format!("{away} carries no traffic")),
        Some(_) => {}
    }
    if !regions.iter().any(|r| r.name() != away && r.eligible()) {
        return Err("no other region can take the traffic".into());
    }
    Ok(())
}

/// A one-shot move a person asked for is pending or holding traffic.
fn request_in_force(inputs: &Inputs) -> bool {
    super::controls::request_in_force(
        inputs.move_request,
        inputs.previous.move_request.as_ref(),
        inputs.previous.active_region.as_deref(),
        inputs.spec.failover.failback_hold_seconds,
        inputs.now,
    )
}

/// A running drill gives up at any real fault, an override, damping, a
/// blocked promotion, or when it overruns `maxDurationSeconds`.
fn abort_reason(inputs: &Inputs, regions: &[RegionView], run: &DrillRun) -> Option<String> {
    if let Some(sick) = regions
        .iter()
        .find(|r| r.counters.health == Health::Unhealthy)
    {
        let why = sick.reason.as_ref().map_or("", |r| r.as_str());
        return Some(format!("a real fault: {} is Unhealthy {why}", sick.name()));
    }
    if !inputs.spec.failover.active_override.is_empty() {
        return Some("activeOverride was set".into());
    }
    if request_in_force(inputs) {
        return Some("a person asked to move traffic".into());
    }
    for raised in ["FlapDamped", "PromotionBlocked"] {
        if conditions::is_true(&inputs.previous.conditions, raised) {
            return Some(format!("{raised} turned True"));
        }
    }
    if !regions.iter().any(|r| r.name() == run.away_from) {
        return Some(format!("{} left the app's regions", run.away_from));
    }
    let elapsed = inputs.now.as_second() - run.started.0.as_second();
    (elapsed > i64::from(config(inputs).max_duration_seconds))
        .then(|| format!("not back within maxDurationSeconds ({elapsed}s)"))
}

/// Holds the region out until traffic has been away for `awaySeconds`;
/// then it is the one traffic returns to.
fn mark(inputs: &Inputs, regions: &mut [RegionView], run: &DrillRun) {
    let away_for = run
        .moved_at
        .as_ref()
        .map(|m| inputs.now.as_second() - m.0.as_second());
    let role = match away_for {
        Some(seconds) if seconds >= i64::from(config(inputs).away_seconds) => DrillRole::Returning,
        _ => DrillRole::HeldOut,
    };
    for region in regions.iter_mut().filter(|r| r.name() == run.away_from) {
        region.drill = role;
    }
}

/// After the strategy: when traffic left the region and when it came
/// back; the outcomes list, newest first.
pub(super) fn settle(
    inputs: &Inputs,
    drilling: Drilling,
    weights: &[(String, i32)],
) -> (Option<DrillRun>, Vec<DrillOutcome>, Vec<Event>) {
    let Drilling {
        run,
        mut ended,
        mut events,
    } = drilling;
    let weight = |name: &str| {
        weights
            .iter()
            .find(|(r, _)| r == name)
            .map_or(0, |(_, w)| *w)
    };
    let mut run = run;
    if let Some(r) = run.as_mut()
        && r.moved_at.is_none()
        && weight(&r.away_from) == 0
    {
        r.moved_at = Some(Time(inputs.now));
    }
    if let Some(r) = run.clone()
        && let Some(moved) = &r.moved_at
        && moved.0 != inputs.now
        && weight(&r.away_from) > 0
    {
        events.push(Event::normal(
            EventReason::DrillSucceeded,
            format!(
                "drill away from {} succeeded: traffic left in {}s and is back",
                r.away_from,
                moved.0.as_second() - r.started.0.as_second()
            ),
        ));
        ended = Some(outcome(
            r,
            "Succeeded",
            String::new(),
            Some(Time(inputs.now)),
        ));
        run = None;
    }
    let keep = config(inputs).keep.max(1) as usize;
    let mut outcomes: Vec<DrillOutcome> = ended.into_iter().collect();
    outcomes.extend(inputs.previous.drills.iter().cloned());
    outcomes.truncate(keep);
    (run, outcomes, events)
}
