//! PostgreSQL in local regions (`up --postgres`): one server per member
//! region, as processes (Debian's `postgresql` package). The first
//! region's is the primary; every other streams from it, with a
//! replication slot, over its region's link: a Toxiproxy proxy
//! (`REGION-db-link`) whose upstream is the current primary, so added
//! latency (`wan-latency`) and a failed region apply to replication as
//! they would between real regions.
//!
//! Each server listens on its region's address (127.0.0.1, or the
//! region's host address with a spread hub), offers TLS with a
//! certificate from its own CA (`DIR/postgres/tls/ca.crt`, printed by
//! `env` as `POSTGRES_CA`) and trusts every local connection, with TLS or
//! without: these are test databases, never to hold data of worth. One
//! role, `admin`, logs in only with a client certificate signed by that CA
//! (`DIR/postgres/tls/admin.crt` and `admin.key`, printed by `env` as
//! `POSTGRES_CLIENT_CERT` and `POSTGRES_CLIENT_KEY`).
//! `fail` kills a region's server (SIGKILL, with its backends) and cuts
//! its links; `recover` starts it again as it was: a primary stays a
//! primary (localregions never demotes: that is what fencing and
//! `rejoin-db` are for).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::str::FromStr;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::LocalRegions;
use crate::process::{self, Component};

/// The database every region's endpoint writes to, and its table.
pub const DATABASE: &str = "app";
const SCHEMA: &str = "CREATE TABLE writes (id bigint PRIMARY KEY, region text NOT NULL, \
                      at timestamptz NOT NULL DEFAULT now())";
/// Settings of every server, primary or standby (`postgresql.conf`).
const SETTINGS: &str = "
# localregions: streaming replication between regions
wal_level = replica
hot_standby = on
hot_standby_feedback = on
wal_log_hints = on
max_wal_senders = 10
max_replication_slots = 10
wal_keep_size = 256MB
wal_receiver_status_interval = 1s
# Test databases: a killed process loses nothing the kernel holds, and
# the machine never fails under them.
fsync = off
full_page_writes = on
max_connections = 60
shared_buffers = 32MB
";

/// Where PostgreSQL's server programs are: `MULTIREGION_POSTGRES_BIN`, else
/// Debian's directory for version 15.
fn bin_dir() -> PathBuf {
    std::env::var("MULTIREGION_POSTGRES_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from("/usr/lib/postgresql/15/bin"))
}

/// Which standbys a commit waits for (`synchronous_standby_names`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Replication {
    /// None: a commit returns once the primary has it.
    #[default]
    Async,
    /// Any one standby (`ANY 1 (...)`).
    SemiSync,
    /// Every standby (`ANY N (...)`).
    Sync,
}

impl FromStr for Replication {
    type Err = anyhow::Error;
    fn from_str(text: &str) -> Result<Self> {
        match text {
            "async" => Ok(Replication::Async),
            "semi-sync" => Ok(Replication::SemiSync),
            "sync" => Ok(Replication::Sync),
            other => bail!("replication mode {other:?}: want async, semi-sync or sync"),
        }
    }
}

impl Replication {
    /// The `synchronous_standby_names` of a primary whose standbys are
    /// `standbys` (each named by its region).
    pub fn standby_names(self, standbys: &[&str]) -> String {
        let quoted: Vec<String> = standbys.iter().map(|s| format!("\"{s}\"")).collect();
        let count = match self {
            Replication::Async => return String::new(),
            Replication::SemiSync => 1,
            Replication::Sync => standbys.len(),
        };
        if standbys.is_empty() {
            return String::new();
        }
        format!("ANY {count} ({})", quoted.join(", "))
    }
}

/// One region's database.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Database {
    pub region: String,
    /// The address and port it listens on (its region's clients use it).
    pub host: String,
    pub port: u16,
    pub data: PathBuf,
    server: Component,
    /// The port of this region's link to the primary (a proxy on loopback).
    link_port: u16,
}

impl Database {
    /// The server's log (its programs' output too: pg_rewind, pg_basebackup).
    pub fn log(&self) -> &Path {
        &self.server.log
    }

    /// A superuser libpq URI of the region's `app` database.
    pub fn uri(&self) -> String {
        format!(
            "postgres://postgres@{}:{}/{DATABASE}?sslmode=disable",
            self.host, self.port
        )
    }

