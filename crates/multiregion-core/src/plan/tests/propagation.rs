//! The rule for propagated ConfigMaps and Secrets: a region that misses a
//! copy is never promoted, and in ActiveActive gains no weight until the
//! copy is there; one that carries traffic keeps it.

use super::*;

fn unconfigured(mut o: Observation) -> Observation {
    o.missing_config = Some("Secret db: not copied yet".into());
    o
}

fn blocked_reason(sim: &Sim) -> Option<String> {
    sim.status
        .conditions
        .iter()
        .find(|c| c.type_ == "PromotionBlocked" && c.status == "True")
        .map(|c| c.reason.clone())
}

#[test]
fn a_standby_missing_its_config_is_not_promoted_until_the_copy_is_there() {
    let mut sim = Sim::new(spec(json!({})));
    sim.round(&[]);
    sim.round(&[]);
    assert_eq!(sim.status.active_region.as_deref(), Some("us-east"));
    let standby = unconfigured(up(3, 3));
    for _ in 0..4 {
        sim.round(&[("us-east", down()), ("eu-west", standby.clone())]);
    }
    assert_eq!(sim.status.active_region.as_deref(), Some("us-east"));
    assert_eq!(blocked_reason(&sim).as_deref(), Some("ConfigNotPropagated"));
    let message = &sim
        .status
        .conditions
        .iter()
        .find(|c| c.type_ == "PromotionBlocked")
        .unwrap()
        .message;
    assert!(message.contains("eu-west: Secret db"), "{message}");
    sim.round(&[("us-east", down())]);
    assert_eq!(sim.status.active_region.as_deref(), Some("eu-west"));
    assert_eq!(blocked_reason(&sim), None);
}

#[test]
fn the_first_choice_skips_a_region_missing_its_config() {
    let mut sim = Sim::new(spec(json!({})));
    sim.round(&[("us-east", unconfigured(up(3, 3)))]);
    sim.round(&[("us-east", unconfigured(up(3, 3)))]);
    assert_eq!(sim.status.active_region.as_deref(), Some("eu-west"));
}

#[test]
fn active_active_holds_a_new_region_at_zero_until_its_config_is_there() {
    let mut sim = Sim::new(three_active());
    sim.round(&[("ap-south", unconfigured(up(3, 3)))]);
    assert_eq!(sim.weights(), "us-east=50 eu-west=50 ap-south=0");
    assert_eq!(blocked_reason(&sim).as_deref(), Some("ConfigNotPropagated"));
    sim.round(&[]);
    assert_eq!(sim.weights(), "us-east=34 eu-west=33 ap-south=33");
    // A copy deleted under a serving region: it keeps its traffic (the
    // next placement puts the copy back).
    sim.round(&[("ap-south", unconfigured(up(3, 3)))]);
    assert_eq!(sim.weights(), "us-east=34 eu-west=33 ap-south=33");
}
