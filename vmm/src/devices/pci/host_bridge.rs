//! The host bridge in slot 0. Linux does not need one to scan bus 0 (the DSDT's PCI0 and
//! the MCFG table define the bus), but expects device 00.0 to be a host bridge (class
//! 0x0600) like on every PC, and some tools (lspci, kata's agent) list it.

use super::config_space::{ConfigSpace, PciHeader};
use super::{BarRange, PciDevice};

/// Intel's vendor ID.
pub const VENDOR_INTEL: u16 = 0x8086;
/// The 82G33/P35 (Q35) DRAM controller, the host bridge QEMU's q35 machine shows: a device
/// ID Linux knows and has no quirks for that would touch hardware we do not model.
pub const DEVICE_Q35_HOST_BRIDGE: u16 = 0x29c0;
/// Class 06 (bridge), subclass 00 (host bridge).
pub const CLASS_BRIDGE: u8 = 0x06;
pub const SUBCLASS_HOST: u8 = 0x00;

/// A host bridge: identity, a command register and nothing else.
pub struct HostBridge {
    config: ConfigSpace,
}

impl HostBridge {
    pub fn new() -> Self {
        HostBridge {
            config: ConfigSpace::new(&PciHeader {
                vendor_id: VENDOR_INTEL,
                device_id: DEVICE_Q35_HOST_BRIDGE,
                revision_id: 0,
                class: CLASS_BRIDGE,
                subclass: SUBCLASS_HOST,
                prog_if: 0,
                subsystem_vendor_id: 0,
                subsystem_id: 0,
                interrupt_pin: 0,
            }),
        }
    }
}

impl Default for HostBridge {
    fn default() -> Self {
        Self::new()
    }
}

impl PciDevice for HostBridge {
    fn config_read(&mut self, offset: u16, data: &mut [u8]) {
        self.config.read(usize::from(offset), data);
    }

    fn config_write(&mut self, offset: u16, data: &[u8]) {
        self.config.write(usize::from(offset), data);
    }

    fn bars(&self) -> Vec<BarRange> {
        Vec::new()
    }

    fn bar_read(&mut self, _bar: u8, _offset: u64, data: &mut [u8]) {
        data.fill(0xff);
    }

    fn bar_write(&mut self, _bar: u8, _offset: u64, _data: &[u8]) {}
}
