//! The connected receivers' loop (Unix stream and seqpacket, TCP): listen, then accept
//! connections until one of this user's sends its first byte: that is the sender.
//!
//! Several connections are watched at once, so a silent one (held for
//! [`SILENT_GRACE`]) cannot stall the real sender; one that closes before its first byte
//! (a probe by another receiver, a port scan) is dropped, as is one from another user.
//! Once the sender is found the listening socket is closed: nobody else gets in.

use crate::endpoint::{self, IDEA_CLOSE};
use crate::{tcp, trust, unix};
use ipc_common::error::{Cause, Context, Error, Result};
use ipc_common::narrate;
use ipc_common::stream::set_nonblocking;
use ipc_common::wait::Waiting;
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{self as so, Backlog, MsgFlags};
use std::collections::VecDeque;
use std::io;
use std::net::TcpListener;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::time::{Duration, Instant};

const IDEA_LISTEN: &str = "sockets: the kernel queues connections until accept";
const IDEA_ACCEPT: &str = "sockets: one new connected socket per peer";
const IDEA_PROBE_GONE: &str = "sockets: a connection that closed unused was a probe, not a sender";
/// How long an accepted connection may stay silent before it is dropped. Meanwhile it
/// holds up nobody: the receiver keeps accepting and watching the others.
const SILENT_GRACE: Duration = Duration::from_secs(5);
/// Silent connections kept at once; past this the oldest is dropped.
const MAX_PENDING: usize = 16;
/// The longest the loop sleeps before looking at its deadlines again.
const TICK: Duration = Duration::from_millis(100);

pub fn listen(fd: &OwnedFd, object: &str) -> Result<()> {
    let backlog = Backlog::new(8).expect("8 is a valid backlog");
    so::listen(fd, backlog).on(&object, "listen")?;
    narrate::call(
        format_args!("listen(fd {}, 8) = 0", fd.as_raw_fd()),
        IDEA_LISTEN,
    );
    Ok(())
}

/// A listening socket; std's `accept` hands back an owned, close-on-exec descriptor.
pub enum Listener {
    Unix(UnixListener),
    Tcp(TcpListener),
}

impl Listener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Listener::Unix(l) => l.as_fd(),
            Listener::Tcp(l) => l.as_fd(),
        }
    }

    fn accept(&self) -> io::Result<OwnedFd> {
        Ok(match self {
            Listener::Unix(l) => l.accept()?.0.into(),
            Listener::Tcp(l) => l.accept()?.0.into(),
        })
    }

    fn into_fd(self) -> OwnedFd {
        match self {
            Listener::Unix(l) => l.into(),
            Listener::Tcp(l) => l.into(),
        }
    }
}

/// Connections accepted but silent so far, each with the time it came.
type Pending = VecDeque<(OwnedFd, Instant)>;

/// Accept until the sender is found (see the module doc); then close the listener.
pub fn accept_sender(listener: Listener, w: &mut Waiting, look: &str) -> Result<OwnedFd> {
    narrate::step(
        format_args!(
            "accept(fd {}): wait for the sender",
            listener.as_fd().as_raw_fd()
        ),
        look,
    );
    let mut pending = Pending::new();
    loop {
        if w.expired() {
            let what = if pending.is_empty() {
                "no sender connected"
            } else {
                "no connected peer sent anything"
            };
            return Err(w.gave_up(what).because(Cause::Timeout));
        }
        w.tick("a sender");
        let (listener_ready, ready) = poll_all(&listener, &pending, w)?;
        if let Some(conn) = take_sender(&mut pending, &ready, w.object())? {
            let fd = listener.into_fd();
            narrate::step(
                format_args!("close(fd {}): the listening socket", fd.as_raw_fd()),
                look,
            );
            endpoint::close(
                fd,
                "sockets: the sender is in: the listening socket goes, nobody else gets in",
            );
            return Ok(conn);
        }
        drop_silent(&mut pending, w.object());
        if listener_ready {
            accept_all(&listener, &mut pending, w.object())?;
        }
    }
}

/// Poll the listener and every pending connection, at most one tick. Returns whether
/// the listener has connections queued, and which pending ones have something.
fn poll_all(listener: &Listener, pending: &Pending, w: &Waiting) -> Result<(bool, Vec<bool>)> {
    let mut fds = vec![PollFd::new(listener.as_fd(), PollFlags::POLLIN)];
    fds.extend(
        pending
            .iter()
            .map(|(c, _)| PollFd::new(c.as_fd(), PollFlags::POLLIN)),
    );
    let ms = w.left().min(TICK).as_millis();
    let ms =
        PollTimeout::try_from(i32::try_from(ms).unwrap_or(i32::MAX)).unwrap_or(PollTimeout::MAX);
    match poll(&mut fds, ms) {
        Ok(_) | Err(Errno::EINTR) => {}
        Err(e) => return Err(Error::os(w.object(), "poll", e.into())),
    }
    let seen = |f: &PollFd<'_>| f.revents().is_some_and(|r| !r.is_empty());
    Ok((seen(&fds[0]), fds[1..].iter().map(seen).collect()))
}

