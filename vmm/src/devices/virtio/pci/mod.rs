//! The virtio-pci transport, modern interface only (virtio 1.2, 4.1): a virtio device as a
//! PCI function on the root bus ([`crate::devices::pci`]), which is how kata hot-plugs
//! disks (`vm.add-disk` answers with the device's `0000:00:DD.0`).
//!
//! - `capabilities`: the configuration space: identity (vendor 0x1af4, device 0x1040 +
//!   virtio type, revision 1), one memory BAR, the virtio capabilities pointing into it and
//!   the MSI-X capability.
//! - `common_cfg`: the common configuration structure (4.1.4.3): features, status, queue
//!   setup, MSI-X vector assignment; the rules behind it are `virtio::transport`'s.
//! - `interrupt`: which MSI-X vector each queue and configuration changes use, and INTx
//!   (the ISR register and a line) while MSI-X is off.
//! - `transport`: the PCI function: configuration space and BAR accesses.
//! - `persist`: the transport's snapshot state.
//! - `testing`: a host-side driver that finds and drives a device the way Linux's
//!   `virtio_pci_modern` does, for tests.
//!
//! BAR 0 (32 KiB, 32-bit memory) holds each structure on its own 4 KiB page:
//!
//! | offset | structure |
//! |---|---|
//! | 0x0000 | common configuration (0x38 bytes) |
//! | 0x1000 | ISR status (1 byte, read clears) |
//! | 0x2000 | device configuration (4 KiB) |
//! | 0x3000 | notifications: queue `i` at `0x3000 + 4 * i` (multiplier 4) |
//! | 0x4000 | MSI-X table (16 bytes per vector) |
//! | 0x5000 | MSI-X pending bits |
//!
//! A notify offset per queue (multiplier 4, not 0) gives each queue its own address, so a
//! KVM ioeventfd per queue needs no data match and one queue's notification never wakes
//! another queue's handler.

pub mod capabilities;
pub mod common_cfg;
pub mod interrupt;
pub mod persist;
pub mod testing;
#[cfg(test)]
mod tests;
pub mod transport;

pub use transport::VirtioPciTransport;

/// PCI vendor ID of every virtio device (Red Hat, Inc.; formerly Qumranet).
pub const VIRTIO_PCI_VENDOR_ID: u16 = 0x1af4;
/// Modern device IDs are this plus the virtio device type (4.1.2).
pub const VIRTIO_PCI_DEVICE_ID_BASE: u16 = 0x1040;
/// Revision 1 or higher marks a non-transitional (modern only) device (4.1.2.1).
pub const VIRTIO_PCI_REVISION: u8 = 1;
/// Subsystem IDs: the virtio vendor, and a subsystem device ID of at least 0x40, which a
/// non-transitional device should have so that legacy drivers leave it alone (4.1.2.1).
pub const VIRTIO_PCI_SUBSYSTEM_VENDOR_ID: u16 = VIRTIO_PCI_VENDOR_ID;
pub const VIRTIO_PCI_SUBSYSTEM_ID: u16 = 0x40;

/// The BAR holding every structure, and its size.
pub const BAR_INDEX: u8 = 0;
pub const BAR_SIZE: u64 = 0x8000;
pub const COMMON_CFG_OFFSET: u64 = 0x0000;
/// `struct virtio_pci_common_cfg` without the queue_notify_data/queue_reset fields, which
/// only exist with features this transport does not offer.
pub const COMMON_CFG_LEN: u64 = 0x38;
pub const ISR_OFFSET: u64 = 0x1000;
pub const ISR_LEN: u64 = 1;
pub const DEVICE_CFG_OFFSET: u64 = 0x2000;
pub const DEVICE_CFG_LEN: u64 = 0x1000;
pub const NOTIFY_OFFSET: u64 = 0x3000;
pub const NOTIFY_LEN: u64 = 0x1000;
pub const NOTIFY_OFF_MULTIPLIER: u32 = 4;
pub const MSIX_TABLE_OFFSET: u64 = 0x4000;
pub const MSIX_PBA_OFFSET: u64 = 0x5000;
/// Each region is one page: at most 256 MSI-X vectors (16 bytes each), so at most 255
/// queues (one vector each plus one for configuration changes).
pub const REGION_LEN: u64 = 0x1000;
pub const MAX_QUEUES: usize = 255;

/// `cfg_type` of the virtio vendor capabilities (4.1.4).
pub const VIRTIO_PCI_CAP_COMMON_CFG: u8 = 1;
pub const VIRTIO_PCI_CAP_NOTIFY_CFG: u8 = 2;
pub const VIRTIO_PCI_CAP_ISR_CFG: u8 = 3;
pub const VIRTIO_PCI_CAP_DEVICE_CFG: u8 = 4;
pub const VIRTIO_PCI_CAP_PCI_CFG: u8 = 5;
/// PCI capability ID of vendor-specific capabilities, which virtio's are.
pub const PCI_CAP_ID_VNDR: u8 = 0x09;
/// "No vector": the queue or configuration change raises no MSI-X interrupt (4.1.5.1.2).
pub const VIRTIO_MSI_NO_VECTOR: u16 = 0xffff;
/// ISR bits (4.1.4.5): a used buffer (only while MSI-X is off), a configuration change.
pub const ISR_QUEUE: u32 = 1;
pub const ISR_CONFIG: u32 = 2;

/// Why a virtio-pci transport cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum VirtioPciError {
    #[error("the device has {0} queues; virtio-pci here takes at most 255")]
    TooManyQueues(usize),
    #[error("queue: {0}")]
    Queue(#[from] virtio_queue::Error),
    #[error(transparent)]
    Pci(#[from] crate::devices::pci::PciError),
}

/// MSI-X vectors a device with `queues` queues gets: one per queue and one for
/// configuration changes, so Linux can give every queue its own interrupt.
pub fn msix_vector_count(queues: usize) -> usize {
    queues + 1
}

/// Guest-physical address the driver writes to notify queue `queue` when BAR 0 is at
/// `bar_base`: where the VM registers that queue's ioeventfd. Linux writes the queue index
/// as 16 bits; any width written there notifies the queue.
pub fn notify_address(bar_base: u64, queue: u16) -> u64 {
    bar_base + NOTIFY_OFFSET + u64::from(NOTIFY_OFF_MULTIPLIER) * u64::from(queue)
}
