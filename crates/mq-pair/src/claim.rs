//! Claiming a queue name: create it exclusively (0600) or open the one that exists, and
//! tell a live creator's queue from a crashed run's leftover.
//!
//! - POSIX: a creator registers with `mq_notify(SIGEV_NONE)`, which only one process can
//!   hold and which ends when it dies; an existing queue nobody holds is stale.
//! - SysV: the key file `/tmp/NAME.mq.key` is made already `flock`ed (ipc-common's
//!   `KeyFile::create_locked`) and held for the creator's life. An opener moves it to
//!   the record `/tmp/NAME.mq.inuse.key`, so a queue orphaned by killing both sides is
//!   still found by that record's key and removed by the next run.

use crate::flags::Api;
use crate::limits::{errno, queue_error, Limits};
use crate::posix::{self, PosixQueue, STALE_RECHECK};
use crate::queue::{Backend, Queue};
use crate::sysv::{self as sysvq, pid_alive, SysvQueue};
use ipc_common::cleanup::{self, Guard};
use ipc_common::error::{Error, Kind, Result};
use ipc_common::narrate;
use ipc_common::sysv::{key_path, KeyFile};
use ipc_sys::mq as sys;
use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub const IDEA_UNLINK: &str = "cleanup: both sides have the queue, so the name can go now";

/// A SysV creator's key file, with the `flock` that tells others it is alive.
pub struct SysvKey {
    pub kf: KeyFile,
    lock: Option<Flock<File>>,
}

impl SysvKey {
    /// The key file is no longer this one (the peer removed it): forget it.
    pub fn gone(&self) -> bool {
        let Some(lock) = &self.lock else { return true };
        let ours = lock.metadata().ok().map(|m| (m.dev(), m.ino()));
        ours.is_none() || path_id(&self.kf.path) != ours
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
    pub queue: Queue,
    /// Removes the queue (POSIX: its name, if still this queue; SysV: `IPC_RMID`).
    pub guard: Option<Guard>,
    pub key: Option<SysvKey>,
    /// SysV opener: the key file held open, so its inode (the key) stays taken.
    pub pin: Option<File>,
    pub created: bool,
}

impl Endpoint {
    pub fn object(&self) -> &str {
        self.queue.object()
    }

    /// Stop removing the queue on exit (POSIX: its name is gone already).
    pub fn disarm(&mut self) {
        if let Some(g) = self.guard.take() {
            g.disarm();
        }
    }

