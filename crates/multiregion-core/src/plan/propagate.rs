//! Propagated ConfigMaps and Secrets (`spec.propagate`): which hub objects
//! an app selects, the copies placed in each region, what a region misses,
//! and the checksum on the pod template that rolls the pods on a change.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, PodTemplateSpec, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::json;

use super::manifest::{AppKey, content_hash, labels, with_hash};
use crate::api::{ANNOTATION_CONFIG_CHECKSUM, Propagate, PropagatedObjects};

/// On a copy: the labels of its original, as JSON.
pub const ANNOTATION_SOURCE_LABELS: &str = "multiregion.io/source-labels";

/// The hub objects an app propagates, resolved against the hub's copies.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Propagation {
    pub config_maps: Vec<ConfigMap>,
    pub secrets: Vec<Secret>,
    /// What the spec asks for that the hub cannot give now.
    pub unresolved: Vec<Unresolved>,
}

/// Something `spec.propagate` asks for that the hub cannot give now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unresolved {
    /// ConfigMap or Secret.
    pub kind: &'static str,
    /// The object named in the spec; None for the whole kind (the operator
    /// does not read it).
    pub name: Option<String>,
    pub why: String,
}

impl std::fmt::Display for Unresolved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.name {
            Some(name) => write!(f, "{} {name}: {}", self.kind, self.why),
            None => write!(f, "{}s: {}", self.kind, self.why),
        }
    }
}

impl Propagation {
    /// Nothing to propagate and nothing missing.
    pub fn is_empty(&self) -> bool {
        self.config_maps.is_empty() && self.secrets.is_empty() && self.unresolved.is_empty()
    }

    /// Names of the ConfigMaps to copy.
    pub fn config_map_names(&self) -> Vec<String> {
        self.config_maps.iter().map(name_of).collect()
    }

    /// Names of the Secrets to copy.
    pub fn secret_names(&self) -> Vec<String> {
        self.secrets.iter().map(name_of).collect()
    }

    /// A hash of everything propagated: on the pod template, so a change of
    /// any copy rolls the pods. None when the app propagates nothing (its
    /// pods keep the template they had before propagation existed).
    pub fn checksum(&self) -> Option<String> {
        if self.config_maps.is_empty() && self.secrets.is_empty() {
            return None;
        }
        let maps: BTreeMap<String, _> = self
            .config_maps
            .iter()
            .map(|c| (name_of(c), json!([c.data, c.binary_data])))
            .collect();
        let secrets: BTreeMap<String, _> = self
            .secrets
            .iter()
            .map(|s| (name_of(s), json!([s.type_, s.data])))
            .collect();
        Some(content_hash(
            &json!({"configMaps": maps, "secrets": secrets}),
        ))
    }

    /// What a region misses, given the names of the copies it holds;
    /// None when it holds every one. A copy the region holds counts even
    /// when its original is gone from the hub (the pods mounting it keep
    /// running, and a standby holding it can still take over).
    pub fn missing(&self, config_maps: &[String], secrets: &[String]) -> Option<String> {
        let held = |kind: &str, name: &String| match kind {
            "ConfigMap" => config_maps.contains(name),
            _ => secrets.contains(name),
        };
        let mut missing: Vec<String> = self
            .unresolved
            .iter()
            .filter(|u| u.name.as_ref().is_none_or(|name| !held(u.kind, name)))
            .map(ToString::to_string)
            .collect();
        for name in self.config_map_names() {
            if !config_maps.contains(&name) {
                missing.push(format!("ConfigMap {name}: not copied yet"));
            }
        }
        for name in self.secret_names() {
            if !secrets.contains(&name) {
                missing.push(format!("Secret {name}: not copied yet"));
            }
        }
        (!missing.is_empty()).then(|| missing.join(", "))
    }
}

fn name_of<K: k8s_openapi::Metadata<Ty = ObjectMeta>>(object: &K) -> String {
    object.metadata().name.clone().unwrap_or_default()
}

/// True when one of `wanted` names this object or its labels match.
pub fn selects(
    wanted: &[PropagatedObjects],
    name: &str,
    object_labels: Option<&BTreeMap<String, String>>,
) -> bool {
    wanted.iter().any(|w| match (&w.name, &w.selector) {
        (Some(n), _) => n == name,
        (None, Some(selector)) => object_labels.is_some_and(|labels| {
            selector
                .match_labels
                .iter()
                .all(|(k, v)| labels.get(k) == Some(v))
        }),
        (None, None) => false,
    })
}

