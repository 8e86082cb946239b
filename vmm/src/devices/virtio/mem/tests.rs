//! Tier-1 tests: no guest. A host-side driver programs the transport through its registers,
//! lays out the request queue in guest memory, posts requests and checks the used ring, the
//! responses, the configuration space and the interrupts.

use std::sync::{Arc, Mutex};

use virtio_bindings::virtio_mmio as reg;
use vm_memory::{Bytes, GuestAddress};
use vmm_sys_util::eventfd::EventFd;

use super::persist::VirtioMemState;
use super::*;
use crate::devices::virtio::mmio::MmioTransport;
use crate::devices::virtio::testing::{Desc, DriverQueue, MmioDriver};
use crate::devices::virtio::{VirtioDevice, VIRTIO_F_VERSION_1};
use crate::vstate::hotplug_memory::{hotplug_base, HotplugRegion};
use crate::vstate::memory::{create_guest_memory, GuestMemoryMmap};

const BOOT: u64 = 16 << 20;
const REGION: u64 = 64 << 20;
const QUEUE_BASE: u64 = 0x10000;
const REQ: u64 = 0x100000;
const RESP: u64 = 0x101000;
const MIB: u64 = 1 << 20;

struct Bed {
    mem: GuestMemoryMmap,
    base: u64,
    transport: MmioTransport,
    device: Arc<Mutex<VirtioMem>>,
    queue: DriverQueue,
    irq: EventFd,
}

impl Bed {
    fn unstarted(requested: u64) -> Bed {
        let boot = create_guest_memory(BOOT).unwrap();
        let region = HotplugRegion::new(hotplug_base(BOOT), REGION).unwrap();
        let mem = region.attach(&boot).unwrap();
        let base = region.start().0;
        let device = Arc::new(Mutex::new(VirtioMem::new(region, requested).unwrap()));
        let irq = EventFd::new(libc::EFD_NONBLOCK).unwrap();
        let transport =
            MmioTransport::new(mem.clone(), device.clone(), irq.try_clone().unwrap()).unwrap();
        Bed {
            mem,
            base,
            transport,
            device,
            queue: DriverQueue::new(GuestAddress(QUEUE_BASE), 16),
            irq,
        }
    }

    fn new(requested: u64) -> Bed {
        let mut bed = Bed::unstarted(requested);
        let q = DriverQueue::new(GuestAddress(QUEUE_BASE), 16);
        assert_eq!(
            bed.driver().bring_up(u64::MAX, &q),
            Some(VIRTIO_F_VERSION_1)
        );
        bed.queue = q;
        // Bring-up raised nothing.
        assert!(bed.irq.read().is_err());
        bed
    }

    fn driver(&mut self) -> MmioDriver<'_, MmioTransport> {
        MmioDriver {
            dev: &mut self.transport,
        }
    }

    fn config64(&mut self, offset: u32) -> u64 {
        let mut b = [0u8; 8];
        self.driver().read_config(offset, &mut b);
        u64::from_le_bytes(b)
    }

    fn plugged(&mut self) -> u64 {
        self.config64(40)
    }

    fn write_request(&self, kind: u16, addr: u64, nb_blocks: u16) {
        let mut raw = [0u8; 24];
        raw[0..2].copy_from_slice(&kind.to_le_bytes());
        raw[2..8].fill(0xaa); // padding is ignored
        raw[8..16].copy_from_slice(&addr.to_le_bytes());
        raw[16..18].copy_from_slice(&nb_blocks.to_le_bytes());
        self.mem.write_slice(&raw, GuestAddress(REQ)).unwrap();
        self.mem
            .write_slice(&[0xff; 10], GuestAddress(RESP))
            .unwrap();
    }

    /// Posts `chain`, notifies through QueueNotify, runs the device as the event loop
    /// would; returns the new used entries.
    fn submit(&mut self, chain: &[Desc]) -> Vec<(u32, u32)> {
        self.queue.add_chain(&self.mem, chain).unwrap();
        self.driver().notify(0);
        let mut dev = self.device.lock().unwrap();
        assert_eq!(dev.queue_events()[0].read().unwrap(), 1);
        dev.process_queue();
        drop(dev);
        self.queue.take_used(&self.mem).unwrap()
    }

    /// One well-formed request; returns (response type, state).
    fn request(&mut self, kind: u16, addr: u64, nb_blocks: u16) -> (u16, u16) {
        self.write_request(kind, addr, nb_blocks);
        let used = self.submit(&[Desc::readable(REQ, 24), Desc::writable(RESP, 10)]);
        assert_eq!(used.len(), 1);
        assert_eq!(used[0].1, 10, "the response is 10 bytes");
        let resp: [u8; 10] = self.mem.read_obj(GuestAddress(RESP)).unwrap();
        (
            u16::from_le_bytes([resp[0], resp[1]]),
            u16::from_le_bytes([resp[8], resp[9]]),
        )
    }

    fn block(&self, i: u64) -> u64 {
        self.base + i * BLOCK_SIZE
    }
}

