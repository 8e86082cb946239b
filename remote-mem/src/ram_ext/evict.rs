//! The eviction thread: keeps the resident set within the budget (or empties it for a
//! drain) by writing cold dirty pages to the memory servers and dropping cold pages.
//!
//! A dirty victim loses its DIRTY flag under the page lock and is then write-protected
//! before its bytes are copied. A guest write before the protection is in the copy; one
//! after it raises a write-protect fault, which sets DIRTY again, and the page is kept.
//! Victims still clean are marked DROPPING under the lock and then dropped outside it; a
//! fault on a DROPPING page waits (its protection stays) until the drop is done, then finds
//! the page absent and faults back the copy that was just written.

use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use revenant_template::pagemap::is_zero;

use super::pages::{BUSY, DIRTY, DROPPING, HOT, REFERENCED, REMOTE, RESIDENT};
use super::{adjacent_runs, Shared};

/// Pages handled per eviction round (one pipelined write batch).
const BATCH_PAGES: usize = 64;
/// Pause after a failed write-back before trying again.
const RETRY_PAUSE: Duration = Duration::from_millis(100);

pub(super) fn run(shared: &Shared) {
    let ps = shared.page_size;
    let mut buf = vec![0u8; BATCH_PAGES * ps];
    loop {
        let target = {
            let mut pages = shared.lock();
            loop {
                if shared.stop.load(Relaxed) {
                    return;
                }
                let drain = shared.drain.load(Relaxed);
                let budget = shared.budget();
                if drain && pages.resident() > 0 {
                    break 0;
                }
                if pages.resident() as u64 > budget {
                    // Evict a little below the budget, so faults do not wake us one by one.
                    break budget.saturating_sub(BATCH_PAGES as u64 / 2);
                }
                pages = shared
                    .changed
                    .wait_timeout(pages, Duration::from_millis(100))
                    .map(|(g, _)| g)
                    .unwrap_or_else(|p| p.into_inner().0);
            }
        };
        while !shared.stop.load(Relaxed) {
            let resident = shared.lock().resident() as u64;
            if resident <= target {
                break;
            }
            let want = ((resident - target) as usize).min(BATCH_PAGES);
            if !evict_round(
                shared,
                want,
                target == 0 && shared.drain.load(Relaxed),
                &mut buf,
            ) {
                break;
            }
        }
    }
}

/// What became of a victim's bytes in this round.
#[derive(Clone, Copy, PartialEq)]
enum Copy {
    /// Clean: its backing copy (remote or zeros) is already right.
    Clean,
    /// Dirty and all zero: dropped without shipping; its backing becomes zeros.
    Zero,
    /// Dirty: written to the servers from this buffer slot.
    Shipped(usize),
    /// Could not be write-protected: stays resident.
    Kept,
    /// Dirty, write-protected, not yet copied.
    Pending,
}

