//! The secret handshake against peers that do not play along (junk, silence, a close,
//! a proof made for the wrong role), and the secret file's checks at their bounds.

use super::*;
use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
use std::os::unix::fs::PermissionsExt;

fn secret(s: &str) -> Secret {
    Secret {
        key: s.as_bytes().to_vec(),
        source: "test".into(),
    }
}

fn sockets() -> (OwnedFd, OwnedFd) {
    socketpair(
        AddressFamily::Unix,
        SockType::Stream,
        None,
        SockFlag::SOCK_NONBLOCK,
    )
    .unwrap()
}

const T: Duration = Duration::from_secs(5);

/// Run `side` against a scripted peer on the other socket.
fn against<P: FnOnce(&OwnedFd) + Send>(
    side: impl FnOnce(&OwnedFd) -> Result<()>,
    peer: P,
) -> Result<()> {
    let (x, y) = sockets();
    std::thread::scope(move |s| {
        s.spawn(move || {
            peer(&y);
            drop(y);
        });
        // Closed before the peer is joined: a peer still reading sees the end.
        let r = side(&x);
        drop(x);
        r
    })
}

fn peer_io(fd: &OwnedFd) -> Io<'_> {
    Io::new(fd, "peer", T, "side")
}

#[test]
fn a_receiver_that_does_not_answer_the_handshake_is_refused() {
    let k = secret("k");
    let e = against(
        |fd| as_sender(fd, &k, "s", T),
        |fd| {
            let io = peer_io(fd);
            let mut hello = [0u8; 8 + NONCE];
            io.read(&mut hello).unwrap();
            assert_eq!(&hello[..8], MAGIC);
            io.write(&[b'x'; 8 + NONCE + PROOF]).unwrap();
            let _ = io.read(&mut [0u8; PROOF]);
        },
    )
    .unwrap_err();
    assert_eq!(e.cause, Cause::Mismatch);
    assert!(
        e.call.contains("did not answer the secret handshake"),
        "{e}"
    );
}

#[test]
fn a_sender_that_does_not_start_the_handshake_is_refused() {
    let k = secret("k");
    let e = against(
        |fd| as_receiver(fd, &k, "r", T),
        |fd| peer_io(fd).write(&[0u8; 8 + NONCE]).unwrap(),
    )
    .unwrap_err();
    assert_eq!(e.cause, Cause::Mismatch);
    assert!(e.call.contains("did not start the secret handshake"), "{e}");
}

/// A scripted receiver that knows the secret and answers the sender's hello with the
/// proof of `role`; it returns the sender's proof, if one came.
fn receiver_proving_as(fd: &OwnedFd, role: &[u8]) -> Option<([u8; 8 + NONCE], [u8; PROOF])> {
    let io = peer_io(fd);
    let k = secret("k");
    let mut hello = [0u8; 8 + NONCE];
    io.read(&mut hello).unwrap();
    let mine = [7u8; NONCE];
    let proof = k.proof(role, &hello[8..], &mine).finalize().into_bytes();
    io.write(&[MAGIC.as_slice(), &mine, &proof].concat())
        .unwrap();
    let mut theirs = [0u8; PROOF];
    io.read(&mut theirs).ok().map(|_| (hello, theirs))
}

#[test]
fn a_proof_made_for_the_other_role_is_refused() {
    // A receiver that knows the secret but answers with the sender's proof (a replay of
    // the sender's role): the sender refuses it.
    let k = secret("k");
    let e = against(
        |fd| as_sender(fd, &k, "s", T),
        |fd| {
            receiver_proving_as(fd, b"sender");
        },
    )
    .unwrap_err();
    assert!(e.call.contains("the receiver's proof did not match"), "{e}");
    // And the right one passes: the proof covers the role and both nonces in order.
    against(
        |fd| as_sender(fd, &k, "s", T),
        |fd| {
            let (hello, theirs) = receiver_proving_as(fd, b"receiver").expect("a proof");
            k.proof(b"sender", &hello[8..], &[7u8; NONCE])
                .verify_slice(&theirs)
                .expect("the sender's proof");
        },
    )
    .unwrap();
}

#[test]
fn a_sender_proving_with_the_receivers_role_is_refused() {
    let k = secret("k");
    let e = against(
        |fd| as_receiver(fd, &k, "r", T),
        |fd| {
            let io = peer_io(fd);
            let k = secret("k");
            let mine = [3u8; NONCE];
            io.write(&[MAGIC.as_slice(), &mine].concat()).unwrap();
            let mut answer = [0u8; 8 + NONCE + PROOF];
            io.read(&mut answer).unwrap();
            let theirs = &answer[8..8 + NONCE];
            let wrong = k.proof(b"receiver", &mine, theirs).finalize().into_bytes();
            io.write(&wrong).unwrap();
        },
    )
    .unwrap_err();
    assert!(e.call.contains("the sender's proof did not match"), "{e}");
}

