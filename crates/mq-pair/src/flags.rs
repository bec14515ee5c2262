//! The queue flags: which API (`--api`), which priority (`--priority`), and the checks of
//! these against each other, the common flags and the kernel limits, made before any
//! waiting so a bad combination fails at once (exit 2).

use crate::limits::Limits;
use ipc_common::error::{Error, Kind, Result};
use ipc_common::frame::HEADER_LEN;
use ipc_common::{CommonArgs, Mode};

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Api {
    /// mq_open, mq_timedsend, mq_timedreceive, mq_unlink: a queue per name in /dev/mqueue
    Posix,
    /// ftok, msgget, msgsnd, msgrcv, msgctl: a queue per key, listed by `ipcs -q`
    Sysv,
}

impl Api {
    pub fn as_str(self) -> &'static str {
        match self {
            Api::Posix => "posix",
            Api::Sysv => "sysv",
        }
    }

    /// What to look at in another terminal while this API's queues come and go.
    pub fn look(self) -> &'static str {
        match self {
            Api::Posix => "ls -l /dev/mqueue (mount it first: mount -t mqueue none /dev/mqueue)",
            Api::Sysv => "ipcs -q",
        }
    }
}

/// `--priority`: one priority for every message, or four mixed levels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Priority {
    Fixed(u32),
    Mixed,
}

impl std::fmt::Display for Priority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Priority::Fixed(p) => write!(f, "{p}"),
            Priority::Mixed => f.write_str("mixed"),
        }
    }
}

/// The largest POSIX priority on Linux (`MQ_PRIO_MAX` - 1).
pub const PRIO_MAX: u32 = 32767;

/// Urgency levels of `--priority mixed`.
pub const MIXED_LEVELS: u32 = 4;

pub fn parse_priority(s: &str) -> std::result::Result<Priority, String> {
    if s.eq_ignore_ascii_case("mixed") {
        return Ok(Priority::Mixed);
    }
    match s.trim().parse::<u32>() {
        Ok(p) if p <= PRIO_MAX => Ok(Priority::Fixed(p)),
        _ => Err(format!(
            "'{s}' is not a priority; use a number 0-{PRIO_MAX} (SysV: a type 1-{PRIO_MAX}) or 'mixed'"
        )),
    }
}

impl Priority {
    /// The default: POSIX priority 0, SysV type 1 (types start at 1).
    pub fn or_default(p: Option<Priority>, api: Api) -> Priority {
        p.unwrap_or(match api {
            Api::Posix => Priority::Fixed(0),
            Api::Sysv => Priority::Fixed(1),
        })
    }
}

/// Check the queue flags against each other and the limits, before any waiting.
/// `sending`: this side sends (send, or run).
pub fn validate(
    api: Api,
    priority: Option<Priority>,
    args: &CommonArgs,
    sending: bool,
    limits: &Limits,
) -> Result<()> {
    let (max, file) = limits.message_max(api);
    if max <= HEADER_LEN {
        return Err(Error::new(
            Kind::Runtime,
            format!("{} queues", api.as_str()),
            format!("the largest message is {max} bytes ({file}), no room for the {HEADER_LEN}-byte frame header"),
            format!("ask the administrator to set {file} to at least 128 (the default is 8192)"),
        )
        .because(ipc_common::Cause::Limit));
    }
    if !sending && priority.is_some() {
        return Err(Error::usage(
            "--priority given to the receiver",
            "the receiver takes whatever priorities the sender sends; give --priority to the sender",
        ));
    }
    if api == Api::Sysv && priority == Some(Priority::Fixed(0)) {
        return Err(Error::usage(
            "--priority 0 with --api sysv",
            "a SysV message type (mtype) must be at least 1",
        ));
    }
    let size = args.size.unwrap_or(ipc_common::args::DEFAULT_SIZE);
    if sending && args.raw && size > max {
        return Err(Error::usage(
            format!("--raw with --size {size}: raw mode sends each message as one queue message, at most {max} bytes here ({file})"),
            format!("use --size {max} or less, or drop --raw so that larger messages are split into parts and joined again"),
        ));
    }
    if priority == Some(Priority::Mixed) {
        validate_mixed(args, sending.then_some(size), (max, file))?;
    }
    Ok(())
}

/// `--priority mixed` needs a backlog to reorder, sequence numbers to check the order
/// against, and messages that each fit one queue message (`size`: the sender's).
fn validate_mixed(args: &CommonArgs, size: Option<usize>, limit: (usize, &str)) -> Result<()> {
    let why = if args.mode == Some(Mode::Pingpong) {
        Some(("--mode pingpong", "pingpong has one message in flight, so there is no backlog to reorder; use --mode stream"))
    } else if args.input.is_some() {
        Some((
            "--input",
            "mixed priorities deliver messages out of order, and a file must arrive in order",
        ))
    } else if args.raw {
        Some((
            "--raw",
            "raw messages carry no sequence number to check the reordering against",
        ))
    } else {
        None
    };
    if let Some((flag, remedy)) = why {
        return Err(Error::usage(
            format!("--priority mixed with {flag}"),
            remedy,
        ));
    }
    let (max, file) = limit;
    match size {
        Some(size) if size + HEADER_LEN > max => Err(Error::usage(
            format!("--priority mixed with --size {size}: a message must fit in one queue message ({} payload bytes here, {file} less the {HEADER_LEN}-byte header)", max - HEADER_LEN),
            "parts of messages with different priorities would interleave; use a smaller --size",
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priorities_parse() {
        assert_eq!(parse_priority("mixed"), Ok(Priority::Mixed));
        assert_eq!(parse_priority("7"), Ok(Priority::Fixed(7)));
        assert!(parse_priority("32768").is_err());
        assert!(parse_priority("-1").is_err());
        assert!(parse_priority("high").is_err());
    }
}
