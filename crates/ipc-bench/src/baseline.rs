//! The hardware baselines, measured in the same run as the mechanisms:
//! - memcpy bandwidth of one core at each message size;
//! - a two-process atomic ping-pong on one cache line of a shared mapping: the
//!   cache-coherence round trip, the floor for any shared-memory round trip;
//! - a two-process futex ping-pong: the kernel wake-up round trip that every blocking
//!   mechanism pays when its peer sleeps;
//! - a bare ring: two processes, the shm pairs' segment and ring layout (the same
//!   header, `head` and `tail` on their own cache lines, the data after the header
//!   page), memcpy in and memcpy out, no payload generation, no frame header, no
//!   check: what a copying transfer through this ring can reach on this machine.
//!
//! Each runs as hidden `ipc-bench baseline-child` processes pinned like the pairs. The
//! two ping-pong sides share one page of a POSIX shared-memory object that the parent
//! creates, unlinks at once (so nothing can be left behind) and hands down by descriptor.

use crate::run::{run_pair, summary};
use clap::{Args, ValueEnum};
use ipc_common::args::pin_to_cpu;
use ipc_common::shm::layout::HEADER_SIZE;
use ipc_sys::bench::shared_word;
use ipc_sys::shm::{futex_wait, futex_wake, Mapping};
use serde::Serialize;
use std::collections::BTreeMap;
use std::os::fd::{AsFd, AsRawFd};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Memcpy,
    Atomic,
    Futex,
    BareRing,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Times the round trips and prints them.
    Client,
    /// Answers.
    Server,
}

/// `ipc-bench baseline-child`: one side of a baseline (internal).
#[derive(Args, Debug)]
pub struct ChildArgs {
    #[arg(long, value_enum)]
    kind: Kind,
    #[arg(long, value_enum, default_value = "client")]
    role: Role,
    /// The shared page, inherited from the parent.
    #[arg(long)]
    fd: Option<i32>,
    #[arg(long)]
    cpu: Option<usize>,
    /// Round trips (after a tenth as many for warm-up).
    #[arg(long, default_value = "10000")]
    count: u32,
    /// memcpy: the sizes, and the time spent at each.
    #[arg(long, value_delimiter = ',')]
    sizes: Vec<usize>,
    #[arg(long, default_value = "0.05")]
    secs: f64,
    /// bare-ring: the ring's capacity in bytes.
    #[arg(long, default_value = "0")]
    capacity: u64,
}

#[derive(Clone, Debug, Default, Serialize, serde::Deserialize)]
pub struct Rtt {
    pub p50_ns: u64,
    pub p99_ns: u64,
    pub p999_ns: u64,
    pub max_ns: u64,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Baselines {
    /// Size -> MiB/s of one core's memcpy.
    pub memcpy_mib_s: BTreeMap<usize, f64>,
    pub atomic_rtt: Rtt,
    pub futex_rtt: Rtt,
    /// Size -> messages/s of the bare ring (memcpy in, memcpy out, nothing else).
    pub bare_ring_msgs_s: BTreeMap<usize, f64>,
    /// Were the two sides on distinct CPUs?
    pub pinned: bool,
}

pub fn child_main(a: &ChildArgs) -> anyhow::Result<()> {
    if let Some(cpu) = a.cpu {
        pin_to_cpu(cpu).map_err(|e| anyhow::anyhow!("cannot pin to CPU {cpu}: {e}"))?;
    }
    match a.kind {
        Kind::Memcpy => {
            let mut out = BTreeMap::new();
            for &size in &a.sizes {
                out.insert(size.to_string(), memcpy_mib_s(size, a.secs));
            }
            println!("{}", serde_json::to_string(&out)?);
        }
        Kind::BareRing => bare_ring(a)?,
        Kind::Atomic | Kind::Futex => {
            let fd = a.fd.ok_or_else(|| anyhow::anyhow!("--fd missing"))?;
            let file = std::fs::File::from(ipc_sys::adopt_inherited_fd(fd)?);
            let map = Mapping::map_shared(&file, 4096)?;
            let word = shared_word(&map, 0);
            let futex = a.kind == Kind::Futex;
            let warm = a.count / 10;
            let deadline = Instant::now() + Duration::from_secs(30);
            let mut hist = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3)?;
            for i in 0..warm + a.count {
                match a.role {
                    Role::Client => {
                        let t0 = Instant::now();
                        post(word, 2 * i + 1, futex);
                        await_value(word, 2 * i + 2, futex, deadline)?;
                        if i >= warm {
                            hist.saturating_record(t0.elapsed().as_nanos().max(1) as u64);
                        }
                    }
                    Role::Server => {
                        await_value(word, 2 * i + 1, futex, deadline)?;
                        post(word, 2 * i + 2, futex);
                    }
                }
            }
            if a.role == Role::Client {
                let r = Rtt {
                    p50_ns: hist.value_at_quantile(0.5),
                    p99_ns: hist.value_at_quantile(0.99),
                    p999_ns: hist.value_at_quantile(0.999),
                    max_ns: hist.max(),
                };
                println!("{}", serde_json::to_string(&r)?);
            }
        }
    }
    Ok(())
}

