//! The operator's identity in a member cluster, as `join` makes it: a
//! ServiceAccount, a ClusterRole holding exactly the verbs the operator
//! uses there, its binding and a token Secret, all named after the region
//! and the hub so that two hubs (or two Regions) joined to one member never
//! share, overwrite or remove each other's identity.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, RoleRef, Subject};
use kube::api::{Api, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::config::{Cluster, Kubeconfig};
use kube::{Client, Resource};
use serde_json::json;

use crate::api::LABEL_MANAGED_BY;

/// Where the operator's identities live, in the member.
pub const MEMBER_NAMESPACE: &str = "multiregion-system";
/// The identity `member-rbac` prints, for applying it by hand.
pub const MEMBER_IDENTITY: &str = "multiregion-member";
/// The field manager of what `join` applies.
pub const JOIN_MANAGER: &str = "multiregion-join";
const TOKEN_UID: &str = "kubernetes.io/service-account.uid";

/// The name of the identity one hub uses for one region.
pub fn identity_name(region: &str, hub: &str) -> String {
    format!("multiregion-{region}-{hub}")
}

pub fn meta(name: &str, namespace: Option<&str>) -> ObjectMeta {
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

pub fn made_by_join(meta: &ObjectMeta) -> bool {
    meta.labels
        .as_ref()
        .and_then(|l| l.get(LABEL_MANAGED_BY))
        .is_some_and(|v| v == "multiregion")
}

fn rule(groups: &[&str], resources: &[&str], verbs: &[&str]) -> PolicyRule {
    PolicyRule {
        api_groups: Some(strings(groups)),
        resources: Some(strings(resources)),
        verbs: strings(verbs),
        ..PolicyRule::default()
    }
}

fn strings(s: &[&str]) -> Vec<String> {
    s.iter().map(|x| x.to_string()).collect()
}

/// What a member lets the operator do beyond the workload and ConfigMaps.
#[derive(Clone, Debug, Default)]
pub struct Grants {
    /// Secrets (`--allow-secrets`), for `spec.propagate.secrets`.
    pub secrets: bool,
    /// Kinds of `spec.resources`, as `RESOURCE[.GROUP]` like kubectl's
    /// (`serviceaccounts`, `horizontalpodautoscalers.autoscaling`).
    pub resources: Vec<String>,
}

/// One rule on `RESOURCE[.GROUP]` with the verbs the operator places with.
fn resource_rule(resource: &str, verbs: &[&str]) -> PolicyRule {
    let (resource, group) = resource.split_once('.').unwrap_or((resource, ""));
    rule(&[group], &[resource], verbs)
}

/// Exactly the verbs the operator uses in a member: it creates the app's
/// namespace when missing (never deletes one), places, watches and removes
/// the app's Deployments, Services and copies of its propagated ConfigMaps
/// (and Secrets, only when granted) and the kinds of `spec.resources`
/// granted, and probes `/readyz` and `/version`.
pub fn member_role(name: &str, grants: &Grants) -> ClusterRole {
    let placed = ["get", "list", "watch", "create", "patch", "delete"];
    let probes = PolicyRule {
        non_resource_urls: Some(strings(&["/readyz", "/version"])),
        verbs: strings(&["get"]),
        ..PolicyRule::default()
    };
    ClusterRole {
        metadata: meta(name, None),
        rules: Some(
            vec![
                rule(&[""], &["namespaces"], &["get", "create"]),
                rule(&["apps"], &["deployments"], &placed),
                rule(&[""], &["services", "configmaps"], &placed),
                probes,
            ]
            .into_iter()
            .chain(grants.secrets.then(|| rule(&[""], &["secrets"], &placed)))
            .chain(grants.resources.iter().map(|r| resource_rule(r, &placed)))
            .collect(),
        ),
        ..ClusterRole::default()
    }
}

fn binding(name: &str) -> ClusterRoleBinding {
    ClusterRoleBinding {
        metadata: meta(name, None),
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".to_string(),
            kind: "ClusterRole".to_string(),
            name: name.to_string(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".to_string(),
            name: name.to_string(),
            namespace: Some(MEMBER_NAMESPACE.to_string()),
            ..Subject::default()
        }]),
    }
}

fn token_secret(name: &str) -> Secret {
    let mut metadata = meta(name, Some(MEMBER_NAMESPACE));
    metadata.annotations = Some(BTreeMap::from([(
        "kubernetes.io/service-account.name".to_string(),
        name.to_string(),
    )]));
    Secret {
        metadata,
        type_: Some("kubernetes.io/service-account-token".to_string()),
        ..Secret::default()
    }
}

