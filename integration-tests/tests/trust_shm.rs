//! Attacks on the shared-memory pair by a peer that stops, crashes or plays with paths:
//! a side stopped inside its critical section, a crashed producer's leftovers met by a
//! consumer that starts first, symlinks and FIFOs where files are expected, another
//! user's helper queue, and a segment truncated under a running pair.
//!
//! The stop and crash points use debug-only test hooks of the binaries
//! (`IPC_TEST_STOP_IN_CRITICAL`, `IPC_TEST_STOP_BEFORE_PUBLISH`).

use integration_tests::mechanism::shm;
use integration_tests::*;
use nix::sys::signal::Signal;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

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
    assert!(!stderr(&p).contains("panicked"), "producer: {}", stderr(&p));
    assert_no_leftovers(&name);
}

// ---------------------------------------------------------------------------------
// Paths that block or follow.

/// Make a FIFO at `path` (mode 0600).
fn mkfifo(path: &Path) {
    nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o600)).expect("mkfifo");
}

/// A reader blocked in `open(fifo, O_RDONLY)`: released only if some process opens the
/// FIFO for writing. `released()` tells whether that happened; `end()` releases it.
struct FifoProbe {
    path: PathBuf,
    done: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl FifoProbe {
    fn new(path: &Path) -> FifoProbe {
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (p, d) = (path.to_path_buf(), done.clone());
        let thread = std::thread::spawn(move || {
            let _f = std::fs::File::open(&p);
            d.store(true, std::sync::atomic::Ordering::SeqCst);
        });
        // Give the reader time to block in open (it is only a probe: if it is late,
        // the opens it should see are missed, so this can only hide a failure).
        std::thread::sleep(Duration::from_millis(200));
        FifoProbe {
            path: path.to_path_buf(),
            done,
            thread,
        }
    }

    fn released(&self) -> bool {
        std::thread::sleep(Duration::from_millis(100));
        self.done.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn end(self) {
        use std::os::unix::fs::OpenOptionsExt;
        let _w = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(nix::libc::O_NONBLOCK)
            .open(&self.path);
        self.thread.join().expect("probe thread");
    }
}

/// `--api mmap --file LINK`, LINK a symbolic link to a FIFO (another user's trap in a
/// shared directory): both sides refuse it with exit 1, naming the link, and never
/// open the FIFO. The same for a FIFO at the path itself.
#[test]
fn mmap_file_that_is_a_link_or_a_fifo_is_refused_unopened() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo");
    mkfifo(&fifo);
    let link = dir.path().join("seg");
    std::os::unix::fs::symlink(&fifo, &link).unwrap();
    for (path, what) in [(&link, "symbolic link"), (&fifo, "special file")] {
        for bin in [PROD, CONS] {
            let probe = FifoProbe::new(&fifo);
            let name = unique("mmap-link");
            let mut c = side(bin, "mmap", &name);
            c.arg("--file").arg(path).args(["--timeout", "2"]);
            let out = finish_within(start(&mut c), LIMIT);
            let opened = probe.released();
            probe.end();
            let err = stderr(&out);
            assert_eq!(code(&out.status), 1, "{bin} on a {what}: {err}");
            assert!(
                err.contains(what) && err.contains("not a regular file"),
                "{bin} on a {what}: {err}"
            );
            assert!(!opened, "{bin} opened the FIFO behind a {what}: {err}");
            assert!(
                std::fs::symlink_metadata(path).is_ok(),
                "{bin} removed the {what}"
            );
            assert_no_leftovers(&name);
        }
    }
}

/// `--output FIFO` that nobody reads: a plain open for writing blocks for ever. The
/// receiver must end with exit 4 within --timeout, naming the FIFO.
/// For the shm consumer and for pipe-pair's receiver (the code is shared).
#[test]
fn output_fifo_without_a_reader_does_not_block_past_the_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("out");
    mkfifo(&fifo);
    // shm-consumer, with its producer.
    let name = unique("out-fifo");
    let mut prod = side(PROD, "posix", &name);
    prod.args(["-n", "5", "--timeout", "4"]);
    let mut p = start_watched(&mut prod);
    p.wait_for("waiting", LIMIT);
    let mut cons = side(CONS, "posix", &name);
    cons.arg("--output").arg(&fifo).args(["--timeout", "2"]);
    let c = finish_within(start(&mut cons), LIMIT);
    let p = p.finish_within(LIMIT);
    let err = stderr(&c);
    assert_eq!(code(&c.status), 4, "consumer: {err}");
    assert!(
        err.contains(&fifo.display().to_string()) && err.contains("FIFO"),
        "consumer: {err}"
    );
    // (The producer may have sent its few messages into the ring and ended with 0.)
    assert!(
        [0, 4].contains(&code(&p.status)),
        "producer: {}",
        stderr(&p)
    );
    assert_no_leftovers(&name);
    // pipe-pair run: the receiver is its child; the run reports the failure.
    let mut run = cmd("pipe-pair");
    run.args(["run", "-n", "5", "--timeout", "2", "--output"])
        .arg(&fifo);
    let out = finish_within(start(&mut run), LIMIT);
    let err = stderr(&out);
    assert_ne!(code(&out.status), 0, "pipe-pair: {err}");
    assert!(err.contains("FIFO"), "pipe-pair: {err}");
}

