//! RAM extension (ZombieLand's "RAM Ext"): the VMM keeps at most a budget of guest pages in
//! its own memory and moves the rest to memory servers, faulting them back on access.
//!
//! Guest RAM is registered with userfaultfd in missing and write-protect modes:
//! - **fault path** ([`fault`]): a missing page is filled from the servers (or with zeros
//!   when it was never written), write-protected in the same ioctl; a first write to a clean
//!   page raises a write-protect fault, which marks it dirty and lifts the protection;
//! - **eviction path** ([`evict`]): while more pages are resident than the budget, a CLOCK
//!   over the page flags picks cold pages; dirty ones are write-protected, copied to the
//!   servers (all-zero pages are never shipped) and dropped with `MADV_DONTNEED` only if no
//!   write reached them meanwhile, so a write racing an eviction is never lost;
//! - **pressure controller** ([`controller`]): optionally moves the budget so that the time
//!   spent waiting for remote pages stays near a target share;
//! - **drain**: a VM entering Sz gives up every page ([`RamExt::evict_all`]).
//!
//! Guest range `i` occupies bytes `[sum of earlier lengths, + len)` of the remote space.

pub mod controller;
mod discard;
mod evict;
mod fault;
pub mod pages;
pub mod policy_sim;
pub mod prefetch;
pub mod stats;
mod uffd;

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::FromRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use userfaultfd::{IoctlFlags, RegisterMode, Uffd, UffdBuilder};

pub use controller::ControllerConfig;
pub use discard::{Discarded, PageDiscarder};
use pages::{PageTable, DIRTY, RESIDENT};
pub use stats::{LatencyHistogram, RamExtCounters};

use crate::space::SlabSpace;

/// Budget value meaning "no limit": only a drain evicts.
const UNLIMITED: u64 = u64::MAX;

/// RAM-ext errors.
#[derive(Debug, thiserror::Error)]
pub enum RamExtError {
    /// A userfaultfd or memory-management call failed.
    #[error("cannot {what}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// Cause.
        #[source]
        source: io::Error,
    },
    /// The kernel cannot write-protect this memory through userfaultfd.
    #[error("userfaultfd write-protect is not available for guest RAM (needs Linux >= 5.7 with anonymous-memory uffd-wp)")]
    NoWriteProtect,
    /// Guest ranges are not page aligned.
    #[error("guest range {0:#x}+{1:#x} is not page aligned")]
    Unaligned(usize, usize),
    /// A drain did not finish.
    #[error("evicting every page did not finish within {0:?} ({1} pages still resident)")]
    DrainTimeout(Duration, usize),
    /// The engine's threads could not start.
    #[error("cannot start a RAM-ext thread: {0}")]
    Thread(#[source] io::Error),
}

/// How the engine runs.
#[derive(Debug, Clone, Default)]
pub struct RamExtConfig {
    /// Resident bytes kept at most; `None`: no limit (pages move only on a drain).
    pub budget_bytes: Option<u64>,
    /// Leap-style trend prefetch on remote faults.
    pub prefetch: bool,
    /// Pressure-driven budget; starts from `budget_bytes` (or all of guest RAM).
    pub controller: Option<ControllerConfig>,
}

/// A guest RAM range of this process: host address and length, page aligned.
#[derive(Debug, Clone, Copy)]
pub struct GuestRange {
    /// First byte in the VMM's address space.
    pub host_addr: usize,
    /// Length in bytes.
    pub len: usize,
}

