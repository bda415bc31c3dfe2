//! Failure judged on evidence, over whole decisions: what a member's
//! errors, the hub's mistakes, a rollout, a silent watch and a lag report
//! do to traffic.

use super::*;

fn troubled(code: u16) -> Observation {
    Observation {
        region: RegionState::Troubled {
            code,
            message: "the server is currently unable to handle the request".into(),
        },
        ..up(3, 3)
    }
}

fn active(sim: &Sim) -> Option<&str> {
    sim.status.active_region.as_deref()
}

#[test]
fn a_member_answering_429_then_503_keeps_its_traffic_until_unknown_seconds() {
    let mut sim = Sim::new(spec(json!({"healthCheck": {"unknownSeconds": 30}})));
    sim.round(&[]);
    sim.round(&[]);
    assert_eq!(active(&sim), Some("us-east"));
    for i in 0..29 {
        let code = if i < 15 { 429 } else { 503 };
        sim.round(&[("us-east", troubled(code))]);
        assert_eq!(sim.weights(), "us-east=100 eu-west=0", "round {i}");
        assert_eq!(sim.region("us-east").consecutive_failures, 0);
    }
    let unknown = sim.region("us-east").unknown.clone().unwrap();
    assert_eq!(unknown.cause, "MemberTroubled");
    assert!(unknown.message.contains("503"), "{}", unknown.message);
    // Past the bound each further round counts: no failure is skipped for
    // ever.
    for _ in 0..4 {
        sim.round(&[("us-east", troubled(503))]);
    }
    assert_eq!(active(&sim), Some("eu-west"));
    assert_eq!(
        sim.region("us-east").reason.as_ref().map(Reason::as_str),
        Some("EvidenceUnknown")
    );
}

#[test]
fn a_member_answering_errors_keeps_its_traffic_while_its_http_check_passes() {
    let mut sim = Sim::new(spec(json!({"healthCheck": {"unknownSeconds": 5}})));
    let serving = |code| Observation {
        http: HttpResult::Serves,
        ..troubled(code)
    };
    sim.round(&[]);
    for code in [429, 500, 503, 401, 403].repeat(10) {
        sim.round(&[("us-east", serving(code))]);
        assert_eq!(sim.weights(), "us-east=100 eu-west=0");
    }
    assert_eq!(
        sim.region("us-east").reason.as_ref().map(Reason::as_str),
        Some("ControlPlaneUnreachable")
    );
}

#[test]
fn an_unusable_secret_never_counts_against_the_region() {
    let mut sim = Sim::new(spec(json!({"healthCheck": {"unknownSeconds": 5}})));
    sim.round(&[]);
    let no_credentials = Observation {
        region: RegionState::NoCredentials("Secret us-east-kubeconfig: key missing".into()),
        ..up(3, 3)
    };
    for _ in 0..100 {
        sim.round(&[("us-east", no_credentials.clone())]);
    }
    assert_eq!(sim.weights(), "us-east=100 eu-west=0");
    assert_eq!(sim.region("us-east").health, Health::Healthy);
}

#[test]
fn a_rollout_does_not_hide_an_active_that_dies() {
    // A config push rolls every region; the active's pods then stop being
    // ready. It fails over within the failure threshold.
    let mut sim = Sim::new(spec(json!({})));
    sim.round(&[]);
    sim.round(&[]);
    let rolling = |replicas, ready| Observation {
        workload: WorkloadState::Placed {
            replicas,
            ready,
            lag: None,
            rolling_out: true,
            role: None,
        },
        ..up(replicas, ready)
    };
    for _ in 0..3 {
        sim.round(&[("us-east", rolling(3, 0)), ("eu-west", rolling(1, 1))]);
    }
    assert_eq!(active(&sim), Some("eu-west"));
}

#[test]
fn a_silent_watch_is_unknown_then_counted() {
    let mut sim = Sim::new(spec(json!({"healthCheck": {"unknownSeconds": 10}})));
    sim.round(&[]);
    sim.round(&[]);
    let silent = Observation {
        workload: WorkloadState::Stale {
            silent_seconds: 120,
        },
        ..up(3, 3)
    };
    for _ in 0..9 {
        sim.round(&[("us-east", silent.clone())]);
    }
    assert_eq!(active(&sim), Some("us-east"));
    for _ in 0..4 {
        sim.round(&[("us-east", silent.clone())]);
    }
    assert_eq!(active(&sim), Some("eu-west"));
}

