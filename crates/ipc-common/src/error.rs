//! One error type for every pair. Each error names the object, the failing call and
//! the remedy, and maps to the exit codes of docs/design.md.

use std::fmt;
use std::io;

/// What went wrong, which decides the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A bad flag or a bad combination of flags (exit 2).
    Usage,
    /// A system call or file failed (exit 1).
    Runtime,
    /// Data arrived but failed verification, or the stream lost its framing (exit 3).
    Verify,
    /// The peer went away or stopped making progress within `--timeout` (exit 4).
    Peer,
}

impl Kind {
    pub fn exit_code(self) -> i32 {
        match self {
            Kind::Usage => 2,
            Kind::Runtime => 1,
            Kind::Verify => 3,
            Kind::Peer => 4,
        }
    }
}

/// Why it went wrong, finer than [`Kind`]: printed as a tag (`error[timeout]: ...`) so
/// that scripts and tests can match the cause rather than the wording.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// A bad flag or combination of flags.
    Usage,
    /// A system call failed for a reason of the system's (permissions, resources).
    Os,
    /// The peer is gone: killed, crashed, or closed its end early.
    PeerGone,
    /// The peer made no progress (or never came) within `--timeout`.
    Timeout,
    /// A leftover of a crashed run stands in the way and cannot be replaced.
    Stale,
    /// The object exists but is not this user's, or not this program's.
    NotOurs,
    /// A system limit (queue size, buffer, segment count) is too small.
    Limit,
    /// The peer's data failed verification, or its frames are malformed.
    Corrupt,
    /// The two sides were started with flags that contradict each other.
    Mismatch,
}

impl Cause {
    /// The tag printed after `error`: stable, lowercase, hyphenated.
    pub fn tag(self) -> &'static str {
        match self {
            Cause::Usage => "usage",
            Cause::Os => "os",
            Cause::PeerGone => "peer-gone",
            Cause::Timeout => "timeout",
            Cause::Stale => "stale",
            Cause::NotOurs => "not-ours",
            Cause::Limit => "limit",
            Cause::Corrupt => "corrupt",
            Cause::Mismatch => "mismatch",
        }
    }

    /// The cause an error of `kind` has unless its maker says otherwise.
    fn of(kind: Kind) -> Cause {
        match kind {
            Kind::Usage => Cause::Usage,
            Kind::Runtime => Cause::Os,
            Kind::Verify => Cause::Corrupt,
            Kind::Peer => Cause::PeerGone,
        }
    }
}

/// An error with everything a user needs to act on it.
#[derive(Debug, thiserror::Error)]
pub struct Error {
    pub kind: Kind,
    /// The typed cause behind the message (see [`Cause`]).
    pub cause: Cause,
    /// The IPC object or file concerned, e.g. `FIFO /tmp/ipc-pipe.fifo`.
    pub object: String,
    /// What failed: a system call (`mkfifo`) or a step (`verify message 17`).
    pub call: String,
    /// The OS error, if any.
    #[source]
    pub source: Option<io::Error>,
    /// What to do about it.
    pub remedy: String,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.object, self.call)?;
        if let Some(e) = &self.source {
            write!(f, ": {e}")?;
        }
        if !self.remedy.is_empty() {
            write!(f, ". {}", self.remedy)?;
        }
        Ok(())
    }
}

impl Error {
    pub fn new(
        kind: Kind,
        object: impl Into<String>,
        call: impl Into<String>,
        remedy: impl Into<String>,
    ) -> Self {
        Error {
            kind,
            cause: Cause::of(kind),
            object: object.into(),
            call: call.into(),
            source: None,
            remedy: remedy.into(),
        }
    }

