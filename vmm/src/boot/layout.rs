//! Fixed guest-physical addresses the VMM uses while booting a guest.
//!
//! Everything below 1 MiB except the EBDA/BIOS area is usable RAM for the guest; the VMM
//! only claims these few pages during boot, and the e820/PVH map still reports them as RAM
//! because the guest may reuse them once it has built its own structures (as Linux does).

/// GDT used for protected and long mode entry (selectors listed in [`super::gdt`]).
pub const GDT_ADDR: u64 = 0x500;
/// An empty IDT: the guest installs its own before enabling interrupts.
pub const IDT_ADDR: u64 = 0x600;
/// 64-bit TSS referenced by the GDT (RSP0 lets a CPL3 test guest take an exception).
pub const TSS_ADDR: u64 = 0x700;
/// PVH `hvm_start_info`, followed by the module list and the memory map.
pub const PVH_INFO_ADDR: u64 = 0x6000;
/// Linux `boot_params` ("zero page") for the 64-bit boot protocol.
pub const ZERO_PAGE_ADDR: u64 = 0x7000;
/// Initial stack pointer for the boot vCPU (grows down, below the page tables).
pub const BOOT_STACK_POINTER: u64 = 0x8ff0;
/// PML4 of the VMM-built identity map; PDPT and page directories follow it.
pub const PML4_ADDR: u64 = 0x9000;
/// Kernel command line (NUL terminated).
pub const CMDLINE_ADDR: u64 = 0x20000;
/// Longest command line we accept, matching Linux's x86 COMMAND_LINE_SIZE.
pub const CMDLINE_MAX_SIZE: usize = 2048;
/// Real-mode test guests are loaded here and entered at CS=0x1000, IP=0.
pub const REAL_MODE_LOAD_ADDR: u64 = 0x1_0000;
/// Largest real-mode image: one 64 KiB segment.
pub const REAL_MODE_MAX_SIZE: u64 = 0x1_0000;
/// Start of the extended BIOS data area: RAM below it is reported usable in e820.
pub const EBDA_START: u64 = 0x9_fc00;
/// Linux kernels (bzImage protected-mode part) and 64-bit test guests load at 1 MiB.
pub const HIMEM_START: u64 = 0x10_0000;
