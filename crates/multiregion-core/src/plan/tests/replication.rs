//! The data tier's lag rules (`plan::replication::lags`).

use std::collections::BTreeMap;

use jiff::Timestamp;

use crate::plan::replication::{
    DbReading, DbRole, PrimaryMark, ReadFrom, StreamedTo, lags, shown_role,
};

pub(super) fn at(second: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + second).unwrap()
}

pub(super) fn primary(position: u64, standbys: &[(&str, u64, Option<f64>)]) -> DbReading {
    DbReading::Primary {
        position,
        confirmed_by: 0,
        fenced: false,
        timeline: None,
        standbys: standbys
            .iter()
            .map(|(name, replayed, lag)| {
                let stream = StreamedTo {
                    replayed: *replayed,
                    flushed: *replayed,
                    replay_lag_seconds: *lag,
                };
                (name.to_string(), stream)
            })
            .collect(),
    }
}

pub(super) fn standby(replayed: u64, last_commit: Option<i64>) -> DbReading {
    DbReading::Standby {
        received: replayed,
        replayed,
        last_replayed_commit: last_commit.map(at),
        streaming: false,
    }
}

pub(super) fn readings(pairs: Vec<(&str, DbReading)>) -> BTreeMap<String, DbReading> {
    pairs.into_iter().map(|(r, d)| (r.to_string(), d)).collect()
}

#[test]
fn while_the_primary_answers_a_standby_lags_by_what_the_primary_says() {
    let now = at(100);
    let all = readings(vec![
        (
            "us-east",
            primary(
                5_000,
                &[("eu-west", 4_000, Some(7.5)), ("ap-south", 5_000, None)],
            ),
        ),
        ("eu-west", standby(4_000, Some(90))),
        ("ap-south", standby(5_000, Some(99))),
    ]);
    let (lags, mark) = lags(&all, None, now);
    assert_eq!(lags["us-east"].role, DbRole::Primary);
    let eu = &lags["eu-west"];
    assert_eq!(
        (eu.seconds, eu.bytes, eu.read_from),
        (Some(7.5), Some(1_000), Some(ReadFrom::Primary))
    );
    let ap = &lags["ap-south"];
    assert_eq!(
        (ap.seconds, ap.bytes),
        (Some(0.0), Some(0)),
        "caught up and idle: lag 0"
    );
    assert_eq!(
        mark.unwrap(),
        PrimaryMark {
            region: "us-east".into(),
            position: 5_000,
            at: now,
            restored_horizon: None,
            timeline: None,
        }
    );
}

#[test]
fn a_standby_the_primary_lost_is_measured_by_its_own_reading() {
    let all = readings(vec![
        ("us-east", primary(5_000, &[])),
        ("eu-west", standby(3_000, Some(80))),
    ]);
    let (lags, _) = lags(&all, None, at(100));
    let eu = &lags["eu-west"];
    assert_eq!((eu.seconds, eu.bytes), (Some(20.0), Some(2_000)));
    assert_eq!(eu.read_from, Some(ReadFrom::Standby));
}

#[test]
fn when_the_primary_is_gone_a_standby_at_its_last_position_is_caught_up_however_old() {
    let mark = PrimaryMark {
        region: "us-east".into(),
        position: 5_000,
        at: at(0),
        restored_horizon: None,
        timeline: None,
    };
    let all = readings(vec![
        (
            "us-east",
            DbReading::Unreadable("secret shop-db key us-east: connection refused".into()),
        ),
        ("eu-west", standby(5_000, Some(-30))),
        ("ap-south", standby(4_000, Some(-12))),
    ]);
    let (lags, kept) = lags(&all, Some(&mark), at(600));
    assert_eq!(kept.as_ref(), Some(&mark), "the last position is kept");
    let eu = &lags["eu-west"];
    assert_eq!(
        (eu.seconds, eu.bytes, eu.primary_age_seconds),
        (Some(0.0), Some(0), Some(600))
    );
    let ap = &lags["ap-south"];
    assert_eq!(
        (ap.seconds, ap.bytes),
        (Some(12.0), Some(1_000)),
        "from its last commit to the primary's last reading"
    );
    assert_eq!(lags["us-east"].role, DbRole::Unknown);
    assert!(
        lags["us-east"]
            .problem
            .as_deref()
            .unwrap()
            .contains("key us-east")
    );
}

