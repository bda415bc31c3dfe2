//! The Pod Security Standards (baseline and restricted), checked on a pod
//! template before it is placed, so that a refusal names the field instead
//! of surfacing as pods the member never creates. The member namespaces the
//! operator creates carry the same level as a label, which the member's API
//! server enforces as well.

use serde_json::Value;

use crate::api::PodSecurityLevel;

/// Capabilities a container may add under baseline.
const BASELINE_CAPABILITIES: [&str; 13] = [
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
];

/// Sysctls a pod may set under baseline.
const SAFE_SYSCTLS: [&str; 9] = [
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
];

/// SELinux types a pod may ask for under baseline.
const SELINUX_TYPES: [&str; 4] = [
    "container_t",
    "container_init_t",
    "container_kvm_t",
    "container_engine_t",
];

/// Volume types a pod may use under restricted.
const RESTRICTED_VOLUMES: [&str; 8] = [
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
];

/// The first rule of `level` the pod template (`{metadata, spec}`) breaks,
/// as `FIELD: what`, with FIELD under `field` (the template's place in
/// the manifest).
pub fn violation(level: PodSecurityLevel, template: &Value, field: &str) -> Option<String> {
    let spec = template.get("spec")?;
    let spec_field = format!("{field}.spec");
    baseline_pod(spec, &spec_field)
        .or_else(|| apparmor_annotations(template, field))
        .or_else(|| containers(spec, &spec_field).find_map(|(c, f)| baseline_container(c, &f)))
        .or_else(|| match level {
            PodSecurityLevel::Baseline => None,
            PodSecurityLevel::Restricted => restricted(spec, &spec_field),
        })
}

/// Every container, init container and ephemeral container, with its field.
fn containers<'a>(spec: &'a Value, field: &'a str) -> impl Iterator<Item = (&'a Value, String)> {
    ["containers", "initContainers", "ephemeralContainers"]
        .into_iter()
        .flat_map(move |list| {
            items(spec.get(list))
                .iter()
                .enumerate()
                .map(move |(i, c)| (c, format!("{field}.{list}[{i}]")))
        })
}

fn items(value: Option<&Value>) -> &[Value] {
    value
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
}

fn is_true(value: Option<&Value>) -> bool {
    value.and_then(Value::as_bool) == Some(true)
}

fn text(value: Option<&Value>) -> Option<&str> {
    value.and_then(Value::as_str)
}

fn baseline_pod(spec: &Value, field: &str) -> Option<String> {
    for host in ["hostNetwork", "hostPID", "hostIPC"] {
        if is_true(spec.get(host)) {
            return Some(format!("{field}.{host}: host namespaces are not allowed"));
        }
    }
    for (i, volume) in items(spec.get("volumes")).iter().enumerate() {
        if volume.get("hostPath").is_some() {
            return Some(format!(
                "{field}.volumes[{i}].hostPath: hostPath volumes are not allowed"
            ));
        }
    }
    let context = spec.get("securityContext");
    let context_field = format!("{field}.securityContext");
    for (i, sysctl) in items(context.and_then(|c| c.get("sysctls")))
        .iter()
        .enumerate()
    {
        let name = text(sysctl.get("name")).unwrap_or_default();
        if !SAFE_SYSCTLS.contains(&name) {
            return Some(format!(
                "{context_field}.sysctls[{i}].name: {name} is not a safe sysctl"
            ));
        }
    }
    context.and_then(|c| baseline_context(c, &context_field))
}

