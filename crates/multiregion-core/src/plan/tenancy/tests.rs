use super::*;
use serde_json::json;

fn key() -> AppKey {
    AppKey {
        hub: "hub-1".into(),
        namespace: "shop".into(),
        name: "web".into(),
    }
}

fn spec(extra: Value) -> MultiRegionAppSpec {
    let mut spec = json!({
        "strategy": "ActivePassive",
        "regions": [{"name": "us-east"}, {"name": "eu-west"}],
        "workload": {"template": {"spec": {"containers": [{"name": "web", "image": "web:1"}]}}}
    });
    for (k, v) in extra.as_object().unwrap() {
        spec[k] = v.clone();
    }
    serde_json::from_value(spec).unwrap()
}

fn region(extra: Value) -> RegionSpec {
    let mut region = json!({"allowedNamespaces": {}, "endpoint": "http://10.0.0.1"});
    for (k, v) in extra.as_object().unwrap() {
        region[k] = v.clone();
    }
    serde_json::from_value(region).unwrap()
}

fn regions(us: RegionSpec) -> BTreeMap<String, RegionSpec> {
    BTreeMap::from([
        ("us-east".into(), us),
        ("eu-west".into(), region(json!({}))),
    ])
}

fn labels() -> BTreeMap<String, String> {
    BTreeMap::from([
        ("kubernetes.io/metadata.name".into(), "shop".into()),
        ("team".into(), "shop".into()),
    ])
}

fn admitted(spec: &MultiRegionAppSpec, us: RegionSpec, namespace: &str) -> Result<(), NotAllowed> {
    let template = manifest::validate_template(spec).unwrap();
    let labels = labels();
    let tenant = Tenant {
        namespace,
        labels: &labels,
        operator_namespace: "multiregion-system",
        allowed_domains: None,
        allowed_kinds: None,
    };
    admit(&key(), spec, &template, &regions(us), &tenant)
}

fn refusal(spec: &MultiRegionAppSpec, us: RegionSpec) -> String {
    admitted(spec, us, "shop").expect_err("refused").0
}

#[test]
fn an_ordinary_app_in_an_allowed_namespace_is_admitted() {
    assert_eq!(
        admitted(&spec(json!({})), region(json!({})), "shop"),
        Ok(())
    );
}

