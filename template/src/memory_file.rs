//! The memory file: guest RAM regions laid out one after the other in a sparse file.
//!
//! Only pages that hold data are written; everything else stays a hole, which reads back as
//! zeros and costs no space on tmpfs. Each region starts at a 2 MiB aligned file offset so a
//! region can later be mapped from hugetlbfs or as transparent huge pages.

use std::fs::{self, File};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use serde::{Deserialize, Serialize};

use crate::atomic_file;
use crate::pagemap::{is_zero, Pagemap};

/// Alignment of each region's file offset: the x86_64 huge page size.
pub const REGION_FILE_ALIGN: u64 = 2 << 20;
/// Pages per pagemap read: bounds the scratch buffer to 128 KiB whatever the region size.
const SCAN_CHUNK_PAGES: usize = 16 * 1024;

/// One guest RAM region inside the memory file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemoryRegionEntry {
    /// Guest physical address of the region's first byte.
    pub guest_addr: u64,
    /// Region size in bytes (a multiple of the page size).
    pub size: u64,
    /// Offset of the region's first byte in the memory file (a multiple of [`REGION_FILE_ALIGN`]).
    pub file_offset: u64,
}

/// Where each guest region lives in the memory file; saved in the template manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemoryLayout {
    /// Host page size at save time; restore refuses a different one.
    pub page_size: u64,
    /// Length of the memory file (sparse: most of it may be holes).
    pub file_len: u64,
    /// The regions, in the order they were given to [`save_memory`].
    pub regions: Vec<MemoryRegionEntry>,
    /// Bytes actually written (pages that held non-zero data). For a memory file made from the
    /// guest's own files ([`crate::file_memory`]): the data extents copied, or the linked
    /// file's allocated size. Informational.
    pub data_bytes: u64,
}

/// A guest RAM region to save: its guest physical address and its bytes in this process.
#[derive(Debug, Clone, Copy)]
pub struct GuestRegionRef<'a> {
    guest_addr: u64,
    data: &'a [u8],
}

impl<'a> GuestRegionRef<'a> {
    /// A region whose host memory is `data`. `data` must start on a page boundary and be a
    /// whole number of pages long (mmap'd guest memory always is).
    pub fn new(guest_addr: u64, data: &'a [u8]) -> Self {
        Self { guest_addr, data }
    }

    /// A region from a raw host mapping, as the VMM holds guest memory.
    ///
    /// # Safety
    /// `ptr..ptr+len` must be a live mapping readable for `'a`, and nothing may write to it
    /// while the region is saved (the VM is paused, its vCPUs stopped).
    pub unsafe fn from_raw_parts(guest_addr: u64, ptr: *const u8, len: usize) -> Self {
        // SAFETY: the caller guarantees the range is mapped, readable and not mutated for 'a.
        let data = unsafe { std::slice::from_raw_parts(ptr, len) };
        Self { guest_addr, data }
    }
}

/// How [`save_memory`] finds the pages worth writing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageScan {
    /// Ask `/proc/self/pagemap` which pages are present or swapped and read only those (then
    /// skip the all-zero ones). Correct only for anonymous guest memory, where a page that was
    /// never touched is zero. Memory that is itself a MAP_PRIVATE mapping of a template (a
    /// forked VM) has untouched pages that hold template data but are not present: use
    /// [`PageScan::AllPages`] for it.
    Pagemap,
    /// Read every page and skip the all-zero ones. Works for any memory, costs a full read.
    AllPages,
}

/// Options for [`save_memory`].
#[derive(Debug, Clone, Copy)]
pub struct SaveOptions {
    pub scan: PageScan,
    /// fsync the memory file and its directory before returning (not useful on tmpfs).
    pub sync: bool,
    /// Threads that copy pages into the file (0 and 1 both mean the calling thread only). Worth
    /// it for guests with tens of MiB of data on hosts with idle cores: the copy into the page
    /// cache is CPU bound.
    pub threads: usize,
}

impl Default for SaveOptions {
    fn default() -> Self {
        Self {
            scan: PageScan::Pagemap,
            sync: false,
            threads: 1,
        }
    }
}

