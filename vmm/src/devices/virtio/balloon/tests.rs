//! Tier-1 tests: no guest. A host-side driver programs the transport through its registers,
//! lays out the balloon's queues in guest memory, posts chains and runs the device on a
//! real event loop, then checks used rings, guest memory, the configuration space and the
//! interrupts.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use event_manager::{EventManager, MutEventSubscriber, SubscriberOps};
use virtio_bindings::virtio_mmio::{VIRTIO_MMIO_INT_CONFIG, VIRTIO_MMIO_INT_VRING};
use vm_memory::{Bytes, GuestAddress};
use vmm_sys_util::eventfd::EventFd;

use super::persist::BalloonState;
use super::*;
use crate::devices::virtio::mmio::MmioTransport;
use crate::devices::virtio::testing::{Desc, DriverQueue, MmioDriver, NEXT};
use crate::devices::virtio::{VirtioDevice, VIRTIO_F_VERSION_1};
use crate::vstate::discard::GuestDiscard;
use crate::vstate::memory::{create_guest_memory, GuestMemoryMmap};

const MEM: u64 = 32 << 20;
const QSIZE: u16 = 16;
const QUEUES: u64 = 0x10000;
const BUF: u64 = 0x80000;
const DATA: u64 = 0x400000;
const PAGE: u64 = 4096;

type Sub = Arc<Mutex<dyn MutEventSubscriber + Send>>;

struct Bed {
    mem: GuestMemoryMmap,
    transport: MmioTransport,
    device: Arc<Mutex<Balloon>>,
    manager: EventManager<Sub>,
    queues: Vec<DriverQueue>,
    irq: EventFd,
}

impl Bed {
    /// A balloon asking for `target` bytes, brought up by a driver that wants `features`;
    /// `setup` runs on the device before the event loop watches it.
    fn with(features: u64, target: u64, setup: impl FnOnce(&mut Balloon)) -> Bed {
        let mem = create_guest_memory(MEM).unwrap();
        let options = BalloonOptions {
            deflate_on_oom: true,
            free_page_reporting: true,
        };
        let mut balloon = Balloon::new(options, target, Arc::new(GuestDiscard::default())).unwrap();
        setup(&mut balloon);
        let device = Arc::new(Mutex::new(balloon));
        let irq = EventFd::new(libc::EFD_NONBLOCK).unwrap();
        let transport =
            MmioTransport::new(mem.clone(), device.clone(), irq.try_clone().unwrap()).unwrap();
        let mut manager = EventManager::<Sub>::new().unwrap();
        manager.add_subscriber(device.clone());
        let step = DriverQueue::footprint(QSIZE);
        let mut bed = Bed {
            queues: (0..4)
                .map(|i| DriverQueue::new(GuestAddress(QUEUES + i * step), QSIZE))
                .collect(),
            mem,
            transport,
            device,
            manager,
            irq,
        };
        let acked = bed.driver().negotiate(features).unwrap();
        // Queues of features not negotiated do not exist; the rest move up.
        let n = 2 + usize::from(acked & F_STATS_VQ != 0) + usize::from(acked & F_REPORTING != 0);
        for i in 0..n {
            let q = DriverQueue::new(bed.queues[i].desc_table, QSIZE);
            bed.driver().setup_queue(i as u32, &q);
        }
        assert!(bed.driver().driver_ok());
        bed
    }

    fn new() -> Bed {
        Bed::with(u64::MAX, 0, |_| {})
    }

    fn driver(&mut self) -> MmioDriver<'_, MmioTransport> {
        MmioDriver {
            dev: &mut self.transport,
        }
    }

    fn device(&self) -> MutexGuard<'_, Balloon> {
        self.device.lock().unwrap()
    }

    /// Posts `chain` on queue `q`, notifies it and runs the event loop until idle.
    fn post(&mut self, q: usize, chain: &[Desc]) -> u16 {
        let head = self.queues[q].add_chain(&self.mem, chain).unwrap();
        self.driver().notify(q as u32);
        self.pump();
        head
    }

    fn pump(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            match self.manager.run_with_timeout(20) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    }

    fn used(&mut self, q: usize) -> Vec<(u32, u32)> {
        self.queues[q].take_used(&self.mem).unwrap()
    }

    fn pfns(&self, at: u64, pfns: &[u32]) -> Desc {
        let raw: Vec<u8> = pfns.iter().flat_map(|p| p.to_le_bytes()).collect();
        self.mem.write_slice(&raw, GuestAddress(at)).unwrap();
        Desc::readable(at, raw.len() as u32)
    }

    fn fill(&self, addr: u64, len: u64, byte: u8) {
        self.mem
            .write_slice(&vec![byte; len as usize], GuestAddress(addr))
            .unwrap();
    }

    fn all(&self, addr: u64, len: u64, byte: u8) -> bool {
        let mut buf = vec![0u8; len as usize];
        self.mem.read_slice(&mut buf, GuestAddress(addr)).unwrap();
        buf.iter().all(|&b| b == byte)
    }

    fn config32(&mut self, offset: u32) -> u32 {
        let mut b = [0u8; 4];
        self.driver().read_config(offset, &mut b);
        u32::from_le_bytes(b)
    }
}

