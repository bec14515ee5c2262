//! The byte ring in shared memory, as a [`Link`] the common workload drives.
//!
//! Frames go into the ring as bytes: the writer copies them at `head % capacity` and
//! publishes `head`; the reader copies out at `tail % capacity` and publishes `tail`. A
//! frame larger than the free space goes in rounds; the counters are the progress. Each
//! side keeps its own counter in a local and only reads the peer's, once per refresh,
//! checking that it moved forward by no more than the capacity: a corrupted counter is
//! an error, never an out-of-bounds access.
//!
//! No system call is made while data flows. A side that finds the ring empty (or full)
//! spins briefly, then sleeps with the chosen `--sync` kind, having first raised its
//! "waiting" flag and re-checked; the other side wakes it only when it sees the flag, so
//! a busy ring costs no wake-ups. Every sleep is a short slice, after which the sleeper
//! checks that its peer is alive (its robust "alive" mutex) and the `--timeout`.

use super::layout::{ring_offset, Checked, Header, RingCtl, SyncKind};
use super::queue::Queue;
use crate::cleanup::Guard;
use crate::error::{Context, Error, Kind, Result};
use crate::frame::{check_len, FrameKind, Header as Frame, HEADER_LEN};
use crate::link::{Link, Received};
use crate::narrate;
use crate::workload::PayloadGen;
use crossbeam_utils::Backoff;
use ipc_sys::shm::{futex_wait, futex_wake, Lock, Mapping, PMutex};
use std::sync::atomic::Ordering::{Acquire, Relaxed, SeqCst};
use std::time::{Duration, Instant};

/// A sleeper re-checks its peer and the timeout this often.
pub(crate) const SLICE: Duration = Duration::from_millis(20);
/// Spins before a blocking kind sleeps: a wake-up costs tens of µs here, a spin a few ns.
const SHORT_SPIN: u32 = 200;
/// `--sync spin`: how long a waiter polls with `spin_loop` alone before it starts to
/// yield and then sleep. About one cross-core kernel wake-up: spinning longer than a
/// sleep would cost is the classic "spin, then block" balance, and a peer that answers
/// within it is seen within a cache-line transfer instead of a wake-up.
const TIGHT_SPIN: Duration = Duration::from_micros(50);
/// The writer publishes its head, and the reader its tail, at least every this many
/// bytes (or a quarter ring).
const PUBLISH_BATCH: u64 = 4096;
/// In a frame part of at least this many bytes, each side also publishes its counter
/// every this many bytes: the reader starts on a large message while the writer still
/// copies the rest, and neither side waits for a whole message of the other's, which
/// is long enough (hundreds of µs at 1 MiB) to end its spinning and put it to sleep.
const FRAME_STEP: u64 = 64 * 1024;
/// Smaller generated payloads are made in the sender's buffer, then copied in (and
/// copied out, then compared): the message is in L1 either way, and the one-pass loop's
/// fixed cost per call (dispatch, partial words) measured more than the pass it saves
/// (the producer's: slower at 64 and 256 bytes, faster from 4 KiB).
const FUSED_MIN: usize = 4096;
/// How much of newly published data the reader asks for at once: a small frame.
const READ_AHEAD: usize = 256;
const IDEA_RING: &str = "shared memory: no system call per message, only loads and stores";

/// One direction of the ring, from one side's point of view.
struct Ring<'a> {
    ctl: &'a RingCtl,
    map: &'a Mapping,
    index: usize,
    offset: usize,
    capacity: u64,
    /// Our counter: head if we write this ring, tail if we read it.
    pos: u64,
    /// `pos % capacity`, kept as `pos` moves: a division per copy would cost more than
    /// the copy of a small message (the capacity need not be a power of two).
    at: usize,
    /// The peer's counter as last read and checked.
    seen: u64,
    /// Our counter as last published. Both are published lazily, so that the line the
    /// peer polls is not pulled away from it on every small message. The reader
    /// publishes its tail every [`PUBLISH_BATCH`] bytes (or quarter ring), when the
    /// writer waits for space, before it waits itself if the writer may be short, and
    /// whatever it took before it sleeps. The writer publishes its head every
    /// [`PUBLISH_BATCH`] bytes, with every frame that is not data (hello, end, echo's
    /// request is data but see `flush`), and always before it waits for anything: for
    /// space, or for the other ring in pingpong ([`Link::flush`]). Within a large frame
    /// both also publish every [`FRAME_STEP`] bytes.
    published: u64,
    /// `--sync mq`: (send "wake" to the peer, receive the peer's "wake").
    queues: Option<(Queue, Queue)>,
    /// [`PUBLISH_BATCH`], or a quarter of a smaller ring.
    batch: u64,
}

/// Which way a sleeper waits.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Want {
    /// The reader waits for data.
    Data,
    /// The writer waits for space.
    Space,
}

/// One piece of a frame for [`Ring::write`].
enum Part<'p> {
    /// Bytes to copy in.
    Bytes(&'p [u8]),
    /// A generated payload: made into the ring and into the sender's own buffer (whose
    /// length is the part's) in one pass.
    Generated(&'p mut [u8], &'p PayloadGen),
}

impl Part<'_> {
    fn len(&self) -> usize {
        match self {
            Part::Bytes(b) => b.len(),
            Part::Generated(copy, _) => copy.len(),
        }
    }
}

/// What every wait needs: how to sleep, how long, and whom to check on.
struct Waits<'a> {
    sync: SyncKind,
    timeout: Duration,
    peer_alive: &'a PMutex,
    peer: &'static str,
    object: String,
    /// `--api posix|mmap`: the object, whose size every sleep checks (a truncated
    /// segment must end this side with an error, not SIGBUS).
    backing: Option<&'a std::fs::File>,
    mapped: usize,
}

