//! mq-pair end to end, beyond the scenarios every mechanism shares (tests/scenarios.rs):
//! sizes and priorities, foreign feeders, squatted queues, how the queues show (stale ones:
//! tests/faults.rs, crashed runs).
//!
//! Every test uses its own name; SysV queues are found by the key the summary (or the
//! error message) names, so parallel tests never see each other's objects.

use integration_tests::mechanism::{mq, Role, MQ_SYSV};
use integration_tests::scenario::{long_transfer, transfer};
use integration_tests::*;
use nix::sys::signal::Signal;
use std::path::{Path, PathBuf};
use std::time::Duration;

const P: &str = "mq-pair";
const APIS: [&str; 2] = ["posix", "sysv"];

fn mq_path(name: &str) -> PathBuf {
    Path::new("/dev/mqueue").join(name)
}

fn key_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("{name}.mq.key"))
}

/// The SysV key a summary names (`options.key`).
fn key_of(v: &serde_json::Value) -> Vec<u32> {
    v["options"]["key"]
        .as_str()
        .and_then(|k| u32::from_str_radix(k.trim_start_matches("0x"), 16).ok())
        .into_iter()
        .collect()
}

/// Nothing of `name` in the file systems, and no SysV queue with any of `keys`.
#[track_caller]
fn assert_clean(name: &str, keys: &[u32], pids: &[u32]) {
    assert_no_leftovers(name);
    let left = sysv_queues_of(keys, pids);
    assert!(left.is_empty(), "SysV queues left behind: {left:?}");
}

/// Run `c` under the watchdog; its output and its pid (`run`'s sender, for the leak check).
fn run_with_pid(c: &mut std::process::Command) -> (std::process::Output, u32) {
    let child = start(c);
    let pid = child.id();
    (finish(child), pid)
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
            let ep = mq(api).endpoint("size");
            let n_s = n.to_string();
            let (out, pid) =
                run_with_pid(mq(api).run(&ep).args(["-s", flag, "-n", &n_s, "--json"]));
            assert_code(&out, 0);
            let v = summary(&out);
            assert_verified(&v, n);
            assert_eq!(v["bytes"], n * bytes, "{api} {flag}: {v}");
            assert_clean(&ep.name, &key_of(&v), &[pid]);
        }
    }
}

#[test]
fn mixed_priorities_come_highest_first() {
    // 8 messages fit the queue, so the receiver drains one backlog: POSIX hands out the
    // highest priority first; SysV msgrcv with a negative type the lowest type first.
    for (api, order) in [("posix", "4,4,3,3,2,2,1,1"), ("sysv", "1,1,2,2,3,3,4,4")] {
        let ep = mq(api).endpoint("prio");
        let send = ["--priority", "mixed", "-n", "8", "-s", "64"];
        let p = transfer(mq(api), &ep, Role::Receiver, &send, &[]);
        assert_both_ok(&p.sender, &p.receiver);
        let v = summary(&p.receiver);
        assert_verified(&v, 8);
        assert_eq!(v["options"]["priority"], "mixed", "{v}");
        assert_eq!(v["options"]["priority_order"], order, "{v}");
        p.assert_all_gone(&ep);

        // Many more than fit: out of sequence order, yet each arrives once, intact.
        let ep = mq(api).endpoint("prio-many");
        let many = ["--priority", "mixed", "-n", "3000", "-s", "200", "--json"];
        let (out, pid) = run_with_pid(mq(api).run(&ep).args(many));
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
        assert_clean(&ep.name, &key_of(&v), &[pid]);
    }
}