/// Evicts up to `want` pages. Returns false when nothing could be picked or a write-back
/// failed (the caller waits for news before trying again).
fn evict_round(shared: &Shared, want: usize, all: bool, buf: &mut [u8]) -> bool {
    let ps = shared.page_size;
    // 1. Pick victims and clear the dirty ones' DIRTY flag, then write-protect those
    //    (outside the lock: on PVM an mmu-notifier round can take milliseconds). A write
    //    before the protection lands in memory and is copied below; one after it raises a
    //    write-protect fault that sets DIRTY again, and the page is kept.
    let (victims, mut copies, dirty) = {
        let mut pages = shared.lock();
        let victims = pages.pick_victims(want, all);
        let mut copies = vec![Copy::Clean; victims.len()];
        let dirty: Vec<usize> = (0..victims.len())
            .filter(|&i| pages.get(victims[i]) & DIRTY != 0)
            .collect();
        for &i in &dirty {
            pages.update(victims[i], 0, DIRTY);
            copies[i] = Copy::Pending;
        }
        (victims, copies, dirty)
    };
    if victims.is_empty() {
        return false;
    }
    for (addr, run) in address_runs(shared, &victims, &dirty) {
        if let Err(e) = shared
            .uffd
            .write_protect(addr as *mut libc::c_void, run.len() * ps)
        {
            shared.record_error(format!("write-protecting {} pages: {e}", run.len()));
            let mut pages = shared.lock();
            for &i in run {
                pages.update(victims[i], DIRTY, 0);
                copies[i] = Copy::Kept;
            }
        }
    }
    // 2. Copy the dirty victims out; all-zero pages are not shipped.
    let mut shipped = Vec::new();
    for (i, &p) in victims.iter().enumerate() {
        if copies[i] != Copy::Pending {
            continue;
        }
        let Some(addr) = shared.addr_of(p) else {
            copies[i] = Copy::Kept;
            continue;
        };
        let slot = shipped.len();
        let bytes = &mut buf[slot * ps..(slot + 1) * ps];
        // SAFETY: `addr` is a resident guest page (we hold it busy, so nobody drops it);
        // it is write-protected, so the bytes are stable while they are copied, and reading
        // a write-protected page does not fault.
        bytes.copy_from_slice(unsafe { std::slice::from_raw_parts(addr as *const u8, ps) });
        if is_zero(bytes) {
            copies[i] = Copy::Zero;
        } else {
            copies[i] = Copy::Shipped(slot);
            shipped.push((p, slot));
        }
    }
    let runs = merge_runs(&shipped, ps, buf);
    let write = shared.space.write_runs(&runs);
    drop(runs);
    let mut pages = shared.lock();
    if let Err(e) = write {
        // Nothing of this round is safe to drop: the copies may be missing.
        for (i, &p) in victims.iter().enumerate() {
            let dirty = matches!(copies[i], Copy::Zero | Copy::Shipped(_));
            pages.update(p, if dirty { DIRTY } else { 0 }, BUSY);
        }
        drop(pages);
        shared.record_error(format!("writing back {} pages: {e}", shipped.len()));
        std::thread::sleep(RETRY_PAUSE);
        return false;
    }
    // 3. Drop the victims that stayed clean, in runs of adjacent pages. They are marked
    //    DROPPING under the lock; a fault on one meanwhile waits (without lifting the
    //    protection) until the drop is done, then finds the page absent.
    let mut cancelled = 0u64;
    let mut droppable = Vec::with_capacity(victims.len());
    for (i, &p) in victims.iter().enumerate() {
        let f = pages.get(p);
        if copies[i] == Copy::Kept || f & DIRTY != 0 || f & RESIDENT == 0 {
            pages.update(p, 0, BUSY);
            cancelled += u64::from(f & DIRTY != 0 && copies[i] != Copy::Kept);
        } else {
            pages.update(p, DROPPING, 0);
            droppable.push(i);
        }
    }
    drop(pages);
    let runs = address_runs(shared, &victims, &droppable);
    let done: Vec<bool> = runs
        .iter()
        .map(|(addr, run)| {
            // SAFETY: the run is guest RAM owned by this engine's VM; its bytes are on the
            // servers (or zero) and come back through the missing-page fault.
            let ok = unsafe {
                libc::madvise(
                    *addr as *mut libc::c_void,
                    run.len() * ps,
                    libc::MADV_DONTNEED,
                )
            } == 0;
            if !ok {
                let e = std::io::Error::last_os_error();
                shared.record_error(format!("dropping {} pages: {e}", run.len()));
            }
            ok
        })
        .collect();
    let mut pages = shared.lock();
    let mut dropped = 0u64;
    for ((_, run), ok) in runs.iter().zip(done) {
        for &i in *run {
            let (set, clear) = match (ok, copies[i]) {
                (false, _) => (0, BUSY | DROPPING),
                (true, Copy::Zero) => (0, REMOTE | RESIDENT | BUSY | DROPPING | REFERENCED | HOT),
                (true, Copy::Shipped(_)) => (REMOTE, RESIDENT | BUSY | DROPPING | REFERENCED | HOT),
                (true, _) => (0, RESIDENT | BUSY | DROPPING | REFERENCED | HOT),
            };
            pages.update(victims[i], set, clear);
            if ok {
                pages.record_eviction(victims[i]);
            }
            dropped += u64::from(ok);
        }
    }
    let waiting = std::mem::take(&mut pages.waiting);
    let zero = copies.iter().filter(|c| **c == Copy::Zero).count() as u64;
    // Counted before anyone waiting for the drop hears of it.
    let c = &shared.counters;
    c.evicted_pages.fetch_add(dropped, Relaxed);
    c.evictions_cancelled.fetch_add(cancelled, Relaxed);
    c.written_back_pages
        .fetch_add(shipped.len() as u64, Relaxed);
    c.zero_pages_dropped.fetch_add(zero, Relaxed);
    c.bytes_out.fetch_add((shipped.len() * ps) as u64, Relaxed);
    shared.changed.notify_all();
    drop(pages);
    for addr in waiting {
        let _ = shared.uffd.wake(addr as *mut libc::c_void, ps);
    }
    true
}

/// Runs of `victims[i]` for `i` in `select` whose pages are adjacent in host memory: the
/// run's first host address and its indices into `victims`.
fn address_runs<'a>(
    shared: &Shared,
    victims: &[usize],
    select: &'a [usize],
) -> Vec<(usize, &'a [usize])> {
    let page = |k: usize| victims[select[k]];
    adjacent_runs(select.len(), |k| {
        page(k) == page(k - 1) + 1 && shared.same_range(page(k - 1), page(k))
    })
    .into_iter()
    .filter_map(|r| Some((shared.addr_of(page(r.start))?, &select[r])))
    .collect()
}

/// Runs of pages adjacent both in the remote space and in `buf`, as (remote offset, bytes).
fn merge_runs<'a>(shipped: &[(usize, usize)], ps: usize, buf: &'a [u8]) -> Vec<(u64, &'a [u8])> {
    adjacent_runs(shipped.len(), |k| {
        shipped[k].0 == shipped[k - 1].0 + 1 && shipped[k].1 == shipped[k - 1].1 + 1
    })
    .into_iter()
    .map(|r| {
        let (page, slot) = shipped[r.start];
        ((page * ps) as u64, &buf[slot * ps..(slot + r.len()) * ps])
    })
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adjacent_pages_travel_together() {
        let buf = vec![0u8; 5 * 4];
        let runs = merge_runs(&[(10, 0), (11, 1), (13, 2), (14, 3), (20, 4)], 4, &buf);
        let shape: Vec<(u64, usize)> = runs.iter().map(|(o, b)| (*o, b.len())).collect();
        assert_eq!(shape, vec![(40, 8), (52, 8), (80, 4)]);
    }
}
