//! `-v` narration of the shared-memory ring on the waking side: a frame larger than the
//! free space is told round by round, and each sync kind's wake-up call is shown by the
//! side that makes it, not only the sleeper's wait.

use integration_tests::*;
use std::time::Duration;

/// A 1 MiB message through a ring of under 300 KiB, the producer narrating with -vv.
/// Returns the producer's stderr once both sides ended verified.
fn narrated_producer(sync: &str) -> String {
    let name = unique("ring-narration");
    let mut prod = start_watched(cmd("shm-producer").args([
        "--name",
        &name,
        "--sync",
        sync,
        "--segment-size",
        "300K",
        "-s",
        "1M",
        "-n",
        "3",
        "-vv",
        "--timeout",
        "30",
    ]));
    prod.wait_for("waiting", Duration::from_secs(20));
    let cons = start_watched(cmd("shm-consumer").args(["--name", &name, "--timeout", "30"]));
    let (p, c) = (prod.finish(), cons.finish());
    assert_both_ok(&p, &c);
    assert_verified_line(&c, 3);
    assert_no_leftovers(&name);
    stderr(&p)
}

#[test]
fn a_large_frame_is_narrated_round_by_round() {
    let err = narrated_producer("spin");
    // 1 MiB + the frame header through a ring of 303,104 bytes: at least four rounds,
    // each of the first ones waiting for space or finding that the reader has made room
    // meanwhile (it takes a large frame in published 64 KiB steps), the last one done.
    assert!(
        err.contains("round 1: ")
            && (err.contains("waits for space") || err.contains("has made room meanwhile")),
        "{err}"
    );
    assert!(err.contains("round 4: "), "{err}");
    assert!(err.contains("(1048600 of 1048600 B), done"), "{err}");
    assert!(!err.contains("copy 1048600 bytes"), "{err}");
}

#[test]
fn the_waking_side_narrates_its_wake_up_call() {
    for (sync, call) in [
        ("mutex", "pthread_cond_signal(not_empty)"),
        ("sem", "sem_post(data_sem)"),
    ] {
        let err = narrated_producer(sync);
        assert!(err.contains(call), "--sync {sync}: no {call:?} in:\n{err}");
    }
}
