//! Writing and removing the app's objects in one member cluster.
//!
//! Objects are created with a plain create (which fails if the name is
//! taken: one request per new object) and updated with server-side apply
//! only when the watched copy is the operator's and its applied-hash
//! differs. A same-named object the
//! operator did not create is never adopted or overwritten.

use std::sync::Arc;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, PodTemplateSpec, Secret, Service};
use k8s_openapi::api::rbac::v1::RoleBinding;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::api::{
    FIELD_MANAGER, LABEL_MANAGED_BY, LABEL_RESOURCE, LABEL_ROLE_CONFIG, MultiRegionAppSpec,
    PropagatedObjects, ResourceRef,
};
use crate::error::{Error, Result};
use crate::plan::Placement;
use crate::plan::identity;
use crate::plan::manifest::{self, AppKey, Built, Found};
use crate::plan::propagate::{self, Propagation};
use crate::plan::resources as plan_resources;

use super::resources;
use crate::regions::{Member, store_ready};

/// Places (or updates) the Namespace, the propagated ConfigMaps and
/// Secrets, the Deployment and the Service of `app` in `member`, and
/// records conflicts and refusals on the member for the next round to see.
/// Returns whether anything was written.
pub async fn place(
    member: &Member,
    app: &AppKey,
    spec: &MultiRegionAppSpec,
    template: &PodTemplateSpec,
    propagation: &Propagation,
    placement: &Placement,
) -> Result<bool> {
    // A copy that cannot be written (refused, or a same-named object the
    // operator did not create) never holds back the workload: the region
    // then reports the copy missing (ConfigNotPropagated).
    let copied = place_copies(member, app, spec, propagation)
        .await
        .unwrap_or_else(|err| {
            tracing::warn!(region = %member.name(), app = %app.name, namespace = %app.namespace, error = %err, "propagated copies not placed");
            false
        });
    // Extra resources go before the workload (its ServiceAccount, say); one
    // that cannot be placed is reported, and the workload is placed anyway.
    let extra = place_resources(member, app, spec, propagation, &placement.region).await;
    let result = match (
        place_objects(member, app, spec, template, placement).await,
        extra,
    ) {
        (Ok(wrote), Ok(extra)) => Ok(wrote | copied | extra),
        (Err(err), _) | (Ok(_), Err(err)) => Err(err),
    };
    if let Err(Error::Refused { message, .. }) = &result
        && (message.contains("NotFound") || message.contains("(Forbidden)"))
    {
        // Most likely the namespace was deleted under the operator: it is
        // created again at the next placement (a confined identity is
        // forbidden, not told NotFound: its binding went with the
        // namespace, and is made again too). Or a kind of spec.resources
        // is gone (a CRD removed): it is looked up again.
        member.namespace_gone(&app.namespace);
        member.forget_kinds();
    }
    member.record(app, &result);
    result
}

async fn place_objects(
    member: &Member,
    app: &AppKey,
    spec: &MultiRegionAppSpec,
    template: &PodTemplateSpec,
    placement: &Placement,
) -> Result<bool> {
    let client = member.client()?;
    let region = member.name();
    ensure_namespace(member, client, &app.namespace).await?;
    let mut wrote = false;
    if let Some(store) = member.deployments() {
        let index = spec.regions.iter().position(|r| r.name == placement.region);
        let region_overrides = index.and_then(|i| spec.regions[i].overrides.as_ref());
        let field = format!("spec.regions[{}].overrides", index.unwrap_or_default());
        let deployment =
            manifest::deployment_for(app, template, placement, region_overrides, &field).map_err(
                |invalid| Error::Refused {
                    region: region.to_string(),
                    message: invalid.to_string(),
                },
            )?;
        wrote |= apply_owned(client, store, region, app, deployment).await?;
    }
    if let Some(store) = member.services() {
        wrote |= match manifest::service(app, spec, region) {
            Some(service) => apply_owned(client, store, region, app, service).await?,
            None => remove_service(member, client, app).await?,
        };
    }
    wrote |= place_role(member, client, app, placement).await;
    Ok(wrote)
}

