//! SSE/x87 control instructions the host refuses (seen when a Linux guest suspends to RAM:
//! `kernel_fpu_begin` runs LDMXCSR and FNINIT, and the FPU state is saved and restored with
//! FXSAVE/FXRSTOR). They work on the vCPU's `kvm_fpu` and, for memory operands, on guest
//! memory through [`GuestAccess`].

use iced_x86::{Code, Instruction, OpKind, Register};
use kvm_bindings::{kvm_fpu, kvm_regs, kvm_sregs};

use super::{read_gpr, FSW_ERROR_SUMMARY};

/// Guest-virtual memory as the vCPU sees it.
pub trait GuestAccess {
    fn read(&mut self, gva: u64, buf: &mut [u8]) -> Result<(), String>;
    fn write(&mut self, gva: u64, data: &[u8]) -> Result<(), String>;
}

/// x87 control word after FNINIT: all exceptions masked, 64-bit precision, round to nearest.
const FCW_DEFAULT: u16 = 0x37f;
/// MXCSR bits a guest may set (FXSAVE's MXCSR_MASK on CPUs with DAZ).
pub const MXCSR_MASK: u32 = 0xffff;
pub const FXSAVE_SIZE: usize = 512;

/// The memory operand's guest-virtual address (64-bit mode: only FS and GS have a base).
fn address(instr: &Instruction, regs: &kvm_regs, sregs: &kvm_sregs) -> Result<u64, String> {
    if instr.op0_kind() != OpKind::Memory {
        return Err("no memory operand".into());
    }
    instr
        .virtual_address(0, 0, |reg, _, _| match reg {
            Register::FS => Some(sregs.fs.base),
            Register::GS => Some(sregs.gs.base),
            Register::ES | Register::CS | Register::SS | Register::DS => Some(0),
            Register::RIP => Some(instr.next_ip()),
            other => read_gpr(regs, other),
        })
        .ok_or_else(|| "unsupported addressing mode".into())
}

/// Carries out an FPU control instruction; `Ok(None)` if `instr` is not one of them. On
/// success `fpu` holds the new state (write it back) and RIP is past the instruction.
pub fn emulate(
    instr: &Instruction,
    regs: &mut kvm_regs,
    sregs: &kvm_sregs,
    fpu: &mut kvm_fpu,
    mem: &mut dyn GuestAccess,
) -> Result<Option<&'static str>, String> {
    let name = match instr.code() {
        Code::Ldmxcsr_m32 => {
            let mut raw = [0u8; 4];
            mem.read(address(instr, regs, sregs)?, &mut raw)?;
            let value = u32::from_le_bytes(raw);
            if value & !MXCSR_MASK != 0 {
                return Err(format!(
                    "ldmxcsr of {value:#x} (reserved bits: #GP) is not emulated"
                ));
            }
            fpu.mxcsr = value;
            "ldmxcsr"
        }
        Code::Stmxcsr_m32 => {
            mem.write(address(instr, regs, sregs)?, &fpu.mxcsr.to_le_bytes())?;
            "stmxcsr"
        }
        Code::Finit if fpu.fsw & FSW_ERROR_SUMMARY != 0 => {
            return Err("finit with a pending unmasked x87 exception (#MF) is not emulated".into());
        }
        Code::Fninit | Code::Finit => {
            fpu.fcw = FCW_DEFAULT;
            fpu.fsw = 0;
            fpu.ftwx = 0;
            fpu.last_opcode = 0;
            fpu.last_ip = 0;
            fpu.last_dp = 0;
            "fninit"
        }
        Code::Fxsave64_m512byte | Code::Fxsave_m512byte => {
            mem.write(address(instr, regs, sregs)?, &fxsave_image(fpu))?;
            "fxsave"
        }
        Code::Fxrstor64_m512byte | Code::Fxrstor_m512byte => {
            let mut image = [0u8; FXSAVE_SIZE];
            mem.read(address(instr, regs, sregs)?, &mut image)?;
            fxrstor_image(&image, fpu)?;
            "fxrstor"
        }
        _ => return Ok(None),
    };
    regs.rip = instr.next_ip();
    Ok(Some(name))
}

