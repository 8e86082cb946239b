//! The devices a VM gets and how they are wired to KVM: COM1, the i8042, the ACPI sleep
//! registers, the GED, the CPU hotplug controller, virtio-mmio disks and vsock
//! (`super::virtio`) and, for raw test guests, the test-report port; and the device state
//! a snapshot carries.

use std::fs::OpenOptions;
use std::io::IsTerminal;
use std::os::unix::net::UnixListener;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use revenant_acpi::platform::{
    ACPI_PORTS_LEN, CPU_HOTPLUG_MMIO_BASE, CPU_HOTPLUG_MMIO_LEN, GED_IRQ, GED_MMIO_BASE,
    GED_MMIO_LEN, SLEEP_CONTROL_PORT,
};
use vmm_sys_util::eventfd::EventFd;

use super::virtio::{VirtioBlk, VirtioVsock};
use super::virtio_mem::VirtioMemHandle;
use super::VmError;
use crate::config::{ConfigError, ConsoleMode, VmConfig};
use crate::devices::acpi::cpu_hotplug::{CpuHotplugDevice, CpuSlots};
use crate::devices::acpi::ged::GedNotifier;
use crate::devices::acpi::sleep::SleepDevice;
use crate::devices::bus::Bus;
use crate::devices::exit::ExitSignal;
use crate::devices::legacy::i8042::{I8042, I8042_BASE, I8042_LEN};
use crate::devices::legacy::test_report::{TestReport, TEST_REPORT_LEN, TEST_REPORT_PORT};
use crate::devices::serial::device::SerialDevice;
use crate::devices::serial::event_handler::{InputSource, SerialInput};
use crate::devices::serial::output::{SerialOutput, SocketConsole};
use crate::devices::serial::{COM1_BASE, COM1_GSI, COM1_LEN};
use crate::devices::virtio::blk::persist::VirtioBlkSnapshot;
use crate::devices::virtio::mem::persist::VirtioMemSnapshot;
use crate::devices::virtio::vsock::persist::VirtioVsockSnapshot;
use crate::event_loop::{EventLoop, Subscriber};
use crate::vstate::hotplug_memory::HotplugRegion;
use crate::vstate::memory::GuestMemoryMmap;
use crate::vstate::run_control::RunControl;
use crate::vstate::vcpu::{ExitCounters, VcpuContext};
use crate::vstate::vm_fd::KvmVm;
use revenant_acpi::tables::MmioDevice;

/// An eventfd wired to interrupt `gsi` of the in-kernel IOAPIC.
pub(super) fn irqfd(kvm: &KvmVm, gsi: u32, what: &'static str) -> Result<EventFd, VmError> {
    let irq = EventFd::new(libc::EFD_NONBLOCK).map_err(|source| VmError::Irq { what, source })?;
    kvm.fd.register_irqfd(&irq, gsi).map_err(|e| VmError::Irq {
        what,
        source: std::io::Error::from_raw_os_error(e.errno()),
    })?;
    Ok(irq)
}

/// The VM's devices and what the VMM keeps of them.
pub(crate) struct Devices {
    pub(crate) pio: Bus,
    pub(crate) mmio: Bus,
    pub(crate) ged: GedNotifier,
    pub(crate) cpu_slots: CpuSlots,
    /// Always running: hot-plugged devices join it later.
    pub(crate) event_loop: Arc<EventLoop>,
    pub(crate) pci: super::pci::PciBus,
    pub(crate) test_reports: Option<Arc<Mutex<Vec<u32>>>>,
    pub(crate) wake_status: Arc<AtomicBool>,
    pub(crate) serial: Arc<Mutex<SerialDevice>>,
    pub(crate) virtio_blk: Vec<VirtioBlk>,
    pub(crate) virtio_mem: Option<VirtioMemHandle>,
    /// The hot-pluggable region the virtio-mem device hands out (mapped in KVM).
    pub(crate) hotplug_memory: Option<HotplugRegion>,
    pub(crate) virtio_vsock: Option<VirtioVsock>,
    pub(crate) virtio_balloon: Option<super::virtio_balloon::VirtioBalloon>,
    pub(crate) virtio_rng: Option<super::virtio_rng::VirtioRng>,
    pub(crate) virtio_net: Vec<super::virtio_net::VirtioNet>,
    /// The serial console's pseudo-terminal, in Pty mode.
    pub(crate) serial_pty: Option<std::path::PathBuf>,
    pub(crate) discard: Arc<crate::vstate::discard::GuestDiscard>,
}

