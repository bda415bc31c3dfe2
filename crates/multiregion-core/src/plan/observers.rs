//! Several vantage points, one verdict. With the hub spread over the
//! regions every operator replica observes every region from its own region
//! and publishes what it sees; this file holds the two rules that turn
//! those views into decisions (`docs/design.md`, "No region is special"):
//!
//! - **A majority decides failure.** A region (or an app in a region)
//!   counts as failed only when a majority of the live observers have seen
//!   it failing for the whole hold (`failureThreshold` rounds). A leader
//!   that alone lost sight of a region moves nothing; with one observer the
//!   rule is the single-replica rule.
//! - **A cut-off region fences itself first.** A replica that cannot renew
//!   its observer Lease for `selfFenceSeconds` fences the apps active in its
//!   own region; the majority promotes elsewhere only once that region's
//!   observers have been expired for `selfFenceSeconds` plus the allowed
//!   clock skew. A region with no observer cannot fence itself, and the
//!   promotion says so.
//!
//! Pure: the times are inputs (the observers' Lease renewals as the hub
//! stored them, and `now`).

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

use super::evidence::{Evidence, UnknownCause};
use crate::api::Reason;

/// How far two replicas' clocks may disagree. Lease renewal times are
/// written by each replica's clock and read by another's: every deadline
/// that compares them waits this much longer.
pub const ALLOWED_CLOCK_SKEW: Duration = Duration::from_secs(2);

/// One operator replica as an observer: its observer Lease.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observer {
    /// The replica's identity (its Lease's holder).
    pub identity: String,
    /// The region it runs in, if it said (`multiregion run --region`).
    pub region: Option<String>,
    /// When it last renewed its observer Lease.
    pub renewed: Timestamp,
    /// Its Lease duration: past `renewed + lease` it is not live.
    pub lease: Duration,
}

impl Observer {
    /// When its Lease runs out, unless renewed.
    pub fn expires(&self) -> Timestamp {
        self.renewed + signed(self.lease)
    }

    /// Renewed recently enough to count, allowing for clock skew.
    pub fn live(&self, now: Timestamp) -> bool {
        now <= self.expires() + signed(ALLOWED_CLOCK_SKEW)
    }
}

/// What one observer last published of one region (or one app in it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Seen {
    /// Its last rounds were good.
    Serving,
    /// Failing rounds in a row since `since` (the first of them).
    Failing { since: Timestamp },
    /// Nothing either way (not probed yet, or only Unknown evidence).
    Unknown,
}

/// One observer's word on the region being judged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    pub observer: Observer,
    pub seen: Seen,
}

/// The observers' verdict on one region (or one app in a region).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// A majority of the live observers have seen it failing for the
    /// whole hold: it counts as failed. `by` names them.
    Failed { by: Vec<String> },
    /// Some live observers see it failing, not (yet) a majority for the
    /// hold: nothing moves. Names on each side, and how many are needed.
    Disputed {
        failing: Vec<String>,
        others: Vec<String>,
        needed: usize,
    },
    /// No live observer sees it failing.
    Serving,
}

/// A majority of `live`: more than half.
pub fn majority(live: usize) -> usize {
    live / 2 + 1
}

/// The verdict of the live observers among `reports` on one region: failed
/// only when a majority of them have seen it failing for at least `hold`
/// (`failureThreshold` rounds of `intervalSeconds`). Observers whose Lease
/// ran out do not count either way.
pub fn judge(reports: &[Report], hold: Duration, now: Timestamp) -> Verdict {
    let live: Vec<&Report> = reports.iter().filter(|r| r.observer.live(now)).collect();
    let held = |r: &&Report| match r.seen {
        Seen::Failing { since } => since + signed(hold) <= now,
        _ => false,
    };
    let failing_now = |r: &&Report| matches!(r.seen, Seen::Failing { .. });
    let names = |keep: &dyn Fn(&&Report) -> bool| -> Vec<String> {
        live.iter()
            .filter(|r| keep(r))
            .map(|r| r.observer.identity.clone())
            .collect()
    };
    let needed = majority(live.len());
    let by = names(&held);
    if !live.is_empty() && by.len() >= needed {
        return Verdict::Failed { by };
    }
    let failing = names(&failing_now);
    if failing.is_empty() {
        return Verdict::Serving;
    }
    Verdict::Disputed {
        others: names(&|r| !failing_now(r)),
        failing,
        needed,
    }
}

