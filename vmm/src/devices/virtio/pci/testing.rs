//! A host-side stand-in for Linux's `virtio_pci_modern` driver: it finds a device on the
//! root bus through ECAM, sizes and programs its BAR, walks the capability list for the
//! virtio structures and MSI-X, and drives the device through the BAR window with the
//! accesses (and widths) Linux uses. For tests; rings come from `virtio::testing`.

use std::sync::Arc;

use vmm_sys_util::eventfd::EventFd;

use super::common_cfg::*;
use super::*;
use crate::devices::bus::BusDevice;
use crate::devices::pci::config_space::{BAR0, CAPABILITIES_POINTER, COMMAND, COMMAND_MEMORY};
use crate::devices::pci::msix::{
    MsiMessage, MsiVectors, MSIX_CAP_ID, MSIX_ENABLE, MSIX_FUNCTION_MASK,
};
use crate::devices::pci::{PciBarWindow, PciConfigMmio, PciRoot, BAR_APERTURE_START};
use crate::devices::virtio::testing::DriverQueue;
use virtio_bindings::virtio_config::{
    VIRTIO_CONFIG_S_ACKNOWLEDGE, VIRTIO_CONFIG_S_DRIVER, VIRTIO_CONFIG_S_DRIVER_OK,
    VIRTIO_CONFIG_S_FEATURES_OK,
};

/// MSI-X vectors that signal plain eventfds, one each, and remember what was programmed:
/// a stand-in for KVM's routes and irqfds.
pub struct EventFdVectors {
    pub fds: Vec<EventFd>,
    pub programmed: std::sync::Mutex<Vec<Option<MsiMessage>>>,
}

impl EventFdVectors {
    pub fn new(n: usize) -> std::io::Result<Arc<Self>> {
        Ok(Arc::new(EventFdVectors {
            fds: (0..n)
                .map(|_| EventFd::new(libc::EFD_NONBLOCK))
                .collect::<Result<_, _>>()?,
            programmed: std::sync::Mutex::new(vec![None; n]),
        }))
    }

    /// Whether vector `i` fired since the last call.
    pub fn fired(&self, i: usize) -> bool {
        self.fds[i].read().is_ok()
    }
}

impl MsiVectors for EventFdVectors {
    fn program(&self, index: u16, msg: MsiMessage) {
        if let Some(slot) = self
            .programmed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_mut(usize::from(index))
        {
            *slot = Some(msg);
        }
    }

    fn fire(&self, index: u16) {
        if let Some(fd) = self.fds.get(usize::from(index)) {
            let _ = fd.write(1);
        }
    }
}

/// A virtio vendor capability as found in configuration space.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VirtioCap {
    /// Offset of the capability in configuration space.
    pub at: u16,
    pub bar: u8,
    pub offset: u32,
    pub length: u32,
}

/// What a walk of the capability list found.
#[derive(Clone, Debug, Default)]
pub struct Caps {
    /// Every capability: (offset, ID, virtio cfg_type or 0).
    pub all: Vec<(u16, u8, u8)>,
    pub common: Option<VirtioCap>,
    pub notify: Option<VirtioCap>,
    pub notify_multiplier: u32,
    pub isr: Option<VirtioCap>,
    pub device: Option<VirtioCap>,
    pub pci_cfg: Option<VirtioCap>,
    pub msix: Option<u16>,
}

/// Drives the function in `slot` of `root`.
pub struct PciDriver {
    pub root: PciRoot,
    ecam: PciConfigMmio,
    window: PciBarWindow,
    pub slot: u8,
    pub bar: u64,
    pub caps: Caps,
}

impl PciDriver {
    pub fn new(root: &PciRoot, slot: u8) -> Self {
        PciDriver {
            ecam: root.ecam(),
            window: root.bar_window(),
            root: root.clone(),
            slot,
            bar: 0,
            caps: Caps::default(),
        }
    }

    fn ecam_offset(&self, reg: u16) -> u64 {
        (u64::from(self.slot) << 15) | u64::from(reg)
    }

    pub fn cfg_read(&mut self, reg: u16, len: usize) -> u32 {
        let mut b = [0u8; 4];
        let off = self.ecam_offset(reg);
        self.ecam.read(off, &mut b[..len]);
        u32::from_le_bytes(b)
    }

    pub fn cfg_write(&mut self, reg: u16, len: usize, v: u32) {
        let off = self.ecam_offset(reg);
        self.ecam.write(off, &v.to_le_bytes()[..len]);
    }

