//! Datagram and seqpacket sockets: message boundaries kept, so one frame is one
//! message. [`MsgLink`] sends the 24-byte header and the payload with one `sendmsg(2)`
//! (two iovecs, no copy in between) and receives them with one `recvmsg(2)`.
//!
//! Datagrams have no connection to accept: the receiver binds PATH; the sender binds
//! an autobound abstract address (no file to clean up) and connects to PATH; the
//! receiver connects back to the address its first datagram came from, so echoes in
//! pingpong go there and no other socket can slip datagrams in. Datagrams from another
//! user (`SO_PASSCRED` tells) are dropped. A datagram larger than the socket can carry
//! is refused with the limit named, never split or truncated.

use crate::endpoint::SocketType;
use crate::trust;
use ipc_common::error::{Cause, Context, Error, Kind, Result};
use ipc_common::frame::{check_len, FrameKind, Header, Hello, HEADER_LEN};
use ipc_common::link::Link;
use ipc_common::narrate;
use ipc_common::stream::{set_nonblocking, wait_ready};
use ipc_common::wait::Waiting;
use nix::errno::Errno;
use nix::poll::PollFlags;
use nix::sys::socket::{self as so, sockopt, MsgFlags, SockaddrLike, UnixAddr};
use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::Duration;

const IDEA_DGRAM: &str = "sockets: one send is one receive: a datagram keeps its boundaries";
const IDEA_OPT: &str = "sockets: per-socket kernel options (buffer size, Nagle)";
/// `af_unix` refuses a datagram longer than the send buffer less this.
const UNIX_DGRAM_OVERHEAD: usize = 32;
const WMEM_MAX: &str = "/proc/sys/net/core/wmem_max";

/// A datagram receiver: wait for the first datagram from this user, then connect to
/// its sender (when it has an address), so replies go there and no one else can send
/// to us. Datagrams from other users (as `SO_PASSCRED` tells) are dropped.
pub fn connect_to_first_sender(fd: &OwnedFd, w: &mut Waiting) -> Result<()> {
    loop {
        if w.ready(fd.as_fd(), PollFlags::POLLIN, "a sender")?
            .is_none()
        {
            return Err(w
                .gave_up("no sender sent a datagram")
                .because(Cause::Timeout));
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
                    connect_back(fd, &a, w.object())?;
                }
                return Ok(());
            }
            Err(Errno::EAGAIN | Errno::EINTR) => {}
            Err(e) => return Err(Error::os(w.object(), "recvmsg(MSG_PEEK)", e.into())),
        }
    }
}

