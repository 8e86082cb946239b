//! Guest RAM layout: RAM from 0 up to the 32-bit MMIO gap, the rest above 4 GiB.

use vm_memory::{GuestAddress, GuestMemoryBackend, GuestMemoryRegion};

pub type GuestMemoryMmap = vm_memory::GuestMemoryMmap<()>;
pub type GuestRegionMmap = vm_memory::GuestRegionMmap<()>;

/// Start of the 32-bit MMIO hole (LAPIC, IOAPIC, virtio-mmio devices live in it).
pub const MMIO_GAP_START: u64 = 0xc000_0000;
/// End of the 32-bit MMIO hole: RAM resumes here.
pub const MMIO_GAP_END: u64 = 0x1_0000_0000;
/// Where virtio-mmio and other VMM-allocated MMIO windows start inside the gap. The top of
/// the gap holds the IOAPIC (0xfec0_0000) and the LAPIC (0xfee0_0000), so stay below them.
/// It ends where the PCI BAR aperture starts (`crate::devices::pci`).
pub const DEVICE_MMIO_START: u64 = MMIO_GAP_START;
pub const DEVICE_MMIO_SIZE: u64 = 0x1000_0000;
pub const PAGE_SIZE: u64 = 4096;

#[derive(Debug, thiserror::Error)]
pub enum MemoryError {
    #[error("guest memory size {0} is not a multiple of 4 KiB")]
    Unaligned(u64),
    #[error("guest memory size must not be zero")]
    Empty,
    #[error("cannot map {size} bytes of guest memory: {source}")]
    Map {
        size: u64,
        #[source]
        source: vm_memory::mmap::FromRangesError,
    },
    #[error(transparent)]
    Zone(#[from] super::zone_memory::ZoneMemoryError),
}

/// The guest-physical ranges that hold `size` bytes of RAM around the MMIO gap.
pub fn ram_ranges(size: u64) -> Vec<(GuestAddress, u64)> {
    if size <= MMIO_GAP_START {
        vec![(GuestAddress(0), size)]
    } else {
        vec![
            (GuestAddress(0), MMIO_GAP_START),
            (GuestAddress(MMIO_GAP_END), size - MMIO_GAP_START),
        ]
    }
}

/// Maps anonymous, lazily populated guest RAM (pages cost host memory only once touched).
pub fn create_guest_memory(size: u64) -> Result<GuestMemoryMmap, MemoryError> {
    if size == 0 {
        return Err(MemoryError::Empty);
    }
    if size % PAGE_SIZE != 0 {
        return Err(MemoryError::Unaligned(size));
    }
    let ranges: Vec<(GuestAddress, usize)> = ram_ranges(size)
        .into_iter()
        .map(|(a, l)| (a, l as usize))
        .collect();
    GuestMemoryMmap::from_ranges(&ranges).map_err(|source| MemoryError::Map { size, source })
}

/// The guest's boot RAM as `memory` describes it: its zones, or `size` bytes of anonymous
/// memory (shared file memory with `shared`). Either way over the same guest-physical ranges
/// ([`ram_ranges`] of the total).
pub fn create_ram(memory: &crate::config::MemoryConfig) -> Result<GuestMemoryMmap, MemoryError> {
    if !memory.zones.is_empty() {
        Ok(super::zone_memory::create_zone_memory(&memory.zones)?)
    } else if memory.shared {
        Ok(super::zone_memory::create_shared_memory(memory.size)?)
    } else {
        create_guest_memory(memory.size)
    }
}

/// Size of the RAM below the MMIO gap (where boot structures and the initramfs go).
pub fn low_ram_end(mem: &GuestMemoryMmap) -> u64 {
    mem.iter()
        .map(|r| r.start_addr().0 + r.len())
        .filter(|end| *end <= MMIO_GAP_START)
        .max()
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_around_the_gap() {
        assert_eq!(ram_ranges(256 << 20), vec![(GuestAddress(0), 256 << 20)]);
        let r = ram_ranges(4 << 30);
        assert_eq!(r[0], (GuestAddress(0), MMIO_GAP_START));
        assert_eq!(
            r[1],
            (GuestAddress(MMIO_GAP_END), (4 << 30) - MMIO_GAP_START)
        );
    }

    #[test]
    fn rejects_bad_sizes() {
        assert!(matches!(create_guest_memory(0), Err(MemoryError::Empty)));
        assert!(matches!(
            create_guest_memory(4097),
            Err(MemoryError::Unaligned(4097))
        ));
        let m = create_guest_memory(8 << 20).unwrap();
        assert_eq!(low_ram_end(&m), 8 << 20);
    }
}