pub struct ShmLink<'a> {
    tx: Option<Ring<'a>>,
    rx: Option<Ring<'a>>,
    waits: Waits<'a>,
    zero_copy: bool,
}

/// Which side of the segment this process is.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Side {
    Producer,
    Consumer,
}

impl ShmLink<'_> {
    /// [`Link::recv`], and with `seed` [`Link::recv_generated`]'s check: the next frame's
    /// header, then its payload into `buf`, checked as it is copied out against the
    /// generated payload of `(seed, its seq)`. Returns the header and whether every
    /// byte checked (true without `seed`).
    #[inline(always)]
    fn recv_taking(
        &mut self,
        buf: &mut Vec<u8>,
        max: usize,
        seed: Option<u64>,
    ) -> Result<(Frame, bool)> {
        self.flush()?;
        let Some(rx) = self.rx.as_mut() else {
            return Err(self.no_ring("receive from"));
        };
        let frame = rx.read_header(&self.waits)?;
        let total = check_len(&frame, max, &self.waits.object)?;
        if let Some(tx) = self.tx.as_ref() {
            // Pingpong: what goes back next (the echo, or the next request) is about
            // this long, and the peer has read what this side wrote before (it answered
            // it): fetch those lines now, not when the reply is written.
            tx.prefetch_next(HEADER_LEN + total);
        }
        let gen = seed.map(|seed| PayloadGen::new(seed, frame.seq));
        let mut ok = true;
        // Each piece, at its place in the payload; once a byte failed, the rest is only
        // copied.
        let mut take = |ring: &mut Ring, piece: &mut [u8], at: usize| match &gen {
            Some(gen) if ok => ok = ring.take_checked(piece, at as u64, gen),
            _ => ring.take(piece),
        };
        // Grown (at most doubling) as the writer publishes the payload, unless the
        // buffer is already this large: a header alone never reserves memory.
        let mut got = if buf.capacity() >= total { total } else { 0 };
        buf.resize(got, 0);
        if got == total && (total as u64) < FRAME_STEP && rx.seen - rx.pos >= total as u64 {
            // The common case, without the loop: the whole payload is there, and the
            // frame is not one to be taken in published steps.
            take(rx, buf, 0);
        } else {
            rx.read_with(buf, &self.waits, &mut take)?;
        }
        while got < total {
            let step = (total - got).min(got.max(64 * 1024));
            buf.resize(got + step, 0);
            let base = got;
            rx.read_with(&mut buf[got..], &self.waits, |r, p, at| {
                take(r, p, base + at)
            })?;
            got += step;
        }
        rx.consumed(&self.waits);
        if narrate::verbose() {
            narrate::repeated(
                "ring read",
                format_args!(
                    "copy {}{} bytes out of ring {}",
                    if seed.is_some() { "and check " } else { "" },
                    HEADER_LEN + buf.len(),
                    rx.index
                ),
                IDEA_RING,
            );
        }
        Ok((frame, ok))
    }
}

impl<'a> ShmLink<'a> {
    /// The producer writes ring 0 and reads ring 1 (pingpong); the consumer the reverse.
    /// `checked`: the geometry and sync kind as checked from the header.
    pub fn new(
        map: &'a Mapping,
        object: String,
        side: Side,
        checked: &Checked,
        timeout: Duration,
        queues: Option<SyncQueues>,
    ) -> ShmLink<'a> {
        let (sync, rings, capacity) = (checked.sync, checked.rings, checked.capacity);
        let h: &'a Header = map.header();
        let mut queues = queues.map(|q| q.per_ring.into_iter());
        let mut ring = |index: usize| Ring {
            ctl: &h.ring[index],
            map,
            index,
            offset: ring_offset(index, capacity),
            capacity,
            pos: 0,
            at: 0,
            seen: 0,
            published: 0,
            queues: queues.as_mut().and_then(|q| q.next()),
            batch: PUBLISH_BATCH.min(capacity / 4),
        };
        let (first, second) = (ring(0), (rings > 1).then(|| ring(1)));
        let (tx, rx, peer_alive, peer) = match side {
            Side::Producer => (Some(first), second, &h.consumer_alive, "consumer"),
            Side::Consumer => (second, Some(first), &h.producer_alive, "producer"),
        };
        ShmLink {
            tx,
            rx,
            waits: Waits {
                sync,
                timeout,
                peer_alive,
                peer,
                object,
                backing: None,
                mapped: map.len(),
            },
            zero_copy: checked.zero_copy,
        }
    }

    /// Check the size of `file` (the mapped object) at every sleep: see [`super::check_size`].
    pub fn watch_size(mut self, file: Option<&'a std::fs::File>) -> ShmLink<'a> {
        self.waits.backing = file;
        self
    }

    fn no_ring(&self, what: &str) -> Error {
        // The consumer follows the sender's hello and the producer sizes the segment for
        // its own mode, so only a corrupted segment gets here.
        corrupt(
            &self.waits.object,
            format!("has no ring to {what}, yet its sender asked for that"),
        )
    }
}

fn corrupt(object: &str, what: String) -> Error {
    Error::new(
        Kind::Verify,
        object,
        what,
        "the segment was overwritten; start both sides again",
    )
}

