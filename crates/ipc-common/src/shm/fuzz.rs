//! Corrupted shared memory: entry points for the fuzz targets (`fuzz/`, `make fuzz`) and
//! the property test below, over everything a consumer reads from a segment: the header
//! check ([`layout::check`]), the ring's counters and frames ([`ShmLink`] as the consumer
//! drives it), the sender's hello ([`Hello::decode`]) and the pool's descriptors
//! ([`parse_descriptor`], [`parse_free_id`]).
//!
//! Each runs the consumer's own code on bytes chosen by the fuzzer. Any result is fine,
//! an error above all; a panic, an out-of-bounds access or a hang is a bug.

use super::layout::{self, Header, HEADER_SIZE, MAGIC, MIN_RING, STATE_READY, VERSION};
use super::pool::{parse_descriptor, parse_free_id};
use super::ring::{ShmLink, Side};
use crate::frame::{Header as Frame, Hello, HEADER_LEN};
use crate::link::Link;
use ipc_sys::shm::Mapping;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

/// The fuzz input, read front to back; past its end, zeros.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn take<const N: usize>(&mut self) -> [u8; N] {
        let mut b = [0u8; N];
        let n = N.min(self.0.len());
        b[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        b
    }
    fn u8(&mut self) -> u8 {
        self.take::<1>()[0]
    }
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.take())
    }
    fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.take())
    }
}

/// Most frames one input is read for.
const MAX_FRAMES: usize = 16;

/// Lay out a segment from `data` and consume it as `shm-consumer` does after attaching.
///
/// The first byte chooses which header fields are honest (so the ring code is reached)
/// and which come from the input; then come the fields, the four ring counters, and the
/// ring bytes. The sync objects are initialised as a producer would, and the producer's
/// alive mutex is free (it "died"), with a zero timeout: every wait ends at once with
/// "the producer died", as after a real crash. Returns the frames read.
pub fn consume_segment(data: &[u8]) -> usize {
    let mut input = Input(data);
    let choice = input.u8();
    let capacity = MIN_RING + 64 * u64::from(input.u8() % 16);
    let len = HEADER_SIZE + 2 * capacity as usize;
    let Ok(map) = Mapping::anonymous(len) else {
        return 0;
    };
    let h: &Header = map.header();
    let inits = [
        h.producer_alive.init(),
        h.consumer_alive.init(),
        h.ring[0].lock.init(),
        h.ring[1].lock.init(),
        h.ring[0].not_empty.init(),
        h.ring[0].not_full.init(),
        h.ring[1].not_empty.init(),
        h.ring[1].not_full.init(),
        h.ring[0].data_sem.init(0),
        h.ring[0].space_sem.init(0),
        h.ring[1].data_sem.init(0),
        h.ring[1].space_sem.init(0),
    ];
    if inits.iter().any(Result::is_err) {
        return 0;
    }
    let honest = |bit: u8| choice & (1 << bit) != 0;
    let (magic, version, header_size, total) = (input.u64(), input.u32(), input.u32(), input.u64());
    if honest(0) {
        h.magic.store(MAGIC, Relaxed);
        h.version.store(VERSION, Relaxed);
        h.header_size.store(HEADER_SIZE as u32, Relaxed);
        h.total_size.store(len as u64, Relaxed);
    } else {
        h.magic.store(magic, Relaxed);
        h.version.store(version, Relaxed);
        h.header_size.store(header_size, Relaxed);
        h.total_size.store(total, Relaxed);
    }
    let (cap, rings) = (input.u64(), input.u32());
    if honest(1) {
        h.ring_capacity.store(capacity, Relaxed);
        h.rings.store(1 + u32::from(honest(2)), Relaxed);
    } else {
        h.ring_capacity.store(cap, Relaxed);
        h.rings.store(rings, Relaxed);
    }
    let (api, sync, flags, pool) = (input.u32(), input.u32(), input.u32(), input.u32());
    if honest(3) {
        h.api.store(1 + api % 3, Relaxed);
        h.sync.store(1 + sync % 4, Relaxed);
        h.flags.store(flags & 1, Relaxed);
        h.pool_segments.store(0, Relaxed);
    } else {
        h.api.store(api, Relaxed);
        h.sync.store(sync, Relaxed);
        h.flags.store(flags, Relaxed);
        h.pool_segments.store(pool, Relaxed);
    }
    h.creator_pid.store(input.u32(), Relaxed);
    h.state.store(STATE_READY, Relaxed);
    for ring in &h.ring {
        let (head, tail) = (input.u64(), input.u64());
        // Small counters reach the ring's data; large ones its checks.
        let small = |v: u64| if honest(4) { v % (4 * capacity) } else { v };
        ring.writer.head.store(small(head), Relaxed);
        ring.reader.tail.store(small(tail), Relaxed);
    }
    let ring_bytes = &input.0[..input.0.len().min(len - HEADER_SIZE)];
    map.copy_in(HEADER_SIZE, ring_bytes);

    // From here on: what the consumer runs.
    let Ok(checked) = layout::check(h, map.len() as u64) else {
        return 0;
    };
    if checked.pool > 0 {
        // A pool's data arrives through descriptors: see `parse_descriptor`.
        return 0;
    }
    let mut link = ShmLink::new(
        &map,
        "fuzzed segment".into(),
        Side::Consumer,
        &checked,
        Duration::ZERO,
        None,
    );
    let mut buf = Vec::new();
    let mut frames = 0;
    while frames < MAX_FRAMES {
        let got = if link.in_place() {
            // The largest bound, so every frame length the decoder admits is reached.
            link.recv_in_place(1, crate::args::MAX_SIZE)
                .map(|(frame, _)| Some(frame))
        } else {
            link.recv(&mut buf, crate::args::MAX_SIZE)
        };
        match got {
            Ok(Some(frame)) => {
                if frames == 0 && !link.in_place() {
                    let _ = Hello::decode(&buf);
                    let _ = frame.payload_ok(&buf);
                }
                frames += 1;
            }
            _ => break,
        }
    }
    frames
}

