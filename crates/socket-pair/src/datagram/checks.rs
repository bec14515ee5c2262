//! The receive checks of [`MsgLink`] over a real socket pair, fed crafted messages:
//! each length, header and sender check on its own, and each bound at its edge.

use super::*;
use ipc_common::frame::{FrameKind, Payload, HELLO_LEN, MAGIC};
use std::os::fd::AsFd;

const T: Duration = Duration::from_secs(5);

fn links(ty: SocketType, timeout: Duration) -> (MsgLink, MsgLink) {
    let (a, b) = crate::pair::pair(ty).unwrap();
    (
        MsgLink::new(a, ty, "tx".into(), timeout, Some(4096)).unwrap(),
        MsgLink::new(b, ty, "rx".into(), timeout, None).unwrap(),
    )
}

const BOTH: [SocketType; 2] = [SocketType::Dgram, SocketType::Seqpacket];

fn framed(h: &Header, payload: &[u8]) -> Vec<u8> {
    let mut v = h.encode().to_vec();
    v.extend_from_slice(payload);
    v
}

#[test]
fn a_message_of_exactly_the_bound_is_taken_with_any_buffer() {
    for ty in BOTH {
        let (mut tx, mut rx) = links(ty, T);
        let p = vec![5u8; 100];
        for cap in [0, 100, 1000] {
            tx.send(&Header::for_payload(FrameKind::Data, 1, &p), &p)
                .unwrap();
            let mut buf = Vec::with_capacity(cap);
            let h = rx.recv(&mut buf, 100).unwrap().unwrap();
            assert!(h.payload_ok(&buf) && buf == p, "{ty:?} capacity {cap}");
        }
        // Shorter than the bound, into a buffer as large as the bound.
        tx.send(&Header::for_payload(FrameKind::Data, 2, &p[..10]), &p[..10])
            .unwrap();
        let mut buf = Vec::with_capacity(100);
        let h = rx.recv(&mut buf, 100).unwrap().unwrap();
        assert_eq!((h.seq, buf.len()), (2, 10));
    }
}

#[test]
fn one_byte_over_the_bound_is_refused_with_any_buffer() {
    for ty in BOTH {
        let (mut tx, mut rx) = links(ty, T);
        let p = vec![5u8; 101];
        for cap in [0, 100, 1000] {
            tx.send(&Header::for_payload(FrameKind::Data, 1, &p), &p)
                .unwrap();
            let e = rx.recv(&mut Vec::with_capacity(cap), 100).unwrap_err();
            assert_eq!(e.kind, Kind::Verify, "{ty:?} capacity {cap}: {e}");
            assert!(e.call.contains("101 payload bytes"), "{e}");
        }
        // A body over the bound under a header that lies about it, or no header at all.
        let mut lie = framed(&Header::for_payload(FrameKind::Data, 1, b"ab"), &p);
        tx.send_raw(&lie).unwrap();
        let e = rx.recv(&mut Vec::new(), 100).unwrap_err();
        assert!(e.call.contains("longer than the 124 bytes allowed"), "{e}");
        lie[0] ^= 1;
        tx.send_raw(&lie).unwrap();
        let e = rx.recv(&mut Vec::new(), 100).unwrap_err();
        assert!(e.call.contains("longer than the 124 bytes allowed"), "{e}");
    }
}