/// Why guest memory could not be saved.
#[derive(Debug, thiserror::Error)]
pub enum MemoryFileError {
    /// A region's host memory does not start on a page boundary or is not whole pages long.
    #[error("region at guest address {guest_addr:#x}: host memory {host_addr:#x}+{len:#x} is not page aligned (page size {page_size})")]
    Unaligned {
        guest_addr: u64,
        host_addr: usize,
        len: usize,
        page_size: usize,
    },
    /// A file-backed region's range in its file is not whole pages.
    #[error("region at guest address {guest_addr:#x}: file range {file_offset:#x}+{size:#x} is not page aligned (page size {page_size})")]
    UnalignedFileRange {
        guest_addr: u64,
        file_offset: u64,
        size: u64,
        page_size: u64,
    },
    /// Two regions claim the same guest physical addresses.
    #[error("regions at guest addresses {first:#x} and {second:#x} overlap")]
    OverlappingRegions { first: u64, second: u64 },
    /// `/proc/self/pagemap` could not be opened or read.
    #[error("reading /proc/self/pagemap: {0}")]
    Pagemap(#[source] std::io::Error),
    /// The memory file could not be created, sized, written or renamed.
    #[error("memory file {path}: {op}: {source}")]
    Io {
        path: PathBuf,
        op: &'static str,
        #[source]
        source: std::io::Error,
    },
}

/// The host page size.
pub fn host_page_size() -> usize {
    // SAFETY: sysconf has no memory-safety preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(n).ok().filter(|&n| n > 0).unwrap_or(4096)
}

/// Writes `regions` to a new sparse memory file at `path` and returns where each region went.
///
/// The file is written under a temporary name and renamed over `path`, so VMs that still map a
/// previous file at `path` keep their (now unlinked) copy intact.
pub fn save_memory(
    regions: &[GuestRegionRef<'_>],
    path: &Path,
    opts: &SaveOptions,
) -> Result<MemoryLayout, MemoryFileError> {
    let page_size = host_page_size();
    let io_err = |op: &'static str| {
        move |source| MemoryFileError::Io {
            path: path.to_path_buf(),
            op,
            source,
        }
    };
    for r in regions {
        let host_addr = r.data.as_ptr() as usize;
        if host_addr % page_size != 0 || r.data.len() % page_size != 0 {
            return Err(MemoryFileError::Unaligned {
                guest_addr: r.guest_addr,
                host_addr,
                len: r.data.len(),
                page_size,
            });
        }
    }
    let (entries, file_len) =
        plan_layout(regions.iter().map(|r| (r.guest_addr, r.data.len() as u64)))?;

    let pagemap = match opts.scan {
        PageScan::Pagemap => Some(Pagemap::open(page_size).map_err(MemoryFileError::Pagemap)?),
        PageScan::AllPages => None,
    };
    let (file, tmp) = atomic_file::create_temp(path).map_err(|(op, e)| io_err(op)(e))?;
    let written = (|| {
        // Sizing first makes every page we don't write a hole.
        file.set_len(file_len).map_err(io_err("set length"))?;
        let pieces = split_into_pieces(regions, &entries, opts.threads.max(1));
        let data_bytes = write_pieces(&file, &pieces, page_size, pagemap.as_ref(), opts.threads)
            .map_err(|err| match err {
                RegionWriteError::Pagemap(e) => MemoryFileError::Pagemap(e),
                RegionWriteError::Write(e) => io_err("write")(e),
            })?;
        Ok(data_bytes)
    })();
    let data_bytes = match written {
        Ok(n) => n,
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
    };
    atomic_file::commit(file, &tmp, path, opts.sync).map_err(|(op, e)| io_err(op)(e))?;
    Ok(MemoryLayout {
        page_size: page_size as u64,
        file_len,
        regions: entries,
        data_bytes,
    })
}

/// Where regions of the given `(guest_addr, size)` go in a memory file: one after the other,
/// in the order given, each at a [`REGION_FILE_ALIGN`]-aligned offset. Returns the entries
/// and the file length. Every writer of memory files lays them out with this, so a template
/// reads the same whichever way its memory file was produced.
pub(crate) fn plan_layout(
    regions: impl Iterator<Item = (u64, u64)>,
) -> Result<(Vec<MemoryRegionEntry>, u64), MemoryFileError> {
    let mut entries = Vec::new();
    let mut file_len = 0u64;
    for (guest_addr, size) in regions {
        let file_offset = file_len.next_multiple_of(REGION_FILE_ALIGN);
        entries.push(MemoryRegionEntry {
            guest_addr,
            size,
            file_offset,
        });
        file_len = file_offset + size;
    }
    // Refuse now what restore would refuse later (overlapping or wrapping guest ranges).
    let mut by_addr: Vec<_> = entries.iter().collect();
    by_addr.sort_by_key(|e| e.guest_addr);
    for w in by_addr.windows(2) {
        if w[0]
            .guest_addr
            .checked_add(w[0].size)
            .is_none_or(|end| end > w[1].guest_addr)
        {
            return Err(MemoryFileError::OverlappingRegions {
                first: w[0].guest_addr,
                second: w[1].guest_addr,
            });
        }
    }
    Ok((entries, file_len))
}

/// A slice of guest memory and where it goes in the file: the unit of work of one thread.
struct Piece<'a> {
    data: &'a [u8],
    file_offset: u64,
}

