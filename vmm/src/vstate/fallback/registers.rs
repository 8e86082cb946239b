//! General-purpose registers of a `kvm_regs` by iced-x86 register name, with x86's rules for
//! partial writes (32-bit writes zero-extend, 8/16-bit writes merge).

use iced_x86::Register;
use kvm_bindings::kvm_regs;

fn slot(regs: &mut kvm_regs, full: Register) -> Option<&mut u64> {
    Some(match full {
        Register::RAX => &mut regs.rax,
        Register::RBX => &mut regs.rbx,
        Register::RCX => &mut regs.rcx,
        Register::RDX => &mut regs.rdx,
        Register::RSI => &mut regs.rsi,
        Register::RDI => &mut regs.rdi,
        Register::RSP => &mut regs.rsp,
        Register::RBP => &mut regs.rbp,
        Register::R8 => &mut regs.r8,
        Register::R9 => &mut regs.r9,
        Register::R10 => &mut regs.r10,
        Register::R11 => &mut regs.r11,
        Register::R12 => &mut regs.r12,
        Register::R13 => &mut regs.r13,
        Register::R14 => &mut regs.r14,
        Register::R15 => &mut regs.r15,
        _ => return None,
    })
}

/// Value of a 64/32/16-bit GPR (8-bit high registers such as AH are not supported).
pub fn read_gpr(regs: &kvm_regs, reg: Register) -> Option<u64> {
    let mut copy = *regs;
    let value = *slot(&mut copy, reg.full_register())?;
    Some(match reg.size() {
        8 => value,
        4 => value & 0xffff_ffff,
        2 => value & 0xffff,
        _ => return None,
    })
}

/// Writes a 64/32/16-bit GPR; false when the register is not a supported GPR.
pub fn write_gpr(regs: &mut kvm_regs, reg: Register, value: u64) -> bool {
    let size = reg.size();
    let Some(slot) = slot(regs, reg.full_register()) else {
        return false;
    };
    *slot = match size {
        8 => value,
        4 => value & 0xffff_ffff,
        2 => (*slot & !0xffff) | (value & 0xffff),
        _ => return false,
    };
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_writes_follow_x86_rules() {
        let mut r = kvm_regs {
            rax: u64::MAX,
            ..Default::default()
        };
        assert!(write_gpr(&mut r, Register::EAX, 5));
        assert_eq!(r.rax, 5);
        r.rax = u64::MAX;
        assert!(write_gpr(&mut r, Register::AX, 5));
        assert_eq!(r.rax, 0xffff_ffff_ffff_0005);
        assert_eq!(read_gpr(&r, Register::EAX), Some(0xffff_0005));
        assert!(write_gpr(&mut r, Register::R12D, 7));
        assert_eq!(r.r12, 7);
        assert!(!write_gpr(&mut r, Register::AH, 1));
        assert!(!write_gpr(&mut r, Register::XMM0, 1));
    }
}
