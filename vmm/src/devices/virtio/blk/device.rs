//! The virtio-blk device: what it offers the driver and how it answers requests.

use virtio_bindings::virtio_blk::{
    VIRTIO_BLK_F_DISCARD, VIRTIO_BLK_F_FLUSH, VIRTIO_BLK_F_RO, VIRTIO_BLK_F_SEG_MAX,
    VIRTIO_BLK_S_IOERR, VIRTIO_BLK_S_OK, VIRTIO_BLK_S_UNSUPP,
};
use virtio_bindings::virtio_ids::VIRTIO_ID_BLOCK;
use virtio_bindings::virtio_ring::{VIRTIO_RING_F_EVENT_IDX, VIRTIO_RING_F_INDIRECT_DESC};
use virtio_queue::QueueT;
use vm_memory::{Bytes, GuestAddress, GuestMemory, Permissions, VolatileSlice};
use vmm_sys_util::eventfd::EventFd;

use super::io::{DiskBackend, DiskError};
use super::persist::BlockState;
use super::request::{self, Request, RequestKind};
use super::{
    DISCARD_ALIGNMENT_SECTORS, ID_BYTES, MAX_DISCARD_SECTORS, MAX_DISCARD_SEG, QUEUE_SIZE,
    SECTOR_SIZE, SEG_MAX,
};
use crate::devices::virtio::persist::QueueSnapshot;
use crate::devices::virtio::{
    read_config_bytes, ActivateContext, ActivateError, ActiveQueue, VirtioDevice,
    VIRTIO_F_VERSION_1,
};
use crate::vstate::memory::GuestMemoryMmap;

/// Size of the configuration space we fill: `struct virtio_blk_config` up to and including
/// `discard_sector_alignment`.
const CONFIG_LEN: usize = 48;

/// How a disk is presented to the guest.
#[derive(Clone, Debug, Default)]
pub struct BlockOptions {
    /// Name in `vm.info` and logs (Cloud Hypervisor's `id`).
    pub id: String,
    pub read_only: bool,
    /// What GET_ID returns (Linux: `/sys/block/vdX/serial`); cut to 20 bytes.
    pub serial: Option<String>,
}

/// Requests answered since the device was created, for `vm.info`-style reporting and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BlockCounters {
    pub requests: u64,
    pub read_bytes: u64,
    pub write_bytes: u64,
    /// Requests answered with IOERR or UNSUPP.
    pub errors: u64,
    /// Chains returned unused because no status byte could be written.
    pub dropped: u64,
}

pub struct Block {
    options: BlockOptions,
    disk: Box<dyn DiskBackend>,
    avail_features: u64,
    config: [u8; CONFIG_LEN],
    queue_evts: [EventFd; 1],
    active: Option<ActiveQueue>,
    counters: BlockCounters,
}

impl Block {
    pub fn new(options: BlockOptions, disk: Box<dyn DiskBackend>) -> std::io::Result<Self> {
        let mut avail_features = VIRTIO_F_VERSION_1
            | 1 << VIRTIO_RING_F_EVENT_IDX
            | 1 << VIRTIO_RING_F_INDIRECT_DESC
            | 1 << VIRTIO_BLK_F_SEG_MAX
            | 1 << VIRTIO_BLK_F_FLUSH;
        if options.read_only {
            avail_features |= 1 << VIRTIO_BLK_F_RO;
        } else if disk.can_discard() {
            avail_features |= 1 << VIRTIO_BLK_F_DISCARD;
        }
        let mut config = [0u8; CONFIG_LEN];
        config[0..8].copy_from_slice(&disk.capacity_sectors().to_le_bytes());
        config[12..16].copy_from_slice(&SEG_MAX.to_le_bytes());
        config[36..40].copy_from_slice(&MAX_DISCARD_SECTORS.to_le_bytes());
        config[40..44].copy_from_slice(&MAX_DISCARD_SEG.to_le_bytes());
        config[44..48].copy_from_slice(&DISCARD_ALIGNMENT_SECTORS.to_le_bytes());
        Ok(Block {
            options,
            disk,
            avail_features,
            config,
            queue_evts: [EventFd::new(libc::EFD_NONBLOCK)?],
            active: None,
            counters: BlockCounters::default(),
        })
    }

    pub fn id(&self) -> &str {
        &self.options.id
    }

    pub fn options(&self) -> &BlockOptions {
        &self.options
    }

    pub fn capacity_sectors(&self) -> u64 {
        self.disk.capacity_sectors()
    }

