//! Table and property tests of the decisions, with an injected clock.

use super::*;
use crate::api::{Health, MoveReason, MultiRegionAppSpec, Reason, RegionAppStatus};
use health::{HttpResult, LagReport, PlacementProblem, RegionState, WorkloadState};
use proptest::prelude::{
    ProptestConfig, TestCaseError, prop, prop_assert, prop_assert_eq, proptest,
};
use proptest::strategy::Strategy as _;
use serde_json::json;

const T0: i64 = 1_800_000_000;

fn at(s: i64) -> Timestamp {
    Timestamp::from_second(T0 + s).unwrap()
}

fn spec(v: serde_json::Value) -> MultiRegionAppSpec {
    let mut base = json!({
        "strategy": "ActivePassive",
        "regions": [{"name": "us-east"}, {"name": "eu-west"}],
        "workload": {"replicas": 3, "template": {}},
        "healthCheck": {"intervalSeconds": 1, "failureThreshold": 3, "successThreshold": 2, "startupSeconds": 0},
        "failover": {"failbackHoldSeconds": 60}
    });
    merge(&mut base, v);
    serde_json::from_value(base).expect("valid spec")
}

fn merge(base: &mut serde_json::Value, patch: serde_json::Value) {
    match (base, patch) {
        (serde_json::Value::Object(b), serde_json::Value::Object(p)) => {
            for (k, v) in p {
                merge(b.entry(k).or_insert(serde_json::Value::Null), v);
            }
        }
        (b, p) => *b = p,
    }
}

/// A region that is reachable with `ready` of `replicas` ready.
fn up(replicas: i32, ready: i32) -> Observation {
    Observation::ready(replicas, replicas.min(ready))
}

/// A reachable region whose Deployment of `replicas` is rolling out,
/// none ready yet.
fn rolling_out(replicas: i32) -> Observation {
    Observation {
        workload: WorkloadState::Placed {
            replicas,
            ready: 0,
            lag: None,
            rolling_out: true,
            role: None,
        },
        ..up(replicas, 0)
    }
}

fn down() -> Observation {
    Observation::unreachable("connection refused", 3)
}

/// Marks a lag report the simulation dates at the round it is used in.
const REPORTED_NOW: i64 = -1;

/// The observation with a lag report made at the time of the round.
fn with_lag(o: Observation, lag: f64) -> Observation {
    o.with_lag(LagReport {
        seconds: lag,
        observed_at: Some(at(REPORTED_NOW)),
    })
}

/// Drives decisions round after round, feeding each status back in and
/// making placed replicas follow the decision (pods ready at once) unless
/// the test overrides an observation.
struct Sim {
    spec: MultiRegionAppSpec,
    status: MultiRegionAppStatus,
    now: i64,
    last: Option<Decision>,
    /// `multiregion.io/drill-requested`, as the app carries it.
    drill_requested: Option<Timestamp>,
    /// `multiregion.io/move-to` and `-requested-at`, as the app carries them.
    move_request: Option<crate::plan::controls::MoveRequest>,
    /// What the other operator replicas see of each region.
    sightings: BTreeMap<String, crate::plan::observers::Sightings>,
    /// The replicas' observer Leases, live or not.
    observers: Vec<crate::plan::observers::Observer>,
    /// Where the data tier last read the primary database.
    primary_mark: Option<crate::plan::replication::PrimaryMark>,
}

impl Sim {
    fn new(spec: MultiRegionAppSpec) -> Self {
        Sim {
            spec,
            status: MultiRegionAppStatus::default(),
            now: 0,
            last: None,
            drill_requested: None,
            move_request: None,
            sightings: BTreeMap::new(),
            observers: Vec::new(),
            primary_mark: None,
        }
    }

    /// Observations where every region is up and runs what was decided.
    fn healthy_world(&self) -> BTreeMap<String, Observation> {
        self.spec
            .regions
            .iter()
            .map(|r| {
                let replicas = self
                    .last
                    .as_ref()
                    .and_then(|d| d.placements.iter().find(|p| p.region == r.name))
                    .map_or(self.spec.workload.replicas, |p| p.replicas);
                (r.name.clone(), up(replicas, replicas))
            })
            .collect()
    }

    /// `count` rounds where every region reports its database as `lags`
    /// has it, the `lost` regions down and the others up; the last
    /// decision.
    fn rounds_with_databases(
        &mut self,
        lags: &BTreeMap<String, crate::plan::replication::ReplicaLag>,
        lost: &[&str],
        count: usize,
    ) -> &Decision {
        for _ in 0..count {
            let observed: Vec<(String, Observation)> = self
                .healthy_world()
                .into_iter()
                .map(|(region, healthy)| {
                    let o = if lost.contains(&region.as_str()) {
                        down()
                    } else {
                        healthy
                    };
                    let replica = lags.get(&region).cloned();
                    (region, Observation { replica, ..o })
                })
                .collect();
            let overrides: Vec<(&str, Observation)> = observed
                .iter()
                .map(|(r, o)| (r.as_str(), o.clone()))
                .collect();
            self.round(&overrides);
        }
        self.last.as_ref().unwrap()
    }

    /// One round one second later, with some observations replaced.
    fn round(&mut self, overrides: &[(&str, Observation)]) -> &Decision {
        self.step(overrides, true)
    }

    fn step(&mut self, overrides: &[(&str, Observation)], round: bool) -> &Decision {
        self.now += 1;
        let mut obs = self.healthy_world();
        for (name, o) in overrides {
            obs.insert(name.to_string(), self.dated(o.clone()));
        }
        let d = decide(&Inputs {
            spec: &self.spec,
            generation: Some(1),
            previous: &self.status,
            observations: &obs,
            round,
            published: &[],
            drill_requested: self.drill_requested,
            move_request: self.move_request.as_ref(),
            sightings: &self.sightings,
            observers: &self.observers,
            primary_mark: self.primary_mark.as_ref(),
            now: at(self.now),
        });
        self.status = d.status.clone();
        self.last = Some(d);
        self.last.as_ref().unwrap()
    }

    /// A lag report made "now" (`with_lag`) gets the round's time.
    fn dated(&self, o: Observation) -> Observation {
        match o.lag_report() {
            Some(r) if r.observed_at == Some(at(REPORTED_NOW)) => o.with_lag(LagReport {
                observed_at: Some(at(self.now)),
                ..r
            }),
            _ => o,
        }
    }

