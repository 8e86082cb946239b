//! The virtio-mmio transport, version 2 (virtio 1.2, 4.2.2): the register window a guest
//! driver uses to negotiate features, set up queues and start a [`VirtioDevice`].
//!
//! Every register is 32 bits wide and must be accessed as one aligned 32-bit access; other
//! accesses below the configuration space read as zero and are ignored when written (the
//! spec leaves them undefined, and a guest must not be able to confuse the transport with
//! them). Driver writes that the status state machine does not allow at that point (queue
//! setup after DRIVER_OK, features after FEATURES_OK, skipped status steps) are ignored too.

use std::sync::{Arc, Mutex, MutexGuard};

use virtio_bindings::virtio_config::{
    VIRTIO_CONFIG_S_ACKNOWLEDGE, VIRTIO_CONFIG_S_DRIVER, VIRTIO_CONFIG_S_DRIVER_OK,
    VIRTIO_CONFIG_S_FAILED, VIRTIO_CONFIG_S_FEATURES_OK, VIRTIO_CONFIG_S_NEEDS_RESET,
};
use virtio_bindings::virtio_mmio as reg;
use virtio_bindings::virtio_ring::VIRTIO_RING_F_EVENT_IDX;
use virtio_queue::{Queue, QueueT};
use vmm_sys_util::eventfd::EventFd;

use super::persist::{MmioTransportState, QueueSnapshot};
use super::restore::{self, RestoreError, RunningQueues};
use super::{ActivateContext, ActivateError, Interrupt, VirtioDevice, VIRTIO_F_VERSION_1};
use crate::devices::bus::BusDevice;
use crate::vstate::memory::GuestMemoryMmap;

/// "virt" in little-endian ASCII.
const MAGIC_VALUE: u32 = 0x7472_6976;
const MMIO_VERSION: u32 = 2;
/// Vendor ID reported to the guest ("RVNT"); drivers don't interpret it.
const VENDOR_ID: u32 = 0x544e_5652;

const ACK: u32 = VIRTIO_CONFIG_S_ACKNOWLEDGE;
const DRIVER: u32 = VIRTIO_CONFIG_S_DRIVER;
const FEATURES_OK: u32 = VIRTIO_CONFIG_S_FEATURES_OK;
const DRIVER_OK: u32 = VIRTIO_CONFIG_S_DRIVER_OK;

/// A device's register window.
pub struct MmioTransport {
    device: Arc<Mutex<dyn VirtioDevice>>,
    mem: GuestMemoryMmap,
    interrupt: Arc<Interrupt>,
    queues: Vec<Queue>,
    device_status: u32,
    device_features_select: u32,
    driver_features_select: u32,
    acked_features: u64,
    queue_select: u32,
    config_generation: u32,
}

