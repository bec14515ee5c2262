//! The only crate with `unsafe`: thin wrappers over the few calls that neither std nor
//! nix offers safely (System V shared memory and queues, process-shared pthread objects,
//! futexes, the mapping of a segment). Each returns `io::Result` with the errno mapped,
//! and each safe function checks what it needs so that no caller can misuse it.
//! It imports nothing from the crates above it.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

/// Take ownership of a descriptor inherited from the parent process (the anonymous
/// pipe or socket of `run`), after checking that it is open, really inherited, and not
/// adopted before.
pub fn adopt_inherited_fd(fd: RawFd) -> io::Result<OwnedFd> {
    // Numbers already adopted: a second OwnedFd for one descriptor would close it twice.
    static ADOPTED: std::sync::Mutex<Vec<RawFd>> = std::sync::Mutex::new(Vec::new());
    let invalid = |why: &str| io::Error::new(io::ErrorKind::InvalidInput, why.to_string());
    if fd < 3 {
        return Err(invalid(
            "descriptors 0-2 are stdin/stdout/stderr, not an inherited pipe",
        ));
    }
    // SAFETY: F_GETFD only reads the descriptor flags; an invalid fd gives EBADF.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    if flags & libc::FD_CLOEXEC != 0 {
        // This program opens everything close-on-exec: such a descriptor was opened
        // here, not inherited.
        return Err(invalid(
            "the descriptor is close-on-exec, so it was not inherited",
        ));
    }
    let mut adopted = ADOPTED.lock().unwrap_or_else(|e| e.into_inner());
    if adopted.contains(&fd) {
        return Err(invalid("the descriptor was adopted already"));
    }
    adopted.push(fd);
    // SAFETY: the fd is open (checked above), was inherited across exec (not
    // close-on-exec, and everything this program opens is), and is adopted once
    // (recorded above), so no other owner exists.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `ftok(3)`: a System V IPC key from an existing file's device and inode and an id.
pub fn ftok(path: &std::path::Path, id: u8) -> io::Result<libc::key_t> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))?;
    // SAFETY: `c` is a valid NUL-terminated string that outlives the call; ftok only
    // stat()s the path.
    let key = unsafe { libc::ftok(c.as_ptr(), libc::c_int::from(id)) };
    if key == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(key)
    }
}

#[cfg(feature = "bench")]
pub mod bench;
pub mod mq;
pub mod peek;
pub mod segment;
pub mod shm;
pub mod sync;
