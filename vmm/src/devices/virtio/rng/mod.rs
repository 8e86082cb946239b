//! virtio-rng (virtio 1.2, 5.4): an entropy source for the guest. Every device-writable
//! buffer the driver posts is filled from a host source (Cloud Hypervisor's `rng.src`,
//! `/dev/urandom` by default), so the guest's `hwrng` has entropy from boot, which a clone
//! of a template needs to stop sharing its siblings' random state.
//!
//! - `device`: the virtio device and its one request queue.
//! - `event_handler`: the device on the event loop.
//! - `persist`: the device's snapshot state.

pub mod device;
pub mod event_handler;
pub mod persist;
#[cfg(test)]
mod tests;

pub use device::{Rng, RngError};

/// virtio device ID of the entropy device.
pub const VIRTIO_ID_RNG: u32 = 4;
/// Size of its one queue.
pub const QUEUE_SIZE: u16 = 256;
/// The most bytes one request is given (Linux asks for at most a page or so); a longer
/// chain gets this much.
pub const MAX_REQUEST: usize = 64 << 10;
