//! What is there: every object of every pair of this project on this machine, from the
//! records and from scans of /dev/shm, /dev/mqueue, /proc/sysvipc and the temporary
//! directory; who holds each one (/proc/*/fd, /proc/*/maps); and its state.

use crate::state::{self, State};
use ipc_common::record::{self, Kind, Object, Probe, Record};
use nix::fcntl::Flock;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// The prefix every pair name of this project starts with.
pub const PREFIX: &str = ipc_common::args::NAME_PREFIX;
/// The ftok project id: SysV keys this project makes have it as their top byte.
const KEY_TOP: u32 = ipc_common::sysv::PROJECT_ID as u32;

/// A process tied to an object.
#[derive(Serialize, Clone, Debug)]
pub struct Proc {
    pub pid: u32,
    pub program: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub side: String,
    pub alive: bool,
    /// Where it sleeps in the kernel (/proc/PID/wchan), when alive.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wchan: Option<String>,
}

/// One object.
#[derive(Serialize, Debug)]
pub struct Item {
    pub kind: Kind,
    /// The POSIX name, the path, the TCP address, or `key 0x...`.
    pub name: String,
    /// The pair it belongs to (its --name), when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pair: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub age_secs: Option<u64>,
    /// Whether the object is still there (a record may list one removed meanwhile).
    pub exists: bool,
    /// Whether any creator or holder is alive.
    pub alive: bool,
    pub creators: Vec<Proc>,
    pub holders: Vec<Proc>,
    /// Not in any record: found by a scan, by its name or its key's project id.
    pub recorded: bool,
    /// Its name is removed already; it lives while processes map it.
    pub unlinked: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<State>,
    /// For `clean`: which record listed it (index into `Inventory::records`).
    #[serde(skip)]
    pub record: Option<usize>,
    /// For `clean`: the record's entry.
    #[serde(skip)]
    pub object: Option<Object>,
}

/// A record file and what its lock said.
pub struct RecordFile {
    pub path: PathBuf,
    pub record: Record,
    pub alive: bool,
    /// Held while we work on a dead record.
    pub _lock: Option<Flock<File>>,
}

pub struct Inventory {
    pub items: Vec<Item>,
    pub records: Vec<RecordFile>,
    /// Places that could not be looked at: the listing is incomplete.
    pub problems: Vec<String>,
    /// Notes for the reader (e.g. /dev/mqueue not mounted).
    pub notes: Vec<String>,
    pub holders: Holders,
    pub sysv: Sysv,
}

/// SysV tables from /proc/sysvipc, one map of column name to value per row.
#[derive(Default)]
pub struct Sysv {
    pub shm: Vec<BTreeMap<String, i64>>,
    pub msg: Vec<BTreeMap<String, i64>>,
    pub sem: Vec<BTreeMap<String, i64>>,
}

impl Sysv {
    pub fn table(&self, kind: Kind) -> &[BTreeMap<String, i64>] {
        match kind {
            Kind::SysvShm => &self.shm,
            Kind::SysvMsg => &self.msg,
            _ => &self.sem,
        }
    }

    /// The row of `kind` with this id, if it still exists.
    pub fn row(&self, kind: Kind, id: i32) -> Option<&BTreeMap<String, i64>> {
        let col = match kind {
            Kind::SysvShm => "shmid",
            Kind::SysvMsg => "msqid",
            _ => "semid",
        };
        self.table(kind)
            .iter()
            .find(|r| r.get(col) == Some(&i64::from(id)))
    }
}

fn read_sysv(file: &str) -> std::io::Result<Vec<BTreeMap<String, i64>>> {
    let text = std::fs::read_to_string(file)?;
    let mut lines = text.lines();
    let head: Vec<String> = lines
        .next()
        .unwrap_or("")
        .split_whitespace()
        .map(str::to_string)
        .collect();
    Ok(lines
        .map(|l| {
            head.iter()
                .cloned()
                .zip(l.split_whitespace().map(|v| v.parse().unwrap_or(-1)))
                .collect()
        })
        .collect())
}