#[test]
fn a_message_must_hold_a_whole_intact_header_and_what_it_announces() {
    for ty in BOTH {
        let (mut tx, mut rx) = links(ty, T);
        let h = Header::for_payload(FrameKind::Data, 3, b"abcde");
        // Shorter than a header (one byte short of it, too).
        for n in [1, HEADER_LEN - 1] {
            tx.send_raw(&framed(&h, b"abcde")[..n]).unwrap();
            let e = rx.recv(&mut Vec::new(), 100).unwrap_err();
            assert!(e.call.contains("shorter than the 24-byte"), "{n}: {e}");
        }
        // A header alone, announcing 5 bytes; then 3 of the 5; then 6.
        for body in [&b""[..], b"abc", b"abcdef"] {
            tx.send_raw(&framed(&h, body)).unwrap();
            let e = rx.recv(&mut Vec::new(), 100).unwrap_err();
            let says = format!("carries {} payload bytes but its header says 5", body.len());
            assert!(e.call.contains(&says), "{e}");
        }
        let mut bad = framed(&h, b"abcde");
        bad[0..4].copy_from_slice(&(MAGIC ^ 1).to_le_bytes());
        tx.send_raw(&bad).unwrap();
        let e = rx.recv(&mut Vec::new(), 100).unwrap_err();
        assert!(e.call.contains("bad frame header"), "{e}");
        // Still in step: an intact frame next is taken.
        tx.send(&h, b"abcde").unwrap();
        let mut buf = Vec::new();
        assert_eq!(rx.recv(&mut buf, 100).unwrap(), Some(h));
        assert_eq!(buf, b"abcde");
    }
}

#[test]
fn an_empty_datagram_is_the_end() {
    let (mut tx, mut rx) = links(SocketType::Dgram, T);
    tx.end_raw().unwrap();
    tx.end_raw().unwrap();
    let mut buf = vec![1u8; 3];
    assert_eq!(rx.recv(&mut buf, 100).unwrap(), None);
    assert!(buf.is_empty());
    assert_eq!(rx.recv_raw(&mut [0u8; 8]).unwrap(), 0);
    // Seqpacket: no end mark is sent; the close is the end.
    let (mut tx, mut rx) = links(SocketType::Seqpacket, Duration::from_millis(100));
    tx.end_raw().unwrap();
    let e = rx.recv_raw(&mut [0u8; 8]).unwrap_err();
    assert_eq!(e.cause, Cause::Timeout, "{e}");
    drop(tx);
    assert_eq!(rx.recv_raw(&mut [0u8; 8]).unwrap(), 0);
}

#[test]
fn the_end_mark_finding_nobody_is_no_failure() {
    let (mut tx, rx) = links(SocketType::Dgram, T);
    drop(rx);
    tx.end_raw().unwrap();
    // A data datagram finding nobody is.
    let e = tx.send_raw(b"x").unwrap_err();
    assert_eq!(e.cause, Cause::PeerGone, "{e}");
}

#[test]
fn raw_messages_up_to_the_buffer_are_taken_longer_ones_refused() {
    for ty in BOTH {
        let (mut tx, mut rx) = links(ty, T);
        tx.send_raw(&[7u8; 10]).unwrap();
        let mut buf = [0u8; 10];
        assert_eq!(rx.recv_raw(&mut buf).unwrap(), 10);
        assert_eq!(buf, [7u8; 10]);
        tx.send_raw(&[7u8; 11]).unwrap();
        let e = rx.recv_raw(&mut buf).unwrap_err();
        assert_eq!(e.cause, Cause::Mismatch, "{e}");
        assert!(e.call.contains("a message of 11 bytes"), "{e}");
    }
}

#[test]
fn a_silent_peer_is_named_by_the_socket_type() {
    for (ty, says) in [
        (SocketType::Dgram, "no datagram arrived"),
        (SocketType::Seqpacket, "nothing arrived"),
    ] {
        let (_tx, mut rx) = links(ty, Duration::from_millis(100));
        let e = rx.recv(&mut Vec::new(), 10).unwrap_err();
        assert_eq!(e.cause, Cause::Timeout);
        assert!(e.call.starts_with(says), "{ty:?}: {e}");
    }
}

