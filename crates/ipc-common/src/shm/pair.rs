//! The two sides of the shared-memory pair: what `shm-producer` and `shm-consumer` run.

use super::layout::{Api, Checked, SyncKind, HEADER_SIZE, MIN_RING};
use super::pool::{attach_pool, create_pool, Pool, PoolLink};
use super::ring::{ShmLink, Side, SyncQueues};
use super::{attach, await_consumer, create, mark_attached, publish, Spec};
use crate::args::{parse_size, CommonArgs, Mode, DEFAULT_SIZE};
use crate::error::{Error, Kind, Result};
use crate::frame::HEADER_LEN;
use crate::report::Report;
use crate::workload::{self, Describe};
use std::path::PathBuf;

pub const DEFAULT_NAME: &str = "ipc-shm";
pub const DEFAULT_SEGMENT_SIZE: usize = 1 << 20;

/// The shared-memory flags both binaries take.
#[derive(clap::Args, Clone, Debug)]
pub struct ShmArgs {
    /// How the segment is made [default: posix]
    #[arg(long, value_enum)]
    pub api: Option<Api>,

    /// --api mmap: the file to map [default: /tmp/NAME.mmap]
    #[arg(long, value_name = "PATH")]
    pub file: Option<PathBuf>,

    /// How the sides wait for each other; the consumer learns it from the segment [default: mutex]
    #[arg(long, value_enum)]
    pub sync: Option<SyncKind>,

    /// The whole segment, header included; a message larger than its ring goes in rounds [default: 1M]
    #[arg(long, value_name = "BYTES", value_parser = parse_size)]
    pub segment_size: Option<usize>,

    /// Producer: pool mode, N segments whose free ids travel over a message queue
    #[arg(long, value_name = "N")]
    pub segments: Option<u32>,

    /// Producer: build each message in the segment and let the consumer check it there, with no message-sized copy (generated payloads, stream mode; a message must fit the ring)
    #[arg(long)]
    pub zero_copy: bool,
}

impl ShmArgs {
    fn spec(&self, common: &CommonArgs) -> Result<Spec> {
        let api = self.api.unwrap_or(Api::Posix);
        if self.file.is_some() && api != Api::Mmap {
            return Err(Error::usage(
                "--file without --api mmap",
                "--file names the mapped file of --api mmap",
            ));
        }
        Ok(Spec {
            api,
            name: common.name_or(DEFAULT_NAME).to_string(),
            file: self.file.clone(),
        })
    }

    /// The flags that name the same segment, for "start `shm-consumer ...`" hints.
    fn peer_flags(&self, common: &CommonArgs) -> String {
        let mut s = String::new();
        if let Some(api) = self.api {
            s += &format!(" --api {}", api.as_str());
        }
        if let Some(f) = &self.file {
            s += &format!(" --file {}", f.display());
        }
        if let Some(n) = &common.name {
            s += &format!(" --name {n}");
        }
        s
    }
}

fn describe(spec: &Spec, c: &Checked, segment_size: usize) -> Describe {
    Describe::new("shm")
        .with("api", c.api.as_str())
        .with("sync", c.sync.as_str())
        .with("segment_size", segment_size)
        .with("ring_capacity", c.capacity)
        .with("name", &spec.name)
        .with("zero_copy", c.zero_copy)
}

/// Create the segment, wait for the consumer, send the workload.
pub fn produce(shm: &ShmArgs, common: &CommonArgs) -> Result<Report> {
    let spec = shm.spec(common)?;
    let sync = shm.sync.unwrap_or(SyncKind::Mutex);
    let rings = if common.mode == Some(Mode::Pingpong) {
        2
    } else {
        1
    };
    let size = shm.segment_size.unwrap_or(DEFAULT_SEGMENT_SIZE);
    // Whole cache lines per ring, so the two rings never share one.
    let capacity = (size.saturating_sub(HEADER_SIZE) / rings) as u64 & !63;
    if capacity < MIN_RING {
        return Err(Error::usage(
            format!("--segment-size {size} leaves {capacity} bytes per ring"),
            format!(
                "give at least {} bytes (a {HEADER_SIZE}-byte header, then {MIN_RING} per ring)",
                HEADER_SIZE as u64 + MIN_RING * rings as u64
            ),
        ));
    }
    let checked = Checked {
        rings,
        capacity,
        api: spec.api,
        sync,
        creator_pid: std::process::id(),
        zero_copy: shm.zero_copy,
        pool: 0,
    };
    if let Some(n) = shm.segments {
        return produce_pool(shm, common, &spec, n, size);
    }
    if shm.zero_copy {
        let need = (common.size.unwrap_or(DEFAULT_SIZE) + HEADER_LEN) as u64;
        if common.input.is_some() || common.raw || rings > 1 || need > capacity {
            return Err(Error::usage(
                "--zero-copy with a file, --raw, pingpong, or a message larger than the ring",
                format!(
                    "zero-copy builds generated messages of up to {} bytes in the ring, in stream mode; raise --segment-size",
                    capacity.saturating_sub(HEADER_LEN as u64)
                ),
            ));
        }
    }
    let mut seg = create(&spec, size)?;
    let queues = match sync {
        SyncKind::Mq => {
            let (q, guards) = SyncQueues::create(&spec.name, rings)?;
            guards.into_iter().for_each(|g| seg.add_helper(g));
            Some(q)
        }
        _ => None,
    };
    publish(&mut seg, &checked)?;
    let peer = format!("shm-consumer{}", shm.peer_flags(common));
    await_consumer(&mut seg, common.timeout, &peer)?;
    let mut link = ShmLink::new(
        &seg.map,
        seg.object.clone(),
        Side::Producer,
        &checked,
        common.timeout,
        queues,
    )
    .watch_size(seg.file.as_ref());
    workload::send(&mut link, common, &describe(&spec, &checked, size))
}

