//! Helpers for the integration tests: find the workspace's binaries, give every test a
//! unique IPC name, run processes under a watchdog, and check that nothing is left.

pub mod mechanism;
pub mod scenario;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Longest any single process in a test may run before the watchdog kills it.
pub const WATCHDOG: Duration = Duration::from_secs(60);

/// A binary of the workspace, built by `make test` (`cargo build --workspace --bins`)
/// into the same target directory as this test.
pub fn bin(name: &str) -> PathBuf {
    // The test runs as target/<profile>/deps/<test>-<hash>; binaries are in target/<profile>.
    let exe = std::env::current_exe().expect("current_exe");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test binary lives in target/<profile>/deps");
    let dir = build_bins_once(dir).unwrap_or_else(|| dir.to_path_buf());
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: build the binaries first (`make test` does, or `cargo build --workspace --bins`)",
        path.display()
    );
    path
}

/// With `IPC_TEST_BUILD_BINS=1` (`make mutants`), build the workspace's binaries from
/// this test's own source tree before the first use, and return where they are: a
/// mutation tester builds only the tests, and the binaries the tests run must carry the
/// mutation too. They go to a target directory of their own (`cargo test` holds its own).
fn build_bins_once(profile_dir: &Path) -> Option<PathBuf> {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    if std::env::var("IPC_TEST_BUILD_BINS").as_deref() != Ok("1") {
        return None;
    }
    let dir = BUILT.get_or_init(|| {
        let target = profile_dir.join("bins-for-tests");
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args([
                "build",
                "--workspace",
                "--bins",
                "--quiet",
                "--manifest-path",
            ])
            .arg(&manifest)
            .env("CARGO_TARGET_DIR", &target)
            .status()
            .expect("run cargo build");
        assert!(status.success(), "cargo build --workspace --bins failed");
        target.join("debug")
    });
    Some(dir.clone())
}

