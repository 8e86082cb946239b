//! Wiring virtio-mmio devices into a VM: where each one sits (MMIO window and interrupt
//! line), how the guest learns about them (DSDT and kernel command line), and connecting
//! each to KVM (irqfd, ioeventfd on QueueNotify), the MMIO bus and the event loop.

use std::sync::{Arc, Mutex};

use kvm_ioctls::IoEventAddress;
use revenant_acpi::tables::MmioDevice;
use revenant_remote_mem::block::SlabBlockDevice;
use revenant_remote_mem::client::MemClient;

use super::VmError;
use crate::config::{ConfigError, DiskConfig, VmConfig};
use crate::devices::bus::Bus;
use crate::devices::resources::Resources;
use crate::devices::virtio::blk::io::{DiskBackend, RawFile, RemoteDisk};
use crate::devices::virtio::blk::persist::VirtioBlkSnapshot;
use crate::devices::virtio::blk::{Block, BlockOptions};
use crate::devices::virtio::mmio::MmioTransport;
use crate::devices::virtio::{VirtioDevice, MMIO_WINDOW_SIZE, QUEUE_NOTIFY_OFFSET, VIRTIO_GSIS};
use crate::event_loop::Subscriber;
use crate::vstate::memory::GuestMemoryMmap;
use crate::vstate::vm_fd::KvmVm;

/// Where the VM's virtio-mmio devices sit, disks first in config order, then the virtio-mem
/// device (when `memory.hotplug_size` asks for one, see [`mem_slot`]). A pure function of
/// the config, so the ACPI tables and the command line can be written before the devices
/// exist, and a restore finds each device where the guest last saw it.
pub fn virtio_layout(config: &VmConfig) -> Result<Vec<MmioDevice>, VmError> {
    let mut resources = Resources::new()?;
    let mut gsis = VIRTIO_GSIS;
    let mut layout = config
        .disks
        .iter()
        .enumerate()
        .map(|(i, _)| {
            let window = resources.allocate_mmio(MMIO_WINDOW_SIZE)?;
            // validate() allows at most one disk per GSI of the pool.
            let irq = gsis.next().ok_or_else(|| {
                ConfigError::new(&format!("disks[{i}]"), "no interrupt line left")
            })?;
            Ok(MmioDevice {
                base: window.start(),
                size: MMIO_WINDOW_SIZE,
                irq,
            })
        })
        .collect::<Result<Vec<_>, VmError>>()?;
    if config.memory.hotplug_region_size() > 0 {
        let window = resources.allocate_mmio(MMIO_WINDOW_SIZE)?;
        let irq = gsis.next().ok_or_else(|| {
            ConfigError::new(
                "memory.hotplug_size",
                "no interrupt line left for virtio-mem",
            )
        })?;
        layout.push(MmioDevice {
            base: window.start(),
            size: MMIO_WINDOW_SIZE,
            irq,
        });
    }
    Ok(layout)
}

/// The virtio-mem device's slot in `layout` (right after the disks), if it has one.
pub(crate) fn mem_slot<'a>(config: &VmConfig, layout: &'a [MmioDevice]) -> Option<&'a MmioDevice> {
    if config.memory.hotplug_region_size() == 0 {
        return None;
    }
    layout.get(config.disks.len())
}

/// `virtio_mmio.device=<size>@<base>:<irq>` for each device, for kernels that find virtio
/// devices on the command line rather than in the DSDT.
pub(crate) fn cmdline_devices(layout: &[MmioDevice]) -> String {
    layout
        .iter()
        .map(|d| {
            format!(
                " virtio_mmio.device={}K@{:#x}:{}",
                d.size >> 10,
                d.base,
                d.irq
            )
        })
        .collect()
}

/// A running virtio-blk device and its transport.
pub(crate) struct VirtioBlk {
    pub(crate) device: Arc<Mutex<Block>>,
    pub(crate) transport: Arc<Mutex<MmioTransport>>,
}

impl VirtioBlk {
    pub(crate) fn snapshot(&self) -> VirtioBlkSnapshot {
        let transport = self.transport.lock().unwrap_or_else(|p| p.into_inner());
        let device = self.device.lock().unwrap_or_else(|p| p.into_inner());
        VirtioBlkSnapshot {
            transport: transport.state(),
            device: device.state(),
        }
    }
}

