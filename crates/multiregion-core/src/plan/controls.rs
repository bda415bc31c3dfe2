//! Day-2 controls kept outside the app's spec. `drain` writes the app's
//! `multiregion.io/drained` annotation, not `spec.regions[].drain`: a GitOps
//! tool that syncs the app's manifest owns the spec (and replaces the
//! `spec.regions` list whole), but leaves an annotation it never set alone.
//! The operator reads the annotation as if each region it lists had
//! `drain: true`. `failover --to` writes a one-shot move request
//! (`multiregion.io/move-to` and `-requested-at`): traffic moves there, stays
//! for `failbackHoldSeconds`, then the usual rules apply.

use std::collections::{BTreeMap, BTreeSet};

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::api::{
    ANNOTATION_DRAINED, ANNOTATION_MOVE_REQUESTED_AT, ANNOTATION_MOVE_TO, MoveRequestRecord,
    MultiRegionAppSpec,
};

/// The apps carrying traffic in `region` (as `namespace/name (weight N)`),
/// from their status: what a cordon of the region takes traffic from.
pub fn serving_in(apps: &[crate::api::MultiRegionApp], region: &str) -> Vec<String> {
    apps.iter()
        .filter_map(|app| {
            let status = app.status.as_ref()?;
            let here = status
                .regions
                .iter()
                .find(|r| r.name == region && r.weight > 0)?;
            Some(format!(
                "{}/{} (weight {})",
                app.metadata.namespace.as_deref().unwrap_or_default(),
                app.metadata.name.as_deref().unwrap_or_default(),
                here.weight
            ))
        })
        .collect()
}

/// A one-shot move a person asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MoveRequest {
    pub region: String,
    pub requested_at: Timestamp,
}

/// The app's move request, when both annotations are there and the time
/// parses.
pub fn move_request(annotations: &BTreeMap<String, String>) -> Option<MoveRequest> {
    let region = annotations.get(ANNOTATION_MOVE_TO)?.trim();
    let requested_at = annotations
        .get(ANNOTATION_MOVE_REQUESTED_AT)?
        .parse()
        .ok()?;
    (!region.is_empty()).then(|| MoveRequest {
        region: region.to_string(),
        requested_at,
    })
}

/// The status's record of `request`, when it records this very request.
fn recorded<'a>(
    request: &MoveRequest,
    previous: Option<&'a MoveRequestRecord>,
) -> Option<&'a MoveRequestRecord> {
    previous.filter(|p| p.region == request.region && p.requested_at.0 == request.requested_at)
}

/// A request traffic could not follow for this long (its target
/// unhealthy, drained, held by the RPO gate) lapses: it must not move
/// traffic hours later when the target recovers, nor again after a status
/// was lost.
pub const REQUEST_LAPSES_AFTER_SECONDS: i64 = 600;

/// The request still asks for a move: traffic has not reached its region
/// yet, and it has not lapsed.
pub fn request_pending(
    request: &MoveRequest,
    previous: Option<&MoveRequestRecord>,
    now: Timestamp,
) -> bool {
    let done = recorded(request, previous).is_some_and(|p| p.completed_at.is_some());
    let age = now.as_second() - request.requested_at.as_second();
    !done && (0..REQUEST_LAPSES_AFTER_SECONDS).contains(&age.max(0))
}

/// A request is in force (pending, or holding traffic where it moved it):
/// no drill starts or goes on meanwhile.
pub fn request_in_force(
    request: Option<&MoveRequest>,
    previous: Option<&MoveRequestRecord>,
    active: Option<&str>,
    hold_seconds: i32,
    now: Timestamp,
) -> bool {
    let Some(req) = request else { return false };
    request_pending(req, previous, now)
        || active.is_some_and(|a| held_until(request, previous, a, hold_seconds, now).is_some())
}

/// Until when traffic stays in `active` because a person moved it there:
/// `holdSeconds` after it arrived, while the request is still on the app.
pub fn held_until(
    request: Option<&MoveRequest>,
    previous: Option<&MoveRequestRecord>,
    active: &str,
    hold_seconds: i32,
    now: Timestamp,
) -> Option<Timestamp> {
    let record = recorded(request?, previous).filter(|p| p.region == active)?;
    let until =
        record.completed_at.as_ref()?.0 + jiff::SignedDuration::from_secs(hold_seconds.into());
    (now < until).then_some(until)
}

