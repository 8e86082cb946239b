//! Wiring virtio-mmio devices into a VM: where each one sits (MMIO window and interrupt
//! line), how the guest learns about them (DSDT and kernel command line), and connecting
//! each to KVM (irqfd, ioeventfd on QueueNotify), the MMIO bus and the event loop.

use std::sync::{Arc, Mutex};

use event_manager::MutEventSubscriber;
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
use crate::devices::virtio::persist::MmioTransportState;
use crate::devices::virtio::restore::RunningQueues;
use crate::devices::virtio::vsock::device::VsockError;
use crate::devices::virtio::vsock::persist::VirtioVsockSnapshot;
use crate::devices::virtio::vsock::Vsock;
use crate::devices::virtio::{VirtioDevice, MMIO_WINDOW_SIZE, QUEUE_NOTIFY_OFFSET, VIRTIO_GSIS};
use crate::event_loop::Subscriber;
use crate::vstate::memory::GuestMemoryMmap;
use crate::vstate::vm_fd::KvmVm;

/// Which device a virtio-mmio slot holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Slot {
    Disk(usize),
    Vsock,
    /// virtio-mem, when `memory.hotplug_size` asks for one.
    Mem,
    Balloon,
    Rng,
    Net(usize),
}

/// The devices `config` asks for, in slot order, each with the config field it comes from.
/// New kinds go at the end, so existing templates keep their layout.
fn slots(config: &VmConfig) -> Vec<(Slot, String)> {
    let mut out: Vec<(Slot, String)> = (0..config.disks.len())
        .map(|i| (Slot::Disk(i), format!("disks[{i}]")))
        .collect();
    if config.vsock.is_some() {
        out.push((Slot::Vsock, "vsock".into()));
    }
    if config.memory.hotplug_region_size() > 0 {
        out.push((Slot::Mem, "memory.hotplug_size".into()));
    }
    if config.balloon.is_some() {
        out.push((Slot::Balloon, "balloon".into()));
    }
    if config.rng.is_some() {
        out.push((Slot::Rng, "rng".into()));
    }
    out.extend((0..config.net.len()).map(|i| (Slot::Net(i), format!("net[{i}]"))));
    out
}

/// Where `slot`'s device sits in `layout` (from [`virtio_layout`] of the same config).
pub(crate) fn slot_of<'a>(
    config: &VmConfig,
    layout: &'a [MmioDevice],
    slot: Slot,
) -> Option<&'a MmioDevice> {
    let i = slots(config).iter().position(|(s, _)| *s == slot)?;
    layout.get(i)
}

/// Where the VM's virtio-mmio devices sit: disks first in config order, then vsock,
/// virtio-mem, the balloon, the entropy device and the network cards (see [`slots`]). A pure function of the
/// config, so the ACPI tables and the command line can be written before the devices
/// exist, and a restore finds each device where the guest last saw it.
pub fn virtio_layout(config: &VmConfig) -> Result<Vec<MmioDevice>, VmError> {
    let mut resources = Resources::new()?;
    let mut gsis = VIRTIO_GSIS;
    slots(config)
        .into_iter()
        .map(|(_, field)| {
            let window = resources.allocate_mmio(MMIO_WINDOW_SIZE)?;
            // validate() allows at most one device per GSI of the pool.
            let irq = gsis
                .next()
                .ok_or_else(|| ConfigError::new(&field, "no interrupt line left"))?;
            Ok(MmioDevice {
                base: window.start(),
                size: MMIO_WINDOW_SIZE,
                irq,
            })
        })
        .collect()
}

/// The virtio-mem device's slot in `layout`, if it has one.
pub(crate) fn mem_slot<'a>(config: &VmConfig, layout: &'a [MmioDevice]) -> Option<&'a MmioDevice> {
    slot_of(config, layout, Slot::Mem)
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

