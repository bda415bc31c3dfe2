//! Clients for the commands, built as kubectl builds its own: a kubeconfig
//! and context, the context's namespace as the default.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::Context as _;

/// The API server the command's last client was built for, to name it
/// when it cannot be reached.
static SERVER: Mutex<Option<String>> = Mutex::new(None);

/// What to tell a user whose command failed: `err`, and when no API server
/// answered, which one and what to check.
pub fn explain(err: &anyhow::Error) -> String {
    let text = format!("{err:#}");
    // A connection refused, reset or timed out: not an answer that
    // refused something (that message speaks for itself).
    let unreachable = err.chain().any(|cause| {
        let transport = cause
            .downcast_ref::<kube::Error>()
            .is_some_and(|e| matches!(e, kube::Error::HyperError(_) | kube::Error::Service(_)));
        let said = cause.to_string().to_ascii_lowercase();
        transport
            && ["connect", "deadline", "timed out"]
                .iter()
                .any(|w| said.contains(w))
    });
    let server = SERVER.lock().ok().and_then(|s| s.clone());
    match (unreachable, server) {
        (true, Some(server)) => format!(
            "{text}\nno answer from the API server at {server}: is the cluster running and reachable from here, and are --kubeconfig and --context (or $KUBECONFIG) the ones you meant?"
        ),
        _ => text,
    }
}

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
    let config = match kubeconfig {
        Some(path) => {
            let kubeconfig = kube::config::Kubeconfig::read_from(path)
                .with_context(|| format!("reading kubeconfig {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kubeconfig, &options).await?
        }
        None if context.is_some() => kube::Config::from_kubeconfig(&options).await?,
        None => kube::Config::infer().await?,
    };
    if let Ok(mut server) = SERVER.lock() {
        *server = Some(crate::text::member_text(&config.cluster_url.to_string()));
    }
    Ok(config)
}

/// The `topology.kubernetes.io/region` label of the node named by
/// `$NODE_NAME` (set from the pod's `spec.nodeName` by the chart), if it
/// can be read.
pub async fn node_region(hub: &kube::Client) -> Option<String> {
    let node = std::env::var("NODE_NAME").ok().filter(|n| !n.is_empty())?;
    let nodes: kube::Api<k8s_openapi::api::core::v1::Node> = kube::Api::all(hub.clone());
    match nodes.get(&node).await {
        Ok(found) => found
            .metadata
            .labels
            .and_then(|l| l.get("topology.kubernetes.io/region").cloned()),
        Err(err) => {
            tracing::warn!(node = %node, error = %err, "cannot read this node's region label; set --region");
            None
        }
    }
}
