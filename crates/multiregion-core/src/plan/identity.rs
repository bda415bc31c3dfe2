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

/// A token issued at `issued` and expiring at `expires` (Unix seconds) is
/// renewed once two thirds of its life have passed, or once it expires
/// within `within` seconds, whichever comes first (kubelet renews projected
/// tokens at 80 %; two thirds leave room for a hub outage).
pub fn renewal_due(issued: i64, expires: i64, now: i64, within: i64) -> bool {
    let two_thirds = issued + (expires - issued) * 2 / 3;
    now >= two_thirds || expires - now <= within
}

/// The longest the operator goes without reading a token's lifetime again:
/// short enough that a token replaced by a shorter-lived one (10 minutes,
/// renewed at 6 min 40 s) is still renewed in time.
pub const LONGEST_CHECK_GAP: i64 = 120;

/// When to read the token's lifetime again (Unix seconds): when
/// `renewal_due` turns true, but no later than `LONGEST_CHECK_GAP` from
/// `now`.
pub fn next_check(issued: i64, expires: i64, now: i64, within: i64) -> i64 {
    let two_thirds = issued + (expires - issued) * 2 / 3;
    two_thirds
        .min(expires - within)
        .min(now + LONGEST_CHECK_GAP)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_renewed_after_two_thirds_of_its_life_or_within_the_margin() {
        let (issued, expires) = (0, 86_400);
        assert!(!renewal_due(issued, expires, 3_600, 0));
        assert!(!renewal_due(issued, expires, 57_599, 0));
        assert!(renewal_due(issued, expires, 57_600, 0));
        assert!(
            renewal_due(issued, expires, 90_000, 0),
            "expired: renewed at once"
        );
        assert!(renewal_due(0, 600, 10, 595), "within the margin");
        assert!(!renewal_due(0, 600, 4, 595));
    }

    #[test]
    fn the_lifetime_is_read_again_when_renewal_is_due_or_after_two_minutes() {
        // (issued, expires, now, within, next check)
        let table = [
            (0, 86_400, 3_600, 0, 3_720),    // a day's token: every 2 minutes
            (0, 86_400, 57_550, 0, 57_600),  // due before the gap ends
            (0, 600, 10, 595, 5),            // within the margin: at once
            (1_000, 1_600, 1_001, 0, 1_121), // ten minutes: the gap first
        ];
        for (issued, expires, now, within, want) in table {
            assert_eq!(
                next_check(issued, expires, now, within),
                want,
                "{issued} {expires} {now}"
            );
            assert!(!renewal_due(issued, expires, want - 1, within) || want <= now);
        }
    }

    #[test]
    fn the_namespace_binding_binds_the_writer_to_the_identity_alone() {
        let binding = namespace_binding("multiregion-eu-hub", "shop");
        assert_eq!(binding.role_ref.name, "multiregion-eu-hub-writer");
        assert_eq!(binding.metadata.namespace.as_deref(), Some("shop"));
        assert_eq!(binding.subjects, Some(vec![subject("multiregion-eu-hub")]));
    }
}
