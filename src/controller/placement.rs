//! Writing and removing the app's objects in one member cluster.
//!
//! Objects are created with a plain create (which fails if the name is
//! taken) and updated with server-side apply only when the watched copy is
//! the operator's and its applied-hash differs. A same-named object the
//! operator did not create is never adopted or overwritten.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Service};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::api::{FIELD_MANAGER, MultiRegionAppSpec};
use crate::plan::Placement;
use crate::plan::manifest::{self, AppKey, Found};
use crate::regions::Member;

/// Why placing failed in one region.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlaceError {
    /// A same-named object exists that the operator did not create.
    Conflict(String),
    /// The member API server refused the object; its message.
    Refused(String),
    /// The member could not be reached; try again later.
    Unreachable(String),
}

/// Places (or updates) the Namespace, Deployment and Service of `app` in
/// `member`, and records conflicts and refusals on the member for the next
/// round to see.
pub async fn place(
    member: &Member,
    app: &AppKey,
    spec: &MultiRegionAppSpec,
    placement: &Placement,
) -> Result<bool, PlaceError> {
    let Some(client) = &member.client else {
        return Err(PlaceError::Unreachable("no usable credentials".into()));
    };
    let result = place_objects(member, client, app, spec, placement).await;
    let record = |map: &std::sync::Mutex<std::collections::HashMap<AppKey, String>>,
                  value: Option<&String>| {
        if let Ok(mut map) = map.lock() {
            match value {
                Some(v) => {
                    map.insert(app.clone(), v.clone());
                }
                None => {
                    map.remove(app);
                }
            }
        }
    };
    match &result {
        Ok(_) => {
            record(&member.conflicts, None);
            record(&member.refused, None);
        }
        Err(PlaceError::Conflict(msg)) => record(&member.conflicts, Some(msg)),
        Err(PlaceError::Refused(msg)) => record(&member.refused, Some(msg)),
        Err(PlaceError::Unreachable(_)) => {}
    }
    result
}

async fn place_objects(
    member: &Member,
    client: &Client,
    app: &AppKey,
    spec: &MultiRegionAppSpec,
    placement: &Placement,
) -> Result<bool, PlaceError> {
    ensure_namespace(member, client, &app.namespace).await?;
    let mut wrote = false;
    let deployment = manifest::deployment(app, spec, placement);
    if let Some(store) = &member.deployments {
        wrote |= apply_owned::<Deployment>(client, store, app, "Deployment", deployment).await?;
    }
    if let Some(store) = &member.services {
        match manifest::service(app, spec, &placement.region) {
            Some(service) => {
                wrote |= apply_owned::<Service>(client, store, app, "Service", service).await?
            }
            None => {
                // The spec no longer asks for a Service: remove ours, if any.
                let key = ObjectRef::new(&app.name).within(&app.namespace);
                if store
                    .get(&key)
                    .is_some_and(|s| manifest::owned_by(Some(s.labels()), app))
                {
                    let api: Api<Service> = Api::namespaced(client.clone(), &app.namespace);
                    api.delete(&app.name, &DeleteParams::default())
                        .await
                        .map_err(classify)?;
                    wrote = true;
                }
            }
        }
    }
    Ok(wrote)
}

async fn ensure_namespace(member: &Member, client: &Client, name: &str) -> Result<(), PlaceError> {
    if member.namespaces.lock().is_ok_and(|n| n.contains(name)) {
        return Ok(());
    }
    let api: Api<Namespace> = Api::all(client.clone());
    if api.get_opt(name).await.map_err(classify)?.is_none() {
        let ns: Namespace = serde_json::from_value(manifest::namespace(name))
            .map_err(|e| PlaceError::Refused(e.to_string()))?;
        match api.create(&post_params(), &ns).await {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 409 => {}
            Err(err) => return Err(classify(err)),
        }
    }
    if let Ok(mut known) = member.namespaces.lock() {
        known.insert(name.to_string());
    }
    Ok(())
}

fn post_params() -> PostParams {
    PostParams {
        field_manager: Some(FIELD_MANAGER.to_string()),
        ..Default::default()
    }
}

