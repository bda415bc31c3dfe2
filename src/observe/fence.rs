//! The self-fence: a replica cut off from the hub fences, in its own
//! region, the apps active there, before anyone else may promote another
//! region in their place (`docs/behaviour.md`, "Several observers, one
//! verdict").
//!
//! It acts only when both hold: its observer Lease could not be renewed for
//! the app's `selfFenceSeconds` (read from the Deployment's
//! `multiregion.io/self-fence` annotation: the hub cannot be asked), and it
//! cannot reach a majority of the other regions either (its region is cut
//! off, not the hub broken: with every region reachable, a hub that lost
//! its quorum fences nothing). It only takes capacity away: role label
//! `standby`, standby replicas, and the app's role ConfigMap says
//! `standby` (`decidedBy: self-fence`), and the app's database in this
//! region refuses writes (`default_transaction_read_only`, its sessions
//! ended: the data tier's fence), when the app has a PostgreSQL data tier.
//! The database's URI is read from the hub while the replica reaches it
//! (`Databases`, every 15 s), since a cut-off replica cannot ask. Each
//! Deployment once per cut (its database until the fence holds); what it
//! changed carries the applied-hash `self-fenced`, so the leader puts back
//! what it decides once it reaches the region again.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::ResourceExt;
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde_json::json;

use super::view::{View, Word};
use crate::api::{
    ANNOTATION_APPLIED_HASH, ANNOTATION_SELF_FENCE, FIELD_MANAGER, LABEL_APP, LABEL_APP_NAMESPACE,
    LABEL_HUB, LABEL_MANAGED_BY, LABEL_ROLE, Role,
};
use crate::plan::manifest::{self, AppKey};
use crate::plan::observers::{cut_off, must_fence_itself};
use crate::plan::replication::{ReplicatedStore, Target};

/// The longest one list or patch of the region's own member may take.
const MEMBER_CALL: Duration = Duration::from_secs(2);

/// The Deployments (and databases) fenced in the current cut, forgotten
/// once the replica renews its Lease again.
#[derive(Default)]
pub(super) struct SelfFence {
    fenced: HashSet<String>,
    databases_fenced: HashSet<String>,
    /// Apps whose database could not be fenced for want of its URI, said
    /// once per cut.
    databases_unknown: HashSet<String>,
}

impl SelfFence {
    /// The replica renewed its Lease: the next cut starts afresh.
    pub fn reconnected(&mut self) {
        self.fenced.clear();
        self.databases_fenced.clear();
        self.databases_unknown.clear();
    }

    /// Fences what is due in `region` (this replica's own), given how long
    /// its Lease has gone unrenewed and what it sees of the others; the
    /// apps' databases as `databases` last read them.
    pub async fn act(
        &mut self,
        member: &kube::Client,
        hub_id: &str,
        region: &str,
        unrenewed: Duration,
        view: &View,
        databases: &Databases,
    ) {
        if unrenewed.is_zero() || !isolated(view, region) {
            return;
        }
        let Some(active) = active_here(member, hub_id).await else {
            return;
        };
        let due: Vec<(Deployment, Wanted)> = active
            .into_iter()
            .filter_map(|d| fence_of(&d).map(|wanted| (d, wanted)))
            .filter(|(_, w)| must_fence_itself(unrenewed, Duration::from_secs(w.seconds)))
            .collect();
        // The databases first, all at once: they are what must not take
        // writes, and one slow database must not hold up the others.
        self.fence_databases(&due, databases, region).await;
        for (deployment, wanted) in due {
            let key = key_of(&deployment);
            if self.fenced.contains(&key) {
                continue;
            }
            if fence(member, &deployment, wanted.standby).await {
                tracing::warn!(deployment = %key, region, unrenewed = ?unrenewed, "self-fence: cut off from the hub; this region's active app is now a standby");
                tell_the_app(member, &deployment, hub_id, region).await;
                self.fenced.insert(key);
            }
        }
    }

    /// Fences the databases of the `due` apps not fenced yet in this cut;
    /// says so once for an app whose database this replica could not read
    /// before the cut (nothing fences it then: the leader's own data step
    /// still will, once it reaches it).
    async fn fence_databases(
        &mut self,
        due: &[(Deployment, Wanted)],
        databases: &Databases,
        region: &str,
    ) {
        let mut fences = Vec::new();
        for (deployment, wanted) in due {
            let key = key_of(deployment);
            if wanted.database.is_none() || self.databases_fenced.contains(&key) {
                continue;
            }
            match databases.known.get(&key) {
                Some(target) => fences.push(async move {
                    let held = fence_database(target, &key, region).await;
                    (key, held)
                }),
                None => {
                    if self.databases_unknown.insert(key.clone()) {
                        tracing::warn!(deployment = %key, region, "self-fence: this region's database was not read before the cut (no key for the region in the Secret, or not read yet): it is not fenced");
                    }
                }
            }
        }
        for (key, held) in futures::future::join_all(fences).await {
            if held {
                self.databases_fenced.insert(key);
            }
        }
    }
}