#[test]
fn identifies_and_describes_its_region() {
    let mut bed = Bed::unstarted(8 * MIB);
    let mut d = bed.driver();
    assert_eq!(d.read32(reg::VIRTIO_MMIO_DEVICE_ID), 24);
    assert_eq!(d.device_features(), VIRTIO_F_VERSION_1);
    d.write32(reg::VIRTIO_MMIO_QUEUE_SEL, 0);
    assert_eq!(
        d.read32(reg::VIRTIO_MMIO_QUEUE_NUM_MAX),
        u32::from(QUEUE_SIZE)
    );
    assert_eq!(bed.config64(0), BLOCK_SIZE);
    assert_eq!(bed.config64(8), 0, "node_id and padding");
    assert_eq!(bed.config64(16), 4 << 30, "the region starts at 4 GiB");
    assert_eq!(bed.config64(24), REGION);
    assert_eq!(bed.config64(32), REGION, "all of it usable");
    assert_eq!(bed.config64(40), 0);
    assert_eq!(bed.config64(48), 8 * MIB);
    assert_eq!(bed.config64(56), 0, "past the end reads zero");
}

#[test]
fn plug_acks_within_the_request_and_refuses_the_rest() {
    let mut bed = Bed::new(8 * MIB);
    assert_eq!(bed.request(REQ_PLUG, bed.block(2), 2), (RESP_ACK, 0));
    assert_eq!(bed.plugged(), 4 * MIB);
    assert_eq!(bed.irq.read().unwrap(), 1, "used-buffer interrupt");
    assert_eq!(bed.driver().ack_interrupt(), reg::VIRTIO_MMIO_INT_VRING);
    // Plugging a plugged block is an error; so are ranges outside the region, misaligned
    // or empty ones. None of them changes anything.
    for (addr, n) in [
        (bed.block(3), 1),
        (bed.block(0) + 4096, 1),
        (bed.block(0) - BLOCK_SIZE, 1),
        (bed.block(31), 2),
        (bed.block(32), 1),
        (u64::MAX - BLOCK_SIZE + 1, 1),
        (bed.block(0), 0),
    ] {
        assert_eq!(
            bed.request(REQ_PLUG, addr, n),
            (RESP_ERROR, 0),
            "{addr:#x} {n}"
        );
    }
    // Valid, but 4 + 6 MiB is beyond the 8 MiB requested: NACK.
    assert_eq!(bed.request(REQ_PLUG, bed.block(10), 3), (RESP_NACK, 0));
    assert_eq!(bed.request(REQ_PLUG, bed.block(31), 1), (RESP_ACK, 0));
    assert_eq!(bed.plugged(), 6 * MIB);
    assert_eq!(
        bed.request(REQ_STATE, bed.block(2), 2),
        (RESP_ACK, STATE_PLUGGED)
    );
    assert_eq!(
        bed.request(REQ_STATE, bed.block(1), 2),
        (RESP_ACK, STATE_MIXED)
    );
    assert_eq!(
        bed.request(REQ_STATE, bed.block(4), 27),
        (RESP_ACK, STATE_UNPLUGGED)
    );
    assert_eq!(bed.request(REQ_STATE, bed.block(31), 2), (RESP_ERROR, 0));
    let c = bed.device.lock().unwrap().counters();
    assert_eq!((c.acks, c.nacks, c.errors, c.dropped), (5, 1, 8, 0));
}

#[test]
fn unplug_drops_the_pages_and_shrinks_plugged_size() {
    let mut bed = Bed::new(REGION);
    assert_eq!(bed.request(REQ_PLUG, bed.block(0), 4), (RESP_ACK, 0));
    assert_eq!(bed.request(REQ_PLUG, bed.block(8), 1), (RESP_ACK, 0));
    // The guest uses the memory.
    let at = GuestAddress(bed.block(1) + 123);
    bed.mem.write_obj(0x1234_5678u32, at).unwrap();
    let kept = GuestAddress(bed.block(3));
    bed.mem.write_obj(0x9abcu16, kept).unwrap();
    assert_eq!(bed.request(REQ_UNPLUG, bed.block(0), 2), (RESP_ACK, 0));
    assert_eq!(bed.plugged(), 6 * MIB);
    assert_eq!(
        bed.mem.read_obj::<u32>(at).unwrap(),
        0,
        "unplugged pages were dropped"
    );
    assert_eq!(
        bed.mem.read_obj::<u16>(kept).unwrap(),
        0x9abc,
        "plugged ones kept"
    );
    // Unplugging what is not (all) plugged is an error.
    assert_eq!(bed.request(REQ_UNPLUG, bed.block(0), 1), (RESP_ERROR, 0));
    assert_eq!(bed.request(REQ_UNPLUG, bed.block(3), 2), (RESP_ERROR, 0));
    assert_eq!(bed.plugged(), 6 * MIB);
    assert_eq!(bed.request(REQ_UNPLUG_ALL, 0, 0), (RESP_ACK, 0));
    assert_eq!(bed.plugged(), 0);
    assert_eq!(bed.mem.read_obj::<u16>(kept).unwrap(), 0);
    assert_eq!(
        bed.request(REQ_STATE, bed.block(0), 32),
        (RESP_ACK, STATE_UNPLUGGED)
    );
}

