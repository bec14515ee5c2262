//! The workload every pair runs over its [`Link`]: the sender announces the plan in a
//! hello, sends numbered messages (generated from the seed, or a file's bytes) and an
//! end marker; the receiver checks every byte, counts what was lost, duplicated or
//! corrupted, and in pingpong sends each message back so the sender can time it.

use crate::args::{CommonArgs, DataPath, Mode, DEFAULT_COUNT, DEFAULT_SEED, DEFAULT_SIZE};
use crate::error::{Cause, Context, Error, Kind, Result};
use crate::frame::{FrameKind, Header, Hello, Payload, HELLO_LEN};
use crate::link::Link;
use crate::progress::Progress;
use crate::report::{Integrity, LatencyRecorder, Report};
use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::time::Instant;

/// What the summary says about the channel: `fifo` with `path=/tmp/x`, and so on.
#[derive(Clone, Debug, Default)]
pub struct Describe {
    pub mechanism: String,
    pub options: BTreeMap<String, String>,
}

impl Describe {
    pub fn new(mechanism: impl Into<String>) -> Describe {
        Describe {
            mechanism: mechanism.into(),
            options: BTreeMap::new(),
        }
    }

    pub fn with(mut self, key: &str, value: impl ToString) -> Describe {
        self.options.insert(key.to_string(), value.to_string());
        self
    }
}

/// The payload of message `seq`, as a stream of 8-byte words: word `i` is a Weyl
/// sequence `key + i * GAMMA` through an xorshift scramble, where `key` mixes the seed
/// and the sequence number (SplitMix64's finaliser). Every word depends on the seed, the
/// message and its place in it, so a lost, swapped, shifted or corrupted piece fails the
/// check; and each word costs a few instructions with no dependency on the previous one
/// (the compiler vectorises it), so making and checking payloads runs near memory speed
/// and does not hide the cost of the channel being measured.
pub struct PayloadGen {
    key: u64,
    word: u64,
}

const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

impl PayloadGen {
    pub fn new(seed: u64, seq: u64) -> PayloadGen {
        // Mix the two so neighbouring (seed, seq) pairs give unrelated streams.
        let mut z = seed.wrapping_mul(GAMMA) ^ seq.wrapping_add(0xD1B5_4A32_D192_ED03);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        PayloadGen {
            key: z ^ (z >> 31),
            word: 0,
        }
    }

    /// Write the next `buf.len()` bytes of the stream. Filling in pieces whose sizes are
    /// multiples of 8 (but the last) gives the same bytes as one piece.
    pub fn fill(&mut self, buf: &mut [u8]) {
        // The Weyl value steps by GAMMA: an add per word, not a multiply (which SSE2
        // has no 64-bit form of).
        let mut z = weyl(self.key, self.word);
        let mut words = buf.chunks_exact_mut(8);
        let mut n = 0;
        for w in &mut words {
            w.copy_from_slice(&scramble(z).to_le_bytes());
            z = z.wrapping_add(GAMMA);
            n += 1;
        }
        let rest = words.into_remainder();
        if !rest.is_empty() {
            let k = rest.len();
            rest.copy_from_slice(&scramble(z).to_le_bytes()[..k]);
            n += 1;
        }
        self.word += n;
    }

    /// Whether `buf` holds the stream's first `buf.len()` bytes. Compared word by word
    /// as they are generated, so no expected copy is written and read back; the
    /// differences are OR-ed per block (which vectorises), so a mismatch ends it early.
    pub fn matches(&self, buf: &[u8]) -> bool {
        let mut z = self.key;
        if buf.len() <= 128 {
            // A small message: a plain loop, without the vector set-up that would cost
            // more than the comparison itself.
            let mut diff = 0u64;
            let mut words = buf.chunks_exact(8);
            for w in &mut words {
                diff |= u64::from_le_bytes(w.try_into().expect("8 bytes")) ^ scramble(z);
                z = z.wrapping_add(GAMMA);
            }
            let rest = words.remainder();
            return diff == 0 && rest == &scramble(z).to_le_bytes()[..rest.len()];
        }
        for block in buf.chunks(512) {
            let mut words = block.chunks_exact(8);
            let mut diff = 0u64;
            for w in &mut words {
                let got = u64::from_le_bytes(w.try_into().expect("8 bytes"));
                diff |= got ^ scramble(z);
                z = z.wrapping_add(GAMMA);
            }
            let rest = words.remainder();
            if !rest.is_empty() {
                let want = scramble(z).to_le_bytes();
                diff |= u64::from(rest != &want[..rest.len()]);
            }
            if diff != 0 {
                return false;
            }
        }
        true
    }

    /// Word `i` of the stream (little-endian bytes `8 * i ..`), whatever was filled
    /// before: what the shared memory in-place path writes and checks in the segment.
    #[inline(always)]
    pub fn word(&self, i: u64) -> u64 {
        mix(self.key, i)
    }