    fn weights(&self) -> String {
        self.status.weights.clone().unwrap_or_default()
    }

    fn condition(&self, t: &str) -> bool {
        conditions::is_true(&self.status.conditions, t)
    }

    /// The reason of a True condition of this type.
    fn condition_reason(&self, t: &str) -> Option<String> {
        self.status
            .conditions
            .iter()
            .find(|c| c.type_ == t && c.status == "True")
            .map(|c| c.reason.clone())
    }

    fn region(&self, name: &str) -> &RegionAppStatus {
        self.status.regions.iter().find(|r| r.name == name).unwrap()
    }
}

// ---------- ActiveActive ----------

fn three_active() -> MultiRegionAppSpec {
    spec(json!({
        "strategy": "ActiveActive",
        "regions": [{"name": "us-east"}, {"name": "eu-west"}, {"name": "ap-south"}]
    }))
}

#[test]
fn active_active_spreads_by_weight_and_drops_a_failed_region_after_the_threshold() {
    let mut sim = Sim::new(three_active());
    sim.round(&[]);
    assert_eq!(sim.weights(), "us-east=34 eu-west=33 ap-south=33");
    sim.round(&[("eu-west", down())]);
    sim.round(&[("eu-west", down())]);
    assert_eq!(
        sim.weights(),
        "us-east=34 eu-west=33 ap-south=33",
        "two failed rounds are not enough"
    );
    let d = sim.round(&[("eu-west", down())]).clone();
    assert_eq!(sim.weights(), "us-east=50 eu-west=0 ap-south=50");
    assert!(d.weights_changed);
    assert_eq!(sim.region("eu-west").health, Health::Unhealthy);
    assert_eq!(
        sim.region("eu-west").reason.as_ref().map(Reason::as_str),
        Some("RegionUnreachable")
    );
    assert!(sim.condition("Degraded") && sim.condition("FailedOver") && sim.condition("Ready"));
    assert!(
        !d.placements
            .iter()
            .find(|p| p.region == "eu-west")
            .unwrap()
            .touch,
        "an unreachable region is never touched"
    );
    // Back: successThreshold (2) good rounds.
    sim.round(&[]);
    assert_eq!(sim.region("eu-west").weight, 0);
    sim.round(&[]);
    assert_eq!(sim.weights(), "us-east=34 eu-west=33 ap-south=33");
    assert!(!sim.condition("Degraded") && !sim.condition("FailedOver"));
}

#[test]
fn region_events_announce_changes_of_health_not_the_first_healthy_judgement() {
    let reasons = |d: &Decision| -> Vec<String> {
        d.events
            .iter()
            .filter(|e| e.reason.as_str().starts_with("Region"))
            .map(|e| e.message.clone())
            .collect()
    };
    let mut sim = Sim::new(spec(json!({
        "strategy": "ActiveActive",
        "regions": [{"name": "us-east"}, {"name": "eu-west"}],
        "healthCheck": {"failureThreshold": 1, "successThreshold": 1}
    })));
    let d = sim.round(&[("eu-west", down())]).clone();
    let first = reasons(&d);
    assert_eq!(
        first.len(),
        1,
        "found bad at the start is news; found Healthy is not: {first:?}"
    );
    assert!(first[0].starts_with("eu-west is Unhealthy"), "{first:?}");
    assert_eq!(sim.region("us-east").health, Health::Healthy);
    assert!(reasons(&sim.round(&[("eu-west", down())]).clone()).is_empty());
    let back = sim.round(&[]).clone();
    assert_eq!(reasons(&back), ["eu-west is Healthy"]);
    assert_eq!(
        back.events
            .iter()
            .find(|e| e.reason == EventReason::RegionHealthy)
            .map(|e| e.type_),
        Some(EventType::Normal)
    );
    let lost = sim.round(&[("us-east", down())]).clone();
    assert_eq!(
        lost.events
            .iter()
            .filter(|e| e.reason == EventReason::RegionUnhealthy)
            .count(),
        1
    );
    assert!(
        reasons(&sim.round(&[]).clone())
            .iter()
            .all(|m| m == "us-east is Healthy")
    );
}

#[test]
fn active_active_weights_are_relative_shares() {
    let mut sim = Sim::new(spec(json!({
        "strategy": "ActiveActive",
        "regions": [{"name": "a", "weight": 300}, {"name": "b", "weight": 100}, {"name": "c", "weight": 0}]
    })));
    sim.round(&[]);
    assert_eq!(sim.weights(), "a=75 b=25 c=0");
}

#[test]
fn drained_and_cordoned_regions_get_no_weight_but_keep_replicas() {
    let mut sim = Sim::new(spec(json!({
        "strategy": "ActiveActive",
        "regions": [{"name": "a", "drain": true}, {"name": "b"}, {"name": "c"}]
    })));
    let mut cordoned = up(3, 3);
    cordoned.cordoned = true;
    let d = sim.round(&[("c", cordoned)]).clone();
    assert_eq!(sim.weights(), "a=0 b=100 c=0");
    assert_eq!(sim.region("a").role, Role::Drained);
    assert_eq!(sim.region("c").role, Role::Drained);
    assert!(
        d.placements.iter().all(|p| p.replicas == 3),
        "replicas kept"
    );
}

#[test]
fn with_no_healthy_region_keep_last_keeps_weights_and_even_spreads() {
    for (policy, want) in [
        ("KeepLast", "us-east=34 eu-west=33 ap-south=33"),
        ("Even", "us-east=34 eu-west=33 ap-south=33"),
    ] {
        let mut s = three_active();
        s.regions[0].weight = 800;
        s.failover.all_unhealthy = serde_json::from_value(json!(policy)).unwrap();
        let mut sim = Sim::new(s);
        sim.round(&[]);
        let before = sim.weights();
        for _ in 0..3 {
            sim.round(&[
                ("us-east", down()),
                ("eu-west", down()),
                ("ap-south", down()),
            ]);
        }
        assert!(sim.condition("AllRegionsUnhealthy"), "{policy}");
        assert!(!sim.condition("Ready"));
        if policy == "KeepLast" {
            assert_eq!(
                sim.weights(),
                before,
                "KeepLast keeps the last published weights"
            );
        } else {
            assert_eq!(sim.weights(), want);
        }
    }
}

