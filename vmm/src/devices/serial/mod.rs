//! COM1: an 8250/16550 UART (vm-superio) at 0x3f8, IRQ 4.
//!
//! `device.rs` wires the UART to the bus and its interrupt, `output.rs` says where guest
//! output goes (stdout, a file, a Unix socket, nowhere), `event_handler.rs` feeds host input
//! (a terminal on stdin, the socket's client, or a pseudo-terminal: `pty.rs`) into the receive FIFO on the event loop.

pub mod device;
pub mod event_handler;
pub mod output;
pub mod persist;
pub mod pty;

pub const COM1_BASE: u64 = 0x3f8;
pub const COM1_LEN: u64 = 8;
pub const COM1_GSI: u32 = 4;
