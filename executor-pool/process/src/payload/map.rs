//! A shared mapping of a whole payload region, in either process, and the region's loan
//! word (`payload/mod.rs` has the protocol).

#![allow(unsafe_code)]

use std::ffi::c_void;
use std::io;
use std::os::fd::BorrowedFd;
use std::ptr::NonNull;
use std::sync::atomic::AtomicU64;

use rustix::mm::{MapFlags, MremapFlags, ProtFlags};

/// Bytes at the start of a region before its payload: the loan word, on a cache line of
/// its own.
pub(super) const HEADER: usize = 64;

/// A shared mapping of a whole memory file, at least `HEADER` bytes long.
pub(super) struct Map {
    ptr: NonNull<u8>,
    pub(super) len: usize,
}

// SAFETY: a `Map` is an address range; what may be read or written through it, and when,
// is the protocol's (module docs), and the only shared-mutable part, the loan word, is
// accessed atomically.
unsafe impl Send for Map {}
// SAFETY: as above: `&Map` gives out only the atomic loan word and reads of payload bytes
// no one writes while they are read.
unsafe impl Sync for Map {}

impl Map {
    /// Maps the `len` bytes of `fd` (its size, at least `HEADER`). `populate` faults the
    /// pages in now, in one call, rather than one fault per page on first touch.
    pub(super) fn new(
        fd: BorrowedFd<'_>,
        len: usize,
        writable: bool,
        populate: bool,
    ) -> io::Result<Map> {
        debug_assert!(len >= HEADER);
        let prot = if writable {
            ProtFlags::READ | ProtFlags::WRITE
        } else {
            ProtFlags::READ
        };
        let mut flags = MapFlags::SHARED;
        if populate {
            flags |= MapFlags::POPULATE;
        }
        // The file is at least `len` bytes long and sealed against shrinking (checked by
        // callers), so every page of the range stays backed while it is mapped.
        // SAFETY: a new mapping at an address the kernel picks (null hint) cannot alias
        // any memory of this process, and its pages stay backed (above).
        let ptr = unsafe { rustix::mm::mmap(std::ptr::null_mut(), len, prot, flags, fd, 0)? };
        let ptr =
            NonNull::new(ptr.cast::<u8>()).ok_or_else(|| io::Error::other("mmap gave null"))?;
        Ok(Map { ptr, len })
    }

    /// Makes the mapping `len` bytes long (the file has grown to that); it may move.
    pub(super) fn grow(&mut self, len: usize) -> io::Result<()> {
        // SAFETY: `ptr`/`len` is exactly a mapping this `Map` owns, and no reference into
        // it is alive (growing takes `&mut self`, and only the region's holder grows it);
        // after a move the old range is no longer ours and is never used again.
        let ptr = unsafe {
            rustix::mm::mremap(
                self.ptr.as_ptr().cast::<c_void>(),
                self.len,
                len,
                MremapFlags::MAYMOVE,
            )?
        };
        self.ptr =
            NonNull::new(ptr.cast::<u8>()).ok_or_else(|| io::Error::other("mremap gave null"))?;
        self.len = len;
        Ok(())
    }

    /// The loan word: zero when the region is free, else the number of its loan.
    pub(super) fn word(&self) -> &AtomicU64 {
        // Every access to these bytes, in either process, is atomic (an `AtomicU64` is
        // lock-free and address-free here, so it works through shared memory).
        // SAFETY: the mapping is page-aligned and at least `HEADER` (64) bytes long, so
        // its first eight bytes are an aligned, live `u64`, only ever accessed atomically.
        unsafe { &*self.ptr.as_ptr().cast::<AtomicU64>() }
    }

    /// The first `len` payload bytes.
    pub(super) fn payload(&self, len: usize) -> &[u8] {
        assert!(HEADER + len <= self.len, "a payload past its mapping");
        // SAFETY: in bounds (checked above) of a live mapping; by the protocol no one
        // writes these bytes while they are read (module docs).
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr().add(HEADER), len) }
    }

    /// Copies `bytes` to payload offset `at`.
    pub(super) fn write(&mut self, at: usize, bytes: &[u8]) {
        assert!(
            HEADER + at + bytes.len() <= self.len,
            "a write past its mapping"
        );
        // Only regions of our own are written (mapped writable), and a payload is never
        // encoded from its own region, so `bytes` is never this mapping's memory.
        // SAFETY: in bounds (checked above) of a live, writable mapping held exclusively
        // (`&mut self`), and `bytes` does not overlap it (above).
        unsafe {
            std::ptr::copy_nonoverlapping(
                bytes.as_ptr(),
                self.ptr.as_ptr().add(HEADER + at),
                bytes.len(),
            );
        }
    }
}

impl Drop for Map {
    fn drop(&mut self) {
        // SAFETY: the range is exactly the mapping this `Map` owns, and no reference into
        // it outlives the `Map` (they borrow it).
        let _ = unsafe { rustix::mm::munmap(self.ptr.as_ptr().cast::<c_void>(), self.len) };
    }
}
