//! The virtio-mmio transport, version 2 (virtio 1.2, 4.2.2): the register window a guest
//! driver uses to negotiate features, set up queues and start a [`VirtioDevice`].
//!
//! Every register is 32 bits wide and must be accessed as one aligned 32-bit access; other
//! accesses below the configuration space read as zero and are ignored when written (the
//! spec leaves them undefined, and a guest must not be able to confuse the transport with
//! them). The rules behind the registers (status state machine, negotiation, queue setup)
//! are [`super::transport`]'s, shared with virtio-pci.

use std::sync::{Arc, Mutex};

use virtio_bindings::virtio_mmio as reg;
use virtio_queue::QueueT;
use vmm_sys_util::eventfd::EventFd;

use super::persist::MmioTransportState;
use super::restore::{RestoreError, RunningQueues, SavedCore};
use super::transport::{TransportCore, DRIVER};
use super::{Interrupt, VirtioDevice};
use crate::devices::bus::BusDevice;
use crate::vstate::memory::GuestMemoryMmap;

/// "virt" in little-endian ASCII.
const MAGIC_VALUE: u32 = 0x7472_6976;
const MMIO_VERSION: u32 = 2;
/// Vendor ID reported to the guest ("RVNT"); drivers don't interpret it.
const VENDOR_ID: u32 = 0x544e_5652;
const NAME: &str = "virtio-mmio";

/// A device's register window.
pub struct MmioTransport {
    core: TransportCore,
}

impl MmioTransport {
    /// A transport for `device`; `irq` is the eventfd that raises its interrupt line.
    pub fn new(
        mem: GuestMemoryMmap,
        device: Arc<Mutex<dyn VirtioDevice>>,
        irq: EventFd,
    ) -> Result<Self, virtio_queue::Error> {
        let interrupt = Arc::new(Interrupt::new(irq));
        Ok(MmioTransport {
            core: TransportCore::new(NAME, mem, device, interrupt)?,
        })
    }

    /// A transport for `device` rebuilt from `state` (a snapshot's). `running` is the
    /// device's own record of its queues: if the driver had set DRIVER_OK, the device is
    /// started again with them, ring positions kept, on `mem` and the interrupt behind
    /// `irq`. Everything is checked first ([`super::restore`]); nothing is half-restored.
    pub fn restore(
        mem: GuestMemoryMmap,
        device: Arc<Mutex<dyn VirtioDevice>>,
        irq: EventFd,
        state: &MmioTransportState,
        running: RunningQueues<'_>,
    ) -> Result<Self, RestoreError> {
        let interrupt = Arc::new(Interrupt::new(irq));
        let saved = SavedCore::from(state);
        Ok(MmioTransport {
            core: TransportCore::restore(NAME, mem, device, interrupt, &saved, running)?,
        })
    }

    pub fn interrupt(&self) -> &Arc<Interrupt> {
        &self.core.interrupt
    }

    pub fn device_status(&self) -> u32 {
        self.core.device_status
    }

    pub fn state(&self) -> MmioTransportState {
        let c = &self.core;
        MmioTransportState {
            device_status: c.device_status,
            device_features_select: c.device_features_select,
            driver_features_select: c.driver_features_select,
            acked_features: c.acked_features,
            queue_select: c.queue_select,
            interrupt_status: c.interrupt.status(),
            config_generation: c.config_generation,
            queues: c.queue_snapshots(),
        }
    }

    fn read_register(&mut self, offset: u32) -> u32 {
        let c = &self.core;
        match offset {
            reg::VIRTIO_MMIO_MAGIC_VALUE => MAGIC_VALUE,
            reg::VIRTIO_MMIO_VERSION => MMIO_VERSION,
            reg::VIRTIO_MMIO_DEVICE_ID => c.lock_device().device_type(),
            reg::VIRTIO_MMIO_VENDOR_ID => VENDOR_ID,
            reg::VIRTIO_MMIO_DEVICE_FEATURES => c.device_features_word(),
            reg::VIRTIO_MMIO_QUEUE_NUM_MAX => {
                c.selected_queue().map_or(0, |q| u32::from(q.max_size()))
            }
            reg::VIRTIO_MMIO_QUEUE_READY => c.selected_queue().map_or(0, |q| u32::from(q.ready())),
            reg::VIRTIO_MMIO_INTERRUPT_STATUS => c.interrupt.status(),
            reg::VIRTIO_MMIO_STATUS => c.device_status,
            // No shared memory regions: a length of all ones says "absent" (4.2.2).
            reg::VIRTIO_MMIO_SHM_LEN_LOW | reg::VIRTIO_MMIO_SHM_LEN_HIGH => u32::MAX,
            reg::VIRTIO_MMIO_CONFIG_GENERATION => c.config_generation(),
            _ => 0,
        }
    }

