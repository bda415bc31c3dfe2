//! End-to-end: the data tier. PostgreSQL 15 in every region (us-east's the
//! primary, the others streaming from it through their region's link), the
//! operator reading the lag from the databases
//! (`lagFrom.postgres.secretRef`), on a hub and three local regions.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::operator::{
    HealOnPanic, app_spec, apply_app, condition, env_with_databases, serial, status,
};
use common::wait_for;
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use localregions::load::{self, Load, Route};
use multiregion::api::{Health, MultiRegionApp, ReplicaStatus};
use serde_json::json;

/// The Secret of URIs the app names, one key per region.
async fn uri_secret(hub: &kube::Client, ns: &str, uris: BTreeMap<String, String>) {
    common::operator::ensure_namespace(hub, ns).await;
    let api: Api<Secret> = Api::namespaced(hub.clone(), ns);
    let secret = json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "shop-db"},
        "stringData": uris,
    });
    api.patch(
        "shop-db",
        &PatchParams::apply("test").force(),
        &Patch::Apply(secret),
    )
    .await
    .expect("Secret applied");
}

/// Each region's URI, as the operator reads it: over TLS, the server's
/// certificate checked against the CA in `ca.crt` and for its address.
async fn database_uris() -> BTreeMap<String, String> {
    let regions = env_with_databases().regions.lock().await;
    let mut uris: BTreeMap<String, String> = regions
        .databases()
        .iter()
        .map(|d| {
            let uri = d.uri().replace("sslmode=disable", "sslmode=verify-full");
            (d.region.clone(), uri)
        })
        .collect();
    uris.insert("ca.crt".into(), regions.database_ca().unwrap());
    uris
}

/// How many sessions of a region's database a count over `pg_stat_ssl`
/// joined with `pg_stat_activity` (`s`, `a`) finds.
async fn count_sessions(region: &str, condition: &str) -> i64 {
    let regions = env_with_databases().regions.lock().await;
    let client = regions
        .database(region)
        .unwrap()
        .connect("postgres")
        .await
        .unwrap();
    let query = format!(
        "SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) WHERE {condition}"
    );
    client.query_one(&query, &[]).await.unwrap().get(0)
}

/// How many client sessions of a region's database use TLS.
async fn tls_sessions(region: &str) -> i64 {
    count_sessions(region, "s.ssl AND a.backend_type = 'client backend'").await
}

/// How many client sessions of a region's database logged in as the
/// certificate-only role with a client certificate.
async fn certificate_sessions(region: &str) -> i64 {
    let condition = "s.ssl AND a.usename = 'admin' AND s.client_dn LIKE '%CN=admin%'";
    count_sessions(region, condition).await
}

fn spec(max_lag: i32) -> serde_json::Value {
    app_spec(
        "ActivePassive",
        &["us-east", "eu-west", "ap-south"],
        json!({"failover": {"replication": {
            "mode": "Asynchronous",
            "maxLagSeconds": max_lag,
            "lagFrom": {"postgres": {"secretRef": {"name": "shop-db"}}}
        }}}),
    )
}

async fn replica(hub: &kube::Client, ns: &str, region: &str) -> Option<ReplicaStatus> {
    status(hub, ns, "shop")
        .await?
        .regions
        .into_iter()
        .find(|r| r.name == region)?
        .replication
}

async fn sql(region: &str, statement: &str) {
    let regions = env_with_databases().regions.lock().await;
    let database = regions.database(region).unwrap();
    let client = database.connect("postgres").await.unwrap();
    client.batch_execute(statement).await.unwrap();
}

/// Writes for `seconds` at 50 a second to us-east's endpoint.
async fn write_for(seconds: u64) -> usize {
    let endpoint = env_with_databases()
        .regions
        .lock()
        .await
        .endpoint("us-east")
        .unwrap();
    let options = Load {
        rate: 50,
        duration: Duration::from_secs(seconds),
        timeout: Duration::from_secs(2),
        writes: true,
    };
    let samples = load::run(&Route::Url(endpoint), options).await.unwrap();
    load::acknowledged(&samples).len()
}

/// Waits until us-east is the app's active region and judged Healthy (a
/// region lost before the app ever served there is not a failover).
async fn serving_in_us_east(hub: &kube::Client, ns: &str) {
    wait_for(
        "us-east active and Healthy",
        Duration::from_secs(120),
        || async {
            let s = status(hub, ns, "shop").await?;
            let us = s.regions.iter().find(|r| r.name == "us-east")?;
            (s.active_region.as_deref() == Some("us-east") && us.health == Health::Healthy)
                .then_some(())
        },
    )
    .await;
}

/// Puts the databases back as they started (the test's app deleted
/// first): every region up, asynchronous replication, us-east the
/// primary and writable, the others streaming from it.
async fn restore_databases() {
    let mut regions = env_with_databases().regions.lock().await;
    for region in ["us-east", "eu-west", "ap-south"] {
        regions.recover(region).await.unwrap();
    }
    // Asynchronous first, so the rejoins' commits wait for no one.
    regions
        .set_replication(localregions::Replication::Async)
        .await
        .unwrap();
    for region in ["eu-west", "ap-south"] {
        let database = regions.database(region).unwrap();
        if let Ok(client) = database.connect("postgres").await {
            let _ = client.batch_execute("SELECT pg_wal_replay_resume()").await;
        }
    }
    let us = regions
        .database("us-east")
        .unwrap()
        .connect("postgres")
        .await
        .unwrap();
    let row = us
        .query_one("SELECT pg_is_in_recovery()", &[])
        .await
        .unwrap();
    if row.get::<_, bool>(0) {
        us.batch_execute("SELECT pg_promote()").await.unwrap();
    }
    us.batch_execute("ALTER SYSTEM RESET default_transaction_read_only")
        .await
        .unwrap();
    us.batch_execute("SELECT pg_reload_conf()").await.unwrap();
    // A standby promoted by the test rejoins first: until it does, two
    // databases answer as primaries and a standby has no one to follow.
    let mut others = Vec::new();
    for region in ["eu-west", "ap-south"] {
        let standby = regions.database(region).unwrap().in_recovery().await;
        others.push((standby == Some(true), region));
    }
    others.sort();
    for (_, region) in others {
        regions.rejoin_database(region).await.unwrap();
    }
    assert_eq!(regions.primary().await.unwrap().region, "us-east");
}

