//! RAM extension, first part: a VM in Sz (ZombieLand's zombie state) gives its guest RAM to
//! memory servers. On entering Sz the VMM writes every page the guest holds locally to memd
//! slabs and drops it (MADV_DONTNEED), so the host keeps almost nothing of the sleeping VM;
//! after the wake each page comes back on first touch through userfaultfd.
//!
//! Guest RAM offset `o` (regions laid end to end) lives at slab `o / slab_size`. A page that
//! is not present locally is either untouched (zero, and so is its slab copy) or still on the
//! servers from an earlier Sz, so only present pages are written.

use std::sync::Arc;

use revenant_remote_mem::client::MemClient;
use revenant_template::pagemap::Pagemap;
use revenant_template::{serve_missing_pages, Pager};
use vm_memory::{GuestMemoryBackend, GuestMemoryRegion};

use crate::remote_template::{client_config, MemdPageSource, MemoryServers};
use crate::vstate::memory::{GuestMemoryMmap, PAGE_SIZE};

/// Pages checked in pagemap and written to the servers per batch.
const BATCH_PAGES: usize = 256;

#[derive(Debug, thiserror::Error)]
pub enum RamExtError {
    #[error("memory.remote: {0}")]
    Config(String),
    #[error("memory server: {0}")]
    Client(String),
    #[error("cannot {what}: {source}")]
    Io {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
}

/// Guest RAM regions as (host address, length, offset in the remote copy).
fn layout(memory: &GuestMemoryMmap) -> Vec<(usize, usize, u64)> {
    let mut offset = 0u64;
    memory
        .iter()
        .map(|r| {
            let entry = (r.as_ptr() as usize, r.len() as usize, offset);
            offset += r.len();
            entry
        })
        .collect()
}

/// A VM's guest RAM on memory servers.
pub struct RemoteRam {
    space: MemdPageSource,
    regions: Vec<(usize, usize, u64)>,
    pager: Option<Pager>,
    /// Bytes written to the servers over all evictions.
    pub bytes_out: u64,
}

impl RemoteRam {
    /// Connects and allocates slabs for all of `memory`.
    pub fn connect(servers: &MemoryServers, memory: &GuestMemoryMmap) -> Result<Self, RamExtError> {
        let cfg = client_config(
            &servers.servers,
            &servers.token_file,
            servers.replicas,
            None,
        )
        .map_err(|e| RamExtError::Config(e.to_string()))?;
        let client = MemClient::connect(&cfg).map_err(|e| RamExtError::Client(e.to_string()))?;
        let regions = layout(memory);
        let total: u64 = regions.iter().map(|r| r.1 as u64).sum();
        let space = MemdPageSource::new(Arc::new(client));
        space
            .allocate(total)
            .map_err(|e| RamExtError::Client(e.to_string()))?;
        Ok(RemoteRam {
            space,
            regions,
            pager: None,
            bytes_out: 0,
        })
    }

    /// Writes every locally present guest page to the servers and drops it. The vCPUs must be
    /// stopped. Returns the bytes written.
    pub fn evict_all(&mut self) -> Result<u64, RamExtError> {
        // Faults must reach us before any page goes: register first (MISSING mode leaves the
        // present pages alone).
        if self.pager.is_none() {
            let source = Box::new(self.space.clone());
            self.pager = Some(
                serve_missing_pages(&self.regions, source).map_err(|source| RamExtError::Io {
                    what: "register guest RAM with userfaultfd",
                    source,
                })?,
            );
        }
        let ps = PAGE_SIZE as usize;
        let pagemap = Pagemap::open(ps).map_err(|source| RamExtError::Io {
            what: "open /proc/self/pagemap",
            source,
        })?;
        let mut present = Vec::new();
        let mut written = 0u64;
        for &(host, len, base) in &self.regions {
            let pages = len / ps;
            let mut first = 0;
            while first < pages {
                let n = BATCH_PAGES.min(pages - first);
                pagemap
                    .has_data(host + first * ps, n, &mut present)
                    .map_err(|source| RamExtError::Io {
                        what: "read /proc/self/pagemap",
                        source,
                    })?;
                // Runs of present pages (at most a batch, 1 MiB) go out together.
                let mut i = 0;
                while i < present.len() {
                    if !present[i] {
                        i += 1;
                        continue;
                    }
                    let offset = base + ((first + i) * ps) as u64;
                    let mut run = 1;
                    while i + run < present.len() && present[i + run] {
                        run += 1;
                    }
                    let addr = host + (first + i) * ps;
                    // SAFETY: `addr..addr + run pages` is guest RAM, mapped for the VM's
                    // lifetime; the vCPUs are stopped, so nothing writes it while it is read.
                    let bytes = unsafe { std::slice::from_raw_parts(addr as *const u8, run * ps) };
                    self.space
                        .write_at(bytes, offset)
                        .map_err(|e| RamExtError::Client(e.to_string()))?;
                    written += (run * ps) as u64;
                    i += run;
                }
                first += n;
            }
            // SAFETY: the range is guest RAM owned by this VM; its pages now live on the
            // servers and come back through the userfaultfd pager on the next touch.
            if unsafe { libc::madvise(host as *mut libc::c_void, len, libc::MADV_DONTNEED) } != 0 {
                return Err(RamExtError::Io {
                    what: "drop guest RAM (madvise)",
                    source: std::io::Error::last_os_error(),
                });
            }
        }
        self.bytes_out += written;
        Ok(written)
    }

    /// Pages faulted back from the servers so far.
    pub fn faults(&self) -> u64 {
        self.pager.as_ref().map_or(0, Pager::faults)
    }
}
