//! The objects placed in a region, built from the app without any client,
//! as typed Kubernetes objects.
//!
//! Each object carries the operator's labels (see docs/design.md, "Names")
//! and an annotation with a hash of what was built, so the apply step can
//! skip objects that are already as wanted (no writes at steady state).

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    ConfigMap, Namespace, PodTemplateSpec, Service, ServicePort, ServiceSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    FieldsV1, LabelSelector, ManagedFieldsEntry, ObjectMeta,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::Serialize;
use serde_json::Value;

use crate::api::{
    ANNOTATION_APPLIED_HASH, ANNOTATION_SELF_FENCE, FIELD_MANAGER, LABEL_APP, LABEL_APP_NAMESPACE,
    LABEL_HUB, LABEL_MANAGED_BY, LABEL_REGION, LABEL_ROLE, LABEL_ROLE_CONFIG, MultiRegionAppSpec,
    Overrides, PodSecurityLevel, Role,
};
use crate::plan::Placement;
use crate::plan::overrides;

/// Identifies the app the placed objects belong to: its hub, namespace and
/// name. Two hubs may run apps of the same name in one member cluster; the
/// hub tells their objects apart.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct AppKey {
    /// The hub's identity (`multiregion.io/hub`); empty when unknown.
    pub hub: String,
    pub namespace: String,
    pub name: String,
}

/// Why the app's template cannot be placed; names the field.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("spec.workload.template: {0}")]
pub struct InvalidTemplate(pub String);

/// Labels on every object placed for `app` in `region`.
pub fn labels(app: &AppKey, region: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::from([
        (LABEL_MANAGED_BY.to_string(), "multiregion".to_string()),
        (LABEL_APP.to_string(), app.name.clone()),
        (LABEL_APP_NAMESPACE.to_string(), app.namespace.clone()),
        (LABEL_REGION.to_string(), region.to_string()),
    ]);
    if !app.hub.is_empty() {
        labels.insert(LABEL_HUB.to_string(), app.hub.clone());
    }
    labels
}

/// Name, namespace and labels of an object placed for `app` in `region`
/// (or, for the traffic sinks, published for it in the hub).
pub fn object_meta(app: &AppKey, name: &str, region: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_string()),
        namespace: Some(app.namespace.clone()),
        labels: Some(labels(app, region)),
        ..ObjectMeta::default()
    }
}

/// The label selector that finds what was placed for an app of this name
/// (by this hub or another: filter with `owned_by`).
pub fn selector(app: &AppKey) -> String {
    format!(
        "{LABEL_MANAGED_BY}=multiregion,{LABEL_APP}={},{LABEL_APP_NAMESPACE}={}",
        app.name, app.namespace
    )
}

/// Pod labels that select the app's pods; fixed for the app's life because a
/// Deployment's selector cannot change.
fn pod_selector(app: &AppKey) -> BTreeMap<String, String> {
    BTreeMap::from([
        (LABEL_APP.to_string(), app.name.clone()),
        (LABEL_APP_NAMESPACE.to_string(), app.namespace.clone()),
    ])
}

/// True when an object's labels say this hub's operator placed it for this
/// app in this region. Another Region pointing at the same cluster, or
/// another hub, gets `Conflict` instead of a tug of war. Objects placed
/// before the hub label existed (no `multiregion.io/hub`) count as this
/// hub's.
pub fn owned_by(labels: Option<&BTreeMap<String, String>>, app: &AppKey, region: &str) -> bool {
    labels.is_some_and(|l| {
        let hub = l.get(LABEL_HUB);
        l.get(LABEL_MANAGED_BY).map(String::as_str) == Some("multiregion")
            && l.get(LABEL_APP) == Some(&app.name)
            && l.get(LABEL_APP_NAMESPACE) == Some(&app.namespace)
            && l.get(LABEL_REGION).map(String::as_str) == Some(region)
            && hub.is_none_or(|h| *h == app.hub)
    })
}

