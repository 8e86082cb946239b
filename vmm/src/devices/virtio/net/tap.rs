//! The host end of a virtio-net device: a tap interface, opened here from `/dev/net/tun`
//! or adopted as an fd someone else opened (kata's runtime creates the tap in the pod's
//! network namespace and hands the VMM its fd over a Unix socket, SCM_RIGHTS).
//!
//! Either way the fd must be a tap (Ethernet frames, `IFF_TAP`) with no packet-info prefix
//! (`IFF_NO_PI`) and with virtio-net headers (`IFF_VNET_HDR`): each frame read or written
//! starts with a 12-byte `virtio_net_hdr_v1` (`TUNSETVNETHDRSZ`), which the device passes
//! through unchanged. The kernel reads and writes that header in the host's byte order
//! unless told otherwise, which is the little-endian order virtio 1.x needs on x86.
//!
//! The fd is non-blocking: the device reads until `EAGAIN` on each readable edge. A tap
//! whose interface is down refuses writes with `EIO` (the device counts those frames as
//! dropped, as a NIC with its link down would); reads just find nothing.

use std::ffi::c_uint;
use std::fs::OpenOptions;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;

use virtio_bindings::virtio_net::{
    VIRTIO_NET_F_GUEST_CSUM, VIRTIO_NET_F_GUEST_ECN, VIRTIO_NET_F_GUEST_TSO4,
    VIRTIO_NET_F_GUEST_TSO6, VIRTIO_NET_F_GUEST_UFO,
};
use vm_memory::VolatileSlice;

use super::VNET_HDR_LEN;

/// The tun/tap clone device.
pub const TUN_PATH: &str = "/dev/net/tun";
/// Longest interface name (`IFNAMSIZ` less its terminating NUL).
pub const MAX_IF_NAME: usize = libc::IFNAMSIZ - 1;
/// The flags a tap for this device is opened with, and must have when adopted.
const TAP_FLAGS: libc::c_int = libc::IFF_TAP | libc::IFF_NO_PI | libc::IFF_VNET_HDR;

#[derive(Debug, thiserror::Error)]
pub enum TapError {
    #[error("tap interface name {0:?} is longer than {MAX_IF_NAME} bytes (IFNAMSIZ)")]
    NameTooLong(String),
    #[error("tap interface name {0:?} contains a NUL byte")]
    NameNul(String),
    #[error("tap interface name {0:?} is not a valid interface name (no '/', ':' or whitespace, not '.' or '..')")]
    NameInvalid(String),
    #[error("cannot open {TUN_PATH}: {0}")]
    OpenTun(#[source] io::Error),
    #[error("cannot create or attach tap interface {name:?} (TUNSETIFF): {source}{hint}")]
    Attach {
        name: String,
        #[source]
        source: io::Error,
        hint: &'static str,
    },
    #[error("the fd is not a tun/tap device (TUNGETIFF): {0}")]
    NotTun(#[source] io::Error),
    #[error("interface {name:?} was not opened as a tap with IFF_TAP | IFF_NO_PI | IFF_VNET_HDR (its flags are {flags:#06x})")]
    Flags { name: String, flags: u16 },
    #[error("cannot set the vnet header size of tap {name:?} to {VNET_HDR_LEN}: {source}")]
    VnetHdrSize {
        name: String,
        #[source]
        source: io::Error,
    },
    #[error("cannot make tap {name:?} non-blocking: {source}")]
    NonBlocking {
        name: String,
        #[source]
        source: io::Error,
    },
    #[error("cannot set offloads {flags:#x} on tap {name:?}: {source}")]
    Offload {
        name: String,
        flags: c_uint,
        #[source]
        source: io::Error,
    },
}

/// An open tap queue.
#[derive(Debug)]
pub struct Tap {
    fd: OwnedFd,
    if_name: String,
    /// A socket standing in for a tap in tests (no tap ioctls).
    stand_in: bool,
}

impl Tap {
    /// Creates tap interface `name` (or attaches to the persistent one of that name) with
    /// one queue. An empty name, or one with `%d`, lets the kernel choose (`tap0`, ...);
    /// [`Tap::if_name`] tells which. Needs CAP_NET_ADMIN unless the tap is a persistent one
    /// this user may attach to.
    pub fn open(name: &str) -> Result<Tap, TapError> {
        check_name(name)?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(TUN_PATH)
            .map_err(TapError::OpenTun)?;
        let fd = OwnedFd::from(file);
        let mut ifr = ifreq_named(name);
        ifr.ifr_ifru.ifru_flags = TAP_FLAGS as libc::c_short;
        // SAFETY: TUNSETIFF reads and writes one `ifreq`, which `ifr` is; the fd is ours.
        let r = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETIFF, &mut ifr) };
        if r < 0 {
            let source = io::Error::last_os_error();
            let hint = match source.raw_os_error() {
                Some(libc::EPERM) => {
                    " (creating a tap needs CAP_NET_ADMIN; or create a persistent one owned by this user with `ip tuntap add`)"
                }
                Some(libc::EBUSY) => {
                    " (the interface exists with other flags, is multi-queue, or another process holds its one queue)"
                }
                _ => "",
            };
            return Err(TapError::Attach {
                name: name.to_string(),
                source,
                hint,
            });
        }
        let tap = Tap {
            fd,
            if_name: name_of(&ifr),
            stand_in: false,
        };
        tap.set_vnet_hdr_size()?;
        Ok(tap)
    }

