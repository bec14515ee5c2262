//! mq-pair: the lecture's message queues. `send`/`recv` from two terminals over a POSIX
//! (`mq_open`) or System V (`msgget`) queue, or `run` with the receiver as a child.
//!
//! Where things are (read in this order):
//!
//! | file             | what it holds                                                        |
//! |------------------|----------------------------------------------------------------------|
//! | `main.rs`        | the command line (`send`, `recv`, `run`) and each side's steps       |
//! | `flags.rs`       | `--api`, `--priority`, and the checks of the flags against the limits |
//! | `limits.rs`      | the kernel's queue limits; each errno of a queue call -> remedy      |
//! | `queue.rs`       | the `Backend` trait and `Queue`: sizes, parts' narration, timeouts   |
//! | `posix.rs`       | `mq_open`, `mq_timedsend`, `mq_timedreceive`, `mq_notify`, `mq_unlink` |
//! | `sysv.rs`        | `msgget`, `msgsnd`, `msgrcv`, `msgctl` (`ftok`: ipc-common's key files) |
//! | `claim.rs`       | create-or-open a name; a live creator vs a crashed run's leftover     |
//! | `role.rs`        | one sender and one receiver per queue (the second is refused)        |
//! | `rendezvous.rs`  | either side first: who waits, who removes the name, the reply queue  |
//! | `link.rs`        | `MqLink`: frames in queue messages, parts, priorities                |
//!
//! "Where is `msgsnd` called, and what happens next?" `sysv.rs` (`SysvQueue::send`),
//! reached from `Queue::send` in `queue.rs`, which `MqLink::send` in `link.rs` calls
//! for each part of a frame; the workload (ipc-common) calls `MqLink::send` per message.
//! The receiver's `msgrcv` in `SysvQueue::recv` comes back up through `MqLink::recv`,
//! which joins the parts and hands the frame to the workload to check.

mod claim;
mod flags;
mod limits;
mod link;
mod posix;
mod queue;
mod rendezvous;
mod role;
mod sysv;

use claim::Endpoint;
use clap::{Args, Subcommand};
use flags::{Api, Priority};
use ipc_common::args::Role;
use ipc_common::cli::{run_main, Help, Outcome};
use ipc_common::report::Report;
use ipc_common::{child, workload, CommonArgs, Error, Mode, Result};
use limits::Limits;
use link::{LinkOpts, MqLink};
use rendezvous::Rendezvous;
use role::Duty;
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

const SEND_EXAMPLES: &str = "\
Examples (two terminals; either may start first):
  terminal 1: mq-pair recv                      terminal 2: mq-pair send -n 100 -s 4K
  terminal 1: mq-pair recv --api sysv           terminal 2: mq-pair send --api sysv -s 64K
  terminal 1: mq-pair recv -v                   terminal 2: mq-pair send --priority mixed -n 8 -s 64 -v
  terminal 1: mq-pair recv --step --keep        terminal 2: mq-pair send --step --keep --interval 1s -n 5
  terminal 3: ls -l /dev/mqueue (mount -t mqueue none /dev/mqueue first), or ipcs -q for --api sysv";

const RECV_EXAMPLES: &str = "\
Examples (two terminals; either may start first):
  terminal 1: mq-pair recv                      terminal 2: mq-pair send -n 100 -s 4K
  terminal 1: mq-pair recv --api sysv -v        terminal 2: mq-pair send --api sysv -s 64K -n 3
  terminal 1: mq-pair recv --output copy.bin    terminal 2: mq-pair send --input file.bin
  terminal 1: mq-pair recv --raw                terminal 2: any program sending to /ipc-mq
  terminal 3: ls -l /dev/mqueue (mount -t mqueue none /dev/mqueue first), or ipcs -q for --api sysv";

const HELP: Help = Help {
    name: PROG,
    about: "Message queues (POSIX and System V): discrete messages with priorities, every byte checked",
    long_about: "Message queues (POSIX and System V): discrete messages with priorities, every byte checked.\n\n\
A queue keeps message boundaries: each queue message is one frame (a 24-byte header with \
sequence and CRC-32, then the payload). A message larger than the queue's message size \
(/proc/sys/fs/mqueue/msgsize_max, /proc/sys/kernel/msgmax) goes in parts that the receiver \
joins again; nothing is truncated. With --raw each message is bare, so another program can \
be the other side.",
    examples: EXAMPLES,
};

#[derive(Subcommand)]
enum Cmd {
    /// Send messages into the queue (created if absent; waits for a receiver)
    #[command(
        after_help = ipc_common::cli::after_help(SEND_EXAMPLES),
        mut_arg("output", |a| a.hide(true))
    )]
    Send(SendArgs),
    /// Receive from the queue, check every byte, print the summary
    #[command(
        after_help = ipc_common::cli::after_help(RECV_EXAMPLES),
        mut_arg("count", |a| a.hide(true)),
        mut_arg("input", |a| a.hide(true)),
        mut_arg("interval", |a| a.hide(true))
    )]
    Recv(RecvArgs),
    /// Both sides, the receiver as a child process, on a queue of their own
    Run(SendArgs),
}

/// The sender's flags (also `run`'s, whose child receives).
#[derive(Args)]
struct SendArgs {
    /// posix: mq_open/mq_send/mq_receive (/dev/mqueue/NAME); sysv: ftok/msgget/msgsnd/msgrcv (ipcs -q)
    #[arg(long, value_enum, default_value = "posix")]
    api: Api,
    /// POSIX priority 0-32767 (highest first) or SysV type 1-32767; `mixed` backs the
    /// queue up with four levels so the receiver shows the kernel's order [default: posix 0, sysv 1]
    #[arg(long, value_name = "P|mixed", value_parser = flags::parse_priority)]
    priority: Option<Priority>,
    #[command(flatten)]
    common: CommonArgs,
}

