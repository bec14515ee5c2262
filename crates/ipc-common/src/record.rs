//! Records: each process writes down the IPC objects it creates, so that `ipc-ctl` can
//! list every object of every pair (even POSIX queues with /dev/mqueue unmounted, and
//! SysV objects, which have no name) and remove exactly a crashed pair's leftovers.
//!
//! One record file per process, `PID-STARTTIME.json`, in a per-user directory
//! (`$XDG_RUNTIME_DIR/ipc-pairs` when that directory is ours, else
//! `$TMPDIR/ipc-pairs-UID`), mode 0700. The process holds `flock(LOCK_EX)` on its record
//! for as long as it lives: a free lock means the owner is gone, whatever became of its
//! pid. The record is rewritten through a locked temporary file renamed over it, so the
//! file at the name is always complete and always locked while its owner lives. It goes
//! when the process's last object goes (a normal exit or a signal); after `kill -9` it
//! stays, and that is what `ipc-ctl clean` goes by.
//!
//! Recording is best effort for the pair: a problem (a directory someone else made) is
//! reported once on stderr and the pair runs on unrecorded, since an unrecorded object
//! is only one `ipc-ctl clean` will not remove.

use crate::error::{Error, Kind as ErrorKind, Result};
use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Bumped when the record's meaning changes.
pub const VERSION: u32 = 1;
/// Records are small; anything bigger is not one of ours.
pub const MAX_RECORD_BYTES: u64 = 1 << 20;

/// What kind of object a record entry is.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    PosixShm,
    PosixMq,
    SysvShm,
    SysvMsg,
    SysvSem,
    Fifo,
    UnixSocket,
    KeyFile,
    MappedFile,
    TcpListener,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::PosixShm => "posix-shm",
            Kind::PosixMq => "posix-mq",
            Kind::SysvShm => "sysv-shm",
            Kind::SysvMsg => "sysv-msg",
            Kind::SysvSem => "sysv-sem",
            Kind::Fifo => "fifo",
            Kind::UnixSocket => "unix-socket",
            Kind::KeyFile => "key-file",
            Kind::MappedFile => "mapped-file",
            Kind::TcpListener => "tcp-listener",
        }
    }

    /// Objects named by a file-system path (removed with unlink).
    pub fn is_path(self) -> bool {
        matches!(
            self,
            Kind::Fifo | Kind::UnixSocket | Kind::KeyFile | Kind::MappedFile
        )
    }

    pub fn is_sysv(self) -> bool {
        matches!(self, Kind::SysvShm | Kind::SysvMsg | Kind::SysvSem)
    }
}

/// One object a process created.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Object {
    pub kind: Kind,
    /// The POSIX name (`/ipc-x`), the path, the TCP address, or for SysV `key 0x...`.
    pub name: String,
    /// SysV: the key and the id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<i32>,
    /// Path objects: the device and inode made, so a newer file of that name is not ours.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dev: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ino: Option<u64>,
    /// Seconds since the epoch.
    pub created: u64,
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Object {
    fn new(kind: Kind, name: String) -> Object {
        Object {
            kind,
            name,
            key: None,
            id: None,
            dev: None,
            ino: None,
            created: now(),
        }
    }

    /// A POSIX shared-memory segment (`/name`).
    pub fn posix_shm(name: &str) -> Object {
        Object::new(Kind::PosixShm, name.to_string())
    }

    /// A POSIX message queue (`/name`).
    pub fn posix_mq(name: &str) -> Object {
        Object::new(Kind::PosixMq, name.to_string())
    }

    /// A SysV segment, queue or semaphore set.
    pub fn sysv(kind: Kind, key: i32, id: i32) -> Object {
        let mut o = Object::new(kind, format!("key {key:#010x}"));
        o.key = Some(key);
        o.id = Some(id);
        o
    }

    /// A file this process just made at `path`, with its identity if it can be read.
    pub fn path(kind: Kind, path: &Path) -> Object {
        let mut o = Object::new(kind, path.display().to_string());
        if let Ok(m) = std::fs::symlink_metadata(path) {
            o.dev = Some(m.dev());
            o.ino = Some(m.ino());
        }
        o
    }

    /// A TCP listener: closed with its process, recorded so `ipc-ctl ls` shows it.
    pub fn tcp(addr: std::net::SocketAddr) -> Object {
        Object::new(Kind::TcpListener, addr.to_string())
    }
}

/// A record file's contents.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct Record {
    pub version: u32,
    pub pid: u32,
    /// Field 22 of /proc/PID/stat: tells a reused pid apart.
    pub start_time: u64,
    pub uid: u32,
    pub program: String,
    pub side: String,
    /// The pair's --name, when given.
    #[serde(default)]
    pub name: Option<String>,
    /// Seconds since the epoch.
    pub started: u64,
    pub objects: Vec<Object>,
}

