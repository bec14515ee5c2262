//! Who is at the other end of a socket, as the kernel knows it.
//!
//! - A Unix socket file says who bound it (`lstat`: owner, mode, a socket and not a
//!   link); a connected stream or seqpacket socket says who is at the other end
//!   (`SO_PEERCRED`, taken at `connect`/`listen` and kept after the peer closes); a
//!   datagram carries its sender's credentials when the receiver asks (`SO_PASSCRED`).
//! - A TCP connection within this network namespace has both ends in the kernel's
//!   table, `/proc/net/tcp` and `/proc/net/tcp6`, each with the uid that owns it. A
//!   peer outside the namespace (another host) is not there: its uid means nothing
//!   here, and only a shared secret can tell who it is.

use ipc_common::error::{Cause, Context, Error, Kind, Result};
use nix::sys::socket::{self as so, sockopt};
use nix::sys::stat::{lstat, SFlag};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::OwnedFd;
use std::path::Path;

/// This process's effective uid: the user whose peers are trusted.
pub fn me() -> u32 {
    nix::unistd::geteuid().as_raw()
}

/// A Unix socket file a sender may connect to: `Ok(None)` when the name does not
/// exist (yet); its identity `(dev, ino)` when it is a socket, not a link, owned by
/// this user and writable by nobody else. Anything else is refused before a byte goes
/// out: another user who binds the name first would get the data.
pub fn own_socket_file(path: &Path) -> Result<Option<(u64, u64)>> {
    let obj = format!("socket {}", path.display());
    let st = match lstat(path) {
        Ok(st) => st,
        Err(nix::errno::Errno::ENOENT) => return Ok(None),
        Err(e) => return Err(Error::os(&obj, "lstat", e.into())),
    };
    let leave = format!(
        "not sending to it; choose another --name or --unix path, or have its owner remove it (rm {})",
        path.display()
    );
    let kind = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT;
    if kind != SFlag::S_IFSOCK {
        let what = if kind == SFlag::S_IFLNK {
            "is a symbolic link, not a socket"
        } else {
            "exists and is not a socket"
        };
        return Err(Error::new(Kind::Runtime, &obj, what, leave).because(Cause::NotOurs));
    }
    let me = me();
    if st.st_uid != me {
        return Err(Error::new(
            Kind::Runtime,
            &obj,
            format!(
                "belongs to uid {}, not to this user (uid {me}): another user bound this name",
                st.st_uid
            ),
            leave,
        )
        .because(Cause::NotOurs));
    }
    // Connecting needs write permission: a socket others may write to is not one of
    // our receivers (they bind 0600) and lets anyone in beside us.
    if st.st_mode & 0o022 != 0 {
        return Err(Error::new(
            Kind::Runtime,
            &obj,
            format!(
                "has mode {:04o}: other users may connect to it, so it is not a receiver of this user's",
                st.st_mode & 0o7777
            ),
            leave,
        )
        .because(Cause::NotOurs));
    }
    Ok(Some((st.st_dev, st.st_ino)))
}

/// The uid and pid at the other end of a connected Unix stream or seqpacket socket.
pub fn peer_cred(fd: &OwnedFd, object: &str) -> Result<(u32, i32)> {
    let c = so::getsockopt(fd, sockopt::PeerCredentials).on(&object, "getsockopt(SO_PEERCRED)")?;
    Ok((c.uid(), c.pid()))
}

/// The receiver a sender just connected to is another user's (`who`): nothing is sent.
pub fn foreign_receiver(object: &str, who: &str) -> Error {
    Error::new(
        Kind::Runtime,
        object,
        format!("the receiver is {who}, not this user (uid {}): sending nothing to it", me()),
        "another user got there first; stop that program or choose another --name, --unix path or port",
    )
    .because(Cause::NotOurs)
}

/// Who owns a TCP socket, from the kernel's connection table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Owner {
    /// A live socket in this network namespace, owned by this uid.
    Uid(u32),
    /// The peer is on this host but its socket is closed (time-wait keeps no owner):
    /// nobody can say whose it was.
    Gone,
    /// Not in this namespace's table: another host or namespace; uids say nothing.
    Remote,
}

/// The owner of the socket whose local address is `addr` and whose peer is `peer`:
/// for a receiver checking its sender, `addr` is the sender's address and `peer` the
/// receiver's own; for a sender checking its listener, the other way round.
pub fn tcp_owner(addr: SocketAddr, peer: SocketAddr) -> Result<Owner> {
    let (addr, peer) = (canonical(addr), canonical(peer));
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = match std::fs::read_to_string(table) {
            Ok(t) => t,
            // A kernel without IPv6 has no tcp6.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::os(table, "read", e)),
        };
        if let Some(owner) = find_owner(&text, addr, peer) {
            return Ok(owner);
        }
    }
    // Absent: a closed socket on this host (its address is ours), or another host.
    let here = addr.ip().is_loopback() || addr.ip() == peer.ip();
    Ok(if here { Owner::Gone } else { Owner::Remote })
}

