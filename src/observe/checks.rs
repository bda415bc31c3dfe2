//! HTTP checks put to every observer. The leader's check of an app's
//! endpoint can fail because the leader's own path to it is broken; before
//! such a failure counts, the other replicas check the same URL from their
//! regions (`plan::observers::gate`).
//!
//! - The leader's failing checks are its **asks**: its observer Lease lists
//!   them (`multiregion.io/checks-asked`), at most `MAX_ASKS`, written when
//!   the list changes.
//! - Every observer runs every ask of every live observer Lease once per
//!   round, and publishes what it saw per ask
//!   (`multiregion.io/check-observations`: `Serving`, `Failing` since, or
//!   `Unknown`), keyed by the ask's id.
//! - Nothing is asked while the checks pass, nor by a replica that is the
//!   only live observer: at steady state no write per app, ever.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::Api;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use super::view::Word;

/// The most checks one replica asks the others about at once (a Lease's
/// annotations are limited to 256 KiB). Further failing checks wait for
/// room: until asked, the others cannot say, and the failure counts after
/// `healthCheck.unknownSeconds`.
pub const MAX_ASKS: usize = 500;

/// A ConfigMap key holding the CA certificates an HTTPS check trusts.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CaRef {
    pub namespace: String,
    pub config_map: String,
    pub key: String,
}

/// One HTTP check put to the observers: what to request, what passes.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Ask {
    pub url: String,
    /// The Host header, when it is not the URL's host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Codes that pass; empty: any 2xx.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub codes: Vec<i32>,
    /// A 3xx passes.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub redirects: bool,
    pub timeout_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<CaRef>,
}

impl Ask {
    /// A short name of the ask, the same in every replica and version
    /// (FNV-1a of its published form).
    pub fn id(&self) -> String {
        let text = serde_json::to_string(self).unwrap_or_default();
        let hash = text.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        format!("{hash:016x}")
    }

    /// Whether an answer with `code` passes.
    fn passes(&self, code: u16) -> bool {
        crate::regions::http_check::passes(&self.codes, self.redirects, code)
    }
}

/// This replica's asks: the checks its controller (when it leads) sees
/// failing. Shared between the HTTP checks and the observer, which wakes
/// when the asks change. Two running checks may make one ask (the same URL
/// at two intervals): it is counted, and withdrawn when neither fails.
#[derive(Debug, Default)]
pub struct Asking {
    asks: Mutex<BTreeMap<String, (Ask, usize)>>,
    changed: Notify,
}

/// The most bytes of asks one replica publishes (a Lease's annotations
/// hold 256 KiB in all, its check results included).
const MAX_ASK_BYTES: usize = 64 * 1024;

impl Asking {
    /// A check that failed here: ask the others.
    pub fn ask(&self, ask: &Ask) {
        let added = self
            .asks
            .lock()
            .map(|mut asks| {
                let entry = asks.entry(ask.id()).or_insert_with(|| (ask.clone(), 0));
                entry.1 += 1;
                entry.1 == 1
            })
            .unwrap_or(false);
        if added {
            self.changed.notify_one();
        }
    }

    /// A check that failed here passes again (or stopped).
    pub fn settle(&self, ask: &Ask) {
        let removed = self
            .asks
            .lock()
            .map(|mut asks| {
                let id = ask.id();
                let Some(entry) = asks.get_mut(&id) else {
                    return false;
                };
                entry.1 = entry.1.saturating_sub(1);
                let done = entry.1 == 0;
                if done {
                    asks.remove(&id);
                }
                done
            })
            .unwrap_or(false);
        if removed {
            self.changed.notify_one();
        }
    }

    /// Nothing to ask any more: the checks stopped (this replica no longer
    /// leads).
    pub fn clear(&self) {
        let had = self
            .asks
            .lock()
            .map(|mut asks| !std::mem::take(&mut *asks).is_empty())
            .unwrap_or(false);
        if had {
            self.changed.notify_one();
        }
    }

    /// The asks to publish, by id: at most `MAX_ASKS`, and at most
    /// `MAX_ASK_BYTES` of them.
    pub fn current(&self) -> Vec<Ask> {
        let Ok(asks) = self.asks.lock() else {
            return Vec::new();
        };
        let mut bytes = 0;
        asks.values()
            .map(|(ask, _)| ask)
            .take(MAX_ASKS)
            .take_while(|ask| {
                bytes += serde_json::to_string(ask).map_or(0, |t| t.len() + 1);
                bytes <= MAX_ASK_BYTES
            })
            .cloned()
            .collect()
    }

    /// Resolves when an ask was added or removed since the last call.
    pub async fn changed(&self) {
        self.changed.notified().await
    }
}

