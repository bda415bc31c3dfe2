//! `spec.resources`: extra objects (here a ServiceAccount and an HPA) in
//! every region, with one region's override; a same-named object the
//! operator did not create is never adopted (Conflict) nor deleted, and
//! keeps none of the others out; a field dropped from a manifest leaves
//! the object, a hand edit is put back; dropped objects and the app's leave
//! every region.

use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::Client;
use kube::api::{Patch, PatchParams, PostParams};
use multiregion::api::ResourceRef;

use super::*;
use crate::common::operator::{Sinks, install_traffic_crds};

const NS: &str = "extras";

fn service_account(name: &str) -> serde_json::Value {
    json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name}})
}

/// The app's ServiceAccount, with a field the first spec sets and the
/// second drops.
fn app_account(automount: bool) -> serde_json::Value {
    let mut account = service_account("web");
    if !automount {
        account["automountServiceAccountToken"] = json!(false);
    }
    account
}

fn autoscaler() -> serde_json::Value {
    json!({
        "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "web", "labels": {"team": "shop"}},
        "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                 "minReplicas": 1, "maxReplicas": 4}
    })
}

/// The app with `resources`; eu-west's override of the HPA while it is
/// one of them.
fn spec(resources: serde_json::Value) -> serde_json::Value {
    let has_hpa = resources
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["kind"] == "HorizontalPodAutoscaler");
    let eu_override = match has_hpa {
        true => json!({"resources": [{"kind": "HorizontalPodAutoscaler", "name": "web",
            "patches": [{"op": "replace", "path": "/spec/maxReplicas", "value": 8}]}]}),
        false => json!({}),
    };
    app_spec(
        "ActivePassive",
        &["us-east", "eu-west"],
        json!({
            "regions": [{"name": "us-east"}, {"name": "eu-west", "overrides": eu_override}],
            "resources": resources
        }),
    )
}

async fn max_replicas(region: &Client) -> Option<i32> {
    let hpa = Api::<HorizontalPodAutoscaler>::namespaced(region.clone(), NS)
        .get_opt("web")
        .await
        .ok()??;
    Some(hpa.spec?.max_replicas)
}

async fn account(region: &Client, name: &str) -> Option<ServiceAccount> {
    Api::<ServiceAccount>::namespaced(region.clone(), NS)
        .get_opt(name)
        .await
        .unwrap()
}

fn is_ours(account: &ServiceAccount) -> bool {
    account
        .metadata
        .labels
        .as_ref()
        .is_some_and(|l| l.contains_key("multiregion.io/resource"))
}

fn recorded(names: &[(&str, &str)]) -> Vec<ResourceRef> {
    names
        .iter()
        .map(|(kind, name)| ResourceRef {
            api_version: if *kind == "ServiceAccount" {
                "v1"
            } else {
                "autoscaling/v2"
            }
            .into(),
            kind: kind.to_string(),
            name: name.to_string(),
            deletion_policy: Some(multiregion::api::DeletionPolicy::Delete),
        })
        .collect()
}

