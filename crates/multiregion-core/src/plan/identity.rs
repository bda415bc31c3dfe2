//! The operator's identity in a member cluster, as `join` confines it: a
//! ServiceAccount that reads what it places everywhere but writes only in
//! namespaces where the operator bound its writer role to it.

use std::collections::BTreeMap;

use k8s_openapi::api::rbac::v1::{RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::api::LABEL_MANAGED_BY;

/// Where the operator's identities live, in each member.
pub const MEMBER_NAMESPACE: &str = "multiregion-system";

/// The ClusterRole holding the identity's write verbs, bound only inside
/// the namespaces it may write.
pub fn writer_name(identity: &str) -> String {
    format!("{identity}-writer")
}

/// The identity as a RoleBinding subject.
pub fn subject(identity: &str) -> Subject {
    Subject {
        kind: "ServiceAccount".to_string(),
        name: identity.to_string(),
        namespace: Some(MEMBER_NAMESPACE.to_string()),
        ..Subject::default()
    }
}

/// The binding of the writer role in one namespace, as the operator makes
/// it in each namespace it uses (the member's admission policy accepts
/// exactly this, and only in namespaces labelled as the operator's).
pub fn namespace_binding(identity: &str, namespace: &str) -> RoleBinding {
    RoleBinding {
        metadata: ObjectMeta {
            name: Some(identity.to_string()),
            namespace: Some(namespace.to_string()),
            labels: Some(BTreeMap::from([(
                LABEL_MANAGED_BY.to_string(),
                "multiregion".to_string(),
            )])),
            ..ObjectMeta::default()
        },
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".to_string(),
            kind: "ClusterRole".to_string(),
            name: writer_name(identity),
        },
        subjects: Some(vec![subject(identity)]),
    }
}
