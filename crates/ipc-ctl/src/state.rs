//! An object's state, read without disturbing the pair: a segment's header through a
//! read-only view (never written; every value bounds-checked, since the segment is as
//! untrusted as any peer), a POSIX queue's depth with `mq_getattr` (never receiving), a
//! SysV queue's from /proc/sysvipc/msg.

use ipc_common::shm::layout::{
    self, Header, ReaderLine, RingCtl, WriterLine, HEADER_SIZE, MAGIC, MAX_POOL, VERSION,
};
use ipc_sys::peek::ReadOnly;
use serde::Serialize;
use std::collections::BTreeMap;
use std::mem::{offset_of, size_of};
use std::path::Path;

#[derive(Serialize, Clone, Debug)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum State {
    /// A segment of this project: its header.
    Segment(Segment),
    /// Could not be read, or is not one of this project's segments.
    Unreadable {
        why: String,
    },
    Queue {
        /// Messages waiting.
        depth: i64,
        #[serde(skip_serializing_if = "Option::is_none")]
        capacity: Option<i64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        msg_size: Option<i64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        bytes: Option<i64>,
        /// SysV: the last sender and receiver.
        #[serde(skip_serializing_if = "Option::is_none")]
        last_sender: Option<i64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        last_receiver: Option<i64>,
    },
    Sem {
        nsems: i64,
    },
}

#[derive(Serialize, Clone, Debug)]
pub struct Segment {
    pub api: String,
    pub sync: String,
    /// init, ready or attached.
    pub phase: String,
    pub creator_pid: u32,
    pub capacity: u64,
    pub zero_copy: bool,
    /// Pool mode: the number of pool segments.
    pub pool: u32,
    pub rings: Vec<Ring>,
    /// SysV: processes attached.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attached: Option<i64>,
}

#[derive(Serialize, Clone, Debug)]
pub struct Ring {
    /// Bytes ever written and read.
    pub head: u64,
    pub tail: u64,
    /// Bytes in the ring now (head - tail), or None if the counters make no sense.
    pub fill: Option<u64>,
    /// The writer sleeps for space / the reader sleeps for data.
    pub writer_waiting: bool,
    pub reader_waiting: bool,
    /// `--sync spin`: futex words bumped at each wake-up.
    pub data_wakes: u32,
    pub space_wakes: u32,
}

/// Offsets of the header fields, from the layout's own types.
fn ring_off(i: usize) -> usize {
    offset_of!(Header, ring) + i * size_of::<RingCtl>()
}
// The control lines are CachePadded: their single field sits at offset 0.
fn writer_off(i: usize) -> usize {
    ring_off(i) + offset_of!(RingCtl, writer)
}
fn reader_off(i: usize) -> usize {
    ring_off(i) + offset_of!(RingCtl, reader)
}

/// Read the header through `v` (each field once) and check it.
pub fn header(v: &ReadOnly) -> Result<Segment, String> {
    let bad = || "the segment is shorter than a header".to_string();
    let u32_at = |o: usize| v.load_u32(o).ok_or_else(bad);
    let u64_at = |o: usize| v.load_u64(o).ok_or_else(bad);
    let magic = u64_at(offset_of!(Header, magic))?;
    if magic != MAGIC {
        return Err(format!("magic {magic:#018x}: no header of this project"));
    }
    let version = u32_at(offset_of!(Header, version))?;
    if version != VERSION {
        return Err(format!(
            "layout version {version}, this ipc-ctl reads {VERSION}"
        ));
    }
    let rings = u32_at(offset_of!(Header, rings))?;
    if !(1..=2).contains(&rings) {
        return Err(format!("{rings} rings: corrupt header"));
    }
    let capacity = u64_at(offset_of!(Header, ring_capacity))?;
    let api = u32_at(offset_of!(Header, api))?;
    let sync = u32_at(offset_of!(Header, sync))?;
    let state = u32_at(offset_of!(Header, state))?;
    let flags = u32_at(offset_of!(Header, flags))?;
    let pool = u32_at(offset_of!(Header, pool_segments))?;
    let mut out = Vec::new();
    for i in 0..rings as usize {
        let head = u64_at(writer_off(i) + offset_of!(WriterLine, head))?;
        let tail = u64_at(reader_off(i) + offset_of!(ReaderLine, tail))?;
        out.push(Ring {
            head,
            tail,
            fill: head.checked_sub(tail).filter(|&f| f <= capacity),
            writer_waiting: u32_at(writer_off(i) + offset_of!(WriterLine, space_waiting))? != 0,
            reader_waiting: u32_at(reader_off(i) + offset_of!(ReaderLine, data_waiting))? != 0,
            data_wakes: u32_at(writer_off(i) + offset_of!(WriterLine, data_signal))?,
            space_wakes: u32_at(reader_off(i) + offset_of!(ReaderLine, space_signal))?,
        });
    }
    Ok(Segment {
        api: layout::Api::from_code(api)
            .map_or_else(|| format!("unknown {api}"), |a| a.as_str().into()),
        sync: layout::SyncKind::from_code(sync)
            .map_or_else(|| format!("unknown {sync}"), |s| s.as_str().into()),
        phase: match state {
            layout::STATE_INIT => "init",
            layout::STATE_READY => "ready",
            layout::STATE_ATTACHED => "attached",
            _ => "corrupt",
        }
        .into(),
        creator_pid: u32_at(offset_of!(Header, creator_pid))?,
        capacity,
        zero_copy: flags & layout::FLAG_ZERO_COPY != 0,
        pool: pool.min(MAX_POOL + 1),
        rings: out,
        attached: None,
    })
}

