//! Guest system calls on PVM hosts: the SYSCALL bridge.
//!
//! On this project's PVM hosts a SYSCALL from guest user mode jumps to LSTAR but leaves the
//! vCPU at CPL3 (docs/pvm-notes.md), so a Linux kernel's syscall entry runs as user code and
//! faults. The bridge has the VMM finish the privilege switch:
//! - an MSR filter sends the guest's LSTAR writes and reads to the VMM, which keeps the
//!   guest's value and gives KVM the address of a trampoline instead;
//! - the trampoline is a user-executable page mapped in an address-space hole every Linux
//!   process shares (PML4 slot 401, `ffffc88000000000`, unused in Linux's 4-level layout
//!   without KASLR), through VMM-owned page tables in the legacy BIOS hole; its one
//!   instruction stores to a doorbell page mapping a guest-physical address with no memory
//!   behind it, so the store exits to the VMM;
//! - on that exit the VMM does SYSCALL's CPL0 half: CS/SS from STAR, RFLAGS masked with
//!   SFMASK, RIP = the guest's LSTAR (RCX and R11 hold the return RIP and RFLAGS, as the
//!   host's half-done SYSCALL left them).

use kvm_bindings::{kvm_msr_entry, kvm_regs, kvm_segment, kvm_sregs, Msrs};
use kvm_ioctls::{Cap, MsrExitReason, MsrFilterDefaultAction, MsrFilterRange, MsrFilterRangeFlags};
use kvm_ioctls::{VcpuFd, VmFd};
use vm_memory::{Bytes, GuestAddress};

use super::memory::GuestMemoryMmap;

pub use crate::boot::msrs::{MSR_LSTAR, MSR_STAR, MSR_SYSCALL_MASK};

/// Guest-virtual address of the trampoline; the doorbell page follows it.
pub const TRAMPOLINE_VA: u64 = 0xffff_c880_0000_0000;
const DOORBELL_VA: u64 = TRAMPOLINE_VA + PAGE;
/// Guest-physical pages the bridge owns, in the legacy BIOS hole (not RAM in the e820
/// map, above the ACPI tables): PDPT, page directory, page table, trampoline code.
pub const BRIDGE_PAGES: u64 = 0xf_0000;
const PDPT: u64 = BRIDGE_PAGES;
const PAGE_DIRECTORY: u64 = BRIDGE_PAGES + PAGE;
const PAGE_TABLE: u64 = BRIDGE_PAGES + 2 * PAGE;
const TRAMPOLINE_CODE: u64 = BRIDGE_PAGES + 3 * PAGE;
/// Guest-physical doorbell: no memory and no device, so a store there exits to the VMM.
pub const DOORBELL_GPA: u64 = revenant_acpi::platform::SYSCALL_DOORBELL_ADDR;

const PAGE: u64 = 0x1000;
const PTE_PRESENT: u64 = 1;
const PTE_WRITABLE: u64 = 1 << 1;
const PTE_USER: u64 = 1 << 2;
const PTE_ADDRESS: u64 = 0x000f_ffff_ffff_f000;
const CR4_LA57: u64 = 1 << 12;
const RFLAGS_RESERVED: u64 = 1 << 1;
const RFLAGS_RF: u64 = 1 << 16;

/// `movb $0, DOORBELL(%rip)`, then `ud2` should anything ever return here.
const TRAMPOLINE: [u8; 9] = [0xc6, 0x05, 0xf9, 0x0f, 0x00, 0x00, 0x00, 0x0f, 0x0b];
/// Length of the store: where RIP is once KVM completed it.
const STORE_LEN: u64 = 7;

#[derive(Debug, thiserror::Error)]
pub enum BridgeError {
    #[error("cannot {what}: {source}")]
    Kvm {
        what: &'static str,
        #[source]
        source: kvm_ioctls::Error,
    },
    #[error("cannot write the bridge's page tables into guest memory: {0}")]
    Memory(#[from] vm_memory::GuestMemoryError),
    #[error(
        "the guest uses 5-level paging; the bridge maps its trampoline in 4-level tables only"
    )]
    FiveLevelPaging,
    #[error("PML4 slot {slot} of the guest's page tables is in use ({entry:#x})")]
    SlotInUse { slot: usize, entry: u64 },
    #[error("doorbell rung from rip {rip:#x} at CPL {cpl}, not from the trampoline")]
    NotFromTrampoline { rip: u64, cpl: u8 },
}

fn kvm<T>(what: &'static str, r: Result<T, kvm_ioctls::Error>) -> Result<T, BridgeError> {
    r.map_err(|source| BridgeError::Kvm { what, source })
}

