//! Mapping a template's memory file into a restoring VMM.
//!
//! [`RestoreMode::Cow`] is the fork path: one `mmap(MAP_PRIVATE)` of the file per region, so
//! restore costs the same for a 128 MiB or a 128 GiB guest, and every clone shares the page
//! cache pages of the template until it writes to them. [`RestoreMode::Copy`] gives the VM
//! private anonymous memory filled from the file (the template file can then be deleted).

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::ptr::NonNull;

use crate::memory_file::{host_page_size, MemoryLayout};
use crate::on_demand::{OnDemandPager, PageSource, PagedRange};

/// How restored guest memory is backed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestoreMode {
    /// Private anonymous memory, filled from the file's data extents (holes are skipped).
    Copy,
    /// `MAP_PRIVATE` of the memory file: no copy, pages shared until written.
    Cow,
    /// Private anonymous memory registered with userfaultfd: each page is read from the file
    /// on first touch (by a vCPU, the VMM or KVM). Needs userfaultfd permission (root,
    /// CAP_SYS_PTRACE, access to /dev/userfaultfd, or vm.unprivileged_userfaultfd=1).
    OnDemand,
}

/// Why the memory file could not be mapped.
#[derive(Debug, thiserror::Error)]
pub enum MapError {
    /// The memory file named by the template does not exist.
    #[error("memory file {path} is missing")]
    MissingFile { path: PathBuf },
    /// The memory file is shorter than the layout in the state file says: truncated or replaced.
    #[error("memory file {path} is truncated: layout needs {expected} bytes, file has {found}")]
    TooShort {
        path: PathBuf,
        expected: u64,
        found: u64,
    },
    /// Memory reserved ahead of the restore (a prepared VM) does not match the template's
    /// layout; the caller restores into a fresh VM instead.
    #[error(
        "the prepared guest memory ({reserved}) does not match the template's layout ({wanted})"
    )]
    ReservedMismatch { reserved: String, wanted: String },
    /// The layout itself is inconsistent (crafted or from another host).
    #[error("memory layout is invalid: {0}")]
    InvalidLayout(String),
    /// The userfaultfd for on-demand restore could not be set up (permission, kernel support).
    #[error("on-demand restore: {0}")]
    Userfaultfd(#[source] io::Error),
    /// Opening, inspecting or reading the file failed.
    #[error("memory file {path}: {op}: {source}")]
    Io {
        path: PathBuf,
        op: &'static str,
        #[source]
        source: io::Error,
    },
    /// The kernel refused the mapping (address space or memory limits).
    #[error("mmap of {len} bytes for guest address {guest_addr:#x} failed: {source}")]
    Mmap {
        guest_addr: u64,
        len: usize,
        #[source]
        source: io::Error,
    },
}

