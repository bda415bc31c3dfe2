//! The HTTP checks of regions' endpoints: `GET endpoint + path` (with the
//! check's scheme, port and Host header), passing on an expected code (any
//! 2xx by default; a 3xx only when allowed, never followed) within the
//! timeout. They tell whether a region's data plane serves, whatever the
//! operator's view of its API server.
//!
//! Each distinct check runs in its own task, like the Region probe, and
//! app reconciles only read its latest result: a black-holed endpoint
//! delays no reconcile of any app. A check nobody asked for in a while
//! stops; when a result changes, the apps that use it are triggered.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use kube::runtime::reflector::ObjectRef;
use tokio::sync::mpsc::UnboundedSender;
use tokio::task::JoinHandle;

use super::Trigger;
use crate::api::{HttpCheck, MultiRegionApp};
use crate::observe::{Ask, Asking, CaRef};
use crate::plan::health::HttpResult;
use crate::plan::manifest::AppKey;
use crate::text::member_text;

/// A check nobody asked for in this many intervals stops.
const IDLE_INTERVALS: u32 = 5;

/// A client for HTTP checks: redirects are answers, not followed, and every
/// check opens a fresh connection, so a connection kept from before a
/// region restarted (perhaps to an address another node has now) never
/// answers for it.
pub fn client() -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(0)
        .build()
}

/// A check client that trusts the CA certificates in `pem` (and no others).
pub(crate) fn client_trusting(pem: &str) -> Result<reqwest::Client, String> {
    let certificates = reqwest::Certificate::from_pem_bundle(pem.as_bytes())
        .map_err(|e| format!("healthCheck.http.caBundle: not PEM certificates: {e}"))?;
    if certificates.is_empty() {
        return Err("healthCheck.http.caBundle: no certificate in it".into());
    }
    let mut builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(0)
        .tls_built_in_root_certs(false);
    for certificate in certificates {
        builder = builder.add_root_certificate(certificate);
    }
    builder
        .build()
        .map_err(|e| format!("healthCheck.http.caBundle: {e}"))
}

/// What identifies one check.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct CheckKey {
    url: String,
    /// The Host header, when it is not the URL's host.
    host: Option<String>,
    /// Codes that pass; empty: any 2xx.
    codes: Vec<i32>,
    /// A 3xx passes.
    redirects: bool,
    /// CA certificates (PEM) trusted instead of the system's roots.
    ca: Option<String>,
    interval: Duration,
    timeout: Duration,
}

/// How often a check runs, and how long one may take.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    pub interval: Duration,
    pub timeout: Duration,
}

impl CheckKey {
    /// Whether an answer with `code` passes.
    fn passes(&self, code: u16) -> bool {
        passes(&self.codes, self.redirects, code)
    }
}

/// Whether an answer with `code` passes a check expecting `codes` (any
/// 2xx when empty), 3xx only with `redirects`: `HttpCheck::passes`.
pub fn passes(codes: &[i32], redirects: bool, code: u16) -> bool {
    let check = HttpCheck {
        path: String::new(),
        host: None,
        scheme: None,
        port: None,
        expected_codes: codes.to_vec(),
        allow_redirects: redirects,
        ca_bundle: None,
    };
    check.passes(code)
}

/// The URL a check requests: the endpoint with the check's scheme and port,
/// and its path.
pub fn check_url(endpoint: &str, check: &HttpCheck) -> Result<String, String> {
    let mut url = reqwest::Url::parse(endpoint)
        .map_err(|e| format!("endpoint {endpoint:?} is not a URL: {e}"))?;
    if let Some(scheme) = check.scheme {
        url.set_scheme(scheme.as_str())
            .map_err(|()| format!("cannot check {endpoint} over {}", scheme.as_str()))?;
    }
    if let Some(port) = check.port {
        let port = u16::try_from(port).map_err(|_| format!("port {port} is out of range"))?;
        url.set_port(Some(port))
            .map_err(|()| format!("cannot set port {port} on {endpoint}"))?;
    }
    let base = url.as_str().trim_end_matches('/');
    Ok(format!("{base}{}", check.path))
}

