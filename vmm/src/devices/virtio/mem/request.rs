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
use vm_memory::GuestAddress;

use super::{REQ_PLUG, REQ_STATE, REQ_UNPLUG, REQ_UNPLUG_ALL};
use crate::devices::virtio::chain::{self, ChainError};
use crate::vstate::memory::GuestMemoryMmap;

/// `sizeof(struct virtio_mem_req)`.
pub const REQUEST_LEN: usize = 24;
/// `sizeof(struct virtio_mem_resp)`.
pub const RESPONSE_LEN: usize = 10;

/// Why a chain is returned unanswered (used length 0).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DropReason {
    #[error(transparent)]
    Chain(#[from] ChainError),
    #[error("request is {0} bytes, {REQUEST_LEN} needed")]
    ShortRequest(u64),
    #[error("response room is {0} bytes, {RESPONSE_LEN} needed")]
    ShortResponse(u64),
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
    let chain = chain::check(descs, mem)?;
    let mut raw = [0u8; REQUEST_LEN];
    let have = chain::read_prefix(mem, &chain.readable, &mut raw)?;
    if have < REQUEST_LEN {
        return Err(DropReason::ShortRequest(have as u64));
    }
    let room = chain::total_len(&chain.writable);
    if room < RESPONSE_LEN as u64 {
        return Err(DropReason::ShortResponse(room));
    }
    Ok(Parsed {
        request: decode(&raw),
        response: chain.writable.iter().map(|d| (d.addr(), d.len())).collect(),
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
    Ok(chain::write_spread(mem, buffers, resp)?)
}
