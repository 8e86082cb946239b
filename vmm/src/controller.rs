//! The VM lifecycle behind the API and the CLI: which request is allowed in which state.

mod devices;
pub use devices::Added;

use std::sync::mpsc::Sender;

use serde::Serialize;

use revenant_acpi::power::{HostState, PowerProfile};

use crate::boot::cpuid::CpuProfile;
use crate::config::{ConfigError, SleepState, VmConfig};
use crate::devices::exit::{ExitSignal, GuestExit};
use crate::energy::{EnergyReport, PowerPhase, VmEnergy};
use crate::snapshot::MemoryRestoreMode;
use crate::vm::{MemoryHotplugInfo, Vm, VmCounters, VmError};

/// State names exactly as Cloud Hypervisor reports them (kata compares the strings), plus
/// `Sleeping` (S3 or Sz, see `sleep_state` in `vm.info`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum VmState {
    Created,
    Running,
    Paused,
    Shutdown,
    Sleeping,
}

/// Why the VM sleeps: who put it there decides how it wakes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Sleep {
    state: SleepState,
    /// The guest wrote the sleep register: it resumes at its FACS waking vector. A sleep the
    /// host imposed (`vm.sleep`) resumes where the vCPUs stopped.
    by_guest: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The request is fine but not in this state (HTTP 409).
    #[error("{0}")]
    WrongState(String),
    /// The request or configuration is wrong (HTTP 400), naming the field.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The VMM failed to do something it should have been able to do (HTTP 500).
    #[error(transparent)]
    Vm(VmError),
}

