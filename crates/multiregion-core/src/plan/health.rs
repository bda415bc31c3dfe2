//! Health: one round per (app, region), and the threshold state machine that
//! turns rounds into Healthy / Unhealthy. The same state machine judges a
//! Region's own API-server probes.

use jiff::Timestamp;

pub use crate::api::Health;
use crate::api::{Reason, Role};

/// Consecutive failures / successes needed to change state (both >= 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Thresholds {
    pub failure: i32,
    pub success: i32,
}

/// The state machine's memory, kept in status so a restart resumes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Counters {
    pub health: Health,
    /// Failed rounds in a row, saturating at the failure threshold so a
    /// steady state writes nothing.
    pub failures: i32,
    /// Good rounds in a row, saturating at the success threshold.
    pub successes: i32,
    /// When `health` last changed.
    pub since: Option<Timestamp>,
}

impl Counters {
    pub const UNKNOWN: Counters = Counters {
        health: Health::Unknown,
        failures: 0,
        successes: 0,
        since: None,
    };
}

/// Applies one round. From Unknown the first round decides directly;
/// otherwise the state flips after `failure` failed or `success` good rounds
/// in a row.
pub fn step(prev: Counters, passed: bool, t: Thresholds, now: Timestamp) -> Counters {
    let failure = t.failure.max(1);
    let success = t.success.max(1);
    let (failures, successes) = if passed {
        (0, (prev.successes + 1).min(success))
    } else {
        ((prev.failures + 1).min(failure), 0)
    };
    let health = match (prev.health, passed) {
        (Health::Unknown, true) => Health::Healthy,
        (Health::Unknown, false) => Health::Unhealthy,
        (Health::Unhealthy, true) if successes >= success => Health::Healthy,
        (Health::Healthy, false) if failures >= failure => Health::Unhealthy,
        (current, _) => current,
    };
    let since = if health != prev.health {
        Some(now)
    } else {
        prev.since
    };
    Counters {
        health,
        failures,
        successes,
        since,
    }
}

/// What the operator knows of a Region at the moment of a round.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RegionState {
    /// Probes pass (the Region's state machine says Reachable).
    Reachable,
    /// The last probe failed, or the Region is Unreachable; with why.
    Unreachable(String),
    /// No Region object of that name.
    NotFound,
    /// The kubeconfig Secret is missing or unusable; with why.
    NoCredentials(String),
    /// Not probed yet since the operator started.
    Unknown,
}

/// What the operator knows of the app's Deployment in one region.
#[derive(Clone, Debug, PartialEq)]
pub enum WorkloadState {
    /// The region's objects have not been listed yet.
    Unknown,
    /// No Deployment placed yet (or it was deleted and is placed again).
    Missing,
    /// A same-named object exists that the operator did not create.
    Conflict(String),
    /// The member API server refused the placed objects; its message.
    Refused(String),
    /// The placed Deployment.
    Placed {
        /// `spec.replicas` of the Deployment as placed.
        replicas: i32,
        /// `status.readyReplicas`.
        ready: i32,
        /// Replication lag read from the Deployment's annotation, if any.
        lag_seconds: Option<f64>,
        /// A create, scale-up or rollout is still progressing (the
        /// Deployment's Progressing condition says so, or its controller has
        /// not seen the latest spec yet). Not counted against readiness
        /// until it completes or exceeds its progress deadline.
        rolling_out: bool,
        /// The `multiregion.io/role` label the operator last gave it: what
        /// the operator wrote, readable even when the status is lost.
        role: Option<Role>,
    },
}

/// What the HTTP check of the region's endpoint says: the data plane's
/// evidence, independent of the operator's view of the API server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HttpResult {
    /// The app has no HTTP check.
    NotChecked,
    /// A check is configured but has no result yet.
    Pending,
    /// The endpoint answered 2xx or 3xx in time.
    Serves,
    /// The endpoint did not answer well; why.
    Fails(String),
}

/// The outcome of one health round for an (app, region) pair.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Round {
    Passed,
    /// Passed on the data plane's evidence alone: the endpoint serves, but
    /// the operator cannot reach the region's API server. Traffic stays;
    /// nothing is placed or scaled there until it answers again.
    Degraded {
        reason: Reason,
        message: String,
    },
    Failed {
        reason: Reason,
        message: String,
    },
    /// Nothing to judge yet (the region was not probed or listed since the
    /// operator started): the counters stay as they are, so a restart never
    /// flips traffic by itself.
    Skipped,
}

/// Ready replicas needed: ceil(minReadyRatio * desired).
pub fn ready_needed(min_ready_ratio: f64, desired: i32) -> i32 {
    if desired <= 0 {
        return 0;
    }
    let needed = (min_ready_ratio * desired as f64 - 1e-9).ceil() as i32;
    needed.clamp(1, desired)
}

