//! The link: frames in queue messages, as ipc-common's [`Link`].
//!
//! A queue keeps message boundaries, so each queue message is one frame: the 24-byte
//! header and the payload. A frame larger than the queue's message size goes in parts,
//! each part the same header plus the next slice of the payload; the receiver joins
//! them and refuses a part whose header differs. Nothing is ever truncated. The
//! sender's first message is a small setup message (`IPCQ`, version, flags).
//!
//! Priorities: `--priority P` is the POSIX priority (highest first) or the SysV type.
//! `mixed` sends four levels; the receiver waits until the queue is backed up, then
//! drains it: POSIX hands out the highest priority first, SysV `msgrcv` with a negative
//! type the lowest type first, so level L travels as priority L or type 5 - L.

use crate::claim::{name_shown, Endpoint};
use crate::flags::{Api, Priority, MIXED_LEVELS};
use crate::limits::Limits;
use crate::posix::IDEA_MQ;
use crate::queue::{Got, Part, Queue};
use crate::rendezvous::open_reply;
use ipc_common::error::{Error, Kind, Result};
use ipc_common::frame::{check_len, FrameKind, Header, HEADER_LEN};
use ipc_common::link::Link;
use ipc_common::narrate;
use std::time::{Duration, Instant};

/// How many received priorities the summary lists.
const ORDER_SHOWN: usize = 24;

const SETUP_MAGIC: &[u8; 4] = b"IPCQ";
const SETUP_VERSION: u8 = 1;
const SETUP_LEN: usize = 8;
const FLAG_MIXED: u8 = 1;

/// Which way this end of the link carries data.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Direction {
    Sending,
    Receiving,
}

/// What both sides of a link are set up with.
#[derive(Clone, Debug)]
pub struct LinkOpts {
    pub api: Api,
    /// The plain name (`ipc-mq`), from which the queue names derive.
    pub name: String,
    pub limits: Limits,
    pub timeout: Duration,
    pub raw: bool,
}

/// Frames over one queue each way. See the module documentation for the protocol.
pub struct MqLink {
    api: Api,
    direction: Direction,
    name: String,
    limits: Limits,
    timeout: Duration,
    tx: Option<Endpoint>,
    rx: Option<Endpoint>,
    priority: Priority,
    raw: bool,
    /// The receiver still has to read the sender's setup message.
    await_setup: bool,
    /// The sender still has to send it.
    send_setup: bool,
    /// A receiver writing `--output`: mixed priorities would scramble the bytes.
    refuse_reorder: bool,
    frames_in: u64,
    /// Priorities of the data messages as they arrived (the first few).
    order: Vec<u32>,
    data_in: u64,
    raw_seen: bool,
}

impl MqLink {
    fn new(o: &LinkOpts, direction: Direction, priority: Priority) -> MqLink {
        MqLink {
            api: o.api,
            direction,
            name: o.name.clone(),
            limits: o.limits,
            timeout: o.timeout,
            tx: None,
            rx: None,
            priority,
            raw: o.raw,
            await_setup: false,
            send_setup: false,
            refuse_reorder: false,
            frames_in: 0,
            order: Vec::new(),
            data_in: 0,
            raw_seen: false,
        }
    }

    /// The sending side: `data` is the data queue, `reply` the pingpong reply queue.
    pub fn sender(
        o: &LinkOpts,
        data: Endpoint,
        reply: Option<Endpoint>,
        priority: Priority,
    ) -> MqLink {
        let mut l = MqLink::new(o, Direction::Sending, priority);
        l.tx = Some(data);
        l.rx = reply;
        l.send_setup = !o.raw;
        l
    }

    /// The receiving side; a pingpong reply queue is opened on the first answer.
    pub fn receiver(o: &LinkOpts, data: Endpoint, refuse_reorder: bool) -> MqLink {
        let mut l = MqLink::new(o, Direction::Receiving, Priority::or_default(None, o.api));
        l.rx = Some(data);
        l.await_setup = !o.raw;
        l.refuse_reorder = refuse_reorder;
        l
    }

    /// The receiver in mixed mode: the priorities seen, in arrival order.
    pub fn priority_order(&self) -> Option<String> {
        if self.priority != Priority::Mixed || self.direction != Direction::Receiving {
            return None;
        }
        let mut s: Vec<String> = self.order.iter().map(u32::to_string).collect();
        if self.data_in > self.order.len() as u64 {
            s.push("...".into());
        }
        Some(s.join(","))
    }

    /// The priority setting as the summary shows it (the receiver's, learned).
    pub fn priority(&self) -> Priority {
        self.priority
    }

    /// The kernel value (POSIX priority or SysV type) of urgency `level` in mixed mode.
    fn level_value(&self, level: u32) -> u32 {
        match self.api {
            Api::Posix => level,
            Api::Sysv => MIXED_LEVELS + 1 - level,
        }
    }

