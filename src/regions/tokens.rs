//! The short-lived tokens `join` stores (TokenRequest): asked for in a
//! member, read back from a kubeconfig, and renewed by the operator before
//! they expire, with the identity's own right to ask for its token.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;

use super::Registry;
use crate::api::{ANNOTATION_CONFINED_IDENTITY, Region};
use crate::plan::identity::{self, MEMBER_NAMESPACE};

/// A token for the identity from the member's TokenRequest API, valid for
/// `ttl` (the API asks for at least 10 minutes), bound to the
/// ServiceAccount: deleting it revokes the token.
pub async fn request_token(
    client: &Client,
    namespace: &str,
    name: &str,
    ttl: Duration,
) -> kube::Result<String> {
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), namespace);
    let request = json!({
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenRequest",
        "spec": {"expirationSeconds": ttl.as_secs()}
    });
    let answer: TokenRequest = accounts
        .create_subresource("token", name, &PostParams::default(), &request)
        .await?;
    Ok(answer.status.map(|s| s.token).unwrap_or_default())
}

/// When the token was issued and when it expires (Unix seconds), read from
/// its JWT claims without checking its signature (the member does that).
/// None for a token that never expires (a Secret's, made by an older
/// join) or that is no JWT.
pub fn lifetime(token: &str) -> Option<(i64, i64)> {
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    Some((claims.get("iat")?.as_i64()?, claims.get("exp")?.as_i64()?))
}

/// The bearer token of a kubeconfig's first user that has one.
fn token_of(kubeconfig: &str) -> Option<String> {
    let parsed: serde_json::Value = serde_saphyr::from_str(kubeconfig).ok()?;
    parsed
        .get("users")?
        .as_array()?
        .iter()
        .find_map(|u| u.pointer("/user/token")?.as_str())
        .map(str::to_string)
}

/// Renews, for each Region `join` confined, the token in its kubeconfig
/// Secret once `plan::identity::renewal_due` says so: a new token of the
/// same lifetime asked for with the current one, written over it in the
/// Secret (the Region's member then rebuilds its client, keeping the old
/// one until the new one answers). Only while this replica may write.
///
/// `next_checks` holds, per Region, when its Secret is next read
/// (`plan::identity::next_check`), so that a day's token costs a hub read
/// every two minutes, not every call.
pub async fn renew_due(
    registry: &Registry,
    regions: &[Arc<Region>],
    within: Duration,
    next_checks: &mut HashMap<String, i64>,
) {
    let now = jiff::Timestamp::now().as_second();
    for region in regions {
        if registry.fence().check().is_err() {
            return;
        }
        let name = region.name_any();
        if next_checks.get(&name).is_some_and(|next| now < *next) {
            continue;
        }
        match renew(registry, region, now, within).await {
            Ok(Some(next)) => {
                next_checks.insert(name, next);
            }
            Ok(None) => {
                next_checks.remove(&name);
            }
            Err(why) => {
                next_checks.remove(&name);
                tracing::warn!(region = %name, error = %why, "the member token could not be renewed yet; trying again");
            }
        }
    }
}

/// Renews the Region's token if due; returns when to look again (None:
/// at the next call, after a renewal).
async fn renew(
    registry: &Registry,
    region: &Region,
    now: i64,
    within: Duration,
) -> Result<Option<i64>, String> {
    let later = Ok(Some(now + identity::LONGEST_CHECK_GAP));
    let Some(identity) = region.annotations().get(ANNOTATION_CONFINED_IDENTITY) else {
        return later;
    };
    let Some(secret_ref) = &region.spec.kubeconfig_secret_ref else {
        return later;
    };
    let secrets: Api<Secret> = Api::namespaced(registry.hub().clone(), &secret_ref.namespace);
    let secret = secrets
        .get_opt(&secret_ref.name)
        .await
        .map_err(|e| e.to_string())?;
    let kubeconfig = secret
        .and_then(|s| s.data?.remove(&secret_ref.key))
        .and_then(|k| String::from_utf8(k.0).ok())
        .ok_or("its kubeconfig Secret is missing")?;
    let Some(token) = token_of(&kubeconfig) else {
        return later;
    };
    let Some((issued, expires)) = lifetime(&token) else {
        return later;
    };
    let within = within.as_secs() as i64;
    if !identity::renewal_due(issued, expires, now, within) {
        return Ok(Some(identity::next_check(issued, expires, now, within)));
    }
    let member = registry.get(&region.name_any()).ok_or("no member yet")?;
    let client = member.client().map_err(|e| e.to_string())?;
    let ttl = Duration::from_secs((expires - issued).max(600) as u64);
    let renewed = request_token(client, MEMBER_NAMESPACE, identity, ttl)
        .await
        .map_err(|e| e.to_string())?;
    if renewed.is_empty() {
        return Err("the member answered without a token".into());
    }
    let data =
        base64::engine::general_purpose::STANDARD.encode(kubeconfig.replace(&token, &renewed));
    let patch = json!({"data": {secret_ref.key.clone(): data}});
    let (params, patch) = (PatchParams::default(), Patch::Merge(&patch));
    let write = secrets.patch(&secret_ref.name, &params, &patch);
    match registry
        .fence()
        .within(super::probe::STATUS_WRITE_DEADLINE, write)
        .await
    {
        Some(Ok(_)) => {
            tracing::info!(region = %region.name_any(), identity = %identity, "member token renewed");
            Ok(None)
        }
        Some(Err(err)) => Err(err.to_string()),
        None => Err("not written within the leader's deadline".into()),
    }
}