#[test]
fn a_wal_position_reads_back_from_its_postgresql_text() {
    use crate::plan::replication::{lsn_text, parse_lsn};
    assert_eq!(lsn_text(0x3000148), "0/3000148");
    assert_eq!(lsn_text((0x1A << 32) | 0xFF), "1A/FF");
    for position in [0, 1, 0x3000148, u64::MAX, 7 << 32] {
        assert_eq!(parse_lsn(&lsn_text(position)), Some(position));
    }
    for bad in ["", "3000148", "0/", "x/1", "0/1/2", "100000000/0"] {
        assert_eq!(parse_lsn(bad), None, "{bad}");
    }
}

#[test]
fn the_primarys_position_is_kept_in_status_at_most_every_30_s_and_a_new_leader_measures_against_it()
{
    use crate::plan::replication::{kept_position, restored_mark};
    let mark = |region: &str, position, second| PrimaryMark {
        region: region.into(),
        position,
        at: at(second),
        restored_horizon: None,
        timeline: None,
    };
    let first = kept_position(None, Some(&mark("us-east", 5_000, 0)), at(0)).unwrap();
    assert_eq!(
        (first.region.as_str(), first.lsn.as_str()),
        ("us-east", "0/1388")
    );
    let later = mark("us-east", 9_000, 20);
    assert_eq!(
        kept_position(Some(&first), Some(&later), at(20)).as_ref(),
        Some(&first),
        "the same primary within 30 s: no write for a moving position"
    );
    let refreshed = kept_position(Some(&first), Some(&mark("us-east", 9_000, 30)), at(30));
    assert_eq!(refreshed.unwrap().lsn, "0/2328", "30 s on: refreshed");
    let moved = kept_position(Some(&first), Some(&mark("eu-west", 9_000, 5)), at(5));
    assert_eq!(moved.unwrap().region, "eu-west", "a new primary at once");
    assert_eq!(
        kept_position(Some(&first), None, at(600)).as_ref(),
        Some(&first),
        "no primary read: the last one stays"
    );

    // An operator that never read the primary has the status's position.
    // Had the primary gone on answering, the status would have recorded a
    // newer one by the first round 30 s after the read (interval 5 s): it
    // may have written unrecorded until then (35 s), or until the latest
    // commit a standby replayed, if later.
    let restored = restored_mark(Some(&first), 5).unwrap();
    assert_eq!(
        restored,
        PrimaryMark {
            restored_horizon: Some(at(35)),
            timeline: None,
            ..mark("us-east", 5_000, 0)
        }
    );
    let lost = || {
        (
            "us-east",
            DbReading::Unreadable("connection refused".into()),
        )
    };
    let all = readings(vec![
        lost(),
        ("eu-west", standby(5_000, Some(-3))),
        ("ap-south", standby(4_000, Some(-12))),
    ]);
    let (measured, kept) = lags(&all, Some(&restored), at(40));
    assert_eq!(kept, Some(restored.clone()));
    let eu = &measured["eu-west"];
    assert_eq!(
        (eu.seconds, eu.bytes, eu.primary_age_seconds),
        (Some(35.0), Some(0), Some(40)),
        "at the position, idle since: from the read to the horizon"
    );
    let ap = &measured["ap-south"];
    assert_eq!(
        (ap.seconds, ap.bytes),
        (Some(47.0), Some(1_000)),
        "short of it: from its last commit"
    );
    // The status stood still while the primary wrote (a standby replayed
    // a commit at 300 s): the one that got the most lacks the least, one
    // stuck since 5 s is not made to look close.
    let later = readings(vec![
        lost(),
        ("eu-west", standby(90_000, Some(300))),
        ("ap-south", standby(5_000, Some(5))),
    ]);
    let (measured, _) = lags(&later, Some(&restored), at(310));
    assert_eq!(measured["eu-west"].seconds, Some(0.0));
    assert_eq!(measured["ap-south"].seconds, Some(295.0));
    let never = readings(vec![lost(), ("sa-east", standby(4_000, None))]);
    let (measured, _) = lags(&never, Some(&restored), at(40));
    assert_eq!(measured["sa-east"].seconds, None, "nothing to date it by");
    // Read by this process, the same position is the primary's last word.
    let (known, _) = lags(&all, Some(&mark("us-east", 5_000, 0)), at(40));
    assert_eq!(known["eu-west"].seconds, Some(0.0));
    // A mark read at a fraction of a second builds the position the hub
    // keeps (whole seconds): standing still, it is no change to write.
    let fraction = PrimaryMark {
        at: at(0)
            .checked_add(jiff::SignedDuration::from_millis(250))
            .unwrap(),
        ..mark("us-east", 5_000, 0)
    };
    let built = kept_position(None, Some(&fraction), at(0)).unwrap();
    assert_eq!(built.read_at.0, at(0));
    assert_eq!(
        kept_position(Some(&built), Some(&fraction), at(300)),
        Some(built)
    );
    let mut garbled = first.clone();
    garbled.lsn = "not a position".into();
    assert_eq!(restored_mark(Some(&garbled), 5), None);
}