/// What placement makes of an object found under the app's name in a region.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Found {
    /// The operator's, with the applied-hash it would send: nothing to write.
    Current,
    /// The operator's, built from something else: apply it.
    Outdated,
    /// Not the operator's (or another app's): never touched, a `Conflict`.
    Foreign,
}

/// Classifies an existing object by its labels and applied-hash annotation
/// against the hash of what would be sent now. An object whose fields are
/// still split between the create's record and an apply's
/// (`fold_pending`) is outdated whatever its hash says.
pub fn found(meta: &ObjectMeta, app: &AppKey, region: &str, want_hash: Option<&str>) -> Found {
    let hash = meta
        .annotations
        .as_ref()
        .and_then(|a| a.get(ANNOTATION_APPLIED_HASH))
        .map(String::as_str);
    let fields = meta.managed_fields.as_deref().unwrap_or_default();
    if !owned_by(meta.labels.as_ref(), app, region) {
        Found::Foreign
    } else if hash == want_hash && !fold_pending(fields, FIELD_MANAGER) {
        Found::Current
    } else {
        Found::Outdated
    }
}

/// The object's managed fields with `manager`'s fields recorded as its
/// server-side apply, or None when they are already. A create records the
/// creator's fields as an update; an apply never removes a field such a
/// record still holds, so a field dropped from the manifest would stay.
/// The update record (of the object itself, not of a subresource) is
/// folded into the manager's apply record, or becomes it (what
/// `kubectl apply --server-side` does when it takes over client-side
/// fields): the apply then owns every field the manager ever wrote.
pub fn as_applied(
    entries: &[ManagedFieldsEntry],
    manager: &str,
) -> Option<Vec<ManagedFieldsEntry>> {
    let is = |e: &ManagedFieldsEntry, operation: &str| {
        e.manager.as_deref() == Some(manager)
            && e.operation.as_deref() == Some(operation)
            && e.subresource.as_deref().unwrap_or_default().is_empty()
    };
    let updates: Vec<&ManagedFieldsEntry> = entries.iter().filter(|e| is(e, "Update")).collect();
    let first = *updates.first()?;
    let mut applied = entries
        .iter()
        .find(|e| is(e, "Apply"))
        .cloned()
        .unwrap_or_else(|| ManagedFieldsEntry {
            operation: Some("Apply".into()),
            fields_v1: None,
            ..first.clone()
        });
    for update in &updates {
        applied.fields_v1 = union(applied.fields_v1.take(), update.fields_v1.as_ref());
    }
    let mut kept: Vec<ManagedFieldsEntry> = entries
        .iter()
        .filter(|e| !is(e, "Update") && !is(e, "Apply"))
        .cloned()
        .collect();
    kept.push(applied);
    Some(kept)
}

/// Whether `manager`'s fields are still split between a create's update
/// record and an apply record: an apply ran over the created object but
/// the fold (`as_applied`) that must follow it did not (it failed, or the
/// operator stopped in between). Such an object is applied and folded
/// again even when its applied-hash is current; otherwise a field dropped
/// by that apply would stay until the next change.
pub fn fold_pending(entries: &[ManagedFieldsEntry], manager: &str) -> bool {
    let by = |operation: &str| {
        entries.iter().any(|e| {
            e.manager.as_deref() == Some(manager)
                && e.operation.as_deref() == Some(operation)
                && e.subresource.as_deref().unwrap_or_default().is_empty()
        })
    };
    by("Update") && by("Apply")
}

/// The managed fields a cache keeps of a placed object: `manager`'s
/// records without their field sets (the bulk), which is all
/// `fold_pending` reads.
pub fn markers_only(entries: &mut Vec<ManagedFieldsEntry>, manager: &str) {
    entries.retain(|e| e.manager.as_deref() == Some(manager));
    for entry in entries.iter_mut() {
        entry.fields_v1 = None;
        entry.time = None;
        entry.api_version = None;
        entry.fields_type = None;
    }
}

