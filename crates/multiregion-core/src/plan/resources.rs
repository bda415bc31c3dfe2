//! Extra resources (`spec.resources`): each manifest as one region gets it
//! (in the app's namespace, with the operator's labels, that region's
//! `overrides.resources` patches and the applied-hash), checked for every
//! region before anything is placed; and which objects placed before are
//! left to remove.

use serde_json::{Map, Value};

use super::manifest::{self, AppKey};
use super::overrides;
use crate::api::{
    ANNOTATION_APPLIED_HASH, ANNOTATION_DELETE_DATA, DeletionPolicy, LABEL_RESOURCE,
    MultiRegionAppSpec, ResourceOverride, ResourceRef,
};

/// Why `spec.resources` (or a region's override of it) cannot be placed;
/// names the field.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct InvalidResource(pub String);

/// One manifest of `spec.resources` as one region gets it.
#[derive(Clone, Debug, PartialEq)]
pub struct Built {
    pub reference: ResourceRef,
    /// Where it is in the spec (`spec.resources[2]`), for messages.
    pub field: String,
    /// The whole object, applied-hash included.
    pub object: Value,
    pub hash: String,
}

/// The object a manifest names, when it names one (apiVersion, kind and
/// metadata.name all set).
pub fn reference(manifest: &Value) -> Option<ResourceRef> {
    fn text(v: Option<&Value>) -> Option<&str> {
        v.and_then(Value::as_str).filter(|s| !s.is_empty())
    }
    let deletion_policy = match text(manifest.get("deletionPolicy")) {
        Some("Orphan") => Some(DeletionPolicy::Orphan),
        Some("Delete") => Some(DeletionPolicy::Delete),
        _ => None,
    };
    let mut reference = ResourceRef {
        api_version: text(manifest.get("apiVersion"))?.to_string(),
        kind: text(manifest.get("kind"))?.to_string(),
        name: text(manifest.pointer("/metadata/name"))?.to_string(),
        deletion_policy,
    };
    // Recorded as it applies, so a later change of the defaults never
    // deletes what was placed under them.
    reference.deletion_policy = Some(if reference.orphaned() {
        DeletionPolicy::Orphan
    } else {
        DeletionPolicy::Delete
    });
    Some(reference)
}

/// The objects the spec asks for, in its order (manifests that name none
/// are left out: `check` refuses them).
pub fn wanted(spec: &MultiRegionAppSpec) -> Vec<ResourceRef> {
    spec.resources.iter().filter_map(reference).collect()
}

/// The objects the operator places itself: the Deployment and Service of
/// the app's name, and the propagated copies.
pub fn taken(app: &AppKey, config_maps: &[String], secrets: &[String]) -> Vec<ResourceRef> {
    let named = |api_version: &str, kind: &str, names: &[String]| {
        names
            .iter()
            .map(|name| ResourceRef {
                api_version: api_version.to_string(),
                kind: kind.to_string(),
                name: name.clone(),
                deletion_policy: None,
            })
            .collect::<Vec<_>>()
    };
    [
        named("apps/v1", "Deployment", std::slice::from_ref(&app.name)),
        named("v1", "Service", std::slice::from_ref(&app.name)),
        named("v1", "ConfigMap", config_maps),
        named("v1", "Secret", secrets),
    ]
    .concat()
}

/// Checks every manifest, and every region's overrides of them, as each
/// region would get them.
pub fn check(
    app: &AppKey,
    spec: &MultiRegionAppSpec,
    taken: &[ResourceRef],
) -> Result<(), InvalidResource> {
    for region in &spec.regions {
        for_region(app, spec, &region.name, taken)?;
    }
    Ok(())
}

