//! virtio-vsock (virtio 1.2, 5.10) in hybrid mode, as Firecracker and Cloud Hypervisor do
//! it: the host end of every guest socket is a Unix socket.
//!
//! - Host-initiated: a client connects to `uds_path` and writes `CONNECT <port>\n`; the
//!   device asks the guest (REQUEST to `<port>`), and only once the guest answers RESPONSE
//!   does the client read `OK <host_port>\n`. A refusal, a timeout or a malformed line
//!   closes the client socket without a byte written (what kata's shim relies on, KATA.md).
//! - Guest-initiated: a REQUEST to host port `P` connects to the Unix socket `<uds_path>_P`.
//!
//! Modules:
//! - `packet`: the 44-byte `virtio_vsock_hdr` and reading/writing packets from and into
//!   descriptor chains (all guest-controlled input is checked here).
//! - `connection`: one stream's state machine and credit-based flow control.
//! - `handshake`: parsing a host client's `CONNECT <port>` line.
//! - `muxer`: the host side: listener, `CONNECT` handshakes, connections keyed by port
//!   pair, which fds the event loop watches, handshake and close timeouts.
//! - `device`: the virtio device: queues, rx/tx processing.
//! - `event_handler`: the device on the event loop.
//! - `persist`: what a snapshot can carry (live connections cannot be restored).
//! - `uds`: Unix-socket helpers (non-blocking connect, stale-socket check).
//! - `testbed`: the device with a host-side driver in front, for tests.

pub mod connection;
pub mod device;
pub mod event_handler;
pub mod handshake;
pub mod muxer;
pub mod packet;
pub mod persist;
pub mod testbed;
#[cfg(test)]
mod tests;
pub mod uds;

use std::time::Duration;

pub use device::Vsock;

/// The host's CID: every guest packet must be addressed to it (no guest-to-guest traffic).
pub const HOST_CID: u64 = 2;
/// Smallest CID a guest may have: 0-2 are the hypervisor, local and host addresses.
pub const MIN_GUEST_CID: u64 = 3;
/// Queue size offered. Every chain is bounded by it, which bounds per-packet work.
pub const QUEUE_SIZE: u16 = 256;
/// rx, tx and event queues, in this order (5.10.2).
pub const NUM_QUEUES: usize = 3;
pub const RX_QUEUE: usize = 0;
pub const TX_QUEUE: usize = 1;
pub const EVENT_QUEUE: usize = 2;
/// VIRTIO_VSOCK_F_STREAM: SOCK_STREAM is the only socket type this device carries.
pub const VIRTIO_VSOCK_F_STREAM: u64 = 1 << 0;
/// Largest payload of one packet, Linux's `VIRTIO_VSOCK_MAX_PKT_BUF_SIZE`: a bigger `len`
/// is a malformed packet, and it bounds the copy the device makes of each one.
pub const MAX_PKT_LEN: u32 = 64 * 1024;
/// Bytes of guest data the device buffers per connection when the host socket is slow:
/// what it advertises as `buf_alloc`, so a guest that respects credit never exceeds it.
pub const CONN_BUF_SIZE: u32 = 256 * 1024;
/// Bytes read from a host socket at a time (then sent to the guest before reading more).
pub const HOST_READ_CHUNK: usize = MAX_PKT_LEN as usize;
/// Live connections at most: each holds a host fd and up to `CONN_BUF_SIZE +
/// HOST_READ_CHUNK` bytes, so this bounds what a guest can make the VMM hold.
pub const MAX_CONNECTIONS: usize = 512;
/// Host clients that connected but have not finished their `CONNECT` line yet.
pub const MAX_HANDSHAKES: usize = 64;
/// Longest `CONNECT <port>\n` line accepted, newline included ("CONNECT 4294967295\n" is
/// 19 bytes); a client that sends more without a newline is closed.
pub const CONNECT_LINE_MAX: usize = 32;
/// How long the guest has to answer a host-initiated REQUEST; kata redials after a close.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long the guest has to answer our SHUTDOWN with RST before we reset it ourselves.
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);
/// Host ports handed to host-initiated connections start here, far above the ports guests
/// and host services listen on.
pub const FIRST_LOCAL_PORT: u32 = 1 << 30;