    /// The same stream as a Weyl sequence (`key + i * GAMMA`) and its scramble, for the
    /// shared-memory word loops, which step the sequence by an add instead of a multiply.
    /// A value that owns its key: the loops store through raw pointers, which the
    /// compiler must assume may alias `self` (it would reload the key after every store
    /// instead of vectorising).
    pub fn weyl(&self) -> ipc_sys::shm::Weyl<impl Fn(u64) -> u64 + Copy> {
        ipc_sys::shm::Weyl {
            start: self.key,
            step: GAMMA,
            finish: scramble,
        }
    }
}

#[inline(always)]
fn mix(key: u64, i: u64) -> u64 {
    scramble(weyl(key, i))
}

/// Word `i`'s place in the Weyl sequence.
#[inline(always)]
fn weyl(key: u64, i: u64) -> u64 {
    key.wrapping_add(i.wrapping_mul(GAMMA))
}

#[inline(always)]
fn scramble(z: u64) -> u64 {
    let z = z ^ (z >> 29);
    z ^ (z << 17)
}

/// Fill `buf` with the payload of message `seq`. Filling it in pieces whose sizes are
/// multiples of 8 from one [`PayloadGen`] gives the same bytes (the in-place path).
pub fn fill_generated(seed: u64, seq: u64, buf: &mut [u8]) {
    PayloadGen::new(seed, seq).fill(buf);
}

/// Sequence bookkeeping for the checking side.
#[derive(Default)]
pub struct Tally {
    next: u64,
    /// Unordered mode: sequence numbers seen at or above `next`.
    ahead: Option<BTreeSet<u64>>,
    pub integrity: Integrity,
}

impl Tally {
    /// For a channel that may reorder messages: each sequence number must arrive once,
    /// in any order; what never came is lost.
    pub fn unordered() -> Tally {
        Tally {
            ahead: Some(BTreeSet::new()),
            ..Tally::default()
        }
    }

    /// Record message `seq`; true when it is new and intact (to be kept). The sequence
    /// number is the peer's: one that leaves no room for a next one (`u64::MAX`) cannot
    /// come from a real run, and is refused (exit 3) instead of wrapping the bookkeeping.
    /// `object` names the channel in that error.
    pub fn observe(&mut self, seq: u64, intact: bool, object: &str) -> Result<bool> {
        let next_after = |seq: u64| {
            seq.checked_add(1).ok_or_else(|| {
                Error::verify(
                    object,
                    format!("sequence number {seq} leaves no room for another message"),
                )
                .with_remedy("the other side is not this program, or its data is corrupted")
            })
        };
        let i = &mut self.integrity;
        if let Some(ahead) = self.ahead.as_mut() {
            let new = seq >= self.next && ahead.insert(seq);
            while ahead.remove(&self.next) {
                self.next = next_after(self.next)?;
            }
            return Ok(match (new, intact) {
                (_, false) => {
                    i.corrupted += 1;
                    false
                }
                (false, true) => {
                    i.duplicated += 1;
                    false
                }
                (true, true) => {
                    i.received += 1;
                    true
                }
            });
        }
        if !intact {
            i.corrupted += 1;
            if seq == self.next {
                self.next = next_after(seq)?;
            }
            return Ok(false);
        }
        if seq < self.next {
            i.duplicated += 1;
            return Ok(false);
        }
        let next = next_after(seq)?;
        i.lost = i.lost.saturating_add(seq - self.next);
        self.next = next;
        i.received += 1;
        Ok(true)
    }

    /// The sender said it sent `announced` messages: whatever never came is lost.
    pub fn finish(&mut self, announced: u64) {
        let seen_ahead = self
            .ahead
            .as_ref()
            .map_or(0, |a| a.range(..announced).count() as u64);
        let missing = announced
            .saturating_sub(self.next)
            .saturating_sub(seen_ahead);
        self.integrity.lost = self.integrity.lost.saturating_add(missing);
    }
}

/// The sender's `--input`, and whether it is live: a terminal, pipe or socket, whose
/// every read is sent as one message at once (a typed line arrives when Enter is
/// pressed), where a file's bytes fill whole messages.
struct Input {
    reader: Box<dyn Read>,
    live: bool,
}

fn open_input(path: &DataPath) -> Result<Input> {
    let (reader, meta): (Box<dyn Read>, _) = match path {
        DataPath::Std => {
            let meta = std::fs::metadata("/dev/stdin");
            (Box::new(io::stdin().lock()), meta)
        }
        DataPath::File(p) => {
            let f = File::open(p).map_err(|e| {
                Error::os(format!("input file {}", p.display()), "open", e)
                    .with_remedy("check the path given to --input")
            })?;
            let meta = f.metadata();
            (Box::new(f), meta)
        }
    };
    let live = meta.is_ok_and(|m| {
        use std::os::unix::fs::FileTypeExt;
        let t = m.file_type();
        t.is_fifo() || t.is_socket() || t.is_char_device()
    });
    Ok(Input { reader, live })
}

