//! The traffic sinks' objects, built from the weights without a client:
//! a Gateway API HTTPRoute with one weighted backendRef per region (each a
//! Service in the hub pointing at the region's endpoint), and an ExternalDNS
//! DNSEndpoint with one weighted record per region.
//!
//! Every spec region keeps its backend and record (weight 0 when failed):
//! they leave only when the region leaves the spec.

use serde_json::{Value, json};

use crate::api::MultiRegionAppSpec;
use crate::plan::manifest::{self, AppKey};

/// Where a region's traffic goes, parsed from its endpoint URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub host: String,
    pub port: i32,
    pub is_ip: bool,
}

/// Parses `http://10.0.0.1:30080`, `https://app.example.com` or a bare
/// `host[:port]`.
pub fn parse_endpoint(endpoint: &str) -> Option<Target> {
    let (scheme, rest) = match endpoint.split_once("://") {
        Some((scheme, rest)) => (scheme, rest),
        None => ("http", endpoint),
    };
    let authority = rest.split(['/', '?', '#']).next()?.rsplit('@').next()?;
    if authority.is_empty() {
        return None;
    }
    let default_port = if scheme == "https" { 443 } else { 80 };
    let (host, port) = if let Some(stripped) = authority.strip_prefix('[') {
        let (host, after) = stripped.split_once(']')?;
        let port = after
            .strip_prefix(':')
            .map_or(Some(default_port), |p| p.parse().ok())?;
        (host.to_string(), port)
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host.to_string(), port.parse().ok()?),
            None => (authority.to_string(), default_port),
        }
    };
    let is_ip = host.parse::<std::net::IpAddr>().is_ok();
    Some(Target { host, port, is_ip })
}

/// Name of the hub Service standing for `region`'s backend.
pub fn backend_name(app: &AppKey, region: &str) -> String {
    let name = format!("{}-{}", app.name, region);
    // Service names are DNS-1035 labels of at most 63 characters.
    name.chars()
        .take(63)
        .collect::<String>()
        .trim_end_matches('-')
        .to_string()
}

fn labels(app: &AppKey, region: &str) -> Value {
    json!(manifest::labels(app, region))
}

/// The backend Service (and EndpointSlice, for an IP) of one region.
/// A hostname becomes an ExternalName Service.
pub fn backend(app: &AppKey, region: &str, target: Option<&Target>) -> Vec<Value> {
    let name = backend_name(app, region);
    let port = target.map_or(80, |t| t.port);
    match target {
        Some(t) if !t.is_ip => vec![json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": app.namespace, "labels": labels(app, region)},
            "spec": {"type": "ExternalName", "externalName": t.host,
                     "ports": [{"name": "http", "port": port, "protocol": "TCP"}]}
        })],
        _ => {
            let mut objects = vec![json!({
                "apiVersion": "v1", "kind": "Service",
                "metadata": {"name": name, "namespace": app.namespace, "labels": labels(app, region)},
                "spec": {"ports": [{"name": "http", "port": port, "protocol": "TCP"}]}
            })];
            if let Some(t) = target {
                let family = if t.host.contains(':') { "IPv6" } else { "IPv4" };
                let mut slice_labels = labels(app, region);
                slice_labels["kubernetes.io/service-name"] = json!(name);
                slice_labels["endpointslice.kubernetes.io/managed-by"] = json!("multiregion.io");
                objects.push(json!({
                    "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                    "metadata": {"name": name, "namespace": app.namespace, "labels": slice_labels},
                    "addressType": family,
                    "endpoints": [{"addresses": [t.host], "conditions": {"ready": true}}],
                    "ports": [{"name": "http", "port": t.port, "protocol": "TCP"}]
                }));
            }
            objects
        }
    }
}

/// The HTTPRoute with one weighted backendRef per spec region.
pub fn http_route(
    app: &AppKey,
    spec: &MultiRegionAppSpec,
    weights: &[(String, i32)],
    targets: &[Option<Target>],
) -> Option<Value> {
    let sink = spec.traffic.as_ref()?.http_route.as_ref()?;
    let parent_refs: Vec<Value> = sink
        .parent_refs
        .iter()
        .map(|p| {
            let mut r = json!({"name": p.name});
            if let Some(ns) = &p.namespace {
                r["namespace"] = json!(ns);
            }
            r
        })
        .collect();
    let backend_refs: Vec<Value> = weights
        .iter()
        .zip(targets)
        .map(|((region, weight), target)| {
            json!({
                "name": backend_name(app, region),
                "port": target.as_ref().map_or(80, |t| t.port),
                "weight": weight,
            })
        })
        .collect();
    Some(json!({
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": sink.name, "namespace": app.namespace, "labels": labels(app, "all")},
        "spec": {
            "parentRefs": parent_refs,
            "rules": [{"backendRefs": backend_refs}]
        }
    }))
}

