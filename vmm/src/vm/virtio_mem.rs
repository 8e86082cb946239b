//! Wiring virtio-mem into a VM: the hot-pluggable region (mapped, and registered with KVM
//! together with the boot RAM), the device on its virtio-mmio slot, resizing, and what
//! `vm.info` reports about it.

use std::sync::{Arc, Mutex};

use revenant_acpi::tables::MmioDevice;
use serde::Serialize;

use super::{Vm, VmError};
use crate::config::{ConfigError, VmConfig};
use crate::devices::bus::Bus;
use crate::devices::virtio::mem::persist::VirtioMemSnapshot;
use crate::devices::virtio::mem::{VirtioMem, BLOCK_SIZE};
use crate::devices::virtio::mmio::MmioTransport;
use crate::devices::virtio::restore::RunningQueues;
use crate::event_loop::Subscriber;
use crate::vstate::hotplug_memory::{hotplug_base, HotplugRegion};
use crate::vstate::memory::GuestMemoryMmap;
use crate::vstate::vm_fd::KvmVm;

/// The hot-pluggable region `config` asks for (`memory.hotplug_size` in whole blocks), or
/// None. Where it goes is a function of the boot memory size only, so a restored VM finds
/// it where its guest saw it.
pub(crate) fn hotplug_region(config: &VmConfig) -> Result<Option<HotplugRegion>, VmError> {
    let size = config.memory.hotplug_region_size();
    if size == 0 {
        return Ok(None);
    }
    let region = HotplugRegion::new(hotplug_base(config.memory.ram_size()), size)
        .map_err(|e| ConfigError::new("memory.hotplug_size", e.to_string()))?;
    Ok(Some(region))
}

/// The memory KVM and the devices see: the boot RAM plus the hot-pluggable region.
pub(crate) fn guest_memory(
    boot: &GuestMemoryMmap,
    region: Option<&HotplugRegion>,
) -> Result<GuestMemoryMmap, VmError> {
    match region {
        Some(r) => r
            .attach(boot)
            .map_err(|e| VmError::Virtio(format!("virtio-mem region: {e}"))),
        None => Ok(boot.clone()),
    }
}

/// The running virtio-mem device and its transport.
pub(crate) struct VirtioMemHandle {
    pub(crate) device: Arc<Mutex<VirtioMem>>,
    pub(crate) transport: Arc<Mutex<MmioTransport>>,
}

impl VirtioMemHandle {
    fn device(&self) -> std::sync::MutexGuard<'_, VirtioMem> {
        self.device.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn snapshot(&self) -> VirtioMemSnapshot {
        let transport = self.transport.lock().unwrap_or_else(|p| p.into_inner());
        VirtioMemSnapshot {
            transport: transport.state(),
            device: self.device().state(),
        }
    }
}

/// Builds the device over `region` at `slot`; `memory` is what the transport reads queues
/// from (boot RAM and the region). `saved` restores the device, its transport and (if the
/// driver had started it) its queue.
#[allow(clippy::too_many_arguments)]
pub(crate) fn build(
    config: &VmConfig,
    slot: &MmioDevice,
    region: &HotplugRegion,
    saved: Option<&VirtioMemSnapshot>,
    kvm: &KvmVm,
    memory: &GuestMemoryMmap,
    mmio: &mut Bus,
    subscribers: &mut Vec<Subscriber>,
) -> Result<VirtioMemHandle, VmError> {
    let device = match saved {
        // TODO(issue 8): the plugged blocks' contents are not in templates (Vm::snapshot
        // refuses to save them), so a state with plugged blocks cannot come back whole.
        Some(s) if s.device.plugged.iter().any(|&w| w != 0) => {
            return Err(VmError::Snapshot(
                "the template's virtio-mem device has plugged blocks, whose contents templates do not hold".into(),
            ))
        }
        Some(s) => VirtioMem::from_state(region.clone(), &s.device)
            .map_err(|e| VmError::Snapshot(format!("virtio-mem: {e}")))?,
        None => VirtioMem::new(region.clone(), config.memory.requested_hotplug())
            .map_err(|e| VmError::Virtio(format!("virtio-mem: {e}")))?,
    };
    let device = Arc::new(Mutex::new(device));
    let irq = super::devices::irqfd(kvm, slot.irq, "virtio-mem")?;
    let saved = saved.map(|s| {
        (
            &s.transport,
            RunningQueues {
                acked_features: s.device.acked_features,
                queues: s.device.queue.as_slice(),
            },
        )
    });
    let transport =
        super::virtio::new_transport(memory, device.clone(), irq, slot, "virtio-mem", saved)?;
    let transport = Arc::new(Mutex::new(transport));
    mmio.insert(slot.base, slot.size, transport.clone())?;
    super::virtio::register_notifiers(
        kvm,
        slot.base,
        &*device.lock().unwrap_or_else(|p| p.into_inner()),
    );
    subscribers.push(device.clone());
    Ok(VirtioMemHandle { device, transport })
}

/// `vm.info`'s `memory_hotplug` (a Revenant extension): what the host asked for and what
/// the guest has plugged, in bytes on top of `memory.size`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct MemoryHotplugInfo {
    pub block_size: u64,
    pub region_size: u64,
    pub requested_size: u64,
    pub plugged_size: u64,
}

impl MemoryHotplugInfo {
    /// Before boot (or after shutdown): what the config asks for, nothing plugged.
    pub fn from_config(config: &VmConfig) -> Option<Self> {
        let region_size = config.memory.hotplug_region_size();
        (region_size > 0).then(|| MemoryHotplugInfo {
            block_size: BLOCK_SIZE,
            region_size,
            requested_size: config.memory.requested_hotplug(),
            plugged_size: 0,
        })
    }
}

impl Vm {
    /// Asks the guest to have `requested` bytes plugged on top of its boot memory (already
    /// validated against the config). The same size again changes nothing.
    pub fn resize_memory(&self, requested: u64) -> Result<(), VmError> {
        let Some(mem) = &self.virtio_mem else {
            if requested == 0 {
                return Ok(());
            }
            return Err(ConfigError::new("desired_ram", "this VM has no virtio-mem device").into());
        };
        mem.device()
            .set_requested_size(requested)
            .map(|changed| {
                if changed {
                    tracing::info!("virtio-mem: {requested} bytes requested on top of boot memory");
                }
            })
            .map_err(|e| ConfigError::new("desired_ram", e.to_string()).into())
    }

    /// The virtio-mem device's sizes, when the VM has one.
    pub fn memory_hotplug(&self) -> Option<MemoryHotplugInfo> {
        self.virtio_mem.as_ref().map(|m| {
            let d = m.device();
            MemoryHotplugInfo {
                block_size: BLOCK_SIZE,
                region_size: d.region_size(),
                requested_size: d.requested_size(),
                plugged_size: d.plugged_size(),
            }
        })
    }
}
