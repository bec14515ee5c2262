//! The scenarios every mechanism shares (`integration_tests::scenario`), run over the
//! table of mechanisms (`integration_tests::mechanism`): one module per mechanism, one
//! test per scenario it supports, so `cargo test --test scenarios fifo::` runs a row and
//! `cargo test --test scenarios killed_sender` a column.

use integration_tests::mechanism::*;
use integration_tests::scenario::*;

/// One test per scenario named, each running it over `$mech`.
macro_rules! tests {
    ($mech:ident: $($scenario:ident),* $(,)?) => {$(
        #[test]
        fn $scenario() {
            super::$scenario(&$mech);
        }
    )*};
}

/// What every mechanism does.
macro_rules! every_mechanism {
    ($mech:ident) => {
        tests!($mech: either_start_order, raw_generated_payloads_are_checked,
            wrong_seed_is_named_from_the_hello, no_peer_times_out_with_exit_4,
            stopped_sender_times_out_the_receiver);
    };
}

/// What the send/recv pairs do (shared memory runs these per sync kind, in shm.rs).
macro_rules! pair_program {
    ($mech:ident) => {
        tests!($mech: pingpong_either_order, file_is_byte_identical,
            killed_sender_ends_receiver_with_exit_4, killed_receiver_ends_sender_with_exit_4);
    };
}

/// What `run` (both sides from one command) does.
macro_rules! run_command {
    ($mech:ident) => {
        tests!($mech: run_moves_every_message_intact, killed_run_child_ends_parent,
            stdin_to_stdout_through_run);
    };
}

/// What a mechanism with a named object does while a side waits.
macro_rules! named_object {
    ($mech:ident) => {
        tests!($mech: signals_while_waiting_remove_the_object);
    };
}

/// What a mechanism whose object is a file someone else can make does.
macro_rules! squattable {
    ($mech:ident) => {
        tests!($mech: squatter_is_refused_and_left_alone);
    };
}

macro_rules! over {
    ($($module:ident = $mech:ident: $($group:ident),*;)*) => {$(
        mod $module {
            use super::*;
            $($group!($mech);)*
        }
    )*};
}

/// A segment smaller than one 64 KiB message, so a file goes through it in rounds.
fn file_through_a_small_segment(m: &Mechanism) {
    let segment = if m.sysv { "16K" } else { "8K" };
    let v = file_is_byte_identical_with(m, &["--segment-size", segment]);
    let ring: u64 = v["options"]["ring_capacity"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no ring_capacity: {v}"));
    assert!(ring < 65536, "the ring is smaller than a message: {v}");
}

/// Shared memory's file test.
macro_rules! shm_file {
    ($mech:ident) => {
        tests!($mech: file_through_a_small_segment);
    };
}

over! {
    fifo = FIFO: every_mechanism, pair_program, run_command, named_object, squattable;
    mq_posix = MQ_POSIX: every_mechanism, pair_program, run_command, named_object;
    mq_sysv = MQ_SYSV: every_mechanism, pair_program, run_command, named_object, squattable;
    unix_stream = UNIX_STREAM: every_mechanism, pair_program, run_command, named_object, squattable;
    unix_dgram = UNIX_DGRAM: every_mechanism, pair_program, run_command, named_object, squattable;
    unix_seqpacket = UNIX_SEQPACKET: every_mechanism, pair_program, run_command, named_object, squattable;
    tcp = TCP: every_mechanism, pair_program;
    shm_posix = SHM_POSIX: every_mechanism, named_object, squattable, shm_file;
    shm_sysv = SHM_SYSV: every_mechanism, named_object, squattable, shm_file;
    shm_mmap = SHM_MMAP: every_mechanism, named_object, squattable, shm_file;
}