    pub(crate) fn component(&self) -> &Component {
        &self.server
    }

    fn address(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// A connection to one of its databases.
    pub async fn connect(&self, database: &str) -> Result<tokio_postgres::Client> {
        let config = format!(
            "host={} port={} user=postgres dbname={database} connect_timeout=3",
            self.host, self.port
        );
        let (client, connection) = tokio_postgres::connect(&config, tokio_postgres::NoTls)
            .await
            .with_context(|| format!("connecting to the database of {}", self.region))?;
        tokio::spawn(connection);
        Ok(client)
    }

    /// Which of `ids` its `writes` table lacks (acknowledged writes lost).
    pub async fn missing(&self, ids: &[i64]) -> Result<Vec<i64>> {
        let client = self.connect(DATABASE).await?;
        let rows = client
            .query(
                "SELECT t.id FROM unnest($1::bigint[]) AS t(id) \
                 WHERE NOT EXISTS (SELECT 1 FROM writes w WHERE w.id = t.id) ORDER BY t.id",
                &[&ids],
            )
            .await?;
        Ok(rows.iter().map(|row| row.get(0)).collect())
    }

    /// Whether it is a standby (in recovery); `None` when it does not answer.
    pub async fn in_recovery(&self) -> Option<bool> {
        let client = self.connect("postgres").await.ok()?;
        let row = client
            .query_one("SELECT pg_is_in_recovery()", &[])
            .await
            .ok()?;
        Some(row.get(0))
    }
}

/// The proxy a region reaches the primary through.
fn link_proxy(region: &str) -> String {
    format!("{region}-db-link")
}

/// A region's replication slot on the primary.
fn slot(region: &str) -> String {
    region.replace('-', "_")
}

/// The user and group the servers run as: `postgres` when this process is
/// root (PostgreSQL refuses root), else this process's.
fn server_user() -> Result<Option<(u32, u32)>> {
    if !nix::unistd::geteuid().is_root() {
        return Ok(None);
    }
    let user = nix::unistd::User::from_name("postgres")?.context(
        "PostgreSQL refuses to run as root and there is no `postgres` user (Debian's postgresql package creates it)",
    )?;
    Ok(Some((user.uid.as_raw(), user.gid.as_raw())))
}

/// Runs one of PostgreSQL's programs to completion as the servers' user.
fn run_tool(program: &str, args: &[&str], user: Option<(u32, u32)>, log: &Path) -> Result<()> {
    use std::os::unix::process::CommandExt;
    let log_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)?;
    let mut command = Command::new(bin_dir().join(program));
    command
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(log_file.try_clone()?)
        .stderr(log_file);
    if let Some((uid, gid)) = user {
        command.uid(uid).gid(gid);
    }
    let status = command.status().with_context(|| {
        format!("running {program} (is PostgreSQL installed? see MULTIREGION_POSTGRES_BIN)")
    })?;
    if !status.success() {
        bail!("{program} failed ({status}):\n{}", process::tail(log, 15));
    }
    Ok(())
}

/// Makes `dir` and its ancestors searchable by the servers' user (root
/// only; only the search bit is added where missing), and `dir` its own.
fn prepare_dir(dir: &Path, user: Option<(u32, u32)>) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir)?;
    let Some((uid, gid)) = user else {
        return Ok(());
    };
    for ancestor in dir.ancestors().skip(1) {
        let mode = std::fs::metadata(ancestor)?.permissions().mode();
        if mode & 0o001 == 0 {
            std::fs::set_permissions(ancestor, std::fs::Permissions::from_mode(mode | 0o001))?;
        }
    }
    std::os::unix::fs::chown(dir, Some(uid), Some(gid))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    Ok(())
}

impl LocalRegions {
    /// The regions' databases, primary first as started.
    pub fn databases(&self) -> &[Database] {
        &self.state.databases
    }

    /// One region's database.
    pub fn database(&self, region: &str) -> Result<&Database> {
        self.state
            .databases
            .iter()
            .find(|d| d.region == region)
            .ok_or_else(|| {
                anyhow!("region {region:?} has no database (start with `up --postgres`)")
            })
    }

    fn database_mut(&mut self, region: &str) -> Result<&mut Database> {
        self.state
            .databases
            .iter_mut()
            .find(|d| d.region == region)
            .ok_or_else(|| {
                anyhow!("region {region:?} has no database (start with `up --postgres`)")
            })
    }

