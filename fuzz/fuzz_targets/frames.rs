//! A frame header and a hello payload, decoded as every receiver does.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    ipc_common::shm::fuzz::decode_frames(data);
});