impl Devices {
    /// COM1, the i8042, the ACPI sleep registers, the virtio disks at `virtio` (from
    /// [`super::virtio::virtio_layout`]), virtio-mem over `hotplug` and, for raw test
    /// guests, the test-report port; `saved` restores their state from a snapshot. `memory`
    /// is the boot RAM plus the hot-pluggable region.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn build(
        config: &VmConfig,
        kvm: &KvmVm,
        memory: &GuestMemoryMmap,
        virtio: &[MmioDevice],
        exit: &ExitSignal,
        control: &Arc<RunControl>,
        saved: Option<&DevicesState>,
        enabled_vcpus: usize,
        hotplug: Option<&HotplugRegion>,
    ) -> Result<Devices, VmError> {
        if saved.is_some_and(|s| s.virtio_mem.is_some() != hotplug.is_some()) {
            return Err(VmError::Snapshot(
                "the template's virtio-mem state does not match its memory.hotplug_size".into(),
            ));
        }
        let mut pio = Bus::default();
        let (serial, input, serial_pty) = build_serial(config, kvm, saved.map(|s| &s.serial))?;
        pio.insert(COM1_BASE, COM1_LEN, serial.clone())?;
        pio.insert(
            I8042_BASE,
            I8042_LEN,
            Arc::new(Mutex::new(I8042::new(exit.clone()))),
        )?;
        let wake_status = Arc::new(AtomicBool::new(saved.is_some_and(|s| s.wake_status)));
        let sleep = SleepDevice::new(exit.clone(), control.clone(), wake_status.clone());
        pio.insert(
            u64::from(SLEEP_CONTROL_PORT),
            u64::from(ACPI_PORTS_LEN),
            Arc::new(Mutex::new(sleep)),
        )?;
        let mut test_reports = None;
        if config
            .payload
            .as_ref()
            .is_some_and(|p| p.test_guest.is_some())
        {
            let report = TestReport::default();
            test_reports = Some(report.values());
            pio.insert(
                TEST_REPORT_PORT,
                TEST_REPORT_LEN,
                Arc::new(Mutex::new(report)),
            )?;
        }
        let mut mmio = Bus::default();
        let mut subscribers: Vec<Subscriber> = input.into_iter().collect();
        let (virtio_blk, virtio_vsock) = {
            let mut wiring = super::virtio::Wiring {
                kvm,
                memory,
                mmio: &mut mmio,
                subscribers: &mut subscribers,
            };
            (
                super::virtio::build_disks(
                    config,
                    virtio,
                    &mut wiring,
                    saved.map(|s| s.virtio_blk.as_slice()),
                )?,
                super::virtio::build_vsock(
                    config,
                    virtio,
                    &mut wiring,
                    saved.map(|s| s.virtio_vsock.as_ref()),
                )?,
            )
        };
        let virtio_mem = match (hotplug, super::virtio::mem_slot(config, virtio)) {
            (Some(region), Some(slot)) => Some(super::virtio_mem::build(
                config,
                slot,
                region,
                saved.and_then(|s| s.virtio_mem.as_ref()),
                kvm,
                memory,
                &mut mmio,
                &mut subscribers,
            )?),
            _ => None,
        };
        let discard = Arc::new(crate::vstate::discard::GuestDiscard::default());
        let (virtio_balloon, virtio_rng, virtio_net) = {
            let mut wiring = super::virtio::Wiring {
                kvm,
                memory,
                mmio: &mut mmio,
                subscribers: &mut subscribers,
            };
            (
                super::virtio_balloon::build(
                    config,
                    virtio,
                    &mut wiring,
                    &discard,
                    saved.map(|s| s.virtio_balloon.as_ref()),
                )?,
                super::virtio_rng::build(
                    config,
                    virtio,
                    &mut wiring,
                    saved.map(|s| s.virtio_rng.as_ref()),
                )?,
                super::virtio_net::build(
                    config,
                    virtio,
                    &mut wiring,
                    saved.map(|s| s.virtio_net.as_slice()),
                )?,
            )
        };
        let event_loop = Arc::new(EventLoop::start(subscribers)?);
        let pci = super::pci::PciBus::new(
            kvm.fd.clone(),
            memory.clone(),
            event_loop.clone(),
            &mut pio,
            &mut mmio,
        )?;
        let irq = irqfd(kvm, GED_IRQ, "GED")?;
        let (ged, ged_device) = crate::devices::acpi::ged::ged(irq);
        mmio.insert(
            GED_MMIO_BASE,
            GED_MMIO_LEN,
            Arc::new(Mutex::new(ged_device)),
        )?;
        let cpu_slots = CpuSlots::new(config.cpus.max_vcpus as usize, enabled_vcpus);
        mmio.insert(
            CPU_HOTPLUG_MMIO_BASE,
            CPU_HOTPLUG_MMIO_LEN,
            Arc::new(Mutex::new(CpuHotplugDevice::new(cpu_slots.clone()))),
        )?;
        Ok(Devices {
            pio,
            mmio,
            ged,
            cpu_slots,
            event_loop,
            pci,
            test_reports,
            wake_status,
            serial,
            virtio_blk,
            virtio_mem,
            hotplug_memory: hotplug.cloned(),
            virtio_vsock,
            virtio_balloon,
            virtio_rng,
            virtio_net,
            discard,
            serial_pty,
        })
    }

    /// What every vCPU shares; `memory` is the guest memory, `syscall_bridge` whether the
    /// VM runs the SYSCALL bridge (`super::syscall_bridge`).
    pub(crate) fn vcpu_context(
        &self,
        exit: ExitSignal,
        control: &Arc<RunControl>,
        counters: &Arc<ExitCounters>,
        memory: &GuestMemoryMmap,
        syscall_bridge: bool,
    ) -> VcpuContext {
        VcpuContext {
            pio: Arc::new(self.pio.clone()),
            mmio: Arc::new(self.mmio.clone()),
            exit,
            control: control.clone(),
            counters: counters.clone(),
            memory: memory.clone(),
            syscall_bridge,
        }
    }
}

