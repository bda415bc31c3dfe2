//! The announce phase: Kubernetes Events on the app.

use jiff::Timestamp;
use k8s_openapi::api::events::v1::Event as KubeEvent;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::Api;
use kube::{Resource, ResourceExt};

use super::Context;
use crate::api::MultiRegionApp;
use crate::plan::Event;

/// Records each Event on the app, in order (while this replica may write).
pub(super) async fn announce(ctx: &Context, app: &MultiRegionApp, events: &[Event]) {
    for event in events {
        // Each Event within the time the fence leaves.
        let Ok(time) = ctx.fence.time_for(EVENT_TIMEOUT) else {
            return;
        };
        let _ = tokio::time::timeout(time, record(ctx, app, event)).await;
    }
}

/// Longest one Event may take to record.
const EVENT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Records one Event. Events are created directly (not through kube's
/// Recorder, which folds events of the same reason into one series and
/// keeps the first message): the plan only emits an event when something
/// changed, so each one is news.
async fn record(ctx: &Context, app: &MultiRegionApp, event: &Event) {
    let namespace = app.namespace().unwrap_or_default();
    let reason = event.reason.as_str();
    let body = KubeEvent {
        metadata: kube::api::ObjectMeta {
            generate_name: Some(format!("{}-", app.name_any())),
            namespace: Some(namespace.clone()),
            ..Default::default()
        },
        event_time: Some(MicroTime(Timestamp::now())),
        type_: Some(event.type_.as_str().to_string()),
        reason: Some(reason.to_string()),
        note: Some(event.message.chars().take(1000).collect()),
        action: Some("Reconcile".into()),
        regarding: Some(app.object_ref(&())),
        reporting_controller: Some("multiregion.io/operator".into()),
        reporting_instance: Some(ctx.identity.clone()),
        ..Default::default()
    };
    let api: Api<KubeEvent> = Api::namespaced(ctx.hub.clone(), &namespace);
    ctx.metrics.wrote("hub", "event");
    if let Err(err) = api.create(&Default::default(), &body).await {
        tracing::warn!(error = %err, reason, "cannot record Event");
    }
    tracing::info!(app = %app.name_any(), namespace = %namespace, reason, message = %event.message, "event");
}
