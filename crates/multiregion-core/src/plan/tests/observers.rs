//! A majority decides failure, over whole decisions: the leader's own loss
//! of sight moves nothing while most observers reach the region; a loss
//! they share moves the traffic as with one replica.

use super::*;
use crate::plan::observers::Sightings;

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|n| n.to_string()).collect()
}

fn sighting(serving: &[&str], failing: &[&str], unknown: &[&str]) -> Sightings {
    Sightings {
        serving: names(serving),
        failing: names(failing),
        unknown: names(unknown),
        failing_since: (!failing.is_empty()).then(|| at(1)),
        failing_runs: failing.iter().map(|_| at(1)).collect(),
    }
}

fn sim_seeing(region: &str, sightings: Sightings) -> Sim {
    let mut sim = Sim::new(spec(json!({"healthCheck": {"unknownSeconds": 30}})));
    sim.sightings.insert(region.into(), sightings);
    sim.round(&[]);
    assert_eq!(sim.weights(), "us-east=100 eu-west=0");
    sim
}

#[test]
fn a_leader_alone_cut_off_from_the_active_region_moves_nothing() {
    let mut sim = sim_seeing("us-east", sighting(&["b", "c"], &["leader"], &[]));
    for round in 0..120 {
        sim.round(&[("us-east", down())]);
        assert_eq!(sim.weights(), "us-east=100 eu-west=0", "round {round}");
    }
    let region = sim.region("us-east");
    assert_eq!(region.consecutive_failures, 0);
    let unknown = region.unknown.clone().unwrap();
    assert_eq!(unknown.cause, "ObserversSeeItServing");
    assert!(
        unknown.message.contains("2 of 3 observers (b, c)"),
        "status names who still sees it: {}",
        unknown.message
    );
}

#[test]
fn a_loss_the_majority_shares_moves_the_traffic_after_the_threshold() {
    let mut sim = sim_seeing("us-east", sighting(&["c"], &["leader", "b"], &[]));
    for _ in 0..2 {
        sim.round(&[("us-east", down())]);
        assert_eq!(sim.weights(), "us-east=100 eu-west=0");
    }
    sim.round(&[("us-east", down())]);
    assert_eq!(sim.weights(), "us-east=0 eu-west=100");
    let message = sim.region("us-east").message.clone().unwrap_or_default();
    assert!(
        message.contains("seen failing by 2 of 3 observers (leader, b)"),
        "{message}"
    );
}

#[test]
fn a_new_leader_completes_a_failure_the_majority_has_already_held() {
    // The observers have seen us-east failing since second -5 (before
    // this leader took over at 1): its first failed round completes the
    // 3 s threshold they have held.
    let mut held = sighting(&["c"], &["leader", "b"], &[]);
    held.failing_runs = vec![at(-5), at(-5)];
    let mut sim = sim_seeing("us-east", held);
    sim.round(&[("us-east", down())]);
    assert_eq!(
        sim.weights(),
        "us-east=0 eu-west=100",
        "one round of its own"
    );
    // Held by one observer only: the leader counts its own rounds.
    let mut one = sighting(&["c"], &["leader", "b"], &[]);
    one.failing_runs = vec![at(-5), at(1)];
    let mut sim = sim_seeing("us-east", one);
    sim.round(&[("us-east", down())]);
    sim.round(&[("us-east", down())]);
    assert_eq!(
        sim.weights(),
        "us-east=100 eu-west=0",
        "not held by a majority"
    );
}

#[test]
fn a_held_failure_needs_a_failed_round_of_the_leaders_own() {
    let mut sim = sim_seeing("us-east", sighting(&[], &["b", "c"], &["leader"]));
    for _ in 0..10 {
        sim.round(&[]);
    }
    assert_eq!(
        sim.weights(),
        "us-east=100 eu-west=0",
        "the leader's own rounds pass"
    );
}

#[test]
fn one_observer_is_the_single_replica_rule() {
    let mut sim = sim_seeing("us-east", sighting(&[], &["leader"], &[]));
    for _ in 0..3 {
        sim.round(&[("us-east", down())]);
    }
    assert_eq!(sim.weights(), "us-east=0 eu-west=100");
}

