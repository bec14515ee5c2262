//! One open queue of either API: the [`Backend`] trait that `posix.rs` and `sysv.rs`
//! implement, and [`Queue`], which checks sizes, copies a message's pieces into the
//! backend's buffer, turns a wait that ran out into an error, and narrates each call.

use crate::flags::Api;
use crate::limits::{queue_error, Limits, SYSV_MSGMAX};
use crate::posix::PosixQueue;
use crate::sysv::SysvQueue;
use ipc_common::error::{Error, Kind, Result};
use ipc_common::stream::IDEA_COPY;
use ipc_common::{narrate, Cause};
use nix::errno::Errno;
use std::time::{Duration, Instant};

/// What a receive found.
pub enum Got {
    Message { len: usize, prio: u32 },
    TimedOut,
}

/// What a send did: the message went, or the queue stayed full until the deadline.
pub enum Sent {
    Done,
    Full,
}

/// Which part of a split message a queue message is: (1-based index, count).
pub type Part = Option<(usize, usize)>;

/// What either API knows of an open queue.
pub struct Facts {
    pub api: Api,
    /// `POSIX queue /ipc-mq`, `SysV queue key 0x49... (id 3)`: for messages.
    pub object: String,
    /// The largest message this queue carries.
    pub msg_max: usize,
    pub limits: Limits,
}

impl Facts {
    /// The error of `call` on this queue, with the remedy its errno calls for.
    pub fn err(&self, call: &str, e: Errno) -> Error {
        queue_error(self.api, &self.object, call, e, &self.limits)
    }
}