/// The record the new status carries: this request, completed the first
/// time traffic is in its region with no move pending. Without a request
/// the last record stays, for people to read.
pub fn record(
    request: Option<&MoveRequest>,
    previous: Option<&MoveRequestRecord>,
    active: Option<&str>,
    moving: bool,
    now: Timestamp,
) -> Option<MoveRequestRecord> {
    let Some(request) = request else {
        return previous.cloned();
    };
    let age = now.as_second() - request.requested_at.as_second();
    let arrived =
        active == Some(request.region.as_str()) && !moving && age < REQUEST_LAPSES_AFTER_SECONDS;
    let completed_at = recorded(request, previous)
        .and_then(|p| p.completed_at.clone())
        .or_else(|| arrived.then_some(Time(now)));
    Some(MoveRequestRecord {
        region: request.region.clone(),
        requested_at: Time(request.requested_at),
        completed_at,
    })
}

/// The regions the annotation drains (names trimmed, empty ones skipped).
pub fn drained(annotations: &BTreeMap<String, String>) -> BTreeSet<String> {
    annotations
        .get(ANNOTATION_DRAINED)
        .map(|list| {
            list.split(',')
                .map(str::trim)
                .filter(|name| !name.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// The annotation's value for a set of drained regions; None removes it.
pub fn drained_value(regions: &BTreeSet<String>) -> Option<String> {
    (!regions.is_empty()).then(|| regions.iter().cloned().collect::<Vec<_>>().join(","))
}

/// The spec as the operator acts on it: each region the annotation lists
/// drained. None when nothing changes (no annotation, or only regions that
/// are drained in the spec already or are not in it).
pub fn with_drains(
    spec: &MultiRegionAppSpec,
    annotations: &BTreeMap<String, String>,
) -> Option<MultiRegionAppSpec> {
    let drained = drained(annotations);
    let changes = |r: &crate::api::AppRegion| !r.drain && drained.contains(&r.name);
    if !spec.regions.iter().any(changes) {
        return None;
    }
    let mut spec = spec.clone();
    for region in &mut spec.regions {
        region.drain |= drained.contains(&region.name);
    }
    Some(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> MultiRegionAppSpec {
        serde_json::from_value(serde_json::json!({
            "strategy": "ActiveActive",
            "regions": [{"name": "us-east"}, {"name": "eu-west", "drain": true}, {"name": "ap-south"}],
            "workload": {"replicas": 1, "template": {}}
        }))
        .unwrap()
    }

    fn annotated(value: &str) -> BTreeMap<String, String> {
        BTreeMap::from([(ANNOTATION_DRAINED.to_string(), value.to_string())])
    }

    #[test]
    fn the_annotation_drains_the_regions_it_lists() {
        let spec = with_drains(&spec(), &annotated(" ap-south, ,us-west")).unwrap();
        let drained: Vec<bool> = spec.regions.iter().map(|r| r.drain).collect();
        assert_eq!(
            drained,
            [false, true, true],
            "eu-west by its spec, ap-south by the annotation"
        );
    }

    #[test]
    fn nothing_to_change_leaves_the_spec_as_it_is() {
        assert!(with_drains(&spec(), &BTreeMap::new()).is_none());
        assert!(with_drains(&spec(), &annotated("eu-west,us-west")).is_none());
    }

    fn requested(region: &str, at: &str) -> BTreeMap<String, String> {
        BTreeMap::from([
            (ANNOTATION_MOVE_TO.to_string(), region.to_string()),
            (ANNOTATION_MOVE_REQUESTED_AT.to_string(), at.to_string()),
        ])
    }

    #[test]
    fn a_move_request_needs_a_region_and_a_time() {
        let request = move_request(&requested("eu-west", "2026-12-06T19:00:00Z")).unwrap();
        assert_eq!(request.region, "eu-west");
        assert!(move_request(&requested("eu-west", "soon")).is_none());
        assert!(move_request(&requested(" ", "2026-12-06T19:00:00Z")).is_none());
        assert!(move_request(&BTreeMap::new()).is_none());
    }

    #[test]
    fn a_request_completes_once_traffic_is_there_and_holds_it_for_the_hold() {
        let request = move_request(&requested("eu-west", "2026-12-06T19:00:00Z")).unwrap();
        let t = |s: i64| request.requested_at + jiff::SignedDuration::from_secs(s);
        let moving = record(Some(&request), None, Some("us-east"), true, t(1)).unwrap();
        assert!(moving.completed_at.is_none());
        assert!(request_pending(&request, Some(&moving), t(1)));
        assert!(
            !request_pending(&request, Some(&moving), t(REQUEST_LAPSES_AFTER_SECONDS)),
            "a request traffic could not follow lapses"
        );
        let pending = record(Some(&request), Some(&moving), Some("eu-west"), true, t(5)).unwrap();
        assert!(pending.completed_at.is_none(), "still moving");
        let done = record(Some(&request), Some(&pending), Some("eu-west"), false, t(9)).unwrap();
        assert_eq!(done.completed_at, Some(Time(t(9))));
        assert!(!request_pending(&request, Some(&done), t(10)));
        assert!(request_in_force(
            Some(&request),
            Some(&done),
            Some("eu-west"),
            300,
            t(100)
        ));
        assert!(!request_in_force(
            Some(&request),
            Some(&done),
            Some("eu-west"),
            300,
            t(309)
        ));
        let lapsed = record(
            Some(&request),
            Some(&moving),
            Some("eu-west"),
            false,
            t(700),
        )
        .unwrap();
        assert!(
            lapsed.completed_at.is_none(),
            "a lapsed request holds nothing"
        );
        let later = record(Some(&request), Some(&done), Some("us-east"), false, t(400)).unwrap();
        assert_eq!(later.completed_at, Some(Time(t(9))), "completed once");
        assert_eq!(
            held_until(Some(&request), Some(&done), "eu-west", 300, t(100)),
            Some(t(309))
        );
        assert_eq!(
            held_until(Some(&request), Some(&done), "eu-west", 300, t(309)),
            None
        );
        assert_eq!(
            held_until(Some(&request), Some(&done), "us-east", 300, t(100)),
            None
        );
        assert_eq!(
            held_until(None, Some(&done), "eu-west", 300, t(100)),
            None,
            "withdrawn"
        );
        let newer = MoveRequest {
            requested_at: t(500),
            ..request.clone()
        };
        assert!(
            request_pending(&newer, Some(&done), t(501)),
            "a new time is a new request"
        );
    }

    #[test]
    fn a_cordon_previews_the_apps_with_traffic_in_the_region() {
        let app = |name: &str, weights: [i32; 2]| -> crate::api::MultiRegionApp {
            serde_json::from_value(serde_json::json!({
                "apiVersion": "multiregion.io/v1alpha1", "kind": "MultiRegionApp",
                "metadata": {"name": name, "namespace": "shop"},
                "spec": {"strategy": "ActiveActive", "regions": [{"name": "us-east"}, {"name": "eu-west"}],
                         "workload": {"replicas": 1, "template": {}}},
                "status": {"regions": [
                    {"name": "us-east", "role": "Active", "health": "Healthy", "weight": weights[0], "desiredReplicas": 1, "readyReplicas": 1, "consecutiveFailures": 0, "consecutiveSuccesses": 2},
                    {"name": "eu-west", "role": "Active", "health": "Healthy", "weight": weights[1], "desiredReplicas": 1, "readyReplicas": 1, "consecutiveFailures": 0, "consecutiveSuccesses": 2}
                ]}
            }))
            .unwrap()
        };
        let apps = [app("web", [50, 50]), app("api", [100, 0])];
        assert_eq!(serving_in(&apps, "eu-west"), ["shop/web (weight 50)"]);
        assert_eq!(serving_in(&apps, "us-east").len(), 2);
        assert!(serving_in(&apps, "ap-south").is_empty());
    }

    #[test]
    fn the_value_lists_the_regions_in_order_and_none_removes_it() {
        let set: BTreeSet<String> = ["us-east", "ap-south"].map(String::from).into();
        assert_eq!(drained_value(&set).as_deref(), Some("ap-south,us-east"));
        assert_eq!(drained(&annotated("ap-south,us-east")), set);
        assert_eq!(drained_value(&BTreeSet::new()), None);
    }
}