/// One read: what a live input has now (at most `buf.len()`); 0 at its end.
fn read_once(r: &mut dyn Read, buf: &mut [u8]) -> Result<usize> {
    loop {
        match r.read(buf) {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::os("input", "read", e)),
        }
    }
}

fn open_output(path: &DataPath, timeout: std::time::Duration) -> Result<Box<dyn Write>> {
    Ok(match path {
        DataPath::Std => Box::new(BufWriter::with_capacity(1 << 16, io::stdout().lock())),
        DataPath::File(p) => Box::new(BufWriter::with_capacity(
            1 << 16,
            open_output_file(p, timeout)?,
        )),
    })
}

/// Open (create, truncate) `--output` without ever blocking past `timeout`: a plain open
/// of a FIFO for writing waits, with no time limit, for a reader. So open non-blocking,
/// retrying while a FIFO has no reader yet (ENXIO), then make the descriptor blocking
/// again for the writes.
fn open_output_file(p: &std::path::Path, timeout: std::time::Duration) -> Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let object = format!("output file {}", p.display());
    let start = Instant::now();
    let file = loop {
        match std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(p)
        {
            Ok(f) => break f,
            Err(e) if e.raw_os_error() == Some(libc::ENXIO) => {
                if start.elapsed() >= timeout {
                    return Err(Error::peer(
                        &object,
                        format!(
                            "is a FIFO that no process opened for reading within {:.1} s",
                            timeout.as_secs_f64()
                        ),
                        "start its reader first (e.g. `cat` on it), or raise --timeout",
                    ));
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Err(e) => {
                return Err(
                    Error::os(&object, "open(O_WRONLY|O_CREAT|O_TRUNC|O_NONBLOCK)", e)
                        .with_remedy("check that the directory exists and is writable"),
                )
            }
        }
    };
    set_blocking(&file, &object)?;
    Ok(file)
}

/// Clear O_NONBLOCK on a descriptor opened with it (so that the open itself could not block).
pub(crate) fn set_blocking(file: &File, object: &str) -> Result<()> {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    use std::os::fd::AsRawFd;
    let fd = file.as_raw_fd();
    let flags = fcntl(fd, FcntlArg::F_GETFL).on(&object, "fcntl(F_GETFL)")?;
    let flags = OFlag::from_bits_truncate(flags) & !OFlag::O_NONBLOCK;
    fcntl(fd, FcntlArg::F_SETFL(flags)).on(&object, "fcntl(F_SETFL, ~O_NONBLOCK)")?;
    Ok(())
}

/// Read until `buf` is full or the input ends; returns the bytes read.
fn read_full(r: &mut dyn Read, buf: &mut [u8]) -> Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::os("input", "read", e)),
        }
    }
    Ok(got)
}

fn base_report(
    d: &Describe,
    role: &'static str,
    mode: Mode,
    payload: &'static str,
    size: usize,
    seed: Option<u64>,
) -> Report {
    let (mechanism, options) = (d.mechanism.clone(), d.options.clone());
    Report::new(mechanism, role, options, mode, payload, size as u64, seed)
}

fn gone(link: &dyn Link, who: &str, done: u64) -> Error {
    Error::peer(
        link.object(),
        format!("the {who} went away after {done} messages, before the run was complete"),
        format!("the {who} was killed or failed; see its output"),
    )
}

