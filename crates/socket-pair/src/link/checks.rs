//! [`SockLink`] over socket pairs of each type: frames and raw bytes both ways, the
//! lingering TCP-style end, the datagram sender filter, and what goes when it drops.

use super::*;
use ipc_common::frame::FrameKind;
use nix::sys::socket::sockopt;

const T: Duration = Duration::from_secs(5);

fn links(ty: SocketType) -> (SockLink, SockLink) {
    let (a, b) = crate::pair::pair(ty).unwrap();
    (
        SockLink::from_fd(a, ty, "tx", T, Some(64)).unwrap(),
        SockLink::from_fd(b, ty, "rx", T, None).unwrap(),
    )
}

#[test]
fn every_socket_type_carries_frames_and_raw_bytes() {
    for ty in [SocketType::Stream, SocketType::Dgram, SocketType::Seqpacket] {
        let (mut tx, mut rx) = links(ty);
        assert_eq!((tx.object(), rx.object()), ("tx", "rx"));
        let h = Header::for_payload(FrameKind::Data, 3, b"payload");
        tx.send(&h, b"payload").unwrap();
        let mut buf = Vec::new();
        assert_eq!(rx.recv(&mut buf, 64).unwrap(), Some(h), "{ty:?}");
        assert_eq!(buf, b"payload");
        // The other way too (pingpong echoes).
        rx.send(&h, b"payload").unwrap();
        assert_eq!(tx.recv(&mut buf, 64).unwrap(), Some(h), "{ty:?}");
        tx.send_raw(b"raw!").unwrap();
        let mut raw = [0u8; 4];
        assert_eq!(rx.recv_raw(&mut raw).unwrap(), 4, "{ty:?}");
        assert_eq!(&raw, b"raw!");
    }
    // A stream socket is a byte stream: two frames may come in one read, and are parted.
    let (mut tx, mut rx) = links(SocketType::Stream);
    for seq in 0..2 {
        tx.send(&Header::for_payload(FrameKind::Data, seq, b"ab"), b"ab")
            .unwrap();
    }
    let mut buf = Vec::new();
    assert_eq!(rx.recv(&mut buf, 64).unwrap().unwrap().seq, 0);
    assert_eq!(rx.recv(&mut buf, 64).unwrap().unwrap().seq, 1);
}

#[test]
fn a_stream_ends_with_the_close_a_raw_datagram_transfer_with_an_empty_one() {
    let (mut tx, mut rx) = links(SocketType::Stream);
    tx.finish_send(true).unwrap();
    tx.finish_send(false).unwrap();
    drop(tx);
    assert_eq!(rx.recv(&mut Vec::new(), 64).unwrap(), None);
    // With frames a datagram sender sends no end mark (the END frame is one).
    let (mut tx, mut rx) = links(SocketType::Dgram);
    tx.finish_send(false).unwrap();
    tx.send_raw(b"x").unwrap();
    assert_eq!(rx.recv_raw(&mut [0u8; 4]).unwrap(), 1);
    tx.finish_send(true).unwrap();
    assert_eq!(rx.recv_raw(&mut [0u8; 4]).unwrap(), 0);
}

#[test]
fn a_lingering_sender_waits_for_the_receiver_to_close() {
    let (a, b) = crate::pair::pair(SocketType::Stream).unwrap();
    let keep = a.try_clone().unwrap();
    let mut tx = SockLink::from_fd(a, SocketType::Stream, "tx", T, None)
        .unwrap()
        .lingering(keep, T);
    let mut rx = SockLink::from_fd(b, SocketType::Stream, "rx", T, None).unwrap();
    tx.send(&Header::for_payload(FrameKind::End, 1, b""), b"")
        .unwrap();
    let closer = std::thread::spawn(move || {
        // The receiver reads the end, then sees the sender's shutdown as end of file.
        let mut buf = Vec::new();
        let end = rx.recv(&mut buf, 0).unwrap().unwrap();
        assert_eq!(end.kind, FrameKind::End);
        assert_eq!(rx.recv(&mut buf, 0).unwrap(), None);
        std::thread::sleep(Duration::from_millis(150));
        drop(rx);
    });
    let start = Instant::now();
    tx.finish_send(false).unwrap();
    assert!(
        start.elapsed() >= Duration::from_millis(150),
        "did not wait"
    );
    closer.join().unwrap();
    // A receiver that never closes: the sender stops waiting after its timeout.
    let (a, b) = crate::pair::pair(SocketType::Stream).unwrap();
    let keep = a.try_clone().unwrap();
    let short = Duration::from_millis(150);
    let mut tx = SockLink::from_fd(a, SocketType::Stream, "tx", T, None)
        .unwrap()
        .lingering(keep, short);
    let start = Instant::now();
    tx.finish_send(false).unwrap();
    assert!(start.elapsed() >= short);
    drop(b);
}

#[test]
fn only_datagrams_of_the_given_user_are_taken() {
    let (a, b) = crate::pair::pair(SocketType::Dgram).unwrap();
    so::setsockopt(&b, sockopt::PassCred, &true).unwrap();
    let short = Duration::from_millis(150);
    let mut tx = SockLink::from_fd(a, SocketType::Dgram, "tx", T, None).unwrap();
    let mut rx = SockLink::from_fd(b, SocketType::Dgram, "rx", short, None)
        .unwrap()
        .only_from(crate::trust::me().wrapping_add(1));
    tx.send_raw(b"x").unwrap();
    let e = rx.recv_raw(&mut [0u8; 4]).unwrap_err();
    assert_eq!(e.cause, ipc_common::Cause::Timeout, "{e}");
}

#[test]
fn a_kept_socket_file_goes_when_the_link_ends() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sock");
    std::fs::write(&path, b"").unwrap();
    let (guard, _) = ipc_common::cleanup::remove_path_on_exit("file", &path, "idea").unwrap();
    let (a, _b) = crate::pair::pair(SocketType::Seqpacket).unwrap();
    let link = SockLink::from_fd(a, SocketType::Seqpacket, "s", T, None)
        .unwrap()
        .keeping_name(guard, &path);
    assert!(path.exists());
    drop(link);
    assert!(!path.exists());
}
