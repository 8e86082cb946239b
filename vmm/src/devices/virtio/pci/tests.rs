//! Tier-1 tests of virtio-pci: no guest. A virtio-rng device on the root bus is enumerated
//! through 0xCF8/0xCFC and ECAM, its BAR sized and programmed, its capabilities walked,
//! and it is driven through the BAR window exactly as Linux's `virtio_pci_modern` does,
//! with the used ring and the MSI-X (or INTx) interrupts checked.

use std::path::Path;
use std::sync::{Arc, Mutex};

use vm_memory::{Bytes, GuestAddress};
use vmm_sys_util::eventfd::EventFd;

use super::common_cfg::{DEVICE_FEATURE, DEVICE_FEATURE_SELECT, NUM_QUEUES, QUEUE_NOTIFY_OFF};
use super::persist::PciTransportState;
use super::testing::{EventFdVectors, PciDriver};
use super::*;
use crate::devices::bus::BusDevice;
use crate::devices::pci::config_space::{BAR0, STATUS, STATUS_INTERRUPT};
use crate::devices::pci::{PciDevice, PciRoot, SLOTS};
use crate::devices::virtio::restore::RunningQueues;
use crate::devices::virtio::rng::persist::RngState;
use crate::devices::virtio::rng::Rng;
use crate::devices::virtio::testing::{Desc, DriverQueue};
use crate::devices::virtio::{VirtioDevice, VIRTIO_F_VERSION_1};
use crate::vstate::memory::{create_guest_memory, GuestMemoryMmap};

const MEM: u64 = 4 << 20;
const RING: u64 = 0x10000;
const BUF: u64 = 0x100000;
const BAR: u64 = 0xd000_0000;

struct Bed {
    mem: GuestMemoryMmap,
    root: PciRoot,
    transport: Arc<Mutex<VirtioPciTransport>>,
    device: Arc<Mutex<Rng>>,
    intx: EventFd,
    msi: Arc<EventFdVectors>,
    queue: DriverQueue,
    drv: PciDriver,
}

impl Bed {
    fn new() -> Bed {
        let mem = create_guest_memory(MEM).unwrap();
        let device = Arc::new(Mutex::new(Rng::new(Path::new("/dev/urandom")).unwrap()));
        Bed::with(mem, device, None)
    }

    /// A bed around `device`, restored from a saved transport and device if given, in
    /// slot 1.
    fn with(
        mem: GuestMemoryMmap,
        device: Arc<Mutex<Rng>>,
        saved: Option<(&PciTransportState, &RngState)>,
    ) -> Bed {
        let intx = EventFd::new(libc::EFD_NONBLOCK).unwrap();
        let msi = EventFdVectors::new(msix_vector_count(1)).unwrap();
        let transport = match saved {
            None => VirtioPciTransport::new(
                mem.clone(),
                device.clone(),
                intx.try_clone().unwrap(),
                msi.clone(),
            )
            .unwrap(),
            Some((state, rng)) => {
                let queues: Vec<_> = rng.queue.into_iter().collect();
                VirtioPciTransport::restore(
                    mem.clone(),
                    device.clone(),
                    intx.try_clone().unwrap(),
                    msi.clone(),
                    state,
                    RunningQueues {
                        acked_features: rng.acked_features,
                        queues: &queues,
                    },
                )
                .unwrap()
            }
        };
        let transport = Arc::new(Mutex::new(transport));
        let root = PciRoot::new();
        assert_eq!(root.add(Some(1), transport.clone()).unwrap(), 1);
        let drv = PciDriver::new(&root, 1);
        Bed {
            mem,
            root,
            transport,
            device,
            intx,
            msi,
            queue: DriverQueue::new(GuestAddress(RING), 16),
            drv,
        }
    }

    /// Probe, optionally MSI-X, negotiation, queue 0 on `vector`, DRIVER_OK.
    fn bring_up(&mut self, msix: bool) {
        assert_eq!(self.drv.probe(BAR), BAR_SIZE);
        // Linux's order: the core resets and negotiates, then the driver's find_vqs
        // enables MSI-X, assigns the configuration vector and sets up each queue.
        assert_eq!(self.drv.negotiate(u64::MAX), Some(VIRTIO_F_VERSION_1));
        if msix {
            self.drv.enable_msix(2);
            assert_eq!(self.drv.set_config_vector(0), 0);
        }
        let vector = if msix { 1 } else { VIRTIO_MSI_NO_VECTOR };
        let q = DriverQueue::new(GuestAddress(RING), 16);
        assert_eq!(self.drv.setup_queue(0, &q, vector), Some((vector, 0)));
        assert_eq!(self.drv.setup_queue(1, &q, vector), None, "one queue only");
        self.drv.enable_queue(0);
        assert!(self.drv.driver_ok());
    }