/// The rules the pod's and each container's securityContext share.
fn baseline_context(context: &Value, field: &str) -> Option<String> {
    if is_true(context.pointer("/windowsOptions/hostProcess")) {
        return Some(format!(
            "{field}.windowsOptions.hostProcess: host processes are not allowed"
        ));
    }
    if text(context.pointer("/seccompProfile/type")) == Some("Unconfined") {
        return Some(format!(
            "{field}.seccompProfile.type: Unconfined is not allowed"
        ));
    }
    if text(context.pointer("/appArmorProfile/type")) == Some("Unconfined") {
        return Some(format!(
            "{field}.appArmorProfile.type: Unconfined is not allowed"
        ));
    }
    let selinux = context.get("seLinuxOptions")?;
    let kind = text(selinux.get("type")).filter(|t| !t.is_empty());
    if let Some(kind) = kind.filter(|k| !SELINUX_TYPES.contains(k)) {
        return Some(format!(
            "{field}.seLinuxOptions.type: {kind} is not allowed"
        ));
    }
    ["user", "role"].into_iter().find_map(|key| {
        text(selinux.get(key))
            .filter(|v| !v.is_empty())
            .map(|_| format!("{field}.seLinuxOptions.{key}: must not be set"))
    })
}

fn apparmor_annotations(template: &Value, field: &str) -> Option<String> {
    let annotations = template.pointer("/metadata/annotations")?.as_object()?;
    annotations.iter().find_map(|(key, value)| {
        (key.starts_with("container.apparmor.security.beta.kubernetes.io/")
            && value.as_str() == Some("unconfined"))
        .then(|| format!("{field}.metadata.annotations[{key}]: unconfined is not allowed"))
    })
}

fn baseline_container(container: &Value, field: &str) -> Option<String> {
    for (i, port) in items(container.get("ports")).iter().enumerate() {
        if port.get("hostPort").and_then(Value::as_i64).unwrap_or(0) != 0 {
            return Some(format!(
                "{field}.ports[{i}].hostPort: host ports are not allowed"
            ));
        }
    }
    if let Some(why) = probe_hosts(container, field) {
        return Some(why);
    }
    let context = container.get("securityContext")?;
    let field = format!("{field}.securityContext");
    if is_true(context.get("privileged")) {
        return Some(format!(
            "{field}.privileged: privileged containers are not allowed"
        ));
    }
    if text(context.get("procMount")).is_some_and(|m| m != "Default") {
        return Some(format!("{field}.procMount: only Default is allowed"));
    }
    let added = items(context.pointer("/capabilities/add"));
    if let Some(cap) = added
        .iter()
        .filter_map(Value::as_str)
        .find(|c| !BASELINE_CAPABILITIES.contains(c))
    {
        return Some(format!("{field}.capabilities.add: {cap} is not allowed"));
    }
    baseline_context(context, &field)
}

/// Probes and lifecycle hooks may not name a host (baseline since
/// Kubernetes 1.34): the kubelet would call it from the node.
fn probe_hosts(container: &Value, field: &str) -> Option<String> {
    let handlers = [
        "livenessProbe",
        "readinessProbe",
        "startupProbe",
        "lifecycle.postStart",
        "lifecycle.preStop",
    ];
    handlers.into_iter().find_map(|handler| {
        let pointer = format!("/{}", handler.replace('.', "/"));
        let at = container.pointer(&pointer)?;
        ["httpGet", "tcpSocket"].into_iter().find_map(|kind| {
            text(at.pointer(&format!("/{kind}/host")))
                .filter(|h| !h.is_empty())
                .map(|_| format!("{field}.{handler}.{kind}.host: must not be set"))
        })
    })
}

fn restricted(spec: &Value, field: &str) -> Option<String> {
    for (i, volume) in items(spec.get("volumes")).iter().enumerate() {
        let kind = volume
            .as_object()
            .and_then(|v| v.keys().find(|k| *k != "name"))
            .map(String::as_str)
            .unwrap_or_default();
        if !RESTRICTED_VOLUMES.contains(&kind) {
            return Some(format!(
                "{field}.volumes[{i}]: {kind} volumes are not allowed"
            ));
        }
    }
    let pod = spec.get("securityContext");
    containers(spec, field).find_map(|(c, f)| restricted_container(pod, c, &f, field))
}

