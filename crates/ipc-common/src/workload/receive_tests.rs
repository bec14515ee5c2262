//! The receiving side in process: a fake [`Link`] hands `receive` crafted frames (or raw
//! messages) and keeps what it sends back, so every check of the receive and verify
//! paths is exercised without a peer process.

use super::*;
use crate::error::Cause;
use crate::frame::check_len;
use clap::Parser;
use std::collections::VecDeque;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: CommonArgs,
}

fn args(flags: &[&str]) -> CommonArgs {
    Cli::try_parse_from(std::iter::once("receiver").chain(flags.iter().copied()))
        .expect("test flags parse")
        .args
}

/// Frames (or raw messages) to deliver, in order; then the peer has closed.
#[derive(Default)]
struct Fake {
    frames: VecDeque<(Header, Vec<u8>)>,
    raw: VecDeque<Vec<u8>>,
    sent: Vec<(Header, Vec<u8>)>,
    raw_max: Option<usize>,
    reorders: bool,
    in_place: bool,
    /// The `max` of every `recv`, to see what bound the receiver asked for.
    maxes: Vec<usize>,
}

impl Fake {
    fn frame(mut self, h: Header, payload: &[u8]) -> Fake {
        self.frames.push_back((h, payload.to_vec()));
        self
    }

    fn hello(self, hello: Hello) -> Fake {
        let b = hello.encode();
        self.frame(Header::for_payload(FrameKind::Hello, 0, &b), &b)
    }

    fn generated(self, seed: u64, seq: u64, size: usize) -> Fake {
        let mut b = vec![0u8; size];
        fill_generated(seed, seq, &mut b);
        self.frame(data(seq, b.len()), &b)
    }

    fn end(self, count: u64) -> Fake {
        self.frame(Header::for_payload(FrameKind::End, count, &[]), &[])
    }
}

fn data(seq: u64, len: usize) -> Header {
    Header {
        kind: FrameKind::Data,
        len: len as u32,
        crc: 0,
        seq,
    }
}

fn stream(seed: u64, count: u64, size: u64) -> Hello {
    Hello {
        mode: Mode::Stream,
        payload: Payload::Generated { seed },
        count,
        size,
    }
}

impl Link for Fake {
    fn object(&self) -> &str {
        "fake link"
    }
    fn send(&mut self, header: &Header, payload: &[u8]) -> Result<()> {
        self.sent.push((*header, payload.to_vec()));
        Ok(())
    }
    fn recv(&mut self, buf: &mut Vec<u8>, max: usize) -> Result<Option<Header>> {
        self.maxes.push(max);
        let Some((h, p)) = self.frames.pop_front() else {
            return Ok(None);
        };
        check_len(&h, max, "fake link")?;
        buf.clear();
        buf.extend_from_slice(&p);
        Ok(Some(h))
    }
    fn send_raw(&mut self, bytes: &[u8]) -> Result<()> {
        self.sent.push((data(0, bytes.len()), bytes.to_vec()));
        Ok(())
    }
    fn recv_raw(&mut self, buf: &mut [u8]) -> Result<usize> {
        let Some(m) = self.raw.pop_front() else {
            return Ok(0);
        };
        assert!(m.len() <= buf.len(), "a raw message larger than the buffer");
        buf[..m.len()].copy_from_slice(&m);
        Ok(m.len())
    }
    fn raw_message_max(&self) -> Option<usize> {
        self.raw_max
    }
    fn reorders(&self) -> bool {
        self.reorders
    }
    fn in_place(&self) -> bool {
        self.in_place
    }
    fn recv_in_place(&mut self, seed: u64, size: usize) -> Result<(Header, bool)> {
        let (h, p) = self.frames.pop_front().expect("a frame in place");
        let mut want = vec![0u8; size];
        fill_generated(seed, h.seq, &mut want);
        Ok((h, p == want))
    }
}

fn integrity(r: &Report) -> (u64, u64, u64, u64) {
    let i = r.integrity.expect("the receiver checks");
    (i.received, i.lost, i.duplicated, i.corrupted)
}

fn d() -> Describe {
    Describe::new("fake")
}

/// `receive` over `l` fails with an error of `kind` whose call says `words`.
fn refused(l: &mut Fake, kind: Kind, words: &str) {
    let e = receive(l, &args(&[]), &d()).unwrap_err();
    assert_eq!(e.kind, kind, "{e}");
    assert!(e.call.contains(words), "{e}");
}