/// Filters the guest's LSTAR accesses to user space. Called once per VM, right after it is
/// created and before its memory slots exist (it is then ~1000x cheaper: see
/// `vm_fd::create_vm`); a booting VM also gets the bridge's pages ([`write_pages`]), a restored
/// one has them in its template's memory.
pub fn enable(vm: &VmFd) -> Result<(), BridgeError> {
    let mut cap = kvm_bindings::kvm_enable_cap {
        cap: Cap::X86UserSpaceMsr as u32,
        ..Default::default()
    };
    cap.args[0] = u64::from(MsrExitReason::Filter.bits());
    kvm("enable user-space MSR exits", vm.enable_cap(&cap))?;
    // A 0 bit denies the access in KVM, which then exits to the VMM.
    let deny = [0u8];
    let range = MsrFilterRange {
        flags: MsrFilterRangeFlags::READ | MsrFilterRangeFlags::WRITE,
        base: MSR_LSTAR,
        msr_count: 1,
        bitmap: &deny,
    };
    kvm(
        "filter LSTAR",
        vm.set_msr_filter(MsrFilterDefaultAction::ALLOW, &[range]),
    )
}

fn table_index(va: u64, level: u32) -> u64 {
    (va >> (12 + 9 * level)) & 0x1ff
}

/// The trampoline's page tables below the PML4 entry, and its code.
pub fn write_pages(mem: &GuestMemoryMmap) -> Result<(), BridgeError> {
    let table = PTE_PRESENT | PTE_WRITABLE | PTE_USER;
    let entries = [
        (
            PDPT + 8 * table_index(TRAMPOLINE_VA, 2),
            PAGE_DIRECTORY | table,
        ),
        (
            PAGE_DIRECTORY + 8 * table_index(TRAMPOLINE_VA, 1),
            PAGE_TABLE | table,
        ),
        (
            PAGE_TABLE + 8 * table_index(TRAMPOLINE_VA, 0),
            TRAMPOLINE_CODE | PTE_PRESENT | PTE_USER,
        ),
        (
            PAGE_TABLE + 8 * table_index(DOORBELL_VA, 0),
            DOORBELL_GPA | table,
        ),
    ];
    for (addr, entry) in entries {
        mem.write_obj(entry, GuestAddress(addr))?;
    }
    mem.write_slice(&TRAMPOLINE, GuestAddress(TRAMPOLINE_CODE))?;
    Ok(())
}

/// Maps the trampoline into the page tables the vCPU runs on (Linux shares its kernel half
/// with every process it creates later), and points KVM's LSTAR at it.
pub fn install(fd: &VcpuFd, mem: &GuestMemoryMmap) -> Result<(), BridgeError> {
    let sregs = kvm("read segment registers", fd.get_sregs())?;
    if sregs.cr4 & CR4_LA57 != 0 {
        return Err(BridgeError::FiveLevelPaging);
    }
    let slot = table_index(TRAMPOLINE_VA, 3);
    let at = GuestAddress((sregs.cr3 & PTE_ADDRESS) + 8 * slot);
    let ours = PDPT | PTE_PRESENT | PTE_WRITABLE | PTE_USER;
    let entry: u64 = mem.read_obj(at)?;
    // The CPU may have set the accessed/dirty bits in our entry since we wrote it.
    if entry & (PTE_ADDRESS | PTE_PRESENT | PTE_WRITABLE | PTE_USER) != ours {
        if entry & PTE_PRESENT != 0 {
            return Err(BridgeError::SlotInUse {
                slot: slot as usize,
                entry,
            });
        }
        mem.write_obj(ours, at)?;
    }
    set_msr(fd, MSR_LSTAR, TRAMPOLINE_VA)
}

/// An MSR list for KVM_SET_MSRS/KVM_GET_MSRS; `what` names the ioctl in errors.
fn msr_list(what: &'static str, entries: &[(u32, u64)]) -> Result<Msrs, BridgeError> {
    let entries: Vec<kvm_msr_entry> = entries
        .iter()
        .map(|&(index, data)| kvm_msr_entry {
            index,
            data,
            ..Default::default()
        })
        .collect();
    Msrs::from_entries(&entries).map_err(|_| BridgeError::Kvm {
        what,
        source: kvm_ioctls::Error::new(libc::EINVAL),
    })
}

/// KVM processed only `done` of `total` MSRs.
fn partial(what: &'static str, done: usize, total: usize) -> Result<(), BridgeError> {
    match done == total {
        true => Ok(()),
        false => Err(BridgeError::Kvm {
            what,
            source: kvm_ioctls::Error::new(libc::EINVAL),
        }),
    }
}