/// What `region` gets of `spec.resources`, in the spec's order.
pub fn for_region(
    app: &AppKey,
    spec: &MultiRegionAppSpec,
    region: &str,
    taken: &[ResourceRef],
) -> Result<Vec<Built>, InvalidResource> {
    let index = spec.regions.iter().position(|r| r.name == region);
    let overrides = index
        .and_then(|i| spec.regions[i].overrides.as_ref())
        .map(|o| o.resources.as_slice())
        .unwrap_or_default();
    let override_field = format!("spec.regions[{}].overrides", index.unwrap_or_default());
    check_override_targets(spec, overrides, &override_field)?;
    let mut built: Vec<Built> = Vec::new();
    for (i, manifest) in spec.resources.iter().enumerate() {
        let field = format!("spec.resources[{i}]");
        let reference = named_object(manifest, &field, app, taken)?;
        if let Some(first) = built
            .iter()
            .find(|b| b.reference.kind == reference.kind && b.reference.name == reference.name)
        {
            return Err(InvalidResource(format!(
                "{field}: {} {} is also {}",
                reference.kind, reference.name, first.field
            )));
        }
        let mut object = without_server_fields(manifest.clone());
        for (j, o) in overrides.iter().enumerate() {
            if o.kind == reference.kind && o.name == reference.name {
                patch(&mut object, o, &format!("{override_field}.resources[{j}]"))?;
            }
        }
        built.push(finish(app, region, reference, field, object));
    }
    Ok(built)
}

/// The manifest's object, refused when it names none, another namespace, a
/// kind that is not namespaced, or an object the operator places itself.
fn named_object(
    manifest: &Value,
    field: &str,
    app: &AppKey,
    taken: &[ResourceRef],
) -> Result<ResourceRef, InvalidResource> {
    let reference = reference(manifest).ok_or_else(|| {
        InvalidResource(format!("{field}: needs apiVersion, kind and metadata.name"))
    })?;
    let namespace = manifest
        .pointer("/metadata/namespace")
        .and_then(Value::as_str);
    if namespace.is_some_and(|n| !n.is_empty() && n != app.namespace) {
        return Err(InvalidResource(format!(
            "{field}.metadata.namespace: must be the app's namespace {} (or unset)",
            app.namespace
        )));
    }
    if reference.kind == "Namespace" {
        return Err(InvalidResource(format!(
            "{field}.kind: Namespace is not namespaced; the operator creates the app's namespace"
        )));
    }
    if taken.iter().any(|t| t.same_object(&reference)) {
        return Err(InvalidResource(format!(
            "{field}: {} {} is placed by the operator already (the app's workload or spec.propagate)",
            reference.kind, reference.name
        )));
    }
    Ok(reference)
}

/// Each region override names an object of `spec.resources`.
fn check_override_targets(
    spec: &MultiRegionAppSpec,
    overrides: &[ResourceOverride],
    field: &str,
) -> Result<(), InvalidResource> {
    let wanted = wanted(spec);
    for (j, o) in overrides.iter().enumerate() {
        if !wanted.iter().any(|w| w.kind == o.kind && w.name == o.name) {
            return Err(InvalidResource(format!(
                "{field}.resources[{j}]: no {} {} in spec.resources",
                o.kind, o.name
            )));
        }
    }
    Ok(())
}

fn patch(object: &mut Value, o: &ResourceOverride, field: &str) -> Result<(), InvalidResource> {
    let before = reference(object);
    for (n, op) in o.patches.iter().enumerate() {
        overrides::apply(object, op)
            .map_err(|why| InvalidResource(format!("{field}.patches[{n}]: {why}")))?;
    }
    if reference(object) != before {
        return Err(InvalidResource(format!(
            "{field}.patches: must keep the object's apiVersion, kind and name"
        )));
    }
    Ok(())
}

/// Drops what a server sets (copied from `kubectl get -o yaml`, they
/// would fail or fight the apply).
fn without_server_fields(mut object: Value) -> Value {
    if let Some(map) = object.as_object_mut() {
        map.remove("status");
        // The operator's, not the object's.
        map.remove("deletionPolicy");
    }
    if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        for field in [
            "resourceVersion",
            "uid",
            "creationTimestamp",
            "generation",
            "managedFields",
            "selfLink",
            "ownerReferences",
            "finalizers",
        ] {
            meta.remove(field);
        }
    }
    object
}

