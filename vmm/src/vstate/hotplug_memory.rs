//! The hot-pluggable memory region: guest-physical space above the boot RAM that virtio-mem
//! hands to the guest block by block.
//!
//! The whole region is mapped once (anonymous, MAP_NORESERVE, so it costs nothing until the
//! guest touches a page) and registered with KVM together with the boot RAM, before the
//! irqchip exists: on this host a memslot added after KVM_CREATE_IRQCHIP costs 3-7 ms
//! (PVM.md), so plugging memory never changes memslots. It is not in the e820 map: the guest
//! only learns about it from the virtio-mem device. Unplugged blocks are given back to the
//! host with MADV_DONTNEED.

use std::sync::Arc;

use vm_memory::{GuestAddress, GuestMemoryRegion, MmapRegion};

use super::memory::{GuestMemoryMmap, GuestRegionMmap, MMIO_GAP_END, MMIO_GAP_START, PAGE_SIZE};

/// Where the region may start: Linux adds hot-plugged memory in memory blocks of 128 MiB
/// (x86-64), so a region aligned to that lets the guest use all of it.
pub const HOTPLUG_ALIGNMENT: u64 = 128 << 20;

#[derive(Debug, thiserror::Error)]
pub enum HotplugMemoryError {
    #[error("hot-pluggable memory size {0:#x} is zero or not page aligned")]
    Size(u64),
    #[error("hot-pluggable memory at {base:#x}+{size:#x} is beyond the address space")]
    Placement { base: u64, size: u64 },
    #[error("cannot map {size:#x} bytes of hot-pluggable memory: {source}")]
    Map {
        size: u64,
        #[source]
        source: vm_memory::mmap::MmapRegionError,
    },
    #[error("hot-pluggable memory overlaps guest RAM: {0}")]
    Overlap(#[source] vm_memory::GuestRegionCollectionError),
    #[error("range {offset:#x}+{len:#x} is outside the hot-pluggable region")]
    OutOfRange { offset: u64, len: u64 },
    #[error("cannot release hot-pluggable memory: {0}")]
    Discard(#[source] std::io::Error),
}

/// The first [`HOTPLUG_ALIGNMENT`]-aligned address above the boot RAM and 4 GiB: the
/// region never shares the 32-bit space with the MMIO gap.
pub fn hotplug_base(boot_size: u64) -> u64 {
    let ram_end = if boot_size <= MMIO_GAP_START {
        MMIO_GAP_END
    } else {
        MMIO_GAP_END + (boot_size - MMIO_GAP_START)
    };
    ram_end.next_multiple_of(HOTPLUG_ALIGNMENT)
}

/// The mapped region. Clones share the mapping.
#[derive(Clone, Debug)]
pub struct HotplugRegion {
    region: Arc<GuestRegionMmap>,
}

impl HotplugRegion {
    /// Maps `size` bytes for guest-physical `base`.
    pub fn new(base: u64, size: u64) -> Result<Self, HotplugMemoryError> {
        if size == 0 || size % PAGE_SIZE != 0 {
            return Err(HotplugMemoryError::Size(size));
        }
        let placement = HotplugMemoryError::Placement { base, size };
        let len = usize::try_from(size).map_err(|_| HotplugMemoryError::Size(size))?;
        if base.checked_add(size).is_none() {
            return Err(placement);
        }
        let mapping = MmapRegion::build(
            None,
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
        )
        .map_err(|source| HotplugMemoryError::Map { size, source })?;
        let region = GuestRegionMmap::new(mapping, GuestAddress(base)).ok_or(placement)?;
        Ok(HotplugRegion {
            region: Arc::new(region),
        })
    }

    pub fn start(&self) -> GuestAddress {
        self.region.start_addr()
    }

    pub fn len(&self) -> u64 {
        self.region.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `boot` plus this region: what KVM and the devices see (the guest may hand plugged
    /// memory to a device). The boot regions are shared, not copied.
    pub fn attach(&self, boot: &GuestMemoryMmap) -> Result<GuestMemoryMmap, HotplugMemoryError> {
        boot.insert_region(self.region.clone())
            .map_err(HotplugMemoryError::Overlap)
    }

    /// Gives `len` bytes at `offset` into the region back to the host; they read as zero
    /// afterwards.
    pub fn discard(&self, offset: u64, len: u64) -> Result<(), HotplugMemoryError> {
        let out_of_range = HotplugMemoryError::OutOfRange { offset, len };
        match offset.checked_add(len) {
            Some(end) if end <= self.len() && offset % PAGE_SIZE == 0 => {}
            _ => return Err(out_of_range),
        }
        if len == 0 {
            return Ok(());
        }
        let (Ok(at), Ok(n)) = (usize::try_from(offset), usize::try_from(len)) else {
            return Err(out_of_range);
        };
        // SAFETY: `offset + len` is inside the mapping (checked above) and `at` is page
        // aligned, as madvise needs. MADV_DONTNEED on a private anonymous mapping only
        // replaces the pages with zero pages; the mapping itself stays valid for every
        // other user (the guest through KVM, devices through `GuestMemoryMmap`).
        let rc =
            unsafe { libc::madvise(self.region.as_ptr().add(at).cast(), n, libc::MADV_DONTNEED) };
        if rc != 0 {
            return Err(HotplugMemoryError::Discard(std::io::Error::last_os_error()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use vm_memory::{Bytes, GuestMemoryBackend};

    use super::*;
    use crate::vstate::memory::create_guest_memory;

    #[test]
    fn sits_above_ram_and_4g_on_a_128m_boundary() {
        assert_eq!(hotplug_base(256 << 20), 4 << 30);
        assert_eq!(hotplug_base(3 << 30), 4 << 30);
        // 3 GiB + 1 MiB of RAM ends at 4 GiB + 1 MiB: the next 128 MiB boundary.
        assert_eq!(hotplug_base((3 << 30) + (1 << 20)), (4 << 30) + (128 << 20));
        assert_eq!(hotplug_base(4 << 30), (5 << 30));
    }

    #[test]
    fn attaches_shares_boot_ram_and_discards() {
        let boot = create_guest_memory(8 << 20).unwrap();
        let region = HotplugRegion::new(hotplug_base(8 << 20), 16 << 20).unwrap();
        let full = region.attach(&boot).unwrap();
        assert_eq!(full.num_regions(), 2);
        // Boot RAM is the same mapping, not a copy.
        boot.write_obj(0x55u8, GuestAddress(0x1000)).unwrap();
        assert_eq!(full.read_obj::<u8>(GuestAddress(0x1000)).unwrap(), 0x55);
        let at = GuestAddress(region.start().0 + (2 << 20));
        full.write_obj(0xdead_beefu32, at).unwrap();
        region.discard(2 << 20, 2 << 20).unwrap();
        assert_eq!(
            full.read_obj::<u32>(at).unwrap(),
            0,
            "discarded pages read zero"
        );
        assert!(region.discard(15 << 20, 2 << 20).is_err());
        assert!(region.discard(1, 4096).is_err());
        assert!(region.discard(u64::MAX, 2).is_err());
        assert!(HotplugRegion::new(4 << 30, 4095).is_err());
        assert!(HotplugRegion::new(u64::MAX - 4095, 8192).is_err());
    }
}
