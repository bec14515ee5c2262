//! Unix-domain sockets: the socket file, binding it safely, refusing squatters, and
//! checking who is at the other end.
//!
//! The socket file of a receiver:
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
//! - Once the sender is there the name is removed (a connected socket needs no name),
//!   so even `kill -9` leaves nothing; until then (and with `--keep`, until the end) a
//!   guard removes it on exit, Ctrl-C and SIGTERM.

use crate::accept::{self, Listener};
use crate::datagram;
use crate::endpoint::{self, Endpoint, PeerCommand, SocketType, IDEA_BIND, IDEA_PEER};
use crate::link::SockLink;
use crate::trust;
use ipc_common::cleanup::{self, remove_if_same};
use ipc_common::error::{Cause, Context, Error, Kind, Result};
use ipc_common::narrate;
use ipc_common::wait::Waiting;
use nix::errno::Errno;
use nix::sys::socket::{self as so, sockopt, AddressFamily, UnixAddr};
use nix::sys::stat::{lstat, umask, Mode, SFlag};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::time::Duration;

const IDEA_EARLY_UNLINK: &str = "cleanup: the peer is connected, a connected socket needs no name";
const IDEA_PROBE: &str = "cleanup: is anything bound to the old name? connect tells";

pub fn addr(path: &Path) -> Result<UnixAddr> {
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

/// The receiving side on a Unix socket: bind PATH, then accept the sender (stream,
/// seqpacket) or wait for its first datagram; then the name goes (not with `--keep`).
pub fn receive(
    ep: &Endpoint,
    path: &Path,
    ty: SocketType,
    timeout: Duration,
    peer: PeerCommand<'_>,
) -> Result<SockLink> {
    let obj = ep.object();
    let (fd, guard, id) = bind(path, ty, &ep.look())?;
    let mut w = Waiting::new(&obj, peer(ep), timeout);
    let conn = match ty {
        SocketType::Dgram => {
            datagram::connect_to_first_sender(&fd, &mut w)?;
            fd
        }
        _ => {
            accept::listen(&fd, &obj)?;
            let listener = Listener::Unix(UnixListener::from(fd));
            accept::accept_sender(listener, &mut w, &ep.look())?
        }
    };
    let mut link = if cleanup::early_removal() {
        narrate::step(format_args!("unlink({path:?})"), &ep.look());
        remove_if_same(path, id, IDEA_EARLY_UNLINK);
        guard.disarm();
        SockLink::from_fd(conn, ty, obj, timeout, None)?
    } else {
        SockLink::from_fd(conn, ty, obj, timeout, None)?.keeping_name(guard, path)
    };
    if ty == SocketType::Dgram {
        link = link.only_from(trust::me());
    }
    Ok(link)
}

/// `bind(2)` under umask 177, so the socket file is born 0600 (see the module doc).
fn bind_private(fd: &OwnedFd, addr: &UnixAddr) -> nix::Result<()> {
    let old = umask(Mode::from_bits_truncate(0o177));
    let r = so::bind(fd.as_raw_fd(), addr);
    umask(old);
    r
}

/// Bind a Unix socket at `path`, replacing a stale socket file once.
/// Returns the socket, the guard that removes the file, and the file's identity.
fn bind(path: &Path, ty: SocketType, look: &str) -> Result<(OwnedFd, cleanup::Guard, (u64, u64))> {
    let obj = format!("socket {}", path.display());
    let addr = addr(path)?;
    let mut replaced = false;
    loop {
        narrate::step(
            format_args!("socket(AF_UNIX, {}) and bind it to {path:?}", ty.flag()),
            look,
        );
        let fd = endpoint::new_socket(AddressFamily::Unix, ty, &obj, "socket")?;
        if ty == SocketType::Dgram {
            pass_credentials(&fd, &obj)?;
        }
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
                narrate::call(
                    format_args!("bind(fd {}, {path:?}) = EADDRINUSE", fd.as_raw_fd()),
                    "sockets: bind creates the name, and refuses one that exists",
                );
                endpoint::close(fd, "sockets: a fresh socket binds once the name is free");
                replace_stale(path, ty, &obj)?;
                replaced = true;
            }
            Err(Errno::EADDRINUSE) => {
                return Err(Error::new(
                    Kind::Runtime,
                    &obj,
                    "bind: the name was taken again while replacing a stale socket file",
                    "another receiver started at the same moment; stop it or choose another --name",
                )
                .because(Cause::NotOurs))
            }
            Err(e) => return Err(Error::os(&obj, "bind", e.into()).with_remedy(
                "check that the directory exists and is writable, or choose another --unix path",
            )),
        }
    }
}

