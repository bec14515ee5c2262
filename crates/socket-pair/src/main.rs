//! socket-pair: the lecture's sockets. `send`/`recv` over a Unix-domain socket (stream,
//! datagram or seqpacket) or TCP from two terminals, or `run` over `socketpair(2)` with
//! the receiver as a child process.

mod socket;

use clap::{Args, Parser, Subcommand};
use ipc_common::args::{Role, DEFAULT_SIZE};
use ipc_common::cli::{run_main, Outcome};
use ipc_common::report::Report;
use ipc_common::{child, workload, CommonArgs, Describe, Error, Mode, Result};
use socket::{Endpoint, SockLink, SocketType};
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::process::ExitCode;

const PROG: &str = "socket-pair";
const DEFAULT_NAME: &str = "ipc-socket";

const EXAMPLES: &str = "\
Examples:
  socket-pair run                                  both sides over socketpair(2), 10000 x 1 KiB
  socket-pair run --type dgram --mode pingpong     round trips over a datagram socketpair
  socket-pair recv                                 terminal 1: listens on /tmp/ipc-socket
  socket-pair send -n 100000 -s 4K                 terminal 2: connects; either order works
  socket-pair recv --type seqpacket                (give both sides the same --type)
  socket-pair recv --tcp 127.0.0.1:5000            terminal 1: TCP (port 0: any free port)
  socket-pair send --tcp 127.0.0.1:5000 --input big.iso -s 64K
  socket-pair recv --tcp 10.0.0.1:5000 --secret-file key     between hosts: both sides the same key (0600)
  socket-pair recv --raw --output out.bin          then: socat -u FILE:in UNIX-CONNECT:/tmp/ipc-socket
  socket-pair run -v -n 3                          narrate each system call";

#[derive(Parser)]
#[command(
    name = PROG,
    version,
    about = "Sockets: Unix-domain stream, datagram and seqpacket, TCP and socketpair, every message checked",
    long_about = "Sockets: Unix-domain stream, datagram and seqpacket, TCP and socketpair, every message checked.\n\n\
A stream socket has no message boundaries: each message travels behind a 24-byte frame header \
(sequence, length, CRC-32), or bare with --raw so that socat or nc can be the other side. \
Datagram and seqpacket sockets keep boundaries: one message is one datagram.",
    after_help = ipc_common::cli::after_help(EXAMPLES)
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Connect to a receiver (retrying until --timeout) and send messages
    Send(Side),
    /// Bind and listen, accept a sender, check every byte, print the summary
    Recv(Side),
    /// Both sides over socketpair(2), the receiver as a child process
    Run(RunArgs),
}

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
fn secret(side: &Side, ep: &Endpoint) -> Result<Option<socket::Secret>> {
    match ep {
        Endpoint::Tcp(_) => socket::Secret::load(side.secret_file.as_deref()),
        Endpoint::Unix(_) => Ok(None),
    }
}

fn send(side: &Side) -> Result<Option<Report>> {
    let args = &side.common;
    let ep = endpoint(side)?;
    let secret = secret(side, &ep)?;
    let peer = |ep: &Endpoint| peer_command("recv", side, ep);
    let (mut link, d) = socket::send_side(
        &ep,
        side.ty.ty,
        args.timeout,
        &peer,
        args.size.unwrap_or(DEFAULT_SIZE),
        args.mode == Some(Mode::Pingpong),
        secret.as_ref(),
    )?;
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
    let secret = secret(side, &ep)?;
    let peer = |ep: &Endpoint| peer_command("send", side, ep);
    let (mut link, d) =
        socket::receive_side(&ep, side.ty.ty, args.timeout, &peer, secret.as_ref())?;
    workload::receive(&mut link, args, &d).map(Some)
}

fn pair_object(ty: SocketType) -> String {
    format!("socketpair ({})", ty.as_str())
}

fn pair_describe(ty: SocketType) -> Describe {
    Describe::new("socketpair").with("type", ty.as_str())
}

/// The receiver `run` started: its end of the socketpair arrives as an inherited fd.
fn recv_inherited(fd: i32, ty: SocketType, args: &CommonArgs) -> Result<Option<Report>> {
    let end = ipc_sys::adopt_inherited_fd(fd)
        .map_err(|e| Error::os(format!("inherited socket fd {fd}"), "fcntl(F_GETFD)", e))?;
    let mut link = SockLink::from_fd(end, ty, pair_object(ty), args.timeout, None)?;
    workload::receive(&mut link, args, &pair_describe(ty)).map(Some)
}

fn run(ty: SocketType, args: &CommonArgs) -> i32 {
    let started = (|| -> Result<_> {
        let (mine, theirs) = socket::pair(ty)?;
        // Our end first: a message too large for a datagram is refused before any child.
        let size = args.size.unwrap_or(DEFAULT_SIZE);
        let link = SockLink::from_fd(mine, ty, pair_object(ty), args.timeout, Some(size))?;
        let child = child::spawn_receiver(
            args,
            &["--type".into(), ty.as_str().into()],
            &[theirs.as_fd()],
        )?;
        // Keep only our end, so each side sees the other close.
        drop(theirs);
        Ok((child, link))
    })();
    let (child, mut link) = match started {
        Ok(v) => v,
        Err(e) => return workload::finish(PROG, args, Err(e)),
    };
    let sent = workload::send(&mut link, &child::sender_args(args), &pair_describe(ty))
        .and_then(|r| link.finish_send(args.raw).map(|()| r));
    drop(link);
    child::finish_run(PROG, args, sent, child)
}

fn main() -> ExitCode {
    let cli: Cli = ipc_common::cli::parse();
    let (args, role) = match &cli.cmd {
        Cmd::Send(s) => (&s.common, Role::Send),
        Cmd::Recv(s) => (&s.common, Role::Recv),
        Cmd::Run(r) => (&r.common, Role::Both),
    };
    run_main(PROG, args, role, || match &cli.cmd {
        Cmd::Run(r) => Outcome::Code(run(r.ty.ty, &r.common)),
        Cmd::Send(s) => Outcome::Done(send(s)),
        Cmd::Recv(s) => Outcome::Done(recv(s)),
    })
}