/// The metadata a watch cache keeps of an object (placed objects,
/// propagated copies, the hub's config objects): what ownership, the
/// applied hash, the app's labels and the lag annotations are read from
/// (`found`, `owned_by`, the workload evidence). The server's bookkeeping
/// no decision reads (uid, creation time, owners, the Deployment
/// controller's revision, kubectl's last-applied copy) is dropped: at
/// 1,000 apps a few MiB of 9,000 cached objects.
pub fn cached_meta(meta: &mut ObjectMeta, manager: &str) {
    const UNREAD: [&str; 2] = [
        "deployment.kubernetes.io/revision",
        "kubectl.kubernetes.io/last-applied-configuration",
    ];
    if let Some(entries) = meta.managed_fields.as_mut() {
        markers_only(entries, manager);
    }
    if let Some(annotations) = meta.annotations.as_mut() {
        annotations.retain(|key, _| !UNREAD.contains(&key.as_str()));
    }
    meta.uid = None;
    meta.creation_timestamp = None;
    meta.owner_references = None;
    meta.generate_name = None;
}

/// Both sets of fields (a field set is a tree of objects; the union holds
/// every path of either).
fn union(into: Option<FieldsV1>, other: Option<&FieldsV1>) -> Option<FieldsV1> {
    fn merge(into: &mut Value, other: &Value) {
        match (into, other) {
            (Value::Object(into), Value::Object(other)) => {
                for (key, value) in other {
                    match into.get_mut(key) {
                        Some(held) => merge(held, value),
                        None => {
                            into.insert(key.clone(), value.clone());
                        }
                    }
                }
            }
            (into, other) if into.is_null() => *into = other.clone(),
            _ => {}
        }
    }
    match (into, other) {
        (Some(FieldsV1(mut fields)), Some(FieldsV1(more))) => {
            merge(&mut fields, more);
            Some(FieldsV1(fields))
        }
        (into, other) => into.or_else(|| other.cloned()),
    }
}

/// Checks the template parses as a PodTemplateSpec.
pub fn validate_template(spec: &MultiRegionAppSpec) -> Result<PodTemplateSpec, InvalidTemplate> {
    serde_json::from_value::<PodTemplateSpec>(spec.workload.template.clone())
        .map_err(|e| InvalidTemplate(e.to_string()))
}

/// The Deployment for one region, from the app's validated pod template.
pub fn deployment(app: &AppKey, template: &PodTemplateSpec, placement: &Placement) -> Deployment {
    with_hash(unhashed(app, template.clone(), placement))
}

/// The Deployment for one region with its overrides (`field` names them
/// in errors): images and env on the template, then the patches on the
/// Deployment as it would be placed. Checked for every region by
/// `overrides::validate` before anything is placed.
pub fn deployment_for(
    app: &AppKey,
    template: &PodTemplateSpec,
    placement: &Placement,
    region_overrides: Option<&Overrides>,
    field: &str,
) -> Result<Deployment, overrides::InvalidOverride> {
    let Some(o) = region_overrides else {
        return Ok(deployment(app, template, placement));
    };
    let mut template = template.clone();
    overrides::on_template(&mut template, o, field)?;
    let patched = overrides::on_deployment(unhashed(app, template, placement), o, field)?;
    Ok(with_hash(patched))
}

/// The Deployment before its applied-hash.
fn unhashed(app: &AppKey, mut template: PodTemplateSpec, placement: &Placement) -> Deployment {
    let mut metadata = object_meta(app, &app.name, &placement.region);
    if let Some(labels) = metadata.labels.as_mut() {
        labels.insert(LABEL_ROLE.to_string(), placement.role.label().to_string());
    }
    if let Some(fence) = &placement.self_fence {
        let mut text = format!("{}/{}", fence.seconds, fence.standby_replicas);
        if let Some(secret) = &fence.database_secret {
            text = format!("{text}/{secret}");
        }
        metadata
            .annotations
            .get_or_insert_with(BTreeMap::new)
            .insert(ANNOTATION_SELF_FENCE.to_string(), text);
    }
    // The app's selector labels and the region are added to the user's pod
    // labels (a pod can read its region through the downward API). The role
    // is not: changing it would roll the pods.
    let pod_meta = template.metadata.get_or_insert_with(ObjectMeta::default);
    let pod_labels = pod_meta.labels.get_or_insert_with(BTreeMap::new);
    pod_labels.extend(pod_selector(app));
    pod_labels.insert(LABEL_REGION.to_string(), placement.region.clone());
    Deployment {
        metadata,
        spec: Some(DeploymentSpec {
            replicas: Some(placement.replicas),
            selector: LabelSelector {
                match_labels: Some(pod_selector(app)),
                ..LabelSelector::default()
            },
            template,
            ..DeploymentSpec::default()
        }),
        status: None,
    }
}

