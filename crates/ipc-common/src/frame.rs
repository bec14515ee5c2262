//! The message frame: what turns a byte stream (pipe, FIFO, stream socket) into
//! messages, and what every message-oriented channel carries in front of its payload.
//!
//! ```text
//! offset  size  field
//!      0     4  magic "IPCF" (0x46435049 little-endian)
//!      4     1  kind: 1 hello, 2 data, 3 end, 4 echo
//!      5     3  reserved, zero
//!      8     4  payload length in bytes
//!     12     4  CRC-32 of the sequence number and the payload
//!     16     8  sequence number
//!     24     -  payload
//! ```
//! All fields are little-endian. A receiver trusts none of them: the magic and kind are
//! checked, the CRC is recomputed, and the length is bounded before anything is
//! allocated: before the hello a frame may be no longer than a hello, after it no longer
//! than the message size the hello announced ([`check_len`]); and a receiver's buffer
//! grows as the bytes actually arrive, not to what a header claims.

use crate::args::{Mode, MAX_SIZE};

pub const MAGIC: u32 = u32::from_le_bytes(*b"IPCF");
pub const HEADER_LEN: usize = 24;
/// Protocol version announced in the hello; a peer with another version is refused.
pub const VERSION: u32 = 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum FrameKind {
    /// The sender announces the workload (a [`Hello`] payload).
    Hello = 1,
    /// One message.
    Data = 2,
    /// The sender is done; `seq` is the number of data messages it sent.
    End = 3,
    /// Pingpong: the receiver's response, the request's bytes sent back.
    Echo = 4,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub kind: FrameKind,
    pub len: u32,
    pub crc: u32,
    pub seq: u64,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    #[error(
        "bad magic {0:#010x} (expected {MAGIC:#010x}): the stream is not in step with the sender"
    )]
    Magic(u32),
    #[error("unknown frame kind {0}")]
    Kind(u8),
    #[error("frame length {0} is larger than the largest message ({MAX_SIZE} bytes)")]
    Length(u32),
    #[error("hello payload is {0} bytes, expected {HELLO_LEN}")]
    HelloLength(usize),
    #[error("peer speaks protocol version {0}, this program speaks {VERSION}; run the same build on both sides")]
    Version(u32),
    #[error("hello has an invalid {0}")]
    HelloField(&'static str),
}

/// Refuse a frame whose header announces more than `max` payload bytes: the most the
/// receiver accepts at this point (a hello's [`HELLO_LEN`] before the hello, the size the
/// hello announced after it). A verification error (exit 3) naming the bound.
#[inline]
pub fn check_len(header: &Header, max: usize, object: &str) -> crate::Result<usize> {
    let len = header.len as usize;
    if len > max {
        return Err(too_long(header, max, object));
    }
    Ok(len)
}

/// [`check_len`]'s error, out of the per-message path.
#[cold]
fn too_long(header: &Header, max: usize, object: &str) -> crate::Error {
    let len = header.len;
    let bound = if max == HELLO_LEN && header.kind == FrameKind::Hello {
        format!("the {HELLO_LEN} bytes of a hello")
    } else {
        format!("the bound of {max} bytes (before the hello: a hello's {HELLO_LEN}; after it: the message size it announced)")
    };
    crate::Error::verify(
        object,
        format!(
            "a {:?} frame header announces {len} payload bytes, more than {bound}; nothing was allocated for it",
            header.kind
        ),
    )
    .with_remedy("the other side is not this program or its data is corrupted; run the same build on both sides")
}

/// CRC-32 over the sequence number and the payload, so a message delivered under the
/// wrong sequence number fails its check too.
pub fn checksum(seq: u64, payload: &[u8]) -> u32 {
    let mut h = checksum_start(seq);
    h.update(payload);
    h.finalize()
}

/// The checksum of message `seq` so far, for a payload that arrives in pieces.
pub fn checksum_start(seq: u64) -> crc32fast::Hasher {
    let mut h = crc32fast::Hasher::new();
    h.update(&seq.to_le_bytes());
    h
}