pub fn set_msr(fd: &VcpuFd, index: u32, data: u64) -> Result<(), BridgeError> {
    let msrs = msr_list("set an MSR", &[(index, data)])?;
    partial("set an MSR", kvm("set an MSR", fd.set_msrs(&msrs))?, 1)
}

fn get_msrs<const N: usize>(fd: &VcpuFd, indices: [u32; N]) -> Result<[u64; N], BridgeError> {
    let mut msrs = msr_list("read MSRs", &indices.map(|index| (index, 0)))?;
    partial("read MSRs", kvm("read MSRs", fd.get_msrs(&mut msrs))?, N)?;
    let mut out = [0; N];
    for (o, e) in out.iter_mut().zip(msrs.as_slice()) {
        *o = e.data;
    }
    Ok(out)
}

/// SYSCALL's kernel half for a vCPU that rang the doorbell from the trampoline (its store
/// already completed): enters the guest kernel at `lstar` at CPL0.
pub fn enter_kernel(fd: &VcpuFd, lstar: u64) -> Result<(), BridgeError> {
    let mut regs = kvm("read registers", fd.get_regs())?;
    let mut sregs = kvm("read segment registers", fd.get_sregs())?;
    if regs.rip != TRAMPOLINE_VA + STORE_LEN || sregs.cs.dpl != 3 {
        return Err(BridgeError::NotFromTrampoline {
            rip: regs.rip,
            cpl: sregs.cs.dpl,
        });
    }
    let [star, mask] = get_msrs(fd, [MSR_STAR, MSR_SYSCALL_MASK])?;
    syscall_entry(&mut regs, &mut sregs, star, mask, lstar);
    kvm("write segment registers", fd.set_sregs(&sregs))?;
    kvm("write registers", fd.set_regs(&regs))
}

/// What SYSCALL does to the registers after saving RIP/RFLAGS in RCX/R11 (SDM vol. 2B).
pub fn syscall_entry(regs: &mut kvm_regs, sregs: &mut kvm_sregs, star: u64, mask: u64, lstar: u64) {
    let selector = ((star >> 32) & 0xfffc) as u16;
    sregs.cs = kvm_segment {
        base: 0,
        limit: 0xffff_ffff,
        selector,
        type_: 0xb,
        present: 1,
        dpl: 0,
        db: 0,
        s: 1,
        l: 1,
        g: 1,
        avl: 0,
        unusable: 0,
        padding: 0,
    };
    sregs.ss = kvm_segment {
        selector: selector + 8,
        type_: 0x3,
        db: 1,
        l: 0,
        ..sregs.cs
    };
    regs.rflags = (regs.rflags & !(mask | RFLAGS_RF)) | RFLAGS_RESERVED;
    regs.rip = lstar;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_trampoline_stores_to_the_doorbell_page() {
        let decoded = iced_x86::Decoder::with_ip(64, &TRAMPOLINE, TRAMPOLINE_VA, 0).decode();
        assert_eq!(decoded.mnemonic(), iced_x86::Mnemonic::Mov);
        assert_eq!(decoded.len() as u64, STORE_LEN);
        assert_eq!(decoded.memory_displacement64(), DOORBELL_VA);
    }

    #[test]
    fn the_trampoline_lives_in_linuxs_unused_pml4_slot() {
        assert_eq!(table_index(TRAMPOLINE_VA, 3), 401);
        assert_eq!(table_index(DOORBELL_VA, 0), 1);
    }

    #[test]
    fn syscall_entry_switches_to_the_kernel_selectors() {
        let mut regs = kvm_regs {
            rflags: 0x4_0346,
            rip: TRAMPOLINE_VA + STORE_LEN,
            ..Default::default()
        };
        let mut sregs = kvm_sregs::default();
        // Linux: STAR = (USER32_CS - 8 = 0x18) << 48 | KERNEL_CS (0x10) << 32.
        syscall_entry(
            &mut regs,
            &mut sregs,
            0x0023_0010_0000_0000,
            0x4_7700,
            0xffff_ffff_8160_0000,
        );
        assert_eq!(sregs.cs.selector, 0x10);
        assert_eq!((sregs.cs.dpl, sregs.cs.l), (0, 1));
        assert_eq!(sregs.ss.selector, 0x18);
        assert_eq!((sregs.ss.dpl, sregs.ss.l, sregs.ss.db), (0, 0, 1));
        assert_eq!(regs.rflags, 0x46);
        assert_eq!(regs.rip, 0xffff_ffff_8160_0000);
    }
}
