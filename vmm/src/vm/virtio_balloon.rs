//! Wiring virtio-balloon into a VM: the device on its virtio-mmio slot (after virtio-mem),
//! `vm.resize`'s `desired_balloon`, and what `vm.counters` reports about it.

use std::sync::Arc;
use std::time::Duration;

use revenant_acpi::tables::MmioDevice;
use serde::Serialize;

use super::virtio::{attach, VirtioMmio, Wiring};
use super::{Vm, VmError};
use crate::config::{ConfigError, VmConfig};
use crate::devices::virtio::balloon::device::BalloonCounters;
use crate::devices::virtio::balloon::persist::BalloonSnapshot;
use crate::devices::virtio::balloon::stats::BalloonStats;
use crate::devices::virtio::balloon::{Balloon, BalloonOptions};
use crate::devices::virtio::restore::RunningQueues;
use crate::vstate::discard::GuestDiscard;

pub(crate) type VirtioBalloon = VirtioMmio<Balloon>;

impl VirtioBalloon {
    pub(crate) fn snapshot(&self) -> BalloonSnapshot {
        let (transport, device) = self.states(Balloon::state);
        BalloonSnapshot { transport, device }
    }
}

/// Builds the config's balloon (if any); `saved` restores its transport and queues.
pub(crate) fn build(
    config: &VmConfig,
    layout: &[MmioDevice],
    w: &mut Wiring<'_>,
    discard: &Arc<GuestDiscard>,
    saved: Option<Option<&BalloonSnapshot>>,
) -> Result<Option<VirtioBalloon>, VmError> {
    if saved.is_some_and(|s| s.is_some() != config.balloon.is_some()) {
        return Err(VmError::Snapshot(
            "the template's balloon state does not match its configuration".into(),
        ));
    }
    let Some(cfg) = &config.balloon else {
        return Ok(None);
    };
    let slot = super::virtio::slot_of(config, layout, super::virtio::Slot::Balloon)
        .ok_or_else(|| VmError::Virtio("no virtio-mmio slot for the balloon".into()))?;
    let options = BalloonOptions {
        deflate_on_oom: cfg.deflate_on_oom,
        free_page_reporting: cfg.free_page_reporting,
    };
    let saved = saved.flatten();
    let mut device = match saved {
        Some(s) => Balloon::from_state(options, &s.device, discard.clone())
            .map_err(|e| VmError::Snapshot(format!("virtio-balloon: {e}")))?,
        None => Balloon::new(options, cfg.size, discard.clone())
            .map_err(|e| ConfigError::new("balloon.size", e.to_string()))?,
    };
    if cfg.statistics_polling_interval_s > 0 {
        device
            .set_stats_interval(Duration::from_secs(cfg.statistics_polling_interval_s))
            .map_err(|e| VmError::Virtio(format!("virtio-balloon: {e}")))?;
    }
    let saved = saved.map(|s| {
        (
            &s.transport,
            RunningQueues {
                acked_features: s.device.acked_features,
                queues: &s.device.queues,
            },
        )
    });
    attach(device, slot, w, "virtio-balloon", saved).map(Some)
}

/// `vm.counters`' `balloon`: the sizes asked for and held, what was given back, and the
/// guest's latest statistics with their age.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BalloonInfo {
    pub target_bytes: u64,
    pub actual_bytes: u64,
    #[serde(flatten)]
    pub counters: BalloonCounters,
    pub stats: Option<BalloonStats>,
    pub stats_age_ms: Option<u64>,
}

impl Vm {
    /// Asks the guest to hold `size` bytes in its balloon. The same size again changes
    /// nothing.
    pub fn resize_balloon(&self, size: u64) -> Result<(), VmError> {
        let Some(b) = &self.virtio_balloon else {
            return Err(
                ConfigError::new("desired_balloon", "this VM has no balloon device").into(),
            );
        };
        if size > self.memory_size() {
            return Err(ConfigError::new(
                "desired_balloon",
                format!(
                    "{size} is more than the guest's memory ({})",
                    self.memory_size()
                ),
            )
            .into());
        }
        let changed = b
            .device
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .set_target(size)
            .map_err(|e| ConfigError::new("desired_balloon", e.to_string()))?;
        if changed {
            tracing::info!("virtio-balloon: {size} bytes requested");
        }
        Ok(())
    }

    /// The balloon's state, asking the guest for fresh statistics for the next reading.
    pub fn balloon(&self) -> Option<BalloonInfo> {
        let b = self.virtio_balloon.as_ref()?;
        let mut d = b.device.lock().unwrap_or_else(|p| p.into_inner());
        let stats = d.stats().map(|(s, at)| (s.clone(), at.elapsed()));
        d.request_stats();
        Some(BalloonInfo {
            target_bytes: d.target_bytes(),
            actual_bytes: d.actual_bytes(),
            counters: d.counters(),
            stats_age_ms: stats.as_ref().map(|(_, age)| age.as_millis() as u64),
            stats: stats.map(|(s, _)| s),
        })
    }

    /// Bytes the guest holds in its balloon (0 without one).
    pub fn balloon_actual_bytes(&self) -> u64 {
        self.virtio_balloon.as_ref().map_or(0, |b| {
            b.device
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .actual_bytes()
        })
    }

    /// Bytes of boot RAM plus plugged hot-plug memory.
    fn memory_size(&self) -> u64 {
        use vm_memory::GuestMemoryBackend;
        self.memory
            .iter()
            .map(vm_memory::GuestMemoryRegion::len)
            .sum::<u64>()
            + self.memory_hotplug().map_or(0, |m| m.plugged_size)
    }
}