    pub fn counters(&self) -> BlockCounters {
        self.counters
    }

    pub fn is_active(&self) -> bool {
        self.active.is_some()
    }

    pub fn state(&self) -> BlockState {
        BlockState {
            id: self.options.id.clone(),
            avail_features: self.avail_features,
            acked_features: self.active.as_ref().map_or(0, |a| a.acked_features),
            queue: self.active.as_ref().map(|a| QueueSnapshot::from(&a.queue)),
        }
    }

    /// Answers every available request on the queue, then interrupts the driver if it wants
    /// to hear about it. Called on the event loop when the queue is notified.
    pub fn process_queue(&mut self) {
        let Some(active) = self.active.as_mut() else {
            return;
        };
        let event_idx = active.queue.event_idx_enabled();
        let mut used_any = false;
        let mut retrying = false;
        loop {
            if event_idx {
                // Tell the driver not to notify while we are draining anyway.
                let _ = active.queue.disable_notification(&active.mem);
            }
            let mut took = false;
            while let Some(chain) = active.queue.pop_descriptor_chain(&active.mem) {
                took = true;
                let head = chain.head_index();
                let len = answer(
                    self.disk.as_mut(),
                    &self.options,
                    &mut self.counters,
                    active.acked_features,
                    &active.mem,
                    chain,
                );
                // Fails for a head index outside the table (nothing to give back) or a used
                // ring that stopped being memory; either way the next chain may be fine.
                match active.queue.add_used(&active.mem, head, len) {
                    Ok(()) => used_any = true,
                    Err(e) => tracing::debug!(
                        "virtio-blk {}: chain {head} not returned: {e}",
                        self.options.id
                    ),
                }
            }
            // The queue said there was more, yet yields nothing: the driver's available
            // index is more than a queue's worth ahead, which the queue refuses. Draining
            // again would spin the event loop forever.
            if retrying && !took {
                tracing::debug!(
                    "virtio-blk {}: available index out of range; waiting for the next notification",
                    self.options.id
                );
                break;
            }
            // With EVENT_IDX, re-enabling notifications can race with a driver adding more
            // requests; enable_notification says so, and we drain again.
            if !event_idx || !matches!(active.queue.enable_notification(&active.mem), Ok(true)) {
                break;
            }
            retrying = true;
        }
        if used_any && active.queue.needs_notification(&active.mem).unwrap_or(true) {
            active.interrupt.signal_used_queue(0);
        }
    }
}

/// Handles one chain; returns the used length (bytes the device wrote into the chain).
fn answer(
    disk: &mut dyn DiskBackend,
    options: &BlockOptions,
    counters: &mut BlockCounters,
    features: u64,
    mem: &GuestMemoryMmap,
    chain: virtio_queue::DescriptorChain<&GuestMemoryMmap>,
) -> u32 {
    counters.requests += 1;
    let chain = match request::collect_chain(chain, mem) {
        Ok(c) => c,
        Err(reason) => {
            tracing::debug!("virtio-blk {}: chain dropped: {reason}", options.id);
            counters.dropped += 1;
            return 0;
        }
    };
    let discard = features & (1 << VIRTIO_BLK_F_DISCARD) != 0;
    let (status, written) = match request::parse(&chain, mem, disk.capacity_sectors(), discard) {
        Ok(req) => execute(disk, options, counters, mem, &req),
        Err(e) => {
            tracing::debug!("virtio-blk {}: request refused: {e}", options.id);
            (e.status(), 0)
        }
    };
    if status != VIRTIO_BLK_S_OK as u8 {
        counters.errors += 1;
    }
    // collect_chain checked that the status byte is writable guest memory.
    if mem.write_obj(status, chain.status).is_err() {
        counters.dropped += 1;
        return 0;
    }
    written.saturating_add(1)
}

