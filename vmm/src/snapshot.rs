//! `vm.snapshot` and `vm.restore`: a paused VM captured into a template directory (the
//! `revenant-template` format), and a paused VM rebuilt from one in a fresh process, its
//! memory copied, mapped copy-on-write from the template (forks share untouched pages), or
//! loaded on first touch.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use revenant_template::{
    open_template, open_template_state, save_template, save_template_from_files, FileRegionRef,
    GuestRegionRef, MemoryFileOrigin, PageScan, RestoreMode, SaveOptions, SnapshotOptions,
    TemplateManifest,
};
use serde::{Deserialize, Serialize};
use vm_memory::{GuestAddress, GuestMemoryBackend, GuestMemoryRegion};

use revenant_acpi::platform::GED_EVENT_VMGENID;

use crate::boot::cpuid::CpuProfile;
use crate::config::VmConfig;
use crate::devices::exit::ExitSignal;
use crate::vm::{spawn_vcpu_threads, Devices, DevicesState, Hotplug, StageTimer, Vm, VmError};
use crate::vstate::memory::{GuestMemoryMmap, GuestRegionMmap};
use crate::vstate::persist::{KvmVmState, VcpuState};
use crate::vstate::run_control::{install_kick_handler, RunControl};
use crate::vstate::vcpu::{ExitCounters, Vcpu};
use crate::vstate::vm_fd::create_vm;
use crate::vstate::zone_memory::{self, FileId, SharedFileRegion};

/// Everything besides guest memory that a template holds.
#[derive(Debug, Serialize, Deserialize)]
pub struct VmSnapshot {
    pub kvm: KvmVmState,
    pub vcpus: Vec<VcpuState>,
    pub devices: DevicesState,
    pub cpu_profile: CpuProfile,
    pub has_pit: bool,
}

/// How a restored VM gets its memory (`memory_restore_mode` in `vm.restore`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MemoryRestoreMode {
    /// Read the whole memory file into private memory.
    Copy,
    /// Map the memory file MAP_PRIVATE: untouched pages stay shared by every clone.
    #[default]
    Cow,
    /// userfaultfd: each page is read from the memory file when first touched.
    Ondemand,
    /// userfaultfd: each page is read from the memory servers the template was uploaded to
    /// (`vm.snapshot` with `memory_servers`), when first touched.
    Remote,
}

/// What `vm.snapshot` wrote.
#[derive(Debug)]
pub struct SnapshotDone {
    pub manifest: TemplateManifest,
    /// Set when the template's memory file is a hard link to the VM's shared memory file
    /// (a zone's, or `memory.shared`'s unnamed file).
    pub linked: Option<LinkedMemory>,
    /// The VM's RAM could not be remapped copy-on-write after the link: it still writes the
    /// template's memory file, so it must never run again.
    pub sealed: bool,
}

/// A zone file that a snapshot made into a template's memory file (the same inode).
#[derive(Clone, Debug)]
pub struct LinkedMemory {
    /// The template directory.
    pub template: PathBuf,
    pub zone_file: FileId,
}