fn post(word: &AtomicU32, v: u32, futex: bool) {
    word.store(v, Ordering::Release);
    if futex {
        futex_wake(word);
    }
}

/// Spin (atomic) or sleep in the kernel (futex) until the word holds `v`.
fn await_value(word: &AtomicU32, v: u32, futex: bool, deadline: Instant) -> anyhow::Result<()> {
    let mut spins = 0u32;
    loop {
        let now = word.load(Ordering::Acquire);
        if now == v {
            return Ok(());
        }
        if futex {
            futex_wait(word, now, Duration::from_millis(100));
        } else {
            std::hint::spin_loop();
            spins = spins.wrapping_add(1);
        }
        if (futex || spins.is_multiple_of(4096)) && Instant::now() > deadline {
            anyhow::bail!("the other side of the ping-pong never answered");
        }
    }
}

/// One side of the bare ring: the client writes `count` messages of `sizes[0]` bytes
/// after a tenth as many for warm-up, the server reads them and prints messages/s.
/// `head` is published after every message, as a plain C ring does.
fn bare_ring(a: &ChildArgs) -> anyhow::Result<()> {
    let fd = a.fd.ok_or_else(|| anyhow::anyhow!("--fd missing"))?;
    let size = *a
        .sizes
        .first()
        .ok_or_else(|| anyhow::anyhow!("--sizes missing"))?;
    let file = std::fs::File::from(ipc_sys::adopt_inherited_fd(fd)?);
    let cap = a.capacity;
    anyhow::ensure!(
        cap >= size as u64,
        "ring of {cap} bytes for {size}-byte messages"
    );
    let map = Mapping::map_shared(&file, HEADER_SIZE + cap as usize)?;
    let ctl = &map.header().ring[0];
    let (head, tail) = (&ctl.writer.head, &ctl.reader.tail);
    let mut buf: Vec<u8> = (0..size).map(|i| i as u8).collect();
    let total = u64::from(a.count) + u64::from(a.count / 10);
    let deadline = Instant::now() + Duration::from_secs(30);
    let (mut pos, mut seen, mut t0) = (0u64, 0u64, Instant::now());
    for i in 0..total {
        if i == u64::from(a.count / 10) {
            t0 = Instant::now();
        }
        let n = size as u64;
        let at = (pos % cap) as usize;
        let first = size.min(cap as usize - at);
        let mut spins = 0u32;
        if a.role == Role::Client {
            while cap - (pos - seen) < n {
                seen = tail.load(Ordering::Acquire);
                spin_or_give_up(&mut spins, deadline)?;
            }
            map.copy_in(HEADER_SIZE + at, &buf[..first]);
            map.copy_in(HEADER_SIZE, &buf[first..]);
            pos += n;
            head.store(pos, Ordering::Release);
        } else {
            while seen - pos < n {
                seen = head.load(Ordering::Acquire);
                spin_or_give_up(&mut spins, deadline)?;
            }
            map.copy_out(HEADER_SIZE + at, &mut buf[..first]);
            map.copy_out(HEADER_SIZE, &mut buf[first..]);
            std::hint::black_box(&mut buf);
            pos += n;
            tail.store(pos, Ordering::Release);
        }
    }
    if a.role == Role::Server {
        let rate = f64::from(a.count) / t0.elapsed().as_secs_f64();
        println!("{}", serde_json::json!({ "msgs_per_sec": rate }));
    }
    Ok(())
}

fn spin_or_give_up(spins: &mut u32, deadline: Instant) -> anyhow::Result<()> {
    std::hint::spin_loop();
    *spins = spins.wrapping_add(1);
    if spins.is_multiple_of(4096) && Instant::now() > deadline {
        anyhow::bail!("the other side of the bare ring made no progress for 30 s");
    }
    Ok(())
}

/// One core copying `size` bytes again and again between two buffers for `secs`.
fn memcpy_mib_s(size: usize, secs: f64) -> f64 {
    let src: Vec<u8> = (0..size).map(|i| i as u8).collect();
    let mut dst = vec![0u8; size];
    dst.copy_from_slice(&src);
    let mut reps = 1u64;
    let mut best: f64 = 0.0;
    let end = Instant::now() + Duration::from_secs_f64(secs);
    // Batches of calls between clock reads; the best batch is the one with least noise.
    while Instant::now() < end {
        let t0 = Instant::now();
        for _ in 0..reps {
            std::hint::black_box(&mut dst).copy_from_slice(std::hint::black_box(&src));
        }
        let dt = t0.elapsed().as_secs_f64();
        if dt < 0.001 {
            reps *= 2;
            continue;
        }
        best = best.max((reps * size as u64) as f64 / dt / f64::from(1 << 20));
    }
    best
}

