//! The queue link's receive checks, over a fake queue: a [`Backend`] that keeps its
//! messages in memory, so crafted messages (a wrong setup, a short message, a part of
//! another message) reach `recv` without a real queue, and what the sender puts on the
//! queue (parts, priorities) can be looked at.

use super::*;
use crate::limits::Limits;
use crate::queue::{Backend, Facts, Sent};
use ipc_common::Cause;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

/// Messages and their priorities, in the order sent.
type Shared = Arc<Mutex<VecDeque<(Vec<u8>, u32)>>>;

struct Fake {
    facts: Facts,
    /// How many messages make the queue full.
    depth: usize,
    q: Shared,
    out: Vec<u8>,
    got: Vec<u8>,
    /// Messages taken so far, and at each look at the backlog (`pending`), that count.
    taken: usize,
    looks: Arc<Mutex<Vec<usize>>>,
}

impl Backend for Fake {
    fn facts(&self) -> &Facts {
        &self.facts
    }
    fn outgoing(&mut self) -> &mut [u8] {
        &mut self.out
    }
    fn send(&mut self, len: usize, prio: u32, _: Instant) -> Result<Sent> {
        self.q
            .lock()
            .unwrap()
            .push_back((self.out[..len].to_vec(), prio));
        Ok(Sent::Done)
    }
    /// POSIX: the highest priority first; SysV asked for the lowest type: that first.
    /// Nothing there: timed out at once.
    fn recv(&mut self, _: Instant, lowest_type_first: bool) -> Result<Got> {
        let mut q = self.q.lock().unwrap();
        let pick = |best: &dyn Fn(u32, u32) -> bool| {
            let mut at = None::<(usize, u32)>;
            for (i, (_, p)) in q.iter().enumerate() {
                if at.is_none_or(|(_, b)| best(*p, b)) {
                    at = Some((i, *p));
                }
            }
            at.map(|(i, _)| i)
        };
        let at = match (self.facts.api, lowest_type_first) {
            (Api::Posix, _) => pick(&|p, b| p > b),
            (Api::Sysv, true) => pick(&|p, b| p < b),
            (Api::Sysv, false) => (!q.is_empty()).then_some(0),
        };
        let Some((m, prio)) = at.and_then(|i| q.remove(i)) else {
            return Ok(Got::TimedOut);
        };
        self.got = m;
        self.taken += 1;
        Ok(Got::Message {
            len: self.got.len(),
            prio,
        })
    }
    fn received(&self, len: usize) -> &[u8] {
        &self.got[..len]
    }
    fn pending(&self) -> Result<Option<(u64, bool)>> {
        self.looks.lock().unwrap().push(self.taken);
        let n = self.q.lock().unwrap().len();
        Ok(Some((n as u64, n >= self.depth)))
    }
    fn owner(&self) -> Result<(u32, u32)> {
        Ok((0, 0o600))
    }
    fn remove_hint(&self) -> String {
        String::new()
    }
    fn send_call(&self, _: usize, _: u32) -> (&'static str, String) {
        ("send", String::new())
    }
    fn recv_call(&self, _: usize, _: u32) -> (&'static str, String) {
        ("recv", String::new())
    }
}

fn endpoint(api: Api, msg_max: usize, q: &Shared) -> Endpoint {
    watched(api, msg_max, q, &Arc::default())
}

/// An endpoint whose looks at the backlog are logged in `looks`.
fn watched(api: Api, msg_max: usize, q: &Shared, looks: &Arc<Mutex<Vec<usize>>>) -> Endpoint {
    Endpoint {
        queue: Queue::new(Box::new(Fake {
            facts: Facts {
                api,
                object: "fake queue".into(),
                msg_max,
                limits: Limits::read(),
            },
            depth: 8,
            q: q.clone(),
            out: vec![0; msg_max],
            got: Vec::new(),
            taken: 0,
            looks: looks.clone(),
        })),
        guard: None,
        key: None,
        pin: None,
        created: true,
    }
}

fn opts(api: Api, raw: bool) -> LinkOpts {
    LinkOpts {
        api,
        name: "ipc-test-fake".into(),
        limits: Limits::read(),
        timeout: Duration::from_millis(100),
        raw,
    }
}