impl Vm {
    /// Writes this (paused) VM into the template directory `dir`.
    ///
    /// A VM whose RAM is all shared files (zones, `memory.shared`) needs no copy: the memory
    /// file is linked to (or copied in the kernel from) those files. After a link the VM's own
    /// mapping is made copy-on-write, so nothing this VMM or the guest does (it may be resumed)
    /// can change the template through it any more.
    pub fn snapshot(&self, dir: &Path, config: &VmConfig) -> Result<SnapshotDone, VmError> {
        // The controller refuses first, with a clearer status; this keeps the rule here too.
        if !self.pci.is_empty() {
            return Err(VmError::Snapshot(
                "devices hot-plugged on PCI are not saved in templates yet".into(),
            ));
        }
        let vcpus = self
            .vcpus
            .iter()
            .map(|v| {
                v.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .save_state(&self.kvm.kvm)
            })
            .collect::<Result<Vec<_>, _>>()?;
        // TODO(issue 8): save the plugged blocks' contents with the template.
        if self.memory_hotplug().is_some_and(|m| m.plugged_size > 0) {
            return Err(VmError::Snapshot(
                "hot-plugged memory is not saved in templates yet: snapshot before plugging, or resize to memory.size and let the guest unplug first".into(),
            ));
        }
        let state = VmSnapshot {
            kvm: KvmVmState::save(&self.kvm.fd, self.has_pit)?,
            vcpus,
            devices: DevicesState {
                serial: self
                    .serial
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .snapshot(),
                wake_status: self.wake_status.load(Ordering::SeqCst),
                virtio_blk: self.virtio_blk.iter().map(|d| d.snapshot()).collect(),
                virtio_mem: self.virtio_mem.as_ref().map(|m| m.snapshot()),
                virtio_vsock: self.virtio_vsock.as_ref().map(|d| d.snapshot()),
                virtio_balloon: self.virtio_balloon.as_ref().map(|d| d.snapshot()),
                virtio_rng: self.virtio_rng.as_ref().map(|d| d.snapshot()),
                virtio_net: self.virtio_net.iter().map(|d| d.snapshot()).collect(),
            },
            cpu_profile: self.cpu_profile,
            has_pit: self.has_pit,
        };
        let regions = self
            .memory
            .iter()
            .map(|r| {
                // SAFETY: the region is a live mapping of `r.len()` bytes owned by this VM,
                // which outlives the call; the vCPUs are paused, so nothing writes it meanwhile.
                unsafe {
                    GuestRegionRef::from_raw_parts(r.start_addr().0, r.as_ptr(), r.len() as usize)
                }
            })
            .collect::<Vec<_>>();
        let opts = SnapshotOptions {
            memory: SaveOptions {
                // A restored VM's memory is a file mapping whose untouched pages still hold
                // template data (so may a file zone's): pagemap can't see those, so read every
                // page.
                scan: if self.template_memory.is_some()
                    || zone_memory::has_file_regions(&self.memory)
                {
                    PageScan::AllPages
                } else {
                    PageScan::Pagemap
                },
                ..SaveOptions::default()
            },
            ..SnapshotOptions::default()
        };
        let source = serde_json::to_value(config).map_err(|e| VmError::Snapshot(e.to_string()))?;
        // Once made private (an earlier linked snapshot), the files hold that template, not
        // this guest's RAM: copy.
        if self.template_memory.is_none() && !self.discard.files_private() {
            if let Some(files) = zone_memory::shared_file_regions(&self.memory) {
                return self.snapshot_from_files(dir, &files, &state, &source, &opts);
            }
        }
        Ok(SnapshotDone {
            manifest: save_template(dir, &regions, &state, &source, &opts)?,
            linked: None,
            sealed: false,
        })
    }

    /// [`Vm::snapshot`] for RAM that is all MAP_SHARED file ranges.
    fn snapshot_from_files(
        &self,
        dir: &Path,
        files: &[SharedFileRegion],
        state: &VmSnapshot,
        source: &serde_json::Value,
        opts: &SnapshotOptions,
    ) -> Result<SnapshotDone, VmError> {
        let refs: Vec<FileRegionRef<'_>> = files
            .iter()
            .map(|f| FileRegionRef {
                guest_addr: f.guest_addr,
                size: f.size,
                file: &f.file,
                file_offset: f.file_offset,
            })
            .collect();
        // Known before anything is written: a linked template must always be recorded.
        let zone_file = match files.first() {
            Some(f) => FileId::of(&f.file)
                .map_err(|e| VmError::Snapshot(format!("cannot stat the zone file: {e}")))?,
            None => return Err(VmError::Snapshot("the VM has no memory".into())),
        };
        let mut timer = StageTimer::new();
        let (manifest, origin) = save_template_from_files(dir, &refs, state, source, opts)?;
        timer.stage(match origin {
            MemoryFileOrigin::Linked => {
                "snapshot: memory file linked to the guest's shared memory file"
            }
            MemoryFileOrigin::Copied => {
                "snapshot: memory file copied from the guest's shared memory files"
            }
        });
        let (linked, sealed) = match origin {
            MemoryFileOrigin::Copied => (None, false),
            MemoryFileOrigin::Linked => {
                // The link is made and recorded whatever happens here. Discards must never
                // punch pages out of the file again, remapped or not.
                self.discard.mark_files_private();
                let sealed = match zone_memory::make_private(&self.memory) {
                    Ok(()) => false,
                    Err(e) => {
                        tracing::error!("after linking the guest's memory file into the template (this VM cannot run again): {e}");
                        true
                    }
                };
                timer.stage("snapshot: guest memory remapped copy-on-write");
                let linked = LinkedMemory {
                    template: dir.to_path_buf(),
                    zone_file,
                };
                (Some(linked), sealed)
            }
        };
        Ok(SnapshotDone {
            manifest,
            linked,
            sealed,
        })
    }