    /// Starts a database in each of `regions`: the first a primary (with
    /// the `app` database and its `writes` table), the others standbys
    /// streaming from it through their links.
    pub(crate) async fn start_databases(&mut self, regions: &[(String, String)]) -> Result<()> {
        let user = server_user()?;
        let root = self.dir.join("postgres");
        prepare_dir(&root, user)?;
        let hosts: Vec<&str> = regions.iter().map(|(_, host)| host.as_str()).collect();
        write_tls(&self.tls_dir(), &hosts, user)?;
        for (index, (region, host)) in regions.iter().enumerate() {
            let database = self.plan_database(region, host, user)?;
            self.state.databases.push(database);
            let toxiproxy = self.toxiproxy()?;
            let link = format!("127.0.0.1:{}", self.state.databases[index].link_port);
            let primary = self.state.databases[0].address();
            toxiproxy
                .proxy(&link_proxy(region), &link, &primary)
                .await?;
            if index == 0 {
                self.init_primary(user).await?;
            } else {
                self.init_standby(region, user).await?;
            }
            self.save()?;
        }
        Ok(())
    }

    fn plan_database(
        &self,
        region: &str,
        host: &str,
        user: Option<(u32, u32)>,
    ) -> Result<Database> {
        let data = self.dir.join("postgres").join(region);
        let port = process::free_port()?;
        let link_port = process::free_port()?;
        let conninfo =
            format!("host=127.0.0.1 port={link_port} user=postgres application_name={region}");
        let args = vec![
            "-D".into(),
            data.display().to_string(),
            "-p".into(),
            port.to_string(),
            "-c".into(),
            format!("listen_addresses={host}"),
            // TCP only: a socket path under a deep directory is longer than
            // the 107 bytes Unix sockets allow.
            "-c".into(),
            "unix_socket_directories=".into(),
            "-c".into(),
            format!("cluster_name={region}"),
            "-c".into(),
            format!("primary_conninfo={conninfo}"),
            "-c".into(),
            format!("primary_slot_name={}", slot(region)),
            "-c".into(),
            "ssl=on".into(),
            "-c".into(),
            format!("ssl_cert_file={}", self.tls_dir().join(TLS_CERT).display()),
            "-c".into(),
            format!("ssl_key_file={}", self.tls_dir().join(TLS_KEY).display()),
            // Client certificates are checked against the same CA.
            "-c".into(),
            format!("ssl_ca_file={}", self.tls_dir().join(TLS_CA).display()),
        ];
        let server = Component {
            name: format!("{region}/postgres"),
            program: bin_dir().join("postgres"),
            args,
            env: Default::default(),
            log: self.dir.join(format!("logs/{region}-postgres.log")),
            pid: None,
            netns: None,
            run_as: user,
        };
        Ok(Database {
            region: region.to_string(),
            host: host.to_string(),
            port,
            data,
            server,
            link_port,
        })
    }

    async fn init_primary(&mut self, user: Option<(u32, u32)>) -> Result<()> {
        let database = self.state.databases[0].clone();
        let data = database.data.display().to_string();
        let log = database.server.log.clone();
        run_tool(
            "initdb",
            &["-D", &data, "-U", "postgres", "--auth=trust", "--no-sync"],
            user,
            &log,
        )?;
        append_settings(&database.data)?;
        require_certificate(&database.data)?;
        trust_region_network(&database.data, &database.host)?;
        self.start_database(&database.region).await?;
        let client = database.connect("postgres").await?;
        client
            // FILE_COPY checkpoints at once; the default (WAL_LOG) waits
            // for a spread checkpoint: 90 s here.
            .batch_execute(&format!("CREATE DATABASE {DATABASE} STRATEGY = FILE_COPY"))
            .await?;
        client
            .batch_execute(&format!("CREATE ROLE {CERTIFICATE_ROLE} LOGIN SUPERUSER"))
            .await?;
        database
            .connect(DATABASE)
            .await?
            .batch_execute(SCHEMA)
            .await?;
        Ok(())
    }

    async fn init_standby(&mut self, region: &str, user: Option<(u32, u32)>) -> Result<()> {
        self.ensure_slot(region).await?;
        self.base_backup(region, user)?;
        become_standby(&self.database(region)?.data, user)?;
        self.start_database(region).await
    }

