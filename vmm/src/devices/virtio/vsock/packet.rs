//! vsock packets: the 44-byte little-endian `struct virtio_vsock_hdr` and its payload, read
//! from a tx descriptor chain or written into an rx one (5.10.6).
//!
//! Everything in a chain is guest-controlled. A tx chain must be device-readable only and
//! properly terminated, every buffer inside guest memory, the header complete (it may span
//! descriptors or share one with the payload) and `len` at most [`MAX_PKT_LEN`] and covered
//! by the buffers; anything else is a [`PacketError`] and the chain is returned unused. An
//! rx chain must be device-writable only and hold at least a header.

use std::io::Read;

use virtio_queue::{DescriptorChain, Reader, Writer};

use super::MAX_PKT_LEN;
use crate::vstate::memory::GuestMemoryMmap;

/// Size of `struct virtio_vsock_hdr`.
pub const HDR_LEN: usize = 44;
/// `VIRTIO_VSOCK_TYPE_STREAM`, the only type carried.
pub const TYPE_STREAM: u16 = 1;
/// SHUTDOWN flags: the sender will receive no more / send no more.
pub const SHUTDOWN_RCV: u32 = 1;
pub const SHUTDOWN_SEND: u32 = 2;
pub const SHUTDOWN_BOTH: u32 = SHUTDOWN_RCV | SHUTDOWN_SEND;

/// `VIRTIO_VSOCK_OP_*`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Request,
    Response,
    Rst,
    Shutdown,
    Rw,
    CreditUpdate,
    CreditRequest,
}

impl Op {
    pub fn from_u16(v: u16) -> Option<Op> {
        Some(match v {
            1 => Op::Request,
            2 => Op::Response,
            3 => Op::Rst,
            4 => Op::Shutdown,
            5 => Op::Rw,
            6 => Op::CreditUpdate,
            7 => Op::CreditRequest,
            _ => return None,
        })
    }

    pub fn code(self) -> u16 {
        match self {
            Op::Request => 1,
            Op::Response => 2,
            Op::Rst => 3,
            Op::Shutdown => 4,
            Op::Rw => 5,
            Op::CreditUpdate => 6,
            Op::CreditRequest => 7,
        }
    }
}

/// `struct virtio_vsock_hdr`, fields in wire order. `op` stays a raw number so a packet
/// with an unknown op can still be answered with RST.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Header {
    pub src_cid: u64,
    pub dst_cid: u64,
    pub src_port: u32,
    pub dst_port: u32,
    pub len: u32,
    pub type_: u16,
    pub op: u16,
    pub flags: u32,
    pub buf_alloc: u32,
    pub fwd_cnt: u32,
}

impl Header {
    pub fn from_bytes(b: &[u8; HDR_LEN]) -> Header {
        let u64_at = |at: usize| {
            let mut v = [0u8; 8];
            v.copy_from_slice(&b[at..at + 8]);
            u64::from_le_bytes(v)
        };
        let u32_at = |at: usize| u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
        let u16_at = |at: usize| u16::from_le_bytes([b[at], b[at + 1]]);
        Header {
            src_cid: u64_at(0),
            dst_cid: u64_at(8),
            src_port: u32_at(16),
            dst_port: u32_at(20),
            len: u32_at(24),
            type_: u16_at(28),
            op: u16_at(30),
            flags: u32_at(32),
            buf_alloc: u32_at(36),
            fwd_cnt: u32_at(40),
        }
    }

    pub fn to_bytes(&self) -> [u8; HDR_LEN] {
        let mut b = [0u8; HDR_LEN];
        b[0..8].copy_from_slice(&self.src_cid.to_le_bytes());
        b[8..16].copy_from_slice(&self.dst_cid.to_le_bytes());
        b[16..20].copy_from_slice(&self.src_port.to_le_bytes());
        b[20..24].copy_from_slice(&self.dst_port.to_le_bytes());
        b[24..28].copy_from_slice(&self.len.to_le_bytes());
        b[28..30].copy_from_slice(&self.type_.to_le_bytes());
        b[30..32].copy_from_slice(&self.op.to_le_bytes());
        b[32..36].copy_from_slice(&self.flags.to_le_bytes());
        b[36..40].copy_from_slice(&self.buf_alloc.to_le_bytes());
        b[40..44].copy_from_slice(&self.fwd_cnt.to_le_bytes());
        b
    }

    pub fn op(&self) -> Option<Op> {
        Op::from_u16(self.op)
    }
}