/// The sending side: plan from the flags, hello, messages, end.
pub fn send(link: &mut dyn Link, args: &CommonArgs, d: &Describe) -> Result<Report> {
    let mode = args.mode.unwrap_or(Mode::Stream);
    let size = args.size.unwrap_or(DEFAULT_SIZE);
    let mut input = args.input.as_ref().map(open_input).transpose()?;
    let seed = args.seed.unwrap_or(DEFAULT_SEED);
    let (payload, count) = match input {
        Some(_) => (Payload::File, args.count.unwrap_or(u64::MAX)),
        None => (
            Payload::Generated { seed },
            args.count.unwrap_or(DEFAULT_COUNT),
        ),
    };
    let payload_name = match (args.raw, payload) {
        (true, _) => "raw",
        (false, Payload::File) => "file",
        (false, Payload::Generated { .. }) => "generated",
    };
    let mut report = base_report(
        d,
        "sender",
        mode,
        payload_name,
        size,
        input.is_none().then_some(seed),
    );

    if !args.raw {
        let hello = Hello {
            mode,
            payload,
            count,
            size: size as u64,
        }
        .encode();
        link.send(&Header::for_payload(FrameKind::Hello, 0, &hello), &hello)
            .map_err(|e| e.after("receiver", 0))?;
    }

    let total = (input.is_none()).then(|| count.saturating_mul(size as u64));
    let progress = Progress::new("send", total, !args.child);
    let mut buf = vec![0u8; size];
    let mut echo = Vec::with_capacity(size);
    let mut tally = Tally::default();
    let mut latency = LatencyRecorder::default();
    let (mut seq, mut bytes) = (0u64, 0u64);
    let start = Instant::now();
    // Shared memory with --zero-copy: each message is generated straight into the segment.
    let in_place = link.in_place() && input.is_none() && !args.raw && mode == Mode::Stream;
    // Shared memory, copying: each message is generated into `buf` and the ring at once.
    // Stream only: a round trip's timing starts after its message was made.
    let fused = link.fuses_generated() && input.is_none() && !args.raw && mode == Mode::Stream;
    let mut hooks = test_hooks::Hooks::from_env()?;
    while seq < count {
        if in_place && !hooks.tampers(seq) {
            link.send_in_place(seed, seq, size)
                .map_err(|e| e.after("receiver", seq))?;
            seq += 1;
            bytes += size as u64;
            progress.advance(size as u64);
            hooks.maybe_die(link, "sender", seq);
            continue;
        }
        let n = match input.as_mut() {
            Some(i) => {
                // Reading may block: let the peer see what was batched first.
                link.flush()?;
                if i.live {
                    read_once(i.reader.as_mut(), &mut buf)?
                } else {
                    read_full(i.reader.as_mut(), &mut buf)?
                }
            }
            None => {
                if !fused || hooks.tampers(seq) {
                    fill_generated(seed, seq, &mut buf);
                }
                size
            }
        };
        if n == 0 {
            break;
        }
        if args.raw {
            let msg = &buf[..n];
            // Raw: no frame goes out; the header only tells the test hooks the sequence.
            let header = Header {
                kind: FrameKind::Data,
                len: n as u32,
                crc: 0,
                seq,
            };
            hooks
                .send(link, &header, msg, true)
                .map_err(|e| e.after("receiver", seq))?;
        } else {
            // A generated payload is regenerated and compared byte for byte by the
            // receiver (the hello gave it the seed): a CRC would be a pass nobody reads.
            let header = match input {
                None => Header {
                    kind: FrameKind::Data,
                    len: n as u32,
                    crc: 0,
                    seq,
                },
                Some(_) => Header::for_payload(FrameKind::Data, seq, &buf[..n]),
            };
            // Only a round trip is timed: a clock read per streamed message is not free.
            let t0 = (mode == Mode::Pingpong).then(Instant::now);
            if fused && !hooks.tampers(seq) {
                link.send_generated(&header, seed, &mut buf[..n])
            } else {
                hooks.send(link, &header, &buf[..n], false)
            }
            .map_err(|e| e.after("receiver", seq))?;
            let msg = &buf[..n];
            if let Some(t0) = t0 {
                let reply = link
                    .recv(&mut echo, size)
                    .map_err(|e| e.after("receiver", seq))?
                    .ok_or_else(|| gone(link, "receiver", seq))?;
                latency.record(t0.elapsed());
                let intact = reply.kind == FrameKind::Echo && echo.as_slice() == msg;
                tally.observe(reply.seq, intact && reply.seq == seq, link.object())?;
            }
        }
        seq += 1;
        bytes += n as u64;
        progress.advance(n as u64);
        hooks.maybe_die(link, "sender", seq);
        if seq < count {
            pause(link, args, seq)?;
        }
    }
    if !args.raw {
        link.send(&Header::for_payload(FrameKind::End, seq, &[]), &[])
            .map_err(|e| e.after("receiver", seq))?;
    }
    let elapsed = start.elapsed();
    progress.finish();
    report.set_timing(seq, bytes, elapsed);
    if mode == Mode::Pingpong {
        tally.finish(seq);
        report.latency = latency.summary();
        report.verified = tally.integrity.ok();
        report.integrity = Some(tally.integrity);
    } else {
        // A stream sender checks nothing; it succeeded if every byte left.
        report.verified = true;
    }
    Ok(report)
}

/// `--interval`: after message `sent - 1`, wait before the next one, so a person can
/// follow each message (in `-v` narration, `ls`, `ipcs`). What was batched goes first.
fn pause(link: &mut dyn Link, args: &CommonArgs, sent: u64) -> Result<()> {
    let Some(interval) = args.interval else {
        return Ok(());
    };
    link.flush()?;
    if crate::narrate::verbose() {
        crate::narrate::note(format_args!(
            "sent message {}; waiting {} ms before the next (--interval)",
            sent - 1,
            interval.as_millis()
        ));
    }
    std::thread::sleep(interval);
    Ok(())
}

