//! The probe of one member API server: a bounded-time `GET /readyz` every
//! `probe.intervalSeconds`, judged by the same threshold state machine as
//! app health, written to `Region.status` only when it changes.

use std::sync::Weak;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::Client;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

use super::{CredentialsError, Member, ProbeState, Registry, Trigger};
use crate::api::{FIELD_MANAGER, Region, RegionPhase, RegionProbe, RegionStatus};
use crate::metrics::RegionLabels;
use crate::plan::conditions::Conditions;
use crate::plan::health::{self, Counters, Health, Thresholds};
use crate::text::member_text;

/// The longest a Region status write may hold up the probe loop.
pub(crate) const STATUS_WRITE_DEADLINE: Duration = Duration::from_secs(5);

/// Resume the state machine from the Region's status after a restart.
pub fn initial_state(region: &Region) -> ProbeState {
    let status = region.status.clone().unwrap_or_default();
    let since = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Reachable")
        .map(|c| c.last_transition_time.0);
    ProbeState {
        last_ok: None,
        troubled: None,
        last_error: String::new(),
        counters: Counters {
            health: status.phase.unwrap_or_default().into(),
            failures: status.consecutive_failures,
            successes: status.consecutive_successes,
            since,
        },
        version: status.kubernetes_version,
    }
}

/// One probe's result.
pub(crate) struct Probed {
    pub(crate) ok: bool,
    /// The API server answered with an error code that says nothing about
    /// the region (429, 5xx, 401, 403): no evidence either way.
    pub(crate) troubled: Option<u16>,
    pub(crate) error: String,
    latency: Duration,
}

/// Probes until the member is dropped from the registry.
pub async fn run(registry: Weak<Registry>, member: Weak<Member>, client: Client) {
    let Some(name) = member.upgrade().map(|m| m.name().to_string()) else {
        return;
    };
    let labels = RegionLabels {
        region: name.clone(),
    };
    loop {
        let (Some(current), Some(registry)) = (member.upgrade(), registry.upgrade()) else {
            return;
        };
        let spec = current.spec().probe;
        let started = Instant::now();
        let probed = probe_once(&client, &spec).await;
        let metrics = registry.metrics();
        metrics
            .probe_duration
            .get_or_create(&labels)
            .observe(probed.latency.as_secs_f64());
        metrics
            .region_reachable
            .get_or_create(&labels)
            .set(i64::from(probed.ok));
        let Some((before, after)) = judge(&current, &client, &spec, &probed).await else {
            return;
        };
        report(&registry, &current, &probed, &before, &after).await;
        drop((current, registry));
        let interval = Duration::from_secs(spec.interval_seconds.max(1) as u64);
        tokio::time::sleep(interval.saturating_sub(started.elapsed())).await;
    }
}

/// The most of a `/readyz` answer the probe reads: an API server's verbose
/// answer is a few KiB; a member cannot make the operator read more.
const READYZ_BODY_MAX: usize = 64 * 1024;

/// A bounded-time `GET /readyz`, its body read up to `READYZ_BODY_MAX`.
pub(crate) async fn probe_once(client: &Client, spec: &RegionProbe) -> Probed {
    let started = Instant::now();
    let timeout = Duration::from_secs(spec.timeout_seconds.max(1) as u64);
    let (ok, troubled, error) = match tokio::time::timeout(timeout, readyz(client)).await {
        Ok(Ok((200, body))) if body.trim() == "ok" => (true, None, String::new()),
        Ok(Ok((code, body))) if troubling(code) => (
            false,
            Some(code),
            format!("/readyz answered {code}: {}", body.trim()),
        ),
        Ok(Ok((code, body))) => (
            false,
            None,
            format!("/readyz answered {code}: {:?}", body.trim()),
        ),
        Ok(Err(err)) => (false, None, format!("/readyz failed: {err}")),
        Err(_) => (
            false,
            None,
            format!("/readyz timed out after {}s", timeout.as_secs()),
        ),
    };
    Probed {
        ok,
        troubled,
        error: member_text(&error),
        latency: started.elapsed(),
    }
}

/// `GET /readyz`: the status code and at most `READYZ_BODY_MAX` of the body.
async fn readyz(client: &Client) -> Result<(u16, String), String> {
    use http_body_util::BodyExt;
    let request = http::Request::get("/readyz")
        .body(kube::client::Body::empty())
        .map_err(|e| e.to_string())?;
    let response = client.send(request).await.map_err(|e| e.to_string())?;
    let code = response.status().as_u16();
    let limited = http_body_util::Limited::new(response.into_body(), READYZ_BODY_MAX);
    let body = match limited.collect().await {
        Ok(collected) => String::from_utf8_lossy(&collected.to_bytes()).into_owned(),
        Err(_) => format!("(an answer over {} KiB)", READYZ_BODY_MAX / 1024),
    };
    Ok((code, body))
}

