//! Clients for the commands, built as kubectl builds its own: a kubeconfig
//! and context, the context's namespace as the default.

use std::path::{Path, PathBuf};

use anyhow::Context as _;

/// A client for the cluster a kubeconfig (or the environment) names, and
/// the namespace its context selects.
pub async fn client(
    kubeconfig: Option<&PathBuf>,
    context: Option<&String>,
) -> anyhow::Result<(kube::Client, String)> {
    let config = config(kubeconfig.map(PathBuf::as_path), context).await?;
    let namespace = config.default_namespace.clone();
    Ok((crate::metrics::counted_client(config, "hub")?, namespace))
}

/// The operator's hub clients (requests bounded, watches long-lived).
pub async fn clients(
    kubeconfig: Option<&PathBuf>,
    context: Option<&String>,
) -> anyhow::Result<crate::deadline::Clients> {
    let config = config(kubeconfig.map(PathBuf::as_path), context).await?;
    Ok(crate::deadline::Clients::hub(config)?)
}

/// The kube config: from `kubeconfig` when given, else in-cluster or
/// $KUBECONFIG / ~/.kube/config.
pub async fn config(
    kubeconfig: Option<&Path>,
    context: Option<&String>,
) -> anyhow::Result<kube::Config> {
    let options = kube::config::KubeConfigOptions {
        context: context.cloned(),
        ..Default::default()
    };
    Ok(match kubeconfig {
        Some(path) => {
            let kubeconfig = kube::config::Kubeconfig::read_from(path)
                .with_context(|| format!("reading kubeconfig {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kubeconfig, &options).await?
        }
        None if context.is_some() => kube::Config::from_kubeconfig(&options).await?,
        None => kube::Config::infer().await?,
    })
}