/// The app's role ConfigMap in the region (written when the role changes).
/// One that cannot be written (the region does not let the operator read
/// ConfigMaps, or the name is taken) is reported and never holds back the
/// workload.
async fn place_role(member: &Member, client: &Client, app: &AppKey, placement: &Placement) -> bool {
    let Some(maps) = member.config_maps().filter(|m| store_ready(m)) else {
        return false;
    };
    let region = member.name();
    let now = jiff::Timestamp::now();
    let Some(map) = manifest::role_config_map(app, region, placement.role, now, "operator") else {
        return false;
    };
    match apply_owned(client, maps, region, app, map).await {
        Ok(wrote) => wrote,
        Err(err) => {
            tracing::warn!(region, app = %app.name, namespace = %app.namespace, error = %err, "the app's role ConfigMap is not placed");
            false
        }
    }
}

/// What the region gets of `spec.resources`.
async fn place_resources(
    member: &Member,
    app: &AppKey,
    spec: &MultiRegionAppSpec,
    propagation: &Propagation,
    region: &str,
) -> Result<bool> {
    if spec.resources.is_empty() {
        return Ok(false);
    }
    let taken = plan_resources::taken(
        app,
        &propagation.config_map_names(),
        &propagation.secret_names(),
    );
    let built = plan_resources::for_region(app, spec, region, &taken).map_err(|invalid| {
        Error::Refused {
            region: member.name().to_string(),
            message: invalid.to_string(),
        }
    })?;
    ensure_namespace(member, member.client()?, &app.namespace).await?;
    resources::place(member, app, &built).await
}

/// The propagated ConfigMaps and Secrets, before the workload that mounts
/// them; copies the spec no longer selects are removed.
async fn place_copies(
    member: &Member,
    app: &AppKey,
    spec: &MultiRegionAppSpec,
    propagation: &Propagation,
) -> Result<bool> {
    if member.spec().local {
        // The hub itself: the originals are in the app's namespace already.
        return Ok(false);
    }
    let (Some(maps), Some(secrets)) = (member.config_maps(), member.secrets_in(&app.namespace))
    else {
        return Ok(false);
    };
    let client = member.client()?;
    let region = member.name();
    if !propagation.is_empty() {
        ensure_namespace(member, client, &app.namespace).await?;
    }
    // A kind not listed here (not yet, or not allowed: a region joined
    // without --allow-secrets) is not copied; the region then reports
    // ConfigNotPropagated instead of failing the placement.
    let mut wrote = false;
    for source in propagation.config_maps.iter().filter(|_| store_ready(maps)) {
        let copy = propagate::config_map_copy(app, region, source);
        wrote |= apply_owned(client, maps, region, app, copy).await?;
    }
    for source in propagation
        .secrets
        .iter()
        .filter(|_| store_ready(&secrets.store))
    {
        let copy = propagate::secret_copy(app, region, source);
        wrote |= apply_owned(client, &secrets.store, region, app, copy).await?;
    }
    let wanted = spec.propagate.clone().unwrap_or_default();
    let (maps, secrets) = (member.app_config_maps(app), member.app_secrets(app));
    wrote |=
        remove_unselected::<ConfigMap, _>(client, maps, region, app, &wanted.config_maps).await?;
    wrote |= remove_unselected::<Secret, _>(client, secrets, region, app, &wanted.secrets).await?;
    Ok(wrote)
}