/// Namespace, the operator's labels (they win over the manifest's) and the
/// applied-hash of everything else.
fn finish(
    app: &AppKey,
    region: &str,
    reference: ResourceRef,
    field: String,
    mut object: Value,
) -> Built {
    let meta = object
        .as_object_mut()
        .map(|o| {
            o.entry("metadata")
                .or_insert_with(|| Value::Object(Map::new()))
        })
        .and_then(Value::as_object_mut);
    if let Some(meta) = meta {
        meta.insert("namespace".into(), Value::String(app.namespace.clone()));
        let labels = meta
            .entry("labels")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Some(labels) = labels.as_object_mut() {
            for (k, v) in manifest::labels(app, region) {
                labels.insert(k, Value::String(v));
            }
            labels.insert(LABEL_RESOURCE.into(), Value::String("true".into()));
        }
        if let Some(annotations) = meta.get_mut("annotations").and_then(Value::as_object_mut) {
            annotations.remove(ANNOTATION_APPLIED_HASH);
        }
    }
    let hash = manifest::content_hash(&object);
    if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        let annotations = meta
            .entry("annotations")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Some(annotations) = annotations.as_object_mut() {
            annotations.insert(ANNOTATION_APPLIED_HASH.into(), Value::String(hash.clone()));
        }
    }
    Built {
        reference,
        field,
        object,
        hash,
    }
}

/// What was placed before (`recorded`) and the spec no longer asks for:
/// to be removed from every region. An object still wanted under another
/// apiVersion is the same object, and stays.
pub fn stale(recorded: &[ResourceRef], wanted: &[ResourceRef]) -> Vec<ResourceRef> {
    recorded
        .iter()
        .filter(|r| !wanted.iter().any(|w| w.same_object(r)))
        .cloned()
        .collect()
}

/// The `status.resources` to write before anything is placed, when the
/// spec asks for an object not recorded yet: recorded first, an object the
/// operator places can always be found again to be removed, even when the
/// round that placed it never wrote its status.
pub fn record_ahead(
    wanted: &[ResourceRef],
    recorded_now: &[ResourceRef],
) -> Option<Vec<ResourceRef>> {
    wanted
        .iter()
        .any(|w| !recorded_now.contains(w))
        .then(|| recorded(wanted, recorded_now))
}

/// `status.resources`: what is wanted, then what is stale and not yet
/// removed everywhere; sorted, each once.
pub fn recorded(wanted: &[ResourceRef], not_removed: &[ResourceRef]) -> Vec<ResourceRef> {
    let mut all: Vec<ResourceRef> = Vec::new();
    // One entry per apiVersion, kind and name: the wanted one's
    // deletionPolicy is the one that applies.
    let same = |a: &ResourceRef, b: &ResourceRef| {
        (&a.api_version, &a.kind, &a.name) == (&b.api_version, &b.kind, &b.name)
    };
    for r in wanted.iter().chain(not_removed) {
        if !all.iter().any(|a| same(a, r)) {
            all.push(r.clone());
        }
    }
    all.sort();
    all
}

/// Of `objects`, those to delete when no longer wanted (`orphaned` ones
/// are left).
pub fn to_delete(objects: &[ResourceRef]) -> Vec<ResourceRef> {
    objects.iter().filter(|o| !o.orphaned()).cloned().collect()
}

/// What deleting the app does with the objects of `spec.resources` it
/// placed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct AppDeletion {
    /// Deleted from every region now.
    pub delete: Vec<ResourceRef>,
    /// Objects that hold data whose policy says `Delete`, kept until a
    /// person confirms (`multiregion.io/delete-data`): one `kubectl
    /// delete` must not take an estate's volumes with it.
    pub held: Vec<ResourceRef>,
}

/// Splits the recorded objects (`status.resources` with the spec's
/// policies, `recorded`) of an app being deleted: orphaned ones are left
/// alone; objects that hold data and were recorded as placed (`placed`,
/// `status.resources` as written) are held unless `confirmation` (the
/// app's `multiregion.io/delete-data` annotation) is the app's uid, which
/// no manifest stored before the app existed can carry.
pub fn on_app_deletion(
    recorded: &[ResourceRef],
    placed: &[ResourceRef],
    app_uid: &str,
    confirmation: Option<&str>,
) -> AppDeletion {
    let confirmed = !app_uid.is_empty() && confirmation.map(str::trim) == Some(app_uid);
    let was_placed = |o: &ResourceRef| placed.iter().any(|p| p.same_object(o));
    let (held, delete) = to_delete(recorded)
        .into_iter()
        .partition(|o| o.holds_data() && was_placed(o) && !confirmed);
    AppDeletion { delete, held }
}

