//! Who may be the other end of a socket: another user who binds the name or the port
//! first, connects first, or stays silent gets nothing and stalls nothing; between
//! hosts a shared secret decides. The foreign side runs as uid 65534 through
//! `setpriv` (so these tests need root; they skip when not root, and fail under CI).

use integration_tests::mechanism::free_port;
use integration_tests::*;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

const P: &str = "socket-pair";
const TYPES: [&str; 3] = ["stream", "dgram", "seqpacket"];
const NOBODY: u32 = 65534;
/// Long enough that the old behaviour (a receiver held by a silent peer until its
/// --timeout) shows as the watchdog killing it.
const WATCH: Duration = Duration::from_secs(25);

/// Binds or listens as its owner and counts what arrives, until its stdin closes (or
/// 30 s pass); then removes its socket file and prints the count.
const SQUATTER: &str = r#"
import os, select, socket, sys, time
where, ty = sys.argv[1], sys.argv[2]
kind = {'stream': socket.SOCK_STREAM, 'dgram': socket.SOCK_DGRAM, 'seqpacket': socket.SOCK_SEQPACKET}[ty]
if where.startswith('tcp:'):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(('127.0.0.1', int(where[4:])))
else:
    s = socket.socket(socket.AF_UNIX, kind)
    s.bind(where)
    os.chmod(where, 0o777)
if kind != socket.SOCK_DGRAM:
    s.listen(8)
print('ready', flush=True)
conns, total, end = [], 0, time.time() + 30
while time.time() < end:
    r, _, _ = select.select([sys.stdin, s] + conns, [], [], 0.5)
    if sys.stdin in r:
        break
    for x in r:
        if x is s and kind != socket.SOCK_DGRAM:
            conns.append(s.accept()[0])
            continue
        try:
            d = x.recv(1 << 20)
        except OSError:
            d = b''
        total += len(d)
        if x is not s and not d:
            conns.remove(x)
            x.close()
if not where.startswith('tcp:'):
    os.unlink(where)
print(total, flush=True)
"#;

/// A peer that sends the bytes of a file (or nothing), then waits up to 10 s for the
/// other side to close (or, with 'hold', for its stdin to close). `unix:PATH:TYPE` or
/// `tcp:PORT`.
const CLIENT: &str = r#"
import select, socket, sys, time
where, data_file, mode = sys.argv[1], sys.argv[2], sys.argv[3]
data = open(data_file, 'rb').read() if data_file != '-' else b''
if where.startswith('tcp:'):
    s = socket.create_connection(('127.0.0.1', int(where[4:])))
    kind = socket.SOCK_STREAM
else:
    _, path, ty = where.split(':')
    kind = {'stream': socket.SOCK_STREAM, 'dgram': socket.SOCK_DGRAM, 'seqpacket': socket.SOCK_SEQPACKET}[ty]
    s = socket.socket(socket.AF_UNIX, kind)
    if kind != socket.SOCK_DGRAM:
        s.connect(path)
if kind == socket.SOCK_DGRAM:
    s.sendto(data, path)
    s.sendto(b'', path)  # the raw end mark
    sys.exit(0)
# The other side may refuse us at any point: that is no error here.
try:
    if kind == socket.SOCK_SEQPACKET:
        s.send(data)
    else:
        s.sendall(data)
    if kind == socket.SOCK_STREAM and mode != 'hold':
        s.shutdown(socket.SHUT_WR)
except OSError:
    pass
print('sent', flush=True)
if mode == 'hold':
    select.select([sys.stdin], [], [], 30)
    sys.exit(0)
end = time.time() + 10
while time.time() < end:
    r, _, _ = select.select([s], [], [], 0.5)
    if r:
        try:
            if not s.recv(1 << 16):
                break
        except OSError:
            break
"#;

/// Accepts one connection on a loopback port and writes what arrives, to its end, to a
/// file: how a well-formed stream is recorded for another user to replay.
const RECORDER: &str = r#"
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('127.0.0.1', int(sys.argv[1])))
s.listen(1)
print('ready', flush=True)
s.settimeout(20)
c, _ = s.accept()
c.settimeout(20)
out = open(sys.argv[2], 'wb')
while True:
    d = c.recv(1 << 16)
    if not d:
        break
    out.write(d)
out.close()
c.close()
"#;

