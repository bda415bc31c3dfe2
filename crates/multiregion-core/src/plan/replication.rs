//! The data tier's replication, judged from what its databases say.
//!
//! Each region's database is read (by an adapter at the edge: PostgreSQL's
//! `pg_stat_replication` and recovery functions, or an exporter's metric)
//! into a [`DbReading`]; [`lags`] turns one round of readings into each
//! region's role and lag ([`ReplicaLag`]), which the RPO gate and the
//! status show. Pure: the readings and the clock come in, nothing is read
//! here.
//!
//! The rules (docs/behaviour.md, "The data tier"):
//! - while the primary answers, a standby's lag is what the primary says
//!   of it: bytes between the primary's position and what the standby has
//!   replayed, seconds as the primary measured them (0 when nothing is
//!   left to replay);
//! - when the primary does not answer, the standby's own reading is put
//!   against the primary's last reported position: at or past it, the
//!   standby is caught up (lag 0), however old that position is; short of
//!   it, the lag is the bytes missing and the time from the standby's last
//!   replayed commit to that reading;
//! - the position is kept in status for the next process
//!   (`kept_position`), refreshed every 30 s at most; one taken from there
//!   (`restored_mark`) is never the primary's last word: a standby's lag
//!   runs to the latest time the primary could have written unrecorded
//!   (`restored_lag`);
//! - a standby that reports nothing has no lag (the gate treats it as over
//!   the limit).

use std::collections::BTreeMap;
use std::future::Future;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::api::{PrimaryPosition, ReplicaStatus};

/// How long a region's replication status may stand unchanged in the
/// app's status while the reading behind it moves (role, verdict and
/// problem unchanged).
pub const STATUS_REFRESH_SECONDS: i64 = 30;

/// How to reach one region's database, as the app's Secret gives it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Target {
    /// Its address (a libpq URI for PostgreSQL).
    pub uri: String,
    /// The certificates (PEM) its server's is checked against, when the
    /// Secret gives them (`ca.crt`).
    pub ca: Option<std::sync::Arc<str>>,
    /// The certificate the operator shows the server, when the Secret
    /// gives one (`tls.crt`, `tls.key`).
    pub client: Option<ClientIdentity>,
}

/// A client certificate chain and its private key (PEM). Its `Debug`
/// never shows the key.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ClientIdentity {
    pub cert: std::sync::Arc<str>,
    pub key: std::sync::Arc<str>,
}

impl std::fmt::Debug for ClientIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientIdentity")
            .field("cert", &self.cert)
            .field("key", &"***")
            .finish()
    }
}

/// A store whose replication the operator reads and steers: one adapter
/// per kind of store (PostgreSQL streaming replication in `src/data/`; a
/// Postgres operator such as CloudNativePG, or another database, is one
/// more). `target` is how the adapter reaches one region's database.
/// Errors are messages for people.
pub trait ReplicatedStore: Send + Sync {
    /// Reads the region's database once: its role and positions.
    fn read(&self, target: &Target) -> impl Future<Output = Result<DbReading, String>> + Send;
    /// Makes a primary refuse writes (idempotent): `Ok(false)` when it
    /// could not be reached (it is fenced when it comes back), an error
    /// when it answered and refused.
    fn fence(&self, target: &Target) -> impl Future<Output = Result<bool, String>> + Send;
    /// Lets a fenced primary take writes again.
    fn unfence(&self, target: &Target) -> impl Future<Output = Result<(), String>> + Send;
    /// A (fenced) primary's current position.
    fn position(&self, target: &Target) -> impl Future<Output = Result<u64, String>> + Send;
    /// Waits, bounded, until a standby has replayed `position`.
    fn await_replay(
        &self,
        target: &Target,
        position: u64,
    ) -> impl Future<Output = Result<(), String>> + Send;
    /// Promotes a standby and returns once it accepts writes (idempotent).
    fn promote(&self, target: &Target) -> impl Future<Output = Result<(), String>> + Send;
}

