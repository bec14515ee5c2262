//! `-v` narration against what the kernel saw: each mechanism runs a 3-message transfer
//! with `-vv` under `strace -f`, and the narrated calls are compared with the recorded
//! ones, both ways: nothing narrated that did not happen, and each lecture call strace
//! records is narrated.
//!
//! Compared by name, per process (one strace file per command; `run` includes its
//! child). A narrated name is translated to the system call(s) behind it (`mkfifo` is
//! `mknodat`); a call that takes a path counts only when the path is one of this
//! test's objects (not the dynamic loader's or the record files').

use integration_tests::*;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// One mechanism: the commands of one transfer (started in order, the first one given
/// time to make its objects), and the calls strace must not see un-narrated.
struct Row {
    label: &'static str,
    sides: Vec<(&'static str, Vec<String>)>,
    lecture: &'static [&'static str],
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn rows(name: &str) -> Vec<Row> {
    let n = |v: &[&str]| [strings(v), strings(&["--name", name])].concat();
    vec![
        Row {
            label: "anonymous pipe (pipe-pair run)",
            sides: vec![("pipe-pair", strings(&["run"]))],
            lecture: &[
                "pipe2", "clone", "clone3", "execve", "close", "writev", "read", "wait4",
            ],
        },
        Row {
            label: "FIFO (pipe-pair recv + send)",
            sides: vec![("pipe-pair", n(&["recv"])), ("pipe-pair", n(&["send"]))],
            lecture: &[
                "flock", "mknodat", "openat", "unlink", "writev", "read", "close",
            ],
        },
        Row {
            label: "POSIX queue (mq-pair run)",
            sides: vec![("mq-pair", n(&["run"]))],
            lecture: &[
                "mq_open",
                "mq_timedsend",
                "mq_timedreceive",
                "mq_notify",
                "mq_unlink",
                "wait4",
            ],
        },
        Row {
            label: "SysV queue (mq-pair run --api sysv)",
            sides: vec![("mq-pair", n(&["run", "--api", "sysv"]))],
            lecture: &["msgget", "msgsnd", "msgrcv", "msgctl", "wait4"],
        },
        Row {
            label: "Unix stream socket (socket-pair recv + send)",
            sides: vec![("socket-pair", n(&["recv"])), ("socket-pair", n(&["send"]))],
            lecture: &[
                "socket", "bind", "listen", "accept4", "connect", "unlink", "writev", "read",
            ],
        },
        Row {
            label: "Unix datagram socket (socket-pair recv + send --type dgram)",
            sides: vec![
                ("socket-pair", n(&["recv", "--type", "dgram"])),
                ("socket-pair", n(&["send", "--type", "dgram"])),
            ],
            lecture: &["socket", "bind", "connect", "unlink", "sendmsg", "recvmsg"],
        },
        Row {
            label: "socketpair (socket-pair run)",
            sides: vec![("socket-pair", strings(&["run"]))],
            lecture: &["socketpair", "writev", "wait4"],
        },
        Row {
            label: "POSIX shared memory (shm-consumer + shm-producer)",
            sides: vec![("shm-consumer", n(&[])), ("shm-producer", n(&[]))],
            lecture: &["ftruncate", "munmap"],
        },
        Row {
            label: "SysV shared memory, --sync mq (shm-consumer + shm-producer)",
            sides: vec![
                ("shm-consumer", n(&[])),
                ("shm-producer", n(&["--api", "sysv", "--sync", "mq"])),
            ],
            lecture: &["shmget", "shmat", "shmdt", "shmctl", "mq_open", "mq_unlink"],
        },
    ]
}

/// The system calls a narrated name stands for (library calls with no system call of
/// their own stand for none and are not compared).
fn syscalls_of(narrated: &str) -> &'static [&'static str] {
    match narrated {
        "mkfifo" => &["mknodat", "mknod"],
        "open" | "shm_open" => &["openat", "open"],
        "unlink" | "shm_unlink" => &["unlink", "unlinkat"],
        "fork" => &["clone", "clone3", "fork", "vfork"],
        "exec" => &["execve"],
        "pipe2" => &["pipe2"],
        "wait4" => &["wait4"],
        "close" => &["close"],
        "read" => &["read"],
        "writev" => &["writev"],
        "flock" => &["flock"],
        "socketpair" => &["socketpair"],
        "mmap" => &["mmap"],
        "munmap" => &["munmap"],
        "ftruncate" => &["ftruncate"],
        "futex" => &["futex"],
        "mq_open" => &["mq_open"],
        "mq_unlink" => &["mq_unlink"],
        "mq_notify" => &["mq_notify"],
        "mq_timedsend" => &["mq_timedsend"],
        "mq_timedreceive" => &["mq_timedreceive"],
        "msgget" => &["msgget"],
        "msgsnd" => &["msgsnd"],
        "msgrcv" => &["msgrcv"],
        "msgctl" => &["msgctl"],
        "shmget" => &["shmget"],
        "shmat" => &["shmat"],
        "shmdt" => &["shmdt"],
        "shmctl" => &["shmctl"],
        "socket" => &["socket"],
        "bind" => &["bind"],
        "listen" => &["listen"],
        "accept" => &["accept4", "accept"],
        "connect" => &["connect"],
        "shutdown" => &["shutdown"],
        "sendmsg" => &["sendmsg"],
        "recvmsg" => &["recvmsg"],
        _ => &[],
    }
}

