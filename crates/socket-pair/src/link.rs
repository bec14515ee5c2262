//! [`SockLink`]: a connected socket as a channel, whatever its type. A stream socket
//! becomes an [`FdStream`] (one descriptor read, a duplicate written) carrying the
//! common frame; a datagram or seqpacket socket a [`MsgLink`]. Its descriptors are
//! closed, and said so, when it ends; with `--keep` the socket file goes then too.

use crate::datagram::MsgLink;
use crate::endpoint::{self, SocketType, IDEA_CLOSE};
use ipc_common::cleanup::Guard;
use ipc_common::error::{Error, Result};
use ipc_common::frame::Header;
use ipc_common::link::Link;
use ipc_common::narrate;
use ipc_common::stream::{wait_ready, FdStream};
use nix::errno::Errno;
use nix::poll::PollFlags;
use nix::sys::socket::{self as so, MsgFlags};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const IDEA_DUP: &str = "files: a second descriptor for the same socket: one reads, one writes";
const IDEA_SHUTDOWN: &str =
    "sockets: shutdown(SHUT_WR) sends end of file but keeps the socket to hear the peer close";

enum Chan {
    Stream(FdStream),
    Msg(MsgLink),
}

/// A connected socket as a channel: a byte stream or a message socket.
pub struct SockLink {
    /// `None` only while it is being dropped.
    chan: Option<Chan>,
    /// The descriptors the channel holds, to narrate their close.
    fds: Vec<i32>,
    /// A TCP sender's socket once more: after the last byte it waits for the receiver
    /// to close first, so its socket (and with it its owner) stays in the kernel's
    /// table until the receiver has checked it; a closed one keeps no owner.
    linger: Option<(OwnedFd, Duration)>,
    /// `--keep`: the socket file, removed when the link ends.
    name: Option<(Guard, PathBuf)>,
}

impl SockLink {
    /// `payload`: the sender's largest message, so a message socket can be checked to
    /// carry it; `None` on the receiving side (the hello tells).
    pub fn from_fd(
        fd: OwnedFd,
        ty: SocketType,
        object: impl Into<String>,
        timeout: Duration,
        payload: Option<usize>,
    ) -> Result<SockLink> {
        let object = object.into();
        let mut fds = vec![fd.as_raw_fd()];
        let chan = match ty {
            SocketType::Stream => {
                let rd = endpoint::dup(&fd, &object, IDEA_DUP)?;
                fds.insert(0, rd.as_raw_fd());
                Chan::Stream(FdStream::new(object, Some(rd), Some(fd), timeout)?)
            }
            _ => Chan::Msg(MsgLink::new(fd, ty, object, timeout, payload)?),
        };
        Ok(SockLink {
            chan: Some(chan),
            fds,
            linger: None,
            name: None,
        })
    }

    /// A TCP sender's stream lingers after its last byte on `fd`, a duplicate of its
    /// socket (see [`SockLink::finish_send`]).
    pub fn lingering(mut self, fd: OwnedFd, timeout: Duration) -> SockLink {
        self.linger = Some((fd, timeout));
        self
    }

    /// `--keep`: the socket file stays until the link ends.
    pub fn keeping_name(mut self, guard: Guard, path: &Path) -> SockLink {
        self.name = Some((guard, path.to_path_buf()));
        self
    }

    /// A datagram receiver takes datagrams from `uid` only.
    pub fn only_from(mut self, uid: u32) -> SockLink {
        if let Some(Chan::Msg(m)) = &mut self.chan {
            m.only_from(uid);
        }
        self
    }

    /// The sender is done. A datagram socket has no end of file: in `--raw` an empty
    /// datagram marks the end (with frames, the END frame does). Streams end on close;
    /// a lingering one shuts its sending side and waits (at most its timeout) for the
    /// receiver to close.
    pub fn finish_send(&mut self, raw: bool) -> Result<()> {
        if let (Some(Chan::Msg(m)), true) = (&mut self.chan, raw) {
            return m.end_raw();
        }
        match &self.linger {
            Some((fd, timeout)) => linger(fd, self.object_name(), *timeout),
            None => Ok(()),
        }
    }

