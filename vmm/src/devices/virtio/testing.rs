//! A host-side stand-in for a guest's virtio driver: it lays out a split virtqueue in guest
//! memory, writes descriptor chains, and programs a transport through its registers exactly
//! as a driver would. Used by the tier-1 tests, `examples/bench_virtio_blk.rs` and the fuzz
//! target; not by the VMM itself.

use virtio_bindings::virtio_config::{
    VIRTIO_CONFIG_S_ACKNOWLEDGE, VIRTIO_CONFIG_S_DRIVER, VIRTIO_CONFIG_S_DRIVER_OK,
    VIRTIO_CONFIG_S_FEATURES_OK,
};
use virtio_bindings::virtio_mmio as reg;
use virtio_bindings::virtio_ring::{VRING_DESC_F_NEXT, VRING_DESC_F_WRITE};
use vm_memory::{Bytes, GuestAddress, GuestMemoryError};

use crate::devices::bus::BusDevice;
use crate::vstate::memory::GuestMemoryMmap;

/// Descriptor flag: device-writable buffer.
pub const WRITE: u16 = VRING_DESC_F_WRITE as u16;
/// Descriptor flag: the chain continues at `next`.
pub const NEXT: u16 = VRING_DESC_F_NEXT as u16;

/// One descriptor as the driver writes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Desc {
    pub addr: u64,
    pub len: u32,
    pub flags: u16,
    pub next: u16,
}

impl Desc {
    /// A device-readable buffer.
    pub fn readable(addr: u64, len: u32) -> Self {
        Desc {
            addr,
            len,
            flags: 0,
            next: 0,
        }
    }

    /// A device-writable buffer.
    pub fn writable(addr: u64, len: u32) -> Self {
        Desc {
            addr,
            len,
            flags: WRITE,
            next: 0,
        }
    }
}

/// A split virtqueue in guest memory: descriptor table, available ring and used ring, each
/// on its own page from `base`.
pub struct DriverQueue {
    pub size: u16,
    pub desc_table: GuestAddress,
    pub avail_ring: GuestAddress,
    pub used_ring: GuestAddress,
    /// Next free descriptor slot (slots are handed out round-robin).
    next_slot: u16,
    avail_idx: u16,
    used_seen: u16,
}

impl DriverQueue {
    /// Guest memory a queue of `size` needs from its base.
    pub fn footprint(size: u16) -> u64 {
        let desc = 16 * u64::from(size);
        desc.next_multiple_of(4096) + 2 * 4096 + (8 * u64::from(size)).next_multiple_of(4096)
    }

    pub fn new(base: GuestAddress, size: u16) -> Self {
        let desc_bytes = (16 * u64::from(size)).next_multiple_of(4096);
        let avail_bytes = (6 + 2 * u64::from(size)).next_multiple_of(4096);
        DriverQueue {
            size,
            desc_table: base,
            avail_ring: GuestAddress(base.0 + desc_bytes),
            used_ring: GuestAddress(base.0 + desc_bytes + avail_bytes),
            next_slot: 0,
            avail_idx: 0,
            used_seen: 0,
        }
    }

    /// Writes descriptor `index` verbatim (flags and next as given).
    pub fn write_desc(
        &self,
        mem: &GuestMemoryMmap,
        index: u16,
        d: Desc,
    ) -> Result<(), GuestMemoryError> {
        let at = self.desc_table.0 + 16 * u64::from(index);
        mem.write_obj(d.addr.to_le(), GuestAddress(at))?;
        mem.write_obj(d.len.to_le(), GuestAddress(at + 8))?;
        mem.write_obj(d.flags.to_le(), GuestAddress(at + 12))?;
        mem.write_obj(d.next.to_le(), GuestAddress(at + 14))
    }

    /// Writes `chain` into consecutive free slots, linking them with NEXT, and makes it
    /// available; returns the head index.
    pub fn add_chain(
        &mut self,
        mem: &GuestMemoryMmap,
        chain: &[Desc],
    ) -> Result<u16, GuestMemoryError> {
        let head = self.next_slot;
        for (i, d) in chain.iter().enumerate() {
            let slot = self.slot(self.next_slot);
            let next = self.slot(self.next_slot.wrapping_add(1));
            let last = i + 1 == chain.len();
            let flags = if last { d.flags } else { d.flags | NEXT };
            self.write_desc(mem, slot, Desc { flags, next, ..*d })?;
            self.next_slot = next;
        }
        self.publish(mem, head)?;
        Ok(head)
    }

    fn slot(&self, i: u16) -> u16 {
        i % self.size
    }

    /// Puts `head` in the available ring and bumps the ring index.
    pub fn publish(&mut self, mem: &GuestMemoryMmap, head: u16) -> Result<(), GuestMemoryError> {
        let entry = self.avail_ring.0 + 4 + 2 * u64::from(self.avail_idx % self.size);
        mem.write_obj(head.to_le(), GuestAddress(entry))?;
        self.avail_idx = self.avail_idx.wrapping_add(1);
        mem.write_obj(self.avail_idx.to_le(), GuestAddress(self.avail_ring.0 + 2))
    }

