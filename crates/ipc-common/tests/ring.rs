//! The shared-memory ring in one process: a producer thread and a consumer thread over
//! [`ShmLink`], for each sync kind. Frames of every length up to more than the ring
//! holds, so writes wrap and large frames go in rounds; every frame must arrive once, in
//! order, with its bytes.
//!
//! Each thread maps the same (unlinked) file itself, as two processes would: a
//! [`Mapping`] is a handle of one thread, not shared between threads.

use ipc_common::frame::{FrameKind, Header as Frame, HEADER_LEN};
use ipc_common::shm::layout::{
    self, Api, Header, SyncKind, HEADER_SIZE, MAGIC, STATE_READY, VERSION,
};
use ipc_common::shm::ring::{ShmLink, Side, SyncQueues};
use ipc_common::workload::fill_generated;
use ipc_common::Link;
use ipc_sys::shm::{Lock, Mapping};
use std::sync::atomic::Ordering::{Relaxed, Release};
use std::time::Duration;

/// Smaller than the largest frame, so frames wrap around and some go in rounds.
const CAPACITY: u64 = 2048;
const MESSAGES: u64 = 3000;
/// No wait may hang the test: a stuck side fails with a timeout error instead.
const TIMEOUT: Duration = Duration::from_secs(30);

/// Message `seq`: 1 to 3000 bytes, each depending on `seq` and its position.
fn payload(seq: u64) -> Vec<u8> {
    let len = (seq * 7919 % 3000 + 1) as usize;
    (0..len).map(|i| (seq as usize * 31 + i) as u8).collect()
}

/// Initialise the header of a one-ring segment as the producer does, and publish it.
fn publish(map: &Mapping, sync: SyncKind) -> layout::Checked {
    let h: &Header = map.header();
    h.producer_alive.init().expect("init producer alive");
    h.consumer_alive.init().expect("init consumer alive");
    for ring in &h.ring {
        ring.lock.init().expect("init ring lock");
        ring.not_empty.init().expect("init not_empty");
        ring.not_full.init().expect("init not_full");
        ring.data_sem.init(0).expect("init data semaphore");
        ring.space_sem.init(0).expect("init space semaphore");
    }
    h.magic.store(MAGIC, Relaxed);
    h.version.store(VERSION, Relaxed);
    h.header_size.store(HEADER_SIZE as u32, Relaxed);
    h.total_size.store(map.len() as u64, Relaxed);
    h.ring_capacity.store(CAPACITY, Relaxed);
    h.rings.store(1, Relaxed);
    h.api.store(Api::Posix.code(), Relaxed);
    h.sync.store(sync.code(), Relaxed);
    h.state.store(STATE_READY, Release);
    layout::check(h, map.len() as u64).expect("the header checks")
}

/// Map the segment's file anew in this thread, hold `side`'s alive mutex (the peer's
/// sign of life) and run `f` over a link of that side.
/// Both sides hold their alive mutex before either starts: a side that found its peer's
/// free (its thread not started yet, on a loaded machine) would take it for dead.
fn as_side<R>(
    file: &std::fs::File,
    side: Side,
    checked: &layout::Checked,
    queues: Option<SyncQueues>,
    started: &std::sync::Barrier,
    f: impl FnOnce(&mut ShmLink) -> R,
) -> R {
    let map = Mapping::map_shared(file, HEADER_SIZE + CAPACITY as usize).expect("mmap");
    let h: &Header = map.header();
    let alive = match side {
        Side::Producer => &h.producer_alive,
        Side::Consumer => &h.consumer_alive,
    };
    assert_eq!(alive.lock().expect("lock"), Lock::Acquired);
    started.wait();
    let mut link = ShmLink::new(&map, "test ring".into(), side, checked, TIMEOUT, queues);
    let r = f(&mut link);
    alive.unlock();
    r
}

fn produce(link: &mut ShmLink) {
    for seq in 0..MESSAGES {
        let p = payload(seq);
        link.send(&Frame::for_payload(FrameKind::Data, seq, &p), &p)
            .unwrap_or_else(|e| panic!("send {seq}: {e}"));
    }
    link.send(&Frame::for_payload(FrameKind::End, MESSAGES, &[]), &[])
        .expect("send end");
    link.flush().expect("flush");
}