    /// Which priority a frame travels at: in mixed mode the setup and hello go first
    /// (most urgent), the end marker last, data cycles through the levels.
    fn prio_for(&self, kind: Option<FrameKind>, seq: u64) -> u32 {
        match self.priority {
            Priority::Fixed(p) => p,
            Priority::Mixed => match kind {
                None | Some(FrameKind::Hello) => self.level_value(MIXED_LEVELS),
                Some(FrameKind::End) => self.level_value(1),
                _ => self.level_value(1 + (seq % u64::from(MIXED_LEVELS)) as u32),
            },
        }
    }

    fn tx(&mut self) -> Result<&mut Queue> {
        if self.tx.is_none() {
            // The receiver answers pingpong on the sender's reply queue.
            self.tx = Some(open_reply(self.api, &self.name, &self.limits)?);
        }
        Ok(&mut self.tx.as_mut().expect("opened").queue)
    }

    fn rx(&self) -> &Queue {
        &self.rx.as_ref().expect("a receiving queue").queue
    }

    /// Receive one message, waiting at most the timeout: (length, priority).
    fn take(&mut self) -> Result<(usize, u32)> {
        let lowest_first = self.priority == Priority::Mixed;
        let timeout = self.timeout;
        let rx = &mut self.rx.as_mut().expect("a receiving queue").queue;
        match rx.recv(timeout, lowest_first)? {
            Got::Message { len, prio } => Ok((len, prio)),
            Got::TimedOut => Err(Error::stalled(rx.object(), timeout, "nothing arrived")),
        }
    }

    fn send_setup_message(&mut self) -> Result<()> {
        let mut setup = [0u8; SETUP_LEN];
        setup[..4].copy_from_slice(SETUP_MAGIC);
        setup[4] = SETUP_VERSION;
        if self.priority == Priority::Mixed {
            setup[5] = FLAG_MIXED;
        }
        let (prio, timeout) = (self.prio_for(None, 0), self.timeout);
        self.tx()?.send(&[&setup], prio, timeout, None)?;
        self.send_setup = false;
        Ok(())
    }

    fn read_setup(&mut self) -> Result<()> {
        let (len, prio) = self.take()?;
        let rx = self.rx();
        rx.narrate_recv(len, prio, None);
        let m = rx.received(len);
        if len != SETUP_LEN || &m[..4] != SETUP_MAGIC {
            return Err(Error::verify(
                rx.object(),
                format!("the first message ({len} bytes) is not this program's queue setup"),
            )
            .with_remedy("the sender is not mq-pair, or sends --raw; use --raw on both sides"));
        }
        if m[4] != SETUP_VERSION {
            return Err(Error::verify(
                rx.object(),
                format!(
                    "the sender speaks queue protocol {}, this program {SETUP_VERSION}",
                    m[4]
                ),
            )
            .with_remedy("run the same build on both sides")
            .because(ipc_common::Cause::Mismatch));
        }
        if m[5] & FLAG_MIXED != 0 {
            if self.refuse_reorder {
                return Err(Error::usage(
                    "the sender uses --priority mixed and this receiver writes --output",
                    "mixed priorities deliver messages out of order; drop --output or the sender's --priority mixed",
                )
                .because(ipc_common::Cause::Mismatch));
            }
            self.priority = Priority::Mixed;
        }
        self.await_setup = false;
        Ok(())
    }

