//! Publishing weights to the traffic sinks in the hub (HTTPRoute and
//! DNSEndpoint, plus the per-region backend Services they point at). Objects
//! are owned by the app, so Kubernetes removes them with it, and are written
//! only when what would be written changed.

use std::collections::HashMap;
use std::sync::Mutex;

use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kube::{Client, Resource, ResourceExt};
use serde_json::{Value, json};

use crate::api::{FIELD_MANAGER, LABEL_REGION, MultiRegionApp};
use crate::plan::manifest::{self, AppKey, content_hash};
use crate::plan::traffic::{self, Target};
use crate::regions::Registry;

/// Hashes of what was last written, by (apiVersion/kind, namespace, name).
#[derive(Default)]
pub struct Written(Mutex<HashMap<(String, String, String), String>>);

fn resource(api_version: &str, kind: &str) -> ApiResource {
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let plural = match kind {
        "Service" => "services",
        "EndpointSlice" => "endpointslices",
        "HTTPRoute" => "httproutes",
        "DNSEndpoint" => "dnsendpoints",
        other => {
            return ApiResource::from_gvk(&kube::api::GroupVersionKind::gvk(group, version, other));
        }
    };
    ApiResource::from_gvk_with_plural(
        &kube::api::GroupVersionKind::gvk(group, version, kind),
        plural,
    )
}

/// Writes every sink object of the app. Returns a message naming what
/// failed, if anything did.
pub async fn publish(
    hub: &Client,
    registry: &Registry,
    written: &Written,
    app: &MultiRegionApp,
    weights: &[(String, i32)],
    removed_regions: &[String],
) -> Result<usize, String> {
    let Some(sinks) = &app.spec.traffic else {
        return Ok(0);
    };
    let key = AppKey {
        namespace: app.namespace().unwrap_or_default(),
        name: app.name_any(),
    };
    let targets: Vec<Option<Target>> = app
        .spec
        .regions
        .iter()
        .map(|r| {
            let endpoint = r
                .endpoint
                .clone()
                .or_else(|| registry.get(&r.name).and_then(|m| m.spec().endpoint));
            endpoint.as_deref().and_then(traffic::parse_endpoint)
        })
        .collect();
    let mut objects: Vec<Value> = Vec::new();
    if sinks.http_route.is_some() {
        for (region, target) in app.spec.regions.iter().zip(&targets) {
            objects.extend(traffic::backend(&key, &region.name, target.as_ref()));
        }
    }
    objects.extend(traffic::http_route(&key, &app.spec, weights, &targets));
    objects.extend(traffic::dns_endpoint(&key, &app.spec, weights, &targets));

    let owner = app
        .controller_owner_ref(&())
        .map(|o| serde_json::to_value(o).unwrap_or(Value::Null));
    let mut failures = Vec::new();
    let mut written_now = 0;
    for mut object in objects {
        if let Some(owner) = &owner {
            object["metadata"]["ownerReferences"] = json!([owner]);
        }
        let api_version = object["apiVersion"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let kind = object["kind"].as_str().unwrap_or_default().to_string();
        let name = object["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let id = (
            format!("{api_version}/{kind}"),
            key.namespace.clone(),
            name.clone(),
        );
        let hash = content_hash(&object);
        if written.0.lock().is_ok_and(|w| w.get(&id) == Some(&hash)) {
            continue;
        }
        let api: Api<DynamicObject> =
            Api::namespaced_with(hub.clone(), &key.namespace, &resource(&api_version, &kind));
        match api
            .patch(
                &name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&object),
            )
            .await
        {
            Ok(_) => {
                written_now += 1;
                if let Ok(mut w) = written.0.lock() {
                    w.insert(id, hash);
                }
            }
            Err(err) => failures.push(format!("{kind} {}/{name}: {err}", key.namespace)),
        }
    }

    // Backends of regions that left the spec go with them.
    if sinks.http_route.is_some() && !removed_regions.is_empty() {
        let params = ListParams::default().labels(&manifest::selector(&key));
        for (api_version, kind) in [("v1", "Service"), ("discovery.k8s.io/v1", "EndpointSlice")] {
            let api: Api<DynamicObject> =
                Api::namespaced_with(hub.clone(), &key.namespace, &resource(api_version, kind));
            let Ok(list) = api.list(&params).await else {
                continue;
            };
            for object in list {
                let region = object
                    .labels()
                    .get(LABEL_REGION)
                    .cloned()
                    .unwrap_or_default();
                if removed_regions.contains(&region)
                    && let Err(err) = api
                        .delete(&object.name_any(), &DeleteParams::default())
                        .await
                {
                    failures.push(format!("{kind} {}: {err}", object.name_any()));
                }
            }
        }
    }
    if failures.is_empty() {
        Ok(written_now)
    } else {
        Err(failures.join("; "))
    }
}
