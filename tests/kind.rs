//! The kind walkthrough, for real: `kind-config/walkthrough.sh up`, `failover`,
//! `recover` and `down` on three kind clusters built on this machine (every
//! image made by `kind-config/images.sh`, nothing pulled), with the operator
//! running in the hub as a pod of the Helm chart.
//!
//! Between the steps it checks what a user would: the app's roles, weights
//! and replicas from `kubectl get mra -o json`, and the region that answers
//! HTTP on the host ports the clusters map to 127.0.0.1 (us-east 30081,
//! eu-west 30082). Whatever happens, a guard runs `walkthrough.sh down`.
//!
//! It takes minutes and needs Docker, Go and the network to the package
//! registries on a cold cache, so it is its own CI step:
//! `cargo test --test kind`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use serde_json::Value;

const REPO: &str = env!("CARGO_MANIFEST_DIR");
const US_EAST_PORT: u16 = 30081;
const EU_WEST_PORT: u16 = 30082;
/// Each wait on a condition gives up after this long.
const DEADLINE: Duration = Duration::from_secs(240);

/// The walkthrough, with its contexts in a kubeconfig of the test's own.
struct Walkthrough {
    kubeconfig: PathBuf,
}

impl Walkthrough {
    fn new() -> Self {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("kind");
        std::fs::create_dir_all(&dir).expect("a directory for the kubeconfig");
        Walkthrough {
            kubeconfig: dir.join("kubeconfig"),
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("bash");
        cmd.arg(Path::new(REPO).join("kind-config/walkthrough.sh"))
            .args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .env("MULTIREGION_BIN", env!("CARGO_BIN_EXE_multiregion"))
            .current_dir(REPO);
        cmd
    }

    /// Runs a step with its output shown as it comes; panics if it fails.
    fn step(&self, step: &str) {
        let started = Instant::now();
        let status = self
            .command(&[step])
            .stdin(Stdio::null())
            .status()
            .unwrap_or_else(|e| panic!("walkthrough.sh {step}: {e}"));
        assert!(status.success(), "walkthrough.sh {step} failed: {status}");
        eprintln!(
            "walkthrough.sh {step}: {:.0}s",
            started.elapsed().as_secs_f64()
        );
    }

    /// `kubectl -o json` through the walkthrough (the clusters' kubectl).
    fn kubectl_json(&self, args: &[&str]) -> Result<Value, String> {
        let mut all = vec!["kubectl"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["-o", "json"]);
        let out = self
            .command(&all)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())
    }

    fn app(&self) -> Result<App, String> {
        self.kubectl_json(&["--context", "kind-hub", "-n", "shop", "get", "mra", "hello"])
            .map(App)
    }
}

/// Whatever happens, the clusters go (and the Docker engine, if the
/// walkthrough started it).
struct Down<'a>(&'a Walkthrough);

impl Drop for Down<'_> {
    fn drop(&mut self) {
        let status = self.0.command(&["down"]).stdin(Stdio::null()).status();
        eprintln!("walkthrough.sh down: {status:?}");
    }
}

/// The MultiRegionApp as `kubectl get mra -o json` shows it.
struct App(Value);

/// One region of the app's status.
#[derive(Debug, PartialEq)]
struct RegionStatus {
    role: String,
    health: String,
    weight: i64,
    desired: i64,
    ready: i64,
}

impl App {
    fn active(&self) -> &str {
        self.0["status"]["activeRegion"].as_str().unwrap_or("")
    }

    fn weights(&self) -> &str {
        self.0["status"]["weights"].as_str().unwrap_or("")
    }

    fn region(&self, name: &str) -> Option<RegionStatus> {
        let r = self.0["status"]["regions"]
            .as_array()?
            .iter()
            .find(|r| r["name"] == name)?;
        Some(RegionStatus {
            role: r["role"].as_str().unwrap_or("").to_string(),
            health: r["health"].as_str().unwrap_or("").to_string(),
            weight: r["weight"].as_i64().unwrap_or(-1),
            desired: r["desiredReplicas"].as_i64().unwrap_or(-1),
            ready: r["readyReplicas"].as_i64().unwrap_or(-1),
        })
    }

    fn summary(&self) -> String {
        let regions: Vec<String> = ["us-east", "eu-west"]
            .iter()
            .map(|r| format!("{r}: {:?}", self.region(r)))
            .collect();
        format!(
            "active={} weights=[{}] {}",
            self.active(),
            self.weights(),
            regions.join(", ")
        )
    }
}

