//! A running VM: guest memory, the KVM VM, devices, the event loop and the vCPU threads.
//! `Vm` wires these together; each part owns its own logic.

mod devices;
mod hotplug;
mod pci;
mod prepared;
mod virtio;
mod virtio_balloon;
mod virtio_mem;
mod virtio_net;
mod virtio_rng;

pub(crate) use devices::Devices;
pub use devices::DevicesState;
pub use hotplug::{PciDeviceInfo, PluggedDevice};
pub use prepared::PreparedVm;
pub use virtio::virtio_layout;
pub use virtio_balloon::BalloonInfo;
pub use virtio_mem::MemoryHotplugInfo;
pub(crate) use virtio_mem::{guest_memory, hotplug_region};

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use kvm_bindings::KVM_MAX_CPUID_ENTRIES;
use serde::Serialize;

use crate::boot::cpuid::{CpuProfile, PVM_SAFE_LINUX_CMDLINE};
use crate::boot::{acpi, linux, test_guest};
use crate::config::{ConfigError, Payload, VmConfig};
use revenant_acpi::platform::{FACS_ADDR, GED_EVENT_CPU_HOTPLUG, GED_EVENT_POWER_BUTTON};

use crate::devices::acpi::cpu_hotplug::{CpuSlot, CpuSlots};
use crate::devices::acpi::ged::GedNotifier;
use vm_memory::{Bytes, GuestAddress};

use crate::devices::bus::BusError;
use crate::devices::exit::ExitSignal;
use crate::devices::resources::ResourceError;
use crate::devices::serial::device::SerialDevice;
use crate::event_loop::{EventLoop, EventLoopError};
use crate::vstate::memory::{create_ram, GuestMemoryMmap, MemoryError};
use crate::vstate::run_control::{install_kick_handler, RunControl, RunControlError};
use crate::vstate::vcpu::{ExitCounters, SharedVcpu, Vcpu, VcpuContext, VcpuError, VcpuThread};
use crate::vstate::vm_fd::{create_vm, KvmVm, VmFdError};

