//! Pool mode (`--segments N`): the lecture's "many small segments". N segments are made
//! up front (`NAME.pool.0` ...); the ids of free ones travel over a message queue
//! (`/NAME.free`), and a filled one is announced on another (`/NAME.full`, and
//! `/NAME.back` for pingpong answers) with the part's length and frame header. The
//! reader copies the part out and sends the id back to the free queue.
//!
//! The main segment `NAME` keeps its role: the header says how many pool segments
//! there are, and holds the two "alive" mutexes that tell each side its peer died.

use super::layout::{Checked, SyncKind, HEADER_SIZE, MAX_POOL, MIN_RING};
use super::queue::Queue;
use super::ring::{peer_alive, peer_died, SLICE};
use super::{attach, await_consumer, create, mark_attached, publish, Segment, Spec};
use crate::error::{Cause, Error, Kind, Result};
use crate::frame::{check_len, Header as Frame, HEADER_LEN};
use crate::link::Link;
use crate::narrate;
use ipc_sys::shm::PMutex;
use std::time::{Duration, Instant};

/// A descriptor on the full/back queues: segment id, part length, then the frame header.
const DESC_LEN: usize = 8 + HEADER_LEN;
const IDEA_POOL: &str =
    "pool: segment ids travel over a message queue, the data stays in shared memory";

fn names(name: &str) -> [String; 3] {
    [
        format!("/{name}.free"),
        format!("/{name}.full"),
        format!("/{name}.back"),
    ]
}

/// Check a descriptor from the full/back queue: (segment id, part length, frame).
/// Everything in it is untrusted: the id must name a member, the length fit a part.
pub fn parse_descriptor(
    desc: &[u8],
    members: usize,
    part: usize,
) -> Result<(usize, usize, Frame), String> {
    if desc.len() != DESC_LEN {
        return Err(format!(
            "a descriptor of {} bytes, expected {DESC_LEN}",
            desc.len()
        ));
    }
    let id = u32::from_le_bytes([desc[0], desc[1], desc[2], desc[3]]) as usize;
    let len = u32::from_le_bytes([desc[4], desc[5], desc[6], desc[7]]) as usize;
    let mut fb = [0u8; HEADER_LEN];
    fb.copy_from_slice(&desc[8..]);
    let f = Frame::decode(&fb).map_err(|e| format!("bad frame: {e}"))?;
    if id >= members || len > part {
        return Err(format!("descriptor names segment {id} with {len} bytes"));
    }
    Ok((id, len, f))
}

/// Check a message from the free-id queue: four bytes naming a member.
pub fn parse_free_id(msg: &[u8], members: usize) -> Result<u32, String> {
    let id = match msg {
        [a, b, c, d] => u32::from_le_bytes([*a, *b, *c, *d]),
        _ => return Err(format!("a free-id message of {} bytes", msg.len())),
    };
    if id as usize >= members {
        return Err(format!("free-id message names segment {id}"));
    }
    Ok(id)
}

/// The pool as the producer made it or the consumer attached it.
pub struct Pool {
    /// The main segment: pool size and the alive mutexes.
    pub main: Segment,
    pub members: Vec<Segment>,
    /// Data bytes per member.
    pub part: usize,
    queues: Queues,
    producer: bool,
}

/// The pool's queues, opened before the names go: where free ids are taken and given
/// back, where filled parts are announced and heard.
struct Queues {
    free_in: Queue,
    free_out: Queue,
    out: Option<Queue>,
    inn: Option<Queue>,
}

impl Queues {
    /// `producer`: announce on `full`, hear answers on `back`; the consumer the reverse.
    fn open(name: &str, producer: bool, pingpong: bool) -> Result<Queues> {
        let [free, full, back] = names(name);
        let (out, inn) = if producer {
            (Some(full), pingpong.then_some(back))
        } else {
            (pingpong.then_some(back), Some(full))
        };
        Ok(Queues {
            free_in: Queue::open_receiver(&free)?,
            free_out: Queue::open_sender(&free)?,
            out: out.map(|q| Queue::open_sender(&q)).transpose()?,
            inn: inn.map(|q| Queue::open_receiver(&q)).transpose()?,
        })
    }
}

/// Producer: create the main segment, N members and the queues; wait for the consumer.
pub fn create_pool(
    spec: &Spec,
    n: u32,
    size: usize,
    pingpong: bool,
    timeout: Duration,
    peer: &str,
) -> Result<Pool> {
    let part = check_pool(n, size)?;
    let member = Checked {
        rings: 1,
        capacity: part as u64,
        api: spec.api,
        sync: SyncKind::Mq,
        creator_pid: std::process::id(),
        zero_copy: false,
        pool: 0,
    };
    let mut members = Vec::with_capacity(n as usize);
    for i in 0..n {
        let mut seg = create(&spec.pool_member(i), size)?;
        publish(&mut seg, &member)?;
        members.push(seg);
    }
    let mut main = create_main(spec, n, pingpong, &member)?;
    let queues = Queues::open(&spec.name, true, pingpong)?;
    await_consumer(&mut main, timeout, peer)?;
    // The consumer attached every member before the main segment: all names can go.
    members.iter_mut().for_each(Segment::remove_name);
    Ok(Pool {
        main,
        members,
        part,
        queues,
        producer: true,
    })
}