/// What one read of a region's database said.
#[derive(Clone, Debug, PartialEq)]
pub enum DbReading {
    /// It accepts writes (not in recovery).
    Primary {
        /// Its current WAL position (bytes).
        position: u64,
        /// How many standbys confirm a commit before it is acknowledged
        /// (from `synchronous_standby_names`; 0: asynchronous).
        confirmed_by: usize,
        /// Whether it refuses writes (fenced: `default_transaction_read_only`).
        fenced: bool,
        /// The standbys streaming from it, by region.
        standbys: BTreeMap<String, StreamedTo>,
        /// Its timeline, when the store has them: every promotion starts
        /// a higher one.
        timeline: Option<u32>,
    },
    /// It replays another's WAL (in recovery).
    Standby {
        /// WAL received (bytes).
        received: u64,
        /// WAL replayed (bytes).
        replayed: u64,
        /// Commit time of the last transaction replayed, if any.
        last_replayed_commit: Option<Timestamp>,
        /// It streams from a primary now.
        streaming: bool,
    },
    /// An exporter's lag for the region, in seconds (`lagFrom.metrics`).
    Exported { seconds: f64 },
    /// It could not be read: why (naming the region's key).
    Unreadable(String),
}

/// What a primary says of one standby (`pg_stat_replication`).
#[derive(Clone, Debug, PartialEq)]
pub struct StreamedTo {
    /// WAL the standby has replayed (bytes).
    pub replayed: u64,
    /// WAL the standby has written to disk (bytes): what a synchronous
    /// commit waits for.
    pub flushed: u64,
    /// The primary's measure of the standby's replay lag, when it has one
    /// (none once the standby has caught up and nothing was written since).
    pub replay_lag_seconds: Option<f64>,
}

/// The primary's last reported position, kept across rounds (and leaders,
/// through the status).
#[derive(Clone, Debug, PartialEq)]
pub struct PrimaryMark {
    pub region: String,
    pub position: u64,
    pub at: Timestamp,
    /// Taken from the status, not read by this process: the latest time
    /// the primary could have written without the status recording a
    /// newer position (its refresh was due: the read time plus
    /// [`STATUS_REFRESH_SECONDS`] plus the health interval). A standby's
    /// lag against such a mark runs to then (`restored_lag`).
    pub restored_horizon: Option<Timestamp>,
    /// Its timeline (PostgreSQL's history number), when read: a primary
    /// on a lower one is an old primary, never taken for the live one.
    pub timeline: Option<u32>,
}

/// A WAL position as PostgreSQL writes it: the high and low 32 bits in
/// hexadecimal (`0/3000148`).
pub fn lsn_text(position: u64) -> String {
    format!("{:X}/{:X}", position >> 32, position & 0xFFFF_FFFF)
}

/// A WAL position read from its text (`0/3000148`); `None` when it is
/// not one.
pub fn parse_lsn(text: &str) -> Option<u64> {
    let (high, low) = text.split_once('/')?;
    let high = u32::from_str_radix(high, 16).ok()?;
    let low = u32::from_str_radix(low, 16).ok()?;
    Some((u64::from(high) << 32) | u64::from(low))
}

/// The primary's position to keep in status: this round's `mark`, unless
/// the status holds the same primary's read less than
/// [`STATUS_REFRESH_SECONDS`] ago (a position that moves every round
/// costs a status write at most every 30 s); the status's own when no
/// primary was read.
pub fn kept_position(
    previous: Option<&PrimaryPosition>,
    mark: Option<&PrimaryMark>,
    now: Timestamp,
) -> Option<PrimaryPosition> {
    let Some(mark) = mark else {
        return previous.cloned();
    };
    if let Some(previous) = previous
        && previous.region == mark.region
        && previous.timeline == mark.timeline.map(i64::from)
        && now.as_second() - previous.read_at.0.as_second() < STATUS_REFRESH_SECONDS
    {
        return Some(previous.clone());
    }
    // Whole seconds, as the hub keeps times: a mark that stands still
    // builds the very position the hub holds, and costs no write.
    let read_at = Timestamp::from_second(mark.at.as_second()).unwrap_or(mark.at);
    Some(PrimaryPosition {
        region: mark.region.clone(),
        lsn: lsn_text(mark.position),
        read_at: Time(read_at),
        timeline: mark.timeline.map(i64::from),
    })
}

