//! Every replica an observer (`docs/design.md`, "No region is special").
//!
//! Each replica, leader or not, probes every Region's API server from where
//! it runs and publishes what it sees on its own observer Lease
//! (`multiregion-observer-IDENTITY` in the operator's namespace, label
//! `multiregion.io/observer`): the Lease's renewals say it is live; its
//! annotation `multiregion.io/observations` holds, per region, `Serving`,
//! `Failing` (with the time of the first failed probe of the run) or
//! `Unknown`, and `multiregion.io/observer-region` the region it runs in.
//! The Lease is written when it is due for renewal (a third of its
//! duration) or when the view changes: nothing per app, nothing per round.
//!
//! The leader reads every observer Lease (`Sightings`, in `plan::observers`)
//! and counts its own loss of sight of a region only when a majority of the
//! live observers share it.

mod lease;
mod view;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};

use crate::api::Region;
use crate::deadline::Clients;
use crate::metrics::Metrics;
use crate::regions::credentials;
use crate::regions::probe::probe_once;

pub use lease::{OBSERVER_LABEL, observer_lease_name, sightings};
pub use view::{View, Word};

/// Who observes, from where, and how often it says it is live.
#[derive(Clone, Debug)]
pub struct Options {
    /// The operator's namespace (where the observer Leases live).
    pub namespace: String,
    /// This replica's identity (the Lease's holder).
    pub identity: String,
    /// The region this replica runs in, if known.
    pub region: Option<String>,
    /// How long the observer Lease lasts without renewal.
    pub lease: Duration,
}

/// The longest the observer waits between rounds of probes.
const MAX_ROUND: Duration = Duration::from_secs(5);
/// How often a member client is built again from its Secret (credentials
/// rotate; a changed Region is rebuilt at once).
const CLIENT_REFRESH: Duration = Duration::from_secs(60);

/// A member client, and what it was built from.
struct Built {
    client: kube::Client,
    from: String,
    at: std::time::Instant,
}

/// Probes and publishes until the process ends.
pub async fn run(hub: Clients, options: Options, metrics: Arc<Metrics>) {
    let (regions, writer) = reflector::store();
    let api: Api<Region> = Api::all(hub.watches.clone());
    let watch = reflector::reflector(writer, watcher(api, watcher::Config::default()))
        .default_backoff()
        .touched_objects()
        .for_each(|_| async {});
    tokio::select! {
        _ = watch => {},
        _ = observe(hub.clone(), options, metrics, regions) => {},
    }
}

async fn observe(hub: Clients, options: Options, metrics: Arc<Metrics>, regions: Store<Region>) {
    let _ = regions.wait_until_ready().await;
    let mut publisher = lease::Publisher::new(hub.requests.clone(), &options);
    let mut clients: BTreeMap<String, Built> = BTreeMap::new();
    let mut view = View::default();
    loop {
        let listed: Vec<Arc<Region>> = regions.state();
        refresh_clients(&hub, &listed, &mut clients).await;
        let probed = probe_all(&listed, &clients).await;
        let next = view.next(probed, jiff::Timestamp::now());
        if next != view {
            tracing::info!(view = %serde_json::to_string(&next).unwrap_or_default(), "observer: what this replica sees changed");
        }
        view = next;
        if publisher.publish(&view).await {
            metrics.wrote("hub", "observer_lease");
        }
        tokio::time::sleep(round_interval(&listed, options.lease)).await;
    }
}

/// The shortest probe interval of the Regions, at most `MAX_ROUND` and at
/// most a third of the Lease (it is renewed on the way).
fn round_interval(regions: &[Arc<Region>], lease: Duration) -> Duration {
    regions
        .iter()
        .map(|r| Duration::from_secs(r.spec.probe.interval_seconds.max(1) as u64))
        .chain([MAX_ROUND, lease / 3])
        .min()
        .unwrap_or(MAX_ROUND)
        .max(Duration::from_millis(500))
}

/// Builds a client for each Region that has none, changed, or is due for a
/// refresh; forgets Regions that are gone.
async fn refresh_clients(
    hub: &Clients,
    regions: &[Arc<Region>],
    clients: &mut BTreeMap<String, Built>,
) {
    clients.retain(|name, _| regions.iter().any(|r| &r.name_any() == name));
    for region in regions {
        let name = region.name_any();
        let from = format!(
            "{}:{}",
            region.uid().unwrap_or_default(),
            region.resource_version().unwrap_or_default()
        );
        let current = clients
            .get(&name)
            .is_some_and(|b| b.from == from && b.at.elapsed() < CLIENT_REFRESH);
        if current {
            continue;
        }
        match credentials::build(hub, &region.spec).await {
            Ok((built, _)) => {
                let at = std::time::Instant::now();
                clients.insert(
                    name,
                    Built {
                        client: built.requests,
                        from,
                        at,
                    },
                );
            }
            Err(err) => {
                tracing::debug!(region = %name, error = %err, "observer: no client for the region");
                clients.remove(&name);
            }
        }
    }
}

/// One probe of every Region with a client, all at once; a Region without
/// one is `Unknown` (the hub's problem, not the region's).
async fn probe_all(
    regions: &[Arc<Region>],
    clients: &BTreeMap<String, Built>,
) -> BTreeMap<String, Word> {
    let probes = regions.iter().map(|region| async move {
        let name = region.name_any();
        let word = match clients.get(&name) {
            None => Word::Unknown,
            Some(built) => {
                let probed = probe_once(&built.client, &region.spec.probe).await;
                match (probed.ok, probed.troubled) {
                    (true, _) => Word::Serving,
                    (false, Some(_)) => Word::Unknown,
                    (false, None) => Word::Failing,
                }
            }
        };
        (name, word)
    });
    futures::future::join_all(probes)
        .await
        .into_iter()
        .collect()
}
