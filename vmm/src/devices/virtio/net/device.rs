//! The virtio-net device: what it offers the driver, its configuration space, and moving
//! frames between its queues and the tap.
//!
//! rx: while the tap has frames and the driver has posted buffers, each frame is read
//! straight into one chain; with no buffer left the device asks the driver for a
//! notification and stops reading, so frames wait in the tap. tx: each chain is written to
//! the tap as one frame and returned with length 0. A malformed chain (see [`chain`]) is
//! returned with length 0 and counted; it never stops the queue.

use std::io;
use std::sync::Arc;

use virtio_bindings::virtio_net::{
    VIRTIO_NET_F_CSUM, VIRTIO_NET_F_GUEST_CSUM, VIRTIO_NET_F_GUEST_ECN, VIRTIO_NET_F_GUEST_TSO4,
    VIRTIO_NET_F_GUEST_TSO6, VIRTIO_NET_F_HOST_ECN, VIRTIO_NET_F_HOST_TSO4, VIRTIO_NET_F_HOST_TSO6,
    VIRTIO_NET_F_MAC, VIRTIO_NET_F_STATUS, VIRTIO_NET_S_LINK_UP,
};
use virtio_queue::desc::split::Descriptor;
use virtio_queue::{DescriptorChain, Queue, QueueOwnedT, QueueT};
use vm_memory::{GuestMemory, Permissions, VolatileSlice};
use vmm_sys_util::eventfd::EventFd;

use super::mac::{MacAddr, MacError};
use super::persist::NetState;
use super::tap::Tap;
use super::{
    ETH_HLEN, MAX_FRAME_CHAIN_LEN, NUM_QUEUES, QUEUE_SIZE, RX_QUEUE, TX_QUEUE, VIRTIO_ID_NET,
    VNET_HDR_LEN,
};
use crate::devices::virtio::chain::{self, ChainError};
use crate::devices::virtio::persist::QueueSnapshot;
use crate::devices::virtio::{
    read_config_bytes, ActivateContext, ActivateError, Interrupt, VirtioDevice, VIRTIO_F_VERSION_1,
};
use crate::vstate::memory::GuestMemoryMmap;

/// `struct virtio_net_config` up to and including `status`: mac[6], le16 status.
const CONFIG_LEN: usize = 8;
/// Where `num_buffers` sits in the vnet header (the kernel leaves those two bytes alone).
const NUM_BUFFERS_OFFSET: usize = 10;

/// Features every virtio-net device offers. Ring features as virtio-blk offers them;
/// the MAC and a link status (always up); and the checksum and TCP segmentation offloads,
/// which pass through the tap's vnet header both ways (guest to host: the kernel finishes
/// the checksum or segments; host to guest: as far as [`super::tap::offload_flags`] lets
/// the kernel). No mergeable rx buffers, control queue or multiqueue; no UFO, which Linux
/// no longer produces.
pub const OFFERED_FEATURES: u64 = VIRTIO_F_VERSION_1
    | 1 << virtio_bindings::virtio_ring::VIRTIO_RING_F_EVENT_IDX
    | 1 << virtio_bindings::virtio_ring::VIRTIO_RING_F_INDIRECT_DESC
    | 1 << VIRTIO_NET_F_MAC
    | 1 << VIRTIO_NET_F_STATUS
    | 1 << VIRTIO_NET_F_CSUM
    | 1 << VIRTIO_NET_F_GUEST_CSUM
    | 1 << VIRTIO_NET_F_GUEST_TSO4
    | 1 << VIRTIO_NET_F_GUEST_TSO6
    | 1 << VIRTIO_NET_F_GUEST_ECN
    | 1 << VIRTIO_NET_F_HOST_TSO4
    | 1 << VIRTIO_NET_F_HOST_TSO6
    | 1 << VIRTIO_NET_F_HOST_ECN;

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("virtio-net {id}: {source}")]
    Mac {
        id: String,
        #[source]
        source: MacError,
    },
    #[error("cannot create a queue eventfd: {0}")]
    EventFd(#[source] io::Error),
    #[error("saved virtio-net state does not match this device: {0}")]
    State(String),
}

/// How the device is presented to the guest.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NetOptions {
    /// Name in `vm.info` and logs (Cloud Hypervisor's `id`).
    pub id: String,
    /// The guest's MAC address; a random locally administered one when None.
    pub mac: Option<MacAddr>,
}