#[test]
fn malformed_chains_are_dropped_and_the_device_keeps_working() {
    let mut bed = Bed::new(8 * MIB);
    bed.write_request(REQ_PLUG, bed.block(0), 1);
    let outside = BOOT + 0x1000; // between boot RAM and the region: no memory
    for chain in [
        // No room for a response.
        vec![Desc::readable(REQ, 24)],
        // Response too short.
        vec![Desc::readable(REQ, 24), Desc::writable(RESP, 9)],
        // Request too short.
        vec![Desc::readable(REQ, 23), Desc::writable(RESP, 10)],
        // Readable after writable.
        vec![Desc::writable(RESP, 10), Desc::readable(REQ, 24)],
        // Request outside guest memory.
        vec![Desc::readable(outside, 24), Desc::writable(RESP, 10)],
        // Response outside guest memory.
        vec![Desc::readable(REQ, 24), Desc::writable(outside, 10)],
        // Only a response buffer.
        vec![Desc::writable(RESP, 10)],
    ] {
        let used = bed.submit(&chain);
        assert_eq!(used.len(), 1, "{chain:?}");
        assert_eq!(used[0].1, 0, "{chain:?} is returned unanswered");
    }
    // A descriptor that points to itself.
    let head = bed.queue.avail_idx() % bed.queue.size;
    bed.queue
        .write_desc(
            &bed.mem,
            head,
            Desc {
                addr: REQ,
                len: 24,
                flags: crate::devices::virtio::testing::NEXT,
                next: head,
            },
        )
        .unwrap();
    bed.queue.publish(&bed.mem, head).unwrap();
    bed.driver().notify(0);
    let mut dev = bed.device.lock().unwrap();
    let _ = dev.queue_events()[0].read();
    dev.process_queue();
    drop(dev);
    assert_eq!(
        bed.queue.take_used(&bed.mem).unwrap(),
        vec![(u32::from(head), 0)]
    );
    assert_eq!(bed.device.lock().unwrap().counters().dropped, 8);
    assert_eq!(bed.plugged(), 0, "nothing was plugged by a dropped chain");

    // Unknown types get ERROR; split buffers are fine.
    assert_eq!(bed.request(7, bed.block(0), 1), (RESP_ERROR, 0));
    bed.write_request(REQ_PLUG, bed.block(0), 1);
    let used = bed.submit(&[
        Desc::readable(REQ, 5),
        Desc::readable(REQ + 5, 19),
        Desc::writable(RESP, 3),
        Desc::writable(RESP + 3, 100),
    ]);
    assert_eq!(used[0].1, 10);
    assert_eq!(
        bed.mem.read_obj::<u16>(GuestAddress(RESP)).unwrap(),
        RESP_ACK
    );
    assert_eq!(bed.plugged(), BLOCK_SIZE);
}

#[test]
fn requested_size_change_raises_a_config_interrupt() {
    let mut bed = Bed::new(0);
    let generation = bed.driver().read32(reg::VIRTIO_MMIO_CONFIG_GENERATION);
    // Nothing requested: nothing may be plugged.
    assert_eq!(bed.request(REQ_PLUG, bed.block(0), 1), (RESP_NACK, 0));
    let _ = bed.irq.read();
    bed.driver().ack_interrupt();

    let changed = bed
        .device
        .lock()
        .unwrap()
        .set_requested_size(32 * MIB)
        .unwrap();
    assert!(changed);
    assert_eq!(bed.irq.read().unwrap(), 1);
    assert_eq!(bed.driver().ack_interrupt(), reg::VIRTIO_MMIO_INT_CONFIG);
    assert_eq!(bed.config64(48), 32 * MIB);
    assert_ne!(
        bed.driver().read32(reg::VIRTIO_MMIO_CONFIG_GENERATION),
        generation
    );
    // The same size again is no change and no interrupt; bad sizes are refused.
    let mut dev = bed.device.lock().unwrap();
    assert!(!dev.set_requested_size(32 * MIB).unwrap());
    assert!(dev.set_requested_size(32 * MIB + 4096).is_err());
    assert!(dev.set_requested_size(REGION + BLOCK_SIZE).is_err());
    drop(dev);
    assert!(bed.irq.read().is_err(), "no interrupt for a no-op");
    assert_eq!(bed.request(REQ_PLUG, bed.block(0), 16), (RESP_ACK, 0));

    // Shrinking asks the driver to unplug; the device does not take memory away itself.
    bed.device.lock().unwrap().set_requested_size(0).unwrap();
    assert_eq!(bed.plugged(), 32 * MIB);
    // A reset keeps the plug state for the next driver to find.
    bed.driver().set_status(0);
    assert!(!bed.device.lock().unwrap().is_active());
    assert_eq!(bed.plugged(), 32 * MIB);
}