/// One `#[test]` per row, each running `check(item, arg)` for every item of `over`:
/// `tests_over!(APIS => a_second_sender_is_refused: second_is_refused("send"));`.
#[macro_export]
macro_rules! tests_over {
    ($over:expr => $($test:ident: $check:ident($arg:expr)),* $(,)?) => {$(
        #[test]
        fn $test() {
            for item in $over {
                $check(item, $arg);
            }
        }
    )*};
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A name no other test (or run of the suite) uses: `ipc-test-<tag>-<pid>-<n>`.
pub fn unique(tag: &str) -> String {
    format!(
        "ipc-test-{tag}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// One of the workspace's binaries as an `assert_cmd` command, under the watchdog: for a
/// single process whose exit code and output the test asserts.
pub fn tool(binary: &str) -> assert_cmd::Command {
    let mut c = assert_cmd::Command::new(bin(binary));
    c.timeout(WATCHDOG);
    c
}

/// A command for one of the workspace's binaries.
pub fn cmd(binary: &str) -> Command {
    let mut c = Command::new(bin(binary));
    c.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

/// Start `c`, panicking with the command line if it cannot start.
pub fn start(c: &mut Command) -> Child {
    c.spawn()
        .unwrap_or_else(|e| panic!("cannot start {c:?}: {e}"))
}

/// Wait for `child` with a watchdog: a process still running after `limit` is killed
/// and the test fails, so a hang shows as a failure, never as a stuck suite. Output is
/// drained while waiting, so a child writing much to stdout cannot block on it.
pub fn finish_within(mut child: Child, limit: Duration) -> Output {
    fn drain<R: Read + Send + 'static>(r: Option<R>) -> std::thread::JoinHandle<Vec<u8>> {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut r) = r {
                let _ = r.read_to_end(&mut buf);
            }
            buf
        })
    }
    let out = drain(child.stdout.take());
    let err = drain(child.stderr.take());
    let start = Instant::now();
    let mut killed = false;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            killed = true;
            break child.wait().expect("wait");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let output = Output {
        status,
        stdout: out.join().expect("stdout reader"),
        stderr: err.join().expect("stderr reader"),
    };
    assert!(
        !killed,
        "process still running after {limit:?}; killed it.\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

pub fn finish(child: Child) -> Output {
    finish_within(child, WATCHDOG)
}

/// Run `c` to completion under the watchdog.
pub fn run(c: &mut Command) -> Output {
    finish(start(c))
}

pub fn code(status: &ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Assert the exit code, showing both streams when it differs.
#[track_caller]
pub fn assert_code(out: &Output, expected: i32) {
    assert_eq!(
        code(&out.status),
        expected,
        "unexpected exit code\nstdout: {}\nstderr: {}",
        stdout(out),
        stderr(out)
    );
}

/// The `--json` summary on stdout (the last line that parses as an object).
#[track_caller]
pub fn summary(out: &Output) -> serde_json::Value {
    stdout(out)
        .lines()
        .rev()
        .find_map(|l| {
            serde_json::from_str::<serde_json::Value>(l)
                .ok()
                .filter(|v| v.is_object())
        })
        .unwrap_or_else(|| {
            panic!(
                "no JSON summary on stdout\nstdout: {}\nstderr: {}",
                stdout(out),
                stderr(out)
            )
        })
}

/// Check a receiver's summary: every message arrived once and intact.
#[track_caller]
pub fn assert_verified(v: &serde_json::Value, messages: u64) {
    assert_eq!(v["verified"], true, "{v}");
    assert_eq!(v["received"], messages, "{v}");
    assert_eq!(v["lost"], 0, "{v}");
    assert_eq!(v["duplicated"], 0, "{v}");
    assert_eq!(v["corrupted"], 0, "{v}");
}

/// The human summary on `out`'s stdout: all `messages` arrived once and intact.
#[track_caller]
pub fn assert_verified_line(out: &Output, messages: u64) {
    let line = format!("{messages} received, 0 lost, 0 duplicated, 0 corrupted: verified");
    assert!(
        stdout(out).contains(&line),
        "no {line:?}\nstdout: {}\nstderr: {}",
        stdout(out),
        stderr(out)
    );
}

/// Where POSIX queues show as files when the mqueue file system is mounted. Tests name a
/// queue `/dev/mqueue/NAME` either way: the helpers below find it with `mq_open` when
/// the directory is not mounted (the queues work without it).
pub const MQUEUE_DIR: &str = "/dev/mqueue";

/// `/NAME` for a path `/dev/mqueue/NAME`, else `None`.
pub fn queue_name(path: &Path) -> Option<String> {
    let rest = path.strip_prefix(MQUEUE_DIR).ok()?;
    let name = rest.to_str()?;
    (!name.is_empty() && !name.contains('/')).then(|| format!("/{name}"))
}

/// Is the mqueue file system mounted on /dev/mqueue (so a listing shows every queue)?
pub fn mqueue_mounted() -> bool {
    // MQUEUE_MAGIC of linux/magic.h (nix does not name it).
    const MQUEUE_MAGIC: u32 = 0x1980_0202;
    nix::sys::statfs::statfs(MQUEUE_DIR)
        .is_ok_and(|s| u32::try_from(s.filesystem_type().0) == Ok(MQUEUE_MAGIC))
}

fn open_read_only(qname: &str) -> nix::Result<nix::mqueue::MqdT> {
    use nix::mqueue::{mq_open, MQ_OFlag};
    mq_open(
        qname,
        MQ_OFlag::O_RDONLY | MQ_OFlag::O_NONBLOCK,
        nix::sys::stat::Mode::empty(),
        None,
    )
}

/// Does the POSIX queue `/NAME` exist? Works without the mount. A queue we may not open
/// (another user's) exists too; any other failure panics, since it cannot tell.
pub fn queue_exists(qname: &str) -> bool {
    match open_read_only(qname) {
        // nix's MqdT does not close itself: an open descriptor would make this test a
        // holder of the queue, which ipc-ctl rightly refuses to remove.
        Ok(q) => {
            let _ = nix::mqueue::mq_close(q);
            true
        }
        Err(nix::errno::Errno::ENOENT) => false,
        Err(nix::errno::Errno::EACCES) => true,
        Err(e) => {
            panic!("mq_open({qname:?}, O_RDONLY) failed: {e}; cannot tell whether the queue exists")
        }
    }
}

/// Does the object exist: a POSIX queue named as `/dev/mqueue/NAME` (mounted or not), or
/// any other path (not following a symlink).
pub fn object_exists(path: &Path) -> bool {
    match queue_name(path) {
        Some(q) => queue_exists(&q),
        None => path.symlink_metadata().is_ok(),
    }
}

/// `stat` of an object: `fstat` of the queue's descriptor for `/dev/mqueue/NAME` (the
/// same inode the mounted file shows), else `lstat` of the path. Panics if it is gone.
pub fn object_stat(path: &Path) -> nix::sys::stat::FileStat {
    match queue_name(path) {
        Some(q) => {
            let m = open_read_only(&q)
                .unwrap_or_else(|e| panic!("mq_open({q:?}, O_RDONLY) to stat it: {e}"));
            let st = nix::sys::stat::fstat(std::os::fd::AsRawFd::as_raw_fd(&m));
            let _ = nix::mqueue::mq_close(m);
            st.unwrap_or_else(|e| panic!("fstat of queue {q}: {e}"))
        }
        None => nix::sys::stat::lstat(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
    }
}

/// Remove an object: `mq_unlink` for `/dev/mqueue/NAME`, else unlink the path.
pub fn remove_object(path: &Path) {
    match queue_name(path) {
        Some(q) => {
            nix::mqueue::mq_unlink(q.as_str()).unwrap_or_else(|e| panic!("mq_unlink({q:?}): {e}"))
        }
        None => std::fs::remove_file(path)
            .unwrap_or_else(|e| panic!("removing {}: {e}", path.display())),
    }
}

/// Every queue name the project derives from `name` (the pair's queue, `mq-pair`'s reply
/// queue, `--sync mq`'s per-ring queues for up to 2 rings, the pool's free-id queue):
/// what a leftover check opens by name when it cannot list /dev/mqueue.
pub fn queue_names_of(name: &str) -> Vec<String> {
    let mut v = vec![
        format!("/{name}"),
        format!("/{name}.reply"),
        format!("/{name}.free"),
    ];
    for ring in 0..2 {
        v.push(format!("/{name}.r{ring}.ready"));
        v.push(format!("/{name}.r{ring}.ok"));
    }
    v
}

/// Names containing `name` that are still present anywhere the project makes objects:
/// file-system names (FIFOs, sockets, key and mapped files in the temporary directory),
/// POSIX shared memory, and POSIX queues (listed when /dev/mqueue is mounted, else
/// opened by the names the project derives from `name`, reported as /dev/mqueue/NAME).
/// Panics when a place cannot be looked at: "nothing left" must mean nothing was seen.
pub fn leftovers(name: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut dirs = vec![std::env::temp_dir(), PathBuf::from("/dev/shm")];
    let mounted = mqueue_mounted();
    if mounted {
        dirs.push(MQUEUE_DIR.into());
    }
    for dir in dirs {
        let entries = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("cannot list {} to look for leftovers: {e}", dir.display()));
        for e in entries {
            let e = e.unwrap_or_else(|e| panic!("listing {}: {e}", dir.display()));
            if e.file_name().to_string_lossy().contains(name) {
                found.push(e.path());
            }
        }
    }
    if !mounted {
        for q in queue_names_of(name) {
            if queue_exists(&q) {
                found.push(Path::new(MQUEUE_DIR).join(&q[1..]));
            }
        }
    }
    found
}

/// SysV objects (`ipcs -m -q -s`) whose key is in `keys`.
pub fn sysv_leftovers(keys: &[u32]) -> Vec<String> {
    ipcs(&["-m", "-q", "-s"], keys)
}

/// The lines of `ipcs FLAGS` whose key is in `keys`.
fn ipcs(flags: &[&str], keys: &[u32]) -> Vec<String> {
    // A leak check that cannot look fails: an empty list would say "no leaks".
    let out = Command::new("ipcs")
        .args(flags)
        .output()
        .unwrap_or_else(|e| panic!("cannot run ipcs (util-linux) to look for leftovers: {e}"));
    assert!(out.status.success(), "ipcs {flags:?} failed: {out:?}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| {
            l.split_whitespace()
                .next()
                .and_then(|k| u32::from_str_radix(k.trim_start_matches("0x"), 16).ok())
                .is_some_and(|k| keys.contains(&k))
        })
        .map(str::to_string)
        .collect()
}

/// Fail if anything named `name` is left behind.
#[track_caller]
pub fn assert_no_leftovers(name: &str) {
    let left = leftovers(name);
    assert!(left.is_empty(), "IPC objects left behind: {left:?}");
}

/// ftok(path, 'I') as glibc computes it, from the key file's device and inode.
pub fn ftok(path: &Path) -> u32 {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).unwrap_or_else(|e| panic!("key file {}: {e}", path.display()));
    (m.ino() as u32 & 0xffff) | ((m.dev() as u32 & 0xff) << 16) | (u32::from(b'I') << 24)
}

/// The SysV keys an error message names (`... key 0x4900abcd ...`).
pub fn keys_named_in(text: &str) -> Vec<u32> {
    text.match_indices("key 0x")
        .filter_map(|(i, _)| text.get(i + 6..i + 14))
        .filter_map(|h| u32::from_str_radix(h, 16).ok())
        .collect()
}

/// SysV queues (`/proc/sysvipc/msg` lines) with a key in `keys` that one of `pids`
/// last sent to or received from, or that nobody used yet. As for segments, the key
/// alone is not enough: a test alongside may have the same key for its live queue.
/// With no `pids`, every queue with such a key.
pub fn sysv_queues_of(keys: &[u32], pids: &[u32]) -> Vec<String> {
    let text = std::fs::read_to_string("/proc/sysvipc/msg").unwrap_or_default();
    text.lines()
        .skip(1)
        .filter(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let num = |i: usize| f.get(i).and_then(|v| v.parse::<i64>().ok());
            let ours =
                |pid: Option<i64>| pid.is_some_and(|p| pids.iter().any(|&q| i64::from(q) == p));
            let (lspid, lrpid) = (num(5), num(6));
            num(0).is_some_and(|k| keys.contains(&(k as u32)))
                && (pids.is_empty()
                    || ours(lspid)
                    || ours(lrpid)
                    || (lspid == Some(0) && lrpid == Some(0)))
        })
        .map(str::to_string)
        .collect()
}

