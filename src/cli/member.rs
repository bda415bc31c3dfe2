//! The operator's identity in a member cluster, as `join` makes it: a
//! ServiceAccount, a ClusterRole holding exactly the verbs the operator
//! uses there, its binding and a token Secret, all named after the region
//! and the hub so that two hubs (or two Regions) joined to one member never
//! share, overwrite or remove each other's identity.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use k8s_openapi::api::admissionregistration::v1::{
    ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef,
};
use kube::api::{Api, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::config::{Cluster, Kubeconfig};
use kube::{Client, Resource};
use serde_json::json;

use crate::api::LABEL_MANAGED_BY;

pub use crate::plan::identity::{MEMBER_NAMESPACE, subject, writer_name};
/// The identity `member-rbac` prints, for applying it by hand.
pub const MEMBER_IDENTITY: &str = "multiregion-member";
/// The field manager of what `join` applies.
pub const JOIN_MANAGER: &str = "multiregion-join";

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

/// The verbs of objects the operator places.
const PLACED: [&str; 6] = ["get", "list", "watch", "create", "patch", "delete"];
/// The verbs of objects the operator watches everywhere (label-scoped).
const READ: [&str; 3] = ["get", "list", "watch"];

/// The rules on what the operator places, with `verbs`: the app's
/// Deployments, Services and copies of its propagated ConfigMaps (and
/// Secrets, only when granted) and the kinds of `spec.resources` granted.
fn placed_rules(grants: &Grants, verbs: &[&str]) -> Vec<PolicyRule> {
    vec![
        rule(&["apps"], &["deployments"], verbs),
        rule(&[""], &["services", "configmaps"], verbs),
    ]
    .into_iter()
    .chain(grants.secrets.then(|| rule(&[""], &["secrets"], verbs)))
    .chain(grants.resources.iter().map(|r| resource_rule(r, verbs)))
    .collect()
}

/// What the identity may do everywhere: read (and watch, by label) what
/// it places but Secrets (read only in the namespaces where its writer
/// role is bound), create namespaces (the admission policy lets it create only
/// namespaces labelled as the operator's, with a Pod Security level), bind
/// its writer role in a namespace (only in namespaces labelled as the
/// operator's, only to itself: the admission policy again), and probe
/// `/readyz` and `/version`. It writes nothing else anywhere.
pub fn member_role(name: &str, grants: &Grants) -> ClusterRole {
    let probes = PolicyRule {
        non_resource_urls: Some(strings(&["/readyz", "/version"])),
        verbs: strings(&["get"]),
        ..PolicyRule::default()
    };
    let bind = PolicyRule {
        resource_names: Some(vec![writer_name(name)]),
        ..rule(&["rbac.authorization.k8s.io"], &["clusterroles"], &["bind"])
    };
    // Secrets are read only where the writer role is bound: a member
    // identity that could list every Secret of the member (its
    // controllers' tokens, its cloud credentials) would be its admin.
    let everywhere = Grants {
        secrets: false,
        ..grants.clone()
    };
    let rules = placed_rules(&everywhere, &READ)
        .into_iter()
        .chain([
            rule(&[""], &["namespaces"], &["get", "create"]),
            rule(
                &["rbac.authorization.k8s.io"],
                &["rolebindings"],
                &["create"],
            ),
            bind,
            probes,
        ])
        .collect();
    ClusterRole {
        metadata: meta(name, None),
        rules: Some(rules),
        ..ClusterRole::default()
    }
}

/// The identity's write verbs, bound by the operator with a RoleBinding in
/// each namespace it uses (never cluster-wide).
pub fn writer_role(name: &str, grants: &Grants) -> ClusterRole {
    ClusterRole {
        metadata: meta(&writer_name(name), None),
        rules: Some(placed_rules(grants, &PLACED)),
        ..ClusterRole::default()
    }
}

/// The member's admission policy that confines the identity where RBAC
/// cannot: the namespaces it creates carry the operator's label and a Pod
/// Security level other than privileged, and the RoleBindings it creates
/// bind its writer role, to itself only, only in namespaces labelled as the
/// operator's with such a level (never kube-system, never the identities'
/// own namespace), so it never writes where privileged pods may run.
pub fn admission_policy(name: &str) -> Result<ValidatingAdmissionPolicy> {
    let user = format!("system:serviceaccount:{MEMBER_NAMESPACE}:{name}");
    let ours = |object: &str| {
        format!(
            "has({object}.metadata.labels) && '{LABEL_MANAGED_BY}' in {object}.metadata.labels && {object}.metadata.labels['{LABEL_MANAGED_BY}'] == 'multiregion'"
        )
    };
    // A Pod Security level other than privileged (the labels are there:
    // `ours` checked).
    let level = |object: &str| {
        format!(
            "'pod-security.kubernetes.io/enforce' in {object}.metadata.labels && {object}.metadata.labels['pod-security.kubernetes.io/enforce'] in ['baseline', 'restricted']"
        )
    };
    let namespaces = format!(
        "request.resource.resource != 'namespaces' || ({} && {})",
        ours("object"),
        level("object")
    );
    let writer = writer_name(name);
    let bindings = format!(
        "request.resource.resource != 'rolebindings' || ({} && {} && namespaceObject.metadata.name != '{MEMBER_NAMESPACE}' \
         && object.roleRef.kind == 'ClusterRole' && object.roleRef.name == '{writer}' \
         && size(object.subjects) == 1 && object.subjects[0].kind == 'ServiceAccount' \
         && object.subjects[0].name == '{name}' && object.subjects[0].namespace == '{MEMBER_NAMESPACE}')",
        ours("namespaceObject"),
        level("namespaceObject")
    );
    let policy = json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicy",
        "metadata": meta(name, None),
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {"resourceRules": [
                {"apiGroups": [""], "apiVersions": ["*"], "operations": ["CREATE", "UPDATE"], "resources": ["namespaces"]},
                {"apiGroups": ["rbac.authorization.k8s.io"], "apiVersions": ["*"], "operations": ["CREATE", "UPDATE"], "resources": ["rolebindings"]}
            ]},
            "matchConditions": [{"name": "the-operators-identity", "expression": format!("request.userInfo.username == '{user}'")}],
            "validations": [
                {"expression": namespaces, "message": format!("the multiregion identity {name} creates only namespaces labelled {LABEL_MANAGED_BY}=multiregion with a Pod Security level of baseline or restricted")},
                {"expression": bindings, "message": format!("the multiregion identity {name} binds only {writer}, to itself, in namespaces labelled {LABEL_MANAGED_BY}=multiregion and pod-security.kubernetes.io/enforce baseline or restricted")}
            ]
        }
    });
    Ok(serde_json::from_value(policy)?)
}

