//! ipc-bench: which IPC mechanism is faster? Every pair of the workspace runs as real
//! processes (the release binaries beside this one), across message sizes, in stream
//! and pingpong mode, next to hardware baselines measured in the same run. The answer
//! is a table, `results.json`, a markdown table and PNG plots.

mod baseline;
mod mechs;
mod output;
mod plot;
mod run;
mod suite;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use ipc_common::args::parse_size;
use ipc_common::report::human_bytes;
use mechs::{Job, Mech};
use run::{complaint, run_pair, summary, Side};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Instant;

const EXAMPLES: &str = "\
Examples:
  ipc-bench --quick                         a short pass (64 B and 64 KiB, one run each)
  ipc-bench                                 the full run (make bench): 64 B to 1 MiB, 3 runs each
  ipc-bench --mech shm,pipe --sizes 64,4K   only some mechanisms and sizes
  ipc-bench --list                          the mechanisms and what they are
  ipc-bench run-all                         every pair end to end, one row each (make run-all)
  ipc-bench soak --count 1000000 --only shm many verified messages per mechanism (make soak)";

#[derive(Parser)]
#[command(
    name = "ipc-bench",
    version,
    about = "Which IPC mechanism is faster? Runs every pair as real processes across sizes, next to hardware baselines",
    after_help = EXAMPLES,
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    cmd: Option<Cmd>,
    #[command(flatten)]
    opts: Opts,
}

#[derive(Subcommand)]
enum Cmd {
    /// Every pair of the workspace end to end, one result row each; exit 1 if any failed
    /// or left an IPC object behind
    RunAll {
        /// Directory of the built binaries [default: this program's]
        #[arg(long, value_name = "DIR")]
        bin: Option<PathBuf>,
    },
    /// Many messages per mechanism (default 10 million of 64 bytes), every one checked,
    /// and what each row left behind; exit 1 if any row failed. Takes minutes
    Soak(suite::SoakArgs),
    /// Internal: one side of a baseline measurement.
    #[command(hide = true)]
    BaselineChild(baseline::ChildArgs),
}

#[derive(clap::Args, Debug)]
struct Opts {
    /// A short pass: 64 B and 64 KiB, one run each, short runs (under a minute)
    #[arg(long)]
    quick: bool,
    /// Runs of each configuration; the tables show medians [default: 3, --quick 1]
    #[arg(long, value_name = "K")]
    runs: Option<usize>,
    /// Message sizes [default: 64,1K,4K,64K,1M; --quick 64,64K]
    #[arg(long, value_delimiter = ',', value_parser = parse_size)]
    sizes: Vec<usize>,
    /// Mechanisms to run: ids or prefixes (`shm` is every shm-* row) [default: all]
    #[arg(long, value_delimiter = ',')]
    mech: Vec<String>,
    /// Modes to run [default: both]
    #[arg(long, value_delimiter = ',', value_enum)]
    mode: Vec<ipc_common::Mode>,
    /// Payload seed passed to every pair
    #[arg(long, default_value = "1")]
    seed: u64,
    /// Where results.json, results.md and the plots go
    #[arg(long, default_value = "bench-results")]
    out: PathBuf,
    /// Skip the peak-RSS check (the consumer at 1x and 10x the messages)
    #[arg(long)]
    no_rss: bool,
    /// List the mechanisms and exit
    #[arg(long)]
    list: bool,
}

/// One measured run, from the summaries and from wait4.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Sample {
    pub messages: f64,
    pub seconds: f64,
    pub msgs_per_sec: f64,
    pub mib_per_sec: f64,
    pub p50_ns: Option<f64>,
    pub p99_ns: Option<f64>,
    pub p999_ns: Option<f64>,
    pub max_ns: Option<f64>,
    /// CPU seconds of the sender (of both sides for a `run` mechanism).
    pub cpu_send_s: f64,
    /// CPU seconds of the receiver; `None` when it is inside `run`'s sender.
    pub cpu_recv_s: Option<f64>,
    pub wall_send_s: f64,
    pub wall_recv_s: Option<f64>,
    pub rss_send_kib: f64,
    pub rss_recv_kib: Option<f64>,
}

