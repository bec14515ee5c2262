//! Teaching at a student's pace: `--interval`, typed lines with `--input -`, one
//! receiver per FIFO, flags that contradict the sender's hello, each side's `--help`,
//! and `--step` with and without a terminal.

use integration_tests::mechanism::FIFO;
use integration_tests::scenario::receiver_contradicting_the_hello_is_refused;
use integration_tests::*;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const P: &str = "pipe-pair";

fn fifo(name: &str) -> PathBuf {
    std::env::temp_dir().join(name)
}

/// Wait until `cond` holds, failing after `limit` with `what`.
#[track_caller]
fn wait_until(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < limit, "{what} within {limit:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn interval_paces_the_sender_one_message_at_a_time() {
    let out = run(cmd(P).args([
        "run",
        "-vv",
        "-n",
        "3",
        "-s",
        "64",
        "--interval",
        "200ms",
        "--timeout",
        "20",
    ]));
    assert_code(&out, 0);
    assert_verified_line(&out, 3);
    // The sender's narration, in order: a message, the pause, the next message...
    // (no pause after the last one).
    let err = stderr(&out);
    let events: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with("[send "))
        .filter_map(|l| {
            if l.contains("writev(") && l.contains("88 bytes") {
                Some("message")
            } else if l.contains("waiting 200 ms before the next (--interval)") {
                Some("pause")
            } else {
                None
            }
        })
        .collect();
    assert_eq!(
        events,
        ["message", "pause", "message", "pause", "message"],
        "{err}"
    );
    for (i, line) in err
        .lines()
        .filter(|l| l.contains("--interval)"))
        .enumerate()
    {
        assert!(line.contains(&format!("sent message {i};")), "{line}");
    }
}

#[test]
fn receivers_refuse_interval() {
    let name = unique("teach-int");
    for c in [
        cmd(P).args(["recv", "--name", &name]),
        cmd("shm-consumer").args(["--name", &name]),
        cmd("mq-pair").args(["recv", "--name", &name]),
    ] {
        let out = run(c.args(["--interval", "1s", "--timeout", "1"]));
        assert_exit(&out, 2, &["--interval given to the receiver"]);
    }
    assert_no_leftovers(&name);
}

#[test]
fn typed_lines_arrive_one_by_one() {
    let name = unique("teach-lines");
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("lines.txt");
    let recv = start(
        cmd(P)
            .args(["recv", "--name", &name, "--timeout", "20", "--output"])
            .arg(&output),
    );
    wait_for_path(&fifo(&name), Duration::from_secs(10));
    let mut send = start(
        cmd(P)
            .args(["send", "--name", &name, "--input", "-", "--timeout", "20"])
            .stdin(Stdio::piped()),
    );
    let mut stdin = send.stdin.take().unwrap();
    let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
    // Each line reaches the receiver's --output while stdin is still open: a pipe's
    // input is sent read by read, not held back until a 1 KiB message fills.
    stdin.write_all(b"first line\n").unwrap();
    wait_until(Duration::from_secs(20), "the first line arrives", || {
        read(&output) == "first line\n"
    });
    stdin.write_all(b"second\n").unwrap();
    wait_until(Duration::from_secs(20), "the second line arrives", || {
        read(&output) == "first line\nsecond\n"
    });
    drop(stdin);
    let (send, recv) = (finish(send), finish(recv));
    assert_code(&send, 0);
    assert_code(&recv, 0);
    assert_eq!(read(&output), "first line\nsecond\n");
    assert_no_leftovers(&name);
}

