//! Per-region overrides (`regions[].overrides`): images and environment
//! variables of the pod template, then JSON patches of the Deployment,
//! applied to what one region gets; checked for every region before
//! anything is placed.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Container, EnvVar, PodTemplateSpec};
use serde_json::Value;

use super::Placement;
use super::manifest::{self, AppKey};
use crate::api::{MultiRegionAppSpec, Overrides, PatchOp, PatchOperation};

/// Why a region's overrides cannot be applied; names the field.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct InvalidOverride(pub String);

/// Checks every region's overrides on the Deployment as it would be
/// placed there (`template` with its checksum): each container named
/// exists, each patch applies, the result is a Deployment that keeps the
/// app's selector and the region's labels.
pub fn validate(
    app: &AppKey,
    spec: &MultiRegionAppSpec,
    template: &PodTemplateSpec,
) -> Result<(), InvalidOverride> {
    for (i, region) in spec.regions.iter().enumerate() {
        let Some(overrides) = &region.overrides else {
            continue;
        };
        let field = format!("spec.regions[{i}].overrides");
        let placement = Placement {
            region: region.name.clone(),
            replicas: 1,
            role: crate::api::Role::Active,
            touch: true,
            scale_down: false,
            self_fence: None,
        };
        let placed = manifest::deployment_for(app, template, &placement, Some(overrides), &field)?;
        let unpatched = manifest::deployment(app, template, &placement);
        if selector_and_pod_labels(&placed) != selector_and_pod_labels(&unpatched) {
            return Err(InvalidOverride(format!(
                "{field}.patches: the pods must keep the app's selector and multiregion.io/ labels"
            )));
        }
    }
    Ok(())
}

/// The Deployment's selector and the operator's pod labels: what overrides
/// must leave alone.
fn selector_and_pod_labels(
    deployment: &Deployment,
) -> (Option<serde_json::Value>, Vec<(String, String)>) {
    let spec = deployment.spec.as_ref();
    let selector = spec.and_then(|s| serde_json::to_value(&s.selector).ok());
    let labels = spec
        .and_then(|s| s.template.metadata.as_ref()?.labels.clone())
        .unwrap_or_default()
        .into_iter()
        .filter(|(k, _)| k.starts_with("multiregion.io/"))
        .collect();
    (selector, labels)
}

/// Images and env on the pod template.
pub fn on_template(
    template: &mut PodTemplateSpec,
    overrides: &Overrides,
    field: &str,
) -> Result<(), InvalidOverride> {
    let containers = template
        .spec
        .as_mut()
        .map(|s| &mut s.containers)
        .ok_or_else(|| InvalidOverride(format!("{field}: the template has no pod spec")))?;
    for (name, image) in &overrides.images {
        let container = named(containers, name).ok_or_else(|| {
            InvalidOverride(format!("{field}.images.{name}: no container named {name}"))
        })?;
        container.image = Some(image.clone());
    }
    for (j, env) in overrides.env.iter().enumerate() {
        for name in &env.containers {
            if named(containers, name).is_none() {
                return Err(InvalidOverride(format!(
                    "{field}.env[{j}].containers: no container named {name}"
                )));
            }
        }
        let chosen = containers
            .iter_mut()
            .filter(|c| env.containers.is_empty() || env.containers.contains(&c.name));
        for container in chosen {
            set_env(container, &env.name, &env.value);
        }
    }
    Ok(())
}

fn named<'a>(containers: &'a mut [Container], name: &str) -> Option<&'a mut Container> {
    containers.iter_mut().find(|c| c.name == name)
}

fn set_env(container: &mut Container, name: &str, value: &str) {
    let vars = container.env.get_or_insert_with(Vec::new);
    vars.retain(|v| v.name != name);
    vars.push(EnvVar {
        name: name.to_string(),
        value: Some(value.to_string()),
        value_from: None,
    });
}