#[test]
fn fixed_priority_is_reported_by_both_sides() {
    for api in APIS {
        let ep = mq(api).endpoint("prio-fixed");
        let send = ["--priority", "9", "-n", "20"];
        let p = transfer(mq(api), &ep, Role::Receiver, &send, &[]);
        assert_both_ok(&p.sender, &p.receiver);
        assert_eq!(summary(&p.sender)["options"]["priority"], "9");
        let v = summary(&p.receiver);
        assert_verified(&v, 20);
        assert!(v["options"].get("priority_order").is_none(), "{v}");
        p.assert_all_gone(&ep);
    }
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
        wait_for_path(&mq(api).object_named(&name), Duration::from_secs(10));
        let fed = run(std::process::Command::new("python3")
            .arg(feeder())
            .args([api, &target])
            .arg(&input)
            .arg(chunk.to_string()));
        assert_code(&fed, 0);
        let recv = finish(recv);
        assert_code(&recv, 0);
        assert_holds(&output, &data);
        let s = stdout(&recv);
        assert!(
            s.contains("payload=raw") && s.contains("40 messages"),
            "{s}"
        );
        assert_no_leftovers(&name);
    }
}

#[test]
fn interrupted_receiver_removes_the_queue_and_the_sender_says_so() {
    // SysV: IPC_RMID destroys the queue at once, so the sender learns it at its next call.
    let ep = MQ_SYSV.endpoint("term");
    let (send, recv) = long_transfer(&MQ_SYSV, &ep, &[], "3");
    let pids = [send.id(), recv.id()];
    signal(recv.child(), Signal::SIGTERM);
    let recv = recv.finish_within(Duration::from_secs(20));
    let send = send.finish_within(Duration::from_secs(20));
    assert_exit(&recv, 143, &["removed SysV queue"]);
    assert_code(&send, 4);
    let err = stderr(&send);
    assert!(
        err.contains("error[peer-gone]") && err.contains("the queue was removed"),
        "{err}"
    );
    assert_all_gone(&ep.name, &stderr_of(&[&send, &recv]), &pids);
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
    let says = ["mode 666", &format!("rm /dev/mqueue/{name}")];
    assert_run(P, &["recv", "--name", &name, "--timeout", "1"], 1, &says);
    assert!(object_exists(&mq_path(&name)), "left alone");
    remove_object(&mq_path(&name));
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
    let pid = recv.id();
    assert_code(&finish(recv), 4);
    assert_clean(&name, &[key], &[pid]);
}

#[test]
fn bad_flags_exit_2_with_a_message() {
    assert_usage_errors(
        P,
        "run --api carrier-pigeon; run --priority high; run --priority 40000; \
         run --api sysv --priority 0; run --priority mixed --mode pingpong; \
         run --priority mixed --input /dev/null; run --priority mixed -s 9000; \
         recv --priority 3; send --raw -s 16K; run --size 0; \
         run --raw --mode pingpong; recv --name a/b; send --output x; ",
    );
    // A limit is named by its /proc file.
    for (api, limit) in [
        ("posix", "/proc/sys/fs/mqueue/msgsize_max"),
        ("sysv", "/proc/sys/kernel/msgmax"),
    ] {
        assert_run(
            P,
            &["send", "--api", api, "--raw", "-s", "16K"],
            2,
            &[limit],
        );
    }
}

#[test]
fn verbose_narrates_the_queue_calls() {
    let cases: [(&str, &[&str], &str); 2] = [
        (
            "posix",
            &[
                "mq_open(",
                "mq_notify(",
                "mq_unlink(",
                "mq_timedsend(",
                "mq_timedreceive(",
            ],
            "[message queues:",
        ),
        (
            "sysv",
            &[
                "ftok(", "msgget(", "msgsnd(", "msgrcv(", "msgctl(", "IPC_RMID",
            ],
            "[SysV",
        ),
    ];
    for (api, calls, idea) in cases {
        let out = run(mq(api)
            .run(&mq(api).endpoint("v"))
            .args(["-v", "-n", "3", "--mode", "pingpong"]));
        assert_code(&out, 0);
        let err = stderr(&out);
        for call in calls {
            assert!(err.contains(call), "{api}: -v does not show {call}: {err}");
        }
        assert!(err.contains(idea), "{err}");
    }
}

#[test]
fn help_explains_itself_with_examples() {
    assert_help(
        P,
        &[
            "send",
            "recv",
            "run",
            "Examples:",
            "Exit codes",
            "msgsize_max",
        ],
        Some("send"),
        &[
            "--api",
            "--priority",
            "--count",
            "--size",
            "--name",
            "--timeout",
            "--raw",
        ],
    );
}
