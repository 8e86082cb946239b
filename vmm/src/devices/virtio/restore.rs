//! Checks for rebuilding a virtio transport from a snapshot ([`super::mmio::MmioTransport::restore`],
//! [`super::pci::VirtioPciTransport::restore`]; both go through [`super::transport`]).
//!
//! A state file is input like any other: before anything is built, every saved value is
//! checked against the device it is restored for and against guest memory, and an
//! inconsistent state is refused with a reason (never a panic). What is checked:
//!
//! - the device status is one the transport's state machine can reach;
//! - negotiated features are a subset of the device's, with VERSION_1, once FEATURES_OK;
//! - every saved queue has the device's maximum size and passes `Queue::try_from` (size a
//!   power of two within the maximum, aligned ring addresses);
//! - a device is running exactly when DRIVER_OK is set, and then its own queue state (which
//!   has the ring positions) agrees with the transport's queue configuration, its rings lie
//!   in guest memory, the used index in memory is the one the device last wrote, and no more
//!   requests are pending than the queue holds.

use std::num::Wrapping;
use std::sync::atomic::Ordering;

use virtio_bindings::virtio_config::{
    VIRTIO_CONFIG_S_ACKNOWLEDGE as ACK, VIRTIO_CONFIG_S_DRIVER as DRIVER,
    VIRTIO_CONFIG_S_DRIVER_OK as DRIVER_OK, VIRTIO_CONFIG_S_FAILED as FAILED,
    VIRTIO_CONFIG_S_FEATURES_OK as FEATURES_OK, VIRTIO_CONFIG_S_NEEDS_RESET as NEEDS_RESET,
};
use virtio_bindings::virtio_ring::VIRTIO_RING_F_EVENT_IDX;
use virtio_queue::{Queue, QueueT};

use super::persist::{MmioTransportState, QueueSnapshot};
use super::{ActivateError, VIRTIO_F_VERSION_1};
use crate::vstate::memory::GuestMemoryMmap;

/// Why a saved transport cannot be restored.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("the device has {expected} queues, the saved transport {found}")]
    QueueCount { expected: usize, found: usize },
    #[error("queue {index}: {reason}")]
    Queue { index: usize, reason: String },
    #[error("device status {0:#x} is not one the transport can reach")]
    Status(u32),
    #[error("negotiated features {acked:#x} are not the device's ({offered:#x}) with VERSION_1")]
    Features { acked: u64, offered: u64 },
    #[error("the device's saved state does not match its transport: {0}")]
    Mismatch(&'static str),
    #[error("the device refused its restored queues: {0}")]
    Activate(#[from] ActivateError),
    #[error("PCI state: {0}")]
    Pci(#[from] crate::devices::pci::PciError),
}

/// The driver-visible virtio state a transport saved, whichever transport it was: the
/// fields `MmioTransportState` and the virtio-pci state have in common.
#[derive(Clone, Copy, Debug)]
pub struct SavedCore<'a> {
    pub device_status: u32,
    pub device_features_select: u32,
    pub driver_features_select: u32,
    pub acked_features: u64,
    pub queue_select: u32,
    pub interrupt_status: u32,
    pub config_generation: u32,
    pub queues: &'a [QueueSnapshot],
}

impl<'a> From<&'a MmioTransportState> for SavedCore<'a> {
    fn from(s: &'a MmioTransportState) -> Self {
        SavedCore {
            device_status: s.device_status,
            device_features_select: s.device_features_select,
            driver_features_select: s.driver_features_select,
            acked_features: s.acked_features,
            queue_select: s.queue_select,
            interrupt_status: s.interrupt_status,
            config_generation: s.config_generation,
            queues: &s.queues,
        }
    }
}

/// A device's own record of its running queues (from its `persist.rs` state): empty, with
/// no features, until the driver set DRIVER_OK.
#[derive(Clone, Copy, Debug, Default)]
pub struct RunningQueues<'a> {
    pub acked_features: u64,
    pub queues: &'a [QueueSnapshot],
}

/// Checks the saved status; returns whether the device was running (DRIVER_OK).
pub(super) fn check_status(status: u32) -> Result<bool, RestoreError> {
    let steps = status & !(FAILED | NEEDS_RESET);
    let reachable = [
        0,
        ACK,
        ACK | DRIVER,
        ACK | DRIVER | FEATURES_OK,
        ACK | DRIVER | FEATURES_OK | DRIVER_OK,
    ]
    .contains(&steps);
    // NEEDS_RESET is only ever set when starting the device failed, so without DRIVER_OK.
    let driver_ok = steps & DRIVER_OK != 0;
    if !reachable || (driver_ok && status & NEEDS_RESET != 0) {
        return Err(RestoreError::Status(status));
    }
    Ok(driver_ok)
}