/// Every frame, in order, intact, up to the end frame; returns how many.
fn consume(link: &mut ShmLink) -> u64 {
    let mut buf = Vec::new();
    let mut seen = 0;
    loop {
        let frame = link
            .recv(&mut buf, 1 << 20)
            .unwrap_or_else(|e| panic!("recv after {seen}: {e}"))
            .expect("a frame before the end");
        if frame.kind == FrameKind::End {
            assert_eq!(frame.seq, MESSAGES);
            return seen;
        }
        assert_eq!(frame.seq, seen, "in order, none lost");
        assert!(frame.payload_ok(&buf), "frame {seen} checks");
        assert!(buf == payload(seen), "frame {seen} has its bytes");
        seen += 1;
    }
}

/// A segment with one ring of [`CAPACITY`] bytes and `sync`, then a consumer and a
/// producer thread on it, started together; returns what `consume` returns.
fn pair<R: Send>(
    sync: SyncKind,
    (prod_q, cons_q): (Option<SyncQueues>, Option<SyncQueues>),
    produce: impl FnOnce(&mut ShmLink) + Send,
    consume: impl FnOnce(&mut ShmLink) -> R + Send,
) -> R {
    let file = tempfile::tempfile().expect("a temporary file");
    file.set_len(HEADER_SIZE as u64 + CAPACITY)
        .expect("size the segment");
    let checked = publish(
        &Mapping::map_shared(&file, HEADER_SIZE + CAPACITY as usize).expect("mmap"),
        sync,
    );
    let started = std::sync::Barrier::new(2);
    std::thread::scope(|s| {
        let consumer =
            s.spawn(|| as_side(&file, Side::Consumer, &checked, cons_q, &started, consume));
        s.spawn(|| as_side(&file, Side::Producer, &checked, prod_q, &started, produce));
        consumer.join().expect("the consumer thread")
    })
}

fn round_trip(sync: SyncKind) {
    // `--sync mq`: the wake-up queues beside the segment, removed when `_guards` drops.
    let name = format!("ipc-test-ring-{}-{}", std::process::id(), sync.as_str());
    let (queues, _guards) = if sync == SyncKind::Mq {
        let (q, guards) = SyncQueues::create(&name, 1).expect("create the sync queues");
        let c = SyncQueues::open(&name, 1, Side::Consumer).expect("open the sync queues");
        ((Some(q), Some(c)), guards)
    } else {
        ((None, None), Vec::new())
    };
    let received = pair(sync, queues, produce, consume);
    assert_eq!(received, MESSAGES, "{}", sync.as_str());
}

#[test]
fn every_sync_kind_carries_every_message() {
    for sync in [SyncKind::Mutex, SyncKind::Sem, SyncKind::Mq, SyncKind::Spin] {
        round_trip(sync);
    }
}

const SEED: u64 = 11;
const GENERATED: u64 = 300;

/// Generated frames of `size` bytes through the one-pass paths: the sender's copy and
/// the ring made at once, checked as copied out (or, small, made then copied in, copied
/// out then compared).
fn generated_round_trip(sync: SyncKind, size: usize) {
    let produce = |link: &mut ShmLink| {
        let mut buf = vec![0u8; size];
        let mut want = vec![0u8; size];
        for seq in 0..GENERATED {
            let header = Frame {
                kind: FrameKind::Data,
                len: size as u32,
                crc: 0,
                seq,
            };
            link.send_generated(&header, SEED, &mut buf)
                .unwrap_or_else(|e| panic!("send {seq}: {e}"));
            fill_generated(SEED, seq, &mut want);
            assert!(buf == want, "the sender's own copy of {seq}");
        }
        link.send(&Frame::for_payload(FrameKind::End, GENERATED, &[]), &[])
            .expect("send end");
        link.flush().expect("flush");
    };
    let consume = |link: &mut ShmLink| {
        let (mut buf, mut want) = (Vec::new(), vec![0u8; size]);
        let mut seen = 0;
        loop {
            let (frame, intact) = link
                .recv_generated(&mut buf, size, SEED)
                .unwrap_or_else(|e| panic!("recv after {seen}: {e}"))
                .expect("a frame before the end");
            if frame.kind == FrameKind::End {
                return seen;
            }
            assert_eq!(frame.seq, seen, "in order, none lost");
            assert!(intact, "frame {seen} of {size} bytes checks");
            fill_generated(SEED, seen, &mut want);
            assert!(buf == want, "frame {seen} has its bytes");
            seen += 1;
        }
    };
    let received = pair(sync, (None, None), produce, consume);
    assert_eq!(received, GENERATED, "{} {size}", sync.as_str());
}

