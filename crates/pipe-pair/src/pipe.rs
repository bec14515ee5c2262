//! Pipes: the anonymous pipe of `run` (related processes) and the named pipe, a FIFO
//! in the file system that unrelated processes open by path.
//!
//! Either side may come first: both create the FIFO (mode 0600, exclusively; the loser
//! of that race checks the winner's FIFO is safe to use), the writer retries its
//! non-blocking open until a reader is there, and the reader waits for the first bytes.
//! Once both ends are open the path is removed, so even `kill -9` leaves nothing; until
//! then the creator's guard removes it on exit or Ctrl-C.

use ipc_common::cleanup::{self, remove_if_same, Guard};
use ipc_common::error::{Context, Error, Kind, Result};
use ipc_common::narrate;
use ipc_common::wait::{Waiting, RETRY};
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::poll::PollFlags;
use nix::sys::stat::{fstat, lstat, Mode, SFlag};
use std::fs::{File, OpenOptions};
use std::io::{Read as _, Write as _};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

const IDEA_FIFO: &str = "pipes: a FIFO is a pipe with a name, for unrelated processes";
const IDEA_EARLY_UNLINK: &str = "cleanup: both ends are open, so the name can go now";
const IDEA_ONE_PER_ROLE: &str =
    "pipes: a FIFO has no notion of who reads; a lock keeps one reader and one writer";

/// Close an end this process does not use: the reader sees end of file only when every
/// write end is closed, and the writer gets EPIPE only when every read end is.
pub fn close_unused(fd: OwnedFd, why: &str) {
    let n = raw(&fd);
    drop(fd);
    narrate::call(format_args!("close(fd {n}) = 0"), why);
}

/// Held for the life of one side of a FIFO: an exclusive lock on a per-role lock file
/// (in this user's record directory, 0600), so that a second reader (or writer) of the
/// same FIFO is refused, naming the first, instead of the two splitting the byte stream.
pub struct RoleLock {
    file: Option<File>,
    guard: Option<Guard>,
}

impl Drop for RoleLock {
    /// Remove the lock file while still holding the lock, then close it (which releases
    /// the lock): a newcomer that opened the old file finds it gone and starts afresh.
    fn drop(&mut self) {
        drop(self.guard.take());
        if let Some(file) = self.file.take() {
            let n = raw(&file);
            drop(file);
            narrate::call(
                format_args!("close(fd {n}) = 0"),
                "locks: closing the lock file releases the flock",
            );
        }
    }
}

/// Claim the `end` role of the FIFO at `fifo`, or fail naming the process that has it.
pub fn claim_role(fifo: &Path, end: End) -> Result<RoleLock> {
    let role = match end {
        End::Read => "recv",
        End::Write => "send",
    };
    let dir = ipc_common::record::check_dir(true)?.ok_or_else(|| {
        Error::usage(
            "no record directory for the FIFO's role lock",
            "check that the temporary directory is writable",
        )
    })?;
    let stem = lock_stem(fifo);
    sweep_stale_locks(&dir, &stem);
    let lock = dir.join(format!("{stem}.{role}.lock"));
    let obj = format!("role lock {}", lock.display());
    loop {
        let file = ipc_common::record::private_file()
            .read(true)
            .create(true)
            .open(&lock)
            .map_err(|e| Error::os(&obj, "open(O_CREAT|O_NOFOLLOW, 0600)", e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(role_taken(fifo, role, &file));
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(Error::os(&obj, "flock(LOCK_EX|LOCK_NB)", e))
            }
        }
        // The previous holder may have removed the file between our open and lock:
        // only the lock on the file that is at the path now counts.
        let st = fstat(raw(&file)).on(&obj, "fstat")?;
        if lstat(&lock).is_ok_and(|l| (l.st_dev, l.st_ino) == (st.st_dev, st.st_ino)) {
            narrate::call(
                format_args!("flock(fd {} of {lock:?}, LOCK_EX|LOCK_NB) = 0", raw(&file)),
                IDEA_ONE_PER_ROLE,
            );
            file.set_len(0).on(&obj, "ftruncate")?;
            (&file)
                .write_all(std::process::id().to_string().as_bytes())
                .on(&obj, "write")?;
            let id = (st.st_dev, st.st_ino);
            // Unnamed: an interruption's message lists the IPC objects, not this file.
            let guard = cleanup::on_exit("", move || {
                if lstat(&lock).is_ok_and(|l| (l.st_dev, l.st_ino) == id)
                    && std::fs::remove_file(&lock).is_ok()
                {
                    narrate::call(format_args!("unlink({lock:?}) = 0"), IDEA_ONE_PER_ROLE);
                }
            });
            return Ok(RoleLock {
                file: Some(file),
                guard: Some(guard),
            });
        }
    }
}