/// Can this test run? Needs root (to act as another user), setpriv and a python3 that
/// uid 65534 may run. A missing piece skips with the reason, or fails under CI=true.
fn can_run(test: &str) -> bool {
    require_other_user(test) && {
        let runs = as_nobody(Command::new(python()).args(["-c", "pass"]))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        require(
            test,
            (!runs).then(|| {
                format!(
                    "cannot run `{} -c pass` as uid {NOBODY} (install python3)",
                    python()
                )
            }),
        )
    }
}

/// A python3 every user may run (a per-user shim, e.g. pyenv's, may not be).
fn python() -> &'static str {
    if Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    }
}

/// `c` run as uid/gid 65534 with no supplementary groups.
fn as_nobody(c: &mut Command) -> Command {
    let mut n = Command::new("setpriv");
    n.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(c.get_program())
        .args(c.get_args())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    n
}

/// Our binary as uid 65534 may run it: in place when the path is open to others,
/// else a copy in a directory of mode 0755.
struct NobodyBin {
    path: PathBuf,
    _dir: Option<tempfile::TempDir>,
}

fn nobody_bin() -> NobodyBin {
    let path = bin(P);
    let ok = as_nobody(Command::new(&path).arg("--version"))
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        return NobodyBin { path, _dir: None };
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let copy = dir.path().join(P);
    std::fs::copy(&path, &copy).unwrap();
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).unwrap();
    NobodyBin {
        path: copy,
        _dir: Some(dir),
    }
}

/// A directory every user may write to, for files both users' processes use.
fn open_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    dir
}

fn write_public(dir: &Path, name: &str, data: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, data).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
    p
}

/// A python helper as uid 65534 (or as us), stdin piped so the test can end it.
fn helper(script: &str, args: &[&str], nobody: bool) -> Child {
    let mut c = Command::new(python());
    c.arg("-c").arg(script).args(args);
    let mut c = if nobody { as_nobody(&mut c) } else { c };
    c.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = start(&mut c);
    // Wait for its first line ("ready"/"sent") without taking the rest of stdout.
    let mut out = child.stdout.take().unwrap();
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    while std::io::Read::read(&mut out, &mut b).unwrap_or(0) == 1 && b[0] != b'\n' {
        line.push(b[0]);
    }
    assert!(
        !line.is_empty(),
        "helper {args:?} did not start: {}",
        stderr(&finish_within(child, WATCH))
    );
    child.stdout = Some(out);
    child
}

/// End a helper (close its stdin) and return its output.
fn end(mut child: Child) -> Output {
    drop(child.stdin.take());
    finish_within(child, WATCH)
}

/// `check(type, name, socket path)` for each Unix socket type under a fresh name; then
/// nothing of the name is left.
fn each_type(tag: &str, mut check: impl FnMut(&str, &str, &Path)) {
    for ty in TYPES {
        let name = unique(&format!("{tag}-{ty}"));
        check(ty, &name, &std::env::temp_dir().join(&name));
        assert_no_leftovers(&name);
    }
}

/// A squatter of uid 65534 holds the sender's address (`squat_at`, a socket of type
/// `ty`): the sender, told `to`, refuses it (exit 1, naming the uid) and the squatter
/// receives nothing.
fn a_squatter_gets_nothing(squat_at: &str, ty: &str, to: &[&str]) {
    let (_dir, input) = temp_file(&random_bytes(100_000, 7));
    let squatter = helper(SQUATTER, &[squat_at, ty], true);
    let send = run(cmd(P)
        .arg("send")
        .args(to)
        .args(["--timeout", "5", "--input"])
        .arg(&input));
    let got = end(squatter);
    assert_exit(&send, 1, &[&format!("uid {NOBODY}")]);
    assert_eq!(
        stdout(&got).trim(),
        "0",
        "{squat_at} {ty}: the squatter received bytes"
    );
}

#[test]
fn a_unix_squatter_of_another_user_gets_nothing() {
    if !can_run("a_unix_squatter_of_another_user_gets_nothing") {
        return;
    }
    each_type("squat", |ty, name, path| {
        let to = ["--name", name, "--type", ty];
        a_squatter_gets_nothing(path.to_str().unwrap(), ty, &to);
    });
}