/// What live processes hold: open descriptors, mappings, bound sockets.
#[derive(Default)]
pub struct Holders {
    /// Path (or `/NAME` of a POSIX queue) -> pids.
    pub paths: BTreeMap<String, BTreeSet<u32>>,
    /// SysV segment id -> pids that have it attached.
    pub sysv_shm: BTreeMap<i32, BTreeSet<u32>>,
    pub comm: BTreeMap<u32, String>,
    /// Mapped paths -> (pid, address range) of a mapping at offset 0, to read a segment
    /// whose name is already gone through /proc/PID/map_files.
    pub ranges: BTreeMap<String, (u32, String)>,
    /// The --name on each process's command line.
    pub names: BTreeMap<u32, String>,
    /// Held paths whose names are gone (unlinked while in use).
    pub deleted: BTreeSet<String>,
}

impl Holders {
    pub fn scan() -> Holders {
        let mut h = Holders::default();
        let me = std::process::id();
        // Unix socket inodes -> the path they are bound to.
        let mut sockets = BTreeMap::new();
        if let Ok(t) = std::fs::read_to_string("/proc/net/unix") {
            for l in t.lines().skip(1) {
                let f: Vec<&str> = l.split_whitespace().collect();
                if f.len() >= 8 {
                    sockets.insert(format!("socket:[{}]", f[6]), f[7].to_string());
                }
            }
        }
        let Ok(procs) = std::fs::read_dir("/proc") else {
            return h;
        };
        for p in procs.flatten() {
            let Some(pid) = p.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            if pid == me {
                continue;
            }
            let add = |h: &mut Holders, target: String| {
                h.paths.entry(target).or_default().insert(pid);
            };
            // Another user's processes are not readable: they hold nothing of ours
            // that we could remove anyway.
            if let Ok(fds) = std::fs::read_dir(p.path().join("fd")) {
                for fd in fds.flatten() {
                    if let Ok(t) = std::fs::read_link(fd.path()) {
                        let t = t.to_string_lossy().into_owned();
                        let t = sockets.get(&t).cloned().unwrap_or(t);
                        if t.ends_with(" (deleted)") {
                            h.deleted.insert(strip_deleted(&t).to_string());
                        }
                        add(&mut h, strip_deleted(&t).to_string());
                    }
                }
            }
            if let Ok(maps) = std::fs::read_to_string(p.path().join("maps")) {
                for l in maps.lines() {
                    let f: Vec<&str> = l.splitn(6, char::is_whitespace).collect();
                    let Some(path) = f.get(5).map(|s| s.trim()) else {
                        continue;
                    };
                    if path.starts_with("/SYSV") {
                        // The inode of a SysV mapping is the segment id.
                        if let Some(id) = f.get(4).and_then(|i| i.parse::<i32>().ok()) {
                            h.sysv_shm.entry(id).or_default().insert(pid);
                        }
                    } else if path.starts_with('/') {
                        let clean = strip_deleted(path).to_string();
                        if path.ends_with(" (deleted)") {
                            h.deleted.insert(clean.clone());
                        }
                        if f.get(2) == Some(&"00000000") {
                            h.ranges
                                .entry(clean.clone())
                                .or_insert((pid, f[0].to_string()));
                        }
                        add(&mut h, clean);
                    }
                }
            }
            if let Ok(c) = std::fs::read(p.path().join("cmdline")) {
                let args: Vec<String> = c
                    .split(|&b| b == 0)
                    .map(|a| String::from_utf8_lossy(a).into_owned())
                    .collect();
                let name = args.iter().enumerate().find_map(|(i, a)| {
                    a.strip_prefix("--name=")
                        .map(str::to_string)
                        .or_else(|| (a == "--name").then(|| args.get(i + 1).cloned()).flatten())
                });
                if let Some(n) = name {
                    h.names.insert(pid, n);
                }
            }
            if let Ok(c) = std::fs::read_to_string(p.path().join("comm")) {
                h.comm.insert(pid, c.trim().to_string());
            }
        }
        h
    }

