//! File descriptors passed with API requests (SCM_RIGHTS), as kata passes a tap device with
//! `vm.add-net`: Cloud Hypervisor's client writes the HTTP request with the fd attached in
//! one `sendmsg`. The listener here reads every connection with `recvmsg`, keeps the fds
//! that arrive with its bytes, and hands them to the handler of the request through
//! [`ConnFds`] (axum's `ConnectInfo`).
//!
//! Fds are kept per connection, in arrival order, until a handler takes them; the rest are
//! closed when the connection closes. A connection can hold at most [`MAX_FDS_PER_CONN`]
//! unclaimed fds: more are closed at once, so a client cannot exhaust the VMM's fd table.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::{UnixListener, UnixStream};

/// Unclaimed fds one connection may hold.
pub const MAX_FDS_PER_CONN: usize = 16;
/// Fds one `recvmsg` can carry; a message with more has the rest closed by the kernel.
const FDS_PER_MESSAGE: usize = 8;

/// The fds received on one connection and not yet claimed by a request.
#[derive(Clone, Default)]
pub struct ConnFds(Arc<Mutex<Vec<OwnedFd>>>);

impl ConnFds {
    /// Takes every fd received so far on this connection, oldest first.
    pub fn take_all(&self) -> Vec<OwnedFd> {
        std::mem::take(&mut *self.lock())
    }

    fn keep(&self, fds: Vec<OwnedFd>) {
        let mut held = self.lock();
        for fd in fds {
            if held.len() < MAX_FDS_PER_CONN {
                held.push(fd);
            } else {
                tracing::warn!(
                    "API connection holds {MAX_FDS_PER_CONN} unclaimed fds: closing one more"
                );
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<OwnedFd>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl std::fmt::Debug for ConnFds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "API connection holding {} fds", self.lock().len())
    }
}

impl Connected<IncomingStream<'_, FdListener>> for ConnFds {
    fn connect_info(stream: IncomingStream<'_, FdListener>) -> Self {
        stream.remote_addr().clone()
    }
}

/// A Unix listener whose connections accept fds.
pub struct FdListener(pub UnixListener);

impl Listener for FdListener {
    type Io = FdStream;
    type Addr = ConnFds;

