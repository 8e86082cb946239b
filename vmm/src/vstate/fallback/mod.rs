//! Fallback emulation for instructions this host's PVM KVM refuses to emulate at guest CPL0.
//!
//! On PVM, guest kernel code runs in the host's instruction emulator, which rejects some
//! instructions with an emulation-failure exit (shared/PVM.md). Revenant decodes the
//! instruction (iced-x86) and, where its semantics are simple, carries it out on the vCPU's
//! registers and moves RIP past it, or injects the exception real hardware would raise
//! (INT3 -> #BP). Anything else stops the VM with a message naming the instruction, its
//! bytes and RIP: never a hang, never a guess.

mod fpu;
mod registers;

use iced_x86::{Code, Decoder, DecoderOptions, Instruction, OpKind};
use kvm_bindings::{kvm_fpu, kvm_regs, kvm_sregs};

pub use fpu::GuestAccess;
pub use registers::{read_gpr, write_gpr};

/// x86 exception vector of #BP.
pub const BP_VECTOR: u8 = 3;
/// x87 status word: an unmasked exception is pending (ES).
const FSW_ERROR_SUMMARY: u16 = 1 << 7;
const RFLAGS_ARITHMETIC: u64 = 0x8d5; // CF, PF, AF, ZF, SF, OF
const RFLAGS_ZF: u64 = 1 << 6;

