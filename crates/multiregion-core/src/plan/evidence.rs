//! Evidence: what one observation of an (app, region) pair says about the
//! region serving. Every observation is one of three classes, decided here
//! from typed inputs and nowhere else:
//!
//! - `Serving`: the HTTP check passes; without one, the API server answers
//!   and the workload is ready on fresh data. A good round.
//! - `NotServing`: the HTTP check fails (when configured it is read first,
//!   always); without one, the API server does not answer (refused, timed
//!   out) or the workload is not ready on fresh data. A failed round.
//! - `Unknown`: nothing either way (a 429, 5xx, 401 or 403 from the member,
//!   a hub-side problem, a silent watch, a Deployment still missing or
//!   starting). No round is counted; `rounds` bounds how long a member-side
//!   Unknown may last before it counts (`healthCheck.unknownSeconds`).
//!
//! Problems placing the app (a Conflict, a refused object, a propagated
//! copy missing) are not evidence at all: they block promotion into the
//! region and never fail a region that serves.

use super::Observation;
use super::health::{HttpResult, RegionState, WorkloadState, ready_needed};
use crate::api::Reason;

/// The class of one observation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Evidence {
    /// A good round. `degraded` says why the region serves on its
    /// endpoint's word only (its API server out of reach): traffic stays,
    /// nothing is placed or scaled there, and it is no promotion target
    /// while another region is.
    Serving { degraded: Option<String> },
    /// A failed round.
    NotServing { reason: Reason, message: String },
    /// No round counted.
    Unknown {
        cause: UnknownCause,
        message: String,
    },
}

/// Why an observation is `Unknown`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum UnknownCause {
    /// The region was not probed or listed yet since the operator started.
    NotObservedYet,
    /// The member API server answered 429, 5xx, 401 or 403.
    MemberTroubled,
    /// The region's watch has not heard from its server within its bound.
    WatchStale,
    /// The Deployment is missing (placed next) or its pods are starting.
    WorkloadPending,
    /// The HTTP check has no result yet.
    HttpPending,
    /// The Region was deleted on the hub, or its kubeconfig Secret is
    /// unusable: the hub's problem, never counted against the region.
    HubSide,
    /// The leader lost sight of the region, but a majority of the live
    /// observers (operator replicas) see its API server answer: the
    /// leader's path is the problem, never counted against the region.
    ObserversSeeItServing,
    /// The leader lost sight of the region and no majority of the live
    /// observers agrees either way yet: bounded like a member-side cause.
    ObserversDisagree,
}

impl UnknownCause {
    /// The word shown in status, Events and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            UnknownCause::NotObservedYet => "NotObservedYet",
            UnknownCause::MemberTroubled => "MemberTroubled",
            UnknownCause::WatchStale => "WatchStale",
            UnknownCause::WorkloadPending => "WorkloadPending",
            UnknownCause::HttpPending => "HttpPending",
            UnknownCause::HubSide => "HubSide",
            UnknownCause::ObserversSeeItServing => "ObserversSeeItServing",
            UnknownCause::ObserversDisagree => "ObserversDisagree",
        }
    }

    /// Reads the word back (from status); an unknown word is a member-side
    /// cause, so it stays bounded.
    pub fn parse(word: &str) -> Self {
        [
            UnknownCause::NotObservedYet,
            UnknownCause::MemberTroubled,
            UnknownCause::WatchStale,
            UnknownCause::WorkloadPending,
            UnknownCause::HttpPending,
            UnknownCause::HubSide,
            UnknownCause::ObserversSeeItServing,
            UnknownCause::ObserversDisagree,
        ]
        .into_iter()
        .find(|c| c.as_str() == word)
        .unwrap_or(UnknownCause::MemberTroubled)
    }

    /// A cause on the region's side: past `healthCheck.unknownSeconds` it
    /// counts as failed rounds, so no real failure is skipped for ever.
    /// Hub-side causes never count, nor does the operator's own start (a
    /// restart never flips traffic; every probe has a deadline, so it ends).
    pub fn bounded(self) -> bool {
        !matches!(
            self,
            UnknownCause::HubSide
                | UnknownCause::NotObservedYet
                | UnknownCause::ObserversSeeItServing
        )
    }

    /// The evidence depends on where it is seen from (the leader's path to
    /// the region's API server), so the other observers are asked.
    pub fn seen_from_the_leader(self) -> bool {
        matches!(
            self,
            UnknownCause::MemberTroubled | UnknownCause::WatchStale
        )
    }
}