/// Frames moved since the device was created. Byte counts are Ethernet frame bytes (the
/// vnet header not included).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct NetCounters {
    pub rx_packets: u64,
    pub rx_bytes: u64,
    /// Frames read from the tap that the guest did not get: larger than the chain they
    /// were read into. (Frames are never dropped for want of a buffer: they wait in the
    /// tap.)
    pub rx_dropped: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    /// tx chains whose frame did not reach the tap: malformed, too long, or refused by the
    /// tap (`EIO` while its interface is down).
    pub tx_dropped: u64,
    /// Chains returned unused because they failed the chain checks or have the wrong
    /// shape (rx and tx; malformed tx chains also count in `tx_dropped`).
    pub malformed_chains: u64,
}

struct Active {
    mem: GuestMemoryMmap,
    queues: Vec<Queue>,
    interrupt: Arc<Interrupt>,
    acked_features: u64,
}

pub struct Net {
    id: String,
    mac: MacAddr,
    tap: Tap,
    avail_features: u64,
    config: [u8; CONFIG_LEN],
    queue_evts: [EventFd; NUM_QUEUES],
    active: Option<Active>,
    counters: NetCounters,
    /// The tap refused the last frame because its interface is down (logged once).
    tap_down: bool,
}

impl Net {
    /// A device in front of `tap`, with `options.mac` or a random local address.
    pub fn new(options: NetOptions, tap: Tap) -> Result<Self, NetError> {
        let mac = match options.mac {
            Some(mac) => {
                mac.check_unicast().map_err(|source| NetError::Mac {
                    id: options.id.clone(),
                    source,
                })?;
                mac
            }
            None => MacAddr::random_local(),
        };
        let mut config = [0u8; CONFIG_LEN];
        config[..6].copy_from_slice(&mac.bytes());
        config[6..8].copy_from_slice(&(VIRTIO_NET_S_LINK_UP as u16).to_le_bytes());
        let evt = || EventFd::new(libc::EFD_NONBLOCK).map_err(NetError::EventFd);
        Ok(Net {
            id: options.id,
            mac,
            tap,
            avail_features: OFFERED_FEATURES,
            config,
            queue_evts: [evt()?, evt()?],
            active: None,
            counters: NetCounters::default(),
            tap_down: false,
        })
    }

    /// Rebuilds the device from a snapshot's state in front of a new `tap`, with the saved
    /// MAC address, or `mac` instead (a clone's own). The transport's restore then starts it
    /// again with its queues, ring positions kept, and sets the tap's offloads again.
    ///
    /// A guest driver reads the MAC once, when it probes the device: a restored guest keeps
    /// using the saved address whatever `mac` says until it probes again, so a clone's new
    /// address must also be set inside the guest (kata's agent sets each interface's
    /// address from its network configuration). The device itself never filters on it.
    pub fn from_state(state: &NetState, tap: Tap, mac: Option<MacAddr>) -> Result<Self, NetError> {
        let options = NetOptions {
            id: state.id.clone(),
            mac: Some(mac.unwrap_or(state.mac)),
        };
        let net = Net::new(options, tap)?;
        if state.avail_features != net.avail_features {
            return Err(NetError::State(format!(
                "the saved device offered features {:#x}, this one offers {:#x}",
                state.avail_features, net.avail_features
            )));
        }
        if !state.queues.is_empty() && state.queues.len() != NUM_QUEUES {
            return Err(NetError::State(format!(
                "{} running queues saved, the device has {NUM_QUEUES}",
                state.queues.len()
            )));
        }
        Ok(net)
    }