/// The 64-bit FXSAVE layout (SDM vol. 1, table 10-2) of `fpu`.
pub fn fxsave_image(fpu: &kvm_fpu) -> [u8; FXSAVE_SIZE] {
    let mut image = [0u8; FXSAVE_SIZE];
    image[0..2].copy_from_slice(&fpu.fcw.to_le_bytes());
    image[2..4].copy_from_slice(&fpu.fsw.to_le_bytes());
    image[4] = fpu.ftwx;
    image[6..8].copy_from_slice(&fpu.last_opcode.to_le_bytes());
    image[8..16].copy_from_slice(&fpu.last_ip.to_le_bytes());
    image[16..24].copy_from_slice(&fpu.last_dp.to_le_bytes());
    image[24..28].copy_from_slice(&fpu.mxcsr.to_le_bytes());
    image[28..32].copy_from_slice(&MXCSR_MASK.to_le_bytes());
    for (i, st) in fpu.fpr.iter().enumerate() {
        image[32 + 16 * i..48 + 16 * i].copy_from_slice(st);
    }
    for (i, xmm) in fpu.xmm.iter().enumerate() {
        image[160 + 16 * i..176 + 16 * i].copy_from_slice(xmm);
    }
    image
}

/// Loads an FXSAVE image into `fpu`; reserved MXCSR bits are refused (#GP on hardware).
pub fn fxrstor_image(image: &[u8; FXSAVE_SIZE], fpu: &mut kvm_fpu) -> Result<(), String> {
    let word = |at: usize| u16::from_le_bytes([image[at], image[at + 1]]);
    let mut quad = [0u8; 8];
    let mxcsr = u32::from_le_bytes([image[24], image[25], image[26], image[27]]);
    if mxcsr & !MXCSR_MASK != 0 {
        return Err(format!(
            "fxrstor of MXCSR {mxcsr:#x} (reserved bits: #GP) is not emulated"
        ));
    }
    fpu.fcw = word(0);
    fpu.fsw = word(2);
    fpu.ftwx = image[4];
    fpu.last_opcode = word(6);
    quad.copy_from_slice(&image[8..16]);
    fpu.last_ip = u64::from_le_bytes(quad);
    quad.copy_from_slice(&image[16..24]);
    fpu.last_dp = u64::from_le_bytes(quad);
    fpu.mxcsr = mxcsr;
    for (i, st) in fpu.fpr.iter_mut().enumerate() {
        st.copy_from_slice(&image[32 + 16 * i..48 + 16 * i]);
    }
    for (i, xmm) in fpu.xmm.iter_mut().enumerate() {
        xmm.copy_from_slice(&image[160 + 16 * i..176 + 16 * i]);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::decode;
    use super::*;

    /// Guest memory at guest-virtual 0x1000 and up, identity-like, for operand tests.
    struct Flat(Vec<u8>);
    impl GuestAccess for Flat {
        fn read(&mut self, gva: u64, buf: &mut [u8]) -> Result<(), String> {
            let at = usize::try_from(gva - 0x1000).map_err(|e| e.to_string())?;
            buf.copy_from_slice(self.0.get(at..at + buf.len()).ok_or("out of range")?);
            Ok(())
        }
        fn write(&mut self, gva: u64, data: &[u8]) -> Result<(), String> {
            let at = usize::try_from(gva - 0x1000).map_err(|e| e.to_string())?;
            self.0
                .get_mut(at..at + data.len())
                .ok_or("out of range")?
                .copy_from_slice(data);
            Ok(())
        }
    }

    fn run(bytes: &[u8], regs: &mut kvm_regs, fpu: &mut kvm_fpu, mem: &mut Flat) -> &'static str {
        let instr = decode(bytes, 64, regs.rip).unwrap();
        emulate(&instr, regs, &kvm_sregs::default(), fpu, mem)
            .unwrap()
            .unwrap()
    }

    /// MXCSR and an FXSAVE image of the host CPU after `ldmxcsr value`.
    fn host_fxsave_after_ldmxcsr(value: u32) -> (u32, [u8; FXSAVE_SIZE]) {
        #[repr(C, align(16))]
        struct Area([u8; FXSAVE_SIZE]);
        let mut area = Area([0; FXSAVE_SIZE]);
        let mut saved = 0u32;
        let mut old = 0u32;
        // SAFETY: stmxcsr/ldmxcsr/fxsave64 write only the named, properly sized and aligned
        // locals; the host's MXCSR is put back before the block ends.
        unsafe {
            std::arch::asm!(
                "stmxcsr [{old}]",
                "ldmxcsr [{value}]",
                "stmxcsr [{saved}]",
                "fxsave64 [{area}]",
                "ldmxcsr [{old}]",
                old = in(reg) &mut old,
                value = in(reg) &value,
                saved = in(reg) &mut saved,
                area = in(reg) area.0.as_mut_ptr(),
            );
        }
        (saved, area.0)
    }

    #[test]
    fn ldmxcsr_and_stmxcsr_match_the_host_cpu() {
        let mut mem = Flat(vec![0; 64]);
        for value in [0x1f80u32, 0x9fc0, 0x1f80 | 0x6000] {
            mem.0[8..12].copy_from_slice(&value.to_le_bytes());
            // ldmxcsr [rsp+4] with rsp = 0x1004, as Linux's kernel_fpu_begin does.
            let mut regs = kvm_regs {
                rsp: 0x1004,
                rip: 0x100,
                ..Default::default()
            };
            let mut fpu = kvm_fpu::default();
            assert_eq!(
                run(
                    &[0x0f, 0xae, 0x54, 0x24, 0x04],
                    &mut regs,
                    &mut fpu,
                    &mut mem
                ),
                "ldmxcsr"
            );
            assert_eq!(regs.rip, 0x105);
            let (host, _) = host_fxsave_after_ldmxcsr(value);
            assert_eq!(fpu.mxcsr, host);
            // stmxcsr [rsp+12]
            assert_eq!(
                run(
                    &[0x0f, 0xae, 0x5c, 0x24, 0x0c],
                    &mut regs,
                    &mut fpu,
                    &mut mem
                ),
                "stmxcsr"
            );
            assert_eq!(&mem.0[16..20], &host.to_le_bytes());
        }
        // Reserved MXCSR bits: refused, nothing changed.
        mem.0[8..12].copy_from_slice(&0x1_0000u32.to_le_bytes());
        let instr = decode(&[0x0f, 0xae, 0x54, 0x24, 0x04], 64, 0).unwrap();
        let mut regs = kvm_regs {
            rsp: 0x1004,
            ..Default::default()
        };
        let mut fpu = kvm_fpu::default();
        assert!(emulate(&instr, &mut regs, &kvm_sregs::default(), &mut fpu, &mut mem).is_err());
        assert_eq!(fpu.mxcsr, 0);
    }

    #[test]
    fn fxsave_layout_matches_the_host_cpu_and_fxrstor_reads_it_back() {
        let (mxcsr, host) = host_fxsave_after_ldmxcsr(0x1fa0);
        // The host's image, loaded, saves to the same bytes in the fields KVM keeps.
        let mut fpu = kvm_fpu::default();
        let mut mem = Flat(host.to_vec());
        let mut regs = kvm_regs {
            rbx: 0x1000,
            ..Default::default()
        };
        // fxrstor64 [rbx]
        assert_eq!(
            run(&[0x48, 0x0f, 0xae, 0x0b], &mut regs, &mut fpu, &mut mem),
            "fxrstor"
        );
        assert_eq!(fpu.mxcsr, mxcsr);
        let mut out = Flat(vec![0; FXSAVE_SIZE]);
        // fxsave64 [rbx]
        assert_eq!(
            run(&[0x48, 0x0f, 0xae, 0x03], &mut regs, &mut fpu, &mut out),
            "fxsave"
        );
        assert_eq!(
            &out.0[..24],
            &host[..24],
            "x87 control, status, tag, opcode, pointers"
        );
        assert_eq!(&out.0[24..28], &host[24..28], "MXCSR");
        assert_eq!(&out.0[32..416], &host[32..416], "ST0-7 and XMM0-15");
    }

    #[test]
    fn fninit_resets_the_x87_control_state() {
        let mut fpu = kvm_fpu {
            fcw: 0x27f,
            fsw: 0x80,
            ftwx: 0xff,
            ..Default::default()
        };
        let mut regs = kvm_regs::default();
        assert_eq!(
            run(&[0xdb, 0xe3], &mut regs, &mut fpu, &mut Flat(vec![])),
            "fninit"
        );
        assert_eq!((fpu.fcw, fpu.fsw, fpu.ftwx), (FCW_DEFAULT, 0, 0));
        assert_eq!(regs.rip, 2);
    }
}
