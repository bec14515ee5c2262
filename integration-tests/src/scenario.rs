//! Each scenario every mechanism must pass, written once: `tests/scenarios.rs` runs them
//! over the rows of [`crate::mechanism`]. Every scenario checks exit codes, messages and
//! bytes, and that nothing is left behind.

use crate::mechanism::{Endpoint, Mechanism, Role};
use crate::*;
use nix::sys::signal::Signal;
use std::process::Output;
use std::time::Duration;

/// What both sides of a finished pair left: outputs by role, pids, all their stderr.
pub struct Pair {
    pub sender: Output,
    pub receiver: Output,
    pub pids: Vec<u32>,
    pub narration: String,
}

impl Pair {
    /// The leak checks for this pair at `ep`.
    #[track_caller]
    pub fn assert_all_gone(&self, ep: &Endpoint) {
        assert_all_gone(&ep.name, &self.narration, &self.pids);
    }

    fn of(first: Role, a: Output, b: Output, pids: Vec<u32>) -> Pair {
        let (sender, receiver) = match first {
            Role::Sender => (a, b),
            Role::Receiver => (b, a),
        };
        let narration = stderr_of(&[&sender, &receiver]);
        Pair {
            sender,
            receiver,
            pids,
            narration,
        }
    }
}

/// Run a pair at `ep`: `first` starts and says it waits, then its peer; each side gets
/// its own flags, and both `--json --timeout 20`.
pub fn transfer(m: &Mechanism, ep: &Endpoint, first: Role, send: &[&str], recv: &[&str]) -> Pair {
    let side = |role: Role| {
        let mut c = m.side(role, ep);
        c.args(if role == Role::Sender { send } else { recv })
            .args(["--json", "--timeout", "20"]);
        c
    };
    let (a, b, pids) = pair(&mut side(first), &mut side(first.other()));
    Pair::of(first, a, b, pids)
}

/// The summary names the mechanism's own flags (`--api sysv` as `options.api`) and, for
/// TCP, the address.
#[track_caller]
fn assert_options(m: &Mechanism, ep: &Endpoint, v: &serde_json::Value) {
    for flag in m.flags.chunks(2) {
        let key = flag[0].trim_start_matches("--");
        assert_eq!(v["options"][key], flag[1], "{}: {v}", m.label);
    }
    if let Some(address) = &ep.address {
        assert_eq!(v["options"]["address"], address.as_str(), "{v}");
    }
}

/// Both start orders: every message arrives, the first side says it waits.
pub fn either_start_order(m: &Mechanism) {
    for first in [Role::Receiver, Role::Sender] {
        let ep = m.endpoint("order");
        let p = transfer(m, &ep, first, &["-n", "1500", "-s", "1K"], &[]);
        assert_both_ok(&p.sender, &p.receiver);
        let v = summary(&p.receiver);
        assert_verified(&v, 1500);
        assert_eq!(v["mechanism"], m.reports_as, "{v}");
        assert_options(m, &ep, &v);
        assert_eq!(v["bytes"], 1500 * 1024, "{v}");
        assert_eq!(summary(&p.sender)["messages"], 1500);
        let first_out = if first == Role::Sender {
            &p.sender
        } else {
            &p.receiver
        };
        assert!(
            stderr(first_out).contains("waiting"),
            "{}: the first side says it waits: {}",
            m.label,
            stderr(first_out)
        );
        p.assert_all_gone(&ep);
    }
}

/// Pingpong in both start orders: the sender checks every echo and times them.
pub fn pingpong_either_order(m: &Mechanism) {
    for first in [Role::Sender, Role::Receiver] {
        let ep = m.endpoint("pp");
        let send = ["--mode", "pingpong", "-n", "300", "-s", "256"];
        let p = transfer(m, &ep, first, &send, &[]);
        assert_both_ok(&p.sender, &p.receiver);
        let v = summary(&p.sender);
        assert_verified(&v, 300);
        assert!(v["p50_ns"].as_u64().unwrap_or(0) > 0, "{v}");
        assert_verified(&summary(&p.receiver), 300);
        p.assert_all_gone(&ep);
    }
}