/// Builds the config's disks at `layout`, puts their transports on `mmio` and their queue
/// handlers into `subscribers` (for the event loop).
pub(crate) fn build_disks(
    config: &VmConfig,
    layout: &[MmioDevice],
    kvm: &KvmVm,
    memory: &GuestMemoryMmap,
    mmio: &mut Bus,
    subscribers: &mut Vec<Subscriber>,
) -> Result<Vec<VirtioBlk>, VmError> {
    let mut disks = Vec::with_capacity(config.disks.len());
    for (i, (disk, slot)) in config.disks.iter().zip(layout).enumerate() {
        let backend = open_disk(i, disk)?;
        let options = BlockOptions {
            id: disk.id_or_default(i),
            read_only: disk.readonly,
            serial: disk.serial.clone(),
        };
        let device = Block::new(options, backend)
            .map_err(|e| VmError::Virtio(format!("virtio-blk queue eventfd: {e}")))?;
        let device = Arc::new(Mutex::new(device));
        let irq = super::devices::irqfd(kvm, slot.irq, "virtio-blk")?;
        let transport = MmioTransport::new(memory.clone(), device.clone(), irq)
            .map_err(|e| VmError::Virtio(format!("virtio-blk queue: {e}")))?;
        let transport = Arc::new(Mutex::new(transport));
        mmio.insert(slot.base, slot.size, transport.clone())?;
        register_notifiers(
            kvm,
            slot.base,
            &*device.lock().unwrap_or_else(|p| p.into_inner()),
        );
        subscribers.push(device.clone());
        disks.push(VirtioBlk { device, transport });
    }
    Ok(disks)
}

/// One KVM ioeventfd per queue on QueueNotify, matching the queue index, so a notification
/// never leaves the kernel. If KVM refuses, the write traps to the transport instead, which
/// signals the same eventfd: slower, not broken.
pub(super) fn register_notifiers(kvm: &KvmVm, base: u64, device: &dyn VirtioDevice) {
    let addr = IoEventAddress::Mmio(base + QUEUE_NOTIFY_OFFSET);
    for (q, evt) in device.queue_events().iter().enumerate() {
        if let Err(e) = kvm.fd.register_ioevent(evt, &addr, q as u32) {
            tracing::warn!(
                "no ioeventfd for virtio queue {q} at {base:#x} ({e}); notifications will trap"
            );
        }
    }
}

fn open_disk(i: usize, disk: &DiskConfig) -> Result<Box<dyn DiskBackend>, VmError> {
    if let Some(swap) = &disk.remote_swap {
        let field = format!("disks[{i}].remote_swap");
        let cfg = crate::remote_template::client_config(
            &swap.servers.join(","),
            &swap.token_file,
            swap.replicas,
            None,
        )
        .map_err(|e| ConfigError::new(&field, e.to_string()))?;
        let client = MemClient::connect(&cfg)
            .map_err(|e| ConfigError::new(&format!("{field}.servers"), e.to_string()))?;
        let device = SlabBlockDevice::new(Arc::new(client), swap.size);
        return Ok(Box::new(RemoteDisk::new(Arc::new(device))));
    }
    let path = disk.path.as_deref().unwrap_or(std::path::Path::new(""));
    let file = RawFile::open(path, disk.readonly).map_err(|e| {
        ConfigError::new(
            &format!("disks[{i}].path"),
            format!("cannot open {}: {e}", path.display()),
        )
    })?;
    Ok(Box::new(file))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_is_page_aligned_disjoint_and_stays_in_the_gsi_pool() {
        let config = VmConfig {
            disks: vec![DiskConfig::default(); 3],
            ..Default::default()
        };
        let layout = virtio_layout(&config).unwrap();
        assert_eq!(layout.len(), 3);
        for (i, d) in layout.iter().enumerate() {
            assert_eq!(d.base % 4096, 0);
            assert_eq!(d.irq, 5 + i as u32);
            if i > 0 {
                assert!(d.base >= layout[i - 1].base + layout[i - 1].size);
            }
        }
        let line = cmdline_devices(&layout[..1]);
        assert_eq!(
            line,
            format!(" virtio_mmio.device=4K@{:#x}:5", layout[0].base)
        );
    }
}
