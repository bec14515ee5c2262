//! `ipc-ctl`: listing live and dead pairs, and removing exactly the dead ones' objects.
//!
//! Each test runs its pairs and ipc-ctl with TMPDIR set to a directory of its own, so
//! the records (TMPDIR/ipc-pairs-UID), key files and FIFOs of concurrent tests never mix.

use integration_tests::{
    cmd, finish_within, require_other_user, signal, start, stderr, stdout, unique,
};
use nix::sys::signal::Signal;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(30);

/// A private temporary directory, open to others (sticky, like /tmp) so a test may run
/// ipc-ctl as another user in it too.
fn tmpdir() -> tempfile::TempDir {
    let d = tempfile::Builder::new()
        .prefix("ctl-test-")
        .tempdir()
        .unwrap();
    std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o1777)).unwrap();
    d
}

fn with_env(mut c: Command, tmp: &Path) -> Command {
    c.env("TMPDIR", tmp).env_remove("XDG_RUNTIME_DIR");
    c
}

fn ctl(tmp: &Path, args: &[&str]) -> Output {
    let mut c = with_env(cmd("ipc-ctl"), tmp);
    c.args(args);
    finish_within(start(&mut c), LIMIT)
}

fn ls_json(tmp: &Path) -> serde_json::Value {
    let out = ctl(tmp, &["ls", "--json"]);
    assert_eq!(out.status.code(), Some(0), "ls: {}", stderr(&out));
    serde_json::from_str(&stdout(&out)).expect("ls --json gives JSON")
}

/// The listed objects of pair `name`.
fn objects_of(v: &serde_json::Value, name: &str) -> Vec<serde_json::Value> {
    v["objects"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o["pair"] == name)
        .cloned()
        .collect()
}

/// A producer that creates its objects and waits for a consumer.
fn producer(tmp: &Path, name: &str, api: &str) -> Child {
    let mut c = with_env(cmd("shm-producer"), tmp);
    c.args(["--name", name, "--api", api, "--timeout", "30", "-n", "1"]);
    start(&mut c)
}