#[test]
fn generated_frames_go_in_one_pass_and_are_checked_as_copied() {
    // Odd sizes, both sides of the one-pass threshold, most larger than the ring.
    for size in [1, 13, 100, 2047, 4095, 4096, 5003, 9000] {
        for sync in [SyncKind::Spin, SyncKind::Mutex] {
            generated_round_trip(sync, size);
        }
    }
}

/// A frame built in place that needs all but a few bytes of the ring, after a small
/// frame: the writer waits for room while the ring is not full, and the reader has
/// taken the small frame without publishing its tail (less than a batch). Unless the
/// reader publishes before it sleeps, both sleep until the timeout.
#[test]
fn a_frame_in_place_as_large_as_the_ring_is_not_left_waiting() {
    const LEN: usize = CAPACITY as usize - HEADER_LEN - 8;
    const ROUNDS: u64 = 20;
    for sync in [SyncKind::Spin, SyncKind::Mutex] {
        let produce = |link: &mut ShmLink| {
            for seq in 0..ROUNDS {
                link.send(&Frame::for_payload(FrameKind::Data, seq, &[1]), &[1])
                    .expect("send a small frame");
                link.send_in_place(SEED, seq, LEN)
                    .unwrap_or_else(|e| panic!("send {seq} in place: {e}"));
            }
            link.flush().expect("flush");
        };
        let consume = |link: &mut ShmLink| {
            let mut buf = Vec::new();
            for seq in 0..ROUNDS {
                link.recv(&mut buf, 1)
                    .unwrap_or_else(|e| panic!("recv small {seq}: {e}"))
                    .expect("a small frame");
                let (frame, intact) = link
                    .recv_in_place(SEED, LEN)
                    .unwrap_or_else(|e| panic!("recv {seq} in place: {e}"));
                assert!(intact && frame.seq == seq, "frame {seq} checks");
            }
            ROUNDS
        };
        assert_eq!(pair(sync, (None, None), produce, consume), ROUNDS);
    }
}

/// Generated frames larger than the ring (so taken in pieces), every other one with a
/// wrong byte in its first or its last piece: each wrong one is read whole and fails
/// its check, checked as copied out and in place alike, and the frame after it checks.
#[test]
fn a_wrong_byte_in_any_piece_fails_its_frame_and_the_next_one_checks() {
    const SIZE: usize = 5003;
    // (seq, the byte made wrong): frames 0 to 3 copied out, 4 to 7 compared in place.
    let wrong = |seq: u64| match seq % 4 {
        0 => Some(0),
        2 => Some(SIZE - 1),
        _ => None,
    };
    for sync in [SyncKind::Spin, SyncKind::Mutex] {
        let produce = |link: &mut ShmLink| {
            let mut p = vec![0u8; SIZE];
            for seq in 0..8 {
                fill_generated(SEED, seq, &mut p);
                if let Some(at) = wrong(seq) {
                    p[at] ^= 0x40;
                }
                let header = Frame {
                    kind: FrameKind::Data,
                    len: SIZE as u32,
                    crc: 0,
                    seq,
                };
                link.send(&header, &p)
                    .unwrap_or_else(|e| panic!("send {seq}: {e}"));
            }
            link.flush().expect("flush");
        };
        let consume = |link: &mut ShmLink| {
            let mut buf = Vec::new();
            for seq in 0..8 {
                let (frame, intact) = if seq < 4 {
                    link.recv_generated(&mut buf, SIZE, SEED)
                        .unwrap_or_else(|e| panic!("recv {seq}: {e}"))
                        .expect("a frame")
                } else {
                    link.recv_in_place(SEED, SIZE)
                        .unwrap_or_else(|e| panic!("recv {seq} in place: {e}"))
                };
                assert_eq!(frame.seq, seq, "in order");
                assert_eq!(intact, wrong(seq).is_none(), "frame {seq}'s check");
            }
        };
        pair(sync, (None, None), produce, consume);
    }
}

/// A segment of one ring for a test in one thread: the file, its checked header.
fn lone_segment() -> (std::fs::File, layout::Checked) {
    let file = tempfile::tempfile().expect("a temporary file");
    file.set_len(HEADER_SIZE as u64 + CAPACITY)
        .expect("size the segment");
    let map = Mapping::map_shared(&file, HEADER_SIZE + CAPACITY as usize).expect("mmap");
    let checked = publish(&map, SyncKind::Mutex);
    (file, checked)
}

