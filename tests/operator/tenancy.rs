//! What a tenant may place and publish (`plan::tenancy`), against the real hub and
//! members: each app below asks for something its namespace may not have,
//! and is refused with `Ready=False, NotAllowed` naming the field while
//! nothing of it reaches any region; a label an admin puts on the hub
//! Namespace admits it at once, into a member namespace labelled with the
//! Region's Pod Security level.

use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use kube::Client;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use multiregion::api::Region;
use serde_json::{Value, json};

use crate::common::operator::{
    HealOnPanic, OPERATOR_NAMESPACE, app_spec, apply_app, condition, delete_app, ensure_namespace,
    env, merge, placed, register_region, serial, status,
};
use crate::common::wait_for;

/// A Region on us-east's cluster that admits only namespaces labelled
/// `team=ops`.
const LOCKED: &str = "locked-us";

/// Waits for the app's `Ready=False, NotAllowed` and returns its message.
async fn refusal(hub: &Client, ns: &str, name: &str) -> String {
    let what = format!("{ns}/{name} refused as NotAllowed");
    let (_, _, message) = wait_for(&what, Duration::from_secs(60), || async {
        let s = status(hub, ns, name).await?;
        condition(&s, "Ready").filter(|(_, reason, _)| reason == "NotAllowed")
    })
    .await;
    message
}

/// Nothing of the app in either cluster.
async fn nothing_placed(ns: &str, name: &str) {
    for region in ["us-east", "eu-west"] {
        let client = env().client(region).await;
        assert_eq!(
            placed(&client, ns, name).await,
            None,
            "{ns}/{name} in {region}"
        );
    }
}

fn with(extra: Value) -> Value {
    let mut spec = app_spec("ActivePassive", &["us-east", "eu-west"], json!({}));
    merge(&mut spec, extra);
    spec
}

#[tokio::test]
async fn a_tenant_gets_only_what_its_namespace_is_allowed() {
    let _serial = serial().await;
    let _heal = HealOnPanic;
    let env = env();
    let hub = env.client("hub").await;
    let ns = "tenancy";
    let privileged = json!({"workload": {"template": {"spec": {"containers": [
        {"name": "web", "image": "nginx", "securityContext": {"privileged": true}}]}}}});
    let cases = [
        (
            "privileged",
            with(privileged),
            "spec.workload.template.spec.containers[0].securityContext.privileged",
        ),
        (
            "host-path",
            with(
                json!({"workload": {"template": {"spec": {"volumes": [{"name": "root", "hostPath": {"path": "/"}}]}}}}),
            ),
            "spec.workload.template.spec.volumes[0].hostPath",
        ),
        (
            "metadata",
            with(
                json!({"regions": [{"name": "us-east", "endpoint": "http://169.254.169.254"}, {"name": "eu-west"}]}),
            ),
            "spec.regions[0].endpoint",
        ),
        (
            "role-binding",
            with(
                json!({"resources": [{"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                "metadata": {"name": "admin"}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "admin"},
                "subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": ns}]}]}),
            ),
            "spec.resources[0].kind",
        ),
        (
            "kind-not-listed",
            with(json!({"resources": [{"apiVersion": "v1", "kind": "Service",
                "metadata": {"name": "edge"}, "spec": {"ports": [{"port": 80}]}}]})),
            "spec.resources[0].kind",
        ),
        (
            "dns-outside",
            with(json!({"traffic": {"dnsEndpoint": {"dnsName": "bank.example.com"}}})),
            "spec.traffic.dnsEndpoint.dnsName",
        ),
        (
            "route-for-every-host",
            with(json!({"traffic": {"httpRoute": {"name": "web"}}})),
            "spec.traffic.httpRoute.hostnames",
        ),
    ];
    // The hub admin gives the namespace its domains and kinds.
    ensure_namespace(&hub, ns).await;
    let domains = json!({"metadata": {"annotations": {
        "multiregion.io/allowed-domains": "shop.example.com",
        "multiregion.io/allowed-kinds": "ConfigMap,PodDisruptionBudget.policy",
    }}});
    Api::<Namespace>::all(hub.clone())
        .patch(ns, &PatchParams::default(), &Patch::Merge(&domains))
        .await
        .unwrap();
    for (name, spec, _) in &cases {
        apply_app(&hub, ns, name, spec.clone()).await;
    }
    for (name, _, field) in &cases {
        let message = refusal(&hub, ns, name).await;
        assert!(
            message.starts_with(&format!("{field}:")),
            "{name}: {message}"
        );
        nothing_placed(ns, name).await;
    }

    // The cluster's and the operator's own namespaces: whatever the Region
    // admits (the tests' Regions admit every namespace), and so never a
    // propagation of the member credentials.
    let propagating = with(json!({"propagate": {"secrets": [{"name": "us-east-kubeconfig"}]}}));
    for namespace in ["kube-system", OPERATOR_NAMESPACE] {
        apply_app(&hub, namespace, "web", propagating.clone()).await;
        let message = refusal(&hub, namespace, "web").await;
        assert!(
            message.starts_with("metadata.namespace:"),
            "{namespace}: {message}"
        );
        nothing_placed(namespace, "web").await;
        delete_app(&hub, namespace, "web").await;
    }
    for (name, _, _) in &cases {
        delete_app(&hub, ns, name).await;
    }
}

#[tokio::test]
async fn a_region_admits_the_namespaces_an_admin_labels_at_once() {
    let _serial = serial().await;
    let _heal = HealOnPanic;
    let env = env();
    let hub = env.client("hub").await;
    let ns = "tenancy-locked";
    let kubeconfig = std::fs::read_to_string(env.kubeconfig("us-east")).unwrap();
    let ops_only = json!({"allowedNamespaces": {"matchLabels": {"team": "ops"}}});
    register_region(&hub, LOCKED, &kubeconfig, ops_only).await;
    let spec = app_spec("ActivePassive", &[LOCKED, "eu-west"], json!({}));
    apply_app(&hub, ns, "web", spec).await;
    let message = refusal(&hub, ns, "web").await;
    assert!(
        message.starts_with(&format!(
            "spec.regions[0].name: Region {LOCKED} does not allow apps of namespace {ns}"
        )),
        "{message}"
    );
    nothing_placed(ns, "web").await;

    let namespaces: Api<Namespace> = Api::all(hub.clone());
    let label = json!({"metadata": {"labels": {"team": "ops"}}});
    namespaces
        .patch(ns, &PatchParams::default(), &Patch::Merge(&label))
        .await
        .unwrap();
    let us = env.client("us-east").await;
    wait_for(
        "the labelled namespace's app placed",
        Duration::from_secs(60),
        || async { placed(&us, ns, "web").await },
    )
    .await;
    let member_ns = Api::<Namespace>::all(us.clone()).get(ns).await.unwrap();
    assert_eq!(
        member_ns
            .metadata
            .labels
            .unwrap_or_default()
            .get("pod-security.kubernetes.io/enforce")
            .map(String::as_str),
        Some("baseline"),
        "the member namespace enforces the Region's Pod Security level"
    );

    delete_app(&hub, ns, "web").await;
    let regions: Api<Region> = Api::all(hub.clone());
    wait_for(
        "the locked Region deleted",
        Duration::from_secs(60),
        || async {
            let _ = regions.delete(LOCKED, &DeleteParams::default()).await;
            regions.get_opt(LOCKED).await.ok()?.is_none().then_some(())
        },
    )
    .await;
}
