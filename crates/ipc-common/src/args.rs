//! The common flags of the command line (README, Flags), flattened into every binary.

use crate::error::{Error, Result};
use std::path::PathBuf;
use std::time::Duration;

/// Defaults small enough that a demo ends in about a second.
pub const DEFAULT_COUNT: u64 = 10_000;
pub const DEFAULT_SIZE: usize = 1024;
pub const DEFAULT_SEED: u64 = 1;
/// The largest message any pair accepts (the frame's length field is 32 bits; this
/// keeps a single message's buffers comfortably in memory).
pub const MAX_SIZE: usize = 256 << 20;
/// Every object this project names by default starts with this, so `make clean-ipc`
/// can find the project's leftovers and nothing else.
pub const NAME_PREFIX: &str = "ipc-";

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// One way, as fast as possible: messages/s and MiB/s.
    Stream,
    /// Request and response: round-trip latency percentiles.
    Pingpong,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Stream => "stream",
            Mode::Pingpong => "pingpong",
        }
    }
}

/// Where payload bytes come from or go to: a file, or `-` for stdin/stdout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DataPath {
    Std,
    File(PathBuf),
}

impl std::str::FromStr for DataPath {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        Ok(if s == "-" {
            DataPath::Std
        } else {
            DataPath::File(PathBuf::from(s))
        })
    }
}

impl std::fmt::Display for DataPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DataPath::Std => f.write_str("-"),
            DataPath::File(p) => write!(f, "{}", p.display()),
        }
    }
}

/// The flags every program shares. Workload flags are `Option`s: the sender fills in
/// the defaults and announces them, and a receiver given none follows the sender.
#[derive(clap::Args, Clone, Debug)]
pub struct CommonArgs {
    /// Messages to send [default: 10000]
    #[arg(short = 'n', long, value_name = "N", value_parser = parse_count)]
    pub count: Option<u64>,

    /// Message size in bytes; accepts 64, 4K, 1M [default: 1K]
    #[arg(short = 's', long, value_name = "BYTES", value_parser = parse_msg_size)]
    pub size: Option<usize>,

    /// Payload seed; the receiver checks every byte against it [default: 1]
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,

    /// Send this file's bytes (or stdin's, with -) instead of generated payloads
    #[arg(long, value_name = "PATH|-")]
    pub input: Option<DataPath>,

    /// Receiver: write the received bytes, in order, to this file (or stdout, with -)
    #[arg(long, value_name = "PATH|-")]
    pub output: Option<DataPath>,

    /// stream: one-way throughput; pingpong: round trips with latency [default: stream]
    #[arg(long, value_enum)]
    pub mode: Option<Mode>,

    /// The IPC object's name: letters, digits, '-', '_', '.'
    #[arg(long, value_name = "NAME", value_parser = parse_name)]
    pub name: Option<String>,

    /// Longest wait, in seconds, for the peer to appear or to make progress
    #[arg(long, value_name = "SECS", default_value = "30", value_parser = parse_timeout)]
    pub timeout: Duration,

    /// Payload bytes only, no frame header, so standard tools can be the other side
    #[arg(long)]
    pub raw: bool,

    /// Print the summary as one JSON object
    #[arg(long)]
    pub json: bool,

    /// Quieter: no progress bar or notes, only the summary and errors
    #[arg(short, long, conflicts_with = "verbose")]
    pub quiet: bool,

    /// More verbose: -v narrates each system call and the lecture idea it shows
    #[arg(short, long, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Pause before each lifecycle call (create, attach, remove...) and say what to look
    /// at meanwhile; Enter goes on
    #[arg(long)]
    pub step: bool,

    /// Keep the objects' names while the pair runs (no early removal), so `ls` and
    /// `ipcs` show them; they are still removed at exit
    #[arg(long)]
    pub keep: bool,

    /// Sender: wait this long between messages, e.g. 500ms or 1s (a human pace)
    #[arg(long, value_name = "DURATION", value_parser = parse_interval)]
    pub interval: Option<Duration>,

    /// Internal: this process is the receiver `run` started.
    #[arg(long, hide = true)]
    pub child: bool,

    /// Internal: descriptors `run` passed down to its child, by number.
    #[arg(long, hide = true, value_delimiter = ',', value_name = "FD")]
    pub inherit_fds: Vec<i32>,

    /// Internal (ipc-bench): pin this process to the first CPU given; `run` pins its
    /// receiver child to the second.
    #[arg(long, hide = true, value_delimiter = ',', value_name = "CPU")]
    pub cpu: Vec<usize>,
}

