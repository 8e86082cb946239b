//! A virtio-vsock device on its transport with a host-side driver in front of it (no
//! guest): guest memory, the three split virtqueues the driver owns, and an event manager
//! the test pumps in its own thread, so host sockets and queue notifications are handled
//! exactly as on the VMM's event loop.

use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use event_manager::{EventManager, SubscriberOps};
use vm_memory::{Bytes, GuestAddress};
use vmm_sys_util::eventfd::EventFd;

use super::packet::{Header, Op, HDR_LEN, TYPE_STREAM};
use super::{Vsock, EVENT_QUEUE, HOST_CID, RX_QUEUE, TX_QUEUE};
use crate::devices::virtio::mmio::MmioTransport;
use crate::devices::virtio::testing::{Desc, DriverQueue, MmioDriver};
use crate::vstate::memory::{create_guest_memory, GuestMemoryMmap};

/// The guest's CID.
pub const GUEST_CID: u64 = 3;
/// Size of the driver's queues.
pub const TEST_QUEUE_SIZE: u16 = 64;
/// Where the rx buffers live: one slot per queue entry.
pub const RX_BUFS: u64 = 0x10_0000;
/// Size of each rx buffer, as Linux posts them (4 KiB of payload plus the header).
pub const RX_BUF_LEN: u32 = 4096 + HDR_LEN as u32;
const RX_SLOT: u64 = 0x2000;
/// Where tx packets are written: one slot per queue entry.
pub const TX_BUFS: u64 = 0x20_0000;
const TX_SLOT: u64 = 0x1_1000;
/// Free for hand-made chains from here.
pub const SCRATCH: u64 = 0x80_0000;
/// Guest memory the testbed creates.
pub const MEM_SIZE: u64 = 16 << 20;
/// What the test-as-guest advertises as its receive buffer.
pub const GUEST_BUF_ALLOC: u32 = 256 * 1024;

pub struct Testbed {
    pub mem: GuestMemoryMmap,
    pub transport: MmioTransport,
    pub vsock: Arc<Mutex<Vsock>>,
    pub manager: EventManager<Arc<Mutex<Vsock>>>,
    pub rxq: DriverQueue,
    pub txq: DriverQueue,
    pub evq: DriverQueue,
    /// A second handle on the transport's interrupt eventfd.
    pub irq: EventFd,
    /// Payload bytes the test-as-guest has consumed (its `fwd_cnt`).
    pub fwd_cnt: u32,
    tx_slot: u64,
}