#[test]
fn a_clean_generated_stream_is_verified() {
    let mut l = Fake::default().hello(stream(7, 3, 16));
    for seq in 0..3 {
        l = l.generated(7, seq, 16);
    }
    let mut l = l.end(3);
    let r = receive(&mut l, &args(&[]), &d()).unwrap();
    assert_eq!(integrity(&r), (3, 0, 0, 0));
    assert!(r.verified);
    assert_eq!((r.messages, r.bytes, r.size), (3, 48, 16));
    assert_eq!(
        (r.role, r.payload, r.seed),
        ("receiver", "generated", Some(7))
    );
    assert_eq!(r.mode, Mode::Stream);
    // Nothing longer than a hello before the hello; the announced size after it.
    assert_eq!(l.maxes, vec![HELLO_LEN, 16, 16, 16, 16]);
    assert!(l.sent.is_empty(), "a stream receiver sends nothing back");
}

#[test]
fn wrong_bytes_short_messages_and_wrong_seeds_are_corrupted() {
    let mut bad = vec![0u8; 16];
    fill_generated(7, 1, &mut bad);
    bad[9] ^= 1;
    let mut short = vec![0u8; 8];
    fill_generated(7, 2, &mut short);
    let mut other_seed = vec![0u8; 16];
    fill_generated(8, 3, &mut other_seed);
    let mut l = Fake::default()
        .hello(stream(7, 5, 16))
        .generated(7, 0, 16)
        .frame(data(1, 16), &bad)
        .frame(data(2, 8), &short)
        .frame(data(3, 16), &other_seed)
        .generated(7, 4, 16)
        .end(5);
    let r = receive(&mut l, &args(&[]), &d()).unwrap();
    assert_eq!(integrity(&r), (2, 0, 0, 3));
    assert!(!r.verified);
    assert_eq!(r.bytes, 32, "only intact messages count");
}

#[test]
fn lost_and_duplicated_messages_are_counted() {
    let mut l = Fake::default()
        .hello(stream(1, 4, 8))
        .generated(1, 0, 8)
        .generated(1, 0, 8)
        .generated(1, 2, 8)
        .end(4);
    let r = receive(&mut l, &args(&[]), &d()).unwrap();
    assert_eq!(integrity(&r), (2, 2, 1, 0));
    assert!(!r.verified);
}

#[test]
fn a_reordering_link_checks_each_once_in_any_order() {
    let mut l = Fake {
        reorders: true,
        ..Fake::default()
    }
    .hello(stream(1, 3, 8))
    .generated(1, 2, 8)
    .generated(1, 0, 8)
    .generated(1, 1, 8)
    .end(3);
    let r = receive(&mut l, &args(&[]), &d()).unwrap();
    assert_eq!(integrity(&r), (3, 0, 0, 0));
    // The same order on an ordered link: 0 and 1 come after 2, as duplicates.
    let mut l = Fake::default()
        .hello(stream(1, 3, 8))
        .generated(1, 2, 8)
        .generated(1, 0, 8)
        .generated(1, 1, 8)
        .end(3);
    let r = receive(&mut l, &args(&[]), &d()).unwrap();
    assert_eq!(integrity(&r), (1, 2, 2, 0));
}

#[test]
fn pingpong_echoes_every_message_back() {
    let hello = Hello {
        mode: Mode::Pingpong,
        ..stream(3, 2, 8)
    };
    let mut l = Fake::default()
        .hello(hello)
        .generated(3, 0, 8)
        .generated(3, 1, 8)
        .end(2);
    let r = receive(&mut l, &args(&[]), &d()).unwrap();
    assert_eq!(integrity(&r), (2, 0, 0, 0));
    assert_eq!(r.mode, Mode::Pingpong);
    assert_eq!(l.sent.len(), 2);
    for (seq, (h, p)) in l.sent.iter().enumerate() {
        let mut want = vec![0u8; 8];
        fill_generated(3, seq as u64, &mut want);
        assert_eq!(h.kind, FrameKind::Echo);
        assert_eq!((h.seq, h.len), (seq as u64, 8));
        assert_eq!(p, &want);
    }
}

