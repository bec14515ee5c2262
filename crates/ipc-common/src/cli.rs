//! What every binary's `main` does around its own work: narration level, signal
//! handling, refusing flags meant for the other side, printing the summary or the
//! error, and the exit code; and the exit-code table every `--help` ends with.

use crate::args::{validate, CommonArgs, Role};
use crate::error::Result;
use crate::report::Report;
use crate::workload::finish;
use std::process::ExitCode;

/// The exit codes of DESIGN.md, for `--help`.
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
