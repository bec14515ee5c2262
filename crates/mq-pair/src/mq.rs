//! Message queues: POSIX (`mq_open`, `mq_timedsend`, `mq_timedreceive`, `mq_unlink`) and
//! System V (`ftok`, `msgget`, `msgsnd`, `msgrcv`, `msgctl`), as a [`Link`].
//!
//! - Framing: a queue keeps message boundaries, so each queue message is one frame: the
//!   24-byte header and the payload. A frame larger than the queue's message size goes in
//!   parts, each part the same header plus the next slice of the payload; the receiver
//!   joins them and refuses a part whose header differs. Nothing is ever truncated.
//!   The sender's first message is a small setup message (`IPCQ`, version, flags).
//! - Queues: data `/NAME` (SysV: key from `/tmp/NAME.mq.key`, apart from the shared
//!   memory tools' `/tmp/NAME.key`); pingpong adds a reply queue `/NAME.reply`
//!   (`/tmp/NAME.mq.reply.key`) that the sender creates before its hello.
//! - Either side may come first: the first creates the queue (exclusive, 0600) and waits;
//!   the second opens it and removes its name (POSIX `mq_unlink`, SysV the key file),
//!   which is the creator's sign that both are attached. A POSIX queue then lives only
//!   as long as its descriptors, so even `kill -9` leaves nothing. `IPC_RMID` destroys a
//!   SysV queue at once, so both sides remove it only when done (the sender waits until
//!   its last message was taken); the survivor of a killed peer removes it.
//! - Stale queues: a POSIX creator registers with `mq_notify(SIGEV_NONE)`, which only one
//!   process can hold and which ends when it dies; a SysV creator holds an `flock` on its
//!   key file from before the file appears (it is made locked under a temporary name and
//!   linked into place), so a live but slow creator is waited for. A queue whose creator
//!   holds neither is left from a crashed run: replaced. A SysV opener moves the key file
//!   to `/tmp/NAME.mq.inuse.key` rather than deleting it: if both sides are killed, the
//!   next run finds the orphaned queue by that record's key and removes it.
//! - Waits: POSIX uses `mq_timedsend`/`mq_timedreceive` with an absolute `CLOCK_REALTIME`
//!   deadline, re-checked against the monotonic clock. SysV has no timed calls: it uses
//!   `IPC_NOWAIT` and a backoff (a few yields, then sleeps of 10 µs growing to 1 ms).
//! - Priorities: `--priority P` is the POSIX priority (highest first) or the SysV type.
//!   `mixed` sends four levels; the receiver waits until the queue is backed up, then
//!   drains it: POSIX hands out the highest priority first, SysV `msgrcv` with a negative
//!   type the lowest type first, so level L travels as priority L or type 5 - L.

use ipc_common::cleanup::{self, Guard};
use ipc_common::error::{Error, Kind, Result};
use ipc_common::frame::{check_len, FrameKind, Header, HEADER_LEN};
use ipc_common::link::Link;
use ipc_common::narrate;
use ipc_common::stream::IDEA_COPY;
use ipc_common::sysv::{self, KeyFile};
use ipc_sys::mq as sys;
use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use nix::mqueue::{self, MQ_OFlag, MqAttr, MqdT};
use nix::sys::stat::Mode;
use nix::sys::time::TimeSpec;
use nix::time::ClockId;
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const IDEA_MQ: &str = "message queues: the kernel keeps each message whole, in priority order";
const IDEA_SYSV: &str = "SysV queue: msgget/msgsnd/msgrcv/msgctl, system-wide, shown by ipcs -q";
const IDEA_NOTIFY: &str = "mq_notify: one process may register per queue, and only while it lives";
const IDEA_UNLINK: &str = "cleanup: both sides have the queue, so the name can go now";
const IDEA_RMID: &str = "SysV: IPC_RMID destroys the queue at once, so only when both are done";

/// How long a side waits silently before saying it waits for its peer.
const GRACE: Duration = Duration::from_millis(200);
/// A creator registers its liveness token right after creating; an opener that finds
/// none re-checks this long before calling the queue stale.
const STALE_RECHECK: Duration = Duration::from_millis(300);
/// The longest single timed call, so the deadline is re-checked on the monotonic clock
/// even if the wall clock jumps.
const SLICE: Duration = Duration::from_millis(500);
/// Urgency levels of `--priority mixed`.
pub const MIXED_LEVELS: u32 = 4;
/// How many received priorities the summary lists.
const ORDER_SHOWN: usize = 24;

const SETUP_MAGIC: &[u8; 4] = b"IPCQ";
const SETUP_VERSION: u8 = 1;
const SETUP_LEN: usize = 8;
const FLAG_MIXED: u8 = 1;

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

/// The kernel's queue limits, read at start. Design for the defaults; never raised.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// `/proc/sys/fs/mqueue/msg_max`: messages a POSIX queue holds (default 10).
    pub posix_maxmsg: usize,
    /// `/proc/sys/fs/mqueue/msgsize_max`: bytes per POSIX message (default 8192).
    pub posix_msgsize: usize,
    /// `/proc/sys/kernel/msgmax`: bytes per SysV message (default 8192).
    pub sysv_msgmax: usize,
    /// `/proc/sys/kernel/msgmnb`: bytes a SysV queue holds (default 16384).
    pub sysv_msgmnb: usize,
}

pub const POSIX_MSG_MAX: &str = "/proc/sys/fs/mqueue/msg_max";
pub const POSIX_MSGSIZE_MAX: &str = "/proc/sys/fs/mqueue/msgsize_max";
pub const SYSV_MSGMAX: &str = "/proc/sys/kernel/msgmax";
pub const SYSV_MSGMNB: &str = "/proc/sys/kernel/msgmnb";

impl Limits {
    pub fn read() -> Limits {
        let get = |path: &str, default: usize| {
            std::fs::read_to_string(path)
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or(default)
        };
        Limits {
            posix_maxmsg: get(POSIX_MSG_MAX, 10),
            posix_msgsize: get(POSIX_MSGSIZE_MAX, 8192),
            sysv_msgmax: get(SYSV_MSGMAX, 8192),
            sysv_msgmnb: get(SYSV_MSGMNB, 16384),
        }
    }

    /// The largest single queue message, and the /proc file that sets it.
    pub fn message_max(&self, api: Api) -> (usize, &'static str) {
        match api {
            Api::Posix => (self.posix_msgsize, POSIX_MSGSIZE_MAX),
            Api::Sysv if self.sysv_msgmax <= self.sysv_msgmnb => (self.sysv_msgmax, SYSV_MSGMAX),
            Api::Sysv => (self.sysv_msgmnb, SYSV_MSGMNB),
        }
    }
}

/// Check the queue flags against each other and the limits, before any waiting.
/// `sending`: this side sends (send, or run).
pub fn validate(
    api: Api,
    priority: Option<Priority>,
    args: &ipc_common::CommonArgs,
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
        ));
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
        let why = if args.mode == Some(ipc_common::Mode::Pingpong) {
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
        if sending && size + HEADER_LEN > max {
            return Err(Error::usage(
                format!("--priority mixed with --size {size}: a message must fit in one queue message ({} payload bytes here, {file} less the {HEADER_LEN}-byte header)", max - HEADER_LEN),
                "parts of messages with different priorities would interleave; use a smaller --size",
            ));
        }
    }
    Ok(())
}

