//! The sender's side of large payloads: regions of its own, kept mapped and reused, and
//! the lease that holds one while a payload is written into it and read on the other side
//! (`payload/mod.rs` has the protocol).

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use rustix::fs::{MemfdFlags, SealFlags};

use super::map::{HEADER, Map};

/// Regions grow in steps of this many bytes (and by half their size at least).
const STEP: usize = 1 << 20;

/// The idle regions a side keeps for reuse, at most: this many, and this many bytes.
pub(super) const KEEP_REGIONS: usize = 4;
const KEEP_BYTES: usize = 256 << 20;

/// One of our memory files, mapped writable.
pub(super) struct Region {
    file: OwnedFd,
    map: Map,
}

impl Region {
    /// A new region with room for `payload` bytes.
    fn new(payload: usize) -> io::Result<Region> {
        let len = size_for(payload, 0);
        let file = rustix::fs::memfd_create(
            "oneloop-payload",
            MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING,
        )?;
        rustix::fs::ftruncate(&file, len as u64)?;
        rustix::fs::fcntl_add_seals(&file, SealFlags::SHRINK)?;
        let map = Map::new(file.as_fd(), len, true, false)?;
        Ok(Region { file, map })
    }

    fn room(&self) -> usize {
        self.map.len - HEADER
    }

    /// Makes room for `payload` bytes.
    fn reserve(&mut self, payload: usize) -> io::Result<()> {
        if payload <= self.room() {
            return Ok(());
        }
        let len = size_for(payload, self.map.len);
        rustix::fs::ftruncate(&self.file, len as u64)?;
        self.map.grow(len)
    }
}

/// The file length for `payload` bytes, growing from `from`: by a step at least, and by
/// half at least.
fn size_for(payload: usize, from: usize) -> usize {
    let wanted = (HEADER + payload).max(from + from / 2);
    wanted.div_ceil(STEP) * STEP
}

/// A side's regions: the idle ones, and those lent to the other side.
#[derive(Default)]
pub(crate) struct Regions {
    pub(super) pool: Mutex<Pool>,
    loans: AtomicU64,
}

#[derive(Default)]
pub(super) struct Pool {
    pub(super) idle: Vec<Region>,
    /// Lent, with the number of their loan: idle again once the borrower clears it.
    lent: Vec<(Region, u64)>,
}

impl Regions {
    /// A region with room for `payload` bytes, ours until the lease ends.
    pub(super) fn lease(self: &Arc<Self>, payload: usize) -> io::Result<Lease> {
        let found = {
            let mut pool = self.pool.lock();
            pool.collect();
            // The smallest that fits, else the largest (it grows).
            let fits = (0..pool.idle.len())
                .filter(|&i| pool.idle[i].room() >= payload)
                .min_by_key(|&i| pool.idle[i].room());
            let pick = fits.or_else(|| (0..pool.idle.len()).max_by_key(|&i| pool.idle[i].room()));
            pick.map(|i| pool.idle.swap_remove(i))
        };
        let mut region = match found {
            Some(region) => region,
            None => Region::new(payload)?,
        };
        region.reserve(payload)?;
        Ok(Lease {
            region: Some(region),
            len: 0,
            loan: None,
            home: self.clone(),
        })
    }

    /// Regions back from loan, and what is over the keep limits dropped.
    pub(crate) fn tidy(&self) {
        self.pool.lock().collect();
    }
}

impl Pool {
    /// Moves the regions whose loan was returned to the idle ones, and drops what is
    /// over the keep limits (the biggest are kept: they are the dear ones to make).
    fn collect(&mut self) {
        let mut i = 0;
        while i < self.lent.len() {
            let (region, loan) = &self.lent[i];
            if region.map.word().load(Ordering::Acquire) != *loan {
                let (region, _) = self.lent.swap_remove(i);
                self.idle.push(region);
            } else {
                i += 1;
            }
        }
        self.idle
            .sort_by_key(|region| std::cmp::Reverse(region.room()));
        let (mut bytes, mut kept) = (0, 0);
        self.idle.retain(|region| {
            let keep = kept < KEEP_REGIONS && bytes + region.map.len <= KEEP_BYTES;
            if keep {
                bytes += region.map.len;
                kept += 1;
            }
            keep
        });
    }
}

/// A region held by its sender, with the payload written so far.
pub(crate) struct Lease {
    region: Option<Region>,
    len: usize,
    /// Set once lent (`lend`): the region goes to the lent ones when the lease ends.
    loan: Option<u64>,
    home: Arc<Regions>,
}

impl Lease {
    fn region(&mut self) -> &mut Region {
        self.region
            .as_mut()
            .expect("a lease holds its region until dropped")
    }

    pub(super) fn push(&mut self, bytes: &[u8]) -> io::Result<()> {
        let at = self.len;
        let region = self.region();
        region.reserve(at + bytes.len())?;
        region.map.write(at, bytes);
        self.len += bytes.len();
        Ok(())
    }

    /// Appends `byte` if the region has room for it (else `push` grows it).
    #[inline]
    pub(super) fn try_push(&mut self, byte: u8) -> bool {
        let at = self.len;
        let map = &mut self.region.as_mut().expect("held until dropped").map;
        if HEADER + at >= map.len {
            return false;
        }
        map.write(at, &[byte]);
        self.len += 1;
        true
    }

    /// The payload's length.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The payload.
    pub(crate) fn bytes(&self) -> &[u8] {
        let region = self.region.as_ref().expect("held until dropped");
        region.map.payload(self.len)
    }

    /// The region's file, to send.
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.region
            .as_ref()
            .expect("held until dropped")
            .file
            .as_fd()
    }

    /// Lends the region to the other side: returns the loan's number, which the borrower
    /// clears when done ([`Lent`]); until then the region is not reused.
    pub(crate) fn lend(&mut self) -> u64 {
        let loan = match self.home.loans.fetch_add(1, Ordering::Relaxed) {
            0 => self.home.loans.fetch_add(1, Ordering::Relaxed), // 0 means "free"
            loan => loan,
        };
        self.region().map.word().store(loan, Ordering::Release);
        self.loan = Some(loan);
        loan
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let Some(region) = self.region.take() else {
            return;
        };
        let mut pool = self.home.pool.lock();
        match self.loan {
            Some(loan) => pool.lent.push((region, loan)),
            None => pool.idle.push(region),
        }
        pool.collect();
    }
}
