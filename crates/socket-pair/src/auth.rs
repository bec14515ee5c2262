//! A shared secret between hosts: a mutual HMAC-SHA256 challenge-response before any
//! payload, so each end proves it holds the secret without sending it.
//!
//! 1. The sender sends `MAGIC` and a fresh 32-byte nonce.
//! 2. The receiver answers with `MAGIC`, its own fresh nonce and its proof,
//!    HMAC(secret, "receiver" | sender's nonce | receiver's nonce).
//! 3. The sender sends its proof, HMAC(secret, "sender" | both nonces), then checks the
//!    receiver's; the receiver checks the sender's. Either side refuses on a mismatch.
//!
//! Fresh nonces from both sides make a recorded exchange useless later; the role in the
//! proof stops one side's proof from being played back as the other's. Proofs are
//! compared in constant time (`Mac::verify_slice`).

use hmac::{Hmac, Mac};
use ipc_common::error::{Cause, Error, Kind, Result};
use ipc_common::stream::wait_ready;
use nix::errno::Errno;
use nix::poll::PollFlags;
use nix::sys::socket::{self as so, MsgFlags};
use sha2::Sha256;
use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const MAGIC: &[u8; 8] = b"IPCAUTH1";
const NONCE: usize = 32;
const PROOF: usize = 32;
/// A longer key adds nothing to HMAC-SHA256; a bound keeps a wrong path cheap.
const MAX_SECRET: u64 = 4096;
/// The environment variable that holds the secret when no file is given.
pub const ENV: &str = "IPC_SECRET";
const REMEDY: &str =
    "give both sides the same secret (--secret-file PATH with the same contents, or IPC_SECRET)";

/// A shared secret, from `--secret-file` or `IPC_SECRET`.
pub struct Secret {
    key: Vec<u8>,
    /// Where it came from, for messages.
    pub source: String,
}

impl Secret {
    /// `--secret-file PATH` if given, else `IPC_SECRET` if set, else none.
    pub fn load(file: Option<&Path>) -> Result<Option<Secret>> {
        if let Some(path) = file {
            return read_file(path).map(Some);
        }
        match std::env::var_os(ENV) {
            Some(v) if !v.is_empty() => Ok(Some(Secret {
                key: std::os::unix::ffi::OsStrExt::as_bytes(v.as_os_str()).to_vec(),
                source: ENV.into(),
            })),
            Some(_) => Err(Error::usage(
                format!("{ENV} is set but empty"),
                format!("put the shared secret in {ENV}, or unset it"),
            )),
            None => Ok(None),
        }
    }

    fn proof(&self, role: &[u8], sender: &[u8], receiver: &[u8]) -> Hmac<Sha256> {
        let mut m = <Hmac<Sha256> as Mac>::new_from_slice(&self.key)
            .expect("HMAC takes a key of any length");
        m.update(role);
        m.update(sender);
        m.update(receiver);
        m
    }
}

/// The file must be a regular file (not a link), owned by this user and readable by
/// nobody else: a secret others can read is no secret.
fn read_file(path: &Path) -> Result<Secret> {
    use std::os::unix::fs::OpenOptionsExt;
    let obj = format!("secret file {}", path.display());
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| {
            Error::os(&obj, "open", e).with_remedy(
                "give a readable regular file (not a symbolic link) holding the shared secret",
            )
        })?;
    let md = file.metadata().map_err(|e| Error::os(&obj, "fstat", e))?;
    check_private(&md, path, &obj)?;
    let bad = |what: String, remedy: String| Error::new(Kind::Runtime, &obj, what, remedy);
    let mut key = Vec::new();
    file.take(MAX_SECRET + 1)
        .read_to_end(&mut key)
        .map_err(|e| Error::os(&obj, "read", e))?;
    if key.len() as u64 > MAX_SECRET {
        return Err(bad(
            format!("is larger than {MAX_SECRET} bytes"),
            "a secret of 32 random bytes is plenty, e.g. head -c 32 /dev/urandom | base64 > FILE"
                .into(),
        ));
    }
    // An editor's final newline is not part of the secret.
    while key.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        key.pop();
    }
    if key.is_empty() {
        return Err(bad(
            "is empty".into(),
            "write the shared secret into it, e.g. head -c 32 /dev/urandom | base64 > FILE".into(),
        ));
    }
    Ok(Secret {
        key,
        source: format!("--secret-file {}", PathBuf::from(path).display()),
    })
}