    pub fn state(&self) -> NetState {
        NetState {
            id: self.id.clone(),
            mac: self.mac,
            avail_features: self.avail_features,
            acked_features: self.active.as_ref().map_or(0, |a| a.acked_features),
            queues: self.active.as_ref().map_or_else(Vec::new, |a| {
                a.queues.iter().map(QueueSnapshot::from).collect()
            }),
        }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn mac(&self) -> MacAddr {
        self.mac
    }

    pub fn tap(&self) -> &Tap {
        &self.tap
    }

    pub fn counters(&self) -> NetCounters {
        self.counters
    }

    pub fn is_active(&self) -> bool {
        self.active.is_some()
    }

    /// Sends every frame the driver queued, then interrupts it if it wants that.
    pub fn process_tx(&mut self) {
        let Some(Active {
            mem,
            queues,
            interrupt,
            ..
        }) = self.active.as_mut()
        else {
            return;
        };
        let queue = &mut queues[TX_QUEUE];
        let mut used_any = false;
        let mut retrying = false;
        loop {
            // No notifications while draining anyway (a no-op with EVENT_IDX, where
            // enable_notification moves avail_event instead).
            let _ = queue.disable_notification(&*mem);
            let mut took = false;
            while let Some(chain) = queue.pop_descriptor_chain(&*mem) {
                took = true;
                let head = chain.head_index();
                transmit(
                    &self.tap,
                    &self.id,
                    mem,
                    chain,
                    &mut self.counters,
                    &mut self.tap_down,
                );
                // Fails only for a used ring that stopped being memory; nothing to do then.
                match queue.add_used(&*mem, head, 0) {
                    Ok(()) => used_any = true,
                    Err(e) => {
                        tracing::debug!("virtio-net {}: tx chain {head} not returned: {e}", self.id)
                    }
                }
            }
            // The queue said there was more, yet yields nothing: an available index the
            // queue refuses (more than its size ahead). Don't spin on it.
            if retrying && !took {
                break;
            }
            // A driver may have queued more between the last pop and re-enabling.
            if !matches!(queue.enable_notification(&*mem), Ok(true)) {
                break;
            }
            retrying = true;
        }
        if used_any && queue.needs_notification(&*mem).unwrap_or(true) {
            interrupt.signal_used_queue(TX_QUEUE);
        }
    }

    /// Delivers frames from the tap while the driver has rx buffers; then interrupts it if
    /// it wants that. Run when the tap becomes readable and when the driver posts buffers.
    pub fn process_rx(&mut self) {
        let Some(Active {
            mem,
            queues,
            interrupt,
            acked_features,
        }) = self.active.as_mut()
        else {
            return;
        };
        let guest_csum = *acked_features & (1 << VIRTIO_NET_F_GUEST_CSUM) != 0;
        let queue = &mut queues[RX_QUEUE];
        let mut used_any = false;
        // Kicks are only wanted once the buffers run out (next_rx_chain asks for them).
        let _ = queue.disable_notification(&*mem);
        while let Some(chain) = next_rx_chain(queue, mem) {
            let head = chain.head_index();
            let len = match rx_buffers(chain, mem) {
                Ok(buffers) => {
                    match receive(
                        &self.tap,
                        &self.id,
                        mem,
                        &buffers,
                        guest_csum,
                        &mut self.counters,
                    ) {
                        Some(len) => len,
                        None => {
                            // The tap is empty: the driver keeps this buffer for later.
                            queue.go_to_previous_position();
                            break;
                        }
                    }
                }
                Err(reason) => {
                    tracing::debug!(
                        "virtio-net {}: rx chain {head} returned empty: {reason}",
                        self.id
                    );
                    self.counters.malformed_chains += 1;
                    0
                }
            };
            match queue.add_used(&*mem, head, len) {
                Ok(()) => used_any = true,
                Err(e) => {
                    tracing::debug!("virtio-net {}: rx chain {head} not returned: {e}", self.id)
                }
            }
        }
        if used_any && queue.needs_notification(&*mem).unwrap_or(true) {
            interrupt.signal_used_queue(RX_QUEUE);
        }
    }
}

/// The next rx chain, or None when the driver has none posted; then notifications are
/// enabled, so the driver kicks the rx queue when it posts more (checked once more for a
/// buffer posted meanwhile).
fn next_rx_chain<'m>(
    queue: &mut Queue,
    mem: &'m GuestMemoryMmap,
) -> Option<DescriptorChain<&'m GuestMemoryMmap>> {
    if let Some(chain) = queue.pop_descriptor_chain(mem) {
        return Some(chain);
    }
    if !matches!(queue.enable_notification(mem), Ok(true)) {
        return None;
    }
    // Once only: an available index the queue refuses must not make this spin.
    queue.pop_descriptor_chain(mem)
}

