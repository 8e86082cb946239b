//! virtio-rng snapshot state: only the running queue; the source is reopened from the
//! configuration.

use serde::{Deserialize, Serialize};

use crate::devices::virtio::persist::{MmioTransportState, QueueSnapshot};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RngState {
    pub acked_features: u64,
    /// The running queue (with ring positions); None until the driver set DRIVER_OK.
    pub queue: Option<QueueSnapshot>,
}

/// The device with its transport, as `DevicesState` carries it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RngSnapshot {
    pub transport: MmioTransportState,
    pub device: RngState,
}