/// The leak checks after a pair: nothing named `name` in /tmp, /dev/shm, /dev/mqueue; no
/// SysV queue with a key `narration` shows (`-v`'s ftok line or an error's `key 0x..`);
/// no SysV segment with such a key made by one of `pids`.
///
/// A segment's key alone is not enough: /tmp reuses a removed key file's inode, so a
/// test running alongside soon has the same `ftok` key for its own live segment. The
/// creator pid tells them apart.
#[track_caller]
pub fn assert_all_gone(name: &str, narration: &str, pids: &[u32]) {
    assert_no_leftovers(name);
    let mut keys = sysv_keys_in(narration);
    keys.extend(keys_named_in(narration));
    let queues = sysv_queues_of(&keys, pids);
    assert!(queues.is_empty(), "SysV queues left behind: {queues:?}");
    let segments: Vec<SysvShm> = sysv_shm_segments()
        .into_iter()
        .filter(|s| keys.contains(&s.key) && pids.contains(&s.cpid))
        .collect();
    assert!(
        segments.is_empty(),
        "SysV segments left behind (keys {keys:x?}): {segments:?}"
    );
}

/// Wait until `path` exists (the peer created its object), at most `limit`. A POSIX
/// queue, `/dev/mqueue/NAME`, is found whether or not /dev/mqueue is mounted.
pub fn wait_for_path(path: &Path, limit: Duration) {
    let start = Instant::now();
    while !object_exists(path) {
        assert!(
            start.elapsed() < limit,
            "{} did not appear within {limit:?}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Send `sig` to a running child.
pub fn signal(child: &Child, sig: nix::sys::signal::Signal) {
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, sig).expect("kill");
}

/// Random bytes for file tests, from a fixed seed so a failure reproduces.
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            // xorshift64: plenty for test data.
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 32) as u8
        })
        .collect()
}