/// Deletes the app's copies here (among `cached`, the objects labelled for
/// the app) that `wanted` no longer selects (by the copy's name and labels,
/// which are the hub object's).
async fn remove_unselected<K, M>(
    client: &Client,
    cached: Vec<Arc<M>>,
    region: &str,
    app: &AppKey,
    wanted: &[PropagatedObjects],
) -> Result<bool>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + std::fmt::Debug
        + DeserializeOwned,
    M: Resource<DynamicType = ()> + Clone + 'static,
{
    let stale: Vec<String> = cached
        .iter()
        .filter(|o| o.namespace().as_deref() == Some(app.namespace.as_str()))
        .filter(|o| manifest::owned_by(Some(o.labels()), app, region))
        // Objects of spec.resources are not copies: resources.rs keeps them;
        // nor is the app's role ConfigMap.
        .filter(|o| !o.labels().contains_key(LABEL_RESOURCE))
        .filter(|o| !o.labels().contains_key(LABEL_ROLE_CONFIG))
        .filter(|o| {
            let original = propagate::source_labels(o.meta());
            let labels = original.as_ref().unwrap_or(o.labels());
            !propagate::selects(wanted, &o.name_any(), Some(labels))
        })
        .map(|o| o.name_any())
        .collect();
    let api: Api<K> = Api::namespaced(client.clone(), &app.namespace);
    for name in &stale {
        match api.delete(name, &DeleteParams::background()).await {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(err) => return Err(Error::member(region, err)),
        }
    }
    Ok(!stale.is_empty())
}

/// The spec no longer asks for a Service: removes the operator's, if any.
async fn remove_service(member: &Member, client: &Client, app: &AppKey) -> Result<bool> {
    let ours = member
        .cached_service(app)
        .is_some_and(|s| manifest::owned_by(Some(s.labels()), app, member.name()));
    if !ours {
        return Ok(false);
    }
    let api: Api<Service> = Api::namespaced(client.clone(), &app.namespace);
    api.delete(&app.name, &DeleteParams::default())
        .await
        .map_err(|e| Error::member(member.name(), e))?;
    Ok(true)
}

/// The app's namespace exists in the member (created when missing,
/// labelled with the Region's Pod Security level) and, for a confined
/// identity, holds the binding that lets it write there.
async fn ensure_namespace(member: &Member, client: &Client, name: &str) -> Result<()> {
    if member.knows_namespace(name) {
        return Ok(());
    }
    let region = member.name();
    let api: Api<Namespace> = Api::all(client.clone());
    let existing = api
        .get_opt(name)
        .await
        .map_err(|e| Error::member(region, e))?;
    if existing
        .as_ref()
        .is_some_and(|n| n.metadata.deletion_timestamp.is_some())
    {
        return Err(being_deleted(region, name));
    }
    if existing.is_none() {
        let namespace = manifest::namespace(name, member.spec().pod_security);
        match api.create(&post_params(), &namespace).await {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 409 => {}
            Err(err) => return Err(Error::member(region, err)),
        }
    }
    if let Some(identity) = member.confined_identity() {
        bind_writer(member, client, &identity, name).await?;
    }
    member.namespace_exists(name);
    Ok(())
}

/// Binds the confined identity's writer role in `namespace`. The member's
/// admission policy refuses it in a namespace not labelled as the
/// operator's: the error then says how to let the operator in.
async fn bind_writer(
    member: &Member,
    client: &Client,
    identity: &str,
    namespace: &str,
) -> Result<()> {
    let api: Api<RoleBinding> = Api::namespaced(client.clone(), namespace);
    let binding = identity::namespace_binding(identity, namespace);
    match api.create(&post_params(), &binding).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(()),
        Err(kube::Error::Api(status)) if status.message.contains("being terminated") => {
            Err(being_deleted(member.name(), namespace))
        }
        Err(kube::Error::Api(status)) if status.code == 403 || status.code == 422 => {
            Err(Error::Refused {
                region: member.name().to_string(),
                message: format!(
                    "namespace {namespace} was not created by multiregion, and the identity \
                     {identity} writes only in namespaces labelled {LABEL_MANAGED_BY}=multiregion \
                     and pod-security.kubernetes.io/enforce=baseline (or restricted): label it so to \
                     let the operator in: {}",
                    status.message
                ),
            })
        }
        Err(err) => Err(Error::member(member.name(), err)),
    }
}

