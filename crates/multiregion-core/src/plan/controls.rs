//! Day-2 controls kept outside the app's spec. `drain` writes the app's
//! `multiregion.io/drained` annotation, not `spec.regions[].drain`: a GitOps
//! tool that syncs the app's manifest owns the spec (and replaces the
//! `spec.regions` list whole), but leaves an annotation it never set alone.
//! The operator reads the annotation as if each region it lists had
//! `drain: true`.

use std::collections::{BTreeMap, BTreeSet};

use crate::api::{ANNOTATION_DRAINED, MultiRegionAppSpec};

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

    #[test]
    fn the_value_lists_the_regions_in_order_and_none_removes_it() {
        let set: BTreeSet<String> = ["us-east", "ap-south"].map(String::from).into();
        assert_eq!(drained_value(&set).as_deref(), Some("ap-south,us-east"));
        assert_eq!(drained(&annotated("ap-south,us-east")), set);
        assert_eq!(drained_value(&BTreeSet::new()), None);
    }
}
