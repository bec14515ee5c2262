//! `ipc-bench run-all` and `ipc-bench soak`: every pair end to end, one result row each,
//! and many verified messages per mechanism, with nothing left behind.
//!
//! Their rows are not the bench's mechanism table: that table holds one configuration per
//! mechanism, sized by the bench, while these cover variants it does not measure (FIFO
//! and anonymous pipe, `run` and two processes, socketpair, mmap, pools, zero-copy, 1 MiB
//! messages in 64 KiB rounds) at fixed counts. They share its process runner.

use crate::run::{run_pair_within, summary, Side};
use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// How a row's pair is started.
enum How {
    /// `BIN run ARGS`: one command, the receiver its child.
    Run(&'static [&'static str]),
    /// Two processes: `BIN SEND_ARGS` and `RECV_BIN RECV_ARGS` (`RECV_BIN` defaults to
    /// `BIN`); `{port}` in an argument is a free loopback port.
    Pair {
        send: &'static [&'static str],
        recv: &'static [&'static str],
        recv_bin: Option<&'static str>,
    },
}

struct Row {
    mech: &'static str,
    variant: &'static str,
    bin: &'static str,
    how: How,
}

const fn run(
    mech: &'static str,
    variant: &'static str,
    bin: &'static str,
    args: &'static [&'static str],
) -> Row {
    Row {
        mech,
        variant,
        bin,
        how: How::Run(args),
    }
}

const fn pair(
    mech: &'static str,
    variant: &'static str,
    bin: &'static str,
    send: &'static [&'static str],
    recv: &'static [&'static str],
) -> Row {
    Row {
        mech,
        variant,
        bin,
        how: How::Pair {
            send,
            recv,
            recv_bin: None,
        },
    }
}

/// Producer and consumer of shared memory.
const fn shm(
    variant: &'static str,
    send: &'static [&'static str],
    recv: &'static [&'static str],
) -> Row {
    Row {
        mech: "shm",
        variant,
        bin: "shm-producer",
        how: How::Pair {
            send,
            recv,
            recv_bin: Some("shm-consumer"),
        },
    }
}