#[test]
fn a_file_payload_is_checked_by_its_crc_and_written_out() {
    let hello = Hello {
        payload: Payload::File,
        count: u64::MAX,
        ..stream(0, 0, 8)
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out");
    let mut crc_bad = Header::for_payload(FrameKind::Data, 2, b"zzzz");
    crc_bad.crc ^= 1;
    let mut l = Fake::default()
        .hello(hello)
        .frame(
            Header::for_payload(FrameKind::Data, 0, b"12345678"),
            b"12345678",
        )
        .frame(Header::for_payload(FrameKind::Data, 1, b"abc"), b"abc")
        .frame(crc_bad, b"zzzz")
        .end(3);
    let r = receive(&mut l, &args(&["--output", path.to_str().unwrap()]), &d()).unwrap();
    assert_eq!(integrity(&r), (2, 0, 0, 1));
    assert_eq!((r.payload, r.seed), ("file", None));
    assert_eq!(r.bytes, 11);
    assert_eq!(std::fs::read(&path).unwrap(), b"12345678abc");
}

#[test]
fn a_file_message_longer_than_the_announced_size_is_corrupted() {
    // A link that does not bound the payload by the header (a datagram or queue message
    // is what it is): the receiver's own `len <= size` check refuses it.
    struct Loose(Fake);
    impl Link for Loose {
        fn object(&self) -> &str {
            "loose"
        }
        fn send(&mut self, h: &Header, p: &[u8]) -> Result<()> {
            self.0.send(h, p)
        }
        fn recv(&mut self, buf: &mut Vec<u8>, _max: usize) -> Result<Option<Header>> {
            self.0.recv(buf, usize::MAX)
        }
        fn send_raw(&mut self, b: &[u8]) -> Result<()> {
            self.0.send_raw(b)
        }
        fn recv_raw(&mut self, buf: &mut [u8]) -> Result<usize> {
            self.0.recv_raw(buf)
        }
    }
    let hello = Hello {
        payload: Payload::File,
        ..stream(0, 2, 4)
    };
    let long = b"123456789";
    let mut l = Loose(
        Fake::default()
            .hello(hello)
            .frame(Header::for_payload(FrameKind::Data, 0, b"1234"), b"1234")
            .frame(Header::for_payload(FrameKind::Data, 1, long), long)
            .end(2),
    );
    let r = receive(&mut l, &args(&[]), &d()).unwrap();
    assert_eq!(integrity(&r), (1, 0, 0, 1));
    // Generated payloads: exactly `size` bytes or corrupted, even if they match.
    let mut eight = vec![0u8; 8];
    fill_generated(1, 1, &mut eight);
    let mut l = Loose(
        Fake::default()
            .hello(stream(1, 2, 4))
            .generated(1, 0, 4)
            .frame(data(1, 8), &eight)
            .end(2),
    );
    let r = receive(&mut l, &args(&[]), &d()).unwrap();
    assert_eq!(integrity(&r), (1, 0, 0, 1));
}

#[test]
fn the_first_frame_must_be_an_intact_hello() {
    let hello = stream(1, 1, 8).encode();
    let mut bad_crc = Header::for_payload(FrameKind::Hello, 0, &hello);
    bad_crc.crc ^= 1;
    let as_data = Header::for_payload(FrameKind::Data, 0, &hello);
    for first in [bad_crc, as_data] {
        let mut l = Fake::default().frame(first, &hello).end(0);
        refused(&mut l, Kind::Verify, "expected a hello frame first");
    }
    // An intact frame whose hello does not decode.
    let mut wrong = hello;
    wrong[4] = 9;
    let mut l = Fake::default()
        .frame(Header::for_payload(FrameKind::Hello, 0, &wrong), &wrong)
        .end(0);
    refused(&mut l, Kind::Verify, "mode");
    // Nothing at all: the sender is gone.
    refused(&mut Fake::default(), Kind::Peer, "after 0 messages");
}

#[test]
fn a_frame_other_than_data_or_end_after_the_hello_is_refused() {
    for kind in [FrameKind::Hello, FrameKind::Echo] {
        let mut l = Fake::default()
            .hello(stream(1, 1, 8))
            .frame(Header::for_payload(kind, 0, &[]), &[]);
        refused(&mut l, Kind::Verify, "after the hello");
    }
}

#[test]
fn a_sender_gone_before_its_end_frame_is_a_peer_error() {
    let mut l = Fake::default()
        .hello(stream(1, 3, 8))
        .generated(1, 0, 8)
        .generated(1, 1, 8);
    refused(&mut l, Kind::Peer, "after 2 messages");
}

#[test]
fn the_end_frame_counts_what_never_came_as_lost() {
    let mut l = Fake::default()
        .hello(stream(1, 5, 8))
        .generated(1, 0, 8)
        .end(5);
    let r = receive(&mut l, &args(&[]), &d()).unwrap();
    assert_eq!(integrity(&r), (1, 4, 0, 0));
}

#[test]
fn in_place_links_check_where_the_message_lies() {
    let mut bad = vec![0u8; 8];
    fill_generated(2, 1, &mut bad);
    bad[0] ^= 1;
    let mut l = Fake {
        in_place: true,
        ..Fake::default()
    }
    .hello(stream(2, 3, 8))
    .generated(2, 0, 8)
    .frame(data(1, 8), &bad)
    .generated(2, 2, 8)
    .end(3);
    let r = receive(&mut l, &args(&[]), &d()).unwrap();
    assert_eq!(integrity(&r), (2, 0, 0, 1));
    // Only the hello went through `recv`: the rest was checked in place.
    assert_eq!(l.maxes, vec![HELLO_LEN]);
}

#[test]
fn flags_that_contradict_the_hello_are_a_mismatch() {
    let hello = stream(5, 10, 64);
    let file = Hello {
        payload: Payload::File,
        count: u64::MAX,
        ..hello
    };
    let refused: [(&[&str], Hello, &str); 5] = [
        (&["--mode", "pingpong"], hello, "--mode pingpong"),
        (&["--size", "32"], hello, "--size 32"),
        (&["--count", "9"], hello, "--count 9"),
        (&["--seed", "6"], hello, "--seed 6"),
        (&["--seed", "5"], file, "--seed 5"),
    ];
    for (flags, hello, named) in refused {
        let e = check_agrees(&args(flags), &hello).unwrap_err();
        assert_eq!(
            (e.kind, e.cause),
            (Kind::Usage, Cause::Mismatch),
            "{flags:?}"
        );
        assert!(e.call.contains(named), "{flags:?}: {e}");
    }
    let agreed: [(&[&str], Hello); 6] = [
        (&[], hello),
        (&["--mode", "stream", "--size", "64"], hello),
        (&["--count", "10", "--seed", "5"], hello),
        (&["--count", "3"], file),
        (&["--size", "64"], file),
        (&["--mode", "stream"], file),
    ];
    for (flags, hello) in agreed {
        check_agrees(&args(flags), &hello).unwrap_or_else(|e| panic!("{flags:?}: {e}"));
    }
    // Through `receive`: refused before any message is read.
    let mut l = Fake::default().hello(hello).generated(5, 0, 64).end(1);
    let e = receive(&mut l, &args(&["--seed", "4"]), &d()).unwrap_err();
    assert_eq!(e.cause, Cause::Mismatch);
    assert_eq!(l.frames.len(), 2);
}

fn raw_link(msgs: &[Vec<u8>]) -> Fake {
    Fake {
        raw: msgs.iter().cloned().collect(),
        ..Fake::default()
    }
}

fn gen(seed: u64, seq: u64, len: usize) -> Vec<u8> {
    let mut b = vec![0u8; len];
    fill_generated(seed, seq, &mut b);
    b
}

#[test]
fn raw_messages_are_checked_against_the_seed() {
    let mut bad = gen(4, 1, 16);
    bad[15] ^= 1;
    let mut l = raw_link(&[gen(4, 0, 16), bad, gen(4, 2, 10)]);
    let r = receive(
        &mut l,
        &args(&["--raw", "--size", "16", "--seed", "4"]),
        &d(),
    )
    .unwrap();
    // A short last chunk is intact (a stream's last read).
    assert_eq!(integrity(&r), (2, 0, 0, 1));
    assert_eq!((r.messages, r.bytes), (3, 42));
    assert_eq!((r.payload, r.seed, r.size), ("raw", Some(4), 16));
    assert!(!r.verified);
    let mut l = raw_link(&[gen(4, 0, 16), gen(4, 1, 16)]);
    let r = receive(
        &mut l,
        &args(&["--raw", "--size", "16", "--seed", "4"]),
        &d(),
    )
    .unwrap();
    assert_eq!(integrity(&r), (2, 0, 0, 0));
    assert!(r.verified);
    // Without --seed: the default seed.
    let mut l = raw_link(&[gen(DEFAULT_SEED, 0, 16)]);
    let r = receive(&mut l, &args(&["--raw", "--size", "16"]), &d()).unwrap();
    assert_eq!(integrity(&r), (1, 0, 0, 0));
    assert_eq!(r.seed, Some(DEFAULT_SEED));
}

#[test]
fn a_raw_message_longer_than_the_size_is_taken_whole_and_corrupted() {
    let mut long = gen(1, 1, 16);
    long.extend_from_slice(&[0; 8]);
    let mut l = raw_link(&[gen(1, 0, 16), long, gen(1, 2, 16)]);
    l.raw_max = Some(64);
    let r = receive(&mut l, &args(&["--raw", "--size", "16"]), &d()).unwrap();
    assert_eq!(integrity(&r), (2, 0, 0, 1));
    assert_eq!(r.bytes, 56);
}

#[test]
fn raw_with_a_count_stops_there_or_reports_the_sender_gone() {
    let msgs = [gen(1, 0, 8), gen(1, 1, 8), gen(1, 2, 8)];
    let mut l = raw_link(&msgs);
    let r = receive(&mut l, &args(&["--raw", "--size", "8", "-n", "2"]), &d()).unwrap();
    assert_eq!(integrity(&r), (2, 0, 0, 0));
    assert_eq!(l.raw.len(), 1, "the third message is left unread");
    let mut l = raw_link(&msgs);
    let e = receive(&mut l, &args(&["--raw", "--size", "8", "-n", "4"]), &d()).unwrap_err();
    assert_eq!(e.kind, Kind::Peer);
    assert!(e.call.contains("after 3 messages"), "{e}");
    let mut l = raw_link(&msgs);
    let r = receive(&mut l, &args(&["--raw", "--size", "8", "-n", "3"]), &d()).unwrap();
    assert_eq!(integrity(&r), (3, 0, 0, 0));
}

#[test]
fn raw_output_writes_every_message_and_checks_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out");
    let mut l = raw_link(&[b"hello ".to_vec(), b"world".to_vec()]);
    let a = args(&["--raw", "--size", "6", "--output", path.to_str().unwrap()]);
    let r = receive(&mut l, &a, &d()).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), b"hello world");
    assert_eq!((r.messages, r.bytes, r.seed), (2, 11, None));
    assert!(r.integrity.is_none() && !r.verified);
}

