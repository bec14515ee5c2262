//! pipe-pair: the lecture's pipes. `send`/`recv` over a FIFO (a named pipe) from two
//! terminals, or `run` over an anonymous pipe with the receiver as a child process.

mod pipe;

use clap::{Args, Subcommand};
use ipc_common::cli::{run_main, Help, Outcome};
use ipc_common::link::Link;
use ipc_common::report::Report;
use ipc_common::stream::FdStream;
use ipc_common::{child, workload, CommonArgs, Describe, Error, Mode, Result};
use pipe::End;
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::process::ExitCode;

const PROG: &str = "pipe-pair";
const DEFAULT_NAME: &str = "ipc-pipe";

const EXAMPLES: &str = "\
Examples:
  pipe-pair run                                 both sides, anonymous pipe, 10000 x 1 KiB
  pipe-pair run --mode pingpong -n 2000 -s 64   round-trip latency
  pipe-pair recv                                terminal 1: waits on /tmp/ipc-pipe
  pipe-pair send -n 100000 -s 4K                terminal 2: sends; either order works
  pipe-pair send --input big.iso                terminal 2 (with `recv --output copy.iso` in 1)
  pipe-pair recv --raw --output out.bin         then: cat file > /tmp/ipc-pipe
  pipe-pair run -v -n 3                         narrate each system call";

const HELP: Help = Help {
    name: PROG,
    about: "Pipes and FIFOs: a byte stream between two processes, framed so that every message is checked",
    long_about: "Pipes and FIFOs: a byte stream between two processes, framed so that every message is checked.\n\n\
A pipe has no message boundaries: each message travels behind a 24-byte frame header \
(sequence, length, CRC-32), or bare with --raw so that cat, dd or a shell redirection can be the other side.",
    examples: EXAMPLES,
};

#[derive(Subcommand)]
enum Cmd {
    /// Send messages into a FIFO (created if absent; waits for a receiver)
    Send(Side),
    /// Receive from a FIFO, check every byte, print the summary
    Recv(Side),
    /// Both sides over an anonymous pipe, the receiver as a child process
    Run(RunArgs),
}

#[derive(Args)]
struct Side {
    /// The FIFO's path [default: /tmp/NAME, NAME from --name, default ipc-pipe]
    #[arg(long, value_name = "PATH", conflicts_with = "name")]
    fifo: Option<PathBuf>,
    #[command(flatten)]
    common: CommonArgs,
}

#[derive(Args)]
struct RunArgs {
    #[command(flatten)]
    common: CommonArgs,
}

fn fifo_path(side: &Side) -> PathBuf {
    side.fifo
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join(side.common.name_or(DEFAULT_NAME)))
}

fn send(side: &Side) -> Result<Option<Report>> {
    let args = &side.common;
    let path = fifo_path(side);
    let mode = args.mode.unwrap_or(Mode::Stream);
    let peer = "pipe-pair recv".to_string() + &fifo_flag(side);
    let _role = pipe::claim_role(&path, End::Write)?;
    // The reply FIFO's reader must exist before the hello, so the receiver can answer.
    let reply = match mode {
        Mode::Pingpong => Some(pipe::open(
            &pipe::reply_path(&path),
            End::Read,
            false,
            args.timeout,
            &peer,
        )?),
        Mode::Stream => None,
    };
    let data = pipe::open(&path, End::Write, false, args.timeout, &peer)?;
    let (reply_fd, _reply_guard) = match reply {
        Some(f) => (Some(f.fd), f.guard),
        None => (None, None),
    };
    let mut link = FdStream::new(
        format!("FIFO {}", path.display()),
        reply_fd,
        Some(data.fd),
        args.timeout,
    )?
    // The receiver opens the reply FIFO only after our hello.
    .await_writer();
    let d = Describe::new("fifo").with("path", path.display());
    let sent = workload::send(&mut link, args, &d);
    link.close();
    sent.map(Some)
}