fn account(name: &str) -> ServiceAccount {
    ServiceAccount {
        metadata: meta(name, Some(MEMBER_NAMESPACE)),
        ..ServiceAccount::default()
    }
}

/// The member-side objects as multi-document YAML, for `kubectl apply -f -`.
pub fn rbac_yaml(grants: &Grants) -> Result<String> {
    let namespace = Namespace {
        metadata: meta(MEMBER_NAMESPACE, None),
        ..Namespace::default()
    };
    let name = MEMBER_IDENTITY;
    let documents = [
        serde_saphyr::to_string(&namespace)?,
        serde_saphyr::to_string(&account(name))?,
        serde_saphyr::to_string(&member_role(name, grants))?,
        serde_saphyr::to_string(&binding(name))?,
        serde_saphyr::to_string(&token_secret(name))?,
    ];
    Ok(documents.iter().map(|d| format!("---\n{d}")).collect())
}

/// An API in the member's namespace of the operator's identities.
fn in_namespace<K>(client: &Client) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
{
    Api::namespaced(client.clone(), MEMBER_NAMESPACE)
}

/// Server-side applies one object, refusing one of that name that `join`
/// did not make.
pub async fn apply_ours<K>(api: &Api<K>, object: &K) -> Result<K>
where
    K: Resource<DynamicType = ()>
        + Clone
        + serde::Serialize
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let name = object.meta().name.clone().unwrap_or_default();
    let kind = K::kind(&());
    if let Some(existing) = api.get_opt(&name).await?
        && !made_by_join(existing.meta())
    {
        bail!(
            "{kind} {name} exists and was not made by join (no label {LABEL_MANAGED_BY}=multiregion): \
             delete or rename it first"
        );
    }
    api.patch(
        &name,
        &PatchParams::apply(JOIN_MANAGER).force(),
        &Patch::Apply(object),
    )
    .await
    .with_context(|| format!("applying {kind} {name}"))
}

/// Creates the identity `name` in the member and returns its token.
pub async fn create_identity(member: &Client, name: &str, grants: &Grants) -> Result<String> {
    let namespaces: Api<Namespace> = Api::all(member.clone());
    if namespaces.get_opt(MEMBER_NAMESPACE).await?.is_none() {
        let namespace = Namespace {
            metadata: meta(MEMBER_NAMESPACE, None),
            ..Namespace::default()
        };
        namespaces
            .create(&PostParams::default(), &namespace)
            .await?;
    }
    apply_ours(&in_namespace(member), &account(name)).await?;
    apply_ours(&Api::all(member.clone()), &member_role(name, grants)).await?;
    apply_ours(&Api::all(member.clone()), &binding(name)).await?;
    apply_ours(&in_namespace(member), &token_secret(name)).await?;
    wait_for_token(member, name).await
}

/// The token, once the member's token controller has filled the Secret in
/// for the live ServiceAccount. Right after an `unjoin` the controller may
/// still delete the new Secret, or fill it for the old account: the Secret
/// is applied again until it belongs to the account that exists now.
async fn wait_for_token(member: &Client, name: &str) -> Result<String> {
    let accounts: Api<ServiceAccount> = in_namespace(member);
    let secrets: Api<Secret> = in_namespace(member);
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let uid = accounts.get(name).await?.metadata.uid;
        match secrets.get_opt(name).await? {
            None => {
                apply_ours(&secrets, &token_secret(name)).await?;
            }
            Some(secret) if token_uid(&secret) == uid => {
                if let Some(token) = secret.data.as_ref().and_then(|d| d.get("token")) {
                    return Ok(String::from_utf8(token.0.clone())?);
                }
            }
            Some(_) => {}
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    bail!(
        "the member did not fill in the token of Secret {MEMBER_NAMESPACE}/{name} within 60 s: \
         is its kube-controller-manager running with --service-account-private-key-file?"
    )
}

fn token_uid(secret: &Secret) -> Option<String> {
    secret
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(TOKEN_UID))
        .cloned()
}

/// Deletes the identity `name` in the member, only what `join` made.
pub async fn delete_identity(member: &Client, name: &str) -> Result<()> {
    super::join::delete_ours(&Api::<ClusterRoleBinding>::all(member.clone()), name).await?;
    super::join::delete_ours(&Api::<ClusterRole>::all(member.clone()), name).await?;
    super::join::delete_ours(&in_namespace::<Secret>(member), name).await?;
    super::join::delete_ours(&in_namespace::<ServiceAccount>(member), name).await
}

/// How the member's API server is reached and trusted, as the admin
/// kubeconfig `join` was given says: its CA, TLS server name and proxy are
/// kept as they are (no CA means the system's roots, as for the admin).
pub struct MemberServer {
    pub cluster: Cluster,
}