/// A sender and a receiver over one fake queue of `msg_max`-byte messages.
fn pair(api: Api, msg_max: usize, priority: Priority) -> (MqLink, MqLink, Shared) {
    let q = Shared::default();
    let o = opts(api, false);
    let tx = MqLink::sender(&o, endpoint(api, msg_max, &q), None, priority);
    let rx = MqLink::receiver(&o, endpoint(api, msg_max, &q), false);
    (tx, rx, q)
}

/// A receiver whose setup message was read, and the queue to put messages on.
fn receiver(msg_max: usize) -> (MqLink, Shared) {
    let (mut tx, mut rx, q) = pair(Api::Posix, msg_max, Priority::Fixed(0));
    tx.send_setup_message().unwrap();
    rx.read_setup().unwrap();
    (rx, q)
}

fn put(q: &Shared, bytes: Vec<u8>) {
    q.lock().unwrap().push_back((bytes, 0));
}

fn framed(h: &Header, payload: &[u8]) -> Vec<u8> {
    let mut v = h.encode().to_vec();
    v.extend_from_slice(payload);
    v
}

fn payload(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 + i / 256) as u8).collect()
}

#[test]
fn a_frame_larger_than_a_message_goes_in_parts_and_is_joined() {
    for api in [Api::Posix, Api::Sysv] {
        let (mut tx, mut rx, q) = pair(api, 64, Priority::or_default(None, api));
        // 40 payload bytes per part: 100 bytes take 3; exactly 40 take 1; 0 take 1.
        for n in [100, 40, 41, 0, 80] {
            let p = payload(n);
            let h = Header::for_payload(FrameKind::Data, n as u64, &p);
            tx.send(&h, &p).unwrap();
            let parts = q.lock().unwrap().len();
            let setup = usize::from(n == 100);
            assert_eq!(parts - setup, n.div_ceil(40).max(1), "{n} bytes");
            let mut buf = Vec::new();
            assert_eq!(rx.recv(&mut buf, 100).unwrap(), Some(h), "{n}");
            assert!(buf == p, "{n} bytes joined");
            assert!(q.lock().unwrap().is_empty());
        }
    }
}

#[test]
fn the_setup_message_must_be_this_programs() {
    let cases: [(&[u8], &str); 4] = [
        (b"IPCQ\x01\0\0", "the first message (7 bytes)"),
        (b"IPCQ\x01\0\0\0\0", "the first message (9 bytes)"),
        (b"IPCX\x01\0\0\0", "the first message (8 bytes)"),
        (b"IPCQ\x02\0\0\0", "queue protocol 2"),
    ];
    for (setup, says) in cases {
        let q = Shared::default();
        let o = opts(Api::Posix, false);
        let mut rx = MqLink::receiver(&o, endpoint(Api::Posix, 64, &q), false);
        put(&q, setup.to_vec());
        let e = rx.recv(&mut Vec::new(), 10).unwrap_err();
        assert_eq!(e.kind, Kind::Verify, "{e}");
        assert!(e.call.contains(says), "{e}");
    }
    // Nothing at all: a stall, not a setup.
    let q = Shared::default();
    let mut rx = MqLink::receiver(
        &opts(Api::Posix, false),
        endpoint(Api::Posix, 64, &q),
        false,
    );
    assert_eq!(
        rx.recv(&mut Vec::new(), 10).unwrap_err().cause,
        Cause::Timeout
    );
}

#[test]
fn a_mixed_sender_is_followed_unless_the_receiver_writes_output() {
    let (mut tx, mut rx, q) = pair(Api::Posix, 64, Priority::Mixed);
    tx.send_setup_message().unwrap();
    let setup = q.lock().unwrap()[0].0.clone();
    assert_eq!(setup[5], FLAG_MIXED);
    rx.read_setup().unwrap();
    assert_eq!(rx.priority(), Priority::Mixed);
    assert!(rx.reorders());
    // The same setup to a receiver writing --output.
    let q = Shared::default();
    let mut rx = MqLink::receiver(&opts(Api::Posix, false), endpoint(Api::Posix, 64, &q), true);
    put(&q, setup.clone());
    let e = rx.recv(&mut Vec::new(), 10).unwrap_err();
    assert_eq!(e.cause, Cause::Mismatch, "{e}");
    // A fixed sender's setup, other flag bits set: not mixed.
    let mut other = setup;
    other[5] = 2;
    let q = Shared::default();
    let mut rx = MqLink::receiver(&opts(Api::Posix, false), endpoint(Api::Posix, 64, &q), true);
    put(&q, other);
    rx.read_setup().unwrap();
    assert!(!rx.reorders());
    assert_eq!(rx.priority_order(), None);
}

