//! The virtio-rng device: each chain of device-writable buffers is filled with bytes read
//! from the host source and returned with the number of bytes written. A chain with a
//! device-readable buffer or outside guest memory is returned with length 0.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use virtio_queue::QueueT;
use vmm_sys_util::eventfd::EventFd;

use super::persist::RngState;
use super::{MAX_REQUEST, QUEUE_SIZE, VIRTIO_ID_RNG};
use crate::devices::virtio::chain;
use crate::devices::virtio::persist::QueueSnapshot;
use crate::devices::virtio::{
    ActivateContext, ActivateError, ActiveQueue, VirtioDevice, VIRTIO_F_VERSION_1,
};
use crate::vstate::memory::GuestMemoryMmap;

#[derive(Debug, thiserror::Error)]
pub enum RngError {
    #[error("cannot open the entropy source {path}: {source}")]
    Source {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot create the queue eventfd: {0}")]
    EventFd(#[source] std::io::Error),
}

/// Requests answered since the device was created.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct RngCounters {
    pub requests: u64,
    pub bytes: u64,
    /// Chains returned with nothing written (malformed, or the source failed).
    pub dropped: u64,
}

pub struct Rng {
    source: File,
    path: PathBuf,
    queue_evts: [EventFd; 1],
    active: Option<ActiveQueue>,
    buf: Vec<u8>,
    counters: RngCounters,
}

impl Rng {
    /// A device whose entropy comes from `src`.
    pub fn new(src: &Path) -> Result<Self, RngError> {
        let source = File::open(src).map_err(|source| RngError::Source {
            path: src.to_path_buf(),
            source,
        })?;
        Ok(Rng {
            source,
            path: src.to_path_buf(),
            queue_evts: [EventFd::new(libc::EFD_NONBLOCK).map_err(RngError::EventFd)?],
            active: None,
            buf: Vec::new(),
            counters: RngCounters::default(),
        })
    }

    pub fn source_path(&self) -> &Path {
        &self.path
    }

    pub fn is_active(&self) -> bool {
        self.active.is_some()
    }

    pub fn counters(&self) -> RngCounters {
        self.counters
    }

    pub fn state(&self) -> RngState {
        RngState {
            acked_features: self.active.as_ref().map_or(0, |a| a.acked_features),
            queue: self.active.as_ref().map(|a| QueueSnapshot::from(&a.queue)),
        }
    }

    /// Answers every available request, then interrupts the driver if it wants that.
    pub fn process_queue(&mut self) {
        let Some(mut active) = self.active.take() else {
            return;
        };
        let mut used_any = false;
        while let Some(chain) = active.queue.pop_descriptor_chain(&active.mem) {
            let head = chain.head_index();
            let len = self.fill(&active.mem, chain);
            match active.queue.add_used(&active.mem, head, len) {
                Ok(()) => used_any = true,
                Err(e) => tracing::debug!("virtio-rng: chain {head} not returned: {e}"),
            }
        }
        if used_any && active.queue.needs_notification(&active.mem).unwrap_or(true) {
            active.interrupt.signal_used_queue(0);
        }
        self.active = Some(active);
    }

    /// Fills one chain; returns the bytes written.
    fn fill(
        &mut self,
        mem: &GuestMemoryMmap,
        descs: virtio_queue::DescriptorChain<&GuestMemoryMmap>,
    ) -> u32 {
        let checked = match chain::check(descs, mem) {
            Ok(c) if c.readable.is_empty() && !c.writable.is_empty() => c,
            Ok(_) => {
                tracing::debug!("virtio-rng: chain without device-writable buffers only");
                self.counters.dropped += 1;
                return 0;
            }
            Err(e) => {
                tracing::debug!("virtio-rng: chain dropped: {e}");
                self.counters.dropped += 1;
                return 0;
            }
        };
        let want = (chain::total_len(&checked.writable) as usize).min(MAX_REQUEST);
        self.buf.resize(want, 0);
        if let Err(e) = self.source.read_exact(&mut self.buf) {
            tracing::warn!("virtio-rng: reading {}: {e}", self.path.display());
            self.counters.dropped += 1;
            return 0;
        }
        let buffers: Vec<_> = checked
            .writable
            .iter()
            .map(|d| (d.addr(), d.len()))
            .collect();
        match chain::write_spread(mem, &buffers, &self.buf) {
            Ok(n) => {
                self.counters.requests += 1;
                self.counters.bytes += u64::from(n);
                n
            }
            Err(e) => {
                tracing::debug!("virtio-rng: {e}");
                self.counters.dropped += 1;
                0
            }
        }
    }
}

impl VirtioDevice for Rng {
    fn device_type(&self) -> u32 {
        VIRTIO_ID_RNG
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &[QUEUE_SIZE]
    }

    fn avail_features(&self) -> u64 {
        VIRTIO_F_VERSION_1
    }

    fn read_config(&self, _offset: u64, data: &mut [u8]) {
        // No configuration space (5.4.4).
        data.fill(0);
    }

    fn write_config(&mut self, offset: u64, _data: &[u8]) {
        tracing::debug!("virtio-rng: config write at {offset} ignored");
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
        self.active = None;
    }
}
