//! Building a client for a member cluster from its Region.

use k8s_openapi::api::core::v1::Secret;
use kube::Config;
use kube::api::Api;
use kube::config::{KubeConfigOptions, Kubeconfig};

use crate::deadline::Clients;

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
        "spec.kubeconfigSecretRef: Secret {0} holds a kubeconfig whose user {1:?} runs the exec \
         plugin {2:?}, which the operator does not have: store a token or client certificate \
         instead (`multiregion join` makes one)"
    )]
    PluginCredentials(String, String, String),
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
pub async fn build(
    hub: &Clients,
    spec: &RegionSpec,
) -> Result<(Clients, String), CredentialsError> {
    if spec.local {
        return Ok((hub.clone(), "local".to_string()));
    }
    let Some(reference) = &spec.kubeconfig_secret_ref else {
        return Err(CredentialsError::NoSource);
    };
    let shown = format!("{}/{}", reference.namespace, reference.name);
    let secrets: Api<Secret> = Api::namespaced(hub.requests.clone(), &reference.namespace);
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
    refuse_plugins(&kubeconfig, spec.context.as_ref(), &shown)?;
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
    let config = Config::from_custom_kubeconfig(kubeconfig, &options)
        .await
        .map_err(|e| CredentialsError::ContextUnusable(e.to_string()))?;
    let client = crate::deadline::Clients::member(config)
        .map_err(|e| CredentialsError::ContextUnusable(e.to_string()))?;
    let key = content_hash(&serde_json::json!({
        "kubeconfig": text,
        "context": spec.context,
    }));
    Ok((client, key))
}

/// An exec plugin (a cloud CLI such as `aws` or `gke-gcloud-auth-plugin`)
/// that is not on this process's PATH would fail on every request: the
/// operator's image holds no such tool. The user of the context in use is
/// refused up front with a reason that says what to do; a plugin that is
/// installed (the operator run outside the image) is used.
fn refuse_plugins(
    kubeconfig: &Kubeconfig,
    context: Option<&String>,
    shown: &str,
) -> Result<(), CredentialsError> {
    let context = context.or(kubeconfig.current_context.as_ref());
    let user = kubeconfig
        .contexts
        .iter()
        .find(|c| Some(&c.name) == context)
        .and_then(|c| c.context.as_ref())
        .and_then(|c| c.user.clone());
    let exec = kubeconfig
        .auth_infos
        .iter()
        .find(|named| Some(&named.name) == user.as_ref())
        .and_then(|named| named.auth_info.as_ref())
        .and_then(|a| a.exec.as_ref());
    match exec.and_then(|e| e.command.clone()) {
        Some(command) if !on_path(&command) => Err(CredentialsError::PluginCredentials(
            shown.to_string(),
            user.unwrap_or_default(),
            command,
        )),
        _ => Ok(()),
    }
}

fn on_path(command: &str) -> bool {
    let path = std::path::Path::new(command);
    if path.components().count() > 1 {
        return path.is_file();
    }
    std::env::var_os("PATH")
        .is_some_and(|dirs| std::env::split_paths(&dirs).any(|d| d.join(command).is_file()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXEC: &str = r#"
apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: cloud, user: {exec: {apiVersion: client.authentication.k8s.io/v1, command: no-such-cloud-cli}}}]
contexts: [{name: c, context: {cluster: c, user: cloud}}]
current-context: c
"#;

    #[test]
    fn a_kubeconfig_needing_an_exec_plugin_is_refused_by_name() {
        let kubeconfig = Kubeconfig::from_yaml(EXEC).unwrap();
        let err = refuse_plugins(&kubeconfig, None, "multiregion-system/eu").unwrap_err();
        assert_eq!(err.reason(), "PluginCredentials");
        let message = err.to_string();
        assert!(message.contains("\"cloud\""), "{message}");
        assert!(message.contains("multiregion join"), "{message}");
        assert!(message.contains("no-such-cloud-cli"), "{message}");
    }

    #[test]
    fn an_installed_plugin_or_another_contexts_plugin_is_not_refused() {
        let installed = EXEC.replace("no-such-cloud-cli", "sh");
        let kubeconfig = Kubeconfig::from_yaml(&installed).unwrap();
        assert!(refuse_plugins(&kubeconfig, None, "x/y").is_ok());
        let other = EXEC.replace(
            "contexts: [{name: c, context: {cluster: c, user: cloud}}]",
            "contexts: [{name: c, context: {cluster: c, user: cloud}}, {name: t, context: {cluster: c, user: t}}]",
        );
        let kubeconfig = Kubeconfig::from_yaml(&other).unwrap();
        assert!(refuse_plugins(&kubeconfig, Some(&"t".to_string()), "x/y").is_ok());
    }

    #[test]
    fn a_token_kubeconfig_is_accepted() {
        let token = EXEC.replace(
            "{exec: {apiVersion: client.authentication.k8s.io/v1, command: no-such-cloud-cli}}",
            "{token: abc}",
        );
        let kubeconfig = Kubeconfig::from_yaml(&token).unwrap();
        assert!(refuse_plugins(&kubeconfig, None, "x/y").is_ok());
    }
}