    /// Builds a paused VM from the template in `dir`; returns it with the source VM's
    /// configuration. Nothing is left running if any step fails.
    pub fn restore(
        dir: &Path,
        mode: MemoryRestoreMode,
        identity: &crate::clone_identity::CloneIdentity,
        exit: ExitSignal,
        prepared: Option<crate::vm::PreparedVm>,
    ) -> Result<(Vm, VmConfig), VmError> {
        let mut timer = StageTimer::new();
        // A remote restore reads memory from the servers: the local memory file may be gone.
        let template = if mode == MemoryRestoreMode::Remote {
            open_template_state::<VmSnapshot>(dir)?
        } else {
            open_template::<VmSnapshot>(dir)?
        };
        let mut config: VmConfig = template
            .manifest
            .source_config()
            .and_then(serde_json::from_value)
            .map_err(|e| {
                VmError::Snapshot(format!(
                    "the template's VM configuration is unreadable: {e}"
                ))
            })?;
        identity.apply(&mut config)?;
        // The template VM's zone files are its own (after a linked snapshot, the template's
        // memory file itself): the clone's memory comes from the template, and neither
        // vm.info nor a later reboot of the clone may touch those files.
        config.memory.forget_zone_files();
        let state = &template.vm_state;
        if state.vcpus.is_empty() || state.vcpus.len() > usize::from(u8::MAX) {
            return Err(VmError::Snapshot(format!(
                "the template has {} vCPUs",
                state.vcpus.len()
            )));
        }
        timer.stage("restore: template opened and verified");
        install_kick_handler()?;
        let threads = spawn_vcpu_threads(state.vcpus.len() as u8)?;
        // On-demand restores load the template's recorded working set first, in batches.
        let working_set = match mode {
            MemoryRestoreMode::Ondemand | MemoryRestoreMode::Remote => read_working_set(dir),
            _ => Vec::new(),
        };
        let hotplug = crate::vm::hotplug_region(&config)?;
        // A prepared VM (fork pool) already has its KVM VM and memory slots: map the template
        // over its reserved memory and skip creating a VM, when the layouts match.
        let local_mode = match mode {
            MemoryRestoreMode::Copy => Some(RestoreMode::Copy),
            MemoryRestoreMode::Cow => Some(RestoreMode::Cow),
            MemoryRestoreMode::Ondemand => Some(RestoreMode::OnDemand),
            MemoryRestoreMode::Remote => None,
        };
        let mut prepared_kvm = None;
        let mut prepared_mapping = None;
        match (prepared, local_mode) {
            (Some(p), Some(m)) if hotplug.is_none() => {
                match template.map_memory_into(m, &working_set, p.regions) {
                    Ok(mapping) => {
                        prepared_kvm = Some(p.kvm);
                        prepared_mapping = Some(mapping);
                    }
                    Err(e) => tracing::info!("prepared VM not used: {e}"),
                }
            }
            (Some(_), _) => tracing::info!(
                "prepared VM not used: {mode:?} restores and templates with hot-plug memory need a fresh VM"
            ),
            (None, _) => {}
        }
        let mapping = match (prepared_mapping, mode) {
            (Some(m), _) => m,
            (None, MemoryRestoreMode::Copy) => template.map_memory(RestoreMode::Copy)?,
            (None, MemoryRestoreMode::Cow) => template.map_memory(RestoreMode::Cow)?,
            (None, MemoryRestoreMode::Ondemand) => {
                template.map_memory_prefetched(RestoreMode::OnDemand, &working_set)?
            }
            (None, MemoryRestoreMode::Remote) => {
                let source = crate::remote_template::open(dir)
                    .map_err(|e| VmError::Snapshot(e.to_string()))?;
                revenant_template::map_memory_from(
                    &template.manifest.memory,
                    Box::new(source),
                    &working_set,
                )
                .map_err(|e| VmError::Snapshot(format!("cannot map remote memory: {e}")))?
            }
        };
        mapping.wait_prefetched();
        timer.stage("restore: memory mapped");
        let memory = guest_memory_over(&mapping)?;
        let guest_memory = crate::vm::guest_memory(&memory, hotplug.as_ref())?;
        let kvm = match prepared_kvm {
            Some(kvm) => {
                tracing::info!(
                    "restore: into the prepared VM (KVM VM and memory slots made ahead)"
                );
                if state.has_pit {
                    crate::vstate::vm_fd::create_pit(&kvm)?;
                }
                timer.stage("restore: prepared KVM VM taken");
                kvm
            }
            None => {
                let kvm = create_vm(&guest_memory, state.has_pit)?;
                timer.stage("restore: KVM VM created");
                kvm
            }
        };
        state.kvm.restore(&kvm.fd)?;
        // A clone is a new VM: a new generation ID tells its guest to reseed what it shares
        // with its siblings (ACPI VMGenID).
        crate::boot::acpi::write_generation_id(&memory)?;

        let control = Arc::new(RunControl::default());
        // Restored VMs come up paused (kata expects "Paused" after vm.restore).
        control.request_pause();
        let virtio = crate::vm::virtio_layout(&config)?;
        let devices = Devices::build(
            &config,
            &kvm,
            &guest_memory,
            &virtio,
            &exit,
            &control,
            Some(&state.devices),
            state.vcpus.len(),
            hotplug.as_ref(),
        )?;
        let counters = Arc::new(ExitCounters::default());
        let bridge = crate::vm::syscall_bridge(&kvm, &guest_memory, state.cpu_profile, false);
        let ctx = devices.vcpu_context(exit, &control, &counters, &guest_memory, bridge);
        let hotplug = Hotplug {
            cpuid: kvm_bindings::CpuId::from_entries(&state.vcpus[0].cpuid)
                .map_err(|_| VmError::Snapshot("the template's CPUID does not fit".into()))?,
            ctx: ctx.clone(),
            max_vcpus: config
                .cpus
                .max_vcpus
                .max(state.vcpus.len() as u32)
                .min(u32::from(u8::MAX)) as u8,
        };
        let mut vcpus = Vec::with_capacity(state.vcpus.len());
        for saved in &state.vcpus {
            let mut vcpu = Vcpu::new(&kvm.fd, saved.id, ctx.clone())?;
            vcpu.restore_state(saved)?;
            vcpus.push(vcpu);
        }
        timer.stage("restore: VM state, devices and vCPU state set");
        let vm = Vm::assemble(
            control,
            counters,
            devices,
            hotplug,
            state.cpu_profile,
            state.has_pit,
            kvm,
            memory,
            Some(mapping),
            threads,
            vcpus,
        )?;
        vm.pause()?;
        timer.stage("restore: vCPU threads running, parked");
        // ... and the guest is told through the GED (Notify VGEN), delivered when it runs.
        vm.ged
            .notify(GED_EVENT_VMGENID)
            .map_err(|source| VmError::Irq {
                what: "GED",
                source,
            })?;
        vm.resume_restored_virtio();
        Ok((vm, config))
    }