#[test]
fn a_second_receiver_or_sender_on_one_fifo_is_refused_by_pid() {
    let name = unique("teach-two");
    for (role, peer) in [("recv", "send"), ("send", "recv")] {
        let mut first =
            start_watched(cmd(P).args([role, "--name", &name, "--timeout", "20", "-n", "20"]));
        first.wait_for("waiting", Duration::from_secs(20));
        let second = run(cmd(P).args([role, "--name", &name, "--timeout", "5", "-n", "20"]));
        assert_code(&second, 1);
        let err = stderr(&second);
        assert!(
            err.contains(&format!(
                "another `pipe-pair {role}` (pid {}) is already using it",
                first.id()
            )),
            "{err}"
        );
        // The first one is undisturbed: the pair completes.
        let other = run(cmd(P).args([peer, "--name", &name, "--timeout", "20", "-n", "20"]));
        let first = first.finish();
        assert_code(&first, 0);
        assert_code(&other, 0);
        let recv = if role == "recv" { &first } else { &other };
        assert!(stdout(recv).contains("verified"), "{}", stdout(recv));
        assert_no_leftovers(&name);
    }
}

#[test]
fn receiver_flags_that_contradict_the_hello_are_named_with_both_values() {
    let cases: &[(&[&str], &[&str], &str)] = &[
        (
            &["--seed", "2"],
            &["--seed", "1"],
            "--seed 2 but the sender sends 1",
        ),
        (
            &["-s", "64"],
            &["-s", "128"],
            "--size 64 but the sender sends 128",
        ),
        (
            &["-n", "5"],
            &["-n", "7"],
            "--count 5 but the sender sends 7",
        ),
        (
            &["--mode", "stream"],
            &["--mode", "pingpong"],
            "--mode stream but the sender sends pingpong",
        ),
    ];
    for (mine, theirs, says) in cases {
        receiver_contradicting_the_hello_is_refused(&FIFO, theirs, mine, says);
    }
}

#[test]
fn each_side_help_offers_its_own_flags() {
    let help = |bin: &str, args: &[&str]| {
        let out = run(cmd(bin).args(args).arg("--help"));
        assert_code(&out, 0);
        stdout(&out)
    };
    for bin in [P, "mq-pair", "socket-pair"] {
        let recv = help(bin, &["recv"]);
        let send = help(bin, &["send"]);
        let run = help(bin, &["run"]);
        // As an option ("--input <PATH|->"), not in an example of the other terminal.
        for flag in ["--input", "--interval"] {
            assert!(
                !recv.contains(&format!("{flag} <")),
                "{bin} recv --help offers {flag}:\n{recv}"
            );
            assert!(send.contains(flag), "{bin} send --help lacks {flag}");
        }
        assert!(
            !send.contains("--output"),
            "{bin} send --help offers --output:\n{send}"
        );
        assert!(
            recv.contains("--output"),
            "{bin} recv --help lacks --output"
        );
        assert!(!recv.contains("Messages to send"), "{bin} recv: {recv}");
        // A receiver may take -n to check the sender's count (then it says so), or not.
        assert!(
            !recv.contains("--count <") || recv.contains("Expect N messages"),
            "{bin} recv: {recv}"
        );
        assert!(
            run.contains("--input") && run.contains("--output"),
            "{bin} run: {run}"
        );
    }
    let cons = help("shm-consumer", &[]);
    let prod = help("shm-producer", &[]);
    assert!(
        !cons.contains("--input <") && !cons.contains("--interval <"),
        "{cons}"
    );
    assert!(!prod.contains("--output <"), "{prod}");
}