#[test]
fn state_round_trips_and_is_checked() {
    let mut bed = Bed::new(8 * MIB);
    assert_eq!(bed.request(REQ_PLUG, bed.block(5), 3), (RESP_ACK, 0));
    let state = bed.device.lock().unwrap().state();
    assert!(state.queue.is_some());
    let json = serde_json::to_string(&state).unwrap();
    let back: VirtioMemState = serde_json::from_str(&json).unwrap();
    assert_eq!(back, state);
    let region = HotplugRegion::new(hotplug_base(BOOT), REGION).unwrap();
    let restored = VirtioMem::from_state(region, &back).unwrap();
    assert_eq!(restored.plugged_size(), 6 * MIB);
    assert_eq!(restored.requested_size(), 8 * MIB);
    let moved = HotplugRegion::new(8 << 30, REGION).unwrap();
    assert!(VirtioMem::from_state(moved, &back).is_err());
    let region = HotplugRegion::new(hotplug_base(BOOT), REGION).unwrap();
    let bad = VirtioMemState {
        plugged: vec![0; 3],
        ..back
    };
    assert!(VirtioMem::from_state(region, &bad).is_err());
}

/// Random descriptors and heads (a fixed xorshift sequence): whatever the driver writes,
/// the device answers or drops, never panics, and never claims more than a response.
#[test]
fn random_chains_never_panic() {
    let mut bed = Bed::new(REGION);
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for _ in 0..200 {
        for i in 0..bed.queue.size {
            let r = next();
            let addr = match r % 4 {
                0 => REQ + (r >> 8) % 64,
                1 => (r >> 8) % (BOOT + 0x2000),
                2 => bed.base + (r >> 8) % (REGION + 0x2000),
                _ => r >> 8,
            };
            let d = Desc {
                addr,
                len: (r >> 40) as u32 % 64,
                flags: (r >> 20) as u16 & 3,
                next: (r >> 50) as u16 % 18,
            };
            bed.queue.write_desc(&bed.mem, i, d).unwrap();
        }
        let r = next();
        let kind = (r % 5) as u16;
        bed.write_request(
            kind,
            bed.base + (r >> 8) % (REGION + 0x400000),
            (r >> 40) as u16 % 40,
        );
        let heads = next() % 5;
        for _ in 0..heads {
            let head = (next() % 18) as u16;
            bed.queue.publish(&bed.mem, head).unwrap();
        }
        bed.driver().notify(0);
        bed.device.lock().unwrap().process_queue();
        let used = bed.queue.take_used(&bed.mem).unwrap();
        assert!(used.len() as u64 <= heads);
        for (id, len) in used {
            assert!(id < 16);
            assert!(len == 0 || len == 10, "{len}");
        }
        let dev = bed.device.lock().unwrap();
        assert!(dev.plugged_size() <= dev.requested_size());
    }
}

#[test]
fn a_restored_running_device_continues_its_queue() {
    let mut bed = Bed::new(8 * MIB);
    assert_eq!(
        bed.request(REQ_STATE, bed.block(0), 2),
        (RESP_ACK, STATE_UNPLUGGED)
    );
    let transport = bed.transport.state();
    let state = bed.device.lock().unwrap().state();
    let region = HotplugRegion::new(hotplug_base(BOOT), REGION).unwrap();
    let device = Arc::new(Mutex::new(VirtioMem::from_state(region, &state).unwrap()));
    let running = crate::devices::virtio::restore::RunningQueues {
        acked_features: state.acked_features,
        queues: state.queue.as_slice(),
    };
    let irq = EventFd::new(libc::EFD_NONBLOCK).unwrap();
    bed.transport =
        MmioTransport::restore(bed.mem.clone(), device.clone(), irq, &transport, running).unwrap();
    bed.device = device;
    assert!(bed.device.lock().unwrap().is_active());
    assert_eq!(bed.request(REQ_PLUG, bed.block(1), 2), (RESP_ACK, 0));
    assert_eq!(bed.plugged(), 4 * MIB);
    let used: u16 = bed
        .mem
        .read_obj(GuestAddress(bed.queue.used_ring.0 + 2))
        .unwrap();
    assert_eq!(used, 2, "the used index continues from the snapshot");
}