/// The receiving side: follow the sender's hello, check every message, write `--output`.
pub fn receive(link: &mut dyn Link, args: &CommonArgs, d: &Describe) -> Result<Report> {
    let mut out = args
        .output
        .as_ref()
        .map(|p| open_output(p, args.timeout))
        .transpose()?;
    if args.raw {
        return receive_raw(link, args, d, out);
    }

    let mut buf = Vec::new();
    // Until the hello says how large messages are, nothing longer than a hello is taken.
    let first = link
        .recv(&mut buf, HELLO_LEN)
        .map_err(|e| e.after("sender", 0))?
        .ok_or_else(|| gone(link, "sender", 0))?;
    if first.kind != FrameKind::Hello || !first.payload_ok(&buf) {
        return Err(Error::verify(
            link.object(),
            format!(
                "expected a hello frame first, got {:?} with {} bytes",
                first.kind,
                buf.len()
            ),
        )
        .with_remedy("the sender is not this program, or sends --raw; use --raw on both sides"));
    }
    let hello = Hello::decode(&buf).map_err(|e| Error::verify(link.object(), e.to_string()))?;
    check_agrees(args, &hello)?;
    let size = hello.size as usize;
    let seed = match hello.payload {
        // check_agrees refused a --seed other than this one.
        Payload::Generated { seed } => Some(seed),
        Payload::File => None,
    };
    let payload_name = if seed.is_some() { "generated" } else { "file" };
    let mut report = base_report(d, "receiver", hello.mode, payload_name, size, seed);
    let total = (hello.count != u64::MAX).then(|| hello.count.saturating_mul(hello.size));
    let progress = Progress::new("recv", total, !args.child);

    // Shared memory with --zero-copy: the link checks each message where it lies.
    let in_place = link.in_place() && hello.mode == Mode::Stream && out.is_none();
    // Shared memory, copying: the link checks each message as it copies it out.
    let fused = !in_place && link.fuses_generated();
    let mut tally = if link.reorders() {
        Tally::unordered()
    } else {
        Tally::default()
    };
    let mut bytes = 0u64;
    let hooks = test_hooks::Hooks::from_env()?;
    let start = Instant::now();
    loop {
        let mut checked_by_link = None;
        let header = match seed {
            Some(seed) if in_place => {
                let (h, ok) = link
                    .recv_in_place(seed, size)
                    .map_err(|e| e.after("sender", tally.integrity.received))?;
                checked_by_link = Some(ok);
                h
            }
            Some(seed) if fused => {
                let (h, ok) = link
                    .recv_generated(&mut buf, size, seed)
                    .map_err(|e| e.after("sender", tally.integrity.received))?
                    .ok_or_else(|| gone(link, "sender", tally.integrity.received))?;
                checked_by_link = Some(ok);
                h
            }
            _ => link
                .recv(&mut buf, size)
                .map_err(|e| e.after("sender", tally.integrity.received))?
                .ok_or_else(|| gone(link, "sender", tally.integrity.received))?,
        };
        match header.kind {
            FrameKind::Data => {
                let intact = match (checked_by_link, seed) {
                    (Some(ok), _) => ok,
                    (None, Some(seed)) => {
                        buf.len() == size && PayloadGen::new(seed, header.seq).matches(&buf)
                    }
                    (None, None) => buf.len() <= size && header.payload_ok(&buf),
                };
                if tally.observe(header.seq, intact, link.object())? {
                    bytes += u64::from(header.len);
                    progress.advance(u64::from(header.len));
                    if let Some(o) = out.as_mut() {
                        write_out(o.as_mut(), &buf, size, args)?;
                    }
                }
                hooks.maybe_die(link, "receiver", tally.integrity.received);
                if hello.mode == Mode::Pingpong {
                    let echo = Header {
                        kind: FrameKind::Echo,
                        ..header
                    };
                    link.send(&echo, &buf)
                        .map_err(|e| e.after("sender", tally.integrity.received))?;
                }
            }
            FrameKind::End => {
                tally.finish(header.seq);
                break;
            }
            other => {
                return Err(Error::verify(
                    link.object(),
                    format!("unexpected {other:?} frame after the hello"),
                ))
            }
        }
    }
    let elapsed = start.elapsed();
    progress.finish();
    if let Some(o) = out.as_mut() {
        o.flush().on(&output_name(args), "write")?;
    }
    report.set_timing(tally.integrity.received, bytes, elapsed);
    report.verified = tally.integrity.ok();
    report.integrity = Some(tally.integrity);
    Ok(report)
}

/// Write a received message to `--output`. Full messages are buffered; a short one
/// came from a live input (a typed line, `--input -`) or is a file's last piece, so it
/// goes out at once: a line typed to the sender shows on the receiver's side now.
fn write_out(o: &mut dyn Write, msg: &[u8], size: usize, args: &CommonArgs) -> Result<()> {
    o.write_all(msg).on(&output_name(args), "write")?;
    if msg.len() < size {
        o.flush().on(&output_name(args), "write")?;
    }
    Ok(())
}

fn output_name(args: &CommonArgs) -> String {
    match &args.output {
        Some(DataPath::File(p)) => format!("output file {}", p.display()),
        _ => "standard output".to_string(),
    }
}

