//! The objects placed in a region, built from the app without any client.
//!
//! Each object carries the labels of DESIGN.md section 1 and an annotation
//! with a hash of what was built, so the apply step can skip objects that
//! are already as wanted (no writes at steady state).

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::PodTemplateSpec;
use serde_json::{Value, json};

use crate::api::{
    ANNOTATION_APPLIED_HASH, LABEL_APP, LABEL_APP_NAMESPACE, LABEL_MANAGED_BY, LABEL_REGION,
    LABEL_ROLE, MultiRegionAppSpec,
};
use crate::plan::Placement;

/// Identifies the app the placed objects belong to.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct AppKey {
    pub namespace: String,
    pub name: String,
}

/// Why the app's template cannot be placed; names the field.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("spec.workload.template: {0}")]
pub struct InvalidTemplate(pub String);

/// Labels on every object placed for `app` in `region`.
pub fn labels(app: &AppKey, region: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (LABEL_MANAGED_BY.to_string(), "multiregion".to_string()),
        (LABEL_APP.to_string(), app.name.clone()),
        (LABEL_APP_NAMESPACE.to_string(), app.namespace.clone()),
        (LABEL_REGION.to_string(), region.to_string()),
    ])
}

/// The label selector that finds everything placed for `app` (and only that).
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

/// True when an object's labels say the operator placed it for this app.
pub fn owned_by(labels: Option<&BTreeMap<String, String>>, app: &AppKey) -> bool {
    labels.is_some_and(|l| {
        l.get(LABEL_MANAGED_BY).map(String::as_str) == Some("multiregion")
            && l.get(LABEL_APP) == Some(&app.name)
            && l.get(LABEL_APP_NAMESPACE) == Some(&app.namespace)
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
/// against the hash of what would be sent now.
pub fn found(
    labels: &BTreeMap<String, String>,
    annotations: &BTreeMap<String, String>,
    app: &AppKey,
    want_hash: Option<&str>,
) -> Found {
    if !owned_by(Some(labels), app) {
        Found::Foreign
    } else if annotations.get(ANNOTATION_APPLIED_HASH).map(String::as_str) == want_hash {
        Found::Current
    } else {
        Found::Outdated
    }
}

/// Checks the template parses as a PodTemplateSpec.
pub fn validate_template(spec: &MultiRegionAppSpec) -> Result<PodTemplateSpec, InvalidTemplate> {
    serde_json::from_value::<PodTemplateSpec>(spec.workload.template.clone())
        .map_err(|e| InvalidTemplate(e.to_string()))
}

/// The Deployment for one region.
pub fn deployment(app: &AppKey, spec: &MultiRegionAppSpec, placement: &Placement) -> Value {
    let mut labels = labels(app, &placement.region);
    labels.insert(LABEL_ROLE.to_string(), placement.role.label().to_string());
    let mut template = spec.workload.template.clone();
    if !template.is_object() {
        template = json!({});
    }
    // The app's selector labels are added to the user's pod labels. The role
    // is not: changing it would roll the pods.
    let pod_labels = template
        .as_object_mut()
        .map(|t| t.entry("metadata").or_insert_with(|| json!({})))
        .and_then(|m| m.as_object_mut())
        .map(|m| m.entry("labels").or_insert_with(|| json!({})));
    if let Some(Value::Object(pod_labels)) = pod_labels {
        for (k, v) in pod_selector(app) {
            pod_labels.insert(k, Value::String(v));
        }
    }
    with_hash(json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": app.name,
            "namespace": app.namespace,
            "labels": labels,
        },
        "spec": {
            "replicas": placement.replicas,
            "selector": { "matchLabels": pod_selector(app) },
            "template": template,
        }
    }))
}

