//! The shared-memory pair end to end, beyond the scenarios every mechanism shares
//! (tests/scenarios.rs): `shm-producer` and `shm-consumer` as real processes, over POSIX,
//! SysV and mapped-file segments, with every sync kind, in both modes and both start
//! orders; faults (killed peers for each sync kind, live and squatted names, corrupted
//! segments); and after every test, the leak checks: nothing named after the test in
//! /tmp, /dev/shm or /dev/mqueue, and no SysV segment with the test's key.
//!
//! SysV processes run with `-v`, so their narration names the key (`ftok(...) = 0x49...`)
//! that the leak check looks for; segments are also matched by creator pid.

use integration_tests::mechanism::{shm, Role, SHM_POSIX};
use integration_tests::scenario::{killed_peer, receiver_contradicting_the_hello_is_refused};
use integration_tests::*;
use nix::sys::signal::Signal;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

const PROD: &str = "shm-producer";
const CONS: &str = "shm-consumer";

/// The machine has 2 cores: pairs whose sides spin must not run alongside each other.
static LOCK: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// Hold [`LOCK`] for a test whose sides spin.
fn serial_if_spin(sync: &str) -> Option<MutexGuard<'static, ()>> {
    (sync == "spin").then(serial)
}

const APIS: [&str; 3] = ["posix", "sysv", "mmap"];

/// A side of the pair on segment `name` with `--api api`; SysV sides narrate (`-v`)
/// so the key shows for the leak check.
fn side(bin: &str, api: &str, name: &str) -> Command {
    let mut c = cmd(bin);
    c.args(["--api", api, "--name", name]);
    if api == "sysv" {
        c.arg("-v");
    }
    c
}

/// A SysV test's narration must name its key, or its leak check would check nothing.
#[track_caller]
fn assert_key_narrated(api: &str, narration: &str) {
    if api == "sysv" {
        assert!(
            !sysv_keys_in(narration).is_empty(),
            "no ftok key in: {narration}"
        );
    }
}

#[track_caller]
fn assert_no_panic(out: &Output) {
    let err = stderr(out);
    assert!(
        !err.contains("panicked") && code(&out.status) != 101,
        "panic: {err}"
    );
}

// ---------------------------------------------------------------------------------
// 1, 3. Every API x sync kind x mode, as two processes, in both start orders.

fn transfer(api: &str, sync: &str, mode: &str, producer_first: bool) {
    let _spin = serial_if_spin(sync);
    let name = unique(&format!("{api}-{sync}-{mode}"));
    let (n, size) = if mode == "stream" {
        (2000u64, 1024u64)
    } else {
        (300, 512)
    };
    let (n_s, size_s) = (n.to_string(), size.to_string());
    let mut prod = side(PROD, api, &name);
    prod.args(["--sync", sync, "--mode", mode, "-n", &n_s, "-s", &size_s]);
    prod.args(["--json", "--timeout", "30"]);
    let mut cons = side(CONS, api, &name);
    cons.args(["--json", "--timeout", "30"]);
    let (prod_out, cons_out, pids) = if producer_first {
        pair(&mut prod, &mut cons)
    } else {
        let (c, p, pids) = pair(&mut cons, &mut prod);
        (p, c, pids)
    };
    assert_both_ok(&prod_out, &cons_out);
    let first = if producer_first { &prod_out } else { &cons_out };
    assert!(
        stderr(first).contains("waiting up to"),
        "the first side says it waits: {}",
        stderr(first)
    );

    let c = summary(&cons_out);
    assert_verified(&c, n);
    assert_eq!(c["role"], "receiver", "{c}");
    assert_eq!(c["mechanism"], "shm", "{c}");
    assert_eq!(c["mode"], mode, "{c}");
    assert_eq!(c["size"], size, "{c}");
    assert_eq!(c["bytes"], n * size, "{c}");
    assert_eq!(c["options"]["api"], api, "{c}");
    assert_eq!(
        c["options"]["sync"], sync,
        "the consumer learns the sync kind: {c}"
    );
    assert_eq!(c["options"]["name"], name.as_str(), "{c}");

    let p = summary(&prod_out);
    assert_eq!(p["role"], "sender", "{p}");
    assert_eq!(p["messages"], n, "{p}");
    assert_eq!(p["options"]["sync"], sync, "{p}");
    if mode == "pingpong" {
        // The sender checks the echoes and times the round trips.
        assert_verified(&p, n);
        let (p50, p99, max) = (
            p["p50_ns"].as_u64().unwrap(),
            p["p99_ns"].as_u64().unwrap(),
            p["max_ns"].as_u64().unwrap(),
        );
        assert!(0 < p50 && p50 <= p99 && p99 <= max, "{p}");
    }
    let narration = stderr_of(&[&prod_out, &cons_out]);
    assert_key_narrated(api, &narration);
    assert_all_gone(&name, &narration, &pids);
}

macro_rules! matrix {
    ($($test:ident: $api:literal, $sync:literal, $mode:literal, $producer_first:literal;)*) => {
        $(
            #[test]
            fn $test() {
                transfer($api, $sync, $mode, $producer_first);
            }
        )*
    };
}