impl Ring<'_> {
    /// Read the reader's tail once, check it, keep it.
    fn refresh_tail(&mut self, w: &Waits) -> Result<()> {
        let tail = self.ctl.reader.tail.load(Acquire);
        if tail < self.seen || tail > self.pos {
            return Err(corrupt(
                &w.object,
                format!(
                    "ring {} tail {tail} is outside [{}, {}]",
                    self.index, self.seen, self.pos
                ),
            ));
        }
        self.seen = tail;
        Ok(())
    }

    /// Read the writer's head once, check it, keep it.
    fn refresh_head(&mut self, w: &Waits) -> Result<()> {
        let head = self.ctl.writer.head.load(Acquire);
        if head < self.seen || head - self.pos > self.capacity {
            return Err(corrupt(
                &w.object,
                format!(
                    "ring {} head {head} is outside [{}, {}]",
                    self.index,
                    self.pos,
                    self.pos + self.capacity
                ),
            ));
        }
        self.seen = head;
        Ok(())
    }

    fn publish_head(&mut self, w: &Waits) {
        self.published = self.pos;
        self.ctl.writer.head.store(self.pos, SeqCst);
        // SeqCst store then load, against the reader's flag store then head load: one
        // of the two sees the other, so a wake-up is never lost.
        if self.ctl.reader.data_waiting.load(SeqCst) != 0 {
            self.wake(w, Want::Data);
        }
    }

    fn publish_tail(&mut self, w: &Waits) {
        self.published = self.pos;
        self.ctl.reader.tail.store(self.pos, SeqCst);
        if self.ctl.writer.space_waiting.load(SeqCst) != 0 {
            self.wake(w, Want::Space);
        }
    }

    /// A message was written: publish now if `urgent` or a batch is complete.
    #[inline]
    fn written(&mut self, w: &Waits, urgent: bool) {
        if urgent || self.pos - self.published >= self.batch {
            self.publish_head(w);
        }
    }

    /// Publish whatever was written and not yet published (before waiting elsewhere).
    fn flush(&mut self, w: &Waits) {
        if self.pos != self.published {
            self.publish_head(w);
        }
    }

    /// Before the reader waits for data: publish the tail if the writer may be short
    /// of space, that is if more than half the ring was taken since the last
    /// publication, as far as the head just read says. A writer that waits for space
    /// has published its head and found the ring full, so the reader, having read that
    /// head, publishes. Otherwise the tail stays put: the writer keeps its copy of the
    /// tail's line, and a round trip moves one line fewer each way.
    fn publish_tail_if_short(&mut self, w: &Waits) {
        if self.seen - self.published > self.capacity / 2 {
            self.publish_tail(w);
        }
    }

    /// A message was taken: publish the tail if a batch was freed since the last
    /// publication (as the writer batches its head) or the writer waits for space (its
    /// flag is on the line the reader reads anyway). Batches as small as the writer's
    /// keep a writer that filled the ring going in steps of a batch: with a quarter ring
    /// it waited long enough to fall asleep, and each wake-up cost the reader a system
    /// call. The writer reads the tail only when it runs short, so a publication it
    /// does not need moves no line. Never a lost wake-up: the reader publishes all it
    /// took before it sleeps ([`Ring::wait`]).
    #[inline]
    fn consumed(&mut self, w: &Waits) {
        if self.pos - self.published >= self.batch
            || self.ctl.writer.space_waiting.load(SeqCst) != 0
        {
            self.publish_tail(w);
        }
    }

    /// Wake the peer sleeping for `want`. Best effort: it re-checks every slice anyway.
    fn wake(&self, w: &Waits, want: Want) {
        narrate_wake(w.sync, want);
        let c = self.ctl;
        match w.sync {
            SyncKind::Spin => {
                let word = match want {
                    Want::Data => &c.writer.data_signal,
                    Want::Space => &c.reader.space_signal,
                };
                word.fetch_add(1, SeqCst);
                futex_wake(word);
            }
            SyncKind::Mutex => {
                // Timed: a lock held for a whole slice (a stopped peer, a corrupted
                // segment) skips this wake-up; the sleeper re-checks every slice anyway.
                if let Ok(l @ (Lock::Acquired | Lock::OwnerDied)) = c.lock.lock_within(SLICE) {
                    if l == Lock::OwnerDied {
                        c.lock.make_consistent();
                    }
                    stop_in_critical_section();
                    // The condition variable is the lecture's signal; the sleeper waits
                    // on the futex word beside it (see `sleep`), bumped under the lock.
                    let word = match want {
                        Want::Data => {
                            c.not_empty.signal();
                            &c.writer.data_signal
                        }
                        Want::Space => {
                            c.not_full.signal();
                            &c.reader.space_signal
                        }
                    };
                    word.fetch_add(1, SeqCst);
                    c.lock.unlock();
                    futex_wake(word);
                }
            }
            SyncKind::Sem => {
                let _ = match want {
                    Want::Data => c.data_sem.post(),
                    Want::Space => c.space_sem.post(),
                };
            }
            SyncKind::Mq => {
                if let Some((send, _)) = &self.queues {
                    notify(send, want);
                }
            }
        }
    }

    /// Has the peer's counter moved past what we saw?
    fn moved(&self, want: Want) -> bool {
        let now = match want {
            Want::Data => self.ctl.writer.head.load(SeqCst),
            Want::Space => self.ctl.reader.tail.load(SeqCst),
        };
        now != self.seen
    }

    /// Wait until the peer's counter moves, the peer dies or the timeout passes.
    fn wait(&mut self, w: &Waits, want: Want) -> Result<()> {
        if w.sync == SyncKind::Spin {
            // Poll tightly first (a pause per poll, the clock every 64 polls).
            let start = Instant::now();
            let mut polls = 0u32;
            while !self.moved(want) {
                std::hint::spin_loop();
                polls = polls.wrapping_add(1);
                if polls.is_multiple_of(64) && start.elapsed() >= TIGHT_SPIN {
                    break;
                }
            }
        }
        let spin = Backoff::new();
        let mut spins = 0;
        while !self.moved(want) {
            if w.sync == SyncKind::Spin && !spin.is_completed() {
                spin.snooze();
            } else if w.sync != SyncKind::Spin && spins < SHORT_SPIN {
                std::hint::spin_loop();
                spins += 1;
            } else {
                if want == Want::Data && self.pos != self.published {
                    // Never sleep on bytes taken and not given back: a writer may wait
                    // for room while the ring is not full (a frame built in place
                    // needs room for all of it), and then only this tail frees it. The
                    // rules above publish it only once more than half the ring is
                    // unpublished, or a batch, or when the writer's flag is already up,
                    // which it raises only when it sleeps: with less than a batch taken
                    // since the last publication both sides slept until the timeout.
                    // Publishing here, before the flag, costs a store per sleep, and
                    // `publish_tail` wakes a writer already asleep.
                    self.publish_tail(w);
                }
                return self.sleep(w, want);
            }
        }
        Ok(())
    }

    fn sleep(&self, w: &Waits, want: Want) -> Result<()> {
        let c = self.ctl;
        let (flag, signal) = match want {
            Want::Data => (&c.reader.data_waiting, &c.writer.data_signal),
            Want::Space => (&c.writer.space_waiting, &c.reader.space_signal),
        };
        let deadline = Instant::now() + w.timeout;
        loop {
            // Before each slice touches the header again.
            intact(w)?;
            let slice = SLICE.min(deadline.saturating_duration_since(Instant::now()));
            match w.sync {
                SyncKind::Spin => {
                    let seen = signal.load(SeqCst);
                    flag.store(1, SeqCst);
                    if !self.moved(want) {
                        narrate::repeated(
                            "futex",
                            format_args!("futex(FUTEX_WAIT, {slice:?})"),
                            "spin, then sleep in the kernel",
                        );
                        futex_wait(signal, seen, slice);
                        intact(w)?;
                    }
                    flag.store(0, Relaxed);
                }
                SyncKind::Mutex => {
                    // Raise the flag and take the futex word's value under the lock: the
                    // waker bumps the word under the same lock, so a wake-up cannot slip
                    // in between. Then sleep on the word with the lock released. Not
                    // pthread_cond_timedwait: on its way out it re-locks the mutex with
                    // no time limit, so a peer stopped while holding the lock (a
                    // debugger, Ctrl-Z) would block this side for good. Every call here
                    // is timed: a lock held for a whole slice only skips to the checks.
                    let got = c
                        .lock
                        .lock_within(slice)
                        .on(&w.object, "pthread_mutex_timedlock")?;
                    if got == Lock::OwnerDied {
                        c.lock.make_consistent();
                        c.lock.unlock();
                        return Err(gone(w));
                    }
                    if got == Lock::Acquired {
                        flag.store(1, SeqCst);
                        let seen = signal.load(SeqCst);
                        let moved = self.moved(want);
                        c.lock.unlock();
                        if !moved {
                            narrate::repeated(
                                "cond_wait",
                                format_args!(
                                    "futex(FUTEX_WAIT, {}, {slice:?})",
                                    if want == Want::Data {
                                        "not_empty"
                                    } else {
                                        "not_full"
                                    }
                                ),
                                "condition: sleep until the peer signals, the lock released",
                            );
                            futex_wait(signal, seen, slice);
                            intact(w)?;
                        }
                        flag.store(0, Relaxed);
                    }
                }
                SyncKind::Sem => {
                    flag.store(1, SeqCst);
                    if !self.moved(want) {
                        let sem = if want == Want::Data {
                            &c.data_sem
                        } else {
                            &c.space_sem
                        };
                        narrate::repeated(
                            "sem_wait",
                            format_args!("sem_timedwait({slice:?})"),
                            "semaphore: sleep until the peer posts",
                        );
                        sem.wait(slice).on(&w.object, "sem_timedwait")?;
                        intact(w)?;
                    }
                    flag.store(0, Relaxed);
                }
                SyncKind::Mq => {
                    flag.store(1, SeqCst);
                    if !self.moved(want) {
                        if let Some((_, recv)) = &self.queues {
                            wait_on(recv, slice)?;
                            intact(w)?;
                        }
                    }
                    flag.store(0, Relaxed);
                }
            }
            if self.moved(want) {
                return Ok(());
            }
            if !peer_alive(w.peer_alive) {
                // It may have published just before it went.
                if self.moved(want) {
                    return Ok(());
                }
                return Err(gone(w));
            }
            if Instant::now() >= deadline {
                return Err(Error::peer(
                    &w.object,
                    format!(
                        "the {} made no progress for {:.1} s",
                        w.peer,
                        w.timeout.as_secs_f64()
                    ),
                    format!(
                        "the {} is stopped or stuck; check it, or raise --timeout",
                        w.peer
                    ),
                )
                .because(crate::error::Cause::Timeout));
            }
        }
    }

    /// Whether `n` bytes from our position lie before the ring's end (no wrap).
    #[inline]
    fn contiguous(&self, n: usize) -> bool {
        n <= self.capacity as usize - self.at
    }

    /// Take ownership now of the lines the next `n` bytes written will go to, as far as
    /// they are known free and before the ring's end, so that their transfers from the
    /// reader's core overlap the wait and the work before the write.
    #[inline]
    fn prefetch_next(&self, n: usize) {
        let free = (self.capacity - (self.pos - self.seen)) as usize;
        let n = n.min(free).min(self.capacity as usize - self.at);
        self.map.prefetch(self.offset + self.at, n, true);
    }

    /// Move our position `n <= capacity` bytes on.
    #[inline]
    fn advance(&mut self, n: usize) {
        self.pos += n as u64;
        self.at += n;
        if self.at >= self.capacity as usize {
            self.at -= self.capacity as usize;
        }
        // The tests run debug builds: every move of every ring test checks this.
        debug_assert_eq!(self.at as u64, self.pos % self.capacity);
    }

    /// Copy `src` in at ring offset `at` (wrapping), without moving or publishing.
    #[inline]
    fn put_at(&self, at: usize, src: &[u8]) {
        let first = src.len().min(self.capacity as usize - at);
        self.map.copy_in(self.offset + at, &src[..first]);
        if first < src.len() {
            self.map.copy_in(self.offset, &src[first..]);
        }
    }

    /// Copy `src` in at our position (wrapping), without publishing.
    #[inline]
    fn put(&mut self, src: &[u8]) {
        self.put_at(self.at, src);
        self.advance(src.len());
    }

    /// Copy out at our position (wrapping), without publishing.
    #[inline]
    fn take(&mut self, dst: &mut [u8]) {
        let first = dst.len().min(self.capacity as usize - self.at);
        self.map.copy_out(self.offset + self.at, &mut dst[..first]);
        if first < dst.len() {
            let n = dst.len();
            self.map.copy_out(self.offset, &mut dst[first..n]);
        }
        self.advance(dst.len());
    }

    /// Generate `len` bytes of `gen`'s stream, from byte `at` on, straight into the ring
    /// at our position (wrapping: two pieces, a word may straddle the end), without
    /// publishing. The caller has made sure there is room.
    fn put_words(&mut self, len: usize, at: u64, gen: &PayloadGen) {
        let here = self.at;
        let first = len.min(self.capacity as usize - here);
        let word = gen.weyl();
        self.map.fill_words(self.offset + here, first, at, word);
        if first < len {
            self.map
                .fill_words(self.offset, len - first, at + first as u64, word);
        }
        self.advance(len);
    }

    /// Whether the next `len` bytes of the ring (wrapping) are bytes `at..` of `gen`'s
    /// stream; moves past them either way, without publishing. The caller has made sure
    /// they were written (`seen - pos >= len`).
    fn take_words(&mut self, len: usize, at: u64, gen: &PayloadGen) -> bool {
        let here = self.at;
        let first = len.min(self.capacity as usize - here);
        let word = gen.weyl();
        let ok = self.map.matches_words(self.offset + here, first, at, word)
            && (first == len
                || self
                    .map
                    .matches_words(self.offset, len - first, at + first as u64, word));
        self.advance(len);
        ok
    }

    /// Generate bytes `at..` of `gen`'s stream into the ring at our position (wrapping)
    /// and into `copy`, as many as `copy` holds, without publishing. The caller has made
    /// sure there is room.
    fn put_generated(&mut self, copy: &mut [u8], at: u64, gen: &PayloadGen) {
        let here = self.at;
        let first = copy.len().min(self.capacity as usize - here);
        let word = gen.weyl();
        let (a, b) = copy.split_at_mut(first);
        self.map
            .fill_words_with_copy(self.offset + here, a, at, word);
        if !b.is_empty() {
            self.map
                .fill_words_with_copy(self.offset, b, at + first as u64, word);
        }
        self.advance(copy.len());
    }

    /// Copy out at our position (wrapping) into `dst`, checking in the same pass that
    /// the bytes are bytes `at..` of `gen`'s stream; without publishing. `dst` gets every
    /// byte either way.
    fn take_checked(&mut self, dst: &mut [u8], at: u64, gen: &PayloadGen) -> bool {
        let here = self.at;
        let first = dst.len().min(self.capacity as usize - here);
        let word = gen.weyl();
        let (a, b) = dst.split_at_mut(first);
        let ok = self.map.copy_out_matching(self.offset + here, a, at, word);
        let ok = if b.is_empty() {
            ok
        } else if ok {
            self.map
                .copy_out_matching(self.offset, b, at + first as u64, word)
        } else {
            self.map.copy_out(self.offset, b);
            false
        };
        self.advance(dst.len());
        ok
    }

    /// Write every part, in rounds when the ring fills; publish at the end if `urgent`
    /// or a batch is complete (see `published`).
    fn write(&mut self, parts: &mut [Part], w: &Waits, urgent: bool) -> Result<()> {
        let total: usize = parts.iter().map(|p| p.len()).sum();
        // (rounds so far, bytes of the frame written) for -v; only counted when on.
        let mut rounds = (0u32, 0usize, 0usize);
        for part in parts {
            let mut done = 0;
            while done < part.len() {
                let mut free = self.capacity - (self.pos - self.seen);
                if free == 0 {
                    // A round ends: the free space known is used up. With large frames
                    // published in steps the reader may have made room meanwhile, so
                    // a frame larger than the ring need not wait.
                    self.refresh_tail(w)?;
                    free = self.capacity - (self.pos - self.seen);
                    let waits = free == 0;
                    if narrate::verbose() {
                        rounds.0 += 1;
                        let (n, done) = (rounds.2, rounds.1);
                        narrate_round(self.index, rounds.0, n, done, total, Round::Ends { waits });
                        rounds.2 = 0;
                    }
                    if waits {
                        // Let the reader drain what is there, then wait for room.
                        self.publish_head(w);
                        while free == 0 {
                            self.wait(w, Want::Space)?;
                            self.refresh_tail(w)?;
                            free = self.capacity - (self.pos - self.seen);
                        }
                    }
                }
                let large = part.len() as u64 >= FRAME_STEP;
                let mut n = (free as usize).min(part.len() - done);
                if large {
                    n = n.min(FRAME_STEP as usize);
                }
                match part {
                    Part::Bytes(b) => self.put(&b[done..done + n]),
                    Part::Generated(copy, gen) => {
                        self.put_generated(&mut copy[done..done + n], done as u64, gen)
                    }
                }
                done += n;
                rounds.1 += n;
                rounds.2 += n;
                if large && self.pos - self.published >= FRAME_STEP {
                    self.publish_head(w);
                }
            }
        }
        if rounds.0 > 0 {
            narrate_round(
                self.index,
                rounds.0 + 1,
                rounds.2,
                total,
                total,
                Round::Last,
            );
            self.written(w, urgent);
        } else {
            self.wrote(total, w, urgent);
        }
        Ok(())
    }

    /// A frame of `total` bytes went in at once: narrate it, publish if due.
    #[inline]
    fn wrote(&mut self, total: usize, w: &Waits, urgent: bool) {
        if narrate::verbose() {
            narrate::repeated(
                "ring write",
                format_args!(
                    "copy {total} bytes into ring {} at offset {}",
                    self.index,
                    (self.pos - total as u64) % self.capacity
                ),
                IDEA_RING,
            );
        }
        self.written(w, urgent);
    }

    /// Read and check the next frame header.
    #[inline(always)]
    fn read_header(&mut self, w: &Waits) -> Result<Frame> {
        let mut head = [0u8; HEADER_LEN];
        if self.seen - self.pos >= HEADER_LEN as u64 && self.contiguous(HEADER_LEN) {
            // The common case, without the loop: a copy of a constant length is a few
            // moves, not a call, and the header is returned in registers.
            self.map.copy_out(self.offset + self.at, &mut head);
            self.advance(HEADER_LEN);
        } else {
            self.read_slow(&mut head, w)?;
        }
        Frame::decode(&head)
            .map_err(|e| corrupt(&w.object, format!("bad frame in ring {}: {e}", self.index)))
    }

    /// Bytes written and not yet read (at least one), waiting for the writer as needed.
    #[inline]
    fn available(&mut self, w: &Waits) -> Result<usize> {
        loop {
            let avail = self.seen - self.pos;
            if avail != 0 {
                return Ok(avail as usize);
            }
            self.refresh_head(w)?;
            if self.seen == self.pos {
                self.publish_tail_if_short(w);
                self.wait(w, Want::Data)?;
            } else {
                // New data: ask for its first lines at once (a frame header is parsed
                // before its payload is copied), so they travel together.
                let n = ((self.seen - self.pos) as usize)
                    .min(READ_AHEAD)
                    .min(self.capacity as usize - self.at);
                self.map.prefetch(self.offset + self.at, n, false);
            }
        }
    }

    /// [`Ring::read`], kept out of line where the common case is inlined.
    #[inline(never)]
    fn read_slow(&mut self, dst: &mut [u8], w: &Waits) -> Result<()> {
        self.read(dst, w)
    }

    /// Fill `dst` from the ring, waiting for the writer as needed.
    #[inline]
    fn read(&mut self, dst: &mut [u8], w: &Waits) -> Result<()> {
        self.read_with(dst, w, |ring, piece, _| ring.take(piece))
    }

    /// [`Ring::read`], each piece taken by `take(ring, piece, its place in dst)`.
    fn read_with(
        &mut self,
        dst: &mut [u8],
        w: &Waits,
        mut take: impl FnMut(&mut Self, &mut [u8], usize),
    ) -> Result<()> {
        let large = dst.len() as u64 >= FRAME_STEP;
        let mut got = 0;
        while got < dst.len() {
            let mut n = self.available(w)?.min(dst.len() - got);
            if large {
                n = n.min(FRAME_STEP as usize);
            }
            take(self, &mut dst[got..got + n], got);
            got += n;
            // Copied out (and checked): the writer may have the room back now.
            if large && self.pos - self.published >= FRAME_STEP {
                self.publish_tail(w);
            }
        }
        Ok(())
    }
}

