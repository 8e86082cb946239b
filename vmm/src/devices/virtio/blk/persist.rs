//! virtio-blk snapshot state. The disk itself is not in it: a file disk is reopened from
//! the VM config, and a remote swap device's slabs are not carried over yet.

use serde::{Deserialize, Serialize};

use crate::devices::virtio::persist::{MmioTransportState, QueueSnapshot};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockState {
    pub id: String,
    pub avail_features: u64,
    pub acked_features: u64,
    /// The running queue (with ring positions); None until the driver set DRIVER_OK.
    pub queue: Option<QueueSnapshot>,
}

/// One virtio-blk device with its transport, as `DevicesState` carries it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VirtioBlkSnapshot {
    pub transport: MmioTransportState,
    pub device: BlockState,
}
