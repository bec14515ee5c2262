//! POSIX queues: `mq_open`, `mq_timedsend`, `mq_timedreceive`, `mq_notify`, `mq_unlink`.
//! A queue is named `/NAME` (shown in /dev/mqueue when mounted) and lives while its
//! name or a descriptor does. Waits use the timed calls with an absolute
//! `CLOCK_REALTIME` deadline, re-checked against the monotonic clock.

use crate::flags::Api;
use crate::limits::{errno, queue_error, Limits};
use crate::queue::{Backend, Facts, Got, Queue, Sent};
use ipc_common::error::Result;
use ipc_common::narrate;
use ipc_sys::mq as sys;
use nix::errno::Errno;
use nix::mqueue::{self, MQ_OFlag, MqAttr, MqdT};
use nix::sys::stat::Mode;
use nix::sys::time::TimeSpec;
use nix::time::ClockId;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::time::{Duration, Instant};

pub const IDEA_MQ: &str = "message queues: the kernel keeps each message whole, in priority order";
const IDEA_NOTIFY: &str = "mq_notify: one process may register per queue, and only while it lives";

/// The longest single timed call, so the deadline is re-checked on the monotonic clock
/// even if the wall clock jumps.
const SLICE: Duration = Duration::from_millis(500);
/// A creator registers right after creating; a checker that finds no registration
/// re-checks this long before calling the queue stale.
pub const STALE_RECHECK: Duration = Duration::from_millis(300);

/// An open POSIX queue and its one-message buffer (`mq_msgsize` bytes).
pub struct PosixQueue {
    mqd: Option<MqdT>,
    name: String,
    facts: Facts,
    buf: Vec<u8>,
}

impl Drop for PosixQueue {
    fn drop(&mut self) {
        if let Some(m) = self.mqd.take() {
            let _ = mqueue::mq_close(m);
        }
    }
}

/// The POSIX name of a queue: `/NAME` or `/NAME.reply`.
pub fn queue_name(name: &str, suffix: Option<&str>) -> String {
    match suffix {
        Some(s) => format!("/{name}.{s}"),
        None => format!("/{name}"),
    }
}

pub fn object_of(name: &str) -> String {
    format!("POSIX queue {name}")
}

impl PosixQueue {
    /// Wrap an open descriptor, reading its message size.
    pub fn wrap(mqd: MqdT, name: &str, limits: &Limits) -> Result<Queue> {
        let object = object_of(name);
        let attr = mqueue::mq_getattr(&mqd)
            .map_err(|e| queue_error(Api::Posix, &object, "mq_getattr", e, limits))?;
        let msg_max = usize::try_from(attr.msgsize()).unwrap_or(0);
        Ok(Queue::new(Box::new(PosixQueue {
            mqd: Some(mqd),
            name: name.to_string(),
            facts: Facts {
                api: Api::Posix,
                object,
                msg_max,
                limits: *limits,
            },
            buf: vec![0; msg_max],
        })))
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    fn fd(&self) -> BorrowedFd<'_> {
        self.mqd.as_ref().expect("open queue").as_fd()
    }

    /// (device, inode): which queue a name refers to.
    pub fn identity(&self) -> Option<(u64, u64)> {
        let st = nix::sys::stat::fstat(self.fd().as_raw_fd()).ok()?;
        Some((st.st_dev, st.st_ino))
    }
}

impl Backend for PosixQueue {
    fn facts(&self) -> &Facts {
        &self.facts
    }
    fn outgoing(&mut self) -> &mut [u8] {
        &mut self.buf
    }

    fn send(&mut self, len: usize, prio: u32, deadline: Instant) -> Result<Sent> {
        loop {
            let abs = abs_deadline(deadline);
            match sys::mq_timedsend(self.fd(), &self.buf[..len], prio, abs.as_ref()) {
                Ok(()) => return Ok(Sent::Done),
                Err(e) => match errno(&e) {
                    Errno::ETIMEDOUT if Instant::now() >= deadline => return Ok(Sent::Full),
                    Errno::ETIMEDOUT | Errno::EINTR => {}
                    e => return Err(self.facts.err("mq_timedsend", e)),
                },
            }
        }
    }

    fn recv(&mut self, deadline: Instant, _lowest_type_first: bool) -> Result<Got> {
        let m = self.mqd.as_ref().expect("open queue");
        loop {
            let abs = abs_deadline(deadline);
            let mut prio = 0u32;
            match mqueue::mq_timedreceive(m, &mut self.buf, &mut prio, &abs) {
                Ok(len) => return Ok(Got::Message { len, prio }),
                Err(Errno::ETIMEDOUT) if Instant::now() >= deadline => return Ok(Got::TimedOut),
                Err(Errno::ETIMEDOUT) | Err(Errno::EINTR) => {}
                Err(e) => return Err(self.facts.err("mq_timedreceive", e)),
            }
        }
    }

    fn received(&self, len: usize) -> &[u8] {
        &self.buf[..len]
    }