/// With -v: what the waking side calls, as the sleeper's narration shows its waits.
/// Only reached when the peer raised its waiting flag, never per message.
fn narrate_wake(sync: SyncKind, want: Want) {
    if !narrate::verbose() {
        return;
    }
    let (cond, sem, word) = match want {
        Want::Data => ("not_empty", "data_sem", "data_signal"),
        Want::Space => ("not_full", "space_sem", "space_signal"),
    };
    match sync {
        SyncKind::Spin => narrate::repeated(
            "futex wake",
            format_args!("futex(FUTEX_WAKE, {word}, 1)"),
            "the sleeper raised its flag: bump its word and wake it",
        ),
        SyncKind::Mutex => narrate::repeated(
            "cond_signal",
            format_args!(
                "pthread_mutex_lock(ring); pthread_cond_signal({cond}); pthread_mutex_unlock; futex(FUTEX_WAKE, {word})"
            ),
            "condition: signal under the lock the sleeper checks under",
        ),
        SyncKind::Sem => narrate::repeated(
            "sem_post",
            format_args!("sem_post({sem})"),
            "semaphore: post once for the sleeper",
        ),
        // `notify` narrates the mq_send itself.
        SyncKind::Mq => {}
    }
}

/// How a round of [`narrate_round`] ends.
enum Round {
    /// The free space known is used up; `waits`: and the reader had made no more.
    Ends { waits: bool },
    /// The frame is all in.
    Last,
}