/// Judges one round: the Region must be reachable, the Deployment must have
/// enough ready replicas, and the HTTP check (if any) must pass. The first
/// check that fails gives the reason.
///
/// When the operator cannot reach the region's API server, the HTTP check
/// decides: if it passes, the region still serves and the round passes as
/// `Degraded` (losing contact never moves traffic away from a region that
/// serves); without an HTTP check there is no other evidence, and the round
/// fails.
pub fn judge(
    region: &RegionState,
    workload: &WorkloadState,
    http: &HttpResult,
    min_ready_ratio: f64,
) -> Round {
    let fail = |reason: Reason, message: String| Round::Failed { reason, message };
    match region {
        RegionState::Reachable => {}
        RegionState::Unreachable(why) => {
            return out_of_contact(Reason::RegionUnreachable, why, http);
        }
        RegionState::NoCredentials(why) => {
            return out_of_contact(Reason::RegionCredentialsInvalid, why, http);
        }
        RegionState::NotFound => {
            return fail(
                Reason::RegionNotFound,
                "no Region of this name exists".into(),
            );
        }
        RegionState::Unknown => return Round::Skipped,
    }
    if let Some(round) = judge_workload(workload, min_ready_ratio) {
        return round;
    }
    match http {
        HttpResult::Fails(why) => fail(Reason::HttpProbeFailed, why.clone()),
        _ => Round::Passed,
    }
}

/// A round for a region whose API server the operator cannot reach: the
/// HTTP check, when there is one, decides.
fn out_of_contact(reason: Reason, why: &str, http: &HttpResult) -> Round {
    match http {
        HttpResult::Serves => Round::Degraded {
            reason: Reason::ControlPlaneUnreachable,
            message: format!("{why}; the endpoint still serves, so traffic stays"),
        },
        HttpResult::Fails(check) => Round::Failed {
            reason,
            message: format!("{why}; and the HTTP check fails: {check}"),
        },
        // The check has not answered yet: wait for the data plane's word.
        HttpResult::Pending => Round::Skipped,
        HttpResult::NotChecked => Round::Failed {
            reason,
            message: why.to_string(),
        },
    }
}