#[test]
fn a_message_shorter_than_a_header_or_with_a_bad_one_is_refused() {
    let h = Header::for_payload(FrameKind::Data, 1, b"abc");
    for (bytes, says) in [
        (
            framed(&h, b"abc")[..HEADER_LEN - 1].to_vec(),
            "23-byte message is shorter",
        ),
        (vec![], "0-byte message is shorter"),
    ] {
        let (mut rx, q) = receiver(64);
        put(&q, bytes);
        let e = rx.recv(&mut Vec::new(), 10).unwrap_err();
        assert!(e.call.contains(says), "{e}");
    }
    let (mut rx, q) = receiver(64);
    let mut bad = framed(&h, b"abc");
    bad[4] = 9;
    put(&q, bad);
    assert!(rx
        .recv(&mut Vec::new(), 10)
        .unwrap_err()
        .call
        .contains("bad frame header"));
    // Over the bound the receiver gives.
    let (mut rx, q) = receiver(64);
    put(&q, framed(&h, b"abc"));
    let e = rx.recv(&mut Vec::new(), 2).unwrap_err();
    assert!(e.call.contains("announces 3 payload bytes"), "{e}");
    // A header alone is a whole empty frame.
    let (mut rx, q) = receiver(64);
    let end = Header::for_payload(FrameKind::End, 5, b"");
    put(&q, framed(&end, b""));
    let mut buf = vec![1, 2];
    assert_eq!(rx.recv(&mut buf, 10).unwrap(), Some(end));
    assert!(buf.is_empty());
}

#[test]
fn a_message_carrying_more_than_its_header_says_is_refused() {
    let (mut rx, q) = receiver(64);
    let h = Header::for_payload(FrameKind::Data, 1, b"abc");
    put(&q, framed(&h, b"abcde"));
    let e = rx.recv(&mut Vec::new(), 10).unwrap_err();
    assert!(
        e.call.contains("message 1 has 5 bytes, its header says 3"),
        "{e}"
    );
}

#[test]
fn parts_must_carry_the_same_header_and_add_up_to_the_length() {
    let p = payload(100);
    let h = Header::for_payload(FrameKind::Data, 4, &p);
    let other = Header::for_payload(FrameKind::Data, 5, &p);
    let cases: [(Vec<Vec<u8>>, &str); 4] = [
        // The second part under another message's header.
        (
            vec![framed(&h, &p[..40]), framed(&other, &p[40..80])],
            "after 40 of 100 bytes another message came",
        ),
        // A second part that is a header alone.
        (
            vec![framed(&h, &p[..40]), framed(&h, &[])],
            "after 40 of 100 bytes",
        ),
        // Parts adding up to more than announced.
        (
            vec![
                framed(&h, &p[..40]),
                framed(&h, &p[..40]),
                framed(&h, &p[..40]),
            ],
            "after 80 of 100 bytes",
        ),
        // A missing last part: nothing more arrives.
        (
            vec![framed(&h, &p[..40]), framed(&h, &p[40..80])],
            "nothing arrived",
        ),
    ];
    for (parts, says) in cases {
        let (mut rx, q) = receiver(64);
        for m in parts {
            put(&q, m);
        }
        let e = rx.recv(&mut Vec::new(), 100).unwrap_err();
        assert!(e.call.contains(says), "{says}: {e}");
    }
    // Exactly adding up, with a short last part: joined.
    let (mut rx, q) = receiver(64);
    for m in [
        framed(&h, &p[..40]),
        framed(&h, &p[40..80]),
        framed(&h, &p[80..]),
    ] {
        put(&q, m);
    }
    let mut buf = Vec::new();
    assert_eq!(rx.recv(&mut buf, 100).unwrap(), Some(h));
    assert!(buf == p);
}