/// A writer that records what reached it, and when it was flushed.
#[derive(Default)]
struct Recorder {
    bytes: Vec<u8>,
    flushed_at: Vec<usize>,
}

impl Write for Recorder {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.bytes.extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        self.flushed_at.push(self.bytes.len());
        Ok(())
    }
}

#[test]
fn a_short_message_goes_out_at_once_a_full_one_is_buffered() {
    let a = args(&[]);
    let mut o = Recorder::default();
    write_out(&mut o, b"1234", 4, &a).unwrap();
    assert!(
        o.flushed_at.is_empty(),
        "a full message waits in the buffer"
    );
    write_out(&mut o, b"ab", 4, &a).unwrap();
    assert_eq!(o.bytes, b"1234ab");
    assert_eq!(o.flushed_at, vec![6]);
}

#[test]
fn the_output_is_named_by_its_path_or_as_standard_output() {
    assert_eq!(
        output_name(&args(&["--output", "/x/y"])),
        "output file /x/y"
    );
    assert_eq!(output_name(&args(&["--output", "-"])), "standard output");
    assert_eq!(output_name(&args(&[])), "standard output");
}

#[test]
fn finish_maps_the_outcome_to_the_exit_code() {
    let report = |ok: bool, mode: Mode| {
        let mut r = base_report(&d(), "receiver", mode, "generated", 8, Some(1));
        r.integrity = Some(Integrity {
            received: 1,
            corrupted: u64::from(!ok),
            ..Integrity::default()
        });
        r
    };
    let plain = args(&["-q"]);
    let child = args(&["-q", "--child"]);
    assert_eq!(finish("t", &plain, Ok(None)), 0);
    assert_eq!(finish("t", &plain, Ok(Some(report(true, Mode::Stream)))), 0);
    assert_eq!(
        finish("t", &plain, Ok(Some(report(false, Mode::Stream)))),
        3
    );
    assert_eq!(
        finish("t", &child, Ok(Some(report(true, Mode::Pingpong)))),
        0
    );
    assert_eq!(
        finish("t", &child, Ok(Some(report(false, Mode::Pingpong)))),
        3
    );
    assert_eq!(
        finish("t", &child, Ok(Some(report(false, Mode::Stream)))),
        3
    );
    let e = Error::peer("x", "gone", "see");
    assert_eq!(finish("t", &plain, Err(e)), 4);
    assert_eq!(finish("t", &plain, Err(Error::usage("u", "r"))), 2);
}

