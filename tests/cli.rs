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