    /// Posts a chain, notifies through the BAR, has the device answer (as its event
    /// handler would on the queue eventfd) and returns the used entries.
    fn request(&mut self, len: u32) -> Vec<(u32, u32)> {
        self.queue
            .add_chain(&self.mem, &[Desc::writable(BUF, len)])
            .unwrap();
        self.drv.notify(0, 0);
        let mut d = self.device.lock().unwrap();
        assert!(
            d.queue_events()[0].read().is_ok(),
            "notify reached the queue"
        );
        d.process_queue();
        drop(d);
        self.queue.take_used(&self.mem).unwrap()
    }

    fn cfg_status(&mut self) -> u16 {
        self.drv.cfg_read(STATUS as u16, 2) as u16
    }
}

fn cf8_read(io: &mut dyn BusDevice, dev: u8, reg: u8, len: usize) -> u32 {
    let addr = 1u32 << 31 | u32::from(dev) << 11 | u32::from(reg & 0xfc);
    io.write(0, &addr.to_le_bytes());
    let mut b = [0u8; 4];
    io.read(4 + u64::from(reg & 3), &mut b[..len]);
    u32::from_le_bytes(b)
}

#[test]
fn enumerates_on_bus_0_through_cf8_and_ecam() {
    let mut bed = Bed::new();
    let mut io = bed.root.config_io();
    let mut ecam = bed.root.ecam();
    for dev in 0..SLOTS {
        let mut b = [0u8; 4];
        ecam.read(u64::from(dev) << 15, &mut b);
        let via_ecam = u32::from_le_bytes(b);
        let via_io = cf8_read(&mut io, dev, 0, 4);
        let expected = match dev {
            0 => 0x29c0_8086,
            1 => 0x1044_1af4,
            _ => 0xffff_ffff,
        };
        assert_eq!((via_io, via_ecam), (expected, expected), "slot {dev}");
    }
    let d = &mut bed.drv;
    assert_eq!(d.cfg_read(0x02, 2), 0x1040 + 4);
    assert_eq!(d.cfg_read(0x08, 1), 1, "revision 1: modern only");
    assert_eq!(d.cfg_read(0x0b, 1), 0xff);
    assert_eq!(d.cfg_read(0x0e, 1), 0, "type 0, single function");
    assert_eq!(d.cfg_read(0x2c, 2), 0x1af4);
    assert_eq!(d.cfg_read(0x2e, 2), 0x40);
    assert_eq!(d.cfg_read(0x3d, 1), 0, "no INTx pin: MSI-X only");
    assert_eq!(
        cf8_read(&mut io, 1, 0x0a, 2),
        0xff00,
        "class via a word access"
    );
    assert_eq!(cf8_read(&mut io, 0, 0x0a, 2), 0x0600, "host bridge class");
    // Functions 1..7 of the device are empty.
    let mut b = [0u8; 2];
    ecam.read(1 << 15 | 3 << 12, &mut b);
    assert_eq!(b, [0xff; 2]);
}

#[test]
fn bar_sizing_reads_the_size_and_other_bars_are_absent() {
    let mut bed = Bed::new();
    let d = &mut bed.drv;
    for bar in 0..6u16 {
        let reg = BAR0 as u16 + 4 * bar;
        d.cfg_write(reg, 4, u32::MAX);
        let expect = if bar == 0 { !(BAR_SIZE as u32 - 1) } else { 0 };
        assert_eq!(d.cfg_read(reg, 4), expect, "BAR {bar}");
    }
    d.cfg_write(0x30, 4, u32::MAX);
    assert_eq!(d.cfg_read(0x30, 4), 0, "no expansion ROM");
    assert_eq!(d.probe(BAR), BAR_SIZE);
    assert_eq!(d.cfg_read(BAR0 as u16, 4), BAR as u32);
    let t = bed.transport.lock().unwrap();
    assert_eq!(t.bar_address(), Some(BAR));
    assert_eq!(t.notify_address(0), Some(BAR + NOTIFY_OFFSET));
    assert_eq!(t.notify_address(1), None);
    assert_eq!(
        t.bars(),
        vec![crate::devices::pci::BarRange {
            bar: 0,
            base: BAR,
            size: BAR_SIZE
        }]
    );
}

