//! `/metrics` for those the hub allows only (`run --metrics-auth
//! kubernetes`, the chart's default): the scraper's bearer token is checked
//! with a TokenReview, and its user must be allowed `get` on the
//! non-resource URL `/metrics` (a SubjectAccessReview), as kube-rbac-proxy
//! and controller-runtime's secure metrics do. A verdict is kept for a
//! minute, keyed by a per-process keyed hash of the token (never the token
//! itself), so a scrape every 15 s costs the hub two reviews a minute.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::api::authorization::v1::{
    NonResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::Client;
use kube::api::{Api, PostParams};

/// How long a verdict stands.
const REMEMBERED: Duration = Duration::from_secs(60);
/// At most this many verdicts are kept (then they are all forgotten).
const MOST_REMEMBERED: usize = 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verdict {
    Allowed,
    Unauthenticated,
    Forbidden,
}

/// Checks scrapers against the hub.
pub struct MetricsAuth {
    hub: Client,
    keys: RandomState,
    verdicts: Mutex<HashMap<u64, (Instant, Verdict)>>,
}

/// The token of an `Authorization: Bearer TOKEN` header.
pub fn bearer(authorization: Option<&str>) -> Option<&str> {
    let value = authorization?.trim();
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

impl MetricsAuth {
    pub fn new(hub: Client) -> Self {
        MetricsAuth {
            hub,
            keys: RandomState::new(),
            verdicts: Mutex::new(HashMap::new()),
        }
    }

    /// Ok when the request may read `/metrics`; else the status and why.
    pub async fn check(&self, authorization: Option<&str>) -> Result<(), (StatusCode, String)> {
        let Some(token) = bearer(authorization) else {
            return Err((
                StatusCode::UNAUTHORIZED,
                "a bearer token is needed (Authorization: Bearer TOKEN)".into(),
            ));
        };
        let key = self.keys.hash_one(token);
        let verdict = match self.remembered(key) {
            Some(verdict) => verdict,
            None => {
                let verdict = self.review(token).await.map_err(|e| {
                    let why = format!("cannot review the token with the hub: {e}");
                    (StatusCode::SERVICE_UNAVAILABLE, why)
                })?;
                self.remember(key, verdict);
                verdict
            }
        };
        match verdict {
            Verdict::Allowed => Ok(()),
            Verdict::Unauthenticated => Err((
                StatusCode::UNAUTHORIZED,
                "the hub does not accept this token".into(),
            )),
            Verdict::Forbidden => Err((
                StatusCode::FORBIDDEN,
                "this user may not get /metrics: bind it a ClusterRole allowing get on the \
                 non-resource URL /metrics (the chart makes RELEASE-metrics-reader)"
                    .into(),
            )),
        }
    }

    fn remembered(&self, key: u64) -> Option<Verdict> {
        let verdicts = self.verdicts.lock().unwrap_or_else(|p| p.into_inner());
        verdicts
            .get(&key)
            .filter(|(at, _)| at.elapsed() < REMEMBERED)
            .map(|(_, verdict)| *verdict)
    }

    fn remember(&self, key: u64, verdict: Verdict) {
        let mut verdicts = self.verdicts.lock().unwrap_or_else(|p| p.into_inner());
        if verdicts.len() >= MOST_REMEMBERED {
            verdicts.clear();
        }
        verdicts.insert(key, (Instant::now(), verdict));
    }

    /// Who the token is (TokenReview), then whether they may get /metrics
    /// (SubjectAccessReview).
    async fn review(&self, token: &str) -> Result<Verdict, kube::Error> {
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: Some(token.to_string()),
                ..TokenReviewSpec::default()
            },
            ..TokenReview::default()
        };
        let reviewed = Api::<TokenReview>::all(self.hub.clone())
            .create(&PostParams::default(), &review)
            .await?;
        let status = reviewed.status.unwrap_or_default();
        let Some(user) = status.user.filter(|_| status.authenticated == Some(true)) else {
            return Ok(Verdict::Unauthenticated);
        };
        let access = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: user.username,
                groups: user.groups,
                uid: user.uid,
                extra: user.extra,
                non_resource_attributes: Some(NonResourceAttributes {
                    path: Some("/metrics".into()),
                    verb: Some("get".into()),
                }),
                ..SubjectAccessReviewSpec::default()
            },
            ..SubjectAccessReview::default()
        };
        let decided = Api::<SubjectAccessReview>::all(self.hub.clone())
            .create(&PostParams::default(), &access)
            .await?;
        Ok(match decided.status.is_some_and(|s| s.allowed) {
            true => Verdict::Allowed,
            false => Verdict::Forbidden,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::bearer;

    #[test]
    fn only_a_bearer_token_is_read() {
        assert_eq!(bearer(Some("Bearer abc.def")), Some("abc.def"));
        assert_eq!(bearer(Some("bearer  abc ")), Some("abc"));
        assert_eq!(bearer(Some("Basic dXNlcjpwdw==")), None);
        assert_eq!(bearer(Some("Bearer ")), None);
        assert_eq!(bearer(None), None);
    }
}