// Each API and mode sees both start orders (mutex, sem one way; mq, spin the other).
matrix! {
    posix_mutex_stream: "posix", "mutex", "stream", true;
    posix_sem_stream: "posix", "sem", "stream", true;
    posix_mq_stream: "posix", "mq", "stream", false;
    posix_spin_stream: "posix", "spin", "stream", false;
    posix_mutex_pingpong: "posix", "mutex", "pingpong", false;
    posix_sem_pingpong: "posix", "sem", "pingpong", false;
    posix_mq_pingpong: "posix", "mq", "pingpong", true;
    posix_spin_pingpong: "posix", "spin", "pingpong", true;
    sysv_mutex_stream: "sysv", "mutex", "stream", true;
    sysv_sem_stream: "sysv", "sem", "stream", true;
    sysv_mq_stream: "sysv", "mq", "stream", false;
    sysv_spin_stream: "sysv", "spin", "stream", false;
    sysv_mutex_pingpong: "sysv", "mutex", "pingpong", false;
    sysv_sem_pingpong: "sysv", "sem", "pingpong", false;
    sysv_mq_pingpong: "sysv", "mq", "pingpong", true;
    sysv_spin_pingpong: "sysv", "spin", "pingpong", true;
    mmap_mutex_stream: "mmap", "mutex", "stream", true;
    mmap_sem_stream: "mmap", "sem", "stream", true;
    mmap_mq_stream: "mmap", "mq", "stream", false;
    mmap_spin_stream: "mmap", "spin", "stream", false;
    mmap_mutex_pingpong: "mmap", "mutex", "pingpong", false;
    mmap_sem_pingpong: "mmap", "sem", "pingpong", false;
    mmap_mq_pingpong: "mmap", "mq", "pingpong", true;
    mmap_spin_pingpong: "mmap", "spin", "pingpong", true;
}

#[test]
fn human_summary_names_the_segment() {
    let name = unique("human");
    let (cons, prod, pids) = pair(
        cmd(CONS).args(["--name", &name, "--timeout", "30"]),
        cmd(PROD).args(["--name", &name, "-n", "10", "--timeout", "30"]),
    );
    assert_both_ok(&prod, &cons);
    let s = stdout(&cons);
    assert!(s.starts_with("shm receiver"), "{s}");
    assert!(s.contains("api=posix") && s.contains("sync=mutex"), "{s}");
    assert_verified_line(&cons, 10);
    assert_all_gone(&name, "", &pids);
}

// ---------------------------------------------------------------------------------
// 4. Mode 0600 while in use.

#[test]
fn segments_are_created_with_mode_0600() {
    use std::os::unix::fs::MetadataExt;
    let me = nix::unistd::geteuid().as_raw();
    for api in APIS {
        let name = unique(&format!("mode-{api}"));
        let mut prod = start_watched(side(PROD, api, &name).args([
            "-n",
            "20",
            "--segment-size",
            "64K",
            "--timeout",
            "60",
        ]));
        prod.wait_for("waiting", Duration::from_secs(20));
        let path = shm(api).object_named(&name);
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.mode() & 0o777, 0o600, "{}", path.display());
        assert_eq!(meta.uid(), me, "{}", path.display());
        if api != "sysv" {
            assert_eq!(meta.len(), 65536, "{}", path.display());
        } else {
            let ours: Vec<SysvShm> = sysv_shm_segments()
                .into_iter()
                .filter(|s| s.cpid == prod.id())
                .collect();
            assert_eq!(ours.len(), 1, "{ours:?}");
            let seg = &ours[0];
            assert_eq!(
                (seg.perms, seg.uid, seg.size),
                (0o600, me, 65536),
                "{seg:?}"
            );
            assert_eq!(
                sysv_keys_in(&prod.stderr_so_far()),
                vec![seg.key],
                "the narrated key is the segment's"
            );
            // And as a user sees it.
            let ipcs = Command::new("ipcs").arg("-m").output().unwrap();
            let key = format!("{:#010x}", seg.key);
            let line = String::from_utf8_lossy(&ipcs.stdout)
                .lines()
                .find(|l| l.starts_with(&key))
                .map(str::to_string)
                .unwrap_or_else(|| panic!("ipcs -m does not show {key}"));
            let cols: Vec<&str> = line.split_whitespace().collect();
            assert_eq!(cols[3], "600", "ipcs -m: {line}");
            assert_eq!(cols[4], "65536", "ipcs -m: {line}");
        }
        let cons = run(side(CONS, api, &name).args(["--json", "--timeout", "30"]));
        let prod_pid = prod.id();
        let prod = prod.finish();
        assert_both_ok(&prod, &cons);
        assert_verified(&summary(&cons), 20);
        assert_all_gone(&name, &stderr_of(&[&prod, &cons]), &[prod_pid]);
    }
}

// ---------------------------------------------------------------------------------
// 5. A killed peer ends the survivor with exit 4, for every sync kind.

macro_rules! kills {
    ($($test:ident: $victim:ident, $api:literal, $sync:literal;)*) => {
        $(
            #[test]
            fn $test() {
                let _spin = serial_if_spin($sync);
                killed_peer(shm($api), Role::$victim, &["--sync", $sync]);
            }
        )*
    };
}

kills! {
    killed_producer_mutex: Sender, "posix", "mutex";
    killed_producer_sem: Sender, "sysv", "sem";
    killed_producer_mq: Sender, "mmap", "mq";
    killed_producer_spin: Sender, "sysv", "spin";
    killed_consumer_mutex: Receiver, "sysv", "mutex";
    killed_consumer_sem: Receiver, "mmap", "sem";
    killed_consumer_mq: Receiver, "posix", "mq";
    killed_consumer_spin: Receiver, "mmap", "spin";
}

// ---------------------------------------------------------------------------------
// 6. SIGINT and SIGTERM to a waiting producer remove everything (the shared scenario);
// here, with `--sync mq` in pingpong, also its four helper queues and the SysV segment.

