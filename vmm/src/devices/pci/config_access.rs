//! How the guest reaches configuration space.
//!
//! - Configuration mechanism #1 (PCI Local Bus 3.0, 3.2.2.3.2): the guest writes an address
//!   (enable bit 31, bus 23:16, device 15:11, function 10:8, register 7:2) to the 32-bit
//!   register at port 0xCF8, then reads or writes 1, 2 or 4 bytes through the data window at
//!   0xCFC..0xCFF; byte `k` of the window is byte `k` of the addressed dword. Only a 4-byte
//!   access at 0xCF8 reaches the address register: byte accesses to 0xCF8..0xCFB are other
//!   chipset registers on a PC (0xCF9 resets the machine), not ours.
//! - ECAM (PCI Express 4.0, 7.2.2): 4 KiB per function, memory mapped, the bus in address
//!   bits 27:20, device 19:15, function 14:12.

use super::{PciRoot, CONFIG_IO_LEN};
use crate::devices::bus::BusDevice;

const ENABLE: u32 = 1 << 31;
/// Bits of the address register that hold something: enable, bus, device, function,
/// register (dword aligned). Reserved bits 30:24 and 1:0 read as zero.
const ADDRESS_BITS: u32 = ENABLE | 0x00ff_fffc;
/// Offset of the data window in the port range.
const DATA: u64 = 4;

/// Ports 0xCF8..0xD00: the address register and the data window.
pub struct PciConfigIo {
    root: PciRoot,
    address: u32,
}

impl PciConfigIo {
    pub(super) fn new(root: PciRoot) -> Self {
        PciConfigIo { root, address: 0 }
    }

    /// Bus, device, function and configuration offset the data window at `offset` (4..8)
    /// reaches for an access of `len` bytes, when enabled and inside the addressed dword.
    fn target(&self, offset: u64, len: usize) -> Option<(u8, u8, u8, u16)> {
        if self.address & ENABLE == 0 || offset < DATA {
            return None;
        }
        let k = offset - DATA;
        if k.saturating_add(len as u64) > 4 {
            return None;
        }
        let a = self.address;
        let register = (a & 0xfc) as u16 + k as u16;
        Some((
            (a >> 16) as u8,
            ((a >> 11) & 0x1f) as u8,
            ((a >> 8) & 7) as u8,
            register,
        ))
    }
}

impl BusDevice for PciConfigIo {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        data.fill(0xff);
        if offset == 0 && data.len() == 4 {
            data.copy_from_slice(&self.address.to_le_bytes());
            return;
        }
        if offset >= u64::from(CONFIG_IO_LEN) {
            return;
        }
        if let Some((bus, dev, func, reg)) = self.target(offset, data.len()) {
            self.root.config_read(bus, dev, func, reg, data);
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if offset == 0 {
            if let Ok(b) = <[u8; 4]>::try_from(data) {
                self.address = u32::from_le_bytes(b) & ADDRESS_BITS;
            }
            return;
        }
        if let Some((bus, dev, func, reg)) = self.target(offset, data.len()) {
            self.root.config_write(bus, dev, func, reg, data);
        }
    }
}

/// The ECAM window for bus 0 ([`super::ECAM_BASE`], [`super::ECAM_SIZE`]).
pub struct PciConfigMmio {
    root: PciRoot,
}

impl PciConfigMmio {
    pub(super) fn new(root: PciRoot) -> Self {
        PciConfigMmio { root }
    }
}

/// Bus, device, function and register of an ECAM offset.
fn ecam_target(offset: u64) -> (u8, u8, u8, u16) {
    (
        ((offset >> 20) & 0xff) as u8,
        ((offset >> 15) & 0x1f) as u8,
        ((offset >> 12) & 7) as u8,
        (offset & 0xfff) as u16,
    )
}

impl BusDevice for PciConfigMmio {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        // The bus number is part of the offset, so an offset past this window (only bus 0
        // is mapped) names another bus, which is absent.
        let (bus, dev, func, reg) = ecam_target(offset);
        let bus = if offset >> 28 != 0 { u8::MAX } else { bus };
        self.root.config_read(bus, dev, func, reg, data);
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if offset >> 28 != 0 {
            return;
        }
        let (bus, dev, func, reg) = ecam_target(offset);
        self.root.config_write(bus, dev, func, reg, data);
    }
}