/// Each datagram then carries its sender's credentials. Set before `bind`: a datagram
/// sent the moment the name exists carries them too (the kernel adds them as it is sent).
fn pass_credentials(fd: &OwnedFd, obj: &str) -> Result<()> {
    so::setsockopt(fd, sockopt::PassCred, &true).on(&obj, "setsockopt(SO_PASSCRED)")?;
    narrate::call(
        format_args!("setsockopt(fd {}, SO_PASSCRED, 1) = 0", fd.as_raw_fd()),
        IDEA_PEER,
    );
    Ok(())
}

/// The name exists: remove it if it is a stale socket of ours, else refuse.
fn replace_stale(path: &Path, ty: SocketType, obj: &str) -> Result<()> {
    check_existing(path, ty)?;
    let st = lstat(path).on(&obj, "stat")?;
    remove_if_same(path, (st.st_dev, st.st_ino), "cleanup: the stale name goes");
    narrate::note(format_args!(
        "replaced a stale socket file {} (nothing was bound to it)",
        path.display()
    ));
    Ok(())
}

/// The name exists: decide whether it is a stale socket of ours (`Ok`, safe to
/// replace) or something to refuse and leave alone.
fn check_existing(path: &Path, ty: SocketType) -> Result<()> {
    let obj = format!("socket {}", path.display());
    let st = lstat(path).on(&obj, "stat")?;
    let leave = format!(
        "not touching it; remove it yourself (rm {}) or choose another --name or --unix path",
        path.display()
    );
    let refuse =
        |what: String| Err(Error::new(Kind::Runtime, &obj, what, &leave).because(Cause::NotOurs));
    if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT != SFlag::S_IFSOCK {
        return refuse("exists and is not a socket".into());
    }
    let me = trust::me();
    if st.st_uid != me {
        return refuse(format!(
            "belongs to uid {}, not to this user (uid {me})",
            st.st_uid
        ));
    }
    if is_bound(path, ty, &obj)? {
        return Err(Error::new(
            Kind::Runtime,
            &obj,
            "is in use: another receiver is bound to it",
            "stop that receiver first, or choose another --name or --unix path",
        )
        .because(Cause::NotOurs));
    }
    Ok(())
}

/// Is anything bound to `path`? Connect and close at once: `ECONNREFUSED` is the
/// answer "nothing". (A live receiver of ours ignores a connection that closes before
/// sending anything.)
fn is_bound(path: &Path, ty: SocketType, obj: &str) -> Result<bool> {
    let fd = endpoint::new_socket(AddressFamily::Unix, ty, obj, "socket")?;
    let r = so::connect(fd.as_raw_fd(), &addr(path)?);
    let said = match r {
        Ok(()) => "0: something lives there".to_string(),
        Err(Errno::ECONNREFUSED) => "ECONNREFUSED: nothing is bound to it".to_string(),
        Err(e) => format!("{e}"),
    };
    narrate::call(
        format_args!("connect(fd {}, {path:?}) = {said}", fd.as_raw_fd()),
        IDEA_PROBE,
    );
    endpoint::close(fd, IDEA_PROBE);
    match r {
        Err(Errno::ECONNREFUSED) => Ok(false),
        // Connected, queue full, another type, or a datagram socket talking to another
        // peer: something lives on this name.
        Ok(()) | Err(Errno::EAGAIN | Errno::EPROTOTYPE | Errno::EPERM) => Ok(true),
        Err(e) => Err(Error::os(
            obj,
            "connect (probing an existing socket file)",
            e.into(),
        )),
    }
}

/// Just connected: is the receiver this user's? A stream or seqpacket listener says
/// who it is (`SO_PEERCRED`); a datagram socket does not, so its file must still be
/// the one checked before connecting (the sticky /tmp lets only its owner replace it).
pub fn check_receiver(
    fd: &OwnedFd,
    path: &Path,
    ty: SocketType,
    file: Option<(u64, u64)>,
    obj: &str,
) -> Result<()> {
    if ty == SocketType::Dgram {
        if trust::own_socket_file(path)? != file {
            return Err(Error::new(
                Kind::Runtime,
                obj,
                "the socket file was replaced while connecting: sending nothing to it",
                "run again; if it repeats, another program is racing for this name: choose another --name",
            )
            .because(Cause::NotOurs));
        }
        return Ok(());
    }
    let (uid, pid) = peer_cred(fd, obj)?;
    let me = trust::me();
    if uid != me {
        return Err(trust::foreign_receiver(
            obj,
            &format!("uid {uid} (pid {pid})"),
        ));
    }
    Ok(())
}

/// `SO_PEERCRED`, narrated: who is at the other end of a connected socket.
pub fn peer_cred(fd: &OwnedFd, obj: &str) -> Result<(u32, i32)> {
    let (uid, pid) = trust::peer_cred(fd, obj)?;
    narrate::call(
        format_args!(
            "getsockopt(fd {}, SO_PEERCRED) = uid {uid}, pid {pid}",
            fd.as_raw_fd()
        ),
        IDEA_PEER,
    );
    Ok((uid, pid))
}