/// A member namespace someone deleted: nothing can be placed in it until
/// its deletion ends; the next placement creates it again.
fn being_deleted(region: &str, namespace: &str) -> Error {
    Error::Refused {
        region: region.to_string(),
        message: format!(
            "namespace {namespace} is being deleted (Forbidden): it is created again once it is gone"
        ),
    }
}

/// Records the operator's fields of an object it created as its
/// server-side apply (`plan::manifest::as_applied`), so a field dropped
/// from the manifest is removed by the next apply. Returns whether they
/// were recorded now (false: nothing to record). The write is conditional
/// on the object's resourceVersion; when someone wrote it since it was
/// read (the Deployment controller its status, right after a create or an
/// apply), it is read again and tried again, a few times.
pub(super) async fn fields_as_applied<K>(api: &Api<K>, object: &K) -> kube::Result<bool>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    let name = object.name_any();
    let mut object = object.clone();
    let mut attempts = 0;
    loop {
        let entries = object.meta().managed_fields.as_deref().unwrap_or_default();
        let Some(fields) = manifest::as_applied(entries, FIELD_MANAGER) else {
            return Ok(false);
        };
        let patch = json!({"metadata": {
            "managedFields": fields,
            "resourceVersion": object.resource_version(),
        }});
        attempts += 1;
        match api
            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => return Ok(true),
            Err(kube::Error::Api(s)) if s.code == 409 && attempts < 5 => {
                object = api.get(&name).await?;
            }
            Err(err) => return Err(err),
        }
    }
}

/// Applies `desired` over the operator's object (server-side, forced). An
/// object the operator created holds its fields in the create's update
/// record, which an apply never prunes: the first apply over it folds that
/// record into the apply record and applies again, so a field dropped from
/// the manifest goes. Creating is one request; only the first change
/// after it costs three.
async fn apply_over<K>(api: &Api<K>, name: &str, desired: &K) -> kube::Result<K>
where
    K: Resource + Clone + DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let applied = api.patch(name, &params, &Patch::Apply(desired)).await?;
    if !fields_as_applied(api, &applied).await? {
        return Ok(applied);
    }
    api.patch(name, &params, &Patch::Apply(desired)).await
}

pub(super) fn post_params() -> PostParams {
    PostParams {
        field_manager: Some(FIELD_MANAGER.to_string()),
        ..Default::default()
    }
}

/// Creates the object, or updates it when it is the operator's and differs.
/// Returns whether anything was written. `store` holds what is placed
/// (whole objects, or their metadata only: only labels and annotations are
/// read).
async fn apply_owned<K, M>(
    client: &Client,
    store: &Store<M>,
    region: &str,
    app: &AppKey,
    desired: K,
) -> Result<bool>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Built
        + Clone
        + std::fmt::Debug
        + DeserializeOwned
        + serde::Serialize,
    M: Resource<DynamicType = ()> + Clone + 'static,
{
    let want_hash = manifest::applied_hash(&desired).map(str::to_string);
    let name = desired.name_any();
    let judge = |meta: &ObjectMeta| manifest::found(meta, app, region, want_hash.as_deref());
    let api: Api<K> = Api::namespaced(client.clone(), &app.namespace);
    let cached = store
        .get(&ObjectRef::new(&name).within(&app.namespace))
        .map(|object| judge(Resource::meta(object.as_ref())));
    let found = match cached {
        Some(found @ (Found::Current | Found::Outdated)) => found,
        // Not in the cache: most likely new, so create it at once (one
        // request, not a read and then a create); if it exists after all,
        // read it to see whose it is.
        _ => match create_or_read(&api, region, app, &desired).await? {
            Some(existing) => judge(Resource::meta(&existing)),
            None => return Ok(true),
        },
    };
    match found {
        Found::Current => Ok(false),
        Found::Foreign => Err(Error::Conflict {
            place: region.to_string(),
            kind: K::kind(&()).to_string(),
            name: format!("{}/{name}", app.namespace),
        }),
        Found::Outdated => {
            apply_over(&api, &name, &desired)
                .await
                .map_err(|e| Error::member(region, e))?;
            Ok(true)
        }
    }
}

