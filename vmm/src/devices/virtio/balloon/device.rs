//! The virtio-balloon device: configuration space (`num_pages` the host wants in the
//! balloon, `actual` the guest has), its queues, and what it does with each chain.
//!
//! Queues, in the order the driver numbers them: inflate, deflate, then statistics if
//! `F_STATS_VQ` was negotiated, then free page reporting if `F_REPORTING` was (a queue
//! whose feature was not negotiated does not exist, and the later ones move up).
//!
//! - inflate: every page is discarded (given back to the host) before the chain is
//!   returned; deflate: nothing to do, as the device never makes inflated pages
//!   inaccessible (no `F_MUST_TELL_HOST`), so the guest may reuse them at once;
//! - statistics: the device keeps the guest's buffer and returns it when it wants newer
//!   values ([`Balloon::request_stats`]); the guest then refills and posts it again;
//! - reporting: the reported free pages are discarded, then the chain is returned.

use std::sync::Arc;
use std::time::{Duration, Instant};

use virtio_queue::{Queue, QueueT};
use vmm_sys_util::eventfd::EventFd;
use vmm_sys_util::timerfd::TimerFd;

use super::pages::{self, PageRanges};
use super::persist::BalloonState;
use super::stats::{self, BalloonStats};
use super::{
    BALLOON_PAGE_SIZE, F_DEFLATE_ON_OOM, F_REPORTING, F_STATS_VQ, QUEUE_SIZE, VIRTIO_ID_BALLOON,
};
use crate::devices::virtio::chain;
use crate::devices::virtio::persist::QueueSnapshot;
use crate::devices::virtio::{
    read_config_bytes, ActivateContext, ActivateError, Interrupt, VirtioDevice, VIRTIO_F_VERSION_1,
};
use crate::vstate::discard::GuestDiscard;
use crate::vstate::memory::GuestMemoryMmap;

/// `struct virtio_balloon_config`: num_pages, actual, free_page_hint_cmd_id, poison_val.
const CONFIG_LEN: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum BalloonError {
    #[error("balloon size {0} bytes is not a whole number of 4 KiB pages below 16 TiB")]
    Size(u64),
    #[error("cannot create a queue eventfd: {0}")]
    EventFd(#[source] std::io::Error),
    #[error("cannot create the statistics timer: {0}")]
    Timer(#[source] std::io::Error),
    #[error("saved balloon state does not match this device: {0}")]
    State(&'static str),
}

/// What the balloon offers, from the VM config (Cloud Hypervisor's `balloon` fields).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BalloonOptions {
    /// The guest may take pages back from the balloon when it runs out of memory.
    pub deflate_on_oom: bool,
    /// The guest reports free pages, which are given back to the host.
    pub free_page_reporting: bool,
}

/// What the device did since it was created.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct BalloonCounters {
    /// Pages the guest put into the balloon, and took out.
    pub inflated_pages: u64,
    pub deflated_pages: u64,
    /// Bytes of free pages the guest reported.
    pub reported_bytes: u64,
    /// Bytes given back to the host (inflated and reported pages).
    pub discarded_bytes: u64,
    /// Discards the host refused (the pages stay with the VMM).
    pub discard_errors: u64,
    /// Page numbers outside guest memory, ignored.
    pub refused_pages: u64,
    /// Statistics buffers received.
    pub stats_updates: u64,
    /// Chains returned unanswered (malformed).
    pub dropped: u64,
}

/// Which job a queue does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Inflate,
    Deflate,
    Stats,
    Reporting,
}

struct Active {
    mem: GuestMemoryMmap,
    /// Every queue the transport has, by index; `roles[i]` says what queue `i` does.
    queues: Vec<Queue>,
    roles: Vec<Option<Role>>,
    interrupt: Arc<Interrupt>,
    acked_features: u64,
}

