//! socket-pair as a teaching tool: `-v` narrates every descriptor it opens, dups and
//! closes, with the right numbers; `--step` stops before each lifecycle call; `--keep`
//! keeps the socket file until the end; each side's `--help` offers its own flags; errors
//! carry their cause.

use integration_tests::*;
use std::collections::HashMap;
use std::process::Output;
use std::time::Duration;

const P: &str = "socket-pair";

fn sock(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(name)
}

/// Start the receiver, then the sender; both with `transport` and a timeout.
fn pair(transport: &[&str], recv: &[&str], send: &[&str]) -> (Output, Output) {
    let side = |verb: &str, args: &[&str]| {
        let mut c = cmd(P);
        c.arg(verb)
            .args(args)
            .args(transport)
            .args(["--timeout", "20"]);
        start(&mut c)
    };
    let r = side("recv", recv);
    std::thread::sleep(Duration::from_millis(300));
    let s = side("send", send);
    (finish(r), finish(s))
}

/// The narrated calls (indented lines) of a side's stderr, without their idea.
fn calls(err: &str) -> Vec<String> {
    err.lines()
        .filter(|l| l.starts_with("  ") && !l.trim_start().starts_with("..."))
        .map(|l| l.split(" [").next().unwrap_or(l).trim().to_string())
        .collect()
}