    fn procs(&self, pids: Option<&BTreeSet<u32>>) -> Vec<Proc> {
        pids.into_iter()
            .flatten()
            .map(|&pid| Proc {
                pid,
                program: self.comm.get(&pid).cloned().unwrap_or_default(),
                side: String::new(),
                alive: true,
                wchan: wchan(pid),
            })
            .collect()
    }
}

fn strip_deleted(p: &str) -> &str {
    p.strip_suffix(" (deleted)").unwrap_or(p)
}

pub fn wchan(pid: u32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/wchan"))
        .ok()
        .filter(|w| !w.is_empty() && w != "0")
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn age(t: i64) -> Option<u64> {
    u64::try_from(t).ok().map(|t| now().saturating_sub(t))
}

/// The pair a name belongs to: `/ipc-x.pool.1`, `/tmp/ipc-x.sem.key` -> `ipc-x`.
pub fn pair_of(name: &str) -> Option<String> {
    let base = name.rsplit('/').next().unwrap_or(name);
    if !base.starts_with(PREFIX) {
        return None;
    }
    base.split('.').next().map(str::to_string)
}

/// The base name of an object, for prefix matching: `/dev/shm/ipc-x` -> `ipc-x`.
pub fn base_name(name: &str) -> &str {
    name.rsplit('/').next().unwrap_or(name)
}

/// This project's programs (their /proc/PID/comm).
const PROGRAMS: [&str; 5] = [
    "shm-producer",
    "shm-consumer",
    "mq-pair",
    "pipe-pair",
    "socket-pair",
];

/// Where POSIX shared memory objects live.
const SHM_DIR: &str = "/dev/shm";
const MQ_DIR: &str = "/dev/mqueue";

pub fn mqueue_mounted() -> bool {
    std::fs::read_to_string("/proc/self/mounts").is_ok_and(|m| mqueue_in(&m))
}

/// Does this mount table (`/proc/self/mounts`) mount an mqueue file system on /dev/mqueue?
fn mqueue_in(mounts: &str) -> bool {
    mounts
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        // The file system's type, not its source: `mount -t mqueue none ...` is usual.
        .any(|f| f.get(1) == Some(&MQ_DIR) && f.get(2) == Some(&"mqueue"))
}

/// Take the inventory. `lock_dead`: keep the locks of dead records (for `clean`).
pub fn take(lock_dead: bool, with_state: bool) -> Inventory {
    let mut inv = Inventory {
        items: Vec::new(),
        records: Vec::new(),
        problems: Vec::new(),
        notes: Vec::new(),
        holders: Holders::scan(),
        sysv: Sysv::default(),
    };
    // Records.
    match record::check_dir(false) {
        Ok(None) => {}
        Ok(Some(dir)) => match record::list(&dir) {
            Ok(paths) => {
                for path in paths {
                    match record::probe(&path) {
                        Ok(Probe::Alive(r)) => inv.records.push(RecordFile {
                            path,
                            record: r,
                            alive: true,
                            _lock: None,
                        }),
                        Ok(Probe::Dead(r, lock)) => inv.records.push(RecordFile {
                            path,
                            record: r,
                            alive: false,
                            _lock: lock_dead.then_some(lock),
                        }),
                        Ok(Probe::Gone) => {}
                        Err(e) => inv
                            .problems
                            .push(format!("record {}: cannot read it: {e}", path.display())),
                    }
                }
            }
            Err(e) => inv
                .problems
                .push(format!("record directory {}: {e}", dir.display())),
        },
        Err(e) => inv.problems.push(e.to_string()),
    }

    // SysV tables.
    for (file, slot) in [
        ("/proc/sysvipc/shm", &mut inv.sysv.shm),
        ("/proc/sysvipc/msg", &mut inv.sysv.msg),
        ("/proc/sysvipc/sem", &mut inv.sysv.sem),
    ] {
        match read_sysv(file) {
            Ok(rows) => *slot = rows,
            Err(e) => inv.problems.push(format!("{file}: cannot read it: {e}")),
        }
    }

    // Objects from the records first: they carry their creators.
    for (ri, rf) in inv.records.iter().enumerate() {
        let r = &rf.record;
        let creator = Proc {
            pid: r.pid,
            program: r.program.clone(),
            side: r.side.clone(),
            alive: rf.alive,
            wchan: if rf.alive { wchan(r.pid) } else { None },
        };
        for o in &r.objects {
            let pair = r.name.clone().or_else(|| pair_of(&o.name));
            let mut it = blank(o.kind, &o.name, pair);
            it.key = o.key.map(|k| format!("{:#010x}", k as u32));
            it.id = o.id;
            it.age_secs = Some(now().saturating_sub(o.created));
            it.creators.push(creator.clone());
            it.recorded = true;
            it.record = Some(ri);
            it.object = Some(o.clone());
            inv.items.push(it);
        }
    }

    // SysV objects the records name are matched by key and id; others are listed only
    // if their key carries this project's ftok id.
    for kind in [Kind::SysvShm, Kind::SysvMsg, Kind::SysvSem] {
        let idcol = match kind {
            Kind::SysvShm => "shmid",
            Kind::SysvMsg => "msqid",
            _ => "semid",
        };
        for row in inv.sysv.table(kind) {
            let (Some(&key), Some(&id)) = (row.get("key"), row.get(idcol)) else {
                continue;
            };
            let (key, id) = (key as i32, id as i32);
            let known = inv.items.iter().any(|i| {
                i.kind == kind
                    && i.id == Some(id)
                    && i.object.as_ref().and_then(|o| o.key) == Some(key)
            });
            if known || (key as u32) >> 24 != KEY_TOP {
                continue;
            }
            let mut it = blank(kind, &format!("key {:#010x}", key as u32), None);
            it.key = Some(format!("{:#010x}", key as u32));
            it.id = Some(id);
            inv.items.push(it);
        }
    }

    // POSIX segments and queues, and files in the temporary directory, by name.
    let tmp = std::env::temp_dir();
    let record_dir = record::dir();
    let scan = |dir: &Path, inv: &mut Inventory| -> Option<()> {
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) => {
                inv.problems
                    .push(format!("{}: cannot list it: {e}", dir.display()));
                return None;
            }
        };
        for e in entries.flatten() {
            let fname = e.file_name().to_string_lossy().into_owned();
            let path = e.path();
            if !fname.starts_with(PREFIX) || path == record_dir {
                continue;
            }
            let Ok(meta) = e.metadata() else { continue };
            let ft = meta.file_type();
            let (kind, name) = if dir == Path::new(SHM_DIR) {
                (Kind::PosixShm, format!("/{fname}"))
            } else if dir == Path::new(MQ_DIR) {
                (Kind::PosixMq, format!("/{fname}"))
            } else if ft.is_fifo() {
                (Kind::Fifo, path.display().to_string())
            } else if ft.is_socket() {
                (Kind::UnixSocket, path.display().to_string())
            } else if ft.is_file() && fname.ends_with(".key") {
                (Kind::KeyFile, path.display().to_string())
            } else if ft.is_file() && fname.ends_with(".mmap") {
                (Kind::MappedFile, path.display().to_string())
            } else {
                continue;
            };
            if inv.items.iter().any(|i| i.kind == kind && i.name == name) {
                continue;
            }
            let mut it = blank(kind, &name, pair_of(&name));
            it.age_secs = Some(now().saturating_sub(meta.mtime().max(0) as u64));
            inv.items.push(it);
        }
        Some(())
    };
    scan(Path::new(SHM_DIR), &mut inv);
    if mqueue_mounted() {
        scan(Path::new(MQ_DIR), &mut inv);
    } else {
        inv.notes.push(format!(
            "/dev/mqueue is not mounted: POSIX queues are found through the records only (to see them with ls: mkdir -p {MQ_DIR} && mount -t mqueue none {MQ_DIR})"
        ));
    }
    scan(&tmp, &mut inv);

    // Objects whose names are gone but which live processes still use (a pair removes
    // its names once both sides have attached): found through what the processes hold.
    let shm_prefix = format!("{SHM_DIR}/{PREFIX}");
    let tmp_prefix = tmp.join(PREFIX).display().to_string();
    let held: Vec<String> = inv.holders.deleted.iter().cloned().collect();
    for path in held {
        let (kind, name) = if let Some(n) = path.strip_prefix(SHM_DIR) {
            if !path.starts_with(&shm_prefix) {
                continue;
            }
            (Kind::PosixShm, n.to_string())
        } else if path.starts_with(&tmp_prefix) && path.ends_with(".mmap") {
            (Kind::MappedFile, path.clone())
        } else {
            continue;
        };
        if inv.items.iter().any(|i| i.kind == kind && i.name == name) {
            continue;
        }
        let mut it = blank(kind, &name, pair_of(&name));
        it.unlinked = true;
        inv.items.push(it);
    }
    let sysv_held: Vec<(i32, BTreeSet<u32>)> = inv
        .holders
        .sysv_shm
        .iter()
        .map(|(k, v)| (*k, v.clone()))
        .collect();
    for (id, pids) in sysv_held {
        if inv
            .items
            .iter()
            .any(|i| i.kind == Kind::SysvShm && i.id == Some(id))
        {
            continue;
        }
        // A removed segment (key 0) is this project's if one of its programs maps it.
        let ours = pids.iter().any(|p| {
            inv.holders
                .comm
                .get(p)
                .is_some_and(|c| PROGRAMS.contains(&c.as_str()))
        });
        let Some(row) = inv.sysv.row(Kind::SysvShm, id) else {
            continue;
        };
        if !ours || row.get("key") != Some(&0) {
            continue;
        }
        let mut it = blank(Kind::SysvShm, &format!("id {id} (key removed)"), None);
        it.id = Some(id);
        it.unlinked = true;
        inv.items.push(it);
    }

    // Existence, size, owner, holders, state.
    let listening = tcp_listening();
    for it in &mut inv.items {
        fill(it, &inv.holders, &inv.sysv, &listening, with_state);
        it.alive = it.creators.iter().any(|c| c.alive) || !it.holders.is_empty();
        if it.pair.is_none() {
            it.pair = it
                .holders
                .iter()
                .find_map(|h| inv.holders.names.get(&h.pid).cloned());
        }
    }
    inv
}