#[test]
fn a_region_admits_only_the_namespaces_its_selector_names() {
    let unset = region(json!({"allowedNamespaces": null}));
    let refused = refusal(&spec(json!({})), unset);
    assert!(
        refused.starts_with(
            "spec.regions[0].name: Region us-east does not allow apps of namespace shop"
        ),
        "{refused}"
    );
    let by_name = json!({"matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["shop", "web"]}]});
    assert_eq!(
        admitted(
            &spec(json!({})),
            region(json!({"allowedNamespaces": by_name})),
            "shop"
        ),
        Ok(())
    );
    let other_team = json!({"matchLabels": {"team": "payments"}});
    assert!(
        admitted(
            &spec(json!({})),
            region(json!({"allowedNamespaces": other_team})),
            "shop"
        )
        .is_err()
    );
    // A local Region is no exception.
    let local =
        region(json!({"local": true, "allowedNamespaces": {"matchLabels": {"team": "ops"}}}));
    assert!(refusal(&spec(json!({})), local).contains("Region us-east does not allow"));
}

#[test]
fn selectors_follow_kubernetes_operators() {
    let labels = labels();
    let selector = |v: Value| serde_json::from_value::<LabelSelector>(v).unwrap();
    assert!(selects(&selector(json!({})), &labels));
    assert!(selects(
        &selector(json!({"matchExpressions": [{"key": "team", "operator": "Exists"}]})),
        &labels
    ));
    assert!(!selects(
        &selector(json!({"matchExpressions": [{"key": "team", "operator": "DoesNotExist"}]})),
        &labels
    ));
    assert!(!selects(
        &selector(
            json!({"matchExpressions": [{"key": "team", "operator": "NotIn", "values": ["shop"]}]})
        ),
        &labels
    ));
    assert!(selects(
        &selector(
            json!({"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["x"]}]})
        ),
        &labels
    ));
    assert!(!selects(
        &selector(json!({"matchExpressions": [{"key": "team", "operator": "Bogus"}]})),
        &labels
    ));
}

#[test]
fn apps_never_live_in_the_clusters_or_the_operators_namespace() {
    for namespace in ["kube-system", "kube-public", "multiregion-system"] {
        let refused = admitted(&spec(json!({})), region(json!({})), namespace)
            .unwrap_err()
            .0;
        assert!(refused.starts_with("metadata.namespace:"), "{refused}");
    }
}

#[test]
fn a_privileged_pod_is_refused_by_the_regions_level_naming_the_field() {
    let privileged = spec(json!({"workload": {"template": {"spec": {"containers": [
        {"name": "web", "image": "web:1", "securityContext": {"privileged": true}}]}}}}));
    let refused = refusal(&privileged, region(json!({})));
    assert!(
        refused
            .starts_with("spec.workload.template.spec.containers[0].securityContext.privileged:"),
        "{refused}"
    );
    assert!(
        refused.contains("region us-east enforces Pod Security level baseline"),
        "{refused}"
    );
    // Restricted asks for more than an ordinary image gives.
    let refused = refusal(
        &spec(json!({})),
        region(json!({"podSecurity": "Restricted"})),
    );
    assert!(refused.contains("allowPrivilegeEscalation"), "{refused}");
}

#[test]
fn an_override_that_makes_the_pod_privileged_is_refused_for_its_region() {
    let patched = spec(
        json!({"regions": [{"name": "us-east", "overrides": {"patches": [
        {"op": "add", "path": "/spec/template/spec/hostNetwork", "value": true}]}}, {"name": "eu-west"}]}),
    );
    let refused = refusal(&patched, region(json!({})));
    assert!(
        refused.starts_with("spec.workload.template.spec.hostNetwork:"),
        "{refused}"
    );
    assert!(
        refused.contains("with spec.regions[0].overrides"),
        "{refused}"
    );
}

#[test]
fn spec_resources_refuse_the_denylist_and_check_pod_templates() {
    let manifests = [
        (
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "x"}}),
            "spec.resources[0].kind: RoleBinding",
        ),
        (
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"}}),
            "spec.resources[0].kind: Pod",
        ),
        (
            json!({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "x"}}),
            "spec.resources[0].kind: CronJob",
        ),
        (
            json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Application", "metadata": {"name": "x"}}),
            "spec.resources[0].kind: Application",
        ),
        (
            json!({"apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization", "metadata": {"name": "x"}}),
            "spec.resources[0].kind: Kustomization",
        ),
        (
            json!({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/service-account-token", "metadata": {"name": "x"}}),
            "spec.resources[0].type:",
        ),
        (
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x"}, "spec": {"externalIPs": ["1.2.3.4"]}}),
            "spec.resources[0].spec.externalIPs:",
        ),
        (
            json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "x"}, "spec": {"template": {"spec": {"hostPID": true, "containers": []}}}}),
            "spec.resources[0].spec.template.spec.hostPID:",
        ),
    ];
    for (manifest, field) in manifests {
        let refused = refusal(&spec(json!({"resources": [manifest]})), region(json!({})));
        assert!(refused.starts_with(field), "{refused}");
    }
    let ok = json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "web"}, "spec": {"maxUnavailable": 1}});
    assert_eq!(
        admitted(&spec(json!({"resources": [ok]})), region(json!({})), "shop"),
        Ok(())
    );
}

fn endpoint(endpoint: &str, allowed: Value) -> Result<(), NotAllowed> {
    let app =
        spec(json!({"regions": [{"name": "us-east", "endpoint": endpoint}, {"name": "eu-west"}]}));
    admitted(&app, region(json!({"appEndpoints": allowed})), "shop")
}

#[test]
fn an_app_endpoint_must_lie_in_what_the_region_lists() {
    let refused = endpoint("http://10.1.2.3", Value::Null).unwrap_err().0;
    assert!(
        refused.starts_with("spec.regions[0].endpoint: http://10.1.2.3 is not allowed"),
        "{refused}"
    );
    let lists = json!({"cidrs": ["10.1.0.0/16", "fd00:1::/64"], "domains": ["example.com"]});
    for ok in [
        "http://10.1.2.3:8080",
        "10.1.255.1",
        "https://shop.example.com",
        "example.com:443",
        "http://[fd00:1::5]:80",
    ] {
        assert_eq!(endpoint(ok, lists.clone()), Ok(()), "{ok}");
    }
    for outside in [
        "http://10.2.0.1",
        "https://evil.com",
        "https://notexample.com",
        "http://[fd00:2::1]",
    ] {
        let refused = endpoint(outside, lists.clone()).unwrap_err().0;
        assert!(
            refused.contains("is outside the ranges and domains Region us-east allows"),
            "{refused}"
        );
    }
}