/// A secret file must be a regular file of this user's that nobody else may read.
fn check_private(md: &std::fs::Metadata, path: &Path, obj: &str) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let bad = |what: String, remedy: String| {
        Error::new(Kind::Runtime, obj, what, remedy).because(Cause::NotOurs)
    };
    if !md.is_file() {
        return Err(bad(
            "is not a regular file".into(),
            "give a regular file holding the shared secret".into(),
        ));
    }
    let me = crate::trust::me();
    if md.uid() != me {
        return Err(bad(
            format!("belongs to uid {}, not to this user (uid {me})", md.uid()),
            format!(
                "use a secret file of your own (chown, or copy it and chmod 600 {})",
                path.display()
            ),
        ));
    }
    if md.mode() & 0o077 != 0 {
        return Err(bad(
            format!("has mode {:04o}: others may read it", md.mode() & 0o7777),
            format!("chmod 600 {}", path.display()),
        ));
    }
    Ok(())
}

fn nonce(object: &str) -> Result<[u8; NONCE]> {
    let mut n = [0u8; NONCE];
    getrandom::fill(&mut n).map_err(|e| {
        Error::new(
            Kind::Runtime,
            object,
            format!("getrandom (a nonce for the secret handshake): {e}"),
            "the kernel's random source is unavailable",
        )
    })?;
    Ok(n)
}

fn mismatch(object: &str, whose: &str) -> Error {
    Error::new(
        Kind::Runtime,
        object,
        format!("authentication: the {whose}'s proof did not match: the secret did not match"),
        REMEDY,
    )
    .because(Cause::Mismatch)
}

/// The sender's half: after this, the receiver is known to hold the secret.
pub fn as_sender(fd: &OwnedFd, secret: &Secret, object: &str, timeout: Duration) -> Result<()> {
    let io = Io::new(fd, object, timeout, "receiver");
    let mine = nonce(object)?;
    io.write(&[MAGIC.as_slice(), &mine].concat())?;
    let mut answer = [0u8; 8 + NONCE + PROOF];
    io.read(&mut answer)?;
    io.expect_magic(&answer[..8], "answer")?;
    let theirs = &answer[8..8 + NONCE];
    let proof = secret
        .proof(b"sender", &mine, theirs)
        .finalize()
        .into_bytes();
    io.write(&proof)?;
    secret
        .proof(b"receiver", &mine, theirs)
        .verify_slice(&answer[8 + NONCE..])
        .map_err(|_| mismatch(object, "receiver"))
}

/// The receiver's half: after this, the sender is known to hold the secret.
pub fn as_receiver(fd: &OwnedFd, secret: &Secret, object: &str, timeout: Duration) -> Result<()> {
    let io = Io::new(fd, object, timeout, "sender");
    let mut hello = [0u8; 8 + NONCE];
    io.read(&mut hello)?;
    io.expect_magic(&hello[..8], "start")?;
    let theirs = &hello[8..];
    let mine = nonce(object)?;
    let proof = secret
        .proof(b"receiver", theirs, &mine)
        .finalize()
        .into_bytes();
    io.write(&[MAGIC.as_slice(), &mine, &proof].concat())?;
    let mut answer = [0u8; PROOF];
    io.read(&mut answer)?;
    secret
        .proof(b"sender", theirs, &mine)
        .verify_slice(&answer)
        .map_err(|_| mismatch(object, "sender"))
}

/// Exact reads and writes on a non-blocking socket, all within one deadline.
struct Io<'a> {
    fd: &'a OwnedFd,
    object: &'a str,
    deadline: Instant,
    timeout: Duration,
    peer: &'a str,
}

