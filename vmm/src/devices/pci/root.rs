//! Bus 0's slots and the window every device's BARs live in.
//!
//! The vCPU buses (`crate::devices::bus::Bus`) are cloned into the vCPU threads, so a device
//! plugged in later could not be added to them. Instead the VM puts three fixed devices on
//! them once ([`PciRoot::config_io`], [`PciRoot::ecam`], [`PciRoot::bar_window`]), and all
//! three look up the slots here on each access: hot-plug only ever changes this table.
//!
//! Locking: a device's lock may be taken before the root's (to publish the BARs it decodes
//! after a configuration write, atomically with the write), never the other way round; an
//! access looks the device up under the root's lock, drops it, then locks the device.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use super::config_access::{PciConfigIo, PciConfigMmio};
use super::host_bridge::HostBridge;
use super::{
    valid_config_access, BarRange, PciDevice, PciError, SharedPciDevice, BAR_APERTURE_SIZE,
    BAR_APERTURE_START, HOST_BRIDGE_SLOT, SLOTS,
};
use crate::devices::bus::BusDevice;

/// Configuration offsets whose writes can change what a device decodes: the command
/// register and the six BARs.
const DECODE_REGISTERS_END: u16 = 0x28;

/// A change in what the BAR window routes, for whoever keeps KVM state tied to BAR
/// addresses (ioeventfds on virtio-pci notify addresses).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BarEvent {
    /// `slot`'s BAR is now reachable at `range`.
    Mapped { slot: u8, range: BarRange },
    /// `slot`'s BAR is no longer reachable at `range` (moved, decoding off, unplugged).
    Unmapped { slot: u8, range: BarRange },
}

pub type BarObserver = Arc<dyn Fn(BarEvent) + Send + Sync>;

struct Slots {
    devices: Vec<Option<SharedPciDevice>>,
    /// What each slot's BARs are routed at now.
    mapped: Vec<Vec<BarRange>>,
    /// Routed ranges by base: (size, slot, BAR). Never overlapping.
    windows: BTreeMap<u64, (u64, u8, u8)>,
    observer: Option<BarObserver>,
}

impl Slots {
    fn unmap(&mut self, slot: u8, events: &mut Vec<BarEvent>) {
        for range in std::mem::take(&mut self.mapped[usize::from(slot)]) {
            self.windows.remove(&range.base);
            events.push(BarEvent::Unmapped { slot, range });
        }
    }

    /// Whether `r` lies in the aperture and overlaps no other routed range.
    fn fits(&self, r: &BarRange) -> bool {
        let Some(end) = r.base.checked_add(r.size) else {
            return false;
        };
        let in_aperture =
            r.base >= BAR_APERTURE_START && end <= BAR_APERTURE_START + BAR_APERTURE_SIZE;
        let overlaps = self
            .windows
            .range(..end)
            .next_back()
            .is_some_and(|(b, (len, _, _))| b + len > r.base);
        in_aperture && !overlaps
    }

    /// Routes `slot`'s BARs at `bars` from now on.
    fn remap(&mut self, slot: u8, bars: Vec<BarRange>, events: &mut Vec<BarEvent>) {
        if self.mapped[usize::from(slot)] == bars {
            return;
        }
        self.unmap(slot, events);
        let mut mapped = Vec::new();
        for range in bars {
            if !self.fits(&range) {
                tracing::warn!(
                    "PCI {}: BAR {} at {:#x}+{:#x} is outside the aperture or overlaps another; not routed",
                    PciRoot::bdf(slot),
                    range.bar,
                    range.base,
                    range.size
                );
                continue;
            }
            self.windows
                .insert(range.base, (range.size, slot, range.bar));
            events.push(BarEvent::Mapped { slot, range });
            mapped.push(range);
        }
        self.mapped[usize::from(slot)] = mapped;
    }
}

/// Bus 0 of segment 0. Cloning gives another handle on the same bus.
#[derive(Clone)]
pub struct PciRoot {
    slots: Arc<Mutex<Slots>>,
}

impl Default for PciRoot {
    fn default() -> Self {
        Self::new()
    }
}