/// The primary's position as the status keeps it, for an operator that
/// has read no primary itself yet (restarted, or newly the leader), with
/// the app's health interval (`interval_seconds`): the status would have
/// recorded a newer position by the first round [`STATUS_REFRESH_SECONDS`]
/// after the read, had the primary gone on answering.
pub fn restored_mark(
    position: Option<&PrimaryPosition>,
    interval_seconds: i64,
) -> Option<PrimaryMark> {
    let position = position?;
    let at = position.read_at.0;
    let unrecorded = STATUS_REFRESH_SECONDS + interval_seconds.max(1);
    Some(PrimaryMark {
        region: position.region.clone(),
        position: parse_lsn(&position.lsn)?,
        at,
        restored_horizon: Timestamp::from_second(at.as_second() + unrecorded).ok(),
        timeline: position.timeline.and_then(|t| u32::try_from(t).ok()),
    })
}

/// A region's database, as a role.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DbRole {
    Primary,
    Standby,
    /// Not read this round.
    Unknown,
}

impl DbRole {
    pub fn as_str(self) -> &'static str {
        match self {
            DbRole::Primary => "Primary",
            DbRole::Standby => "Standby",
            DbRole::Unknown => "Unknown",
        }
    }
}

/// Where a lag was read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadFrom {
    /// From the primary, about the standby.
    Primary,
    /// From the standby, against the primary's last reported position.
    Standby,
    /// From an exporter's metric (`lagFrom.metrics`).
    Metrics,
}

impl ReadFrom {
    pub fn as_str(self) -> &'static str {
        match self {
            ReadFrom::Primary => "Primary",
            ReadFrom::Standby => "Standby",
            ReadFrom::Metrics => "Metrics",
        }
    }
}

/// One region's role and lag this round.
#[derive(Clone, Debug, PartialEq)]
pub struct ReplicaLag {
    pub role: DbRole,
    /// Seconds of writes the region lacks; `None`: not known.
    pub seconds: Option<f64>,
    /// Bytes of WAL it lacks, where the store counts them.
    pub bytes: Option<u64>,
    pub read_from: Option<ReadFrom>,
    /// When the reading was taken.
    pub observed_at: Timestamp,
    /// Reading from the standby: how old the primary position it was put
    /// against is, in seconds.
    pub primary_age_seconds: Option<i64>,
    /// Why the lag is not known, for status and PromotionBlocked.
    pub problem: Option<String>,
    /// A primary that refuses writes (fenced).
    pub fenced: bool,
    /// A primary's WAL position, as read.
    pub position: Option<u64>,
    /// On an old history: a fenced primary other than the one the data is
    /// measured against, or a standby streaming from one. Its positions
    /// may have parted from the live primary's, so it needs a rewind
    /// before it can follow (shown `NeedsRejoin`) and is never promoted.
    pub parted: bool,
    /// The WAL the region holds, as read: a standby's written to disk
    /// (received, or flushed as its primary reports; a promotion replays
    /// all of it before it takes writes), a primary's own position. Of two
    /// standbys that lack nothing by the bytes counted, the one holding
    /// more is promoted: the other may have received what the promoted one
    /// never had, and could not follow it.
    pub held: Option<u64>,
}

impl ReplicaLag {
    fn unknown(problem: String, now: Timestamp) -> Self {
        ReplicaLag {
            role: DbRole::Unknown,
            seconds: None,
            bytes: None,
            read_from: None,
            observed_at: now,
            primary_age_seconds: None,
            problem: Some(problem),
            fenced: false,
            position: None,
            parted: false,
            held: None,
        }
    }

    /// A primary: lacking nothing while it takes writes; a fenced one's
    /// history may have parted from the live primary's, so it has no lag
    /// (a move onto it waits until it is rewound and streams).
    fn primary(fenced: bool, position: u64, now: Timestamp) -> Self {
        let problem = fenced.then(|| {
            "a fenced primary: rewind it and stream it from the current primary (pg_rewind)"
                .to_string()
        });
        ReplicaLag {
            role: DbRole::Primary,
            seconds: (!fenced).then_some(0.0),
            bytes: (!fenced).then_some(0),
            read_from: Some(ReadFrom::Primary),
            observed_at: now,
            primary_age_seconds: None,
            problem,
            fenced,
            position: Some(position),
            parted: false,
            held: Some(position),
        }
    }
}