#[test]
fn datagrams_of_another_uid_are_dropped_ours_taken() {
    let (a, b) = crate::pair::pair(SocketType::Dgram).unwrap();
    so::setsockopt(&b, sockopt::PassCred, &true).unwrap();
    let short = Duration::from_millis(150);
    let mut tx = MsgLink::new(a, SocketType::Dgram, "tx".into(), T, None).unwrap();
    let mut rx = MsgLink::new(b, SocketType::Dgram, "rx".into(), short, None).unwrap();
    let h = Header::for_payload(FrameKind::Data, 0, b"ok");
    // Ours: taken, whether peeked at first (small buffer) or not.
    rx.only_from(trust::me());
    for cap in [0, 10] {
        tx.send(&h, b"ok").unwrap();
        let mut buf = Vec::with_capacity(cap);
        assert_eq!(rx.recv(&mut buf, 10).unwrap(), Some(h));
    }
    tx.send_raw(b"raw").unwrap();
    assert_eq!(rx.recv_raw(&mut [0u8; 8]).unwrap(), 3);
    // Another uid's, as far as this receiver is concerned: dropped, so nothing arrives;
    // and the peeked ones are taken off the queue, not seen again.
    rx.only_from(trust::me().wrapping_add(1));
    for cap in [0, 10] {
        tx.send(&h, b"ok").unwrap();
        let e = rx.recv(&mut Vec::with_capacity(cap), 10).unwrap_err();
        assert_eq!(e.cause, Cause::Timeout, "capacity {cap}: {e}");
    }
    rx.only_from(trust::me());
    tx.send(&Header::for_payload(FrameKind::End, 1, b""), b"")
        .unwrap();
    let got = rx.recv(&mut Vec::new(), 10).unwrap().unwrap();
    assert_eq!((got.kind, got.seq), (FrameKind::End, 1));
}

#[test]
fn a_datagram_without_credentials_is_nobodys() {
    let (a, b) = crate::pair::pair(SocketType::Dgram).unwrap();
    so::send(a.as_raw_fd(), b"x", MsgFlags::empty()).unwrap();
    let mut none: [IoSliceMut<'_>; 0] = [];
    let mut space = nix::cmsg_space!(libc::ucred);
    let m = so::recvmsg::<()>(
        b.as_raw_fd(),
        &mut none,
        Some(&mut space),
        MsgFlags::empty(),
    )
    .unwrap();
    assert_eq!(sender_cred(&m), (u32::MAX, 0));
    // With SO_PASSCRED: ours, and our pid.
    so::setsockopt(&b, sockopt::PassCred, &true).unwrap();
    so::send(a.as_raw_fd(), b"x", MsgFlags::empty()).unwrap();
    let mut space = nix::cmsg_space!(libc::ucred);
    let m = so::recvmsg::<()>(
        b.as_raw_fd(),
        &mut none,
        Some(&mut space),
        MsgFlags::empty(),
    )
    .unwrap();
    assert_eq!(sender_cred(&m), (trust::me(), std::process::id() as i32));
}

#[test]
fn the_send_buffer_is_raised_to_fit_a_frame_or_the_limit_named() {
    let (a, _b) = crate::pair::pair(SocketType::Dgram).unwrap();
    let have = so::getsockopt(&a, sockopt::SndBuf).unwrap();
    // What fits already leaves the buffer alone.
    reserve(&a, "a", have - HEADER_LEN - UNIX_DGRAM_OVERHEAD).unwrap();
    assert_eq!(so::getsockopt(&a, sockopt::SndBuf).unwrap(), have);
    let payload = have + 1000;
    reserve(&a, "a", payload).unwrap();
    let now = so::getsockopt(&a, sockopt::SndBuf).unwrap();
    assert!(now >= HEADER_LEN + payload + UNIX_DGRAM_OVERHEAD, "{now}");
    if let Ok(max) = wmem_max().parse::<usize>() {
        let cap = 2 * max;
        let fits = cap - HEADER_LEN - UNIX_DGRAM_OVERHEAD;
        check_fits("a", fits).unwrap();
        let e = check_fits("a", fits + 1).unwrap_err();
        assert_eq!(e.cause, Cause::Limit);
        let size = format!("a message of {} bytes", HEADER_LEN + fits + 1);
        assert!(e.call.starts_with(&size), "{e}");
        let limit = format!("{} bytes (SO_SNDBUF {cap} less", cap - UNIX_DGRAM_OVERHEAD);
        assert!(e.call.contains(&limit), "{e}");
        assert!(e.remedy.contains(&format!("at most {fits}")), "{e}");
        let e = reserve(&a, "a", fits + 1).unwrap_err();
        assert_eq!(e.cause, Cause::Limit, "{e}");
    }
}

#[test]
fn a_pingpong_hello_makes_room_for_the_echoes() {
    let (mut tx, mut rx) = links(SocketType::Dgram, T);
    let before = so::getsockopt(&rx.fd, sockopt::SndBuf).unwrap();
    for (mode, raised) in [
        (ipc_common::Mode::Stream, false),
        (ipc_common::Mode::Pingpong, true),
    ] {
        let hello = Hello {
            mode,
            payload: Payload::Generated { seed: 1 },
            count: 1,
            size: 2 * before as u64,
        }
        .encode();
        tx.send(&Header::for_payload(FrameKind::Hello, 0, &hello), &hello)
            .unwrap();
        rx.recv(&mut Vec::new(), HELLO_LEN).unwrap().unwrap();
        let now = so::getsockopt(&rx.fd.as_fd(), sockopt::SndBuf).unwrap();
        assert_eq!(now > before, raised, "{mode:?}: {before} -> {now}");
    }
}

/// A datagram receiver bound at a path in a fresh directory, `SO_PASSCRED` on.
fn bound_receiver(dir: &std::path::Path) -> (OwnedFd, std::path::PathBuf) {
    let path = dir.join("rx.sock");
    let fd = so::socket(
        so::AddressFamily::Unix,
        so::SockType::Datagram,
        so::SockFlag::SOCK_CLOEXEC,
        None,
    )
    .unwrap();
    so::bind(fd.as_raw_fd(), &UnixAddr::new(&path).unwrap()).unwrap();
    so::setsockopt(&fd, sockopt::PassCred, &true).unwrap();
    set_nonblocking(fd.as_fd(), "rx").unwrap();
    (fd, path)
}

fn unix_dgram() -> OwnedFd {
    so::socket(
        so::AddressFamily::Unix,
        so::SockType::Datagram,
        so::SockFlag::SOCK_CLOEXEC,
        None,
    )
    .unwrap()
}

/// Run `f` on a thread; an error if it does not end within 5 s.
fn within<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(5))
        .expect("ended within 5 s")
}

