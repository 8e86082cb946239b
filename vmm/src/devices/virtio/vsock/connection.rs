//! One vsock stream between a guest port and a host Unix socket: its state machine and its
//! credit-based flow control (5.10.6.3).
//!
//! Credit, both ways: the device never sends the guest more payload than the guest's last
//! `buf_alloc` minus what it has not yet forwarded (`tx_cnt - peer_fwd_cnt`), and it
//! advertises `buf_alloc` = [`CONN_BUF_SIZE`] with `fwd_cnt` = guest bytes written to the
//! host socket. A guest that sends beyond that credit is reset. A CREDIT_UPDATE goes out on
//! request and whenever half the buffer was forwarded since the guest last heard `fwd_cnt`,
//! so a guest waiting for credit always gets it.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::time::Instant;

use event_manager::EventSet;

use super::packet::{Header, Op, HDR_LEN, SHUTDOWN_BOTH, SHUTDOWN_RCV, SHUTDOWN_SEND, TYPE_STREAM};
use super::{
    CLOSE_TIMEOUT, CONN_BUF_SIZE, HANDSHAKE_TIMEOUT, HOST_CID, HOST_READ_CHUNK, MAX_PKT_LEN,
};

/// (host port, guest port): what identifies a connection on this device.
pub type ConnKey = (u32, u32);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Host-initiated: REQUEST queued or sent, waiting for the guest's RESPONSE; the host
    /// client has been told nothing.
    LocalInit {
        deadline: Instant,
    },
    Established,
    /// The host side ended; SHUTDOWN sent, waiting for the guest's RST.
    Closing {
        deadline: Instant,
    },
}

/// What the muxer does with the connection after an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Keep,
    /// Forget it and close the host socket; `rst`: tell the guest with RST.
    Close {
        rst: bool,
    },
}

/// Control packets waiting for an rx buffer.
#[derive(Debug, Default)]
struct Pending {
    request: bool,
    response: bool,
    credit_update: bool,
    shutdown: bool,
}

pub struct Connection {
    stream: UnixStream,
    local_port: u32,
    peer_port: u32,
    guest_cid: u64,
    state: State,
    /// The guest's receive buffer and how much of what we sent it has consumed.
    peer_buf_alloc: u32,
    peer_fwd_cnt: u32,
    /// Payload bytes sent to the guest (wrapping, like the guest's counters).
    tx_cnt: u32,
    /// Guest payload bytes written to the host socket (wrapping).
    fwd_cnt: u32,
    /// `fwd_cnt` as the guest last heard it.
    fwd_cnt_sent: u32,
    /// Bytes for the host socket it has not taken yet.
    to_host: VecDeque<u8>,
    /// How many of the first `to_host` bytes are the `OK` line: ours, not guest credit.
    ok_line: usize,
    /// Bytes read from the host socket, from `from_host_off` on not yet sent to the guest.
    from_host: Vec<u8>,
    from_host_off: usize,
    host_eof: bool,
    /// SHUTDOWN flags the guest sent.
    guest_shutdown: u32,
    pending: Pending,
    /// A CREDIT_REQUEST went out and the guest has not given more credit since.
    credit_requested: bool,
    /// In the muxer's rx list.
    pub(super) queued: bool,
}

impl Connection {
    fn new(stream: UnixStream, key: ConnKey, guest_cid: u64, state: State) -> Self {
        Connection {
            stream,
            local_port: key.0,
            peer_port: key.1,
            guest_cid,
            state,
            peer_buf_alloc: 0,
            peer_fwd_cnt: 0,
            tx_cnt: 0,
            fwd_cnt: 0,
            fwd_cnt_sent: 0,
            to_host: VecDeque::new(),
            ok_line: 0,
            from_host: Vec::new(),
            from_host_off: 0,
            host_eof: false,
            guest_shutdown: 0,
            pending: Pending::default(),
            credit_requested: false,
            queued: false,
        }
    }

    /// A host client asked (`CONNECT <peer_port>`) for the guest's `peer_port`.
    pub fn host_initiated(stream: UnixStream, key: ConnKey, guest_cid: u64, now: Instant) -> Self {
        let deadline = now + HANDSHAKE_TIMEOUT;
        let mut c = Connection::new(stream, key, guest_cid, State::LocalInit { deadline });
        c.pending.request = true;
        c
    }

    /// The guest's REQUEST `hdr` reached a host listener, connected as `stream`.
    pub fn guest_initiated(stream: UnixStream, hdr: &Header, guest_cid: u64) -> Self {
        let key = (hdr.dst_port, hdr.src_port);
        let mut c = Connection::new(stream, key, guest_cid, State::Established);
        c.peer_buf_alloc = hdr.buf_alloc;
        c.peer_fwd_cnt = hdr.fwd_cnt;
        c.pending.response = true;
        c
    }