pub struct Balloon {
    options: BalloonOptions,
    avail_features: u64,
    max_sizes: Vec<u16>,
    queue_evts: Vec<EventFd>,
    target_pages: u32,
    actual_pages: u32,
    config_generation: u32,
    active: Option<Active>,
    discard: Arc<GuestDiscard>,
    /// The statistics buffer the device holds (its head), returned to ask for new values.
    stats_head: Option<u16>,
    stats: Option<(BalloonStats, Instant)>,
    /// Fires every statistics polling interval, when there is one.
    pub(super) stats_timer: Option<TimerFd>,
    counters: BalloonCounters,
}

impl Balloon {
    /// A balloon asking for `size` bytes (4 KiB pages) from the start; discarded pages go
    /// through `discard`.
    pub fn new(
        options: BalloonOptions,
        size: u64,
        discard: Arc<GuestDiscard>,
    ) -> Result<Self, BalloonError> {
        let mut avail_features = VIRTIO_F_VERSION_1 | F_STATS_VQ;
        if options.deflate_on_oom {
            avail_features |= F_DEFLATE_ON_OOM;
        }
        if options.free_page_reporting {
            avail_features |= F_REPORTING;
        }
        let queues = 3 + usize::from(options.free_page_reporting);
        let queue_evts = (0..queues)
            .map(|_| EventFd::new(libc::EFD_NONBLOCK).map_err(BalloonError::EventFd))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Balloon {
            options,
            avail_features,
            max_sizes: vec![QUEUE_SIZE; queues],
            queue_evts,
            target_pages: pages_of(size)?,
            actual_pages: 0,
            config_generation: 0,
            active: None,
            discard,
            stats_head: None,
            stats: None,
            stats_timer: None,
            counters: BalloonCounters::default(),
        })
    }

    /// Rebuilds the device's host-side state from a snapshot (the transport's restore
    /// starts it again with its queues).
    pub fn from_state(
        options: BalloonOptions,
        state: &BalloonState,
        discard: Arc<GuestDiscard>,
    ) -> Result<Self, BalloonError> {
        let mut b = Balloon::new(options, 0, discard)?;
        if state.avail_features != b.avail_features {
            return Err(BalloonError::State("offered features"));
        }
        b.target_pages = state.target_pages;
        b.actual_pages = state.actual_pages;
        b.config_generation = state.config_generation;
        b.stats_head = state.stats_head;
        Ok(b)
    }

    pub fn state(&self) -> BalloonState {
        BalloonState {
            avail_features: self.avail_features,
            acked_features: self.active.as_ref().map_or(0, |a| a.acked_features),
            queues: self.active.as_ref().map_or_else(Vec::new, |a| {
                a.queues.iter().map(QueueSnapshot::from).collect()
            }),
            target_pages: self.target_pages,
            actual_pages: self.actual_pages,
            config_generation: self.config_generation,
            stats_head: self.stats_head,
        }
    }

    /// Asks the guest for new statistics every `interval` (from when the event loop starts
    /// watching the device).
    pub fn set_stats_interval(&mut self, interval: Duration) -> Result<(), BalloonError> {
        let mut timer = TimerFd::new().map_err(|e| BalloonError::Timer(e.into()))?;
        timer
            .reset(interval, Some(interval))
            .map_err(|e| BalloonError::Timer(e.into()))?;
        self.stats_timer = Some(timer);
        Ok(())
    }

    pub fn options(&self) -> BalloonOptions {
        self.options
    }

    pub fn is_active(&self) -> bool {
        self.active.is_some()
    }

    /// Bytes the host asked the guest to put into the balloon.
    pub fn target_bytes(&self) -> u64 {
        u64::from(self.target_pages) * BALLOON_PAGE_SIZE
    }

    /// Bytes the guest says are in the balloon.
    pub fn actual_bytes(&self) -> u64 {
        u64::from(self.actual_pages) * BALLOON_PAGE_SIZE
    }

    pub fn counters(&self) -> BalloonCounters {
        self.counters
    }

    /// The guest's last statistics and when they arrived.
    pub fn stats(&self) -> Option<(&BalloonStats, Instant)> {
        self.stats.as_ref().map(|(s, at)| (s, *at))
    }

    /// Asks the guest for `size` bytes in the balloon; announced with a configuration
    /// change interrupt. Returns whether it changed.
    pub fn set_target(&mut self, size: u64) -> Result<bool, BalloonError> {
        let pages = pages_of(size)?;
        if pages == self.target_pages {
            return Ok(false);
        }
        self.target_pages = pages;
        self.config_generation = self.config_generation.wrapping_add(1);
        if let Some(a) = &self.active {
            a.interrupt.signal_config_change();
        }
        Ok(true)
    }

    /// Returns the held statistics buffer, so the guest sends fresh values. Does nothing
    /// when the guest has not posted one (it has not negotiated statistics, or the last
    /// request is still being answered).
    pub fn request_stats(&mut self) -> bool {
        let Some(head) = self.stats_head else {
            return false;
        };
        let Some(active) = &mut self.active else {
            return false;
        };
        let Some(q) = queue_of(active, Role::Stats) else {
            return false;
        };
        let index = q;
        let q = &mut active.queues[index];
        match q.add_used(&active.mem, head, 0) {
            Ok(()) => {
                self.stats_head = None;
                if q.needs_notification(&active.mem).unwrap_or(true) {
                    active.interrupt.signal_used_queue(index);
                }
                true
            }
            Err(e) => {
                tracing::debug!("virtio-balloon: statistics buffer not returned: {e}");
                false
            }
        }
    }

    /// Handles whatever queue `index` holds.
    pub fn process_queue(&mut self, index: usize) {
        let Some(mut active) = self.active.take() else {
            return;
        };
        match active.roles.get(index).copied().flatten() {
            Some(Role::Stats) => self.take_stats(&mut active, index),
            Some(role) => self.answer_pages(&mut active, index, role),
            None => tracing::debug!("virtio-balloon: notification for queue {index} ignored"),
        }
        self.active = Some(active);
    }

    /// Inflate, deflate and reporting chains: acted on, then returned.
    fn answer_pages(&mut self, active: &mut Active, index: usize, role: Role) {
        let mem = active.mem.clone();
        let q = &mut active.queues[index];
        let mut used_any = false;
        while let Some(chain) = q.pop_descriptor_chain(&mem) {
            let head = chain.head_index();
            let parsed = match role {
                Role::Reporting => pages::reported_ranges(chain, &mem),
                _ => pages::pfn_ranges(chain, &mem),
            };
            match parsed {
                Ok(ranges) => self.apply(&mem, role, &ranges),
                Err(e) => {
                    tracing::debug!("virtio-balloon: {role:?} chain dropped: {e}");
                    self.counters.dropped += 1;
                }
            }
            match q.add_used(&mem, head, 0) {
                Ok(()) => used_any = true,
                Err(e) => tracing::debug!("virtio-balloon: chain {head} not returned: {e}"),
            }
        }
        if used_any && q.needs_notification(&mem).unwrap_or(true) {
            active.interrupt.signal_used_queue(index);
        }
    }

    fn apply(&mut self, mem: &GuestMemoryMmap, role: Role, ranges: &PageRanges) {
        self.counters.refused_pages += ranges.refused;
        let pages = ranges.bytes() / BALLOON_PAGE_SIZE;
        match role {
            Role::Deflate => {
                self.counters.deflated_pages += pages;
                return;
            }
            Role::Inflate => self.counters.inflated_pages += pages,
            _ => self.counters.reported_bytes += ranges.bytes(),
        }
        for r in &ranges.ranges {
            match self.discard.discard(mem, r.start, r.end - r.start) {
                Ok(bytes) => self.counters.discarded_bytes += bytes,
                Err(e) => {
                    self.counters.discard_errors += 1;
                    tracing::warn!("virtio-balloon: {e}");
                }
            }
        }
    }

    /// A statistics buffer arrived: read it and keep it until newer values are wanted.
    fn take_stats(&mut self, active: &mut Active, index: usize) {
        let mem = active.mem.clone();
        let q = &mut active.queues[index];
        while let Some(chain) = q.pop_descriptor_chain(&mem) {
            let head = chain.head_index();
            // A buffer posted while one is held: the driver restarted; give the old back.
            if let Some(old) = self.stats_head.take() {
                let _ = q.add_used(&mem, old, 0);
            }
            let read = chain::check(chain, &mem).and_then(|c| {
                let mut raw = vec![0u8; stats::ENTRY_LEN * stats::MAX_ENTRIES];
                let n = chain::read_prefix(&mem, &c.readable, &mut raw)?;
                raw.truncate(n);
                Ok(raw)
            });
            match read {
                Ok(raw) => {
                    self.stats = Some((BalloonStats::parse(&raw), Instant::now()));
                    self.counters.stats_updates += 1;
                }
                Err(e) => {
                    tracing::debug!("virtio-balloon: statistics chain unreadable: {e}");
                    self.counters.dropped += 1;
                }
            }
            self.stats_head = Some(head);
        }
    }

    fn config(&self) -> [u8; CONFIG_LEN] {
        let mut c = [0u8; CONFIG_LEN];
        c[0..4].copy_from_slice(&self.target_pages.to_le_bytes());
        c[4..8].copy_from_slice(&self.actual_pages.to_le_bytes());
        c
    }
}