/// A running virtio device and its transport.
pub(crate) struct VirtioMmio<D> {
    pub(crate) device: Arc<Mutex<D>>,
    pub(crate) transport: Arc<Mutex<MmioTransport>>,
}

pub(crate) type VirtioBlk = VirtioMmio<Block>;
pub(crate) type VirtioVsock = VirtioMmio<Vsock>;

impl<D> VirtioMmio<D> {
    /// The transport's and the device's state, taken under both locks.
    pub(super) fn states<S>(&self, device_state: impl FnOnce(&D) -> S) -> (MmioTransportState, S) {
        let transport = self.transport.lock().unwrap_or_else(|p| p.into_inner());
        let device = self.device.lock().unwrap_or_else(|p| p.into_inner());
        (transport.state(), device_state(&device))
    }
}

impl VirtioBlk {
    pub(crate) fn snapshot(&self) -> VirtioBlkSnapshot {
        let (transport, device) = self.states(Block::state);
        VirtioBlkSnapshot { transport, device }
    }
}

impl VirtioVsock {
    pub(crate) fn snapshot(&self) -> VirtioVsockSnapshot {
        let (transport, device) = self.states(Vsock::state);
        VirtioVsockSnapshot { transport, device }
    }
}

impl super::Vm {
    /// The last step of a restore, once the vCPUs' state is loaded (loading a local APIC
    /// drops an interrupt delivered before it): raises again the interrupt of every
    /// transport with one pending, and tells a running vsock driver that its connections
    /// are gone (VIRTIO_VSOCK_EVENT_TRANSPORT_RESET, as Firecracker does after a snapshot
    /// restore), so the guest drops them and its services reconnect.
    pub(crate) fn resume_restored_virtio(&self) {
        let transports = self
            .virtio_blk
            .iter()
            .map(|d| &d.transport)
            .chain(self.virtio_vsock.iter().map(|d| &d.transport))
            .chain(self.virtio_mem.iter().map(|m| &m.transport))
            .chain(self.virtio_balloon.iter().map(|b| &b.transport))
            .chain(self.virtio_rng.iter().map(|r| &r.transport))
            .chain(self.virtio_net.iter().map(|n| &n.transport));
        for t in transports {
            t.lock()
                .unwrap_or_else(|p| p.into_inner())
                .interrupt()
                .retrigger();
        }
        if let Some(vsock) = &self.virtio_vsock {
            let mut device = vsock.device.lock().unwrap_or_else(|p| p.into_inner());
            if device.is_active() && !device.send_transport_reset() {
                tracing::warn!(
                    "virtio-vsock: no event buffer for TRANSPORT_RESET; the guest keeps its stale connections"
                );
            }
        }
    }
}

/// What wiring a device into the VM needs: KVM (irqfd, ioeventfds), guest memory, the
/// MMIO bus and the event loop's subscriber list.
pub(crate) struct Wiring<'a> {
    pub(crate) kvm: &'a KvmVm,
    pub(crate) memory: &'a GuestMemoryMmap,
    pub(crate) mmio: &'a mut Bus,
    pub(crate) subscribers: &'a mut Vec<Subscriber>,
}

/// A device's saved transport and its own record of its running queues, for a restore.
pub(crate) type SavedTransport<'a> = (&'a MmioTransportState, RunningQueues<'a>);

/// Puts `device` on the MMIO bus at `slot` behind a transport raising `slot.irq`, with
/// ioeventfds on its queues and its handler on the event loop. With `saved` the transport
/// is rebuilt from a snapshot (and a device the driver had started is started again).
pub(super) fn attach<D>(
    device: D,
    slot: &MmioDevice,
    w: &mut Wiring<'_>,
    what: &'static str,
    saved: Option<SavedTransport<'_>>,
) -> Result<VirtioMmio<D>, VmError>
where
    D: VirtioDevice + MutEventSubscriber + 'static,
{
    let device = Arc::new(Mutex::new(device));
    let irq = super::devices::irqfd(w.kvm, slot.irq, what)?;
    let transport = new_transport(w.memory, device.clone(), irq, slot, what, saved)?;
    let transport = Arc::new(Mutex::new(transport));
    w.mmio.insert(slot.base, slot.size, transport.clone())?;
    register_notifiers(
        w.kvm,
        slot.base,
        &*device.lock().unwrap_or_else(|p| p.into_inner()),
    );
    w.subscribers.push(device.clone());
    Ok(VirtioMmio { device, transport })
}

