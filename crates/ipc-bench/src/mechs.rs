//! The mechanisms the bench runs, and the command lines of their two sides.

use std::path::Path;
use std::process::Command;

/// How a mechanism's pair is started.
#[derive(Clone, Debug)]
pub enum Start {
    /// One `run` command that starts its receiver as a child (the anonymous pipe):
    /// the CPU time of both sides comes back together.
    Run { bin: &'static str },
    /// Two commands, `send` and `recv`, meeting by `--name`; `flags` go to both.
    Pair {
        bin: &'static str,
        flags: &'static [&'static str],
    },
    /// TCP on 127.0.0.1 with a free port.
    Tcp,
    /// `shm-producer` + `shm-consumer`; the producer takes `flags`.
    Shm { flags: &'static [&'static str] },
}

#[derive(Clone, Debug)]
pub struct Mech {
    /// Short stable id, used in filters, tables, JSON and plots.
    pub id: &'static str,
    /// What it is, in words.
    pub what: &'static str,
    /// Message passing through the kernel (each message copied in and out by it).
    pub copy_based: bool,
    pub start: Start,
    /// `--zero-copy` refuses pingpong.
    pub stream_only: bool,
}

/// A mechanism's row: id, words, and how its pair starts.
type Row = (&'static str, &'static str, Start);

/// The bench's mechanisms, in the order of its tables and plots.
#[rustfmt::skip]
const ROWS: &[Row] = &[
    ("pipe", "anonymous pipe (pipe-pair run)", Start::Run { bin: "pipe-pair" }),
    ("fifo", "FIFO (named pipe)", Start::Pair { bin: "pipe-pair", flags: &[] }),
    ("mq-posix", "POSIX message queue", Start::Pair { bin: "mq-pair", flags: &["--api", "posix"] }),
    ("mq-sysv", "SysV message queue", Start::Pair { bin: "mq-pair", flags: &["--api", "sysv"] }),
    ("unix-stream", "Unix-domain stream socket", Start::Pair { bin: "socket-pair", flags: &["--type", "stream"] }),
    ("unix-dgram", "Unix-domain datagram socket", Start::Pair { bin: "socket-pair", flags: &["--type", "dgram"] }),
    ("unix-seqpacket", "Unix-domain seqpacket socket", Start::Pair { bin: "socket-pair", flags: &["--type", "seqpacket"] }),
    ("tcp", "TCP on 127.0.0.1", Start::Tcp),
    ("shm-posix-spin", "shared memory (POSIX), spin then futex", Start::Shm { flags: &["--api", "posix", "--sync", "spin"] }),
    ("shm-posix-mutex", "shared memory (POSIX), robust mutex + condvars", Start::Shm { flags: &["--api", "posix", "--sync", "mutex"] }),
    ("shm-posix-sem", "shared memory (POSIX), semaphores", Start::Shm { flags: &["--api", "posix", "--sync", "sem"] }),
    ("shm-posix-mq", "shared memory (POSIX), ready/ok on queues", Start::Shm { flags: &["--api", "posix", "--sync", "mq"] }),
    ("shm-sysv-spin", "shared memory (SysV), spin then futex", Start::Shm { flags: &["--api", "sysv", "--sync", "spin"] }),
    ("shm-sysv-mutex", "shared memory (SysV), robust mutex + condvars", Start::Shm { flags: &["--api", "sysv", "--sync", "mutex"] }),
    ("shm-sysv-sem", "shared memory (SysV), semaphores", Start::Shm { flags: &["--api", "sysv", "--sync", "sem"] }),
    ("shm-sysv-mq", "shared memory (SysV), ready/ok on queues", Start::Shm { flags: &["--api", "sysv", "--sync", "mq"] }),
    ("shm-pool", "shared memory pool: 4 POSIX segments, ids over a queue", Start::Shm { flags: &["--api", "posix", "--sync", "mq", "--segments", "4"] }),
    ("shm-zc-spin", "shared memory, --zero-copy, spin (built and checked in place)", Start::Shm { flags: &["--api", "posix", "--sync", "spin", "--zero-copy"] }),
    ("shm-zc-mutex", "shared memory, --zero-copy, mutex (built and checked in place)", Start::Shm { flags: &["--api", "posix", "--sync", "mutex", "--zero-copy"] }),
];