/// State shared by the engine's threads.
struct Shared {
    uffd: Uffd,
    /// (host address, length, index of the range's first page).
    ranges: Vec<(usize, usize, usize)>,
    page_size: usize,
    pages: Mutex<PageTable>,
    /// Signalled when pages come or go, the budget moves, or a drain is asked for.
    changed: Condvar,
    budget_pages: AtomicU64,
    drain: AtomicBool,
    prefetch: bool,
    space: SlabSpace,
    counters: stats::Counters,
    stop: AtomicBool,
    error: Mutex<Option<String>>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, PageTable> {
        self.pages.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The page index of host address `addr`, if it is guest RAM.
    fn page_of(&self, addr: usize) -> Option<usize> {
        self.ranges
            .iter()
            .find(|(h, l, _)| addr >= *h && addr < h + l)
            .map(|(h, _, first)| first + (addr - h) / self.page_size)
    }

    /// Host address of page `p`.
    fn addr_of(&self, p: usize) -> Option<usize> {
        let ps = self.page_size;
        self.ranges
            .iter()
            .find(|(_, l, first)| p >= *first && p < first + l / ps)
            .map(|(h, _, first)| h + (p - first) * ps)
    }

    /// Whether pages `a` and `b` are adjacent in the same host range.
    fn same_range(&self, a: usize, b: usize) -> bool {
        let ps = self.page_size;
        self.ranges.iter().any(|(_, l, first)| {
            (*first..first + l / ps).contains(&a) && (*first..first + l / ps).contains(&b)
        })
    }

    fn budget(&self) -> u64 {
        self.budget_pages.load(Relaxed)
    }

    fn record_error(&self, msg: String) {
        self.counters.errors.fetch_add(1, Relaxed);
        tracing::warn!("ram-ext: {msg}");
        if let Ok(mut e) = self.error.lock() {
            e.get_or_insert(msg);
        }
    }
}

/// Splits `0..len` into maximal ranges in which every index after the first continues from
/// the one before it (`continues(i)` for `i` in the range, past its start): runs of adjacent
/// pages, each handled with one system call or one request.
fn adjacent_runs(len: usize, continues: impl Fn(usize) -> bool) -> Vec<std::ops::Range<usize>> {
    let mut runs = Vec::new();
    let mut start = 0;
    while start < len {
        let mut end = start + 1;
        while end < len && continues(end) {
            end += 1;
        }
        runs.push(start..end);
        start = end;
    }
    runs
}

/// A VM's RAM extension: its threads run until it is dropped. Drop it only after the vCPUs
/// have stopped: a page that is not resident cannot be served afterwards.
pub struct RamExt {
    shared: Arc<Shared>,
    stop: File,
    threads: Vec<JoinHandle<()>>,
}

impl RamExt {
    /// Registers `ranges` (private anonymous memory of this process that stays mapped while
    /// the engine lives), counts the pages already present as resident and dirty, and starts
    /// the fault, eviction and (optional) controller threads. `space` must already hold the
    /// slabs for all of the ranges.
    pub fn start(
        ranges: &[GuestRange],
        space: SlabSpace,
        config: &RamExtConfig,
    ) -> Result<RamExt, RamExtError> {
        // SAFETY: sysconf has no memory-safety preconditions.
        let ps = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096);
        let uffd = UffdBuilder::new()
            .close_on_exec(true)
            .non_blocking(true)
            .user_mode_only(false)
            .create()
            .map_err(|e| RamExtError::Io {
                what: "create a userfaultfd",
                source: io::Error::other(e.to_string()),
            })?;
        let mut table_ranges = Vec::with_capacity(ranges.len());
        let mut first = 0usize;
        for r in ranges {
            if r.host_addr % ps != 0 || r.len % ps != 0 {
                return Err(RamExtError::Unaligned(r.host_addr, r.len));
            }
            let ioctls = uffd
                .register_with_mode(
                    r.host_addr as *mut libc::c_void,
                    r.len,
                    RegisterMode::MISSING | RegisterMode::WRITE_PROTECT,
                )
                .map_err(|e| RamExtError::Io {
                    what: "register guest RAM with userfaultfd (missing + write-protect)",
                    source: io::Error::other(e.to_string()),
                })?;
            if !ioctls.contains(IoctlFlags::WRITE_PROTECT) {
                return Err(RamExtError::NoWriteProtect);
            }
            table_ranges.push((r.host_addr, r.len, first));
            first += r.len / ps;
        }
        let mut table = PageTable::new(first);
        mark_present(&mut table, &table_ranges, ps)?;
        let total = first as u64;
        let budget = config
            .budget_bytes
            .map_or(UNLIMITED, |b| (b / ps as u64).min(total));
        let budget = match (&config.controller, budget) {
            (Some(_), UNLIMITED) => total,
            (_, b) => b,
        };
        let shared = Arc::new(Shared {
            uffd,
            ranges: table_ranges,
            page_size: ps,
            pages: Mutex::new(table),
            changed: Condvar::new(),
            budget_pages: AtomicU64::new(budget),
            drain: AtomicBool::new(false),
            prefetch: config.prefetch,
            space,
            counters: stats::Counters::default(),
            stop: AtomicBool::new(false),
            error: Mutex::new(None),
        });
        // SAFETY: eventfd has no memory-safety preconditions; the result is checked.
        let efd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
        if efd < 0 {
            return Err(RamExtError::Io {
                what: "create an eventfd",
                source: io::Error::last_os_error(),
            });
        }
        // SAFETY: efd is a fresh descriptor owned by nothing else.
        let stop = unsafe { File::from_raw_fd(efd) };
        let stop_wait = stop.try_clone().map_err(RamExtError::Thread)?;
        let mut engine = RamExt {
            shared: shared.clone(),
            stop,
            threads: Vec::new(),
        };
        let s = shared.clone();
        engine.spawn("ramext-fault", move || fault::run(&s, &stop_wait))?;
        let s = shared.clone();
        engine.spawn("ramext-evict", move || evict::run(&s))?;
        if let Some(cfg) = config.controller {
            let min = cfg.min_budget / ps as u64;
            engine.spawn("ramext-ctl", move || {
                run_controller(&shared, cfg, min, total)
            })?;
        }
        Ok(engine)
    }

