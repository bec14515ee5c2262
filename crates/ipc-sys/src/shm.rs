//! Shared memory: mappings (mmap through memmap2, SysV `shmat`) and the SysV segment
//! calls. The process-shared synchronisation inside a segment is in [`crate::sync`].
//!
//! Memory the peer may write is never seen through `&[u8]` or `&T` of plain data: it is
//! copied in and out through raw pointers, written and compared word by word through raw
//! unaligned stores and loads (the `--zero-copy` path: [`Mapping::fill_words`],
//! [`Mapping::matches_words`]; the copying path's one-pass loops:
//! [`Mapping::copy_out_matching`], [`Mapping::fill_words_with_copy`]), or viewed as the
//! segment [`Header`], which is made only of atomics and `UnsafeCell`s, for which
//! concurrent writes are defined.
//!
//! What that does not make defined: the ring's bytes are copied with plain, non-atomic
//! accesses, and a peer (any process of the same user) may write them at the same time.
//! In Rust's memory model that is a data race, undefined behaviour, whether the accesses
//! go through references, raw pointers or volatile operations; only atomic accesses
//! would be defined, and this path does not pay for an atomic access per byte. What the
//! code does instead: every copy is a single pass into private memory (or a compare
//! against private words), and every value the program acts on is checked after that
//! copy, never re-read; so a racing writer makes this side see arbitrary bytes, which
//! the checks turn into an error (exit 3), never an access outside the mapping.
//!
//! A peer can also shrink a POSIX object or a mapped file under the mapping; touching
//! the lost pages raises SIGBUS. The callers check the object's size before they touch
//! the segment after a sleep (`shm::check_size`); a copy already running when the
//! truncation lands, or glibc's own accesses in `sem_timedwait` and
//! `pthread_mutex_timedlock` while they sleep, still die of SIGBUS. SysV segments cannot
//! shrink.
//!
//! Trust: the counters and bytes of the ring are untrusted and checked by their users.
//! The pthread and semaphore objects in the segment are not checkable: glibc follows
//! robust-list pointers stored inside a mutex and keeps internal state in condition
//! variables, so they trust the peer as much as any process of the same user (the
//! objects are mode 0600 and made by the same build). A corrupted mutex can only stall
//! a side for a bounded time (every lock is timed); a corrupted condition variable can
//! stall the signalling side of `--sync mutex` (glibc's `pthread_cond_signal` takes an
//! internal lock untimed), which the tests document.

use crate::segment::Header;
use std::io;
use std::ptr::NonNull;

// The process-shared objects that live in a segment, where the mapping's users find them.
pub use crate::sync::{futex_wait, futex_wake, Lock, PCond, PMutex, Sem};

/// The word stream the word loops write and check ([`Mapping::fill_words`] and the
/// others): word `i` is `finish(start + i * step)`, wrapping,
/// a Weyl sequence through a mixing function. The loops advance the sequence with one
/// add per word; a closure of `i` would cost a 64-bit multiply per word, which AVX2
/// does not have.
#[derive(Clone, Copy, Debug)]
pub struct Weyl<F> {
    pub start: u64,
    pub step: u64,
    pub finish: F,
}

impl<F: Fn(u64) -> u64> Weyl<F> {
    /// Word `i` of the stream.
    #[inline(always)]
    pub fn word(&self, i: u64) -> u64 {
        (self.finish)(self.start.wrapping_add(i.wrapping_mul(self.step)))
    }
}

/// A mapped segment. Unmapped (munmap or shmdt) on drop.
pub struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
    backing: Backing,
}

enum Backing {
    /// POSIX shm or a regular file, mapped with memmap2 (unmapped by its drop).
    Mmap(#[allow(dead_code)] memmap2::MmapMut),
    /// A SysV segment attached with shmat.
    SysV,
}

impl Mapping {
    /// `mmap(NULL, len, PROT_READ|PROT_WRITE, MAP_SHARED, fd, 0)` of a sized file.
    pub fn map_shared(file: &std::fs::File, len: usize) -> io::Result<Mapping> {
        // SAFETY: memmap2's map_mut is unsafe because another process may change the
        // file's contents under the mapping. That is the point here, and this module
        // never hands out a plain reference into it (only the all-atomic header and copies).
        let map = unsafe { memmap2::MmapOptions::new().len(len).map_mut(file)? };
        Mapping::mapped(map, len)
    }

    /// An anonymous private mapping of `len` bytes: a segment no other process sees,
    /// for the corrupted-segment fuzz target and property test.
    pub fn anonymous(len: usize) -> io::Result<Mapping> {
        Mapping::mapped(memmap2::MmapMut::map_anon(len)?, len)
    }

