//! The GDT the VMM installs for protected-mode (PVH) and long-mode entry.
//!
//! Selector layout follows Linux's boot protocol (`__BOOT_CS` = 0x10, `__BOOT_DS` = 0x18),
//! followed by user segments laid out for SYSCALL/SYSRET so a test guest can drop to CPL3:
//! with `STAR[63:48] = 0x23`, SYSRET loads SS = 0x2b and CS = 0x33.

use kvm_bindings::kvm_segment;

pub const KERNEL_CODE64: u16 = 0x10;
pub const KERNEL_DATA: u16 = 0x18;
pub const KERNEL_CODE32: u16 = 0x20;
pub const USER_DATA: u16 = 0x28 | 3;
pub const USER_CODE64: u16 = 0x30 | 3;
pub const TSS: u16 = 0x38;
/// Value for IA32_STAR that makes SYSCALL/SYSRET use the selectors above.
pub const STAR_MSR_VALUE: u64 = ((0x20u64 | 3) << 48) | ((KERNEL_CODE64 as u64) << 32);
pub const TSS_SIZE: u32 = 104;

/// A segment descriptor as the CPU reads it from the GDT.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Descriptor {
    pub base: u32,
    pub limit: u32,
    /// Bits 8..16 (access byte) and 20..24 (flags) of the high dword, as in the SDM.
    pub flags: u16,
}

impl Descriptor {
    const fn new(flags: u16, base: u32, limit: u32) -> Self {
        Descriptor { base, limit, flags }
    }

    pub fn to_u64(self) -> u64 {
        let base = u64::from(self.base);
        let limit = u64::from(self.limit);
        let flags = u64::from(self.flags);
        ((base & 0xff00_0000) << 32)
            | ((base & 0x00ff_ffff) << 16)
            | (limit & 0x0000_ffff)
            | ((limit & 0x000f_0000) << 32)
            | ((flags & 0xf0ff) << 40)
    }

    /// The hidden part of a segment register loaded with this descriptor.
    pub fn to_kvm_segment(self, selector: u16) -> kvm_segment {
        let f = self.flags;
        let granular = (f >> 15) & 1;
        kvm_segment {
            base: u64::from(self.base),
            limit: if granular == 1 {
                (self.limit << 12) | 0xfff
            } else {
                self.limit
            },
            selector,
            type_: (f & 0xf) as u8,
            present: ((f >> 7) & 1) as u8,
            dpl: ((f >> 5) & 3) as u8,
            db: ((f >> 14) & 1) as u8,
            s: ((f >> 4) & 1) as u8,
            l: ((f >> 13) & 1) as u8,
            g: granular as u8,
            avl: ((f >> 12) & 1) as u8,
            unusable: u8::from((f >> 7) & 1 == 0),
            padding: 0,
        }
    }
}

/// The descriptors in selector order (index = selector >> 3). The TSS takes two slots.
pub fn table() -> [u64; 9] {
    let tss = Descriptor::new(0x0089, super::layout::TSS_ADDR as u32, TSS_SIZE - 1);
    [
        0,
        0,
        Descriptor::new(0xa09b, 0, 0xfffff).to_u64(), // 0x10 kernel code, 64-bit
        Descriptor::new(0xc093, 0, 0xfffff).to_u64(), // 0x18 kernel data
        Descriptor::new(0xc09b, 0, 0xfffff).to_u64(), // 0x20 kernel code, 32-bit (PVH)
        Descriptor::new(0xc0f3, 0, 0xfffff).to_u64(), // 0x28 user data
        Descriptor::new(0xa0fb, 0, 0xfffff).to_u64(), // 0x30 user code, 64-bit
        tss.to_u64(),                                 // 0x38 TSS, low half
        0,                                            // 0x40 TSS, high half (base >> 32)
    ]
}

pub fn segment(selector: u16) -> kvm_segment {
    let raw = table()[usize::from(selector >> 3)];
    let base = (((raw >> 16) & 0x00ff_ffff) | ((raw >> 32) & 0xff00_0000)) as u32;
    let limit = ((raw & 0xffff) | ((raw >> 32) & 0xf_0000)) as u32;
    let flags = ((raw >> 40) & 0xf0ff) as u16;
    Descriptor::new(flags, base, limit).to_kvm_segment(selector)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_code_descriptor_matches_linux_boot_gdt() {
        // GDT_ENTRY(0xa09b, 0, 0xfffff) from arch/x86/boot: 0x00af9b000000ffff.
        assert_eq!(table()[2], 0x00af_9b00_0000_ffff);
        assert_eq!(table()[3], 0x00cf_9300_0000_ffff);
    }

    #[test]
    fn segments_decode_back() {
        let cs = segment(KERNEL_CODE64);
        assert_eq!((cs.l, cs.db, cs.dpl, cs.present, cs.g), (1, 0, 0, 1, 1));
        assert_eq!(cs.limit, 0xffff_ffff);
        let us = segment(USER_CODE64 & !3);
        assert_eq!((us.l, us.dpl, us.type_), (1, 3, 0xb));
        let tss = segment(TSS);
        assert_eq!(
            (tss.type_, tss.s, tss.base),
            (0x9, 0, super::super::layout::TSS_ADDR)
        );
        assert_eq!(tss.limit, TSS_SIZE - 1);
    }

    #[test]
    fn star_selects_user_segments() {
        // SYSRET to 64-bit: CS = STAR[63:48] + 16, SS = STAR[63:48] + 8.
        let base = (STAR_MSR_VALUE >> 48) as u16;
        assert_eq!(base + 16, USER_CODE64);
        assert_eq!(base + 8, USER_DATA);
    }
}
