//! Removing an app's placed objects: from regions that left its spec, the
//! objects dropped from `spec.resources` from every region, and everything
//! from every region when the app is deleted (the finalizer).

use std::sync::Arc;

use jiff::Timestamp;
use kube::ResourceExt;
use kube::runtime::controller::Action;

use super::reconcile::MEMBER_WRITE_TIMEOUT;
use super::{Context, events, placement, status};
use crate::api::{
    ANNOTATION_DELETE_DATA, MultiRegionApp, MultiRegionAppSpec, MultiRegionAppStatus, ResourceRef,
};
use crate::error::{Error, Result};
use crate::plan::conditions::Conditions;
use crate::plan::health::RegionState;
use crate::plan::manifest::AppKey;
use crate::plan::resources;
use crate::plan::{Event, EventReason, EventType};
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
/// placed them in. Holds until done, or until a Region no longer exists;
/// objects of `spec.resources` that hold data and whose policy says
/// `Delete` wait for a person's confirmation (`DeletionHeld`).
pub(super) async fn run(app: Arc<MultiRegionApp>, ctx: Arc<Context>) -> Result<Action> {
    let key = ctx.key_of(&app);
    let status = app.status.clone().unwrap_or_default();
    let regions = placed_in(&app.spec, &status);
    let recorded = resources::recorded(&resources::wanted(&app.spec), &status.resources);
    let uid = app.metadata.uid.clone().unwrap_or_default();
    let confirmation = app.annotations().get(ANNOTATION_DELETE_DATA);
    let confirmation = confirmation.map(String::as_str);
    let deletion = resources::on_app_deletion(&recorded, &status.resources, &uid, confirmation);
    let mut pending = Vec::new();
    for region in &regions {
        if let Err(err) = remove_from(&ctx, &key, region, &deletion.delete).await {
            tracing::info!(app = %key.name, region = %region, error = %err, "cleanup waits for region");
            pending.push(region.clone());
        }
    }
    if !pending.is_empty() {
        if status.cleanup_pending != pending {
            let mut status = status.clone();
            status.cleanup_pending = pending.clone();
            write_over(&ctx, &app, &key, &status).await;
        }
        return Err(Error::CleanupPending(pending));
    }
    if let Some(message) = deletion.held_message(&key.name, &uid) {
        let withdraw = super::sinks::withdraw(&ctx.hub, &ctx.sinks, &app);
        ctx.fence.within(MEMBER_WRITE_TIMEOUT, withdraw).await;
        hold(&ctx, &app, &key, status, message).await;
        // Not Ok: kube's finalizer helper would take the finalizer off.
        let held = deletion
            .held
            .iter()
            .map(|o| format!("{} {}", o.kind, o.name));
        return Err(Error::DeletionHeld(held.collect()));
    }
    ctx.forget(&key);
    let reasons: Vec<String> = move_reason_words().map(str::to_string).collect();
    ctx.metrics
        .forget_app(&key.namespace, &key.name, &regions, &reasons);
    Ok(Action::await_change())
}

/// Every region the app may have placed objects in: its spec's, its
/// status', and those still waiting for their cleanup.
fn placed_in(spec: &MultiRegionAppSpec, status: &MultiRegionAppStatus) -> Vec<String> {
    let mut regions: Vec<String> = spec
        .regions
        .iter()
        .map(|r| r.name.clone())
        .chain(status.regions.iter().map(|r| r.name.clone()))
        .chain(status.cleanup_pending.iter().cloned())
        .collect();
    regions.sort();
    regions.dedup();
    regions
}

/// Writes the status of an app being deleted, over the version read (a
/// stale finalizer pass gets a conflict); true when written.
async fn write_over(
    ctx: &Context,
    app: &MultiRegionApp,
    key: &AppKey,
    status: &MultiRegionAppStatus,
) -> bool {
    let version = app.metadata.resource_version.clone();
    let write = status::write(&ctx.hub, key, status, version.as_deref());
    match ctx.fence.within(MEMBER_WRITE_TIMEOUT, write).await {
        Some(Err(err)) => {
            tracing::warn!(app = %key.name, error = %err, "status of the deletion not written");
            false
        }
        None => {
            tracing::info!(app = %key.name, "status of the deletion not written: no time left under the Lease");
            false
        }
        Some(Ok(_)) => true,
    }
}

/// The condition type shown while a deletion keeps objects that hold data
/// (the Event's reason too).
const DELETION_HELD: &str = "DeletionHeld";

/// Everything else is removed; the objects that hold data wait: says so
/// in a `DeletionHeld` condition and, when that is first written, a
/// Warning Event. `cleanupPending` is kept: a region listed there may
/// hold some of them, and must be cleaned once confirmed.
async fn hold(
    ctx: &Context,
    app: &MultiRegionApp,
    key: &AppKey,
    mut status: MultiRegionAppStatus,
    message: String,
) {
    let said = status
        .conditions
        .iter()
        .any(|c| c.type_ == DELETION_HELD && c.status == "True" && c.message == message);
    if said {
        return;
    }
    let previous = status.conditions.clone();
    let mut conditions = Conditions::new(&previous, Timestamp::now(), app.metadata.generation);
    conditions.set(
        DELETION_HELD,
        true,
        "DataDeletionUnconfirmed",
        message.clone(),
    );
    conditions.merge_into(&mut status.conditions);
    if write_over(ctx, app, key, &status).await {
        let event = Event {
            type_: EventType::Warning,
            reason: EventReason::DeletionHeld,
            message,
        };
        events::announce(ctx, app, &[event]).await;
    }
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