/// What the VMM must do for the failed instruction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Registers were updated (RIP advanced); resume the guest.
    Emulated(&'static str),
    /// Registers and the FPU state were updated: write both back.
    EmulatedFpu(&'static str),
    /// RIP was advanced past the instruction; inject this exception vector (a trap).
    InjectTrap(&'static str, u8),
}

/// Instruction bytes from a KVM emulation-failure exit's data words: `data[0]` holds flags
/// (bit 0: bytes present), then a length byte and up to 15 bytes.
pub fn instruction_bytes(data: &[u64]) -> Option<Vec<u8>> {
    const FLAG_INSTRUCTION_BYTES: u64 = 1;
    if data.first()? & FLAG_INSTRUCTION_BYTES == 0 || data.len() < 3 {
        return None;
    }
    let raw: Vec<u8> = data[1..3].iter().flat_map(|w| w.to_le_bytes()).collect();
    let len = usize::from(raw[0]).min(15);
    Some(raw[1..1 + len].to_vec())
}

/// Decodes the instruction at the start of `bytes` in a `bitness`-bit code segment.
pub fn decode(bytes: &[u8], bitness: u32, rip: u64) -> Option<Instruction> {
    let mut decoder = Decoder::with_ip(bitness, bytes, rip, DecoderOptions::NONE);
    let instr = decoder.decode();
    (!instr.is_invalid()).then_some(instr)
}

/// The instruction's mnemonic (`xgetbv`), for messages that also show its bytes. (iced's
/// formatters would add the operands, but their tables are ~150 KiB of resident text in
/// every VMM.)
pub fn describe(instr: &Instruction) -> String {
    format!("{:?}", instr.mnemonic()).to_ascii_lowercase()
}

/// Carries out `instr` (which the host refused) on the vCPU state and guest memory, or
/// explains why not.
pub fn emulate(
    instr: &Instruction,
    regs: &mut kvm_regs,
    sregs: &kvm_sregs,
    fpu: &mut kvm_fpu,
    mem: &mut dyn GuestAccess,
) -> Result<Outcome, String> {
    if let Some(name) = fpu::emulate(instr, regs, sregs, fpu, mem)? {
        return Ok(Outcome::EmulatedFpu(name));
    }
    let next = regs.rip.wrapping_add(instr.len() as u64);
    match instr.code() {
        Code::Int3 => {
            regs.rip = next;
            Ok(Outcome::InjectTrap("int3", BP_VECTOR))
        }
        Code::Wait => {
            // FWAIT only raises #MF when an unmasked x87 exception is pending; otherwise it is
            // a no-op. Raising #MF is not implemented: say so rather than drop it.
            if fpu.fsw & FSW_ERROR_SUMMARY != 0 {
                return Err(
                    "fwait with a pending unmasked x87 exception (#MF) is not emulated".into(),
                );
            }
            regs.rip = next;
            Ok(Outcome::Emulated("fwait"))
        }
        Code::Popcnt_r16_rm16 | Code::Popcnt_r32_rm32 | Code::Popcnt_r64_rm64 => {
            if instr.op1_kind() != OpKind::Register {
                return Err("popcnt with a memory operand is not emulated yet".into());
            }
            let src = read_gpr(regs, instr.op1_register())
                .ok_or("popcnt: unsupported source register")?;
            let count = u64::from(src.count_ones());
            if !write_gpr(regs, instr.op0_register(), count) {
                return Err("popcnt: unsupported destination register".into());
            }
            // POPCNT clears OF, SF, ZF, AF, CF, PF, then sets ZF if the source was zero.
            regs.rflags &= !RFLAGS_ARITHMETIC;
            if src == 0 {
                regs.rflags |= RFLAGS_ZF;
            }
            regs.rip = next;
            Ok(Outcome::Emulated("popcnt"))
        }
        _ => Err("no fallback emulation for this instruction".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// No guest memory: the instructions tested here have none.
    struct NoMemory;
    impl GuestAccess for NoMemory {
        fn read(&mut self, _: u64, _: &mut [u8]) -> Result<(), String> {
            Err("no memory".into())
        }
        fn write(&mut self, _: u64, _: &[u8]) -> Result<(), String> {
            Err("no memory".into())
        }
    }

    fn emulate_plain(
        instr: &Instruction,
        regs: &mut kvm_regs,
        fpu: &kvm_fpu,
    ) -> Result<Outcome, String> {
        emulate(
            instr,
            regs,
            &kvm_sregs::default(),
            &mut fpu.clone(),
            &mut NoMemory,
        )
    }

    fn regs_at(rip: u64) -> kvm_regs {
        kvm_regs {
            rip,
            rflags: 0x2 | RFLAGS_ARITHMETIC,
            ..Default::default()
        }
    }

    #[test]
    fn reads_instruction_bytes_from_exit_data() {
        // What this host reported for INT3 followed by `mov eax, 0xa1`.
        let data = [1u64, 0xe700_0000_a1b8_cc0f, 0xfdeb_f464_e6fe_b0f4, 0x1000];
        let bytes = instruction_bytes(&data).unwrap();
        assert_eq!(&bytes[..6], &[0xcc, 0xb8, 0xa1, 0, 0, 0]);
        assert_eq!(bytes.len(), 15);
        assert!(instruction_bytes(&[0, 0, 0]).is_none());
    }

    #[test]
    fn int3_advances_rip_and_asks_for_bp() {
        let instr = decode(&[0xcc, 0x90], 64, 0x1000).unwrap();
        let mut regs = regs_at(0x1000);
        let out = emulate_plain(&instr, &mut regs, &kvm_fpu::default()).unwrap();
        assert_eq!(out, Outcome::InjectTrap("int3", BP_VECTOR));
        assert_eq!(regs.rip, 0x1001);
    }

    #[test]
    fn fwait_is_a_no_op_unless_an_exception_is_pending() {
        let instr = decode(&[0x9b], 64, 0x10).unwrap();
        let mut regs = regs_at(0x10);
        assert_eq!(
            emulate_plain(&instr, &mut regs, &kvm_fpu::default()),
            Ok(Outcome::Emulated("fwait"))
        );
        assert_eq!(regs.rip, 0x11);
        let pending = kvm_fpu {
            fsw: FSW_ERROR_SUMMARY,
            ..Default::default()
        };
        assert!(emulate_plain(&instr, &mut regs_at(0x10), &pending).is_err());
    }

    /// POPCNT as the host CPU computes it, flags included.
    fn host_popcnt(src: u64) -> (u64, u64) {
        let (out, flags): (u64, u64);
        // SAFETY: popcnt and pushfq/pop only touch the named registers and the stack slot
        // pushfq uses, which the asm block declares; the host CPU has POPCNT (x86-64-v2).
        unsafe {
            std::arch::asm!(
                "popcnt {out}, {src}",
                "pushfq",
                "pop {flags}",
                src = in(reg) src,
                out = out(reg) out,
                flags = out(reg) flags,
            );
        }
        (out, flags & RFLAGS_ARITHMETIC)
    }

    #[test]
    fn popcnt_matches_the_host_cpu() {
        // popcnt rax, rbx
        let instr = decode(&[0xf3, 0x48, 0x0f, 0xb8, 0xc3], 64, 0x100).unwrap();
        for src in [
            0u64,
            1,
            0xff,
            0x8000_0000_0000_0001,
            u64::MAX,
            0x1234_5678_9abc_def0,
        ] {
            let mut regs = regs_at(0x100);
            regs.rbx = src;
            assert_eq!(
                emulate_plain(&instr, &mut regs, &kvm_fpu::default()),
                Ok(Outcome::Emulated("popcnt"))
            );
            let (count, flags) = host_popcnt(src);
            assert_eq!(regs.rax, count, "popcnt {src:#x}");
            assert_eq!(regs.rflags & RFLAGS_ARITHMETIC, flags, "flags for {src:#x}");
            assert_eq!(regs.rip, 0x105);
        }
        // popcnt ecx, edx zero-extends into rcx.
        let instr = decode(&[0xf3, 0x0f, 0xb8, 0xca], 64, 0).unwrap();
        let mut regs = regs_at(0);
        (regs.rcx, regs.rdx) = (u64::MAX, 0xffff_ffff_0000_0003);
        emulate_plain(&instr, &mut regs, &kvm_fpu::default()).unwrap();
        assert_eq!(regs.rcx, 2);
    }

    #[test]
    fn refuses_what_it_cannot_do() {
        // popcnt rax, [rbx]
        let instr = decode(&[0xf3, 0x48, 0x0f, 0xb8, 0x03], 64, 0).unwrap();
        assert!(emulate_plain(&instr, &mut regs_at(0), &kvm_fpu::default()).is_err());
        // xgetbv
        let instr = decode(&[0x0f, 0x01, 0xd0], 64, 0).unwrap();
        assert!(emulate_plain(&instr, &mut regs_at(0), &kvm_fpu::default()).is_err());
        assert_eq!(describe(&instr), "xgetbv");
    }
}