#[test]
fn capability_list_has_every_virtio_structure_and_msix() {
    let mut bed = Bed::new();
    bed.drv.probe(BAR);
    let caps = bed.drv.caps.clone();
    let kinds: Vec<(u8, u8)> = caps.all.iter().map(|&(_, id, t)| (id, t)).collect();
    assert_eq!(
        kinds,
        vec![(9, 1), (9, 2), (9, 3), (9, 4), (9, 5), (0x11, 0)],
        "common, notify, ISR, device, PCI access, MSI-X"
    );
    assert_eq!(bed.drv.cfg_read(STATUS as u16, 2) & 0x10, 0x10);
    let common = caps.common.unwrap();
    assert_eq!(
        (common.bar, common.offset, common.length),
        (0, 0, COMMON_CFG_LEN as u32)
    );
    let notify = caps.notify.unwrap();
    assert_eq!((notify.offset, notify.length), (0x3000, 0x1000));
    assert_eq!(caps.notify_multiplier, 4);
    assert_eq!(
        bed.drv.cfg_read(notify.at + 2, 1),
        20,
        "cap_len with multiplier"
    );
    let isr = caps.isr.unwrap();
    assert_eq!((isr.offset, isr.length), (0x1000, 1));
    let dev = caps.device.unwrap();
    assert_eq!((dev.offset, dev.length), (0x2000, 0x1000));
    assert!(caps.pci_cfg.is_some());
    for c in [common, notify, isr, dev] {
        assert_eq!(c.bar, 0);
        assert!(u64::from(c.offset) + u64::from(c.length) <= BAR_SIZE);
    }
    let msix = caps.msix.unwrap();
    let d = &mut bed.drv;
    assert_eq!(d.cfg_read(msix + 2, 2), 1, "table size 2 (N - 1), disabled");
    assert_eq!(d.cfg_read(msix + 4, 4), MSIX_TABLE_OFFSET as u32);
    assert_eq!(d.cfg_read(msix + 8, 4), MSIX_PBA_OFFSET as u32);
    // Table size and offsets are read-only; only enable and mask are writable.
    d.cfg_write(msix + 2, 2, 0xffff);
    assert_eq!(d.cfg_read(msix + 2, 2), 0xc001);
    d.cfg_write(msix + 4, 4, 0x1234);
    assert_eq!(d.cfg_read(msix + 4, 4), MSIX_TABLE_OFFSET as u32);
}

#[test]
fn drives_rng_end_to_end_like_linux_with_msix() {
    let mut bed = Bed::new();
    bed.bring_up(true);
    {
        let programmed = bed.msi.programmed.lock().unwrap().clone();
        let data: Vec<Option<u32>> = programmed.iter().map(|m| m.map(|m| m.data)).collect();
        assert_eq!(data, vec![Some(0x40), Some(0x41)]);
        assert_eq!(programmed[0].unwrap().address_lo, 0xfee0_0000);
    }
    bed.mem.write_slice(&[0u8; 64], GuestAddress(BUF)).unwrap();
    assert_eq!(bed.request(64), vec![(0, 64)]);
    let mut got = [0u8; 64];
    bed.mem.read_slice(&mut got, GuestAddress(BUF)).unwrap();
    assert!(got.iter().any(|&b| b != 0));
    assert!(bed.msi.fired(1), "the queue's vector");
    assert!(!bed.msi.fired(0), "not the configuration vector");
    assert!(bed.intx.read().is_err(), "no INTx with MSI-X on");
    assert_eq!(bed.drv.isr(), 0, "no ISR queue bit with MSI-X on");
    assert_eq!(bed.cfg_status() & STATUS_INTERRUPT, 0);
    // A configuration change goes to msix_config's vector and sets the ISR bit.
    let interrupt = bed.transport.lock().unwrap().interrupt().clone();
    interrupt.signal_config_change();
    assert!(bed.msi.fired(0));
    assert!(!bed.msi.fired(1));
    assert_eq!(bed.drv.isr(), ISR_CONFIG as u8);
    assert_eq!(bed.drv.isr(), 0, "reading the ISR clears it");
    // Again, with the notification written as 32 bits.
    bed.queue
        .add_chain(&bed.mem, &[Desc::writable(BUF, 8)])
        .unwrap();
    bed.drv.bar_write(NOTIFY_OFFSET, 4, 0);
    bed.device.lock().unwrap().process_queue();
    assert_eq!(bed.queue.take_used(&bed.mem).unwrap(), vec![(1, 8)]);
    assert!(bed.msi.fired(1));
    // Reset: the device stops, vectors are unassigned.
    assert!(bed.drv.reset());
    assert!(!bed.device.lock().unwrap().is_active());
    assert_eq!(
        bed.drv.common_read(common_cfg::MSIX_CONFIG, 2),
        u64::from(VIRTIO_MSI_NO_VECTOR)
    );
}