fn recv(side: &Side) -> Result<Option<Report>> {
    let args = &side.common;
    if !args.inherit_fds.is_empty() {
        return recv_inherited(args);
    }
    let path = fifo_path(side);
    let peer = "pipe-pair send".to_string() + &fifo_flag(side);
    let _role = pipe::claim_role(&path, End::Read)?;
    let data = pipe::open(&path, End::Read, true, args.timeout, &peer)?;
    // The first bytes are here, so a pingpong sender has its reply FIFO open already.
    let reply = pipe::open_existing_writer(&pipe::reply_path(&path))?;
    let link = FdStream::new(
        format!("FIFO {}", path.display()),
        Some(data.fd),
        reply.map(|f| f.fd),
        args.timeout,
    )?;
    let d = Describe::new("fifo").with("path", path.display());
    receive(link, args, &d)
}

/// Receive the workload, then see the end of file the sender's close makes (the
/// lecture's read = 0), unless it is --raw (whose end of file ended the transfer).
fn receive(mut link: FdStream, args: &CommonArgs, d: &Describe) -> Result<Option<Report>> {
    let report = workload::receive(&mut link, args, d)?;
    if !args.raw && !link.await_eof()? {
        return Err(Error::verify(link.object(), "bytes after the end frame")
            .with_remedy("the sender is not this program, or two senders share the FIFO"));
    }
    link.close();
    Ok(Some(report))
}

/// The receiver `run` started: its pipe ends arrive as inherited descriptors.
fn recv_inherited(args: &CommonArgs) -> Result<Option<Report>> {
    let adopt = |fd| {
        ipc_sys::adopt_inherited_fd(fd)
            .map_err(|e| Error::os(format!("inherited pipe fd {fd}"), "fcntl(F_GETFD)", e))
    };
    let rd = adopt(args.inherit_fds[0])?;
    let wr = args.inherit_fds.get(1).map(|&fd| adopt(fd)).transpose()?;
    let link = FdStream::new("anonymous pipe", Some(rd), wr, args.timeout)?;
    receive(link, args, &Describe::new("pipe"))
}

fn run(args: &CommonArgs) -> i32 {
    let started = (|| -> Result<_> {
        let (data_r, data_w) = pipe::anonymous()?;
        let reply = match args.mode {
            Some(Mode::Pingpong) => Some(pipe::anonymous()?),
            _ => None,
        };
        let mut inherit = vec![data_r.as_fd()];
        if let Some((_, w)) = &reply {
            inherit.push(w.as_fd());
        }
        let child = child::spawn_receiver(args, &[], &inherit)?;
        // Keep only our ends, so each side sees end of file when the other closes.
        pipe::close_unused(
            data_r,
            "pipes: the parent closes the child's read end, so a dead reader means EPIPE",
        );
        let reply_r = reply.map(|(r, w)| {
            pipe::close_unused(
                w,
                "pipes: the parent closes the child's write end, so the child's exit means EOF",
            );
            r
        });
        let link = FdStream::new("anonymous pipe", reply_r, Some(data_w), args.timeout)?;
        Ok((child, link))
    })();
    let (child, mut link) = match started {
        Ok(v) => v,
        Err(e) => return workload::finish(PROG, args, Err(e)),
    };
    let sent = workload::send(&mut link, &child::sender_args(args), &Describe::new("pipe"));
    link.close();
    child::finish_run(PROG, args, sent, child)
}

fn fifo_flag(side: &Side) -> String {
    match (&side.fifo, &side.common.name) {
        (Some(p), _) => format!(" --fifo {}", p.display()),
        (None, Some(n)) => format!(" --name {n}"),
        (None, None) => String::new(),
    }
}

fn main() -> ExitCode {
    let cli = ipc_common::cli::parse::<Cmd>(&HELP);
    run_main(PROG, &cli.common, cli.role, || match &cli.cmd {
        Cmd::Run(r) => Outcome::Code(run(&r.common)),
        Cmd::Send(s) => Outcome::Done(send(s)),
        Cmd::Recv(s) => Outcome::Done(recv(s)),
    })
}