    /// Used-ring entries (`id`, `len`) the device added since the last call.
    pub fn take_used(
        &mut self,
        mem: &GuestMemoryMmap,
    ) -> Result<Vec<(u32, u32)>, GuestMemoryError> {
        let idx = u16::from_le(mem.read_obj(GuestAddress(self.used_ring.0 + 2))?);
        let mut out = Vec::new();
        while self.used_seen != idx {
            let at = self.used_ring.0 + 4 + 8 * u64::from(self.used_seen % self.size);
            let id = u32::from_le(mem.read_obj(GuestAddress(at))?);
            let len = u32::from_le(mem.read_obj(GuestAddress(at + 4))?);
            out.push((id, len));
            self.used_seen = self.used_seen.wrapping_add(1);
        }
        // used_event (VIRTIO_RING_F_EVENT_IDX): interrupt me for the next completion, as
        // Linux asks after each reap.
        let used_event = self.avail_ring.0 + 4 + 2 * u64::from(self.size);
        mem.write_obj(self.used_seen.to_le(), GuestAddress(used_event))?;
        Ok(out)
    }

    /// Index of the last published chain in the available ring, plus one.
    pub fn avail_idx(&self) -> u16 {
        self.avail_idx
    }
}

/// Register-level access to a virtio-mmio transport, in the order a driver uses them.
pub struct MmioDriver<'a, D: BusDevice + ?Sized> {
    pub dev: &'a mut D,
}

impl<D: BusDevice + ?Sized> MmioDriver<'_, D> {
    pub fn read32(&mut self, offset: u32) -> u32 {
        let mut b = [0u8; 4];
        self.dev.read(u64::from(offset), &mut b);
        u32::from_le_bytes(b)
    }

    pub fn write32(&mut self, offset: u32, v: u32) {
        self.dev.write(u64::from(offset), &v.to_le_bytes());
    }

    pub fn device_features(&mut self) -> u64 {
        self.write32(reg::VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0);
        let lo = self.read32(reg::VIRTIO_MMIO_DEVICE_FEATURES);
        self.write32(reg::VIRTIO_MMIO_DEVICE_FEATURES_SEL, 1);
        let hi = self.read32(reg::VIRTIO_MMIO_DEVICE_FEATURES);
        u64::from(hi) << 32 | u64::from(lo)
    }

    pub fn set_status(&mut self, s: u32) {
        self.write32(reg::VIRTIO_MMIO_STATUS, s);
    }

    pub fn status(&mut self) -> u32 {
        self.read32(reg::VIRTIO_MMIO_STATUS)
    }

    /// ACKNOWLEDGE, DRIVER, the features in `want` that the device offers, FEATURES_OK.
    /// Returns the negotiated features, or None when the device refused FEATURES_OK.
    pub fn negotiate(&mut self, want: u64) -> Option<u64> {
        assert_eq!(self.read32(reg::VIRTIO_MMIO_MAGIC_VALUE), 0x7472_6976);
        assert_eq!(self.read32(reg::VIRTIO_MMIO_VERSION), 2);
        self.set_status(VIRTIO_CONFIG_S_ACKNOWLEDGE);
        self.set_status(VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER);
        let features = self.device_features() & want;
        self.write_driver_features(features);
        let s = VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER | VIRTIO_CONFIG_S_FEATURES_OK;
        self.set_status(s);
        (self.status() & VIRTIO_CONFIG_S_FEATURES_OK != 0).then_some(features)
    }

    pub fn write_driver_features(&mut self, features: u64) {
        self.write32(reg::VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
        self.write32(reg::VIRTIO_MMIO_DRIVER_FEATURES, features as u32);
        self.write32(reg::VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
        self.write32(reg::VIRTIO_MMIO_DRIVER_FEATURES, (features >> 32) as u32);
    }

    /// Programs queue `index` with `q`'s addresses and size and marks it ready.
    pub fn setup_queue(&mut self, index: u32, q: &DriverQueue) {
        self.write32(reg::VIRTIO_MMIO_QUEUE_SEL, index);
        self.write32(reg::VIRTIO_MMIO_QUEUE_NUM, u32::from(q.size));
        for (lo, addr) in [
            (reg::VIRTIO_MMIO_QUEUE_DESC_LOW, q.desc_table),
            (reg::VIRTIO_MMIO_QUEUE_AVAIL_LOW, q.avail_ring),
            (reg::VIRTIO_MMIO_QUEUE_USED_LOW, q.used_ring),
        ] {
            self.write32(lo, addr.0 as u32);
            self.write32(lo + 4, (addr.0 >> 32) as u32);
        }
        self.write32(reg::VIRTIO_MMIO_QUEUE_READY, 1);
    }

    /// Sets DRIVER_OK; returns whether the device accepted it.
    pub fn driver_ok(&mut self) -> bool {
        let s = self.status();
        self.set_status(s | VIRTIO_CONFIG_S_DRIVER_OK);
        self.status() & VIRTIO_CONFIG_S_DRIVER_OK != 0
    }

    /// The whole bring-up of a one-queue device; returns the negotiated features.
    pub fn bring_up(&mut self, want: u64, q: &DriverQueue) -> Option<u64> {
        let features = self.negotiate(want)?;
        self.setup_queue(0, q);
        self.driver_ok().then_some(features)
    }

    pub fn notify(&mut self, queue: u32) {
        self.write32(reg::VIRTIO_MMIO_QUEUE_NOTIFY, queue);
    }

    /// Reads and acknowledges the interrupt status.
    pub fn ack_interrupt(&mut self) -> u32 {
        let s = self.read32(reg::VIRTIO_MMIO_INTERRUPT_STATUS);
        self.write32(reg::VIRTIO_MMIO_INTERRUPT_ACK, s);
        s
    }

    pub fn read_config(&mut self, offset: u32, data: &mut [u8]) {
        self.dev
            .read(u64::from(reg::VIRTIO_MMIO_CONFIG + offset), data);
    }
}