/// Flags given to the receiver must match what the sender announced in its hello: a
/// difference is named with both values (exit 2, cause mismatch), rather than showing
/// up later as lost or corrupted messages.
fn check_agrees(args: &CommonArgs, hello: &Hello) -> Result<()> {
    let mismatch = |flag: &str, mine: String, theirs: String| {
        Err(Error::usage(
            format!("the receiver was given {flag} {mine} but the sender sends {theirs}"),
            format!("give {flag} to the sender only, or the same value to both sides"),
        )
        .because(Cause::Mismatch))
    };
    if let Some(m) = args.mode.filter(|&m| m != hello.mode) {
        return mismatch("--mode", m.as_str().into(), hello.mode.as_str().into());
    }
    if let Some(s) = args.size.filter(|&s| s as u64 != hello.size) {
        return mismatch("--size", s.to_string(), hello.size.to_string());
    }
    // A file's length is unknown up front (count u64::MAX): nothing to compare.
    if let Some(c) = args
        .count
        .filter(|&c| hello.count != u64::MAX && c != hello.count)
    {
        return mismatch("--count", c.to_string(), hello.count.to_string());
    }
    match (args.seed, hello.payload) {
        (Some(mine), Payload::Generated { seed }) if mine != seed => {
            mismatch("--seed", mine.to_string(), seed.to_string())
        }
        (Some(mine), Payload::File) => mismatch(
            "--seed",
            mine.to_string(),
            "a file's bytes (--input), not generated payloads".into(),
        ),
        _ => Ok(()),
    }
}

/// `--raw`: no hello, no frames. The receiver takes chunks of `--size` until end of file
/// (or `--count` chunks), checks them against the seed unless it writes `--output`.
fn receive_raw(
    link: &mut dyn Link,
    args: &CommonArgs,
    d: &Describe,
    mut out: Option<Box<dyn Write>>,
) -> Result<Report> {
    let size = args.size.unwrap_or(DEFAULT_SIZE);
    let seed = out.is_none().then(|| args.seed.unwrap_or(DEFAULT_SEED));
    // Raw bytes are one-way: `validate` refuses --raw with pingpong.
    let mut report = base_report(d, "receiver", Mode::Stream, "raw", size, seed);
    let progress = Progress::new(
        "recv",
        args.count.map(|c| c.saturating_mul(size as u64)),
        !args.child,
    );
    // A message channel may carry messages longer than --size (another program is the
    // sender): take each whole, and count one that is not --size long as corrupted.
    let room = size.max(link.raw_message_max().unwrap_or(0));
    let mut buf = vec![0u8; room];
    let mut tally = Tally::default();
    let (mut seq, mut bytes) = (0u64, 0u64);
    let hooks = test_hooks::Hooks::from_env()?;
    let mut start = None;
    while args.count.is_none_or(|c| seq < c) {
        let n = link
            .recv_raw(&mut buf)
            .map_err(|e| e.after("sender", seq))?;
        if n == 0 {
            break;
        }
        start.get_or_insert_with(Instant::now);
        if let Some(seed) = seed {
            let intact = n <= size && PayloadGen::new(seed, seq).matches(&buf[..n]);
            tally.observe(seq, intact, link.object())?;
        }
        if let Some(o) = out.as_mut() {
            write_out(o.as_mut(), &buf[..n], size, args)?;
        }
        seq += 1;
        bytes += n as u64;
        progress.advance(n as u64);
        hooks.maybe_die(link, "receiver", seq);
    }
    let elapsed = start.map(|s| s.elapsed()).unwrap_or_default();
    progress.finish();
    if let Some(o) = out.as_mut() {
        o.flush().on(&output_name(args), "write")?;
    }
    if let Some(c) = args.count {
        if seq < c {
            return Err(gone(link, "sender", seq));
        }
    }
    report.set_timing(seq, bytes, elapsed);
    if seed.is_some() {
        report.verified = tally.integrity.ok();
        report.integrity = Some(tally.integrity);
    }
    Ok(report)
}

/// Print the summary (stdout, or stderr when stdout carries the data) or the error,
/// and return the exit code docs/design.md gives it.
pub fn finish(prog: &str, args: &CommonArgs, result: Result<Option<Report>>) -> i32 {
    match result {
        // `run` in pingpong: the sender prints the summary with the round trips.
        Ok(Some(report)) if args.child && report.mode == Mode::Pingpong => {
            if report.integrity.is_some_and(|i| !i.ok()) {
                Kind::Verify.exit_code()
            } else {
                0
            }
        }
        Ok(Some(report)) => {
            let text = if args.json {
                report.json() + "\n"
            } else {
                report.human()
            };
            if args.output == Some(DataPath::Std) {
                eprint!("{text}");
            } else {
                print!("{text}");
                let _ = io::stdout().flush();
            }
            if report.integrity.is_some_and(|i| !i.ok()) {
                eprintln!(
                    "{prog}: error[corrupt]: data failed verification (see the integrity line)"
                );
                Kind::Verify.exit_code()
            } else {
                0
            }
        }
        Ok(None) => 0,
        Err(e) => {
            eprintln!("{prog}: error[{}]: {e}", e.cause.tag());
            e.exit_code()
        }
    }
}

