//! A VM prepared before any restore request (the fork pool): guest memory reserved and the KVM
//! VM created with its memory slots and in-kernel irqchip. A later `vm.restore` of a template
//! with the same memory layout maps the template over the reserved memory (same host
//! addresses, so the memory slots stay valid) and only sets state: creating the KVM VM was the
//! largest part of a fork here (docs/benchmarks.md, "Where a fork's time goes").

use revenant_template::MappedRegion;

use super::VmError;
use crate::vstate::memory::ram_ranges;
use crate::vstate::vm_fd::{create_vm, KvmVm};

/// Reserved guest memory and a KVM VM whose memory slots point at it.
pub struct PreparedVm {
    /// Declared before `regions`: the VM (and its memory slots) goes first on drop.
    pub(crate) kvm: KvmVm,
    pub(crate) regions: Vec<MappedRegion>,
}

impl PreparedVm {
    /// Reserves `memory_size` bytes of guest RAM (the layout a booted VM of that size gets)
    /// and creates the KVM VM over it. Nothing is touched: the memory costs nothing until a
    /// restore fills it.
    pub fn prepare(memory_size: u64) -> Result<PreparedVm, VmError> {
        if memory_size == 0 || memory_size % crate::vstate::memory::PAGE_SIZE != 0 {
            return Err(VmError::Config(crate::config::ConfigError::new(
                "prepare_vm_memory",
                "must be a non-zero multiple of 4096 bytes",
            )));
        }
        let regions = ram_ranges(memory_size)
            .into_iter()
            .map(|(addr, len)| MappedRegion::anonymous(addr.0, len as usize))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| VmError::Snapshot(format!("cannot reserve guest memory: {e}")))?;
        let memory = crate::snapshot::guest_memory_over_regions(&regions)?;
        let kvm = create_vm(&memory, false)?;
        Ok(PreparedVm { kvm, regions })
    }
}