#[tokio::test]
async fn extra_resources_are_placed_per_region_never_adopted_and_removed() {
    let _serial = serial().await;
    let _heal = HealOnPanic;
    let env = env();
    let hub = env.client("hub").await;
    let us = env.client("us-east").await;
    let eu = env.client("eu-west").await;
    // Someone else's ServiceAccount "batch" in eu-west, made by hand.
    common::operator::adopted_namespace(&eu, NS).await;
    let theirs: ServiceAccount = serde_json::from_value(service_account("batch")).unwrap();
    let eu_accounts = Api::<ServiceAccount>::namespaced(eu.clone(), NS);
    let _ = eu_accounts.create(&PostParams::default(), &theirs).await;

    // batch first: its Conflict in eu-west keeps nothing after it out.
    let all = json!([service_account("batch"), app_account(false), autoscaler()]);
    apply_app(&hub, NS, "web", spec(all)).await;
    let (us_max, eu_max) = wait_for(
        "the HPA in both regions",
        Duration::from_secs(180),
        || async { Some((max_replicas(&us).await?, max_replicas(&eu).await?)) },
    )
    .await;
    assert_eq!((us_max, eu_max), (4, 8), "eu-west's override, there only");
    for region in [&us, &eu] {
        assert!(account(region, "web").await.is_some_and(|a| is_ours(&a)));
    }
    let (_, reason, message) = wait_for("a Conflict on batch", Duration::from_secs(60), || async {
        let s = status(&hub, NS, "web").await?;
        condition(&s, "Conflict").filter(|(state, _, _)| state == "True")
    })
    .await;
    assert!(
        message.contains("ServiceAccount") && message.contains("batch"),
        "{reason}: {message}"
    );
    assert!(
        !is_ours(&account(&eu, "batch").await.unwrap()),
        "never adopted"
    );
    assert!(account(&us, "batch").await.is_some_and(|a| is_ours(&a)));
    let s = status(&hub, NS, "web").await.unwrap();
    let want = recorded(&[
        ("HorizontalPodAutoscaler", "web"),
        ("ServiceAccount", "batch"),
        ("ServiceAccount", "web"),
    ]);
    assert_eq!(s.resources, want);

    let automount = account(&eu, "web").await.unwrap();
    assert_eq!(automount.automount_service_account_token, Some(false));

    // Changed in the spec: applied in both regions, a dropped field
    // removed. Deleted or edited by hand: put back (these kinds are re-read
    // and applied every 30 s).
    let mut bigger = autoscaler();
    bigger["spec"]["maxReplicas"] = json!(6);
    let changed = json!([service_account("batch"), app_account(true), bigger]);
    apply_app(&hub, NS, "web", spec(changed)).await;
    Api::<ServiceAccount>::namespaced(us.clone(), NS)
        .delete("web", &Default::default())
        .await
        .unwrap();
    let edit = json!({"spec": {"maxReplicas": 20}});
    Api::<HorizontalPodAutoscaler>::namespaced(eu.clone(), NS)
        .patch("web", &PatchParams::default(), &Patch::Merge(&edit))
        .await
        .unwrap();
    assert_eq!(max_replicas(&eu).await, Some(20));
    wait_for(
        "the change applied, the field dropped, the account back, the edit undone",
        Duration::from_secs(90),
        || async {
            let us_max = max_replicas(&us).await?;
            let eu_max = max_replicas(&eu).await?;
            let back = account(&us, "web").await.is_some_and(|a| is_ours(&a));
            let dropped = account(&eu, "web")
                .await?
                .automount_service_account_token
                .is_none();
            (us_max == 6 && eu_max == 8 && back && dropped).then_some(())
        },
    )
    .await;

    // Dropped: the HPA and batch leave every region, but never the
    // ServiceAccount the operator did not create.
    apply_app(&hub, NS, "web", spec(json!([service_account("web")]))).await;
    wait_for(
        "the dropped objects removed",
        Duration::from_secs(60),
        || async {
            let gone = max_replicas(&us).await.is_none()
                && max_replicas(&eu).await.is_none()
                && account(&us, "batch").await.is_none();
            gone.then_some(())
        },
    )
    .await;
    assert!(
        account(&eu, "batch").await.is_some(),
        "not the operator's: kept"
    );
    wait_for(
        "status.resources without them",
        Duration::from_secs(30),
        || async {
            let s = status(&hub, NS, "web").await?;
            (s.resources == recorded(&[("ServiceAccount", "web")])).then_some(())
        },
    )
    .await;

    // The app deleted: its ServiceAccount leaves both regions.
    delete_app(&hub, NS, "web").await;
    wait_for(
        "the app's objects removed",
        Duration::from_secs(60),
        || async {
            let gone = account(&us, "web").await.is_none() && account(&eu, "web").await.is_none();
            gone.then_some(())
        },
    )
    .await;
    assert!(
        account(&eu, "batch").await.is_some(),
        "not the operator's: kept"
    );
    eu_accounts
        .delete("batch", &Default::default())
        .await
        .unwrap();
}

async fn claim(
    region: &Client,
    ns: &str,
    name: &str,
) -> Option<k8s_openapi::api::core::v1::PersistentVolumeClaim> {
    kube::Api::namespaced(region.clone(), ns)
        .get_opt(name)
        .await
        .ok()?
}

