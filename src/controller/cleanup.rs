//! Removing an app's placed objects: from regions that left its spec, the
//! objects dropped from `spec.resources` from every region, and everything
//! from every region when the app is deleted (the finalizer).

use std::sync::Arc;

use kube::runtime::controller::Action;

use super::reconcile::MEMBER_WRITE_TIMEOUT;
use super::{Context, placement, status};
use crate::api::{MultiRegionApp, MultiRegionAppSpec, ResourceRef};
use crate::error::{Error, Result};
use crate::plan::health::RegionState;
use crate::plan::manifest::AppKey;
use crate::plan::resources;
use crate::regions::Member;

/// Removes the app's objects (with `extra`, the objects of
/// `spec.resources` it may have placed, but those orphaned by their
/// deletionPolicy) from regions that left its spec; returns the regions
/// now clean.
pub(super) async fn removed_regions(
    ctx: &Context,
    key: &AppKey,
    regions: &[String],
    extra: &[ResourceRef],
) -> Vec<String> {
    let mut cleaned = Vec::new();
    let extra = &resources::to_delete(extra);
    for region in regions {
        if remove_from(ctx, key, region, extra).await.is_ok() {
            cleaned.push(region.clone());
        }
    }
    cleaned
}

/// The finalizer: removes the app's objects from every region it may have
/// placed them in. Holds until done, or until a Region no longer exists.
pub(super) async fn run(app: Arc<MultiRegionApp>, ctx: Arc<Context>) -> Result<Action> {
    let key = ctx.key_of(&app);
    let status = app.status.clone().unwrap_or_default();
    let mut regions: Vec<String> = app
        .spec
        .regions
        .iter()
        .map(|r| r.name.clone())
        .chain(status.regions.iter().map(|r| r.name.clone()))
        .chain(status.cleanup_pending.iter().cloned())
        .collect();
    regions.sort();
    regions.dedup();
    let recorded = resources::recorded(&resources::wanted(&app.spec), &status.resources);
    let extra = resources::to_delete(&recorded);
    let mut pending = Vec::new();
    for region in &regions {
        if let Err(err) = remove_from(&ctx, &key, region, &extra).await {
            tracing::info!(app = %key.name, region = %region, error = %err, "cleanup waits for region");
            pending.push(region.clone());
        }
    }
    if pending.is_empty() {
        ctx.forget(&key);
        let reasons: Vec<String> = move_reason_words().map(str::to_string).collect();
        ctx.metrics
            .forget_app(&key.namespace, &key.name, &regions, &reasons);
        return Ok(Action::await_change());
    }
    if status.cleanup_pending != pending {
        let mut status = status.clone();
        status.cleanup_pending = pending.clone();
        // Over the version read: a stale finalizer pass gets a conflict.
        let version = app.metadata.resource_version.clone();
        let write = status::write(&ctx.hub, &key, &status, version.as_deref());
        ctx.fence.within(MEMBER_WRITE_TIMEOUT, write).await;
    }
    Err(Error::CleanupPending(pending))
}

/// The objects dropped from `spec.resources` (recorded in `recorded`,
/// `status.resources`), removed from each region of the spec and each
/// region still waiting for its cleanup (`leaving`); returns the new
/// `status.resources`: what the spec asks for, and what could not be
/// removed everywhere yet (tried again next round).
pub(super) async fn dropped_resources(
    ctx: &Context,
    key: &AppKey,
    spec: &MultiRegionAppSpec,
    leaving: &[String],
    recorded: &[ResourceRef],
) -> Vec<ResourceRef> {
    let wanted = resources::wanted(spec);
    let regions: Vec<&str> = spec
        .regions
        .iter()
        .map(|r| r.name.as_str())
        .chain(leaving.iter().map(String::as_str))
        .collect();
    let mut not_removed = Vec::new();
    let stale = resources::stale(recorded, &wanted);
    for object in resources::to_delete(&stale) {
        for region in &regions {
            let removed = remove_objects(ctx, key, region, std::slice::from_ref(&object)).await;
            if let Err(err) = removed {
                tracing::info!(app = %key.name, region = %region, object = ?object, error = %err, "dropped resource not removed yet");
                not_removed.push(object);
                break;
            }
        }
    }
    resources::recorded(&wanted, &not_removed)
}

/// Deletes the app's objects from one region. Done when the Region itself
/// no longer exists.
async fn remove_from(
    ctx: &Context,
    key: &AppKey,
    region: &str,
    extra: &[ResourceRef],
) -> Result<()> {
    in_member(ctx, region, |member| async move {
        placement::remove(&member, key, extra).await
    })
    .await
}

/// Deletes these objects of `spec.resources` from one region.
async fn remove_objects(
    ctx: &Context,
    key: &AppKey,
    region: &str,
    objects: &[ResourceRef],
) -> Result<()> {
    in_member(ctx, region, |member| async move {
        super::resources::remove(&member, key, objects).await
    })
    .await
}

/// Runs a removal in one region, within `MEMBER_WRITE_TIMEOUT`. Done at
/// once when the Region itself no longer exists.
async fn in_member<F, Fut>(ctx: &Context, region: &str, removal: F) -> Result<()>
where
    F: FnOnce(Arc<Member>) -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    ctx.fence.check()?;
    let unreachable = |reason: String| Error::Unreachable {
        region: region.to_string(),
        reason,
    };
    let Some(member) = ctx.registry.get(region) else {
        return match ctx.registry.is_synced() {
            true => Ok(()),
            false => Err(unreachable("regions not listed yet".into())),
        };
    };
    if let RegionState::Unreachable(why) = member.state() {
        return Err(unreachable(why));
    }
    let late = || unreachable(format!("no answer within {MEMBER_WRITE_TIMEOUT:?}"));
    ctx.fence
        .bounded(MEMBER_WRITE_TIMEOUT, removal(member), late)
        .await
}

/// Every word a move's reason can be (the failovers metric's label).
fn move_reason_words() -> impl Iterator<Item = &'static str> {
    [
        "Failback",
        "Override",
        "Schedule",
        "Drain",
        "Cordon",
        "RegionRemoved",
        "RegionNotFound",
        "RegionCredentialsInvalid",
        "RegionUnreachable",
        "ControlPlaneUnreachable",
        "Conflict",
        "PlacementRefused",
        "NotEnoughReadyReplicas",
        "HttpProbeFailed",
        "EvidenceUnknown",
        "Unhealthy",
    ]
    .into_iter()
}