/// What the live observers see of one region now, by identity.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Sightings {
    /// Its API server answers them.
    pub serving: Vec<String>,
    /// They cannot reach its API server (refused, timed out).
    pub failing: Vec<String>,
    /// Nothing either way (not probed yet, or only troubled answers).
    pub unknown: Vec<String>,
    /// The latest start of the failing observers' runs of failures: since
    /// when every one of them sees it failing. The promotion gate dates the
    /// failure by it, so one observer's older run (a path of its own that
    /// failed earlier, a view it could not publish while cut off) never
    /// makes a renewal from before the real failure look like one after it.
    pub failing_since: Option<Timestamp>,
    /// When each failing observer's run of failures began (as `failing`).
    pub failing_runs: Vec<Timestamp>,
}

impl Sightings {
    /// The live observers' word on one region; expired ones do not count.
    pub fn of_live(reports: &[Report], now: Timestamp) -> Self {
        let mut sightings = Sightings::default();
        for report in reports.iter().filter(|r| r.observer.live(now)) {
            let name = report.observer.identity.clone();
            match report.seen {
                Seen::Serving => sightings.serving.push(name),
                Seen::Failing { since } => {
                    sightings.failing.push(name);
                    sightings.failing_runs.push(since);
                    let latest = sightings.failing_since.map_or(since, |s| s.max(since));
                    sightings.failing_since = Some(latest);
                }
                Seen::Unknown => sightings.unknown.push(name),
            }
        }
        sightings
    }

    /// How many live observers there are.
    pub fn live(&self) -> usize {
        self.serving.len() + self.failing.len() + self.unknown.len()
    }

    /// A majority of several live observers have seen the region failing
    /// for at least `hold` (`failureThreshold` rounds): as many failed
    /// rounds as the threshold, seen from most of the regions. A leader
    /// that just took over then needs one failed round of its own, not the
    /// whole threshold again. Never with one observer (its own rounds
    /// count).
    pub fn held_by_majority(&self, hold: Duration, now: Timestamp) -> bool {
        let held = self
            .failing_runs
            .iter()
            .filter(|since| **since + signed(hold) <= now)
            .count();
        self.live() > 1 && held >= majority(self.live())
    }
}

/// The leader's evidence on an app in `region`, checked against the live
/// observers. Only evidence that depends on the leader's own path to the
/// region is checked: its API server (unreachable, troubled answers, a
/// silent watch), checked against `sightings`, and the app's HTTP check of
/// the region's endpoint failing, checked against `endpoint` (what the
/// observers' own checks of the same URL say). What the API server says
/// (pods not ready) is the same from everywhere it is read. With one live
/// observer or none, the leader's evidence stands (the single-replica
/// rule).
///
/// - A majority of the live observers reach it: the leader alone lost
///   sight of it, nothing counts (`ObserversSeeItServing`).
/// - The leader cannot reach it and no majority sees it failing: no round
///   counts yet, bounded like a member-side cause (`ObserversDisagree`).
/// - Else the leader's evidence stands, naming who saw it failing.
pub fn gate(
    evidence: Evidence,
    region: &str,
    sightings: Option<&Sightings>,
    endpoint: Option<&Sightings>,
) -> Evidence {
    let (seen, what) = match &evidence {
        Evidence::NotServing {
            reason: Reason::HttpProbeFailed,
            ..
        } => (endpoint, "endpoint"),
        Evidence::NotServing { reason, .. } if *reason == Reason::RegionUnreachable => {
            (sightings, "API server")
        }
        Evidence::Unknown { cause, .. } if cause.seen_from_the_leader() => {
            (sightings, "API server")
        }
        _ => return evidence,
    };
    match seen.filter(|s| s.live() > 1) {
        Some(seen) => put_to(evidence, &format!("{region}'s {what}"), seen),
        None => evidence,
    }
}

