//! Encoding with postcard into a plain buffer while the value is small, into a region from
//! [`INLINE_MAX`] bytes on, in one pass (`payload/mod.rs`).

use std::sync::Arc;

use super::INLINE_MAX;
use super::regions::{Lease, Regions};
use super::views::Lent;

/// Encoded bytes, wherever they are.
pub(crate) enum Encoded {
    /// In memory of ours: small, or no region could be had.
    Inline(Vec<u8>),
    /// In a region of ours.
    Region(Lease),
    /// In the other side's region.
    Lent(Lent),
}

impl Encoded {
    pub(crate) fn bytes(&self) -> &[u8] {
        match self {
            Encoded::Inline(bytes) => bytes,
            Encoded::Region(lease) => lease.bytes(),
            Encoded::Lent(lent) => lent.bytes(),
        }
    }
}

impl std::fmt::Debug for Encoded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let place = match self {
            Encoded::Inline(_) => "inline",
            Encoded::Region(_) => "in a region",
            Encoded::Lent(_) => "in a lent region",
        };
        write!(f, "{} bytes {place}", self.bytes().len())
    }
}

/// Encodes `value` with postcard: into a plain buffer while it is small, into one of
/// `regions` from [`INLINE_MAX`] bytes on (or inline still, if no region can be made).
pub(crate) fn encode<T: serde::Serialize + ?Sized>(
    value: &T,
    regions: &Arc<Regions>,
) -> Result<Encoded, postcard::Error> {
    let spill = Spill {
        inline: Vec::new(),
        lease: None,
        regions,
        spilled: false,
    };
    postcard::serialize_with_flavor(value, spill)
}

/// Bytes already encoded (by another process: `ProcessPool::call_encoded`), in a region
/// when they are large (or inline still, if no region can be had).
pub(crate) fn encoded_from(bytes: Vec<u8>, regions: &Arc<Regions>) -> Encoded {
    if bytes.len() > INLINE_MAX
        && let Ok(mut lease) = regions.lease(bytes.len())
        && lease.push(&bytes).is_ok()
    {
        return Encoded::Region(lease);
    }
    Encoded::Inline(bytes)
}

/// The postcard output that moves to a region when it grows past [`INLINE_MAX`].
struct Spill<'a> {
    inline: Vec<u8>,
    lease: Option<Lease>,
    regions: &'a Arc<Regions>,
    /// A region was tried and could not be had (or grown): the rest stays inline.
    spilled: bool,
}

impl postcard::ser_flavors::Flavor for Spill<'_> {
    type Output = Encoded;

    fn try_push(&mut self, byte: u8) -> postcard::Result<()> {
        // A sequence of `u8`s comes a byte at a time: the common cases go straight in.
        if let Some(lease) = &mut self.lease {
            if lease.try_push(byte) {
                return Ok(());
            }
        } else if self.inline.len() < INLINE_MAX {
            self.inline.push(byte);
            return Ok(());
        }
        self.try_extend(&[byte])
    }

    fn try_extend(&mut self, bytes: &[u8]) -> postcard::Result<()> {
        if let Some(lease) = &mut self.lease {
            return lease
                .push(bytes)
                .map_err(|_| postcard::Error::SerializeBufferFull);
        }
        let total = self.inline.len() + bytes.len();
        if total > INLINE_MAX && !self.spilled {
            self.spilled = true;
            let leased = self.regions.lease(total).and_then(|mut lease| {
                lease.push(&self.inline)?;
                lease.push(bytes)?;
                Ok(lease)
            });
            if let Ok(lease) = leased {
                self.inline = Vec::new();
                self.lease = Some(lease);
                return Ok(());
            }
        }
        self.inline.extend_from_slice(bytes);
        Ok(())
    }

    fn finalize(self) -> postcard::Result<Encoded> {
        Ok(match self.lease {
            Some(lease) => Encoded::Region(lease),
            None => Encoded::Inline(self.inline),
        })
    }
}
