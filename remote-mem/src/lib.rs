//! Remote memory: wire protocol, memory server (`revenant-memd`), replicated
//! multi-host client, and a block backend over remote slabs.
//!
//! Not here yet (later issues): the RAM-ext engine (userfaultfd) and the etcd
//! directory.

#![warn(missing_docs)]

pub mod bench;
pub mod block;
pub mod client;
pub mod endpoint;
pub mod power;
pub mod protocol;
pub mod server;
pub mod size;