#[test]
fn local_and_metadata_addresses_need_the_regions_explicit_leave() {
    let everything = json!({"cidrs": ["0.0.0.0/0", "::/0"], "domains": ["localhost", "internal"]});
    for local in [
        "http://169.254.169.254/latest",
        "http://127.0.0.1:8080",
        "http://[::1]:80",
        "http://localhost:80",
        "http://metadata.google.internal",
        "http://[::ffff:127.0.0.1]",
        "http://0.0.0.0:80",
        "http://[fe80::1]",
    ] {
        let refused = endpoint(local, everything.clone()).unwrap_err().0;
        assert!(
            refused.contains("loopback, link-local or metadata"),
            "{local}: {refused}"
        );
    }
    let local_regions = json!({"cidrs": ["127.0.0.0/8"], "allowLocalAddresses": true});
    assert_eq!(
        endpoint("http://127.0.0.1:31000", local_regions.clone()),
        Ok(())
    );
    // Leave for local addresses is not leave for the metadata service.
    assert!(endpoint("http://169.254.169.254", local_regions).is_err());
}

#[test]
fn cidrs_match_by_prefix() {
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    assert!(in_cidr(ip("10.0.0.1"), "10.0.0.0/8"));
    assert!(!in_cidr(ip("11.0.0.1"), "10.0.0.0/8"));
    assert!(in_cidr(ip("10.0.0.1"), "0.0.0.0/0"));
    assert!(in_cidr(ip("10.0.0.1"), "10.0.0.1"));
    assert!(!in_cidr(ip("10.0.0.1"), "10.0.0.0/33"));
    assert!(!in_cidr(ip("10.0.0.1"), "garbage/8"));
    assert!(in_cidr(ip("2001:db8::1"), "::/0"));
    assert!(!in_cidr(ip("2001:db8::1"), "10.0.0.0/8"));
}

#[test]
fn sinks_publish_only_names_inside_the_namespaces_domains() {
    let domains = vec!["shop.example.com".to_string()];
    let judged = |traffic: Value| {
        let app = spec(json!({"traffic": traffic}));
        let template = manifest::validate_template(&app).unwrap();
        let labels = labels();
        let tenant = Tenant {
            namespace: "shop",
            labels: &labels,
            operator_namespace: "multiregion-system",
            allowed_domains: Some(&domains),
            allowed_kinds: None,
        };
        admit(
            &key(),
            &app,
            &template,
            &regions(region(json!({}))),
            &tenant,
        )
        .map_err(|e| e.0)
    };
    let route = |hostnames: Value| json!({"httpRoute": {"name": "web", "hostnames": hostnames}});
    assert_eq!(
        judged(route(json!([
            "shop.example.com",
            "*.shop.example.com",
            "api.shop.example.com."
        ]))),
        Ok(())
    );
    let refused = judged(route(json!([]))).unwrap_err();
    assert!(
        refused.starts_with("spec.traffic.httpRoute.hostnames: name the hosts"),
        "{refused}"
    );
    let refused = judged(route(json!(["shop.example.com", "bank.example.com"]))).unwrap_err();
    assert!(
        refused.starts_with("spec.traffic.httpRoute.hostnames[1]: bank.example.com is outside"),
        "{refused}"
    );
    assert!(
        judged(route(json!(["*.example.com"]))).is_err(),
        "a wildcard above the domain"
    );
    assert_eq!(
        judged(json!({"dnsEndpoint": {"dnsName": "web.shop.example.com"}})),
        Ok(())
    );
    let refused = judged(json!({"dnsEndpoint": {"dnsName": "evilshop.example.com"}})).unwrap_err();
    assert!(
        refused.starts_with("spec.traffic.dnsEndpoint.dnsName: evilshop.example.com is outside"),
        "{refused}"
    );
}