/// How the workload's state is to be read in this round.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Judging {
    /// ceil(minReadyRatio * replicas) ready replicas make a region ready.
    pub min_ready_ratio: f64,
    /// Pods may still be starting: the region was never judged yet, or was
    /// scaled up less than `startupSeconds` ago. Missing readiness of a
    /// Deployment rolling out is then Unknown, not a failed round.
    pub starting: bool,
    /// The region was never judged yet: an HTTP check that fails while its
    /// pods start is Unknown too (nothing listens yet). Once judged, HTTP
    /// failures always count.
    pub never_judged: bool,
}

/// Classifies one observation.
pub fn classify(obs: &Observation, judging: Judging) -> Evidence {
    match &obs.http {
        HttpResult::NotChecked => without_http(obs, judging),
        HttpResult::Serves => Evidence::Serving {
            degraded: out_of_contact(&obs.region),
        },
        HttpResult::Fails(why) if judging.never_judged && never_ready(obs) => unknown(
            UnknownCause::WorkloadPending,
            format!("pods are starting; the HTTP check fails meanwhile: {why}"),
        ),
        HttpResult::Fails(why) => Evidence::NotServing {
            reason: Reason::HttpProbeFailed,
            message: why.clone(),
        },
        HttpResult::Pending => unknown(UnknownCause::HttpPending, "no HTTP check result yet"),
        // The check cannot run (the hub's mistake): the API server and the
        // workload are the evidence, as without one.
        HttpResult::Misconfigured(_) => without_http(obs, judging),
    }
}

/// Why the operator cannot use the region's API server now, if it cannot.
fn out_of_contact(region: &RegionState) -> Option<String> {
    match region {
        RegionState::Reachable => None,
        RegionState::Unreachable(why) | RegionState::NoCredentials(why) => Some(why.clone()),
        RegionState::Troubled { code, message } => {
            Some(format!("API server answers {code}: {message}"))
        }
        RegionState::NotFound => Some("no Region of this name exists".into()),
        // Not probed yet since the operator started: no news.
        RegionState::Unknown => None,
    }
}

/// No HTTP check: the API server and the workload are the evidence.
fn without_http(obs: &Observation, judging: Judging) -> Evidence {
    match &obs.region {
        RegionState::Reachable => workload(&obs.workload, judging),
        RegionState::Unreachable(why) => Evidence::NotServing {
            reason: Reason::RegionUnreachable,
            message: why.clone(),
        },
        RegionState::Troubled { code, message } => unknown(
            UnknownCause::MemberTroubled,
            format!("API server answers {code}: {message}"),
        ),
        RegionState::NotFound => unknown(UnknownCause::HubSide, "no Region of this name exists"),
        RegionState::NoCredentials(why) => unknown(UnknownCause::HubSide, why),
        RegionState::Unknown => unknown(UnknownCause::NotObservedYet, "not probed yet"),
    }
}

/// The workload's evidence, its API server answering.
fn workload(workload: &WorkloadState, judging: Judging) -> Evidence {
    match workload {
        WorkloadState::Unknown => unknown(UnknownCause::NotObservedYet, "not listed yet"),
        // No figure in the text: a steady state must write the same status.
        WorkloadState::Stale { .. } => unknown(
            UnknownCause::WatchStale,
            "every attempt of the Deployment watch keeps failing: its data may be out of date",
        ),
        WorkloadState::Missing => unknown(
            UnknownCause::WorkloadPending,
            "the Deployment is not placed yet",
        ),
        WorkloadState::Placed {
            replicas,
            ready,
            rolling_out,
            ..
        } => {
            let needed = ready_needed(judging.min_ready_ratio, *replicas);
            if *ready >= needed {
                Evidence::Serving { degraded: None }
            } else if judging.starting && *rolling_out {
                unknown(
                    UnknownCause::WorkloadPending,
                    format!("{ready}/{replicas} replicas ready, pods starting"),
                )
            } else {
                Evidence::NotServing {
                    reason: Reason::NotEnoughReadyReplicas,
                    message: format!("{ready}/{replicas} replicas ready, {needed} needed"),
                }
            }
        }
    }
}

/// The workload has not been seen ready yet and is starting.
fn never_ready(obs: &Observation) -> bool {
    matches!(
        obs.workload,
        WorkloadState::Placed {
            rolling_out: true,
            ..
        } | WorkloadState::Missing
    )
}

