//! The operator's one error type. Every variant names itself as a metric
//! label (`multiregion_reconcile_errors_total{error=...}`).

/// What can go wrong in a reconcile.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A call to the hub API server failed.
    #[error("hub API: {0}")]
    Hub(#[source] kube::Error),
    /// A call to a member cluster failed.
    #[error("region {region}: {source}")]
    Member {
        region: String,
        #[source]
        source: kube::Error,
    },
    /// Placed objects could not be removed from some regions yet.
    #[error("cleanup pending in {0}")]
    CleanupPending(String),
    /// Building a JSON body failed.
    #[error("serialisation: {0}")]
    Serialisation(#[from] serde_json::Error),
    /// The finalizer helper failed.
    #[error("finalizer: {0}")]
    Finalizer(String),
}

impl Error {
    /// Short label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Hub(_) => "hub",
            Error::Member { .. } => "member",
            Error::CleanupPending(_) => "cleanup_pending",
            Error::Serialisation(_) => "serialisation",
            Error::Finalizer(_) => "finalizer",
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
