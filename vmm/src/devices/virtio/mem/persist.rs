//! virtio-mem snapshot state. The plugged memory's contents are not in it: they live in the
//! hot-pluggable region, which templates do not save yet (see `Vm::snapshot`).

use serde::{Deserialize, Serialize};

use crate::devices::virtio::persist::{MmioTransportState, QueueSnapshot};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VirtioMemState {
    pub avail_features: u64,
    pub acked_features: u64,
    /// The running queue (with ring positions); None until the driver set DRIVER_OK.
    pub queue: Option<QueueSnapshot>,
    pub block_size: u64,
    /// Guest-physical start of the region and its size, to check a restore puts it back
    /// where the guest saw it.
    pub addr: u64,
    pub region_size: u64,
    pub requested_size: u64,
    /// Plug bitmap, one bit per block, 64 blocks a word from block 0.
    pub plugged: Vec<u64>,
    pub config_generation: u32,
}

/// The virtio-mem device with its transport, as `DevicesState` carries it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VirtioMemSnapshot {
    pub transport: MmioTransportState,
    pub device: VirtioMemState,
}