/// Remove the lock files nobody holds (a side killed with SIGKILL could not remove its
/// own). Each is removed while locked, so a newcomer that opened it meanwhile finds
/// its path changed and starts afresh, as in [`claim_role`]. This FIFO's own (`stem`)
/// are left to its two sides.
fn sweep_stale_locks(dir: &Path, stem: &str) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let name = name.to_string_lossy();
        if !(name.starts_with(".fifo-") && name.ends_with(".lock")) || name.starts_with(stem) {
            continue;
        }
        let path = e.path();
        let Ok(file) = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&path)
        else {
            continue;
        };
        let same = |st: &nix::sys::stat::FileStat| {
            lstat(&path).is_ok_and(|l| (l.st_dev, l.st_ino) == (st.st_dev, st.st_ino))
        };
        if file.try_lock().is_ok() && fstat(raw(&file)).is_ok_and(|st| same(&st)) {
            let _ = std::fs::remove_file(&path);
        }
    }
}

/// The lock files' name but the role: readable (the FIFO's file name) and unique (a
/// hash of its path).
fn lock_stem(fifo: &Path) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::hash::DefaultHasher::new();
    fifo.hash(&mut h);
    let base: String = fifo
        .file_name()
        .map(|n| n.to_string_lossy().chars().take(64).collect())
        .unwrap_or_default();
    format!(".fifo-{base}-{:016x}", h.finish())
}

/// The error for a role another process holds, naming it by the pid in the lock file.
fn role_taken(fifo: &Path, role: &str, file: &File) -> Error {
    let mut pid = String::new();
    let _ = file.take(20).read_to_string(&mut pid);
    let who = match pid.trim().parse::<u32>() {
        Ok(p) => format!("pid {p}"),
        Err(_) => "another process".into(),
    };
    Error::new(
        Kind::Runtime,
        object(fifo),
        format!("another `pipe-pair {role}` ({who}) is already using it"),
        format!(
            "a FIFO carries one byte stream: two {role}s would split it; wait for {who} to end, \
             or give this pair its own --name or --fifo"
        ),
    )
    // One reader and one writer per FIFO is the limit this program keeps.
    .because(ipc_common::Cause::Limit)
}

/// An anonymous pipe, both ends close-on-exec (`run` clears the flag on the end it
/// hands to its child). Returns (read end, write end).
pub fn anonymous() -> Result<(OwnedFd, OwnedFd)> {
    let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).on(&"anonymous pipe", "pipe")?;
    narrate::call(
        format_args!("pipe2([fd {}, fd {}], O_CLOEXEC) = 0", raw(&r), raw(&w)),
        "pipes: two ends of a kernel buffer, inherited by a related process",
    );
    Ok((r, w))
}

fn raw(fd: &impl AsRawFd) -> i32 {
    fd.as_raw_fd()
}

/// Which end of the FIFO this side opens.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum End {
    Read,
    Write,
}

/// An open FIFO end. `guard` is set while this side created the path and it has not
/// been removed yet.
pub struct Fifo {
    pub fd: OwnedFd,
    pub guard: Option<Guard>,
}

fn object(path: &Path) -> String {
    format!("FIFO {}", path.display())
}

/// Create the FIFO at `path`, or check that an existing one is ours to use: a FIFO,
/// owned by us, closed to other users. Returns a guard when this call created it.
pub fn create_or_check(path: &Path) -> Result<Option<Guard>> {
    let obj = object(path);
    narrate::step(
        format_args!("mkfifo({path:?}, 0600): a pipe with a name (or the peer's, if it made one)"),
        &format!("ls -l {}", path.display()),
    );
    match nix::unistd::mkfifo(path, Mode::S_IRUSR | Mode::S_IWUSR) {
        Ok(()) => {
            narrate::call(format_args!("mkfifo({:?}, 0600) = 0", path), IDEA_FIFO);
            let (guard, _) = cleanup::remove_path_on_exit(obj, path, IDEA_EARLY_UNLINK)?;
            Ok(Some(guard))
        }
        Err(Errno::EEXIST) => {
            check_existing(path)?;
            narrate::call(
                format_args!(
                    "mkfifo({:?}, 0600) = EEXIST: the peer made it; using it",
                    path
                ),
                IDEA_FIFO,
            );
            Ok(None)
        }
        Err(e) => Err(Error::os(&obj, "mkfifo", e.into()).with_remedy(
            "check that the directory exists and is writable, or choose another --fifo",
        )),
    }
}

/// Refuse a path that is not a FIFO, belongs to someone else, or is open to others.
fn check_existing(path: &Path) -> Result<()> {
    let obj = object(path);
    let st = lstat(path).on(&obj, "stat")?;
    let refuse = |what: String| {
        Err(Error::new(
            Kind::Runtime,
            &obj,
            what,
            format!(
                "not touching it; remove it yourself (rm {}) or choose another --fifo",
                path.display()
            ),
        ))
    };
    if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT != SFlag::S_IFIFO {
        return refuse("exists and is not a FIFO".into());
    }
    let me = nix::unistd::geteuid().as_raw();
    if st.st_uid != me {
        return refuse(format!(
            "belongs to uid {}, not to this user (uid {me})",
            st.st_uid
        ));
    }
    if st.st_mode & 0o077 != 0 {
        return refuse(format!(
            "has mode {:03o}; this project's FIFOs are 0600",
            st.st_mode & 0o777
        ));
    }
    Ok(())
}