fn region(role: &str, health: &str, weight: i64, replicas: i64) -> RegionStatus {
    RegionStatus {
        role: role.into(),
        health: health.into(),
        weight,
        desired: replicas,
        ready: replicas,
    }
}

/// Polls the app until `check` passes; panics with the last state at the deadline.
fn wait_for_app(w: &Walkthrough, what: &str, check: impl Fn(&App) -> bool) -> App {
    let start = Instant::now();
    loop {
        let last = match w.app() {
            Ok(app) if check(&app) => {
                eprintln!("{what}: after {:.0}s", start.elapsed().as_secs_f64());
                return app;
            }
            Ok(app) => app.summary(),
            Err(e) => e,
        };
        assert!(
            start.elapsed() < DEADLINE,
            "{what}: not within {DEADLINE:?}; last seen: {last}"
        );
        sleep(Duration::from_secs(1));
    }
}

/// A GET of http://127.0.0.1:PORT/PATH: the status code and the body.
fn http_get(port: u16, path: &str) -> Result<(u16, String), String> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut conn =
        TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map_err(|e| e.to_string())?;
    conn.set_read_timeout(Some(Duration::from_secs(3)))
        .map_err(|e| e.to_string())?;
    write!(
        conn,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut raw = String::new();
    conn.read_to_string(&mut raw).map_err(|e| e.to_string())?;
    let (head, body) = raw.split_once("\r\n\r\n").ok_or("no end of headers")?;
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("no status line in {head:?}"))?;
    Ok((code, body.trim().to_string()))
}

/// Polls http://127.0.0.1:PORT/ until it answers 200 with `region` and
/// its `/healthz` answers 200 right after. (Just after a fence the
/// NodePort may still send a connection to a pod being scaled down, which
/// resets it: that pod is going, so the next poll asks again.)
fn wait_for_answer(port: u16, region: &str) {
    let start = Instant::now();
    loop {
        let got = http_get(port, "/");
        let health = match &got {
            Ok((200, body)) if body == region => http_get(port, "/healthz"),
            _ => Err("not asked: / did not answer".into()),
        };
        if matches!(health, Ok((200, _))) {
            eprintln!("127.0.0.1:{port} answers {region:?}");
            return;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "127.0.0.1:{port} did not answer {region:?} within {DEADLINE:?}: / {got:?}, /healthz {health:?}"
        );
        sleep(Duration::from_millis(500));
    }
}

#[test]
fn the_kind_walkthrough_fails_over_and_comes_back_fenced() {
    let w = Walkthrough::new();
    let _down = Down(&w);

    w.step("up");
    let app = wait_for_app(&w, "us-east active, eu-west warm standby", |a| {
        a.active() == "us-east"
            && a.weights() == "us-east=100 eu-west=0"
            && a.region("us-east") == Some(region("Active", "Healthy", 100, 2))
            && a.region("eu-west") == Some(region("Standby", "Healthy", 0, 1))
    });
    eprintln!("{}", app.summary());
    wait_for_answer(US_EAST_PORT, "us-east");
    wait_for_answer(EU_WEST_PORT, "eu-west");

    w.step("failover");
    let app = wait_for_app(&w, "traffic on eu-west", |a| {
        a.active() == "eu-west"
            && a.weights() == "us-east=0 eu-west=100"
            && a.region("eu-west") == Some(region("Active", "Healthy", 100, 2))
            && a.region("us-east")
                .is_some_and(|r| r.health == "Unhealthy" && r.weight == 0)
    });
    eprintln!("{}", app.summary());
    wait_for_answer(EU_WEST_PORT, "eu-west");
    assert!(
        http_get(US_EAST_PORT, "/").is_err(),
        "us-east's node is stopped: nothing answers on {US_EAST_PORT}"
    );

    w.step("recover");
    let app = wait_for_app(&w, "us-east back, fenced as a Standby", |a| {
        a.active() == "eu-west"
            && a.weights() == "us-east=0 eu-west=100"
            && a.region("us-east") == Some(region("Standby", "Healthy", 0, 1))
            && a.region("eu-west") == Some(region("Active", "Healthy", 100, 2))
    });
    eprintln!("{}", app.summary());
    wait_for_answer(EU_WEST_PORT, "eu-west");
    wait_for_answer(US_EAST_PORT, "us-east");

    w.step("down");
    let clusters = Command::new("docker")
        .args(["ps", "-aq", "--filter", "label=io.x-k8s.kind.cluster"])
        .output();
    // (when `down` stopped the Docker engine it started, there is nothing to ask)
    if let Ok(out) = clusters
        && out.status.success()
    {
        assert!(
            out.stdout.is_empty(),
            "kind node containers are left: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
}