    /// Writes the pages this on-demand clone has faulted in so far into the template's
    /// working-set file, so later on-demand and remote restores load them up front (REAP).
    /// Returns how many pages it recorded.
    pub fn save_working_set(&self, template_dir: &Path) -> Result<usize, VmError> {
        let Some(mapping) = &self.template_memory else {
            return Err(VmError::Snapshot(
                "this VM was not restored from a template".into(),
            ));
        };
        let offsets = mapping.faulted_offsets();
        if offsets.is_empty() {
            return Err(VmError::Snapshot(
                "no page faults recorded: only ondemand and remote restores record a working set"
                    .into(),
            ));
        }
        let set = WorkingSet { offsets };
        let text = serde_json::to_vec(&set).map_err(|e| VmError::Snapshot(e.to_string()))?;
        let path = template_dir.join(WORKING_SET_FILE);
        let tmp = template_dir.join(format!(".{WORKING_SET_FILE}.tmp"));
        std::fs::write(&tmp, text)
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(|e| VmError::Snapshot(format!("cannot write {}: {e}", path.display())))?;
        Ok(set.offsets.len())
    }

    /// Page faults the on-demand memory has served (0 for other restore modes and boots).
    pub fn memory_faults(&self) -> u64 {
        self.template_memory.as_ref().map_or(0, |m| m.faults())
    }
}

