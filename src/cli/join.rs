//! `multiregion join` / `unjoin`: registering a member cluster with least
//! privilege. In the member: the operator's identity (`member.rs`). In the
//! hub: a kubeconfig Secret made from that identity's token (never the
//! caller's credentials) and the Region. Nothing either command did not
//! make is changed or deleted.

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::config::Kubeconfig;
use kube::{Client, Resource, ResourceExt};
use serde_json::json;

use super::args::{JoinArgs, UnjoinArgs};
use super::member::{self, JOIN_MANAGER, MemberServer, made_by_join, meta};
use crate::api::{
    ANNOTATION_CONFINED_IDENTITY, ANNOTATION_MEMBER_IDENTITY, LABEL_MANAGED_BY, MultiRegionApp,
    REGION_IN_USE, Region,
};

fn secret_name(region: &str) -> String {
    format!("{region}-kubeconfig")
}

/// A short, stable name for the hub: the start of its kube-system
/// namespace's UID (the operator's default hub identity).
async fn hub_id(hub: &Client) -> Result<String> {
    let namespaces: Api<Namespace> = Api::all(hub.clone());
    let uid = namespaces
        .get("kube-system")
        .await
        .context("reading the hub's kube-system namespace")?
        .metadata
        .uid
        .unwrap_or_default();
    Ok(uid
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(8)
        .collect())
}

/// The Region `join` made, if any; an error if a Region of that name was
/// made by someone else.
async fn joined_region(regions: &Api<Region>, name: &str) -> Result<Option<Region>> {
    match regions.get_opt(name).await? {
        Some(region) if !made_by_join(&region.metadata) => bail!(
            "Region {name} exists and was not made by join (no label {LABEL_MANAGED_BY}=multiregion): \
             choose another name or delete it first"
        ),
        found => Ok(found),
    }
}

/// Writes the kubeconfig Secret and the Region in the hub.
async fn register(hub: &Client, args: &JoinArgs, identity: &str, kubeconfig: &str) -> Result<()> {
    let namespace = &args.hub.operator_namespace;
    let secrets: Api<Secret> = Api::namespaced(hub.clone(), namespace);
    let secret = Secret {
        metadata: meta(&secret_name(&args.name), Some(namespace)),
        string_data: Some(BTreeMap::from([(
            "kubeconfig".to_string(),
            kubeconfig.to_string(),
        )])),
        ..Secret::default()
    };
    member::apply_ours(&secrets, &secret)
        .await
        .with_context(|| {
            format!("does namespace {namespace} exist in the hub? (--operator-namespace)")
        })?;
    let mut spec = json!({
        "kubeconfigSecretRef": {"namespace": namespace, "name": secret_name(&args.name), "key": "kubeconfig"},
    });
    if let Some(endpoint) = &args.endpoint {
        spec["endpoint"] = json!(endpoint);
    }
    let regions: Api<Region> = Api::all(hub.clone());
    // Joining again without the flags keeps what the Region admits (this
    // apply would otherwise drop the field it set last time).
    let kept = || async {
        let region = regions.get_opt(&args.name).await.ok()??;
        serde_json::to_value(region.spec.allowed_namespaces?).ok()
    };
    let allowed = match allowed_namespaces(args) {
        Some(allowed) => Some(allowed),
        None => kept().await,
    };
    if let Some(allowed) = allowed {
        spec["allowedNamespaces"] = allowed;
    }
    let region = json!({
        "apiVersion": "multiregion.io/v1alpha1",
        "kind": "Region",
        "metadata": {
            "name": args.name,
            "labels": {LABEL_MANAGED_BY: "multiregion"},
            "annotations": {ANNOTATION_MEMBER_IDENTITY: identity, ANNOTATION_CONFINED_IDENTITY: identity},
        },
        "spec": spec,
    });
    regions
        .patch(
            &args.name,
            &PatchParams::apply(JOIN_MANAGER).force(),
            &Patch::Apply(&region),
        )
        .await
        .with_context(|| format!("applying Region {}", args.name))?;
    Ok(())
}

/// Region spec.allowedNamespaces from `--allow-namespace` and
/// `--allow-all-namespaces`; None leaves what the Region has.
fn allowed_namespaces(args: &JoinArgs) -> Option<serde_json::Value> {
    if args.allow_all_namespaces {
        return Some(json!({}));
    }
    (!args.allow_namespace.is_empty()).then(|| {
        json!({"matchExpressions": [{
            "key": "kubernetes.io/metadata.name", "operator": "In", "values": args.allow_namespace,
        }]})
    })
}