/// Resolves `spec.propagate` against the hub's objects in the app's
/// namespace (`config_maps`, `secrets`; None when the operator does not
/// read that kind). Sorted by name, so the checksum is stable.
pub fn resolve(
    spec: Option<&Propagate>,
    config_maps: Option<Vec<ConfigMap>>,
    secrets: Option<Vec<Secret>>,
) -> Propagation {
    let Some(spec) = spec else {
        return Propagation::default();
    };
    let mut unresolved = Vec::new();
    let config_maps = pick("ConfigMap", &spec.config_maps, config_maps, &mut unresolved);
    let (tokens, secrets) = without_tokens(secrets);
    let secrets = pick("Secret", &spec.secrets, secrets, &mut unresolved);
    for u in unresolved.iter_mut().filter(|u| u.kind == "Secret") {
        if u.name.as_ref().is_some_and(|n| tokens.contains(n)) {
            u.why = "a ServiceAccount token (type kubernetes.io/service-account-token) is never propagated".into();
        }
    }
    Propagation {
        config_maps,
        secrets,
        unresolved,
    }
}

/// The hub's ServiceAccount tokens are never copied into a member (a
/// selector skips them, a name is reported unresolved): the names of those
/// left out, and the other Secrets.
fn without_tokens(secrets: Option<Vec<Secret>>) -> (Vec<String>, Option<Vec<Secret>>) {
    let Some(secrets) = secrets else {
        return (Vec::new(), None);
    };
    let (tokens, others): (Vec<Secret>, Vec<Secret>) = secrets
        .into_iter()
        .partition(|s| s.type_.as_deref() == Some("kubernetes.io/service-account-token"));
    (tokens.iter().map(name_of).collect(), Some(others))
}

fn pick<K: k8s_openapi::Metadata<Ty = ObjectMeta>>(
    kind: &'static str,
    wanted: &[PropagatedObjects],
    available: Option<Vec<K>>,
    unresolved: &mut Vec<Unresolved>,
) -> Vec<K> {
    if wanted.is_empty() {
        return Vec::new();
    }
    let Some(available) = available else {
        unresolved.push(Unresolved {
            kind,
            name: None,
            why: "the operator does not read them (install with propagation.secrets=true)".into(),
        });
        return Vec::new();
    };
    let mut picked: Vec<K> = available
        .into_iter()
        .filter(|o| selects(wanted, &name_of(o), o.metadata().labels.as_ref()))
        .collect();
    picked.sort_by_key(name_of);
    for name in wanted.iter().filter_map(|w| w.name.as_ref()) {
        if !picked.iter().any(|o| name_of(o) == *name) {
            unresolved.push(Unresolved {
                kind,
                name: Some(name.clone()),
                why: "not found in the hub namespace".into(),
            });
        }
    }
    picked
}

/// Metadata of a copy: the source's name and labels, the app's labels on
/// top (they make it the operator's), and the source's own labels in
/// `multiregion.io/source-labels` (what a selector is judged on, since the
/// app's labels may have replaced some); no other annotations.
fn copy_meta(app: &AppKey, region: &str, source: &ObjectMeta) -> ObjectMeta {
    let original = source.labels.clone().unwrap_or_default();
    let mut copied = original.clone();
    copied.extend(labels(app, region));
    let annotations = BTreeMap::from([(
        ANNOTATION_SOURCE_LABELS.to_string(),
        serde_json::to_string(&original).unwrap_or_default(),
    )]);
    ObjectMeta {
        name: source.name.clone(),
        namespace: Some(app.namespace.clone()),
        labels: Some(copied),
        annotations: Some(annotations),
        ..ObjectMeta::default()
    }
}

/// The labels of a copy's original, as recorded on the copy.
pub fn source_labels(copy: &ObjectMeta) -> Option<BTreeMap<String, String>> {
    let recorded = copy.annotations.as_ref()?.get(ANNOTATION_SOURCE_LABELS)?;
    serde_json::from_str(recorded).ok()
}