/// One probe of a client not in use yet: Ok when its API server answers
/// `/readyz` with "ok" in time, else why not.
pub async fn answers(client: &Client, spec: &RegionProbe) -> Result<(), String> {
    let probed = probe_once(client, spec).await;
    match probed.ok {
        true => Ok(()),
        false => Err(probed.error),
    }
}

/// Answers that say the API server is busy, failing over its storage, or
/// refusing these credentials: not that the region stopped serving.
fn troubling(code: u16) -> bool {
    matches!(code, 401 | 403 | 429) || code >= 500
}

/// Folds the probe into the member's state machine; returns the state
/// before and after.
async fn judge(
    member: &Member,
    client: &Client,
    spec: &RegionProbe,
    probed: &Probed,
) -> Option<(ProbeState, ProbeState)> {
    let needs_version = member.probe_state().is_some_and(|p| p.version.is_none());
    let version = if probed.ok && needs_version {
        let timeout = Duration::from_secs(spec.timeout_seconds.max(1) as u64);
        tokio::time::timeout(timeout, client.apiserver_version())
            .await
            .ok()
            .and_then(|v| v.ok())
            .map(|v| v.git_version)
    } else {
        None
    };
    let thresholds = Thresholds {
        failure: spec.failure_threshold,
        success: spec.success_threshold,
    };
    let now = Timestamp::now();
    member.update_probe(|state| {
        // A troubled answer counts no round of the Region's own state
        // machine either.
        if probed.troubled.is_none() {
            state.counters = health::step(state.counters, probed.ok, thresholds, now);
        }
        state.last_ok = Some(probed.ok);
        state.troubled = probed.troubled;
        state.last_error = probed.error.clone();
        if version.is_some() {
            state.version = version;
        }
    })
}

/// Logs and triggers the region's apps when the raw result flipped, and
/// writes the Region's status when its state changed.
async fn report(
    registry: &Registry,
    member: &Member,
    probed: &Probed,
    before: &ProbeState,
    after: &ProbeState,
) {
    let name = member.name();
    let flipped = before.last_ok != Some(probed.ok);
    if flipped {
        if probed.ok {
            tracing::info!(region = %name, latency_ms = probed.latency.as_millis() as u64, "region answers probes");
        } else {
            tracing::warn!(region = %name, error = %probed.error, "region probe failed");
        }
        registry.trigger(Trigger::Region(name.to_string()));
    }
    let changed = before.counters != after.counters || before.version != after.version;
    if (flipped || changed) && registry.fence().check().is_ok() {
        let location = member.spec().location;
        // Bounded by the fence: a hub that does not answer delays the next
        // probe by at most this much, and a leader past its renew deadline
        // abandons the write.
        let write = write_status(registry.hub(), name, after, probed, location);
        if registry
            .fence()
            .within(STATUS_WRITE_DEADLINE, write)
            .await
            .is_none()
        {
            tracing::warn!(region = %name, "the Region status was not written in time");
        }
        registry.metrics().wrote("hub", "region_status");
    }
}

async fn write_status(
    hub: &Client,
    name: &str,
    state: &ProbeState,
    probed: &Probed,
    location: std::collections::BTreeMap<String, String>,
) {
    let api: Api<Region> = Api::all(hub.clone());
    let (previous, generation) = match api.get_status(name).await {
        Ok(r) => (r.status.unwrap_or_default(), r.metadata.generation),
        Err(err) => {
            tracing::debug!(region = %name, error = %err, "cannot read Region status");
            return;
        }
    };
    let now = Timestamp::now();
    let mut conditions = Conditions::new(&previous.conditions, now, generation);
    // A Region's API server is judged Healthy or Unhealthy; Degraded is
    // an app's region serving on its endpoint alone, never a Region's.
    match state.counters.health.judged() {
        Health::Healthy | Health::Degraded => {
            let answers = "the API server answers /readyz";
            conditions.set("Ready", true, "Reachable", answers);
            conditions.set("Reachable", true, "ProbeSucceeded", answers);
        }
        Health::Unhealthy => {
            conditions.set("Ready", false, "Unreachable", &probed.error);
            conditions.set("Reachable", false, "ProbeFailed", &probed.error);
        }
        Health::Unknown => {
            conditions.unknown("Ready", "Probing", "not judged yet");
            conditions.unknown("Reachable", "Probing", "not judged yet");
        }
    }
    let status = RegionStatus {
        phase: Some(RegionPhase::from(state.counters.health)),
        kubernetes_version: state.version.clone(),
        consecutive_failures: state.counters.failures,
        consecutive_successes: state.counters.successes,
        last_probe_time: Some(Time(now)),
        last_probe_latency_ms: Some(probed.latency.as_millis() as i64),
        location,
        conditions: conditions.finish(),
    };
    patch_status(&api, name, status).await;
}