/// `run` (both sides from one command): every message, one summary, the receiver's;
/// and in pingpong, the sender's with ordered percentiles.
pub fn run_moves_every_message_intact(m: &Mechanism) {
    let ep = m.endpoint("run");
    let out = run(m.run(&ep).args(["-n", "2000", "-s", "700", "--json"]));
    assert_code(&out, 0);
    let v = summary(&out);
    assert_verified(&v, 2000);
    assert_eq!(v["mechanism"], m.runs_as, "{v}");
    assert_options(m, &ep, &v);
    assert!(v["mib_per_sec"].as_f64().unwrap_or(0.0) > 0.0, "{v}");
    assert_eq!(v["role"], "receiver", "{v}");
    assert_eq!(v["bytes"], 2000 * 700, "{v}");
    assert_eq!(stdout(&out).lines().count(), 1, "{}", stdout(&out));
    assert_all_gone(&ep.name, &stderr(&out), &[]);

    let ep = m.endpoint("run-pp");
    let out = run(m
        .run(&ep)
        .args(["--mode", "pingpong", "-n", "400", "-s", "64", "--json"]));
    assert_code(&out, 0);
    let v = summary(&out);
    assert_verified(&v, 400);
    assert_eq!(v["role"], "sender", "{v}");
    let ns = |k: &str| v[k].as_u64().unwrap_or_else(|| panic!("no {k}: {v}"));
    let (p50, p99, max) = (ns("p50_ns"), ns("p99_ns"), ns("max_ns"));
    assert!(0 < p50 && p50 <= p99 && p99 <= max, "{v}");
    assert_all_gone(&ep.name, &stderr(&out), &[]);
}

/// A file that is not a multiple of the message size arrives byte-identical. `sender`:
/// extra sender flags. Returns the receiver's summary.
pub fn file_is_byte_identical_with(m: &Mechanism, sender: &[&str]) -> serde_json::Value {
    let ep = m.endpoint("file");
    let data = random_bytes(1_000_003, 17);
    let (_in_dir, input) = temp_file(&data);
    let out_dir = tempfile::tempdir().expect("tempdir");
    let output = out_dir.path().join("copy.bin");
    let mut send = m.side(Role::Sender, &ep);
    send.args(sender)
        .args(["-s", "64K", "--timeout", "20", "--input"]);
    send.arg(&input);
    let mut recv = m.side(Role::Receiver, &ep);
    recv.args(["--json", "--timeout", "20", "--output"])
        .arg(&output);
    let (r, s, pids) = pair(&mut recv, &mut send);
    let p = Pair::of(Role::Receiver, r, s, pids);
    assert_both_ok(&p.sender, &p.receiver);
    assert_file_received(&p.receiver, &output, &data, 65536);
    p.assert_all_gone(&ep);
    summary(&p.receiver)
}

pub fn file_is_byte_identical(m: &Mechanism) {
    file_is_byte_identical_with(m, &[]);
}

/// `--raw` on both sides: generated payloads without frames, still checked. A raw
/// receiver may serve a foreign sender and need not announce itself: the sender starts
/// once the receiver's object exists (or, if it makes none, once it says it waits).
pub fn raw_generated_payloads_are_checked(m: &Mechanism) {
    let ep = m.endpoint("raw");
    let flags = [
        "--raw",
        "-n",
        "400",
        "-s",
        "300",
        "--json",
        "--timeout",
        "20",
    ];
    let mut recv = start_watched(m.side(Role::Receiver, &ep).args(flags));
    match m.object(&ep) {
        Some(path) if m.creators.contains(&Role::Receiver) => {
            wait_for_path(&path, Duration::from_secs(20))
        }
        _ => recv.wait_for("waiting", Duration::from_secs(20)),
    }
    let send = start_watched(m.side(Role::Sender, &ep).args(flags));
    let pids = vec![recv.id(), send.id()];
    let p = Pair::of(Role::Receiver, recv.finish(), send.finish(), pids);
    assert_both_ok(&p.sender, &p.receiver);
    let v = summary(&p.receiver);
    assert_eq!(v["payload"], "raw", "{v}");
    assert_eq!(v["bytes"], 400 * 300, "{v}");
    assert_verified(&v, 400);
    p.assert_all_gone(&ep);
}

/// A receiver whose flags contradict the sender's hello (`recv` against `send`) refuses
/// it before any message with exit 2, `error[mismatch]` and `says` (both values); the
/// sender finds its receiver gone, or had sent all before it left.
pub fn receiver_contradicting_the_hello_is_refused(
    m: &Mechanism,
    send: &[&str],
    recv: &[&str],
    says: &str,
) {
    let ep = m.endpoint("mismatch");
    let p = transfer(m, &ep, Role::Receiver, send, recv);
    assert_exit(&p.receiver, 2, &["error[mismatch]", says]);
    assert!(
        matches!(code(&p.sender.status), 0 | 4),
        "{}: {:?}\n{}",
        m.label,
        p.sender.status,
        stderr(&p.sender)
    );
    p.assert_all_gone(&ep);
}

