//! A killed peer is detected, not timed out: one side SIGKILLs itself after a seeded
//! number of messages (the debug-only `IPC_TEST_KILL_AFTER` hook in workload.rs), every
//! side gets a long `--timeout`, and the survivor must say the peer is gone (exit 4) with
//! a message that is not the timeout's. Where only the timeout can tell (see `TIMEOUT_ONLY`),
//! the test runs with a short timeout and checks the timeout's message instead.
//!
//! The kill points come from `CHECKS_SEED` (printed; set it to replay a run).

use integration_tests::mechanism::Role;
use integration_tests::*;
use std::process::{Command, Output};
use std::sync::{Mutex, MutexGuard};

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Far longer than detection takes: a survivor that only times out says "30.0 s".
const LONG: &str = "30";
/// For the cases only the timeout can tell.
const SHORT: &str = "3";

/// One mechanism: the two command lines (program and flags, `--name` added here).
struct Mech {
    label: String,
    send: Vec<String>,
    recv: Vec<String>,
    tcp: bool,
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn mechanisms() -> Vec<Mech> {
    let mut v = Vec::new();
    let mut pair = |label: String, send: &[&str], recv: &[&str], tcp: bool| {
        v.push(Mech {
            label,
            send: strings(send),
            recv: strings(recv),
            tcp,
        })
    };
    pair(
        "FIFO".into(),
        &["pipe-pair", "send"],
        &["pipe-pair", "recv"],
        false,
    );
    for api in ["posix", "sysv"] {
        let (s, r) = (
            ["mq-pair", "send", "--api", api],
            ["mq-pair", "recv", "--api", api],
        );
        pair(format!("mq {api}"), &s, &r, false);
    }
    for ty in ["stream", "dgram", "seqpacket"] {
        let s = ["socket-pair", "send", "--type", ty];
        let r = ["socket-pair", "recv", "--type", ty];
        pair(format!("unix {ty}"), &s, &r, false);
    }
    pair(
        "TCP".into(),
        &["socket-pair", "send"],
        &["socket-pair", "recv"],
        true,
    );
    for (api, syncs) in [
        ("posix", &["mutex", "sem", "mq", "spin"][..]),
        ("sysv", &["mutex", "sem", "mq", "spin"][..]),
        ("mmap", &["mutex", "spin"][..]),
    ] {
        for sync in syncs {
            let s = ["shm-producer", "--api", api, "--sync", sync];
            pair(
                format!("shm {api} --sync {sync}"),
                &s,
                &["shm-consumer", "--api", api],
                false,
            );
        }
    }
    let s = ["shm-producer", "--segments", "3", "--segment-size", "8K"];
    pair("shm pool".into(), &s, &["shm-consumer"], false);
    let s = ["shm-producer", "--sync", "spin", "--zero-copy"];
    pair("shm zero-copy".into(), &s, &["shm-consumer"], false);
    v
}

/// (mechanism label, dead side): nothing tells the survivor but the silence, so it
/// ends by its timeout. A datagram receiver has no connection to see close; a message
/// queue outlives both its users, so a receiver sees an empty queue and a sender a
/// full one, as with a stopped peer.
const TIMEOUT_ONLY: [(&str, Role); 5] = [
    ("mq posix", Role::Sender),
    ("mq posix", Role::Receiver),
    ("mq sysv", Role::Sender),
    ("mq sysv", Role::Receiver),
    ("unix dgram", Role::Sender),
];

fn timeout_only(label: &str, dead: Role) -> bool {
    TIMEOUT_ONLY.contains(&(label, dead))
}

/// splitmix64 over the seed: the kill points.
struct Rng(u64);

impl Rng {
    fn from_env() -> Rng {
        let seed = std::env::var("CHECKS_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0x5eed_2026);
        eprintln!("kill points: CHECKS_SEED={seed} (set it to replay this run)");
        Rng(seed)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (z ^ (z >> 31)) % n
    }
}

/// The number in "after N messages", if the text has one.
fn progress(text: &str) -> Option<u64> {
    text.match_indices("after ").find_map(|(i, _)| {
        let rest = &text[i + 6..];
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        (!digits.is_empty() && rest[digits.len()..].starts_with(" messages"))
            .then(|| digits.parse().ok())
            .flatten()
    })
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// Run `m` with `dead` killing itself after `n` messages; return (victim, survivor).
fn trial(m: &Mech, dead: Role, n: u64, timeout: &str) -> (Output, Output) {
    let name = unique("chkd");
    let addr = format!("127.0.0.1:{}", free_port());
    let common = |argv: &[String]| {
        let mut c = cmd(&argv[0]);
        c.args(&argv[1..]).args(["--timeout", timeout, "-s", "64"]);
        if m.tcp {
            c.args(["--tcp", &addr]);
        } else {
            c.args(["--name", &name]);
        }
        c
    };
    let (mut s, mut r): (Command, Command) = (common(&m.send), common(&m.recv));
    s.args(["-n", "100000000"]);
    let spec = format!("{}:{n}", dead.hook());
    s.env("IPC_TEST_KILL_AFTER", &spec);
    r.env("IPC_TEST_KILL_AFTER", &spec);
    let rc = start(&mut r);
    let sc = start(&mut s);
    let (so, ro) = (finish_within(sc, WATCHDOG), finish_within(rc, WATCHDOG));
    assert_no_leftovers(&name);
    match dead {
        Role::Sender => (so, ro),
        Role::Receiver => (ro, so),
    }
}

/// What is wrong with the outcome of one trial, if anything.
fn check(
    label: &str,
    dead: Role,
    n: u64,
    victim: &Output,
    survivor: &Output,
    timeout: &str,
) -> Result<(), String> {
    let what = format!("{label}: the {dead:?} killed after {n} messages");
    let err = stderr(survivor);
    if code(&victim.status) != 128 + 9 {
        return Err(format!(
            "{what}: the victim exited {}\n{}",
            code(&victim.status),
            stderr(victim)
        ));
    }
    if code(&survivor.status) != 4 {
        return Err(format!(
            "{what}: the survivor exited {}\n{err}",
            code(&survivor.status)
        ));
    }
    let line = err
        .lines()
        .find(|l| l.contains(": error["))
        .ok_or_else(|| format!("{what}: no error line\n{err}"))?;
    let timed_out = line.contains(&format!("{timeout}.0 s")) || line.contains("error[timeout]");
    if timeout == LONG {
        if timed_out {
            return Err(format!(
                "{what}: told by the timeout, not as a death: {line}"
            ));
        }
        if !dead.words().iter().any(|w| line.contains(w)) {
            return Err(format!(
                "{what}: the message does not name the {dead:?}: {line}"
            ));
        }
    } else if !timed_out {
        return Err(format!(
            "{what}: only the timeout can tell, and should say so: {line}"
        ));
    }
    let got = progress(line).ok_or_else(|| format!("{what}: no 'after N messages': {line}"))?;
    // Everything a dead sender sent was made visible before it died; a dead receiver's
    // sender may have sent more than it took.
    let ok = if dead == Role::Sender {
        got == n
    } else {
        got >= n
    };
    if !ok {
        return Err(format!("{what}: the survivor counts {got}: {line}"));
    }
    Ok(())
}

fn kill_each(dead: Role) {
    let _serial = serial();
    let mut rng = Rng::from_env();
    let mut failed = Vec::new();
    for m in only(mechanisms(), |m| m.label.to_string()) {
        let n = 1 + rng.below(200);
        let timeout = if timeout_only(&m.label, dead) {
            SHORT
        } else {
            LONG
        };
        let (v, s) = trial(&m, dead, n, timeout);
        let verdict = check(&m.label, dead, n, &v, &s, timeout);
        eprintln!(
            "{}: {dead:?} killed after {n} messages: {verdict:?}",
            m.label
        );
        failed.extend(verdict.err());
    }
    assert!(
        failed.is_empty(),
        "{} failed:\n{}",
        failed.len(),
        failed.join("\n")
    );
}

#[test]
fn a_killed_sender_is_reported_gone_not_timed_out() {
    kill_each(Role::Sender);
}

#[test]
fn a_killed_receiver_is_reported_gone_not_timed_out() {
    kill_each(Role::Receiver);
}