    fn object_name(&self) -> &str {
        match &self.chan {
            Some(Chan::Stream(s)) => s.object(),
            Some(Chan::Msg(m)) => m.object(),
            None => "socket",
        }
    }

    fn inner(&mut self) -> &mut dyn Link {
        match self.chan.as_mut().expect("open until dropped") {
            Chan::Stream(s) => s,
            Chan::Msg(m) => m,
        }
    }
}

impl Drop for SockLink {
    /// Close the descriptors, saying so; then, with `--keep`, the socket file goes.
    fn drop(&mut self) {
        let fds: Vec<String> = self.fds.iter().map(|n| format!("fd {n}")).collect();
        narrate::step(
            format_args!("close({}): the connection", fds.join(", ")),
            "ss -xp ; ss -tnp",
        );
        drop(self.chan.take());
        for n in &self.fds {
            narrate::call(format_args!("close(fd {n}) = 0"), IDEA_CLOSE);
        }
        if let Some((fd, _)) = self.linger.take() {
            endpoint::close(fd, IDEA_CLOSE);
        }
        if let Some((guard, path)) = self.name.take() {
            narrate::step(
                format_args!("unlink({path:?})"),
                &format!("ls -l {}", path.display()),
            );
            drop(guard);
        }
    }
}

/// Shut the sending side, then read (and discard: the transfer is over) until the
/// receiver closes, or the timeout passes; neither is an error, every byte was sent.
fn linger(fd: &OwnedFd, object: &str, timeout: Duration) -> Result<()> {
    match so::shutdown(fd.as_raw_fd(), so::Shutdown::Write) {
        Ok(()) => narrate::call(
            format_args!("shutdown(fd {}, SHUT_WR) = 0", fd.as_raw_fd()),
            IDEA_SHUTDOWN,
        ),
        Err(Errno::ENOTCONN) => return Ok(()),
        Err(e) => return Err(Error::os(object, "shutdown(SHUT_WR)", e.into())),
    }
    let deadline = Instant::now() + timeout;
    let mut sink = [0u8; 4096];
    loop {
        match so::recv(fd.as_raw_fd(), &mut sink, MsgFlags::empty()) {
            Ok(0) | Err(Errno::ECONNRESET | Errno::ENOTCONN) => return Ok(()),
            Ok(_) | Err(Errno::EINTR) => {}
            Err(Errno::EAGAIN) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if wait_ready(fd.as_fd(), PollFlags::POLLIN, left, object)?.is_none() {
                    return Ok(());
                }
            }
            Err(e) => {
                return Err(Error::os(
                    object,
                    "recv (waiting for the receiver to close)",
                    e.into(),
                ))
            }
        }
    }
}

impl Link for SockLink {
    fn object(&self) -> &str {
        self.object_name()
    }
    fn send(&mut self, header: &Header, payload: &[u8]) -> Result<()> {
        self.inner().send(header, payload)
    }
    fn recv(&mut self, buf: &mut Vec<u8>, max: usize) -> Result<Option<Header>> {
        self.inner().recv(buf, max)
    }
    fn send_raw(&mut self, bytes: &[u8]) -> Result<()> {
        self.inner().send_raw(bytes)
    }
    fn recv_raw(&mut self, buf: &mut [u8]) -> Result<usize> {
        self.inner().recv_raw(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_datagram_ends_a_raw_transfer() {
        let (a, b) = crate::pair::pair(SocketType::Dgram).unwrap();
        let t = Duration::from_secs(5);
        let mut tx = SockLink::from_fd(a, SocketType::Dgram, "a", t, Some(16)).unwrap();
        let mut rx = SockLink::from_fd(b, SocketType::Dgram, "b", t, None).unwrap();
        tx.send_raw(b"abc").unwrap();
        tx.finish_send(true).unwrap();
        let mut buf = [0u8; 16];
        assert_eq!(rx.recv_raw(&mut buf).unwrap(), 3);
        assert_eq!(rx.recv_raw(&mut buf).unwrap(), 0);
    }
}

#[cfg(test)]
mod checks;
