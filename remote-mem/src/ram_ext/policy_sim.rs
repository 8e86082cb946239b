//! How good is the engine's view of page accesses? Replays a page-access trace through
//! resident-set policies with the same budget and counts misses (remote faults):
//! - [`Policy::Lru`]: an oracle LRU that sees every access;
//! - [`Policy::EngineClock`]: CLOCK over what the engine sees through userfaultfd: a reference
//!   when a page is filled (its fault) and when a clean, write-protected page is first written,
//!   and one more pass for a page that faulted back within a budget's worth of evictions (its
//!   refault distance); reads of resident pages and further writes to dirty pages are invisible;
//! - [`Policy::Fifo`]: no access information at all (eviction in fill order).
//!
//! The gap between EngineClock and Lru is what the missing read information costs; the gap
//! between Fifo and EngineClock is what the write-protect and fault information buys.

use std::collections::{BTreeSet, VecDeque};

/// One access of a trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Access {
    /// Page number.
    pub page: u32,
    /// A write (else a read).
    pub write: bool,
}

/// A resident-set policy to replay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// Least recently used, seeing every access.
    Lru,
    /// The engine's CLOCK with userfaultfd-visible references only.
    EngineClock,
    /// First in, first out.
    Fifo,
}

/// Misses of `policy` on `trace` over `pages` pages with at most `budget` resident.
pub fn misses(policy: Policy, trace: &[Access], pages: usize, budget: usize) -> u64 {
    let budget = budget.max(1);
    match policy {
        Policy::Lru => lru(trace, pages, budget),
        Policy::EngineClock => engine_clock(trace, pages, budget),
        Policy::Fifo => fifo(trace, pages, budget),
    }
}

fn lru(trace: &[Access], pages: usize, budget: usize) -> u64 {
    let mut last_use = vec![u64::MAX; pages];
    let mut order = BTreeSet::new();
    let mut misses = 0;
    for (t, a) in trace.iter().enumerate() {
        let p = a.page as usize % pages;
        let t = t as u64;
        if last_use[p] == u64::MAX {
            misses += 1;
            if order.len() >= budget {
                if let Some((_, victim)) = order.pop_first() {
                    last_use[victim] = u64::MAX;
                }
            }
        } else {
            order.remove(&(last_use[p], p));
        }
        last_use[p] = t;
        order.insert((t, p));
    }
    misses
}

fn engine_clock(trace: &[Access], pages: usize, budget: usize) -> u64 {
    const RESIDENT: u8 = 1;
    const REFERENCED: u8 = 2;
    const PROTECTED: u8 = 4;
    const HOT: u8 = 8;
    let mut flags = vec![0u8; pages];
    // As the engine: a page back within `budget` evictions of its eviction is marked hot.
    let mut evicted_at = vec![u64::MAX; pages];
    let mut evictions = 0u64;
    let mut resident = 0;
    let mut hand = 0;
    let mut misses = 0;
    for a in trace {
        let p = a.page as usize % pages;
        let f = flags[p];
        if f & RESIDENT != 0 {
            if a.write && f & PROTECTED != 0 {
                // The write-protect fault: a reference, and the page is dirty from now on.
                flags[p] = (f | REFERENCED) & !PROTECTED;
            }
            continue;
        }
        misses += 1;
        while resident >= budget {
            let v = flags[hand];
            if v & RESIDENT != 0 {
                if v & REFERENCED != 0 {
                    flags[hand] = v & !REFERENCED;
                } else if v & HOT != 0 {
                    flags[hand] = v & !HOT;
                } else {
                    flags[hand] = 0;
                    resident -= 1;
                    evicted_at[hand] = evictions;
                    evictions += 1;
                }
            }
            hand = (hand + 1) % pages;
        }
        let hot = match evicted_at[p] {
            u64::MAX => 0,
            at if evictions - at <= budget as u64 => HOT,
            _ => 0,
        };
        // The missing-page fault: a reference; read faults map the page write-protected.
        flags[p] = RESIDENT | REFERENCED | hot | if a.write { 0 } else { PROTECTED };
        resident += 1;
    }
    misses
}