/// `NAMESPACE/NAME` of a placed Deployment.
fn key_of(deployment: &Deployment) -> String {
    format!(
        "{}/{}",
        deployment.namespace().unwrap_or_default(),
        deployment.name_any()
    )
}

/// The longest the database fence may take (its connection, the setting,
/// the sessions ended).
const DATABASE_FENCE: Duration = Duration::from_secs(10);

/// The data tier's fence on this region's database; true once it holds.
async fn fence_database(target: &Target, key: &str, region: &str) -> bool {
    let store = crate::data::postgres::Connections::default();
    match tokio::time::timeout(DATABASE_FENCE, store.fence(target)).await {
        Ok(Ok(true)) => {
            tracing::warn!(deployment = %key, region, "self-fence: cut off from the hub; this region's database refuses writes now");
            true
        }
        Ok(Ok(false)) => {
            tracing::warn!(deployment = %key, region, "self-fence: this region's database does not answer; tried again next round");
            false
        }
        Ok(Err(why)) => {
            let why = crate::data::redact(&why, &target.uri);
            tracing::warn!(deployment = %key, region, error = %why, "self-fence: cannot fence this region's database");
            false
        }
        Err(_) => {
            tracing::warn!(deployment = %key, region, "self-fence: fencing this region's database timed out");
            false
        }
    }
}

/// How often the databases of the apps active here are read again.
const DATABASES_REFRESH: Duration = Duration::from_secs(15);

/// This region's database of each app active here that has a PostgreSQL
/// data tier, by Deployment (`NAMESPACE/NAME`), read from the hub while the
/// replica reaches it: a cut-off replica cannot read the Secret then.
#[derive(Default)]
pub(super) struct Databases {
    known: HashMap<String, Target>,
    read_at: Option<Instant>,
}

impl Databases {
    /// Reads them again, at most every 15 s: the active Deployments here
    /// whose self-fence names a Secret, and that Secret's key for
    /// `region`. One that cannot be read now keeps what was read before.
    pub async fn refresh(
        &mut self,
        hub: &kube::Client,
        member: &kube::Client,
        hub_id: &str,
        region: &str,
    ) {
        if self
            .read_at
            .is_some_and(|at| at.elapsed() < DATABASES_REFRESH)
        {
            return;
        }
        self.read_at = Some(Instant::now());
        let Some(active) = active_here(member, hub_id).await else {
            return;
        };
        let mut known = HashMap::new();
        for deployment in active {
            let key = key_of(&deployment);
            let secret = fence_of(&deployment).and_then(|f| f.database);
            let namespace = deployment.labels().get(LABEL_APP_NAMESPACE).cloned();
            let (Some(secret), Some(namespace)) = (secret, namespace) else {
                continue;
            };
            match read_target(hub, &namespace, &secret, region).await {
                Some(target) => {
                    known.insert(key, target);
                }
                None => {
                    if let Some(old) = self.known.remove(&key) {
                        known.insert(key, old);
                    }
                }
            }
        }
        self.known = known;
    }
}

/// `region`'s key of the Secret, as the data tier reads it.
async fn read_target(
    hub: &kube::Client,
    namespace: &str,
    secret: &str,
    region: &str,
) -> Option<Target> {
    let api: Api<Secret> = Api::namespaced(hub.clone(), namespace);
    let read = tokio::time::timeout(MEMBER_CALL, api.get_opt(secret)).await;
    let secret = read.ok()?.ok()??;
    crate::data::targets(secret).remove(region)?.ok()
}

/// Whether this replica's own probes find `region` cut off from most other
/// regions (`plan::observers::cut_off`).
fn isolated(view: &View, region: &str) -> bool {
    let others: Vec<Word> = view
        .0
        .iter()
        .filter(|(name, _)| *name != region)
        .map(|(_, e)| e.seen)
        .collect();
    let failing = others.iter().filter(|w| **w == Word::Failing).count();
    cut_off(others.len(), failing)
}

/// The active Deployments this hub placed in the member.
async fn active_here(member: &kube::Client, hub_id: &str) -> Option<Vec<Deployment>> {
    let api: Api<Deployment> = Api::all(member.clone());
    let selector =
        format!("{LABEL_MANAGED_BY}=multiregion,{LABEL_ROLE}=active,{LABEL_HUB}={hub_id}");
    let listed = tokio::time::timeout(
        MEMBER_CALL,
        api.list(&ListParams::default().labels(&selector)),
    )
    .await;
    match listed {
        Ok(Ok(list)) => Some(list.items),
        Ok(Err(err)) => {
            tracing::warn!(error = %err, "self-fence: cannot list this region's active apps");
            None
        }
        Err(_) => {
            tracing::warn!("self-fence: listing this region's active apps timed out");
            None
        }
    }
}

/// What the Deployment's self-fence annotation asks for.
#[derive(Debug, PartialEq, Eq)]
struct Wanted {
    seconds: u64,
    standby: i32,
    /// The Secret of the app's database URIs, if it has a data tier.
    database: Option<String>,
}