fn canonical(a: SocketAddr) -> SocketAddr {
    SocketAddr::new(a.ip().to_canonical(), a.port())
}

/// Look `local`→`remote` up in the text of a `/proc/net/tcp*` table.
fn find_owner(table: &str, local: SocketAddr, remote: SocketAddr) -> Option<Owner> {
    for line in table.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        // sl local rem st tx:rx tr:when retrnsmt uid timeout inode ...
        let (Some(l), Some(r), Some(tr), Some(uid)) = (f.get(1), f.get(2), f.get(5), f.get(7))
        else {
            continue;
        };
        if parse_addr(l) != Some(local) || parse_addr(r) != Some(remote) {
            continue;
        }
        // Timer 3 marks a time-wait entry: the socket was closed, its uid is shown as 0
        // whoever owned it.
        if tr.starts_with("03:") {
            return Some(Owner::Gone);
        }
        return uid.parse().ok().map(Owner::Uid);
    }
    None
}

/// `0100007F:1F90` (IPv4) or 32 hex digits and a port (IPv6): each 32-bit word is
/// printed as the kernel holds it, in this machine's byte order.
fn parse_addr(s: &str) -> Option<SocketAddr> {
    let (ip, port) = s.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let word = |i: usize| -> Option<[u8; 4]> {
        let w = u32::from_str_radix(ip.get(i * 8..i * 8 + 8)?, 16).ok()?;
        Some(w.to_ne_bytes())
    };
    let ip = match ip.len() {
        8 => IpAddr::V4(Ipv4Addr::from(word(0)?)),
        32 => {
            let mut b = [0u8; 16];
            for i in 0..4 {
                b[i * 4..i * 4 + 4].copy_from_slice(&word(i)?);
            }
            IpAddr::V6(Ipv6Addr::from(b))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip.to_canonical(), port))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{TcpListener, TcpStream};

    #[test]
    fn proc_addresses_parse_in_host_byte_order() {
        let v4 = parse_addr(&format!("{:08X}:1F90", u32::from_ne_bytes([127, 0, 0, 1])));
        assert_eq!(v4, Some("127.0.0.1:8080".parse().unwrap()));
        let mapped: String = Ipv4Addr::new(10, 1, 2, 3)
            .to_ipv6_mapped()
            .octets()
            .chunks(4)
            .map(|c| format!("{:08X}", u32::from_ne_bytes([c[0], c[1], c[2], c[3]])))
            .collect();
        assert_eq!(
            parse_addr(&format!("{mapped}:0050")),
            Some("10.1.2.3:80".parse().unwrap())
        );
        assert_eq!(parse_addr("zz:1"), None);
    }

    #[test]
    fn a_time_wait_entry_has_no_owner() {
        let l: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let r: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        let hex = |a: SocketAddr| match a.ip() {
            IpAddr::V4(ip) => format!("{:08X}:{:04X}", u32::from_ne_bytes(ip.octets()), a.port()),
            IpAddr::V6(_) => unreachable!(),
        };
        let table = format!(
            "  sl  local rem st tx rx tr tm->when retrnsmt uid timeout inode\n   0: {} {} 06 00000000:00000000 03:00000000 00000000     0        0 0 3\n",
            hex(l),
            hex(r)
        );
        assert_eq!(find_owner(&table, l, r), Some(Owner::Gone));
        assert_eq!(find_owner(&table, r, l), None);
    }

    #[test]
    fn both_ends_of_a_loopback_connection_are_this_users() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let c = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (s, _) = listener.accept().unwrap();
        let (ca, sa) = (c.local_addr().unwrap(), s.local_addr().unwrap());
        assert_eq!(tcp_owner(ca, sa).unwrap(), Owner::Uid(me()));
        assert_eq!(tcp_owner(sa, ca).unwrap(), Owner::Uid(me()));
        // A port nobody uses on loopback: on this host, but no socket.
        let nobody: SocketAddr = "127.0.0.1:1".parse().unwrap();
        assert_eq!(tcp_owner(nobody, sa).unwrap(), Owner::Gone);
        let far: SocketAddr = "192.0.2.1:1".parse().unwrap();
        assert_eq!(tcp_owner(far, sa).unwrap(), Owner::Remote);
    }
}

#[cfg(test)]
mod checks;
