//! Real traffic: the operator's HTTPRoute consumed by a real gateway
//! (Traefik) and its DNSEndpoint by real DNS (ExternalDNS into CoreDNS),
//! with requests sent through both before, during and after a whole-region
//! failure. The exact figures come from the benchmark (`make bench`); here
//! the bounds are generous and the answers are checked.

mod common;

use std::time::Duration;

use common::operator::{HealOnPanic, app_spec, apply_app, delete_app, env, serial, wait_weights};
use common::wait_for;
use localregions::load::{self, Load, Route, Sample};
use serde_json::json;

/// The app on us-east (preferred) and eu-west, checked over HTTP, published
/// to the gateway and to DNS (Failover mode: CoreDNS has no weights).
fn web(ttl: u32) -> serde_json::Value {
    app_spec(
        "ActivePassive",
        &["us-east", "eu-west"],
        json!({
            "healthCheck": {"http": {"path": "/healthz"}},
            "traffic": {
                "httpRoute": {"name": "web", "parentRefs": [{"name": localregions::GATEWAY_NAME, "namespace": localregions::GATEWAY_NAMESPACE}]},
                "dnsEndpoint": {"dnsName": format!("web.{}", localregions::ZONE), "recordTTL": ttl, "mode": "Failover"}
            }
        }),
    )
}

async fn answer(url: &str) -> Option<String> {
    let response = reqwest::get(url).await.ok()?;
    response.status().is_success().then_some(())?;
    Some(response.text().await.ok()?.trim().to_string())
}

/// Before the fault every request was answered by us-east; after it, only
/// us-east or eu-west ever answered, and eu-west served 20 in a row within
/// `bound` of the fault.
fn check(path: &str, samples: &[Sample], fault: Duration, bound: Duration) -> load::Window {
    let before: Vec<&Sample> = samples.iter().filter(|s| s.at < fault).collect();
    assert!(
        before
            .iter()
            .all(|s| s.ok && s.region.as_deref() == Some("us-east")),
        "{path}: before the fault us-east served every request"
    );
    assert!(
        samples
            .iter()
            .filter_map(|s| s.region.as_deref())
            .all(|r| r == "us-east" || r == "eu-west"),
        "{path}: only the app's regions answer"
    );
    let window = load::window(samples, fault, "eu-west", 20)
        .unwrap_or_else(|| panic!("{path}: eu-west never served 20 requests in a row"));
    assert!(
        window.duration < bound,
        "{path}: error window {window:?} over {bound:?}"
    );
    eprintln!(
        "traffic: {path}: error window {:.2}s, {} of {} requests failed",
        window.duration.as_secs_f64(),
        window.failed,
        window.sent
    );
    window
}

