//! Shared-memory segments: created by the producer, attached by the consumer, through
//! the three APIs of the lecture: POSIX (`shm_open`, `ftruncate`, `mmap`), System V
//! (`ftok`, `shmget`, `shmat`) and a memory-mapped regular file.
//!
//! The creator initialises the whole header and publishes `STATE_READY` last; the opener
//! waits for it, then checks magic, version and sizes. Once the consumer has attached,
//! the producer removes the name (`shm_unlink`, `IPC_RMID`, `unlink`; with `--keep` only
//! at exit): the memory lives on while mapped, and even `kill -9` of either side leaves
//! nothing behind. A consumer not told the API looks under all three ([`probe`]).
//!
//! Every lifecycle call is narrated (`-v`) and, with `--step`, preceded by a pause that
//! says what to look at (`ls -l /dev/shm`, `ipcs -m`, `ls -l FILE`).
//!
//! After a crash either side may still start first: the consumer attaches only to a
//! published segment whose producer lives (its alive mutex is busy), and the next producer
//! replaces what a dead one left, published or not (the creator lock: a `flock` the
//! creator of a POSIX object or mapped file holds for life; for SysV, no process
//! attached). A same-user peer can also truncate a POSIX object or mapped file: both
//! sides keep its descriptor and check its size at every sleep ([`check_size`]).

#[cfg(any(test, feature = "fuzz"))]
pub mod fuzz;
pub mod layout;
pub mod pair;
pub mod pool;
pub mod queue;
pub mod ring;

use crate::cleanup::{self, Guard};
use crate::error::{Cause, Context, Error, Kind, Result};
use crate::narrate;
use crate::record;
use crate::sysv::{key_path, KeyFile};
use ipc_sys::shm::{self as sys, Lock, Mapping};
use layout::{
    Api, Checked, Header, SyncKind, HEADER_SIZE, MAGIC, STATE_ATTACHED, STATE_INIT, STATE_READY,
    VERSION,
};
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;
use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

const IDEA_POSIX: &str = "POSIX shm: a file in tmpfs, sized with ftruncate, mapped with mmap";
const IDEA_SYSV: &str = "SysV shm: a system-wide, key-addressed segment";
const IDEA_MMAP: &str = "memory-mapped file: the same pages in both processes";
const IDEA_EARLY: &str = "cleanup: both sides are attached, so the name can go now";
/// How long a side waits silently before saying it waits for its peer.
const GRACE: Duration = Duration::from_millis(200);

/// Which segment: API, name, and for `--api mmap` the file.
#[derive(Clone, Debug)]
pub struct Spec {
    pub api: Api,
    pub name: String,
    /// `--file` for `--api mmap`; default `<tmp>/NAME.mmap`.
    pub file: Option<PathBuf>,
}

impl Spec {
    fn mmap_path(&self) -> PathBuf {
        self.file
            .clone()
            .unwrap_or_else(|| std::env::temp_dir().join(format!("{}.mmap", self.name)))
    }

    /// Pool member `i`: the same API, named `NAME.pool.I` (and its file `FILE.pool.I`).
    pub fn pool_member(&self, i: u32) -> Spec {
        Spec {
            api: self.api,
            name: format!("{}.pool.{i}", self.name),
            file: self.file.as_ref().map(|f| {
                let mut p = f.clone().into_os_string();
                p.push(format!(".pool.{i}"));
                PathBuf::from(p)
            }),
        }
    }

    /// The file that stands for the object, as shown: its /dev/shm entry, its SysV key
    /// file, or the mapped file itself.
    fn file(&self) -> String {
        let path = match self.api {
            Api::Posix => Path::new("/dev/shm").join(&self.name),
            Api::Sysv => key_path(&self.name, None),
            Api::Mmap => self.mmap_path(),
        };
        path.display().to_string()
    }

    /// How the object is named in messages.
    pub fn object(&self) -> String {
        match self.api {
            Api::Posix => format!("POSIX shared memory /{} ({})", self.name, self.file()),
            Api::Sysv => format!("SysV segment for {}", self.file()),
            Api::Mmap => format!("mapped file {}", self.file()),
        }
    }

    /// How the consumer opens the object, for `--step`.
    fn open_call(&self) -> String {
        match self.api {
            Api::Posix => format!("shm_open(\"/{}\", O_RDWR) and mmap", self.name),
            Api::Sysv => format!("ftok({}), shmget(key, 0, 0) and shmat", self.file()),
            Api::Mmap => format!("open({}, O_RDWR) and mmap", self.file()),
        }
    }

    /// What to look at in another terminal to see this object come and go (`--step`).
    pub fn look(&self) -> String {
        match self.api {
            Api::Posix => "ls -l /dev/shm".into(),
            Api::Sysv => format!("ipcs -m; ls -l {}", self.file()),
            Api::Mmap => format!("ls -l {}", self.file()),
        }
    }

    /// The command that removes a leftover by hand.
    fn remove_command(&self) -> String {
        let rm = format!("rm {}", self.file());
        match self.api {
            Api::Sysv => format!("ipcrm -M $(printf '0x%x' KEY) (see ipcs -m), then {rm}"),
            Api::Posix | Api::Mmap => rm,
        }
    }
}

/// The `peer` of a shared-memory pair moved nothing for `timeout` (exit 4, cause
/// `timeout`), while it still holds its alive mutex.
pub(crate) fn no_progress(object: &str, peer: &str, timeout: Duration) -> Error {
    Error::peer(
        object,
        format!(
            "the {peer} made no progress for {:.1} s",
            timeout.as_secs_f64()
        ),
        format!("the {peer} is stopped or stuck; check it, or raise --timeout"),
    )
    .because(Cause::Timeout)
}