/// Why a chain was returned to the driver unused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PacketError {
    /// The chain has no descriptors, or its last one still points to a next one: a loop, a
    /// chain longer than the queue, an unreadable descriptor or 4 GiB of buffers.
    #[error("descriptor chain is empty or does not end")]
    Unterminated,
    /// tx buffers are device-readable and rx buffers device-writable, all of them.
    #[error("a descriptor has the wrong direction for this queue")]
    WrongDirection,
    /// A buffer is not (entirely) guest memory.
    #[error("a buffer is outside guest memory: {0}")]
    OutOfRange(String),
    /// Fewer than 44 bytes in the chain.
    #[error("the chain holds {0} bytes, less than a 44-byte header")]
    ShortHeader(usize),
    /// `len` above the largest packet.
    #[error("payload length {0} is above the {MAX_PKT_LEN}-byte maximum")]
    TooLong(u32),
    /// `len` says more than the chain holds.
    #[error("header says {len} payload bytes but the chain holds {available}")]
    ShortPayload { len: u32, available: usize },
}

/// A packet the guest sent.
#[derive(Debug, PartialEq, Eq)]
pub struct TxPacket {
    pub hdr: Header,
    /// Exactly `hdr.len` bytes.
    pub data: Vec<u8>,
}

/// Checks every descriptor points the same way (`writable`) and the chain ends.
fn check_chain(
    chain: DescriptorChain<&GuestMemoryMmap>,
    writable: bool,
) -> Result<(), PacketError> {
    let mut last = None;
    for d in chain {
        if d.is_write_only() != writable {
            return Err(PacketError::WrongDirection);
        }
        last = Some(d);
    }
    // virtio_queue's iterator stops silently on a loop, an out-of-table index and on 4 GiB
    // of buffers: the last descriptor it returned then still has NEXT set.
    match last {
        Some(d) if !d.has_next() => Ok(()),
        _ => Err(PacketError::Unterminated),
    }
}

/// Reads the packet in a tx chain.
pub fn read_tx(
    chain: DescriptorChain<&GuestMemoryMmap>,
    mem: &GuestMemoryMmap,
) -> Result<TxPacket, PacketError> {
    check_chain(chain.clone(), false)?;
    // Reader::new maps every buffer up front, so one outside memory fails here before
    // anything is read.
    let mut reader: Reader<'_> =
        Reader::new(mem, chain).map_err(|e| PacketError::OutOfRange(e.to_string()))?;
    let available = reader.available_bytes();
    if available < HDR_LEN {
        return Err(PacketError::ShortHeader(available));
    }
    let mut raw = [0u8; HDR_LEN];
    reader
        .read_exact(&mut raw)
        .map_err(|e| PacketError::OutOfRange(e.to_string()))?;
    let hdr = Header::from_bytes(&raw);
    if hdr.len > MAX_PKT_LEN {
        return Err(PacketError::TooLong(hdr.len));
    }
    let available = reader.available_bytes();
    // len <= MAX_PKT_LEN (64 KiB) just above, so the conversion and the buffer are small.
    let len = hdr.len as usize;
    if available < len {
        return Err(PacketError::ShortPayload {
            len: hdr.len,
            available,
        });
    }
    let mut data = vec![0u8; len];
    reader
        .read_exact(&mut data)
        .map_err(|e| PacketError::OutOfRange(e.to_string()))?;
    Ok(TxPacket { hdr, data })
}

/// The writable buffers of an rx chain, with room for at least a header.
pub fn rx_writer<'a>(
    chain: DescriptorChain<&GuestMemoryMmap>,
    mem: &'a GuestMemoryMmap,
) -> Result<Writer<'a>, PacketError> {
    check_chain(chain.clone(), true)?;
    let writer: Writer<'a> =
        Writer::new(mem, chain).map_err(|e| PacketError::OutOfRange(e.to_string()))?;
    if writer.available_bytes() < HDR_LEN {
        return Err(PacketError::ShortHeader(writer.available_bytes()));
    }
    Ok(writer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips_in_wire_order() {
        let h = Header {
            src_cid: 3,
            dst_cid: 2,
            src_port: 0x1111_2222,
            dst_port: 1024,
            len: 5,
            type_: TYPE_STREAM,
            op: Op::Rw.code(),
            flags: 0,
            buf_alloc: 0x4_0000,
            fwd_cnt: 9,
        };
        let b = h.to_bytes();
        assert_eq!(&b[0..8], &3u64.to_le_bytes());
        assert_eq!(&b[20..24], &1024u32.to_le_bytes());
        assert_eq!(&b[30..32], &5u16.to_le_bytes());
        assert_eq!(&b[40..44], &9u32.to_le_bytes());
        assert_eq!(Header::from_bytes(&b), h);
        for code in 1..=7 {
            assert_eq!(Op::from_u16(code).map(Op::code), Some(code));
        }
        assert_eq!(Op::from_u16(0), None);
        assert_eq!(Op::from_u16(8), None);
    }
}
