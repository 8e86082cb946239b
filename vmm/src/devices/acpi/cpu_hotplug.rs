//! The CPU hotplug controller behind the DSDT's `\_SB_.CPUS` methods (register layout in
//! `revenant_acpi::tables::cpu_hotplug`): per possible vCPU an enabled bit, and inserting /
//! removing bits the guest acknowledges; writing the eject bit takes a vCPU out.

use std::sync::{Arc, Mutex, MutexGuard};

use revenant_acpi::tables::cpu_hotplug::{
    SELECT_OFFSET, STATUS_EJECT, STATUS_ENABLED, STATUS_INSERTING, STATUS_OFFSET, STATUS_REMOVING,
};

use crate::devices::bus::BusDevice;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuSlot {
    pub enabled: bool,
    pub inserting: bool,
    pub removing: bool,
}

impl CpuSlot {
    fn status(self) -> u8 {
        (if self.enabled { STATUS_ENABLED } else { 0 })
            | (if self.inserting { STATUS_INSERTING } else { 0 })
            | (if self.removing { STATUS_REMOVING } else { 0 })
    }
}

/// One slot per possible vCPU (index = APIC ID), shared by the VMM and the MMIO device.
#[derive(Clone)]
pub struct CpuSlots(Arc<Mutex<Vec<CpuSlot>>>);

impl CpuSlots {
    /// `max` possible vCPUs, the first `enabled` of them present.
    pub fn new(max: usize, enabled: usize) -> Self {
        let slots = (0..max)
            .map(|i| CpuSlot {
                enabled: i < enabled,
                ..Default::default()
            })
            .collect();
        CpuSlots(Arc::new(Mutex::new(slots)))
    }

    pub fn lock(&self) -> MutexGuard<'_, Vec<CpuSlot>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// vCPUs the guest has (enabled and not ejected).
    pub fn enabled(&self) -> usize {
        self.lock().iter().filter(|s| s.enabled).count()
    }
}

pub struct CpuHotplugDevice {
    slots: CpuSlots,
    selected: usize,
}

impl CpuHotplugDevice {
    pub fn new(slots: CpuSlots) -> Self {
        CpuHotplugDevice { slots, selected: 0 }
    }
}

impl BusDevice for CpuHotplugDevice {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        data.fill(0);
        let value = match offset {
            SELECT_OFFSET => self.selected as u32,
            // A selection past the possible vCPUs reads as absent.
            STATUS_OFFSET => self
                .slots
                .lock()
                .get(self.selected)
                .map_or(0, |s| u32::from(s.status())),
            _ => 0,
        };
        let bytes = value.to_le_bytes();
        let n = data.len().min(4);
        data[..n].copy_from_slice(&bytes[..n]);
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        let mut raw = [0u8; 4];
        let n = data.len().min(4);
        raw[..n].copy_from_slice(&data[..n]);
        let value = u32::from_le_bytes(raw);
        match offset {
            SELECT_OFFSET => self.selected = value as usize,
            STATUS_OFFSET => {
                let mut slots = self.slots.lock();
                let Some(slot) = slots.get_mut(self.selected) else {
                    return;
                };
                let bits = value as u8;
                if bits & STATUS_INSERTING != 0 {
                    slot.inserting = false;
                }
                if bits & STATUS_REMOVING != 0 {
                    slot.removing = false;
                }
                if bits & STATUS_EJECT != 0 {
                    tracing::info!("guest ejected vCPU {}", self.selected);
                    *slot = CpuSlot::default();
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(dev: &mut CpuHotplugDevice, cpu: u32) -> u8 {
        dev.write(SELECT_OFFSET, &cpu.to_le_bytes());
        let mut b = [0u8];
        dev.read(STATUS_OFFSET, &mut b);
        b[0]
    }

    #[test]
    fn guest_acknowledges_and_ejects() {
        let slots = CpuSlots::new(4, 1);
        let mut dev = CpuHotplugDevice::new(slots.clone());
        assert_eq!(status(&mut dev, 0), STATUS_ENABLED);
        assert_eq!(status(&mut dev, 2), 0);
        slots.lock()[2] = CpuSlot {
            enabled: true,
            inserting: true,
            removing: false,
        };
        assert_eq!(status(&mut dev, 2), STATUS_ENABLED | STATUS_INSERTING);
        dev.write(STATUS_OFFSET, &[STATUS_INSERTING]);
        assert_eq!(status(&mut dev, 2), STATUS_ENABLED);
        slots.lock()[2].removing = true;
        dev.write(STATUS_OFFSET, &[STATUS_REMOVING]);
        dev.write(STATUS_OFFSET, &[STATUS_EJECT]);
        assert_eq!(status(&mut dev, 2), 0);
        assert_eq!(slots.enabled(), 1);
        // Out of range: reads absent, writes ignored.
        assert_eq!(status(&mut dev, 9), 0);
        dev.write(STATUS_OFFSET, &[STATUS_EJECT]);
        assert_eq!(slots.enabled(), 1);
    }
}
