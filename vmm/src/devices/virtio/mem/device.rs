//! The virtio-mem device: its configuration space, the requests it answers and the host's
//! side of a resize (`requested_size`).

use std::ops::Range;

use virtio_queue::QueueT;
use vmm_sys_util::eventfd::EventFd;

use super::blocks::{PlugBitmap, RangeState};
use super::persist::VirtioMemState;
use super::request::{self, BlockRange, Request};
use super::{
    BLOCK_SIZE, QUEUE_SIZE, RESP_ACK, RESP_BUSY, RESP_ERROR, RESP_NACK, STATE_MIXED, STATE_PLUGGED,
    STATE_UNPLUGGED, VIRTIO_ID_MEM,
};
use crate::devices::virtio::persist::QueueSnapshot;
use crate::devices::virtio::{
    read_config_bytes, ActivateContext, ActivateError, ActiveQueue, VirtioDevice,
    VIRTIO_F_VERSION_1,
};
use crate::vstate::hotplug_memory::HotplugRegion;
use crate::vstate::memory::GuestMemoryMmap;

/// `struct virtio_mem_config`: block_size, node_id (+6 bytes padding), addr, region_size,
/// usable_region_size, plugged_size, requested_size.
const CONFIG_LEN: usize = 56;

#[derive(Debug, thiserror::Error)]
pub enum MemDeviceError {
    #[error("hot-pluggable region {base:#x}+{size:#x} is not a whole number of {BLOCK_SIZE:#x}-byte blocks")]
    Region { base: u64, size: u64 },
    #[error("requested size {size:#x} is not a multiple of {BLOCK_SIZE:#x} or above the region's {region:#x} bytes")]
    RequestedSize { size: u64, region: u64 },
    #[error("saved virtio-mem state does not match this VM: {0}")]
    State(String),
    #[error("cannot create the queue eventfd: {0}")]
    EventFd(#[source] std::io::Error),
}

/// Requests answered since the device was created.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemCounters {
    pub acks: u64,
    pub nacks: u64,
    pub errors: u64,
    pub busy: u64,
    /// Chains returned unanswered (malformed).
    pub dropped: u64,
}

pub struct VirtioMem {
    region: HotplugRegion,
    blocks: PlugBitmap,
    requested_size: u64,
    /// Bumped on every configuration change, so a driver reading the 64-bit fields in two
    /// halves notices a change in between (the transport adds it to ConfigGeneration).
    config_generation: u32,
    queue_evts: [EventFd; 1],
    active: Option<ActiveQueue>,
    counters: MemCounters,
}

impl VirtioMem {
    /// A device over `region` that asks the guest for `requested_size` bytes.
    pub fn new(region: HotplugRegion, requested_size: u64) -> Result<Self, MemDeviceError> {
        let (base, size) = (region.start().0, region.len());
        if size == 0 || size % BLOCK_SIZE != 0 || base % BLOCK_SIZE != 0 {
            return Err(MemDeviceError::Region { base, size });
        }
        let mut device = VirtioMem {
            blocks: PlugBitmap::new(size / BLOCK_SIZE),
            region,
            requested_size: 0,
            config_generation: 0,
            queue_evts: [EventFd::new(libc::EFD_NONBLOCK).map_err(MemDeviceError::EventFd)?],
            active: None,
            counters: MemCounters::default(),
        };
        device.set_requested_size(requested_size)?;
        Ok(device)
    }

    /// Rebuilds the device's host-side state from a snapshot: the region must be where
    /// the guest last saw it. The queue is not part of it: the transport's restore
    /// (`MmioTransport::restore`) starts the device again with it.
    pub fn from_state(
        region: HotplugRegion,
        state: &VirtioMemState,
    ) -> Result<Self, MemDeviceError> {
        let mismatch = |what: &str| MemDeviceError::State(what.to_string());
        if state.block_size != BLOCK_SIZE {
            return Err(mismatch("block size"));
        }
        if state.addr != region.start().0 || state.region_size != region.len() {
            return Err(mismatch("region placement"));
        }
        let mut device = VirtioMem::new(region, state.requested_size)?;
        device.blocks = PlugBitmap::from_words(device.blocks.blocks(), state.plugged.clone())
            .map_err(|e| MemDeviceError::State(e.to_string()))?;
        device.config_generation = state.config_generation;
        Ok(device)
    }

