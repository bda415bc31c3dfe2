//! ActiveActive with one primary database (`plan::writer`): the primary
//! stays while its region may carry traffic and follows the traffic, through
//! the RPO gate, when it may not; the weights move either way.

use std::collections::BTreeMap;

use serde_json::json;

use super::replication::{
    at, fenced_primary, on_timeline, primary, readings, standby, us_east_mark,
};
use super::{Observation, Sim, rolling_out, spec, up};
use crate::plan::Writer;
use crate::plan::replication::{DataStep, DbReading, PrimaryMark, ReplicaLag, lags, steps};

const REGIONS: [&str; 3] = ["us-east", "eu-west", "ap-south"];

/// An ActiveActive app over three regions whose lag is read from
/// PostgreSQL, with `replication` merged in.
fn active_active(replication: serde_json::Value) -> Sim {
    let mut failover = json!({"replication": {
        "mode": "Asynchronous", "maxLagSeconds": 30,
        "lagFrom": {"postgres": {"secretRef": {"name": "shop-db"}}}
    }});
    super::merge(&mut failover["replication"], replication);
    Sim::new(spec(json!({
        "strategy": "ActiveActive",
        "regions": REGIONS.map(|r| json!({"name": r})),
        "failover": failover,
    })))
}

/// Rounds with these databases' readings in every region's observation;
/// `lost`: regions down. The last decision's writer.
fn rounds(
    sim: &mut Sim,
    lags: &BTreeMap<String, ReplicaLag>,
    lost: &[&str],
    count: usize,
) -> Option<Writer> {
    sim.rounds_with_databases(lags, lost, count).writer.clone()
}

fn weight(sim: &Sim, region: &str) -> i32 {
    let weights = &sim.last.as_ref().unwrap().weights;
    weights.iter().find(|(r, _)| r == region).unwrap().1
}

/// us-east lost with its database; the standbys replayed so much, each
/// `behind` seconds of commits behind the last one read.
fn primary_lost(eu_west: u64, ap_south: u64, behind: i64) -> BTreeMap<String, ReplicaLag> {
    let all = readings(vec![
        (
            "us-east",
            DbReading::Unreadable("connection refused".into()),
        ),
        ("eu-west", standby(eu_west, Some(-behind))),
        ("ap-south", standby(ap_south, Some(-behind))),
    ]);
    lags(&all, Some(&us_east_mark()), at(1)).0
}

/// us-east the primary at 5,000 bytes, both standbys streaming and
/// replayed to it.
fn all_in_sync() -> BTreeMap<String, ReplicaLag> {
    let all = readings(vec![
        (
            "us-east",
            primary(
                5_000,
                &[("eu-west", 5_000, None), ("ap-south", 5_000, None)],
            ),
        ),
        ("eu-west", standby(5_000, Some(0))),
        ("ap-south", standby(5_000, Some(0))),
    ]);
    lags(&all, None, at(1)).0
}

#[test]
fn the_primary_stays_in_its_region_while_that_region_serves() {
    let mut sim = active_active(json!({}));
    let all = readings(vec![
        (
            "us-east",
            primary(
                5_000,
                &[("eu-west", 5_000, None), ("ap-south", 4_000, None)],
            ),
        ),
        ("eu-west", standby(5_000, Some(0))),
        ("ap-south", standby(4_000, Some(0))),
    ]);
    let (lags, _) = lags(&all, None, at(1));
    let writer = rounds(&mut sim, &lags, &[], 3);
    assert_eq!(
        writer,
        Some(Writer {
            region: "us-east".into(),
            moving: None
        })
    );
    assert!(steps("us-east", &lags, None).is_empty(), "nothing to do");
    assert_eq!(
        sim.status.regions[0].replication.as_ref().unwrap().role,
        "Primary"
    );
}

#[test]
fn when_the_primarys_region_fails_the_standby_that_lacks_least_is_promoted() {
    let mut sim = active_active(json!({}));
    sim.primary_mark = Some(us_east_mark());
    let lags = primary_lost(4_000, 5_000, 1);
    rounds(&mut sim, &lags, &[], 2);
    let writer = rounds(&mut sim, &lags, &["us-east"], 3);
    assert_eq!(
        writer,
        Some(Writer {
            region: "ap-south".into(),
            moving: Some(false)
        }),
        "ap-south has all us-east wrote; eu-west lacks 1,000 bytes"
    );
    assert_eq!(weight(&sim, "us-east"), 0, "{}", sim.weights());
    let writer = writer.unwrap();
    assert_eq!(
        steps(&writer.region, &lags, writer.moving),
        vec![DataStep::Promote("ap-south".into())],
        "us-east does not answer: nothing to fence or replay from"
    );
}

