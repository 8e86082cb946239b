//! What the engine knows of every guest page, and the CLOCK that picks cold ones.
//!
//! Per page: is it resident (mapped in the VMM process), is it dirty (its bytes differ from
//! its backing copy), does the remote copy exist (else the backing is zeros), was it
//! referenced since the clock hand last passed, and is an eviction working on it.
//!
//! Access information comes from userfaultfd: every page the engine maps is write-protected
//! while clean, so the first write after a fill or a write-back raises a write-protect fault
//! (exact per-page dirty tracking, and a reference), and every fill is a reference. Reads of
//! a resident page are not seen; see `docs/ram-ext.md` for why this source was chosen and how
//! close it gets to an LRU that sees everything.

/// The page is mapped in the VMM process.
pub const RESIDENT: u8 = 1 << 0;
/// The page's bytes differ from its backing copy (remote, or zeros).
pub const DIRTY: u8 = 1 << 1;
/// The memory servers hold the page's backing copy; without it the backing is zeros.
pub const REMOTE: u8 = 1 << 2;
/// Filled or written since the clock hand last passed.
pub const REFERENCED: u8 = 1 << 3;
/// Picked by an eviction that has not finished.
pub const BUSY: u8 = 1 << 4;
/// Being dropped: a fault on it waits until the drop is done (see `waiting`).
pub const DROPPING: u8 = 1 << 5;
/// Faulted back soon after its eviction (refault distance under the budget): a page the guest
/// keeps using even if only by reads, which the engine cannot see. CLOCK passes it over once
/// more than a page with only REFERENCED.
pub const HOT: u8 = 1 << 6;

/// Flags of every page, the resident and remote counts, and the clock hand.
#[derive(Debug)]
pub struct PageTable {
    flags: Vec<u8>,
    resident: usize,
    remote: usize,
    hand: usize,
    /// Host addresses of faults on dropping pages, to wake once the drop is done.
    pub waiting: Vec<usize>,
    /// The eviction count when each page was last evicted, and the count now: their
    /// difference when a page faults back is its refault distance.
    evicted_at: Vec<u32>,
    evictions: u32,
}

impl PageTable {
    /// `pages` pages, none resident.
    pub fn new(pages: usize) -> Self {
        PageTable {
            flags: vec![0; pages],
            resident: 0,
            remote: 0,
            hand: 0,
            waiting: Vec::new(),
            evicted_at: vec![0; pages],
            evictions: 0,
        }
    }

    /// Number of pages.
    pub fn len(&self) -> usize {
        self.flags.len()
    }

    /// True when there are no pages.
    pub fn is_empty(&self) -> bool {
        self.flags.is_empty()
    }

    /// Flags of page `p` (0 for a page out of range).
    pub fn get(&self, p: usize) -> u8 {
        self.flags.get(p).copied().unwrap_or(0)
    }

    /// Pages mapped now.
    pub fn resident(&self) -> usize {
        self.resident
    }

    /// Pages whose backing copy is on the memory servers.
    pub fn remote(&self) -> usize {
        self.remote
    }

    /// Sets and clears flags of page `p`, keeping the counts.
    pub fn update(&mut self, p: usize, set: u8, clear: u8) {
        let Some(f) = self.flags.get_mut(p) else {
            return;
        };
        let old = *f;
        let new = (old & !clear) | set;
        *f = new;
        let was = |bit: u8| old & bit != 0;
        let is = |bit: u8| new & bit != 0;
        match (was(RESIDENT), is(RESIDENT)) {
            (false, true) => self.resident += 1,
            (true, false) => self.resident -= 1,
            _ => {}
        }
        match (was(REMOTE), is(REMOTE)) {
            (false, true) => self.remote += 1,
            (true, false) => self.remote -= 1,
            _ => {}
        }
    }

    /// Records that page `p` was evicted (for its refault distance).
    pub fn record_eviction(&mut self, p: usize) {
        if let Some(at) = self.evicted_at.get_mut(p) {
            *at = self.evictions;
            self.evictions = self.evictions.wrapping_add(1);
        }
    }

