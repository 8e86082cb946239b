//! A virtio device as a PCI function: configuration space accesses (with the MSI-X control
//! word and the PCI configuration access capability acted on) and BAR 0 accesses decoded
//! into the common configuration, ISR, device configuration, notifications and the MSI-X
//! table.

use std::sync::{Arc, Mutex};

use vmm_sys_util::eventfd::EventFd;

use super::capabilities::{self, CapOffsets};
use super::common_cfg;
use super::interrupt::{lock as lock_msix, PciVectors};
use super::persist::PciTransportState;
use super::*;
use crate::devices::pci::config_space::{ConfigSpace, STATUS, STATUS_INTERRUPT};
use crate::devices::pci::msix::{MsiVectors, Msix, CONTROL_OFFSET};
use crate::devices::pci::{BarRange, PciDevice, PciError};
use crate::devices::virtio::restore::{RestoreError, RunningQueues, SavedCore};
use crate::devices::virtio::transport::{TransportCore, DRIVER};
use crate::devices::virtio::{Interrupt, VirtioDevice};
use crate::vstate::memory::GuestMemoryMmap;

const NAME: &str = "virtio-pci";

/// Offsets of the PCI configuration access capability's fields.
const PCI_CFG_BAR: usize = 4;
const PCI_CFG_OFFSET: usize = 8;
const PCI_CFG_LENGTH: usize = 12;
const PCI_CFG_DATA: usize = 16;

/// The regions of BAR 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Region {
    Common,
    Isr,
    DeviceCfg,
    Notify,
    MsixTable,
    MsixPba,
}

/// The region an access of `len` bytes at `offset` falls in, and the offset inside it.
/// Accesses straddling a region's end reach none.
fn region(offset: u64, len: usize) -> Option<(Region, u64)> {
    let (r, start) = match offset {
        o if o < ISR_OFFSET => (Region::Common, COMMON_CFG_OFFSET),
        o if o < DEVICE_CFG_OFFSET => (Region::Isr, ISR_OFFSET),
        o if o < NOTIFY_OFFSET => (Region::DeviceCfg, DEVICE_CFG_OFFSET),
        o if o < MSIX_TABLE_OFFSET => (Region::Notify, NOTIFY_OFFSET),
        o if o < MSIX_PBA_OFFSET => (Region::MsixTable, MSIX_TABLE_OFFSET),
        o if o < MSIX_PBA_OFFSET + REGION_LEN => (Region::MsixPba, MSIX_PBA_OFFSET),
        _ => return None,
    };
    let inner = offset - start;
    (inner + len as u64 <= REGION_LEN).then_some((r, inner))
}

/// One virtio device on the PCI bus.
pub struct VirtioPciTransport {
    core: TransportCore,
    config: ConfigSpace,
    caps: CapOffsets,
    vectors: Arc<PciVectors>,
}

/// The parts every transport starts from, fresh or restored.
struct Parts {
    config: ConfigSpace,
    caps: CapOffsets,
    vectors: Arc<PciVectors>,
}

fn parts(
    device: &Arc<Mutex<dyn VirtioDevice>>,
    msi: Arc<dyn MsiVectors>,
) -> Result<Parts, VirtioPciError> {
    let (device_type, queues) = {
        let d = crate::devices::virtio::transport::lock(device);
        (d.device_type(), d.queue_max_sizes().len())
    };
    if queues > MAX_QUEUES {
        return Err(VirtioPciError::TooManyQueues(queues));
    }
    let msix = Msix::new(msix_vector_count(queues), msi)?;
    let (config, caps) = capabilities::build(device_type, &msix)?;
    let vectors = Arc::new(PciVectors::new(Arc::new(Mutex::new(msix)), queues));
    Ok(Parts {
        config,
        caps,
        vectors,
    })
}

impl VirtioPciTransport {
    /// A transport for `device`. `intx` raises its INTx line (used while MSI-X is off);
    /// `msi` delivers its MSI-X vectors, of which it needs
    /// [`msix_vector_count`]`(queues)`.
    pub fn new(
        mem: GuestMemoryMmap,
        device: Arc<Mutex<dyn VirtioDevice>>,
        intx: EventFd,
        msi: Arc<dyn MsiVectors>,
    ) -> Result<Self, VirtioPciError> {
        let p = parts(&device, msi)?;
        let interrupt = Arc::new(Interrupt::with_vectors(intx, p.vectors.clone()));
        let core = TransportCore::new(NAME, mem, device, interrupt)?;
        Ok(VirtioPciTransport {
            core,
            config: p.config,
            caps: p.caps,
            vectors: p.vectors,
        })
    }