#[test]
fn read_full_fills_across_short_reads_and_stops_at_the_end() {
    /// Hands out at most 3 bytes per read, after one interrupted read.
    struct Trickle(Vec<u8>, bool);
    impl Read for Trickle {
        fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
            if !self.1 {
                self.1 = true;
                return Err(io::ErrorKind::Interrupted.into());
            }
            let n = self.0.len().min(b.len()).min(3);
            b[..n].copy_from_slice(&self.0[..n]);
            self.0.drain(..n);
            Ok(n)
        }
    }
    let mut r = Trickle(b"abcdefgh".to_vec(), false);
    let mut buf = [0u8; 5];
    assert_eq!(read_full(&mut r, &mut buf).unwrap(), 5);
    assert_eq!(&buf, b"abcde");
    assert_eq!(read_full(&mut r, &mut buf).unwrap(), 3);
    assert_eq!(&buf[..3], b"fgh");
    assert_eq!(read_full(&mut r, &mut buf).unwrap(), 0);
    let mut r = Trickle(b"abcdefgh".to_vec(), false);
    assert_eq!(read_once(&mut r, &mut buf).unwrap(), 3);
    assert_eq!(&buf[..3], b"abc");
}

#[test]
fn the_generated_payload_is_pinned_word_for_word() {
    // Both sides regenerate it, so it is part of the protocol between two builds: a
    // change to the scramble must be a deliberate one (and a new protocol version).
    let words = |seed, seq, n: usize| {
        let mut b = vec![0u8; 8 * n];
        fill_generated(seed, seq, &mut b);
        b.chunks(8)
            .map(|w| u64::from_le_bytes(w.try_into().unwrap()))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        words(1, 0, 3),
        [
            0xdba0_fd1c_134b_f7c7,
            0x8c54_a23e_1457_bd36,
            0xfef5_d97e_0617_0b55
        ]
    );
    assert_eq!(
        words(7, 3, 2),
        [0x7cb2_8b23_84aa_df16, 0xf0e0_fff3_6e8a_1541]
    );
    let g = PayloadGen::new(7, 3);
    assert_eq!(
        (g.word(1), g.weyl().word(1)),
        (0xf0e0_fff3_6e8a_1541, 0xf0e0_fff3_6e8a_1541)
    );
    // A last piece shorter than a word is the word's first bytes.
    let mut tail = [0u8; 11];
    fill_generated(7, 3, &mut tail);
    assert_eq!(tail[8..], 0xf0e0_fff3_6e8a_1541u64.to_le_bytes()[..3]);
}

