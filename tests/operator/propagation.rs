//! `spec.propagate`: ConfigMaps and Secrets of the app's hub namespace in
//! every region before the workload needs them, kept in sync, rolling the
//! pods on a change, removed when dropped; a standby without them is never
//! promoted.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::Client;
use multiregion::api::ANNOTATION_CONFIG_CHECKSUM;

use super::*;

const NS: &str = "propagate";

async fn hub_objects(hub: &Client, password: &str) {
    common::operator::ensure_namespace(hub, NS).await;
    let maps: Api<ConfigMap> = Api::namespaced(hub.clone(), NS);
    maps.patch(
        "web-config",
        &PatchParams::apply("test").force(),
        &Patch::Apply(json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "web-config", "labels": {"tier": "web"}},
            "data": {"greeting": "hello"}
        })),
    )
    .await
    .unwrap();
    let secrets: Api<Secret> = Api::namespaced(hub.clone(), NS);
    secrets
        .patch(
            "db",
            &PatchParams::apply("test").force(),
            &Patch::Apply(json!({
                "apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": "db"},
                "stringData": {"password": password}
            })),
        )
        .await
        .unwrap();
}

async fn config_map(region: &Client, name: &str) -> Option<ConfigMap> {
    Api::<ConfigMap>::namespaced(region.clone(), NS)
        .get_opt(name)
        .await
        .unwrap()
}

async fn password(region: &Client) -> Option<Vec<u8>> {
    let secret = Api::<Secret>::namespaced(region.clone(), NS)
        .get_opt("db")
        .await
        .ok()??;
    let data: BTreeMap<String, ByteString> = secret.data?;
    data.get("password").map(|b| b.0.clone())
}

/// The config checksum on the pod template of the app's Deployment.
async fn checksum(region: &Client, name: &str) -> Option<String> {
    let deployment = Api::<Deployment>::namespaced(region.clone(), NS)
        .get_opt(name)
        .await
        .ok()??;
    deployment
        .spec?
        .template
        .metadata?
        .annotations?
        .get(ANNOTATION_CONFIG_CHECKSUM)
        .cloned()
}

fn propagating(regions: &[&str], config_maps: bool, drain_first: bool) -> serde_json::Value {
    let mut spec = app_spec(
        "ActivePassive",
        regions,
        json!({"propagate": {"secrets": [{"name": "db"}]}}),
    );
    if config_maps {
        spec["propagate"]["configMaps"] = json!([{"selector": {"matchLabels": {"tier": "web"}}}]);
    }
    spec["regions"][0]["drain"] = json!(drain_first);
    spec
}

#[tokio::test]
async fn propagated_config_reaches_the_standby_rolls_the_pods_and_goes_when_dropped() {
    let _serial = serial().await;
    let _heal = HealOnPanic;
    let env = env();
    let hub = env.client("hub").await;
    let us = env.client("us-east").await;
    let ap = env.client("ap-south").await;
    hub_objects(&hub, "first").await;
    let regions = ["us-east", "ap-south"];
    apply_app(&hub, NS, "web", propagating(&regions, true, false)).await;

    let before = wait_for(
        "the copies in the standby, and its pods carrying their checksum",
        Duration::from_secs(180),
        || async {
            let s = status(&hub, NS, "web").await?;
            let copied = config_map(&ap, "web-config").await?;
            let greeting = copied.data?.get("greeting").cloned();
            let ready = s.active_region.as_deref() == Some("us-east")
                && greeting.as_deref() == Some("hello")
                && password(&ap).await.as_deref() == Some(b"first".as_slice());
            if ready {
                checksum(&ap, "web").await
            } else {
                None
            }
        },
    )
    .await;
    assert_eq!(password(&us).await.as_deref(), Some(b"first".as_slice()));

    // A copy deleted by hand in a region is put back.
    Api::<ConfigMap>::namespaced(ap.clone(), NS)
        .delete("web-config", &Default::default())
        .await
        .unwrap();
    wait_for(
        "the deleted copy to be back",
        Duration::from_secs(60),
        || async { config_map(&ap, "web-config").await.map(|_| ()) },
    )
    .await;

    hub_objects(&hub, "rotated").await;
    wait_for(
        "the rotated Secret in both regions and new pods in the standby",
        Duration::from_secs(120),
        || async {
            let rotated = password(&ap).await.as_deref() == Some(b"rotated".as_slice())
                && password(&us).await.as_deref() == Some(b"rotated".as_slice());
            let rolled = checksum(&ap, "web").await.is_some_and(|c| c != before);
            (rotated && rolled).then_some(())
        },
    )
    .await;

    // Planned move: the standby held the config before it was promoted.
    apply_app(&hub, NS, "web", propagating(&regions, true, true)).await;
    wait_for(
        "ap-south to take over",
        Duration::from_secs(120),
        || async {
            let s = status(&hub, NS, "web").await?;
            (s.active_region.as_deref() == Some("ap-south")).then_some(())
        },
    )
    .await;

    // Dropped from the spec: the copies go, the hub's original stays.
    apply_app(&hub, NS, "web", propagating(&regions, false, true)).await;
    wait_for(
        "the ConfigMap copies to go",
        Duration::from_secs(120),
        || async {
            let gone = config_map(&us, "web-config").await.is_none()
                && config_map(&ap, "web-config").await.is_none();
            gone.then_some(())
        },
    )
    .await;
    assert!(password(&ap).await.is_some(), "the Secret is still wanted");
    assert!(
        config_map(&hub, "web-config").await.is_some(),
        "hub original kept"
    );

    delete_app(&hub, NS, "web").await;
    wait_for(
        "the Secret copies to go",
        Duration::from_secs(120),
        || async { (password(&us).await.is_none() && password(&ap).await.is_none()).then_some(()) },
    )
    .await;
    assert!(password(&hub).await.is_some(), "hub original kept");
}

#[tokio::test]
async fn a_standby_that_cannot_hold_the_propagated_secret_is_not_promoted() {
    let _serial = serial().await;
    let _heal = HealOnPanic;
    let env = env();
    let hub = env.client("hub").await;
    hub_objects(&hub, "first").await;
    // eu-west was joined without --allow-secrets: the operator cannot
    // copy the Secret there.
    let regions = ["us-east", "eu-west"];
    apply_app(&hub, NS, "guarded", propagating(&regions, false, false)).await;
    wait_for("us-east to be active", Duration::from_secs(180), || async {
        let s = status(&hub, NS, "guarded").await?;
        (s.active_region.as_deref() == Some("us-east")).then_some(())
    })
    .await;

    apply_app(&hub, NS, "guarded", propagating(&regions, false, true)).await;
    let (_, reason, message) = wait_for(
        "the drain to be blocked for the missing Secret",
        Duration::from_secs(120),
        || async {
            let s = status(&hub, NS, "guarded").await?;
            condition(&s, "PromotionBlocked").filter(|(v, _, _)| v == "True")
        },
    )
    .await;
    assert_eq!(reason, "ConfigNotPropagated");
    assert!(
        message.contains("eu-west") && message.contains("Secrets"),
        "{message}"
    );
    let s = status(&hub, NS, "guarded").await.unwrap();
    assert_eq!(s.active_region.as_deref(), Some("us-east"), "traffic stays");
    let eu = env.client("eu-west").await;
    assert!(
        placed(&eu, NS, "guarded").await.is_some(),
        "the workload is placed"
    );

    delete_app(&hub, NS, "guarded").await;
    wait_for("the app to be gone", Duration::from_secs(120), || async {
        status(&hub, NS, "guarded").await.is_none().then_some(())
    })
    .await;
}