// ---------- ActivePassive ----------

#[test]
fn active_passive_starts_on_the_first_healthy_region_with_a_warm_standby() {
    let mut sim = Sim::new(spec(json!({})));
    let d = sim.round(&[]).clone();
    assert_eq!(sim.weights(), "us-east=100 eu-west=0");
    assert_eq!(sim.status.active_region.as_deref(), Some("us-east"));
    assert_eq!(d.moved, None, "the first placement is not a failover");
    let replicas: Vec<(String, i32, Role)> = d
        .placements
        .iter()
        .map(|p| (p.region.clone(), p.replicas, p.role))
        .collect();
    assert_eq!(
        replicas,
        [
            ("us-east".into(), 3, Role::Active),
            ("eu-west".into(), 1, Role::Standby)
        ]
    );
    assert_eq!(sim.status.failovers_in_last_hour, 0);
}

#[test]
fn the_first_choice_waits_for_the_preferred_region_to_be_judged() {
    let mut sim = Sim::new(spec(json!({})));
    let starting = rolling_out(3);
    sim.round(&[("us-east", starting)]);
    assert_eq!(sim.status.active_region, None, "us-east is not judged yet");
    assert_eq!(sim.weights(), "us-east=0 eu-west=0");
    sim.round(&[]);
    assert_eq!(sim.status.active_region.as_deref(), Some("us-east"));
}

#[test]
fn unplanned_failover_moves_weights_and_scales_the_standby_in_the_same_decision() {
    let mut sim = Sim::new(spec(json!({})));
    sim.round(&[]);
    sim.round(&[("us-east", down())]);
    sim.round(&[("us-east", down())]);
    assert_eq!(sim.weights(), "us-east=100 eu-west=0");
    let d = sim.round(&[("us-east", down())]).clone();
    assert_eq!(sim.weights(), "us-east=0 eu-west=100");
    let eu = d.placements.iter().find(|p| p.region == "eu-west").unwrap();
    assert_eq!((eu.replicas, eu.role), (3, Role::Active));
    let us = d.placements.iter().find(|p| p.region == "us-east").unwrap();
    assert_eq!((us.replicas, us.role, us.touch), (1, Role::Standby, false));
    let m = d.moved.unwrap();
    assert_eq!(
        (
            m.from.as_deref(),
            m.to.as_str(),
            m.reason.as_str(),
            m.planned
        ),
        (Some("us-east"), "eu-west", "RegionUnreachable", false)
    );
    let f = sim.status.last_failover.clone().unwrap();
    assert_eq!((f.from.as_str(), f.to.as_str()), ("us-east", "eu-west"));
    assert_eq!(sim.status.failovers_in_last_hour, 1);
    assert!(sim.condition("FailedOver") && sim.condition("Ready"));
    assert!(
        d.events
            .iter()
            .any(|e| e.reason == EventReason::FailedOver && e.type_ == EventType::Warning)
    );
    assert!(
        d.events
            .iter()
            .any(|e| e.reason == EventReason::RoleChanged)
    );
}

#[test]
fn a_promoted_standby_is_not_failed_back_while_its_pods_start() {
    let mut sim = Sim::new(spec(json!({"healthCheck": {"startupSeconds": 10}})));
    sim.now = 100;
    sim.round(&[]);
    for _ in 0..3 {
        sim.round(&[("us-east", down())]);
    }
    assert_eq!(sim.weights(), "us-east=0 eu-west=100");
    // eu-west was scaled from 1 to 3; its new pods take a while.
    for _ in 0..8 {
        sim.round(&[("us-east", down()), ("eu-west", up(3, 1))]);
    }
    assert_eq!(
        sim.region("eu-west").health,
        Health::Healthy,
        "starting pods do not count"
    );
    assert_eq!(sim.weights(), "us-east=0 eu-west=100");
    // Past startupSeconds, missing pods count again.
    for _ in 0..4 {
        sim.round(&[("us-east", down()), ("eu-west", up(3, 1))]);
    }
    assert_eq!(
        sim.region("eu-west").reason.as_ref().map(Reason::as_str),
        Some("NotEnoughReadyReplicas")
    );
}

#[test]
fn a_recovered_region_is_fenced_as_standby_until_the_failback_hold() {
    let mut sim = Sim::new(spec(json!({})));
    sim.round(&[]);
    for _ in 0..3 {
        sim.round(&[("us-east", down())]);
    }
    // us-east comes back: it reports its old replicas; it is fenced.
    let d = sim.round(&[("us-east", up(3, 3))]).clone();
    let us = d.placements.iter().find(|p| p.region == "us-east").unwrap();
    assert_eq!(
        (us.replicas, us.role, us.touch, us.scale_down),
        (1, Role::Standby, true, true)
    );
    assert_eq!(sim.region("us-east").weight, 0);
    sim.round(&[]);
    assert_eq!(sim.region("us-east").health, Health::Healthy);
    assert_eq!(sim.weights(), "us-east=0 eu-west=100");
    assert!(sim.condition("FailbackPending"), "holding before failback");
}

#[test]
fn automatic_failback_waits_exactly_the_hold_then_moves_make_before_break() {
    let mut sim = Sim::new(spec(json!({})));
    sim.round(&[]);
    for _ in 0..3 {
        sim.round(&[("us-east", down())]);
    }
    sim.round(&[]);
    sim.round(&[]); // us-east Healthy now
    let healthy_since = sim
        .region("us-east")
        .last_transition_time
        .clone()
        .unwrap()
        .0;
    // Just before the hold: nothing moves.
    while at(sim.now + 1).as_second() - healthy_since.as_second() < 60 {
        sim.round(&[]);
        assert_eq!(sim.weights(), "us-east=0 eu-west=100");
    }
    // At the hold: us-east is scaled up first, weights stay while it is cold.
    let d = sim.round(&[("us-east", up(1, 1))]).clone();
    assert_eq!(sim.weights(), "us-east=0 eu-west=100");
    assert_eq!(
        sim.status.pending_move.as_ref().map(|p| p.to.as_str()),
        Some("us-east")
    );
    assert_eq!(d.placements[0].replicas, 3, "target scaled to full first");
    assert_eq!(d.placements[1].replicas, 3, "old active keeps serving");
    // Scaled but not ready enough (1 of 3, 2 needed): still waiting.
    sim.round(&[("us-east", up(3, 1))]);
    assert_eq!(sim.weights(), "us-east=0 eu-west=100");
    // Ready: weights move, then the old active is scaled down after.
    let d = sim.round(&[("us-east", up(3, 2))]).clone();
    assert_eq!(sim.weights(), "us-east=100 eu-west=0");
    let m = d.moved.unwrap();
    assert!(m.planned && m.reason == MoveReason::Failback);
    let eu = &d.placements[1];
    assert_eq!(
        (eu.replicas, eu.role, eu.scale_down),
        (1, Role::Standby, true)
    );
    assert!(sim.status.pending_move.is_none());
    assert!(!sim.condition("FailedOver") && !sim.condition("FailbackPending"));
}

