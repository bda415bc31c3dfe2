//! The probe of one member API server: a bounded-time `GET /readyz` every
//! `probe.intervalSeconds`, judged by the same threshold state machine as
//! app health, written to `Region.status` only when it changes.

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::Client;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

use super::{CredentialsError, ProbeState, Registry, Trigger};
use crate::api::{FIELD_MANAGER, Region, RegionStatus};
use crate::metrics::{Metrics, RegionLabels};
use crate::plan::conditions::Conditions;
use crate::plan::health::{self, Counters, Health, Thresholds};

/// Resume the state machine from the Region's status after a restart.
pub fn initial_state(region: &Region) -> ProbeState {
    let status = region.status.clone().unwrap_or_default();
    let health = match status.phase.as_deref() {
        Some("Reachable") => Health::Healthy,
        Some("Unreachable") => Health::Unhealthy,
        _ => Health::Unknown,
    };
    let since = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Reachable")
        .map(|c| c.last_transition_time.0);
    ProbeState {
        last_ok: None,
        last_error: String::new(),
        counters: Counters {
            health,
            failures: status.consecutive_failures,
            successes: status.consecutive_successes,
            since,
        },
        version: status.kubernetes_version,
    }
}

fn phase(health: Health) -> &'static str {
    match health {
        Health::Healthy => "Reachable",
        Health::Unhealthy => "Unreachable",
        Health::Unknown => "Unknown",
    }
}

/// Probes until the member is dropped from the registry.
pub async fn run(
    registry: Weak<Registry>,
    member: Weak<super::Member>,
    client: Client,
    hub: Client,
    metrics: Arc<Metrics>,
) {
    let Some(name) = member.upgrade().map(|m| m.name.clone()) else {
        return;
    };
    let labels = RegionLabels {
        region: name.clone(),
    };
    let weak_member = member;
    loop {
        let Some(member) = weak_member.upgrade() else {
            return;
        };
        let probe = member.spec().probe;
        let started = Instant::now();
        let timeout = Duration::from_secs(probe.timeout_seconds.max(1) as u64);
        let outcome = match http::Request::get("/readyz").body(Vec::new()) {
            Ok(request) => tokio::time::timeout(timeout, client.request_text(request))
                .await
                .map(|r| r.map_err(|e| e.to_string())),
            Err(err) => Ok(Err(err.to_string())),
        };
        let latency = started.elapsed();
        let (ok, error) = match outcome {
            Ok(Ok(body)) if body.trim() == "ok" => (true, String::new()),
            Ok(Ok(body)) => (false, format!("/readyz answered {:?}", body.trim())),
            Ok(Err(err)) => (false, format!("/readyz failed: {err}")),
            Err(_) => (
                false,
                format!("/readyz timed out after {}s", timeout.as_secs()),
            ),
        };
        metrics
            .probe_duration
            .get_or_create(&labels)
            .observe(latency.as_secs_f64());
        metrics
            .region_reachable
            .get_or_create(&labels)
            .set(i64::from(ok));

        let version = if ok
            && member
                .probe
                .lock()
                .map(|p| p.version.is_none())
                .unwrap_or(false)
        {
            client.apiserver_version().await.ok().map(|v| v.git_version)
        } else {
            None
        };
        let now = Timestamp::now();
        let thresholds = Thresholds {
            failure: probe.failure_threshold,
            success: probe.success_threshold,
        };
        let (changed_raw, changed_state, state) = {
            let Ok(mut state) = member.probe.lock() else {
                return;
            };
            let previous = state.clone();
            state.counters = health::step(state.counters, ok, thresholds, now);
            state.last_ok = Some(ok);
            state.last_error = error.clone();
            if version.is_some() {
                state.version = version;
            }
            (
                previous.last_ok != Some(ok),
                previous.counters != state.counters || previous.version != state.version,
                state.clone(),
            )
        };
        if changed_raw {
            if ok {
                tracing::info!(region = %name, latency_ms = latency.as_millis() as u64, "region answers probes");
            } else {
                tracing::warn!(region = %name, error = %error, "region probe failed");
            }
            if let Some(registry) = registry.upgrade() {
                registry.trigger(Trigger::Region(name.clone()));
            }
        }
        if changed_state || changed_raw {
            let location = member.spec().location;
            write_status(&hub, &name, &state, &error, latency, now, location).await;
            metrics.wrote("hub", "region_status");
        }
        drop(member);
        let interval = Duration::from_secs(probe.interval_seconds.max(1) as u64);
        tokio::time::sleep(interval.saturating_sub(started.elapsed())).await;
    }
}

async fn write_status(
    hub: &Client,
    name: &str,
    state: &ProbeState,
    error: &str,
    latency: Duration,
    now: Timestamp,
    location: std::collections::BTreeMap<String, String>,
) {
    let api: Api<Region> = Api::all(hub.clone());
    let previous = match api.get_status(name).await {
        Ok(r) => r.status.unwrap_or_default(),
        Err(err) => {
            tracing::debug!(region = %name, error = %err, "cannot read Region status");
            return;
        }
    };
    let mut conditions = Conditions::new(&previous.conditions, now, None);
    match state.counters.health {
        Health::Healthy => conditions.set(
            "Reachable",
            true,
            "ProbeSucceeded",
            "the API server answers /readyz",
        ),
        Health::Unhealthy => conditions.set("Reachable", false, "ProbeFailed", error.to_string()),
        Health::Unknown => conditions.set("Reachable", false, "Probing", "not judged yet"),
    }
    let status = RegionStatus {
        phase: Some(phase(state.counters.health).to_string()),
        kubernetes_version: state.version.clone(),
        consecutive_failures: state.counters.failures,
        consecutive_successes: state.counters.successes,
        last_probe_time: Some(Time(now)),
        last_probe_latency_ms: Some(latency.as_millis() as i64),
        location,
        conditions: conditions.finish(),
    };
    patch_status(&api, name, status).await;
}

/// Reports unusable credentials on the Region.
pub async fn report_credentials_error(hub: &Client, name: &str, err: &CredentialsError) {
    let api: Api<Region> = Api::all(hub.clone());
    let Ok(region) = api.get_status(name).await else {
        return;
    };
    let previous = region.status.unwrap_or_default();
    let now = Timestamp::now();
    let mut conditions = Conditions::new(&previous.conditions, now, None);
    conditions.set("Reachable", false, err.reason(), err.to_string());
    let status = RegionStatus {
        phase: Some("Unknown".into()),
        conditions: conditions.finish(),
        ..previous.clone()
    };
    if status != previous {
        patch_status(&api, name, status).await;
    }
}

async fn patch_status(api: &Api<Region>, name: &str, status: RegionStatus) {
    let body = json!({
        "apiVersion": "multiregion.io/v1alpha1",
        "kind": "Region",
        "status": status,
    });
    if let Err(err) = api
        .patch_status(
            name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&body),
        )
        .await
    {
        tracing::warn!(region = %name, error = %err, "cannot write Region status");
    }
}