fn unreadable(why: impl std::fmt::Display) -> State {
    State::Unreadable {
        why: why.to_string(),
    }
}

/// A POSIX segment or mapped file at `path`.
pub fn shm_file(path: &Path) -> State {
    use std::os::unix::fs::OpenOptionsExt;
    let file = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(flags(path))
        .open(path)
    {
        Ok(f) => f,
        Err(e) => return unreadable(format!("open(O_RDONLY): {e}")),
    };
    match file.metadata() {
        Ok(m) if m.is_file() && m.len() >= HEADER_SIZE as u64 => {}
        Ok(_) => return unreadable("smaller than a header, or not a regular file"),
        Err(e) => return unreadable(format!("fstat: {e}")),
    }
    // Only the header page is mapped: nothing else is read.
    match ReadOnly::map_file(&file, HEADER_SIZE) {
        Ok(v) => header(&v).map_or_else(unreadable, State::Segment),
        Err(e) => unreadable(format!("mmap(PROT_READ): {e}")),
    }
}

fn flags(path: &Path) -> i32 {
    use nix::fcntl::OFlag;
    // /proc/PID/map_files entries are links by design (to a segment whose name is gone);
    // anything else must not be a symlink planted at the name.
    if path.starts_with("/proc/") {
        OFlag::O_NONBLOCK.bits()
    } else {
        (OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK).bits()
    }
}

/// A SysV segment, attached read-only.
pub fn sysv_shm(id: i32, row: &BTreeMap<String, i64>) -> State {
    if row.get("size").is_some_and(|&s| s < HEADER_SIZE as i64) {
        return unreadable("smaller than a header");
    }
    match ReadOnly::attach_sysv(id) {
        Ok(v) => match header(&v) {
            Ok(mut s) => {
                // Less the attachment of our own look.
                s.attached = row.get("nattch").copied();
                State::Segment(s)
            }
            Err(e) => unreadable(e),
        },
        Err(e) => unreadable(format!("shmat(SHM_RDONLY): {e}")),
    }
}

pub fn sysv_msg(row: &BTreeMap<String, i64>) -> State {
    State::Queue {
        depth: row.get("qnum").copied().unwrap_or(0),
        capacity: None,
        msg_size: None,
        bytes: row.get("cbytes").copied(),
        last_sender: row.get("lspid").copied().filter(|&p| p > 0),
        last_receiver: row.get("lrpid").copied().filter(|&p| p > 0),
    }
}

/// A POSIX queue's depth and owner: opened O_RDONLY|O_NONBLOCK (never received from).
/// None: it does not exist.
pub fn mq(name: &str) -> Option<(State, u32)> {
    use nix::mqueue::{mq_close, mq_getattr, mq_open, MQ_OFlag};
    use std::os::fd::{AsFd, AsRawFd};
    let q = match mq_open(
        name,
        MQ_OFlag::O_RDONLY | MQ_OFlag::O_NONBLOCK,
        nix::sys::stat::Mode::empty(),
        None,
    ) {
        Ok(q) => q,
        Err(nix::errno::Errno::ENOENT) => return None,
        Err(e) => return Some((unreadable(format!("mq_open(O_RDONLY): {e}")), u32::MAX)),
    };
    let uid = nix::sys::stat::fstat(q.as_fd().as_raw_fd())
        .map(|s| s.st_uid)
        .unwrap_or(u32::MAX);
    let st = match mq_getattr(&q) {
        Ok(a) => State::Queue {
            depth: a.curmsgs(),
            capacity: Some(a.maxmsg()),
            msg_size: Some(a.msgsize()),
            bytes: None,
            last_sender: None,
            last_receiver: None,
        },
        Err(e) => unreadable(format!("mq_getattr: {e}")),
    };
    let _ = mq_close(q);
    Some((st, uid))
}

/// One line: the state as a person reads it.
pub fn summary(s: &State) -> String {
    match s {
        State::Segment(seg) => {
            let mut parts = vec![format!("{} {} {}", seg.api, seg.sync, seg.phase)];
            for (i, r) in seg.rings.iter().enumerate() {
                let fill = match r.fill {
                    Some(f) if seg.capacity > 0 => {
                        format!("{f}/{} B ({}%)", seg.capacity, f * 100 / seg.capacity)
                    }
                    _ => "counters corrupt".into(),
                };
                let mut w = String::new();
                if r.writer_waiting {
                    w.push_str(", writer asleep (ring full)");
                }
                if r.reader_waiting {
                    w.push_str(", reader asleep (ring empty)");
                }
                parts.push(format!("ring {i}: {fill}, {} B moved{w}", r.tail));
            }
            if seg.pool > 0 {
                parts.push(format!("pool of {}", seg.pool));
            }
            parts.join("; ")
        }
        State::Unreadable { why } => format!("unreadable: {why}"),
        State::Queue {
            depth, capacity, ..
        } => match capacity {
            Some(c) => format!("{depth}/{c} messages waiting"),
            None => format!("{depth} messages waiting"),
        },
        State::Sem { nsems } => format!("{nsems} semaphores"),
    }
}
