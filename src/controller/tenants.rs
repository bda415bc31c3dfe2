//! The hub's Namespaces as tenancy needs them: their labels, which each
//! Region's `spec.allowedNamespaces` selects, the domains their apps'
//! traffic sinks may publish and the kinds their `spec.resources` may
//! place (`plan::tenancy`). One
//! metadata-only watch of every Namespace; a change reconciles the apps of
//! that namespace at once: a label added admits them; one removed refuses
//! their next change (`NotAllowed`), while what was placed runs on.

use std::collections::BTreeMap;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, PartialObjectMeta};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use tokio::sync::mpsc::UnboundedSender;

use crate::api::{ANNOTATION_ALLOWED_DOMAINS, ANNOTATION_ALLOWED_KINDS};
use crate::regions::{Trigger, store_ready};

/// The label the API server puts on every Namespace, naming it.
const NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// The hub's Namespaces, and the operator's own.
pub struct Tenants {
    /// None: every namespace has only its name label (unit tests).
    namespaces: Option<Store<PartialObjectMeta<Namespace>>>,
    /// The operator's namespace, where the member credentials live.
    pub operator_namespace: String,
}

impl Tenants {
    /// Watches the hub's Namespaces; every change of one reconciles the
    /// apps in it. The future runs the watch.
    pub fn start(
        hub: &Client,
        operator_namespace: &str,
        triggers: UnboundedSender<Trigger>,
    ) -> (Self, impl Future<Output = ()> + use<>) {
        let (store, writer) = reflector::store();
        let api: Api<PartialObjectMeta<Namespace>> = Api::all(hub.clone());
        let watch = reflector::reflector(writer, watcher(api, watcher::Config::default()))
            .default_backoff()
            .touched_objects()
            .for_each(move |ns| {
                if let Ok(ns) = ns {
                    let _ = triggers.send(Trigger::Namespace(ns.name_any()));
                }
                std::future::ready(())
            });
        let tenants = Tenants {
            namespaces: Some(store),
            operator_namespace: operator_namespace.to_string(),
        };
        (tenants, watch)
    }

    /// Every namespace has only its name label.
    #[cfg(test)]
    pub fn none(operator_namespace: &str) -> Self {
        Tenants {
            namespaces: None,
            operator_namespace: operator_namespace.to_string(),
        }
    }

    /// The domains the hub admin lets the namespace's traffic sinks
    /// publish (its `multiregion.io/allowed-domains`, comma-separated);
    /// None: any.
    pub fn allowed_domains(&self, namespace: &str) -> Option<Vec<String>> {
        self.listed(namespace, ANNOTATION_ALLOWED_DOMAINS)
    }

    /// The kinds the hub admin lets the namespace's `spec.resources`
    /// place (its `multiregion.io/allowed-kinds`, comma-separated); None:
    /// any kind outside the denylist.
    pub fn allowed_kinds(&self, namespace: &str) -> Option<Vec<String>> {
        self.listed(namespace, ANNOTATION_ALLOWED_KINDS)
    }

    /// A comma-separated annotation of the Namespace, as a list; None when
    /// it is not set (an empty value is an empty list).
    fn listed(&self, namespace: &str, annotation: &str) -> Option<Vec<String>> {
        let store = self.namespaces.as_ref()?;
        let ns = store.get(&ObjectRef::new(namespace))?;
        Some(crate::plan::tenancy::list_annotation(
            ns.annotations().get(annotation)?,
        ))
    }

    /// The namespace's labels (its name label always among them); None
    /// until the Namespaces are listed.
    pub fn labels(&self, namespace: &str) -> Option<BTreeMap<String, String>> {
        let mut labels = match &self.namespaces {
            None => BTreeMap::new(),
            Some(store) if !store_ready(store) => return None,
            Some(store) => store
                .get(&ObjectRef::new(namespace))
                .map(|ns| ns.labels().clone())
                .unwrap_or_default(),
        };
        labels.insert(NAME_LABEL.to_string(), namespace.to_string());
        Some(labels)
    }
}
