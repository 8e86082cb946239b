//! A virtio-net device on its transport with a host-side driver in front of it (no guest):
//! guest memory, the rx and tx split virtqueues the driver owns, and an event manager the
//! test pumps, so queue notifications and the tap's readable edges are handled exactly as
//! on the VMM's event loop.
//!
//! The tap is a real one where the tests may create it ([`real_tap`], needs CAP_NET_ADMIN),
//! else a `socketpair(AF_UNIX, SOCK_SEQPACKET)` end standing in for it ([`stand_in`]): it
//! keeps frame boundaries like a tap, and the test holds the other end as "the host".

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use event_manager::{EventManager, SubscriberOps};
use vm_memory::{Bytes, GuestAddress};
use vmm_sys_util::eventfd::EventFd;

use super::{MacAddr, Net, NetOptions, Tap, VirtioNetSnapshot, RX_QUEUE, TX_QUEUE, VNET_HDR_LEN};
use crate::devices::virtio::mmio::MmioTransport;
use crate::devices::virtio::restore::RestoreError;
use crate::devices::virtio::testing::{Desc, DriverQueue, MmioDriver};
use crate::vstate::memory::{create_guest_memory, GuestMemoryMmap};

/// Size of the driver's queues.
pub const TEST_QUEUE_SIZE: u16 = 16;
/// Guest memory the testbed creates.
pub const MEM_SIZE: u64 = 16 << 20;
/// Where rx buffers go: one slot per queue entry, each big enough for a 64 KiB frame.
pub const RX_BUFS: u64 = 0x10_0000;
/// Where tx frames are written: one slot per queue entry.
pub const TX_BUFS: u64 = 0x40_0000;
const SLOT: u64 = 0x1_1000;
/// Free for hand-made chains from here.
pub const SCRATCH: u64 = 0x80_0000;
/// An rx buffer as Linux posts it without offloads: header and a 1518-byte frame.
pub const SMALL_RX_BUF: u32 = 1530;
/// The MAC the testbed gives its device.
pub const TEST_MAC: MacAddr = MacAddr([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]);

pub fn other(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

/// A stand-in tap and the host's end of it.
pub fn stand_in() -> (Tap, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: socketpair writes two fds into the array we own.
    let r = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    };
    assert_eq!(r, 0, "socketpair: {}", io::Error::last_os_error());
    // SAFETY: both fds were just created and are owned by nobody else.
    let (a, b) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    (Tap::stand_in(a, "standin0").unwrap(), b)
}

/// A real tap, or None (with the reason printed) where this process may not create one.
pub fn real_tap() -> Option<Tap> {
    match Tap::open("rvnt%d") {
        Ok(t) => Some(t),
        Err(e) => {
            eprintln!("no real tap here, test skipped: {e}");
            None
        }
    }
}

/// Sends one frame from the host end of a stand-in.
pub fn host_send(fd: &OwnedFd, frame: &[u8]) {
    // SAFETY: send reads `frame.len()` bytes from `frame`.
    let n = unsafe { libc::send(fd.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0) };
    assert_eq!(
        n,
        frame.len() as isize,
        "send: {}",
        io::Error::last_os_error()
    );
}

/// The next frame at the host end of a stand-in, if one is there.
pub fn host_recv(fd: &OwnedFd) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 1 << 17];
    // SAFETY: recv writes at most `buf.len()` bytes into `buf`.
    let n = unsafe {
        libc::recv(
            fd.as_raw_fd(),
            buf.as_mut_ptr().cast(),
            buf.len(),
            libc::MSG_DONTWAIT,
        )
    };
    let n = usize::try_from(n).ok()?;
    buf.truncate(n);
    Some(buf)
}

/// A vnet header with every field zero but `num_buffers` (what a driver sends, and what
/// a test-as-host sends when it has no offload in mind).
pub fn plain_hdr() -> [u8; VNET_HDR_LEN] {
    [0; VNET_HDR_LEN]
}

/// An Ethernet frame of `len` bytes (at least 14) to `dst`, ethertype 0x88b5 (local
/// experimental), its payload counting up from `seed`.
pub fn frame(dst: [u8; 6], len: usize, seed: u8) -> Vec<u8> {
    let mut f = Vec::with_capacity(len);
    f.extend_from_slice(&dst);
    f.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x99]);
    f.extend_from_slice(&[0x88, 0xb5]);
    f.extend((0..len.saturating_sub(14)).map(|i| seed.wrapping_add(i as u8)));
    f
}

