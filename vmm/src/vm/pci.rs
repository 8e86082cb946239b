//! The VM's PCI root bus and the virtio devices hot-plugged onto it (kata's `vm.add-disk`
//! and `vm.add-net` after boot). Boot-time devices stay on virtio-mmio; a hot-plugged one
//! gets a slot on bus 0, a virtio-pci transport with one MSI-X vector per queue (a KVM GSI
//! and irqfd each), KVM ioeventfds on its notify addresses (moved whenever the guest moves
//! BAR 0), a place on the device event loop, and is announced through the PCI hot-plug
//! controller and the GED. Removal is the guest's: the VMM asks (PCID), the guest's `_EJ0`
//! writes B0EJ, and only then is the device taken apart ([`PciBus::eject`]).
//!
//! INTx: there is no free IOAPIC pin (virtio-mmio and the GED take 5..=23), so the
//! transports get an eventfd nobody listens to; Linux's virtio-pci uses MSI-X, which KVM
//! always offers.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use event_manager::{MutEventSubscriber, SubscriberId};
use kvm_ioctls::{IoEventAddress, NoDatamatch, VmFd};
use vmm_sys_util::eventfd::EventFd;

use super::VmError;
use crate::devices::bus::Bus;
use crate::devices::pci::hotplug::{PciHotplug, PciHotplugController};
use crate::devices::pci::msi_routes::{KvmMsiVectors, MsiRouting};
use crate::devices::pci::{BarEvent, PciRoot, BAR_APERTURE_START, ECAM_BASE, ECAM_SIZE};
use crate::devices::virtio::pci::{
    msix_vector_count, notify_address, VirtioPciTransport, BAR_INDEX, BAR_SIZE,
};
use crate::devices::virtio::VirtioDevice;
use crate::event_loop::EventLoop;
use crate::vstate::memory::GuestMemoryMmap;
use revenant_acpi::platform::{
    PCI_CONFIG_IO_LEN, PCI_CONFIG_IO_PORT, PCI_HOTPLUG_MMIO_BASE, PCI_HOTPLUG_MMIO_LEN,
};

/// Where a slot's BAR 0 is placed before the guest sees the device (firmware-style; the
/// guest may move it): one BAR-sized window per slot from the aperture's start.
fn bar_base(slot: u8) -> u64 {
    BAR_APERTURE_START + u64::from(slot) * BAR_SIZE
}

/// A device plugged into a slot.
pub(crate) struct PciSlotDevice {
    pub(crate) id: String,
    /// "virtio-blk", "virtio-net".
    pub(crate) kind: &'static str,
    msi: Arc<KvmMsiVectors>,
    subscriber: SubscriberId,
    /// The host asked for it to go (the guest has not ejected it yet).
    pub(crate) unplugging: bool,
}

struct Inner {
    root: PciRoot,
    hotplug: PciHotplug,
    routing: Arc<MsiRouting>,
    vm_fd: Arc<VmFd>,
    memory: GuestMemoryMmap,
    event_loop: Arc<EventLoop>,
    /// Each slot's queue notification eventfds, for the BAR observer.
    notifiers: Mutex<HashMap<u8, Vec<EventFd>>>,
    devices: Mutex<BTreeMap<u8, PciSlotDevice>>,
}

/// The VM's PCI bus (cloning gives another handle on it).
#[derive(Clone)]
pub(crate) struct PciBus(Arc<Inner>);