fn unknown(cause: UnknownCause, message: impl Into<String>) -> Evidence {
    Evidence::Unknown {
        cause,
        message: message.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::health::{HttpResult as H, RegionState as R, WorkloadState as W};
    use proptest::prelude::*;

    fn placed(ready: i32, rolling_out: bool) -> W {
        W::Placed {
            replicas: 3,
            ready,
            lag: None,
            rolling_out,
            role: None,
        }
    }

    fn obs(region: R, workload: W, http: H) -> Observation {
        Observation {
            region,
            workload,
            http,
            ..Observation::unknown()
        }
    }

    const JUDGED: Judging = Judging {
        min_ready_ratio: 0.5,
        starting: false,
        never_judged: false,
    };

    const FIRST: Judging = Judging {
        min_ready_ratio: 0.5,
        starting: true,
        never_judged: true,
    };

    fn class(e: &Evidence) -> String {
        match e {
            Evidence::Serving { degraded: None } => "Serving".into(),
            Evidence::Serving { degraded: Some(_) } => "Serving(degraded)".into(),
            Evidence::NotServing { reason, .. } => format!("NotServing({reason})"),
            Evidence::Unknown { cause, .. } => format!("Unknown({})", cause.as_str()),
        }
    }

    fn troubled(code: u16) -> R {
        R::Troubled {
            code,
            message: "busy".into(),
        }
    }

    #[test]
    fn each_observation_falls_in_one_class() {
        let refused = || R::Unreachable("connection refused".into());
        let fails = || H::Fails("503".into());
        let cases: Vec<(Observation, Judging, &str)> = vec![
            // Without an HTTP check the API server and workload decide.
            (
                obs(R::Reachable, placed(2, false), H::NotChecked),
                JUDGED,
                "Serving",
            ),
            (
                obs(R::Reachable, placed(1, false), H::NotChecked),
                JUDGED,
                "NotServing(NotEnoughReadyReplicas)",
            ),
            (
                obs(refused(), placed(3, false), H::NotChecked),
                JUDGED,
                "NotServing(RegionUnreachable)",
            ),
            (
                obs(troubled(429), placed(3, false), H::NotChecked),
                JUDGED,
                "Unknown(MemberTroubled)",
            ),
            (
                obs(troubled(503), placed(0, false), H::NotChecked),
                JUDGED,
                "Unknown(MemberTroubled)",
            ),
            (
                obs(troubled(403), placed(3, false), H::NotChecked),
                JUDGED,
                "Unknown(MemberTroubled)",
            ),
            (
                obs(R::NotFound, placed(3, false), H::NotChecked),
                JUDGED,
                "Unknown(HubSide)",
            ),
            (
                obs(
                    R::NoCredentials("gone".into()),
                    placed(3, false),
                    H::NotChecked,
                ),
                JUDGED,
                "Unknown(HubSide)",
            ),
            (
                obs(R::Unknown, placed(3, false), H::NotChecked),
                JUDGED,
                "Unknown(NotObservedYet)",
            ),
            (
                obs(R::Reachable, W::Unknown, H::NotChecked),
                JUDGED,
                "Unknown(NotObservedYet)",
            ),
            (
                obs(R::Reachable, W::Stale { silent_seconds: 90 }, H::NotChecked),
                JUDGED,
                "Unknown(WatchStale)",
            ),
            (
                obs(R::Reachable, W::Missing, H::NotChecked),
                JUDGED,
                "Unknown(WorkloadPending)",
            ),
            // A rollout excuses missing readiness only while starting.
            (
                obs(R::Reachable, placed(0, true), H::NotChecked),
                JUDGED,
                "NotServing(NotEnoughReadyReplicas)",
            ),
            (
                obs(R::Reachable, placed(0, true), H::NotChecked),
                Judging {
                    starting: true,
                    ..JUDGED
                },
                "Unknown(WorkloadPending)",
            ),
            // The HTTP check is read first, always, when configured.
            (
                obs(R::Reachable, placed(3, false), fails()),
                JUDGED,
                "NotServing(HttpProbeFailed)",
            ),
            (
                obs(R::Reachable, W::Missing, fails()),
                JUDGED,
                "NotServing(HttpProbeFailed)",
            ),
            (
                obs(R::Reachable, placed(0, true), fails()),
                JUDGED,
                "NotServing(HttpProbeFailed)",
            ),
            // Just scaled up, already judged: HTTP failures count.
            (
                obs(R::Reachable, placed(0, true), fails()),
                Judging {
                    starting: true,
                    ..JUDGED
                },
                "NotServing(HttpProbeFailed)",
            ),
            // Never judged, pods starting: nothing listens yet.
            (
                obs(R::Reachable, placed(0, true), fails()),
                FIRST,
                "Unknown(WorkloadPending)",
            ),
            (
                obs(R::Reachable, W::Missing, fails()),
                FIRST,
                "Unknown(WorkloadPending)",
            ),
            (
                obs(R::Reachable, placed(0, false), H::Serves),
                JUDGED,
                "Serving",
            ),
            (
                obs(troubled(429), placed(3, false), H::Serves),
                JUDGED,
                "Serving(degraded)",
            ),
            (
                obs(refused(), placed(3, false), H::Serves),
                JUDGED,
                "Serving(degraded)",
            ),
            (
                obs(R::NotFound, placed(3, false), H::Serves),
                JUDGED,
                "Serving(degraded)",
            ),
            (
                obs(refused(), placed(3, false), fails()),
                JUDGED,
                "NotServing(HttpProbeFailed)",
            ),
            (
                obs(R::Reachable, placed(3, false), H::Pending),
                JUDGED,
                "Unknown(HttpPending)",
            ),
            (
                obs(
                    R::Reachable,
                    placed(0, false),
                    H::Misconfigured("no CA".into()),
                ),
                JUDGED,
                "NotServing(NotEnoughReadyReplicas)",
            ),
            // A check that cannot run falls back to the API server.
            (
                obs(
                    R::Reachable,
                    placed(3, false),
                    H::Misconfigured("no CA".into()),
                ),
                JUDGED,
                "Serving",
            ),
        ];
        for (o, judging, want) in cases {
            assert_eq!(class(&classify(&o, judging)), want, "{o:?} {judging:?}");
        }
    }

    #[test]
    fn placement_problems_are_not_evidence() {
        let mut o = obs(R::Reachable, placed(3, false), H::NotChecked);
        o.placement = Some(crate::plan::health::PlacementProblem::Refused(
            "quota".into(),
        ));
        assert_eq!(class(&classify(&o, JUDGED)), "Serving");
    }

    #[test]
    fn only_hub_side_causes_are_unbounded() {
        assert!(!UnknownCause::HubSide.bounded());
        assert!(
            !UnknownCause::NotObservedYet.bounded(),
            "a restart never counts"
        );
        assert!(UnknownCause::MemberTroubled.bounded());
        assert_eq!(UnknownCause::parse("WatchStale"), UnknownCause::WatchStale);
        assert_eq!(
            UnknownCause::parse("nonsense"),
            UnknownCause::MemberTroubled
        );
    }

    fn any_region() -> impl Strategy<Value = R> {
        prop_oneof![
            Just(R::Reachable),
            Just(R::Unreachable("refused".into())),
            (400u16..600).prop_map(troubled),
            Just(R::NotFound),
            Just(R::NoCredentials("x".into())),
            Just(R::Unknown),
        ]
    }

    fn any_workload() -> impl Strategy<Value = W> {
        prop_oneof![
            Just(W::Unknown),
            Just(W::Missing),
            (0u64..600).prop_map(|s| W::Stale { silent_seconds: s }),
            (0i32..=3, any::<bool>()).prop_map(|(r, o)| placed(r, o)),
        ]
    }

    fn any_http() -> impl Strategy<Value = H> {
        prop_oneof![
            Just(H::NotChecked),
            Just(H::Pending),
            Just(H::Serves),
            Just(H::Fails("x".into())),
            Just(H::Misconfigured("x".into())),
        ]
    }

    proptest! {
        /// A passing HTTP check is never a failed round, whatever the API
        /// server or the watch says; a failing one is never a good round.
        #[test]
        fn the_http_check_decides_when_configured(
            region in any_region(), workload in any_workload(), starting in any::<bool>(), first in any::<bool>()
        ) {
            let judging = Judging { starting: starting || first, never_judged: first, ..JUDGED };
            let serves = classify(&obs(region.clone(), workload.clone(), H::Serves), judging);
            prop_assert!(matches!(serves, Evidence::Serving { .. }), "{:?}", serves);
            let fails = classify(&obs(region, workload, H::Fails("x".into())), judging);
            prop_assert!(!matches!(fails, Evidence::Serving { .. }), "{:?}", fails);
            // Once judged, a failing check is always a failed round.
            if !first {
                prop_assert!(matches!(fails, Evidence::NotServing { .. }), "{:?}", fails);
            }
        }

        /// An answer from the member (429, 5xx, 401, 403) and every
        /// hub-side problem are never a failed round.
        #[test]
        fn answers_and_hub_trouble_never_fail_a_round(
            code in 400u16..600, workload in any_workload(), http in any_http(), starting in any::<bool>()
        ) {
            let judging = Judging { starting, ..JUDGED };
            for region in [troubled(code), R::NotFound, R::NoCredentials("x".into()), R::Unknown] {
                let e = classify(&obs(region, workload.clone(), http.clone()), judging);
                let failed_by_http = matches!(http, H::Fails(_));
                prop_assert!(failed_by_http || !matches!(e, Evidence::NotServing { .. }), "{e:?}");
            }
        }

        /// Only the hub-side class is unbounded, and only hub-side inputs
        /// produce it.
        #[test]
        fn hub_side_comes_only_from_the_hub(
            region in any_region(), workload in any_workload(), http in any_http()
        ) {
            let hub = matches!(region, R::NotFound | R::NoCredentials(_));
            if let Evidence::Unknown { cause: UnknownCause::HubSide, .. } =
                classify(&obs(region, workload, http), JUDGED)
            {
                prop_assert!(hub);
            }
        }
    }
}