    /// Walks the capability list (at most 48 entries: a loop in it must not hang a test).
    pub fn walk_caps(&mut self) -> Caps {
        let mut caps = Caps::default();
        let mut at = self.cfg_read(CAPABILITIES_POINTER as u16, 1) as u16 & !3;
        while at != 0 && caps.all.len() < 48 {
            let id = self.cfg_read(at, 1) as u8;
            let next = self.cfg_read(at + 1, 1) as u16 & !3;
            let mut cfg_type = 0;
            if id == PCI_CAP_ID_VNDR {
                cfg_type = self.cfg_read(at + 3, 1) as u8;
                let cap = VirtioCap {
                    at,
                    bar: self.cfg_read(at + 4, 1) as u8,
                    offset: self.cfg_read(at + 8, 4),
                    length: self.cfg_read(at + 12, 4),
                };
                // Linux takes the first of each type.
                let slot = match cfg_type {
                    VIRTIO_PCI_CAP_COMMON_CFG => &mut caps.common,
                    VIRTIO_PCI_CAP_NOTIFY_CFG => {
                        caps.notify_multiplier = self.cfg_read(at + 16, 4);
                        &mut caps.notify
                    }
                    VIRTIO_PCI_CAP_ISR_CFG => &mut caps.isr,
                    VIRTIO_PCI_CAP_DEVICE_CFG => &mut caps.device,
                    VIRTIO_PCI_CAP_PCI_CFG => &mut caps.pci_cfg,
                    _ => &mut None,
                };
                slot.get_or_insert(cap);
            } else if id == MSIX_CAP_ID {
                caps.msix.get_or_insert(at);
            }
            caps.all.push((at, id, cfg_type));
            at = next;
        }
        caps
    }

    /// Sizes BAR 0, places it at `base`, turns memory decoding and bus mastering on and
    /// finds the capabilities: what the PCI core and `vp_modern_probe` do.
    pub fn probe(&mut self, base: u64) -> u64 {
        let bar0 = BAR0 as u16;
        self.cfg_write(bar0, 4, u32::MAX);
        let size = u64::from(!(self.cfg_read(bar0, 4) & !0xf)) + 1;
        self.cfg_write(bar0, 4, base as u32);
        self.cfg_write(COMMAND as u16, 2, u32::from(COMMAND_MEMORY | 4));
        self.bar = base;
        self.caps = self.walk_caps();
        size
    }

    /// Places BAR 0 at the start of the aperture.
    pub fn probe_default(&mut self) -> u64 {
        self.probe(BAR_APERTURE_START)
    }

    pub fn bar_read(&mut self, offset: u64, len: usize) -> u64 {
        let mut b = [0u8; 8];
        self.window
            .read(self.bar + offset - BAR_APERTURE_START, &mut b[..len]);
        u64::from_le_bytes(b)
    }

    pub fn bar_write(&mut self, offset: u64, len: usize, v: u64) {
        self.window.write(
            self.bar + offset - BAR_APERTURE_START,
            &v.to_le_bytes()[..len],
        );
    }

    fn common(&self) -> u64 {
        self.caps.common.map_or(0, |c| u64::from(c.offset))
    }

    pub fn common_read(&mut self, field: u64, len: usize) -> u64 {
        let at = self.common() + field;
        self.bar_read(at, len)
    }

    pub fn common_write(&mut self, field: u64, len: usize, v: u64) {
        let at = self.common() + field;
        self.bar_write(at, len, v)
    }

    pub fn status(&mut self) -> u32 {
        self.common_read(DEVICE_STATUS, 1) as u32
    }

    pub fn set_status(&mut self, s: u32) {
        self.common_write(DEVICE_STATUS, 1, u64::from(s));
    }

    /// Reset as `vp_modern_set_status(0)` then waiting for status 0.
    pub fn reset(&mut self) -> bool {
        self.set_status(0);
        self.status() == 0
    }

    pub fn device_features(&mut self) -> u64 {
        self.common_write(DEVICE_FEATURE_SELECT, 4, 0);
        let lo = self.common_read(DEVICE_FEATURE, 4);
        self.common_write(DEVICE_FEATURE_SELECT, 4, 1);
        let hi = self.common_read(DEVICE_FEATURE, 4);
        hi << 32 | lo
    }

    /// Reset, ACKNOWLEDGE, DRIVER, the features in `want` the device offers, FEATURES_OK
    /// (read back). Returns the negotiated features, or None if refused.
    pub fn negotiate(&mut self, want: u64) -> Option<u64> {
        assert!(self.reset());
        self.set_status(VIRTIO_CONFIG_S_ACKNOWLEDGE);
        self.set_status(VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER);
        let features = self.device_features() & want;
        self.common_write(DRIVER_FEATURE_SELECT, 4, 0);
        self.common_write(DRIVER_FEATURE, 4, features & 0xffff_ffff);
        self.common_write(DRIVER_FEATURE_SELECT, 4, 1);
        self.common_write(DRIVER_FEATURE, 4, features >> 32);
        let s = VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER | VIRTIO_CONFIG_S_FEATURES_OK;
        self.set_status(s);
        (self.status() & VIRTIO_CONFIG_S_FEATURES_OK != 0).then_some(features)
    }