/// The calls narrated on `stderr`: lines `name(args) = result   [idea]`, with or
/// without a `[side pid] ` tag, each with the descriptor it acts on (`read(fd 7, ..)`).
/// `fork() + exec(...)` is two calls.
fn narrated(stderr: &str) -> Vec<(String, Option<i32>)> {
    let mut out = Vec::new();
    for line in stderr.lines() {
        let mut rest = line.trim_start();
        if rest.starts_with("[send ") || rest.starts_with("[recv ") {
            rest = rest.split_once("] ").map_or("", |(_, r)| r).trim_start();
        }
        if !rest.ends_with(']') || rest.starts_with('[') {
            continue;
        }
        for part in rest.split(" + ") {
            let end = part
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(0);
            if end > 0 && part[end..].starts_with('(') {
                let fd = part[end + 1..].strip_prefix("fd ").and_then(|s| {
                    let digits: String = s.chars().take_while(char::is_ascii_digit).collect();
                    digits.parse().ok()
                });
                out.push((part[..end].to_string(), fd));
            }
        }
    }
    out
}

/// What a recorded call acts on, when that tells ours from the runtime's.
#[derive(Debug, PartialEq)]
enum On {
    Path(String),
    Fd(i32),
    Other,
}

/// The descriptors the narration mentions (`fd 6`).
fn narrated_fds(stderr: &str) -> BTreeSet<i32> {
    stderr.split("fd ").skip(1).filter_map(number).collect()
}

/// One recorded call: who made it, its name, what it acts on, the descriptors it made,
/// and (for a fork or clone) the new process or thread.
struct Rec {
    pid: u32,
    name: String,
    on: On,
    made: Vec<i32>,
    child: Option<u32>,
}

/// strace's lines with each call whole: a call another process interrupted shows as
/// `PID name(args <unfinished ...>` and later `PID <... name resumed>rest`.
fn whole_lines(trace: &str) -> Vec<(u32, String)> {
    let mut pending: std::collections::HashMap<u32, String> = Default::default();
    let mut out = Vec::new();
    for line in trace.lines() {
        let Some((pid, rest)) = line.split_once(' ') else {
            continue;
        };
        let Ok(pid) = pid.parse::<u32>() else {
            continue;
        };
        let rest = rest.trim_start();
        if let Some(head) = rest.strip_suffix(" <unfinished ...>") {
            pending.insert(pid, head.to_string());
        } else if rest.starts_with("<... ") {
            let tail = rest.split_once("resumed>").map_or("", |(_, t)| t);
            if let Some(head) = pending.remove(&pid) {
                out.push((pid, head + tail));
            }
        } else {
            out.push((pid, rest.to_string()));
        }
    }
    out
}