    /// Evictions since page `p` was last evicted.
    pub fn refault_distance(&self, p: usize) -> u32 {
        self.evicted_at
            .get(p)
            .map_or(u32::MAX, |at| self.evictions.wrapping_sub(*at))
    }

    /// Picks up to `max` resident pages to evict and marks them busy. CLOCK: a referenced
    /// page loses its reference and is passed over once. With `all`, references are ignored
    /// (a VM going to Sz gives up every page).
    pub fn pick_victims(&mut self, max: usize, all: bool) -> Vec<usize> {
        let n = self.flags.len();
        let mut victims = Vec::with_capacity(max);
        if n == 0 {
            return victims;
        }
        // Two full turns: the first may only clear references.
        for _ in 0..2 * n {
            if victims.len() >= max {
                break;
            }
            let p = self.hand;
            self.hand = (self.hand + 1) % n;
            let f = self.flags[p];
            if f & RESIDENT == 0 || f & BUSY != 0 {
                continue;
            }
            if f & REFERENCED != 0 && !all {
                self.flags[p] &= !REFERENCED;
                continue;
            }
            if f & HOT != 0 && !all {
                self.flags[p] &= !HOT;
                continue;
            }
            self.flags[p] |= BUSY;
            victims.push(p);
        }
        victims
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_follow_the_flags() {
        let mut t = PageTable::new(4);
        t.update(0, RESIDENT | DIRTY, 0);
        t.update(1, RESIDENT | REMOTE, 0);
        t.update(1, RESIDENT, 0); // no change
        assert_eq!((t.resident(), t.remote()), (2, 1));
        t.update(1, 0, RESIDENT);
        assert_eq!((t.resident(), t.remote()), (1, 1));
        t.update(1, 0, REMOTE);
        t.update(9, RESIDENT, 0); // out of range: ignored
        assert_eq!((t.resident(), t.remote()), (1, 0));
        assert_eq!(t.get(0), RESIDENT | DIRTY);
    }

    #[test]
    fn clock_gives_referenced_pages_a_second_chance() {
        let mut t = PageTable::new(4);
        for p in 0..4 {
            t.update(p, RESIDENT | REFERENCED, 0);
        }
        t.update(2, 0, REFERENCED);
        // Page 2 is the only cold one; the others lose their reference on the way.
        assert_eq!(t.pick_victims(1, false), vec![2]);
        assert_eq!(t.get(2) & BUSY, BUSY);
        assert_eq!(t.get(0) & REFERENCED, 0);
        // Page 3 still had its reference: it is passed over once more. Busy page 2 is never
        // picked twice.
        assert_eq!(t.pick_victims(8, false), vec![0, 1, 3]);
        assert!(t.pick_victims(8, false).is_empty());
    }

    #[test]
    fn hot_pages_get_one_more_pass_and_refault_distance_counts_evictions() {
        let mut t = PageTable::new(3);
        for p in 0..3 {
            t.update(p, RESIDENT, 0);
        }
        t.update(1, HOT | REFERENCED, 0);
        // Page 1 needs two passes of the hand before it goes.
        assert_eq!(t.pick_victims(2, false), vec![0, 2]);
        assert_eq!(t.pick_victims(1, false), vec![1]);
        t.record_eviction(0);
        t.record_eviction(2);
        t.record_eviction(1);
        assert_eq!(t.refault_distance(0), 3);
        assert_eq!(t.refault_distance(1), 1);
        assert_eq!(t.refault_distance(9), u32::MAX);
    }

    #[test]
    fn all_ignores_references_and_skips_absent_pages() {
        let mut t = PageTable::new(3);
        t.update(0, RESIDENT | REFERENCED, 0);
        t.update(2, RESIDENT | REFERENCED, 0);
        assert_eq!(t.pick_victims(8, true), vec![0, 2]);
    }
}
