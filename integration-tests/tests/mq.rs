//! mq-pair end to end: both sides as real processes over POSIX and System V queues.
//!
//! Every test uses its own name; SysV queues are found by the key the summary (or the
//! error message) names, so parallel tests never see each other's objects.

use integration_tests::*;
use nix::sys::signal::Signal;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Output};
use std::time::{Duration, Instant};

const P: &str = "mq-pair";
const APIS: [&str; 2] = ["posix", "sysv"];

fn mq_path(name: &str) -> PathBuf {
    Path::new("/dev/mqueue").join(name)
}

fn key_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("{name}.mq.key"))
}

/// The file that shows the data queue exists: the POSIX queue or the SysV key file.
fn object_path(api: &str, name: &str) -> PathBuf {
    if api == "posix" {
        mq_path(name)
    } else {
        key_path(name)
    }
}

/// ftok(path, 'I') as glibc computes it, from the key file's device and inode.
fn ftok(path: &Path) -> u32 {
    let m = std::fs::metadata(path).expect("key file");
    (m.ino() as u32 & 0xffff) | ((m.dev() as u32 & 0xff) << 16) | (u32::from(b'I') << 24)
}

/// The SysV key a summary names (`options.key`).
fn key_of(v: &serde_json::Value) -> Vec<u32> {
    v["options"]["key"]
        .as_str()
        .and_then(|k| u32::from_str_radix(k.trim_start_matches("0x"), 16).ok())
        .into_iter()
        .collect()
}

/// The SysV keys an error message names (`... key 0x4900abcd ...`).
fn keys_in(text: &str) -> Vec<u32> {
    text.match_indices("key 0x")
        .filter_map(|(i, _)| text.get(i + 6..i + 14))
        .filter_map(|h| u32::from_str_radix(h, 16).ok())
        .collect()
}

/// Nothing of `name` in the file systems, and no SysV queue with any of `keys`.
#[track_caller]
fn assert_clean(name: &str, keys: &[u32]) {
    assert_no_leftovers(name);
    let left = sysv_leftovers(keys);
    assert!(left.is_empty(), "SysV queues left behind: {left:?}");
}

/// Start `first`, give it time to wait for its peer, then start `second`.
fn pair(api: &str, name: &str, first: &[&str], second: &[&str]) -> (Output, Output) {
    let common = ["--api", api, "--name", name, "--json", "--timeout", "20"];
    let a = start(cmd(P).args(first).args(common));
    std::thread::sleep(Duration::from_millis(300));
    let b = start(cmd(P).args(second).args(common));
    (finish(a), finish(b))
}

#[test]
fn run_stream_both_apis() {
    for api in APIS {
        let name = unique("mq-run");
        let out = run(cmd(P).args([
            "run", "--api", api, "--name", &name, "-n", "2000", "-s", "700", "--json",
        ]));
        assert_code(&out, 0);
        let v = summary(&out);
        assert_verified(&v, 2000);
        assert_eq!(v["mechanism"], "mq");
        assert_eq!(v["options"]["api"], api);
        assert_eq!(v["role"], "receiver");
        assert_eq!(v["bytes"], 2000 * 700);
        assert_eq!(stdout(&out).lines().count(), 1, "{}", stdout(&out));
        assert_clean(&name, &key_of(&v));
    }
}

#[test]
fn run_without_a_name_uses_its_own_queue() {
    let out = run(cmd(P).args(["run", "-n", "50", "--json"]));
    assert_code(&out, 0);
    let v = summary(&out);
    assert_verified(&v, 50);
    let queue = v["options"]["queue"].as_str().unwrap().to_string();
    assert!(queue.starts_with("/ipc-mq-run-"), "{v}");
    assert_no_leftovers(queue.trim_start_matches('/'));
}

#[test]
fn sizes_up_to_and_over_the_limits() {
    // 8168 fills one 8192-byte queue message with its 24-byte header; 8169 needs two
    // parts; 64K and 1M need many. Every byte is checked against the seed.
    let sizes: [(&str, u64, u64); 6] = [
        ("64", 64, 300),
        ("8168", 8168, 40),
        ("8169", 8169, 40),
        ("8K", 8192, 40),
        ("64K", 65536, 20),
        ("1M", 1 << 20, 3),
    ];
    for api in APIS {
        for (flag, bytes, n) in sizes {
            let name = unique("mq-size");
            let out = run(cmd(P).args([
                "run",
                "--api",
                api,
                "--name",
                &name,
                "-s",
                flag,
                "-n",
                &n.to_string(),
                "--json",
            ]));
            assert_code(&out, 0);
            let v = summary(&out);
            assert_verified(&v, n);
            assert_eq!(v["bytes"], n * bytes, "{api} {flag}: {v}");
            assert_clean(&name, &key_of(&v));
        }
    }
}

