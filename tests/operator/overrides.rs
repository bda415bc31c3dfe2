//! `regions[].overrides`: what one region gets differently, placed there
//! and nowhere else; overrides that cannot apply are refused by name.

use kube::Client;

use super::*;

const NS: &str = "overrides";

async fn deployment(region: &Client) -> Option<Deployment> {
    Api::<Deployment>::namespaced(region.clone(), NS)
        .get_opt("web")
        .await
        .ok()?
}

fn summary(d: &Deployment) -> (String, Vec<String>, Option<String>) {
    let pod = d.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    let web = &pod.containers[0];
    let env = web
        .env
        .iter()
        .flatten()
        .map(|e| format!("{}={}", e.name, e.value.clone().unwrap_or_default()))
        .collect();
    let zone = pod
        .node_selector
        .as_ref()
        .and_then(|n| n.get("zone").cloned());
    (web.image.clone().unwrap_or_default(), env, zone)
}

#[tokio::test]
async fn a_regions_overrides_are_placed_there_only_and_bad_ones_are_named() {
    let _serial = serial().await;
    let _heal = HealOnPanic;
    let env = env();
    let hub = env.client("hub").await;
    let us = env.client("us-east").await;
    let eu = env.client("eu-west").await;
    let overrides = json!({
        "images": {"web": "eu.registry.example/nginx:1.27"},
        "env": [{"name": "REGION_TIER", "value": "gold"}],
        "patches": [{"op": "add", "path": "/spec/template/spec/nodeSelector", "value": {"zone": "eu-1"}}]
    });
    let spec = app_spec(
        "ActivePassive",
        &["us-east", "eu-west"],
        json!({"regions": [{"name": "us-east"}, {"name": "eu-west", "overrides": overrides}]}),
    );
    apply_app(&hub, NS, "web", spec).await;
    let (eu_placed, us_placed) = wait_for(
        "the Deployment in both regions",
        Duration::from_secs(180),
        || async { Some((deployment(&eu).await?, deployment(&us).await?)) },
    )
    .await;
    assert_eq!(
        summary(&eu_placed),
        (
            "eu.registry.example/nginx:1.27".to_string(),
            vec!["REGION_TIER=gold".to_string()],
            Some("eu-1".to_string())
        )
    );
    assert_eq!(
        summary(&us_placed),
        ("nginx:1.27".to_string(), vec![], None)
    );

    let bad = app_spec(
        "ActivePassive",
        &["us-east", "eu-west"],
        json!({"regions": [{"name": "us-east"}, {"name": "eu-west", "overrides": {"images": {"api": "x"}}}]}),
    );
    apply_app(&hub, NS, "web", bad).await;
    let (_, reason, message) = wait_for("InvalidSpec", Duration::from_secs(60), || async {
        let s = status(&hub, NS, "web").await?;
        condition(&s, "Ready").filter(|(_, reason, _)| reason == "InvalidSpec")
    })
    .await;
    assert_eq!(reason, "InvalidSpec");
    assert_eq!(
        message,
        "spec.regions[1].overrides.images.api: no container named api"
    );
    let unchanged = deployment(&eu).await.unwrap();
    assert_eq!(
        summary(&unchanged).0,
        "eu.registry.example/nginx:1.27",
        "nothing placed"
    );

    // Overrides dropped: what they added leaves the placed Deployment (the
    // create's field record is folded into the operator's apply, which
    // then prunes them).
    let plain = app_spec("ActivePassive", &["us-east", "eu-west"], json!({}));
    apply_app(&hub, NS, "web", plain).await;
    let summary_now = || async { Some(summary(&deployment(&eu).await?)) };
    let want = ("nginx:1.27".to_string(), vec![], None);
    wait_for(
        "eu-west's Deployment without the overrides",
        Duration::from_secs(120),
        || async { (summary_now().await? == want).then_some(()) },
    )
    .await;
    delete_app(&hub, NS, "web").await;
}
