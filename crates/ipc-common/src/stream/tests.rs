//! Framing over a real pipe, in process: crafted bytes written to one end, frames read
//! from the other. Anything that could hang runs on a thread with a deadline, so a
//! broken wait fails the test instead of stalling it.

use super::*;
use crate::error::{Cause, Kind};
use crate::frame::{FrameKind, MAGIC};
use std::sync::mpsc;
use std::thread;

const SHORT: Duration = Duration::from_millis(150);

fn pipe() -> (OwnedFd, OwnedFd) {
    nix::unistd::pipe().expect("pipe")
}

/// A receiving stream, and the raw write end to feed it bytes.
fn reader(timeout: Duration) -> (FdStream, File) {
    let (rd, wr) = pipe();
    (
        FdStream::new("test pipe", Some(rd), None, timeout).unwrap(),
        File::from(wr),
    )
}

/// Run `f` on a thread; fail if it does not finish within a few seconds.
fn within<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(10))
        .expect("finished within 10 s (a wait that never ends?)")
}

fn frame(kind: FrameKind, seq: u64, payload: &[u8]) -> Vec<u8> {
    let mut v = Header::for_payload(kind, seq, payload).encode().to_vec();
    v.extend_from_slice(payload);
    v
}

fn payload(len: usize, salt: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31) ^ (i >> 8) as u8 ^ salt)
        .collect()
}

#[test]
fn frames_written_together_arrive_one_by_one_then_end_of_file() {
    let (mut s, mut w) = reader(Duration::from_secs(5));
    let a = payload(100, 1);
    let b = payload(3, 2);
    let mut bytes = frame(FrameKind::Data, 0, &a);
    bytes.extend(frame(FrameKind::Data, 1, &b));
    bytes.extend(frame(FrameKind::End, 2, &[]));
    w.write_all(&bytes).unwrap();
    drop(w);
    let mut buf = Vec::new();
    let h = s.recv(&mut buf, 100).unwrap().unwrap();
    assert_eq!((h.kind, h.seq, h.len), (FrameKind::Data, 0, 100));
    assert_eq!(buf, a);
    assert!(h.payload_ok(&buf));
    let h = s.recv(&mut buf, 100).unwrap().unwrap();
    assert_eq!((h.seq, buf.as_slice()), (1, b.as_slice()));
    let h = s.recv(&mut buf, 100).unwrap().unwrap();
    assert_eq!((h.kind, h.seq, buf.len()), (FrameKind::End, 2, 0));
    assert!(s.recv(&mut buf, 100).unwrap().is_none());
    assert_eq!(s.object(), "test pipe");
}

#[test]
fn a_reused_buffer_reads_the_whole_payload_and_stays_in_step() {
    let (mut s, mut w) = reader(Duration::from_secs(5));
    let a = payload(1000, 3);
    let b = payload(999, 4);
    let mut bytes = frame(FrameKind::Data, 0, &a);
    bytes.extend(frame(FrameKind::Data, 1, &b));
    w.write_all(&bytes).unwrap();
    drop(w);
    // Room for the whole payload already: it is read in one piece.
    let mut buf = Vec::with_capacity(4096);
    s.recv(&mut buf, 1000).unwrap().unwrap();
    assert_eq!(buf, a);
    let h = s.recv(&mut buf, 1000).unwrap().unwrap();
    assert_eq!((h.seq, buf.as_slice()), (1, b.as_slice()));
    assert!(s.recv(&mut buf, 1000).unwrap().is_none());
}

#[test]
fn a_payload_larger_than_the_pipe_and_the_read_buffer_arrives_whole() {
    let (rd, wr) = pipe();
    let big = payload(3 * READ_BUF + 12345, 5);
    let small = payload(10, 6);
    let (b2, s2) = (big.clone(), small.clone());
    let writer = thread::spawn(move || {
        let mut w = FdStream::new("w", None, Some(wr), Duration::from_secs(5)).unwrap();
        w.send(&Header::for_payload(FrameKind::Data, 0, &b2), &b2)
            .unwrap();
        w.send(&Header::for_payload(FrameKind::Data, 1, &s2), &s2)
            .unwrap();
        w.send_raw(&s2).unwrap();
        w.close();
    });
    let mut s = FdStream::new("r", Some(rd), None, Duration::from_secs(5)).unwrap();
    let mut buf = Vec::new();
    let h = within(move || {
        let h = s.recv(&mut buf, big.len()).unwrap().unwrap();
        assert_eq!(buf.len(), big.len());
        assert!(buf == big, "payload bytes differ");
        let h2 = s.recv(&mut buf, 10).unwrap().unwrap();
        assert_eq!((h2.seq, buf.as_slice()), (1, small.as_slice()));
        let mut raw = [0u8; 10];
        assert_eq!(s.recv_raw(&mut raw).unwrap(), 10);
        assert_eq!(raw.as_slice(), small.as_slice());
        assert!(s.await_eof().unwrap());
        h
    });
    assert_eq!(h.len as usize, 3 * READ_BUF + 12345);
    writer.join().unwrap();
}

