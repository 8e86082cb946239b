//! The CPU state the boot vCPU starts in, for each way of entering a guest.

use kvm_bindings::{kvm_fpu, kvm_regs, kvm_segment, kvm_sregs};
use vm_memory::{Bytes, GuestAddress};

use super::gdt::{self, KERNEL_CODE32, KERNEL_CODE64, KERNEL_DATA, TSS};
use super::layout::{BOOT_STACK_POINTER, GDT_ADDR, IDT_ADDR};
use super::paging;
use crate::vstate::memory::GuestMemoryMmap;

const CR0_PE: u64 = 1;
const CR0_ET: u64 = 1 << 4;
const CR0_PG: u64 = 1 << 31;
const CR4_PAE: u64 = 1 << 5;
const EFER_SCE: u64 = 1;
const EFER_LME: u64 = 1 << 8;
const EFER_LMA: u64 = 1 << 10;
/// Bit 1 of RFLAGS is reserved and always set.
const RFLAGS_RESERVED: u64 = 0x2;
/// x87 control word and MXCSR after FNINIT/reset (all exceptions masked).
const FPU_FCW: u16 = 0x37f;
const MXCSR_DEFAULT: u32 = 0x1f80;
/// Stack for real-mode entries, below the boot structures at 0x500-0x9fff... and above the IVT.
const REAL_MODE_STACK: u64 = 0x7c00;
/// A busy TSS descriptor type (what LTR leaves in TR); 32-bit and 64-bit share the value.
const TSS_TYPE_BUSY: u8 = 0xb;

/// How the boot vCPU enters the guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryPoint {
    /// PVH: 32-bit protected mode, paging off, EBX = `hvm_start_info`.
    Pvh { entry: u64, start_info: u64 },
    /// Linux 64-bit boot protocol: long mode on identity tables, RSI = `boot_params`.
    Linux64 { entry: u64, boot_params: u64 },
    /// A raw 64-bit test guest: long mode on user-accessible identity tables, RDI = RAM size.
    Long64 { entry: u64, ram_size: u64 },
    /// 16-bit real mode at CS:IP, with DS = ES = FS = GS = CS and SS = 0: a raw test guest
    /// (CS = 0x1000, IP = 0) or the ACPI firmware waking vector after S3.
    RealMode { cs: u16, ip: u16 },
}

