//! Sockets: Unix-domain stream, datagram and seqpacket sockets, TCP, and `socketpair(2)`.
//!
//! The receiver binds (and, for the connected types, listens); the sender retries its
//! `connect` while the name is missing (`ENOENT`) or nobody accepts (`ECONNREFUSED`), so
//! either side may start first. Byte streams (Unix stream, TCP) become an
//! [`FdStream`] carrying the common frame; datagram and seqpacket sockets keep message
//! boundaries and become a [`MsgLink`]: one datagram is one frame, header and payload.
//!
//! The socket file of a Unix-domain receiver:
//! - `bind(2)` creates it, exclusively (`EADDRINUSE` if the name exists), with the mode
//!   of the socket's inode less the umask. Binding under umask 177 makes it 0600 from
//!   its first instant; a `chmod` after `bind` would leave a window in which any user
//!   could connect. The umask is per process: the only other thread here is the signal
//!   thread, which creates no files.
//! - A name that exists already is probed with a `connect`: `ECONNREFUSED` means no
//!   socket is bound to it any more (a crashed run left it): it is removed and the bind
//!   retried. A successful connect means a live receiver: refused, as is anything that
//!   is not a socket, or not ours. A live receiver of ours takes such a probe in its
//!   stride: a connection that closes before its first byte is not a sender.
//! - Once the sender's first bytes arrive the name is removed (a connected socket needs
//!   no name), so even `kill -9` leaves nothing; until then a guard removes it on exit,
//!   Ctrl-C and SIGTERM.
//!
//! Datagrams have no connection to accept: the receiver binds PATH; the sender binds
//! an autobound abstract address (no file to clean up) and connects to PATH; the
//! receiver connects back to the address its first datagram came from, so echoes in
//! pingpong go there and no other socket can slip datagrams in. A datagram larger than
//! the socket can carry is refused with the limit named, never split or truncated.
//!
//! Who may be the peer (see [`trust`]): only this user. A sender sends nothing to a
//! socket file that is not a socket of its own, writable by nobody else, nor to a
//! stream or seqpacket peer whose `SO_PEERCRED` is another uid; a receiver drops a
//! connection (`SO_PEERCRED`) or datagram (`SO_PASSCRED`) from another uid and goes on
//! waiting. Over TCP on this host both ends look the peer's socket up in the kernel's
//! table for its uid; between hosts a shared secret ([`Secret`]) authenticates both
//! ends before any payload. A receiver keeps several connections in hand at once, so
//! one that stays silent holds up nobody.

use ipc_common::cleanup::{self, remove_if_same};
use ipc_common::error::{Context, Error, Kind, Result};
use ipc_common::frame::{check_len, FrameKind, Header, Hello, HEADER_LEN};
use ipc_common::link::Link;
use ipc_common::narrate;
use ipc_common::stream::{self, set_nonblocking, wait_ready, FdStream};
use ipc_common::wait::{Waiting, RETRY};
use ipc_common::workload::Describe;
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{
    self as so, sockopt, AddressFamily, Backlog, MsgFlags, SockFlag, SockaddrLike, SockaddrStorage,
    UnixAddr,
};
use nix::sys::stat::{lstat, umask, Mode, SFlag};
use std::collections::VecDeque;
use std::io::{self, IoSlice, IoSliceMut};
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

mod auth;
pub mod trust;
pub use auth::Secret;
use trust::Owner;

const IDEA_SOCKET: &str = "sockets: an endpoint with a kernel buffer plus protocol processing";
const IDEA_BIND: &str =
    "sockets: a name the peer can find (a file for Unix, an address:port for TCP)";
const IDEA_LISTEN: &str = "sockets: the kernel queues connections until accept";
const IDEA_ACCEPT: &str = "sockets: one new connected socket per peer";
const IDEA_CONNECT_UNIX: &str =
    "sockets: on one host the stack is shortcut: Unix domain, no protocol headers";
const IDEA_CONNECT_TCP: &str =
    "sockets: TCP runs the whole protocol (segments, acks), on loopback without a wire";
const IDEA_PAIR: &str =
    "sockets: a connected pair, like a pipe but two-way, inherited by a related process";
const IDEA_DGRAM: &str = "sockets: one send is one receive: a datagram keeps its boundaries";
const IDEA_OPT: &str = "sockets: per-socket kernel options (buffer size, Nagle)";
const IDEA_EARLY_UNLINK: &str = "cleanup: the peer is connected, a connected socket needs no name";

/// `af_unix` refuses a datagram longer than the send buffer less this.
const UNIX_DGRAM_OVERHEAD: usize = 32;
const WMEM_MAX: &str = "/proc/sys/net/core/wmem_max";
/// How long an accepted connection may stay silent before it is dropped. Meanwhile it
/// holds up nobody: the receiver keeps accepting and watching the others.
const SILENT_GRACE: Duration = Duration::from_secs(5);
/// Silent connections kept at once; past this the oldest is dropped.
const MAX_PENDING: usize = 16;
/// The longest a receiver's wait loop sleeps before looking at its deadlines again.
const TICK: Duration = Duration::from_millis(100);
const IDEA_PEER: &str = "sockets: the kernel knows who is at the other end of a local socket";

/// `--type`: the kind of socket.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum SocketType {
    /// A byte stream (SOCK_STREAM): no message boundaries, so every message is framed
    Stream,
    /// Datagrams (SOCK_DGRAM): each message one datagram, boundaries kept
    Dgram,
    /// Sequenced packets (SOCK_SEQPACKET): connected, reliable, boundaries kept
    Seqpacket,
}

impl SocketType {
    pub fn as_str(self) -> &'static str {
        match self {
            SocketType::Stream => "stream",
            SocketType::Dgram => "dgram",
            SocketType::Seqpacket => "seqpacket",
        }
    }

    fn nix(self) -> so::SockType {
        match self {
            SocketType::Stream => so::SockType::Stream,
            SocketType::Dgram => so::SockType::Datagram,
            SocketType::Seqpacket => so::SockType::SeqPacket,
        }
    }

    fn flag(self) -> &'static str {
        match self {
            SocketType::Stream => "SOCK_STREAM",
            SocketType::Dgram => "SOCK_DGRAM",
            SocketType::Seqpacket => "SOCK_SEQPACKET",
        }
    }
}

/// Where the receiver listens and the sender connects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    Unix(PathBuf),
    Tcp(SocketAddr),
}

impl Endpoint {
    /// `HOST:PORT` (`[::1]:PORT` for IPv6); the host may be a name. Port 0 lets the
    /// receiver take any free port and say which.
    pub fn tcp(s: &str) -> Result<Endpoint> {
        let bad = |why: String| {
            Error::usage(
                format!("--tcp {s}: {why}"),
                "give HOST:PORT, e.g. --tcp 127.0.0.1:5000 or --tcp [::1]:5000",
            )
        };
        let mut addrs = s.to_socket_addrs().map_err(|e| bad(e.to_string()))?;
        addrs
            .next()
            .map(Endpoint::Tcp)
            .ok_or_else(|| bad("the host has no address".into()))
    }