    fn mapped(mut map: memmap2::MmapMut, len: usize) -> io::Result<Mapping> {
        let ptr = NonNull::new(map.as_mut_ptr())
            .ok_or_else(|| io::Error::other("mmap gave a null pointer"))?;
        Ok(Mapping {
            ptr,
            len,
            backing: Backing::Mmap(map),
        })
    }

    /// `shmat(id, NULL, 0)` of a SysV segment; its length comes from the kernel
    /// (`IPC_STAT`), never from the caller, so every later bounds check is against the
    /// real mapping.
    pub fn attach_sysv(id: i32) -> io::Result<Mapping> {
        let len = shm_stat(id)?.size;
        // SAFETY: shmat with a null address lets the kernel choose where to attach; it
        // returns (void*)-1 on error, checked below. Nothing is read yet.
        let addr = unsafe { libc::shmat(id, std::ptr::null(), 0) };
        if addr as isize == -1 {
            return Err(io::Error::last_os_error());
        }
        let ptr = NonNull::new(addr.cast::<u8>())
            .ok_or_else(|| io::Error::other("shmat gave a null pointer"))?;
        Ok(Mapping {
            ptr,
            len,
            backing: Backing::SysV,
        })
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Attached with `shmat` (detached with `shmdt`), rather than mapped with `mmap`.
    pub fn is_sysv(&self) -> bool {
        matches!(self.backing, Backing::SysV)
    }

    /// The address, for narration only.
    pub fn addr(&self) -> usize {
        self.ptr.as_ptr() as usize
    }

    /// The segment header at offset 0.
    pub fn header(&self) -> &Header {
        assert!(
            self.len >= std::mem::size_of::<Header>(),
            "mapping smaller than the header"
        );
        // SAFETY: the mapping is page-aligned (more than Header's alignment), at least
        // size_of::<Header>() long (asserted) and lives as long as `self`. Header is
        // made only of atomics and UnsafeCells (pthread and semaphore cells that only
        // pthread calls touch), valid for any bits, so the peer's concurrent writes
        // through its own mapping are not undefined behaviour.
        unsafe { &*self.ptr.as_ptr().cast::<Header>() }
    }

    /// Copy `dst.len()` bytes out of the segment at `offset`.
    #[inline]
    pub fn copy_out(&self, offset: usize, dst: &mut [u8]) {
        self.check(offset, dst.len());
        // SAFETY: the range is inside the mapping (checked) and cannot overlap `dst`,
        // which is private memory. Raw copy: no reference to shared bytes is made.
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.ptr.as_ptr().add(offset),
                dst.as_mut_ptr(),
                dst.len(),
            )
        }
    }

    /// Copy `src` into the segment at `offset`.
    #[inline]
    pub fn copy_in(&self, offset: usize, src: &[u8]) {
        self.check(offset, src.len());
        // SAFETY: the range is inside the mapping (checked) and cannot overlap `src`.
        unsafe {
            std::ptr::copy_nonoverlapping(src.as_ptr(), self.ptr.as_ptr().add(offset), src.len())
        }
    }

