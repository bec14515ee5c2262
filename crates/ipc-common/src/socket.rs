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

use crate::cleanup::{self, remove_if_same};
use crate::error::{Context, Error, Kind, Result};
use crate::frame::{FrameKind, Header, Hello, HEADER_LEN};
use crate::link::Link;
use crate::narrate;
use crate::stream::{self, set_nonblocking, wait_ready, FdStream};
use crate::wait::{Waiting, RETRY};
use crate::workload::Describe;
use nix::errno::Errno;
use nix::poll::PollFlags;
use nix::sys::socket::{
    self as so, sockopt, AddressFamily, Backlog, MsgFlags, SockFlag, SockaddrLike, SockaddrStorage,
    UnixAddr,
};
use nix::sys::stat::{lstat, umask, Mode, SFlag};
use std::io::{self, IoSlice, IoSliceMut};
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::time::Duration;

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
/// The payload buffer a message receiver starts with, before the hello says the size.
const FIRST_RECV_CAP: usize = 64 * 1024;
const WMEM_MAX: &str = "/proc/sys/net/core/wmem_max";

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

/// Accept connections until one sends its first byte: that is the sender. One that
/// closes before (a probe by another receiver, a port scan) is dropped.
fn accept_sender(listener: &Listener, w: &mut Waiting) -> Result<OwnedFd> {
    loop {
        if w.ready(listener.as_fd(), PollFlags::POLLIN, "a sender")?
            .is_none()
        {
            return Err(w.gave_up("no sender connected"));
        }
        let conn = match listener.accept() {
            Ok(c) => c,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
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
        if w.ready(conn.as_fd(), PollFlags::POLLIN, "a sender")?
            .is_none()
        {
            return Err(w.gave_up("the connected peer sent nothing"));
        }
        let mut one = [0u8; 1];
        match so::recv(conn.as_raw_fd(), &mut one, MsgFlags::MSG_PEEK) {
            Ok(0) | Err(Errno::ECONNRESET) => {
                narrate::call(
                    format_args!("recv(fd {}, MSG_PEEK) = 0", conn.as_raw_fd()),
                    "sockets: a connection that closed unused was a probe, not a sender",
                );
            }
            Ok(_) => return Ok(conn),
            Err(Errno::EAGAIN | Errno::EINTR) => {}
            Err(e) => return Err(Error::os(w.object(), "recv(MSG_PEEK)", e.into())),
        }
    }
}

/// The receiving side: bind, listen, accept the sender (or wait for the first
/// datagram), then remove the socket file. Returns the channel and its description.
pub fn receive_side(
    ep: &Endpoint,
    ty: SocketType,
    timeout: Duration,
    peer: PeerCommand<'_>,
) -> Result<(SockLink, Describe)> {
    ep.check_type(ty)?;
    match ep {
        Endpoint::Unix(path) => {
            let obj = ep.object();
            let (fd, guard, id) = bind_unix(path, ty)?;
            let mut w = Waiting::new(&obj, peer(ep), timeout);
            let conn = match ty {
                SocketType::Dgram => {
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
            let link = SockLink::from_fd(conn, ty, obj, timeout, None)?;
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
            let listening =
                cleanup::on_exit_recorded(obj.clone(), crate::record::Object::tcp(bound), || {});
            if addr.port() == 0 {
                narrate::note(format_args!("listening on {obj}"));
            }
            let mut w = Waiting::new(&obj, peer(&bound_ep), timeout);
            let listener = Listener::Tcp(TcpListener::from(fd));
            let conn = accept_sender(&listener, &mut w)?;
            drop((listener, listening));
            // The receiver writes only pingpong echoes: send each at once.
            set_nodelay(&conn, &obj)?;
            let link = SockLink::from_fd(conn, ty, obj, timeout, None)?;
            Ok((link, bound_ep.describe(ty)))
        }
    }
}

/// A datagram receiver: wait for the first datagram, then connect to its sender (when
/// it has an address), so replies go there and no one else can send to us.
fn connect_to_first_sender(fd: &OwnedFd, w: &mut Waiting) -> Result<()> {
    loop {
        if w.ready(fd.as_fd(), PollFlags::POLLIN, "a sender")?
            .is_none()
        {
            return Err(w.gave_up("no sender sent a datagram"));
        }
        let mut none: [IoSliceMut<'_>; 0] = [];
        match so::recvmsg::<UnixAddr>(fd.as_raw_fd(), &mut none, None, MsgFlags::MSG_PEEK) {
            Ok(m) => {
                let from = m.address.filter(|a| !a.is_unnamed());
                if let Some(a) = from {
                    so::connect(fd.as_raw_fd(), &a).on(&w.object(), "connect (to the sender)")?;
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
/// `pingpong` switches Nagle off on TCP.
pub fn send_side(
    ep: &Endpoint,
    ty: SocketType,
    timeout: Duration,
    peer: PeerCommand<'_>,
    payload: usize,
    pingpong: bool,
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
                break fd;
            }
            // Not there yet (no name, or nobody bound/listening, or the queue is full).
            Err(Errno::ENOENT | Errno::ECONNREFUSED | Errno::EAGAIN) => {
                if let Endpoint::Unix(p) = ep {
                    refuse_non_socket(p)?;
                }
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
    let link = SockLink::from_fd(fd, ty, obj, timeout, Some(payload))?;
    Ok((link, ep.describe(ty)))
}

fn ep_text(ep: &Endpoint) -> String {
    match ep {
        Endpoint::Unix(p) => format!("{p:?}"),
        Endpoint::Tcp(a) => a.to_string(),
    }
}

/// `connect` to a file that is not a socket also says `ECONNREFUSED`: no use waiting.
fn refuse_non_socket(path: &Path) -> Result<()> {
    match lstat(path) {
        Ok(st) if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT != SFlag::S_IFSOCK => {
            Err(Error::new(
                Kind::Runtime,
                format!("socket {}", path.display()),
                "exists and is not a socket",
                format!(
                    "not touching it; remove it yourself (rm {}) or choose another --name or --unix path",
                    path.display()
                ),
            ))
        }
        _ => Ok(()),
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

    /// The sender is done. A datagram socket has no end of file: in `--raw` an empty
    /// datagram marks the end (with frames, the END frame does). Streams end on close.
    pub fn finish_send(&mut self, raw: bool) -> Result<()> {
        match self {
            SockLink::Msg(m) if raw && m.ty == SocketType::Dgram => m.send_parts(&[]),
            _ => Ok(()),
        }
    }

    fn inner(&mut self) -> &mut dyn Link {
        match self {
            SockLink::Stream(s) => s,
            SockLink::Msg(m) => m,
        }
    }
}

impl Link for SockLink {
    fn object(&self) -> &str {
        match self {
            SockLink::Stream(s) => s.object(),
            SockLink::Msg(m) => m.object(),
        }
    }
    fn send(&mut self, header: &Header, payload: &[u8]) -> Result<()> {
        self.inner().send(header, payload)
    }
    fn recv(&mut self, buf: &mut Vec<u8>) -> Result<Option<Header>> {
        self.inner().recv(buf)
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
    /// The largest payload expected; the hello raises it to the announced size.
    cap: usize,
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
            cap: payload.unwrap_or(FIRST_RECV_CAP),
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

    /// Receive one message into `parts`; returns its real length (which may exceed
    /// the buffers: the caller checks).
    fn recv_parts(&mut self, parts: &mut [IoSliceMut<'_>]) -> Result<(usize, bool)> {
        loop {
            match so::recvmsg::<()>(self.fd.as_raw_fd(), parts, None, MsgFlags::MSG_TRUNC) {
                Ok(m) => {
                    let (n, cut) = (m.bytes, m.flags.contains(MsgFlags::MSG_TRUNC));
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

    /// The hello announced the workload: size the receive buffer for it, and make sure
    /// pingpong echoes fit into a datagram.
    fn expect(&mut self, hello: &Hello) -> Result<()> {
        let size = usize::try_from(hello.size).unwrap_or(usize::MAX);
        self.cap = size;
        if hello.mode == crate::Mode::Pingpong {
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

    fn recv(&mut self, buf: &mut Vec<u8>) -> Result<Option<Header>> {
        let mut head = [0u8; HEADER_LEN];
        // No allocation once the buffer has grown to the message size.
        buf.resize(self.cap, 0);
        let (n, cut) = self.recv_parts(&mut [IoSliceMut::new(&mut head), IoSliceMut::new(buf)])?;
        if n == 0 {
            // Seqpacket: the peer closed. Datagram: an empty datagram, the raw end mark.
            buf.clear();
            return Ok(None);
        }
        if cut || n > HEADER_LEN + self.cap {
            return Err(Error::verify(
                &self.object,
                format!(
                    "a message of {n} bytes did not fit the {}-byte buffer the sender's hello announced",
                    HEADER_LEN + self.cap
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
        let (n, cut) = self.recv_parts(&mut [IoSliceMut::new(buf)])?;
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
    use crate::frame::FrameKind;

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
                mode: crate::Mode::Stream,
                payload: crate::frame::Payload::Generated { seed: 1 },
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
            assert_eq!(rx.recv(&mut buf).unwrap().unwrap().kind, FrameKind::Hello);
            let h = rx.recv(&mut buf).unwrap().unwrap();
            assert!(h.payload_ok(&buf) && buf == data);
        }
    }

    #[test]
    fn a_message_larger_than_announced_is_an_error_not_a_truncation() {
        for ty in [SocketType::Dgram, SocketType::Seqpacket] {
            let (mut tx, mut rx) = msg_pair(ty, 100_000);
            let big = vec![1u8; 100_000]; // the receiver expects at most 64 KiB
            tx.send(&Header::for_payload(FrameKind::Data, 0, &big), &big)
                .unwrap();
            let e = rx.recv(&mut Vec::new()).unwrap_err();
            assert_eq!(e.exit_code(), 3, "{e}");
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