#[test]
fn a_header_announcing_much_reserves_only_what_arrives() {
    let (mut s, mut w) = reader(Duration::from_secs(5));
    let h = Header {
        kind: FrameKind::Data,
        len: 200 << 20,
        crc: 0,
        seq: 0,
    };
    w.write_all(&h.encode()).unwrap();
    w.write_all(&[7u8; 10]).unwrap();
    drop(w);
    let mut buf = Vec::new();
    let e = s.recv(&mut buf, 256 << 20).unwrap_err();
    assert_eq!(e.kind, Kind::Peer);
    assert!(e.call.contains("in the middle of a frame"), "{e}");
    assert!(
        buf.capacity() <= 4 * READ_BUF,
        "{} reserved",
        buf.capacity()
    );
}

#[test]
fn a_stream_cut_mid_frame_is_a_peer_error() {
    let whole = frame(FrameKind::Data, 0, &payload(50, 7));
    for (cut, says) in [
        (10, "end of file in the middle of a frame (10 of 24 bytes)"),
        (HEADER_LEN, "end of file after a frame header"),
        (
            HEADER_LEN + 20,
            "end of file in the middle of a frame (20 of 50 bytes)",
        ),
    ] {
        for cap in [0, 64] {
            let (mut s, mut w) = reader(Duration::from_secs(5));
            w.write_all(&whole[..cut]).unwrap();
            drop(w);
            let mut buf = Vec::with_capacity(cap);
            let e = s.recv(&mut buf, 50).unwrap_err();
            assert_eq!(e.kind, Kind::Peer, "{e}");
            assert!(e.call.contains(says), "cut at {cut}: {e}");
        }
    }
}

#[test]
fn bad_headers_and_oversized_frames_are_refused() {
    let mut bad = frame(FrameKind::Data, 0, b"abc");
    bad[0..4].copy_from_slice(&(MAGIC ^ 1).to_le_bytes());
    let (mut s, mut w) = reader(Duration::from_secs(5));
    w.write_all(&bad).unwrap();
    let e = s.recv(&mut Vec::new(), 10).unwrap_err();
    assert_eq!(e.kind, Kind::Verify);
    assert!(e.call.contains("bad frame header"), "{e}");
    let (mut s, mut w) = reader(Duration::from_secs(5));
    w.write_all(&frame(FrameKind::Data, 0, b"abcd")).unwrap();
    let e = s.recv(&mut Vec::new(), 3).unwrap_err();
    assert_eq!(e.kind, Kind::Verify);
    assert!(e.call.contains("announces 4 payload bytes"), "{e}");
}

#[test]
fn a_reader_waits_for_bytes_that_come_late() {
    let (mut s, mut w) = reader(Duration::from_secs(5));
    let f = frame(FrameKind::Data, 9, b"late");
    let writer = thread::spawn(move || {
        thread::sleep(Duration::from_millis(100));
        w.write_all(&f[..5]).unwrap();
        thread::sleep(Duration::from_millis(50));
        w.write_all(&f[5..]).unwrap();
    });
    let (h, buf) = within(move || {
        let mut buf = Vec::new();
        (s.recv(&mut buf, 4).unwrap().unwrap(), buf)
    });
    assert_eq!((h.seq, buf.as_slice()), (9, b"late".as_slice()));
    writer.join().unwrap();
}

#[test]
fn a_reader_with_nothing_arriving_stalls_after_the_timeout() {
    let (mut s, w) = reader(SHORT);
    let start = Instant::now();
    let e = within(move || s.recv(&mut Vec::new(), 4).unwrap_err());
    let waited = start.elapsed();
    drop(w);
    assert_eq!((e.kind, e.cause), (Kind::Peer, Cause::Timeout), "{e}");
    assert!(e.call.contains("nothing arrived"), "{e}");
    assert!(waited >= SHORT, "gave up after {waited:?}");
}

