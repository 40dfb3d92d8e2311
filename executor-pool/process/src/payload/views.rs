//! The receiver's side of large payloads: its mappings of the other side's regions, kept
//! for when the same region comes again, and the loan of one payload (`payload/mod.rs`
//! has the protocol).

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use rustix::fs::SealFlags;

use super::map::{HEADER, Map};

/// The mappings of the other side's regions a receiver keeps.
pub(super) const KEEP_VIEWS: usize = 4;

/// A mapping of one of the other side's regions.
pub(super) struct View {
    map: Map,
    /// The file's identity: (device, inode).
    pub(super) id: (u64, u64),
}

/// The receiver's mappings, the most recently used last.
#[derive(Default)]
pub(crate) struct Views {
    pub(super) views: Vec<Arc<View>>,
}

impl Views {
    /// The `len` payload bytes in the region `fd`, mapped writable when the region is
    /// lent under `loan` (its word is cleared when the [`Lent`] is dropped).
    pub(crate) fn open(&mut self, fd: OwnedFd, len: u64, loan: Option<u64>) -> io::Result<Lent> {
        let seals = rustix::fs::fcntl_get_seals(&fd)?;
        if !seals.contains(SealFlags::SHRINK) {
            return Err(io::Error::other("a payload file that may shrink"));
        }
        let stat = rustix::fs::fstat(&fd)?;
        let size = usize::try_from(stat.st_size).map_err(io::Error::other)?;
        let len = usize::try_from(len).map_err(io::Error::other)?;
        if size < HEADER || len > size - HEADER {
            return Err(io::Error::other(format!(
                "a payload of {len} bytes announced in a file of {size}"
            )));
        }
        let id = (stat.st_dev as u64, stat.st_ino as u64);
        let found = self
            .views
            .iter()
            .position(|view| view.id == id && view.map.len >= HEADER + len);
        let view = match found {
            Some(i) => self.views.remove(i),
            None => {
                self.views.retain(|view| view.id != id); // a smaller, older mapping
                let map = Map::new(fd.as_fd(), size, loan.is_some(), true)?;
                Arc::new(View { map, id })
            }
        };
        self.views.push(view.clone());
        if self.views.len() > KEEP_VIEWS {
            self.views.remove(0);
        }
        Ok(Lent { view, len, loan })
    }
}

/// A payload in the other side's region, readable until dropped; dropping it gives a lent
/// region back.
pub(crate) struct Lent {
    pub(super) view: Arc<View>,
    len: usize,
    loan: Option<u64>,
}

impl Lent {
    pub(crate) fn bytes(&self) -> &[u8] {
        self.view.map.payload(self.len)
    }
}

impl Drop for Lent {
    fn drop(&mut self) {
        if let Some(loan) = self.loan {
            // Only this loan's: a stale `Lent` never frees the region's next loan.
            let _ = self.view.map.word().compare_exchange(
                loan,
                0,
                Ordering::Release,
                Ordering::Relaxed,
            );
        }
    }
}
