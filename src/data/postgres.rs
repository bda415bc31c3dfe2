//! The PostgreSQL adapter: reads one region's database into a
//! [`DbReading`] (its role, its WAL positions, what it says of the
//! standbys streaming from it). The URI's role needs `pg_monitor` and to
//! read `pg_file_settings` (docs/behaviour.md).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use tokio::sync::Mutex;
use tokio_postgres::{Client, NoTls};

use super::tls::{self, SslMode};
use crate::plan::replication::{self, DbReading, ReplicatedStore, StreamedTo, Target};

/// How long one connection and its queries may take: a region whose
/// database does not answer within it is unreadable this round.
pub const READ_TIMEOUT: Duration = Duration::from_secs(1);

/// A connection unused this long is closed (a rotated Secret's old URI or
/// CA, a deleted app).
const IDLE: Duration = Duration::from_secs(600);

/// Open connections, by target (URI and CA), reused across rounds, with
/// when each was last used.
#[derive(Default)]
pub struct Connections {
    open: Mutex<BTreeMap<Target, (Arc<Client>, Instant)>>,
}

impl Connections {
    /// A connection to `target`: the open one, or a new one (TLS as its
    /// `sslmode` says, see [`super::tls`]), made without holding the others
    /// up (a database that does not answer delays only its own reads).
    /// Every call closes those idle for [`IDLE`].
    async fn client(&self, target: &Target) -> Result<Arc<Client>, String> {
        {
            let mut open = self.open.lock().await;
            open.retain(|_, (client, used)| !client.is_closed() && used.elapsed() < IDLE);
            if let Some((client, used)) = open.get_mut(target) {
                *used = Instant::now();
                return Ok(client.clone());
            }
        }
        let client = Arc::new(connect(target).await?);
        let mut open = self.open.lock().await;
        open.insert(target.clone(), (client.clone(), Instant::now()));
        Ok(client)
    }

    /// Forgets the connection to `target` (after an error or a timeout).
    async fn drop_client(&self, target: &Target) {
        self.open.lock().await.remove(target);
    }

    /// Reads the database at `target`, within [`READ_TIMEOUT`].
    async fn read_now(&self, target: &Target) -> Result<DbReading, String> {
        let reading = tokio::time::timeout(READ_TIMEOUT, async {
            let client = self.client(target).await?;
            read(&client).await.map_err(|e| describe(&e))
        })
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {}s", READ_TIMEOUT.as_secs())));
        if reading.is_err() {
            self.drop_client(target).await;
        }
        reading
    }
}

/// Connects to the target's URI, with TLS unless its `sslmode` is
/// `disable` (then its client certificate is not shown, as in libpq); the
/// connection runs on its own task until the client is dropped.
async fn connect(target: &Target) -> Result<Client, String> {
    let split = tls::split(&target.uri)?;
    let mut config: tokio_postgres::Config = split.uri.parse().map_err(|e| describe(&e))?;
    // An sslmode the split did not see (percent-encoded, spaced around
    // `=`, after a `?` in a password) would be overridden below: refused.
    if config.get_ssl_mode() != tokio_postgres::config::SslMode::Prefer {
        return Err(
            "sslmode: written in a form the operator does not read (encoded or spaced); write sslmode=MODE"
                .to_string(),
        );
    }
    config.ssl_mode(match split.mode {
        SslMode::Disable => tokio_postgres::config::SslMode::Disable,
        SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
        _ => tokio_postgres::config::SslMode::Require,
    });
    if split.mode == SslMode::Disable {
        let (client, connection) = config.connect(NoTls).await.map_err(|e| describe(&e))?;
        tokio::spawn(connection);
        return Ok(client);
    }
    let connector = tls::connector(&split, target.ca.as_deref(), target.client.as_ref())?;
    let (client, connection) = config.connect(connector).await.map_err(|e| describe(&e))?;
    tokio::spawn(connection);
    Ok(client)
}