/// One mapped guest region, unmapped on drop.
#[derive(Debug)]
pub struct MappedRegion {
    guest_addr: u64,
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: MappedRegion owns its mapping exclusively; it hands out raw pointers only, and the
// mapping stays valid wherever the owner lives, so moving it to or sharing it with another
// thread is sound. Synchronising guest memory accesses is the user's job, as for any raw pointer.
unsafe impl Send for MappedRegion {}
// SAFETY: see Send; &MappedRegion gives access to nothing but the pointer and length.
unsafe impl Sync for MappedRegion {}

impl MappedRegion {
    /// A fresh zero-filled private anonymous mapping (also what [`RestoreMode::Copy`] fills).
    pub fn anonymous(guest_addr: u64, len: usize) -> Result<Self, MapError> {
        Self::mmap(
            guest_addr,
            len,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    }

    fn mmap(
        guest_addr: u64,
        len: usize,
        flags: libc::c_int,
        fd: libc::c_int,
        offset: u64,
    ) -> Result<Self, MapError> {
        Self::mmap_at(None, guest_addr, len, flags, fd, offset)
    }

    /// Maps the memory file over `self` (MAP_FIXED: same address, same length), consuming it:
    /// whoever recorded this range (a KVM memory slot) sees the file's pages from now on.
    fn replace_with_file(self, fd: libc::c_int, offset: u64) -> Result<Self, MapError> {
        let region = Self::mmap_at(
            Some(self.ptr),
            self.guest_addr,
            self.len,
            libc::MAP_PRIVATE,
            fd,
            offset,
        )?;
        // The new mapping owns the range now; unmapping it again here would tear it down.
        std::mem::forget(self);
        Ok(region)
    }

    fn mmap_at(
        at: Option<NonNull<u8>>,
        guest_addr: u64,
        len: usize,
        flags: libc::c_int,
        fd: libc::c_int,
        offset: u64,
    ) -> Result<Self, MapError> {
        let mmap_err = |source| MapError::Mmap {
            guest_addr,
            len,
            source,
        };
        let offset = libc::off_t::try_from(offset)
            .map_err(|_| mmap_err(io::Error::from_raw_os_error(libc::EOVERFLOW)))?;
        let (addr, fixed) = match at {
            Some(p) => (p.as_ptr().cast::<libc::c_void>(), libc::MAP_FIXED),
            None => (std::ptr::null_mut(), 0),
        };
        // MAP_NORESERVE: guest RAM is mostly never written; don't charge it all to overcommit.
        // SAFETY: without `at`, a new mapping at an address the kernel chooses cannot alias
        // existing Rust objects; with it, the range is a MappedRegion being consumed by
        // `replace_with_file`, which no slice borrows. fd is -1 (anonymous) or an open file the
        // caller holds for this call.
        let ptr = unsafe {
            libc::mmap(
                addr,
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                flags | libc::MAP_NORESERVE | fixed,
                fd,
                offset,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(mmap_err(io::Error::last_os_error()));
        }
        let ptr = NonNull::new(ptr.cast::<u8>())
            .ok_or_else(|| mmap_err(io::Error::from_raw_os_error(libc::EFAULT)))?;
        Ok(Self {
            guest_addr,
            ptr,
            len,
        })
    }

    /// Guest physical address of the first byte.
    pub fn guest_addr(&self) -> u64 {
        self.guest_addr
    }

    /// Host address of the first byte, for `KVM_SET_USER_MEMORY_REGION` or vm-memory's
    /// `MmapRegion::build_raw`. Valid until this region is dropped.
    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the region is empty (never true for a region from a valid layout).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The region's bytes.
    ///
    /// # Safety
    /// Nothing (a running vCPU, another thread) may write to the region while the slice lives.
    pub unsafe fn as_slice(&self) -> &[u8] {
        // SAFETY: ptr..ptr+len is mapped readable while self lives; the caller rules out writers.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    /// The region's bytes, writable.
    ///
    /// # Safety
    /// No other access to the region (a running vCPU, another thread) while the slice lives.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn as_mut_slice(&self) -> &mut [u8] {
        // SAFETY: ptr..ptr+len is mapped writable while self lives; the caller guarantees
        // exclusive access for the slice's lifetime.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for MappedRegion {
    fn drop(&mut self) {
        // SAFETY: ptr/len is exactly the mapping created in `mmap`, owned by self; no slice from
        // as_slice can outlive self, so nothing uses the range after this.
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), self.len);
        }
    }
}

/// All regions of a restored guest, in layout order.
#[derive(Debug)]
pub struct GuestMemoryMapping {
    // Declared before `regions` so it is dropped first: the fault thread must stop before the
    // memory it fills is unmapped.
    pager: Option<OnDemandPager>,
    regions: Vec<MappedRegion>,
}

impl GuestMemoryMapping {
    /// The mapped regions, in layout order.
    pub fn regions(&self) -> &[MappedRegion] {
        &self.regions
    }

    /// For on-demand mappings: memory-file offsets of the pages loaded by faults so far (each
    /// faulting page and its fault-around window: the guest's working set); empty otherwise.
    pub fn faulted_offsets(&self) -> Vec<u64> {
        self.pager
            .as_ref()
            .map(OnDemandPager::faulted_offsets)
            .unwrap_or_default()
    }

    /// For on-demand mappings: page faults served so far.
    pub fn faults(&self) -> u64 {
        self.pager.as_ref().map_or(0, OnDemandPager::faults)
    }

    /// For on-demand mappings: waits until the prefetch list has been loaded.
    pub fn wait_prefetched(&self) {
        if let Some(p) = &self.pager {
            p.wait_prefetched();
        }
    }

