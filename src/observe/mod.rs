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

mod checks;
mod fence;
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

use k8s_openapi::api::coordination::v1::Lease;

use crate::api::Region;
use crate::deadline::Clients;
use crate::metrics::Metrics;
use crate::regions::credentials;
use crate::regions::probe::probe_once;

pub use checks::{Ask, Asking, CaRef};
pub use lease::{OBSERVER_LABEL, check_sightings, observer_lease_name, observers, sightings};
pub use view::{View, Word};

use lease::Published;

/// Who observes, from where, and how often it says it is live.
#[derive(Clone, Debug)]
pub struct Options {
    /// The operator's namespace (where the observer Leases live).
    pub namespace: String,
    /// This replica's identity (the Lease's holder).
    pub identity: String,
    /// The region this replica runs in, if known (the self-fence needs it).
    pub region: Option<String>,
    /// This hub's identity: the self-fence touches only what it placed.
    pub hub_id: String,
    /// How long the observer Lease lasts without renewal.
    pub lease: Duration,
    /// The HTTP checks this replica's controller sees failing, put to the
    /// other observers (`checks`).
    pub asking: Arc<Asking>,
}

/// Gives this replica's observer Lease up (on SIGTERM): its last view no
/// longer votes.
pub async fn release(hub: &kube::Client, options: &Options) {
    lease::Publisher::new(hub.clone(), options).release().await;
}

/// The longest the observer waits between rounds of probes.
const MAX_ROUND: Duration = Duration::from_secs(5);
/// How often a member client is built again from its Secret (credentials
/// rotate; a Region whose spec changed is rebuilt at once).
const CLIENT_REFRESH: Duration = Duration::from_secs(60);
/// The longest reading a Region's Secret may hold up a round.
const CLIENT_BUILD: Duration = Duration::from_secs(2);

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
    let (leases, lease_writer) = reflector::store();
    let touched = Arc::new(tokio::sync::Notify::new());
    let lease_api: Api<Lease> = Api::namespaced(hub.watches.clone(), &options.namespace);
    let observed = watcher::Config::default().labels(OBSERVER_LABEL);
    let lease_watch = reflector::reflector(lease_writer, watcher(lease_api, observed))
        .default_backoff()
        .touched_objects()
        .for_each(|_| {
            touched.notify_one();
            async {}
        });
    let seen = Seen {
        regions,
        leases,
        touched: touched.clone(),
    };
    tokio::select! {
        _ = watch => {},
        _ = lease_watch => {},
        _ = observe(hub.clone(), options, metrics, seen) => {},
    }
}

/// What the observer reads from the hub: the Regions, and the observer
/// Leases (whose asks it checks); `touched` wakes it when a Lease changed.
struct Seen {
    regions: Store<Region>,
    leases: Store<Lease>,
    touched: Arc<tokio::sync::Notify>,
}

impl Seen {
    /// The asks of the live observers and this replica's own, when several
    /// observers are live; none when this replica observes alone (its own
    /// word decides, nobody to ask).
    fn asks(&self, own: &[Ask]) -> BTreeMap<String, Ask> {
        let now = jiff::Timestamp::now();
        let leases = self.leases.state();
        let live = observers(leases.iter().map(|l| &**l))
            .iter()
            .filter(|o| o.live(now))
            .count();
        if live < 2 {
            return BTreeMap::new();
        }
        let mut asks = lease::live_asks(leases.iter().map(|l| &**l), now);
        asks.extend(own.iter().map(|a| (a.id(), a.clone())));
        // Answered at most this many (the results share a Lease's 256 KiB).
        asks.into_iter().take(checks::MAX_ANSWERS).collect()
    }

    /// Waits for the next round: `pause`, or less when this replica's asks
    /// or the live observers' asks change (an ask is answered at once), or
    /// when a run of checks ended (`done`: its results are published).
    async fn until_next_round(
        &self,
        pause: Duration,
        asking: &Asking,
        asked: &[String],
        done: &tokio::sync::Notify,
    ) {
        let deadline = tokio::time::Instant::now() + pause;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => return,
                _ = asking.changed() => return,
                _ = done.notified() => return,
                _ = self.touched.notified() => {
                    let now: Vec<String> = self.asks(&asking.current()).into_keys().collect();
                    if now != asked {
                        return;
                    }
                }
            }
        }
    }
}