#[test]
fn without_a_majority_either_way_the_loss_counts_after_unknown_seconds() {
    // The leader cannot reach us-east; one observer cannot say, one has
    // not renewed (not in the sightings). No majority either way: it waits,
    // but not for ever.
    let mut sim = sim_seeing("us-east", sighting(&["b"], &["leader"], &["c"]));
    for round in 0..29 {
        sim.round(&[("us-east", down())]);
        assert_eq!(sim.weights(), "us-east=100 eu-west=0", "round {round}");
    }
    assert_eq!(
        sim.region("us-east")
            .unknown
            .as_ref()
            .map(|u| u.cause.as_str()),
        Some("ObserversDisagree")
    );
    for _ in 0..4 {
        sim.round(&[("us-east", down())]);
    }
    assert_eq!(
        sim.weights(),
        "us-east=0 eu-west=100",
        "bounded: no failure is skipped for ever"
    );
}

#[test]
fn what_the_api_server_says_is_not_put_to_the_observers() {
    // Pods not ready are read from the member's API server: the same from
    // anywhere. The majority reaching the server does not veto them.
    let mut sim = sim_seeing("us-east", sighting(&["leader", "b", "c"], &[], &[]));
    for _ in 0..3 {
        sim.round(&[("us-east", up(3, 0))]);
    }
    assert_eq!(sim.weights(), "us-east=0 eu-west=100");
}

fn observer(identity: &str, region: &str, renewed: i64) -> crate::plan::observers::Observer {
    crate::plan::observers::Observer {
        identity: identity.into(),
        region: Some(region.into()),
        renewed: at(renewed),
        lease: std::time::Duration::from_secs(6),
    }
}

/// us-east (active) cut off from the hub at second 1: its replica last
/// renewed then; the two others see it failing since.
fn cut_off_active() -> Sim {
    let mut sim = sim_seeing("us-east", sighting(&[], &["b", "c"], &[]));
    sim.observers = vec![
        observer("a", "us-east", 1),
        observer("b", "eu-west", 1_000),
        observer("c", "ap-south", 1_000),
    ];
    sim
}

#[test]
fn the_majority_promotes_only_once_the_cut_off_region_has_fenced_itself() {
    let mut sim = cut_off_active();
    // The lease runs out at 7; the replica fences at 1 + 10 by its own
    // clock; the majority waits until 7 + 10 + 2 = 19.
    let mut moved_at = None;
    while sim.now < 30 && moved_at.is_none() {
        sim.round(&[("us-east", down())]);
        if sim.weights() == "us-east=0 eu-west=100" {
            moved_at = Some(sim.now);
        } else if sim.now > 4 {
            let blocked = sim.condition_reason("PromotionBlocked");
            assert_eq!(
                blocked.as_deref(),
                Some("AwaitingSelfFence"),
                "second {}",
                sim.now
            );
        }
    }
    assert_eq!(
        moved_at,
        Some(19),
        "not a second before the fence, not later"
    );
}

#[test]
fn an_observers_older_run_of_failures_does_not_date_the_failure() {
    // b has seen us-east failing since long before (a path of its own, or
    // a view it could not publish while it was cut off); c since second 1,
    // when us-east was cut off, right after its replica's last renewal.
    // The failure dates from c's run: that renewal came before it, so the
    // majority still waits for the self-fence.
    let mut sim = cut_off_active();
    let mut seen = sighting(&[], &["b", "c"], &[]);
    seen.failing_runs = vec![at(-100), at(1)];
    seen.failing_since = Some(at(1));
    sim.sightings.insert("us-east".into(), seen.clone());
    let from_leases = crate::plan::observers::Sightings::of_live(
        &[
            crate::plan::observers::Report {
                observer: observer("b", "eu-west", 1_000),
                seen: crate::plan::observers::Seen::Failing { since: at(-100) },
            },
            crate::plan::observers::Report {
                observer: observer("c", "ap-south", 1_000),
                seen: crate::plan::observers::Seen::Failing { since: at(1) },
            },
        ],
        at(1),
    );
    assert_eq!(
        from_leases.failing_since,
        Some(at(1)),
        "the latest run's start"
    );
    let mut moved_at = None;
    while sim.now < 30 && moved_at.is_none() {
        sim.round(&[("us-east", down())]);
        if sim.weights() == "us-east=0 eu-west=100" {
            moved_at = Some(sim.now);
        }
    }
    assert_eq!(moved_at, Some(19), "after the self-fence, as for one run");
}

#[test]
fn a_region_with_no_replica_is_promoted_away_from_at_once_and_said_unfenced() {
    let mut sim = cut_off_active();
    sim.observers
        .retain(|o| o.region.as_deref() != Some("us-east"));
    for _ in 0..3 {
        sim.round(&[("us-east", down())]);
    }
    assert_eq!(sim.weights(), "us-east=0 eu-west=100");
    let events = &sim.last.as_ref().unwrap().events;
    let unfenced = events
        .iter()
        .find(|e| e.reason == EventReason::PromotedUnfenced)
        .expect("the move says the old region was not fenced");
    assert!(
        unfenced
            .message
            .contains("no operator replica runs in us-east"),
        "{}",
        unfenced.message
    );
}

