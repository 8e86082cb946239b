//! The host side of hybrid vsock: the Unix listener at `uds_path`, `CONNECT <port>\n`
//! handshakes, the live connections keyed by (host port, guest port), and which of their
//! descriptors the event loop watches.
//!
//! The muxer never touches the event loop itself: event handlers change connection state,
//! note the descriptors whose interest may have changed, and [`Muxer::sync`] (called by the
//! event handler after every event, with the loop's `EventOps`) applies the difference and
//! re-arms the timer for the earliest handshake or close deadline. A closed stream is kept
//! open until then, so its descriptor leaves epoll before the number can be reused.

use std::collections::{HashMap, VecDeque};
use std::io::{self, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use event_manager::{EventOps, EventSet, Events};
use vmm_sys_util::eventfd::EventFd;
use vmm_sys_util::timerfd::TimerFd;

use super::connection::{ConnKey, Connection, State, Verdict};
use super::handshake::{Handshake, LineRead};
use super::packet::{Header, Op, TxPacket, TYPE_STREAM};
use super::uds::{connect_nonblocking, path_status, set_nonblocking, PathStatus};
use super::{FIRST_LOCAL_PORT, HOST_CID, MAX_CONNECTIONS, MAX_HANDSHAKES, QUEUE_SIZE};

/// RSTs waiting for rx buffers at which the device stops taking tx packets (each can cause
/// one more): the guest cannot make the queue grow without bound by sending garbage.
pub const RST_BACKLOG: usize = 64;
/// Hard bound on queued RSTs: the backlog, one per connection and one tx batch.
const RST_QUEUE_MAX: usize = RST_BACKLOG + MAX_CONNECTIONS + QUEUE_SIZE as usize;

#[derive(Debug, thiserror::Error)]
pub enum MuxerError {
    #[error("cannot listen on {path}: {source}")]
    Listen {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{0} exists and is not a socket nobody listens on")]
    PathInUse(PathBuf),
    #[error("cannot create the vsock timer or wake-up eventfd: {0}")]
    Timer(#[source] io::Error),
}

/// Connection-level events since the device was created, for tests and logs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MuxerCounters {
    pub host_connects: u64,
    pub guest_connects: u64,
    pub handshakes_refused: u64,
    pub rsts_sent: u64,
}

pub struct Muxer {
    uds_path: PathBuf,
    listener: UnixListener,
    timer: TimerFd,
    timer_deadline: Option<Instant>,
    /// Written when state changes outside the event loop (driver reset or start), so the
    /// loop syncs its watch list soon.
    kick: EventFd,
    guest_cid: u64,
    /// The driver is up: host-initiated connections can be offered to the guest.
    guest_ready: bool,
    handshakes: HashMap<RawFd, Handshake>,
    conns: HashMap<ConnKey, Connection>,
    by_fd: HashMap<RawFd, ConnKey>,
    /// Connections with a packet for the guest, in turn.
    ready: VecDeque<ConnKey>,
    /// RSTs for the guest that belong to no live connection.
    rsts: VecDeque<Header>,
    registered: HashMap<RawFd, EventSet>,
    dirty: Vec<RawFd>,
    graveyard: Vec<UnixStream>,
    next_port: u32,
    counters: MuxerCounters,
}

impl Muxer {
    /// Listens on `uds_path` (replacing a stale socket there).
    pub fn new(guest_cid: u64, uds_path: &Path) -> Result<Muxer, MuxerError> {
        let listen_error = |source| MuxerError::Listen {
            path: uds_path.to_path_buf(),
            source,
        };
        match path_status(uds_path).map_err(listen_error)? {
            PathStatus::Free => {}
            PathStatus::StaleSocket => std::fs::remove_file(uds_path).map_err(listen_error)?,
            PathStatus::LiveSocket | PathStatus::NotASocket => {
                return Err(MuxerError::PathInUse(uds_path.to_path_buf()))
            }
        }
        let listener = UnixListener::bind(uds_path).map_err(listen_error)?;
        listener.set_nonblocking(true).map_err(listen_error)?;
        let timer = TimerFd::new().map_err(|e| MuxerError::Timer(e.into()))?;
        // A timer re-armed after epoll saw it fire must not block the loop when read.
        set_nonblocking(&timer).map_err(MuxerError::Timer)?;
        let kick = EventFd::new(libc::EFD_NONBLOCK).map_err(MuxerError::Timer)?;
        Ok(Muxer {
            uds_path: uds_path.to_path_buf(),
            listener,
            timer,
            timer_deadline: None,
            kick,
            guest_cid,
            guest_ready: false,
            handshakes: HashMap::new(),
            conns: HashMap::new(),
            by_fd: HashMap::new(),
            ready: VecDeque::new(),
            rsts: VecDeque::new(),
            registered: HashMap::new(),
            dirty: Vec::new(),
            graveyard: Vec::new(),
            next_port: FIRST_LOCAL_PORT,
            counters: MuxerCounters::default(),
        })
    }

    pub fn uds_path(&self) -> &Path {
        &self.uds_path
    }

    pub fn counters(&self) -> MuxerCounters {
        self.counters
    }

    pub fn connection_count(&self) -> usize {
        self.conns.len()
    }

    /// The state of connection `key`, if it exists.
    pub fn connection_state(&self, key: ConnKey) -> Option<State> {
        self.conns.get(&key).map(Connection::state)
    }

    /// Registers the listener and the timer with the event loop.
    pub fn init(&mut self, ops: &mut EventOps) {
        self.dirty.push(self.listener.as_raw_fd());
        self.dirty.push(self.timer.as_raw_fd());
        self.dirty.push(self.kick.as_raw_fd());
        self.sync(ops, Instant::now());
    }

    /// The driver came up (true) or was reset (false: every connection is gone, without
    /// RSTs, since there is no driver to read them).
    pub fn set_guest_ready(&mut self, ready: bool) {
        self.guest_ready = ready;
        if !ready {
            let keys: Vec<ConnKey> = self.conns.keys().copied().collect();
            for key in keys {
                self.close(key, false);
            }
            self.ready.clear();
            self.rsts.clear();
        }
        if let Err(e) = self.kick.write(1) {
            tracing::warn!("vsock: cannot wake the event loop: {e}");
        }
    }

    /// Whether `fd` is one of the muxer's.
    pub fn owns(&self, fd: RawFd) -> bool {
        fd == self.listener.as_raw_fd()
            || fd == self.timer.as_raw_fd()
            || fd == self.kick.as_raw_fd()
            || self.handshakes.contains_key(&fd)
            || self.by_fd.contains_key(&fd)
    }

    /// Handles `events` on one of the muxer's descriptors.
    pub fn handle_event(&mut self, fd: RawFd, events: EventSet, now: Instant) {
        if fd == self.listener.as_raw_fd() {
            self.accept_all();
        } else if fd == self.timer.as_raw_fd() {
            // Non-blocking: a timer re-armed since epoll reported it just reads WouldBlock.
            let _ = self.timer.wait();
            self.timer_deadline = None;
            self.expire(now);
        } else if fd == self.kick.as_raw_fd() {
            let _ = self.kick.read();
        } else if self.handshakes.contains_key(&fd) {
            self.handshake(fd, now);
        } else if let Some(&key) = self.by_fd.get(&fd) {
            self.host_io(key, events);
        }
    }

    fn accept_all(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((stream, _)) => {
                    let full = self.handshakes.len() >= MAX_HANDSHAKES
                        || self.handshakes.len() + self.conns.len() >= MAX_CONNECTIONS;
                    if full || stream.set_nonblocking(true).is_err() {
                        tracing::debug!("vsock: host client refused (too many connections)");
                        self.counters.handshakes_refused += 1;
                        continue;
                    }
                    let fd = stream.as_raw_fd();
                    self.handshakes.insert(fd, Handshake::new(stream));
                    self.dirty.push(fd);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    if e.kind() != io::ErrorKind::WouldBlock {
                        tracing::warn!("vsock: accept on {}: {e}", self.uds_path.display());
                    }
                    return;
                }
            }
        }
    }

    fn handshake(&mut self, fd: RawFd, now: Instant) {
        let Some(hs) = self.handshakes.get_mut(&fd) else {
            return;
        };
        let port = match hs.read_line() {
            LineRead::Incomplete => return,
            LineRead::Bad(why) => {
                tracing::debug!("vsock: host client closed: {why}");
                None
            }
            LineRead::Port(port) => Some(port),
        };
        let Some(hs) = self.handshakes.remove(&fd) else {
            return;
        };
        self.dirty.push(fd);
        let local = match port {
            Some(_) if !self.guest_ready => {
                tracing::debug!("vsock: CONNECT before the guest driver is up; closed");
                None
            }
            Some(_) if self.conns.len() >= MAX_CONNECTIONS => None,
            Some(_) => self.alloc_local_port(),
            None => None,
        };
        match (port, local) {
            (Some(port), Some(local)) => {
                let key = (local, port);
                self.conns.insert(
                    key,
                    Connection::host_initiated(hs.stream, key, self.guest_cid, now),
                );
                self.by_fd.insert(fd, key);
                self.counters.host_connects += 1;
                self.touch(key);
            }
            // Closed with nothing written: kata redials.
            _ => {
                self.counters.handshakes_refused += 1;
                self.graveyard.push(hs.stream);
            }
        }
    }

    /// A host port no connection uses: among MAX_CONNECTIONS + 1 candidates one is free.
    fn alloc_local_port(&mut self) -> Option<u32> {
        for _ in 0..=MAX_CONNECTIONS {
            let port = self.next_port;
            // u32::MAX is VMADDR_PORT_ANY.
            self.next_port = if port >= u32::MAX - 1 {
                FIRST_LOCAL_PORT
            } else {
                port + 1
            };
            if !self.conns.keys().any(|k| k.0 == port) {
                return Some(port);
            }
        }
        None
    }

    fn host_io(&mut self, key: ConnKey, events: EventSet) {
        let Some(conn) = self.conns.get_mut(&key) else {
            return;
        };
        let trouble = EventSet::HANG_UP | EventSet::ERROR | EventSet::READ_HANG_UP;
        let mut verdict = Verdict::Keep;
        if events.intersects(EventSet::IN | trouble) {
            verdict = conn.read_host();
        }
        if verdict == Verdict::Keep && events.intersects(EventSet::OUT | trouble) {
            if let Err(e) = conn.flush_to_host() {
                tracing::debug!("vsock {key:?}: host socket write failed: {e}");
                verdict = Verdict::Close { rst: true };
            }
        }
        self.apply(key, verdict);
    }

    /// Handles a packet the guest sent.
    pub fn recv_guest(&mut self, pkt: &TxPacket) {
        let h = &pkt.hdr;
        if h.src_cid != self.guest_cid || h.dst_cid != HOST_CID {
            // Not from this guest or not for the host: nobody to answer.
            tracing::debug!(
                "vsock: packet {}->{} dropped (guest is {}, host {HOST_CID})",
                h.src_cid,
                h.dst_cid,
                self.guest_cid
            );
            return;
        }
        let is_rst = h.op() == Some(Op::Rst);
        if h.type_ != TYPE_STREAM {
            if !is_rst {
                self.reply_rst(h);
            }
            return;
        }
        let key = (h.dst_port, h.src_port);
        if let Some(conn) = self.conns.get_mut(&key) {
            let verdict = conn.recv(h, &pkt.data);
            self.apply(key, verdict);
            return;
        }
        match h.op() {
            Some(Op::Request) => self.connect_guest(h),
            Some(Op::Rst) => {}
            _ => self.reply_rst(h),
        }
    }

    /// The guest's REQUEST to host port P: connect to `<uds_path>_P`.
    fn connect_guest(&mut self, h: &Header) {
        if self.conns.len() + self.handshakes.len() >= MAX_CONNECTIONS {
            self.reply_rst(h);
            return;
        }
        let mut path = self.uds_path.clone().into_os_string();
        path.push(format!("_{}", h.dst_port));
        match connect_nonblocking(Path::new(&path)) {
            Ok(stream) => {
                let conn = Connection::guest_initiated(stream, h, self.guest_cid);
                let key = conn.key();
                self.by_fd.insert(conn.fd(), key);
                self.conns.insert(key, conn);
                self.counters.guest_connects += 1;
                self.touch(key);
            }
            Err(e) => {
                tracing::debug!("vsock: guest connect to {path:?}: {e}");
                self.reply_rst(h);
            }
        }
    }

    fn reply_rst(&mut self, h: &Header) {
        self.push_rst(Header {
            src_cid: HOST_CID,
            dst_cid: self.guest_cid,
            src_port: h.dst_port,
            dst_port: h.src_port,
            type_: TYPE_STREAM,
            op: Op::Rst.code(),
            ..Header::default()
        });
    }

    fn push_rst(&mut self, hdr: Header) {
        if self.rsts.len() >= RST_QUEUE_MAX {
            tracing::debug!(
                "vsock: RST queue full; RST to port {} dropped",
                hdr.dst_port
            );
            return;
        }
        self.rsts.push_back(hdr);
    }

    fn apply(&mut self, key: ConnKey, verdict: Verdict) {
        match verdict {
            Verdict::Keep => self.touch(key),
            Verdict::Close { rst } => self.close(key, rst),
        }
    }

    /// Queues the connection for rx if it has something, and re-syncs its interest.
    fn touch(&mut self, key: ConnKey) {
        if let Some(conn) = self.conns.get_mut(&key) {
            if conn.has_rx() && !conn.queued {
                conn.queued = true;
                self.ready.push_back(key);
            }
            self.dirty.push(conn.fd());
        }
    }

    /// Forgets the connection; its stream is closed at the next sync, unwritten to if it
    /// was still waiting for the guest.
    fn close(&mut self, key: ConnKey, rst: bool) {
        let Some(conn) = self.conns.remove(&key) else {
            return;
        };
        let fd = conn.fd();
        self.by_fd.remove(&fd);
        self.dirty.push(fd);
        if rst {
            self.push_rst(Header {
                src_cid: HOST_CID,
                dst_cid: self.guest_cid,
                src_port: key.0,
                dst_port: key.1,
                type_: TYPE_STREAM,
                op: Op::Rst.code(),
                ..Header::default()
            });
        }
        self.graveyard.push(conn.into_stream());
    }

    /// Closes connections past their handshake or close deadline, with an RST to the guest.
    fn expire(&mut self, now: Instant) {
        let late: Vec<ConnKey> = self
            .conns
            .iter()
            .filter(|(_, c)| c.deadline().is_some_and(|d| d <= now))
            .map(|(k, _)| *k)
            .collect();
        for key in late {
            tracing::debug!("vsock {key:?}: the guest did not answer in time");
            self.close(key, true);
        }
    }

    /// Whether a packet waits for an rx buffer.
    pub fn has_rx(&self) -> bool {
        !self.rsts.is_empty() || !self.ready.is_empty()
    }

    /// Whether the device should stop taking tx packets until the guest reads some rx.
    pub fn rx_backlog_full(&self) -> bool {
        self.rsts.len() >= RST_BACKLOG
    }

    /// Writes the next packet for the guest into `out` (`room` bytes, at least a header);
    /// returns its length, None when nothing fits.
    pub fn fill_rx(&mut self, room: usize, out: &mut impl Write, now: Instant) -> Option<usize> {
        if let Some(hdr) = self.rsts.pop_front() {
            self.counters.rsts_sent += 1;
            let bytes = hdr.to_bytes();
            return Some(out.write_all(&bytes).map_or(0, |()| bytes.len()));
        }
        let mut skipped = Vec::new();
        let mut written = None;
        while let Some(key) = self.ready.pop_front() {
            let Some(conn) = self.conns.get_mut(&key) else {
                continue;
            };
            conn.queued = false;
            match conn.next_rx(room, out, now) {
                Ok(Some(n)) => {
                    self.touch(key);
                    written = Some(n);
                    break;
                }
                // Data waiting that does not fit this buffer: keep its turn.
                Ok(None) if conn.has_rx() => skipped.push(key),
                Ok(None) => self.dirty.push(conn.fd()),
                Err(e) => {
                    tracing::debug!("vsock {key:?}: rx buffer write failed: {e}");
                    self.close(key, true);
                    written = Some(0);
                    break;
                }
            }
        }
        for key in skipped {
            if let Some(conn) = self.conns.get_mut(&key) {
                conn.queued = true;
                self.ready.push_front(key);
            }
        }
        written
    }

    /// What the event loop should watch `fd` for.
    fn desired(&self, fd: RawFd) -> Option<EventSet> {
        if fd == self.listener.as_raw_fd()
            || fd == self.timer.as_raw_fd()
            || fd == self.kick.as_raw_fd()
            || self.handshakes.contains_key(&fd)
        {
            return Some(EventSet::IN);
        }
        let key = self.by_fd.get(&fd)?;
        self.conns.get(key).and_then(Connection::interest)
    }

    /// Applies interest changes to the event loop, closes dropped streams, re-arms the
    /// timer for the earliest deadline.
    pub fn sync(&mut self, ops: &mut EventOps, now: Instant) {
        for fd in std::mem::take(&mut self.dirty) {
            let want = self.desired(fd);
            let have = self.registered.get(&fd).copied();
            let result = match (have, want) {
                (None, Some(w)) => ops.add(Events::new_raw(fd, w)),
                (Some(h), Some(w)) if h != w => ops.modify(Events::new_raw(fd, w)),
                (Some(h), None) => ops.remove(Events::new_raw(fd, h)),
                _ => Ok(()),
            };
            match result {
                Ok(()) => match want {
                    Some(w) => {
                        self.registered.insert(fd, w);
                    }
                    None => {
                        self.registered.remove(&fd);
                    }
                },
                Err(e) => tracing::warn!("vsock: event loop registration of fd {fd}: {e:?}"),
            }
        }
        // Every closed stream left epoll above.
        self.graveyard.clear();
        let next = self.conns.values().filter_map(Connection::deadline).min();
        if next != self.timer_deadline {
            let armed = match next {
                // A zero duration would disarm the timer instead.
                Some(d) => self.timer.reset(
                    d.saturating_duration_since(now)
                        .max(Duration::from_millis(1)),
                    None,
                ),
                None => self.timer.clear(),
            };
            match armed {
                Ok(()) => self.timer_deadline = next,
                Err(e) => tracing::warn!("vsock: cannot arm the timer: {e}"),
            }
        }
    }
}

impl Drop for Muxer {
    fn drop(&mut self) {
        // The socket file would make the next bind at this path fail.
        let _ = std::fs::remove_file(&self.uds_path);
    }
}
