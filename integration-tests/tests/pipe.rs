//! pipe-pair end to end: both sides as real processes over FIFOs and anonymous pipes.

use integration_tests::*;
use nix::sys::signal::Signal;
use std::path::PathBuf;
use std::time::Duration;

const P: &str = "pipe-pair";

fn fifo(name: &str) -> PathBuf {
    std::env::temp_dir().join(name)
}

#[test]
fn run_stream_moves_every_message_intact() {
    let out = run(cmd(P).args(["run", "-n", "3000", "-s", "700", "--json"]));
    assert_code(&out, 0);
    let v = summary(&out);
    assert_verified(&v, 3000);
    assert_eq!(v["mechanism"], "pipe");
    assert_eq!(v["role"], "receiver");
    assert_eq!(v["bytes"], 3000 * 700);
    assert!(v["mib_per_sec"].as_f64().unwrap() > 0.0, "{v}");
    // Exactly one summary: the receiver's.
    assert_eq!(stdout(&out).lines().count(), 1, "{}", stdout(&out));
}

#[test]
fn run_pingpong_reports_round_trips() {
    let out = run(cmd(P).args([
        "run", "--mode", "pingpong", "-n", "500", "-s", "64", "--json",
    ]));
    assert_code(&out, 0);
    let v = summary(&out);
    assert_verified(&v, 500);
    assert_eq!(v["role"], "sender");
    assert_eq!(v["mode"], "pingpong");
    let (p50, p99, max) = (
        v["p50_ns"].as_u64().unwrap(),
        v["p99_ns"].as_u64().unwrap(),
        v["max_ns"].as_u64().unwrap(),
    );
    assert!(0 < p50 && p50 <= p99 && p99 <= max, "{v}");
}

#[test]
fn run_human_summary_names_the_pipe() {
    let out = run(cmd(P).args(["run", "-n", "10"]));
    assert_code(&out, 0);
    let s = stdout(&out);
    assert!(s.starts_with("pipe receiver"), "{s}");
    assert!(
        s.contains("10 received, 0 lost, 0 duplicated, 0 corrupted: verified"),
        "{s}"
    );
}

/// Start `first`, give it time to wait for its peer, then start `second`.
fn pair(
    name: &str,
    first: &[&str],
    second: &[&str],
) -> (std::process::Output, std::process::Output) {
    let a = start(
        cmd(P)
            .args(first)
            .args(["--name", name, "--json", "--timeout", "20"]),
    );
    std::thread::sleep(Duration::from_millis(300));
    let b = start(
        cmd(P)
            .args(second)
            .args(["--name", name, "--json", "--timeout", "20"]),
    );
    (finish(a), finish(b))
}

#[test]
fn fifo_receiver_first() {
    let name = unique("fifo-rf");
    let (recv, send) = pair(&name, &["recv"], &["send", "-n", "2000", "-s", "1K"]);
    assert_code(&recv, 0);
    assert_code(&send, 0);
    let v = summary(&recv);
    assert_verified(&v, 2000);
    assert_eq!(v["mechanism"], "fifo");
    assert_eq!(v["bytes"], 2000 * 1024);
    assert!(
        stderr(&recv).contains("waiting"),
        "the first side says it waits: {}",
        stderr(&recv)
    );
    assert_no_leftovers(&name);
}

#[test]
fn fifo_sender_first() {
    let name = unique("fifo-sf");
    let (send, recv) = pair(&name, &["send", "-n", "1500", "-s", "100"], &["recv"]);
    assert_code(&send, 0);
    assert_code(&recv, 0);
    assert_verified(&summary(&recv), 1500);
    assert_eq!(summary(&send)["messages"], 1500);
    assert!(stderr(&send).contains("waiting"), "{}", stderr(&send));
    assert_no_leftovers(&name);
}

#[test]
fn fifo_pingpong_both_orders() {
    for sender_first in [true, false] {
        let name = unique("fifo-pp");
        let send = ["send", "--mode", "pingpong", "-n", "300", "-s", "256"];
        let (send_out, recv_out) = if sender_first {
            pair(&name, &send, &["recv"])
        } else {
            let (r, s) = pair(&name, &["recv"], &send);
            (s, r)
        };
        assert_code(&send_out, 0);
        assert_code(&recv_out, 0);
        let v = summary(&send_out);
        assert_verified(&v, 300);
        assert!(v["p50_ns"].as_u64().unwrap() > 0, "{v}");
        assert_verified(&summary(&recv_out), 300);
        assert_no_leftovers(&name);
    }
}