/// Words for the errno of a queue call: what it means here and what to do.
fn queue_error(api: Api, object: &str, call: &str, e: Errno, limits: &Limits) -> Error {
    let (kind, remedy) = match (api, e) {
        (_, Errno::EAGAIN) => (
            Kind::Runtime,
            "EAGAIN: the queue was full (or empty) and the call was told not to wait".to_string(),
        ),
        (Api::Posix, Errno::EMSGSIZE) => (
            Kind::Runtime,
            format!(
                "EMSGSIZE: the message is longer than the queue's message size (or the buffer shorter); \
                 this program makes queues of {} bytes ({POSIX_MSGSIZE_MAX}) and splits larger messages, \
                 so the queue was made with other limits: remove it (rm /dev/mqueue{}) and retry",
                limits.posix_msgsize,
                object.trim_start_matches("POSIX queue ")
            ),
        ),
        (Api::Posix, Errno::EINVAL) => (
            Kind::Runtime,
            format!(
                "EINVAL: the queue attributes exceed the limits, {} messages ({POSIX_MSG_MAX}) of {} bytes ({POSIX_MSGSIZE_MAX}); \
                 they changed while this ran, so rerun",
                limits.posix_maxmsg, limits.posix_msgsize
            ),
        ),
        (Api::Posix, Errno::EMFILE) => (
            Kind::Runtime,
            "EMFILE: this user's queue memory (RLIMIT_MSGQUEUE, see `ulimit -q`) or open-file limit is used up; \
             remove leftover queues (make clean-ipc) or end other queue users"
                .to_string(),
        ),
        (Api::Posix, Errno::ENOSPC) => (
            Kind::Runtime,
            "ENOSPC: the system-wide number of queues (/proc/sys/fs/mqueue/queues_max) is reached; remove leftovers (make clean-ipc)".to_string(),
        ),
        (Api::Sysv, Errno::ENOSPC) => (
            Kind::Runtime,
            "ENOSPC: the system-wide number of SysV queues (/proc/sys/kernel/msgmni) is reached; remove leftovers (make clean-ipc, or ipcrm -q ID)".to_string(),
        ),
        (Api::Sysv, Errno::EIDRM) | (Api::Sysv, Errno::EINVAL) => {
            // Our own Ctrl-C cleanup may have removed it: then that ends the process.
            cleanup::yield_to_interrupt();
            (
            Kind::Peer,
            "EIDRM/EINVAL: the queue was removed, so the other side ended (finished, interrupted or failed); see its output".to_string(),
        )
        }
        (Api::Sysv, Errno::E2BIG) => (
            Kind::Verify,
            format!(
                "E2BIG: a message is longer than this side's buffer ({SYSV_MSGMAX}); the other side is not this program with the same limits"
            ),
        ),
        (_, Errno::EACCES) | (_, Errno::EPERM) => (
            Kind::Runtime,
            "EACCES: the queue belongs to another user or is closed to you; choose another --name".to_string(),
        ),
        _ => (Kind::Runtime, String::new()),
    };
    let mut err = Error::os(object, call, std::io::Error::from(e)).with_remedy(remedy);
    err.kind = kind;
    if kind == Kind::Peer {
        err.cause = ipc_common::Cause::PeerGone;
    }
    err
}

fn pid_alive(pid: i32) -> bool {
    pid > 0
        && !matches!(
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None),
            Err(Errno::ESRCH)
        )
}

/// SysV has no timed calls: poll with `IPC_NOWAIT`, yielding first, then sleeping
/// longer each time (10 µs up to 1 ms), so a waiting side costs little CPU.
struct Backoff(u32);

impl Backoff {
    fn pause(&mut self) {
        if self.0 < 8 {
            std::thread::yield_now();
        } else {
            let us = (10u64 << (self.0 - 8).min(7)).min(1000);
            std::thread::sleep(Duration::from_micros(us));
        }
        self.0 += 1;
    }
}

enum Handle {
    Posix {
        mqd: Option<MqdT>,
        name: String,
    },
    Sysv {
        id: libc::c_int,
        key: libc::key_t,
        buf: sys::MsgBuf,
    },
}

/// One open queue, either API, with a buffer of one message.
pub struct Queue {
    api: Api,
    handle: Handle,
    object: String,
    /// The largest message this queue carries.
    msg_max: usize,
    /// POSIX: the message buffer (`mq_msgsize` bytes).
    buf: Vec<u8>,
    limits: Limits,
}

impl Drop for Queue {
    fn drop(&mut self) {
        if let Handle::Posix { mqd, .. } = &mut self.handle {
            if let Some(m) = mqd.take() {
                let _ = mqueue::mq_close(m);
            }
        }
    }
}

/// What a receive found.
enum Got {
    Message { len: usize, prio: u32 },
    TimedOut,
}

impl Queue {
    fn posix(mqd: MqdT, name: &str, limits: &Limits) -> Result<Queue> {
        let object = format!("POSIX queue {name}");
        let attr = mqueue::mq_getattr(&mqd)
            .map_err(|e| queue_error(Api::Posix, &object, "mq_getattr", e, limits))?;
        let msg_max = usize::try_from(attr.msgsize()).unwrap_or(0);
        Ok(Queue {
            api: Api::Posix,
            handle: Handle::Posix {
                mqd: Some(mqd),
                name: name.to_string(),
            },
            object,
            msg_max,
            buf: vec![0; msg_max],
            limits: *limits,
        })
    }

    fn sysv(id: libc::c_int, key: libc::key_t, limits: &Limits) -> Result<Queue> {
        let object = format!("SysV queue key {key:#010x} (id {id})");
        let st = sys::msgctl_stat(id)
            .map_err(|e| queue_error(Api::Sysv, &object, "msgctl(IPC_STAT)", errno(&e), limits))?;
        let msg_max = limits.sysv_msgmax.min(st.qbytes as usize);
        Ok(Queue {
            api: Api::Sysv,
            handle: Handle::Sysv {
                id,
                key,
                buf: sys::MsgBuf::new(msg_max),
            },
            object,
            msg_max,
            buf: Vec::new(),
            limits: *limits,
        })
    }

    /// A `len`-byte message does not fit this queue, whose real limits (set by whoever
    /// made it) are smaller than this program's: exit 1, naming the limit.
    fn too_small(&self, len: usize) -> Error {
        let (limit, remove) = match &self.handle {
            Handle::Posix { name, .. } => (
                format!("its message size (mq_msgsize) is {} bytes", self.msg_max),
                format!("rm /dev/mqueue{name}, or mq_unlink({name:?})"),
            ),
            Handle::Sysv { id, .. } => (
                format!(
                    "it carries at most {} bytes per message (the smaller of its msg_qbytes and {SYSV_MSGMAX})",
                    self.msg_max
                ),
                format!("ipcrm -q {id}"),
            ),
        };
        Error::new(
            Kind::Runtime,
            &self.object,
            format!("a {len}-byte message does not fit: {limit}"),
            format!(
                "the queue was made by another program with smaller limits; remove it ({remove}) so this program makes it anew, or send smaller messages (--size)"
            ),
        )
    }

    fn mqd(&self) -> Option<&MqdT> {
        match &self.handle {
            Handle::Posix { mqd, .. } => mqd.as_ref(),
            Handle::Sysv { .. } => None,
        }
    }

    fn sysv_id(&self) -> Option<libc::c_int> {
        match &self.handle {
            Handle::Sysv { id, .. } => Some(*id),
            Handle::Posix { .. } => None,
        }
    }

    /// (device, inode) of a POSIX queue: which queue a name refers to.
    fn identity(&self) -> Option<(u64, u64)> {
        let st = nix::sys::stat::fstat(self.mqd()?.as_fd().as_raw_fd()).ok()?;
        Some((st.st_dev, st.st_ino))
    }

    /// Refuse a queue of another user or one open to others.
    fn check_owner(&self) -> Result<()> {
        let me = nix::unistd::geteuid().as_raw();
        let (uid, mode) = match &self.handle {
            Handle::Posix { mqd, .. } => {
                let fd = mqd.as_ref().map_or(-1, |m| m.as_fd().as_raw_fd());
                let st = nix::sys::stat::fstat(fd)
                    .map_err(|e| queue_error(self.api, &self.object, "fstat", e, &self.limits))?;
                (st.st_uid, st.st_mode & 0o777)
            }
            Handle::Sysv { id, .. } => {
                let st = sys::msgctl_stat(*id).map_err(|e| {
                    queue_error(
                        self.api,
                        &self.object,
                        "msgctl(IPC_STAT)",
                        errno(&e),
                        &self.limits,
                    )
                })?;
                (st.uid, st.mode & 0o777)
            }
        };
        let remove = match &self.handle {
            Handle::Posix { name, .. } => format!("rm /dev/mqueue{name}"),
            Handle::Sysv { id, .. } => format!("ipcrm -q {id}"),
        };
        if uid != me || mode & 0o077 != 0 {
            return Err(Error::new(
                Kind::Runtime,
                &self.object,
                format!("exists but belongs to uid {uid} with mode {mode:03o}; this program's queues are yours with mode 0600"),
                format!("not touching it; remove it yourself ({remove}) or choose another --name"),
            ));
        }
        Ok(())
    }

