//! What a tenant (whoever may create a MultiRegionApp in one hub namespace)
//! may place, checked before anything of an app is placed: the Regions its
//! namespace may use, the Pod Security level of each, the kinds
//! `spec.resources` may hold and where its own endpoints may point. A
//! refusal names the field; the app is then `NotAllowed` and runs on as it
//! last could be placed.

use std::collections::BTreeMap;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use serde_json::Value;

use super::manifest::{self, AppKey};
use super::pod_security;
use super::resources;
use super::traffic;
use crate::api::{AppEndpoints, MultiRegionAppSpec, PodSecurityLevel, RegionSpec, Role};
use crate::plan::Placement;

/// Why an app may not be placed; names the field.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct NotAllowed(pub String);

/// The app's hub namespace as the checks need it.
pub struct Tenant<'a> {
    pub namespace: &'a str,
    /// The hub Namespace's labels.
    pub labels: &'a BTreeMap<String, String>,
    /// The operator's own namespace, where the member credentials live.
    pub operator_namespace: &'a str,
    /// The domains the hub admin allows this namespace's traffic sinks
    /// (the Namespace's `multiregion.io/allowed-domains`); None: any.
    pub allowed_domains: Option<&'a [String]>,
    /// The kinds the hub admin allows this namespace's `spec.resources`
    /// (the Namespace's `multiregion.io/allowed-kinds`); None: any kind
    /// outside the denylist.
    pub allowed_kinds: Option<&'a [String]>,
}

/// Checks everything a tenant asks for, region by region. `regions` holds
/// the Regions known (a region not there is reported elsewhere);
/// `template` is the pod template as placed (with its checksum).
pub fn admit(
    app: &AppKey,
    spec: &MultiRegionAppSpec,
    template: &PodTemplateSpec,
    regions: &BTreeMap<String, RegionSpec>,
    tenant: &Tenant,
) -> Result<(), NotAllowed> {
    reserved(tenant)?;
    if let Some(domains) = tenant.allowed_domains {
        sink_names(spec, domains)?;
    }
    for (i, manifest) in spec.resources.iter().enumerate() {
        placeable_kind(manifest, &format!("spec.resources[{i}]"), tenant)?;
    }
    for (i, entry) in spec.regions.iter().enumerate() {
        let Some(region) = regions.get(&entry.name) else {
            continue;
        };
        let field = format!("spec.regions[{i}]");
        uses(&entry.name, region, tenant, &field)?;
        if let Some(endpoint) = &entry.endpoint {
            app_endpoint(&entry.name, region, endpoint, &format!("{field}.endpoint"))?;
        }
        pods(app, spec, template, i, region.pod_security, tenant)?;
    }
    Ok(())
}

/// A hub Namespace's comma-separated list annotation
/// (`multiregion.io/allowed-domains`, `multiregion.io/allowed-kinds`) as
/// a list: entries trimmed, empty ones dropped (so an empty value is an
/// empty list, which allows nothing).
pub fn list_annotation(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .map(str::to_string)
        .collect()
}

/// Apps never live in the cluster's own namespaces nor in the operator's
/// (whose Secrets are the member credentials, and whose name is the
/// member identity's namespace in every region).
fn reserved(tenant: &Tenant) -> Result<(), NotAllowed> {
    let ns = tenant.namespace;
    let member_identities = ns == super::identity::MEMBER_NAMESPACE;
    if ns.starts_with("kube-") || ns == tenant.operator_namespace || member_identities {
        return Err(NotAllowed(format!(
            "metadata.namespace: apps may not live in {ns}: it is the cluster's or the operator's own namespace"
        )));
    }
    Ok(())
}