impl PciRoot {
    /// A bus with the host bridge in slot 0 and every other slot empty.
    pub fn new() -> Self {
        let mut devices: Vec<Option<SharedPciDevice>> = vec![None; usize::from(SLOTS)];
        devices[usize::from(HOST_BRIDGE_SLOT)] = Some(Arc::new(Mutex::new(HostBridge::new())));
        PciRoot {
            slots: Arc::new(Mutex::new(Slots {
                devices,
                mapped: vec![Vec::new(); usize::from(SLOTS)],
                windows: BTreeMap::new(),
                observer: None,
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Slots> {
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The address Linux and kata name a device in `slot` by: `0000:00:DD.0`.
    pub fn bdf(slot: u8) -> String {
        format!("0000:00:{slot:02x}.0")
    }

    /// Calls `observer` on every change of what the BAR window routes.
    pub fn set_bar_observer(&self, observer: BarObserver) {
        self.lock().observer = Some(observer);
    }

    /// Plugs `device` into `slot`, or the lowest free slot when `None`; returns the slot.
    pub fn add(&self, slot: Option<u8>, device: SharedPciDevice) -> Result<u8, PciError> {
        let slot = {
            let mut s = self.lock();
            let slot = match slot {
                Some(n) if n == HOST_BRIDGE_SLOT || n >= SLOTS => {
                    return Err(PciError::InvalidSlot(n))
                }
                Some(n) if s.devices[usize::from(n)].is_some() => {
                    return Err(PciError::SlotInUse(n))
                }
                Some(n) => n,
                None => (1..SLOTS)
                    .find(|&n| s.devices[usize::from(n)].is_none())
                    .ok_or(PciError::NoFreeSlot)?,
            };
            s.devices[usize::from(slot)] = Some(device.clone());
            slot
        };
        // A device may come with its BARs already programmed and decoding.
        self.refresh(slot, &device);
        Ok(slot)
    }

    /// Unplugs the device in `slot` and returns it; its BARs stop being routed at once.
    pub fn remove(&self, slot: u8) -> Result<SharedPciDevice, PciError> {
        if slot == HOST_BRIDGE_SLOT || slot >= SLOTS {
            return Err(PciError::InvalidSlot(slot));
        }
        let mut events = Vec::new();
        let (device, observer) = {
            let mut s = self.lock();
            let device = s.devices[usize::from(slot)]
                .take()
                .ok_or(PciError::SlotEmpty(slot))?;
            s.unmap(slot, &mut events);
            (device, s.observer.clone())
        };
        notify(observer, events);
        Ok(device)
    }

    /// The device in `slot`, if any.
    pub fn device(&self, slot: u8) -> Option<SharedPciDevice> {
        self.lock()
            .devices
            .get(usize::from(slot))
            .cloned()
            .flatten()
    }

    /// Slots holding a device, the host bridge's included.
    pub fn occupied(&self) -> Vec<u8> {
        let s = self.lock();
        (0..SLOTS)
            .filter(|&n| s.devices[usize::from(n)].is_some())
            .collect()
    }

    /// The device a configuration access to `bus:device.function` reaches, if any.
    fn function(&self, bus: u8, device: u8, function: u8) -> Option<SharedPciDevice> {
        if bus != 0 || function != 0 {
            return None;
        }
        self.device(device)
    }

    /// Reads configuration space. Absent functions and malformed accesses read as all
    /// ones (vendor 0xffff: "nothing here").
    pub fn config_read(&self, bus: u8, device: u8, function: u8, offset: u16, data: &mut [u8]) {
        data.fill(0xff);
        if !valid_config_access(u64::from(offset), data.len()) {
            return;
        }
        if let Some(dev) = self.function(bus, device, function) {
            lock(&dev).config_read(offset, data);
        }
    }

    /// Writes configuration space; absent functions and malformed accesses ignore it.
    pub fn config_write(&self, bus: u8, device: u8, function: u8, offset: u16, data: &[u8]) {
        if !valid_config_access(u64::from(offset), data.len()) {
            return;
        }
        let Some(dev) = self.function(bus, device, function) else {
            return;
        };
        if offset >= DECODE_REGISTERS_END {
            lock(&dev).config_write(offset, data);
            return;
        }
        let mut events = Vec::new();
        let observer = {
            let mut d = lock(&dev);
            d.config_write(offset, data);
            let bars = d.bars();
            let mut s = self.lock();
            if s.devices[usize::from(device)]
                .as_ref()
                .is_some_and(|cur| Arc::ptr_eq(cur, &dev))
            {
                s.remap(device, bars, &mut events);
            }
            s.observer.clone()
        };
        notify(observer, events);
    }

    /// Publishes what `device` (in `slot`) decodes now.
    fn refresh(&self, slot: u8, device: &SharedPciDevice) {
        let mut events = Vec::new();
        let observer = {
            let d = lock(device);
            let bars = d.bars();
            let mut s = self.lock();
            if s.devices[usize::from(slot)]
                .as_ref()
                .is_some_and(|cur| Arc::ptr_eq(cur, device))
            {
                s.remap(slot, bars, &mut events);
            }
            s.observer.clone()
        };
        notify(observer, events);
    }

    /// The routed BAR holding `len` bytes at `addr`: the device, which BAR, the offset.
    fn bar_at(&self, addr: u64, len: usize) -> Option<(SharedPciDevice, u8, u64)> {
        let s = self.lock();
        let (&base, &(size, slot, bar)) = s.windows.range(..=addr).next_back()?;
        let offset = addr - base;
        if offset.checked_add(len as u64)? > size {
            return None;
        }
        let dev = s.devices[usize::from(slot)].clone()?;
        Some((dev, bar, offset))
    }

    /// The BusDevice for ports 0xCF8..0xD00.
    pub fn config_io(&self) -> PciConfigIo {
        PciConfigIo::new(self.clone())
    }

    /// The BusDevice for the ECAM window ([`super::ECAM_BASE`]).
    pub fn ecam(&self) -> PciConfigMmio {
        PciConfigMmio::new(self.clone())
    }

    /// The BusDevice for the whole BAR aperture ([`super::BAR_APERTURE_START`]).
    pub fn bar_window(&self) -> PciBarWindow {
        PciBarWindow { root: self.clone() }
    }
}

fn lock(dev: &SharedPciDevice) -> MutexGuard<'_, dyn PciDevice + 'static> {
    dev.lock().unwrap_or_else(|p| p.into_inner())
}

fn notify(observer: Option<BarObserver>, events: Vec<BarEvent>) {
    if let Some(f) = observer {
        events.into_iter().for_each(|e| f(e));
    }
}

/// Every device's BARs, as one MMIO range on the vCPU bus: `offset` is from
/// [`BAR_APERTURE_START`]. Addresses no device decodes read as all ones.
pub struct PciBarWindow {
    root: PciRoot,
}

impl BusDevice for PciBarWindow {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        let hit = BAR_APERTURE_START
            .checked_add(offset)
            .and_then(|addr| self.root.bar_at(addr, data.len()));
        match hit {
            Some((dev, bar, off)) => lock(&dev).bar_read(bar, off, data),
            None => data.fill(0xff),
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        let hit = BAR_APERTURE_START
            .checked_add(offset)
            .and_then(|addr| self.root.bar_at(addr, data.len()));
        if let Some((dev, bar, off)) = hit {
            lock(&dev).bar_write(bar, off, data);
        }
    }
}
