//! The Helm chart: lint, render with defaults and with every optional block,
//! refuse mistakes (strict schema, two writers), render each optional piece
//! (PodDisruptionBudget, NetworkPolicy, CRDs, monitors, alerts, dashboard)
//! as intended, keep its helm-docs README current; install into a real hub
//! whose namespace enforces the `restricted` Pod Security Standard, and run
//! the operator with the chart's ServiceAccount token (not admin) through a
//! failover; install the CRDs with the chart and keep them on uninstall.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::operator::{app_spec, apply_app, register_region, wait_weights};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{Api, Patch, PatchParams};
use serde_json::{Value, json};

const NS: &str = "multiregion-system";

fn chart() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("charts/multiregion")
}

fn run(program: &Path, args: &[&str]) -> String {
    let out = Command::new(program).args(args).output().expect("runs");
    assert!(
        out.status.success(),
        "{} {args:?}: {}{}",
        program.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn kinds(rendered: &str) -> Vec<String> {
    rendered
        .lines()
        .filter_map(|l| l.strip_prefix("kind: "))
        .map(str::to_string)
        .collect()
}

#[test]
fn the_chart_lints_and_renders_with_and_without_its_options() {
    let helm = localregions::Binaries::locate().unwrap().path("helm");
    let chart = chart();
    let chart = chart.to_str().unwrap();
    let lint = run(&helm, &["lint", "--strict", chart]);
    assert!(lint.contains("0 chart(s) failed"), "{lint}");
    let defaults = run(&helm, &["template", "t", chart, "-n", NS]);
    let mut got = kinds(&defaults);
    got.sort();
    assert_eq!(
        got,
        [
            "ClusterRole",
            "ClusterRole",
            "ClusterRole",
            "ClusterRole",
            "ClusterRoleBinding",
            "Deployment",
            "NetworkPolicy",
            "PodDisruptionBudget",
            "Role",
            "RoleBinding",
            "Service",
            "ServiceAccount"
        ]
    );
    assert!(!defaults.contains("\"*\""), "no wildcards in RBAC");
    let everything = run(
        &helm,
        &[
            "template",
            "t",
            chart,
            "-n",
            NS,
            "--set",
            "serviceMonitor.enabled=true,networkPolicy.enabled=true,rbac.hubIsRegion=true,metrics.service.type=NodePort",
        ],
    );
    let got = kinds(&everything);
    assert!(
        got.contains(&"ServiceMonitor".to_string()) && got.contains(&"NetworkPolicy".to_string())
    );
    assert!(
        everything.contains("deployments"),
        "hubIsRegion grants Deployments"
    );
    // The schema refuses bad values.
    let out = Command::new(&helm)
        .args(["template", "t", chart, "--set", "logFormat=xml"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("logFormat"));
}

/// The resources the operator's ClusterRole grants, and the operator's
/// MULTIREGION_PROPAGATE_SECRETS.
fn propagation(args: &[&str]) -> (Vec<String>, String) {
    let docs = rendered(args);
    let role = of_kind(&docs, "ClusterRole")
        .into_iter()
        .find(|r| r["metadata"]["name"] == "t-multiregion")
        .expect("the operator's ClusterRole");
    let resources = role["rules"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r["resources"].as_array().unwrap().clone())
        .map(|r| r.as_str().unwrap().to_string())
        .collect();
    let env = one(&docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "MULTIREGION_PROPAGATE_SECRETS")
        .map(|e| e["value"].as_str().unwrap().to_string())
        .unwrap();
    (resources, env)
}

#[test]
fn secrets_are_read_across_the_hub_only_when_propagation_secrets_is_on() {
    let (resources, env) = propagation(&[]);
    assert!(
        resources.contains(&"configmaps".to_string()),
        "{resources:?}"
    );
    assert!(!resources.contains(&"secrets".to_string()), "{resources:?}");
    assert_eq!(env, "false");
    let (resources, env) = propagation(&["--set", "propagation.secrets=true"]);
    assert!(resources.contains(&"secrets".to_string()), "{resources:?}");
    assert_eq!(env, "true");
    refused(&["--set", "propagation.secret=true"], &["propagation"]);
}

#[test]
fn extra_resource_kinds_are_granted_in_the_hub_only_when_it_is_a_region() {
    let hpa = r#"rbac.hubResources=[{"apiGroups":["autoscaling"],"resources":["horizontalpodautoscalers"]}]"#;
    let (resources, _) = propagation(&["--set-json", hpa]);
    assert!(
        !resources.contains(&"horizontalpodautoscalers".to_string()),
        "{resources:?}"
    );
    let (resources, _) = propagation(&["--set", "rbac.hubIsRegion=true", "--set-json", hpa]);
    assert!(
        resources.contains(&"horizontalpodautoscalers".to_string()),
        "{resources:?}"
    );
    refused(
        &["--set-json", r#"rbac.hubResources=[{"resources":["x"]}]"#],
        &["apiGroups"],
    );
}

/// `helm template` with the given extra arguments (`--set`, `--set-json`,
/// `-f`): the rendered manifests, or the error Helm printed.
fn template(args: &[&str]) -> Result<String, String> {
    let helm = localregions::Binaries::locate().unwrap().path("helm");
    let chart = chart();
    let out = Command::new(&helm)
        .args(["template", "t", chart.to_str().unwrap(), "-n", NS])
        .args(args)
        .output()
        .expect("helm runs");
    if out.status.success() {
        Ok(String::from_utf8(out.stdout).unwrap())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// Renders, or panics with Helm's error.
fn rendered(args: &[&str]) -> Vec<Value> {
    let yaml = template(args).unwrap_or_else(|e| panic!("helm template {args:?}: {e}"));
    documents(&yaml)
}

/// Helm refuses to render, and says so naming every one of `words`.
fn refused(args: &[&str], words: &[&str]) {
    match template(args) {
        Ok(_) => panic!("helm template {args:?} must fail"),
        Err(e) => {
            for w in words {
                assert!(e.contains(w), "helm template {args:?}: {w:?} not in: {e}");
            }
        }
    }
}

/// The YAML documents of a multi-document stream, without empty ones.
fn documents(yaml: &str) -> Vec<Value> {
    serde_saphyr::from_multiple::<Value>(yaml)
        .expect("valid YAML")
        .into_iter()
        .filter(|d| !d.is_null())
        .collect()
}

fn of_kind<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

fn one<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    let found = of_kind(docs, kind);
    assert_eq!(found.len(), 1, "one {kind} in {docs:#?}");
    found[0]
}

#[test]
fn the_schema_refuses_unknown_keys_at_every_level_and_wrong_types() {
    // Unknown keys: at the root, one level down, deep in the alerts, in a
    // list item, in a scheduling block.
    refused(&["--set", "replicas=3"], &["replicas", "not allowed"]);
    refused(
        &["--set", "serviceMonitor.intreval=1m"],
        &["serviceMonitor", "intreval", "not allowed"],
    );
    refused(
        &["--set", "prometheusRule.alerts.noLeader.forr=1m"],
        &["noLeader", "forr", "not allowed"],
    );
    refused(
        &[
            "--set-json",
            r#"networkPolicy.metricsFrom=[{"podSelector":{"matchLabel":{"a":"b"}}}]"#,
        ],
        &["metricsFrom", "matchLabel", "not allowed"],
    );
    refused(
        &["--set", "affinity.nodeAffinity.requiredDuringScheduling=x"],
        &["nodeAffinity", "not allowed"],
    );
    refused(
        &["--set", "resources.request.cpu=1"],
        &["resources", "request"],
    );
    // Types, enums, ranges, patterns.
    refused(
        &["--set", "leaderElection.enabled=yes"],
        &["leaderElection/enabled"],
    );
    refused(&["--set", "metrics.port=70000"], &["metrics/port"]);
    // The binary refuses a token living under 10 minutes.
    for ttl in ["5m", "0h", "90s"] {
        refused(
            &["--set", &format!("metrics.scraperTokenTTL={ttl}")],
            &["metrics/scraperTokenTTL"],
        );
    }
    refused(&["--set", "replicaCount=0"], &["replicaCount"]);
    refused(
        &["--set", "prometheusRule.alerts.noLeader.severity=page"],
        &["severity", "critical"],
    );
    refused(
        &["--set", "prometheusRule.alerts.regionUnreachable.for=five"],
        &["regionUnreachable/for"],
    );
    refused(
        &["--set", "prometheusRule.alerts.slowDecisions.quantile=1.5"],
        &["quantile"],
    );
    refused(
        &[
            "--set-json",
            r#"networkPolicy.healthCheckCIDRs=["10.0.0.0/33"]"#,
        ],
        &["healthCheckCIDRs"],
    );
    refused(&["--set", "image.pullPolicy=Sometimes"], &["pullPolicy"]);
    refused(
        &["--set", "fullnameOverride=Not_A_Name"],
        &["fullnameOverride"],
    );
    // A removed required value is refused too, not silently defaulted.
    refused(
        &["--set", "leaderElection.enabled=null"],
        &["leaderElection", "enabled"],
    );
    // Declared values are accepted and used.
    let docs = rendered(&["--set", "fullnameOverride=mr,nameOverride=operator"]);
    let deployment = one(&docs, "Deployment");
    assert_eq!(deployment["metadata"]["name"], "mr");
    assert_eq!(
        deployment["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"],
        "operator"
    );
}

#[test]
fn two_replicas_without_leader_election_are_refused() {
    refused(
        &["--set", "replicaCount=2,leaderElection.enabled=false"],
        &[
            "replicaCount is 2",
            "leaderElection.enabled is false",
            "two writers",
        ],
    );
    // One replica may run without a Lease.
    let docs = rendered(&["--set", "replicaCount=1,leaderElection.enabled=false"]);
    let env = &one(&docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["env"];
    let election = env
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "MULTIREGION_LEADER_ELECTION")
        .unwrap();
    assert_eq!(election["value"], "false");
    // And the other combinations the schema cannot express.
    refused(
        &[
            "--set",
            "serviceMonitor.enabled=true,podMonitor.enabled=true,podMonitor.tokenSecret.name=s,podMonitor.tokenSecret.key=k",
        ],
        &["serviceMonitor.enabled and podMonitor.enabled"],
    );
    refused(
        &[
            "--set",
            "serviceMonitor.enabled=true,metrics.service.enabled=false",
        ],
        &["metrics.service.enabled"],
    );
}

#[test]
fn the_pod_disruption_budget_needs_more_than_one_replica() {
    let docs = rendered(&["--set", "replicaCount=1"]);
    assert!(
        of_kind(&docs, "PodDisruptionBudget").is_empty(),
        "with one replica a PDB only blocks node drains"
    );
    assert_eq!(one(&docs, "Deployment")["spec"]["replicas"], 1);
    let docs = rendered(&["--set", "replicaCount=3"]);
    let pdb = one(&docs, "PodDisruptionBudget");
    assert_eq!(pdb["spec"]["minAvailable"], 1);
    assert_eq!(
        pdb["spec"]["selector"]["matchLabels"],
        one(&docs, "Deployment")["spec"]["selector"]["matchLabels"]
    );
    let docs = rendered(&["--set", "replicaCount=3,podDisruptionBudget.enabled=false"]);
    assert!(of_kind(&docs, "PodDisruptionBudget").is_empty());
    refused(
        &["--set", "replicaCount=2,podDisruptionBudget.minAvailable=2"],
        &["minAvailable (2) must be below replicaCount (2)"],
    );
    rendered(&["--set", "podDisruptionBudget.minAvailable=50%"]);
}

/// The egress rules of the rendered NetworkPolicy as (peers, ports) pairs.
fn egress(args: &[&str]) -> Vec<(Vec<String>, Vec<String>)> {
    let mut all = vec!["--set", "networkPolicy.enabled=true"];
    all.extend_from_slice(args);
    let docs = rendered(&all);
    let policy = one(&docs, "NetworkPolicy");
    assert_eq!(policy["spec"]["policyTypes"], json!(["Ingress", "Egress"]));
    policy["spec"]["egress"]
        .as_array()
        .unwrap()
        .iter()
        .map(|rule| {
            let peers = rule["to"]
                .as_array()
                .map(|to| {
                    to.iter()
                        .map(|p| p["ipBlock"]["cidr"].as_str().unwrap().to_string())
                        .collect()
                })
                .unwrap_or_default();
            let ports = rule["ports"]
                .as_array()
                .map(|ports| {
                    ports
                        .iter()
                        .map(|p| match p.get("endPort") {
                            Some(end) => {
                                format!("{}/{}-{end}", p["protocol"].as_str().unwrap(), p["port"])
                            }
                            None => format!("{}/{}", p["protocol"].as_str().unwrap(), p["port"]),
                        })
                        .collect()
                })
                .unwrap_or_default();
            (peers, ports)
        })
        .collect()
}

#[test]
fn the_network_policy_lets_out_dns_the_api_servers_and_the_health_checks() {
    let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let anywhere = strings(&["0.0.0.0/0"]);
    assert_eq!(
        egress(&[]),
        [
            (vec![], strings(&["UDP/53", "TCP/53"])),
            (anywhere.clone(), strings(&["TCP/443", "TCP/6443"])),
            (anywhere.clone(), strings(&["TCP/5432"])),
            (
                anywhere.clone(),
                strings(&[
                    "TCP/80",
                    "TCP/443",
                    "TCP/8080",
                    "TCP/8443",
                    "TCP/30000-32767"
                ])
            ),
        ],
        "DNS, API servers on 443/6443, databases on 5432, endpoints on the common ports and the NodePort range"
    );
    assert_eq!(
        egress(&[]),
        {
            let docs = rendered(&[]);
            let _on_by_default = one(&docs, "NetworkPolicy");
            egress(&["--set", "networkPolicy.enabled=true"])
        },
        "on by default"
    );
    let no_databases = egress(&["--set-json", "networkPolicy.databasePorts=[]"]);
    assert_eq!(no_databases.len(), 3, "no database rule: {no_databases:?}");
    // Narrowed to where the endpoints are, on the ports they use.
    let custom = egress(&[
        "--set-json",
        r#"networkPolicy.healthCheckCIDRs=["10.1.0.0/16","192.168.7.0/24"]"#,
        "--set-json",
        r#"networkPolicy.healthCheckPorts=[9000,{"port":31000,"endPort":31010}]"#,
        "--set-json",
        r#"networkPolicy.apiServerCIDRs=["10.0.0.1/32"]"#,
    ]);
    assert_eq!(
        custom[1],
        (strings(&["10.0.0.1/32"]), strings(&["TCP/443", "TCP/6443"]))
    );
    assert_eq!(
        custom[3],
        (
            strings(&["10.1.0.0/16", "192.168.7.0/24"]),
            strings(&["TCP/9000", "TCP/31000-31010"])
        )
    );
    // No ports: every port on those CIDRs.
    let any_port = egress(&["--set-json", "networkPolicy.healthCheckPorts=[]"]);
    assert_eq!(any_port[3], (anywhere, vec![]));
    refused(
        &[
            "--set",
            "networkPolicy.enabled=true",
            "--set-json",
            r#"networkPolicy.healthCheckPorts=[{"port":32000,"endPort":31000}]"#,
        ],
        &["32000-31000 ends before it starts"],
    );
    // Ingress: the metrics port only.
    let docs = rendered(&["--set", "networkPolicy.enabled=true"]);
    assert_eq!(
        one(&docs, "NetworkPolicy")["spec"]["ingress"],
        json!([{"ports": [{"port": 8080, "protocol": "TCP"}]}])
    );
}

#[test]
fn the_crds_render_with_the_keep_policy_and_equal_the_repositorys() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let source = std::fs::read_to_string(root.join("crds/multiregion.yaml")).unwrap();
    let copy = std::fs::read_to_string(chart().join("files/crds.yaml")).unwrap();
    assert!(
        copy == source,
        "charts/multiregion/files/crds.yaml differs from crds/multiregion.yaml: run `cp crds/multiregion.yaml charts/multiregion/files/crds.yaml`"
    );
    assert!(of_kind(&rendered(&[]), "CustomResourceDefinition").is_empty());
    let docs = rendered(&["--set", "crds.enabled=true"]);
    let crds = of_kind(&docs, "CustomResourceDefinition");
    let names: Vec<_> = crds.iter().map(|c| c["metadata"]["name"].clone()).collect();
    assert_eq!(
        names,
        ["regions.multiregion.io", "multiregionapps.multiregion.io"]
    );
    let expected = documents(&source);
    assert_eq!(crds.len(), expected.len());
    for (crd, expected) in crds.into_iter().zip(expected) {
        let mut crd = crd.clone();
        let annotations = crd["metadata"]["annotations"].as_object_mut().unwrap();
        assert_eq!(
            annotations.remove("helm.sh/resource-policy"),
            Some(json!("keep")),
            "uninstall must keep the CRDs"
        );
        if annotations.is_empty() {
            crd["metadata"]
                .as_object_mut()
                .unwrap()
                .remove("annotations");
        }
        assert!(
            crd == expected,
            "the chart renders {} other than crds/",
            expected["metadata"]["name"]
        );
    }
}

#[test]
fn metrics_are_served_to_whom_the_hub_allows_by_default() {
    let docs = rendered(&[]);
    let env = &one(&docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["env"];
    let auth = env
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "MULTIREGION_METRICS_AUTH")
        .unwrap();
    assert_eq!(auth["value"], "kubernetes");
    let roles = of_kind(&docs, "ClusterRole");
    let reader = roles
        .iter()
        .find(|r| r["metadata"]["name"] == "t-multiregion-metrics-reader")
        .expect("a metrics-reader ClusterRole");
    assert_eq!(reader["rules"][0]["nonResourceURLs"][0], "/metrics");
    let operator = roles
        .iter()
        .find(|r| r["metadata"]["name"] == "t-multiregion")
        .unwrap();
    let rules = operator["rules"].to_string();
    assert!(rules.contains("tokenreviews") && rules.contains("subjectaccessreviews"));

    let open = rendered(&["--set", "metrics.authenticate=false"]);
    let roles = of_kind(&open, "ClusterRole");
    assert!(
        !roles.iter().any(|r| r.to_string().contains("tokenreviews")),
        "no reviews without it"
    );
    assert!(
        !roles
            .iter()
            .any(|r| r["metadata"]["name"] == "t-multiregion-metrics-reader")
    );
}

#[test]
fn the_monitors_keep_the_apps_namespace_label() {
    let docs = rendered(&[
        "--set",
        "serviceMonitor.enabled=true,serviceMonitor.labels.release=prom",
    ]);
    let monitor = one(&docs, "ServiceMonitor");
    let endpoint = &monitor["spec"]["endpoints"][0];
    assert_eq!(
        endpoint["honorLabels"], true,
        "namespace must not become exported_namespace"
    );
    assert_eq!(endpoint["port"], "metrics");
    assert_eq!(endpoint["interval"], "30s");
    assert_eq!(monitor["metadata"]["labels"]["release"], "prom");
    assert_eq!(
        monitor["spec"]["selector"]["matchLabels"],
        one(&docs, "Service")["spec"]["selector"]
    );
    assert!(of_kind(&docs, "PodMonitor").is_empty());
    assert_eq!(
        endpoint["bearerTokenFile"], "/var/run/secrets/kubernetes.io/serviceaccount/token",
        "metrics.authenticate (the default): Prometheus sends its own token"
    );

    // A PodMonitor given no token Secret sends the chart's scraper token:
    // a ServiceAccount that may get /metrics and nothing else, whose
    // short-lived token the operator keeps in a Secret (never a token
    // Secret of the ServiceAccount's, which would not expire).
    let docs = rendered(&["--set", "podMonitor.enabled=true"]);
    let monitor = one(&docs, "PodMonitor");
    let credentials = &monitor["spec"]["podMetricsEndpoints"][0]["authorization"]["credentials"];
    assert_eq!(credentials["name"], "t-multiregion-scraper-bearer-token");
    assert_eq!(credentials["key"], "token");
    let token = one(&docs, "Secret");
    assert_eq!(
        token["metadata"]["name"],
        "t-multiregion-scraper-bearer-token"
    );
    assert_eq!(token["type"], "Opaque");
    let env = &one(&docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["env"];
    let value = |name: &str| {
        env.as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == name)
            .map(|e| e["value"].clone())
    };
    assert_eq!(
        value("MULTIREGION_SCRAPER_SERVICE_ACCOUNT"),
        Some(json!("t-multiregion-scraper"))
    );
    assert_eq!(value("MULTIREGION_SCRAPER_TOKEN_TTL"), Some(json!("1h")));
    let role = one(&docs, "Role");
    let asks = role["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["resources"][0] == "serviceaccounts/token")
        .expect("the operator may ask for the scraper's token");
    assert_eq!(asks["resourceNames"], json!(["t-multiregion-scraper"]));
    assert_eq!(asks["verbs"], json!(["create"]));
    let binding = of_kind(&docs, "ClusterRoleBinding")
        .into_iter()
        .find(|b| b["metadata"]["name"] == "t-multiregion-scraper")
        .expect("the scraper's binding");
    assert_eq!(binding["roleRef"]["name"], "t-multiregion-metrics-reader");
    assert_eq!(binding["subjects"][0]["name"], "t-multiregion-scraper");
    // Off without authentication, and with a token Secret of the user's.
    for args in [
        "podMonitor.enabled=true,metrics.authenticate=false",
        "podMonitor.enabled=true,podMonitor.tokenSecret.name=s,podMonitor.tokenSecret.key=k",
    ] {
        let docs = rendered(&["--set", args]);
        assert!(of_kind(&docs, "Secret").is_empty(), "{args}");
        let role = serde_json::to_string(&one(&docs, "Role")).unwrap();
        assert!(!role.contains("serviceaccounts/token"), "{args}: {role}");
    }
    let docs = rendered(&[
        "--set",
        "podMonitor.enabled=true,podMonitor.interval=15s,podMonitor.tokenSecret.name=scrape,podMonitor.tokenSecret.key=token",
    ]);
    assert!(of_kind(&docs, "ServiceMonitor").is_empty());
    let monitor = one(&docs, "PodMonitor");
    let endpoint = &monitor["spec"]["podMetricsEndpoints"][0];
    assert_eq!(endpoint["honorLabels"], true);
    assert_eq!(endpoint["port"], "metrics", "the container port's name");
    assert_eq!(endpoint["path"], "/metrics");
    assert_eq!(endpoint["interval"], "15s");
    assert_eq!(endpoint["authorization"]["credentials"]["name"], "scrape");
    let deployment = one(&docs, "Deployment");
    assert_eq!(
        monitor["spec"]["selector"]["matchLabels"],
        deployment["spec"]["selector"]["matchLabels"]
    );
    assert_eq!(
        deployment["spec"]["template"]["spec"]["containers"][0]["ports"][0]["name"],
        "metrics"
    );
}

/// The alerts of the rendered PrometheusRule by name.
fn alerts(args: &[&str]) -> std::collections::BTreeMap<String, Value> {
    let mut all = vec!["--set", "prometheusRule.enabled=true"];
    all.extend_from_slice(args);
    let docs = rendered(&all);
    let rule = one(&docs, "PrometheusRule");
    rule["spec"]["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap().clone())
        .map(|r| (r["alert"].as_str().unwrap().to_string(), r))
        .collect()
}

#[test]
fn the_prometheus_rule_alerts_on_every_failure_it_names() {
    assert!(of_kind(&rendered(&[]), "PrometheusRule").is_empty());
    let rules = alerts(&["--set", "prometheusRule.alertLabels.team=sre"]);
    let runbooks =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/runbooks.md"))
            .unwrap();
    // Each alert and the series its expression must read.
    let expected = [
        (
            "MultiregionRegionUnreachable",
            "multiregion_region_reachable",
        ),
        ("MultiregionAppFailedOver", "multiregion_failovers_total"),
        (
            "MultiregionDrillAborted",
            r#"multiregion_drills_total{result="Aborted"}"#,
        ),
        (
            "MultiregionAllRegionsUnhealthy",
            "sum by (namespace, app) (multiregion_app_region_healthy) == 0",
        ),
        (
            "MultiregionFlapDamped",
            r#"multiregion_app_condition{condition="FlapDamped"}"#,
        ),
        (
            "MultiregionPromotionBlocked",
            r#"multiregion_app_condition{condition="PromotionBlocked"}"#,
        ),
        (
            "MultiregionEvidenceUnknown",
            r#"multiregion_app_condition{condition="EvidenceUnknown"}"#,
        ),
        (
            "MultiregionRegionCredentialsStale",
            "multiregion_region_credentials_stale",
        ),
        (
            "MultiregionDegraded",
            r#"multiregion_app_condition{condition="Degraded"}"#,
        ),
        (
            "MultiregionTrafficNotPublished",
            r#"multiregion_app_condition{condition="TrafficPublished"}) == 0"#,
        ),
        (
            "MultiregionReconcileErrors",
            "multiregion_reconcile_errors_total",
        ),
        (
            "MultiregionSlowDecisions",
            "multiregion_decision_latency_seconds_bucket",
        ),
        ("MultiregionNoLeader", "multiregion_leader"),
        (
            "MultiregionAppNotReady",
            r#"multiregion_app_condition{condition="Ready"}) == 0"#,
        ),
        (
            "MultiregionConflict",
            r#"multiregion_app_condition{condition="Conflict"}"#,
        ),
    ];
    let mut names: Vec<&str> = expected.iter().map(|(alert, _)| *alert).collect();
    names.sort();
    assert_eq!(rules.keys().collect::<Vec<_>>(), names);
    for (alert, series) in expected {
        let rule = &rules[alert];
        let expr = rule["expr"].as_str().unwrap();
        assert!(expr.contains(series), "{alert}: {series} not in {expr}");
        assert!(
            ["critical", "warning", "info"].contains(&rule["labels"]["severity"].as_str().unwrap()),
            "{alert}: severity"
        );
        assert_eq!(rule["labels"]["team"], "sre", "{alert}: alertLabels");
        assert!(
            rule["annotations"]["summary"]
                .as_str()
                .is_some_and(|s| !s.is_empty())
        );
        assert!(
            rule["annotations"]["description"]
                .as_str()
                .is_some_and(|s| !s.is_empty())
        );
        let runbook = format!(
            "https://multiregion.io/docs/runbooks#{}",
            alert.to_lowercase()
        );
        assert_eq!(
            rule["annotations"]["runbook_url"],
            runbook.as_str(),
            "{alert}"
        );
        let heading = format!("\n## {alert}\n");
        assert!(
            runbooks.contains(&heading),
            "docs/runbooks.md has no section {alert}"
        );
        // The operator-wide series are scoped to this release's namespace.
        if !expr.contains("namespace, app") {
            assert!(
                expr.contains(&format!(r#"namespace="{NS}""#)),
                "{alert}: {expr}"
            );
        }
    }
    assert!(
        rules["MultiregionNoLeader"]["expr"]
            .as_str()
            .unwrap()
            .contains(&format!(
                r#"absent(multiregion_leader{{namespace="{NS}"}})"#
            ))
    );
    assert!(
        rules["MultiregionAppFailedOver"]["expr"]
            .as_str()
            .unwrap()
            .contains(r#"increase(multiregion_failovers_total{planned="false"}[15m]) > 0"#)
    );
    // Durations and thresholds come from values; an alert can be switched off.
    let rules = alerts(&[
        "--set",
        "prometheusRule.alerts.regionUnreachable.for=7m,prometheusRule.alerts.noLeader.severity=warning",
        "--set",
        "prometheusRule.alerts.reconcileErrors.ratePerSecond=0.5,prometheusRule.alerts.slowDecisions.seconds=12",
        "--set",
        "prometheusRule.alerts.appFailedOver.window=1h,prometheusRule.alerts.degraded.enabled=false",
    ]);
    assert_eq!(rules["MultiregionRegionUnreachable"]["for"], "7m");
    assert_eq!(
        rules["MultiregionNoLeader"]["labels"]["severity"],
        "warning"
    );
    assert!(
        rules["MultiregionReconcileErrors"]["expr"]
            .as_str()
            .unwrap()
            .ends_with("> 0.5")
    );
    assert!(
        rules["MultiregionSlowDecisions"]["expr"]
            .as_str()
            .unwrap()
            .ends_with("> 12")
    );
    assert!(
        rules["MultiregionAppFailedOver"]["expr"]
            .as_str()
            .unwrap()
            .contains("[1h]")
    );
    assert!(!rules.contains_key("MultiregionDegraded"));
    assert_eq!(rules.len(), expected.len() - 1);
}

/// promtool's bin directory, built (or found cached) by
/// tests/controlplane/build-promtool.sh.
fn promtool() -> PathBuf {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/controlplane/build-promtool.sh");
    let out = Command::new("bash")
        .arg(script)
        .output()
        .expect("bash runs");
    assert!(
        out.status.success(),
        "build-promtool.sh: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim()).join("promtool")
}

#[test]
fn the_alerts_fire_on_what_they_name_and_stay_quiet_otherwise() {
    let docs = rendered(&["--set", "prometheusRule.enabled=true"]);
    let rule = one(&docs, "PrometheusRule");
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("promtool");
    std::fs::create_dir_all(&dir).unwrap();
    let rules = serde_saphyr::to_string(&rule["spec"]).unwrap();
    std::fs::write(dir.join("rules.yaml"), rules).unwrap();
    let tests = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/alerts/alerts.test.yaml");
    std::fs::copy(&tests, dir.join("alerts.test.yaml")).unwrap();
    let promtool = promtool();
    let check = run(
        &promtool,
        &["check", "rules", dir.join("rules.yaml").to_str().unwrap()],
    );
    assert!(check.contains("SUCCESS"), "{check}");
    let test = Command::new(&promtool)
        .args(["test", "rules", "alerts.test.yaml"])
        .current_dir(&dir)
        .output()
        .unwrap();
    assert!(
        test.status.success(),
        "promtool test rules:\n{}{}",
        String::from_utf8_lossy(&test.stdout),
        String::from_utf8_lossy(&test.stderr)
    );
}

#[test]
fn the_dashboard_configmap_holds_grafana_json_with_the_panels() {
    assert!(of_kind(&rendered(&[]), "ConfigMap").is_empty());
    let docs = rendered(&["--set", "dashboard.enabled=true"]);
    let map = one(&docs, "ConfigMap");
    assert_eq!(map["metadata"]["labels"]["grafana_dashboard"], "1");
    assert_eq!(map["metadata"]["namespace"], NS);
    let text = map["data"]["multiregion.json"].as_str().unwrap();
    let file = std::fs::read_to_string(chart().join("dashboards/multiregion.json")).unwrap();
    assert_eq!(
        text,
        file.trim_end(),
        "the ConfigMap holds the file unchanged"
    );
    let dashboard: Value = serde_json::from_str(text).expect("valid JSON");
    assert!(
        dashboard["uid"]
            .as_str()
            .is_some_and(|u| !u.is_empty() && u.len() <= 40)
    );
    assert!(dashboard["schemaVersion"].as_u64().is_some());
    assert!(dashboard["title"].as_str().is_some());

    let variables = dashboard["templating"]["list"].as_array().unwrap();
    let variable = |name: &str| {
        variables
            .iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("template variable {name}"))
    };
    assert_eq!(variable("datasource")["type"], "datasource");
    assert_eq!(variable("datasource")["query"], "prometheus");
    for name in ["namespace", "app"] {
        let v = variable(name);
        assert_eq!(v["type"], "query");
        assert!(
            v["definition"]
                .as_str()
                .unwrap()
                .starts_with("label_values(multiregion_traffic_weight")
        );
    }

    let panels = dashboard["panels"].as_array().unwrap();
    let mut ids: Vec<_> = panels.iter().map(|p| p["id"].as_u64().unwrap()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), panels.len(), "panel ids are unique");
    for p in panels {
        let pos = &p["gridPos"];
        assert!(
            pos["w"].as_u64().unwrap() + pos["x"].as_u64().unwrap() <= 24,
            "{}",
            p["title"]
        );
        if p["type"] != "row" {
            assert!(
                !p["targets"].as_array().unwrap().is_empty(),
                "{}",
                p["title"]
            );
            assert_eq!(p["datasource"]["uid"], "${datasource}", "{}", p["title"]);
        }
    }
    let panel = |title: &str| {
        panels
            .iter()
            .find(|p| p["title"] == title)
            .unwrap_or_else(|| panic!("panel {title}"))
    };
    let exprs = |title: &str| -> Vec<String> {
        panel(title)["targets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["expr"].as_str().unwrap().to_string())
            .collect()
    };
    let per_app = r#"{namespace="$namespace", app="$app"}"#;
    for (title, series) in [
        ("Traffic weight by region", "multiregion_traffic_weight"),
        ("Health by region", "multiregion_app_region_healthy"),
        ("Failovers", "multiregion_failovers_total"),
        ("Conditions", "multiregion_app_condition"),
    ] {
        let e = exprs(title).join(" ");
        assert!(e.contains(&format!("{series}{per_app}")), "{title}: {e}");
    }
    assert!(exprs("Traffic weight by region")[0].contains("by (region)"));
    assert!(exprs("Health by region")[0].contains("by (region)"));
    let latency = exprs("Decision latency (all apps)");
    assert_eq!(latency.len(), 3, "three quantiles");
    for (e, q) in latency.iter().zip(["0.5", "0.9", "0.99"]) {
        assert!(
            e.starts_with(&format!("histogram_quantile({q},"))
                && e.contains("multiregion_decision_latency_seconds_bucket"),
            "{e}"
        );
    }
    assert!(exprs("Reconcile errors")[0].contains("multiregion_reconcile_errors_total"));
    assert!(exprs("Leader")[0].contains("multiregion_leader"));
    assert!(exprs("Version")[0].contains("multiregion_build_info"));

    // The sidecar's label is configurable, and so is where the ConfigMap goes.
    let docs = rendered(&[
        "--set",
        "dashboard.enabled=true,dashboard.labels.grafana_dashboard=null,dashboard.labels.dashboards=multiregion,dashboard.namespace=monitoring",
    ]);
    let map = one(&docs, "ConfigMap");
    assert!(map["metadata"]["labels"].get("grafana_dashboard").is_none());
    assert_eq!(map["metadata"]["labels"]["dashboards"], "multiregion");
    assert_eq!(map["metadata"]["namespace"], "monitoring");
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// The CI check that charts/multiregion/README.md is what helm-docs makes
/// of values.yaml and README.md.gotmpl (built from its Go module by
/// tests/controlplane/build-helmdocs.sh, which also holds the flags).
#[test]
fn the_chart_follows_helm_conventions() {
    let digest = format!("sha256:{}", "a".repeat(64));
    let docs = rendered(&[
        "--set",
        &format!("image.digest={digest},priorityClassName=high"),
        "--set",
        "extraArgs={--propagate-secrets},extraEnv[0].name=HTTPS_PROXY,extraEnv[0].value=http://proxy:3128",
        "--set",
        "extraVolumes[0].name=ca,extraVolumes[0].configMap.name=ingress-ca,extraVolumeMounts[0].name=ca,extraVolumeMounts[0].mountPath=/etc/ca",
        "--set",
        "podSecurityContext.runAsUser=1001,securityContext.readOnlyRootFilesystem=true",
    ]);
    let pod = &one(&docs, "Deployment")["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    assert_eq!(
        container["image"],
        format!("ghcr.io/multiregion/multiregion@{digest}").as_str()
    );
    assert_eq!(pod["priorityClassName"], "high");
    assert_eq!(
        container["args"],
        serde_json::json!(["run", "--propagate-secrets"])
    );
    assert!(
        container["env"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["name"] == "HTTPS_PROXY")
    );
    assert_eq!(pod["volumes"][0]["configMap"]["name"], "ingress-ca");
    assert_eq!(container["volumeMounts"][0]["mountPath"], "/etc/ca");
    assert_eq!(pod["securityContext"]["runAsUser"], 1001);
    assert_eq!(
        pod["securityContext"]["runAsNonRoot"], true,
        "defaults kept"
    );
    // Namespace users get MultiRegionApps with the built-in roles.
    let defaults = rendered(&[]);
    let roles: Vec<&Value> = of_kind(&defaults, "ClusterRole");
    let aggregated = |role: &str| {
        roles.iter().any(|r| {
            r["metadata"]["labels"][format!("rbac.authorization.k8s.io/aggregate-to-{role}")]
                == "true"
        })
    };
    assert!(aggregated("view") && aggregated("edit") && aggregated("admin"));
    let off = rendered(&["--set", "rbac.aggregateToDefaultRoles=false"]);
    assert_eq!(of_kind(&off, "ClusterRole").len(), roles.len() - 2);
    let chart = std::fs::read_to_string(chart().join("Chart.yaml")).unwrap();
    assert!(chart.contains("artifacthub.io/license: Apache-2.0"));
    refused(&["--set", "image.digest=latest"], &["digest"]);
}

#[test]
fn the_chart_readme_is_current_with_helm_docs() {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("chart-readme");
    let _ = std::fs::remove_dir_all(&dir);
    let copy = dir.join("multiregion");
    copy_dir(&chart(), &copy);
    std::fs::remove_file(copy.join("README.md")).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/controlplane/build-helmdocs.sh");
    let out = Command::new("bash")
        .arg(&script)
        .args(["docs", copy.to_str().unwrap()])
        .output()
        .expect("bash runs");
    assert!(
        out.status.success(),
        "build-helmdocs.sh docs: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let generated = std::fs::read_to_string(copy.join("README.md")).unwrap();
    let committed = std::fs::read_to_string(chart().join("README.md")).unwrap();
    assert!(
        generated == committed,
        "charts/multiregion/README.md is not current: run `tests/controlplane/build-helmdocs.sh docs charts/multiregion`"
    );
    // Every value is documented (helm-docs lists undocumented ones with an
    // empty description), and the values table covers the new blocks.
    let (_, values) = generated
        .split_once("\n## Values\n")
        .expect("a Values section");
    let rows: Vec<&str> = values
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| Key |"))
        .collect();
    assert!(rows.len() > 50, "{rows:?}");
    for row in &rows {
        let description = row
            .trim_end_matches('|')
            .rsplit(" | ")
            .next()
            .unwrap()
            .trim();
        assert!(!description.is_empty(), "undocumented value: {row}");
    }
    for key in [
        "| nameOverride |",
        "| fullnameOverride |",
        "| crds.enabled |",
        "| serviceMonitor.honorLabels |",
        "| podMonitor.enabled |",
        "| prometheusRule.alerts.noLeader.for |",
        "| dashboard.labels |",
        "| networkPolicy.healthCheckPorts |",
    ] {
        assert!(generated.contains(key), "{key} in the values table");
    }
}

/// The namespace enforces the restricted Pod Security Standard; the CRDs
/// are applied with kubectl and the chart installed with Helm (KWOK runs the
/// pods, so --wait proves the Deployment is admitted and becomes available
/// under the restricted policy), with its NetworkPolicy and dashboard
/// ConfigMap, which the API server must accept.
async fn install(regions: &localregions::Guard, hub: &kube::Client) {
    let bin = regions.bin_dir();
    let hub_kc = regions.kubeconfig("hub").unwrap();
    let hub_kc = hub_kc.to_str().unwrap();
    let namespaces: Api<Namespace> = Api::all(hub.clone());
    namespaces
        .patch(
            NS,
            &PatchParams::apply("test").force(),
            &Patch::Apply(json!({
                "apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": NS, "labels": {"pod-security.kubernetes.io/enforce": "restricted"}}
            })),
        )
        .await
        .unwrap();
    let crds = Path::new(env!("CARGO_MANIFEST_DIR")).join("crds");
    let kubectl = bin.join("kubectl");
    run(
        &kubectl,
        &[
            "--kubeconfig",
            hub_kc,
            "apply",
            "--server-side",
            "-f",
            crds.to_str().unwrap(),
        ],
    );
    run(
        &kubectl,
        &[
            "--kubeconfig",
            hub_kc,
            "wait",
            "--for=condition=Established",
            "crd/multiregionapps.multiregion.io",
        ],
    );
    let chart = chart();
    run(
        &bin.join("helm"),
        &[
            "--kubeconfig",
            hub_kc,
            "install",
            "multiregion",
            chart.to_str().unwrap(),
            "-n",
            NS,
            "--set",
            "image.repository=multiregion,image.tag=test",
            // Accepted by a real API server; the Prometheus Operator's
            // kinds are not (no CRDs for them here), so they stay off.
            "--set",
            "networkPolicy.enabled=true,dashboard.enabled=true,metrics.scraperToken=true",
            "--wait",
            "--timeout",
            "90s",
        ],
    );
    let status = run(
        &bin.join("helm"),
        &["--kubeconfig", hub_kc, "status", "multiregion", "-n", NS],
    );
    assert!(status.contains("STATUS: deployed"), "{status}");
}

/// A kubeconfig for the hub with the chart's ServiceAccount token.
fn service_account_kubeconfig(regions: &localregions::Guard) -> PathBuf {
    let hub_kc = regions.kubeconfig("hub").unwrap();
    let token = run(
        &regions.bin_dir().join("kubectl"),
        &[
            "--kubeconfig",
            hub_kc.to_str().unwrap(),
            "-n",
            NS,
            "create",
            "token",
            "multiregion",
            "--duration",
            "1h",
        ],
    );
    let admin = std::fs::read_to_string(&hub_kc).unwrap();
    let server = admin
        .lines()
        .find_map(|l| l.trim().strip_prefix("server: "))
        .unwrap();
    let ca = admin
        .lines()
        .find_map(|l| l.trim().strip_prefix("certificate-authority-data: "))
        .unwrap();
    let sa_kc = regions.dir().join("hub-serviceaccount.kubeconfig");
    std::fs::write(
        &sa_kc,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: hub\n  cluster:\n    server: {server}\n    certificate-authority-data: {ca}\nusers:\n- name: sa\n  user:\n    token: {}\ncontexts:\n- name: sa\n  context: {{cluster: hub, user: sa}}\ncurrent-context: sa\n",
            token.trim()
        ),
    )
    .unwrap();
    sa_kc
}

/// The operator as a process with the given hub kubeconfig; killed on drop.
/// The operator as the chart runs it (its ServiceAccount, metrics only for
/// tokens the hub allows), and the port of its /metrics.
struct Operator(std::process::Child, u16);

impl Operator {
    fn start(regions: &localregions::Guard, kubeconfig: &Path) -> Self {
        let metrics_port = common::operator::free_port();
        let log = std::fs::File::create(regions.dir().join("logs/operator.log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_multiregion"))
            .args([
                "run",
                "--kubeconfig",
                kubeconfig.to_str().unwrap(),
                "--namespace",
                NS,
            ])
            .args(["--leader-election", "--lease-seconds", "4"])
            .args([
                "--metrics-addr",
                &format!("127.0.0.1:{metrics_port}"),
                "--identity",
                "chart-sa",
                "--metrics-auth",
                "kubernetes",
                // As the chart sets it (metrics.scraperToken).
                "--scraper-service-account",
                "multiregion-scraper",
            ])
            .env("RUST_LOG", "info,kube_client=off")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        Operator(child, metrics_port)
    }
}

/// The status /metrics answers with `token` (none: no header).
async fn scrape(port: u16, token: Option<&str>) -> u16 {
    let mut request = reqwest::Client::new().get(format!("http://127.0.0.1:{port}/metrics"));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.map_or(0, |r| r.status().as_u16())
}

/// A ServiceAccount's token from the hub, bound first to `cluster_role`
/// when given.
fn token_of(regions: &localregions::Guard, account: &str, cluster_role: Option<&str>) -> String {
    let hub_kc = regions.kubeconfig("hub").unwrap();
    let kubectl = regions.bin_dir().join("kubectl");
    let kc = hub_kc.to_str().unwrap();
    run(
        &kubectl,
        &[
            "--kubeconfig",
            kc,
            "-n",
            NS,
            "create",
            "serviceaccount",
            account,
        ],
    );
    if let Some(role) = cluster_role {
        let subject = format!("{NS}:{account}");
        run(
            &kubectl,
            &[
                "--kubeconfig",
                kc,
                "create",
                "clusterrolebinding",
                account,
                "--clusterrole",
                role,
                "--serviceaccount",
                &subject,
            ],
        );
    }
    run(
        &kubectl,
        &["--kubeconfig", kc, "-n", NS, "create", "token", account],
    )
    .trim()
    .to_string()
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_with_the_charts_service_account_does_a_failover() {
    let mut regions = common::clusters("chart", &["hub", "us-east", "eu-west"]).await;
    let hub = regions.client("hub").await.unwrap();
    install(&regions, &hub).await;
    let sa_kc = service_account_kubeconfig(&regions);
    let sa = localregions::admin_client(&sa_kc).await.unwrap();
    let other: Api<Secret> = Api::namespaced(sa.clone(), "default");
    match other.list(&Default::default()).await {
        Err(kube::Error::Api(s)) => assert_eq!(s.code, 403, "{}", s.message),
        other => panic!("reading Secrets in another namespace must be refused: {other:?}"),
    }
    for region in ["us-east", "eu-west"] {
        let kubeconfig = std::fs::read_to_string(regions.kubeconfig(region).unwrap()).unwrap();
        register_region(&hub, region, &kubeconfig, json!({})).await;
    }
    let operator = Operator::start(&regions, &sa_kc);
    let port = operator.1;
    common::wait_for("the operator serves", Duration::from_secs(30), || async {
        (scrape(port, None).await != 0).then_some(())
    })
    .await;
    assert_eq!(scrape(port, None).await, 401, "no token");
    assert_eq!(
        scrape(port, Some("not-a-token")).await,
        401,
        "a token the hub refuses"
    );
    let stranger = token_of(&regions, "stranger", None);
    assert_eq!(
        scrape(port, Some(&stranger)).await,
        403,
        "a user not allowed /metrics"
    );
    let prometheus = token_of(&regions, "prometheus", Some("multiregion-metrics-reader"));
    assert_eq!(
        scrape(port, Some(&prometheus)).await,
        200,
        "the metrics reader"
    );
    let secrets: Api<Secret> = Api::namespaced(hub.clone(), NS);
    let scraper = common::wait_for(
        "the scraper's token filled in",
        Duration::from_secs(30),
        || async {
            let secret = secrets.get("multiregion-scraper-bearer-token").await.ok()?;
            let token = secret.data?.get("token")?.0.clone();
            String::from_utf8(token).ok()
        },
    )
    .await;
    assert_eq!(
        scrape(port, Some(&scraper)).await,
        200,
        "the chart's scraper token (metrics.scraperToken)"
    );
    let (issued, expires) = multiregion::regions::tokens::lifetime(&scraper)
        .expect("the scraper's token is a short-lived one (TokenRequest)");
    assert_eq!(expires - issued, 3600, "metrics.scraperTokenTTL's 1h");

    let ns = "chart-app";
    let spec = app_spec("ActivePassive", &["us-east", "eu-west"], json!({}));
    apply_app(&hub, ns, "web", spec).await;
    wait_weights(
        &hub,
        ns,
        "web",
        "us-east=100 eu-west=0",
        "us-east active under the chart's RBAC",
        Duration::from_secs(90),
    )
    .await;
    regions.stop_apiserver("us-east").unwrap();
    wait_weights(
        &hub,
        ns,
        "web",
        "us-east=0 eu-west=100",
        "the failover under the chart's RBAC",
        Duration::from_secs(15),
    )
    .await;
    let events =
        common::operator::wait_events(&hub, ns, "FailedOver", Duration::from_secs(10)).await;
    assert_eq!(events.len(), 1, "Events are allowed: {events:?}");
}

/// `crds.enabled`: Helm installs the CRDs with the chart (into a hub that
/// has none), upgrades them in place, and `helm uninstall` leaves them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chart_installs_the_crds_and_uninstall_keeps_them() {
    let regions = common::clusters("chart-crds", &["hub"]).await;
    let bin = regions.bin_dir();
    let kc = regions.kubeconfig("hub").unwrap();
    let kc = kc.to_str().unwrap();
    let (helm, kubectl) = (bin.join("helm"), bin.join("kubectl"));
    let chart = chart();
    let chart = chart.to_str().unwrap();
    let crds = [
        "crd/regions.multiregion.io",
        "crd/multiregionapps.multiregion.io",
    ];
    let install = |verb: &str| {
        run(
            &helm,
            &[
                "--kubeconfig",
                kc,
                verb,
                "multiregion",
                chart,
                "-n",
                NS,
                "--create-namespace",
                "--set",
                "crds.enabled=true,replicaCount=1,leaderElection.enabled=false",
                "--set",
                "image.repository=multiregion,image.tag=test",
                "--wait",
                "--timeout",
                "90s",
            ],
        )
    };
    let notes = install("install");
    assert!(notes.contains("The CRDs came with the chart"), "{notes}");
    let mut wait = vec!["--kubeconfig", kc, "wait", "--for=condition=Established"];
    wait.extend(crds);
    run(&kubectl, &wait);
    let policy = run(
        &kubectl,
        &[
            "--kubeconfig",
            kc,
            "get",
            crds[1],
            "-o",
            r#"jsonpath={.metadata.annotations.helm\.sh/resource-policy}"#,
        ],
    );
    assert_eq!(policy, "keep");
    // With one replica there is no PodDisruptionBudget to block drains.
    let pdbs = run(
        &kubectl,
        &["--kubeconfig", kc, "-n", NS, "get", "pdb", "-o", "name"],
    );
    assert_eq!(pdbs.trim(), "");
    // An upgrade applies the CRDs again (they are templates, not crds/).
    install("upgrade");
    let uninstall = run(
        &helm,
        &[
            "--kubeconfig",
            kc,
            "uninstall",
            "multiregion",
            "-n",
            NS,
            "--wait",
        ],
    );
    assert!(
        uninstall.contains("kept due to the resource policy")
            && uninstall.contains("multiregionapps.multiregion.io"),
        "Helm names what it kept: {uninstall}"
    );
    let mut get = vec!["--kubeconfig", kc, "get", "-o", "name"];
    get.extend(crds);
    let left = run(&kubectl, &get);
    assert_eq!(
        left.lines().count(),
        2,
        "uninstall keeps the CRDs (and every app): {left}"
    );
    let deployments = run(
        &kubectl,
        &[
            "--kubeconfig",
            kc,
            "-n",
            NS,
            "get",
            "deployments",
            "-o",
            "name",
        ],
    );
    assert_eq!(deployments.trim(), "", "the rest of the release is gone");
}
