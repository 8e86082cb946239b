//! The PCI root bus: segment 0, bus 0, 32 device slots, of which slot 0 holds the host
//! bridge. Kata hot-plugs disks as virtio-pci devices and finds them by their address
//! `0000:00:DD.0` (docs in `/work/shared/KATA.md`), so devices come and go at runtime in a
//! slot, and nothing about a slot is fixed when the VM is built.
//!
//! - `config_space`: a type-0 configuration header with its capability list, what the guest
//!   may write in it, and the BAR sizing protocol.
//! - `config_access`: how the guest reaches configuration space: configuration mechanism #1
//!   (ports 0xCF8/0xCFC) and ECAM (memory mapped, announced by the MCFG table).
//! - `root`: the slots, and the one MMIO window every device's BARs live in.
//! - `host_bridge`: the device in slot 0.
//! - `msix`: the MSI-X capability, vector table and pending bits.
//! - `msi_routes`: the KVM GSI routing table behind MSI-X vectors (one GSI and irqfd each).
//!
//! Guest accesses that are malformed (a width other than 1, 2 or 4 bytes, unaligned, past
//! the end, to an empty slot) read as all ones and are ignored when written: a guest can
//! never make the VMM panic through them.

pub mod config_access;
pub mod config_space;
pub mod host_bridge;
pub mod hotplug;
pub mod msi_routes;
pub mod msix;
pub mod root;
#[cfg(test)]
mod tests;

pub use config_access::{PciConfigIo, PciConfigMmio};
pub use config_space::{ConfigSpace, PciHeader};
pub use root::{BarEvent, PciBarWindow, PciRoot};

use std::sync::{Arc, Mutex};

/// Configuration mechanism #1: the address register at 0xCF8 and the 4-byte data window at
/// 0xCFC, one port range of 8 bytes.
pub const CONFIG_IO_PORT: u16 = revenant_acpi::platform::PCI_CONFIG_IO_PORT;
pub const CONFIG_IO_LEN: u16 = revenant_acpi::platform::PCI_CONFIG_IO_LEN;

/// ECAM (PCI Express enhanced configuration access) for bus 0 of segment 0: 4 KiB per
/// function, 8 functions per device, 32 devices, so 1 MiB per bus. One bus is all this VMM
/// has, so the window is 1 MiB; the MCFG table announces it as segment 0, buses 0..=0. It
/// sits above the BAR aperture and below the GED (0xf000_0000, `revenant_acpi::platform`),
/// inside the 32-bit MMIO gap, and must be reserved from the device MMIO allocator and in
/// the memory map (Linux checks that an MCFG area is reserved before it uses it).
pub const ECAM_BASE: u64 = revenant_acpi::platform::PCI_ECAM_BASE;
pub const ECAM_SIZE: u64 = revenant_acpi::platform::PCI_ECAM_SIZE;

/// Where every device's 32-bit memory BARs are placed: 256 MiB below the ECAM window. Kept
/// below 4 GiB so 32-bit BARs (all this VMM uses) always fit; the host bridge's `_CRS` in the
/// DSDT must announce exactly this window, and the VM reserves it from the device MMIO
/// allocator's range (`crate::vstate::memory`, which ends where it starts).
pub const BAR_APERTURE_START: u64 = revenant_acpi::platform::PCI_BAR_APERTURE_START;
pub const BAR_APERTURE_SIZE: u64 = revenant_acpi::platform::PCI_BAR_APERTURE_SIZE;

// The layout holds together: the aperture and ECAM above the device MMIO range virtio-mmio
// windows come from, below the GED, and ECAM exactly one bus.
const _: () = {
    use crate::vstate::memory::{DEVICE_MMIO_SIZE, DEVICE_MMIO_START};
    assert!(BAR_APERTURE_START >= DEVICE_MMIO_START + DEVICE_MMIO_SIZE);
    assert!(BAR_APERTURE_START + BAR_APERTURE_SIZE <= ECAM_BASE);
    assert!(ECAM_BASE + ECAM_SIZE <= revenant_acpi::platform::GED_MMIO_BASE);
    assert!(ECAM_SIZE == SLOTS as u64 * 8 * ECAM_FUNCTION_SIZE);
    assert!(ECAM_BASE % (1 << 20) == 0);
};

