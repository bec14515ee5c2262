//! Attacks on the shared-memory pair by a peer that stops, crashes or plays with paths:
//! a side stopped inside its critical section, a crashed producer's leftovers met by a
//! consumer that starts first, symlinks and FIFOs where files are expected, another
//! user's helper queue, and a segment truncated under a running pair.
//!
//! The stop and crash points use debug-only test hooks of the binaries
//! (`IPC_TEST_STOP_IN_CRITICAL`, `IPC_TEST_STOP_BEFORE_PUBLISH`).

use integration_tests::*;
use nix::sys::signal::Signal;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const PROD: &str = "shm-producer";
const CONS: &str = "shm-consumer";
const APIS: [&str; 3] = ["posix", "sysv", "mmap"];
/// Long enough for any side that keeps its --timeout (2 s in these tests).
const LIMIT: Duration = Duration::from_secs(20);

fn side(bin: &str, api: &str, name: &str) -> Command {
    let mut c = cmd(bin);
    c.args(["--api", api, "--name", name]);
    c
}

/// The name that exists while a producer waits: the POSIX object, the SysV key file,
/// the mapped file.
fn object_path(api: &str, name: &str) -> PathBuf {
    match api {
        "posix" => Path::new("/dev/shm").join(name),
        "sysv" => std::env::temp_dir().join(format!("{name}.key")),
        "mmap" => std::env::temp_dir().join(format!("{name}.mmap")),
        _ => unreachable!("api {api}"),
    }
}

#[track_caller]
fn assert_ok(out: &Output, who: &str) {
    assert!(
        out.status.success(),
        "{who} exited {}: stdout: {}\nstderr: {}",
        code(&out.status),
        stdout(out),
        stderr(out)
    );
}

/// Kill a stopped (or running) side and reap it.
fn kill(w: Watched) -> Output {
    signal(w.child(), Signal::SIGKILL);
    w.finish_within(LIMIT)
}

/// Whether we may act as another user (root, with `setpriv`); when not, say why, and
/// under CI=true fail instead of skipping.
fn can_switch_user(test: &str) -> bool {
    let why = if !nix::unistd::geteuid().is_root() {
        Some("not root")
    } else if Command::new("setpriv")
        .arg("--version")
        .output()
        .map_or(true, |o| !o.status.success())
    {
        Some("no setpriv")
    } else {
        None
    };
    match why {
        None => true,
        Some(why) => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "{test}: {why}, and CI=true"
            );
            eprintln!("skipping {test}: {why}");
            false
        }
    }
}

// ---------------------------------------------------------------------------------
// A side stopped while it holds the ring's lock.

/// The producer stops (SIGSTOP, by the test hook) while it holds the ring's mutex to
/// wake the consumer, which sleeps for data. The consumer (--timeout 2) must end with
/// exit 4 and say the producer made no progress, not hang in the mutex.
#[test]
fn producer_stopped_holding_the_ring_lock_does_not_hang_the_consumer() {
    let name = unique("stop-crit");
    let mut prod = side(PROD, "posix", &name);
    prod.args(["--sync", "mutex", "--input", "-", "--timeout", "30"]);
    // The producer's input is a pipe the test holds, so it sends only when told.
    let (input, mut stdin) = std::io::pipe().expect("pipe");
    prod.env("IPC_TEST_STOP_IN_CRITICAL", "1")
        .stdin(Stdio::from(input));
    let mut p = start_watched(&mut prod);
    p.wait_for("waiting", LIMIT);
    let mut cons = side(CONS, "posix", &name);
    cons.args(["--timeout", "2", "--output", "/dev/null"]);
    let c = start_watched(&mut cons);
    // Let the consumer attach, take the hello and go to sleep for data; then one chunk
    // makes the producer wake it, and stop with the lock held.
    std::thread::sleep(Duration::from_millis(500));
    stdin.write_all(&[7u8; 100]).expect("write producer input");
    stdin.flush().expect("flush");
    let c = c.finish_within(LIMIT);
    drop(stdin);
    let p = kill(p);
    assert_eq!(code(&c.status), 4, "consumer: {}", stderr(&c));
    let err = stderr(&c);
    assert!(err.contains("made no progress"), "consumer: {err}");
    assert!(
        !stderr(&p).contains("panicked"),
        "producer: {}",
        stderr(&p)
    );
    assert_no_leftovers(&name);
}