    /// Names the endpoint in messages: `socket /tmp/ipc-socket`, `TCP 127.0.0.1:5000`.
    pub fn object(&self) -> String {
        match self {
            Endpoint::Unix(p) => format!("socket {}", p.display()),
            Endpoint::Tcp(a) => format!("TCP {a}"),
        }
    }

    fn describe(&self, ty: SocketType) -> Describe {
        match self {
            Endpoint::Unix(p) => Describe::new("unix")
                .with("type", ty.as_str())
                .with("path", p.display()),
            Endpoint::Tcp(a) => Describe::new("tcp").with("address", a),
        }
    }

    /// TCP is a byte stream: datagram and seqpacket exist only for `--unix`.
    pub fn check_type(&self, ty: SocketType) -> Result<()> {
        if matches!(self, Endpoint::Tcp(_)) && ty != SocketType::Stream {
            return Err(Error::usage(
                format!("--tcp with --type {}", ty.as_str()),
                "TCP is a byte stream (--type stream); use --unix PATH for dgram or seqpacket",
            ));
        }
        Ok(())
    }

    fn family(&self) -> AddressFamily {
        match self {
            Endpoint::Unix(_) => AddressFamily::Unix,
            Endpoint::Tcp(SocketAddr::V4(_)) => AddressFamily::Inet,
            Endpoint::Tcp(SocketAddr::V6(_)) => AddressFamily::Inet6,
        }
    }
}

/// The peer command for the waiting note, given the endpoint actually bound (a TCP
/// receiver asked for port 0 learns its port only then).
pub type PeerCommand<'a> = &'a dyn Fn(&Endpoint) -> String;

/// A new non-blocking, close-on-exec socket.
fn new_socket(family: AddressFamily, ty: SocketType, object: &str) -> Result<OwnedFd> {
    let fd = so::socket(
        family,
        ty.nix(),
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        None,
    )
    .on(&object, "socket")?;
    narrate::repeated(
        "socket",
        format_args!(
            "socket({}, {}) = fd {}",
            family_name(family),
            ty.flag(),
            fd.as_raw_fd()
        ),
        IDEA_SOCKET,
    );
    Ok(fd)
}

fn family_name(f: AddressFamily) -> &'static str {
    match f {
        AddressFamily::Unix => "AF_UNIX",
        AddressFamily::Inet => "AF_INET",
        AddressFamily::Inet6 => "AF_INET6",
        _ => "AF_?",
    }
}

fn unix_addr(path: &Path) -> Result<UnixAddr> {
    UnixAddr::new(path).map_err(|_| {
        Error::usage(
            format!(
                "socket path {} is {} bytes; a Unix socket address holds at most 107",
                path.display(),
                path.as_os_str().len()
            ),
            "choose a shorter --unix path",
        )
    })
}

/// `bind(2)` under umask 177, so the socket file is born 0600 (see the module doc).
fn bind_private(fd: &OwnedFd, addr: &UnixAddr) -> nix::Result<()> {
    let old = umask(Mode::from_bits_truncate(0o177));
    let r = so::bind(fd.as_raw_fd(), addr);
    umask(old);
    r
}

/// The name exists: decide whether it is a stale socket of ours (`Ok`, safe to
/// replace) or something to refuse and leave alone.
fn check_existing(path: &Path, ty: SocketType) -> Result<()> {
    let obj = format!("socket {}", path.display());
    let st = lstat(path).on(&obj, "stat")?;
    let refuse = |what: String, remedy: String| Err(Error::new(Kind::Runtime, &obj, what, remedy));
    let leave = format!(
        "not touching it; remove it yourself (rm {}) or choose another --name or --unix path",
        path.display()
    );
    if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT != SFlag::S_IFSOCK {
        return refuse("exists and is not a socket".into(), leave);
    }
    let me = nix::unistd::geteuid().as_raw();
    if st.st_uid != me {
        return refuse(
            format!("belongs to uid {}, not to this user (uid {me})", st.st_uid),
            leave,
        );
    }
    // Probe: is anything bound to the name? (A live receiver of ours ignores a
    // connection that closes before sending anything.)
    let probe = new_socket(AddressFamily::Unix, ty, &obj)?;
    let r = so::connect(probe.as_raw_fd(), &unix_addr(path)?);
    drop(probe);
    match r {
        Err(Errno::ECONNREFUSED) => {
            narrate::call(
                format_args!("connect({path:?}) = ECONNREFUSED: nothing is bound to it"),
                "cleanup: a stale socket file from a crashed run; replacing it",
            );
            Ok(())
        }
        // Connected, queue full, another type, or a datagram socket talking to another
        // peer: something lives on this name.
        Ok(()) | Err(Errno::EAGAIN | Errno::EPROTOTYPE | Errno::EPERM) => refuse(
            "is in use: another receiver is bound to it".into(),
            "stop that receiver first, or choose another --name or --unix path".into(),
        ),
        Err(e) => Err(Error::os(
            &obj,
            "connect (probing an existing socket file)",
            e.into(),
        )),
    }
}

/// Bind a Unix socket at `path`, replacing a stale socket file once.
/// Returns the socket, the guard that removes the file, and the file's identity.
fn bind_unix(path: &Path, ty: SocketType) -> Result<(OwnedFd, cleanup::Guard, (u64, u64))> {
    let obj = format!("socket {}", path.display());
    let addr = unix_addr(path)?;
    let mut replaced = false;
    loop {
        let fd = new_socket(AddressFamily::Unix, ty, &obj)?;
        match bind_private(&fd, &addr) {
            Ok(()) => {
                narrate::call(
                    format_args!(
                        "bind(fd {}, {path:?}) = 0 under umask 177: the file is 0600",
                        fd.as_raw_fd()
                    ),
                    IDEA_BIND,
                );
                let (guard, id) = cleanup::remove_path_on_exit(&obj, path, IDEA_EARLY_UNLINK)?;
                return Ok((fd, guard, id));
            }
            Err(Errno::EADDRINUSE) if !replaced => {
                check_existing(path, ty)?;
                let st = lstat(path).on(&obj, "stat")?;
                remove_if_same(path, (st.st_dev, st.st_ino), "cleanup: the stale name goes");
                narrate::note(format_args!(
                    "replaced a stale socket file {} (nothing was bound to it)",
                    path.display()
                ));
                replaced = true;
            }
            Err(Errno::EADDRINUSE) => {
                return Err(Error::new(
                    Kind::Runtime,
                    &obj,
                    "bind: the name was taken again while replacing a stale socket file",
                    "another receiver started at the same moment; stop it or choose another --name",
                ))
            }
            Err(e) => return Err(Error::os(&obj, "bind", e.into()).with_remedy(
                "check that the directory exists and is writable, or choose another --unix path",
            )),
        }
    }
}