#[test]
fn interrupted_waiting_producer_removes_everything() {
    for api in APIS {
        for (sig, sync) in [(Signal::SIGINT, "mq"), (Signal::SIGTERM, "mq")] {
            let name = unique(&format!("sig-{api}"));
            let mut prod = start_watched(side(PROD, api, &name).args([
                "--sync",
                sync,
                "--mode",
                "pingpong",
                "--timeout",
                "60",
            ]));
            prod.wait_for("waiting", Duration::from_secs(20));
            assert!(shm(api).object_named(&name).exists());
            if sync == "mq" {
                for q in ["r0.ready", "r0.ok", "r1.ready", "r1.ok"] {
                    let p = Path::new(MQUEUE_DIR).join(format!("{name}.{q}"));
                    assert!(object_exists(&p), "{} is missing", p.display());
                }
            }
            let pid = prod.id();
            if api == "sysv" {
                assert!(
                    sysv_shm_segments().iter().any(|s| s.cpid == pid),
                    "the SysV segment exists while waiting"
                );
            }
            signal(prod.child(), sig);
            let out = prod.finish_within(Duration::from_secs(20));
            assert_code(&out, 128 + sig as i32);
            let err = stderr(&out);
            assert!(err.contains("removed"), "{api} {sig}: {err}");
            assert_all_gone(&name, &err, &[pid]);
        }
    }
}

// ---------------------------------------------------------------------------------
// 7. A live segment is refused (a stale one is replaced: tests/faults.rs, crashed runs).

#[test]
fn live_segment_is_refused_by_a_second_producer() {
    for api in APIS {
        let name = unique(&format!("live-{api}"));
        let mut first =
            start_watched(side(PROD, api, &name).args(["-n", "100", "--json", "--timeout", "60"]));
        first.wait_for("waiting", Duration::from_secs(20));
        let second = run(side(PROD, api, &name).args(["-n", "100", "--timeout", "5"]));
        assert_code(&second, 1);
        let err = stderr(&second);
        assert!(
            err.contains("live producer")
                && err.contains(&format!("pid {}", first.id()))
                && err.contains(&name),
            "{api}: {err}"
        );
        assert!(
            shm(api).object_named(&name).exists(),
            "the refused producer left the live one's name alone"
        );
        // The first producer is unharmed.
        let cons = run(side(CONS, api, &name).args(["--json", "--timeout", "30"]));
        let pid = first.id();
        let first = first.finish();
        assert_both_ok(&first, &cons);
        assert_verified(&summary(&cons), 100);
        assert_all_gone(&name, &stderr_of(&[&first, &second, &cons]), &[pid]);
    }
}

// ---------------------------------------------------------------------------------
// 8. Squatted names are refused and left untouched.

#[test]
fn squatted_names_are_refused_and_left_alone() {
    // Foreign files of every API are the shared squatter scenario; here, a file too
    // short to be a segment.
    let cases: &[(&str, &str, u32, &[u8], &str)] =
        &[("posix", "short", 0o600, b"tiny", "too small")];
    for &(api, tag, mode, data, says) in cases {
        let name = unique(&format!("squat-{api}-{tag}"));
        let path = shm(api).object_named(&name);
        write_with_mode(&path, data, mode);
        for bin in [PROD, CONS] {
            let out = run(side(bin, api, &name).args(["--timeout", "1"]));
            assert_no_panic(&out);
            // A consumer takes a too-short file for one being created: it waits, then 4.
            let expected = if bin == CONS && tag == "short" { 4 } else { 1 };
            assert_code(&out, expected);
            let err = stderr(&out);
            if bin == PROD {
                assert!(
                    err.contains(says) && err.contains(&name),
                    "{api} {tag}: {err}"
                );
            }
            assert_untouched(&path, data, mode);
        }
        std::fs::remove_file(&path).unwrap();
        assert_no_leftovers(&name);
    }
    // Random bytes under our mode: not this project's header.
    let name = unique("squat-random");
    let path = shm("posix").object_named(&name);
    let data = random_bytes(10_000, 99);
    write_with_mode(&path, &data, 0o600);
    let out = run(cmd(PROD).args(["--name", &name, "--timeout", "1"]));
    assert_code(&out, 1);
    let err = stderr(&out);
    assert!(
        err.contains("never published") || err.contains("magic"),
        "{err}"
    );
    assert_untouched(&path, &data, 0o600);
    std::fs::remove_file(&path).unwrap();
    assert_no_leftovers(&name);
}

// ---------------------------------------------------------------------------------
// 10. Bad flags.

#[test]
fn bad_flags_exit_2_with_a_message() {
    assert_usage_errors(
        PROD,
        "--segment-size 100 --timeout 1; \
         --segment-size 5K --mode pingpong --timeout 1; --file x --timeout 1; \
         --api sysv --file x --timeout 1; --sync bogus --timeout 1; \
         --api bogus --timeout 1; --name a/b --timeout 1; \
         --segment-size 12Q --timeout 1; --output x --timeout 1",
    );
    assert_usage_errors(
        CONS,
        "--file x --timeout 1; --sync bogus --timeout 1; --name a/b --timeout 1; \
         --input x --timeout 1",
    );
}