/// Wait until ipc-ctl lists `n` recorded objects of pair `name`.
fn wait_recorded(tmp: &Path, name: &str, n: usize) -> serde_json::Value {
    let until = Instant::now() + LIMIT;
    loop {
        let v = ls_json(tmp);
        let recorded = objects_of(&v, name)
            .iter()
            .filter(|o| o["recorded"] == true && o["exists"] == true)
            .count();
        if recorded >= n {
            return v;
        }
        assert!(
            Instant::now() < until,
            "pair {name} never recorded {n} objects: {v}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn kill9(child: Child) {
    signal(&child, Signal::SIGKILL);
    let out = finish_within(child, LIMIT);
    assert_eq!(out.status.code(), None, "killed by a signal");
}

fn stop(child: Child) {
    signal(&child, Signal::SIGTERM);
    let out = finish_within(child, LIMIT);
    assert_eq!(out.status.code(), Some(128 + 15), "{}", stderr(&out));
}

fn sysv_ids(kind: &str) -> Vec<i32> {
    let text = std::fs::read_to_string(format!("/proc/sysvipc/{kind}")).unwrap();
    text.lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().nth(1)?.parse().ok())
        .collect()
}

fn sysv_id_of(o: &serde_json::Value) -> i32 {
    o["id"].as_i64().expect("a SysV id") as i32
}

/// The temporary directory of `test`, which runs ipc-ctl as another user too: `None`
/// (the test skipped, saying why) without root and `setpriv`.
fn tmpdir_for_two_users(test: &str) -> Option<tempfile::TempDir> {
    require_other_user(test).then(tmpdir)
}

fn as_nobody(tmp: &Path, program: &Path, args: &[&str]) -> Output {
    let mut c = Command::new("setpriv");
    c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(program)
        .args(args)
        .env("TMPDIR", tmp)
        .env_remove("XDG_RUNTIME_DIR")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    finish_within(start(&mut c), LIMIT)
}

fn bin(name: &str) -> PathBuf {
    integration_tests::bin(name)
}

#[test]
fn ls_shows_live_and_dead_and_clean_removes_only_the_dead_ones() {
    let tmp = tmpdir();
    let t = tmp.path();
    let live = unique("ctl-live");
    let dead = unique("ctl-dead");
    let dead_mq = unique("ctl-deadmq");
    let live_p = producer(t, &live, "posix");
    // A live SysV producer's key file is held by no descriptor: only its record's lock
    // tells that its owner lives.
    let live_sysv = unique("ctl-livesysv");
    let live_sysv_p = producer(t, &live_sysv, "sysv");
    let dead_p = producer(t, &dead, "sysv");
    let mut c = with_env(cmd("mq-pair"), t);
    c.args(["send", "--name", &dead_mq, "--timeout", "30", "-n", "1"]);
    let dead_q = start(&mut c);
    wait_recorded(t, &live, 1);
    wait_recorded(t, &live_sysv, 2);
    let v = wait_recorded(t, &dead, 2); // the key file and the segment
    wait_recorded(t, &dead_mq, 1);
    let seg = objects_of(&v, &dead)
        .into_iter()
        .find(|o| o["kind"] == "sysv-shm")
        .expect("the dead pair's segment is listed");
    let seg_id = sysv_id_of(&seg);
    kill9(dead_p);
    kill9(dead_q);

    let v = ls_json(t);
    let live_objs = objects_of(&v, &live);
    assert!(!live_objs.is_empty(), "{v}");
    for o in &live_objs {
        assert_eq!(o["alive"], true, "{o}");
        assert_eq!(o["creators"][0]["alive"], true, "{o}");
        assert_eq!(o["creators"][0]["program"], "shm-producer", "{o}");
    }
    for name in [&dead, &dead_mq] {
        let objs = objects_of(&v, name);
        assert!(!objs.is_empty(), "{name} listed: {v}");
        for o in &objs {
            assert_eq!(o["alive"], false, "{o}");
            assert_eq!(o["creators"][0]["alive"], false, "{o}");
        }
    }
    // The segment's state comes from its header, read through a read-only view.
    assert_eq!(seg["state"]["type"], "segment", "{seg}");
    assert_eq!(seg["state"]["phase"], "ready", "{seg}");

    let out = ctl(t, &["clean"]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}{}", stderr(&out));
    assert!(text.contains("removed sysv-shm"), "{text}");
    assert!(text.contains(&format!("{dead}.key")), "{text}");
    assert!(
        text.contains(&format!("removed posix-mq /{dead_mq}")),
        "{text}"
    );
    assert!(
        text.contains(&format!("kept posix-shm /{live}: in use")),
        "{text}"
    );
    // Gone: the dead pair's segment, key file and queue; kept: the live pair's segment.
    assert!(
        !sysv_ids("shm").contains(&seg_id),
        "segment {seg_id} removed"
    );
    assert!(!t.join(format!("{dead}.key")).exists());
    let v = ls_json(t);
    assert!(objects_of(&v, &dead).is_empty(), "{v}");
    assert!(objects_of(&v, &dead_mq).is_empty(), "{v}");
    assert!(Path::new(&format!("/dev/shm/{live}")).exists());
    assert!(t.join(format!("{live_sysv}.key")).exists(), "{text}");
    assert!(
        text.contains(&format!(
            "kept key-file {}",
            t.join(format!("{live_sysv}.key")).display()
        )),
        "{text}"
    );
    assert_eq!(objects_of(&v, &live).len(), live_objs.len(), "{v}");

    // The live pair was not disturbed: it still ends normally on a signal.
    stop(live_p);
    stop(live_sysv_p);
    assert!(!Path::new(&format!("/dev/shm/{live}")).exists());
    for name in [&live, &live_sysv, &dead, &dead_mq] {
        let check = ctl(t, &["clean", "--check", name]);
        assert_eq!(check.status.code(), Some(0), "{}", stdout(&check));
    }
}

#[test]
fn sysv_objects_the_project_did_not_make_survive_clean() {
    let tmp = tmpdir();
    let t = tmp.path();
    // A queue whose key looks like this project's (ftok id 'I' on top), and a semaphore
    // set, both ours (same uid), unattached, made by no recorded process.
    let key = 0x49fe_0000 | (std::process::id() as i32 & 0xffff);
    let q = ipc_sys::mq::msgget(key, libc_flags()).expect("msgget");
    let sem = Command::new("ipcmk").args(["-S", "1"]).output();
    let sem_id: Option<i32> = sem.ok().and_then(|o| {
        String::from_utf8_lossy(&o.stdout)
            .split_whitespace()
            .last()
            .and_then(|s| s.parse().ok())
    });
    if sem_id.is_none() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true: ipcmk (util-linux) is needed"
        );
        eprintln!("ipcmk missing: checking the queue only");
    }
    // And a crashed pair, so clean has something to remove.
    crashed_sysv_producer(t, &unique("ctl-foreign"));

    let out = ctl(t, &["clean"]);
    let text = stdout(&out);
    let survived_q = sysv_ids("msg").contains(&q);
    let survived_sem = sem_id.is_none_or(|s| sysv_ids("sem").contains(&s));
    // Remove ours before asserting, so a failure leaves nothing behind.
    let _ = Command::new("ipcrm").args(["-q", &q.to_string()]).output();
    if let Some(s) = sem_id {
        let _ = Command::new("ipcrm").args(["-s", &s.to_string()]).output();
    }
    assert_eq!(out.status.code(), Some(0), "{text}{}", stderr(&out));
    assert!(
        survived_q,
        "a queue no record ties to us was removed: {text}"
    );
    assert!(survived_sem, "a semaphore set was removed: {text}");
    assert!(
        text.contains(&format!("kept sysv-msg key {key:#010x}")),
        "{text}"
    );
    assert!(text.contains("no record ties it"), "{text}");
    assert!(text.contains("removed sysv-shm"), "{text}");
}