/// The workload's part of a round: None when it passes.
fn judge_workload(workload: &WorkloadState, min_ready_ratio: f64) -> Option<Round> {
    let fail = |reason: Reason, message: String| Some(Round::Failed { reason, message });
    match workload {
        // Not listed yet, or not placed yet (the apply step creates it next):
        // nothing to judge, so a new app does not start out Unhealthy.
        WorkloadState::Unknown | WorkloadState::Missing => Some(Round::Skipped),
        WorkloadState::Conflict(why) => fail(Reason::Conflict, why.clone()),
        WorkloadState::Refused(why) => fail(Reason::PlacementRefused, why.clone()),
        WorkloadState::Placed {
            replicas,
            ready,
            rolling_out,
            ..
        } => {
            let needed = ready_needed(min_ready_ratio, *replicas);
            if *ready >= needed {
                None
            } else if *rolling_out {
                // Pods still starting after a create or scale-up: judging
                // them now would fail a just-promoted standby.
                Some(Round::Skipped)
            } else {
                fail(
                    Reason::NotEnoughReadyReplicas,
                    format!("{ready}/{replicas} replicas ready, {needed} needed"),
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + s).unwrap()
    }

    const T: Thresholds = Thresholds {
        failure: 3,
        success: 2,
    };

    fn run(rounds: &[bool]) -> Vec<Health> {
        let mut c = Counters::UNKNOWN;
        rounds
            .iter()
            .enumerate()
            .map(|(i, ok)| {
                c = step(c, *ok, T, at(i as i64));
                c.health
            })
            .collect()
    }

    #[test]
    fn first_round_decides_from_unknown() {
        assert_eq!(run(&[true]), [Health::Healthy]);
        assert_eq!(run(&[false]), [Health::Unhealthy]);
    }

    #[test]
    fn failure_threshold_rounds_in_a_row_make_unhealthy() {
        use Health::*;
        assert_eq!(
            run(&[true, false, false, true, false, false, false]),
            [
                Healthy, Healthy, Healthy, Healthy, Healthy, Healthy, Unhealthy
            ]
        );
    }

    #[test]
    fn success_threshold_rounds_in_a_row_make_healthy() {
        use Health::*;
        assert_eq!(
            run(&[false, true, false, true, true]),
            [Unhealthy, Unhealthy, Unhealthy, Unhealthy, Healthy]
        );
    }

    #[test]
    fn counters_saturate_and_since_marks_the_flip() {
        let mut c = Counters::UNKNOWN;
        for i in 0..10 {
            c = step(c, false, T, at(i));
        }
        assert_eq!((c.failures, c.successes), (3, 0));
        assert_eq!(c.since, Some(at(0)));
        c = step(c, true, T, at(10));
        c = step(c, true, T, at(11));
        assert_eq!(c.health, Health::Healthy);
        assert_eq!(c.since, Some(at(11)));
        let same = step(c, true, T, at(12));
        assert_eq!(same, c, "a steady healthy state does not change");
    }

    #[test]
    fn ready_needed_rounds_up() {
        assert_eq!(ready_needed(0.5, 3), 2);
        assert_eq!(ready_needed(0.5, 4), 2);
        assert_eq!(ready_needed(1.0, 3), 3);
        assert_eq!(ready_needed(0.01, 3), 1);
        assert_eq!(ready_needed(0.5, 0), 0);
    }

    #[test]
    fn judge_reports_the_first_failing_check() {
        let placed = |ready| WorkloadState::Placed {
            replicas: 3,
            ready,
            lag_seconds: None,
            rolling_out: false,
            role: None,
        };
        let http_bad = HttpResult::Fails("503".to_string());
        let none = HttpResult::NotChecked;
        type Case<'a> = (RegionState, WorkloadState, &'a HttpResult, &'a str);
        let cases: Vec<Case> = vec![
            (
                RegionState::Unreachable("refused".into()),
                placed(3),
                &none,
                "RegionUnreachable",
            ),
            (RegionState::NotFound, placed(3), &none, "RegionNotFound"),
            (
                RegionState::NoCredentials("no secret".into()),
                placed(3),
                &none,
                "RegionCredentialsInvalid",
            ),
            (
                RegionState::Reachable,
                WorkloadState::Conflict("x".into()),
                &none,
                "Conflict",
            ),
            (
                RegionState::Reachable,
                WorkloadState::Refused("quota".into()),
                &none,
                "PlacementRefused",
            ),
            (
                RegionState::Reachable,
                placed(1),
                &none,
                "NotEnoughReadyReplicas",
            ),
            (
                RegionState::Reachable,
                placed(2),
                &http_bad,
                "HttpProbeFailed",
            ),
            (RegionState::Reachable, placed(2), &none, ""),
        ];
        for (region, workload, http, want) in cases {
            let got = judge(&region, &workload, http, 0.5);
            match got {
                Round::Failed { reason, .. } => {
                    assert_eq!(reason.as_str(), want, "{region:?} {workload:?}")
                }
                Round::Passed => assert_eq!(want, "", "{region:?} {workload:?}"),
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    #[test]
    fn out_of_contact_the_endpoint_decides() {
        let placed = WorkloadState::Placed {
            replicas: 3,
            ready: 0,
            lag_seconds: None,
            rolling_out: false,
            role: None,
        };
        let unreachable = RegionState::Unreachable("connection refused".into());
        let no_credentials = RegionState::NoCredentials("Secret gone".into());
        for region in [&unreachable, &no_credentials] {
            // The endpoint serves: traffic stays, the region is degraded, and
            // its stale readiness is not held against it.
            match judge(region, &placed, &HttpResult::Serves, 0.5) {
                Round::Degraded { reason, message } => {
                    assert_eq!(reason, Reason::ControlPlaneUnreachable);
                    assert!(message.contains("still serves"), "{message}");
                }
                other => panic!("{region:?}: {other:?}"),
            }
            // The endpoint fails too: the region fails.
            assert!(matches!(
                judge(region, &placed, &HttpResult::Fails("timeout".into()), 0.5),
                Round::Failed { .. }
            ));
            // No word from the endpoint yet: wait for it.
            assert_eq!(
                judge(region, &placed, &HttpResult::Pending, 0.5),
                Round::Skipped
            );
        }
        // No HTTP check: unreachability is the only evidence, and it fails.
        assert!(matches!(
            judge(&unreachable, &placed, &HttpResult::NotChecked, 0.5),
            Round::Failed {
                reason: Reason::RegionUnreachable,
                ..
            }
        ));
    }

    #[test]
    fn pods_still_starting_are_not_judged() {
        let starting = WorkloadState::Placed {
            replicas: 3,
            ready: 0,
            lag_seconds: None,
            rolling_out: true,
            role: None,
        };
        assert_eq!(
            judge(
                &RegionState::Reachable,
                &starting,
                &HttpResult::NotChecked,
                0.5
            ),
            Round::Skipped
        );
    }

    #[test]
    fn a_standby_with_zero_replicas_passes_readiness() {
        let w = WorkloadState::Placed {
            replicas: 0,
            ready: 0,
            lag_seconds: None,
            rolling_out: false,
            role: None,
        };
        assert_eq!(
            judge(&RegionState::Reachable, &w, &HttpResult::NotChecked, 0.5),
            Round::Passed
        );
    }

    #[test]
    fn nothing_is_judged_before_the_first_probe_listing_or_placement() {
        let w = WorkloadState::Missing;
        assert_eq!(
            judge(&RegionState::Unknown, &w, &HttpResult::NotChecked, 0.5),
            Round::Skipped
        );
        assert_eq!(
            judge(&RegionState::Reachable, &w, &HttpResult::NotChecked, 0.5),
            Round::Skipped
        );
        assert_eq!(
            judge(
                &RegionState::Reachable,
                &WorkloadState::Unknown,
                &HttpResult::NotChecked,
                0.5
            ),
            Round::Skipped
        );
    }
}