/// A consumer whose flags contradict the waiting producer's is refused with exit 2,
/// naming what differs; the producer goes on waiting, and a consumer with the right
/// flags completes.
fn mismatched_consumer(producer: &[&str], wrong: &[&str], right: &[&str], says: &[&str]) {
    let ep = SHM_POSIX.endpoint("mismatch");
    let mut prod = SHM_POSIX.side(Role::Sender, &ep);
    prod.args(producer)
        .args(["-n", "50", "--json", "--timeout", "30"]);
    let mut prod = start_watched(&mut prod);
    prod.wait_for("waiting", Duration::from_secs(20));
    let consumer = |flags: &[&str]| {
        let mut c = SHM_POSIX.side(Role::Receiver, &ep);
        c.args(flags).args(["--json", "--timeout", "10"]);
        run(&mut c)
    };
    assert_exit(&consumer(wrong), 2, says);
    let right = consumer(right);
    let pid = prod.id();
    let prod = prod.finish();
    assert_both_ok(&right, &prod);
    assert_verified(&summary(&right), 50);
    assert_all_gone(&ep.name, "", &[pid]);
}

#[test]
fn consumer_with_another_sync_kind_is_told_both() {
    mismatched_consumer(
        &["--sync", "mutex"],
        &["--sync", "spin"],
        &[],
        &["--sync mutex", "--sync spin"],
    );
}

#[test]
fn consumer_with_another_segment_size_is_refused() {
    mismatched_consumer(
        &["--segment-size", "64K"],
        &["--segment-size", "1M"],
        &["--segment-size", "64K"],
        &["--segment-size"],
    );
}

#[test]
fn help_lists_the_shm_flags() {
    for bin in [PROD, CONS] {
        // The consumer learns --sync and --segment-size from the segment.
        let mut words = vec!["--api", "--file", "--name", "--timeout", "Exit codes"];
        if bin == PROD {
            words.extend(["--sync", "--segment-size"]);
        }
        assert_help(bin, &words, None, &[]);
    }
}

// ---------------------------------------------------------------------------------
// 11. -v narration.

#[test]
fn verbose_narrates_the_system_calls() {
    let cases: &[(&str, &[&str], &[&str])] = &[
        (
            "posix",
            &[
                "shm_open(",
                "O_CREAT|O_EXCL",
                "ftruncate(",
                "mmap(",
                "pthread_mutexattr_setpshared",
                "shm_unlink(",
            ],
            &["shm_open(", "mmap("],
        ),
        (
            "sysv",
            &[
                "ftok(",
                "shmget(0x49",
                "IPC_CREAT|IPC_EXCL|0600",
                "shmat(",
                "pthread_mutexattr_setpshared",
                "IPC_RMID",
            ],
            &["ftok(", "shmget(0x49", "shmat("],
        ),
        (
            "mmap",
            &[
                "open(",
                "ftruncate(",
                "mmap(",
                "pthread_mutexattr_setpshared",
                "unlink(",
            ],
            &["open(", "mmap("],
        ),
    ];
    for &(api, prod_calls, cons_calls) in cases {
        let name = unique(&format!("narrate-{api}"));
        let narrated = |bin: &str| {
            let mut c = cmd(bin);
            c.args(["--api", api, "--name", &name, "-v", "--timeout", "30"]);
            c
        };
        let (prod, cons, pids) = pair(narrated(PROD).args(["-n", "3"]), &mut narrated(CONS));
        assert_both_ok(&prod, &cons);
        let (pe, ce) = (stderr(&prod), stderr(&cons));
        for call in prod_calls {
            assert!(
                pe.contains(call),
                "{api}: producer -v does not show {call}: {pe}"
            );
        }
        for call in cons_calls {
            assert!(
                ce.contains(call),
                "{api}: consumer -v does not show {call}: {ce}"
            );
        }
        assert!(
            pe.contains('[') && pe.contains(']'),
            "the lecture idea: {pe}"
        );
        assert_all_gone(&name, &(pe + &ce), &pids);
    }
    // The other sync kinds narrate their own calls.
    for (sync, call) in [("sem", "sem_init("), ("mq", "mq_open(")] {
        let name = unique(&format!("narrate-{sync}"));
        let (prod, cons, pids) = pair(
            cmd(PROD).args([
                "--name",
                &name,
                "--sync",
                sync,
                "-v",
                "-n",
                "3",
                "--timeout",
                "30",
            ]),
            cmd(CONS).args(["--name", &name, "-v", "--timeout", "30"]),
        );
        assert_both_ok(&prod, &cons);
        assert!(stderr(&prod).contains(call), "{}", stderr(&prod));
        assert_all_gone(&name, "", &pids);
    }
}

// ---------------------------------------------------------------------------------
// 9. Corrupted segments: the consumer fails cleanly (exit 1, 3 or 4, one error line),
// never panics, never dies by a signal, never hangs.

mod corrupt {
    use super::*;
    use ipc_common::frame::{FrameKind, Header as Frame, Hello, Payload, HEADER_LEN};
    use ipc_common::shm::layout::{
        Header, ReaderLine, RingCtl, WriterLine, HEADER_SIZE, MAGIC, VERSION,
    };
    use ipc_common::Mode;
    use std::mem::{offset_of, size_of};
    use std::ops::Range;

    /// The segment size of the snapshots.
    pub const SEG: usize = 8192;

    /// xorshift64*: a small seeded generator, so a failing case reproduces from its seed.
    pub struct Rng(u64);

    impl Rng {
        pub fn new(seed: u64) -> Rng {
            Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
        }
        pub fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        pub fn below(&mut self, n: u64) -> u64 {
            self.next() % n.max(1)
        }
        pub fn chance(&mut self, percent: u64) -> bool {
            self.below(100) < percent
        }
        pub fn pick<T: Copy>(&mut self, from: &[T]) -> T {
            from[self.below(from.len() as u64) as usize]
        }
        pub fn bytes(&mut self, n: usize) -> Vec<u8> {
            (0..n).map(|_| self.next() as u8).collect()
        }
    }

