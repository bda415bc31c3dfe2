//! What every reconcile shares: clients, members, checks, sink caches,
//! metrics, the fence, and the little the operator remembers per app
//! between reconciles (when its last round was, its last status write, its
//! sink retries).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use kube::runtime::reflector::Store;
use kube::{Client, ResourceExt};

use super::hub_config::HubConfig;
use super::leader::Fence;
use super::sinks::SinkCaches;
use super::tenants::Tenants;
use k8s_openapi::api::core::v1::PodTemplateSpec;

use crate::api::{MultiRegionApp, MultiRegionAppSpec, MultiRegionAppStatus};
use crate::metrics::{AppRegionLabels, ConditionLabels, Metrics};
use crate::plan::manifest::AppKey;
use crate::plan::observers::{Observer, Sightings};
use crate::plan::propagate::Propagation;
use crate::regions::Registry;
use crate::regions::http_check::HttpChecks;

/// A round counted because the evidence changed comes at most this often.
const MIN_ROUND_SPACING: Duration = Duration::from_millis(200);

/// The longest wait between two retries of a failing sink.
const MAX_SINK_BACKOFF: Duration = Duration::from_secs(30);

/// An app's last health round.
#[derive(Clone)]
pub(super) struct LastRound {
    at: Instant,
    evidence: String,
    early: Option<Instant>,
    /// When the app's first round since the operator started was.
    first_at: Instant,
}

/// The parts a context is built from.
pub struct Parts {
    pub hub: Client,
    /// The apps, as the app controller sees them.
    pub apps: Store<MultiRegionApp>,
    pub hub_id: String,
    pub registry: Arc<Registry>,
    pub checks: Arc<HttpChecks>,
    pub sinks: Arc<SinkCaches>,
    pub hub_config: HubConfig,
    pub tenants: Tenants,
    pub metrics: Arc<Metrics>,
    pub fence: Fence,
    /// Every replica's observer Lease (see `observe`).
    pub observers: Store<Lease>,
}

/// The last status the operator wrote for an app: written over
/// `from_version`, it produced `version`. A watch that still shows
/// `from_version` is behind that write.
struct LastWrite {
    from_version: String,
    /// The version the write before this one (in the same reconcile:
    /// a move recorded before its sinks are published) started from.
    earlier: Option<String>,
    status: MultiRegionAppStatus,
    version: String,
}

/// What an app last could be placed with: while its spec is invalid (or
/// made invalid by hub objects), health rounds, failover and fencing go on
/// with this.
pub(super) struct Placeable {
    /// The app as it was then: the apps cache's own copy, shared, not
    /// cloned (a spec is a few KiB; a thousand apps held each twice).
    pub app: Arc<MultiRegionApp>,
    pub propagation: Propagation,
}

impl Placeable {
    pub fn spec(&self) -> &MultiRegionAppSpec {
        &self.app.spec
    }

    /// The pod template placed in every region: the spec's, with the
    /// checksum of the propagated config. Built when needed rather than
    /// kept (None only if the spec stopped parsing, which a checked spec
    /// does not).
    pub fn template(&self) -> Option<PodTemplateSpec> {
        let template = crate::plan::manifest::validate_template(self.spec()).ok()?;
        let checksum = self.propagation.checksum();
        Some(crate::plan::propagate::with_checksum(
            template,
            checksum.as_deref(),
        ))
    }
}

/// How long a finalizer this replica added may take to reach its cache
/// before the finalizer helper is let to add it again.
const FINALIZER_SEEN_WITHIN: Duration = Duration::from_secs(10);

/// Shared by every reconcile.
pub struct Context {
    pub(super) hub: Client,
    apps: Store<MultiRegionApp>,
    hub_id: String,
    pub(super) registry: Arc<Registry>,
    pub(super) checks: Arc<HttpChecks>,
    pub(super) sinks: Arc<SinkCaches>,
    /// The hub's ConfigMaps and Secrets that apps propagate.
    pub(super) hub_config: HubConfig,
    /// The hub's Namespaces, whose labels Regions admit apps by.
    pub(super) tenants: Tenants,
    pub metrics: Arc<Metrics>,
    /// The apps' databases, read for their replication lag.
    pub(super) data: crate::data::DataTier,
    /// Whether this replica may write now.
    pub(super) fence: Fence,
    /// Every replica's observer Lease.
    observers: Store<Lease>,
    /// This instance's name in Events and the Lease.
    pub(super) identity: String,
    /// When each app last had a health round, what the evidence was, and
    /// when a round was last counted early for a change of evidence.
    rounds: Mutex<HashMap<AppKey, LastRound>>,
    written: Mutex<HashMap<AppKey, LastWrite>>,
    /// A new app's first status, decided but held back while its regions
    /// settle in (`plan::nothing_judged_yet`), with the resourceVersion it
    /// was decided over: the next reconcile decides from it, so the
    /// verdicts, failed rounds and clocks it carries count.
    held: Mutex<HashMap<AppKey, (String, MultiRegionAppStatus)>>,
    /// Each app's last valid spec, as it was placed.
    placeable: Mutex<HashMap<AppKey, Arc<Placeable>>>,
    /// Failed sink publications in a row, and when to try again.
    sink_retries: Mutex<HashMap<AppKey, (u32, Instant)>>,
    /// The apps (by uid) whose finalizer this replica added, and when,
    /// until the cache shows it.
    finalizing: Mutex<HashMap<String, Instant>>,
}