    /// Write bytes `[at, at + len)` of a word stream into the segment at `offset`: word
    /// `i` of the stream is `words.word(i)`, stored little-endian, so byte `b` of the
    /// stream is byte `b % 8` of word `b / 8`. A piece may start and end inside a word (a ring
    /// wrap splits a message anywhere); only the bytes of the range are written. Whole
    /// words go in with unaligned raw stores, straight from the generator into the
    /// mapping: no bounce buffer, no slice over shared memory.
    #[inline]
    pub fn fill_words(&self, offset: usize, len: usize, at: u64, words: Weyl<impl Fn(u64) -> u64>) {
        self.check(offset, len);
        let base = self.ptr.as_ptr().wrapping_add(offset);
        let (mut done, mut i) = (0usize, at / 8);
        let skip = (at % 8) as usize;
        if skip != 0 && len > 0 {
            // The tail of a word the previous piece began.
            let n = (8 - skip).min(len);
            let bytes = words.word(i).to_le_bytes();
            // SAFETY: `n <= len` bytes at `offset` are inside the mapping (checked);
            // the source is a local array. A raw copy: no reference to shared bytes.
            unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr().add(skip), base, n) };
            done = n;
            i += 1;
        }
        let whole = (len - done) / 8;
        // SAFETY: `done + 8 * whole <= len`, so every store is inside the checked range.
        // The pointer comes from the mapping, not from a reference to its bytes, and the
        // stores are unaligned-safe.
        unsafe { store_words(base.add(done), whole, i, &words) };
        done += 8 * whole;
        i += whole as u64;
        if done < len {
            // The head of a word the next piece (or nothing) finishes.
            let bytes = words.word(i).to_le_bytes();
            // SAFETY: `len - done < 8` bytes at `offset + done` are inside the checked
            // range; the source is a local array.
            unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), base.add(done), len - done) };
        }
    }

    /// Whether the segment at `offset` holds bytes `[at, at + len)` of the word stream
    /// that [`Mapping::fill_words`] writes. Reads with unaligned raw loads and compares
    /// them with the expected words as it goes: no copy out, no slice over shared memory.
    #[inline]
    pub fn matches_words(
        &self,
        offset: usize,
        len: usize,
        at: u64,
        words: Weyl<impl Fn(u64) -> u64>,
    ) -> bool {
        self.check(offset, len);
        let base = self.ptr.as_ptr().wrapping_add(offset).cast_const();
        let (mut done, mut i) = (0usize, at / 8);
        let skip = (at % 8) as usize;
        // A partial word: compare its bytes through a local copy.
        let partial = |p: *const u8, from: usize, n: usize, expect: u64| {
            let mut got = [0u8; 8];
            // SAFETY: the caller passes `n` bytes inside the checked range; `got` is local.
            unsafe { std::ptr::copy_nonoverlapping(p, got.as_mut_ptr(), n) };
            got[..n] == expect.to_le_bytes()[from..from + n]
        };
        if skip != 0 && len > 0 {
            let n = (8 - skip).min(len);
            if !partial(base, skip, n, words.word(i)) {
                return false;
            }
            done = n;
            i += 1;
        }
        let whole = (len - done) / 8;
        // SAFETY: `done + 8 * whole <= len`: every load is inside the checked range,
        // through a pointer from the mapping (no reference to its bytes), unaligned.
        if !unsafe { words_match(base.add(done), whole, i, &words) } {
            return false;
        }
        done += 8 * whole;
        i += whole as u64;
        if done < len {
            // SAFETY: (in `partial`) `len - done < 8` bytes at `done` are in range.
            return partial(base.wrapping_add(done), 0, len - done, words.word(i));
        }
        true
    }

    /// Copy `dst.len()` bytes out of the segment at `offset` into `dst` and tell whether
    /// they are bytes `[at, at + dst.len())` of the word stream `words`, laid out as
    /// [`Mapping::fill_words`] lays out its words: the copy and the check in one pass.
    /// Each word is loaded once, stored into `dst` and compared with the expected word
    /// from the same register, so what is checked is what `dst` holds, whatever the peer
    /// writes meanwhile. After a first mismatch the rest is copied without comparing:
    /// `dst` always ends up a full copy.
    #[inline]
    pub fn copy_out_matching(
        &self,
        offset: usize,
        dst: &mut [u8],
        at: u64,
        words: Weyl<impl Fn(u64) -> u64>,
    ) -> bool {
        let len = dst.len();
        self.check(offset, len);
        let src = self.ptr.as_ptr().wrapping_add(offset).cast_const();
        let out = dst.as_mut_ptr();
        let mut ok = true;
        for_pieces(at, len, |piece| match piece {
            Piece::Part { pos, from, n, i } => {
                // Load its bytes once into a local, store and compare that.
                let mut got = [0u8; 8];
                // SAFETY: `n` bytes at `pos`, inside the checked source range and inside
                // `dst`; `got` is local.
                unsafe {
                    std::ptr::copy_nonoverlapping(src.add(pos), got.as_mut_ptr(), n);
                    std::ptr::copy_nonoverlapping(got.as_ptr(), out.add(pos), n);
                }
                ok = ok && got[..n] == words.word(i).to_le_bytes()[from..from + n];
            }
            Piece::Words { pos, n, i } if ok => {
                // SAFETY: `pos + 8 * n <= len`: every load is inside the checked range (a
                // pointer from the mapping, no reference to its bytes), every store
                // inside `dst`, which is private memory and cannot overlap the mapping;
                // unaligned.
                ok = unsafe { copy_words_match(src.add(pos), out.add(pos), n, i, &words) };
            }
            Piece::Words { pos, n, .. } => {
                // SAFETY: as above, a plain copy.
                unsafe { std::ptr::copy_nonoverlapping(src.add(pos), out.add(pos), 8 * n) };
            }
        });
        ok
    }

    /// Write bytes `[at, at + copy.len())` of a word stream into the segment at `offset`
    /// and into `copy`, private memory, in one pass: each word is made once and stored
    /// twice. What [`Mapping::fill_words`] writes, with the sender's own copy beside it.
    #[inline]
    pub fn fill_words_with_copy<F: Fn(u64) -> u64>(
        &self,
        offset: usize,
        copy: &mut [u8],
        at: u64,
        words: Weyl<F>,
    ) {
        let len = copy.len();
        self.check(offset, len);
        let base = self.ptr.as_ptr().wrapping_add(offset);
        let out = copy.as_mut_ptr();
        for_pieces(at, len, |piece| match piece {
            Piece::Part { pos, from, n, i } => {
                let bytes = words.word(i).to_le_bytes();
                // SAFETY: `n <= 8 - from` bytes at `pos`, inside the checked range and
                // inside `copy`; the source is a local array.
                unsafe {
                    std::ptr::copy_nonoverlapping(bytes.as_ptr().add(from), base.add(pos), n);
                    std::ptr::copy_nonoverlapping(bytes.as_ptr().add(from), out.add(pos), n);
                }
            }
            Piece::Words { pos, n, i } => {
                // SAFETY: `pos + 8 * n <= len`: every store is inside the checked range
                // of the mapping (a raw pointer, no reference to its bytes) and inside
                // `copy`, which is private and cannot overlap the mapping; unaligned.
                unsafe { store_words_twice(base.add(pos), out.add(pos), n, i, &words) };
            }
        });
    }

    /// Start fetching the cache lines of the `len` bytes at `offset`: owned, for bytes
    /// about to be written (`write`), or shared, for bytes about to be read. The
    /// transfers from the peer's core then overlap whatever the caller does first,
    /// instead of stalling its first store or load. A hint: no memory changes.
    #[inline]
    pub fn prefetch(&self, offset: usize, len: usize, write: bool) {
        self.check(offset, len);
        if len == 0 {
            return;
        }
        let base = self.ptr.as_ptr().cast_const();
        // Every line the range touches, from the one holding its first byte.
        let mut at = offset & !63;
        while at < offset + len {
            prefetch_line(base.wrapping_add(at), write);
            at += 64;
        }
    }

    #[inline]
    fn check(&self, offset: usize, len: usize) {
        assert!(
            offset.checked_add(len).is_some_and(|end| end <= self.len),
            "segment access {offset}+{len} outside {} bytes",
            self.len
        );
    }
}

