//! A bounded load client that measures failover where clients feel it: it
//! sends requests at a fixed rate for a fixed time (loopback only; it stops
//! by itself) along one of three routes, and records for every request
//! whether it succeeded and which region answered (the regions' endpoints
//! answer with their name).
//!
//! - `Route::Url`: through one address, such as the gateway;
//! - `Route::Dns`: resolve a name (honouring the record's TTL), then request
//!   the address it gives;
//! - `Route::Regions`: the client knows every region's endpoint and tries
//!   the next when one fails (client-side failover).
//!
//! With `writes`, every request is a write (`POST /writes?id=N`, ids unique
//! across runs): a region's endpoint answers 2xx only after its database
//! committed the row, so [`acknowledged`] lists the writes a client was
//! promised, and [`crate::Database::missing`] those a database lacks.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// Where requests go.
#[derive(Clone, Debug)]
pub enum Route {
    Url(String),
    Dns {
        server: String,
        name: String,
        port: u16,
    },
    Regions(Vec<String>),
}

/// One request's outcome, `at` since the load started.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sample {
    pub at: Duration,
    pub ok: bool,
    pub region: Option<String>,
    /// The id written, for a write; acknowledged when `ok`.
    pub write: Option<i64>,
    /// How long the request took.
    pub latency: Duration,
}

/// Requests per second and for how long.
#[derive(Clone, Copy, Debug)]
pub struct Load {
    pub rate: u32,
    pub duration: Duration,
    /// Longest one request (with its retries) may take.
    pub timeout: Duration,
    /// Each request writes a row (`POST /writes?id=N`) instead of reading.
    pub writes: bool,
}

/// The ids of every acknowledged write, in send order.
pub fn acknowledged(samples: &[Sample]) -> Vec<i64> {
    samples
        .iter()
        .filter(|s| s.ok)
        .filter_map(|s| s.write)
        .collect()
}

/// The first id of a run's writes: distinct for runs a millisecond apart
/// (a run writes fewer than a million rows).
fn first_write_id() -> i64 {
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    millis * 1_000_000
}

/// Sends the load along `route`; returns every sample, in send order.
pub async fn run(route: &Route, load: Load) -> Result<Vec<Sample>> {
    let http = reqwest::Client::builder()
        .timeout(load.timeout)
        .pool_max_idle_per_host(0)
        .build()?;
    let started = Instant::now();
    let every = Duration::from_secs_f64(1.0 / f64::from(load.rate.max(1)));
    let mut ticker = tokio::time::interval(every);
    let mut resolver = Resolver::default();
    let mut pending = Vec::new();
    let first_id = first_write_id();
    while started.elapsed() < load.duration {
        ticker.tick().await;
        let at = started.elapsed();
        let write = load.writes.then(|| first_id + pending.len() as i64);
        let targets = match route {
            Route::Url(url) => vec![url.clone()],
            Route::Regions(urls) => urls.clone(),
            Route::Dns { server, name, port } => match resolver.address(server, name).await {
                Some(ip) => vec![format!("http://{ip}:{port}/")],
                None => Vec::new(),
            },
        };
        let http = http.clone();
        pending.push(tokio::spawn(async move {
            let sent = Instant::now();
            let region = first_answer(&http, &targets, write).await;
            Sample {
                at,
                ok: region.is_some(),
                region,
                write,
                latency: sent.elapsed(),
            }
        }));
    }
    let mut samples = Vec::with_capacity(pending.len());
    for sample in pending {
        samples.push(sample.await?);
    }
    Ok(samples)
}

/// The region of the first target that answers 2xx, trying them in order
/// (a write goes to each target's `/writes`).
async fn first_answer(
    http: &reqwest::Client,
    targets: &[String],
    write: Option<i64>,
) -> Option<String> {
    for url in targets {
        let request = match write {
            Some(id) => http.post(format!("{}/writes?id={id}", url.trim_end_matches('/'))),
            None => http.get(url),
        };
        let Ok(response) = request.send().await else {
            continue;
        };
        if !response.status().is_success() {
            continue;
        }
        if let Ok(body) = response.text().await {
            return Some(body.trim().to_string());
        }
    }
    None
}

/// A stub resolver that caches an answer for its TTL, as a client honouring
/// TTLs does.
#[derive(Default)]
struct Resolver {
    cached: Option<(Ipv4Addr, Instant)>,
}

impl Resolver {
    async fn address(&mut self, server: &str, name: &str) -> Option<Ipv4Addr> {
        if let Some((ip, until)) = self.cached
            && Instant::now() < until
        {
            return Some(ip);
        }
        let answers = resolve(server, name).await.ok()?;
        let (ip, ttl) = *answers.first()?;
        self.cached = Some((ip, Instant::now() + Duration::from_secs(u64::from(ttl))));
        Some(ip)
    }
}

/// The A records of `name` from the DNS server at `server` (UDP), with
/// their TTLs.
pub async fn resolve(server: &str, name: &str) -> Result<Vec<(Ipv4Addr, u32)>> {
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
    socket.connect(server).await?;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let id = (nanos & 0xffff) as u16;
    socket.send(&query(id, name)).await?;
    let mut buffer = [0u8; 1500];
    let n = tokio::time::timeout(Duration::from_secs(1), socket.recv(&mut buffer))
        .await
        .context("no DNS answer within 1 s")??;
    parse_answers(&buffer[..n], id)
}

