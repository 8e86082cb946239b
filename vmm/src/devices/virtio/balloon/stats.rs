//! The balloon's statistics buffer (5.5.6.3): the guest fills a device-readable buffer with
//! 10-byte entries (le16 tag, le64 value) and the device returns it when it wants new ones.

use serde::{Deserialize, Serialize};

/// Size of one `struct virtio_balloon_stat`.
pub const ENTRY_LEN: usize = 10;
/// The most entries read from one buffer (Linux sends 10 to 16).
pub const MAX_ENTRIES: usize = 64;

/// The guest's memory statistics, in bytes or event counts as the spec defines each tag;
/// `None` for a tag the guest did not report.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BalloonStats {
    /// Bytes swapped in (tag 0).
    pub swap_in: Option<u64>,
    /// Bytes swapped out (tag 1).
    pub swap_out: Option<u64>,
    /// Major page faults (tag 2).
    pub major_faults: Option<u64>,
    /// Minor page faults (tag 3).
    pub minor_faults: Option<u64>,
    /// Memory not in use at all, bytes (tag 4).
    pub free_memory: Option<u64>,
    /// Memory the guest can use, bytes (tag 5).
    pub total_memory: Option<u64>,
    /// Memory available for new work without swapping, bytes (tag 6).
    pub available_memory: Option<u64>,
    /// Memory in the page cache that can be reclaimed, bytes (tag 7).
    pub disk_caches: Option<u64>,
    /// Successful hugetlb page allocations (tag 8).
    pub hugetlb_allocations: Option<u64>,
    /// Failed hugetlb page allocations (tag 9).
    pub hugetlb_failures: Option<u64>,
}

impl BalloonStats {
    /// Parses `raw` (whole entries; a trailing partial entry is ignored). Unknown tags are
    /// skipped, a repeated tag keeps its last value.
    pub fn parse(raw: &[u8]) -> BalloonStats {
        let mut s = BalloonStats::default();
        for e in raw.chunks_exact(ENTRY_LEN).take(MAX_ENTRIES) {
            let tag = u16::from_le_bytes([e[0], e[1]]);
            let mut v = [0u8; 8];
            v.copy_from_slice(&e[2..10]);
            let value = Some(u64::from_le_bytes(v));
            let field = match tag {
                0 => &mut s.swap_in,
                1 => &mut s.swap_out,
                2 => &mut s.major_faults,
                3 => &mut s.minor_faults,
                4 => &mut s.free_memory,
                5 => &mut s.total_memory,
                6 => &mut s.available_memory,
                7 => &mut s.disk_caches,
                8 => &mut s.hugetlb_allocations,
                9 => &mut s.hugetlb_failures,
                _ => continue,
            };
            *field = value;
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(tag: u16, v: u64) -> Vec<u8> {
        let mut e = tag.to_le_bytes().to_vec();
        e.extend_from_slice(&v.to_le_bytes());
        e
    }

    #[test]
    fn known_tags_are_read_and_the_rest_skipped() {
        let mut raw = entry(4, 1 << 20);
        raw.extend(entry(5, 64 << 20));
        raw.extend(entry(99, 7));
        raw.extend(entry(2, 3));
        raw.extend_from_slice(&[6, 0, 1]); // partial entry
        let s = BalloonStats::parse(&raw);
        assert_eq!(s.free_memory, Some(1 << 20));
        assert_eq!(s.total_memory, Some(64 << 20));
        assert_eq!(s.major_faults, Some(3));
        assert_eq!(s.available_memory, None);
        assert_eq!(BalloonStats::parse(&[]), BalloonStats::default());
    }
}
