//! Where a virtio-blk device's sectors live.
//!
//! Requests reach a backend already checked (sector ranges inside the disk, buffers inside
//! guest memory), as guest-memory slices: the raw-file backend hands them to the kernel as
//! an iovec, with no copy; the remote backend copies through a bounce buffer, since its
//! client takes byte slices.

pub mod raw;
pub mod remote;

use vm_memory::VolatileSlice;

pub use raw::RawFile;
pub use remote::RemoteDisk;

#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    #[error("{what} at byte {offset}: {source}")]
    Io {
        what: &'static str,
        offset: u64,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Remote(#[from] revenant_remote_mem::block::BlockError),
    #[error("the disk cannot discard")]
    DiscardUnsupported,
}

/// A sector-addressed disk the device reads and writes. Offsets are in bytes and always
/// sector aligned; callers have checked them against [`DiskBackend::capacity_sectors`].
pub trait DiskBackend: Send {
    fn capacity_sectors(&self) -> u64;
    /// Fills `bufs`, in order, from `offset`.
    fn read_vectored(&mut self, offset: u64, bufs: &[VolatileSlice<'_>]) -> Result<(), DiskError>;
    /// Writes `bufs`, in order, at `offset`.
    fn write_vectored(&mut self, offset: u64, bufs: &[VolatileSlice<'_>]) -> Result<(), DiskError>;
    /// Makes completed writes durable.
    fn flush(&mut self) -> Result<(), DiskError>;
    /// Whether [`DiskBackend::discard`] can work (decides VIRTIO_BLK_F_DISCARD).
    fn can_discard(&self) -> bool;
    /// Releases `len` bytes from `offset`; they read back as zeros afterwards.
    fn discard(&mut self, offset: u64, len: u64) -> Result<(), DiskError>;
}
