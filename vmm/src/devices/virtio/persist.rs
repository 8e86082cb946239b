//! Snapshot state of virtqueues and of the virtio-mmio transport.

use serde::{Deserialize, Serialize};
use virtio_queue::{Queue, QueueState, QueueT};

/// A virtqueue's state: `virtio_queue::QueueState` with serde. Restoring goes through
/// `Queue::try_from`, which re-checks sizes and alignment, since a state file is input too.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueSnapshot {
    pub max_size: u16,
    pub size: u16,
    pub ready: bool,
    pub desc_table: u64,
    pub avail_ring: u64,
    pub used_ring: u64,
    pub next_avail: u16,
    pub next_used: u16,
    pub event_idx_enabled: bool,
}

impl From<&Queue> for QueueSnapshot {
    fn from(q: &Queue) -> Self {
        QueueSnapshot {
            max_size: q.max_size(),
            size: q.size(),
            ready: q.ready(),
            desc_table: q.desc_table(),
            avail_ring: q.avail_ring(),
            used_ring: q.used_ring(),
            next_avail: q.next_avail(),
            next_used: q.next_used(),
            event_idx_enabled: q.event_idx_enabled(),
        }
    }
}

impl TryFrom<&QueueSnapshot> for Queue {
    type Error = virtio_queue::Error;

    fn try_from(s: &QueueSnapshot) -> Result<Self, Self::Error> {
        Queue::try_from(QueueState {
            max_size: s.max_size,
            next_avail: s.next_avail,
            next_used: s.next_used,
            event_idx_enabled: s.event_idx_enabled,
            size: s.size,
            ready: s.ready,
            desc_table: s.desc_table,
            avail_ring: s.avail_ring,
            used_ring: s.used_ring,
        })
    }
}

/// What the transport keeps between register accesses. The queues here are the
/// configuration the driver wrote; once the device runs, its own queue state (with the ring
/// positions) is in the device's snapshot.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MmioTransportState {
    pub device_status: u32,
    pub device_features_select: u32,
    pub driver_features_select: u32,
    pub acked_features: u64,
    pub queue_select: u32,
    pub interrupt_status: u32,
    pub config_generation: u32,
    pub queues: Vec<QueueSnapshot>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_state_round_trips_and_is_rechecked() {
        let mut q = Queue::new(16).unwrap();
        q.set_size(8);
        q.set_desc_table_address(Some(0x1000), None);
        q.set_next_avail(3);
        let s = QueueSnapshot::from(&q);
        let json = serde_json::to_string(&s).unwrap();
        let back: QueueSnapshot = serde_json::from_str(&json).unwrap();
        let q2 = Queue::try_from(&back).unwrap();
        assert_eq!(QueueSnapshot::from(&q2), s);
        let bad = QueueSnapshot { size: 7, ..s };
        assert!(Queue::try_from(&bad).is_err());
    }
}