    /// Send one message made of `parts`, waiting at most `timeout` for room.
    fn send(&mut self, parts: &[&[u8]], prio: u32, timeout: Duration) -> Result<()> {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        if len > self.msg_max {
            return Err(self.too_small(len));
        }
        let deadline = Instant::now() + timeout;
        match &mut self.handle {
            Handle::Posix { mqd, name } => {
                let mut at = 0;
                for p in parts {
                    self.buf[at..at + p.len()].copy_from_slice(p);
                    at += p.len();
                }
                let fd = mqd.as_ref().expect("open queue").as_fd();
                loop {
                    let abs = abs_deadline(deadline);
                    match sys::mq_timedsend(fd, &self.buf[..len], prio, abs.as_ref()) {
                        Ok(()) => {
                            narrate::repeated(
                                "mq_timedsend",
                                format_args!("mq_timedsend({name}, {len} bytes, prio {prio}) = 0"),
                                IDEA_COPY,
                            );
                            return Ok(());
                        }
                        Err(e) => match errno(&e) {
                            Errno::ETIMEDOUT if Instant::now() >= deadline => {
                                return Err(Error::stalled(
                                    &self.object,
                                    timeout,
                                    "the queue stayed full: the receiver took nothing",
                                ))
                            }
                            Errno::ETIMEDOUT | Errno::EINTR => {}
                            e => {
                                return Err(queue_error(
                                    self.api,
                                    &self.object,
                                    "mq_timedsend",
                                    e,
                                    &self.limits,
                                ))
                            }
                        },
                    }
                }
            }
            Handle::Sysv { id, buf, .. } => {
                let mut at = 0;
                let text = buf.text_mut();
                for p in parts {
                    text[at..at + p.len()].copy_from_slice(p);
                    at += p.len();
                }
                buf.set_mtype(libc::c_long::from(prio));
                let mut backoff = Backoff(0);
                loop {
                    match sys::msgsnd_nowait(*id, buf, len) {
                        Ok(()) => {
                            narrate::repeated(
                                "msgsnd",
                                format_args!(
                                    "msgsnd({id}, {len} bytes, mtype {prio}, IPC_NOWAIT) = 0"
                                ),
                                IDEA_COPY,
                            );
                            return Ok(());
                        }
                        Err(e) => match errno(&e) {
                            Errno::EAGAIN | Errno::EINTR if Instant::now() < deadline => {
                                backoff.pause()
                            }
                            Errno::EAGAIN => {
                                return Err(Error::stalled(
                                    &self.object,
                                    timeout,
                                    "the queue stayed full: the receiver took nothing",
                                ))
                            }
                            e => {
                                return Err(queue_error(
                                    self.api,
                                    &self.object,
                                    "msgsnd",
                                    e,
                                    &self.limits,
                                ))
                            }
                        },
                    }
                }
            }
        }
    }

    /// Receive one message into the queue's buffer, waiting at most `timeout`.
    /// `lowest_type_first`: SysV `msgrcv` with a negative type (the priority order).
    fn recv(&mut self, timeout: Duration, lowest_type_first: bool) -> Result<Got> {
        let deadline = Instant::now() + timeout;
        match &mut self.handle {
            Handle::Posix { mqd, name } => {
                let m = mqd.as_ref().expect("open queue");
                loop {
                    let abs = abs_deadline(deadline);
                    let mut prio = 0u32;
                    match mqueue::mq_timedreceive(m, &mut self.buf, &mut prio, &abs) {
                        Ok(len) => {
                            narrate::repeated(
                                "mq_timedreceive",
                                format_args!("mq_timedreceive({name}) = {len} bytes, prio {prio}"),
                                IDEA_COPY,
                            );
                            return Ok(Got::Message { len, prio });
                        }
                        Err(Errno::ETIMEDOUT) if Instant::now() >= deadline => {
                            return Ok(Got::TimedOut)
                        }
                        Err(Errno::ETIMEDOUT) | Err(Errno::EINTR) => {}
                        Err(e) => {
                            return Err(queue_error(
                                self.api,
                                &self.object,
                                "mq_timedreceive",
                                e,
                                &self.limits,
                            ))
                        }
                    }
                }
            }
            Handle::Sysv { id, buf, .. } => {
                let msgtyp = if lowest_type_first {
                    -libc::c_long::MAX
                } else {
                    0
                };
                let mut backoff = Backoff(0);
                loop {
                    match sys::msgrcv_nowait(*id, buf, msgtyp) {
                        Ok(len) => {
                            let mtype = buf.mtype();
                            narrate::repeated(
                                "msgrcv",
                                format_args!(
                                    "msgrcv({id}, msgtyp {msgtyp}, IPC_NOWAIT) = {len} bytes, mtype {mtype}"
                                ),
                                IDEA_COPY,
                            );
                            let prio = u32::try_from(mtype).unwrap_or(u32::MAX);
                            return Ok(Got::Message { len, prio });
                        }
                        Err(e) => match errno(&e) {
                            Errno::ENOMSG | Errno::EINTR if Instant::now() < deadline => {
                                backoff.pause()
                            }
                            Errno::ENOMSG => return Ok(Got::TimedOut),
                            e => {
                                return Err(queue_error(
                                    self.api,
                                    &self.object,
                                    "msgrcv",
                                    e,
                                    &self.limits,
                                ))
                            }
                        },
                    }
                }
            }
        }
    }

    /// The bytes of the message just received.
    fn received(&self, len: usize) -> &[u8] {
        match &self.handle {
            Handle::Posix { .. } => &self.buf[..len],
            Handle::Sysv { buf, .. } => &buf.text()[..len],
        }
    }

    /// Messages waiting, and whether the queue is full; `None` once the queue is gone.
    fn pending(&self) -> Result<Option<(u64, bool)>> {
        match &self.handle {
            Handle::Posix { mqd, .. } => {
                let a = mqueue::mq_getattr(mqd.as_ref().expect("open queue")).map_err(|e| {
                    queue_error(self.api, &self.object, "mq_getattr", e, &self.limits)
                })?;
                let n = u64::try_from(a.curmsgs()).unwrap_or(0);
                Ok(Some((n, a.curmsgs() >= a.maxmsg())))
            }
            Handle::Sysv { id, .. } => match sys::msgctl_stat(*id) {
                Ok(st) => Ok(Some((st.qnum, st.cbytes + self.msg_max as u64 > st.qbytes))),
                Err(e) if matches!(errno(&e), Errno::EINVAL | Errno::EIDRM) => Ok(None),
                Err(e) => Err(queue_error(
                    self.api,
                    &self.object,
                    "msgctl(IPC_STAT)",
                    errno(&e),
                    &self.limits,
                )),
            },
        }
    }
}

fn errno(e: &std::io::Error) -> Errno {
    Errno::from_raw(e.raw_os_error().unwrap_or(0))
}

/// `now` on the wall clock plus what is left until `deadline` (at most one slice): the
/// absolute `CLOCK_REALTIME` time the timed queue calls want.
fn abs_deadline(deadline: Instant) -> TimeSpec {
    let left = deadline
        .saturating_duration_since(Instant::now())
        .min(SLICE);
    let now = nix::time::clock_gettime(ClockId::CLOCK_REALTIME).unwrap_or(TimeSpec::new(0, 0));
    now + TimeSpec::from_duration(left)
}

// ---------------------------------------------------------------------------------
// Creating, opening and removing queues.

/// The POSIX name of a queue: `/NAME` or `/NAME.reply`.
pub fn posix_name(name: &str, suffix: Option<&str>) -> String {
    match suffix {
        Some(s) => format!("/{name}.{s}"),
        None => format!("/{name}"),
    }
}

/// Which queue a POSIX name refers to now, `None` if the name is gone. Uses
/// /dev/mqueue when it is mounted (a stat), else opens the name.
fn posix_name_identity(name: &str) -> Option<(u64, u64)> {
    if let Ok(st) = nix::sys::stat::stat(format!("/dev/mqueue{name}").as_str()) {
        return Some((st.st_dev, st.st_ino));
    }
    let m = mqueue::mq_open(
        name,
        MQ_OFlag::O_RDONLY | MQ_OFlag::O_NONBLOCK | MQ_OFlag::O_CLOEXEC,
        Mode::empty(),
        None,
    )
    .ok()?;
    let st = nix::sys::stat::fstat(m.as_fd().as_raw_fd()).ok();
    let _ = mqueue::mq_close(m);
    st.map(|st| (st.st_dev, st.st_ino))
}

/// Remove a POSIX queue's name if it still refers to the queue `id` (not a newer one).
fn posix_unlink_if_same(name: &str, id: Option<(u64, u64)>, why: &str) -> bool {
    if id.is_some() && posix_name_identity(name) == id && mqueue::mq_unlink(name).is_ok() {
        narrate::call(format_args!("mq_unlink({name:?}) = 0"), why);
        return true;
    }
    false
}

