//! A segment laid out from the input (header fields, ring counters, ring bytes),
//! checked and read through the ring exactly as shm-consumer does.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    ipc_common::shm::fuzz::consume_segment(data);
});
