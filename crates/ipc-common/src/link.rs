//! What a pair gives the workload: a channel that carries frames one way or both ways.
//! Byte streams (pipes, FIFOs, stream sockets) use [`crate::stream::FdStream`];
//! message-oriented mechanisms implement the trait directly.

use crate::error::{Error, Result};
use crate::frame::Header;
use crate::workload::PayloadGen;

/// What [`Link::recv_generated`] returns: the header and whether the payload is intact,
/// or `None`: the peer closed its end.
pub type Received = Option<(Header, bool)>;

pub trait Link {
    /// Names the channel in messages, e.g. `FIFO /tmp/ipc-pipe.fifo`.
    fn object(&self) -> &str;

    /// Send one frame: the header, then the payload.
    fn send(&mut self, header: &Header, payload: &[u8]) -> Result<()>;

    /// Receive one frame; the payload lands in `buf`, resized to its length, which grows
    /// as the bytes arrive. A header announcing more than `max` payload bytes is refused
    /// before anything is allocated for it ([`crate::frame::check_len`]).
    /// `Ok(None)`: the peer closed its end (end of file).
    fn recv(&mut self, buf: &mut Vec<u8>, max: usize) -> Result<Option<Header>>;

    /// `--raw`: send payload bytes as they are.
    fn send_raw(&mut self, bytes: &[u8]) -> Result<()>;

    /// `--raw`: receive up to `buf.len()` bytes (a byte stream fills the buffer unless
    /// the peer closed; a message channel returns one message). 0 means end of file.
    fn recv_raw(&mut self, buf: &mut [u8]) -> Result<usize>;

    /// `--raw` on a message channel: the longest message it can deliver. The receiver's
    /// buffer is made at least this large, so no message is refused after it was
    /// already taken off the channel. `None`: a byte stream (any buffer size works).
    fn raw_message_max(&self) -> Option<usize> {
        None
    }

    /// Whether messages may arrive out of sequence order (a priority queue drained
    /// highest priority first). The receiver then checks that every sequence number
    /// arrives exactly once instead of in order. Call after the first `recv`.
    fn reorders(&self) -> bool {
        false
    }

    /// Make everything sent so far visible to the peer now. A channel that batches its
    /// publications (shared memory) does it here; the workload calls it before it
    /// blocks on anything but the link (reading its input).
    fn flush(&mut self) -> Result<()> {
        Ok(())
    }

    /// Does this link make generated payloads while copying them in, and check them
    /// while copying them out ([`Link::send_generated`], [`Link::recv_generated`])? The
    /// workload then skips its own generate-then-send and copy-then-compare passes.
    fn fuses_generated(&self) -> bool {
        false
    }

    /// Send data frame `header` whose payload is the generated payload of
    /// `(seed, header.seq)`, `buf.len()` bytes long: made into `buf` (the sender's own
    /// copy) and into the channel in one pass.
    fn send_generated(&mut self, header: &Header, seed: u64, buf: &mut [u8]) -> Result<()> {
        crate::workload::fill_generated(seed, header.seq, buf);
        self.send(header, buf)
    }

    /// [`Link::recv`], checking the payload against the generated payload of
    /// `(seed, frame's seq)` as it is copied into `buf`: one read of each byte, no
    /// regenerated buffer. Returns the header and whether the payload is intact: `size`
    /// bytes, every one as generated. `Ok(None)`: the peer closed its end.
    fn recv_generated(&mut self, buf: &mut Vec<u8>, size: usize, seed: u64) -> Result<Received> {
        recv_then_match(self, buf, size, seed)
    }

    /// Does this link build and check payloads in place (shared memory `--zero-copy`)?
    fn in_place(&self) -> bool {
        false
    }

    /// Send data message `seq`: the `len` bytes of generated payload of `(seed, seq)`
    /// ([`crate::workload::PayloadGen`]), made straight in the channel.
    fn send_in_place(&mut self, _seed: u64, _seq: u64, _len: usize) -> Result<()> {
        Err(unsupported(self.object()))
    }

    /// Receive one frame and check its payload where it lies against the generated
    /// payload of `(seed, frame's seq)`, instead of copying it into a buffer. Returns the
    /// header and whether the frame is intact: `len == size` and every byte as generated.
    fn recv_in_place(&mut self, _seed: u64, _size: usize) -> Result<(Header, bool)> {
        Err(unsupported(self.object()))
    }
}

fn unsupported(object: &str) -> Error {
    Error::usage(
        format!("{object} cannot build messages in place"),
        "--zero-copy is for shared memory",
    )
}

/// [`Link::recv_generated`] in two passes: [`Link::recv`], then a comparison with the
/// generated payload of `(seed, frame's seq)`, generated as it goes (no second buffer).
pub fn recv_then_match<L: Link + ?Sized>(
    link: &mut L,
    buf: &mut Vec<u8>,
    size: usize,
    seed: u64,
) -> Result<Received> {
    let Some(frame) = link.recv(buf, size)? else {
        return Ok(None);
    };
    let intact = buf.len() == size && PayloadGen::new(seed, frame.seq).matches(buf);
    Ok(Some((frame, intact)))
}