    /// Adopts a tap fd opened elsewhere (kata passes one over SCM_RIGHTS). It must be a tap
    /// with `IFF_NO_PI` and `IFF_VNET_HDR` (multi-queue taps are fine: this is one of their
    /// queues); its vnet header size is set to 12 and it is made non-blocking.
    pub fn from_fd(fd: OwnedFd) -> Result<Tap, TapError> {
        let mut ifr = ifreq_named("");
        // SAFETY: TUNGETIFF writes one `ifreq`, which `ifr` is; the fd is ours.
        let r = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNGETIFF, &mut ifr) };
        if r < 0 {
            return Err(TapError::NotTun(io::Error::last_os_error()));
        }
        let if_name = name_of(&ifr);
        // SAFETY: TUNGETIFF filled the flags member of the union.
        let flags = unsafe { ifr.ifr_ifru.ifru_flags } as u16;
        if u32::from(flags) & TAP_FLAGS as u32 != TAP_FLAGS as u32 {
            return Err(TapError::Flags {
                name: if_name,
                flags,
            });
        }
        let tap = Tap {
            fd,
            if_name,
            stand_in: false,
        };
        tap.set_vnet_hdr_size()?;
        set_nonblocking(tap.fd.as_fd()).map_err(|source| TapError::NonBlocking {
            name: tap.if_name.clone(),
            source,
        })?;
        Ok(tap)
    }

    /// A packet socket (`socketpair(AF_UNIX, SOCK_SEQPACKET)`) standing in for a tap, for
    /// tests that cannot create one (no CAP_NET_ADMIN): it keeps message boundaries as a
    /// tap does, and takes no tap ioctls (offloads are not set on it).
    #[cfg(test)]
    pub(crate) fn stand_in(fd: OwnedFd, name: &str) -> io::Result<Tap> {
        set_nonblocking(fd.as_fd())?;
        Ok(Tap {
            fd,
            if_name: name.to_string(),
            stand_in: true,
        })
    }

    /// The interface's name (the kernel's choice when it was asked to pick one).
    pub fn if_name(&self) -> &str {
        &self.if_name
    }

    /// Tells the kernel which offloads it may leave to us (`TUN_F_*`, 0 for none): with
    /// `TUN_F_CSUM` it may hand over frames with partial checksums, with `TUN_F_TSO4/6`
    /// TCP segments up to 64 KiB, and so on. Frames we write may ask for any offload
    /// whatever is set here.
    pub fn set_offload(&self, flags: c_uint) -> Result<(), TapError> {
        if self.stand_in {
            return Ok(());
        }
        // SAFETY: TUNSETOFFLOAD takes its argument by value; the fd is ours.
        let r = unsafe {
            libc::ioctl(
                self.fd.as_raw_fd(),
                libc::TUNSETOFFLOAD,
                libc::c_ulong::from(flags),
            )
        };
        if r < 0 {
            return Err(TapError::Offload {
                name: self.if_name.clone(),
                flags,
                source: io::Error::last_os_error(),
            });
        }
        Ok(())
    }

    /// Sets the offloads the driver accepted (see [`offload_flags`]).
    pub fn set_offloads_from_features(&self, acked_features: u64) -> Result<(), TapError> {
        self.set_offload(offload_flags(acked_features))
    }

    /// Reads one frame into `bufs`, then `tail` if it is longer. Returns the frame's length,
    /// which is more than the room in `bufs` when the frame did not fit (a tap returns the
    /// whole frame's length even when it truncates it; a packet socket fills `tail`).
    pub fn read_vectored(&self, bufs: &[VolatileSlice<'_>], tail: &mut [u8]) -> io::Result<usize> {
        // The guards keep each slice's pointer valid (and mark the memory dirty if it
        // tracks that) for as long as the syscall may use it.
        let guards: Vec<_> = bufs.iter().map(|b| b.ptr_guard_mut()).collect();
        let mut iovs: Vec<libc::iovec> = guards
            .iter()
            .map(|g| libc::iovec {
                iov_base: g.as_ptr().cast(),
                iov_len: g.len(),
            })
            .collect();
        iovs.push(libc::iovec {
            iov_base: tail.as_mut_ptr().cast(),
            iov_len: tail.len(),
        });
        let count = iov_count(&iovs)?;
        loop {
            // SAFETY: every iovec describes memory valid for writes for this call: guest
            // memory `guards` keeps mapped, or `tail`, borrowed mutably.
            let n = unsafe { libc::readv(self.fd.as_raw_fd(), iovs.as_ptr(), count) };
            match usize::try_from(n) {
                Ok(n) => return Ok(n),
                Err(_) => {
                    let e = io::Error::last_os_error();
                    if e.kind() != io::ErrorKind::Interrupted {
                        return Err(e);
                    }
                }
            }
        }
    }

    /// Writes `bufs`, gathered, as one frame; returns the bytes written.
    pub fn write_vectored(&self, bufs: &[VolatileSlice<'_>]) -> io::Result<usize> {
        let guards: Vec<_> = bufs.iter().map(|b| b.ptr_guard()).collect();
        let iovs: Vec<libc::iovec> = guards
            .iter()
            .map(|g| libc::iovec {
                iov_base: g.as_ptr() as *mut libc::c_void,
                iov_len: g.len(),
            })
            .collect();
        let count = iov_count(&iovs)?;
        loop {
            // SAFETY: every iovec describes guest memory `guards` keeps mapped for this call;
            // writev only reads it.
            let n = unsafe { libc::writev(self.fd.as_raw_fd(), iovs.as_ptr(), count) };
            match usize::try_from(n) {
                Ok(n) => return Ok(n),
                Err(_) => {
                    let e = io::Error::last_os_error();
                    if e.kind() != io::ErrorKind::Interrupted {
                        return Err(e);
                    }
                }
            }
        }
    }

    fn set_vnet_hdr_size(&self) -> Result<(), TapError> {
        let size = VNET_HDR_LEN as libc::c_int;
        // SAFETY: TUNSETVNETHDRSZ reads one int through the pointer; the fd is ours.
        let r = unsafe { libc::ioctl(self.fd.as_raw_fd(), libc::TUNSETVNETHDRSZ, &size) };
        if r < 0 {
            return Err(TapError::VnetHdrSize {
                name: self.if_name.clone(),
                source: io::Error::last_os_error(),
            });
        }
        Ok(())
    }
}

impl AsRawFd for Tap {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl AsFd for Tap {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// The `TUN_F_*` offloads matching the driver's accepted virtio-net features: what the
/// guest said it can take (partial checksums with GUEST_CSUM, TSO frames with GUEST_TSO4/6,
/// ECN-marked TSO with GUEST_ECN, UFO with GUEST_UFO). Segmentation offloads need the
/// checksum one (5.1.3.1), so without GUEST_CSUM there are none: the kernel then finishes
/// every frame before the guest sees it.
pub fn offload_flags(acked_features: u64) -> c_uint {
    let has = |bit: u32| acked_features & (1u64 << bit) != 0;
    if !has(VIRTIO_NET_F_GUEST_CSUM) {
        return 0;
    }
    let mut flags = libc::TUN_F_CSUM;
    if has(VIRTIO_NET_F_GUEST_TSO4) {
        flags |= libc::TUN_F_TSO4;
    }
    if has(VIRTIO_NET_F_GUEST_TSO6) {
        flags |= libc::TUN_F_TSO6;
    }
    if has(VIRTIO_NET_F_GUEST_ECN) && flags & (libc::TUN_F_TSO4 | libc::TUN_F_TSO6) != 0 {
        flags |= libc::TUN_F_TSO_ECN;
    }
    if has(VIRTIO_NET_F_GUEST_UFO) {
        flags |= libc::TUN_F_UFO;
    }
    flags
}

/// Refuses names the kernel would (IFNAMSIZ, `dev_valid_name`), with a clearer message.
pub fn check_name(name: &str) -> Result<(), TapError> {
    if name.contains('\0') {
        return Err(TapError::NameNul(name.to_string()));
    }
    if name.len() > MAX_IF_NAME {
        return Err(TapError::NameTooLong(name.to_string()));
    }
    if name == "."
        || name == ".."
        || name.contains(['/', ':'])
        || name.chars().any(char::is_whitespace)
    {
        return Err(TapError::NameInvalid(name.to_string()));
    }
    Ok(())
}

/// An `ifreq` with `name` (checked to fit) and zeros elsewhere.
fn ifreq_named(name: &str) -> libc::ifreq {
    // SAFETY: ifreq is plain old data (a name array and a union of plain fields).
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, &src) in ifr.ifr_name.iter_mut().zip(name.as_bytes()) {
        *dst = src as libc::c_char;
    }
    ifr
}

/// The interface name the kernel wrote into `ifr` (NUL-terminated, or all IFNAMSIZ bytes).
fn name_of(ifr: &libc::ifreq) -> String {
    let bytes: Vec<u8> = ifr
        .ifr_name
        .iter()
        .map(|&c| c as u8)
        .take_while(|&b| b != 0)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

fn set_nonblocking(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: F_GETFL/F_SETFL on an fd we borrow; no pointers involved.
    let flags = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    if flags & libc::O_NONBLOCK != 0 {
        return Ok(());
    }
    // SAFETY: as above.
    if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn iov_count(iovs: &[libc::iovec]) -> io::Result<libc::c_int> {
    if iovs.len() > libc::UIO_MAXIOV as usize {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} buffers, more than one readv/writev takes", iovs.len()),
        ));
    }
    Ok(iovs.len() as libc::c_int)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_names_are_refused_before_any_syscall() {
        let long = "a".repeat(MAX_IF_NAME + 1);
        let e = Tap::open(&long).unwrap_err();
        assert!(matches!(e, TapError::NameTooLong(_)), "{e}");
        assert!(e.to_string().contains("15 bytes"), "{e}");
        assert!(matches!(
            Tap::open("tap\0x").unwrap_err(),
            TapError::NameNul(_)
        ));
        for bad in [".", "..", "a/b", "a:b", "a b"] {
            assert!(
                matches!(Tap::open(bad).unwrap_err(), TapError::NameInvalid(_)),
                "{bad:?}"
            );
        }
        // Fifteen bytes is the most that fits.
        assert!(check_name(&"a".repeat(MAX_IF_NAME)).is_ok());
        assert!(check_name("").is_ok());
        assert!(check_name("rvnet%d").is_ok());
    }

    #[test]
    fn an_fd_that_is_not_a_tap_is_refused() {
        let file = std::fs::File::open("/dev/null").unwrap();
        let e = Tap::from_fd(OwnedFd::from(file)).unwrap_err();
        assert!(matches!(e, TapError::NotTun(_)), "{e}");
    }

    #[test]
    fn offloads_follow_the_accepted_features() {
        let f = |bits: &[u32]| bits.iter().fold(0u64, |acc, &b| acc | 1 << b);
        assert_eq!(offload_flags(0), 0);
        // Segmentation without the checksum offload is not valid: nothing.
        assert_eq!(offload_flags(f(&[VIRTIO_NET_F_GUEST_TSO4])), 0);
        assert_eq!(
            offload_flags(f(&[VIRTIO_NET_F_GUEST_CSUM])),
            libc::TUN_F_CSUM
        );
        assert_eq!(
            offload_flags(f(&[
                VIRTIO_NET_F_GUEST_CSUM,
                VIRTIO_NET_F_GUEST_TSO4,
                VIRTIO_NET_F_GUEST_TSO6,
                VIRTIO_NET_F_GUEST_ECN,
            ])),
            libc::TUN_F_CSUM | libc::TUN_F_TSO4 | libc::TUN_F_TSO6 | libc::TUN_F_TSO_ECN
        );
        assert_eq!(
            offload_flags(f(&[VIRTIO_NET_F_GUEST_CSUM, VIRTIO_NET_F_GUEST_ECN])),
            libc::TUN_F_CSUM
        );
        assert_eq!(
            offload_flags(f(&[VIRTIO_NET_F_GUEST_CSUM, VIRTIO_NET_F_GUEST_UFO])),
            libc::TUN_F_CSUM | libc::TUN_F_UFO
        );
    }
}