/// Whether the databases are as the environment made them: us-east the
/// only primary, writable, both others streaming from it, asynchronously.
async fn databases_as_started() -> bool {
    let regions = env_with_databases().regions.lock().await;
    let Ok(us) = regions
        .database("us-east")
        .unwrap()
        .connect("postgres")
        .await
    else {
        return false;
    };
    let Ok(row) = us
        .query_one(
            "SELECT NOT pg_is_in_recovery() \
               AND current_setting('default_transaction_read_only') = 'off' \
               AND current_setting('synchronous_standby_names') = '' \
               AND (SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming') = 2",
            &[],
        )
        .await
    else {
        return false;
    };
    row.get::<_, bool>(0)
}

/// Every test starts from the databases as they started and no other
/// test's app: a test that failed half-way leaves neither behind.
async fn as_started(hub: &kube::Client) {
    let apps: Api<MultiRegionApp> = Api::all(hub.clone());
    for app in apps.list(&Default::default()).await.unwrap() {
        let namespace = app.namespace().unwrap_or_default();
        common::operator::delete_app(hub, &namespace, &app.name_any()).await;
    }
    if !databases_as_started().await {
        eprintln!("the databases are not as they started: restoring them");
        restore_databases().await;
    }
}

/// Waits until `to` is the active region after a planned move from
/// `from`, then checks the move's data steps: `from` fenced (it refuses
/// writes), `to` replayed all it wrote and was promoted before the weights.
async fn planned_move_done(hub: &kube::Client, ns: &str, from: &str, to: &str, within: Duration) {
    wait_for(&format!("{to} active"), within, || async {
        let s = status(hub, ns, "shop").await?;
        (s.active_region.as_deref() == Some(to)).then_some(())
    })
    .await;
    assert_eq!(
        in_recovery(to).await,
        Some(false),
        "promoted before the move"
    );
    let s = status(hub, ns, "shop").await.unwrap();
    assert_eq!(
        steps_of(&s),
        [
            ("Fence", from, "Done"),
            ("AwaitReplay", to, "Done"),
            ("Promote", to, "Done"),
        ],
        "{:?}",
        s.data_steps
    );
    let refused = try_sql(
        from,
        "INSERT INTO writes (id, region) VALUES (-2, 'fenced')",
    )
    .await;
    assert!(
        refused.unwrap_err().contains("read-only"),
        "the primary it moved from refuses writes"
    );
}

/// The app's data steps as (stage, region, outcome).
fn steps_of(s: &multiregion::api::MultiRegionAppStatus) -> Vec<(&str, &str, &str)> {
    s.data_steps
        .iter()
        .map(|d| (d.stage.as_str(), d.region.as_str(), d.outcome.as_str()))
        .collect()
}

/// The region of the app's last data steps' Promote, once it is Done.
fn promote_done(s: &multiregion::api::MultiRegionAppStatus) -> Option<String> {
    let step = s
        .data_steps
        .iter()
        .find(|d| d.stage == "Promote" && d.outcome == "Done")?;
    Some(step.region.clone())
}

/// Whether a region's database is in recovery (a standby).
async fn in_recovery(region: &str) -> Option<bool> {
    let regions = env_with_databases().regions.lock().await;
    regions.database(region).unwrap().in_recovery().await
}

/// Runs a statement on a region's `app` database; the error's message.
async fn try_sql(region: &str, statement: &str) -> Result<(), String> {
    let regions = env_with_databases().regions.lock().await;
    let client = regions
        .database(region)
        .unwrap()
        .connect("app")
        .await
        .unwrap();
    client
        .batch_execute(statement)
        .await
        .map_err(|e| format!("{e:?}"))
}

