//! One sender and one receiver per queue. Each side holds its role for its whole life
//! as a listening Unix socket with an abstract name (`@mq-pair.posix.NAME.send`):
//! `bind` is atomic, so a second sender fails at once, and the kernel drops the name
//! when the holder dies, even by `kill -9`, leaving no file behind. The refused side
//! connects to the holder to learn its pid (`SO_PEERCRED`) for the message.

use crate::flags::Api;
use ipc_common::error::{Error, Kind, Result};
use ipc_common::{narrate, Cause};
use nix::errno::Errno;
use nix::sys::socket::{
    bind, connect, getsockopt, listen, socket, sockopt, AddressFamily, Backlog, SockFlag, SockType,
    UnixAddr,
};
use std::os::fd::OwnedFd;

/// A side of a queue: what it does there, as a command word.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Duty {
    Send,
    Recv,
}

impl Duty {
    fn word(self) -> &'static str {
        match self {
            Duty::Send => "send",
            Duty::Recv => "recv",
        }
    }

    fn verb(self) -> &'static str {
        match self {
            Duty::Send => "sends",
            Duty::Recv => "receives",
        }
    }

    /// The side that does it: `sender` or `receiver`.
    pub fn side(self) -> &'static str {
        match self {
            Duty::Send => "sender",
            Duty::Recv => "receiver",
        }
    }
}

/// The held role: dropping it (or dying) frees the name.
pub struct RoleHold {
    _sock: OwnedFd,
}

fn abstract_name(api: Api, name: &str, duty: Duty) -> String {
    format!("mq-pair.{}.{name}.{}", api.as_str(), duty.word())
}

fn os_error(what: &str, call: &str, e: Errno) -> Error {
    Error::os(what, call, e.into())
}

/// Take `duty` on queue `name`, or say who holds it.
pub fn hold(api: Api, name: &str, duty: Duty) -> Result<RoleHold> {
    let label = abstract_name(api, name, duty);
    let what = format!("the {} role of {} queue {name}", duty.word(), api.as_str());
    let addr =
        UnixAddr::new_abstract(label.as_bytes()).map_err(|e| os_error(&what, "sockaddr_un", e))?;
    let sock = socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(|e| os_error(&what, "socket(AF_UNIX)", e))?;
    match bind(std::os::fd::AsRawFd::as_raw_fd(&sock), &addr) {
        Ok(()) => {}
        Err(Errno::EADDRINUSE) => return Err(taken(api, name, duty, &addr)),
        Err(e) => return Err(os_error(&what, "bind", e)),
    }
    listen(&sock, Backlog::new(16).unwrap_or(Backlog::MAXCONN))
        .map_err(|e| os_error(&what, "listen", e))?;
    narrate::call(
        format_args!("bind(@{label}) + listen = 0"),
        "one sender and one receiver per queue: the role's name is held while this side lives",
    );
    Ok(RoleHold { _sock: sock })
}

/// The refusal: another process holds `duty` on this queue.
fn taken(api: Api, name: &str, duty: Duty, addr: &UnixAddr) -> Error {
    let who = match holder_pid(addr) {
        Some(pid) => format!("another mq-pair {} (pid {pid})", duty.word()),
        None => format!("another mq-pair {}", duty.word()),
    };
    let other = match duty {
        Duty::Send => "recv",
        Duty::Recv => "send",
    };
    Error::new(
        Kind::Runtime,
        format!("{} queue {name}", api.as_str()),
        format!("{who} already {} on this queue", duty.verb()),
        format!(
            "a queue pairs one sender with one receiver; wait for it to finish, start `mq-pair {other}` instead, or choose another --name"
        ),
    )
    .because(Cause::Mismatch)
}

/// The pid of the process listening on `addr`, if it can be asked.
fn holder_pid(addr: &UnixAddr) -> Option<i32> {
    let flags = SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK;
    let s = socket(AddressFamily::Unix, SockType::Stream, flags, None).ok()?;
    connect(std::os::fd::AsRawFd::as_raw_fd(&s), addr).ok()?;
    let cred = getsockopt(&s, sockopt::PeerCredentials).ok()?;
    Some(cred.pid())
}

/// Does a live process hold `duty` on queue `name`? With `--keep` no name goes early,
/// so this is how a creator sees the other side come.
pub fn held(api: Api, name: &str, duty: Duty) -> bool {
    let label = abstract_name(api, name, duty);
    UnixAddr::new_abstract(label.as_bytes()).is_ok_and(|addr| holder_pid(&addr).is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_role_is_seen_and_refused() {
        let name = format!("ipc-unit-role-{}", std::process::id());
        assert!(!held(Api::Posix, &name, Duty::Send));
        let h = hold(Api::Posix, &name, Duty::Send).unwrap();
        assert!(held(Api::Posix, &name, Duty::Send));
        assert!(!held(Api::Sysv, &name, Duty::Send));
        let e = hold(Api::Posix, &name, Duty::Send).err().expect("refused");
        let pid = std::process::id();
        assert!(e.to_string().contains(&format!("(pid {pid})")), "{e}");
        drop(h);
        assert!(!held(Api::Posix, &name, Duty::Send));
    }
}
