//! socket-pair end to end, beyond the scenarios every mechanism shares (tests/scenarios.rs):
//! TCP port 0 and between two network namespaces, foreign peers (socat) in raw mode, the
//! socket file's life (mode, stale, live), flag checks and narration.

use integration_tests::mechanism::{
    free_port, Mechanism, Role, UNIX_DGRAM, UNIX_SEQPACKET, UNIX_STREAM,
};
use integration_tests::scenario::transfer;
use integration_tests::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

const P: &str = "socket-pair";
const UNIX: [&Mechanism; 3] = [&UNIX_STREAM, &UNIX_DGRAM, &UNIX_SEQPACKET];

fn sock(name: &str) -> PathBuf {
    std::env::temp_dir().join(name)
}

#[test]
fn tcp_receiver_on_port_0_says_which_port() {
    let mut recv =
        start_watched(cmd(P).args(["recv", "--tcp", "127.0.0.1:0", "--json", "--timeout", "20"]));
    recv.wait_for("listening on TCP", Duration::from_secs(20));
    let log = recv.stderr_so_far();
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
    let out = recv.finish();
    assert_code(&out, 0);
    assert_verified(&summary(&out), 100);
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
    assert_holds(&output, &data);
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
    assert_holds(&output, &data);
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
fn bad_flags_exit_2_with_a_message() {
    assert_usage_errors(
        P,
        "run --type raw; send --tcp 127.0.0.1:9 --type dgram --timeout 1; \
         recv --tcp 127.0.0.1:9 --type seqpacket --timeout 1; \
         send --tcp nocolon --timeout 1; send --tcp 127.0.0.1:1 --unix /tmp/x; \
         send --unix /tmp/x --name y; recv --name a/b; run --raw --mode pingpong; ",
    );
    let long = format!("/tmp/{}", "x".repeat(120));
    let long = ["recv", "--unix", &long, "--timeout", "1"];
    assert_run(P, &long, 2, &["error[usage]", "at most 107"]);
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
        let args = ["run", "--type", ty, "-s", &size.to_string(), "-n", "1"];
        let out = assert_run(P, &args, 2, &["/proc/sys/net/core/wmem_max", "SO_SNDBUF"]);
        let err = stderr(&out);
        // Refused before the child was started: one message only.
        assert_eq!(err.matches("error[").count(), 1, "{err}");
    }
}

#[test]
fn help_explains_itself_with_examples() {
    assert_help(
        P,
        &["send", "recv", "run", "Examples:", "Exit codes", "socat"],
        Some("send"),
        &[
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
        ],
    );
}

#[test]
fn socket_file_is_0600_and_removed_once_connected() {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    for m in UNIX {
        let ep = m.endpoint("mode");
        let path = sock(&ep.name);
        let recv = start(m.side(Role::Receiver, &ep).args(["--timeout", "5"]));
        wait_for_path(&path, Duration::from_secs(10));
        let meta = std::fs::symlink_metadata(&path).unwrap();
        assert!(meta.file_type().is_socket());
        assert_eq!(meta.permissions().mode() & 0o777, 0o600, "{}", m.label);
        // A sender that keeps going: its socket file is gone while it runs.
        let mut send = start(
            m.side(Role::Sender, &ep)
                .args(["-n", "100000000", "--timeout", "3"]),
        );
        wait_for_gone(&path, Duration::from_secs(10));
        send.kill().unwrap();
        let _ = send.wait();
        let _ = finish(recv);
        assert_no_leftovers(&ep.name);
    }
}

/// A socket file nothing is bound to, as a crashed run leaves it.
fn make_stale(path: &Path) {
    drop(std::os::unix::net::UnixListener::bind(path).unwrap());
    assert!(path.exists());
}

#[test]
fn a_stale_socket_file_is_replaced() {
    for m in UNIX {
        let ep = m.endpoint("stale");
        make_stale(&sock(&ep.name));
        let p = transfer(m, &ep, Role::Receiver, &["-n", "100"], &[]);
        assert_both_ok(&p.sender, &p.receiver);
        assert_verified(&summary(&p.receiver), 100);
        let err = stderr(&p.receiver);
        assert!(err.contains("stale"), "{err}");
        p.assert_all_gone(&ep);
    }
    // A sender that starts first waits on the stale file until a receiver replaces it.
    let ep = UNIX_STREAM.endpoint("stale-sf");
    make_stale(&sock(&ep.name));
    let p = transfer(&UNIX_STREAM, &ep, Role::Sender, &["-n", "100"], &[]);
    assert_both_ok(&p.sender, &p.receiver);
    p.assert_all_gone(&ep);
}

#[test]
fn a_live_socket_is_refused_and_survives_the_probe() {
    let name = unique("live");
    let path = sock(&name);
    let first = start(cmd(P).args(["recv", "--name", &name, "--json", "--timeout", "20"]));
    wait_for_path(&path, Duration::from_secs(10));
    assert_run(
        P,
        &["recv", "--name", &name, "--timeout", "2"],
        1,
        &["in use"],
    );
    assert!(path.exists(), "the live receiver's socket file stays");
    // The first receiver took the probe in its stride and still serves a sender.
    assert_run(P, &["send", "--name", &name, "-n", "50"], 0, &[]);
    let first = finish(first);
    assert_code(&first, 0);
    assert_verified(&summary(&first), 50);
    assert_no_leftovers(&name);
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

    let ep = UNIX_STREAM.endpoint("narrate");
    let p = transfer(
        &UNIX_STREAM,
        &ep,
        Role::Receiver,
        &["-n", "2", "-v"],
        &["-v"],
    );
    for call in [
        "socket(", "bind(", "listen(", "accept(", "connect(", "unlink(",
    ] {
        assert!(
            p.narration.contains(call),
            "-v does not show {call}: {}",
            p.narration
        );
    }
    p.assert_all_gone(&ep);
}

/// TCP between two hosts: two network namespaces joined by a veth pair, each side in
/// its own with its own address. The addresses exist only inside those namespaces.
#[test]
fn tcp_between_two_network_namespaces() {
    const T: &str = "tcp_between_two_network_namespaces";
    if !require_root(T, "to create network namespaces") {
        return;
    }
    let hosts = match TwoHosts::new("ipc", "10.200.0") {
        Ok(hosts) => hosts,
        Err(e) => {
            require(T, Some(format!("cannot create a network namespace ({e})")));
            return;
        }
    };
    for mode in ["stream", "pingpong"] {
        let recv = start(hosts.command(0, P).args([
            "recv",
            "--tcp",
            "10.200.0.1:5000",
            "--json",
            "--timeout",
            "20",
        ]));
        let send = start(hosts.command(1, P).args([
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
    hosts.remove();
}