#[test]
fn manual_failback_waits_for_active_override() {
    let mut sim = Sim::new(spec(
        json!({"failover": {"failback": "Manual", "failbackHoldSeconds": 0}}),
    ));
    sim.round(&[]);
    for _ in 0..3 {
        sim.round(&[("us-east", down())]);
    }
    for _ in 0..10 {
        sim.round(&[]);
    }
    assert_eq!(sim.weights(), "us-east=0 eu-west=100");
    assert!(sim.condition("FailbackPending"));
    sim.spec.failover.active_override = "us-east".into();
    sim.round(&[]);
    assert_eq!(
        sim.weights(),
        "us-east=0 eu-west=100",
        "make-before-break: target scales first"
    );
    sim.round(&[]);
    assert_eq!(sim.weights(), "us-east=100 eu-west=0");
    assert_eq!(
        sim.status.last_failover.as_ref().unwrap().reason,
        MoveReason::Override
    );
}

#[test]
fn a_move_request_moves_once_holds_for_the_hold_then_the_usual_rules_apply() {
    let mut sim = Sim::new(spec(json!({})));
    // us-east Healthy for longer than the hold: a failback would be at once.
    for _ in 0..100 {
        sim.round(&[]);
    }
    assert_eq!(sim.weights(), "us-east=100 eu-west=0");
    sim.move_request = Some(crate::plan::controls::MoveRequest {
        region: "eu-west".into(),
        requested_at: at(sim.now),
    });
    sim.round(&[]);
    assert_eq!(sim.weights(), "us-east=100 eu-west=0", "make-before-break");
    sim.round(&[]);
    assert_eq!(sim.weights(), "us-east=0 eu-west=100");
    let arrived = sim.now;
    let record = sim.status.move_request.clone().unwrap();
    assert_eq!(record.completed_at.map(|t| t.0), Some(at(arrived)));
    assert_eq!(
        sim.status.last_failover.as_ref().unwrap().reason,
        MoveReason::Override,
        "a planned move a person made"
    );
    // us-east, Healthy all along, would be failed back to at once: the
    // request holds traffic in eu-west for failbackHoldSeconds (60 s).
    while sim.now < arrived + 59 {
        sim.round(&[]);
        assert_eq!(
            sim.weights(),
            "us-east=0 eu-west=100",
            "held at {}",
            sim.now
        );
    }
    assert!(sim.condition("FailbackPending"));
    for _ in 0..5 {
        sim.round(&[]);
    }
    assert_eq!(sim.weights(), "us-east=100 eu-west=0", "the usual failback");
    for _ in 0..30 {
        sim.round(&[]);
    }
    assert_eq!(
        sim.weights(),
        "us-east=100 eu-west=0",
        "a request is carried out once"
    );
}

#[test]
fn a_move_request_that_cannot_be_followed_blocks_no_failover_and_lapses() {
    let mut sim = Sim::new(spec(json!({
        "regions": [{"name": "us-east"}, {"name": "eu-west"}, {"name": "ap-south"}]
    })));
    for _ in 0..5 {
        sim.round(&[]);
    }
    for _ in 0..3 {
        sim.round(&[("ap-south", down())]);
    }
    sim.move_request = Some(crate::plan::controls::MoveRequest {
        region: "ap-south".into(),
        requested_at: at(sim.now),
    });
    for _ in 0..3 {
        sim.round(&[("ap-south", down())]);
    }
    assert_eq!(
        sim.weights(),
        "us-east=100 eu-west=0 ap-south=0",
        "not into an Unhealthy region"
    );
    for _ in 0..3 {
        sim.round(&[("ap-south", down()), ("us-east", down())]);
    }
    assert_eq!(
        sim.weights(),
        "us-east=0 eu-west=100 ap-south=0",
        "the dead active fails over at once, where it can"
    );
}

#[test]
fn a_move_request_lapses_when_its_region_recovers_too_late() {
    let mut sim = Sim::new(spec(json!({})));
    for _ in 0..5 {
        sim.round(&[]);
    }
    for _ in 0..3 {
        sim.round(&[("eu-west", down())]);
    }
    sim.move_request = Some(crate::plan::controls::MoveRequest {
        region: "eu-west".into(),
        requested_at: at(sim.now),
    });
    sim.round(&[("eu-west", down())]);
    sim.now += crate::plan::controls::REQUEST_LAPSES_AFTER_SECONDS;
    for _ in 0..10 {
        sim.round(&[]);
        assert_eq!(
            sim.weights(),
            "us-east=100 eu-west=0",
            "eu-west back after the request lapsed: it moves nothing"
        );
    }
    assert!(
        sim.status
            .move_request
            .as_ref()
            .unwrap()
            .completed_at
            .is_none()
    );
}

#[test]
fn a_move_request_held_region_that_fails_is_failed_over_at_once() {
    let mut sim = Sim::new(spec(json!({"failover": {"failbackHoldSeconds": 3600}})));
    for _ in 0..5 {
        sim.round(&[]);
    }
    sim.move_request = Some(crate::plan::controls::MoveRequest {
        region: "eu-west".into(),
        requested_at: at(sim.now),
    });
    sim.round(&[]);
    sim.round(&[]);
    assert_eq!(sim.weights(), "us-east=0 eu-west=100");
    for _ in 0..3 {
        sim.round(&[("eu-west", down())]);
    }
    assert_eq!(sim.weights(), "us-east=100 eu-west=0", "the hold is no pin");
}

