//! Remote memory: wire protocol, memory server (`revenant-memd`), replicated
//! multi-host client, and a block backend over remote slabs.
//!
//! Host directory: static list, or etcd with the `etcd` feature. Not here yet
//! (later issue): the RAM-ext engine (userfaultfd).

#![warn(missing_docs)]

pub mod bench;
pub mod block;
pub mod client;
pub mod directory;
pub mod endpoint;
pub mod power;
pub mod protocol;
pub mod server;
pub mod size;

pub use client::{ClientConfig, MemClient, RemoteReplica, SlabTable};
