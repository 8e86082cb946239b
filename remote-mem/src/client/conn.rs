//! One authenticated connection to one memd.
//!
//! Single requests run on the caller's thread with no hand-off: one `writev`
//! out, one `readv` back straight into the caller's buffer. Batches pipeline:
//! a scoped thread sends every request while the caller's thread receives and
//! matches replies by request id, so neither side can block the other on full
//! socket buffers.

use std::collections::HashMap;
use std::io::{self, IoSlice, IoSliceMut, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::Duration;

use crate::endpoint::Endpoint;
use crate::power::PowerState;
use crate::protocol::io::{read_exact_vectored, write_all_vectored};
use crate::protocol::{
    ClientKey, Header, Hello, HelloReply, Opcode, Status, HEADER_LEN, MAX_IO, VERSION,
};

use super::ClientError;

/// A TCP or Unix stream.
#[derive(Debug)]
pub(crate) enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Stream {
    fn connect(ep: &Endpoint, timeout: Duration) -> io::Result<Self> {
        let s = match ep {
            Endpoint::Tcp(a) => {
                let s = TcpStream::connect(a)?;
                s.set_nodelay(true)?;
                Self::Tcp(s)
            }
            Endpoint::Unix(p) => Self::Unix(UnixStream::connect(p)?),
        };
        match &s {
            Self::Tcp(t) => {
                t.set_read_timeout(Some(timeout))?;
                t.set_write_timeout(Some(timeout))?;
            }
            Self::Unix(u) => {
                u.set_read_timeout(Some(timeout))?;
                u.set_write_timeout(Some(timeout))?;
            }
        }
        Ok(s)
    }

    fn try_clone(&self) -> io::Result<Self> {
        Ok(match self {
            Self::Tcp(t) => Self::Tcp(t.try_clone()?),
            Self::Unix(u) => Self::Unix(u.try_clone()?),
        })
    }
}

impl Read for Stream {
    fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
        match self {
            Self::Tcp(t) => t.read(b),
            Self::Unix(u) => u.read(b),
        }
    }
    fn read_vectored(&mut self, b: &mut [IoSliceMut<'_>]) -> io::Result<usize> {
        match self {
            Self::Tcp(t) => t.read_vectored(b),
            Self::Unix(u) => u.read_vectored(b),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        match self {
            Self::Tcp(t) => t.write(b),
            Self::Unix(u) => u.write(b),
        }
    }
    fn write_vectored(&mut self, b: &[IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Self::Tcp(t) => t.write_vectored(b),
            Self::Unix(u) => u.write_vectored(b),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

struct State {
    stream: Stream,
    next_id: u64,
}

/// One read in a batch: `buf.len()` bytes at `offset` of remote slab `slab`.
pub struct ReadOp<'a> {
    /// Remote slab id.
    pub slab: u64,
    /// Byte offset in the slab.
    pub offset: u64,
    /// Destination; its length is the read length (at most [`MAX_IO`]).
    pub buf: &'a mut [u8],
}

/// One write in a batch.
pub struct WriteOp<'a> {
    /// Remote slab id.
    pub slab: u64,
    /// Byte offset in the slab.
    pub offset: u64,
    /// Data (at most [`MAX_IO`] bytes).
    pub data: &'a [u8],
}

/// An authenticated connection. Thread-safe: requests from several threads
/// are serialised by a mutex.
pub struct HostConn {
    endpoint: Endpoint,
    state: Mutex<State>,
    /// Set after any I/O or protocol error: the stream may be out of sync, so
    /// every later request fails fast instead of misreading replies.
    broken: AtomicBool,
    /// What the server said in its HELLO reply.
    pub info: HelloReply,
}

impl HostConn {
    /// Connects and authenticates with `token` as client `key`.
    pub fn connect(
        ep: &Endpoint,
        token: &[u8],
        key: ClientKey,
        timeout: Duration,
    ) -> Result<Self, ClientError> {
        let mut stream = Stream::connect(ep, timeout).map_err(|source| ClientError::Connect {
            endpoint: ep.to_string(),
            source,
        })?;
        let body = Hello {
            version: VERSION,
            client_key: key,
            token: token.to_vec(),
        }
        .encode();
        let mut h = Header::request(Opcode::Hello, 0, 0, 0, 0);
        h.body_len = body.len() as u32;
        write_all_vectored(
            &mut stream,
            &mut [IoSlice::new(&h.encode()), IoSlice::new(&body)],
        )?;
        let mut hdr = [0u8; HEADER_LEN];
        stream.read_exact(&mut hdr)?;
        let r = Header::decode_response(&hdr)?;
        match r.status() {
            Status::Ok => {}
            s => {
                return Err(ClientError::Refused {
                    endpoint: ep.to_string(),
                    status: s,
                })
            }
        }
        let mut body = vec![0u8; r.body_len as usize];
        stream.read_exact(&mut body)?;
        let info =
            HelloReply::decode(&body).ok_or(ClientError::Protocol("bad HELLO reply body"))?;
        if info.slab_size == 0 || info.slab_size > usize::MAX as u64 {
            return Err(ClientError::Protocol(
                "server reports an unusable slab size",
            ));
        }
        Ok(Self {
            endpoint: ep.clone(),
            state: Mutex::new(State { stream, next_id: 1 }),
            broken: AtomicBool::new(false),
            info,
        })
    }

    /// The server's address.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Runs `f` with the stream locked; marks the connection broken if `f`
    /// fails with anything but a server status (which leaves the stream in sync).
    fn with<T>(
        &self,
        f: impl FnOnce(&mut State) -> Result<T, ClientError>,
    ) -> Result<T, ClientError> {
        if self.broken.load(Relaxed) {
            return Err(ClientError::Broken(self.endpoint.to_string()));
        }
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let r = f(&mut st);
        if let Err(e) = &r {
            if !matches!(e, ClientError::Status(_)) {
                self.broken.store(true, Relaxed);
            }
        }
        r
    }

    /// Sends a bodiless request and returns the reply header (body must be empty).
    fn simple(&self, op: Opcode, slab: u64, offset: u64) -> Result<Header, ClientError> {
        self.with(|st| {
            let id = next_id(st);
            st.stream
                .write_all(&Header::request(op, id, slab, offset, 0).encode())?;
            let r = recv_header(&mut st.stream, id, op)?;
            if r.body_len != 0 {
                return Err(ClientError::Protocol("unexpected reply body"));
            }
            status_ok(r)
        })
    }

    /// Allocates a slab; returns its id and the server's free bytes after it.
    pub fn alloc(&self) -> Result<(u64, u64), ClientError> {
        let r = self.simple(Opcode::Alloc, 0, 0)?;
        Ok((r.slab, r.offset))
    }

    /// Frees a slab.
    pub fn free(&self, slab: u64) -> Result<(), ClientError> {
        self.simple(Opcode::Free, slab, 0).map(|_| ())
    }

    /// Sets the server's power state (control frame).
    pub fn set_power(&self, p: PowerState) -> Result<(), ClientError> {
        self.simple(Opcode::SetPower, 0, p.code().into())
            .map(|_| ())
    }

    /// Fetches the server's statistics (JSON).
    pub fn stat(&self) -> Result<serde_json::Value, ClientError> {
        self.with(|st| {
            let id = next_id(st);
            st.stream
                .write_all(&Header::request(Opcode::Stat, id, 0, 0, 0).encode())?;
            let r = status_ok(recv_header(&mut st.stream, id, Opcode::Stat)?)?;
            let mut body = vec![0u8; r.body_len as usize];
            st.stream.read_exact(&mut body)?;
            serde_json::from_slice(&body)
                .map_err(|_| ClientError::Protocol("STAT body is not JSON"))
        })
    }

    /// Reads `buf.len()` bytes at `offset` of `slab`: one `writev` out, and the
    /// reply header and data come back with one `readv` in the common case.
    pub fn read(&self, slab: u64, offset: u64, buf: &mut [u8]) -> Result<(), ClientError> {
        let len = io_len(buf.len())?;
        self.with(|st| {
            let id = next_id(st);
            st.stream
                .write_all(&Header::request(Opcode::Read, id, slab, offset, len).encode())?;
            let mut hdr = [0u8; HEADER_LEN];
            // Read at least the header, opportunistically the data with it.
            let mut got = 0;
            while got < HEADER_LEN {
                let n = {
                    let mut v = [IoSliceMut::new(&mut hdr[got..]), IoSliceMut::new(buf)];
                    st.stream.read_vectored(&mut v)?
                };
                if n == 0 {
                    return Err(io::Error::from(io::ErrorKind::UnexpectedEof).into());
                }
                if got + n > HEADER_LEN {
                    // Data landed in `buf` only when the header was complete in this call.
                    let data = got + n - HEADER_LEN;
                    let r = check_header(&hdr, id, Opcode::Read)?;
                    // Bytes beyond the header are only legal as the data of a successful reply.
                    if r.status() != Status::Ok || r.body_len != len {
                        return Err(ClientError::Protocol("read reply has the wrong length"));
                    }
                    st.stream.read_exact(&mut buf[data..])?;
                    return Ok(());
                }
                got += n;
            }
            let r = status_ok(check_header(&hdr, id, Opcode::Read)?)?;
            if r.body_len != len {
                return Err(ClientError::Protocol("read reply has the wrong length"));
            }
            st.stream.read_exact(buf)?;
            Ok(())
        })
    }

    /// Writes `data` at `offset` of `slab` (header and data in one `writev`).
    pub fn write(&self, slab: u64, offset: u64, data: &[u8]) -> Result<(), ClientError> {
        let len = io_len(data.len())?;
        self.with(|st| {
            let id = next_id(st);
            let h = Header::request(Opcode::Write, id, slab, offset, len).encode();
            write_all_vectored(&mut st.stream, &mut [IoSlice::new(&h), IoSlice::new(data)])?;
            let r = recv_header(&mut st.stream, id, Opcode::Write)?;
            if r.body_len != 0 {
                return Err(ClientError::Protocol("unexpected reply body"));
            }
            status_ok(r).map(|_| ())
        })
    }

    /// Sends a WRITE and returns with the connection still locked, so the
    /// caller can send the same write to other replicas before waiting for
    /// any reply: r copies cost about one round trip instead of r.
    /// Callers that start several must lock hosts in a fixed order (by host
    /// index) so two threads cannot wait on each other's connections.
    pub fn write_start(
        &self,
        slab: u64,
        offset: u64,
        data: &[u8],
    ) -> Result<PendingWrite<'_>, ClientError> {
        let len = io_len(data.len())?;
        if self.broken.load(Relaxed) {
            return Err(ClientError::Broken(self.endpoint.to_string()));
        }
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let id = next_id(&mut st);
        let h = Header::request(Opcode::Write, id, slab, offset, len).encode();
        if let Err(e) =
            write_all_vectored(&mut st.stream, &mut [IoSlice::new(&h), IoSlice::new(data)])
        {
            self.broken.store(true, Relaxed);
            return Err(e.into());
        }
        Ok(PendingWrite { conn: self, st, id })
    }

    /// Pipelined reads. Every op is attempted; the result has one entry per op.
    /// An `Err` from the function itself means the connection failed.
    pub fn read_batch(
        &self,
        ops: &mut [ReadOp<'_>],
    ) -> Result<Vec<Result<(), Status>>, ClientError> {
        for op in ops.iter() {
            io_len(op.buf.len())?;
        }
        self.with(|st| {
            let first = st.next_id;
            st.next_id += ops.len() as u64;
            let headers: Vec<[u8; HEADER_LEN]> = ops
                .iter()
                .enumerate()
                .map(|(i, op)| {
                    Header::request(
                        Opcode::Read,
                        first + i as u64,
                        op.slab,
                        op.offset,
                        op.buf.len() as u32,
                    )
                    .encode()
                })
                .collect();
            let mut results = vec![Err(Status::BadRequest); ops.len()];
            let mut sender = st.stream.try_clone()?;
            std::thread::scope(|s| -> Result<(), ClientError> {
                let send = s.spawn(move || -> io::Result<()> {
                    let mut v: Vec<IoSlice<'_>> = headers.iter().map(|h| IoSlice::new(h)).collect();
                    // writev takes at most IOV_MAX (1024) slices per call.
                    for chunk in v.chunks_mut(1024) {
                        write_all_vectored(&mut sender, chunk)?;
                    }
                    Ok(())
                });
                let recv = recv_reads(&mut st.stream, first, ops, &mut results);
                let sent = send
                    .join()
                    .map_err(|_| ClientError::Protocol("sender thread panicked"))?;
                recv?;
                sent?;
                Ok(())
            })?;
            Ok(results)
        })
    }

    /// Pipelined writes; one result per op, as for [`HostConn::read_batch`].
    pub fn write_batch(&self, ops: &[WriteOp<'_>]) -> Result<Vec<Result<(), Status>>, ClientError> {
        for op in ops {
            io_len(op.data.len())?;
        }
        self.with(|st| {
            let first = st.next_id;
            st.next_id += ops.len() as u64;
            let mut sender = st.stream.try_clone()?;
            let mut results = vec![Err(Status::BadRequest); ops.len()];
            std::thread::scope(|s| -> Result<(), ClientError> {
                let send = s.spawn(move || -> io::Result<()> {
                    for (i, op) in ops.iter().enumerate() {
                        let h = Header::request(
                            Opcode::Write,
                            first + i as u64,
                            op.slab,
                            op.offset,
                            op.data.len() as u32,
                        )
                        .encode();
                        write_all_vectored(
                            &mut sender,
                            &mut [IoSlice::new(&h), IoSlice::new(op.data)],
                        )?;
                    }
                    Ok(())
                });
                let mut recv = || -> Result<(), ClientError> {
                    for _ in 0..ops.len() {
                        let mut hdr = [0u8; HEADER_LEN];
                        st.stream.read_exact(&mut hdr)?;
                        let r = Header::decode_response(&hdr)?;
                        let i = batch_index(&r, first, ops.len(), Opcode::Write)?;
                        if r.body_len != 0 {
                            return Err(ClientError::Protocol("unexpected reply body"));
                        }
                        results[i] = match r.status() {
                            Status::Ok => Ok(()),
                            s => Err(s),
                        };
                    }
                    Ok(())
                };
                let recv = recv();
                let sent = send
                    .join()
                    .map_err(|_| ClientError::Protocol("sender thread panicked"))?;
                recv?;
                sent?;
                Ok(())
            })?;
            Ok(results)
        })
    }
}

/// A WRITE sent by [`HostConn::write_start`] whose reply is still due.
pub struct PendingWrite<'a> {
    conn: &'a HostConn,
    st: std::sync::MutexGuard<'a, State>,
    id: u64,
}

impl PendingWrite<'_> {
    /// Waits for the reply and releases the connection.
    pub fn finish(mut self) -> Result<(), ClientError> {
        let r = recv_header(&mut self.st.stream, self.id, Opcode::Write).and_then(|r| {
            if r.body_len != 0 {
                return Err(ClientError::Protocol("unexpected reply body"));
            }
            status_ok(r).map(|_| ())
        });
        if let Err(e) = &r {
            if !matches!(e, ClientError::Status(_)) {
                self.conn.broken.store(true, Relaxed);
            }
        }
        r
    }
}

fn recv_reads(
    stream: &mut Stream,
    first: u64,
    ops: &mut [ReadOp<'_>],
    results: &mut [Result<(), Status>],
) -> Result<(), ClientError> {
    let mut seen: HashMap<usize, ()> = HashMap::with_capacity(ops.len());
    for _ in 0..ops.len() {
        let mut hdr = [0u8; HEADER_LEN];
        stream.read_exact(&mut hdr)?;
        let r = Header::decode_response(&hdr)?;
        let i = batch_index(&r, first, ops.len(), Opcode::Read)?;
        if seen.insert(i, ()).is_some() {
            return Err(ClientError::Protocol("duplicate reply id"));
        }
        match r.status() {
            Status::Ok => {
                if r.body_len as usize != ops[i].buf.len() {
                    return Err(ClientError::Protocol("read reply has the wrong length"));
                }
                read_exact_vectored(stream, &mut [IoSliceMut::new(ops[i].buf)])?;
                results[i] = Ok(());
            }
            s => results[i] = Err(s),
        }
    }
    Ok(())
}

/// Maps a reply to its op index in a batch whose ids start at `first`.
fn batch_index(r: &Header, first: u64, n: usize, op: Opcode) -> Result<usize, ClientError> {
    if r.opcode != op {
        return Err(ClientError::Protocol(
            "reply opcode does not match the request",
        ));
    }
    match r.request_id.checked_sub(first) {
        Some(i) if i < n as u64 => Ok(i as usize),
        _ => Err(ClientError::Protocol("reply id outside the batch")),
    }
}

fn next_id(st: &mut State) -> u64 {
    st.next_id += 1;
    st.next_id
}

fn io_len(n: usize) -> Result<u32, ClientError> {
    match u32::try_from(n) {
        Ok(l) if l <= MAX_IO => Ok(l),
        _ => Err(ClientError::TooLong(n)),
    }
}

fn check_header(hdr: &[u8; HEADER_LEN], id: u64, op: Opcode) -> Result<Header, ClientError> {
    let r = Header::decode_response(hdr)?;
    if r.request_id != id || r.opcode != op {
        return Err(ClientError::Protocol("reply does not match the request"));
    }
    Ok(r)
}

fn recv_header(s: &mut Stream, id: u64, op: Opcode) -> Result<Header, ClientError> {
    let mut hdr = [0u8; HEADER_LEN];
    s.read_exact(&mut hdr)?;
    check_header(&hdr, id, op)
}

fn status_ok(r: Header) -> Result<Header, ClientError> {
    match r.status() {
        Status::Ok => Ok(r),
        s => Err(ClientError::Status(s)),
    }
}
