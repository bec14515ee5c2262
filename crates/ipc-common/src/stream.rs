//! A byte stream over file descriptors (pipe, FIFO, stream socket) carrying frames.
//!
//! The descriptors are non-blocking: a call that would block waits in `poll(2)` for at
//! most `--timeout`, so a stalled or vanished peer ends the run instead of hanging it,
//! while a busy stream costs no extra system call. Reads go through a buffer, so many
//! small frames arrive per `read(2)`; each frame is sent with one `writev(2)`.

use crate::error::{Context, Error, Result};
use crate::frame::{check_len, Header, HEADER_LEN};
use crate::link::Link;
use crate::narrate;
use nix::fcntl::{fcntl, FcntlArg, FdFlag, OFlag};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use std::fs::File;
use std::io::{self, IoSlice, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

const READ_BUF: usize = 64 * 1024;

/// The lecture idea a byte-stream read or write shows, for `-v`.
pub const IDEA_COPY: &str = "message passing: one system call and one copy through the kernel";

pub struct FdStream {
    object: String,
    rd: Option<File>,
    wr: Option<File>,
    timeout: Duration,
    buf: Box<[u8]>,
    pos: usize,
    end: usize,
    /// The reading end was opened before any writer (a FIFO): until the first bytes
    /// come, "no writer" means "not there yet", not end of file.
    await_writer: bool,
}

/// Put a descriptor in non-blocking mode.
pub fn set_nonblocking(fd: BorrowedFd<'_>, object: &str) -> Result<()> {
    let flags = fcntl(fd.as_raw_fd(), FcntlArg::F_GETFL).on(&object, "fcntl(F_GETFL)")?;
    let flags = OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK;
    fcntl(fd.as_raw_fd(), FcntlArg::F_SETFL(flags)).on(&object, "fcntl(F_SETFL, O_NONBLOCK)")?;
    Ok(())
}

/// Set or clear close-on-exec: a child must inherit exactly the descriptors meant for it.
pub fn set_cloexec(fd: BorrowedFd<'_>, on: bool, object: &str) -> Result<()> {
    let flags = if on {
        FdFlag::FD_CLOEXEC
    } else {
        FdFlag::empty()
    };
    fcntl(fd.as_raw_fd(), FcntlArg::F_SETFD(flags)).on(&object, "fcntl(F_SETFD)")?;
    Ok(())
}

/// Wait until `fd` is ready for `events`, at most `timeout`. Returns the events seen;
/// `Ok(None)` when the time ran out.
pub fn wait_ready(
    fd: BorrowedFd<'_>,
    events: PollFlags,
    timeout: Duration,
    object: &str,
) -> Result<Option<PollFlags>> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let ms = i32::try_from(left.as_millis()).unwrap_or(i32::MAX);
        let mut fds = [PollFd::new(fd, events)];
        match poll(
            &mut fds,
            PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX),
        ) {
            Ok(0) if Instant::now() >= deadline => return Ok(None),
            Ok(0) => continue,
            Ok(_) => return Ok(Some(fds[0].revents().unwrap_or(PollFlags::empty()))),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(Error::os(object, "poll", e.into())),
        }
    }
}

/// The peer made no progress within the timeout (exit 4).
pub fn stalled(object: &str, timeout: Duration, what: &str) -> Error {
    Error::stalled(object, timeout, what)
}

impl FdStream {
    /// `rd` and `wr` may be the same socket (duplicated) or two pipes; either may be
    /// absent for a one-way stream. Both are switched to non-blocking mode.
    pub fn new(
        object: impl Into<String>,
        rd: Option<OwnedFd>,
        wr: Option<OwnedFd>,
        timeout: Duration,
    ) -> Result<FdStream> {
        let object = object.into();
        for fd in rd.iter().chain(wr.iter()) {
            set_nonblocking(fd.as_fd(), &object)?;
        }
        Ok(FdStream {
            object,
            rd: rd.map(File::from),
            wr: wr.map(File::from),
            timeout,
            buf: vec![0u8; READ_BUF].into_boxed_slice(),
            pos: 0,
            end: 0,
            await_writer: false,
        })
    }

    /// The writer may not have opened its end yet: the first read waits (up to the
    /// timeout) for data instead of taking "no writer" for end of file.
    pub fn await_writer(mut self) -> FdStream {
        self.await_writer = true;
        self
    }