/// Why `config` must not boot here, if one of its shared zone files is a template's memory
/// file: one that a snapshot of this VMM linked (`linked`), or any file with more than one
/// hard link (another template may share its inode). Booting would write guest RAM into it,
/// under the clones that map it.
pub fn zone_file_conflict(config: &VmConfig, linked: &[LinkedMemory]) -> Option<String> {
    config
        .memory
        .zones
        .iter()
        .enumerate()
        .filter(|(_, z)| z.shared)
        .find_map(|(i, z)| {
            let path = z.file.as_deref()?;
            let (id, links) = FileId::at(path)?;
            if let Some(l) = linked.iter().find(|l| l.zone_file == id) {
                return Some(format!(
                    "memory.zones[{i}].file {} is the memory file of the template {} (vm.snapshot linked it): clones map it, and booting would write into it; remove the template and the file, or create a VM with another zone file",
                    path.display(),
                    l.template.display()
                ));
            }
            (links > 1).then(|| {
                format!(
                    "memory.zones[{i}].file {} has {links} hard links: it may be a template's memory file that clones map, and booting would write into it",
                    path.display()
                )
            })
        })
}

/// The working set recorded next to a template: memory-file offsets of the pages a clone
/// touched in its first run.
const WORKING_SET_FILE: &str = "working_set.json";

#[derive(Serialize, Deserialize)]
struct WorkingSet {
    offsets: Vec<u64>,
}

/// The template's working set, or none (a missing or unreadable file only costs faults).
fn read_working_set(dir: &Path) -> Vec<u64> {
    let path = dir.join(WORKING_SET_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => match serde_json::from_slice::<WorkingSet>(&bytes) {
            Ok(mut set) => {
                set.offsets.sort_unstable();
                set.offsets
            }
            Err(e) => {
                tracing::warn!("ignoring {}: {e}", path.display());
                Vec::new()
            }
        },
        Err(_) => Vec::new(),
    }
}

/// A `GuestMemoryMmap` over the template crate's mappings (which keep ownership).
fn guest_memory_over(
    mapping: &revenant_template::GuestMemoryMapping,
) -> Result<GuestMemoryMmap, VmError> {
    guest_memory_over_regions(mapping.regions())
}

/// A `GuestMemoryMmap` over mapped regions owned elsewhere (which must outlive it).
pub(crate) fn guest_memory_over_regions(
    regions: &[revenant_template::MappedRegion],
) -> Result<GuestMemoryMmap, VmError> {
    let regions = regions
        .iter()
        .map(|r| {
            // SAFETY: the mapping stays alive as long as the Vm (it is stored next to the
            // memory and dropped after it); build_raw only records the pointer and never
            // unmaps it.
            let raw = unsafe {
                vm_memory::MmapRegion::build_raw(
                    r.as_ptr(),
                    r.len(),
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE,
                )
            }
            .map_err(|e| VmError::Snapshot(format!("cannot use the restored memory: {e}")))?;
            GuestRegionMmap::new(raw, GuestAddress(r.guest_addr())).ok_or_else(|| {
                VmError::Snapshot(format!(
                    "restored region at {:#x} overflows",
                    r.guest_addr()
                ))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    GuestMemoryMmap::from_regions(regions)
        .map_err(|e| VmError::Snapshot(format!("restored memory layout: {e}")))
}