/// Write `data` to a fresh file in a temporary directory that lives as long as the guard.
pub fn temp_file(data: &[u8]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("input.bin");
    std::fs::write(&path, data).expect("write input");
    (dir, path)
}

/// Wait until `path` no longer exists (its owner removed it), at most `limit`; a POSIX
/// queue as in [`wait_for_path`].
pub fn wait_for_gone(path: &Path, limit: Duration) {
    let start = Instant::now();
    while object_exists(path) {
        assert!(
            start.elapsed() < limit,
            "{} was not removed within {limit:?}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A running child whose stderr is read as it comes, so a test can wait for a line
/// ("waiting ...") before it acts, and still gets the whole stream at the end.
pub struct Watched {
    child: Child,
    text: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
    reader: std::thread::JoinHandle<()>,
}

/// Start `c` with its stderr watched.
pub fn start_watched(c: &mut Command) -> Watched {
    let mut child = start(c);
    let mut err = child.stderr.take().expect("stderr is piped");
    let text = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = text.clone();
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        loop {
            match err.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => sink
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .extend_from_slice(&buf[..n]),
            }
        }
    });
    Watched {
        child,
        text,
        reader,
    }
}

impl Watched {
    pub fn child(&self) -> &Child {
        &self.child
    }

    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Has the process exited (without reaping its output)?
    pub fn exited(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_some()
    }