fn other(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

impl Testbed {
    /// A device listening on `uds`, brought up by the driver, with `rx_buffers` rx
    /// buffers posted.
    pub fn start(uds: &Path, rx_buffers: u16) -> io::Result<Testbed> {
        let mut bed = Testbed::unstarted(uds)?;
        let features = bed
            .driver()
            .negotiate(u64::MAX)
            .ok_or_else(|| other("refused"))?;
        if features & crate::devices::virtio::VIRTIO_F_VERSION_1 == 0 {
            return Err(other("VERSION_1 not negotiated"));
        }
        for (index, q) in [
            (RX_QUEUE, &bed.rxq),
            (TX_QUEUE, &bed.txq),
            (EVENT_QUEUE, &bed.evq),
        ] {
            MmioDriver {
                dev: &mut bed.transport,
            }
            .setup_queue(index as u32, q);
        }
        if !bed.driver().driver_ok() {
            return Err(other("DRIVER_OK refused"));
        }
        bed.post_rx(rx_buffers)?;
        bed.pump();
        Ok(bed)
    }

    /// The device before any driver touched it (its listener already bound).
    pub fn unstarted(uds: &Path) -> io::Result<Testbed> {
        let mem = create_guest_memory(MEM_SIZE).map_err(other)?;
        let vsock = Arc::new(Mutex::new(Vsock::new(GUEST_CID, uds).map_err(other)?));
        let irq = EventFd::new(libc::EFD_NONBLOCK)?;
        let transport =
            MmioTransport::new(mem.clone(), vsock.clone(), irq.try_clone()?).map_err(other)?;
        let mut manager = EventManager::new().map_err(|e| other(format!("{e:?}")))?;
        manager.add_subscriber(vsock.clone());
        let footprint = DriverQueue::footprint(TEST_QUEUE_SIZE);
        let base = 0x1_0000;
        Ok(Testbed {
            mem,
            transport,
            vsock,
            manager,
            rxq: DriverQueue::new(GuestAddress(base), TEST_QUEUE_SIZE),
            txq: DriverQueue::new(GuestAddress(base + footprint), TEST_QUEUE_SIZE),
            evq: DriverQueue::new(GuestAddress(base + 2 * footprint), TEST_QUEUE_SIZE),
            irq,
            fwd_cnt: 0,
            tx_slot: 0,
        })
    }

    pub fn driver(&mut self) -> MmioDriver<'_, MmioTransport> {
        MmioDriver {
            dev: &mut self.transport,
        }
    }

    pub fn device(&self) -> MutexGuard<'_, Vsock> {
        self.vsock.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs the event loop until it has been idle for 20 ms (at most 2 s).
    pub fn pump(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            match self.manager.run_with_timeout(20) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    }

    /// Runs the event loop for `d`, whatever happens.
    pub fn pump_for(&mut self, d: Duration) {
        let deadline = Instant::now() + d;
        while Instant::now() < deadline {
            let _ = self.manager.run_with_timeout(10);
        }
    }

    /// Posts `n` rx buffers of [`RX_BUF_LEN`] and notifies the rx queue.
    pub fn post_rx(&mut self, n: u16) -> io::Result<()> {
        for _ in 0..n {
            // Single-descriptor chains take descriptor slots in turn, so the head is the
            // next slot: give each slot its own buffer.
            let slot = self.rxq.avail_idx() % self.rxq.size;
            let addr = RX_BUFS + u64::from(slot) * RX_SLOT;
            self.rxq
                .add_chain(&self.mem, &[Desc::writable(addr, RX_BUF_LEN)])
                .map_err(other)?;
        }
        self.driver().notify(RX_QUEUE as u32);
        Ok(())
    }

    /// Packets the device put in rx buffers since the last call; each buffer read is
    /// reposted.
    pub fn recv(&mut self) -> io::Result<Vec<(Header, Vec<u8>)>> {
        self.pump();
        let used = self.rxq.take_used(&self.mem).map_err(other)?;
        let mut out = Vec::new();
        for &(id, len) in &used {
            let addr = RX_BUFS + u64::from(id) * RX_SLOT;
            let mut raw = [0u8; HDR_LEN];
            self.mem
                .read_slice(&mut raw, GuestAddress(addr))
                .map_err(other)?;
            let hdr = Header::from_bytes(&raw);
            let data_len = (len as usize).saturating_sub(HDR_LEN);
            let mut data = vec![0u8; data_len];
            self.mem
                .read_slice(&mut data, GuestAddress(addr + HDR_LEN as u64))
                .map_err(other)?;
            out.push((hdr, data));
        }
        if !used.is_empty() {
            self.post_rx(used.len() as u16)?;
            self.pump();
        }
        Ok(out)
    }

    /// Receives until a packet with `op` arrives (or `timeout` passes); returns all packets
    /// received on the way.
    pub fn recv_until(&mut self, op: Op, timeout: Duration) -> io::Result<Vec<(Header, Vec<u8>)>> {
        let deadline = Instant::now() + timeout;
        let mut all = Vec::new();
        loop {
            let got = self.recv()?;
            let found = got.iter().any(|(h, _)| h.op == op.code());
            all.extend(got);
            if found || Instant::now() >= deadline {
                return Ok(all);
            }
        }
    }

    /// A header from the test-as-guest to the host.
    pub fn hdr(&self, src_port: u32, dst_port: u32, op: Op, len: u32) -> Header {
        Header {
            src_cid: GUEST_CID,
            dst_cid: HOST_CID,
            src_port,
            dst_port,
            len,
            type_: TYPE_STREAM,
            op: op.code(),
            flags: 0,
            buf_alloc: GUEST_BUF_ALLOC,
            fwd_cnt: self.fwd_cnt,
        }
    }

    /// Writes `hdr` and `data` into one tx buffer, posts it and runs the device.
    pub fn send(&mut self, hdr: Header, data: &[u8]) -> io::Result<()> {
        let addr = TX_BUFS + (self.tx_slot % u64::from(self.txq.size)) * TX_SLOT;
        self.tx_slot += 1;
        self.mem
            .write_slice(&hdr.to_bytes(), GuestAddress(addr))
            .map_err(other)?;
        self.mem
            .write_slice(data, GuestAddress(addr + HDR_LEN as u64))
            .map_err(other)?;
        let len = u32::try_from(HDR_LEN + data.len()).map_err(other)?;
        self.send_chain(&[Desc::readable(addr, len)])
    }

    /// Posts a hand-made tx chain and runs the device; returns nothing about it (tx
    /// chains are always used with length 0).
    pub fn send_chain(&mut self, chain: &[Desc]) -> io::Result<()> {
        self.txq.add_chain(&self.mem, chain).map_err(other)?;
        self.driver().notify(TX_QUEUE as u32);
        self.pump();
        Ok(())
    }

    /// Used tx entries since the last call.
    pub fn tx_used(&mut self) -> io::Result<Vec<(u32, u32)>> {
        self.txq.take_used(&self.mem).map_err(other)
    }
}