/// Pool mode: N segments, ids over message queues.
fn produce_pool(
    shm: &ShmArgs,
    common: &CommonArgs,
    spec: &Spec,
    n: u32,
    size: usize,
) -> Result<Report> {
    if shm.zero_copy || shm.sync.is_some_and(|s| s != SyncKind::Mq) {
        return Err(Error::usage(
            "--segments with --zero-copy or a --sync other than mq",
            "a pool is synchronised by its message queues and copies each part; drop those flags",
        ));
    }
    let pingpong = common.mode == Some(Mode::Pingpong);
    let peer = format!("shm-consumer{}", shm.peer_flags(common));
    let pool = create_pool(spec, n, size, pingpong, common.timeout, &peer)?;
    let mut link = PoolLink::new(&pool, common.timeout);
    workload::send(&mut link, common, &describe_pool(spec, &pool))
}

fn describe_pool(spec: &Spec, pool: &Pool) -> Describe {
    Describe::new("shm")
        .with("api", spec.api.as_str())
        .with("sync", "mq")
        .with("segments", pool.members.len())
        .with(
            "segment_size",
            pool.members.first().map_or(0, |m| m.map.len()),
        )
        .with("name", &spec.name)
}

/// Attach to the producer's segment and receive the workload.
pub fn consume(shm: &ShmArgs, common: &CommonArgs) -> Result<Report> {
    let spec = shm.spec(common)?;
    let peer = format!("shm-producer{}", shm.peer_flags(common));
    let (seg, checked) = attach(&spec, common.timeout, &peer)?;
    // Refused here, the segment's drop gives the alive mutex back, so the next
    // consumer, with the right flags, can attach.
    let queues = join(&spec, shm, &seg, &checked)?;
    if checked.pool > 0 {
        let pool = attach_pool(&spec, seg, &checked, common.timeout, &peer)?;
        let mut link = PoolLink::new(&pool, common.timeout);
        return workload::receive(&mut link, common, &describe_pool(&spec, &pool));
    }
    let mut link = ShmLink::new(
        &seg.map,
        seg.object.clone(),
        Side::Consumer,
        &checked,
        common.timeout,
        queues,
    )
    .watch_size(seg.file.as_ref());
    workload::receive(&mut link, common, &describe(&spec, &checked, seg.map.len()))
}

/// Consumer: check the flags against the segment; in ring mode open the sync queues and
/// mark the segment attached (pool mode attaches its members first).
fn join(
    spec: &Spec,
    shm: &ShmArgs,
    seg: &super::Segment,
    checked: &Checked,
) -> Result<Option<SyncQueues>> {
    if let Some(s) = shm.sync {
        if s != checked.sync {
            return Err(Error::new(
                Kind::Usage,
                &seg.object,
                format!(
                    "uses --sync {}, but the consumer was given --sync {}",
                    checked.sync.as_str(),
                    s.as_str()
                ),
                "the producer chooses; give --sync to the producer only, or the same to both",
            ));
        }
    }
    if let Some(size) = shm.segment_size {
        if size != seg.map.len() {
            return Err(Error::new(
                Kind::Usage,
                &seg.object,
                format!(
                    "has {} bytes, but the consumer was given --segment-size {size}",
                    seg.map.len()
                ),
                "the producer chooses; give --segment-size to the producer only",
            ));
        }
    }
    if checked.pool > 0 {
        return Ok(None);
    }
    let queues = match checked.sync {
        SyncKind::Mq => Some(SyncQueues::open(&spec.name, checked.rings, Side::Consumer)?),
        _ => None,
    };
    mark_attached(seg)?;
    Ok(queues)
}
