//! What `join --allow-resource` may grant: one namespaced kind the member
//! serves, named as kubectl names it, resolved through the member's
//! discovery. Wildcards, subresources, cluster-scoped kinds, RBAC and a
//! few kinds that amount to running anything or reading credentials (Pods,
//! Jobs, CronJobs, Secrets: `--allow-secrets` is the one way to Secrets,
//! and ServiceAccount tokens are a subresource) are refused: a tenant's
//! `spec.resources` could otherwise reach them in every region.

use anyhow::{Result, bail};
use kube::Client;
use kube::discovery::{Discovery, Scope};

/// API groups never granted: RBAC, and admission, which would let an
/// object in one namespace change what every namespace may do.
const REFUSED_GROUPS: [&str; 2] = ["rbac.authorization.k8s.io", "admissionregistration.k8s.io"];

/// Kinds never granted, as `plural.group` (`plural` for the core group).
const REFUSED_KINDS: [&str; 4] = ["pods", "jobs.batch", "cronjobs.batch", "secrets"];

/// Why `wanted` cannot be granted before it is looked up, if it cannot.
pub fn refused_by_form(wanted: &str) -> Option<String> {
    if wanted.contains('*') {
        return Some("wildcards are not granted: name one kind".into());
    }
    if wanted.contains('/') {
        return Some("subresources are not granted".into());
    }
    if wanted.is_empty() || wanted.starts_with('.') {
        return Some("name a resource as RESOURCE[.GROUP]".into());
    }
    None
}

/// `wanted` checked without a cluster (`member-rbac`): its form and the
/// refused groups and kinds; it must be `plural[.group]` as discovery
/// names it, since nothing can be looked up.
pub fn offline(wanted: &str) -> Result<String> {
    if let Some(why) = refused_by_form(wanted) {
        bail!("--allow-resource {wanted}: {why}");
    }
    let lower = wanted.to_ascii_lowercase();
    let group = lower.split_once('.').map_or("", |(_, g)| g);
    if REFUSED_GROUPS.contains(&group) || REFUSED_KINDS.contains(&lower.as_str()) {
        bail!(
            "--allow-resource {wanted}: never granted (it would let an app run or authorize anything in the region)"
        );
    }
    Ok(lower)
}

/// One kind a member serves, as discovery names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Served {
    pub plural: String,
    pub singular: String,
    pub kind: String,
    pub group: String,
    pub namespaced: bool,
}

impl Served {
    /// `plural.group`, or `plural` in the core group: what the rule grants.
    pub fn name(&self) -> String {
        match self.group.as_str() {
            "" => self.plural.clone(),
            group => format!("{}.{group}", self.plural),
        }
    }

    /// Whether `wanted` (`RESOURCE[.GROUP]`, the resource as plural,
    /// singular or kind, any case) names this kind.
    fn named_by(&self, wanted: &str) -> bool {
        let wanted = wanted.to_ascii_lowercase();
        let (resource, group) = wanted.split_once('.').unwrap_or((&wanted, ""));
        let names = [
            &self.plural,
            &self.singular,
            &self.kind.to_ascii_lowercase(),
        ];
        names.iter().any(|n| n.as_str() == resource) && (group.is_empty() || group == self.group)
    }
}

/// The kind `wanted` names among `served`, or why it cannot be granted.
pub fn resolve(wanted: &str, served: &[Served]) -> Result<Served> {
    if let Some(why) = refused_by_form(wanted) {
        bail!("--allow-resource {wanted}: {why}");
    }
    let matches: Vec<&Served> = served.iter().filter(|s| s.named_by(wanted)).collect();
    let found = match matches.as_slice() {
        [] => bail!(
            "--allow-resource {wanted}: the member serves no such resource (name it as `kubectl api-resources` lists it, e.g. horizontalpodautoscalers.autoscaling)"
        ),
        [one] => *one,
        many => {
            let names: Vec<String> = many.iter().map(|s| s.name()).collect();
            bail!(
                "--allow-resource {wanted}: several resources match ({}); add the group",
                names.join(", ")
            )
        }
    };
    if !found.namespaced {
        bail!(
            "--allow-resource {wanted}: {} is cluster-scoped; only namespaced kinds are granted",
            found.name()
        );
    }
    if REFUSED_GROUPS.contains(&found.group.as_str())
        || REFUSED_KINDS.contains(&found.name().as_str())
    {
        bail!(
            "--allow-resource {wanted}: {} is never granted (it would let an app run or authorize anything in the region)",
            found.name()
        );
    }
    Ok(found.clone())
}