/// Each region's role and lag from one round of readings, and the primary
/// position to keep (this round's when exactly one primary answered, else
/// `last`).
pub fn lags(
    readings: &BTreeMap<String, DbReading>,
    last: Option<&PrimaryMark>,
    now: Timestamp,
) -> (BTreeMap<String, ReplicaLag>, Option<PrimaryMark>) {
    let (mark, streamed) = match live_primary(readings, last) {
        Some(live) => (
            Some(PrimaryMark {
                region: live.region.to_string(),
                position: live.acknowledged,
                at: now,
                restored_horizon: None,
                timeline: live.timeline,
            }),
            Some(live.standbys),
        ),
        // None, or several taking writes that cannot be told apart (an old
        // primary back, not fenced yet): its word on the standbys cannot
        // be told from the other's.
        None => (last.cloned(), None),
    };
    let history = mark.as_ref().map(|m| m.region.as_str());
    let unrecorded = mark
        .as_ref()
        .and_then(|m| m.restored_horizon)
        .map(|horizon| horizon.max(latest_commit(readings).unwrap_or(horizon)));
    let lags = readings
        .iter()
        .map(|(region, reading)| {
            let lag = match reading {
                DbReading::Primary {
                    fenced,
                    position,
                    timeline,
                    ..
                } => ReplicaLag {
                    parted: old_primary(region, *fenced, *timeline, mark.as_ref()),
                    ..ReplicaLag::primary(*fenced, *position, now)
                },
                DbReading::Unreadable(why) => ReplicaLag::unknown(why.clone(), now),
                DbReading::Exported { seconds } => ReplicaLag {
                    seconds: Some(*seconds),
                    read_from: Some(ReadFrom::Metrics),
                    problem: None,
                    ..ReplicaLag::unknown(String::new(), now)
                },
                DbReading::Standby { .. } => {
                    let lag = match unrecorded {
                        Some(until) => restored_lag(reading, mark.as_ref(), until, now),
                        None => standby_lag(region, reading, mark.as_ref(), streamed, now),
                    };
                    match history {
                        Some(live) => follows(region, reading, live, streamed, readings, lag),
                        None => lag,
                    }
                }
            };
            (region.clone(), lag)
        })
        .collect();
    (lags, mark)
}

/// A primary outside the live one's region is on an old history when it
/// is fenced (an old primary never rejoined) or on a lower timeline than
/// the live one (an old primary back, still taking writes): never promoted,
/// never the source of a replay, shown `NeedsRejoin`.
fn old_primary(
    region: &str,
    fenced: bool,
    timeline: Option<u32>,
    live: Option<&PrimaryMark>,
) -> bool {
    let Some(live) = live.filter(|l| l.region != region) else {
        return false;
    };
    let lower = live.timeline.zip(timeline).is_some_and(|(l, t)| t < l);
    fenced || lower
}

/// A primary as `live_primary` weighs it.
struct Candidate<'a> {
    region: &'a String,
    acknowledged: u64,
    standbys: &'a BTreeMap<String, StreamedTo>,
    fenced: bool,
    timeline: Option<u32>,
}

/// The primary the data is measured against this round, with its
/// acknowledged position, its standbys and its timeline: the one taking
/// writes (of several, the one on the highest timeline: a promotion
/// always starts a higher one, so the others are old primaries back, not
/// fenced yet); when none does, the fenced one that was (a planned move's
/// old primary, `last`'s region). Never one on a lower timeline than
/// `last`'s (an old primary back while the live one is not read). None
/// when several take writes on the same or unknown timelines, or when the
/// only primaries are fenced old ones beside the last live one.
fn live_primary<'a>(
    readings: &'a BTreeMap<String, DbReading>,
    last: Option<&PrimaryMark>,
) -> Option<Candidate<'a>> {
    let primaries: Vec<Candidate> = readings
        .iter()
        .filter_map(|(region, reading)| match reading {
            DbReading::Primary {
                position,
                confirmed_by,
                standbys,
                fenced,
                timeline,
            } => Some(Candidate {
                region,
                acknowledged: acknowledged(*position, *confirmed_by, standbys),
                standbys,
                fenced: *fenced,
                timeline: *timeline,
            }),
            _ => None,
        })
        .collect();
    let older_than_last = |c: &Candidate| {
        let last = last.and_then(|l| l.timeline);
        last.zip(c.timeline).is_some_and(|(l, t)| t < l)
    };
    let (writing, fenced): (Vec<Candidate>, Vec<Candidate>) =
        primaries.into_iter().partition(|c| !c.fenced);
    if writing.is_empty() {
        let mut chosen = fenced
            .into_iter()
            .filter(|c| last.is_none_or(|l| l.region == *c.region));
        return match (chosen.next(), chosen.next()) {
            (Some(one), None) => Some(one),
            _ => None,
        };
    }
    let mut writing = writing;
    if writing.len() > 1 {
        // Told apart only when every one's timeline is known.
        let timelines: Option<Vec<u32>> = writing.iter().map(|c| c.timeline).collect();
        let highest = timelines?.into_iter().max()?;
        writing.retain(|c| c.timeline == Some(highest));
    }
    match writing.as_slice() {
        [one] if !older_than_last(one) => writing.pop(),
        _ => None,
    }
}

