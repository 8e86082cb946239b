//! A raw disk image (or a host block device) read and written with preadv/pwritev directly
//! between the file and guest memory.
//!
//! Requests run synchronously on the event loop thread. On this host a 4 KiB request costs
//! a few microseconds end to end (`scripts/bench virtio-blk`), so a thread pool or io_uring
//! would add more hand-off cost than it saves at queue depth 1; they become worth it for
//! deep queues on slow disks.

use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom};
use std::os::fd::AsRawFd;
use std::path::Path;

use vm_memory::VolatileSlice;

use super::{DiskBackend, DiskError};
use crate::devices::virtio::blk::SECTOR_SIZE;

pub struct RawFile {
    file: File,
    sectors: u64,
}

impl RawFile {
    /// Opens `path`; a read-only disk is opened read-only, so even a device bug cannot
    /// write it.
    pub fn open(path: &Path, read_only: bool) -> std::io::Result<Self> {
        let mut file = OpenOptions::new().read(true).write(!read_only).open(path)?;
        // Seeking to the end also sizes host block devices, whose metadata length is 0.
        let len = file.seek(SeekFrom::End(0))?;
        Ok(RawFile {
            file,
            sectors: len / SECTOR_SIZE,
        })
    }
}

#[derive(Clone, Copy)]
enum Direction {
    Read,
    Write,
}

/// Moves all of `bufs` at `offset`, resuming after short transfers.
fn transfer(
    file: &File,
    mut offset: u64,
    bufs: &[VolatileSlice<'_>],
    dir: Direction,
) -> Result<(), DiskError> {
    let what = match dir {
        Direction::Read => "read",
        Direction::Write => "write",
    };
    let err = |offset, source| DiskError::Io {
        what,
        offset,
        source,
    };
    // The guards keep each slice's pointer valid (and, for writes into guest memory, mark it
    // dirty if the memory tracks that) for as long as the syscall may use it.
    let guards: Vec<_> = bufs.iter().map(|b| b.ptr_guard_mut()).collect();
    let mut iovs: Vec<libc::iovec> = guards
        .iter()
        .map(|g| libc::iovec {
            iov_base: g.as_ptr().cast(),
            iov_len: g.len(),
        })
        .collect();
    let mut first = 0usize;
    while first < iovs.len() {
        if iovs[first].iov_len == 0 {
            first += 1;
            continue;
        }
        let rest = &iovs[first..];
        let count = rest.len().min(libc::UIO_MAXIOV as usize) as libc::c_int;
        let at = libc::off_t::try_from(offset)
            .map_err(|_| err(offset, std::io::Error::from_raw_os_error(libc::EOVERFLOW)))?;
        // SAFETY: every iovec describes guest memory that `guards` keeps mapped for this
        // call; `count` entries of `rest` are initialised; the fd is owned by `file`.
        let n = unsafe {
            match dir {
                Direction::Read => libc::preadv(file.as_raw_fd(), rest.as_ptr(), count, at),
                Direction::Write => libc::pwritev(file.as_raw_fd(), rest.as_ptr(), count, at),
            }
        };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(err(offset, e));
        }
        if n == 0 {
            // The file shrank under us.
            return Err(err(offset, std::io::ErrorKind::UnexpectedEof.into()));
        }
        let mut done = n as usize;
        offset += done as u64;
        while done > 0 && first < iovs.len() {
            let iov = &mut iovs[first];
            let step = done.min(iov.iov_len);
            // SAFETY: `step <= iov_len`, so the advanced base stays inside the same slice.
            iov.iov_base = unsafe { iov.iov_base.cast::<u8>().add(step).cast() };
            iov.iov_len -= step;
            done -= step;
            if iov.iov_len == 0 {
                first += 1;
            }
        }
    }
    Ok(())
}

impl DiskBackend for RawFile {
    fn capacity_sectors(&self) -> u64 {
        self.sectors
    }

    fn read_vectored(&mut self, offset: u64, bufs: &[VolatileSlice<'_>]) -> Result<(), DiskError> {
        transfer(&self.file, offset, bufs, Direction::Read)
    }

    fn write_vectored(&mut self, offset: u64, bufs: &[VolatileSlice<'_>]) -> Result<(), DiskError> {
        transfer(&self.file, offset, bufs, Direction::Write)
    }

    fn flush(&mut self) -> Result<(), DiskError> {
        self.file.sync_data().map_err(|source| DiskError::Io {
            what: "flush",
            offset: 0,
            source,
        })
    }

    fn can_discard(&self) -> bool {
        true
    }

    fn discard(&mut self, offset: u64, len: u64) -> Result<(), DiskError> {
        let err = |source| DiskError::Io {
            what: "discard",
            offset,
            source,
        };
        let (Ok(at), Ok(n)) = (libc::off_t::try_from(offset), libc::off_t::try_from(len)) else {
            return Err(err(std::io::Error::from_raw_os_error(libc::EOVERFLOW)));
        };
        // SAFETY: fallocate only takes integers and a file descriptor `self.file` owns.
        let rc = unsafe {
            libc::fallocate(
                self.file.as_raw_fd(),
                libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                at,
                n,
            )
        };
        if rc != 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EOPNOTSUPP) {
                return Err(DiskError::DiscardUnsupported);
            }
            return Err(err(e));
        }
        Ok(())
    }
}
