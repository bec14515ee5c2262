//! The sending side: connect, retrying until `--timeout` while the receiver is not
//! there (no socket file yet, `ECONNREFUSED`, a full queue), so either side may start
//! first. Nothing is sent until the receiver is known to be this user's (or, over TCP
//! with a secret, to hold the same secret).

use crate::auth::{self, Secret};
use crate::datagram;
use crate::endpoint::{self, Endpoint, PeerCommand, SocketType};
use crate::link::SockLink;
use crate::{tcp, trust, unix};
use ipc_common::error::{Cause, Context, Error, Result};
use ipc_common::narrate;
use ipc_common::stream::wait_ready;
use ipc_common::wait::{Waiting, RETRY};
use ipc_common::workload::Describe;
use nix::errno::Errno;
use nix::poll::PollFlags;
use nix::sys::socket::{self as so, sockopt, SockaddrLike, SockaddrStorage};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::Duration;

const IDEA_CONNECT_UNIX: &str =
    "sockets: on one host the stack is shortcut: Unix domain, no protocol headers";
const IDEA_RETRY: &str = "sockets: nobody listens yet; the sender retries until --timeout";

/// What the sender needs to reach its receiver.
pub struct Sender<'a> {
    pub ep: &'a Endpoint,
    pub ty: SocketType,
    pub timeout: Duration,
    /// The largest message (a message socket must be able to carry it).
    pub payload: usize,
    /// Pingpong switches Nagle off on TCP.
    pub pingpong: bool,
    pub secret: Option<&'a Secret>,
}