/// An rx chain the device returned: its head and used length, and the header and frame
/// the guest finds in it (both empty for chains not posted with [`Testbed::post_rx`], or
/// returned with less than a header).
#[derive(Debug)]
pub struct RxUsed {
    pub head: u16,
    pub len: u32,
    pub hdr: Vec<u8>,
    pub frame: Vec<u8>,
}

pub struct Testbed {
    pub mem: GuestMemoryMmap,
    pub transport: MmioTransport,
    pub net: Arc<Mutex<Net>>,
    pub manager: EventManager<Arc<Mutex<Net>>>,
    pub rxq: DriverQueue,
    pub txq: DriverQueue,
    /// A second handle on the transport's interrupt eventfd.
    pub irq: EventFd,
    /// Features the bring-up negotiated.
    pub features: u64,
    /// Where each posted rx chain's (single) buffer is, by head.
    rx_addrs: HashMap<u16, u64>,
    rx_posted: u64,
    tx_posted: u64,
}

impl Testbed {
    /// A device with [`TEST_MAC`] in front of `tap`, before any driver touched it.
    pub fn unstarted(tap: Tap) -> io::Result<Testbed> {
        let net = Net::new(
            NetOptions {
                id: "net0".into(),
                mac: Some(TEST_MAC),
            },
            tap,
        )
        .map_err(other)?;
        Testbed::with_device(net, create_guest_memory(MEM_SIZE).map_err(other)?)
    }

    /// `net` (new or restored) on a fresh transport over `mem`, on an event manager.
    pub fn with_device(net: Net, mem: GuestMemoryMmap) -> io::Result<Testbed> {
        let net = Arc::new(Mutex::new(net));
        let irq = EventFd::new(libc::EFD_NONBLOCK)?;
        let transport =
            MmioTransport::new(mem.clone(), net.clone(), irq.try_clone()?).map_err(other)?;
        Ok(Testbed::assemble(mem, transport, net, irq))
    }

    /// The pieces of a testbed, with the driver's queues at their usual place.
    pub fn assemble(
        mem: GuestMemoryMmap,
        transport: MmioTransport,
        net: Arc<Mutex<Net>>,
        irq: EventFd,
    ) -> Testbed {
        let mut manager = EventManager::new().expect("event manager");
        manager.add_subscriber(net.clone());
        let base = 0x1_0000;
        let footprint = DriverQueue::footprint(TEST_QUEUE_SIZE);
        Testbed {
            mem,
            transport,
            net,
            manager,
            rxq: DriverQueue::new(GuestAddress(base), TEST_QUEUE_SIZE),
            txq: DriverQueue::new(GuestAddress(base + footprint), TEST_QUEUE_SIZE),
            irq,
            features: 0,
            rx_addrs: HashMap::new(),
            rx_posted: 0,
            tx_posted: 0,
        }
    }

    /// A started device in front of `tap` that negotiated `want` (of what it offers).
    pub fn start(tap: Tap, want: u64) -> io::Result<Testbed> {
        let mut bed = Testbed::unstarted(tap)?;
        bed.bring_up(want)?;
        Ok(bed)
    }

    pub fn bring_up(&mut self, want: u64) -> io::Result<()> {
        self.features = self
            .driver()
            .negotiate(want)
            .ok_or_else(|| other("FEATURES_OK refused"))?;
        for (index, q) in [(RX_QUEUE, &self.rxq), (TX_QUEUE, &self.txq)] {
            MmioDriver {
                dev: &mut self.transport,
            }
            .setup_queue(index as u32, q);
        }
        if !self.driver().driver_ok() {
            return Err(other("DRIVER_OK refused"));
        }
        self.pump();
        Ok(())
    }