/// A SysV producer named `dead`, killed once recorded: returns its segment's record.
fn crashed_sysv_producer(t: &Path, dead: &str) -> serde_json::Value {
    let p = producer(t, dead, "sysv");
    let v = wait_recorded(t, dead, 2);
    kill9(p);
    objects_of(&v, dead)
        .into_iter()
        .find(|o| o["kind"] == "sysv-shm")
        .expect("a sysv-shm object in the record")
}

fn libc_flags() -> i32 {
    // IPC_CREAT | IPC_EXCL | 0600
    0o1000 | 0o2000 | 0o600
}

#[test]
fn dry_run_removes_nothing() {
    let tmp = tmpdir();
    let t = tmp.path();
    let dead = unique("ctl-dry");
    let seg = crashed_sysv_producer(t, &dead);
    let out = ctl(t, &["clean", "--dry-run"]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("would remove sysv-shm"), "{text}");
    assert!(
        sysv_ids("shm").contains(&sysv_id_of(&seg)),
        "dry run removed the segment"
    );
    assert!(
        t.join(format!("{dead}.key")).exists(),
        "dry run removed the key file"
    );
    assert_eq!(objects_of(&ls_json(t), &dead).len(), 2);
    // The real run removes them.
    let out = ctl(t, &["clean", "--only", &dead]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert!(!sysv_ids("shm").contains(&sysv_id_of(&seg)));
    assert!(!t.join(format!("{dead}.key")).exists());
    let check = ctl(t, &["clean", "--check", &dead]);
    assert_eq!(check.status.code(), Some(0), "{}", stdout(&check));
}

#[test]
fn check_fails_while_leftovers_remain() {
    let tmp = tmpdir();
    let t = tmp.path();
    let dead = unique("ctl-check");
    let p = producer(t, &dead, "posix");
    wait_recorded(t, &dead, 1);
    kill9(p);
    let out = ctl(t, &["clean", "--check", &dead]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(stdout(&out).contains(&format!("left behind: posix-shm /{dead}")));
    let out = ctl(t, &["clean"]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert!(!Path::new(&format!("/dev/shm/{dead}")).exists());
}

#[test]
fn another_users_objects_are_never_touched() {
    let Some(tmp) = tmpdir_for_two_users("another_users_objects_are_never_touched") else {
        return;
    };
    let t = tmp.path();
    // Root's crashed pair: its key file, given away to another user since, stays.
    let dead = unique("ctl-owner");
    let seg = crashed_sysv_producer(t, &dead);
    let key = t.join(format!("{dead}.key"));
    nix::unistd::chown(&key, Some(nix::unistd::Uid::from_raw(65534)), None).unwrap();

    // As nobody, ipc-ctl touches nothing of root's.
    let out = as_nobody(t, &bin("ipc-ctl"), &["clean"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(!stdout(&out).contains("removed"), "{}", stdout(&out));
    assert!(sysv_ids("shm").contains(&sysv_id_of(&seg)));
    assert!(key.exists());

    // As root: the segment goes, the key file that is nobody's now stays.
    let out = ctl(t, &["clean"]);
    let text = stdout(&out);
    let key_left = key.exists();
    let _ = std::fs::remove_file(&key);
    assert!(key_left, "root's clean removed a file of uid 65534: {text}");
    assert!(text.contains("belongs to uid 65534"), "{text}");
    assert!(!sysv_ids("shm").contains(&sysv_id_of(&seg)), "{text}");
}

#[test]
fn a_record_directory_someone_else_made_is_refused() {
    let Some(tmp) = tmpdir_for_two_users("a_record_directory_someone_else_made_is_refused") else {
        return;
    };
    let t = tmp.path();
    // Root squats nobody's record directory, open to all.
    let squat = t.join("ipc-pairs-65534");
    std::fs::create_dir(&squat).unwrap();
    std::fs::set_permissions(&squat, std::fs::Permissions::from_mode(0o777)).unwrap();
    let out = as_nobody(t, &bin("ipc-ctl"), &["ls"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{}{err}", stdout(&out));
    assert!(err.contains("belongs to uid 0"), "{err}");
    assert!(err.contains(&format!("rm -r {}", squat.display())), "{err}");
    // A pair run by nobody warns and records nothing there.
    let name = unique("ctl-squat");
    let out = as_nobody(
        t,
        &bin("shm-producer"),
        &["--name", &name, "--timeout", "0.3", "-n", "1"],
    );
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(stderr(&out).contains("not recording"), "{}", stderr(&out));
    assert_eq!(std::fs::read_dir(&squat).unwrap().count(), 0);
}