/// A frame header, then a hello payload: what every byte stream and ring carries.
pub fn decode_frames(data: &[u8]) {
    if let Ok(head) = <[u8; HEADER_LEN]>::try_from(&data[..HEADER_LEN.min(data.len())]) {
        if let Ok(f) = Frame::decode(&head) {
            let _ = f.payload_ok(&data[HEADER_LEN..]);
        }
    }
    let _ = Hello::decode(data.get(HEADER_LEN..).unwrap_or_default());
    let _ = Hello::decode(data);
}

/// A pool descriptor and a free-id message, against a pool whose size the input picks.
pub fn pool_messages(data: &[u8]) {
    let Some((&members, rest)) = data.split_first() else {
        return;
    };
    let members = usize::from(members % 65);
    let part = MIN_RING as usize * 4;
    if let Ok((id, len, _)) = parse_descriptor(rest, members, part) {
        assert!(
            id < members && len <= part,
            "a descriptor outside the pool passed"
        );
    }
    if let Ok(id) = parse_free_id(&rest[..rest.len().min(4)], members) {
        assert!((id as usize) < members, "a free id outside the pool passed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::FrameKind;
    use rand::{Rng, RngCore, SeedableRng};

    /// A well-formed input: honest header, frames in ring 0, head past them. Mutating
    /// it reaches deeper than random bytes.
    fn well_formed(rng: &mut rand::rngs::SmallRng) -> Vec<u8> {
        let mut v = vec![0b1_1011u8, 0];
        v.extend([0u8; 8 + 4 + 4 + 8 + 8 + 4]);
        v.extend([0u8; 16]); // api, sync, flags, pool
        v.extend(rng.next_u32().to_le_bytes());
        let mut ring = Vec::new();
        let hello = Hello {
            mode: crate::Mode::Stream,
            payload: crate::frame::Payload::Generated { seed: 1 },
            count: 3,
            size: 40,
        }
        .encode();
        ring.extend(Frame::for_payload(FrameKind::Hello, 0, &hello).encode());
        ring.extend(hello);
        for seq in 0..3u64 {
            let payload = vec![seq as u8; 40];
            ring.extend(Frame::for_payload(FrameKind::Data, seq, &payload).encode());
            ring.extend(payload);
        }
        v.extend((ring.len() as u64).to_le_bytes()); // head 0
        v.extend(0u64.to_le_bytes()); // tail 0
        v.extend([0u8; 16]); // ring 1
        v.extend(ring);
        v
    }

    /// A bounded run of the fuzz entry points over random and mutated inputs:
    /// `IPC_FUZZ_SECS` (default 2) seconds, seeded by `IPC_FUZZ_SEED`. `make fuzz` runs
    /// the libFuzzer targets; this is the stable-toolchain net under them.
    #[test]
    fn corrupted_segments_fail_cleanly() {
        let secs: f64 = std::env::var("IPC_FUZZ_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(2.0);
        let seed: u64 = std::env::var("IPC_FUZZ_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(7);
        let mut rng = rand::rngs::SmallRng::seed_from_u64(seed);
        let clean = well_formed(&mut rng);
        assert_eq!(
            consume_segment(&clean),
            4,
            "the well-formed input reads 4 frames"
        );
        let start = std::time::Instant::now();
        let mut runs = 0u64;
        while start.elapsed().as_secs_f64() < secs || runs < 200 {
            let input = if rng.random_bool(0.3) {
                let mut v = vec![0u8; rng.random_range(0..600)];
                rng.fill_bytes(&mut v);
                v
            } else {
                let mut v = clean.clone();
                for _ in 0..rng.random_range(1..8) {
                    let i = rng.random_range(0..v.len());
                    v[i] = rng.random();
                }
                v
            };
            consume_segment(&input);
            decode_frames(&input[input.len().min(2)..]);
            pool_messages(&input);
            runs += 1;
        }
        eprintln!("{runs} corrupted inputs, seed {seed}");
    }
}