/// A standby as it follows `live`, the primary the data is measured
/// against. Streaming from another primary (a fenced old one): its
/// history may have parted from `live`'s, so it has no lag and needs a
/// rewind. Not listed by `live` while it answers, and streaming from
/// nothing: its lag stands as measured, and why it grows is said.
/// Listed, or streaming from another standby (cascading): as measured.
fn follows(
    region: &str,
    reading: &DbReading,
    live: &str,
    streamed: Option<&BTreeMap<String, StreamedTo>>,
    readings: &BTreeMap<String, DbReading>,
    lag: ReplicaLag,
) -> ReplicaLag {
    let old = readings.iter().find_map(|(other, r)| match r {
        DbReading::Primary { standbys, .. } if other != live && standbys.contains_key(region) => {
            Some(other.as_str())
        }
        _ => None,
    });
    if let Some(old) = old {
        return ReplicaLag {
            seconds: None,
            bytes: None,
            parted: true,
            problem: Some(format!(
                "streams from {old}, not from the primary {live}: its history may have \
                 parted from {live}'s; rewind it and stream it from {live}"
            )),
            ..lag
        };
    }
    let streaming = matches!(
        reading,
        DbReading::Standby {
            streaming: true,
            ..
        }
    );
    match streamed {
        Some(listed) if !listed.contains_key(region) && !streaming => {
            let cause = format!(
                "receives no WAL from the primary {live}: it falls behind until it streams \
                 from {live} again (its link is cut, or it still follows an old primary and \
                 must be pointed at {live})"
            );
            let problem = match &lag.problem {
                Some(also) => format!("{cause}; {also}"),
                None => cause,
            };
            ReplicaLag {
                problem: Some(problem),
                ..lag
            }
        }
        _ => lag,
    }
}

/// The last position whose commits were acknowledged to clients: the
/// primary's own with asynchronous replication; with synchronous
/// replication the `confirmed_by`-th most advanced standby's flushed
/// position (WAL written but not yet confirmed was never acknowledged, so
/// a standby short of it lacks no acknowledged write).
fn acknowledged(
    position: u64,
    confirmed_by: usize,
    standbys: &BTreeMap<String, StreamedTo>,
) -> u64 {
    if confirmed_by == 0 || standbys.is_empty() {
        return position;
    }
    let mut flushed: Vec<u64> = standbys.values().map(|s| s.flushed).collect();
    flushed.sort_unstable_by(|a, b| b.cmp(a));
    let k = confirmed_by.min(flushed.len());
    flushed[k - 1].min(position)
}

/// A standby's lag: the primary's word while it answers, else its own
/// reading against the primary's last position.
fn standby_lag(
    region: &str,
    reading: &DbReading,
    mark: Option<&PrimaryMark>,
    streamed: Option<&BTreeMap<String, StreamedTo>>,
    now: Timestamp,
) -> ReplicaLag {
    let DbReading::Standby {
        received,
        replayed,
        last_replayed_commit,
        ..
    } = reading
    else {
        unreachable!("standby_lag is called for standbys");
    };
    let held = (*received).max(*replayed);
    let Some(mark) = mark else {
        let why = "no primary has answered yet: nothing to measure the lag against";
        return ReplicaLag {
            role: DbRole::Standby,
            held: Some(held),
            ..ReplicaLag::unknown(why.to_string(), now)
        };
    };
    let behind = mark.position.saturating_sub(*replayed);
    let since_commit = |reference: Timestamp| {
        last_replayed_commit
            .map(|commit| (reference.as_second() - commit.as_second()).max(0) as f64)
    };
    let (seconds, read_from, age) = match streamed.and_then(|s| s.get(region)) {
        Some(stream) => {
            let behind_primary = mark.position.saturating_sub(stream.replayed);
            let seconds = if behind_primary == 0 {
                Some(0.0)
            } else {
                stream.replay_lag_seconds.or_else(|| since_commit(now))
            };
            return ReplicaLag {
                role: DbRole::Standby,
                seconds,
                bytes: Some(behind_primary),
                read_from: Some(ReadFrom::Primary),
                observed_at: now,
                primary_age_seconds: None,
                problem: None,
                fenced: false,
                position: None,
                parted: false,
                held: Some(stream.flushed.max(stream.replayed)),
            };
        }
        None if behind == 0 => (Some(0.0), ReadFrom::Standby, age_of(mark, now)),
        None => (since_commit(mark.at), ReadFrom::Standby, age_of(mark, now)),
    };
    ReplicaLag {
        role: DbRole::Standby,
        seconds,
        bytes: Some(behind),
        read_from: Some(read_from),
        observed_at: now,
        primary_age_seconds: Some(age),
        problem: seconds
            .is_none()
            .then(|| "it has replayed no transaction to date its lag by".to_string()),
        fenced: false,
        position: None,
        parted: false,
        held: Some((*received).max(*replayed)),
    }
}