/// What a consumer reading `file`'s ring gets from one `recv` with `max` into a buffer
/// with room for `reserved` bytes, that buffer,
/// and how long it took; the producer's alive mutex held as `producer_alive` says, and
/// `before` run first on the mapping (to write the ring as a peer would).
fn consume_once(
    file: &std::fs::File,
    checked: &layout::Checked,
    producer_alive: bool,
    (max, reserved): (usize, usize),
    before: impl FnOnce(&Mapping),
) -> (ipc_common::Result<Option<Frame>>, Vec<u8>, Duration) {
    let map = Mapping::map_shared(file, HEADER_SIZE + CAPACITY as usize).expect("mmap");
    let h: &Header = map.header();
    assert_eq!(h.consumer_alive.lock().expect("lock"), Lock::Acquired);
    if producer_alive {
        assert_eq!(h.producer_alive.lock().expect("lock"), Lock::Acquired);
    }
    before(&map);
    let mut link = ShmLink::new(
        &map,
        "test ring".into(),
        Side::Consumer,
        checked,
        TIMEOUT,
        None,
    )
    .watch_size(Some(file));
    let (mut buf, start) = (Vec::with_capacity(reserved), std::time::Instant::now());
    let got = link.recv(&mut buf, max);
    let took = start.elapsed();
    if producer_alive {
        h.producer_alive.unlock();
    }
    h.consumer_alive.unlock();
    (got, buf, took)
}

/// Write `bytes` into the ring at position 0 and publish them, as a producer would.
fn write_ring(map: &Mapping, bytes: &[u8]) {
    let h: &Header = map.header();
    map.copy_in(HEADER_SIZE, bytes);
    h.ring[0].writer.head.store(bytes.len() as u64, Release);
}

#[test]
fn a_frame_header_that_does_not_decode_is_a_corrupt_segment() {
    let (file, checked) = lone_segment();
    let (got, _, _) = consume_once(&file, &checked, true, (1 << 10, 0), |map| {
        write_ring(map, &[0xff; HEADER_LEN])
    });
    let e = got.expect_err("a bad header is an error");
    assert!(
        e.to_string().contains("bad frame in ring 0"),
        "the error names the frame: {e}"
    );
}

#[test]
fn a_head_beyond_the_ring_is_a_corrupt_segment() {
    let (file, checked) = lone_segment();
    let (got, _, _) = consume_once(&file, &checked, true, (1 << 10, 0), |map| {
        let h: &Header = map.header();
        h.ring[0].writer.head.store(CAPACITY + 1, Release);
    });
    let e = got.expect_err("a head beyond the ring is an error");
    assert!(
        e.to_string().contains("head"),
        "the error names the head: {e}"
    );
}

/// A consumer waiting for a producer that is gone (its alive mutex free) ends at once
/// with that, not at the timeout; and a header announcing a long payload that never
/// comes has not made it reserve the whole length.
#[test]
fn a_gone_producer_ends_the_wait_and_a_header_alone_reserves_little() {
    const LONG: usize = 1 << 20;
    let (file, checked) = lone_segment();
    let header = Frame {
        kind: FrameKind::Data,
        len: LONG as u32,
        crc: 0,
        seq: 0,
    };
    let (got, buf, took) = consume_once(&file, &checked, false, (LONG, 0), |map| {
        write_ring(map, &header.encode())
    });
    let e = got.expect_err("a gone producer is an error");
    assert!(e.to_string().contains("producer is gone"), "{e}");
    assert!(took < TIMEOUT / 3, "not waited for the timeout: {took:?}");
    assert!(buf.capacity() < LONG, "reserved {} bytes", buf.capacity());
}

/// A segment truncated under a waiting consumer ends it with that, not at the timeout.
#[test]
fn a_truncated_segment_ends_the_wait() {
    let (file, checked) = lone_segment();
    let (got, _, took) = consume_once(&file, &checked, true, (1 << 10, 0), |_| {
        file.set_len(HEADER_SIZE as u64).expect("truncate");
    });
    let e = got.expect_err("a truncated segment is an error");
    assert!(e.to_string().contains("was truncated"), "{e}");
    assert!(took < TIMEOUT / 3, "not waited for the timeout: {took:?}");
}