/// A mapped segment, and while this side owns its name, the guard that removes it.
pub struct Segment {
    pub map: Mapping,
    pub object: String,
    remover: Option<Guard>,
    /// Names of helper objects (the `--sync mq` queues), removed with the segment's.
    helpers: Vec<Guard>,
    /// Which alive mutex this side holds, to release before unmapping: a side that
    /// exits on an error then reads as gone at once, not only when the kernel notices.
    holds: Option<Holder>,
    /// `--api posix|mmap`: the object's descriptor, kept open. The creator holds its
    /// creator lock (`flock`) on it for life, and both sides check its size on it.
    pub file: Option<File>,
    /// What `--step` says to look at for this object.
    look: String,
    /// An opener's calls, narrated only once the segment proves to be a live producer's
    /// (see [`try_open`]); until then the segment is `quiet`, its unmapping too.
    opened: Vec<(String, &'static str)>,
    quiet: bool,
}

#[derive(Clone, Copy)]
enum Holder {
    Producer,
    Consumer,
}

impl Drop for Segment {
    fn drop(&mut self) {
        // The helper queues' names before the segment's: see `remove_name`.
        self.helpers.clear();
        if self.holds.is_some() && self.check_size().is_err() {
            // Truncated: the header's page is gone, touching it would be SIGBUS; and
            // the peer cannot read our alive mutex either.
            return;
        }
        let h = self.map.header();
        match self.holds {
            Some(Holder::Producer) => h.producer_alive.unlock(),
            Some(Holder::Consumer) => h.consumer_alive.unlock(),
            None => {}
        }
        if self.quiet {
            return;
        }
        // The mapping itself goes when the field drops, right after this.
        if !cleanup::interrupted() {
            narrate::step(
                format_args!(
                    "{} of {}",
                    if self.map.is_sysv() {
                        "shmdt"
                    } else {
                        "munmap"
                    },
                    self.object
                ),
                &self.look,
            );
        }
        if self.map.is_sysv() {
            narrate::call(
                format_args!("shmdt({:#x}) = 0", self.map.addr()),
                "SysV shm: detach; the segment lives on until IPC_RMID and the last detach",
            );
        } else {
            narrate::call(
                format_args!("munmap({:#x}, {}) = 0", self.map.addr(), self.map.len()),
                "shared memory: unmap; the pages go when the last mapping and the name are gone",
            );
        }
        if self.file.is_some() {
            narrate::call(
                format_args!("close(fd) = 0"),
                "the descriptor was only needed to map the object (and to watch its size)",
            );
        }
    }
}

impl Segment {
    /// The link through this segment's ring(s) as `side`, which ends with an error, not
    /// SIGBUS, if the segment's file is truncated under it.
    pub fn ring_link(
        &self,
        side: ring::Side,
        checked: &Checked,
        timeout: Duration,
        queues: Option<ring::SyncQueues>,
    ) -> ring::ShmLink<'_> {
        let object = self.object.clone();
        ring::ShmLink::new(&self.map, object, side, checked, timeout, queues)
            .watch_size(self.file.as_ref())
    }

    fn new(map: Mapping, spec: &Spec, remover: Option<Guard>) -> Segment {
        Segment {
            map,
            object: spec.object(),
            remover,
            helpers: Vec::new(),
            holds: None,
            file: None,
            look: spec.look(),
            opened: Vec::new(),
            quiet: false,
        }
    }

    /// Narrate the calls that opened this segment, now that it is the one used.
    fn announce(&mut self) {
        for (call, idea) in self.opened.drain(..) {
            narrate::call(format_args!("{call}"), idea);
        }
        self.quiet = false;
    }

    fn with_file(mut self, file: File) -> Segment {
        self.file = Some(file);
        self
    }

    pub fn header(&self) -> &Header {
        self.map.header()
    }

    /// Remove the name now (the consumer has attached): the mapping stays valid.
    /// The helper queues' names go first: a queue name then never outlives its
    /// segment's name while its producer lives, so whoever holds the segment name may
    /// take a queue left under the derived name as a dead producer's.
    /// With `--keep` the names stay until exit, for the student to see.
    pub fn remove_name(&mut self) {
        if !cleanup::early_removal() {
            return;
        }
        self.helpers.clear();
        self.remover.take();
    }

    /// Fail (exit 1) if the object was truncated below what is mapped: see
    /// [`check_size`]. Nothing to check for SysV, whose segments cannot shrink.
    pub fn check_size(&self) -> Result<()> {
        match &self.file {
            Some(f) => check_size(f, self.map.len(), &self.object),
            None => Ok(()),
        }
    }

    /// Remove `guard`'s object together with the segment's name.
    pub fn add_helper(&mut self, guard: Guard) {
        self.helpers.push(guard);
    }
}

/// Has `file` (a POSIX object or a mapped file) shrunk below the `mapped` bytes? Then
/// touching the lost pages would kill this side with SIGBUS: another process of this
/// user truncated it. The sides call this at every sleep, so one that waits for its peer
/// ends with exit 1 and this message; a side that is copying when the truncation comes
/// can still be killed by SIGBUS first (see the module doc of `sys::shm`).
pub(crate) fn check_size(file: &File, mapped: usize, object: &str) -> Result<()> {
    let len = file.metadata().on(&object, "fstat")?.len();
    if len < mapped as u64 {
        return Err(Error::new(
            Kind::Runtime,
            object,
            format!(
                "was truncated to {len} bytes while mapped with {mapped} (another process of this user shrank it)"
            ),
            "leave a running pair's segment alone; start both sides again",
        ));
    }
    Ok(())
}

fn refuse(spec: &Spec, what: String) -> Error {
    Error::new(
        Kind::Runtime,
        spec.object(),
        what,
        format!("not touching it; if it is a leftover of yours, remove it ({}) or choose another --name", spec.remove_command()),
    )
    .because(Cause::NotOurs)
}