impl PciBus {
    /// A bus with its host bridge, its configuration ports on `pio`, and ECAM, the BAR
    /// window and the hot-plug controller on `mmio`.
    pub(crate) fn new(
        vm_fd: Arc<VmFd>,
        memory: GuestMemoryMmap,
        event_loop: Arc<EventLoop>,
        pio: &mut Bus,
        mmio: &mut Bus,
    ) -> Result<PciBus, VmError> {
        let root = PciRoot::new();
        let routing = Arc::new(MsiRouting::new(vm_fd.clone()));
        let bus = PciBus(Arc::new(Inner {
            root: root.clone(),
            hotplug: PciHotplug::default(),
            routing,
            vm_fd,
            memory,
            event_loop,
            notifiers: Mutex::default(),
            devices: Mutex::default(),
        }));
        let observer_bus = Arc::downgrade(&bus.0);
        root.set_bar_observer(Arc::new(move |event| {
            if let Some(inner) = observer_bus.upgrade() {
                PciBus(inner).on_bar_event(event);
            }
        }));
        pio.insert(
            u64::from(PCI_CONFIG_IO_PORT),
            u64::from(PCI_CONFIG_IO_LEN),
            Arc::new(Mutex::new(root.config_io())),
        )?;
        mmio.insert(ECAM_BASE, ECAM_SIZE, Arc::new(Mutex::new(root.ecam())))?;
        mmio.insert(
            BAR_APERTURE_START,
            crate::devices::pci::BAR_APERTURE_SIZE,
            Arc::new(Mutex::new(root.bar_window())),
        )?;
        let eject_bus = Arc::downgrade(&bus.0);
        let controller: PciHotplugController = bus.0.hotplug.controller(Arc::new(move |slot| {
            if let Some(inner) = eject_bus.upgrade() {
                PciBus(inner).eject(slot);
            }
        }));
        mmio.insert(
            PCI_HOTPLUG_MMIO_BASE,
            PCI_HOTPLUG_MMIO_LEN,
            Arc::new(Mutex::new(controller)),
        )?;
        Ok(bus)
    }

    fn devices(&self) -> MutexGuard<'_, BTreeMap<u8, PciSlotDevice>> {
        self.0.devices.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn notifiers(&self) -> MutexGuard<'_, HashMap<u8, Vec<EventFd>>> {
        self.0.notifiers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Plugs `device` into the lowest free slot behind a virtio-pci transport and marks
    /// the slot plugged for the guest (the caller raises the GED event). Returns the slot.
    pub(crate) fn plug<D>(&self, id: String, kind: &'static str, device: D) -> Result<u8, VmError>
    where
        D: VirtioDevice + MutEventSubscriber + 'static,
    {
        let fail = |e: String| VmError::Virtio(format!("{kind} {id}: {e}"));
        let (queues, evts) = {
            let evts = device
                .queue_events()
                .iter()
                .map(EventFd::try_clone)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| fail(format!("queue eventfd: {e}")))?;
            (device.queue_max_sizes().len(), evts)
        };
        let device = Arc::new(Mutex::new(device));
        let msi = Arc::new(
            KvmMsiVectors::new(
                &self.0.vm_fd,
                self.0.routing.clone(),
                msix_vector_count(queues),
            )
            .map_err(|e| fail(e.to_string()))?,
        );
        let intx = EventFd::new(libc::EFD_NONBLOCK).map_err(|e| fail(e.to_string()))?;
        let undo_msi = |msi: &KvmMsiVectors| {
            if let Err(e) = msi.unregister(&self.0.vm_fd) {
                tracing::warn!("{kind} {id}: MSI vectors not released: {e}");
            }
        };
        let mut transport =
            match VirtioPciTransport::new(self.0.memory.clone(), device.clone(), intx, msi.clone())
            {
                Ok(t) => t,
                Err(e) => {
                    undo_msi(&msi);
                    return Err(fail(e.to_string()));
                }
            };
        let free = (1..crate::devices::pci::SLOTS).find(|s| self.0.root.device(*s).is_none());
        let Some(slot) = free else {
            undo_msi(&msi);
            return Err(fail("no free PCI slot on bus 0".into()));
        };
        if let Err(e) = transport.program_bar(bar_base(slot)) {
            undo_msi(&msi);
            return Err(fail(e.to_string()));
        }
        self.notifiers().insert(slot, evts);
        let subscriber = match self.0.event_loop.add(device.clone()) {
            Ok(s) => s,
            Err(e) => {
                self.notifiers().remove(&slot);
                undo_msi(&msi);
                return Err(fail(e.to_string()));
            }
        };
        if let Err(e) = self.0.root.add(Some(slot), Arc::new(Mutex::new(transport))) {
            let _ = self.0.event_loop.remove(subscriber);
            self.notifiers().remove(&slot);
            undo_msi(&msi);
            return Err(fail(e.to_string()));
        }
        self.devices().insert(
            slot,
            PciSlotDevice {
                id,
                kind,
                msi,
                subscriber,
                unplugging: false,
            },
        );
        self.0.hotplug.plugged(slot);
        Ok(slot)
    }