    /// Copies the primary's data directory into `region`'s (which must not
    /// exist or be empty) through the region's link.
    fn base_backup(&self, region: &str, user: Option<(u32, u32)>) -> Result<()> {
        let database = self.database(region)?;
        let data = database.data.display().to_string();
        let port = database.link_port.to_string();
        run_tool(
            "pg_basebackup",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-U",
                "postgres",
                "-D",
                &data,
                "-X",
                "stream",
                "--no-sync",
            ],
            user,
            &database.server.log,
        )
    }

    /// Creates `region`'s replication slot on the current primary unless
    /// it is there.
    async fn ensure_slot(&self, region: &str) -> Result<()> {
        let primary = self.primary_but(region).await?;
        let client = primary.connect("postgres").await?;
        let name = slot(region);
        let exists = client
            .query_opt(
                "SELECT 1 FROM pg_replication_slots WHERE slot_name = $1",
                &[&name],
            )
            .await?;
        if exists.is_none() {
            client
                .execute(
                    "SELECT pg_create_physical_replication_slot($1, true)",
                    &[&name],
                )
                .await?;
        }
        Ok(())
    }

    /// The one database that answers and is not in recovery.
    pub async fn primary(&self) -> Result<&Database> {
        self.primary_but("").await
    }

    /// The one database that answers and is not in recovery, `region`'s
    /// left out (an old primary that came back still a primary).
    async fn primary_but(&self, region: &str) -> Result<&Database> {
        let mut primaries = Vec::new();
        for database in self.state.databases.iter().filter(|d| d.region != region) {
            if database.in_recovery().await == Some(false) {
                primaries.push(database);
            }
        }
        match primaries.as_slice() {
            [one] => Ok(one),
            [] => bail!("no database answers as a primary"),
            many => bail!(
                "several databases answer as primaries: {}",
                many.iter()
                    .map(|d| d.region.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }

    /// Starts a region's database (if stopped) and waits until it accepts
    /// connections.
    pub(crate) async fn start_database(&mut self, region: &str) -> Result<()> {
        let database = self.database_mut(region)?;
        if !database.server.is_running() {
            database.server.start()?;
        }
        let database = database.clone();
        self.save()?;
        crate::wait_until(
            &database.server,
            "PostgreSQL to accept connections",
            || async { Ok(database.connect("postgres").await.is_ok()) },
        )
        .await
    }

    /// Kills a region's database at once (a region lost) and cuts every
    /// replication link to or from it: what was in flight is lost.
    pub async fn fail_database(&mut self, region: &str) -> Result<()> {
        if self.database(region).is_err() {
            return Ok(());
        }
        self.set_links(region, false).await?;
        self.database_mut(region)?.server.stop(Duration::ZERO);
        self.save()
    }

    /// Starts a failed region's database again, as it was, and mends its links.
    pub async fn recover_database(&mut self, region: &str) -> Result<()> {
        if self.database(region).is_err() {
            return Ok(());
        }
        if let Err(error) = self.start_database(region).await {
            // A standby that received WAL of a history the live primary
            // does not have stops at start ("unexpected timeline ID"):
            // rejoined (rewound, or copied anew), as an administrator
            // would. A primary is never touched (recover never demotes).
            let standby = self.database(region)?.data.join("standby.signal").exists();
            if !standby {
                return Err(error);
            }
            tracing::warn!(region, %error, "localregions: the standby does not start; rejoining it");
            self.rejoin_database(region).await?;
        }
        self.set_links(region, true).await
    }

    /// Enables or disables the links of `region` and every link whose
    /// upstream is `region`'s database (disabled: connections through it
    /// are closed, and nothing passes).
    async fn set_links(&self, region: &str, enabled: bool) -> Result<()> {
        let address = self.database(region)?.address();
        let toxiproxy = self.toxiproxy()?;
        for database in &self.state.databases {
            let proxy = link_proxy(&database.region);
            let upstream = toxiproxy.upstream_of(&proxy).await?;
            if database.region == region || upstream == address {
                toxiproxy.enable(&proxy, enabled).await?;
            }
        }
        Ok(())
    }

    /// Switches which standbys every database's commits wait for (each
    /// names every other region, so the setting holds after a promotion).
    pub async fn set_replication(&mut self, mode: Replication) -> Result<()> {
        self.state.replication = mode;
        for database in &self.state.databases {
            self.apply_replication(database).await?;
        }
        self.save()
    }

    /// Sets one database's `synchronous_standby_names` for the current
    /// mode, naming every other region.
    async fn apply_replication(&self, database: &Database) -> Result<()> {
        let others: Vec<&str> = self
            .state
            .databases
            .iter()
            .filter(|d| d.region != database.region)
            .map(|d| d.region.as_str())
            .collect();
        let names = self.state.replication.standby_names(&others);
        let Ok(client) = database.connect("postgres").await else {
            bail!(
                "the database of {} does not answer: recover it first",
                database.region
            );
        };
        client
            .batch_execute(&format!(
                "ALTER SYSTEM SET synchronous_standby_names = '{names}'"
            ))
            .await?;
        client.batch_execute("SELECT pg_reload_conf()").await?;
        Ok(())
    }

    /// Adds `rtt` round trip between every region and the primary on the
    /// replication links (half each way); zero removes it.
    pub async fn wan_latency(&self, rtt: Duration) -> Result<()> {
        let toxiproxy = self.toxiproxy()?;
        let half = rtt.as_millis() as u64 / 2;
        for database in &self.state.databases {
            let proxy = link_proxy(&database.region);
            toxiproxy.clear(&proxy).await?;
            if half == 0 {
                continue;
            }
            for stream in ["upstream", "downstream"] {
                let attributes = json!({"latency": half, "jitter": 0});
                toxiproxy
                    .toxic(
                        &proxy,
                        &format!("wan-{stream}"),
                        "latency",
                        stream,
                        attributes,
                    )
                    .await?;
            }
        }
        Ok(())
    }

    /// Makes a region's database a standby of the current primary: it is
    /// stopped, rewound to where the two histories part (`pg_rewind`, which
    /// first finishes crash recovery of a killed primary) or, where that
    /// fails (a killed standby), copied anew from the primary, then started
    /// streaming through its link, now pointed at the primary. Returns once
    /// the primary sees it streaming.
    pub async fn rejoin_database(&mut self, region: &str) -> Result<()> {
        self.database(region)?;
        let primary = self
            .primary_but(region)
            .await
            .with_context(|| format!("{region} can rejoin only a primary in another region"))?
            .clone();
        // pg_rewind reads the source's timeline from its control file,
        // which a promotion updates only at the next checkpoint (fixed in
        // PostgreSQL 16): without one it rewinds to the wrong history.
        primary
            .connect("postgres")
            .await?
            .batch_execute("CHECKPOINT")
            .await?;
        shut_down(&mut self.database_mut(region)?.server);
        self.save()?;
        let database = self.database(region)?.clone();
        self.ensure_slot(region).await?;
        let toxiproxy = self.toxiproxy()?;
        toxiproxy
            .upstream(&link_proxy(region), &primary.address())
            .await?;
        toxiproxy.enable(&link_proxy(region), true).await?;
        if let Err(error) = rewind(&database, &primary) {
            // A standby killed while it replayed cannot be rewound
            // (pg_rewind's crash recovery runs in single-user mode, which
            // refuses a standby): copied anew, as an administrator would.
            tracing::warn!(region, %error, "rewind failed; copying the primary anew");
            self.copy_anew(&database)?;
        }
        become_standby(&database.data, database.server.run_as)?;
        if let Err(error) = self.start_database(region).await {
            // Rewound, yet it cannot replay to a consistent point on the
            // primary's history: copied anew.
            tracing::warn!(region, %error, "localregions: the rewound standby does not start; copying the primary anew");
            shut_down(&mut self.database_mut(region)?.server);
            self.copy_anew(&database)?;
            become_standby(&database.data, database.server.run_as)?;
            self.start_database(region).await?;
        }
        // pg_rewind copied the primary's settings, whose standby names
        // name this region: name the others, as `replication` does.
        self.apply_replication(self.database(region)?).await?;
        let server = self.database(region)?.server.clone();
        let client = primary.connect("postgres").await?;
        crate::wait_until(&server, "it to stream from the primary", || async {
            let row = client
                .query_opt(
                    "SELECT 1 FROM pg_stat_replication WHERE application_name = $1 AND state = 'streaming'",
                    &[&region],
                )
                .await?;
            Ok(row.is_some())
        })
        .await
    }

    /// Where the databases' TLS files are.
    fn tls_dir(&self) -> PathBuf {
        self.dir.join("postgres").join("tls")
    }

    /// The CA that signed every database's certificate (PEM).
    pub fn database_ca(&self) -> Result<String> {
        let path = self.tls_dir().join(TLS_CA);
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))
    }

    /// The client certificate and key (PEM) [`CERTIFICATE_ROLE`] logs in
    /// with, signed by [`Self::database_ca`].
    pub fn database_client_certificate(&self) -> Result<(String, String)> {
        let read = |name: &str| {
            let path = self.tls_dir().join(name);
            std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))
        };
        Ok((read(TLS_CLIENT_CERT)?, read(TLS_CLIENT_KEY)?))
    }

    /// `POSTGRES_<REGION>=URI` lines for `env`, and `POSTGRES_CA`, the
    /// file of the CA their certificates are signed by.
    pub(crate) fn database_env_lines(&self) -> String {
        let mut lines: String = self
            .state
            .databases
            .iter()
            .map(|d| {
                let upper = d.region.to_uppercase().replace('-', "_");
                format!("export POSTGRES_{upper}='{}'\n", d.uri())
            })
            .collect();
        if !self.state.databases.is_empty() {
            for (name, file) in [
                ("CA", TLS_CA),
                ("CLIENT_CERT", TLS_CLIENT_CERT),
                ("CLIENT_KEY", TLS_CLIENT_KEY),
            ] {
                let path = self.tls_dir().join(file);
                lines.push_str(&format!("export POSTGRES_{name}='{}'\n", path.display()));
            }
        }
        lines
    }

    /// Stops every database (fast shutdown).
    pub(crate) fn down_databases(&mut self) {
        for database in self.state.databases.iter_mut().rev() {
            shut_down(&mut database.server);
        }
    }
}