#[test]
fn a_region_not_judged_yet_keeps_the_primary() {
    // A new app: us-east's pods are still starting while eu-west's are
    // ready; us-east is not judged yet, so its primary stays.
    let mut sim = active_active(json!({}));
    let lags = all_in_sync();
    let observed = |region: &str, o: Observation| Observation {
        replica: lags.get(region).cloned(),
        ..o
    };
    for _ in 0..3 {
        sim.round(&[
            ("us-east", observed("us-east", rolling_out(3))),
            ("eu-west", observed("eu-west", up(3, 3))),
            ("ap-south", observed("ap-south", up(3, 3))),
        ]);
    }
    assert!(
        weight(&sim, "eu-west") > 0,
        "eu-west serves: {}",
        sim.weights()
    );
    assert_eq!(
        sim.last.as_ref().unwrap().writer,
        Some(Writer {
            region: "us-east".into(),
            moving: None
        })
    );
}

#[test]
fn the_primarys_region_removed_from_the_spec_moves_nothing_blind() {
    let mut sim = Sim::new(spec(json!({
        "strategy": "ActiveActive",
        "regions": [{"name": "eu-west"}, {"name": "ap-south"}],
        "failover": {"replication": {"mode": "Asynchronous", "maxLagSeconds": 30,
            "lagFrom": {"postgres": {"secretRef": {"name": "shop-db"}}}}},
    })));
    sim.primary_mark = Some(us_east_mark());
    let lags = primary_lost(5_000, 5_000, 0);
    assert_eq!(rounds(&mut sim, &lags, &[], 3), None);
    assert_eq!(
        sim.condition_reason("PromotionBlocked").as_deref(),
        Some("PrimaryRegionRemoved")
    );
}

#[test]
fn a_retry_after_the_old_primary_was_fenced_is_still_a_planned_move() {
    // us-east drained: the first attempt fenced it, and its replay wait
    // failed; us-east's database answers, fenced, so the move still waits
    // for everything it wrote.
    let mut sim = active_active(json!({}));
    sim.primary_mark = Some(us_east_mark());
    let all = readings(vec![
        ("us-east", fenced_primary(5_000, &["eu-west", "ap-south"])),
        ("eu-west", standby(4_000, Some(0))),
        ("ap-south", standby(4_000, Some(0))),
    ]);
    let (lags, mark) = lags(&all, Some(&us_east_mark()), at(1));
    assert_eq!(mark.unwrap().region, "us-east");
    sim.spec.regions[0].drain = true;
    let writer = rounds(&mut sim, &lags, &[], 2).unwrap();
    assert_eq!(writer.moving, Some(true));
    assert!(matches!(
        steps(&writer.region, &lags, writer.moving)[..],
        [
            DataStep::AwaitReplay { required: true, .. },
            DataStep::Promote(_)
        ]
    ));
}

#[test]
fn a_region_that_carries_no_traffic_is_not_promoted() {
    let mut sim = active_active(json!({}));
    sim.spec.regions[1].weight = 0;
    sim.primary_mark = Some(us_east_mark());
    // eu-west lacks least but carries no traffic.
    let lags = primary_lost(5_000, 4_900, 1);
    rounds(&mut sim, &lags, &[], 2);
    let writer = rounds(&mut sim, &lags, &["us-east"], 3);
    assert_eq!(writer.map(|w| w.region).as_deref(), Some("ap-south"));
}

#[test]
fn a_standby_over_the_limit_is_not_promoted_but_the_traffic_still_moves() {
    let mut sim = active_active(json!({"maxLagSeconds": 3}));
    sim.primary_mark = Some(us_east_mark());
    let lags = primary_lost(4_000, 4_500, 20);
    rounds(&mut sim, &lags, &[], 2);
    let writer = rounds(&mut sim, &lags, &["us-east"], 3);
    assert_eq!(writer, None);
    assert_eq!(
        sim.condition_reason("PromotionBlocked").as_deref(),
        Some("ReplicationLag")
    );
    assert_eq!(weight(&sim, "us-east"), 0);
    assert!(weight(&sim, "eu-west") > 0 && weight(&sim, "ap-south") > 0);
}