    pub fn state(&self) -> VirtioMemState {
        VirtioMemState {
            avail_features: self.avail_features(),
            acked_features: self.active.as_ref().map_or(0, |a| a.acked_features),
            queue: self.active.as_ref().map(|a| QueueSnapshot::from(&a.queue)),
            block_size: BLOCK_SIZE,
            addr: self.region.start().0,
            region_size: self.region.len(),
            requested_size: self.requested_size,
            plugged: self.blocks.words().to_vec(),
            config_generation: self.config_generation,
        }
    }

    pub fn region_size(&self) -> u64 {
        self.region.len()
    }

    pub fn requested_size(&self) -> u64 {
        self.requested_size
    }

    pub fn plugged_size(&self) -> u64 {
        self.blocks.plugged() * BLOCK_SIZE
    }

    pub fn counters(&self) -> MemCounters {
        self.counters
    }

    pub fn is_active(&self) -> bool {
        self.active.is_some()
    }

    /// The host's side of a resize: how much the guest should have plugged. A change is
    /// announced with a configuration change interrupt once a driver runs the device (a
    /// driver that starts later reads it at probe). Returns whether it changed.
    pub fn set_requested_size(&mut self, size: u64) -> Result<bool, MemDeviceError> {
        if size % BLOCK_SIZE != 0 || size > self.region.len() {
            return Err(MemDeviceError::RequestedSize {
                size,
                region: self.region.len(),
            });
        }
        if size == self.requested_size {
            return Ok(false);
        }
        self.requested_size = size;
        self.config_changed();
        Ok(true)
    }

    fn config_changed(&mut self) {
        self.config_generation = self.config_generation.wrapping_add(1);
        if let Some(active) = &self.active {
            active.interrupt.signal_config_change();
        }
    }

    fn config(&self) -> [u8; CONFIG_LEN] {
        let mut c = [0u8; CONFIG_LEN];
        let fields = [
            (0, BLOCK_SIZE),
            (16, self.region.start().0),
            (24, self.region.len()),
            // The whole region is usable: Linux only adds memory blocks as it plugs.
            (32, self.region.len()),
            (40, self.plugged_size()),
            (48, self.requested_size),
        ];
        for (at, v) in fields {
            c[at..at + 8].copy_from_slice(&v.to_le_bytes());
        }
        c
    }

    /// Answers every available request, then interrupts the driver if it wants that.
    pub fn process_queue(&mut self) {
        let Some(mut active) = self.active.take() else {
            return;
        };
        let mut used_any = false;
        while let Some(chain) = active.queue.pop_descriptor_chain(&active.mem) {
            let head = chain.head_index();
            let len = self.answer(&active.mem, chain);
            // Fails for a used ring that stopped being memory; the next chain may be fine.
            match active.queue.add_used(&active.mem, head, len) {
                Ok(()) => used_any = true,
                Err(e) => tracing::debug!("virtio-mem: chain {head} not returned: {e}"),
            }
        }
        if used_any && active.queue.needs_notification(&active.mem).unwrap_or(true) {
            active.interrupt.signal_used_queue(0);
        }
        self.active = Some(active);
    }

    /// Handles one chain; returns the used length.
    fn answer(
        &mut self,
        mem: &GuestMemoryMmap,
        chain: virtio_queue::DescriptorChain<&GuestMemoryMmap>,
    ) -> u32 {
        let parsed = match request::parse(chain, mem) {
            Ok(p) => p,
            Err(reason) => {
                tracing::debug!("virtio-mem: chain dropped: {reason}");
                self.counters.dropped += 1;
                return 0;
            }
        };
        let (kind, state) = self.execute(parsed.request);
        match kind {
            RESP_ACK => self.counters.acks += 1,
            RESP_NACK => self.counters.nacks += 1,
            RESP_BUSY => self.counters.busy += 1,
            _ => self.counters.errors += 1,
        }
        let resp = request::encode_response(kind, state);
        request::write_response(mem, &parsed.response, &resp).unwrap_or_else(|reason| {
            self.counters.dropped += 1;
            tracing::debug!("virtio-mem: response lost: {reason}");
            0
        })
    }