fn listen(fd: &OwnedFd, object: &str) -> Result<()> {
    let backlog = Backlog::new(8).expect("8 is a valid backlog");
    so::listen(fd, backlog).on(&object, "listen")?;
    narrate::call(
        format_args!("listen(fd {}, 8) = 0", fd.as_raw_fd()),
        IDEA_LISTEN,
    );
    Ok(())
}

/// A listening socket; std's `accept` hands back an owned, close-on-exec descriptor.
enum Listener {
    Unix(UnixListener),
    Tcp(TcpListener),
}

impl Listener {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
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
}

/// Whether an accepted connection may be the sender: from this user, as the kernel
/// tells (`SO_PEERCRED` for Unix, the connection table for TCP on this host). A TCP
/// peer on another host passes here; the shared secret, if any, decides later.
fn admit(conn: &OwnedFd, listener: &Listener, object: &str) -> Result<bool> {
    let me = trust::me();
    let refused = |who: String| {
        narrate::note(format_args!(
            "{object}: refused a connection from {who}: not this user (uid {me}); still waiting for the sender"
        ));
        Ok(false)
    };
    match listener {
        Listener::Unix(_) => {
            let (uid, pid) = trust::peer_cred(conn, object)?;
            narrate::call(
                format_args!(
                    "getsockopt(fd {}, SO_PEERCRED) = uid {uid}, pid {pid}",
                    conn.as_raw_fd()
                ),
                IDEA_PEER,
            );
            if uid != me {
                return refused(format!("uid {uid} (pid {pid})"));
            }
        }
        Listener::Tcp(_) => {
            let (local, peer) = tcp_addrs(conn, object)?;
            let owner = trust::tcp_owner(peer, local)?;
            narrate::call(
                format_args!("/proc/net/tcp: {peer} -> {local} is {owner:?}"),
                IDEA_PEER,
            );
            match owner {
                Owner::Uid(uid) if uid != me => return refused(format!("{peer}, uid {uid}")),
                Owner::Gone => {
                    return refused(format!(
                    "{peer}, a socket on this host that closed before its owner could be checked"
                ))
                }
                Owner::Uid(_) | Owner::Remote => {}
            }
        }
    }
    Ok(true)
}

/// A TCP socket's own address and its peer's.
fn tcp_addrs(fd: &OwnedFd, object: &str) -> Result<(SocketAddr, SocketAddr)> {
    let s = std::net::TcpStream::from(fd.try_clone().on(&object, "dup")?);
    Ok((
        s.local_addr().on(&object, "getsockname")?,
        s.peer_addr().on(&object, "getpeername")?,
    ))
}

/// Accept connections until one of this user's sends its first byte: that is the
/// sender. Several are watched at once, so a silent one (held for [`SILENT_GRACE`])
/// cannot stall the real sender; one that closes before its first byte (a probe by
/// another receiver, a port scan) is dropped, as is one from another user.
fn accept_sender(listener: &Listener, w: &mut Waiting) -> Result<OwnedFd> {
    let mut pending: VecDeque<(OwnedFd, Instant)> = VecDeque::new();
    loop {
        if w.expired() {
            return Err(w.gave_up(if pending.is_empty() {
                "no sender connected"
            } else {
                "no connected peer sent anything"
            }));
        }
        w.tick("a sender");
        let (listener_ready, ready) = {
            let mut fds = vec![PollFd::new(listener.as_fd(), PollFlags::POLLIN)];
            fds.extend(
                pending
                    .iter()
                    .map(|(c, _)| PollFd::new(c.as_fd(), PollFlags::POLLIN)),
            );
            let ms = w.left().min(TICK).as_millis();
            let ms = PollTimeout::try_from(i32::try_from(ms).unwrap_or(i32::MAX))
                .unwrap_or(PollTimeout::MAX);
            match poll(&mut fds, ms) {
                Ok(_) | Err(Errno::EINTR) => {}
                Err(e) => return Err(Error::os(w.object(), "poll", e.into())),
            }
            let seen = |f: &PollFd<'_>| f.revents().is_some_and(|r| !r.is_empty());
            let ready: Vec<bool> = fds[1..].iter().map(seen).collect();
            (seen(&fds[0]), ready)
        };
        // Newest first, so removing by index leaves the earlier ones in place.
        for i in (0..ready.len()).rev().filter(|&i| ready[i]) {
            let mut one = [0u8; 1];
            let conn = &pending[i].0;
            match so::recv(conn.as_raw_fd(), &mut one, MsgFlags::MSG_PEEK) {
                Ok(0) | Err(Errno::ECONNRESET) => {
                    narrate::call(
                        format_args!("recv(fd {}, MSG_PEEK) = 0", conn.as_raw_fd()),
                        "sockets: a connection that closed unused was a probe, not a sender",
                    );
                    pending.remove(i);
                }
                Ok(_) => {
                    let (conn, _) = pending.remove(i).expect("index in range");
                    return Ok(conn);
                }
                Err(Errno::EAGAIN | Errno::EINTR) => {}
                Err(e) => return Err(Error::os(w.object(), "recv(MSG_PEEK)", e.into())),
            }
        }
        let before = pending.len();
        pending.retain(|(_, since)| since.elapsed() < SILENT_GRACE);
        if pending.len() < before {
            narrate::note(format_args!(
                "{}: dropped {} connection(s) that sent nothing for {} s; still waiting for the sender",
                w.object(),
                before - pending.len(),
                SILENT_GRACE.as_secs()
            ));
        }
        if !listener_ready {
            continue;
        }
        // Take every queued connection now: the real sender may be behind a silent one.
        loop {
            let conn = match listener.accept() {
                Ok(c) => c,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // Gone before we took it: nothing to do.
                Err(e) if e.kind() == io::ErrorKind::ConnectionAborted => continue,
                Err(e) => return Err(Error::os(w.object(), "accept", e)),
            };
            narrate::call(
                format_args!(
                    "accept(fd {}) = fd {}",
                    listener.as_fd().as_raw_fd(),
                    conn.as_raw_fd()
                ),
                IDEA_ACCEPT,
            );
            set_nonblocking(conn.as_fd(), w.object())?;
            if !admit(&conn, listener, w.object())? {
                continue;
            }
            if pending.len() == MAX_PENDING {
                pending.pop_front();
                narrate::note(format_args!(
                    "{}: more than {MAX_PENDING} silent connections; dropped the oldest",
                    w.object()
                ));
            }
            pending.push_back((conn, Instant::now()));
        }
    }
}