#[test]
fn file_through_fifo_is_byte_identical() {
    let name = unique("fifo-file");
    // Not a multiple of the chunk size, so the last message is short.
    let data = random_bytes(3 * 1024 * 1024 + 12345, 7);
    let (_dir, input) = temp_file(&data);
    let out_dir = tempfile::tempdir().unwrap();
    let output = out_dir.path().join("copy.bin");
    let recv = start(
        cmd(P)
            .args(["recv", "--name", &name, "--json", "--output"])
            .arg(&output),
    );
    let send = start(
        cmd(P)
            .args(["send", "--name", &name, "-s", "64K", "--input"])
            .arg(&input),
    );
    let (send, recv) = (finish(send), finish(recv));
    assert_code(&send, 0);
    assert_code(&recv, 0);
    assert_file_received(&recv, &output, &data, 65536);
    assert_no_leftovers(&name);
}

#[test]
fn stdin_to_stdout_through_run() {
    use std::io::Write;
    let data = random_bytes(1_000_003, 11);
    let mut child = start(
        cmd(P)
            .args(["run", "--input", "-", "--output", "-", "-s", "4K"])
            .stdin(std::process::Stdio::piped()),
    );
    let mut stdin = child.stdin.take().unwrap();
    let feed = data.clone();
    let writer = std::thread::spawn(move || stdin.write_all(&feed).unwrap());
    let out = finish(child);
    writer.join().unwrap();
    assert_code(&out, 0);
    assert!(
        out.stdout == data,
        "stdout is not the input ({} bytes vs {})",
        out.stdout.len(),
        data.len()
    );
    // The summary goes to stderr when stdout carries the data.
    assert!(stderr(&out).contains("verified"), "{}", stderr(&out));
}

#[test]
fn raw_receiver_fed_by_a_plain_writer() {
    use std::io::Write;
    let name = unique("fifo-raw");
    let path = fifo(&name);
    let out_dir = tempfile::tempdir().unwrap();
    let output = out_dir.path().join("raw.bin");
    let recv = start(
        cmd(P)
            .args(["recv", "--raw", "--name", &name, "--output"])
            .arg(&output),
    );
    wait_for_path(&path, Duration::from_secs(10));
    // What `cat file > fifo` does: open for writing, write, close.
    let data = random_bytes(777_777, 3);
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .write_all(&data)
        .unwrap();
    let recv = finish(recv);
    assert_code(&recv, 0);
    assert!(
        std::fs::read(&output).unwrap() == data,
        "raw output differs"
    );
    assert!(stdout(&recv).contains("payload=raw"), "{}", stdout(&recv));
    assert_no_leftovers(&name);
}

#[test]
fn raw_generated_payloads_are_checked() {
    let name = unique("fifo-rawgen");
    let (recv, send) = pair(
        &name,
        &["recv", "--raw", "-s", "300"],
        &["send", "--raw", "-n", "400", "-s", "300"],
    );
    assert_code(&send, 0);
    assert_code(&recv, 0);
    assert_verified(&summary(&recv), 400);
}

#[test]
fn wrong_seed_is_named_from_the_hello() {
    let name = unique("fifo-seed");
    let (recv, _send) = pair(
        &name,
        &["recv", "--seed", "2"],
        &["send", "-n", "50", "--seed", "1"],
    );
    assert_code(&recv, 2);
    let err = stderr(&recv);
    assert!(
        err.contains("error[mismatch]") && err.contains("--seed 2 but the sender sends 1"),
        "{err}"
    );
}

#[test]
fn receiver_flags_must_match_the_sender() {
    let name = unique("fifo-mismatch");
    let (recv, send) = pair(
        &name,
        &["recv", "-s", "64"],
        &["send", "-n", "10", "-s", "128"],
    );
    assert_code(&recv, 2);
    assert!(
        stderr(&recv).contains("--size 64 but the sender sends 128"),
        "{}",
        stderr(&recv)
    );
    // The sender may have finished into the pipe's buffer before the receiver refused.
    assert!(matches!(code(&send.status), 0 | 4), "{}", stderr(&send));
    assert_no_leftovers(&name);
}