/// The Service for one region, when the app asks for one.
pub fn service(app: &AppKey, spec: &MultiRegionAppSpec, region: &str) -> Option<Value> {
    let svc = spec.workload.service.as_ref()?;
    let ports: Vec<Value> = svc
        .ports
        .iter()
        .map(|p| {
            let mut port = json!({
                "port": p.port,
                "targetPort": p.target_port.unwrap_or(p.port),
                "protocol": p.protocol.clone().unwrap_or_else(|| "TCP".into()),
            });
            if let Some(name) = &p.name {
                port["name"] = json!(name);
            }
            port
        })
        .collect();
    Some(with_hash(json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": app.name,
            "namespace": app.namespace,
            "labels": labels(app, region),
        },
        "spec": {
            "selector": pod_selector(app),
            "ports": ports,
        }
    })))
}

/// The Namespace, created when missing (never deleted: other apps and
/// people may use it).
pub fn namespace(name: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": name,
            "labels": { LABEL_MANAGED_BY: "multiregion" },
        }
    })
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

/// Adds the applied-hash annotation: a hash of the object without it.
fn with_hash(mut object: Value) -> Value {
    let hash = content_hash(&object);
    object["metadata"]["annotations"] = json!({ ANNOTATION_APPLIED_HASH: hash });
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
pub fn applied_hash(object: &Value) -> Option<&str> {
    object["metadata"]["annotations"][ANNOTATION_APPLIED_HASH].as_str()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Role;

    fn app() -> AppKey {
        AppKey {
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
        }
    }

    #[test]
    fn the_deployment_carries_labels_selector_and_replicas() {
        let d = deployment(&app(), &spec(), &placement(3, Role::Active));
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
    fn the_hash_changes_with_replicas_and_role_but_not_otherwise() {
        let a = deployment(&app(), &spec(), &placement(3, Role::Active));
        let b = deployment(&app(), &spec(), &placement(3, Role::Active));
        let c = deployment(&app(), &spec(), &placement(1, Role::Standby));
        assert_eq!(applied_hash(&a), applied_hash(&b));
        assert_ne!(applied_hash(&a), applied_hash(&c));
    }

    #[test]
    fn the_service_selects_the_app_pods() {
        let s = service(&app(), &spec(), "us-east").unwrap();
        assert_eq!(s["spec"]["ports"][0]["targetPort"], 8080);
        assert_eq!(s["spec"]["selector"]["multiregion.io/app"], "checkout");
        let mut no_service = spec();
        no_service.workload.service = None;
        assert!(service(&app(), &no_service, "us-east").is_none());
    }

    #[test]
    fn ownership_needs_all_three_labels() {
        let mut l = labels(&app(), "us-east");
        assert!(owned_by(Some(&l), &app()));
        l.insert(LABEL_APP_NAMESPACE.into(), "other".into());
        assert!(!owned_by(Some(&l), &app()));
        assert!(!owned_by(None, &app()));
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
    fn found_objects_are_current_outdated_or_foreign() {
        let ours = labels(&app(), "us-east");
        let other_app = labels(
            &AppKey {
                namespace: "shop".into(),
                name: "cart".into(),
            },
            "us-east",
        );
        let handmade = BTreeMap::from([("team".to_string(), "payments".to_string())]);
        let hashed =
            |h: &str| BTreeMap::from([(ANNOTATION_APPLIED_HASH.to_string(), h.to_string())]);
        let none = BTreeMap::new();
        let cases = [
            (&ours, hashed("h1"), Some("h1"), Found::Current),
            (&ours, hashed("h1"), Some("h2"), Found::Outdated),
            (&ours, none.clone(), Some("h1"), Found::Outdated),
            (&ours, none.clone(), None, Found::Current),
            (&handmade, hashed("h1"), Some("h1"), Found::Foreign),
            (&other_app, hashed("h1"), Some("h1"), Found::Foreign),
        ];
        for (labels, annotations, want, expected) in cases {
            assert_eq!(
                found(labels, &annotations, &app(), want),
                expected,
                "{labels:?} {annotations:?} {want:?}"
            );
        }
    }
}