#[test]
fn a_unix_receiver_drops_another_users_sender_and_takes_its_own() {
    if !can_run("a_unix_receiver_drops_another_users_sender_and_takes_its_own") {
        return;
    }
    // Here the receiver and the real sender are uid 65534 and the foreign sender is
    // root: root may connect to a 0600 socket of another user, anyone else may not.
    let nb = nobody_bin();
    let dir = open_dir();
    let real = random_bytes(50_000, 11);
    let input = write_public(dir.path(), "real.bin", &real);
    let foreign = write_public(dir.path(), "foreign.bin", b"FOREIGN BYTES FROM ROOT");
    each_type("drop", |ty, name, path| {
        let output = dir.path().join(format!("out-{ty}.bin"));
        let recv = start(&mut as_nobody(
            Command::new(&nb.path)
                .args(["recv", "--raw", "--name", name, "--type", ty])
                .args(["--timeout", "20", "--output"])
                .arg(&output),
        ));
        wait_for_path(path, Duration::from_secs(10));
        let intruder = Command::new(python())
            .arg("-c")
            .arg(CLIENT)
            .arg(format!("unix:{}:{ty}", path.display()))
            .arg(&foreign)
            .arg("close")
            .output()
            .unwrap();
        assert!(intruder.status.success(), "{}", stderr(&intruder));
        let send = run(&mut as_nobody(
            Command::new(&nb.path)
                .args(["send", "--raw", "--name", name, "--type", ty])
                .args(["--timeout", "5", "--input"])
                .arg(&input),
        ));
        let recv = finish_within(recv, WATCH);
        assert_code(&recv, 0);
        assert_code(&send, 0);
        assert!(stderr(&recv).contains("uid 0"), "{ty}: {}", stderr(&recv));
        assert_holds(&output, &real);
    });
}

#[test]
fn tcp_receiver_drops_another_users_well_formed_stream() {
    if !can_run("tcp_receiver_drops_another_users_well_formed_stream") {
        return;
    }
    let dir = open_dir();
    let foreign = write_public(dir.path(), "foreign.bin", &random_bytes(30_000, 3));
    let real = random_bytes(80_000, 4);
    let input = write_public(dir.path(), "real.bin", &real);
    // A well-formed stream, recorded from our own sender.
    let recorded = dir.path().join("stream.rec");
    let port = free_port().to_string();
    let rec = helper(RECORDER, &[&port, recorded.to_str().unwrap()], false);
    let send = run(cmd(P)
        .args([
            "send",
            "--tcp",
            &format!("127.0.0.1:{port}"),
            "--timeout",
            "10",
        ])
        .arg("--input")
        .arg(&foreign));
    assert_code(&send, 0);
    assert_code(&end(rec), 0);
    std::fs::set_permissions(&recorded, std::fs::Permissions::from_mode(0o644)).unwrap();

    let addr = format!("127.0.0.1:{}", free_port());
    let output = dir.path().join("out.bin");
    let recv = start(
        cmd(P)
            .args([
                "recv",
                "--tcp",
                &addr,
                "--json",
                "--timeout",
                "20",
                "--output",
            ])
            .arg(&output),
    );
    // Another user connects first and replays the stream.
    let port = addr.rsplit(':').next().unwrap();
    let intruder = run(&mut as_nobody(
        Command::new(python())
            .arg("-c")
            .arg(CLIENT)
            .arg(format!("tcp:{port}"))
            .arg(&recorded)
            .arg("close"),
    ));
    assert_code(&intruder, 0);
    let send = run(cmd(P)
        .args([
            "send",
            "--tcp",
            &addr,
            "-s",
            "4K",
            "--timeout",
            "10",
            "--input",
        ])
        .arg(&input));
    let recv = finish_within(recv, WATCH);
    assert_code(&send, 0);
    assert_exit(&recv, 0, &[&format!("uid {NOBODY}")]);
    assert_file_received(&recv, &output, &real, 4096);
}

#[test]
fn tcp_sender_refuses_another_users_listener() {
    if !can_run("tcp_sender_refuses_another_users_listener") {
        return;
    }
    let port = free_port();
    let to = ["--tcp", &format!("127.0.0.1:{port}")];
    a_squatter_gets_nothing(&format!("tcp:{port}"), "stream", &to);
}