/// A piece of bytes `[at, at + len)` of a word stream (see [`for_pieces`]).
enum Piece {
    /// `n < 8` bytes at `pos` of the range: bytes `from..from + n` of word `i`.
    Part {
        pos: usize,
        from: usize,
        n: usize,
        i: u64,
    },
    /// `n` whole words at `pos` of the range: words `i..i + n`.
    Words { pos: usize, n: usize, i: u64 },
}

/// Bytes `[at, at + len)` of a word stream in pieces, in order: the end of the word `at`
/// falls in (unless it starts one), the whole words, then the start of one more word.
#[inline(always)]
fn for_pieces(at: u64, len: usize, mut f: impl FnMut(Piece)) {
    let (mut pos, mut i) = (0usize, at / 8);
    let from = (at % 8) as usize;
    if from != 0 && len > 0 {
        let n = (8 - from).min(len);
        f(Piece::Part { pos, from, n, i });
        pos = n;
        i += 1;
    }
    let n = (len - pos) / 8;
    f(Piece::Words { pos, n, i });
    pos += 8 * n;
    i += n as u64;
    if pos < len {
        f(Piece::Part {
            pos,
            from: 0,
            n: len - pos,
            i,
        });
    }
}

/// What [`walk_words`] walks: words `i..i + n` of `words`, beside the `8 * n` bytes
/// at `p` in a mapping, whose lines it prefetches for writing or for reading.
struct Walk<'w, F> {
    p: *const u8,
    write: bool,
    n: usize,
    i: u64,
    words: &'w Weyl<F>,
}

impl<'w, F> Walk<'w, F> {
    fn new(p: *const u8, write: bool, n: usize, i: u64, words: &'w Weyl<F>) -> Walk<'w, F> {
        Walk {
            p,
            write,
            n,
            i,
            words,
        }
    }
}

/// Walk words `i..i + n` of `words` in blocks of [`BLOCK`], prefetching the lines of
/// `p` (the mapping's side) ahead, for writing or for reading: `each(j, word j)` for
/// every word `j` of a block, with the results OR-ed together (which vectorises) and
/// looked at once per block. Returns where the first block with a nonzero result ends,
/// or `None`. The word loops below are this walk and what each does per word; it runs
/// built for AVX2 where the CPU has it.
///
/// # Safety
/// `p..p + 8 * n` must be memory of one mapping (only prefetched here).
#[inline]
unsafe fn walk_words<F: Fn(u64) -> u64>(
    w: Walk<'_, F>,
    each: impl FnMut(usize, u64) -> u64,
) -> Option<usize> {
    #[cfg(test)]
    if PORTABLE.get() {
        // SAFETY: the caller's contract.
        return unsafe { walk(w, each) };
    }
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2 (checked); the rest is the caller's contract.
        return unsafe { walk_avx2(w, each) };
    }
    // SAFETY: the caller's contract.
    unsafe { walk(w, each) }
}