/// Refuse a too-large segment before mapping it: touching pages /dev/shm cannot back
/// would kill the process with SIGBUS instead of giving an error.
fn check_room(dir: &str, total: usize, spec: &Spec) -> Result<()> {
    let Ok(st) = nix::sys::statvfs::statvfs(dir) else {
        return Ok(());
    };
    let free = st.blocks_available() as u128 * st.fragment_size() as u128;
    if (total as u128) > free {
        return Err(Error::new(
            Kind::Runtime,
            spec.object(),
            format!("needs {total} bytes but {dir} has {free} free"),
            format!("lower --segment-size, free space in {dir}, or enlarge it (in a container: --shm-size)"),
        )
        .because(Cause::Limit));
    }
    Ok(())
}

/// `--step` before a name is removed; not on Ctrl-C, whose cleanup must not wait.
fn step_before_removal(call: std::fmt::Arguments<'_>, look: &str) {
    if !cleanup::interrupted() {
        narrate::step(format_args!("{call}: the name goes"), look);
    }
}

fn step_mmap(len: usize, look: &str) {
    narrate::step(
        format_args!("mmap(NULL, {len}, PROT_READ|PROT_WRITE, MAP_SHARED, fd, 0): the pages enter this process (see /proc/PID/maps)"),
        look,
    );
}

/// What a mapped segment that already exists under our name is.
enum Existing {
    /// Its producer is dead (pid, if it got as far as publishing): replace it.
    Stale(Option<u32>),
    /// Its producer lives: refuse.
    Live(u32),
}

/// Judge an existing, published segment by its producer's alive mutex.
fn judge(map: &Mapping, spec: &Spec) -> Result<Existing> {
    if map.len() < HEADER_SIZE {
        return Err(refuse(
            spec,
            format!(
                "exists with {} bytes, too small to be this project's",
                map.len()
            ),
        ));
    }
    let h = map.header();
    let c =
        layout::check(h, map.len() as u64).map_err(|e| refuse(spec, format!("exists and {e}")))?;
    // A consumer checking whether this producer lives holds the mutex for an instant:
    // only a mutex busy at every look is a live producer's.
    for _ in 0..5 {
        match h.producer_alive.try_lock() {
            Ok(Lock::Busy) => std::thread::sleep(Duration::from_millis(2)),
            Ok(l) => {
                if l == Lock::OwnerDied {
                    h.producer_alive.make_consistent();
                }
                h.producer_alive.unlock();
                return Ok(Existing::Stale(Some(c.creator_pid)));
            }
            Err(e) => {
                return Err(refuse(
                    spec,
                    format!("exists and its alive mutex is unusable ({e})"),
                ))
            }
        }
    }
    Ok(Existing::Live(c.creator_pid))
}

/// Judge an existing `--api posix|mmap` object (already checked to be ours): published,
/// by its alive mutex; not yet published (size 0, or state INIT), by its creator lock,
/// which a creator takes right after creating the object and holds for life.
fn judge_file(file: &File, spec: &Spec) -> Result<Existing> {
    let obj = spec.object();
    let len = file.metadata().on(&obj, "fstat")?.len() as usize;
    if len != 0 {
        let map = Mapping::map_shared(file, len).on(&obj, "mmap")?;
        if len < HEADER_SIZE || map.header().state.load(Ordering::Acquire) != STATE_INIT {
            return judge(&map, spec);
        }
    }
    match file.try_lock() {
        Ok(()) => Ok(Existing::Stale(None)),
        Err(std::fs::TryLockError::WouldBlock) => Err(refuse(
            spec,
            "is being created by a live process (it holds the creator lock and has not published it yet)".into(),
        )),
        Err(std::fs::TryLockError::Error(e)) => Err(Error::os(&obj, "flock(LOCK_EX|LOCK_NB)", e)),
    }
}

/// Judge an existing SysV segment (already checked to be ours) that is not published
/// yet: its creator attaches right after `shmget` and stays attached for life, so no
/// process attached, at two looks a little apart, means its creator died.
fn judge_unpublished_sysv(id: i32, spec: &Spec) -> Result<Existing> {
    let obj = spec.object();
    for look in 0..2 {
        if look > 0 {
            std::thread::sleep(Duration::from_millis(20));
        }
        let st = stat_sysv(id, &obj)?;
        if st.attached > 0 {
            return Err(refuse(
                spec,
                format!(
                    "segment id {id} is being created by a live process (pid {}; attached, not yet published)",
                    st.creator_pid
                ),
            ));
        }
    }
    Ok(Existing::Stale(None))
}

fn stale_or_refuse(existing: Existing, spec: &Spec) -> Result<()> {
    match existing {
        Existing::Live(pid) => Err(Error::new(
            Kind::Runtime,
            spec.object(),
            format!("is in use by a live producer (pid {pid})"),
            "stop that producer, or give this one another --name",
        )),
        Existing::Stale(pid) => {
            match pid {
                Some(pid) => narrate::note(format_args!(
                    "replacing a stale {} left by a dead producer (pid {pid})",
                    spec.object()
                )),
                None => narrate::note(format_args!(
                    "replacing a {} whose creator died before publishing it",
                    spec.object()
                )),
            }
            Ok(())
        }
    }
}

/// The creator's claim on an object it just created exclusively: take its creator lock
/// (`flock`), then check that the name still names this object. Another producer that
/// judged it in the instant between the create and the lock could have taken it for a
/// dead creator's and replaced it.
fn claim_new(file: &File, path: &Path, spec: &Spec) -> Result<()> {
    let obj = spec.object();
    let lost = || {
        Error::new(
            Kind::Runtime,
            &obj,
            "was replaced by another producer while this one was creating it",
            "run one producer per --name; try again",
        )
    };
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => return Err(lost()),
        Err(std::fs::TryLockError::Error(e)) => {
            return Err(Error::os(&obj, "flock(LOCK_EX|LOCK_NB)", e))
        }
    }
    let mine = file.metadata().on(&obj, "fstat")?;
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.dev() == mine.dev() && m.ino() == mine.ino() => Ok(()),
        _ => Err(lost()),
    }
}