    /// A transport rebuilt from `state` (see `MmioTransport::restore`): configuration
    /// space, MSI-X table and vector assignments are checked against this device before
    /// anything is applied; deliverable MSI-X vectors are routed again through `msi`.
    pub fn restore(
        mem: GuestMemoryMmap,
        device: Arc<Mutex<dyn VirtioDevice>>,
        intx: EventFd,
        msi: Arc<dyn MsiVectors>,
        state: &PciTransportState,
        running: RunningQueues<'_>,
    ) -> Result<Self, RestoreError> {
        let mut p = parts(&device, msi).map_err(|e| match e {
            VirtioPciError::Pci(e) => RestoreError::Pci(e),
            _ => RestoreError::Mismatch("the device cannot be put on virtio-pci"),
        })?;
        p.config.restore(&state.config_space)?;
        let v = &p.vectors;
        if state.queue_vectors.len() != state.queues.len() {
            return Err(RestoreError::Mismatch(
                "the saved MSI-X vectors are not one per queue",
            ));
        }
        let vectors_ok = std::iter::once(state.config_vector)
            .chain(state.queue_vectors.iter().copied())
            .all(|x| v.valid(x));
        if !vectors_ok {
            return Err(RestoreError::Mismatch(
                "a saved MSI-X vector is not in the table",
            ));
        }
        v.set_config_vector(state.config_vector);
        for (q, &x) in state.queue_vectors.iter().enumerate() {
            v.set_queue_vector(q, x);
        }
        let control = p.config.read_u16(p.caps.msix + CONTROL_OFFSET);
        lock_msix(v.msix()).restore(&state.msix, control)?;
        let interrupt = Arc::new(Interrupt::with_vectors(intx, p.vectors.clone()));
        let saved = SavedCore::from(state);
        let core = TransportCore::restore(NAME, mem, device, interrupt, &saved, running)?;
        Ok(VirtioPciTransport {
            core,
            config: p.config,
            caps: p.caps,
            vectors: p.vectors,
        })
    }

    pub fn interrupt(&self) -> &Arc<Interrupt> {
        &self.core.interrupt
    }

    pub fn device_status(&self) -> u32 {
        self.core.device_status
    }

    /// Places BAR 0 at `base` as firmware would, before the guest enumerates the bus (it
    /// may move it): inside [`crate::devices::pci::BAR_APERTURE_START`], aligned to
    /// [`BAR_SIZE`]. Memory decoding stays as the guest left it.
    pub fn program_bar(&mut self, base: u64) -> Result<(), PciError> {
        self.config.program_bar(usize::from(BAR_INDEX), base)
    }

    /// Where BAR 0 is programmed, if anywhere.
    pub fn bar_address(&self) -> Option<u64> {
        self.config
            .bar_address(usize::from(BAR_INDEX))
            .filter(|&b| b != 0)
    }

    /// Queue `queue`'s notify address at BAR 0's current place; None while BAR 0 is not
    /// programmed or for a queue the device lacks. The VM registers a KVM ioeventfd there
    /// (and moves it on a `BarEvent`); writes that still reach the transport notify too.
    pub fn notify_address(&self, queue: usize) -> Option<u64> {
        let q = u16::try_from(queue)
            .ok()
            .filter(|_| queue < self.core.queues.len())?;
        Some(super::notify_address(self.bar_address()?, q))
    }

    pub fn state(&self) -> PciTransportState {
        let c = &self.core;
        PciTransportState {
            device_status: c.device_status,
            device_features_select: c.device_features_select,
            driver_features_select: c.driver_features_select,
            acked_features: c.acked_features,
            queue_select: c.queue_select,
            interrupt_status: c.interrupt.status(),
            config_generation: c.config_generation,
            queues: c.queue_snapshots(),
            config_vector: self.vectors.config_vector(),
            queue_vectors: self.vectors.queue_vectors(),
            msix: lock_msix(self.vectors.msix()).state(),
            config_space: self.config.state(),
        }
    }

    fn overlaps(offset: usize, len: usize, start: usize, field_len: usize) -> bool {
        offset < start + field_len && start < offset + len
    }