#[test]
fn active_override_to_a_cold_region_moves_weights_only_when_its_pods_are_ready() {
    let mut sim = Sim::new(spec(json!({"standby": {"replicas": 0}})));
    sim.round(&[]);
    sim.spec.failover.active_override = "eu-west".into();
    let d = sim.round(&[("eu-west", up(0, 0))]).clone();
    assert_eq!(d.placements[1].replicas, 3);
    assert_eq!(sim.weights(), "us-east=100 eu-west=0");
    sim.round(&[("eu-west", up(3, 0))]);
    assert_eq!(sim.weights(), "us-east=100 eu-west=0");
    sim.round(&[("eu-west", up(3, 3))]);
    assert_eq!(sim.weights(), "us-east=0 eu-west=100");
    // The override wins over health: eu-west failing does not move traffic.
    for _ in 0..5 {
        sim.round(&[("eu-west", down())]);
    }
    assert_eq!(sim.weights(), "us-east=0 eu-west=100");
}

#[test]
fn override_to_an_unhealthy_region_warns() {
    let mut sim = Sim::new(spec(json!({})));
    sim.round(&[]);
    for _ in 0..3 {
        sim.round(&[("eu-west", down())]);
    }
    sim.spec.failover.active_override = "eu-west".into();
    let d = sim.round(&[("eu-west", down())]).clone();
    assert!(
        d.events
            .iter()
            .any(|e| e.reason == EventReason::OverrideToUnhealthyRegion)
    );
}

#[test]
fn draining_the_active_region_moves_weights_at_once_and_keeps_its_replicas() {
    let mut sim = Sim::new(spec(json!({})));
    sim.round(&[]);
    sim.spec.regions[0].drain = true;
    let d = sim.round(&[("eu-west", up(1, 1))]).clone();
    assert_eq!(sim.weights(), "us-east=0 eu-west=100");
    assert_eq!(sim.region("us-east").role, Role::Drained);
    assert_eq!(
        d.placements[1].replicas, 3,
        "the new active scales up in the same decision"
    );
    assert!(d.moved.unwrap().planned);
}

#[test]
fn rpo_gate_wait_blocks_promotion_and_promote_warns() {
    for (mode, moves) in [("Wait", false), ("Promote", true)] {
        let mut sim = Sim::new(spec(
            json!({"failover": {"replication": {"maxLagSeconds": 30, "onExceeded": mode}}}),
        ));
        sim.round(&[]);
        let mut last = None;
        for _ in 0..3 {
            last = Some(
                sim.round(&[("us-east", down()), ("eu-west", with_lag(up(1, 1), 45.0))])
                    .clone(),
            );
        }
        let d = last.unwrap();
        if moves {
            assert_eq!(sim.weights(), "us-east=0 eu-west=100");
            assert!(
                d.events
                    .iter()
                    .any(|e| e.reason == EventReason::PromotedWithReplicationLag
                        && e.message.contains("45s"))
            );
            assert!(!sim.condition("PromotionBlocked"));
        } else {
            assert_eq!(sim.weights(), "us-east=100 eu-west=0");
            assert!(sim.condition("PromotionBlocked"));
            let c = sim
                .status
                .conditions
                .iter()
                .find(|c| c.type_ == "PromotionBlocked")
                .unwrap();
            assert!(c.message.contains("45s"), "{}", c.message);
            // Lag exactly at the limit passes.
            sim.round(&[("us-east", down()), ("eu-west", with_lag(up(1, 1), 30.0))]);
            assert_eq!(sim.weights(), "us-east=0 eu-west=100");
            assert!(!sim.condition("PromotionBlocked"));
        }
    }
}

#[test]
fn synchronous_replication_promotes_only_a_region_in_sync() {
    for mode in ["Synchronous", "SemiSynchronous"] {
        let mut sim = Sim::new(spec(json!({"failover": {"replication": {
            "maxLagSeconds": 30, "mode": mode
        }}})));
        sim.round(&[]);
        for _ in 0..3 {
            sim.round(&[("us-east", down()), ("eu-west", with_lag(up(1, 1), 1.0))]);
        }
        assert_eq!(sim.weights(), "us-east=100 eu-west=0", "{mode}: 1 s behind");
        let c = sim
            .status
            .conditions
            .iter()
            .find(|c| c.type_ == "PromotionBlocked")
            .unwrap();
        assert!(c.message.contains("in sync"), "{mode}: {}", c.message);
        sim.round(&[("us-east", down()), ("eu-west", with_lag(up(1, 1), 0.0))]);
        assert_eq!(sim.weights(), "us-east=0 eu-west=100", "{mode}: in sync");
    }
}

#[test]
fn flap_damping_holds_failbacks_but_never_a_dead_active() {
    let mut sim = Sim::new(spec(
        json!({"failover": {"maxFailoversPerHour": 2, "failbackHoldSeconds": 0}}),
    ));
    sim.round(&[]);
    let fail = |sim: &mut Sim, bad: &str| {
        for _ in 0..3 {
            sim.round(&[(bad, down())]);
        }
    };
    fail(&mut sim, "us-east"); // move 1: to eu-west
    assert_eq!(sim.weights(), "us-east=0 eu-west=100");
    sim.round(&[]);
    sim.round(&[]); // us-east Healthy again: failback (move 2), planned
    sim.round(&[]);
    assert_eq!(sim.weights(), "us-east=100 eu-west=0");
    assert_eq!(sim.status.failovers_in_last_hour, 2);
    // The budget is spent, and the active dies: it still fails over.
    fail(&mut sim, "us-east");
    assert_eq!(
        sim.weights(),
        "us-east=0 eu-west=100",
        "never kept on a dead active"
    );
    // us-east recovers: flapping back is what damping holds.
    for _ in 0..5 {
        sim.round(&[]);
    }
    assert!(sim.condition("FlapDamped"));
    assert_eq!(sim.weights(), "us-east=0 eu-west=100", "failback held");
    // An hour after the first move the budget has room again.
    sim.now += 3600;
    sim.round(&[]);
    sim.round(&[]);
    assert_eq!(sim.weights(), "us-east=100 eu-west=0");
    assert!(!sim.condition("FlapDamped"));
}