/// The leader's failing evidence on `what`, put to several live observers.
fn put_to(evidence: Evidence, what: &str, seen: &Sightings) -> Evidence {
    let needed = majority(seen.live());
    let of = |names: &[String]| {
        format!(
            "{} of {} observers ({})",
            names.len(),
            seen.live(),
            names.join(", ")
        )
    };
    if seen.serving.len() >= needed {
        return Evidence::Unknown {
            cause: UnknownCause::ObserversSeeItServing,
            message: format!(
                "{what} answers {}: only the leader's path to it fails",
                of(&seen.serving)
            ),
        };
    }
    match evidence {
        Evidence::NotServing { reason, message } if seen.failing.len() >= needed => {
            Evidence::NotServing {
                reason,
                message: format!("{message}; seen failing by {}", of(&seen.failing)),
            }
        }
        Evidence::NotServing { message, .. } => Evidence::Unknown {
            cause: UnknownCause::ObserversDisagree,
            message: format!(
                "{message}; seen failing by {} only, {needed} needed",
                of(&seen.failing)
            ),
        },
        other => other,
    }
}

/// Whether a replica must fence the apps active in its own region: it has
/// not renewed its observer Lease for `self_fence` (zero: never).
pub fn must_fence_itself(since_renewal: Duration, self_fence: Duration) -> bool {
    !self_fence.is_zero() && since_renewal >= self_fence
}

/// Whether a replica is cut off from most of the `others` regions it probes:
/// more than half of them fail. Only then is its region isolated (rather
/// than the hub broken) and may it fence itself; with no other region to
/// judge by, never.
pub fn cut_off(others: usize, failing_others: usize) -> bool {
    others > 0 && failing_others > others / 2
}

/// When the majority may promote another region in place of `region`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PromotionGate {
    /// Now: the region's observers have been gone long enough to have
    /// fenced themselves, or one of them renewed after the region started
    /// failing (it reaches the hub: the region is not cut off from it).
    Now,
    /// Not before this time: the region's replica may still be fencing.
    After(Timestamp),
    /// Now, though nothing in the region fenced it: the reason says why
    /// (no replica runs there, or the self-fence is off). Status says so.
    Unfenced(String),
}

/// The gate on promoting away from `region`, which the observers have seen
/// failing since `failing_since`; `observers` is every replica, of every
/// region, live or not.
///
/// A replica of the region that renewed its Lease after the failure began
/// (later than `failing_since` by more than the allowed skew) reaches the
/// hub: the region is not cut off from it, nothing to wait for. Otherwise
/// it may be cut off and fencing itself: promotion waits until its Lease
/// has been expired for `self_fence` plus the allowed clock skew (a dead
/// region waits as long: from outside the two look the same).
pub fn promotion_gate(
    region: &str,
    observers: &[Observer],
    self_fence: Duration,
    failing_since: Timestamp,
    now: Timestamp,
) -> PromotionGate {
    let local: Vec<&Observer> = observers
        .iter()
        .filter(|o| o.region.as_deref() == Some(region))
        .collect();
    if local.is_empty() {
        return PromotionGate::Unfenced(format!(
            "no operator replica runs in {region}: it could not fence itself"
        ));
    }
    if self_fence.is_zero() {
        return PromotionGate::Unfenced("the self-fence is off (selfFenceSeconds: 0)".into());
    }
    let skew = signed(ALLOWED_CLOCK_SKEW);
    if local.iter().any(|o| o.renewed > failing_since + skew) {
        return PromotionGate::Now;
    }
    let last = local.iter().map(|o| o.expires()).max().unwrap_or(now);
    let fenced_by = last + signed(self_fence) + skew;
    match now >= fenced_by {
        true => PromotionGate::Now,
        false => PromotionGate::After(fenced_by),
    }
}