    fn write_register(&mut self, offset: u32, v: u32) {
        let c = &mut self.core;
        match offset {
            reg::VIRTIO_MMIO_DEVICE_FEATURES_SEL => c.device_features_select = v,
            reg::VIRTIO_MMIO_DRIVER_FEATURES_SEL => c.driver_features_select = v,
            reg::VIRTIO_MMIO_DRIVER_FEATURES => c.write_driver_features(v),
            reg::VIRTIO_MMIO_QUEUE_SEL => c.queue_select = v,
            reg::VIRTIO_MMIO_QUEUE_NUM => c.with_queue_being_set_up(|q| {
                // Queue::set_size refuses sizes above the maximum or not a power of two;
                // the activation check then fails on the unchanged size if it was wrong.
                if let Ok(size) = u16::try_from(v) {
                    q.set_size(size);
                }
            }),
            reg::VIRTIO_MMIO_QUEUE_READY => c.set_queue_ready(v == 1),
            reg::VIRTIO_MMIO_QUEUE_NOTIFY => c.notify(v),
            reg::VIRTIO_MMIO_INTERRUPT_ACK => c.interrupt.ack(v),
            reg::VIRTIO_MMIO_STATUS => c.write_status(v),
            reg::VIRTIO_MMIO_QUEUE_DESC_LOW => {
                c.with_queue_being_set_up(|q| q.set_desc_table_address(Some(v), None))
            }
            reg::VIRTIO_MMIO_QUEUE_DESC_HIGH => {
                c.with_queue_being_set_up(|q| q.set_desc_table_address(None, Some(v)))
            }
            reg::VIRTIO_MMIO_QUEUE_AVAIL_LOW => {
                c.with_queue_being_set_up(|q| q.set_avail_ring_address(Some(v), None))
            }
            reg::VIRTIO_MMIO_QUEUE_AVAIL_HIGH => {
                c.with_queue_being_set_up(|q| q.set_avail_ring_address(None, Some(v)))
            }
            reg::VIRTIO_MMIO_QUEUE_USED_LOW => {
                c.with_queue_being_set_up(|q| q.set_used_ring_address(Some(v), None))
            }
            reg::VIRTIO_MMIO_QUEUE_USED_HIGH => {
                c.with_queue_being_set_up(|q| q.set_used_ring_address(None, Some(v)))
            }
            _ => tracing::debug!("virtio-mmio: write to read-only or unknown register {offset:#x}"),
        }
    }
}

/// A 32-bit register index, for an aligned 4-byte access below the configuration space.
fn register(offset: u64, len: usize) -> Option<u32> {
    (offset < u64::from(reg::VIRTIO_MMIO_CONFIG) && offset % 4 == 0 && len == 4)
        .then_some(offset as u32)
}

impl BusDevice for MmioTransport {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        let config = u64::from(reg::VIRTIO_MMIO_CONFIG);
        if offset >= config {
            self.core.lock_device().read_config(offset - config, data);
            return;
        }
        data.fill(0);
        if let Some(r) = register(offset, data.len()) {
            let v = self.read_register(r);
            data.copy_from_slice(&v.to_le_bytes());
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        let config = u64::from(reg::VIRTIO_MMIO_CONFIG);
        if offset >= config {
            // The driver may only write the configuration space after DRIVER (3.1.1).
            if self.core.device_status & DRIVER != 0 {
                self.core.lock_device().write_config(offset - config, data);
            }
            return;
        }
        let (Some(r), Ok(bytes)) = (register(offset, data.len()), <[u8; 4]>::try_from(data)) else {
            tracing::debug!(
                "virtio-mmio: {}-byte write at {offset:#x} ignored",
                data.len()
            );
            return;
        };
        self.write_register(r, u32::from_le_bytes(bytes));
    }
}
