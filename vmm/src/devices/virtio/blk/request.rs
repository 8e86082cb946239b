//! Turning a descriptor chain into a block request. Everything here is guest-controlled:
//! each descriptor's direction, address range and length is checked before anything is
//! read or written, and a chain that cannot be trusted becomes an error, never a panic.
//!
//! Chain layout accepted (what Linux, SeaBIOS and OVMF send): a device-readable header
//! descriptor of at least 16 bytes, data descriptors (device-writable for reads and GET_ID,
//! device-readable for writes and discards), and a device-writable status descriptor last.

use virtio_bindings::virtio_blk::{
    VIRTIO_BLK_S_IOERR, VIRTIO_BLK_S_UNSUPP, VIRTIO_BLK_T_DISCARD, VIRTIO_BLK_T_FLUSH,
    VIRTIO_BLK_T_GET_ID, VIRTIO_BLK_T_IN, VIRTIO_BLK_T_OUT,
};
use virtio_queue::desc::split::Descriptor;
use vm_memory::{Bytes, GuestAddress, GuestMemory, Permissions};

use super::{MAX_DISCARD_SECTORS, MAX_DISCARD_SEG, SECTOR_SIZE};
use crate::vstate::memory::GuestMemoryMmap;

/// `struct virtio_blk_outhdr`: type, reserved, sector (little-endian).
const HEADER_LEN: u32 = 16;
/// `struct virtio_blk_discard_write_zeroes`: sector (u64), num_sectors (u32), flags (u32).
const DISCARD_SEGMENT_LEN: u64 = 16;

/// A chain the device cannot answer with a status byte: it is returned to the driver
/// unused (used length 0).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DropReason {
    /// The chain has no descriptors (its head is outside the descriptor table).
    #[error("empty descriptor chain")]
    Empty,
    /// The last descriptor still points to a next one: a loop, a chain longer than the
    /// queue, 4 GiB of buffers, or a next index the table cannot hold.
    #[error("descriptor chain does not end (loop, longer than the queue, or overflowing)")]
    Unterminated,
    /// The status descriptor must be device-writable and at least one byte long.
    #[error("last descriptor is not a device-writable status byte")]
    BadStatusDescriptor,
    /// The status byte's address is not in guest memory.
    #[error("status byte at {0:#x} is outside guest memory")]
    StatusOutOfRange(u64),
}

/// A chain with a status byte whose request is refused: the status says why.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RequestError {
    #[error("header descriptor is device-writable or shorter than 16 bytes")]
    BadHeader,
    #[error("header at {0:#x} is outside guest memory")]
    HeaderOutOfRange(u64),
    #[error("request type {0} is not supported")]
    Unsupported(u32),
    #[error("a data descriptor has the wrong direction for this request")]
    WrongDirection,
    #[error("buffer {addr:#x}+{len:#x} is outside guest memory")]
    BufferOutOfRange { addr: u64, len: u32 },
    #[error("data length {0} is not a whole number of sectors")]
    Unaligned(u64),
    #[error("sectors {sector}+{count} are beyond the disk's {capacity} sectors")]
    BeyondCapacity {
        sector: u64,
        count: u64,
        capacity: u64,
    },
    #[error("discard request with {0} bytes of segments (16 each, at most {MAX_DISCARD_SEG})")]
    BadDiscardList(u64),
    #[error("discard range of {0} sectors is above the advertised maximum")]
    DiscardTooLong(u32),
    #[error("discard flags {0:#x} are not supported")]
    DiscardFlags(u32),
}

impl RequestError {
    /// The status byte the driver gets (5.2.6.1: unknown types and unsupported flags are
    /// UNSUPP, everything else IOERR).
    pub fn status(&self) -> u8 {
        match self {
            RequestError::Unsupported(_) | RequestError::DiscardFlags(_) => {
                VIRTIO_BLK_S_UNSUPP as u8
            }
            _ => VIRTIO_BLK_S_IOERR as u8,
        }
    }
}

/// A well-formed chain: header descriptor, data descriptors, status byte address.
#[derive(Debug)]
pub struct Chain {
    pub header: Descriptor,
    pub data: Vec<Descriptor>,
    pub status: GuestAddress,
}

/// Collects a chain (bounded by the queue size, which `virtio_queue` enforces) and finds its
/// status byte.
pub fn collect_chain(
    descs: impl Iterator<Item = Descriptor>,
    mem: &GuestMemoryMmap,
) -> Result<Chain, DropReason> {
    let mut all: Vec<Descriptor> = descs.collect();
    let last = all.pop().ok_or(DropReason::Empty)?;
    // virtio_queue's iterator stops silently on a loop (after queue-size descriptors), on
    // an unreadable or out-of-table descriptor and on 4 GiB of buffers: in each case the
    // last descriptor it returned still has NEXT set.
    if last.has_next() {
        return Err(DropReason::Unterminated);
    }
    if !last.is_write_only() || last.len() == 0 {
        return Err(DropReason::BadStatusDescriptor);
    }
    if !mem.check_range(last.addr(), 1, Permissions::Write) {
        return Err(DropReason::StatusOutOfRange(last.addr().0));
    }
    if all.is_empty() {
        // A status byte alone: there is no header to say what was asked.
        return Err(DropReason::BadStatusDescriptor);
    }
    let header = all.remove(0);
    Ok(Chain {
        header,
        data: all,
        status: last.addr(),
    })
}

/// What a request asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RequestKind {
    /// Read `len` bytes at `sector` into the data buffers.
    In,
    /// Write the data buffers at `sector`.
    Out,
    Flush,
    /// Write the device ID string into the data buffers.
    GetId,
    /// Release these (sector, count) ranges.
    Discard(Vec<(u64, u32)>),
}

