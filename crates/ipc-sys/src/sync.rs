//! The process-shared synchronisation that lives inside a segment: robust pthread
//! mutexes, condition variables, POSIX semaphores, and futex waits on a shared word.
//! Each object is initialised only by the segment's creator, before it publishes the
//! segment; every wait is timed, so a peer stopped at any instant cannot hold a side.

use std::cell::UnsafeCell;
use std::io;
use std::sync::atomic::AtomicU32;
use std::time::Duration;

/// Result of locking a robust mutex.
#[derive(Debug, PartialEq, Eq)]
pub enum Lock {
    Acquired,
    /// Held by someone else (trylock only).
    Busy,
    /// Acquired, but its previous owner died holding it.
    OwnerDied,
    /// A timed wait ran out (condition variable or semaphore).
    TimedOut,
}

fn errno_result(rc: libc::c_int) -> io::Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(rc))
    }
}

/// Every pthread object here is shared between processes.
const SHARED: libc::c_int = libc::PTHREAD_PROCESS_SHARED;

/// How a process-shared pthread object is initialised: an attribute object made by
/// `init`, set up and used by `set_up_and_use`, then destroyed whatever happened.
///
/// # Safety
/// `init` and `destroy` must be the pthread init and destroy of the attribute type `A`.
unsafe fn init_with_attr<A>(
    init: unsafe extern "C" fn(*mut A) -> libc::c_int,
    destroy: unsafe extern "C" fn(*mut A) -> libc::c_int,
    set_up_and_use: impl FnOnce(*mut A) -> io::Result<()>,
) -> io::Result<()> {
    let mut attr = std::mem::MaybeUninit::<A>::uninit();
    // SAFETY: `init` initialises attr before any other use (the caller's promise), and
    // it is destroyed once, after its last use.
    unsafe {
        errno_result(init(attr.as_mut_ptr()))?;
        let r = set_up_and_use(attr.as_mut_ptr());
        destroy(attr.as_mut_ptr());
        r
    }
}

/// A robust, process-shared pthread mutex inside a segment.
#[repr(transparent)]
pub struct PMutex(UnsafeCell<libc::pthread_mutex_t>);

impl PMutex {
    /// Initialise with PTHREAD_PROCESS_SHARED and PTHREAD_MUTEX_ROBUST. Creator only,
    /// before the segment is published.
    pub fn init(&self) -> io::Result<()> {
        // SAFETY: those are the mutex attribute's own init and destroy; the mutex memory
        // is ours to initialise (not yet published).
        unsafe {
            init_with_attr(
                libc::pthread_mutexattr_init,
                libc::pthread_mutexattr_destroy,
                |attr| {
                    let robust = libc::PTHREAD_MUTEX_ROBUST;
                    errno_result(libc::pthread_mutexattr_setpshared(attr, SHARED))?;
                    errno_result(libc::pthread_mutexattr_setrobust(attr, robust))?;
                    errno_result(libc::pthread_mutex_init(self.0.get(), attr))
                },
            )
        }
    }

    fn result(rc: libc::c_int) -> io::Result<Lock> {
        match rc {
            0 => Ok(Lock::Acquired),
            libc::EBUSY => Ok(Lock::Busy),
            libc::EOWNERDEAD => Ok(Lock::OwnerDied),
            e => Err(io::Error::from_raw_os_error(e)),
        }
    }

    pub fn lock(&self) -> io::Result<Lock> {
        // SAFETY: the mutex lives in a mapping that outlives the call. Its contents are
        // trusted as the module doc says (same user, mode 0600, same build): glibc
        // follows pointers kept inside a robust mutex.
        Self::result(unsafe { libc::pthread_mutex_lock(self.0.get()) })
    }

    /// `pthread_mutex_timedlock`: like [`PMutex::lock`], but `TimedOut` after `timeout`,
    /// so a mutex left locked (a stopped peer, a corrupted segment) cannot block for ever.
    pub fn lock_within(&self, timeout: Duration) -> io::Result<Lock> {
        let deadline = deadline(libc::CLOCK_REALTIME, timeout)?;
        // SAFETY: as for lock; the deadline is a valid timespec on the stack.
        match unsafe { libc::pthread_mutex_timedlock(self.0.get(), &deadline) } {
            libc::ETIMEDOUT => Ok(Lock::TimedOut),
            rc => Self::result(rc),
        }
    }

    pub fn try_lock(&self) -> io::Result<Lock> {
        // SAFETY: as for lock.
        Self::result(unsafe { libc::pthread_mutex_trylock(self.0.get()) })
    }

    /// After `OwnerDied`: mark the state consistent so the mutex stays usable.
    pub fn make_consistent(&self) {
        // SAFETY: called by the thread that holds the mutex after EOWNERDEAD.
        unsafe { libc::pthread_mutex_consistent(self.0.get()) };
    }