#[test]
fn step_without_a_terminal_says_so_and_goes_on() {
    let name = unique("teach-step");
    // setsid: no controlling terminal, even when the suite runs in one.
    let setsid = |args: &[&str]| {
        let mut c = Command::new("setsid");
        c.arg(bin(P))
            .args(args)
            .args(["--name", &name, "--step", "--timeout", "20"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c
    };
    let recv = start(&mut setsid(&["recv"]));
    wait_for_path(&fifo(&name), Duration::from_secs(10));
    let send = start(&mut setsid(&["send", "-n", "5"]));
    let (recv, send) = (finish(recv), finish(send));
    assert_code(&recv, 0);
    assert_code(&send, 0);
    for out in [&recv, &send] {
        let err = stderr(out);
        for needle in [
            "[step] next: mkfifo(",
            "[step] next: open(",
            "ls -l /proc/",
            "[step] no terminal to wait on: going on",
        ] {
            assert!(err.contains(needle), "{needle}: {err}");
        }
    }
    assert!(
        stderr(&send).contains("[step] next: unlink("),
        "{}",
        stderr(&send)
    );
    assert_no_leftovers(&name);
}

#[test]
fn step_with_a_terminal_waits_for_enter() {
    if Command::new("script").arg("-V").output().is_err() {
        let why = "script (util-linux) is not installed: no terminal to test --step with";
        assert!(std::env::var("CI").as_deref() != Ok("true"), "{why}");
        eprintln!("skipping: {why}");
        return;
    }
    let name = unique("teach-tty");
    let line = format!(
        "{} recv --name {name} --step --timeout 20",
        bin(P).display()
    );
    // `script` runs the receiver on a new terminal and types what we write to it.
    let mut c = Command::new("script");
    c.args(["-qfec", &line, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut tty = start(&mut c);
    let mut keys = tty.stdin.take().expect("piped");
    // script copies the terminal's output to its stdout: read it from there.
    let mut out = tty.stdout.take().expect("piped");
    let seen = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let sink = seen.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 1024];
        while let Ok(n @ 1..) = std::io::Read::read(&mut out, &mut buf) {
            sink.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    let said = |s: &str| seen.lock().unwrap().contains(s);
    wait_until(Duration::from_secs(20), "the first step prompt", || {
        said("[step] next: mkfifo(")
    });
    // It waits for Enter: the FIFO is not made meanwhile.
    std::thread::sleep(Duration::from_millis(300));
    assert!(!fifo(&name).exists(), "--step went on without Enter");
    assert!(!said("no terminal"), "{}", seen.lock().unwrap());
    keys.write_all(b"\n").unwrap();
    wait_until(Duration::from_secs(20), "the FIFO after Enter", || {
        fifo(&name).exists()
    });
    wait_until(Duration::from_secs(20), "the next step prompt", || {
        said("[step] next: open(")
    });
    keys.write_all(b"\n").unwrap();
    wait_until(Duration::from_secs(20), "the wait for a sender", || {
        said("waiting")
    });
    // A sender ends the pair (its own steps have no terminal and go on).
    let send = run(cmd(P).args(["send", "--name", &name, "-n", "5", "--timeout", "20"]));
    assert_code(&send, 0);
    // Should a step still be pending (the name's removal, had the sender not done it).
    keys.write_all(b"\n").unwrap();
    let out = finish(tty);
    drop(keys);
    assert_code(&out, 0);
    assert!(said("5 received"), "{}", seen.lock().unwrap());
    assert_no_leftovers(&name);
}

#[test]
fn a_killed_sides_role_lock_is_swept_by_the_next_pair() {
    let name = unique("teach-sweep");
    let locks = || -> Vec<PathBuf> {
        std::fs::read_dir(ipc_common::record::dir())
            .map(|d| {
                d.flatten()
                    .map(|e| e.path())
                    .filter(|p| {
                        let f = p.file_name().unwrap().to_string_lossy().into_owned();
                        f.starts_with(&format!(".fifo-{name}-")) && f.ends_with(".recv.lock")
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    // SIGKILL: the receiver cannot remove its lock file (nor its FIFO).
    let mut recv = start(cmd(P).args(["recv", "--name", &name, "--timeout", "20"]));
    wait_for_path(&fifo(&name), Duration::from_secs(10));
    recv.kill().unwrap();
    let _ = recv.wait();
    assert_eq!(locks().len(), 1, "the killed receiver's lock file");
    // Any later side of any FIFO sweeps lock files nobody holds.
    let other = unique("teach-sweeper");
    let out = run(cmd(P).args(["send", "--name", &other, "--timeout", "0.3"]));
    assert_code(&out, 4);
    assert!(locks().is_empty(), "left: {:?}", locks());
    std::fs::remove_file(fifo(&name)).unwrap();
    assert_no_leftovers(&name);
    assert_no_leftovers(&other);
}
