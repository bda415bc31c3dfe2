//! Where the binaries come from.
//!
//! The control plane (etcd, kube-apiserver, ..., kubectl, KWOK, Helm) is
//! built from the Go modules in `tests/controlplane/` by its `build.sh`; the
//! processes on the traffic path (Toxiproxy, the region endpoint, and for
//! traffic tests Traefik, CoreDNS and ExternalDNS) by its
//! `build-traffic.sh`. Both cache under `$HOME/.cache/multiregion`. Setting
//! `MULTIREGION_CONTROLPLANE_BIN` and `MULTIREGION_TRAFFIC_BIN` to
//! directories skips the builds.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// The directories holding the binaries.
#[derive(Clone, Debug)]
pub struct Binaries {
    /// etcd, kube-apiserver, kube-controller-manager, kube-scheduler,
    /// kubectl, kwok and helm.
    pub dir: PathBuf,
    /// toxiproxy-server and regionapp (and whatever else was built there).
    pub traffic: PathBuf,
}

impl Binaries {
    /// Finds the binaries, building them on first use.
    pub fn locate() -> Result<Self> {
        let dir = match std::env::var("MULTIREGION_CONTROLPLANE_BIN") {
            Ok(dir) => dir.into(),
            Err(_) => build("build.sh", &[])?,
        };
        let traffic = match std::env::var("MULTIREGION_TRAFFIC_BIN") {
            Ok(dir) => dir.into(),
            Err(_) => build("build-traffic.sh", &["toxiproxy", "regionapp"])?,
        };
        Ok(Binaries { dir, traffic })
    }

    /// Builds (or finds cached) the traffic components named, e.g. traefik.
    pub fn traffic(components: &[&str]) -> Result<PathBuf> {
        match std::env::var("MULTIREGION_TRAFFIC_BIN") {
            Ok(dir) => Ok(dir.into()),
            Err(_) => build("build-traffic.sh", components),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        let control_plane = self.dir.join(name);
        if control_plane.exists() {
            control_plane
        } else {
            self.traffic.join(name)
        }
    }
}

/// Runs one of the build scripts; returns the bin directory it prints.
fn build(script: &str, args: &[&str]) -> Result<PathBuf> {
    let script = source_dir().join("tests/controlplane").join(script);
    if !script.exists() {
        bail!(
            "cannot build the binaries: {} does not exist (set MULTIREGION_SOURCE_DIR to a checkout of multiregion, or MULTIREGION_CONTROLPLANE_BIN and MULTIREGION_TRAFFIC_BIN to directories of binaries)",
            script.display()
        );
    }
    let output = Command::new("bash")
        .arg(&script)
        .args(args)
        .stderr(std::process::Stdio::inherit())
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    if !output.status.success() {
        bail!("{} failed ({})", script.display(), output.status);
    }
    Ok(String::from_utf8(output.stdout)?.trim().into())
}

/// The multiregion checkout: `MULTIREGION_SOURCE_DIR`, else the one this
/// binary was built from.
pub fn source_dir() -> PathBuf {
    std::env::var("MULTIREGION_SOURCE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."))
}