#[test]
fn without_msix_interrupts_use_intx_and_the_isr() {
    let mut bed = Bed::new();
    bed.bring_up(false);
    assert_eq!(bed.request(16), vec![(0, 16)]);
    assert!(bed.intx.read().is_ok(), "INTx irqfd");
    assert!(!bed.msi.fired(0) && !bed.msi.fired(1));
    assert_eq!(
        bed.cfg_status() & STATUS_INTERRUPT,
        STATUS_INTERRUPT,
        "status mirrors the ISR"
    );
    assert_eq!(bed.drv.isr(), ISR_QUEUE as u8);
    assert_eq!(bed.drv.isr(), 0);
    assert_eq!(bed.cfg_status() & STATUS_INTERRUPT, 0);
    bed.transport
        .lock()
        .unwrap()
        .interrupt()
        .signal_config_change();
    assert!(bed.intx.read().is_ok());
    assert_eq!(bed.drv.isr(), ISR_CONFIG as u8);
}

#[test]
fn a_masked_vector_pends_until_unmasked() {
    let mut bed = Bed::new();
    bed.bring_up(true);
    bed.drv.mask_vector(1, true);
    assert_eq!(bed.request(8), vec![(0, 8)]);
    assert!(!bed.msi.fired(1));
    assert_eq!(bed.drv.bar_read(MSIX_PBA_OFFSET, 8), 0b10, "pending bit");
    bed.drv.mask_vector(1, false);
    assert!(bed.msi.fired(1), "sent when unmasked");
    assert_eq!(bed.drv.bar_read(MSIX_PBA_OFFSET, 8), 0);
    // The function mask holds every vector back the same way.
    let cap = bed.drv.caps.msix.unwrap();
    bed.drv.cfg_write(cap + 2, 2, 0xc000);
    bed.transport
        .lock()
        .unwrap()
        .interrupt()
        .signal_used_queue(0);
    assert!(!bed.msi.fired(1));
    bed.drv.cfg_write(cap + 2, 2, 0x8000);
    assert!(bed.msi.fired(1));
}

#[test]
fn vectors_outside_the_table_read_back_as_no_vector() {
    let mut bed = Bed::new();
    bed.drv.probe(BAR);
    bed.drv.enable_msix(2);
    assert_eq!(bed.drv.set_config_vector(2), VIRTIO_MSI_NO_VECTOR);
    assert_eq!(bed.drv.set_config_vector(1), 1);
    bed.drv.negotiate(u64::MAX).unwrap();
    let q = DriverQueue::new(GuestAddress(RING), 16);
    assert_eq!(
        bed.drv.setup_queue(0, &q, 7),
        Some((VIRTIO_MSI_NO_VECTOR, 0))
    );
}

#[test]
fn the_status_rules_are_the_same_as_on_mmio() {
    let mut bed = Bed::new();
    bed.drv.probe(BAR);
    // FEATURES_OK without VERSION_1 is refused.
    assert_eq!(bed.drv.negotiate(0), None);
    // Queue setup before FEATURES_OK is ignored; a skipped step is refused.
    assert!(bed.drv.reset());
    let q = DriverQueue::new(GuestAddress(RING), 16);
    bed.drv.setup_queue(0, &q, 0);
    assert_eq!(bed.drv.common_read(common_cfg::QUEUE_DESC, 8), 0);
    bed.drv.set_status(1 | 4);
    assert_eq!(bed.drv.status(), 0);
    // After DRIVER_OK the queue cannot be changed.
    bed.bring_up(false);
    bed.drv.common_write(common_cfg::QUEUE_SELECT, 2, 0);
    bed.drv.common_write(common_cfg::QUEUE_SIZE, 2, 4);
    assert_eq!(bed.drv.common_read(common_cfg::QUEUE_SIZE, 2), 16);
    assert_eq!(bed.drv.common_read(common_cfg::QUEUE_DESC, 8), RING);
}

