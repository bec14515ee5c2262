//! The POSIX message queues that shared memory uses beside its segments: the lecture's
//! "ready"/"ok" messages (`--sync mq`) and the pool's free and full segment ids.

use crate::cleanup::{self, Guard};
use crate::error::{Cause, Context, Error, Kind, Result};
use crate::narrate;
use nix::errno::Errno;
use nix::mqueue::{
    mq_close, mq_getattr, mq_open, mq_send, mq_timedreceive, mq_unlink, MQ_OFlag, MqAttr, MqdT,
};
use nix::sys::stat::Mode;
use std::time::Duration;

/// One open queue descriptor, closed on drop.
pub struct Queue {
    mqd: Option<MqdT>,
    pub name: String,
}

impl Drop for Queue {
    fn drop(&mut self) {
        if let Some(q) = self.mqd.take() {
            if mq_close(q).is_ok() {
                narrate::call(
                    format_args!("mq_close({:?}) = 0", self.name),
                    "this side is done with the queue; the name goes with its creator",
                );
            }
        }
    }
}

/// What `--step` says to look at for the queues (the mount is optional).
const LOOK: &str = "ls -l /dev/mqueue (where mounted)";

fn object(name: &str) -> String {
    format!("queue {name} (/dev/mqueue{name})")
}

/// A queue that exists under a name we are about to create: refuse it unless it is this
/// user's and closed to others (0600). Opening a queue has no side effect.
fn check_leftover(name: &str) -> Result<()> {
    use std::os::fd::{AsFd, AsRawFd};
    let obj = object(name);
    let q = match mq_open(
        name,
        MQ_OFlag::O_RDONLY | MQ_OFlag::O_NONBLOCK,
        Mode::empty(),
        None,
    ) {
        Ok(q) => q,
        // Gone in between: nothing to check.
        Err(Errno::ENOENT) => return Ok(()),
        Err(e) => {
            let remedy = "it is not this user's to replace; remove it as its owner, or choose another --name";
            return Err(
                Error::os(&obj, "mq_open(O_RDONLY) of a leftover", e.into()).with_remedy(remedy)
            );
        }
    };
    let st = nix::sys::stat::fstat(q.as_fd().as_raw_fd());
    let _ = mq_close(q);
    let st = st.on(&obj, "fstat")?;
    let me = nix::unistd::geteuid().as_raw();
    let mode = st.st_mode & 0o777;
    if st.st_uid != me || mode & 0o077 != 0 {
        return Err(Error::new(
            Kind::Runtime,
            obj,
            format!("exists and belongs to uid {} with mode {mode:03o}; this program's queues are yours with mode 0600", st.st_uid),
            "not touching it; if it is a leftover of yours, remove it (make clean-ipc), or choose another --name",
        )
        .because(Cause::NotOurs));
    }
    Ok(())
}

