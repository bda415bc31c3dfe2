//! Local regions are real Kubernetes control planes: three clusters start,
//! run Deployments, serve CRDs through kube-rs, and fail the way regions fail
//! (API server gone, nodes gone) and come back.
//!
//! One test walks through the steps in order, because the steps stop and
//! start parts of the same clusters.

use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::{Client, CustomResource, CustomResourceExt, ResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;

use localregions::wait_for;

const NAMESPACE: &str = "localregions-test";

/// A throwaway custom resource to prove CRDs, server-side apply and the
/// status subresource work against the local API servers.
#[derive(CustomResource, Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "test.multiregion.io",
    version = "v1",
    kind = "Widget",
    namespaced,
    status = "WidgetStatus"
)]
struct WidgetSpec {
    size: i32,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
struct WidgetStatus {
    seen_size: i32,
}

fn ssa() -> PatchParams {
    PatchParams::apply("localregions-test").force()
}

async fn apply_deployment(client: &Client, replicas: i32) -> Deployment {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .patch(
            NAMESPACE,
            &ssa(),
            &Patch::Apply(
                json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}),
            ),
        )
        .await
        .expect("namespace applied");
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), NAMESPACE);
    deployments
        .patch(
            "web",
            &ssa(),
            &Patch::Apply(json!({
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": "web"},
                "spec": {
                    "replicas": replicas,
                    "selector": {"matchLabels": {"app": "web"}},
                    "template": {
                        "metadata": {"labels": {"app": "web"}},
                        "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]}
                    }
                }
            })),
        )
        .await
        .expect("deployment applied")
}

async fn ready_replicas(client: &Client) -> Option<i32> {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), NAMESPACE);
    let d = deployments.get("web").await.ok()?;
    Some(d.status.and_then(|s| s.ready_replicas).unwrap_or(0))
}

async fn not_ready_pods(client: &Client) -> usize {
    let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    let list = pods
        .list(&ListParams::default())
        .await
        .expect("pods listed");
    list.items
        .iter()
        .filter(|p| {
            !p.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        })
        .count()
}

/// A Deployment reaches its ready replicas in every cluster, and the pods
/// run on that cluster's nodes.
async fn deployments_run_on_each_clusters_nodes(names: &[&str], clients: &[Client]) {
    for (name, client) in names.iter().zip(clients) {
        apply_deployment(client, 3).await;
        wait_for(
            &format!("3 ready replicas in {name}"),
            Duration::from_secs(60),
            || async { (ready_replicas(client).await == Some(3)).then_some(()) },
        )
        .await;
        let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
        for pod in pods.list(&ListParams::default()).await.unwrap().items {
            let node = pod.spec.unwrap().node_name.unwrap();
            assert!(
                node.starts_with(&format!("{name}-node-")),
                "pod of {name} on {node}"
            );
        }
    }
}

/// A CRD installs and becomes Established; server-side apply and the
/// status subresource work through kube-rs.
async fn crds_and_the_status_subresource_work(hub: Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(hub.clone());
    crds.patch(
        "widgets.test.multiregion.io",
        &ssa(),
        &Patch::Apply(Widget::crd()),
    )
    .await
    .expect("crd applied");
    wait_for(
        "the Widget CRD to be Established",
        Duration::from_secs(30),
        || async {
            let crd = crds.get("widgets.test.multiregion.io").await.ok()?;
            let established = crd
                .status?
                .conditions?
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True");
            established.then_some(())
        },
    )
    .await;
    let widgets: Api<Widget> = Api::namespaced(hub.clone(), NAMESPACE);
    let applied = wait_for(
        "the Widget API to serve",
        Duration::from_secs(30),
        || async {
            widgets
                .patch(
                    "w1",
                    &ssa(),
                    &Patch::Apply(json!({
                        "apiVersion": "test.multiregion.io/v1", "kind": "Widget",
                        "metadata": {"name": "w1"}, "spec": {"size": 3}
                    })),
                )
                .await
                .ok()
        },
    )
    .await;
    assert_eq!(applied.spec.size, 3);
    widgets
        .patch_status(
            "w1",
            &ssa(),
            &Patch::Apply(json!({
                "apiVersion": "test.multiregion.io/v1", "kind": "Widget",
                "metadata": {"name": "w1"}, "status": {"seen_size": 3}
            })),
        )
        .await
        .expect("status applied");
    let read = widgets.get("w1").await.expect("widget read back");
    assert_eq!(read.status.map(|s| s.seen_size), Some(3));
    assert_eq!(read.spec.size, 3, "a status write leaves the spec alone");
}