/// The names the traffic sinks publish stay inside the namespace's
/// domains: the HTTPRoute names its hosts (else it would catch every host
/// on the listener), each inside them, and so does the DNS record.
fn sink_names(spec: &MultiRegionAppSpec, domains: &[String]) -> Result<(), NotAllowed> {
    let Some(traffic) = &spec.traffic else {
        return Ok(());
    };
    let listed = domains.join(", ");
    let outside = |field: String, name: &str| {
        NotAllowed(format!(
            "{field}: {name} is outside the domains this namespace may use ({listed}; the Namespace's multiregion.io/allowed-domains)"
        ))
    };
    if let Some(route) = &traffic.http_route {
        if route.hostnames.is_empty() {
            return Err(NotAllowed(format!(
                "spec.traffic.httpRoute.hostnames: name the hosts the route answers for, inside {listed} (without them it catches every host on the Gateway)"
            )));
        }
        for (i, host) in route.hostnames.iter().enumerate() {
            let name = host.strip_prefix("*.").unwrap_or(host);
            if !within(name, domains) {
                return Err(outside(
                    format!("spec.traffic.httpRoute.hostnames[{i}]"),
                    host,
                ));
            }
        }
    }
    match &traffic.dns_endpoint {
        Some(dns) if !within(&dns.dns_name, domains) => Err(outside(
            "spec.traffic.dnsEndpoint.dnsName".into(),
            &dns.dns_name,
        )),
        _ => Ok(()),
    }
}

/// `name` is one of `domains` or under one (case and a final dot aside).
fn within(name: &str, domains: &[String]) -> bool {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    domains.iter().any(|d| {
        let d = d.trim().trim_end_matches('.').to_ascii_lowercase();
        !d.is_empty() && (name == d || name.ends_with(&format!(".{d}")))
    })
}

/// The Region admits apps of the tenant's namespace.
fn uses(name: &str, region: &RegionSpec, tenant: &Tenant, field: &str) -> Result<(), NotAllowed> {
    let allowed = region
        .allowed_namespaces
        .as_ref()
        .is_some_and(|selector| selects(selector, tenant.labels));
    if allowed {
        return Ok(());
    }
    Err(NotAllowed(format!(
        "{field}.name: Region {name} does not allow apps of namespace {} (its spec.allowedNamespaces)",
        tenant.namespace
    )))
}

/// A Kubernetes label selector matched against labels: every matchLabels
/// entry and every matchExpressions requirement holds. An empty selector
/// selects everything.
pub fn selects(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let by_value = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    by_value
        && selector.match_expressions.iter().flatten().all(|e| {
            let value = labels.get(&e.key);
            let listed = |v: &String| e.values.iter().flatten().any(|w| w == v);
            match e.operator.as_str() {
                "In" => value.is_some_and(listed),
                "NotIn" => !value.is_some_and(listed),
                "Exists" => value.is_some(),
                "DoesNotExist" => value.is_none(),
                _ => false,
            }
        })
}

/// API groups no tenant places: RBAC and credentials, admission and CRDs,
/// other GitOps controllers and this operator's own kinds.
const DENIED_GROUPS: [&str; 9] = [
    "rbac.authorization.k8s.io",
    "admissionregistration.k8s.io",
    "apiextensions.k8s.io",
    "certificates.k8s.io",
    "authentication.k8s.io",
    "authorization.k8s.io",
    "argoproj.io",
    "multiregion.io",
    "discovery.k8s.io",
];

/// Kinds no tenant places, by (group, kind): what runs outside the
/// Deployment's rules, or points a Service anywhere.
const DENIED_KINDS: [(&str, &str); 4] = [
    ("", "Pod"),
    ("", "Endpoints"),
    ("batch", "Job"),
    ("batch", "CronJob"),
];

/// A manifest of `spec.resources` is of a kind the tenant may place: not
/// on the built-in denylist, and among the namespace's allowed kinds when
/// the admin listed them.
fn placeable_kind(manifest: &Value, field: &str, tenant: &Tenant) -> Result<(), NotAllowed> {
    denied_kind(manifest, field)?;
    let (Some(allowed), Some(reference)) = (tenant.allowed_kinds, resources::reference(manifest))
    else {
        return Ok(());
    };
    let group = api_group(&reference.api_version);
    if allowed
        .iter()
        .any(|entry| names_kind(entry, group, &reference.kind))
    {
        return Ok(());
    }
    let listed = allowed.join(", ");
    Err(NotAllowed(format!(
        "{field}.kind: {} ({}) is not among the kinds namespace {} may place ({listed}; the Namespace's multiregion.io/allowed-kinds)",
        reference.kind, reference.api_version, tenant.namespace
    )))
}