    pub fn unlock(&self) {
        // SAFETY: called only by the thread that holds the mutex.
        unsafe { libc::pthread_mutex_unlock(self.0.get()) };
    }
}

/// A process-shared pthread condition variable (CLOCK_MONOTONIC) inside a segment. Only
/// signalled: waiting on it (`pthread_cond_timedwait`) re-locks its mutex with no time
/// limit, which a peer stopped holding that mutex would turn into a hang, so the ring's
/// sleepers wait on a futex word instead.
#[repr(transparent)]
pub struct PCond(UnsafeCell<libc::pthread_cond_t>);

impl PCond {
    pub fn init(&self) -> io::Result<()> {
        // SAFETY: as for PMutex::init, with the condition attribute's init and destroy.
        unsafe {
            init_with_attr(
                libc::pthread_condattr_init,
                libc::pthread_condattr_destroy,
                |attr| {
                    let monotonic = libc::CLOCK_MONOTONIC;
                    errno_result(libc::pthread_condattr_setpshared(attr, SHARED))?;
                    errno_result(libc::pthread_condattr_setclock(attr, monotonic))?;
                    errno_result(libc::pthread_cond_init(self.0.get(), attr))
                },
            )
        }
    }

    pub fn signal(&self) {
        // SAFETY: the condition variable lives in a mapping that outlives the call.
        unsafe { libc::pthread_cond_signal(self.0.get()) };
    }
}

// glibc 2.30+ has sem_clockwait; the libc crate does not declare it yet.
extern "C" {
    fn sem_clockwait(
        sem: *mut libc::sem_t,
        clock: libc::clockid_t,
        abstime: *const libc::timespec,
    ) -> libc::c_int;
}

/// A process-shared POSIX semaphore inside a segment.
#[repr(transparent)]
pub struct Sem(UnsafeCell<libc::sem_t>);

impl Sem {
    /// `sem_init(sem, pshared=1, value)`. Creator only, before publishing.
    pub fn init(&self, value: u32) -> io::Result<()> {
        // SAFETY: the memory is ours to initialise, inside a live mapping.
        if unsafe { libc::sem_init(self.0.get(), 1, value) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// `sem_clockwait` on CLOCK_MONOTONIC (so a wall-clock step cannot stretch a
    /// wait): `Acquired` or `TimedOut` (EINTR is retried).
    pub fn wait(&self, timeout: Duration) -> io::Result<Lock> {
        let deadline = deadline(libc::CLOCK_MONOTONIC, timeout)?;
        loop {
            // SAFETY: the semaphore lives in a mapping that outlives the call; the
            // deadline is a valid timespec on the stack.
            if unsafe { sem_clockwait(self.0.get(), libc::CLOCK_MONOTONIC, &deadline) } == 0 {
                return Ok(Lock::Acquired);
            }
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::ETIMEDOUT) => return Ok(Lock::TimedOut),
                _ => return Err(e),
            }
        }
    }

    pub fn post(&self) -> io::Result<()> {
        // SAFETY: the semaphore lives in a mapping that outlives the call.
        if unsafe { libc::sem_post(self.0.get()) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

/// An absolute time `timeout` from now on `clock`, as the timed waits want.
fn deadline(clock: libc::clockid_t, timeout: Duration) -> io::Result<libc::timespec> {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the struct we pass.
    if unsafe { libc::clock_gettime(clock, &mut now) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let secs = libc::time_t::try_from(timeout.as_secs()).unwrap_or(libc::time_t::MAX);
    let mut nsec = now.tv_nsec + timeout.subsec_nanos() as libc::c_long;
    let mut sec = now.tv_sec.saturating_add(secs);
    if nsec >= 1_000_000_000 {
        nsec -= 1_000_000_000;
        sec = sec.saturating_add(1);
    }
    Ok(libc::timespec {
        tv_sec: sec,
        tv_nsec: nsec,
    })
}

/// `futex(FUTEX_WAIT)`: sleep while `*word == expected`, at most `timeout`. Shared (not
/// FUTEX_PRIVATE), so it works across processes on a MAP_SHARED mapping.
pub fn futex_wait(word: &AtomicU32, expected: u32, timeout: Duration) {
    let ts = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: word is a live, aligned 32-bit atomic; the kernel only reads it. Any
    // return (woken, EAGAIN for a changed value, ETIMEDOUT, EINTR) is fine: callers
    // re-check their condition.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT,
            expected,
            &ts as *const libc::timespec,
        );
    }
}

/// `futex(FUTEX_WAKE)`: wake one waiter on `word`.
pub fn futex_wake(word: &AtomicU32) {
    // SAFETY: word is a live, aligned 32-bit atomic; FUTEX_WAKE touches no memory.
    unsafe {
        libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAKE, 1);
    }
}
