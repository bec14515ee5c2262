//! socket-pair end to end: both sides as real processes over Unix-domain sockets (each
//! type, both start orders), TCP on loopback and between two network namespaces, and
//! socketpair(2) via `run`; foreign peers (socat) in raw mode; faults and leftovers.

use integration_tests::*;
use nix::sys::signal::Signal;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const P: &str = "socket-pair";
const TYPES: [&str; 3] = ["stream", "dgram", "seqpacket"];

fn sock(name: &str) -> PathBuf {
    std::env::temp_dir().join(name)
}

/// A loopback port nobody listens on right now (the kernel's pick for port 0).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// Start `first`, give it time to wait for its peer, then start `second`; both get
/// `transport` (e.g. `--name X` or `--tcp 127.0.0.1:P`).
fn pair(transport: &[&str], first: &[&str], second: &[&str]) -> (Output, Output) {
    let a = start(
        cmd(P)
            .args(first)
            .args(transport)
            .args(["--json", "--timeout", "20"]),
    );
    std::thread::sleep(Duration::from_millis(300));
    let b = start(
        cmd(P)
            .args(second)
            .args(transport)
            .args(["--json", "--timeout", "20"]),
    );
    (finish(a), finish(b))
}

/// A process whose stderr goes to a file, so a test can wait for a line while it runs.
struct Logged {
    child: Child,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

fn start_logged(c: &mut Command) -> Logged {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("stderr");
    let file = std::fs::File::create(&log).expect("create log");
    let child = start(c.stderr(Stdio::from(file)));
    Logged {
        child,
        log,
        _dir: dir,
    }
}

impl Logged {
    fn text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Wait (under a watchdog) until the log contains one of `needles`.
    fn wait_for(&self, needles: &[&str]) -> String {
        let start = Instant::now();
        loop {
            let t = self.text();
            if needles.iter().any(|n| t.contains(n)) {
                return t;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "none of {needles:?} appeared in: {t}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

#[test]
fn run_every_type_moves_every_message_intact() {
    for ty in TYPES {
        let out = run(cmd(P).args(["run", "--type", ty, "-n", "2000", "-s", "700", "--json"]));
        assert_code(&out, 0);
        let v = summary(&out);
        assert_verified(&v, 2000);
        assert_eq!(v["mechanism"], "socketpair", "{v}");
        assert_eq!(v["options"]["type"], ty, "{v}");
        assert_eq!(v["role"], "receiver");
        assert_eq!(v["bytes"], 2000 * 700);
        assert_eq!(stdout(&out).lines().count(), 1, "{}", stdout(&out));
    }
}

#[test]
fn run_pingpong_every_type() {
    for ty in TYPES {
        let out = run(cmd(P).args([
            "run", "--type", ty, "--mode", "pingpong", "-n", "300", "-s", "64", "--json",
        ]));
        assert_code(&out, 0);
        let v = summary(&out);
        assert_verified(&v, 300);
        assert_eq!(v["role"], "sender");
        let (p50, p99, max) = (
            v["p50_ns"].as_u64().unwrap(),
            v["p99_ns"].as_u64().unwrap(),
            v["max_ns"].as_u64().unwrap(),
        );
        assert!(0 < p50 && p50 <= p99 && p99 <= max, "{v}");
    }
}

#[test]
fn unix_every_type_both_orders() {
    for ty in TYPES {
        for receiver_first in [true, false] {
            let name = unique(&format!("unix-{ty}"));
            let t = ["--name", name.as_str(), "--type", ty];
            let send = ["send", "-n", "1500", "-s", "1K"];
            let (recv, send, first_err) = if receiver_first {
                let (r, s) = pair(&t, &["recv"], &send);
                let e = stderr(&r);
                (r, s, e)
            } else {
                let (s, r) = pair(&t, &send, &["recv"]);
                let e = stderr(&s);
                (r, s, e)
            };
            assert_code(&recv, 0);
            assert_code(&send, 0);
            let v = summary(&recv);
            assert_verified(&v, 1500);
            assert_eq!(v["mechanism"], "unix");
            assert_eq!(v["options"]["type"], ty);
            assert_eq!(v["options"]["path"], sock(&name).display().to_string());
            assert_eq!(summary(&send)["messages"], 1500);
            assert!(
                first_err.contains("waiting"),
                "the first side says it waits: {first_err}"
            );
            assert_no_leftovers(&name);
        }
    }
}

#[test]
fn unix_pingpong_every_type() {
    for ty in TYPES {
        let name = unique(&format!("unix-pp-{ty}"));
        let (send, recv) = pair(
            &["--name", &name, "--type", ty],
            &["send", "--mode", "pingpong", "-n", "300", "-s", "256"],
            &["recv"],
        );
        assert_code(&send, 0);
        assert_code(&recv, 0);
        let v = summary(&send);
        assert_verified(&v, 300);
        assert!(v["p50_ns"].as_u64().unwrap() > 0, "{v}");
        assert_verified(&summary(&recv), 300);
        assert_no_leftovers(&name);
    }
}

#[test]
fn tcp_loopback_both_orders_and_pingpong() {
    let cases: [(&[&str], &[&str], bool); 3] = [
        (&["recv"], &["send", "-n", "2000", "-s", "4K"], true),
        (&["send", "-n", "2000", "-s", "4K"], &["recv"], false),
        (
            &["recv"],
            &["send", "--mode", "pingpong", "-n", "300", "-s", "100"],
            true,
        ),
    ];
    for (first, second, receiver_first) in cases {
        let addr = format!("127.0.0.1:{}", free_port());
        let (a, b) = pair(&["--tcp", &addr], first, second);
        let (recv, send) = if receiver_first { (a, b) } else { (b, a) };
        assert_code(&recv, 0);
        assert_code(&send, 0);
        let v = summary(&recv);
        assert_eq!(v["mechanism"], "tcp");
        assert_eq!(v["options"]["address"], addr.as_str());
        let n = v["messages"].as_u64().unwrap();
        assert_verified(&v, n);
        if summary(&send)["mode"] == "pingpong" {
            assert_verified(&summary(&send), 300);
        }
    }
}

#[test]
fn tcp_receiver_on_port_0_says_which_port() {
    let recv =
        start_logged(cmd(P).args(["recv", "--tcp", "127.0.0.1:0", "--json", "--timeout", "20"]));
    let log = recv.wait_for(&["listening on TCP"]);
    let addr = log
        .split_whitespace()
        .skip_while(|w| *w != "TCP")
        .nth(1)
        .expect("an address after 'listening on TCP'")
        .to_string();
    assert!(
        addr.starts_with("127.0.0.1:") && !addr.ends_with(":0"),
        "{log}"
    );
    let send = run(cmd(P).args(["send", "--tcp", &addr, "-n", "100"]));
    assert_code(&send, 0);
    let out = finish(recv.child);
    assert_code(&out, 0);
    assert_verified(&summary(&out), 100);
}

/// Send `data` with `--input` and receive it with `--output`; returns the copy.
fn copy_file(transport: &[&str], data: &[u8]) -> Vec<u8> {
    let (_dir, input) = temp_file(data);
    let out_dir = tempfile::tempdir().unwrap();
    let output = out_dir.path().join("copy.bin");
    let recv = start(
        cmd(P)
            .args(["recv", "--json", "--timeout", "20", "--output"])
            .arg(&output)
            .args(transport),
    );
    let send = start(
        cmd(P)
            .args(["send", "-s", "64K", "--timeout", "20", "--input"])
            .arg(&input)
            .args(transport),
    );
    let (send, recv) = (finish(send), finish(recv));
    assert_code(&send, 0);
    assert_code(&recv, 0);
    let v = summary(&recv);
    assert_eq!(v["payload"], "file");
    assert_eq!(v["bytes"], data.len() as u64);
    assert_verified(&v, data.len().div_ceil(65536) as u64);
    std::fs::read(&output).unwrap()
}

#[test]
fn files_are_byte_identical_over_unix_and_tcp() {
    // Not a multiple of the chunk size, so the last message is short.
    let data = random_bytes(2 * 1024 * 1024 + 4321, 5);
    for ty in TYPES {
        let name = unique(&format!("file-{ty}"));
        let copy = copy_file(&["--name", &name, "--type", ty], &data);
        assert!(copy == data, "{ty}: output differs from input");
        assert_no_leftovers(&name);
    }
    let addr = format!("127.0.0.1:{}", free_port());
    let copy = copy_file(&["--tcp", &addr], &data);
    assert!(copy == data, "tcp: output differs from input");
}

#[test]
fn stdin_to_stdout_through_run() {
    use std::io::Write;
    for ty in ["stream", "seqpacket"] {
        let data = random_bytes(700_001, 11);
        let mut child = start(
            cmd(P)
                .args([
                    "run", "--type", ty, "--input", "-", "--output", "-", "-s", "4K",
                ])
                .stdin(Stdio::piped()),
        );
        let mut stdin = child.stdin.take().unwrap();
        let feed = data.clone();
        let writer = std::thread::spawn(move || stdin.write_all(&feed).unwrap());
        let out = finish(child);
        writer.join().unwrap();
        assert_code(&out, 0);
        assert!(out.stdout == data, "{ty}: stdout is not the input");
        assert!(stderr(&out).contains("verified"), "{}", stderr(&out));
    }
}

fn have_socat(test: &str) -> bool {
    require_tool(test, "socat", "-V")
}

/// socat is the sender, socket-pair --raw the receiver.
fn raw_from_socat(ours: &[&str], socat_addr: &str, wait: impl Fn()) {
    let data = random_bytes(500_000, 21);
    let (_dir, input) = temp_file(&data);
    let out_dir = tempfile::tempdir().unwrap();
    let output = out_dir.path().join("raw.bin");
    let recv = start(
        cmd(P)
            .args(["recv", "--raw", "--timeout", "20", "--output"])
            .arg(&output)
            .args(ours),
    );
    wait();
    let socat = run(Command::new("socat")
        .arg("-u")
        .arg(format!("FILE:{}", input.display()))
        .arg(socat_addr)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped()));
    assert_code(&socat, 0);
    let recv = finish(recv);
    assert_code(&recv, 0);
    assert!(stdout(&recv).contains("payload=raw"), "{}", stdout(&recv));
    assert!(
        std::fs::read(&output).unwrap() == data,
        "raw output differs"
    );
}

/// socket-pair --raw is the sender, socat the receiver.
fn raw_to_socat(socat_addr: &str, ours: &[&str], wait: impl Fn()) {
    let data = random_bytes(500_000, 22);
    let (_dir, input) = temp_file(&data);
    let out_dir = tempfile::tempdir().unwrap();
    let output = out_dir.path().join("socat.bin");
    let socat = start(
        Command::new("socat")
            .arg("-u")
            .arg(socat_addr)
            .arg(format!("CREATE:{}", output.display()))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    );
    wait();
    let send = run(cmd(P)
        .args(["send", "--raw", "-s", "4K", "--timeout", "20", "--input"])
        .arg(&input)
        .args(ours));
    assert_code(&send, 0);
    assert_code(&finish(socat), 0);
    assert!(
        std::fs::read(&output).unwrap() == data,
        "socat's copy differs"
    );
}

#[test]
fn raw_unix_with_socat_on_either_side() {
    if !have_socat("raw_unix_with_socat_on_either_side") {
        return;
    }
    let name = unique("raw-unix-in");
    let path = sock(&name);
    raw_from_socat(
        &["--name", &name],
        &format!("UNIX-CONNECT:{}", path.display()),
        || wait_for_path(&path, Duration::from_secs(10)),
    );
    assert_no_leftovers(&name);

    let name = unique("raw-unix-out");
    let path = sock(&name);
    // Our sender retries until socat listens, so no wait is needed.
    raw_to_socat(
        &format!("UNIX-LISTEN:{}", path.display()),
        &["--unix", path.to_str().unwrap()],
        || {},
    );
    assert_no_leftovers(&name);
}

#[test]
fn raw_tcp_with_socat_on_either_side() {
    if !have_socat("raw_tcp_with_socat_on_either_side") {
        return;
    }
    let addr = format!("127.0.0.1:{}", free_port());
    raw_from_socat(
        &["--tcp", &addr],
        &format!("TCP:{addr},retry=100,interval=0.1"),
        || {},
    );
    let port = free_port();
    raw_to_socat(
        &format!("TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr"),
        &["--tcp", &format!("127.0.0.1:{port}")],
        || {},
    );
}

#[test]
fn raw_generated_payloads_over_every_type() {
    for ty in TYPES {
        let name = unique(&format!("raw-{ty}"));
        let (recv, send) = pair(
            &["--name", &name, "--type", ty],
            &["recv", "--raw", "-s", "300"],
            &["send", "--raw", "-n", "400", "-s", "300"],
        );
        assert_code(&send, 0);
        assert_code(&recv, 0);
        assert_verified(&summary(&recv), 400);
        assert_no_leftovers(&name);
    }
}

#[test]
fn wrong_seed_fails_verification() {
    let name = unique("seed");
    let (recv, send) = pair(
        &["--name", &name, "--type", "seqpacket"],
        &["recv", "--seed", "2"],
        &["send", "-n", "50", "--seed", "1"],
    );
    assert_code(&recv, 3);
    assert_code(&send, 0);
    assert_eq!(summary(&recv)["corrupted"], 50);
    assert_no_leftovers(&name);
}

#[test]
fn bad_flags_exit_2_with_a_message() {
    let cases: &[&[&str]] = &[
        &["run", "--type", "raw"],
        &[
            "send",
            "--tcp",
            "127.0.0.1:9",
            "--type",
            "dgram",
            "--timeout",
            "1",
        ],
        &[
            "recv",
            "--tcp",
            "127.0.0.1:9",
            "--type",
            "seqpacket",
            "--timeout",
            "1",
        ],
        &["send", "--tcp", "nocolon", "--timeout", "1"],
        &["send", "--tcp", "127.0.0.1:1", "--unix", "/tmp/x"],
        &["send", "--unix", "/tmp/x", "--name", "y"],
        &["recv", "--name", "a/b"],
        &["run", "--raw", "--mode", "pingpong"],
        &[],
    ];
    for case in cases {
        let out = run(cmd(P).args(*case));
        assert_code(&out, 2);
        let err = stderr(&out);
        assert!(!err.trim().is_empty(), "{case:?}: no message");
        assert!(!err.contains("panicked"), "{case:?}: {err}");
    }
    let long = format!("/tmp/{}", "x".repeat(120));
    let out = run(cmd(P).args(["recv", "--unix", &long, "--timeout", "1"]));
    assert_code(&out, 2);
    assert!(stderr(&out).contains("at most 107"), "{}", stderr(&out));
}

#[test]
fn a_datagram_too_large_is_refused_with_the_limit_named() {
    let wmem_max: usize = std::fs::read_to_string("/proc/sys/net/core/wmem_max")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // A socket's send buffer is at most twice wmem_max; ask for more than that.
    let size = 2 * wmem_max + (1 << 20);
    if size > 256 << 20 {
        eprintln!("SKIPPED: wmem_max ({wmem_max}) allows every message size");
        return;
    }
    for ty in ["dgram", "seqpacket"] {
        let out = run(cmd(P).args(["run", "--type", ty, "-s", &size.to_string(), "-n", "1"]));
        assert_code(&out, 2);
        let err = stderr(&out);
        assert!(
            err.contains("/proc/sys/net/core/wmem_max") && err.contains("SO_SNDBUF"),
            "{err}"
        );
        // Refused before the child was started: one message only.
        assert_eq!(err.matches("error:").count(), 1, "{err}");
    }
}

#[test]
fn help_explains_itself_with_examples() {
    let out = run(cmd(P).arg("--help"));
    assert_code(&out, 0);
    let s = stdout(&out);
    for word in ["send", "recv", "run", "Examples:", "Exit codes", "socat"] {
        assert!(s.contains(word), "--help lacks {word}: {s}");
    }
    let out = run(cmd(P).args(["send", "--help"]));
    for flag in [
        "--unix",
        "--tcp",
        "--type",
        "--count",
        "--size",
        "--mode",
        "--name",
        "--timeout",
        "--raw",
        "--json",
    ] {
        assert!(stdout(&out).contains(flag), "send --help lacks {flag}");
    }
}

#[test]
fn no_peer_times_out_with_exit_4_and_removes_the_socket() {
    for ty in TYPES {
        for side in ["recv", "send"] {
            let name = unique("alone");
            let out = run(cmd(P).args([side, "--name", &name, "--type", ty, "--timeout", "0.5"]));
            assert_code(&out, 4);
            assert!(
                stderr(&out).contains(&name),
                "names the socket: {}",
                stderr(&out)
            );
            assert_no_leftovers(&name);
        }
    }
    let addr = format!("127.0.0.1:{}", free_port());
    let out = run(cmd(P).args(["send", "--tcp", &addr, "--timeout", "0.5"]));
    assert_code(&out, 4);
    assert!(stderr(&out).contains(&addr), "{}", stderr(&out));
}

/// Start a long transfer; return the receiver (logging to a file) and the sender once
/// data flows.
fn long_transfer(transport: &[&str]) -> (Logged, Child) {
    let recv = start_logged(
        cmd(P)
            .args(["recv", "-v", "--timeout", "3"])
            .args(transport),
    );
    let send = start(
        cmd(P)
            .args(["send", "-n", "100000000", "-s", "4K", "--timeout", "3"])
            .args(transport),
    );
    // -v shows the first receive calls: data flows.
    recv.wait_for(&["read(fd", "recvmsg(fd"]);
    (recv, send)
}

fn transports(tag: &str) -> Vec<(Vec<String>, Option<String>)> {
    let mut v: Vec<(Vec<String>, Option<String>)> = TYPES
        .iter()
        .map(|ty| {
            let name = unique(&format!("{tag}-{ty}"));
            (
                vec![
                    "--name".into(),
                    name.clone(),
                    "--type".into(),
                    ty.to_string(),
                ],
                Some(name),
            )
        })
        .collect();
    v.push((
        vec!["--tcp".into(), format!("127.0.0.1:{}", free_port())],
        None,
    ));
    v
}

#[test]
fn killed_sender_ends_receiver_with_exit_4() {
    for (t, name) in transports("kill-send") {
        let t: Vec<&str> = t.iter().map(String::as_str).collect();
        let (recv, mut send) = long_transfer(&t);
        send.kill().unwrap();
        let _ = send.wait();
        let out = finish_within(recv.child, Duration::from_secs(20));
        let err = std::fs::read_to_string(&recv.log).unwrap();
        assert_eq!(code(&out.status), 4, "{t:?}: {err}");
        assert!(err.contains("after "), "{t:?}: says how far: {err}");
        if let Some(name) = name {
            assert_no_leftovers(&name);
        }
    }
}

#[test]
fn killed_receiver_ends_sender_with_exit_4() {
    for (t, name) in transports("kill-recv") {
        let t: Vec<&str> = t.iter().map(String::as_str).collect();
        let (mut recv, send) = long_transfer(&t);
        recv.child.kill().unwrap();
        let _ = recv.child.wait();
        let out = finish_within(send, Duration::from_secs(20));
        assert_code(&out, 4);
        let err = stderr(&out);
        assert!(
            err.contains("closed its") && err.contains("after "),
            "{t:?}: {err}"
        );
        if let Some(name) = name {
            assert_no_leftovers(&name);
        }
    }
}

#[test]
fn killed_run_child_ends_parent() {
    for ty in TYPES {
        let run = start(cmd(P).args([
            "run",
            "--type",
            ty,
            "-n",
            "100000000",
            "-s",
            "4K",
            "--timeout",
            "3",
        ]));
        let child_pid = run_child(&run, Duration::from_secs(10));
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(child_pid), Signal::SIGKILL).unwrap();
        let out = finish_within(run, Duration::from_secs(20));
        // The child died by SIGKILL and could say nothing: the sender reports it (exit 4).
        assert_eq!(code(&out.status), 4, "{ty}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("killed by SIGKILL"),
            "{ty}: {}",
            stderr(&out)
        );
    }
}

#[test]
fn ctrl_c_and_sigterm_while_waiting_remove_the_socket() {
    for ty in TYPES {
        for sig in [Signal::SIGINT, Signal::SIGTERM] {
            let name = unique("sig");
            let recv = start(cmd(P).args(["recv", "--name", &name, "--type", ty]));
            wait_for_path(&sock(&name), Duration::from_secs(10));
            std::thread::sleep(Duration::from_millis(100));
            signal(&recv, sig);
            let out = finish_within(recv, Duration::from_secs(10));
            assert_code(&out, 128 + sig as i32);
            assert!(stderr(&out).contains("removed socket"), "{}", stderr(&out));
            assert_no_leftovers(&name);
        }
    }
}

#[test]
fn socket_file_is_0600_and_removed_once_connected() {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    for ty in TYPES {
        let name = unique("mode");
        let path = sock(&name);
        let recv = start(cmd(P).args(["recv", "--name", &name, "--type", ty, "--timeout", "5"]));
        wait_for_path(&path, Duration::from_secs(10));
        let meta = std::fs::symlink_metadata(&path).unwrap();
        assert!(meta.file_type().is_socket());
        assert_eq!(meta.permissions().mode() & 0o777, 0o600, "{ty}");
        // A sender that keeps going: its socket file is gone while it runs.
        let send = start_logged(cmd(P).args([
            "send",
            "--name",
            &name,
            "--type",
            ty,
            "-n",
            "100000000",
            "--timeout",
            "3",
        ]));
        let start = Instant::now();
        while path.exists() {
            assert!(start.elapsed() < Duration::from_secs(10), "not removed");
            std::thread::sleep(Duration::from_millis(10));
        }
        let mut send = send.child;
        send.kill().unwrap();
        let _ = send.wait();
        let _ = finish(recv);
        assert_no_leftovers(&name);
    }
}

/// A socket file nothing is bound to, as a crashed run leaves it.
fn make_stale(path: &Path) {
    drop(std::os::unix::net::UnixListener::bind(path).unwrap());
    assert!(path.exists());
}

#[test]
fn a_stale_socket_file_is_replaced() {
    for ty in TYPES {
        let name = unique("stale");
        make_stale(&sock(&name));
        let (recv, send) = pair(
            &["--name", &name, "--type", ty],
            &["recv"],
            &["send", "-n", "100"],
        );
        assert_code(&recv, 0);
        assert_code(&send, 0);
        assert_verified(&summary(&recv), 100);
        assert!(stderr(&recv).contains("stale"), "{}", stderr(&recv));
        assert_no_leftovers(&name);
    }
    // A sender that starts first waits on the stale file until a receiver replaces it.
    let name = unique("stale-sf");
    make_stale(&sock(&name));
    let (send, recv) = pair(&["--name", &name], &["send", "-n", "100"], &["recv"]);
    assert_code(&send, 0);
    assert_code(&recv, 0);
    assert_no_leftovers(&name);
}

#[test]
fn a_live_socket_is_refused_and_survives_the_probe() {
    let name = unique("live");
    let path = sock(&name);
    let first = start(cmd(P).args(["recv", "--name", &name, "--json", "--timeout", "20"]));
    wait_for_path(&path, Duration::from_secs(10));
    let second = run(cmd(P).args(["recv", "--name", &name, "--timeout", "2"]));
    assert_code(&second, 1);
    assert!(stderr(&second).contains("in use"), "{}", stderr(&second));
    assert!(path.exists(), "the live receiver's socket file stays");
    // The first receiver took the probe in its stride and still serves a sender.
    let send = run(cmd(P).args(["send", "--name", &name, "-n", "50"]));
    assert_code(&send, 0);
    let first = finish(first);
    assert_code(&first, 0);
    assert_verified(&summary(&first), 50);
    assert_no_leftovers(&name);
}

#[test]
fn a_non_socket_file_is_refused_and_left_alone() {
    let name = unique("squat");
    let path = sock(&name);
    std::fs::write(&path, b"not a socket").unwrap();
    for side in ["recv", "send"] {
        let out = run(cmd(P).args([side, "--name", &name, "--timeout", "2"]));
        assert_code(&out, 1);
        assert!(stderr(&out).contains("is not a socket"), "{}", stderr(&out));
        assert_eq!(std::fs::read(&path).unwrap(), b"not a socket");
    }
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn verbose_narrates_the_socket_calls() {
    let out = run(cmd(P).args([
        "run", "-v", "-n", "3", "--type", "dgram", "--mode", "pingpong",
    ]));
    assert_code(&out, 0);
    let err = stderr(&out);
    for call in ["socketpair(", "fork() + exec(", "sendmsg(", "recvmsg("] {
        assert!(err.contains(call), "-v does not show {call}: {err}");
    }
    assert!(err.contains("[sockets:"), "{err}");

    let name = unique("narrate");
    let (recv, send) = pair(
        &["--name", &name],
        &["recv", "-v"],
        &["send", "-n", "2", "-v"],
    );
    let err = stderr(&recv) + &stderr(&send);
    for call in [
        "socket(", "bind(", "listen(", "accept(", "connect(", "unlink(",
    ] {
        assert!(err.contains(call), "-v does not show {call}: {err}");
    }
    assert_no_leftovers(&name);
}

/// Network namespaces made for one test, deleted when it ends (passed or not).
struct Namespaces(Vec<String>);

impl Drop for Namespaces {
    fn drop(&mut self) {
        for ns in &self.0 {
            let _ = Command::new("ip")
                .args(["netns", "del", ns])
                .stderr(Stdio::null())
                .status();
        }
    }
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// TCP between two hosts: two network namespaces joined by a veth pair, each side in
/// its own with its own address. The addresses exist only inside those namespaces.
#[test]
fn tcp_between_two_network_namespaces() {
    const T: &str = "tcp_between_two_network_namespaces";
    if !require_root(T, "to create network namespaces") {
        return;
    }
    let (a, b) = (unique("ns-a"), unique("ns-b"));
    let mut ns = Namespaces(Vec::new());
    if let Err(e) = ip(&["netns", "add", &a]) {
        require(T, Some(format!("cannot create a network namespace ({e})")));
        return;
    }
    ns.0.push(a.clone());
    ip(&["netns", "add", &b]).unwrap();
    ns.0.push(b.clone());
    // Created straight inside the namespaces: nothing appears in this one.
    ip(&[
        "link", "add", "ipc0", "netns", &a, "type", "veth", "peer", "name", "ipc1", "netns", &b,
    ])
    .unwrap();
    for (n, dev, addr) in [(&a, "ipc0", "10.200.0.1/24"), (&b, "ipc1", "10.200.0.2/24")] {
        ip(&["-n", n, "addr", "add", addr, "dev", dev]).unwrap();
        ip(&["-n", n, "link", "set", dev, "up"]).unwrap();
        ip(&["-n", n, "link", "set", "lo", "up"]).unwrap();
    }
    let in_ns = |n: &str| {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", n])
            .arg(bin(P))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c
    };
    for mode in ["stream", "pingpong"] {
        let recv = start(in_ns(&a).args([
            "recv",
            "--tcp",
            "10.200.0.1:5000",
            "--json",
            "--timeout",
            "20",
        ]));
        let send = start(in_ns(&b).args([
            "send",
            "--tcp",
            "10.200.0.1:5000",
            "--mode",
            mode,
            "-n",
            "1000",
            "-s",
            "4K",
            "--json",
            "--timeout",
            "20",
        ]));
        let (send, recv) = (finish(send), finish(recv));
        assert_code(&send, 0);
        assert_code(&recv, 0);
        let v = summary(&recv);
        assert_verified(&v, 1000);
        assert_eq!(v["options"]["address"], "10.200.0.1:5000");
        if mode == "pingpong" {
            assert_verified(&summary(&send), 1000);
        }
    }
    drop(ns);
    let list = Command::new("ip").args(["netns", "list"]).output().unwrap();
    let list = String::from_utf8_lossy(&list.stdout);
    assert!(!list.contains(&a) && !list.contains(&b), "{list}");
}
