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

pub use ipc_sys::segment::{Header, ReaderLine, RingCtl, WriterLine};

const _: () = assert!(std::mem::size_of::<Header>() <= HEADER_SIZE);

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

#[cfg(test)]
mod tests {
    use super::*;
    use ipc_sys::shm::Mapping;
    use std::sync::atomic::Ordering::Relaxed;

    const CAP: u64 = 2048;
    const LEN: usize = HEADER_SIZE + 2 * CAP as usize;

    /// A header as `publish` writes it: two rings of `CAP` that fill the mapping.
    fn honest() -> Mapping {
        let map = Mapping::anonymous(LEN).unwrap();
        let h = map.header();
        h.magic.store(MAGIC, Relaxed);
        h.version.store(VERSION, Relaxed);
        h.header_size.store(HEADER_SIZE as u32, Relaxed);
        h.total_size.store(LEN as u64, Relaxed);
        h.ring_capacity.store(CAP, Relaxed);
        h.rings.store(2, Relaxed);
        h.api.store(Api::Sysv.code(), Relaxed);
        h.sync.store(SyncKind::Spin.code(), Relaxed);
        h.creator_pid.store(4321, Relaxed);
        h.flags.store(0, Relaxed);
        h.pool_segments.store(0, Relaxed);
        map
    }

    fn check_with(edit: impl Fn(&Header)) -> Result<Checked, LayoutError> {
        let map = honest();
        edit(map.header());
        check(map.header(), LEN as u64)
    }

    #[test]
    fn an_honest_header_is_read_field_by_field() {
        let c = check_with(|_| {}).unwrap();
        assert_eq!(
            c,
            Checked {
                rings: 2,
                capacity: CAP,
                api: Api::Sysv,
                sync: SyncKind::Spin,
                creator_pid: 4321,
                zero_copy: false,
                pool: 0,
            }
        );
        for (flags, zero_copy) in [(FLAG_ZERO_COPY, true), (2, false), (3, true)] {
            let c = check_with(|h| h.flags.store(flags, Relaxed)).unwrap();
            assert_eq!(c.zero_copy, zero_copy, "flags {flags}");
        }
        let c = check_with(|h| h.pool_segments.store(MAX_POOL, Relaxed)).unwrap();
        assert_eq!(c.pool, MAX_POOL);
    }

    #[test]
    fn each_identity_field_is_checked() {
        let e = check_with(|h| h.magic.store(MAGIC ^ 1, Relaxed));
        assert_eq!(e, Err(LayoutError::Magic(MAGIC ^ 1)));
        let e = check_with(|h| h.version.store(VERSION + 1, Relaxed));
        assert_eq!(e, Err(LayoutError::Version(VERSION + 1)));
        let e = check_with(|h| h.header_size.store(64, Relaxed));
        assert_eq!(e, Err(LayoutError::HeaderSize(64)));
        let map = honest();
        let e = check(map.header(), LEN as u64 + 4096);
        let said = LEN as u64;
        assert_eq!(
            e,
            Err(LayoutError::TotalSize {
                said,
                actual: said + 4096
            })
        );
        let e = check_with(|h| h.api.store(9, Relaxed));
        assert_eq!(e, Err(LayoutError::Code("api", 9)));
        let e = check_with(|h| h.sync.store(0, Relaxed));
        assert_eq!(e, Err(LayoutError::Code("sync", 0)));
        let e = check_with(|h| h.pool_segments.store(MAX_POOL + 1, Relaxed));
        assert_eq!(e, Err(LayoutError::Code("pool size", MAX_POOL + 1)));
    }

    #[test]
    fn the_rings_must_fit_the_segment() {
        let geometry = |rings: u32, capacity: u64| {
            check_with(|h| {
                h.rings.store(rings, Relaxed);
                h.ring_capacity.store(capacity, Relaxed);
            })
        };
        // Exactly filling it, or leaving room, fits.
        assert!(geometry(2, CAP).is_ok());
        assert!(geometry(1, 2 * CAP).is_ok());
        assert!(geometry(1, MIN_RING).is_ok());
        for (rings, capacity) in [
            (0, CAP),
            (3, MIN_RING),
            (2, MIN_RING - 1),
            (1, MIN_RING - 1),
            (2, CAP + 1),
            (1, 2 * CAP + 1),
            (2, u64::MAX / 2 + 1),
            (1, u64::MAX - 100),
        ] {
            assert_eq!(
                geometry(rings, capacity),
                Err(LayoutError::Geometry {
                    rings,
                    capacity,
                    total: LEN as u64
                }),
                "{rings} rings of {capacity}"
            );
        }
    }

    #[test]
    fn rings_follow_the_header_one_after_the_other() {
        assert_eq!(ring_offset(0, CAP), HEADER_SIZE);
        assert_eq!(ring_offset(1, CAP), HEADER_SIZE + CAP as usize);
        assert_eq!(ring_offset(1, 3 * CAP), HEADER_SIZE + 3 * CAP as usize);
    }

    #[test]
    fn codes_round_trip_and_unknown_ones_are_none() {
        for a in [Api::Posix, Api::Sysv, Api::Mmap] {
            assert_eq!(Api::from_code(a.code()), Some(a));
        }
        for s in [SyncKind::Mutex, SyncKind::Sem, SyncKind::Mq, SyncKind::Spin] {
            assert_eq!(SyncKind::from_code(s.code()), Some(s));
        }
        assert_eq!(Api::from_code(0), None);
        assert_eq!(SyncKind::from_code(5), None);
        assert_eq!(
            (Api::Mmap.as_str(), SyncKind::Sem.as_str()),
            ("mmap", "sem")
        );
    }
}
