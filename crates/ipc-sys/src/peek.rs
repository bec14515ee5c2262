//! Looking at a live segment from outside, for `ipc-ctl`: a READ-ONLY mapping (the
//! pages cannot be written through it, so looking never disturbs a pair) and single
//! aligned volatile loads out of it, each bounds-checked. No reference into the mapping
//! is ever made: the pair writes those words concurrently, and every value read is
//! untrusted (its users check it).

use std::io;
use std::os::fd::AsRawFd;
use std::ptr::NonNull;

/// A read-only view of the first bytes of a segment. Unmapped (or detached) on drop.
pub struct ReadOnly {
    ptr: NonNull<u8>,
    len: usize,
    sysv: bool,
}

impl ReadOnly {
    /// `mmap(NULL, len, PROT_READ, MAP_SHARED, fd, 0)`. The caller checked that the
    /// file is at least `len` bytes long (a shorter one would fault on access).
    pub fn map_file(file: &std::fs::File, len: usize) -> io::Result<ReadOnly> {
        if len == 0 || (file.metadata()?.len() as usize) < len {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the file is shorter than the view",
            ));
        }
        // SAFETY: a fresh read-only shared mapping at an address the kernel chooses;
        // nothing of ours is overwritten, and MAP_FAILED is checked after.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        ReadOnly::at(addr, "mmap", len, false)
    }

    /// `shmat(id, NULL, SHM_RDONLY)`; the length comes from the kernel (`IPC_STAT`).
    pub fn attach_sysv(id: i32) -> io::Result<ReadOnly> {
        let len = super::shm::shm_stat(id)?.size;
        // SAFETY: shmat with a null address lets the kernel choose; SHM_RDONLY maps it
        // read-only. (void*)-1 on error is checked after.
        let addr = unsafe { libc::shmat(id, std::ptr::null(), libc::SHM_RDONLY) };
        ReadOnly::at(addr, "shmat", len, true)
    }

    /// The view of what `call` (mmap or shmat) returned: both fail with (void*)-1,
    /// which is MAP_FAILED.
    fn at(addr: *mut libc::c_void, call: &str, len: usize, sysv: bool) -> io::Result<ReadOnly> {
        if addr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr = NonNull::new(addr.cast::<u8>())
            .ok_or_else(|| io::Error::other(format!("{call} gave a null pointer")))?;
        Ok(ReadOnly { ptr, len, sysv })
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The `u32` at `offset`, read once; `None` if out of bounds or misaligned.
    pub fn load_u32(&self, offset: usize) -> Option<u32> {
        let end = offset.checked_add(4)?;
        if end > self.len || !offset.is_multiple_of(4) {
            return None;
        }
        // SAFETY: in bounds (checked), aligned (the mapping is page-aligned and the
        // offset is a multiple of 4) and readable for as long as `self` lives. A volatile
        // load of a naturally aligned word is one load instruction: no reference is
        // made, and a concurrent write by the pair gives some value, which the caller
        // treats as untrusted.
        Some(unsafe { std::ptr::read_volatile(self.ptr.as_ptr().add(offset).cast::<u32>()) })
    }

    /// The `u64` at `offset`, read once; `None` if out of bounds or misaligned.
    pub fn load_u64(&self, offset: usize) -> Option<u64> {
        let end = offset.checked_add(8)?;
        if end > self.len || !offset.is_multiple_of(8) {
            return None;
        }
        // SAFETY: as in load_u32, with 8-byte alignment checked.
        Some(unsafe { std::ptr::read_volatile(self.ptr.as_ptr().add(offset).cast::<u64>()) })
    }
}

impl Drop for ReadOnly {
    fn drop(&mut self) {
        if self.sysv {
            // SAFETY: ptr is the address shmat returned, detached once.
            unsafe { libc::shmdt(self.ptr.as_ptr().cast()) };
        } else {
            // SAFETY: ptr and len are those of our own mmap, unmapped once.
            unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ReadOnly;
    use std::io::Write;

    #[test]
    fn loads_are_bounds_and_alignment_checked() {
        let mut f = tempfile::tempfile().unwrap();
        let mut data = vec![0u8; 4096];
        data[8..16].copy_from_slice(&0x1122_3344_5566_7788u64.to_ne_bytes());
        data[4092..4096].copy_from_slice(&7u32.to_ne_bytes());
        f.write_all(&data).unwrap();
        let v = ReadOnly::map_file(&f, 4096).unwrap();
        assert_eq!(v.load_u64(8), Some(0x1122_3344_5566_7788));
        assert_eq!(v.load_u32(4092), Some(7));
        assert_eq!(v.load_u32(4096), None);
        assert_eq!(v.load_u64(4092), None);
        assert_eq!(v.load_u64(4), None, "misaligned");
        assert_eq!(v.load_u64(usize::MAX - 3), None, "overflow");
        assert!(
            ReadOnly::map_file(&f, 8192).is_err(),
            "longer than the file"
        );
    }
}