pub fn all() -> Vec<Mech> {
    ROWS.iter()
        .map(|&(id, what, ref start)| Mech {
            id,
            what,
            // Shared memory is the one that does not copy through the kernel.
            copy_based: !matches!(start, Start::Shm { .. }),
            stream_only: matches!(start, Start::Shm { flags } if flags.contains(&"--zero-copy")),
            start: start.clone(),
        })
        .collect()
}

/// The segment each shm run uses: room for four messages, at least 1 MiB.
pub fn segment_size(size: usize) -> usize {
    (4 * size + 64 * 1024).max(1 << 20)
}

/// What one run asks for.
pub struct Job<'a> {
    pub size: usize,
    pub pingpong: bool,
    pub count: u64,
    pub seed: u64,
    /// A fresh name for this run's objects.
    pub name: &'a str,
    /// (sender CPU, receiver CPU), when pinning.
    pub cpus: Option<(usize, usize)>,
}

/// The commands of one run: the sender (or the single `run`), and the receiver.
pub struct Commands {
    pub sender: Command,
    pub receiver: Option<Command>,
}

fn common(job: &Job, send: bool, cpu: Option<String>) -> Vec<String> {
    let mut v: Vec<String> = vec![
        "--json".into(),
        "-q".into(),
        "--timeout".into(),
        "10".into(),
    ];
    if send {
        v.extend([
            "-n".into(),
            job.count.to_string(),
            "-s".into(),
            job.size.to_string(),
            "--seed".into(),
            job.seed.to_string(),
            "--mode".into(),
            if job.pingpong { "pingpong" } else { "stream" }.into(),
        ]);
    }
    if let Some(c) = cpu {
        v.extend(["--cpu".into(), c]);
    }
    v
}

impl Mech {
    pub fn commands(&self, bindir: &Path, job: &Job, tcp_port: u16) -> Commands {
        let cpu = |i: usize| {
            job.cpus
                .map(|(a, b)| if i == 0 { a } else { b }.to_string())
        };
        let named = |bin: &str, sub: Option<&str>, flags: &[&str], send: bool| {
            let mut c = Command::new(bindir.join(bin));
            if let Some(s) = sub {
                c.arg(s);
            }
            c.args(flags)
                .args(common(job, send, cpu(if send { 0 } else { 1 })));
            c
        };
        match &self.start {
            Start::Run { bin } => {
                let mut c = Command::new(bindir.join(bin));
                c.arg("run")
                    .args(common(job, true, job.cpus.map(|(a, b)| format!("{a},{b}"))));
                Commands {
                    sender: c,
                    receiver: None,
                }
            }
            Start::Pair { bin, flags } => {
                let mut s = named(bin, Some("send"), flags, true);
                let mut r = named(bin, Some("recv"), flags, false);
                s.args(["--name", job.name]);
                r.args(["--name", job.name]);
                Commands {
                    sender: s,
                    receiver: Some(r),
                }
            }
            Start::Tcp => {
                let addr = format!("127.0.0.1:{tcp_port}");
                Commands {
                    sender: named("socket-pair", Some("send"), &["--tcp", &addr], true),
                    receiver: Some(named("socket-pair", Some("recv"), &["--tcp", &addr], false)),
                }
            }
            Start::Shm { flags } => {
                let seg = segment_size(job.size).to_string();
                let mut s = named("shm-producer", None, flags, true);
                s.args(["--segment-size", &seg, "--name", job.name]);
                // The consumer names the segment the same way: the same --api.
                let api: Vec<&str> = flags
                    .windows(2)
                    .filter(|w| w[0] == "--api")
                    .flat_map(|w| w.iter().copied())
                    .collect();
                let mut r = named("shm-consumer", None, &api, false);
                r.args(["--name", job.name]);
                Commands {
                    sender: s,
                    receiver: Some(r),
                }
            }
        }
    }
}
