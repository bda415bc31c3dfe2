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
pub mod tls;

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures::future::join_all;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::api::{DataStage, LagSource, MultiRegionApp, PrimaryPosition};
use crate::plan::manifest::AppKey;
use crate::plan::replication::{
    self, ClientIdentity, DataStep, DbReading, PrimaryMark, ReplicaLag, ReplicatedStore, Target,
};

/// A reading is reused for this long (reconciles come faster than rounds).
const READING_REUSE: Duration = Duration::from_secs(1);
/// Longest one data step may take (a promotion waits up to 30 s).
const STEP_LIMIT: Duration = Duration::from_secs(40);
/// The Secret of URIs is read again after this long.
const SECRET_REUSE: Duration = Duration::from_secs(30);

/// Each region's database as the app's Secret gives it, or why not.
type Uris = Result<BTreeMap<String, Result<Target, String>>, String>;
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
    /// `kept`: the primary's position as the app's status keeps it, what
    /// standbys are measured against while no primary answers and this
    /// operator has read none (restarted, or newly the leader).
    pub async fn read(
        &self,
        app: &MultiRegionApp,
        key: &AppKey,
        kept: Option<&PrimaryPosition>,
    ) -> Lags {
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
        let regions = self.regions_to_read(app, key, kept);
        let readings = self.readings_of(source, key, &regions).await;
        let now = Timestamp::now();
        let interval = i64::from(app.spec.health_check.interval_seconds);
        let last = self
            .mark(key)
            .or_else(|| replication::restored_mark(kept, interval));
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

    /// The spec's regions, and beside them the region of the last primary
    /// read and an ActivePassive active region leaving the spec: a primary
    /// there is still fenced, and replayed from, when the data moves.
    fn regions_to_read(
        &self,
        app: &MultiRegionApp,
        key: &AppKey,
        kept: Option<&PrimaryPosition>,
    ) -> Vec<String> {
        let mut regions: Vec<String> = app.spec.regions.iter().map(|r| r.name.clone()).collect();
        let last = self.mark(key).map(|m| m.region);
        let last = last.or_else(|| kept.map(|k| k.region.clone()));
        let leaving = app
            .status
            .as_ref()
            .and_then(|s| crate::plan::leaving_region(&app.spec, s))
            .map(str::to_string);
        for region in [last, leaving].into_iter().flatten() {
            if !regions.contains(&region) {
                regions.push(region);
            }
        }
        regions
    }

    /// The primary's position as this operator last read it (or restored
    /// it from the app's status), for the status to keep.
    pub fn mark(&self, key: &AppKey) -> Option<PrimaryMark> {
        self.marks.lock().unwrap().get(key).cloned()
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
        let target = match uris.get(region) {
            Some(Ok(target)) => target,
            Some(Err(why)) => return DbReading::Unreadable(format!("{where_}: {why}")),
            None => return DbReading::Unreadable(format!("{where_}: no such key")),
        };
        match self.postgres.read(target).await {
            Ok(reading) => reading,
            Err(why) => DbReading::Unreadable(format!("{where_}: {}", redact(&why, &target.uri))),
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
            Ok(Some(secret)) => Ok(targets(secret)),
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

/// The Secret's keys as each region's target, all trusting its `ca.crt`
/// and showing its `tls.crt` and `tls.key`, when it has them; a region's
/// target is an error when only one of those two is there.
pub(crate) fn targets(secret: Secret) -> BTreeMap<String, Result<Target, String>> {
    let mut texts: BTreeMap<String, String> = secret
        .data
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, String::from_utf8_lossy(&v.0).trim().to_string()))
        .collect();
    let ca: Option<std::sync::Arc<str>> = texts.remove(tls::CA_KEY).map(Into::into);
    let cert = texts.remove(tls::CLIENT_CERT_KEY);
    let key = texts.remove(tls::CLIENT_KEY_KEY);
    let client = match (cert, key) {
        (Some(cert), Some(key)) => Ok(Some(ClientIdentity {
            cert: cert.into(),
            key: key.into(),
        })),
        (None, None) => Ok(None),
        (Some(_), None) => Err(format!(
            "{}: no {} beside it",
            tls::CLIENT_CERT_KEY,
            tls::CLIENT_KEY_KEY
        )),
        (None, Some(_)) => Err(format!(
            "{}: no {} beside it",
            tls::CLIENT_KEY_KEY,
            tls::CLIENT_CERT_KEY
        )),
    };
    texts
        .into_iter()
        .map(|(region, uri)| {
            let target = client.clone().map(|client| Target {
                uri,
                ca: ca.clone(),
                client,
            });
            (region, target)
        })
        .collect()
}

/// An error message without the URI's password, should a library quote it.
pub(crate) fn redact(message: &str, uri: &str) -> String {
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

/// What the data tier did to follow the traffic, step by step; `failed`:
/// the step that stopped the move, with why.
pub struct Followed {
    pub stages: Vec<DataStage>,
    pub failed: Option<String>,
}

impl DataTier {
    /// Makes the app's database follow its writer region (the active one,
    /// or ActiveActive's choice) (`plan::replication::steps`): fence, wait
    /// for replay, promote; before the weights move, except for
    /// ActiveActive (the controller orders it). Only for PostgreSQL.
    /// `None` when there was nothing to do.
    pub async fn follow(
        &self,
        app: &MultiRegionApp,
        key: &AppKey,
        writer: &str,
        moving: Option<bool>,
        lags: &Lags,
        leader: &crate::fence::Fence,
    ) -> Option<Followed> {
        let pg = app
            .spec
            .failover
            .replication
            .as_ref()?
            .lag_from
            .postgres
            .as_ref()?;
        let steps = replication::steps(writer, lags, moving);
        if steps.is_empty() {
            return None;
        }
        let uris = self.uris(&key.namespace, &pg.secret_ref.name).await;
        let mut stages = Vec::new();
        let mut failed = None;
        for step in &steps {
            // Each step only while this replica leads, cut at its renew
            // deadline (never a step by a leader that may have lost it).
            let taking = self.take(step, &uris, &pg.secret_ref.name);
            let (outcome, message) = leader.within(STEP_LIMIT, taking).await.unwrap_or((
                "Failed",
                "not sure to lead for long enough to take it".to_string(),
            ));
            stages.push(DataStage {
                stage: step.stage().to_string(),
                region: step.region().to_string(),
                outcome: outcome.to_string(),
                message: message.clone(),
                at: Time(Timestamp::now()),
            });
            if outcome == "Failed" {
                failed = Some(format!("{} {}: {message}", step.stage(), step.region()));
                break;
            }
            if let DataStep::Promote(region) = step {
                self.promoted(key, region, &uris).await;
            }
        }
        // Roles changed: read them again next time.
        self.readings.lock().unwrap().remove(key);
        Some(Followed { stages, failed })
    }

    /// The region this operator just promoted is the live primary from now
    /// on, with the timeline its promotion started: a standby promoted
    /// without the newest history may start one no higher than the last
    /// live primary's, and would not be followed otherwise.
    async fn promoted(&self, key: &AppKey, region: &str, uris: &Uris) {
        let Some(Ok(target)) = uris.as_ref().ok().and_then(|u| u.get(region)) else {
            return;
        };
        let Ok(DbReading::Primary {
            position, timeline, ..
        }) = self.postgres.read(target).await
        else {
            return;
        };
        let mark = PrimaryMark {
            region: region.to_string(),
            position,
            at: Timestamp::now(),
            restored_horizon: None,
            timeline,
        };
        self.marks.lock().unwrap().insert(key.clone(), mark);
    }

    /// Takes one step: its outcome (Done, Skipped, Failed) and message.
    async fn take(&self, step: &DataStep, uris: &Uris, secret: &str) -> (&'static str, String) {
        let uri = |region: &str| -> Result<Target, String> {
            let uris = uris.as_ref().map_err(|e| format!("Secret {secret}: {e}"))?;
            match uris.get(region) {
                Some(Ok(target)) => Ok(target.clone()),
                Some(Err(why)) => Err(format!("Secret {secret}: {why}")),
                None => Err(format!("Secret {secret} has no key {region}")),
            }
        };
        let result = match step {
            DataStep::Fence(region) => match uri(region) {
                Ok(target) => match self.postgres.fence(&target).await {
                    Ok(true) => Ok("it refuses writes".to_string()),
                    // Not reachable: fenced when it comes back.
                    Ok(false) => {
                        return (
                            "Skipped",
                            "it does not answer: fenced when it comes back".to_string(),
                        );
                    }
                    Err(why) => Err(redact(&why, &target.uri)),
                },
                Err(why) => Err(why),
            },
            DataStep::Unfence(region) => match uri(region) {
                Ok(target) => self
                    .postgres
                    .unfence(&target)
                    .await
                    .map(|()| "it takes writes again".to_string())
                    .map_err(|why| redact(&why, &target.uri)),
                Err(why) => Err(why),
            },
            DataStep::Refuse { why, .. } => Err(why.clone()),
            DataStep::AwaitReplay {
                target,
                from,
                required,
            } => self.await_replay(&uri, target, from, *required).await,
            DataStep::Promote(region) => match uri(region) {
                Ok(target) => self
                    .postgres
                    .promote(&target)
                    .await
                    .map(|()| "it accepts writes".to_string())
                    .map_err(|why| redact(&why, &target.uri)),
                Err(why) => Err(why),
            },
        };
        match result {
            Ok(message) => ("Done", message),
            Err(message) => ("Failed", message),
        }
    }

    async fn await_replay(
        &self,
        uri: &impl Fn(&str) -> Result<Target, String>,
        target: &str,
        from: &str,
        required: bool,
    ) -> Result<String, String> {
        let (from_uri, target_uri) = (uri(from)?, uri(target)?);
        let position = match self.postgres.position(&from_uri).await {
            Ok(position) => position,
            Err(why) if !required => {
                let why = redact(&why, &from_uri.uri);
                return Ok(format!(
                    "{from} does not answer ({why}): the RPO gate decided"
                ));
            }
            Err(why) => {
                return Err(format!(
                    "{from}'s position: {}",
                    redact(&why, &from_uri.uri)
                ));
            }
        };
        match self.postgres.await_replay(&target_uri, position).await {
            Ok(()) => Ok(format!("replayed all {from} wrote")),
            Err(why) if !required => Ok(format!(
                "{}; a failover: the RPO gate decided",
                redact(&why, &target_uri.uri)
            )),
            Err(why) => Err(redact(&why, &target_uri.uri)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;

    fn secret(keys: &[(&str, &str)]) -> Secret {
        Secret {
            data: Some(
                keys.iter()
                    .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
                    .collect(),
            ),
            ..Secret::default()
        }
    }

    #[test]
    fn the_secrets_certificates_go_with_every_regions_uri_and_are_no_region() {
        let all = targets(secret(&[
            ("us-east", "postgres://a@h1/db"),
            ("eu-west", "postgres://a@h2/db"),
            ("ca.crt", "CA"),
            ("tls.crt", "CERT"),
            ("tls.key", "KEY"),
        ]));
        assert_eq!(all.keys().collect::<Vec<_>>(), ["eu-west", "us-east"]);
        let us = all["us-east"].as_ref().unwrap();
        assert_eq!(us.ca.as_deref(), Some("CA"));
        let client = us.client.as_ref().unwrap();
        assert_eq!((&*client.cert, &*client.key), ("CERT", "KEY"));

        let half = targets(secret(&[
            ("us-east", "postgres://a@h1/db"),
            ("tls.crt", "CERT"),
        ]));
        let why = half["us-east"].as_ref().unwrap_err();
        assert_eq!(why, "tls.crt: no tls.key beside it");
    }
}