/// Every `fd N` in `s`, in order.
fn fds_in(s: &str) -> Vec<i32> {
    s.match_indices("fd ")
        .filter_map(|(i, _)| {
            let digits: String = s[i + 3..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            digits.parse().ok()
        })
        .collect()
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Role {
    Fresh,
    /// Bound to a name: a datagram socket receives there.
    Bound,
    Listening,
    Connected,
}

/// Replay the narration as the kernel's descriptor table: each descriptor a call uses
/// must be open (narrated as made and not yet closed), a new one must not be open
/// already, data moves only on a connected (or bound datagram) socket, never on a
/// listening one, and everything is closed at the end.
fn check_ledger(what: &str, narrated: &[String]) {
    let mut open: HashMap<i32, Role> = HashMap::new();
    for c in narrated {
        let fds = fds_in(c);
        let (used, made) = match c.split_once(" = ") {
            Some((call, result)) => (fds_in(call), fds_in(result)),
            None => (fds.clone(), vec![]),
        };
        for fd in &used {
            assert!(
                open.contains_key(fd),
                "{what}: `{c}` uses fd {fd}, not open:\n{narrated:#?}"
            );
        }
        let name = c.split('(').next().unwrap_or("");
        let data = [
            "read", "write", "writev", "recvmsg", "sendmsg", "recv", "send",
        ];
        if data.contains(&name) {
            let role = open[&used[0]];
            assert!(
                matches!(role, Role::Connected | Role::Bound),
                "{what}: `{c}` on a socket that is {role:?}:\n{narrated:#?}"
            );
        }
        for fd in &made {
            assert!(
                !open.contains_key(fd),
                "{what}: `{c}` returns fd {fd}, still open:\n{narrated:#?}"
            );
        }
        match name {
            "close" => {
                open.remove(&used[0]);
            }
            "bind" if open[&used[0]] == Role::Fresh => {
                open.insert(used[0], Role::Bound);
            }
            "listen" => {
                open.insert(used[0], Role::Listening);
            }
            "connect" if c.contains(" = 0") => {
                open.insert(used[0], Role::Connected);
            }
            "socket" => {
                open.insert(made[0], Role::Fresh);
            }
            "accept" | "socketpair" => made.iter().for_each(|fd| {
                open.insert(*fd, Role::Connected);
            }),
            "fcntl" => {
                let role = open[&used[0]];
                open.insert(made[0], role);
            }
            _ => {}
        }
    }
    assert!(
        open.is_empty(),
        "{what}: never closed: {open:?}\n{narrated:#?}"
    );
}

#[test]
fn narration_keeps_every_descriptor_straight() {
    for ty in ["stream", "dgram", "seqpacket"] {
        let name = unique("ledger");
        let t = ["--name", &name, "--type", ty];
        let (recv, send) = pair(&t, &["-vv"], &["-vv", "-n", "3"]);
        assert_code(&recv, 0);
        assert_code(&send, 0);
        check_ledger(&format!("recv {ty}"), &calls(&stderr(&recv)));
        check_ledger(&format!("send {ty}"), &calls(&stderr(&send)));
        assert_no_leftovers(&name);
    }
    let addr = format!(
        "127.0.0.1:{}",
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    );
    let (recv, send) = pair(&["--tcp", &addr], &["-vv"], &["-vv", "-n", "3"]);
    assert_code(&recv, 0);
    assert_code(&send, 0);
    let (r, s) = (calls(&stderr(&recv)), calls(&stderr(&send)));
    check_ledger("recv tcp", &r);
    check_ledger("send tcp", &s);
    assert!(s.iter().any(|c| c.starts_with("shutdown(fd ")), "{s:#?}");
}

#[test]
fn run_closes_the_childs_end_in_the_parent() {
    let out = run(cmd(P).args(["run", "-v", "-n", "3"]));
    assert_code(&out, 0);
    let err = stderr(&out);
    let pair_line = err
        .lines()
        .find(|l| l.contains("socketpair("))
        .expect("socketpair narrated");
    let theirs = fds_in(pair_line.split(" = ").nth(1).unwrap())[1];
    let close = format!("close(fd {theirs}) = 0");
    let closed_at = err
        .find(&close)
        .unwrap_or_else(|| panic!("no `{close}`: {err}"));
    let spawned_at = err
        .find("fork() + exec(")
        .expect("the child's start narrated");
    assert!(
        spawned_at < closed_at,
        "the child's end closes after the child starts: {err}"
    );
}

/// Where the first line containing `needle` is, among `calls`.
fn at(calls: &[String], needle: &str) -> usize {
    calls
        .iter()
        .position(|c| c.contains(needle))
        .unwrap_or_else(|| panic!("no {needle}: {calls:#?}"))
}

#[test]
fn keep_holds_the_socket_file_until_the_end() {
    for ty in ["stream", "dgram"] {
        let name = unique("keep");
        let t = ["--name", &name, "--type", ty];
        let (recv, send) = pair(&t, &["-vv", "--keep"], &["-n", "3"]);
        assert_code(&recv, 0);
        assert_code(&send, 0);
        let c = calls(&stderr(&recv));
        let unlink = at(&c, "unlink(");
        let last_close = c.iter().rposition(|c| c.starts_with("close(")).unwrap();
        assert!(
            unlink > last_close,
            "{ty} --keep: unlinked before the end: {c:#?}"
        );
        assert_no_leftovers(&name);

        // Without --keep the name goes before the first message is read.
        let (recv, _) = pair(&t, &["-vv"], &["-n", "3"]);
        let c = calls(&stderr(&recv));
        let first_read = c
            .iter()
            .position(|c| c.starts_with("read(") || c.starts_with("recvmsg("))
            .unwrap();
        assert!(at(&c, "unlink(") < first_read, "{ty}: {c:#?}");
    }
}

/// `setsid PROGRAM ...`: a new session, without a controlling terminal.
fn detached() -> std::process::Command {
    use std::process::Stdio;
    let mut c = std::process::Command::new("setsid");
    c.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

#[test]
fn step_names_each_lifecycle_call_and_what_to_look_at() {
    let name = unique("step");
    let path = sock(&name);
    // setsid: no controlling terminal, so each step says so and goes on.
    let mut recv = detached();
    recv.arg(bin(P))
        .args(["recv", "--step", "--name", &name, "--timeout", "20"]);
    let mut send = detached();
    send.arg(bin(P)).args([
        "send",
        "--step",
        "-n",
        "2",
        "--name",
        &name,
        "--timeout",
        "20",
    ]);
    let r = start(&mut recv);
    std::thread::sleep(Duration::from_millis(300));
    let s = start(&mut send);
    let (recv, send) = (finish(r), finish(s));
    assert_code(&recv, 0);
    assert_code(&send, 0);
    let steps = |out: &Output| -> Vec<String> {
        stderr(out)
            .lines()
            .filter(|l| l.starts_with("[step] next: "))
            .map(String::from)
            .collect()
    };
    let (r, s) = (steps(&recv), steps(&send));
    let order = |steps: &[String], want: &[&str]| {
        let mut from = 0;
        for w in want {
            let i = steps[from..].iter().position(|l| l.contains(w));
            from += i.unwrap_or_else(|| panic!("no step {w} (in order): {steps:#?}")) + 1;
        }
    };
    order(
        &r,
        &[
            "socket(AF_UNIX, SOCK_STREAM) and bind",
            "accept(",
            "close(fd",
            "unlink(",
            "close(fd",
        ],
    );
    order(&s, &["socket(SOCK_STREAM) and connect", "close(fd"]);
    let err = stderr(&recv);
    assert!(err.contains(&format!("ls -l {}", path.display())), "{err}");
    assert!(err.contains("ss -xlp"), "{err}");
    assert!(err.contains("no terminal to wait on"), "{err}");
    assert_no_leftovers(&name);
}

#[test]
fn both_sides_offer_the_socket_flags_and_two_terminal_examples() {
    let help = |side: &str| stdout(&run(cmd(P).args([side, "--help"])));
    // Which common flags each side offers is checked for every pair in teach.rs;
    // here, the socket flags both sides share and the two-terminal examples.
    let (recv, send) = (help("recv"), help("send"));
    for flag in ["--unix", "--tcp", "--type", "--timeout", "--step", "--keep"] {
        assert!(recv.contains(flag) && send.contains(flag), "{flag}");
    }
    let top = stdout(&run(cmd(P).arg("--help")));
    assert!(
        top.contains("terminal 1:") && top.contains("terminal 2:"),
        "{top}"
    );
}

#[test]
fn errors_carry_their_cause() {
    for ty in ["stream", "dgram", "seqpacket"] {
        for side in ["recv", "send"] {
            let name = unique("cause");
            let out = run(cmd(P).args([side, "--name", &name, "--type", ty, "--timeout", "0.3"]));
            assert_code(&out, 4);
            assert!(
                stderr(&out).contains("error[timeout]"),
                "{side} {ty}: {}",
                stderr(&out)
            );
        }
    }
    // A file that is not a socket stands on the name: not ours, left alone.
    let name = unique("cause-file");
    let path = sock(&name);
    std::fs::write(&path, b"mine").unwrap();
    for side in ["recv", "send"] {
        let out = run(cmd(P).args([side, "--name", &name, "--timeout", "0.3"]));
        assert_code(&out, 1);
        assert!(
            stderr(&out).contains("error[not-ours]"),
            "{side}: {}",
            stderr(&out)
        );
    }
    assert_eq!(std::fs::read(&path).unwrap(), b"mine");
    std::fs::remove_file(&path).unwrap();

    // The two sides disagree on --type.
    let name = unique("cause-type");
    let r = start(cmd(P).args(["recv", "--name", &name, "--timeout", "3"]));
    wait_for_path(&sock(&name), Duration::from_secs(10));
    let out = run(cmd(P).args([
        "send",
        "--name",
        &name,
        "--type",
        "seqpacket",
        "--timeout",
        "3",
    ]));
    assert_code(&out, 2);
    assert!(stderr(&out).contains("error[mismatch]"), "{}", stderr(&out));
    let recv = finish(r);
    assert!(
        stderr(&recv).contains("error[timeout]"),
        "{}",
        stderr(&recv)
    );
    assert_no_leftovers(&name);
}