impl CommonArgs {
    /// Apply `-q`/`-v` to the narration level, and the hidden `--cpu` pinning (a
    /// process that cannot pin itself says so on stderr and runs unpinned). Call once
    /// at start.
    pub fn init_narration(&self) {
        let level = if self.quiet { 0 } else { 1 + self.verbose };
        crate::narrate::set_level(level);
        crate::narrate::set_step(self.step);
        crate::cleanup::set_keep(self.keep);
        if let Some(&cpu) = self.cpu.first() {
            if let Err(e) = pin_to_cpu(cpu) {
                eprintln!("note: cannot pin to CPU {cpu} ({e}); running unpinned");
            }
        }
    }

    pub fn name_or<'a>(&'a self, default: &'a str) -> &'a str {
        self.name.as_deref().unwrap_or(default)
    }
}

/// `64`, `4K`, `4KiB`, `1M`, `1MB`: binary multiples.
pub fn parse_size(s: &str) -> std::result::Result<usize, String> {
    parse_size_upto(s, usize::MAX)
}

/// Like [`parse_size`] but capped at [`MAX_SIZE`], for a message size.
pub fn parse_msg_size(s: &str) -> std::result::Result<usize, String> {
    let n = parse_size_upto(s, MAX_SIZE)?;
    if n > MAX_SIZE {
        return Err(format!(
            "{n} bytes is more than the largest message, {} MiB; send a file with --input instead",
            MAX_SIZE >> 20
        ));
    }
    Ok(n)
}

/// The size in `s`; a wrong unit is answered with the units that can give a size of at
/// most `max` (no `G` for a message: every G size is over the limit).
fn parse_size_upto(s: &str, max: usize) -> std::result::Result<usize, String> {
    let units = if max >= 1 << 30 {
        "K, M or G"
    } else {
        "K or M"
    };
    let t = s.trim();
    let digits_end = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(digits_end);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("'{s}' is not a size; use e.g. 64, 4K or 1M"))?;
    let mult: u64 = match unit.to_ascii_uppercase().as_str() {
        "" | "B" => 1,
        "K" | "KB" | "KIB" => 1 << 10,
        "M" | "MB" | "MIB" => 1 << 20,
        "G" | "GB" | "GIB" => 1 << 30,
        _ => return Err(format!("'{s}': unknown unit '{unit}'; use {units}")),
    };
    let bytes = n
        .checked_mul(mult)
        .ok_or_else(|| format!("'{s}' is too large"))?;
    if bytes == 0 {
        return Err("the size must be at least 1 byte".into());
    }
    usize::try_from(bytes).map_err(|_| format!("'{s}' is too large"))
}

fn parse_count(s: &str) -> std::result::Result<u64, String> {
    let n: u64 = s
        .trim()
        .replace('_', "")
        .parse()
        .map_err(|_| format!("'{s}' is not a whole number"))?;
    if n == 0 {
        return Err("the count must be at least 1".into());
    }
    Ok(n)
}

fn parse_timeout(s: &str) -> std::result::Result<Duration, String> {
    let secs: f64 = s
        .parse()
        .map_err(|_| format!("'{s}' is not a number of seconds"))?;
    if !(secs > 0.0 && secs <= 86_400.0) {
        return Err("the timeout must be more than 0 and at most 86400 seconds".into());
    }
    Ok(Duration::from_secs_f64(secs))
}

/// `500ms`, `2s`, `1.5` (seconds): the pause between messages of `--interval`.
fn parse_interval(s: &str) -> std::result::Result<Duration, String> {
    let (num, unit) = match s.strip_suffix("ms") {
        Some(n) => (n, 0.001),
        None => (s.strip_suffix('s').unwrap_or(s), 1.0),
    };
    let v: f64 = num
        .parse()
        .map_err(|_| format!("'{s}' is not a duration (try 500ms or 2s)"))?;
    let secs = v * unit;
    if !(0.0..=3600.0).contains(&secs) {
        return Err("the interval must be between 0 and 3600 seconds".into());
    }
    Ok(Duration::from_secs_f64(secs))
}