/// Device state a snapshot carries. The state file is postcard, which is not
/// self-describing: every field must always be written (no `skip_serializing_if`), or the
/// fields after it decode from the wrong bytes.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct DevicesState {
    pub serial: crate::devices::serial::persist::SerialSnapshot,
    pub wake_status: bool,
    // Templates save this with postcard, which is not self-describing: a field skipped when
    // empty would shift every later one, so nothing here may use `skip_serializing_if`.
    pub virtio_blk: Vec<VirtioBlkSnapshot>,
    pub virtio_mem: Option<VirtioMemSnapshot>,
    pub virtio_vsock: Option<VirtioVsockSnapshot>,
    pub virtio_balloon: Option<crate::devices::virtio::balloon::persist::BalloonSnapshot>,
    pub virtio_rng: Option<crate::devices::virtio::rng::persist::RngSnapshot>,
    pub virtio_net: Vec<crate::devices::virtio::net::VirtioNetSnapshot>,
}

/// COM1, its input on the event loop (if any), and its pseudo-terminal's path (Pty mode).
type SerialParts = (
    Arc<Mutex<SerialDevice>>,
    Option<Subscriber>,
    Option<std::path::PathBuf>,
);

/// COM1 with its output sink, its irqfd and, when there is one, its input source.
fn build_serial(
    config: &VmConfig,
    kvm: &KvmVm,
    saved: Option<&crate::devices::serial::persist::SerialSnapshot>,
) -> Result<SerialParts, VmError> {
    let serial_cfg = &config.serial;
    let mut input = None;
    let mut pty_path = None;
    let output = match serial_cfg.mode {
        ConsoleMode::Tty => {
            if std::io::stdin().is_terminal() {
                input = Some(InputSource::Stdin);
            }
            SerialOutput::Stdout
        }
        ConsoleMode::File => {
            let path = serial_cfg
                .file
                .as_deref()
                .unwrap_or(std::path::Path::new(""));
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| {
                    ConfigError::new(
                        "serial.file",
                        format!("cannot open {}: {e}", path.display()),
                    )
                })?;
            SerialOutput::File(file)
        }
        ConsoleMode::Socket => {
            let path = serial_cfg
                .socket
                .as_deref()
                .unwrap_or(std::path::Path::new(""));
            let listener = UnixListener::bind(path).map_err(|e| {
                ConfigError::new(
                    "serial.socket",
                    format!("cannot listen on {}: {e}", path.display()),
                )
            })?;
            let console = Arc::new(Mutex::new(SocketConsole::default()));
            input = Some(InputSource::Socket {
                listener,
                console: console.clone(),
                client: None,
            });
            SerialOutput::Socket(console)
        }
        ConsoleMode::Pty => {
            let pty = crate::devices::serial::pty::Pty::open().map_err(|e| {
                ConfigError::new("serial.mode", format!("cannot open a pseudo-terminal: {e}"))
            })?;
            let out = pty.master.try_clone().map_err(|e| {
                ConfigError::new("serial.mode", format!("cannot open a pseudo-terminal: {e}"))
            })?;
            pty_path = Some(pty.path.clone());
            input = Some(InputSource::Pty(pty));
            SerialOutput::Pty(out)
        }
        _ => SerialOutput::Sink,
    };
    let irq = EventFd::new(libc::EFD_NONBLOCK).map_err(|source| VmError::Irq {
        what: "serial",
        source,
    })?;
    kvm.fd
        .register_irqfd(&irq, COM1_GSI)
        .map_err(|e| VmError::Irq {
            what: "serial",
            source: std::io::Error::from_raw_os_error(e.errno()),
        })?;
    let device = Arc::new(Mutex::new(match saved {
        Some(state) => SerialDevice::from_state(state, irq, output).map_err(VmError::Snapshot)?,
        None => SerialDevice::new(irq, output),
    }));
    let subscriber = input
        .map(|source| Arc::new(Mutex::new(SerialInput::new(device.clone(), source))) as Subscriber);
    Ok((device, subscriber, pty_path))
}
