//! Unix-socket helpers for the hybrid vsock backend: a connect that never blocks the event
//! loop, and what a path the device should listen on currently holds.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::UnixStream;
use std::path::Path;

/// Connects to the Unix stream socket at `path` without ever blocking: a listener whose
/// backlog is full gives `WouldBlock` instead of stalling the event loop (std's
/// `UnixStream::connect` would block there). The stream comes back non-blocking.
pub fn connect_nonblocking(path: &Path) -> io::Result<UnixStream> {
    let bytes = path.as_os_str().as_bytes();
    // SAFETY: sockaddr_un is plain old data; all zeroes is a valid (empty) value.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    // The path needs a terminating NUL inside sun_path.
    if bytes.is_empty() || bytes.len() >= addr.sun_path.len() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "socket path is empty or too long",
        ));
    }
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    for (dst, src) in addr.sun_path.iter_mut().zip(bytes) {
        *dst = *src as libc::c_char;
    }
    // SAFETY: socket() takes no pointers; the result is checked before use.
    let fd = unsafe {
        libc::socket(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a socket just created and owned by nobody else; OwnedFd closes it on
    // every path from here.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    let len = std::mem::size_of::<libc::sa_family_t>() + bytes.len() + 1;
    // SAFETY: `addr` is a valid sockaddr_un that outlives the call and `len` (family, path
    // and its NUL) is within its size; connect() only reads it.
    let ret = unsafe {
        libc::connect(
            owned.as_raw_fd(),
            std::ptr::addr_of!(addr).cast::<libc::sockaddr>(),
            len as libc::socklen_t,
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(UnixStream::from(owned))
}

/// What a path the device would listen on holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PathStatus {
    Free,
    /// A socket nobody listens on any more (a VMM that died): safe to replace.
    StaleSocket,
    /// A socket another process listens on.
    LiveSocket,
    NotASocket,
}

pub fn path_status(path: &Path) -> io::Result<PathStatus> {
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(PathStatus::Free),
        Err(e) => Err(e),
        Ok(m) if !m.file_type().is_socket() => Ok(PathStatus::NotASocket),
        Ok(_) => match connect_nonblocking(path) {
            Ok(_) => Ok(PathStatus::LiveSocket),
            // A full backlog still means someone listens.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(PathStatus::LiveSocket),
            Err(_) => Ok(PathStatus::StaleSocket),
        },
    }
}

/// Makes a descriptor non-blocking (the timerfd vmm-sys-util creates is blocking).
pub fn set_nonblocking(fd: &impl AsRawFd) -> io::Result<()> {
    let fd = fd.as_raw_fd();
    // SAFETY: F_GETFL on a descriptor the caller owns reads no memory of ours.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: F_SETFL with an int argument on the same descriptor; no memory involved.
    if unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    #[test]
    fn connects_and_classifies_paths() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        assert_eq!(path_status(&path).unwrap(), PathStatus::Free);
        assert!(connect_nonblocking(&path).is_err());
        let listener = UnixListener::bind(&path).unwrap();
        assert_eq!(path_status(&path).unwrap(), PathStatus::LiveSocket);
        let _s = connect_nonblocking(&path).unwrap();
        assert!(listener.accept().is_ok());
        drop(listener);
        assert_eq!(path_status(&path).unwrap(), PathStatus::StaleSocket);
        let file = dir.path().join("f");
        std::fs::write(&file, b"x").unwrap();
        assert_eq!(path_status(&file).unwrap(), PathStatus::NotASocket);
        let long = dir.path().join("x".repeat(200));
        assert!(connect_nonblocking(&long).is_err());
    }
}