/// Measure all three baselines with children pinned to `cpus`.
pub fn measure(
    exe: &Path,
    sizes: &[usize],
    cpus: Option<(usize, usize)>,
    count: u32,
    base_name: &str,
) -> anyhow::Result<Baselines> {
    let mut b = Baselines {
        pinned: cpus.is_some(),
        ..Default::default()
    };
    let mut c = Command::new(exe);
    c.args(["baseline-child", "--kind", "memcpy", "--sizes"])
        .arg(
            sizes
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(","),
        )
        .args(["--secs", "0.05"]);
    if let Some((a, _)) = cpus {
        c.args(["--cpu", &a.to_string()]);
    }
    let sides = run_pair(None, c)?;
    let v = summary(&sides[0])
        .ok_or_else(|| anyhow::anyhow!("memcpy baseline failed: {}", sides[0].stderr))?;
    for &s in sizes {
        b.memcpy_mib_s
            .insert(s, v[s.to_string()].as_f64().unwrap_or(0.0));
    }
    b.atomic_rtt = pingpong(
        exe,
        Kind::Atomic,
        cpus,
        count,
        &format!("{base_name}-atomic"),
    )?;
    // Kernel wake-ups are slow: fewer of them.
    b.futex_rtt = pingpong(
        exe,
        Kind::Futex,
        cpus,
        (count / 10).max(500),
        &format!("{base_name}-futex"),
    )?;
    for &size in sizes {
        let rate = bare_ring_rate(exe, size, cpus, &format!("{base_name}-ring-{size}"))?;
        b.bare_ring_msgs_s.insert(size, rate);
    }
    Ok(b)
}

/// The bare ring at `size`, in the stream segment the pairs use at that size.
fn bare_ring_rate(
    exe: &Path,
    size: usize,
    cpus: Option<(usize, usize)>,
    name: &str,
) -> anyhow::Result<f64> {
    let seg = crate::mechs::segment_size(size);
    let capacity = (seg - HEADER_SIZE) as u64 & !63;
    // 1 GiB or 4 M messages: a fraction of a second here, seconds on a busy machine.
    let count = ((1u64 << 30) / size as u64).clamp(500, 4_000_000) as u32;
    let args = [
        "--kind".to_string(),
        "bare-ring".into(),
        "--count".into(),
        count.to_string(),
        "--sizes".into(),
        size.to_string(),
        "--capacity".into(),
        capacity.to_string(),
    ];
    let sides = run_children(exe, shared_object(name, seg)?, cpus, &args)?;
    let v = summary(&sides[0]).ok_or_else(|| {
        anyhow::anyhow!(
            "bare ring at {size} B failed: {} {}",
            sides[0].stderr,
            sides[1].stderr
        )
    })?;
    v["msgs_per_sec"]
        .as_f64()
        .ok_or_else(|| anyhow::anyhow!("bare ring at {size} B printed no rate"))
}

/// Run a baseline's two children over the shared object `fd` (its server pinned to the
/// second CPU, its client to the first): `baseline-child ARGS --role R --fd N [--cpu C]`.
fn run_children(
    exe: &Path,
    fd: std::os::fd::OwnedFd,
    cpus: Option<(usize, usize)>,
    args: &[String],
) -> anyhow::Result<Vec<crate::run::Side>> {
    let side = |role: &str, cpu: Option<usize>| {
        let mut c = Command::new(exe);
        c.arg("baseline-child")
            .args(args)
            .args(["--role", role, "--fd"])
            .arg(fd.as_raw_fd().to_string());
        if let Some(cpu) = cpu {
            c.args(["--cpu", &cpu.to_string()]);
        }
        c
    };
    run_pair(
        Some(side("server", cpus.map(|c| c.1))),
        side("client", cpus.map(|c| c.0)),
    )
}

/// A POSIX shared-memory object of `len` bytes, unlinked at once (nothing can be left
/// behind) and inheritable, for the children to map by descriptor.
fn shared_object(name: &str, len: usize) -> anyhow::Result<std::os::fd::OwnedFd> {
    use nix::fcntl::OFlag;
    use nix::sys::stat::Mode;
    let shm_name = format!("/{name}");
    let fd = nix::sys::mman::shm_open(
        shm_name.as_str(),
        OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_RDWR,
        Mode::S_IRUSR | Mode::S_IWUSR,
    )
    .map_err(|e| anyhow::anyhow!("shm_open {shm_name}: {e}"))?;
    let _ = nix::sys::mman::shm_unlink(shm_name.as_str());
    nix::unistd::ftruncate(&fd, len as i64)?;
    ipc_common::stream::set_cloexec(fd.as_fd(), false, "baseline object")?;
    Ok(fd)
}

fn pingpong(
    exe: &Path,
    kind: Kind,
    cpus: Option<(usize, usize)>,
    count: u32,
    name: &str,
) -> anyhow::Result<Rtt> {
    let kind_arg = match kind {
        Kind::Atomic => "atomic",
        _ => "futex",
    };
    let args = [
        "--kind".to_string(),
        kind_arg.into(),
        "--count".into(),
        count.to_string(),
    ];
    let sides = run_children(exe, shared_object(name, 4096)?, cpus, &args)?;
    let client = &sides[1];
    let v = summary(client).ok_or_else(|| {
        anyhow::anyhow!(
            "{kind:?} ping-pong failed: {} {}",
            client.stderr,
            sides[0].stderr
        )
    })?;
    Ok(serde_json::from_value::<Rtt>(v)?)
}