/// `tx` sends `bytes` to the receiver bound at `path`, which then connects back to its
/// first sender (within the watchdog).
fn sent_then_connected(rx: OwnedFd, tx: &OwnedFd, path: &std::path::Path, bytes: &[u8]) -> OwnedFd {
    so::sendto(
        tx.as_raw_fd(),
        bytes,
        &UnixAddr::new(path).unwrap(),
        MsgFlags::empty(),
    )
    .unwrap();
    within(move || {
        let mut w = Waiting::new("rx", "a sender", T);
        connect_to_first_sender(&rx, &mut w).unwrap();
        rx
    })
}

#[test]
fn a_datagram_receiver_connects_back_to_its_first_senders_address() {
    let dir = tempfile::tempdir().unwrap();
    let (rx, path) = bound_receiver(dir.path());
    let tx = unix_dgram();
    autobind(&tx, "tx").unwrap();
    let me: UnixAddr = so::getsockname(tx.as_raw_fd()).unwrap();
    assert!(me.as_abstract().is_some_and(|a| !a.is_empty()), "{me}");
    let rx = sent_then_connected(rx, &tx, &path, b"hi");
    // Connected to the sender: echoes go there, and the datagram is still queued.
    let peer: UnixAddr = so::getpeername(rx.as_raw_fd()).unwrap();
    assert_eq!(peer.as_abstract(), me.as_abstract());
    let mut buf = [0u8; 4];
    assert_eq!(
        so::recv(rx.as_raw_fd(), &mut buf, MsgFlags::empty()).unwrap(),
        2
    );
}