impl<'a> Io<'a> {
    fn new(fd: &'a OwnedFd, object: &'a str, timeout: Duration, peer: &'a str) -> Io<'a> {
        Io {
            fd,
            object,
            deadline: Instant::now() + timeout,
            timeout,
            peer,
        }
    }

    /// Refuse a peer whose first bytes are not the handshake's: it has no secret.
    /// `did_not`: what it failed to do with the handshake (`answer`, `start`).
    fn expect_magic(&self, got: &[u8], did_not: &str) -> Result<()> {
        if got == MAGIC {
            return Ok(());
        }
        let peer = self.peer;
        Err(Error::new(
            Kind::Runtime,
            self.object,
            format!("authentication: the {peer} did not {did_not} the secret handshake"),
            format!("the {peer} has no secret: give it the same --secret-file or IPC_SECRET"),
        )
        .because(Cause::Mismatch))
    }

    fn wait(&self, events: PollFlags) -> Result<()> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        match wait_ready(self.fd.as_fd(), events, left, self.object)? {
            Some(_) => Ok(()),
            None => Err(Error::peer(
                self.object,
                format!(
                    "authentication: the {} did not complete the secret handshake within {:.1} s",
                    self.peer,
                    self.timeout.as_secs_f64()
                ),
                "check that both sides run this program with the same secret",
            )
            .because(Cause::Timeout)),
        }
    }

    fn closed(&self) -> Error {
        Error::new(
            Kind::Runtime,
            self.object,
            format!(
                "authentication: the {} closed the connection during the secret handshake",
                self.peer
            ),
            format!("the {} refused us: {REMEDY}", self.peer),
        )
        .because(Cause::PeerGone)
    }

    fn write(&self, mut bytes: &[u8]) -> Result<()> {
        while !bytes.is_empty() {
            match so::send(self.fd.as_raw_fd(), bytes, MsgFlags::MSG_NOSIGNAL) {
                Ok(n) => bytes = &bytes[n..],
                Err(Errno::EAGAIN) => self.wait(PollFlags::POLLOUT)?,
                Err(Errno::EINTR) => {}
                Err(Errno::EPIPE | Errno::ECONNRESET) => return Err(self.closed()),
                Err(e) => return Err(Error::os(self.object, "send (secret handshake)", e.into())),
            }
        }
        Ok(())
    }

    fn read(&self, buf: &mut [u8]) -> Result<()> {
        let mut got = 0;
        while got < buf.len() {
            match so::recv(self.fd.as_raw_fd(), &mut buf[got..], MsgFlags::empty()) {
                Ok(0) | Err(Errno::ECONNRESET) => return Err(self.closed()),
                Ok(n) => got += n,
                Err(Errno::EAGAIN) => self.wait(PollFlags::POLLIN)?,
                Err(Errno::EINTR) => {}
                Err(e) => return Err(Error::os(self.object, "recv (secret handshake)", e.into())),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};

    fn secret(s: &str) -> Secret {
        Secret {
            key: s.as_bytes().to_vec(),
            source: "test".into(),
        }
    }

    fn handshake(a: &str, b: &str) -> (Result<()>, Result<()>) {
        let (x, y) = socketpair(
            AddressFamily::Unix,
            SockType::Stream,
            None,
            SockFlag::SOCK_NONBLOCK,
        )
        .unwrap();
        let (a, b) = (secret(a), secret(b));
        let t = Duration::from_secs(5);
        std::thread::scope(|s| {
            let r = s.spawn(|| {
                let r = as_receiver(&y, &b, "r", t);
                drop(y);
                r
            });
            let snd = as_sender(&x, &a, "s", t);
            (snd, r.join().unwrap())
        })
    }

    #[test]
    fn matching_secrets_pass_and_different_ones_fail_on_both_sides() {
        let (s, r) = handshake("k1", "k1");
        s.unwrap();
        r.unwrap();
        let (s, r) = handshake("k1", "k2");
        let (s, r) = (s.unwrap_err(), r.unwrap_err());
        for e in [&s, &r] {
            assert_eq!(e.exit_code(), 1, "{e}");
            assert!(e.to_string().contains("the secret did not match"), "{e}");
        }
    }

    #[test]
    fn a_secret_file_must_be_private_and_own() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("key");
        std::fs::write(&p, "hunter2\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = Secret::load(Some(&p)).err().unwrap();
        assert!(e.to_string().contains("chmod 600"), "{e}");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(Secret::load(Some(&p)).unwrap().unwrap().key, b"hunter2");
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&p, &link).unwrap();
        assert!(Secret::load(Some(&link)).is_err());
    }
}
