//! Every check a receiver makes, made to fire: the real sender of each mechanism turns
//! into a peer that lies (the debug-only `IPC_TEST_TAMPER` hook in workload.rs garbles
//! one message: a flipped byte, a bad CRC, magic or length, a truncated, dropped,
//! duplicated or reordered frame), and the receiver must exit 3 and say what it found.
//! Each scenario is written once and runs over every mechanism of the table below;
//! a check that is removed or weakened turns at least one row red.

use integration_tests::mechanism::free_port;
use integration_tests::*;
use std::process::{Command, Output};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

/// Spinning shared-memory sides must not share the 2-core machine with each other.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

const COUNT: u64 = 8;
const SIZE: usize = 64;
/// The message the hook garbles: neither the first nor the last.
const AT: u64 = 3;

/// How a mechanism is started: both sides as their own processes, or one `run`.
enum Start {
    Pair {
        send: Vec<&'static str>,
        recv: Vec<&'static str>,
    },
    Run(&'static str),
    Tcp,
}

/// One row of the table: a mechanism and variant, with the flags both sides get.
struct Mech {
    label: &'static str,
    start: Start,
    /// `--raw` works on it.
    raw: bool,
    /// The sender builds messages in place (shared memory `--zero-copy`).
    zero_copy: bool,
}

fn pair(label: &'static str, send: &[&'static str], recv: &[&'static str]) -> Mech {
    Mech {
        label,
        start: Start::Pair {
            send: send.to_vec(),
            recv: recv.to_vec(),
        },
        raw: true,
        zero_copy: false,
    }
}

/// Every mechanism a receiver checks frames on.
fn mechanisms() -> Vec<Mech> {
    let shm = |label, flags: &[&'static str]| {
        let send = [&["shm-producer"][..], flags].concat();
        // The consumer names the segment the same way: the same --api.
        let api: Vec<&'static str> = flags
            .windows(2)
            .find(|w| w[0] == "--api")
            .map_or(vec![], |w| w.to_vec());
        let recv = [&["shm-consumer"][..], &api].concat();
        let mut m = pair(label, &send, &recv);
        m.zero_copy = flags.contains(&"--zero-copy");
        m
    };
    let mut v = vec![
        pair("FIFO", &["pipe-pair", "send"], &["pipe-pair", "recv"]),
        Mech {
            label: "anonymous pipe (run)",
            start: Start::Run("pipe-pair"),
            raw: false,
            zero_copy: false,
        },
        pair(
            "mq posix",
            &["mq-pair", "send", "--api", "posix"],
            &["mq-pair", "recv", "--api", "posix"],
        ),
        pair(
            "mq sysv",
            &["mq-pair", "send", "--api", "sysv"],
            &["mq-pair", "recv", "--api", "sysv"],
        ),
    ];
    for ty in ["stream", "dgram", "seqpacket"] {
        v.push(pair(
            ty,
            &["socket-pair", "send", "--type", ty],
            &["socket-pair", "recv", "--type", ty],
        ));
    }
    v.push(Mech {
        label: "TCP",
        start: Start::Tcp,
        raw: true,
        zero_copy: false,
    });
    v.push(Mech {
        label: "socketpair (run)",
        start: Start::Run("socket-pair"),
        raw: false,
        zero_copy: false,
    });
    v.push(shm(
        "shm posix mutex",
        &["--api", "posix", "--sync", "mutex"],
    ));
    v.push(shm("shm posix sem", &["--api", "posix", "--sync", "sem"]));
    v.push(shm("shm sysv mq", &["--api", "sysv", "--sync", "mq"]));
    v.push(shm("shm mmap spin", &["--api", "mmap", "--sync", "spin"]));
    v.push(shm(
        "shm pool",
        &["--segments", "3", "--segment-size", "8K"],
    ));
    v.push(shm(
        "shm zero-copy",
        &["--api", "posix", "--sync", "spin", "--zero-copy"],
    ));
    v
}

/// Run `m` with `both` flags on both sides, `sender_only` flags and `env` on the sender;
/// return (sender, receiver) output (`run`: the one process's output twice).
fn transfer(
    m: &Mech,
    both: &[&str],
    sender_only: &[&str],
    env: &[(&str, &str)],
) -> (Output, Output) {
    let name = unique("chk");
    let n = COUNT.to_string();
    let s = SIZE.to_string();
    let flow = [
        "-n",
        n.as_str(),
        "-s",
        s.as_str(),
        "--timeout",
        "20",
        "--json",
    ];
    let (mut send, mut recv): (Command, Option<Command>) = match &m.start {
        Start::Pair { send, recv } => {
            let mut a = cmd(send[0]);
            a.args(&send[1..]).args(["--name", &name]);
            let mut b = cmd(recv[0]);
            b.args(&recv[1..]).args(["--name", &name]);
            (a, Some(b))
        }
        Start::Run(bin) => {
            let mut a = cmd(bin);
            a.arg("run");
            (a, None)
        }
        Start::Tcp => {
            let addr = format!("127.0.0.1:{}", free_port());
            let mut a = cmd("socket-pair");
            a.args(["send", "--tcp", &addr]);
            let mut b = cmd("socket-pair");
            b.args(["recv", "--tcp", &addr]);
            (a, Some(b))
        }
    };
    send.args(flow)
        .args(both)
        .args(sender_only)
        .envs(env.iter().copied());
    let Some(recv) = recv.as_mut() else {
        let out = finish_within(start(&mut send), WATCHDOG);
        assert_no_leftovers(&name);
        return (out.clone(), out);
    };
    // The receiver is told the count and size too (a raw receiver needs them).
    recv.args(flow).args(both);
    // The receiver first: it says it waits once its object exists.
    let mut r = start_watched(recv);
    // Best effort, not required: either side may start first.
    for _ in 0..300 {
        if r.stderr_so_far().contains("waiting") || r.exited() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let s = start(&mut send);
    let (s, r) = (finish_within(s, WATCHDOG), r.finish_within(WATCHDOG));
    assert_no_leftovers(&name);
    (s, r)
}

/// The receiver's `--json` summary (`run` prints both sides': the receiver's is taken).
#[track_caller]
fn receiver_summary(out: &Output) -> serde_json::Value {
    stdout(out)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["role"] == "receiver")
        .unwrap_or_else(|| panic!("no receiver summary\n{}\n{}", stdout(out), stderr(out)))
}

/// What the receiver must report for a garbled message.
enum Expect {
    /// Exit 3 with the summary's counts (received, lost, duplicated, corrupted).
    Counts(u64, u64, u64, u64),
    /// Exit 3 with an error that says one of these.
    Refused(&'static [&'static str]),
    /// Exit 3, with whatever error the receiver found first (it depends on how the
    /// mechanism frames messages: a stream loses step, a message channel sees a short one).
    Exit3,
}

