//! socket-pair: the lecture's sockets. `send`/`recv` over a Unix-domain socket (stream,
//! datagram or seqpacket) or TCP from two terminals, or `run` over `socketpair(2)` with
//! the receiver as a child process.
//!
//! Where each call is made, and what happens next:
//! - `main.rs`: the command line; `send`, `recv` and `run` pick the modules below.
//! - `endpoint.rs`: `--type` and the endpoint (a path or HOST:PORT); `socket`, `close`
//!   and the `dup` of a stream socket, each narrated.
//! - `unix.rs`: the receiver's socket file: `bind` under umask 177, a stale file
//!   probed (`connect`) and replaced, squatters refused, `unlink` once the sender is in;
//!   `SO_PEERCRED` on a connection.
//! - `tcp.rs`: the TCP receiver's `bind`, the peer's uid from `/proc/net/tcp`, the
//!   shared secret's place in the handshake, `TCP_NODELAY`.
//! - `accept.rs`: `listen` and the `accept` loop of the connected types (Unix stream,
//!   seqpacket, TCP): the first of this user's connections to send a byte is the sender;
//!   the listener is closed then.
//! - `connect.rs`: the sender's `socket`/`connect` loop, retried until `--timeout`, and
//!   the check of who accepted before any byte goes out.
//! - `datagram.rs`: `MsgLink`, one frame per `sendmsg`/`recvmsg`; the datagram
//!   receiver's wait for its first sender (`SO_PASSCRED`), `SO_SNDBUF` sizing.
//! - `link.rs`: `SockLink`, a connected socket as a channel (a framed byte stream or
//!   a `MsgLink`); closing it, and a TCP sender's `shutdown` and linger.
//! - `pair.rs`: `socketpair` for `run`.
//! - `trust.rs`: who owns a socket file or a peer, as the kernel says.
//! - `auth.rs`: the HMAC challenge-response of `--secret-file` between hosts.

mod accept;
mod auth;
mod connect;
mod datagram;
mod endpoint;
mod link;
mod pair;
mod tcp;
mod trust;
mod unix;

use auth::Secret;
use clap::{Args, Subcommand};
use endpoint::{Endpoint, SocketType};
use ipc_common::args::DEFAULT_SIZE;
use ipc_common::cli::{run_main, Help, Outcome};
use ipc_common::report::Report;
use ipc_common::{child, narrate, workload, CommonArgs, Describe, Error, Mode, Result};
use link::SockLink;
use std::os::fd::{AsFd, AsRawFd};
use std::path::PathBuf;
use std::process::ExitCode;

const PROG: &str = "socket-pair";
const DEFAULT_NAME: &str = "ipc-socket";

const EXAMPLES: &str = "\
Examples:
  socket-pair run                                  both sides over socketpair(2), 10000 x 1 KiB
  socket-pair run --type dgram --mode pingpong     round trips over a datagram socketpair
  socket-pair run -v -n 3                          narrate each system call

  Two terminals (either may start first; give both the same --type and --name):
    terminal 1: socket-pair recv -v                      binds and listens on /tmp/ipc-socket
    terminal 2: socket-pair send -v -n 3 --interval 1s   connects, sends 3 messages slowly
  Step by step, looking at the socket with ls -l and ss -xlp meanwhile:
    terminal 1: socket-pair recv --step --keep
    terminal 2: socket-pair send --step -n 3
  Datagrams and seqpackets keep message boundaries:
    terminal 1: socket-pair recv --type seqpacket
    terminal 2: socket-pair send --type seqpacket -n 100000 -s 4K
  TCP (port 0: any free port, the receiver says which):
    terminal 1: socket-pair recv --tcp 127.0.0.1:5000
    terminal 2: socket-pair send --tcp 127.0.0.1:5000 --input big.iso -s 64K
  Between hosts, both sides with the same key (a file of mode 0600):
    terminal 1: socket-pair recv --tcp 10.0.0.1:5000 --secret-file key
    terminal 2: socket-pair send --tcp 10.0.0.1:5000 --secret-file key
  A standard tool as the sender:
    terminal 1: socket-pair recv --raw --output out.bin
    terminal 2: socat -u FILE:in UNIX-CONNECT:/tmp/ipc-socket";