/// A fresh transport, or one restored from `saved` (an inconsistent state is the
/// template's fault: a snapshot error, which the API reports against `source_url`).
pub(super) fn new_transport(
    memory: &GuestMemoryMmap,
    device: Arc<Mutex<dyn VirtioDevice>>,
    irq: vmm_sys_util::eventfd::EventFd,
    slot: &MmioDevice,
    what: &'static str,
    saved: Option<SavedTransport<'_>>,
) -> Result<MmioTransport, VmError> {
    match saved {
        None => MmioTransport::new(memory.clone(), device, irq)
            .map_err(|e| VmError::Virtio(format!("{what} queue: {e}"))),
        Some((state, running)) => {
            MmioTransport::restore(memory.clone(), device, irq, state, running).map_err(|e| {
                VmError::Snapshot(format!(
                    "the saved {what} device at {:#x} cannot be restored: {e}",
                    slot.base
                ))
            })
        }
    }
}

/// Builds the config's disks at the first slots of `layout`; `saved` (a snapshot's, one
/// per disk in config order) restores their transports and queues.
pub(crate) fn build_disks(
    config: &VmConfig,
    layout: &[MmioDevice],
    w: &mut Wiring<'_>,
    saved: Option<&[VirtioBlkSnapshot]>,
) -> Result<Vec<VirtioBlk>, VmError> {
    if let Some(saved) = saved.filter(|s| s.len() != config.disks.len()) {
        return Err(VmError::Snapshot(format!(
            "the template saved {} virtio-blk devices but its configuration has {} disks",
            saved.len(),
            config.disks.len()
        )));
    }
    let mut disks = Vec::with_capacity(config.disks.len());
    for (i, (disk, slot)) in config.disks.iter().zip(layout).enumerate() {
        // TODO(issue 8): a remote swap device's slabs are not carried over, so a clone's
        // guest would find its swapped-out pages gone.
        if saved.is_some() && disk.remote_swap.is_some() {
            return Err(VmError::Snapshot(format!(
                "disks[{i}] is a remote swap device, whose contents templates do not carry yet"
            )));
        }
        let backend = open_disk(i, disk)?;
        let options = BlockOptions {
            id: disk.id_or_default(i),
            read_only: disk.readonly,
            serial: disk.serial.clone(),
        };
        let saved = saved.and_then(|s| s.get(i));
        if let Some(s) = saved.filter(|s| s.device.id != options.id) {
            return Err(VmError::Snapshot(format!(
                "the template saved virtio-blk device {:?} where its configuration has disks[{i}] {:?}",
                s.device.id, options.id
            )));
        }
        let device = Block::new(options, backend)
            .map_err(|e| VmError::Virtio(format!("virtio-blk queue eventfd: {e}")))?;
        let saved = saved.map(|s| {
            (
                &s.transport,
                RunningQueues {
                    acked_features: s.device.acked_features,
                    queues: s.device.queue.as_slice(),
                },
            )
        });
        disks.push(attach(device, slot, w, "virtio-blk", saved)?);
    }
    Ok(disks)
}