impl Sample {
    /// CPU seconds per wall second, each side: 1.0 is a core kept busy.
    pub fn busy(&self) -> (f64, Option<f64>) {
        (
            self.cpu_send_s / self.wall_send_s.max(1e-9),
            self.cpu_recv_s
                .zip(self.wall_recv_s)
                .map(|(c, w)| c / w.max(1e-9)),
        )
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Cell {
    pub mech: String,
    pub size: usize,
    pub mode: &'static str,
    pub count: u64,
    pub runs: Vec<Sample>,
    /// Field by field median of the runs.
    pub median: Option<Sample>,
    /// Why there is no result (a limit of the mechanism, or a failure).
    pub error: Option<String>,
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        0.0
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn median_of(runs: &[Sample]) -> Option<Sample> {
    if runs.is_empty() {
        return None;
    }
    let m = |f: &dyn Fn(&Sample) -> f64| median(&mut runs.iter().map(f).collect::<Vec<_>>());
    let mo = |f: &dyn Fn(&Sample) -> Option<f64>| {
        let mut v: Vec<f64> = runs.iter().filter_map(f).collect();
        (!v.is_empty()).then(|| median(&mut v))
    };
    Some(Sample {
        messages: m(&|s| s.messages),
        seconds: m(&|s| s.seconds),
        msgs_per_sec: m(&|s| s.msgs_per_sec),
        mib_per_sec: m(&|s| s.mib_per_sec),
        p50_ns: mo(&|s| s.p50_ns),
        p99_ns: mo(&|s| s.p99_ns),
        p999_ns: mo(&|s| s.p999_ns),
        max_ns: mo(&|s| s.max_ns),
        cpu_send_s: m(&|s| s.cpu_send_s),
        cpu_recv_s: mo(&|s| s.cpu_recv_s),
        wall_send_s: m(&|s| s.wall_send_s),
        wall_recv_s: mo(&|s| s.wall_recv_s),
        rss_send_kib: m(&|s| s.rss_send_kib),
        rss_recv_kib: mo(&|s| s.rss_recv_kib),
    })
}

/// The run's settings, fixed by `--quick` or not.
struct Plan {
    quick: bool,
    runs: usize,
    sizes: Vec<usize>,
    mechs: Vec<Mech>,
    stream: bool,
    pingpong: bool,
    seed: u64,
    cpus: Option<(usize, usize)>,
    bindir: PathBuf,
    exe: PathBuf,
}

impl Plan {
    /// Seconds one measured run aims at (the count is calibrated by the warm-up).
    fn target_secs(&self) -> f64 {
        if self.quick {
            0.06
        } else {
            0.3
        }
    }

    fn warm_count(&self, size: usize, pingpong: bool) -> u64 {
        let (budget, lo, hi) = if pingpong {
            (1u64 << 20, 20, 1000)
        } else {
            (4u64 << 20, 50, 20_000)
        };
        let c = (budget / size as u64).clamp(lo, hi);
        if self.quick {
            (c / 2).max(lo)
        } else {
            c
        }
    }

    /// (fewest, most) messages of a measured run. Pingpong wants at least a few
    /// thousand round trips for its p99.9 (with fewer, p99.9 is close to the maximum),
    /// but not at the largest sizes, where each round trip moves megabytes.
    fn count_bounds(&self, size: usize, pingpong: bool) -> (u64, u64) {
        match (pingpong, self.quick) {
            (true, true) => (200, 50_000),
            (true, false) if size >= 256 << 10 => (300, 300_000),
            (true, false) => (2000, 300_000),
            (false, true) => (100, 2_000_000),
            (false, false) => (200, 8_000_000),
        }
    }
}

static RUN_COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// A name no other run uses: `ipc-bench-<pid>-<n>`.
fn fresh_name() -> String {
    format!(
        "ipc-bench-{}-{}",
        std::process::id(),
        RUN_COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    )
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// One run of `mech`: the sample, or why there is none.
fn run_once(
    plan: &Plan,
    mech: &Mech,
    size: usize,
    pingpong: bool,
    count: u64,
) -> anyhow::Result<Result<Sample, String>> {
    let name = fresh_name();
    let job = Job {
        size,
        pingpong,
        count,
        seed: plan.seed,
        name: &name,
        cpus: plan.cpus,
    };
    let cmds = mech.commands(&plan.bindir, &job, free_port()?);
    let sides = run_pair(cmds.receiver, cmds.sender)?;
    // run_pair returns [receiver, sender] for two processes, [sender] for `run`.
    let (send, recv): (&Side, Option<&Side>) = match sides.as_slice() {
        [s] => (s, None),
        [r, s] => (s, Some(r)),
        _ => unreachable!("one or two processes"),
    };
    if sides.iter().any(|s| s.code != 0) {
        return Ok(Err(complaint(&sides)));
    }
    // The checking side's summary: the receiver's in stream mode (`run` prints the
    // child's), the sender's in pingpong (it holds the round trips and checks echoes).
    let report = if pingpong || recv.is_none() {
        summary(send)
    } else {
        recv.and_then(summary)
    };
    let Some(v) = report else {
        return Ok(Err(complaint(&sides)));
    };
    if v["verified"] != serde_json::Value::Bool(true) || v["messages"].as_u64() != Some(count) {
        return Ok(Err(format!("not verified: {v}")));
    }
    let f = |k: &str| v[k].as_f64();
    Ok(Ok(Sample {
        messages: f("messages").unwrap_or(0.0),
        seconds: f("seconds").unwrap_or(0.0),
        msgs_per_sec: f("msgs_per_sec").unwrap_or(0.0),
        mib_per_sec: f("mib_per_sec").unwrap_or(0.0),
        p50_ns: f("p50_ns"),
        p99_ns: f("p99_ns"),
        p999_ns: f("p999_ns"),
        max_ns: f("max_ns"),
        cpu_send_s: send.cpu_s,
        cpu_recv_s: recv.map(|r| r.cpu_s),
        wall_send_s: send.wall_s,
        wall_recv_s: recv.map(|r| r.wall_s),
        rss_send_kib: send.max_rss_kib as f64,
        rss_recv_kib: recv.map(|r| r.max_rss_kib as f64),
    }))
}

/// Warm up and calibrate the count from the warm-up's rate; the measured runs come
/// later, in rounds over every cell (see `bench`).
fn calibrate_cell(plan: &Plan, mech: &Mech, size: usize, pingpong: bool) -> anyhow::Result<Cell> {
    let mode = if pingpong { "pingpong" } else { "stream" };
    let mut cell = Cell {
        mech: mech.id.to_string(),
        size,
        mode,
        count: 0,
        runs: Vec::new(),
        median: None,
        error: None,
    };
    if pingpong && mech.stream_only {
        cell.error = Some("stream only (--zero-copy refuses pingpong)".into());
        return Ok(cell);
    }
    let warm = plan.warm_count(size, pingpong);
    let rate = match run_once(plan, mech, size, pingpong, warm)? {
        Ok(s) => s.msgs_per_sec,
        Err(e) => {
            cell.error = Some(e);
            return Ok(cell);
        }
    };
    let (lo, hi) = plan.count_bounds(size, pingpong);
    cell.count = ((rate * plan.target_secs()) as u64).clamp(lo, hi);
    Ok(cell)
}

/// One measured run of a calibrated cell; a failure ends the cell's runs.
fn measure_round(plan: &Plan, mech: &Mech, cell: &mut Cell) -> anyhow::Result<()> {
    if cell.error.is_some() {
        return Ok(());
    }
    match run_once(plan, mech, cell.size, cell.mode == "pingpong", cell.count)? {
        Ok(s) => cell.runs.push(s),
        Err(e) => cell.error = Some(e),
    }
    cell.median = median_of(&cell.runs);
    Ok(())
}

/// The consumer's peak RSS at 1x and 10x the messages (it must not grow).
#[derive(Clone, Debug, Serialize)]
pub struct RssCheck {
    pub mech: String,
    pub size: usize,
    pub counts: [u64; 2],
    pub consumer_kib: [f64; 2],
    pub producer_kib: [f64; 2],
}

fn rss_check(plan: &Plan) -> anyhow::Result<Option<RssCheck>> {
    let Some(mech) = mechs::all().into_iter().find(|m| m.id == "shm-posix-mutex") else {
        return Ok(None);
    };
    let size = 4096;
    let base: u64 = if plan.quick { 5_000 } else { 20_000 };
    let mut out = RssCheck {
        mech: mech.id.into(),
        size,
        counts: [base, base * 10],
        consumer_kib: [0.0; 2],
        producer_kib: [0.0; 2],
    };
    for (i, count) in out.counts.into_iter().enumerate() {
        let mut cons = Vec::new();
        let mut prod = Vec::new();
        for _ in 0..plan.runs {
            match run_once(plan, &mech, size, false, count)? {
                Ok(s) => {
                    cons.push(s.rss_recv_kib.unwrap_or(0.0));
                    prod.push(s.rss_send_kib);
                }
                Err(e) => anyhow::bail!("RSS check run failed: {e}"),
            }
        }
        out.consumer_kib[i] = median(&mut cons);
        out.producer_kib[i] = median(&mut prod);
    }
    Ok(Some(out))
}

fn pick_mechs(filters: &[String]) -> anyhow::Result<Vec<Mech>> {
    let all = mechs::all();
    if filters.is_empty() {
        return Ok(all);
    }
    let picked: Vec<Mech> = all
        .into_iter()
        .filter(|m| {
            filters
                .iter()
                .any(|f| m.id == f.as_str() || m.id.starts_with(&format!("{f}-")))
        })
        .collect();
    if picked.is_empty() {
        anyhow::bail!(
            "no mechanism matches --mech {}; see ipc-bench --list",
            filters.join(",")
        );
    }
    Ok(picked)
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let r = match &cli.cmd {
        Some(Cmd::BaselineChild(a)) => baseline::child_main(a),
        Some(Cmd::RunAll { bin }) => {
            own_dir(bin.as_deref()).and_then(|d| passed(suite::run_all(&d)?))
        }
        Some(Cmd::Soak(a)) => own_dir(a.bin()).and_then(|d| passed(suite::soak(&d, a)?)),
        None => bench(&cli.opts),
    };
    match r {
        Ok(()) => std::process::ExitCode::SUCCESS,
        // A row failed: the table said which and why.
        Err(e) if e.is::<RowsFailed>() => std::process::ExitCode::FAILURE,
        Err(e) => {
            eprintln!("ipc-bench: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// run-all or soak ended with failed rows (already reported).
#[derive(Debug)]
struct RowsFailed;

impl std::fmt::Display for RowsFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("some rows failed")
    }
}

impl std::error::Error for RowsFailed {}

fn passed(ok: bool) -> anyhow::Result<()> {
    if ok {
        Ok(())
    } else {
        Err(RowsFailed.into())
    }
}

/// `dir`, or the directory of this program (where cargo puts the pairs beside it).
fn own_dir(dir: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(d) = dir {
        anyhow::ensure!(
            d.is_dir(),
            "--bin {}: no such directory; build the binaries (cargo build --release --workspace --bins) and name their directory",
            d.display()
        );
        return Ok(d.to_path_buf());
    }
    let exe = std::env::current_exe().context("current_exe")?;
    exe.parent()
        .map(Path::to_path_buf)
        .context("this program's directory")
}

fn find_bindir() -> anyhow::Result<(PathBuf, PathBuf)> {
    let exe = std::env::current_exe().context("current_exe")?;
    let dir = exe
        .parent()
        .map(Path::to_path_buf)
        .context("this program's directory")?;
    for bin in [
        "pipe-pair",
        "mq-pair",
        "socket-pair",
        "shm-producer",
        "shm-consumer",
    ] {
        if !dir.join(bin).exists() {
            anyhow::bail!(
                "{} is missing: build the workspace's binaries first (cargo build --release --workspace --bins, or make bench)",
                dir.join(bin).display()
            );
        }
    }
    Ok((exe, dir))
}

fn bench(o: &Opts) -> anyhow::Result<()> {
    if o.list {
        for m in mechs::all() {
            println!("{:<16} {}", m.id, m.what);
        }
        return Ok(());
    }
    let (exe, bindir) = find_bindir()?;
    let cpus = allowed_cpus();
    let pin = (cpus.len() >= 2).then(|| (cpus[0], cpus[1]));
    let sizes = if !o.sizes.is_empty() {
        o.sizes.clone()
    } else if o.quick {
        vec![64, 64 << 10]
    } else {
        vec![64, 1 << 10, 4 << 10, 64 << 10, 1 << 20]
    };
    let plan = Plan {
        quick: o.quick,
        runs: o.runs.unwrap_or(if o.quick { 1 } else { 3 }).max(1),
        sizes,
        mechs: pick_mechs(&o.mech)?,
        stream: o.mode.is_empty() || o.mode.contains(&ipc_common::Mode::Stream),
        pingpong: o.mode.is_empty() || o.mode.contains(&ipc_common::Mode::Pingpong),
        seed: o.seed,
        cpus: pin,
        bindir,
        exe,
    };
    let started = Instant::now();
    match pin {
        Some((a, b)) => eprintln!(
            "ipc-bench: senders pinned to CPU {a}, receivers to CPU {b} ({} CPUs allowed)",
            cpus.len()
        ),
        None => eprintln!(
            "ipc-bench: only {} CPU allowed: pinning to distinct cores is impossible, both sides share it",
            cpus.len()
        ),
    }
    eprintln!(
        "ipc-bench: {} mechanisms x {} sizes, {} run(s) each after a warm-up; medians are shown",
        plan.mechs.len(),
        plan.sizes.len(),
        plan.runs
    );
    let base = baseline::measure(
        &plan.exe,
        &plan.sizes,
        plan.cpus,
        if plan.quick { 20_000 } else { 100_000 },
        &fresh_name(),
    )?;
    eprintln!(
        "baselines: cache-line round trip p50 {}, futex wake-up round trip p50 {}",
        output::ns(base.atomic_rtt.p50_ns as f64),
        output::ns(base.futex_rtt.p50_ns as f64)
    );
    // Warm up and calibrate every cell, then measure in rounds over all cells: a burst
    // of other work on this shared machine then spreads over many cells instead of
    // spoiling all the runs of one, and the medians of the rounds are compared.
    let mut cells = Vec::new();
    for mech in &plan.mechs {
        for &size in &plan.sizes {
            for pingpong in [false, true] {
                if (pingpong && !plan.pingpong) || (!pingpong && !plan.stream) {
                    continue;
                }
                cells.push((mech, calibrate_cell(&plan, mech, size, pingpong)?));
            }
        }
    }
    eprintln!("ipc-bench: {} cells warmed up and calibrated", cells.len());
    for round in 1..=plan.runs {
        for (mech, cell) in cells.iter_mut() {
            measure_round(&plan, mech, cell)?;
        }
        eprintln!("ipc-bench: round {round} of {} done", plan.runs);
    }
    for (_, cell) in &cells {
        eprintln!("  {}", output::progress_line(cell));
    }
    let cells: Vec<Cell> = cells.into_iter().map(|(_, c)| c).collect();
    let rss = if o.no_rss || !plan.stream {
        None
    } else {
        let r = rss_check(&plan)?;
        if let Some(r) = &r {
            eprintln!(
                "  rss: {} consumer peak {:.0} KiB at {} messages, {:.0} KiB at {}",
                r.mech, r.consumer_kib[0], r.counts[0], r.consumer_kib[1], r.counts[1]
            );
        }
        r
    };
    let results = output::Results::new(
        &plan.mechs,
        &plan.sizes,
        plan.runs,
        plan.quick,
        plan.seed,
        pin,
        base,
        cells,
        rss,
        started.elapsed().as_secs_f64(),
    );
    print!("{}", results.terminal());
    std::fs::create_dir_all(&o.out).with_context(|| format!("creating {}", o.out.display()))?;
    let json_path = o.out.join("results.json");
    std::fs::write(&json_path, serde_json::to_string_pretty(&results)? + "\n")
        .with_context(|| format!("writing {}", json_path.display()))?;
    let md_path = o.out.join("results.md");
    std::fs::write(&md_path, results.markdown())
        .with_context(|| format!("writing {}", md_path.display()))?;
    plot::throughput(&results, &o.out.join("throughput.png"))?;
    plot::latency(&results, &o.out.join("latency.png"))?;
    plot::fastest(&results, &o.out.join("fastest.png"))?;
    println!(
        "\nwrote {}, {}, throughput.png, latency.png and fastest.png in {} ({:.0} s; payloads up to {})",
        json_path.display(),
        md_path.display(),
        o.out.display(),
        started.elapsed().as_secs_f64(),
        human_bytes(*plan.sizes.iter().max().unwrap_or(&0) as u64)
    );
    Ok(())
}

/// The CPUs this process may run on, in order (none if the kernel will not say).
fn allowed_cpus() -> Vec<usize> {
    use nix::sched::{sched_getaffinity, CpuSet};
    match sched_getaffinity(nix::unistd::Pid::from_raw(0)) {
        Ok(set) => (0..CpuSet::count())
            .filter(|&c| set.is_set(c).unwrap_or(false))
            .collect(),
        Err(_) => Vec::new(),
    }
}