#[cfg(test)]
thread_local! {
    /// Tests: [`walk_words`] runs the portable build of its loop, so that it can be
    /// compared with the dispatched one.
    static PORTABLE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// [`walk`] compiled for AVX2: the generator and the word loads and stores, inlined
/// into it, run twice as wide. A function of its own with the walk inlined by force,
/// not a closure handed to one: a closure may stay out of line, compiled without AVX2.
///
/// # Safety
/// The CPU must have AVX2, and the caller's contract of [`walk_words`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn walk_avx2<F: Fn(u64) -> u64>(
    w: Walk<'_, F>,
    each: impl FnMut(usize, u64) -> u64,
) -> Option<usize> {
    // SAFETY: the caller's contract.
    unsafe { walk(w, each) }
}

/// The walk itself, for [`walk_words`].
///
/// # Safety
/// As [`walk_words`].
#[inline(always)]
unsafe fn walk<F: Fn(u64) -> u64>(
    Walk {
        p,
        write,
        n,
        i,
        words,
    }: Walk<'_, F>,
    mut each: impl FnMut(usize, u64) -> u64,
) -> Option<usize> {
    let (step, finish) = (words.step, &words.finish);
    let mut z = words.start.wrapping_add(i.wrapping_mul(step));
    let mut k = 0;
    while k < n {
        let m = (n - k).min(BLOCK);
        // SAFETY: `k < n`: the caller's range; prefetches never fault.
        unsafe { prefetch_block(p.add(8 * k), 8 * (n - k), write) };
        let mut diff = 0u64;
        for j in k..k + m {
            diff |= each(j, finish(z).to_le());
            z = z.wrapping_add(step);
        }
        k += m;
        if diff != 0 {
            return Some(k);
        }
    }
    None
}

/// Store words `i..i + n` of `words` at `p` (unaligned), in blocks, prefetching ahead.
///
/// # Safety
/// `p..p + 8 * n` must be writable memory of one mapping.
#[inline(always)]
unsafe fn store_words<F: Fn(u64) -> u64>(p: *mut u8, n: usize, i: u64, words: &Weyl<F>) {
    let store = |j: usize, w: u64| {
        // SAFETY: `j < n` (the walk's): inside the caller's range; unaligned.
        unsafe { p.add(8 * j).cast::<u64>().write_unaligned(w) };
        0
    };
    // SAFETY: the caller's contract.
    unsafe { walk_words(Walk::new(p, true, n, i, words), store) };
}

/// Whether the `n` words at `p` (unaligned) are words `i..i + n` of `words`. In blocks,
/// so a mismatch stops the check early.
///
/// # Safety
/// `p..p + 8 * n` must be readable memory of one mapping.
#[inline(always)]
unsafe fn words_match<F: Fn(u64) -> u64>(p: *const u8, n: usize, i: u64, words: &Weyl<F>) -> bool {
    // SAFETY: `j < n` (the walk's): inside the caller's range; unaligned.
    let differs = |j: usize, w: u64| unsafe { p.add(8 * j).cast::<u64>().read_unaligned() } ^ w;
    // SAFETY: the caller's contract.
    unsafe { walk_words(Walk::new(p, false, n, i, words), differs) }.is_none()
}

/// Copy the `n` words at `src` (unaligned) to `dst` and tell whether they are words
/// `i..i + n` of `word`: each word is loaded once, stored, and compared from the register.
/// In blocks, as [`words_match`]; after a block with a difference the rest is copied
/// without comparing.
///
/// # Safety
/// `src..src + 8 * n` must be readable memory of one mapping, `dst..dst + 8 * n`
/// writable memory that does not overlap it.
#[inline(always)]
unsafe fn copy_words_match<F: Fn(u64) -> u64>(
    src: *const u8,
    dst: *mut u8,
    n: usize,
    i: u64,
    words: &Weyl<F>,
) -> bool {
    let copy = |j: usize, w: u64| {
        // SAFETY: `j < n` (the walk's): inside both of the caller's ranges; unaligned.
        let v = unsafe { src.add(8 * j).cast::<u64>().read_unaligned() };
        // SAFETY: as above.
        unsafe { dst.add(8 * j).cast::<u64>().write_unaligned(v) };
        v ^ w
    };
    // SAFETY: the caller's contract.
    match unsafe { walk_words(Walk::new(src, false, n, i, words), copy) } {
        None => true,
        Some(k) => {
            // SAFETY: words `k..n` of the caller's ranges.
            unsafe { std::ptr::copy_nonoverlapping(src.add(8 * k), dst.add(8 * k), 8 * (n - k)) };
            false
        }
    }
}