#[test]
fn two_processes_either_order() {
    for api in APIS {
        for receiver_first in [true, false] {
            let name = unique("mq-order");
            let send = ["send", "-n", "1500", "-s", "3000"];
            let (recv, send) = if receiver_first {
                pair(api, &name, &["recv"], &send)
            } else {
                let (s, r) = pair(api, &name, &send, &["recv"]);
                (r, s)
            };
            assert_code(&recv, 0);
            assert_code(&send, 0);
            let v = summary(&recv);
            assert_verified(&v, 1500);
            assert_eq!(v["bytes"], 1500 * 3000);
            assert_eq!(summary(&send)["messages"], 1500);
            let first = if receiver_first { &recv } else { &send };
            assert!(
                stderr(first).contains("waiting"),
                "the first side says it waits: {}",
                stderr(first)
            );
            assert_clean(&name, &key_of(&v));
        }
    }
}

#[test]
fn pingpong_two_processes_and_run() {
    for api in APIS {
        for sender_first in [true, false] {
            let name = unique("mq-pp");
            let send = ["send", "--mode", "pingpong", "-n", "300", "-s", "10000"];
            let (send_out, recv_out) = if sender_first {
                pair(api, &name, &send, &["recv"])
            } else {
                let (r, s) = pair(api, &name, &["recv"], &send);
                (s, r)
            };
            assert_code(&send_out, 0);
            assert_code(&recv_out, 0);
            let v = summary(&send_out);
            assert_verified(&v, 300);
            assert!(v["p50_ns"].as_u64().unwrap() > 0, "{v}");
            assert_verified(&summary(&recv_out), 300);
            assert_clean(&name, &key_of(&v));
        }
        let name = unique("mq-pp-run");
        let out = run(cmd(P).args([
            "run", "--api", api, "--name", &name, "--mode", "pingpong", "-n", "400", "-s", "64",
            "--json",
        ]));
        assert_code(&out, 0);
        let v = summary(&out);
        assert_verified(&v, 400);
        assert_eq!(v["role"], "sender");
        let (p50, p99, max) = (
            v["p50_ns"].as_u64().unwrap(),
            v["p99_ns"].as_u64().unwrap(),
            v["max_ns"].as_u64().unwrap(),
        );
        assert!(0 < p50 && p50 <= p99 && p99 <= max, "{v}");
        assert_clean(&name, &key_of(&v));
    }
}

#[test]
fn mixed_priorities_come_highest_first() {
    // 8 messages fit the queue, so the receiver drains one backlog: POSIX hands out the
    // highest priority first; SysV msgrcv with a negative type the lowest type first.
    for (api, order) in [("posix", "4,4,3,3,2,2,1,1"), ("sysv", "1,1,2,2,3,3,4,4")] {
        let name = unique("mq-prio");
        let (recv, send) = pair(
            api,
            &name,
            &["recv"],
            &["send", "--priority", "mixed", "-n", "8", "-s", "64"],
        );
        assert_code(&send, 0);
        assert_code(&recv, 0);
        let v = summary(&recv);
        assert_verified(&v, 8);
        assert_eq!(v["options"]["priority"], "mixed", "{v}");
        assert_eq!(v["options"]["priority_order"], order, "{v}");
        assert_clean(&name, &key_of(&v));

        // Many more than fit: out of sequence order, yet each arrives once, intact.
        let name = unique("mq-prio-many");
        let out = run(cmd(P).args([
            "run",
            "--api",
            api,
            "--name",
            &name,
            "--priority",
            "mixed",
            "-n",
            "3000",
            "-s",
            "200",
            "--json",
        ]));
        assert_code(&out, 0);
        let v = summary(&out);
        assert_verified(&v, 3000);
        let top = if api == "posix" { "4," } else { "1," };
        assert!(
            v["options"]["priority_order"]
                .as_str()
                .unwrap()
                .starts_with(top),
            "{v}"
        );
        assert_clean(&name, &key_of(&v));
    }
}