    fn opened(queue: Queue, guard: Option<Guard>, pin: Option<File>) -> Endpoint {
        Endpoint {
            queue,
            guard,
            key: None,
            pin,
            created: false,
        }
    }
}

/// What claiming a name found.
pub enum Claim {
    /// This side created the queue.
    Created(Endpoint),
    /// Another live process created it (or, with no liveness check, it just exists).
    Existing(Endpoint),
}

/// (device, inode) of the file at `path` now, not following a link.
pub fn path_id(path: &Path) -> Option<(u64, u64)> {
    std::fs::symlink_metadata(path)
        .ok()
        .map(|m| (m.dev(), m.ino()))
}

/// (device, inode) of an open file.
pub fn file_id(f: &File) -> Option<(u64, u64)> {
    f.metadata().ok().map(|m| (m.dev(), m.ino()))
}

/// Removes the POSIX queue's name at exit, if it still names this queue.
pub fn posix_guard(q: &PosixQueue) -> Guard {
    let id = q.identity();
    let n = q.name().to_string();
    let rec = ipc_common::record::Object::posix_mq(&n);
    cleanup::on_exit_recorded(q.facts().object.clone(), rec, move || {
        if !cleanup::interrupted() {
            narrate::step(
                format_args!("mq_unlink({n:?}): remove the queue's name"),
                Api::Posix.look(),
            );
        }
        posix::unlink_if_same(&n, id, "cleanup: the queue's owner removes its name");
    })
}

/// Removes the SysV queue, and its in-use record (if still the file `record` names).
pub fn sysv_guard(q: &SysvQueue, record: Option<(PathBuf, (u64, u64))>) -> Guard {
    let (id, key) = (q.id(), q.key());
    let rec = ipc_common::record::Object::sysv(ipc_common::record::Kind::SysvMsg, key, id);
    cleanup::on_exit_recorded(q.facts().object.clone(), rec, move || {
        if !cleanup::interrupted() {
            narrate::step(
                format_args!("msgctl({id}, IPC_RMID): destroy the queue"),
                Api::Sysv.look(),
            );
        }
        sysvq::remove(id);
        if let Some((path, ino)) = &record {
            remove_key_file(path, Some(*ino));
        }
    })
}

/// Create the POSIX queue `name` exclusively, or open the existing one. With
/// `check_alive`, an existing queue whose creator is gone is stale and replaced.
fn posix_claim(name: &str, limits: &Limits, check_alive: bool) -> Result<Claim> {
    let object = posix::object_of(name);
    for _ in 0..10 {
        narrate::step(
            format_args!("mq_open({name:?}, O_CREAT|O_EXCL|O_RDWR, 0600): create the queue, unless the other side has"),
            Api::Posix.look(),
        );
        let m = match posix::create(name, limits) {
            Ok(m) => m,
            Err(Errno::EEXIST) => match posix_open_existing(name, limits, check_alive)? {
                Some(claim) => return Ok(claim),
                None => continue,
            },
            Err(e) => {
                let call = "mq_open(O_CREAT|O_EXCL, 0600)";
                return Err(queue_error(Api::Posix, &object, call, e, limits));
            }
        };
        let q = PosixQueue::wrap(m, name, limits)?;
        let p = q.posix().expect("POSIX queue");
        posix::register(p);
        let guard = posix_guard(p);
        return Ok(Claim::Created(Endpoint {
            queue: q,
            guard: Some(guard),
            key: None,
            pin: None,
            created: true,
        }));
    }
    Err(Error::new(
        Kind::Runtime,
        object,
        "mq_open: the name keeps appearing and vanishing",
        "another program is using this name; choose another --name",
    )
    .because(ipc_common::Cause::NotOurs))
}

/// The name exists: open it. `None`: it vanished, or it was stale and is gone now.
fn posix_open_existing(name: &str, limits: &Limits, check_alive: bool) -> Result<Option<Claim>> {
    narrate::step(
        format_args!("mq_open({name:?}, O_RDWR): open the queue the other side created"),
        Api::Posix.look(),
    );
    let m = match posix::open(name) {
        Ok(m) => m,
        Err(Errno::ENOENT) => return Ok(None),
        Err(e) => {
            let object = posix::object_of(name);
            return Err(queue_error(
                Api::Posix,
                &object,
                "mq_open(O_RDWR)",
                e,
                limits,
            ));
        }
    };
    let q = PosixQueue::wrap(m, name, limits)?;
    q.check_owner()?;
    let p = q.posix().expect("POSIX queue");
    if !check_alive || posix::creator_alive(p)? {
        return Ok(Some(Claim::Existing(Endpoint::opened(q, None, None))));
    }
    narrate::note(format_args!(
        "replacing the stale {}: no live process created it (left by a crashed run)",
        q.object()
    ));
    posix::unlink_if_same(name, p.identity(), "cleanup: a stale queue goes");
    Ok(None)
}

/// Is the `flock` on the key file at `path` held (its creator alive)? One look.
/// `None`: the file is gone. A shared probe: the creator's exclusive lock makes it
/// fail, but two probing sides never take each other for a live creator.
fn sysv_lock_held(path: &Path) -> Result<Option<bool>> {
    let f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::os(format!("key file {}", path.display()), "open", e)),
    };
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