/// Connect a datagram receiver to its sender's address. A sender that sent all and
/// closed already refuses (`ECONNREFUSED`): its datagrams are queued all the same.
fn connect_back(fd: &OwnedFd, to: &UnixAddr, object: &str) -> Result<()> {
    match so::connect(fd.as_raw_fd(), to) {
        Ok(()) => narrate::call(
            format_args!("connect(fd {}, the sender's {to}) = 0", fd.as_raw_fd()),
            "sockets: a datagram socket connected to its one peer: replies go there",
        ),
        Err(Errno::ECONNREFUSED) => narrate::call(
            format_args!(
                "connect(fd {}, the sender's {to}) = ECONNREFUSED",
                fd.as_raw_fd()
            ),
            "sockets: the sender closed already; what it sent is queued here still",
        ),
        Err(e) => return Err(Error::os(object, "connect (to the sender)", e.into())),
    }
    Ok(())
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

/// Bind a datagram sender to an autobound abstract address: the receiver needs an
/// address to answer to, and an abstract name leaves no file behind.
pub fn autobind(fd: &OwnedFd, object: &str) -> Result<()> {
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
pub fn reserve(fd: &OwnedFd, object: &str, payload: usize) -> Result<()> {
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

/// Refuse at once, before waiting for a receiver, a message no socket here can carry:
/// the kernel never gives a socket more than twice /proc/sys/net/core/wmem_max. (What
/// fits under that is settled by [`reserve`] on the real socket.)
pub fn check_fits(object: &str, payload: usize) -> Result<()> {
    let Ok(max) = wmem_max().parse::<usize>() else {
        return Ok(());
    };
    let cap = max.saturating_mul(2);
    if HEADER_LEN + payload + UNIX_DGRAM_OVERHEAD > cap {
        return Err(too_big(object, HEADER_LEN + payload, cap));
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
    .because(Cause::Limit)
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
            None => Err(Error::stalled(&self.object, self.timeout, what)),
        }
    }

    fn peer_gone(&self, call: &str, e: Errno) -> Error {
        let mut err = Error::os(&self.object, call, e.into());
        err.kind = Kind::Peer;
        err.remedy = "the other side closed its socket early; check its output for why".into();
        err.because(Cause::PeerGone)
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
                    return Err(Error::os(&self.object, "sendmsg", e.into())
                        .with_remedy(format!(
                            "the kernel could not allocate a {total}-byte datagram; lower --size"
                        ))
                        .because(Cause::Limit))
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
                    if self.foreign(&m, flags) {
                        continue;
                    }
                    narrate::repeated(
                        "recvmsg",
                        format_args!("recvmsg(fd {}) = {n}", self.fd.as_raw_fd()),
                        IDEA_DGRAM,
                    );
                    return Ok((n, cut));
                }
                Err(Errno::EAGAIN) => self.wait(PollFlags::POLLIN, self.silence())?,
                Err(Errno::EINTR) => {}
                Err(e @ (Errno::ECONNRESET | Errno::ECONNREFUSED)) => {
                    return Err(self.peer_gone("recvmsg", e))
                }
                Err(e) => return Err(Error::os(&self.object, "recvmsg", e.into())),
            }
        }
    }

    /// A datagram of another user's (one queued before we connected to our sender):
    /// dropped, and taken off the queue if only peeked at.
    fn foreign<S>(&self, m: &so::RecvMsg<'_, '_, S>, flags: MsgFlags) -> bool {
        let Some(me) = self.only_uid else {
            return false;
        };
        let (uid, pid) = sender_cred(m);
        if uid == me {
            return false;
        }
        narrate::note(format_args!(
            "{}: dropped a datagram from uid {uid} (pid {pid}): not this user (uid {me})",
            self.object
        ));
        if flags.contains(MsgFlags::MSG_PEEK) {
            // A peek leaves it queued: take it off, or it comes back.
            let _ = so::recv(self.fd.as_raw_fd(), &mut [0u8; 1], MsgFlags::empty());
        }
        true
    }

    /// What a wait for the next message that ran out says.
    fn silence(&self) -> &'static str {
        if self.ty == SocketType::Dgram {
            // No connection: a sender that died shows only as silence.
            "no datagram arrived (a datagram socket cannot tell a dead sender from a silent one)"
        } else {
            "nothing arrived"
        }
    }

    /// Take datagrams from `uid` only (`SO_PASSCRED` is on).
    pub fn only_from(&mut self, uid: u32) {
        self.only_uid = Some(uid);
    }

    /// The raw end mark of a datagram transfer: an empty datagram (a seqpacket
    /// socket ends on close).
    pub fn end_raw(&mut self) -> Result<()> {
        if self.ty != SocketType::Dgram {
            return Ok(());
        }
        match self.send_parts(&[]) {
            // A receiver told the count (`-n`) stops at the last message and closes: the
            // end mark then finds nobody, which is no failure of this transfer.
            Err(e)
                if e.source.as_ref().and_then(|s| s.raw_os_error()) == Some(libc::ECONNREFUSED) =>
            {
                Ok(())
            }
            r => r,
        }
    }

    /// A received message of `n` bytes (`cut`: longer than the buffers) must hold a
    /// whole header and at most `max` payload bytes.
    fn check_length(
        &self,
        n: usize,
        cut: bool,
        room: usize,
        max: usize,
        head: &[u8; HEADER_LEN],
    ) -> Result<()> {
        if cut || n > HEADER_LEN + room {
            if let Ok(h) = Header::decode(head) {
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
        Ok(())
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
        self.check_length(n, cut, room, max, &head)?;
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
            )
            .because(Cause::Mismatch));
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ipc_common::frame::{FrameKind, HELLO_LEN};

    fn msg_pair(ty: SocketType, payload: usize) -> (MsgLink, MsgLink) {
        let (a, b) = crate::pair::pair(ty).unwrap();
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
}

#[cfg(test)]
mod checks;