#[test]
fn endpoints_that_parsers_read_differently_are_refused() {
    let lists = json!({"cidrs": ["10.0.0.0/8"], "domains": ["example.com"]});
    for odd in [
        "http://169.254.169.254\\@shop.example.com/",
        "http://user@shop.example.com",
        "http://shop.example.com%2f@10.0.0.1",
        "http://shop.example.com /x",
    ] {
        let refused = endpoint(odd, lists.clone()).unwrap_err().0;
        assert!(
            refused.contains("holds a character endpoints may not"),
            "{odd}: {refused}"
        );
    }
}

#[test]
fn an_override_cannot_turn_a_manifest_into_one_the_denylist_refuses() {
    let service = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "edge"}, "spec": {"ports": [{"port": 80}]}});
    let patched = spec(json!({
        "resources": [service],
        "regions": [{"name": "us-east", "overrides": {"resources": [{"kind": "Service", "name": "edge",
            "patches": [{"op": "add", "path": "/spec/externalIPs", "value": ["1.2.3.4"]}]}]}}, {"name": "eu-west"}]
    }));
    let refused = refusal(&patched, region(json!({})));
    assert!(
        refused.starts_with("spec.resources[0].spec.externalIPs:"),
        "{refused}"
    );
    assert!(
        refused.contains("with spec.regions[0].overrides for region us-east"),
        "{refused}"
    );
}

#[test]
fn apps_never_live_in_the_members_identity_namespace() {
    let labels = labels();
    let tenant = Tenant {
        namespace: "multiregion-system",
        labels: &labels,
        operator_namespace: "ops",
        allowed_domains: None,
        allowed_kinds: None,
    };
    let app = spec(json!({}));
    let template = manifest::validate_template(&app).unwrap();
    assert!(
        admit(
            &key(),
            &app,
            &template,
            &regions(region(json!({}))),
            &tenant
        )
        .is_err()
    );
}

/// Admits `manifests` as `spec.resources` in a namespace whose admin lists
/// `kinds`.
fn with_kinds(manifests: Value, kinds: &[&str]) -> Result<(), NotAllowed> {
    let app = spec(json!({ "resources": manifests }));
    let template = manifest::validate_template(&app).unwrap();
    let labels = labels();
    let kinds: Vec<String> = kinds.iter().map(|k| k.to_string()).collect();
    let tenant = Tenant {
        namespace: "shop",
        labels: &labels,
        operator_namespace: "multiregion-system",
        allowed_domains: None,
        allowed_kinds: Some(&kinds),
    };
    admit(
        &key(),
        &app,
        &template,
        &regions(region(json!({}))),
        &tenant,
    )
}

#[test]
fn a_namespace_places_only_the_kinds_its_admin_lists() {
    let config = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}});
    let budget = json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "b"}, "spec": {"maxUnavailable": 1}});
    let service = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}, "spec": {"ports": [{"port": 80}]}});
    let kinds = ["ConfigMap", " poddisruptionbudget.POLICY "];
    assert_eq!(with_kinds(json!([config, budget]), &kinds), Ok(()));
    let refused = with_kinds(json!([config, service]), &kinds).expect_err("refused");
    assert!(
        refused.0.starts_with(
            "spec.resources[1].kind: Service (v1) is not among the kinds namespace shop may place"
        ),
        "{}",
        refused.0
    );
    assert!(
        refused.0.contains("multiregion.io/allowed-kinds"),
        "{}",
        refused.0
    );
    // The group is part of the name: a core-group entry does not admit a
    // kind of the same name in another group, nor the reverse.
    let other_group =
        json!({"apiVersion": "example.com/v1", "kind": "ConfigMap", "metadata": {"name": "c"}});
    assert!(with_kinds(json!([other_group]), &kinds).is_err());
    assert!(with_kinds(json!([budget]), &["PodDisruptionBudget"]).is_err());
    // An empty list admits no kind; the denylist holds whatever is listed.
    assert!(with_kinds(json!([config]), &[]).is_err());
    let binding = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "x"}});
    let refused = with_kinds(json!([binding]), &["RoleBinding.rbac.authorization.k8s.io"]);
    assert!(
        refused
            .expect_err("denied")
            .0
            .contains("may not be placed through spec.resources"),
    );
}