#[test]
fn told_to_promote_past_the_limit_it_promotes_with_a_warning() {
    let mut sim = active_active(json!({"maxLagSeconds": 3, "onExceeded": "Promote"}));
    sim.primary_mark = Some(us_east_mark());
    let lags = primary_lost(4_000, 4_500, 20);
    rounds(&mut sim, &lags, &[], 2);
    let writer = rounds(&mut sim, &lags, &["us-east"], 3);
    assert_eq!(writer.map(|w| w.region).as_deref(), Some("ap-south"));
    let events = &sim.last.as_ref().unwrap().events;
    assert!(
        events
            .iter()
            .any(|e| e.reason.as_str() == "PromotedWithReplicationLag"),
        "{events:?}"
    );
}

#[test]
fn draining_the_primarys_region_is_a_planned_move_that_waits_for_replay() {
    let mut sim = active_active(json!({}));
    let lags = all_in_sync();
    rounds(&mut sim, &lags, &[], 2);
    sim.spec.regions[0].drain = true;
    let writer = rounds(&mut sim, &lags, &[], 1).unwrap();
    assert_eq!(
        writer,
        Writer {
            region: "eu-west".into(),
            moving: Some(true)
        }
    );
    assert_eq!(
        steps(&writer.region, &lags, writer.moving),
        vec![
            DataStep::Fence("us-east".into()),
            DataStep::AwaitReplay {
                target: "eu-west".into(),
                from: "us-east".into(),
                required: true
            },
            DataStep::Promote("eu-west".into()),
        ]
    );
}

#[test]
fn a_planned_move_past_the_limit_warns_of_no_loss_it_waits_for_replay() {
    // onExceeded Promote, both standbys 20 s behind the answering primary:
    // the drain's move waits until the target has replayed everything, so
    // no Warning says writes may be lost.
    let mut sim = active_active(json!({"maxLagSeconds": 3, "onExceeded": "Promote"}));
    let all = readings(vec![
        (
            "us-east",
            primary(
                6_000,
                &[
                    ("eu-west", 5_000, Some(20.0)),
                    ("ap-south", 5_000, Some(20.0)),
                ],
            ),
        ),
        ("eu-west", standby(5_000, Some(-20))),
        ("ap-south", standby(5_000, Some(-20))),
    ]);
    let (lags, _) = lags(&all, None, at(1));
    rounds(&mut sim, &lags, &[], 2);
    sim.spec.regions[0].drain = true;
    let writer = rounds(&mut sim, &lags, &[], 1).unwrap();
    assert_eq!(writer.moving, Some(true), "planned: {writer:?}");
    let events = &sim.last.as_ref().unwrap().events;
    assert!(
        !events
            .iter()
            .any(|e| e.reason.as_str() == "PromotedWithReplicationLag"),
        "{events:?}"
    );
}

/// What the edge records when a move's step failed: the steps and
/// `PromotionBlocked` (`DataStepFailed`).
fn failed_at(sim: &mut Sim, stages: &[(&str, &str, &str)]) {
    let stages = stages
        .iter()
        .map(|(stage, region, outcome)| crate::api::DataStage {
            stage: stage.to_string(),
            region: region.to_string(),
            outcome: outcome.to_string(),
            message: String::new(),
            at: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(at(sim.now)),
        })
        .collect();
    let previous = sim.status.clone();
    crate::plan::replication::mark_blocked(
        &mut sim.status,
        &previous,
        stages,
        Some(1),
        at(sim.now),
    );
}

fn warned(sim: &Sim) -> bool {
    let events = &sim.last.as_ref().unwrap().events;
    events
        .iter()
        .any(|e| e.reason.as_str() == "PromotedWithReplicationLag")
}