/// The first ready connection with a byte to read is the sender; ready ones that
/// closed unused are dropped.
fn take_sender(pending: &mut Pending, ready: &[bool], object: &str) -> Result<Option<OwnedFd>> {
    // Newest first, so removing by index leaves the earlier ones in place.
    for i in (0..ready.len()).rev().filter(|&i| ready[i]) {
        let mut one = [0u8; 1];
        let conn = pending[i].0.as_raw_fd();
        match so::recv(conn, &mut one, MsgFlags::MSG_PEEK) {
            Ok(0) | Err(Errno::ECONNRESET) => {
                narrate::call(
                    format_args!("recv(fd {conn}, MSG_PEEK) = 0"),
                    IDEA_PROBE_GONE,
                );
                let (fd, _) = pending.remove(i).expect("index in range");
                endpoint::close_repeated("close-probe", fd, IDEA_PROBE_GONE);
            }
            Ok(_) => return Ok(pending.remove(i).map(|(fd, _)| fd)),
            Err(Errno::EAGAIN | Errno::EINTR) => {}
            Err(e) => return Err(Error::os(object, "recv(MSG_PEEK)", e.into())),
        }
    }
    Ok(None)
}

/// Close the connections silent for longer than [`SILENT_GRACE`].
fn drop_silent(pending: &mut Pending, object: &str) {
    let mut dropped = 0;
    while pending
        .front()
        .is_some_and(|(_, since)| since.elapsed() >= SILENT_GRACE)
    {
        let (fd, _) = pending.pop_front().expect("front exists");
        endpoint::close_repeated(
            "close-silent",
            fd,
            "sockets: a connection that sent nothing goes",
        );
        dropped += 1;
    }
    if dropped > 0 {
        narrate::note(format_args!(
            "{object}: dropped {dropped} connection(s) that sent nothing for {} s; still waiting for the sender",
            SILENT_GRACE.as_secs()
        ));
    }
}

/// Take every queued connection now: the real sender may be behind a silent one.
fn accept_all(listener: &Listener, pending: &mut Pending, object: &str) -> Result<()> {
    loop {
        let conn = match listener.accept() {
            Ok(c) => c,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            // Gone before we took it: nothing to do.
            Err(e) if e.kind() == io::ErrorKind::ConnectionAborted => continue,
            Err(e) => return Err(Error::os(object, "accept", e)),
        };
        narrate::repeated(
            "accept",
            format_args!(
                "accept(fd {}) = fd {}",
                listener.as_fd().as_raw_fd(),
                conn.as_raw_fd()
            ),
            IDEA_ACCEPT,
        );
        set_nonblocking(conn.as_fd(), object)?;
        if !admit(&conn, listener, object)? {
            endpoint::close_repeated("close-refused", conn, IDEA_CLOSE);
            continue;
        }
        if pending.len() == MAX_PENDING {
            if let Some((fd, _)) = pending.pop_front() {
                endpoint::close_repeated(
                    "close-silent",
                    fd,
                    "sockets: a connection that sent nothing goes",
                );
            }
            narrate::note(format_args!(
                "{object}: more than {MAX_PENDING} silent connections; dropped the oldest"
            ));
        }
        pending.push_back((conn, Instant::now()));
    }
}

/// Whether an accepted connection may be the sender: from this user, as the kernel
/// tells (`SO_PEERCRED` for Unix, the connection table for TCP on this host). A TCP
/// peer on another host passes here; the shared secret, if any, decides later.
fn admit(conn: &OwnedFd, listener: &Listener, object: &str) -> Result<bool> {
    let me = trust::me();
    let stranger = match listener {
        Listener::Unix(_) => {
            let (uid, pid) = unix::peer_cred(conn, object)?;
            (uid != me).then(|| format!("uid {uid} (pid {pid})"))
        }
        Listener::Tcp(_) => tcp::stranger(conn, object)?,
    };
    if let Some(who) = stranger {
        narrate::note(format_args!(
            "{object}: refused a connection from {who}: not this user (uid {me}); still waiting for the sender"
        ));
        return Ok(false);
    }
    Ok(true)
}