/// The start time (clock ticks after boot) of process `pid`, from /proc/PID/stat.
pub fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: count fields after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Where this user's records live (the path only; see [`check_dir`]).
pub fn dir() -> PathBuf {
    let uid = nix::unistd::geteuid().as_raw();
    if let Some(xdg) = std::env::var_os("XDG_RUNTIME_DIR") {
        let xdg = PathBuf::from(xdg);
        // Only a runtime directory of ours: an inherited one (su, setpriv) is not.
        let ours = std::fs::symlink_metadata(&xdg)
            .is_ok_and(|m| m.is_dir() && m.uid() == uid && m.mode() & 0o022 == 0);
        if xdg.is_absolute() && ours {
            return xdg.join("ipc-pairs");
        }
    }
    std::env::temp_dir().join(format!("ipc-pairs-{uid}"))
}

/// How a file of this user's alone is opened for writing in the record directory: mode
/// 0600, never through a symbolic link, not inherited by children.
pub fn private_file() -> std::fs::OpenOptions {
    let mut options = std::fs::OpenOptions::new();
    options
        .write(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC);
    options
}

/// Check the record directory: a real directory (not a symlink) of ours, closed to
/// group and others, since whoever could write there could forge or hide records.
/// `create`: make it (0700) if missing. `Ok(None)`: missing and not created.
pub fn check_dir(create: bool) -> Result<Option<PathBuf>> {
    let d = dir();
    let object = format!("record directory {}", d.display());
    let meta = match std::fs::symlink_metadata(&d) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && create => {
            match std::fs::DirBuilder::new().mode(0o700).create(&d) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(Error::os(&object, "mkdir(0700)", e)),
            }
            std::fs::symlink_metadata(&d).map_err(|e| Error::os(&object, "lstat", e))?
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::os(&object, "lstat", e)),
    };
    let me = nix::unistd::geteuid().as_raw();
    let what = if meta.file_type().is_symlink() {
        Some("is a symbolic link".to_string())
    } else if !meta.is_dir() {
        Some("is not a directory".to_string())
    } else if meta.uid() != me {
        Some(format!(
            "belongs to uid {}, not to us (uid {me})",
            meta.uid()
        ))
    } else if meta.mode() & 0o077 != 0 {
        Some(format!(
            "has mode {:03o}: group or others could forge records there",
            meta.mode() & 0o777
        ))
    } else {
        None
    };
    match what {
        None => Ok(Some(d)),
        Some(what) => Err(Error::new(
            ErrorKind::Runtime,
            object,
            what,
            format!(
                "not using it; if nobody needs it, remove it (rm -r {}), or set XDG_RUNTIME_DIR to a private directory of yours",
                d.display()
            ),
        )),
    }
}

/// This process's record: what it holds and the locked file at its name.
struct State {
    program: String,
    side: String,
    name: Option<String>,
    started: u64,
    objects: BTreeMap<u64, Object>,
    /// The record file and our lock on it (the lock is released when this drops).
    held: Option<(PathBuf, Flock<File>)>,
    /// Recording failed once: warned, not retried.
    off: bool,
}

static STATE: Mutex<Option<State>> = Mutex::new(None);
static NEXT: AtomicU64 = AtomicU64::new(1);

fn state() -> std::sync::MutexGuard<'static, Option<State>> {
    STATE.lock().unwrap_or_else(|e| e.into_inner())
}

fn with_state<T>(f: impl FnOnce(&mut State) -> T) -> T {
    let mut g = state();
    let s = g.get_or_insert_with(|| State {
        program: std::env::args()
            .next()
            .and_then(|a| {
                Path::new(&a)
                    .file_name()
                    .map(|f| f.to_string_lossy().into_owned())
            })
            .unwrap_or_default(),
        side: String::new(),
        name: None,
        started: now(),
        objects: BTreeMap::new(),
        held: None,
        off: false,
    });
    f(s)
}

/// Name this process in its record: the program, its side, and the pair's --name.
pub fn describe(program: &str, side: &str, name: Option<&str>) {
    with_state(|s| {
        s.program = program.to_string();
        s.side = side.to_string();
        s.name = name.map(str::to_string);
        if s.held.is_some() {
            s.write();
        }
    });
}

/// Record `object` as created by this process; [`forget`] it when it is removed.
pub fn add(object: Object) -> u64 {
    let id = NEXT.fetch_add(1, Ordering::Relaxed);
    with_state(|s| {
        s.objects.insert(id, object);
        s.write();
    });
    id
}

/// The object is gone (removed, or handed to the peer).
pub fn forget(id: u64) {
    with_state(|s| {
        if s.objects.remove(&id).is_some() {
            s.write();
        }
    });
}

impl State {
    fn write(&mut self) {
        if self.off {
            return;
        }
        if self.objects.is_empty() {
            if let Some((path, lock)) = self.held.take() {
                // Unlink before unlocking: a free lock at that name would read as dead.
                let _ = std::fs::remove_file(&path);
                drop(lock);
                if let Some(d) = path.parent() {
                    // Succeeds only when no other record is there.
                    let _ = std::fs::remove_dir(d);
                }
            }
            return;
        }
        // The directory may have just been removed by another process's last record.
        let r = self.try_write().or_else(|_| self.try_write());
        if let Err(e) = r {
            self.off = true;
            eprintln!("warning: not recording this process's IPC objects for ipc-ctl: {e}");
        }
    }