impl LocalRegions {
    /// Replaces a stopped database's data directory with a copy of the
    /// primary's. The old one is kept aside until the copy is made, and
    /// put back if it fails (a primary that does not answer loses nothing).
    fn copy_anew(&self, database: &Database) -> Result<()> {
        use std::io::Write;
        let mut log = std::fs::OpenOptions::new()
            .append(true)
            .open(&database.server.log)?;
        writeln!(log, "localregions: rewind failed; copying the primary anew")?;
        let mut name = database.data.file_name().unwrap_or_default().to_owned();
        name.push(".before-copy");
        let aside = database.data.with_file_name(name);
        if aside.exists() {
            // An earlier copy was stopped half-way: what is aside is the
            // database, what is in place a partial copy.
            if database.data.exists() {
                std::fs::remove_dir_all(&database.data)?;
            }
        } else {
            std::fs::rename(&database.data, &aside)?;
        }
        match self.base_backup(&database.region, database.server.run_as) {
            Ok(()) => Ok(std::fs::remove_dir_all(&aside)?),
            Err(error) => {
                let _ = std::fs::remove_dir_all(&database.data);
                std::fs::rename(&aside, &database.data)?;
                Err(error.context("copying the primary anew after a failed rewind"))
            }
        }
    }
}

/// Rewinds a stopped database to where its history parts from `primary`'s.
fn rewind(database: &Database, primary: &Database) -> Result<()> {
    let source = format!(
        "host={} port={} user=postgres dbname=postgres",
        primary.host, primary.port
    );
    let data = database.data.display().to_string();
    run_tool(
        "pg_rewind",
        &[
            "--target-pgdata",
            &data,
            "--source-server",
            &source,
            "--no-sync",
        ],
        database.server.run_as,
        &database.server.log,
    )
}