    /// One `read(2)`, into `dst` or (with `None`) into the internal buffer, waiting
    /// (bounded by the timeout) while nothing is there. 0 = end of file.
    fn read_fd(&mut self, dst: Option<&mut [u8]>) -> Result<usize> {
        let Some(rd) = self.rd.as_mut() else {
            return Err(Error::usage(
                format!("{} is open for writing only", self.object),
                "this is a bug: a receive on a send-only stream",
            ));
        };
        let dst = match dst {
            Some(d) => d,
            None => &mut self.buf[..],
        };
        if self.await_writer {
            // poll reports no hang-up on a FIFO that never had a writer, so this waits.
            if wait_ready(rd.as_fd(), PollFlags::POLLIN, self.timeout, &self.object)?.is_none() {
                return Err(stalled(
                    &self.object,
                    self.timeout,
                    "the peer did not open its end",
                ));
            }
            self.await_writer = false;
        }
        loop {
            match rd.read(dst) {
                Ok(0) => {
                    // Always shown: the one read that ends the stream is a lecture point.
                    narrate::call(
                        format_args!("read(fd {}, {} bytes) = 0", rd.as_raw_fd(), dst.len()),
                        "pipes: read returns 0 (end of file) once every write end is closed",
                    );
                    return Ok(0);
                }
                Ok(n) => {
                    narrate::repeated(
                        "read",
                        format_args!("read(fd {}, {} bytes) = {n}", rd.as_raw_fd(), dst.len()),
                        IDEA_COPY,
                    );
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if wait_ready(rd.as_fd(), PollFlags::POLLIN, self.timeout, &self.object)?
                        .is_none()
                    {
                        return Err(stalled(&self.object, self.timeout, "nothing arrived"));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::os(&self.object, "read", e)),
            }
        }
    }

    /// Copy up to `dst.len()` bytes: from the buffer if it holds any, else after one
    /// read (straight into `dst` when it is large). 0 = end of file.
    fn read_into(&mut self, dst: &mut [u8]) -> Result<usize> {
        if self.pos == self.end {
            if dst.len() >= READ_BUF {
                return self.read_fd(Some(dst));
            }
            self.end = self.read_fd(None)?;
            self.pos = 0;
        }
        let n = (self.end - self.pos).min(dst.len());
        dst[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }

    /// Fill `dst` completely. `Ok(false)`: clean end of file before the first byte.
    fn read_exact(&mut self, dst: &mut [u8]) -> Result<bool> {
        let mut got = 0;
        while got < dst.len() {
            let n = self.read_into(&mut dst[got..])?;
            if n == 0 {
                if got == 0 {
                    return Ok(false);
                }
                return Err(Error::peer(
                    &self.object,
                    format!(
                        "end of file in the middle of a frame ({got} of {} bytes)",
                        dst.len()
                    ),
                    "the sender stopped mid-message; check its output",
                ));
            }
            got += n;
        }
        Ok(true)
    }

    fn cut_after_header(&self) -> Error {
        Error::peer(
            &self.object,
            "end of file after a frame header",
            "the sender stopped mid-message; check its output",
        )
    }

    /// Write all of `parts` with as few `writev(2)` calls as the pipe allows.
    fn write_all(&mut self, parts: &mut [IoSlice<'_>]) -> Result<()> {
        let FdStream {
            object,
            wr,
            timeout,
            ..
        } = self;
        let timeout = *timeout;
        let mut left: usize = parts.iter().map(|p| p.len()).sum();
        let mut parts = parts;
        let Some(wr) = wr.as_mut() else {
            return Err(Error::usage(
                format!("{object} is open for reading only"),
                "this is a bug: a send on a receive-only stream",
            ));
        };
        while left > 0 {
            match wr.write_vectored(parts) {
                Ok(0) => {
                    return Err(Error::peer(
                        &*object,
                        "write returned 0",
                        "the reader is gone",
                    ))
                }
                Ok(n) => {
                    narrate::repeated(
                        "write",
                        format_args!("writev(fd {}, {left} bytes) = {n}", wr.as_raw_fd()),
                        IDEA_COPY,
                    );
                    left -= n;
                    IoSlice::advance_slices(&mut parts, n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if wait_ready(wr.as_fd(), PollFlags::POLLOUT, timeout, object)?.is_none() {
                        return Err(stalled(object, timeout, "the reader took nothing"));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::os(&*object, "write", e)),
            }
        }
        Ok(())
    }
}

impl FdStream {
    /// After the end frame: read once more, to see the end of file the sender's close
    /// makes (waiting at most the timeout). True if it came; false if bytes did.
    pub fn await_eof(&mut self) -> Result<bool> {
        let mut byte = [0u8; 1];
        Ok(self.read_into(&mut byte)? == 0)
    }

    /// Close both ends, saying so: closing the write end is what lets the reader see
    /// end of file.
    pub fn close(self) {
        for file in [self.wr, self.rd].into_iter().flatten() {
            let n = file.as_raw_fd();
            drop(file);
            narrate::call(
                format_args!("close(fd {n}) = 0"),
                "pipes: the last close of a write end is the reader's end of file",
            );
        }
    }
}

impl Link for FdStream {
    fn object(&self) -> &str {
        &self.object
    }

    fn send(&mut self, header: &Header, payload: &[u8]) -> Result<()> {
        let head = header.encode();
        self.write_all(&mut [IoSlice::new(&head), IoSlice::new(payload)])
    }

    fn recv(&mut self, buf: &mut Vec<u8>, max: usize) -> Result<Option<Header>> {
        let mut head = [0u8; HEADER_LEN];
        if !self.read_exact(&mut head)? {
            return Ok(None);
        }
        let header = Header::decode(&head)
            .map_err(|e| Error::verify(&self.object, format!("bad frame header: {e}")))?;
        let total = check_len(&header, max, &self.object)?;
        // A buffer already this large costs nothing; otherwise it grows (at most
        // doubling) as the payload arrives, so a header alone never reserves memory.
        let mut got = if buf.capacity() >= total { total } else { 0 };
        buf.resize(got, 0);
        if got > 0 && !self.read_exact(buf)? {
            return Err(self.cut_after_header());
        }
        while got < total {
            let step = (total - got).min(got.max(READ_BUF));
            buf.resize(got + step, 0);
            if !self.read_exact(&mut buf[got..])? {
                return Err(self.cut_after_header());
            }
            got += step;
        }
        Ok(Some(header))
    }

    fn send_raw(&mut self, bytes: &[u8]) -> Result<()> {
        self.write_all(&mut [IoSlice::new(bytes)])
    }

    fn recv_raw(&mut self, buf: &mut [u8]) -> Result<usize> {
        let mut got = 0;
        while got < buf.len() {
            let n = self.read_into(&mut buf[got..])?;
            if n == 0 {
                break;
            }
            got += n;
        }
        Ok(got)
    }
}

#[cfg(test)]
mod tests;