impl MmioTransport {
    /// A transport for `device`; `irq` is the eventfd that raises its interrupt line.
    pub fn new(
        mem: GuestMemoryMmap,
        device: Arc<Mutex<dyn VirtioDevice>>,
        irq: EventFd,
    ) -> Result<Self, virtio_queue::Error> {
        let queues = lock(&device)
            .queue_max_sizes()
            .iter()
            .map(|&max| Queue::new(max))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(MmioTransport {
            device,
            mem,
            interrupt: Arc::new(Interrupt::new(irq)),
            queues,
            device_status: 0,
            device_features_select: 0,
            driver_features_select: 0,
            acked_features: 0,
            queue_select: 0,
            config_generation: 0,
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
        let (max_sizes, offered) = {
            let d = lock(&device);
            (d.queue_max_sizes().to_vec(), d.avail_features())
        };
        let driver_ok = restore::check_status(state.device_status)?;
        restore::check_features(state, offered)?;
        let queues = restore::transport_queues(state, &max_sizes)?;
        let started = if driver_ok {
            Some(restore::running_queues(state, &running, &mem)?)
        } else {
            restore::check_idle(&running)?;
            None
        };
        let transport = MmioTransport {
            device,
            mem,
            interrupt: Arc::new(Interrupt::new(irq)),
            queues,
            device_status: state.device_status,
            device_features_select: state.device_features_select,
            driver_features_select: state.driver_features_select,
            acked_features: state.acked_features,
            queue_select: state.queue_select,
            config_generation: state.config_generation,
        };
        transport.interrupt.restore_status(state.interrupt_status);
        if let Some(queues) = started {
            lock(&transport.device).activate(ActivateContext {
                mem: transport.mem.clone(),
                queues,
                interrupt: transport.interrupt.clone(),
                acked_features: transport.acked_features,
            })?;
        }
        Ok(transport)
    }

    pub fn interrupt(&self) -> &Arc<Interrupt> {
        &self.interrupt
    }

    pub fn device_status(&self) -> u32 {
        self.device_status
    }

    pub fn state(&self) -> MmioTransportState {
        MmioTransportState {
            device_status: self.device_status,
            device_features_select: self.device_features_select,
            driver_features_select: self.driver_features_select,
            acked_features: self.acked_features,
            queue_select: self.queue_select,
            interrupt_status: self.interrupt.status(),
            config_generation: self.config_generation,
            queues: self.queues.iter().map(QueueSnapshot::from).collect(),
        }
    }

    fn selected_queue(&mut self) -> Option<&mut Queue> {
        let index = usize::try_from(self.queue_select).ok()?;
        self.queues.get_mut(index)
    }

    /// Queue registers may be written between FEATURES_OK and DRIVER_OK, and only while
    /// the selected queue is not ready yet (4.2.3.2).
    fn queue_setup_allowed(&self) -> bool {
        self.device_status & (FEATURES_OK | DRIVER_OK | VIRTIO_CONFIG_S_FAILED) == FEATURES_OK
    }

    fn with_queue_being_set_up(&mut self, f: impl FnOnce(&mut Queue)) {
        if !self.queue_setup_allowed() {
            tracing::debug!("virtio-mmio: queue register written outside queue setup");
            return;
        }
        match self.selected_queue() {
            Some(q) if !q.ready() => f(q),
            _ => tracing::debug!("virtio-mmio: write to a missing or ready queue ignored"),
        }
    }

    fn read_register(&mut self, offset: u32) -> u32 {
        match offset {
            reg::VIRTIO_MMIO_MAGIC_VALUE => MAGIC_VALUE,
            reg::VIRTIO_MMIO_VERSION => MMIO_VERSION,
            reg::VIRTIO_MMIO_DEVICE_ID => lock(&self.device).device_type(),
            reg::VIRTIO_MMIO_VENDOR_ID => VENDOR_ID,
            reg::VIRTIO_MMIO_DEVICE_FEATURES => {
                let features = lock(&self.device).avail_features();
                match self.device_features_select {
                    0 => features as u32,
                    1 => (features >> 32) as u32,
                    _ => 0,
                }
            }
            reg::VIRTIO_MMIO_QUEUE_NUM_MAX => {
                self.selected_queue().map_or(0, |q| u32::from(q.max_size()))
            }
            reg::VIRTIO_MMIO_QUEUE_READY => {
                self.selected_queue().map_or(0, |q| u32::from(q.ready()))
            }
            reg::VIRTIO_MMIO_INTERRUPT_STATUS => self.interrupt.status(),
            reg::VIRTIO_MMIO_STATUS => self.device_status,
            // No shared memory regions: a length of all ones says "absent" (4.2.2).
            reg::VIRTIO_MMIO_SHM_LEN_LOW | reg::VIRTIO_MMIO_SHM_LEN_HIGH => u32::MAX,
            reg::VIRTIO_MMIO_CONFIG_GENERATION => self
                .config_generation
                .wrapping_add(lock(&self.device).config_generation()),
            _ => 0,
        }
    }

    fn write_register(&mut self, offset: u32, v: u32) {
        match offset {
            reg::VIRTIO_MMIO_DEVICE_FEATURES_SEL => self.device_features_select = v,
            reg::VIRTIO_MMIO_DRIVER_FEATURES_SEL => self.driver_features_select = v,
            reg::VIRTIO_MMIO_DRIVER_FEATURES => self.write_driver_features(v),
            reg::VIRTIO_MMIO_QUEUE_SEL => self.queue_select = v,
            reg::VIRTIO_MMIO_QUEUE_NUM => self.with_queue_being_set_up(|q| {
                // Queue::set_size refuses sizes above the maximum or not a power of two;
                // the activation check then fails on the unchanged size if it was wrong.
                if let Ok(size) = u16::try_from(v) {
                    q.set_size(size);
                }
            }),
            reg::VIRTIO_MMIO_QUEUE_READY => {
                if self.queue_setup_allowed() {
                    if let Some(q) = self.selected_queue() {
                        q.set_ready(v == 1);
                    }
                }
            }
            reg::VIRTIO_MMIO_QUEUE_NOTIFY => self.notify(v),
            reg::VIRTIO_MMIO_INTERRUPT_ACK => self.interrupt.ack(v),
            reg::VIRTIO_MMIO_STATUS => self.write_status(v),
            reg::VIRTIO_MMIO_QUEUE_DESC_LOW => {
                self.with_queue_being_set_up(|q| q.set_desc_table_address(Some(v), None))
            }
            reg::VIRTIO_MMIO_QUEUE_DESC_HIGH => {
                self.with_queue_being_set_up(|q| q.set_desc_table_address(None, Some(v)))
            }
            reg::VIRTIO_MMIO_QUEUE_AVAIL_LOW => {
                self.with_queue_being_set_up(|q| q.set_avail_ring_address(Some(v), None))
            }
            reg::VIRTIO_MMIO_QUEUE_AVAIL_HIGH => {
                self.with_queue_being_set_up(|q| q.set_avail_ring_address(None, Some(v)))
            }
            reg::VIRTIO_MMIO_QUEUE_USED_LOW => {
                self.with_queue_being_set_up(|q| q.set_used_ring_address(Some(v), None))
            }
            reg::VIRTIO_MMIO_QUEUE_USED_HIGH => {
                self.with_queue_being_set_up(|q| q.set_used_ring_address(None, Some(v)))
            }
            _ => tracing::debug!("virtio-mmio: write to read-only or unknown register {offset:#x}"),
        }
    }

    fn write_driver_features(&mut self, v: u32) {
        if self.device_status & (DRIVER | FEATURES_OK) != DRIVER {
            tracing::debug!("virtio-mmio: driver features written outside negotiation");
            return;
        }
        let v = u64::from(v);
        match self.driver_features_select {
            0 => self.acked_features = (self.acked_features & !0xffff_ffff) | v,
            1 => self.acked_features = (self.acked_features & 0xffff_ffff) | (v << 32),
            _ => {}
        }
    }

    /// Without an ioeventfd (tests, or a guest writing a queue index the VM registered no
    /// ioeventfd for) the notification arrives here and is forwarded to the same eventfd.
    fn notify(&mut self, queue: u32) {
        if self.device_status & DRIVER_OK == 0 {
            return;
        }
        let device = lock(&self.device);
        let evt = usize::try_from(queue)
            .ok()
            .and_then(|i| device.queue_events().get(i));
        if let Some(evt) = evt {
            if let Err(e) = evt.write(1) {
                tracing::warn!("virtio-mmio: queue notification lost: {e}");
            }
        }
    }

    /// The device status state machine (3.1.1): the driver sets ACKNOWLEDGE, DRIVER,
    /// FEATURES_OK and DRIVER_OK one after the other, may set FAILED at any time, and can
    /// only clear bits by writing 0 (reset).
    fn write_status(&mut self, v: u32) {
        if v == 0 {
            self.reset();
            return;
        }
        // NEEDS_RESET belongs to the device; a driver writing back what it read keeps it.
        let current = self.device_status & !VIRTIO_CONFIG_S_NEEDS_RESET;
        let wanted = v & !VIRTIO_CONFIG_S_NEEDS_RESET;
        if wanted & current != current {
            tracing::debug!("virtio-mmio: status {v:#x} would clear bits of {current:#x}");
            return;
        }
        let added = wanted & !current;
        if added & VIRTIO_CONFIG_S_FAILED != 0 {
            self.device_status |= VIRTIO_CONFIG_S_FAILED;
            return;
        }
        let next = match (current, added) {
            (0, ACK) | (ACK, DRIVER) => true,
            (s, FEATURES_OK) if s == ACK | DRIVER => self.features_acceptable(),
            (s, DRIVER_OK) if s == ACK | DRIVER | FEATURES_OK => self.activate(),
            _ => {
                tracing::debug!("virtio-mmio: status step {current:#x} -> {wanted:#x} refused");
                false
            }
        };
        if next {
            self.device_status |= added;
        }
    }

    /// A driver may only accept offered features, and must accept VERSION_1: this
    /// transport has no legacy queue layout.
    fn features_acceptable(&self) -> bool {
        let offered = lock(&self.device).avail_features();
        let ok =
            self.acked_features & !offered == 0 && self.acked_features & VIRTIO_F_VERSION_1 != 0;
        if !ok {
            tracing::warn!(
                "virtio-mmio: driver features {:#x} refused (offered {offered:#x})",
                self.acked_features
            );
        }
        ok
    }

    /// Hands the queues to the device. A failure leaves DRIVER_OK unset and asks the driver
    /// for a reset (DEVICE_NEEDS_RESET plus a configuration-change interrupt).
    fn activate(&mut self) -> bool {
        let event_idx = self.acked_features & (1 << VIRTIO_RING_F_EVENT_IDX) != 0;
        let result = self.checked_queues().and_then(|mut queues| {
            for q in &mut queues {
                q.set_event_idx(event_idx);
            }
            lock(&self.device).activate(ActivateContext {
                mem: self.mem.clone(),
                queues,
                interrupt: self.interrupt.clone(),
                acked_features: self.acked_features,
            })
        });
        match result {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!("virtio-mmio: device not started: {e}");
                self.device_status |= VIRTIO_CONFIG_S_NEEDS_RESET;
                self.interrupt.signal_config_change();
                false
            }
        }
    }

    /// Copies of the configured queues for the device (`Queue` is not `Clone`; the state
    /// round trip re-checks sizes and alignment), each ready one checked against memory.
    fn checked_queues(&self) -> Result<Vec<Queue>, ActivateError> {
        self.queues
            .iter()
            .enumerate()
            .map(|(i, q)| {
                let copy = Queue::try_from(&QueueSnapshot::from(q))
                    .map_err(|_| ActivateError::InvalidQueue(i))?;
                if q.ready() && !copy.is_valid(&self.mem) {
                    return Err(ActivateError::InvalidQueue(i));
                }
                Ok(copy)
            })
            .collect()
    }

    fn reset(&mut self) {
        lock(&self.device).reset();
        for q in &mut self.queues {
            q.reset();
        }
        self.device_status = 0;
        self.device_features_select = 0;
        self.driver_features_select = 0;
        self.acked_features = 0;
        self.queue_select = 0;
        self.interrupt.restore_status(0);
    }
}

fn lock(device: &Arc<Mutex<dyn VirtioDevice>>) -> MutexGuard<'_, dyn VirtioDevice + 'static> {
    device.lock().unwrap_or_else(|p| p.into_inner())
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
            lock(&self.device).read_config(offset - config, data);
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
            if self.device_status & DRIVER != 0 {
                lock(&self.device).write_config(offset - config, data);
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