    fn ring(i: usize) -> usize {
        offset_of!(Header, ring) + i * size_of::<RingCtl>()
    }
    pub fn head(i: usize) -> usize {
        ring(i) + offset_of!(RingCtl, writer) + offset_of!(WriterLine, head)
    }
    pub fn tail(i: usize) -> usize {
        ring(i) + offset_of!(RingCtl, reader) + offset_of!(ReaderLine, tail)
    }
    pub fn space_waiting(i: usize) -> usize {
        ring(i) + offset_of!(RingCtl, writer) + offset_of!(WriterLine, space_waiting)
    }
    /// The ring's process-shared mutex (its lock word comes first).
    pub fn ring_lock(i: usize) -> usize {
        ring(i) + offset_of!(RingCtl, lock)
    }
    /// The ring's two process-shared condition variables.
    pub fn conds(i: usize) -> Range<usize> {
        ring(i) + offset_of!(RingCtl, not_empty)..ring(i) + offset_of!(RingCtl, data_sem)
    }
    fn in_conds(at: usize) -> bool {
        conds(0).contains(&at) || conds(1).contains(&at)
    }

    pub fn put32(b: &mut [u8], at: usize, v: u32) {
        if at + 4 <= b.len() {
            b[at..at + 4].copy_from_slice(&v.to_le_bytes());
        }
    }
    pub fn put64(b: &mut [u8], at: usize, v: u64) {
        if at + 8 <= b.len() {
            b[at..at + 8].copy_from_slice(&v.to_le_bytes());
        }
    }

    /// A real producer's segment, as published while it waits for its consumer.
    pub fn snapshot(sync: &str, mode: &str) -> Vec<u8> {
        let name = unique(&format!("snap-{sync}-{mode}"));
        let mut prod = start_watched(cmd(PROD).args([
            "--name",
            &name,
            "--sync",
            sync,
            "--mode",
            mode,
            "--segment-size",
            "8K",
            "--timeout",
            "60",
        ]));
        prod.wait_for("waiting", Duration::from_secs(20));
        let bytes = std::fs::read(shm("posix").object_named(&name)).unwrap();
        signal(prod.child(), Signal::SIGTERM);
        let out = prod.finish_within(Duration::from_secs(20));
        assert_code(&out, 143);
        assert_no_leftovers(&name);
        assert_eq!(bytes.len(), SEG);
        assert_eq!(&bytes[..8], &MAGIC.to_le_bytes());
        bytes
    }

    /// One generated segment: what it is (for the failure message) and its bytes.
    /// `with_conds`: whether the ring's condition variables may be corrupted too.
    pub fn case(rng: &mut Rng, snaps: &[Vec<u8>], with_conds: bool) -> (String, Vec<u8>) {
        match rng.below(4) {
            0 => {
                let len = rng.below(16 * 1024 + 1) as usize;
                (format!("{len} random bytes"), rng.bytes(len))
            }
            1 => header_shaped(rng, with_conds),
            2 => {
                let mut b = snaps[rng.below(snaps.len() as u64) as usize].clone();
                let flips = 1 + rng.below(8);
                let mut what = format!("snapshot with {flips} flipped bytes at");
                for _ in 0..flips {
                    // Mostly in the header, where the fields are.
                    let at = if rng.chance(80) {
                        rng.below(HEADER_SIZE as u64)
                    } else {
                        rng.below(b.len() as u64)
                    } as usize;
                    if !with_conds && in_conds(at) {
                        continue;
                    }
                    b[at] ^= 1 << rng.below(8);
                    what += &format!(" {at}");
                }
                if rng.chance(10) {
                    let len = rng.below(b.len() as u64 * 2) as usize;
                    b.resize(len, 0);
                    what += &format!(", resized to {len}");
                }
                (what, b)
            }
            _ => frames(rng, snaps),
        }
    }

    /// A header with each field right or wrong at random, over a zeroed or random body.
    fn header_shaped(rng: &mut Rng, with_conds: bool) -> (String, Vec<u8>) {
        let len = rng.pick(&[SEG, SEG, HEADER_SIZE, HEADER_SIZE + 1024, 5000, 16384]);
        let mut b = if rng.chance(50) {
            vec![0; len]
        } else {
            rng.bytes(len)
        };
        if !with_conds {
            // A zeroed condition variable is a valid (default) one.
            for r in [conds(0), conds(1)] {
                b[r].fill(0);
            }
        }
        let rand_or = |rng: &mut Rng, right: u64, options: &[u64]| -> u64 {
            if rng.chance(80) {
                right
            } else if rng.chance(50) {
                rng.pick(options)
            } else {
                rng.next()
            }
        };
        let cap = rand_or(
            rng,
            (len as u64).saturating_sub(HEADER_SIZE as u64) & !63,
            &[0, 1023, 1024, 2048, 4096, len as u64, u64::MAX, 1 << 63],
        );
        let rings = rand_or(rng, 1, &[0, 2, 3, u32::MAX as u64]) as u32;
        let fields = [
            (0, 8, rand_or(rng, MAGIC, &[0, MAGIC ^ 1])),
            (8, 4, rand_or(rng, VERSION.into(), &[0, 2])),
            (12, 4, rand_or(rng, HEADER_SIZE as u64, &[0, 64, 8192])),
            (
                16,
                8,
                rand_or(rng, len as u64, &[0, len as u64 + 1, u64::MAX]),
            ),
            (24, 8, cap),
            (32, 4, rings.into()),
            (36, 4, {
                let right = 1 + rng.below(3);
                rand_or(rng, right, &[0, 4, 99])
            }),
            (40, 4, {
                let right = 1 + rng.below(4);
                rand_or(rng, right, &[0, 5, 99])
            }),
            (44, 4, rand_or(rng, 1, &[0, std::process::id().into()])),
            (48, 4, rand_or(rng, 1, &[0, 2, 3])),
        ];
        for (at, width, v) in fields {
            if width == 8 {
                put64(&mut b, at, v);
            } else {
                put32(&mut b, at, v as u32);
            }
        }
        for r in 0..2 {
            let h = rand_or(rng, 0, &[1, 24, cap, cap.wrapping_add(1), u64::MAX]);
            put64(&mut b, head(r), h);
            let t = rand_or(rng, 0, &[1, h, u64::MAX]);
            put64(&mut b, tail(r), t);
        }
        (
            format!("header-shaped, {len} bytes, cap {cap}, rings {rings}"),
            b,
        )
    }

