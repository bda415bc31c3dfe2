//! `multiregion join` / `unjoin` / `member-rbac`: registering a member
//! cluster with least privilege. In the member: a ServiceAccount with a
//! ClusterRole holding exactly the verbs the operator uses there, and a
//! token Secret for it. In the hub: a kubeconfig Secret made from that
//! token (never the caller's credentials) and the Region.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, RoleRef, Subject};
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, Patch, PatchParams};
use kube::config::Kubeconfig;
use kube::{Client, Resource};
use serde_json::json;

use super::args::{JoinArgs, UnjoinArgs};
use crate::api::{LABEL_MANAGED_BY, MultiRegionApp, Region};

/// Where the member's identity for the operator lives, in the member.
pub const MEMBER_NAMESPACE: &str = "multiregion-system";
/// Name of the ServiceAccount, ClusterRole, binding and token Secret.
pub const MEMBER_IDENTITY: &str = "multiregion-member";

fn meta(name: &str, namespace: Option<&str>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_string()),
        namespace: namespace.map(str::to_string),
        labels: Some(BTreeMap::from([(
            LABEL_MANAGED_BY.to_string(),
            "multiregion".to_string(),
        )])),
        ..ObjectMeta::default()
    }
}

fn rule(groups: &[&str], resources: &[&str], verbs: &[&str]) -> PolicyRule {
    let strings = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    PolicyRule {
        api_groups: Some(strings(groups)),
        resources: Some(strings(resources)),
        verbs: strings(verbs),
        ..PolicyRule::default()
    }
}

/// Exactly the verbs the operator uses in a member: it creates the app's
/// namespace when missing (never deletes one), and places, watches and
/// removes the app's Deployments and Services.
pub fn member_role() -> ClusterRole {
    let placed = ["get", "list", "watch", "create", "patch", "delete"];
    ClusterRole {
        metadata: meta(MEMBER_IDENTITY, None),
        rules: Some(vec![
            rule(&[""], &["namespaces"], &["get", "create"]),
            rule(&["apps"], &["deployments"], &placed),
            rule(&[""], &["services"], &placed),
        ]),
        ..ClusterRole::default()
    }
}

/// The member-side objects `join` creates, in the order it applies them.
fn member_objects() -> (
    Namespace,
    ServiceAccount,
    ClusterRole,
    ClusterRoleBinding,
    Secret,
) {
    let namespace = Namespace {
        metadata: meta(MEMBER_NAMESPACE, None),
        ..Namespace::default()
    };
    let account = ServiceAccount {
        metadata: meta(MEMBER_IDENTITY, Some(MEMBER_NAMESPACE)),
        ..ServiceAccount::default()
    };
    let binding = ClusterRoleBinding {
        metadata: meta(MEMBER_IDENTITY, None),
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".to_string(),
            kind: "ClusterRole".to_string(),
            name: MEMBER_IDENTITY.to_string(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".to_string(),
            name: MEMBER_IDENTITY.to_string(),
            namespace: Some(MEMBER_NAMESPACE.to_string()),
            ..Subject::default()
        }]),
    };
    let mut token = meta(MEMBER_IDENTITY, Some(MEMBER_NAMESPACE));
    token.annotations = Some(BTreeMap::from([(
        "kubernetes.io/service-account.name".to_string(),
        MEMBER_IDENTITY.to_string(),
    )]));
    let secret = Secret {
        metadata: token,
        type_: Some("kubernetes.io/service-account-token".to_string()),
        ..Secret::default()
    };
    (namespace, account, member_role(), binding, secret)
}

/// The member-side RBAC as multi-document YAML, for `kubectl apply -f -`.
pub fn member_rbac_yaml() -> Result<String> {
    let (namespace, account, role, binding, secret) = member_objects();
    let documents = [
        serde_saphyr::to_string(&namespace)?,
        serde_saphyr::to_string(&account)?,
        serde_saphyr::to_string(&role)?,
        serde_saphyr::to_string(&binding)?,
        serde_saphyr::to_string(&secret)?,
    ];
    Ok(documents
        .iter()
        .map(|d| format!("---\n{d}"))
        .collect::<String>())
}

