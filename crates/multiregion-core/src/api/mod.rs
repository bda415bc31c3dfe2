//! The API: `Region` (cluster-scoped) and `MultiRegionApp` (namespaced),
//! group `multiregion.io/v1alpha1`, and the names the operator puts on what
//! it places.

mod app;
mod region;
mod vocabulary;

pub use app::*;
pub use region::*;
pub use vocabulary::*;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

/// Field manager of every write, and the finalizer of apps.
pub const FIELD_MANAGER: &str = "multiregion";
pub const FINALIZER: &str = "multiregion.io/cleanup";
/// On a Region while some app (not being deleted) uses it: deleting the
/// Region then waits until no app does, so a mistaken delete moves no
/// traffic and orphans nothing.
pub const REGION_IN_USE: &str = "multiregion.io/in-use";

/// Labels on every placed object.
pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
pub const LABEL_APP: &str = "multiregion.io/app";
pub const LABEL_APP_NAMESPACE: &str = "multiregion.io/app-namespace";
pub const LABEL_REGION: &str = "multiregion.io/region";
pub const LABEL_ROLE: &str = "multiregion.io/role";
/// On each app's role ConfigMap (value "true"): not a propagated copy.
pub const LABEL_ROLE_CONFIG: &str = "multiregion.io/role-config";
/// On objects placed from `spec.resources` (value "true"), which tell them
/// apart from the copies of propagated ConfigMaps and Secrets.
pub const LABEL_RESOURCE: &str = "multiregion.io/resource";
/// Beside a replication-lag annotation: when the lag was measured
/// (RFC 3339). A lag without it, or older than a minute, is unreported.
pub const LAG_OBSERVED_AT: &str = "multiregion.io/replication-lag-observed-at";
/// The identity of the hub whose operator placed the object.
pub const LABEL_HUB: &str = "multiregion.io/hub";
/// Hash of what the operator last applied, so unchanged objects are not
/// written again.
pub const ANNOTATION_APPLIED_HASH: &str = "multiregion.io/applied-hash";
/// On an active region's Deployment: `SECONDS/STANDBY`, what the operator
/// replica in that region does when the region is cut off from the hub
/// for SECONDS: role label `standby`, STANDBY replicas
/// (`spec.failover.selfFenceSeconds`).
pub const ANNOTATION_SELF_FENCE: &str = "multiregion.io/self-fence";
/// On the pod template: a hash of the propagated ConfigMaps and Secrets, so
/// that changing one rolls the pods.
pub const ANNOTATION_CONFIG_CHECKSUM: &str = "multiregion.io/config-checksum";
/// On a Region made by `join`: the member identity (ServiceAccount) that
/// the operator's credentials there belong to.
pub const ANNOTATION_MEMBER_IDENTITY: &str = "multiregion.io/member-identity";
/// On a Region made by `join`: its member identity is confined. It may
/// write only in namespaces where the operator bound the ClusterRole
/// `IDENTITY-writer` to it, which it does in each namespace it created
/// (or an admin labelled `app.kubernetes.io/managed-by: multiregion`).
pub const ANNOTATION_CONFINED_IDENTITY: &str = "multiregion.io/confined-identity";
/// On a hub Namespace, set by the hub admin: the domains (comma-separated)
/// its apps' HTTPRoute hostnames and DNS names must fall inside.
pub const ANNOTATION_ALLOWED_DOMAINS: &str = "multiregion.io/allowed-domains";
/// On a hub Namespace, set by the hub admin: the kinds (comma-separated,
/// `Kind` for the core group, else `Kind.group`, as in
/// `ConfigMap,PodDisruptionBudget.policy`) its apps' `spec.resources` may
/// place. Unset: every kind outside the built-in denylist that a Region's
/// member identity was granted.
pub const ANNOTATION_ALLOWED_KINDS: &str = "multiregion.io/allowed-kinds";
/// On a MultiRegionApp being deleted: its own uid, set by a person to
/// confirm that the PersistentVolumeClaims and StatefulSets of its
/// `spec.resources` whose `deletionPolicy` is `Delete` are deleted with
/// it (`kubectl annotate multiregionapp web multiregion.io/delete-data=UID`;
/// the uid, which no manifest stored before the app existed can carry).
/// Without it the finalizer removes everything else and keeps them,
/// with condition `DeletionHeld`.
pub const ANNOTATION_DELETE_DATA: &str = "multiregion.io/delete-data";
/// On a MultiRegionApp: when a person asked for a failover drill (RFC 3339),
/// set by `kubectl multiregion drill APP --now`.
pub const ANNOTATION_DRILL_REQUESTED: &str = "multiregion.io/drill-requested";
/// On a MultiRegionApp: the regions (comma-separated) drained by
/// `kubectl multiregion drain`, as if their `spec.regions[].drain` were
/// true. An annotation, so that a GitOps sync of the app's manifest (Argo
/// CD, Flux, `kubectl apply`) leaves the drain in place.
pub const ANNOTATION_DRAINED: &str = "multiregion.io/drained";
/// On a MultiRegionApp: the region a person asked traffic to move to once
/// (`kubectl multiregion failover APP --to REGION`), with
/// `multiregion.io/move-requested-at`. Unlike `activeOverride` it pins
/// nothing: traffic stays there for `failbackHoldSeconds`, then the usual
/// rules apply.
pub const ANNOTATION_MOVE_TO: &str = "multiregion.io/move-to";
/// Beside `multiregion.io/move-to`: when the move was asked for (RFC 3339).
/// A new time is a new request.
pub const ANNOTATION_MOVE_REQUESTED_AT: &str = "multiregion.io/move-requested-at";

/// Both CRDs, in the order they are printed.
pub fn crds() -> Vec<CustomResourceDefinition> {
    vec![Region::crd(), MultiRegionApp::crd()]
}

/// The CRDs as a multi-document YAML stream, as committed in `crds/`.
pub fn crds_yaml() -> Result<String, serde_saphyr::ser::Error> {
    let mut out = String::new();
    for crd in crds() {
        out.push_str("---\n");
        out.push_str(&serde_saphyr::to_string(&crd)?);
    }
    Ok(out)
}
