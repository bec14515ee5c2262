//! System V queues: `ftok` (in ipc-common's key files), `msgget`, `msgsnd`, `msgrcv`,
//! `msgctl`. A queue is named by a key, listed by `ipcs -q`, and lives until
//! `msgctl(IPC_RMID)`. There are no timed calls: waits poll with `IPC_NOWAIT` and
//! a [`PollPace`].

use crate::flags::Api;
use crate::limits::{errno, queue_error, Limits};
use crate::queue::{Backend, Facts, Got, PollPace, Queue, Sent};
use ipc_common::error::{Error, Kind, Result};
use ipc_common::{narrate, Cause};
use ipc_sys::mq as sys;
use nix::errno::Errno;
use std::path::Path;
use std::time::Instant;

pub const IDEA_SYSV: &str =
    "SysV queue: msgget/msgsnd/msgrcv/msgctl, system-wide, shown by ipcs -q";
pub const IDEA_RMID: &str = "SysV: IPC_RMID destroys the queue at once, so only when both are done";

/// An open SysV queue and its one-message buffer (`struct msgbuf`).
pub struct SysvQueue {
    id: libc::c_int,
    key: libc::key_t,
    buf: sys::MsgBuf,
    facts: Facts,
    /// The `msgtyp` of the last `msgrcv`, for the narration.
    last_msgtyp: libc::c_long,
}

impl SysvQueue {
    /// Wrap queue `id`, reading its byte limit.
    pub fn wrap(id: libc::c_int, key: libc::key_t, limits: &Limits) -> Result<Queue> {
        let object = format!("SysV queue key {key:#010x} (id {id})");
        let st = sys::msgctl_stat(id)
            .map_err(|e| queue_error(Api::Sysv, &object, "msgctl(IPC_STAT)", errno(&e), limits))?;
        let msg_max = limits.sysv_msgmax.min(st.qbytes as usize);
        Ok(Queue::new(Box::new(SysvQueue {
            id,
            key,
            buf: sys::MsgBuf::new(msg_max),
            facts: Facts {
                api: Api::Sysv,
                object,
                msg_max,
                limits: *limits,
            },
            last_msgtyp: 0,
        })))
    }

    pub fn id(&self) -> libc::c_int {
        self.id
    }

    pub fn key(&self) -> libc::key_t {
        self.key
    }
}

impl Backend for SysvQueue {
    fn facts(&self) -> &Facts {
        &self.facts
    }
    fn outgoing(&mut self) -> &mut [u8] {
        self.buf.text_mut()
    }

    fn send(&mut self, len: usize, prio: u32, deadline: Instant) -> Result<Sent> {
        self.buf.set_mtype(libc::c_long::from(prio));
        let mut pace = PollPace::new();
        loop {
            match sys::msgsnd_nowait(self.id, &self.buf, len) {
                Ok(()) => return Ok(Sent::Done),
                Err(e) => match errno(&e) {
                    Errno::EAGAIN | Errno::EINTR if Instant::now() < deadline => pace.pause(),
                    Errno::EAGAIN => return Ok(Sent::Full),
                    e => return Err(self.facts.err("msgsnd", e)),
                },
            }
        }
    }

    fn recv(&mut self, deadline: Instant, lowest_type_first: bool) -> Result<Got> {
        self.last_msgtyp = if lowest_type_first {
            -libc::c_long::MAX
        } else {
            0
        };
        let mut pace = PollPace::new();
        loop {
            match sys::msgrcv_nowait(self.id, &mut self.buf, self.last_msgtyp) {
                Ok(len) => {
                    let prio = u32::try_from(self.buf.mtype()).unwrap_or(u32::MAX);
                    return Ok(Got::Message { len, prio });
                }
                Err(e) => match errno(&e) {
                    Errno::ENOMSG | Errno::EINTR if Instant::now() < deadline => pace.pause(),
                    Errno::ENOMSG => return Ok(Got::TimedOut),
                    e => return Err(self.facts.err("msgrcv", e)),
                },
            }
        }
    }

    fn received(&self, len: usize) -> &[u8] {
        &self.buf.text()[..len]
    }

    fn pending(&self) -> Result<Option<(u64, bool)>> {
        match sys::msgctl_stat(self.id) {
            Ok(st) => Ok(Some((
                st.qnum,
                st.cbytes + self.facts.msg_max as u64 > st.qbytes,
            ))),
            Err(e) if matches!(errno(&e), Errno::EINVAL | Errno::EIDRM) => Ok(None),
            Err(e) => Err(self.facts.err("msgctl(IPC_STAT)", errno(&e))),
        }
    }

    fn owner(&self) -> Result<(u32, u32)> {
        let st =
            sys::msgctl_stat(self.id).map_err(|e| self.facts.err("msgctl(IPC_STAT)", errno(&e)))?;
        Ok((st.uid, st.mode & 0o777))
    }

