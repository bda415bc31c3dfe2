//! Stepped failback: the returning region's share grows step by step while
//! the current active keeps the rest, and drops to 0 at once on a failed
//! round.

use super::*;

fn stepped() -> MultiRegionAppSpec {
    spec(json!({
        "failover": {"failbackHoldSeconds": 10, "failbackSteps": [10, 50], "failbackStepSeconds": 5}
    }))
}

/// us-east fails, eu-west takes over, us-east is Healthy again, the hold
/// is over and us-east was scaled to full size (make-before-break): the
/// next round starts the ramp.
fn failed_over_and_recovered(sim: &mut Sim) {
    sim.round(&[]);
    sim.round(&[]);
    for _ in 0..3 {
        sim.round(&[("us-east", down())]);
    }
    assert_eq!(sim.weights(), "us-east=0 eu-west=100");
    sim.round(&[]);
    sim.round(&[]);
    assert_eq!(sim.region("us-east").health, Health::Healthy);
    for _ in 0..9 {
        sim.round(&[]);
    }
    assert_eq!(sim.weights(), "us-east=0 eu-west=100", "the hold first");
    assert_eq!(sim.status.pending_move, None);
    sim.round(&[]);
    assert_eq!(sim.weights(), "us-east=0 eu-west=100", "scaled up first");
    assert_eq!(
        sim.status.pending_move.as_ref().map(|p| p.to.as_str()),
        Some("us-east")
    );
}

fn share(sim: &Sim) -> Option<i32> {
    sim.status.pending_move.as_ref().and_then(|p| p.share)
}

#[test]
fn the_returning_region_takes_traffic_step_by_step() {
    let mut sim = Sim::new(stepped());
    failed_over_and_recovered(&mut sim);
    sim.round(&[]);
    assert_eq!(sim.weights(), "us-east=10 eu-west=90");
    assert_eq!(share(&sim), Some(10));
    assert_eq!(sim.status.active_region.as_deref(), Some("eu-west"));
    assert!(sim.condition("FailbackPending"));
    for _ in 0..4 {
        sim.round(&[]);
        assert_eq!(sim.weights(), "us-east=10 eu-west=90", "a step lasts 5 s");
    }
    sim.round(&[]);
    assert_eq!(sim.weights(), "us-east=50 eu-west=50");
    for _ in 0..4 {
        sim.round(&[]);
    }
    assert_eq!(sim.weights(), "us-east=50 eu-west=50");
    let d = sim.round(&[]).clone();
    assert_eq!(
        sim.weights(),
        "us-east=100 eu-west=0",
        "after the last step: all"
    );
    assert_eq!(sim.status.active_region.as_deref(), Some("us-east"));
    assert_eq!(sim.status.pending_move, None);
    assert_eq!(d.moved.unwrap().reason, MoveReason::Failback);
    assert!(!sim.condition("FailbackPending"));
}

#[test]
fn a_failed_round_takes_the_share_back_to_zero_at_once_and_the_ramp_starts_over() {
    let mut sim = Sim::new(stepped());
    failed_over_and_recovered(&mut sim);
    for _ in 0..6 {
        sim.round(&[]);
    }
    assert_eq!(sim.weights(), "us-east=50 eu-west=50");
    sim.round(&[("us-east", down())]);
    assert_eq!(
        sim.weights(),
        "us-east=0 eu-west=100",
        "one failed round is enough"
    );
    assert_eq!(
        sim.region("us-east").health,
        Health::Healthy,
        "not yet Unhealthy"
    );
    assert_eq!(sim.status.pending_move, None);
    sim.round(&[]);
    assert_eq!(
        sim.weights(),
        "us-east=0 eu-west=100",
        "successThreshold rounds first"
    );
    sim.round(&[]);
    assert_eq!(
        sim.weights(),
        "us-east=10 eu-west=90",
        "from the first step again"
    );
}

#[test]
fn a_failover_during_the_ramp_moves_everything_at_once() {
    let mut sim = Sim::new(stepped());
    failed_over_and_recovered(&mut sim);
    sim.round(&[]);
    assert_eq!(sim.weights(), "us-east=10 eu-west=90");
    for _ in 0..3 {
        sim.round(&[("eu-west", down())]);
    }
    assert_eq!(sim.weights(), "us-east=100 eu-west=0");
    assert_eq!(sim.status.active_region.as_deref(), Some("us-east"));
}

#[test]
fn without_steps_failback_is_one_move() {
    let mut sim = Sim::new(spec(json!({"failover": {"failbackHoldSeconds": 10}})));
    failed_over_and_recovered(&mut sim);
    sim.round(&[]);
    assert_eq!(sim.weights(), "us-east=100 eu-west=0");
}

fn active_active_stepped() -> MultiRegionAppSpec {
    spec(json!({
        "strategy": "ActiveActive",
        "failover": {"failbackSteps": [10, 50], "failbackStepSeconds": 5}
    }))
}

fn ramp_share(sim: &Sim, region: &str) -> Option<i32> {
    sim.region(region).ramp.as_ref().map(|r| r.share)
}

#[test]
fn active_active_recovery_climbs_the_steps_and_drops_on_a_failed_round() {
    let mut sim = Sim::new(active_active_stepped());
    sim.round(&[]);
    assert_eq!(
        sim.weights(),
        "us-east=50 eu-west=50",
        "no ramp at the start"
    );
    for _ in 0..3 {
        sim.round(&[("eu-west", down())]);
    }
    assert_eq!(sim.weights(), "us-east=100 eu-west=0");
    sim.round(&[]);
    assert_eq!(sim.weights(), "us-east=100 eu-west=0", "not Healthy yet");
    sim.round(&[]);
    assert_eq!(sim.weights(), "us-east=91 eu-west=9", "10% of its weight");
    assert_eq!(ramp_share(&sim, "eu-west"), Some(10));
    for _ in 0..5 {
        sim.round(&[]);
    }
    assert_eq!(sim.weights(), "us-east=67 eu-west=33", "50% of its weight");
    sim.round(&[("eu-west", down())]);
    assert_eq!(
        sim.weights(),
        "us-east=100 eu-west=0",
        "a failed round: 0 at once"
    );
    assert_eq!(ramp_share(&sim, "eu-west"), None);
    sim.round(&[]);
    sim.round(&[]);
    assert_eq!(
        ramp_share(&sim, "eu-west"),
        Some(10),
        "from the first step again"
    );
    for _ in 0..10 {
        sim.round(&[]);
    }
    assert_eq!(
        sim.weights(),
        "us-east=50 eu-west=50",
        "back to its full weight"
    );
    assert_eq!(ramp_share(&sim, "eu-west"), None);
}