#[tokio::test]
async fn a_standby_behind_the_limit_waits_and_takes_the_traffic_once_it_has_replayed() {
    let env = env_with_databases();
    let _serial = serial().await;
    let _heal = HealOnPanic;
    let hub = env.client("hub").await;
    as_started(&hub).await;
    let ns = "data-lag";
    uri_secret(&hub, ns, database_uris().await).await;
    apply_app(&hub, ns, "shop", spec(3)).await;

    // Read from the databases: us-east the primary, the others in sync.
    wait_for(
        "the lag read from the primary",
        Duration::from_secs(120),
        || async {
            let primary = replica(&hub, ns, "us-east").await?;
            let standby = replica(&hub, ns, "eu-west").await?;
            (primary.role == "Primary"
                && standby.role == "Standby"
                && standby.read_from.as_deref() == Some("Primary")
                && standby.lag_seconds == Some(0))
            .then_some(())
        },
    )
    .await;

    // Replay paused in both standbys while writes go on: they fall behind.
    sql("eu-west", "SELECT pg_wal_replay_pause()").await;
    sql("ap-south", "SELECT pg_wal_replay_pause()").await;
    assert!(write_for(6).await > 100, "writes acknowledged by us-east");
    wait_for(
        "eu-west's lag over the limit",
        Duration::from_secs(60),
        || async {
            let standby = replica(&hub, ns, "eu-west").await?;
            (standby.lag_seconds? > 3 && standby.lag_bytes? > 0).then_some(())
        },
    )
    .await;

    serving_in_us_east(&hub, ns).await;
    // us-east lost: no standby may be promoted, and the lag is named.
    env.regions.lock().await.fail("us-east").await.unwrap();
    let blocked = wait_for("PromotionBlocked", Duration::from_secs(60), || async {
        let s = status(&hub, ns, "shop").await?;
        let (state, reason, message) = condition(&s, "PromotionBlocked")?;
        (state == "True").then_some((reason, message, s))
    })
    .await;
    assert_eq!(blocked.0, "ReplicationLag", "{blocked:?}");
    assert!(blocked.1.contains("eu-west: lag"), "{}", blocked.1);
    assert_eq!(
        blocked.2.active_region.as_deref(),
        Some("us-east"),
        "nothing moved"
    );
    let eu = replica(&hub, ns, "eu-west").await.unwrap();
    assert_eq!(eu.read_from.as_deref(), Some("Standby"), "{eu:?}");
    assert!(eu.primary_age_seconds.is_some(), "{eu:?}");

    // eu-west replays what it received: caught up to the primary's last
    // position, it takes the traffic.
    sql("eu-west", "SELECT pg_wal_replay_resume()").await;
    wait_for(
        "eu-west to take the traffic",
        Duration::from_secs(60),
        || async {
            let s = status(&hub, ns, "shop").await?;
            (s.active_region.as_deref() == Some("eu-west")).then_some(())
        },
    )
    .await;
    // The weights moved only once eu-west's database had been promoted.
    assert_eq!(
        in_recovery("eu-west").await,
        Some(false),
        "promoted before the move"
    );
    let s = status(&hub, ns, "shop").await.unwrap();
    let promoted = s.data_steps.iter().find(|d| d.stage == "Promote").unwrap();
    assert_eq!(
        (promoted.region.as_str(), promoted.outcome.as_str()),
        ("eu-west", "Done"),
        "{:?}",
        s.data_steps
    );

    // ap-south still follows us-east, which is gone: it says it receives
    // nothing from the new primary.
    wait_for(
        "ap-south to say it receives no WAL from eu-west",
        Duration::from_secs(60),
        || async {
            let ap = replica(&hub, ns, "ap-south").await?;
            let message = ap.message?;
            message
                .contains("receives no WAL from the primary eu-west")
                .then_some(())
        },
    )
    .await;

    // us-east comes back still a primary: fenced at once, it refuses writes
    // and is shown NeedsRejoin; rewound and streaming, it is a standby.
    // (ap-south replays again first: a paused standby does not reconnect.)
    sql("ap-south", "SELECT pg_wal_replay_resume()").await;
    env.regions.lock().await.recover("us-east").await.unwrap();
    wait_for(
        "us-east fenced, NeedsRejoin",
        Duration::from_secs(60),
        || async { (replica(&hub, ns, "us-east").await?.role == "NeedsRejoin").then_some(()) },
    )
    .await;
    // ap-south streams from the fenced old primary again: two histories,
    // no lag, NeedsRejoin.
    let ap = wait_for(
        "ap-south NeedsRejoin, streaming from us-east",
        Duration::from_secs(60),
        || async {
            let ap = replica(&hub, ns, "ap-south").await?;
            (ap.role == "NeedsRejoin").then_some(ap)
        },
    )
    .await;
    assert_eq!(ap.lag_seconds, None, "{ap:?}");
    assert!(
        ap.message
            .as_deref()
            .unwrap_or_default()
            .contains("streams from us-east, not from the primary eu-west"),
        "{ap:?}"
    );
    let refused = try_sql(
        "us-east",
        "INSERT INTO writes (id, region) VALUES (-1, 'us-east')",
    )
    .await;
    assert!(
        refused.unwrap_err().contains("read-only"),
        "the old primary refuses writes"
    );
    env.regions
        .lock()
        .await
        .rejoin_database("us-east")
        .await
        .unwrap();
    wait_for(
        "us-east a standby again",
        Duration::from_secs(60),
        || async { (replica(&hub, ns, "us-east").await?.role == "Standby").then_some(()) },
    )
    .await;
    // ap-south pointed at eu-west: a standby the primary measures again.
    env.regions
        .lock()
        .await
        .rejoin_database("ap-south")
        .await
        .unwrap();
    wait_for(
        "ap-south streaming from eu-west",
        Duration::from_secs(60),
        || async {
            let ap = replica(&hub, ns, "ap-south").await?;
            (ap.role == "Standby"
                && ap.read_from.as_deref() == Some("Primary")
                && ap.message.is_none())
            .then_some(())
        },
    )
    .await;

    // Failback, gated on the lag read from us-east, now a standby: a
    // planned move, so eu-west is fenced, us-east replays all it wrote
    // and is promoted before the weights move back.
    let mut fail_back = spec(3);
    fail_back["failover"]["failbackHoldSeconds"] = json!(5);
    apply_app(&hub, ns, "shop", fail_back).await;
    planned_move_done(&hub, ns, "eu-west", "us-east", Duration::from_secs(90)).await;

    common::operator::delete_app(&hub, ns, "shop").await;
    restore_databases().await;
}

