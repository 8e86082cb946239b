//! The memory file of a VM whose guest RAM already is a file (MAP_SHARED file-backed memory,
//! e.g. Cloud Hypervisor-style `memory.zones` with `shared: true`, as kata's VM factory uses).
//!
//! Copying such memory page by page through the process would write every byte again; the
//! file already holds them. So the memory file is produced from the guest's files directly:
//!
//! * **linked**: when one file holds all the regions exactly where the template layout
//!   ([`crate::memory_file`]: regions one after the other at 2 MiB aligned offsets) puts them,
//!   the memory file is a hard link to it: O(1), whatever the size. The guest's memory and the
//!   template are then the same inode, so the caller must make sure the guest never writes
//!   it again (clones map it MAP_PRIVATE and would see those writes).
//! * **copied**: otherwise (several files, other offsets, another filesystem, a file that
//!   cannot be linked) each region's data extents (`SEEK_DATA`/`SEEK_HOLE`: holes stay holes)
//!   are copied in the kernel with `copy_file_range` (`pread`/`pwrite` where it is refused).
//!   The copy is independent of the guest's file.
//!
//! Either way the result is an ordinary memory file with an ordinary [`MemoryLayout`]: restore
//! does not know how it was made.

use std::fs::{self, File};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::os::unix::io::AsRawFd;
use std::path::Path;

use crate::atomic_file;
use crate::memory_file::{host_page_size, plan_layout, MemoryFileError, MemoryLayout};

/// A guest RAM region whose bytes are `size` bytes of `file` from `file_offset` (the guest
/// maps that range MAP_SHARED, so the file is always up to date).
#[derive(Debug, Clone, Copy)]
pub struct FileRegionRef<'a> {
    pub guest_addr: u64,
    pub size: u64,
    pub file: &'a File,
    pub file_offset: u64,
}

/// How [`save_memory_from_files`] produced the memory file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemoryFileOrigin {
    /// A hard link to the guest's file: the template and the guest memory are one inode.
    Linked,
    /// A copy of the guest's files' data.
    Copied,
}

/// Largest single `copy_file_range`/`pread` step: bounds the time one call holds the CPU
/// and the fallback's buffer.
const COPY_CHUNK: u64 = 16 << 20;

/// Writes the memory file at `path` for guest memory held in files; returns its layout and
/// whether it was linked or copied. With `sync`, the file (when copied) and the directory
/// entry are made durable.
///
/// The guest must not run while this is called (its file would change under the copy, or
/// after the link).
pub fn save_memory_from_files(
    regions: &[FileRegionRef<'_>],
    path: &Path,
    sync: bool,
) -> Result<(MemoryLayout, MemoryFileOrigin), MemoryFileError> {
    let page_size = host_page_size() as u64;
    let io_err = |op: &'static str| {
        move |source| MemoryFileError::Io {
            path: path.to_path_buf(),
            op,
            source,
        }
    };
    for r in regions {
        if r.size % page_size != 0 || r.file_offset % page_size != 0 {
            return Err(MemoryFileError::UnalignedFileRange {
                guest_addr: r.guest_addr,
                file_offset: r.file_offset,
                size: r.size,
                page_size,
            });
        }
    }
    let (entries, file_len) = plan_layout(regions.iter().map(|r| (r.guest_addr, r.size)))?;
    let layout = |data_bytes| MemoryLayout {
        page_size,
        file_len,
        regions: entries.clone(),
        data_bytes,
    };
    if linkable(regions, &entries, file_len) && link(regions[0].file, path, sync).is_ok() {
        // What the file has allocated, from one fstat: scanning its extents would cost
        // milliseconds for a large guest, for a number that is only reported.
        let data_bytes = regions[0]
            .file
            .metadata()
            .map(|m| (m.blocks() * 512).min(file_len))
            .unwrap_or(0);
        return Ok((layout(data_bytes), MemoryFileOrigin::Linked));
    }
    let (out, tmp) = atomic_file::create_temp(path).map_err(|(op, e)| io_err(op)(e))?;
    let copied = (|| {
        out.set_len(file_len).map_err(io_err("set length"))?;
        let mut bytes = 0;
        for (r, e) in regions.iter().zip(&entries) {
            for (at, len) in data_extents(r.file, r.file_offset, r.size)
                .map_err(io_err("find data (SEEK_DATA)"))?
            {
                copy_range(r.file, at, &out, e.file_offset + (at - r.file_offset), len)
                    .map_err(io_err("copy"))?;
                bytes += len;
            }
        }
        Ok(bytes)
    })();
    let bytes = match copied {
        Ok(n) => n,
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
    };
    atomic_file::commit(out, &tmp, path, sync).map_err(|(op, e)| io_err(op)(e))?;
    Ok((layout(bytes), MemoryFileOrigin::Copied))
}

