//! Home-region routing: a home region's users stay home while it carries
//! traffic, go to the next region in list order that does while it does
//! not, and come back after the failback hold.

use super::*;

fn with_homes() -> MultiRegionAppSpec {
    spec(json!({
        "strategy": "ActiveActive",
        "regions": [
            {"name": "us-east", "home": {"continents": ["NA", "SA"]}},
            {"name": "eu-west", "home": {"continents": ["EU"], "countries": ["IL"]}},
            {"name": "ap-south"}
        ],
        "failover": {"failbackHoldSeconds": 10}
    }))
}

fn served(sim: &Sim) -> String {
    sim.status
        .homes
        .iter()
        .map(|h| format!("{}<-{}", h.home, h.served_by))
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn home_users_go_to_the_next_serving_region_and_back_after_the_hold() {
    let mut sim = Sim::new(with_homes());
    sim.round(&[]);
    assert_eq!(served(&sim), "us-east<-us-east eu-west<-eu-west");
    for _ in 0..3 {
        sim.round(&[("eu-west", down())]);
    }
    assert_eq!(sim.region("eu-west").weight, 0);
    assert_eq!(served(&sim), "us-east<-us-east eu-west<-us-east");
    let routed: Vec<&str> = sim
        .last
        .as_ref()
        .unwrap()
        .events
        .iter()
        .filter(|e| e.reason == EventReason::HomeRouted)
        .map(|e| e.message.as_str())
        .collect();
    assert_eq!(
        routed,
        ["users of eu-west sent to us-east (were on eu-west)"]
    );
    let moved_at = sim.status.homes[1].since.clone();
    // Healthy again after two rounds: weight back at once, home users not.
    sim.round(&[]);
    sim.round(&[]);
    assert!(sim.region("eu-west").weight > 0);
    assert_eq!(served(&sim), "us-east<-us-east eu-west<-us-east");
    assert_eq!(sim.status.homes[1].since, moved_at, "since is kept");
    for _ in 0..9 {
        sim.round(&[]);
    }
    assert_eq!(
        served(&sim),
        "us-east<-us-east eu-west<-us-east",
        "hold not over"
    );
    sim.round(&[]);
    assert_eq!(served(&sim), "us-east<-us-east eu-west<-eu-west");
}

#[test]
fn when_the_stand_in_fails_too_home_users_go_further_down_the_list() {
    let mut sim = Sim::new(with_homes());
    sim.round(&[]);
    for _ in 0..3 {
        sim.round(&[("eu-west", down())]);
    }
    assert_eq!(served(&sim), "us-east<-us-east eu-west<-us-east");
    for _ in 0..3 {
        sim.round(&[("eu-west", down()), ("us-east", down())]);
    }
    assert_eq!(served(&sim), "us-east<-ap-south eu-west<-ap-south");
}

#[test]
fn a_drained_home_region_sends_its_users_elsewhere() {
    let mut spec = with_homes();
    spec.regions[0].drain = true;
    let mut sim = Sim::new(spec);
    sim.round(&[]);
    assert_eq!(served(&sim), "us-east<-eu-west eu-west<-eu-west");
}

#[test]
fn home_regions_need_active_active() {
    let spec = with_homes();
    assert!(spec.regions[0].home.is_some());
    let crd = serde_json::to_string(&crate::api::crds()).unwrap();
    assert!(crd.contains("home-region routing needs strategy ActiveActive"));
}

#[test]
fn home_users_wait_until_their_region_is_back_at_full_weight() {
    let mut spec = with_homes();
    spec.failover.failback_steps = vec![10, 50];
    spec.failover.failback_step_seconds = 20;
    spec.failover.failback_hold_seconds = 0;
    let mut sim = Sim::new(spec);
    sim.round(&[]);
    for _ in 0..3 {
        sim.round(&[("eu-west", down())]);
    }
    sim.round(&[]);
    sim.round(&[]);
    assert!(sim.region("eu-west").ramp.is_some(), "climbing the steps");
    assert!(sim.region("eu-west").weight > 0);
    assert_eq!(served(&sim), "us-east<-us-east eu-west<-us-east");
    for _ in 0..45 {
        sim.round(&[]);
    }
    assert!(sim.region("eu-west").ramp.is_none());
    assert_eq!(served(&sim), "us-east<-us-east eu-west<-eu-west");
}