/// The leading number of `s`, if any.
fn number(s: &str) -> Option<i32> {
    let digits: String = s.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// The calls strace recorded, each with what it acts on.
fn recorded(trace: &str) -> Vec<Rec> {
    const PATH_CALLS: &[&str] = &[
        "openat",
        "open",
        "mknodat",
        "mknod",
        "unlink",
        "unlinkat",
        "mq_open",
        "mq_unlink",
    ];
    const FD_CALLS: &[&str] = &["read", "write", "writev", "close", "flock"];
    let mut out = Vec::new();
    for (pid, rest) in whole_lines(trace) {
        // `name(args...) = result`; skip signals and exits.
        let rest = rest.as_str();
        let Some(open) = rest.find('(') else { continue };
        let name = &rest[..open];
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        let args = &rest[open + 1..];
        let on = if PATH_CALLS.contains(&name) {
            args.split('"')
                .nth(1)
                .map_or(On::Other, |p| On::Path(p.to_string()))
        } else if FD_CALLS.contains(&name) {
            number(args).map_or(On::Other, On::Fd)
        } else {
            On::Other
        };
        let result = rest.rsplit_once(" = ").and_then(|(_, r)| number(r));
        // New descriptors: `pipe2([5, 6], ..)`, or the result of an open.
        let made = match name {
            "pipe2" | "socketpair" => args
                .split_once('[')
                .map(|(_, r)| r.split(']').next().unwrap_or(""))
                .map(|l| l.split(", ").filter_map(number).collect())
                .unwrap_or_default(),
            "openat" | "open" | "mq_open" => result.into_iter().collect(),
            // `run`'s child gets its pipe ends by number: `--inherit-fds 5,6`.
            "execve" => args
                .split_once("\"--inherit-fds\", \"")
                .map(|(_, r)| r.split('"').next().unwrap_or(""))
                .map(|l| l.split(',').filter_map(number).collect())
                .unwrap_or_default(),
            _ => Vec::new(),
        };
        let forks = matches!(name, "clone" | "clone3" | "fork" | "vfork");
        out.push(Rec {
            pid,
            name: name.to_string(),
            on,
            made,
            child: result.filter(|_| forks).map(|c| c as u32),
        });
    }
    out
}

fn strace_available() -> bool {
    Command::new("strace")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// `binary args -vv -n 3 -s 64` under `strace -f -o trace`.
fn traced(binary: &str, args: &[String], trace: &Path) -> Command {
    let mut c = Command::new("strace");
    c.args(["-f", "-qq", "-o"])
        .arg(trace)
        .arg(bin(binary))
        .args(args)
        .args(["-vv", "-n", "3", "-s", "64", "--timeout", "20"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    c
}

/// Run a row's sides, each under strace; returns (command, its output, its trace).
fn run_row(row: &Row, name: &str, dir: &Path) -> Vec<(String, Output, String)> {
    let mut started = Vec::new();
    for (i, (binary, args)) in row.sides.iter().enumerate() {
        let file: PathBuf = dir.join(format!("side{i}.trace"));
        let child = start(&mut traced(binary, args, &file));
        if i + 1 < row.sides.len() {
            // The first side makes its objects before the other starts (either order
            // works; this keeps the calls each side makes the same from run to run).
            std::thread::sleep(std::time::Duration::from_millis(500));
        }
        started.push((format!("{binary} {}", args.join(" ")), child, file));
    }
    let out = started
        .into_iter()
        .map(|(label, child, file)| {
            let out = finish_within(child, WATCHDOG);
            let trace = std::fs::read_to_string(&file).unwrap_or_default();
            (label, out, trace)
        })
        .collect();
    assert_no_leftovers(name);
    out
}

/// Compare one process's narration with its trace, both ways; returns the problems.
fn compare(label: &str, lecture: &[&str], stderr: &str, trace: &str, name: &str) -> Vec<String> {
    let said = narrated(stderr);
    let seen = recorded(trace);
    let seen_names: BTreeSet<&str> = seen.iter().map(|r| r.name.as_str()).collect();
    let mut problems = Vec::new();
    for (call, _) in &said {
        let sys = syscalls_of(call);
        if !sys.is_empty() && !sys.iter().any(|s| seen_names.contains(s)) {
            problems.push(format!(
                "{label}: narrated {call} but strace saw no {sys:?}"
            ));
        }
    }
    let said_sys: BTreeSet<&str> = said
        .iter()
        .flat_map(|(c, _)| syscalls_of(c))
        .copied()
        .collect();
    // A call on a descriptor must be narrated on that descriptor.
    let said_on: BTreeSet<(&str, i32)> = said
        .iter()
        .filter_map(|(c, fd)| fd.map(|fd| (c, fd)))
        .flat_map(|(c, fd)| syscalls_of(c).iter().map(move |s| (*s, fd)))
        .collect();
    // Our descriptors, from the call that made one on our object until its close:
    // the same number before or after is the runtime's (the loader, record files).
    // Per process: a child starts with its parent's. A pipe the runtime makes for
    // itself (std's spawn) is not ours: ours are the ones the narration names.
    let named = narrated_fds(stderr);
    let mut ours_of: std::collections::HashMap<u32, BTreeSet<i32>> = Default::default();
    for r in &seen {
        let ours_fds = ours_of.entry(r.pid).or_default();
        let ours = match &r.on {
            On::Path(p) => p.contains(name),
            On::Fd(fd) => ours_fds.contains(fd),
            On::Other => true,
        };
        let made_ours = match r.name.as_str() {
            "pipe2" | "socketpair" => r.made.iter().all(|fd| named.contains(fd)),
            "openat" | "open" | "mq_open" | "execve" => ours,
            _ => false,
        };
        if made_ours {
            ours_fds.extend(r.made.iter().copied());
        }
        let ours_fds = ours_fds.clone();
        if let Some(child) = r.child {
            ours_of.insert(child, ours_fds.clone());
        }
        let ours_fds = ours_of.entry(r.pid).or_default();
        let told = match r.on {
            On::Fd(fd) => said_on.contains(&(r.name.as_str(), fd)),
            _ => said_sys.contains(r.name.as_str()),
        };
        if ours && lecture.contains(&r.name.as_str()) && !told {
            problems.push(format!(
                "{label}: strace saw {}({:?}) but it was not narrated",
                r.name, r.on
            ));
        }
        if let (true, "close", On::Fd(fd)) = (ours, r.name.as_str(), &r.on) {
            ours_fds.remove(fd);
        }
    }
    problems.sort();
    problems.dedup();
    problems
}

#[test]
fn narrated_calls_match_what_strace_records() {
    if !strace_available() {
        let why = "strace is not installed (apt-get install strace)";
        assert!(std::env::var("CI").as_deref() != Ok("true"), "{why}");
        eprintln!("skipping: {why}");
        return;
    }
    let mut problems = Vec::new();
    for i in 0..rows("x").len() {
        let name = unique("trace");
        let row = &rows(&name)[i];
        let dir = tempfile::tempdir().expect("tempdir");
        for (cmdline, out, trace) in run_row(row, &name, dir.path()) {
            let label = format!("{} [{cmdline}]", row.label);
            assert_code(&out, 0);
            assert!(!trace.is_empty(), "{label}: strace recorded nothing");
            problems.extend(compare(&label, row.lecture, &stderr(&out), &trace, &name));
        }
    }
    assert!(
        problems.is_empty(),
        "narration and strace differ:\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_comparison_sees_a_missing_and_an_invented_call() {
    // A trace with a wait4 and a close of a pipe end the narration leaves out; the
    // loader's calls on fd 3, before the pipe took that number, are not compared.
    let trace = "10 wait4(11, [{WIFEXITED(s) && WEXITSTATUS(s) == 0}], 0, NULL) = 11\n\
                 10 openat(AT_FDCWD, \"/lib/libc.so.6\", O_RDONLY) = 3\n\
                 10 read(3, \"ELF\", 832) = 832\n\
                 10 close(3) = 0\n\
                 10 pipe2([3, 4], O_CLOEXEC) = 0\n\
                 10 close(4) = 0\n";
    let stderr = "[send 10] pipe2([fd 3, fd 4], O_CLOEXEC) = 0   [pipes: two ends]\n\
                  [send 10] mkfifo(\"/tmp/x\", 0600) = 0   [pipes: a name]\n\
                  a note, not a call\n";
    let p = compare(
        "t",
        &["wait4", "openat", "read", "close"],
        stderr,
        trace,
        "ipc-test-x",
    );
    // ...and a narrated mkfifo that strace never saw.
    assert_eq!(p.len(), 3, "{p:?}");
    assert!(p[0].contains("narrated mkfifo"), "{p:?}");
    assert!(p[1].contains("strace saw close(Fd(4))"), "{p:?}");
    assert!(p[2].contains("strace saw wait4"), "{p:?}");
}
