//! `multiregion plan` refuses what the API server refuses: each spec below
//! is checked offline (`cli::validate`, the rules read from the CRD) and
//! sent to the hub's real API server as a server-side dry run; both must
//! refuse it, naming the same field, and both must take the valid one.

use kube::api::{Api, PostParams};
use multiregion::api::MultiRegionApp;
use multiregion::cli::validate;
use serde_json::{Value, json};

use crate::common::operator::{app_spec, ensure_namespace, env, merge};

/// A MultiRegionApp named `name` with `extra` merged into a valid spec.
fn app(name: &str, extra: Value) -> Value {
    let mut spec = app_spec("ActivePassive", &["us-east", "eu-west"], json!({}));
    merge(&mut spec, extra);
    json!({
        "apiVersion": "multiregion.io/v1alpha1", "kind": "MultiRegionApp",
        "metadata": {"name": name, "namespace": "validation"}, "spec": spec
    })
}

/// What the API server says to creating `app` (dry run): None if it takes it.
async fn api_refusal(api: &Api<MultiRegionApp>, app: &Value) -> Option<String> {
    let typed: MultiRegionApp = serde_json::from_value(app.clone()).unwrap();
    let dry_run = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    match api.create(&dry_run, &typed).await {
        Ok(_) => None,
        Err(kube::Error::Api(status)) if status.code == 422 => Some(status.message),
        Err(other) => panic!("the API server did not judge the spec: {other}"),
    }
}

#[tokio::test]
async fn plan_refuses_what_the_api_server_refuses() {
    let hub = env().client("hub").await;
    ensure_namespace(&hub, "validation").await;
    let api: Api<MultiRegionApp> = Api::namespaced(hub.clone(), "validation");
    let table = [
        (json!({}), None),
        (
            json!({"healthCheck": {"intervalSeconds": 2, "timeoutSeconds": 5}}),
            Some("spec.healthCheck.timeoutSeconds"),
        ),
        (
            json!({"standby": {"replicas": 5}}),
            Some("spec.standby.replicas"),
        ),
        (json!({"strategy": "FollowTheSun"}), Some("spec.regions")),
        (
            json!({"strategy": "ActiveActive", "regions": [{"name": "us-east", "weight": 0}, {"name": "eu-west", "weight": 0}]}),
            Some("spec.regions"),
        ),
        (
            json!({"healthCheck": {"failureThreshold": 0}}),
            Some("spec.healthCheck.failureThreshold"),
        ),
        (
            json!({"failover": {"activeOverride": "mars"}}),
            Some("spec.failover.activeOverride"),
        ),
        (
            json!({"failover": {"failbackSteps": [50, 10]}}),
            Some("spec.failover.failbackSteps"),
        ),
        (
            json!({"healthCheck": {"minReadyRatio": 0}}),
            Some("spec.healthCheck.minReadyRatio"),
        ),
    ];
    for (i, (extra, field)) in table.into_iter().enumerate() {
        let app = app(&format!("case-{i}"), extra.clone());
        let typed: MultiRegionApp = serde_json::from_value(app.clone()).unwrap();
        let offline = validate::refusals(&typed).unwrap();
        let online = api_refusal(&api, &app).await;
        match field {
            None => {
                assert_eq!(offline, vec![], "{extra}: plan refuses what the API takes");
                assert_eq!(online, None, "{extra}: the API refuses it");
            }
            Some(field) => {
                let online = online.unwrap_or_else(|| panic!("{extra}: the API takes it"));
                assert!(online.contains(field), "{extra}: the API says {online}");
                assert!(
                    offline.iter().any(|i| i.field == field),
                    "{extra}: plan says {offline:?}, the API says {online}"
                );
            }
        }
    }
}