/// Whether one file holds every region at exactly the offset the layout gives it, and is
/// long enough: then the file itself is a valid memory file.
fn linkable(
    regions: &[FileRegionRef<'_>],
    entries: &[crate::MemoryRegionEntry],
    file_len: u64,
) -> bool {
    let Some(first) = regions.first() else {
        return false;
    };
    let Ok(meta) = first.file.metadata() else {
        return false;
    };
    let same_inode = |f: &File| {
        f.metadata()
            .is_ok_and(|m| m.dev() == meta.dev() && m.ino() == meta.ino())
    };
    meta.is_file()
        && meta.len() >= file_len
        && regions
            .iter()
            .zip(entries)
            .all(|(r, e)| r.file_offset == e.file_offset && same_inode(r.file))
}

/// Hard-links the open `file` at `path` (through a temporary name and a rename, like every
/// template file). The link is made from the descriptor (`/proc/self/fd/N`), so it is the
/// inode the guest maps even if its path was renamed or replaced meanwhile; a file already
/// unlinked cannot be linked (the caller then copies).
fn link(file: &File, path: &Path, sync: bool) -> io::Result<()> {
    let tmp = atomic_file::temp_path(path);
    match fs::remove_file(&tmp) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let from = std::ffi::CString::new(format!("/proc/self/fd/{}", file.as_raw_fd()))
        .map_err(io::Error::other)?;
    let to = std::ffi::CString::new(tmp.as_os_str().as_bytes()).map_err(io::Error::other)?;
    // SAFETY: both paths are NUL-terminated strings that outlive the call; linkat only reads
    // them.
    let rc = unsafe {
        libc::linkat(
            libc::AT_FDCWD,
            from.as_ptr(),
            libc::AT_FDCWD,
            to.as_ptr(),
            libc::AT_SYMLINK_FOLLOW,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    if let Err(e) = fs::rename(&tmp, path) {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    // Renaming a link over another link of the same inode (re-snapshot of the same memory
    // into the same place) succeeds without doing anything: the temporary name stays.
    if fs::symlink_metadata(&tmp).is_ok() {
        let _ = fs::remove_file(&tmp);
    }
    if sync {
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
        File::open(dir.unwrap_or_else(|| Path::new(".")))?.sync_all()?;
    }
    Ok(())
}

/// The data extents (offset, length) of `file` within `start..start + len`: everything but
/// its holes. A filesystem without SEEK_DATA reports the whole range as data.
fn data_extents(file: &File, start: u64, len: u64) -> io::Result<Vec<(u64, u64)>> {
    let end = start + len;
    let fd = file.as_raw_fd();
    let seek = |at: u64, whence| -> io::Result<Option<u64>> {
        let at = libc::off_t::try_from(at).map_err(io::Error::other)?;
        // SAFETY: lseek on a descriptor we own has no memory-safety preconditions. It moves
        // the file position, which nothing else uses (the guest maps the file).
        let r = unsafe { libc::lseek(fd, at, whence) };
        if r >= 0 {
            return Ok(Some(r as u64));
        }
        match io::Error::last_os_error() {
            // No data at or after `at`.
            e if e.raw_os_error() == Some(libc::ENXIO) => Ok(None),
            e => Err(e),
        }
    };
    let mut extents = Vec::new();
    let mut at = start;
    while at < end {
        let data = match seek(at, libc::SEEK_DATA) {
            Ok(Some(d)) => d,
            Ok(None) => break,
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) && at == start => {
                return Ok(vec![(start, len)]);
            }
            Err(e) => return Err(e),
        };
        if data >= end {
            break;
        }
        let hole = seek(data, libc::SEEK_HOLE)?.unwrap_or(end).min(end);
        extents.push((data, hole - data));
        at = hole;
    }
    Ok(extents)
}

/// Copies `len` bytes from `src` at `from` to `dst` at `to`, in the kernel where it can.
fn copy_range(src: &File, from: u64, dst: &File, to: u64, len: u64) -> io::Result<()> {
    let (mut off_in, mut off_out) = (
        libc::loff_t::try_from(from).map_err(io::Error::other)?,
        libc::loff_t::try_from(to).map_err(io::Error::other)?,
    );
    let mut left = len;
    while left > 0 {
        let step = left.min(COPY_CHUNK) as usize;
        // SAFETY: both descriptors are open files we hold; the offsets are valid pointers
        // to loff_t values that live across the call, which updates them.
        let n = unsafe {
            libc::copy_file_range(
                src.as_raw_fd(),
                &mut off_in,
                dst.as_raw_fd(),
                &mut off_out,
                step,
                0,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            return match e.raw_os_error() {
                // Not between these files (old kernels across filesystems, some special
                // filesystems): copy through user space.
                Some(libc::EXDEV | libc::ENOSYS | libc::EOPNOTSUPP | libc::EINVAL) => {
                    copy_by_hand(src, off_in as u64, dst, off_out as u64, left)
                }
                _ => Err(e),
            };
        }
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the guest's memory file is shorter than its memory",
            ));
        }
        left -= n as u64;
    }
    Ok(())
}

fn copy_by_hand(src: &File, from: u64, dst: &File, to: u64, len: u64) -> io::Result<()> {
    let mut buf = vec![0u8; len.min(COPY_CHUNK) as usize];
    let mut done = 0;
    while done < len {
        let n = (len - done).min(buf.len() as u64) as usize;
        src.read_exact_at(&mut buf[..n], from + done)?;
        dst.write_all_at(&buf[..n], to + done)?;
        done += n as u64;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;

    use super::*;
    use crate::memory_file::REGION_FILE_ALIGN;
    use crate::memory_map::{map_memory, RestoreMode};

    const MIB: u64 = 1 << 20;

    fn file_with(dir: &Path, name: &str, len: u64, data: &[(u64, u8)]) -> File {
        let f = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(dir.join(name))
            .unwrap();
        f.set_len(len).unwrap();
        for &(at, byte) in data {
            f.write_all_at(&[byte; 4096], at).unwrap();
        }
        f
    }

    fn read_guest(mapping: &crate::GuestMemoryMapping, guest_addr: u64) -> u8 {
        let r = mapping
            .regions()
            .iter()
            .find(|r| r.guest_addr() <= guest_addr && guest_addr < r.guest_addr() + r.len() as u64)
            .unwrap();
        // SAFETY: the offset is inside the live mapping (found above).
        unsafe { *r.as_ptr().add((guest_addr - r.guest_addr()) as usize) }
    }

    #[test]
    fn one_file_in_layout_order_is_linked() {
        let dir = tempfile::tempdir().unwrap();
        let zone = file_with(dir.path(), "zone", 8 * MIB, &[(0, 1), (5 * MIB, 2)]);
        let regions = [FileRegionRef {
            guest_addr: 0,
            size: 8 * MIB,
            file: &zone,
            file_offset: 0,
        }];
        let path = dir.path().join("memory.bin");
        let (layout, origin) = save_memory_from_files(&regions, &path, false).unwrap();
        assert_eq!(origin, MemoryFileOrigin::Linked);
        assert_eq!(layout.file_len, 8 * MIB);
        assert_eq!(layout.data_bytes, 2 * 4096);
        let (a, b) = (fs::metadata(&path).unwrap(), zone.metadata().unwrap());
        assert_eq!((a.dev(), a.ino()), (b.dev(), b.ino()));
        // Linking the same inode again over itself leaves no temporary file behind.
        save_memory_from_files(&regions, &path, true).unwrap();
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 2, "{names:?}");
        let m = map_memory(&path, &layout, RestoreMode::Cow).unwrap();
        assert_eq!(read_guest(&m, 5 * MIB), 2);
    }

    #[test]
    fn split_zones_are_copied_to_the_layout_keeping_holes() {
        let dir = tempfile::tempdir().unwrap();
        // Two zones, the first 3 MiB (so the second region lands at the 4 MiB file offset,
        // not 3 MiB), the second split in two pieces like a zone across the MMIO gap.
        let a = file_with(dir.path(), "a", 3 * MIB, &[(MIB, 0xa1)]);
        let b = file_with(dir.path(), "b", 4 * MIB, &[(0, 0xb1), (3 * MIB, 0xb2)]);
        let regions = [
            FileRegionRef {
                guest_addr: 0,
                size: 3 * MIB,
                file: &a,
                file_offset: 0,
            },
            FileRegionRef {
                guest_addr: 3 * MIB,
                size: 2 * MIB,
                file: &b,
                file_offset: 0,
            },
            FileRegionRef {
                guest_addr: 64 * MIB,
                size: 2 * MIB,
                file: &b,
                file_offset: 2 * MIB,
            },
        ];
        let path = dir.path().join("memory.bin");
        let (layout, origin) = save_memory_from_files(&regions, &path, false).unwrap();
        assert_eq!(origin, MemoryFileOrigin::Copied);
        let offsets: Vec<u64> = layout.regions.iter().map(|r| r.file_offset).collect();
        assert_eq!(offsets, vec![0, 4 * MIB, 6 * MIB]);
        assert!(offsets.iter().all(|o| o % REGION_FILE_ALIGN == 0));
        assert_eq!(layout.file_len, 8 * MIB);
        assert_eq!(layout.data_bytes, 3 * 4096);
        // Only the data pages take space (the rest are holes).
        assert!(fs::metadata(&path).unwrap().blocks() * 512 <= 64 * 1024);
        let m = map_memory(&path, &layout, RestoreMode::Cow).unwrap();
        assert_eq!(read_guest(&m, MIB), 0xa1);
        assert_eq!(read_guest(&m, 3 * MIB), 0xb1);
        assert_eq!(read_guest(&m, 64 * MIB + MIB), 0xb2);
        assert_eq!(read_guest(&m, 2 * MIB), 0);
        // The copy is independent of the zone file.
        b.write_all_at(&[0xff; 4096], 0).unwrap();
        let m = map_memory(&path, &layout, RestoreMode::Cow).unwrap();
        assert_eq!(read_guest(&m, 3 * MIB), 0xb1);
    }

    #[test]
    fn a_file_on_another_filesystem_is_copied() {
        let Ok(shm) = tempfile::tempdir_in("/dev/shm") else {
            println!("SKIP: no /dev/shm to put the guest's file on another filesystem");
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let same_fs =
            fs::metadata(shm.path()).unwrap().dev() == fs::metadata(dir.path()).unwrap().dev();
        let zone = file_with(shm.path(), "zone", 4 * MIB, &[(MIB, 9)]);
        let regions = [FileRegionRef {
            guest_addr: 0,
            size: 4 * MIB,
            file: &zone,
            file_offset: 0,
        }];
        let path = dir.path().join("memory.bin");
        let (layout, origin) = save_memory_from_files(&regions, &path, false).unwrap();
        if !same_fs {
            assert_eq!(origin, MemoryFileOrigin::Copied);
        }
        assert_eq!(layout.data_bytes, 4096);
        let m = map_memory(&path, &layout, RestoreMode::Cow).unwrap();
        assert_eq!(read_guest(&m, MIB), 9);
    }

    #[test]
    fn a_file_at_other_offsets_is_copied_and_bad_ranges_refused() {
        let dir = tempfile::tempdir().unwrap();
        let f = file_with(dir.path(), "z", 4 * MIB, &[(3 * MIB, 7)]);
        let at_offset = [FileRegionRef {
            guest_addr: 0,
            size: 2 * MIB,
            file: &f,
            file_offset: 2 * MIB,
        }];
        let path = dir.path().join("memory.bin");
        let (layout, origin) = save_memory_from_files(&at_offset, &path, false).unwrap();
        assert_eq!(origin, MemoryFileOrigin::Copied);
        let m = map_memory(&path, &layout, RestoreMode::Cow).unwrap();
        assert_eq!(read_guest(&m, MIB), 7);
        let unaligned = [FileRegionRef {
            guest_addr: 0,
            size: 4096,
            file: &f,
            file_offset: 100,
        }];
        assert!(matches!(
            save_memory_from_files(&unaligned, &path, false),
            Err(MemoryFileError::UnalignedFileRange { .. })
        ));
    }
}
