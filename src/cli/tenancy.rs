//! The operator's tenancy checks (`plan::tenancy`), run offline by `plan`
//! on what a GitOps folder holds: the Regions and hub Namespaces found
//! next to the apps stand for the hub's. A region of an app with no Region
//! in the input is not checked (the hub may have one); a namespace with no
//! Namespace in the input is taken to carry only its name label and no
//! multiregion.io annotations.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Namespace;
use serde_json::Value;

use crate::api::{
    ANNOTATION_ALLOWED_DOMAINS, ANNOTATION_ALLOWED_KINDS, MultiRegionApp, Region, RegionSpec,
};
use crate::plan::manifest::{self, AppKey};
use crate::plan::tenancy::{self, Tenant};

/// The operator's namespace the chart installs into by default: no app
/// may live there (its Secrets are the member credentials).
pub const OPERATOR_NAMESPACE: &str = "multiregion-system";

/// The Regions and Namespaces of the input, by name.
#[derive(Default)]
pub struct Hub {
    pub regions: BTreeMap<String, RegionSpec>,
    pub namespaces: BTreeMap<String, Namespace>,
}

impl Hub {
    /// Takes a document if it is a Region or a Namespace; says whether it
    /// was one (a Region whose spec does not parse is refused, naming it).
    pub fn take(&mut self, document: &Value) -> anyhow::Result<bool> {
        match document["kind"].as_str() {
            Some("Region") => {
                let region: Region = serde_json::from_value(document.clone())
                    .map_err(|e| anyhow::anyhow!("not a valid Region: {e}"))?;
                let name = region.metadata.name.clone().unwrap_or_default();
                self.regions.insert(name, region.spec);
                Ok(true)
            }
            Some("Namespace") if document["apiVersion"] == "v1" => {
                let namespace: Namespace = serde_json::from_value(document.clone())
                    .map_err(|e| anyhow::anyhow!("not a valid Namespace: {e}"))?;
                let name = namespace.metadata.name.clone().unwrap_or_default();
                self.namespaces.insert(name, namespace);
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// Why the operator would refuse the app as `NotAllowed`, if it would.
    pub fn refusal(&self, app: &MultiRegionApp) -> Option<String> {
        let namespace = app.metadata.namespace.as_deref().unwrap_or("default");
        let meta = self
            .namespaces
            .get(namespace)
            .map(|n| n.metadata.clone())
            .unwrap_or_default();
        let mut labels = meta.labels.unwrap_or_default();
        labels.insert("kubernetes.io/metadata.name".into(), namespace.into());
        let annotations = meta.annotations.unwrap_or_default();
        let domains = listed(&annotations, ANNOTATION_ALLOWED_DOMAINS);
        let kinds = listed(&annotations, ANNOTATION_ALLOWED_KINDS);
        let tenant = Tenant {
            namespace,
            labels: &labels,
            operator_namespace: OPERATOR_NAMESPACE,
            allowed_domains: domains.as_deref(),
            allowed_kinds: kinds.as_deref(),
        };
        let key = AppKey {
            hub: "plan".into(),
            namespace: namespace.into(),
            name: app.metadata.name.clone().unwrap_or_default(),
        };
        // A template that does not parse is the API checks' to name.
        let template = manifest::validate_template(&app.spec).ok()?;
        tenancy::admit(&key, &app.spec, &template, &self.regions, &tenant)
            .err()
            .map(|e| e.0)
    }
}

/// A list annotation, as the operator reads it.
fn listed(annotations: &BTreeMap<String, String>, key: &str) -> Option<Vec<String>> {
    annotations.get(key).map(|v| tenancy::list_annotation(v))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn app(namespace: &str, extra: Value) -> MultiRegionApp {
        let mut spec = json!({
            "strategy": "ActivePassive",
            "regions": [{"name": "us-east"}, {"name": "eu-west"}],
            "workload": {"template": {"spec": {"containers": [{"name": "web", "image": "web:1"}]}}}
        });
        for (k, v) in extra.as_object().unwrap() {
            spec[k] = v.clone();
        }
        serde_json::from_value(json!({
            "apiVersion": "multiregion.io/v1alpha1", "kind": "MultiRegionApp",
            "metadata": {"name": "web", "namespace": namespace}, "spec": spec
        }))
        .unwrap()
    }

    fn hub(documents: &[Value]) -> Hub {
        let mut hub = Hub::default();
        for d in documents {
            assert!(hub.take(d).unwrap(), "{d}");
        }
        hub
    }

    #[test]
    fn regions_and_namespaces_of_the_input_stand_for_the_hubs() {
        let locked = json!({"apiVersion": "multiregion.io/v1alpha1", "kind": "Region",
            "metadata": {"name": "us-east"},
            "spec": {"allowedNamespaces": {"matchLabels": {"team": "ops"}}}});
        let refused = hub(std::slice::from_ref(&locked)).refusal(&app("shop", json!({})));
        assert!(
            refused.is_some_and(|r| r.starts_with("spec.regions[0].name: Region us-east")),
            "the Region admits only team=ops"
        );
        let ops = json!({"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": "shop", "labels": {"team": "ops"},
                "annotations": {"multiregion.io/allowed-kinds": "ConfigMap"}}});
        let hub = hub(&[locked, ops]);
        assert_eq!(hub.refusal(&app("shop", json!({}))), None);
        let service = json!({"resources": [{"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "edge"}, "spec": {"ports": [{"port": 80}]}}]});
        let refused = hub.refusal(&app("shop", service)).unwrap();
        assert!(
            refused.starts_with("spec.resources[0].kind: Service"),
            "{refused}"
        );
    }

    #[test]
    fn without_regions_the_checks_that_need_none_still_hold() {
        let hub = Hub::default();
        assert_eq!(hub.refusal(&app("shop", json!({}))), None);
        assert!(hub.refusal(&app("kube-system", json!({}))).is_some());
        let binding = json!({"resources": [{"apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding", "metadata": {"name": "x"}}]});
        assert!(hub.refusal(&app("shop", binding)).is_some());
    }
}