/// Every kind the member serves (its preferred version of each group).
pub async fn served(member: &Client) -> Result<Vec<Served>> {
    let discovery = Discovery::new(member.clone()).run().await?;
    let mut served = Vec::new();
    for group in discovery.groups() {
        for (resource, capabilities) in group.recommended_resources() {
            served.push(Served {
                singular: resource.kind.to_ascii_lowercase(),
                plural: resource.plural.clone(),
                kind: resource.kind.clone(),
                group: resource.group.clone(),
                namespaced: capabilities.scope == Scope::Namespaced,
            });
        }
    }
    Ok(served)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(plural: &str, kind: &str, group: &str, namespaced: bool) -> Served {
        Served {
            plural: plural.into(),
            singular: kind.to_ascii_lowercase(),
            kind: kind.into(),
            group: group.into(),
            namespaced,
        }
    }

    fn served() -> Vec<Served> {
        vec![
            kind(
                "horizontalpodautoscalers",
                "HorizontalPodAutoscaler",
                "autoscaling",
                true,
            ),
            kind(
                "poddisruptionbudgets",
                "PodDisruptionBudget",
                "policy",
                true,
            ),
            kind("nodes", "Node", "", false),
            kind(
                "rolebindings",
                "RoleBinding",
                "rbac.authorization.k8s.io",
                true,
            ),
            kind("pods", "Pod", "", true),
            kind("jobs", "Job", "batch", true),
            kind("events", "Event", "", true),
            kind("events", "Event", "events.k8s.io", true),
        ]
    }

    #[test]
    fn a_namespaced_kind_is_granted_by_its_full_name() {
        for wanted in [
            "horizontalpodautoscalers.autoscaling",
            "horizontalpodautoscalers",
            "HorizontalPodAutoscaler",
            "poddisruptionbudget.policy",
        ] {
            let found = resolve(wanted, &served()).unwrap();
            assert!(found.namespaced, "{wanted}");
        }
        assert_eq!(
            resolve("hpa", &served()).unwrap_err().to_string(),
            "--allow-resource hpa: the member serves no such resource (name it as `kubectl api-resources` lists it, e.g. horizontalpodautoscalers.autoscaling)"
        );
    }

    #[test]
    fn what_would_hand_over_the_region_is_refused_naming_why() {
        let table = [
            ("*", "wildcards"),
            ("pods/exec", "subresources"),
            ("serviceaccounts/token", "subresources"),
            ("nodes", "cluster-scoped"),
            ("rolebindings.rbac.authorization.k8s.io", "never granted"),
            ("rolebindings", "never granted"),
            ("pods", "never granted"),
            ("jobs.batch", "never granted"),
            ("events", "several resources match"),
        ];
        for (wanted, why) in table {
            let err = resolve(wanted, &served()).unwrap_err().to_string();
            assert!(err.contains(why), "{wanted}: {err}");
        }
        assert!(resolve("events.events.k8s.io", &served()).is_ok());
    }

    #[test]
    fn without_a_cluster_only_the_form_and_the_refused_kinds_are_checked() {
        assert_eq!(
            offline("PodDisruptionBudgets.policy").unwrap(),
            "poddisruptionbudgets.policy"
        );
        for wanted in [
            "*",
            "pods/log",
            "roles.rbac.authorization.k8s.io",
            "pods",
            "jobs.batch",
        ] {
            assert!(offline(wanted).is_err(), "{wanted}");
        }
    }
}
