//! Health: one round per (app, region), and the threshold state machine that
//! turns rounds into Healthy / Unhealthy. The same state machine judges a
//! Region's own API-server probes.

use jiff::Timestamp;

pub use crate::api::Health;
use crate::api::Role;

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

/// Applies one round. From Unknown the first round decides directly (and
/// saturates its counter); otherwise the state flips after `failure` failed or `success` good rounds
/// in a row.
pub fn step(prev: Counters, passed: bool, t: Thresholds, now: Timestamp) -> Counters {
    let failure = t.failure.max(1);
    let success = t.success.max(1);
    let (failures, successes) = match (prev.health, passed) {
        // The first verdict counts as the whole threshold: the counters
        // read as they would after it, so they are not written once more
        // for every round up to the threshold.
        (Health::Unknown, true) => (0, success),
        (Health::Unknown, false) => (failure, 0),
        (_, true) => (0, (prev.successes + 1).min(success)),
        (_, false) => ((prev.failures + 1).min(failure), 0),
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
    /// The last probe got no answer: connection refused, reset or timed
    /// out; with why. Evidence that the control plane is down.
    Unreachable(String),
    /// The API server answered, but with an error that says nothing about
    /// the region serving: 429 (API Priority and Fairness), 5xx (an etcd
    /// leader change, a rolling upgrade), 401 or 403 (a credential or RBAC
    /// change). No evidence either way.
    Troubled { code: u16, message: String },
    /// No Region object of that name (deleted on the hub).
    NotFound,
    /// The kubeconfig Secret is missing or unusable; with why. A hub-side
    /// problem, not the region's.
    NoCredentials(String),
    /// Not probed yet since the operator started.
    Unknown,
}

/// A replication lag reported on the standby's Deployment.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LagReport {
    /// The lag as written (any number; judged by [`LagReport::valid`]).
    pub seconds: f64,
    /// When the reporter measured it
    /// (`multiregion.io/replication-lag-observed-at`), if it said.
    pub observed_at: Option<Timestamp>,
}

/// Lag reports older than this are unreported: their reporter stopped.
pub const LAG_REPORT_MAX_AGE_SECONDS: i64 = 60;

impl LagReport {
    /// The lag, when the report can be believed at `now`: finite, not
    /// negative, dated, and at most [`LAG_REPORT_MAX_AGE_SECONDS`] old (a
    /// few seconds ahead of `now` is allowed for clock skew).
    pub fn valid(&self, now: Timestamp) -> Option<f64> {
        let at = self.observed_at?;
        let age = now.as_second() - at.as_second();
        let fresh = (-LAG_SKEW_SECONDS..=LAG_REPORT_MAX_AGE_SECONDS).contains(&age);
        (self.seconds.is_finite() && self.seconds >= 0.0 && fresh).then_some(self.seconds)
    }
}

/// How far ahead of the operator's clock a lag report may be dated.
const LAG_SKEW_SECONDS: i64 = 5;

/// What the operator knows of the app's Deployment in one region.
#[derive(Clone, Debug, PartialEq)]
pub enum WorkloadState {
    /// The region's objects have not been listed yet.
    Unknown,
    /// The region's watch has not heard from its server (no event, no
    /// bookmark, no successful list) for this many seconds: what it holds
    /// may be out of date.
    Stale { silent_seconds: u64 },
    /// No Deployment placed yet (or it was deleted and is placed again).
    Missing,
    /// The placed Deployment.
    Placed {
        /// `spec.replicas` of the Deployment as placed.
        replicas: i32,
        /// `status.readyReplicas`.
        ready: i32,
        /// Replication lag read from the Deployment's annotations, if any.
        lag: Option<LagReport>,
        /// A create, scale-up or rollout is still progressing (the
        /// Deployment's Progressing condition says so, or its controller has
        /// not seen the latest spec yet). Excuses missing readiness only in
        /// a region never judged yet or just scaled up (`startupSeconds`).
        rolling_out: bool,
        /// The `multiregion.io/role` label the operator last gave it: what
        /// the operator wrote, readable even when the status is lost.
        role: Option<Role>,
    },
}

/// What placing the app in a region last ran into. It blocks promotion
/// into the region (nothing can be placed or scaled there); it is not
/// evidence that the region stopped serving.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PlacementProblem {
    /// A same-named object exists that the operator did not create.
    Conflict(String),
    /// The member API server refused the placed objects; its message.
    Refused(String),
}

impl PlacementProblem {
    pub fn message(&self) -> &str {
        match self {
            PlacementProblem::Conflict(m) | PlacementProblem::Refused(m) => m,
        }
    }
}

/// What the HTTP check of the region's endpoint says: the data plane's
/// evidence, independent of the operator's view of the API server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HttpResult {
    /// The app has no HTTP check.
    NotChecked,
    /// A check is configured but has no result yet.
    Pending,
    /// The endpoint answered as configured (2xx by default) in time.
    Serves,
    /// The endpoint did not answer well; why.
    Fails(String),
    /// The check cannot run for a reason on the hub's side (its CA bundle
    /// ConfigMap missing or unusable); why. No evidence about the region.
    Misconfigured(String),
}

/// Ready replicas needed: ceil(minReadyRatio * desired).
pub fn ready_needed(min_ready_ratio: f64, desired: i32) -> i32 {
    if desired <= 0 {
        return 0;
    }
    let needed = (min_ready_ratio * desired as f64 - 1e-9).ceil() as i32;
    needed.clamp(1, desired)
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
    fn the_first_verdict_saturates_its_counter_so_the_next_round_changes_nothing() {
        for passed in [true, false] {
            let first = step(Counters::UNKNOWN, passed, T, at(0));
            assert_eq!(
                (first.failures, first.successes),
                if passed {
                    (0, T.success)
                } else {
                    (T.failure, 0)
                }
            );
            assert_eq!(step(first, passed, T, at(1)), first, "passed {passed}");
        }
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
    fn lag_reports_are_believed_only_when_finite_positive_dated_and_fresh() {
        let now = at(1000);
        let report = |seconds: f64, observed: Option<i64>| LagReport {
            seconds,
            observed_at: observed.map(at),
        };
        assert_eq!(report(2.5, Some(990)).valid(now), Some(2.5));
        assert_eq!(report(0.0, Some(1000)).valid(now), Some(0.0));
        assert_eq!(report(0.0, Some(1003)).valid(now), Some(0.0), "skew");
        assert_eq!(report(-1.0, Some(990)).valid(now), None, "negative");
        assert_eq!(report(f64::NEG_INFINITY, Some(990)).valid(now), None);
        assert_eq!(report(f64::NAN, Some(990)).valid(now), None);
        assert_eq!(report(0.0, None).valid(now), None, "undated");
        assert_eq!(report(0.0, Some(900)).valid(now), None, "stale");
        assert_eq!(report(0.0, Some(1100)).valid(now), None, "future");
    }
}
