//! The rules that keep the operator trustworthy under messy faults: the
//! data plane's word, the RPO gate on every promotion, a removed or
//! forgotten active region, flap damping in ActiveActive, and what applying
//! a decision reports back.

use super::*;
use crate::api::MoveReason;

/// Reachable, with the endpoint's HTTP check saying `http`.
fn checked(mut o: Observation, http: HttpResult) -> Observation {
    o.http = http;
    o
}

fn with_role(mut o: Observation, placed_role: Role) -> Observation {
    if let WorkloadState::Placed { role, .. } = &mut o.workload {
        *role = Some(placed_role);
    }
    o
}

fn http_spec() -> MultiRegionAppSpec {
    spec(json!({"healthCheck": {"http": {"path": "/healthz"}}}))
}

#[test]
fn a_region_whose_api_server_is_out_of_reach_keeps_its_traffic_while_its_endpoint_serves() {
    let mut sim = Sim::new(http_spec());
    sim.round(&[]);
    let mut d = sim.round(&[]).clone();
    for _ in 0..10 {
        d = sim
            .round(&[("us-east", checked(down(), HttpResult::Serves))])
            .clone();
    }
    assert_eq!(sim.weights(), "us-east=100 eu-west=0", "traffic stays");
    let us = sim.region("us-east");
    assert_eq!(us.health, Health::Degraded, "its own health value");
    assert_eq!(us.reason, Some(Reason::ControlPlaneUnreachable));
    assert!(sim.condition("Degraded"));
    let us_placement = &d.placements[0];
    assert!(!us_placement.touch, "nothing is placed or scaled there");
}

#[test]
fn the_region_degraded_event_comes_once() {
    let mut sim = Sim::new(http_spec());
    sim.round(&[]);
    let out_of_reach = checked(down(), HttpResult::Serves);
    let first = sim.round(&[("us-east", out_of_reach.clone())]).clone();
    let later = sim.round(&[("us-east", out_of_reach)]).clone();
    let degraded = |d: &Decision| {
        d.events
            .iter()
            .filter(|e| e.reason == EventReason::RegionDegraded)
            .count()
    };
    assert_eq!((degraded(&first), degraded(&later)), (1, 0));
}

#[test]
fn out_of_reach_and_failing_its_http_check_the_region_fails_over() {
    let mut sim = Sim::new(http_spec());
    sim.round(&[]);
    let dark = checked(down(), HttpResult::Fails("timeout".into()));
    for _ in 0..3 {
        sim.round(&[("us-east", dark.clone())]);
    }
    assert_eq!(sim.weights(), "us-east=0 eu-west=100");
}

#[test]
fn without_an_http_check_an_unreachable_region_still_fails_over() {
    let mut sim = Sim::new(spec(json!({})));
    sim.round(&[]);
    for _ in 0..3 {
        sim.round(&[("us-east", down())]);
    }
    assert_eq!(sim.weights(), "us-east=0 eu-west=100");
}

#[test]
fn a_failback_waits_for_the_returning_regions_lag() {
    let mut sim = Sim::new(spec(json!({
        "failover": {"failbackHoldSeconds": 0, "replication": {"maxLagSeconds": 30}}
    })));
    sim.round(&[
        ("us-east", with_lag(up(3, 3), 0.0)),
        ("eu-west", with_lag(up(1, 1), 0.0)),
    ]);
    for _ in 0..3 {
        sim.round(&[("us-east", down()), ("eu-west", with_lag(up(1, 1), 0.0))]);
    }
    assert_eq!(sim.weights(), "us-east=0 eu-west=100");
    // us-east is back and Healthy, but far behind: no failback.
    for _ in 0..5 {
        sim.round(&[("us-east", with_lag(up(3, 3), 120.0))]);
    }
    assert_eq!(sim.weights(), "us-east=0 eu-west=100");
    assert!(sim.condition("PromotionBlocked"));
    // Caught up: the failback goes ahead.
    for _ in 0..3 {
        sim.round(&[("us-east", with_lag(up(3, 3), 2.0))]);
    }
    assert_eq!(sim.weights(), "us-east=100 eu-west=0");
    assert!(!sim.condition("PromotionBlocked"));
}