/// `SECONDS/STANDBY[/SECRET]` of the Deployment's self-fence annotation.
fn fence_of(deployment: &Deployment) -> Option<Wanted> {
    let text = deployment.annotations().get(ANNOTATION_SELF_FENCE)?;
    let mut parts = text.splitn(3, '/');
    let seconds = parts.next()?.trim().parse().ok()?;
    let standby = parts.next()?.trim().parse().ok()?;
    let database = parts.next().map(str::trim).filter(|s| !s.is_empty());
    Some(Wanted {
        seconds,
        standby,
        database: database.map(str::to_string),
    })
}

/// Marks what the self-fence changed: the leader's applied-hash no longer
/// matches, so once it reaches the region again it applies what it decides.
const SELF_FENCED: &str = "self-fenced";

/// Role `standby` and standby replicas, over the version read (so a
/// Deployment the leader changed meanwhile is left to the leader).
async fn fence(member: &kube::Client, deployment: &Deployment, standby: i32) -> bool {
    let api: Api<Deployment> =
        Api::namespaced(member.clone(), &deployment.namespace().unwrap_or_default());
    let patch = json!({
        "metadata": {
            "labels": {LABEL_ROLE: "standby"},
            "annotations": {ANNOTATION_APPLIED_HASH: SELF_FENCED},
            "resourceVersion": deployment.resource_version(),
        },
        "spec": {"replicas": standby},
    });
    let (name, params, merge) = (
        deployment.name_any(),
        PatchParams::default(),
        Patch::Merge(&patch),
    );
    match tokio::time::timeout(MEMBER_CALL, api.patch(&name, &params, &merge)).await {
        Ok(Ok(_)) => true,
        Ok(Err(err)) => {
            tracing::warn!(error = %err, "self-fence: cannot fence a Deployment");
            false
        }
        Err(_) => false,
    }
}

/// The app's role ConfigMap says `standby`, decided by the self-fence, so
/// the app (or its database proxy) stops taking writes here.
async fn tell_the_app(member: &kube::Client, deployment: &Deployment, hub_id: &str, region: &str) {
    let labels = deployment.labels();
    let (Some(name), Some(namespace)) = (labels.get(LABEL_APP), labels.get(LABEL_APP_NAMESPACE))
    else {
        return;
    };
    let key = AppKey {
        hub: hub_id.to_string(),
        namespace: namespace.clone(),
        name: name.clone(),
    };
    let now = jiff::Timestamp::now();
    let Some(mut map) = manifest::role_config_map(&key, region, Role::Standby, now, "self-fence")
    else {
        return;
    };
    map.metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert(ANNOTATION_APPLIED_HASH.to_string(), SELF_FENCED.to_string());
    let api: Api<ConfigMap> = Api::namespaced(member.clone(), &key.namespace);
    let name = map.name_any();
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let apply = Patch::Apply(&map);
    match tokio::time::timeout(MEMBER_CALL, api.patch(&name, &params, &apply)).await {
        Ok(Ok(_)) => {}
        Ok(Err(err)) => {
            tracing::warn!(error = %err, "self-fence: cannot write the app's role ConfigMap")
        }
        Err(_) => tracing::warn!("self-fence: writing the app's role ConfigMap timed out"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::view::Entry;

    fn view(words: &[(&str, Word)]) -> View {
        View(
            words
                .iter()
                .map(|(r, w)| {
                    (
                        r.to_string(),
                        Entry {
                            seen: *w,
                            since: None,
                        },
                    )
                })
                .collect(),
        )
    }

    #[test]
    fn only_a_region_cut_off_from_most_others_is_isolated() {
        use Word::*;
        let cut = view(&[("a", Serving), ("b", Failing), ("c", Failing)]);
        assert!(isolated(&cut, "a"));
        let hub_down = view(&[("a", Serving), ("b", Serving), ("c", Serving)]);
        assert!(
            !isolated(&hub_down, "a"),
            "the hub lost, the regions reachable: no fence"
        );
        let one = view(&[("a", Serving), ("b", Failing), ("c", Serving)]);
        assert!(
            !isolated(&one, "a"),
            "one other region lost is not isolation"
        );
        assert!(
            !isolated(&view(&[("a", Serving)]), "a"),
            "no other region to judge by"
        );
    }

    #[test]
    fn the_annotation_reads_back() {
        let mut d = Deployment::default();
        d.metadata.annotations =
            Some([(ANNOTATION_SELF_FENCE.to_string(), "10/1".to_string())].into());
        let wanted = |database: Option<&str>| Wanted {
            seconds: 10,
            standby: 1,
            database: database.map(str::to_string),
        };
        assert_eq!(fence_of(&d), Some(wanted(None)));
        d.metadata.annotations = Some(
            [(
                ANNOTATION_SELF_FENCE.to_string(),
                "10/1/shop-db".to_string(),
            )]
            .into(),
        );
        assert_eq!(fence_of(&d), Some(wanted(Some("shop-db"))));
        d.metadata.annotations =
            Some([(ANNOTATION_SELF_FENCE.to_string(), "ten".to_string())].into());
        assert_eq!(fence_of(&d), None);
    }
}
