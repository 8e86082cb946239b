//! A pseudo-terminal for the serial console (`serial.mode: "Pty"`): the guest's output goes
//! to the master side and what a client types on the slave side (`/dev/pts/N`, reported as
//! `serial.file` in `vm.info`) reaches the guest. The VMM keeps the slave open itself, in raw
//! mode, so output written before a client attaches is kept (up to the terminal's buffer)
//! and a client coming and going does not hang up the master.

use std::ffi::CStr;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd};
use std::path::PathBuf;

/// The master side (what the VMM reads and writes), the slave side it keeps open, and the
/// slave's path.
pub struct Pty {
    pub master: File,
    _slave: File,
    pub path: PathBuf,
}

impl Pty {
    pub fn open() -> io::Result<Pty> {
        // SAFETY: posix_openpt has no memory-safety preconditions; the result is checked.
        let fd = unsafe { libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh descriptor nothing else owns.
        let master = unsafe { File::from_raw_fd(fd) };
        // SAFETY: grantpt and unlockpt only take the master descriptor.
        if unsafe { libc::grantpt(fd) } != 0 || unsafe { libc::unlockpt(fd) } != 0 {
            return Err(io::Error::last_os_error());
        }
        let mut name = [0 as libc::c_char; 128];
        // SAFETY: `name` is writable for its length, which is passed; ptsname_r
        // NUL-terminates on success.
        let rc = unsafe { libc::ptsname_r(fd, name.as_mut_ptr(), name.len()) };
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc));
        }
        // SAFETY: ptsname_r succeeded, so `name` holds a NUL-terminated string.
        let path = PathBuf::from(
            unsafe { CStr::from_ptr(name.as_ptr()) }
                .to_string_lossy()
                .into_owned(),
        );
        let slave = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOCTTY)
            .open(&path)?;
        make_raw(&slave)?;
        set_nonblocking(&master)?;
        Ok(Pty {
            master,
            _slave: slave,
            path,
        })
    }
}

use std::os::unix::fs::OpenOptionsExt;

/// Raw mode: no echo, no line editing, no CR/LF translation, so bytes pass unchanged.
fn make_raw(tty: &File) -> io::Result<()> {
    // SAFETY: termios is plain data; tcgetattr fills it.
    let mut t: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: the descriptor is open and `t` is a valid termios to fill.
    if unsafe { libc::tcgetattr(tty.as_raw_fd(), &mut t) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `t` is a valid termios.
    unsafe { libc::cfmakeraw(&mut t) };
    // SAFETY: the descriptor is open and `t` a valid termios.
    if unsafe { libc::tcsetattr(tty.as_raw_fd(), libc::TCSANOW, &t) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn set_nonblocking(f: &File) -> io::Result<()> {
    let fd = f.as_raw_fd();
    // SAFETY: fcntl on an open descriptor with no pointers.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    // SAFETY: as above.
    if flags < 0 || unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    use super::*;

    #[test]
    fn bytes_cross_both_ways_unchanged() {
        let mut pty = Pty::open().unwrap();
        assert!(pty.path.starts_with("/dev/pts"), "{:?}", pty.path);
        let mut client = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&pty.path)
            .unwrap();
        pty.master.write_all(b"out\r\n").unwrap();
        let mut got = [0u8; 5];
        client.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"out\r\n");
        client.write_all(b"in\n").unwrap();
        std::thread::sleep(std::time::Duration::from_millis(50));
        let mut buf = [0u8; 16];
        let n = pty.master.read(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"in\n");
        // Nothing more to read: the master does not block.
        assert_eq!(
            pty.master.read(&mut buf).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
    }
}