    /// The BAR access the PCI configuration access capability describes now: offset and
    /// length, when the length is 1, 2 or 4, aligned, inside BAR 0.
    fn pci_cfg_access(&self) -> Option<(u64, usize)> {
        let cap = self.caps.pci_cfg;
        let mut bar = [0u8; 1];
        self.config.read(cap + PCI_CFG_BAR, &mut bar);
        let offset = u64::from(self.config.read_u32(cap + PCI_CFG_OFFSET));
        let len = self.config.read_u32(cap + PCI_CFG_LENGTH) as usize;
        let ok = bar[0] == BAR_INDEX
            && matches!(len, 1 | 2 | 4)
            && offset % len as u64 == 0
            && offset + len as u64 <= BAR_SIZE;
        ok.then_some((offset, len))
    }

    fn read_bar0(&mut self, offset: u64, data: &mut [u8]) {
        data.fill(0);
        if data.is_empty() {
            return;
        }
        let Some((region, at)) = region(offset, data.len()) else {
            return;
        };
        match region {
            Region::Common => common_cfg::read(&self.core, &self.vectors, at, data),
            Region::Isr => {
                if at == 0 {
                    data[0] = self.core.interrupt.take_status() as u8;
                }
            }
            Region::DeviceCfg => self.core.lock_device().read_config(at, data),
            Region::Notify => {}
            Region::MsixTable => lock_msix(self.vectors.msix()).read_table(at, data),
            Region::MsixPba => lock_msix(self.vectors.msix()).read_pba(at, data),
        }
    }

    fn write_bar0(&mut self, offset: u64, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        let Some((region, at)) = region(offset, data.len()) else {
            return;
        };
        match region {
            Region::Common => common_cfg::write(&mut self.core, &self.vectors, at, data),
            Region::Isr => {}
            Region::DeviceCfg => {
                // The driver may only write the configuration space after DRIVER (3.1.1).
                if self.core.device_status & DRIVER != 0 {
                    self.core.lock_device().write_config(at, data);
                }
            }
            Region::Notify => {
                if at % u64::from(NOTIFY_OFF_MULTIPLIER) == 0 {
                    let queue = at / u64::from(NOTIFY_OFF_MULTIPLIER);
                    self.core.notify(queue as u32);
                }
            }
            Region::MsixTable => lock_msix(self.vectors.msix()).write_table(at, data),
            Region::MsixPba => {}
        }
    }
}

impl PciDevice for VirtioPciTransport {
    fn config_read(&mut self, offset: u16, data: &mut [u8]) {
        let offset = usize::from(offset);
        let data_at = self.caps.pci_cfg + PCI_CFG_DATA;
        if Self::overlaps(offset, data.len(), data_at, 4) {
            if let Some((at, len)) = self.pci_cfg_access() {
                let mut window = [0u8; 4];
                self.read_bar0(at, &mut window[..len]);
                self.config.set_bytes(data_at, &window);
            }
        }
        self.config.read(offset, data);
        // Interrupt status mirrors the ISR while INTx is in use (4.1.4.5.1).
        if Self::overlaps(offset, data.len(), STATUS, 1)
            && !self.vectors.msix_enabled()
            && self.core.interrupt.status() != 0
        {
            data[STATUS - offset] |= STATUS_INTERRUPT as u8;
        }
    }

    fn config_write(&mut self, offset: u16, data: &[u8]) {
        let offset = usize::from(offset);
        self.config.write(offset, data);
        let control_at = self.caps.msix + CONTROL_OFFSET;
        if Self::overlaps(offset, data.len(), control_at, 2) {
            let control = self.config.read_u16(control_at);
            lock_msix(self.vectors.msix()).set_control(control);
        }
        let data_at = self.caps.pci_cfg + PCI_CFG_DATA;
        if Self::overlaps(offset, data.len(), data_at, 4) {
            if let Some((at, len)) = self.pci_cfg_access() {
                let mut window = [0u8; 4];
                self.config.read(data_at, &mut window);
                self.write_bar0(at, &window[..len]);
            }
        }
    }

    fn bars(&self) -> Vec<BarRange> {
        self.config.bar_ranges()
    }

    fn bar_read(&mut self, bar: u8, offset: u64, data: &mut [u8]) {
        if bar == BAR_INDEX {
            self.read_bar0(offset, data);
        } else {
            data.fill(0xff);
        }
    }

    fn bar_write(&mut self, bar: u8, offset: u64, data: &[u8]) {
        if bar == BAR_INDEX {
            self.write_bar0(offset, data);
        }
    }
}