/// An API in the member's namespace of the operator's identity.
fn in_namespace<K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>>(
    client: &Client,
) -> Api<K> {
    Api::namespaced(client.clone(), MEMBER_NAMESPACE)
}

fn apply_params() -> PatchParams {
    PatchParams::apply(JOIN_MANAGER).force()
}

/// Server-side applies one object.
async fn apply<K>(api: &Api<K>, object: &K) -> Result<K>
where
    K: Resource<DynamicType = ()>
        + Clone
        + serde::Serialize
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let name = object.meta().name.clone().unwrap_or_default();
    api.patch(&name, &apply_params(), &Patch::Apply(object))
        .await
        .with_context(|| format!("applying {} {name}", K::kind(&())))
}

fn has_our_label(meta: &ObjectMeta) -> bool {
    meta.labels
        .as_ref()
        .and_then(|l| l.get(LABEL_MANAGED_BY))
        .is_some_and(|v| v == "multiregion")
}

/// The field manager of what `join` applies.
const JOIN_MANAGER: &str = "multiregion-join";

/// Creates the operator's identity in the member and waits for its token.
async fn create_member_identity(member: &Client) -> Result<(String, Option<Vec<u8>>)> {
    let (namespace, account, role, binding, secret) = member_objects();
    apply(&Api::all(member.clone()), &namespace).await?;
    apply::<ServiceAccount>(&in_namespace(member), &account).await?;
    apply(&Api::all(member.clone()), &role).await?;
    apply(&Api::all(member.clone()), &binding).await?;
    let secrets: Api<Secret> = in_namespace(member);
    apply(&secrets, &secret).await?;
    wait_for_token(&secrets).await
}

/// The token (and the CA the member publishes with it), once the member's
/// token controller has filled the Secret in.
async fn wait_for_token(secrets: &Api<Secret>) -> Result<(String, Option<Vec<u8>>)> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let secret = secrets.get(MEMBER_IDENTITY).await?;
        let data = secret.data.unwrap_or_default();
        if let Some(ByteString(token)) = data.get("token") {
            let ca = data.get("ca.crt").map(|b| b.0.clone());
            return Ok((String::from_utf8(token.clone())?, ca));
        }
        if Instant::now() > deadline {
            bail!(
                "the member did not fill in the token of Secret {MEMBER_NAMESPACE}/{MEMBER_IDENTITY} \
                 within 60 s: is its kube-controller-manager running with --service-account-private-key-file?"
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// How the member's API server is reached and trusted, from the admin
/// kubeconfig `join` was given.
struct MemberServer {
    server: String,
    ca_pem: Option<Vec<u8>>,
    insecure: bool,
}

fn member_server(kubeconfig: &Kubeconfig, context: Option<&String>) -> Result<MemberServer> {
    let context_name = context
        .cloned()
        .or_else(|| kubeconfig.current_context.clone())
        .context("the kubeconfig has no current context; name one with --context")?;
    let context = kubeconfig
        .contexts
        .iter()
        .find(|c| c.name == context_name)
        .and_then(|c| c.context.as_ref())
        .with_context(|| format!("context {context_name:?} is not in the kubeconfig"))?;
    let cluster = kubeconfig
        .clusters
        .iter()
        .find(|c| c.name == context.cluster)
        .and_then(|c| c.cluster.as_ref())
        .with_context(|| format!("cluster {:?} is not in the kubeconfig", context.cluster))?;
    let ca_pem = match (
        &cluster.certificate_authority_data,
        &cluster.certificate_authority,
    ) {
        (Some(data), _) => Some(base64_decode(data)?),
        (None, Some(path)) => Some(std::fs::read(path).with_context(|| format!("reading {path}"))?),
        (None, None) => None,
    };
    Ok(MemberServer {
        server: cluster
            .server
            .clone()
            .context("the kubeconfig's cluster has no server")?,
        ca_pem,
        insecure: cluster.insecure_skip_tls_verify.unwrap_or(false),
    })
}

fn base64_decode(text: &str) -> Result<Vec<u8>> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .context("certificate-authority-data is not base64")
}

/// A kubeconfig holding only the member identity's token.
fn token_kubeconfig(
    region: &str,
    server: &str,
    ca_pem: Option<&[u8]>,
    insecure: bool,
    token: &str,
) -> Result<String> {
    use base64::Engine as _;
    let mut cluster = json!({"server": server});
    match ca_pem {
        Some(ca) => {
            cluster["certificate-authority-data"] =
                json!(base64::engine::general_purpose::STANDARD.encode(ca))
        }
        None if insecure => cluster["insecure-skip-tls-verify"] = json!(true),
        None => {}
    }
    let kubeconfig = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": region, "cluster": cluster}],
        "users": [{"name": MEMBER_IDENTITY, "user": {"token": token}}],
        "contexts": [{"name": region, "context": {"cluster": region, "user": MEMBER_IDENTITY}}],
        "current-context": region,
    });
    Ok(serde_saphyr::to_string(&kubeconfig)?)
}

