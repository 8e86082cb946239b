//! What the virtio-mmio and virtio-pci transports have in common: the driver's side of a
//! device as virtio 1.2 chapter 3 defines it, whatever registers carry it. The status
//! state machine, feature negotiation, the rules for queue setup, activation, notification
//! without an ioeventfd and reset live here once; each transport only decodes its own
//! register layout into these calls.
//!
//! Driver writes the status state machine does not allow at that point (queue setup after
//! DRIVER_OK, features after FEATURES_OK, skipped status steps) are ignored.

use std::sync::{Arc, Mutex, MutexGuard};

use virtio_bindings::virtio_config::{
    VIRTIO_CONFIG_S_ACKNOWLEDGE, VIRTIO_CONFIG_S_DRIVER, VIRTIO_CONFIG_S_DRIVER_OK,
    VIRTIO_CONFIG_S_FAILED, VIRTIO_CONFIG_S_FEATURES_OK, VIRTIO_CONFIG_S_NEEDS_RESET,
};
use virtio_bindings::virtio_ring::VIRTIO_RING_F_EVENT_IDX;
use virtio_queue::{Queue, QueueT};

use super::persist::QueueSnapshot;
use super::restore::{self, RestoreError, RunningQueues, SavedCore};
use super::{ActivateContext, ActivateError, Interrupt, VirtioDevice, VIRTIO_F_VERSION_1};
use crate::vstate::memory::GuestMemoryMmap;

const ACK: u32 = VIRTIO_CONFIG_S_ACKNOWLEDGE;
pub(crate) const DRIVER: u32 = VIRTIO_CONFIG_S_DRIVER;
const FEATURES_OK: u32 = VIRTIO_CONFIG_S_FEATURES_OK;
pub(crate) const DRIVER_OK: u32 = VIRTIO_CONFIG_S_DRIVER_OK;

/// The driver's view of one device: status, features, queue configuration.
pub(crate) struct TransportCore {
    /// "virtio-mmio" or "virtio-pci", for log lines.
    name: &'static str,
    pub(crate) device: Arc<Mutex<dyn VirtioDevice>>,
    mem: GuestMemoryMmap,
    pub(crate) interrupt: Arc<Interrupt>,
    pub(crate) queues: Vec<Queue>,
    pub(crate) device_status: u32,
    pub(crate) device_features_select: u32,
    pub(crate) driver_features_select: u32,
    pub(crate) acked_features: u64,
    pub(crate) queue_select: u32,
    pub(crate) config_generation: u32,
}

impl TransportCore {
    /// A reset device: one queue per size the device gives, each at its maximum size.
    pub(crate) fn new(
        name: &'static str,
        mem: GuestMemoryMmap,
        device: Arc<Mutex<dyn VirtioDevice>>,
        interrupt: Arc<Interrupt>,
    ) -> Result<Self, virtio_queue::Error> {
        let queues = lock(&device)
            .queue_max_sizes()
            .iter()
            .map(|&max| Queue::new(max))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(TransportCore {
            name,
            device,
            mem,
            interrupt,
            queues,
            device_status: 0,
            device_features_select: 0,
            driver_features_select: 0,
            acked_features: 0,
            queue_select: 0,
            config_generation: 0,
        })
    }

    /// The core rebuilt from `state`. `running` is the device's own record of its queues:
    /// if the driver had set DRIVER_OK, the device is started again with them, ring
    /// positions kept. Everything is checked first ([`super::restore`]); nothing is
    /// half-restored.
    pub(crate) fn restore(
        name: &'static str,
        mem: GuestMemoryMmap,
        device: Arc<Mutex<dyn VirtioDevice>>,
        interrupt: Arc<Interrupt>,
        state: &SavedCore<'_>,
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
        let core = TransportCore {
            name,
            device,
            mem,
            interrupt,
            queues,
            device_status: state.device_status,
            device_features_select: state.device_features_select,
            driver_features_select: state.driver_features_select,
            acked_features: state.acked_features,
            queue_select: state.queue_select,
            config_generation: state.config_generation,
        };
        core.interrupt.restore_status(state.interrupt_status);
        if let Some(queues) = started {
            core.lock_device().activate(ActivateContext {
                mem: core.mem.clone(),
                queues,
                interrupt: core.interrupt.clone(),
                acked_features: core.acked_features,
            })?;
        }
        Ok(core)
    }

    pub(crate) fn lock_device(&self) -> MutexGuard<'_, dyn VirtioDevice + 'static> {
        lock(&self.device)
    }

    /// The saved form of the queue configuration the driver wrote.
    pub(crate) fn queue_snapshots(&self) -> Vec<QueueSnapshot> {
        self.queues.iter().map(QueueSnapshot::from).collect()
    }

    /// The 32 bits of the device's features that `device_features_select` picks.
    pub(crate) fn device_features_word(&self) -> u32 {
        let features = self.lock_device().avail_features();
        match self.device_features_select {
            0 => features as u32,
            1 => (features >> 32) as u32,
            _ => 0,
        }
    }