    fn pending(&self) -> Result<Option<(u64, bool)>> {
        let a = mqueue::mq_getattr(self.mqd.as_ref().expect("open queue"))
            .map_err(|e| self.facts.err("mq_getattr", e))?;
        let n = u64::try_from(a.curmsgs()).unwrap_or(0);
        Ok(Some((n, a.curmsgs() >= a.maxmsg())))
    }

    fn owner(&self) -> Result<(u32, u32)> {
        let st =
            nix::sys::stat::fstat(self.fd().as_raw_fd()).map_err(|e| self.facts.err("fstat", e))?;
        Ok((st.st_uid, st.st_mode & 0o777))
    }

    fn remove_hint(&self) -> String {
        format!("rm /dev/mqueue{}, or mq_unlink({:?})", self.name, self.name)
    }

    fn send_call(&self, len: usize, prio: u32) -> (&'static str, String) {
        let text = format!("mq_timedsend({}, {len} bytes, prio {prio}) = 0", self.name);
        ("mq_timedsend", text)
    }

    fn recv_call(&self, len: usize, prio: u32) -> (&'static str, String) {
        let text = format!("mq_timedreceive({}) = {len} bytes, prio {prio}", self.name);
        ("mq_timedreceive", text)
    }

    fn as_posix(&self) -> Option<&PosixQueue> {
        Some(self)
    }
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

/// `mq_open(name, O_CREAT|O_EXCL|O_RDWR, 0600)` with this program's limits.
pub fn create(name: &str, limits: &Limits) -> nix::Result<MqdT> {
    let attr = MqAttr::new(
        0,
        limits.posix_maxmsg as nix::mqueue::mq_attr_member_t,
        limits.posix_msgsize as nix::mqueue::mq_attr_member_t,
        0,
    );
    let flags = MQ_OFlag::O_CREAT | MQ_OFlag::O_EXCL | MQ_OFlag::O_RDWR | MQ_OFlag::O_CLOEXEC;
    let m = mqueue::mq_open(name, flags, Mode::S_IRUSR | Mode::S_IWUSR, Some(&attr))?;
    narrate::call(
        format_args!(
            "mq_open({name:?}, O_CREAT|O_EXCL|O_RDWR, 0600, {{maxmsg {}, msgsize {}}}) = fd {}  [creator]",
            limits.posix_maxmsg,
            limits.posix_msgsize,
            m.as_fd().as_raw_fd()
        ),
        IDEA_MQ,
    );
    Ok(m)
}

/// `mq_open(name, O_RDWR)`: the queue someone else created.
pub fn open(name: &str) -> nix::Result<MqdT> {
    let m = mqueue::mq_open(
        name,
        MQ_OFlag::O_RDWR | MQ_OFlag::O_CLOEXEC,
        Mode::empty(),
        None,
    )?;
    narrate::call(
        format_args!(
            "mq_open({name:?}, O_RDWR) = fd {}  [opener]",
            m.as_fd().as_raw_fd()
        ),
        IDEA_MQ,
    );
    Ok(m)
}

/// Which queue a POSIX name refers to now, `None` if the name is gone. Uses
/// /dev/mqueue when it is mounted (a stat), else opens the name.
pub fn name_identity(name: &str) -> Option<(u64, u64)> {
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
pub fn unlink_if_same(name: &str, id: Option<(u64, u64)>, why: &str) -> bool {
    if id.is_some() && name_identity(name) == id && mqueue::mq_unlink(name).is_ok() {
        narrate::call(format_args!("mq_unlink({name:?}) = 0"), why);
        return true;
    }
    false
}

/// The queue's creator registered with `mq_notify` and is alive (re-checked for a
/// moment, as a new creator registers right after creating).
pub fn creator_alive(q: &PosixQueue) -> Result<bool> {
    let until = Instant::now() + STALE_RECHECK;
    loop {
        match sys::mq_notify_register(q.fd()) {
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                narrate::call(
                    format_args!(
                        "mq_notify({}, SIGEV_NONE) = EBUSY: its creator is alive",
                        q.facts.object
                    ),
                    IDEA_NOTIFY,
                );
                return Ok(true);
            }
            Ok(()) => {
                let _ = sys::mq_notify_clear(q.fd());
                if Instant::now() >= until {
                    return Ok(false);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => return Err(q.facts.err("mq_notify", errno(&e))),
        }
    }
}

/// Register this process on its new queue, so others see its creator alive. Another
/// process may hold the registration for an instant while it checks: retry.
pub fn register(q: &PosixQueue) {
    for _ in 0..200 {
        match sys::mq_notify_register(q.fd()) {
            Ok(()) => {
                narrate::call(
                    format_args!("mq_notify({}, SIGEV_NONE) = 0", q.facts.object),
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

/// Renew the registration quietly (opening the name to compare identities, without
/// /dev/mqueue, drops it).
pub fn renew(q: &PosixQueue) {
    let _ = sys::mq_notify_register(q.fd());
}
