//! mq-pair: the lecture's message queues. `send`/`recv` from two terminals over a POSIX
//! (`mq_open`) or System V (`msgget`) queue, or `run` with the receiver as a child.

mod mq;

use clap::{Args, Parser, Subcommand};
use ipc_common::args::Role;
use ipc_common::cli::{run_main, Outcome};
use ipc_common::report::Report;
use ipc_common::{child, workload, CommonArgs, Error, Mode, Result};
use mq::{Api, Limits, LinkOpts, MqLink, Priority, Rendezvous};
use std::ffi::OsString;
use std::process::ExitCode;

const PROG: &str = "mq-pair";
const DEFAULT_NAME: &str = "ipc-mq";

const EXAMPLES: &str = "\
Examples:
  mq-pair run                                   both sides, POSIX queue, 10000 x 1 KiB
  mq-pair run --api sysv -s 64K                 SysV queue; 64 KiB messages go in parts
  mq-pair run --mode pingpong -n 2000 -s 64     round-trip latency, a queue each way
  mq-pair recv                                  terminal 1: waits on /ipc-mq
  mq-pair send -n 100000 -s 4K                  terminal 2: sends; either order works
  mq-pair send --priority mixed -n 8 -s 64      the receiver takes the highest first
  mq-pair recv --raw --output out.bin           another program sends to /ipc-mq
  mq-pair run -v -n 3                           narrate each system call
  ls /dev/mqueue; ipcs -q                       the queues while they exist";

#[derive(Parser)]
#[command(
    name = PROG,
    version,
    about = "Message queues (POSIX and System V): discrete messages with priorities, every byte checked",
    long_about = "Message queues (POSIX and System V): discrete messages with priorities, every byte checked.\n\n\
A queue keeps message boundaries: each queue message is one frame (a 24-byte header with \
sequence and CRC-32, then the payload). A message larger than the queue's message size \
(/proc/sys/fs/mqueue/msgsize_max, /proc/sys/kernel/msgmax) goes in parts that the receiver \
joins again; nothing is truncated. With --raw each message is bare, so another program can \
be the other side.",
    after_help = ipc_common::cli::after_help(EXAMPLES)
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Send messages into the queue (created if absent; waits for a receiver)
    Send(Side),
    /// Receive from the queue, check every byte, print the summary
    Recv(Side),
    /// Both sides, the receiver as a child process, on a queue of their own
    Run(Side),
}

#[derive(Args)]
struct Side {
    /// posix: mq_open/mq_send/mq_receive (/dev/mqueue/NAME); sysv: ftok/msgget/msgsnd/msgrcv (ipcs -q)
    #[arg(long, value_enum, default_value = "posix")]
    api: Api,
    /// Sender: POSIX priority 0-32767 (highest first) or SysV type 1-32767; `mixed` backs the
    /// queue up with four levels so the receiver shows the kernel's order [default: posix 0, sysv 1]
    #[arg(long, value_name = "P|mixed", value_parser = mq::parse_priority)]
    priority: Option<Priority>,
    #[command(flatten)]
    common: CommonArgs,
}

fn opts(side: &Side, name: &str, limits: Limits) -> LinkOpts {
    LinkOpts {
        api: side.api,
        name: name.to_string(),
        limits,
        timeout: side.common.timeout,
        raw: side.common.raw,
    }
}

/// The flags that make the other side find this queue, for the waiting note.
fn peer_cmd(side: &Side, verb: &str) -> String {
    let mut s = format!("{PROG} {verb}");
    if side.api == Api::Sysv {
        s += " --api sysv";
    }
    if let Some(n) = &side.common.name {
        s += &format!(" --name {n}");
    }
    if side.common.raw {
        s += " --raw";
    }
    s
}

