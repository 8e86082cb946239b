//! MMIO windows for devices, handed out by `vm-allocator` so none can overlap.
//!
//! Fixed legacy port ranges (COM1, i8042) are not claimed here: vm-allocator 0.1.4's
//! `AllocPolicy::ExactMatch` accepts a start address inside an already allocated range
//! (it only checks the node state on a perfect match), so it cannot detect those overlaps;
//! [`crate::devices::bus::Bus::insert`] refuses them instead.

use vm_allocator::{AddressAllocator, AllocPolicy, RangeInclusive};

use crate::vstate::memory::{DEVICE_MMIO_SIZE, DEVICE_MMIO_START};

#[derive(Debug, thiserror::Error)]
pub enum ResourceError {
    #[error("cannot reserve {kind} range {base:#x}+{len:#x}: {source}")]
    Reserve {
        kind: &'static str,
        base: u64,
        len: u64,
        #[source]
        source: vm_allocator::Error,
    },
    #[error("cannot allocate {len:#x} bytes of MMIO space: {0}", len = .1)]
    Mmio(#[source] vm_allocator::Error, u64),
}

pub struct Resources {
    mmio: AddressAllocator,
}

impl Resources {
    pub fn new() -> Result<Self, ResourceError> {
        let mmio =
            AddressAllocator::new(DEVICE_MMIO_START, DEVICE_MMIO_SIZE).map_err(|source| {
                ResourceError::Reserve {
                    kind: "MMIO",
                    base: DEVICE_MMIO_START,
                    len: DEVICE_MMIO_SIZE,
                    source,
                }
            })?;
        Ok(Resources { mmio })
    }

    /// Allocates a page-aligned MMIO window, e.g. for a virtio-mmio device.
    pub fn allocate_mmio(&mut self, len: u64) -> Result<RangeInclusive, ResourceError> {
        self.mmio
            .allocate(len, 0x1000, AllocPolicy::FirstMatch)
            .map_err(|e| ResourceError::Mmio(e, len))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mmio_windows_never_overlap() {
        let mut r = Resources::new().unwrap();
        let a = r.allocate_mmio(0x1000).unwrap();
        let b = r.allocate_mmio(0x1000).unwrap();
        assert!(b.start() > a.end() || a.start() > b.end());
        assert_eq!(a.start() % 0x1000, 0);
    }
}