/// The receiving side: bind, listen, accept the sender (or wait for the first
/// datagram), then remove the socket file. Returns the channel and its description.
/// With a `secret` (TCP only) the sender must prove it holds the same one.
pub fn receive_side(
    ep: &Endpoint,
    ty: SocketType,
    timeout: Duration,
    peer: PeerCommand<'_>,
    secret: Option<&Secret>,
) -> Result<(SockLink, Describe)> {
    ep.check_type(ty)?;
    match ep {
        Endpoint::Unix(path) => {
            let obj = ep.object();
            let (fd, guard, id) = bind_unix(path, ty)?;
            let mut w = Waiting::new(&obj, peer(ep), timeout);
            let conn = match ty {
                SocketType::Dgram => {
                    // Each datagram then carries its sender's credentials.
                    so::setsockopt(&fd, sockopt::PassCred, &true)
                        .on(&obj, "setsockopt(SO_PASSCRED)")?;
                    connect_to_first_sender(&fd, &mut w)?;
                    fd
                }
                _ => {
                    listen(&fd, &obj)?;
                    let listener = Listener::Unix(UnixListener::from(fd));
                    accept_sender(&listener, &mut w)?
                }
            };
            remove_if_same(path, id, IDEA_EARLY_UNLINK);
            guard.disarm();
            let mut link = SockLink::from_fd(conn, ty, obj, timeout, None)?;
            if let SockLink::Msg(m) = &mut link {
                m.only_uid = (ty == SocketType::Dgram).then(trust::me);
            }
            Ok((link, ep.describe(ty)))
        }
        Endpoint::Tcp(addr) => {
            let obj = ep.object();
            let fd = new_socket(ep.family(), ty, &obj)?;
            // A port still in TIME_WAIT from the last run may be bound again at once.
            so::setsockopt(&fd, sockopt::ReuseAddr, &true).on(&obj, "setsockopt(SO_REUSEADDR)")?;
            so::bind(fd.as_raw_fd(), &SockaddrStorage::from(*addr)).map_err(|e| {
                let err = Error::os(&obj, "bind", e.into());
                if e == Errno::EADDRINUSE {
                    err.with_remedy(format!(
                        "another program listens on port {0} (see `ss -ltnp 'sport = :{0}'`); choose another port",
                        addr.port()
                    ))
                } else {
                    err.with_remedy("give an address of this machine (e.g. 127.0.0.1)")
                }
            })?;
            let listener = TcpListener::from(fd);
            let bound = listener.local_addr().on(&obj, "getsockname")?;
            let bound_ep = Endpoint::Tcp(bound);
            let obj = bound_ep.object();
            narrate::call(
                format_args!("bind(fd {}, {bound}) = 0", listener.as_raw_fd()),
                IDEA_BIND,
            );
            let fd = OwnedFd::from(listener);
            listen(&fd, &obj)?;
            let listening = cleanup::on_exit_recorded(
                obj.clone(),
                ipc_common::record::Object::tcp(bound),
                || {},
            );
            if addr.port() == 0 {
                narrate::note(format_args!("listening on {obj}"));
            }
            if secret.is_none() && !bound.ip().is_loopback() {
                narrate::note(format_args!(
                    "warning: {obj} is reachable from other hosts and no shared secret is set: anyone who can reach this port can take part (give both sides --secret-file PATH or {})",
                    auth::ENV
                ));
            }
            let mut w = Waiting::new(&obj, peer(&bound_ep), timeout);
            let listener = Listener::Tcp(TcpListener::from(fd));
            let conn = accept_sender(&listener, &mut w)?;
            drop((listener, listening));
            if let Some(secret) = secret {
                auth::as_receiver(&conn, secret, &obj, timeout)?;
                narrate::note(format_args!(
                    "{obj}: the sender proved it holds the shared secret ({})",
                    secret.source
                ));
            }
            // The receiver writes only pingpong echoes: send each at once.
            set_nodelay(&conn, &obj)?;
            let link = SockLink::from_fd(conn, ty, obj, timeout, None)?;
            Ok((link, bound_ep.describe(ty)))
        }
    }
}