#[test]
fn without_any_primary_reading_a_standby_reports_no_lag() {
    let all = readings(vec![("eu-west", standby(5_000, Some(0)))]);
    let (lags, mark) = lags(&all, None, at(10));
    assert_eq!(lags["eu-west"].seconds, None);
    assert!(lags["eu-west"].problem.is_some());
    assert!(mark.is_none());
}

#[test]
fn two_primaries_say_nothing_of_the_standbys() {
    let mark = PrimaryMark {
        region: "eu-west".into(),
        position: 9_000,
        at: at(50),
        restored_horizon: None,
        timeline: None,
    };
    let all = readings(vec![
        ("us-east", primary(5_000, &[("ap-south", 5_000, None)])),
        ("eu-west", primary(9_000, &[])),
        ("ap-south", standby(5_000, Some(40))),
    ]);
    let (lags, kept) = lags(&all, Some(&mark), at(60));
    assert_eq!(kept.as_ref(), Some(&mark));
    // ap-south follows us-east, back and not fenced yet, not the last live
    // primary: an old history, no lag.
    let ap = &lags["ap-south"];
    assert_eq!((ap.bytes, ap.seconds, ap.parted), (None, None, true));
    // One that follows no one is measured against the last live primary.
    let alone = readings(vec![
        ("us-east", primary(5_000, &[])),
        ("eu-west", primary(9_000, &[])),
        ("ap-south", standby(5_000, Some(40))),
    ]);
    let (lags, _) = super::super::replication::lags(&alone, Some(&mark), at(60));
    let ap = &lags["ap-south"];
    assert_eq!(
        (ap.bytes, ap.read_from, ap.parted),
        (Some(4_000), Some(ReadFrom::Standby), false)
    );
}

#[test]
fn a_standby_whose_database_cannot_be_read_is_not_promoted() {
    use crate::plan::replication::ReplicaLag;
    use crate::plan::tests::{Sim, down, spec, up};
    use serde_json::json;
    let mut sim = Sim::new(spec(json!({"failover": {"replication": {
        "maxLagSeconds": 30, "lagFrom": {"postgres": {"secretRef": {"name": "shop-db"}}}
    }}})));
    let unread = |o: crate::plan::Observation| {
        let (lags, _) = lags(
            &readings(vec![(
                "eu-west",
                DbReading::Unreadable("Secret shop-db key eu-west: refused".into()),
            )]),
            None,
            at(0),
        );
        let replica: ReplicaLag = lags["eu-west"].clone();
        crate::plan::Observation {
            replica: Some(replica),
            ..o
        }
    };
    sim.round(&[("eu-west", unread(up(1, 1)))]);
    sim.round(&[("eu-west", unread(up(1, 1)))]);
    for _ in 0..3 {
        sim.round(&[("us-east", down()), ("eu-west", unread(up(1, 1)))]);
    }
    assert_eq!(sim.weights(), "us-east=100 eu-west=0");
    let c = sim
        .status
        .conditions
        .iter()
        .find(|c| c.type_ == "PromotionBlocked")
        .unwrap();
    assert!(c.message.contains("key eu-west"), "{}", c.message);
}

fn role(role: DbRole, fenced: bool) -> crate::plan::replication::ReplicaLag {
    let reading = match role {
        DbRole::Primary => DbReading::Primary {
            position: 1,
            confirmed_by: 0,
            fenced,
            standbys: BTreeMap::new(),
            timeline: None,
        },
        DbRole::Standby => standby(1, Some(0)),
        DbRole::Unknown => DbReading::Unreadable("refused".into()),
    };
    // The last live primary was this region's own (a fenced primary
    // elsewhere would be on an old history).
    let mark = PrimaryMark {
        region: "r".into(),
        position: 1,
        at: at(0),
        restored_horizon: None,
        timeline: None,
    };
    lags(&readings(vec![("r", reading)]), Some(&mark), at(1)).0["r"].clone()
}