/// Check the pool's flags against the queue limit; the data bytes per member.
fn check_pool(n: u32, size: usize) -> Result<usize> {
    if n == 0 || n > MAX_POOL {
        return Err(Error::usage(
            format!("--segments {n}"),
            format!("give 1 to {MAX_POOL} segments"),
        ));
    }
    let msg_max = std::fs::read_to_string("/proc/sys/fs/mqueue/msg_max")
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
        .unwrap_or(10);
    if n > msg_max {
        return Err(Error::usage(
            format!("--segments {n}: the free-id queue must hold every id, and queues hold at most {msg_max} messages"),
            "use fewer segments, or raise /proc/sys/fs/mqueue/msg_max",
        )
        .because(Cause::Limit));
    }
    let part = (size.saturating_sub(HEADER_SIZE)) & !63;
    if (part as u64) < MIN_RING {
        return Err(Error::usage(
            format!("--segment-size {size} leaves {part} data bytes per pool segment"),
            format!("give at least {} bytes", HEADER_SIZE as u64 + MIN_RING),
        ));
    }
    Ok(part)
}

/// The main segment carries no data: its header announces the pool, and its ring count
/// tells the consumer about pingpong. Its queues are removed with its name.
fn create_main(spec: &Spec, n: u32, pingpong: bool, member: &Checked) -> Result<Segment> {
    let rings = if pingpong { 2 } else { 1 };
    let mut main = create(spec, HEADER_SIZE + rings * MIN_RING as usize)?;
    let [free, full, back] = names(&spec.name);
    let depth = i64::from(n);
    main.add_helper(Queue::create(&free, depth, 4, IDEA_POOL)?);
    main.add_helper(Queue::create(&full, depth, DESC_LEN as i64, IDEA_POOL)?);
    if pingpong {
        main.add_helper(Queue::create(&back, depth, DESC_LEN as i64, IDEA_POOL)?);
    }
    let announce = Checked {
        rings,
        capacity: MIN_RING,
        pool: n,
        ..*member
    };
    publish(&mut main, &announce)?;
    Ok(main)
}

/// Consumer: attach the members the main segment announces, open the queues, hand every
/// id to the free queue, then mark the main segment attached.
pub fn attach_pool(
    spec: &Spec,
    main: Segment,
    checked: &Checked,
    timeout: Duration,
    peer: &str,
) -> Result<Pool> {
    let mut members = Vec::with_capacity(checked.pool as usize);
    let mut part = usize::MAX;
    for i in 0..checked.pool {
        let (seg, c) = attach(&spec.pool_member(i), timeout, peer)?;
        mark_attached(&seg)?;
        part = part.min(c.capacity as usize);
        members.push(seg);
    }
    let queues = Queues::open(&spec.name, false, checked.rings == 2)?;
    let free = &queues.free_out;
    for id in 0..checked.pool {
        if !free.try_send(&id.to_le_bytes())? {
            return Err(Error::new(
                Kind::Runtime,
                &main.object,
                "the free-id queue is full before the start",
                "start a new producer",
            ));
        }
    }
    narrate::call(
        format_args!(
            "mq_send({:?}, ids 0..{}) x{}",
            free.name, checked.pool, checked.pool
        ),
        IDEA_POOL,
    );
    mark_attached(&main)?;
    Ok(Pool {
        main,
        members,
        part,
        queues,
        producer: false,
    })
}

pub struct PoolLink<'a> {
    object: String,
    pool: &'a Pool,
    q: &'a Queues,
    peer_alive: &'a PMutex,
    peer: &'static str,
    timeout: Duration,
}

