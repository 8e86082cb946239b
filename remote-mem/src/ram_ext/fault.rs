//! The fault thread: serves missing pages (from the memory servers, or zeros) and first
//! writes to clean pages (dirty tracking).

use std::fs::File;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use userfaultfd::{Event, FaultKind, ReadWrite};

use super::pages::{BUSY, DIRTY, DROPPING, HOT, REFERENCED, REMOTE, RESIDENT};
use super::prefetch::TrendPrefetcher;
use super::uffd::copy_pages;
use super::{adjacent_runs, Shared};

/// Never-written pages filled per zero fault, starting at the faulting one: first touches
/// come in runs, and one round trip per page would dominate.
const ZERO_AROUND_PAGES: usize = 16;
/// Resident pages allowed over the budget before a fault waits for the evictor.
const HARD_SLACK_PAGES: u64 = 256;
/// How long a remote read is retried (the client fails over between replicas itself)
/// before the fault thread logs and keeps trying.
const RETRY_PAUSE: Duration = Duration::from_millis(100);
/// How long the fault thread keeps looking for the next fault before it sleeps. Waking a
/// sleeping thread costs tens of microseconds on an idle (virtual) machine, more than a
/// remote fault itself; faults come in bursts, so a short spin pays (halt-polling's idea).
const SPIN: Duration = Duration::from_micros(50);

pub(super) fn run(shared: &Shared, stop: &File) {
    let mut server = FaultServer {
        shared,
        prefetcher: TrendPrefetcher::default(),
        buf: vec![0u8; shared.page_size * (1 + super::prefetch::MAX_WINDOW)],
        zeros: vec![0u8; shared.page_size * ZERO_AROUND_PAGES],
    };
    loop {
        match revenant_template::wait_for_faults(&shared.uffd, stop) {
            Ok(true) => {}
            Ok(false) => return,
            Err(e) => {
                shared.record_error(format!("poll: {e}"));
                return;
            }
        }
        let mut idle_since = Instant::now();
        loop {
            match shared.uffd.read_event() {
                Ok(Some(Event::Pagefault { kind, rw, addr })) => {
                    match kind {
                        FaultKind::WriteProtected => server.write_fault(addr as usize),
                        _ => server.missing(addr as usize, matches!(rw, ReadWrite::Write)),
                    }
                    idle_since = Instant::now();
                }
                Ok(Some(_)) => {} // only page faults were asked for
                Ok(None) if idle_since.elapsed() < SPIN && !shared.stop.load(Relaxed) => {
                    std::hint::spin_loop();
                }
                Ok(None) => break,
                Err(e) => {
                    shared.record_error(format!("reading fault events: {e}"));
                    return;
                }
            }
        }
    }
}

struct FaultServer<'a> {
    shared: &'a Shared,
    prefetcher: TrendPrefetcher,
    buf: Vec<u8>,
    zeros: Vec<u8>,
}

