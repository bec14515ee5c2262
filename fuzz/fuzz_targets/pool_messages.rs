//! Pool descriptors and free-id messages, parsed as the pool's consumer and producer do.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    ipc_common::shm::fuzz::pool_messages(data);
});
