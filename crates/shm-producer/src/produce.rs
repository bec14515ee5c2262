//! The producer's half of the lecture: create the segment (POSIX `shm_open` +
//! `ftruncate` + `mmap`, SysV `ftok` + `shmget` + `shmat`, or a mapped file), lay out the
//! header and the rings, publish it, wait for the consumer to attach, then send through
//! the ring with no system call per message.

use ipc_common::args::{parse_size, CommonArgs, Mode, DEFAULT_SIZE};
use ipc_common::frame::HEADER_LEN;
use ipc_common::report::Report;
use ipc_common::shm::layout::{Checked, SyncKind, HEADER_SIZE, MIN_RING};
use ipc_common::shm::pair::{describe, describe_pool, naming_flags, Place, DEFAULT_SEGMENT_SIZE};
use ipc_common::shm::pool::{create_pool, PoolLink};
use ipc_common::shm::ring::{Side, SyncQueues};
use ipc_common::shm::{await_consumer, create, publish, Spec};
use ipc_common::{workload, Error, Result};

/// The producer's flags: it chooses everything; the consumer learns it from the segment.
#[derive(clap::Args, Clone, Debug)]
pub struct ProducerArgs {
    #[command(flatten)]
    pub place: Place,

    /// How the sides wait for each other [default: mutex]
    #[arg(long, value_enum)]
    pub sync: Option<SyncKind>,

    /// The whole segment, header included; a message larger than its ring goes in rounds [default: 1M]
    #[arg(long, value_name = "BYTES", value_parser = parse_size)]
    pub segment_size: Option<usize>,

    /// Pool mode: N segments whose free ids travel over a message queue
    #[arg(long, value_name = "N")]
    pub segments: Option<u32>,

    /// Build each message in the segment and let the consumer check it there, with no message-sized copy (generated payloads, stream mode; a message must fit the ring)
    #[arg(long)]
    pub zero_copy: bool,
}

/// Create the segment, wait for the consumer, send the workload.
pub fn produce(args: &ProducerArgs, common: &CommonArgs) -> Result<Report> {
    let spec = args.place.spec(common)?;
    let size = args.segment_size.unwrap_or(DEFAULT_SEGMENT_SIZE);
    let peer = format!("shm-consumer{}", naming_flags(&args.place, common));
    let checked = plan(args, common, &spec, size)?;
    if let Some(n) = args.segments {
        return produce_pool(args, common, &spec, n, size, &peer);
    }
    if args.zero_copy {
        check_zero_copy(common, checked.rings, checked.capacity)?;
    }
    let mut seg = create(&spec, size)?;
    let queues = match checked.sync {
        SyncKind::Mq => {
            let (q, guards) = SyncQueues::create(&spec.name, checked.rings)?;
            guards.into_iter().for_each(|g| seg.add_helper(g));
            Some(q)
        }
        _ => None,
    };
    publish(&mut seg, &checked)?;
    await_consumer(&mut seg, common.timeout, &peer)?;
    let mut link = seg.ring_link(Side::Producer, &checked, common.timeout, queues);
    workload::send(&mut link, common, &describe(&spec, &checked, size))
}

/// What the header will say: rings (two for pingpong), their capacity, the sync kind.
fn plan(args: &ProducerArgs, common: &CommonArgs, spec: &Spec, size: usize) -> Result<Checked> {
    let rings = if common.mode == Some(Mode::Pingpong) {
        2
    } else {
        1
    };
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
    Ok(Checked {
        rings,
        capacity,
        api: spec.api,
        sync: args.sync.unwrap_or(SyncKind::Mutex),
        creator_pid: std::process::id(),
        zero_copy: args.zero_copy,
        pool: 0,
    })
}

/// Zero-copy builds generated messages in the ring: one-way, framed, each fitting it.
fn check_zero_copy(common: &CommonArgs, rings: usize, capacity: u64) -> Result<()> {
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
    Ok(())
}

/// Pool mode: N segments, ids over message queues.
fn produce_pool(
    args: &ProducerArgs,
    common: &CommonArgs,
    spec: &Spec,
    n: u32,
    size: usize,
    peer: &str,
) -> Result<Report> {
    if args.zero_copy || args.sync.is_some_and(|s| s != SyncKind::Mq) {
        return Err(Error::usage(
            "--segments with --zero-copy or a --sync other than mq",
            "a pool is synchronised by its message queues and copies each part; drop those flags",
        ));
    }
    let pingpong = common.mode == Some(Mode::Pingpong);
    let pool = create_pool(spec, n, size, pingpong, common.timeout, peer)?;
    let mut link = PoolLink::new(&pool, common.timeout);
    workload::send(&mut link, common, &describe_pool(spec, &pool))
}
