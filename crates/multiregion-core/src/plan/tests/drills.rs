//! Failover drills: a planned move away and back, on request or on a
//! schedule; never while the app is degraded; aborted by any real fault;
//! every outcome recorded.

use super::*;

fn drilled(drill: serde_json::Value) -> MultiRegionAppSpec {
    spec(json!({"failover": {"failbackHoldSeconds": 5, "drill": drill}}))
}

/// Two healthy rounds: us-east active.
fn settled(spec: MultiRegionAppSpec) -> Sim {
    let mut sim = Sim::new(spec);
    sim.round(&[]);
    sim.round(&[]);
    assert_eq!(sim.weights(), "us-east=100 eu-west=0");
    sim
}

fn events(sim: &Sim, reason: EventReason) -> Vec<String> {
    sim.last
        .as_ref()
        .unwrap()
        .events
        .iter()
        .filter(|e| e.reason == reason)
        .map(|e| e.message.clone())
        .collect()
}

#[test]
fn a_requested_drill_moves_away_make_before_break_and_back() {
    let mut sim = settled(drilled(json!({"awaySeconds": 3})));
    sim.drill_requested = Some(at(sim.now));
    sim.round(&[]);
    assert!(!events(&sim, EventReason::DrillStarted).is_empty());
    let run = sim.status.drill.clone().unwrap();
    assert_eq!(
        (run.away_from.as_str(), run.trigger.as_str()),
        ("us-east", "Request")
    );
    // Planned: eu-west is scaled up first (the Sim makes it ready the
    // round after), then the weights move.
    assert_eq!(sim.weights(), "us-east=100 eu-west=0");
    sim.round(&[]);
    assert_eq!(sim.weights(), "us-east=0 eu-west=100");
    assert_eq!(
        sim.status.last_failover.as_ref().unwrap().reason,
        MoveReason::Drill
    );
    assert!(!sim.condition("FailedOver"), "a drill is not a failover");
    let moved = sim.status.drill.clone().unwrap().moved_at;
    assert!(moved.is_some());
    for _ in 0..3 {
        sim.round(&[]);
    }
    // Away for 3 s, then back, make-before-break.
    sim.round(&[]);
    assert_eq!(sim.weights(), "us-east=100 eu-west=0");
    assert!(sim.status.drill.is_none());
    let outcome = &sim.status.drills[0];
    assert_eq!(outcome.result, "Succeeded");
    assert_eq!(outcome.seconds_to_move, Some(1));
    assert!(outcome.back_at.is_some());
    assert_eq!(
        sim.status.recent_failovers.len(),
        0,
        "drills spend no flap budget"
    );
    // The same request does not start another drill.
    for _ in 0..5 {
        sim.round(&[]);
    }
    assert!(sim.status.drill.is_none());
    assert_eq!(sim.status.drills.len(), 1);
}

#[test]
fn a_real_fault_aborts_the_drill_and_failover_takes_over() {
    let mut sim = settled(drilled(json!({"awaySeconds": 60})));
    sim.drill_requested = Some(at(sim.now));
    sim.round(&[]);
    sim.round(&[]);
    assert_eq!(sim.weights(), "us-east=0 eu-west=100");
    for _ in 0..3 {
        sim.round(&[("eu-west", down())]);
    }
    assert!(sim.status.drill.is_none());
    let outcome = &sim.status.drills[0];
    assert_eq!(outcome.result, "Aborted");
    assert!(
        outcome.reason.contains("eu-west is Unhealthy"),
        "{}",
        outcome.reason
    );
    assert_eq!(
        sim.weights(),
        "us-east=100 eu-west=0",
        "back where it is safe"
    );
    assert!(!events(&sim, EventReason::DrillAborted).is_empty());
}

#[test]
fn a_drill_never_starts_while_the_app_is_degraded() {
    let mut sim = settled(drilled(json!({})));
    for _ in 0..3 {
        sim.round(&[("eu-west", down())]);
    }
    sim.drill_requested = Some(at(sim.now));
    sim.round(&[("eu-west", down())]);
    assert!(sim.status.drill.is_none());
    let outcome = &sim.status.drills[0];
    assert_eq!(outcome.result, "Skipped");
    assert!(
        outcome.reason.contains("eu-west is Unhealthy"),
        "{}",
        outcome.reason
    );
    assert_eq!(sim.weights(), "us-east=100 eu-west=0");
}

#[test]
fn an_override_aborts_a_drill() {
    let mut sim = settled(drilled(json!({"awaySeconds": 60})));
    sim.drill_requested = Some(at(sim.now));
    sim.round(&[]);
    sim.spec.failover.active_override = "eu-west".into();
    sim.round(&[]);
    assert_eq!(sim.status.drills[0].result, "Aborted");
    assert!(sim.status.drills[0].reason.contains("activeOverride"));
}