    /// The 32 bits of the accepted features that `driver_features_select` picks.
    pub(crate) fn driver_features_word(&self) -> u32 {
        match self.driver_features_select {
            0 => self.acked_features as u32,
            1 => (self.acked_features >> 32) as u32,
            _ => 0,
        }
    }

    /// The transport's generation plus the device's own, so either changing is seen.
    pub(crate) fn config_generation(&self) -> u32 {
        self.config_generation
            .wrapping_add(self.lock_device().config_generation())
    }

    pub(crate) fn selected_queue(&self) -> Option<&Queue> {
        let index = usize::try_from(self.queue_select).ok()?;
        self.queues.get(index)
    }

    fn selected_queue_mut(&mut self) -> Option<&mut Queue> {
        let index = usize::try_from(self.queue_select).ok()?;
        self.queues.get_mut(index)
    }

    /// Queue registers may be written between FEATURES_OK and DRIVER_OK, and only while
    /// the selected queue is not ready yet (4.2.3.2, 4.1.5.1.3).
    pub(crate) fn queue_setup_allowed(&self) -> bool {
        self.device_status & (FEATURES_OK | DRIVER_OK | VIRTIO_CONFIG_S_FAILED) == FEATURES_OK
    }

    /// Applies `f` to the selected queue if it may be configured now.
    pub(crate) fn with_queue_being_set_up(&mut self, f: impl FnOnce(&mut Queue)) {
        if !self.queue_setup_allowed() {
            tracing::debug!("{}: queue register written outside queue setup", self.name);
            return;
        }
        let name = self.name;
        match self.selected_queue_mut() {
            Some(q) if !q.ready() => f(q),
            _ => tracing::debug!("{name}: write to a missing or ready queue ignored"),
        }
    }

    /// Marks the selected queue ready (or not) during queue setup.
    pub(crate) fn set_queue_ready(&mut self, ready: bool) {
        if self.queue_setup_allowed() {
            if let Some(q) = self.selected_queue_mut() {
                q.set_ready(ready);
            }
        }
    }

    pub(crate) fn write_driver_features(&mut self, v: u32) {
        if self.device_status & (DRIVER | FEATURES_OK) != DRIVER {
            tracing::debug!("{}: driver features written outside negotiation", self.name);
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
    pub(crate) fn notify(&self, queue: u32) {
        if self.device_status & DRIVER_OK == 0 {
            return;
        }
        let device = self.lock_device();
        let evt = usize::try_from(queue)
            .ok()
            .and_then(|i| device.queue_events().get(i));
        if let Some(evt) = evt {
            if let Err(e) = evt.write(1) {
                tracing::warn!("{}: queue notification lost: {e}", self.name);
            }
        }
    }

    /// The device status state machine (3.1.1): the driver sets ACKNOWLEDGE, DRIVER,
    /// FEATURES_OK and DRIVER_OK one after the other, may set FAILED at any time, and can
    /// only clear bits by writing 0 (reset).
    pub(crate) fn write_status(&mut self, v: u32) {
        if v == 0 {
            self.reset();
            return;
        }
        // NEEDS_RESET belongs to the device; a driver writing back what it read keeps it.
        let current = self.device_status & !VIRTIO_CONFIG_S_NEEDS_RESET;
        let wanted = v & !VIRTIO_CONFIG_S_NEEDS_RESET;
        if wanted & current != current {
            tracing::debug!(
                "{}: status {v:#x} would clear bits of {current:#x}",
                self.name
            );
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
                tracing::debug!(
                    "{}: status step {current:#x} -> {wanted:#x} refused",
                    self.name
                );
                false
            }
        };
        if next {
            self.device_status |= added;
        }
    }

    /// A driver may only accept offered features, and must accept VERSION_1: neither
    /// transport has a legacy queue layout.
    fn features_acceptable(&self) -> bool {
        let offered = self.lock_device().avail_features();
        let ok =
            self.acked_features & !offered == 0 && self.acked_features & VIRTIO_F_VERSION_1 != 0;
        if !ok {
            tracing::warn!(
                "{}: driver features {:#x} refused (offered {offered:#x})",
                self.name,
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
            self.lock_device().activate(ActivateContext {
                mem: self.mem.clone(),
                queues,
                interrupt: self.interrupt.clone(),
                acked_features: self.acked_features,
            })
        });
        match result {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!("{}: device not started: {e}", self.name);
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

    /// Stops the device and forgets everything the driver set up.
    pub(crate) fn reset(&mut self) {
        self.lock_device().reset();
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

/// Locks a device, recovering from a poisoned lock (the device's state is consistent
/// between calls).
pub(crate) fn lock(
    device: &Arc<Mutex<dyn VirtioDevice>>,
) -> MutexGuard<'_, dyn VirtioDevice + 'static> {
    device.lock().unwrap_or_else(|p| p.into_inner())
}
