//! Wiring virtio-rng into a VM: the device on its virtio-mmio slot (after the balloon).

use revenant_acpi::tables::MmioDevice;

use super::virtio::{attach, slot_of, Slot, VirtioMmio, Wiring};
use super::VmError;
use crate::config::{ConfigError, VmConfig};
use crate::devices::virtio::restore::RunningQueues;
use crate::devices::virtio::rng::persist::RngSnapshot;
use crate::devices::virtio::rng::{Rng, RngError};

pub(crate) type VirtioRng = VirtioMmio<Rng>;

impl VirtioRng {
    pub(crate) fn snapshot(&self) -> RngSnapshot {
        let (transport, device) = self.states(Rng::state);
        RngSnapshot { transport, device }
    }
}

/// Builds the config's entropy device (if any); `saved` restores its transport and queue.
pub(crate) fn build(
    config: &VmConfig,
    layout: &[MmioDevice],
    w: &mut Wiring<'_>,
    saved: Option<Option<&RngSnapshot>>,
) -> Result<Option<VirtioRng>, VmError> {
    if saved.is_some_and(|s| s.is_some() != config.rng.is_some()) {
        return Err(VmError::Snapshot(
            "the template's entropy device state does not match its configuration".into(),
        ));
    }
    let Some(cfg) = &config.rng else {
        return Ok(None);
    };
    let slot = slot_of(config, layout, Slot::Rng)
        .ok_or_else(|| VmError::Virtio("no virtio-mmio slot for the entropy device".into()))?;
    let device = Rng::new(&cfg.src).map_err(|e| match e {
        RngError::Source { .. } => VmError::from(ConfigError::new("rng.src", e.to_string())),
        e => VmError::Virtio(e.to_string()),
    })?;
    let saved = saved.flatten().map(|s| {
        (
            &s.transport,
            RunningQueues {
                acked_features: s.device.acked_features,
                queues: s.device.queue.as_slice(),
            },
        )
    });
    attach(device, slot, w, "virtio-rng", saved).map(Some)
}