/// Store words `i..i + n` of `words` at `p` and at `q` (both unaligned), in blocks,
/// prefetching `p`'s lines ahead for writing.
///
/// # Safety
/// `p..p + 8 * n` must be writable memory of one mapping, `q..q + 8 * n` writable memory
/// that does not overlap it.
#[inline(always)]
unsafe fn store_words_twice(
    p: *mut u8,
    q: *mut u8,
    n: usize,
    i: u64,
    words: &Weyl<impl Fn(u64) -> u64>,
) {
    let store = |j: usize, w: u64| {
        // SAFETY: `j < n` (the walk's): inside both of the caller's ranges; unaligned.
        unsafe {
            p.add(8 * j).cast::<u64>().write_unaligned(w);
            q.add(8 * j).cast::<u64>().write_unaligned(w);
        }
        0
    };
    // SAFETY: the caller's contract.
    unsafe { walk_words(Walk::new(p, true, n, i, words), store) };
}

/// Words per block of [`Mapping::fill_words`] and [`Mapping::matches_words`]: 512 bytes.
const BLOCK: usize = 64;
/// How far ahead of the block being written or read the lines are prefetched.
const PREFETCH_AHEAD: usize = 4096;

/// Prefetch the block of `BLOCK` words that lies `PREFETCH_AHEAD` bytes after `p`, if it
/// is among the `left` bytes of the range from `p` on: for writing (`prefetchw`, the
/// line comes in owned, so the stores that follow do not each wait for the peer's core
/// to give it up) or for reading. Sequential stores and loads on lines the peer's core
/// holds are what this path is made of; without it they run well below a plain copy.
#[inline(always)]
unsafe fn prefetch_block(p: *const u8, left: usize, write: bool) {
    if left < PREFETCH_AHEAD + 8 * BLOCK {
        return;
    }
    let ahead = p.wrapping_add(PREFETCH_AHEAD);
    let mut line = 0;
    while line < 8 * BLOCK {
        prefetch_line(ahead.wrapping_add(line), write);
        line += 64;
    }
}

/// Ask for the cache line of `a`: owned, to write it (`prefetchw`), or shared, to read.
/// Safe whatever `a` is: a prefetch is a hint, it never faults and changes no memory.
#[inline(always)]
fn prefetch_line(a: *const u8, write: bool) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch instruction neither faults nor writes, for any address.
    unsafe {
        if write {
            std::arch::asm!("prefetchw [{0}]", in(reg) a, options(nostack, preserves_flags, readonly));
        } else {
            std::arch::asm!("prefetcht0 [{0}]", in(reg) a, options(nostack, preserves_flags, readonly));
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (a, write);
}

impl Drop for Mapping {
    fn drop(&mut self) {
        if let Backing::SysV = self.backing {
            // SAFETY: ptr is the address shmat returned for this mapping, detached once.
            unsafe { libc::shmdt(self.ptr.as_ptr().cast()) };
        }
        // memmap2 unmaps when the field drops, right after this.
    }
}

/// What `shmctl(IPC_STAT)` tells about a SysV segment.
#[derive(Debug, Clone, Copy)]
pub struct ShmStat {
    pub size: usize,
    pub creator_pid: i32,
    pub attached: u64,
    pub uid: u32,
    pub mode: u32,
}

/// `shmget(key, size, flags)`: the segment id.
pub fn shmget(key: libc::key_t, size: usize, flags: libc::c_int) -> io::Result<i32> {
    // SAFETY: shmget takes plain values and touches no memory of ours.
    let id = unsafe { libc::shmget(key, size, flags) };
    if id < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(id)
    }
}

/// `shmctl(id, IPC_STAT)`.
pub fn shm_stat(id: i32) -> io::Result<ShmStat> {
    let mut ds = std::mem::MaybeUninit::<libc::shmid_ds>::zeroed();
    // SAFETY: IPC_STAT fills the shmid_ds we pass; it was zeroed, so reading it after
    // success is reading initialised memory.
    let ds = unsafe {
        if libc::shmctl(id, libc::IPC_STAT, ds.as_mut_ptr()) != 0 {
            return Err(io::Error::last_os_error());
        }
        ds.assume_init()
    };
    Ok(ShmStat {
        size: ds.shm_segsz,
        creator_pid: ds.shm_cpid,
        attached: ds.shm_nattch as u64,
        uid: ds.shm_perm.uid,
        mode: u32::from(ds.shm_perm.mode),
    })
}