/// `size` in balloon pages.
fn pages_of(size: u64) -> Result<u32, BalloonError> {
    if size % BALLOON_PAGE_SIZE != 0 {
        return Err(BalloonError::Size(size));
    }
    u32::try_from(size / BALLOON_PAGE_SIZE).map_err(|_| BalloonError::Size(size))
}

/// The queue index doing `role`, if it exists.
fn queue_of(active: &Active, role: Role) -> Option<usize> {
    active.roles.iter().position(|r| *r == Some(role))
}

/// What each queue index does under `acked` features: queues of features not negotiated
/// do not exist and the later ones move up (5.5.2).
fn roles(acked: u64, queues: usize) -> Vec<Option<Role>> {
    let mut roles = vec![Some(Role::Inflate), Some(Role::Deflate)];
    if acked & F_STATS_VQ != 0 {
        roles.push(Some(Role::Stats));
    }
    if acked & F_REPORTING != 0 {
        roles.push(Some(Role::Reporting));
    }
    roles.resize(queues.max(roles.len()), None);
    roles
}

impl VirtioDevice for Balloon {
    fn device_type(&self) -> u32 {
        VIRTIO_ID_BALLOON
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &self.max_sizes
    }

    fn avail_features(&self) -> u64 {
        self.avail_features
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        read_config_bytes(&self.config(), offset, data);
    }

