//! Snapshot state of vCPUs and of the KVM VM (irqchip, PIT, clock), saved by `vm.snapshot`
//! and put back by `vm.restore`. The template crate owns the file format; these types are
//! what goes in it (serde through kvm-bindings' `serde` feature).

use kvm_bindings::{
    kvm_clock_data, kvm_cpuid_entry2, kvm_debugregs, kvm_irqchip, kvm_lapic_state, kvm_mp_state,
    kvm_msr_entry, kvm_pit_state2, kvm_regs, kvm_sregs, kvm_vcpu_events, kvm_xcrs, kvm_xsave,
    CpuId, Msrs, KVM_IRQCHIP_IOAPIC, KVM_IRQCHIP_PIC_MASTER, KVM_IRQCHIP_PIC_SLAVE,
};
use kvm_ioctls::{Kvm, VcpuFd, VmFd};
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    #[error("cannot {what}: {source}")]
    Kvm {
        what: &'static str,
        #[source]
        source: kvm_ioctls::Error,
    },
    #[error("cannot build the {0} list")]
    List(&'static str),
    #[error("KVM accepted only {set} of {total} saved MSRs (first refused: {first:#x})")]
    PartialMsrs {
        set: usize,
        total: usize,
        first: u32,
    },
    #[error("cannot route the restored vCPU's system calls through the SYSCALL bridge: {0}")]
    Bridge(String),
}

fn ioctl<T>(what: &'static str, r: Result<T, kvm_ioctls::Error>) -> Result<T, PersistError> {
    r.map_err(|source| PersistError::Kvm { what, source })
}

/// Everything KVM holds for one vCPU.
#[derive(Debug, Serialize, Deserialize)]
pub struct VcpuState {
    pub id: u8,
    pub cpuid: Vec<kvm_cpuid_entry2>,
    pub msrs: Vec<kvm_msr_entry>,
    pub regs: kvm_regs,
    pub sregs: kvm_sregs,
    pub xsave: kvm_xsave,
    pub xcrs: kvm_xcrs,
    pub debugregs: kvm_debugregs,
    pub lapic: kvm_lapic_state,
    pub mp_state: kvm_mp_state,
    pub events: kvm_vcpu_events,
}

/// MSRs a vCPU can have, as KVM lists them; those it refuses to read are dropped.
pub fn saveable_msrs(kvm: &Kvm, fd: &VcpuFd) -> Result<Vec<kvm_msr_entry>, PersistError> {
    let list = ioctl("list MSRs", kvm.get_msr_index_list())?;
    let mut entries: Vec<kvm_msr_entry> = list
        .as_slice()
        .iter()
        .map(|&index| kvm_msr_entry {
            index,
            ..Default::default()
        })
        .collect();
    // KVM_GET_MSRS stops at the first MSR it cannot read: drop that one and go on.
    loop {
        let mut msrs = Msrs::from_entries(&entries).map_err(|_| PersistError::List("MSR"))?;
        let read = ioctl("read MSRs", fd.get_msrs(&mut msrs))?;
        if read == entries.len() {
            return Ok(msrs.as_slice().to_vec());
        }
        entries.remove(read);
    }
}

impl VcpuState {
    pub fn save(id: u8, kvm_handle: &Kvm, fd: &VcpuFd) -> Result<Self, PersistError> {
        // mp_state first: KVM settles pending INIT/SIPI state when it is read.
        let mp_state = ioctl("read mp_state", fd.get_mp_state())?;
        Ok(VcpuState {
            id,
            cpuid: ioctl(
                "read CPUID",
                fd.get_cpuid2(kvm_bindings::KVM_MAX_CPUID_ENTRIES),
            )?
            .as_slice()
            .to_vec(),
            msrs: saveable_msrs(kvm_handle, fd)?,
            regs: ioctl("read registers", fd.get_regs())?,
            sregs: ioctl("read segment registers", fd.get_sregs())?,
            xsave: ioctl("read XSAVE state", fd.get_xsave())?,
            xcrs: ioctl("read XCRs", fd.get_xcrs())?,
            debugregs: ioctl("read debug registers", fd.get_debug_regs())?,
            lapic: ioctl("read the LAPIC", fd.get_lapic())?,
            mp_state,
            events: ioctl("read vCPU events", fd.get_vcpu_events())?,
        })
    }

