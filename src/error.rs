//! The operator's one error type. Every fallible edge returns it, with
//! enough context to act on; every variant names itself as a metric label
//! (`multiregion_reconcile_errors_total{error=...}`).

use multiregion_core::text::member_text;

/// What can go wrong when the operator talks to a cluster.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A call to the hub API server failed.
    #[error("hub API, {action}: {source}")]
    Hub {
        /// What the operator was doing, e.g. "write status of shop/web".
        action: String,
        #[source]
        source: kube::Error,
    },
    /// A member cluster could not be reached (or did not answer in time).
    #[error("region {region}: unreachable: {reason}")]
    Unreachable { region: String, reason: String },
    /// A member API server refused what the operator sent; its message.
    #[error("region {region}: refused: {message}")]
    Refused { region: String, message: String },
    /// A member API server answered with an error that says nothing about
    /// what was sent: 429 (too many requests) or 5xx (an etcd leader
    /// change, a rolling upgrade). Retried; no evidence against the region.
    #[error("region {region}: answered {code}: {message}")]
    Troubled {
        region: String,
        code: u16,
        message: String,
    },
    /// An object of the app's name exists that the operator did not create;
    /// it is left alone.
    #[error("{place}: {kind} {name} exists and was not created by multiregion; it is left alone")]
    Conflict {
        /// The region, or "hub" for a traffic sink.
        place: String,
        kind: String,
        name: String,
    },
    /// A traffic sink could not be written.
    #[error("sink {kind} {name}: {source}")]
    Sink {
        kind: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    /// The status was changed by someone else since the decision was made
    /// (another operator replica, a person): re-read and decide again.
    #[error("status of {app} changed since it was read; deciding again")]
    StatusConflict { app: String },
    /// This replica does not hold the Lease (or could not renew it in
    /// time): it must not write.
    #[error("not the leader: the Lease was not renewed within its renew deadline")]
    NotLeader,
    /// Placed objects could not be removed from some regions yet.
    #[error("cleanup pending in {}", .0.join(", "))]
    CleanupPending(Vec<String>),
    /// The app's deletion keeps objects that hold data until a person
    /// confirms (`DeletionHeld`): the finalizer stays.
    #[error("deletion held until confirmed: {}", .0.join(", "))]
    DeletionHeld(Vec<String>),
    /// The finalizer helper could not add or remove the finalizer.
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
}

impl Error {
    /// Short label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Hub { .. } => "hub",
            Error::Unreachable { .. } => "member_unreachable",
            Error::Refused { .. } => "member_refused",
            Error::Troubled { .. } => "member_troubled",
            Error::Conflict { .. } => "conflict",
            Error::Sink { .. } => "sink",
            Error::StatusConflict { .. } => "status_conflict",
            Error::NotLeader => "not_leader",
            Error::CleanupPending(_) => "cleanup_pending",
            Error::DeletionHeld(_) => "deletion_held",
            Error::Finalizer(_) => "finalizer",
        }
    }

    /// A hub call failed while doing `action`.
    pub fn hub(action: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
        let action = action.into();
        move |source| Error::Hub { action, source }
    }

    /// Classifies a member API error: 429 and 5xx answers are trouble on
    /// the member's side (no verdict on what was sent), other answers are
    /// refusals, and anything else means the member could not be reached.
    /// The member's text is capped and made one line.
    pub fn member(region: &str, err: kube::Error) -> Error {
        let region = region.to_string();
        match err {
            kube::Error::Api(status) if status.code == 429 || status.code >= 500 => {
                Error::Troubled {
                    region,
                    code: status.code,
                    message: member_text(&status.message),
                }
            }
            kube::Error::Api(status) => Error::Refused {
                region,
                message: member_text(&format!("{} ({})", status.message, status.reason)),
            },
            other => Error::Unreachable {
                region,
                reason: member_text(&other.to_string()),
            },
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
