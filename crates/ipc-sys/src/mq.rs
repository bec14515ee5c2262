//! The message-queue calls nix does not wrap: `mq_timedsend`, `mq_notify`, and the
//! System V queue (`msgget`, `msgsnd`, `msgrcv`, `msgctl`). Thin and errno-mapped; the
//! safe logic lives in `crate::mq`.
//!
//! `unsafe_code` is allowed for this file by the `#![allow]` at the top of `sys/mod.rs`
//! (a lint level set on a module applies to its submodules).

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

fn check(ret: libc::c_int) -> io::Result<()> {
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// `mq_timedsend(3)`: send one message, waiting for room at most until `deadline`
/// (absolute, `CLOCK_REALTIME`). On Linux a queue descriptor is a file descriptor.
pub fn mq_timedsend(
    mqd: BorrowedFd<'_>,
    msg: &[u8],
    prio: u32,
    deadline: &libc::timespec,
) -> io::Result<()> {
    // SAFETY: `msg` is a valid readable slice for its length and `deadline` a valid
    // timespec, both outliving the call; the kernel only reads them.
    check(unsafe {
        libc::mq_timedsend(
            mqd.as_raw_fd(),
            msg.as_ptr().cast(),
            msg.len(),
            prio,
            deadline,
        )
    })
}

/// `mq_notify(3)` with `SIGEV_NONE`: register this process on the queue without asking
/// for a signal. Only one process can be registered (`EBUSY` for the others), and the
/// registration ends when that process closes the queue or dies, so it tells whether
/// the queue's creator is still alive.
pub fn mq_notify_register(mqd: BorrowedFd<'_>) -> io::Result<()> {
    let ev = nix::sys::signal::SigEvent::new(nix::sys::signal::SigevNotify::SigevNone).sigevent();
    // SAFETY: `ev` is a fully initialised sigevent that outlives the call; the kernel
    // copies it.
    check(unsafe { libc::mq_notify(mqd.as_raw_fd(), &ev) })
}

/// `mq_notify(3)` with a null event: drop this process's registration.
pub fn mq_notify_clear(mqd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: a null sigevent pointer is the documented way to unregister.
    check(unsafe { libc::mq_notify(mqd.as_raw_fd(), std::ptr::null()) })
}

/// `msgget(2)`: the id of the System V queue with `key` (`flags` as for msgget).
pub fn msgget(key: libc::key_t, flags: libc::c_int) -> io::Result<libc::c_int> {
    // SAFETY: plain integer arguments.
    let id = unsafe { libc::msgget(key, flags) };
    if id == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(id)
    }
}

/// A `struct msgbuf` of our own (`long mtype; char mtext[]`), kept in `c_long` words so
/// it is aligned as the kernel expects.
pub struct MsgBuf {
    words: Vec<libc::c_long>,
}

const WORD: usize = std::mem::size_of::<libc::c_long>();

impl MsgBuf {
    /// Room for `max_text` bytes of message text.
    pub fn new(max_text: usize) -> MsgBuf {
        MsgBuf {
            words: vec![0; 1 + max_text.div_ceil(WORD)],
        }
    }

    pub fn capacity(&self) -> usize {
        (self.words.len() - 1) * WORD
    }

    pub fn mtype(&self) -> libc::c_long {
        self.words[0]
    }

    pub fn set_mtype(&mut self, t: libc::c_long) {
        self.words[0] = t;
    }

    pub fn text(&self) -> &[u8] {
        let len = self.capacity();
        // SAFETY: the words after the first are `len` initialised bytes owned by
        // `self.words`; u8 has no alignment or validity requirement, and the slice
        // borrows `self`, so the memory outlives it and is not written meanwhile.
        unsafe { std::slice::from_raw_parts(self.words.as_ptr().add(1).cast::<u8>(), len) }
    }

    pub fn text_mut(&mut self) -> &mut [u8] {
        let len = self.capacity();
        // SAFETY: as in `text`; the exclusive borrow of `self` makes the slice the only
        // access, and any byte pattern is a valid c_long.
        unsafe { std::slice::from_raw_parts_mut(self.words.as_mut_ptr().add(1).cast::<u8>(), len) }
    }
}

