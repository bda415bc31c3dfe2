//! Removing an app's placed objects: from regions that left its spec, and
//! from every region when the app is deleted (the finalizer).

use std::sync::Arc;

use kube::runtime::controller::Action;

use super::reconcile::MEMBER_WRITE_TIMEOUT;
use super::{Context, placement, status};
use crate::api::MultiRegionApp;
use crate::error::{Error, Result};
use crate::plan::health::RegionState;
use crate::plan::manifest::AppKey;

/// Removes the app's objects from regions that left its spec; returns the
/// regions now clean.
pub(super) async fn removed_regions(
    ctx: &Context,
    key: &AppKey,
    regions: &[String],
) -> Vec<String> {
    let mut cleaned = Vec::new();
    for region in regions {
        if remove_from(ctx, key, region).await.is_ok() {
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
    let mut pending = Vec::new();
    for region in &regions {
        if let Err(err) = remove_from(&ctx, &key, region).await {
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
    if status.cleanup_pending != pending && ctx.fence.check().is_ok() {
        let mut status = status.clone();
        status.cleanup_pending = pending.clone();
        let _ = status::write(&ctx.hub, &key, &status, None).await;
    }
    Err(Error::CleanupPending(pending))
}

/// Deletes the app's objects from one region. Done when the Region itself
/// no longer exists.
async fn remove_from(ctx: &Context, key: &AppKey, region: &str) -> Result<()> {
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
    tokio::time::timeout(MEMBER_WRITE_TIMEOUT, placement::remove(&member, key))
        .await
        .unwrap_or_else(|_| {
            Err(unreachable(format!(
                "no answer within {MEMBER_WRITE_TIMEOUT:?}"
            )))
        })
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
        "Unhealthy",
    ]
    .into_iter()
}