const HELP: Help = Help {
    name: PROG,
    about: "Sockets: Unix-domain stream, datagram and seqpacket, TCP and socketpair, every message checked",
    long_about: "Sockets: Unix-domain stream, datagram and seqpacket, TCP and socketpair, every message checked.\n\n\
A stream socket has no message boundaries: each message travels behind a 24-byte frame header \
(sequence, length, CRC-32), or bare with --raw so that socat or nc can be the other side. \
Datagram and seqpacket sockets keep boundaries: one message is one datagram.",
    examples: EXAMPLES,
};

#[derive(Subcommand)]
enum Cmd {
    /// Connect to a receiver (retrying until --timeout) and send messages
    #[command(
        after_help = "Start `socket-pair recv` with the same --type, --name/--unix or --tcp in another terminal, before or after this."
    )]
    Send(Side),
    /// Bind and listen, accept a sender, check every byte, print the summary
    #[command(
        after_help = "Start `socket-pair send` with the same --type, --name/--unix or --tcp in another terminal, before or after this."
    )]
    Recv(Side),
    /// Both sides over socketpair(2), the receiver as a child process
    Run(RunArgs),
}

/// Where a side finds its peer: the same flags on both sides.
#[derive(Args)]
struct Side {
    /// Unix-domain socket path [default: /tmp/NAME, NAME from --name, default ipc-socket]
    #[arg(long, value_name = "PATH", conflicts_with_all = ["name", "tcp"])]
    unix: Option<PathBuf>,
    /// Use TCP at HOST:PORT instead (stream only); a receiver given port 0 takes a free port and says which
    #[arg(long, value_name = "HOST:PORT", conflicts_with = "name")]
    tcp: Option<String>,
    /// TCP: a file (mode 0600, yours) holding a secret both sides share; each proves it
    /// holds it before any payload (HMAC-SHA256). Without it, IPC_SECRET if set
    #[arg(long, value_name = "PATH", requires = "tcp")]
    secret_file: Option<PathBuf>,
    #[command(flatten)]
    ty: TypeArg,
    #[command(flatten)]
    common: CommonArgs,
}

#[derive(Args)]
struct TypeArg {
    /// Socket type: stream (framed byte stream), dgram or seqpacket (boundaries kept)
    #[arg(
        long = "type",
        value_enum,
        value_name = "TYPE",
        default_value = "stream"
    )]
    ty: SocketType,
}

#[derive(Args)]
struct RunArgs {
    #[command(flatten)]
    ty: TypeArg,
    #[command(flatten)]
    common: CommonArgs,
}

fn endpoint(side: &Side) -> Result<Endpoint> {
    Ok(match (&side.tcp, &side.unix) {
        (Some(t), _) => Endpoint::tcp(t)?,
        (None, Some(p)) => Endpoint::Unix(p.clone()),
        (None, None) => {
            Endpoint::Unix(std::env::temp_dir().join(side.common.name_or(DEFAULT_NAME)))
        }
    })
}

/// The command the other side runs, for the waiting note.
fn peer_command(sub: &str, side: &Side, ep: &Endpoint) -> String {
    let mut s = format!("{PROG} {sub}");
    match ep {
        Endpoint::Tcp(a) => s += &format!(" --tcp {a}"),
        Endpoint::Unix(p) if side.unix.is_some() => s += &format!(" --unix {}", p.display()),
        Endpoint::Unix(_) => {
            if let Some(n) = &side.common.name {
                s += &format!(" --name {n}");
            }
        }
    }
    if side.ty.ty != SocketType::Stream {
        s += &format!(" --type {}", side.ty.ty.as_str());
    }
    s
}

/// The shared secret for TCP; a Unix socket needs none (the kernel knows the peer).
fn secret(side: &Side, ep: &Endpoint) -> Result<Option<Secret>> {
    match ep {
        Endpoint::Tcp(_) => Secret::load(side.secret_file.as_deref()),
        Endpoint::Unix(_) => Ok(None),
    }
}

