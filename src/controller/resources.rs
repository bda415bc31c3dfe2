//! The objects of `spec.resources` in one member: their kinds found by
//! discovery; each created, or updated with server-side apply when the
//! operator's and its applied-hash differs; a same-named object the
//! operator did not create is never adopted (`Conflict`); deleted only when
//! the operator's labels say it placed it.
//!
//! These kinds are not watched: an object seen as wanted is read and
//! applied again after `RESOURCE_RECHECK`, so one deleted or edited by hand
//! is put back then.

use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams};
use kube::{Client, ResourceExt};

use super::placement::{fields_as_applied, post_params};
use crate::api::{FIELD_MANAGER, LABEL_RESOURCE, ResourceRef};
use crate::error::{Error, Result};
use crate::plan::manifest::{self, AppKey};
use crate::plan::resources::Built;
use crate::regions::Member;

/// Places what the region gets of `spec.resources`; returns whether
/// anything was written. One object that cannot be placed (a `Conflict`, a
/// kind not served) does not keep the others out: the first such error is
/// returned once every object was tried.
pub(super) async fn place(member: &Member, app: &AppKey, built: &[Built]) -> Result<bool> {
    let mut wrote = false;
    let mut first_error = None;
    for object in built {
        if member.resource_current(app, &object.reference, &object.hash) {
            continue;
        }
        match place_one(member, app, object).await {
            Ok(written) => wrote |= written,
            Err(err) => {
                first_error.get_or_insert(err);
            }
        }
    }
    first_error.map_or(Ok(wrote), Err)
}

async fn place_one(member: &Member, app: &AppKey, object: &Built) -> Result<bool> {
    let api = api_for(member, app, &object.reference)
        .await?
        .map_err(|why| refused(member, object, why))?;
    apply(member, &api, app, object)
        .await
        .map_err(|err| named(err, object))
}

/// Deletes the operator's objects among `objects` here (a kind not served
/// here, or one the operator may not read, cannot hold any of them). A
/// region that cannot be asked is an error: the objects stay recorded.
pub(super) async fn remove(member: &Member, app: &AppKey, objects: &[ResourceRef]) -> Result<()> {
    for object in objects {
        let Ok(api) = api_for(member, app, object).await? else {
            continue;
        };
        let region = member.name();
        let found = match api.get_opt(&object.name).await {
            Ok(found) => found,
            Err(kube::Error::Api(status)) if status.code == 403 => {
                tracing::warn!(region = %region, kind = %object.kind, "not allowed to read; nothing of this kind removed");
                None
            }
            Err(err) => return Err(Error::member(region, err)),
        };
        let ours = found.is_some_and(|o| {
            manifest::owned_by(Some(o.labels()), app, region)
                && o.labels().contains_key(LABEL_RESOURCE)
        });
        if ours {
            match api.delete(&object.name, &DeleteParams::background()).await {
                Ok(_) => {}
                Err(kube::Error::Api(status)) if status.code == 404 => {}
                Err(err) => return Err(Error::member(region, err)),
            }
        }
        member.resource_seen(app, object, None);
    }
    Ok(())
}

/// The API of the object's kind in the app's namespace here, or why there
/// is none.
async fn api_for(
    member: &Member,
    app: &AppKey,
    object: &ResourceRef,
) -> Result<Result<Api<DynamicObject>, &'static str>> {
    let client: &Client = member.client()?;
    let served = member
        .served_kind(&object.api_version, &object.kind)
        .await?;
    Ok(match served {
        None => Err("is not served in this region (is its CRD installed there?)"),
        Some((_, false)) => Err("is not namespaced; spec.resources takes namespaced kinds only"),
        Some((resource, true)) => Ok(Api::namespaced_with(
            client.clone(),
            &app.namespace,
            &resource,
        )),
    })
}

/// Creates the object, or reads the one holding its name and, when it is
/// the operator's, applies over it: a changed manifest is written, and so
/// is any field someone changed by hand. Returns whether the object
/// changed.
async fn apply(
    member: &Member,
    api: &Api<DynamicObject>,
    app: &AppKey,
    object: &Built,
) -> Result<bool> {
    let region = member.name();
    let desired: DynamicObject = serde_json::from_value(object.object.clone())
        .map_err(|e| refused(member, object, &format!("is not an object: {e}")))?;
    let name = &object.reference.name;
    match api.create(&post_params(), &desired).await {
        Ok(_) => {
            // Its fields are recorded as applied before the next apply.
            member.resource_seen(app, &object.reference, Some(&object.hash));
            return Ok(true);
        }
        Err(kube::Error::Api(status)) if status.code == 409 => {}
        Err(err) => return Err(Error::member(region, err)),
    }
    let Some(existing) = api
        .get_opt(name)
        .await
        .map_err(|e| Error::member(region, e))?
    else {
        // Deleted between the create and the read: the next round creates it.
        return Ok(false);
    };
    if !manifest::owned_by(Some(existing.labels()), app, region) {
        return Err(Error::Conflict {
            place: region.to_string(),
            kind: object.reference.kind.clone(),
            name: format!("{}/{name}", app.namespace),
        });
    }
    if let Err(err) = fields_as_applied(api, &existing).await {
        // Read and tried again at the next placement (every 30 s).
        tracing::debug!(name = %name, error = %err, "fields not recorded as applied yet");
    }
    let applied = api
        .patch(
            name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&object.object),
        )
        .await
        .map_err(|e| Error::member(region, e))?;
    member.resource_seen(app, &object.reference, Some(&object.hash));
    Ok(applied.resource_version() != existing.resource_version())
}

fn refused(member: &Member, object: &Built, why: &str) -> Error {
    Error::Refused {
        region: member.name().to_string(),
        message: format!(
            "{}: {} {} {why}",
            object.field, object.reference.api_version, object.reference.kind
        ),
    }
}

/// A refusal names the field it came from.
fn named(err: Error, object: &Built) -> Error {
    match err {
        Error::Refused { region, message } => Error::Refused {
            region,
            message: format!(
                "{} ({} {}): {message}",
                object.field, object.reference.kind, object.reference.name
            ),
        },
        other => other,
    }
}