#[test]
fn a_degraded_standby_is_promoted_only_when_no_other_can_be() {
    let regions =
        json!({"regions": [{"name": "us-east"}, {"name": "eu-west"}, {"name": "ap-south"}]});
    let degraded = || Observation {
        http: HttpResult::Serves,
        ..down()
    };
    // eu-west is preferred but out of reach: ap-south, which answers, wins.
    let mut sim = Sim::new(spec(regions.clone()));
    sim.round(&[]);
    sim.round(&[]);
    for _ in 0..3 {
        sim.round(&[("us-east", down()), ("eu-west", degraded())]);
    }
    assert_eq!(active(&sim), Some("ap-south"));
    // No region answers but a degraded one: it is promoted, and an Event
    // says so.
    let mut sim = Sim::new(spec(regions));
    sim.round(&[]);
    sim.round(&[]);
    let mut events = Vec::new();
    for _ in 0..3 {
        let d = sim.round(&[
            ("us-east", down()),
            ("eu-west", degraded()),
            ("ap-south", down()),
        ]);
        events.extend(d.events.iter().map(|e| e.reason.as_str()));
    }
    assert_eq!(active(&sim), Some("eu-west"));
    assert!(events.contains(&"PromotedDegraded"), "{events:?}");
}

#[test]
fn a_placement_refused_blocks_promotion_but_fails_no_region() {
    let mut sim = Sim::new(spec(json!({})));
    sim.round(&[]);
    sim.round(&[]);
    let refused = |o: Observation| Observation {
        placement: Some(PlacementProblem::Refused("exceeded quota".into())),
        ..o
    };
    for _ in 0..10 {
        sim.round(&[("us-east", refused(up(3, 3)))]);
    }
    assert_eq!(active(&sim), Some("us-east"), "the active serves: it stays");
    for _ in 0..3 {
        sim.round(&[("us-east", down()), ("eu-west", refused(up(1, 1)))]);
    }
    assert_eq!(active(&sim), Some("us-east"), "nowhere to promote");
    let blocked = sim
        .status
        .conditions
        .iter()
        .find(|c| c.type_ == "PromotionBlocked")
        .unwrap();
    assert_eq!(
        (blocked.status.as_str(), blocked.reason.as_str()),
        ("True", "PlacementRefused")
    );
}

#[test]
fn lag_reports_that_cannot_be_believed_block_promotion() {
    let replication = json!({"failover": {"replication": {"maxLagSeconds": 30}}});
    let report = |seconds: f64, observed: Option<i64>| LagReport {
        seconds,
        observed_at: observed.map(at),
    };
    let cases = [
        ("negative", report(-1.0, None), false),
        ("-inf", report(f64::NEG_INFINITY, None), false),
        ("undated", report(0.0, None), false),
        ("stale", report(0.0, Some(-3600)), false),
        ("fresh", report(0.0, Some(REPORTED_NOW)), true),
    ];
    for (what, lag, promoted) in cases {
        let mut sim = Sim::new(spec(replication.clone()));
        sim.round(&[]);
        sim.round(&[]);
        // Dated cases get a date near the round's; the others keep theirs.
        let lag = match lag.observed_at {
            Some(t) if t == at(-3600) => LagReport {
                observed_at: Some(at(sim.now - 3600)),
                ..lag
            },
            _ => lag,
        };
        for _ in 0..3 {
            sim.round(&[("us-east", down()), ("eu-west", up(1, 1).with_lag(lag))]);
        }
        let to = if promoted { "eu-west" } else { "us-east" };
        assert_eq!(active(&sim), Some(to), "{what}");
    }
}

#[test]
fn a_standby_the_hub_cannot_reach_is_never_promoted() {
    let mut sim = Sim::new(spec(json!({})));
    sim.round(&[]);
    sim.round(&[]);
    let deleted = Observation {
        region: RegionState::NotFound,
        ..up(1, 1)
    };
    for _ in 0..5 {
        sim.round(&[("us-east", down()), ("eu-west", deleted.clone())]);
    }
    assert_eq!(
        active(&sim),
        Some("us-east"),
        "nothing could scale eu-west up: it stays Healthy but is no target"
    );
}

#[test]
fn a_failed_region_recovers_only_once_its_api_server_answers() {
    let mut sim = Sim::new(spec(json!({"healthCheck": {"http": {"path": "/healthz"}}})));
    let serving = |region: RegionState| Observation {
        region,
        http: HttpResult::Serves,
        ..up(3, 3)
    };
    let failing = Observation {
        http: HttpResult::Fails("connection refused".into()),
        ..down()
    };
    sim.round(&[]);
    for _ in 0..4 {
        sim.round(&[("us-east", failing.clone())]);
    }
    assert_eq!(active(&sim), Some("eu-west"));
    assert_eq!(sim.region("us-east").health, Health::Unhealthy);
    // Its endpoint comes back before its API server: nothing can be placed
    // or scaled there yet, so it stays Unhealthy.
    let endpoint_only = serving(RegionState::Unreachable("connection refused".into()));
    for _ in 0..5 {
        sim.round(&[("us-east", endpoint_only.clone())]);
        assert_eq!(sim.region("us-east").health, Health::Unhealthy);
    }
    // Its API server answers: now the good rounds count.
    for _ in 0..3 {
        sim.round(&[("us-east", serving(RegionState::Reachable))]);
    }
    assert_eq!(sim.region("us-east").health, Health::Healthy);
}