#[tokio::test]
async fn a_database_that_refuses_is_named_by_region_and_key_and_nothing_moves() {
    let env = env_with_databases();
    let _serial = serial().await;
    let _heal = HealOnPanic;
    let hub = env.client("hub").await;
    as_started(&hub).await;
    let ns = "data-refused";
    let mut uris = database_uris().await;
    let closed = localregions::free_port().unwrap();
    uris.insert(
        "eu-west".into(),
        format!("postgres://monitor:s3cret@127.0.0.1:{closed}/app"),
    );
    uris.remove("ap-south");
    uri_secret(&hub, ns, uris).await;
    apply_app(&hub, ns, "shop", spec(30)).await;
    wait_for(
        "eu-west's database named as unreadable",
        Duration::from_secs(120),
        || async {
            let eu = replica(&hub, ns, "eu-west").await?;
            let message = eu.message?;
            (message.contains("Secret shop-db key eu-west") && eu.lag_seconds.is_none())
                .then_some(())
        },
    )
    .await;
    let eu = replica(&hub, ns, "eu-west").await.unwrap();
    assert!(!eu.message.as_deref().unwrap().contains("s3cret"), "{eu:?}");
    let ap = replica(&hub, ns, "ap-south").await.unwrap();
    assert!(
        ap.message
            .as_deref()
            .unwrap()
            .contains("key ap-south: no such key"),
        "{ap:?}"
    );
    serving_in_us_east(&hub, ns).await;

    env.regions.lock().await.fail("us-east").await.unwrap();
    let message = wait_for("PromotionBlocked", Duration::from_secs(60), || async {
        let s = status(&hub, ns, "shop").await?;
        let (state, _, message) = condition(&s, "PromotionBlocked")?;
        (state == "True").then_some(message)
    })
    .await;
    assert!(message.contains("key eu-west"), "{message}");
    assert!(message.contains("key ap-south"), "{message}");
    let s = status(&hub, ns, "shop").await.unwrap();
    assert_eq!(s.active_region.as_deref(), Some("us-east"), "nothing moved");

    common::operator::delete_app(&hub, ns, "shop").await;
    restore_databases().await;
}

#[tokio::test]
async fn a_database_is_read_over_tls_only_when_the_certificates_are_right() {
    let env = env_with_databases();
    let _serial = serial().await;
    let _heal = HealOnPanic;
    let hub = env.client("hub").await;
    as_started(&hub).await;
    // Trusted: the databases' own CA; refused: another CA, and
    // verify-full with no CA at all.
    let other_dir = std::env::temp_dir().join(format!("other-ca-{}", std::process::id()));
    let other_ca = localregions::pki::ClusterPki::generate(&other_dir, "other", &[])
        .unwrap()
        .ca_pem;
    let trusted = database_uris().await;
    let mut untrusted = trusted.clone();
    untrusted.insert("ca.crt".into(), other_ca);
    let mut no_ca = trusted.clone();
    no_ca.remove("ca.crt");
    // The certificate-only role: refused without the client certificate,
    // read with it.
    let (cert, key) = env
        .regions
        .lock()
        .await
        .database_client_certificate()
        .unwrap();
    let no_client_cert: BTreeMap<String, String> = trusted
        .iter()
        .map(|(k, v)| (k.clone(), v.replace("postgres@", "admin@")))
        .collect();
    let mut client_cert = no_client_cert.clone();
    client_cert.insert("tls.crt".into(), cert);
    client_cert.insert("tls.key".into(), key);
    for (ns, uris) in [
        ("data-tls", trusted),
        ("data-tls-other-ca", untrusted),
        ("data-tls-no-ca", no_ca),
        ("data-tls-no-client-cert", no_client_cert),
        ("data-tls-client-cert", client_cert),
    ] {
        uri_secret(&hub, ns, uris).await;
        apply_app(&hub, ns, "shop", spec(30)).await;
    }

    wait_for(
        "the lag read over TLS",
        Duration::from_secs(120),
        || async {
            let primary = replica(&hub, "data-tls", "us-east").await?;
            let standby = replica(&hub, "data-tls", "eu-west").await?;
            (primary.role == "Primary" && standby.lag_seconds == Some(0)).then_some(())
        },
    )
    .await;
    assert!(
        tls_sessions("us-east").await > 0,
        "the operator's sessions use TLS"
    );
    let refused = |ns: &'static str, why: &'static str| {
        let hub = hub.clone();
        async move {
            wait_for(
                &format!("{ns}: us-east refused ({why})"),
                Duration::from_secs(60),
                || async {
                    let us = replica(&hub, ns, "us-east").await?;
                    let message = us.message?;
                    (us.role == "Unknown"
                        && message.contains("Secret shop-db key us-east")
                        && message.contains(why))
                    .then_some(())
                },
            )
            .await
        }
    };
    refused("data-tls-other-ca", "UnknownIssuer").await;
    refused("data-tls-no-ca", "no CA to check the server against").await;
    refused("data-tls-no-client-cert", "client certificate").await;
    wait_for(
        "the lag read as the certificate's role",
        Duration::from_secs(60),
        || async {
            let primary = replica(&hub, "data-tls-client-cert", "us-east").await?;
            (primary.role == "Primary").then_some(())
        },
    )
    .await;
    assert!(
        certificate_sessions("us-east").await > 0,
        "the operator shows its client certificate"
    );

    for ns in [
        "data-tls",
        "data-tls-other-ca",
        "data-tls-no-ca",
        "data-tls-no-client-cert",
        "data-tls-client-cert",
    ] {
        common::operator::delete_app(&hub, ns, "shop").await;
    }
    let _ = std::fs::remove_dir_all(other_dir);
}