/// The commit time of the latest transaction any standby replayed.
fn latest_commit(readings: &BTreeMap<String, DbReading>) -> Option<Timestamp> {
    readings
        .values()
        .filter_map(|reading| match reading {
            DbReading::Standby {
                last_replayed_commit,
                ..
            } => *last_replayed_commit,
            _ => None,
        })
        .max()
}

/// A standby's lag against a position taken from the status, which this
/// process never read. The primary may have written, unrecorded, until
/// `until`: the mark's horizon, or later when a standby replayed a commit
/// made after it (the status stood still while the primary wrote). So
/// the lag runs to `until` from the standby's last replayed commit, or
/// from the position's read time for a standby that reached the position
/// and has committed nothing since (an idle database). A standby short of
/// the position that replayed no transaction has no lag to tell.
fn restored_lag(
    reading: &DbReading,
    mark: Option<&PrimaryMark>,
    until: Timestamp,
    now: Timestamp,
) -> ReplicaLag {
    let (
        DbReading::Standby {
            received,
            replayed,
            last_replayed_commit,
            ..
        },
        Some(mark),
    ) = (reading, mark)
    else {
        unreachable!("restored_lag is called for standbys, with a restored mark");
    };
    let reached = *replayed >= mark.position;
    let since = match (last_replayed_commit, reached) {
        (Some(commit), true) => Some((*commit).max(mark.at)),
        (Some(commit), false) => Some(*commit),
        (None, true) => Some(mark.at),
        (None, false) => None,
    };
    let seconds = since.map(|since| (until.as_second() - since.as_second()).max(0) as f64);
    ReplicaLag {
        role: DbRole::Standby,
        seconds,
        bytes: Some(mark.position.saturating_sub(*replayed)),
        read_from: Some(ReadFrom::Standby),
        observed_at: now,
        primary_age_seconds: Some(age_of(mark, now)),
        problem: seconds
            .is_none()
            .then(|| "it has replayed no transaction to date its lag by".to_string()),
        fenced: false,
        position: None,
        parted: false,
        held: Some((*received).max(*replayed)),
    }
}

/// Seconds since the primary's position was read.
fn age_of(mark: &PrimaryMark, now: Timestamp) -> i64 {
    (now.as_second() - mark.at.as_second()).max(0)
}

/// The region's replication status to write (`role` as shown, see
/// [`shown_role`]): this round's reading, or the
/// previous status when nothing a person acts on changed (same role,
/// fenced or not, same side of `allowed_lag`, same problem) and it is
/// less than [`STATUS_REFRESH_SECONDS`] old. Status writes then follow
/// changes, not rounds.
pub fn status(
    previous: Option<&ReplicaStatus>,
    lag: &ReplicaLag,
    role: &str,
    allowed_lag: f64,
    now: Timestamp,
) -> ReplicaStatus {
    let current = ReplicaStatus {
        role: role.to_string(),
        lag_seconds: lag.seconds.map(|s| s.ceil() as i64),
        lag_bytes: lag.bytes.map(|b| i64::try_from(b).unwrap_or(i64::MAX)),
        read_from: lag.read_from.map(|r| r.as_str().to_string()),
        observed_at: Time(lag.observed_at),
        primary_age_seconds: lag.primary_age_seconds,
        fenced: lag.fenced,
        message: lag.problem.clone(),
    };
    let Some(previous) = previous else {
        return current;
    };
    let within = |s: &ReplicaStatus| s.lag_seconds.map(|l| l as f64 <= allowed_lag);
    let same = previous.role == current.role
        && previous.fenced == current.fenced
        && previous.message == current.message
        && previous.read_from == current.read_from
        && within(previous) == within(&current);
    let fresh = now.as_second() - previous.observed_at.0.as_second() < STATUS_REFRESH_SECONDS;
    if same && fresh {
        previous.clone()
    } else {
        current
    }
}

