//! Member clusters: a client per Region (from its kubeconfig Secret, or the
//! hub itself for `local: true`), a probe task per Region, label-scoped
//! watches of the Deployments and Services the operator placed there, and
//! the HTTP checks of the regions' endpoints.
//!
//! Everything observed here feeds the app reconciles through triggers; the
//! decisions are made in `plan/`.

pub(crate) mod credentials;
pub mod http_check;
mod member;
pub(crate) mod probe;
pub mod tokens;
mod watch;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use kube::runtime::reflector::ObjectRef;
use kube::{Client, ResourceExt};
use tokio::sync::mpsc::UnboundedSender;

use crate::api::{
    ANNOTATION_CONFINED_IDENTITY, ANNOTATION_MEMBER_IDENTITY, LABEL_MANAGED_BY, MultiRegionApp,
    Region, RegionSpec,
};
use crate::deadline::Clients;
use crate::fence::Fence;
use crate::metrics::Metrics;

pub use credentials::CredentialsError;
pub(crate) use member::Placed;
pub use member::{Member, ProbeState};
#[cfg(test)]
pub(crate) use watch::PerNamespace;
pub use watch::app_of as watch_app_of;
pub(crate) use watch::{CachedWatch, Heard, cached_watch, store_ready};

/// Something changed that apps should look at again.
#[derive(Clone, Debug)]
pub enum Trigger {
    /// Every app placed in this region.
    Region(String),
    /// One app.
    App(ObjectRef<MultiRegionApp>),
    /// A ConfigMap or Secret of this hub namespace changed: the apps there
    /// that propagate something.
    Propagated(String),
    /// This hub Namespace changed (its labels decide which Regions its
    /// apps may use): every app in it.
    Namespace(String),
}

/// All members, shared by the Region controller, the probes and the app
/// reconciles.
pub struct Registry {
    members: RwLock<HashMap<String, Arc<Member>>>,
    /// The Region list has been read once: a missing member means the
    /// Region does not exist.
    synced: AtomicBool,
    hub: Clients,
    triggers: UnboundedSender<Trigger>,
    metrics: Arc<Metrics>,
    /// Region status is written only while this replica may write.
    fence: Fence,
}

impl Registry {
    pub fn new(
        hub: Clients,
        triggers: UnboundedSender<Trigger>,
        metrics: Arc<Metrics>,
        fence: Fence,
    ) -> Arc<Self> {
        Arc::new(Registry {
            members: RwLock::default(),
            synced: AtomicBool::new(false),
            hub,
            triggers,
            metrics,
            fence,
        })
    }

    pub fn get(&self, name: &str) -> Option<Arc<Member>> {
        self.members.read().ok()?.get(name).cloned()
    }

    pub fn is_synced(&self) -> bool {
        self.synced.load(Ordering::Relaxed)
    }

    pub fn mark_synced(&self) {
        self.synced.store(true, Ordering::Relaxed);
    }