    async fn accept(&mut self) -> (FdStream, ConnFds) {
        loop {
            match self.0.accept().await {
                Ok((stream, _)) => {
                    let fds = ConnFds::default();
                    return (
                        FdStream {
                            stream,
                            fds: fds.clone(),
                        },
                        fds,
                    );
                }
                Err(e) => {
                    // Out of fds or memory: wait rather than spin; the client retries.
                    tracing::warn!("API socket accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<ConnFds> {
        Ok(ConnFds::default())
    }
}

/// One API connection: reads with `recvmsg`, keeping the fds that come with the bytes.
pub struct FdStream {
    stream: UnixStream,
    fds: ConnFds,
}

impl AsyncRead for FdStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if let Err(e) = std::task::ready!(this.stream.poll_read_ready(cx)) {
                return Poll::Ready(Err(e));
            }
            let fd = this.stream.as_raw_fd();
            let dst = buf.initialize_unfilled();
            match this
                .stream
                .try_io(Interest::READABLE, || recv_with_fds(fd, dst))
            {
                Ok((n, fds)) => {
                    this.fds.keep(fds);
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                // Readiness was stale; try_io cleared it, so poll again.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl AsyncWrite for FdStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

/// One `recvmsg` into `buf`: the bytes read and the fds that came with them.
fn recv_with_fds(fd: RawFd, buf: &mut [u8]) -> io::Result<(usize, Vec<OwnedFd>)> {
    // u64s keep the control buffer aligned for cmsghdr.
    let mut control = [0u64; (FDS_PER_MESSAGE * 4 + 32) / 8];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: msghdr is plain data; all-zero is a valid empty header.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control);
    // SAFETY: `msg` points at `iov` (covering `buf`) and `control`, both live and writable
    // for the call; the kernel writes at most their lengths.
    let n = unsafe { libc::recvmsg(fd, &mut msg, libc::MSG_CMSG_CLOEXEC) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut fds = Vec::new();
    // SAFETY: `msg` was filled by recvmsg; CMSG_FIRSTHDR/NXTHDR only walk inside
    // msg_control..msg_control + msg_controllen, which the kernel set.
    let mut cmsg = unsafe { libc::CMSG_FIRSTHDR(&msg) };
    while !cmsg.is_null() {
        // SAFETY: non-null headers returned by CMSG_FIRSTHDR/NXTHDR lie in `control`.
        let hdr = unsafe { &*cmsg };
        if hdr.cmsg_level == libc::SOL_SOCKET && hdr.cmsg_type == libc::SCM_RIGHTS {
            // SAFETY: CMSG_LEN only computes a length.
            let header_len = unsafe { libc::CMSG_LEN(0) } as usize;
            let count = (hdr.cmsg_len as usize).saturating_sub(header_len) / 4;
            // SAFETY: CMSG_DATA points at this header's payload, inside `control`.
            let data = unsafe { libc::CMSG_DATA(cmsg) }.cast::<RawFd>();
            for i in 0..count {
                // SAFETY: `i` < the number of fds the kernel wrote in this payload; the
                // payload need not be aligned for RawFd, hence read_unaligned.
                let raw = unsafe { data.add(i).read_unaligned() };
                // SAFETY: SCM_RIGHTS installed `raw` in this process for us alone.
                fds.push(unsafe { OwnedFd::from_raw_fd(raw) });
            }
        }
        // SAFETY: as for CMSG_FIRSTHDR; `cmsg` is a header inside `msg`'s control buffer.
        cmsg = unsafe { libc::CMSG_NXTHDR(&msg, cmsg) };
    }
    if msg.msg_flags & libc::MSG_CTRUNC != 0 {
        tracing::warn!("API request carried more than {FDS_PER_MESSAGE} fds: the rest were closed");
    }
    Ok((n as usize, fds))
}

#[cfg(test)]
mod tests {
    use std::io::{IoSlice, Write};
    use std::os::unix::net::UnixStream as StdStream;

    use super::*;

    /// Sends `bytes` with `fds` attached in one message, as Go's WriteMsgUnix does.
    fn send_with_fds(sock: &StdStream, bytes: &[u8], fds: &[RawFd]) {
        let mut control = [0u64; 16];
        let iov = [IoSlice::new(bytes)];
        // SAFETY: test-only; all-zero msghdr is valid, then filled below.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = iov.as_ptr() as *mut libc::iovec;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        // SAFETY: CMSG_SPACE only computes a length.
        msg.msg_controllen = unsafe { libc::CMSG_SPACE((fds.len() * 4) as u32) } as usize;
        // SAFETY: the control buffer is large enough for one header with these fds.
        unsafe {
            let c = libc::CMSG_FIRSTHDR(&msg);
            (*c).cmsg_level = libc::SOL_SOCKET;
            (*c).cmsg_type = libc::SCM_RIGHTS;
            (*c).cmsg_len = libc::CMSG_LEN((fds.len() * 4) as u32) as usize;
            std::ptr::copy_nonoverlapping(fds.as_ptr(), libc::CMSG_DATA(c).cast(), fds.len());
        }
        // SAFETY: msg points at live buffers for the call.
        let n = unsafe { libc::sendmsg(sock.as_raw_fd(), &msg, 0) };
        assert_eq!(n, bytes.len() as isize);
    }

    /// Reads `want` bytes from `server` through an [`FdStream`]; returns them and the fds
    /// that came with them.
    fn read_through_fd_stream(server: StdStream, want: usize) -> (Vec<u8>, ConnFds) {
        server.set_nonblocking(true).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .unwrap();
        rt.block_on(async move {
            let fds = ConnFds::default();
            let mut stream = FdStream {
                stream: UnixStream::from_std(server).unwrap(),
                fds: fds.clone(),
            };
            let mut got = vec![0u8; want];
            let mut filled = 0;
            while filled < want {
                filled += std::future::poll_fn(|cx| {
                    let mut buf = ReadBuf::new(&mut got[filled..]);
                    Pin::new(&mut stream)
                        .poll_read(cx, &mut buf)
                        .map_ok(|()| buf.filled().len())
                })
                .await
                .unwrap();
            }
            (got, fds)
        })
    }

    #[test]
    fn fds_sent_with_the_request_reach_its_connection() {
        let (client, server) = StdStream::pair().unwrap();
        let file = tempfile::tempfile().unwrap();
        send_with_fds(&client, b"PUT /x", &[file.as_raw_fd()]);
        (&client).write_all(b" HTTP/1.1").unwrap();
        let (got, fds) = read_through_fd_stream(server, 15);
        assert_eq!(&got, b"PUT /x HTTP/1.1");
        let taken = fds.take_all();
        assert_eq!(taken.len(), 1);
        // The fd received is the same open file (same inode), close-on-exec.
        let st = |fd: RawFd| {
            // SAFETY: fstat writes into the zeroed struct.
            let mut s: libc::stat = unsafe { std::mem::zeroed() };
            // SAFETY: `fd` is open for the duration of the call.
            assert_eq!(unsafe { libc::fstat(fd, &mut s) }, 0);
            (s.st_dev, s.st_ino)
        };
        assert_eq!(st(taken[0].as_raw_fd()), st(file.as_raw_fd()));
        // SAFETY: F_GETFD on an open fd.
        let flags = unsafe { libc::fcntl(taken[0].as_raw_fd(), libc::F_GETFD) };
        assert_ne!(flags & libc::FD_CLOEXEC, 0);
        assert!(fds.take_all().is_empty(), "taken fds are gone");
    }

    #[test]
    fn a_connection_keeps_at_most_its_limit_of_fds() {
        let (client, server) = StdStream::pair().unwrap();
        let file = tempfile::tempfile().unwrap();
        let raw = [file.as_raw_fd(); FDS_PER_MESSAGE];
        let rounds = MAX_FDS_PER_CONN / FDS_PER_MESSAGE + 2;
        for _ in 0..rounds {
            send_with_fds(&client, b"x", &raw);
        }
        let (_got, fds) = read_through_fd_stream(server, rounds);
        assert_eq!(fds.take_all().len(), MAX_FDS_PER_CONN);
    }
}
