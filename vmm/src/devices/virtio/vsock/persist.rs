//! virtio-vsock snapshot state.
//!
//! What a snapshot can carry: the CID, the features and the running queues. What it cannot:
//! the connections. Each one is a host Unix socket (a kata shim's agent channel, a guest
//! service's client) whose other end lives outside the VMM and does not follow a snapshot
//! into a new process. After a restore the device starts with no connections, listens
//! again at the configured socket path, and must tell the driver so with a
//! TRANSPORT_RESET event ([`super::Vsock::send_transport_reset`]); the guest then resets
//! its sockets and its services reconnect, as after a live migration in Firecracker and
//! Cloud Hypervisor. A forked clone gets a new CID from its own config.

use serde::{Deserialize, Serialize};

use crate::devices::virtio::persist::{MmioTransportState, QueueSnapshot};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VsockState {
    pub cid: u64,
    pub avail_features: u64,
    pub acked_features: u64,
    /// rx, tx and event queues with their ring positions; empty until DRIVER_OK. (No
    /// `skip_serializing_if`: the state file is postcard, which needs every field.)
    pub queues: Vec<QueueSnapshot>,
}

/// The virtio-vsock device with its transport, as `DevicesState` carries it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VirtioVsockSnapshot {
    pub transport: MmioTransportState,
    pub device: VsockState,
}