#[test]
fn target_and_actual_are_in_config_space_and_a_resize_interrupts() {
    let mut bed = Bed::with(u64::MAX, 8 << 20, |_| {});
    assert_eq!(bed.config32(0), (8 << 20) / PAGE as u32);
    assert!(bed.irq.read().is_err(), "nothing raised at bring-up");
    assert!(bed.device().set_target(16 << 20).unwrap());
    assert!(
        !bed.device().set_target(16 << 20).unwrap(),
        "same size: no change"
    );
    assert_eq!(bed.config32(0), (16 << 20) / PAGE as u32);
    assert!(bed.irq.read().is_ok());
    assert_eq!(
        bed.driver().ack_interrupt() & VIRTIO_MMIO_INT_CONFIG,
        VIRTIO_MMIO_INT_CONFIG
    );
    // The driver reports what it holds.
    bed.transport_write_config(4, &4096u32.to_le_bytes());
    assert_eq!(bed.device().actual_bytes(), 4096 * PAGE);
    assert!(bed.device().set_target(4097).is_err(), "not whole pages");
    let features = bed.device().avail_features();
    assert_eq!(
        features,
        VIRTIO_F_VERSION_1 | F_STATS_VQ | F_DEFLATE_ON_OOM | F_REPORTING
    );
}

impl Bed {
    fn transport_write_config(&mut self, offset: u32, data: &[u8]) {
        use crate::devices::bus::BusDevice;
        self.transport.write(
            u64::from(virtio_bindings::virtio_mmio::VIRTIO_MMIO_CONFIG + offset),
            data,
        );
    }
}

#[test]
fn inflated_pages_are_given_back_and_read_as_zero() {
    let mut bed = Bed::new();
    bed.fill(DATA, 8 * PAGE, 0xAA);
    let pfn = (DATA / PAGE) as u32;
    // Pages 0-2 and 5, one page number outside guest memory, one repeated.
    let d = bed.pfns(BUF, &[pfn, pfn + 1, pfn + 2, pfn + 5, 0xFFFF_0000, pfn]);
    let head = bed.post(0, &[d]);
    assert_eq!(bed.used(0), vec![(u32::from(head), 0)]);
    assert_eq!(bed.driver().ack_interrupt(), VIRTIO_MMIO_INT_VRING);
    assert!(bed.all(DATA, 3 * PAGE, 0));
    assert!(bed.all(DATA + 3 * PAGE, 2 * PAGE, 0xAA));
    assert!(bed.all(DATA + 5 * PAGE, PAGE, 0));
    assert!(bed.all(DATA + 6 * PAGE, 2 * PAGE, 0xAA));
    let c = bed.device().counters();
    assert_eq!(c.inflated_pages, 4);
    assert_eq!(c.discarded_bytes, 4 * PAGE);
    assert_eq!(c.refused_pages, 1);
    // Deflating needs nothing from the host but is counted.
    let d = bed.pfns(BUF, &[pfn, pfn + 1]);
    let head = bed.post(1, &[d]);
    assert_eq!(bed.used(1), vec![(u32::from(head), 0)]);
    assert_eq!(bed.device().counters().deflated_pages, 2);
}

#[test]
fn statistics_are_read_kept_and_asked_for_again() {
    let mut bed = Bed::new();
    let mut raw = Vec::new();
    for (tag, v) in [(4u16, 5u64 << 20), (5, 30 << 20), (6, 20 << 20)] {
        raw.extend_from_slice(&tag.to_le_bytes());
        raw.extend_from_slice(&v.to_le_bytes());
    }
    bed.mem.write_slice(&raw, GuestAddress(BUF)).unwrap();
    let head = bed.post(2, &[Desc::readable(BUF, raw.len() as u32)]);
    // The buffer is held, not returned.
    assert!(bed.used(2).is_empty());
    {
        let d = bed.device();
        let (s, _) = d.stats().unwrap();
        assert_eq!(s.free_memory, Some(5 << 20));
        assert_eq!(s.total_memory, Some(30 << 20));
        assert_eq!(s.available_memory, Some(20 << 20));
        assert_eq!(s.swap_in, None);
    }
    assert!(bed.device().request_stats());
    assert_eq!(bed.used(2), vec![(u32::from(head), 0)]);
    assert_eq!(bed.driver().ack_interrupt(), VIRTIO_MMIO_INT_VRING);
    assert!(
        !bed.device().request_stats(),
        "nothing held until the guest reposts"
    );
    assert_eq!(bed.device().counters().stats_updates, 1);
}

