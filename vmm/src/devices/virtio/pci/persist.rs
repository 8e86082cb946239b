//! Snapshot state of a virtio-pci transport. Plain fields only (the state file is postcard,
//! which has no field names: every field is always written, in this order).

use serde::{Deserialize, Serialize};

use crate::devices::pci::msix::MsixState;
use crate::devices::virtio::persist::QueueSnapshot;
use crate::devices::virtio::restore::SavedCore;

/// What the transport keeps between accesses. As with `MmioTransportState`, the queues are
/// the configuration the driver wrote; a running device's own queue state (with the ring
/// positions) is in the device's snapshot.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PciTransportState {
    pub device_status: u32,
    pub device_features_select: u32,
    pub driver_features_select: u32,
    pub acked_features: u64,
    pub queue_select: u32,
    /// The ISR register.
    pub interrupt_status: u32,
    pub config_generation: u32,
    pub queues: Vec<QueueSnapshot>,
    /// `msix_config`.
    pub config_vector: u16,
    /// `queue_msix_vector` of each queue.
    pub queue_vectors: Vec<u16>,
    pub msix: MsixState,
    /// The 256 bytes of configuration space: BAR address, command register, MSI-X enable
    /// and mask, interrupt line, the PCI access capability's fields. Only bits the guest
    /// may write are taken back on restore.
    pub config_space: Vec<u8>,
}

impl<'a> From<&'a PciTransportState> for SavedCore<'a> {
    fn from(s: &'a PciTransportState) -> Self {
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
