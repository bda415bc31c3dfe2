//! The status vocabulary: roles, health, reasons and phases as enums that
//! serialise to the API's strings, so the code never compares string
//! literals. Reading never fails on a word: an unknown role, health or
//! phase reads as its safe default (written by hand, or by another
//! version), and an unknown reason is kept as written.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// String (de)serialisation and `Display` through `as_str` and `parse`.
macro_rules! serde_as_word {
    ($name:ident) => {
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let word = String::deserialize(deserializer)?;
                Ok($name::parse(&word))
            }
        }
    };
}

/// A closed set of words; an unknown word reads as `$default`.
macro_rules! closed_words {
    ($(#[$meta:meta])* $name:ident (default $default:ident) {
        $($(#[$vmeta:meta])* $variant:ident => $word:literal,)+
    }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
        }

        impl Default for $name {
            fn default() -> Self {
                $name::$default
            }
        }

        impl $name {
            /// The word as written in the API.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $word,)+
                }
            }

            /// Reads a word; an unknown one reads as the default.
            pub fn parse(word: &str) -> Self {
                match word {
                    $($word => $name::$variant,)+
                    _ => $name::$default,
                }
            }
        }

        serde_as_word!($name);
    };
}

/// An open set of words; an unknown word is kept as `Other`.
macro_rules! open_words {
    ($(#[$meta:meta])* $name:ident {
        $($(#[$vmeta:meta])* $variant:ident => $word:literal,)+
    }) => {
        $(#[$meta])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
            /// A word this version does not know, kept as written.
            Other(String),
        }

        impl $name {
            /// The word as written in the API.
            pub fn as_str(&self) -> &str {
                match self {
                    $($name::$variant => $word,)+
                    $name::Other(word) => word,
                }
            }

            /// Reads a word; an unknown one is kept as `Other`.
            pub fn parse(word: &str) -> Self {
                match word {
                    $($word => $name::$variant,)+
                    other => $name::Other(other.to_string()),
                }
            }
        }

        serde_as_word!($name);
    };
}

closed_words! {
    /// What a region does for an app.
    Role (default Standby) {
        /// Carries traffic (ActiveActive: every region not taken out).
        Active => "Active",
        /// Runs `standby.replicas` and carries no traffic.
        Standby => "Standby",
        /// Drained or cordoned: weight 0, replicas kept.
        Drained => "Drained",
    }
}

impl Role {
    /// The `multiregion.io/role` label value on placed objects.
    pub fn label(self) -> &'static str {
        match self {
            Role::Active => "active",
            Role::Standby | Role::Drained => "standby",
        }
    }
}

closed_words! {
    /// The judged state of a region for an app, or of a Region's API server.
    Health (default Unknown) {
        /// Passed enough rounds in a row.
        Healthy => "Healthy",
        /// Failed enough rounds in a row.
        Unhealthy => "Unhealthy",
        /// Healthy on its endpoint's word only: its API server is out of
        /// reach (reason `ControlPlaneUnreachable`). It keeps its traffic;
        /// nothing is placed or scaled there, and no app is promoted into
        /// it, until its API server answers.
        Degraded => "Degraded",
        /// Not judged yet.
        Unknown => "Unknown",
    }
}

impl Health {
    /// The judgement the state machine counts from: a Degraded region is a
    /// Healthy one whose API server is out of reach.
    pub fn judged(self) -> Health {
        match self {
            Health::Degraded => Health::Healthy,
            other => other,
        }
    }

    /// Carries the traffic it is given: Healthy or Degraded.
    pub fn serves(self) -> bool {
        self.judged() == Health::Healthy
    }
}

closed_words! {
    /// Whether the operator reaches a Region's API server.
    RegionPhase (default Unknown) {
        /// Probes pass.
        Reachable => "Reachable",
        /// Probes fail.
        Unreachable => "Unreachable",
        /// Not probed yet, or no usable credentials.
        Unknown => "Unknown",
    }
}

impl From<Health> for RegionPhase {
    fn from(health: Health) -> Self {
        match health {
            Health::Healthy => RegionPhase::Reachable,
            Health::Unhealthy | Health::Degraded => RegionPhase::Unreachable,
            Health::Unknown => RegionPhase::Unknown,
        }
    }
}

impl From<RegionPhase> for Health {
    fn from(phase: RegionPhase) -> Self {
        match phase {
            RegionPhase::Reachable => Health::Healthy,
            RegionPhase::Unreachable => Health::Unhealthy,
            RegionPhase::Unknown => Health::Unknown,
        }
    }
}

open_words! {
    /// Why a region's last health round failed.
    Reason {
        /// No Region of this name exists.
        RegionNotFound => "RegionNotFound",
        /// The Region's kubeconfig Secret is missing or unusable.
        RegionCredentialsInvalid => "RegionCredentialsInvalid",
        /// The member API server does not answer.
        RegionUnreachable => "RegionUnreachable",
        /// The member API server does not answer, but the region's endpoint
        /// serves: the region keeps its traffic and is reported degraded.
        ControlPlaneUnreachable => "ControlPlaneUnreachable",
        /// An object of the app's name there is not the operator's.
        Conflict => "Conflict",
        /// The member API server refused the placed objects.
        PlacementRefused => "PlacementRefused",
        /// Fewer ready replicas than minReadyRatio asks for.
        NotEnoughReadyReplicas => "NotEnoughReadyReplicas",
        /// The HTTP check of the region's endpoint failed.
        HttpProbeFailed => "HttpProbeFailed",
        /// No evidence either way for longer than
        /// `healthCheck.unknownSeconds`, for a reason on the region's side.
        EvidenceUnknown => "EvidenceUnknown",
        /// Unhealthy with no recorded cause.
        Unhealthy => "Unhealthy",
    }
}

/// Why traffic moved from one region to another.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum MoveReason {
    /// Back to a preferred region that recovered.
    Failback,
    /// A person set `failover.activeOverride`.
    Override,
    /// FollowTheSun: the next region's window opened.
    Schedule,
    /// The active region was drained.
    Drain,
    /// The active region's Region was cordoned.
    Cordon,
    /// The active region was removed from `spec.regions`.
    RegionRemoved,
    /// A failover drill moved traffic away from the region.
    Drill,
    /// A failover: the active region turned Unhealthy for this reason.
    Failure(Reason),
}