    /// The slot holding the device with `id`.
    pub(crate) fn slot_of(&self, id: &str) -> Option<u8> {
        self.devices()
            .iter()
            .find(|(_, d)| d.id == id)
            .map(|(s, _)| *s)
    }

    /// Asks the guest to eject the device with `id` (the caller raises the GED event);
    /// the device goes when the guest ejects it. Returns its slot, or None for no such id.
    pub(crate) fn request_unplug(&self, id: &str) -> Option<u8> {
        let mut devices = self.devices();
        let (slot, d) = devices.iter_mut().find(|(_, d)| d.id == id)?;
        d.unplugging = true;
        self.0.hotplug.unplug_requested(*slot);
        Some(*slot)
    }

    /// The guest ejected `slot` (B0EJ): the device leaves the bus, the event loop and KVM.
    pub(crate) fn eject(&self, slot: u8) {
        let Some(d) = self.devices().remove(&slot) else {
            tracing::debug!("PCI eject of empty slot {slot} ignored");
            return;
        };
        // Unmapping the BAR (observer) unregisters the ioeventfds first.
        if let Err(e) = self.0.root.remove(slot) {
            tracing::warn!("PCI eject of slot {slot}: {e}");
        }
        self.notifiers().remove(&slot);
        if let Err(e) = self.0.event_loop.remove(d.subscriber) {
            tracing::warn!("{} {}: still on the event loop: {e}", d.kind, d.id);
        }
        if let Err(e) = d.msi.unregister(&self.0.vm_fd) {
            tracing::warn!("{} {}: MSI vectors not released: {e}", d.kind, d.id);
        }
        tracing::info!("{} {} ejected from {}", d.kind, d.id, PciRoot::bdf(slot));
    }

    /// Calls `f` with every plugged device, in slot order.
    pub(crate) fn for_each(&self, mut f: impl FnMut(u8, &PciSlotDevice)) {
        for (slot, d) in self.devices().iter() {
            f(*slot, d);
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.devices().is_empty()
    }

    /// Keeps the KVM ioeventfds on a device's notify addresses where BAR 0 is routed.
    fn on_bar_event(&self, event: BarEvent) {
        let (slot, range, map) = match event {
            BarEvent::Mapped { slot, range } => (slot, range, true),
            BarEvent::Unmapped { slot, range } => (slot, range, false),
        };
        if range.bar != BAR_INDEX {
            return;
        }
        let notifiers = self.notifiers();
        let Some(evts) = notifiers.get(&slot) else {
            return;
        };
        for (q, evt) in evts.iter().enumerate() {
            let Ok(q16) = u16::try_from(q) else {
                break;
            };
            let addr = IoEventAddress::Mmio(notify_address(range.base, q16));
            let result = if map {
                self.0.vm_fd.register_ioevent(evt, &addr, NoDatamatch)
            } else {
                self.0.vm_fd.unregister_ioevent(evt, &addr, NoDatamatch)
            };
            if let Err(e) = result {
                // Notifications still reach the transport through the BAR, just slower.
                tracing::warn!(
                    "PCI {}: ioeventfd for queue {q} at {:#x} not {}: {e}",
                    PciRoot::bdf(slot),
                    range.base,
                    if map { "registered" } else { "removed" }
                );
            }
        }
    }
}
