//! The UART on the port-I/O bus, raising IRQ 4 through an irqfd.

use vm_superio::serial::NoEvents;
use vm_superio::{Serial, Trigger};
use vmm_sys_util::eventfd::EventFd;

use super::output::SerialOutput;
use crate::devices::bus::BusDevice;

/// Raises the UART's interrupt by signalling the irqfd KVM listens on.
pub struct IrqTrigger(pub EventFd);

impl Trigger for IrqTrigger {
    type E = std::io::Error;

    fn trigger(&self) -> std::io::Result<()> {
        self.0.write(1)
    }
}

pub struct SerialDevice {
    uart: Serial<IrqTrigger, NoEvents, SerialOutput>,
    /// Set after the first failed write, so a guest printing into a closed pipe doesn't turn
    /// every byte into a log line.
    output_failed: bool,
}

impl SerialDevice {
    pub fn new(irq: EventFd, output: SerialOutput) -> Self {
        SerialDevice {
            uart: Serial::new(IrqTrigger(irq), output),
            output_failed: false,
        }
    }

    /// A UART with the registers and receive FIFO of a snapshot.
    pub fn from_state(
        state: &super::persist::SerialSnapshot,
        irq: EventFd,
        output: SerialOutput,
    ) -> Result<Self, String> {
        let uart = Serial::from_state(&state.into(), IrqTrigger(irq), NoEvents, output)
            .map_err(|e| format!("invalid COM1 state in the snapshot: {e:?}"))?;
        Ok(SerialDevice {
            uart,
            output_failed: false,
        })
    }

    pub fn snapshot(&self) -> super::persist::SerialSnapshot {
        (&self.uart.state()).into()
    }

    /// Queues host input for the guest; returns how many bytes fit in the receive FIFO.
    pub fn enqueue_input(&mut self, input: &[u8]) -> usize {
        match self.uart.enqueue_raw_bytes(input) {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!("serial input dropped: {e:?}");
                0
            }
        }
    }

    /// Room left in the receive FIFO.
    pub fn input_capacity(&self) -> usize {
        self.uart.fifo_capacity()
    }
}

impl BusDevice for SerialDevice {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        if let Ok(offset) = u8::try_from(offset) {
            data.fill(0);
            if let Some(first) = data.first_mut() {
                *first = self.uart.read(offset);
            }
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        let (Ok(offset), Some(&value)) = (u8::try_from(offset), data.first()) else {
            return;
        };
        if let Err(e) = self.uart.write(offset, value) {
            if !self.output_failed {
                tracing::warn!("serial output failed, further failures not logged: {e:?}");
                self.output_failed = true;
            }
        }
    }
}