    fn try_write(&mut self) -> Result<()> {
        let dir = check_dir(true)?.expect("created");
        let pid = std::process::id();
        let start = start_time(pid).unwrap_or(0);
        let path = dir.join(format!("{pid}-{start}.json"));
        let tmp = dir.join(format!(".{pid}-{start}.tmp"));
        let record = Record {
            version: VERSION,
            pid,
            start_time: start,
            uid: nix::unistd::geteuid().as_raw(),
            program: self.program.clone(),
            side: self.side.clone(),
            name: self.name.clone(),
            started: self.started,
            objects: self.objects.values().cloned().collect(),
        };
        let object = format!("record {}", tmp.display());
        let _ = std::fs::remove_file(&tmp);
        let mut file = private_file()
            .create_new(true)
            .open(&tmp)
            .map_err(|e| Error::os(&object, "open(O_CREAT|O_EXCL|O_NOFOLLOW, 0600)", e))?;
        let json = serde_json::to_vec_pretty(&record).expect("a record serialises");
        file.write_all(&json)
            .map_err(|e| Error::os(&object, "write", e))?;
        // Lock before the rename: the file at the name is locked at every instant.
        let lock = Flock::lock(file, FlockArg::LockExclusiveNonblock)
            .map_err(|(_, e)| Error::os(&object, "flock(LOCK_EX|LOCK_NB)", e.into()))?;
        std::fs::rename(&tmp, &path)
            .map_err(|e| Error::os(&object, format!("rename to {}", path.display()), e))?;
        self.held = Some((path, lock));
        Ok(())
    }
}

/// Whether a record's owner lives, as a non-blocking `flock` on the record tells.
pub enum Probe {
    /// The owner holds the lock.
    Alive(Record),
    /// The lock was free: the owner is gone. Holding the returned lock keeps another
    /// `ipc-ctl clean` from working on the same record at once.
    Dead(Record, Flock<File>),
    /// The record went away meanwhile (its owner exited normally).
    Gone,
}

/// Read `path` and test its owner's lock. Refuses a file that is not a regular file of
/// ours or is too big to be a record.
pub fn probe(path: &Path) -> std::io::Result<Probe> {
    use std::io::{Error as IoError, ErrorKind as IoKind};
    for _ in 0..10 {
        let file = match std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
            .open(path)
        {
            Ok(f) => f,
            Err(e) if e.kind() == IoKind::NotFound => return Ok(Probe::Gone),
            Err(e) => return Err(e),
        };
        let meta = file.metadata()?;
        if !meta.is_file() || meta.uid() != nix::unistd::geteuid().as_raw() {
            return Err(IoError::new(
                IoKind::InvalidData,
                "not a regular file of this user",
            ));
        }
        if meta.len() > MAX_RECORD_BYTES {
            return Err(IoError::new(IoKind::InvalidData, "too big for a record"));
        }
        let read = |mut f: &File| -> std::io::Result<Record> {
            let mut buf = Vec::new();
            Read::take(&mut f, MAX_RECORD_BYTES).read_to_end(&mut buf)?;
            serde_json::from_slice(&buf).map_err(|e| IoError::new(IoKind::InvalidData, e))
        };
        // Shared: the owner's exclusive lock makes it fail; two probes never do.
        match Flock::lock(file, FlockArg::LockSharedNonblock) {
            Err((file, Errno::EWOULDBLOCK)) => return read(&file).map(Probe::Alive),
            Err((_, e)) => return Err(e.into()),
            Ok(lock) => {
                // A free lock on an inode no longer at the name: the owner replaced the
                // record meanwhile (and is alive). Look again.
                let now_there = std::fs::symlink_metadata(path);
                match now_there {
                    Ok(m) if (m.dev(), m.ino()) == (meta.dev(), meta.ino()) => {
                        let r = read(&lock)?;
                        return Ok(Probe::Dead(r, lock));
                    }
                    Err(e) if e.kind() == IoKind::NotFound => return Ok(Probe::Gone),
                    _ => continue,
                }
            }
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::WouldBlock,
        "the record kept changing",
    ))
}

/// Every record file in `dir` (not the temporary ones).
pub fn list(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let name = e.file_name();
        let name = name.to_string_lossy();
        if name.ends_with(".json") && !name.starts_with('.') {
            out.push(e.path());
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_time_of_self_is_read() {
        assert!(start_time(std::process::id()).is_some_and(|t| t > 0));
    }

    #[test]
    fn objects_round_trip_through_json() {
        let o = Object::sysv(Kind::SysvMsg, 0x4901_0203, 7);
        let j = serde_json::to_string(&o).unwrap();
        assert!(j.contains("\"sysv-msg\""), "{j}");
        assert_eq!(serde_json::from_str::<Object>(&j).unwrap(), o);
    }
}
