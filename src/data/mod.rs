//! The data tier: each app's replication read from its databases
//! (`failover.replication.lagFrom.postgres`) or an exporter
//! (`lagFrom.metrics`), turned into each region's role and lag by
//! `plan::replication::lags`. The RPO gate and the status use them.
//!
//! Readings are taken at most once a second per app, each database within
//! a second ([`postgres::READ_TIMEOUT`]); the Secret of URIs is read from
//! the hub at most every 30 s. The primary's last position is kept here,
//! so a standby can be measured against it once the primary is gone.

pub mod metrics;
pub mod postgres;

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures::future::join_all;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client};

use crate::api::{LagSource, MultiRegionApp};
use crate::plan::manifest::AppKey;
use crate::plan::replication::{self, DbReading, PrimaryMark, ReplicaLag};

/// A reading is reused for this long (reconciles come faster than rounds).
const READING_REUSE: Duration = Duration::from_secs(1);
/// The Secret of URIs is read again after this long.
const SECRET_REUSE: Duration = Duration::from_secs(30);

type Uris = Result<BTreeMap<String, String>, String>;
/// Each region's role and lag, as one round read them.
type Lags = BTreeMap<String, ReplicaLag>;

/// The data tier's readers and what they remember.
pub struct DataTier {
    hub: Client,
    postgres: postgres::Connections,
    http: reqwest::Client,
    secrets: Mutex<HashMap<(String, String), (Instant, Uris)>>,
    readings: Mutex<HashMap<AppKey, (Instant, Lags)>>,
    marks: Mutex<HashMap<AppKey, PrimaryMark>>,
}

impl DataTier {
    pub fn new(hub: Client) -> Self {
        DataTier {
            hub,
            postgres: postgres::Connections::default(),
            http: reqwest::Client::new(),
            secrets: Mutex::default(),
            readings: Mutex::default(),
            marks: Mutex::default(),
        }
    }

    /// Each region's role and lag, when the app reads them from its data
    /// tier; empty otherwise (the annotation source is read in `gather`).
    pub async fn read(&self, app: &MultiRegionApp, key: &AppKey) -> Lags {
        let Some(source) = app.spec.failover.replication.as_ref().map(|r| &r.lag_from) else {
            return BTreeMap::new();
        };
        if source.postgres.is_none() && source.metrics.is_none() {
            return BTreeMap::new();
        }
        if let Some((at, lags)) = self.readings.lock().unwrap().get(key)
            && at.elapsed() < READING_REUSE
        {
            return lags.clone();
        }
        let regions: Vec<String> = app.spec.regions.iter().map(|r| r.name.clone()).collect();
        let readings = self.readings_of(source, key, &regions).await;
        let now = Timestamp::now();
        let last = self.marks.lock().unwrap().get(key).cloned();
        let (lags, mark) = replication::lags(&readings, last.as_ref(), now);
        if let Some(mark) = mark {
            self.marks.lock().unwrap().insert(key.clone(), mark);
        }
        self.readings
            .lock()
            .unwrap()
            .insert(key.clone(), (Instant::now(), lags.clone()));
        lags
    }

    async fn readings_of(
        &self,
        source: &LagSource,
        key: &AppKey,
        regions: &[String],
    ) -> BTreeMap<String, DbReading> {
        let reads = regions.iter().map(|region| async move {
            let reading = match (&source.postgres, &source.metrics) {
                (Some(pg), _) => self.read_postgres(key, &pg.secret_ref.name, region).await,
                (None, Some(m)) => {
                    let url = m.url.replace("{region}", region);
                    match metrics::read(&self.http, &url, &m.metric, region).await {
                        Ok(seconds) => DbReading::Exported { seconds },
                        Err(why) => DbReading::Unreadable(why),
                    }
                }
                (None, None) => DbReading::Unreadable("no lag source".into()),
            };
            (region.clone(), reading)
        });
        join_all(reads).await.into_iter().collect()
    }

    async fn read_postgres(&self, key: &AppKey, secret: &str, region: &str) -> DbReading {
        let where_ = format!("Secret {secret} key {region}");
        let uris = match self.uris(&key.namespace, secret).await {
            Ok(uris) => uris,
            Err(why) => return DbReading::Unreadable(format!("{where_}: {why}")),
        };
        let Some(uri) = uris.get(region) else {
            return DbReading::Unreadable(format!("{where_}: no such key"));
        };
        match self.postgres.read(uri).await {
            Ok(reading) => reading,
            Err(why) => DbReading::Unreadable(format!("{where_}: {}", redact(&why, uri))),
        }
    }

    /// The Secret's keys as URIs, read at most every [`SECRET_REUSE`].
    async fn uris(&self, namespace: &str, name: &str) -> Uris {
        let id = (namespace.to_string(), name.to_string());
        if let Some((at, uris)) = self.secrets.lock().unwrap().get(&id)
            && at.elapsed() < SECRET_REUSE
        {
            return uris.clone();
        }
        let api: Api<Secret> = Api::namespaced(self.hub.clone(), namespace);
        let uris = match api.get_opt(name).await {
            Ok(Some(secret)) => Ok(secret
                .data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, String::from_utf8_lossy(&v.0).trim().to_string()))
                .collect()),
            Ok(None) => Err("no such Secret in the app's namespace".to_string()),
            Err(e) => Err(format!("cannot read it: {e}")),
        };
        self.secrets
            .lock()
            .unwrap()
            .insert(id, (Instant::now(), uris.clone()));
        uris
    }
}

/// An error message without the URI's password, should a library quote it.
fn redact(message: &str, uri: &str) -> String {
    match url_password(uri) {
        Some(password) if !password.is_empty() => message.replace(password, "***"),
        _ => message.to_string(),
    }
}

/// The password in `scheme://user:password@host/...`, if any.
fn url_password(uri: &str) -> Option<&str> {
    let rest = uri.split_once("://")?.1;
    let userinfo = rest.split_once('@')?.0;
    Some(userinfo.split_once(':')?.1)
}