/// Test hook (debug builds only): with `IPC_TEST_STOP_BEFORE_PUBLISH=<point>`, the
/// producer stops itself (SIGSTOP) at `point`: `create` (the object just created, not
/// sized or initialised) or `publish` (sized, not yet published), so the tests can kill
/// it there and check that the next run reclaims what it left.
fn test_stop(point: &str) {
    #[cfg(debug_assertions)]
    if std::env::var_os("IPC_TEST_STOP_BEFORE_PUBLISH").is_some_and(|v| v == point) {
        let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGSTOP);
    }
    #[cfg(not(debug_assertions))]
    let _ = point;
}

/// Check that an existing file-like object is ours and closed to others.
fn check_owner(file: &File, spec: &Spec) -> Result<()> {
    let meta = file.metadata().on(&spec.object(), "fstat")?;
    let me = nix::unistd::geteuid().as_raw();
    if meta.uid() != me {
        return Err(refuse(
            spec,
            format!("belongs to uid {}, not to this user", meta.uid()),
        ));
    }
    if meta.mode() & 0o077 != 0 {
        return Err(refuse(
            spec,
            format!(
                "has mode {:03o}; this project's segments are 0600",
                meta.mode() & 0o777
            ),
        ));
    }
    Ok(())
}

/// Open an existing `--api mmap` file, `Ok(None)` if there is none. Only a regular file
/// is opened, never through a symbolic link: another user's link to a device or a FIFO
/// in a shared directory must not make us open that (a device open can have side
/// effects, a FIFO open blocks). So: refuse what `lstat` shows is not a regular file,
/// open with O_NOFOLLOW|O_NONBLOCK (the path may change in between), check the opened
/// file's type again, and only then clear O_NONBLOCK.
fn open_existing_file(spec: &Spec) -> Result<Option<File>> {
    use std::os::unix::fs::OpenOptionsExt;
    let obj = spec.object();
    let path = spec.mmap_path();
    let not_regular =
        |what: &str| refuse(spec, format!("exists and is {what}, not a regular file"));
    match std::fs::symlink_metadata(&path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::os(&obj, "lstat", e)),
        Ok(m) if m.file_type().is_symlink() => return Err(not_regular("a symbolic link")),
        Ok(m) if !m.is_file() => return Err(not_regular("a special file")),
        Ok(_) => {}
    }
    let file = match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(&path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Err(not_regular("a symbolic link"))
        }
        Err(e) => return Err(Error::os(&obj, "open(O_RDWR|O_NOFOLLOW|O_NONBLOCK)", e)),
    };
    if !file.metadata().on(&obj, "fstat")?.is_file() {
        return Err(not_regular("a special file"));
    }
    crate::workload::set_blocking(&file, &obj)?;
    Ok(Some(file))
}

/// Create the segment (producer): `total` bytes, exclusively, mode 0600, zeroed.
/// The caller initialises the header and publishes it ([`publish`]).
pub fn create(spec: &Spec, total: usize) -> Result<Segment> {
    match spec.api {
        Api::Posix => create_posix(spec, total),
        Api::Sysv => create_sysv(spec, total),
        Api::Mmap => create_mmap(spec, total),
    }
}

fn create_posix(spec: &Spec, total: usize) -> Result<Segment> {
    let obj = spec.object();
    let name = format!("/{}", spec.name);
    check_room("/dev/shm", total, spec)?;
    let look = spec.look();
    narrate::step(
        format_args!("shm_open({name:?}, O_CREAT|O_EXCL|O_RDWR, 0600): an empty object appears"),
        &look,
    );
    let flags = OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_RDWR;
    let fd = match nix::sys::mman::shm_open(name.as_str(), flags, Mode::S_IRUSR | Mode::S_IWUSR) {
        Err(Errno::EEXIST) => {
            let fd = nix::sys::mman::shm_open(name.as_str(), OFlag::O_RDWR, Mode::empty())
                .on(&obj, "shm_open(O_RDWR)")?;
            let file = File::from(fd);
            check_owner(&file, spec)?;
            stale_or_refuse(judge_file(&file, spec)?, spec)?;
            nix::sys::mman::shm_unlink(name.as_str()).on(&obj, "shm_unlink")?;
            nix::sys::mman::shm_open(name.as_str(), flags, Mode::S_IRUSR | Mode::S_IWUSR)
        }
        r => r,
    }
    .map_err(|e| Error::os(&obj, "shm_open(O_CREAT|O_EXCL|O_RDWR, 0600)", e.into()))?;
    narrate::call(
        format_args!("shm_open({name:?}, O_CREAT|O_EXCL|O_RDWR, 0600) = fd"),
        IDEA_POSIX,
    );
    let file = File::from(fd);
    claim_new(&file, &Path::new("/dev/shm").join(&spec.name), spec)?;
    test_stop("create");
    let remover = {
        let n = name.clone();
        cleanup::on_exit_recorded(obj.clone(), record::Object::posix_shm(&name), move || {
            step_before_removal(format_args!("shm_unlink({n:?})"), "ls -l /dev/shm");
            if nix::sys::mman::shm_unlink(n.as_str()).is_ok() {
                narrate::call(format_args!("shm_unlink({n:?}) = 0"), IDEA_EARLY);
            }
        })
    };
    size_and_map(spec, file, total, remover)
}

