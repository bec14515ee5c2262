//! The kernel's queue limits, and what each errno of a queue call means here: the
//! table that turns `EMSGSIZE`, `ENOSPC`, `EIDRM`... into a remedy and a cause.

use crate::flags::Api;
use ipc_common::cleanup;
use ipc_common::error::{Error, Kind};
use ipc_common::Cause;
use nix::errno::Errno;

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

/// The errno of a failed `std::io::Error` from `ipc_sys`.
pub fn errno(e: &std::io::Error) -> Errno {
    Errno::from_raw(e.raw_os_error().unwrap_or(0))
}

/// Words for the errno of a queue call: what it means here and what to do.
pub fn queue_error(api: Api, object: &str, call: &str, e: Errno, limits: &Limits) -> Error {
    let (kind, cause, remedy) = match (api, e) {
        (Api::Posix, _) => posix_remedy(object, e, limits),
        (Api::Sysv, _) => sysv_remedy(e),
    }
    .or_else(|| common_remedy(e))
    .unwrap_or((Kind::Runtime, Cause::Os, String::new()));
    let mut err = Error::os(object, call, std::io::Error::from(e)).with_remedy(remedy);
    err.kind = kind;
    err.because(cause)
}

type Remedy = Option<(Kind, Cause, String)>;

fn common_remedy(e: Errno) -> Remedy {
    let (cause, text) = match e {
        Errno::EAGAIN => (
            Cause::Os,
            "EAGAIN: the queue was full (or empty) and the call was told not to wait",
        ),
        Errno::EACCES | Errno::EPERM => (
            Cause::NotOurs,
            "EACCES: the queue belongs to another user or is closed to you; choose another --name",
        ),
        _ => return None,
    };
    Some((Kind::Runtime, cause, text.into()))
}

fn posix_remedy(object: &str, e: Errno, limits: &Limits) -> Remedy {
    let text = match e {
        Errno::EMSGSIZE => format!(
            "EMSGSIZE: the message is longer than the queue's message size (or the buffer shorter); \
             this program makes queues of {} bytes ({POSIX_MSGSIZE_MAX}) and splits larger messages, \
             so the queue was made with other limits: remove it (rm /dev/mqueue{}) and retry",
            limits.posix_msgsize,
            object.trim_start_matches("POSIX queue ")
        ),
        Errno::EINVAL => format!(
            "EINVAL: the queue attributes exceed the limits, {} messages ({POSIX_MSG_MAX}) of {} bytes ({POSIX_MSGSIZE_MAX}); \
             they changed while this ran, so rerun",
            limits.posix_maxmsg, limits.posix_msgsize
        ),
        Errno::EMFILE => "EMFILE: this user's queue memory (RLIMIT_MSGQUEUE, see `ulimit -q`) or open-file limit is used up; \
             remove leftover queues (make clean-ipc) or end other queue users"
            .into(),
        Errno::ENOSPC => "ENOSPC: the system-wide number of queues (/proc/sys/fs/mqueue/queues_max) is reached; remove leftovers (make clean-ipc)".into(),
        _ => return None,
    };
    Some((Kind::Runtime, Cause::Limit, text))
}

fn sysv_remedy(e: Errno) -> Remedy {
    match e {
        Errno::ENOSPC => Some((
            Kind::Runtime,
            Cause::Limit,
            "ENOSPC: the system-wide number of SysV queues (/proc/sys/kernel/msgmni) is reached; remove leftovers (make clean-ipc, or ipcrm -q ID)".into(),
        )),
        Errno::EIDRM | Errno::EINVAL => {
            // Our own Ctrl-C cleanup may have removed it: then that ends the process.
            cleanup::yield_to_interrupt();
            Some((
                Kind::Peer,
                Cause::PeerGone,
                "EIDRM/EINVAL: the queue was removed, so the other side ended (finished, interrupted or failed); see its output".into(),
            ))
        }
        Errno::E2BIG => Some((
            Kind::Verify,
            Cause::Corrupt,
            format!(
                "E2BIG: a message is longer than this side's buffer ({SYSV_MSGMAX}); the other side is not this program with the same limits"
            ),
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_read() {
        let l = Limits::read();
        assert!(l.posix_msgsize > 0 && l.posix_maxmsg > 0);
        assert!(l.sysv_msgmax > 0 && l.sysv_msgmnb > 0);
        assert!(l.message_max(Api::Sysv).0 <= l.sysv_msgmnb);
    }

    #[test]
    fn errno_table_types_causes() {
        let l = Limits::read();
        let e = queue_error(Api::Posix, "POSIX queue /x", "mq_open", Errno::ENOSPC, &l);
        assert_eq!((e.kind, e.cause), (Kind::Runtime, Cause::Limit));
        let e = queue_error(Api::Sysv, "q", "msgget", Errno::EACCES, &l);
        assert_eq!(e.cause, Cause::NotOurs);
        let e = queue_error(Api::Sysv, "q", "msgsnd", Errno::EIDRM, &l);
        assert_eq!((e.kind, e.cause), (Kind::Peer, Cause::PeerGone));
    }
}