/// The receiver's flags: it takes whatever priorities the sender sends.
#[derive(Args)]
struct RecvArgs {
    /// posix: mq_open/mq_send/mq_receive (/dev/mqueue/NAME); sysv: ftok/msgget/msgsnd/msgrcv (ipcs -q)
    #[arg(long, value_enum, default_value = "posix")]
    api: Api,
    /// Not offered: accepted only to be refused with a word on where it belongs.
    #[arg(long, hide = true, value_parser = flags::parse_priority)]
    priority: Option<Priority>,
    #[command(flatten)]
    common: CommonArgs,
}

fn opts(api: Api, args: &CommonArgs, name: &str, limits: Limits) -> LinkOpts {
    LinkOpts {
        api,
        name: name.to_string(),
        limits,
        timeout: args.timeout,
        raw: args.raw,
    }
}

/// The flags that make the other side find this queue, for the waiting note.
fn peer_cmd(api: Api, args: &CommonArgs, verb: &str) -> String {
    let mut s = format!("{PROG} {verb}");
    if api == Api::Sysv {
        s += " --api sysv";
    }
    if let Some(n) = &args.name {
        s += &format!(" --name {n}");
    }
    if args.raw {
        s += " --raw";
    }
    s
}

/// The data queue: under --raw opened by its name alone (the receiver owns it), else met
/// through the rendezvous with the side that does `peer`.
fn data_queue(
    api: Api,
    name: &str,
    args: &CommonArgs,
    limits: Limits,
    peer: Duty,
    peer_cmd: Option<String>,
    give_up: &mut dyn FnMut() -> Result<()>,
) -> Result<Endpoint> {
    if args.raw {
        let owner = peer == Duty::Send;
        return rendezvous::open_raw(api, name, &limits, owner, args.timeout);
    }
    let r = Rendezvous {
        api,
        name,
        timeout: args.timeout,
        limits,
        peer,
        peer_cmd,
    };
    rendezvous::rendezvous(&r, give_up)
}

/// The sending side; `give_up` stops the wait for a receiver that will never come.
fn send_on(
    side: &SendArgs,
    args: &CommonArgs,
    name: &str,
    peer_cmd: Option<String>,
    give_up: &mut dyn FnMut() -> Result<()>,
) -> Result<Report> {
    let _role = role::hold(side.api, name, Duty::Send)?;
    let limits = Limits::read();
    let priority = Priority::or_default(side.priority, side.api);
    // The reply queue must exist before the hello, so the receiver can answer.
    let reply = match args.mode {
        Some(Mode::Pingpong) => Some(rendezvous::create_reply(side.api, name, &limits)?),
        _ => None,
    };
    let data = data_queue(side.api, name, args, limits, Duty::Recv, peer_cmd, give_up)?;
    let mut link = MqLink::sender(&opts(side.api, args, name, limits), data, reply, priority);
    let d = link.describe();
    let report = workload::send(&mut link, args, &d)?;
    link.finish_sending()?;
    Ok(report)
}

fn send(side: &SendArgs) -> Result<Option<Report>> {
    let name = side.common.name_or(DEFAULT_NAME);
    let cmd = peer_cmd(side.api, &side.common, "recv");
    send_on(side, &side.common, name, Some(cmd), &mut || Ok(())).map(Some)
}

fn recv(side: &RecvArgs) -> Result<Option<Report>> {
    let args = &side.common;
    let name = args.name_or(DEFAULT_NAME);
    let _role = role::hold(side.api, name, Duty::Recv)?;
    let limits = Limits::read();
    let cmd = (!args.child).then(|| peer_cmd(side.api, args, "send"));
    let data = data_queue(
        side.api,
        name,
        args,
        limits,
        Duty::Send,
        cmd,
        &mut || Ok(()),
    )?;
    let o = opts(side.api, args, name, limits);
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

fn run(side: &SendArgs) -> i32 {
    let args = &side.common;
    // A name of its own, so two runs (or a run and two terminals) never meet.
    let name = args
        .name
        .clone()
        .unwrap_or_else(|| format!("ipc-mq-run-{}", std::process::id()));
    let mut extra: Vec<OsString> = vec![
        "--api".into(),
        side.api.as_str().into(),
        "--name".into(),
        name.clone().into(),
    ];
    // The child pauses and keeps names as the parent does.
    for (on, flag) in [(args.step, "--step"), (args.keep, "--keep")] {
        if on {
            extra.push(flag.into());
        }
    }
    // No descriptor is passed down: the child opens the queue by its name.
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
    let cli = ipc_common::cli::parse::<Cmd>(&HELP);
    let (api, priority) = match &cli.cmd {
        Cmd::Send(s) | Cmd::Run(s) => (s.api, s.priority),
        Cmd::Recv(s) => (s.api, s.priority),
    };
    let (common, role) = (&cli.common, cli.role);
    run_main(PROG, common, role, || {
        // `run` forwards no --priority to its child: the receiver learns it from the sender.
        let sending = role != Role::Recv;
        if let Err(e) = flags::validate(api, priority, common, sending, &Limits::read()) {
            return Outcome::Done(Err(e));
        }
        match &cli.cmd {
            Cmd::Run(s) => Outcome::Code(run(s)),
            Cmd::Send(s) => Outcome::Done(send(s)),
            Cmd::Recv(s) => Outcome::Done(recv(s)),
        }
    })
}