/// run-all's rows: add one for each new mechanism or variant.
#[rustfmt::skip]
const RUN_ALL: &[Row] = &[
    run("pipe", "anonymous, stream", "pipe-pair", &["-n", "20000", "-s", "4K"]),
    run("pipe", "anonymous, pingpong", "pipe-pair", &["--mode", "pingpong", "-n", "5000", "-s", "64"]),
    pair("pipe", "FIFO, stream", "pipe-pair", &["send", "-n", "20000", "-s", "4K"], &["recv"]),
    pair("pipe", "FIFO, pingpong", "pipe-pair", &["send", "--mode", "pingpong", "-n", "5000", "-s", "64"], &["recv"]),
    run("mq", "POSIX, stream", "mq-pair", &["--api", "posix", "-n", "20000", "-s", "4K"]),
    run("mq", "POSIX, pingpong", "mq-pair", &["--api", "posix", "--mode", "pingpong", "-n", "5000", "-s", "64"]),
    pair("mq", "POSIX, stream, 64K in parts", "mq-pair", &["send", "--api", "posix", "-n", "2000", "-s", "64K"], &["recv", "--api", "posix"]),
    run("mq", "SysV, stream", "mq-pair", &["--api", "sysv", "-n", "20000", "-s", "4K"]),
    run("mq", "SysV, pingpong", "mq-pair", &["--api", "sysv", "--mode", "pingpong", "-n", "5000", "-s", "64"]),
    pair("mq", "SysV, stream, 64K in parts", "mq-pair", &["send", "--api", "sysv", "-n", "2000", "-s", "64K"], &["recv", "--api", "sysv"]),
    shm("posix mutex, stream", &["--api", "posix", "--sync", "mutex", "-n", "20000", "-s", "4K"], &["--api", "posix"]),
    shm("posix sem, stream", &["--api", "posix", "--sync", "sem", "-n", "20000", "-s", "4K"], &["--api", "posix"]),
    shm("posix mq, stream", &["--api", "posix", "--sync", "mq", "-n", "20000", "-s", "4K"], &["--api", "posix"]),
    shm("posix spin, stream", &["--api", "posix", "--sync", "spin", "-n", "20000", "-s", "4K"], &["--api", "posix"]),
    shm("sysv mutex, stream", &["--api", "sysv", "--sync", "mutex", "-n", "20000", "-s", "4K"], &["--api", "sysv"]),
    shm("sysv sem, stream", &["--api", "sysv", "--sync", "sem", "-n", "20000", "-s", "4K"], &["--api", "sysv"]),
    shm("sysv mq, stream", &["--api", "sysv", "--sync", "mq", "-n", "20000", "-s", "4K"], &["--api", "sysv"]),
    shm("sysv spin, stream", &["--api", "sysv", "--sync", "spin", "-n", "20000", "-s", "4K"], &["--api", "sysv"]),
    shm("mmap mutex, stream", &["--api", "mmap", "--sync", "mutex", "-n", "20000", "-s", "4K"], &["--api", "mmap"]),
    shm("mmap spin, stream", &["--api", "mmap", "--sync", "spin", "-n", "20000", "-s", "4K"], &["--api", "mmap"]),
    shm("posix mutex, pingpong", &["--api", "posix", "--sync", "mutex", "--mode", "pingpong", "-n", "5000", "-s", "64"], &["--api", "posix"]),
    shm("posix sem, pingpong", &["--api", "posix", "--sync", "sem", "--mode", "pingpong", "-n", "5000", "-s", "64"], &["--api", "posix"]),
    shm("posix mq, pingpong", &["--api", "posix", "--sync", "mq", "--mode", "pingpong", "-n", "5000", "-s", "64"], &["--api", "posix"]),
    shm("posix spin, pingpong", &["--api", "posix", "--sync", "spin", "--mode", "pingpong", "-n", "5000", "-s", "64"], &["--api", "posix"]),
    shm("sysv mutex, pingpong", &["--api", "sysv", "--sync", "mutex", "--mode", "pingpong", "-n", "5000", "-s", "64"], &["--api", "sysv"]),
    shm("mmap spin, pingpong", &["--api", "mmap", "--sync", "spin", "--mode", "pingpong", "-n", "5000", "-s", "64"], &["--api", "mmap"]),
    shm("posix spin, zero-copy 64K", &["--sync", "spin", "--zero-copy", "--segment-size", "4M", "-n", "5000", "-s", "64K"], &[]),
    shm("posix pool of 4, stream", &["--segments", "4", "--segment-size", "68K", "-n", "5000", "-s", "64K"], &[]),
    shm("sysv pool of 4, pingpong", &["--api", "sysv", "--segments", "4", "--segment-size", "16K", "--mode", "pingpong", "-n", "2000", "-s", "64"], &["--api", "sysv"]),
    shm("posix mutex, 1M in 64K rounds", &["--segment-size", "64K", "-n", "500", "-s", "1M"], &[]),
    run("socket", "socketpair stream, stream", "socket-pair", &["-n", "20000", "-s", "4K"]),
    run("socket", "socketpair stream, pingpong", "socket-pair", &["--mode", "pingpong", "-n", "5000", "-s", "64"]),
    run("socket", "socketpair dgram, stream", "socket-pair", &["--type", "dgram", "-n", "20000", "-s", "4K"]),
    run("socket", "socketpair dgram, pingpong", "socket-pair", &["--type", "dgram", "--mode", "pingpong", "-n", "5000", "-s", "64"]),
    pair("socket", "unix stream, stream", "socket-pair", &["send", "-n", "20000", "-s", "4K"], &["recv"]),
    pair("socket", "unix stream, pingpong", "socket-pair", &["send", "--mode", "pingpong", "-n", "5000", "-s", "64"], &["recv"]),
    pair("socket", "unix dgram, stream", "socket-pair", &["send", "--type", "dgram", "-n", "20000", "-s", "4K"], &["recv", "--type", "dgram"]),
    pair("socket", "unix seqpacket, stream", "socket-pair", &["send", "--type", "seqpacket", "-n", "20000", "-s", "4K"], &["recv", "--type", "seqpacket"]),
    pair("socket", "unix seqpacket, pingpong", "socket-pair", &["send", "--type", "seqpacket", "--mode", "pingpong", "-n", "5000", "-s", "64"], &["recv", "--type", "seqpacket"]),
    pair("socket", "TCP loopback, stream", "socket-pair", &["send", "--tcp", "127.0.0.1:{port}", "-n", "20000", "-s", "4K"], &["recv", "--tcp", "127.0.0.1:{port}"]),
    pair("socket", "TCP loopback, pingpong", "socket-pair", &["send", "--tcp", "127.0.0.1:{port}", "--mode", "pingpong", "-n", "5000", "-s", "64"], &["recv", "--tcp", "127.0.0.1:{port}"]),
];