/// The calls one queue API makes on an open queue. Each call waits at most until
/// `deadline`; a wait that runs out is `Sent::Full` / `Got::TimedOut`, not an error.
pub trait Backend: Send {
    fn facts(&self) -> &Facts;
    /// The buffer the next message is assembled in (`msg_max` bytes).
    fn outgoing(&mut self) -> &mut [u8];
    /// Send the first `len` bytes of [`Backend::outgoing`] at `prio`.
    fn send(&mut self, len: usize, prio: u32, deadline: Instant) -> Result<Sent>;
    /// Receive one message; SysV `lowest_type_first` asks `msgrcv` for the lowest type.
    fn recv(&mut self, deadline: Instant, lowest_type_first: bool) -> Result<Got>;
    /// The bytes of the message just received.
    fn received(&self, len: usize) -> &[u8];
    /// Messages waiting, and whether the queue is full; `None` once the queue is gone.
    fn pending(&self) -> Result<Option<(u64, bool)>>;
    /// (owner uid, permission bits) of the queue.
    fn owner(&self) -> Result<(u32, u32)>;
    /// The command that removes this queue by hand.
    fn remove_hint(&self) -> String;
    /// The narration key and text of the send just made.
    fn send_call(&self, len: usize, prio: u32) -> (&'static str, String);
    /// The narration key and text of the receive just made.
    fn recv_call(&self, len: usize, prio: u32) -> (&'static str, String);
    fn as_posix(&self) -> Option<&PosixQueue> {
        None
    }
    fn as_sysv(&self) -> Option<&SysvQueue> {
        None
    }
}

/// One open queue, either API.
pub struct Queue {
    backend: Box<dyn Backend>,
}

impl Queue {
    pub fn new(backend: Box<dyn Backend>) -> Queue {
        Queue { backend }
    }

    pub fn object(&self) -> &str {
        &self.backend.facts().object
    }

    pub fn msg_max(&self) -> usize {
        self.backend.facts().msg_max
    }

    pub fn posix(&self) -> Option<&PosixQueue> {
        self.backend.as_posix()
    }

    pub fn sysv(&self) -> Option<&SysvQueue> {
        self.backend.as_sysv()
    }

    /// Send one message made of `pieces` (`part`: which part of a split message it is),
    /// waiting at most `timeout` for room.
    pub fn send(
        &mut self,
        pieces: &[&[u8]],
        prio: u32,
        timeout: Duration,
        part: Part,
    ) -> Result<()> {
        let len: usize = pieces.iter().map(|p| p.len()).sum();
        if len > self.msg_max() {
            return Err(self.too_small(len));
        }
        let buf = self.backend.outgoing();
        let mut at = 0;
        for p in pieces {
            buf[at..at + p.len()].copy_from_slice(p);
            at += p.len();
        }
        match self.backend.send(len, prio, Instant::now() + timeout)? {
            Sent::Done => {
                if narrate::verbose() {
                    let (key, text) = self.backend.send_call(len, prio);
                    narrate_transfer(key, &text, part);
                }
                Ok(())
            }
            Sent::Full => Err(Error::stalled(
                self.object(),
                timeout,
                "the queue stayed full: the receiver took nothing",
            )),
        }
    }

    /// Receive one message, waiting at most `timeout`. Not narrated here: what part of
    /// a message it is shows only in its header, so the caller narrates it.
    pub fn recv(&mut self, timeout: Duration, lowest_type_first: bool) -> Result<Got> {
        self.backend
            .recv(Instant::now() + timeout, lowest_type_first)
    }

    /// Narrate the receive just made (`part`: which part of a split message it was).
    pub fn narrate_recv(&self, len: usize, prio: u32, part: Part) {
        if narrate::verbose() {
            let (key, text) = self.backend.recv_call(len, prio);
            narrate_transfer(key, &text, part);
        }
    }

    pub fn received(&self, len: usize) -> &[u8] {
        self.backend.received(len)
    }

    pub fn pending(&self) -> Result<Option<(u64, bool)>> {
        self.backend.pending()
    }

    /// A `len`-byte message does not fit this queue, whose real limits (set by whoever
    /// made it) are smaller than this program's: exit 1, naming the limit.
    pub fn too_small(&self, len: usize) -> Error {
        let limit = match self.backend.facts().api {
            Api::Posix => format!("its message size (mq_msgsize) is {} bytes", self.msg_max()),
            Api::Sysv => format!(
                "it carries at most {} bytes per message (the smaller of its msg_qbytes and {SYSV_MSGMAX})",
                self.msg_max()
            ),
        };
        Error::new(
            Kind::Runtime,
            self.object(),
            format!("a {len}-byte message does not fit: {limit}"),
            format!(
                "the queue was made by another program with smaller limits; remove it ({}) so this program makes it anew, or send smaller messages (--size)",
                self.backend.remove_hint()
            ),
        )
        .because(Cause::Limit)
    }

    /// Refuse a queue of another user or one open to others.
    pub fn check_owner(&self) -> Result<()> {
        let me = nix::unistd::geteuid().as_raw();
        let (uid, mode) = self.backend.owner()?;
        if uid != me || mode & 0o077 != 0 {
            return Err(Error::new(
                Kind::Runtime,
                self.object(),
                format!("exists but belongs to uid {uid} with mode {mode:03o}; this program's queues are yours with mode 0600"),
                format!("not touching it; remove it yourself ({}) or choose another --name", self.backend.remove_hint()),
            )
            .because(Cause::NotOurs));
        }
        Ok(())
    }
}

/// Narrate one message's send or receive; the parts of a split message have a
/// budget of their own, so `-v` shows the first parts of a split message too.
fn narrate_transfer(key: &'static str, text: &str, part: Part) {
    match part {
        None => narrate::repeated(key, format_args!("{text}"), IDEA_COPY),
        Some((k, n)) => narrate::repeated(
            part_key(key),
            format_args!("{text}: part {k}/{n}"),
            "a message larger than the queue's message size goes in parts, joined again",
        ),
    }
}

fn part_key(key: &'static str) -> &'static str {
    match key {
        "msgsnd" => "msgsnd part",
        "msgrcv" => "msgrcv part",
        "mq_timedsend" => "mq_timedsend part",
        _ => "mq_timedreceive part",
    }
}

/// SysV has no timed calls: poll with `IPC_NOWAIT`, yielding first, then sleeping
/// longer each time (10 µs up to 1 ms), so a waiting side costs little CPU.
pub struct PollPace(u32);

impl PollPace {
    pub fn new() -> PollPace {
        PollPace(0)
    }

    pub fn pause(&mut self) {
        if self.0 < 8 {
            std::thread::yield_now();
        } else {
            let us = (10u64 << (self.0 - 8).min(7)).min(1000);
            std::thread::sleep(Duration::from_micros(us));
        }
        self.0 += 1;
    }
}
