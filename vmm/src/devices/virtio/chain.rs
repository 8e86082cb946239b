//! Checking a descriptor chain before a device acts on it. Everything in a chain is
//! guest-controlled: it must end (no loop, not longer than the queue), put its
//! device-readable buffers before its device-writable ones (2.7.4.2), and every buffer must
//! lie inside guest memory. A chain that fails is returned unanswered, never a panic.

use virtio_queue::desc::split::Descriptor;
use vm_memory::{Bytes, GuestAddress, GuestMemory, Permissions};

use crate::vstate::memory::GuestMemoryMmap;

/// Why a chain is unusable.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ChainError {
    /// The head is outside the descriptor table.
    #[error("empty descriptor chain")]
    Empty,
    /// The last descriptor still points to a next one: a loop, a chain longer than the
    /// queue, 4 GiB of buffers, or a next index the table cannot hold.
    #[error("descriptor chain does not end (loop, longer than the queue, or overflowing)")]
    Unterminated,
    /// Device-readable buffers must all come before device-writable ones.
    #[error("device-readable descriptor after a device-writable one")]
    Order,
    #[error("buffer {addr:#x}+{len:#x} is outside guest memory")]
    OutOfRange { addr: u64, len: u32 },
}

/// A chain that passed [`check`]: its device-readable buffers, then its device-writable
/// ones, each inside guest memory.
#[derive(Debug, Default)]
pub struct CheckedChain {
    pub readable: Vec<Descriptor>,
    pub writable: Vec<Descriptor>,
}

/// Checks a chain's shape and that every buffer is in guest memory.
pub fn check(
    descs: impl Iterator<Item = Descriptor>,
    mem: &GuestMemoryMmap,
) -> Result<CheckedChain, ChainError> {
    let descs: Vec<Descriptor> = descs.collect();
    let last = descs.last().ok_or(ChainError::Empty)?;
    // virtio_queue's iterator stops silently on a loop, an out-of-table index or 4 GiB of
    // buffers; the last descriptor it returned then still has NEXT set.
    if last.has_next() {
        return Err(ChainError::Unterminated);
    }
    let split = descs
        .iter()
        .position(Descriptor::is_write_only)
        .unwrap_or(descs.len());
    let mut readable = descs;
    let writable = readable.split_off(split);
    if writable.iter().any(|d| !d.is_write_only()) {
        return Err(ChainError::Order);
    }
    for (d, perm) in readable
        .iter()
        .map(|d| (d, Permissions::Read))
        .chain(writable.iter().map(|d| (d, Permissions::Write)))
    {
        if !mem.check_range(d.addr(), d.len() as usize, perm) {
            return Err(out_of_range(d));
        }
    }
    Ok(CheckedChain { readable, writable })
}

/// Total length of `descs`.
pub fn total_len(descs: &[Descriptor]) -> u64 {
    descs.iter().map(|d| u64::from(d.len())).sum()
}

/// Reads the first `out.len()` bytes (or fewer, if the buffers are shorter) of the
/// buffers `descs` into `out`; returns how many were read.
pub fn read_prefix(
    mem: &GuestMemoryMmap,
    descs: &[Descriptor],
    out: &mut [u8],
) -> Result<usize, ChainError> {
    let mut have = 0usize;
    for d in descs {
        if have == out.len() {
            break;
        }
        let n = (d.len() as usize).min(out.len() - have);
        mem.read_slice(&mut out[have..have + n], d.addr())
            .map_err(|_| out_of_range(d))?;
        have += n;
    }
    Ok(have)
}

/// Writes `data` over the buffers `buffers` in order, as far as they reach; returns the
/// bytes written.
pub fn write_spread(
    mem: &GuestMemoryMmap,
    buffers: &[(GuestAddress, u32)],
    data: &[u8],
) -> Result<u32, ChainError> {
    let mut at = 0usize;
    for &(addr, len) in buffers {
        if at == data.len() {
            break;
        }
        let n = (len as usize).min(data.len() - at);
        mem.write_slice(&data[at..at + n], addr)
            .map_err(|_| ChainError::OutOfRange { addr: addr.0, len })?;
        at += n;
    }
    Ok(at as u32)
}

fn out_of_range(d: &Descriptor) -> ChainError {
    ChainError::OutOfRange {
        addr: d.addr().0,
        len: d.len(),
    }
}

#[cfg(test)]
mod tests {
    use virtio_bindings::virtio_ring::{VRING_DESC_F_NEXT, VRING_DESC_F_WRITE};

    use super::*;
    use crate::vstate::memory::create_guest_memory;

    fn desc(addr: u64, len: u32, flags: u32) -> Descriptor {
        Descriptor::new(addr, len, flags as u16, 0)
    }

    #[test]
    fn splits_readable_and_writable_and_refuses_bad_shapes() {
        let mem = create_guest_memory(1 << 20).unwrap();
        let w = VRING_DESC_F_WRITE;
        let ok = check([desc(0x1000, 16, 0), desc(0x2000, 8, w)].into_iter(), &mem).unwrap();
        assert_eq!((ok.readable.len(), ok.writable.len()), (1, 1));
        assert_eq!(total_len(&ok.readable), 16);
        assert_eq!(
            check(std::iter::empty(), &mem).unwrap_err(),
            ChainError::Empty
        );
        assert_eq!(
            check([desc(0x1000, 8, VRING_DESC_F_NEXT)].into_iter(), &mem).unwrap_err(),
            ChainError::Unterminated
        );
        assert_eq!(
            check([desc(0x1000, 8, w), desc(0x2000, 8, 0)].into_iter(), &mem).unwrap_err(),
            ChainError::Order
        );
        assert_eq!(
            check([desc((1 << 20) - 4, 8, 0)].into_iter(), &mem).unwrap_err(),
            ChainError::OutOfRange {
                addr: (1 << 20) - 4,
                len: 8
            }
        );
    }

    #[test]
    fn reads_and_writes_across_buffers() {
        let mem = create_guest_memory(1 << 20).unwrap();
        let buffers = [(GuestAddress(0x1000), 3), (GuestAddress(0x2000), 10)];
        assert_eq!(write_spread(&mem, &buffers, b"abcdefg").unwrap(), 7);
        let descs = [desc(0x1000, 3, 0), desc(0x2000, 10, 0)];
        let mut out = [0u8; 5];
        assert_eq!(read_prefix(&mem, &descs, &mut out).unwrap(), 5);
        assert_eq!(&out, b"abcde");
        let mut long = [0u8; 20];
        assert_eq!(read_prefix(&mem, &descs, &mut long).unwrap(), 13);
    }
}
