//! [`RestoreMode::OnDemand`](crate::RestoreMode::OnDemand): private anonymous guest memory
//! filled page by page from the memory file on first touch, through userfaultfd.
//!
//! Restore costs the same as Cow (no copy up front) while the VM ends up with private memory
//! that does not depend on the page cache of the template file; the price is a fault round trip
//! (a few microseconds) on the first touch of each page. This is also the shape `remote` restore
//! will take, with the page coming from a memory server instead of the file.

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::fs::FileExt;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use userfaultfd::{Event, Uffd, UffdBuilder};

use crate::pagemap::is_zero;

/// Pages filled per fault, starting at the faulting one: guests touch memory in runs, and
/// one fault round trip (thread wake-up, pread, ioctl) costs far more than copying 64 KiB.
const FAULT_AROUND_PAGES: usize = 16;

/// Where on-demand pages come from: the template's memory file, or (remote restore) a memory
/// server holding the same bytes at the same offsets.
pub trait PageSource: Send {
    /// Fills `buf` with the memory file's bytes at `offset`.
    fn read_at(&mut self, buf: &mut [u8], offset: u64) -> io::Result<()>;
}

impl PageSource for File {
    fn read_at(&mut self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.read_exact_at(buf, offset)
    }
}

/// A userfaultfd pager over memory the caller already has (RAM extension: guest RAM whose
/// pages were pushed to memory servers and dropped). Missing pages in the ranges are filled
/// from the source on first touch; dropping the pager stops serving them.
pub struct Pager(OnDemandPager);

impl Pager {
    /// Page faults served so far.
    pub fn faults(&self) -> u64 {
        self.0.faults()
    }

    /// The first error the fault thread met, if any.
    pub fn error(&self) -> Option<String> {
        self.0.error()
    }
}

/// Serves missing-page faults in `ranges` (host address, length, offset of the range's first
/// byte in `source`) from `source`. The ranges must be private anonymous memory of this
/// process and stay mapped while the pager lives; pages already present are left alone.
pub fn serve_missing_pages(
    ranges: &[(usize, usize, u64)],
    source: Box<dyn PageSource>,
) -> io::Result<Pager> {
    // SAFETY: sysconf has no memory-safety preconditions.
    let page_size = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096);
    let ranges = ranges
        .iter()
        .map(|&(host_addr, len, file_offset)| PagedRange {
            host_addr,
            len,
            file_offset,
        })
        .collect();
    Ok(Pager(OnDemandPager::start(
        source,
        ranges,
        page_size,
        Vec::new(),
    )?))
}

/// A registered range: host address, length and where its bytes start in the memory file.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PagedRange {
    pub host_addr: usize,
    pub len: usize,
    pub file_offset: u64,
}

/// The fault-serving thread; stopping it (on drop) leaves the already-filled pages in place.
#[derive(Debug)]
pub(crate) struct OnDemandPager {
    stop: File,
    thread: Option<JoinHandle<()>>,
    error: Arc<Mutex<Option<String>>>,
    stats: Arc<FaultStats>,
}

/// What the fault thread has done, for working-set recording and counters.
#[derive(Debug, Default)]
pub(crate) struct FaultStats {
    /// Memory-file offsets of every page the fault thread loaded (each faulting page and its
    /// fault-around window): the working set of a clone's first run (REAP, ASPLOS'21).
    faulted: Mutex<std::collections::BTreeSet<u64>>,
    faults: std::sync::atomic::AtomicU64,
    /// Set once the prefetch list has been loaded (immediately when there was none).
    prefetched: Mutex<bool>,
    prefetched_cv: std::sync::Condvar,
}

