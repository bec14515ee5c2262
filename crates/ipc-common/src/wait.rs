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

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::fd::AsFd;

    #[test]
    fn the_deadline_counts_from_the_start() {
        let w = Waiting::new("fifo /x", "pipe-pair recv", Duration::from_millis(200));
        assert_eq!(w.object(), "fifo /x");
        assert!(!w.expired());
        let left = w.left();
        assert!(left > Duration::from_millis(100) && left <= Duration::from_millis(200));
        std::thread::sleep(Duration::from_millis(210));
        assert!(w.expired());
        assert_eq!(w.left(), Duration::ZERO);
        let e = w.gave_up("no receiver opened it");
        assert_eq!(e.cause, crate::error::Cause::Timeout);
        assert_eq!(e.kind, crate::error::Kind::Peer);
        assert_eq!(e.object, "fifo /x");
        assert!(
            e.call.starts_with("no receiver opened it within 0.2 s"),
            "{e}"
        );
        assert!(e.remedy.contains("start `pipe-pair recv`"), "{e}");
    }

    #[test]
    fn ready_waits_past_the_grace_up_to_the_deadline() {
        let (rd, wr) = nix::unistd::pipe().unwrap();
        // Ready at once.
        let mut w = Waiting::new("p", "peer", Duration::from_secs(5));
        let mut f = std::fs::File::from(wr);
        f.write_all(b"x").unwrap();
        let got = w.ready(rd.as_fd(), PollFlags::POLLIN, "data").unwrap();
        assert!(got.is_some_and(|g| g.contains(PollFlags::POLLIN)));
        // Ready only after the grace: still seen.
        let (rd, wr) = nix::unistd::pipe().unwrap();
        let late = std::thread::spawn(move || {
            std::thread::sleep(GRACE + Duration::from_millis(100));
            std::fs::File::from(wr).write_all(b"x").unwrap();
        });
        let mut w = Waiting::new("p", "peer", Duration::from_secs(5));
        let start = Instant::now();
        let got = w.ready(rd.as_fd(), PollFlags::POLLIN, "data").unwrap();
        assert!(got.is_some(), "data after the grace was missed");
        assert!(start.elapsed() >= GRACE);
        late.join().unwrap();
        // Never ready: none, after the deadline.
        let (rd, _wr) = nix::unistd::pipe().unwrap();
        let mut w = Waiting::new("p", "peer", Duration::from_millis(300));
        let start = Instant::now();
        assert_eq!(
            w.ready(rd.as_fd(), PollFlags::POLLIN, "data").unwrap(),
            None
        );
        assert!(start.elapsed() >= Duration::from_millis(300));
        w.tick("data");
    }

    #[test]
    fn the_note_is_said_once_and_only_after_the_grace() {
        let mut w = Waiting::new("p", "peer", Duration::from_secs(5));
        w.tick("a receiver");
        assert!(!w.said, "said within the grace");
        std::thread::sleep(GRACE);
        w.tick("a receiver");
        assert!(w.said);
        let mut w = Waiting::new("p", "peer", Duration::from_secs(5));
        w.say("a receiver");
        assert!(w.said);
        w.say("a receiver");
        assert!(w.said);
    }
}