/// Someone holds the key file's `flock` (its creator is alive), re-checked for a
/// moment as a new creator locks right after creating the file.
fn sysv_creator_alive(path: &Path) -> Result<bool> {
    let until = Instant::now() + STALE_RECHECK;
    loop {
        match sysv_lock_held(path)? {
            Some(true) => return Ok(true),
            None => return Ok(false),
            Some(false) if Instant::now() >= until => return Ok(false),
            Some(false) => std::thread::sleep(Duration::from_millis(20)),
        }
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
            let object = kf.path.display().to_string();
            queue_error(Api::Sysv, &object, "msgctl(IPC_STAT)", errno(&e), limits)
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
pub fn sysv_attach(
    path: &Path,
    record: &Path,
    pin: Option<&File>,
) -> Option<(PathBuf, (u64, u64))> {
    let ours = pin.and_then(file_id);
    if ours.is_none() || path_id(path) != ours {
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

/// The SysV queue's names: the key file and the pair's record of an attached queue.
struct SysvNames<'a> {
    path: &'a Path,
    record: &'a Path,
}

/// What looking at an existing key file found.
enum Found {
    /// The live creator's queue, opened.
    Live(Endpoint),
    /// The key file was replaced meanwhile: look at the name afresh.
    Replaced,
    /// A crashed run's key file (and queue): removed.
    Stale,
}

/// Create the SysV queue for key file `path` exclusively, or open the existing one.
/// With `check_alive`, a key file whose creator is gone is stale: it and its queue go.
/// A live creator (its `flock` held) is waited for up to `wait` to make its queue.
fn sysv_claim(
    names: &SysvNames<'_>,
    limits: &Limits,
    check_alive: bool,
    wait: Duration,
) -> Result<Claim> {
    sysv_reclaim_orphan(names.record, limits)?;
    for _ in 0..10 {
        // Locked before it appears: held for this side's life, the sign it is alive.
        if let Some((kf, lock)) = KeyFile::create_locked(names.path)? {
            return sysv_create_queue(names, kf, lock, limits);
        }
        let kf = match KeyFile::open(names.path) {
            Ok(kf) => kf,
            Err(e) if e.source.as_ref().and_then(|s| s.raw_os_error()) == Some(libc::ENOENT) => {
                continue
            }
            Err(e) => return Err(e),
        };
        match sysv_open_existing(names, &kf, limits, check_alive, wait)? {
            Found::Live(ep) => return Ok(Claim::Existing(ep)),
            Found::Replaced | Found::Stale => {}
        }
    }
    Err(Error::new(
        Kind::Runtime,
        format!("key file {}", names.path.display()),
        "the key file keeps appearing and vanishing",
        "another program is using this name; choose another --name",
    )
    .because(ipc_common::Cause::NotOurs))
}

/// This side made the key file: make its queue.
fn sysv_create_queue(
    names: &SysvNames<'_>,
    kf: KeyFile,
    lock: Flock<File>,
    limits: &Limits,
) -> Result<Claim> {
    narrate::step(
        format_args!(
            "msgget({:#010x}, IPC_CREAT|IPC_EXCL|0600): create the queue",
            kf.key
        ),
        Api::Sysv.look(),
    );
    let id = sysvq::create(kf.key, names.path, limits)?;
    let q = SysvQueue::wrap(id, kf.key, limits)?;
    let record = file_id(&lock).map(|i| (names.record.to_path_buf(), i));
    let guard = sysv_guard(q.sysv().expect("SysV queue"), record);
    Ok(Claim::Created(Endpoint {
        queue: q,
        guard: Some(guard),
        key: Some(SysvKey {
            kf,
            lock: Some(lock),
        }),
        pin: None,
        created: true,
    }))
}

/// Another side's key file: open its queue if its creator lives, else remove both.
fn sysv_open_existing(
    names: &SysvNames<'_>,
    kf: &KeyFile,
    limits: &Limits,
    check_alive: bool,
    wait: Duration,
) -> Result<Found> {
    // Held open from here: its inode, and so the key, cannot be reused meanwhile.
    let pin = File::open(names.path).ok();
    let alive = !check_alive || sysv_creator_alive(names.path)?;
    let Some((found, alive)) = sysv_await_queue(names.path, kf, pin.as_ref(), alive, wait, limits)?
    else {
        return Ok(Found::Replaced);
    };
    match found {
        Some(id) if alive => {
            let q = SysvQueue::wrap(id, kf.key, limits)?;
            q.check_owner()?;
            let rec = pin
                .as_ref()
                .and_then(file_id)
                .map(|i| (names.record.to_path_buf(), i));
            let guard = sysv_guard(q.sysv().expect("SysV queue"), rec);
            Ok(Found::Live(Endpoint::opened(q, Some(guard), pin)))
        }
        found => {
            narrate::note(format_args!(
                "replacing the stale key file {}: no live process holds it (left by a crashed run)",
                names.path.display()
            ));
            if let Some(id) = found {
                let q = SysvQueue::wrap(id, kf.key, limits)?;
                q.check_owner()?;
                let _ = sys::msgctl_rmid(id);
            }
            remove_key_file(names.path, pin.as_ref().and_then(file_id));
            Ok(Found::Stale)
        }
    }
}

/// Open the queue of key file `kf`. A live creator makes the queue right after its key
/// file, but may be slow: wait for it as long as its lock says it lives (at most
/// `wait`). `Some((queue id if any, creator alive))`; `None`: the key file was replaced.
fn sysv_await_queue(
    path: &Path,
    kf: &KeyFile,
    pin: Option<&File>,
    mut alive: bool,
    wait: Duration,
    limits: &Limits,
) -> Result<Option<(Option<libc::c_int>, bool)>> {
    let deadline = Instant::now() + wait.max(STALE_RECHECK);
    let recheck_from = Instant::now() + STALE_RECHECK;
    let mut stepped = false;
    loop {
        if !stepped && alive {
            narrate::step(
                format_args!(
                    "msgget({:#010x}, 0): open the queue the other side created",
                    kf.key
                ),
                Api::Sysv.look(),
            );
            stepped = true;
        }
        match sysvq::open(kf.key) {
            Ok(id) => return Ok(Some((Some(id), alive))),
            Err(e) if errno(&e) == Errno::ENOENT && alive => {}
            Err(e) if errno(&e) == Errno::ENOENT => return Ok(Some((None, false))),
            Err(e) => {
                let object = format!("key file {}", path.display());
                return Err(queue_error(Api::Sysv, &object, "msgget", errno(&e), limits));
            }
        }
        if Instant::now() >= deadline {
            return Err(Error::peer(
                format!("key file {}", path.display()),
                format!(
                    "its creator is alive (it holds the key file's lock) but made no queue within {:.1} s",
                    wait.as_secs_f64()
                ),
                "the other side is stuck; check it, or raise --timeout",
            )
            .because(ipc_common::Cause::Timeout));
        }
        std::thread::sleep(Duration::from_millis(5));
        // Past the first moment, only a held lock keeps this side waiting (a key file
        // left with no queue and no one holding it is stale).
        if Instant::now() >= recheck_from {
            if path_id(path) != pin.and_then(file_id) {
                return Ok(None);
            }
            alive = sysv_lock_held(path)? == Some(true);
        }
    }
}

/// Remove a key file (if it is still the file `ino`), narrating it.
pub fn remove_key_file(path: &Path, ino: Option<(u64, u64)>) {
    let now = path_id(path);
    if now.is_some() && (ino.is_none() || now == ino) && std::fs::remove_file(path).is_ok() {
        narrate::call(format_args!("unlink({path:?}) = 0"), IDEA_UNLINK);
    }
}

/// The SysV key file of a queue: `/tmp/NAME.mq.key` (data) or `/tmp/NAME.mq.reply.key`.
/// The `.mq` keeps them apart from the shared-memory tools' key files.
pub fn sysv_key_path(name: &str, suffix: Option<&str>) -> PathBuf {
    match suffix {
        Some(s) => key_path(name, Some(&format!("mq.{s}"))),
        None => key_path(name, Some("mq")),
    }
}

/// Where an attached pair records its queue: `/tmp/NAME.mq.inuse.key` (or
/// `/tmp/NAME.mq.reply.inuse.key`), the key file moved there by the opener.
pub fn sysv_record_path(name: &str, suffix: Option<&str>) -> PathBuf {
    match suffix {
        Some(s) => key_path(name, Some(&format!("mq.{s}.inuse"))),
        None => key_path(name, Some("mq.inuse")),
    }
}

/// Claim `name`'s queue (`suffix`: `reply` for pingpong's). `wait`: how long an opener
/// waits for a live creator to make its queue.
pub fn claim(
    api: Api,
    name: &str,
    suffix: Option<&str>,
    limits: &Limits,
    check_alive: bool,
    wait: Duration,
) -> Result<Claim> {
    match api {
        Api::Posix => posix_claim(&posix::queue_name(name, suffix), limits, check_alive),
        Api::Sysv => {
            let (path, record) = (sysv_key_path(name, suffix), sysv_record_path(name, suffix));
            let names = SysvNames {
                path: &path,
                record: &record,
            };
            sysv_claim(&names, limits, check_alive, wait)
        }
    }
}

/// Where the name of `api`'s queue lives, for messages: `/ipc-mq`, `/tmp/ipc-mq.mq.key`.
pub fn name_shown(api: Api, name: &str) -> String {
    match api {
        Api::Posix => posix::queue_name(name, None),
        Api::Sysv => sysv_key_path(name, None).display().to_string(),
    }
}
