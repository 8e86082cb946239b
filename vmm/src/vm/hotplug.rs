//! Devices added to and removed from a booted VM (kata's `vm.add-disk`, `vm.add-net`,
//! `vm.remove-device`): built as at boot, plugged into the PCI bus ([`super::pci`]) and
//! announced to the guest through the GED.

use revenant_acpi::platform::GED_EVENT_PCI_HOTPLUG;

use super::{Vm, VmError};
use crate::config::{DiskConfig, NetConfig};
use crate::devices::pci::PciRoot;
use crate::devices::virtio::blk::{Block, BlockOptions};
use crate::devices::virtio::net::{Net, NetOptions};

/// A device plugged into a booted VM, as the API answers it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct PluggedDevice {
    pub id: String,
    /// `0000:00:DD.0`, where the guest finds it.
    pub bdf: String,
}

impl Vm {
    /// Hot-plugs `disk` (the config's `disks[index]`, checked already) as `id`.
    pub fn hotplug_disk(
        &self,
        index: usize,
        disk: &DiskConfig,
        id: &str,
    ) -> Result<PluggedDevice, VmError> {
        let backend = super::virtio::open_disk(index, disk)?;
        let options = BlockOptions {
            id: id.to_string(),
            read_only: disk.readonly,
            serial: disk.serial.clone(),
        };
        let device = Block::new(options, backend)
            .map_err(|e| VmError::Virtio(format!("virtio-blk queue eventfd: {e}")))?;
        self.announce(self.pci.plug(id.to_string(), "virtio-blk", device)?, id)
    }

    /// Hot-plugs the network card `net` (the config's `net[index]`, checked already).
    pub fn hotplug_net(
        &self,
        index: usize,
        net: &NetConfig,
        id: &str,
    ) -> Result<PluggedDevice, VmError> {
        let tap = super::virtio_net::open_tap(index, net)?;
        let options = NetOptions {
            id: id.to_string(),
            mac: net.mac,
        };
        let device = Net::new(options, tap).map_err(|e| VmError::Virtio(e.to_string()))?;
        self.announce(self.pci.plug(id.to_string(), "virtio-net", device)?, id)
    }

    fn announce(&self, slot: u8, id: &str) -> Result<PluggedDevice, VmError> {
        self.ged
            .notify(GED_EVENT_PCI_HOTPLUG)
            .map_err(|source| VmError::Irq {
                what: "GED",
                source,
            })?;
        Ok(PluggedDevice {
            id: id.to_string(),
            bdf: PciRoot::bdf(slot),
        })
    }

    /// Whether `id` is a hot-plugged (PCI) device.
    pub fn is_hotplugged(&self, id: &str) -> bool {
        self.pci.slot_of(id).is_some()
    }

    /// Asks the guest to eject the hot-plugged device `id`; it goes when the guest ejects
    /// it. False when no hot-plugged device has that id.
    pub fn hot_unplug(&self, id: &str) -> Result<bool, VmError> {
        if self.pci.request_unplug(id).is_none() {
            return Ok(false);
        }
        self.ged
            .notify(GED_EVENT_PCI_HOTPLUG)
            .map_err(|source| VmError::Irq {
                what: "GED",
                source,
            })?;
        Ok(true)
    }

    /// The hot-plugged devices: id, kind, address, and whether an unplug is pending.
    pub fn pci_devices(&self) -> Vec<PciDeviceInfo> {
        let mut out = Vec::new();
        self.pci.for_each(|slot, d| {
            out.push(PciDeviceInfo {
                id: d.id.clone(),
                kind: d.kind,
                bdf: PciRoot::bdf(slot),
                unplugging: d.unplugging,
            })
        });
        out
    }
}

/// A hot-plugged device as `vm.counters` lists it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct PciDeviceInfo {
    pub id: String,
    pub kind: &'static str,
    pub bdf: String,
    pub unplugging: bool,
}
