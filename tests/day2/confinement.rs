//! The member identity `join` makes is confined: RBAC lets it write only
//! in namespaces where the operator bound its writer role (asked with
//! `kubectl auth can-i` as it), and the member's admission policy lets it
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
