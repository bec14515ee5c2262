//! `run`: the pair in one command, the receiver as a child process of the sender, as
//! the lecture's related processes sharing an anonymous channel.
//!
//! The child is this same program started as `recv --child`, with the workload flags
//! passed on and any descriptors it must inherit named by number.

use crate::args::{CommonArgs, DataPath};
use crate::error::{Error, Result};
use crate::narrate;
use crate::report::Report;
use crate::stream::set_cloexec;
use crate::workload::finish;
use std::ffi::OsString;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::process::{Child, Command};

/// Start `<this program> recv --child ...`, inheriting `inherit` (and nothing else:
/// every other descriptor of ours is close-on-exec). `extra` adds pair-specific flags.
pub fn spawn_receiver(
    args: &CommonArgs,
    extra: &[OsString],
    inherit: &[BorrowedFd<'_>],
) -> Result<Child> {
    let exe = std::env::current_exe().map_err(|e| Error::os("this program", "current_exe", e))?;
    let mut argv: Vec<OsString> = vec!["recv".into(), "--child".into()];
    if !inherit.is_empty() {
        let fds: Vec<String> = inherit
            .iter()
            .map(|fd| fd.as_raw_fd().to_string())
            .collect();
        argv.push("--inherit-fds".into());
        argv.push(fds.join(",").into());
    }
    argv.extend(forwarded_flags(args));
    argv.extend(extra.iter().cloned());
    for fd in inherit {
        set_cloexec(*fd, false, "the child's pipe end")?;
    }
    let spawned = Command::new(&exe).args(&argv).spawn();
    for fd in inherit {
        set_cloexec(*fd, true, "the child's pipe end")?;
    }
    let child =
        spawned.map_err(|e| Error::os(format!("{}", exe.display()), "spawn (fork + exec)", e))?;
    narrate::call(
        format_args!(
            "fork() + exec({} {}) = pid {}",
            exe.file_name().unwrap_or_default().to_string_lossy(),
            argv.iter()
                .map(|a| a.to_string_lossy())
                .collect::<Vec<_>>()
                .join(" "),
            child.id()
        ),
        if inherit.is_empty() {
            "related processes: the child inherits no descriptor; it opens the object by name"
        } else {
            "related processes: the child inherits the parent's descriptors"
        },
    );
    Ok(child)
}

/// The flags the receiver needs to follow and check the same workload.
fn forwarded_flags(args: &CommonArgs) -> Vec<OsString> {
    let mut v: Vec<OsString> = vec![
        "--timeout".into(),
        args.timeout.as_secs_f64().to_string().into(),
    ];
    if let Some(c) = args.count {
        v.extend(["--count".into(), c.to_string().into()]);
    }
    if let Some(s) = args.size {
        v.extend(["--size".into(), s.to_string().into()]);
    }
    if let Some(s) = args.seed {
        v.extend(["--seed".into(), s.to_string().into()]);
    }
    if let Some(m) = args.mode {
        v.extend(["--mode".into(), m.as_str().into()]);
    }
    match &args.output {
        Some(DataPath::Std) => v.extend(["--output".into(), "-".into()]),
        Some(DataPath::File(p)) => v.extend(["--output".into(), p.clone().into_os_string()]),
        None => {}
    }
    for (on, flag) in [
        (args.raw, "--raw"),
        (args.json, "--json"),
        (args.quiet, "--quiet"),
    ] {
        if on {
            v.push(flag.into());
        }
    }
    for _ in 0..args.verbose {
        v.push("--verbose".into());
    }
    // ipc-bench: the receiver child goes to the second CPU given.
    if let Some(cpu) = args.cpu.get(1) {
        v.extend(["--cpu".into(), cpu.to_string().into()]);
    }
    v
}

/// The flags for the sending side of `run`: the same, less `--output` (the child's).
pub fn sender_args(args: &CommonArgs) -> CommonArgs {
    CommonArgs {
        output: None,
        ..args.clone()
    }
}

/// Wait for the child and decide the one exit code of `run`. One summary is printed:
/// in stream mode the receiver's (the child prints it), in pingpong the sender's (it
/// holds the round-trip times). A failure of the child wins: it saw the data.
///
/// A receiver killed by a signal (`kill -9`) could say nothing itself: the sender
/// reports it, with how far the transfer got, and `run` exits 4 (the peer is gone).
pub fn finish_run(prog: &str, args: &CommonArgs, sent: Result<Report>, mut child: Child) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    let status = child.wait();
    if let Ok(s) = &status {
        narrate::call(
            format_args!("wait4(pid {}) = {}: {s}", child.id(), child.id()),
            "processes: the parent collects its child's exit status (no zombie is left)",
        );
    }
    let child_code = match status {
        Ok(s) => match (s.code(), s.signal()) {
            (Some(code), _) => code,
            (None, sig) => {
                let sig = sig.unwrap_or(0);
                let name = nix::sys::signal::Signal::try_from(sig)
                    .map_or_else(|_| format!("signal {sig}"), |s| s.as_str().to_string());
                let remedy = format!(
                    "the receiver (child pid {}) was killed by {name}",
                    child.id()
                );
                let err = match sent {
                    Err(e) if e.kind == crate::Kind::Peer => e.with_remedy(remedy),
                    Err(e) => return finish(prog, args, Err(e)),
                    Ok(report) => Error::peer(
                        "run",
                        format!(
                            "the receiver died after the sender sent {} messages, before it confirmed them",
                            report.messages
                        ),
                        remedy,
                    ),
                };
                return finish(prog, args, Err(err));
            }
        },
        Err(e) => {
            eprintln!("{prog}: error[os]: waiting for the receiver: {e}");
            1
        }
    };
    let pingpong = args.mode == Some(crate::Mode::Pingpong);
    let sender_code = match sent {
        Ok(report) if pingpong => finish(prog, args, Ok(Some(report))),
        Ok(_) => 0,
        // The peer's failure is the cause; it already said what went wrong.
        Err(e) if e.kind == crate::Kind::Peer && child_code != 0 => 0,
        Err(e) => return finish(prog, args, Err(e)),
    };
    if child_code != 0 {
        child_code
    } else {
        sender_code
    }
}