#[test]
fn active_override_lifts_flap_damping() {
    let mut sim = Sim::new(spec(
        json!({"failover": {"maxFailoversPerHour": 1, "failbackHoldSeconds": 0}}),
    ));
    sim.round(&[]);
    for _ in 0..3 {
        sim.round(&[("us-east", down())]);
    }
    for _ in 0..3 {
        sim.round(&[]); // us-east is back; its failback is damped
    }
    assert!(sim.condition("FlapDamped"));
    assert_eq!(sim.weights(), "us-east=0 eu-west=100");
    sim.spec.failover.active_override = "us-east".into();
    sim.round(&[]); // us-east scales up first
    assert!(!sim.condition("FlapDamped"));
    sim.round(&[]);
    assert_eq!(sim.weights(), "us-east=100 eu-west=0");
    assert_eq!(
        sim.status.failovers_in_last_hour, 0,
        "an override resets the budget"
    );
}

#[test]
fn automatic_false_reports_but_does_not_move() {
    let mut sim = Sim::new(spec(json!({"failover": {"automatic": false}})));
    sim.round(&[]);
    for _ in 0..5 {
        sim.round(&[("us-east", down())]);
    }
    assert_eq!(sim.weights(), "us-east=100 eu-west=0");
    assert!(sim.condition("Degraded") && !sim.condition("Ready"));
}

#[test]
fn not_enough_ready_replicas_and_http_failures_fail_rounds() {
    let mut sim = Sim::new(spec(json!({})));
    sim.round(&[]);
    for _ in 0..3 {
        sim.round(&[("us-east", up(3, 1))]);
    }
    assert_eq!(
        sim.region("us-east").reason.as_ref().map(Reason::as_str),
        Some("NotEnoughReadyReplicas")
    );
    assert_eq!(sim.weights(), "us-east=0 eu-west=100");
    let mut http_bad = up(3, 3);
    http_bad.http = HttpResult::Fails("GET http://eu/healthz: 503".into());
    for _ in 0..3 {
        sim.round(&[("eu-west", http_bad.clone())]);
    }
    assert_eq!(
        sim.region("eu-west").reason.as_ref().map(Reason::as_str),
        Some("HttpProbeFailed")
    );
}

// ---------- FollowTheSun ----------

fn sun(now_hhmm: &str) -> (Sim, i64) {
    let s = spec(json!({
        "strategy": "FollowTheSun",
        "regions": [
            {"name": "ap", "activeWindow": {"start": "00:00", "end": "08:00"}},
            {"name": "eu", "activeWindow": {"start": "08:00", "end": "16:00"}},
            {"name": "us", "activeWindow": {"start": "16:00", "end": "00:00"}}
        ],
        "failover": {"prewarmSeconds": 300}
    }));
    let mut sim = Sim::new(s);
    let offset = schedule::parse_hhmm(now_hhmm).unwrap() - (T0 % 86400);
    sim.now = offset.rem_euclid(86400) - 1;
    (sim, offset)
}

#[test]
fn follow_the_sun_serves_from_the_open_window_and_prewarms_the_next() {
    let (mut sim, _) = sun("07:50");
    let d = sim.round(&[]).clone();
    assert_eq!(sim.status.active_region.as_deref(), Some("ap"));
    assert_eq!(sim.weights(), "ap=100 eu=0 us=0");
    let replicas: Vec<i32> = d.placements.iter().map(|p| p.replicas).collect();
    assert_eq!(
        replicas,
        [3, 1, 1],
        "eu opens in 10 minutes, beyond the 5-minute prewarm"
    );
    sim.now += 300;
    let d = sim.round(&[]).clone();
    let replicas: Vec<i32> = d.placements.iter().map(|p| p.replicas).collect();
    assert_eq!(replicas, [3, 3, 1], "eu is pre-warmed 5 minutes early");
    sim.now += 299;
    sim.round(&[]);
    assert_eq!(
        sim.weights(),
        "ap=0 eu=100 us=0",
        "planned hand-over at 08:00"
    );
    assert!(sim.last.as_ref().unwrap().moved.as_ref().unwrap().planned);
}

#[test]
fn follow_the_sun_falls_back_to_list_order_when_the_scheduled_region_is_unhealthy() {
    let (mut sim, _) = sun("10:00");
    sim.round(&[("eu", down())]);
    assert_eq!(sim.status.active_region.as_deref(), Some("ap"));
    for _ in 0..2 {
        sim.round(&[]);
    }
    assert_eq!(
        sim.status.active_region.as_deref(),
        Some("eu"),
        "back on schedule once healthy"
    );
}

#[test]
fn follow_the_sun_window_wrapping_midnight() {
    let s = spec(json!({
        "strategy": "FollowTheSun",
        "regions": [
            {"name": "night", "activeWindow": {"start": "22:00", "end": "06:00"}},
            {"name": "day", "activeWindow": {"start": "06:00", "end": "22:00"}}
        ]
    }));
    let mut sim = Sim::new(s);
    sim.now = (schedule::parse_hhmm("23:30").unwrap() - T0 % 86400).rem_euclid(86400) - 1;
    sim.round(&[]);
    assert_eq!(sim.status.active_region.as_deref(), Some("night"));
    sim.now += 3600;
    sim.round(&[]);
    assert_eq!(
        sim.status.active_region.as_deref(),
        Some("night"),
        "00:30 is still night"
    );
}

// ---------- restarts, cleanup, conflicts, stability ----------

#[test]
fn a_restart_with_nothing_observed_yet_changes_nothing() {
    let mut sim = Sim::new(spec(json!({})));
    sim.round(&[]);
    for _ in 0..3 {
        sim.round(&[("us-east", down())]);
    }
    let before = sim.status.clone();
    let unknown = [
        ("us-east", Observation::unknown()),
        ("eu-west", Observation::unknown()),
    ];
    let d = sim.round(&unknown).clone();
    assert!(!d.weights_changed);
    assert_eq!(d.moved, None);
    let judged = |regions: &[RegionAppStatus]| -> Vec<RegionAppStatus> {
        regions
            .iter()
            .map(|r| RegionAppStatus {
                unknown: None,
                ..r.clone()
            })
            .collect()
    };
    assert_eq!(judged(&sim.status.regions), judged(&before.regions));
    assert!(
        sim.status.regions.iter().all(|r| r
            .unknown
            .as_ref()
            .is_some_and(|u| u.cause == "NotObservedYet")),
        "the status says why nothing was judged"
    );
    assert!(
        d.placements.iter().all(|p| !p.touch),
        "nothing is touched before it is probed"
    );
}

