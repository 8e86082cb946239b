//! Pages the guest says it does not need (a balloon's inflated pages, free pages it
//! reports): their contents are forgotten here and locally, so they are never written back
//! and a later touch gets a zero page without a remote fetch.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Weak;

use super::pages::{BUSY, DIRTY, DROPPING, HOT, REFERENCED, REMOTE, RESIDENT};
use super::{adjacent_runs, RamExtError, Shared};

/// A handle on a running engine for discarding guest pages; it does nothing once the
/// engine is gone.
#[derive(Clone)]
pub struct PageDiscarder {
    pub(super) shared: Weak<Shared>,
}

/// What a discard did, in pages.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Discarded {
    /// Resident pages dropped from the VMM's memory (a remote copy, if any, forgotten too).
    pub dropped: u64,
    /// Pages not resident whose remote copy is forgotten (and so never fetched again).
    pub forgotten: u64,
    /// Pages an eviction was working on, left to it.
    pub skipped: u64,
}

impl PageDiscarder {
    /// Whether host address `addr` is guest RAM of the (still running) engine.
    pub fn covers(&self, addr: usize) -> bool {
        self.shared
            .upgrade()
            .is_some_and(|s| s.page_of(addr).is_some())
    }

    /// Discards every whole page of guest RAM in `host_addr..host_addr + len` (parts
    /// outside the engine's ranges are ignored). The pages read as zero afterwards. A
    /// page an eviction is working on is skipped: the eviction finishes as it would have.
    pub fn discard(&self, host_addr: usize, len: usize) -> Result<Discarded, RamExtError> {
        let Some(shared) = self.shared.upgrade() else {
            return Ok(Discarded::default());
        };
        let ps = shared.page_size;
        let first = host_addr.div_ceil(ps) * ps;
        let end = (host_addr + len) / ps * ps;
        let pages: Vec<(usize, usize)> = (first..end)
            .step_by(ps)
            .filter_map(|a| shared.page_of(a).map(|p| (a, p)))
            .collect();
        let mut done = Discarded::default();
        // Under the lock throughout, so no fault or eviction sees a page half discarded: a
        // write-protect fault waiting for the lock then finds the page absent and retries as
        // a missing fault, which maps a zero page.
        let mut table = shared.lock();
        let mut drop_list = Vec::new();
        for &(addr, p) in &pages {
            let f = table.get(p);
            if f & (BUSY | DROPPING) != 0 {
                done.skipped += 1;
            } else if f & RESIDENT != 0 {
                drop_list.push((addr, p));
            } else if f & REMOTE != 0 {
                table.update(p, 0, REMOTE | DIRTY | REFERENCED | HOT);
                done.forgotten += 1;
            }
        }
        let runs = adjacent_runs(drop_list.len(), |i| {
            drop_list[i].0 == drop_list[i - 1].0 + ps
                && shared.same_range(drop_list[i - 1].1, drop_list[i].1)
        });
        let mut result = Ok(());
        for run in runs {
            let (addr, _) = drop_list[run.start];
            // SAFETY: the run is guest RAM registered with this engine, mapped while it
            // lives; the guest gave these pages up, and a later touch faults in a zero page.
            let rc = unsafe {
                libc::madvise(
                    addr as *mut libc::c_void,
                    run.len() * ps,
                    libc::MADV_DONTNEED,
                )
            };
            if rc != 0 {
                result = Err(RamExtError::Io {
                    what: "drop discarded guest pages",
                    source: std::io::Error::last_os_error(),
                });
                continue;
            }
            for &(_, p) in &drop_list[run] {
                table.update(p, 0, RESIDENT | REMOTE | DIRTY | REFERENCED | HOT);
                done.dropped += 1;
            }
        }
        drop(table);
        shared
            .counters
            .discarded_pages
            .fetch_add(done.dropped + done.forgotten, Relaxed);
        shared.changed.notify_all();
        result.map(|()| done)
    }
}