#[test]
fn a_failover_after_a_planned_move_failed_still_warns_of_the_lag() {
    // A drain's planned move under onExceeded Promote failed at the
    // replay wait (no Warning: it would have lost nothing); then us-east
    // is lost, and the retry is a failover past the limit: it warns.
    let mut sim = active_active(json!({"maxLagSeconds": 3, "onExceeded": "Promote"}));
    sim.primary_mark = Some(us_east_mark());
    let lags = primary_lost(4_000, 4_500, 20);
    rounds(&mut sim, &lags, &[], 2);
    rounds(&mut sim, &lags, &["us-east"], 2);
    failed_at(
        &mut sim,
        &[
            ("Fence", "us-east", "Done"),
            ("AwaitReplay", "ap-south", "Failed"),
        ],
    );
    let writer = rounds(&mut sim, &lags, &["us-east"], 1).unwrap();
    assert_eq!(writer.moving, Some(false), "a failover now: {writer:?}");
    assert!(warned(&sim), "{:?}", sim.last.as_ref().unwrap().events);

    // A failover whose promotion failed warned on its first try.
    failed_at(&mut sim, &[("Promote", "ap-south", "Failed")]);
    rounds(&mut sim, &lags, &["us-east"], 1);
    assert!(!warned(&sim), "once per move");
}

#[test]
fn an_old_primary_back_unfenced_is_fenced_and_the_new_one_stays() {
    let mut sim = active_active(json!({}));
    let promoted = PrimaryMark {
        region: "ap-south".into(),
        position: 6_000,
        at: at(0),
        restored_horizon: None,
        timeline: None,
    };
    sim.primary_mark = Some(promoted.clone());
    let all = readings(vec![
        ("us-east", primary(5_000, &[])),
        ("eu-west", standby(6_000, Some(0))),
        ("ap-south", primary(6_000, &[("eu-west", 6_000, None)])),
    ]);
    let (lags, _) = lags(&all, Some(&promoted), at(1));
    let writer = rounds(&mut sim, &lags, &[], 3).unwrap();
    assert_eq!(
        writer,
        Writer {
            region: "ap-south".into(),
            moving: None
        }
    );
    assert_eq!(
        steps(&writer.region, &lags, writer.moving),
        vec![DataStep::Fence("us-east".into())]
    );
}

#[test]
fn without_postgres_an_active_active_app_has_no_writer() {
    let mut sim = Sim::new(spec(json!({
        "strategy": "ActiveActive",
        "regions": REGIONS.map(|r| json!({"name": r})),
        "failover": {"replication": {"mode": "Asynchronous", "maxLagSeconds": 30}},
    })));
    assert_eq!(rounds(&mut sim, &BTreeMap::new(), &[], 3), None);
}

#[test]
fn with_no_region_healthy_and_the_weights_kept_the_primary_stays() {
    // A bad release everywhere: every region Unhealthy, the last weights
    // kept (KeepLast); the primary's region still carries traffic, so no
    // switchover to whichever standby comes first.
    let mut sim = active_active(json!({}));
    let lags = all_in_sync();
    rounds(&mut sim, &lags, &[], 2);
    let writer = rounds(&mut sim, &lags, &REGIONS, 4);
    assert!(weight(&sim, "us-east") > 0, "kept: {}", sim.weights());
    assert_eq!(
        writer,
        Some(Writer {
            region: "us-east".into(),
            moving: None
        })
    );
}

#[test]
fn an_old_primary_back_writable_is_never_the_writer() {
    // eu-west was promoted (timeline 2) and is now lost, its database not
    // read; us-east's old primary (timeline 1) is back, still taking
    // writes, in a region that serves. The primary goes to ap-south, never
    // back onto the old history.
    let mut sim = active_active(json!({}));
    let live = PrimaryMark {
        region: "eu-west".into(),
        position: 9_000,
        at: at(0),
        restored_horizon: None,
        timeline: Some(2),
    };
    sim.primary_mark = Some(live.clone());
    let all = readings(vec![
        ("us-east", on_timeline(primary(5_000, &[]), 1)),
        (
            "eu-west",
            DbReading::Unreadable("connection refused".into()),
        ),
        ("ap-south", standby(9_000, Some(-1))),
    ]);
    let (lags, mark) = lags(&all, Some(&live), at(1));
    assert_eq!(mark.as_ref(), Some(&live));
    rounds(&mut sim, &lags, &[], 2);
    let writer = rounds(&mut sim, &lags, &["eu-west"], 3).unwrap();
    assert_eq!(writer.region, "ap-south");
    assert_eq!(
        steps(&writer.region, &lags, writer.moving),
        vec![
            DataStep::Fence("us-east".into()),
            DataStep::Promote("ap-south".into())
        ],
        "the old primary is fenced, never a replay source"
    );
}