/// One running check.
struct Check {
    /// The check as put to the other observers while it fails.
    ask: Ask,
    latest: Mutex<HttpResult>,
    apps: Mutex<HashSet<ObjectRef<MultiRegionApp>>>,
    asked: Mutex<Instant>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Check {
    fn drop(&mut self) {
        if let Ok(Some(task)) = self.task.lock().map(|mut t| t.take()) {
            task.abort();
        }
    }
}

/// Every HTTP check the apps use.
pub struct HttpChecks {
    http: reqwest::Client,
    checks: Mutex<HashMap<CheckKey, Arc<Check>>>,
    triggers: UnboundedSender<Trigger>,
    /// Where failing checks are put to the other observers.
    asking: Arc<Asking>,
}

/// A check's latest result, and the id it is asked about by while it
/// fails (`observe::check_sightings`).
#[derive(Clone, Debug, PartialEq)]
pub struct Checked {
    pub result: HttpResult,
    pub ask_id: Option<String>,
}

impl From<HttpResult> for Checked {
    fn from(result: HttpResult) -> Self {
        Checked {
            result,
            ask_id: None,
        }
    }
}

impl HttpChecks {
    pub fn new(
        http: reqwest::Client,
        triggers: UnboundedSender<Trigger>,
        asking: Arc<Asking>,
    ) -> Arc<Self> {
        Arc::new(HttpChecks {
            http,
            checks: Mutex::default(),
            triggers,
            asking,
        })
    }

    /// The latest result of checking `endpoint + path` every `interval`,
    /// started on first use; `app` is triggered when it changes.
    pub fn result(
        self: &Arc<Self>,
        app: &AppKey,
        endpoint: Option<&str>,
        check: &HttpCheck,
        ca: Option<String>,
        timing: Timing,
    ) -> Checked {
        // A check that cannot be made is a configuration mistake, not
        // news about the region.
        let Some(endpoint) = endpoint else {
            return HttpResult::Misconfigured(
                "no endpoint: set spec.regions[].endpoint or the Region's spec.endpoint".into(),
            )
            .into();
        };
        let url = match check_url(endpoint, check) {
            Ok(url) => url,
            Err(why) => return HttpResult::Misconfigured(why).into(),
        };
        let ask = Ask {
            url: url.clone(),
            host: check.host.clone(),
            codes: check.expected_codes.clone(),
            redirects: check.allow_redirects,
            timeout_ms: timing.timeout.as_millis() as u64,
            ca: check.ca_bundle.as_ref().map(|b| CaRef {
                namespace: app.namespace.clone(),
                config_map: b.config_map.clone(),
                key: b.key.clone(),
            }),
        };
        let key = CheckKey {
            url,
            host: check.host.clone(),
            codes: check.expected_codes.clone(),
            redirects: check.allow_redirects,
            ca,
            interval: timing.interval,
            timeout: timing.timeout,
        };
        let check = self.check(key, ask);
        if let Ok(mut asked) = check.asked.lock() {
            *asked = Instant::now();
        }
        if let Ok(mut apps) = check.apps.lock() {
            apps.insert(ObjectRef::new(&app.name).within(&app.namespace));
        }
        let result = check
            .latest
            .lock()
            .map(|r| r.clone())
            .unwrap_or(HttpResult::Pending);
        Checked {
            result,
            ask_id: Some(check.ask.id()),
        }
    }

    /// The running check for `key`, started if there is none.
    fn check(self: &Arc<Self>, key: CheckKey, ask: Ask) -> Arc<Check> {
        let Ok(mut checks) = self.checks.lock() else {
            return Arc::new(new_check(ask));
        };
        if let Some(check) = checks.get(&key) {
            return check.clone();
        }
        let check = Arc::new(new_check(ask));
        let task = tokio::spawn(run(
            Arc::downgrade(self),
            Arc::downgrade(&check),
            key.clone(),
        ));
        if let Ok(mut slot) = check.task.lock() {
            *slot = Some(task);
        }
        checks.insert(key, check.clone());
        check
    }