impl OnDemandPager {
    /// Registers `ranges` (already mapped, private anonymous, not yet touched) with a new
    /// userfaultfd and starts the thread that serves their faults from `source`. Pages at the
    /// memory-file offsets in `prefetch` are loaded first, in batches, before any fault is
    /// served ([`OnDemandPager::wait_prefetched`] waits for that).
    pub(crate) fn start(
        source: Box<dyn PageSource>,
        ranges: Vec<PagedRange>,
        page_size: usize,
        prefetch: Vec<u64>,
    ) -> io::Result<Self> {
        // Not user-mode-only: KVM touches guest memory from the kernel (get_user_pages) and those
        // faults must reach the handler too. Needs CAP_SYS_PTRACE, access to /dev/userfaultfd,
        // or vm.unprivileged_userfaultfd=1.
        let uffd = UffdBuilder::new()
            .close_on_exec(true)
            .non_blocking(true)
            .user_mode_only(false)
            .create()
            .map_err(uffd_io)?;
        for r in &ranges {
            uffd.register(r.host_addr as *mut libc::c_void, r.len)
                .map_err(uffd_io)?;
        }
        // SAFETY: eventfd has no memory-safety preconditions; the result is checked below.
        let efd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
        if efd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: efd is a fresh descriptor owned by nothing else.
        let stop = unsafe { File::from_raw_fd(efd) };
        let stop_wait = stop.try_clone()?;
        let error = Arc::new(Mutex::new(None));
        let stats = Arc::new(FaultStats::default());
        let server = FaultServer {
            stats: Arc::clone(&stats),
            prefetch,
            uffd,
            source,
            ranges,
            page_size,
            buf: vec![0u8; page_size * FAULT_AROUND_PAGES],
            error: Arc::clone(&error),
        };
        let thread = std::thread::Builder::new()
            .name("revenant-ondemand".into())
            .spawn(move || server.run(&stop_wait))?;
        Ok(Self {
            stop,
            thread: Some(thread),
            error,
            stats,
        })
    }

    /// Memory-file offsets of the pages faulted on so far, ascending.
    pub(crate) fn faulted_offsets(&self) -> Vec<u64> {
        self.stats
            .faulted
            .lock()
            .map(|f| f.iter().copied().collect())
            .unwrap_or_default()
    }