impl Context {
    pub fn new(parts: Parts, identity: &str) -> Self {
        Context {
            hub: parts.hub.clone(),
            apps: parts.apps,
            hub_id: parts.hub_id,
            registry: parts.registry,
            checks: parts.checks,
            sinks: parts.sinks,
            hub_config: parts.hub_config,
            tenants: parts.tenants,
            metrics: parts.metrics,
            data: crate::data::DataTier::new(parts.hub.clone()),
            fence: parts.fence,
            observers: parts.observers,
            identity: identity.to_string(),
            rounds: Mutex::default(),
            written: Mutex::default(),
            held: Mutex::default(),
            placeable: Mutex::default(),
            sink_retries: Mutex::default(),
            finalizing: Mutex::default(),
        }
    }

    /// What the live observers see of each region now, and every replica
    /// that published an observer Lease.
    pub(super) fn observers(
        &self,
        now: jiff::Timestamp,
    ) -> (BTreeMap<String, Sightings>, Vec<Observer>) {
        let leases = self.observers.state();
        let sightings = crate::observe::sightings(leases.iter().map(|l| &**l), now);
        (
            sightings,
            crate::observe::observers(leases.iter().map(|l| &**l)),
        )
    }

    /// What the live observers' own checks of the HTTP check asked about
    /// as `id` saw.
    pub(super) fn endpoint_seen(&self, id: &str) -> Sightings {
        let leases = self.observers.state();
        crate::observe::check_sightings(leases.iter().map(|l| &**l), id, jiff::Timestamp::now())
    }

    /// Remembers what the app can be placed with now (the app as cached,
    /// so the copy it replaces, with an older status, is let go).
    pub(super) fn remember_placeable(&self, key: &AppKey, placeable: &Arc<Placeable>) {
        if let Ok(mut all) = self.placeable.lock() {
            all.insert(key.clone(), placeable.clone());
        }
    }

    /// What the app could last be placed with, since this replica started.
    pub(super) fn last_placeable(&self, key: &AppKey) -> Option<Arc<Placeable>> {
        self.placeable.lock().ok()?.get(key).cloned()
    }

    /// Some app that is not being deleted names the region in its spec,
    /// its status or its pending cleanup. (Apps being deleted never hold a
    /// Region: their cleanup gives up on a Region that is deleted.)
    ///
    /// None until the apps are listed: a Region is never released on a
    /// half-listed cache (after a restart or a new leader). For a Region
    /// being deleted, a pending cleanup does not count: its cleanup gives
    /// up once the Region is gone, so holding it would wait for ever.
    pub(super) fn region_in_use(&self, region: &str, deleting: bool) -> Option<bool> {
        if !crate::regions::store_ready(&self.apps) {
            return None;
        }
        let in_use = self
            .apps
            .state()
            .iter()
            .filter(|app| app.metadata.deletion_timestamp.is_none())
            .any(|app| match deleting {
                true => super::serves_in(app, region),
                false => super::uses_region(app, region),
            });
        Some(in_use)
    }

    pub(super) fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// The app's identity on what the operator places for it.
    pub(super) fn key_of(&self, app: &MultiRegionApp) -> AppKey {
        AppKey {
            hub: self.hub_id.clone(),
            namespace: app.namespace().unwrap_or_default(),
            name: app.name_any(),
        }
    }