#[test]
fn the_schedule_starts_one_drill_a_day_in_its_window_and_skips_blocked_dates() {
    // T0 is 2027-01-15T08:00:00Z, a Friday.
    let day = at(0).to_zoned(jiff::tz::TimeZone::UTC);
    assert_eq!(day.weekday(), jiff::civil::Weekday::Friday);
    let window = json!({"start": "08:00", "end": "09:00"});
    let mut sim = settled(drilled(
        json!({"weekdays": ["Fri"], "window": window, "awaySeconds": 2}),
    ));
    sim.round(&[]);
    assert_eq!(sim.status.drill.as_ref().unwrap().trigger, "Schedule");
    for _ in 0..8 {
        sim.round(&[]);
    }
    assert_eq!(sim.status.drills[0].result, "Succeeded");
    for _ in 0..10 {
        sim.round(&[]);
    }
    assert_eq!(sim.status.drills.len(), 1, "one a day");

    let blocked =
        json!({"weekdays": ["Fri"], "window": window, "blockedDates": [day.date().to_string()]});
    let mut sim = settled(drilled(blocked));
    sim.round(&[]);
    assert!(sim.status.drill.is_none() && sim.status.drills.is_empty());
    let other_day = json!({"weekdays": ["Mon"], "window": window});
    let mut sim = settled(drilled(other_day));
    sim.round(&[]);
    assert!(sim.status.drill.is_none());
}

#[test]
fn only_the_last_outcomes_are_kept() {
    let mut sim = settled(drilled(json!({"keep": 2, "awaySeconds": 1})));
    for _ in 0..3 {
        sim.drill_requested = Some(at(sim.now));
        for _ in 0..6 {
            sim.round(&[]);
        }
    }
    assert_eq!(sim.status.drills.len(), 2);
    assert!(sim.status.drills.iter().all(|d| d.result == "Succeeded"));
}

#[test]
fn active_active_drills_take_the_region_to_zero_and_back() {
    let mut sim = Sim::new(spec(json!({
        "strategy": "ActiveActive",
        "failover": {"drill": {"awayFrom": "eu-west", "awaySeconds": 2}}
    })));
    sim.round(&[]);
    assert_eq!(sim.weights(), "us-east=50 eu-west=50");
    sim.drill_requested = Some(at(sim.now));
    sim.round(&[]);
    assert_eq!(sim.weights(), "us-east=100 eu-west=0");
    for _ in 0..2 {
        sim.round(&[]);
    }
    sim.round(&[]);
    assert_eq!(sim.weights(), "us-east=50 eu-west=50");
    assert_eq!(sim.status.drills[0].result, "Succeeded");
}

#[test]
fn a_request_is_answered_once_although_status_times_are_whole_seconds() {
    let mut sim = settled(drilled(json!({"awaySeconds": 60})));
    let requested = at(sim.now)
        .checked_add(jiff::SignedDuration::from_millis(600))
        .unwrap();
    sim.drill_requested = Some(requested);
    sim.round(&[]);
    assert!(sim.status.drill.is_some());
    sim.spec.failover.active_override = "us-east".into();
    sim.round(&[]);
    assert_eq!(sim.status.drills.len(), 1, "aborted by the override");
    // As the API server stores it: the start truncated to its second, which
    // is earlier than the request.
    sim.status.drills[0].started =
        k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(at(sim.now - 2));
    sim.spec.failover.active_override = String::new();
    for _ in 0..3 {
        sim.round(&[]);
    }
    assert_eq!(
        sim.status.drills.len(),
        1,
        "no second drill for one request"
    );
    assert!(sim.status.drill.is_none());
}

#[test]
fn with_a_database_the_drill_does_not_return_onto_an_old_primary_until_it_is_rewound() {
    use crate::plan::replication::lags;
    use crate::plan::tests::replication::{at as t, fenced_primary, primary, readings, standby};
    let mut sim = settled(spec(json!({"failover": {
        "failbackHoldSeconds": 5,
        "drill": {"awaySeconds": 3},
        "replication": {"mode": "Asynchronous", "maxLagSeconds": 30,
                        "lagFrom": {"postgres": {"secretRef": {"name": "db"}}}}
    }})));
    let with =
        |all: &BTreeMap<String, crate::plan::replication::ReplicaLag>, region: &str| Observation {
            replica: all.get(region).cloned(),
            ..up(3, 3)
        };
    let before = lags(
        &readings(vec![
            ("us-east", primary(5_000, &[("eu-west", 5_000, Some(0.0))])),
            ("eu-west", standby(5_000, Some(0))),
        ]),
        None,
        t(1),
    )
    .0;
    sim.drill_requested = Some(at(sim.now));
    for _ in 0..2 {
        sim.round(&[
            ("us-east", with(&before, "us-east")),
            ("eu-west", with(&before, "eu-west")),
        ]);
    }
    assert_eq!(sim.weights(), "us-east=0 eu-west=100");
    // Switched over: eu-west the primary, us-east its fenced old one.
    let after = lags(
        &readings(vec![
            ("us-east", fenced_primary(5_000, &[])),
            ("eu-west", primary(6_000, &[])),
        ]),
        None,
        t(2),
    )
    .0;
    assert!(after["us-east"].parted, "{:?}", after["us-east"]);
    for _ in 0..8 {
        sim.round(&[
            ("us-east", with(&after, "us-east")),
            ("eu-west", with(&after, "eu-west")),
        ]);
    }
    assert_eq!(sim.weights(), "us-east=0 eu-west=100", "the data stays");
    assert!(sim.status.drill.is_none(), "the drill is over");
    let outcome = &sim.status.drills[0];
    assert_eq!(
        (outcome.result.as_str(), outcome.reason.as_str()),
        ("Aborted", "PromotionBlocked turned True")
    );
    assert_eq!(
        sim.condition_reason("PromotionBlocked").as_deref(),
        Some("ReplicationLag"),
        "us-east is on an old history, never promoted"
    );
}