#[test]
fn a_single_hub_without_regional_replicas_does_not_wait() {
    let mut sim = sim_seeing("us-east", sighting(&[], &["leader"], &[]));
    sim.observers = vec![crate::plan::observers::Observer {
        region: None,
        ..observer("leader", "-", 0)
    }];
    for _ in 0..3 {
        sim.round(&[("us-east", down())]);
    }
    assert_eq!(sim.weights(), "us-east=0 eu-west=100");
    let events = &sim.last.as_ref().unwrap().events;
    assert!(
        !events
            .iter()
            .any(|e| e.reason == EventReason::PromotedUnfenced)
    );
}

/// us-east's API server answers every observer; the leader's HTTP check of
/// its endpoint fails, and the observers' own checks say `endpoint`.
fn endpoint_failing_for_the_leader(endpoint: Option<Sightings>) -> Observation {
    Observation {
        http: HttpResult::Fails("GET http://10.0.0.1/healthz: connection refused".into()),
        endpoint_seen: endpoint,
        ..up(3, 3)
    }
}

fn sim_reaching_every_api_server() -> Sim {
    sim_seeing("us-east", sighting(&["leader", "b", "c"], &[], &[]))
}

#[test]
fn a_leader_alone_cut_from_an_endpoint_moves_nothing() {
    let mut sim = sim_reaching_every_api_server();
    let endpoint = sighting(&["b", "c"], &["leader"], &[]);
    for round in 0..120 {
        sim.round(&[(
            "us-east",
            endpoint_failing_for_the_leader(Some(endpoint.clone())),
        )]);
        assert_eq!(sim.weights(), "us-east=100 eu-west=0", "round {round}");
    }
    let region = sim.region("us-east");
    assert_eq!(region.consecutive_failures, 0);
    let unknown = region.unknown.clone().unwrap();
    assert_eq!(unknown.cause, "ObserversSeeItServing");
    assert!(
        unknown
            .message
            .contains("us-east's endpoint answers 2 of 3 observers (b, c)"),
        "status names who still reaches the endpoint: {}",
        unknown.message
    );
}

#[test]
fn an_endpoint_the_majority_sees_failing_moves_the_traffic_after_the_threshold() {
    let mut sim = sim_reaching_every_api_server();
    let endpoint = sighting(&["c"], &["leader", "b"], &[]);
    for _ in 0..2 {
        sim.round(&[(
            "us-east",
            endpoint_failing_for_the_leader(Some(endpoint.clone())),
        )]);
        assert_eq!(sim.weights(), "us-east=100 eu-west=0");
    }
    sim.round(&[("us-east", endpoint_failing_for_the_leader(Some(endpoint)))]);
    assert_eq!(sim.weights(), "us-east=0 eu-west=100");
    let message = sim.region("us-east").message.clone().unwrap_or_default();
    assert!(
        message.contains("seen failing by 2 of 3 observers (leader, b)"),
        "{message}"
    );
}

#[test]
fn an_endpoint_the_others_have_not_checked_yet_counts_after_unknown_seconds() {
    let mut sim = sim_reaching_every_api_server();
    let endpoint = sighting(&[], &["leader"], &["b", "c"]);
    for round in 0..29 {
        sim.round(&[(
            "us-east",
            endpoint_failing_for_the_leader(Some(endpoint.clone())),
        )]);
        assert_eq!(sim.weights(), "us-east=100 eu-west=0", "round {round}");
    }
    let unknown = sim.region("us-east").unknown.clone().unwrap();
    assert_eq!(unknown.cause, "ObserversDisagree");
    for _ in 0..4 {
        sim.round(&[(
            "us-east",
            endpoint_failing_for_the_leader(Some(endpoint.clone())),
        )]);
    }
    assert_eq!(
        sim.weights(),
        "us-east=0 eu-west=100",
        "bounded: no failure is skipped for ever"
    );
}

#[test]
fn an_endpoint_only_the_leader_checks_is_the_single_replica_rule() {
    let mut sim = sim_reaching_every_api_server();
    for _ in 0..3 {
        sim.round(&[("us-east", endpoint_failing_for_the_leader(None))]);
    }
    assert_eq!(sim.weights(), "us-east=0 eu-west=100");
}