/// Both ends are attached: remove the name (if it is still this FIFO) and disarm the guard.
fn attached(path: &Path, fifo: &mut Fifo) -> Result<()> {
    if !cleanup::early_removal() {
        // --keep: the name stays for `ls` to show; the guard (if ours) removes it at exit.
        return Ok(());
    }
    let st = fstat(raw(&fifo.fd)).on(&object(path), "fstat")?;
    if !lstat(path).is_ok_and(|l| (l.st_dev, l.st_ino) == (st.st_dev, st.st_ino)) {
        // The peer removed the name already.
        return Ok(());
    }
    narrate::step(
        format_args!("unlink({path:?}): both ends are open, the name is no longer needed"),
        &format!("ls -l {} (it goes; the pipe stays)", path.display()),
    );
    remove_if_same(path, (st.st_dev, st.st_ino), IDEA_EARLY_UNLINK);
    if let Some(g) = fifo.guard.take() {
        g.disarm();
    }
    Ok(())
}

fn open_nonblocking(path: &Path, end: End) -> std::io::Result<File> {
    let mut o = OpenOptions::new();
    match end {
        End::Read => o.read(true),
        End::Write => o.write(true),
    };
    o.custom_flags(libc::O_NONBLOCK).open(path)
}

/// Open one end of the FIFO at `path`, creating it if need be.
///
/// The writer waits (up to `timeout`) for a reader. The reader, with `wait_for_data`,
/// waits for the first bytes; without it (the sender's reply FIFO in pingpong, opened
/// before the hello so the receiver can answer) it returns at once. `peer` names the
/// command to start in another terminal, for the waiting note.
pub fn open(
    path: &Path,
    end: End,
    wait_for_data: bool,
    timeout: Duration,
    peer: &str,
) -> Result<Fifo> {
    let obj = object(path);
    let guard = create_or_check(path)?;
    let mut waiting = Waiting::new(&obj, peer, timeout);
    let (flags, name) = match end {
        End::Read => ("O_RDONLY|O_NONBLOCK", "a sender"),
        End::Write => ("O_WRONLY|O_NONBLOCK", "a receiver"),
    };
    narrate::step(
        format_args!("open({path:?}, {flags})"),
        &format!("ls -l /proc/{}/fd", std::process::id()),
    );
    let file = loop {
        match open_nonblocking(path, end) {
            Ok(f) => break f,
            // No reader yet: a writer's non-blocking open fails with ENXIO until one comes.
            Err(e) if e.raw_os_error() == Some(libc::ENXIO) && !waiting.expired() => {
                waiting.tick(name);
                std::thread::sleep(RETRY);
            }
            Err(e) if e.raw_os_error() == Some(libc::ENXIO) => {
                return Err(waiting.gave_up("no receiver opened it"))
            }
            Err(e) => return Err(Error::os(&obj, format!("open({flags})"), e)),
        }
    };
    narrate::call(
        format_args!("open({path:?}, {flags}) = fd {}", raw(&file)),
        IDEA_FIFO,
    );
    let mut fifo = Fifo {
        fd: file.into(),
        guard,
    };
    match end {
        End::Write => attached(path, &mut fifo)?,
        End::Read if wait_for_data => {
            // Says we wait only when the peer is not there at once.
            if waiting
                .ready(fifo.fd.as_fd(), PollFlags::POLLIN, name)?
                .is_none()
            {
                return Err(waiting.gave_up("no sender wrote to it"));
            }
            attached(path, &mut fifo)?;
        }
        End::Read => {}
    }
    Ok(fifo)
}

/// Open the writing end of a FIFO only if a reader is already there (the receiver's
/// reply FIFO: present exactly when the sender runs pingpong). Never creates it.
pub fn open_existing_writer(path: &Path) -> Result<Option<Fifo>> {
    if lstat(path).is_err() {
        return Ok(None);
    }
    check_existing(path)?;
    match open_nonblocking(path, End::Write) {
        Ok(f) => {
            narrate::call(
                format_args!("open({path:?}, O_WRONLY|O_NONBLOCK) = fd {}", raw(&f)),
                IDEA_FIFO,
            );
            let mut fifo = Fifo {
                fd: f.into(),
                guard: None,
            };
            attached(path, &mut fifo)?;
            Ok(Some(fifo))
        }
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENXIO) | Some(libc::ENOENT)) => Ok(None),
        Err(e) => Err(Error::os(object(path), "open(O_WRONLY|O_NONBLOCK)", e)),
    }
}

/// The FIFO that carries pingpong responses back: `<path>.reply`.
pub fn reply_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_os_string();
    s.push(".reply");
    PathBuf::from(s)
}
