//! Starting and stopping the control-plane processes.
//!
//! Every component runs in its own process group with its output in one log
//! file. Processes are tracked by pid in the state file, so a later
//! `localregions down` in another process can stop what `up` started.

use std::fs::OpenOptions;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitPidFlag, waitpid};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

/// How to start one component again, and the process currently running it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Component {
    /// Short name used in logs and messages, e.g. `us-east/kube-apiserver`.
    pub name: String,
    pub program: PathBuf,
    pub args: Vec<String>,
    /// Environment variables set for it (on top of this process's).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub env: std::collections::BTreeMap<String, String>,
    pub log: PathBuf,
    /// Pid of the running process, if any.
    pub pid: Option<i32>,
    /// The network namespace (`/run/netns/NAME`) it runs in: a region's, in
    /// a spread hub. The host's when `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netns: Option<String>,
    /// The user and group (uid, gid) it runs as; this process's when
    /// `None`. PostgreSQL refuses to run as root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_as: Option<(u32, u32)>,
}

impl Component {
    /// Starts the component detached from the caller's process group, so a
    /// Ctrl-C in the terminal that ran `up` does not reach it.
    pub fn start(&mut self) -> Result<()> {
        if let Some(parent) = self.log.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .with_context(|| format!("opening log {}", self.log.display()))?;
        let mut command = match &self.netns {
            Some(name) => command_in_namespace(name, &self.program),
            None => Command::new(&self.program),
        };
        command
            .args(&self.args)
            .envs(&self.env)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0);
        if let Some((uid, gid)) = self.run_as {
            command.uid(uid).gid(gid);
        }
        let child = command
            .spawn()
            .with_context(|| format!("starting {} ({})", self.name, self.program.display()))?;
        self.pid = Some(child.id() as i32);
        // The Child handle is dropped on purpose: the process outlives us when
        // `up` runs as a command; `stop` reaps it when we are its parent.
        Ok(())
    }

    /// True when the recorded process is still running this component's program.
    pub fn is_running(&self) -> bool {
        self.pid.is_some_and(|pid| self.runs_as(pid))
    }

    /// The process `pid` is this component: its program, or (for a moment
    /// after the start) the `ip netns exec` that becomes it.
    fn runs_as(&self, pid: i32) -> bool {
        running_program(pid, &self.program)
            || (self.netns.is_some() && running_program(pid, Path::new("ip")))
    }

    /// Asks the component to shut down (SIGTERM) and returns at once: it
    /// goes at its own pace (an API server answers `/readyz` with 500 for
    /// its shutdown delay, still serving, then exits).
    pub fn terminate(&mut self) {
        if let Some(pid) = self.pid.filter(|&pid| self.runs_as(pid)) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
    }

    /// Stops the component: SIGTERM and a grace period, or SIGKILL at once.
    pub fn stop(&mut self, grace: Duration) {
        let Some(pid) = self.pid.take() else { return };
        if !self.runs_as(pid) {
            reap(pid);
            return;
        }
        let signal = if grace.is_zero() {
            Signal::SIGKILL
        } else {
            Signal::SIGTERM
        };
        if grace.is_zero() {
            // The whole group: a server's children (PostgreSQL's backends)
            // go with it, as they do when a machine fails. A graceful stop
            // signals the leader alone, which stops its children in order.
            let _ = nix::sys::signal::killpg(Pid::from_raw(pid), signal);
        }
        let _ = kill(Pid::from_raw(pid), signal);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline && alive(pid) {
            reap(pid);
            std::thread::sleep(Duration::from_millis(50));
        }
        if alive(pid) {
            let _ = nix::sys::signal::killpg(Pid::from_raw(pid), Signal::SIGKILL);
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            let hard = Instant::now() + Duration::from_secs(5);
            while Instant::now() < hard && alive(pid) {
                reap(pid);
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        reap(pid);
    }

    /// The last `lines` lines of the component's log.
    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.log, lines)
    }
}

/// A command running `program` in the network namespace `/run/netns/NAME`
/// (through `ip netns exec`, which enters it and then executes `program`
/// in the same process: the pid is the program's).
pub fn command_in_namespace(name: &str, program: &Path) -> Command {
    let mut command = Command::new("ip");
    command.args(["netns", "exec", name]).arg(program);
    command
}

/// The start time of a process (clock ticks since boot): with its pid, it
/// names the process even after its pid is reused.
pub fn start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    // Field 22 of stat; the first after the command name is field 3.
    fields.get(19)?.parse().ok()
}

/// Reaps the process if it is our child and has exited (no-op otherwise).
fn reap(pid: i32) {
    let _ = waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG));
}

/// Alive and not a zombie.
fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            // Field 3 is the state; the command name before it is in parentheses.
            let state = stat
                .rsplit(')')
                .next()
                .and_then(|rest| rest.split_whitespace().next());
            !matches!(state, Some("Z") | Some("X") | None)
        }
        Err(_) => false,
    }
}

/// Alive and still the program we started (pids are reused).
fn running_program(pid: i32, program: &Path) -> bool {
    if !alive(pid) {
        return false;
    }
    let Ok(exe) = std::fs::read_link(format!("/proc/{pid}/exe")) else {
        return false;
    };
    let name = |p: &Path| p.file_name().map(|n| n.to_owned());
    name(&exe) == name(program)
}

pub fn tail(path: &Path, lines: usize) -> String {
    let Ok(text) = std::fs::read_to_string(path) else {
        return String::new();
    };
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A free TCP port on 127.0.0.1 (bound and released at once), taken from
/// below the kernel's ephemeral range: a port the OS hands out (`:0`) is
/// from that range, where any outgoing connection may take it between our
/// check and the component's bind ("address already in use"). Each call
/// in a process moves on to the next port, from a start that differs by
/// process.
pub fn free_port() -> Result<u16> {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let (low, high) = below_ephemeral();
    let span = u32::from(high - low) + 1;
    let start = std::process::id().wrapping_mul(7919) % span;
    for _ in 0..span.min(4096) {
        let step = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let port = low + ((start + step) % span) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// Ports no outgoing connection uses: from 10000 up to the start of
/// `ip_local_port_range` (10000..=32767 when it cannot be read).
fn below_ephemeral() -> (u16, u16) {
    let start = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| text.split_whitespace().next()?.parse::<u16>().ok())
        .filter(|&start| start > 11_000)
        .unwrap_or(32_768);
    (10_000, start - 1)
}

#[cfg(test)]
mod port_tests {
    #[test]
    fn free_ports_are_distinct_bindable_and_outside_the_ephemeral_range() {
        let ports: Vec<u16> = (0..50).map(|_| super::free_port().unwrap()).collect();
        let mut unique = ports.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), ports.len(), "{ports:?}");
        let (low, high) = super::below_ephemeral();
        assert!(ports.iter().all(|p| (low..=high).contains(p)), "{ports:?}");
        assert!(std::net::TcpListener::bind(("127.0.0.1", ports[0])).is_ok());
    }
}