/// Builds the config's vsock device at its slot (the one after the disks), listening on
/// its socket. With `saved` its transport and queues are restored; its connections are
/// not (they never survive a snapshot, see `vsock::persist`): once the vCPUs' state is
/// loaded, `Vm::restore` tells the guest with a TRANSPORT_RESET event.
///
/// The socket path comes from the config, which for a clone is the template's unless
/// `vm.restore` gave the clone its own (`vsock`, see [`crate::clone_identity`]). While
/// another process (the template's VMM, another clone) listens there, the restore is
/// refused naming `vsock.socket`.
pub(crate) fn build_vsock(
    config: &VmConfig,
    layout: &[MmioDevice],
    w: &mut Wiring<'_>,
    saved: Option<Option<&VirtioVsockSnapshot>>,
) -> Result<Option<VirtioVsock>, VmError> {
    if let Some(saved) = saved {
        if saved.is_some() != config.vsock.is_some() {
            return Err(VmError::Snapshot(
                "the template's vsock device state does not match its configuration".into(),
            ));
        }
    }
    let Some(vsock) = &config.vsock else {
        return Ok(None);
    };
    let slot = slot_of(config, layout, Slot::Vsock)
        .ok_or_else(|| VmError::Virtio("no virtio-mmio slot for vsock".into()))?;
    let restoring = saved.is_some();
    let device = Vsock::new(vsock.cid, &vsock.socket).map_err(|e| match e {
        VsockError::Muxer(e) if restoring => VmError::from(ConfigError::new(
            "vsock.socket",
            format!(
                "{e}: another VMM (the template's, or another clone) still listens there; give each clone its own with vm.restore's vsock {{cid, socket}}"
            ),
        )),
        VsockError::Muxer(e) => VmError::from(ConfigError::new("vsock.socket", e.to_string())),
        e => VmError::Virtio(e.to_string()),
    })?;
    let saved = saved.flatten().map(|s| {
        (
            &s.transport,
            RunningQueues {
                acked_features: s.device.acked_features,
                queues: &s.device.queues,
            },
        )
    });
    attach(device, slot, w, "virtio-vsock", saved).map(Some)
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

pub(super) fn open_disk(i: usize, disk: &DiskConfig) -> Result<Box<dyn DiskBackend>, VmError> {
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

    #[test]
    fn virtio_mem_comes_after_the_disks_and_vsock() {
        let mut config = VmConfig {
            disks: vec![DiskConfig::default(); 2],
            vsock: Some(crate::config::VsockConfig {
                cid: 3,
                socket: "/tmp/v.sock".into(),
            }),
            ..Default::default()
        };
        config.memory.hotplug_size = 256 << 20;
        let layout = virtio_layout(&config).unwrap();
        assert_eq!(layout.len(), 4);
        assert_eq!(mem_slot(&config, &layout), Some(&layout[3]));
        config.vsock = None;
        let layout = virtio_layout(&config).unwrap();
        assert_eq!(mem_slot(&config, &layout), Some(&layout[2]));
        config.memory.hotplug_size = 0;
        assert_eq!(mem_slot(&config, &virtio_layout(&config).unwrap()), None);
    }

    #[test]
    fn vsock_comes_after_the_disks() {
        let vsock = Some(crate::config::VsockConfig {
            cid: 3,
            socket: "/tmp/v.sock".into(),
        });
        let with = |disks: usize| VmConfig {
            disks: vec![DiskConfig::default(); disks],
            vsock: vsock.clone(),
            ..Default::default()
        };
        let only_vsock = virtio_layout(&with(0)).unwrap();
        assert_eq!(only_vsock.len(), 1);
        assert_eq!(only_vsock[0].irq, 5);
        let layout = virtio_layout(&with(2)).unwrap();
        let disks_only = virtio_layout(&VmConfig {
            disks: vec![DiskConfig::default(); 2],
            ..Default::default()
        })
        .unwrap();
        assert_eq!(layout[..2], disks_only[..], "disks keep their slots");
        assert_eq!(layout[2].irq, 7);
        assert!(layout[2].base >= layout[1].base + layout[1].size);
        assert_eq!(virtio_layout(&with(2)).unwrap(), layout, "a pure function");
        let err = virtio_layout(&with(18)).err().unwrap();
        assert!(err.to_string().contains("vsock"), "{err}");
    }
}