async fn read(client: &Client) -> Result<DbReading, tokio_postgres::Error> {
    let row = client.query_one("SELECT pg_is_in_recovery()", &[]).await?;
    let in_recovery: bool = row.get(0);
    if in_recovery {
        return read_standby(client).await;
    }
    let row = client
        .query_one(
            "SELECT (pg_current_wal_lsn() - '0/0')::bigint, \
             coalesce((SELECT setting FROM pg_file_settings \
               WHERE name = 'default_transaction_read_only' AND applied \
               ORDER BY seqno DESC LIMIT 1), 'off') = 'on', \
             current_setting('synchronous_standby_names'), \
             pg_walfile_name(pg_current_wal_lsn())",
            &[],
        )
        .await?;
    let (position, fenced): (i64, bool) = (row.get(0), row.get(1));
    let confirmed_by = replication::confirmed_by(row.get(2));
    let timeline = timeline_of(row.get(3));
    let rows = client
        .query(
            "SELECT application_name, (coalesce(replay_lsn, '0/0') - '0/0')::bigint, \
             extract(epoch FROM replay_lag)::float8, \
             (coalesce(flush_lsn, '0/0') - '0/0')::bigint FROM pg_stat_replication",
            &[],
        )
        .await?;
    let standbys = rows
        .iter()
        .map(|row| {
            let stream = StreamedTo {
                replayed: row.get::<_, i64>(1).max(0) as u64,
                flushed: row.get::<_, i64>(3).max(0) as u64,
                replay_lag_seconds: row.get(2),
            };
            (row.get::<_, String>(0), stream)
        })
        .collect();
    Ok(DbReading::Primary {
        position: position.max(0) as u64,
        confirmed_by,
        fenced,
        standbys,
        timeline,
    })
}

/// The timeline a WAL file's name begins with (8 hexadecimal digits).
fn timeline_of(wal_file: &str) -> Option<u32> {
    u32::from_str_radix(wal_file.get(..8)?, 16).ok()
}

async fn read_standby(client: &Client) -> Result<DbReading, tokio_postgres::Error> {
    let row = client
        .query_one(
            "SELECT (coalesce(pg_last_wal_receive_lsn(), '0/0') - '0/0')::bigint, \
             (coalesce(pg_last_wal_replay_lsn(), '0/0') - '0/0')::bigint, \
             extract(epoch FROM pg_last_xact_replay_timestamp())::float8, \
             EXISTS (SELECT 1 FROM pg_stat_wal_receiver WHERE status = 'streaming')",
            &[],
        )
        .await?;
    let commit: Option<f64> = row.get(2);
    Ok(DbReading::Standby {
        received: row.get::<_, i64>(0).max(0) as u64,
        replayed: row.get::<_, i64>(1).max(0) as u64,
        last_replayed_commit: commit.and_then(|s| Timestamp::from_second(s.floor() as i64).ok()),
        streaming: row.get(3),
    })
}

/// An error as a person needs it: the database's own message when it sent
/// one, else what failed on the way.
fn describe(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) if db.message().contains("file_settings") => format!(
            "{}: {} (the fence is read from the server's configuration: GRANT SELECT ON pg_file_settings and EXECUTE ON FUNCTION pg_show_all_file_settings() to the URI's role, in its database)",
            db.code().code(),
            db.message()
        ),
        Some(db) => format!("{}: {}", db.code().code(), db.message()),
        None => {
            let source = std::error::Error::source(error).map(|s| format!(": {s}"));
            format!("{error}{}", source.unwrap_or_default())
        }
    }
}

/// How long a promotion may take to leave recovery.
const PROMOTE_SECONDS: i32 = 30;
/// How long a planned move waits for the target's replay.
pub const REPLAY_WAIT: Duration = Duration::from_secs(5);

impl Connections {
    /// A fresh connection for one step (a step must not reuse a connection
    /// a previous round left in doubt).
    async fn step_client(&self, target: &Target) -> Result<Arc<Client>, String> {
        self.drop_client(target).await;
        tokio::time::timeout(READ_TIMEOUT * 3, self.client(target))
            .await
            .unwrap_or_else(|_| Err("no answer".into()))
    }

