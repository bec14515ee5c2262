//! mq-pair against hostile or unlucky neighbours: a foreign raw sender with messages
//! longer than --size, queues made elsewhere with smaller limits, a slow SysV creator,
//! an shm producer with the same --name, and a SysV queue orphaned by killing both sides.

use integration_tests::mechanism::{Role, MQ_SYSV, SHM_SYSV};
use integration_tests::*;
use ipc_sys::mq as sysmq;
use nix::mqueue::{mq_close, mq_open, mq_send, mq_unlink, MQ_OFlag, MqAttr};
use nix::sys::signal::Signal;
use nix::sys::stat::Mode;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

const P: &str = "mq-pair";

fn tmp(file: String) -> PathBuf {
    std::env::temp_dir().join(file)
}

/// A POSIX queue made by "another program": this test, with its own limits.
fn foreign_posix_queue(name: &str, msgsize: i64) -> nix::mqueue::MqdT {
    let attr = MqAttr::new(0, 10, msgsize, 0);
    mq_open(
        format!("/{name}").as_str(),
        MQ_OFlag::O_CREAT | MQ_OFlag::O_EXCL | MQ_OFlag::O_RDWR,
        Mode::S_IRUSR | Mode::S_IWUSR,
        Some(&attr),
    )
    .expect("mq_open (is RLIMIT_MSGQUEUE used up by leftover queues?)")
}

#[test]
fn raw_receiver_takes_every_message_its_queue_carries() {
    let name = unique("tmq-raw");
    let q = foreign_posix_queue(&name, 8192);
    let sizes = [1usize, 500, 1024, 1037, 2048, 4000, 3, 4000];
    let mut expect = Vec::new();
    for (i, &n) in sizes.iter().enumerate() {
        let msg = random_bytes(n, i as u64 + 1);
        mq_send(&q, &msg, 0).expect("mq_send");
        expect.extend_from_slice(&msg);
    }
    mq_close(q).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out_file = dir.path().join("out.bin");
    let out = run(cmd(P)
        .args([
            "recv",
            "--raw",
            "--name",
            &name,
            "--size",
            "1024",
            "--timeout",
            "2",
            "--json",
            "--output",
        ])
        .arg(&out_file));
    assert_code(&out, 0);
    let got = std::fs::read(&out_file).unwrap();
    assert_eq!(got.len(), expect.len(), "{}", stderr(&out));
    assert!(got == expect, "bytes differ");
    assert_eq!(summary(&out)["messages"], sizes.len() as u64);
    // The receiver owned the queue in raw mode: gone now.
    assert!(mq_unlink(format!("/{name}").as_str()).is_err());
    assert_no_leftovers(&name);
}

#[test]
fn a_posix_queue_smaller_than_expected_is_exit_1_naming_its_limit() {
    let name = unique("tmq-small");
    let q = foreign_posix_queue(&name, 64);
    let out = run(cmd(P).args([
        "send",
        "--raw",
        "--name",
        &name,
        "--size",
        "1024",
        "-n",
        "1",
        "--timeout",
        "2",
    ]));
    mq_close(q).unwrap();
    let _ = mq_unlink(format!("/{name}").as_str());
    assert_code(&out, 1);
    let err = stderr(&out);
    assert!(
        err.contains("a 1024-byte message does not fit")
            && err.contains("(mq_msgsize) is 64 bytes"),
        "{err}"
    );
    assert_no_leftovers(&name);
}

#[test]
fn a_sysv_queue_with_lowered_qbytes_is_exit_1_naming_its_limit() {
    let name = unique("tmq-qbytes");
    let key_file = tmp(format!("{name}.mq.key"));
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&key_file)
        .unwrap();
    let key = ftok(&key_file);
    let id = sysmq::msgget(key as i32, 0o600 | 0o1000 /* IPC_CREAT */).expect("msgget");
    sysmq::msgctl_set_qbytes(id, 16).expect("msgctl(IPC_SET)");
    let out = run(cmd(P).args([
        "send",
        "--raw",
        "--api",
        "sysv",
        "--name",
        &name,
        "--size",
        "64",
        "-n",
        "1",
        "--timeout",
        "2",
    ]));
    let _ = sysmq::msgctl_rmid(id);
    let _ = std::fs::remove_file(&key_file);
    assert_code(&out, 1);
    let err = stderr(&out);
    assert!(
        err.contains("a 64-byte message does not fit") && err.contains("at most 16 bytes"),
        "{err}"
    );
    assert_no_leftovers(&name);
    assert!(sysv_leftovers(&[key]).is_empty());
}

