//! Building a client for a member cluster from its Region.

use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

use crate::api::RegionSpec;
use crate::plan::manifest::content_hash;

/// Why a Region's credentials cannot be used; shown in its `Reachable`
/// condition with `reason()`.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum CredentialsError {
    #[error("spec.kubeconfigSecretRef: Secret {0} not found")]
    SecretNotFound(String),
    #[error("spec.kubeconfigSecretRef: Secret {0} cannot be read: {1}")]
    SecretUnreadable(String, String),
    #[error("spec.kubeconfigSecretRef.key: Secret {0} has no key {1:?}")]
    KeyMissing(String, String),
    #[error("spec.kubeconfigSecretRef: Secret {0} key {1:?} is not a kubeconfig: {2}")]
    NotAKubeconfig(String, String, String),
    #[error("spec.context: {0}")]
    ContextUnusable(String),
    #[error("spec: neither kubeconfigSecretRef nor local: true is set")]
    NoSource,
    #[error(
        "spec.kubeconfigSecretRef: Secret {0} holds a kubeconfig whose user {1:?} runs an exec or \
         auth-provider plugin, which the operator's image does not have: store a token or client \
         certificate instead (`multiregion join` makes one)"
    )]
    PluginCredentials(String, String),
}

impl CredentialsError {
    /// The condition reason.
    pub fn reason(&self) -> &'static str {
        match self {
            CredentialsError::SecretNotFound(..) => "SecretNotFound",
            CredentialsError::SecretUnreadable(..) => "SecretUnreadable",
            CredentialsError::KeyMissing(..) => "SecretKeyMissing",
            CredentialsError::NotAKubeconfig(..) => "KubeconfigInvalid",
            CredentialsError::ContextUnusable(..) => "ContextNotFound",
            CredentialsError::NoSource => "NoCredentials",
            CredentialsError::PluginCredentials(..) => "PluginCredentials",
        }
    }
}

/// A client for the member, and a key that changes whenever the
/// credentials it was built from change.
pub async fn build(hub: &Client, spec: &RegionSpec) -> Result<(Client, String), CredentialsError> {
    if spec.local {
        return Ok((hub.clone(), "local".to_string()));
    }
    let Some(reference) = &spec.kubeconfig_secret_ref else {
        return Err(CredentialsError::NoSource);
    };
    let shown = format!("{}/{}", reference.namespace, reference.name);
    let secrets: Api<Secret> = Api::namespaced(hub.clone(), &reference.namespace);
    let secret = match secrets.get_opt(&reference.name).await {
        Ok(Some(secret)) => secret,
        Ok(None) => return Err(CredentialsError::SecretNotFound(shown)),
        Err(err) => return Err(CredentialsError::SecretUnreadable(shown, err.to_string())),
    };
    let bytes = secret
        .data
        .as_ref()
        .and_then(|d| d.get(&reference.key))
        .map(|b| b.0.clone())
        .or_else(|| {
            secret
                .string_data
                .as_ref()
                .and_then(|d| d.get(&reference.key))
                .map(|s| s.clone().into_bytes())
        })
        .ok_or_else(|| CredentialsError::KeyMissing(shown.clone(), reference.key.clone()))?;
    let text = String::from_utf8(bytes).map_err(|e| {
        CredentialsError::NotAKubeconfig(shown.clone(), reference.key.clone(), e.to_string())
    })?;
    let kubeconfig = Kubeconfig::from_yaml(&text).map_err(|e| {
        CredentialsError::NotAKubeconfig(shown.clone(), reference.key.clone(), e.to_string())
    })?;
    refuse_plugins(&kubeconfig, &shown)?;
    if let Some(context) = &spec.context
        && !kubeconfig.contexts.iter().any(|c| &c.name == context)
    {
        return Err(CredentialsError::ContextUnusable(format!(
            "context {context:?} is not in the kubeconfig of Secret {shown}"
        )));
    }
    let options = KubeConfigOptions {
        context: spec.context.clone(),
        ..Default::default()
    };
    let mut config = Config::from_custom_kubeconfig(kubeconfig, &options)
        .await
        .map_err(|e| CredentialsError::ContextUnusable(e.to_string()))?;
    config.connect_timeout = Some(Duration::from_secs(3));
    let client = crate::metrics::counted_client(config, "member")
        .map_err(|e| CredentialsError::ContextUnusable(e.to_string()))?;
    let key = content_hash(&serde_json::json!({
        "kubeconfig": text,
        "context": spec.context,
    }));
    Ok((client, key))
}

/// Exec and auth-provider plugins (cloud CLIs) are not in the operator's
/// image: a kubeconfig needing one would fail on every request, so it is
/// refused up front with a reason that says what to do.
fn refuse_plugins(kubeconfig: &Kubeconfig, shown: &str) -> Result<(), CredentialsError> {
    let plugin_user = kubeconfig.auth_infos.iter().find(|named| {
        named
            .auth_info
            .as_ref()
            .is_some_and(|a| a.exec.is_some() || a.auth_provider.is_some())
    });
    match plugin_user {
        Some(named) => Err(CredentialsError::PluginCredentials(
            shown.to_string(),
            named.name.clone(),
        )),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXEC: &str = r#"
apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: cloud, user: {exec: {apiVersion: client.authentication.k8s.io/v1, command: aws}}}]
contexts: [{name: c, context: {cluster: c, user: cloud}}]
current-context: c
"#;

    #[test]
    fn a_kubeconfig_needing_an_exec_plugin_is_refused_by_name() {
        let kubeconfig = Kubeconfig::from_yaml(EXEC).unwrap();
        let err = refuse_plugins(&kubeconfig, "multiregion-system/eu").unwrap_err();
        assert_eq!(err.reason(), "PluginCredentials");
        let message = err.to_string();
        assert!(message.contains("\"cloud\""), "{message}");
        assert!(message.contains("multiregion join"), "{message}");
    }

    #[test]
    fn a_token_kubeconfig_is_accepted() {
        let token = EXEC.replace(
            "{exec: {apiVersion: client.authentication.k8s.io/v1, command: aws}}",
            "{token: abc}",
        );
        let kubeconfig = Kubeconfig::from_yaml(&token).unwrap();
        assert!(refuse_plugins(&kubeconfig, "x/y").is_ok());
    }
}