    /// Faults served so far.
    pub(crate) fn faults(&self) -> u64 {
        self.stats.faults.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Blocks until the prefetch list given to `start` has been loaded.
    pub(crate) fn wait_prefetched(&self) {
        let Ok(mut done) = self.stats.prefetched.lock() else {
            return;
        };
        while !*done {
            match self.stats.prefetched_cv.wait(done) {
                Ok(d) => done = d,
                Err(_) => return,
            }
        }
    }

    /// The first error the fault thread met (a page it had to fill with zeros instead).
    pub(crate) fn error(&self) -> Option<String> {
        self.error.lock().ok().and_then(|e| e.clone())
    }
}

impl Drop for OnDemandPager {
    fn drop(&mut self) {
        // If the wake-up write fails the thread would never return; don't wait for it then.
        if (&self.stop).write_all(&1u64.to_ne_bytes()).is_ok() {
            if let Some(t) = self.thread.take() {
                let _ = t.join();
            }
        }
    }
}

/// Sleeps until `uffd` has fault events (true) or `stop` is signalled (false).
pub fn wait_for_faults(uffd: &Uffd, stop: &File) -> io::Result<bool> {
    loop {
        let mut fds = [
            libc::pollfd {
                fd: uffd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: stop.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: fds is a valid array of 2 pollfd structs for the duration of the call.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        return Ok(fds[1].revents == 0);
    }
}

fn uffd_io(e: userfaultfd::Error) -> io::Error {
    io::Error::other(format!("userfaultfd: {e}"))
}

struct FaultServer {
    uffd: Uffd,
    source: Box<dyn PageSource>,
    stats: Arc<FaultStats>,
    prefetch: Vec<u64>,
    ranges: Vec<PagedRange>,
    page_size: usize,
    buf: Vec<u8>,
    error: Arc<Mutex<Option<String>>>,
}

impl FaultServer {
    fn run(mut self, stop: &File) {
        self.load_prefetch();
        loop {
            match wait_for_faults(&self.uffd, stop) {
                Ok(true) => {}
                Ok(false) => return,
                Err(e) => {
                    self.record(format!("poll: {e}"));
                    return;
                }
            }
            loop {
                match self.uffd.read_event() {
                    Ok(Some(Event::Pagefault { addr, .. })) => self.serve(addr as usize),
                    Ok(Some(_)) => {} // only missing-page faults were asked for
                    Ok(None) => break,
                    Err(e) => {
                        self.record(format!("reading fault events: {e}"));
                        return;
                    }
                }
            }
        }
    }

    /// Loads the prefetch list: each run of consecutive pages is read from the source in one
    /// go (up to the fault-around buffer) and copied in with one ioctl, instead of one fault
    /// round trip per page. Then tells waiters the prefetch is done.
    fn load_prefetch(&mut self) {
        let ps = self.page_size as u64;
        let max_run = (self.buf.len() / self.page_size) as u64;
        let list = std::mem::take(&mut self.prefetch);
        let mut i = 0;
        while i < list.len() {
            let start = list[i] & !(ps - 1);
            let mut pages = 1;
            while i + (pages as usize) < list.len()
                && list[i + pages as usize] == start + pages * ps
                && pages < max_run
            {
                pages += 1;
            }
            i += pages as usize;
            let Some(range) = self
                .ranges
                .iter()
                .find(|r| start >= r.file_offset && start < r.file_offset + r.len as u64)
                .copied()
            else {
                continue; // not in any region: ignore a stale list entry
            };
            let pages = pages.min((range.file_offset + range.len as u64 - start) / ps);
            let host = range.host_addr + (start - range.file_offset) as usize;
            let buf = &mut self.buf[..(pages * ps) as usize];
            if self.source.read_at(buf, start).is_err() {
                continue; // the guest's own faults will load (and report) these pages
            }
            // SAFETY: host..host+len lies in a range registered with this uffd and nothing
            // has run on it yet; the source is our own buffer, readable for len bytes.
            let _ = unsafe {
                self.uffd.copy(
                    buf.as_ptr().cast(),
                    host as *mut libc::c_void,
                    buf.len(),
                    true,
                )
            };
        }
        if let Ok(mut done) = self.stats.prefetched.lock() {
            *done = true;
            self.stats.prefetched_cv.notify_all();
        }
    }

    /// Fills the page containing `addr` and up to [`FAULT_AROUND_PAGES`] - 1 pages after it
    /// (within the region): runs of data pages with UFFDIO_COPY, runs of zero pages with
    /// UFFDIO_ZEROPAGE (no memory allocated).
    fn serve(&mut self, addr: usize) {
        let ps = self.page_size;
        let page_addr = addr & !(ps - 1);
        self.stats
            .faults
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let Some(range) = self
            .ranges
            .iter()
            .find(|r| page_addr >= r.host_addr && page_addr < r.host_addr + r.len)
            .copied()
        else {
            return; // not ours: cannot happen for a registered range
        };
        let pages = FAULT_AROUND_PAGES.min((range.host_addr + range.len - page_addr) / ps);
        let offset = range.file_offset + (page_addr - range.host_addr) as u64;

        let buf = &mut self.buf[..pages * ps];
        if let Err(e) = self.source.read_at(buf, offset) {
            // Leaving the vCPU blocked forever is worse than a zero page; record why.
            record(
                &self.error,
                format!("reading memory at offset {offset:#x}: {e}"),
            );
            buf.fill(0);
        }
        let mut first = 0;
        let mut served = false;
        while first < pages {
            let zero = is_zero(&buf[first * ps..(first + 1) * ps]);
            let mut end = first + 1;
            while end < pages && is_zero(&buf[end * ps..(end + 1) * ps]) == zero {
                end += 1;
            }
            let dst = (page_addr + first * ps) as *mut libc::c_void;
            let len = (end - first) * ps;
            // Recorded before the fill: the ioctl wakes the faulting thread, which may look at
            // the working set right away. A run that turns out to be present already was
            // loaded for this guest anyway.
            if let Ok(mut f) = self.stats.faulted.lock() {
                f.extend((first..end).map(|p| offset + (p * ps) as u64));
            }
            let result = if zero {
                // SAFETY: dst..dst+len lies in a range registered with this uffd; the kernel
                // checks it is still mapped and registered and fills only missing pages.
                unsafe { self.uffd.zeropage(dst, len, true) }
            } else {
                // SAFETY: as above; the source is our own buffer, readable for len bytes.
                unsafe {
                    self.uffd
                        .copy(buf[first * ps..].as_ptr().cast(), dst, len, true)
                }
            };
            // A short or failed fill means a page in the run was already present (EEXIST:
            // touched meanwhile or filled by an earlier fault-around): stop prefetching there.
            if !matches!(result, Ok(n) if n == len) {
                break;
            }
            served = true;
            first = end;
        }
        if !served {
            // The faulting page itself may have been filled by someone else: make sure the
            // faulting thread is not left waiting.
            let _ = self.uffd.wake(page_addr as *mut libc::c_void, ps);
        }
    }

    fn record(&self, msg: String) {
        record(&self.error, msg);
    }
}

/// Keeps the first error only: later ones are usually consequences of it.
fn record(error: &Mutex<Option<String>>, msg: String) {
    if let Ok(mut e) = error.lock() {
        e.get_or_insert(msg);
    }
}
