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
    /// Both clients from one config, counted as `cluster` in
    /// `multiregion_api_requests_total`.
    pub fn new(config: kube::Config, cluster: &str) -> Result<Self, kube::Error> {
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