#[test]
fn the_database_follows_the_traffic_fence_then_replay_then_promote() {
    use crate::plan::replication::{DataStep, steps};
    let lag = |pairs: Vec<(&str, DbRole, bool)>| -> BTreeMap<String, _> {
        pairs
            .into_iter()
            .map(|(r, role_, fenced)| (r.to_string(), role(role_, fenced)))
            .collect()
    };
    // A planned move while the old primary answers: fenced, caught up, promoted.
    let planned = steps(
        "eu-west",
        &lag(vec![
            ("us-east", DbRole::Primary, false),
            ("eu-west", DbRole::Standby, false),
        ]),
        Some(true),
    );
    assert_eq!(
        planned,
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
    // An old primary never rejoined, fenced and further on its own
    // history, says nothing of what the target must replay: the live one does.
    let mut lags = lag(vec![
        ("us-east", DbRole::Primary, true),
        ("eu-west", DbRole::Primary, false),
        ("ap-south", DbRole::Standby, false),
    ]);
    lags.get_mut("us-east").unwrap().position = Some(9_000);
    lags.get_mut("us-east").unwrap().parted = true;
    assert_eq!(
        steps("ap-south", &lags, Some(true)),
        vec![
            DataStep::Fence("eu-west".into()),
            DataStep::AwaitReplay {
                target: "ap-south".into(),
                from: "eu-west".into(),
                required: true
            },
            DataStep::Promote("ap-south".into()),
        ]
    );
    // The live primary unreadable, only the old one answers: nothing to
    // wait for, the RPO gate decided.
    lags.insert("eu-west".into(), role(DbRole::Unknown, false));
    assert_eq!(
        steps("ap-south", &lags, Some(false)),
        vec![DataStep::Promote("ap-south".into())]
    );
    // An override onto an old history: refused before anything is fenced.
    let mut onto_old = lag(vec![
        ("us-east", DbRole::Primary, false),
        ("eu-west", DbRole::Standby, false),
    ]);
    onto_old.get_mut("eu-west").unwrap().parted = true;
    assert!(matches!(
        steps("eu-west", &onto_old, Some(true)).as_slice(),
        [DataStep::Refuse { region, .. }] if region == "eu-west"
    ));
    let mut old_primary = lag(vec![("us-east", DbRole::Primary, true)]);
    old_primary.get_mut("us-east").unwrap().parted = true;
    assert!(
        matches!(
            steps("us-east", &old_primary, Some(false)).as_slice(),
            [DataStep::Refuse { .. }]
        ),
        "an old primary is not unfenced, even alone"
    );
    // The old primary's region is lost: promote without it.
    let lost = steps(
        "eu-west",
        &lag(vec![
            ("us-east", DbRole::Unknown, false),
            ("eu-west", DbRole::Standby, false),
        ]),
        Some(false),
    );
    assert_eq!(lost, vec![DataStep::Promote("eu-west".into())]);
    // It comes back still a primary: fenced at once, nothing else.
    let back = steps(
        "eu-west",
        &lag(vec![
            ("us-east", DbRole::Primary, false),
            ("eu-west", DbRole::Primary, false),
        ]),
        None,
    );
    assert_eq!(back, vec![DataStep::Fence("us-east".into())]);
    // Fenced already, the active region the primary: nothing to do.
    let settled = steps(
        "eu-west",
        &lag(vec![
            ("us-east", DbRole::Primary, true),
            ("eu-west", DbRole::Primary, false),
        ]),
        None,
    );
    assert!(settled.is_empty());
    // The target cannot be read: a move does not go on blind; steady state waits.
    let blind = lag(vec![
        ("us-east", DbRole::Unknown, false),
        ("eu-west", DbRole::Unknown, false),
    ]);
    assert_eq!(
        steps("eu-west", &blind, Some(false)),
        vec![DataStep::Promote("eu-west".into())]
    );
    assert!(steps("eu-west", &blind, None).is_empty());
}

#[test]
fn with_synchronous_replication_only_confirmed_writes_count() {
    let stream = |flushed| StreamedTo {
        replayed: flushed,
        flushed,
        replay_lag_seconds: None,
    };
    let sync = |confirmed_by| DbReading::Primary {
        position: 9_000,
        confirmed_by,
        fenced: false,
        timeline: None,
        standbys: [
            ("eu-west".to_string(), stream(8_000)),
            ("ap-south".to_string(), stream(6_000)),
        ]
        .into(),
    };
    // ANY 1: acknowledged up to the most advanced standby.
    let (_, mark) = lags(&readings(vec![("us-east", sync(1))]), None, at(0));
    assert_eq!(mark.unwrap().position, 8_000);
    // Every standby: up to the least advanced.
    let (_, mark) = lags(&readings(vec![("us-east", sync(2))]), None, at(0));
    assert_eq!(mark.unwrap().position, 6_000);
    // Asynchronous: everything the primary wrote.
    let (_, mark) = lags(&readings(vec![("us-east", sync(0))]), None, at(0));
    assert_eq!(mark.unwrap().position, 9_000);
}

#[test]
fn the_number_of_confirming_standbys_is_read_from_the_setting() {
    use crate::plan::replication::confirmed_by;
    assert_eq!(confirmed_by(""), 0);
    assert_eq!(confirmed_by("ANY 1 (\"eu-west\", \"ap-south\")"), 1);
    assert_eq!(confirmed_by("FIRST 2 (a, b, c)"), 2);
    assert_eq!(confirmed_by("2 (a, b)"), 2);
    assert_eq!(confirmed_by("eu_west"), 1);
    assert_eq!(confirmed_by("*"), 1);
}

#[test]
fn the_standby_that_lacks_nothing_is_promoted_before_one_earlier_in_order() {
    // ANY 1: ap-south confirmed the last commits, eu-west is 1 s behind.
    assert_eq!(promoted_of(4_000, 5_000), "ap-south");
}

#[test]
fn the_standby_that_lacks_least_is_promoted_so_none_is_left_ahead_of_the_new_primary() {
    // Both behind, both within the limit: the one with more of the old
    // primary's WAL, else it would be ahead of the new primary (two
    // histories); equal, the preference order.
    assert_eq!(promoted_of(4_000, 4_500), "ap-south");
    assert_eq!(promoted_of(4_500, 4_000), "eu-west");
    assert_eq!(promoted_of(4_500, 4_500), "eu-west");
    // Both past the primary's last reading: the one that holds more.
    assert_eq!(promoted_of(5_200, 5_400), "ap-south");
}

/// A standby that replayed `replayed` but received `received`.
fn receiving(received: u64, replayed: u64) -> DbReading {
    DbReading::Standby {
        received,
        replayed,
        last_replayed_commit: Some(at(-1)),
        streaming: false,
    }
}

#[test]
fn of_standbys_that_lack_nothing_the_one_holding_more_wal_on_disk_is_promoted() {
    // eu-west replayed less but received more: a promotion replays all it
    // received, and ap-south promoted would leave eu-west past the point
    // where the new history parts (it could not follow without a rewind).
    let promoted = promoted_after_loss(receiving(5_600, 5_200), standby(5_400, Some(-1)));
    assert_eq!(promoted, "eu-west");
}

#[test]
fn a_standby_that_received_more_but_replayed_less_is_promoted_first() {
    // eu-west replayed short of the primary's last position but received
    // past it; ap-south replayed exactly to it. eu-west, promoted, has
    // every write ap-south has and more.
    let promoted = promoted_after_loss(receiving(5_600, 4_900), standby(5_000, Some(-1)));
    assert_eq!(promoted, "eu-west");
}

#[test]
fn the_primarys_region_is_chosen_first_over_standbys_that_replayed_everything() {
    use crate::plan::tests::{Sim, spec, up};
    use serde_json::json;
    let mut sim = Sim::new(spec(json!({
        "regions": [{"name": "us-east"}, {"name": "eu-west"}, {"name": "ap-south"}],
        "failover": {"replication": {"maxLagSeconds": 30, "mode": "Asynchronous"}}
    })));
    let (lags, _) = lags(
        &readings(vec![
            (
                "us-east",
                primary(
                    5_000,
                    &[("eu-west", 5_000, None), ("ap-south", 5_000, None)],
                ),
            ),
            ("eu-west", standby(5_000, Some(0))),
            ("ap-south", standby(5_000, Some(0))),
        ]),
        None,
        at(1),
    );
    let with = |region: &str| crate::plan::Observation {
        replica: Some(lags[region].clone()),
        ..up(1, 1)
    };
    for _ in 0..3 {
        sim.round(&[
            ("us-east", with("us-east")),
            ("eu-west", with("eu-west")),
            ("ap-south", with("ap-south")),
        ]);
    }
    assert_eq!(
        sim.status.active_region.as_deref(),
        Some("us-east"),
        "{}",
        sim.weights()
    );
}

#[test]
fn a_standby_on_an_old_primarys_history_is_never_promoted_even_when_told_to() {
    use serde_json::json;
    // us-east (active, the live primary) is lost; ap-south is an old
    // primary never rejoined, fenced, and eu-west still streams from it.
    let mark = PrimaryMark {
        region: "us-east".into(),
        position: 5_000,
        at: at(0),
        restored_horizon: None,
        timeline: None,
    };
    let (lags, kept) = lags(
        &readings(vec![
            (
                "us-east",
                DbReading::Unreadable("connection refused".into()),
            ),
            ("eu-west", streaming(9_000, Some(0))),
            ("ap-south", fenced_primary(9_000, &["eu-west"])),
        ]),
        Some(&mark),
        at(1),
    );
    assert_eq!(
        kept.as_ref(),
        Some(&mark),
        "the old primary is not the live one"
    );
    assert!(lags["ap-south"].parted && lags["eu-west"].parted);
    assert_eq!(lags["eu-west"].seconds, None);
    let sim = us_east_lost(
        json!({"maxLagSeconds": 30, "mode": "Asynchronous", "onExceeded": "Promote"}),
        &lags,
    );
    assert_eq!(
        sim.status.active_region.as_deref(),
        Some("us-east"),
        "{}",
        sim.weights()
    );
}

/// The region promoted when us-east (the primary, at 5,000) is lost, the
/// standbys eu-west and ap-south having replayed so much, each 1 s behind
/// at most (`maxLagSeconds` 30).
fn promoted_of(eu_west: u64, ap_south: u64) -> String {
    promoted_after_loss(standby(eu_west, Some(-1)), standby(ap_south, Some(-1)))
}

/// us-east, the primary at 5,000, as last read.
pub(super) fn us_east_mark() -> PrimaryMark {
    PrimaryMark {
        region: "us-east".into(),
        position: 5_000,
        at: at(0),
        restored_horizon: None,
        timeline: None,
    }
}

/// The region an ActivePassive app promotes (maxLagSeconds 30) once
/// us-east, last read at 5,000, is lost with these standbys.
fn promoted_after_loss(eu_west: DbReading, ap_south: DbReading) -> String {
    use serde_json::json;
    let (lags, _) = lags(
        &readings(vec![("eu-west", eu_west), ("ap-south", ap_south)]),
        Some(&us_east_mark()),
        at(1),
    );
    let sim = us_east_lost(json!({"maxLagSeconds": 30, "mode": "Asynchronous"}), &lags);
    sim.status.active_region.clone().unwrap_or_default()
}

/// An ActivePassive app over us-east (active), eu-west and ap-south with
/// `replication`, through two healthy rounds and three with us-east down,
/// the other regions' databases read as `lags`.
fn us_east_lost(
    replication: serde_json::Value,
    lags: &BTreeMap<String, crate::plan::replication::ReplicaLag>,
) -> crate::plan::tests::Sim {
    use crate::plan::tests::{Sim, spec};
    use serde_json::json;
    let mut sim = Sim::new(spec(json!({
        "regions": [{"name": "us-east"}, {"name": "eu-west"}, {"name": "ap-south"}],
        "failover": {"replication": replication}
    })));
    sim.round(&[]);
    sim.round(&[]);
    sim.rounds_with_databases(lags, &["us-east"], 3);
    sim
}

/// The PromotedWithReplicationLag Warnings of an ActivePassive app over
/// us-east (the primary) and eu-west (20 s behind) once `activeOverride`
/// names eu-west, with us-east's database read as `us_east`.
fn override_warnings(us_east: DbReading) -> usize {
    use crate::plan::tests::{Sim, spec};
    use serde_json::json;
    let (lags, _) = lags(
        &readings(vec![
            ("us-east", us_east),
            ("eu-west", standby(4_000, Some(-20))),
        ]),
        Some(&us_east_mark()),
        at(1),
    );
    let mut sim = Sim::new(spec(json!({
        "failover": {"replication": {"maxLagSeconds": 3, "mode": "Asynchronous"}}
    })));
    sim.rounds_with_databases(&lags, &[], 2);
    sim.spec.failover.active_override = "eu-west".into();
    let mut warnings = 0;
    for _ in 0..5 {
        sim.rounds_with_databases(&lags, &[], 1);
        let events = &sim.last.as_ref().unwrap().events;
        warnings += events
            .iter()
            .filter(|e| e.reason.as_str() == "PromotedWithReplicationLag")
            .count();
    }
    assert_eq!(sim.status.active_region.as_deref(), Some("eu-west"));
    warnings
}

#[test]
fn an_override_while_the_old_primary_answers_waits_for_replay_and_warns_of_no_loss() {
    let answering = primary(5_000, &[("eu-west", 4_000, Some(20.0))]);
    assert_eq!(
        override_warnings(answering),
        0,
        "a switchover loses nothing"
    );
    let lost = DbReading::Unreadable("connection refused".into());
    assert_eq!(
        override_warnings(lost),
        1,
        "with the old primary gone, what it did not send is lost: the Warning says so"
    );
}

#[test]
fn a_fenced_active_primary_is_unfenced_alone_and_refused_beside_a_live_one() {
    use crate::plan::replication::{DataStep, steps};
    let lag = |pairs: Vec<(&str, DbRole, bool)>| -> BTreeMap<String, _> {
        pairs
            .into_iter()
            .map(|(r, role_, fenced)| (r.to_string(), role(role_, fenced)))
            .collect()
    };
    // A planned move that did not happen left us-east fenced: unfenced.
    let alone = lag(vec![
        ("us-east", DbRole::Primary, true),
        ("eu-west", DbRole::Standby, false),
    ]);
    assert_eq!(
        steps("us-east", &alone, None),
        vec![DataStep::Unfence("us-east".into())]
    );
    // A failback onto a fenced old primary while eu-west takes writes: refused.
    let beside = lag(vec![
        ("us-east", DbRole::Primary, true),
        ("eu-west", DbRole::Primary, false),
    ]);
    let refused = steps("us-east", &beside, Some(true));
    assert_eq!(refused.len(), 1, "nothing fenced: {refused:?}");
    assert!(
        matches!(&refused[0], DataStep::Refuse { region, .. } if region == "us-east"),
        "{refused:?}"
    );
    // A fenced old primary lacks its lag: the RPO gate will not move onto it.
    let fenced = role(DbRole::Primary, true);
    assert_eq!((fenced.seconds, fenced.bytes), (None, None));
    assert!(fenced.problem.is_some());
}

pub(super) fn fenced_primary(position: u64, standbys: &[&str]) -> DbReading {
    let DbReading::Primary {
        confirmed_by,
        standbys: listed,
        ..
    } = primary(
        position,
        &standbys
            .iter()
            .map(|s| (*s, position, None))
            .collect::<Vec<_>>(),
    )
    else {
        unreachable!()
    };
    DbReading::Primary {
        position,
        confirmed_by,
        fenced: true,
        standbys: listed,
        timeline: None,
    }
}

/// The same reading of a primary, on `timeline`.
pub(super) fn on_timeline(reading: DbReading, timeline: u32) -> DbReading {
    match reading {
        DbReading::Primary {
            position,
            confirmed_by,
            fenced,
            standbys,
            ..
        } => DbReading::Primary {
            position,
            confirmed_by,
            fenced,
            standbys,
            timeline: Some(timeline),
        },
        other => other,
    }
}

#[test]
fn a_fenced_old_primary_beside_the_live_one_says_nothing_for_the_data() {
    let all = readings(vec![
        ("us-east", fenced_primary(9_000, &[])),
        ("eu-west", primary(6_000, &[("ap-south", 6_000, None)])),
        ("ap-south", standby(6_000, Some(95))),
    ]);
    let (lags, mark) = lags(&all, None, at(100));
    assert_eq!(mark.unwrap().region, "eu-west", "the primary taking writes");
    let ap = &lags["ap-south"];
    assert_eq!(
        (ap.seconds, ap.bytes, ap.read_from),
        (Some(0.0), Some(0), Some(ReadFrom::Primary))
    );
    assert_eq!(
        shown_role("us-east", &lags["us-east"], Some("eu-west")),
        "NeedsRejoin"
    );

    // A planned move's old primary, fenced and alone, still gives the position.
    let alone = readings(vec![
        ("us-east", fenced_primary(9_000, &["eu-west"])),
        ("eu-west", standby(8_000, Some(95))),
    ]);
    let (lags, mark) = super::super::replication::lags(&alone, None, at(100));
    assert_eq!(mark.unwrap().position, 9_000);
    assert_eq!(lags["eu-west"].bytes, Some(0), "as its primary says");
    // With the last live primary known: only when it was this one.
    let was = |region: &str| PrimaryMark {
        region: region.into(),
        position: 8_000,
        at: at(90),
        restored_horizon: None,
        timeline: None,
    };
    let (_, mark) = super::super::replication::lags(&alone, Some(&was("us-east")), at(100));
    assert_eq!(mark.unwrap().position, 9_000);
    let (lags, mark) = super::super::replication::lags(&alone, Some(&was("ap-south")), at(100));
    assert_eq!(
        mark.unwrap().position,
        8_000,
        "a fenced old primary is not the live one"
    );
    assert!(lags["us-east"].parted && lags["eu-west"].parted);
}

#[test]
fn a_standby_streaming_from_a_fenced_old_primary_has_no_lag_and_needs_a_rejoin() {
    let all = readings(vec![
        ("us-east", fenced_primary(9_000, &["ap-south"])),
        ("eu-west", primary(6_000, &[])),
        ("ap-south", streaming(9_000, Some(99))),
    ]);
    let (lags, _) = lags(&all, None, at(100));
    let ap = &lags["ap-south"];
    assert_eq!(
        (ap.seconds, ap.bytes),
        (None, None),
        "positions of two histories"
    );
    assert!(ap.parted);
    let problem = ap.problem.as_deref().unwrap();
    assert!(
        problem.contains("streams from us-east, not from the primary eu-west"),
        "{problem}"
    );
    assert_eq!(shown_role("ap-south", ap, Some("eu-west")), "NeedsRejoin");
}

#[test]
fn a_standby_that_receives_nothing_from_the_live_primary_says_so_and_keeps_its_lag() {
    let all = readings(vec![
        (
            "us-east",
            DbReading::Unreadable("connection refused".into()),
        ),
        ("eu-west", primary(6_000, &[])),
        ("ap-south", standby(5_000, Some(70))),
    ]);
    let (lags, _) = lags(&all, None, at(100));
    let ap = &lags["ap-south"];
    assert_eq!((ap.seconds, ap.bytes), (Some(30.0), Some(1_000)));
    assert!(!ap.parted);
    let problem = ap.problem.as_deref().unwrap();
    assert!(
        problem.contains("receives no WAL from the primary eu-west"),
        "{problem}"
    );
    assert_eq!(shown_role("ap-south", ap, Some("eu-west")), "Standby");

    // Streaming from another standby (cascading): as read, nothing said.
    let cascading = readings(vec![
        ("eu-west", primary(6_000, &[("us-east", 6_000, None)])),
        ("us-east", streaming(6_000, Some(99))),
        ("ap-south", streaming(6_000, Some(99))),
    ]);
    let (lags, _) = super::super::replication::lags(&cascading, None, at(100));
    assert_eq!(lags["ap-south"].problem, None);
    assert_eq!(lags["ap-south"].bytes, Some(0));
}

fn streaming(replayed: u64, last_commit: Option<i64>) -> DbReading {
    DbReading::Standby {
        received: replayed,
        replayed,
        last_replayed_commit: last_commit.map(at),
        streaming: true,
    }
}

#[test]
fn a_primary_on_an_older_timeline_is_never_taken_for_the_live_one() {
    // eu-west was promoted (timeline 2); us-east's old primary (timeline
    // 1) comes back not fenced yet while eu-west's reading fails once:
    // the data is still measured against eu-west.
    let last = PrimaryMark {
        region: "eu-west".into(),
        position: 9_000,
        at: at(0),
        restored_horizon: None,
        timeline: Some(2),
    };
    let old = on_timeline(primary(5_000, &[]), 1);
    let all = readings(vec![
        ("us-east", old.clone()),
        ("eu-west", DbReading::Unreadable("timeout".into())),
        ("ap-south", streaming(9_000, Some(0))),
    ]);
    let (read, mark) = lags(&all, Some(&last), at(1));
    assert_eq!(mark.as_ref(), Some(&last));
    assert_eq!(read["us-east"].role, DbRole::Primary);
    assert!(read["us-east"].parted, "an old history: never promoted");
    // Both read, both taking writes: the higher timeline is the live one.
    let new = on_timeline(primary(9_500, &[("ap-south", 9_500, None)]), 2);
    let all = readings(vec![
        ("us-east", old.clone()),
        ("eu-west", new.clone()),
        ("ap-south", streaming(9_500, Some(1))),
    ]);
    let (_, mark) = lags(&all, Some(&last), at(2));
    assert_eq!(mark.unwrap().region, "eu-west");
    // Promoted by someone else while the old one is not read (a person,
    // another HA tool, an operator restarted before its status said so):
    // the higher timeline is followed at once.
    let stale = PrimaryMark {
        region: "us-east".into(),
        position: 5_000,
        timeline: Some(1),
        ..last.clone()
    };
    let all = readings(vec![
        ("us-east", DbReading::Unreadable("refused".into())),
        ("eu-west", new),
        ("ap-south", streaming(9_500, Some(1))),
    ]);
    let (_, mark) = lags(&all, Some(&stale), at(3));
    assert_eq!(mark.unwrap().region, "eu-west");
    // Two writers on one timeline (or unknown ones): neither is trusted.
    let twin = on_timeline(primary(9_400, &[]), 2);
    let all = readings(vec![
        ("us-east", twin),
        ("eu-west", on_timeline(primary(9_500, &[]), 2)),
    ]);
    let (_, mark) = lags(&all, Some(&last), at(4));
    assert_eq!(mark.as_ref(), Some(&last), "kept");
}