/// The name of an app's role ConfigMap in each region.
pub fn role_config_map_name(app: &AppKey) -> Option<String> {
    let name = format!("{}-multiregion-role", app.name);
    (name.len() <= 253).then_some(name)
}

/// The app's role in one region, for the app (or a database proxy) to read:
/// mounted as a volume, `role` holds `active` or `standby`, `region` the
/// region, `decidedAt` when the role was decided (RFC 3339) and `decidedBy`
/// who decided it (`operator`, or `self-fence` when the region's replica
/// fenced it, cut off from the hub). Its applied-hash covers the role and
/// the region only, so it is written again only when the role changes.
/// None when the app's name leaves no room for the suffix.
pub fn role_config_map(
    app: &AppKey,
    region: &str,
    role: Role,
    decided_at: jiff::Timestamp,
    decided_by: &str,
) -> Option<ConfigMap> {
    let mut metadata = object_meta(app, &role_config_map_name(app)?, region);
    if let Some(labels) = metadata.labels.as_mut() {
        labels.insert(LABEL_ROLE_CONFIG.to_string(), "true".to_string());
    }
    let data = BTreeMap::from([
        ("role".to_string(), role.label().to_string()),
        ("region".to_string(), region.to_string()),
    ]);
    let mut map = with_hash(ConfigMap {
        metadata,
        data: Some(data),
        ..ConfigMap::default()
    });
    if let Some(data) = map.data.as_mut() {
        data.insert("decidedAt".to_string(), decided_at.to_string());
        data.insert("decidedBy".to_string(), decided_by.to_string());
    }
    Some(map)
}

/// The Service for one region, when the app asks for one.
pub fn service(app: &AppKey, spec: &MultiRegionAppSpec, region: &str) -> Option<Service> {
    let svc = spec.workload.service.as_ref()?;
    let ports = svc
        .ports
        .iter()
        .map(|p| ServicePort {
            name: p.name.clone(),
            port: p.port,
            target_port: Some(IntOrString::Int(p.target_port.unwrap_or(p.port))),
            protocol: Some(p.protocol.clone().unwrap_or_else(|| "TCP".into())),
            node_port: p.node_port,
            ..ServicePort::default()
        })
        .collect();
    Some(with_hash(Service {
        metadata: object_meta(app, &app.name, region),
        spec: Some(ServiceSpec {
            selector: Some(pod_selector(app)),
            ports: Some(ports),
            type_: Some(svc.type_.as_str().to_string()),
            ..ServiceSpec::default()
        }),
        status: None,
    }))
}

/// The Namespace, created when missing (never deleted: other apps and
/// people may use it), labelled with the Region's Pod Security level, which
/// the member's API server then enforces on every pod in it.
pub fn namespace(name: &str, pod_security: PodSecurityLevel) -> Namespace {
    Namespace {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            labels: Some(BTreeMap::from([
                (LABEL_MANAGED_BY.to_string(), "multiregion".to_string()),
                (
                    "pod-security.kubernetes.io/enforce".to_string(),
                    pod_security.label().to_string(),
                ),
            ])),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    }
}

/// The Deployment's controller is still bringing pods up: it has not seen
/// the latest spec yet, or its Progressing condition reports an update in
/// progress (not a completed or timed-out rollout).
pub fn rolling_out(deployment: &Deployment) -> bool {
    let generation = deployment.metadata.generation.unwrap_or(0);
    let Some(status) = &deployment.status else {
        return true;
    };
    if status.observed_generation.unwrap_or(0) < generation {
        return true;
    }
    status
        .conditions
        .as_ref()
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Progressing"))
        .is_some_and(|c| {
            c.status == "True"
                && matches!(
                    c.reason.as_deref(),
                    Some("ReplicaSetUpdated" | "NewReplicaSetCreated" | "FoundNewReplicaSet")
                )
        })
}

