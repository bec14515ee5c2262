//! Faults and hostile input across every pair: the kill matrix, signals on
//! either side, stale objects of a crashed run, squatters, modes, names, limits and bad
//! flags, for every mechanism at once.
//!
//! Every test here takes one lock: spinning shared-memory sides (`--sync spin`) must not
//! share this 2-core machine with other heavy transfers, or they starve and time out.
//! Kill points are seeded: `FAULTS_SEED=N` reproduces a run (the seed is printed), and
//! `FAULTS_TRIALS=N` sets the SIGKILL trials per mechanism and side (default 2). A SIGKILL
//! lands after a seeded number of messages (the victim kills itself there through the
//! debug-only `IPC_TEST_KILL_AFTER` hook), so a printed seed replays the same trial.
//! `CHECKS_ONLY=WORD` runs the matrices over the variants whose label contains WORD.

use integration_tests::mechanism::{
    shm, Endpoint, Mechanism, Role, ALL, FIFO, MQ_POSIX, MQ_SYSV, SHM_POSIX, SHM_SYSV, UNIX_STREAM,
};
use integration_tests::*;
use nix::sys::signal::Signal;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// The `--timeout` every side gets here, but for the kill matrix's detectable deaths.
const TIMEOUT: &str = "3";
/// The kill matrix's `--timeout` where the survivor can tell a death: far longer than
/// detection takes, so a survivor that only timed out says "30.0 s".
const LONG: &str = "30";
/// Watchdog for a side that must end by itself: the longest `--timeout` plus a generous
/// margin for a loaded machine. A hang fails the test; the duration is never asserted.
const SURVIVOR_WATCHDOG: Duration = Duration::from_secs(60);
/// More messages than any trial can move before its kill lands.
const ENDLESS: &str = "100000000";

/// splitmix64: a seeded source of kill points.
struct Rng(u64);

