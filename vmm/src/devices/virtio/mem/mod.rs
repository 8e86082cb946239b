//! virtio-mem (virtio 1.2, 5.15): memory the guest plugs and unplugs block by block inside
//! a region the VMM reserved for it ([`crate::vstate::hotplug_memory`]). The host says how
//! much it wants the guest to have (`requested_size`, from `vm.resize`); the guest driver
//! plugs or unplugs blocks until `plugged_size` matches, one request at a time.
//!
//! - `blocks`: which blocks are plugged (a bitmap) and range queries on it.
//! - `request`: a descriptor chain checked and parsed into a typed request.
//! - `device`: the virtio device: configuration space, request execution, resize.
//! - `event_handler`: the device on the event loop (its queue notification eventfd).
//! - `persist`: the device's snapshot state.

pub mod blocks;
pub mod device;
pub mod event_handler;
pub mod persist;
pub mod request;
#[cfg(test)]
mod tests;

pub use device::VirtioMem;

/// virtio device ID of virtio-mem.
pub const VIRTIO_ID_MEM: u32 = 24;
/// Granularity of plugging. Linux (x86-64) wants at least the larger of 2 MiB and its
/// pageblock size, and 2 MiB keeps transparent huge pages whole; it is also the alignment
/// `vm.resize`'s `desired_ram` must keep above the boot memory.
pub const BLOCK_SIZE: u64 = 2 << 20;
/// One request in flight is all Linux ever has; a small queue still lets a driver batch.
pub const QUEUE_SIZE: u16 = 128;

/// Request types (`struct virtio_mem_req`'s `type`).
pub const REQ_PLUG: u16 = 0;
pub const REQ_UNPLUG: u16 = 1;
pub const REQ_UNPLUG_ALL: u16 = 2;
pub const REQ_STATE: u16 = 3;

/// Response types (`struct virtio_mem_resp`'s `type`).
pub const RESP_ACK: u16 = 0;
/// The request is valid but not allowed now (plugging beyond `requested_size`).
pub const RESP_NACK: u16 = 1;
/// The device could not do it now; the driver may retry.
pub const RESP_BUSY: u16 = 2;
/// The request is invalid (range, alignment, blocks not in the expected state).
pub const RESP_ERROR: u16 = 3;

/// Block states a STATE request answers.
pub const STATE_PLUGGED: u16 = 0;
pub const STATE_UNPLUGGED: u16 = 1;
pub const STATE_MIXED: u16 = 2;