/// Proves the token works: the identity lists Deployments in the member.
async fn verify_token(kubeconfig_yaml: &str) -> Result<()> {
    let kubeconfig = Kubeconfig::from_yaml(kubeconfig_yaml)?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await?;
    let client = Client::try_from(config)?;
    let deployments: Api<Deployment> = Api::all(client);
    deployments
        .list(&ListParams::default().limit(1))
        .await
        .context("the member identity's token cannot list Deployments in the member")?;
    Ok(())
}

/// The Region `join` made, if any; an error if a Region of that name was
/// made by someone else.
async fn joined_region(regions: &Api<Region>, name: &str) -> Result<Option<Region>> {
    match regions.get_opt(name).await? {
        Some(region) if !has_our_label(&region.metadata) => bail!(
            "Region {name} exists and was not made by join (no label {LABEL_MANAGED_BY}=multiregion): \
             choose another name or delete it first"
        ),
        found => Ok(found),
    }
}

fn secret_name(region: &str) -> String {
    format!("{region}-kubeconfig")
}

/// Writes the kubeconfig Secret and the Region in the hub.
async fn register(hub: &Client, args: &JoinArgs, kubeconfig_yaml: &str) -> Result<()> {
    let namespace = &args.hub.operator_namespace;
    let secrets: Api<Secret> = Api::namespaced(hub.clone(), namespace);
    let secret = Secret {
        metadata: meta(&secret_name(&args.name), Some(namespace)),
        string_data: Some(BTreeMap::from([(
            "kubeconfig".to_string(),
            kubeconfig_yaml.to_string(),
        )])),
        ..Secret::default()
    };
    apply(&secrets, &secret).await.with_context(|| {
        format!("does namespace {namespace} exist in the hub? (--operator-namespace)")
    })?;
    let mut spec = json!({
        "kubeconfigSecretRef": {"namespace": namespace, "name": secret_name(&args.name), "key": "kubeconfig"},
    });
    if let Some(endpoint) = &args.endpoint {
        spec["endpoint"] = json!(endpoint);
    }
    let region = json!({
        "apiVersion": "multiregion.io/v1alpha1",
        "kind": "Region",
        "metadata": {"name": args.name, "labels": {LABEL_MANAGED_BY: "multiregion"}},
        "spec": spec,
    });
    let regions: Api<Region> = Api::all(hub.clone());
    regions
        .patch(&args.name, &apply_params(), &Patch::Apply(&region))
        .await
        .with_context(|| format!("applying Region {}", args.name))?;
    Ok(())
}

pub async fn join(args: JoinArgs) -> Result<()> {
    let (hub, _) = super::hub::client(
        args.hub.hub_kubeconfig.as_ref(),
        args.hub.hub_context.as_ref(),
    )
    .await?;
    joined_region(&Api::all(hub.clone()), &args.name).await?;
    let admin = Kubeconfig::read_from(&args.kubeconfig)
        .with_context(|| format!("reading kubeconfig {}", args.kubeconfig.display()))?;
    let server = member_server(&admin, args.context.as_ref())?;
    if admin_uses_plugin(&admin) {
        println!(
            "note: the admin kubeconfig uses an exec or auth-provider plugin; it is used here once and never stored"
        );
    }
    let config = super::hub::config(Some(&args.kubeconfig), args.context.as_ref()).await?;
    let member = Client::try_from(config)?;
    let (token, published_ca) = create_member_identity(&member).await?;
    let ca = server.ca_pem.clone().or(published_ca);
    let reachable = token_kubeconfig(
        &args.name,
        &server.server,
        ca.as_deref(),
        server.insecure,
        &token,
    )?;
    verify_token(&reachable).await?;
    let internal = args.internal_server.as_deref().unwrap_or(&server.server);
    let stored = token_kubeconfig(&args.name, internal, ca.as_deref(), server.insecure, &token)?;
    register(&hub, &args, &stored).await?;
    println!(
        "region/{name} joined: ServiceAccount {MEMBER_NAMESPACE}/{MEMBER_IDENTITY} in the member, \
         Secret {ns}/{secret} and Region {name} in the hub",
        name = args.name,
        ns = args.hub.operator_namespace,
        secret = secret_name(&args.name),
    );
    Ok(())
}