/// The JSON patches on the Deployment.
pub fn on_deployment(
    deployment: Deployment,
    overrides: &Overrides,
    field: &str,
) -> Result<Deployment, InvalidOverride> {
    if overrides.patches.is_empty() {
        return Ok(deployment);
    }
    let mut value =
        serde_json::to_value(&deployment).map_err(|e| InvalidOverride(format!("{field}: {e}")))?;
    for (j, op) in overrides.patches.iter().enumerate() {
        apply(&mut value, op)
            .map_err(|why| InvalidOverride(format!("{field}.patches[{j}]: {why}")))?;
    }
    serde_json::from_value(value).map_err(|e| {
        InvalidOverride(format!(
            "{field}.patches: the result is not a Deployment: {e}"
        ))
    })
}

/// One RFC 6902 operation (add, replace, remove).
pub(crate) fn apply(document: &mut Value, op: &PatchOperation) -> Result<(), String> {
    let (parent_path, last) = op
        .path
        .rsplit_once('/')
        .ok_or_else(|| format!("{} is not a JSON pointer", op.path))?;
    let key = last.replace("~1", "/").replace("~0", "~");
    let parent = document
        .pointer_mut(parent_path)
        .ok_or_else(|| format!("{parent_path} does not exist"))?;
    let value = match (&op.value, op.op) {
        (Some(value), _) => value.clone(),
        (None, PatchOp::Remove) => Value::Null,
        (None, _) => return Err("add and replace need a value".into()),
    };
    match (parent, op.op) {
        (Value::Object(map), PatchOp::Add) => {
            map.insert(key, value);
        }
        (Value::Object(map), PatchOp::Replace) => {
            let slot = map
                .get_mut(&key)
                .ok_or_else(|| format!("{} does not exist", op.path))?;
            *slot = value;
        }
        (Value::Object(map), PatchOp::Remove) => {
            map.remove(&key)
                .ok_or_else(|| format!("{} does not exist", op.path))?;
        }
        (Value::Array(items), kind) => array_op(items, &key, kind, value, &op.path)?,
        _ => return Err(format!("{parent_path} is neither an object nor a list")),
    }
    Ok(())
}

