//! Client side: one connection per host ([`HostConn`]) and the replicated,
//! multi-host [`MemClient`] built on it.

mod attach;
mod batch;
mod cluster;
mod conn;
mod placement;
mod rereplicate;

use std::io;

pub use attach::{RemoteReplica, SlabTable};
pub use batch::{PageRead, PageWrite};
pub use cluster::{ClientConfig, MemClient, SlabId};
pub use placement::Rng;

/// A fast non-cryptographic generator (for benches and tests).
pub fn placement_rng(seed: u64) -> Rng {
    Rng::new(seed)
}
pub use conn::{HostConn, ReadOp, WriteOp};

use crate::protocol::{FrameError, Status};

/// Client errors.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// TCP/Unix connect failed.
    #[error("cannot connect to {endpoint}: {source}")]
    Connect {
        /// Server address.
        endpoint: String,
        /// Cause.
        source: io::Error,
    },
    /// The server refused the handshake (wrong token or version).
    #[error("{endpoint} refused the handshake: {status:?}")]
    Refused {
        /// Server address.
        endpoint: String,
        /// Status it answered.
        status: Status,
    },
    /// Socket error talking to a server.
    #[error("socket: {0}")]
    Io(#[from] io::Error),
    /// The server sent a frame that fails validation.
    #[error("malformed reply: {0}")]
    Frame(#[from] FrameError),
    /// The server's reply does not fit the request.
    #[error("protocol violation by server: {0}")]
    Protocol(&'static str),
    /// The server answered with an error status.
    #[error("server refused the request: {0:?}")]
    Status(Status),
    /// Connection unusable after an earlier failure.
    #[error("connection to {0} failed earlier")]
    Broken(String),
    /// I/O longer than the protocol's per-request limit.
    #[error("I/O of {0} bytes exceeds the per-request limit")]
    TooLong(usize),
    /// No host could be reached or none had room.
    #[error("no usable memd host: {0}")]
    NoHosts(String),
    /// The slab handle is unknown or was freed.
    #[error("unknown slab {0}")]
    UnknownSlab(usize),
    /// `offset + len` is outside the slab.
    #[error("range {offset}+{len} is outside the {slab_size}-byte slab")]
    OutOfRange {
        /// Offset asked for.
        offset: u64,
        /// Length asked for.
        len: usize,
        /// Slab size.
        slab_size: u64,
    },
    /// Every replica of the slab failed.
    #[error("all replicas of slab {0} failed")]
    AllReplicasFailed(usize),
    /// Hosts (or a slab table and the hosts) disagree on slab size; one
    /// client needs one size.
    #[error("hosts use different slab sizes ({0} and {1})")]
    SlabSizeMismatch(u64, u64),
    /// [`MemClient::attach`] needs the key that owns the slabs.
    #[error("attaching needs the key that owns the slabs (ClientConfig::key is None)")]
    AttachWithoutKey,
    /// [`MemClient::attach`] with a backup file: the file would hold none of
    /// the adopted slabs, and reads falling back to it would see zeros.
    #[error("attaching cannot use a backup file: it would hold none of the adopted data")]
    AttachWithBackup,
    /// A slab of the table given to [`MemClient::attach`] has no usable replica.
    #[error("slab {slab} of the table cannot be attached: {reason}")]
    AttachSlab {
        /// Index of the slab in the table (its [`SlabId`]).
        slab: usize,
        /// Why none of its replicas could be used.
        reason: &'static str,
    },
}

/// 128 random bits from the kernel for a client key or a seed.
pub fn random_key() -> Result<[u8; 16], io::Error> {
    let mut k = [0u8; 16];
    let mut got = 0;
    while got < k.len() {
        // SAFETY: the pointer and length describe the unfilled tail of `k`,
        // which lives for the whole call.
        let n = unsafe { libc::getrandom(k[got..].as_mut_ptr().cast(), k.len() - got, 0) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        got += n as usize;
    }
    Ok(k)
}
