//! Where the control-plane binaries come from.
//!
//! They are built from the Go modules in `tests/controlplane/` by its
//! `build.sh`, which caches them under `$HOME/.cache/multiregion`. Setting
//! `MULTIREGION_CONTROLPLANE_BIN` to a directory skips the build.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// The directory holding etcd, kube-apiserver, kube-controller-manager,
/// kube-scheduler, kubectl, kwok and helm.
#[derive(Clone, Debug)]
pub struct Binaries {
    pub dir: PathBuf,
}

impl Binaries {
    /// Finds the binaries, building them on first use.
    pub fn locate() -> Result<Self> {
        if let Ok(dir) = std::env::var("MULTIREGION_CONTROLPLANE_BIN") {
            return Ok(Binaries { dir: dir.into() });
        }
        let script = source_dir().join("tests/controlplane/build.sh");
        if !script.exists() {
            bail!(
                "cannot build the control plane: {} does not exist (set MULTIREGION_SOURCE_DIR to a checkout of multiregion, or MULTIREGION_CONTROLPLANE_BIN to a directory of binaries)",
                script.display()
            );
        }
        let output = Command::new("bash")
            .arg(&script)
            .stderr(std::process::Stdio::inherit())
            .output()
            .with_context(|| format!("running {}", script.display()))?;
        if !output.status.success() {
            bail!("{} failed ({})", script.display(), output.status);
        }
        let dir = String::from_utf8(output.stdout)?.trim().to_string();
        Ok(Binaries { dir: dir.into() })
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

/// The multiregion checkout: `MULTIREGION_SOURCE_DIR`, else the one this
/// binary was built from.
pub fn source_dir() -> PathBuf {
    std::env::var("MULTIREGION_SOURCE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."))
}