/// The queue's creator registered with `mq_notify` and is alive (re-checked for a
/// moment, as a new creator registers right after creating).
fn posix_creator_alive(q: &Queue) -> Result<bool> {
    let fd = q.mqd().expect("POSIX queue").as_fd();
    let until = Instant::now() + STALE_RECHECK;
    loop {
        match sys::mq_notify_register(fd) {
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                narrate::call(
                    format_args!(
                        "mq_notify({}, SIGEV_NONE) = EBUSY: its creator is alive",
                        q.object
                    ),
                    IDEA_NOTIFY,
                );
                return Ok(true);
            }
            Ok(()) => {
                let _ = sys::mq_notify_clear(fd);
                if Instant::now() >= until {
                    return Ok(false);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => {
                return Err(queue_error(
                    Api::Posix,
                    &q.object,
                    "mq_notify",
                    errno(&e),
                    &q.limits,
                ))
            }
        }
    }
}

/// Register this process on its new queue, so others see its creator alive. Another
/// process may hold the registration for an instant while it checks: retry.
fn posix_register(q: &Queue) {
    let fd = q.mqd().expect("POSIX queue").as_fd();
    for _ in 0..200 {
        match sys::mq_notify_register(fd) {
            Ok(()) => {
                narrate::call(
                    format_args!("mq_notify({}, SIGEV_NONE) = 0", q.object),
                    IDEA_NOTIFY,
                );
                return;
            }
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                std::thread::sleep(Duration::from_millis(1))
            }
            Err(_) => return,
        }
    }
}

/// A SysV creator's key file, with the `flock` that tells others it is alive.
struct SysvKey {
    kf: KeyFile,
    lock: Option<Flock<File>>,
}

impl SysvKey {
    /// The key file is no longer this one (the peer removed it): forget it.
    fn gone(&self) -> bool {
        let Some(lock) = &self.lock else { return true };
        let ours = lock.metadata().ok().map(|m| (m.dev(), m.ino()));
        let now = std::fs::symlink_metadata(&self.kf.path)
            .ok()
            .map(|m| (m.dev(), m.ino()));
        ours.is_none() || now != ours
    }
}

impl Drop for SysvKey {
    fn drop(&mut self) {
        // Remove the key file only if it is still ours (the guard removes by path).
        if self.gone() {
            self.kf.removed_by_peer();
        }
    }
}

/// An open queue and what this side must remove. Fields drop in order: the queue is
/// closed, then removed, then the key file's descriptor closed.
pub struct Endpoint {
    queue: Queue,
    /// Removes the queue (POSIX: its name, if still this queue; SysV: `IPC_RMID`).
    guard: Option<Guard>,
    key: Option<SysvKey>,
    /// SysV opener: the key file held open, so its inode (the key) stays taken.
    _pin: Option<File>,
    created: bool,
}

impl Endpoint {
    pub fn object(&self) -> &str {
        &self.queue.object
    }

    /// Stop removing the queue on exit (POSIX: its name is gone already).
    fn disarm(&mut self) {
        if let Some(g) = self.guard.take() {
            g.disarm();
        }
    }
}

fn posix_guard(q: &Queue, name: &str) -> Guard {
    let id = q.identity();
    let n = name.to_string();
    let rec = ipc_common::record::Object::posix_mq(name);
    cleanup::on_exit_recorded(q.object.clone(), rec, move || {
        posix_unlink_if_same(&n, id, "cleanup: the queue's owner removes its name");
    })
}

/// Removes the SysV queue, and its in-use record (if still the file `record` names).
fn sysv_guard(q: &Queue, record: Option<(PathBuf, (u64, u64))>) -> Guard {
    let id = q.sysv_id().expect("SysV queue");
    let key = match q.handle {
        Handle::Sysv { key, .. } => key,
        _ => 0,
    };
    let rec = ipc_common::record::Object::sysv(ipc_common::record::Kind::SysvMsg, key, id);
    cleanup::on_exit_recorded(q.object.clone(), rec, move || {
        if sys::msgctl_rmid(id).is_ok() {
            narrate::call(format_args!("msgctl({id}, IPC_RMID) = 0"), IDEA_RMID);
        }
        if let Some((path, ino)) = &record {
            remove_key_file(path, Some(*ino));
        }
    })
}

/// (device, inode) of an open file.
fn file_id(f: &File) -> Option<(u64, u64)> {
    f.metadata().ok().map(|m| (m.dev(), m.ino()))
}

/// What claiming a name found.
enum Claim {
    /// This side created the queue.
    Created(Endpoint),
    /// Another live process created it (or, with no liveness check, it just exists).
    Existing(Endpoint),
}

/// Create the POSIX queue `name` exclusively, or open the existing one. With
/// `check_alive`, an existing queue whose creator is gone is stale and replaced.
fn posix_claim(name: &str, limits: &Limits, check_alive: bool) -> Result<Claim> {
    let object = format!("POSIX queue {name}");
    let attr = MqAttr::new(
        0,
        limits.posix_maxmsg as nix::mqueue::mq_attr_member_t,
        limits.posix_msgsize as nix::mqueue::mq_attr_member_t,
        0,
    );
    for _ in 0..10 {
        let flags = MQ_OFlag::O_CREAT | MQ_OFlag::O_EXCL | MQ_OFlag::O_RDWR | MQ_OFlag::O_CLOEXEC;
        match mqueue::mq_open(name, flags, Mode::S_IRUSR | Mode::S_IWUSR, Some(&attr)) {
            Ok(m) => {
                narrate::call(
                    format_args!(
                        "mq_open({name:?}, O_CREAT|O_EXCL|O_RDWR, 0600, {{maxmsg {}, msgsize {}}}) = fd {}",
                        limits.posix_maxmsg,
                        limits.posix_msgsize,
                        m.as_fd().as_raw_fd()
                    ),
                    IDEA_MQ,
                );
                let q = Queue::posix(m, name, limits)?;
                posix_register(&q);
                let guard = posix_guard(&q, name);
                return Ok(Claim::Created(Endpoint {
                    queue: q,
                    guard: Some(guard),
                    key: None,
                    _pin: None,
                    created: true,
                }));
            }
            Err(Errno::EEXIST) => {
                let m = match mqueue::mq_open(
                    name,
                    MQ_OFlag::O_RDWR | MQ_OFlag::O_CLOEXEC,
                    Mode::empty(),
                    None,
                ) {
                    Ok(m) => m,
                    Err(Errno::ENOENT) => continue,
                    Err(e) => {
                        return Err(queue_error(
                            Api::Posix,
                            &object,
                            "mq_open(O_RDWR)",
                            e,
                            limits,
                        ))
                    }
                };
                narrate::call(
                    format_args!(
                        "mq_open({name:?}, O_RDWR) = fd {}: it exists",
                        m.as_fd().as_raw_fd()
                    ),
                    IDEA_MQ,
                );
                let q = Queue::posix(m, name, limits)?;
                q.check_owner()?;
                if !check_alive || posix_creator_alive(&q)? {
                    return Ok(Claim::Existing(Endpoint {
                        queue: q,
                        guard: None,
                        key: None,
                        _pin: None,
                        created: false,
                    }));
                }
                narrate::note(format_args!(
                    "replacing the stale {object}: no live process created it (left by a crashed run)"
                ));
                posix_unlink_if_same(name, q.identity(), "cleanup: a stale queue goes");
            }
            Err(e) => {
                return Err(queue_error(
                    Api::Posix,
                    &object,
                    "mq_open(O_CREAT|O_EXCL, 0600)",
                    e,
                    limits,
                ))
            }
        }
    }
    Err(Error::new(
        Kind::Runtime,
        object,
        "mq_open: the name keeps appearing and vanishing",
        "another program is using this name; choose another --name",
    ))
}