/// One step the data tier takes so that the database follows the traffic,
/// in order, before the weights move.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DataStep {
    /// Make a primary that is not the active region's refuse writes.
    Fence(String),
    /// Wait until `target` has replayed everything `from` (fenced) wrote;
    /// `required`: a planned move, which loses nothing or does not happen.
    AwaitReplay {
        target: String,
        from: String,
        required: bool,
    },
    /// Promote the active region's standby and wait until it accepts writes.
    Promote(String),
    /// Let the active region's fenced primary take writes again (no other
    /// primary does).
    Unfence(String),
    /// Nothing can make this region's database take writes safely: why.
    Refuse { region: String, why: String },
}

impl DataStep {
    /// The stage's name in status and Events.
    pub fn stage(&self) -> &'static str {
        match self {
            DataStep::Fence(_) => "Fence",
            DataStep::AwaitReplay { .. } => "AwaitReplay",
            DataStep::Promote(_) => "Promote",
            DataStep::Unfence(_) => "Unfence",
            DataStep::Refuse { .. } => "Refuse",
        }
    }

    /// The region the step acts on.
    pub fn region(&self) -> &str {
        match self {
            DataStep::Fence(r) | DataStep::Promote(r) | DataStep::Unfence(r) => r,
            DataStep::AwaitReplay { target, .. } => target,
            DataStep::Refuse { region, .. } => region,
        }
    }
}

/// What the data tier must do for `active` to be the only primary that
/// takes writes: fence every other unfenced primary, then, when the active
/// region's database is a standby, wait for its replay of the most advanced
/// other primary that answers (required unless this decision is a
/// failover: a planned move, or none, loses nothing) and promote it. An
/// active region whose primary is fenced is unfenced when no other primary
/// takes writes (a move that did not happen), and refused when one does
/// (an old primary whose history parted: it must be rewound first).
/// Nothing when the active region's database is already the only writable
/// primary. `moving`: this decision moves the traffic (`Some(planned)`).
pub fn steps(
    active: &str,
    lags: &BTreeMap<String, ReplicaLag>,
    moving: Option<bool>,
) -> Vec<DataStep> {
    // An old history never takes writes, whatever brought the traffic
    // there (an override too): refused before anything is fenced.
    if lags.get(active).is_some_and(|l| l.parted) {
        return vec![DataStep::Refuse {
            region: active.to_string(),
            why: "its database is on an old primary's history (NeedsRejoin): rewind it and let it stream from the live primary first".to_string(),
        }];
    }
    let mut others: Vec<(&String, &ReplicaLag)> = lags
        .iter()
        .filter(|(region, lag)| *region != active && lag.role == DbRole::Primary)
        .collect();
    // The one whose writes the target must have first: a primary on the
    // live history before an old one (its positions say nothing of the
    // live history), then the most advanced.
    others.sort_by_key(|(_, lag)| (lag.parted, std::cmp::Reverse(lag.position)));
    let live_elsewhere = others.iter().any(|(_, lag)| !lag.fenced);
    let mut steps: Vec<DataStep> = others
        .iter()
        .filter(|(_, lag)| !lag.fenced)
        .map(|(region, _)| DataStep::Fence(region.to_string()))
        .collect();
    let target = lags.get(active);
    match target.map(|l| (l.role, l.fenced)) {
        Some((DbRole::Primary, false)) => {}
        // Refused before anything is fenced: the live primary keeps taking
        // writes.
        Some((DbRole::Primary, true)) if live_elsewhere => {
            return vec![DataStep::Refuse {
                region: active.to_string(),
                why: "its database is a fenced old primary while another takes writes: rewind it (pg_rewind) and let it stream first".to_string(),
            }];
        }
        Some((DbRole::Primary, true)) => steps.push(DataStep::Unfence(active.to_string())),
        Some((DbRole::Standby, _)) => promote(&mut steps, active, &others, moving),
        // Not readable: a move must not go on blind; otherwise wait.
        Some((DbRole::Unknown, _)) | None if moving.is_some() => {
            promote(&mut steps, active, &others, moving)
        }
        Some((DbRole::Unknown, _)) | None => {}
    }
    steps
}