#[test]
fn a_fifo_reader_waits_for_its_writer_to_open() {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fifo");
    nix::unistd::mkfifo(&path, nix::sys::stat::Mode::S_IRWXU).unwrap();
    let open_rd = || -> OwnedFd {
        std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&path)
            .unwrap()
            .into()
    };
    // Nobody opens it: a stall naming the missing writer, after the timeout.
    let s = FdStream::new("fifo", Some(open_rd()), None, SHORT).unwrap();
    let start = Instant::now();
    let e = within(move || s.await_writer().recv(&mut Vec::new(), 4).unwrap_err());
    assert_eq!(e.cause, Cause::Timeout, "{e}");
    assert!(e.call.contains("did not open its end"), "{e}");
    assert!(start.elapsed() >= SHORT);
    // The writer comes late: its frame arrives.
    let s = FdStream::new("fifo", Some(open_rd()), None, Duration::from_secs(5)).unwrap();
    let p = path.clone();
    let writer = thread::spawn(move || {
        thread::sleep(Duration::from_millis(100));
        let mut w = std::fs::OpenOptions::new().write(true).open(p).unwrap();
        w.write_all(&frame(FrameKind::End, 4, &[])).unwrap();
    });
    let h = within(move || {
        let mut s = s.await_writer();
        let h = s.recv(&mut Vec::new(), 4).unwrap();
        // Only the first read waits for a writer: now a closed writer is end of file.
        assert!(s.await_eof().unwrap());
        h
    });
    assert_eq!(h.map(|h| (h.kind, h.seq)), Some((FrameKind::End, 4)));
    writer.join().unwrap();
}

#[test]
fn await_eof_tells_end_of_file_from_more_bytes() {
    let (mut s, mut w) = reader(Duration::from_secs(5));
    w.write_all(b"x").unwrap();
    assert!(!s.await_eof().unwrap());
    drop(w);
    assert!(s.await_eof().unwrap());
}

#[test]
fn raw_reads_fill_the_buffer_across_writes_until_end_of_file() {
    let (mut s, mut w) = reader(Duration::from_secs(5));
    let writer = thread::spawn(move || {
        for part in [&b"ab"[..], b"cde", b"fgh"] {
            w.write_all(part).unwrap();
            thread::sleep(Duration::from_millis(20));
        }
    });
    let got = within(move || {
        let mut buf = [0u8; 6];
        let n = s.recv_raw(&mut buf).unwrap();
        let mut rest = [0u8; 6];
        let m = s.recv_raw(&mut rest).unwrap();
        (buf[..n].to_vec(), rest[..m].to_vec())
    });
    assert_eq!(got, (b"abcdef".to_vec(), b"gh".to_vec()));
    writer.join().unwrap();
}

#[test]
fn a_writer_waits_while_the_pipe_is_full_then_stalls_or_fails() {
    let (rd, wr) = pipe();
    let mut w = FdStream::new("w", None, Some(wr), Duration::from_secs(5)).unwrap();
    let big = payload(4 * READ_BUF, 8);
    let b2 = big.clone();
    // A slow reader: the writer must wait for room several times.
    let reader = thread::spawn(move || {
        let mut r = File::from(rd);
        let mut got = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            thread::sleep(Duration::from_millis(1));
            match r.read(&mut chunk) {
                Ok(0) => break got,
                Ok(n) => got.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("{e}"),
            }
        }
    });
    let w = within(move || {
        w.send_raw(&b2).unwrap();
        w
    });
    w.close();
    assert!(reader.join().unwrap() == big);
    // A reader that takes nothing: the writer stalls after the timeout.
    let (rd, wr) = pipe();
    let mut w = FdStream::new("w", None, Some(wr), SHORT).unwrap();
    let start = Instant::now();
    let e = within(move || w.send_raw(&payload(4 * READ_BUF, 9)).unwrap_err());
    assert_eq!(e.cause, Cause::Timeout, "{e}");
    assert!(e.call.contains("the reader took nothing"), "{e}");
    assert!(start.elapsed() >= SHORT);
    // The reader gone: the write fails at once.
    drop(rd);
    let (rd, wr) = pipe();
    drop(rd);
    let mut w = FdStream::new("w", None, Some(wr), Duration::from_secs(5)).unwrap();
    let e = within(move || w.send_raw(b"x").unwrap_err());
    assert!(e.call.contains("write"), "{e}");
    assert!(e.source.is_some(), "{e}");
}