    pub fn names(&self) -> Vec<String> {
        self.members
            .read()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Brings the member for `region` up to date: a new client (and new
    /// tasks) when its credentials changed, else only the spec.
    ///
    /// Hub-side mistakes are no evidence against a region: while a member
    /// works, credentials that cannot be read or used, or a new client that
    /// does not answer its first probe, keep the working member (the Region
    /// says so: `CredentialsCurrent=False`, and
    /// `multiregion_region_credentials_stale` is 1).
    pub async fn upsert(self: &Arc<Self>, region: &Region) {
        let name = region.name_any();
        let built = credentials::build(&self.hub, &region.spec).await;
        // A Region deleted and made again is a new Region: a new member
        // (whose probe writes the new object's status).
        let uid = region.uid().unwrap_or_default();
        let key = match &built {
            Ok((_, key)) => format!("{uid}:{key}"),
            Err(err) => format!("{uid}:error:{err}"),
        };
        let existing = self.get(&name);
        let confined = region
            .annotations()
            .get(ANNOTATION_CONFINED_IDENTITY)
            .cloned();
        if let Some(existing) = &existing {
            existing.set_confined_identity(confined.clone());
            let deleting = existing.set_deleting(region.metadata.deletion_timestamp.is_some());
            let current = existing.config_key() == key;
            if current {
                // The Region's credentials are the ones in use (again).
                self.credentials_current(&name, None).await;
            }
            if current || self.keeps(existing, &built).await {
                if existing.set_spec(&region.spec) || deleting {
                    self.trigger(Trigger::Region(name));
                }
                return;
            }
        }
        self.credentials_current(&name, None).await;
        let initial = probe::initial_state(region);
        let member = match built {
            Ok((clients, _)) => {
                self.start_member(&name, region.spec.clone(), clients, key, initial)
            }
            Err(err) => {
                tracing::warn!(region = %name, error = %err, "region credentials unusable");
                let report = probe::report_credentials_error(&self.hub.requests, &name, &err);
                self.fence
                    .within(probe::STATUS_WRITE_DEADLINE, report)
                    .await;
                Arc::new(Member::unusable(
                    &name,
                    region.spec.clone(),
                    Some(err),
                    key,
                    initial,
                ))
            }
        };
        member.set_deleting(region.metadata.deletion_timestamp.is_some());
        member.set_confined_identity(confined);
        self.insert(member);
    }

    /// Whether `existing`, a member that works, stays instead of one built
    /// from `built`: when `built` failed, or its client does not answer a
    /// first probe.
    async fn keeps(
        &self,
        existing: &Member,
        built: &Result<(Clients, String), CredentialsError>,
    ) -> bool {
        if existing.client().is_err() {
            return false;
        }
        let why = match built {
            Err(err) => err.to_string(),
            Ok((clients, _)) => {
                match probe::answers(&clients.requests, &existing.spec().probe).await {
                    Ok(()) => return false,
                    Err(why) => format!("the new credentials' client does not answer: {why}"),
                }
            }
        };
        tracing::warn!(region = %existing.name(), error = %why, "keeping the region's working client");
        self.credentials_current(existing.name(), Some(&why)).await;
        true
    }

    /// Says on each Region made by `join` whether its identity is confined
    /// (`CredentialsConfined`), while this replica may write, whenever the
    /// Region (as watched) does not say so yet; a Region made by hand gets
    /// no such condition (its credentials are the admin's choice).
    pub async fn report_confinements(&self, regions: &[Arc<Region>]) {
        for region in regions {
            let annotations = region.annotations();
            if !annotations.contains_key(ANNOTATION_MEMBER_IDENTITY) {
                continue;
            }
            let confined = annotations.contains_key(ANNOTATION_CONFINED_IDENTITY);
            let said = region.status.as_ref().and_then(|s| {
                let c = s
                    .conditions
                    .iter()
                    .find(|c| c.type_ == "CredentialsConfined")?;
                Some(c.status == "True")
            });
            if said == Some(confined) || self.fence.check().is_err() {
                continue;
            }
            let name = region.name_any();
            let report = probe::report_confinement(&self.hub.requests, &name, confined);
            self.fence
                .within(probe::STATUS_WRITE_DEADLINE, report)
                .await;
        }
    }

    /// Records whether the member uses the Region's current credentials
    /// (`why` not: they are unusable) on the Region and in metrics.
    async fn credentials_current(&self, name: &str, why: Option<&str>) {
        let labels = crate::metrics::RegionLabels {
            region: name.to_string(),
        };
        let now = i64::from(why.is_some());
        let was = self
            .metrics
            .region_credentials_stale
            .get_or_create(&labels)
            .set(now);
        if was != now {
            let report = probe::report_credentials_current(&self.hub.requests, name, why);
            self.fence
                .within(probe::STATUS_WRITE_DEADLINE, report)
                .await;
        }
    }

    fn insert(&self, member: Arc<Member>) {
        let name = member.name().to_string();
        if let Ok(mut members) = self.members.write() {
            members.insert(name.clone(), member);
        }
        self.trigger(Trigger::Region(name));
    }

    /// Forgets members whose Region is gone.
    pub fn retain(&self, existing: &HashSet<String>) {
        let removed: Vec<String> = match self.members.write() {
            Ok(mut members) => {
                let gone: Vec<String> = members
                    .keys()
                    .filter(|k| !existing.contains(*k))
                    .cloned()
                    .collect();
                for name in &gone {
                    members.remove(name);
                }
                gone
            }
            Err(_) => Vec::new(),
        };
        for name in removed {
            tracing::info!(region = %name, "region removed");
            self.trigger(Trigger::Region(name));
        }
    }

    fn start_member(
        self: &Arc<Self>,
        name: &str,
        spec: RegionSpec,
        clients: Clients,
        key: String,
        initial: ProbeState,
    ) -> Arc<Member> {
        let selector = format!("{LABEL_MANAGED_BY}=multiregion");
        let triggers = self.triggers.clone();
        let (client, watches) = (clients.requests, clients.watches);
        let heard = Heard::new();
        let (deployments, deployment_task) =
            watch::watch_deployments(name, &watches, &selector, triggers.clone(), heard.clone());
        let (services, service_task) = watch::watch_placed_meta::<Service>(
            name,
            &watches,
            &selector,
            triggers.clone(),
            Heard::new(),
        );
        let config_maps_by_app = Arc::default();
        let (config_maps, config_map_task) = watch::watch_placed_when_allowed::<ConfigMap>(
            name,
            &watches,
            &selector,
            triggers.clone(),
            Arc::clone(&config_maps_by_app),
        );
        let secrets = watch::PerNamespace::<Secret>::new(name, &watches, &selector, triggers);
        tracing::info!(region = %name, "region client ready");
        let placed = Placed {
            deployments,
            heard,
            services,
            config_maps,
            config_maps_by_app,
            secrets,
        };
        let member = Arc::new(Member::connected(
            name,
            spec,
            client.clone(),
            key,
            initial,
            placed,
        ));
        member.add_task(deployment_task);
        member.add_task(service_task);
        member.add_task(config_map_task);
        // The probe holds the member weakly: it ends when the member is
        // replaced or removed (whose Drop also aborts it).
        member.add_task(tokio::spawn(probe::run(
            Arc::downgrade(self),
            Arc::downgrade(&member),
            client,
        )));
        member
    }

    /// The hub's request client.
    pub(crate) fn hub(&self) -> &Client {
        &self.hub.requests
    }

    pub(crate) fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    pub(crate) fn fence(&self) -> &Fence {
        &self.fence
    }

    pub(crate) fn trigger(&self, trigger: Trigger) {
        let _ = self.triggers.send(trigger);
    }

    /// Puts a member in place as is: for tests that drive a reconcile
    /// against a mocked API server.
    #[cfg(test)]
    pub(crate) fn insert_for_test(&self, member: Member) {
        self.insert(Arc::new(member));
    }
}