/// The ConfigMap placed in `region`: the hub's data, the app's labels.
pub fn config_map_copy(app: &AppKey, region: &str, source: &ConfigMap) -> ConfigMap {
    with_hash(ConfigMap {
        metadata: copy_meta(app, region, &source.metadata),
        data: source.data.clone(),
        binary_data: source.binary_data.clone(),
        immutable: None,
    })
}

/// The Secret placed in `region`: the hub's type and data, the app's labels.
pub fn secret_copy(app: &AppKey, region: &str, source: &Secret) -> Secret {
    with_hash(Secret {
        metadata: copy_meta(app, region, &source.metadata),
        type_: source.type_.clone(),
        data: source.data.clone(),
        string_data: None,
        immutable: None,
    })
}

/// The pod template with the propagation checksum as a pod annotation.
pub fn with_checksum(template: PodTemplateSpec, checksum: Option<&str>) -> PodTemplateSpec {
    let Some(checksum) = checksum else {
        return template;
    };
    let mut template = template;
    template
        .metadata
        .get_or_insert_with(ObjectMeta::default)
        .annotations
        .get_or_insert_with(BTreeMap::new)
        .insert(ANNOTATION_CONFIG_CHECKSUM.to_string(), checksum.to_string());
    template
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{ANNOTATION_APPLIED_HASH, LABEL_APP, MatchLabels};
    use k8s_openapi::ByteString;

    fn app() -> AppKey {
        AppKey {
            hub: "hub-1".into(),
            namespace: "shop".into(),
            name: "checkout".into(),
        }
    }

    fn config_map(name: &str, tier: &str, value: &str) -> ConfigMap {
        ConfigMap {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("shop".into()),
                labels: Some(BTreeMap::from([("tier".into(), tier.into())])),
                annotations: Some(BTreeMap::from([("note".into(), "x".into())])),
                ..ObjectMeta::default()
            },
            data: Some(BTreeMap::from([("key".into(), value.into())])),
            ..ConfigMap::default()
        }
    }

    fn secret(name: &str, value: &[u8]) -> Secret {
        Secret {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..ObjectMeta::default()
            },
            type_: Some("Opaque".into()),
            data: Some(BTreeMap::from([(
                "password".into(),
                ByteString(value.to_vec()),
            )])),
            ..Secret::default()
        }
    }

    #[test]
    fn service_account_tokens_are_never_propagated() {
        let mut token = secret("hub-token", b"eyJ");
        token.type_ = Some("kubernetes.io/service-account-token".into());
        token.metadata.labels = Some(BTreeMap::from([("tier".into(), "web".into())]));
        let spec = Propagate {
            config_maps: vec![],
            secrets: vec![by_name("hub-token"), by_name("db"), by_label("tier", "web")],
        };
        let p = resolve(Some(&spec), None, Some(vec![token, secret("db", b"x")]));
        assert_eq!(p.secret_names(), vec!["db".to_string()]);
        let why = p
            .unresolved
            .iter()
            .find(|u| u.name.as_deref() == Some("hub-token"));
        assert!(
            why.unwrap().why.contains("never propagated"),
            "{:?}",
            p.unresolved
        );
    }

    fn by_name(name: &str) -> PropagatedObjects {
        PropagatedObjects {
            name: Some(name.into()),
            selector: None,
        }
    }

    fn by_label(key: &str, value: &str) -> PropagatedObjects {
        PropagatedObjects {
            name: None,
            selector: Some(MatchLabels {
                match_labels: BTreeMap::from([(key.into(), value.into())]),
            }),
        }
    }

    fn spec(config_maps: Vec<PropagatedObjects>, secrets: Vec<PropagatedObjects>) -> Propagate {
        Propagate {
            config_maps,
            secrets,
        }
    }

    #[test]
    fn names_and_selectors_pick_objects_sorted_and_missing_names_are_reported() {
        let hub = vec![
            config_map("b-web", "web", "1"),
            config_map("a-web", "web", "1"),
            config_map("db", "db", "1"),
        ];
        let wanted = spec(vec![by_label("tier", "web"), by_name("absent")], vec![]);
        let p = resolve(Some(&wanted), Some(hub), None);
        assert_eq!(p.config_map_names(), ["a-web", "b-web"]);
        let unresolved: Vec<String> = p.unresolved.iter().map(ToString::to_string).collect();
        assert_eq!(
            unresolved,
            ["ConfigMap absent: not found in the hub namespace"]
        );
    }

    #[test]
    fn secrets_the_operator_does_not_read_are_reported_with_the_fix() {
        let wanted = spec(vec![], vec![by_name("db")]);
        let p = resolve(Some(&wanted), Some(vec![]), None);
        assert!(p.secrets.is_empty());
        assert!(
            p.unresolved[0]
                .to_string()
                .contains("propagation.secrets=true"),
            "{p:?}"
        );
    }

    #[test]
    fn a_region_misses_what_it_does_not_hold_and_what_the_hub_lacks() {
        let wanted = spec(vec![by_name("web")], vec![by_name("db"), by_name("gone")]);
        let p = resolve(
            Some(&wanted),
            Some(vec![config_map("web", "web", "1")]),
            Some(vec![secret("db", b"pw")]),
        );
        assert_eq!(
            p.missing(&["web".into()], &["db".into()]).unwrap(),
            "Secret gone: not found in the hub namespace"
        );
        assert_eq!(
            p.missing(&["web".into()], &["db".into(), "gone".into()]),
            None,
            "a copy held counts although its original is gone"
        );
        let p = resolve(
            Some(&spec(vec![by_name("web")], vec![by_name("db")])),
            Some(vec![config_map("web", "web", "1")]),
            Some(vec![secret("db", b"pw")]),
        );
        assert_eq!(
            p.missing(&["web".into(), "db".into()], &["db".into()]),
            None
        );
        assert_eq!(
            p.missing(&[], &["db".into()]).unwrap(),
            "ConfigMap web: not copied yet"
        );
    }

    #[test]
    fn the_checksum_follows_the_data_and_is_absent_without_propagation() {
        let wanted = spec(vec![by_name("web")], vec![by_name("db")]);
        let one = resolve(
            Some(&wanted),
            Some(vec![config_map("web", "web", "1")]),
            Some(vec![secret("db", b"pw")]),
        );
        let relabelled = resolve(
            Some(&wanted),
            Some(vec![config_map("web", "other", "1")]),
            Some(vec![secret("db", b"pw")]),
        );
        let rotated = resolve(
            Some(&wanted),
            Some(vec![config_map("web", "web", "1")]),
            Some(vec![secret("db", b"new")]),
        );
        assert_eq!(one.checksum(), relabelled.checksum());
        assert_ne!(one.checksum(), rotated.checksum());
        assert_eq!(Propagation::default().checksum(), None);
        let template = with_checksum(PodTemplateSpec::default(), one.checksum().as_deref());
        let annotations = template.metadata.unwrap().annotations.unwrap();
        assert_eq!(
            annotations.get(ANNOTATION_CONFIG_CHECKSUM),
            one.checksum().as_ref()
        );
        assert_eq!(
            with_checksum(PodTemplateSpec::default(), None),
            PodTemplateSpec::default()
        );
    }

    #[test]
    fn copies_carry_the_data_and_the_apps_labels_not_the_annotations() {
        let copy = config_map_copy(&app(), "eu-west", &config_map("web", "web", "1"));
        let labels = copy.metadata.labels.as_ref().unwrap();
        assert_eq!(labels.get("tier").map(String::as_str), Some("web"));
        assert_eq!(labels.get(LABEL_APP).map(String::as_str), Some("checkout"));
        let annotations = copy.metadata.annotations.as_ref().unwrap();
        assert!(annotations.contains_key(ANNOTATION_APPLIED_HASH));
        assert!(!annotations.contains_key("note"));
        assert_eq!(
            source_labels(&copy.metadata).unwrap(),
            BTreeMap::from([("tier".to_string(), "web".to_string())]),
            "the original's labels, for judging selectors"
        );
        assert_eq!(copy.metadata.namespace.as_deref(), Some("shop"));
        let s = secret_copy(&app(), "eu-west", &secret("db", b"pw"));
        assert_eq!(s.type_.as_deref(), Some("Opaque"));
        assert_eq!(s.data, secret("db", b"pw").data);
        let other = secret_copy(&app(), "eu-west", &secret("db", b"new"));
        assert_ne!(
            s.metadata.annotations.unwrap().get(ANNOTATION_APPLIED_HASH),
            other
                .metadata
                .annotations
                .unwrap()
                .get(ANNOTATION_APPLIED_HASH)
        );
    }
}