#[test]
fn the_first_choice_passes_over_a_region_known_to_lag() {
    let mut sim = Sim::new(spec(
        json!({"failover": {"replication": {"maxLagSeconds": 30}}}),
    ));
    sim.round(&[("us-east", with_lag(up(3, 3), 300.0))]);
    assert_eq!(sim.weights(), "us-east=0 eu-west=100");
    // A region that reports nothing is acceptable for the first choice.
    let mut fresh = Sim::new(spec(
        json!({"failover": {"replication": {"maxLagSeconds": 30}}}),
    ));
    fresh.round(&[]);
    assert_eq!(fresh.weights(), "us-east=100 eu-west=0");
}

#[test]
fn an_override_to_a_lagging_region_promotes_with_a_warning_naming_the_lag() {
    let mut sim = Sim::new(spec(
        json!({"failover": {"replication": {"maxLagSeconds": 30}}}),
    ));
    sim.round(&[]);
    sim.spec.failover.active_override = "eu-west".into();
    // eu-west runs full replicas already: the move happens at once.
    let d = sim.round(&[("eu-west", with_lag(up(3, 3), 90.0))]).clone();
    assert_eq!(sim.weights(), "us-east=0 eu-west=100");
    let warnings: Vec<&Event> = d
        .events
        .iter()
        .filter(|e| e.reason == EventReason::PromotedWithReplicationLag)
        .collect();
    assert_eq!(warnings.len(), 1, "{:?}", d.events);
    assert!(
        warnings[0].message.contains("90s"),
        "{}",
        warnings[0].message
    );
}

#[test]
fn an_override_pinned_to_an_unhealthy_region_raises_a_condition_and_one_event() {
    let mut sim = Sim::new(spec(json!({"failover": {"activeOverride": "us-east"}})));
    sim.round(&[]);
    let mut events = 0;
    for _ in 0..6 {
        let d = sim.round(&[("us-east", down())]).clone();
        events += d
            .events
            .iter()
            .filter(|e| e.reason == EventReason::OverrideToUnhealthyRegion)
            .count();
    }
    assert_eq!(sim.weights(), "us-east=100 eu-west=0", "the override holds");
    assert!(sim.condition("OverrideUnhealthy"));
    assert_eq!(events, 1);
}

#[test]
fn removing_the_active_region_is_a_planned_move_recorded_as_region_removed() {
    let mut sim = Sim::new(spec(json!({
        "regions": [{"name": "us-east"}, {"name": "eu-west"}, {"name": "ap-south"}]
    })));
    sim.round(&[]);
    assert_eq!(sim.weights(), "us-east=100 eu-west=0 ap-south=0");
    sim.spec.regions.remove(0);
    // eu-west is still at standby size: traffic stays on us-east.
    let d = sim
        .round(&[("us-east", up(3, 3)), ("eu-west", up(1, 1))])
        .clone();
    assert_eq!(sim.weights(), "eu-west=0 ap-south=0 us-east=100");
    assert!(d.cleanup.is_empty(), "nothing is removed while it serves");
    assert_eq!(d.placements[0].replicas, 3, "the target scales up first");
    // eu-west ready at full size: the move happens, us-east is cleaned up next.
    let d = sim
        .round(&[("us-east", up(3, 3)), ("eu-west", up(3, 3))])
        .clone();
    assert_eq!(sim.weights(), "eu-west=100 ap-south=0 us-east=0");
    let moved = d.moved.unwrap();
    assert_eq!(
        (moved.reason, moved.planned),
        (MoveReason::RegionRemoved, true)
    );
    assert_eq!(
        sim.status.last_failover.as_ref().unwrap().reason,
        MoveReason::RegionRemoved
    );
    let d = sim.round(&[]).clone();
    assert_eq!(d.cleanup, ["us-east"]);
    assert_eq!(sim.weights(), "eu-west=100 ap-south=0");
}

