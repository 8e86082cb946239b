//! Which MSI-X vector each queue and configuration changes use (the driver writes them
//! through `msix_config` and `queue_msix_vector`, 4.1.5.1.2), and delivery through them.
//!
//! The device thread signals while the vCPU threads may be rewriting the table, so the
//! assignments are atomics and the table sits behind its own lock, which is never held
//! while taking another.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use super::VIRTIO_MSI_NO_VECTOR;
use crate::devices::pci::msix::{Delivery, Msix};
use crate::devices::virtio::InterruptVectors;

/// A virtio-pci device's vector assignments and its MSI-X table.
pub struct PciVectors {
    msix: Arc<Mutex<Msix>>,
    table_size: usize,
    config: AtomicU16,
    queues: Vec<AtomicU16>,
}

impl PciVectors {
    /// Assignments for `queues` queues, all "no vector" (their value after reset).
    pub fn new(msix: Arc<Mutex<Msix>>, queues: usize) -> Self {
        let table_size = lock(&msix).vectors();
        PciVectors {
            msix,
            table_size,
            config: AtomicU16::new(VIRTIO_MSI_NO_VECTOR),
            queues: (0..queues)
                .map(|_| AtomicU16::new(VIRTIO_MSI_NO_VECTOR))
                .collect(),
        }
    }

    /// A vector the table has, or "no vector": the driver reads back what it wrote to
    /// learn whether the mapping worked (4.1.5.1.2).
    fn accept(&self, v: u16) -> u16 {
        if usize::from(v) < self.table_size {
            v
        } else {
            VIRTIO_MSI_NO_VECTOR
        }
    }

    pub fn config_vector(&self) -> u16 {
        self.config.load(Ordering::SeqCst)
    }

    pub fn set_config_vector(&self, v: u16) {
        self.config.store(self.accept(v), Ordering::SeqCst);
    }

    /// Queue `queue`'s vector; "no vector" for a queue that does not exist.
    pub fn queue_vector(&self, queue: usize) -> u16 {
        self.queues
            .get(queue)
            .map_or(VIRTIO_MSI_NO_VECTOR, |v| v.load(Ordering::SeqCst))
    }

    pub fn set_queue_vector(&self, queue: usize, v: u16) {
        if let Some(slot) = self.queues.get(queue) {
            slot.store(self.accept(v), Ordering::SeqCst);
        }
    }

    pub fn queue_vectors(&self) -> Vec<u16> {
        (0..self.queues.len())
            .map(|q| self.queue_vector(q))
            .collect()
    }

    /// Whether `v` is one the driver could have written and read back.
    pub fn valid(&self, v: u16) -> bool {
        self.accept(v) == v
    }

    /// A device reset unassigns every vector.
    pub fn reset(&self) {
        self.config.store(VIRTIO_MSI_NO_VECTOR, Ordering::SeqCst);
        for q in &self.queues {
            q.store(VIRTIO_MSI_NO_VECTOR, Ordering::SeqCst);
        }
    }

    pub fn msix(&self) -> &Arc<Mutex<Msix>> {
        &self.msix
    }

    pub fn msix_enabled(&self) -> bool {
        lock(&self.msix).enabled()
    }

    fn deliver(&self, v: u16) -> bool {
        lock(&self.msix).trigger(v) != Delivery::Disabled
    }
}

impl InterruptVectors for PciVectors {
    fn queue(&self, queue: usize) -> bool {
        self.deliver(self.queue_vector(queue))
    }

    fn config(&self) -> bool {
        self.deliver(self.config_vector())
    }

    fn retrigger(&self) -> bool {
        let mut msix = lock(&self.msix);
        if !msix.enabled() {
            return false;
        }
        let assigned: BTreeSet<u16> = std::iter::once(self.config_vector())
            .chain(self.queue_vectors())
            .filter(|&v| v != VIRTIO_MSI_NO_VECTOR)
            .collect();
        for v in assigned {
            msix.trigger(v);
        }
        true
    }
}

pub(super) fn lock(msix: &Mutex<Msix>) -> MutexGuard<'_, Msix> {
    msix.lock().unwrap_or_else(|p| p.into_inner())
}
