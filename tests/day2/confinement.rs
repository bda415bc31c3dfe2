//! The member identity `join` makes is confined: RBAC lets it write only
//! in namespaces where the operator bound its writer role, and read Secrets
//! (`--allow-secrets`) only there (asked with `kubectl auth can-i` as it), and the member's admission policy lets it
//! create only labelled namespaces and bind only itself, only there.

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::api::PostParams;
use multiregion::api::ANNOTATION_MEMBER_IDENTITY;
use multiregion::plan::identity;

use super::*;

/// `kubectl auth can-i VERB RESOURCE -n NS` as the identity, asked with
/// the member's admin kubeconfig: whether RBAC allows it.
fn can_i(region: &str, identity: &str, verb: &str, resource: &str, ns: &str) -> bool {
    let user = format!(
        "system:serviceaccount:{}:{identity}",
        identity::MEMBER_NAMESPACE
    );
    let out = Command::new(env().bin_dir.join("kubectl"))
        .arg("--kubeconfig")
        .arg(env().kubeconfig(region))
        .args(["auth", "can-i", verb, resource, "-n", ns, "--as", &user])
        .output()
        .expect("kubectl runs");
    String::from_utf8_lossy(&out.stdout).trim() == "yes"
}

/// Refused by the member's admission policy, naming the identity.
fn refused_by_policy<T: std::fmt::Debug>(result: Result<T, kube::Error>, identity: &str) -> bool {
    match result {
        Err(kube::Error::Api(status)) => {
            status.message.contains("ValidatingAdmissionPolicy")
                && status.message.contains(identity)
        }
        other => panic!("not refused: {other:?}"),
    }
}

#[tokio::test]
async fn the_member_identity_writes_only_where_the_operator_bound_it() {
    let _serial = serial().await;
    let _heal = HealOnPanic;
    let hub = env().client("hub").await;
    let region: Region = Api::all(hub.clone()).get("eu-west").await.unwrap();
    let identity = region.annotations()[ANNOTATION_MEMBER_IDENTITY].clone();
    let ns = "confined";
    apply_app(
        &hub,
        ns,
        "web",
        app_spec("ActivePassive", &["us-east", "eu-west"], json!({})),
    )
    .await;
    let eu = env().client("eu-west").await;
    common::wait_for(
        "the app placed in eu-west",
        Duration::from_secs(120),
        || async {
            Api::<Deployment>::namespaced(eu.clone(), ns)
                .get_opt("web")
                .await
                .ok()?
        },
    )
    .await;

    assert!(
        can_i("eu-west", &identity, "create", "deployments", ns),
        "bound in the app's namespace"
    );
    assert!(
        can_i("eu-west", &identity, "list", "deployments", "kube-system"),
        "reads (watches) everywhere"
    );
    for (verb, resource, namespace) in [
        ("create", "deployments", "kube-system"),
        ("patch", "deployments", "kube-system"),
        ("delete", "services", "default"),
        ("create", "configmaps", identity::MEMBER_NAMESPACE),
        ("create", "pods", ns),
        ("create", "clusterrolebindings", ns),
    ] {
        assert!(
            !can_i("eu-west", &identity, verb, resource, namespace),
            "{verb} {resource} -n {namespace}"
        );
    }

    // us-east was joined with --allow-secrets: Secrets only where the
    // writer role is bound, never cluster-wide (kube-system's tokens).
    let east: Region = Api::all(hub.clone()).get("us-east").await.unwrap();
    let east_identity = east.annotations()[ANNOTATION_MEMBER_IDENTITY].clone();
    let us = env().client("us-east").await;
    common::wait_for(
        "the app placed in us-east",
        Duration::from_secs(120),
        || async {
            Api::<Deployment>::namespaced(us.clone(), ns)
                .get_opt("web")
                .await
                .ok()?
        },
    )
    .await;
    assert!(
        can_i("us-east", &east_identity, "list", "secrets", ns),
        "Secrets where the writer role is bound"
    );
    for (verb, namespace) in [
        ("list", "kube-system"),
        ("get", "kube-system"),
        ("list", "default"),
    ] {
        assert!(
            !can_i("us-east", &east_identity, verb, "secrets", namespace),
            "{verb} secrets -n {namespace}: never outside the namespaces it adopted"
        );
    }

    let member = joined_identity(&hub, "eu-west").await;
    let own = identity::namespace_binding(&identity, "kube-system");
    let bindings: Api<RoleBinding> = Api::namespaced(member.clone(), "kube-system");
    assert!(
        refused_by_policy(
            bindings.create(&PostParams::default(), &own).await,
            &identity
        ),
        "binding itself in kube-system"
    );
    let namespaces: Api<Namespace> = Api::all(member.clone());
    for labels in [
        json!({}),
        json!({"app.kubernetes.io/managed-by": "multiregion", "pod-security.kubernetes.io/enforce": "privileged"}),
    ] {
        let rogue: Namespace =
            serde_json::from_value(json!({"metadata": {"name": "rogue", "labels": labels}}))
                .unwrap();
        assert!(
            refused_by_policy(
                namespaces.create(&PostParams::default(), &rogue).await,
                &identity
            ),
            "a namespace labelled {labels}"
        );
    }
    let region: Region = Api::all(hub.clone()).get("eu-west").await.unwrap();
    let confined = region
        .status
        .unwrap()
        .conditions
        .into_iter()
        .find(|c| c.type_ == "CredentialsConfined");
    assert_eq!(confined.map(|c| c.status), Some("True".to_string()));
    let apps: Api<MultiRegionApp> = Api::namespaced(hub.clone(), ns);
    let _ = apps.delete("web", &Default::default()).await;
}