#[test]
fn a_peer_that_closes_or_stays_silent_ends_the_handshake() {
    let k = secret("k");
    let e = against(|fd| as_receiver(fd, &k, "r", T), |_| {}).unwrap_err();
    assert_eq!(e.cause, Cause::PeerGone, "{e}");
    assert!(e.call.contains("the sender closed the connection"), "{e}");
    // Closed after part of the hello.
    let e = against(
        |fd| as_receiver(fd, &k, "r", T),
        |fd| peer_io(fd).write(&MAGIC[..]).unwrap(),
    )
    .unwrap_err();
    assert_eq!(e.cause, Cause::PeerGone, "{e}");
    // Silent: a timeout naming the peer, after the timeout.
    let (x, _y) = sockets();
    let short = Duration::from_millis(150);
    let start = Instant::now();
    let e = as_sender(&x, &k, "s", short).unwrap_err();
    assert_eq!(e.cause, Cause::Timeout, "{e}");
    assert!(e.call.contains("the receiver did not complete"), "{e}");
    assert!(start.elapsed() >= short);
    // Gone before the sender wrote: refused at the write.
    let (x, y) = sockets();
    drop(y);
    let e = as_sender(&x, &k, "s", T).unwrap_err();
    assert_eq!(e.cause, Cause::PeerGone, "{e}");
}

#[test]
fn nonces_are_fresh() {
    let (a, b) = (nonce("x").unwrap(), nonce("x").unwrap());
    assert_ne!(a, b);
    assert_ne!(a, [0u8; NONCE]);
}

fn private_file(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    p
}

#[test]
fn a_secret_file_is_bounded_trimmed_and_never_empty() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let max = private_file(d, "max", &vec![b'a'; MAX_SECRET as usize]);
    assert_eq!(read_file(&max).unwrap().key.len(), MAX_SECRET as usize);
    let over = private_file(d, "over", &vec![b'a'; MAX_SECRET as usize + 1]);
    let e = read_file(&over).err().unwrap();
    assert!(e.call.contains("larger than 4096 bytes"), "{e}");
    let crlf = private_file(d, "crlf", b"k e y\r\n\n");
    let s = read_file(&crlf).unwrap();
    assert_eq!(s.key, b"k e y");
    assert!(s.source.contains("--secret-file"), "{}", s.source);
    for (name, bytes) in [("empty", &b""[..]), ("newlines", b"\n\r\n")] {
        let p = private_file(d, name, bytes);
        let e = read_file(&p).err().unwrap();
        assert!(e.call.contains("is empty"), "{name}: {e}");
    }
}

#[test]
fn a_secret_file_must_be_a_private_regular_file_of_ours() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let e = read_file(d).err().unwrap();
    assert_eq!(e.cause, Cause::NotOurs);
    assert!(e.call.contains("not a regular file"), "{e}");
    let p = private_file(d, "key", b"k");
    for (mode, ok) in [
        (0o600, true),
        (0o400, true),
        (0o700, true),
        (0o640, false),
        (0o604, false),
    ] {
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        assert_eq!(read_file(&p).is_ok(), ok, "mode {mode:o}");
    }
    if crate::trust::me() == 0 {
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::os::unix::fs::chown(&p, Some(12345), None).unwrap();
        let e = read_file(&p).err().unwrap();
        assert!(e.call.contains("belongs to uid 12345"), "{e}");
    }
}

#[test]
fn the_secret_comes_from_the_file_else_the_environment() {
    // The one test that touches IPC_SECRET.
    let dir = tempfile::tempdir().unwrap();
    let p = private_file(dir.path(), "key", b"from-file");
    std::env::set_var(ENV, "from-env");
    assert_eq!(Secret::load(Some(&p)).unwrap().unwrap().key, b"from-file");
    let s = Secret::load(None).unwrap().unwrap();
    assert_eq!(
        (s.key.as_slice(), s.source.as_str()),
        (&b"from-env"[..], ENV)
    );
    std::env::set_var(ENV, "");
    assert_eq!(Secret::load(None).err().unwrap().kind, Kind::Usage);
    std::env::remove_var(ENV);
    assert!(Secret::load(None).unwrap().is_none());
}

#[test]
fn a_fifo_as_the_secret_file_is_refused_without_waiting_for_a_writer() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo");
    nix::unistd::mkfifo(
        &fifo,
        nix::sys::stat::Mode::S_IRUSR | nix::sys::stat::Mode::S_IWUSR,
    )
    .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(read_file(&fifo).err().map(|e| e.call));
    });
    let said = rx
        .recv_timeout(Duration::from_secs(5))
        .expect("the open of a FIFO did not wait for a writer");
    assert!(said.unwrap().contains("not a regular file"));
}