/// With -v: one line per round of a frame larger than the free space.
fn narrate_round(ring: usize, round: u32, n: usize, done: usize, total: usize, end: Round) {
    narrate::repeated(
        "ring round",
        format_args!(
            "round {round}: {n} B into ring {ring} ({done} of {total} B){}",
            match end {
                Round::Ends { waits: true } => ", waits for space",
                Round::Ends { waits: false } => ", the reader has made room meanwhile",
                Round::Last => ", done",
            }
        ),
        "a message larger than the free space goes in rounds; head and tail are the progress",
    );
}

/// Test hook (debug builds only): with `IPC_TEST_STOP_IN_CRITICAL=1`, stop this process
/// (SIGSTOP) while it holds the ring's lock, as a debugger breakpoint or an ill-timed
/// Ctrl-Z would, so the tests can check that the peer still keeps its --timeout.
fn stop_in_critical_section() {
    #[cfg(debug_assertions)]
    if std::env::var_os("IPC_TEST_STOP_IN_CRITICAL").is_some_and(|v| v == "1") {
        let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGSTOP);
    }
}

/// Is the mapped object still as large as the mapping? Checked before the header is
/// touched again after every sleep (a sleep is when a peer's truncation is likely to
/// land unseen): a truncated segment ends this side with exit 1, not SIGBUS.
fn intact(w: &Waits) -> Result<()> {
    match w.backing {
        Some(f) => super::check_size(f, w.mapped, &w.object),
        None => Ok(()),
    }
}