    /// For [`RestoreMode::OnDemand`]: the first error the fault thread met (it then filled the
    /// page with zeros rather than leave the guest blocked). `None` when all is well.
    pub fn on_demand_error(&self) -> Option<String> {
        self.pager.as_ref().and_then(|p| p.error())
    }
}

impl MemoryLayout {
    /// Checks that the layout can be mapped on this host from a file of `file_len` bytes.
    pub fn validate(&self) -> Result<(), MapError> {
        let bad = |msg: String| Err(MapError::InvalidLayout(msg));
        let page = host_page_size() as u64;
        if self.page_size != page {
            return bad(format!(
                "saved with page size {}, this host uses {page}",
                self.page_size
            ));
        }
        for r in &self.regions {
            if r.size == 0 || r.size % page != 0 || r.file_offset % page != 0 {
                return bad(format!(
                    "region at guest address {:#x}: size {:#x} or file offset {:#x} is not a whole number of pages",
                    r.guest_addr, r.size, r.file_offset
                ));
            }
            let end = r.file_offset.checked_add(r.size);
            if end.is_none_or(|end| end > self.file_len) || usize::try_from(r.size).is_err() {
                return bad(format!(
                    "region at guest address {:#x} ends past the memory file length {:#x}",
                    r.guest_addr, self.file_len
                ));
            }
            if r.guest_addr.checked_add(r.size).is_none() {
                return bad(format!(
                    "region at guest address {:#x} wraps the address space",
                    r.guest_addr
                ));
            }
        }
        let mut by_addr: Vec<_> = self.regions.iter().collect();
        by_addr.sort_by_key(|r| r.guest_addr);
        for w in by_addr.windows(2) {
            if w[0].guest_addr + w[0].size > w[1].guest_addr {
                return bad(format!(
                    "regions at guest addresses {:#x} and {:#x} overlap",
                    w[0].guest_addr, w[1].guest_addr
                ));
            }
        }
        Ok(())
    }
}

/// Maps the memory file at `path` as described by `layout`.
pub fn map_memory(
    path: &Path,
    layout: &MemoryLayout,
    mode: RestoreMode,
) -> Result<GuestMemoryMapping, MapError> {
    map_memory_prefetched(path, layout, mode, &[])
}

/// [`map_memory`], and for [`RestoreMode::OnDemand`] the pages at the memory-file offsets in
/// `prefetch` (a recorded working set) are loaded in batches first
/// ([`GuestMemoryMapping::wait_prefetched`]).
pub fn map_memory_prefetched(
    path: &Path,
    layout: &MemoryLayout,
    mode: RestoreMode,
    prefetch: &[u64],
) -> Result<GuestMemoryMapping, MapError> {
    map_memory_into(path, layout, mode, prefetch, None)
}

/// [`map_memory_prefetched`] into `reserved`: private anonymous regions mapped earlier (a VM
/// prepared before the restore request, its KVM memory slots already pointing at them), one
/// per layout region with the same guest address and length. The memory ends up at the same
/// host addresses, so the memory slots stay valid: Cow maps the file over them, Copy and
/// OnDemand fill them. A mismatch is an error and `reserved` is dropped.
pub fn map_memory_into(
    path: &Path,
    layout: &MemoryLayout,
    mode: RestoreMode,
    prefetch: &[u64],
    reserved: Option<Vec<MappedRegion>>,
) -> Result<GuestMemoryMapping, MapError> {
    layout.validate()?;
    let mut reserved = match reserved {
        Some(r) => {
            let shape = |v: Vec<(u64, u64)>| format!("{v:x?}");
            let have: Vec<(u64, u64)> = r.iter().map(|m| (m.guest_addr, m.len as u64)).collect();
            let want: Vec<(u64, u64)> = layout
                .regions
                .iter()
                .map(|l| (l.guest_addr, l.size))
                .collect();
            if have != want {
                return Err(MapError::ReservedMismatch {
                    reserved: shape(have),
                    wanted: shape(want),
                });
            }
            Some(r.into_iter())
        }
        None => None,
    };
    let io_err = |op: &'static str| {
        move |source| MapError::Io {
            path: path.to_path_buf(),
            op,
            source,
        }
    };
    let file = File::open(path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => MapError::MissingFile {
            path: path.to_path_buf(),
        },
        _ => io_err("open")(e),
    })?;
    let found = file.metadata().map_err(io_err("stat"))?.len();
    if found < layout.file_len {
        return Err(MapError::TooShort {
            path: path.to_path_buf(),
            expected: layout.file_len,
            found,
        });
    }
    let mut regions = Vec::with_capacity(layout.regions.len());
    for r in &layout.regions {
        // validate() checked that size fits usize.
        let len = r.size as usize;
        let prepared = reserved.as_mut().and_then(Iterator::next);
        let fresh = |prepared: Option<MappedRegion>| match prepared {
            Some(p) => Ok(p),
            None => MappedRegion::anonymous(r.guest_addr, len),
        };
        let region = match (mode, prepared) {
            (RestoreMode::Cow, Some(p)) => p.replace_with_file(file.as_raw_fd(), r.file_offset)?,
            (RestoreMode::Cow, None) => MappedRegion::mmap(
                r.guest_addr,
                len,
                libc::MAP_PRIVATE,
                file.as_raw_fd(),
                r.file_offset,
            )?,
            (RestoreMode::OnDemand, p) => fresh(p)?,
            (RestoreMode::Copy, p) => {
                let region = fresh(p)?;
                // SAFETY: the mapping was just created and is not yet shared with anyone.
                let dst = unsafe { region.as_mut_slice() };
                copy_data_extents(&file, r.file_offset, dst).map_err(io_err("read"))?;
                region
            }
        };
        regions.push(region);
    }
    let pager = match mode {
        RestoreMode::OnDemand => {
            let pager = start_pager(&regions, layout, Box::new(file), prefetch)?;
            Some(pager)
        }
        RestoreMode::Copy | RestoreMode::Cow => None,
    };
    Ok(GuestMemoryMapping { pager, regions })
}