/// A checked request: buffers are inside guest memory, point the right way, and sectors are
/// inside the disk.
#[derive(Debug)]
pub struct Request {
    pub kind: RequestKind,
    pub sector: u64,
    /// Data buffers, in order.
    pub data: Vec<(GuestAddress, u32)>,
    /// Sum of the data buffer lengths.
    pub data_len: u64,
}

/// Parses and checks `chain` against guest memory and a disk of `capacity` sectors.
/// `discard` says whether VIRTIO_BLK_F_DISCARD was negotiated.
pub fn parse(
    chain: &Chain,
    mem: &GuestMemoryMmap,
    capacity: u64,
    discard: bool,
) -> Result<Request, RequestError> {
    let h = &chain.header;
    if h.is_write_only() || h.len() < HEADER_LEN {
        return Err(RequestError::BadHeader);
    }
    let request_type: u32 = read_header(mem, h.addr(), 0)?;
    let sector: u64 = read_header(mem, h.addr(), 8)?;
    let (kind_of, writable) = match request_type {
        VIRTIO_BLK_T_IN => (Kind::In, true),
        VIRTIO_BLK_T_OUT => (Kind::Out, false),
        VIRTIO_BLK_T_FLUSH => (Kind::Flush, false),
        VIRTIO_BLK_T_GET_ID => (Kind::GetId, true),
        VIRTIO_BLK_T_DISCARD if discard => (Kind::Discard, false),
        t => return Err(RequestError::Unsupported(t)),
    };
    let mut data = Vec::with_capacity(chain.data.len());
    let mut data_len = 0u64;
    let permission = if writable {
        Permissions::Write
    } else {
        Permissions::Read
    };
    for d in &chain.data {
        if d.is_write_only() != writable {
            return Err(RequestError::WrongDirection);
        }
        let len = usize::try_from(d.len()).map_err(|_| out_of_range(d))?;
        if !mem.check_range(d.addr(), len, permission) {
            return Err(out_of_range(d));
        }
        data.push((d.addr(), d.len()));
        data_len += u64::from(d.len());
    }
    let kind = match kind_of {
        Kind::In | Kind::Out => {
            if data_len % SECTOR_SIZE != 0 {
                return Err(RequestError::Unaligned(data_len));
            }
            check_range(sector, data_len / SECTOR_SIZE, capacity)?;
            if kind_of == Kind::In {
                RequestKind::In
            } else {
                RequestKind::Out
            }
        }
        Kind::Flush => RequestKind::Flush,
        Kind::GetId => RequestKind::GetId,
        Kind::Discard => RequestKind::Discard(discard_ranges(mem, &data, data_len, capacity)?),
    };
    Ok(Request {
        kind,
        sector,
        data,
        data_len,
    })
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    In,
    Out,
    Flush,
    GetId,
    Discard,
}

fn out_of_range(d: &Descriptor) -> RequestError {
    RequestError::BufferOutOfRange {
        addr: d.addr().0,
        len: d.len(),
    }
}

fn read_header<T: vm_memory::ByteValued>(
    mem: &GuestMemoryMmap,
    base: GuestAddress,
    offset: u64,
) -> Result<T, RequestError> {
    let addr = base
        .0
        .checked_add(offset)
        .ok_or(RequestError::HeaderOutOfRange(base.0))?;
    mem.read_obj(GuestAddress(addr))
        .map_err(|_| RequestError::HeaderOutOfRange(base.0))
}

fn check_range(sector: u64, count: u64, capacity: u64) -> Result<(), RequestError> {
    match sector.checked_add(count) {
        Some(end) if end <= capacity => Ok(()),
        _ => Err(RequestError::BeyondCapacity {
            sector,
            count,
            capacity,
        }),
    }
}

/// The discard segments, copied out of guest memory (they may straddle descriptors).
fn discard_ranges(
    mem: &GuestMemoryMmap,
    data: &[(GuestAddress, u32)],
    data_len: u64,
    capacity: u64,
) -> Result<Vec<(u64, u32)>, RequestError> {
    let segments = data_len / DISCARD_SEGMENT_LEN;
    if data_len % DISCARD_SEGMENT_LEN != 0 || segments == 0 || segments > u64::from(MAX_DISCARD_SEG)
    {
        return Err(RequestError::BadDiscardList(data_len));
    }
    // Bounded by MAX_DISCARD_SEG * 16 bytes just above.
    let mut bytes = vec![0u8; data_len as usize];
    let mut at = 0usize;
    for &(addr, len) in data {
        let len = len as usize;
        mem.read_slice(&mut bytes[at..at + len], addr)
            .map_err(|_| RequestError::BufferOutOfRange {
                addr: addr.0,
                len: len as u32,
            })?;
        at += len;
    }
    let mut ranges = Vec::with_capacity(segments as usize);
    for seg in bytes.chunks_exact(DISCARD_SEGMENT_LEN as usize) {
        let sector = u64::from_le_bytes(le_bytes(&seg[0..8]));
        let count = u32::from_le_bytes(le_bytes(&seg[8..12]));
        let flags = u32::from_le_bytes(le_bytes(&seg[12..16]));
        // The only flag is UNMAP, defined for WRITE_ZEROES; a discard carrying it is
        // refused with UNSUPP (5.2.6.2).
        if flags != 0 {
            return Err(RequestError::DiscardFlags(flags));
        }
        if count > MAX_DISCARD_SECTORS {
            return Err(RequestError::DiscardTooLong(count));
        }
        check_range(sector, u64::from(count), capacity)?;
        ranges.push((sector, count));
    }
    Ok(ranges)
}

fn le_bytes<const N: usize>(s: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&s[..N]);
    out
}