/// Creates the object; when the name is taken, returns what holds it.
async fn create_or_read<K>(
    api: &Api<K>,
    region: &str,
    app: &AppKey,
    desired: &K,
) -> Result<Option<K>>
where
    K: Resource<DynamicType = ()> + Clone + std::fmt::Debug + DeserializeOwned + serde::Serialize,
{
    let name = desired.name_any();
    match api.create(&post_params(), desired).await {
        // One request: its fields are recorded as applied by the first
        // change (`apply_over`).
        Ok(_) => return Ok(None),
        Err(kube::Error::Api(status)) if status.code == 409 => {}
        Err(err) => return Err(Error::member(region, err)),
    }
    match api
        .get_opt(&name)
        .await
        .map_err(|e| Error::member(region, e))?
    {
        Some(object) => Ok(Some(object)),
        // Deleted between the create and the read: the next reconcile
        // creates it.
        None => Err(Error::Unreachable {
            region: region.to_string(),
            reason: format!(
                "{} {}/{} was deleted while being placed; retrying",
                K::kind(&()),
                app.namespace,
                name
            ),
        }),
    }
}

/// Deletes everything placed for `app` in the member (the workload and
/// copies found by their labels, and `extra`, the objects of
/// `spec.resources` it may have placed), never anything another Region or
/// hub placed there.
pub async fn remove(member: &Member, app: &AppKey, extra: &[ResourceRef]) -> Result<()> {
    let client = member.client()?;
    resources::remove(member, app, extra).await?;
    remove_owned::<Deployment>(member, client, app, false).await?;
    remove_owned::<Service>(member, client, app, false).await?;
    // A region joined before propagation existed may not let the operator
    // list ConfigMaps and Secrets; then it cannot have placed any either.
    remove_owned::<ConfigMap>(member, client, app, true).await?;
    remove_owned::<Secret>(member, client, app, true).await?;
    member.forget(app);
    Ok(())
}