    /// Puts the state into a freshly created vCPU, in the order KVM needs: CPUID before
    /// anything that depends on features, segment registers (APIC base) before the LAPIC,
    /// MSRs and events last.
    pub fn restore(&self, fd: &VcpuFd) -> Result<(), PersistError> {
        let cpuid = CpuId::from_entries(&self.cpuid).map_err(|_| PersistError::List("CPUID"))?;
        ioctl("set CPUID", fd.set_cpuid2(&cpuid))?;
        ioctl("set mp_state", fd.set_mp_state(self.mp_state))?;
        ioctl("set segment registers", fd.set_sregs(&self.sregs))?;
        ioctl("set registers", fd.set_regs(&self.regs))?;
        // SAFETY: the XSAVE area was produced by KVM_GET_XSAVE on a vCPU with the same CPUID
        // (set just above), so its size and layout are the ones KVM expects.
        ioctl("set XSAVE state", unsafe { fd.set_xsave(&self.xsave) })?;
        ioctl("set XCRs", fd.set_xcrs(&self.xcrs))?;
        ioctl("set debug registers", fd.set_debug_regs(&self.debugregs))?;
        ioctl("set the LAPIC", fd.set_lapic(&self.lapic))?;
        let msrs = Msrs::from_entries(&self.msrs).map_err(|_| PersistError::List("MSR"))?;
        let set = ioctl("set MSRs", fd.set_msrs(&msrs))?;
        if set != self.msrs.len() {
            return Err(PersistError::PartialMsrs {
                set,
                total: self.msrs.len(),
                first: self.msrs[set].index,
            });
        }
        ioctl("set vCPU events", fd.set_vcpu_events(&self.events))?;
        Ok(())
    }
}

/// The VM-wide KVM state: both PICs, the IOAPIC, the PIT (when the VM has one), the clock.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct KvmVmState {
    pub pic_master: kvm_irqchip,
    pub pic_slave: kvm_irqchip,
    pub ioapic: kvm_irqchip,
    pub pit: Option<kvm_pit_state2>,
    pub clock: kvm_clock_data,
}

fn irqchip(fd: &VmFd, chip_id: u32) -> Result<kvm_irqchip, PersistError> {
    let mut chip = kvm_irqchip {
        chip_id,
        ..Default::default()
    };
    ioctl("read the irqchip", fd.get_irqchip(&mut chip))?;
    Ok(chip)
}

impl KvmVmState {
    pub fn save(fd: &VmFd, has_pit: bool) -> Result<Self, PersistError> {
        Ok(KvmVmState {
            pic_master: irqchip(fd, KVM_IRQCHIP_PIC_MASTER)?,
            pic_slave: irqchip(fd, KVM_IRQCHIP_PIC_SLAVE)?,
            ioapic: irqchip(fd, KVM_IRQCHIP_IOAPIC)?,
            pit: if has_pit {
                Some(ioctl("read the PIT", fd.get_pit2())?)
            } else {
                None
            },
            clock: ioctl("read the clock", fd.get_clock())?,
        })
    }

    pub fn restore(&self, fd: &VmFd) -> Result<(), PersistError> {
        for chip in [&self.pic_master, &self.pic_slave, &self.ioapic] {
            ioctl("set the irqchip", fd.set_irqchip(chip))?;
        }
        if let Some(pit) = &self.pit {
            ioctl("set the PIT", fd.set_pit2(pit))?;
        }
        // Only the time goes back in: the flags KVM returns describe the host clock source.
        let clock = kvm_clock_data {
            clock: self.clock.clock,
            ..Default::default()
        };
        ioctl("set the clock", fd.set_clock(&clock))
    }
}