    /// The stderr read so far.
    pub fn stderr_so_far(&self) -> String {
        String::from_utf8_lossy(&self.text.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
    }

    /// Wait until stderr contains `needle`; fail if the process exits first or `limit` passes.
    #[track_caller]
    pub fn wait_for(&mut self, needle: &str, limit: Duration) {
        let start = Instant::now();
        while !self.stderr_so_far().contains(needle) {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                std::thread::sleep(Duration::from_millis(50));
                panic!(
                    "exited ({status}) before saying {needle:?}; stderr: {}",
                    self.stderr_so_far()
                );
            }
            assert!(
                start.elapsed() < limit,
                "did not say {needle:?} within {limit:?}; stderr: {}",
                self.stderr_so_far()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// [`finish_within`], with the whole stderr in the output.
    pub fn finish_within(self, limit: Duration) -> Output {
        let mut out = finish_within(self.child, limit);
        self.reader.join().expect("stderr reader");
        out.stderr = std::mem::take(&mut *self.text.lock().unwrap_or_else(|e| e.into_inner()));
        out
    }

    pub fn finish(self) -> Output {
        self.finish_within(WATCHDOG)
    }
}

/// One System V shared-memory segment, as `/proc/sysvipc/shm` lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SysvShm {
    pub key: u32,
    pub id: i32,
    /// Permission bits, e.g. `0o600`.
    pub perms: u32,
    pub size: u64,
    pub cpid: u32,
    pub nattch: u64,
    pub uid: u32,
}

/// Every System V shared-memory segment on the machine (empty if the kernel has none
/// or `/proc/sysvipc` is missing).
pub fn sysv_shm_segments() -> Vec<SysvShm> {
    let Ok(text) = std::fs::read_to_string("/proc/sysvipc/shm") else {
        return Vec::new();
    };
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            Some(SysvShm {
                key: f.first()?.parse::<i32>().ok()? as u32,
                id: f.get(1)?.parse().ok()?,
                perms: u32::from_str_radix(f.get(2)?, 8).ok()? & 0o777,
                size: f.get(3)?.parse().ok()?,
                cpid: f.get(4)?.parse().ok()?,
                nattch: f.get(6)?.parse().ok()?,
                uid: f.get(7)?.parse().ok()?,
            })
        })
        .collect()
}

/// The SysV keys that `-v` narration showed (`ftok("...", 'I') = 0x4900c071`).
pub fn sysv_keys_in(narration: &str) -> Vec<u32> {
    let mut keys: Vec<u32> = narration
        .lines()
        .filter(|l| l.contains("ftok("))
        .filter_map(|l| {
            let hex = l.split("= 0x").nth(1)?;
            let digits: String = hex.chars().take_while(char::is_ascii_hexdigit).collect();
            u32::from_str_radix(&digits, 16).ok()
        })
        .collect();
    keys.sort_unstable();
    keys.dedup();
    keys
}