#[tokio::test]
async fn requests_through_the_gateway_and_dns_follow_a_whole_region_failure() {
    let _serial = serial().await;
    let _heal = HealOnPanic;
    let env = env();
    let hub = env.client("hub").await;
    let (traffic, us_endpoint) = {
        let mut regions = env.regions.lock().await;
        (
            regions.start_traffic("hub").await.unwrap(),
            regions.endpoint("us-east").unwrap(),
        )
    };
    let port: u16 = us_endpoint.rsplit(':').next().unwrap().parse().unwrap();
    let ns = "traffic";
    apply_app(&hub, ns, "web", web(2)).await;
    wait_weights(
        &hub,
        ns,
        "web",
        "us-east=100 eu-west=0",
        "us-east active",
        Duration::from_secs(180),
    )
    .await;
    let gateway = format!("{}/", traffic.gateway);
    // Twenty answers in a row: the gateway may still be reloading routes
    // another test changed.
    wait_for(
        "the gateway to answer from us-east, 20 times in a row",
        Duration::from_secs(60),
        || async {
            for _ in 0..20 {
                (answer(&gateway).await? == "us-east").then_some(())?;
            }
            Some(())
        },
    )
    .await;
    let name = format!("web.{}", localregions::ZONE);
    wait_for(
        "DNS to answer with us-east",
        Duration::from_secs(60),
        || async {
            let records = load::resolve(&traffic.dns, &name).await.ok()?;
            (records.len() == 1 && us_endpoint.contains(&records[0].0.to_string())).then_some(())
        },
    )
    .await;

    let load = Load {
        rate: 50,
        duration: Duration::from_secs(30),
        timeout: Duration::from_secs(1),
        writes: false,
    };
    let through = Route::Url(gateway.clone());
    let via_gateway = tokio::spawn(async move { load::run(&through, load).await });
    let dns = Route::Dns {
        server: traffic.dns.clone(),
        name: name.clone(),
        port,
    };
    let via_dns = tokio::spawn(async move { load::run(&dns, load).await });
    let fault = Duration::from_secs(3);
    tokio::time::sleep(fault).await;
    env.regions.lock().await.fail("us-east").await.unwrap();
    let gateway_samples = via_gateway.await.unwrap().unwrap();
    let dns_samples = via_dns.await.unwrap().unwrap();
    check("gateway", &gateway_samples, fault, Duration::from_secs(15));
    check(
        "dns (ttl 2 s)",
        &dns_samples,
        fault,
        Duration::from_secs(20),
    );

    env.regions.lock().await.recover("us-east").await.unwrap();
    delete_app(&hub, ns, "web").await;
}

/// A request as sent by an edge that knows the user's home region.
async fn answer_as(url: &str, home: &str) -> Option<String> {
    let response = reqwest::Client::new()
        .get(url)
        .header("X-Home-Region", home)
        .send()
        .await
        .ok()?;
    response.status().is_success().then_some(())?;
    Some(response.text().await.ok()?.trim().to_string())
}

/// Ten requests in a row with `home` as the user's home region, all
/// answered by `by`.
async fn served_by(url: &str, home: &str, by: &str) -> Option<()> {
    for _ in 0..10 {
        (answer_as(url, home).await? == by).then_some(())?;
    }
    Some(())
}

#[tokio::test]
async fn home_users_reach_their_home_region_through_the_gateway_and_follow_its_failure() {
    let _serial = serial().await;
    let _heal = HealOnPanic;
    let env = env();
    let hub = env.client("hub").await;
    let traffic = env.regions.lock().await.start_traffic("hub").await.unwrap();
    let spec = app_spec(
        "ActiveActive",
        &["us-east", "eu-west"],
        json!({
            "regions": [
                {"name": "us-east", "home": {"continents": ["NA"]}},
                {"name": "eu-west", "home": {"continents": ["EU"]}}
            ],
            "healthCheck": {"http": {"path": "/healthz"}},
            "failover": {"failbackHoldSeconds": 5},
            "traffic": {
                "httpRoute": {"name": "homes", "parentRefs": [{"name": localregions::GATEWAY_NAME, "namespace": localregions::GATEWAY_NAMESPACE}]}
            }
        }),
    );
    let ns = "homes";
    apply_app(&hub, ns, "web", spec).await;
    let gateway = format!("{}/", traffic.gateway);
    wait_for(
        "each home's users answered by their home region",
        Duration::from_secs(180),
        || async {
            served_by(&gateway, "eu-west", "eu-west").await?;
            served_by(&gateway, "us-east", "us-east").await
        },
    )
    .await;

    env.regions.lock().await.fail("eu-west").await.unwrap();
    wait_for(
        "eu-west's users answered by us-east",
        Duration::from_secs(60),
        || served_by(&gateway, "eu-west", "us-east"),
    )
    .await;

    env.regions.lock().await.recover("eu-west").await.unwrap();
    wait_for(
        "eu-west's users back home after the hold",
        Duration::from_secs(120),
        || served_by(&gateway, "eu-west", "eu-west"),
    )
    .await;
    delete_app(&hub, ns, "web").await;
}