/// Puts the policy in force (deny) for every request it matches.
pub fn admission_binding(name: &str) -> Result<ValidatingAdmissionPolicyBinding> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": meta(name, None),
        "spec": {"policyName": name, "validationActions": ["Deny"]}
    }))?)
}

fn binding(name: &str) -> ClusterRoleBinding {
    ClusterRoleBinding {
        metadata: meta(name, None),
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".to_string(),
            kind: "ClusterRole".to_string(),
            name: name.to_string(),
        },
        subjects: Some(vec![subject(name)]),
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
        serde_saphyr::to_string(&writer_role(name, grants))?,
        serde_saphyr::to_string(&admission_policy(name)?)?,
        serde_saphyr::to_string(&admission_binding(name)?)?,
        serde_saphyr::to_string(&own_role(name))?,
        serde_saphyr::to_string(&own_binding(name))?,
    ];
    let first_token = format!(
        "# Then the identity's first token (it expires; the operator renews it):\n\
         #   kubectl -n {MEMBER_NAMESPACE} create token {name} --duration 24h\n\
         # in a kubeconfig Secret of the hub that the Region names, and on the\n\
         # Region the annotations multiregion.io/member-identity and\n\
         # multiregion.io/confined-identity, both {name}.\n"
    );
    let objects: String = documents.iter().map(|d| format!("---\n{d}")).collect();
    Ok(first_token + &objects)
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
pub async fn create_identity(
    member: &Client,
    name: &str,
    grants: &Grants,
    ttl: Duration,
) -> Result<String> {
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
    // The policy first: the identity is never without its confinement.
    apply_ours(&Api::all(member.clone()), &admission_policy(name)?).await?;
    apply_ours(&Api::all(member.clone()), &admission_binding(name)?).await?;
    apply_ours(&Api::all(member.clone()), &writer_role(name, grants)).await?;
    apply_ours(&Api::all(member.clone()), &member_role(name, grants)).await?;
    apply_ours(&Api::all(member.clone()), &binding(name)).await?;
    apply_ours(&in_namespace(member), &own_role(name)).await?;
    apply_ours(&in_namespace(member), &own_binding(name)).await?;
    request_token(member, name, ttl).await
}