#[test]
fn a_steady_state_decides_the_same_status_again() {
    let mut sim = Sim::new(three_active());
    for _ in 0..5 {
        sim.round(&[]);
    }
    let before = sim.status.clone();
    let d = sim.round(&[]).clone();
    assert_eq!(sim.status, before, "nothing changes: nothing to write");
    assert!(d.events.is_empty());
    sim.step(&[], false);
    assert_eq!(sim.status, before);
}

#[test]
fn regions_removed_from_spec_are_cleaned_up() {
    let mut sim = Sim::new(three_active());
    sim.round(&[]);
    sim.spec.regions.pop();
    let d = sim.round(&[]).clone();
    assert_eq!(d.cleanup, ["ap-south"]);
    assert_eq!(sim.status.cleanup_pending, ["ap-south"]);
    assert_eq!(sim.weights(), "us-east=50 eu-west=50");
}

#[test]
fn a_conflicting_object_is_reported_and_blocks_the_region_without_failing_it() {
    let conflict = || Observation {
        placement: Some(PlacementProblem::Conflict(
            "Deployment shop/checkout exists and was not created by multiregion".into(),
        )),
        ..up(3, 3)
    };
    // A region that carries traffic keeps it: a conflict is no evidence
    // that it stopped serving.
    let mut sim = Sim::new(three_active());
    sim.round(&[]);
    sim.round(&[("eu-west", conflict())]);
    assert!(sim.condition("Conflict"));
    assert_eq!(sim.region("eu-west").health, Health::Healthy);
    assert_eq!(sim.weights(), "us-east=34 eu-west=33 ap-south=33");
    // A region that does not carry traffic yet gets none.
    let mut sim = Sim::new(three_active());
    sim.round(&[("eu-west", conflict())]);
    assert!(sim.condition("Conflict"));
    assert_eq!(sim.region("eu-west").weight, 0);
}

#[test]
fn a_deleted_region_object_is_hub_side_and_counts_no_round() {
    let mut sim = Sim::new(three_active());
    sim.round(&[]);
    let missing = Observation {
        region: RegionState::NotFound,
        ..Observation::unknown()
    };
    for _ in 0..200 {
        sim.round(&[("us-east", missing.clone())]);
    }
    let us = sim.region("us-east");
    assert_eq!(us.health, Health::Healthy, "never counted against it");
    assert_eq!(
        us.unknown.as_ref().map(|u| u.cause.as_str()),
        Some("HubSide")
    );
    assert_eq!(sim.weights(), "us-east=34 eu-west=33 ap-south=33");
}

// ---------- properties ----------

#[derive(Clone, Debug)]
struct WorldStep {
    reachable: Vec<bool>,
    ready_fraction: Vec<u8>,
    cordoned: Vec<bool>,
    round: bool,
}

fn world(n: usize) -> impl proptest::strategy::Strategy<Value = Vec<WorldStep>> {
    proptest::collection::vec(
        (
            proptest::collection::vec(prop::bool::weighted(0.8), n),
            proptest::collection::vec(0u8..=4, n),
            proptest::collection::vec(prop::bool::weighted(0.1), n),
            prop::bool::weighted(0.9),
        )
            .prop_map(|(reachable, ready_fraction, cordoned, round)| WorldStep {
                reachable,
                ready_fraction,
                cordoned,
                round,
            }),
        1..40,
    )
}

/// The world of one step: each region reachable or not, ready to some
/// fraction, cordoned or not.
fn observations_of(step: &WorldStep, n: usize) -> Vec<(String, Observation)> {
    (0..n)
        .map(|i| {
            let replicas = 3;
            let ready = (step.ready_fraction[i] as i32 * replicas) / 4;
            let mut o = if step.reachable[i] {
                up(replicas, ready)
            } else {
                down()
            };
            o.cordoned = step.cordoned[i];
            (format!("r{i}"), o)
        })
        .collect()
}

/// Weights sum to 100 when a region may serve, and only such regions carry
/// any; ActivePassive never has two regions with weight.
fn check_weights(
    strategy: &str,
    d: &Decision,
    observations: &[(String, Observation)],
    drains: &[bool],
) -> Result<(), TestCaseError> {
    let eligible: Vec<bool> = d
        .status
        .regions
        .iter()
        .zip(observations)
        .zip(drains)
        .map(|((r, (_, o)), drain)| r.health == Health::Healthy && !o.cordoned && !drain)
        .collect();
    let total: i32 = d.weights.iter().map(|(_, w)| w).sum();
    if eligible.iter().any(|&e| e) {
        prop_assert_eq!(
            total,
            100,
            "weights sum to 100 when a region may serve: {:?}",
            d.weights
        );
        for ((_, w), e) in d.weights.iter().zip(&eligible) {
            if !e {
                prop_assert_eq!(
                    *w,
                    0,
                    "an Unhealthy, drained or cordoned region never has weight: {:?}",
                    d.weights
                );
            }
        }
    } else {
        prop_assert!(total == 100 || total == 0);
    }
    if strategy != "ActiveActive" {
        never_two_outside_a_ramp(d)?;
    }
    Ok(())
}

/// Single-active strategies: never two regions with weight outside a
/// declared ramp; during one, exactly the active region and the ramp's
/// target (`status.pendingMove` with its share) carry weight.
fn never_two_outside_a_ramp(d: &Decision) -> Result<(), TestCaseError> {
    let carrying: Vec<&(String, i32)> = d.weights.iter().filter(|(_, w)| *w > 0).collect();
    let ramp = d
        .status
        .pending_move
        .as_ref()
        .and_then(|p| Some((p.to.as_str(), p.share?)));
    match ramp {
        None => prop_assert!(carrying.len() <= 1, "one active: {:?}", d.weights),
        Some((to, share)) => {
            let active = d.status.active_region.as_deref();
            prop_assert!(
                carrying.len() == 2,
                "a ramp splits traffic: {:?}",
                d.weights
            );
            for (name, weight) in carrying {
                let expected = if name == to { share } else { 100 - share };
                prop_assert!(name == to || Some(name.as_str()) == active);
                prop_assert_eq!(*weight, expected, "{:?}", d.weights);
            }
        }
    }
    Ok(())
}