/// An object the operator builds: it carries the applied-hash annotation.
pub trait Built: Serialize {
    fn meta_mut(&mut self) -> &mut ObjectMeta;
    fn meta(&self) -> &ObjectMeta;
}

macro_rules! built {
    ($($kind:ty),+) => {
        $(impl Built for $kind {
            fn meta_mut(&mut self) -> &mut ObjectMeta {
                &mut self.metadata
            }
            fn meta(&self) -> &ObjectMeta {
                &self.metadata
            }
        })+
    };
}

built!(
    Deployment,
    Service,
    k8s_openapi::api::core::v1::ConfigMap,
    k8s_openapi::api::core::v1::Secret,
    k8s_openapi::api::discovery::v1::EndpointSlice
);

/// Adds the applied-hash annotation: a hash of the object without it.
pub fn with_hash<K: Built>(mut object: K) -> K {
    let hash = content_hash(&serde_json::to_value(&object).unwrap_or(Value::Null));
    object
        .meta_mut()
        .annotations
        .get_or_insert_with(BTreeMap::new)
        .insert(ANNOTATION_APPLIED_HASH.to_string(), hash);
    object
}

/// Stable hash of a JSON value (FNV-1a over its text; serde_json sorts
/// object keys), the same across builds and versions of the operator.
pub fn content_hash(value: &Value) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in value.to_string().bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{hash:016x}")
}