fn signed(d: Duration) -> SignedDuration {
    SignedDuration::try_from(d).unwrap_or(SignedDuration::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + seconds).unwrap()
    }

    fn observer(name: &str, region: &str, renewed: i64) -> Observer {
        Observer {
            identity: name.into(),
            region: Some(region.into()),
            renewed: at(renewed),
            lease: Duration::from_secs(10),
        }
    }

    fn failing(name: &str, since: i64) -> Report {
        Report {
            observer: observer(name, name, 100),
            seen: Seen::Failing { since: at(since) },
        }
    }

    fn serving(name: &str) -> Report {
        Report {
            observer: observer(name, name, 100),
            seen: Seen::Serving,
        }
    }

    const HOLD: Duration = Duration::from_secs(3);

    #[test]
    fn one_observer_is_todays_rule() {
        assert_eq!(
            judge(&[failing("a", 95)], HOLD, at(100)),
            Verdict::Failed {
                by: vec!["a".into()]
            }
        );
        assert!(
            matches!(
                judge(&[failing("a", 99)], HOLD, at(100)),
                Verdict::Disputed { needed: 1, .. }
            ),
            "failing, not for the whole hold yet"
        );
        assert_eq!(judge(&[serving("a")], HOLD, at(100)), Verdict::Serving);
    }

    #[test]
    fn a_leader_that_alone_lost_sight_moves_nothing() {
        let reports = [failing("leader", 90), serving("b"), serving("c")];
        assert_eq!(
            judge(&reports, HOLD, at(100)),
            Verdict::Disputed {
                failing: vec!["leader".into()],
                others: vec!["b".into(), "c".into()],
                needed: 2,
            }
        );
    }

    #[test]
    fn a_majority_that_held_the_failure_decides() {
        let table = [
            // (reports, verdict is Failed)
            (vec![failing("a", 90), failing("b", 95), serving("c")], true),
            (
                vec![failing("a", 90), failing("b", 99), serving("c")],
                false,
            ),
            (vec![failing("a", 90), failing("b", 90)], true),
            (vec![failing("a", 90), serving("b")], false),
            (
                vec![
                    failing("a", 90),
                    failing("b", 90),
                    serving("c"),
                    serving("d"),
                ],
                false,
            ),
            (
                vec![
                    failing("a", 90),
                    failing("b", 90),
                    failing("c", 90),
                    serving("d"),
                    serving("e"),
                ],
                true,
            ),
        ];
        for (reports, failed) in table {
            let verdict = judge(&reports, HOLD, at(100));
            assert_eq!(
                matches!(verdict, Verdict::Failed { .. }),
                failed,
                "{reports:?}: {verdict:?}"
            );
        }
    }

    #[test]
    fn observers_gone_quiet_count_neither_way() {
        let mut stale = serving("b");
        stale.observer.renewed = at(80);
        let mut stale_c = serving("c");
        stale_c.observer.renewed = at(80);
        // b and c stopped renewing: a is the only live observer.
        assert_eq!(
            judge(&[failing("a", 90), stale, stale_c], HOLD, at(100)),
            Verdict::Failed {
                by: vec!["a".into()]
            }
        );
        let mut lying = failing("b", 50);
        lying.observer.renewed = at(80);
        assert_eq!(
            judge(&[serving("a"), lying], HOLD, at(100)),
            Verdict::Serving,
            "a stale observer's old failure does not count"
        );
    }

    #[test]
    fn unknown_is_no_vote_for_failure() {
        let unknown = Report {
            observer: observer("b", "b", 100),
            seen: Seen::Unknown,
        };
        assert!(matches!(
            judge(&[failing("a", 90), unknown], HOLD, at(100)),
            Verdict::Disputed { needed: 2, .. }
        ));
    }

    proptest::proptest! {
        /// Whatever the reports, a failure is decided only by more than
        /// half of the live observers, each failing for the whole hold.
        #[test]
        fn failure_needs_a_live_majority_that_held_it(
            views in proptest::collection::vec((0i64..40, proptest::option::of(0i64..40)), 1..7),
        ) {
            let now = at(100);
            let reports: Vec<Report> = views
                .iter()
                .enumerate()
                .map(|(i, (renewed_ago, failing_for))| Report {
                    observer: observer(&format!("o{i}"), "r", 100 - renewed_ago),
                    seen: match failing_for {
                        Some(s) => Seen::Failing { since: at(100 - s) },
                        None => Seen::Serving,
                    },
                })
                .collect();
            let live = reports.iter().filter(|r| r.observer.live(now)).count();
            if let Verdict::Failed { by } = judge(&reports, HOLD, now) {
                proptest::prop_assert!(2 * by.len() > live);
                for name in &by {
                    let r = reports.iter().find(|r| &r.observer.identity == name).unwrap();
                    proptest::prop_assert!(r.observer.live(now));
                    let held = matches!(r.seen, Seen::Failing { since } if since + signed(HOLD) <= now);
                    proptest::prop_assert!(held);
                }
            }
        }
    }

    #[test]
    fn a_replica_fences_itself_after_self_fence_seconds_without_renewal() {
        let ten = Duration::from_secs(10);
        assert!(!must_fence_itself(Duration::from_secs(9), ten));
        assert!(must_fence_itself(Duration::from_secs(10), ten));
        assert!(
            !must_fence_itself(Duration::from_secs(3600), Duration::ZERO),
            "off"
        );
    }

    #[test]
    fn a_region_is_cut_off_when_most_other_regions_fail() {
        for (others, failing, cut) in [
            (2, 2, true),
            (2, 1, false),
            (4, 2, false),
            (4, 3, true),
            (0, 0, false),
        ] {
            assert_eq!(
                cut_off(others, failing),
                cut,
                "{failing} of {others} failing"
            );
        }
    }

    #[test]
    fn promotion_waits_until_the_cut_off_region_has_fenced_itself() {
        let ten = Duration::from_secs(10);
        let observers = [
            observer("east", "us-east", 100),
            observer("west", "eu-west", 130),
        ];
        // us-east failing since 101; east's Lease ran out at 110; it
        // fences itself by 120; skew 2 s.
        let since = at(101);
        assert_eq!(
            promotion_gate("us-east", &observers, ten, since, at(104)),
            PromotionGate::After(at(122)),
            "its Lease is still live, but it was last renewed before the failure"
        );
        assert_eq!(
            promotion_gate("us-east", &observers, ten, since, at(115)),
            PromotionGate::After(at(122))
        );
        assert_eq!(
            promotion_gate("us-east", &observers, ten, since, at(122)),
            PromotionGate::Now
        );
        assert_eq!(
            promotion_gate("eu-west", &observers, ten, at(120), at(135)),
            PromotionGate::Now,
            "a region whose replica renewed after it began failing is not cut off"
        );
        assert_eq!(
            promotion_gate("eu-west", &observers, ten, at(129), at(135)),
            PromotionGate::After(at(140 + 12)),
            "a renewal within the skew of the failure's start proves nothing"
        );
    }

    #[test]
    fn a_region_that_cannot_fence_itself_is_promoted_away_from_unfenced() {
        let ten = Duration::from_secs(10);
        let observers = [observer("west", "eu-west", 130)];
        assert!(matches!(
            promotion_gate("us-east", &observers, ten, at(130), at(135)),
            PromotionGate::Unfenced(why) if why.contains("no operator replica")
        ));
        let east = [observer("east", "us-east", 100)];
        assert!(matches!(
            promotion_gate("us-east", &east, Duration::ZERO, at(150), at(200)),
            PromotionGate::Unfenced(why) if why.contains("off")
        ));
    }
}