impl Queue {
    /// Create `name` exclusively, mode 0600, for `maxmsg` messages of `msgsize` bytes.
    /// Returns the guard that removes the name.
    ///
    /// A leftover of that name is claimed like a segment: it must be this user's with
    /// mode 0600, or it is refused and left alone; and its creator must be gone. That
    /// holds because callers create queues only after they created their segment, whose
    /// own check found no live owner, and a live producer removes its queues' names
    /// before its segment's (see `Segment::remove_name`), so a queue whose segment name
    /// we now hold is a dead producer's.
    pub fn create(name: &str, maxmsg: i64, msgsize: i64, idea: &str) -> Result<Guard> {
        let attr = MqAttr::new(0, maxmsg, msgsize, 0);
        let flags = MQ_OFlag::O_CREAT | MQ_OFlag::O_EXCL | MQ_OFlag::O_RDWR;
        let mode = Mode::S_IRUSR | Mode::S_IWUSR;
        narrate::step(
            format_args!(
                "mq_open({name:?}, O_CREAT|O_EXCL, 0600): a queue beside the segment appears"
            ),
            LOOK,
        );
        let made = match mq_open(name, flags, mode, Some(&attr)) {
            Err(Errno::EEXIST) => {
                check_leftover(name)?;
                narrate::note(format_args!(
                    "replacing the leftover {} of a dead producer",
                    object(name)
                ));
                mq_unlink(name).on(&object(name), "mq_unlink")?;
                mq_open(name, flags, mode, Some(&attr))
            }
            r => r,
        };
        let made = made.map_err(|e| {
            let remedy = match e {
                Errno::EINVAL => format!(
                    "{maxmsg} messages of {msgsize} bytes exceed /proc/sys/fs/mqueue/msg_max or msgsize_max; use fewer --segments"
                ),
                Errno::EMFILE | Errno::ENOSPC => "the queue limit (/proc/sys/fs/mqueue/queues_max) is reached; remove leftovers (make clean-ipc)".into(),
                _ => "check that /dev/mqueue is mounted and usable".into(),
            };
            let err = Error::os(object(name), "mq_open(O_CREAT|O_EXCL, 0600)", e.into())
                .with_remedy(remedy);
            match e {
                Errno::EINVAL | Errno::EMFILE | Errno::ENOSPC => err.because(Cause::Limit),
                _ => err,
            }
        })?;
        let _ = mq_close(made);
        narrate::call(
            format_args!(
                "mq_open({name:?}, O_CREAT|O_EXCL, 0600, {{maxmsg {maxmsg}, msgsize {msgsize}}})"
            ),
            idea,
        );
        let n = name.to_string();
        let rec = crate::record::Object::posix_mq(name);
        Ok(cleanup::on_exit_recorded(object(name), rec, move || {
            if !cleanup::interrupted() {
                narrate::step(format_args!("mq_unlink({n:?}): the name goes"), LOOK);
            }
            if mq_unlink(n.as_str()).is_ok() {
                narrate::call(
                    format_args!("mq_unlink({n:?}) = 0"),
                    "cleanup: both sides have the queue open, so the name can go now",
                );
            }
        }))
    }

    fn open(name: &str, flags: MQ_OFlag, how: &str) -> Result<Queue> {
        let mqd = mq_open(name, flags, Mode::empty(), None).on(&object(name), "mq_open")?;
        narrate::call(
            format_args!("mq_open({name:?}, {how}) = mqd"),
            "each side opens the queue by name; the kernel keeps the messages",
        );
        Ok(Queue {
            mqd: Some(mqd),
            name: name.to_string(),
        })
    }

    /// The sending end: never blocks (a full queue is reported, not waited on).
    pub fn open_sender(name: &str) -> Result<Queue> {
        Queue::open(
            name,
            MQ_OFlag::O_WRONLY | MQ_OFlag::O_NONBLOCK,
            "O_WRONLY|O_NONBLOCK",
        )
    }

    /// The receiving end: waits in timed slices.
    pub fn open_receiver(name: &str) -> Result<Queue> {
        Queue::open(name, MQ_OFlag::O_RDONLY, "O_RDONLY")
    }

    /// How many messages the queue holds at most.
    pub fn capacity(&self) -> Result<i64> {
        let q = self.mqd.as_ref().expect("open queue");
        Ok(mq_getattr(q)
            .on(&object(&self.name), "mq_getattr")?
            .maxmsg())
    }

    /// Send without blocking; `Ok(false)` when the queue is full.
    pub fn try_send(&self, msg: &[u8]) -> Result<bool> {
        let q = self.mqd.as_ref().expect("open queue");
        match mq_send(q, msg, 0) {
            Ok(()) => Ok(true),
            Err(Errno::EAGAIN) => Ok(false),
            Err(e) => Err(Error::os(object(&self.name), "mq_send", e.into())),
        }
    }

    /// Receive one message, waiting at most `slice`; `Ok(None)` when none came.
    pub fn recv_for(&self, buf: &mut [u8], slice: Duration) -> Result<Option<usize>> {
        let q = self.mqd.as_ref().expect("open queue");
        let now = nix::time::clock_gettime(nix::time::ClockId::CLOCK_REALTIME)
            .on(&object(&self.name), "clock_gettime")?;
        let deadline = now + nix::sys::time::TimeSpec::from_duration(slice);
        let mut prio = 0;
        match mq_timedreceive(q, buf, &mut prio, &deadline) {
            Ok(n) => Ok(Some(n)),
            Err(Errno::ETIMEDOUT) | Err(Errno::EINTR) => Ok(None),
            Err(e) => Err(Error::os(object(&self.name), "mq_timedreceive", e.into())),
        }
    }
}