    /// A real segment whose ring 0 holds a hello (sometimes a valid one) and then frames
    /// or garbage, with a head counter that may or may not match.
    fn frames(rng: &mut Rng, snaps: &[Vec<u8>]) -> (String, Vec<u8>) {
        let mut b = snaps[rng.below(snaps.len() as u64) as usize].clone();
        let rings = u32::from_le_bytes(b[32..36].try_into().unwrap()) as usize;
        let cap = ((SEG - HEADER_SIZE) / rings) & !63;
        let mut data = Vec::new();
        let size = rng.pick(&[1u64, 64, 100, 4096, 1 << 20, 0, 1 << 40]);
        let hello = Hello {
            mode: if rng.chance(50) {
                Mode::Stream
            } else {
                Mode::Pingpong
            },
            payload: if rng.chance(70) {
                Payload::Generated { seed: rng.below(3) }
            } else {
                Payload::File
            },
            count: {
                let r = rng.next();
                rng.pick(&[0, 1, 3, u64::MAX, r])
            },
            size,
        }
        .encode();
        let mut hello_frame = Frame::for_payload(FrameKind::Hello, 0, &hello).encode();
        if rng.chance(20) {
            let at = rng.below(HEADER_LEN as u64) as usize;
            hello_frame[at] ^= 1 << rng.below(8);
        }
        data.extend_from_slice(&hello_frame);
        data.extend_from_slice(&hello);
        for seq in 0..rng.below(4) {
            let len = rng.pick(&[0usize, 1, 64, 100, 3000]);
            let payload = rng.bytes(len);
            let kind = rng.pick(&[
                FrameKind::Data,
                FrameKind::Data,
                FrameKind::End,
                FrameKind::Echo,
            ]);
            let mut f = Frame::for_payload(kind, seq, &payload);
            if rng.chance(30) {
                f.len = rng.next() as u32;
            }
            data.extend_from_slice(&f.encode());
            data.extend_from_slice(&payload);
        }
        if rng.chance(30) {
            let n = rng.below(200) as usize;
            data.extend(rng.bytes(n));
        }
        data.truncate(cap);
        b[HEADER_SIZE..HEADER_SIZE + data.len()].copy_from_slice(&data);
        let h = if rng.chance(60) {
            data.len() as u64
        } else {
            let r = rng.next();
            rng.pick(&[0, 24, 64, cap as u64, cap as u64 + 1, r])
        };
        put64(&mut b, head(0), h);
        (
            format!("frames: {} bytes in ring 0, head {h}", data.len()),
            b,
        )
    }

    /// Removes a file the test made, even when the test fails.
    struct RemoveOnDrop(PathBuf);

    impl Drop for RemoveOnDrop {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    /// Run a consumer on `bytes` as /dev/shm/NAME and check that it fails cleanly.
    pub fn check(seed: u64, what: &str, bytes: &[u8]) {
        let name = unique(&format!("corrupt-{seed}"));
        let path = shm("posix").object_named(&name);
        write_with_mode(&path, bytes, 0o600);
        let remove = RemoveOnDrop(path.clone());
        let out = start(cmd(CONS).args(["--name", &name, "--timeout", "0.5"]));
        // Print the case first: if the watchdog fires, its panic does not say which.
        let out = std::panic::catch_unwind(|| finish_within(out, Duration::from_secs(30)))
            .unwrap_or_else(|_| panic!("seed {seed} ({what}): the consumer hung"));
        let err = stderr(&out);
        let ctx = format!("seed {seed} ({what}): exit {:?}, stderr: {err}", out.status);
        assert!(out.status.code().is_some(), "killed by a signal: {ctx}");
        assert!(!err.contains("panicked"), "{ctx}");
        if code(&out.status) == 0 {
            // Only a hand-made ring can be a well-formed transfer (a hello, then an end).
            assert!(what.starts_with("frames:"), "{ctx}");
            assert!(stdout(&out).contains("verified"), "{ctx}");
        } else {
            assert!(matches!(code(&out.status), 1 | 3 | 4), "{ctx}");
            let errors = err.lines().filter(|l| l.contains(": error[")).count();
            assert!(
                errors == 1 && err.contains("shm-consumer: error["),
                "one error line: {ctx}"
            );
        }
        drop(remove);
        assert_no_leftovers(&name);
    }

    /// Run `cases` cases, a few at a time (the consumers mostly sleep).
    pub fn run_cases(
        cases: u64,
        with_conds: bool,
        gen: impl Fn(&mut Rng) -> (String, Vec<u8>) + Sync,
    ) {
        let next = std::sync::atomic::AtomicU64::new(0);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| loop {
                    let seed = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if seed >= cases {
                        break;
                    }
                    let mut rng = Rng::new(seed + if with_conds { 1 << 32 } else { 0 });
                    let (what, bytes) = gen(&mut rng);
                    check(seed, &what, &bytes);
                });
            }
        });
    }
}

