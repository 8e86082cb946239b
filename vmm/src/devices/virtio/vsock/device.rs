//! The virtio-vsock device: what it offers the driver, and moving packets between its
//! queues and the [`Muxer`].
//!
//! tx: every chain is consumed (used length 0); a malformed one is dropped, a well-formed
//! packet goes to the muxer. rx: while the muxer has a packet and the guest gave a buffer,
//! the packet is written into it; a buffer nothing fits is put back. The device stops
//! taking tx packets while too many RSTs wait for rx buffers, and takes them again once the
//! guest reads.

use std::os::fd::{AsRawFd, RawFd};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use event_manager::EventSet;
use virtio_bindings::virtio_ids::VIRTIO_ID_VSOCK;
use virtio_queue::{Queue, QueueOwnedT, QueueT};
use vm_memory::Bytes;
use vmm_sys_util::eventfd::EventFd;

use super::muxer::{Muxer, MuxerCounters, MuxerError};
use super::packet;
use super::persist::VsockState;
use super::{EVENT_QUEUE, NUM_QUEUES, QUEUE_SIZE, RX_QUEUE, TX_QUEUE, VIRTIO_VSOCK_F_STREAM};
use crate::devices::virtio::persist::QueueSnapshot;
use crate::devices::virtio::{
    read_config_bytes, ActivateContext, ActivateError, Interrupt, VirtioDevice, VIRTIO_F_VERSION_1,
};
use crate::vstate::memory::GuestMemoryMmap;

/// `VIRTIO_VSOCK_EVENT_TRANSPORT_RESET`: the only event defined (5.10.6.7).
const EVENT_TRANSPORT_RESET: u32 = 0;

/// Packets moved since the device was created.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VsockCounters {
    pub tx_packets: u64,
    pub rx_packets: u64,
    /// tx chains dropped as malformed.
    pub tx_dropped: u64,
    /// rx buffers returned empty because they were malformed.
    pub rx_dropped: u64,
    pub muxer: MuxerCounters,
}

struct Active {
    mem: GuestMemoryMmap,
    queues: Vec<Queue>,
    interrupt: Arc<Interrupt>,
    acked_features: u64,
}

pub struct Vsock {
    cid: u64,
    avail_features: u64,
    queue_evts: [EventFd; NUM_QUEUES],
    active: Option<Active>,
    pub(super) muxer: Muxer,
    counters: VsockCounters,
}