impl FaultServer<'_> {
    fn wake(&self, addr: usize) {
        let ps = self.shared.page_size;
        let _ = self
            .shared
            .uffd
            .wake((addr & !(ps - 1)) as *mut libc::c_void, ps);
    }

    /// A first write to a clean (write-protected) page: it is dirty from now on.
    fn write_fault(&mut self, addr: usize) {
        let ps = self.shared.page_size;
        let page_addr = addr & !(ps - 1);
        let Some(p) = self.shared.page_of(page_addr) else {
            return self.wake(addr);
        };
        let mut pages = self.shared.lock();
        let f = pages.get(p);
        if f & RESIDENT == 0 {
            // Evicted while the write waited: the retry becomes a missing fault, served
            // with the copy the eviction just wrote (the write never reached the old page).
            drop(pages);
            return self.wake(addr);
        }
        if f & DROPPING != 0 {
            // Being dropped: the write must wait (the page stays protected); the evictor
            // wakes it when the page is gone, and it faults the written-back copy in.
            pages.waiting.push(page_addr);
            return;
        }
        // Under the lock: an eviction that has this page busy sees DIRTY and keeps it.
        pages.update(p, DIRTY | REFERENCED, 0);
        self.shared
            .counters
            .write_protect_faults
            .fetch_add(1, Relaxed);
        if let Err(e) =
            self.shared
                .uffd
                .remove_write_protection(page_addr as *mut libc::c_void, ps, true)
        {
            drop(pages);
            self.shared
                .record_error(format!("lifting write protection at {page_addr:#x}: {e}"));
            self.wake(addr);
        }
    }

    /// Waits while the resident set is far over the budget (the evictor is behind): the
    /// faulting thread is throttled instead of the host running out of memory.
    fn throttle(&self) {
        let mut pages = self.shared.lock();
        let start = Instant::now();
        while !self.shared.stop.load(Relaxed)
            && pages.resident() as u64 >= self.shared.budget().saturating_add(HARD_SLACK_PAGES)
            && start.elapsed() < Duration::from_secs(1)
        {
            self.shared.changed.notify_all();
            pages = self
                .shared
                .changed
                .wait_timeout(pages, Duration::from_millis(10))
                .map(|(g, _)| g)
                .unwrap_or_else(|p| p.into_inner().0);
        }
    }

    /// A missing page: zeros if it was never written, else its copy from the servers plus
    /// the pages the trend predicts. A page faulted by a write is mapped writable and dirty
    /// at once (a write-protect fault right after would only cost another round trip); the
    /// others are mapped write-protected, so their first write is seen.
    fn missing(&mut self, addr: usize, write: bool) {
        let shared = self.shared;
        let ps = shared.page_size;
        let Some(p) = shared.page_of(addr) else {
            return self.wake(addr);
        };
        self.throttle();
        let start = Instant::now();
        let flags = {
            let mut pages = shared.lock();
            let flags = pages.get(p);
            if flags & DROPPING != 0 {
                // Dropped but not yet marked absent: retry once the evictor is done.
                pages.waiting.push(addr & !(ps - 1));
                return;
            }
            flags
        };
        if flags & RESIDENT != 0 {
            return self.wake(addr); // filled by an earlier fault's prefetch or zero run
        }
        if flags & REMOTE == 0 {
            return self.fill_zero(p, write);
        }
        // Only this thread turns absent pages resident, so the list stays valid unlocked.
        let mut run = vec![p];
        if shared.prefetch {
            let pages = shared.lock();
            run.extend(self.prefetcher.on_fault(p).into_iter().filter(|&q| {
                let f = pages.get(q);
                q < pages.len()
                    && f & RESIDENT == 0
                    && f & REMOTE != 0
                    && f & BUSY == 0
                    && shared.same_range(p, q)
            }));
        }
        let n = run.len();
        loop {
            // Pages adjacent in the run are adjacent in the buffer: read them in one go.
            let mut reads: Vec<(u64, &mut [u8])> = Vec::new();
            let mut rest = &mut self.buf[..n * ps];
            for r in adjacent_runs(n, |k| run[k] == run[k - 1] + 1) {
                let (head, tail) = rest.split_at_mut(r.len() * ps);
                reads.push(((run[r.start] * ps) as u64, head));
                rest = tail;
            }
            match shared.space.read_runs(&mut reads) {
                Ok(()) => break,
                Err(e) => {
                    shared.record_error(format!("fetching page {p}: {e}"));
                    if shared.stop.load(Relaxed) {
                        return;
                    }
                    // Never hand the guest a wrong page: wait for a replica to answer.
                    std::thread::sleep(RETRY_PAUSE);
                }
            }
        }
        let mut filled = Vec::with_capacity(n);
        for (i, &q) in run.iter().enumerate() {
            let Some(dst) = shared.addr_of(q) else {
                continue;
            };
            let wp = !(write && q == p);
            // SAFETY: the source is our buffer, readable for one page; dst is a page of a
            // range registered in missing + write-protect modes.
            let r = unsafe { copy_pages(&shared.uffd, self.buf[i * ps..].as_ptr(), dst, ps, wp) };
            match r {
                Ok(len) if len == ps => filled.push(q),
                Ok(_) => {} // present already
                Err(e) => shared.record_error(format!("filling page {q}: {e}")),
            }
        }
        let mut pages = shared.lock();
        // Back within a budget's worth of evictions: the guest keeps using this page.
        let hot = if pages.refault_distance(p) as u64 <= shared.budget() {
            HOT
        } else {
            0
        };
        for &q in &filled {
            // The faulting page was used; prefetched ones earn a reference when touched.
            let (set, clear) = match (q == p, write) {
                (true, true) => (RESIDENT | REFERENCED | DIRTY | hot, 0),
                (true, false) => (RESIDENT | REFERENCED | hot, DIRTY),
                _ => (RESIDENT, DIRTY),
            };
            pages.update(q, set, clear);
        }
        drop(pages);
        // Counted before the wake-up, so whoever faulted sees it counted.
        let c = &shared.counters;
        c.bytes_in.fetch_add((n * ps) as u64, Relaxed);
        c.prefetched_pages
            .fetch_add(filled.iter().filter(|&&q| q != p).count() as u64, Relaxed);
        c.record_remote_fault(start.elapsed().as_nanos() as u64);
        // Prefetched pages had no waiter; a racing fault on one of them finds it resident.
        self.wake(addr);
        shared.changed.notify_all();
    }

    /// Fills the never-written page `p` and the absent, never-written pages after it (up to
    /// [`ZERO_AROUND_PAGES`], same range) with zeros.
    fn fill_zero(&mut self, p: usize, write: bool) {
        let shared = self.shared;
        let ps = shared.page_size;
        // Counted before the wake-up, so whoever faulted sees it counted.
        shared.counters.zero_faults.fetch_add(1, Relaxed);
        let mut n = 1;
        {
            let pages = shared.lock();
            while n < ZERO_AROUND_PAGES
                && p + n < pages.len()
                && shared.same_range(p, p + n)
                && pages.get(p + n) & (RESIDENT | REMOTE | BUSY) == 0
            {
                n += 1;
            }
        }
        let Some(dst) = shared.addr_of(p) else {
            return;
        };
        // A write fault maps the whole run writable and dirty: first touches are mostly
        // sequential writes, and a dirty page that stays zero costs only a zero check when
        // it is evicted (it is never shipped). A read fault maps it write-protected.
        // SAFETY: the source is our zero buffer, readable for n pages; dst..dst + n pages
        // lies in one range registered in missing + write-protect modes.
        let filled =
            match unsafe { copy_pages(&shared.uffd, self.zeros.as_ptr(), dst, n * ps, !write) } {
                Ok(len) => len / ps,
                Err(e) => {
                    shared.record_error(format!("zero-filling page {p}: {e}"));
                    0
                }
            };
        let mut pages = shared.lock();
        for q in p..p + filled {
            let referenced = if q == p { REFERENCED } else { 0 };
            if write {
                pages.update(q, RESIDENT | referenced | DIRTY, 0);
            } else {
                pages.update(q, RESIDENT | referenced, DIRTY);
            }
        }
        drop(pages);
        self.wake(dst);
        shared.changed.notify_all();
    }
}