#[test]
fn corrupted_segments_fail_cleanly() {
    let _spin = serial();
    let snaps = [
        corrupt::snapshot("mutex", "stream"),
        corrupt::snapshot("sem", "stream"),
        corrupt::snapshot("spin", "pingpong"),
        corrupt::snapshot("mutex", "pingpong"),
    ];
    corrupt::run_cases(200, false, |rng| corrupt::case(rng, &snaps, false));
}

/// A ring mutex left locked by a thread that does not exist (a corrupted lock word):
/// the consumer's sleep takes it with a timed lock, so it times out instead of hanging.
#[test]
fn ring_mutex_locked_for_ever_does_not_hang_the_consumer() {
    let snap = corrupt::snapshot("mutex", "stream");
    for (what, word) in [("a dead owner", 0x3fff_fff0u32), ("all ones", u32::MAX)] {
        let mut b = snap.clone();
        corrupt::put32(&mut b, corrupt::ring_lock(0), word);
        corrupt::check(0, &format!("ring 0 mutex held by {what}"), &b);
    }
}

/// The ring's pthread condition variables, corrupted. glibc's pthread_cond_signal (and
/// the timeout path of pthread_cond_timedwait) take the condition variable's internal
/// lock with an untimed futex wait, so a corrupted one hangs the consumer for ever.
#[test]
#[ignore = "bug: a corrupted pthread condition variable in the segment hangs --sync mutex (pthread_cond_signal waits untimed on its internal lock)"]
fn corrupted_condition_variables_fail_cleanly() {
    let snap = corrupt::snapshot("mutex", "stream");
    corrupt::run_cases(4, true, |rng| {
        let mut b = snap.clone();
        // The writer "sleeps for space", so the consumer signals not_full after a read.
        corrupt::put32(&mut b, corrupt::space_waiting(0), 1);
        let r = corrupt::conds(0);
        let garbage = rng.bytes(r.len());
        b[r].copy_from_slice(&garbage);
        ("ring 0 condition variables random".to_string(), b)
    });
}

