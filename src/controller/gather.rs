//! The gather phase: what each region of an app reports, from the members'
//! probes and watch caches, the HTTP checks of the endpoints, and the
//! weights the traffic sinks hold.

use std::collections::BTreeMap;
use std::time::Duration;

use super::Context;
use crate::api::{AppRegion, MultiRegionApp, MultiRegionAppStatus};
use crate::plan::health::{HttpResult, RegionState};
use crate::plan::manifest::AppKey;
use crate::plan::propagate::Propagation;
use crate::plan::replication::ReplicaLag;
use crate::plan::{self, Observation};
use crate::regions::http_check::{Checked, Timing};

/// One observation per spec region, and for the active region when it was
/// removed from the spec and still carries the traffic.
pub(super) fn observe(
    ctx: &Context,
    app: &MultiRegionApp,
    key: &AppKey,
    previous: &MultiRegionAppStatus,
    propagation: &Propagation,
    replicas: &BTreeMap<String, ReplicaLag>,
) -> BTreeMap<String, Observation> {
    let lag_annotation = app
        .spec
        .failover
        .replication
        .as_ref()
        .map(|r| r.lag_from.annotation.as_str());
    let leaving = plan::leaving_region(&app.spec, previous).map(|name| AppRegion {
        name: name.to_string(),
        weight: 0,
        replicas: None,
        endpoint: None,
        active_window: None,
        drain: false,
        overrides: None,
        home: None,
    });
    app.spec
        .regions
        .iter()
        .chain(leaving.as_ref())
        .map(|region| {
            let mut observation = observe_region(ctx, app, key, region, lag_annotation);
            if let Some(member) = ctx.registry.get(&region.name) {
                observation.missing_config = member.missing_config(key, &region.name, propagation);
                observation.placement = member.placement_problem(key);
                observation.deleting = member.deleting();
            }
            observation.replica = replicas.get(&region.name).cloned();
            (region.name.clone(), observation)
        })
        .collect()
}

fn observe_region(
    ctx: &Context,
    app: &MultiRegionApp,
    key: &AppKey,
    region: &AppRegion,
    lag_annotation: Option<&str>,
) -> Observation {
    let Some(member) = ctx.registry.get(&region.name) else {
        let state = if ctx.registry.is_synced() {
            RegionState::NotFound
        } else {
            RegionState::Unknown
        };
        return Observation {
            region: state,
            ..Observation::unknown()
        };
    };
    let region_spec = member.spec();
    let endpoint = region.endpoint.clone().or(region_spec.endpoint.clone());
    let checked = http_check(ctx, app, key, endpoint.as_deref());
    // Only a failing check is put to the other observers.
    let endpoint_seen = match (&checked.result, &checked.ask_id) {
        (HttpResult::Fails(_), Some(id)) => Some(ctx.endpoint_seen(id)),
        _ => None,
    };
    Observation {
        region: member.state(),
        cordoned: region_spec.cordoned,
        workload: member.observe(key, &region.name, lag_annotation),
        http: checked.result,
        missing_config: None,
        placement: None,
        deleting: false,
        replica: None,
        endpoint_seen,
    }
}

/// The latest result of the app's HTTP check of `endpoint`, if it has one.
fn http_check(
    ctx: &Context,
    app: &MultiRegionApp,
    key: &AppKey,
    endpoint: Option<&str>,
) -> Checked {
    let hc = &app.spec.health_check;
    let Some(check) = &hc.http else {
        return HttpResult::NotChecked.into();
    };
    let ca = match check
        .ca_bundle
        .as_ref()
        .map(|b| ctx.hub_config.ca_bundle(&key.namespace, b))
    {
        None => None,
        Some(Ok(Some(pem))) => Some(pem),
        Some(Ok(None)) => return HttpResult::Pending.into(),
        Some(Err(why)) => return HttpResult::Misconfigured(why).into(),
    };
    let interval = Duration::from_secs(hc.interval_seconds.max(1) as u64);
    let timeout = Duration::from_secs(hc.timeout_seconds.max(1) as u64);
    let timing = Timing { interval, timeout };
    ctx.checks.result(key, endpoint, check, ca, timing)
}

/// What each region's evidence says at a glance: when it differs from the
/// last round's, a round is counted at once instead of at the next interval
/// (the thresholds still count rounds an interval apart).
pub(super) fn evidence(observations: &BTreeMap<String, Observation>) -> String {
    observations
        .iter()
        .map(|(name, o)| {
            let api = match o.region {
                RegionState::Reachable => 'r',
                RegionState::Unknown => '?',
                RegionState::Troubled { .. } => 't',
                _ => 'x',
            };
            let http = match o.http {
                HttpResult::Serves => '+',
                HttpResult::Fails(_) => '-',
                _ => '.',
            };
            format!("{name}:{api}{http}")
        })
        .collect::<Vec<_>>()
        .join(",")
}