#[test]
fn the_statistics_timer_asks_for_new_values() {
    let mut bed = Bed::with(u64::MAX, 0, |b| {
        b.set_stats_interval(Duration::from_millis(20)).unwrap()
    });
    let head = bed.post(2, &[Desc::readable(BUF, 10)]);
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut used = Vec::new();
    while used.is_empty() && Instant::now() < deadline {
        let _ = bed.manager.run_with_timeout(50);
        used = bed.used(2);
    }
    assert_eq!(used, vec![(u32::from(head), 0)]);
}

#[test]
fn reported_free_pages_are_given_back() {
    let mut bed = Bed::new();
    bed.fill(DATA, 4 << 20, 0x55);
    // Linux reports 2 MiB and larger free blocks in device-writable buffers.
    let head = bed.post(
        3,
        &[
            Desc::writable(DATA, 2 << 20),
            Desc::writable(DATA + (3 << 20), 1 << 20),
        ],
    );
    assert_eq!(bed.used(3), vec![(u32::from(head), 0)]);
    assert!(bed.all(DATA, 2 << 20, 0));
    assert!(bed.all(DATA + (2 << 20), 1 << 20, 0x55));
    assert!(bed.all(DATA + (3 << 20), 1 << 20, 0));
    let c = bed.device().counters();
    assert_eq!(c.reported_bytes, 3 << 20);
    assert_eq!(c.discarded_bytes, 3 << 20);
}

#[test]
fn without_statistics_the_reporting_queue_moves_up() {
    let mut bed = Bed::with(!F_STATS_VQ, 0, |_| {});
    bed.fill(DATA, 2 << 20, 0x77);
    let head = bed.post(2, &[Desc::writable(DATA, 2 << 20)]);
    assert_eq!(bed.used(2), vec![(u32::from(head), 0)]);
    assert!(bed.all(DATA, 2 << 20, 0));
    assert_eq!(bed.device().counters().reported_bytes, 2 << 20);
}

#[test]
fn malformed_chains_are_returned_unanswered_and_the_device_keeps_working() {
    let mut bed = Bed::new();
    bed.fill(DATA, PAGE, 0xAA);
    let pfn = (DATA / PAGE) as u32;
    let d = bed.pfns(BUF, &[pfn]);
    // Device-writable page numbers, a buffer past the end of memory, a loop, a chain too long.
    bed.post(0, &[Desc::writable(d.addr, d.len)]);
    bed.post(0, &[Desc::readable(MEM - 2, 8)]);
    let slot = bed.queues[0].avail_idx() % QSIZE;
    bed.queues[0]
        .write_desc(
            &bed.mem,
            slot,
            Desc {
                addr: BUF,
                len: 4,
                flags: NEXT,
                next: slot,
            },
        )
        .unwrap();
    bed.queues[0].publish(&bed.mem, slot).unwrap();
    bed.driver().notify(0);
    bed.pump();
    bed.post(0, &[Desc::readable(BUF, 1 << 20)]);
    // Reporting and statistics chains out of memory.
    bed.post(3, &[Desc::writable(MEM - PAGE, 2 * PAGE as u32)]);
    bed.post(2, &[Desc::readable(MEM + PAGE, 10)]);
    assert_eq!(bed.used(0).len(), 4);
    assert_eq!(bed.used(3).len(), 1);
    let c = bed.device().counters();
    assert_eq!(c.dropped, 6, "{c:?}");
    assert_eq!(c.inflated_pages, 0);
    assert!(
        bed.all(DATA, PAGE, 0xAA),
        "nothing discarded by a bad chain"
    );
    let d = bed.pfns(BUF, &[pfn]);
    bed.post(0, &[d]);
    assert_eq!(bed.used(0).len(), 1);
    assert!(bed.all(DATA, PAGE, 0));
}

#[test]
fn state_round_trips_with_the_held_statistics_buffer() {
    let mut bed = Bed::with(u64::MAX, 4 << 20, |_| {});
    bed.post(2, &[Desc::readable(BUF, 10)]);
    let state: BalloonState = bed.device().state();
    assert_eq!(state.stats_head, Some(0));
    assert_eq!(state.queues.len(), 4);
    assert_eq!(state.target_pages, 1024);
    let options = bed.device().options();
    let back = Balloon::from_state(options, &state, Arc::new(GuestDiscard::default())).unwrap();
    let mut again = back.state();
    // Not running until the transport's restore starts it.
    assert!(again.queues.is_empty());
    again.queues = state.queues.clone();
    again.acked_features = state.acked_features;
    assert_eq!(again, state);
    let other = BalloonOptions {
        free_page_reporting: false,
        ..options
    };
    assert!(Balloon::from_state(other, &state, Arc::new(GuestDiscard::default())).is_err());
}