fn gone(w: &Waits) -> Error {
    peer_died(&w.object, w.peer)
}

pub(crate) fn peer_died(object: &str, peer: &str) -> Error {
    Error::peer(
        object,
        format!("the {peer} is gone (its alive mutex is free: it exited or was killed)"),
        format!("see the {peer}'s output for why"),
    )
}

/// Is the peer alive? Its robust mutex is held for its whole life: EBUSY means alive;
/// getting it (or EOWNERDEAD) means it exited or died.
pub(crate) fn peer_alive(m: &PMutex) -> bool {
    match m.try_lock() {
        Ok(Lock::Busy) => true,
        Ok(Lock::OwnerDied) => {
            m.make_consistent();
            m.unlock();
            false
        }
        Ok(_) => {
            m.unlock();
            false
        }
        Err(_) => false,
    }
}

impl Link for ShmLink<'_> {
    fn object(&self) -> &str {
        &self.waits.object
    }

    fn send(&mut self, header: &Frame, payload: &[u8]) -> Result<()> {
        let Some(tx) = self.tx.as_mut() else {
            return Err(self.no_ring("send on"));
        };
        // Data may wait for a batch; a hello, an end or an echo goes at once.
        let urgent = header.kind != FrameKind::Data;
        let need = HEADER_LEN + payload.len();
        if (payload.len() as u64) < FRAME_STEP
            && tx.capacity - (tx.pos - tx.seen) >= need as u64
            && tx.contiguous(need)
        {
            // The common case, without the rounds: room known, no wrap, not a frame
            // large enough to be published in steps.
            tx.map.copy_in(tx.offset + tx.at, &header.encode());
            tx.map.copy_in(tx.offset + tx.at + HEADER_LEN, payload);
            tx.advance(need);
            tx.wrote(need, &self.waits, urgent);
            return Ok(());
        }
        tx.write(
            &mut [Part::Bytes(&header.encode()), Part::Bytes(payload)],
            &self.waits,
            urgent,
        )
    }

    fn recv(&mut self, buf: &mut Vec<u8>, max: usize) -> Result<Option<Frame>> {
        self.recv_taking(buf, max, None)
            .map(|(frame, _)| Some(frame))
    }

    fn fuses_generated(&self) -> bool {
        true
    }

    /// The frame header, then the payload generated into the ring and into `buf` in one
    /// pass (in rounds when the ring fills, as [`Link::send`]; below [`FUSED_MIN`]
    /// bytes, generated into `buf` and copied in). The CRC stays 0: the receiver
    /// regenerates and compares every byte ([`Link::recv_generated`]).
    fn send_generated(&mut self, header: &Frame, seed: u64, buf: &mut [u8]) -> Result<()> {
        if buf.len() < FUSED_MIN {
            crate::workload::fill_generated(seed, header.seq, buf);
            return self.send(header, buf);
        }
        let Some(tx) = self.tx.as_mut() else {
            return Err(self.no_ring("send on"));
        };
        let urgent = header.kind != FrameKind::Data;
        let gen = PayloadGen::new(seed, header.seq);
        tx.write(
            &mut [Part::Bytes(&header.encode()), Part::Generated(buf, &gen)],
            &self.waits,
            urgent,
        )
    }

    /// As [`Link::recv`], but each piece of the payload is checked against the generated
    /// payload as it is copied out: every ring word is loaded once, stored into `buf` and
    /// compared from the register (never re-read from the ring). Below
    /// [`FUSED_MIN`] bytes, copied out and then compared, as on other links: a small
    /// message is in L1 either way, and the plain comparison loop costs fewer
    /// instructions than the one-pass loop's set-up.
    fn recv_generated(&mut self, buf: &mut Vec<u8>, size: usize, seed: u64) -> Result<Received> {
        if size < FUSED_MIN {
            return crate::link::recv_then_match(self, buf, size, seed);
        }
        let (frame, ok) = self.recv_taking(buf, size, Some(seed))?;
        Ok(Some((frame, ok && buf.len() == size)))
    }

    fn in_place(&self) -> bool {
        self.zero_copy
    }

    /// Publish what the writer batched: before this side waits on the other ring, and
    /// whenever the workload is about to block on something else (reading its input).
    fn flush(&mut self) -> Result<()> {
        if let Some(tx) = self.tx.as_mut() {
            tx.flush(&self.waits);
        }
        Ok(())
    }

    /// Reserve room for the whole frame, generate the payload straight into the ring
    /// (raw unaligned stores, never a slice over shared memory), then write the header
    /// in front of it and publish both at once.
    ///
    /// The header's CRC is 0: computing it would be one more pass over the payload, and
    /// its only reader would be the in-place consumer, which never looks at it. A segment
    /// made with `--zero-copy` has FLAG_ZERO_COPY in its header, and a consumer that sees
    /// it checks data frames with [`Link::recv_in_place`]: it regenerates the payload of
    /// `(seed, seq)` and compares every byte where it lies, which is a stronger check
    /// than a CRC (any corrupted, lost or shifted byte fails it, and so does a wrong
    /// `--seed`). Frames that are not generated payloads (hello, end, file data) still
    /// go through [`Link::send`] with their CRC.
    fn send_in_place(&mut self, seed: u64, seq: u64, len: usize) -> Result<()> {
        let w = &self.waits;
        let Some(tx) = self.tx.as_mut() else {
            return Err(self.no_ring("send on"));
        };
        let need = (HEADER_LEN + len) as u64;
        if need > tx.capacity {
            return Err(Error::usage(
                format!(
                    "a {len}-byte message does not fit the {}-byte ring in place",
                    tx.capacity
                ),
                "raise --segment-size or drop --zero-copy",
            ));
        }
        while tx.capacity - (tx.pos - tx.seen) < need {
            tx.refresh_tail(w)?;
            if tx.capacity - (tx.pos - tx.seen) < need {
                tx.flush(w);
                tx.wait(w, Want::Space)?;
            }
        }
        let start = tx.at;
        tx.advance(HEADER_LEN);
        tx.put_words(len, 0, &PayloadGen::new(seed, seq));
        let frame = Frame {
            kind: FrameKind::Data,
            len: len as u32,
            // Not computed: see above.
            crc: 0,
            seq,
        };
        tx.put_at(start, &frame.encode());
        if narrate::verbose() {
            narrate::repeated(
                "ring build",
                format_args!(
                    "build {len} bytes in place in ring {} at offset {start}",
                    tx.index,
                ),
                "zero-copy: the message is made where the consumer reads it",
            );
        }
        tx.written(w, false);
        Ok(())
    }

    /// Read the header, then compare the payload with the generated one where it lies
    /// (raw unaligned loads), as the writer publishes it: no copy out. The header's CRC
    /// is not checked (the in-place sender leaves it 0; see `send_in_place`).
    fn recv_in_place(&mut self, seed: u64, size: usize) -> Result<(Frame, bool)> {
        self.flush()?;
        let w = &self.waits;
        let Some(rx) = self.rx.as_mut() else {
            return Err(self.no_ring("receive from"));
        };
        let frame = rx.read_header(w)?;
        let len = check_len(&frame, size, &w.object)?;
        let gen = PayloadGen::new(seed, frame.seq);
        // Compared even when the length is wrong, so a corrupted frame is read the same
        // way; a first mismatch ends the comparing, not the reading.
        let mut ok = true;
        let mut done = 0;
        while done < len {
            let n = rx.available(w)?.min(len - done);
            if ok {
                ok = rx.take_words(n, done as u64, &gen);
            } else {
                // Already failed: skip the rest unread.
                rx.advance(n);
            }
            done += n;
        }
        rx.consumed(w);
        Ok((frame, ok && len == size))
    }

    fn send_raw(&mut self, bytes: &[u8]) -> Result<()> {
        let Some(tx) = self.tx.as_mut() else {
            return Err(self.no_ring("send on"));
        };
        tx.write(&mut [Part::Bytes(bytes)], &self.waits, true)
    }

    fn recv_raw(&mut self, buf: &mut [u8]) -> Result<usize> {
        self.flush()?;
        let Some(rx) = self.rx.as_mut() else {
            return Err(self.no_ring("receive from"));
        };
        rx.read(buf, &self.waits)?;
        rx.consumed(&self.waits);
        Ok(buf.len())
    }
}

