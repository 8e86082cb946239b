//! Directory of memd hosts. The embedded default is a static list
//! (`tcp://h1:7600,tcp://h2:7600`, see [`crate::endpoint::Endpoint::parse_list`]);
//! cluster mode (feature `etcd`) keeps the list in etcd: each memd registers
//! a [`HostRecord`] under [`ETCD_PREFIX`] with a lease, clients watch the prefix.

use serde::{Deserialize, Serialize};

use crate::power::PowerState;

#[cfg(feature = "etcd")]
mod etcd;
#[cfg(feature = "etcd")]
pub use etcd::{DirectoryError, DirectoryWatch, Registration};
#[cfg(feature = "etcd")]
pub mod testing;

/// etcd key prefix; a host's key is the prefix followed by its endpoint.
pub const ETCD_PREFIX: &str = "/revenant/memd/";

/// What a memd publishes about itself (JSON value of its etcd key).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostRecord {
    /// Where clients connect (`tcp://host:port`).
    pub endpoint: String,
    /// Bytes the host serves.
    pub capacity: u64,
    /// Bytes not allocated yet (refreshed at every lease renewal).
    pub free: u64,
    /// Host power state.
    pub power_state: PowerState,
}