fn send(side: &Side) -> Result<Option<Report>> {
    let args = &side.common;
    let ep = endpoint(side)?;
    let secret = secret(side, &ep)?;
    let sender = connect::Sender {
        ep: &ep,
        ty: side.ty.ty,
        timeout: args.timeout,
        payload: args.size.unwrap_or(DEFAULT_SIZE),
        pingpong: args.mode == Some(Mode::Pingpong),
        secret: secret.as_ref(),
    };
    let (mut link, d) = sender.connect(&|ep: &Endpoint| peer_command("recv", side, ep))?;
    let report = workload::send(&mut link, args, &d)?;
    link.finish_send(args.raw)?;
    Ok(Some(report))
}

fn recv(side: &Side) -> Result<Option<Report>> {
    let args = &side.common;
    if let Some(&fd) = args.inherit_fds.first() {
        return recv_inherited(fd, side.ty.ty, args);
    }
    let ep = endpoint(side)?;
    ep.check_type(side.ty.ty)?;
    let secret = secret(side, &ep)?;
    let peer = |ep: &Endpoint| peer_command("send", side, ep);
    let (mut link, d) = match &ep {
        Endpoint::Unix(path) => {
            let link = unix::receive(&ep, path, side.ty.ty, args.timeout, &peer)?;
            (link, ep.describe(side.ty.ty))
        }
        Endpoint::Tcp(addr) => tcp::receive(*addr, args.timeout, &peer, secret.as_ref())?,
    };
    workload::receive(&mut link, args, &d).map(Some)
}

fn pair_describe(ty: SocketType) -> Describe {
    Describe::new("socketpair").with("type", ty.as_str())
}

/// The receiver `run` started: its end of the socketpair arrives as an inherited fd.
fn recv_inherited(fd: i32, ty: SocketType, args: &CommonArgs) -> Result<Option<Report>> {
    let end = ipc_sys::adopt_inherited_fd(fd)
        .map_err(|e| Error::os(format!("inherited socket fd {fd}"), "fcntl(F_GETFD)", e))?;
    let mut link = SockLink::from_fd(end, ty, pair::object(ty), args.timeout, None)?;
    workload::receive(&mut link, args, &pair_describe(ty)).map(Some)
}

/// `run`: the socketpair, our end as the link, the child started with the other end.
fn start_run(ty: SocketType, args: &CommonArgs) -> Result<(std::process::Child, SockLink)> {
    narrate::step(
        format_args!("socketpair(AF_UNIX, {})", ty.flag()),
        &format!("ls -l /proc/{}/fd", std::process::id()),
    );
    let (mine, theirs) = pair::pair(ty)?;
    // Our end first: a message too large for a datagram is refused before any child.
    let size = args.size.unwrap_or(DEFAULT_SIZE);
    let link = SockLink::from_fd(mine, ty, pair::object(ty), args.timeout, Some(size))?;
    let child = child::spawn_receiver(
        args,
        &["--type".into(), ty.as_str().into()],
        &[theirs.as_fd()],
    )?;
    // Keep only our end, so each side sees the other close.
    narrate::step(
        format_args!(
            "close(fd {}): the child's end, in the parent",
            theirs.as_raw_fd()
        ),
        &format!("ls -l /proc/{}/fd", std::process::id()),
    );
    endpoint::close(
        theirs,
        "sockets: the parent keeps only its end, so each side sees the other close",
    );
    Ok((child, link))
}

fn run(ty: SocketType, args: &CommonArgs) -> i32 {
    let (child, mut link) = match start_run(ty, args) {
        Ok(v) => v,
        Err(e) => return workload::finish(PROG, args, Err(e)),
    };
    let sent = workload::send(&mut link, &child::sender_args(args), &pair_describe(ty))
        .and_then(|r| link.finish_send(args.raw).map(|()| r));
    drop(link);
    child::finish_run(PROG, args, sent, child)
}

fn main() -> ExitCode {
    let cli = ipc_common::cli::parse::<Cmd>(&HELP);
    run_main(PROG, &cli.common, cli.role, || match &cli.cmd {
        Cmd::Run(r) => Outcome::Code(run(r.ty.ty, &r.common)),
        Cmd::Send(s) => Outcome::Done(send(s)),
        Cmd::Recv(s) => Outcome::Done(recv(s)),
    })
}