/// Features: none before DRIVER, anything while negotiating (FEATURES_OK refuses a bad set
/// later), and an acceptable set from FEATURES_OK on.
pub(super) fn check_features(state: &SavedCore<'_>, offered: u64) -> Result<(), RestoreError> {
    let acked = state.acked_features;
    let ok = if state.device_status & FEATURES_OK != 0 {
        acked & !offered == 0 && acked & VIRTIO_F_VERSION_1 != 0
    } else if state.device_status & DRIVER != 0 {
        true
    } else {
        acked == 0
    };
    if ok {
        Ok(())
    } else {
        Err(RestoreError::Features { acked, offered })
    }
}

/// The transport's queues (the configuration the driver wrote), checked against the
/// device's queue count and sizes.
pub(super) fn transport_queues(
    state: &SavedCore<'_>,
    max_sizes: &[u16],
) -> Result<Vec<Queue>, RestoreError> {
    if state.queues.len() != max_sizes.len() {
        return Err(RestoreError::QueueCount {
            expected: max_sizes.len(),
            found: state.queues.len(),
        });
    }
    state
        .queues
        .iter()
        .zip(max_sizes)
        .enumerate()
        .map(|(index, (s, &max))| {
            if s.max_size != max {
                return Err(queue_error(
                    index,
                    format!("maximum size {} is not the device's {max}", s.max_size),
                ));
            }
            Queue::try_from(s).map_err(|e| queue_error(index, e.to_string()))
        })
        .collect()
}

/// The device's running queues for re-activation, checked against the transport's
/// configuration and guest memory.
pub(super) fn running_queues(
    state: &SavedCore<'_>,
    running: &RunningQueues<'_>,
    mem: &GuestMemoryMmap,
) -> Result<Vec<Queue>, RestoreError> {
    if running.queues.len() != state.queues.len() {
        return Err(RestoreError::Mismatch(
            "the driver set DRIVER_OK but the device has no running queues",
        ));
    }
    if running.acked_features != state.acked_features {
        return Err(RestoreError::Mismatch(
            "the device and the transport saved different negotiated features",
        ));
    }
    let event_idx = state.acked_features & (1 << VIRTIO_RING_F_EVENT_IDX) != 0;
    running
        .queues
        .iter()
        .zip(state.queues)
        .enumerate()
        .map(|(index, (r, t))| running_queue(index, r, t, event_idx, mem))
        .collect()
}

fn running_queue(
    index: usize,
    r: &QueueSnapshot,
    t: &QueueSnapshot,
    event_idx: bool,
    mem: &GuestMemoryMmap,
) -> Result<Queue, RestoreError> {
    let same_config = (
        r.max_size,
        r.size,
        r.ready,
        r.desc_table,
        r.avail_ring,
        r.used_ring,
    ) == (
        t.max_size,
        t.size,
        t.ready,
        t.desc_table,
        t.avail_ring,
        t.used_ring,
    );
    if !same_config {
        return Err(queue_error(
            index,
            "the device's queue differs from the one the driver configured",
        ));
    }
    if r.event_idx_enabled != event_idx {
        return Err(queue_error(
            index,
            "EVENT_IDX differs from the negotiated features",
        ));
    }
    let queue = Queue::try_from(r).map_err(|e| queue_error(index, e.to_string()))?;
    // The devices refuse a queue that is not ready when they start; its rings mean nothing.
    if !queue.ready() {
        return Ok(queue);
    }
    if !queue.is_valid(mem) {
        return Err(queue_error(index, "its rings are not in guest memory"));
    }
    let used = queue
        .used_idx(mem, Ordering::Acquire)
        .map_err(|e| queue_error(index, format!("used ring: {e}")))?;
    if used != Wrapping(r.next_used) {
        return Err(queue_error(
            index,
            format!(
                "the used index in memory is {} but the device saved {}",
                used.0, r.next_used
            ),
        ));
    }
    let avail = queue
        .avail_idx(mem, Ordering::Acquire)
        .map_err(|e| queue_error(index, format!("available ring: {e}")))?;
    let pending = (avail - Wrapping(r.next_avail)).0;
    if pending > r.size {
        return Err(queue_error(
            index,
            format!("{pending} requests pending in a queue of {}", r.size),
        ));
    }
    Ok(queue)
}

/// A device that was not running must not have saved running queues.
pub(super) fn check_idle(running: &RunningQueues<'_>) -> Result<(), RestoreError> {
    if running.queues.is_empty() && running.acked_features == 0 {
        Ok(())
    } else {
        Err(RestoreError::Mismatch(
            "the device saved running queues but the driver never set DRIVER_OK",
        ))
    }
}

fn queue_error(index: usize, reason: impl Into<String>) -> RestoreError {
    RestoreError::Queue {
        index,
        reason: reason.into(),
    }
}

#[cfg(test)]
mod tests;