#[test]
fn removing_the_active_region_passes_the_rpo_gate() {
    let mut sim = Sim::new(spec(
        json!({"failover": {"replication": {"maxLagSeconds": 30}}}),
    ));
    sim.round(&[]);
    sim.spec.regions.remove(0);
    for _ in 0..3 {
        sim.round(&[
            ("us-east", up(3, 3)),
            ("eu-west", with_lag(up(3, 3), 100.0)),
        ]);
    }
    assert_eq!(sim.weights(), "eu-west=0 us-east=100");
    assert!(sim.condition("PromotionBlocked"));
}

#[test]
fn with_the_status_lost_the_active_region_is_read_from_the_placed_role_labels() {
    let mut sim = Sim::new(spec(json!({"failover": {"failbackHoldSeconds": 3600}})));
    sim.status = MultiRegionAppStatus::default();
    // After a failover eu-west is active; the status was wiped.
    sim.round(&[
        ("us-east", with_role(up(1, 1), Role::Standby)),
        ("eu-west", with_role(up(3, 3), Role::Active)),
    ]);
    assert_eq!(sim.weights(), "us-east=0 eu-west=100", "no jump to us-east");
    for _ in 0..5 {
        sim.round(&[]);
    }
    assert_eq!(
        sim.weights(),
        "us-east=0 eu-west=100",
        "the failback hold counts"
    );
}

#[test]
fn with_the_status_lost_and_two_regions_labelled_active_nothing_is_decided_yet() {
    let mut sim = Sim::new(spec(json!({})));
    let d = sim
        .round(&[
            ("us-east", with_role(up(3, 3), Role::Active)),
            ("eu-west", with_role(up(3, 3), Role::Active)),
        ])
        .clone();
    assert!(d.hold.is_some(), "a stale watch may show an old label");
    assert!(d.placements.is_empty() && d.weights.is_empty());
    assert_eq!(d.status, MultiRegionAppStatus::default(), "nothing written");
    // The labels agree again: eu-west is the active one.
    sim.round(&[
        ("us-east", with_role(up(1, 1), Role::Standby)),
        ("eu-west", with_role(up(3, 3), Role::Active)),
    ]);
    assert_eq!(sim.weights(), "us-east=0 eu-west=100");
}

#[test]
fn with_the_status_lost_and_no_labels_the_sink_weights_tell_the_active_region() {
    let spec = spec(json!({"failover": {"failbackHoldSeconds": 3600}}));
    let observations: BTreeMap<String, Observation> = [
        ("us-east".to_string(), up(1, 1)),
        ("eu-west".to_string(), up(3, 3)),
    ]
    .into();
    let published = [("us-east".to_string(), 0), ("eu-west".to_string(), 100)];
    let d = decide(&Inputs {
        spec: &spec,
        generation: Some(1),
        previous: &MultiRegionAppStatus::default(),
        observations: &observations,
        round: true,
        published: &published,
        drill_requested: None,
        move_request: None,
        sightings: &BTreeMap::new(),
        observers: &[],
        primary_mark: None,
        now: at(0),
    });
    assert_eq!(d.status.weights.as_deref(), Some("us-east=0 eu-west=100"));
}

#[test]
fn active_active_keeps_a_flapping_region_out_until_the_hour_has_room() {
    let mut sim = Sim::new(spec(json!({
        "strategy": "ActiveActive",
        "healthCheck": {"failureThreshold": 1, "successThreshold": 1},
        "failover": {"maxFailoversPerHour": 2}
    })));
    sim.round(&[]);
    for _ in 0..2 {
        sim.round(&[("us-east", down())]);
        sim.round(&[]);
    }
    assert_eq!(sim.region("us-east").recent_drops.len(), 2);
    assert_eq!(
        sim.weights(),
        "us-east=0 eu-west=100",
        "damped while Healthy"
    );
    assert!(sim.condition("FlapDamped"));
    sim.now += 3600;
    sim.round(&[]);
    assert_eq!(
        sim.weights(),
        "us-east=50 eu-west=50",
        "the hour has room again"
    );
    assert!(!sim.condition("FlapDamped"));
}