/// The group of an apiVersion: empty for the core group (`v1`).
fn api_group(api_version: &str) -> &str {
    api_version
        .rsplit_once('/')
        .map(|(group, _)| group)
        .unwrap_or_default()
}

/// An entry of an allowed-kinds list (`Kind` for the core group, else
/// `Kind.group`; case aside) names this kind.
fn names_kind(entry: &str, group: &str, kind: &str) -> bool {
    let (listed_kind, listed_group) = entry.trim().split_once('.').unwrap_or((entry.trim(), ""));
    listed_kind.eq_ignore_ascii_case(kind) && listed_group.eq_ignore_ascii_case(group)
}

/// The built-in denylist of `spec.resources`, and the pod templates the
/// other kinds carry are checked by region (`pods`).
fn denied_kind(manifest: &Value, field: &str) -> Result<(), NotAllowed> {
    let Some(reference) = resources::reference(manifest) else {
        return Ok(()); // refused by resources::check, naming the field
    };
    let group = api_group(&reference.api_version);
    let kind = reference.kind.as_str();
    let flux = group.ends_with(".toolkit.fluxcd.io");
    if flux || DENIED_GROUPS.contains(&group) || DENIED_KINDS.contains(&(group, kind)) {
        return Err(NotAllowed(format!(
            "{field}.kind: {kind} ({}) may not be placed through spec.resources",
            reference.api_version
        )));
    }
    let token =
        manifest.get("type").and_then(Value::as_str) == Some("kubernetes.io/service-account-token");
    if group.is_empty() && kind == "Secret" && token {
        return Err(NotAllowed(format!(
            "{field}.type: Secrets of type kubernetes.io/service-account-token may not be placed"
        )));
    }
    if group.is_empty() && kind == "Service" && manifest.pointer("/spec/externalIPs").is_some() {
        return Err(NotAllowed(format!(
            "{field}.spec.externalIPs: Services with externalIPs may not be placed"
        )));
    }
    Ok(())
}

/// Every pod template region `index` gets (its Deployment, overrides
/// applied, and each manifest of `spec.resources` that carries one) passes
/// the region's Pod Security level.
fn pods(
    app: &AppKey,
    spec: &MultiRegionAppSpec,
    template: &PodTemplateSpec,
    index: usize,
    level: PodSecurityLevel,
    tenant: &Tenant,
) -> Result<(), NotAllowed> {
    let entry = &spec.regions[index];
    let refuse = |field: &str, why: String| {
        NotAllowed(format!(
            "{why} (region {} enforces Pod Security level {}; {field})",
            entry.name,
            level.label()
        ))
    };
    let overrides_field = format!("spec.regions[{index}].overrides");
    let placement = Placement {
        region: entry.name.clone(),
        replicas: 1,
        role: Role::Active,
        touch: true,
        scale_down: false,
        self_fence: None,
    };
    let deployment = manifest::deployment_for(
        app,
        template,
        &placement,
        entry.overrides.as_ref(),
        &overrides_field,
    )
    .ok()
    .and_then(|d| serde_json::to_value(d).ok());
    if let Some(pod) = deployment
        .as_ref()
        .and_then(|d| d.pointer("/spec/template"))
    {
        let field = "spec.workload.template";
        if let Some(why) = pod_security::violation(level, pod, field) {
            let origin = if entry.overrides.is_some() {
                format!("with {overrides_field}")
            } else {
                "as placed".to_string()
            };
            return Err(refuse(&origin, why));
        }
    }
    let built = resources::for_region(app, spec, &entry.name, &[]).unwrap_or_default();
    for object in built {
        // As the region gets it: its overrides may have made it one the
        // denylist refuses, or the namespace may not place.
        placeable_kind(&object.object, &object.field, tenant).map_err(|e| {
            NotAllowed(format!(
                "{} (with {overrides_field} for region {})",
                e.0, entry.name
            ))
        })?;
        if let Some(pod) = object
            .object
            .pointer("/spec/template")
            .filter(|t| t.get("spec").is_some())
        {
            let field = format!("{}.spec.template", object.field);
            if let Some(why) = pod_security::violation(level, pod, &field) {
                return Err(refuse("as placed", why));
            }
        }
    }
    Ok(())
}