#[test]
fn bad_flags_exit_2_with_a_message() {
    let cases: &[&[&str]] = &[
        &["run", "--size", "0"],
        &["run", "--size", "12Q"],
        &["run", "--count", "abc"],
        &["run", "--count", "0"],
        &["run", "--size", "2G"],
        &["run", "--bogus"],
        &["recv", "--name", "a/b"],
        &["run", "--timeout", "-1"],
        &["run", "--mode", "sideways"],
        &["run", "--raw", "--mode", "pingpong"],
        &["run", "--input", "x", "--seed", "3"],
        &["send", "--output", "x", "--timeout", "1"],
        &["send", "--fifo", "/tmp/x", "--name", "y"],
        &[],
    ];
    for case in cases {
        let out = run(cmd(P).args(*case));
        assert_code(&out, 2);
        let err = stderr(&out);
        assert!(!err.trim().is_empty(), "{case:?}: no message");
        assert!(!err.contains("panicked"), "{case:?}: {err}");
    }
}

#[test]
fn missing_input_file_is_a_runtime_error() {
    let out = run(cmd(P).args(["run", "--input", "/nonexistent/input.bin"]));
    assert_code(&out, 1);
    assert!(
        stderr(&out).contains("input file /nonexistent/input.bin: open"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn help_explains_itself_with_examples() {
    let out = run(cmd(P).arg("--help"));
    assert_code(&out, 0);
    let s = stdout(&out);
    for word in ["send", "recv", "run", "Examples:", "Exit codes"] {
        assert!(s.contains(word), "--help lacks {word}: {s}");
    }
    let out = run(cmd(P).args(["send", "--help"]));
    for flag in [
        "--count",
        "--size",
        "--seed",
        "--input",
        "--mode",
        "--name",
        "--timeout",
        "--raw",
        "--json",
        "--quiet",
        "--verbose",
        "--fifo",
    ] {
        assert!(stdout(&out).contains(flag), "send --help lacks {flag}");
    }
    // Each side's help offers its own flags (teach.rs checks the rest).
    let out = run(cmd(P).args(["recv", "--help"]));
    assert!(
        stdout(&out).contains("--output"),
        "recv --help lacks --output"
    );
}

#[test]
fn no_peer_times_out_with_exit_4_and_removes_the_fifo() {
    for side in ["recv", "send"] {
        let name = unique("fifo-alone");
        let out = run(cmd(P).args([side, "--name", &name, "--timeout", "0.5"]));
        assert_code(&out, 4);
        assert!(
            stderr(&out).contains(&name),
            "the error names the FIFO: {}",
            stderr(&out)
        );
        assert_no_leftovers(&name);
    }
}

/// Start a long transfer and return both children once data flows.
fn long_transfer(name: &str) -> (std::process::Child, std::process::Child) {
    let recv = start(cmd(P).args(["recv", "--name", name, "--timeout", "5"]));
    let send = start(cmd(P).args([
        "send",
        "--name",
        name,
        "-n",
        "100000000",
        "-s",
        "4K",
        "--timeout",
        "5",
    ]));
    // Both ends attached: the FIFO's name is removed early.
    let start = std::time::Instant::now();
    while fifo(name).exists() || start.elapsed() < Duration::from_millis(300) {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "transfer did not start"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    (recv, send)
}

#[test]
fn killed_sender_ends_receiver_with_exit_4() {
    let name = unique("kill-send");
    let (recv, mut send) = long_transfer(&name);
    send.kill().unwrap();
    let _ = send.wait();
    let out = finish_within(recv, Duration::from_secs(20));
    assert_code(&out, 4);
    let err = stderr(&out);
    assert!(
        err.contains("sender") && err.contains("after "),
        "names the peer and how far: {err}"
    );
    assert_no_leftovers(&name);
}

#[test]
fn killed_receiver_ends_sender_with_exit_4() {
    let name = unique("kill-recv");
    let (mut recv, send) = long_transfer(&name);
    recv.kill().unwrap();
    let _ = recv.wait();
    let out = finish_within(send, Duration::from_secs(20));
    assert_code(&out, 4);
    let err = stderr(&out);
    assert!(
        err.contains("receiver closed") && err.contains("after "),
        "{err}"
    );
    assert_no_leftovers(&name);
}

#[test]
fn stopped_sender_times_out_the_receiver() {
    let name = unique("stop-send");
    let recv = start(cmd(P).args(["recv", "--name", &name, "--timeout", "1"]));
    let send = start(cmd(P).args(["send", "--name", &name, "-n", "100000000", "--timeout", "1"]));
    std::thread::sleep(Duration::from_millis(400));
    signal(&send, Signal::SIGSTOP);
    let out = finish_within(recv, Duration::from_secs(20));
    signal(&send, Signal::SIGKILL);
    let _ = finish(send);
    assert_code(&out, 4);
    assert!(
        stderr(&out).contains("no progress") || stderr(&out).contains("nothing arrived"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn ctrl_c_while_waiting_removes_the_fifo() {
    for sig in [Signal::SIGINT, Signal::SIGTERM] {
        let name = unique("sigint");
        let recv = start(cmd(P).args(["recv", "--name", &name]));
        wait_for_path(&fifo(&name), Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(100));
        signal(&recv, sig);
        let out = finish_within(recv, Duration::from_secs(10));
        assert_code(&out, 128 + sig as i32);
        assert!(stderr(&out).contains("removed FIFO"), "{}", stderr(&out));
        assert_no_leftovers(&name);
    }
}

#[test]
fn killed_run_child_ends_parent_with_exit_4() {
    // SIGKILL cannot be caught: the parent notices the pipe's reader is gone.
    let run = start(cmd(P).args(["run", "-n", "100000000", "-s", "4K", "--timeout", "5"]));
    let child_pid = run_child(&run, Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(400));
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child_pid), Signal::SIGKILL).unwrap();
    let out = finish_within(run, Duration::from_secs(20));
    // The child died by SIGKILL and could say nothing: the sender reports it (exit 4).
    assert_eq!(code(&out.status), 4, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("killed by SIGKILL"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn squatted_paths_are_refused_and_left_alone() {
    use std::os::unix::fs::PermissionsExt;
    let name = unique("squat");
    let path = fifo(&name);
    // A regular file under the FIFO's name.
    std::fs::write(&path, b"not a fifo").unwrap();
    let out = run(cmd(P).args(["recv", "--name", &name, "--timeout", "1"]));
    assert_code(&out, 1);
    assert!(stderr(&out).contains("is not a FIFO"), "{}", stderr(&out));
    assert_eq!(std::fs::read(&path).unwrap(), b"not a fifo");
    std::fs::remove_file(&path).unwrap();
    // A FIFO open to other users.
    nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o666)).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
    let out = run(cmd(P).args(["send", "--name", &name, "--timeout", "1"]));
    assert_code(&out, 1);
    assert!(stderr(&out).contains("has mode 666"), "{}", stderr(&out));
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn fifo_is_created_with_mode_0600() {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    let name = unique("mode");
    let path = fifo(&name);
    let recv = start(cmd(P).args(["recv", "--name", &name, "--timeout", "2"]));
    wait_for_path(&path, Duration::from_secs(10));
    let meta = std::fs::metadata(&path).unwrap();
    assert!(meta.file_type().is_fifo());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let out = finish(recv);
    assert_code(&out, 4);
    assert_no_leftovers(&name);
}

#[test]
fn verbose_narrates_the_system_calls() {
    let out = run(cmd(P).args(["run", "-v", "-n", "3", "--mode", "pingpong"]));
    assert_code(&out, 0);
    let err = stderr(&out);
    for call in ["pipe2(", "fork() + exec(", "writev(", "read("] {
        assert!(err.contains(call), "-v does not show {call}: {err}");
    }
    assert!(
        err.contains("[pipes:") || err.contains("[message passing:"),
        "{err}"
    );

    let name = unique("narrate");
    let (recv, send) = pair(&name, &["recv", "-v"], &["send", "-n", "2", "-v"]);
    let err = stderr(&recv) + &stderr(&send);
    assert!(err.contains("mkfifo(") && err.contains("open("), "{err}");
    assert!(
        err.contains("unlink("),
        "the name is removed once both ends are open: {err}"
    );
}
