//! What every binary's `main` does around its own work: narration level, signal
//! handling, refusing flags meant for the other side, printing the summary or the
//! error, and the exit code; and the exit-code table every `--help` ends with.

use crate::args::{validate, CommonArgs, Role};
use crate::error::Result;
use crate::report::Report;
use crate::workload::finish;
use clap::{CommandFactory, FromArgMatches};
use std::process::ExitCode;

/// The exit codes (docs/design.md), for `--help`.
pub const EXIT_CODES: &str = "\
Exit codes: 0 done and verified, 1 runtime error, 2 usage error,
3 data failed verification, 4 peer gone or timed out, 128+N killed by signal N
(130 for Ctrl-C), after removing this side's IPC objects.";

/// `--help`'s closing text: the examples, then the exit codes.
pub fn after_help(examples: &str) -> String {
    format!("{examples}\n\n{EXIT_CODES}")
}

/// What a command produced: a summary to print (or an error), or, for `run`, the exit
/// code it already decided.
#[allow(clippy::large_enum_variant)] // one per process: boxing buys nothing
pub enum Outcome {
    Done(Result<Option<Report>>),
    Code(i32),
}

/// Run one side (or both, for `run`) and turn the outcome into the process's exit code.
pub fn run_main(
    prog: &str,
    args: &CommonArgs,
    role: Role,
    body: impl FnOnce() -> Outcome,
) -> ExitCode {
    args.init_narration();
    // `run`'s two processes share one stderr: tag their lines by side and pid.
    match role {
        Role::Both => crate::narrate::set_side("send"),
        Role::Recv if args.child => crate::narrate::set_side("recv"),
        _ => {}
    }
    crate::cleanup::install_signal_handlers();
    let side = format!("{role:?}").to_lowercase();
    crate::record::describe(prog, &side, args.name.as_deref());
    let code = match validate(args, role) {
        Err(e) => finish(prog, args, Err(e)),
        Ok(()) => match body() {
            Outcome::Done(result) => finish(prog, args, result),
            Outcome::Code(code) => code,
        },
    };
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

/// What a binary's `--help` says of it: one line, a paragraph (`--help`), and the
/// examples it ends with before the exit codes.
pub struct Help {
    pub name: &'static str,
    pub about: &'static str,
    pub long_about: &'static str,
    pub examples: &'static str,
}

impl Help {
    fn apply(&self, cmd: clap::Command) -> clap::Command {
        cmd.name(self.name)
            .about(self.about)
            .long_about(self.long_about)
            .after_help(after_help(self.examples))
    }
}

/// The command line of a pair binary: one of its subcommands (`send`, `recv`, `run`).
#[derive(clap::Parser)]
#[command(version)]
struct PairCli<C: clap::Subcommand> {
    #[command(subcommand)]
    cmd: C,
}

/// A pair binary's parsed command line: the subcommand, the side it runs, and its
/// common flags (read again from the subcommand's, for [`run_main`]).
pub struct Pair<C> {
    pub cmd: C,
    pub role: Role,
    pub common: CommonArgs,
}

/// The command line of a binary that is one side only: its own flags, then the common ones.
#[derive(clap::Parser)]
#[command(version)]
pub struct SideCli<A: clap::Args> {
    #[command(flatten)]
    pub own: A,
    #[command(flatten)]
    pub common: CommonArgs,
}

/// Parse a pair binary's command line with each side's `--help` offering that side's
/// flags only: [`CommonArgs`] holds every flag, and a flag meant for the other side is
/// hidden from a subcommand's help (given anyway, [`validate`] refuses it with exit 2
/// and says which side it is for).
pub fn parse<C: clap::Subcommand>(help: &Help) -> Pair<C> {
    let cmd =
        help.apply(PairCli::<C>::command())
            .mut_subcommands(|sub| match side_of(sub.get_name()) {
                Role::Both => sub,
                role => for_side(sub, role),
            });
    let matches = cmd.get_matches();
    let (name, sub) = matches.subcommand().expect("clap requires a subcommand");
    let pair = PairCli::<C>::from_arg_matches(&matches).and_then(|cli| {
        Ok(Pair {
            cmd: cli.cmd,
            role: side_of(name),
            common: CommonArgs::from_arg_matches(sub)?,
        })
    });
    pair.unwrap_or_else(|e| e.exit())
}

/// The side a pair binary's subcommand runs: `run` runs both.
fn side_of(subcommand: &str) -> Role {
    match subcommand {
        "send" => Role::Send,
        "recv" => Role::Recv,
        _ => Role::Both,
    }
}

/// [`parse`] for a binary that is one side only (`shm-producer`, `shm-consumer`);
/// `hide`: common flags it has no use for, beyond the other side's.
pub fn parse_as<A: clap::Args>(help: &Help, role: Role, hide: &[&str]) -> SideCli<A> {
    let cmd = for_side(help.apply(SideCli::<A>::command()), role).mut_args(|arg| {
        if hide.contains(&arg.get_id().as_str()) {
            arg.hide(true)
        } else {
            arg
        }
    });
    from_matches(cmd)
}

fn from_matches<C: clap::Parser>(cmd: clap::Command) -> C {
    let matches = cmd.get_matches();
    C::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
}

/// One side's view of the common flags: the other side's hidden, and the workload
/// flags a receiver may give described as what it expects of the sender.
pub fn for_side(cmd: clap::Command, role: Role) -> clap::Command {
    cmd.mut_args(|arg| {
        let id = arg.get_id().as_str().to_string();
        let hide = match role {
            Role::Send => id == "output",
            Role::Recv => id == "input" || id == "interval",
            Role::Both => false,
        };
        if hide {
            return arg.hide(true);
        }
        match (role, receiver_help(&id)) {
            (Role::Recv, Some(help)) => arg.help(help),
            _ => arg,
        }
    })
}

/// The receiver's help for the workload flags: it follows the sender's hello, and a
/// value given here is checked against it.
fn receiver_help(id: &str) -> Option<&'static str> {
    Some(match id {
        "count" => {
            "Expect N messages; refused if the sender's hello says otherwise \
             (with --raw: stop after N chunks) [default: the sender's]"
        }
        "size" => {
            "Expect messages of BYTES (64, 4K, 1M); refused if the sender's hello says \
             otherwise (with --raw: the chunk size, default 1K) [default: the sender's]"
        }
        "seed" => {
            "Expect payloads from this seed; refused if the sender's hello says otherwise \
             [default: the sender's]"
        }
        "mode" => {
            "Expect this mode; refused if the sender's hello says otherwise [default: the sender's]"
        }
        _ => return None,
    })
}
