//! The shape of a shared-memory segment's header: what both processes see at offset 0.
//!
//! It lives here, beside [`crate::shm::Mapping::header`], because that function's
//! soundness rests on it: every field is an atomic or a cell that only pthread and
//! semaphore calls touch, valid for any bits, so the peer's concurrent writes through
//! its own mapping are defined behaviour. The meaning of the fields (magic, states,
//! flags) belongs to the layer above.

use crate::sync::{PCond, PMutex, Sem};
use crossbeam_utils::CachePadded;
use std::mem::{offset_of, size_of};
use std::sync::atomic::{AtomicU32, AtomicU64};

#[repr(C)]
pub struct Header {
    pub magic: AtomicU64,
    pub version: AtomicU32,
    pub header_size: AtomicU32,
    pub total_size: AtomicU64,
    /// Bytes of data per ring.
    pub ring_capacity: AtomicU64,
    /// 1 (stream) or 2 (pingpong: a ring each way).
    pub rings: AtomicU32,
    pub api: AtomicU32,
    pub sync: AtomicU32,
    pub creator_pid: AtomicU32,
    /// STATE_INIT, STATE_READY, STATE_ATTACHED; published last, with Release.
    pub state: AtomicU32,
    /// FLAG_ZERO_COPY.
    pub flags: AtomicU32,
    /// Pool mode: how many pool segments (`NAME.pool.0` ...) carry the data; 0 = ring mode.
    pub pool_segments: AtomicU32,
    /// Held by the producer for its whole life: the consumer's try-lock says EBUSY
    /// while it lives and EOWNERDEAD once it died, with no pid to be fooled by reuse.
    pub producer_alive: PMutex,
    /// The same for the consumer.
    pub consumer_alive: PMutex,
    pub ring: [RingCtl; 2],
}

#[repr(C)]
pub struct RingCtl {
    /// Written only by the ring's writer.
    pub writer: CachePadded<WriterLine>,
    /// Written only by the ring's reader.
    pub reader: CachePadded<ReaderLine>,
    /// `--sync mutex`: guards the sleep/wake handshake.
    pub lock: PMutex,
    pub not_empty: PCond,
    pub not_full: PCond,
    /// `--sync sem`: posted when data arrives / space frees for a sleeping peer.
    pub data_sem: Sem,
    pub space_sem: Sem,
}

#[repr(C)]
pub struct WriterLine {
    /// Bytes ever written (published with Release).
    pub head: AtomicU64,
    /// The writer sleeps for space (set before it re-checks, cleared after).
    pub space_waiting: AtomicU32,
    /// `--sync spin` and `mutex`: the futex word the reader sleeps on; the writer bumps it to wake.
    pub data_signal: AtomicU32,
}

#[repr(C)]
pub struct ReaderLine {
    /// Bytes ever read (published with Release).
    pub tail: AtomicU64,
    /// The reader sleeps for data.
    pub data_waiting: AtomicU32,
    /// `--sync spin` and `mutex`: the futex word the writer sleeps on.
    pub space_signal: AtomicU32,
}

// Pin the layout: both sides run this build, and a change must bump VERSION.
const _: () = {
    assert!(offset_of!(Header, magic) == 0);
    assert!(offset_of!(Header, version) == 8);
    assert!(offset_of!(Header, header_size) == 12);
    assert!(offset_of!(Header, total_size) == 16);
    assert!(offset_of!(Header, ring_capacity) == 24);
    assert!(offset_of!(Header, state) == 48);
    assert!(offset_of!(Header, pool_segments) == 56);
    assert!(offset_of!(Header, producer_alive) == 64);
    assert!(offset_of!(RingCtl, reader).is_multiple_of(64));
    assert!(offset_of!(Header, ring).is_multiple_of(64));
    assert!(size_of::<RingCtl>().is_multiple_of(64));
};