/// Why a chain cannot be used.
#[derive(Debug, thiserror::Error)]
enum BadChain {
    #[error(transparent)]
    Chain(#[from] ChainError),
    #[error("an rx chain with device-readable buffers")]
    ReadableRx,
    #[error("a tx chain with device-writable buffers")]
    WritableTx,
    #[error("{0} bytes cannot hold a {VNET_HDR_LEN}-byte vnet header")]
    ShortRx(u64),
    #[error("{0} bytes is less than a vnet header and an Ethernet header")]
    ShortTx(u64),
    #[error("buffer not in guest memory: {0}")]
    Memory(#[from] vm_memory::GuestMemoryError),
}

/// An rx chain's buffers: device-writable only, inside guest memory, room for the header.
fn rx_buffers(
    chain: DescriptorChain<&GuestMemoryMmap>,
    mem: &GuestMemoryMmap,
) -> Result<Vec<Descriptor>, BadChain> {
    let checked = chain::check(chain, mem)?;
    if !checked.readable.is_empty() {
        return Err(BadChain::ReadableRx);
    }
    let room = chain::total_len(&checked.writable);
    if room < VNET_HDR_LEN as u64 {
        return Err(BadChain::ShortRx(room));
    }
    Ok(checked.writable)
}

/// Reads frames from the tap into `buffers` until one fits (dropping, and counting, any
/// larger than them). Returns the used length, or None when the tap has no frame.
fn receive(
    tap: &Tap,
    id: &str,
    mem: &GuestMemoryMmap,
    buffers: &[Descriptor],
    guest_csum: bool,
    counters: &mut NetCounters,
) -> Option<u32> {
    // rx_buffers checked every buffer is guest memory and their total fits a u32.
    let room = chain::total_len(buffers) as usize;
    let slices = match slices_of(mem, buffers, Permissions::Write) {
        Ok(s) => s,
        Err(e) => {
            tracing::debug!("virtio-net {id}: rx buffers: {e}");
            counters.malformed_chains += 1;
            return Some(0);
        }
    };
    loop {
        // A frame that overflows `slices` spills into `tail`, or makes the tap report more
        // than `room`: either way it did not fit.
        let mut tail = [0u8; 1];
        match tap.read_vectored(&slices, &mut tail) {
            Ok(0) => return None,
            Ok(n) if n > room => {
                tracing::debug!("virtio-net {id}: {n}-byte frame dropped: rx buffer of {room}");
                counters.rx_dropped += 1;
            }
            Ok(n) if n < VNET_HDR_LEN => {
                tracing::debug!("virtio-net {id}: {n}-byte read has no vnet header");
                counters.rx_dropped += 1;
            }
            Ok(n) => {
                if let Err(e) = finish_rx_header(mem, buffers, guest_csum) {
                    tracing::debug!("virtio-net {id}: rx header: {e}");
                    counters.rx_dropped += 1;
                    return Some(0);
                }
                counters.rx_packets += 1;
                counters.rx_bytes += (n - VNET_HDR_LEN) as u64;
                // n <= room <= u32::MAX.
                return Some(n as u32);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return None,
            Err(e) => {
                // The tap's next readable edge (its next frame) tries again.
                tracing::warn!("virtio-net {id}: reading tap {}: {e}", tap.if_name());
                return None;
            }
        }
    }
}

/// Completes the header the tap wrote: `num_buffers` is 1 (no mergeable buffers; the
/// kernel skips those two bytes), and without GUEST_CSUM the flags are 0 (5.1.6.4.1: the
/// kernel may mark a checksum valid, which such a driver must not be told).
fn finish_rx_header(
    mem: &GuestMemoryMmap,
    buffers: &[Descriptor],
    guest_csum: bool,
) -> Result<(), ChainError> {
    let mut hdr = [0u8; VNET_HDR_LEN];
    chain::read_prefix(mem, buffers, &mut hdr)?;
    hdr[NUM_BUFFERS_OFFSET..].copy_from_slice(&1u16.to_le_bytes());
    if !guest_csum {
        hdr[0] = 0;
    }
    let spread: Vec<_> = buffers.iter().map(|d| (d.addr(), d.len())).collect();
    chain::write_spread(mem, &spread, &hdr).map(|_| ())
}

/// Writes one tx chain's frame to the tap, counting what happened.
fn transmit(
    tap: &Tap,
    id: &str,
    mem: &GuestMemoryMmap,
    chain: DescriptorChain<&GuestMemoryMmap>,
    counters: &mut NetCounters,
    tap_down: &mut bool,
) {
    let head = chain.head_index();
    let frame = match tx_buffers(chain, mem) {
        Ok(f) => f,
        Err(reason) => {
            tracing::debug!("virtio-net {id}: tx chain {head} dropped: {reason}");
            counters.malformed_chains += 1;
            counters.tx_dropped += 1;
            return;
        }
    };
    let len = chain::total_len(&frame);
    if len > MAX_FRAME_CHAIN_LEN as u64 {
        tracing::debug!("virtio-net {id}: tx chain {head} dropped: {len} bytes is too long");
        counters.tx_dropped += 1;
        return;
    }
    let result = slices_of(mem, &frame, Permissions::Read)
        .map_err(io::Error::other)
        .and_then(|slices| tap.write_vectored(&slices));
    match result {
        Ok(_) => {
            *tap_down = false;
            counters.tx_packets += 1;
            counters.tx_bytes += len - VNET_HDR_LEN as u64;
        }
        Err(e) if e.raw_os_error() == Some(libc::EIO) => {
            counters.tx_dropped += 1;
            if !*tap_down {
                *tap_down = true;
                tracing::info!(
                    "virtio-net {id}: tap {} is down; tx frames are dropped until it is up",
                    tap.if_name()
                );
            }
        }
        Err(e) => {
            tracing::debug!(
                "virtio-net {id}: tx frame dropped: tap {}: {e}",
                tap.if_name()
            );
            counters.tx_dropped += 1;
        }
    }
}

/// A tx chain's buffers: device-readable only, inside guest memory, a header and an
/// Ethernet header at least.
fn tx_buffers(
    chain: DescriptorChain<&GuestMemoryMmap>,
    mem: &GuestMemoryMmap,
) -> Result<Vec<Descriptor>, BadChain> {
    let checked = chain::check(chain, mem)?;
    if !checked.writable.is_empty() {
        return Err(BadChain::WritableTx);
    }
    let len = chain::total_len(&checked.readable);
    if len < (VNET_HDR_LEN + ETH_HLEN) as u64 {
        return Err(BadChain::ShortTx(len));
    }
    Ok(checked.readable)
}

/// The host memory behind `descs` (checked to be guest memory), for readv/writev.
fn slices_of<'m>(
    mem: &'m GuestMemoryMmap,
    descs: &[Descriptor],
    access: Permissions,
) -> Result<Vec<VolatileSlice<'m>>, BadChain> {
    let mut slices = Vec::with_capacity(descs.len());
    for d in descs {
        for s in mem.get_slices(d.addr(), d.len() as usize, access)? {
            slices.push(s?);
        }
    }
    Ok(slices)
}

impl VirtioDevice for Net {
    fn device_type(&self) -> u32 {
        VIRTIO_ID_NET
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &[QUEUE_SIZE; NUM_QUEUES]
    }

