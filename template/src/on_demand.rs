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
}

impl OnDemandPager {
    /// Registers `ranges` (already mapped, private anonymous, not yet touched) with a new
    /// userfaultfd and starts the thread that serves their faults from `file`.
    pub(crate) fn start(file: File, ranges: Vec<PagedRange>, page_size: usize) -> io::Result<Self> {
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
        let server = FaultServer {
            uffd,
            file,
            ranges,
            page_size,
            page: vec![0u8; page_size],
            error: Arc::clone(&error),
        };
        let thread = std::thread::Builder::new()
            .name("revenant-ondemand".into())
            .spawn(move || server.run(&stop_wait))?;
        Ok(Self {
            stop,
            thread: Some(thread),
            error,
        })
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

fn uffd_io(e: userfaultfd::Error) -> io::Error {
    io::Error::other(format!("userfaultfd: {e}"))
}

struct FaultServer {
    uffd: Uffd,
    file: File,
    ranges: Vec<PagedRange>,
    page_size: usize,
    page: Vec<u8>,
    error: Arc<Mutex<Option<String>>>,
}

impl FaultServer {
    fn run(mut self, stop: &File) {
        loop {
            let mut fds = [
                libc::pollfd {
                    fd: self.uffd.as_raw_fd(),
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
                if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                self.record(format!("poll: {}", io::Error::last_os_error()));
                return;
            }
            if fds[1].revents != 0 {
                return;
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

    /// Fills the page containing `addr`: UFFDIO_COPY of its bytes from the file, or
    /// UFFDIO_ZEROPAGE (no memory allocated) when the page is zero in the file.
    fn serve(&mut self, addr: usize) {
        let page_addr = addr & !(self.page_size - 1);
        let Some(range) = self
            .ranges
            .iter()
            .find(|r| page_addr >= r.host_addr && page_addr < r.host_addr + r.len)
        else {
            return; // not ours: cannot happen for a registered range
        };
        let offset = range.file_offset + (page_addr - range.host_addr) as u64;
        let dst = page_addr as *mut libc::c_void;
        let filled = match self.file.read_exact_at(&mut self.page, offset) {
            Ok(()) if is_zero(&self.page) => {
                // SAFETY: dst is a page inside a range registered with this uffd; the kernel
                // checks that it is still mapped and registered, and fills it atomically.
                unsafe { self.uffd.zeropage(dst, self.page_size, true) }.map(|_| ())
            }
            Ok(()) => {
                // SAFETY: as above; src is our own page-sized buffer, readable for the call.
                unsafe {
                    self.uffd
                        .copy(self.page.as_ptr().cast(), dst, self.page_size, true)
                }
                .map(|_| ())
            }
            Err(e) => {
                // Leaving the vCPU blocked forever is worse than a zero page; record why.
                self.record(format!("reading memory file at {offset:#x}: {e}"));
                // SAFETY: as above.
                unsafe { self.uffd.zeropage(dst, self.page_size, true) }.map(|_| ())
            }
        };
        if filled.is_err() {
            // Typically EEXIST: another fault on the same page was served first. Make sure the
            // faulting thread is not left waiting.
            let _ = self.uffd.wake(dst, self.page_size);
        }
    }

    fn record(&self, msg: String) {
        if let Ok(mut e) = self.error.lock() {
            e.get_or_insert(msg);
        }
    }
}
