//! Virtio devices and their two transports: virtio-mmio (virtio 1.2, 4.2, version 2) and
//! virtio-pci (4.1, modern only). A device's code does not know which one carries it.
//!
//! - `mmio`: the register window a guest driver programs; it negotiates features, walks the
//!   device status state machine, sets up the queues and hands them to the device.
//! - `pci`: the same for a device on the PCI root bus (capabilities in configuration space,
//!   registers in a memory BAR, MSI-X interrupts).
//! - `transport`: what both transports share: the status state machine, feature
//!   negotiation, queue setup and activation.
//! - [`VirtioDevice`]: what a device (one module each: `blk`, `vsock`, `balloon`, `mem`,
//!   `rng`, `net`) gives the transport.
//! - `chain`: the checks every descriptor chain passes before a device acts on it.
//! - `persist`: queue and transport state for snapshots.
//! - `restore`: the checks a saved transport passes before it is rebuilt.
//! - `testing`: a host-side driver that lays out split virtqueues in guest memory and posts
//!   descriptor chains, for tests, the benchmark and the fuzz target.

pub mod balloon;
pub mod blk;
pub mod chain;
pub mod mem;
pub mod mmio;
pub mod net;
pub mod pci;
pub mod persist;
pub mod restore;
pub mod rng;
pub mod testing;
pub mod transport;
pub mod vsock;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use virtio_bindings::virtio_mmio::{VIRTIO_MMIO_INT_CONFIG, VIRTIO_MMIO_INT_VRING};
use virtio_queue::{Queue, QueueT};
use vmm_sys_util::eventfd::EventFd;

use crate::vstate::memory::GuestMemoryMmap;

/// Size of one virtio-mmio register window: 0x100 bytes of registers plus the device's
/// configuration space; a page keeps every window page aligned.
pub const MMIO_WINDOW_SIZE: u64 = 0x1000;
/// IOAPIC pins for virtio-mmio devices, one each: above COM1's 4 and below the GED's 23
/// (`revenant_acpi::platform`), the range Firecracker also uses on x86.
pub const VIRTIO_GSIS: std::ops::RangeInclusive<u32> = 5..=22;
/// The QueueNotify register: where ioeventfds are registered.
pub const QUEUE_NOTIFY_OFFSET: u64 = 0x50;

/// Feature bit every device offers: without it the driver is a legacy (pre-1.0) driver,
/// whose queue layout the transport does not implement.
pub const VIRTIO_F_VERSION_1: u64 = 1 << virtio_bindings::virtio_config::VIRTIO_F_VERSION_1;

/// Why a device refused to start.
#[derive(Debug, thiserror::Error)]
pub enum ActivateError {
    /// The driver gave a different number of queues than the device has.
    #[error("expected {expected} queues, got {got}")]
    QueueCount { expected: usize, got: usize },
    /// A queue's rings do not fit in guest memory, or the queue is not ready.
    #[error("queue {0} is not ready or its rings are outside guest memory")]
    InvalidQueue(usize),
}

/// Where a transport with an interrupt vector per queue (virtio-pci with MSI-X) delivers.
/// Each method returns false while the vectors are off (MSI-X disabled): the interrupt then
/// goes through the status register and the line, as on virtio-mmio.
pub trait InterruptVectors: Send + Sync {
    /// Signals the vector of queue `queue`.
    fn queue(&self, queue: usize) -> bool;
    /// Signals the configuration-change vector.
    fn config(&self) -> bool;
    /// Signals again every vector the driver assigned (see [`Interrupt::retrigger`]).
    fn retrigger(&self) -> bool;
}

/// The transport's interrupt: a status register the driver reads and acknowledges, the
/// irqfd that raises the line and, on virtio-pci, the MSI-X vectors. Shared by the
/// transport (reads, ACKs) and the device (raises).
pub struct Interrupt {
    status: AtomicU32,
    irq: EventFd,
    vectors: Option<Arc<dyn InterruptVectors>>,
}

impl Interrupt {
    pub fn new(irq: EventFd) -> Self {
        Interrupt {
            status: AtomicU32::new(0),
            irq,
            vectors: None,
        }
    }

    /// An interrupt that goes through `vectors` while they are on, and the line otherwise.
    pub fn with_vectors(irq: EventFd, vectors: Arc<dyn InterruptVectors>) -> Self {
        Interrupt {
            vectors: Some(vectors),
            ..Interrupt::new(irq)
        }
    }

    /// Used buffers are in queue `queue`'s used ring. The queue matters on virtio-pci,
    /// where each queue may have its own MSI-X vector: raising another queue's vector would
    /// be an interrupt its handler finds nothing for, and Linux disables an interrupt that
    /// is mostly unhandled.
    pub fn signal_used_queue(&self, queue: usize) {
        if self.vectors.as_ref().is_some_and(|v| v.queue(queue)) {
            return;
        }
        self.raise(VIRTIO_MMIO_INT_VRING);
    }

