//! virtio-balloon (virtio 1.2, 5.5): the host asks the guest to give back memory by
//! inflating a balloon (`vm.resize`'s `desired_balloon`), the guest reports statistics,
//! and with free page reporting it hands over free pages on its own. Every page the guest
//! gives up is discarded ([`crate::vstate::discard`]): returned to the host kernel and,
//! under RAM extension, never written to or fetched from the memory servers.
//!
//! - `pages`: inflate/deflate chains (arrays of 4 KiB page frame numbers) and free page
//!   reports checked and turned into guest-physical ranges.
//! - `stats`: the statistics buffer's tagged values.
//! - `device`: the virtio device: configuration space, queues, target size.
//! - `event_handler`: the device on the event loop (queue notifications, stats timer).
//! - `persist`: the device's snapshot state.

pub mod device;
pub mod event_handler;
pub mod pages;
pub mod persist;
pub mod stats;
#[cfg(test)]
mod tests;

pub use device::{Balloon, BalloonOptions};

/// virtio device ID of the traditional memory balloon.
pub const VIRTIO_ID_BALLOON: u32 = 5;
/// Inflate/deflate page frame numbers are always in 4 KiB units (5.5.6).
pub const BALLOON_PAGE_SIZE: u64 = 4096;
/// Queue size of every balloon queue.
pub const QUEUE_SIZE: u16 = 256;

/// Feature bits (5.5.3).
pub const F_STATS_VQ: u64 = 1 << 1;
pub const F_DEFLATE_ON_OOM: u64 = 1 << 2;
pub const F_REPORTING: u64 = 1 << 5;
