//! virtio-blk (virtio 1.2, 5.2): a disk backed by a raw image file or by remote memory
//! (the explicit swap device).
//!
//! - `request`: a descriptor chain checked and parsed into a typed request.
//! - `io`: the disk backends ([`io::DiskBackend`]): raw file (preadv/pwritev straight into
//!   guest memory) and remote memory slabs (`revenant_remote_mem::block`).
//! - `device`: the virtio device: features, configuration space, request execution.
//! - `event_handler`: the device on the event loop (its queue notification eventfd).
//! - `persist`: the device's snapshot state.
//! - `testbed`: the device with a host-side driver in front (tests, benchmark, fuzzing).

pub mod device;
pub mod event_handler;
pub mod io;
pub mod persist;
pub mod request;
pub mod testbed;
#[cfg(test)]
mod tests;

pub use device::{Block, BlockOptions};

/// Bytes per sector: virtio-blk addresses everything in 512-byte sectors whatever the
/// backing store's block size.
pub const SECTOR_SIZE: u64 = 512;
/// Queue size offered. 256 lets Linux keep a deep queue without indirect descriptors;
/// every descriptor chain is bounded by it, which is what bounds per-request work.
pub const QUEUE_SIZE: u16 = 256;
/// Data descriptors per request (`seg_max`): a chain also needs a header and a status
/// descriptor.
pub const SEG_MAX: u32 = QUEUE_SIZE as u32 - 2;
/// Ranges per discard request (`max_discard_seg`). Each is 16 bytes the device copies out of
/// guest memory, so this also bounds that copy.
pub const MAX_DISCARD_SEG: u32 = 32;
/// Sectors per discard range (`max_discard_sectors`): 2 GiB, so one punch-hole call stays
/// short.
pub const MAX_DISCARD_SECTORS: u32 = 1 << 22;
/// Discard granularity advertised (`discard_sector_alignment`), in sectors: one 4 KiB page,
/// the unit file systems (and memd slabs) can actually release.
pub const DISCARD_ALIGNMENT_SECTORS: u32 = 8;
/// Length of the device ID string GET_ID returns (`VIRTIO_BLK_ID_BYTES`).
pub const ID_BYTES: usize = 20;