fn create_mmap(spec: &Spec, total: usize) -> Result<Segment> {
    use std::os::unix::fs::OpenOptionsExt;
    let obj = spec.object();
    let path = spec.mmap_path();
    let open_new = || {
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
    };
    let look = spec.look();
    narrate::step(
        format_args!("open({path:?}, O_CREAT|O_EXCL|O_RDWR, 0600): an empty file appears"),
        &look,
    );
    let file = match open_new() {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let Some(file) = open_existing_file(spec)? else {
                return Err(refuse(
                    spec,
                    "vanished while being checked; try again".into(),
                ));
            };
            check_owner(&file, spec)?;
            stale_or_refuse(judge_file(&file, spec)?, spec)?;
            std::fs::remove_file(&path).on(&obj, "unlink")?;
            open_new()
        }
        r => r,
    }
    .on(&obj, "open(O_CREAT|O_EXCL|O_RDWR, 0600)")?;
    narrate::call(
        format_args!("open({path:?}, O_CREAT|O_EXCL|O_RDWR, 0600) = fd"),
        IDEA_MMAP,
    );
    claim_new(&file, &path, spec)?;
    test_stop("create");
    let remover = {
        let p = path.clone();
        let rec = record::Object::path(record::Kind::MappedFile, &path);
        let look = look.clone();
        cleanup::on_exit_recorded(obj.clone(), rec, move || {
            step_before_removal(format_args!("unlink({p:?})"), &look);
            if std::fs::remove_file(&p).is_ok() {
                narrate::call(format_args!("unlink({p:?}) = 0"), IDEA_EARLY);
            }
        })
    };
    if let Some(dir) = path.parent().and_then(Path::to_str) {
        check_room(dir, total, spec)?;
    }
    size_and_map(spec, file, total, remover)
}

/// The end of creating a POSIX object or a mapped file, now claimed: size it, map it.
fn size_and_map(spec: &Spec, file: File, total: usize, remover: Guard) -> Result<Segment> {
    let (obj, look) = (spec.object(), spec.look());
    let (what, idea, mapped) = match spec.api {
        Api::Mmap => ("file", IDEA_MMAP, IDEA_MMAP),
        _ => (
            "object",
            IDEA_POSIX,
            "shared memory: the same physical pages, mapped at each process's own address",
        ),
    };
    narrate::step(
        format_args!("ftruncate(fd, {total}): the {what} gets its size"),
        &look,
    );
    file.set_len(total as u64).on(&obj, "ftruncate")?;
    narrate::call(format_args!("ftruncate(fd, {total}) = 0"), idea);
    step_mmap(total, &look);
    let map = Mapping::map_shared(&file, total).on(&obj, "mmap")?;
    narrate::call(
        format_args!(
            "mmap(NULL, {total}, PROT_READ|PROT_WRITE, MAP_SHARED, fd, 0) = {:#x}",
            map.addr()
        ),
        mapped,
    );
    Ok(Segment::new(map, spec, Some(remover)).with_file(file))
}

fn create_sysv(spec: &Spec, total: usize) -> Result<Segment> {
    let obj = spec.object();
    let kpath = key_path(&spec.name, None);
    let look = spec.look();
    narrate::step(
        format_args!(
            "create the key file {} and ftok it into a key",
            kpath.display()
        ),
        &look,
    );
    let key = match KeyFile::create(&kpath)? {
        Some(k) => k,
        None => {
            // A key file is there: a live producer's, or a crashed run's.
            let mut k = KeyFile::open(&kpath)?;
            if let Ok(id) = sys::shmget(k.key, 0, 0) {
                replace_stale_sysv(id, spec)?;
            }
            k.adopt();
            k
        }
    };
    let flags = libc::IPC_CREAT | libc::IPC_EXCL | 0o600;
    narrate::step(
        format_args!(
            "shmget({:#010x}, {total}, IPC_CREAT|IPC_EXCL|0600): the segment appears, attached 0 times",
            key.key
        ),
        &look,
    );
    let id = match sys::shmget(key.key, total, flags) {
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
            // A segment with this key but no key file: another key file's inode
            // collided, or a crashed run removed its key file first.
            let old = sys::shmget(key.key, 0, 0).on(&obj, "shmget")?;
            replace_stale_sysv(old, spec)?;
            sys::shmget(key.key, total, flags)
        }
        r => r,
    }
    .map_err(|e| {
        let remedy = match e.raw_os_error() {
            Some(libc::EINVAL) => "the size is over /proc/sys/kernel/shmmax; lower --segment-size or raise that limit",
            Some(libc::ENOSPC) => "the system's segment limit (/proc/sys/kernel/shmmni or shmall) is reached; remove leftovers (make clean-ipc, ipcs -m)",
            Some(libc::ENOMEM) => "the kernel cannot commit that much memory (RAM and swap under /proc/sys/vm/overcommit_memory, and /proc/sys/kernel/shmall pages); lower --segment-size",
            _ => "",
        };
        let err = Error::os(&obj, format!("shmget(key {:#010x}, {total}, IPC_CREAT|IPC_EXCL|0600)", key.key), e);
        if remedy.is_empty() { err } else { err.with_remedy(remedy).because(Cause::Limit) }
    })?;
    narrate::call(
        format_args!(
            "shmget({:#010x}, {total}, IPC_CREAT|IPC_EXCL|0600) = {id}",
            key.key
        ),
        IDEA_SYSV,
    );
    test_stop("create");
    let remover = {
        let object = format!("SysV segment id {id} (key {:#010x})", key.key);
        let rec = record::Object::sysv(record::Kind::SysvShm, key.key, id);
        cleanup::on_exit_recorded(object, rec, move || {
            let mut key = key;
            step_before_removal(format_args!("shmctl({id}, IPC_RMID)"), "ipcs -m");
            if sys::shm_rmid(id).is_ok() {
                narrate::call(format_args!("shmctl({id}, IPC_RMID) = 0"), IDEA_EARLY);
            }
            key.remove();
        })
    };
    narrate::step(
        format_args!("shmat({id}, NULL, 0): nattch goes to 1"),
        &look,
    );
    let map = Mapping::attach_sysv(id).on(&obj, "shmat")?;
    narrate::call(
        format_args!("shmat({id}, NULL, 0) = {:#x}", map.addr()),
        IDEA_SYSV,
    );
    Ok(Segment::new(map, spec, Some(remover)))
}

fn replace_stale_sysv(id: i32, spec: &Spec) -> Result<()> {
    let obj = spec.object();
    stat_own_sysv(id, spec)?;
    let map = Mapping::attach_sysv(id).on(&obj, "shmat")?;
    let existing =
        if map.len() >= HEADER_SIZE && map.header().state.load(Ordering::Acquire) == STATE_INIT {
            drop(map);
            judge_unpublished_sysv(id, spec)?
        } else {
            let e = judge(&map, spec)?;
            drop(map);
            e
        };
    stale_or_refuse(existing, spec)?;
    sys::shm_rmid(id).on(&obj, "shmctl(IPC_RMID)")?;
    Ok(())
}