fn check_invariants(
    strategy: &str,
    n: usize,
    drains: &[bool],
    steps: &[WorldStep],
) -> Result<(), TestCaseError> {
    check_invariants_with(strategy, n, drains, steps, json!({}))
}

fn check_invariants_with(
    strategy: &str,
    n: usize,
    drains: &[bool],
    steps: &[WorldStep],
    failover: serde_json::Value,
) -> Result<(), TestCaseError> {
    let regions: Vec<_> = (0..n)
        .map(|i| json!({"name": format!("r{i}"), "weight": 100 + i * 50, "drain": drains[i]}))
        .collect();
    let mut spec = spec(json!({
        "strategy": strategy,
        "regions": regions,
        "failover": {"maxFailoversPerHour": 1000, "failbackHoldSeconds": 5}
    }));
    let mut failover_json = serde_json::to_value(&spec.failover).unwrap();
    merge(&mut failover_json, failover);
    spec.failover = serde_json::from_value(failover_json).unwrap();
    let mut sim = Sim::new(spec);
    for step in steps {
        let observations = observations_of(step, n);
        let refs: Vec<(&str, Observation)> = observations
            .iter()
            .map(|(n, o)| (n.as_str(), o.clone()))
            .collect();
        let inputs_status = sim.status.clone();
        let d = sim.step(&refs, step.round).clone();

        // Equal inputs give equal outputs.
        let obs: BTreeMap<String, Observation> = observations.iter().cloned().collect();
        let again = decide(&Inputs {
            spec: &sim.spec,
            generation: Some(1),
            previous: &inputs_status,
            observations: &obs,
            round: step.round,
            published: &[],
            drill_requested: None,
            move_request: None,
            sightings: &BTreeMap::new(),
            observers: &[],
            primary_mark: None,
            now: at(sim.now),
        });
        prop_assert_eq!(&again, &d);
        check_weights(strategy, &d, &observations, drains)?;
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn active_active_invariants(steps in world(3), drains in proptest::collection::vec(prop::bool::weighted(0.2), 3)) {
        check_invariants("ActiveActive", 3, &drains, &steps)?;
    }

    #[test]
    fn active_passive_invariants(steps in world(3), drains in proptest::collection::vec(prop::bool::weighted(0.2), 3)) {
        check_invariants("ActivePassive", 3, &drains, &steps)?;
    }

    #[test]
    fn stepped_recovery_invariants(steps in world(3), drains in proptest::collection::vec(prop::bool::weighted(0.2), 3)) {
        let stepped = json!({"failbackSteps": [10, 50], "failbackStepSeconds": 2});
        check_invariants_with("ActiveActive", 3, &drains, &steps, stepped)?;
    }

    #[test]
    fn stepped_failback_invariants(steps in world(3), drains in proptest::collection::vec(prop::bool::weighted(0.2), 3)) {
        let stepped = json!({"failbackSteps": [10, 50], "failbackStepSeconds": 2});
        check_invariants_with("ActivePassive", 3, &drains, &steps, stepped)?;
    }
}

mod drills;
mod evidence;
mod faults;
mod homes;
mod observers;
mod propagation;
mod replication;
mod stepped;
mod writer;

/// Whether a decision announces a change of weights.
fn announces_weights(d: &Decision) -> bool {
    d.events
        .iter()
        .any(|e| e.reason == EventReason::WeightsChanged)
}

#[test]
fn a_new_apps_first_round_with_its_workloads_being_placed_tells_nothing_worth_a_write() {
    for strategy in ["ActiveActive", "ActivePassive"] {
        let mut sim = Sim::new(spec(json!({
            "strategy": strategy,
            "regions": [{"name": "us-east"}, {"name": "eu-west"}, {"name": "ap-south"}],
            "healthCheck": {"startupSeconds": 60}
        })));
        let missing = || Observation {
            region: RegionState::Reachable,
            workload: WorkloadState::Missing,
            ..Observation::unknown()
        };
        let starting = || rolling_out(3);
        let never = MultiRegionAppStatus::default();
        for first in [missing(), starting(), Observation::unknown()] {
            let mut fresh = Sim::new(sim.spec.clone());
            let d = fresh
                .round(&[
                    ("us-east", first.clone()),
                    ("eu-west", first.clone()),
                    ("ap-south", first),
                ])
                .clone();
            assert!(d.events.is_empty(), "{strategy}: {:?}", d.events);
            assert!(
                settle::nothing_judged_yet(&never, &d.status),
                "{strategy}: {:#?}",
                d.status
            );
        }
        // One region's pods are ready, the others' still start: still
        // nothing worth a first write (one write, with every verdict, is
        // what each new app costs the hub).
        let mut partly = Sim::new(sim.spec.clone());
        let d = partly
            .round(&[("eu-west", starting()), ("ap-south", missing())])
            .clone();
        assert!(d.events.is_empty(), "{strategy}: {:?}", d.events);
        assert!(
            settle::nothing_judged_yet(&never, &d.status),
            "{strategy}: {:#?}",
            d.status
        );
        // Held back, it is the next round's basis: a failed round of the
        // region judged ready is one of three, and the round that judges
        // the others announces no weights (none were written).
        let held = partly.status.clone();
        partly.status = settle::held_basis(&held, &never);
        let d = partly
            .round(&[
                ("eu-west", starting()),
                ("ap-south", missing()),
                ("us-east", down()),
            ])
            .clone();
        let us = d
            .status
            .regions
            .iter()
            .find(|r| r.name == "us-east")
            .unwrap();
        assert_eq!(
            (us.health, us.consecutive_failures),
            (Health::Healthy, 1),
            "{strategy}"
        );
        partly.status = settle::held_basis(&held, &never);
        let d = partly.round(&[]).clone();
        assert!(!announces_weights(&d), "{strategy}: {:?}", d.events);
        assert!(!settle::nothing_judged_yet(&never, &d.status), "{strategy}");
        // Then the pods are ready: the verdict, without an Event for the
        // first weights.
        let d = sim.round(&[]).clone();
        assert!(sim.condition("Ready"), "{strategy}");
        assert!(!announces_weights(&d), "{strategy}: {:?}", d.events);
        assert!(!settle::nothing_judged_yet(&never, &d.status));
    }
}
