//! The configuration space of a virtio-pci function: identity, BAR 0 and the capability
//! list (4.1.4): common, notify, ISR, device and PCI-configuration-access capabilities,
//! then MSI-X. Linux uses the first capability of each type, so each appears once.

use crate::devices::pci::config_space::{ConfigSpace, PciHeader};
use crate::devices::pci::msix::{Msix, MSIX_CAP_ID};
use crate::devices::pci::PciError;

use super::*;

/// Where the capabilities the transport acts on sit in configuration space.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CapOffsets {
    /// The MSI-X capability (its control word at +2).
    pub msix: usize,
    /// `struct virtio_pci_cfg_cap`: bar at +4, offset at +8, length at +12, data at +16.
    pub pci_cfg: usize,
}

/// `struct virtio_pci_cap` after the ID and next pointer, plus `extra` (the notify
/// capability's multiplier, the PCI access capability's data window).
fn virtio_cap(cfg_type: u8, offset: u64, length: u64, extra: &[u8]) -> Vec<u8> {
    let cap_len = (16 + extra.len()) as u8;
    let mut body = vec![cap_len, cfg_type, BAR_INDEX, 0, 0, 0];
    body.extend_from_slice(&(offset as u32).to_le_bytes());
    body.extend_from_slice(&(length as u32).to_le_bytes());
    body.extend_from_slice(extra);
    body
}

/// PCI class of a virtio device type, as lspci shows it; drivers match on the IDs only.
fn class_of(device_type: u32) -> (u8, u8) {
    match device_type {
        // Network controller, Ethernet.
        1 => (0x02, 0x00),
        // Mass storage controller, SCSI (what QEMU reports for virtio-blk).
        2 => (0x01, 0x00),
        // Unassigned class: entropy, balloon, vsock, memory devices.
        _ => (0xff, 0x00),
    }
}

/// The configuration space for a device of `device_type` whose MSI-X table is `msix`.
pub fn build(device_type: u32, msix: &Msix) -> Result<(ConfigSpace, CapOffsets), PciError> {
    let (class, subclass) = class_of(device_type);
    let device_id = u16::try_from(device_type)
        .ok()
        .and_then(|t| VIRTIO_PCI_DEVICE_ID_BASE.checked_add(t))
        .ok_or(PciError::State("virtio device type out of range"))?;
    let mut c = ConfigSpace::new(&PciHeader {
        vendor_id: VIRTIO_PCI_VENDOR_ID,
        device_id,
        revision_id: VIRTIO_PCI_REVISION,
        class,
        subclass,
        prog_if: 0,
        subsystem_vendor_id: VIRTIO_PCI_SUBSYSTEM_VENDOR_ID,
        subsystem_id: VIRTIO_PCI_SUBSYSTEM_ID,
        // No INTx: no IOAPIC pin is free for it and the DSDT has no _PRT, so the guest must
        // use MSI-X (Linux's virtio-pci does whenever the device offers it).
        interrupt_pin: 0,
    });
    c.add_memory_bar(usize::from(BAR_INDEX), BAR_SIZE)?;
    let common = virtio_cap(
        VIRTIO_PCI_CAP_COMMON_CFG,
        COMMON_CFG_OFFSET,
        COMMON_CFG_LEN,
        &[],
    );
    c.add_capability(PCI_CAP_ID_VNDR, &common, &[])?;
    let notify = virtio_cap(
        VIRTIO_PCI_CAP_NOTIFY_CFG,
        NOTIFY_OFFSET,
        NOTIFY_LEN,
        &NOTIFY_OFF_MULTIPLIER.to_le_bytes(),
    );
    c.add_capability(PCI_CAP_ID_VNDR, &notify, &[])?;
    let isr = virtio_cap(VIRTIO_PCI_CAP_ISR_CFG, ISR_OFFSET, ISR_LEN, &[]);
    c.add_capability(PCI_CAP_ID_VNDR, &isr, &[])?;
    let device = virtio_cap(
        VIRTIO_PCI_CAP_DEVICE_CFG,
        DEVICE_CFG_OFFSET,
        DEVICE_CFG_LEN,
        &[],
    );
    c.add_capability(PCI_CAP_ID_VNDR, &device, &[])?;
    // The PCI configuration access capability: the driver picks bar, offset and length,
    // then reads or writes the data window (4.1.4.9). Offset and length fields are the
    // driver's; so is the data window, which the transport fills on reads.
    let pci_cfg = virtio_cap(VIRTIO_PCI_CAP_PCI_CFG, 0, 0, &[0; 4]);
    let mut writable = vec![0u8; pci_cfg.len()];
    writable[2] = 0xff; // bar
    writable[6..18].fill(0xff); // offset, length, data
    let pci_cfg = c.add_capability(PCI_CAP_ID_VNDR, &pci_cfg, &writable)?;
    let (body, writable) = msix.capability(
        BAR_INDEX,
        MSIX_TABLE_OFFSET as u32,
        BAR_INDEX,
        MSIX_PBA_OFFSET as u32,
    );
    let msix = c.add_capability(MSIX_CAP_ID, &body, &writable)?;
    Ok((c, CapOffsets { msix, pci_cfg }))
}