    /// The status to decide from, and the resourceVersion it belongs to:
    /// our last write when the watched copy is still the one before it.
    pub(super) fn fresh_status(
        &self,
        key: &AppKey,
        app: &MultiRegionApp,
    ) -> (MultiRegionAppStatus, Option<String>) {
        let watched = app.status.clone().unwrap_or_default();
        let version = app.resource_version();
        let Ok(mut written) = self.written.lock() else {
            return (watched, version);
        };
        // The watch shows our last write: its copy is no longer needed (a
        // status per app kept for nothing, at 1,000 apps).
        if written
            .get(key)
            .is_some_and(|last| version.as_deref() == Some(last.version.as_str()))
        {
            written.remove(key);
        }
        match written.get(key) {
            Some(last)
                if version.as_deref() == Some(last.from_version.as_str())
                    || version.is_some() && version == last.earlier =>
            {
                (last.status.clone(), Some(last.version.clone()))
            }
            _ => (watched, version),
        }
    }

    /// Keeps a new app's first status, decided over `version` and not
    /// written (see `held`).
    pub(super) fn hold(&self, key: &AppKey, version: Option<&str>, status: MultiRegionAppStatus) {
        let Some(version) = version else { return };
        if let Ok(mut held) = self.held.lock() {
            held.insert(key.clone(), (version.to_string(), status));
        }
    }

    /// What the next decision starts from: the status held back over this
    /// very version, if any, with the hub's weights (`plan::held_basis`; a
    /// held status over another version, the app changed since, is
    /// dropped), else the status written.
    pub(super) fn basis(
        &self,
        key: &AppKey,
        version: Option<&str>,
        written: &MultiRegionAppStatus,
    ) -> MultiRegionAppStatus {
        let Ok(mut held) = self.held.lock() else {
            return written.clone();
        };
        match held.get(key) {
            Some((over, status)) if Some(over.as_str()) == version => {
                crate::plan::held_basis(status, written)
            }
            Some(_) => {
                held.remove(key);
                written.clone()
            }
            None => written.clone(),
        }
    }

    pub(super) fn remember_write(
        &self,
        key: &AppKey,
        from_version: Option<String>,
        status: MultiRegionAppStatus,
        version: Option<String>,
    ) {
        if let Ok(mut held) = self.held.lock() {
            held.remove(key);
        }
        let (Some(from_version), Some(version)) = (from_version, version) else {
            return;
        };
        if let Ok(mut written) = self.written.lock() {
            let earlier = written
                .get(key)
                .filter(|before| before.version == from_version)
                .map(|before| before.from_version.clone());
            let last = LastWrite {
                from_version,
                earlier,
                status,
                version,
            };
            written.insert(key.clone(), last);
        }
    }

    /// Whether a health round is due for the app, and how long until the
    /// next: every interval, and at once when the evidence changed (a
    /// probe or HTTP check flipped), so detection does not wait up to one
    /// more interval. The thresholds still count rounds an interval apart.
    ///
    /// A due round is returned, not remembered: the caller remembers it
    /// (`round_recorded`) once the status that counts it is written, so a
    /// pass that fails before that (a refused status write, a hold) takes
    /// the round again instead of losing it.
    pub(super) fn round_due(
        &self,
        key: &AppKey,
        interval: Duration,
        evidence: &str,
    ) -> (Option<LastRound>, Duration) {
        let now = Instant::now();
        let Ok(rounds) = self.rounds.lock() else {
            let round = LastRound {
                at: now,
                evidence: evidence.to_string(),
                early: None,
                first_at: now,
            };
            return (Some(round), interval);
        };
        let mut early = None;
        let last = rounds.get(key);
        if let Some(last) = last {
            let since = now.duration_since(last.at);
            // At most one early round per interval: two sources flipping a
            // moment apart (the probe, then the HTTP check) must not count
            // as two rounds.
            let may_be_early = last.early.is_none_or(|e| now.duration_since(e) >= interval);
            let changed = last.evidence != evidence && since >= MIN_ROUND_SPACING && may_be_early;
            // A little slack so a requeue that fires a hair early still counts.
            let due = since + Duration::from_millis(50) >= interval;
            if !changed && !due {
                return (None, interval.saturating_sub(since));
            }
            early = if changed && !due {
                Some(now)
            } else {
                last.early
            };
        }
        let round = LastRound {
            at: now,
            evidence: evidence.to_string(),
            early,
            first_at: last.map_or(now, |l| l.first_at),
        };
        (Some(round), interval)
    }