/// Initialise the header of a new segment and publish it (Release, last).
/// The producer then holds its alive mutex for as long as it lives.
pub fn publish(seg: &mut Segment, c: &Checked) -> Result<()> {
    test_stop("publish");
    let (api, sync, rings, capacity) = (c.api, c.sync, c.rings, c.capacity);
    let h = seg.header();
    let obj = &seg.object;
    let init = |r: std::io::Result<()>, what: &str| r.on(obj, what);
    init(
        h.producer_alive.init(),
        "pthread_mutex_init(producer alive)",
    )?;
    init(
        h.consumer_alive.init(),
        "pthread_mutex_init(consumer alive)",
    )?;
    narrate::call(
        format_args!("pthread_mutexattr_setpshared(PTHREAD_PROCESS_SHARED) + setrobust(PTHREAD_MUTEX_ROBUST)"),
        "synchronization: a mutex inside the segment, shared by both processes",
    );
    for ring in &h.ring {
        init(ring.lock.init(), "pthread_mutex_init(ring)")?;
        init(ring.not_empty.init(), "pthread_cond_init(not_empty)")?;
        init(ring.not_full.init(), "pthread_cond_init(not_full)")?;
        init(ring.data_sem.init(0), "sem_init(data)")?;
        init(ring.space_sem.init(0), "sem_init(space)")?;
    }
    match sync {
        SyncKind::Mutex => narrate::call(
            format_args!("pthread_condattr_setpshared(PTHREAD_PROCESS_SHARED); pthread_cond_init(not_empty, not_full)"),
            "synchronization: condition variables signal 'data ready' and 'space free'",
        ),
        SyncKind::Sem => narrate::call(
            format_args!("sem_init(data, pshared=1, 0); sem_init(space, pshared=1, 0)"),
            "synchronization: process-shared semaphores in the segment",
        ),
        _ => {}
    }
    if h.producer_alive
        .lock()
        .on(obj, "pthread_mutex_lock(producer alive)")?
        != Lock::Acquired
    {
        return Err(Error::new(
            Kind::Runtime,
            obj,
            "could not take the producer's alive mutex",
            "this is a bug",
        ));
    }
    seg.holds = Some(Holder::Producer);
    let h = seg.header();
    h.magic.store(MAGIC, Ordering::Relaxed);
    h.version.store(VERSION, Ordering::Relaxed);
    h.header_size.store(HEADER_SIZE as u32, Ordering::Relaxed);
    h.total_size.store(seg.map.len() as u64, Ordering::Relaxed);
    h.ring_capacity.store(capacity, Ordering::Relaxed);
    h.rings.store(rings as u32, Ordering::Relaxed);
    h.api.store(api.code(), Ordering::Relaxed);
    h.sync.store(sync.code(), Ordering::Relaxed);
    h.creator_pid.store(std::process::id(), Ordering::Relaxed);
    h.flags.store(
        if c.zero_copy {
            layout::FLAG_ZERO_COPY
        } else {
            0
        },
        Ordering::Relaxed,
    );
    h.pool_segments.store(c.pool, Ordering::Relaxed);
    // Last, with Release: an opener that sees READY (Acquire) sees all of the above.
    h.state.store(STATE_READY, Ordering::Release);
    Ok(())
}