    /// The configuration space changed (or the device needs a reset). The status bit is set
    /// whatever delivers it (virtio 1.2, 4.1.4.5.2).
    pub fn signal_config_change(&self) {
        self.status
            .fetch_or(VIRTIO_MMIO_INT_CONFIG, Ordering::SeqCst);
        if self.vectors.as_ref().is_some_and(|v| v.config()) {
            return;
        }
        self.pulse();
    }

    fn raise(&self, bit: u32) {
        self.status.fetch_or(bit, Ordering::SeqCst);
        self.pulse();
    }

    fn pulse(&self) {
        if let Err(e) = self.irq.write(1) {
            tracing::warn!("virtio interrupt lost: {e}");
        }
    }

    pub fn status(&self) -> u32 {
        self.status.load(Ordering::SeqCst)
    }

    pub fn ack(&self, bits: u32) {
        self.status.fetch_and(!bits, Ordering::SeqCst);
    }

    /// Reads and clears the status: virtio-pci's ISR register is acknowledged by reading
    /// it (4.1.4.5).
    pub fn take_status(&self) -> u32 {
        self.status.swap(0, Ordering::SeqCst)
    }

    /// Raises the line again if an interrupt is still pending: after a restore, the
    /// vCPUs' local APIC state is loaded after the devices were built, which drops an
    /// interrupt delivered in between. A driver that finds nothing to do ignores it. With
    /// MSI-X on, every assigned vector is signalled instead.
    pub fn retrigger(&self) {
        if self.vectors.as_ref().is_some_and(|v| v.retrigger()) {
            return;
        }
        if self.status() != 0 {
            self.pulse();
        }
    }

    pub(crate) fn restore_status(&self, bits: u32) {
        self.status.store(bits, Ordering::SeqCst);
    }
}

/// What a device gets when the driver sets DRIVER_OK.
pub struct ActivateContext {
    pub mem: GuestMemoryMmap,
    /// One per queue, in queue-index order, already checked against `mem`.
    pub queues: Vec<Queue>,
    pub interrupt: Arc<Interrupt>,
    /// Features the driver accepted (a subset of the device's).
    pub acked_features: u64,
}

/// A virtio device as the transport sees it. The device owns its queue notification
/// eventfds (so the VM can register them as KVM ioeventfds before the guest runs) and
/// processes its queues on the event loop once activated.
pub trait VirtioDevice: Send {
    /// Virtio device ID (2 for block, ...).
    fn device_type(&self) -> u32;
    /// Largest size of each queue; its length is the number of queues.
    fn queue_max_sizes(&self) -> &[u16];
    /// Features the device offers (must include [`VIRTIO_F_VERSION_1`]).
    fn avail_features(&self) -> u64;
    /// Reads `data.len()` bytes of configuration space at `offset`; bytes past the end read
    /// as zero.
    fn read_config(&self, offset: u64, data: &mut [u8]);
    /// Writes configuration space; most devices ignore it.
    fn write_config(&mut self, offset: u64, data: &[u8]);
    /// Changes whenever the device changes its configuration space on its own, so a driver
    /// reading a field in several accesses can tell it read a torn value (4.2.2,
    /// ConfigGeneration). Devices whose configuration never changes keep the default.
    fn config_generation(&self) -> u32 {
        0
    }
    /// One eventfd per queue, signalled when the driver notifies that queue.
    fn queue_events(&self) -> &[EventFd];
    /// Starts processing: the driver set DRIVER_OK.
    fn activate(&mut self, ctx: ActivateContext) -> Result<(), ActivateError>;
    /// Stops processing and forgets the queues: the driver wrote 0 to the status register.
    fn reset(&mut self);
}

/// What a started single-queue device works with: the driver's queue (checked to be the
/// only one, and ready), guest memory, its interrupt and the features the driver accepted.
pub struct ActiveQueue {
    pub mem: GuestMemoryMmap,
    pub queue: Queue,
    pub interrupt: Arc<Interrupt>,
    pub acked_features: u64,
}

impl ActiveQueue {
    pub fn from_context(ctx: ActivateContext) -> Result<Self, ActivateError> {
        let got = ctx.queues.len();
        let queue = ctx
            .queues
            .into_iter()
            .next()
            .filter(|_| got == 1)
            .ok_or(ActivateError::QueueCount { expected: 1, got })?;
        if !queue.ready() {
            return Err(ActivateError::InvalidQueue(0));
        }
        Ok(ActiveQueue {
            mem: ctx.mem,
            queue,
            interrupt: ctx.interrupt,
            acked_features: ctx.acked_features,
        })
    }
}

/// Bounds on config-space access shared by every device: `config` is the device's
/// configuration space laid out little-endian.
pub fn read_config_bytes(config: &[u8], offset: u64, data: &mut [u8]) {
    data.fill(0);
    let Ok(start) = usize::try_from(offset) else {
        return;
    };
    if let Some(src) = config.get(start..) {
        let n = src.len().min(data.len());
        data[..n].copy_from_slice(&src[..n]);
    }
}