impl EntryPoint {
    /// Where a real-mode waking vector (a physical address below 1 MiB) is entered.
    pub fn waking_vector(vector: u64) -> Option<EntryPoint> {
        (vector < 0x10_0000).then_some(EntryPoint::RealMode {
            cs: (vector >> 4) as u16,
            ip: (vector & 0xf) as u16,
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EntryError {
    #[error("cannot write boot structures into guest memory: {0}")]
    Memory(#[from] vm_memory::GuestMemoryError),
}

/// General-purpose, segment/control and FPU registers for `entry`. Writes the GDT, TSS and,
/// for 64-bit entries, the page tables into guest memory.
pub fn boot_registers(
    mem: &GuestMemoryMmap,
    entry: EntryPoint,
    mut sregs: kvm_sregs,
) -> Result<(kvm_regs, kvm_sregs, kvm_fpu), EntryError> {
    if let EntryPoint::RealMode { .. } = entry {
        return Ok(real_mode_registers(entry, sregs));
    }
    let (mut regs, fpu) = reset_registers();

    write_gdt(mem)?;
    sregs.gdt.base = GDT_ADDR;
    sregs.gdt.limit = (std::mem::size_of_val(&gdt::table()) - 1) as u16;
    sregs.idt.base = IDT_ADDR;
    sregs.idt.limit = 0;
    let data = gdt::segment(KERNEL_DATA);
    (sregs.ds, sregs.es, sregs.fs, sregs.gs, sregs.ss) = (data, data, data, data, data);
    sregs.tr = gdt::segment(TSS);
    sregs.tr.type_ = TSS_TYPE_BUSY;

    match entry {
        EntryPoint::Pvh { entry, start_info } => {
            sregs.cs = gdt::segment(KERNEL_CODE32);
            sregs.cr0 = CR0_PE | CR0_ET;
            sregs.cr4 = 0;
            sregs.efer = 0;
            regs.rip = entry;
            regs.rbx = start_info;
        }
        EntryPoint::Linux64 { entry, boot_params } => {
            enter_long_mode(mem, &mut sregs, false)?;
            regs.rip = entry;
            regs.rsi = boot_params;
            regs.rsp = BOOT_STACK_POINTER;
            regs.rbp = BOOT_STACK_POINTER;
        }
        EntryPoint::Long64 { entry, ram_size } => {
            enter_long_mode(mem, &mut sregs, true)?;
            sregs.efer |= EFER_SCE;
            regs.rip = entry;
            regs.rdi = ram_size;
            regs.rsp = BOOT_STACK_POINTER;
        }
        EntryPoint::RealMode { .. } => unreachable!("handled above"),
    }
    Ok((regs, sregs, fpu))
}

/// Registers for a real-mode entry (no guest memory needed); other entries are unchanged.
pub fn real_mode_registers(
    entry: EntryPoint,
    mut sregs: kvm_sregs,
) -> (kvm_regs, kvm_sregs, kvm_fpu) {
    let (mut regs, fpu) = reset_registers();
    if let EntryPoint::RealMode { cs, ip } = entry {
        let data = real_mode_segment(cs, 0x3);
        sregs.cs = real_mode_segment(cs, 0xb);
        (sregs.ds, sregs.es, sregs.fs, sregs.gs) = (data, data, data, data);
        sregs.ss = real_mode_segment(0, 0x3);
        sregs.cr0 = CR0_ET;
        (sregs.cr3, sregs.cr4, sregs.efer) = (0, 0, 0);
        sregs.idt.base = 0;
        sregs.idt.limit = 0x3ff;
        regs.rip = u64::from(ip);
        regs.rsp = REAL_MODE_STACK;
    }
    (regs, sregs, fpu)
}

/// General-purpose and FPU registers as after reset: all zero but the reserved RFLAGS bit,
/// the x87 control word and MXCSR.
fn reset_registers() -> (kvm_regs, kvm_fpu) {
    let regs = kvm_regs {
        rflags: RFLAGS_RESERVED,
        ..Default::default()
    };
    let fpu = kvm_fpu {
        fcw: FPU_FCW,
        mxcsr: MXCSR_DEFAULT,
        ..Default::default()
    };
    (regs, fpu)
}

fn enter_long_mode(
    mem: &GuestMemoryMmap,
    sregs: &mut kvm_sregs,
    user_accessible: bool,
) -> Result<(), EntryError> {
    sregs.cr3 = paging::write_identity_map(mem, user_accessible)?;
    sregs.cs = gdt::segment(KERNEL_CODE64);
    sregs.cr0 = CR0_PE | CR0_ET | CR0_PG;
    sregs.cr4 = CR4_PAE;
    sregs.efer = EFER_LME | EFER_LMA;
    Ok(())
}

fn write_gdt(mem: &GuestMemoryMmap) -> Result<(), EntryError> {
    let bytes: Vec<u8> = gdt::table().iter().flat_map(|d| d.to_le_bytes()).collect();
    mem.write_slice(&bytes, GuestAddress(GDT_ADDR))?;
    // A zeroed TSS except RSP0, which points at the boot stack so a CPL3 test guest that
    // takes an exception lands on a valid kernel stack; the I/O map base is past the limit
    // (no I/O bitmap).
    let mut tss = [0u8; gdt::TSS_SIZE as usize];
    tss[4..12].copy_from_slice(&BOOT_STACK_POINTER.to_le_bytes());
    tss[102..104].copy_from_slice(&(gdt::TSS_SIZE as u16).to_le_bytes());
    mem.write_slice(&tss, GuestAddress(super::layout::TSS_ADDR))?;
    Ok(())
}

fn real_mode_segment(selector: u16, type_: u8) -> kvm_segment {
    kvm_segment {
        base: u64::from(selector) << 4,
        limit: 0xffff,
        selector,
        type_,
        present: 1,
        s: 1,
        ..Default::default()
    }
}