/// Guest memory filled on first touch from `source` (userfaultfd), laid out as `layout` says:
/// the `remote` restore mode, where the memory file's bytes live on memory servers.
pub fn map_memory_from(
    layout: &MemoryLayout,
    source: Box<dyn PageSource>,
    prefetch: &[u64],
) -> Result<GuestMemoryMapping, MapError> {
    layout.validate()?;
    let regions = layout
        .regions
        .iter()
        .map(|r| MappedRegion::anonymous(r.guest_addr, r.size as usize))
        .collect::<Result<Vec<_>, _>>()?;
    let pager = start_pager(&regions, layout, source, prefetch)?;
    Ok(GuestMemoryMapping {
        pager: Some(pager),
        regions,
    })
}

/// Registers the freshly mapped anonymous `regions` (laid out as `layout`) with a pager that
/// fills them from `source`, loading `prefetch` first.
fn start_pager(
    regions: &[MappedRegion],
    layout: &MemoryLayout,
    source: Box<dyn PageSource>,
    prefetch: &[u64],
) -> Result<OnDemandPager, MapError> {
    let ranges = regions
        .iter()
        .zip(&layout.regions)
        .map(|(m, r)| PagedRange {
            host_addr: m.as_ptr() as usize,
            len: m.len(),
            file_offset: r.file_offset,
        })
        .collect();
    OnDemandPager::start(source, ranges, host_page_size(), prefetch.to_vec())
        .map_err(MapError::Userfaultfd)
}

/// Reads the non-hole parts of `file[offset..offset + dst.len()]` into `dst`. Holes are left
/// alone: `dst` is fresh anonymous memory, already zero, and not touching it keeps those pages
/// unallocated. Filesystems without SEEK_DATA report the whole file as data, which is correct.
fn copy_data_extents(file: &File, offset: u64, dst: &mut [u8]) -> io::Result<()> {
    let end = offset + dst.len() as u64;
    let mut pos = offset;
    while pos < end {
        let Some(data) = seek(file, pos, libc::SEEK_DATA)? else {
            break; // only holes from here on
        };
        if data >= end {
            break;
        }
        let hole = seek(file, data, libc::SEEK_HOLE)?.unwrap_or(end).min(end);
        let from = (data - offset) as usize;
        let to = (hole - offset) as usize;
        file.read_exact_at(&mut dst[from..to], data)?;
        pos = hole;
    }
    Ok(())
}

/// lseek with SEEK_DATA/SEEK_HOLE; `None` when there is no more data (ENXIO).
fn seek(file: &File, pos: u64, whence: libc::c_int) -> io::Result<Option<u64>> {
    let pos =
        libc::off_t::try_from(pos).map_err(|_| io::Error::from_raw_os_error(libc::EOVERFLOW))?;
    // SAFETY: lseek on an open fd we own has no memory-safety preconditions; the file position
    // it moves is not used by the pread calls (read_exact_at) in this module.
    let r = unsafe { libc::lseek(file.as_raw_fd(), pos, whence) };
    if r < 0 {
        let e = io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::ENXIO) => Ok(None),
            _ => Err(e),
        };
    }
    Ok(Some(r as u64))
}