#[test]
fn a_move_is_complete_only_once_every_sink_has_it() {
    let mut sim = Sim::new(spec(json!({})));
    sim.round(&[]);
    for _ in 0..3 {
        sim.round(&[("us-east", down())]);
    }
    let d = sim.last.clone().unwrap();
    let previous = MultiRegionAppStatus::default();
    let failed = Applied {
        sinks: SinkOutcome::Failed("DNSEndpoint shop/web: forbidden".into()),
        cleaned_up: vec![],
        resources: vec![],
        now: at(100),
    };
    let status = settle(&d, &previous, Some(1), &failed);
    assert!(
        status
            .last_failover
            .as_ref()
            .unwrap()
            .completed_at
            .is_none()
    );
    let published = status
        .conditions
        .iter()
        .find(|c| c.type_ == "TrafficPublished")
        .unwrap();
    assert_eq!(
        (published.status.as_str(), published.reason.as_str()),
        ("False", "SinkWriteFailed")
    );
    assert!(published.message.contains("DNSEndpoint"));
    // The retry succeeds: the move completes then.
    let retried = Decision {
        status: status.clone(),
        moved: None,
        ..d.clone()
    };
    let ok = Applied {
        sinks: SinkOutcome::Published,
        cleaned_up: vec![],
        resources: vec![],
        now: at(105),
    };
    let status = settle(&retried, &status, Some(1), &ok);
    assert_eq!(
        status.last_failover.unwrap().completed_at,
        Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(at(
            105
        )))
    );
}

#[test]
fn a_sink_object_of_someone_else_is_a_conflict() {
    let mut sim = Sim::new(spec(json!({})));
    let d = sim.round(&[]).clone();
    let applied = Applied {
        sinks: SinkOutcome::Conflict(
            "hub: HTTPRoute shop/web exists and was not created by multiregion".into(),
        ),
        cleaned_up: vec![],
        resources: vec![],
        now: at(1),
    };
    let status = settle(&d, &MultiRegionAppStatus::default(), Some(1), &applied);
    assert!(conditions::is_true(&status.conditions, "Conflict"));
    assert!(!conditions::is_true(&status.conditions, "TrafficPublished"));
}

#[test]
fn an_invalid_spec_is_announced_once_per_generation() {
    let invalid = |previous: &MultiRegionAppStatus, generation, message, t| {
        with_invalid_spec(previous.clone(), previous, Some(generation), message, at(t))
    };
    let (status, event) = invalid(
        &MultiRegionAppStatus::default(),
        3,
        "spec.workload.template: bad",
        0,
    );
    assert!(event.is_some());
    let (again, event) = invalid(&status, 3, "spec.workload.template: bad", 5);
    assert!(event.is_none(), "the same generation again");
    let (_, event) = invalid(&again, 4, "spec.workload.template: still bad", 9);
    assert!(event.is_some(), "a new generation");
}

#[test]
fn a_new_region_is_not_passed_over_for_an_http_check_failing_while_its_pods_start() {
    let mut sim = Sim::new(http_spec());
    let starting = |o: Observation| {
        let mut o = checked(
            o,
            HttpResult::Fails("GET /healthz: connection refused".into()),
        );
        if let WorkloadState::Placed { rolling_out, .. } = &mut o.workload {
            *rolling_out = true;
        }
        o
    };
    // eu-west is up first; us-east, preferred, still starts.
    sim.round(&[("us-east", starting(up(3, 0)))]);
    assert_eq!(
        sim.weights(),
        "us-east=0 eu-west=0",
        "the first choice waits"
    );
    sim.round(&[("us-east", checked(up(3, 3), HttpResult::Serves))]);
    assert_eq!(sim.weights(), "us-east=100 eu-west=0");
}