fn blank(kind: Kind, name: &str, pair: Option<String>) -> Item {
    Item {
        kind,
        name: name.to_string(),
        pair,
        key: None,
        id: None,
        size: None,
        uid: None,
        age_secs: None,
        exists: false,
        alive: false,
        creators: Vec::new(),
        holders: Vec::new(),
        recorded: false,
        unlinked: false,
        state: None,
        record: None,
        object: None,
    }
}

/// The local TCP ports in LISTEN state.
fn tcp_listening() -> BTreeSet<u16> {
    let mut ports = BTreeSet::new();
    for f in ["/proc/net/tcp", "/proc/net/tcp6"] {
        if let Ok(t) = std::fs::read_to_string(f) {
            for l in t.lines().skip(1) {
                let c: Vec<&str> = l.split_whitespace().collect();
                if c.len() > 3 && c[3] == "0A" {
                    if let Some(p) = c[1].rsplit(':').next() {
                        if let Ok(p) = u16::from_str_radix(p, 16) {
                            ports.insert(p);
                        }
                    }
                }
            }
        }
    }
    ports
}

/// The path of a POSIX shared-memory object's name.
pub fn shm_path(name: &str) -> PathBuf {
    Path::new(SHM_DIR).join(name.trim_start_matches('/'))
}