/// A receiver expecting another seed is told the sender's from the hello: exit 2.
pub fn wrong_seed_is_named_from_the_hello(m: &Mechanism) {
    receiver_contradicting_the_hello_is_refused(
        m,
        &["-n", "50", "--seed", "1"],
        &["--seed", "2"],
        "--seed 2 but the sender sends 1",
    );
}

/// A side that starts and finds no peer within `--timeout` ends with exit 4, naming
/// its object, and leaves nothing.
pub fn no_peer_times_out_with_exit_4(m: &Mechanism) {
    use predicates::str::contains;
    for role in [Role::Receiver, Role::Sender] {
        let ep = m.endpoint("alone");
        let mut c = m.side(role, &ep);
        c.args(["--timeout", "0.5"]);
        let out = assert_cmd::Command::from_std(c)
            .timeout(WATCHDOG)
            .assert()
            .code(4)
            .stderr(contains("error[timeout]"))
            .stderr(contains(ep.named()))
            .stderr(contains("within 0.5 s"));
        assert_all_gone(&ep.name, &stderr(out.get_output()), &[]);
    }
}

/// Start the pair at `ep` for a transfer that would run for ever, and return
/// (sender, receiver) once data flows. `sender`: extra sender flags.
pub fn long_transfer(
    m: &Mechanism,
    ep: &Endpoint,
    sender: &[&str],
    timeout: &str,
) -> (Watched, Watched) {
    let mut recv = m.side(Role::Receiver, ep);
    recv.args(["--timeout", timeout]);
    if m.tcp {
        // No object whose removal says both ends met: -v shows the first reads.
        recv.arg("-v");
    }
    let mut recv = start_watched(&mut recv);
    recv.wait_for("waiting", Duration::from_secs(20));
    let mut send = m.side(Role::Sender, ep);
    send.args(sender)
        .args(["-n", "100000000", "-s", "4K", "--timeout", timeout]);
    let send = start_watched(&mut send);
    match m.object(ep) {
        // Both ends attached: the name is removed early.
        Some(path) => wait_for_gone(&path, Duration::from_secs(20)),
        None => recv.wait_for("read(fd", Duration::from_secs(20)),
    }
    std::thread::sleep(Duration::from_millis(300));
    (send, recv)
}

/// Kill the side in `victim`'s role mid-transfer: the survivor ends with exit 4, its
/// tag, and the words that name the peer (and how far it got), and cleans up.
pub fn killed_peer(m: &Mechanism, victim: Role, sender: &[&str]) {
    let ep = m.endpoint("kill");
    let (send, recv) = long_transfer(m, &ep, sender, "3");
    let pids = vec![send.id(), recv.id()];
    let (dead, survivor) = match victim {
        Role::Sender => (send, recv),
        Role::Receiver => (recv, send),
    };
    signal(dead.child(), Signal::SIGKILL);
    let dead = dead.finish_within(Duration::from_secs(30));
    assert_eq!(code(&dead.status), 137, "{}", stderr(&dead));
    let out = survivor.finish_within(Duration::from_secs(30));
    let err = stderr(&out);
    assert_eq!(code(&out.status), 4, "{}: {err}", m.label);
    let (tag, words) = m.gone(victim);
    assert!(err.contains(tag), "{}: tagged {tag}: {err}", m.label);
    for word in words {
        assert!(err.contains(word), "{}: says {word:?}: {err}", m.label);
    }
    if !m.tcp {
        assert!(
            err.contains(&ep.name),
            "{}: names the object: {err}",
            m.label
        );
    }
    assert!(!err.contains("panicked"), "{err}");
    assert_all_gone(&ep.name, &stderr_of(&[&dead, &out]), &pids);
}

pub fn killed_sender_ends_receiver_with_exit_4(m: &Mechanism) {
    killed_peer(m, Role::Sender, &[]);
}

pub fn killed_receiver_ends_sender_with_exit_4(m: &Mechanism) {
    killed_peer(m, Role::Receiver, &[]);
}