fn restricted_container(
    pod: Option<&Value>,
    container: &Value,
    field: &str,
    spec_field: &str,
) -> Option<String> {
    let context = container.get("securityContext");
    let own = |key: &str| context.and_then(|c| c.pointer(key));
    let either = |key: &str| own(key).or_else(|| pod.and_then(|p| p.pointer(key)));
    let field = format!("{field}.securityContext");
    if own("/allowPrivilegeEscalation").and_then(Value::as_bool) != Some(false) {
        return Some(format!("{field}.allowPrivilegeEscalation: must be false"));
    }
    if !is_true(either("/runAsNonRoot")) {
        return Some(format!(
            "{field}.runAsNonRoot: must be true (here or in {spec_field}.securityContext)"
        ));
    }
    if either("/runAsUser").and_then(Value::as_i64) == Some(0) {
        return Some(format!("{field}.runAsUser: must not be 0"));
    }
    if !matches!(
        text(either("/seccompProfile/type")),
        Some("RuntimeDefault" | "Localhost")
    ) {
        return Some(format!(
            "{field}.seccompProfile.type: must be RuntimeDefault or Localhost (here or in {spec_field}.securityContext)"
        ));
    }
    let dropped = items(own("/capabilities/drop"));
    if !dropped.iter().any(|c| c.as_str() == Some("ALL")) {
        return Some(format!("{field}.capabilities.drop: must include ALL"));
    }
    let added = items(own("/capabilities/add"));
    added
        .iter()
        .filter_map(Value::as_str)
        .find(|c| *c != "NET_BIND_SERVICE")
        .map(|cap| format!("{field}.capabilities.add: only NET_BIND_SERVICE is allowed, not {cap}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const FIELD: &str = "spec.workload.template";

    fn pod(spec: Value) -> Value {
        json!({"metadata": {"labels": {"app": "web"}}, "spec": spec})
    }

    fn baseline(spec: Value) -> Option<String> {
        violation(PodSecurityLevel::Baseline, &pod(spec), FIELD)
    }

    fn nginx(context: Value) -> Value {
        json!({"containers": [{"name": "web", "image": "nginx", "securityContext": context}]})
    }

    #[test]
    fn an_ordinary_pod_passes_baseline() {
        let spec = json!({"containers": [{"name": "web", "image": "nginx", "ports": [{"containerPort": 80}]}],
                          "volumes": [{"name": "c", "configMap": {"name": "c"}}]});
        assert_eq!(baseline(spec), None);
        assert_eq!(
            baseline(nginx(
                json!({"capabilities": {"add": ["NET_BIND_SERVICE"]}})
            )),
            None
        );
    }

    #[test]
    fn baseline_refuses_each_way_onto_the_node_naming_the_field() {
        let cases = [
            (
                nginx(json!({"privileged": true})),
                "spec.workload.template.spec.containers[0].securityContext.privileged",
            ),
            (
                json!({"hostNetwork": true, "containers": []}),
                "spec.workload.template.spec.hostNetwork",
            ),
            (
                json!({"hostPID": true, "containers": []}),
                "spec.workload.template.spec.hostPID",
            ),
            (
                json!({"containers": [], "volumes": [{"name": "root", "hostPath": {"path": "/"}}]}),
                "spec.workload.template.spec.volumes[0].hostPath",
            ),
            (
                nginx(json!({"capabilities": {"add": ["SYS_ADMIN"]}})),
                "spec.workload.template.spec.containers[0].securityContext.capabilities.add",
            ),
            (
                json!({"containers": [{"name": "a", "ports": [{"containerPort": 80, "hostPort": 80}]}]}),
                "spec.workload.template.spec.containers[0].ports[0].hostPort",
            ),
            (
                json!({"containers": [], "initContainers": [{"name": "i", "securityContext": {"privileged": true}}]}),
                "spec.workload.template.spec.initContainers[0].securityContext.privileged",
            ),
            (
                json!({"containers": [], "securityContext": {"sysctls": [{"name": "kernel.msgmax", "value": "1"}]}}),
                "spec.workload.template.spec.securityContext.sysctls[0].name",
            ),
            (
                json!({"containers": [], "securityContext": {"seccompProfile": {"type": "Unconfined"}}}),
                "spec.workload.template.spec.securityContext.seccompProfile.type",
            ),
            (
                nginx(json!({"procMount": "Unmasked"})),
                "spec.workload.template.spec.containers[0].securityContext.procMount",
            ),
            (
                nginx(json!({"seLinuxOptions": {"type": "spc_t"}})),
                "spec.workload.template.spec.containers[0].securityContext.seLinuxOptions.type",
            ),
            (
                json!({"containers": [{"name": "a", "livenessProbe": {"httpGet": {"host": "169.254.169.254", "port": 80}}}]}),
                "spec.workload.template.spec.containers[0].livenessProbe.httpGet.host",
            ),
            (
                json!({"containers": [{"name": "a", "lifecycle": {"preStop": {"tcpSocket": {"host": "10.0.0.1", "port": 22}}}}]}),
                "spec.workload.template.spec.containers[0].lifecycle.preStop.tcpSocket.host",
            ),
        ];
        for (spec, field) in cases {
            let refused = baseline(spec.clone()).unwrap_or_else(|| panic!("{spec} passed"));
            assert!(refused.starts_with(&format!("{field}:")), "{refused}");
        }
    }

    #[test]
    fn baseline_refuses_an_unconfined_apparmor_annotation() {
        let template = json!({"metadata": {"annotations": {"container.apparmor.security.beta.kubernetes.io/web": "unconfined"}},
                              "spec": {"containers": [{"name": "web"}]}});
        let refused = violation(PodSecurityLevel::Baseline, &template, FIELD).unwrap();
        assert!(refused.contains("unconfined"), "{refused}");
    }

    #[test]
    fn restricted_asks_for_non_root_without_escalation_and_every_capability_dropped() {
        let good = json!({"allowPrivilegeEscalation": false, "runAsNonRoot": true,
                          "seccompProfile": {"type": "RuntimeDefault"}, "capabilities": {"drop": ["ALL"]}});
        let restricted =
            |context: Value| violation(PodSecurityLevel::Restricted, &pod(nginx(context)), FIELD);
        assert_eq!(restricted(good.clone()), None);
        for (key, value, field) in [
            (
                "allowPrivilegeEscalation",
                json!(true),
                "allowPrivilegeEscalation",
            ),
            ("runAsNonRoot", json!(false), "runAsNonRoot"),
            ("runAsUser", json!(0), "runAsUser"),
            (
                "seccompProfile",
                json!({"type": "Localhostx"}),
                "seccompProfile.type",
            ),
            (
                "capabilities",
                json!({"drop": ["NET_RAW"]}),
                "capabilities.drop",
            ),
            (
                "capabilities",
                json!({"drop": ["ALL"], "add": ["CHOWN"]}),
                "capabilities.add",
            ),
        ] {
            let mut context = good.clone();
            context[key] = value;
            let refused = restricted(context).unwrap();
            assert!(
                refused.contains(&format!("securityContext.{field}:")),
                "{refused}"
            );
        }
        // What baseline allows is not always enough for restricted.
        assert!(baseline(nginx(json!({}))).is_none());
        assert!(restricted(json!({})).is_some());
    }

    #[test]
    fn restricted_takes_the_pod_level_settings_and_refuses_other_volume_types() {
        let spec = json!({"securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
                          "containers": [{"name": "web", "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}}],
                          "volumes": [{"name": "d", "emptyDir": {}}]});
        assert_eq!(
            violation(PodSecurityLevel::Restricted, &pod(spec.clone()), FIELD),
            None
        );
        let mut nfs = spec;
        nfs["volumes"] = json!([{"name": "n", "nfs": {"server": "x", "path": "/"}}]);
        let refused = violation(PodSecurityLevel::Restricted, &pod(nfs), FIELD).unwrap();
        assert!(
            refused.starts_with("spec.workload.template.spec.volumes[0]: nfs"),
            "{refused}"
        );
    }
}