#[test]
fn an_input_is_live_when_it_is_a_fifo_or_a_terminal_like_device() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("file");
    std::fs::write(&file, b"x").unwrap();
    let live = |p: &std::path::Path| open_input(&DataPath::File(p.into())).unwrap().live;
    assert!(!live(&file), "a regular file fills whole messages");
    assert!(
        live(std::path::Path::new("/dev/null")),
        "a character device"
    );
    let fifo = dir.path().join("fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
    let f2 = fifo.clone();
    let writer = std::thread::spawn(move || std::fs::OpenOptions::new().write(true).open(f2));
    assert!(live(&fifo), "a FIFO");
    writer.join().unwrap().unwrap();
    let e = open_input(&DataPath::File(dir.path().join("missing")))
        .err()
        .unwrap();
    assert!(e.remedy.contains("--input"), "{e}");
}

#[test]
fn an_input_error_is_reported_and_a_full_buffer_costs_no_more_reads() {
    /// Fails its first read (not an interruption), then hands out bytes; counts reads.
    struct Failing(bool, usize);
    impl Read for Failing {
        fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
            self.1 += 1;
            if !self.0 {
                self.0 = true;
                return Err(io::ErrorKind::BrokenPipe.into());
            }
            assert!(!b.is_empty(), "a read into a full buffer");
            b.fill(1);
            Ok(b.len())
        }
    }
    let mut buf = [0u8; 4];
    let e = read_once(&mut Failing(false, 0), &mut buf).unwrap_err();
    assert_eq!(e.call, "read");
    let e = read_full(&mut Failing(false, 0), &mut buf).unwrap_err();
    assert_eq!(e.call, "read");
    let mut r = Failing(true, 0);
    assert_eq!(read_full(&mut r, &mut buf).unwrap(), 4);
    assert_eq!(r.1, 1, "one read fills it");
}