fn array_op(
    items: &mut Vec<Value>,
    key: &str,
    kind: PatchOp,
    value: Value,
    path: &str,
) -> Result<(), String> {
    if key == "-" && kind == PatchOp::Add {
        items.push(value);
        return Ok(());
    }
    let index: usize = key
        .parse()
        .map_err(|_| format!("{path}: {key} is not an index"))?;
    let in_range = match kind {
        PatchOp::Add => index <= items.len(),
        _ => index < items.len(),
    };
    if !in_range {
        return Err(format!("{path}: index {index} is out of range"));
    }
    match kind {
        PatchOp::Add => items.insert(index, value),
        PatchOp::Replace => items[index] = value,
        PatchOp::Remove => {
            items.remove(index);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(overrides: Value) -> MultiRegionAppSpec {
        serde_json::from_value(json!({
            "strategy": "ActivePassive",
            "regions": [{"name": "us-east"}, {"name": "eu-west", "overrides": overrides}],
            "workload": {"template": {"spec": {"containers": [
                {"name": "web", "image": "shop/web:1", "env": [{"name": "TIER", "value": "silver"}]},
                {"name": "sidecar", "image": "proxy:2"}
            ]}}}
        }))
        .unwrap()
    }

    fn key() -> AppKey {
        AppKey {
            hub: String::new(),
            namespace: "shop".into(),
            name: "web".into(),
        }
    }

    fn template(spec: &MultiRegionAppSpec) -> PodTemplateSpec {
        serde_json::from_value(spec.workload.template.clone()).unwrap()
    }

    #[test]
    fn images_and_env_change_only_the_named_containers() {
        let spec = spec(json!({
            "images": {"web": "eu.registry/shop/web:1"},
            "env": [{"name": "TIER", "value": "gold", "containers": ["web"]}, {"name": "REGION", "value": "eu"}]
        }));
        let mut t = template(&spec);
        let overrides = spec.regions[1].overrides.as_ref().unwrap();
        on_template(&mut t, overrides, "x").unwrap();
        let web = &t.spec.as_ref().unwrap().containers[0];
        assert_eq!(web.image.as_deref(), Some("eu.registry/shop/web:1"));
        let env: Vec<(&str, &str)> = web
            .env
            .iter()
            .flatten()
            .map(|e| (e.name.as_str(), e.value.as_deref().unwrap_or("")))
            .collect();
        assert_eq!(env, [("TIER", "gold"), ("REGION", "eu")]);
        let sidecar = &t.spec.as_ref().unwrap().containers[1];
        assert_eq!(sidecar.image.as_deref(), Some("proxy:2"));
        assert_eq!(sidecar.env.as_ref().unwrap().len(), 1, "REGION only");
    }

    #[test]
    fn patches_add_replace_and_remove() {
        let spec = spec(json!({"patches": [
            {"op": "add", "path": "/spec/template/spec/nodeSelector", "value": {"zone": "eu-1"}},
            {"op": "add", "path": "/spec/template/spec/containers/-", "value": {"name": "log", "image": "log:1"}},
            {"op": "replace", "path": "/spec/template/spec/containers/1/image", "value": "proxy:3"},
            {"op": "remove", "path": "/spec/template/spec/containers/0/env"}
        ]}));
        assert_eq!(validate(&key(), &spec, &template(&spec)), Ok(()));
        let deployment = Deployment {
            spec: Some(k8s_openapi::api::apps::v1::DeploymentSpec {
                template: template(&spec),
                ..Default::default()
            }),
            ..Default::default()
        };
        let patched =
            on_deployment(deployment, spec.regions[1].overrides.as_ref().unwrap(), "x").unwrap();
        let pod = patched.spec.unwrap().template.spec.unwrap();
        assert_eq!(pod.node_selector.unwrap()["zone"], "eu-1");
        assert_eq!(pod.containers.len(), 3);
        assert_eq!(pod.containers[1].image.as_deref(), Some("proxy:3"));
        assert!(pod.containers[0].env.is_none());
    }

    #[test]
    fn what_cannot_apply_is_named_with_its_field() {
        let cases = [
            (
                json!({"images": {"api": "x"}}),
                "spec.regions[1].overrides.images.api: no container named api",
            ),
            (
                json!({"env": [{"name": "A", "containers": ["db"]}]}),
                "spec.regions[1].overrides.env[0].containers: no container named db",
            ),
            (
                json!({"patches": [{"op": "replace", "path": "/spec/paused/x", "value": 1}]}),
                "spec.regions[1].overrides.patches[0]: /spec/paused does not exist",
            ),
            (
                json!({"patches": [{"op": "remove", "path": "/spec/template/spec/containers/5"}]}),
                "spec.regions[1].overrides.patches[0]: /spec/template/spec/containers/5: index 5 is out of range",
            ),
            (
                json!({"patches": [{"op": "replace", "path": "/spec/template/metadata/labels", "value": {}}]}),
                "spec.regions[1].overrides.patches: the pods must keep the app's selector",
            ),
            (
                json!({"patches": [{"op": "add", "path": "/spec/paused"}]}),
                "spec.regions[1].overrides.patches[0]: add and replace need a value",
            ),
            (
                json!({"patches": [{"op": "add", "path": "/spec/template/spec/containers", "value": 3}]}),
                "spec.regions[1].overrides.patches: the result is not a Deployment",
            ),
        ];
        for (overrides, want) in cases {
            let spec = spec(overrides);
            let err = validate(&key(), &spec, &template(&spec)).unwrap_err();
            assert!(
                err.0.starts_with(want),
                "{} does not start with {want}",
                err.0
            );
        }
    }
}
