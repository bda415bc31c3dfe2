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
//! `standby` (`decidedBy: self-fence`). Each Deployment once per cut; what
//! it changed carries the applied-hash `self-fenced`, so the leader puts
//! back what it decides once it reaches the region again.

use std::collections::HashSet;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
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

/// The longest one list or patch of the region's own member may take.
const MEMBER_CALL: Duration = Duration::from_secs(2);

/// The Deployments fenced in the current cut, forgotten once the replica
/// renews its Lease again.
#[derive(Default)]
pub(super) struct SelfFence {
    fenced: HashSet<String>,
}

impl SelfFence {
    /// The replica renewed its Lease: the next cut starts afresh.
    pub fn reconnected(&mut self) {
        self.fenced.clear();
    }

    /// Fences what is due in `region` (this replica's own), given how long
    /// its Lease has gone unrenewed and what it sees of the others.
    pub async fn act(
        &mut self,
        member: &kube::Client,
        hub_id: &str,
        region: &str,
        unrenewed: Duration,
        view: &View,
    ) {
        if unrenewed.is_zero() || !isolated(view, region) {
            return;
        }
        let Some(active) = active_here(member, hub_id).await else {
            return;
        };
        for deployment in active {
            let key = format!(
                "{}/{}",
                deployment.namespace().unwrap_or_default(),
                deployment.name_any()
            );
            let Some((seconds, standby)) = fence_of(&deployment) else {
                continue;
            };
            let due = must_fence_itself(unrenewed, Duration::from_secs(seconds));
            if !due || self.fenced.contains(&key) {
                continue;
            }
            if fence(member, &deployment, standby).await {
                tracing::warn!(deployment = %key, region, unrenewed = ?unrenewed, "self-fence: cut off from the hub; this region's active app is now a standby");
                tell_the_app(member, &deployment, hub_id, region).await;
                self.fenced.insert(key);
            }
        }
    }
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

/// `SECONDS/STANDBY` of the Deployment's self-fence annotation.
fn fence_of(deployment: &Deployment) -> Option<(u64, i32)> {
    let text = deployment.annotations().get(ANNOTATION_SELF_FENCE)?;
    let (seconds, standby) = text.split_once('/')?;
    Some((seconds.trim().parse().ok()?, standby.trim().parse().ok()?))
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
        assert_eq!(fence_of(&d), Some((10, 1)));
        d.metadata.annotations =
            Some([(ANNOTATION_SELF_FENCE.to_string(), "ten".to_string())].into());
        assert_eq!(fence_of(&d), None);
    }
}