fn promote(
    steps: &mut Vec<DataStep>,
    active: &str,
    others: &[(&String, &ReplicaLag)],
    moving: Option<bool>,
) {
    // Only a primary on the live history says what the target must have.
    if let Some((from, _)) = others.iter().find(|(_, lag)| !lag.parted) {
        steps.push(DataStep::AwaitReplay {
            target: active.to_string(),
            from: from.to_string(),
            required: moving != Some(false),
        });
    }
    steps.push(DataStep::Promote(active.to_string()));
}

/// The role a person sees: a fenced primary outside the active region,
/// and a standby streaming from one, need to be rewound and streamed from
/// the new primary.
pub fn shown_role(region: &str, lag: &ReplicaLag, active: Option<&str>) -> &'static str {
    if (lag.role == DbRole::Primary && lag.fenced && Some(region) != active) || lag.parted {
        "NeedsRejoin"
    } else {
        lag.role.as_str()
    }
}

/// The status to write when a data step failed: the previous one (nothing
/// of the move is applied), with the steps taken and PromotionBlocked
/// (`DataStepFailed`) naming the step.
pub fn blocked(
    previous: &crate::api::MultiRegionAppStatus,
    stages: Vec<crate::api::DataStage>,
    generation: Option<i64>,
    now: Timestamp,
) -> crate::api::MultiRegionAppStatus {
    let mut status = previous.clone();
    mark_blocked(&mut status, previous, stages, generation, now);
    status
}

/// Records the steps taken in `status` and raises PromotionBlocked
/// (`DataStepFailed`) naming the step that failed, its transition time
/// carried over from `previous` when it was already raised so.
pub fn mark_blocked(
    status: &mut crate::api::MultiRegionAppStatus,
    previous: &crate::api::MultiRegionAppStatus,
    stages: Vec<crate::api::DataStage>,
    generation: Option<i64>,
    now: Timestamp,
) {
    let failed = stages
        .iter()
        .find(|s| s.outcome == "Failed")
        .map(|s| format!("{} {}: {}", s.stage, s.region, s.message))
        .unwrap_or_default();
    status.data_steps = stages;
    let mut c = super::conditions::Conditions::new(&previous.conditions, now, generation);
    c.set(
        "PromotionBlocked",
        true,
        "DataStepFailed",
        format!("the database does not follow the traffic yet: {failed}"),
    );
    c.merge_into(&mut status.conditions);
}

/// An Event per step taken: a Warning for the one that failed.
pub fn stage_events(stages: &[crate::api::DataStage]) -> Vec<super::Event> {
    use super::{Event, EventReason};
    stages
        .iter()
        .map(|s| {
            let message = format!("{} {}: {} ({})", s.stage, s.region, s.outcome, s.message);
            match s.outcome.as_str() {
                "Failed" => Event::warning(EventReason::DatabaseStepFailed, message),
                _ => Event::normal(EventReason::DatabaseStep, message),
            }
        })
        .collect()
}

/// How many standbys confirm each commit, from `synchronous_standby_names`:
/// `ANY k (...)` and `FIRST k (...)` say k, `k (...)` too; a name or a
/// list without a number means one; empty means none (asynchronous).
pub fn confirmed_by(synchronous_standby_names: &str) -> usize {
    let text = synchronous_standby_names.trim();
    if text.is_empty() {
        return 0;
    }
    let words: Vec<&str> = text.split_whitespace().collect();
    let number = match words.first().map(|w| w.to_ascii_uppercase()) {
        Some(w) if w == "ANY" || w == "FIRST" => words.get(1),
        _ => words.first(),
    };
    number
        .and_then(|n| n.trim_end_matches('(').parse().ok())
        .unwrap_or(1)
}

/// The same steps on the same regions with the same outcomes: a retry that
/// changed nothing a person acts on (its status and Events stay).
pub fn same_steps(previous: &[crate::api::DataStage], now: &[crate::api::DataStage]) -> bool {
    previous.len() == now.len()
        && previous
            .iter()
            .zip(now)
            .all(|(a, b)| a.stage == b.stage && a.region == b.region && a.outcome == b.outcome)
}
