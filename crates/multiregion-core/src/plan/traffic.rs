//! The traffic sinks' objects, built from the weights without a client:
//! a Gateway API HTTPRoute with one weighted backendRef per region (each a
//! Service in the hub pointing at the region's endpoint), and an ExternalDNS
//! DNSEndpoint with one weighted record per region.
//!
//! Every spec region keeps its backend and record (weight 0 when failed):
//! they leave only when the region leaves the spec. With home regions
//! (`regions[].home`), the route gains a rule per home matching the home
//! header, and the DNSEndpoint holds geolocation records instead of
//! weighted ones.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use kube::core::{DynamicObject, TypeMeta};
use serde_json::{Value, json};

use crate::api::{AppRegion, DnsEndpointSink, DnsMode, HomeRoute, MultiRegionAppSpec};
use crate::plan::manifest::{AppKey, content_hash, object_meta};

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

/// Name of the hub Service standing for `region`'s backend: the app and
/// the region, cut to fit a DNS-1035 label, and a short hash of both, so
/// that `web` in `us-east` and `web-us` in `east` never share a name.
pub fn backend_name(app: &AppKey, region: &str) -> String {
    let hash = content_hash(&json!([app.name, region]));
    let readable: String = format!("{}-{}", app.name, region)
        .chars()
        .map(|c| match c {
            'a'..='z' | '0'..='9' => c,
            _ => '-',
        })
        .take(52)
        .collect();
    let readable = readable.trim_matches('-');
    // A DNS-1035 label starts with a letter.
    let prefix = if readable.starts_with(|c: char| c.is_ascii_lowercase()) {
        ""
    } else {
        "b-"
    };
    format!("{prefix}{readable}-{}", &hash[..8])
}

/// True when a live object holds everything the operator wants in it:
/// each field of `desired` is in `live` with the same value (objects
/// compared key by key, lists item by item); fields the API server added
/// (defaults, status) do not count. A sink whose live object no longer
/// holds what was published was edited or lost, and is written again.
pub fn holds(live: &Value, desired: &Value) -> bool {
    match (live, desired) {
        (Value::Object(live), Value::Object(desired)) => desired
            .iter()
            .all(|(key, want)| live.get(key).is_some_and(|have| holds(have, want))),
        (Value::Array(live), Value::Array(desired)) => {
            live.len() == desired.len() && live.iter().zip(desired).all(|(l, d)| holds(l, d))
        }
        (live, desired) => live == desired,
    }
}

/// The weights a DNSEndpoint holds, by region (its records' setIdentifier
/// and `aws/weight`).
pub fn dns_weights(dns_endpoint: &Value) -> Vec<(String, i32)> {
    let Some(endpoints) = dns_endpoint["spec"]["endpoints"].as_array() else {
        return Vec::new();
    };
    endpoints
        .iter()
        .filter_map(|e| {
            let region = e["setIdentifier"].as_str()?.to_string();
            let weight = e["providerSpecific"]
                .as_array()?
                .iter()
                .find(|p| p["name"] == "aws/weight")?["value"]
                .as_str()?
                .parse()
                .ok()?;
            Some((region, weight))
        })
        .collect()
}

/// The weights an HTTPRoute holds, by region, for the regions given.
pub fn route_weights(app: &AppKey, route: &Value, regions: &[&str]) -> Vec<(String, i32)> {
    let Some(refs) = route["spec"]["rules"][0]["backendRefs"].as_array() else {
        return Vec::new();
    };
    regions
        .iter()
        .filter_map(|region| {
            let name = backend_name(app, region);
            let weight = refs.iter().find(|r| r["name"] == name.as_str())?["weight"].as_i64()?;
            Some((region.to_string(), weight as i32))
        })
        .collect()
}

/// What stands for one region's backend in the hub: a Service, and for an
/// IP address the EndpointSlice that gives it that address. A hostname
/// becomes an ExternalName Service.
#[derive(Clone, Debug, PartialEq)]
pub struct Backend {
    pub service: Service,
    pub slice: Option<EndpointSlice>,
}

