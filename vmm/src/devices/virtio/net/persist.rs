//! virtio-net snapshot state: the device's identity (id, MAC), its features and its
//! running queues. The tap is not in it: a restored device is built in front of a new tap
//! ([`super::Net::from_state`]), and nothing else needs carrying, since the device holds
//! no frames of its own (rx frames wait in the tap, tx frames are written as they come).
//! Frames in the old tap when the snapshot was taken are lost, as on a real link.

use serde::{Deserialize, Serialize};

use super::mac::MacAddr;
use crate::devices::virtio::persist::{MmioTransportState, QueueSnapshot};
use crate::devices::virtio::restore::RunningQueues;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetState {
    pub id: String,
    /// The address the guest's driver read (a clone may be given another, see
    /// [`super::Net::from_state`]).
    pub mac: MacAddr,
    pub avail_features: u64,
    pub acked_features: u64,
    /// rx and tx queues with their ring positions; empty until DRIVER_OK. (No
    /// `skip_serializing_if`: the state file is postcard, which needs every field.)
    pub queues: Vec<QueueSnapshot>,
}

impl NetState {
    /// The device's record of its running queues, for the transport's restore.
    pub fn running_queues(&self) -> RunningQueues<'_> {
        RunningQueues {
            acked_features: self.acked_features,
            queues: &self.queues,
        }
    }
}

/// The virtio-net device with its transport, as `DevicesState` carries it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VirtioNetSnapshot {
    pub transport: MmioTransportState,
    pub device: NetState,
}