impl From<VmError> for ControlError {
    fn from(e: VmError) -> Self {
        match e.config_error() {
            Some(c) => ControlError::Config(c),
            None => ControlError::Vm(e),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct VmInfo {
    pub config: VmConfig,
    pub state: VmState,
    /// The boot RAM (`memory.size`, or the zones' total) plus the memory the guest has plugged
    /// through virtio-mem.
    pub memory_actual_size: u64,
    /// Revenant extension: virtio-mem's requested and plugged sizes (absent without
    /// `memory.hotplug_size`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_hotplug: Option<MemoryHotplugInfo>,
    /// `S0` unless the VM sleeps (`S3` or `Sz`).
    pub sleep_state: &'static str,
    /// The CPUID profile in force once booted (`host` or `pvm-safe`), else the one asked for.
    pub cpu_profile: CpuProfile,
}

#[derive(Debug, Serialize)]
pub struct CountersReport {
    #[serde(flatten)]
    pub exits: VmCounters,
    pub energy: EnergyReport,
}

/// A guest stop, tagged with the boot it belongs to so a late message from a VM that has
/// already been replaced cannot stop its successor.
pub type TaggedExit = (u64, GuestExit);

pub struct Controller {
    config: Option<VmConfig>,
    vm: Option<Vm>,
    state: VmState,
    exits: Sender<TaggedExit>,
    generation: u64,
    last_exit: Option<GuestExit>,
    /// The template a restored VM came from (for its working set).
    template_dir: Option<std::path::PathBuf>,
    sleep: Option<Sleep>,
    energy: Option<VmEnergy>,
    power_profile: PowerProfile,
    /// A KVM VM and guest memory created ahead of a restore (fork pool), used by `vm.restore`.
    prepared: Option<crate::vm::PreparedVm>,
    /// The template a linked snapshot made of this VM's RAM when its RAM could not be remapped
    /// copy-on-write afterwards (it still writes the template's memory file): the VM must not
    /// run again.
    sealed: Option<std::path::PathBuf>,
    /// Zone files linked into templates by this VMM: a later boot must not write into them.
    linked: Vec<crate::snapshot::LinkedMemory>,
}

impl Controller {
    pub fn new(exits: Sender<TaggedExit>) -> Self {
        Controller {
            config: None,
            vm: None,
            state: VmState::Created,
            exits,
            generation: 0,
            last_exit: None,
            template_dir: None,
            sleep: None,
            energy: None,
            power_profile: PowerProfile::default(),
            prepared: None,
            sealed: None,
            linked: Vec::new(),
        }
    }

    /// Creates the KVM VM and reserves `memory_size` bytes of guest RAM now, so a later
    /// `vm.restore` of a template with that memory size only maps memory and sets state.
    pub fn prepare_vm(&mut self, memory_size: u64) -> Result<(), VmError> {
        self.prepared = Some(crate::vm::PreparedVm::prepare(memory_size)?);
        Ok(())
    }

    /// Records the VM's power phase change for energy accounting.
    fn set_phase(&mut self, phase: PowerPhase) {
        let (cpu, vcpus) = self
            .vm
            .as_ref()
            .map_or((0.0, 0), |vm| (vm.vcpu_cpu_seconds(), vm.vcpu_count()));
        if let Some(e) = &mut self.energy {
            e.set_phase(phase, cpu, vcpus);
        }
    }

    fn wrong_state(&self, action: &str) -> ControlError {
        match &self.config {
            None => ControlError::WrongState(format!(
                "cannot {action}: no VM has been created (call vm.create first)"
            )),
            Some(_) => {
                ControlError::WrongState(format!("cannot {action}: the VM is {:?}", self.state))
            }
        }
    }

    pub fn create(&mut self, config: VmConfig) -> Result<(), ControlError> {
        if self.config.is_some() {
            return Err(ControlError::WrongState(
                "a VM has already been created".into(),
            ));
        }
        config.validate()?;
        self.config = Some(config);
        self.state = VmState::Created;
        Ok(())
    }

    pub fn boot(&mut self) -> Result<(), ControlError> {
        let config = match (&self.config, self.state) {
            (Some(c), VmState::Created | VmState::Shutdown) => c,
            _ => return Err(self.wrong_state("boot")),
        };
        if let Some(why) = crate::snapshot::zone_file_conflict(config, &self.linked) {
            return Err(ControlError::WrongState(format!("cannot boot: {why}")));
        }
        self.generation += 1;
        let exit = ExitSignal::new(self.exits.clone(), self.generation);
        let vm = Vm::boot(config, exit)?;
        // Cards without a configured MAC got a random one: keep it in the config, so
        // vm.info shows it, a reboot keeps it and a template's clones start from it.
        if let Some(config) = self.config.as_mut() {
            for (cfg, dev) in config.net.iter_mut().zip(vm.net_info()) {
                cfg.mac = cfg.mac.or_else(|| dev.mac.parse().ok());
            }
        }
        self.vm = Some(vm);
        self.state = VmState::Running;
        self.last_exit = None;
        self.sleep = None;
        self.sealed = None;
        self.energy = Some(VmEnergy::new(&self.power_profile));
        Ok(())
    }

    pub fn pause(&mut self) -> Result<(), ControlError> {
        match (&self.vm, self.state) {
            (Some(vm), VmState::Running) => {
                vm.pause()?;
                self.state = VmState::Paused;
                self.set_phase(PowerPhase::Idle);
                Ok(())
            }
            _ => Err(self.wrong_state("pause")),
        }
    }

    pub fn resume(&mut self) -> Result<(), ControlError> {
        if let Some(template) = &self.sealed {
            return Err(ControlError::WrongState(format!(
                "cannot resume: vm.snapshot linked this VM's RAM (its shared memory file) into the template {} as its memory file, which clones map, and could not remap it copy-on-write (see the VMM's log); this VM must not run again: shut it down (vm.shutdown or vmm.shutdown)",
                template.display()
            )));
        }
        match (&self.vm, self.state) {
            (Some(vm), VmState::Paused) => {
                vm.resume();
                self.state = VmState::Running;
                self.set_phase(PowerPhase::Running);
                Ok(())
            }
            _ => Err(self.wrong_state("resume")),
        }
    }

    /// `vm.snapshot`: writes the paused VM into the template directory `destination_url`
    /// (`file:///path`).
    pub fn snapshot(
        &mut self,
        destination_url: &str,
        memory_servers: Option<&crate::remote_template::MemoryServers>,
    ) -> Result<(), ControlError> {
        let (Some(vm), Some(config), VmState::Paused) = (&self.vm, &self.config, self.state) else {
            return Err(self.wrong_state("snapshot (pause the VM first)"));
        };
        // TODO(issue 11): save hot-plugged PCI devices (transport, MSI-X routes, slot).
        if !vm.pci_devices().is_empty() {
            return Err(ControlError::WrongState(
                "devices hot-plugged on PCI are not saved in templates yet: remove them (vm.remove-device) or add them before boot".into(),
            ));
        }
        let dir = revenant_template::template_dir_from_url(destination_url)
            .map_err(|e| ConfigError::new("destination_url", e.to_string()))?;
        let started = std::time::Instant::now();
        let done = vm.snapshot(&dir, config)?;
        let manifest = done.manifest;
        let linked = done.linked.is_some();
        if let Some(l) = done.linked {
            if done.sealed {
                self.sealed = Some(l.template.clone());
            }
            self.linked.push(l);
        }
        if let Some(servers) = memory_servers {
            use crate::remote_template::RemoteTemplateError as E;
            crate::remote_template::upload(&dir, &manifest, servers).map_err(|e| match e {
                E::Servers(why) => {
                    ControlError::Config(ConfigError::new("memory_servers.servers", why))
                }
                E::Token { .. } => ControlError::Config(ConfigError::new(
                    "memory_servers.token_file",
                    e.to_string(),
                )),
                other => ControlError::Vm(VmError::Snapshot(other.to_string())),
            })?;
        }
        tracing::info!(
            "snapshot of {} data bytes to {} in {:.1} ms{}",
            manifest.memory.data_bytes,
            dir.display(),
            started.elapsed().as_secs_f64() * 1e3,
            if linked {
                " (memory file linked to the guest's shared memory file)"
            } else {
                ""
            }
        );
        Ok(())
    }

    /// `vm.restore`: builds a paused VM from a template, in a VMM that has no VM yet.
    pub fn restore(
        &mut self,
        source_url: &str,
        mode: MemoryRestoreMode,
        identity: &crate::clone_identity::CloneIdentity,
    ) -> Result<(), ControlError> {
        if self.config.is_some() {
            return Err(ControlError::WrongState(
                "cannot restore: this VMM already has a VM (restore into a fresh revenant process)"
                    .into(),
            ));
        }
        let dir = revenant_template::template_dir_from_url(source_url)
            .map_err(|e| ConfigError::new("source_url", e.to_string()))?;
        self.generation += 1;
        let exit = ExitSignal::new(self.exits.clone(), self.generation);
        let prepared = self.prepared.take();
        let (vm, config) =
            Vm::restore(&dir, mode, identity, exit, prepared).map_err(|e| match e {
                // A template that can't be read is the request's fault: name the field.
                VmError::Template(t) => {
                    ControlError::Config(ConfigError::new("source_url", t.to_string()))
                }
                VmError::Snapshot(why) => ControlError::Config(ConfigError::new("source_url", why)),
                other => ControlError::from(other),
            })?;
        self.vm = Some(vm);
        self.config = Some(config);
        self.template_dir = Some(dir);
        self.state = VmState::Paused;
        self.last_exit = None;
        self.sleep = None;
        self.energy = Some(VmEnergy::new(&self.power_profile));
        self.set_phase(PowerPhase::Idle);
        Ok(())
    }

    /// `vm.save-working-set`: records the pages this on-demand clone has touched next to its
    /// template, for later restores to load up front. Returns the number of pages.
    pub fn save_working_set(&mut self) -> Result<usize, ControlError> {
        let (Some(vm), Some(dir)) = (&self.vm, &self.template_dir) else {
            return Err(self.wrong_state("save a working set (restore from a template first)"));
        };
        vm.save_working_set(dir).map_err(|e| match e {
            VmError::Snapshot(why) => ControlError::WrongState(why),
            other => ControlError::from(other),
        })
    }

    /// Host-initiated sleep (`vm.sleep`): the vCPUs stop where they are.
    pub fn sleep(&mut self, state: SleepState) -> Result<(), ControlError> {
        match (&self.vm, self.state) {
            (Some(vm), VmState::Running) => {
                vm.pause()?;
                self.enter_sleep(Sleep {
                    state,
                    by_guest: false,
                });
                Ok(())
            }
            _ => Err(self.wrong_state("sleep")),
        }
    }

    fn enter_sleep(&mut self, sleep: Sleep) {
        tracing::info!("VM entered {:?}", sleep.state);
        // Sz: the zombie's memory goes to the memory servers (when it has some).
        let remote = self.config.as_ref().and_then(|c| c.memory.remote.clone());
        if let (SleepState::Sz, Some(remote), Some(vm)) = (sleep.state, remote, self.vm.as_mut()) {
            let started = std::time::Instant::now();
            match vm.evict_to_remote(&remote) {
                Ok(bytes) => tracing::info!(
                    "Sz: {bytes} bytes of guest RAM moved to memory servers in {:.1} ms",
                    started.elapsed().as_secs_f64() * 1e3
                ),
                Err(e) => tracing::error!("Sz: guest RAM stays local: {e}"),
            }
        }
        self.state = VmState::Sleeping;
        self.sleep = Some(sleep);
        self.set_phase(PowerPhase::Sleeping(match sleep.state {
            SleepState::S3 => HostState::S3,
            SleepState::Sz => HostState::Sz,
        }));
    }

    /// `vm.resize`: vCPUs hot-plugged or unplugged through the ACPI CPU hotplug controller,
    /// memory through virtio-mem (`desired_ram` is the guest's total: boot memory plus what
    /// virtio-mem should plug). Both are checked before either is applied. Asking for what
    /// the VM already has is a no-op success (kata sends it on every container create).
    /// `desired_balloon` is how much the guest should hold in its virtio-balloon.
    pub fn resize(
        &mut self,
        desired_vcpus: Option<u32>,
        desired_ram: Option<u64>,
        desired_balloon: Option<u64>,
    ) -> Result<(), ControlError> {
        let Some(config) = &self.config else {
            return Err(self.wrong_state("resize"));
        };
        let hotplug = desired_ram
            .map(|ram| config.memory.hotplug_request("desired_ram", ram))
            .transpose()?;
        if let Some(n) = desired_vcpus {
            if n == 0 || n > config.cpus.max_vcpus {
                return Err(ConfigError::new(
                    "desired_vcpus",
                    format!(
                        "must be between 1 and max_vcpus ({})",
                        config.cpus.max_vcpus
                    ),
                )
                .into());
            }
        }
        if let Some(size) = desired_balloon {
            validate_balloon_request(config, size)?;
        }
        match (&mut self.vm, self.state) {
            (_, VmState::Created | VmState::Shutdown) => {}
            (Some(vm), VmState::Running | VmState::Paused) => {
                if let Some(size) = desired_balloon {
                    vm.resize_balloon(size)?;
                }
                if let Some(n) = desired_vcpus {
                    vm.resize_vcpus(n as u8)?;
                }
                if let Some(bytes) = hotplug {
                    vm.resize_memory(bytes)?;
                }
            }
            _ => return Err(self.wrong_state("resize")),
        }
        if let Some(config) = &mut self.config {
            if let Some(n) = desired_vcpus {
                config.cpus.boot_vcpus = n;
            }
            if let (Some(size), Some(b)) = (desired_balloon, &mut config.balloon) {
                b.size = size;
            }
            match hotplug {
                // Keep an untouched config as it was created (no hotplugged_size field).
                Some(0) if config.memory.hotplugged_size.is_none() => {}
                Some(bytes) => config.memory.hotplugged_size = Some(bytes),
                None => {}
            }
        }
        Ok(())
    }

    /// `vm.power-button`: wakes a sleeping VM, as a power button does; on a running VM it is
    /// a power-button event for the guest (through the GED).
    pub fn power_button(&mut self) -> Result<(), ControlError> {
        match (&self.vm, self.state) {
            (Some(_), VmState::Sleeping) => self.wake(),
            (Some(vm), VmState::Running) => Ok(vm.press_power_button()?),
            _ => Err(self.wrong_state("press the power button")),
        }
    }

    /// `vm.wake`: back to S0. A guest that slept on its own restarts at its waking vector.
    pub fn wake(&mut self) -> Result<(), ControlError> {
        let (Some(vm), Some(sleep)) = (&self.vm, self.sleep) else {
            return Err(self.wrong_state("wake"));
        };
        let vector = if sleep.by_guest {
            let v = vm.waking_vector();
            if v.is_none() {
                // Linux on HW-reduced ACPI ignores the FACS and treats a return from its
                // sleep register write as the resume (wakeup_64.S: `jmp .Lresume_point`).
                tracing::info!(
                    "guest slept without setting a FACS waking vector; resuming after its \
                     sleep register write"
                );
            }
            v
        } else {
            None
        };
        vm.wake(vector);
        self.sleep = None;
        self.state = VmState::Running;
        self.set_phase(PowerPhase::Running);
        Ok(())
    }

    /// Stops the VM; its configuration stays, so `vm.boot` can start it again.
    pub fn shutdown(&mut self) -> Result<(), ControlError> {
        match self.state {
            VmState::Running | VmState::Paused | VmState::Sleeping if self.vm.is_some() => {
                self.set_phase(PowerPhase::Off);
                self.vm = None;
                self.sleep = None;
                self.sealed = None;
                self.state = VmState::Shutdown;
                Ok(())
            }
            _ => Err(self.wrong_state("shut down")),
        }
    }

    pub fn info(&self) -> Result<VmInfo, ControlError> {
        let mut config = self
            .config
            .clone()
            .ok_or_else(|| self.wrong_state("report info"))?;
        // Where a Pty console is, as Cloud Hypervisor reports it: in serial.file.
        if let Some(path) = self.vm.as_ref().and_then(Vm::serial_pty) {
            config.serial.file = Some(path.to_path_buf());
        }
        let memory_hotplug = match &self.vm {
            Some(vm) => vm.memory_hotplug(),
            None => MemoryHotplugInfo::from_config(&config),
        };
        // What the guest has: its boot memory and what it plugged (not what was requested),
        // less what it holds in its balloon (as Cloud Hypervisor reports it).
        let ballooned = self.vm.as_ref().map_or(0, Vm::balloon_actual_bytes);
        let memory_actual_size = (config.memory.ram_size()
            + memory_hotplug.map_or(0, |m| m.plugged_size))
        .saturating_sub(ballooned);
        let sleep_state = match self.sleep.map(|s| s.state) {
            None => "S0",
            Some(SleepState::S3) => "S3",
            Some(SleepState::Sz) => "Sz",
        };
        let cpu_profile = self.vm.as_ref().map_or(config.cpu_profile, Vm::cpu_profile);
        Ok(VmInfo {
            config,
            state: self.state,
            memory_actual_size,
            memory_hotplug,
            sleep_state,
            cpu_profile,
        })
    }

    pub fn counters(&mut self) -> Result<CountersReport, ControlError> {
        let Some(vm) = &self.vm else {
            return Err(self.wrong_state("report counters"));
        };
        let exits = vm.counters();
        let (cpu, vcpus) = (vm.vcpu_cpu_seconds(), vm.vcpu_count());
        let energy = self
            .energy
            .as_mut()
            .map(|e| e.report(cpu, vcpus))
            .unwrap_or_default();
        Ok(CountersReport { exits, energy })
    }

    /// The guest stopped on its own (power off, reset, crash): tear the VM down.
    pub fn on_guest_exit(&mut self, (generation, exit): TaggedExit) {
        if generation != self.generation || self.vm.is_none() {
            return;
        }
        if exit == GuestExit::SleepRequested {
            let mode = self
                .config
                .as_ref()
                .map(|c| c.sleep_mode)
                .unwrap_or_default();
            let paused = self.vm.as_ref().map(|vm| vm.pause());
            match paused {
                Some(Ok(())) if self.state == VmState::Running => {
                    return self.enter_sleep(Sleep {
                        state: mode,
                        by_guest: true,
                    });
                }
                Some(Err(e)) => tracing::error!("cannot stop the vCPUs for sleep: {e}"),
                _ => tracing::warn!("sleep request ignored: the VM is {:?}", self.state),
            }
            return;
        }
        self.set_phase(PowerPhase::Off);
        match &exit {
            GuestExit::Crash(why) => tracing::error!("guest crashed: {why}"),
            other => tracing::info!("guest stopped: {other:?}"),
        }
        self.vm = None;
        self.sealed = None;
        self.state = VmState::Shutdown;
        self.last_exit = Some(exit);
    }

    pub fn last_exit(&self) -> Option<&GuestExit> {
        self.last_exit.as_ref()
    }
}

/// `desired_balloon` against the config: the VM has a balloon, and the size is whole 4 KiB
/// pages within the guest's memory.
fn validate_balloon_request(config: &VmConfig, size: u64) -> Result<(), ConfigError> {
    if config.balloon.is_none() {
        return Err(ConfigError::new(
            "desired_balloon",
            "this VM has no balloon device (balloon in vm.create)",
        ));
    }
    if size % 4096 != 0 {
        return Err(ConfigError::new(
            "desired_balloon",
            format!("{size} is not a whole number of 4 KiB pages"),
        ));
    }
    let memory = config.memory.ram_size() + config.memory.hotplugged_size.unwrap_or(0);
    if size > memory {
        return Err(ConfigError::new(
            "desired_balloon",
            format!("{size} is more than the guest's memory ({memory})"),
        ));
    }
    Ok(())
}