/// `msgsnd(2)` with `IPC_NOWAIT`: `EAGAIN` when the queue has no room.
pub fn msgsnd_nowait(id: libc::c_int, buf: &MsgBuf, len: usize) -> io::Result<()> {
    assert!(len <= buf.capacity(), "message text within the buffer");
    // SAFETY: `buf.words` holds an mtype word followed by at least `len` bytes of text,
    // valid for reads for the duration of the call.
    check(unsafe { libc::msgsnd(id, buf.words.as_ptr().cast(), len, libc::IPC_NOWAIT) })
}

/// `msgrcv(2)` with `IPC_NOWAIT`: the text length; `ENOMSG` when nothing matches.
/// `msgtyp` 0 takes the first message; a negative one the lowest type up to |msgtyp|.
/// Without `MSG_NOERROR` a longer message fails with `E2BIG` instead of being truncated.
pub fn msgrcv_nowait(id: libc::c_int, buf: &mut MsgBuf, msgtyp: libc::c_long) -> io::Result<usize> {
    let cap = buf.capacity();
    // SAFETY: `buf.words` is writable for an mtype word plus `cap` bytes, and the kernel
    // writes at most that much; it lives for the whole call.
    let n = unsafe {
        libc::msgrcv(
            id,
            buf.words.as_mut_ptr().cast(),
            cap,
            msgtyp,
            libc::IPC_NOWAIT,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// What `msgctl(IPC_STAT)` says about a queue.
#[derive(Clone, Copy, Debug)]
pub struct MsqStat {
    /// Messages and bytes in the queue, and its byte capacity (`msg_qbytes`).
    pub qnum: u64,
    pub cbytes: u64,
    pub qbytes: u64,
    /// The last process to send and to receive (0: none yet).
    pub lspid: i32,
    pub lrpid: i32,
    pub uid: u32,
    pub cuid: u32,
    pub mode: u32,
}

/// `msgctl(IPC_STAT)`.
pub fn msgctl_stat(id: libc::c_int) -> io::Result<MsqStat> {
    // SAFETY: msqid_ds is plain integers, for which all-zero is a valid value.
    let mut ds: libc::msqid_ds = unsafe { std::mem::zeroed() };
    // SAFETY: `ds` is a valid, writable msqid_ds that outlives the call.
    check(unsafe { libc::msgctl(id, libc::IPC_STAT, &mut ds) })?;
    Ok(MsqStat {
        qnum: ds.msg_qnum,
        cbytes: ds.__msg_cbytes,
        qbytes: ds.msg_qbytes,
        lspid: ds.msg_lspid,
        lrpid: ds.msg_lrpid,
        uid: ds.msg_perm.uid,
        cuid: ds.msg_perm.cuid,
        mode: u32::from(ds.msg_perm.mode),
    })
}

/// `msgctl(IPC_RMID)`: remove the queue at once; blocked peers get `EIDRM`.
pub fn msgctl_rmid(id: libc::c_int) -> io::Result<()> {
    // SAFETY: IPC_RMID takes no buffer; a null pointer is allowed.
    check(unsafe { libc::msgctl(id, libc::IPC_RMID, std::ptr::null_mut()) })
}

/// `msgctl(IPC_SET)` lowering (or raising, with privilege) a queue's byte limit
/// `msg_qbytes`: how another program can leave a queue smaller than this one expects
/// (the tests make such a queue with it).
pub fn msgctl_set_qbytes(id: libc::c_int, qbytes: u64) -> io::Result<()> {
    // SAFETY: msqid_ds is plain integers, for which all-zero is a valid value.
    let mut ds: libc::msqid_ds = unsafe { std::mem::zeroed() };
    // SAFETY: `ds` is a valid, writable msqid_ds that outlives the call.
    check(unsafe { libc::msgctl(id, libc::IPC_STAT, &mut ds) })?;
    ds.msg_qbytes = qbytes as _;
    // SAFETY: `ds` is a valid msqid_ds (filled by IPC_STAT) that outlives the call; the
    // kernel only reads it.
    check(unsafe { libc::msgctl(id, libc::IPC_SET, &mut ds) })
}