#[test]
fn the_pci_access_capability_reaches_the_bar() {
    let mut bed = Bed::new();
    bed.drv.probe(BAR);
    let cap = bed.drv.caps.pci_cfg.unwrap().at;
    let d = &mut bed.drv;
    d.cfg_write(cap + 4, 1, 0);
    d.cfg_write(cap + 8, 4, (COMMON_CFG_OFFSET + NUM_QUEUES) as u32);
    d.cfg_write(cap + 12, 4, 2);
    assert_eq!(
        d.cfg_read(cap + 16, 2),
        1,
        "num_queues through configuration space"
    );
    d.cfg_write(
        cap + 8,
        4,
        (COMMON_CFG_OFFSET + DEVICE_FEATURE_SELECT) as u32,
    );
    d.cfg_write(cap + 12, 4, 4);
    d.cfg_write(cap + 16, 4, 1);
    assert_eq!(d.common_read(DEVICE_FEATURE_SELECT, 4), 1);
    assert_eq!(d.common_read(DEVICE_FEATURE, 4), VIRTIO_F_VERSION_1 >> 32);
    // A length that is not 1, 2 or 4, or past the BAR, reaches nothing.
    d.cfg_write(cap + 12, 4, 3);
    d.cfg_write(cap + 16, 4, 0);
    assert_eq!(d.common_read(DEVICE_FEATURE_SELECT, 4), 1);
    d.cfg_write(cap + 8, 4, BAR_SIZE as u32);
    d.cfg_write(cap + 12, 4, 4);
    d.cfg_write(cap + 16, 4, 0);
    d.cfg_read(cap + 16, 4);
    assert_eq!(d.common_read(DEVICE_FEATURE_SELECT, 4), 1);
}

#[test]
fn malformed_accesses_never_panic_and_change_no_identity() {
    let mut bed = Bed::new();
    bed.bring_up(true);
    let caps_before = bed.drv.walk_caps().all;
    let ids_before = bed.drv.cfg_read(0, 4);
    // Read-only common fields ignore writes.
    bed.drv.common_write(DEVICE_FEATURE, 4, 0xdead);
    bed.drv.common_write(DEVICE_FEATURE_SELECT, 4, 0);
    assert_eq!(bed.drv.common_read(DEVICE_FEATURE, 4), 0);
    bed.drv.common_write(NUM_QUEUES, 2, 9);
    assert_eq!(bed.drv.common_read(NUM_QUEUES, 2), 1);
    bed.drv.common_write(QUEUE_NOTIFY_OFF, 2, 9);
    assert_eq!(bed.drv.common_read(QUEUE_NOTIFY_OFF, 2), 0);
    // Every width at many offsets of the BAR and past it: reads and writes.
    let mut window = bed.root.bar_window();
    let base = BAR - crate::devices::pci::BAR_APERTURE_START;
    for len in 0..=9usize {
        let mut off = 0u64;
        while off < BAR_SIZE + 0x40 {
            // Leave the status register alone (a reset would end the test's device) but
            // hit everything else, unaligned too.
            let skip =
                off <= common_cfg::DEVICE_STATUS && off + len as u64 > common_cfg::DEVICE_STATUS;
            let mut b = vec![0u8; len];
            window.read(base + off, &mut b);
            if !skip {
                window.write(base + off, &vec![0x5a; len]);
            }
            off += if off % 0x1000 < 0x40 { 1 } else { 0x3f1 };
        }
    }
    // Configuration space: every offset and width, except the BAR and command register
    // (which would move or hide the BAR, legitimately).
    let mut ecam = bed.root.ecam();
    for len in 0..=9usize {
        for reg in 0..0x1010u64 {
            if (0x04..0x28).contains(&reg) {
                continue;
            }
            let mut b = vec![0u8; len];
            ecam.read(1 << 15 | reg, &mut b);
            ecam.write(1 << 15 | reg, &vec![0xff; len]);
        }
    }
    assert_eq!(bed.drv.cfg_read(0, 4), ids_before);
    assert_eq!(bed.drv.walk_caps().all, caps_before);
    assert_eq!(bed.drv.cfg_read(0x08, 4) >> 8, 0xff_0000);
}