/// Producer: wait until a consumer attached, then remove the name early.
pub fn await_consumer(seg: &mut Segment, timeout: Duration, peer: &str) -> Result<()> {
    let start = Instant::now();
    let mut said = false;
    while seg.header().state.load(Ordering::Acquire) != STATE_ATTACHED {
        if start.elapsed() >= timeout {
            return Err(Error::peer(
                &seg.object,
                format!("no consumer attached within {:.1} s", timeout.as_secs_f64()),
                format!("start `{peer}` within --timeout, or raise --timeout"),
            )
            .because(Cause::Timeout));
        }
        if !said && start.elapsed() >= GRACE {
            narrate::note(format_args!(
                "waiting up to {:.0} s for a consumer to attach to {} (start `{peer}` in another terminal)",
                timeout.as_secs_f64(),
                seg.object
            ));
            said = true;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    seg.remove_name();
    Ok(())
}

/// Consumer: attach to the producer's segment, waiting (up to `timeout`) for it to
/// appear and be published; check its header; take the consumer's alive mutex.
pub fn attach(spec: &Spec, timeout: Duration, peer: &str) -> Result<(Segment, Checked)> {
    let obj = spec.object();
    narrate::step(
        format_args!(
            "{}: attach to {obj} once the producer has published it",
            spec.open_call()
        ),
        &spec.look(),
    );
    let start = Instant::now();
    let mut said = false;
    // What was there at the last look, for the timeout message.
    let mut found: Option<String> = None;
    let (mut seg, checked) = loop {
        if let Some(live) = look_for_live(spec, &mut found)? {
            break live;
        }
        if start.elapsed() >= timeout {
            return Err(no_producer(&obj, timeout, found.as_deref(), peer));
        }
        if !said && start.elapsed() >= GRACE {
            narrate::note(format_args!(
                "waiting up to {:.0} s for a producer to create {obj} (start `{peer}` in another terminal)",
                timeout.as_secs_f64()
            ));
            said = true;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    seg.announce();
    take_consumer_alive(&mut seg)?;
    Ok((seg, checked))
}

/// One look: the segment and its checked header if a live producer published it;
/// otherwise `found` says what was there (for the timeout message).
fn look_for_live(spec: &Spec, found: &mut Option<String>) -> Result<Option<(Segment, Checked)>> {
    let Some(seg) = try_open(spec)? else {
        return Ok(None);
    };
    let h = seg.header();
    // The creator publishes READY last; until then nothing else may be trusted.
    if h.state.load(Ordering::Acquire) == STATE_INIT {
        *found = Some("it exists but was never published".into());
        return Ok(None);
    }
    let checked = layout::check(h, seg.map.len() as u64).map_err(|e| {
        Error::new(
            Kind::Verify,
            spec.object(),
            format!("refused: {e}"),
            "both sides must run the same build; remove the object if it is a leftover",
        )
    })?;
    // A crashed producer's segment is no producer to attach to: wait for a live one,
    // which replaces it.
    if ring::peer_alive(&h.producer_alive) {
        return Ok(Some((seg, checked)));
    }
    if found.is_none() {
        narrate::note(format_args!(
            "{} was left by a dead producer (pid {}); waiting for a live producer to replace it",
            spec.object(),
            checked.creator_pid
        ));
    }
    *found = Some(format!(
        "only a dead producer's (pid {}) was there",
        checked.creator_pid
    ));
    Ok(None)
}

fn no_producer(obj: &str, timeout: Duration, found: Option<&str>, peer: &str) -> Error {
    let what = match found {
        Some(f) => format!(
            "no live producer published it within {:.1} s ({f})",
            timeout.as_secs_f64()
        ),
        None => format!(
            "no producer created it within {:.1} s",
            timeout.as_secs_f64()
        ),
    };
    Error::peer(
        obj,
        what,
        format!("start `{peer}` within --timeout, or raise --timeout"),
    )
    .because(Cause::Timeout)
}

/// Take the consumer's alive mutex: one consumer per segment, and the producer's sign
/// that its consumer lives.
fn take_consumer_alive(seg: &mut Segment) -> Result<()> {
    let h = seg.header();
    let obj = &seg.object;
    match h
        .consumer_alive
        .try_lock()
        .on(obj, "pthread_mutex_trylock(consumer alive)")?
    {
        Lock::Acquired => {
            seg.holds = Some(Holder::Consumer);
            Ok(())
        }
        Lock::OwnerDied => {
            h.consumer_alive.make_consistent();
            h.consumer_alive.unlock();
            Err(Error::peer(
                obj,
                "a previous consumer died attached to it",
                "start a new producer and consumer",
            )
            .because(Cause::Stale))
        }
        _ => Err(Error::new(
            Kind::Runtime,
            obj,
            "already has a consumer",
            "one consumer per producer; start another pair with --name",
        )),
    }
}

/// Consumer: tell the producer we are attached (after opening any helper objects).
pub fn mark_attached(seg: &Segment) -> Result<()> {
    seg.header()
        .state
        .compare_exchange(
            STATE_READY,
            STATE_ATTACHED,
            Ordering::AcqRel,
            Ordering::Acquire,
        )
        .map(drop)
        .map_err(|s| {
            Error::new(
                Kind::Runtime,
                &seg.object,
                format!("is in state {s}, not ready for a consumer"),
                "start a new producer",
            )
        })
}

/// One attempt to open the segment. `Ok(None)`: not there yet. The segment comes back
/// quiet: the caller narrates its opening ([`Segment::announce`]) once it is the one
/// used, so a consumer that looks again and again says so once.
fn try_open(spec: &Spec) -> Result<Option<Segment>> {
    let obj = spec.object();
    let file_like = |file: File, call: &str| -> Result<Option<Segment>> {
        check_owner(&file, spec)?;
        let len = file.metadata().on(&obj, "fstat")?.len() as usize;
        if len < HEADER_SIZE {
            return Ok(None); // created but not sized yet
        }
        let map = Mapping::map_shared(&file, len).on(&obj, "mmap")?;
        let mmap = format!(
            "mmap(NULL, {len}, PROT_READ|PROT_WRITE, MAP_SHARED, fd, 0) = {:#x}",
            map.addr()
        );
        let idea = if spec.api == Api::Mmap {
            IDEA_MMAP
        } else {
            IDEA_POSIX
        };
        let mut seg = Segment::new(map, spec, None).with_file(file);
        seg.opened = vec![(call.to_string(), idea), (mmap, idea)];
        seg.quiet = true;
        Ok(Some(seg))
    };
    match spec.api {
        Api::Posix => {
            let name = format!("/{}", spec.name);
            match nix::sys::mman::shm_open(name.as_str(), OFlag::O_RDWR, Mode::empty()) {
                Ok(fd) => file_like(File::from(fd), &format!("shm_open({name:?}, O_RDWR) = fd")),
                Err(Errno::ENOENT) => Ok(None),
                Err(e) => Err(Error::os(&obj, "shm_open(O_RDWR)", e.into())),
            }
        }
        Api::Mmap => {
            let path = spec.mmap_path();
            match open_existing_file(spec)? {
                Some(f) => file_like(
                    f,
                    &format!("open({path:?}, O_RDWR|O_NOFOLLOW|O_NONBLOCK) = fd"),
                ),
                None => Ok(None),
            }
        }
        Api::Sysv => open_sysv(spec),
    }
}

/// [`try_open`] for SysV: the key from the key file, the segment, checked to be ours.
fn open_sysv(spec: &Spec) -> Result<Option<Segment>> {
    let obj = spec.object();
    let kpath = key_path(&spec.name, None);
    if !kpath.exists() {
        return Ok(None);
    }
    let key = KeyFile::open(&kpath)?;
    let id = match sys::shmget(key.key, 0, 0) {
        Ok(id) => id,
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(None),
        Err(e) => return Err(Error::os(&obj, "shmget", e)),
    };
    let shmget = format!("shmget({:#010x}, 0, 0) = {id}", key.key);
    let st = stat_own_sysv(id, spec)?;
    if st.size < HEADER_SIZE {
        return Err(refuse(
            spec,
            format!("segment id {id} has only {} bytes", st.size),
        ));
    }
    let map = Mapping::attach_sysv(id).on(&obj, "shmat")?;
    let shmat = format!("shmat({id}, NULL, 0) = {:#x}", map.addr());
    let mut seg = Segment::new(map, spec, None);
    seg.opened = vec![(shmget, IDEA_SYSV), (shmat, IDEA_SYSV)];
    seg.quiet = true;
    Ok(Some(seg))
}

/// What one look under an API found (see [`probe`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Found {
    /// Nothing under that name.
    Absent,
    /// Something: not published, a dead producer's, or not ours (attaching says which).
    Present,
    /// A segment published by a producer that lives (its alive mutex is held).
    Live,
}

/// Look whether `spec` names a segment, and whether a live producer published it,
/// changing nothing: for a consumer that was not told the API. Looks repeat while the
/// consumer waits, so they are narrated as repeated calls.
pub fn probe(spec: &Spec) -> Found {
    let map = match spec.api {
        Api::Posix => {
            let name = format!("/{}", spec.name);
            let opened = nix::sys::mman::shm_open(name.as_str(), OFlag::O_RDWR, Mode::empty());
            narrate::repeated(
                "look",
                format_args!(
                    "shm_open({name:?}, O_RDWR) = {}",
                    if opened.is_ok() { "fd" } else { "-1" }
                ),
                LOOK,
            );
            match opened {
                Ok(fd) => probe_file(&File::from(fd), spec),
                Err(Errno::ENOENT) => return Found::Absent,
                Err(_) => None,
            }
        }
        Api::Mmap => match open_existing_file(spec) {
            Ok(None) => return Found::Absent,
            Ok(Some(f)) => {
                narrate::repeated(
                    "look",
                    format_args!(
                        "open({:?}, O_RDWR|O_NOFOLLOW|O_NONBLOCK) = fd",
                        spec.mmap_path()
                    ),
                    LOOK,
                );
                probe_file(&f, spec)
            }
            Err(_) => None,
        },
        Api::Sysv => match probe_sysv(spec) {
            Ok(None) => return Found::Absent,
            Ok(Some(map)) => Some(map),
            Err(()) => None,
        },
    };
    let Some(map) = map else {
        return Found::Present;
    };
    let (addr, len) = (map.addr(), map.len());
    if map.is_sysv() {
        narrate::repeated(
            "look",
            format_args!("shmat(id, NULL, 0) = {addr:#x} + shmdt({addr:#x}): a look at the header"),
            LOOK,
        );
    } else {
        narrate::repeated(
            "look",
            format_args!("mmap(NULL, {len}, PROT_READ|PROT_WRITE, MAP_SHARED, fd, 0) = {addr:#x} + munmap({addr:#x}, {len}) + close(fd): a look at the header"),
            LOOK,
        );
    }
    if map.len() >= HEADER_SIZE && published_by_live(&map) {
        Found::Live
    } else {
        Found::Present
    }
}

const LOOK: &str = "a consumer not told --api looks under every API";

fn probe_file(file: &File, spec: &Spec) -> Option<Mapping> {
    check_owner(file, spec).ok()?;
    let len = file.metadata().ok()?.len() as usize;
    (len >= HEADER_SIZE).then(|| Mapping::map_shared(file, len).ok())?
}

/// The SysV look: key file, key, segment of ours, attached. `Ok(None)`: no segment.
fn probe_sysv(spec: &Spec) -> std::result::Result<Option<Mapping>, ()> {
    let kpath = key_path(&spec.name, None);
    match std::fs::symlink_metadata(&kpath) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(_) => return Err(()),
        // Not a key file of ours: something is there, and attaching says what.
        Ok(m)
            if !m.is_file()
                || m.uid() != nix::unistd::geteuid().as_raw()
                || m.mode() & 0o077 != 0 =>
        {
            return Err(())
        }
        Ok(_) => {}
    }
    let key = ipc_sys::ftok(&kpath, crate::sysv::PROJECT_ID).map_err(drop)?;
    let id = match sys::shmget(key, 0, 0) {
        Ok(id) => id,
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(None),
        Err(_) => return Err(()),
    };
    narrate::repeated(
        "look",
        format_args!("ftok({kpath:?}, 'I') = {key:#010x}; shmget({key:#010x}, 0, 0) = {id}"),
        LOOK,
    );
    let st = stat_sysv(id, "SysV segment").map_err(drop)?;
    if st.uid != nix::unistd::geteuid().as_raw() || st.mode & 0o077 != 0 || st.size < HEADER_SIZE {
        return Err(());
    }
    Mapping::attach_sysv(id).map(Some).map_err(drop)
}

/// Is this mapping a published segment of this program whose producer lives?
fn published_by_live(map: &Mapping) -> bool {
    let h = map.header();
    h.state.load(Ordering::Acquire) != STATE_INIT
        && layout::check(h, map.len() as u64).is_ok()
        && ring::peer_alive(&h.producer_alive)
}

/// `shmctl(IPC_STAT)`: who owns a SysV segment, its mode, size and attach count (the
/// checks before trusting or replacing one), narrated.
/// [`stat_sysv`], refusing a segment of another user or one that others may touch.
fn stat_own_sysv(id: i32, spec: &Spec) -> Result<sys::ShmStat> {
    let st = stat_sysv(id, &spec.object())?;
    if st.uid != nix::unistd::geteuid().as_raw() || st.mode & 0o077 != 0 {
        return Err(refuse(
            spec,
            format!(
                "segment id {id} belongs to uid {} with mode {:03o}",
                st.uid,
                st.mode & 0o777
            ),
        ));
    }
    Ok(st)
}

fn stat_sysv(id: i32, obj: &str) -> Result<sys::ShmStat> {
    let st = sys::shm_stat(id).on(&obj, "shmctl(IPC_STAT)")?;
    narrate::repeated(
        "shmctl-stat",
        format_args!(
            "shmctl({id}, IPC_STAT) = 0: uid {}, mode {:03o}, {} bytes, {} attached",
            st.uid, st.mode, st.size, st.attached
        ),
        "SysV shm: the kernel keeps each segment's owner, mode and attach count (ipcs -m shows them)",
    );
    Ok(st)
}
