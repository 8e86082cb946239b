//! The PCI hot-plug controller the DSDT's `\_SB_.PHPR` talks to (register layout in
//! `revenant_acpi::platform`, Cloud Hypervisor's): the VMM sets a slot's bit in PCIU when it
//! plugged a device there and in PCID when it wants the device gone, then raises the GED's
//! PCI event; the guest's `PCNT` reads both (each read clears), notifies the slots, and
//! ejects a slot by writing its bit to B0EJ once the guest has let go of the device.

use std::sync::{Arc, Mutex, MutexGuard};

use crate::devices::bus::BusDevice;

const PCIU: u64 = 0x0;
const PCID: u64 = 0x4;
const B0EJ: u64 = 0x8;
const PSEG: u64 = 0xc;

/// What the guest ejects: called with the slot, on the vCPU thread that wrote B0EJ.
pub type EjectHandler = Arc<dyn Fn(u8) + Send + Sync>;

#[derive(Default)]
struct Pending {
    up: u32,
    down: u32,
}

/// The VMM's handle on the controller: marks slots plugged or to unplug.
#[derive(Clone, Default)]
pub struct PciHotplug {
    pending: Arc<Mutex<Pending>>,
}

impl PciHotplug {
    fn lock(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A device was plugged into `slot`: the guest's next PCNT checks it.
    pub fn plugged(&self, slot: u8) {
        let mut p = self.lock();
        p.up |= bit(slot);
        p.down &= !bit(slot);
    }

    /// The host wants `slot` unplugged: the guest's next PCNT asks it to eject.
    pub fn unplug_requested(&self, slot: u8) {
        let mut p = self.lock();
        p.down |= bit(slot);
        p.up &= !bit(slot);
    }

    /// The register block, calling `on_eject` for each slot the guest ejects.
    pub fn controller(&self, on_eject: EjectHandler) -> PciHotplugController {
        PciHotplugController {
            hotplug: self.clone(),
            on_eject,
        }
    }
}

fn bit(slot: u8) -> u32 {
    1u32.checked_shl(u32::from(slot)).unwrap_or(0)
}

/// The MMIO register block.
pub struct PciHotplugController {
    hotplug: PciHotplug,
    on_eject: EjectHandler,
}

impl BusDevice for PciHotplugController {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        data.fill(0);
        if data.len() != 4 {
            return;
        }
        let value = {
            let mut p = self.hotplug.lock();
            match offset {
                PCIU => std::mem::take(&mut p.up),
                PCID => std::mem::take(&mut p.down),
                _ => 0, // B0EJ reads as 0; PSEG: only segment 0 exists.
            }
        };
        data.copy_from_slice(&value.to_le_bytes());
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        let Ok(bytes) = <[u8; 4]>::try_from(data) else {
            return;
        };
        let value = u32::from_le_bytes(bytes);
        match offset {
            // Slot 0 is the host bridge: never ejected.
            B0EJ => (1..32u8)
                .filter(|&s| value & bit(s) != 0)
                .for_each(|s| (self.on_eject)(s)),
            PSEG if value != 0 => {
                tracing::debug!("PCI hot-plug: segment {value} selected; only segment 0 exists")
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(c: &mut PciHotplugController, offset: u64) -> u32 {
        let mut b = [0u8; 4];
        c.read(offset, &mut b);
        u32::from_le_bytes(b)
    }

    #[test]
    fn plugged_and_unplug_bits_are_read_once_and_ejects_reach_the_vmm() {
        let hp = PciHotplug::default();
        let ejected = Arc::new(Mutex::new(Vec::new()));
        let seen = ejected.clone();
        let mut c = hp.controller(Arc::new(move |s| seen.lock().unwrap().push(s)));
        hp.plugged(3);
        hp.plugged(5);
        assert_eq!(read(&mut c, PCIU), (1 << 3) | (1 << 5));
        assert_eq!(read(&mut c, PCIU), 0, "reading clears");
        hp.unplug_requested(3);
        assert_eq!(read(&mut c, PCID), 1 << 3);
        assert_eq!(read(&mut c, PCID), 0);
        // Bit 0 (host bridge) is ignored; other bits eject their slots.
        c.write(B0EJ, &((1u32 << 3) | 1).to_le_bytes());
        assert_eq!(*ejected.lock().unwrap(), vec![3]);
        // Odd widths are ignored, never a panic.
        c.write(B0EJ, &[0xff]);
        let mut two = [0xaa; 2];
        c.read(PCIU, &mut two);
        assert_eq!(two, [0, 0]);
        assert_eq!(read(&mut c, 0x40), 0);
        assert_eq!(*ejected.lock().unwrap(), vec![3]);
    }

    #[test]
    fn an_unplug_request_cancels_a_pending_plug_and_back() {
        let hp = PciHotplug::default();
        let mut c = hp.controller(Arc::new(|_| {}));
        hp.plugged(7);
        hp.unplug_requested(7);
        assert_eq!((read(&mut c, PCIU), read(&mut c, PCID)), (0, 1 << 7));
    }
}