/// The system's python (a per-user one, e.g. pyenv's, may be closed to `nobody`).
const PYTHON: &str = "/usr/bin/python3";

/// Run a few POSIX queue calls as root or as `nobody` through python's ctypes.
fn mq_py(as_nobody: bool, op: &str, name: &str) -> Output {
    const SCRIPT: &str = r#"
import ctypes, ctypes.util, os, sys
libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
rt = libc if hasattr(libc, "mq_unlink") else ctypes.CDLL("librt.so.1", use_errno=True)
rt.mq_open.argtypes = [ctypes.c_char_p, ctypes.c_int, ctypes.c_int, ctypes.c_void_p]
rt.mq_unlink.argtypes = [ctypes.c_char_p]
op, name = sys.argv[1], sys.argv[2].encode()
if op == "create":
    os.umask(0)
    q = rt.mq_open(name, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o666, None)
    sys.exit(0 if q >= 0 else os.strerror(ctypes.get_errno()))
if op == "exists":
    q = rt.mq_open(name, os.O_RDONLY, 0, None)
    sys.exit(0 if q >= 0 else 1)
if op == "unlink":
    sys.exit(0 if rt.mq_unlink(name) == 0 else 1)
"#;
    let mut c = if as_nobody {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", PYTHON]);
        c
    } else {
        Command::new(PYTHON)
    };
    c.args(["-c", SCRIPT, op, name]).output().expect("python3")
}

/// Another user's queue under the name of a `--sync mq` helper queue: the producer
/// refuses it (exit 1, naming the queue and its owner) and leaves it alone, instead of
/// unlinking it.
#[test]
fn another_users_helper_queue_is_refused_and_left_alone() {
    if !require_other_user("another_users_helper_queue_is_refused_and_left_alone") {
        return;
    }
    let name = unique("mq-squat");
    let queue = format!("/{name}.r0.ready");
    let made = mq_py(true, "create", &queue);
    assert!(made.status.success(), "create as nobody: {}", stderr(&made));
    let mut prod = side(PROD, "posix", &name);
    prod.args(["--sync", "mq", "--timeout", "2"]);
    let out = finish_within(start(&mut prod), LIMIT);
    let still = mq_py(false, "exists", &queue).status.success();
    mq_py(false, "unlink", &queue);
    let err = stderr(&out);
    assert_eq!(code(&out.status), 1, "producer: {err}");
    assert!(
        err.contains(&queue) && err.contains("uid 65534"),
        "producer: {err}"
    );
    assert!(still, "the producer removed another user's queue {queue}");
    assert_no_leftovers(&name);
}

// ---------------------------------------------------------------------------------
// Either side may start first after a crash.