/// `--sync mq`: the lecture's "ready" and "ok" messages, on two POSIX queues per ring
/// beside the segment (`/NAME.rI.ready` from writer to reader, `/NAME.rI.ok` back).
pub struct SyncQueues {
    per_ring: Vec<(Queue, Queue)>,
}

const IDEA_MQ: &str = "synchronization by message: 'ready' / 'ok'";

fn queue_names(name: &str, ring: usize) -> (String, String) {
    (
        format!("/{name}.r{ring}.ready"),
        format!("/{name}.r{ring}.ok"),
    )
}

/// Tell the peer sleeping on this queue to look again.
fn notify(q: &Queue, want: Want) {
    let msg: &[u8] = if want == Want::Data { b"ready" } else { b"ok" };
    // A full queue already holds wake-ups enough.
    let _ = q.try_send(msg);
    narrate::repeated(
        "mq_send",
        format_args!("mq_send({:?}, {:?})", q.name, String::from_utf8_lossy(msg)),
        IDEA_MQ,
    );
}

fn wait_on(q: &Queue, slice: Duration) -> Result<()> {
    narrate::repeated(
        "mq_receive",
        format_args!("mq_timedreceive({:?}, {slice:?})", q.name),
        IDEA_MQ,
    );
    q.recv_for(&mut [0u8; 8], slice).map(drop)
}

impl SyncQueues {
    /// Producer: create the queues; returns them and the guards that remove their names.
    pub fn create(name: &str, rings: usize) -> Result<(SyncQueues, Vec<Guard>)> {
        let mut guards = Vec::new();
        for r in 0..rings {
            let (ready, ok) = queue_names(name, r);
            guards.push(Queue::create(
                &ready,
                4,
                8,
                "synchronization by message queue beside the segment",
            )?);
            guards.push(Queue::create(
                &ok,
                4,
                8,
                "synchronization by message queue beside the segment",
            )?);
        }
        Ok((SyncQueues::open(name, rings, Side::Producer)?, guards))
    }

    /// Open the queues for `side`: per ring, (where we send wake-ups, where we wait).
    pub fn open(name: &str, rings: usize, side: Side) -> Result<SyncQueues> {
        let per_ring = (0..rings)
            .map(|r| {
                let (ready, ok) = queue_names(name, r);
                // Ring 0 is written by the producer, ring 1 by the consumer.
                let writer = (r == 0) == (side == Side::Producer);
                let (send, wait) = if writer { (ready, ok) } else { (ok, ready) };
                Ok((Queue::open_sender(&send)?, Queue::open_receiver(&wait)?))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(SyncQueues { per_ring })
    }
}