/// With its API server stopped a cluster refuses requests at once (well
/// within a bounded time); started again, it serves the same objects.
async fn a_stopped_api_server_refuses_then_serves_the_same_objects(
    regions: &mut localregions::Guard,
    clients: &[Client],
) {
    let us_east = clients[1].clone();
    let uid_before = Api::<Deployment>::namespaced(us_east.clone(), NAMESPACE)
        .get("web")
        .await
        .unwrap()
        .uid();
    regions.stop_apiserver("us-east").expect("stop-apiserver");
    let started = Instant::now();
    let outcome = tokio::time::timeout(
        Duration::from_secs(10),
        Api::<Deployment>::namespaced(us_east.clone(), NAMESPACE).get("web"),
    )
    .await;
    let elapsed = started.elapsed();
    assert!(
        matches!(outcome, Ok(Err(_))),
        "a request to a stopped API server fails (got {outcome:?} after {elapsed:?})"
    );
    // The other regions do not notice.
    assert_eq!(ready_replicas(&clients[2]).await, Some(3));
    regions
        .start_apiserver("us-east")
        .await
        .expect("start-apiserver");
    let after = wait_for(
        "us-east to serve again",
        Duration::from_secs(30),
        || async {
            Api::<Deployment>::namespaced(us_east.clone(), NAMESPACE)
                .get("web")
                .await
                .ok()
        },
    )
    .await;
    assert_eq!(
        after.uid(),
        uid_before,
        "the same object is served after a restart"
    );
    // The region comes back whole: its controllers act on a change at once
    // rather than after their watches' reconnect backoff.
    apply_deployment(&us_east, 4).await;
    wait_for(
        "us-east to scale to 4 after its restart",
        Duration::from_secs(30),
        || async { (ready_replicas(&us_east).await == Some(4)).then_some(()) },
    )
    .await;
}

/// With KWOK stopped the cluster's pods go NotReady and readyReplicas
/// drops; started again, they recover.
async fn stopped_nodes_make_pods_not_ready_until_they_return(
    regions: &mut localregions::Guard,
    clients: &[Client],
) {
    let eu_west = clients[2].clone();
    regions.stop_nodes("eu-west").expect("stop-nodes");
    wait_for(
        "eu-west readyReplicas to drop",
        Duration::from_secs(60),
        || async { (ready_replicas(&eu_west).await == Some(0)).then_some(()) },
    )
    .await;
    assert_eq!(not_ready_pods(&eu_west).await, 3, "every pod is NotReady");
    assert_eq!(
        ready_replicas(&clients[1]).await,
        Some(4),
        "us-east is unaffected"
    );
    regions.start_nodes("eu-west").await.expect("start-nodes");
    wait_for(
        "eu-west pods to recover",
        Duration::from_secs(60),
        || async { (ready_replicas(&eu_west).await == Some(3)).then_some(()) },
    )
    .await;
}