fn fill(
    it: &mut Item,
    holders: &Holders,
    sysv: &Sysv,
    listening: &BTreeSet<u16>,
    with_state: bool,
) {
    match it.kind {
        Kind::PosixShm => {
            let p = shm_path(&it.name);
            let key = p.display().to_string();
            let p = if it.unlinked {
                mapped(holders, &key)
            } else {
                p
            };
            if let Ok(m) = std::fs::metadata(&p) {
                it.exists = true;
                it.size = Some(m.len());
                it.uid = Some(m.uid());
            }
            it.holders = holders.procs(holders.paths.get(&key));
            if it.exists && with_state && !it.name.contains(".pool.") {
                it.state = Some(state::shm_file(&p));
            }
        }
        Kind::Fifo | Kind::UnixSocket | Kind::KeyFile | Kind::MappedFile => {
            let p = if it.unlinked {
                mapped(holders, &it.name)
            } else {
                PathBuf::from(&it.name)
            };
            if let Ok(m) = std::fs::metadata(&p) {
                it.exists = true;
                it.size = Some(m.len());
                it.uid = Some(m.uid());
            }
            it.holders = holders.procs(holders.paths.get(&it.name));
            if it.exists && with_state && it.kind == Kind::MappedFile {
                it.state = Some(state::shm_file(&p));
            }
        }
        Kind::PosixMq => {
            it.holders = holders.procs(holders.paths.get(&it.name));
            match state::mq(&it.name) {
                Some((st, uid)) => {
                    it.exists = true;
                    it.uid = Some(uid);
                    if with_state {
                        it.state = Some(st);
                    }
                }
                None => it.exists = false,
            }
        }
        Kind::SysvShm | Kind::SysvMsg | Kind::SysvSem => {
            let Some(id) = it.id else { return };
            let Some(row) = sysv.row(it.kind, id) else {
                return;
            };
            // The id is reused only after the key changes: check the key as well.
            if let Some(o) = &it.object {
                if o.key.map(i64::from) != row.get("key").copied() {
                    return;
                }
            }
            it.exists = true;
            it.uid = row.get("uid").map(|&u| u as u32);
            if !it.recorded {
                it.age_secs = row.get("ctime").and_then(|&t| age(t));
            }
            match it.kind {
                Kind::SysvShm => {
                    it.size = row.get("size").map(|&s| s as u64);
                    it.holders = holders.procs(holders.sysv_shm.get(&id));
                    if with_state {
                        it.state = Some(state::sysv_shm(id, row));
                    }
                }
                Kind::SysvMsg => {
                    it.size = row.get("cbytes").map(|&s| s as u64);
                    if with_state {
                        it.state = Some(state::sysv_msg(row));
                    }
                }
                _ => {
                    if with_state {
                        it.state = Some(State::Sem {
                            nsems: row.get("nsems").copied().unwrap_or(0),
                        });
                    }
                }
            }
        }
        Kind::TcpListener => {
            let port = it
                .name
                .parse::<std::net::SocketAddr>()
                .map(|a| a.port())
                .ok();
            it.exists =
                port.is_some_and(|p| listening.contains(&p)) && it.creators.iter().any(|c| c.alive);
        }
    }
}

