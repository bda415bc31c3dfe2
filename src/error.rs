//! The operator's one error type. Every fallible edge returns it, with
//! enough context to act on; every variant names itself as a metric label
//! (`multiregion_reconcile_errors_total{error=...}`).

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
            Error::Conflict { .. } => "conflict",
            Error::Sink { .. } => "sink",
            Error::StatusConflict { .. } => "status_conflict",
            Error::NotLeader => "not_leader",
            Error::CleanupPending(_) => "cleanup_pending",
            Error::Finalizer(_) => "finalizer",
        }
    }

    /// A hub call failed while doing `action`.
    pub fn hub(action: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
        let action = action.into();
        move |source| Error::Hub { action, source }
    }

    /// Classifies a member API error: an answer is a refusal; anything else
    /// means the member could not be reached.
    pub fn member(region: &str, err: kube::Error) -> Error {
        match err {
            kube::Error::Api(status) => Error::Refused {
                region: region.to_string(),
                message: format!("{} ({})", status.message, status.reason),
            },
            other => Error::Unreachable {
                region: region.to_string(),
                reason: other.to_string(),
            },
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
