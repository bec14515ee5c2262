//! Helpers for the integration tests: find the workspace's binaries, give every test a
//! unique IPC name, run processes under a watchdog, and check that nothing is left.

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
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: build the binaries first (`make test` does, or `cargo build --workspace --bins`)",
        path.display()
    );
    path
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

/// Every place this project leaves IPC objects: file-system names (FIFOs, sockets,
/// key and mapped files in the temporary directory), POSIX shared memory and queues.
fn object_dirs() -> Vec<PathBuf> {
    vec![
        std::env::temp_dir(),
        "/dev/shm".into(),
        "/dev/mqueue".into(),
    ]
}

/// Names containing `name` that are still present anywhere the project makes objects.
pub fn leftovers(name: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for dir in object_dirs() {
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for e in entries.flatten() {
                if e.file_name().to_string_lossy().contains(name) {
                    found.push(e.path());
                }
            }
        }
    }
    found
}

/// SysV objects (`ipcs -m -q -s`) whose key is in `keys`.
pub fn sysv_leftovers(keys: &[u32]) -> Vec<String> {
    let Ok(out) = Command::new("ipcs").args(["-m", "-q", "-s"]).output() else {
        return Vec::new();
    };
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

/// Wait until `path` exists (the peer created its object), at most `limit`.
pub fn wait_for_path(path: &Path, limit: Duration) {
    let start = Instant::now();
    while !path.exists() {
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