/// Someone holds the `flock` on the key file at `path` (its creator is alive),
/// re-checked for a moment as a new creator locks right after creating the file.
fn sysv_creator_alive(path: &Path) -> Result<bool> {
    let until = Instant::now() + STALE_RECHECK;
    loop {
        let f = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(Error::os(format!("key file {}", path.display()), "open", e)),
        };
        // A shared probe: the creator's exclusive lock makes it fail, but two probing
        // sides never take each other for a live creator.
        match Flock::lock(f, FlockArg::LockSharedNonblock) {
            Err((_, Errno::EWOULDBLOCK)) => return Ok(true),
            Ok(lock) => {
                drop(lock);
                if Instant::now() >= until {
                    return Ok(false);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            Err((_, e)) => {
                return Err(Error::os(
                    format!("key file {}", path.display()),
                    "flock",
                    e.into(),
                ))
            }
        }
    }
}

/// `msgget(key, IPC_CREAT|IPC_EXCL|0600)`. A queue with the key of a key file we just
/// made outlived its own key file (the file system reused the inode): stale if its last
/// users are gone, then replaced; else refused with the command that removes it.
fn sysv_create(key: libc::key_t, path: &Path, limits: &Limits) -> Result<libc::c_int> {
    let object = format!("SysV queue key {key:#010x} (key file {})", path.display());
    // Test-only (debug builds): a creator that is alive but slow to make its queue.
    #[cfg(debug_assertions)]
    if let Some(ms) = std::env::var("IPC_TEST_DELAY_MSGGET_MS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        std::thread::sleep(Duration::from_millis(ms));
    }
    let create = || sys::msgget(key, libc::IPC_CREAT | libc::IPC_EXCL | 0o600);
    let mut r = create();
    if r.as_ref().err().map(errno) == Some(Errno::EEXIST) {
        let id = sys::msgget(key, 0)
            .map_err(|e| queue_error(Api::Sysv, &object, "msgget", errno(&e), limits))?;
        let st = sys::msgctl_stat(id)
            .map_err(|e| queue_error(Api::Sysv, &object, "msgctl(IPC_STAT)", errno(&e), limits))?;
        let me = nix::unistd::geteuid().as_raw();
        if st.cuid != me || st.mode & 0o777 != 0o600 || pid_alive(st.lspid) || pid_alive(st.lrpid) {
            return Err(Error::new(
                Kind::Runtime,
                object,
                format!("msgget(IPC_CREAT|IPC_EXCL): a queue with this key exists (id {id}) but its key file was gone"),
                format!("if no mq-pair run uses it, remove it (ipcrm -q {id}) and retry, or choose another --name"),
            ));
        }
        narrate::note(format_args!(
            "replacing the stale SysV queue id {id} (key {key:#010x}): its key file and its last users are gone (left by a crashed run)"
        ));
        let _ = sys::msgctl_rmid(id);
        r = create();
    }
    let id = r.map_err(|e| {
        queue_error(
            Api::Sysv,
            &object,
            "msgget(IPC_CREAT|IPC_EXCL, 0600)",
            errno(&e),
            limits,
        )
    })?;
    narrate::call(
        format_args!("msgget({key:#010x}, IPC_CREAT|IPC_EXCL|0600) = {id}"),
        IDEA_SYSV,
    );
    Ok(id)
}

/// Is the `flock` on the key file at `path` held (its creator alive)? One look.
/// `None`: the file is gone.
fn sysv_lock_held(path: &Path) -> Result<Option<bool>> {
    let f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::os(format!("key file {}", path.display()), "open", e)),
    };
    // Shared, like the probe above: another prober does not look like a creator.
    match Flock::lock(f, FlockArg::LockSharedNonblock) {
        Err((_, Errno::EWOULDBLOCK)) => Ok(Some(true)),
        Ok(_) => Ok(Some(false)),
        Err((_, e)) => Err(Error::os(
            format!("key file {}", path.display()),
            "flock",
            e.into(),
        )),
    }
}

/// A pair records its attached queue under a second name (the opener moves the key
/// file there), so a queue orphaned by killing both sides can still be found by its
/// `ftok` key: the record's inode is the key file's. Its creator's `flock` stays on it.
/// Reclaim such an orphan: a record nobody holds, whose queue's last users are gone.
fn sysv_reclaim_orphan(record: &Path, limits: &Limits) -> Result<()> {
    if sysv_lock_held(record)? != Some(false) {
        return Ok(());
    }
    let Ok(kf) = KeyFile::open(record) else {
        // Not a file of ours: leave it (the claim refuses such names on its own).
        return Ok(());
    };
    let me = nix::unistd::geteuid().as_raw();
    if let Ok(id) = sys::msgget(kf.key, 0) {
        let st = sys::msgctl_stat(id).map_err(|e| {
            queue_error(
                Api::Sysv,
                &kf.path.display().to_string(),
                "msgctl(IPC_STAT)",
                errno(&e),
                limits,
            )
        })?;
        if st.cuid != me || pid_alive(st.lspid) || pid_alive(st.lrpid) {
            // A survivor still uses it (its partner was killed): it removes it itself.
            return Ok(());
        }
        narrate::note(format_args!(
            "removing the orphaned SysV queue id {id} (key {:#010x}, recorded in {}): both of its users are gone (killed)",
            kf.key,
            record.display()
        ));
        let _ = sys::msgctl_rmid(id);
    }
    remove_key_file(record, None);
    Ok(())
}

/// The opener's side of attaching: move the key file to the pair's record (or, if a
/// record exists already, just remove it). Either way the name is free for the next
/// pair, and the creator sees the key file gone.
fn sysv_attach(path: &Path, record: &Path, pin: Option<&File>) -> Option<(PathBuf, (u64, u64))> {
    let ours = pin.and_then(file_id);
    let now = std::fs::symlink_metadata(path)
        .ok()
        .map(|m| (m.dev(), m.ino()));
    if ours.is_none() || now != ours {
        return None;
    }
    if std::fs::hard_link(path, record).is_ok() {
        narrate::call(
            format_args!("link({path:?}, {record:?}) = 0"),
            "the pair's record: finds its queue again if both sides are killed",
        );
        remove_key_file(path, ours);
        return ours.map(|i| (record.to_path_buf(), i));
    }
    remove_key_file(path, ours);
    None
}

/// Create the SysV queue for key file `path` exclusively, or open the existing one.
/// With `check_alive`, a key file whose creator is gone is stale: it and its queue go.
/// A live creator (its `flock` held) is waited for up to `wait` to make its queue.
fn sysv_claim(
    path: &Path,
    record: &Path,
    limits: &Limits,
    check_alive: bool,
    wait: Duration,
) -> Result<Claim> {
    let keyobj = format!("key file {}", path.display());
    sysv_reclaim_orphan(record, limits)?;
    'claim: for _ in 0..10 {
        // Locked before it appears: held for this side's life, the sign it is alive.
        if let Some((kf, lock)) = KeyFile::create_locked(path)? {
            let id = sysv_create(kf.key, path, limits)?;
            let q = Queue::sysv(id, kf.key, limits)?;
            let guard = sysv_guard(&q, file_id(&lock).map(|i| (record.to_path_buf(), i)));
            return Ok(Claim::Created(Endpoint {
                queue: q,
                guard: Some(guard),
                key: Some(SysvKey {
                    kf,
                    lock: Some(lock),
                }),
                _pin: None,
                created: true,
            }));
        }
        let kf = match KeyFile::open(path) {
            Ok(kf) => kf,
            Err(e) if e.source.as_ref().and_then(|s| s.raw_os_error()) == Some(libc::ENOENT) => {
                continue
            }
            Err(e) => return Err(e),
        };
        // Held open from here: its inode, and so the key, cannot be reused meanwhile.
        let pin = File::open(path).ok();
        let mut alive = !check_alive || sysv_creator_alive(path)?;
        // A live creator makes the queue right after its key file, but may be slow:
        // wait for it as long as its lock says it lives (at most `wait`).
        let deadline = Instant::now() + wait.max(STALE_RECHECK);
        let recheck_from = Instant::now() + STALE_RECHECK;
        let found = loop {
            match sys::msgget(kf.key, 0) {
                Ok(id) => break Some(id),
                Err(e) if errno(&e) == Errno::ENOENT && alive => {
                    if Instant::now() >= deadline {
                        return Err(Error::peer(
                            &keyobj,
                            format!(
                                "its creator is alive (it holds the key file's lock) but made no queue within {:.1} s",
                                wait.as_secs_f64()
                            ),
                            "the other side is stuck; check it, or raise --timeout",
                        ));
                    }
                    std::thread::sleep(Duration::from_millis(5));
                    // Past the first moment, only a held lock keeps this side waiting
                    // (a key file left with no queue and no one holding it is stale).
                    if Instant::now() >= recheck_from {
                        // Another side replaced the key file meanwhile: its key is not
                        // ours any more; look at the name afresh.
                        let here = std::fs::symlink_metadata(path)
                            .ok()
                            .map(|m| (m.dev(), m.ino()));
                        if here != pin.as_ref().and_then(file_id) {
                            continue 'claim;
                        }
                        alive = sysv_lock_held(path)? == Some(true);
                    }
                }
                Err(e) if errno(&e) == Errno::ENOENT => break None,
                Err(e) => return Err(queue_error(Api::Sysv, &keyobj, "msgget", errno(&e), limits)),
            }
        };
        match found {
            Some(id) if alive => {
                narrate::call(
                    format_args!("msgget({:#010x}, 0) = {id}", kf.key),
                    IDEA_SYSV,
                );
                let q = Queue::sysv(id, kf.key, limits)?;
                q.check_owner()?;
                let rec = pin
                    .as_ref()
                    .and_then(file_id)
                    .map(|i| (record.to_path_buf(), i));
                let guard = sysv_guard(&q, rec);
                return Ok(Claim::Existing(Endpoint {
                    queue: q,
                    guard: Some(guard),
                    key: None,
                    _pin: pin,
                    created: false,
                }));
            }
            found => {
                narrate::note(format_args!(
                    "replacing the stale {keyobj}: no live process holds it (left by a crashed run)"
                ));
                if let Some(id) = found {
                    let q = Queue::sysv(id, kf.key, limits)?;
                    q.check_owner()?;
                    let _ = sys::msgctl_rmid(id);
                }
                remove_key_file(path, pin.as_ref().and_then(file_id));
            }
        }
    }
    Err(Error::new(
        Kind::Runtime,
        keyobj,
        "the key file keeps appearing and vanishing",
        "another program is using this name; choose another --name",
    ))
}

