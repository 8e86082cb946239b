//! What the guest gives up or takes back, read from its chains. Everything here is
//! guest-controlled: chains are checked with [`crate::devices::virtio::chain`], and page
//! numbers outside guest memory are refused, never acted on.
//!
//! - Inflate and deflate chains carry arrays of le32 page frame numbers (4 KiB pages) in
//!   device-readable buffers (5.5.6.1).
//! - A free page report is a chain whose buffers *are* the free pages (Linux posts them
//!   device-writable; either direction is accepted, nothing is written).

use std::ops::Range;

use virtio_queue::desc::split::Descriptor;
use vm_memory::{GuestAddress, GuestMemory, Permissions};

use super::BALLOON_PAGE_SIZE;
use crate::devices::virtio::chain::{self, ChainError};
use crate::vstate::memory::GuestMemoryMmap;

/// The most page numbers one inflate or deflate chain may carry (Linux sends 256): 64 MiB
/// of guest memory. A longer chain is dropped rather than read into an unbounded buffer.
pub const MAX_PFNS_PER_CHAIN: usize = 16384;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PagesError {
    #[error(transparent)]
    Chain(#[from] ChainError),
    #[error("page-number array of {0} bytes is over the {MAX_PFNS_PER_CHAIN}-entry limit")]
    TooLong(u64),
    #[error("an inflate or deflate chain has device-writable buffers")]
    Writable,
}

/// Guest-physical byte ranges, page aligned, sorted and merged, and how many page numbers
/// were refused for lying outside guest memory.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct PageRanges {
    pub ranges: Vec<Range<u64>>,
    pub refused: u64,
}

impl PageRanges {
    pub fn bytes(&self) -> u64 {
        self.ranges.iter().map(|r| r.end - r.start).sum()
    }
}

/// Reads an inflate or deflate chain's page numbers.
pub fn pfn_ranges(
    descs: impl Iterator<Item = Descriptor>,
    mem: &GuestMemoryMmap,
) -> Result<PageRanges, PagesError> {
    let chain = chain::check(descs, mem)?;
    if !chain.writable.is_empty() {
        return Err(PagesError::Writable);
    }
    let len = chain::total_len(&chain.readable);
    if len > (MAX_PFNS_PER_CHAIN * 4) as u64 {
        return Err(PagesError::TooLong(len));
    }
    // A trailing partial entry is ignored.
    let mut raw = vec![0u8; len as usize / 4 * 4];
    chain::read_prefix(mem, &chain.readable, &mut raw)?;
    let mut pfns: Vec<u64> = raw
        .chunks_exact(4)
        .map(|b| u64::from(u32::from_le_bytes([b[0], b[1], b[2], b[3]])))
        .collect();
    pfns.sort_unstable();
    pfns.dedup();
    let mut out = PageRanges::default();
    for pfn in pfns {
        let start = pfn * BALLOON_PAGE_SIZE;
        if !mem.check_range(
            GuestAddress(start),
            BALLOON_PAGE_SIZE as usize,
            Permissions::Write,
        ) {
            out.refused += 1;
            continue;
        }
        push_merged(&mut out.ranges, start..start + BALLOON_PAGE_SIZE);
    }
    Ok(out)
}

/// Reads a free page report: the whole balloon pages inside each buffer.
pub fn reported_ranges(
    descs: impl Iterator<Item = Descriptor>,
    mem: &GuestMemoryMmap,
) -> Result<PageRanges, PagesError> {
    let chain = chain::check(descs, mem)?;
    let mut buffers: Vec<Range<u64>> = chain
        .readable
        .iter()
        .chain(&chain.writable)
        .filter_map(|d| {
            let start = d.addr().0.div_ceil(BALLOON_PAGE_SIZE) * BALLOON_PAGE_SIZE;
            let end = (d.addr().0 + u64::from(d.len())) / BALLOON_PAGE_SIZE * BALLOON_PAGE_SIZE;
            (start < end).then_some(start..end)
        })
        .collect();
    buffers.sort_unstable_by_key(|r| r.start);
    let mut out = PageRanges::default();
    for r in buffers {
        push_merged(&mut out.ranges, r);
    }
    Ok(out)
}

/// Appends `r` to sorted `ranges`, merging it with the last one when they touch or overlap.
fn push_merged(ranges: &mut Vec<Range<u64>>, r: Range<u64>) {
    match ranges.last_mut() {
        Some(last) if r.start <= last.end => last.end = last.end.max(r.end),
        _ => ranges.push(r),
    }
}

#[cfg(test)]
mod tests {
    use virtio_bindings::virtio_ring::VRING_DESC_F_WRITE;
    use vm_memory::Bytes;

    use super::*;
    use crate::vstate::memory::create_guest_memory;

    fn write_pfns(mem: &GuestMemoryMmap, at: u64, pfns: &[u32]) -> u32 {
        let raw: Vec<u8> = pfns.iter().flat_map(|p| p.to_le_bytes()).collect();
        mem.write_slice(&raw, GuestAddress(at)).unwrap();
        raw.len() as u32
    }

    #[test]
    fn page_numbers_become_merged_ranges_and_outside_ones_are_refused() {
        let mem = create_guest_memory(16 << 20).unwrap();
        let len = write_pfns(
            &mem,
            0x1000,
            &[0x103, 0x101, 0x102, 0x200, 0x101, 0xFFFF_FFFF],
        );
        let d = Descriptor::new(0x1000, len + 2, 0, 0);
        let r = pfn_ranges([d].into_iter(), &mem).unwrap();
        assert_eq!(r.ranges, vec![0x101000..0x104000, 0x200000..0x201000]);
        assert_eq!(r.refused, 1);
        assert_eq!(r.bytes(), 4 * 4096);
        let w = Descriptor::new(0x1000, len, VRING_DESC_F_WRITE as u16, 0);
        assert_eq!(
            pfn_ranges([w].into_iter(), &mem).unwrap_err(),
            PagesError::Writable
        );
        let huge = Descriptor::new(0x1000, 1 << 20, 0, 0);
        assert!(matches!(
            pfn_ranges([huge].into_iter(), &mem).unwrap_err(),
            PagesError::TooLong(_)
        ));
    }

    #[test]
    fn reports_keep_only_whole_pages() {
        let mem = create_guest_memory(16 << 20).unwrap();
        let w = VRING_DESC_F_WRITE as u16;
        let descs = [
            Descriptor::new(0x400000, 0x200000, w | 1, 1),
            Descriptor::new(0x200800, 0x1000, w, 0),
        ];
        let r = reported_ranges(descs.into_iter(), &mem).unwrap();
        // The second buffer holds no whole page.
        assert_eq!(r.ranges, vec![0x400000..0x600000]);
    }
}
