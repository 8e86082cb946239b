//! Creating the KVM VM: memory slots, in-kernel irqchip and PIT.

use kvm_bindings::{kvm_pit_config, kvm_userspace_memory_region, KVM_PIT_SPEAKER_DUMMY};
use kvm_ioctls::{Kvm, VmFd};
use vm_memory::{GuestMemoryBackend, GuestMemoryRegion};

use super::memory::GuestMemoryMmap;

/// Where KVM puts the three pages it needs for real-mode emulation on VMX hosts; it must not
/// overlap RAM or MMIO, so it sits just below the BIOS area at the top of the 32-bit space.
const KVM_TSS_ADDRESS: usize = 0xfffb_d000;

#[derive(Debug, thiserror::Error)]
pub enum VmFdError {
    #[error("cannot open /dev/kvm: {0}")]
    OpenKvm(#[source] kvm_ioctls::Error),
    #[error("unsupported KVM API version {0} (need 12)")]
    ApiVersion(i32),
    #[error("KVM_CREATE_VM failed: {0}")]
    CreateVm(#[source] kvm_ioctls::Error),
    #[error("cannot register guest memory slot {slot} with KVM: {source}")]
    MemorySlot {
        slot: u32,
        #[source]
        source: kvm_ioctls::Error,
    },
    #[error("KVM_SET_TSS_ADDR failed: {0}")]
    TssAddress(#[source] kvm_ioctls::Error),
    #[error("cannot create the in-kernel irqchip: {0}")]
    Irqchip(#[source] kvm_ioctls::Error),
    #[error("cannot create the in-kernel PIT: {0}")]
    Pit(#[source] kvm_ioctls::Error),
}

pub struct KvmVm {
    pub kvm: Kvm,
    /// Shared with the MSI routing table of hot-plugged PCI devices.
    pub fd: std::sync::Arc<VmFd>,
    /// Whether the guest's LSTAR accesses exit to the VMM (PVM hosts: the SYSCALL bridge's
    /// MSR filter, [`super::syscall_bridge::enable`]). Every vCPU handles those exits.
    pub lstar_filtered: bool,
}

/// Creates a VM with `mem` registered. Memory slots go in *before* the irqchip: on this
/// host's PVM KVM a memslot added after KVM_CREATE_IRQCHIP costs 3-7 ms instead of ~0.1 ms
/// (PVM.md), and VM start latency is a headline target.
///
/// The in-kernel PIT is created only when `with_pit`: KVM_CREATE_PIT2 starts a kernel
/// worker thread and costs ~4 ms here, more than the rest of VM creation together. Linux
/// guests get it (they calibrate and check timer routing with it); raw test guests don't
/// use it.
pub fn create_vm(mem: &GuestMemoryMmap, with_pit: bool) -> Result<KvmVm, VmFdError> {
    let kvm = Kvm::new().map_err(VmFdError::OpenKvm)?;
    let version = kvm.get_api_version();
    if version != kvm_bindings::KVM_API_VERSION as i32 {
        return Err(VmFdError::ApiVersion(version));
    }
    let fd = kvm.create_vm().map_err(VmFdError::CreateVm)?;
    // KVM_X86_SET_MSR_FILTER waits for an SRCU grace period: ~0.02 ms on a VM that has had
    // none yet, 13-18 ms once memory slots were added (measured on this host). So the
    // SYSCALL bridge's filter goes in first, on every VM of a PVM host, whether the VM ends
    // up using the bridge or not (then its vCPUs pass LSTAR writes on to KVM).
    let lstar_filtered = crate::boot::cpuid::host_is_pvm()
        && match super::syscall_bridge::enable(&fd) {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!("no SYSCALL bridge: guest user mode can't make system calls: {e}");
                false
            }
        };
    for (slot, region) in mem.iter().enumerate() {
        let slot = slot as u32;
        let desc = kvm_userspace_memory_region {
            slot,
            flags: 0,
            guest_phys_addr: region.start_addr().0,
            memory_size: region.len(),
            userspace_addr: region.as_ptr() as u64,
        };
        // SAFETY: the region is a live mapping owned by `mem`, which the VM keeps alive for as
        // long as the VM fd exists (both are owned by `Vm`, memory dropped after the fd).
        unsafe { fd.set_user_memory_region(desc) }
            .map_err(|source| VmFdError::MemorySlot { slot, source })?;
    }
    fd.set_tss_address(KVM_TSS_ADDRESS)
        .map_err(VmFdError::TssAddress)?;
    fd.create_irq_chip().map_err(VmFdError::Irqchip)?;
    let vm = KvmVm {
        kvm,
        fd: std::sync::Arc::new(fd),
        lstar_filtered,
    };
    if with_pit {
        create_pit(&vm)?;
    }
    Ok(vm)
}

/// Adds the in-kernel PIT (Linux payloads calibrate against it); the irqchip must exist.
pub fn create_pit(vm: &KvmVm) -> Result<(), VmFdError> {
    let pit = kvm_pit_config {
        flags: KVM_PIT_SPEAKER_DUMMY,
        ..Default::default()
    };
    vm.fd.create_pit2(pit).map_err(VmFdError::Pit)
}
