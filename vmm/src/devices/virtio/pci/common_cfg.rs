//! The common configuration structure (`struct virtio_pci_common_cfg`, 4.1.4.3).
//!
//! Each field is accessed with its own width (4.1.3.1); 64-bit queue addresses also as two
//! 32-bit halves, low first, which is how Linux writes them. Any other access reads as zero
//! and is ignored when written, like a read-only field. What a write means (when queue
//! setup is allowed, what status steps are) is [`TransportCore`]'s, shared with mmio.

use virtio_queue::{Queue, QueueT};

use super::interrupt::PciVectors;
use crate::devices::virtio::transport::TransportCore;

pub const DEVICE_FEATURE_SELECT: u64 = 0x00;
pub const DEVICE_FEATURE: u64 = 0x04;
pub const DRIVER_FEATURE_SELECT: u64 = 0x08;
pub const DRIVER_FEATURE: u64 = 0x0c;
pub const MSIX_CONFIG: u64 = 0x10;
pub const NUM_QUEUES: u64 = 0x12;
pub const DEVICE_STATUS: u64 = 0x14;
pub const CONFIG_GENERATION: u64 = 0x15;
pub const QUEUE_SELECT: u64 = 0x16;
pub const QUEUE_SIZE: u64 = 0x18;
pub const QUEUE_MSIX_VECTOR: u64 = 0x1a;
pub const QUEUE_ENABLE: u64 = 0x1c;
pub const QUEUE_NOTIFY_OFF: u64 = 0x1e;
pub const QUEUE_DESC: u64 = 0x20;
pub const QUEUE_DRIVER: u64 = 0x28;
pub const QUEUE_DEVICE: u64 = 0x30;

/// Which of a queue's three ring addresses.
#[derive(Clone, Copy)]
enum Ring {
    Desc,
    Driver,
    Device,
}

/// A queue address field reached by an access: the ring, and which half (None: all 64 bits).
fn ring_field(offset: u64, len: usize) -> Option<(Ring, Option<bool>)> {
    let ring = match offset & !7 {
        QUEUE_DESC => Ring::Desc,
        QUEUE_DRIVER => Ring::Driver,
        QUEUE_DEVICE => Ring::Device,
        _ => return None,
    };
    match (offset % 8, len) {
        (0, 8) => Some((ring, None)),
        (0, 4) => Some((ring, Some(false))),
        (4, 4) => Some((ring, Some(true))),
        _ => None,
    }
}

fn ring_address(q: &Queue, ring: Ring) -> u64 {
    match ring {
        Ring::Desc => q.desc_table(),
        Ring::Driver => q.avail_ring(),
        Ring::Device => q.used_ring(),
    }
}

pub(crate) fn read(core: &TransportCore, vectors: &PciVectors, offset: u64, data: &mut [u8]) {
    data.fill(0);
    let queue = core.selected_queue();
    let v: u64 = match (offset, data.len()) {
        (DEVICE_FEATURE_SELECT, 4) => core.device_features_select.into(),
        (DEVICE_FEATURE, 4) => core.device_features_word().into(),
        (DRIVER_FEATURE_SELECT, 4) => core.driver_features_select.into(),
        (DRIVER_FEATURE, 4) => core.driver_features_word().into(),
        (MSIX_CONFIG, 2) => vectors.config_vector().into(),
        (NUM_QUEUES, 2) => core.queues.len() as u64,
        (DEVICE_STATUS, 1) => u64::from(core.device_status & 0xff),
        (CONFIG_GENERATION, 1) => u64::from(core.config_generation() & 0xff),
        (QUEUE_SELECT, 2) => u64::from(core.queue_select & 0xffff),
        // A queue that does not exist has size 0: how the driver finds the queue count.
        (QUEUE_SIZE, 2) => queue.map_or(0, |q| q.size().into()),
        (QUEUE_MSIX_VECTOR, 2) => vectors.queue_vector(core.queue_select as usize).into(),
        (QUEUE_ENABLE, 2) => queue.map_or(0, |q| q.ready().into()),
        // Queue i notifies at i * multiplier: its own address.
        (QUEUE_NOTIFY_OFF, 2) => queue.map_or(0, |_| u64::from(core.queue_select & 0xffff)),
        _ => match (ring_field(offset, data.len()), queue) {
            (Some((ring, half)), Some(q)) => {
                let addr = ring_address(q, ring);
                match half {
                    None => addr,
                    Some(false) => addr & 0xffff_ffff,
                    Some(true) => addr >> 32,
                }
            }
            _ => return,
        },
    };
    data.copy_from_slice(&v.to_le_bytes()[..data.len()]);
}

pub(crate) fn write(core: &mut TransportCore, vectors: &PciVectors, offset: u64, data: &[u8]) {
    if !matches!(data.len(), 1 | 2 | 4 | 8) {
        return;
    }
    let mut bytes = [0u8; 8];
    bytes[..data.len()].copy_from_slice(data);
    let v = u64::from_le_bytes(bytes);
    match (offset, data.len()) {
        (DEVICE_FEATURE_SELECT, 4) => core.device_features_select = v as u32,
        (DRIVER_FEATURE_SELECT, 4) => core.driver_features_select = v as u32,
        (DRIVER_FEATURE, 4) => core.write_driver_features(v as u32),
        (MSIX_CONFIG, 2) => vectors.set_config_vector(v as u16),
        (DEVICE_STATUS, 1) => {
            core.write_status(v as u32);
            if v == 0 {
                vectors.reset();
            }
        }
        (QUEUE_SELECT, 2) => core.queue_select = v as u32,
        // Queue::set_size refuses sizes above the maximum or not a power of two; the
        // activation check then fails on the unchanged size if it was wrong.
        (QUEUE_SIZE, 2) => core.with_queue_being_set_up(|q| q.set_size(v as u16)),
        (QUEUE_MSIX_VECTOR, 2) => vectors.set_queue_vector(core.queue_select as usize, v as u16),
        // The driver must not write 0 to queue_enable (4.1.4.3.2); only 1 counts.
        (QUEUE_ENABLE, 2) if v == 1 => core.set_queue_ready(true),
        _ => {
            let Some((ring, half)) = ring_field(offset, data.len()) else {
                tracing::debug!(
                    "virtio-pci: {}-byte write to common configuration {offset:#x} ignored",
                    data.len()
                );
                return;
            };
            let (lo, hi) = match half {
                None => (Some(v as u32), Some((v >> 32) as u32)),
                Some(false) => (Some(v as u32), None),
                Some(true) => (None, Some(v as u32)),
            };
            core.with_queue_being_set_up(|q| match ring {
                Ring::Desc => q.set_desc_table_address(lo, hi),
                Ring::Driver => q.set_avail_ring_address(lo, hi),
                Ring::Device => q.set_used_ring_address(lo, hi),
            });
        }
    }
}