#[test]
fn a_silent_connection_does_not_hold_up_the_real_sender() {
    if !can_run("a_silent_connection_does_not_hold_up_the_real_sender") {
        return;
    }
    for foreign in [false, true] {
        let addr = format!("127.0.0.1:{}", free_port());
        let port = addr.rsplit(':').next().unwrap().to_string();
        let recv = start(cmd(P).args(["recv", "--tcp", &addr, "--json", "--timeout", "30"]));
        // Once the receiver listens (a probe that closes at once is ignored), a peer
        // connects and stays silent.
        let silent = loop {
            if std::net::TcpStream::connect(&addr).is_ok() {
                break helper(CLIENT, &[&format!("tcp:{port}"), "-", "hold"], foreign);
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let send = run(cmd(P).args([
            "send",
            "--tcp",
            &addr,
            "-n",
            "500",
            "-s",
            "1K",
            "--timeout",
            "30",
        ]));
        let recv = finish_within(recv, WATCH);
        end(silent);
        assert_code(&send, 0);
        assert_code(&recv, 0);
        assert_verified(&summary(&recv), 500);
    }
}

fn secret_file(dir: &Path, name: &str, contents: &str) -> PathBuf {
    let p = dir.join(name);
    let mut f = std::fs::File::create(&p).unwrap();
    f.write_all(contents.as_bytes()).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    p
}

/// Two network namespaces joined by a veth pair act as two hosts: uids say nothing
/// there, the shared secret decides.
#[test]
fn between_hosts_a_shared_secret_decides() {
    const T: &str = "between_hosts_a_shared_secret_decides";
    if !can_run(T) {
        return;
    }
    let hosts = match TwoHosts::new("tsk", "10.201.0") {
        Ok(hosts) => hosts,
        Err(e) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("{T} cannot run under CI: {e}")
        }
        Err(e) => {
            eprintln!("SKIPPED {T}: cannot create a network namespace ({e})");
            return;
        }
    };
    let dir = tempfile::tempdir().unwrap();
    let good = secret_file(dir.path(), "good", "correct horse battery staple\n");
    let bad = secret_file(dir.path(), "bad", "wrong horse");
    let data = random_bytes(40_000, 5);
    let input = write_public(dir.path(), "in.bin", &data);
    let addr = "10.201.0.1:5000";
    let output = dir.path().join("out.bin");
    let (good, bad) = (good.to_str().unwrap(), bad.to_str().unwrap());
    let (input, out_file) = (input.to_str().unwrap(), output.to_str().unwrap());
    // A pair across the hosts, the receiver on the first, the sender (with `env`) on the
    // second; IPC_SECRET only where given. Returns (sender, receiver).
    let across = |recv: &[&str], send: &[&str], env: &[(&str, &str)]| {
        let side = |host: usize, verb: &str, args: &[&str]| {
            let mut c = hosts.command(host, P);
            c.env_remove("IPC_SECRET")
                .args([verb, "--tcp", addr, "--timeout", "20"])
                .args(args);
            c
        };
        let recv = start(&mut side(0, "recv", recv));
        let send = start(side(1, "send", send).envs(env.iter().copied()));
        (finish(send), finish(recv))
    };

    // The same secret on both sides (a file on one, the variable on the other).
    let (send, recv) = across(
        &["--json", "--secret-file", good, "--output", out_file],
        &["-s", "4K", "--input", input],
        &[("IPC_SECRET", "correct horse battery staple")],
    );
    assert_both_ok(&send, &recv);
    assert!(
        !stderr(&recv).contains("anyone who can reach"),
        "{}",
        stderr(&recv)
    );
    assert_file_received(&recv, &output, &data, 4096);
    std::fs::remove_file(&output).unwrap();

    // Another secret: both refuse, no payload is written.
    let (send, recv) = across(
        &["--secret-file", good, "--output", out_file],
        &["--secret-file", bad, "--input", input],
        &[],
    );
    for (side, out) in [("sender", &send), ("receiver", &recv)] {
        assert_code(out, 1);
        assert!(
            stderr(out).contains("the secret did not match"),
            "{side}: {}",
            stderr(out)
        );
    }
    assert!(
        std::fs::read(&output).map_or(true, |b| b.is_empty()),
        "the receiver wrote payload after a failed handshake"
    );

    // No secret: it works as before, and the receiver says once who can take part.
    let (send, recv) = across(&["--json"], &["-n", "100"], &[]);
    assert_both_ok(&send, &recv);
    assert_verified(&summary(&recv), 100);
    assert_eq!(
        stderr(&recv)
            .matches("anyone who can reach this port")
            .count(),
        1,
        "{}",
        stderr(&recv)
    );
    hosts.remove();
}