impl Header {
    pub fn for_payload(kind: FrameKind, seq: u64, payload: &[u8]) -> Header {
        Header {
            kind,
            len: u32::try_from(payload.len()).expect("payload bounded by MAX_SIZE"),
            crc: checksum(seq, payload),
            seq,
        }
    }

    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..4].copy_from_slice(&MAGIC.to_le_bytes());
        b[4] = self.kind as u8;
        b[8..12].copy_from_slice(&self.len.to_le_bytes());
        b[12..16].copy_from_slice(&self.crc.to_le_bytes());
        b[16..24].copy_from_slice(&self.seq.to_le_bytes());
        b
    }

    /// Parse untrusted bytes; the length is bounded so the caller may allocate it.
    pub fn decode(b: &[u8; HEADER_LEN]) -> Result<Header, FrameError> {
        let word = |at: usize| u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
        let magic = word(0);
        if magic != MAGIC {
            return Err(FrameError::Magic(magic));
        }
        let kind = match b[4] {
            1 => FrameKind::Hello,
            2 => FrameKind::Data,
            3 => FrameKind::End,
            4 => FrameKind::Echo,
            k => return Err(FrameError::Kind(k)),
        };
        let len = word(8);
        if len as usize > MAX_SIZE {
            return Err(FrameError::Length(len));
        }
        let mut seq = [0u8; 8];
        seq.copy_from_slice(&b[16..24]);
        Ok(Header {
            kind,
            len,
            crc: word(12),
            seq: u64::from_le_bytes(seq),
        })
    }

    pub fn payload_ok(&self, payload: &[u8]) -> bool {
        payload.len() == self.len as usize && checksum(self.seq, payload) == self.crc
    }
}

/// Where the sender's payloads come from; the receiver needs to know to check them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Payload {
    /// Generated from (seed, sequence): the receiver regenerates and compares.
    Generated { seed: u64 },
    /// A file's bytes: the receiver checks the CRC and writes them out.
    File,
}

/// The workload the sender announces first, so a receiver started with no flags
/// follows it, and one started with different flags is told so.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hello {
    pub mode: Mode,
    pub payload: Payload,
    /// Messages the sender will send; `u64::MAX` when a file's length is unknown.
    pub count: u64,
    /// The largest message size.
    pub size: u64,
}

pub const HELLO_LEN: usize = 40;

impl Hello {
    pub fn encode(&self) -> [u8; HELLO_LEN] {
        let mut b = [0u8; HELLO_LEN];
        b[0..4].copy_from_slice(&VERSION.to_le_bytes());
        b[4] = match self.mode {
            Mode::Stream => 0,
            Mode::Pingpong => 1,
        };
        let seed = match self.payload {
            Payload::Generated { seed } => seed,
            Payload::File => {
                b[5] = 1;
                0
            }
        };
        b[8..16].copy_from_slice(&self.count.to_le_bytes());
        b[16..24].copy_from_slice(&self.size.to_le_bytes());
        b[24..32].copy_from_slice(&seed.to_le_bytes());
        b
    }

    pub fn decode(b: &[u8]) -> Result<Hello, FrameError> {
        if b.len() != HELLO_LEN {
            return Err(FrameError::HelloLength(b.len()));
        }
        let u64_at = |at: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&b[at..at + 8]);
            u64::from_le_bytes(w)
        };
        let version = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        if version != VERSION {
            return Err(FrameError::Version(version));
        }
        let mode = match b[4] {
            0 => Mode::Stream,
            1 => Mode::Pingpong,
            _ => return Err(FrameError::HelloField("mode")),
        };
        let payload = match b[5] {
            0 => Payload::Generated { seed: u64_at(24) },
            1 => Payload::File,
            _ => return Err(FrameError::HelloField("payload kind")),
        };
        let size = u64_at(16);
        if size == 0 || size > MAX_SIZE as u64 {
            return Err(FrameError::HelloField("message size"));
        }
        Ok(Hello {
            mode,
            payload,
            count: u64_at(8),
            size,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip_and_rejects() {
        let h = Header::for_payload(FrameKind::Data, 7, b"hello");
        let b = h.encode();
        assert_eq!(Header::decode(&b), Ok(h));
        assert!(h.payload_ok(b"hello"));
        assert!(!h.payload_ok(b"hellO"));
        let mut bad = b;
        bad[0] ^= 1;
        assert!(matches!(Header::decode(&bad), Err(FrameError::Magic(_))));
        let mut bad = b;
        bad[4] = 9;
        assert_eq!(Header::decode(&bad), Err(FrameError::Kind(9)));
        let mut bad = b;
        bad[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(Header::decode(&bad), Err(FrameError::Length(u32::MAX)));
    }

    #[test]
    fn wrong_sequence_fails_the_checksum() {
        let mut h = Header::for_payload(FrameKind::Data, 1, b"abc");
        h.seq = 2;
        assert!(!h.payload_ok(b"abc"));
    }

    #[test]
    fn hello_round_trip() {
        for payload in [Payload::Generated { seed: 99 }, Payload::File] {
            let h = Hello {
                mode: Mode::Pingpong,
                payload,
                count: u64::MAX,
                size: 4096,
            };
            assert_eq!(Hello::decode(&h.encode()), Ok(h));
        }
        let mut b = Hello {
            mode: Mode::Stream,
            payload: Payload::File,
            count: 1,
            size: 1,
        }
        .encode();
        b[0] = 2;
        assert_eq!(Hello::decode(&b), Err(FrameError::Version(2)));
        assert!(Hello::decode(&b[..10]).is_err());
    }
}