/// Every ask of the live observers, by id (the union, each once).
pub fn union<'a>(asks: impl IntoIterator<Item = &'a Vec<Ask>>) -> BTreeMap<String, Ask> {
    asks.into_iter()
        .flatten()
        .map(|ask| (ask.id(), ask.clone()))
        .collect()
}

/// The most asks one replica answers (by id, in order), all live
/// observers' together: its results stay well within a Lease's 256 KiB.
pub const MAX_ANSWERS: usize = 1000;

/// Runs the asks beside the observer loop, one run at a time: the loop
/// starts a run when none is going, takes its results when it ended, and
/// publishes the latest results of the asks still asked.
pub(super) struct Checker {
    hub: kube::Client,
    http: Option<reqwest::Client>,
    running: Option<tokio::task::JoinHandle<(BTreeMap<String, Word>, CaCache)>>,
    cas: Option<CaCache>,
    latest: BTreeMap<String, Word>,
    done: std::sync::Arc<Notify>,
    /// When the last run started: runs start at most once a round.
    started: Option<std::time::Instant>,
}

impl Drop for Checker {
    fn drop(&mut self) {
        if let Some(task) = self.running.take() {
            task.abort();
        }
    }
}

impl Checker {
    pub fn new(hub: kube::Client) -> Self {
        Checker {
            hub,
            http: crate::regions::http_check::client().ok(),
            running: None,
            cas: Some(CaCache::default()),
            latest: BTreeMap::new(),
            done: std::sync::Arc::default(),
            started: None,
        }
    }

    /// Notified when a run ends.
    pub fn done(&self) -> std::sync::Arc<Notify> {
        self.done.clone()
    }

    /// Takes the results of the run that ended, if one did.
    pub fn collect(&mut self) {
        if !self.running.as_ref().is_some_and(|t| t.is_finished()) {
            return;
        }
        let Some(task) = self.running.take() else {
            return;
        };
        use futures::FutureExt;
        match task.now_or_never() {
            Some(Ok((results, cas))) => {
                self.latest = results;
                self.cas = Some(cas);
            }
            // A run that panicked: start afresh.
            _ => self.cas = Some(CaCache::default()),
        }
    }

    /// Starts a run of `asks` unless one is going, one started less than
    /// `every` ago, or nothing is asked.
    pub fn start(&mut self, asks: &BTreeMap<String, Ask>, every: Duration) {
        if asks.is_empty() {
            self.latest.clear();
            return;
        }
        if self.started.is_some_and(|at| at.elapsed() < every) {
            return;
        }
        let (Some(http), None) = (self.http.clone(), self.running.as_ref()) else {
            return;
        };
        self.started = Some(std::time::Instant::now());
        let Some(mut cas) = self.cas.take() else {
            return;
        };
        let (hub, asks, done) = (self.hub.clone(), asks.clone(), self.done.clone());
        self.running = Some(tokio::spawn(async move {
            let results = check_all(&hub, &http, &mut cas, &asks).await;
            done.notify_one();
            (results, cas)
        }));
    }

    /// The latest results of the asks still asked.
    pub fn latest(&self, asks: &BTreeMap<String, Ask>) -> BTreeMap<String, Word> {
        self.latest
            .iter()
            .filter(|(id, _)| asks.contains_key(*id))
            .map(|(id, word)| (id.clone(), *word))
            .collect()
    }
}

/// CA certificates read from the hub for asks that name them, kept for a
/// minute.
#[derive(Default)]
pub(super) struct CaCache {
    read: BTreeMap<CaRef, (Option<String>, std::time::Instant)>,
}

const CA_KEPT: Duration = Duration::from_secs(60);

impl CaCache {
    async fn pem(&mut self, hub: &kube::Client, ca: &CaRef) -> Option<String> {
        if let Some((pem, at)) = self.read.get(ca)
            && at.elapsed() < CA_KEPT
        {
            return pem.clone();
        }
        let api: Api<ConfigMap> = Api::namespaced(hub.clone(), &ca.namespace);
        let read = tokio::time::timeout(Duration::from_secs(2), api.get_opt(&ca.config_map)).await;
        let pem = match read {
            Ok(Ok(map)) => map.and_then(|m| m.data?.get(&ca.key).cloned()),
            _ => None,
        };
        self.read
            .insert(ca.clone(), (pem.clone(), std::time::Instant::now()));
        pem
    }

    /// Forgets bundles no ask names any more.
    fn keep_only(&mut self, asks: &BTreeMap<String, Ask>) {
        let named: BTreeSet<&CaRef> = asks.values().filter_map(|a| a.ca.as_ref()).collect();
        self.read.retain(|ca, _| named.contains(ca));
    }
}