/// The backend of one region.
pub fn backend(app: &AppKey, region: &str, target: Option<&Target>) -> Backend {
    let name = backend_name(app, region);
    let port = target.map_or(80, |t| t.port);
    let mut spec = ServiceSpec {
        ports: Some(vec![ServicePort {
            name: Some("http".into()),
            port,
            protocol: Some("TCP".into()),
            ..ServicePort::default()
        }]),
        ..ServiceSpec::default()
    };
    if let Some(t) = target.filter(|t| !t.is_ip) {
        spec.type_ = Some("ExternalName".into());
        spec.external_name = Some(t.host.clone());
    }
    let service = Service {
        metadata: object_meta(app, &name, region),
        spec: Some(spec),
        status: None,
    };
    let slice = target
        .filter(|t| t.is_ip)
        .map(|t| endpoint_slice(app, region, &name, t));
    Backend { service, slice }
}

fn endpoint_slice(app: &AppKey, region: &str, name: &str, target: &Target) -> EndpointSlice {
    let mut metadata = object_meta(app, name, region);
    let labels = metadata.labels.get_or_insert_with(BTreeMap::new);
    labels.insert("kubernetes.io/service-name".into(), name.to_string());
    labels.insert(
        "endpointslice.kubernetes.io/managed-by".into(),
        "multiregion.io".into(),
    );
    let family = address_type(&target.host);
    EndpointSlice {
        metadata,
        address_type: family.into(),
        endpoints: vec![Endpoint {
            addresses: vec![target.host.clone()],
            conditions: Some(EndpointConditions {
                ready: Some(true),
                ..EndpointConditions::default()
            }),
            ..Endpoint::default()
        }],
        ports: Some(vec![EndpointPort {
            name: Some("http".into()),
            port: Some(target.port),
            protocol: Some("TCP".into()),
            ..EndpointPort::default()
        }]),
    }
}

/// The EndpointSlice address type for an IP endpoint. The API refuses
/// loopback and link-local addresses in IP slices; such an address (a
/// region on the same machine, as in local setups) is published as an
/// `FQDN` slice instead, whose addresses gateways resolve, and an IP
/// literal resolves to itself.
fn address_type(host: &str) -> &'static str {
    match host.parse::<std::net::IpAddr>() {
        Ok(ip) if ip.is_loopback() || link_local(&ip) => "FQDN",
        Ok(std::net::IpAddr::V6(_)) => "IPv6",
        _ => "IPv4",
    }
}

fn link_local(ip: &std::net::IpAddr) -> bool {
    match ip {
        std::net::IpAddr::V4(v4) => v4.is_link_local(),
        std::net::IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) == 0xfe80,
    }
}

/// A sink object of a kind k8s-openapi does not know.
fn dynamic(api_version: &str, kind: &str, app: &AppKey, name: &str, spec: Value) -> DynamicObject {
    DynamicObject {
        types: Some(TypeMeta {
            api_version: api_version.into(),
            kind: kind.into(),
        }),
        metadata: object_meta(app, name, "all"),
        data: json!({ "spec": spec }),
    }
}

