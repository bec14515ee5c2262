//! `socketpair(2)` for `run`: two connected Unix sockets, no name, the receiver's end
//! inherited by a child process.

use crate::endpoint::SocketType;
use ipc_common::error::{Context, Result};
use ipc_common::narrate;
use nix::sys::socket::{self as so, AddressFamily, SockFlag};
use std::os::fd::{AsRawFd, OwnedFd};

const IDEA_PAIR: &str =
    "sockets: a connected pair, like a pipe but two-way, inherited by a related process";

/// Two connected Unix sockets of type `ty`, close-on-exec (`run` clears the flag on the
/// end it hands to its child).
pub fn pair(ty: SocketType) -> Result<(OwnedFd, OwnedFd)> {
    let (a, b) = so::socketpair(AddressFamily::Unix, ty.nix(), None, SockFlag::SOCK_CLOEXEC)
        .on(&object(ty), "socketpair")?;
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

/// Names the pair in messages: `socketpair (stream)`.
pub fn object(ty: SocketType) -> String {
    format!("socketpair ({})", ty.as_str())
}