    /// Whether the app is settling in: not judged yet by this process, or
    /// less than `window` since its first round here (`round`: this
    /// reconcile's, if it takes one).
    pub(super) fn settling_in(
        &self,
        key: &AppKey,
        round: Option<&LastRound>,
        window: Duration,
    ) -> bool {
        let first = match round {
            Some(round) => Some(round.first_at),
            None => self
                .rounds
                .lock()
                .ok()
                .and_then(|rounds| rounds.get(key).map(|l| l.first_at)),
        };
        first.is_none_or(|at| at.elapsed() < window)
    }

    /// The round is counted (in a written status, or judged not worth a
    /// write): the next is due an interval (or a change of evidence) from
    /// it.
    pub(super) fn round_recorded(&self, key: &AppKey, round: &LastRound) {
        if let Ok(mut rounds) = self.rounds.lock() {
            rounds.insert(key.clone(), round.clone());
        }
    }

    /// Whether the app's sinks may be written now (not backing off).
    pub(super) fn sink_attempt_due(&self, key: &AppKey) -> bool {
        self.sink_retries
            .lock()
            .map(|r| r.get(key).is_none_or(|(_, at)| Instant::now() >= *at))
            .unwrap_or(true)
    }

    /// Records a publication; returns how long until the next attempt
    /// when it failed (1 s doubling to 30 s).
    pub(super) fn sinks_published(&self, key: &AppKey, ok: bool) -> Option<Duration> {
        let mut retries = self.sink_retries.lock().ok()?;
        if ok {
            retries.remove(key);
            return None;
        }
        let failures = retries.get(key).map_or(0, |(n, _)| *n) + 1;
        let wait =
            (Duration::from_secs(1) * 2u32.saturating_pow(failures - 1)).min(MAX_SINK_BACKOFF);
        retries.insert(key.clone(), (failures, Instant::now() + wait));
        Some(wait)
    }

    /// Health and weight gauges of the app's regions.
    pub(super) fn record_metrics(&self, key: &AppKey, status: &MultiRegionAppStatus) {
        for region in &status.regions {
            let labels = AppRegionLabels {
                namespace: key.namespace.clone(),
                app: key.name.clone(),
                region: region.name.clone(),
            };
            let healthy = region.health.serves();
            self.metrics
                .app_region_healthy
                .get_or_create(&labels)
                .set(i64::from(healthy));
            self.metrics
                .traffic_weight
                .get_or_create(&labels)
                .set(i64::from(region.weight));
            let ratio = f64::from(region.weight) / 100.0;
            self.metrics
                .traffic_weight_ratio
                .get_or_create(&labels)
                .set(ratio);
        }
        for condition in &status.conditions {
            let labels = ConditionLabels {
                namespace: key.namespace.clone(),
                app: key.name.clone(),
                condition: condition.type_.clone(),
            };
            let on = condition.status == "True";
            self.metrics
                .app_condition
                .get_or_create(&labels)
                .set(i64::from(on));
        }
    }

    /// Whether to wait for the cache before reconciling `app`: its
    /// finalizer was added here less than `FINALIZER_SEEN_WITHIN` ago and
    /// this copy is older. kube's finalizer helper would add it again with
    /// a JSON patch whose test the hub refuses (422): a failed write and a
    /// reconcile error each, for every app reconciled twice at start.
    pub(super) fn finalizer_not_seen_yet(&self, app: &MultiRegionApp, finalizer: &str) -> bool {
        let Some(uid) = app.metadata.uid.as_deref() else {
            return false;
        };
        let Ok(mut finalizing) = self.finalizing.lock() else {
            return false;
        };
        if app.finalizers().iter().any(|f| f == finalizer) {
            finalizing.remove(uid);
            return false;
        }
        finalizing.retain(|_, at| at.elapsed() < FINALIZER_SEEN_WITHIN);
        finalizing.contains_key(uid)
    }

    /// Records that the finalizer was just added to `app`.
    pub(super) fn finalizer_added(&self, app: &MultiRegionApp) {
        if let (Some(uid), Ok(mut finalizing)) = (app.metadata.uid.clone(), self.finalizing.lock())
        {
            finalizing.insert(uid, Instant::now());
        }
    }

    /// Drops what the operator kept about a deleted app.
    pub(super) fn forget(&self, key: &AppKey) {
        if let Ok(mut rounds) = self.rounds.lock() {
            rounds.remove(key);
        }
        if let Ok(mut written) = self.written.lock() {
            written.remove(key);
        }
        if let Ok(mut held) = self.held.lock() {
            held.remove(key);
        }
        if let Ok(mut retries) = self.sink_retries.lock() {
            retries.remove(key);
        }
        if let Ok(mut placeable) = self.placeable.lock() {
            placeable.remove(key);
        }
    }
}