/// Creates the object, or updates it when it is the operator's and differs.
/// Returns whether anything was written.
async fn apply_owned<K>(
    client: &Client,
    store: &Store<K>,
    app: &AppKey,
    kind: &str,
    desired: Value,
) -> Result<bool, PlaceError>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + std::fmt::Debug
        + DeserializeOwned
        + serde::Serialize,
{
    let want_hash = manifest::applied_hash(&desired).map(str::to_string);
    let judge = |object: &K| {
        manifest::found(
            object.labels(),
            object.annotations(),
            app,
            want_hash.as_deref(),
        )
    };
    let api: Api<K> = Api::namespaced(client.clone(), &app.namespace);
    let cached = store
        .get(&ObjectRef::new(&app.name).within(&app.namespace))
        .map(|object| judge(&object));
    let found = match cached {
        Some(found @ (Found::Current | Found::Outdated)) => found,
        // Not in the cache: most likely new, so create it at once (one
        // request, not a read and then a create); if it exists after all,
        // read it to see whose it is.
        _ => {
            let object: K = serde_json::from_value(desired.clone())
                .map_err(|e| PlaceError::Refused(e.to_string()))?;
            match api.create(&post_params(), &object).await {
                Ok(_) => return Ok(true),
                Err(kube::Error::Api(status)) if status.code == 409 => {}
                Err(err) => return Err(classify(err)),
            }
            match api.get_opt(&app.name).await.map_err(classify)? {
                Some(object) => judge(&object),
                // Deleted between the create and the read: the next
                // reconcile creates it.
                None => {
                    return Err(PlaceError::Unreachable(format!(
                        "{kind} {}/{} was deleted while being placed; retrying",
                        app.namespace, app.name
                    )));
                }
            }
        }
    };
    match found {
        Found::Current => return Ok(false),
        Found::Foreign => {
            return Err(PlaceError::Conflict(format!(
                "{kind} {}/{} exists and was not created by multiregion; it is left alone",
                app.namespace, app.name
            )));
        }
        Found::Outdated => {}
    }
    api.patch(
        &app.name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&desired),
    )
    .await
    .map_err(classify)?;
    Ok(true)
}

/// Deletes everything placed for `app` in the member, found by its labels.
pub async fn remove(member: &Member, app: &AppKey) -> Result<(), PlaceError> {
    let Some(client) = &member.client else {
        return Err(PlaceError::Unreachable("no usable credentials".into()));
    };
    let selector = manifest::selector(app);
    let params = ListParams::default().labels(&selector);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &app.namespace);
    deployments
        .delete_collection(&DeleteParams::background(), &params)
        .await
        .map_err(classify)?;
    let services: Api<Service> = Api::namespaced(client.clone(), &app.namespace);
    // Services have no deletecollection verb: delete one by one.
    for service in services.list(&params).await.map_err(classify)? {
        match services
            .delete(&service.name_any(), &DeleteParams::default())
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(err) => return Err(classify(err)),
        }
    }
    for map in [&member.conflicts, &member.refused] {
        if let Ok(mut map) = map.lock() {
            map.remove(app);
        }
    }
    Ok(())
}

/// API errors are the member's answer (refused); anything else means it
/// could not be reached.
fn classify(err: kube::Error) -> PlaceError {
    match err {
        kube::Error::Api(status) => {
            PlaceError::Refused(format!("{} ({})", status.message, status.reason))
        }
        other => PlaceError::Unreachable(other.to_string()),
    }
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
    use serde_json::json;

    type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

    fn app() -> AppKey {
        AppKey {
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
            apply_owned(&client, &store, &app(), "Service", ours("h1")).await
        });
        let (method, path) = answer(&mut handle, 201, ours("h1")).await;
        assert_eq!(method, Method::POST);
        assert_eq!(path, "/api/v1/namespaces/shop/services");
        assert_eq!(placing.await.unwrap(), Ok(true));
    }

    #[tokio::test]
    async fn a_taken_name_is_read_and_left_alone() {
        let (client, mut handle) = mocked();
        let store = empty_store();
        let placing = tokio::spawn(async move {
            apply_owned(&client, &store, &app(), "Service", ours("h1")).await
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
            Err(PlaceError::Conflict(message)) => {
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
            apply_owned(&client, &store, &app(), "Service", ours("h1")).await
        });
        answer(&mut handle, 409, already_exists()).await;
        assert_eq!(answer(&mut handle, 200, ours("h1")).await.0, Method::GET);
        assert_eq!(placing.await.unwrap(), Ok(false));

        // Other hash: read, then server-side apply.
        let (client, mut handle) = mocked();
        let store = empty_store();
        let placing = tokio::spawn(async move {
            apply_owned(&client, &store, &app(), "Service", ours("h2")).await
        });
        answer(&mut handle, 409, already_exists()).await;
        answer(&mut handle, 200, ours("h1")).await;
        let (method, path) = answer(&mut handle, 200, ours("h2")).await;
        assert_eq!(method, Method::PATCH);
        assert_eq!(path, "/api/v1/namespaces/shop/services/checkout");
        assert_eq!(placing.await.unwrap(), Ok(true));
    }

    #[tokio::test]
    async fn a_cached_own_object_with_the_same_hash_sends_nothing() {
        let (client, mut handle) = mocked();
        let (store, mut writer) = reflector::store::<Service>();
        let cached: Service = serde_json::from_value(ours("h1")).unwrap();
        writer.apply_watcher_event(&kube::runtime::watcher::Event::Apply(cached));
        let placed = apply_owned(&client, &store, &app(), "Service", ours("h1")).await;
        assert_eq!(placed, Ok(false));
        // Dropping the client closes the mock: no request was ever sent.
        drop(client);
        assert!(handle.next_request().await.is_none());
    }
}