/// The applied-hash annotation of a built object.
pub fn applied_hash<K: Built>(object: &K) -> Option<&str> {
    object
        .meta()
        .annotations
        .as_ref()?
        .get(ANNOTATION_APPLIED_HASH)
        .map(String::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Role;
    use serde_json::json;

    fn template() -> PodTemplateSpec {
        validate_template(&spec()).unwrap()
    }

    fn to_json<K: Serialize>(object: K) -> Value {
        serde_json::to_value(object).unwrap()
    }

    #[test]
    fn the_creators_update_record_becomes_its_apply() {
        let entry = |manager: &str, operation: &str| ManagedFieldsEntry {
            manager: Some(manager.into()),
            operation: Some(operation.into()),
            ..Default::default()
        };
        let ops = |entries: Option<Vec<ManagedFieldsEntry>>| {
            entries.map(|es| {
                es.into_iter()
                    .map(|e| format!("{}:{}", e.manager.unwrap(), e.operation.unwrap()))
                    .collect::<Vec<_>>()
            })
        };
        let cases = [
            (vec![entry("us", "Update")], Some(vec!["us:Apply"])),
            (
                vec![entry("us", "Update"), entry("us", "Apply")],
                Some(vec!["us:Apply"]),
            ),
            (
                vec![
                    entry("us", "Apply"),
                    entry("kubectl", "Update"),
                    entry("us", "Update"),
                ],
                Some(vec!["kubectl:Update", "us:Apply"]),
            ),
            (
                vec![entry("kubectl", "Update"), entry("us", "Update")],
                Some(vec!["kubectl:Update", "us:Apply"]),
            ),
            (vec![entry("us", "Apply")], None),
            (vec![entry("kubectl", "Update")], None),
            (vec![], None),
        ];
        for (entries, want) in cases {
            let want = want.map(|w| w.into_iter().map(String::from).collect());
            assert_eq!(ops(as_applied(&entries, "us")), want, "{entries:?}");
        }
    }

    #[test]
    fn the_apply_record_takes_every_field_of_the_update_record() {
        let entry = |operation: &str, fields: Value| ManagedFieldsEntry {
            manager: Some("us".into()),
            operation: Some(operation.into()),
            fields_v1: Some(FieldsV1(fields)),
            ..Default::default()
        };
        let created = json!({"f:spec": {"f:replicas": {}, "f:template": {"f:env": {"k:{\"name\":\"TIER\"}": {}}}}});
        let applied = json!({"f:spec": {"f:replicas": {}, "f:paused": {}}});
        let status = ManagedFieldsEntry {
            subresource: Some("status".into()),
            ..entry("Update", json!({"f:status": {}}))
        };
        let entries = [
            entry("Apply", applied),
            entry("Update", created),
            status.clone(),
        ];
        let folded = as_applied(&entries, "us").unwrap();
        assert_eq!(folded.len(), 2, "{folded:?}");
        assert_eq!(folded[0], status, "a subresource's record is left as it is");
        assert_eq!(folded[1].operation.as_deref(), Some("Apply"));
        assert_eq!(
            folded[1].fields_v1,
            Some(FieldsV1(json!({"f:spec": {
                "f:replicas": {},
                "f:paused": {},
                "f:template": {"f:env": {"k:{\"name\":\"TIER\"}": {}}},
            }})))
        );
    }

    fn app() -> AppKey {
        AppKey {
            hub: "hub-1".into(),
            namespace: "shop".into(),
            name: "checkout".into(),
        }
    }

    fn spec() -> MultiRegionAppSpec {
        serde_json::from_value(json!({
            "strategy": "ActivePassive",
            "regions": [{"name": "us-east"}, {"name": "eu-west"}],
            "workload": {
                "replicas": 3,
                "template": {"metadata": {"labels": {"app": "checkout"}}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}},
                "service": {"ports": [{"name": "http", "port": 80, "targetPort": 8080}]}
            }
        }))
        .unwrap()
    }

    fn placement(replicas: i32, role: Role) -> Placement {
        Placement {
            region: "us-east".into(),
            replicas,
            role,
            touch: true,
            scale_down: false,
            self_fence: None,
        }
    }

    #[test]
    fn the_active_deployment_says_what_its_regions_replica_fences_when_cut_off() {
        let fenced = |database: Option<&str>| {
            let placement = Placement {
                self_fence: Some(crate::plan::SelfFence {
                    seconds: 10,
                    standby_replicas: 1,
                    database_secret: database.map(str::to_string),
                }),
                ..placement(3, Role::Active)
            };
            let d = to_json(deployment(&app(), &template(), &placement));
            d["metadata"]["annotations"]["multiregion.io/self-fence"].clone()
        };
        assert_eq!(fenced(None), "10/1");
        assert_eq!(
            fenced(Some("shop-db")),
            "10/1/shop-db",
            "the Secret of the database URIs: the replica fences the database too"
        );
    }

    #[test]
    fn the_deployment_carries_labels_selector_and_replicas() {
        let d = to_json(deployment(&app(), &template(), &placement(3, Role::Active)));
        let labels = &d["metadata"]["labels"];
        assert_eq!(labels["app.kubernetes.io/managed-by"], "multiregion");
        assert_eq!(labels["multiregion.io/app"], "checkout");
        assert_eq!(labels["multiregion.io/app-namespace"], "shop");
        assert_eq!(labels["multiregion.io/region"], "us-east");
        assert_eq!(labels["multiregion.io/role"], "active");
        assert_eq!(d["spec"]["replicas"], 3);
        let pod_labels = &d["spec"]["template"]["metadata"]["labels"];
        assert_eq!(pod_labels["app"], "checkout", "the user's labels stay");
        assert_eq!(pod_labels["multiregion.io/app"], "checkout");
        assert_eq!(
            pod_labels["multiregion.io/region"], "us-east",
            "pods can read their region through the downward API"
        );
        assert!(
            pod_labels.get("multiregion.io/role").is_none(),
            "role changes do not roll pods"
        );
        assert_eq!(
            d["spec"]["selector"]["matchLabels"]["multiregion.io/app"],
            "checkout"
        );
    }

    #[test]
    fn the_role_config_map_is_written_again_only_when_the_role_changes() {
        let at = |s: i64| jiff::Timestamp::from_second(1_800_000_000 + s).unwrap();
        let key = AppKey {
            hub: "h".into(),
            namespace: "shop".into(),
            name: "web".into(),
        };
        let active = role_config_map(&key, "us-east", Role::Active, at(0), "operator").unwrap();
        let later = role_config_map(&key, "us-east", Role::Active, at(60), "operator").unwrap();
        let standby = role_config_map(&key, "us-east", Role::Standby, at(60), "operator").unwrap();
        assert_eq!(
            active.metadata.name.as_deref(),
            Some("web-multiregion-role")
        );
        let data = active.data.clone().unwrap();
        assert_eq!(data["role"], "active");
        assert_eq!(data["decidedAt"], at(0).to_string());
        assert_eq!(
            applied_hash(&active),
            applied_hash(&later),
            "the time is not in the hash"
        );
        assert_ne!(applied_hash(&active), applied_hash(&standby));
        assert!(owned_by(active.metadata.labels.as_ref(), &key, "us-east"));
        let long = AppKey {
            name: "x".repeat(250),
            ..key
        };
        assert!(role_config_map(&long, "us-east", Role::Active, at(0), "operator").is_none());
    }

    #[test]
    fn the_hash_changes_with_replicas_and_role_but_not_otherwise() {
        let a = deployment(&app(), &template(), &placement(3, Role::Active));
        let b = deployment(&app(), &template(), &placement(3, Role::Active));
        let c = deployment(&app(), &template(), &placement(1, Role::Standby));
        assert_eq!(applied_hash(&a), applied_hash(&b));
        assert_ne!(applied_hash(&a), applied_hash(&c));
    }

    #[test]
    fn the_service_selects_the_app_pods() {
        let s = to_json(service(&app(), &spec(), "us-east").unwrap());
        assert_eq!(s["spec"]["ports"][0]["targetPort"], 8080);
        assert_eq!(s["spec"]["selector"]["multiregion.io/app"], "checkout");
        assert_eq!(s["spec"]["type"], "ClusterIP");
        let mut node_port = spec();
        let svc = node_port.workload.service.as_mut().unwrap();
        svc.type_ = crate::api::ServiceType::NodePort;
        svc.ports[0].node_port = Some(30080);
        let s = to_json(service(&app(), &node_port, "us-east").unwrap());
        assert_eq!(
            (
                s["spec"]["type"].as_str(),
                s["spec"]["ports"][0]["nodePort"].as_i64()
            ),
            (Some("NodePort"), Some(30080))
        );
        let mut no_service = spec();
        no_service.workload.service = None;
        assert!(service(&app(), &no_service, "us-east").is_none());
    }

    #[test]
    fn ownership_needs_the_app_its_namespace_the_region_and_the_hub() {
        let ours = labels(&app(), "us-east");
        assert!(owned_by(Some(&ours), &app(), "us-east"));
        assert!(!owned_by(None, &app(), "us-east"));
        let mut other_namespace = ours.clone();
        other_namespace.insert(LABEL_APP_NAMESPACE.into(), "other".into());
        assert!(!owned_by(Some(&other_namespace), &app(), "us-east"));
        // Another Region on the same cluster placed it.
        assert!(!owned_by(Some(&ours), &app(), "us-east-2"));
        // Another hub placed it.
        let mut other_hub = ours.clone();
        other_hub.insert(LABEL_HUB.into(), "hub-2".into());
        assert!(!owned_by(Some(&other_hub), &app(), "us-east"));
        // Placed before objects carried the hub: still ours.
        let mut legacy = ours.clone();
        legacy.remove(LABEL_HUB);
        assert!(owned_by(Some(&legacy), &app(), "us-east"));
    }

    #[test]
    fn rolling_out_follows_the_progressing_condition_and_generations() {
        let d = |generation: i64, observed: i64, reason: &str| -> Deployment {
            serde_json::from_value(json!({
                "metadata": {"name": "x", "generation": generation},
                "status": {"observedGeneration": observed, "conditions": [
                    {"type": "Progressing", "status": "True", "reason": reason}
                ]}
            }))
            .unwrap()
        };
        assert!(
            rolling_out(&d(2, 1, "NewReplicaSetAvailable")),
            "spec not seen yet"
        );
        assert!(rolling_out(&d(2, 2, "ReplicaSetUpdated")));
        assert!(
            !rolling_out(&d(2, 2, "NewReplicaSetAvailable")),
            "complete: pods lost later count"
        );
        assert!(!rolling_out(&d(2, 2, "ProgressDeadlineExceeded")));
    }

    #[test]
    fn a_malformed_template_is_named() {
        let mut s = spec();
        s.workload.template = json!({"spec": {"containers": "nope"}});
        let err = validate_template(&s).unwrap_err();
        assert!(
            err.to_string().starts_with("spec.workload.template: "),
            "{err}"
        );
    }

    #[test]
    fn a_fold_is_pending_only_between_an_apply_and_its_fold() {
        let entry =
            |manager: &str, operation: &str, subresource: Option<&str>| ManagedFieldsEntry {
                manager: Some(manager.into()),
                operation: Some(operation.into()),
                subresource: subresource.map(Into::into),
                fields_v1: Some(FieldsV1(serde_json::json!({"f:spec": {}}))),
                ..Default::default()
            };
        let created = vec![entry("us", "Update", None)];
        let applied_unfolded = vec![entry("us", "Update", None), entry("us", "Apply", None)];
        let folded = vec![entry("us", "Apply", None)];
        let status_by_us = vec![
            entry("us", "Update", Some("status")),
            entry("us", "Apply", None),
        ];
        let someone_else = vec![entry("kubectl", "Update", None), entry("us", "Apply", None)];
        assert!(!fold_pending(&created, "us"));
        assert!(fold_pending(&applied_unfolded, "us"));
        assert!(!fold_pending(&folded, "us"));
        assert!(!fold_pending(&status_by_us, "us"));
        assert!(!fold_pending(&someone_else, "us"));
        let mut kept = applied_unfolded.clone();
        kept.push(entry("kube-controller-manager", "Update", Some("status")));
        markers_only(&mut kept, "us");
        assert_eq!(kept.len(), 2);
        assert!(kept.iter().all(|e| e.fields_v1.is_none()));
        assert!(fold_pending(&kept, "us"));
    }

    #[test]
    fn found_objects_are_current_outdated_or_foreign() {
        let ours = labels(&app(), "us-east");
        let other_app = labels(
            &AppKey {
                hub: "hub-1".into(),
                namespace: "shop".into(),
                name: "cart".into(),
            },
            "us-east",
        );
        let handmade = BTreeMap::from([("team".to_string(), "payments".to_string())]);
        let hashed =
            |h: &str| BTreeMap::from([(ANNOTATION_APPLIED_HASH.to_string(), h.to_string())]);
        let none = BTreeMap::new();
        let record = |operation: &str| ManagedFieldsEntry {
            manager: Some(FIELD_MANAGER.into()),
            operation: Some(operation.into()),
            ..Default::default()
        };
        let created = vec![record("Update")];
        let unfolded = vec![record("Update"), record("Apply")];
        let cases = [
            (&ours, hashed("h1"), &created, Some("h1"), Found::Current),
            (&ours, hashed("h1"), &unfolded, Some("h1"), Found::Outdated),
            (&ours, hashed("h1"), &created, Some("h2"), Found::Outdated),
            (&ours, none.clone(), &created, Some("h1"), Found::Outdated),
            (&ours, none.clone(), &created, None, Found::Current),
            (
                &handmade,
                hashed("h1"),
                &created,
                Some("h1"),
                Found::Foreign,
            ),
            (
                &other_app,
                hashed("h1"),
                &created,
                Some("h1"),
                Found::Foreign,
            ),
        ];
        for (labels, annotations, fields, want, expected) in cases {
            let meta = ObjectMeta {
                labels: Some(labels.clone()),
                annotations: Some(annotations.clone()),
                managed_fields: Some(fields.clone()),
                ..Default::default()
            };
            assert_eq!(
                found(&meta, &app(), "us-east", want),
                expected,
                "{labels:?} {annotations:?} {fields:?} {want:?}"
            );
        }
    }
}
