//! The userfaultfd call the engine makes that the `userfaultfd` crate does not wrap:
//! UFFDIO_COPY with `UFFDIO_COPY_MODE_WP`, which maps a page write-protected in the same
//! step, so no write can slip in between the fill and the protection.

use std::io;
use std::os::fd::AsRawFd;

use userfaultfd::Uffd;

/// Copies `len` bytes from `src` to the registered, missing range at `dst`, mapped
/// write-protected when `write_protect`, without waking the threads waiting on it. Returns
/// the bytes copied (a short copy means a page in the range was present already: EEXIST).
///
/// # Safety
/// `src` must be readable for `len` bytes; `dst..dst + len` must lie in a range registered
/// with `uffd` in missing and write-protect modes.
pub unsafe fn copy_pages(
    uffd: &Uffd,
    src: *const u8,
    dst: usize,
    len: usize,
    write_protect: bool,
) -> io::Result<usize> {
    // Never wakes the faulting thread: the caller records the page as resident first and
    // wakes it then, so nothing the guest does next can find the page mapped but unrecorded.
    let wp = if write_protect {
        userfaultfd_sys::UFFDIO_COPY_MODE_WP
    } else {
        0
    } | userfaultfd_sys::UFFDIO_COPY_MODE_DONTWAKE;
    let mut copy = userfaultfd_sys::uffdio_copy {
        dst: dst as u64,
        src: src as u64,
        len: len as u64,
        mode: wp,
        copy: 0,
    };
    // SAFETY: `copy` is a valid uffdio_copy for the duration of the call; the caller
    // guarantees the source and destination ranges.
    let r = unsafe {
        libc::ioctl(
            uffd.as_raw_fd(),
            userfaultfd_sys::UFFDIO_COPY as _,
            &mut copy as *mut userfaultfd_sys::uffdio_copy,
        )
    };
    if r == 0 {
        return Ok(copy.copy.max(0) as usize);
    }
    let err = io::Error::last_os_error();
    match err.raw_os_error() {
        // Partially copied (EAGAIN) or stopped at a present page (EEXIST after some pages).
        Some(libc::EAGAIN) | Some(libc::EEXIST) if copy.copy > 0 => Ok(copy.copy as usize),
        Some(libc::EEXIST) => Ok(0),
        _ => Err(err),
    }
}
