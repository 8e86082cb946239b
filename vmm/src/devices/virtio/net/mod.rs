//! virtio-net (virtio 1.2, 5.1) over a host tap device: one rx and one tx queue, the MAC
//! address and link status in configuration space.
//!
//! Every frame carries a 12-byte `virtio_net_hdr_v1` in front. The tap is opened with
//! `IFF_VNET_HDR` and a vnet header size of 12, so that header passes straight through in
//! both directions: the guest's checksum and segmentation offload requests reach the host
//! kernel as they are, and what the kernel leaves to the guest (partial checksums, TSO
//! frames) arrives the same way. Which offloads the kernel may hand the guest is set on the
//! tap (`TUNSETOFFLOAD`) from the features the driver accepted.
//!
//! - rx: frames are read from the tap straight into the guest's posted buffers (`readv`),
//!   one frame per chain (`num_buffers` = 1: no mergeable rx buffers). With no buffer
//!   posted the device stops reading, so frames wait in the tap (never dropped for want of
//!   a buffer) until the driver posts buffers and notifies the rx queue. A frame larger
//!   than the chain it was read into is dropped and counted; the chain takes the next one.
//! - tx: each chain (header and frame) is gathered into one `writev` to the tap.
//!
//! Modules:
//! - `mac`: the MAC address type (parsing, printing, serde, random local addresses).
//! - `tap`: opening or adopting a tap fd, its vnet header size and offloads.
//! - `device`: the virtio device: features, configuration space, rx and tx.
//! - `event_handler`: the device on the event loop (queue notifications, tap readable).
//! - `persist`: the device's snapshot state and rebuilding the device from it.
//! - `testbed`: the device with a host-side driver in front, for tests.

pub mod device;
pub mod event_handler;
pub mod mac;
pub mod persist;
pub mod tap;
#[cfg(test)]
mod testbed;
#[cfg(test)]
mod tests;

pub use device::{Net, NetCounters, NetError, NetOptions};
pub use mac::{MacAddr, MacError};
pub use persist::{NetState, VirtioNetSnapshot};
pub use tap::{Tap, TapError};

/// virtio device ID of a network card.
pub const VIRTIO_ID_NET: u32 = virtio_bindings::virtio_ids::VIRTIO_ID_NET;
/// Size of each queue.
pub const QUEUE_SIZE: u16 = 256;
/// rx and tx, in this order (5.1.2); no control queue.
pub const NUM_QUEUES: usize = 2;
pub const RX_QUEUE: usize = 0;
pub const TX_QUEUE: usize = 1;
/// `struct virtio_net_hdr_v1`: with VERSION_1 every frame has this 12-byte header, also
/// without mergeable rx buffers (5.1.6). The tap's vnet header size is set to match.
pub const VNET_HDR_LEN: usize = 12;
/// Ethernet header: a tx frame shorter than header and this is malformed.
pub const ETH_HLEN: usize = 14;
/// The largest chain a tx frame may take, header included: a 64 KiB TSO frame with an
/// Ethernet and a VLAN header and the vnet header (the size the spec asks drivers to post
/// for big rx buffers, 5.1.6.3.1).
pub const MAX_FRAME_CHAIN_LEN: usize = 65562;