/// Garbage written into a live transfer's ring data or counters, through a descriptor
/// of the mapped file kept open while the names are removed.
#[test]
fn scribbled_ring_ends_the_transfer_cleanly() {
    use std::os::unix::fs::FileExt;
    for target in ["data", "counters", "both"] {
        let name = unique(&format!("scribble-{target}"));
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join(format!("{name}.seg"));
        let prod = start_watched(
            cmd(PROD)
                .args(["--api", "mmap", "--name", &name])
                .arg("--file")
                .arg(&file)
                .args([
                    "-n",
                    "100000000",
                    "-s",
                    "200",
                    "--segment-size",
                    "16K",
                    "--timeout",
                    "3",
                ]),
        );
        wait_for_path(&file, Duration::from_secs(20));
        let seg = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&file)
            .unwrap();
        let mut cons = start_watched(
            cmd(CONS)
                .args(["--api", "mmap", "--name", &name, "--timeout", "3"])
                .arg("--file")
                .arg(&file),
        );
        wait_for_gone(&file, Duration::from_secs(20));
        std::thread::sleep(Duration::from_millis(200));
        let mut rng = corrupt::Rng::new(target.len() as u64);
        let start_time = std::time::Instant::now();
        while !cons.exited() && start_time.elapsed() < Duration::from_secs(30) {
            if target != "counters" {
                let garbage = rng.bytes(16 * 1024 - 4096);
                seg.write_at(&garbage, 4096).unwrap();
            }
            if target != "data" {
                seg.write_at(&rng.next().to_le_bytes(), corrupt::head(0) as u64)
                    .unwrap();
                seg.write_at(&rng.next().to_le_bytes(), corrupt::tail(0) as u64)
                    .unwrap();
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        let pids = [prod.id(), cons.id()];
        let cons = cons.finish_within(Duration::from_secs(30));
        let prod = prod.finish_within(Duration::from_secs(30));
        for (who, out) in [("consumer", &cons), ("producer", &prod)] {
            assert!(
                out.status.code().is_some(),
                "{who} killed by a signal: {}",
                stderr(out)
            );
            assert_no_panic(out);
        }
        let err = stderr(&cons);
        assert!(
            matches!(code(&cons.status), 1 | 3 | 4),
            "{target}: consumer exit {:?}: {err}",
            cons.status
        );
        assert!(err.contains("shm-consumer: error["), "{target}: {err}");
        assert!(
            !stderr(&prod).is_empty() || code(&prod.status) == 0,
            "{target}: the producer says why it stopped"
        );
        drop(seg);
        assert!(!file.exists());
        assert_all_gone(&name, "", &pids);
    }
}

/// A consumer that fails on its own (here: its --output cannot be created) ends the
/// producer with exit 4 within --timeout, naming the consumer.
#[test]
fn consumer_failing_mid_run_ends_the_producer_with_exit_4() {
    let name = unique("cons-fails");
    let (prod, cons, pids) = pair(
        cmd(PROD).args([
            "--name",
            &name,
            "-n",
            "10000000",
            "-s",
            "1K",
            "--timeout",
            "3",
        ]),
        cmd(CONS).args([
            "--name",
            &name,
            "--timeout",
            "3",
            "--output",
            "/nonexistent/dir/copy.bin",
        ]),
    );
    assert_exit(&cons, 1, &["/nonexistent/dir/copy.bin"]);
    assert_exit(&prod, 4, &["consumer"]);
    assert_all_gone(&name, "", &pids);
}

// ---------------------------------------------------------------------------------
// Pool mode (--segments N) and --zero-copy.

/// A pool transfer whose messages need several segments each, in both start orders.
#[test]
fn pool_mode_moves_every_message_for_each_api() {
    for (i, api) in APIS.into_iter().enumerate() {
        let name = unique(&format!("pool-{api}"));
        // 40 KiB messages through 16 KiB segments: three parts each.
        let mut prod = side(PROD, api, &name);
        prod.args([
            "--segments",
            "4",
            "--segment-size",
            "16K",
            "-n",
            "300",
            "-s",
            "40K",
            "--json",
        ]);
        let mut cons = side(CONS, api, &name);
        cons.arg("--json");
        let (p, c, pids) = if i % 2 == 0 {
            pair(&mut prod, &mut cons)
        } else {
            let (c, p, pids) = pair(&mut cons, &mut prod);
            (p, c, pids)
        };
        assert_both_ok(&p, &c);
        let v = summary(&c);
        assert_verified(&v, 300);
        assert_eq!(v["options"]["segments"], "4", "{v}");
        assert_key_narrated(api, &stderr_of(&[&p, &c]));
        assert_all_gone(&name, &stderr_of(&[&p, &c]), &pids);
    }
}

#[test]
fn pool_mode_pingpong_and_a_file() {
    let name = unique("pool-pp");
    let (p, c, pids) = pair(
        side(PROD, "posix", &name).args([
            "--segments",
            "3",
            "--segment-size",
            "8K",
            "--mode",
            "pingpong",
            "-n",
            "200",
            "-s",
            "10K",
            "--json",
        ]),
        &mut side(CONS, "posix", &name),
    );
    assert_both_ok(&p, &c);
    let v = summary(&p);
    assert_verified(&v, 200);
    assert!(v["p50_ns"].as_u64().unwrap() > 0, "{v}");
    assert_all_gone(&name, &stderr_of(&[&p, &c]), &pids);

    let name = unique("pool-file");
    let data = random_bytes(777_777, 5);
    let (_dir, input) = temp_file(&data);
    let out_dir = tempfile::tempdir().unwrap();
    let output = out_dir.path().join("copy.bin");
    let (c, p, pids) = pair(
        side(CONS, "sysv", &name).arg("--output").arg(&output),
        side(PROD, "sysv", &name)
            .args([
                "--segments",
                "2",
                "--segment-size",
                "8K",
                "-s",
                "64K",
                "--input",
            ])
            .arg(&input),
    );
    assert_both_ok(&p, &c);
    assert_holds(&output, &data);
    assert_all_gone(&name, &stderr_of(&[&p, &c]), &pids);
}

/// The shared killed-peer scenario over a pool: the producer names the dead consumer.
#[test]
fn pool_mode_killed_consumer_ends_the_producer() {
    let pool = ["--segments", "3", "--segment-size", "8K"];
    killed_peer(&SHM_POSIX, Role::Receiver, &pool);
}

#[test]
fn pool_mode_refuses_more_segments_than_a_queue_holds() {
    let msg_max: u32 = std::fs::read_to_string("/proc/sys/fs/mqueue/msg_max")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let name = unique("pool-many");
    let out = run(side(PROD, "posix", &name).args([
        "--segments",
        &(msg_max + 1).to_string(),
        "--timeout",
        "1",
    ]));
    assert_exit(&out, 2, &["/proc/sys/fs/mqueue/msg_max"]);
    for bad in [["--segments", "0"], ["--sync", "spin"]] {
        let out = run(side(PROD, "posix", &name)
            .args(["--segments", "2"])
            .args(bad)
            .args(["--timeout", "1"]));
        assert_code(&out, 2);
    }
    assert_no_leftovers(&name);
}

#[test]
fn zero_copy_builds_and_checks_in_place() {
    let _spin = serial();
    for (api, sync) in [("posix", "spin"), ("sysv", "mutex"), ("mmap", "sem")] {
        let name = unique(&format!("zc-{api}"));
        // Messages that wrap around the ring's end as well.
        let (p, c, pids) = pair(
            side(PROD, api, &name).args([
                "--zero-copy",
                "--sync",
                sync,
                "--segment-size",
                "100K",
                "-n",
                "2000",
                "-s",
                "20000",
                "--json",
            ]),
            side(CONS, api, &name).arg("--json"),
        );
        assert_both_ok(&p, &c);
        let v = summary(&c);
        assert_verified(&v, 2000);
        assert_eq!(v["options"]["zero_copy"], "true", "{v}");
        assert_all_gone(&name, &stderr_of(&[&p, &c]), &pids);
    }
}

#[test]
fn zero_copy_with_a_wrong_seed_fails_verification() {
    // The hello names the producer's seed: the consumer refuses before any message.
    receiver_contradicting_the_hello_is_refused(
        &SHM_POSIX,
        &["--zero-copy", "-n", "20", "--seed", "7"],
        &["--seed", "8"],
        "--seed 8 but the sender sends 7",
    );
}

#[test]
fn zero_copy_refuses_what_it_cannot_build_in_place() {
    let name = unique("zc-bad");
    for bad in [
        vec!["--mode", "pingpong"],
        vec!["--input", "/dev/null"],
        vec!["--raw"],
        vec!["--segment-size", "16K", "-s", "64K"],
    ] {
        let out = run(side(PROD, "posix", &name)
            .arg("--zero-copy")
            .args(&bad)
            .args(["--timeout", "1"]));
        assert_exit(&out, 2, &["--zero-copy"]);
    }
    assert_no_leftovers(&name);
}