#[tokio::test]
async fn deleting_an_app_keeps_its_volume_claims_until_a_person_confirms_their_delete_policy() {
    let _serial = serial().await;
    let _heal = HealOnPanic;
    let hub = env().client("hub").await;
    let ns = "extras-data";
    let pvc = |name: &str| {
        json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name},
               "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}})
    };
    let mut scratch = pvc("scratch");
    scratch["deletionPolicy"] = json!("Delete");
    install_traffic_crds();
    let spec = app_spec(
        "ActivePassive",
        &["us-east", "eu-west"],
        json!({"resources": [pvc("data"), scratch, service_account("web")],
               "traffic": {
                   "httpRoute": {"name": "web", "parentRefs": [{"name": "global-gw", "namespace": "gateway"}]},
                   "dnsEndpoint": {"dnsName": "web.example.com", "recordTTL": 30}}}),
    );
    apply_app(&hub, ns, "web", spec).await;
    let (us, eu) = (env().client("us-east").await, env().client("eu-west").await);
    wait_for(
        "the claims in both regions",
        Duration::from_secs(60),
        || async {
            for region in [&us, &eu] {
                claim(region, ns, "data").await?;
                claim(region, ns, "scratch").await?;
            }
            Some(())
        },
    )
    .await;
    let sinks = Sinks::new(&hub, ns);
    wait_for(
        "the route and DNS record",
        Duration::from_secs(60),
        || async { sinks.weights("web", "web").await.map(|_| ()) },
    )
    .await;
    let data = claim(&us, ns, "data").await.unwrap();
    assert!(
        serde_json::to_value(&data)
            .unwrap()
            .get("deletionPolicy")
            .is_none(),
        "deletionPolicy is the operator's, not the placed object's"
    );

    delete_app(&hub, ns, "web").await;
    // The claim whose policy says Delete holds the deletion until a
    // person confirms; everything else is removed meanwhile.
    let held = wait_for("the deletion held", Duration::from_secs(60), || async {
        let status = status(&hub, ns, "web").await?;
        condition(&status, "DeletionHeld").filter(|(s, _, _)| s == "True")
    })
    .await;
    let apps: kube::Api<multiregion::api::MultiRegionApp> = kube::Api::namespaced(hub.clone(), ns);
    let uid = apps.get("web").await.unwrap().metadata.uid.unwrap();
    assert!(
        held.2.contains("PersistentVolumeClaim scratch")
            && held
                .2
                .contains(&format!("multiregion.io/delete-data={uid}")),
        "the condition names what is kept and how to go on: {held:?}"
    );
    wait_for("the traffic withdrawn", Duration::from_secs(30), || async {
        sinks.weights("web", "web").await.is_none().then_some(())
    })
    .await;
    for region in [&us, &eu] {
        let scratch = claim(region, ns, "scratch").await;
        assert!(
            scratch.is_some_and(|c| c.metadata.deletion_timestamp.is_none()),
            "the claim is kept until confirmed"
        );
        let accounts: kube::Api<ServiceAccount> = kube::Api::namespaced(region.clone(), ns);
        wait_for(
            "the other objects removed",
            Duration::from_secs(30),
            || async {
                let gone = accounts.get_opt("web").await.ok()?.is_none();
                (gone && placed(region, ns, "web").await.is_none()).then_some(())
            },
        )
        .await;
    }
    let confirm = json!({"metadata": {"annotations": {"multiregion.io/delete-data": uid}}});
    apps.patch("web", &PatchParams::default(), &Patch::Merge(confirm))
        .await
        .unwrap();
    wait_for("the app deleted", Duration::from_secs(60), || async {
        apps.get_opt("web").await.ok()?.is_none().then_some(())
    })
    .await;
    for region in [&us, &eu] {
        assert!(
            claim(region, ns, "data").await.is_some(),
            "the data claim is kept (Orphan by default)"
        );
        let scratch = claim(region, ns, "scratch").await;
        assert!(
            scratch.is_none() || scratch.unwrap().metadata.deletion_timestamp.is_some(),
            "deletionPolicy: Delete, confirmed, deletes it"
        );
    }
}