impl MemberServer {
    pub fn from_kubeconfig(kubeconfig: &Kubeconfig, context: Option<&String>) -> Result<Self> {
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
        let mut cluster = kubeconfig
            .clusters
            .iter()
            .find(|c| c.name == context.cluster)
            .and_then(|c| c.cluster.clone())
            .with_context(|| format!("cluster {:?} is not in the kubeconfig", context.cluster))?;
        if let Some(path) = cluster.certificate_authority.take() {
            use base64::Engine as _;
            let pem = std::fs::read(&path).with_context(|| format!("reading {path}"))?;
            cluster.certificate_authority_data =
                Some(base64::engine::general_purpose::STANDARD.encode(pem));
        }
        cluster
            .server
            .as_ref()
            .context("the kubeconfig's cluster has no server")?;
        Ok(MemberServer { cluster })
    }

    /// Refuses a server whose certificate would not be verified, unless
    /// the user said so: the operator would talk to whoever answers there
    /// with credentials to the region.
    pub fn verified(self, insecure_allowed: bool) -> Result<Self> {
        if self.cluster.insecure_skip_tls_verify == Some(true) && !insecure_allowed {
            anyhow::bail!(
                "the member's kubeconfig skips TLS verification (insecure-skip-tls-verify): the operator would trust whoever answers at {}; give its CA instead, or pass --insecure-skip-tls-verify to store it anyway",
                self.cluster.server.as_deref().unwrap_or_default()
            );
        }
        Ok(self)
    }

    /// A kubeconfig holding only the identity's token, for `server`.
    pub fn token_kubeconfig(
        &self,
        region: &str,
        server: &str,
        user: &str,
        token: &str,
    ) -> Result<String> {
        let mut cluster = serde_json::to_value(&self.cluster)?;
        cluster["server"] = json!(server);
        let kubeconfig = json!({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": region, "cluster": cluster}],
            "users": [{"name": user, "user": {"token": token}}],
            "contexts": [{"name": region, "context": {"cluster": region, "user": user}}],
            "current-context": region,
        });
        Ok(serde_saphyr::to_string(&kubeconfig)?)
    }
}

/// Proves a token kubeconfig works: the identity lists Deployments.
pub async fn verify(kubeconfig_yaml: &str) -> Result<()> {
    let kubeconfig = Kubeconfig::from_yaml(kubeconfig_yaml)?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await?;
    let deployments: Api<Deployment> = Api::all(Client::try_from(config)?);
    deployments
        .list(&ListParams::default().limit(1))
        .await
        .context("the member identity's token cannot list Deployments in the member")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (groups, resources) of each rule on resources.
    fn grants_of(role: &ClusterRole) -> Vec<(Vec<String>, Vec<String>)> {
        role.rules
            .iter()
            .flatten()
            .filter_map(|r| Some((r.api_groups.clone()?, r.resources.clone()?)))
            .collect()
    }

    #[test]
    fn a_kubeconfig_that_skips_tls_verification_is_refused_unless_asked() {
        let kubeconfig: Kubeconfig = serde_saphyr::from_str(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {server: \"https://10.0.0.1:6443\", insecure-skip-tls-verify: true}\nusers:\n- name: u\n  user: {token: x}\ncontexts:\n- name: c\n  context: {cluster: c, user: u}\ncurrent-context: c\n",
        )
        .unwrap();
        let server = || MemberServer::from_kubeconfig(&kubeconfig, None).unwrap();
        let refused = server().verified(false).err().unwrap().to_string();
        assert!(refused.contains("--insecure-skip-tls-verify"), "{refused}");
        assert!(refused.contains("https://10.0.0.1:6443"), "{refused}");
        assert!(server().verified(true).is_ok());
    }

    #[test]
    fn the_member_role_grants_secrets_and_extra_kinds_only_when_asked() {
        let plain = grants_of(&member_role("m", &Grants::default()));
        assert!(
            !plain
                .iter()
                .any(|(_, r)| r.contains(&"secrets".to_string()))
        );
        let grants = Grants {
            secrets: true,
            resources: vec![
                "serviceaccounts".into(),
                "horizontalpodautoscalers.autoscaling".into(),
                "widgets.example.com".into(),
            ],
        };
        let granted = grants_of(&member_role("m", &grants));
        let rule = |g: &str, r: &str| (vec![g.to_string()], vec![r.to_string()]);
        for want in [
            rule("", "secrets"),
            rule("", "serviceaccounts"),
            rule("autoscaling", "horizontalpodautoscalers"),
            rule("example.com", "widgets"),
        ] {
            assert!(granted.contains(&want), "{want:?} not in {granted:?}");
        }
        assert_eq!(granted.len(), plain.len() + 4);
    }
}