fn fifo(trace: &[Access], pages: usize, budget: usize) -> u64 {
    let mut resident = vec![false; pages];
    let mut queue = VecDeque::new();
    let mut misses = 0;
    for a in trace {
        let p = a.page as usize % pages;
        if resident[p] {
            continue;
        }
        misses += 1;
        if queue.len() >= budget {
            if let Some(v) = queue.pop_front() {
                resident[v] = false;
            }
        }
        resident[p] = true;
        queue.push_back(p);
    }
    misses
}

/// Seeded synthetic traces shaped like common guest workloads.
pub mod traces {
    use super::Access;

    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n.max(1)
        }
    }

    /// 90% of accesses go to a hot tenth of the pages (scattered), 30% of accesses write.
    pub fn hot_cold(pages: u32, len: usize, seed: u64) -> Vec<Access> {
        let mut r = Rng(seed | 1);
        let hot = (pages / 10).max(1);
        (0..len)
            .map(|_| {
                let page = if r.below(10) < 9 {
                    // Hot pages spread over the range: every tenth page.
                    (r.below(u64::from(hot)) as u32 * 10) % pages
                } else {
                    r.below(u64::from(pages)) as u32
                };
                Access {
                    page,
                    write: r.below(10) < 3,
                }
            })
            .collect()
    }

    /// A read-mostly hot set (a cache or a code working set) with a sequential scan of the
    /// whole range running through it (a batch job): 1 in 4 accesses is the scan.
    pub fn hot_reads_with_scan(pages: u32, len: usize, seed: u64) -> Vec<Access> {
        let mut r = Rng(seed | 1);
        let hot = (pages / 8).max(1);
        let mut scan = 0u32;
        (0..len)
            .map(|_| {
                if r.below(4) == 0 {
                    scan = (scan + 1) % pages;
                    Access {
                        page: scan,
                        write: true,
                    }
                } else {
                    Access {
                        page: r.below(u64::from(hot)) as u32,
                        write: r.below(20) == 0,
                    }
                }
            })
            .collect()
    }

    /// Loops over all pages in order, reading (the fill-and-verify test guest's pattern).
    pub fn scan(pages: u32, len: usize) -> Vec<Access> {
        (0..len)
            .map(|i| Access {
                page: (i % pages as usize) as u32,
                write: false,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(page: u32) -> Access {
        Access { page, write: false }
    }

    #[test]
    fn lru_keeps_the_recent_pages() {
        // Budget 2: 0 1 0 2 -> 2 evicts 1 (least recent), so 0 hits and 1 misses again.
        let t = [a(0), a(1), a(0), a(2), a(0), a(1)];
        assert_eq!(misses(Policy::Lru, &t, 4, 2), 4);
        // FIFO evicted 0 (first in) at the 2: 0 misses again, which pushes out 1.
        assert_eq!(misses(Policy::Fifo, &t, 4, 2), 5);
    }

    #[test]
    fn a_scan_larger_than_the_budget_misses_every_time_under_every_policy() {
        let t = traces::scan(100, 1000);
        for p in [Policy::Lru, Policy::EngineClock, Policy::Fifo] {
            assert_eq!(misses(p, &t, 100, 50), 1000, "{p:?}");
        }
        // Everything fits: only the first touch of each page misses.
        assert_eq!(misses(Policy::EngineClock, &t, 100, 100), 100);
    }

    #[test]
    fn the_engine_view_sits_between_fifo_and_the_oracle_on_skewed_writes() {
        let t = traces::hot_cold(4096, 200_000, 7);
        let lru = misses(Policy::Lru, &t, 4096, 1024);
        let clock = misses(Policy::EngineClock, &t, 4096, 1024);
        let fifo = misses(Policy::Fifo, &t, 4096, 1024);
        assert!(
            lru <= clock && clock <= fifo,
            "lru {lru} clock {clock} fifo {fifo}"
        );
    }
}