/// Stops a server the way an administrator does (`pg_ctl stop -m fast`:
/// SIGINT, clients disconnected, a shutdown checkpoint), so that it can be
/// rewound; killed after 10 s.
fn shut_down(server: &mut Component) {
    use nix::sys::signal::{Signal, kill};
    if let Some(pid) = server.pid.filter(|_| server.is_running()) {
        let _ = kill(nix::unistd::Pid::from_raw(pid), Signal::SIGINT);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while server.is_running() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    server.stop(Duration::ZERO);
}

/// The databases' TLS files in [`LocalRegions::tls_dir`] (named by
/// `pki::ClusterPki`).
const TLS_CA: &str = "ca.crt";
const TLS_CERT: &str = "apiserver.crt";
const TLS_KEY: &str = "apiserver.key";
const TLS_CLIENT_CERT: &str = "admin.crt";
const TLS_CLIENT_KEY: &str = "admin.key";

/// Writes a CA and one server certificate for 127.0.0.1, localhost and
/// every region's address, owned by the servers' user (PostgreSQL reads
/// its key only if no one else may).
fn write_tls(dir: &Path, hosts: &[&str], user: Option<(u32, u32)>) -> Result<()> {
    let addresses: Vec<std::net::IpAddr> = hosts.iter().filter_map(|h| h.parse().ok()).collect();
    crate::pki::ClusterPki::generate(dir, "postgres", &addresses)?;
    if let Some((uid, gid)) = user {
        for name in ["", TLS_CA, TLS_CERT, TLS_KEY] {
            std::os::unix::fs::chown(dir.join(name), Some(uid), Some(gid))?;
        }
    }
    Ok(())
}

/// Appends the replication settings to a new cluster's `postgresql.conf`.
fn append_settings(data: &Path) -> Result<()> {
    use std::io::Write;
    let mut conf = std::fs::OpenOptions::new()
        .append(true)
        .open(data.join("postgresql.conf"))?;
    conf.write_all(SETTINGS.as_bytes())?;
    Ok(())
}

/// The role that logs in only over TLS with the client certificate
/// `DIR/postgres/tls/admin.crt` (its CN), never with a password or trust:
/// what a database that asks for client certificates looks like.
pub const CERTIFICATE_ROLE: &str = "admin";

/// Puts the certificate-only rules for [`CERTIFICATE_ROLE`] before the
/// `trust` lines of a new cluster's `pg_hba.conf` (the standbys get it
/// with the base backup).
fn require_certificate(data: &Path) -> Result<()> {
    let path = data.join("pg_hba.conf");
    let rest = std::fs::read_to_string(&path)?;
    // `all` does not cover physical replication connections: both named.
    let rules: String = ["all", "replication"]
        .iter()
        .map(|database| {
            format!(
                "hostssl {database} {CERTIFICATE_ROLE} all cert\nhost {database} {CERTIFICATE_ROLE} all reject\n"
            )
        })
        .collect();
    std::fs::write(&path, rules + &rest)?;
    Ok(())
}

/// With a spread hub the databases listen on their regions' host
/// addresses (10.252.N.(110+i)), and are reached from them and from the
/// regions' network namespaces (10.252.N.(10+i)): `trust` for that /24,
/// as initdb's own lines trust loopback (the certificate-only rules stay
/// first). Nothing to add on loopback.
fn trust_region_network(data: &Path, host: &str) -> Result<()> {
    let Ok(std::net::IpAddr::V4(address)) = host.parse::<std::net::IpAddr>() else {
        return Ok(());
    };
    if address.is_loopback() {
        return Ok(());
    }
    let [a, b, c, _] = address.octets();
    let network = format!("{a}.{b}.{c}.0/24");
    let path = data.join("pg_hba.conf");
    let mut rules = std::fs::read_to_string(&path)?;
    for database in ["all", "replication"] {
        rules.push_str(&format!("host {database} all {network} trust\n"));
    }
    std::fs::write(&path, rules)?;
    Ok(())
}

/// Marks a data directory as a standby's (`standby.signal`); where it
/// streams from is on its command line (its link).
fn become_standby(data: &Path, user: Option<(u32, u32)>) -> Result<()> {
    let signal = data.join("standby.signal");
    std::fs::write(&signal, "")?;
    if let Some((uid, gid)) = user {
        std::os::unix::fs::chown(&signal, Some(uid), Some(gid))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_mode_names_the_standbys_a_commit_waits_for() {
        let standbys = ["eu-west", "ap-south"];
        assert_eq!(Replication::Async.standby_names(&standbys), "");
        assert_eq!(
            Replication::SemiSync.standby_names(&standbys),
            "ANY 1 (\"eu-west\", \"ap-south\")"
        );
        assert_eq!(
            Replication::Sync.standby_names(&standbys),
            "ANY 2 (\"eu-west\", \"ap-south\")"
        );
        assert_eq!(Replication::Sync.standby_names(&[]), "");
        assert!("quorum".parse::<Replication>().is_err());
    }
}