/// The member's kubeconfig, `--member-kubeconfig` or the deprecated
/// `--kubeconfig` (with a warning: every other verb's `--kubeconfig` is the
/// hub's).
fn member_kubeconfig(args: &JoinArgs) -> &std::path::Path {
    if let Some(path) = &args.member_kubeconfig {
        return path;
    }
    eprintln!(
        "warning: join --kubeconfig is deprecated and will be removed; it names the member, so use --member-kubeconfig"
    );
    args.kubeconfig
        .as_deref()
        .expect("clap requires --member-kubeconfig or --kubeconfig")
}

/// Each `--allow-resource`, resolved through the member's discovery to the
/// `plural.group` the role grants; the first that cannot be granted stops
/// the join before anything is created.
async fn allowed_resources(member: &Client, wanted: &[String]) -> Result<Vec<String>> {
    if wanted.is_empty() {
        return Ok(Vec::new());
    }
    let served = super::grants::served(member).await?;
    wanted
        .iter()
        .map(|w| super::grants::resolve(w, &served).map(|s| s.name()))
        .collect()
}

pub async fn join(args: JoinArgs) -> Result<()> {
    let hub_args = &args.hub;
    let (hub, _) = super::hub::client(
        hub_args.hub_kubeconfig.as_ref(),
        hub_args.hub_context.as_ref(),
    )
    .await?;
    joined_region(&Api::all(hub.clone()), &args.name).await?;
    let identity = member::identity_name(&args.name, &hub_id(&hub).await?);
    let member_kubeconfig = member_kubeconfig(&args);
    let admin = Kubeconfig::read_from(member_kubeconfig)
        .with_context(|| format!("reading kubeconfig {}", member_kubeconfig.display()))?;
    let context = args.member_context.as_ref();
    let server =
        MemberServer::from_kubeconfig(&admin, context)?.verified(args.insecure_skip_tls_verify)?;
    let config = super::hub::config(Some(member_kubeconfig), context).await?;
    let member = Client::try_from(config)?;
    let grants = member::Grants {
        secrets: args.allow_secrets,
        resources: allowed_resources(&member, &args.allow_resource).await?,
    };
    let token = member::create_identity(&member, &identity, &grants, args.token_ttl).await?;
    if let Err(err) = finish(&hub, &args, &server, &identity, &token).await {
        eprintln!(
            "note: ServiceAccount {}/{identity} and its role stay in the member; \
             `unjoin {} --member-kubeconfig {}` removes them",
            member::MEMBER_NAMESPACE,
            args.name,
            member_kubeconfig.display()
        );
        return Err(err);
    }
    member::revoke_old_token(&member, &identity).await?;
    println!(
        "region/{name} joined: ServiceAccount {}/{identity} in the member, \
         Secret {ns}/{secret} and Region {name} in the hub",
        member::MEMBER_NAMESPACE,
        name = args.name,
        ns = hub_args.operator_namespace,
        secret = secret_name(&args.name),
    );
    if allowed_namespaces(&args).is_none() {
        println!(
            "note: apps may use region/{name} only from the hub namespaces its spec.allowedNamespaces selects, none unless set \
             (join again with --allow-namespace NAMESPACE, or kubectl patch region {name} --type merge \
             -p '{{\"spec\":{{\"allowedNamespaces\":{{}}}}}}' for every namespace)",
            name = args.name
        );
    }
    Ok(())
}

/// Checks the token from here, then registers it in the hub with the
/// address the operator uses.
async fn finish(
    hub: &Client,
    args: &JoinArgs,
    server: &MemberServer,
    identity: &str,
    token: &str,
) -> Result<()> {
    let here = server.cluster.server.clone().unwrap_or_default();
    let reachable = server.token_kubeconfig(&args.name, &here, identity, token)?;
    member::verify(&reachable).await?;
    let internal = args.internal_server.as_deref().unwrap_or(&here);
    let stored = server.token_kubeconfig(&args.name, internal, identity, token)?;
    register(hub, args, identity, &stored).await
}

/// Deletes `name` when `join` made it; says so when it is missing or
/// someone else's.
pub async fn delete_ours<K>(api: &Api<K>, name: &str) -> Result<()>
where
    K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let kind = K::kind(&());
    match api.get_opt(name).await? {
        None => println!("{kind} {name} not found"),
        Some(object) if !made_by_join(object.meta()) => {
            println!("{kind} {name} kept: not made by join")
        }
        Some(_) => {
            api.delete(name, &DeleteParams::default())
                .await
                .with_context(|| format!("deleting {kind} {name}"))?;
            println!("{kind} {name} deleted");
        }
    }
    Ok(())
}

