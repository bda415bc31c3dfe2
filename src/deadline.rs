//! Every request to the hub or a member ends. Each cluster gets two
//! clients from one kubeconfig: one for requests, whose answers must come
//! within `READ_TIMEOUT` (a half-open connection or a stuck API server then
//! fails the request instead of hanging the probe, the reconcile or the
//! Lease), and one for watches, which are long-lived by design and kept
//! alive by the watcher's own idle timeout.

use std::time::Duration;

/// The longest the operator waits for an API server's answer to one
/// request.
pub const READ_TIMEOUT: Duration = Duration::from_secs(15);

/// The longest the operator waits to connect to an API server.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// `config` for request clients: connect and read timeouts, the read
/// timeout counted from when each request was sent (not from when a pooled
/// connection went idle).
pub fn for_requests(mut config: kube::Config) -> kube::Config {
    config.connect_timeout = Some(CONNECT_TIMEOUT);
    config.read_timeout = Some(READ_TIMEOUT);
    config.reset_reader_on_write = true;
    config
}

/// `config` for watch clients: a connect timeout only.
pub fn for_watches(mut config: kube::Config) -> kube::Config {
    config.connect_timeout = Some(CONNECT_TIMEOUT);
    config
}

/// The two clients of one cluster.
#[derive(Clone)]
pub struct Clients {
    /// For gets, lists, writes and probes: bounded by `READ_TIMEOUT`.
    pub requests: kube::Client,
    /// For watches only.
    pub watches: kube::Client,
}

impl Clients {
    /// The hub's clients, counted as `hub` in
    /// `multiregion_api_requests_total`. kube's own retry of 429, 503 and
    /// 504 stays on: every hub call is bounded by the time left on the
    /// leader's fence, and a retried write is still a write the leader
    /// decided.
    pub fn hub(config: kube::Config) -> Result<Self, kube::Error> {
        Self::new(config, "hub")
    }

    /// A member's clients, counted as `member`. kube's own retry is off:
    /// a 429 or 503 from a member is evidence the operator judges
    /// (`MemberTroubled`), and a probe retrying it past its timeout would
    /// read as a region that does not answer at all.
    pub fn member(mut config: kube::Config) -> Result<Self, kube::Error> {
        config.default_retry = false;
        Self::new(config, "member")
    }

    fn new(config: kube::Config, cluster: &str) -> Result<Self, kube::Error> {
        Ok(Clients {
            requests: crate::metrics::counted_client(for_requests(config.clone()), cluster)?,
            watches: crate::metrics::counted_client(for_watches(config), cluster)?,
        })
    }

    /// One client for both (tests with a mocked API server).
    pub fn single(client: kube::Client) -> Self {
        Clients {
            requests: client.clone(),
            watches: client,
        }
    }
}