/// A header whose payload is not written yet, read into a buffer large enough already:
/// the consumer waits for the payload (here: finds the producer gone), and does not take
/// bytes the writer has not published.
#[test]
fn a_payload_not_yet_published_is_waited_for_even_with_room_for_it() {
    let (file, checked) = lone_segment();
    let header = Frame {
        kind: FrameKind::Data,
        len: 1,
        crc: 0,
        seq: 0,
    };
    let (got, _, _) = consume_once(&file, &checked, false, (1, 64), |map| {
        write_ring(map, &header.encode())
    });
    let e = got.expect_err("no payload, a gone producer: an error");
    assert!(e.to_string().contains("producer is gone"), "{e}");
}

/// Frames of many times the ring and more than the first 64 KiB the buffer grows by:
/// each arrives whole, with its bytes, copied out and checked as copied.
#[test]
fn frames_far_larger_than_the_ring_arrive_whole() {
    const SIZE: usize = 200_003;
    let produce = |link: &mut ShmLink| {
        let mut p = vec![0u8; SIZE];
        for seq in 0..4 {
            fill_generated(SEED, seq, &mut p);
            let header = Frame::for_payload(FrameKind::Data, seq, &p);
            link.send(&header, &p)
                .unwrap_or_else(|e| panic!("send {seq}: {e}"));
        }
        link.flush().expect("flush");
    };
    let consume = |link: &mut ShmLink| {
        let (mut buf, mut want) = (Vec::new(), vec![0u8; SIZE]);
        for seq in 0..4 {
            fill_generated(SEED, seq, &mut want);
            if seq < 2 {
                let frame = link
                    .recv(&mut buf, SIZE)
                    .unwrap_or_else(|e| panic!("recv {seq}: {e}"))
                    .expect("a frame");
                assert_eq!(frame.seq, seq, "in order");
                assert!(buf == want, "frame {seq} has its bytes");
            } else {
                // A fresh buffer each time: grown again in steps, checked at each.
                buf = Vec::new();
                let (frame, intact) = link
                    .recv_generated(&mut buf, SIZE, SEED)
                    .unwrap_or_else(|e| panic!("recv {seq}: {e}"))
                    .expect("a frame");
                assert!(frame.seq == seq && intact, "frame {seq} checks");
                assert!(buf == want, "frame {seq} has its bytes");
            }
        }
    };
    pair(SyncKind::Spin, (None, None), produce, consume);
}

/// Write `bytes` into the ring from position `pos` on, wrapping at its end, and publish
/// them, as a producer would.
fn write_ring_at(map: &Mapping, pos: u64, bytes: &[u8]) {
    let h: &Header = map.header();
    let at = (pos % CAPACITY) as usize;
    let first = bytes.len().min(CAPACITY as usize - at);
    map.copy_in(HEADER_SIZE + at, &bytes[..first]);
    map.copy_in(HEADER_SIZE, &bytes[first..]);
    h.ring[0]
        .writer
        .head
        .store(pos + bytes.len() as u64, Release);
}

/// A frame that wraps, published after the reader caught up 8 bytes before the ring's
/// end: read whole, and nothing of it is looked at past the ring's end (not even its
/// first lines fetched ahead).
#[test]
fn a_frame_published_across_the_rings_end_is_read_within_the_ring() {
    let (file, checked) = lone_segment();
    let map = Mapping::map_shared(&file, HEADER_SIZE + CAPACITY as usize).expect("mmap");
    let h: &Header = map.header();
    assert_eq!(h.consumer_alive.lock().expect("lock"), Lock::Acquired);
    assert_eq!(h.producer_alive.lock().expect("lock"), Lock::Acquired);
    let mut link = ShmLink::new(
        &map,
        "test ring".into(),
        Side::Consumer,
        &checked,
        TIMEOUT,
        None,
    );
    let mut buf = Vec::new();
    let mut pos = 0;
    for (seq, len) in [(0, CAPACITY as usize - 8 - HEADER_LEN), (1, 16)] {
        let p: Vec<u8> = (0..len).map(|i| (i * 7) as u8 ^ seq as u8).collect();
        let mut bytes = Frame::for_payload(FrameKind::Data, seq, &p)
            .encode()
            .to_vec();
        bytes.extend_from_slice(&p);
        write_ring_at(&map, pos, &bytes);
        pos += bytes.len() as u64;
        let frame = link
            .recv(&mut buf, CAPACITY as usize)
            .unwrap_or_else(|e| panic!("recv {seq}: {e}"))
            .expect("a frame");
        assert!(frame.seq == seq && buf == p, "frame {seq} has its bytes");
    }
    assert!(pos > CAPACITY, "the second frame wrapped");
    h.producer_alive.unlock();
    h.consumer_alive.unlock();
}