impl AppDeletion {
    /// The `DeletionHeld` condition's message: what is kept, and the two
    /// ways on.
    pub fn held_message(&self, app_name: &str, app_uid: &str) -> Option<String> {
        if self.held.is_empty() {
            return None;
        }
        let objects: Vec<String> = self
            .held
            .iter()
            .map(|o| format!("{} {}", o.kind, o.name))
            .collect();
        Some(format!(
            "deleting the app would delete {} in every region (deletionPolicy: Delete); \
             its other objects and its traffic are removed, these are kept until confirmed: \
             `kubectl annotate multiregionapp {app_name} {ANNOTATION_DELETE_DATA}={app_uid}` \
             (the app's uid) deletes them, setting their deletionPolicy to Orphan keeps them",
            objects.join(", ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn key() -> AppKey {
        AppKey {
            hub: "hub-1".into(),
            namespace: "shop".into(),
            name: "web".into(),
        }
    }

    fn hpa(name: &str) -> Value {
        json!({
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": name, "labels": {"team": "shop"}},
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                     "minReplicas": 2, "maxReplicas": 5}
        })
    }

    fn spec(resources: Value, eu_overrides: Value) -> MultiRegionAppSpec {
        serde_json::from_value(json!({
            "strategy": "ActivePassive",
            "regions": [{"name": "us-east"}, {"name": "eu-west", "overrides": eu_overrides}],
            "workload": {"template": {"spec": {"containers": [{"name": "web", "image": "web:1"}]}}},
            "resources": resources
        }))
        .unwrap()
    }

    fn max_replicas(built: &[Built]) -> i64 {
        built[0].object["spec"]["maxReplicas"].as_i64().unwrap()
    }

    #[test]
    fn each_region_gets_the_manifest_with_its_own_patches_labels_and_hash() {
        let spec = spec(
            json!([hpa("web")]),
            json!({"resources": [{"kind": "HorizontalPodAutoscaler", "name": "web",
                "patches": [{"op": "replace", "path": "/spec/maxReplicas", "value": 9}]}]}),
        );
        let taken = taken(&key(), &[], &[]);
        let us = for_region(&key(), &spec, "us-east", &taken).unwrap();
        let eu = for_region(&key(), &spec, "eu-west", &taken).unwrap();
        assert_eq!((max_replicas(&us), max_replicas(&eu)), (5, 9));
        let meta = &eu[0].object["metadata"];
        assert_eq!(meta["namespace"], "shop");
        assert_eq!(
            meta["labels"]["team"], "shop",
            "the manifest's own labels stay"
        );
        assert_eq!(meta["labels"]["multiregion.io/region"], "eu-west");
        assert_eq!(meta["labels"]["multiregion.io/resource"], "true");
        assert_eq!(meta["annotations"][ANNOTATION_APPLIED_HASH], eu[0].hash);
        assert_ne!(us[0].hash, eu[0].hash);
        let owned = serde_json::from_value(meta["labels"].clone()).unwrap();
        assert!(manifest::owned_by(Some(&owned), &key(), "eu-west"));
        assert_eq!(check(&key(), &spec, &taken), Ok(()));
    }

    #[test]
    fn the_hash_is_stable_and_server_fields_are_dropped() {
        let mut pasted = hpa("web");
        pasted["metadata"]["resourceVersion"] = json!("42");
        pasted["metadata"]["uid"] = json!("u-1");
        pasted["status"] = json!({"currentReplicas": 3});
        let plain = for_region(
            &key(),
            &spec(json!([hpa("web")]), json!({})),
            "us-east",
            &[],
        );
        let copied = for_region(&key(), &spec(json!([pasted]), json!({})), "us-east", &[]);
        assert_eq!(plain.unwrap(), copied.unwrap());
    }

    #[test]
    fn what_cannot_be_placed_is_named_with_its_field() {
        let mut elsewhere = hpa("web");
        elsewhere["metadata"]["namespace"] = json!("other");
        let namespace = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x"}});
        let service = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"}});
        let copy =
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"}});
        let patch_on = |name: &str, path: &str| {
            json!({"resources": [{"kind": "HorizontalPodAutoscaler", "name": name,
                "patches": [{"op": "replace", "path": path, "value": 1}]}]})
        };
        let cases = [
            (
                json!([hpa("web"), hpa("web")]),
                json!({}),
                "spec.resources[1]: HorizontalPodAutoscaler web is also spec.resources[0]",
            ),
            (
                json!([elsewhere]),
                json!({}),
                "spec.resources[0].metadata.namespace: must be the app's namespace shop",
            ),
            (
                json!([namespace]),
                json!({}),
                "spec.resources[0].kind: Namespace is not namespaced",
            ),
            (
                json!([service]),
                json!({}),
                "spec.resources[0]: Service web is placed by the operator already",
            ),
            (
                json!([copy]),
                json!({}),
                "spec.resources[0]: ConfigMap settings is placed by the operator already",
            ),
            (
                json!([{"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": ""}}]),
                json!({}),
                "spec.resources[0]: needs apiVersion, kind and metadata.name",
            ),
            (
                json!([hpa("web")]),
                patch_on("api", "/spec/maxReplicas"),
                "spec.regions[1].overrides.resources[0]: no HorizontalPodAutoscaler api in spec.resources",
            ),
            (
                json!([hpa("web")]),
                patch_on("web", "/spec/nothing/here"),
                "spec.regions[1].overrides.resources[0].patches[0]: /spec/nothing does not exist",
            ),
            (
                json!([hpa("web")]),
                patch_on("web", "/metadata/name"),
                "spec.regions[1].overrides.resources[0].patches: must keep the object's apiVersion, kind and name",
            ),
        ];
        let taken = taken(&key(), &["settings".to_string()], &[]);
        for (resources, overrides, want) in cases {
            let err = check(&key(), &spec(resources, overrides), &taken).unwrap_err();
            assert!(
                err.0.starts_with(want),
                "{} does not start with {want}",
                err.0
            );
        }
    }

    #[test]
    fn a_kind_of_another_group_with_the_apps_name_is_not_taken() {
        let knative = json!({"apiVersion": "serving.knative.dev/v1", "kind": "Service",
            "metadata": {"name": "web"}});
        let spec = spec(json!([knative]), json!({}));
        let taken = taken(&key(), &[], &[]);
        let built = for_region(&key(), &spec, "us-east", &taken).unwrap();
        assert_eq!(built[0].reference.group(), "serving.knative.dev");
    }

    #[test]
    fn stateful_objects_are_orphaned_unless_the_manifest_says_delete() {
        let pvc = json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "data"}});
        let set =
            json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "db"}});
        let mut deleted = pvc.clone();
        deleted["deletionPolicy"] = json!("Delete");
        let mut kept = hpa("web");
        kept["deletionPolicy"] = json!("Orphan");
        let refs: Vec<ResourceRef> = [&pvc, &set, &deleted, &kept, &hpa("b")]
            .into_iter()
            .map(|m| reference(m).unwrap())
            .collect();
        let orphaned: Vec<bool> = refs.iter().map(ResourceRef::orphaned).collect();
        assert_eq!(orphaned, [true, true, false, true, false]);
        assert_eq!(to_delete(&refs).len(), 2);
        // A record from before the field existed keeps the kind's default.
        let mut old = refs[0].clone();
        old.deletion_policy = None;
        assert!(old.orphaned());
        // Only the operator reads it: the placed object does not carry it.
        let spec = spec(json!([deleted]), json!({}));
        let built = for_region(&key(), &spec, "us-east", &[]).unwrap();
        assert!(built[0].object.get("deletionPolicy").is_none());
        // A changed policy replaces the recorded one.
        let now = recorded(&[refs[2].clone()], &[refs[0].clone()]);
        assert_eq!(now, vec![refs[2].clone()]);
    }

    #[test]
    fn deleting_an_app_deletes_its_data_only_when_a_person_confirms_with_its_uid() {
        let mut claim = json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "scratch"}});
        claim["deletionPolicy"] = json!("Delete");
        let mut set =
            json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "db"}});
        set["deletionPolicy"] = json!("Delete");
        let kept = json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "data"}});
        let refs: Vec<ResourceRef> = [&claim, &set, &kept, &hpa("web")]
            .into_iter()
            .map(|m| reference(m).unwrap())
            .collect();
        let names = |objects: &[ResourceRef]| -> Vec<String> {
            objects.iter().map(|o| o.name.clone()).collect()
        };
        // The app's name (known before it exists, so it could sit in a
        // stored manifest) confirms nothing: only its uid does.
        for unconfirmed in [None, Some("true"), Some("web"), Some("u-2")] {
            let deletion = on_app_deletion(&refs, &refs, "u-1", unconfirmed);
            assert_eq!(names(&deletion.delete), ["web"], "{unconfirmed:?}");
            assert_eq!(names(&deletion.held), ["scratch", "db"], "{unconfirmed:?}");
            let message = deletion.held_message("web", "u-1").unwrap();
            assert!(
                message.contains("PersistentVolumeClaim scratch, StatefulSet db")
                    && message.contains("multiregion.io/delete-data=u-1"),
                "{message}"
            );
        }
        let confirmed = on_app_deletion(&refs, &refs, "u-1", Some("u-1"));
        assert_eq!(names(&confirmed.delete), ["scratch", "db", "web"]);
        assert!(confirmed.held.is_empty() && confirmed.held_message("web", "u-1").is_none());
        // The Orphan claim is never deleted, confirmed or not.
        assert!(!confirmed.delete.iter().any(|o| o.name == "data"));
        // What was never recorded as placed (an app refused before
        // anything was placed) holds nothing back.
        let unplaced = on_app_deletion(&refs, &refs[2..], "u-1", None);
        assert!(unplaced.held.is_empty(), "{:?}", unplaced.held);
    }

    #[test]
    fn a_new_object_is_recorded_before_it_is_placed() {
        let a = reference(&hpa("a")).unwrap();
        let b = reference(&hpa("b")).unwrap();
        let mut a3 = a.clone();
        a3.api_version = "autoscaling/v3".into();
        type Case = (Vec<ResourceRef>, Vec<ResourceRef>, Option<Vec<ResourceRef>>);
        let cases: [Case; 4] = [
            (vec![], vec![], None),
            (vec![a.clone()], vec![a.clone()], None),
            (
                vec![a.clone()],
                vec![b.clone()],
                Some(vec![a.clone(), b.clone()]),
            ),
            (vec![a3.clone()], vec![a.clone()], Some(vec![a.clone(), a3])),
        ];
        for (wanted, recorded_now, want) in cases {
            assert_eq!(
                record_ahead(&wanted, &recorded_now),
                want,
                "{wanted:?} {recorded_now:?}"
            );
        }
        assert_eq!(
            record_ahead(&[], std::slice::from_ref(&b)),
            None,
            "dropped: removed, not recorded ahead"
        );
    }

    #[test]
    fn dropped_objects_stay_recorded_until_removed_everywhere() {
        let a = reference(&hpa("a")).unwrap();
        let b = reference(&hpa("b")).unwrap();
        let c = reference(&hpa("c")).unwrap();
        let recorded_before = [a.clone(), b.clone()];
        let wanted = [a.clone(), c.clone()];
        assert_eq!(stale(&recorded_before, &wanted), std::slice::from_ref(&b));
        assert_eq!(
            recorded(&wanted, std::slice::from_ref(&b)),
            [a.clone(), b, c.clone()]
        );
        assert_eq!(recorded(&wanted, &[]), [a.clone(), c]);
        let mut newer = a.clone();
        newer.api_version = "autoscaling/v3".into();
        assert_eq!(
            stale(std::slice::from_ref(&a), &[newer]),
            [],
            "the same object under a new version"
        );
        let mut other_group = a.clone();
        other_group.api_version = "example.com/v2".into();
        assert_eq!(
            stale(std::slice::from_ref(&a), std::slice::from_ref(&other_group)),
            std::slice::from_ref(&a),
            "the same kind and name in another group is another object"
        );
    }
}
