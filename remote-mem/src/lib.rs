//! Remote memory: wire protocol, memory server (`revenant-memd`), replicated
//! multi-host client, and a block backend over remote slabs.
//!
//! Host directory: static list, or etcd with the `etcd` feature. The RAM-ext engine
//! ([`ram_ext`]) keeps a VM's guest RAM within a local budget, the rest on memory servers.

#![warn(missing_docs)]

pub mod bench;
pub mod block;
pub mod client;
pub mod directory;
pub mod endpoint;
pub mod power;
pub mod protocol;
pub mod ram_ext;
pub mod server;
pub mod size;
pub mod space;

pub use client::{ClientConfig, MemClient, RemoteReplica, SlabTable};