/// Remove a key file (if it is still the file `ino`), narrating it.
fn remove_key_file(path: &Path, ino: Option<(u64, u64)>) {
    let now = std::fs::symlink_metadata(path)
        .ok()
        .map(|m| (m.dev(), m.ino()));
    if now.is_some() && (ino.is_none() || now == ino) && std::fs::remove_file(path).is_ok() {
        narrate::call(format_args!("unlink({path:?}) = 0"), IDEA_UNLINK);
    }
}

/// The SysV key file of a queue: `/tmp/NAME.mq.key` (data) or `/tmp/NAME.mq.reply.key`.
/// The `.mq` keeps them apart from the shared-memory tools' key files.
pub fn sysv_key_path(name: &str, suffix: Option<&str>) -> PathBuf {
    match suffix {
        Some(s) => sysv::key_path(name, Some(&format!("mq.{s}"))),
        None => sysv::key_path(name, Some("mq")),
    }
}

/// Where an attached pair records its queue: `/tmp/NAME.mq.inuse.key` (or
/// `/tmp/NAME.mq.reply.inuse.key`), the key file moved there by the opener.
pub fn sysv_record_path(name: &str, suffix: Option<&str>) -> PathBuf {
    match suffix {
        Some(s) => sysv::key_path(name, Some(&format!("mq.{s}.inuse"))),
        None => sysv::key_path(name, Some("mq.inuse")),
    }
}

/// `wait`: how long an opener waits for a live creator to make its queue.
fn claim(
    api: Api,
    name: &str,
    suffix: Option<&str>,
    limits: &Limits,
    check_alive: bool,
    wait: Duration,
) -> Result<Claim> {
    match api {
        Api::Posix => posix_claim(&posix_name(name, suffix), limits, check_alive),
        Api::Sysv => sysv_claim(
            &sysv_key_path(name, suffix),
            &sysv_record_path(name, suffix),
            limits,
            check_alive,
            wait,
        ),
    }
}

/// Where the name of `api`'s queue lives, for messages: `/ipc-mq`, `/tmp/ipc-mq.key`.
pub fn name_shown(api: Api, name: &str) -> String {
    match api {
        Api::Posix => posix_name(name, None),
        Api::Sysv => sysv_key_path(name, None).display().to_string(),
    }
}

/// How the first side waits for the second.
pub struct Rendezvous<'a> {
    pub api: Api,
    pub name: &'a str,
    pub timeout: Duration,
    pub limits: Limits,
    /// `a sender` or `a receiver`, for the waiting note.
    pub peer_role: &'a str,
    /// The command to start in another terminal; `None`: say nothing (`run`).
    pub peer_cmd: Option<String>,
}