    /// This driver's view (its queues, buffers and memory) in front of `net` restored from
    /// `snapshot` on a new transport: what a restored VM's guest finds.
    pub fn restored(self, snapshot: &VirtioNetSnapshot, net: Net) -> Result<Testbed, RestoreError> {
        let net = Arc::new(Mutex::new(net));
        let irq = EventFd::new(libc::EFD_NONBLOCK).expect("eventfd");
        let transport = MmioTransport::restore(
            self.mem.clone(),
            net.clone(),
            irq.try_clone().expect("eventfd"),
            &snapshot.transport,
            snapshot.device.running_queues(),
        )?;
        let mut manager = EventManager::new().expect("event manager");
        manager.add_subscriber(net.clone());
        Ok(Testbed {
            transport,
            net,
            manager,
            irq,
            ..self
        })
    }

    pub fn driver(&mut self) -> MmioDriver<'_, MmioTransport> {
        MmioDriver {
            dev: &mut self.transport,
        }
    }

    pub fn device(&self) -> MutexGuard<'_, Net> {
        self.net.lock().unwrap_or_else(|p| p.into_inner())
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

    /// Posts `n` rx buffers of `len` bytes each (one descriptor each) and notifies the rx
    /// queue.
    pub fn post_rx(&mut self, n: u16, len: u32) -> io::Result<()> {
        self.queue_rx(n, len)?;
        self.driver().notify(RX_QUEUE as u32);
        self.pump();
        Ok(())
    }

    /// Makes `n` rx buffers of `len` bytes available without notifying the device.
    pub fn queue_rx(&mut self, n: u16, len: u32) -> io::Result<()> {
        for _ in 0..n {
            let addr = RX_BUFS + (self.rx_posted % u64::from(TEST_QUEUE_SIZE)) * SLOT;
            self.rx_posted += 1;
            // Poison the buffer, so a test sees what the device wrote.
            self.mem
                .write_slice(&vec![0xee; len as usize], GuestAddress(addr))
                .map_err(other)?;
            let head = self
                .rxq
                .add_chain(&self.mem, &[Desc::writable(addr, len)])
                .map_err(other)?;
            self.rx_addrs.insert(head, addr);
        }
        Ok(())
    }

    /// Posts a hand-made rx chain and notifies; returns its head.
    pub fn post_rx_chain(&mut self, chain: &[Desc]) -> io::Result<u16> {
        let head = self.rxq.add_chain(&self.mem, chain).map_err(other)?;
        self.driver().notify(RX_QUEUE as u32);
        self.pump();
        Ok(head)
    }

    /// rx chains the device returned since the last call.
    pub fn recv(&mut self) -> io::Result<Vec<RxUsed>> {
        self.pump();
        let used = self.rxq.take_used(&self.mem).map_err(other)?;
        let mut out = Vec::new();
        for (id, len) in used {
            let head = id as u16;
            let (mut hdr, mut data) = (Vec::new(), Vec::new());
            if let Some(addr) = self.rx_addrs.remove(&head) {
                if len as usize >= VNET_HDR_LEN {
                    hdr = vec![0u8; VNET_HDR_LEN];
                    data = vec![0u8; len as usize - VNET_HDR_LEN];
                    self.mem
                        .read_slice(&mut hdr, GuestAddress(addr))
                        .map_err(other)?;
                    self.mem
                        .read_slice(&mut data, GuestAddress(addr + VNET_HDR_LEN as u64))
                        .map_err(other)?;
                }
            }
            out.push(RxUsed {
                head,
                len,
                hdr,
                frame: data,
            });
        }
        Ok(out)
    }

    /// Writes `hdr` and `frame` as a two-descriptor tx chain (header, then frame, as Linux
    /// lays them out without `any_header_sg`), notifies and runs the device.
    pub fn send(&mut self, hdr: &[u8; VNET_HDR_LEN], frame: &[u8]) -> io::Result<()> {
        let addr = TX_BUFS + (self.tx_posted % u64::from(TEST_QUEUE_SIZE)) * SLOT;
        self.tx_posted += 1;
        self.mem
            .write_slice(hdr, GuestAddress(addr))
            .map_err(other)?;
        let data = addr + 0x100;
        self.mem
            .write_slice(frame, GuestAddress(data))
            .map_err(other)?;
        let len = u32::try_from(frame.len()).map_err(other)?;
        self.send_chain(&[
            Desc::readable(addr, VNET_HDR_LEN as u32),
            Desc::readable(data, len),
        ])
    }

    /// Posts a hand-made tx chain, notifies and runs the device.
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