    /// Runs a request; returns the response type and, for STATE, the state.
    fn execute(&mut self, request: Request) -> (u16, u16) {
        let result = match request {
            Request::Plug(r) => self.plug(r),
            Request::Unplug(r) => self.unplug(r),
            Request::UnplugAll => self.unplug_all(),
            Request::State(r) => self
                .blocks_of(r)
                .map(|blocks| match self.blocks.state(blocks) {
                    RangeState::Plugged => STATE_PLUGGED,
                    RangeState::Unplugged => STATE_UNPLUGGED,
                    RangeState::Mixed => STATE_MIXED,
                }),
            Request::Unknown(t) => {
                tracing::debug!("virtio-mem: unknown request type {t}");
                Err(RESP_ERROR)
            }
        };
        match result {
            Ok(state) => (RESP_ACK, state),
            Err(kind) => (kind, 0),
        }
    }

    /// The blocks `r` covers, or ERROR (5.15.6.2-5.15.6.4): `addr` must be block aligned,
    /// `nb_blocks` non-zero, and every block inside the usable region.
    fn blocks_of(&self, r: BlockRange) -> Result<Range<u64>, u16> {
        let base = self.region.start().0;
        let offset = r.addr.checked_sub(base).ok_or(RESP_ERROR)?;
        if offset % BLOCK_SIZE != 0 || r.nb_blocks == 0 {
            return Err(RESP_ERROR);
        }
        let first = offset / BLOCK_SIZE;
        let end = first + u64::from(r.nb_blocks);
        if end > self.blocks.blocks() {
            return Err(RESP_ERROR);
        }
        Ok(first..end)
    }

    fn plug(&mut self, r: BlockRange) -> Result<u16, u16> {
        let blocks = self.blocks_of(r)?;
        let after = (self.blocks.plugged() + (blocks.end - blocks.start)) * BLOCK_SIZE;
        // Valid, but more than the host asked for: NACK, the driver may retry later.
        if after > self.requested_size {
            return Err(RESP_NACK);
        }
        if self.blocks.state(blocks.clone()) != RangeState::Unplugged {
            return Err(RESP_ERROR);
        }
        self.blocks.set(blocks, true);
        self.config_generation = self.config_generation.wrapping_add(1);
        Ok(0)
    }

    fn unplug(&mut self, r: BlockRange) -> Result<u16, u16> {
        let blocks = self.blocks_of(r)?;
        if self.blocks.state(blocks.clone()) != RangeState::Plugged {
            return Err(RESP_ERROR);
        }
        self.release(&blocks)?;
        self.blocks.set(blocks, false);
        self.config_generation = self.config_generation.wrapping_add(1);
        Ok(0)
    }

    fn unplug_all(&mut self) -> Result<u16, u16> {
        for run in self.blocks.plugged_runs() {
            self.release(&run)?;
        }
        self.blocks.clear();
        self.config_generation = self.config_generation.wrapping_add(1);
        Ok(0)
    }

    /// Gives the blocks' pages back to the host; BUSY if the host refuses.
    fn release(&self, blocks: &Range<u64>) -> Result<(), u16> {
        let (offset, len) = (
            blocks.start * BLOCK_SIZE,
            (blocks.end - blocks.start) * BLOCK_SIZE,
        );
        self.region.discard(offset, len).map_err(|e| {
            tracing::warn!("virtio-mem: {e}");
            RESP_BUSY
        })
    }
}

impl VirtioDevice for VirtioMem {
    fn device_type(&self) -> u32 {
        VIRTIO_ID_MEM
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &[QUEUE_SIZE]
    }

    fn avail_features(&self) -> u64 {
        // No ACPI_PXM (one NUMA node) and no UNPLUGGED_INACCESSIBLE: unplugged memory
        // stays mapped and reads as zero, so a legacy driver that reads it is fine.
        VIRTIO_F_VERSION_1
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        read_config_bytes(&self.config(), offset, data);
    }

    fn write_config(&mut self, offset: u64, _data: &[u8]) {
        // Every field is read-only for the driver (5.15.4).
        tracing::debug!("virtio-mem: config write at {offset} ignored");
    }

    fn config_generation(&self) -> u32 {
        self.config_generation
    }

    fn queue_events(&self) -> &[EventFd] {
        &self.queue_evts
    }

    fn activate(&mut self, ctx: ActivateContext) -> Result<(), ActivateError> {
        self.active = Some(ActiveQueue::from_context(ctx)?);
        self.process_queue();
        Ok(())
    }

    fn reset(&mut self) {
        // Plugged blocks stay plugged: a driver that finds plugged_size != 0 at probe
        // unplugs everything itself (UNPLUG_ALL), as Linux does after kexec.
        self.active = None;
    }
}