#[test]
fn hot_remove_and_add_change_enumeration() {
    let mut bed = Bed::new();
    bed.drv.probe(BAR);
    let mut window = bed.root.bar_window();
    let at = BAR - crate::devices::pci::BAR_APERTURE_START + COMMON_CFG_OFFSET + NUM_QUEUES;
    let mut b = [0u8; 2];
    window.read(at, &mut b);
    assert_eq!(u16::from_le_bytes(b), 1);
    let removed = bed.root.remove(1).unwrap();
    assert!(Arc::ptr_eq(
        &removed,
        &(bed.transport.clone() as crate::devices::pci::SharedPciDevice)
    ));
    assert_eq!(bed.drv.cfg_read(0, 4), 0xffff_ffff, "01.0 is gone");
    window.read(at, &mut b);
    assert_eq!(b, [0xff; 2], "and so is its BAR");
    assert_eq!(bed.root.add(Some(4), removed).unwrap(), 4);
    assert_eq!(PciRoot::bdf(4), "0000:00:04.0");
    let mut moved = PciDriver::new(&bed.root, 4);
    assert_eq!(moved.cfg_read(0, 4), 0x1044_1af4);
    // It kept its BAR and decoding, so it is reachable at once.
    window.read(at, &mut b);
    assert_eq!(u16::from_le_bytes(b), 1);
    assert_eq!(bed.root.occupied(), vec![0, 4]);
}

#[test]
fn snapshot_round_trip_keeps_the_running_device() {
    let mut bed = Bed::new();
    bed.bring_up(true);
    assert_eq!(bed.request(8), vec![(0, 8)]);
    assert!(bed.msi.fired(1));
    let state = bed.transport.lock().unwrap().state();
    let bytes = postcard::to_allocvec(&state).unwrap();
    let state: PciTransportState = postcard::from_bytes(&bytes).unwrap();
    assert_eq!(state.queue_vectors, vec![1]);
    assert_eq!(state.config_vector, 0);
    // The device's own state goes across the same way.
    let rng_state = bed.device.lock().unwrap().state();
    let device = Arc::new(Mutex::new(Rng::new(Path::new("/dev/urandom")).unwrap()));
    let mut restored = Bed::with(bed.mem.clone(), device, Some((&state, &rng_state)));
    // The driver's side carries on: its ring positions, the BAR where it left it.
    restored.queue = std::mem::replace(&mut bed.queue, DriverQueue::new(GuestAddress(0), 1));
    restored.drv.bar = BAR;
    restored.drv.caps = restored.drv.walk_caps();
    {
        let programmed = restored.msi.programmed.lock().unwrap().clone();
        assert!(
            programmed.iter().all(|m| m.is_some()),
            "routes installed again"
        );
    }
    assert_eq!(restored.transport.lock().unwrap().state(), state);
    assert_eq!(restored.request(4), vec![(1, 4)]);
    assert!(restored.msi.fired(1), "the restored vector fires");
    // Crafted states are refused.
    let fresh = |s: &PciTransportState| {
        let device = Arc::new(Mutex::new(Rng::new(Path::new("/dev/urandom")).unwrap()));
        let msi = EventFdVectors::new(2).unwrap();
        VirtioPciTransport::restore(
            bed.mem.clone(),
            device,
            EventFd::new(libc::EFD_NONBLOCK).unwrap(),
            msi,
            s,
            RunningQueues::default(),
        )
    };
    let idle = PciTransportState {
        device_status: 0,
        acked_features: 0,
        queues: state.queues.clone(),
        queue_vectors: state.queue_vectors.clone(),
        ..state.clone()
    };
    assert!(fresh(&idle).is_ok());
    let mut bad = idle.clone();
    bad.config_space[2] ^= 1;
    assert!(fresh(&bad).is_err(), "another device ID");
    let mut bad = idle.clone();
    bad.queue_vectors.push(0);
    assert!(fresh(&bad).is_err(), "vectors not one per queue");
    let mut bad = idle.clone();
    bad.config_vector = 5;
    assert!(fresh(&bad).is_err(), "vector outside the table");
    let mut bad = idle.clone();
    bad.msix.entries.pop();
    assert!(fresh(&bad).is_err(), "table of another size");
    let mut bad = idle.clone();
    bad.config_space.truncate(64);
    assert!(fresh(&bad).is_err());
    assert!(
        fresh(&state).is_err(),
        "DRIVER_OK without the device's queues"
    );
}
