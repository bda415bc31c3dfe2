//! The command line: `plan` without a cluster, and the binary working as the
//! kubectl plugin `kubectl multiregion` through the real kubectl.

use std::process::Command;

fn example() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/checkout.yaml")
}

#[test]
fn plan_prints_placement_weights_detection_and_availability() {
    let out = Command::new(env!("CARGO_BIN_EXE_multiregion"))
        .args(["plan", "-f"])
        .arg(example())
        .args(["--fail", "us-east", "--region-availability", "0.99"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(!text.contains('\x1b'), "plain when piped");
    let after = text
        .split("after us-east fails")
        .nth(1)
        .expect("an after section");
    assert!(after.contains("detected after 15 s"), "{text}");
    let eu = after.lines().find(|l| l.starts_with("eu-west")).unwrap();
    assert_eq!(
        eu.split_whitespace().collect::<Vec<_>>(),
        ["eu-west", "Active", "3", "100"]
    );
    assert!(text.contains("99.990000%"), "1 - 0.01^2: {text}");
    assert!(
        text.contains("recovery: RTO 15.1 s (15 s detection + 0.05 s promotion + 0 s publication)"),
        "{text}"
    );
}

#[test]
fn plan_names_a_bad_region() {
    let out = Command::new(env!("CARGO_BIN_EXE_multiregion"))
        .args(["plan", "-f"])
        .arg(example())
        .args(["--fail", "mars"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--fail mars"));
}

#[test]
fn plan_reads_every_app_of_a_stream_and_fails_on_what_the_api_would_refuse() {
    let example = std::fs::read_to_string(example()).unwrap();
    let refused = example
        .replace("name: checkout\n", "name: too-big\n")
        .replace("standby: { replicas: 1 }", "standby: { replicas: 9 }");
    let stream = format!(
        "apiVersion: v1\nkind: Namespace\nmetadata: {{name: shop}}\n---\n{example}\n---\n{refused}"
    );
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let file = dir.join("plan-stream.yaml");
    std::fs::write(&file, stream).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_multiregion"))
        .args(["plan", "-f"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(!out.status.success(), "a refused app fails the gate");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("\"too-big\" is invalid: spec.standby.replicas"),
        "{stderr}"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("checkout: before"),
        "the valid app is planned: {stdout}"
    );
    assert!(!stdout.contains("too-big"), "{stdout}");
}

#[test]
fn plan_fails_an_app_that_serves_no_traffic_and_speaks_yaml() {
    let text = std::fs::read_to_string(example()).unwrap();
    let drained = text
        .replace("- name: us-east\n", "- name: us-east\n      drain: true\n")
        .replace("- name: eu-west\n", "- name: eu-west\n      drain: true\n");
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let file = dir.join("plan-drained.yaml");
    std::fs::write(&file, drained).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_multiregion"))
        .args(["plan", "-f"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("serves no traffic"));
    let out = Command::new(env!("CARGO_BIN_EXE_multiregion"))
        .args(["plan", "-o", "yaml", "-f"])
        .arg(example())
        .output()
        .unwrap();
    assert!(out.status.success());
    let yaml = String::from_utf8(out.stdout).unwrap();
    assert!(yaml.contains("app: checkout"), "{yaml}");
    assert!(yaml.contains("detectionSeconds:"), "{yaml}");
}

/// A kubeconfig (under the test's tmp dir, named `name`) for `server` with
/// a made-up token.
fn token_kubeconfig(name: &str, server: &str) -> std::path::PathBuf {
    let path =
        std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}.kubeconfig"));
    let config = serde_json::json!({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "c", "cluster": {"server": server}}],
        "users": [{"name": "u", "user": {"token": "x"}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
    });
    std::fs::write(&path, config.to_string()).unwrap();
    path
}

#[test]
fn an_unreachable_hub_is_named_with_what_to_check() {
    let kubeconfig = token_kubeconfig("nobody-listens", "https://127.0.0.1:1");
    let out = Command::new(env!("CARGO_BIN_EXE_multiregion"))
        .args(["status", "--kubeconfig"])
        .arg(&kubeconfig)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no answer from the API server at https://127.0.0.1:1/"),
        "{stderr}"
    );
    assert!(stderr.contains("--kubeconfig and --context"), "{stderr}");
}

#[test]
fn request_timeout_bounds_a_hub_that_never_answers() {
    // A server that takes connections and never says a word.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let kubeconfig = token_kubeconfig("silent", &format!("https://127.0.0.1:{port}"));
    let mut child = Command::new(env!("CARGO_BIN_EXE_multiregion"))
        .args(["status", "--request-timeout", "1s", "--kubeconfig"])
        .arg(&kubeconfig)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("status --request-timeout 1s did not end");
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert!(!status.success());
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(stderr.contains("deadline has elapsed"), "{stderr}");
    let named = format!("no answer from the API server at https://127.0.0.1:{port}/");
    assert!(stderr.contains(&named), "{stderr}");
    drop(silent);
}

#[test]
fn works_as_a_kubectl_plugin() {
    let bins = localregions::Binaries::locate().expect("control-plane binaries");
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("plugin");
    std::fs::create_dir_all(&dir).unwrap();
    let plugin = dir.join("kubectl-multiregion");
    let _ = std::fs::remove_file(&plugin);
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_multiregion"), &plugin).unwrap();
    let path = format!(
        "{}:{}",
        dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new(bins.path("kubectl"))
        .args(["multiregion", "plan", "-f"])
        .arg(example())
        .args(["--fail", "eu-west"])
        .env("PATH", path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("after eu-west fails"));
}

#[test]
fn prints_completions_for_the_shells() {
    for (shell, marker) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef"),
        ("fish", "complete -c"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_multiregion"))
            .args(["completion", shell])
            .output()
            .unwrap();
        assert!(out.status.success(), "{shell}");
        let script = String::from_utf8_lossy(&out.stdout);
        assert!(script.contains(marker), "{shell}: {script}");
        assert!(script.contains("failover"), "{shell} completes subcommands");
    }
}

#[test]
fn no_color_turns_colours_off() {
    // Output to a pipe is never coloured; NO_COLOR is honoured as well and
    // the output is the same plain text.
    let out = Command::new(env!("CARGO_BIN_EXE_multiregion"))
        .args(["plan", "-f"])
        .arg(example())
        .args(["--fail", "us-east"])
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(!String::from_utf8_lossy(&out.stdout).contains('\u{1b}'));
}

#[test]
fn member_rbac_grants_only_the_verbs_the_operator_uses() {
    let out = Command::new(env!("CARGO_BIN_EXE_multiregion"))
        .arg("member-rbac")
        .output()
        .unwrap();
    assert!(out.status.success());
    let yaml = String::from_utf8_lossy(&out.stdout);
    for kind in [
        "Namespace",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
    ] {
        assert!(yaml.contains(&format!("kind: {kind}\n")), "{kind}: {yaml}");
    }
    assert!(
        !yaml.contains("secrets\n") && !yaml.contains("- '*'"),
        "{yaml}"
    );
    assert!(
        !yaml.contains("kubernetes.io/service-account-token"),
        "no token that never expires: {yaml}"
    );
    assert!(
        yaml.contains("serviceaccounts/token") && yaml.contains("create token"),
        "the identity asks for its own token, and the output says how to get the first: {yaml}"
    );
}

#[test]
fn errors_name_the_command_as_the_user_typed_it() {
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("plugin-name");
    std::fs::create_dir_all(&dir).unwrap();
    let plugin = dir.join("kubectl-multiregion");
    let _ = std::fs::remove_file(&plugin);
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_multiregion"), &plugin).unwrap();
    let out = Command::new(&plugin)
        .args(["plan", "-f", "/nonexistent.yaml", "--fail", "x"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.starts_with("kubectl multiregion: "), "{stderr}");
    let help = Command::new(&plugin).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.contains("Usage: kubectl multiregion"), "{help}");
}

/// `bash SCRIPT ARGS` from the repository; its standard output.
fn script(path: &str, args: &[&std::ffi::OsStr]) -> String {
    let out = Command::new("bash")
        .arg(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{path}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .trim_end()
        .to_string()
}

#[test]
fn installs_with_krew_from_its_manifest_and_archive() {
    let krew_bin = std::path::PathBuf::from(script("tests/controlplane/build-krew.sh", &[]));
    let kubectl = localregions::Binaries::locate().unwrap().path("kubectl");
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("krew");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let archive = script(
        "scripts/krew-package.sh",
        &[env!("CARGO_BIN_EXE_multiregion").as_ref(), dir.as_os_str()],
    );
    let version = format!("v{}", env!("CARGO_PKG_VERSION"));
    let manifest = script(
        "scripts/krew-manifest.sh",
        &[
            version.as_ref(),
            "https://example.invalid/download".as_ref(),
            archive.as_ref(),
        ],
    );
    let manifest_file = dir.join("multiregion.yaml");
    std::fs::write(&manifest_file, &manifest).unwrap();
    let validate = Command::new(krew_bin.join("validate-krew-manifest"))
        .arg("-manifest")
        .arg(&manifest_file)
        .arg("-skip-install")
        .output()
        .unwrap();
    assert!(
        validate.status.success(),
        "{}",
        String::from_utf8_lossy(&validate.stderr)
    );

    let root = dir.join("root");
    let path = format!(
        "{}:{}:{}",
        root.join("bin").display(),
        krew_bin.display(),
        std::env::var("PATH").unwrap()
    );
    let install = |manifest: &std::path::Path| {
        Command::new(&kubectl)
            .args(["krew", "install"])
            .arg(format!("--manifest={}", manifest.display()))
            .arg(format!("--archive={archive}"))
            .env("KREW_ROOT", &root)
            .env("PATH", &path)
            .output()
            .unwrap()
    };
    let tampered = dir.join("tampered").join("multiregion.yaml");
    std::fs::create_dir_all(tampered.parent().unwrap()).unwrap();
    let sha = manifest
        .lines()
        .find_map(|l| l.trim().strip_prefix("sha256: "))
        .unwrap();
    std::fs::write(&tampered, manifest.replace(sha, &"0".repeat(64))).unwrap();
    assert!(
        !install(&tampered).status.success(),
        "krew checks the archive's sha256"
    );
    let installed = install(&manifest_file);
    assert!(
        installed.status.success(),
        "{}",
        String::from_utf8_lossy(&installed.stderr)
    );
    let help = Command::new(&kubectl)
        .args(["multiregion", "--help"])
        .env("PATH", &path)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&help.stdout).contains("Usage: kubectl multiregion"));
}

#[test]
fn plan_compares_the_three_strategies_and_prints_json_for_tools() {
    let out = Command::new(env!("CARGO_BIN_EXE_multiregion"))
        .args(["plan", "-f"])
        .arg(example())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("before us-east fails"),
        "the busiest region by default: {table}"
    );
    let row = |name: &str| {
        table
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap()
            .to_string()
    };
    assert!(row("ActivePassive *").contains("1.33x"), "{table}");
    assert!(row("ActiveActive").contains("2.00x"), "{table}");
    assert!(row("FollowTheSun").contains("activeWindow"), "{table}");

    let json = Command::new(env!("CARGO_BIN_EXE_multiregion"))
        .args(["plan", "-o", "json", "-f"])
        .arg(example())
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(report["failed"], "us-east");
    assert_eq!(report["after"]["active"], "eu-west");
    let strategies = report["strategies"].as_array().unwrap();
    assert_eq!(strategies.len(), 3);
    assert_eq!(strategies[1]["trafficLostUntilDetected"], 0.5);
    assert_eq!(strategies[0]["rto"]["detectionSeconds"], 15.0);
}

#[test]
fn plan_runs_the_tenancy_checks_with_the_regions_and_namespaces_it_is_given() {
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let regions = dir.join("plan-regions.yaml");
    std::fs::write(
        &regions,
        "apiVersion: multiregion.io/v1alpha1\nkind: Region\nmetadata: {name: us-east}\n\
         spec: {allowedNamespaces: {matchLabels: {team: shop}}}\n",
    )
    .unwrap();
    let plan = |files: &[&std::path::Path]| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_multiregion"));
        command.arg("plan");
        for f in files {
            command.arg("-f").arg(f);
        }
        command.output().unwrap()
    };
    let out = plan(&[&example(), &regions]);
    assert!(
        !out.status.success(),
        "us-east does not admit namespace shop"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "\"checkout\" is not allowed: spec.regions[0].name: Region us-east does not allow apps of namespace shop"
        ),
        "{stderr}"
    );
    let namespace = dir.join("plan-namespace.yaml");
    std::fs::write(
        &namespace,
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop, labels: {team: shop}}\n",
    )
    .unwrap();
    let out = plan(&[&example(), &regions, &namespace]);
    assert!(
        out.status.success(),
        "the labelled namespace is admitted: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