/// A per-app endpoint lies inside what the Region lists for apps.
fn app_endpoint(
    name: &str,
    region: &RegionSpec,
    endpoint: &str,
    field: &str,
) -> Result<(), NotAllowed> {
    let refuse = |why: &str| NotAllowed(format!("{field}: {endpoint} {why}"));
    // Parsers disagree on these (a `\` ends the host for a browser's URL
    // parser, not for ours): refused rather than guessed.
    let odd = |c: char| matches!(c, '\\' | '@' | '%') || c.is_whitespace() || c.is_control();
    if endpoint.chars().any(odd) {
        return Err(refuse(
            "holds a character endpoints may not (\\, @, %, spaces or control characters)",
        ));
    }
    let Some(allowed) = &region.app_endpoints else {
        return Err(refuse(&format!(
            "is not allowed: Region {name} lets apps set no endpoint of their own (its spec.appEndpoints); leave it unset to use the Region's"
        )));
    };
    let target =
        traffic::parse_endpoint(endpoint).ok_or_else(|| refuse("is not a URL or host[:port]"))?;
    let host = target.host.trim_end_matches('.').to_ascii_lowercase();
    if is_local(&host) && !allowed.allow_local_addresses {
        return Err(refuse(&format!(
            "is a loopback, link-local or metadata address, which Region {name} does not allow (spec.appEndpoints.allowLocalAddresses)"
        )));
    }
    if listed(allowed, &host) {
        return Ok(());
    }
    Err(refuse(&format!(
        "is outside the ranges and domains Region {name} allows (spec.appEndpoints)"
    )))
}

fn listed(allowed: &AppEndpoints, host: &str) -> bool {
    match host.parse::<IpAddr>() {
        Ok(ip) => allowed.cidrs.iter().any(|c| in_cidr(ip, c)),
        Err(_) => within(host, &allowed.domains),
    }
}

/// Loopback, link-local, unspecified and the clouds' metadata addresses,
/// and `localhost` names.
fn is_local(host: &str) -> bool {
    let names = ["localhost", "metadata.google.internal", "metadata"];
    if names.contains(&host) || host.ends_with(".localhost") {
        return true;
    }
    let Ok(ip) = host.parse::<IpAddr>() else {
        return false;
    };
    let local_ranges = [
        "127.0.0.0/8",
        "169.254.0.0/16",
        "0.0.0.0/8",
        "100.100.100.200/32",
        "::1/128",
        "::/128",
        "fe80::/10",
        "fd00:ec2::254/128",
    ];
    local_ranges.iter().any(|r| in_cidr(ip.to_canonical(), r))
}

/// `ip` lies inside `cidr` (`a.b.c.d/n` or IPv6; a bare address is /32 or
/// /128). A malformed range contains nothing.
fn in_cidr(ip: IpAddr, cidr: &str) -> bool {
    let (base, bits) = cidr.split_once('/').unwrap_or((cidr, ""));
    let Ok(base) = base.parse::<IpAddr>() else {
        return false;
    };
    let (ip, base, width) = match (ip.to_canonical(), base) {
        (IpAddr::V4(a), IpAddr::V4(b)) => (u32::from(a) as u128, u32::from(b) as u128, 32),
        (IpAddr::V6(a), IpAddr::V6(b)) => (u128::from(a), u128::from(b), 128),
        _ => return false,
    };
    let bits: u32 = if bits.is_empty() {
        width
    } else {
        bits.parse().unwrap_or(u32::MAX)
    };
    if bits > width {
        return false;
    }
    let shift = width - bits;
    shift == 128 || (ip >> shift) == (base >> shift)
}

#[cfg(test)]
mod tests;