/// The HTTPRoute: a first rule with one weighted backendRef per spec
/// region, then one rule per home region that sends requests whose home
/// header names it to the region serving that home (`homes`).
pub fn http_route(
    app: &AppKey,
    spec: &MultiRegionAppSpec,
    weights: &[(String, i32)],
    targets: &[Option<Target>],
    homes: &[HomeRoute],
) -> Option<DynamicObject> {
    let sink = spec.traffic.as_ref()?.http_route.as_ref()?;
    let parent_refs: Vec<Value> = sink
        .parent_refs
        .iter()
        .map(|p| {
            let mut r = json!({"name": p.name});
            if let Some(ns) = &p.namespace {
                r["namespace"] = json!(ns);
            }
            if let Some(section) = &p.section_name {
                r["sectionName"] = json!(section);
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
    let port_of = |region: &str| {
        weights
            .iter()
            .zip(targets)
            .find(|((r, _), _)| r == region)
            .and_then(|(_, t)| t.as_ref().map(|t| t.port))
            .unwrap_or(80)
    };
    let mut rules = vec![json!({"backendRefs": backend_refs})];
    rules.extend(homes.iter().map(|home| {
        json!({
            "matches": [{
                "path": {"type": "PathPrefix", "value": "/"},
                "headers": [{"type": "Exact", "name": sink.home_header, "value": home.home}],
            }],
            "backendRefs": [{
                "name": backend_name(app, &home.served_by),
                "port": port_of(&home.served_by),
                "weight": 1,
            }],
        })
    }));
    let mut spec = json!({
        "parentRefs": parent_refs,
        "rules": rules
    });
    if !sink.hostnames.is_empty() {
        spec["hostnames"] = json!(sink.hostnames);
    }
    Some(dynamic(
        "gateway.networking.k8s.io/v1",
        "HTTPRoute",
        app,
        &sink.name,
        spec,
    ))
}

/// The DNSEndpoint: one weighted record per spec region; with home regions
/// (Weighted mode), geolocation records instead, see `geolocation_records`.
pub fn dns_endpoint(
    app: &AppKey,
    spec: &MultiRegionAppSpec,
    weights: &[(String, i32)],
    targets: &[Option<Target>],
    homes: &[HomeRoute],
) -> Option<DynamicObject> {
    let sink = spec.traffic.as_ref()?.dns_endpoint.as_ref()?;
    let records: Vec<(&str, i32, &Target)> = weights
        .iter()
        .zip(targets)
        .filter_map(|((region, weight), target)| Some((region.as_str(), *weight, target.as_ref()?)))
        .collect();
    let endpoints = match sink.mode {
        DnsMode::Weighted if !homes.is_empty() => {
            geolocation_records(sink, &spec.regions, &records, homes)
        }
        DnsMode::Weighted => weighted_records(sink, &records),
        DnsMode::Failover => failover_records(sink, &records),
    };
    Some(dynamic(
        "externaldns.k8s.io/v1alpha1",
        "DNSEndpoint",
        app,
        &app.name,
        json!({ "endpoints": endpoints }),
    ))
}

fn record_type(target: &Target) -> &'static str {
    match (target.is_ip, target.host.contains(':')) {
        (true, true) => "AAAA",
        (true, false) => "A",
        (false, _) => "CNAME",
    }
}

/// One record per region, each with its weight.
fn weighted_records(sink: &DnsEndpointSink, records: &[(&str, i32, &Target)]) -> Vec<Value> {
    records
        .iter()
        .map(|(region, weight, t)| {
            json!({
                "dnsName": sink.dns_name,
                "recordTTL": sink.record_ttl,
                "recordType": record_type(t),
                "targets": [t.host],
                "setIdentifier": region,
                "providerSpecific": [{"name": "aws/weight", "value": weight.to_string()}],
            })
        })
        .collect()
}

/// One record per record type, holding the targets of the regions that
/// carry weight, without set identifiers or weights: what a DNS provider
/// without weighted routing serves as it is (ExternalDNS's CoreDNS
/// provider, given several records of one name, serves all of them and
/// rewrites them on every sync).
fn failover_records(sink: &DnsEndpointSink, records: &[(&str, i32, &Target)]) -> Vec<Value> {
    let mut by_type: Vec<(&str, Vec<&str>)> = Vec::new();
    for (_, _, t) in records.iter().filter(|(_, weight, _)| *weight > 0) {
        let kind = record_type(t);
        match by_type.iter_mut().find(|(k, _)| *k == kind) {
            Some((_, hosts)) => hosts.push(&t.host),
            None => by_type.push((kind, vec![&t.host])),
        }
    }
    by_type
        .into_iter()
        .map(|(kind, hosts)| {
            json!({
                "dnsName": sink.dns_name,
                "recordTTL": sink.record_ttl,
                "recordType": kind,
                "targets": hosts,
            })
        })
        .collect()
}

/// Route 53 geolocation routing through ExternalDNS's providerSpecific
/// properties (a name's records must share one routing policy, so weights
/// give way): per home region, a record per continent and per country
/// with the target of the region serving that home now, and a default
/// record (country `*`) per record type with the regions that carry weight.
fn geolocation_records(
    sink: &DnsEndpointSink,
    regions: &[AppRegion],
    records: &[(&str, i32, &Target)],
    homes: &[HomeRoute],
) -> Vec<Value> {
    let target = |region: &str| {
        records
            .iter()
            .find(|(r, _, _)| *r == region)
            .map(|(_, _, t)| *t)
    };
    let mut out = Vec::new();
    for route in homes {
        let (Some(home), Some(t)) = (
            regions
                .iter()
                .find(|r| r.name == route.home)
                .and_then(|r| r.home.as_ref()),
            target(&route.served_by),
        ) else {
            continue;
        };
        let places = home
            .continents
            .iter()
            .map(|c| ("aws/geolocation-continent-code", c.code().to_string()))
            .chain(
                home.countries
                    .iter()
                    .map(|c| ("aws/geolocation-country-code", c.clone())),
            );
        for (property, code) in places {
            out.push(json!({
                "dnsName": sink.dns_name,
                "recordTTL": sink.record_ttl,
                "recordType": record_type(t),
                "targets": [t.host],
                "setIdentifier": format!("home-{}-{}", route.home, code.to_lowercase()),
                "providerSpecific": [{"name": property, "value": code}],
            }));
        }
    }
    for mut default in failover_records(sink, records) {
        let kind = default["recordType"].as_str().unwrap_or("A").to_lowercase();
        default["setIdentifier"] = json!(format!("default-{kind}"));
        default["providerSpecific"] =
            json!([{"name": "aws/geolocation-country-code", "value": "*"}]);
        out.push(default);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app() -> AppKey {
        AppKey {
            hub: String::new(),
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
        let route = http_route(&app(), &spec(), &weights, &targets, &[]).unwrap();
        let refs = &route.data["spec"]["rules"][0]["backendRefs"];
        assert_eq!(
            refs[0],
            json!({"name": backend_name(&app(), "us-east"), "port": 30080, "weight": 0})
        );
        assert_eq!(
            refs[1],
            json!({"name": backend_name(&app(), "eu-west"), "port": 30080, "weight": 100})
        );
        assert_eq!(
            route_weights(&app(), &route.data, &["us-east", "eu-west"]),
            [("us-east".to_string(), 0), ("eu-west".to_string(), 100)]
        );
        assert_eq!(
            route.data["spec"]["parentRefs"][0],
            json!({"name": "global-gw", "namespace": "gateway"})
        );
        assert!(
            route.data["spec"].get("hostnames").is_none(),
            "none asked for"
        );
    }

    #[test]
    fn the_route_carries_its_hostnames_and_the_listener_it_attaches_to() {
        let mut spec = spec();
        if let Some(route) = spec.traffic.as_mut().and_then(|t| t.http_route.as_mut()) {
            route.hostnames = vec!["checkout.example.com".into()];
            route.parent_refs[0].section_name = Some("https".into());
        }
        let weights = vec![("us-east".to_string(), 100), ("eu-west".to_string(), 0)];
        let route = http_route(&app(), &spec, &weights, &[None, None], &[]).unwrap();
        assert_eq!(
            route.data["spec"]["hostnames"],
            json!(["checkout.example.com"])
        );
        assert_eq!(route.data["spec"]["parentRefs"][0]["sectionName"], "https");
    }

    #[test]
    fn the_dns_endpoint_has_one_weighted_record_per_region() {
        let weights = vec![("us-east".to_string(), 0), ("eu-west".to_string(), 100)];
        let targets = vec![
            parse_endpoint("http://10.0.0.1:30080"),
            parse_endpoint("https://eu.example.com"),
        ];
        let dns = dns_endpoint(&app(), &spec(), &weights, &targets, &[]).unwrap();
        let e = &dns.data["spec"]["endpoints"];
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
        assert_eq!(
            dns_weights(&dns.data),
            [("us-east".to_string(), 0), ("eu-west".to_string(), 100)]
        );
    }

    #[test]
    fn failover_mode_publishes_only_the_regions_that_carry_weight() {
        let mut spec = spec();
        if let Some(dns) = spec.traffic.as_mut().and_then(|t| t.dns_endpoint.as_mut()) {
            dns.mode = DnsMode::Failover;
        }
        let weights = vec![("us-east".to_string(), 0), ("eu-west".to_string(), 100)];
        let targets = vec![
            parse_endpoint("http://10.0.0.1:30080"),
            parse_endpoint("http://10.0.0.2:30080"),
        ];
        let dns = dns_endpoint(&app(), &spec, &weights, &targets, &[]).unwrap();
        let records = dns.data["spec"]["endpoints"].as_array().unwrap();
        assert_eq!(records.len(), 1);
        assert_eq!(records[0]["targets"], json!(["10.0.0.2"]));
        assert!(records[0].get("setIdentifier").is_none());
        // ActiveActive: every region with weight, in one record.
        let both = vec![("us-east".to_string(), 50), ("eu-west".to_string(), 50)];
        let dns = dns_endpoint(&app(), &spec, &both, &targets, &[]).unwrap();
        assert_eq!(
            dns.data["spec"]["endpoints"][0]["targets"],
            json!(["10.0.0.1", "10.0.0.2"])
        );
    }

    fn homes_spec() -> MultiRegionAppSpec {
        let mut spec = spec();
        spec.strategy = crate::api::Strategy::ActiveActive;
        spec.regions[0].home = Some(crate::api::Home {
            continents: vec![crate::api::Continent::NA],
            countries: vec![],
        });
        spec.regions[1].home = Some(crate::api::Home {
            continents: vec![crate::api::Continent::EU],
            countries: vec!["IL".into()],
        });
        spec
    }

    fn served(pairs: &[(&str, &str)]) -> Vec<HomeRoute> {
        pairs
            .iter()
            .map(|(home, by)| HomeRoute {
                home: home.to_string(),
                served_by: by.to_string(),
                since: None,
            })
            .collect()
    }

    #[test]
    fn the_route_sends_each_home_header_to_the_region_serving_that_home() {
        let weights = vec![("us-east".to_string(), 100), ("eu-west".to_string(), 0)];
        let targets = vec![
            parse_endpoint("http://10.0.0.1:30080"),
            parse_endpoint("http://10.0.0.2:30081"),
        ];
        let homes = served(&[("us-east", "us-east"), ("eu-west", "us-east")]);
        let route = http_route(&app(), &homes_spec(), &weights, &targets, &homes).unwrap();
        let rules = route.data["spec"]["rules"].as_array().unwrap();
        assert_eq!(rules.len(), 3, "the weighted rule, then one per home");
        assert!(rules[0].get("matches").is_none());
        assert_eq!(
            rules[2]["matches"][0]["headers"][0],
            json!({"type": "Exact", "name": "X-Home-Region", "value": "eu-west"})
        );
        assert_eq!(
            rules[2]["backendRefs"],
            json!([{"name": backend_name(&app(), "us-east"), "port": 30080, "weight": 1}])
        );
        assert_eq!(
            route_weights(&app(), &route.data, &["us-east", "eu-west"]),
            [("us-east".to_string(), 100), ("eu-west".to_string(), 0)],
            "the weights are still read from the first rule"
        );
    }

    #[test]
    fn home_regions_become_geolocation_records_with_a_default() {
        let weights = vec![("us-east".to_string(), 50), ("eu-west".to_string(), 50)];
        let targets = vec![
            parse_endpoint("http://10.0.0.1:30080"),
            parse_endpoint("http://10.0.0.2:30080"),
        ];
        let homes = served(&[("us-east", "us-east"), ("eu-west", "eu-west")]);
        let dns = dns_endpoint(&app(), &homes_spec(), &weights, &targets, &homes).unwrap();
        let records = dns.data["spec"]["endpoints"].as_array().unwrap();
        let by_id = |id: &str| records.iter().find(|r| r["setIdentifier"] == id).unwrap();
        assert_eq!(records.len(), 4, "NA, EU, IL and the default: {records:?}");
        assert_eq!(by_id("home-us-east-na")["targets"], json!(["10.0.0.1"]));
        assert_eq!(
            by_id("home-eu-west-eu")["providerSpecific"],
            json!([{"name": "aws/geolocation-continent-code", "value": "EU"}])
        );
        assert_eq!(
            by_id("home-eu-west-il")["providerSpecific"],
            json!([{"name": "aws/geolocation-country-code", "value": "IL"}])
        );
        assert_eq!(
            by_id("default-a")["targets"],
            json!(["10.0.0.1", "10.0.0.2"])
        );
        assert!(
            records
                .iter()
                .all(|r| !r.to_string().contains("aws/weight"))
        );
        // eu-west's users moved to us-east: their records follow.
        let weights = vec![("us-east".to_string(), 100), ("eu-west".to_string(), 0)];
        let homes = served(&[("us-east", "us-east"), ("eu-west", "us-east")]);
        let dns = dns_endpoint(&app(), &homes_spec(), &weights, &targets, &homes).unwrap();
        let records = dns.data["spec"]["endpoints"].as_array().unwrap();
        let by_id = |id: &str| records.iter().find(|r| r["setIdentifier"] == id).unwrap();
        assert_eq!(by_id("home-eu-west-eu")["targets"], json!(["10.0.0.1"]));
        assert_eq!(by_id("default-a")["targets"], json!(["10.0.0.1"]));
    }

    #[test]
    fn backend_names_never_collide_and_fit_a_dns_label() {
        let key = |name: &str| AppKey {
            name: name.into(),
            ..app()
        };
        let a = backend_name(&key("web"), "us-east");
        let b = backend_name(&key("web-us"), "east");
        assert_ne!(a, b, "same readable part, different app and region");
        assert!(a.starts_with("web-us-east-"), "{a}");
        let long = backend_name(&key(&"x".repeat(250)), "a-region-with-a-long-name");
        assert!(long.len() <= 63, "{long}");
        let odd = backend_name(&key("9.lives"), "us-east");
        assert!(odd.starts_with("b-9-lives-us-east-"), "{odd}");
        assert!(
            odd.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'),
            "{odd}"
        );
    }

    #[test]
    fn a_live_object_holds_what_was_published_whatever_the_server_added() {
        let desired = json!({"spec": {"rules": [{"backendRefs": [{"name": "a", "weight": 100}]}]}});
        let defaulted = json!({"spec": {"rules": [{
            "backendRefs": [{"name": "a", "weight": 100, "group": "", "kind": "Service"}],
            "matches": [{"path": {"type": "PathPrefix", "value": "/"}}]
        }]}, "status": {}});
        assert!(holds(&defaulted, &desired));
        let edited = json!({"spec": {"rules": [{"backendRefs": [{"name": "a", "weight": 0}]}]}});
        assert!(!holds(&edited, &desired), "a weight changed by hand");
        let extra = json!({"spec": {"rules": [{"backendRefs": [
            {"name": "a", "weight": 100}, {"name": "b", "weight": 1}
        ]}]}});
        assert!(!holds(&extra, &desired), "a backend added by hand");
        assert!(!holds(&json!({}), &desired), "deleted");
    }

    #[test]
    fn backends_are_endpoint_slices_for_ips_and_external_names_for_hosts() {
        let ip = backend(
            &app(),
            "us-east",
            parse_endpoint("http://10.0.0.1:30080").as_ref(),
        );
        let slice = ip.slice.expect("an EndpointSlice for an IP");
        assert_eq!(
            slice.metadata.labels.unwrap()["kubernetes.io/service-name"],
            backend_name(&app(), "us-east")
        );
        assert_eq!(slice.endpoints[0].addresses, ["10.0.0.1"]);
        assert_eq!(slice.address_type, "IPv4");
        let local = backend(
            &app(),
            "us-east",
            parse_endpoint("http://127.0.0.11:8080").as_ref(),
        );
        let local = local.slice.expect("a slice for a loopback address too");
        assert_eq!(
            (
                local.address_type.as_str(),
                local.endpoints[0].addresses[0].as_str()
            ),
            ("FQDN", "127.0.0.11"),
            "the API refuses loopback addresses in IP slices"
        );
        let host = backend(
            &app(),
            "eu-west",
            parse_endpoint("https://eu.example.com").as_ref(),
        );
        assert!(host.slice.is_none());
        let spec = host.service.spec.unwrap();
        assert_eq!(spec.type_.as_deref(), Some("ExternalName"));
        assert_eq!(spec.external_name.as_deref(), Some("eu.example.com"));
    }
}