/// The pid of `run`'s receiver child, waiting (at most `limit`) until it exists.
pub fn run_child(run: &Child, limit: Duration) -> i32 {
    let path = format!("/proc/{}/task/{}/children", run.id(), run.id());
    let start = Instant::now();
    loop {
        let kids = std::fs::read_to_string(&path).unwrap_or_default();
        if let Some(pid) = kids.split_whitespace().next() {
            return pid.parse().expect("a pid");
        }
        assert!(
            start.elapsed() < limit,
            "run {} has no child after {limit:?}",
            run.id()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A file transfer's receiver summary: a file payload of `data.len()` bytes in
/// `chunk`-sized messages, all verified, and `output` holds exactly `data`.
#[track_caller]
pub fn assert_file_received(recv: &Output, output: &Path, data: &[u8], chunk: usize) {
    let v = summary(recv);
    assert_eq!(v["payload"], "file", "{v}");
    assert_eq!(v["bytes"], data.len() as u64, "{v}");
    assert_verified(&v, data.len().div_ceil(chunk) as u64);
    assert_holds(output, data);
}

/// The file at `path` holds exactly `data` (a transfer's output, byte for byte).
#[track_caller]
pub fn assert_holds(path: &Path, data: &[u8]) {
    let got = std::fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    assert!(
        got == data,
        "{} differs from the input ({} bytes, {} expected)",
        path.display(),
        got.len(),
        data.len()
    );
}

/// Start `first`, wait until it says it waits for its peer, start `second`; finish both.
/// Returns (first, second) outputs and their pids.
pub fn pair(first: &mut Command, second: &mut Command) -> (Output, Output, Vec<u32>) {
    let mut a = start_watched(first);
    a.wait_for("waiting", Duration::from_secs(20));
    let b = start_watched(second);
    let pids = vec![a.id(), b.id()];
    let (a, b) = (a.finish(), b.finish());
    (a, b, pids)
}

/// Both sides of a pair exited 0; otherwise show both sides' streams.
#[track_caller]
pub fn assert_both_ok(a: &Output, b: &Output) {
    assert!(
        a.status.success() && b.status.success(),
        "exit codes {} and {}\n--- first: stdout: {}\nstderr: {}\n--- second: stdout: {}\nstderr: {}",
        code(&a.status),
        code(&b.status),
        stdout(a),
        stderr(a),
        stdout(b),
        stderr(b)
    );
}

/// The stderr of several processes, one after the other (for the leak check's keys).
pub fn stderr_of(outs: &[&Output]) -> String {
    outs.iter().map(|o| stderr(o)).collect()
}

/// A file at `path` with `data` and exactly `mode`, as a squatter would leave it.
pub fn write_with_mode(path: &Path, data: &[u8], mode: u32) {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .and_then(|mut f| f.write_all(data))
        .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
}

/// `path` still holds `data` with `mode`: a refused side left it alone.
#[track_caller]
pub fn assert_untouched(path: &Path, data: &[u8], mode: u32) {
    use std::os::unix::fs::MetadataExt;
    let now = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(now, data, "{} changed", path.display());
    let meta = std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(meta.mode() & 0o777, mode, "{} changed mode", path.display());
}

/// Each case of `cases` (`;` between cases, arguments split at white space; an empty
/// case is no argument at all) is refused by `program` with exit 2 and a message, never
/// a panic.
#[track_caller]
pub fn assert_usage_errors(program: &str, cases: &str) {
    use predicates::prelude::*;
    for case in cases.split(';') {
        tool(program)
            .args(case.split_whitespace())
            .assert()
            .code(2)
            .stderr(predicate::str::is_empty().not())
            .stderr(predicate::str::contains("panicked").not());
    }
}

/// Run `program ARGS` alone under the watchdog: it exits with `code` and its stderr says
/// each of `says`. Returns the output for further checks.
#[track_caller]
pub fn assert_run(program: &str, args: &[&str], code: i32, says: &[&str]) -> Output {
    let out = tool(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert_exit(&out, code, says);
    out
}

/// `program --help` (and `SUB --help` when `sub` is given) exits 0 and mentions every
/// word of `words` and every flag of `flags` (the latter from `SUB --help`).
#[track_caller]
pub fn assert_help(program: &str, words: &[&str], sub: Option<&str>, flags: &[&str]) {
    use predicates::str::contains;
    let mut top = tool(program).arg("--help").assert().code(0);
    for word in words {
        top = top.stdout(contains(*word));
    }
    let Some(sub) = sub else {
        return;
    };
    let mut own = tool(program).args([sub, "--help"]).assert().code(0);
    for flag in flags {
        own = own.stdout(contains(*flag));
    }
}

/// Two network namespaces ("hosts") joined by a veth pair, `SUBNET.1` in the first and
/// `SUBNET.2` in the second, each with loopback up; both deleted on drop (passed or not).
pub struct TwoHosts {
    names: Vec<String>,
}

/// `ip ARGS`, its stderr as the error.
pub fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip: {e}"))?;
    if out.status.success() {
        return Ok(());
    }
    let why = String::from_utf8_lossy(&out.stderr);
    Err(format!("ip {}: {}", args.join(" "), why.trim()))
}

impl TwoHosts {
    /// `Err` when no namespace can be made here (no root, no `ip`, a container); any
    /// later step that fails panics. `dev`: the veth names' prefix (`dev0`, `dev1`).
    pub fn new(dev: &str, subnet: &str) -> Result<TwoHosts, String> {
        let (a, b) = (unique(&format!("{dev}-a")), unique(&format!("{dev}-b")));
        ip(&["netns", "add", &a])?;
        let mut hosts = TwoHosts { names: vec![a] };
        let must = |r: Result<(), String>| r.unwrap_or_else(|e| panic!("{e}"));
        must(ip(&["netns", "add", &b]));
        hosts.names.push(b);
        let (a, b) = (&hosts.names[0], &hosts.names[1]);
        let (dev0, dev1) = (format!("{dev}0"), format!("{dev}1"));
        // Created straight inside the namespaces: nothing appears in this one.
        must(ip(&[
            "link", "add", &dev0, "netns", a, "type", "veth", "peer", "name", &dev1, "netns", b,
        ]));
        for (n, d, host) in [(a, &dev0, 1), (b, &dev1, 2)] {
            must(ip(&[
                "-n",
                n,
                "addr",
                "add",
                &format!("{subnet}.{host}/24"),
                "dev",
                d,
            ]));
            must(ip(&["-n", n, "link", "set", d, "up"]));
            must(ip(&["-n", n, "link", "set", "lo", "up"]));
        }
        Ok(hosts)
    }

    /// The workspace's `program`, to run in host `i` (0 or 1).
    pub fn command(&self, i: usize, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.names[i]])
            .arg(bin(program))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c
    }

    /// Delete both namespaces and check that they are gone.
    #[track_caller]
    pub fn remove(self) {
        let names = self.names.clone();
        drop(self);
        let list = Command::new("ip").args(["netns", "list"]).output();
        let list = list.map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
        let list = list.unwrap_or_else(|e| panic!("ip netns list: {e}"));
        assert!(names.iter().all(|n| !list.contains(n.as_str())), "{list}");
    }
}

impl Drop for TwoHosts {
    fn drop(&mut self) {
        for ns in &self.names {
            let _ = Command::new("ip")
                .args(["netns", "del", ns])
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// `out` (already collected) exited with `code` and its stderr says each of `says`:
/// assert_cmd's checks, which show both streams when one fails.
#[track_caller]
pub fn assert_exit(out: &Output, code: i32, says: &[&str]) {
    use assert_cmd::assert::OutputAssertExt;
    let mut a = out.clone().assert().code(code);
    for s in says {
        a = a.stderr(predicates::str::contains(*s));
    }
}

/// Whether `test` may go on: `missing` is `None` when what it needs is there. Otherwise
/// the test is skipped, visibly with the reason; under CI (env `CI=true`), where
/// everything must be installed and the tests run as root, it fails instead.
#[track_caller]
pub fn require(test: &str, missing: Option<String>) -> bool {
    let Some(why) = missing else {
        return true;
    };
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{test} cannot run under CI=true: {why}"
    );
    eprintln!("SKIPPED {test}: {why}");
    false
}

/// [`require`] a program on PATH: `tool arg` (e.g. `socat -V`) must run and succeed.
#[track_caller]
pub fn require_tool(test: &str, tool: &str, arg: &str) -> bool {
    let ok = Command::new(tool)
        .arg(arg)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    require(
        test,
        (!ok).then(|| format!("{tool} is not installed (.ci/run installs it)")),
    )
}

/// [`require`] root, for what only root may do (`why`).
#[track_caller]
pub fn require_root(test: &str, why: &str) -> bool {
    let root = nix::unistd::geteuid().is_root();
    require(test, (!root).then(|| format!("needs root {why}")))
}

/// [`require`] root and `setpriv` (util-linux), to run a process as another user.
#[track_caller]
pub fn require_other_user(test: &str) -> bool {
    require_root(test, "to run a process as another user")
        && require_tool(test, "setpriv", "--version")
}

/// `CHECKS_ONLY=WORD`: only the mechanisms whose label contains WORD (printed), to
/// rerun one quickly; all of them otherwise.
pub fn only<M>(all: Vec<M>, label: impl Fn(&M) -> String) -> Vec<M> {
    let Ok(word) = std::env::var("CHECKS_ONLY") else {
        return all;
    };
    eprintln!("CHECKS_ONLY={word}: only the mechanisms whose label contains it");
    all.into_iter()
        .filter(|m| label(m).contains(&word))
        .collect()
}