/// Runs every ask once, all at once, each within its timeout: `Serving` when
/// it passes, `Failing` when it does not, `Unknown` when it cannot be made
/// here (its CA certificates unreadable).
pub(super) async fn check_all(
    hub: &kube::Client,
    http: &reqwest::Client,
    cas: &mut CaCache,
    asks: &BTreeMap<String, Ask>,
) -> BTreeMap<String, Word> {
    cas.keep_only(asks);
    let mut clients: BTreeMap<String, Option<reqwest::Client>> = BTreeMap::new();
    for (id, ask) in asks {
        let client = match &ask.ca {
            None => Some(http.clone()),
            Some(ca) => {
                let pem = cas.pem(hub, ca).await;
                pem.and_then(|pem| crate::regions::http_check::client_trusting(&pem).ok())
            }
        };
        clients.insert(id.clone(), client);
    }
    let checks = asks.iter().map(|(id, ask)| {
        let client = clients.get(id).cloned().flatten();
        async move {
            let word = match client {
                None => Word::Unknown,
                Some(client) => once(&client, ask).await,
            };
            (id.clone(), word)
        }
    });
    futures::future::join_all(checks)
        .await
        .into_iter()
        .collect()
}

async fn once(http: &reqwest::Client, ask: &Ask) -> Word {
    let timeout = Duration::from_millis(ask.timeout_ms.clamp(100, 30_000));
    let mut request = http.get(&ask.url).timeout(timeout);
    if let Some(host) = &ask.host {
        request = request.header(reqwest::header::HOST, host);
    }
    match request.send().await {
        Ok(response) if ask.passes(response.status().as_u16()) => Word::Serving,
        _ => Word::Failing,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ask(url: &str) -> Ask {
        Ask {
            url: url.into(),
            host: None,
            codes: vec![],
            redirects: false,
            timeout_ms: 1000,
            ca: None,
        }
    }

    #[test]
    fn an_asks_id_is_stable_and_tells_asks_apart() {
        let a = ask("http://10.0.0.1/healthz");
        assert_eq!(a.id(), ask("http://10.0.0.1/healthz").id());
        assert_eq!(a.id().len(), 16);
        assert_ne!(a.id(), ask("http://10.0.0.2/healthz").id());
        let with_host = Ask {
            host: Some("shop.example".into()),
            ..a.clone()
        };
        assert_ne!(a.id(), with_host.id());
        // The published form is what every replica hashes.
        let text = serde_json::to_string(&a).unwrap();
        assert_eq!(
            text,
            r#"{"url":"http://10.0.0.1/healthz","timeoutMs":1000}"#
        );
    }

    #[test]
    fn asks_come_and_go_and_are_capped() {
        let asking = Asking::default();
        for n in 0..MAX_ASKS + 10 {
            asking.ask(&ask(&format!("http://10.0.0.1/{n}")));
        }
        assert_eq!(asking.current().len(), MAX_ASKS);
        asking.settle(&ask("http://10.0.0.1/0"));
        assert!(
            asking
                .current()
                .iter()
                .all(|a| a.url != "http://10.0.0.1/0")
        );
        asking.clear();
        assert!(
            asking.current().is_empty(),
            "a replica that stops leading asks nothing"
        );
    }

    #[test]
    fn an_ask_two_checks_make_stays_while_either_fails() {
        let asking = Asking::default();
        let shared = ask("http://10.0.0.1/healthz");
        asking.ask(&shared);
        asking.ask(&shared);
        asking.settle(&shared);
        assert_eq!(asking.current().len(), 1, "the other check still fails");
        asking.settle(&shared);
        assert!(asking.current().is_empty());
        asking.settle(&shared);
        assert!(asking.current().is_empty(), "a settle too many is harmless");
    }

    #[test]
    fn the_asks_published_stay_within_their_bytes() {
        let asking = Asking::default();
        let long = "x".repeat(2000);
        for n in 0..100 {
            asking.ask(&ask(&format!("http://10.0.0.1/{n}/{long}")));
        }
        let published = serde_json::to_string(&asking.current()).unwrap();
        assert!(published.len() <= MAX_ASK_BYTES, "{}", published.len());
        assert!(!asking.current().is_empty());
    }

    #[test]
    fn the_union_holds_each_ask_once() {
        let one = vec![ask("http://a/"), ask("http://b/")];
        let two = vec![ask("http://b/")];
        let all = union([&one, &two]);
        assert_eq!(all.len(), 2);
    }

    #[tokio::test]
    async fn an_ask_that_cannot_connect_is_failing() {
        let http = crate::regions::http_check::client().unwrap();
        // Nothing listens on port 9 of loopback here.
        let word = once(&http, &ask("http://127.0.0.1:9/healthz")).await;
        assert_eq!(word, Word::Failing);
    }
}