impl Rng {
    fn from_env(what: &str) -> Rng {
        let seed = std::env::var("FAULTS_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0x1d_2024);
        eprintln!("{what}: FAULTS_SEED={seed}");
        Rng(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn trials() -> usize {
    std::env::var("FAULTS_TRIALS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2)
}

fn tmp(name: &str) -> PathBuf {
    std::env::temp_dir().join(name)
}

/// A SysV object: `ipcs` kind letter (m, q, s) and id.
type SysvId = (char, i32);

/// The SysV objects `ipcs` lists: (kind, key, id).
fn ipcs_all() -> Vec<(char, u32, i32)> {
    let mut v = Vec::new();
    for kind in ['m', 'q', 's'] {
        // A leak check that cannot look fails: an empty list would say "no leaks".
        let out = Command::new("ipcs")
            .arg(format!("-{kind}"))
            .output()
            .unwrap_or_else(|e| panic!("cannot run ipcs (util-linux) to look for leftovers: {e}"));
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let mut f = line.split_whitespace();
            let (Some(k), Some(id)) = (f.next(), f.next()) else {
                continue;
            };
            let key = k
                .strip_prefix("0x")
                .and_then(|h| u32::from_str_radix(h, 16).ok());
            if let (Some(key), Ok(id)) = (key, id.parse()) {
                v.push((kind, key, id));
            }
        }
    }
    v
}

/// The ids of the SysV objects with `key`, once at least one exists (the creator makes
/// its key file first, then the object). Ids, not keys, are checked afterwards: a key
/// comes from a key file's inode, which another run on this machine may get next.
fn sysv_ids(key: u32) -> Vec<SysvId> {
    let t = Instant::now();
    loop {
        let ids: Vec<SysvId> = ipcs_all()
            .into_iter()
            .filter(|&(_, k, _)| k == key)
            .map(|(kind, _, id)| (kind, id))
            .collect();
        if !ids.is_empty() || t.elapsed() > Duration::from_secs(10) {
            return ids;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Nothing named `name` anywhere, and none of the SysV objects `ids` still there.
#[track_caller]
fn assert_clean(name: &str, ids: &[SysvId]) {
    assert_no_leftovers(name);
    let left: Vec<_> = ipcs_all()
        .into_iter()
        .filter(|&(kind, _, id)| ids.contains(&(kind, id)))
        .collect();
    assert!(left.is_empty(), "SysV objects left behind: {left:x?}");
}

/// A command line: program, then arguments.
fn command(argv: &[String]) -> Command {
    let mut c = cmd(&argv[0]);
    c.args(&argv[1..]);
    c
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// One variant of the matrices: a row of the mechanism table, and what only its sender
/// is given (a sync kind, a pool, zero-copy).
struct Variant {
    m: &'static Mechanism,
    sender: Vec<&'static str>,
    /// Both sides from one `run` command (the receiver its child).
    run: bool,
}

impl Variant {
    fn label(&self) -> String {
        let run = self.run.then_some("run");
        let words = [self.m.label]
            .into_iter()
            .chain(run)
            .chain(self.sender.clone());
        words.collect::<Vec<_>>().join(" ")
    }
}

const SYNCS: [&str; 4] = ["mutex", "sem", "mq", "spin"];

/// Every variant of the matrices: shared memory for each `--api` and `--sync` kind, a
/// pool, zero-copy; every pair program's row; an anonymous pipe through `run`.
fn variants() -> Vec<Variant> {
    let row = |m: &'static Mechanism, sender: &[&'static str]| Variant {
        m,
        sender: sender.to_vec(),
        run: false,
    };
    let mut v = Vec::new();
    for api in ["posix", "sysv", "mmap"] {
        for sync in SYNCS {
            v.push(row(shm(api), &["--sync", sync]));
        }
    }
    v.push(row(
        &SHM_POSIX,
        &["--segments", "3", "--segment-size", "8K"],
    ));
    v.push(row(&SHM_POSIX, &["--sync", "spin", "--zero-copy"]));
    for &m in ALL.iter().filter(|m| m.verbs) {
        v.push(row(m, &[]));
    }
    v.push(Variant {
        run: true,
        ..row(&FIFO, &[])
    });
    only(v, Variant::label)
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

/// The survivor's verdict: exit 4, a message naming the dead peer and how far it got.
/// Returns the error line and that count.
#[track_caller]
fn assert_survivor(label: &str, out: &Output, dead: Role) -> (String, u64) {
    let err = stderr(out);
    assert_eq!(
        code(&out.status),
        4,
        "{label}: the survivor of a dead {dead:?} exits 4\nstderr: {err}"
    );
    let line = err
        .lines()
        .find(|l| l.contains(": error["))
        .unwrap_or_else(|| panic!("{label}: no error line\nstderr: {err}"));
    assert!(
        dead.words().iter().any(|w| line.contains(w)),
        "{label}: the message names the {dead:?}: {line}"
    );
    assert!(!err.contains("panicked"), "{label}: {err}");
    let n = progress(line).unwrap_or_else(|| panic!("{label}: no 'after N messages': {line}"));
    assert!(n > 0, "{label}: the kill landed mid-transfer: {line}");
    (line.to_string(), n)
}

/// The survivor of a peer that killed itself after `n` messages told it as the table
/// says (`gone`: its tag, its words): a death, not the timeout (`timeout` seconds),
/// unless only the timeout can tell (the tag is `error[timeout]`); and it counts exactly
/// what a dead sender sent (a dead receiver's sender may have sent more than it took).
#[track_caller]
fn assert_told(label: &str, line: &str, gone: (&str, &[&str]), timeout: &str, dead: Role, n: u64) {
    let (tag, words) = gone;
    assert!(line.contains(tag), "{label}: tagged {tag}: {line}");
    for word in words {
        assert!(line.contains(word), "{label}: says {word:?}: {line}");
    }
    let timed_out = line.contains(&format!("{timeout}.0 s")) || line.contains("error[timeout]");
    if tag == "error[timeout]" {
        assert!(
            timed_out,
            "{label}: only the timeout can tell, and says so: {line}"
        );
    } else {
        assert!(
            !timed_out,
            "{label}: told by the timeout, not as a death: {line}"
        );
    }
    let got = progress(line).unwrap_or(0);
    if dead == Role::Sender {
        assert_eq!(
            got, n,
            "{label}: the survivor counts what the sender sent: {line}"
        );
    } else {
        assert!(got >= n, "{label}: the survivor counts {got}: {line}");
    }
}

/// What the signalled side must do: SIGKILL cannot be caught (128 + 9); SIGINT and
/// SIGTERM run the cleanup and exit with 128 + the signal, saying so.
#[track_caller]
fn assert_victim(label: &str, out: &Output, sig: Signal) {
    assert_eq!(
        code(&out.status),
        128 + sig as i32,
        "{label}: the {sig} side's exit\nstderr: {}",
        stderr(out)
    );
    if sig != Signal::SIGKILL {
        assert!(
            stderr(out).contains(&format!("interrupted by {}", sig.as_str())),
            "{label}: {}",
            stderr(out)
        );
    }
}

/// Start the two sides of `v` at `ep`, each with `--timeout timeout`, and return
/// (sender, receiver, SysV ids) once data flows. `kill_after`: the `IPC_TEST_KILL_AFTER`
/// hook both sides get (the victim then dies by itself at that message); without it, a
/// seeded pause lets some messages flow first.
fn start_transfer(
    v: &Variant,
    ep: &Endpoint,
    timeout: &str,
    kill_after: Option<&str>,
    rng: &mut Rng,
) -> (Child, Child, Vec<SysvId>) {
    let m = v.m;
    let side = |role: Role| {
        let mut c = m.side(role, ep);
        c.args(["--timeout", timeout]);
        if role == Role::Sender {
            c.args(["-n", ENDLESS, "-s", "64"]).args(&v.sender);
        }
        if let Some(spec) = kill_after {
            c.env("IPC_TEST_KILL_AFTER", spec);
        }
        c
    };
    // The shared-memory producer makes the segment; everywhere else the receiver.
    let first = if m.creators == [Role::Sender] {
        Role::Sender
    } else {
        Role::Receiver
    };
    let a = start(&mut side(first));
    let object = m.object(ep);
    let mut keys = Vec::new();
    match &object {
        Some(obj) => {
            wait_for_path(obj, Duration::from_secs(10));
            if m.sysv {
                let k = ftok(obj);
                keys = sysv_ids(k);
                assert!(
                    !keys.is_empty(),
                    "{}: no SysV object for key {k:#x}",
                    v.label()
                );
            }
        }
        None => std::thread::sleep(Duration::from_millis(300)),
    }
    let b = start(&mut side(first.other()));
    // Evidence that both are attached: the creator removes the name once they are.
    if let Some(obj) = &object {
        let t = Instant::now();
        while object_exists(obj) {
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "{}: the peers never attached",
                v.label()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    if kill_after.is_none() {
        std::thread::sleep(Duration::from_millis(150 + rng.below(200)));
    }
    match first {
        Role::Sender => (a, b, keys),
        Role::Receiver => (b, a, keys),
    }
}

/// One trial: signal `victim` mid-transfer; check both sides and the leftovers.
fn trial(v: &Variant, victim: Role, sig: Signal, rng: &mut Rng) -> String {
    let ep = v.m.endpoint("fk");
    let label = format!("{} / {sig} to the {victim:?}", v.label());
    if v.run {
        return run_trial(v, &ep, victim, sig, rng, &label);
    }
    // SIGKILL: the victim kills itself after a seeded message count, and the survivor
    // waits long for it where it can tell a death.
    let gone = v.m.gone(victim);
    let kill_after = (sig == Signal::SIGKILL).then(|| 1 + rng.below(2000));
    let timeout = match kill_after {
        Some(_) if gone.0 != "error[timeout]" => LONG,
        _ => TIMEOUT,
    };
    let spec = kill_after.map(|n| format!("{}:{n}", victim.hook()));
    let label = match &spec {
        Some(spec) => format!("{label} (IPC_TEST_KILL_AFTER={spec})"),
        None => label,
    };
    let (sender, receiver, keys) = start_transfer(v, &ep, timeout, spec.as_deref(), rng);
    let (victim_child, survivor) = match victim {
        Role::Sender => (sender, receiver),
        Role::Receiver => (receiver, sender),
    };
    if kill_after.is_none() {
        signal(&victim_child, sig);
    }
    let dead = finish_within(victim_child, SURVIVOR_WATCHDOG);
    let s = finish_within(survivor, SURVIVOR_WATCHDOG);
    assert_victim(&format!("{label}\nsurvivor: {}", stderr(&s)), &dead, sig);
    let (line, got) = assert_survivor(&label, &s, victim);
    if let Some(n) = kill_after {
        assert_told(&label, &line, gone, timeout, victim, n);
        if !v.m.tcp {
            let err = stderr(&s);
            assert!(err.contains(&ep.name), "{label}: names the object: {err}");
        }
    }
    assert_clean(&ep.name, &keys);
    format!("{label}: {got}")
}

/// The receiver of `pipe-pair run` is its child. This process is a child subreaper, so
/// the receiver orphaned by a killed `run` is handed to us and its exit code is ours to
/// read.
fn run_trial(
    v: &Variant,
    ep: &Endpoint,
    victim: Role,
    sig: Signal,
    rng: &mut Rng,
    label: &str,
) -> String {
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
    nix::sys::prctl::set_child_subreaper(true).expect("PR_SET_CHILD_SUBREAPER");
    let run = start(
        v.m.run(ep)
            .args(["-n", ENDLESS, "-s", "64", "--timeout", TIMEOUT]),
    );
    let child = nix::unistd::Pid::from_raw(run_child(&run, Duration::from_secs(10)));
    std::thread::sleep(Duration::from_millis(300 + rng.below(200)));
    match victim {
        Role::Receiver => {
            nix::sys::signal::kill(child, sig).expect("kill");
            let out = finish_within(run, SURVIVOR_WATCHDOG);
            if sig == Signal::SIGKILL {
                assert_survivor(label, &out, Role::Receiver);
                assert!(stderr(&out).contains("killed by SIGKILL"), "{label}");
            } else {
                // The interrupted receiver said so and exited 128 + sig; `run` passes
                // its child's status on.
                assert_victim(label, &out, sig);
            }
            format!("{label}: {}", progress(&stderr(&out)).unwrap_or(0))
        }
        Role::Sender => {
            signal(&run, sig);
            let t = Instant::now();
            let child_code = loop {
                match waitpid(child, Some(WaitPidFlag::WNOHANG)) {
                    Ok(WaitStatus::Exited(_, c)) => break c,
                    Ok(WaitStatus::Signaled(_, s, _)) => break 128 + s as i32,
                    // Still running, or not yet handed to us.
                    _ => {}
                }
                if t.elapsed() > SURVIVOR_WATCHDOG {
                    let _ = nix::sys::signal::kill(child, Signal::SIGKILL);
                    panic!("{label}: the orphaned receiver did not end");
                }
                std::thread::sleep(Duration::from_millis(5));
            };
            // Its stderr is the run's: read both once the receiver is gone.
            let out = finish_within(run, SURVIVOR_WATCHDOG);
            assert_eq!(
                code(&out.status),
                128 + sig as i32,
                "{label}: {}",
                stderr(&out)
            );
            assert_eq!(child_code, 4, "{label}: {}", stderr(&out));
            let line = stderr(&out)
                .lines()
                .find(|l| l.contains("sender went away"))
                .map(str::to_string)
                .unwrap_or_else(|| panic!("{label}: {}", stderr(&out)));
            assert!(progress(&line).is_some_and(|n| n > 0), "{label}: {line}");
            format!("{label}: {}", progress(&line).unwrap_or(0))
        }
    }
}

#[test]
fn kill_matrix_sigkill_either_side_at_seeded_points() {
    let _serial = serial();
    let mut rng = Rng::from_env("kill matrix");
    let mut done = 0;
    for t in 0..trials() {
        for victim in [Role::Sender, Role::Receiver] {
            for v in variants() {
                let line = trial(&v, victim, Signal::SIGKILL, &mut rng);
                eprintln!("trial {t}: {line} messages before the kill");
                done += 1;
            }
        }
    }
    eprintln!("{done} SIGKILL trials passed");
}

#[test]
fn sigint_and_sigterm_on_either_side_mid_transfer() {
    let _serial = serial();
    let mut rng = Rng::from_env("signal matrix");
    // Every mechanism gets both signals and both sides: SIGINT to one side, SIGTERM to
    // the other, swapped from one mechanism to the next.
    let sig = |i: usize, side: Role| {
        if i.is_multiple_of(2) == (side == Role::Sender) {
            Signal::SIGINT
        } else {
            Signal::SIGTERM
        }
    };
    let mut done = 0;
    for victim in [Role::Sender, Role::Receiver] {
        for (i, v) in variants().into_iter().enumerate() {
            eprintln!("{}", trial(&v, victim, sig(i, victim), &mut rng));
            done += 1;
        }
    }
    eprintln!("{done} SIGINT/SIGTERM trials passed");
}

// ---------------------------------------------------------------------------------
// Stale objects: a run killed while it waits for its peer leaves its objects; the next
// run under the same name recognises them and replaces them, and so does ipc-ctl clean.
// ---------------------------------------------------------------------------------

/// The mechanisms whose creating side (the first of the row's creators) waits alone, as
/// a crashed run leaves it: (row, flags only the creator gets, the queues it makes
/// besides its object (name suffixes in /dev/mqueue), what the next creator says about
/// the leftover (None: a FIFO records no owner; the next run takes it over)).
type StaleCase = (
    &'static Mechanism,
    &'static [&'static str],
    &'static [&'static str],
    Option<&'static str>,
);

const STALE: [StaleCase; 7] = [
    (&SHM_POSIX, &[], &[], Some("replacing a stale")),
    (
        &SHM_POSIX,
        &["--sync", "mq"],
        &[".r0.ready"],
        Some("replacing a stale"),
    ),
    (&SHM_SYSV, &[], &[], Some("replacing a stale")),
    (&MQ_POSIX, &[], &[], Some("stale")),
    (&MQ_SYSV, &[], &[], Some("stale")),
    (&FIFO, &[], &[], None),
    (&UNIX_STREAM, &[], &[], Some("stale")),
];

/// Start the creator of `c` at a fresh endpoint, wait until it made its objects, SIGKILL
/// it, and check that they stay. Returns the endpoint, the SysV ids and the dead pid.
fn crash_while_waiting(c: &StaleCase) -> (Endpoint, Vec<SysvId>, u32) {
    let &(m, flags, queues, _) = c;
    let ep = m.endpoint("stale");
    let mut crashed = start(m.side(m.creators[0], &ep).args(flags));
    let mut left = vec![m.object(&ep).expect("a named object")];
    for q in queues {
        left.push(Path::new(MQUEUE_DIR).join(format!("{}{q}", ep.name)));
    }
    for p in &left {
        wait_for_path(p, Duration::from_secs(10));
    }
    let ids = if m.sysv {
        sysv_ids(ftok(&left[0]))
    } else {
        Vec::new()
    };
    assert_eq!(m.sysv, !ids.is_empty(), "{}: a stale SysV object", m.label);
    std::thread::sleep(Duration::from_millis(100));
    let pid = crashed.id();
    crashed.kill().unwrap();
    let _ = crashed.wait();
    for p in &left {
        assert!(
            object_exists(p),
            "{}: the crash left {}",
            m.label,
            p.display()
        );
    }
    (ep, ids, pid)
}

#[test]
fn a_crashed_runs_leftovers_are_replaced_by_the_next_run_and_removed_by_clean_ipc() {
    let _serial = serial();
    for c in &STALE {
        let &(m, flags, _, note) = c;
        let creator = m.creators[0];
        // The next run replaces them, with a note.
        let (ep, stale_ids, dead) = crash_while_waiting(c);
        let side = |role: Role| {
            let mut s = m.side(role, &ep);
            s.arg("--json");
            if role == creator {
                s.args(flags);
            }
            if role == Role::Sender {
                s.args(["-n", "20"]);
            }
            s
        };
        let a = start(&mut side(creator));
        std::thread::sleep(Duration::from_millis(300));
        let b = start(&mut side(creator.other()));
        let (a, b) = (finish(a), finish(b));
        assert_both_ok(&a, &b);
        if let Some(note) = note {
            assert!(stderr(&a).contains(note), "{}: {}", m.label, stderr(&a));
        }
        let recv = if creator == Role::Sender {
            // The producer names the dead one.
            let dead = format!("dead producer (pid {dead})");
            assert!(stderr(&a).contains(&dead), "{}: {}", m.label, stderr(&a));
            &b
        } else {
            &a
        };
        assert_verified(&summary(recv), 20);
        assert_clean(&ep.name, &stale_ids);

        // ipc-ctl clean, given this test's prefix, finds and removes them.
        let (ep, stale_ids, _) = crash_while_waiting(c);
        let out = run(cmd("ipc-ctl").args(["clean", "--only", &ep.name]));
        assert_code(&out, 0);
        assert!(stdout(&out).contains("removed"), "{}", stdout(&out));
        assert_clean(&ep.name, &stale_ids);
    }
}

// ---------------------------------------------------------------------------------
// Squatters: an object under the project's name made by someone else is refused (exit
// 1, the object named), never used, and left as it was.
// ---------------------------------------------------------------------------------

fn python(script: &str, args: &[&str]) -> String {
    let out = run(Command::new("python3")
        .args(["-c", script])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped()));
    assert_code(&out, 0);
    stdout(&out).trim().to_string()
}

/// Make a SysV segment or queue with mode 0644 under the key of `key_file` (created
/// here): returns its id.
fn sysv_squat(kind: &str, key_file: &Path) -> i32 {
    const SCRIPT: &str = "import ctypes,os,sys\n\
        l=ctypes.CDLL('libc.so.6',use_errno=True)\n\
        p,kind=sys.argv[1],sys.argv[2]\n\
        fd=os.open(p,os.O_CREAT|os.O_EXCL|os.O_WRONLY,0o600); os.close(fd)\n\
        key=l.ftok(p.encode(),ord('I'))\n\
        i=l.shmget(key,8192,0o1000|0o644) if kind=='m' else l.msgget(key,0o1000|0o644)\n\
        assert i>=0, ctypes.get_errno()\n\
        print(i)";
    python(SCRIPT, &[key_file.to_str().unwrap(), kind])
        .parse()
        .unwrap()
}

fn chown_nobody(p: &Path) {
    // A queue has no path to chown without the mount: fchown its descriptor instead.
    if let Some(q) = queue_name(p) {
        use nix::mqueue::{mq_open, MQ_OFlag};
        let nobody = nix::unistd::User::from_name("nobody")
            .unwrap()
            .expect("user nobody");
        let m = mq_open(
            q.as_str(),
            MQ_OFlag::O_RDONLY,
            nix::sys::stat::Mode::empty(),
            None,
        )
        .unwrap_or_else(|e| panic!("mq_open({q:?}): {e}"));
        let r = nix::unistd::fchown(std::os::fd::AsRawFd::as_raw_fd(&m), Some(nobody.uid), None);
        let _ = nix::mqueue::mq_close(m);
        r.unwrap_or_else(|e| panic!("fchown of queue {q}: {e}"));
        return;
    }
    let out = run(Command::new("chown")
        .args(["nobody"])
        .arg(p)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped()));
    assert_code(&out, 0);
}

/// What must stay the same about a squatted object: type, owner, mode, inode, size.
fn fingerprint(p: &Path) -> (u32, u32, u64, u64) {
    let m = object_stat(p);
    (m.st_mode, m.st_uid, m.st_ino, m.st_size as u64)
}

/// Run `argv` against a squatted object: exit 1 (or one of `codes`), the message saying
/// each of `says` (the object's name at least), nothing of ours left, the squatter's
/// object untouched.
#[track_caller]
fn assert_refused(argv: &[String], codes: &[i32], squatted: &Path, says: &[&str]) {
    let before = fingerprint(squatted);
    let out = run(command(argv).args(["--timeout", "1"]));
    let err = stderr(&out);
    assert!(
        codes.contains(&code(&out.status)),
        "{argv:?}: exit {} (expected {codes:?})\n{err}",
        code(&out.status)
    );
    for said in says {
        assert!(
            err.contains(said),
            "{argv:?}: the message says {said}: {err}"
        );
    }
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(
        fingerprint(squatted),
        before,
        "{argv:?}: the squatter's object was touched"
    );
}

#[test]
fn squatted_objects_are_refused_named_and_left_untouched() {
    let _serial = serial();
    use std::os::unix::fs::OpenOptionsExt;
    let named = |name: &str, v: &[&str]| [strings(v), strings(&["--name", name])].concat();

    // FIFOs: another owner, or open to others.
    for (owner, mode) in [("nobody", 0o600), ("root", 0o666), ("root", 0o644)] {
        let name = unique("squat-fifo");
        let p = tmp(&name);
        nix::unistd::mkfifo(&p, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        if owner == "nobody" {
            chown_nobody(&p);
        }
        // Open to others: the message says the mode (another owner: see the name).
        let mode_said = format!("has mode {mode:o}");
        let path = p.display().to_string();
        let says: &[&str] = if mode == 0o600 {
            &[&path]
        } else {
            &[&path, &mode_said]
        };
        for side in ["recv", "send"] {
            assert_refused(&named(&name, &["pipe-pair", side]), &[1], &p, says);
        }
        std::fs::remove_file(&p).unwrap();
    }

    // A socket file of another owner (a plain file where it goes: the shared scenario).
    let name = unique("squat-sock");
    let p = tmp(&name);
    python(
        "import socket,sys; s=socket.socket(socket.AF_UNIX); s.bind(sys.argv[1])",
        &[p.to_str().unwrap()],
    );
    chown_nobody(&p);
    assert_refused(&named(&name, &["socket-pair", "recv"]), &[1], &p, &[&name]);
    std::fs::remove_file(&p).unwrap();

    // POSIX shared memory: another owner, open to others, another layout (garbage).
    // The consumer may call garbage a failed check of the data (exit 3).
    for how in ["nobody", "0644", "garbage"] {
        let name = unique("squat-shm");
        let p = Path::new("/dev/shm").join(&name);
        let mode = if how == "0644" { 0o644 } else { 0o600 };
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&p)
            .unwrap();
        std::io::Write::write_all(&mut f, &[0xAB; 1 << 16]).unwrap();
        drop(f);
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        if how == "nobody" {
            chown_nobody(&p);
        }
        assert_refused(&named(&name, &["shm-producer"]), &[1], &p, &[&name]);
        let consumer_codes: &[i32] = if how == "garbage" { &[1, 3] } else { &[1] };
        assert_refused(
            &named(&name, &["shm-consumer"]),
            consumer_codes,
            &p,
            &[&name],
        );
        std::fs::remove_file(&p).unwrap();
    }

    // A mapped file of another owner.
    let name = unique("squat-mmap");
    let p = tmp(&format!("{name}.mmap"));
    std::fs::write(&p, [0u8; 8192]).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    chown_nobody(&p);
    for side in ["shm-producer", "shm-consumer"] {
        assert_refused(&named(&name, &[side, "--api", "mmap"]), &[1], &p, &[&name]);
    }
    std::fs::remove_file(&p).unwrap();

    // A POSIX queue of another owner.
    let name = unique("squat-mq");
    python(
        "import ctypes,os,sys; l=ctypes.CDLL('libc.so.6'); \
         l.mq_open.argtypes=[ctypes.c_char_p,ctypes.c_int,ctypes.c_int,ctypes.c_void_p]; \
         assert l.mq_open(('/'+sys.argv[1]).encode(), os.O_CREAT|os.O_RDWR, 0o600, None) >= 0",
        &[&name],
    );
    let p = Path::new(MQUEUE_DIR).join(&name);
    chown_nobody(&p);
    for side in ["recv", "send"] {
        assert_refused(&named(&name, &["mq-pair", side]), &[1], &p, &[&name]);
    }
    remove_object(&p);

    // SysV: a segment and a queue with mode 0644 under the project's key; a key file of
    // another owner.
    for (kind, sides) in [
        (
            "m",
            [
                &["shm-producer", "--api", "sysv"][..],
                &["shm-consumer", "--api", "sysv"],
            ],
        ),
        (
            "q",
            [
                &["mq-pair", "recv", "--api", "sysv"][..],
                &["mq-pair", "send", "--api", "sysv"],
            ],
        ),
    ] {
        let name = unique("squat-sysv");
        // The queue tool's key files are its own (`NAME.mq.key`).
        let key = tmp(&format!(
            "{name}{}.key",
            if kind == "q" { ".mq" } else { "" }
        ));
        let id = sysv_squat(kind, &key);
        for side in sides {
            assert_refused(&named(&name, side), &[1], &key, &[&name]);
            assert!(
                ipcs_all()
                    .iter()
                    .any(|&(k, _, i)| k == kind.chars().next().unwrap() && i == id),
                "{side:?}: the squatter's SysV object {kind} {id} is still there"
            );
        }
        let out = run(Command::new("ipcrm")
            .arg(format!("-{kind}"))
            .arg(id.to_string()));
        assert_code(&out, 0);
        std::fs::remove_file(&key).unwrap();
    }
    let name = unique("squat-key");
    let key = tmp(&format!("{name}.key"));
    let mq_key = tmp(&format!("{name}.mq.key"));
    for (argv, key) in [
        (named(&name, &["shm-producer", "--api", "sysv"]), &key),
        (named(&name, &["mq-pair", "recv", "--api", "sysv"]), &mq_key),
    ] {
        std::fs::write(key, b"").unwrap();
        chown_nobody(key);
        assert_refused(&argv, &[1], key, &[&name]);
        std::fs::remove_file(key).unwrap();
    }
}

// ---------------------------------------------------------------------------------
// Modes and names.
// ---------------------------------------------------------------------------------

#[test]
fn every_object_a_waiting_side_creates_is_mode_0600() {
    let _serial = serial();
    let cases: Vec<(Vec<&str>, Vec<String>)> = vec![
        (vec!["shm-producer"], vec!["/dev/shm/N".into()]),
        (
            vec!["shm-producer", "--sync", "mq"],
            vec!["/dev/shm/N".into(), "/dev/mqueue/N.r0.ready".into()],
        ),
        (
            vec!["shm-producer", "--segments", "3", "--segment-size", "8K"],
            vec![
                "/dev/shm/N.pool.2".into(),
                "/dev/shm/N".into(),
                "/dev/mqueue/N.free".into(),
            ],
        ),
        (
            vec!["shm-producer", "--api", "sysv"],
            vec!["TMP/N.key".into()],
        ),
        (
            vec!["shm-producer", "--api", "mmap"],
            vec!["TMP/N.mmap".into()],
        ),
        (vec!["mq-pair", "recv"], vec!["/dev/mqueue/N".into()]),
        (
            vec!["mq-pair", "send", "--api", "sysv"],
            vec!["TMP/N.mq.key".into()],
        ),
        (vec!["pipe-pair", "recv"], vec!["TMP/N".into()]),
        (vec!["pipe-pair", "send"], vec!["TMP/N".into()]),
        (vec!["socket-pair", "recv"], vec!["TMP/N".into()]),
        (
            vec!["socket-pair", "recv", "--type", "dgram"],
            vec!["TMP/N".into()],
        ),
        (
            vec!["socket-pair", "recv", "--type", "seqpacket"],
            vec!["TMP/N".into()],
        ),
    ];
    let t = std::env::temp_dir();
    for (argv, expect) in cases {
        let name = unique("mode");
        let mut c = command(&strings(&argv));
        let waiting = start(c.args(["--name", &name, "--timeout", "20"]));
        let expect: Vec<PathBuf> = expect
            .iter()
            .map(|p| PathBuf::from(p.replace("TMP", t.to_str().unwrap()).replace('N', &name)))
            .collect();
        for p in &expect {
            wait_for_path(p, Duration::from_secs(10));
        }
        std::thread::sleep(Duration::from_millis(200));
        let mut ids = Vec::new();
        for p in leftovers(&name) {
            let mode = object_stat(&p).st_mode & 0o777;
            assert_eq!(mode, 0o600, "{argv:?}: {} has mode {mode:o}", p.display());
            if p.extension().is_some_and(|e| e == "key") {
                let key = ftok(&p);
                for (kind, k, id) in ipcs_all() {
                    if k == key {
                        let perms = Command::new("ipcs")
                            .args([&format!("-{kind}"), "-i", &id.to_string()])
                            .output()
                            .unwrap();
                        let text = String::from_utf8_lossy(&perms.stdout).to_string();
                        assert!(
                            text.contains("mode=0600") || text.contains("mode=600"),
                            "{argv:?}: {text}"
                        );
                        ids.push((kind, id));
                    }
                }
                assert!(
                    !ids.is_empty(),
                    "{argv:?}: no SysV object for {}",
                    p.display()
                );
            }
        }
        signal(&waiting, Signal::SIGTERM);
        let out = finish_within(waiting, SURVIVOR_WATCHDOG);
        assert_code(&out, 143);
        assert_clean(&name, &ids);
    }
}

/// The five binaries, as (program, subcommand) command lines.
fn binaries() -> Vec<Vec<&'static str>> {
    vec![
        vec!["shm-producer"],
        vec!["shm-consumer"],
        vec!["mq-pair", "send"],
        vec!["mq-pair", "recv"],
        vec!["mq-pair", "run"],
        vec!["pipe-pair", "send"],
        vec!["pipe-pair", "recv"],
        vec!["pipe-pair", "run"],
        vec!["socket-pair", "send"],
        vec!["socket-pair", "recv"],
        vec!["socket-pair", "run"],
    ]
}

/// Exit `expected`, one line that says "error", no panic.
#[track_caller]
fn assert_one_clear_error(what: &str, out: &Output, expected: i32) {
    let err = stderr(out);
    assert_eq!(code(&out.status), expected, "{what}: exit\n{err}");
    assert!(!err.contains("panicked"), "{what}: {err}");
    let lines: Vec<&str> = err.lines().filter(|l| l.contains("error")).collect();
    assert_eq!(lines.len(), 1, "{what}: one error line: {err}");
}

#[test]
fn names_are_validated_with_a_clear_error() {
    let _serial = serial();
    let long = "n".repeat(65);
    for bin in binaries() {
        for bad in [
            long.as_str(),
            "",
            "a b",
            "a/b",
            "..",
            "x*y",
            "nul\u{1}",
            "é",
        ] {
            let out = run(command(&strings(&bin)).args(["--name", bad, "--timeout", "1"]));
            assert_one_clear_error(&format!("{bin:?} --name {bad:?}"), &out, 2);
            assert!(
                stderr(&out).contains("name"),
                "{bin:?} {bad:?}: {}",
                stderr(&out)
            );
        }
    }
}

// ---------------------------------------------------------------------------------
// Limits: each refusal names the limit and how to raise it. No limit is changed.
// ---------------------------------------------------------------------------------

fn proc_value(path: &str) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// `shm-producer --api api --segment-size size` at `name`, giving up after 1 s.
fn producer_of_size(api: &str, size: &str, name: &str) -> Command {
    let mut c = cmd("shm-producer");
    c.args(["--api", api, "--segment-size", size])
        .args(["--name", name, "--timeout", "1"]);
    c
}

#[test]
fn limits_are_named_with_how_to_raise_them() {
    let _serial = serial();
    // A raw message over the queue's message size cannot be split: refused.
    for (api, limit) in [
        ("posix", "/proc/sys/fs/mqueue/msgsize_max"),
        ("sysv", "/proc/sys/kernel/msgmax"),
    ] {
        let name = unique("lim-mq");
        let out =
            run(cmd("mq-pair").args(["send", "--raw", "--api", api, "-s", "1M", "--name", &name]));
        assert_one_clear_error(&format!("mq {api} --raw -s 1M"), &out, 2);
        assert!(stderr(&out).contains(limit), "{api}: {}", stderr(&out));
        assert_no_leftovers(&name);
    }

    // A POSIX segment larger than /dev/shm's free space: refused by the statvfs check
    // before shm_open/ftruncate/mmap (nothing is created), never a SIGBUS.
    let st = nix::sys::statvfs::statvfs("/dev/shm").expect("statvfs /dev/shm");
    let free = st.blocks_available() as u64 * st.fragment_size() as u64;
    let ask = format!("{}G", (free >> 30) + 2);
    let name = unique("lim-shm");
    let out = run(&mut producer_of_size("posix", &ask, &name));
    assert_one_clear_error(&format!("--segment-size {ask}"), &out, 1);
    let err = stderr(&out);
    assert!(
        err.contains("/dev/shm") && err.contains("free") && err.contains("lower --segment-size"),
        "{err}"
    );
    assert_no_leftovers(&name);

    // The same through a mapped file on tmpfs: refused before ftruncate, file removed.
    let name = unique("lim-mmap");
    let file = Path::new("/dev/shm").join(format!("{name}.mmap"));
    let out = run(producer_of_size("mmap", &ask, &name)
        .arg("--file")
        .arg(&file));
    assert_one_clear_error(&format!("--api mmap --segment-size {ask}"), &out, 1);
    assert!(stderr(&out).contains("free"), "{}", stderr(&out));
    assert_no_leftovers(&name);

    // SysV: a segment over shmmax, if shmmax is small enough to ask for more.
    let shmmax = proc_value("/proc/sys/kernel/shmmax").unwrap_or(u64::MAX);
    if shmmax < (1 << 40) {
        let name = unique("lim-sysv");
        let ask = (shmmax + 8192).to_string();
        let out = run(&mut producer_of_size("sysv", &ask, &name));
        assert_one_clear_error("sysv over shmmax", &out, 1);
        assert!(
            stderr(&out).contains("/proc/sys/kernel/shmmax"),
            "{}",
            stderr(&out)
        );
        assert_no_leftovers(&name);
    } else {
        eprintln!("SKIPPED: SysV segment over shmmax: /proc/sys/kernel/shmmax is {shmmax}, no segment can be asked over it");
    }
    // A SysV segment the kernel cannot commit (ENOMEM), if it refuses one.
    let name = unique("lim-sysv-big");
    let huge = format!("{}G", (free >> 30) * 64);
    let out = run(&mut producer_of_size("sysv", &huge, &name));
    if code(&out.status) == 1 {
        assert_one_clear_error("sysv huge", &out, 1);
        let err = stderr(&out);
        assert!(
            err.contains("shmmax") || err.contains("shmall") || err.contains("overcommit"),
            "{err}"
        );
    } else {
        eprintln!(
            "SKIPPED: the kernel gave a huge SysV segment (exit {})",
            code(&out.status)
        );
    }
    assert_no_leftovers(&name);
    eprintln!(
        "SKIPPED: shmmni ({:?} segments): reaching it would take the whole machine's segments",
        proc_value("/proc/sys/kernel/shmmni")
    );

    // A datagram or seqpacket message larger than the socket can carry.
    for ty in ["dgram", "seqpacket"] {
        let out = run(cmd("socket-pair").args(["run", "--type", ty, "-s", "64M", "-n", "1"]));
        assert_one_clear_error(&format!("{ty} 64M"), &out, 2);
        let err = stderr(&out);
        assert!(
            err.contains("/proc/sys/net/core/wmem_max") && err.contains("sysctl"),
            "{err}"
        );
        let name = unique("lim-dgram");
        let out = run(cmd("socket-pair").args([
            "send",
            "--type",
            ty,
            "-s",
            "64M",
            "-n",
            "1",
            "--name",
            &name,
            "--timeout",
            "1",
        ]));
        assert_one_clear_error(&format!("send {ty} 64M"), &out, 2);
        assert!(stderr(&out).contains("wmem_max"), "{}", stderr(&out));
        assert_no_leftovers(&name);
    }
}

// ---------------------------------------------------------------------------------
// Bad flags, every binary: exit 2 (usage) or 1 (runtime), one clear line, no panic.
// ---------------------------------------------------------------------------------

#[test]
fn bad_flags_on_every_binary_exit_2_or_1_with_one_clear_line() {
    let _serial = serial();
    // Every binary: an unknown flag, and these values of common flags, are usage errors.
    let common: &[(&str, &[&str])] = &[
        ("--bogus", &[]),
        ("-s", &["0", "300M", "4X", "99999999999999999999"]),
        ("-n", &["0", "-5", "99999999999999999999999"]),
        ("--timeout", &["0", "nan", "1e9"]),
        ("--mode", &["sideways"]),
        ("--seed", &["x"]),
    ];
    let sending: &[(&[&str], i32)] = &[
        (&["--input", "/nonexistent/in.bin"], 1),
        (&["--input", "/nonexistent/in.bin", "--seed", "3"], 2),
    ];
    let receiving: &[(&[&str], i32)] = &[
        (&["--output", "/proc/x/y"], 1),
        (&["--output", "/"], 1),
        (&["--output", "/nonexistent/dir/out.bin"], 1),
    ];
    let specific: &[(&[&str], &[&str], i32)] = &[
        (&["shm-producer"], &["--segment-size", "0"], 2),
        (&["shm-producer"], &["--segment-size", "100"], 2),
        (&["shm-producer"], &["--segment-size", "99999999999G"], 2),
        (&["shm-producer"], &["--segments", "0"], 2),
        (&["shm-producer"], &["--segments", "65"], 2),
        (&["shm-producer"], &["--segments", "-1"], 2),
        (&["shm-producer"], &["--api", "carrier-pigeon"], 2),
        (&["shm-producer"], &["--sync", "telepathy"], 2),
        (&["shm-producer"], &["--file", "/tmp/x"], 2),
        (&["shm-producer"], &["--zero-copy", "-s", "2M"], 2),
        (&["shm-consumer"], &["--api", "x"], 2),
        (&["mq-pair", "send"], &["--priority", "99999"], 2),
        (&["mq-pair", "send"], &["--api", "x"], 2),
        (&["mq-pair", "run"], &["--raw", "-s", "1M"], 2),
        (&["pipe-pair", "recv"], &["--fifo", "/proc/x/y"], 1),
        (&["socket-pair", "send"], &["--tcp", "not-an-address"], 2),
        (&["socket-pair", "send"], &["--tcp", "127.0.0.1:99999"], 2),
        (&["socket-pair", "recv"], &["--type", "carrier"], 2),
        (&["socket-pair", "run"], &["--tcp", "127.0.0.1:1"], 2),
        (&["socket-pair", "recv"], &["--unix", "/proc/x/sock"], 1),
    ];
    let mut n = 0;
    let mut check = |bin: &[&str], flags: &[&str], expected: i32| {
        let name = unique("flags");
        let mut c = cmd(bin[0]);
        c.args(&bin[1..]).args(flags);
        if !flags
            .iter()
            .any(|f| ["--fifo", "--unix", "--tcp"].contains(f))
        {
            c.args(["--name", &name]);
        }
        let out = run(&mut c);
        assert_one_clear_error(&format!("{bin:?} {flags:?}"), &out, expected);
        assert_no_leftovers(&name);
        n += 1;
    };
    for bin in binaries() {
        for (flag, values) in common {
            if values.is_empty() {
                check(&bin, &[flag], 2);
            }
            for value in *values {
                check(&bin, &[flag, value], 2);
            }
        }
        let sends = bin[0] == "shm-producer" || bin.get(1).is_some_and(|s| *s != "recv");
        let recvs = bin[0] == "shm-consumer" || bin.get(1).is_some_and(|s| *s != "send");
        if sends {
            sending.iter().for_each(|(f, e)| check(&bin, f, *e));
        }
        if recvs {
            receiving.iter().for_each(|(f, e)| check(&bin, f, *e));
        }
    }
    for (bin, flags, expected) in specific {
        check(bin, flags, *expected);
    }
    eprintln!("{n} bad command lines: each exit 2 or 1 with one error line");
}