#[test]
fn fixed_priority_is_reported_by_both_sides() {
    for api in APIS {
        let name = unique("mq-prio-fixed");
        let (recv, send) = pair(
            api,
            &name,
            &["recv"],
            &["send", "--priority", "9", "-n", "20"],
        );
        assert_code(&send, 0);
        assert_code(&recv, 0);
        assert_eq!(summary(&send)["options"]["priority"], "9");
        let v = summary(&recv);
        assert_verified(&v, 20);
        assert!(v["options"].get("priority_order").is_none(), "{v}");
        assert_clean(&name, &key_of(&v));
    }
}

#[test]
fn file_is_byte_identical_through_each_api() {
    let data = random_bytes(2 * 1024 * 1024 + 12345, 7);
    let (_dir, input) = temp_file(&data);
    for api in APIS {
        let name = unique("mq-file");
        let out_dir = tempfile::tempdir().unwrap();
        let output = out_dir.path().join("copy.bin");
        let recv = start(
            cmd(P)
                .args(["recv", "--api", api, "--name", &name, "--json", "--output"])
                .arg(&output),
        );
        let send = start(
            cmd(P)
                .args([
                    "send", "--api", api, "--name", &name, "-s", "64K", "--input",
                ])
                .arg(&input),
        );
        let (send, recv) = (finish(send), finish(recv));
        assert_code(&send, 0);
        assert_code(&recv, 0);
        assert_file_received(&recv, &output, &data, 65536);
        assert_clean(&name, &key_of(&summary(&recv)));
    }
}

#[test]
fn stdin_to_stdout_through_run() {
    use std::io::Write;
    let data = random_bytes(300_001, 11);
    let name = unique("mq-stdio");
    let mut child = start(
        cmd(P)
            .args(["run", "--api", "sysv", "--name", &name])
            .args(["--input", "-", "--output", "-", "-s", "10000"])
            .stdin(std::process::Stdio::piped()),
    );
    let mut stdin = child.stdin.take().unwrap();
    let feed = data.clone();
    let writer = std::thread::spawn(move || stdin.write_all(&feed).unwrap());
    let out = finish(child);
    writer.join().unwrap();
    assert_code(&out, 0);
    assert!(out.stdout == data, "stdout is not the input");
    assert!(stderr(&out).contains("verified"), "{}", stderr(&out));
    assert_no_leftovers(&name);
}

fn feeder() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/mq_feed.py")
}

#[test]
fn raw_receiver_fed_by_a_foreign_program() {
    // A python3 script calls mq_open/mq_send (or ftok/msgget/msgsnd) through ctypes.
    let data = random_bytes(200_000, 3);
    let (_dir, input) = temp_file(&data);
    let chunk = 5000;
    for api in APIS {
        let name = unique("mq-raw");
        let out_dir = tempfile::tempdir().unwrap();
        let output = out_dir.path().join("raw.bin");
        let mut recv_cmd = cmd(P);
        recv_cmd
            .args(["recv", "--raw", "--api", api, "--name", &name, "-s", "8K"])
            .args(["--timeout", "2", "--output"])
            .arg(&output);
        if api == "sysv" {
            // Stop after --count messages; the POSIX one stops when the queue goes quiet.
            recv_cmd.args(["--count", &data.len().div_ceil(chunk).to_string()]);
        }
        let recv = start(&mut recv_cmd);
        let target = if api == "posix" {
            format!("/{name}")
        } else {
            key_path(&name).display().to_string()
        };
        wait_for_path(&object_path(api, &name), Duration::from_secs(10));
        let fed = run(std::process::Command::new("python3")
            .arg(feeder())
            .args([api, &target])
            .arg(&input)
            .arg(chunk.to_string()));
        assert_code(&fed, 0);
        let recv = finish(recv);
        assert_code(&recv, 0);
        assert!(
            std::fs::read(&output).unwrap() == data,
            "{api}: raw output differs"
        );
        let s = stdout(&recv);
        assert!(
            s.contains("payload=raw") && s.contains("40 messages"),
            "{s}"
        );
        assert_no_leftovers(&name);
    }
}

#[test]
fn raw_generated_payloads_are_checked() {
    for api in APIS {
        let name = unique("mq-rawgen");
        let (recv, send) = pair(
            api,
            &name,
            &["recv", "--raw", "-s", "300", "-n", "400"],
            &["send", "--raw", "-n", "400", "-s", "300"],
        );
        assert_code(&send, 0);
        assert_code(&recv, 0);
        assert_verified(&summary(&recv), 400);
        assert_no_leftovers(&name);
    }
}