#[test]
fn a_slow_sysv_creator_is_waited_for_not_replaced() {
    let ep = MQ_SYSV.endpoint("slow");
    let name = &ep.name;
    let key_file = MQ_SYSV.object_named(name);
    let side = |role| {
        let mut c = MQ_SYSV.side(role, &ep);
        c.args(["--timeout", "20", "--json"]);
        c
    };
    // The creator takes 1.5 s between making its key file and its queue (debug hook).
    let sender = start(
        side(Role::Sender)
            .args(["-n", "5", "-s", "100"])
            .env("IPC_TEST_DELAY_MSGGET_MS", "1500"),
    );
    wait_for_path(&key_file, Duration::from_secs(10));
    let key = ftok(&key_file);
    let receiver = start(&mut side(Role::Receiver));
    let r = finish_within(receiver, Duration::from_secs(40));
    let s = finish_within(sender, Duration::from_secs(40));
    assert_code(&r, 0);
    assert_code(&s, 0);
    assert_verified(&summary(&r), 5);
    assert!(
        !stderr(&r).contains("stale"),
        "a live creator was taken for a crashed one: {}",
        stderr(&r)
    );
    assert_no_leftovers(name);
    assert!(sysv_leftovers(&[key]).is_empty());
}

#[test]
fn an_shm_producer_and_an_mq_pair_with_one_name_do_not_collide() {
    let ep = MQ_SYSV.endpoint("shared");
    let shm_ep = SHM_SYSV.at(&ep.name);
    let json = ["--timeout", "10", "--json"];
    let producer = start(
        SHM_SYSV
            .side(Role::Sender, &shm_ep)
            .args(["-n", "5"])
            .args(json),
    );
    let shm_key = SHM_SYSV.object_named(&ep.name);
    wait_for_path(&shm_key, Duration::from_secs(10));
    let mq = run(MQ_SYSV.run(&ep).args(["-n", "5"]).args(json));
    assert_code(&mq, 0);
    assert!(
        shm_key.exists(),
        "the mq pair removed the shm producer's key file: {}",
        stderr(&mq)
    );
    let consumer = run(SHM_SYSV.side(Role::Receiver, &shm_ep).args(json));
    let producer = finish_within(producer, Duration::from_secs(40));
    assert_code(&consumer, 0);
    assert_code(&producer, 0);
    assert_verified(&summary(&consumer), 5);
    assert_no_leftovers(&ep.name);
}

#[test]
fn a_sysv_queue_orphaned_by_killing_both_sides_is_removed_by_the_next_run() {
    let ep = MQ_SYSV.endpoint("orphan");
    let name = &ep.name;
    let key_file = MQ_SYSV.object_named(name);
    let record = tmp(format!("{name}.mq.inuse.key"));
    let recv = start(MQ_SYSV.side(Role::Receiver, &ep).args(["--timeout", "20"]));
    wait_for_path(&key_file, Duration::from_secs(10));
    let key = ftok(&key_file);
    let mut send = MQ_SYSV.side(Role::Sender, &ep);
    let send = start(send.args(["-n", "100000000", "-s", "4K", "--timeout", "20"]));
    // Attached once the key file has moved to the pair's record.
    let t = Instant::now();
    while key_file.exists() || !record.exists() {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "the pair did not attach"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    signal(&send, Signal::SIGKILL);
    signal(&recv, Signal::SIGKILL);
    finish_within(send, Duration::from_secs(10));
    finish_within(recv, Duration::from_secs(10));
    assert!(
        !sysv_leftovers(&[key]).is_empty(),
        "the killed pair's queue should be there"
    );
    let out = run(MQ_SYSV
        .run(&ep)
        .args(["-n", "3", "--timeout", "10", "--json"]));
    assert_code(&out, 0);
    let left = sysv_leftovers(&[key]);
    assert!(left.is_empty(), "the orphan is still there: {left:?}");
    assert_no_leftovers(name);
}
