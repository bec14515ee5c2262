//! The shared-memory layout: one `#[repr(C)]` header at offset 0, then one byte ring
//! per direction (one for stream, two for pingpong).
//!
//! ```text
//! 0             Header: identity (magic, version, sizes, api, sync, creator pid,
//!               state), the two "alive" mutexes, and per ring its control block:
//!               writer line (head, space_waiting, data_signal), reader line (tail,
//!               data_waiting, space_signal), each on its own cache line, then the
//!               ring's mutex, two condition variables and two semaphores
//! HEADER_SIZE   ring 0 data (capacity bytes): producer -> consumer
//! + capacity    ring 1 data (pingpong only): consumer -> producer
//! ```
//! Only offsets and counters live here, never pointers: each process maps the segment
//! at its own address. `head` and `tail` count bytes ever written and read; a byte's
//! place is `count % capacity`, so a message larger than the ring goes in rounds, and
//! the counters are the progress of those rounds.
//!
//! Every field is an atomic or a cell only pthread calls touch, so both processes may
//! view the header at once; the reader of a field written by the peer reads it once into
//! a local and checks it before use.

use crate::sys::shm::{PCond, PMutex, Sem};
use crossbeam_utils::CachePadded;
use std::mem::{offset_of, size_of};
use std::sync::atomic::{AtomicU32, AtomicU64};

pub const MAGIC: u64 = u64::from_le_bytes(*b"IPCSHM\0\x01");
/// Bumped whenever anything in this file changes meaning or place.
pub const VERSION: u32 = 1;
/// The ring data starts on the first page after the header.
pub const HEADER_SIZE: usize = 4096;
/// The smallest ring worth having: room for a frame header and some payload.
pub const MIN_RING: u64 = 1024;

/// `flags`: messages are built and checked in place (`--zero-copy`).
pub const FLAG_ZERO_COPY: u32 = 1;

/// The most pool segments: the free-id queue must hold them all, and POSIX queues hold
/// at most /proc/sys/fs/mqueue/msg_max messages (10 by default).
pub const MAX_POOL: u32 = 64;

/// `state`: the creator is still initialising.
pub const STATE_INIT: u32 = 0;
/// Everything is initialised; a consumer may attach.
pub const STATE_READY: u32 = 1;
/// A consumer attached (it moved READY -> ATTACHED with a compare-exchange).
pub const STATE_ATTACHED: u32 = 2;

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
    assert!(size_of::<Header>() <= HEADER_SIZE);
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

/// `--api`, as stored in the header.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Api {
    /// POSIX shm_open + mmap: a file in /dev/shm
    Posix,
    /// System V shmget + shmat: a key-addressed segment (ipcs -m)
    Sysv,
    /// A memory-mapped regular file (--file)
    Mmap,
}

/// `--sync`, as stored in the header.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncKind {
    /// Robust process-shared pthread mutex and condition variables in the segment
    Mutex,
    /// Process-shared POSIX semaphores in the segment
    Sem,
    /// "ready"/"ok" messages on POSIX message queues beside the segment
    Mq,
    /// Atomics with a spinning backoff, then a futex sleep
    Spin,
}

macro_rules! coded {
    ($t:ty { $($v:ident = $n:expr, $s:expr;)* }) => {
        impl $t {
            pub fn code(self) -> u32 {
                match self { $(Self::$v => $n,)* }
            }
            pub fn from_code(c: u32) -> Option<Self> {
                match c { $($n => Some(Self::$v),)* _ => None }
            }
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$v => $s,)* }
            }
        }
    };
}
coded!(Api { Posix = 1, "posix"; Sysv = 2, "sysv"; Mmap = 3, "mmap"; });
coded!(SyncKind { Mutex = 1, "mutex"; Sem = 2, "sem"; Mq = 3, "mq"; Spin = 4, "spin"; });

/// Where ring `i`'s data starts.
pub fn ring_offset(i: usize, capacity: u64) -> usize {
    HEADER_SIZE + i * capacity as usize
}

/// The header's identity, as the opener read it (each field once) and checked it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Checked {
    pub rings: usize,
    pub capacity: u64,
    pub api: Api,
    pub sync: SyncKind,
    pub creator_pid: u32,
    pub zero_copy: bool,
    /// Pool mode: the number of pool segments (at most MAX_POOL); 0 = ring mode.
    pub pool: u32,
}

/// Why a segment was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LayoutError {
    #[error(
        "magic {0:#018x} is not this program's ({MAGIC:#018x}): not a segment of this project"
    )]
    Magic(u64),
    #[error("layout version {0}, this program speaks {VERSION}: run the same build on both sides")]
    Version(u32),
    #[error("header size {0}, expected {HEADER_SIZE}")]
    HeaderSize(u32),
    #[error("header says {said} bytes but the segment has {actual}")]
    TotalSize { said: u64, actual: u64 },
    #[error("ring geometry does not fit: {rings} rings of {capacity} bytes in {total} bytes")]
    Geometry {
        rings: u32,
        capacity: u64,
        total: u64,
    },
    #[error("unknown {0} code {1}")]
    Code(&'static str, u32),
}

/// Read the identity fields once each and check them against the mapping's real size.
pub fn check(h: &Header, mapped_len: u64) -> Result<Checked, LayoutError> {
    use std::sync::atomic::Ordering::Relaxed;
    let magic = h.magic.load(Relaxed);
    if magic != MAGIC {
        return Err(LayoutError::Magic(magic));
    }
    let version = h.version.load(Relaxed);
    if version != VERSION {
        return Err(LayoutError::Version(version));
    }
    let header_size = h.header_size.load(Relaxed);
    if header_size as usize != HEADER_SIZE {
        return Err(LayoutError::HeaderSize(header_size));
    }
    let total = h.total_size.load(Relaxed);
    if total != mapped_len {
        return Err(LayoutError::TotalSize {
            said: total,
            actual: mapped_len,
        });
    }
    let rings = h.rings.load(Relaxed);
    let capacity = h.ring_capacity.load(Relaxed);
    let fits = (1..=2).contains(&rings)
        && capacity >= MIN_RING
        && capacity
            .checked_mul(u64::from(rings))
            .and_then(|d| d.checked_add(HEADER_SIZE as u64))
            .is_some_and(|end| end <= total);
    if !fits {
        return Err(LayoutError::Geometry {
            rings,
            capacity,
            total,
        });
    }
    let api = h.api.load(Relaxed);
    let sync = h.sync.load(Relaxed);
    Ok(Checked {
        rings: rings as usize,
        capacity,
        api: Api::from_code(api).ok_or(LayoutError::Code("api", api))?,
        sync: SyncKind::from_code(sync).ok_or(LayoutError::Code("sync", sync))?,
        creator_pid: h.creator_pid.load(Relaxed),
        zero_copy: h.flags.load(Relaxed) & FLAG_ZERO_COPY != 0,
        pool: match h.pool_segments.load(Relaxed) {
            n if n <= MAX_POOL => n,
            n => return Err(LayoutError::Code("pool size", n)),
        },
    })
}