/// A recursive A query for `name`.
fn query(id: u16, name: &str) -> Vec<u8> {
    let mut packet = Vec::with_capacity(64);
    packet.extend_from_slice(&id.to_be_bytes());
    packet.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.trim_end_matches('.').split('.') {
        packet.push(label.len() as u8);
        packet.extend_from_slice(label.as_bytes());
    }
    packet.extend_from_slice(&[0, 0, 1, 0, 1]);
    packet
}

/// The A records of an answer (CNAMEs and other records are skipped).
fn parse_answers(packet: &[u8], id: u16) -> Result<Vec<(Ipv4Addr, u32)>> {
    let u16_at = |i: usize| -> Result<u16> {
        let bytes = packet.get(i..i + 2).context("a short DNS answer")?;
        Ok(u16::from_be_bytes([bytes[0], bytes[1]]))
    };
    if packet.len() < 12 || u16_at(0)? != id {
        bail!("not the answer to this query");
    }
    let answers = u16_at(6)?;
    let mut at = skip_name(packet, 12)? + 4;
    let mut records = Vec::new();
    for _ in 0..answers {
        at = skip_name(packet, at)?;
        let (kind, length) = (u16_at(at)?, usize::from(u16_at(at + 8)?));
        let ttl = packet.get(at + 4..at + 8).context("a short DNS answer")?;
        let ttl = u32::from_be_bytes([ttl[0], ttl[1], ttl[2], ttl[3]]);
        let data = packet
            .get(at + 10..at + 10 + length)
            .context("a short DNS answer")?;
        if kind == 1 && length == 4 {
            records.push((Ipv4Addr::new(data[0], data[1], data[2], data[3]), ttl));
        }
        at += 10 + length;
    }
    Ok(records)
}

/// The offset after a (possibly compressed) name.
fn skip_name(packet: &[u8], mut at: usize) -> Result<usize> {
    loop {
        let length = *packet.get(at).context("a short DNS answer")?;
        match length {
            0 => return Ok(at + 1),
            l if l & 0xc0 == 0xc0 => return Ok(at + 2),
            l => at += 1 + usize::from(l),
        }
    }
}

/// What clients saw of one fault: from `fault` to the first of `streak`
/// successes in a row answered by `region`.
#[derive(Clone, Debug, PartialEq)]
pub struct Window {
    /// Until clients were served by the new region again.
    pub duration: Duration,
    /// Requests that failed meanwhile.
    pub failed: usize,
    /// Requests sent meanwhile.
    pub sent: usize,
}

/// The error window after `fault`, or None when `region` never served
/// `streak` requests in a row.
pub fn window(samples: &[Sample], fault: Duration, region: &str, streak: usize) -> Option<Window> {
    let after: Vec<&Sample> = samples.iter().filter(|s| s.at >= fault).collect();
    let served = |s: &&Sample| s.ok && s.region.as_deref() == Some(region);
    let start = (0..after.len())
        .find(|&i| after.len() >= i + streak && after[i..i + streak].iter().all(served))?;
    Some(Window {
        duration: after[start].at - fault,
        failed: after[..start].iter().filter(|s| !s.ok).count(),
        sent: start,
    })
}

/// One line per second: successes, failures, and who answered.
pub fn per_second(samples: &[Sample]) -> Vec<String> {
    let mut seconds: BTreeMap<u64, (usize, usize, BTreeMap<String, usize>)> = BTreeMap::new();
    for sample in samples {
        let entry = seconds.entry(sample.at.as_secs()).or_default();
        match &sample.region {
            Some(region) if sample.ok => {
                entry.0 += 1;
                *entry.2.entry(region.clone()).or_default() += 1;
            }
            _ => entry.1 += 1,
        }
    }
    seconds
        .into_iter()
        .map(|(second, (ok, failed, regions))| {
            let who: Vec<String> = regions.iter().map(|(r, n)| format!("{r}={n}")).collect();
            format!(
                "t={second:>3}s ok={ok:<3} failed={failed:<3} {}",
                who.join(" ")
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(ms: u64, region: Option<&str>) -> Sample {
        Sample {
            at: Duration::from_millis(ms),
            ok: region.is_some(),
            region: region.map(str::to_string),
            write: None,
            latency: Duration::ZERO,
        }
    }

    #[test]
    fn the_window_ends_at_the_first_streak_from_the_new_region() {
        let samples = vec![
            sample(0, Some("us-east")),
            sample(100, None),
            sample(200, Some("eu-west")),
            sample(300, None),
            sample(400, Some("eu-west")),
            sample(500, Some("eu-west")),
            sample(600, Some("eu-west")),
        ];
        let w = window(&samples, Duration::from_millis(50), "eu-west", 3).unwrap();
        assert_eq!(w.duration, Duration::from_millis(350));
        assert_eq!((w.failed, w.sent), (2, 3));
        assert!(window(&samples, Duration::ZERO, "ap-south", 1).is_none());
    }

    #[test]
    fn a_dns_answer_is_read_past_compressed_names_and_cnames() {
        let mut packet = vec![0x12, 0x34, 0x81, 0x80, 0, 1, 0, 2, 0, 0, 0, 0];
        packet.extend_from_slice(&query(0x1234, "web.zone.test")[12..]);
        // A CNAME answer, then an A answer, both with a pointer to the question.
        packet.extend_from_slice(&[0xc0, 12, 0, 5, 0, 1, 0, 0, 0, 30, 0, 2, 0xc0, 12]);
        packet.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 5, 0, 4, 127, 0, 0, 11]);
        assert_eq!(
            parse_answers(&packet, 0x1234).unwrap(),
            [(Ipv4Addr::new(127, 0, 0, 11), 5)]
        );
        assert!(
            parse_answers(&packet, 0x9999).is_err(),
            "another query's answer"
        );
    }
}