/// Reports unusable credentials on the Region.
pub async fn report_credentials_error(hub: &Client, name: &str, err: &CredentialsError) {
    let api: Api<Region> = Api::all(hub.clone());
    let Some((previous, generation)) = status_of(&api, name).await else {
        return;
    };
    let mut conditions = Conditions::new(&previous.conditions, Timestamp::now(), generation);
    conditions.set("Ready", false, err.reason(), err.to_string());
    conditions.set("Reachable", false, err.reason(), err.to_string());
    let status = RegionStatus {
        phase: Some(RegionPhase::Unknown),
        conditions: conditions.finish(),
        ..previous.clone()
    };
    if status != previous {
        patch_status(&api, name, status).await;
    }
}

/// Sets the Region's `CredentialsCurrent` condition: True when the member
/// uses the Region's current credentials, False (`why`) while it keeps the
/// last working ones because the current ones are unusable.
pub async fn report_credentials_current(hub: &Client, name: &str, why: Option<&str>) {
    let api: Api<Region> = Api::all(hub.clone());
    let Some((previous, generation)) = status_of(&api, name).await else {
        return;
    };
    let mut conditions = Conditions::new(&previous.conditions, Timestamp::now(), generation);
    match why {
        None => conditions.set("CredentialsCurrent", true, "InUse", "the Region's credentials are in use"),
        Some(why) => conditions.set(
            "CredentialsCurrent",
            false,
            "KeptLastWorking",
            format!("the Region's credentials are unusable ({why}); the last working ones are kept until new ones answer"),
        ),
    }
    let status = RegionStatus {
        conditions: conditions.finish(),
        ..previous.clone()
    };
    if status != previous {
        patch_status(&api, name, status).await;
    }
}

/// Sets the Region's `CredentialsConfined` condition: True for an identity
/// `join` confined to the operator's namespaces, False for one joined
/// before that (it writes in every namespace until joined again).
pub async fn report_confinement(hub: &Client, name: &str, confined: bool) {
    let api: Api<Region> = Api::all(hub.clone());
    let Some((previous, generation)) = status_of(&api, name).await else {
        return;
    };
    let mut conditions = Conditions::new(&previous.conditions, Timestamp::now(), generation);
    if confined {
        let message = "the member identity writes only in the namespaces the operator created or an admin labelled";
        conditions.set("CredentialsConfined", true, "Confined", message);
    } else {
        let message = format!(
            "the member identity was joined before identities were confined: it may write in every namespace, and its token never expires; run `multiregion join {name}` again"
        );
        conditions.set(
            "CredentialsConfined",
            false,
            "JoinedBeforeConfinement",
            message,
        );
    }
    let all = conditions.finish();
    let Some(condition) = all.iter().find(|c| c.type_ == "CredentialsConfined") else {
        return;
    };
    if previous.conditions.contains(condition) {
        return;
    }
    // Only this condition, under its own field manager: the probe's status
    // (phase, counters, other conditions) is never written from a stale
    // read, and the probe's own writes keep this entry (conditions merge by
    // type).
    let body = json!({
        "apiVersion": "multiregion.io/v1alpha1",
        "kind": "Region",
        "status": {"conditions": [condition]},
    });
    let params = PatchParams::apply(CONFINEMENT_MANAGER).force();
    if let Err(err) = api.patch_status(name, &params, &Patch::Apply(&body)).await {
        tracing::warn!(region = %name, error = %err, "cannot write the Region's CredentialsConfined");
    }
}

/// The Region's status as the hub has it now, and its generation; None
/// when it cannot be read (the report is skipped: the next one tries).
async fn status_of(api: &Api<Region>, name: &str) -> Option<(RegionStatus, Option<i64>)> {
    let region = api.get_status(name).await.ok()?;
    Some((
        region.status.unwrap_or_default(),
        region.metadata.generation,
    ))
}

/// The field manager of the `CredentialsConfined` condition alone.
const CONFINEMENT_MANAGER: &str = "multiregion-confinement";

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
