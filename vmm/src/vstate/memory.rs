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

/// What a VM's boot RAM is made of, from its `memory` config.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RamBacking {
    /// `memory.zones`: each zone anonymous or its file.
    Zones,
    /// `memory.shared: true`: a shared unnamed file in /dev/shm, or a memfd.
    SharedFile,
    /// `memory.shared` unset and no RAM extension: a shared unnamed file in /dev/shm when it
    /// has room for the RAM (a snapshot into /dev/shm links it instead of copying the RAM:
    /// kata's templating with any config), else anonymous memory.
    LinkableIfRoom,
    /// `memory.shared: false`, or the RAM extension (userfaultfd on private anonymous memory).
    Anonymous,
}

impl RamBacking {
    pub fn of(memory: &crate::config::MemoryConfig) -> Self {
        if !memory.zones.is_empty() {
            return Self::Zones;
        }
        match memory.shared {
            Some(true) => Self::SharedFile,
            Some(false) => Self::Anonymous,
            None if memory.remote.is_some() => Self::Anonymous,
            None => Self::LinkableIfRoom,
        }
    }
}

/// The guest's boot RAM as `memory` describes it ([`RamBacking`]), over the same
/// guest-physical ranges ([`ram_ranges`] of the total) whatever backs it.
pub fn create_ram(memory: &crate::config::MemoryConfig) -> Result<GuestMemoryMmap, MemoryError> {
    use super::zone_memory::{create_linkable_memory, create_shared_memory, create_zone_memory};
    match RamBacking::of(memory) {
        RamBacking::Zones => Ok(create_zone_memory(&memory.zones)?),
        RamBacking::SharedFile => Ok(create_shared_memory(memory.size)?),
        RamBacking::LinkableIfRoom => match create_linkable_memory(memory.size)? {
            Some(mem) => Ok(mem),
            None => create_guest_memory(memory.size),
        },
        RamBacking::Anonymous => create_guest_memory(memory.size),
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

    fn memory(shared: Option<bool>, remote: bool) -> crate::config::MemoryConfig {
        let mut c = crate::config::VmConfig::default().memory;
        c.size = 8 << 20;
        c.shared = shared;
        c.remote = remote.then(|| {
            serde_json::from_str(r#"{"servers": "tcp://127.0.0.1:1", "token_file": "/t"}"#).unwrap()
        });
        c
    }

    fn file_backed(mem: &GuestMemoryMmap) -> bool {
        mem.iter().all(|r| r.file_offset().is_some())
    }

    #[test]
    fn ram_backing_follows_shared_and_remote() {
        use RamBacking::*;
        assert_eq!(RamBacking::of(&memory(None, false)), LinkableIfRoom);
        assert_eq!(RamBacking::of(&memory(None, true)), Anonymous);
        assert_eq!(RamBacking::of(&memory(Some(false), false)), Anonymous);
        assert_eq!(RamBacking::of(&memory(Some(true), false)), SharedFile);
        assert!(!file_backed(
            &create_ram(&memory(Some(false), false)).unwrap()
        ));
        assert!(!file_backed(&create_ram(&memory(None, true)).unwrap()));
        assert!(file_backed(
            &create_ram(&memory(Some(true), false)).unwrap()
        ));
    }

    #[test]
    fn unset_shared_is_a_file_only_where_dev_shm_has_room() {
        use super::super::zone_memory::{free_bytes, SHARED_RAM_DIR};
        let Ok(free) = std::fs::File::open(SHARED_RAM_DIR).and_then(|d| free_bytes(&d)) else {
            eprintln!("SKIP: no {SHARED_RAM_DIR}: unset memory.shared is anonymous here");
            assert!(!file_backed(&create_ram(&memory(None, false)).unwrap()));
            return;
        };
        assert!(
            free > 8 << 20,
            "{SHARED_RAM_DIR} has only {free} bytes free"
        );
        assert!(file_backed(&create_ram(&memory(None, false)).unwrap()));
        // More RAM than the tmpfs can hold: anonymous (lazily populated, nothing touched).
        let mut big = memory(None, false);
        big.size = (free / PAGE_SIZE + 1) * PAGE_SIZE + (1 << 30);
        assert!(!file_backed(&create_ram(&big).unwrap()));
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