/// `shmctl(id, IPC_RMID)`: destroy once the last process detaches.
pub fn shm_rmid(id: i32) -> io::Result<()> {
    // SAFETY: IPC_RMID takes no buffer (null is allowed).
    if unsafe { libc::shmctl(id, libc::IPC_RMID, std::ptr::null_mut()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::Mapping;

    /// A stand-in for the payload generator: any Weyl stream and mixing will do here.
    fn weyl(seed: u64) -> super::Weyl<impl Fn(u64) -> u64 + Copy> {
        super::Weyl {
            start: seed.wrapping_mul(0x2545_F491_4F6C_DD1D),
            step: 0x9E37_79B9_7F4A_7C15,
            finish: |z: u64| (z ^ (z >> 31)).rotate_left(17),
        }
    }

    /// The bytes of words `0..`, little-endian, as the payload generator lays them out.
    fn bytes(word: impl Fn(u64) -> u64, len: usize) -> Vec<u8> {
        (0..len)
            .map(|j| word(j as u64 / 8).to_le_bytes()[j % 8])
            .collect()
    }

    /// Every piece `[at, at + len)` written at every alignment of the mapping gives the
    /// bytes the word stream gives, touches nothing outside, and is matched; a single
    /// flipped byte or a different stream is not.
    #[test]
    fn words_match_the_generator_at_any_offset_and_length() {
        let map = Mapping::anonymous(4096).unwrap();
        let word = weyl(7);
        let whole = bytes(|i| word.word(i), 200);
        let other = weyl(8);
        for at in 0..24u64 {
            for len in 0..(whole.len() - at as usize).min(90) {
                for offset in [64usize, 65, 67, 71, 4096 - 1 - len] {
                    map.copy_in(offset - 1, &vec![0xAA; len + 2]);
                    map.fill_words(offset, len, at, word);
                    let mut got = vec![0u8; len + 2];
                    map.copy_out(offset - 1, &mut got);
                    assert_eq!(got[0], 0xAA);
                    assert_eq!(got[len + 1], 0xAA);
                    assert_eq!(&got[1..=len], &whole[at as usize..at as usize + len]);
                    assert!(map.matches_words(offset, len, at, word));
                    if len >= 4 {
                        // (A byte or two of another stream may agree by chance.)
                        assert!(!map.matches_words(offset, len, at, other));
                    }
                    if len > 0 {
                        for flip in [0, len / 2, len - 1] {
                            let mut b = [0u8];
                            map.copy_out(offset + flip, &mut b);
                            map.copy_in(offset + flip, &[b[0] ^ 0x10]);
                            assert!(!map.matches_words(offset, len, at, word));
                            map.copy_in(offset + flip, &b);
                        }
                    }
                }
            }
        }
    }

    /// `f` with [`super::walk_words`] running its portable loop (not built for AVX2).
    fn portably<R>(f: impl FnOnce() -> R) -> R {
        super::PORTABLE.set(true);
        let r = f();
        super::PORTABLE.set(false);
        r
    }

    /// The portable loops give what the dispatched (AVX2 where there is one) ones give.
    #[test]
    fn portable_word_loops_agree() {
        let map = Mapping::anonymous(4096).unwrap();
        let word = weyl(3);
        for n in [0usize, 1, 3, 64, 65, 200, 500] {
            map.fill_words(8, 8 * n, 0, word);
            let mut want = vec![0u8; 8 * n];
            map.copy_out(8, &mut want);
            map.copy_in(8, &vec![0; 8 * n]);
            let p = map.ptr.as_ptr().wrapping_add(8);
            // SAFETY: 8 + 8 * n <= 4096 bytes of a private mapping.
            unsafe { portably(|| super::store_words(p, n, 0, &word)) };
            let mut got = vec![0u8; 8 * n];
            map.copy_out(8, &mut got);
            assert_eq!(got, want);
            // SAFETY: as above.
            assert!(unsafe { portably(|| super::words_match(p, n, 0, &word)) });
            if n > 0 {
                map.copy_in(8 + 8 * n - 1, &[got[8 * n - 1] ^ 1]);
                // SAFETY: as above.
                assert!(!unsafe { portably(|| super::words_match(p, n, 0, &word)) });
            }
        }
    }

    /// The fused copy-and-check: at every start in the stream, alignment and length (odd
    /// lengths, and lengths that end inside a block or a vector) it copies every byte and
    /// accepts the stream's bytes; one flipped byte at the first, a middle or the last
    /// place is caught, and the copy is still whole.
    #[test]
    fn copy_out_matching_copies_everything_and_catches_any_flip() {
        let map = Mapping::anonymous(8192).unwrap();
        let word = weyl(5);
        let whole = bytes(|i| word.word(i), 4200);
        let lens = (0..90).chain([511, 512, 513, 519, 520, 1000, 4095, 4099]);
        for at in [0u64, 1, 3, 7, 8, 13] {
            for len in lens.clone() {
                for offset in [64usize, 65, 67, 71] {
                    let want = &whole[at as usize..at as usize + len];
                    map.copy_in(offset, want);
                    let mut got = vec![0x55u8; len];
                    assert!(map.copy_out_matching(offset, &mut got, at, word));
                    assert_eq!(got, want);
                    if len >= 4 {
                        assert!(!map.copy_out_matching(offset, &mut got, at, weyl(6)));
                        assert_eq!(got, want);
                    }
                    for flip in [0, len / 2, len.saturating_sub(1)] {
                        if len == 0 {
                            break;
                        }
                        map.copy_in(offset + flip, &[want[flip] ^ 0x04]);
                        let mut got = vec![0u8; len];
                        assert!(!map.copy_out_matching(offset, &mut got, at, word));
                        let mut flipped = want.to_vec();
                        flipped[flip] ^= 0x04;
                        assert_eq!(got, flipped, "at {at} len {len} flip {flip}");
                        map.copy_in(offset + flip, &want[flip..=flip]);
                    }
                }
            }
        }
    }

    /// The one-pass producer: the segment and the private copy both get exactly the
    /// stream's bytes of the range, and nothing outside it changes.
    #[test]
    fn fill_words_with_copy_writes_both() {
        let map = Mapping::anonymous(8192).unwrap();
        let word = weyl(9);
        let whole = bytes(|i| word.word(i), 4200);
        for at in [0u64, 2, 5, 8, 11] {
            for len in (0..70).chain([512, 513, 1001, 4099]) {
                for offset in [64usize, 66, 69] {
                    map.copy_in(offset - 1, &vec![0xAA; len + 2]);
                    let mut copy = vec![0u8; len + 2];
                    copy[0] = 0xBB;
                    copy[len + 1] = 0xBB;
                    map.fill_words_with_copy(offset, &mut copy[1..=len], at, word);
                    let want = &whole[at as usize..at as usize + len];
                    let mut got = vec![0u8; len + 2];
                    map.copy_out(offset - 1, &mut got);
                    assert_eq!((got[0], got[len + 1]), (0xAA, 0xAA));
                    assert_eq!(&got[1..=len], want);
                    assert_eq!((copy[0], copy[len + 1]), (0xBB, 0xBB));
                    assert_eq!(&copy[1..=len], want);
                }
            }
        }
    }

    /// The portable fused loops give what the dispatched ones give.
    #[test]
    fn portable_fused_loops_agree() {
        let map = Mapping::anonymous(8192).unwrap();
        let word = weyl(4);
        for n in [0usize, 1, 3, 64, 65, 200, 500] {
            let p = map.ptr.as_ptr().wrapping_add(8);
            let mut copy = vec![0u8; 8 * n];
            // SAFETY: 8 + 8 * n <= 8192 bytes of a private mapping; `copy` is separate.
            unsafe { portably(|| super::store_words_twice(p, copy.as_mut_ptr(), n, 0, &word)) };
            let mut got = vec![0u8; 8 * n];
            map.copy_out(8, &mut got);
            assert_eq!(got, copy);
            let mut out = vec![0u8; 8 * n];
            // SAFETY: as above.
            let ok =
                unsafe { portably(|| super::copy_words_match(p, out.as_mut_ptr(), n, 0, &word)) };
            assert!(ok);
            assert_eq!(out, copy);
            if n > 0 {
                map.copy_in(8 + 8 * n - 1, &[got[8 * n - 1] ^ 1]);
                // SAFETY: as above.
                let ok = unsafe {
                    portably(|| super::copy_words_match(p, out.as_mut_ptr(), n, 0, &word))
                };
                assert!(!ok);
                assert_eq!(out[8 * n - 1], got[8 * n - 1] ^ 1);
            }
        }
    }

    /// A prefetch of any range inside the mapping, aligned or not, changes no byte.
    #[test]
    fn prefetch_changes_nothing() {
        let map = Mapping::anonymous(4096).unwrap();
        let bytes: Vec<u8> = (0..4096).map(|i| (i * 7) as u8).collect();
        map.copy_in(0, &bytes);
        for (offset, len) in [(0, 0), (0, 4096), (1, 1), (63, 2), (100, 300), (4095, 1)] {
            map.prefetch(offset, len, true);
            map.prefetch(offset, len, false);
        }
        let mut got = vec![0u8; 4096];
        map.copy_out(0, &mut got);
        assert_eq!(got, bytes);
    }

    #[test]
    #[should_panic(expected = "outside")]
    fn prefetch_is_bounds_checked() {
        let map = Mapping::anonymous(4096).unwrap();
        map.prefetch(4000, 97, true);
    }

    #[test]
    #[should_panic(expected = "outside")]
    fn copy_out_matching_is_bounds_checked() {
        let map = Mapping::anonymous(4096).unwrap();
        map.copy_out_matching(4090, &mut [0u8; 7], 0, weyl(1));
    }

    #[test]
    #[should_panic(expected = "outside")]
    fn fill_words_is_bounds_checked() {
        let map = Mapping::anonymous(4096).unwrap();
        map.fill_words(4090, 7, 0, weyl(1));
    }

    #[test]
    #[should_panic(expected = "outside")]
    fn matches_words_is_bounds_checked() {
        let map = Mapping::anonymous(4096).unwrap();
        map.matches_words(usize::MAX, 2, 0, weyl(1));
    }
}