#[test]
fn a_read_error_is_reported_not_retried() {
    // read(2) on a directory fails with EISDIR.
    let dir = File::open("/").unwrap();
    let mut s = FdStream::new("dir", Some(dir.into()), None, Duration::from_secs(5)).unwrap();
    let e = within(move || s.recv(&mut Vec::new(), 4).unwrap_err());
    assert_eq!(e.kind, Kind::Runtime, "{e}");
    assert_eq!(e.source.and_then(|s| s.raw_os_error()), Some(libc::EISDIR));
}

#[test]
fn one_way_streams_refuse_the_other_direction() {
    let (rd, wr) = pipe();
    let mut r = FdStream::new("r", Some(rd), None, SHORT).unwrap();
    let mut w = FdStream::new("w", None, Some(wr), SHORT).unwrap();
    assert_eq!(r.send_raw(b"x").unwrap_err().kind, Kind::Usage);
    assert_eq!(w.recv(&mut Vec::new(), 1).unwrap_err().kind, Kind::Usage);
}

#[test]
fn descriptors_are_made_non_blocking_and_close_on_exec_as_asked() {
    let (rd, wr) = pipe();
    let fl =
        |fd: &OwnedFd| OFlag::from_bits_truncate(fcntl(fd.as_raw_fd(), FcntlArg::F_GETFL).unwrap());
    let fd_fl = |fd: &OwnedFd| {
        FdFlag::from_bits_truncate(fcntl(fd.as_raw_fd(), FcntlArg::F_GETFD).unwrap())
    };
    assert!(!fl(&rd).contains(OFlag::O_NONBLOCK));
    set_nonblocking(rd.as_fd(), "rd").unwrap();
    assert!(fl(&rd).contains(OFlag::O_NONBLOCK));
    // Again: it stays so (a flag set, not toggled).
    set_nonblocking(rd.as_fd(), "rd").unwrap();
    assert!(fl(&rd).contains(OFlag::O_NONBLOCK));
    // The access mode is kept.
    set_nonblocking(wr.as_fd(), "wr").unwrap();
    assert!(fl(&wr).contains(OFlag::O_WRONLY | OFlag::O_NONBLOCK));
    set_cloexec(rd.as_fd(), true, "rd").unwrap();
    assert!(fd_fl(&rd).contains(FdFlag::FD_CLOEXEC));
    set_cloexec(rd.as_fd(), false, "rd").unwrap();
    assert!(!fd_fl(&rd).contains(FdFlag::FD_CLOEXEC));
    // FdStream::new makes both ends non-blocking.
    let (rd, wr) = pipe();
    let (r2, w2) = (rd.try_clone().unwrap(), wr.try_clone().unwrap());
    let _s = FdStream::new("s", Some(rd), Some(wr), SHORT).unwrap();
    assert!(fl(&r2).contains(OFlag::O_NONBLOCK) && fl(&w2).contains(OFlag::O_NONBLOCK));
}

#[test]
fn wait_ready_reports_readiness_or_none_after_the_timeout() {
    let (rd, wr) = pipe();
    let start = Instant::now();
    let (rd, got) = within(move || {
        let got = wait_ready(rd.as_fd(), PollFlags::POLLIN, SHORT, "p").unwrap();
        (rd, got)
    });
    assert_eq!(got, None);
    assert!(start.elapsed() >= SHORT);
    File::from(wr).write_all(b"x").unwrap();
    let got = wait_ready(rd.as_fd(), PollFlags::POLLIN, SHORT, "p").unwrap();
    assert!(
        got.is_some_and(|f| f.contains(PollFlags::POLLIN)),
        "{got:?}"
    );
}

#[test]
fn a_full_raw_buffer_returns_at_once_without_waiting_for_more() {
    // The writer stays open and quiet: a reader that asked for more than the buffer
    // holds would wait for it until the timeout.
    let (mut s, mut w) = reader(Duration::from_millis(500));
    w.write_all(b"abcd").unwrap();
    let start = Instant::now();
    let got = within(move || {
        let mut buf = [0u8; 4];
        let n = s.recv_raw(&mut buf).map_err(|e| e.to_string());
        (n, buf)
    });
    assert_eq!(got, (Ok(4), *b"abcd"));
    assert!(start.elapsed() < Duration::from_millis(400));
    drop(w);
}