/// A plain name (a leading '/' is accepted and dropped), short enough for every
/// namespace it is used in (NAME_MAX for POSIX objects, sun_path for sockets).
pub fn parse_name(s: &str) -> std::result::Result<String, String> {
    let name = s.strip_prefix('/').unwrap_or(s);
    if name.is_empty() || name.len() > 64 {
        return Err("a name has 1 to 64 characters".into());
    }
    if name == "." || name == ".." {
        return Err(format!("'{name}' is not a usable name"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(format!(
            "'{c}' is not allowed in a name; use letters, digits, '-', '_' and '.'"
        ));
    }
    Ok(name.to_string())
}

/// Which side a command runs: flags meant for the other side are refused up front,
/// before any waiting for a peer.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Role {
    Send,
    Recv,
    /// Both sides (`run`).
    Both,
}

/// Check what only the combination of flags can tell, and that `--input` can be read.
pub fn validate(args: &CommonArgs, role: Role) -> Result<()> {
    // (refused when, what was given, why): the first that applies is the error.
    let refused = [
        (
            args.input.is_some() && args.seed.is_some(),
            "--seed and --input both given",
            "a seed generates payloads; with --input the file's bytes are the payload",
        ),
        (
            args.raw && args.mode == Some(Mode::Pingpong),
            "--raw with --mode pingpong",
            "raw bytes have no frame to answer; use --mode stream with --raw",
        ),
        (
            role == Role::Send && args.output.is_some(),
            "--output given to the sender",
            "--output is for the receiving side",
        ),
        (
            role == Role::Recv && args.interval.is_some(),
            "--interval given to the receiver",
            "--interval paces the sending side; the receiver takes messages as they come",
        ),
        (
            role == Role::Recv && args.input.is_some(),
            "--input given to the receiver",
            "--input is for the sending side; the receiver writes with --output",
        ),
    ];
    if let Some(&(_, what, why)) = refused.iter().find(|r| r.0) {
        return Err(Error::usage(what, why));
    }
    if role != Role::Send {
        if let Some(DataPath::File(p)) = &args.output {
            check_output(p)?;
        }
    }
    if role != Role::Recv {
        if let Some(DataPath::File(p)) = &args.input {
            check_input(p)?;
        }
    }
    Ok(())
}

/// Can `--input` be read, and is it a file's bytes? A directory opens but cannot be
/// read: refused here, before any waiting for a receiver.
fn check_input(p: &std::path::Path) -> Result<()> {
    let object = format!("input file {}", p.display());
    let file = std::fs::File::open(p).map_err(|e| {
        Error::os(&object, "open", e).with_remedy("check the path given to --input")
    })?;
    let meta = file
        .metadata()
        .map_err(|e| Error::os(&object, "fstat", e))?;
    if meta.is_dir() {
        return Err(Error::usage(
            format!("--input {} is a directory", p.display()),
            "give a file's path, or - for standard input (e.g. tar c DIR | ... --input -)",
        ));
    }
    Ok(())
}

/// Can `--output` be written? Checked before waiting for a peer, so a typo fails at
/// once instead of after the transfer. A file this creates is removed again; a FIFO
/// with no reader yet (ENXIO) is fine.
fn check_output(p: &std::path::Path) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let existed = std::fs::symlink_metadata(p).is_ok();
    match std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(p)
    {
        Ok(_) => {
            if !existed {
                let _ = std::fs::remove_file(p);
            }
            Ok(())
        }
        Err(e) if e.raw_os_error() == Some(libc::ENXIO) => Ok(()),
        Err(e) => Err(Error::os(
            format!("output file {}", p.display()),
            "open for writing",
            e,
        )
        .with_remedy(
            "check that the directory exists and is writable and that the path is a file",
        )),
    }
}

/// Pin this process to `cpu` (`sched_setaffinity`), for the benchmark's `--cpu`.
pub fn pin_to_cpu(cpu: usize) -> std::io::Result<()> {
    use nix::sched::{sched_setaffinity, CpuSet};
    let mut set = CpuSet::new();
    set.set(cpu).map_err(std::io::Error::from)?;
    sched_setaffinity(nix::unistd::Pid::from_raw(0), &set).map_err(std::io::Error::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("64"), Ok(64));
        assert_eq!(parse_size("4K"), Ok(4096));
        assert_eq!(parse_size("4kib"), Ok(4096));
        assert_eq!(parse_size("1M"), Ok(1 << 20));
        assert!(parse_size("0").is_err());
        assert!(parse_size("4X").is_err());
        assert!(parse_size("").is_err());
        assert!(parse_msg_size("1G").is_err());
        // No unit is suggested that cannot give a legal size.
        let e = parse_msg_size("10Q").unwrap_err();
        assert!(e.contains("use K or M") && !e.contains('G'), "{e}");
        assert!(parse_size("10Q").unwrap_err().contains("K, M or G"));
    }

    #[test]
    fn names() {
        assert_eq!(parse_name("/ipc-x").as_deref(), Ok("ipc-x"));
        assert!(parse_name("a/b").is_err());
        assert!(parse_name("..").is_err());
        assert!(parse_name("").is_err());
        assert!(parse_name(&"x".repeat(65)).is_err());
    }
}