    fn write_config(&mut self, offset: u64, data: &[u8]) {
        // Only `actual` (bytes 4..8) is the driver's to write; Linux writes it whole.
        if offset == 4 && data.len() == 4 {
            self.actual_pages = u32::from_le_bytes([data[0], data[1], data[2], data[3]]);
        } else {
            tracing::debug!(
                "virtio-balloon: config write of {} bytes at {offset} ignored",
                data.len()
            );
        }
    }

    fn config_generation(&self) -> u32 {
        self.config_generation
    }

    fn queue_events(&self) -> &[EventFd] {
        &self.queue_evts
    }

    fn activate(&mut self, ctx: ActivateContext) -> Result<(), ActivateError> {
        let roles = roles(ctx.acked_features, ctx.queues.len());
        if roles.len() > ctx.queues.len() {
            return Err(ActivateError::QueueCount {
                expected: roles.len(),
                got: ctx.queues.len(),
            });
        }
        for (i, role) in roles.iter().enumerate() {
            if role.is_some() && !ctx.queues[i].ready() {
                return Err(ActivateError::InvalidQueue(i));
            }
        }
        self.active = Some(Active {
            mem: ctx.mem,
            queues: ctx.queues,
            roles,
            interrupt: ctx.interrupt,
            acked_features: ctx.acked_features,
        });
        for i in 0..self.queue_evts.len() {
            self.process_queue(i);
        }
        Ok(())
    }

    fn reset(&mut self) {
        self.active = None;
        self.stats_head = None;
        self.actual_pages = 0;
    }
}