#[test]
fn mixed_priorities_put_the_setup_and_hello_first_and_the_end_last() {
    for (api, first, last, data) in [
        (Api::Posix, 4, 1, [1, 2, 3, 4, 1]),
        (Api::Sysv, 1, 4, [4, 3, 2, 1, 4]),
    ] {
        let (mut tx, _rx, q) = pair(api, 64, Priority::Mixed);
        let hello = Header::for_payload(FrameKind::Hello, 0, b"h");
        tx.send(&hello, b"h").unwrap();
        for seq in 0..5 {
            tx.send(&Header::for_payload(FrameKind::Data, seq, b"d"), b"d")
                .unwrap();
        }
        tx.send(&Header::for_payload(FrameKind::End, 5, b""), b"")
            .unwrap();
        tx.send_raw(b"r").unwrap();
        let prios: Vec<u32> = q.lock().unwrap().iter().map(|m| m.1).collect();
        let mut want = vec![first, first];
        want.extend(data);
        want.extend([last, first]);
        assert_eq!(prios, want, "{api:?}");
    }
    // A fixed priority is used for everything.
    let (mut tx, _rx, q) = pair(Api::Sysv, 64, Priority::Fixed(7));
    tx.send(&Header::for_payload(FrameKind::End, 0, b""), b"")
        .unwrap();
    assert!(q.lock().unwrap().iter().all(|m| m.1 == 7));
}

#[test]
fn a_mixed_receiver_drains_by_priority_and_lists_what_it_saw() {
    for api in [Api::Posix, Api::Sysv] {
        let (mut tx, mut rx, _q) = pair(api, 64, Priority::Mixed);
        let hello = Header::for_payload(FrameKind::Hello, 0, b"h");
        tx.send(&hello, b"h").unwrap();
        let n = ORDER_SHOWN as u64 + 2;
        for seq in 0..n {
            tx.send(&Header::for_payload(FrameKind::Data, seq, b"d"), b"d")
                .unwrap();
        }
        tx.send(&Header::for_payload(FrameKind::End, n, b""), b"")
            .unwrap();
        assert_eq!(
            rx.recv(&mut Vec::new(), 1).unwrap().unwrap().kind,
            FrameKind::Hello
        );
        let mut seqs = Vec::new();
        loop {
            let h = rx.recv(&mut Vec::new(), 1).unwrap().unwrap();
            if h.kind == FrameKind::End {
                break;
            }
            seqs.push(h.seq);
        }
        assert_eq!(seqs.len() as u64, n, "{api:?}: every message, the end last");
        // Most urgent level first: seq 3 (level 4), then 2, 1, 0 (level 1).
        let at = |s: u64| seqs.iter().position(|&x| x == s).unwrap();
        assert!(
            at(3) < at(2) && at(2) < at(1) && at(1) < at(0),
            "{api:?}: {seqs:?}"
        );
        let order = rx.priority_order().unwrap();
        assert!(order.ends_with(",..."), "{order}");
        assert_eq!(order.split(',').count(), ORDER_SHOWN + 1, "{order}");
        let first = match api {
            Api::Posix => "4,4,4,4,4,4,3,",
            Api::Sysv => "1,1,1,1,1,1,2,",
        };
        assert!(order.starts_with(first), "{api:?}: {order}");
    }
}

#[test]
fn a_short_mixed_run_lists_every_priority() {
    let (mut tx, mut rx, _q) = pair(Api::Posix, 64, Priority::Mixed);
    tx.send(&Header::for_payload(FrameKind::Hello, 0, b"h"), b"h")
        .unwrap();
    for seq in 0..2 {
        tx.send(&Header::for_payload(FrameKind::Data, seq, b"d"), b"d")
            .unwrap();
    }
    for _ in 0..3 {
        rx.recv(&mut Vec::new(), 1).unwrap();
    }
    assert_eq!(rx.priority_order().as_deref(), Some("2,1"));
    assert_eq!(tx.priority_order(), None, "a sender lists nothing");
}

