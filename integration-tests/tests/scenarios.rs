//! The scenarios every mechanism shares (`integration_tests::scenario`), run over the
//! table of mechanisms (`integration_tests::mechanism`): one module per mechanism, one
//! test per scenario it supports, so `cargo test --test scenarios fifo::` runs a row and
//! `cargo test --test scenarios killed_sender` a column.

use integration_tests::mechanism::*;
use integration_tests::scenario::*;

macro_rules! over {
    ($($module:ident = $mech:ident: [$($scenario:ident),* $(,)?];)*) => {$(
        mod $module {
            use super::*;
            $(
                #[test]
                fn $scenario() {
                    super::$scenario(&$mech);
                }
            )*
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

over! {
    fifo = FIFO: [
        either_start_order, pingpong_either_order, run_moves_every_message_intact,
        file_is_byte_identical, raw_generated_payloads_are_checked,
        wrong_seed_fails_verification, no_peer_times_out_with_exit_4,
        killed_sender_ends_receiver_with_exit_4, killed_receiver_ends_sender_with_exit_4,
        stopped_sender_times_out_the_receiver, signals_while_waiting_remove_the_object,
        squatter_is_refused_and_left_alone, killed_run_child_ends_parent,
        stdin_to_stdout_through_run,
    ];
    mq_posix = MQ_POSIX: [
        either_start_order, pingpong_either_order, run_moves_every_message_intact,
        file_is_byte_identical, raw_generated_payloads_are_checked,
        wrong_seed_fails_verification, no_peer_times_out_with_exit_4,
        killed_sender_ends_receiver_with_exit_4, killed_receiver_ends_sender_with_exit_4,
        stopped_sender_times_out_the_receiver, signals_while_waiting_remove_the_object,
        killed_run_child_ends_parent, stdin_to_stdout_through_run,
    ];
    mq_sysv = MQ_SYSV: [
        either_start_order, pingpong_either_order, run_moves_every_message_intact,
        file_is_byte_identical, raw_generated_payloads_are_checked,
        wrong_seed_fails_verification, no_peer_times_out_with_exit_4,
        killed_sender_ends_receiver_with_exit_4, killed_receiver_ends_sender_with_exit_4,
        stopped_sender_times_out_the_receiver, signals_while_waiting_remove_the_object,
        squatter_is_refused_and_left_alone, killed_run_child_ends_parent,
        stdin_to_stdout_through_run,
    ];
    unix_stream = UNIX_STREAM: [
        either_start_order, pingpong_either_order, run_moves_every_message_intact,
        file_is_byte_identical, raw_generated_payloads_are_checked,
        wrong_seed_fails_verification, no_peer_times_out_with_exit_4,
        killed_sender_ends_receiver_with_exit_4, killed_receiver_ends_sender_with_exit_4,
        stopped_sender_times_out_the_receiver, signals_while_waiting_remove_the_object,
        squatter_is_refused_and_left_alone, killed_run_child_ends_parent,
        stdin_to_stdout_through_run,
    ];
    unix_dgram = UNIX_DGRAM: [
        either_start_order, pingpong_either_order, run_moves_every_message_intact,
        file_is_byte_identical, raw_generated_payloads_are_checked,
        wrong_seed_fails_verification, no_peer_times_out_with_exit_4,
        killed_sender_ends_receiver_with_exit_4, killed_receiver_ends_sender_with_exit_4,
        stopped_sender_times_out_the_receiver, signals_while_waiting_remove_the_object,
        killed_run_child_ends_parent,
    ];
    unix_seqpacket = UNIX_SEQPACKET: [
        either_start_order, pingpong_either_order, run_moves_every_message_intact,
        file_is_byte_identical, raw_generated_payloads_are_checked,
        wrong_seed_fails_verification, no_peer_times_out_with_exit_4,
        killed_sender_ends_receiver_with_exit_4, killed_receiver_ends_sender_with_exit_4,
        stopped_sender_times_out_the_receiver, signals_while_waiting_remove_the_object,
        killed_run_child_ends_parent, stdin_to_stdout_through_run,
    ];
    tcp = TCP: [
        either_start_order, pingpong_either_order, file_is_byte_identical,
        raw_generated_payloads_are_checked, wrong_seed_fails_verification,
        no_peer_times_out_with_exit_4, killed_sender_ends_receiver_with_exit_4, killed_receiver_ends_sender_with_exit_4,
        stopped_sender_times_out_the_receiver,
    ];
    shm_posix = SHM_POSIX: [
        either_start_order, file_through_a_small_segment, raw_generated_payloads_are_checked,
        wrong_seed_fails_verification, no_peer_times_out_with_exit_4,
        stopped_sender_times_out_the_receiver, signals_while_waiting_remove_the_object,
        squatter_is_refused_and_left_alone,
    ];
    shm_sysv = SHM_SYSV: [
        either_start_order, file_through_a_small_segment, raw_generated_payloads_are_checked,
        wrong_seed_fails_verification, no_peer_times_out_with_exit_4,
        stopped_sender_times_out_the_receiver, signals_while_waiting_remove_the_object,
        squatter_is_refused_and_left_alone,
    ];
    shm_mmap = SHM_MMAP: [
        either_start_order, file_through_a_small_segment, raw_generated_payloads_are_checked,
        wrong_seed_fails_verification, no_peer_times_out_with_exit_4,
        stopped_sender_times_out_the_receiver, signals_while_waiting_remove_the_object,
        squatter_is_refused_and_left_alone,
    ];
}
