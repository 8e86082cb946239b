//! virtio-balloon snapshot state. Inflated pages need nothing saved: they were discarded,
//! so the template's memory file holds zeros (or older data) there, which the guest never
//! reads before taking them back.

use serde::{Deserialize, Serialize};

use crate::devices::virtio::persist::{MmioTransportState, QueueSnapshot};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BalloonState {
    pub avail_features: u64,
    pub acked_features: u64,
    /// Every queue (with ring positions) once the driver set DRIVER_OK, else empty.
    pub queues: Vec<QueueSnapshot>,
    pub target_pages: u32,
    pub actual_pages: u32,
    pub config_generation: u32,
    /// The statistics buffer the device held, returned later to ask for new values.
    pub stats_head: Option<u16>,
}

/// The balloon with its transport, as `DevicesState` carries it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BalloonSnapshot {
    pub transport: MmioTransportState,
    pub device: BalloonState,
}