/// soak's rows. For a pair, the first side creates the object and the second attaches:
/// `send` is the receiver (or the producer) here, `recv` the other side.
#[rustfmt::skip]
const SOAK: &[Row] = &[
    run("pipe", "anonymous (run)", "pipe-pair", &[]),
    pair("pipe", "FIFO", "pipe-pair", &["recv"], &["send"]),
    pair("mq", "POSIX", "mq-pair", &["recv", "--api", "posix"], &["send", "--api", "posix"]),
    pair("mq", "SysV", "mq-pair", &["recv", "--api", "sysv"], &["send", "--api", "sysv"]),
    run("socket", "socketpair stream (run)", "socket-pair", &[]),
    pair("socket", "unix stream", "socket-pair", &["recv"], &["send"]),
    pair("socket", "unix dgram", "socket-pair", &["recv", "--type", "dgram"], &["send", "--type", "dgram"]),
    pair("socket", "unix seqpacket", "socket-pair", &["recv", "--type", "seqpacket"], &["send", "--type", "seqpacket"]),
    pair("socket", "TCP 127.0.0.1", "socket-pair", &["recv", "--tcp", "127.0.0.1:{port}"], &["send", "--tcp", "127.0.0.1:{port}"]),
    shm("POSIX, mutex", &["--api", "posix", "--sync", "mutex"], &["--api", "posix"]),
    shm("POSIX, sem", &["--api", "posix", "--sync", "sem"], &["--api", "posix"]),
    shm("POSIX, mq", &["--api", "posix", "--sync", "mq"], &["--api", "posix"]),
    shm("POSIX, spin", &["--api", "posix", "--sync", "spin"], &["--api", "posix"]),
    shm("SysV, mutex", &["--api", "sysv", "--sync", "mutex"], &["--api", "sysv"]),
    shm("pool of 3", &["--segments", "3", "--segment-size", "64K"], &[]),
];

/// Arguments with `{port}` replaced, and `--name NAME` unless the row is TCP (named by
/// its address).
fn expand(args: &[&str], port: u16, name: &str) -> (Vec<String>, Vec<String>) {
    let v: Vec<String> = args
        .iter()
        .map(|a| a.replace("{port}", &port.to_string()))
        .collect();
    let named = if args.contains(&"--tcp") {
        Vec::new()
    } else {
        vec!["--name".into(), name.into()]
    };
    (v, named)
}