/// Each region's endpoint answers with its name; a whole-region failure
/// stops it with the API server, and it comes back with the region.
async fn endpoints_answer_with_their_region_and_fail_with_it(regions: &mut localregions::Guard) {
    let answer = |url: String| async move {
        let response = reqwest::get(&url).await.ok()?;
        response.status().is_success().then_some(())?;
        response.text().await.ok()
    };
    for name in ["us-east", "eu-west"] {
        let body = answer(regions.endpoint(name).unwrap()).await;
        assert_eq!(body.as_deref().map(str::trim), Some(name));
    }
    let us = regions.endpoint("us-east").unwrap();
    regions.fail("us-east").await.expect("fail");
    assert_eq!(
        answer(us.clone()).await,
        None,
        "the endpoint is down with the region"
    );
    let client = regions.client("us-east").await.unwrap();
    let refused = tokio::time::timeout(
        Duration::from_secs(10),
        Api::<Deployment>::namespaced(client, NAMESPACE).get("web"),
    )
    .await;
    assert!(matches!(refused, Ok(Err(_))), "the API server is down too");
    regions.recover("us-east").await.expect("recover");
    assert_eq!(answer(us).await.as_deref().map(str::trim), Some("us-east"));
}

/// A partition cuts only the operator's path to the API server: the
/// direct path and the endpoint keep working; `heal` restores it.
async fn a_partition_cuts_the_operators_path_only(regions: &mut localregions::Guard) {
    let through_proxy =
        localregions::admin_client(&regions.operator_kubeconfig("eu-west").unwrap())
            .await
            .unwrap();
    let get = |client: Client| async move {
        let api = Api::<Deployment>::namespaced(client, NAMESPACE);
        tokio::time::timeout(Duration::from_secs(3), api.get("web")).await
    };
    assert!(matches!(get(through_proxy.clone()).await, Ok(Ok(_))));
    regions.partition("eu-west").await.expect("partition");
    assert!(
        get(through_proxy.clone()).await.is_err(),
        "black-holed: no answer at all"
    );
    let direct = regions.client("eu-west").await.unwrap();
    assert!(
        matches!(get(direct).await, Ok(Ok(_))),
        "the region itself is fine"
    );
    let endpoint = reqwest::get(regions.endpoint("eu-west").unwrap()).await;
    assert!(
        endpoint.is_ok_and(|r| r.status().is_success()),
        "and still serves"
    );
    regions.heal("eu-west").await.expect("heal");
    let healed = wait_for(
        "the operator's path to come back",
        Duration::from_secs(30),
        || {
            let client = through_proxy.clone();
            async move { get(client).await.ok()?.ok() }
        },
    )
    .await;
    assert_eq!(healed.name_any(), "web");
}

/// `down` leaves nothing running.
fn down_leaves_nothing_running(mut regions: localregions::Guard, clusters: usize) {
    let pids: Vec<i32> = std::fs::read_to_string(regions.dir().join("pids"))
        .unwrap()
        .lines()
        .filter_map(|l| l.parse().ok())
        .collect();
    assert_eq!(
        pids.len(),
        2 + 5 * clusters,
        "etcd, the proxy, and 5 processes per cluster"
    );
    regions.down();
    for pid in pids {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let state = stat
            .rsplit(')')
            .next()
            .and_then(|r| r.split_whitespace().next());
        assert!(
            matches!(state, None | Some("Z") | Some("X")),
            "process {pid} still runs after down: {stat}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_local_clusters_behave_like_regions() {
    let names = ["hub", "us-east", "eu-west"];
    let mut regions = localregions::start_for_test(
        std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("three_local_clusters"),
        &names,
    )
    .await;
    let mut clients = Vec::new();
    for name in names {
        clients.push(regions.client(name).await.expect("client"));
    }
    deployments_run_on_each_clusters_nodes(&names, &clients).await;
    crds_and_the_status_subresource_work(clients[0].clone()).await;
    a_stopped_api_server_refuses_then_serves_the_same_objects(&mut regions, &clients).await;
    stopped_nodes_make_pods_not_ready_until_they_return(&mut regions, &clients).await;
    endpoints_answer_with_their_region_and_fail_with_it(&mut regions).await;
    a_partition_cuts_the_operators_path_only(&mut regions).await;
    down_leaves_nothing_running(regions, names.len());
}