/// The data queue, whichever side comes first. The second side removes the name (its
/// sign to the first that it has attached); `give_up` lets `run` stop waiting for a
/// child that died.
pub fn rendezvous(r: &Rendezvous<'_>, give_up: &mut dyn FnMut() -> Result<()>) -> Result<Endpoint> {
    match claim(r.api, r.name, None, &r.limits, true, r.timeout)? {
        Claim::Existing(ep) => {
            match r.api {
                Api::Posix => {
                    posix_unlink_if_same(
                        &posix_name(r.name, None),
                        ep.queue.identity(),
                        IDEA_UNLINK,
                    );
                }
                Api::Sysv => {
                    sysv_attach(
                        &sysv_key_path(r.name, None),
                        &sysv_record_path(r.name, None),
                        ep._pin.as_ref(),
                    );
                }
            }
            Ok(ep)
        }
        Claim::Created(mut ep) => {
            let started = Instant::now();
            let deadline = started + r.timeout;
            let mut said = false;
            let qname = posix_name(r.name, None);
            let id = ep.queue.identity();
            loop {
                let attached = match r.api {
                    Api::Posix => {
                        let same = posix_name_identity(&qname) == id;
                        if same {
                            // Opening the name to compare (no /dev/mqueue) drops the
                            // registration: renew it.
                            let _ = sys::mq_notify_register(ep.queue.mqd().expect("posix").as_fd());
                        }
                        !same
                    }
                    Api::Sysv => ep.key.as_ref().is_none_or(SysvKey::gone),
                };
                if attached {
                    break;
                }
                give_up()?;
                if Instant::now() >= deadline {
                    return Err(Error::peer(
                        ep.object(),
                        format!(
                            "no {} opened it within {:.1} s",
                            r.peer_role.trim_start_matches("a "),
                            r.timeout.as_secs_f64()
                        ),
                        match &r.peer_cmd {
                            Some(cmd) => {
                                format!("start `{cmd}` within --timeout, or raise --timeout")
                            }
                            None => "the other side did not start; see its output".to_string(),
                        },
                    ));
                }
                if let (Some(cmd), false) = (&r.peer_cmd, said) {
                    if started.elapsed() >= GRACE {
                        narrate::note(format_args!(
                            "waiting up to {:.0} s for {} on {} (start `{cmd}` in another terminal)",
                            r.timeout.as_secs_f64(),
                            r.peer_role,
                            ep.object()
                        ));
                        said = true;
                    }
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            match r.api {
                // The name is gone; the queue lives as long as the two descriptors.
                Api::Posix => ep.disarm(),
                // Keep the key file's descriptor (and flock) open until the queue is
                // removed: while it is open the file system cannot give its inode, and
                // so ftok's key, to another run's key file.
                Api::Sysv => {
                    if let Some(k) = ep.key.as_mut() {
                        k.kf.removed_by_peer();
                    }
                }
            }
            Ok(ep)
        }
    }
}

/// `--raw`: create the queue, or use an existing one of ours, with no handshake (the
/// other side may be any program). `owner`: remove it on exit even if it existed
/// (the receiver); a sender removes only a queue it created.
pub fn open_raw(
    api: Api,
    name: &str,
    limits: &Limits,
    owner: bool,
    timeout: Duration,
) -> Result<Endpoint> {
    let mut ep = match claim(api, name, None, limits, false, timeout)? {
        Claim::Created(ep) => ep,
        Claim::Existing(ep) => ep,
    };
    if owner && ep.guard.is_none() {
        ep.guard = Some(match api {
            Api::Posix => posix_guard(&ep.queue, &posix_name(name, None)),
            Api::Sysv => sysv_guard(&ep.queue, None),
        });
    }
    if !owner && !ep.created {
        ep.disarm();
    }
    Ok(ep)
}

/// The sender's reply queue for pingpong, made before the hello so the receiver can
/// answer. A live one under the name means another sender uses the name.
pub fn create_reply(api: Api, name: &str, limits: &Limits) -> Result<Endpoint> {
    match claim(api, name, Some("reply"), limits, true, STALE_RECHECK)? {
        Claim::Created(ep) => Ok(ep),
        Claim::Existing(ep) => Err(Error::new(
            Kind::Runtime,
            ep.object(),
            "is in use by another sender",
            "wait for it to finish, or choose another --name",
        )),
    }
}

/// The receiver's end of the reply queue, which a pingpong sender made before its hello.
fn open_reply(api: Api, name: &str, limits: &Limits) -> Result<Endpoint> {
    let missing = |object: String| {
        Error::peer(
            object,
            "the sender announced pingpong but its reply queue is missing",
            "the sender ended early or is not this program; see its output",
        )
    };
    match api {
        Api::Posix => {
            let qname = posix_name(name, Some("reply"));
            let object = format!("POSIX queue {qname}");
            let m = match mqueue::mq_open(
                qname.as_str(),
                MQ_OFlag::O_RDWR | MQ_OFlag::O_CLOEXEC,
                Mode::empty(),
                None,
            ) {
                Ok(m) => m,
                Err(Errno::ENOENT) => return Err(missing(object)),
                Err(e) => return Err(queue_error(api, &object, "mq_open(O_RDWR)", e, limits)),
            };
            narrate::call(
                format_args!("mq_open({qname:?}, O_RDWR) = fd {}", m.as_fd().as_raw_fd()),
                IDEA_MQ,
            );
            let q = Queue::posix(m, &qname, limits)?;
            q.check_owner()?;
            posix_unlink_if_same(&qname, q.identity(), IDEA_UNLINK);
            Ok(Endpoint {
                queue: q,
                guard: None,
                key: None,
                _pin: None,
                created: false,
            })
        }
        Api::Sysv => {
            let path = sysv_key_path(name, Some("reply"));
            let kf = KeyFile::open(&path)
                .map_err(|_| missing(format!("key file {}", path.display())))?;
            let id = sys::msgget(kf.key, 0)
                .map_err(|_| missing(format!("SysV queue key {:#010x}", kf.key)))?;
            narrate::call(
                format_args!("msgget({:#010x}, 0) = {id}", kf.key),
                IDEA_SYSV,
            );
            let q = Queue::sysv(id, kf.key, limits)?;
            q.check_owner()?;
            let pin = File::open(&path).ok();
            let rec = sysv_attach(&path, &sysv_record_path(name, Some("reply")), pin.as_ref());
            let guard = sysv_guard(&q, rec);
            Ok(Endpoint {
                queue: q,
                guard: Some(guard),
                key: None,
                _pin: pin,
                created: false,
            })
        }
    }
}

// ---------------------------------------------------------------------------------
// The link: frames in queue messages.

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Side {
    Sender,
    Receiver,
}

/// What both sides of a link are set up with.
#[derive(Clone, Debug)]
pub struct LinkOpts {
    pub api: Api,
    /// The plain name (`ipc-mq`), from which the queue names derive.
    pub name: String,
    pub limits: Limits,
    pub timeout: Duration,
    pub raw: bool,
}

/// Frames over one queue each way. See the module documentation for the protocol.
pub struct MqLink {
    api: Api,
    side: Side,
    name: String,
    limits: Limits,
    timeout: Duration,
    tx: Option<Endpoint>,
    rx: Option<Endpoint>,
    priority: Priority,
    raw: bool,
    /// The receiver still has to read the sender's setup message.
    await_setup: bool,
    /// The sender still has to send it.
    send_setup: bool,
    /// A receiver writing `--output`: mixed priorities would scramble the bytes.
    refuse_reorder: bool,
    frames_in: u64,
    /// Priorities of the data messages as they arrived (the first few).
    order: Vec<u32>,
    data_in: u64,
    raw_seen: bool,
}

impl MqLink {
    /// The sending side: `data` is the data queue, `reply` the pingpong reply queue.
    pub fn sender(
        o: &LinkOpts,
        data: Endpoint,
        reply: Option<Endpoint>,
        priority: Priority,
    ) -> MqLink {
        let raw = o.raw;
        MqLink {
            api: o.api,
            side: Side::Sender,
            name: o.name.clone(),
            limits: o.limits,
            timeout: o.timeout,
            tx: Some(data),
            rx: reply,
            priority,
            raw,
            await_setup: false,
            send_setup: !raw,
            refuse_reorder: false,
            frames_in: 0,
            order: Vec::new(),
            data_in: 0,
            raw_seen: false,
        }
    }

    /// The receiving side; a pingpong reply queue is opened on the first answer.
    pub fn receiver(o: &LinkOpts, data: Endpoint, refuse_reorder: bool) -> MqLink {
        let raw = o.raw;
        MqLink {
            api: o.api,
            side: Side::Receiver,
            name: o.name.clone(),
            limits: o.limits,
            timeout: o.timeout,
            tx: None,
            rx: Some(data),
            priority: Priority::or_default(None, o.api),
            raw,
            await_setup: !raw,
            send_setup: false,
            refuse_reorder,
            frames_in: 0,
            order: Vec::new(),
            data_in: 0,
            raw_seen: false,
        }
    }

    /// The receiver in mixed mode: the priorities seen, in arrival order.
    pub fn priority_order(&self) -> Option<String> {
        if self.priority != Priority::Mixed || self.side != Side::Receiver {
            return None;
        }
        let mut s: Vec<String> = self.order.iter().map(u32::to_string).collect();
        if self.data_in > self.order.len() as u64 {
            s.push("...".into());
        }
        Some(s.join(","))
    }

    /// The priority setting as the summary shows it (the receiver's, learned).
    pub fn priority(&self) -> Priority {
        self.priority
    }

    /// The kernel value (POSIX priority or SysV type) of urgency `level` in mixed mode.
    fn level_value(&self, level: u32) -> u32 {
        match self.api {
            Api::Posix => level,
            Api::Sysv => MIXED_LEVELS + 1 - level,
        }
    }

    /// Which priority a frame travels at: in mixed mode the setup and hello go first
    /// (most urgent), the end marker last, data cycles through the levels.
    fn prio_for(&self, kind: Option<FrameKind>, seq: u64) -> u32 {
        match self.priority {
            Priority::Fixed(p) => p,
            Priority::Mixed => match kind {
                None | Some(FrameKind::Hello) => self.level_value(MIXED_LEVELS),
                Some(FrameKind::End) => self.level_value(1),
                _ => self.level_value(1 + (seq % u64::from(MIXED_LEVELS)) as u32),
            },
        }
    }

    fn tx(&mut self) -> Result<&mut Queue> {
        if self.tx.is_none() {
            // The receiver answers pingpong on the sender's reply queue.
            self.tx = Some(open_reply(self.api, &self.name, &self.limits)?);
        }
        Ok(&mut self.tx.as_mut().expect("opened").queue)
    }

    /// Receive one message, waiting at most the timeout: (length, priority).
    fn take(&mut self) -> Result<(usize, u32)> {
        let lowest_first = self.priority == Priority::Mixed;
        let timeout = self.timeout;
        let rx = &mut self.rx.as_mut().expect("a receiving queue").queue;
        match rx.recv(timeout, lowest_first)? {
            Got::Message { len, prio } => Ok((len, prio)),
            Got::TimedOut => Err(Error::stalled(&rx.object, timeout, "nothing arrived")),
        }
    }

    fn read_setup(&mut self) -> Result<()> {
        let (len, _) = self.take()?;
        let rx = &self.rx.as_ref().expect("rx").queue;
        let m = rx.received(len);
        if len != SETUP_LEN || &m[..4] != SETUP_MAGIC {
            return Err(Error::verify(
                &rx.object,
                format!("the first message ({len} bytes) is not this program's queue setup"),
            )
            .with_remedy("the sender is not mq-pair, or sends --raw; use --raw on both sides"));
        }
        if m[4] != SETUP_VERSION {
            return Err(Error::verify(
                &rx.object,
                format!(
                    "the sender speaks queue protocol {}, this program {SETUP_VERSION}",
                    m[4]
                ),
            )
            .with_remedy("run the same build on both sides"));
        }
        if m[5] & FLAG_MIXED != 0 {
            if self.refuse_reorder {
                return Err(Error::usage(
                    "the sender uses --priority mixed and this receiver writes --output",
                    "mixed priorities deliver messages out of order; drop --output or the sender's --priority mixed",
                ));
            }
            self.priority = Priority::Mixed;
        }
        self.await_setup = false;
        Ok(())
    }

    /// Mixed mode, before the first data message: let the sender back the queue up
    /// (full, or no longer growing), so the receiver drains a backlog of priorities.
    fn wait_for_backlog(&mut self) -> Result<()> {
        let rx = &self.rx.as_ref().expect("rx").queue;
        let deadline = Instant::now() + self.timeout;
        let mut last = None;
        let mut since = Instant::now();
        while Instant::now() < deadline {
            match rx.pending()? {
                None => break,
                Some((_, true)) => break,
                Some((n, false)) => {
                    if last != Some(n) {
                        last = Some(n);
                        since = Instant::now();
                    } else if since.elapsed() >= Duration::from_millis(100) {
                        break;
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        if let Some((n, _)) = rx.pending()? {
            narrate::call(
                format_args!("{} holds {n} messages: draining by priority", rx.object),
                IDEA_MQ,
            );
        }
        Ok(())
    }

    /// The sending side is done: a sender that must not remove its queue under the
    /// receiver's feet (SysV: `IPC_RMID` destroys unread messages; `--raw`: the
    /// reader may not have opened the name yet) waits until every message was taken.
    pub fn finish_sending(&mut self) -> Result<()> {
        let Some(tx) = self.tx.as_ref() else {
            return Ok(());
        };
        if self.side != Side::Sender || !(self.api == Api::Sysv || (self.raw && tx.created)) {
            return Ok(());
        }
        let deadline = Instant::now() + self.timeout;
        loop {
            match tx.queue.pending()? {
                None | Some((0, _)) => return Ok(()),
                Some((n, _)) if Instant::now() >= deadline => {
                    return Err(Error::peer(
                        tx.object(),
                        format!(
                            "the receiver did not take the last {n} messages within {:.1} s",
                            self.timeout.as_secs_f64()
                        ),
                        "the receiver is stopped, stuck or gone; check it, or raise --timeout",
                    ))
                }
                Some(_) => std::thread::sleep(Duration::from_millis(2)),
            }
        }
    }
}

impl Link for MqLink {
    fn object(&self) -> &str {
        let ep = if self.side == Side::Sender {
            &self.tx
        } else {
            &self.rx
        };
        ep.as_ref().map_or("message queue", |e| e.object())
    }

    fn send(&mut self, header: &Header, payload: &[u8]) -> Result<()> {
        let timeout = self.timeout;
        if self.send_setup {
            let mut setup = [0u8; SETUP_LEN];
            setup[..4].copy_from_slice(SETUP_MAGIC);
            setup[4] = SETUP_VERSION;
            if self.priority == Priority::Mixed {
                setup[5] = FLAG_MIXED;
            }
            let prio = self.prio_for(None, 0);
            self.tx()?.send(&[&setup], prio, timeout)?;
            self.send_setup = false;
        }
        let prio = self.prio_for(Some(header.kind), header.seq);
        let head = header.encode();
        let tx = self.tx()?;
        // A queue made elsewhere may be too small for even the header (it never gets here
        // with the queues this program makes: `validate` checked the limits).
        let Some(chunk) = tx.msg_max.checked_sub(HEADER_LEN).filter(|&c| c > 0) else {
            return Err(tx.too_small(HEADER_LEN + payload.len().min(1)));
        };
        if payload.is_empty() {
            return tx.send(&[&head], prio, timeout);
        }
        // Larger than one queue message: parts, each behind the same header.
        for part in payload.chunks(chunk) {
            tx.send(&[&head, part], prio, timeout)?;
        }
        Ok(())
    }

    fn recv(&mut self, buf: &mut Vec<u8>, max: usize) -> Result<Option<Header>> {
        if self.await_setup {
            self.read_setup()?;
        }
        if self.priority == Priority::Mixed && self.frames_in == 1 {
            self.wait_for_backlog()?;
        }
        let (len, prio) = self.take()?;
        let rx = &self.rx.as_ref().expect("rx").queue;
        let object = rx.object.clone();
        let m = rx.received(len);
        if len < HEADER_LEN {
            return Err(Error::verify(
                &object,
                format!("a {len}-byte message is shorter than the {HEADER_LEN}-byte frame header"),
            ));
        }
        let mut head = [0u8; HEADER_LEN];
        head.copy_from_slice(&m[..HEADER_LEN]);
        let header = Header::decode(&head)
            .map_err(|e| Error::verify(&object, format!("bad frame header: {e}")))?;
        let total = check_len(&header, max, &object)?;
        buf.clear();
        buf.extend_from_slice(&m[HEADER_LEN..]);
        // The buffer grows by each part as it is taken, never to what the header claims.
        while buf.len() < total {
            let (len, _) = self.take()?;
            let m = self.rx.as_ref().expect("rx").queue.received(len);
            if len <= HEADER_LEN || m[..HEADER_LEN] != head || buf.len() + len - HEADER_LEN > total
            {
                return Err(Error::verify(
                    &object,
                    format!(
                        "message {} came in parts, and after {} of {total} bytes another message came",
                        header.seq,
                        buf.len()
                    ),
                ));
            }
            buf.extend_from_slice(&m[HEADER_LEN..]);
        }
        if buf.len() != total {
            return Err(Error::verify(
                &object,
                format!(
                    "message {} has {} bytes, its header says {total}",
                    header.seq,
                    buf.len()
                ),
            ));
        }
        self.frames_in += 1;
        if header.kind == FrameKind::Data {
            self.data_in += 1;
            if self.order.len() < ORDER_SHOWN {
                self.order.push(prio);
            }
        }
        Ok(Some(header))
    }

    fn send_raw(&mut self, bytes: &[u8]) -> Result<()> {
        let prio = self.prio_for(None, 0);
        let timeout = self.timeout;
        self.tx()?.send(&[bytes], prio, timeout)
    }

    fn recv_raw(&mut self, buf: &mut [u8]) -> Result<usize> {
        let timeout = self.timeout;
        let rx = &mut self.rx.as_mut().expect("a receiving queue").queue;
        match rx.recv(timeout, false)? {
            // Unreachable while the caller honours `raw_message_max`; the message is
            // taken already, so say plainly that it was lost.
            Got::Message { len, .. } if len > buf.len() => Err(Error::new(
                Kind::Runtime,
                &rx.object,
                format!(
                    "a {len}-byte message was taken but the buffer holds {}: it is lost",
                    buf.len()
                ),
                "this is a bug: the raw receiver's buffer must hold the queue's largest message",
            )),
            Got::Message { len, .. } => {
                buf[..len].copy_from_slice(rx.received(len));
                self.raw_seen = true;
                Ok(len)
            }
            // Raw messages carry no end marker: a quiet queue ends the run.
            Got::TimedOut if self.raw_seen => Ok(0),
            Got::TimedOut => Err(Error::stalled(&rx.object, timeout, "no message arrived")),
        }
    }

    fn raw_message_max(&self) -> Option<usize> {
        self.rx.as_ref().map(|e| e.queue.msg_max)
    }

    fn reorders(&self) -> bool {
        self.priority == Priority::Mixed
    }
}

impl MqLink {
    /// The summary's options: `api`, `queue` (POSIX name or SysV key file), `key` (SysV,
    /// as `ipcs -q` shows it), `priority` (the sender's; the receiver adds what it saw).
    pub fn describe(&self) -> ipc_common::Describe {
        let mut d = ipc_common::Describe::new("mq")
            .with("api", self.api.as_str())
            .with("queue", name_shown(self.api, &self.name));
        let ep = if self.side == Side::Sender {
            &self.tx
        } else {
            &self.rx
        };
        if let Some(Handle::Sysv { key, .. }) = ep.as_ref().map(|e| &e.queue.handle) {
            d = d.with("key", format!("{key:#010x}"));
        }
        if self.side == Side::Sender {
            d = d.with("priority", self.priority);
        }
        d
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

    #[test]
    fn limits_are_read() {
        let l = Limits::read();
        assert!(l.posix_msgsize > 0 && l.posix_maxmsg > 0);
        assert!(l.sysv_msgmax > 0 && l.sysv_msgmnb > 0);
        assert!(l.message_max(Api::Sysv).0 <= l.sysv_msgmnb);
    }

    fn roundtrip(api: Api) {
        let name = format!("ipc-unit-mq-{}-{}", api.as_str(), std::process::id());
        let limits = Limits::read();
        let Claim::Created(a) =
            claim(api, &name, None, &limits, true, Duration::from_secs(5)).unwrap()
        else {
            panic!("fresh name exists");
        };
        let Claim::Existing(b) =
            claim(api, &name, None, &limits, true, Duration::from_secs(5)).unwrap()
        else {
            panic!("second claim creates");
        };
        let o = LinkOpts {
            api,
            name: name.clone(),
            limits,
            timeout: Duration::from_secs(5),
            raw: false,
        };
        let mut tx = MqLink::sender(&o, a, None, Priority::or_default(None, api));
        let mut rx = MqLink::receiver(&o, b, false);
        // Larger than one queue message: split and joined.
        let payload: Vec<u8> = (0..20_000u32).map(|i| i as u8).collect();
        let h = Header::for_payload(FrameKind::Hello, 0, &payload);
        let sender = std::thread::spawn(move || {
            tx.send(&h, &payload).unwrap();
            (tx, payload)
        });
        let mut buf = Vec::new();
        let got = rx.recv(&mut buf, 20_000).unwrap().unwrap();
        let (_tx, payload) = sender.join().unwrap();
        assert_eq!(got, h);
        assert!(buf == payload);
        assert!(got.payload_ok(&buf));
        drop(rx);
        drop(_tx);
        match api {
            Api::Posix => assert!(posix_name_identity(&posix_name(&name, None)).is_none()),
            Api::Sysv => assert!(!sysv::key_path(&name, None).exists()),
        }
    }

    #[test]
    fn posix_split_and_join() {
        roundtrip(Api::Posix);
    }

    #[test]
    fn sysv_split_and_join() {
        roundtrip(Api::Sysv);
    }
}