#[derive(Debug, thiserror::Error)]
pub enum VsockError {
    #[error("vsock queue eventfd: {0}")]
    EventFd(#[source] std::io::Error),
    #[error(transparent)]
    Muxer(#[from] MuxerError),
}

impl Vsock {
    /// A device for a guest with CID `cid` whose host end listens on `uds_path`.
    pub fn new(cid: u64, uds_path: &Path) -> Result<Self, VsockError> {
        let evt = || EventFd::new(libc::EFD_NONBLOCK).map_err(VsockError::EventFd);
        Ok(Vsock {
            cid,
            avail_features: VIRTIO_F_VERSION_1 | VIRTIO_VSOCK_F_STREAM,
            queue_evts: [evt()?, evt()?, evt()?],
            active: None,
            muxer: Muxer::new(cid, uds_path)?,
            counters: VsockCounters::default(),
        })
    }

    pub fn cid(&self) -> u64 {
        self.cid
    }

    pub fn uds_path(&self) -> &Path {
        self.muxer.uds_path()
    }

    pub fn is_active(&self) -> bool {
        self.active.is_some()
    }

    pub fn counters(&self) -> VsockCounters {
        VsockCounters {
            muxer: self.muxer.counters(),
            ..self.counters
        }
    }

    pub fn muxer(&self) -> &Muxer {
        &self.muxer
    }

    pub fn state(&self) -> VsockState {
        VsockState {
            cid: self.cid,
            avail_features: self.avail_features,
            acked_features: self.active.as_ref().map_or(0, |a| a.acked_features),
            queues: self.active.as_ref().map_or_else(Vec::new, |a| {
                a.queues.iter().map(QueueSnapshot::from).collect()
            }),
        }
    }

    /// Handles an event-loop event on `fd` (a queue notification or a muxer descriptor),
    /// then moves whatever packets can move.
    pub fn handle(&mut self, fd: RawFd, events: EventSet, now: Instant) {
        if let Some(evt) = self.queue_evts.iter().find(|e| e.as_raw_fd() == fd) {
            // The count is irrelevant: the queues are drained whatever number of kicks.
            let _ = evt.read();
        } else if self.muxer.owns(fd) {
            self.muxer.handle_event(fd, events, now);
        }
        self.run(now);
    }

    /// rx, then tx, until tx has nothing more (tx may answer with rx packets, and rx
    /// buffers may unblock tx).
    pub fn run(&mut self, now: Instant) {
        loop {
            self.process_rx(now);
            if !self.process_tx() {
                break;
            }
        }
    }

    /// Takes tx packets; returns whether it took any.
    fn process_tx(&mut self) -> bool {
        let Some(active) = self.active.as_mut() else {
            return false;
        };
        let queue = &mut active.queues[TX_QUEUE];
        let mut took = false;
        while !self.muxer.rx_backlog_full() {
            let Some(chain) = queue.pop_descriptor_chain(&active.mem) else {
                break;
            };
            took = true;
            let head = chain.head_index();
            match packet::read_tx(chain, &active.mem) {
                Ok(pkt) => {
                    self.counters.tx_packets += 1;
                    self.muxer.recv_guest(&pkt);
                }
                Err(e) => {
                    tracing::debug!("virtio-vsock: tx chain {head} dropped: {e}");
                    self.counters.tx_dropped += 1;
                }
            }
            // Fails only for a used ring that stopped being memory; nothing to do then.
            if let Err(e) = queue.add_used(&active.mem, head, 0) {
                tracing::debug!("virtio-vsock: tx chain {head} not returned: {e}");
            }
        }
        if took && queue.needs_notification(&active.mem).unwrap_or(true) {
            active.interrupt.signal_used_queue(TX_QUEUE);
        }
        took
    }

    fn process_rx(&mut self, now: Instant) {
        let Some(active) = self.active.as_mut() else {
            return;
        };
        let queue = &mut active.queues[RX_QUEUE];
        let mut used_any = false;
        while self.muxer.has_rx() {
            let Some(chain) = queue.pop_descriptor_chain(&active.mem) else {
                break;
            };
            let head = chain.head_index();
            let len = match packet::rx_writer(chain, &active.mem) {
                Ok(mut writer) => {
                    let room = writer.available_bytes();
                    match self.muxer.fill_rx(room, &mut writer, now) {
                        Some(n) => {
                            self.counters.rx_packets += 1;
                            n
                        }
                        None => {
                            // Nothing fits this buffer after all: the driver keeps it.
                            queue.go_to_previous_position();
                            break;
                        }
                    }
                }
                Err(e) => {
                    tracing::debug!("virtio-vsock: rx chain {head} returned empty: {e}");
                    self.counters.rx_dropped += 1;
                    0
                }
            };
            // n <= room, which is at most a chain's 4 GiB (virtio_queue's bound).
            let len = u32::try_from(len).unwrap_or(0);
            match queue.add_used(&active.mem, head, len) {
                Ok(()) => used_any = true,
                Err(e) => tracing::debug!("virtio-vsock: rx chain {head} not returned: {e}"),
            }
        }
        if used_any && queue.needs_notification(&active.mem).unwrap_or(true) {
            active.interrupt.signal_used_queue(RX_QUEUE);
        }
    }

    /// Tells the driver every connection is gone (after a restore: host sockets do not
    /// survive a snapshot). Returns whether an event buffer was available.
    pub fn send_transport_reset(&mut self) -> bool {
        let Some(active) = self.active.as_mut() else {
            return false;
        };
        let queue = &mut active.queues[EVENT_QUEUE];
        let Some(chain) = queue.pop_descriptor_chain(&active.mem) else {
            return false;
        };
        let head = chain.head_index();
        // The event is a single le32 id in the first writable buffer.
        let written = chain
            .writable()
            .next()
            .filter(|d| d.len() >= 4)
            .and_then(|d| {
                active
                    .mem
                    .write_obj(EVENT_TRANSPORT_RESET.to_le(), d.addr())
                    .ok()
            })
            .map_or(0, |()| 4);
        if queue.add_used(&active.mem, head, written).is_err() {
            return false;
        }
        if queue.needs_notification(&active.mem).unwrap_or(true) {
            active.interrupt.signal_used_queue(EVENT_QUEUE);
        }
        written == 4
    }
}

impl VirtioDevice for Vsock {
    fn device_type(&self) -> u32 {
        VIRTIO_ID_VSOCK
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &[QUEUE_SIZE; NUM_QUEUES]
    }

    fn avail_features(&self) -> u64 {
        self.avail_features
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        // struct virtio_vsock_config { le64 guest_cid; }
        read_config_bytes(&self.cid.to_le_bytes(), offset, data);
    }

    fn write_config(&mut self, offset: u64, _data: &[u8]) {
        tracing::debug!("virtio-vsock: config write at {offset} ignored (read-only)");
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
        self.active = Some(Active {
            mem: ctx.mem,
            queues: ctx.queues,
            interrupt: ctx.interrupt,
            acked_features: ctx.acked_features,
        });
        self.muxer.set_guest_ready(true);
        // A driver may have posted packets before DRIVER_OK.
        self.run(Instant::now());
        Ok(())
    }

    fn reset(&mut self) {
        self.active = None;
        self.muxer.set_guest_ready(false);
    }
}
