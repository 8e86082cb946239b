//! Address ranges for devices, handed out by `vm-allocator` so none can overlap.

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
    pio: AddressAllocator,
    mmio: AddressAllocator,
}

impl Resources {
    pub fn new() -> Result<Self, ResourceError> {
        let pio = AddressAllocator::new(0, 0x1_0000).map_err(|source| ResourceError::Reserve {
            kind: "port I/O",
            base: 0,
            len: 0x1_0000,
            source,
        })?;
        let mmio =
            AddressAllocator::new(DEVICE_MMIO_START, DEVICE_MMIO_SIZE).map_err(|source| {
                ResourceError::Reserve {
                    kind: "MMIO",
                    base: DEVICE_MMIO_START,
                    len: DEVICE_MMIO_SIZE,
                    source,
                }
            })?;
        Ok(Resources { pio, mmio })
    }

    /// Claims a fixed legacy port range (e.g. COM1 at 0x3f8).
    pub fn claim_pio(&mut self, base: u64, len: u64) -> Result<RangeInclusive, ResourceError> {
        self.pio
            .allocate(len, 1, AllocPolicy::ExactMatch(base))
            .map_err(|source| ResourceError::Reserve {
                kind: "port I/O",
                base,
                len,
                source,
            })
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
    fn refuses_double_claims() {
        let mut r = Resources::new().unwrap();
        let com1 = r.claim_pio(0x3f8, 8).unwrap();
        assert_eq!((com1.start(), com1.len()), (0x3f8, 8));
        assert!(r.claim_pio(0x3fc, 1).is_err());
        let a = r.allocate_mmio(0x1000).unwrap();
        let b = r.allocate_mmio(0x1000).unwrap();
        assert_ne!(a.start(), b.start());
        assert_eq!(a.start() % 0x1000, 0);
    }
}