/// Test-only hooks, read from the environment by debug builds only (a release build
/// ignores them). They turn a side into a peer that lies or dies at a chosen message, so
/// the integration tests can check that the other side notices, on every mechanism:
///
/// - `IPC_TEST_KILL_AFTER=<side>:<n>`, side `sender` or `receiver`: that side SIGKILLs
///   itself right after it sent (received) its `n`th data message.
/// - `IPC_TEST_TAMPER=<what>:<seq>`: the sender garbles data message `seq`, where
///   `what` is one of [`Tamper`]'s names (`flip`, `crc`, `drop`, `dup`, `swap`,
///   `magic`, `length`, `truncate`). With `--raw` only `flip`, `drop`, `dup` and `swap`
///   apply (raw bytes have no header to garble).
pub mod test_hooks {
    use crate::error::{Error, Result};
    use crate::frame::{FrameKind, Header};
    use crate::link::Link;

    /// How the sender garbles one message.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum Tamper {
        /// One payload byte past the first word flipped, the CRC made over the flipped bytes.
        Flip,
        /// The CRC off by one bit.
        Crc,
        /// Not sent.
        Drop,
        /// Sent twice.
        Dup,
        /// Sent after the next message.
        Swap,
        /// The header's magic wrong.
        Magic,
        /// The header announces one byte more than the frame carries.
        Length,
        /// The header announces the whole payload; half of it follows.
        Truncate,
    }

    const NAMES: [(&str, Tamper); 8] = [
        ("flip", Tamper::Flip),
        ("crc", Tamper::Crc),
        ("drop", Tamper::Drop),
        ("dup", Tamper::Dup),
        ("swap", Tamper::Swap),
        ("magic", Tamper::Magic),
        ("length", Tamper::Length),
        ("truncate", Tamper::Truncate),
    ];

    /// The hooks this process was started with; none in a release build.
    #[derive(Clone, Debug, Default)]
    pub struct Hooks {
        kill_after: Option<(String, u64)>,
        tamper: Option<(Tamper, u64)>,
        /// A swapped message, held back until the next one has gone.
        held: Option<(Header, Vec<u8>)>,
    }

    fn pair(var: &str) -> Result<Option<(String, u64)>> {
        let Ok(v) = std::env::var(var) else {
            return Ok(None);
        };
        let bad = || {
            Error::usage(
                format!("{var}={v} is not WORD:N"),
                "see workload.rs's test hooks",
            )
        };
        let (word, n) = v.split_once(':').ok_or_else(bad)?;
        let n = n.parse().map_err(|_| bad())?;
        Ok(Some((word.to_string(), n)))
    }

    impl Hooks {
        /// Read the environment (debug builds only).
        pub fn from_env() -> Result<Hooks> {
            if !cfg!(debug_assertions) {
                return Ok(Hooks::default());
            }
            let tamper = match pair("IPC_TEST_TAMPER")? {
                None => None,
                Some((what, seq)) => {
                    let t = NAMES.iter().find(|(n, _)| *n == what).ok_or_else(|| {
                        Error::usage(
                            format!("IPC_TEST_TAMPER: unknown {what}"),
                            "see workload.rs's test hooks",
                        )
                    })?;
                    Some((t.1, seq))
                }
            };
            Ok(Hooks {
                kill_after: pair("IPC_TEST_KILL_AFTER")?,
                tamper,
                held: None,
            })
        }

        /// Is message `seq` to be garbled, or one held back to go after it?
        pub fn tampers(&self, seq: u64) -> bool {
            self.held.is_some() || self.tamper.is_some_and(|(_, at)| at == seq)
        }

        /// `role` has now handled `done` data messages: die here if told to. What was
        /// sent is made visible first, so the peer sees exactly `done` messages.
        #[inline]
        pub fn maybe_die(&self, link: &mut dyn Link, role: &str, done: u64) {
            if self
                .kill_after
                .as_ref()
                .is_some_and(|(r, n)| r == role && *n == done)
            {
                let _ = link.flush();
                eprintln!("test hook: the {role} kills itself after {done} messages");
                let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
            }
        }

        /// Send data message `seq` (`raw`: the bare bytes), garbled if it is the one.
        pub fn send(
            &mut self,
            link: &mut dyn Link,
            header: &Header,
            msg: &[u8],
            raw: bool,
        ) -> Result<()> {
            let (header, seq) = (*header, header.seq);
            let what = self.tamper.filter(|&(_, at)| at == seq).map(|(t, _)| t);
            match what {
                None => put(link, &header, msg, raw)?,
                Some(Tamper::Drop) => {}
                Some(Tamper::Dup) => {
                    put(link, &header, msg, raw)?;
                    put(link, &header, msg, raw)?;
                }
                Some(Tamper::Swap) => {
                    self.held = Some((header, msg.to_vec()));
                    return Ok(());
                }
                Some(Tamper::Flip) => {
                    let mut bad = msg.to_vec();
                    let at = (bad.len() / 2).max(8).min(bad.len() - 1);
                    bad[at] ^= 0x01;
                    put(
                        link,
                        &Header::for_payload(FrameKind::Data, seq, &bad),
                        &bad,
                        raw,
                    )?;
                }
                Some(t) if raw => {
                    // No header to garble: sent as it is.
                    let _ = t;
                    put(link, &header, msg, raw)?;
                }
                Some(Tamper::Magic) => {
                    let mut v = header.encode().to_vec();
                    v[0] ^= 0x20;
                    v.extend_from_slice(msg);
                    link.send_raw(&v)?;
                }
                Some(t) => {
                    let (h, body) = garbled(t, &header, msg);
                    link.send(&h, body)?;
                }
            }
            if let Some((h, m)) = self.held.take() {
                put(link, &h, &m, raw)?;
            }
            Ok(())
        }
    }

    fn put(link: &mut dyn Link, header: &Header, msg: &[u8], raw: bool) -> Result<()> {
        if raw {
            link.send_raw(msg)
        } else {
            link.send(header, msg)
        }
    }

    /// A header that lies in the way `t` says, and the payload bytes that go with it.
    fn garbled<'a>(t: Tamper, header: &Header, msg: &'a [u8]) -> (Header, &'a [u8]) {
        let mut h = *header;
        let mut body = msg;
        match t {
            Tamper::Crc => h.crc ^= 1,
            Tamper::Length => h.len += 1,
            Tamper::Truncate => body = &msg[..msg.len() / 2],
            _ => {}
        }
        (h, body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_payloads_are_reproducible_and_distinct() {
        let (mut a, mut b, mut c) = ([0u8; 64], [0u8; 64], [0u8; 64]);
        fill_generated(1, 5, &mut a);
        fill_generated(1, 5, &mut b);
        fill_generated(1, 6, &mut c);
        assert_eq!(a, b);
        assert_ne!(a, c);
        fill_generated(2, 5, &mut c);
        assert_ne!(a, c);
    }

    #[test]
    fn generated_payloads_fill_the_same_in_pieces() {
        let mut whole = [0u8; 100];
        fill_generated(3, 9, &mut whole);
        let mut parts = [0u8; 100];
        let mut g = PayloadGen::new(3, 9);
        g.fill(&mut parts[..8]);
        g.fill(&mut parts[8..64]);
        g.fill(&mut parts[64..]);
        assert_eq!(whole, parts);
        // No two words of a message alike, and no word repeated in the next message.
        let mut next = [0u8; 100];
        fill_generated(3, 10, &mut next);
        let words = |b: &[u8]| b.chunks_exact(8).map(|w| w.to_vec()).collect::<Vec<_>>();
        let (a, b) = (words(&whole), words(&next));
        for (i, w) in a.iter().enumerate() {
            assert!(!a[i + 1..].contains(w) && !b.contains(w));
        }
    }

    /// `matches` agrees with the generated bytes at every length (whole words, a partial
    /// last word, several blocks), and any one flipped byte fails it.
    #[test]
    fn matches_checks_every_byte() {
        for len in [0usize, 1, 7, 8, 9, 63, 64, 65, 511, 512, 513, 1500] {
            let mut buf = vec![0u8; len];
            fill_generated(4, 2, &mut buf);
            assert!(PayloadGen::new(4, 2).matches(&buf), "{len}");
            if len > 0 {
                assert!(!PayloadGen::new(4, 3).matches(&buf) || len < 4, "{len}");
            }
            for at in 0..len {
                buf[at] ^= 0x80;
                assert!(!PayloadGen::new(4, 2).matches(&buf), "{len} {at}");
                buf[at] ^= 0x80;
            }
        }
    }

    #[test]
    fn the_weyl_form_gives_the_same_words() {
        let g = PayloadGen::new(4, 11);
        let w = g.weyl();
        for i in [0u64, 1, 2, 7, 1000, u64::MAX / 8] {
            assert_eq!(w.word(i), g.word(i));
        }
    }

    #[test]
    fn tally_counts_lost_duplicated_corrupted() {
        let mut t = Tally::default();
        assert!(t.observe(0, true, "t").unwrap());
        assert!(t.observe(2, true, "t").unwrap()); // 1 lost
        assert!(!t.observe(2, true, "t").unwrap()); // duplicate
        assert!(!t.observe(3, false, "t").unwrap()); // corrupted
        assert!(t.observe(4, true, "t").unwrap());
        t.finish(7); // 5 and 6 never came
        let i = t.integrity;
        assert_eq!(
            (i.received, i.lost, i.duplicated, i.corrupted),
            (3, 3, 1, 1)
        );
        assert!(!i.ok());
    }

    #[test]
    fn unordered_tally_accepts_any_order_once() {
        let mut t = Tally::unordered();
        for seq in [3, 1, 0, 2, 5] {
            assert!(t.observe(seq, true, "t").unwrap(), "{seq}");
        }
        assert!(!t.observe(1, true, "t").unwrap()); // duplicate
        assert!(!t.observe(7, false, "t").unwrap()); // corrupted: seen, so not lost too
        t.finish(8); // 4 and 6 never came
        let i = t.integrity;
        assert_eq!(
            (i.received, i.lost, i.duplicated, i.corrupted),
            (5, 2, 1, 1)
        );
    }
}

#[cfg(test)]
mod receive_tests;