    fn stop(&self, key: &CheckKey) {
        let Some(check) = self.checks.lock().ok().and_then(|mut c| c.remove(key)) else {
            return;
        };
        let failing = check
            .latest
            .lock()
            .is_ok_and(|l| matches!(*l, HttpResult::Fails(_)));
        if failing {
            self.asking.settle(&check.ask);
        }
    }
}

/// The checks stop with the controller that ran them (this replica no
/// longer leads): it asks the other observers nothing any more.
impl Drop for HttpChecks {
    fn drop(&mut self) {
        self.asking.clear();
    }
}

fn new_check(ask: Ask) -> Check {
    Check {
        ask,
        latest: Mutex::new(HttpResult::Pending),
        apps: Mutex::default(),
        asked: Mutex::new(Instant::now()),
        task: Mutex::default(),
    }
}

/// Checks every interval until nobody asks any more.
async fn run(checks: Weak<HttpChecks>, check: Weak<Check>, key: CheckKey) {
    // A check with its own CA bundle has its own client, built once.
    let own = key.ca.as_deref().map(client_trusting);
    loop {
        let started = Instant::now();
        let Some(shared) = checks.upgrade().map(|c| c.http.clone()) else {
            return;
        };
        let http = match &own {
            None => Ok(shared),
            Some(built) => built.clone(),
        };
        let Ok(http) = http else {
            let why = http.err().unwrap_or_default();
            let (Some(registry), Some(current)) = (checks.upgrade(), check.upgrade()) else {
                return;
            };
            report(&registry, &current, &key, HttpResult::Misconfigured(why));
            tokio::time::sleep(key.interval).await;
            continue;
        };
        let result = match once(&http, &key).await {
            Ok(()) => HttpResult::Serves,
            Err(why) => HttpResult::Fails(why),
        };
        let (Some(registry), Some(current)) = (checks.upgrade(), check.upgrade()) else {
            return;
        };
        let idle = current
            .asked
            .lock()
            .map(|a| a.elapsed())
            .unwrap_or_default();
        if idle > key.interval * IDLE_INTERVALS {
            registry.stop(&key);
            return;
        }
        report(&registry, &current, &key, result);
        drop((registry, current));
        tokio::time::sleep(key.interval.saturating_sub(started.elapsed())).await;
    }
}

/// Stores the result; when it changed, triggers the apps that use it.
fn report(registry: &HttpChecks, check: &Check, key: &CheckKey, result: HttpResult) {
    let (changed, failed_before) = match check.latest.lock() {
        Ok(mut latest) => {
            let flipped = std::mem::discriminant(&*latest) != std::mem::discriminant(&result);
            let failed = matches!(*latest, HttpResult::Fails(_));
            *latest = result.clone();
            (flipped, failed)
        }
        Err(_) => (false, false),
    };
    if !changed {
        return;
    }
    // Each check asks once while it fails, and settles what it asked.
    match (&result, failed_before) {
        (HttpResult::Fails(_), _) => registry.asking.ask(&check.ask),
        (_, true) => registry.asking.settle(&check.ask),
        _ => {}
    }
    match &result {
        HttpResult::Serves => tracing::info!(url = %key.url, "endpoint serves"),
        HttpResult::Fails(why) => {
            tracing::warn!(url = %key.url, error = %why, "endpoint check failed")
        }
        _ => {}
    }
    let apps: Vec<_> = check
        .apps
        .lock()
        .map(|a| a.iter().cloned().collect())
        .unwrap_or_default();
    for app in apps {
        let _ = registry.triggers.send(Trigger::App(app));
    }
}

/// One check. The error says what was requested and what went wrong; the
/// body is never read.
async fn once(http: &reqwest::Client, key: &CheckKey) -> Result<(), String> {
    let url = &key.url;
    let mut request = http.get(url).timeout(key.timeout);
    if let Some(host) = &key.host {
        request = request.header(reqwest::header::HOST, host);
    }
    let response = request
        .send()
        .await
        .map_err(|e| member_text(&format!("GET {url}: {e}")))?;
    let code = response.status();
    match key.passes(code.as_u16()) {
        true => Ok(()),
        false => Err(member_text(&format!("GET {url}: {code}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(extra: serde_json::Value) -> HttpCheck {
        let mut base = serde_json::json!({"path": "/healthz"});
        if let (Some(b), Some(e)) = (base.as_object_mut(), extra.as_object()) {
            b.extend(e.clone());
        }
        serde_json::from_value(base).unwrap()
    }

    #[test]
    fn the_url_takes_the_checks_scheme_port_and_path() {
        let url = |endpoint, extra| check_url(endpoint, &check(extra));
        let none = serde_json::json!({});
        assert_eq!(
            url("http://10.0.0.1:30080", none.clone()).unwrap(),
            "http://10.0.0.1:30080/healthz"
        );
        assert_eq!(
            url("http://10.0.0.1:30080/", none.clone()).unwrap(),
            "http://10.0.0.1:30080/healthz"
        );
        assert_eq!(
            url(
                "http://lb.example",
                serde_json::json!({"scheme": "https", "port": 8443})
            )
            .unwrap(),
            "https://lb.example:8443/healthz"
        );
        assert!(url("not a url", none).unwrap_err().contains("not a URL"));
    }

    #[test]
    fn an_empty_ca_bundle_trusts_nothing_and_is_refused() {
        let err = client_trusting("").unwrap_err();
        assert!(err.contains("no certificate"), "{err}");
    }

    #[test]
    fn a_ca_bundle_that_is_not_pem_is_named() {
        let err =
            client_trusting("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
                .unwrap_err();
        assert!(err.contains("healthCheck.http.caBundle"), "{err}");
    }

    #[test]
    fn codes_pass_as_configured() {
        let default = check(serde_json::json!({}));
        assert!(default.passes(200) && default.passes(204));
        assert!(
            !default.passes(301) && !default.passes(302),
            "redirects do not pass"
        );
        assert!(!default.passes(503) && !default.passes(404));
        let redirects = check(serde_json::json!({"allowRedirects": true}));
        assert!(redirects.passes(302));
        let codes = check(serde_json::json!({"expectedCodes": [200, 401]}));
        assert!(codes.passes(401) && !codes.passes(204));
    }
}