    fn spawn(&mut self, name: &str, f: impl FnOnce() + Send + 'static) -> Result<(), RamExtError> {
        let t = std::thread::Builder::new()
            .name(name.into())
            .spawn(f)
            .map_err(RamExtError::Thread)?;
        self.threads.push(t);
        Ok(())
    }

    /// Moves every resident page to the servers (or drops it, when it is all zero) and waits
    /// until none is left. The vCPUs must be stopped. Returns the bytes written meanwhile.
    pub fn evict_all(&self, timeout: Duration) -> Result<u64, RamExtError> {
        let out_before = self.shared.counters.bytes_out.load(Relaxed);
        self.shared.drain.store(true, Relaxed);
        self.shared.changed.notify_all();
        let deadline = Instant::now() + timeout;
        let mut pages = self.shared.lock();
        let result = loop {
            if pages.resident() == 0 {
                break Ok(());
            }
            let now = Instant::now();
            if now >= deadline {
                break Err(RamExtError::DrainTimeout(timeout, pages.resident()));
            }
            pages = self
                .shared
                .changed
                .wait_timeout(pages, (deadline - now).min(Duration::from_millis(50)))
                .map(|(g, _)| g)
                .unwrap_or_else(|p| p.into_inner().0);
        };
        drop(pages);
        self.shared.drain.store(false, Relaxed);
        result.map(|()| self.shared.counters.bytes_out.load(Relaxed) - out_before)
    }

    /// The engine's counters now.
    pub fn counters(&self) -> RamExtCounters {
        let mut c = self.shared.counters.snapshot();
        let pages = self.shared.lock();
        c.resident_pages = pages.resident() as u64;
        c.remote_pages = pages.remote() as u64;
        let b = self.shared.budget();
        c.budget_pages = if b == UNLIMITED {
            pages.len() as u64
        } else {
            b
        };
        c
    }

    /// A handle for discarding pages the guest gave up (see [`PageDiscarder`]).
    pub fn discarder(&self) -> PageDiscarder {
        PageDiscarder {
            shared: Arc::downgrade(&self.shared),
        }
    }

    /// The first error the engine met, if any.
    pub fn error(&self) -> Option<String> {
        self.shared.error.lock().ok().and_then(|e| e.clone())
    }
}

impl Drop for RamExt {
    fn drop(&mut self) {
        self.shared.stop.store(true, Relaxed);
        self.shared.changed.notify_all();
        // If the wake-up write fails the fault thread would never return; don't wait then.
        if (&self.stop).write_all(&1u64.to_ne_bytes()).is_ok() {
            for t in self.threads.drain(..) {
                let _ = t.join();
            }
        }
    }
}

/// Marks the pages already present in `ranges` as resident and dirty: their bytes are
/// nowhere else yet (a loaded kernel, a test guest's image).
fn mark_present(
    table: &mut PageTable,
    ranges: &[(usize, usize, usize)],
    ps: usize,
) -> Result<(), RamExtError> {
    const CHUNK: usize = 4096;
    let pagemap =
        revenant_template::pagemap::Pagemap::open(ps).map_err(|source| RamExtError::Io {
            what: "open /proc/self/pagemap",
            source,
        })?;
    let mut present = Vec::new();
    for &(host, len, first) in ranges {
        let pages = len / ps;
        let mut i = 0;
        while i < pages {
            let n = CHUNK.min(pages - i);
            pagemap
                .has_data(host + i * ps, n, &mut present)
                .map_err(|source| RamExtError::Io {
                    what: "read /proc/self/pagemap",
                    source,
                })?;
            for (k, _) in present.iter().enumerate().filter(|(_, p)| **p) {
                table.update(first + i + k, RESIDENT | DIRTY, 0);
            }
            i += n;
        }
    }
    Ok(())
}

/// The pressure controller's loop: every interval, the stall share of the last interval
/// moves the budget (see [`controller::next_budget`]).
fn run_controller(shared: &Shared, cfg: ControllerConfig, min: u64, max: u64) {
    let interval = Duration::from_millis(cfg.interval_ms);
    let mut last_stall = shared.counters.stall_ns.load(Relaxed);
    let mut last = Instant::now();
    loop {
        {
            let pages = shared.lock();
            let _ = shared
                .changed
                .wait_timeout_while(pages, interval, |_| !shared.stop.load(Relaxed));
        }
        if shared.stop.load(Relaxed) {
            return;
        }
        // wait_timeout_while only returns early on stop, handled above.
        let now = Instant::now();
        let elapsed = now.duration_since(last);
        let stall = shared.counters.stall_ns.load(Relaxed);
        let share = (stall - last_stall) as f64 / elapsed.as_nanos().max(1) as f64;
        let budget = controller::next_budget(&cfg, shared.budget().min(max), share, min, max);
        shared.budget_pages.store(budget, Relaxed);
        shared.changed.notify_all();
        last_stall = stall;
        last = now;
    }
}