async fn observe(hub: Clients, options: Options, metrics: Arc<Metrics>, seen: Seen) {
    let _ = seen.regions.wait_until_ready().await;
    let mut publisher = lease::Publisher::new(hub.requests.clone(), &options);
    let mut self_fence = fence::SelfFence::default();
    let mut databases = fence::Databases::default();
    let mut clients: BTreeMap<String, Built> = BTreeMap::new();
    let mut published = Published::default();
    let mut checker = checks::Checker::new(hub.requests.clone());
    loop {
        let listed: Vec<Arc<Region>> = seen.regions.state();
        refresh_clients(&hub, &listed, &mut clients).await;
        let own = options.asking.current();
        let asks = seen.asks(&own);
        // The checks run beside the loop: a slow endpoint never holds up
        // the Lease's renewal nor the self-fence.
        let pause = round_interval(&listed, options.lease);
        checker.collect();
        checker.start(&asks, pause);
        let probed = probe_all(&listed, &clients).await;
        let checked = checker.latest(&asks);
        let now = jiff::Timestamp::now();
        let next = Published {
            view: published.view.next(probed, now),
            asked: match asks.is_empty() {
                true => Vec::new(),
                false => own,
            },
            checks: published.checks.next(checked, now),
        };
        if next.view != published.view || next.checks != published.checks {
            tracing::info!(
                view = %serde_json::to_string(&next.view).unwrap_or_default(),
                checks = %serde_json::to_string(&next.checks).unwrap_or_default(),
                "observer: what this replica sees changed"
            );
        }
        published = next;
        if publisher.publish(&published).await {
            metrics.wrote("hub", "observer_lease");
            self_fence.reconnected();
        }
        if let Some(own) = options
            .region
            .as_ref()
            .and_then(|r| Some((r, clients.get(r)?)))
        {
            let (region, member) = own;
            let unrenewed = publisher.unrenewed();
            if unrenewed.is_zero() {
                let hub = &hub.requests;
                databases
                    .refresh(hub, &member.client, &options.hub_id, region)
                    .await;
            }
            self_fence
                .act(
                    &member.client,
                    &options.hub_id,
                    region,
                    unrenewed,
                    &published.view,
                    &databases,
                )
                .await;
        }
        let asked: Vec<String> = asks.into_keys().collect();
        let done = checker.done();
        seen.until_next_round(pause, &options.asking, &asked, &done)
            .await;
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
/// refresh (all at once, each bounded); forgets Regions that are gone. A
/// Region whose new client cannot be built keeps its old one until the
/// next refresh.
async fn refresh_clients(
    hub: &Clients,
    regions: &[Arc<Region>],
    clients: &mut BTreeMap<String, Built>,
) {
    clients.retain(|name, _| regions.iter().any(|r| &r.name_any() == name));
    let due: Vec<(String, String, &Arc<Region>)> = regions
        .iter()
        .map(|region| {
            // The spec's generation, not the resourceVersion: the leader's
            // status writes must not rebuild the client (and re-read the
            // Secret); rotated credentials are picked up at the refresh.
            let from = format!(
                "{}:{}",
                region.uid().unwrap_or_default(),
                region.metadata.generation.unwrap_or_default()
            );
            (region.name_any(), from, region)
        })
        .filter(|(name, from, _)| {
            !clients
                .get(name)
                .is_some_and(|b| &b.from == from && b.at.elapsed() < CLIENT_REFRESH)
        })
        .collect();
    let builds = due.into_iter().map(|(name, from, region)| async move {
        let building = tokio::time::timeout(CLIENT_BUILD, credentials::build(hub, &region.spec));
        let built = building
            .await
            .ok()
            .and_then(|r| r.ok())
            .map(|(c, _)| c.requests);
        (name, from, built)
    });
    let at = std::time::Instant::now();
    for (name, from, built) in futures::future::join_all(builds).await {
        match (built, clients.remove(&name)) {
            (Some(client), _) => {
                clients.insert(name, Built { client, from, at });
            }
            // A client that worked is kept: the hub (its Secret) out of
            // reach is no reason to stop probing, nor to lose the way to
            // fence this region. Tried again at the next refresh.
            (None, Some(old)) => {
                tracing::debug!(region = %name, "observer: no new client for the region; keeping the last one");
                clients.insert(name, Built { from, at, ..old });
            }
            (None, None) => {
                tracing::debug!(region = %name, "observer: no client for the region yet")
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
