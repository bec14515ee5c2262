//! TCP: the receiver binds and listens on HOST:PORT; on this host both ends look the
//! peer's socket up in the kernel's table (`/proc/net/tcp`) for its uid; between hosts
//! a shared secret (see [`crate::auth`]) authenticates both ends before any payload.

use crate::accept::{self, Listener};
use crate::auth::{self, Secret};
use crate::endpoint::{self, Endpoint, PeerCommand, SocketType, IDEA_BIND, IDEA_PEER};
use crate::link::SockLink;
use crate::trust::{self, Owner};
use ipc_common::cleanup;
use ipc_common::error::{Cause, Context, Error, Kind, Result};
use ipc_common::narrate;
use ipc_common::record;
use ipc_common::wait::Waiting;
use ipc_common::workload::Describe;
use nix::errno::Errno;
use nix::sys::socket::{self as so, sockopt, SockaddrStorage};
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::Duration;

pub const IDEA_CONNECT: &str =
    "sockets: TCP runs the whole protocol (segments, acks), on loopback without a wire";

/// The receiving side over TCP: bind, listen, accept this user's sender (or, with a
/// `secret`, one that proves it holds the same secret).
pub fn receive(
    addr: SocketAddr,
    timeout: Duration,
    peer: PeerCommand<'_>,
    secret: Option<&Secret>,
) -> Result<(SockLink, Describe)> {
    let (fd, bound) = bind(addr)?;
    let ep = Endpoint::Tcp(bound);
    let obj = ep.object();
    accept::listen(&fd, &obj)?;
    let listening = cleanup::on_exit_recorded(obj.clone(), record::Object::tcp(bound), || {});
    if addr.port() == 0 {
        narrate::note(format_args!("listening on {obj}"));
    }
    if secret.is_none() && !bound.ip().is_loopback() {
        narrate::note(format_args!(
            "warning: {obj} is reachable from other hosts and no shared secret is set: anyone who can reach this port can take part (give both sides --secret-file PATH or {})",
            auth::ENV
        ));
    }
    let mut w = Waiting::new(&obj, peer(&ep), timeout);
    let conn = accept::accept_sender(Listener::Tcp(TcpListener::from(fd)), &mut w, &ep.look())?;
    drop(listening);
    if let Some(secret) = secret {
        auth::as_receiver(&conn, secret, &obj, timeout)?;
        narrate::note(format_args!(
            "{obj}: the sender proved it holds the shared secret ({})",
            secret.source
        ));
    }
    // The receiver writes only pingpong echoes: send each at once.
    set_nodelay(&conn, &obj)?;
    let link = SockLink::from_fd(conn, SocketType::Stream, obj, timeout, None)?;
    Ok((link, ep.describe(SocketType::Stream)))
}

/// A listening-to-be socket bound to `addr`; returns it and the address bound (port 0
/// becomes a real port).
fn bind(addr: SocketAddr) -> Result<(OwnedFd, SocketAddr)> {
    let ep = Endpoint::Tcp(addr);
    let obj = ep.object();
    narrate::step(
        format_args!("socket({}) and bind it to {addr}", "SOCK_STREAM"),
        &ep.look(),
    );
    let fd = endpoint::new_socket(ep.family(), SocketType::Stream, &obj, "socket")?;
    // A port still in TIME_WAIT from the last run may be bound again at once.
    so::setsockopt(&fd, sockopt::ReuseAddr, &true).on(&obj, "setsockopt(SO_REUSEADDR)")?;
    so::bind(fd.as_raw_fd(), &SockaddrStorage::from(addr)).map_err(|e| {
        let err = Error::os(&obj, "bind", e.into());
        if e == Errno::EADDRINUSE {
            err.with_remedy(format!(
                "another program listens on port {0} (see `ss -ltnp 'sport = :{0}'`); choose another port",
                addr.port()
            ))
            .because(Cause::NotOurs)
        } else {
            err.with_remedy("give an address of this machine (e.g. 127.0.0.1)")
        }
    })?;
    let bound = local_addr(&fd, &obj)?;
    narrate::call(
        format_args!("bind(fd {}, {bound}) = 0", fd.as_raw_fd()),
        IDEA_BIND,
    );
    Ok((fd, bound))
}

fn std_addr(s: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(a) = s.as_sockaddr_in() {
        return Some(SocketAddr::V4((*a).into()));
    }
    s.as_sockaddr_in6().map(|a| SocketAddr::V6((*a).into()))
}

fn local_addr(fd: &OwnedFd, object: &str) -> Result<SocketAddr> {
    let s: SockaddrStorage = so::getsockname(fd.as_raw_fd()).on(&object, "getsockname")?;
    std_addr(&s).ok_or_else(|| not_inet(object, "getsockname"))
}

fn peer_addr(fd: &OwnedFd, object: &str) -> Result<SocketAddr> {
    let s: SockaddrStorage = so::getpeername(fd.as_raw_fd()).on(&object, "getpeername")?;
    std_addr(&s).ok_or_else(|| not_inet(object, "getpeername"))
}

fn not_inet(object: &str, call: &str) -> Error {
    Error::new(
        Kind::Runtime,
        object,
        format!("{call}: not an IPv4 or IPv6 address"),
        "this is a bug: a TCP socket without an internet address",
    )
}

/// Who is at the other end of a connected TCP socket, when it is not this user:
/// `Some(description)` for another uid, or a local socket closed before it could be
/// checked; `None` for this user's, or a peer on another host (the secret decides).
pub fn stranger(fd: &OwnedFd, object: &str) -> Result<Option<String>> {
    let (local, peer) = (local_addr(fd, object)?, peer_addr(fd, object)?);
    let owner = trust::tcp_owner(peer, local)?;
    narrate::call(
        format_args!("/proc/net/tcp: {peer} -> {local} is {owner:?}"),
        IDEA_PEER,
    );
    Ok(match owner {
        Owner::Uid(uid) if uid != trust::me() => Some(format!("{peer}, uid {uid}")),
        Owner::Gone => Some(format!(
            "{peer}, a socket on this host that closed before its owner could be checked"
        )),
        Owner::Uid(_) | Owner::Remote => None,
    })
}

/// Just connected: is the listener this user's (or on another host)?
pub fn check_receiver(fd: &OwnedFd, obj: &str) -> Result<()> {
    match stranger(fd, obj)? {
        Some(who) => Err(trust::foreign_receiver(obj, &who)),
        None => Ok(()),
    }
}

pub fn set_nodelay(fd: &OwnedFd, object: &str) -> Result<()> {
    so::setsockopt(fd, sockopt::TcpNoDelay, &true).on(&object, "setsockopt(TCP_NODELAY)")?;
    narrate::call(
        format_args!("setsockopt(fd {}, TCP_NODELAY, 1) = 0", fd.as_raw_fd()),
        "sockets: TCP_NODELAY sends a small segment at once (no Nagle wait) for round trips",
    );
    Ok(())
}