#[derive(Debug, thiserror::Error)]
pub enum VmError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Memory(#[from] MemoryError),
    #[error(transparent)]
    Acpi(#[from] acpi::AcpiError),
    #[error(transparent)]
    Kvm(#[from] VmFdError),
    #[error(transparent)]
    Vcpu(#[from] VcpuError),
    #[error(transparent)]
    Resources(#[from] ResourceError),
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error(transparent)]
    EventLoop(#[from] EventLoopError),
    #[error(transparent)]
    RunControl(#[from] RunControlError),
    #[error("cannot query the CPUID KVM supports: {0}")]
    Cpuid(#[source] kvm_ioctls::Error),
    #[error("cannot run the CPUID probe: {0}")]
    Probe(#[source] std::io::Error),
    #[error("snapshot: {0}")]
    Snapshot(String),
    /// The RAM extension could not start or move pages (the text names the field).
    #[error("{0}")]
    RamExt(String),
    #[error(transparent)]
    Persist(#[from] crate::vstate::persist::PersistError),
    #[error(transparent)]
    Template(#[from] revenant_template::TemplateError),
    #[error("virtio device: {0}")]
    Virtio(String),
    #[error("cannot set up the {what} interrupt: {source}")]
    Irq {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
}

impl VmError {
    /// The request field to blame when the error comes from what the user asked for.
    pub fn config_error(&self) -> Option<ConfigError> {
        match self {
            VmError::Config(e) => Some(e.clone()),
            VmError::Memory(MemoryError::Zone(z)) => z.config_error(),
            _ => None,
        }
    }
}

/// Exit and test-report counters, as `vm.counters` shows them.
#[derive(Debug, Default, Serialize)]
pub struct VmCounters {
    pub pio_exits: u64,
    pub mmio_exits: u64,
    pub other_exits: u64,
    /// Page faults served from a template (ondemand and remote restores) or from memory
    /// servers after an Sz (RAM extension).
    pub memory_faults: u64,
    /// Guest RAM written to memory servers (budget and Sz evictions).
    pub remote_bytes_out: u64,
    /// The RAM extension's own counters (resident, remote, faults, evictions, latency).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ram_ext: Option<revenant_remote_mem::ram_ext::RamExtCounters>,
    /// The balloon's sizes, what it gave back and the guest's memory statistics.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub balloon: Option<BalloonInfo>,
    /// Each network card: its id, MAC, tap and frame counters.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub net: Vec<NetInfo>,
    /// Devices hot-plugged on the PCI bus.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pci_devices: Vec<hotplug::PciDeviceInfo>,
    /// Instructions the host's KVM refused and Revenant emulated, by mnemonic.
    pub fallback_emulations: std::collections::BTreeMap<&'static str, u64>,
    /// System calls from guest user mode the SYSCALL bridge carried (PVM hosts).
    pub syscalls: u64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub test_reports: Vec<u32>,
}

/// A network card as `vm.counters` reports it.
#[derive(Debug, Serialize)]
pub struct NetInfo {
    pub id: String,
    pub mac: String,
    pub tap: String,
    #[serde(flatten)]
    pub counters: crate::devices::virtio::net::NetCounters,
}

pub struct Vm {
    pub(crate) control: Arc<RunControl>,
    pub(crate) vcpu_threads: Vec<JoinHandle<()>>,
    pub(crate) vcpus: Vec<SharedVcpu>,
    pub(crate) event_loop: Arc<EventLoop>,
    /// The PCI root bus and the devices hot-plugged onto it.
    pub(crate) pci: pci::PciBus,
    pub(crate) counters: Arc<ExitCounters>,
    pub(crate) test_reports: Option<Arc<Mutex<Vec<u32>>>>,
    /// WAK_STS of the ACPI sleep status register.
    pub(crate) wake_status: Arc<AtomicBool>,
    pub(crate) serial: Arc<Mutex<SerialDevice>>,
    pub(crate) virtio_blk: Vec<virtio::VirtioBlk>,
    pub(crate) virtio_mem: Option<virtio_mem::VirtioMemHandle>,
    pub(crate) virtio_vsock: Option<virtio::VirtioVsock>,
    pub(crate) virtio_balloon: Option<virtio_balloon::VirtioBalloon>,
    pub(crate) virtio_rng: Option<virtio_rng::VirtioRng>,
    pub(crate) virtio_net: Vec<virtio_net::VirtioNet>,
    /// The serial console's pseudo-terminal (`/dev/pts/N`), in Pty mode.
    pub(crate) serial_pty: Option<std::path::PathBuf>,
    /// Gives guest pages back to the host (balloon); routed through the RAM-ext engine
    /// while one runs.
    pub(crate) discard: Arc<crate::vstate::discard::GuestDiscard>,
    pub(crate) ged: GedNotifier,
    pub(crate) cpu_slots: CpuSlots,
    pub(crate) hotplug: Hotplug,
    pub(crate) cpu_profile: CpuProfile,
    pub(crate) has_pit: bool,
    pub(crate) kvm: KvmVm,
    /// The boot RAM (what the e820 map, snapshots and the RAM extension cover).
    pub(crate) memory: GuestMemoryMmap,
    /// The hot-pluggable region virtio-mem hands out; unmapped after the VM fd is closed.
    pub(crate) _hotplug_memory: Option<crate::vstate::hotplug_memory::HotplugRegion>,
    /// Guest RAM on memory servers (RAM extension): from boot with a local budget, else
    /// once the VM first entered Sz.
    pub(crate) remote_ram: Option<crate::ram_ext::RemoteRam>,
    /// The template mapping a restored VM's memory lives in; dropped (unmapped) after
    /// `memory`, which only borrows it.
    pub(crate) template_memory: Option<revenant_template::GuestMemoryMapping>,
}

impl Vm {
    /// Builds the VM described by `config` and starts its vCPUs.
    pub fn boot(config: &VmConfig, exit: ExitSignal) -> Result<Vm, VmError> {
        let mut timer = StageTimer::new();
        let payload = config.payload()?;
        install_kick_handler()?;
        // Work that doesn't depend on the VM runs on the other core meanwhile.
        let count = config.cpus.boot_vcpus as u8; // validate() bounds it by MAX_VCPUS (254)
        let cpuid_probe = std::thread::Builder::new()
            .name("cpuid-probe".into())
            .spawn(supported_cpuid)
            .map_err(VmError::Probe)?;
        let threads = spawn_vcpu_threads(count)?;
        let memory = create_ram(&config.memory)?;
        let hotplug = hotplug_region(config)?;
        let guest_memory = guest_memory(&memory, hotplug.as_ref())?;
        timer.stage("guest memory mapped");
        // The hot-pluggable region is registered here too, before the irqchip exists.
        let kvm = create_vm(&guest_memory, matches!(payload, Payload::Linux { .. }))?;
        timer.stage("KVM VM created");

        let cpu_profile = config.cpu_profile.resolve();
        let virtio = virtio::virtio_layout(config)?;
        let rsdp = acpi::write_tables(&memory, &acpi::tables_for(config, &virtio)?)?;
        timer.stage("ACPI tables written");
        let entry = match &payload {
            Payload::Linux {
                kernel,
                initramfs,
                cmdline,
            } => {
                let cmdline =
                    linux_cmdline(cmdline, cpu_profile) + &virtio::cmdline_devices(&virtio);
                linux::load(&memory, kernel, *initramfs, &cmdline, rsdp)
                    .map_err(|e| ConfigError::new("payload.kernel", e.to_string()))?
            }
            Payload::TestGuest(t) => test_guest::load(&memory, &t.path, t.mode)
                .map_err(|e| ConfigError::new("payload.test_guest.path", e.to_string()))?,
        };

        timer.stage("payload loaded");
        let control = Arc::new(RunControl::default());
        let devices = Devices::build(
            config,
            &kvm,
            &guest_memory,
            &virtio,
            &exit,
            &control,
            None,
            usize::from(count),
            hotplug.as_ref(),
        )?;
        timer.stage("devices ready");
        let mut cpuid = cpuid_probe
            .join()
            .map_err(|_| VmError::Probe(std::io::Error::other("CPUID probe thread panicked")))??;
        crate::boot::cpuid::apply_profile(&mut cpuid, cpu_profile);
        let counters = Arc::new(ExitCounters::default());
        let bridge = syscall_bridge(&kvm, &guest_memory, cpu_profile, true);
        let ctx = devices.vcpu_context(exit, &control, &counters, &guest_memory, bridge);
        let hotplug = Hotplug {
            cpuid: cpuid.clone(),
            ctx: ctx.clone(),
            max_vcpus: config.cpus.max_vcpus as u8,
        };
        let mut vcpus = Vec::with_capacity(usize::from(count));
        for id in 0..count {
            let vcpu = Vcpu::new(&kvm.fd, id, ctx.clone())?;
            vcpu.configure(&cpuid, count, &memory, (id == 0).then_some(entry))?;
            vcpus.push(vcpu);
        }
        timer.stage("vCPUs configured");
        let remote_ram = match &config.memory.remote {
            Some(r) if r.runs_from_boot() => {
                Some(crate::ram_ext::RemoteRam::start(r, &memory, true)?)
            }
            _ => None,
        };
        let has_pit = matches!(payload, Payload::Linux { .. });
        let mut vm = Vm::assemble(
            control,
            counters,
            devices,
            hotplug,
            cpu_profile,
            has_pit,
            kvm,
            memory,
            None,
            threads,
            vcpus,
        )?;
        timer.stage("vCPUs started");
        vm.set_remote_ram(remote_ram);
        Ok(vm)
    }

    /// Puts the parts together and hands each vCPU to its thread.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn assemble(
        control: Arc<RunControl>,
        counters: Arc<ExitCounters>,
        devices: Devices,
        hotplug: Hotplug,
        cpu_profile: CpuProfile,
        has_pit: bool,
        kvm: KvmVm,
        memory: GuestMemoryMmap,
        template_memory: Option<revenant_template::GuestMemoryMapping>,
        threads: Vec<VcpuThread>,
        vcpus: Vec<Vcpu>,
    ) -> Result<Vm, VmError> {
        let mut vm = Vm {
            control,
            vcpu_threads: Vec::with_capacity(vcpus.len()),
            vcpus: Vec::with_capacity(vcpus.len()),
            event_loop: devices.event_loop,
            pci: devices.pci,
            counters,
            test_reports: devices.test_reports,
            wake_status: devices.wake_status,
            serial: devices.serial,
            virtio_blk: devices.virtio_blk,
            virtio_mem: devices.virtio_mem,
            virtio_vsock: devices.virtio_vsock,
            virtio_balloon: devices.virtio_balloon,
            virtio_rng: devices.virtio_rng,
            virtio_net: devices.virtio_net,
            serial_pty: devices.serial_pty,
            discard: devices.discard,
            ged: devices.ged,
            cpu_slots: devices.cpu_slots,
            hotplug,
            cpu_profile,
            has_pit,
            kvm,
            memory,
            _hotplug_memory: devices.hotplug_memory,
            remote_ram: None,
            template_memory,
        };
        for (thread, vcpu) in threads.into_iter().zip(vcpus) {
            let vcpu = Arc::new(Mutex::new(vcpu));
            vm.vcpu_threads.push(thread.launch(vcpu.clone())?);
            vm.vcpus.push(vcpu);
        }
        Ok(vm)
    }

    /// Stops the vCPUs, then the devices (their event loop), so nothing changes guest
    /// memory or device state until [`Vm::resume`]: what a snapshot saves is consistent.
    pub fn pause(&self) -> Result<(), VmError> {
        self.control.pause(&self.vcpu_threads)?;
        if let Err(e) = self.event_loop.pause() {
            self.control.resume();
            return Err(e.into());
        }
        Ok(())
    }

    /// Starts the devices, then the vCPUs.
    pub fn resume(&self) {
        self.resume_devices();
        self.control.resume();
    }

    fn resume_devices(&self) {
        self.event_loop.resume();
    }

    /// The serial console's pseudo-terminal, in Pty mode.
    pub fn serial_pty(&self) -> Option<&std::path::Path> {
        self.serial_pty.as_deref()
    }

    /// The CPUID profile in force (never `Auto`).
    pub fn cpu_profile(&self) -> CpuProfile {
        self.cpu_profile
    }

    /// Number of vCPU threads.
    pub fn vcpu_count(&self) -> usize {
        self.vcpu_threads.len()
    }

    /// CPU time the vCPU threads have used, in seconds (for the energy model's utilisation).
    pub fn vcpu_cpu_seconds(&self) -> f64 {
        self.vcpu_threads.iter().map(thread_cpu_seconds).sum()
    }

    /// The FACS firmware waking vector the guest set before sleeping, if any: the 64-bit
    /// X_FIRMWARE_WAKING_VECTOR when non-zero, else the 32-bit one.
    pub fn waking_vector(&self) -> Option<u64> {
        let x: u64 = self
            .memory
            .read_obj(GuestAddress(FACS_ADDR + FACS_X_WAKING_VECTOR))
            .ok()?;
        let legacy: u32 = self
            .memory
            .read_obj(GuestAddress(FACS_ADDR + FACS_WAKING_VECTOR))
            .ok()?;
        match (x, legacy) {
            (0, 0) => None,
            (0, v) => Some(u64::from(v)),
            (v, _) => Some(v),
        }
    }

    /// Wakes the VM from a sleep state: WAK_STS set, and the boot vCPU restarted at
    /// `vector` when the guest put itself to sleep (else it continues where it stopped).
    pub fn wake(&self, vector: Option<u64>) {
        self.wake_status.store(true, Ordering::SeqCst);
        self.resume_devices();
        match vector {
            Some(v) => self.control.resume_at(v),
            None => self.control.resume(),
        }
    }

    /// Plugs or unplugs vCPUs so the guest has `desired`: new ones are created (they wait for
    /// the guest's INIT/SIPI) and announced as inserting; surplus ones are announced as
    /// removing and leave when the guest ejects them. KVM cannot destroy a vCPU, so an
    /// ejected one stays parked and is reused if it is plugged again.
    pub fn resize_vcpus(&mut self, desired: u8) -> Result<(), VmError> {
        let mut changed = false;
        for id in 0..self.hotplug.max_vcpus {
            let plugged = self.cpu_slots.lock()[usize::from(id)].enabled;
            if id < desired && !plugged {
                if usize::from(id) >= self.vcpus.len() {
                    self.add_vcpu(id)?;
                }
                self.cpu_slots.lock()[usize::from(id)] = CpuSlot {
                    enabled: true,
                    inserting: true,
                    removing: false,
                };
                changed = true;
            } else if id >= desired && plugged {
                self.cpu_slots.lock()[usize::from(id)].removing = true;
                changed = true;
            }
        }
        if changed {
            self.ged
                .notify(GED_EVENT_CPU_HOTPLUG)
                .map_err(|source| VmError::Irq {
                    what: "GED",
                    source,
                })?;
        }
        Ok(())
    }

    fn add_vcpu(&mut self, id: u8) -> Result<(), VmError> {
        let thread = VcpuThread::spawn(id)?;
        let vcpu = Vcpu::new(&self.kvm.fd, id, self.hotplug.ctx.clone())?;
        vcpu.configure(
            &self.hotplug.cpuid,
            self.hotplug.max_vcpus,
            &self.memory,
            None,
        )?;
        let vcpu = Arc::new(Mutex::new(vcpu));
        self.vcpu_threads.push(thread.launch(vcpu.clone())?);
        self.vcpus.push(vcpu);
        Ok(())
    }

    /// vCPUs the guest has (plugged and not ejected).
    pub fn enabled_vcpus(&self) -> usize {
        self.cpu_slots.enabled()
    }

    /// Gives the (stopped) guest's RAM to the memory servers: present pages are written there
    /// and dropped locally; they fault back in when touched. Returns the bytes written.
    pub fn evict_to_remote(
        &mut self,
        remote: &crate::config::RemoteRamConfig,
    ) -> Result<u64, VmError> {
        if self.template_memory.is_some() {
            return Err(VmError::Snapshot(
                "RAM extension needs anonymous guest memory; a template clone's memory is a file mapping".into(),
            ));
        }
        if self.remote_ram.is_none() {
            self.set_remote_ram(Some(crate::ram_ext::RemoteRam::start(
                remote,
                &self.memory,
                false,
            )?));
        }
        let ram = self
            .remote_ram
            .as_ref()
            .ok_or_else(|| VmError::RamExt("remote RAM missing".into()))?;
        Ok(ram.evict_all()?)
    }

    /// Installs the VM's RAM extension; pages the guest gives up go through its engine.
    pub(crate) fn set_remote_ram(&mut self, ram: Option<crate::ram_ext::RemoteRam>) {
        self.discard
            .set_ram_ext(ram.as_ref().and_then(|r| r.discarder()));
        self.remote_ram = ram;
    }

    /// Presses the (ACPI) power button: a GED event the guest's button driver sees.
    pub fn press_power_button(&self) -> Result<(), VmError> {
        self.ged
            .notify(GED_EVENT_POWER_BUTTON)
            .map_err(|source| VmError::Irq {
                what: "GED",
                source,
            })
    }

    /// Each network card's id, MAC, tap and counters, in config order.
    pub fn net_info(&self) -> Vec<NetInfo> {
        self.virtio_net
            .iter()
            .map(|n| {
                let d = n.device.lock().unwrap_or_else(|p| p.into_inner());
                NetInfo {
                    id: d.id().to_string(),
                    mac: d.mac().to_string(),
                    tap: d.tap().if_name().to_string(),
                    counters: d.counters(),
                }
            })
            .collect()
    }

    pub fn counters(&self) -> VmCounters {
        let ram_ext = self.remote_ram.as_ref().map(|r| r.counters());
        VmCounters {
            pio_exits: self.counters.pio.load(Ordering::Relaxed),
            mmio_exits: self.counters.mmio.load(Ordering::Relaxed),
            other_exits: self.counters.other.load(Ordering::Relaxed),
            memory_faults: self.memory_faults()
                + ram_ext
                    .as_ref()
                    .map_or(0, |c| c.remote_faults + c.zero_faults),
            remote_bytes_out: ram_ext.as_ref().map_or(0, |c| c.bytes_out),
            ram_ext,
            balloon: self.balloon(),
            net: self.net_info(),
            pci_devices: self.pci_devices(),
            fallback_emulations: self
                .counters
                .fallbacks
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
            syscalls: self.counters.syscalls.load(Ordering::Relaxed),
            test_reports: self
                .test_reports
                .as_ref()
                .map(|r| r.lock().unwrap_or_else(|p| p.into_inner()).clone())
                .unwrap_or_default(),
        }
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        // vCPU threads first: nothing may touch guest memory or devices after this.
        self.control.stop(std::mem::take(&mut self.vcpu_threads));
        // Then the RAM extension's threads, which read guest memory, before it is unmapped.
        self.remote_ram = None;
    }
}

/// Whether the vCPUs get a SYSCALL bridge: on PVM hosts with the pvm-safe profile
/// (`vstate::syscall_bridge`); a `booting` VM gets the bridge's pages written, a restored
/// one has them from its template. Without it the VM still runs, but its guest
/// kernel can't serve system calls from user mode.
pub(crate) fn syscall_bridge(
    kvm: &KvmVm,
    memory: &GuestMemoryMmap,
    profile: CpuProfile,
    booting: bool,
) -> bool {
    // The filter was set when the VM was created (`vstate::vm_fd::create_vm`) on PVM hosts.
    if profile != CpuProfile::PvmSafe || !kvm.lstar_filtered {
        return false;
    }
    let enabled = match booting {
        true => crate::vstate::syscall_bridge::write_pages(memory),
        false => Ok(()),
    };
    match enabled {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!("no SYSCALL bridge: guest user mode can't make system calls: {e}");
            false
        }
    }
}

/// The guest's command line plus what the CPU profile needs the kernel to know (unless the
/// user already chose `clearcpuid=` themselves).
fn linux_cmdline(cmdline: &str, profile: CpuProfile) -> String {
    if profile == CpuProfile::PvmSafe && !cmdline.contains("clearcpuid=") {
        tracing::info!(
            "pvm-safe CPU profile: adding `{PVM_SAFE_LINUX_CMDLINE}` to the kernel command line"
        );
        format!("{cmdline} {PVM_SAFE_LINUX_CMDLINE}")
    } else {
        cmdline.to_string()
    }
}

/// FACS field offsets (ACPI 6.5, 5.2.10).
const FACS_WAKING_VECTOR: u64 = 12;
const FACS_X_WAKING_VECTOR: u64 = 24;

/// CPU time of one thread, from its per-thread CPU clock.
fn thread_cpu_seconds(thread: &JoinHandle<()>) -> f64 {
    use std::os::unix::thread::JoinHandleExt;
    let mut clock: libc::clockid_t = 0;
    // SAFETY: the pthread_t comes from a JoinHandle we still own, so the thread has not been
    // joined or detached; `clock` is a valid out-pointer.
    if unsafe { libc::pthread_getcpuclockid(thread.as_pthread_t(), &mut clock) } != 0 {
        return 0.0;
    }
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `clock` was just obtained for a live thread and `ts` is a valid out-pointer.
    if unsafe { libc::clock_gettime(clock, &mut ts) } != 0 {
        return 0.0;
    }
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

/// KVM_GET_SUPPORTED_CPUID on its own /dev/kvm handle (~0.3 ms here).
fn supported_cpuid() -> Result<kvm_bindings::CpuId, VmError> {
    let kvm = kvm_ioctls::Kvm::new().map_err(|e| VmError::Kvm(VmFdError::OpenKvm(e)))?;
    kvm.get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
        .map_err(VmError::Cpuid)
}

/// Logs how long each boot stage took (debug level), to see where start latency goes.
pub(crate) struct StageTimer {
    last: std::time::Instant,
}

impl StageTimer {
    pub(crate) fn new() -> Self {
        StageTimer {
            last: std::time::Instant::now(),
        }
    }

    pub(crate) fn stage(&mut self, what: &str) {
        let now = std::time::Instant::now();
        tracing::debug!("stage: {what} in {} us", (now - self.last).as_micros());
        self.last = now;
    }
}

/// Threads for `count` vCPUs, started early so their creation overlaps VM setup.
pub(crate) fn spawn_vcpu_threads(count: u8) -> Result<Vec<VcpuThread>, VmError> {
    Ok((0..count)
        .map(VcpuThread::spawn)
        .collect::<Result<Vec<_>, _>>()?)
}

/// What hot-plugging a vCPU needs: the CPUID every vCPU gets, the context it runs in, and how
/// many vCPUs the VM may have.
pub(crate) struct Hotplug {
    pub(crate) cpuid: kvm_bindings::CpuId,
    pub(crate) ctx: VcpuContext,
    pub(crate) max_vcpus: u8,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pvm_safe_tells_linux_what_cpuid_cannot_hide() {
        let c = linux_cmdline("console=ttyS0", CpuProfile::PvmSafe);
        assert!(
            c.starts_with("console=ttyS0 noxsave clearcpuid=popcnt,"),
            "{c}"
        );
        assert_eq!(
            linux_cmdline("console=ttyS0", CpuProfile::Host),
            "console=ttyS0"
        );
        // A user's own clearcpuid= wins.
        assert_eq!(
            linux_cmdline("clearcpuid=avx", CpuProfile::PvmSafe),
            "clearcpuid=avx"
        );
    }
}