#[test]
fn an_unbound_first_sender_leaves_the_receiver_unconnected() {
    let dir = tempfile::tempdir().unwrap();
    let (rx, path) = bound_receiver(dir.path());
    let tx = unix_dgram();
    let rx = sent_then_connected(rx, &tx, &path, b"hi");
    assert!(so::getpeername::<UnixAddr>(rx.as_raw_fd()).is_err());
}

#[test]
fn no_sender_within_the_timeout_is_a_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let (rx, _path) = bound_receiver(dir.path());
    let mut w = Waiting::new("rx", "a sender", Duration::from_millis(150));
    let e = connect_to_first_sender(&rx, &mut w).unwrap_err();
    assert_eq!(e.cause, Cause::Timeout, "{e}");
}

#[test]
fn another_users_datagram_is_dropped_and_ours_then_taken() {
    use std::os::unix::fs::PermissionsExt;
    if trust::me() != 0
        || std::process::Command::new("socat")
            .arg("-V")
            .output()
            .is_err()
    {
        eprintln!("skipped: needs root (to send as another user) and socat");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let (rx, path) = bound_receiver(dir.path());
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o777)).unwrap();
    let sent = std::process::Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "socat",
            "-u",
            "-",
        ])
        .arg(format!("UNIX-SENDTO:{}", path.display()))
        .stdin(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(b"theirs")?;
            c.wait()
        })
        .unwrap();
    assert!(sent.success());
    let tx = unix_dgram();
    autobind(&tx, "tx").unwrap();
    let rx = sent_then_connected(rx, &tx, &path, b"ours");
    let mut buf = [0u8; 8];
    let n = so::recv(rx.as_raw_fd(), &mut buf, MsgFlags::empty()).unwrap();
    assert_eq!(
        &buf[..n],
        b"ours",
        "the other user's datagram was not dropped"
    );
    assert!(so::getpeername::<UnixAddr>(rx.as_raw_fd()).is_ok());
}

#[test]
fn the_limit_is_read_from_the_kernel_and_named_exactly() {
    match std::fs::read_to_string(WMEM_MAX) {
        Ok(s) => assert_eq!(wmem_max(), s.trim()),
        Err(_) => assert_eq!(wmem_max(), "unknown"),
    }
    let Ok(max) = wmem_max().parse::<usize>() else {
        return;
    };
    // Exactly what a socket may have: raised to it, and taken.
    let (a, _b) = crate::pair::pair(SocketType::Dgram).unwrap();
    let fits = 2 * max - HEADER_LEN - UNIX_DGRAM_OVERHEAD;
    reserve(&a, "a", fits).unwrap();
    let e = reserve(&a, "a", fits + 1).unwrap_err();
    assert!(
        e.call
            .starts_with(&format!("a message of {} bytes", HEADER_LEN + fits + 1)),
        "{e}"
    );
}

#[test]
fn an_end_mark_that_cannot_go_for_another_reason_is_an_error() {
    // Not connected, no address: ENOTCONN, not the receiver that closed (ECONNREFUSED).
    let mut l = MsgLink::new(unix_dgram(), SocketType::Dgram, "l".into(), T, None).unwrap();
    let e = l.end_raw().unwrap_err();
    assert_eq!(
        e.source.as_ref().and_then(|s| s.raw_os_error()),
        Some(libc::ENOTCONN),
        "{e}"
    );
}

#[test]
fn a_small_message_under_a_large_bound_reserves_only_its_size() {
    for ty in BOTH {
        let (mut tx, mut rx) = links(ty, T);
        tx.send(&Header::for_payload(FrameKind::Data, 0, b"tiny"), b"tiny")
            .unwrap();
        let mut buf = Vec::new();
        rx.recv(&mut buf, 8 << 20).unwrap().unwrap();
        assert_eq!(buf, b"tiny");
        assert!(buf.capacity() < 4096, "{ty:?}: {} reserved", buf.capacity());
    }
}
