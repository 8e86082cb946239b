//! The Generic Event Device (ACPI0013) the DSDT announces: a 32-bit event register at
//! `GED_MMIO_BASE` and an interrupt on `GED_IRQ`. The VMM sets event bits (CPU hotplug,
//! power button) and raises the interrupt; the guest's `_EVT` method reads the register,
//! which clears it, and dispatches on the bits.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use vmm_sys_util::eventfd::EventFd;

use crate::devices::bus::BusDevice;

/// The VMM's side: raises events.
pub struct GedNotifier {
    pending: Arc<AtomicU32>,
    irq: EventFd,
}

impl GedNotifier {
    /// Sets `bits` and interrupts the guest.
    pub fn notify(&self, bits: u32) -> std::io::Result<()> {
        self.pending.fetch_or(bits, Ordering::SeqCst);
        self.irq.write(1)
    }
}

/// The guest's side: the event register on the MMIO bus.
pub struct GedDevice {
    pending: Arc<AtomicU32>,
}

/// A GED whose interrupt is `irq` (an irqfd the VMM registered for `GED_IRQ`).
pub fn ged(irq: EventFd) -> (GedNotifier, GedDevice) {
    let pending = Arc::new(AtomicU32::new(0));
    (
        GedNotifier {
            pending: pending.clone(),
            irq,
        },
        GedDevice { pending },
    )
}

impl BusDevice for GedDevice {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        data.fill(0);
        if offset == 0 {
            // Read-to-clear: `_EVT` reads once and handles every bit it got.
            let bits = self.pending.swap(0, Ordering::SeqCst).to_le_bytes();
            let n = data.len().min(4);
            data[..n].copy_from_slice(&bits[..n]);
        }
    }

    fn write(&mut self, _offset: u64, _data: &[u8]) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_accumulate_and_clear_on_read() {
        let irq = EventFd::new(libc::EFD_NONBLOCK).unwrap();
        let (notifier, mut dev) = ged(irq.try_clone().unwrap());
        notifier.notify(1).unwrap();
        notifier.notify(4).unwrap();
        assert_eq!(irq.read().unwrap(), 2, "one interrupt per event");
        let mut b = [0u8; 4];
        dev.read(0, &mut b);
        assert_eq!(u32::from_le_bytes(b), 5);
        dev.read(0, &mut b);
        assert_eq!(u32::from_le_bytes(b), 0);
    }
}