    /// Makes the primary at `target` refuse writes: new transactions are read
    /// only (`default_transaction_read_only`, reloaded) and the client
    /// sessions open now are ended, each waited for up to 5 s (replication
    /// goes on). `Ok(false)`: it could not be reached.
    async fn fence_now(&self, target: &Target) -> Result<bool, String> {
        let Ok(client) = self.step_client(target).await else {
            return Ok(false);
        };
        let run = async {
            client
                .batch_execute("ALTER SYSTEM SET default_transaction_read_only = on")
                .await?;
            client.batch_execute("SELECT pg_reload_conf()").await?;
            client
                .batch_execute(
                    "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity \
                     WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()",
                )
                .await
        };
        run.await.map(|()| true).map_err(|e| describe(&e))
    }

    /// Lets the primary at `target` take writes again.
    async fn unfence_now(&self, target: &Target) -> Result<(), String> {
        let client = self.step_client(target).await?;
        let run = async {
            client
                .batch_execute("ALTER SYSTEM RESET default_transaction_read_only")
                .await?;
            client.batch_execute("SELECT pg_reload_conf()").await
        };
        run.await.map_err(|e| describe(&e))
    }

    /// The WAL position of the (fenced) primary at `target`.
    async fn position_now(&self, target: &Target) -> Result<u64, String> {
        let client = self.step_client(target).await?;
        let row = client
            .query_one("SELECT (pg_current_wal_lsn() - '0/0')::bigint", &[])
            .await
            .map_err(|e| describe(&e))?;
        Ok(row.get::<_, i64>(0).max(0) as u64)
    }

    /// Waits until the standby at `target` has replayed `position`, up to
    /// [`REPLAY_WAIT`]; the position it reached otherwise.
    async fn await_replay_now(&self, target: &Target, position: u64) -> Result<(), String> {
        let client = self.step_client(target).await?;
        let deadline = tokio::time::Instant::now() + REPLAY_WAIT;
        loop {
            let row = client
                .query_one(
                    "SELECT (coalesce(pg_last_wal_replay_lsn(), '0/0') - '0/0')::bigint",
                    &[],
                )
                .await
                .map_err(|e| describe(&e))?;
            let replayed = row.get::<_, i64>(0).max(0) as u64;
            if replayed >= position {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(format!(
                    "replayed {} of the old primary's {} bytes within {}s",
                    replayed,
                    position,
                    REPLAY_WAIT.as_secs()
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Promotes the standby at `target` and returns once it accepts writes.
    async fn promote_now(&self, target: &Target) -> Result<(), String> {
        let client = self.step_client(target).await?;
        let run = async {
            let row = client.query_one("SELECT pg_is_in_recovery()", &[]).await?;
            if row.get::<_, bool>(0) {
                client
                    .query_one("SELECT pg_promote(true, $1)", &[&PROMOTE_SECONDS])
                    .await?;
            }
            client
                .batch_execute("ALTER SYSTEM RESET default_transaction_read_only")
                .await?;
            client.batch_execute("SELECT pg_reload_conf()").await?;
            client.query_one("SELECT pg_is_in_recovery()", &[]).await
        };
        let row = tokio::time::timeout(Duration::from_secs(PROMOTE_SECONDS as u64 + 5), run)
            .await
            .map_err(|_| "no answer while promoting".to_string())?
            .map_err(|e| describe(&e))?;
        match row.get::<_, bool>(0) {
            false => Ok(()),
            true => Err(format!("still in recovery after {PROMOTE_SECONDS}s")),
        }
    }
}

impl ReplicatedStore for Connections {
    async fn read(&self, target: &Target) -> Result<DbReading, String> {
        self.read_now(target).await
    }
    async fn fence(&self, target: &Target) -> Result<bool, String> {
        self.fence_now(target).await
    }
    async fn unfence(&self, target: &Target) -> Result<(), String> {
        self.unfence_now(target).await
    }
    async fn position(&self, target: &Target) -> Result<u64, String> {
        self.position_now(target).await
    }
    async fn await_replay(&self, target: &Target, position: u64) -> Result<(), String> {
        self.await_replay_now(target, position).await
    }
    async fn promote(&self, target: &Target) -> Result<(), String> {
        self.promote_now(target).await
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_timeline_is_read_from_the_wal_files_name() {
        assert_eq!(super::timeline_of("000000020000000000000004"), Some(2));
        assert_eq!(super::timeline_of("0000001A0000000000000004"), Some(26));
        assert_eq!(super::timeline_of("short"), None);
    }
}