impl<'a> PoolLink<'a> {
    pub fn new(pool: &'a Pool, timeout: Duration) -> PoolLink<'a> {
        let h = pool.main.header();
        PoolLink {
            object: format!(
                "pool of {} segments ({})",
                pool.members.len(),
                pool.main.object
            ),
            pool,
            q: &pool.queues,
            peer_alive: if pool.producer {
                &h.consumer_alive
            } else {
                &h.producer_alive
            },
            peer: if pool.producer {
                "consumer"
            } else {
                "producer"
            },
            timeout,
        }
    }

    /// Receive one message from `q`, in slices, checking the peer between them.
    fn wait(&self, q: &Queue, buf: &mut [u8]) -> Result<usize> {
        let deadline = Instant::now() + self.timeout;
        loop {
            // A truncated member must end this side with an error, not SIGBUS.
            for seg in &self.pool.members {
                seg.check_size()?;
            }
            if let Some(n) = q.recv_for(buf, SLICE)? {
                return Ok(n);
            }
            if !peer_alive(self.peer_alive) {
                // It may have sent just before it went.
                if let Some(n) = q.recv_for(buf, Duration::ZERO)? {
                    return Ok(n);
                }
                return Err(peer_died(&self.object, self.peer));
            }
            if Instant::now() >= deadline {
                return Err(super::no_progress(&self.object, self.peer, self.timeout));
            }
        }
    }

    fn corrupt(&self, what: String) -> Error {
        Error::new(
            Kind::Verify,
            &self.object,
            what,
            "the pool's queues carried something this program did not send; start both sides again",
        )
    }

    fn give_back(&self, id: u32) -> Result<()> {
        if !self.q.free_out.try_send(&id.to_le_bytes())? {
            return Err(self.corrupt("the free-id queue is full: more ids than segments".into()));
        }
        Ok(())
    }
}

impl Link for PoolLink<'_> {
    fn object(&self) -> &str {
        &self.object
    }

    /// Each part of the payload (one per segment's worth) takes a free segment.
    fn send(&mut self, header: &Frame, payload: &[u8]) -> Result<()> {
        let Some(out) = &self.q.out else {
            return Err(Error::usage(
                format!("{} has no queue to answer on", self.object),
                "start the producer with --mode pingpong",
            ));
        };
        let mut parts = payload.chunks(self.pool.part).peekable();
        let empty: &[u8] = &[];
        let mut first = true;
        while first || parts.peek().is_some() {
            let part = parts.next().unwrap_or(empty);
            first = false;
            let mut idb = [0u8; 8];
            let n = self.wait(&self.q.free_in, &mut idb)?;
            let id =
                parse_free_id(&idb[..n], self.pool.members.len()).map_err(|e| self.corrupt(e))?;
            self.pool.members[id as usize]
                .map
                .copy_in(HEADER_SIZE, part);
            let mut desc = [0u8; DESC_LEN];
            desc[0..4].copy_from_slice(&id.to_le_bytes());
            desc[4..8].copy_from_slice(&(part.len() as u32).to_le_bytes());
            desc[8..].copy_from_slice(&header.encode());
            if !out.try_send(&desc)? {
                return Err(self.corrupt("the full queue is full: more parts than segments".into()));
            }
            narrate::repeated(
                "pool send",
                format_args!(
                    "free id {id} from {}; copy {} bytes into segment {id}; mq_send({}, id {id})",
                    self.q.free_in.name,
                    part.len(),
                    out.name
                ),
                IDEA_POOL,
            );
        }
        Ok(())
    }

    fn recv(&mut self, buf: &mut Vec<u8>, max: usize) -> Result<Option<Frame>> {
        let Some(inn) = &self.q.inn else {
            return Err(Error::usage(
                format!("{} has no queue to hear answers on", self.object),
                "start the producer with --mode pingpong",
            ));
        };
        let mut frame: Option<Frame> = None;
        let mut got = 0usize;
        // The announced length, bounded; the buffer grows by each part as it comes.
        let mut total = 0usize;
        buf.clear();
        loop {
            let mut desc = [0u8; DESC_LEN];
            let n = self.wait(inn, &mut desc)?;
            let (id, len, f) =
                parse_descriptor(&desc[..n], self.pool.members.len(), self.pool.part)
                    .map_err(|e| self.corrupt(e))?;
            match frame {
                None => {
                    total = check_len(&f, max, &self.object)?;
                    frame = Some(f);
                }
                Some(first) if first != f => {
                    return Err(self.corrupt(format!(
                        "a part of message {} arrived inside message {}",
                        f.seq, first.seq
                    )))
                }
                Some(_) => {}
            }
            if got + len > total {
                return Err(self.corrupt(format!(
                    "parts add up to more than the {total} bytes announced"
                )));
            }
            buf.resize(got + len, 0);
            self.pool.members[id]
                .map
                .copy_out(HEADER_SIZE, &mut buf[got..got + len]);
            got += len;
            self.give_back(id as u32)?;
            narrate::repeated(
                "pool recv",
                format_args!(
                    "mq_timedreceive({}) = id {id}; copy {len} bytes out; mq_send({}, id {id})",
                    inn.name, self.q.free_out.name
                ),
                IDEA_POOL,
            );
            if got == total {
                return Ok(frame);
            }
        }
    }

    fn send_raw(&mut self, bytes: &[u8]) -> Result<()> {
        self.send(
            &Frame::for_payload(crate::frame::FrameKind::Data, 0, bytes),
            bytes,
        )
    }

    fn recv_raw(&mut self, buf: &mut [u8]) -> Result<usize> {
        let mut v = Vec::new();
        self.recv(&mut v, buf.len())?;
        let n = v.len().min(buf.len());
        buf[..n].copy_from_slice(&v[..n]);
        Ok(n)
    }
}