struct Scenario {
    tamper: &'static str,
    /// `--raw` on both sides.
    raw: bool,
    /// Send a file (its frames carry a CRC) instead of generated payloads.
    file: bool,
    expect: Expect,
}

const N: u64 = COUNT;

fn generated(tamper: &'static str, expect: Expect) -> Scenario {
    Scenario {
        tamper,
        raw: false,
        file: false,
        expect,
    }
}

#[track_caller]
fn check(label: &str, sc: &Scenario, s: &Output, r: &Output) {
    let what = format!("{label} / {} raw={} file={}", sc.tamper, sc.raw, sc.file);
    let err = stderr(r);
    assert_eq!(code(&r.status), 3, "{what}: receiver exit\n{err}");
    match sc.expect {
        Expect::Counts(rec, lost, dup, bad) => {
            let v = receiver_summary(r);
            assert_eq!(v["verified"], false, "{what}: {v}");
            let got = [
                &v["received"],
                &v["lost"],
                &v["duplicated"],
                &v["corrupted"],
            ];
            assert_eq!(got, [rec, lost, dup, bad], "{what}: {v}");
            assert!(err.contains("data failed verification"), "{what}: {err}");
        }
        Expect::Refused(needles) => {
            assert!(needles.iter().any(|n| err.contains(n)), "{what}: {err}")
        }
        Expect::Exit3 => assert!(err.contains(": error[corrupt]: "), "{what}: {err}"),
    }
    // The sender did its part: 0, or 4 when the receiver stopped reading early.
    let sc_code = code(&s.status);
    assert!(
        matches!(sc_code, 0 | 3 | 4),
        "{what}: sender {sc_code}\n{}",
        stderr(s)
    );
}

/// Run one scenario over every mechanism of the table it applies to.
fn run_scenario(sc: Scenario) {
    let _serial = serial();
    let data = random_bytes(COUNT as usize * SIZE, 7);
    let (_dir, file) = temp_file(&data);
    let both: &[&str] = if sc.raw { &["--raw"] } else { &[] };
    let sender_only: Vec<&str> = if sc.file {
        vec!["--input", file.to_str().unwrap()]
    } else {
        vec![]
    };
    let spec = format!("{}:{AT}", sc.tamper);
    let env = [("IPC_TEST_TAMPER", spec.as_str())];
    for m in only(mechanisms(), |m| m.label.to_string()) {
        // --zero-copy builds generated, framed payloads only.
        if (sc.raw && !m.raw) || ((sc.file || sc.raw) && m.zero_copy) {
            continue;
        }
        let (s, r) = transfer(&m, both, &sender_only, &env);
        eprintln!("{}: {spec} -> receiver exit {}", m.label, code(&r.status));
        check(m.label, &sc, &s, &r);
    }
}

#[test]
fn a_flipped_payload_byte_is_corrupted() {
    run_scenario(generated("flip", Expect::Counts(N - 1, 0, 0, 1)));
}

#[test]
fn a_dropped_message_is_lost() {
    run_scenario(generated("drop", Expect::Counts(N - 1, 1, 0, 0)));
}

#[test]
fn a_duplicated_message_is_counted_once() {
    run_scenario(generated("dup", Expect::Counts(N, 0, 1, 0)));
}

#[test]
fn a_reordered_message_is_caught() {
    // In order: message AT+1 first (so AT is counted lost), then AT (behind: a duplicate).
    run_scenario(generated("swap", Expect::Counts(N - 1, 1, 1, 0)));
}

#[test]
fn a_bad_magic_is_refused() {
    // A pool slot frames what it is given itself: the whole garbled frame is its
    // payload, longer than the announced message size.
    let pool = format!("announces {} payload bytes", 24 + SIZE);
    run_scenario(generated(
        "magic",
        Expect::Refused(vec!["bad magic", &*pool.leak()].leak()),
    ));
}

#[test]
fn a_bad_length_is_refused() {
    let announced = format!("announces {} payload bytes", SIZE + 1);
    run_scenario(generated(
        "length",
        Expect::Refused(vec![&*announced.leak()].leak()),
    ));
}

#[test]
fn a_truncated_frame_is_caught() {
    run_scenario(generated("truncate", Expect::Exit3));
}

#[test]
fn a_file_frame_with_a_bad_crc_is_corrupted() {
    run_scenario(Scenario {
        tamper: "crc",
        raw: false,
        file: true,
        expect: Expect::Counts(N - 1, 0, 0, 1),
    });
}

#[test]
fn raw_bytes_that_differ_are_corrupted() {
    run_scenario(Scenario {
        tamper: "flip",
        raw: true,
        file: false,
        expect: Expect::Counts(N - 1, 0, 0, 1),
    });
}
