//! One client connection: handshake, then a request loop. Requests are served
//! in arrival order; the client may pipeline many of them (the socket buffers
//! hold the queue) and matches replies by request id.

use std::io::{self, BufReader, IoSlice, Read, Write};
use std::sync::atomic::Ordering::Relaxed;

use crate::power::PowerState;
use crate::protocol::io::write_all_vectored;
use crate::protocol::{
    ClientKey, FrameError, Header, Hello, HelloReply, Opcode, Status, HEADER_LEN, VERSION,
};

use super::store::SlabStore;

/// Why a connection was closed by the server.
#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    /// Socket error or the peer went away mid-frame.
    #[error("socket: {0}")]
    Io(#[from] io::Error),
    /// The peer sent a frame that fails validation.
    #[error("malformed frame: {0}")]
    Frame(#[from] FrameError),
    /// The first frame was not HELLO.
    #[error("first frame was {0:?}, expected Hello")]
    NotHello(Opcode),
    /// A second HELLO on an authenticated connection.
    #[error("unexpected Hello after the handshake")]
    HelloAgain,
    /// Token mismatch.
    #[error("wrong token")]
    AuthFailed,
    /// Unsupported protocol version.
    #[error("client speaks protocol version {0}, server speaks {VERSION}")]
    Version(u16),
}

/// Buffered reads: one `recv` picks up several pipelined request headers.
const READ_BUFFER: usize = 256 * 1024;

/// Serves one connection until the peer closes it or breaks the protocol.
/// Returns `Ok` on a clean close between frames.
/// `authenticated` runs once the handshake succeeded (the caller lifts the
/// handshake timeout there).
pub fn serve<R: Read, W: Write>(
    reader: R,
    mut writer: W,
    store: &SlabStore,
    token: &[u8],
    authenticated: impl FnOnce(),
) -> Result<(), ConnError> {
    let mut reader = BufReader::with_capacity(READ_BUFFER, reader);
    let mut hdr = [0u8; HEADER_LEN];
    let mut body = Vec::new();

    if !read_header(&mut reader, &mut hdr)? {
        return Ok(());
    }
    let h = Header::decode_request(&hdr)?;
    if h.opcode != Opcode::Hello {
        return Err(ConnError::NotHello(h.opcode));
    }
    read_body(&mut reader, &mut body, h.body_len)?;
    let client = handshake(&h, &body, &mut writer, store, token)?;
    authenticated();

    loop {
        if !read_header(&mut reader, &mut hdr)? {
            return Ok(());
        }
        let h = Header::decode_request(&hdr)?;
        // Read the body before acting, whatever the outcome, so the stream
        // stays in sync after an error reply.
        read_body(&mut reader, &mut body, h.body_len)?;
        match h.opcode {
            Opcode::Hello => return Err(ConnError::HelloAgain),
            Opcode::Read => serve_read(&h, &client, store, &mut writer)?,
            Opcode::Write => {
                let status = match store.for_io(&client, h.slab, h.offset, h.length) {
                    Ok((slab, range)) => {
                        let mut data = slab.data.write().unwrap_or_else(|p| p.into_inner());
                        if let Some(dst) = data.get_mut(range) {
                            dst.copy_from_slice(&body);
                        }
                        store.counters.writes.fetch_add(1, Relaxed);
                        store
                            .counters
                            .bytes_written
                            .fetch_add(u64::from(h.length), Relaxed);
                        Status::Ok
                    }
                    Err(s) => s,
                };
                reply(&mut writer, store, h, status, &[])?;
            }
            Opcode::Alloc => {
                let mut r = h;
                let status = match store.alloc(&client) {
                    Ok(id) => {
                        r.slab = id;
                        Status::Ok
                    }
                    Err(s) => s,
                };
                // Free bytes ride along so clients keep placement data fresh for free.
                r.offset = store.free_bytes();
                reply(&mut writer, store, r, status, &[])?;
            }
            Opcode::Free => {
                let status = store.free(&client, h.slab).err().unwrap_or(Status::Ok);
                reply(&mut writer, store, h, status, &[])?;
            }
            Opcode::Stat => {
                let json = serde_json::to_vec(&store.report()).unwrap_or_default();
                reply(&mut writer, store, h, Status::Ok, &json)?;
            }
            Opcode::SetPower => {
                let status = match PowerState::from_code(h.offset) {
                    Some(p) => {
                        store.set_power(p);
                        Status::Ok
                    }
                    None => Status::BadRequest,
                };
                reply(&mut writer, store, h, status, &[])?;
            }
        }
    }
}

/// Reads one header; `false` on a clean EOF before its first byte.
fn read_header<R: Read>(r: &mut R, hdr: &mut [u8; HEADER_LEN]) -> Result<bool, ConnError> {
    let mut got = 0;
    while got < HEADER_LEN {
        match r.read(&mut hdr[got..]) {
            Ok(0) if got == 0 => return Ok(false),
            Ok(0) => return Err(io::Error::from(io::ErrorKind::UnexpectedEof).into()),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(true)
}

/// Reads a body whose length [`Header::decode_request`] already bounded.
fn read_body<R: Read>(r: &mut R, body: &mut Vec<u8>, len: u32) -> Result<(), ConnError> {
    body.resize(len as usize, 0);
    r.read_exact(body)?;
    Ok(())
}

fn handshake<W: Write>(
    h: &Header,
    body: &[u8],
    w: &mut W,
    store: &SlabStore,
    token: &[u8],
) -> Result<ClientKey, ConnError> {
    let hello = Hello::decode(body)?;
    if hello.version != VERSION {
        reply(w, store, *h, Status::VersionUnsupported, &[])?;
        return Err(ConnError::Version(hello.version));
    }
    if !constant_time_eq(&hello.token, token) {
        reply(w, store, *h, Status::AuthFailed, &[])?;
        return Err(ConnError::AuthFailed);
    }
    let limits = store.limits();
    let r = HelloReply {
        version: VERSION,
        power: store.power().code(),
        slab_size: limits.slab_size,
        capacity: limits.capacity,
        free: store.free_bytes(),
    };
    reply(w, store, *h, Status::Ok, &r.encode())?;
    Ok(hello.client_key)
}

fn serve_read<W: Write>(
    h: &Header,
    client: &ClientKey,
    store: &SlabStore,
    w: &mut W,
) -> Result<(), ConnError> {
    match store.for_io(client, h.slab, h.offset, h.length) {
        Ok((slab, range)) => {
            let data = slab.data.read().unwrap_or_else(|p| p.into_inner());
            let page = data.get(range).unwrap_or(&[]);
            let out = h.reply(Status::Ok, page.len() as u32).encode();
            // Header and page leave in one writev, straight from slab memory.
            write_all_vectored(w, &mut [IoSlice::new(&out), IoSlice::new(page)])?;
            store.counters.reads.fetch_add(1, Relaxed);
            store
                .counters
                .bytes_read
                .fetch_add(page.len() as u64, Relaxed);
            Ok(())
        }
        Err(s) => reply(w, store, *h, s, &[]),
    }
}

fn reply<W: Write>(
    w: &mut W,
    store: &SlabStore,
    h: Header,
    status: Status,
    body: &[u8],
) -> Result<(), ConnError> {
    if status != Status::Ok {
        store.counters.errors.fetch_add(1, Relaxed);
    }
    let out = h.reply(status, body.len() as u32).encode();
    write_all_vectored(w, &mut [IoSlice::new(&out), IoSlice::new(body)])?;
    Ok(())
}

/// Token comparison whose time does not depend on where the first mismatch is.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