#[test]
fn wrong_seed_fails_verification() {
    let name = unique("mq-seed");
    let (recv, send) = pair(
        "posix",
        &name,
        &["recv", "--seed", "2"],
        &["send", "-n", "30", "--seed", "1"],
    );
    // The hello names the sender's seed: the receiver refuses before any message.
    assert_code(&recv, 2);
    let err = String::from_utf8_lossy(&recv.stderr);
    assert!(err.contains("--seed 2 but the sender sends 1"), "{err}");
    assert!(
        matches!(send.status.code(), Some(0 | 4)),
        "{:?}",
        send.status
    );
    assert_no_leftovers(&name);
}

/// Start a long transfer and return (receiver, sender) once both are attached (the
/// opener removed the name) and data flows.
fn long_transfer(api: &str, name: &str) -> (Child, Child) {
    let recv = start(cmd(P).args(["recv", "--api", api, "--name", name, "--timeout", "3"]));
    wait_for_path(&object_path(api, name), Duration::from_secs(10));
    let send = start(cmd(P).args([
        "send",
        "--api",
        api,
        "--name",
        name,
        "-n",
        "100000000",
        "-s",
        "4K",
        "--timeout",
        "3",
    ]));
    let t = Instant::now();
    while object_path(api, name).exists() || t.elapsed() < Duration::from_millis(300) {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "transfer did not start"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    (recv, send)
}

#[test]
fn killed_sender_ends_receiver_with_exit_4() {
    for api in APIS {
        let name = unique("mq-kill-send");
        let (recv, mut send) = long_transfer(api, &name);
        send.kill().unwrap();
        let _ = send.wait();
        let out = finish_within(recv, Duration::from_secs(20));
        assert_code(&out, 4);
        let err = stderr(&out);
        assert!(
            err.contains("nothing arrived") && err.contains("after "),
            "{api}: {err}"
        );
        assert_clean(&name, &keys_in(&err));
    }
}

#[test]
fn killed_receiver_ends_sender_with_exit_4() {
    for api in APIS {
        let name = unique("mq-kill-recv");
        let (mut recv, send) = long_transfer(api, &name);
        recv.kill().unwrap();
        let _ = recv.wait();
        let out = finish_within(send, Duration::from_secs(20));
        assert_code(&out, 4);
        let err = stderr(&out);
        assert!(
            err.contains("the receiver took nothing") && err.contains("after "),
            "{api}: {err}"
        );
        // The survivor removed the SysV queue; POSIX names went at attach.
        assert_clean(&name, &keys_in(&err));
    }
}

#[test]
fn interrupted_receiver_removes_the_queue_and_the_sender_says_so() {
    // SysV: IPC_RMID destroys the queue at once, so the sender learns it at its next call.
    let name = unique("mq-term");
    let (recv, send) = long_transfer("sysv", &name);
    signal(&recv, Signal::SIGTERM);
    let recv = finish_within(recv, Duration::from_secs(20));
    let send = finish_within(send, Duration::from_secs(20));
    assert_code(&recv, 143);
    assert!(
        stderr(&recv).contains("removed SysV queue"),
        "{}",
        stderr(&recv)
    );
    assert_code(&send, 4);
    assert!(
        stderr(&send).contains("the queue was removed"),
        "{}",
        stderr(&send)
    );
    assert_clean(&name, &keys_in(&stderr(&send)));
}

#[test]
fn ctrl_c_and_sigterm_while_waiting_remove_the_queue() {
    for api in APIS {
        for (side, sig) in [("recv", Signal::SIGINT), ("send", Signal::SIGTERM)] {
            let name = unique("mq-sig");
            let child = start(cmd(P).args([side, "--api", api, "--name", &name]));
            let path = object_path(api, &name);
            wait_for_path(&path, Duration::from_secs(10));
            let keys = if api == "sysv" {
                vec![ftok(&path)]
            } else {
                vec![]
            };
            std::thread::sleep(Duration::from_millis(100));
            signal(&child, sig);
            let out = finish_within(child, Duration::from_secs(10));
            assert_code(&out, 128 + sig as i32);
            assert!(stderr(&out).contains("removed"), "{}", stderr(&out));
            assert_clean(&name, &keys);
        }
    }
}

#[test]
fn stale_queue_from_a_crashed_run_is_replaced() {
    for api in APIS {
        let name = unique("mq-stale");
        let path = object_path(api, &name);
        // A receiver killed while waiting leaves its queue (and SysV key file) behind.
        let mut crashed = start(cmd(P).args(["recv", "--api", api, "--name", &name]));
        wait_for_path(&path, Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(100));
        let stale_key = if api == "sysv" {
            vec![ftok(&path)]
        } else {
            vec![]
        };
        crashed.kill().unwrap();
        let _ = crashed.wait();
        assert!(object_exists(&path), "the crash left {}", path.display());
        if api == "sysv" {
            assert!(!sysv_leftovers(&stale_key).is_empty(), "a stale SysV queue");
        }
        let (recv, send) = pair(api, &name, &["recv"], &["send", "-n", "20"]);
        assert_code(&recv, 0);
        assert_code(&send, 0);
        assert!(stderr(&recv).contains("stale"), "{}", stderr(&recv));
        assert_verified(&summary(&recv), 20);
        let mut keys = stale_key;
        keys.extend(key_of(&summary(&recv)));
        assert_clean(&name, &keys);
    }
}

#[test]
fn a_queue_open_to_others_is_refused_and_left_alone() {
    let name = unique("mq-squat");
    let script = format!(
        "import ctypes,os; l=ctypes.CDLL('libc.so.6'); l.mq_open.argtypes=[ctypes.c_char_p,ctypes.c_int,ctypes.c_int,ctypes.c_void_p]; os.umask(0); \
         assert l.mq_open(b'/{name}', os.O_CREAT|os.O_RDWR, 0o666, None) >= 0"
    );
    assert_code(
        &run(std::process::Command::new("python3").args(["-c", &script])),
        0,
    );
    let out = run(cmd(P).args(["recv", "--name", &name, "--timeout", "1"]));
    assert_code(&out, 1);
    let err = stderr(&out);
    assert!(
        err.contains("mode 666") && err.contains(&format!("rm /dev/mqueue/{name}")),
        "{err}"
    );
    assert!(object_exists(&mq_path(&name)), "left alone");
    remove_object(&mq_path(&name));
}

#[test]
fn no_peer_times_out_with_exit_4_and_removes_the_queue() {
    for api in APIS {
        for side in ["recv", "send"] {
            let name = unique("mq-alone");
            let out = run(cmd(P).args([side, "--api", api, "--name", &name, "--timeout", "0.5"]));
            assert_code(&out, 4);
            let err = stderr(&out);
            assert!(err.contains("within 0.5 s"), "{err}");
            assert_clean(&name, &keys_in(&err));
        }
    }
}

#[test]
fn the_queues_show_in_dev_mqueue_and_ipcs_while_waiting() {
    let name = unique("mq-show");
    let recv = start(cmd(P).args(["recv", "--name", &name, "--timeout", "2"]));
    wait_for_path(&mq_path(&name), Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(object_stat(&mq_path(&name)).st_mode & 0o777, 0o600);
    // The creator's mq_notify registration: how a stale queue is told from a live one.
    // Only the mounted file shows it.
    if mqueue_mounted() {
        let status = std::fs::read_to_string(mq_path(&name)).unwrap();
        assert!(
            status.contains(&format!("NOTIFY_PID:{}", recv.id())),
            "{status}"
        );
    } else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "/dev/mqueue is not mounted (CI=true): mount -t mqueue none /dev/mqueue"
        );
        eprintln!("skipping the NOTIFY_PID check: /dev/mqueue is not mounted");
    }
    assert_code(&finish(recv), 4);
    assert_no_leftovers(&name);

    let name = unique("mq-show-sysv");
    let recv = start(cmd(P).args(["recv", "--api", "sysv", "--name", &name, "--timeout", "2"]));
    let path = key_path(&name);
    wait_for_path(&path, Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(100));
    let key = ftok(&path);
    let shown = sysv_leftovers(&[key]);
    assert_eq!(shown.len(), 1, "ipcs -q shows the queue: {shown:?}");
    assert!(shown[0].contains(" 600 "), "mode 0600: {shown:?}");
    assert_code(&finish(recv), 4);
    assert_clean(&name, &[key]);
}