#[test]
fn raw_messages_are_taken_whole_and_a_quiet_queue_ends_the_run() {
    let q = Shared::default();
    let o = opts(Api::Posix, true);
    let mut rx = MqLink::receiver(&o, endpoint(Api::Posix, 64, &q), false);
    assert_eq!(rx.raw_message_max(), Some(64));
    // Before any message a quiet queue is a stall.
    assert_eq!(
        rx.recv_raw(&mut [0u8; 8]).unwrap_err().cause,
        Cause::Timeout
    );
    put(&q, b"12345678".to_vec());
    let mut buf = [0u8; 8];
    assert_eq!(rx.recv_raw(&mut buf).unwrap(), 8);
    assert_eq!(&buf, b"12345678");
    put(&q, b"123456789".to_vec());
    let e = rx.recv_raw(&mut buf).unwrap_err();
    assert!(e.call.contains("a 9-byte message was taken"), "{e}");
    assert_eq!(rx.recv_raw(&mut buf).unwrap(), 0);
}

#[test]
fn a_sysv_sender_waits_until_its_messages_are_taken() {
    let (mut tx, _rx, q) = pair(Api::Sysv, 64, Priority::Fixed(1));
    tx.send(&Header::for_payload(FrameKind::End, 0, b""), b"")
        .unwrap();
    let start = Instant::now();
    let e = tx.finish_sending().unwrap_err();
    assert_eq!(e.cause, Cause::Timeout, "{e}");
    assert!(e.call.contains("did not take the last 2 messages"), "{e}");
    assert!(start.elapsed() >= Duration::from_millis(100));
    q.lock().unwrap().clear();
    tx.finish_sending().unwrap();
    // POSIX (not raw): the queue outlives its name; nothing to wait for.
    let (mut tx, _rx, _q) = pair(Api::Posix, 64, Priority::Fixed(1));
    tx.send(&Header::for_payload(FrameKind::End, 0, b""), b"")
        .unwrap();
    let start = Instant::now();
    tx.finish_sending().unwrap();
    assert!(start.elapsed() < Duration::from_millis(100));
    // POSIX raw, on a queue this sender made: it waits too.
    let q = Shared::default();
    let mut tx = MqLink::sender(
        &opts(Api::Posix, true),
        endpoint(Api::Posix, 64, &q),
        None,
        Priority::Fixed(0),
    );
    tx.send_raw(b"x").unwrap();
    assert_eq!(tx.finish_sending().unwrap_err().cause, Cause::Timeout);
    // A receiver never waits.
    let (_tx, mut rx, q) = pair(Api::Sysv, 64, Priority::Fixed(1));
    put(&q, b"x".to_vec());
    rx.finish_sending().unwrap();
}

#[test]
fn only_a_mixed_receiver_waits_for_a_backlog_and_only_before_the_first_data() {
    for (priority, waits) in [(Priority::Fixed(0), false), (Priority::Mixed, true)] {
        let q = Shared::default();
        let looks = Arc::default();
        let o = opts(Api::Posix, false);
        let mut tx = MqLink::sender(&o, endpoint(Api::Posix, 64, &q), None, priority);
        let mut rx = MqLink::receiver(&o, watched(Api::Posix, 64, &q, &looks), false);
        tx.send(&Header::for_payload(FrameKind::Hello, 0, b"h"), b"h")
            .unwrap();
        for seq in 0..3 {
            tx.send(&Header::for_payload(FrameKind::Data, seq, b"d"), b"d")
                .unwrap();
        }
        tx.send(&Header::for_payload(FrameKind::End, 3, b""), b"")
            .unwrap();
        for _ in 0..5 {
            rx.recv(&mut Vec::new(), 1).unwrap();
        }
        let looks = looks.lock().unwrap();
        if waits {
            // Every look came after the setup and the hello, before any data was taken.
            assert!(!looks.is_empty());
            assert!(looks.iter().all(|&n| n == 2), "{looks:?}");
        } else {
            assert!(looks.is_empty(), "{looks:?}");
        }
    }
}