    pub fn key(&self) -> ConnKey {
        (self.local_port, self.peer_port)
    }

    pub fn fd(&self) -> RawFd {
        self.stream.as_raw_fd()
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn into_stream(self) -> UnixStream {
        self.stream
    }

    /// Payload bytes the guest can take now.
    pub fn peer_credit(&self) -> u32 {
        // A fwd_cnt ahead of what we sent makes the difference wrap to a huge number: no
        // credit, rather than a bogus amount.
        let in_flight = self.tx_cnt.wrapping_sub(self.peer_fwd_cnt);
        self.peer_buf_alloc.saturating_sub(in_flight)
    }

    fn rx_pending(&self) -> usize {
        self.from_host.len() - self.from_host_off
    }

    fn guest_reads(&self) -> bool {
        self.guest_shutdown & SHUTDOWN_RCV == 0
    }

    fn can_read_host(&self) -> bool {
        self.state == State::Established
            && !self.host_eof
            && self.guest_reads()
            && self.rx_pending() == 0
    }

    fn data_ready(&self) -> bool {
        !matches!(self.state, State::LocalInit { .. })
            && self.rx_pending() > 0
            && self.guest_reads()
            && self.peer_credit() > 0
    }

    fn wants_credit_request(&self) -> bool {
        self.rx_pending() > 0
            && self.guest_reads()
            && self.peer_credit() == 0
            && !self.credit_requested
    }

    fn shutdown_ready(&self) -> bool {
        self.pending.shutdown && (self.rx_pending() == 0 || !self.guest_reads())
    }

    /// Whether it has a packet for the guest.
    pub fn has_rx(&self) -> bool {
        match self.state {
            State::LocalInit { .. } => self.pending.request,
            _ => {
                self.pending.response
                    || self.data_ready()
                    || self.pending.credit_update
                    || self.wants_credit_request()
                    || self.shutdown_ready()
            }
        }
    }

    /// What the event loop should watch its host socket for (None: nothing).
    pub fn interest(&self) -> Option<EventSet> {
        let mut set = EventSet::empty();
        if self.can_read_host() {
            set |= EventSet::IN;
        }
        if !self.to_host.is_empty() && !matches!(self.state, State::LocalInit { .. }) {
            set |= EventSet::OUT;
        }
        (!set.is_empty()).then_some(set)
    }

    pub fn deadline(&self) -> Option<Instant> {
        match self.state {
            State::LocalInit { deadline } | State::Closing { deadline } => Some(deadline),
            State::Established => None,
        }
    }

    /// A header from us to the guest; it carries our current `fwd_cnt`.
    fn header(&mut self, op: Op, len: u32, flags: u32) -> Header {
        self.fwd_cnt_sent = self.fwd_cnt;
        Header {
            src_cid: HOST_CID,
            dst_cid: self.guest_cid,
            src_port: self.local_port,
            dst_port: self.peer_port,
            len,
            type_: TYPE_STREAM,
            op: op.code(),
            flags,
            buf_alloc: CONN_BUF_SIZE,
            fwd_cnt: self.fwd_cnt,
        }
    }

    /// Handles a packet the guest sent on this connection (type already checked).
    pub fn recv(&mut self, hdr: &Header, data: &[u8]) -> Verdict {
        let credit_before = self.peer_credit();
        self.peer_buf_alloc = hdr.buf_alloc;
        self.peer_fwd_cnt = hdr.fwd_cnt;
        if self.peer_credit() > credit_before {
            self.credit_requested = false;
        }
        let Some(op) = hdr.op() else {
            return Verdict::Close { rst: true };
        };
        match (self.state, op) {
            (_, Op::Rst) => Verdict::Close { rst: false },
            (State::LocalInit { .. }, Op::Response) => {
                self.state = State::Established;
                let line = format!("OK {}\n", self.local_port);
                self.ok_line = line.len();
                self.to_host.extend(line.bytes());
                self.flush_verdict()
            }
            (State::LocalInit { .. }, _) | (_, Op::Request | Op::Response) => {
                Verdict::Close { rst: true }
            }
            (_, Op::Rw) => {
                if self.guest_shutdown & SHUTDOWN_SEND != 0 {
                    return Verdict::Close { rst: true };
                }
                self.to_host.extend(data);
                if self.to_host.len() - self.ok_line > CONN_BUF_SIZE as usize {
                    tracing::debug!("vsock {:?}: guest sent beyond its credit", self.key());
                    return Verdict::Close { rst: true };
                }
                self.flush_verdict()
            }
            (_, Op::CreditUpdate) => Verdict::Keep,
            (_, Op::CreditRequest) => {
                self.pending.credit_update = true;
                Verdict::Keep
            }
            (_, Op::Shutdown) => {
                self.guest_shutdown |= hdr.flags & SHUTDOWN_BOTH;
                if !self.guest_reads() {
                    self.from_host.clear();
                    self.from_host_off = 0;
                }
                if self.guest_shutdown == SHUTDOWN_BOTH {
                    // The guest closed its socket and waits for our RST (5.10.6.6); what
                    // the host socket takes right now is all it gets.
                    let _ = self.flush_to_host();
                    return Verdict::Close { rst: true };
                }
                self.flush_verdict()
            }
        }
    }

    fn flush_verdict(&mut self) -> Verdict {
        match self.flush_to_host() {
            Ok(()) => Verdict::Keep,
            Err(e) => {
                tracing::debug!("vsock {:?}: host socket write failed: {e}", self.key());
                Verdict::Close { rst: true }
            }
        }
    }

    /// Writes what the host socket takes without blocking.
    pub fn flush_to_host(&mut self) -> io::Result<()> {
        while !self.to_host.is_empty() {
            let (front, _) = self.to_host.as_slices();
            match self.stream.write(front) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.to_host.drain(..n);
                    let ours = n.min(self.ok_line);
                    self.ok_line -= ours;
                    // n - ours <= CONN_BUF_SIZE + MAX_PKT_LEN: fits a u32.
                    self.fwd_cnt = self.fwd_cnt.wrapping_add((n - ours) as u32);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if self.to_host.is_empty() && self.guest_shutdown & SHUTDOWN_SEND != 0 {
            // The guest sends no more: the host reads EOF.
            let _ = self.stream.shutdown(Shutdown::Write);
        }
        if self.fwd_cnt.wrapping_sub(self.fwd_cnt_sent) >= CONN_BUF_SIZE / 2 {
            self.pending.credit_update = true;
        }
        Ok(())
    }

    /// Reads what the host socket has, once the previous read went to the guest.
    pub fn read_host(&mut self) -> Verdict {
        if !self.can_read_host() {
            return Verdict::Keep;
        }
        self.from_host.resize(HOST_READ_CHUNK, 0);
        self.from_host_off = 0;
        loop {
            match self.stream.read(&mut self.from_host) {
                Ok(0) => {
                    self.from_host.clear();
                    self.host_eof = true;
                    self.pending.shutdown = true;
                    return Verdict::Keep;
                }
                Ok(n) => {
                    self.from_host.truncate(n);
                    return Verdict::Keep;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.from_host.clear();
                    if e.kind() == io::ErrorKind::WouldBlock {
                        return Verdict::Keep;
                    }
                    tracing::debug!("vsock {:?}: host socket read failed: {e}", self.key());
                    return Verdict::Close { rst: true };
                }
            }
        }
    }

    /// Writes its next packet for the guest into `out` (`room` bytes, at least a header);
    /// returns the bytes written, None when it has nothing that fits.
    pub fn next_rx(
        &mut self,
        room: usize,
        out: &mut impl Write,
        now: Instant,
    ) -> io::Result<Option<usize>> {
        let space = room.saturating_sub(HDR_LEN);
        let (hdr, data_len) = if let State::LocalInit { .. } = self.state {
            if !self.pending.request {
                return Ok(None);
            }
            self.pending.request = false;
            (self.header(Op::Request, 0, 0), 0)
        } else if self.pending.response {
            self.pending.response = false;
            (self.header(Op::Response, 0, 0), 0)
        } else if self.data_ready() && space > 0 {
            // All four bounds are at most MAX_PKT_LEN (64 KiB).
            let n = self
                .rx_pending()
                .min(self.peer_credit() as usize)
                .min(space)
                .min(MAX_PKT_LEN as usize);
            // The header carries fwd_cnt, which answers a pending credit update too.
            self.pending.credit_update = false;
            (self.header(Op::Rw, n as u32, 0), n)
        } else if self.pending.credit_update {
            self.pending.credit_update = false;
            (self.header(Op::CreditUpdate, 0, 0), 0)
        } else if self.wants_credit_request() {
            self.credit_requested = true;
            (self.header(Op::CreditRequest, 0, 0), 0)
        } else if self.shutdown_ready() {
            self.pending.shutdown = false;
            self.state = State::Closing {
                deadline: now + CLOSE_TIMEOUT,
            };
            (self.header(Op::Shutdown, 0, SHUTDOWN_BOTH), 0)
        } else {
            return Ok(None);
        };
        out.write_all(&hdr.to_bytes())?;
        if data_len > 0 {
            let start = self.from_host_off;
            out.write_all(&self.from_host[start..start + data_len])?;
            self.from_host_off += data_len;
            self.tx_cnt = self.tx_cnt.wrapping_add(hdr.len);
            if self.rx_pending() == 0 {
                self.from_host.clear();
                self.from_host_off = 0;
            }
        }
        Ok(Some(HDR_LEN + data_len))
    }
}
