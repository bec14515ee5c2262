//! Running one pair: start both sides, reap each with `wait4` for its CPU time and peak
//! RSS, and read the summary the pair printed with `--json`.

use ipc_sys::bench::{try_reap, Reaped};
use serde::Serialize;
use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Longest one run may take before the bench kills it.
pub const WATCHDOG: Duration = Duration::from_secs(90);

/// One process of a run, as the bench saw it end.
#[derive(Clone, Debug, Serialize)]
pub struct Side {
    #[serde(skip)]
    pub pid: u32,
    pub code: i32,
    /// User + system CPU seconds.
    pub cpu_s: f64,
    /// Wall seconds from spawn to exit.
    pub wall_s: f64,
    pub max_rss_kib: u64,
    #[serde(skip)]
    pub stdout: String,
    #[serde(skip)]
    pub stderr: String,
}

struct Running {
    child: Child,
    started: Instant,
    ended: Option<(Reaped, Instant)>,
    /// Readers of stdout and stderr: drained as the process runs, so a chatty side
    /// cannot block on a full pipe until the watchdog.
    out: std::thread::JoinHandle<String>,
    err: std::thread::JoinHandle<String>,
}

fn drain<R: Read + Send + 'static>(r: Option<R>) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut r) = r {
            let _ = r.read_to_end(&mut buf);
        }
        String::from_utf8_lossy(&buf).into_owned()
    })
}

fn spawn(mut c: Command) -> anyhow::Result<Running> {
    c.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let started = Instant::now();
    let mut child = c
        .spawn()
        .map_err(|e| anyhow::anyhow!("cannot start {c:?}: {e}"))?;
    let out = drain(child.stdout.take());
    let err = drain(child.stderr.take());
    Ok(Running {
        child,
        started,
        ended: None,
        out,
        err,
    })
}

/// Start `first` (the receiver, which waits for its peer), then `second`; wait for both
/// under the watchdog.
pub fn run_pair(first: Option<Command>, second: Command) -> anyhow::Result<Vec<Side>> {
    run_pair_within(first, second, WATCHDOG)
}

/// [`run_pair`] with a watchdog of `limit`: a side still running then is killed.
pub fn run_pair_within(
    first: Option<Command>,
    second: Command,
    limit: Duration,
) -> anyhow::Result<Vec<Side>> {
    let mut procs = Vec::new();
    if let Some(c) = first {
        procs.push(spawn(c)?);
    }
    procs.push(spawn(second)?);
    let deadline = Instant::now() + limit;
    let mut killed = false;
    loop {
        for p in procs.iter_mut().filter(|p| p.ended.is_none()) {
            if let Some(r) = try_reap(p.child.id())? {
                p.ended = Some((r, Instant::now()));
            }
        }
        if procs.iter().all(|p| p.ended.is_some()) {
            break;
        }
        if Instant::now() > deadline && !killed {
            for p in procs.iter().filter(|p| p.ended.is_none()) {
                let pid = nix::unistd::Pid::from_raw(p.child.id() as i32);
                let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            }
            killed = true;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    Ok(procs
        .into_iter()
        .map(|p| {
            let (r, at) = p.ended.expect("reaped above");
            // A `run` child outliving its killed parent holds the pipes open until its
            // own --timeout ends it; the readers finish then.
            let stdout = p.out.join().unwrap_or_default();
            let mut stderr = p.err.join().unwrap_or_default();
            if killed && stderr.is_empty() {
                stderr = format!("killed by the bench after {} s", limit.as_secs());
            }
            Side {
                pid: p.child.id(),
                code: r.code,
                cpu_s: (r.user + r.system).as_secs_f64(),
                wall_s: at.duration_since(p.started).as_secs_f64(),
                max_rss_kib: r.max_rss_kib,
                stdout,
                stderr,
            }
        })
        .collect())
}

/// The last JSON object a side printed.
pub fn summary(side: &Side) -> Option<serde_json::Value> {
    side.stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v.is_object())
}

/// The first line of what a failed side said, for the table.
pub fn complaint(sides: &[Side]) -> String {
    sides
        .iter()
        .filter(|s| s.code != 0)
        .map(|s| {
            let line = s
                .stderr
                .lines()
                .find(|l| l.contains("error"))
                .or_else(|| s.stderr.lines().next())
                .unwrap_or("");
            format!("exit {}: {}", s.code, line.trim())
        })
        .next()
        .unwrap_or_else(|| "no summary printed".into())
}