    /// A failed system call on `object`; the kind follows from the errno where it
    /// tells (a broken pipe or reset connection means the peer is gone).
    pub fn os(object: impl Into<String>, call: impl Into<String>, source: io::Error) -> Self {
        let (kind, remedy) = match source.raw_os_error() {
            Some(libc::EPIPE) | Some(libc::ECONNRESET) => (
                Kind::Peer,
                "the other side closed its end early; check its output for why",
            ),
            Some(libc::EACCES) | Some(libc::EPERM) => (
                Kind::Runtime,
                "check the owner and mode of the object (ls -l), or choose another --name",
            ),
            Some(libc::ENOSPC) | Some(libc::ENOMEM) => (
                Kind::Runtime,
                "a system limit was reached; free resources or lower --size/--count",
            ),
            _ => (Kind::Runtime, ""),
        };
        let cause = match source.raw_os_error() {
            Some(libc::EACCES) | Some(libc::EPERM) => Cause::NotOurs,
            Some(libc::ENOSPC) | Some(libc::ENOMEM) | Some(libc::EMFILE) => Cause::Limit,
            _ => Cause::of(kind),
        };
        Error {
            kind,
            cause,
            object: object.into(),
            call: call.into(),
            source: Some(source),
            remedy: remedy.into(),
        }
    }

    pub fn usage(what: impl Into<String>, remedy: impl Into<String>) -> Self {
        Error::new(Kind::Usage, "usage", what, remedy)
    }

    pub fn peer(
        object: impl Into<String>,
        what: impl Into<String>,
        remedy: impl Into<String>,
    ) -> Self {
        Error::new(Kind::Peer, object, what, remedy)
    }

    pub fn verify(object: impl Into<String>, what: impl Into<String>) -> Self {
        Error::new(
            Kind::Verify,
            object,
            what,
            "both sides must run the same program version with the same --seed; rerun with -v to see the frames",
        )
    }

    /// The peer made no progress within `timeout` (exit 4, cause `timeout`): one error
    /// for every wait that ran out, so they all read alike.
    pub fn stalled(object: impl Into<String>, timeout: std::time::Duration, what: &str) -> Self {
        Error::peer(
            object,
            format!("{what} for {:.1} s", timeout.as_secs_f64()),
            "the other side is stopped, stuck or gone; check it, or raise --timeout",
        )
        .because(Cause::Timeout)
    }

    /// Name the cause where the kind alone does not tell it.
    pub fn because(mut self, cause: Cause) -> Self {
        self.cause = cause;
        self
    }

    /// Replace the remedy (for a call whose usual remedy is known at the call site).
    pub fn with_remedy(mut self, remedy: impl Into<String>) -> Self {
        self.remedy = remedy.into();
        self
    }

    pub fn exit_code(&self) -> i32 {
        self.kind.exit_code()
    }

    /// Say how far the transfer got, when the peer ended it early, and name the peer
    /// (`receiver`, `sender`) where the message only said "the other side".
    pub fn after(mut self, peer: &str, messages: u64) -> Self {
        if self.kind == Kind::Peer {
            self.call = format!("{}, after {messages} messages", self.call);
            let named = format!("the {peer}");
            self.call = self.call.replace("the other side", &named);
            self.remedy = self.remedy.replace("the other side", &named);
        }
        self
    }
}

/// Attach the object and call to an `io::Result`.
pub trait Context<T> {
    fn on(self, object: &dyn fmt::Display, call: &str) -> Result<T>;
}

impl<T> Context<T> for io::Result<T> {
    fn on(self, object: &dyn fmt::Display, call: &str) -> Result<T> {
        self.map_err(|e| Error::os(object.to_string(), call, e))
    }
}

impl<T> Context<T> for nix::Result<T> {
    fn on(self, object: &dyn fmt::Display, call: &str) -> Result<T> {
        self.map_err(|e| Error::os(object.to_string(), call, io::Error::from(e)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_names_object_call_and_remedy() {
        let e = Error::os(
            "FIFO /tmp/x",
            "write",
            io::Error::from_raw_os_error(libc::EPIPE),
        );
        let s = e.to_string();
        assert!(s.starts_with("FIFO /tmp/x: write: "), "{s}");
        assert!(s.contains("other side closed"), "{s}");
        assert_eq!(e.exit_code(), 4);
        assert_eq!(Error::usage("bad", "fix").exit_code(), 2);
        assert_eq!(Error::verify("x", "bad").exit_code(), 3);
        let e = e.after("receiver", 7);
        let s = e.to_string();
        assert!(s.contains("write, after 7 messages"), "{s}");
        assert!(s.contains("the receiver closed its end early"), "{s}");
    }
}