    /// Programs MSI-X as Linux does: enable with the function masked, write each entry
    /// (address 0xfee0_0000, data 0x40 + i) unmasked, then unmask the function.
    pub fn enable_msix(&mut self, vectors: u16) {
        let Some(cap) = self.caps.msix else {
            return;
        };
        let control = self.cfg_read(cap + 2, 2) as u16;
        self.cfg_write(
            cap + 2,
            2,
            u32::from(control | MSIX_ENABLE | MSIX_FUNCTION_MASK),
        );
        let table = u64::from(self.cfg_read(cap + 4, 4) & !7);
        for i in 0..u64::from(vectors) {
            self.bar_write(table + 16 * i, 4, 0xfee0_0000);
            self.bar_write(table + 16 * i + 4, 4, 0);
            self.bar_write(table + 16 * i + 8, 4, 0x40 + i);
            self.bar_write(table + 16 * i + 12, 4, 0);
        }
        self.cfg_write(cap + 2, 2, u32::from(control | MSIX_ENABLE));
    }

    /// Sets a table entry's mask bit.
    pub fn mask_vector(&mut self, vector: u64, masked: bool) {
        let Some(cap) = self.caps.msix else {
            return;
        };
        let table = u64::from(self.cfg_read(cap + 4, 4) & !7);
        self.bar_write(table + 16 * vector + 12, 4, u64::from(masked));
    }

    /// Sets up queue `index` as `setup_vq` does: select, read the maximum size, set the
    /// size, the vector (read back), the ring addresses as 32-bit halves, read the notify
    /// offset. Returns (vector read back, notify offset), or None if the queue is absent.
    pub fn setup_queue(&mut self, index: u16, q: &DriverQueue, vector: u16) -> Option<(u16, u16)> {
        self.common_write(QUEUE_SELECT, 2, index.into());
        let max = self.common_read(QUEUE_SIZE, 2);
        if max == 0 || self.common_read(QUEUE_ENABLE, 2) != 0 {
            return None;
        }
        self.common_write(QUEUE_SIZE, 2, q.size.into());
        self.common_write(QUEUE_MSIX_VECTOR, 2, vector.into());
        let got = self.common_read(QUEUE_MSIX_VECTOR, 2) as u16;
        for (field, addr) in [
            (QUEUE_DESC, q.desc_table),
            (QUEUE_DRIVER, q.avail_ring),
            (QUEUE_DEVICE, q.used_ring),
        ] {
            self.common_write(field, 4, addr.0 & 0xffff_ffff);
            self.common_write(field + 4, 4, addr.0 >> 32);
        }
        let notify_off = self.common_read(QUEUE_NOTIFY_OFF, 2) as u16;
        Some((got, notify_off))
    }

    /// Enables queue `index` (Linux enables every queue after setting them all up).
    pub fn enable_queue(&mut self, index: u16) {
        self.common_write(QUEUE_SELECT, 2, index.into());
        self.common_write(QUEUE_ENABLE, 2, 1);
    }

    /// Sets `msix_config` and reads it back.
    pub fn set_config_vector(&mut self, vector: u16) -> u16 {
        self.common_write(MSIX_CONFIG, 2, vector.into());
        self.common_read(MSIX_CONFIG, 2) as u16
    }

    /// Sets DRIVER_OK; returns whether the device kept it.
    pub fn driver_ok(&mut self) -> bool {
        let s = self.status();
        self.set_status(s | VIRTIO_CONFIG_S_DRIVER_OK);
        self.status() & VIRTIO_CONFIG_S_DRIVER_OK != 0
    }

    /// Where queue `index` is notified in the BAR (notify offset times the multiplier).
    pub fn notify_offset(&self, notify_off: u16) -> u64 {
        let base = self.caps.notify.map_or(0, |c| u64::from(c.offset));
        base + u64::from(self.caps.notify_multiplier) * u64::from(notify_off)
    }

    /// `vp_notify`: the queue index, 16 bits, at the queue's notify address.
    pub fn notify(&mut self, index: u16, notify_off: u16) {
        let at = self.notify_offset(notify_off);
        self.bar_write(at, 2, index.into());
    }

    /// Reads (and so clears) the ISR.
    pub fn isr(&mut self) -> u8 {
        let at = self.caps.isr.map_or(0, |c| u64::from(c.offset));
        self.bar_read(at, 1) as u8
    }
}