/// Device slots on bus 0.
pub const SLOTS: u8 = revenant_acpi::platform::PCI_SLOTS;
/// The slot holding the host bridge; never given to a device.
pub const HOST_BRIDGE_SLOT: u8 = 0;
/// A conventional (non-Express) function's configuration space: the 64-byte header and
/// capabilities. Extended space (0x100..0x1000, ECAM only) reads as zero, which tells Linux
/// there are no extended capabilities.
pub const CONFIG_SPACE_SIZE: usize = 256;
/// One function's share of ECAM.
pub const ECAM_FUNCTION_SIZE: u64 = 4096;

/// Why a PCI operation failed.
#[derive(Debug, thiserror::Error)]
pub enum PciError {
    #[error("slot {0} does not exist or is reserved (bus 0 has slots 1..=31)")]
    InvalidSlot(u8),
    #[error("slot {0} is already in use")]
    SlotInUse(u8),
    #[error("slot {0} is empty")]
    SlotEmpty(u8),
    #[error("no free slot on bus 0")]
    NoFreeSlot,
    #[error("BAR {index}: {reason}")]
    Bar { index: usize, reason: &'static str },
    #[error("no room left in configuration space for a {len}-byte capability")]
    CapabilitySpace { len: usize },
    #[error("an MSI-X table of {0} vectors is outside 1..=2048")]
    MsixVectors(usize),
    #[error("the saved state does not match this device: {0}")]
    State(&'static str),
    #[error("no interrupt routes left for {0} more MSI vectors")]
    NoGsi(usize),
    #[error("KVM refused the GSI routing table: {0}")]
    Routing(#[source] kvm_ioctls::Error),
    #[error("cannot set up the irqfd of GSI {gsi}: {source}")]
    Irqfd {
        gsi: u32,
        #[source]
        source: std::io::Error,
    },
}

/// A memory BAR the device decodes now: memory space enabled, an address programmed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BarRange {
    /// BAR index, 0..=5.
    pub bar: u8,
    /// Guest-physical base.
    pub base: u64,
    pub size: u64,
}

/// A PCI function as the root bus sees it. Offsets are checked by the bus first: a
/// configuration access is 1, 2 or 4 bytes, naturally aligned, below 4096; a BAR access
/// lies inside a range [`PciDevice::bars`] returned.
pub trait PciDevice: Send {
    /// Reads configuration space at byte `offset`.
    fn config_read(&mut self, offset: u16, data: &mut [u8]);
    /// Writes configuration space at byte `offset`; bits the guest may not change stay.
    fn config_write(&mut self, offset: u16, data: &[u8]);
    /// The memory BARs the device decodes now.
    fn bars(&self) -> Vec<BarRange>;
    /// Reads `data.len()` bytes at `offset` inside BAR `bar`.
    fn bar_read(&mut self, bar: u8, offset: u64, data: &mut [u8]);
    /// Writes at `offset` inside BAR `bar`.
    fn bar_write(&mut self, bar: u8, offset: u64, data: &[u8]);
}

pub type SharedPciDevice = Arc<Mutex<dyn PciDevice>>;

/// Whether a configuration access of `len` bytes at `offset` is one a guest may make:
/// 1, 2 or 4 bytes, naturally aligned, inside the function's 4 KiB.
pub fn valid_config_access(offset: u64, len: usize) -> bool {
    matches!(len, 1 | 2 | 4)
        && offset % len as u64 == 0
        && offset + len as u64 <= ECAM_FUNCTION_SIZE
}