/// Smallest piece worth a thread of its own: below this, thread start-up dominates.
const MIN_PIECE: usize = 8 << 20;

/// Cuts the regions into about `threads` pieces of similar size (2 MiB multiples, so pieces
/// keep huge page boundaries), never smaller than [`MIN_PIECE`].
fn split_into_pieces<'a>(
    regions: &[GuestRegionRef<'a>],
    entries: &[MemoryRegionEntry],
    threads: usize,
) -> Vec<Piece<'a>> {
    let total: usize = regions.iter().map(|r| r.data.len()).sum();
    let target = (total / threads)
        .max(MIN_PIECE)
        .next_multiple_of(REGION_FILE_ALIGN as usize);
    let mut pieces = Vec::new();
    for (r, e) in regions.iter().zip(entries) {
        for (i, data) in r.data.chunks(target).enumerate() {
            pieces.push(Piece {
                data,
                file_offset: e.file_offset + (i * target) as u64,
            });
        }
    }
    pieces
}

/// Writes all pieces, on up to `threads` threads; returns the bytes written.
fn write_pieces(
    file: &File,
    pieces: &[Piece<'_>],
    page_size: usize,
    pagemap: Option<&Pagemap>,
    threads: usize,
) -> Result<u64, RegionWriteError> {
    let write = |p: &Piece<'_>| write_region(file, p.data, p.file_offset, page_size, pagemap);
    let threads = threads.min(pieces.len());
    if threads <= 1 {
        return pieces.iter().map(write).sum();
    }
    let next = AtomicUsize::new(0);
    let worker = || -> Result<u64, RegionWriteError> {
        let mut bytes = 0;
        while let Some(p) = pieces.get(next.fetch_add(1, Ordering::Relaxed)) {
            bytes += write(p)?;
        }
        Ok(bytes)
    };
    std::thread::scope(|s| {
        let handles: Vec<_> = (1..threads).map(|_| s.spawn(worker)).collect();
        let mut total = worker()?;
        for h in handles {
            // A worker only panics if write_region has a bug; surface it rather than hide it.
            total += h.join().unwrap_or_else(|e| std::panic::resume_unwind(e))?;
        }
        Ok(total)
    })
}

enum RegionWriteError {
    Pagemap(std::io::Error),
    Write(std::io::Error),
}

/// Writes the data pages of one region as runs of contiguous pages (one pwrite per run: the
/// run is contiguous in host memory and in the file, so pwritev would gain nothing).
/// Returns the bytes written.
fn write_region(
    file: &File,
    data: &[u8],
    file_offset: u64,
    page_size: usize,
    pagemap: Option<&Pagemap>,
) -> Result<u64, RegionWriteError> {
    let pages = data.len() / page_size;
    let mut flags = Vec::with_capacity(SCAN_CHUNK_PAGES.min(pages));
    let mut run: Option<usize> = None; // first page of the current run of data pages
    let mut written = 0u64;
    let mut flush = |start: usize, end: usize| -> Result<(), RegionWriteError> {
        let bytes = &data[start * page_size..end * page_size];
        file.write_all_at(bytes, file_offset + (start * page_size) as u64)
            .map_err(RegionWriteError::Write)?;
        written += bytes.len() as u64;
        Ok(())
    };
    let mut chunk_start = 0;
    while chunk_start < pages {
        let n = SCAN_CHUNK_PAGES.min(pages - chunk_start);
        match pagemap {
            Some(pm) => pm
                .has_data(
                    data.as_ptr() as usize + chunk_start * page_size,
                    n,
                    &mut flags,
                )
                .map_err(RegionWriteError::Pagemap)?,
            None => {
                flags.clear();
                flags.resize(n, true);
            }
        }
        for (i, &maybe_data) in flags.iter().enumerate() {
            let page = chunk_start + i;
            let has_data = maybe_data && !is_zero(&data[page * page_size..(page + 1) * page_size]);
            match (has_data, run) {
                (true, None) => run = Some(page),
                (false, Some(start)) => {
                    flush(start, page)?;
                    run = None;
                }
                _ => {}
            }
        }
        chunk_start += n;
    }
    if let Some(start) = run {
        flush(start, pages)?;
    }
    Ok(written)
}
