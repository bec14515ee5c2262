//! Waiting for the peer. Either side of a pair may start first: a side that does not
//! find its peer at once says so (only after a short grace, so a quick start stays
//! quiet), keeps trying, and gives up with exit 4 after `--timeout`.

use crate::error::{Error, Result};
use crate::narrate;
use crate::stream::wait_ready;
use nix::poll::PollFlags;
use std::os::fd::BorrowedFd;
use std::time::{Duration, Instant};

/// How long a side waits silently before saying it waits for its peer.
pub const GRACE: Duration = Duration::from_millis(200);
/// The pause between two attempts of a retry loop (open, connect).
pub const RETRY: Duration = Duration::from_millis(10);

/// One wait for the peer on `object`, with its deadline and its once-only note.
pub struct Waiting {
    object: String,
    /// The command to start in another terminal, for the note and the error.
    peer: String,
    timeout: Duration,
    started: Instant,
    said: bool,
}

impl Waiting {
    pub fn new(object: impl Into<String>, peer: impl Into<String>, timeout: Duration) -> Waiting {
        Waiting {
            object: object.into(),
            peer: peer.into(),
            timeout,
            started: Instant::now(),
            said: false,
        }
    }

    pub fn object(&self) -> &str {
        &self.object
    }

    pub fn expired(&self) -> bool {
        self.started.elapsed() >= self.timeout
    }

    /// Time left until the deadline.
    pub fn left(&self) -> Duration {
        self.timeout.saturating_sub(self.started.elapsed())
    }

    /// Say (once) that this side waits for `whom`, e.g. "a receiver".
    pub fn say(&mut self, whom: &str) {
        if !self.said {
            narrate::note(format_args!(
                "waiting up to {:.0} s for {whom} on {} (start `{}` in another terminal)",
                self.timeout.as_secs_f64(),
                self.object,
                self.peer
            ));
            self.said = true;
        }
    }

    /// In a retry loop: say it once the grace is over.
    pub fn tick(&mut self, whom: &str) {
        if self.started.elapsed() >= GRACE {
            self.say(whom);
        }
    }

    /// Wait until `fd` is ready for `events`, saying so when that takes longer than
    /// the grace. `Ok(None)`: the deadline passed.
    pub fn ready(
        &mut self,
        fd: BorrowedFd<'_>,
        events: PollFlags,
        whom: &str,
    ) -> Result<Option<PollFlags>> {
        let quick = GRACE
            .saturating_sub(self.started.elapsed())
            .min(self.left());
        if let Some(ev) = wait_ready(fd, events, quick, &self.object)? {
            return Ok(Some(ev));
        }
        self.say(whom);
        wait_ready(fd, events, self.left(), &self.object)
    }

    /// The error when the deadline passed: `what` says what did not happen, e.g.
    /// "no receiver opened it".
    pub fn gave_up(&self, what: &str) -> Error {
        Error::peer(
            &self.object,
            format!("{what} within {:.1} s", self.timeout.as_secs_f64()),
            format!("start `{}` within --timeout, or raise --timeout", self.peer),
        )
        .because(crate::error::Cause::Timeout)
    }
}