/// Wait until process `pid` is stopped (state T in /proc/PID/stat).
#[track_caller]
fn wait_stopped(w: &mut Watched, limit: Duration) {
    let start = std::time::Instant::now();
    loop {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", w.id())).unwrap_or_default();
        // The state follows the parenthesised command name.
        let state = stat.rsplit_once(") ").map(|(_, r)| r.chars().next());
        if state == Some(Some('T')) {
            return;
        }
        assert!(
            !w.exited() && start.elapsed() < limit,
            "did not stop within {limit:?}: {}",
            w.stderr_so_far()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A producer is killed (-9) at `point`: "waiting" (published, waiting for a consumer),
/// or through the test hook, "create" (its object just created: POSIX and mmap of size
/// 0, SysV not attached) or "publish" (sized but not published). Then the consumer
/// starts first and a new producer after it: the consumer must wait for the live
/// producer rather than take the dead one's segment, and the new producer must reclaim
/// the leftover; both then move every message.
fn crashed_producer_then_consumer_first(api: &str, point: &str) {
    let name = unique(&format!("crash-{api}-{point}"));
    let mut dead = side(PROD, api, &name);
    dead.args(["--timeout", "30"]);
    if point != "waiting" {
        dead.env("IPC_TEST_STOP_BEFORE_PUBLISH", point);
    }
    let mut d = start_watched(&mut dead);
    if point == "waiting" {
        d.wait_for("waiting", LIMIT);
    } else {
        wait_stopped(&mut d, LIMIT);
    }
    kill(d);
    assert!(
        std::fs::symlink_metadata(shm(api).object_named(&name)).is_ok(),
        "the killed producer left nothing to reclaim"
    );
    let mut cons = side(CONS, api, &name);
    cons.args(["--timeout", "10", "--json"]);
    let mut c = start_watched(&mut cons);
    c.wait_for("waiting", LIMIT);
    // The consumer looked at the leftover for a while before a producer comes.
    std::thread::sleep(Duration::from_millis(300));
    let mut prod = side(PROD, api, &name);
    prod.args(["--timeout", "10", "-n", "50"]);
    let p = finish_within(start(&mut prod), LIMIT);
    let c = c.finish_within(LIMIT);
    assert_ok(&p, &format!("{api}/{point}: the new producer"));
    assert_ok(&c, &format!("{api}/{point}: the consumer started first"));
    assert_verified(&summary(&c), 50);
    assert_no_leftovers(&name);
}

// The producer killed at each point: while it waits, before it sized the segment,
// before it published the layout.
tests_over!(APIS =>
    producer_killed_while_waiting_then_consumer_first:
        crashed_producer_then_consumer_first("waiting"),
    producer_killed_before_sizing_then_consumer_first:
        crashed_producer_then_consumer_first("create"),
    producer_killed_before_publishing_then_consumer_first:
        crashed_producer_then_consumer_first("publish"),
);

// ---------------------------------------------------------------------------------
// A segment truncated under a running pair.

/// Another process of the user truncates the segment (through a descriptor it opened
/// while the name existed) under a running pair, while one side is stopped: the side
/// that waits for it must end with exit 1 and a message naming the truncation, not die
/// of SIGBUS. For both survivors, the sync kinds whose sleep does not touch the segment
/// (not sem, see below), --api posix and mmap (SysV segments cannot shrink).
#[test]
fn truncated_segment_ends_the_waiting_side_with_exit_1() {
    for (api, sync, stopped) in ["posix", "mmap"].iter().flat_map(|a| {
        // Not sem: a side asleep in sem_timedwait when the truncation comes dies of
        // SIGBUS inside glibc, which updates the semaphore as it leaves the wait (the
        // documented residual window).
        ["mutex", "mq", "spin"]
            .iter()
            .flat_map(move |s| [PROD, CONS].map(|b| (*a, *s, b)))
    }) {
        {
            let name = unique(&format!("trunc-{api}"));
            let mut prod = side(PROD, api, &name);
            prod.args(["-n", "100000000", "--timeout", "10", "--sync", sync]);
            let mut p = start_watched(&mut prod);
            p.wait_for("waiting", LIMIT);
            let seg = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(shm(api).object_named(&name))
                .expect("open the segment while it has a name");
            let mut cons = side(CONS, api, &name);
            cons.args(["--timeout", "10"]);
            let c = start_watched(&mut cons);
            // Let data flow, stop one side, and let the other drain the ring (or fill it)
            // and go to sleep before the truncation.
            std::thread::sleep(Duration::from_millis(500));
            let (victim, survivor) = if stopped == PROD { (p, c) } else { (c, p) };
            signal(victim.child(), Signal::SIGSTOP);
            std::thread::sleep(Duration::from_millis(300));
            seg.set_len(0).expect("truncate the segment");
            let out = survivor.finish_within(LIMIT);
            let v = kill(victim);
            drop(seg);
            let err = stderr(&out);
            let who = format!("{api}, --sync {sync}, {stopped} stopped: the survivor");
            assert_eq!(code(&out.status), 1, "{who}: {err}");
            assert!(err.contains("truncated"), "{who}: {err}");
            assert!(!stderr(&v).contains("panicked"), "{}", stderr(&v));
            assert_no_leftovers(&name);
        }
    }
}