fn command(bindir: &Path, bin: &str, parts: &[&[String]]) -> Command {
    let mut c = Command::new(bindir.join(bin));
    for p in parts {
        c.args(*p);
    }
    c
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn free_port() -> anyhow::Result<u16> {
    crate::free_port()
}

/// Durations as the table shows them.
fn fmt_ns(ns: Option<f64>) -> String {
    match ns {
        None => "-".into(),
        Some(ns) if ns >= 1e6 => format!("{:.2} ms", ns / 1e6),
        Some(ns) if ns >= 1e3 => format!("{:.1} µs", ns / 1e3),
        Some(ns) => format!("{ns:.0} ns"),
    }
}

/// Print without a newline, now: the row's name shows while it runs.
fn show(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

// ---------------------------------------------------------------------------------
// Leftovers.
// ---------------------------------------------------------------------------------

const MQUEUE_DIR: &str = "/dev/mqueue";

fn mqueue_mounted() -> bool {
    // MQUEUE_MAGIC of linux/magic.h.
    const MQUEUE_MAGIC: u32 = 0x1980_0202;
    nix::sys::statfs::statfs(MQUEUE_DIR)
        .is_ok_and(|s| u32::try_from(s.filesystem_type().0) == Ok(MQUEUE_MAGIC))
}

/// Does the POSIX queue `/NAME` exist? `mq_open` finds it without the mount; a queue we
/// may not open exists too.
fn queue_exists(qname: &str) -> anyhow::Result<bool> {
    use nix::mqueue::{mq_open, MQ_OFlag};
    match mq_open(
        qname,
        MQ_OFlag::O_RDONLY | MQ_OFlag::O_NONBLOCK,
        nix::sys::stat::Mode::empty(),
        None,
    ) {
        Ok(_) => Ok(true),
        Err(nix::errno::Errno::ENOENT) => Ok(false),
        Err(nix::errno::Errno::EACCES) => Ok(true),
        Err(e) => anyhow::bail!(
            "queue {qname}: mq_open(O_RDONLY) failed ({e}), so it cannot be checked for leftovers"
        ),
    }
}

/// What is left of a row named `name`, and of a `run` whose process was `run_pid`: names
/// in the temporary directory and /dev/shm, and POSIX queues (listed when /dev/mqueue is
/// mounted, else opened by every name the pairs derive from theirs). A place that cannot
/// be looked at is an error, never "nothing left".
fn leftovers(name: &str, run_pid: Option<u32>) -> anyhow::Result<Vec<String>> {
    let mut names = vec![name.to_string()];
    // `mq-pair run` without --name names its queue after its pid.
    names.extend(run_pid.map(|p| format!("ipc-mq-run-{p}")));
    let mounted = mqueue_mounted();
    let mut dirs = vec![std::env::temp_dir(), PathBuf::from("/dev/shm")];
    if mounted {
        dirs.push(MQUEUE_DIR.into());
    }
    let mut found = Vec::new();
    for dir in dirs {
        let entries = std::fs::read_dir(&dir).map_err(|e| {
            anyhow::anyhow!("cannot list {} to look for leftovers: {e}", dir.display())
        })?;
        for e in entries {
            let e = e.map_err(|e| anyhow::anyhow!("listing {}: {e}", dir.display()))?;
            let f = e.file_name().to_string_lossy().into_owned();
            if names.iter().any(|n| f.contains(n.as_str())) {
                found.push(e.path().display().to_string());
            }
        }
    }
    if !mounted {
        for n in &names {
            // The pair's queue, mq-pair's reply queue, the pool's free-id queue, and
            // --sync mq's ready/ok queues of up to two rings.
            let mut qs = vec![format!("/{n}"), format!("/{n}.reply"), format!("/{n}.free")];
            for ring in 0..2 {
                qs.push(format!("/{n}.r{ring}.ready"));
                qs.push(format!("/{n}.r{ring}.ok"));
            }
            for q in qs {
                if queue_exists(&q)? {
                    found.push(format!("POSIX queue {q}"));
                }
            }
        }
    }
    Ok(found)
}

/// Every SysV object, (kind, id), with the pids the kernel records for it (shm: creator
/// and last attach; msg: last send and receive; sem: none).
fn sysv_objects() -> anyhow::Result<BTreeMap<(&'static str, i64), Vec<u32>>> {
    let mut objs = BTreeMap::new();
    for (kind, pid_cols) in [("shm", &[4usize, 5][..]), ("msg", &[5, 6]), ("sem", &[])] {
        let path = format!("/proc/sysvipc/{kind}");
        let text = std::fs::read_to_string(&path)
            .map_err(|e| anyhow::anyhow!("cannot read {path} to look for leftovers: {e}"))?;
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if let Some(id) = f.get(1).and_then(|f| f.parse().ok()) {
                let pids = pid_cols
                    .iter()
                    .filter_map(|&c| f.get(c)?.parse().ok())
                    .filter(|&p| p != 0)
                    .collect();
                objs.insert((kind, id), pids);
            }
        }
    }
    Ok(objs)
}

/// SysV objects that appeared since `before` and are the row's: SysV objects have no
/// names, and other programs on the machine make them too, so one whose recorded pids
/// are all someone else's is not counted; one without pids (a semaphore set, an unused
/// queue) is.
fn sysv_new(
    before: &BTreeMap<(&'static str, i64), Vec<u32>>,
    row_pids: &[u32],
) -> anyhow::Result<Vec<String>> {
    Ok(sysv_objects()?
        .into_iter()
        .filter(|(k, pids)| {
            !before.contains_key(k)
                && (pids.is_empty() || pids.iter().any(|p| row_pids.contains(p)))
        })
        .map(|((kind, id), _)| format!("SysV {kind} id {id}"))
        .collect())
}

// ---------------------------------------------------------------------------------
// run-all.
// ---------------------------------------------------------------------------------

/// Longest one run-all row may take.
const RUN_ALL_WATCHDOG: Duration = Duration::from_secs(60);

/// Sides of one run-all row: `[sender]` for `run`, else `[receiver, sender]`.
fn run_all_row(bindir: &Path, row: &Row, name: &str) -> anyhow::Result<Vec<Side>> {
    let common = strings(&["--json", "--timeout", "10"]);
    match &row.how {
        How::Run(args) => {
            let c = command(
                bindir,
                row.bin,
                &[&strings(&["run"]), &strings(args), &common],
            );
            run_pair_within(None, c, RUN_ALL_WATCHDOG)
        }
        How::Pair {
            send,
            recv,
            recv_bin,
        } => {
            let port = free_port()?;
            let (send, named) = expand(send, port, name);
            let (recv, _) = expand(recv, port, name);
            let r = command(
                bindir,
                recv_bin.unwrap_or(row.bin),
                &[&recv, &named, &common],
            );
            let s = command(bindir, row.bin, &[&send, &named, &common]);
            run_pair_within(Some(r), s, RUN_ALL_WATCHDOG)
        }
    }
}

/// `ipc-bench run-all`: every row, one aligned result line each, then "N passed, N
/// failed"; false if any failed or left something behind.
pub fn run_all(bindir: &Path) -> anyhow::Result<bool> {
    let header = format!(
        "{:<10} {:<28} {:>9} {:>9} {:>10}  result",
        "mechanism", "variant", "messages", "MiB/s", "rtt p50"
    );
    println!("{header}");
    println!("{}", "-".repeat(header.chars().count()));
    let (mut passed, mut failed) = (0, 0);
    let mut left = Vec::new();
    for (i, row) in RUN_ALL.iter().enumerate() {
        show(&format!("{:<10} {:<28} ", row.mech, row.variant));
        if !bindir.join(row.bin).exists() {
            println!(
                "{:>9} {:>9} {:>10}  skipped ({} not built)",
                "", "", "", row.bin
            );
            continue;
        }
        let name = format!("ipc-runall-{}-{i}", std::process::id());
        let before = sysv_objects()?;
        let sides = run_all_row(bindir, row, &name)?;
        let codes: Vec<i32> = sides.iter().map(|s| s.code).collect();
        // The row's numbers: the summary with the latency (pingpong), else the receiver's.
        let summaries: Vec<serde_json::Value> = sides.iter().filter_map(summary).collect();
        let best = summaries
            .iter()
            .find(|v| v["p50_ns"].is_number())
            .or_else(|| summaries.iter().find(|v| v["role"] == "receiver"));
        let ok = codes.iter().all(|&c| c == 0)
            && best.is_some_and(|v| v["verified"] == serde_json::Value::Bool(true));
        match best.filter(|_| ok) {
            Some(v) => {
                passed += 1;
                println!(
                    "{:>9} {:>9.1} {:>10}  verified",
                    v["messages"].as_u64().unwrap_or(0),
                    v["mib_per_sec"].as_f64().unwrap_or(0.0),
                    fmt_ns(v["p50_ns"].as_f64())
                );
            }
            None => {
                failed += 1;
                let err: Vec<&str> = sides
                    .iter()
                    .filter_map(|s| s.stderr.trim().lines().last())
                    .collect();
                let err = if err.is_empty() {
                    "no summary".to_string()
                } else {
                    err.join(" | ")
                };
                println!(
                    "{:>9} {:>9} {:>10}  FAILED (exit {codes:?}): {err}",
                    "", "", ""
                );
            }
        }
        let run_pid = matches!(row.how, How::Run(_)).then(|| sides[0].pid);
        left.extend(leftovers(&name, run_pid)?);
        let pids: Vec<u32> = sides.iter().map(|s| s.pid).collect();
        left.extend(sysv_new(&before, &pids)?);
    }
    // Nothing may be left behind.
    if !left.is_empty() {
        failed += 1;
        for l in &left {
            println!("left behind: {l}");
        }
    }
    println!("\n{passed} passed, {failed} failed");
    Ok(failed == 0)
}

// ---------------------------------------------------------------------------------
// soak.
// ---------------------------------------------------------------------------------

#[derive(clap::Args, Debug)]
pub struct SoakArgs {
    /// Messages per mechanism
    #[arg(long, short = 'n', default_value = "10000000")]
    count: u64,
    /// Bytes per message
    #[arg(long, short = 's', default_value = "64", value_parser = ipc_common::args::parse_size)]
    size: usize,
    /// Only the rows whose mechanism or variant contains this
    #[arg(long, default_value = "")]
    only: String,
    /// Longest one row may take, in seconds, before it is killed
    #[arg(long, value_name = "SECS", default_value = "3600")]
    timeout: u64,
    /// Directory of the built binaries [default: this program's]
    #[arg(long, value_name = "DIR")]
    bin: Option<PathBuf>,
}

impl SoakArgs {
    pub fn bin(&self) -> Option<&Path> {
        self.bin.as_deref()
    }
}

/// What one soak row did.
struct Soaked {
    code: i32,
    /// The checking side's summary.
    summary: Option<serde_json::Value>,
    /// Both sides' stderr.
    stderr: String,
    /// The process of a `run` row.
    run_pid: Option<u32>,
    pids: Vec<u32>,
}

fn soak_row(bindir: &Path, row: &Row, name: &str, a: &SoakArgs) -> anyhow::Result<Soaked> {
    let flow = strings(&["-n", &a.count.to_string(), "-s", &a.size.to_string()]);
    let common = strings(&["--timeout", "30"]);
    let json = strings(&["--json"]);
    let limit = Duration::from_secs(a.timeout);
    let (sides, receiver, run_pid) = match &row.how {
        How::Run(args) => {
            let c = command(
                bindir,
                row.bin,
                &[&strings(&["run"]), &strings(args), &flow, &json, &common],
            );
            let sides = run_pair_within(None, c, limit)?;
            let pid = sides[0].pid;
            (sides, 0, Some(pid))
        }
        How::Pair {
            send: first,
            recv: second,
            recv_bin,
        } => {
            let port = free_port()?;
            let (first, named) = expand(first, port, name);
            let (second, _) = expand(second, port, name);
            // The first side creates the object; the receiver prints the summary: the
            // first of a pipe, queue or socket pair, the consumer (second) of shm.
            let (a_cmd, b_cmd, receiver) = match recv_bin {
                Some(consumer) => (
                    command(bindir, row.bin, &[&first, &flow, &named, &common]),
                    command(bindir, consumer, &[&second, &named, &json, &common]),
                    1,
                ),
                None => (
                    command(bindir, row.bin, &[&first, &named, &json, &common]),
                    command(bindir, row.bin, &[&second, &flow, &named, &common]),
                    0,
                ),
            };
            (run_pair_within(Some(a_cmd), b_cmd, limit)?, receiver, None)
        }
    };
    Ok(Soaked {
        code: sides.iter().map(|s| s.code).find(|&c| c != 0).unwrap_or(0),
        summary: summary(&sides[receiver]),
        stderr: sides.iter().map(|s| s.stderr.as_str()).collect(),
        run_pid,
        pids: sides.iter().map(|s| s.pid).collect(),
    })
}

/// `ipc-bench soak`: `--count` messages per mechanism, every one checked; a row passes
/// when all arrived verified and nothing was left behind.
pub fn soak(bindir: &Path, a: &SoakArgs) -> anyhow::Result<bool> {
    let only = a.only.to_lowercase();
    let rows: Vec<(usize, &Row)> = SOAK
        .iter()
        .enumerate()
        .filter(|(_, r)| {
            format!("{} {}", r.mech, r.variant)
                .to_lowercase()
                .contains(&only)
        })
        .collect();
    let head = format!(
        "{:<7} {:<24} {:>11} {:>6} {:>6} {:>6} {:>9} {:>8}  result",
        "mech", "variant", "messages", "lost", "dup", "corr", "seconds", "leftover"
    );
    println!("{head}");
    println!("{}", "-".repeat(head.chars().count()));
    let mut failed = 0;
    for &(i, row) in &rows {
        show(&format!("{:<7} {:<24} ", row.mech, row.variant));
        let name = format!("ipc-soak-{}-{i}", std::process::id());
        let before = sysv_objects()?;
        let t0 = Instant::now();
        let Soaked {
            code,
            summary: v,
            stderr: err,
            run_pid,
            pids,
        } = soak_row(bindir, row, &name, a)?;
        let secs = t0.elapsed().as_secs_f64();
        // The last side's cleanup may finish just after the other side's exit.
        std::thread::sleep(Duration::from_millis(200));
        let mut left = leftovers(&name, run_pid)?;
        left.extend(sysv_new(&before, &pids)?);
        let v = v.unwrap_or(serde_json::Value::Null);
        let ok = code == 0
            && v["verified"] == serde_json::Value::Bool(true)
            && v["received"].as_u64() == Some(a.count)
            && left.is_empty();
        if !ok {
            failed += 1;
        }
        let f = |k: &str| match &v[k] {
            serde_json::Value::Null => "-".to_string(),
            x => x.to_string(),
        };
        println!(
            "{:>11} {:>6} {:>6} {:>6} {secs:>9.1} {:>8}  {}",
            f("received"),
            f("lost"),
            f("duplicated"),
            f("corrupted"),
            left.len(),
            if ok {
                "verified".to_string()
            } else {
                format!("FAILED (exit {code})")
            }
        );
        if !ok {
            let tail = err
                .char_indices()
                .rev()
                .nth(1999)
                .map_or(err.as_str(), |(at, _)| &err[at..]);
            eprint!("{tail}");
            if !left.is_empty() {
                eprintln!("\nleft behind: {}", left.join(", "));
            }
        }
    }
    println!("\n{} passed, {failed} failed", rows.len() - failed);
    Ok(failed == 0)
}