/// A sender stopped (SIGSTOP) mid-transfer: the receiver gives up after `--timeout`
/// with exit 4 and `error[timeout]`, and cleans up.
pub fn stopped_sender_times_out_the_receiver(m: &Mechanism) {
    let ep = m.endpoint("stop");
    let (send, recv) = long_transfer(m, &ep, &[], "1");
    let pids = vec![send.id(), recv.id()];
    signal(send.child(), Signal::SIGSTOP);
    let out = recv.finish_within(Duration::from_secs(30));
    signal(send.child(), Signal::SIGKILL);
    let send = send.finish();
    let err = stderr(&out);
    assert_eq!(code(&out.status), 4, "{}: {err}", m.label);
    assert!(err.contains("error[timeout]"), "{}: {err}", m.label);
    assert_all_gone(&ep.name, &stderr_of(&[&send, &out]), &pids);
}

/// SIGINT or SIGTERM to a side waiting with its object: it removes the object, says
/// so, and dies of the signal.
pub fn signals_while_waiting_remove_the_object(m: &Mechanism) {
    for &role in m.creators {
        for sig in [Signal::SIGINT, Signal::SIGTERM] {
            let ep = m.endpoint("sig");
            let path = m.object(&ep).expect("a creator makes an object");
            let mut child = start_watched(m.side(role, &ep).args(["--timeout", "60"]));
            child.wait_for("waiting", Duration::from_secs(20));
            assert!(object_exists(&path), "{} while waiting", path.display());
            signal(child.child(), sig);
            let pid = child.id();
            let out = child.finish_within(Duration::from_secs(20));
            assert_code(&out, 128 + sig as i32);
            let err = stderr(&out);
            assert!(err.contains(m.removed), "{} {role:?} {sig}: {err}", m.label);
            assert_all_gone(&ep.name, &err, &[pid]);
        }
    }
}

/// A file someone else made under the object's name: both sides refuse it with exit 1
/// (the creators naming it and why) and leave it as it was (the same file, bytes, mode).
pub fn squatter_is_refused_and_left_alone(m: &Mechanism) {
    let squat = m.squat.as_ref().expect("a squattable object");
    let ep = m.endpoint("squat");
    let path = m.object(&ep).expect("an object path");
    write_with_mode(&path, squat.data, squat.mode);
    let file = |st: nix::sys::stat::FileStat| (st.st_ino, st.st_uid);
    let before = file(object_stat(&path));
    for role in [Role::Receiver, Role::Sender] {
        let mut c = m.side(role, &ep);
        c.args(["--timeout", "1"]);
        let out = run(&mut c);
        let err = stderr(&out);
        assert_eq!(code(&out.status), 1, "{} {role:?}: {err}", m.label);
        if m.creators.contains(&role) {
            assert!(
                err.contains(squat.says) && err.contains(&ep.name),
                "{} {role:?}: {err}",
                m.label
            );
        }
        assert!(!err.contains("panicked"), "{err}");
        assert_untouched(&path, squat.data, squat.mode);
        assert_eq!(
            file(object_stat(&path)),
            before,
            "{} {role:?}: the squatter's file was replaced",
            m.label
        );
    }
    remove_object(&path);
    assert_no_leftovers(&ep.name);
}

/// `run`'s child killed by SIGKILL: the parent, its sender, reports it with exit 4.
pub fn killed_run_child_ends_parent(m: &Mechanism) {
    let ep = m.endpoint("run-kill");
    let mut c = m.run(&ep);
    c.args(["-n", "100000000", "-s", "4K", "--timeout", "3"]);
    let parent = start(&mut c);
    let child_pid = run_child(&parent, Duration::from_secs(10));
    if let Some(path) = m.object(&ep) {
        wait_for_gone(&path, Duration::from_secs(10));
    }
    std::thread::sleep(Duration::from_millis(300));
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child_pid), Signal::SIGKILL)
        .expect("kill the run's child");
    let out = finish_within(parent, Duration::from_secs(20));
    let err = stderr(&out);
    assert_eq!(code(&out.status), 4, "{}: {err}", m.label);
    assert!(err.contains("killed by SIGKILL"), "{}: {err}", m.label);
    assert_all_gone(&ep.name, &err, &[]);
}

/// `run --input - --output -`: stdout is stdin, byte for byte; the summary goes to
/// stderr.
pub fn stdin_to_stdout_through_run(m: &Mechanism) {
    let ep = m.endpoint("stdio");
    let data = random_bytes(300_001, 11);
    let mut c = m.run(&ep);
    c.args(["--input", "-", "--output", "-", "-s", "4K"]);
    assert_cmd::Command::from_std(c)
        .timeout(WATCHDOG)
        .write_stdin(data.clone())
        .assert()
        .code(0)
        .stdout(predicates::ord::eq(data))
        .stderr(predicates::str::contains("verified"));
    assert_no_leftovers(&ep.name);
}
