//! Writing an app's status to the hub.

use kube::Client;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

use crate::api::{FIELD_MANAGER, MultiRegionApp, MultiRegionAppStatus};
use crate::error::{Error, Result};
use crate::plan::manifest::AppKey;

/// Server-side apply of the whole status under the operator's field
/// manager. With `version` (the resourceVersion the decision was made
/// from) the write is conditional: if anyone wrote the app since, it fails
/// with `StatusConflict` instead of overwriting them. Returns the new
/// resourceVersion.
pub(super) async fn write(
    hub: &Client,
    key: &AppKey,
    status: &MultiRegionAppStatus,
    version: Option<&str>,
) -> Result<Option<String>> {
    let api: Api<MultiRegionApp> = Api::namespaced(hub.clone(), &key.namespace);
    let mut body = json!({
        "apiVersion": "multiregion.io/v1alpha1",
        "kind": "MultiRegionApp",
        "status": status,
    });
    if let Some(version) = version {
        body["metadata"] = json!({ "resourceVersion": version });
    }
    let params = PatchParams::apply(FIELD_MANAGER).force();
    match api
        .patch_status(&key.name, &params, &Patch::Apply(&body))
        .await
    {
        Ok(app) => Ok(app.resource_version()),
        Err(kube::Error::Api(s)) if s.code == 409 => Err(Error::StatusConflict {
            app: format!("{}/{}", key.namespace, key.name),
        }),
        Err(err) => Err(Error::hub(format!(
            "write status of {}/{}",
            key.namespace, key.name
        ))(err)),
    }
}