/// A datagram receiver: wait for the first datagram from this user, then connect to
/// its sender (when it has an address), so replies go there and no one else can send
/// to us. Datagrams from other users (as `SO_PASSCRED` tells) are dropped.
fn connect_to_first_sender(fd: &OwnedFd, w: &mut Waiting) -> Result<()> {
    loop {
        if w.ready(fd.as_fd(), PollFlags::POLLIN, "a sender")?
            .is_none()
        {
            return Err(w.gave_up("no sender sent a datagram"));
        }
        let mut none: [IoSliceMut<'_>; 0] = [];
        let mut space = nix::cmsg_space!(libc::ucred);
        match so::recvmsg::<UnixAddr>(
            fd.as_raw_fd(),
            &mut none,
            Some(&mut space),
            MsgFlags::MSG_PEEK,
        ) {
            Ok(m) => {
                // An unbound sender has no address: the kernel returns a length of 0,
                // which nix's `is_unnamed` would trip over, so look at the length first.
                let from = m.address.filter(|a| {
                    SockaddrLike::len(a) as usize > std::mem::size_of::<libc::sa_family_t>()
                        && !a.is_unnamed()
                });
                let (uid, pid) = sender_cred(&m);
                if uid != trust::me() {
                    drop_datagram(fd, w.object(), uid, pid)?;
                    continue;
                }
                if let Some(a) = from {
                    // A quick sender may have sent everything and closed already: its
                    // datagrams are still queued here, and only replies needed the connect.
                    match so::connect(fd.as_raw_fd(), &a) {
                        Err(Errno::ECONNREFUSED) => return Ok(()),
                        r => r.on(&w.object(), "connect (to the sender)")?,
                    }
                    narrate::call(
                        format_args!("connect(fd {}, the sender's {a}) = 0", fd.as_raw_fd()),
                        "sockets: a datagram socket connected to its one peer: replies go there",
                    );
                }
                return Ok(());
            }
            Err(Errno::EAGAIN | Errno::EINTR) => {}
            Err(e) => return Err(Error::os(w.object(), "recvmsg(MSG_PEEK)", e.into())),
        }
    }
}

/// The sender's uid and pid from a datagram's `SCM_CREDENTIALS`. With `SO_PASSCRED`
/// the kernel always attaches them; a datagram without is treated as nobody's.
fn sender_cred<S>(m: &so::RecvMsg<'_, '_, S>) -> (u32, i32) {
    m.cmsgs()
        .ok()
        .and_then(|mut cs| {
            cs.find_map(|c| match c {
                so::ControlMessageOwned::ScmCredentials(c) => Some((c.uid(), c.pid())),
                _ => None,
            })
        })
        .unwrap_or((u32::MAX, 0))
}

/// Read and discard the datagram at the head of the queue: it is another user's.
fn drop_datagram(fd: &OwnedFd, object: &str, uid: u32, pid: i32) -> Result<()> {
    match so::recv(fd.as_raw_fd(), &mut [], MsgFlags::MSG_TRUNC) {
        Ok(_) | Err(Errno::EAGAIN | Errno::EINTR) => {}
        Err(e) => return Err(Error::os(object, "recv (dropping a datagram)", e.into())),
    }
    narrate::note(format_args!(
        "{object}: dropped a datagram from uid {uid} (pid {pid}): not this user (uid {})",
        trust::me()
    ));
    Ok(())
}

fn set_nodelay(fd: &OwnedFd, object: &str) -> Result<()> {
    so::setsockopt(fd, sockopt::TcpNoDelay, &true).on(&object, "setsockopt(TCP_NODELAY)")?;
    narrate::call(
        format_args!("setsockopt(fd {}, TCP_NODELAY, 1) = 0", fd.as_raw_fd()),
        "sockets: TCP_NODELAY sends a small segment at once (no Nagle wait) for round trips",
    );
    Ok(())
}

/// The sending side: connect, retrying until `timeout` while the receiver is not there.
/// `payload` is the largest message (a datagram socket must be able to carry it);
/// `pingpong` switches Nagle off on TCP. Nothing is sent until the receiver is known
/// to be this user's (or, over TCP with a `secret`, to hold the same secret).
pub fn send_side(
    ep: &Endpoint,
    ty: SocketType,
    timeout: Duration,
    peer: PeerCommand<'_>,
    payload: usize,
    pingpong: bool,
    secret: Option<&Secret>,
) -> Result<(SockLink, Describe)> {
    ep.check_type(ty)?;
    let obj = ep.object();
    let mut w = Waiting::new(&obj, peer(ep), timeout);
    let addr: Box<dyn SockaddrLike> = match ep {
        Endpoint::Unix(p) => Box::new(unix_addr(p)?),
        Endpoint::Tcp(a) => Box::new(SockaddrStorage::from(*a)),
    };
    let (idea, whom) = match ep {
        Endpoint::Unix(_) => (IDEA_CONNECT_UNIX, "a receiver"),
        Endpoint::Tcp(_) => (IDEA_CONNECT_TCP, "a receiver"),
    };
    let fd = loop {
        // Refuse another user's socket file before connecting; `None`: not there yet.
        let file = match ep {
            Endpoint::Unix(p) => trust::own_socket_file(p)?,
            Endpoint::Tcp(_) => None,
        };
        let fd = new_socket(ep.family(), ty, &obj)?;
        match ty {
            SocketType::Dgram => {
                autobind(&fd, &obj)?;
                reserve(&fd, &obj, payload)?;
            }
            SocketType::Seqpacket => reserve(&fd, &obj, payload)?,
            SocketType::Stream if pingpong && matches!(ep, Endpoint::Tcp(_)) => {
                set_nodelay(&fd, &obj)?
            }
            SocketType::Stream => {}
        }
        let r = match so::connect(fd.as_raw_fd(), addr.as_ref()) {
            // No socket file of ours yet: as if the name were missing.
            _ if matches!(ep, Endpoint::Unix(_)) && file.is_none() => Err(Errno::ENOENT),
            // TCP: the handshake is under way; wait for it (bounded), then ask how it went.
            Err(Errno::EINPROGRESS) => {
                if wait_ready(fd.as_fd(), PollFlags::POLLOUT, w.left(), &obj)?.is_none() {
                    return Err(w.gave_up("no receiver accepted the connection"));
                }
                match so::getsockopt(&fd, sockopt::SocketError).on(&obj, "getsockopt(SO_ERROR)")? {
                    0 => Ok(()),
                    e => Err(Errno::from_raw(e)),
                }
            }
            r => r,
        };
        match r {
            Ok(()) => {
                narrate::call(
                    format_args!("connect(fd {}, {}) = 0", fd.as_raw_fd(), ep_text(ep)),
                    idea,
                );
                check_receiver(&fd, ep, ty, file, &obj)?;
                break fd;
            }
            // Not there yet (no name, or nobody bound/listening, or the queue is full).
            Err(Errno::ENOENT | Errno::ECONNREFUSED | Errno::EAGAIN) => {
                if w.expired() {
                    return Err(w.gave_up("no receiver was there"));
                }
                narrate::repeated(
                    "connect-retry",
                    format_args!(
                        "connect(fd {}, {}) = {}: retrying",
                        fd.as_raw_fd(),
                        ep_text(ep),
                        r.unwrap_err()
                    ),
                    "sockets: nobody listens yet; the sender retries until --timeout",
                );
                w.tick(whom);
                std::thread::sleep(RETRY);
            }
            Err(Errno::EPROTOTYPE) => {
                return Err(Error::usage(
                    format!(
                        "{obj}: the receiver there uses another socket type than --type {}",
                        ty.as_str()
                    ),
                    "give both sides the same --type",
                ))
            }
            Err(e) => {
                return Err(Error::os(&obj, "connect", e.into())
                    .with_remedy("check the address, and that the receiver runs"))
            }
        }
    };
    if let (Endpoint::Tcp(_), Some(secret)) = (ep, secret) {
        auth::as_sender(&fd, secret, &obj, timeout)?;
        narrate::note(format_args!(
            "{obj}: the receiver proved it holds the shared secret ({})",
            secret.source
        ));
    }
    let linger = match ep {
        Endpoint::Tcp(_) => Some(fd.try_clone().on(&obj, "dup")?),
        Endpoint::Unix(_) => None,
    };
    let link = SockLink::from_fd(fd, ty, obj, timeout, Some(payload))?;
    Ok((link.lingering(linger, timeout), ep.describe(ty)))
}

/// Just connected: is the receiver this user's? A Unix stream or seqpacket listener
/// says who it is (`SO_PEERCRED`); a datagram socket does not, so its file must still
/// be the one checked before connecting (the sticky /tmp lets only its owner replace
/// it). On TCP the listener's socket is looked up in the kernel's table.
fn check_receiver(
    fd: &OwnedFd,
    ep: &Endpoint,
    ty: SocketType,
    file: Option<(u64, u64)>,
    obj: &str,
) -> Result<()> {
    let me = trust::me();
    let refuse = |owner: String| {
        Err(Error::new(
            Kind::Runtime,
            obj,
            format!("the receiver is {owner}, not this user (uid {me}): sending nothing to it"),
            "another user got there first; stop that program or choose another --name, --unix path or port",
        ))
    };
    match ep {
        Endpoint::Unix(p) if ty == SocketType::Dgram => {
            let now = trust::own_socket_file(p)?;
            if now != file {
                return Err(Error::new(
                    Kind::Runtime,
                    obj,
                    "the socket file was replaced while connecting: sending nothing to it",
                    "run again; if it repeats, another program is racing for this name: choose another --name",
                ));
            }
        }
        Endpoint::Unix(_) => {
            let (uid, pid) = trust::peer_cred(fd, obj)?;
            narrate::call(
                format_args!(
                    "getsockopt(fd {}, SO_PEERCRED) = uid {uid}, pid {pid}",
                    fd.as_raw_fd()
                ),
                IDEA_PEER,
            );
            if uid != me {
                return refuse(format!("uid {uid} (pid {pid})"));
            }
        }
        Endpoint::Tcp(_) => {
            let (local, peer) = tcp_addrs(fd, obj)?;
            let owner = trust::tcp_owner(peer, local)?;
            narrate::call(
                format_args!("/proc/net/tcp: {peer} -> {local} is {owner:?}"),
                IDEA_PEER,
            );
            match owner {
                Owner::Uid(uid) if uid != me => return refuse(format!("a socket of uid {uid}")),
                Owner::Gone => {
                    return refuse(
                        "a socket on this host that closed before its owner could be checked"
                            .into(),
                    )
                }
                Owner::Uid(_) | Owner::Remote => {}
            }
        }
    }
    Ok(())
}

fn ep_text(ep: &Endpoint) -> String {
    match ep {
        Endpoint::Unix(p) => format!("{p:?}"),
        Endpoint::Tcp(a) => a.to_string(),
    }
}

/// Bind a datagram sender to an autobound abstract address: the receiver needs an
/// address to answer to, and an abstract name leaves no file behind.
fn autobind(fd: &OwnedFd, object: &str) -> Result<()> {
    so::bind(fd.as_raw_fd(), &UnixAddr::new_unnamed()).on(&object, "bind (autobind)")?;
    let me: UnixAddr = so::getsockname(fd.as_raw_fd()).on(&object, "getsockname")?;
    narrate::repeated(
        "autobind",
        format_args!("bind(fd {}, autobind) = 0: {me}", fd.as_raw_fd()),
        "sockets: an abstract address (no file) the receiver can answer to",
    );
    Ok(())
}

fn wmem_max() -> String {
    std::fs::read_to_string(WMEM_MAX)
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

/// Make sure a message socket can carry a frame with `payload` bytes: raise SO_SNDBUF
/// if need be (the kernel caps it at twice /proc/sys/net/core/wmem_max), and refuse
/// with the limit named when that is not enough.
fn reserve(fd: &OwnedFd, object: &str, payload: usize) -> Result<()> {
    let need = HEADER_LEN + payload + UNIX_DGRAM_OVERHEAD;
    let have = so::getsockopt(fd, sockopt::SndBuf).on(&object, "getsockopt(SO_SNDBUF)")?;
    if need <= have {
        return Ok(());
    }
    so::setsockopt(fd, sockopt::SndBuf, &need).on(&object, "setsockopt(SO_SNDBUF)")?;
    let have = so::getsockopt(fd, sockopt::SndBuf).on(&object, "getsockopt(SO_SNDBUF)")?;
    narrate::call(
        format_args!(
            "setsockopt(fd {}, SO_SNDBUF, {need}) = 0: now {have}",
            fd.as_raw_fd()
        ),
        IDEA_OPT,
    );
    if need > have {
        return Err(too_big(object, HEADER_LEN + payload, have));
    }
    Ok(())
}

fn too_big(object: &str, datagram: usize, sndbuf: usize) -> Error {
    let limit = sndbuf.saturating_sub(UNIX_DGRAM_OVERHEAD);
    Error::new(
        Kind::Usage,
        object,
        format!(
            "a message of {datagram} bytes ({HEADER_LEN}-byte header and payload) is more than one datagram can carry here, {limit} bytes (SO_SNDBUF {sndbuf} less {UNIX_DGRAM_OVERHEAD})"
        ),
        format!(
            "lower --size to at most {}, or raise {WMEM_MAX} (now {}; a socket may use twice it), e.g. sysctl -w net.core.wmem_max={}",
            limit.saturating_sub(HEADER_LEN),
            wmem_max(),
            datagram + UNIX_DGRAM_OVERHEAD
        ),
    )
}

/// `socketpair(2)`: two connected Unix sockets of type `ty`, close-on-exec (`run`
/// clears the flag on the end it hands to its child).
pub fn pair(ty: SocketType) -> Result<(OwnedFd, OwnedFd)> {
    let (a, b) = so::socketpair(AddressFamily::Unix, ty.nix(), None, SockFlag::SOCK_CLOEXEC)
        .on(&format!("socketpair ({})", ty.as_str()), "socketpair")?;
    narrate::call(
        format_args!(
            "socketpair(AF_UNIX, {}) = [fd {}, fd {}]",
            ty.flag(),
            a.as_raw_fd(),
            b.as_raw_fd()
        ),
        IDEA_PAIR,
    );
    Ok((a, b))
}

/// A connected socket as a channel: a byte stream or a message socket.
pub enum SockLink {
    Stream(FdStream),
    /// A TCP sender's stream and its socket once more: after the last byte it waits for
    /// the receiver to close first, so its socket (and with it its owner) stays in the
    /// kernel's table until the receiver has checked it; a closed one keeps no owner.
    Lingering(FdStream, OwnedFd, Duration),
    Msg(MsgLink),
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
        Ok(match ty {
            SocketType::Stream => {
                // One socket, two descriptors: FdStream reads one and writes the other.
                let rd = fd.try_clone().on(&object, "dup")?;
                SockLink::Stream(FdStream::new(object, Some(rd), Some(fd), timeout)?)
            }
            _ => SockLink::Msg(MsgLink::new(fd, ty, object, timeout, payload)?),
        })
    }

    /// A TCP sender's stream, given `Some(its socket)`, lingers after its last byte.
    pub fn lingering(self, fd: Option<OwnedFd>, timeout: Duration) -> SockLink {
        match (self, fd) {
            (SockLink::Stream(s), Some(fd)) => SockLink::Lingering(s, fd, timeout),
            (link, _) => link,
        }
    }

    /// The sender is done. A datagram socket has no end of file: in `--raw` an empty
    /// datagram marks the end (with frames, the END frame does). Streams end on close;
    /// a lingering one shuts its sending side and waits (at most its timeout) for the
    /// receiver to close.
    pub fn finish_send(&mut self, raw: bool) -> Result<()> {
        match self {
            SockLink::Msg(m) if raw && m.ty == SocketType::Dgram => m.send_parts(&[]),
            SockLink::Lingering(s, fd, timeout) => linger(fd, s.object(), *timeout),
            _ => Ok(()),
        }
    }

    fn inner(&mut self) -> &mut dyn Link {
        match self {
            SockLink::Stream(s) | SockLink::Lingering(s, ..) => s,
            SockLink::Msg(m) => m,
        }
    }
}

/// Shut the sending side, then read (and discard: the transfer is over) until the
/// receiver closes, or the timeout passes; neither is an error, every byte was sent.
fn linger(fd: &OwnedFd, object: &str, timeout: Duration) -> Result<()> {
    match so::shutdown(fd.as_raw_fd(), so::Shutdown::Write) {
        Ok(()) => {}
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
        match self {
            SockLink::Stream(s) | SockLink::Lingering(s, ..) => s.object(),
            SockLink::Msg(m) => m.object(),
        }
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

/// A datagram or seqpacket socket: each frame is one message, the 24-byte header and
/// the payload sent together with one `sendmsg(2)` (two iovecs, no copy in between)
/// and received with one `recvmsg(2)` straight into the header and the caller's
/// buffer. `MSG_TRUNC` tells the real length, so a message is never cut silently.
pub struct MsgLink {
    object: String,
    fd: OwnedFd,
    ty: SocketType,
    timeout: Duration,
    /// A datagram receiver takes datagrams from this uid only (`SO_PASSCRED` is on).
    only_uid: Option<u32>,
}

impl MsgLink {
    pub fn new(
        fd: OwnedFd,
        ty: SocketType,
        object: String,
        timeout: Duration,
        payload: Option<usize>,
    ) -> Result<MsgLink> {
        set_nonblocking(fd.as_fd(), &object)?;
        if let Some(p) = payload {
            reserve(&fd, &object, p)?;
        }
        Ok(MsgLink {
            object,
            fd,
            ty,
            timeout,
            only_uid: None,
        })
    }

    fn wait(&self, events: PollFlags, what: &str) -> Result<()> {
        match wait_ready(self.fd.as_fd(), events, self.timeout, &self.object)? {
            Some(_) => Ok(()),
            None => Err(stream::stalled(&self.object, self.timeout, what)),
        }
    }

    fn peer_gone(&self, call: &str, e: Errno) -> Error {
        let mut err = Error::os(&self.object, call, e.into());
        err.kind = Kind::Peer;
        err.remedy = "the other side closed its socket early; check its output for why".into();
        err
    }

    /// One message made of `parts`, all or nothing.
    fn send_parts(&mut self, parts: &[IoSlice<'_>]) -> Result<()> {
        let total: usize = parts.iter().map(|p| p.len()).sum();
        loop {
            match so::sendmsg::<()>(
                self.fd.as_raw_fd(),
                parts,
                &[],
                MsgFlags::MSG_NOSIGNAL,
                None,
            ) {
                Ok(n) => {
                    narrate::repeated(
                        "sendmsg",
                        format_args!("sendmsg(fd {}, {total} bytes) = {n}", self.fd.as_raw_fd()),
                        IDEA_DGRAM,
                    );
                    return Ok(());
                }
                Err(Errno::EAGAIN) => self.wait(PollFlags::POLLOUT, "the reader took nothing")?,
                Err(Errno::EINTR) => {}
                Err(Errno::EMSGSIZE) => {
                    let have = so::getsockopt(&self.fd, sockopt::SndBuf).unwrap_or(0);
                    return Err(too_big(&self.object, total, have));
                }
                Err(
                    e @ (Errno::ECONNREFUSED | Errno::EPIPE | Errno::ECONNRESET | Errno::ENOTCONN),
                ) => return Err(self.peer_gone("sendmsg", e)),
                Err(e @ (Errno::ENOBUFS | Errno::ENOMEM)) => {
                    return Err(
                        Error::os(&self.object, "sendmsg", e.into()).with_remedy(format!(
                            "the kernel could not allocate a {total}-byte datagram; lower --size"
                        )),
                    )
                }
                Err(e) => return Err(Error::os(&self.object, "sendmsg", e.into())),
            }
        }
    }

    /// Receive one message into `parts` (with `MSG_PEEK` in `flags`: look at it and
    /// leave it queued); returns its real length (which may exceed the buffers: the
    /// caller checks).
    fn recv_parts(
        &mut self,
        parts: &mut [IoSliceMut<'_>],
        flags: MsgFlags,
    ) -> Result<(usize, bool)> {
        loop {
            let mut space = nix::cmsg_space!(libc::ucred);
            let cmsg = self.only_uid.is_some().then_some(&mut space);
            match so::recvmsg::<()>(
                self.fd.as_raw_fd(),
                parts,
                cmsg,
                flags | MsgFlags::MSG_TRUNC,
            ) {
                Ok(m) => {
                    let (n, cut) = (m.bytes, m.flags.contains(MsgFlags::MSG_TRUNC));
                    if let Some(me) = self.only_uid {
                        // Queued before we connected to our sender: another user's.
                        let (uid, pid) = sender_cred(&m);
                        if uid != me {
                            narrate::note(format_args!(
                                "{}: dropped a datagram from uid {uid} (pid {pid}): not this user (uid {me})",
                                self.object
                            ));
                            if flags.contains(MsgFlags::MSG_PEEK) {
                                // A peek leaves it queued: take it off, or it comes back.
                                let _ = so::recv(self.fd.as_raw_fd(), &mut [0u8; 1], MsgFlags::empty());
                            }
                            continue;
                        }
                    }
                    narrate::repeated(
                        "recvmsg",
                        format_args!("recvmsg(fd {}) = {n}", self.fd.as_raw_fd()),
                        IDEA_DGRAM,
                    );
                    return Ok((n, cut));
                }
                Err(Errno::EAGAIN) => self.wait(
                    PollFlags::POLLIN,
                    if self.ty == SocketType::Dgram {
                        // No connection: a sender that died shows only as silence.
                        "no datagram arrived (a datagram socket cannot tell a dead sender from a silent one)"
                    } else {
                        "nothing arrived"
                    },
                )?,
                Err(Errno::EINTR) => {}
                Err(e @ (Errno::ECONNRESET | Errno::ECONNREFUSED)) => {
                    return Err(self.peer_gone("recvmsg", e))
                }
                Err(e) => return Err(Error::os(&self.object, "recvmsg", e.into())),
            }
        }
    }

    /// The hello announced the workload: make sure pingpong echoes fit into a datagram.
    fn expect(&mut self, hello: &Hello) -> Result<()> {
        let size = usize::try_from(hello.size).unwrap_or(usize::MAX);
        if hello.mode == ipc_common::Mode::Pingpong {
            reserve(&self.fd, &self.object, size)?;
        }
        Ok(())
    }
}

impl Link for MsgLink {
    fn object(&self) -> &str {
        &self.object
    }

    fn send(&mut self, header: &Header, payload: &[u8]) -> Result<()> {
        let head = header.encode();
        self.send_parts(&[IoSlice::new(&head), IoSlice::new(payload)])
    }

    fn recv(&mut self, buf: &mut Vec<u8>, max: usize) -> Result<Option<Header>> {
        let mut head = [0u8; HEADER_LEN];
        // The kernel holds the whole message: unless the buffer is already as large as
        // the bound (then no allocation), peek at its real length and size for that.
        let room = if buf.capacity() >= max {
            max
        } else {
            let (n, _) = self.recv_parts(&mut [IoSliceMut::new(&mut head)], MsgFlags::MSG_PEEK)?;
            n.saturating_sub(HEADER_LEN).min(max)
        };
        buf.resize(room, 0);
        let (n, cut) = self.recv_parts(
            &mut [IoSliceMut::new(&mut head), IoSliceMut::new(buf)],
            MsgFlags::empty(),
        )?;
        if n == 0 {
            // Seqpacket: the peer closed. Datagram: an empty datagram, the raw end mark.
            buf.clear();
            return Ok(None);
        }
        if cut || n > HEADER_LEN + room {
            if let Ok(h) = Header::decode(&head) {
                check_len(&h, max, &self.object)?;
            }
            return Err(Error::verify(
                &self.object,
                format!(
                    "a message of {n} bytes is longer than the {} bytes allowed here (the {HEADER_LEN}-byte header and at most {max} payload bytes: before the hello a hello's, after it the size the hello announced)",
                    HEADER_LEN + max
                ),
            ));
        }
        if n < HEADER_LEN {
            return Err(Error::verify(
                &self.object,
                format!(
                    "a message of {n} bytes is shorter than the {HEADER_LEN}-byte frame header"
                ),
            ));
        }
        let header = Header::decode(&head)
            .map_err(|e| Error::verify(&self.object, format!("bad frame header: {e}")))?;
        check_len(&header, max, &self.object)?;
        if header.len as usize != n - HEADER_LEN {
            return Err(Error::verify(
                &self.object,
                format!(
                    "a message carries {} payload bytes but its header says {}",
                    n - HEADER_LEN,
                    header.len
                ),
            ));
        }
        buf.truncate(n - HEADER_LEN);
        if header.kind == FrameKind::Hello {
            // A bad hello is the workload's to report; here only the size matters.
            if let Ok(hello) = Hello::decode(buf) {
                self.expect(&hello)?;
            }
        }
        Ok(Some(header))
    }

    fn send_raw(&mut self, bytes: &[u8]) -> Result<()> {
        self.send_parts(&[IoSlice::new(bytes)])
    }

    /// One message per call; 0 is the end (seqpacket: closed; datagram: empty).
    fn recv_raw(&mut self, buf: &mut [u8]) -> Result<usize> {
        let room = buf.len();
        let (n, cut) = self.recv_parts(&mut [IoSliceMut::new(buf)], MsgFlags::empty())?;
        if cut || n > room {
            return Err(Error::new(
                Kind::Usage,
                &self.object,
                format!("a message of {n} bytes is larger than --size {room} and was cut"),
                format!("give the receiver --size {n} (or more)"),
            ));
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ipc_common::frame::{FrameKind, HELLO_LEN};

    #[test]
    fn tcp_endpoints_parse_and_refuse_message_types() {
        let ep = Endpoint::tcp("127.0.0.1:5000").unwrap();
        assert_eq!(ep.object(), "TCP 127.0.0.1:5000");
        assert!(ep.check_type(SocketType::Stream).is_ok());
        let e = ep.check_type(SocketType::Dgram).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(Endpoint::tcp("[::1]:7").is_ok());
        assert_eq!(Endpoint::tcp("no-port").unwrap_err().exit_code(), 2);
    }

    fn msg_pair(ty: SocketType, payload: usize) -> (MsgLink, MsgLink) {
        let (a, b) = pair(ty).unwrap();
        let t = Duration::from_secs(5);
        (
            MsgLink::new(a, ty, "a".into(), t, Some(payload)).unwrap(),
            MsgLink::new(b, ty, "b".into(), t, None).unwrap(),
        )
    }

    #[test]
    fn one_frame_is_one_datagram_and_the_hello_sizes_the_buffer() {
        for ty in [SocketType::Dgram, SocketType::Seqpacket] {
            let size = 200_000; // more than the first receive buffer
            let (mut tx, mut rx) = msg_pair(ty, size);
            let hello = Hello {
                mode: ipc_common::Mode::Stream,
                payload: ipc_common::frame::Payload::Generated { seed: 1 },
                count: 1,
                size: size as u64,
            }
            .encode();
            tx.send(&Header::for_payload(FrameKind::Hello, 0, &hello), &hello)
                .unwrap();
            let data = vec![7u8; size];
            tx.send(&Header::for_payload(FrameKind::Data, 0, &data), &data)
                .unwrap();
            let mut buf = Vec::new();
            let hello_kind = rx.recv(&mut buf, HELLO_LEN).unwrap().unwrap().kind;
            assert_eq!(hello_kind, FrameKind::Hello);
            let h = rx.recv(&mut buf, size).unwrap().unwrap();
            assert!(h.payload_ok(&buf) && buf == data);
        }
    }

    #[test]
    fn a_message_larger_than_announced_is_an_error_not_a_truncation() {
        for ty in [SocketType::Dgram, SocketType::Seqpacket] {
            let (mut tx, mut rx) = msg_pair(ty, 100_000);
            let big = vec![1u8; 100_000];
            tx.send(&Header::for_payload(FrameKind::Data, 0, &big), &big)
                .unwrap();
            // The hello announced 64 KiB.
            let e = rx.recv(&mut Vec::new(), 64 * 1024).unwrap_err();
            assert_eq!(e.exit_code(), 3, "{e}");
            assert!(e.to_string().contains("65536"), "{e}");
            tx.send_raw(&[9u8; 50]).unwrap();
            let e = rx.recv_raw(&mut [0u8; 10]).unwrap_err();
            assert!(e.to_string().contains("--size 50"), "{e}");
        }
    }

    #[test]
    fn an_empty_datagram_ends_a_raw_transfer() {
        let (tx, mut rx) = msg_pair(SocketType::Dgram, 16);
        let mut tx = SockLink::Msg(tx);
        tx.send_raw(b"abc").unwrap();
        tx.finish_send(true).unwrap();
        let mut buf = [0u8; 16];
        assert_eq!(rx.recv_raw(&mut buf).unwrap(), 3);
        assert_eq!(rx.recv_raw(&mut buf).unwrap(), 0);
    }
}