/// The DNSEndpoint with one weighted record per spec region.
pub fn dns_endpoint(
    app: &AppKey,
    spec: &MultiRegionAppSpec,
    weights: &[(String, i32)],
    targets: &[Option<Target>],
) -> Option<Value> {
    let sink = spec.traffic.as_ref()?.dns_endpoint.as_ref()?;
    let endpoints: Vec<Value> = weights
        .iter()
        .zip(targets)
        .filter_map(|((region, weight), target)| {
            let t = target.as_ref()?;
            let record_type = match (t.is_ip, t.host.contains(':')) {
                (true, true) => "AAAA",
                (true, false) => "A",
                (false, _) => "CNAME",
            };
            Some(json!({
                "dnsName": sink.dns_name,
                "recordTTL": sink.record_ttl,
                "recordType": record_type,
                "targets": [t.host],
                "setIdentifier": region,
                "providerSpecific": [{"name": "aws/weight", "value": weight.to_string()}],
            }))
        })
        .collect();
    Some(json!({
        "apiVersion": "externaldns.k8s.io/v1alpha1",
        "kind": "DNSEndpoint",
        "metadata": {"name": app.name, "namespace": app.namespace, "labels": labels(app, "all")},
        "spec": {"endpoints": endpoints}
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app() -> AppKey {
        AppKey {
            namespace: "shop".into(),
            name: "checkout".into(),
        }
    }

    fn spec() -> MultiRegionAppSpec {
        serde_json::from_value(json!({
            "strategy": "ActivePassive",
            "regions": [{"name": "us-east"}, {"name": "eu-west"}],
            "workload": {"template": {}},
            "traffic": {
                "httpRoute": {"name": "checkout", "parentRefs": [{"name": "global-gw", "namespace": "gateway"}]},
                "dnsEndpoint": {"dnsName": "checkout.example.com", "recordTTL": 30}
            }
        }))
        .unwrap()
    }

    #[test]
    fn endpoints_parse() {
        let t = |s| parse_endpoint(s);
        assert_eq!(
            t("http://10.0.0.1:30080"),
            Some(Target {
                host: "10.0.0.1".into(),
                port: 30080,
                is_ip: true
            })
        );
        assert_eq!(
            t("https://app.example.com/x"),
            Some(Target {
                host: "app.example.com".into(),
                port: 443,
                is_ip: false
            })
        );
        assert_eq!(
            t("http://[::1]:8080"),
            Some(Target {
                host: "::1".into(),
                port: 8080,
                is_ip: true
            })
        );
        assert_eq!(
            t("example.org"),
            Some(Target {
                host: "example.org".into(),
                port: 80,
                is_ip: false
            })
        );
        assert_eq!(t("http://"), None);
        assert_eq!(t("http://host:notaport"), None);
    }

    #[test]
    fn the_route_has_one_weighted_backend_per_region() {
        let weights = vec![("us-east".to_string(), 0), ("eu-west".to_string(), 100)];
        let targets = vec![
            parse_endpoint("http://10.0.0.1:30080"),
            parse_endpoint("http://10.0.0.2:30080"),
        ];
        let route = http_route(&app(), &spec(), &weights, &targets).unwrap();
        let refs = &route["spec"]["rules"][0]["backendRefs"];
        assert_eq!(
            refs[0],
            json!({"name": "checkout-us-east", "port": 30080, "weight": 0})
        );
        assert_eq!(
            refs[1],
            json!({"name": "checkout-eu-west", "port": 30080, "weight": 100})
        );
        assert_eq!(
            route["spec"]["parentRefs"][0],
            json!({"name": "global-gw", "namespace": "gateway"})
        );
    }

    #[test]
    fn the_dns_endpoint_has_one_weighted_record_per_region() {
        let weights = vec![("us-east".to_string(), 0), ("eu-west".to_string(), 100)];
        let targets = vec![
            parse_endpoint("http://10.0.0.1:30080"),
            parse_endpoint("https://eu.example.com"),
        ];
        let dns = dns_endpoint(&app(), &spec(), &weights, &targets).unwrap();
        let e = &dns["spec"]["endpoints"];
        assert_eq!(e[0]["setIdentifier"], "us-east");
        assert_eq!(e[0]["recordType"], "A");
        assert_eq!(
            e[0]["providerSpecific"][0],
            json!({"name": "aws/weight", "value": "0"})
        );
        assert_eq!(e[1]["recordType"], "CNAME");
        assert_eq!(e[1]["targets"][0], "eu.example.com");
        assert_eq!(e[1]["providerSpecific"][0]["value"], "100");
        assert_eq!(e[1]["recordTTL"], 30);
    }

    #[test]
    fn backends_are_endpoint_slices_for_ips_and_external_names_for_hosts() {
        let ip = backend(
            &app(),
            "us-east",
            parse_endpoint("http://10.0.0.1:30080").as_ref(),
        );
        assert_eq!(ip.len(), 2);
        assert_eq!(ip[1]["kind"], "EndpointSlice");
        assert_eq!(
            ip[1]["metadata"]["labels"]["kubernetes.io/service-name"],
            "checkout-us-east"
        );
        let host = backend(
            &app(),
            "eu-west",
            parse_endpoint("https://eu.example.com").as_ref(),
        );
        assert_eq!(host.len(), 1);
        assert_eq!(host[0]["spec"]["type"], "ExternalName");
    }
}