/// The token in the hub's kubeconfig Secret of `region`.
async fn stored_token(hub: &Client, region: &str) -> String {
    let secrets: Api<Secret> = Api::namespaced(hub.clone(), OPERATOR_NAMESPACE);
    let secret = secrets.get(&format!("{region}-kubeconfig")).await.unwrap();
    let yaml = String::from_utf8(secret.data.unwrap()["kubeconfig"].0.clone()).unwrap();
    let parsed: serde_json::Value = serde_saphyr::from_str(&yaml).unwrap();
    parsed["users"][0]["user"]["token"]
        .as_str()
        .unwrap()
        .to_string()
}

/// A client of us-east's API server with this bearer token.
async fn with_token(token: &str) -> Client {
    let mut config = kube::Config::from_custom_kubeconfig(
        Kubeconfig::read_from(env().kubeconfig("us-east")).unwrap(),
        &KubeConfigOptions::default(),
    )
    .await
    .unwrap();
    config.auth_info = Default::default();
    config.auth_info.token = Some(token.to_string().into());
    Client::try_from(config).unwrap()
}

#[tokio::test]
async fn a_short_lived_token_is_renewed_without_a_failed_round_and_unjoin_revokes_it() {
    let _serial = serial().await;
    let _heal = HealOnPanic;
    let hub = env().client("hub").await;
    let region = "renewed";
    let out = Command::new(env!("CARGO_BIN_EXE_multiregion"))
        .args(["join", region, "--member-kubeconfig"])
        .arg(env().kubeconfig("us-east"))
        .arg("--hub-kubeconfig")
        .arg(env().kubeconfig("hub"))
        .args(["--token-ttl", "10m", "--allow-all-namespaces"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "join: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let first = stored_token(&hub, region).await;
    let (issued, expires) =
        multiregion::regions::tokens::lifetime(&first).expect("a token that expires");
    assert_eq!(expires - issued, 600, "the lifetime asked for");

    let ns = "renewal";
    let spec = app_spec("ActivePassive", &[region, "eu-west"], json!({}));
    apply_app(&hub, ns, "web", spec).await;
    wait_weights(
        &hub,
        ns,
        "web",
        "renewed=100 eu-west=0",
        "the app on the renewed region",
        Duration::from_secs(120),
    )
    .await;

    // The operator renews it (with the operator's flag, 5 s after it is
    // issued), twice.
    let mut seen = vec![first.clone()];
    for _ in 0..2 {
        let next = common::wait_for("a renewed token", Duration::from_secs(60), || async {
            let token = stored_token(&hub, region).await;
            (!seen.contains(&token)).then_some(token)
        })
        .await;
        seen.push(next);
    }
    let app = app(&hub, ns, "web").await;
    let status = app.status.unwrap();
    let renewed = status.regions.iter().find(|r| r.name == region).unwrap();
    assert_eq!(renewed.consecutive_failures, 0, "no failed round");
    assert_eq!(
        weights(&hub, ns, "web").await.as_deref(),
        Some("renewed=100 eu-west=0")
    );
    assert!(
        events_of(&hub, ns, "RegionUnhealthy").await.is_empty(),
        "no region judged down"
    );

    // unjoin without the member's kubeconfig: the identity revokes itself.
    let apps: Api<MultiRegionApp> = Api::namespaced(hub.clone(), ns);
    let _ = apps.delete("web", &Default::default()).await;
    common::wait_for("the app's cleanup", Duration::from_secs(60), || async {
        apps.get_opt("web").await.ok()?.is_none().then_some(())
    })
    .await;
    let latest = seen.last().unwrap().clone();
    let deployments: Api<Deployment> = Api::all(with_token(&latest).await);
    deployments
        .list(&ListParams::default().limit(1))
        .await
        .expect("the token works before unjoin");
    let out = Command::new(env!("CARGO_BIN_EXE_multiregion"))
        .args(["unjoin", region, "--hub-kubeconfig"])
        .arg(env().kubeconfig("hub"))
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && said.contains("its tokens are revoked"),
        "{said} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The API server caches a token's authentication for up to 10 s.
    let revoked = Api::<Deployment>::all(with_token(&latest).await);
    common::wait_for(
        "the token refused (401)",
        Duration::from_secs(30),
        || async {
            let after = revoked.list(&ListParams::default().limit(1)).await;
            matches!(after, Err(kube::Error::Api(ref s)) if s.code == 401).then_some(())
        },
    )
    .await;
}

async fn events_of(hub: &Client, ns: &str, reason: &str) -> Vec<String> {
    common::operator::events(hub, ns, reason).await
}
