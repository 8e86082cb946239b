//! Turning a descriptor chain into a virtio-mem request. Everything here is guest-controlled:
//! the chain is checked (terminated, device-readable buffers before device-writable ones,
//! every buffer inside guest memory, room for the request and the response) before the
//! device acts on it, and a chain that fails is dropped, never a panic.
//!
//! Layout (what Linux sends): `struct virtio_mem_req` (24 bytes: le16 type, 6 bytes of
//! padding, le64 addr, le16 nb_blocks, 6 bytes of padding) in device-readable buffers, then
//! room for `struct virtio_mem_resp` (10 bytes: le16 type, 6 bytes of padding, le16 state)
//! in device-writable ones. Either may be split over several descriptors.

use virtio_queue::desc::split::Descriptor;
use vm_memory::{Bytes, GuestAddress, GuestMemory, Permissions};

use super::{REQ_PLUG, REQ_STATE, REQ_UNPLUG, REQ_UNPLUG_ALL};
use crate::vstate::memory::GuestMemoryMmap;

/// `sizeof(struct virtio_mem_req)`.
pub const REQUEST_LEN: usize = 24;
/// `sizeof(struct virtio_mem_resp)`.
pub const RESPONSE_LEN: usize = 10;

/// Why a chain is returned unanswered (used length 0).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DropReason {
    /// The head is outside the descriptor table.
    #[error("empty descriptor chain")]
    Empty,
    /// The last descriptor still points to a next one: a loop, a chain longer than the
    /// queue, 4 GiB of buffers, or a next index the table cannot hold.
    #[error("descriptor chain does not end (loop, longer than the queue, or overflowing)")]
    Unterminated,
    /// Device-readable buffers must all come before device-writable ones (2.7.4.2).
    #[error("device-readable descriptor after a device-writable one")]
    Order,
    #[error("request is {0} bytes, {REQUEST_LEN} needed")]
    ShortRequest(u64),
    #[error("response room is {0} bytes, {RESPONSE_LEN} needed")]
    ShortResponse(u64),
    #[error("buffer {addr:#x}+{len:#x} is outside guest memory")]
    OutOfRange { addr: u64, len: u32 },
}

/// A request's block range: `nb_blocks` blocks from guest-physical `addr`. Not checked
/// against the region here; the device does that.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockRange {
    pub addr: u64,
    pub nb_blocks: u16,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request {
    Plug(BlockRange),
    Unplug(BlockRange),
    UnplugAll,
    State(BlockRange),
    /// A type this device does not know: answered with ERROR.
    Unknown(u16),
}

/// A request and where its response goes.
#[derive(Debug)]
pub struct Parsed {
    pub request: Request,
    /// The device-writable buffers, in order, at least [`RESPONSE_LEN`] bytes together.
    pub response: Vec<(GuestAddress, u32)>,
}

/// Checks a chain and reads its request.
pub fn parse(
    descs: impl Iterator<Item = Descriptor>,
    mem: &GuestMemoryMmap,
) -> Result<Parsed, DropReason> {
    let descs: Vec<Descriptor> = descs.collect();
    let last = descs.last().ok_or(DropReason::Empty)?;
    // virtio_queue's iterator stops silently on a loop, an out-of-table index or 4 GiB of
    // buffers; the last descriptor it returned then still has NEXT set.
    if last.has_next() {
        return Err(DropReason::Unterminated);
    }
    let split = descs
        .iter()
        .position(Descriptor::is_write_only)
        .unwrap_or(descs.len());
    let (readable, writable) = descs.split_at(split);
    if writable.iter().any(|d| !d.is_write_only()) {
        return Err(DropReason::Order);
    }
    let mut raw = [0u8; REQUEST_LEN];
    let mut have = 0usize;
    for d in readable {
        if have == REQUEST_LEN {
            break;
        }
        let n = (d.len() as usize).min(REQUEST_LEN - have);
        mem.read_slice(&mut raw[have..have + n], d.addr())
            .map_err(|_| out_of_range(d))?;
        have += n;
    }
    if have < REQUEST_LEN {
        return Err(DropReason::ShortRequest(have as u64));
    }
    let mut response = Vec::with_capacity(writable.len());
    let mut room = 0u64;
    for d in writable {
        if !mem.check_range(d.addr(), d.len() as usize, Permissions::Write) {
            return Err(out_of_range(d));
        }
        response.push((d.addr(), d.len()));
        room += u64::from(d.len());
    }
    if room < RESPONSE_LEN as u64 {
        return Err(DropReason::ShortResponse(room));
    }
    Ok(Parsed {
        request: decode(&raw),
        response,
    })
}

fn decode(raw: &[u8; REQUEST_LEN]) -> Request {
    let kind = u16::from_le_bytes([raw[0], raw[1]]);
    let mut addr = [0u8; 8];
    addr.copy_from_slice(&raw[8..16]);
    let range = BlockRange {
        addr: u64::from_le_bytes(addr),
        nb_blocks: u16::from_le_bytes([raw[16], raw[17]]),
    };
    match kind {
        REQ_PLUG => Request::Plug(range),
        REQ_UNPLUG => Request::Unplug(range),
        REQ_UNPLUG_ALL => Request::UnplugAll,
        REQ_STATE => Request::State(range),
        other => Request::Unknown(other),
    }
}

/// `struct virtio_mem_resp` for `kind` (and, for STATE, `state`).
pub fn encode_response(kind: u16, state: u16) -> [u8; RESPONSE_LEN] {
    let mut out = [0u8; RESPONSE_LEN];
    out[0..2].copy_from_slice(&kind.to_le_bytes());
    out[8..10].copy_from_slice(&state.to_le_bytes());
    out
}

/// Writes `resp` over the response buffers; returns the used length.
pub fn write_response(
    mem: &GuestMemoryMmap,
    buffers: &[(GuestAddress, u32)],
    resp: &[u8; RESPONSE_LEN],
) -> Result<u32, DropReason> {
    let mut at = 0usize;
    for &(addr, len) in buffers {
        if at == RESPONSE_LEN {
            break;
        }
        let n = (len as usize).min(RESPONSE_LEN - at);
        mem.write_slice(&resp[at..at + n], addr)
            .map_err(|_| DropReason::OutOfRange { addr: addr.0, len })?;
        at += n;
    }
    Ok(at as u32)
}

fn out_of_range(d: &Descriptor) -> DropReason {
    DropReason::OutOfRange {
        addr: d.addr().0,
        len: d.len(),
    }
}