    fn remove_hint(&self) -> String {
        format!("ipcrm -q {}", self.id)
    }

    fn send_call(&self, len: usize, prio: u32) -> (&'static str, String) {
        let text = format!(
            "msgsnd({}, {len} bytes, mtype {prio}, IPC_NOWAIT) = 0",
            self.id
        );
        ("msgsnd", text)
    }

    fn recv_call(&self, len: usize, prio: u32) -> (&'static str, String) {
        let text = format!(
            "msgrcv({}, msgtyp {}, IPC_NOWAIT) = {len} bytes, mtype {prio}",
            self.id, self.last_msgtyp
        );
        ("msgrcv", text)
    }

    fn as_sysv(&self) -> Option<&SysvQueue> {
        Some(self)
    }
}

pub fn pid_alive(pid: i32) -> bool {
    pid > 0
        && !matches!(
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None),
            Err(Errno::ESRCH)
        )
}

/// `msgget(key, 0)`: the queue someone else created, narrated as the opener's call.
pub fn open(key: libc::key_t) -> std::io::Result<libc::c_int> {
    let id = sys::msgget(key, 0)?;
    narrate::call(
        format_args!("msgget({key:#010x}, 0) = {id}  [opener]"),
        IDEA_SYSV,
    );
    Ok(id)
}

/// `msgctl(id, IPC_RMID)`, narrated; the other side may have removed it already.
pub fn remove(id: libc::c_int) -> bool {
    match sys::msgctl_rmid(id) {
        Ok(()) => {
            narrate::call(format_args!("msgctl({id}, IPC_RMID) = 0"), IDEA_RMID);
            true
        }
        Err(e) => {
            narrate::call(
                format_args!(
                    "msgctl({id}, IPC_RMID) = {:?}: the other side removed it already",
                    errno(&e)
                ),
                IDEA_RMID,
            );
            false
        }
    }
}

/// `msgget(key, IPC_CREAT|IPC_EXCL|0600)`. A queue with the key of a key file we just
/// made outlived its own key file (the file system reused the inode): stale if its last
/// users are gone, then replaced; else refused with the command that removes it.
pub fn create(key: libc::key_t, path: &Path, limits: &Limits) -> Result<libc::c_int> {
    let object = format!("SysV queue key {key:#010x} (key file {})", path.display());
    // Test-only (debug builds): a creator that is alive but slow to make its queue.
    #[cfg(debug_assertions)]
    if let Some(ms) = std::env::var("IPC_TEST_DELAY_MSGGET_MS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }
    let create = || sys::msgget(key, libc::IPC_CREAT | libc::IPC_EXCL | 0o600);
    let mut r = create();
    if r.as_ref().err().map(errno) == Some(Errno::EEXIST) {
        replace_stale(key, &object, limits)?;
        r = create();
    }
    let id = r.map_err(|e| {
        let call = "msgget(IPC_CREAT|IPC_EXCL, 0600)";
        queue_error(Api::Sysv, &object, call, errno(&e), limits)
    })?;
    narrate::call(
        format_args!("msgget({key:#010x}, IPC_CREAT|IPC_EXCL|0600) = {id}  [creator]"),
        IDEA_SYSV,
    );
    Ok(id)
}

/// A queue already has the key of our fresh key file: remove it if it is a leftover
/// of ours whose users are gone, else refuse.
fn replace_stale(key: libc::key_t, object: &str, limits: &Limits) -> Result<()> {
    let id = sys::msgget(key, 0)
        .map_err(|e| queue_error(Api::Sysv, object, "msgget", errno(&e), limits))?;
    let st = sys::msgctl_stat(id)
        .map_err(|e| queue_error(Api::Sysv, object, "msgctl(IPC_STAT)", errno(&e), limits))?;
    let me = nix::unistd::geteuid().as_raw();
    let theirs = st.cuid != me || st.mode & 0o777 != 0o600;
    if theirs || pid_alive(st.lspid) || pid_alive(st.lrpid) {
        let cause = if theirs { Cause::NotOurs } else { Cause::Stale };
        return Err(Error::new(
            Kind::Runtime,
            object,
            format!("msgget(IPC_CREAT|IPC_EXCL): a queue with this key exists (id {id}) but its key file was gone"),
            format!("if no mq-pair run uses it, remove it (ipcrm -q {id}) and retry, or choose another --name"),
        )
        .because(cause));
    }
    narrate::note(format_args!(
        "replacing the stale SysV queue id {id} (key {key:#010x}): its key file and its last users are gone (left by a crashed run)"
    ));
    let _ = sys::msgctl_rmid(id);
    Ok(())
}
