//! A hostile peer's frames: hand-made headers written into a FIFO with plain std::fs,
//! read by a real `pipe-pair recv`. The receiver runs under `prlimit --as` (an address
//! space of 200 MiB), so allocating what a header announces (256 MiB) would abort it;
//! it must instead refuse the frame (exit 3, naming the bound) or, for a frame within
//! the bound, grow its buffer only as bytes arrive.

use integration_tests::*;
use ipc_common::frame::{FrameKind, Header, Hello, Payload, HEADER_LEN, HELLO_LEN};
use ipc_common::Mode;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

/// The receiver's address-space limit: far less than the 256 MiB a header may claim.
const AS_LIMIT: &str = "--as=209715200";
const HUGE: u32 = 256 << 20;

/// `pipe-pair recv --fifo PATH` under `prlimit`, or `None` (with the reason printed)
/// when prlimit is missing, which is a failure under CI=true.
fn limited_receiver(fifo: &PathBuf) -> Option<Command> {
    let test = format!("the hostile frames of {}", fifo.display());
    if !require_tool(&test, "prlimit", "--version") {
        return None;
    }
    let mut c = Command::new("prlimit");
    c.arg(AS_LIMIT)
        .arg("--")
        .arg(bin("pipe-pair"))
        .args(["recv", "--json", "--timeout", "10", "--fifo"])
        .arg(fifo)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    Some(c)
}

fn hello(size: u64) -> Vec<u8> {
    let h = Hello {
        mode: Mode::Stream,
        payload: Payload::File,
        count: 4,
        size,
    }
    .encode();
    let mut v = Header::for_payload(FrameKind::Hello, 0, &h)
        .encode()
        .to_vec();
    v.extend_from_slice(&h);
    v
}

/// A header that claims `len` payload bytes (its CRC is irrelevant: it is refused first).
fn header(kind: FrameKind, seq: u64, len: u32) -> [u8; HEADER_LEN] {
    Header {
        kind,
        len,
        crc: 0,
        seq,
    }
    .encode()
}

fn data(seq: u64, payload: &[u8]) -> Vec<u8> {
    let mut v = Header::for_payload(FrameKind::Data, seq, payload)
        .encode()
        .to_vec();
    v.extend_from_slice(payload);
    v
}

/// Start the receiver, write `bytes` into its FIFO as a foreign program would, close.
fn feed(tag: &str, bytes: &[u8]) -> Option<Output> {
    let fifo = std::env::temp_dir().join(unique(tag));
    let child = start(&mut limited_receiver(&fifo)?);
    wait_for_path(&fifo, Duration::from_secs(20));
    {
        // Blocks until the reader has it open (it has: it made the FIFO to read it).
        let mut w = std::fs::OpenOptions::new()
            .write(true)
            .open(&fifo)
            .expect("open the FIFO for writing");
        // The receiver may stop reading early (it refused the frame): that is the point.
        let _ = w.write_all(bytes);
    }
    let out = finish_within(child, Duration::from_secs(30));
    assert!(!fifo.exists(), "the FIFO was left behind");
    Some(out)
}

#[test]
fn a_header_before_the_hello_may_claim_no_more_than_a_hello() {
    let bytes = header(FrameKind::Hello, 0, HUGE);
    let Some(out) = feed("tf-prehello", &bytes) else {
        return;
    };
    let hello = format!("the {HELLO_LEN} bytes of a hello");
    assert_exit(
        &out,
        3,
        &[&format!("announces {HUGE} payload bytes"), &hello],
    );
}

/// A hello that announces a message size of 0, or one over the largest: refused
/// (exit 3) naming the field, before any data.
#[test]
fn a_hello_with_an_impossible_message_size_is_refused() {
    for size in [0, ipc_common::args::MAX_SIZE as u64 + 1] {
        let Some(out) = feed("tf-hello", &hello(size)) else {
            return;
        };
        assert_exit(&out, 3, &["hello has an invalid message size"]);
    }
}

#[test]
fn a_header_after_the_hello_may_claim_no_more_than_the_announced_size() {
    let mut bytes = hello(1024);
    bytes.extend_from_slice(&header(FrameKind::Data, 0, HUGE));
    let Some(out) = feed("tf-posthello", &bytes) else {
        return;
    };
    let huge = format!("announces {HUGE} payload bytes");
    assert_exit(&out, 3, &[&huge, "bound of 1024 bytes"]);
}

#[test]
fn a_large_announced_frame_costs_only_the_bytes_that_arrive() {
    // The hello allows 256 MiB messages; the frame claims that much and then the
    // sender stops after 100 bytes: the receiver must not have reserved 256 MiB.
    let mut bytes = hello(u64::from(HUGE));
    bytes.extend_from_slice(&header(FrameKind::Data, 0, HUGE));
    bytes.extend_from_slice(&[7u8; 100]);
    let Some(out) = feed("tf-grow", &bytes) else {
        return;
    };
    assert_code(&out, 4);
    let err = stderr(&out);
    assert!(
        err.contains("end of file in the middle of a frame"),
        "{err}"
    );
}

#[test]
fn a_sequence_number_with_no_successor_is_a_verification_error() {
    let mut bytes = hello(16);
    bytes.extend_from_slice(&data(0, &[1u8; 16]));
    bytes.extend_from_slice(&data(u64::MAX, &[2u8; 16]));
    bytes.extend_from_slice(&Header::for_payload(FrameKind::End, 2, &[]).encode());
    let Some(out) = feed("tf-seq", &bytes) else {
        return;
    };
    let says = format!("sequence number {} leaves no room", u64::MAX);
    assert_exit(&out, 3, &[&says]);
}