/// Where to open a file whose name is gone: a holder's mapping of it.
fn mapped(holders: &Holders, path: &str) -> PathBuf {
    match holders.ranges.get(path) {
        Some((pid, range)) => PathBuf::from(format!("/proc/{pid}/map_files/{range}")),
        None => PathBuf::from(path),
    }
}

/// Whether `it` belongs to pair or prefix `p`: its base name or its pair starts with it.
pub fn matches_prefix(it: &Item, p: &str) -> bool {
    base_name(&it.name).starts_with(p) || it.pair.as_deref().is_some_and(|n| n.starts_with(p))
}

/// A short human description of an object.
pub fn describe(it: &Item) -> String {
    let mut s = format!("{} {}", it.kind.as_str(), it.name);
    if let (Some(k), Some(id)) = (&it.key, it.id) {
        if !it.name.contains(k.as_str()) {
            s.push_str(&format!(" (key {k})"));
        }
        s.push_str(&format!(" id {id}"));
    }
    s
}

#[cfg(test)]
mod mount_tests {
    #[test]
    fn the_type_decides_whatever_the_source() {
        let mounted = |t: &str| super::mqueue_in(t);
        assert!(mounted("none /dev/mqueue mqueue rw,relatime 0 0\n"));
        assert!(mounted("mqueue /dev/mqueue mqueue rw 0 0\n"));
        assert!(!mounted("mqueue /dev/shm tmpfs rw 0 0\n"));
        assert!(!mounted("tmpfs /dev/mqueue tmpfs rw 0 0\n"));
    }
}