#[test]
fn bad_flags_exit_2_with_a_message() {
    let cases: &[&[&str]] = &[
        &["run", "--api", "carrier-pigeon"],
        &["run", "--priority", "high"],
        &["run", "--priority", "40000"],
        &["run", "--api", "sysv", "--priority", "0"],
        &["run", "--priority", "mixed", "--mode", "pingpong"],
        &["run", "--priority", "mixed", "--input", "/dev/null"],
        &["run", "--priority", "mixed", "-s", "9000"],
        &["recv", "--priority", "3"],
        &["send", "--raw", "-s", "16K"],
        &["run", "--size", "0"],
        &["run", "--raw", "--mode", "pingpong"],
        &["recv", "--name", "a/b"],
        &["send", "--output", "x"],
        &[],
    ];
    for case in cases {
        let out = run(cmd(P).args(*case));
        assert_code(&out, 2);
        let err = stderr(&out);
        assert!(!err.trim().is_empty(), "{case:?}: no message");
        assert!(!err.contains("panicked"), "{case:?}: {err}");
    }
    // A limit is named by its /proc file.
    let out = run(cmd(P).args(["send", "--raw", "-s", "16K"]));
    assert!(
        stderr(&out).contains("/proc/sys/fs/mqueue/msgsize_max"),
        "{}",
        stderr(&out)
    );
    let out = run(cmd(P).args(["send", "--api", "sysv", "--raw", "-s", "16K"]));
    assert!(
        stderr(&out).contains("/proc/sys/kernel/msgmax"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn verbose_narrates_the_queue_calls() {
    let out = run(cmd(P).args([
        "run",
        "-v",
        "-n",
        "3",
        "--mode",
        "pingpong",
        "--name",
        &unique("mq-v"),
    ]));
    assert_code(&out, 0);
    let err = stderr(&out);
    for call in [
        "mq_open(",
        "mq_notify(",
        "mq_unlink(",
        "mq_timedsend(",
        "mq_timedreceive(",
    ] {
        assert!(err.contains(call), "-v does not show {call}: {err}");
    }
    assert!(err.contains("[message queues:"), "{err}");

    let out = run(cmd(P).args([
        "run",
        "--api",
        "sysv",
        "-v",
        "-n",
        "3",
        "--name",
        &unique("mq-v"),
    ]));
    assert_code(&out, 0);
    let err = stderr(&out);
    for call in [
        "ftok(", "msgget(", "msgsnd(", "msgrcv(", "msgctl(", "IPC_RMID",
    ] {
        assert!(err.contains(call), "-v does not show {call}: {err}");
    }
    assert!(err.contains("[SysV"), "{err}");
}

#[test]
fn help_explains_itself_with_examples() {
    let out = run(cmd(P).arg("--help"));
    assert_code(&out, 0);
    let s = stdout(&out);
    for word in [
        "send",
        "recv",
        "run",
        "Examples:",
        "Exit codes",
        "msgsize_max",
    ] {
        assert!(s.contains(word), "--help lacks {word}: {s}");
    }
    let out = run(cmd(P).args(["send", "--help"]));
    for flag in [
        "--api",
        "--priority",
        "--count",
        "--size",
        "--name",
        "--timeout",
        "--raw",
    ] {
        assert!(stdout(&out).contains(flag), "send --help lacks {flag}");
    }
}

#[test]
fn killed_run_child_ends_the_parent() {
    let name = unique("mq-run-kill");
    let run = start(cmd(P).args([
        "run",
        "--api",
        "sysv",
        "--name",
        &name,
        "-n",
        "100000000",
        "-s",
        "4K",
        "--timeout",
        "3",
    ]));
    let t = Instant::now();
    let child_pid = loop {
        let kids =
            std::fs::read_to_string(format!("/proc/{}/task/{}/children", run.id(), run.id()))
                .unwrap_or_default();
        if let Some(pid) = kids.split_whitespace().next() {
            if !key_path(&name).exists() && t.elapsed() > Duration::from_millis(300) {
                break pid.parse::<i32>().unwrap();
            }
        }
        assert!(t.elapsed() < Duration::from_secs(10), "run did not start");
        std::thread::sleep(Duration::from_millis(10));
    };
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child_pid), Signal::SIGKILL).unwrap();
    let out = finish_within(run, Duration::from_secs(20));
    // The child died by SIGKILL and could say nothing: the sender reports it (exit 4).
    assert_eq!(code(&out.status), 4, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("killed by SIGKILL"),
        "{}",
        stderr(&out)
    );
    assert_no_leftovers(&name);
}
