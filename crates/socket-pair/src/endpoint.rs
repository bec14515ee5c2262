//! What both sides share: the socket type, the endpoint (a Unix path or a TCP address),
//! and the narrated lifecycle calls every module makes on a descriptor (`socket`,
//! `close`, the `dup` of a stream socket).

use ipc_common::error::{Context, Error, Result};
use ipc_common::narrate;
use ipc_common::workload::Describe;
use nix::sys::socket::{self as so, AddressFamily, SockFlag};
use std::net::{SocketAddr, ToSocketAddrs};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;

pub const IDEA_SOCKET: &str = "sockets: an endpoint with a kernel buffer plus protocol processing";
pub const IDEA_BIND: &str =
    "sockets: a name the peer can find (a file for Unix, an address:port for TCP)";
pub const IDEA_PEER: &str = "sockets: the kernel knows who is at the other end of a local socket";
pub const IDEA_CLOSE: &str = "files: close drops a descriptor; the socket goes with its last one";

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

    pub fn nix(self) -> so::SockType {
        match self {
            SocketType::Stream => so::SockType::Stream,
            SocketType::Dgram => so::SockType::Datagram,
            SocketType::Seqpacket => so::SockType::SeqPacket,
        }
    }

    pub fn flag(self) -> &'static str {
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

    /// The endpoint as narrated in a call: `"/tmp/ipc-socket"` or `127.0.0.1:5000`.
    pub fn text(&self) -> String {
        match self {
            Endpoint::Unix(p) => format!("{p:?}"),
            Endpoint::Tcp(a) => a.to_string(),
        }
    }

    /// For `--step`: what to look at in another terminal meanwhile.
    pub fn look(&self) -> String {
        match self {
            Endpoint::Unix(p) => {
                let name = p.file_name().unwrap_or(p.as_os_str()).to_string_lossy();
                format!("ls -l {} ; ss -xlp | grep {name}", p.display())
            }
            Endpoint::Tcp(a) => {
                format!("ss -tlnp 'sport = :{0}' ; ss -tnp 'dport = :{0}'", a.port())
            }
        }
    }

    pub fn describe(&self, ty: SocketType) -> Describe {
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

    pub fn family(&self) -> AddressFamily {
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

/// A new non-blocking, close-on-exec socket. `key` groups the narration of sockets
/// made again and again (a sender retrying) so `-v` shows only the first few.
pub fn new_socket(
    family: AddressFamily,
    ty: SocketType,
    object: &str,
    key: &'static str,
) -> Result<OwnedFd> {
    let fd = so::socket(
        family,
        ty.nix(),
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        None,
    )
    .on(&object, "socket")?;
    narrate::repeated(
        key,
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

/// Close `fd`, saying so with `why` (a one-off close).
pub fn close(fd: OwnedFd, why: &str) {
    let n = fd.as_raw_fd();
    drop(fd);
    narrate::call(format_args!("close(fd {n}) = 0"), why);
}

/// Close `fd` in a loop that may repeat (`key` groups the repeats).
pub fn close_repeated(key: &'static str, fd: OwnedFd, why: &str) {
    let n = fd.as_raw_fd();
    drop(fd);
    narrate::repeated(key, format_args!("close(fd {n}) = 0"), why);
}

/// A second descriptor for the same socket (close-on-exec, as std's `try_clone` makes
/// it), narrated: the byte stream reads one and writes the other.
pub fn dup(fd: &OwnedFd, object: &str, why: &str) -> Result<OwnedFd> {
    let new = fd.try_clone().on(&object, "fcntl(F_DUPFD_CLOEXEC)")?;
    narrate::call(
        format_args!(
            "fcntl(fd {}, F_DUPFD_CLOEXEC) = fd {}",
            fd.as_raw_fd(),
            new.as_raw_fd()
        ),
        why,
    );
    Ok(new)
}