/// The sending side; `give_up` stops the wait for a receiver that will never come.
fn send_on(
    side: &Side,
    args: &CommonArgs,
    name: &str,
    peer_cmd: Option<String>,
    give_up: &mut dyn FnMut() -> Result<()>,
) -> Result<Report> {
    let limits = Limits::read();
    let o = opts(side, name, limits);
    let priority = Priority::or_default(side.priority, side.api);
    // The reply queue must exist before the hello, so the receiver can answer.
    let reply = match args.mode {
        Some(Mode::Pingpong) => Some(mq::create_reply(side.api, name, &limits)?),
        _ => None,
    };
    let data = if args.raw {
        mq::open_raw(side.api, name, &limits, false, args.timeout)?
    } else {
        let r = Rendezvous {
            api: side.api,
            name,
            timeout: args.timeout,
            limits,
            peer_role: "a receiver",
            peer_cmd,
        };
        mq::rendezvous(&r, give_up)?
    };
    let mut link = MqLink::sender(&o, data, reply, priority);
    let d = link.describe();
    let report = workload::send(&mut link, args, &d)?;
    link.finish_sending()?;
    Ok(report)
}

fn send(side: &Side) -> Result<Option<Report>> {
    let name = side.common.name_or(DEFAULT_NAME);
    send_on(
        side,
        &side.common,
        name,
        Some(peer_cmd(side, "recv")),
        &mut || Ok(()),
    )
    .map(Some)
}

fn recv(side: &Side) -> Result<Option<Report>> {
    let args = &side.common;
    let name = args.name_or(DEFAULT_NAME);
    let limits = Limits::read();
    let o = opts(side, name, limits);
    let data = if args.raw {
        mq::open_raw(side.api, name, &limits, true, args.timeout)?
    } else {
        let r = Rendezvous {
            api: side.api,
            name,
            timeout: args.timeout,
            limits,
            peer_role: "a sender",
            peer_cmd: (!args.child).then(|| peer_cmd(side, "send")),
        };
        mq::rendezvous(&r, &mut || Ok(()))?
    };
    let mut link = MqLink::receiver(&o, data, args.output.is_some());
    let d = link.describe();
    let mut report = workload::receive(&mut link, args, &d)?;
    if !args.raw {
        report
            .options
            .insert("priority".into(), link.priority().to_string());
    }
    if let Some(order) = link.priority_order() {
        report.options.insert("priority_order".into(), order);
    }
    Ok(Some(report))
}

fn run(side: &Side) -> i32 {
    let args = &side.common;
    // A name of its own, so two runs (or a run and two terminals) never meet.
    let name = args
        .name
        .clone()
        .unwrap_or_else(|| format!("ipc-mq-run-{}", std::process::id()));
    let extra: Vec<OsString> = vec![
        "--api".into(),
        side.api.as_str().into(),
        "--name".into(),
        name.clone().into(),
    ];
    let mut child = match child::spawn_receiver(args, &extra, &[]) {
        Ok(c) => c,
        Err(e) => return workload::finish(PROG, args, Err(e)),
    };
    let sender_args = child::sender_args(args);
    let sent = send_on(
        side,
        &sender_args,
        &name,
        None,
        &mut || match child.try_wait() {
            Ok(Some(status)) => Err(Error::peer(
                format!("the receiver (pid {})", child.id()),
                format!("exited ({status}) before it opened the queue"),
                "see its message above",
            )),
            _ => Ok(()),
        },
    );
    child::finish_run(PROG, args, sent, child)
}

fn main() -> ExitCode {
    let cli: Cli = ipc_common::cli::parse();
    let (side, role) = match &cli.cmd {
        Cmd::Send(s) => (s, Role::Send),
        Cmd::Recv(s) => (s, Role::Recv),
        Cmd::Run(s) => (s, Role::Both),
    };
    run_main(PROG, &side.common, role, || {
        // `run` forwards no --priority to its child: the receiver learns it from the sender.
        let sending = role != Role::Recv;
        if let Err(e) = mq::validate(
            side.api,
            side.priority,
            &side.common,
            sending,
            &Limits::read(),
        ) {
            return Outcome::Done(Err(e));
        }
        match &cli.cmd {
            Cmd::Run(s) => Outcome::Code(run(s)),
            Cmd::Send(s) => Outcome::Done(send(s)),
            Cmd::Recv(s) => Outcome::Done(recv(s)),
        }
    })
}