/// The scraper's token (`run --scraper-service-account`): what a
/// Prometheus that sends a token from a Secret (a PodMonitor) gets.
#[derive(Clone, Debug)]
pub struct ScraperToken {
    /// The ServiceAccount, in the operator's namespace, that may get
    /// `/metrics` and nothing else.
    pub account: String,
    /// How long each of its tokens lives.
    pub ttl: Duration,
}

impl ScraperToken {
    /// The Secret the token is kept in (key `token`), next to the account.
    pub fn secret(&self) -> String {
        format!("{}-bearer-token", self.account)
    }
}

/// Keeps a short-lived token of the scraper's ServiceAccount (TokenRequest,
/// bound to it: deleting the account revokes it) in its Secret, renewed at
/// two thirds of its life, so a token read from that Secret stops working
/// within `ttl` of the day it was read. Runs while this replica leads; the
/// Secret is the chart's (the operator may patch it, not create Secrets).
pub async fn keep_scraper_token(registry: Arc<Registry>, namespace: String, scraper: ScraperToken) {
    loop {
        let wait = match renew_scraper_token(&registry, &namespace, &scraper).await {
            Ok(wait) => wait,
            Err(why) => {
                tracing::warn!(secret = %scraper.secret(), error = %why, "the scraper's token could not be renewed yet; trying again");
                Duration::from_secs(10)
            }
        };
        tokio::time::sleep(wait).await;
    }
}

/// Renews the scraper's token if it is missing, not a short-lived one, or
/// due; returns how long until it should be looked at again.
async fn renew_scraper_token(
    registry: &Registry,
    namespace: &str,
    scraper: &ScraperToken,
) -> Result<Duration, String> {
    let secrets: Api<Secret> = Api::namespaced(registry.hub().clone(), namespace);
    let name = scraper.secret();
    let secret = secrets.get(&name).await.map_err(|e| e.to_string())?;
    let current = secret
        .data
        .and_then(|mut d| d.remove("token"))
        .and_then(|t| String::from_utf8(t.0).ok())
        .and_then(|t| lifetime(&t));
    let now = jiff::Timestamp::now().as_second();
    if let Some((issued, expires)) = current
        && !identity::renewal_due(issued, expires, now, 0)
    {
        let next = identity::next_check(issued, expires, now, 0);
        return Ok(Duration::from_secs((next - now).max(1) as u64));
    }
    let token = request_token(registry.hub(), namespace, &scraper.account, scraper.ttl)
        .await
        .map_err(|e| e.to_string())?;
    if token.is_empty() {
        return Err("the hub answered without a token".into());
    }
    let data = base64::engine::general_purpose::STANDARD.encode(token);
    let patch = json!({"data": {"token": data}});
    let (params, patch) = (PatchParams::default(), Patch::Merge(&patch));
    let write = secrets.patch(&name, &params, &patch);
    match registry
        .fence()
        .within(super::probe::STATUS_WRITE_DEADLINE, write)
        .await
    {
        Some(Ok(_)) => {
            tracing::info!(secret = %name, "the scraper's token renewed");
            Ok(Duration::from_secs(1))
        }
        Some(Err(err)) => Err(err.to_string()),
        None => Err("not written within the leader's deadline".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(claims: serde_json::Value) -> String {
        let encode = |v: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
        format!(
            "{}.{}.sig",
            encode(b"{\"alg\":\"RS256\"}"),
            encode(claims.to_string().as_bytes())
        )
    }

    #[test]
    fn a_tokens_lifetime_is_read_from_its_claims() {
        assert_eq!(
            lifetime(&jwt(json!({"iat": 100, "exp": 700, "sub": "x"}))),
            Some((100, 700))
        );
        assert_eq!(
            lifetime(&jwt(json!({"sub": "legacy"}))),
            None,
            "a Secret's token never expires"
        );
        assert_eq!(lifetime("not-a-jwt"), None);
    }

    #[test]
    fn the_token_is_found_in_a_kubeconfig() {
        let kubeconfig = "apiVersion: v1\nkind: Config\nclusters: []\ncontexts: []\nusers:\n- name: u\n  user: {token: abc.def.ghi}\n";
        assert_eq!(token_of(kubeconfig).as_deref(), Some("abc.def.ghi"));
    }
}