impl MoveReason {
    /// The word as written in the API: a failover carries the failed
    /// region's reason.
    pub fn as_str(&self) -> &str {
        match self {
            MoveReason::Failback => "Failback",
            MoveReason::Override => "Override",
            MoveReason::Schedule => "Schedule",
            MoveReason::Drain => "Drain",
            MoveReason::Cordon => "Cordon",
            MoveReason::RegionRemoved => "RegionRemoved",
            MoveReason::Drill => "Drill",
            MoveReason::Failure(reason) => reason.as_str(),
        }
    }

    /// Planned (a failback, an override, a schedule, a drain, a cordon, a
    /// removal, a drill), as opposed to a failover forced by a failure.
    pub fn is_planned(&self) -> bool {
        !matches!(self, MoveReason::Failure(_))
    }

    /// Reads a word; anything not a planned reason is a failover's reason.
    pub fn parse(word: &str) -> Self {
        match word {
            "Failback" => MoveReason::Failback,
            "Override" => MoveReason::Override,
            "Schedule" => MoveReason::Schedule,
            "Drain" => MoveReason::Drain,
            "Cordon" => MoveReason::Cordon,
            "RegionRemoved" => MoveReason::RegionRemoved,
            "Drill" => MoveReason::Drill,
            other => MoveReason::Failure(Reason::parse(other)),
        }
    }

    /// A failover, as opposed to a move a person or a schedule asked for.
    pub fn is_failure(&self) -> bool {
        matches!(self, MoveReason::Failure(_))
    }
}

serde_as_word!(MoveReason);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_round_trip_and_unknown_words_are_safe() {
        for role in [Role::Active, Role::Standby, Role::Drained] {
            assert_eq!(Role::parse(role.as_str()), role);
        }
        assert_eq!(Role::parse("Leader"), Role::Standby);
        assert_eq!(Health::parse("Sick"), Health::Unknown);
        assert_eq!(RegionPhase::parse(""), RegionPhase::Unknown);
        assert_eq!(Reason::parse("Tired"), Reason::Other("Tired".into()));
        assert_eq!(MoveReason::parse("Failback"), MoveReason::Failback);
        assert_eq!(
            MoveReason::parse("RegionUnreachable"),
            MoveReason::Failure(Reason::RegionUnreachable)
        );
        assert_eq!(
            serde_json::to_value(MoveReason::Failure(Reason::HttpProbeFailed)).unwrap(),
            serde_json::json!("HttpProbeFailed")
        );
        let health: Health = serde_json::from_value(serde_json::json!("Healthy")).unwrap();
        assert_eq!(health, Health::Healthy);
    }
}