impl Sender<'_> {
    /// Connect (retrying), check the receiver, and make the link.
    pub fn connect(&self, peer: PeerCommand<'_>) -> Result<(SockLink, Describe)> {
        self.ep.check_type(self.ty)?;
        let obj = self.ep.object();
        let mut w = Waiting::new(&obj, peer(self.ep), self.timeout);
        let fd = self.connect_retrying(&mut w, &obj)?;
        if let (Endpoint::Tcp(_), Some(secret)) = (self.ep, self.secret) {
            auth::as_sender(&fd, secret, &obj, self.timeout)?;
            narrate::note(format_args!(
                "{obj}: the receiver proved it holds the shared secret ({})",
                secret.source
            ));
        }
        let linger = match self.ep {
            Endpoint::Tcp(_) => Some(endpoint::dup(
                &fd,
                &obj,
                "sockets: kept to wait for the receiver's close after the last byte",
            )?),
            Endpoint::Unix(_) => None,
        };
        let mut link = SockLink::from_fd(fd, self.ty, obj, self.timeout, Some(self.payload))?;
        if let Some(fd) = linger {
            link = link.lingering(fd, self.timeout);
        }
        Ok((link, self.ep.describe(self.ty)))
    }

    fn addr(&self) -> Result<Box<dyn SockaddrLike>> {
        Ok(match self.ep {
            Endpoint::Unix(p) => Box::new(unix::addr(p)?),
            Endpoint::Tcp(a) => Box::new(SockaddrStorage::from(*a)),
        })
    }

    /// Until a receiver of this user's accepts, or the time is up.
    fn connect_retrying(&self, w: &mut Waiting, obj: &str) -> Result<OwnedFd> {
        if self.ty != SocketType::Stream {
            datagram::check_fits(obj, self.payload)?;
        }
        let addr = self.addr()?;
        let mut first = true;
        loop {
            // Refuse another user's socket file before connecting; `None`: not there yet.
            let file = match self.ep {
                Endpoint::Unix(p) => match trust::own_socket_file(p)? {
                    Some(id) => Some(id),
                    None => {
                        self.not_yet(w, format_args!("lstat({:?}) = ENOENT", self.ep.text()))?;
                        continue;
                    }
                },
                Endpoint::Tcp(_) => None,
            };
            if first {
                narrate::step(
                    format_args!(
                        "socket({}) and connect it to {}",
                        self.ty.flag(),
                        self.ep.text()
                    ),
                    &self.ep.look(),
                );
                first = false;
            }
            let fd = self.prepared_socket(obj)?;
            match self.connect_once(&fd, addr.as_ref(), w, obj)? {
                Ok(()) => {
                    self.check_receiver(&fd, file, obj)?;
                    return Ok(fd);
                }
                Err(e @ (Errno::ENOENT | Errno::ECONNREFUSED | Errno::EAGAIN)) => {
                    let n = fd.as_raw_fd();
                    endpoint::close_repeated("close-retry", fd, IDEA_RETRY);
                    self.not_yet(w, format_args!("connect(fd {n}, {}) = {e}", self.ep.text()))?;
                }
                Err(Errno::EPROTOTYPE) => return Err(self.other_type(obj)),
                Err(e) => {
                    return Err(Error::os(obj, "connect", e.into())
                        .with_remedy("check the address, and that the receiver runs"))
                }
            }
        }
    }

    /// The receiver is not there yet (`what` happened): wait a little, or give up.
    fn not_yet(&self, w: &mut Waiting, what: std::fmt::Arguments<'_>) -> Result<()> {
        if w.expired() {
            return Err(w.gave_up("no receiver was there").because(Cause::Timeout));
        }
        narrate::repeated(
            "connect-retry",
            format_args!("{what}: retrying"),
            IDEA_RETRY,
        );
        w.tick("a receiver");
        std::thread::sleep(RETRY);
        Ok(())
    }

    /// A new socket, set up for its type before it connects.
    fn prepared_socket(&self, obj: &str) -> Result<OwnedFd> {
        let fd = endpoint::new_socket(self.ep.family(), self.ty, obj, "socket")?;
        match self.ty {
            SocketType::Dgram => {
                datagram::autobind(&fd, obj)?;
                datagram::reserve(&fd, obj, self.payload)?;
            }
            SocketType::Seqpacket => datagram::reserve(&fd, obj, self.payload)?,
            SocketType::Stream if self.pingpong && matches!(self.ep, Endpoint::Tcp(_)) => {
                tcp::set_nodelay(&fd, obj)?
            }
            SocketType::Stream => {}
        }
        Ok(fd)
    }

    /// One `connect`: the outer `Result` is this program's failure, the inner the
    /// connect's answer. A TCP handshake under way is waited for (bounded).
    fn connect_once(
        &self,
        fd: &OwnedFd,
        addr: &dyn SockaddrLike,
        w: &Waiting,
        obj: &str,
    ) -> Result<std::result::Result<(), Errno>> {
        let r = match so::connect(fd.as_raw_fd(), addr) {
            Err(Errno::EINPROGRESS) => {
                if wait_ready(fd.as_fd(), PollFlags::POLLOUT, w.left(), obj)?.is_none() {
                    return Err(w
                        .gave_up("no receiver accepted the connection")
                        .because(Cause::Timeout));
                }
                match so::getsockopt(fd, sockopt::SocketError).on(&obj, "getsockopt(SO_ERROR)")? {
                    0 => Ok(()),
                    e => Err(Errno::from_raw(e)),
                }
            }
            r => r,
        };
        if r.is_ok() {
            let idea = match self.ep {
                Endpoint::Unix(_) => IDEA_CONNECT_UNIX,
                Endpoint::Tcp(_) => tcp::IDEA_CONNECT,
            };
            narrate::call(
                format_args!("connect(fd {}, {}) = 0", fd.as_raw_fd(), self.ep.text()),
                idea,
            );
        }
        Ok(r)
    }

    /// Just connected: is the receiver this user's?
    fn check_receiver(&self, fd: &OwnedFd, file: Option<(u64, u64)>, obj: &str) -> Result<()> {
        match self.ep {
            Endpoint::Unix(p) => unix::check_receiver(fd, p, self.ty, file, obj),
            Endpoint::Tcp(_) => tcp::check_receiver(fd, obj),
        }
    }

    fn other_type(&self, obj: &str) -> Error {
        Error::usage(
            format!(
                "{obj}: the receiver there uses another socket type than --type {}",
                self.ty.as_str()
            ),
            "give both sides the same --type",
        )
        .because(Cause::Mismatch)
    }
}
