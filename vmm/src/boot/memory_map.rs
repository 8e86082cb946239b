//! The guest's physical memory map, shared by the e820 table and the PVH memmap.

use vm_memory::{GuestMemoryBackend, GuestMemoryRegion};

use super::layout::{EBDA_START, HIMEM_START};
use crate::vstate::memory::GuestMemoryMmap;

pub const E820_RAM: u32 = 1;
pub const E820_RESERVED: u32 = 2;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapEntry {
    pub addr: u64,
    pub size: u64,
    pub kind: u32,
}

/// RAM below the EBDA, then every RAM region from 1 MiB up (the legacy VGA/BIOS hole
/// between them is left out, as on real hardware), and the PCI ECAM window as reserved:
/// Linux only uses the MCFG's configuration space when the memory map reserves it.
pub fn memory_map(mem: &GuestMemoryMmap) -> Vec<MapEntry> {
    let mut map = vec![MapEntry {
        addr: 0,
        size: EBDA_START,
        kind: E820_RAM,
    }];
    for region in mem.iter() {
        let start = region.start_addr().0.max(HIMEM_START);
        let end = region.start_addr().0 + region.len();
        if end > start {
            map.push(MapEntry {
                addr: start,
                size: end - start,
                kind: E820_RAM,
            });
        }
    }
    map.push(MapEntry {
        addr: revenant_acpi::platform::PCI_ECAM_BASE,
        size: revenant_acpi::platform::PCI_ECAM_SIZE,
        kind: E820_RESERVED,
    });
    map.sort_by_key(|e| e.addr);
    map
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vstate::memory::{create_guest_memory, MMIO_GAP_END, MMIO_GAP_START};

    #[test]
    fn skips_legacy_hole_and_mmio_gap() {
        let mem = create_guest_memory((3 << 30) + (1 << 30)).unwrap();
        let map = memory_map(&mem);
        assert_eq!(map.len(), 4);
        assert_eq!(
            map[1],
            MapEntry {
                addr: HIMEM_START,
                size: MMIO_GAP_START - HIMEM_START,
                kind: E820_RAM
            }
        );
        // The ECAM window, reserved, inside the gap.
        assert_eq!(
            map[2],
            MapEntry {
                addr: revenant_acpi::platform::PCI_ECAM_BASE,
                size: revenant_acpi::platform::PCI_ECAM_SIZE,
                kind: E820_RESERVED
            }
        );
        assert_eq!(
            map[3],
            MapEntry {
                addr: MMIO_GAP_END,
                size: 1 << 30,
                kind: E820_RAM
            }
        );
    }
}