/// Waits until the deleted Region is gone. The operator holds a Region
/// with its in-use finalizer while an app uses it; with `force` that hold
/// is lifted here (the apps' objects in the member are left there).
async fn region_gone(regions: &Api<Region>, name: &str, force: bool) -> Result<()> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let Some(region) = regions.get_opt(name).await? else {
            return Ok(());
        };
        let held = region.finalizers().iter().any(|f| f == REGION_IN_USE);
        if held && force {
            let kept: Vec<&String> = region
                .finalizers()
                .iter()
                .filter(|f| *f != REGION_IN_USE)
                .collect();
            let patch = json!({"metadata": {"finalizers": kept}});
            regions
                .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .with_context(|| format!("lifting the in-use finalizer of Region {name}"))?;
        }
        if std::time::Instant::now() > deadline {
            bail!(
                "Region {name} is still there, held by {:?}: an app still uses it (its cleanup may be waiting for the member), or the operator is not running",
                region.finalizers()
            );
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// The apps that still name `region`: in spec.regions, in their status, or
/// with objects there still to clean up.
async fn apps_in(hub: &Client, region: &str) -> Result<Vec<String>> {
    let apps: Api<MultiRegionApp> = Api::all(hub.clone());
    let uses = |app: &MultiRegionApp| {
        let status = app.status.as_ref();
        app.spec.regions.iter().any(|r| r.name == region)
            || status.is_some_and(|s| s.regions.iter().any(|r| r.name == region))
            || status.is_some_and(|s| s.cleanup_pending.iter().any(|r| r == region))
    };
    Ok(apps
        .list(&ListParams::default())
        .await?
        .items
        .iter()
        .filter(|a| uses(a))
        .map(|a| format!("{}/{}", a.namespace().unwrap_or_default(), a.name_any()))
        .collect())
}

/// Without the member's admin kubeconfig, the identity deletes its own
/// ServiceAccount with the credentials stored in the hub: every token it
/// was given is revoked at once. Says what happened either way.
async fn revoke_with_own_credentials(stored: Option<&Secret>, identity: Option<&str>) {
    let kubeconfig = stored
        .and_then(|s| s.data.as_ref()?.get("kubeconfig"))
        .and_then(|k| String::from_utf8(k.0.clone()).ok());
    let (Some(kubeconfig), Some(identity)) = (kubeconfig, identity) else {
        return;
    };
    let revoked = async {
        let parsed = kube::config::Kubeconfig::from_yaml(&kubeconfig)?;
        let config = kube::Config::from_custom_kubeconfig(parsed, &Default::default()).await?;
        let accounts: Api<k8s_openapi::api::core::v1::ServiceAccount> =
            Api::namespaced(Client::try_from(config)?, member::MEMBER_NAMESPACE);
        accounts.delete(identity, &Default::default()).await?;
        anyhow::Ok(())
    };
    match revoked.await {
        Ok(()) => println!(
            "ServiceAccount {}/{identity} deleted with its own credentials: its tokens are revoked",
            member::MEMBER_NAMESPACE
        ),
        Err(err) => println!(
            "the identity could not revoke itself ({err}): its token stays valid until it expires \
             (a join before confinement: never); pass --member-kubeconfig to remove it"
        ),
    }
}

/// Removes what `join` made: the Region and its Secret in the hub and,
/// given the member's kubeconfig, the identity in the member (never the
/// namespace, which may hold more). Refuses while an app still uses the
/// region, unless `--force`.
pub async fn unjoin(args: UnjoinArgs) -> Result<()> {
    let hub_args = &args.hub;
    let (hub, _) = super::hub::client(
        hub_args.hub_kubeconfig.as_ref(),
        hub_args.hub_context.as_ref(),
    )
    .await?;
    let users = apps_in(&hub, &args.name).await?;
    if !users.is_empty() && !args.force {
        bail!(
            "region {} is still used by {}: remove it from their spec.regions and wait for their \
             cleanup, or pass --force (their objects in the member are then left there)",
            args.name,
            users.join(", ")
        );
    }
    let regions: Api<Region> = Api::all(hub.clone());
    let identity = match regions.get_opt(&args.name).await? {
        Some(region) => region
            .annotations()
            .get(ANNOTATION_MEMBER_IDENTITY)
            .cloned(),
        None => None,
    };
    delete_ours(&regions, &args.name).await?;
    region_gone(&regions, &args.name, args.force).await?;
    let secrets: Api<Secret> = Api::namespaced(hub.clone(), &hub_args.operator_namespace);
    if args.member_kubeconfig.is_none() {
        let stored = secrets.get_opt(&secret_name(&args.name)).await?;
        revoke_with_own_credentials(stored.as_ref(), identity.as_deref()).await;
    }
    delete_ours(&secrets, &secret_name(&args.name)).await?;
    let Some(kubeconfig) = &args.member_kubeconfig else {
        println!(
            "the member's roles and admission policy were kept: pass --member-kubeconfig to remove them too"
        );
        return Ok(());
    };
    let identity = match identity {
        Some(identity) => identity,
        None => member::identity_name(&args.name, &hub_id(&hub).await?),
    };
    let config = super::hub::config(Some(kubeconfig), args.member_context.as_ref()).await?;
    member::delete_identity(&Client::try_from(config)?, &identity).await
}