async fn remove_owned<K>(
    member: &Member,
    client: &Client,
    app: &AppKey,
    forbidden_is_none: bool,
) -> Result<()>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + std::fmt::Debug
        + DeserializeOwned,
{
    let region = member.name();
    let api: Api<K> = Api::namespaced(client.clone(), &app.namespace);
    let params = ListParams::default().labels(&manifest::selector(app));
    let listed = match api.list(&params).await {
        Ok(listed) => listed,
        Err(kube::Error::Api(status)) if status.code == 403 && forbidden_is_none => {
            tracing::warn!(region = %region, kind = %K::kind(&()), "not allowed to list; nothing of this kind removed");
            return Ok(());
        }
        Err(err) => return Err(Error::member(region, err)),
    };
    // Objects of spec.resources go by their deletionPolicy
    // (`resources::remove`), whatever their kind.
    let ours = listed
        .into_iter()
        .filter(|o| manifest::owned_by(Some(o.labels()), app, region))
        .filter(|o| !o.labels().contains_key(LABEL_RESOURCE));
    for object in ours {
        match api
            .delete(&object.name_any(), &DeleteParams::background())
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(err) => return Err(Error::member(region, err)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    //! `apply_owned` against a mocked API server: which requests it sends
    //! and what it concludes from the answers.
    use super::*;
    use crate::api::ANNOTATION_APPLIED_HASH;
    use http::{Method, Request, Response};
    use kube::client::Body;
    use kube::runtime::reflector;
    use serde_json::{Value, json};

    type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

    fn app() -> AppKey {
        AppKey {
            hub: "hub-1".into(),
            namespace: "shop".into(),
            name: "checkout".into(),
        }
    }

    fn service(labels: Value, hash: &str) -> Value {
        json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {
                "name": "checkout",
                "namespace": "shop",
                "labels": labels,
                "annotations": {ANNOTATION_APPLIED_HASH: hash},
            },
            "spec": {"ports": [{"port": 80}]},
        })
    }

    fn ours(hash: &str) -> Value {
        service(json!(manifest::labels(&app(), "us-east")), hash)
    }

    fn typed(value: Value) -> Service {
        serde_json::from_value(value).unwrap()
    }

    fn mocked() -> (Client, Handle) {
        let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        (Client::new(service, "default"), handle)
    }

    /// Answers the next request with `status` and `body`; returns its method
    /// and path.
    async fn answer(handle: &mut Handle, status: u16, body: Value) -> (Method, String) {
        let (request, send) = handle.next_request().await.expect("a request");
        let seen = (request.method().clone(), request.uri().path().to_string());
        send.send_response(
            Response::builder()
                .status(status)
                .body(Body::from(serde_json::to_vec(&body).unwrap()))
                .unwrap(),
        );
        seen
    }

    fn already_exists() -> Value {
        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
               "reason": "AlreadyExists", "code": 409, "message": "already exists"})
    }

    fn empty_store() -> Store<Service> {
        reflector::store::<Service>().0
    }

    #[tokio::test]
    async fn a_new_object_is_created_with_one_request() {
        let (client, mut handle) = mocked();
        let store = empty_store();
        let placing = tokio::spawn(async move {
            apply_owned(&client, &store, "us-east", &app(), typed(ours("h1"))).await
        });
        let (method, path) = answer(&mut handle, 201, ours("h1")).await;
        assert_eq!(method, Method::POST);
        assert_eq!(path, "/api/v1/namespaces/shop/services");
        assert!(placing.await.unwrap().unwrap());
    }

    #[tokio::test]
    async fn a_taken_name_is_read_and_left_alone() {
        let (client, mut handle) = mocked();
        let store = empty_store();
        let placing = tokio::spawn(async move {
            apply_owned(&client, &store, "us-east", &app(), typed(ours("h1"))).await
        });
        assert_eq!(
            answer(&mut handle, 409, already_exists()).await.0,
            Method::POST
        );
        let theirs = service(json!({"team": "payments"}), "x");
        let (method, path) = answer(&mut handle, 200, theirs).await;
        assert_eq!(method, Method::GET);
        assert_eq!(path, "/api/v1/namespaces/shop/services/checkout");
        match placing.await.unwrap() {
            Err(err @ Error::Conflict { .. }) => {
                let message = err.to_string();
                assert!(message.contains("not created by multiregion"), "{message}")
            }
            other => panic!("expected a conflict, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn an_existing_own_object_is_applied_only_when_it_differs() {
        // Same hash: read, nothing written.
        let (client, mut handle) = mocked();
        let store = empty_store();
        let placing = tokio::spawn(async move {
            apply_owned(&client, &store, "us-east", &app(), typed(ours("h1"))).await
        });
        answer(&mut handle, 409, already_exists()).await;
        assert_eq!(answer(&mut handle, 200, ours("h1")).await.0, Method::GET);
        assert!(!placing.await.unwrap().unwrap());

        // Other hash: read, then server-side apply.
        let (client, mut handle) = mocked();
        let store = empty_store();
        let placing = tokio::spawn(async move {
            apply_owned(&client, &store, "us-east", &app(), typed(ours("h2"))).await
        });
        answer(&mut handle, 409, already_exists()).await;
        answer(&mut handle, 200, ours("h1")).await;
        let (method, path) = answer(&mut handle, 200, ours("h2")).await;
        assert_eq!(method, Method::PATCH);
        assert_eq!(path, "/api/v1/namespaces/shop/services/checkout");
        assert!(placing.await.unwrap().unwrap());
    }

    #[tokio::test]
    async fn the_first_change_after_a_create_folds_the_create_into_the_apply() {
        let (client, mut handle) = mocked();
        let (store, mut writer) = reflector::store::<Service>();
        let cached: Service = serde_json::from_value(ours("h1")).unwrap();
        writer.apply_watcher_event(&kube::runtime::watcher::Event::Apply(cached));
        let placing = tokio::spawn(async move {
            apply_owned(&client, &store, "us-east", &app(), typed(ours("h2"))).await
        });
        let mut created = ours("h2");
        created["metadata"]["resourceVersion"] = json!("7");
        created["metadata"]["managedFields"] = json!([
            {"manager": FIELD_MANAGER, "operation": "Apply", "fieldsV1": {"f:spec": {}}},
            {"manager": FIELD_MANAGER, "operation": "Update", "fieldsV1": {"f:metadata": {}}},
        ]);
        let path = "/api/v1/namespaces/shop/services/checkout";
        let apply = answer(&mut handle, 200, created).await;
        assert_eq!(apply, (Method::PATCH, path.to_string()));
        let (request, send) = handle.next_request().await.expect("the fold");
        let content_type = request.headers()[http::header::CONTENT_TYPE].clone();
        assert_eq!(content_type, "application/merge-patch+json");
        let body = request.into_body().collect_bytes().await.unwrap();
        let fold: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(fold["metadata"]["resourceVersion"], "7");
        assert_eq!(
            fold["metadata"]["managedFields"],
            json!([{"manager": FIELD_MANAGER, "operation": "Apply",
                    "fieldsV1": {"f:spec": {}, "f:metadata": {}}}])
        );
        send.send_response(
            Response::builder()
                .body(Body::from(serde_json::to_vec(&ours("h2")).unwrap()))
                .unwrap(),
        );
        let again = answer(&mut handle, 200, ours("h2")).await;
        assert_eq!(again, (Method::PATCH, path.to_string()), "applied again");
        assert!(placing.await.unwrap().unwrap());
    }

    #[tokio::test]
    async fn a_fold_that_did_not_follow_its_apply_is_done_at_the_next_reconcile() {
        // The hash is current, but the cache shows the create's update
        // record beside an apply record: the fold after that apply failed.
        let (client, mut handle) = mocked();
        let (store, mut writer) = reflector::store::<Service>();
        let mut unfolded = ours("h2");
        unfolded["metadata"]["managedFields"] = json!([
            {"manager": FIELD_MANAGER, "operation": "Apply"},
            {"manager": FIELD_MANAGER, "operation": "Update"},
        ]);
        let cached: Service = serde_json::from_value(unfolded.clone()).unwrap();
        writer.apply_watcher_event(&kube::runtime::watcher::Event::Apply(cached));
        let placing = tokio::spawn(async move {
            apply_owned(&client, &store, "us-east", &app(), typed(ours("h2"))).await
        });
        unfolded["metadata"]["managedFields"] = json!([
            {"manager": FIELD_MANAGER, "operation": "Apply", "fieldsV1": {"f:spec": {}}},
            {"manager": FIELD_MANAGER, "operation": "Update", "fieldsV1": {"f:metadata": {}}},
        ]);
        let path = "/api/v1/namespaces/shop/services/checkout".to_string();
        assert_eq!(
            answer(&mut handle, 200, unfolded).await,
            (Method::PATCH, path.clone())
        );
        assert_eq!(
            answer(&mut handle, 200, ours("h2")).await,
            (Method::PATCH, path.clone())
        );
        assert_eq!(
            answer(&mut handle, 200, ours("h2")).await,
            (Method::PATCH, path)
        );
        assert!(placing.await.unwrap().unwrap());
    }

    #[tokio::test]
    async fn a_cached_own_object_with_the_same_hash_sends_nothing() {
        let (client, mut handle) = mocked();
        let (store, mut writer) = reflector::store::<Service>();
        let cached: Service = serde_json::from_value(ours("h1")).unwrap();
        writer.apply_watcher_event(&kube::runtime::watcher::Event::Apply(cached));
        let placed = apply_owned(&client, &store, "us-east", &app(), typed(ours("h1"))).await;
        assert!(!placed.unwrap());
        // Dropping the client closes the mock: no request was ever sent.
        drop(client);
        assert!(handle.next_request().await.is_none());
    }
}