/// Writes for `seconds` at 50 a second, client-side failover over every
/// region's endpoint (us-east first); the acknowledged ids.
async fn write_anywhere(seconds: u64) -> Vec<i64> {
    let regions = env_with_databases().regions.lock().await;
    let endpoints = ["us-east", "eu-west", "ap-south"]
        .iter()
        .map(|r| regions.endpoint(r).unwrap())
        .collect();
    drop(regions);
    let options = Load {
        rate: 50,
        duration: Duration::from_secs(seconds),
        timeout: Duration::from_secs(2),
        writes: true,
    };
    let samples = load::run(&Route::Regions(endpoints), options)
        .await
        .unwrap();
    load::acknowledged(&samples)
}

/// The acknowledged writes the region's database lacks.
async fn lost_in(region: &str, acknowledged: &[i64]) -> Vec<i64> {
    let regions = env_with_databases().regions.lock().await;
    regions
        .database(region)
        .unwrap()
        .missing(acknowledged)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_planned_move_fences_the_old_primary_waits_for_replay_and_loses_no_write() {
    let env = env_with_databases();
    let _serial = serial().await;
    let _heal = HealOnPanic;
    let hub = env.client("hub").await;
    as_started(&hub).await;
    let ns = "data-planned";
    uri_secret(&hub, ns, database_uris().await).await;
    apply_app(&hub, ns, "shop", spec(3)).await;
    serving_in_us_east(&hub, ns).await;

    let writer = tokio::spawn(write_anywhere(8));
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut moved = spec(3);
    common::operator::merge(
        &mut moved,
        json!({"failover": {"activeOverride": "eu-west"}}),
    );
    apply_app(&hub, ns, "shop", moved).await;
    planned_move_done(&hub, ns, "us-east", "eu-west", Duration::from_secs(60)).await;
    let acknowledged = writer.await.unwrap();
    assert!(
        acknowledged.len() > 200,
        "{} writes acknowledged",
        acknowledged.len()
    );
    assert_eq!(
        lost_in("eu-west", &acknowledged).await,
        Vec::<i64>::new(),
        "no acknowledged write lost"
    );
    let us = replica(&hub, ns, "us-east").await.unwrap();
    assert_eq!(us.role, "NeedsRejoin", "{us:?}");

    common::operator::delete_app(&hub, ns, "shop").await;
    env.regions
        .lock()
        .await
        .rejoin_database("us-east")
        .await
        .unwrap();
    restore_databases().await;
}

/// A FollowTheSun app over the three regions, with the data tier of
/// [`spec`]: `now_in`'s window is the eight hours from the current UTC
/// hour, `next`'s the eight after, ap-south's the rest of the day.
fn follow_the_sun(now_in: &str, next: &str) -> serde_json::Value {
    let hour = jiff::Timestamp::now()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .hour() as i32;
    let at = |h: i32| format!("{:02}:00", h.rem_euclid(24));
    let window = |name: &str, from: i32| json!({"name": name, "activeWindow": {"start": at(from), "end": at(from + 8)}});
    let mut app = spec(3);
    common::operator::merge(
        &mut app,
        json!({"strategy": "FollowTheSun", "regions": [
            window(now_in, hour),
            window(next, hour + 8),
            window("ap-south", hour + 16),
        ]}),
    );
    app
}

#[tokio::test]
async fn a_follow_the_sun_hand_over_fences_promotes_and_moves_the_traffic_in_order() {
    let env = env_with_databases();
    let _serial = serial().await;
    let _heal = HealOnPanic;
    let hub = env.client("hub").await;
    as_started(&hub).await;
    let ns = "data-sun";
    uri_secret(&hub, ns, database_uris().await).await;
    apply_app(&hub, ns, "shop", follow_the_sun("us-east", "eu-west")).await;
    serving_in_us_east(&hub, ns).await;

    // The sun moves on (the windows swapped): a planned hand-over, whose
    // database goes first, nothing acknowledged lost.
    let writer = tokio::spawn(write_anywhere(8));
    tokio::time::sleep(Duration::from_secs(3)).await;
    apply_app(&hub, ns, "shop", follow_the_sun("eu-west", "us-east")).await;
    planned_move_done(&hub, ns, "us-east", "eu-west", Duration::from_secs(60)).await;
    let acknowledged = writer.await.unwrap();
    assert!(!acknowledged.is_empty(), "writes acknowledged");
    assert_eq!(
        lost_in("eu-west", &acknowledged).await,
        Vec::<i64>::new(),
        "no acknowledged write lost"
    );
    let s = status(&hub, ns, "shop").await.unwrap();
    let carrying: Vec<&str> = s
        .regions
        .iter()
        .filter(|r| r.weight > 0)
        .map(|r| r.name.as_str())
        .collect();
    assert_eq!(carrying, ["eu-west"], "the traffic with the primary");

    common::operator::delete_app(&hub, ns, "shop").await;
    env.regions
        .lock()
        .await
        .rejoin_database("us-east")
        .await
        .unwrap();
    restore_databases().await;
}

#[tokio::test]
async fn a_drill_switches_the_database_over_and_it_comes_back_once_the_old_primary_is_rewound() {
    let env = env_with_databases();
    let _serial = serial().await;
    let _heal = HealOnPanic;
    let hub = env.client("hub").await;
    as_started(&hub).await;
    let ns = "data-drill";
    uri_secret(&hub, ns, database_uris().await).await;
    let mut drilled = spec(3);
    common::operator::merge(
        &mut drilled,
        json!({"failover": {
            "failbackHoldSeconds": 2,
            "drill": {"awaySeconds": 3, "maxDurationSeconds": 120}
        }}),
    );
    apply_app(&hub, ns, "shop", drilled).await;
    serving_in_us_east(&hub, ns).await;

    // The drill's move away is a planned switchover of the database.
    let writer = tokio::spawn(write_anywhere(8));
    let now = jiff::Timestamp::from_second(jiff::Timestamp::now().as_second()).unwrap();
    let apps: Api<MultiRegionApp> = Api::namespaced(hub.clone(), ns);
    let request = json!({"metadata": {"annotations": {
        multiregion::api::ANNOTATION_DRILL_REQUESTED: now.to_string()
    }}});
    apps.patch("shop", &PatchParams::default(), &Patch::Merge(request))
        .await
        .unwrap();
    planned_move_done(&hub, ns, "us-east", "eu-west", Duration::from_secs(60)).await;
    let acknowledged = writer.await.unwrap();
    assert_eq!(
        lost_in("eu-west", &acknowledged).await,
        Vec::<i64>::new(),
        "no acknowledged write lost"
    );

    // The way back needs us-east rewound: the drill gives up, and the data
    // and the traffic stay where it moved them.
    let outcome = wait_for("the drill to end", Duration::from_secs(60), || async {
        let s = status(&hub, ns, "shop").await?;
        (s.drill.is_none() && s.drills.len() == 1).then(|| s.drills[0].clone())
    })
    .await;
    assert_eq!(outcome.result, "Aborted", "{outcome:?}");
    assert!(outcome.reason.contains("PromotionBlocked"), "{outcome:?}");
    let s = status(&hub, ns, "shop").await.unwrap();
    assert_eq!(s.active_region.as_deref(), Some("eu-west"));
    assert_eq!(in_recovery("eu-west").await, Some(false));

    // Rewound, us-east streams again, and failback brings both back.
    env.regions
        .lock()
        .await
        .rejoin_database("us-east")
        .await
        .unwrap();
    planned_move_done(&hub, ns, "eu-west", "us-east", Duration::from_secs(90)).await;

    common::operator::delete_app(&hub, ns, "shop").await;
    restore_databases().await;
}

#[tokio::test]
async fn synchronous_replication_loses_no_acknowledged_write_across_a_failover() {
    let env = env_with_databases();
    let _serial = serial().await;
    let _heal = HealOnPanic;
    let hub = env.client("hub").await;
    as_started(&hub).await;
    let ns = "data-sync";
    env.regions
        .lock()
        .await
        .set_replication(localregions::Replication::Sync)
        .await
        .unwrap();
    uri_secret(&hub, ns, database_uris().await).await;
    let mut sync = spec(3);
    common::operator::merge(
        &mut sync,
        json!({"failover": {"replication": {"mode": "Synchronous"}}}),
    );
    apply_app(&hub, ns, "shop", sync).await;
    serving_in_us_east(&hub, ns).await;

    let writer = tokio::spawn(write_anywhere(8));
    tokio::time::sleep(Duration::from_secs(4)).await;
    env.regions.lock().await.fail("us-east").await.unwrap();
    let failed = std::time::Instant::now();
    let promoted = wait_for("a standby promoted", Duration::from_secs(60), || async {
        let s = status(&hub, ns, "shop").await?;
        let active = s.active_region.filter(|a| a != "us-east")?;
        (in_recovery(&active).await == Some(false)).then_some(active)
    })
    .await;
    eprintln!(
        "observed: {promoted} promoted and writable, and the traffic there, {:.1} s after us-east was lost",
        failed.elapsed().as_secs_f64()
    );
    let acknowledged = writer.await.unwrap();
    assert!(
        acknowledged.len() > 100,
        "{} writes acknowledged",
        acknowledged.len()
    );
    assert_eq!(
        lost_in(&promoted, &acknowledged).await,
        Vec::<i64>::new(),
        "no acknowledged write lost"
    );

    common::operator::delete_app(&hub, ns, "shop").await;
    let mut regions = env.regions.lock().await;
    regions.recover("us-east").await.unwrap();
    // Asynchronous again, so the rejoin's commits wait for no one.
    regions
        .set_replication(localregions::Replication::Async)
        .await
        .unwrap();
    regions.rejoin_database("us-east").await.unwrap();
    drop(regions);
    restore_databases().await;
}

#[tokio::test]
async fn an_active_active_apps_primary_follows_the_traffic_and_the_old_one_is_fenced_on_return() {
    let env = env_with_databases();
    let _serial = serial().await;
    let _heal = HealOnPanic;
    let hub = env.client("hub").await;
    as_started(&hub).await;
    let ns = "data-active-active";
    uri_secret(&hub, ns, database_uris().await).await;
    apply_app(&hub, ns, "shop", active_active()).await;
    all_serving_us_east_primary(&hub, ns).await;

    // us-east lost: its traffic goes to the others, and its database's
    // role to the standby that lacks least, promoted once the weights
    // have moved (every region serves: the traffic does not wait).
    env.regions.lock().await.fail("us-east").await.unwrap();
    let promoted = wait_for("a standby promoted", Duration::from_secs(60), || async {
        let s = status(&hub, ns, "shop").await?;
        let us = s.regions.iter().find(|r| r.name == "us-east")?;
        (us.weight == 0).then(|| promote_done(&s))?
    })
    .await;
    assert_ne!(promoted, "us-east");
    assert_eq!(in_recovery(&promoted).await, Some(false), "takes writes");
    let other = ["eu-west", "ap-south"]
        .into_iter()
        .find(|r| *r != promoted)
        .unwrap();
    assert_eq!(
        in_recovery(other).await,
        Some(true),
        "one primary: {other} is still a standby"
    );
    let s = status(&hub, ns, "shop").await.unwrap();
    assert!(
        s.regions
            .iter()
            .filter(|r| r.name != "us-east")
            .all(|r| r.weight > 0),
        "both others serve: {:?}",
        s.weights
    );

    // us-east back, its database still a primary: fenced at once, shown
    // NeedsRejoin, the promoted one stays the primary.
    env.regions.lock().await.recover("us-east").await.unwrap();
    wait_for(
        "us-east's old primary fenced, NeedsRejoin",
        Duration::from_secs(60),
        || async {
            let us = replica(&hub, ns, "us-east").await?;
            (us.role == "NeedsRejoin" && us.fenced).then_some(())
        },
    )
    .await;
    let refused = try_sql(
        "us-east",
        "INSERT INTO writes (id, region) VALUES (-3, 'us-east')",
    )
    .await;
    assert!(
        refused.unwrap_err().contains("read-only"),
        "the old primary refuses writes"
    );
    assert_eq!(in_recovery(&promoted).await, Some(false));

    common::operator::delete_app(&hub, ns, "shop").await;
    restore_databases().await;
}

#[tokio::test]
async fn an_active_active_drain_of_the_primarys_region_is_a_planned_switchover() {
    let env = env_with_databases();
    let _serial = serial().await;
    let _heal = HealOnPanic;
    let hub = env.client("hub").await;
    as_started(&hub).await;
    let ns = "data-active-drain";
    uri_secret(&hub, ns, database_uris().await).await;
    apply_app(&hub, ns, "shop", active_active()).await;
    all_serving_us_east_primary(&hub, ns).await;

    // us-east drained under writes: its region may not carry traffic, so
    // the primary moves, planned: fenced, the target replays all it
    // wrote, then promoted; nothing acknowledged is lost.
    let writer = tokio::spawn(write_anywhere(8));
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut drained = active_active();
    drained["regions"][0]["drain"] = json!(true);
    apply_app(&hub, ns, "shop", drained).await;
    let promoted = wait_for("the primary moved", Duration::from_secs(60), || async {
        promote_done(&status(&hub, ns, "shop").await?)
    })
    .await;
    let s = status(&hub, ns, "shop").await.unwrap();
    assert_eq!(
        steps_of(&s),
        [
            ("Fence", "us-east", "Done"),
            ("AwaitReplay", promoted.as_str(), "Done"),
            ("Promote", promoted.as_str(), "Done"),
        ],
        "{:?}",
        s.data_steps
    );
    let us = s.regions.iter().find(|r| r.name == "us-east").unwrap();
    assert_eq!(us.weight, 0, "drained");
    assert_eq!(in_recovery(&promoted).await, Some(false), "takes writes");
    let acknowledged = writer.await.unwrap();
    assert!(!acknowledged.is_empty(), "writes acknowledged");
    assert_eq!(
        lost_in(&promoted, &acknowledged).await,
        Vec::<i64>::new(),
        "no acknowledged write lost"
    );
    let refused = try_sql(
        "us-east",
        "INSERT INTO writes (id, region) VALUES (-4, 'us-east')",
    )
    .await;
    assert!(
        refused.unwrap_err().contains("read-only"),
        "the drained region's old primary refuses writes"
    );

    common::operator::delete_app(&hub, ns, "shop").await;
    restore_databases().await;
}

/// An ActiveActive app over the three regions, lag read from the
/// databases within 30 s.
fn active_active() -> serde_json::Value {
    let mut everywhere = spec(30);
    everywhere["strategy"] = json!("ActiveActive");
    everywhere
}

/// Waits until every region carries traffic and us-east's database is
/// read as the primary; on a timeout, the regions as last seen.
async fn all_serving_us_east_primary(hub: &kube::Client, ns: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let s = status(hub, ns, "shop").await;
        let seen = s.as_ref().map(|s| {
            s.regions
                .iter()
                .map(|r| (r.name.clone(), r.weight, r.health, r.replication.clone()))
                .collect::<Vec<_>>()
        });
        let ready = seen.as_ref().is_some_and(|regions| {
            let all_serve = regions
                .iter()
                .all(|(_, weight, health, _)| *weight > 0 && *health == Health::Healthy);
            let us_primary = regions.iter().any(|(name, _, _, replica)| {
                name == "us-east" && replica.as_ref().is_some_and(|r| r.role == "Primary")
            });
            all_serve && us_primary
        });
        if ready {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "every region carrying traffic, us-east's database the primary: {seen:#?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn an_active_active_promotion_that_fails_holds_the_database_not_the_traffic() {
    let env = env_with_databases();
    let _serial = serial().await;
    let _heal = HealOnPanic;
    let hub = env.client("hub").await;
    as_started(&hub).await;
    let ns = "data-active-active-refused";
    // A role that may read (pg_monitor, and the server's configuration,
    // where the fence is read) but not promote.
    // The grants on the view and its function are the URI's database's.
    try_sql(
        "us-east",
        "DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'watcher') \
         THEN CREATE ROLE watcher LOGIN IN ROLE pg_monitor; END IF; END $$; \
         GRANT SELECT ON pg_file_settings TO watcher; \
         GRANT EXECUTE ON FUNCTION pg_show_all_file_settings() TO watcher",
    )
    .await
    .unwrap();
    let as_watcher: BTreeMap<String, String> = database_uris()
        .await
        .into_iter()
        .map(|(key, value)| (key, value.replace("postgres@", "watcher@")))
        .collect();
    uri_secret(&hub, ns, as_watcher).await;
    apply_app(&hub, ns, "shop", active_active()).await;
    all_serving_us_east_primary(&hub, ns).await;

    env.regions.lock().await.fail("us-east").await.unwrap();
    let (message, s) = wait_for(
        "the traffic off us-east and the promotion refused",
        Duration::from_secs(60),
        || async {
            let s = status(&hub, ns, "shop").await?;
            let us = s.regions.iter().find(|r| r.name == "us-east")?;
            let (state, reason, message) = condition(&s, "PromotionBlocked")?;
            (us.weight == 0 && state == "True" && reason == "DataStepFailed")
                .then_some((message, s))
        },
    )
    .await;
    assert!(
        message.contains("Promote") && message.contains("permission denied"),
        "{message}"
    );
    assert!(
        s.regions
            .iter()
            .filter(|r| r.name != "us-east")
            .all(|r| r.weight > 0),
        "the others serve: {:?}",
        s.weights
    );
    for region in ["eu-west", "ap-south"] {
        assert_eq!(in_recovery(region).await, Some(true), "{region}");
    }

    // A role that may promote: the next attempt (the Secret is read again
    // within 30 s) promotes.
    uri_secret(&hub, ns, database_uris().await).await;
    let promoted = wait_for("a standby promoted", Duration::from_secs(90), || async {
        promote_done(&status(&hub, ns, "shop").await?)
    })
    .await;
    assert_eq!(in_recovery(&promoted).await, Some(false));

    common::operator::delete_app(&hub, ns, "shop").await;
    restore_databases().await;
}

#[tokio::test]
async fn an_operator_restarted_after_the_primary_was_lost_measures_the_standbys_from_the_status_and_promotes()
 {
    let env = env_with_databases();
    let _serial = serial().await;
    let _heal = HealOnPanic;
    let hub = env.client("hub").await;
    as_started(&hub).await;
    let ns = "data-restart";
    uri_secret(&hub, ns, database_uris().await).await;
    apply_app(&hub, ns, "shop", spec(60)).await;
    serving_in_us_east(&hub, ns).await;
    // Writes go on while the status keeps us-east's position, so the
    // standbys' last commits are recent when it is lost.
    let writing = tokio::spawn(write_for(40));
    let started = jiff::Timestamp::now();
    let kept = wait_for(
        "us-east's position, read while it takes writes, kept in status",
        Duration::from_secs(60),
        || async {
            let kept = status(&hub, ns, "shop").await?.primary_position?;
            (kept.region == "us-east" && kept.read_at.0 > started).then_some(kept)
        },
    )
    .await;
    eprintln!("kept in status: {kept:?}");

    // A crash, and us-east lost while no operator runs: the one that
    // starts has never read the primary; only the status tells where it
    // was (the standbys' lag runs to 30 s after it was read: within
    // maxLagSeconds 60). Without it no standby's lag is known, and none
    // is promoted.
    env.kill_operator();
    env.regions.lock().await.fail("us-east").await.unwrap();
    env.start_operator().await;
    let promoted = wait_for("a standby promoted", Duration::from_secs(90), || async {
        let s = status(&hub, ns, "shop").await?;
        let active = s.active_region.filter(|a| a != "us-east")?;
        (in_recovery(&active).await == Some(false)).then_some(active)
    })
    .await;
    let s = status(&hub, ns, "shop").await.unwrap();
    let promote = s.data_steps.iter().find(|d| d.stage == "Promote").unwrap();
    assert_eq!(
        (promote.region.as_str(), promote.outcome.as_str()),
        (promoted.as_str(), "Done"),
        "{:?}",
        s.data_steps
    );
    let new = wait_for(
        "the new primary's position kept",
        Duration::from_secs(60),
        || async {
            let kept = status(&hub, ns, "shop").await?.primary_position?;
            (kept.region == promoted).then_some(kept)
        },
    )
    .await;
    // A promotion starts a higher timeline, read from the database.
    let (old, new) = (kept.timeline.unwrap(), new.timeline.unwrap());
    assert!(new > old, "timeline {old} then {new}");

    assert!(writing.await.unwrap() > 0, "us-east took writes");
    common::operator::delete_app(&hub, ns, "shop").await;
    let mut regions = env.regions.lock().await;
    regions.recover("us-east").await.unwrap();
    regions.rejoin_database("us-east").await.unwrap();
    drop(regions);
    restore_databases().await;
}

/// What every data test's restore relies on: a standby killed while it
/// replays (which pg_rewind cannot rewind: its crash recovery runs in
/// single-user mode, which refuses a standby) rejoins from a fresh copy of
/// the primary, with the primary's writes made while it was down.
#[tokio::test]
async fn a_standby_killed_while_it_replays_rejoins_from_a_fresh_copy() {
    let env = env_with_databases();
    let _serial = serial().await;
    let _heal = HealOnPanic;
    let hub = env.client("hub").await;
    as_started(&hub).await;
    env.regions
        .lock()
        .await
        .fail_database("ap-south")
        .await
        .unwrap();
    try_sql(
        "us-east",
        "INSERT INTO writes (id, region) VALUES (-7, 'us-east')",
    )
    .await
    .unwrap();
    let log = || async {
        let regions = env.regions.lock().await;
        std::fs::read(regions.database("ap-south").unwrap().log()).unwrap()
    };
    let before = log().await.len();
    env.regions
        .lock()
        .await
        .rejoin_database("ap-south")
        .await
        .unwrap();
    let since = String::from_utf8_lossy(&log().await[before..]).into_owned();
    assert!(
        since.contains("single-user") && since.contains("copying the primary anew"),
        "the rewind failed and the copy was made: {since}"
    );
    wait_for(
        "ap-south to replay the write made while it was down",
        Duration::from_secs(30),
        || async {
            let regions = env_with_databases().regions.lock().await;
            let missing = regions.database("ap-south").ok()?.missing(&[-7]).await;
            missing.ok()?.is_empty().then_some(())
        },
    )
    .await;
    try_sql("us-east", "DELETE FROM writes WHERE id = -7")
        .await
        .unwrap();
}