    /// Mixed mode, before the first data message: let the sender back the queue up
    /// (full, or no longer growing), so the receiver drains a backlog of priorities.
    fn wait_for_backlog(&mut self) -> Result<()> {
        let rx = self.rx();
        let deadline = Instant::now() + self.timeout;
        let mut last = None;
        let mut since = Instant::now();
        while Instant::now() < deadline {
            match rx.pending()? {
                None | Some((_, true)) => break,
                Some((n, false)) if last != Some(n) => {
                    last = Some(n);
                    since = Instant::now();
                }
                Some(_) if since.elapsed() >= Duration::from_millis(100) => break,
                Some(_) => {}
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        if let Some((n, _)) = rx.pending()? {
            narrate::call(
                format_args!("{} holds {n} messages: draining by priority", rx.object()),
                IDEA_MQ,
            );
        }
        Ok(())
    }

    /// The sending side is done: a sender that must not remove its queue under the
    /// receiver's feet (SysV: `IPC_RMID` destroys unread messages; `--raw`: the
    /// reader may not have opened the name yet) waits until every message was taken.
    pub fn finish_sending(&mut self) -> Result<()> {
        let Some(tx) = self.tx.as_ref() else {
            return Ok(());
        };
        if self.direction != Direction::Sending
            || !(self.api == Api::Sysv || (self.raw && tx.created))
        {
            return Ok(());
        }
        let deadline = Instant::now() + self.timeout;
        loop {
            match tx.queue.pending()? {
                None | Some((0, _)) => return Ok(()),
                Some((n, _)) if Instant::now() >= deadline => {
                    return Err(Error::peer(
                        tx.object(),
                        format!(
                            "the receiver did not take the last {n} messages within {:.1} s",
                            self.timeout.as_secs_f64()
                        ),
                        "the receiver is stopped, stuck or gone; check it, or raise --timeout",
                    )
                    .because(ipc_common::Cause::Timeout))
                }
                Some(_) => std::thread::sleep(Duration::from_millis(2)),
            }
        }
    }

    /// Read the rest of a split message: its parts 2.. of `count`, each behind `head`,
    /// until `buf` holds `total` bytes. The buffer grows by each part as it is taken,
    /// never to what the header claims.
    fn join_parts(
        &mut self,
        head: &[u8; HEADER_LEN],
        header: &Header,
        total: usize,
        count: usize,
        buf: &mut Vec<u8>,
    ) -> Result<()> {
        let mut k = 1;
        while buf.len() < total {
            let (len, prio) = self.take()?;
            k += 1;
            let rx = self.rx();
            let m = rx.received(len);
            if len <= HEADER_LEN
                || m[..HEADER_LEN] != head[..]
                || buf.len() + len - HEADER_LEN > total
            {
                return Err(Error::verify(
                    rx.object(),
                    format!(
                        "message {} came in parts, and after {} of {total} bytes another message came",
                        header.seq,
                        buf.len()
                    ),
                ));
            }
            rx.narrate_recv(len, prio, Some((k, count)));
            buf.extend_from_slice(&m[HEADER_LEN..]);
        }
        Ok(())
    }

    /// The summary's options: `api`, `queue` (POSIX name or SysV key file), `key` (SysV,
    /// as `ipcs -q` shows it), `priority` (the sender's; the receiver adds what it saw).
    pub fn describe(&self) -> ipc_common::Describe {
        let mut d = ipc_common::Describe::new("mq")
            .with("api", self.api.as_str())
            .with("queue", name_shown(self.api, &self.name));
        let ep = if self.direction == Direction::Sending {
            &self.tx
        } else {
            &self.rx
        };
        if let Some(s) = ep.as_ref().and_then(|e| e.queue.sysv()) {
            d = d.with("key", format!("{:#010x}", s.key()));
        }
        if self.direction == Direction::Sending {
            d = d.with("priority", self.priority);
        }
        d
    }
}

/// How many parts a `total`-byte payload takes whose first part carried `first` bytes.
fn part_count(total: usize, first: usize) -> usize {
    if first == 0 {
        1
    } else {
        total.div_ceil(first).max(1)
    }
}

impl Link for MqLink {
    fn object(&self) -> &str {
        let ep = if self.direction == Direction::Sending {
            &self.tx
        } else {
            &self.rx
        };
        ep.as_ref().map_or("message queue", |e| e.object())
    }

    fn send(&mut self, header: &Header, payload: &[u8]) -> Result<()> {
        if self.send_setup {
            self.send_setup_message()?;
        }
        let timeout = self.timeout;
        let prio = self.prio_for(Some(header.kind), header.seq);
        let head = header.encode();
        let tx = self.tx()?;
        // A queue made elsewhere may be too small for even the header (it never gets here
        // with the queues this program makes: `validate` checked the limits).
        let Some(chunk) = tx.msg_max().checked_sub(HEADER_LEN).filter(|&c| c > 0) else {
            return Err(tx.too_small(HEADER_LEN + payload.len().min(1)));
        };
        if payload.len() <= chunk {
            return tx.send(&[&head, payload], prio, timeout, None);
        }
        // Larger than one queue message: parts, each behind the same header.
        let count = payload.len().div_ceil(chunk);
        for (i, part) in payload.chunks(chunk).enumerate() {
            let label: Part = Some((i + 1, count));
            tx.send(&[&head, part], prio, timeout, label)?;
        }
        Ok(())
    }

    fn recv(&mut self, buf: &mut Vec<u8>, max: usize) -> Result<Option<Header>> {
        if self.await_setup {
            self.read_setup()?;
        }
        if self.priority == Priority::Mixed && self.frames_in == 1 {
            self.wait_for_backlog()?;
        }
        let (len, prio) = self.take()?;
        let rx = self.rx();
        let object = rx.object().to_string();
        let m = rx.received(len);
        if len < HEADER_LEN {
            return Err(Error::verify(
                &object,
                format!("a {len}-byte message is shorter than the {HEADER_LEN}-byte frame header"),
            ));
        }
        let mut head = [0u8; HEADER_LEN];
        head.copy_from_slice(&m[..HEADER_LEN]);
        let header = Header::decode(&head)
            .map_err(|e| Error::verify(&object, format!("bad frame header: {e}")))?;
        let total = check_len(&header, max, &object)?;
        buf.clear();
        buf.extend_from_slice(&m[HEADER_LEN..]);
        let count = part_count(total, buf.len());
        rx.narrate_recv(len, prio, (count > 1).then_some((1, count)));
        self.join_parts(&head, &header, total, count, buf)?;
        if buf.len() != total {
            return Err(Error::verify(
                &object,
                format!(
                    "message {} has {} bytes, its header says {total}",
                    header.seq,
                    buf.len()
                ),
            ));
        }
        self.frames_in += 1;
        if header.kind == FrameKind::Data {
            self.data_in += 1;
            if self.order.len() < ORDER_SHOWN {
                self.order.push(prio);
            }
        }
        Ok(Some(header))
    }

    fn send_raw(&mut self, bytes: &[u8]) -> Result<()> {
        let prio = self.prio_for(None, 0);
        let timeout = self.timeout;
        self.tx()?.send(&[bytes], prio, timeout, None)
    }

    fn recv_raw(&mut self, buf: &mut [u8]) -> Result<usize> {
        let timeout = self.timeout;
        let rx = &mut self.rx.as_mut().expect("a receiving queue").queue;
        match rx.recv(timeout, false)? {
            // Unreachable while the caller honours `raw_message_max`; the message is
            // taken already, so say plainly that it was lost.
            Got::Message { len, .. } if len > buf.len() => Err(Error::new(
                Kind::Runtime,
                rx.object(),
                format!(
                    "a {len}-byte message was taken but the buffer holds {}: it is lost",
                    buf.len()
                ),
                "this is a bug: the raw receiver's buffer must hold the queue's largest message",
            )),
            Got::Message { len, prio } => {
                rx.narrate_recv(len, prio, None);
                buf[..len].copy_from_slice(rx.received(len));
                self.raw_seen = true;
                Ok(len)
            }
            // Raw messages carry no end marker: a quiet queue ends the run.
            Got::TimedOut if self.raw_seen => Ok(0),
            Got::TimedOut => Err(Error::stalled(rx.object(), timeout, "no message arrived")),
        }
    }

    fn raw_message_max(&self) -> Option<usize> {
        self.rx.as_ref().map(|e| e.queue.msg_max())
    }

    fn reorders(&self) -> bool {
        self.priority == Priority::Mixed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::claim::{claim, Claim};
    use crate::posix;

    fn roundtrip(api: Api) {
        let name = format!("ipc-unit-mq-{}-{}", api.as_str(), std::process::id());
        let limits = Limits::read();
        let wait = Duration::from_secs(5);
        let Claim::Created(a) = claim(api, &name, None, &limits, true, wait).unwrap() else {
            panic!("fresh name exists");
        };
        let Claim::Existing(b) = claim(api, &name, None, &limits, true, wait).unwrap() else {
            panic!("second claim creates");
        };
        let o = LinkOpts {
            api,
            name: name.clone(),
            limits,
            timeout: Duration::from_secs(5),
            raw: false,
        };
        let mut tx = MqLink::sender(&o, a, None, Priority::or_default(None, api));
        let mut rx = MqLink::receiver(&o, b, false);
        // Larger than one queue message: split and joined.
        let payload: Vec<u8> = (0..20_000u32).map(|i| i as u8).collect();
        let h = Header::for_payload(FrameKind::Hello, 0, &payload);
        let sender = std::thread::spawn(move || {
            tx.send(&h, &payload).unwrap();
            (tx, payload)
        });
        let mut buf = Vec::new();
        let got = rx.recv(&mut buf, 20_000).unwrap().unwrap();
        let (tx, payload) = sender.join().unwrap();
        assert_eq!(got, h);
        assert!(buf == payload);
        assert!(got.payload_ok(&buf));
        drop(rx);
        drop(tx);
        match api {
            Api::Posix => assert!(posix::name_identity(&posix::queue_name(&name, None)).is_none()),
            Api::Sysv => assert!(!ipc_common::sysv::key_path(&name, None).exists()),
        }
    }

    #[test]
    fn posix_split_and_join() {
        roundtrip(Api::Posix);
    }

    #[test]
    fn sysv_split_and_join() {
        roundtrip(Api::Sysv);
    }

    #[test]
    fn parts_are_counted() {
        assert_eq!(part_count(20_000, 8168), 3);
        assert_eq!(part_count(100, 100), 1);
        assert_eq!(part_count(0, 0), 1);
    }
}

#[cfg(test)]
mod checks;
