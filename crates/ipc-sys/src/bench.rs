//! What `ipc-bench` needs from the kernel beyond the pairs: each child's CPU time and
//! peak RSS as `wait4(2)` reports them when it is reaped, and a word of a shared
//! mapping for the baselines' ping-pongs. Built only with the `bench` feature.

use super::shm::Mapping;
use std::io;
use std::sync::atomic::AtomicU32;
use std::time::Duration;

/// How a reaped child ended and what it used, from `wait4(2)`'s `struct rusage`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Reaped {
    /// The exit code, or 128 + the signal that killed it.
    pub code: i32,
    /// User and system CPU time of the child (and of any children it reaped itself).
    pub user: Duration,
    pub system: Duration,
    /// Peak resident set size (`ru_maxrss`), in KiB.
    pub max_rss_kib: u64,
}

fn tv(t: libc::timeval) -> Duration {
    Duration::from_secs(t.tv_sec.max(0) as u64) + Duration::from_micros(t.tv_usec.max(0) as u64)
}

/// `wait4(pid, WNOHANG)`: `Ok(None)` while the child runs, its end and usage once it
/// exited (it is reaped then: do not wait for it again by other means).
pub fn try_reap(pid: u32) -> io::Result<Option<Reaped>> {
    let pid = libc::pid_t::try_from(pid)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "pid out of range"))?;
    let mut status: libc::c_int = 0;
    let mut ru = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    loop {
        // SAFETY: wait4 writes the status int and the rusage struct we pass, both live
        // and properly sized; the rusage was zeroed, so it is initialised either way.
        let rc = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, ru.as_mut_ptr()) };
        if rc == 0 {
            return Ok(None);
        }
        if rc < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return Err(e);
        }
        break;
    }
    // SAFETY: zero-initialised above and filled by a successful wait4.
    let ru = unsafe { ru.assume_init() };
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else if libc::WIFSIGNALED(status) {
        128 + libc::WTERMSIG(status)
    } else {
        -1
    };
    Ok(Some(Reaped {
        code,
        user: tv(ru.ru_utime),
        system: tv(ru.ru_stime),
        max_rss_kib: ru.ru_maxrss.max(0) as u64,
    }))
}

/// The 32-bit word at `offset` of a shared mapping, for atomics both processes use
/// (the baselines' cache-line and futex ping-pongs).
pub fn shared_word(map: &Mapping, offset: usize) -> &AtomicU32 {
    assert!(
        offset.is_multiple_of(4) && offset + 4 <= map.len(),
        "word at {offset} outside the {}-byte mapping or misaligned",
        map.len()
    );
    // SAFETY: the address is inside the mapping (asserted), 4-byte aligned (the mapping
    // is page-aligned and the offset a multiple of 4), and lives as long as `map`, which
    // the returned reference borrows. An AtomicU32 is valid for any bits, and the other
    // process touches this word only through atomics too.
    unsafe { &*((map.addr() + offset) as *const AtomicU32) }
}