fn admin_uses_plugin(kubeconfig: &Kubeconfig) -> bool {
    kubeconfig
        .auth_infos
        .iter()
        .filter_map(|a| a.auth_info.as_ref())
        .any(|a| a.exec.is_some() || a.auth_provider.is_some())
}

/// Deletes `name` when it carries the label `join` puts on what it makes;
/// says so when it is missing or someone else's.
async fn delete_ours<K>(api: &Api<K>, name: &str, what: &str) -> Result<()>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match api.get_opt(name).await? {
        None => println!("{what} {name} not found"),
        Some(object) if !has_our_label(object.meta()) => {
            println!("{what} {name} kept: not made by join")
        }
        Some(_) => {
            api.delete(name, &DeleteParams::default())
                .await
                .with_context(|| format!("deleting {what} {name}"))?;
            println!("{what} {name} deleted");
        }
    }
    Ok(())
}

/// The apps that still name `region` in spec.regions.
async fn apps_in(hub: &Client, region: &str) -> Result<Vec<String>> {
    let apps: Api<MultiRegionApp> = Api::all(hub.clone());
    Ok(apps
        .list(&ListParams::default())
        .await?
        .items
        .iter()
        .filter(|a| a.spec.regions.iter().any(|r| r.name == region))
        .map(|a| {
            format!(
                "{}/{}",
                a.metadata.namespace.as_deref().unwrap_or(""),
                a.metadata.name.as_deref().unwrap_or("")
            )
        })
        .collect())
}

/// Removes what `join` made: the Region and its Secret in the hub and,
/// given the member's kubeconfig, the identity in the member (never the
/// namespace, which may hold more). Refuses while an app still lists the
/// region, unless `--force`.
pub async fn unjoin(args: UnjoinArgs) -> Result<()> {
    let (hub, _) = super::hub::client(
        args.hub.hub_kubeconfig.as_ref(),
        args.hub.hub_context.as_ref(),
    )
    .await?;
    let users = apps_in(&hub, &args.name).await?;
    if !users.is_empty() && !args.force {
        bail!(
            "region {} is still in spec.regions of {}: remove it there first, or pass --force",
            args.name,
            users.join(", ")
        );
    }
    delete_ours(&Api::<Region>::all(hub.clone()), &args.name, "Region").await?;
    let secrets: Api<Secret> = Api::namespaced(hub.clone(), &args.hub.operator_namespace);
    delete_ours(&secrets, &secret_name(&args.name), "Secret").await?;
    let Some(kubeconfig) = &args.kubeconfig else {
        println!("the member's side was kept: pass --kubeconfig of the member to remove it too");
        return Ok(());
    };
    let member =
        Client::try_from(super::hub::config(Some(kubeconfig), args.context.as_ref()).await?)?;
    delete_ours(
        &Api::<ClusterRoleBinding>::all(member.clone()),
        MEMBER_IDENTITY,
        "ClusterRoleBinding",
    )
    .await?;
    delete_ours(
        &Api::<ClusterRole>::all(member.clone()),
        MEMBER_IDENTITY,
        "ClusterRole",
    )
    .await?;
    delete_ours::<Secret>(&in_namespace(&member), MEMBER_IDENTITY, "Secret").await?;
    delete_ours::<ServiceAccount>(&in_namespace(&member), MEMBER_IDENTITY, "ServiceAccount")
        .await?;
    Ok(())
}