/// Runs a checked request; returns its status and the data bytes written into the chain.
fn execute(
    disk: &mut dyn DiskBackend,
    options: &BlockOptions,
    counters: &mut BlockCounters,
    mem: &GuestMemoryMmap,
    req: &Request,
) -> (u8, u32) {
    let offset = req.sector.saturating_mul(SECTOR_SIZE);
    let result = match &req.kind {
        RequestKind::In => {
            let r = with_slices(mem, &req.data, Permissions::Write, |bufs| {
                disk.read_vectored(offset, bufs)
            });
            // data_len <= 2^32 - 1: virtio_queue ends chains whose lengths overflow a u32.
            r.map(|()| {
                counters.read_bytes += req.data_len;
                u32::try_from(req.data_len).unwrap_or(u32::MAX)
            })
        }
        RequestKind::Out if options.read_only => {
            // 5.2.6.2: a write to a read-only device gets IOERR and writes nothing.
            return (VIRTIO_BLK_S_IOERR as u8, 0);
        }
        RequestKind::Out => with_slices(mem, &req.data, Permissions::Read, |bufs| {
            disk.write_vectored(offset, bufs)
        })
        .map(|()| {
            counters.write_bytes += req.data_len;
            0
        }),
        RequestKind::Flush => disk.flush().map(|()| 0),
        RequestKind::GetId => return get_id(mem, options, &req.data),
        RequestKind::Discard(ranges) => ranges
            .iter()
            .try_for_each(|&(sector, count)| {
                disk.discard(sector * SECTOR_SIZE, u64::from(count) * SECTOR_SIZE)
            })
            .map(|()| 0),
    };
    match result {
        Ok(written) => (VIRTIO_BLK_S_OK as u8, written),
        Err(DiskError::DiscardUnsupported) => (VIRTIO_BLK_S_UNSUPP as u8, 0),
        Err(e) => {
            tracing::warn!("virtio-blk {}: {e}", options.id);
            (VIRTIO_BLK_S_IOERR as u8, 0)
        }
    }
}

/// Runs `f` on the guest-memory slices behind `data` (already range-checked by parsing).
fn with_slices(
    mem: &GuestMemoryMmap,
    data: &[(GuestAddress, u32)],
    access: Permissions,
    f: impl FnOnce(&[VolatileSlice<'_>]) -> Result<(), DiskError>,
) -> Result<(), DiskError> {
    let mut slices = Vec::with_capacity(data.len());
    for &(addr, len) in data {
        let iter = mem
            .get_slices(addr, len as usize, access)
            .map_err(memory_error)?;
        for s in iter {
            slices.push(s.map_err(memory_error)?);
        }
    }
    f(&slices)
}

fn memory_error(e: vm_memory::GuestMemoryError) -> DiskError {
    DiskError::Io {
        what: "guest buffer",
        offset: 0,
        source: std::io::Error::other(e.to_string()),
    }
}

/// GET_ID: the serial, zero-padded to 20 bytes, into the (writable) data buffers.
fn get_id(
    mem: &GuestMemoryMmap,
    options: &BlockOptions,
    data: &[(GuestAddress, u32)],
) -> (u8, u32) {
    let mut id = [0u8; ID_BYTES];
    let serial = options.serial.as_deref().unwrap_or(&options.id).as_bytes();
    let n = serial.len().min(ID_BYTES);
    id[..n].copy_from_slice(&serial[..n]);
    let room: u64 = data.iter().map(|&(_, l)| u64::from(l)).sum();
    if room < ID_BYTES as u64 {
        return (VIRTIO_BLK_S_IOERR as u8, 0);
    }
    let mut at = 0usize;
    for &(addr, len) in data {
        if at == ID_BYTES {
            break;
        }
        let n = (len as usize).min(ID_BYTES - at);
        if mem.write_slice(&id[at..at + n], addr).is_err() {
            return (VIRTIO_BLK_S_IOERR as u8, 0);
        }
        at += n;
    }
    (VIRTIO_BLK_S_OK as u8, ID_BYTES as u32)
}

impl VirtioDevice for Block {
    fn device_type(&self) -> u32 {
        VIRTIO_ID_BLOCK
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &[QUEUE_SIZE]
    }

    fn avail_features(&self) -> u64 {
        self.avail_features
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        read_config_bytes(&self.config, offset, data);
    }

    fn write_config(&mut self, offset: u64, _data: &[u8]) {
        // `writeback` is the only writable field and needs VIRTIO_BLK_F_CONFIG_WCE, which
        // is not offered: every write is write-through as far as the guest knows.
        tracing::debug!(
            "virtio-blk {}: config write at {offset} ignored",
            self.options.id
        );
    }

    fn queue_events(&self) -> &[EventFd] {
        &self.queue_evts
    }

    fn activate(&mut self, ctx: ActivateContext) -> Result<(), ActivateError> {
        self.active = Some(ActiveQueue::from_context(ctx)?);
        // A driver may have notified before DRIVER_OK; don't leave those requests waiting.
        self.process_queue();
        Ok(())
    }

    fn reset(&mut self) {
        self.active = None;
    }
}