/// Deletes the token Secret an older join made, which never expires (gone,
/// it is revoked): once the new token is stored in the hub.
pub async fn revoke_old_token(member: &Client, name: &str) -> Result<()> {
    super::join::delete_ours(&in_namespace::<Secret>(member), name).await
}

/// What the identity may do to itself, in its own namespace: ask for a new
/// token (the operator renews it before it expires) and delete its
/// ServiceAccount (`unjoin` without the member's kubeconfig revokes it).
fn own_role(name: &str) -> Role {
    let own = |resources: &[&str], verbs: &[&str]| PolicyRule {
        resource_names: Some(vec![name.to_string()]),
        ..rule(&[""], resources, verbs)
    };
    Role {
        metadata: meta(name, Some(MEMBER_NAMESPACE)),
        rules: Some(vec![
            own(&["serviceaccounts/token"], &["create"]),
            own(&["serviceaccounts"], &["get", "delete"]),
        ]),
    }
}

fn own_binding(name: &str) -> RoleBinding {
    RoleBinding {
        metadata: meta(name, Some(MEMBER_NAMESPACE)),
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".to_string(),
            kind: "Role".to_string(),
            name: name.to_string(),
        },
        subjects: Some(vec![subject(name)]),
    }
}

/// A token for the identity, valid for `ttl` (TokenRequest).
pub async fn request_token(client: &Client, name: &str, ttl: Duration) -> Result<String> {
    let token = crate::regions::tokens::request_token(client, MEMBER_NAMESPACE, name, ttl)
        .await
        .with_context(|| {
            format!("requesting a token for ServiceAccount {MEMBER_NAMESPACE}/{name}")
        })?;
    if token.is_empty() {
        bail!("the member's TokenRequest answered without a token");
    }
    Ok(token)
}
/// Deletes the identity `name` in the member, only what `join` made.
pub async fn delete_identity(member: &Client, name: &str) -> Result<()> {
    super::join::delete_ours(&in_namespace::<RoleBinding>(member), name).await?;
    super::join::delete_ours(&in_namespace::<Role>(member), name).await?;
    super::join::delete_ours(&Api::<ClusterRoleBinding>::all(member.clone()), name).await?;
    super::join::delete_ours(&Api::<ClusterRole>::all(member.clone()), name).await?;
    let writer = writer_name(name);
    super::join::delete_ours(&Api::<ClusterRole>::all(member.clone()), &writer).await?;
    delete_namespace_bindings(member, name).await?;
    let bindings = Api::<ValidatingAdmissionPolicyBinding>::all(member.clone());
    super::join::delete_ours(&bindings, name).await?;
    let policies = Api::<ValidatingAdmissionPolicy>::all(member.clone());
    super::join::delete_ours(&policies, name).await?;
    super::join::delete_ours(&in_namespace::<Secret>(member), name).await?;
    super::join::delete_ours(&in_namespace::<ServiceAccount>(member), name).await
}

/// Deletes the identity's RoleBindings in every namespace (the operator's,
/// bound to it).
async fn delete_namespace_bindings(member: &Client, name: &str) -> Result<()> {
    let all: Api<RoleBinding> = Api::all(member.clone());
    let params = ListParams::default().labels(&format!("{LABEL_MANAGED_BY}=multiregion"));
    for binding in all.list(&params).await? {
        let ours = binding.metadata.name.as_deref() == Some(name)
            && binding.role_ref.name == writer_name(name);
        if let (true, Some(namespace)) = (ours, binding.metadata.namespace.as_deref()) {
            let api: Api<RoleBinding> = Api::namespaced(member.clone(), namespace);
            super::join::delete_ours(&api, name).await?;
        }
    }
    Ok(())
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
        let secrets = |rules: &[(Vec<String>, Vec<String>)]| {
            rules
                .iter()
                .any(|(_, r)| r.contains(&"secrets".to_string()))
        };
        assert!(!secrets(&plain));
        assert!(!secrets(&grants_of(&writer_role("m", &Grants::default()))));
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
            rule("", "serviceaccounts"),
            rule("autoscaling", "horizontalpodautoscalers"),
            rule("example.com", "widgets"),
        ] {
            assert!(granted.contains(&want), "{want:?} not in {granted:?}");
        }
        assert_eq!(granted.len(), plain.len() + 3);
        assert!(
            !secrets(&granted),
            "Secrets are never readable cluster-wide: {granted:?}"
        );
        let writer = grants_of(&writer_role("m", &grants));
        assert!(
            writer.contains(&rule("", "secrets")),
            "Secrets in the namespaces the writer role is bound in: {writer:?}"
        );
    }
}