    fn avail_features(&self) -> u64 {
        self.avail_features
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        read_config_bytes(&self.config, offset, data);
    }

    fn write_config(&mut self, offset: u64, _data: &[u8]) {
        // The MAC is writable only by legacy drivers (and with CTRL_MAC_ADDR through the
        // control queue, not offered); status is read-only.
        tracing::debug!("virtio-net {}: config write at {offset} ignored", self.id);
    }

    fn queue_events(&self) -> &[EventFd] {
        &self.queue_evts
    }

    fn activate(&mut self, ctx: ActivateContext) -> Result<(), ActivateError> {
        if ctx.queues.len() != NUM_QUEUES {
            return Err(ActivateError::QueueCount {
                expected: NUM_QUEUES,
                got: ctx.queues.len(),
            });
        }
        if let Some(i) = ctx.queues.iter().position(|q| !q.ready()) {
            return Err(ActivateError::InvalidQueue(i));
        }
        if let Err(e) = self.tap.set_offloads_from_features(ctx.acked_features) {
            // The kernel then finishes every frame itself: slower, not wrong.
            tracing::warn!("virtio-net {}: {e}", self.id);
        }
        self.active = Some(Active {
            mem: ctx.mem,
            queues: ctx.queues,
            interrupt: ctx.interrupt,
            acked_features: ctx.acked_features,
        });
        // The driver may have queued frames before DRIVER_OK, and frames that reached the
        // tap while no driver ran raised their readable edge already.
        self.process_tx();
        self.process_rx();
        Ok(())
    }

    fn reset(&mut self) {
        self.active = None;
        if let Err(e) = self.tap.set_offload(0) {
            tracing::debug!("virtio-net {}: {e}", self.id);
        }
    }
}
