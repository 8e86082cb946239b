//! Tiny test guests, assembled here with iced-x86.
//!
//! On this host's PVM KVM, guest code at CPL0 is emulated (~1-4 M instructions/s) while CPL3
//! runs natively (shared/PVM.md), so the long-mode guests keep CPL0 to setup and a tiny
//! exception handler and run their workload at CPL3.
//!
//! Conventions shared with the VMM's test-guest loader: real-mode images load at 0x10000
//! (CS = DS = 0x1000, IP = 0); long-mode images load and start at 0x100000 with the VMM's
//! identity map (user-accessible), its GDT (user CS 0x33, SS 0x2b) and a TSS whose RSP0
//! is the boot stack (where exceptions from CPL3 land).
//! Results go to the test-report port 0xf4 (32-bit OUT); `out 0x64, 0xfe` ends the VM.

use iced_x86::code_asm::*;

pub const LONG_MODE_BASE: u64 = 0x10_0000;
pub const TEST_REPORT_PORT: u8 = 0xf4;
const COM1: u16 = 0x3f8;
const USER_CS: u64 = 0x33;
const USER_SS: u64 = 0x2b;
const USER_STACK: u64 = 0x9_0000;
/// Where the checksum guest's workload pages start (above its own code).
pub const WORKLOAD_BASE: u64 = 0x20_0000;
const PATTERN_MULTIPLIER: u64 = 0x9e37_79b9_7f4a_7c15;
const PATTERN_OFFSET: i32 = 0x1234;

fn assemble(a: &mut CodeAssembler, base: u64) -> Vec<u8> {
    a.assemble(base).expect("test guest assembles")
}

/// Assembles a 64-bit guest written by `body`, loaded at [`LONG_MODE_BASE`]. Panics naming
/// `what` if the code does not assemble (a bug in the test, not in the VMM).
fn long_mode(
    what: &str,
    body: impl FnOnce(&mut CodeAssembler) -> Result<(), IcedError>,
) -> Vec<u8> {
    let mut a = CodeAssembler::new(64).expect("64-bit assembler");
    body(&mut a).unwrap_or_else(|e| panic!("{what}: {e:?}"));
    assemble(&mut a, LONG_MODE_BASE)
}

/// Ends the VM through the i8042 reset line, as Linux's `reboot=k` does.
fn reset(a: &mut CodeAssembler) -> Result<(), IcedError> {
    a.mov(al, 0xfe_u32 as i32)?;
    a.out(0x64, al)?;
    let mut forever = a.create_label();
    a.set_label(&mut forever)?;
    a.hlt()?;
    a.jmp(forever)?;
    Ok(())
}

/// Real mode: prints `message` on COM1, then resets. Its first instruction already leads
/// to a serial byte (the start-latency benchmark measures up to that byte).
pub fn real_mode_hello(message: &str) -> Vec<u8> {
    // 16-bit code can't take a label's address with LEA here, so assemble the code once to
    // learn its length (the MOV's immediate doesn't change it), then again with the
    // message's real offset, and append the message.
    let code = |msg_offset: u32| -> Vec<u8> {
        let mut a = CodeAssembler::new(16).expect("16-bit assembler");
        let build = |a: &mut CodeAssembler| -> Result<(), IcedError> {
            let mut next = a.create_label();
            let mut done = a.create_label();
            a.mov(dx, COM1 as u32)?;
            a.mov(si, msg_offset)?;
            a.set_label(&mut next)?;
            a.mov(al, byte_ptr(si))?;
            a.test(al, al)?;
            a.jz(done)?;
            a.out(dx, al)?;
            a.inc(si)?;
            a.jmp(next)?;
            a.set_label(&mut done)?;
            reset(a)
        };
        build(&mut a).expect("real-mode hello");
        assemble(&mut a, 0)
    };
    let mut image = code(code(0).len() as u32);
    image.extend_from_slice(message.as_bytes());
    image.push(0);
    image
}

/// Real mode: prints `ready\n`, then halts with interrupts off, forever.
pub fn real_mode_halt() -> Vec<u8> {
    let mut a = CodeAssembler::new(16).expect("16-bit assembler");
    let build = |a: &mut CodeAssembler| -> Result<(), IcedError> {
        a.cli()?;
        a.mov(dx, COM1 as u32)?;
        for b in b"ready\n" {
            a.mov(al, *b as u32)?;
            a.out(dx, al)?;
        }
        let mut forever = a.create_label();
        a.set_label(&mut forever)?;
        a.hlt()?;
        a.jmp(forever)?;
        Ok(())
    };
    build(&mut a).expect("real-mode halt");
    assemble(&mut a, 0)
}

/// Where the long-mode guests build their IDT, and the IDTR image that points at it.
const IDT_BASE: u64 = 0x1000;
const IDTR_ADDR: u64 = 0xff0;
const VECTOR_UD: u64 = 6;
const VECTOR_GP: u64 = 13;
const VECTOR_PF: u64 = 14;
/// Reported by the fault handler, plus the vector, when the guest takes an unexpected fault.
pub const FAULT_REPORT: u32 = 0xdead_0000;

/// CPL0 prologue of the long-mode guests: installs an IDT whose #UD gate enters `service`
/// and whose #GP/#PF gates enter a handler that reports `FAULT_REPORT | vector` and resets,
/// then IRETQs to `user` at CPL3 with interrupts off.
///
/// Why #UD and not SYSCALL: on this host's PVM KVM a SYSCALL from guest CPL3 jumps to LSTAR
/// but leaves the vCPU at CPL3 (CS stays 0x33), so the "kernel" side can't do port I/O.
/// Exceptions through the IDT do switch to CPL0 (measured, see docs/pvm-notes.md); the
/// workload ends its step with UD2 and the #UD handler acts as its system call.
fn enter_user_mode(
    a: &mut CodeAssembler,
    user: CodeLabel,
    service: CodeLabel,
) -> Result<(), IcedError> {
    let fault_gp = a.create_label();
    let fault_pf = a.create_label();
    let mut start = a.create_label();
    a.jmp(start)?;
    for (mut label, vector) in [(fault_gp, VECTOR_GP), (fault_pf, VECTOR_PF)] {
        a.set_label(&mut label)?;
        a.mov(eax, FAULT_REPORT | vector as u32)?;
        a.out(TEST_REPORT_PORT as u32, eax)?;
        reset(a)?;
    }
    a.set_label(&mut start)?;
    for (label, vector) in [
        (service, VECTOR_UD),
        (fault_gp, VECTOR_GP),
        (fault_pf, VECTOR_PF),
    ] {
        install_gate(a, vector, label)?;
    }
    a.lea(rax, ptr(user))?;
    a.push(USER_SS as i32)?;
    a.push(USER_STACK as i32)?;
    a.push(0x2)?; // RFLAGS: reserved bit only, interrupts off
    a.push(USER_CS as i32)?;
    a.push(rax)?;
    a.iretq()?;
    Ok(())
}

/// Expected value of u64 number `i` written by [`long_mode_checksum`].
pub fn pattern(i: u64) -> u64 {
    i.wrapping_mul(PATTERN_MULTIPLIER)
        .wrapping_add(PATTERN_OFFSET as u64)
}

/// The checksum [`long_mode_checksum`] reports for `pages` pages.
pub fn expected_checksum(pages: u64) -> u32 {
    let sum = (0..pages * 512).fold(0u64, |s, i| s.wrapping_add(pattern(i)));
    ((sum >> 32) ^ sum) as u32
}

/// 64-bit guest: drops to CPL3, writes [`pattern`] to `pages` pages from
/// [`WORKLOAD_BASE`], reads them back, then SYSCALLs to a CPL0 handler that reports three
/// values: the CPL the workload ran at, the number of mismatching words, and the folded sum
/// of what it read ([`expected_checksum`]). Then it resets.
pub fn long_mode_checksum(pages: u64) -> Vec<u8> {
    let mut a = CodeAssembler::new(64).expect("64-bit assembler");
    let words = pages * 512;
    let build = |a: &mut CodeAssembler| -> Result<(), IcedError> {
        let mut user = a.create_label();
        let mut handler = a.create_label();
        enter_user_mode(a, user, handler)?;

        a.set_label(&mut user)?;
        a.mov(ax, cs)?;
        a.and(eax, 3)?;
        a.mov(r13d, eax)?;
        a.mov(r8, PATTERN_MULTIPLIER)?;
        a.mov(rsi, WORKLOAD_BASE)?;
        a.mov(r12, words)?;
        // Write pass.
        write_pattern(a)?;
        // Read-and-check pass.
        a.xor(ecx, ecx)?;
        a.xor(r9d, r9d)?;
        a.xor(r10d, r10d)?;
        let mut read = a.create_label();
        let mut same = a.create_label();
        a.set_label(&mut read)?;
        a.mov(rax, qword_ptr(rsi + rcx * 8))?;
        a.add(r9, rax)?;
        a.mov(rdx, rcx)?;
        a.imul_2(rdx, r8)?;
        a.add(rdx, PATTERN_OFFSET)?;
        a.cmp(rax, rdx)?;
        a.je(same)?;
        a.inc(r10)?;
        a.set_label(&mut same)?;
        a.inc(rcx)?;
        a.cmp(rcx, r12)?;
        a.jb(read)?;
        a.mov(rax, r9)?;
        a.shr(rax, 32)?;
        a.xor(r9d, eax)?;
        a.ud2()?;

        // CPL0: report and end.
        a.set_label(&mut handler)?;
        a.mov(eax, r13d)?;
        a.out(TEST_REPORT_PORT as u32, eax)?;
        a.mov(eax, r10d)?;
        a.out(TEST_REPORT_PORT as u32, eax)?;
        a.mov(eax, r9d)?;
        a.out(TEST_REPORT_PORT as u32, eax)?;
        reset(a)?;
        Ok(())
    };
    build(&mut a).expect("long-mode checksum guest");
    assemble(&mut a, LONG_MODE_BASE)
}

/// 64-bit guest that counts forever at CPL3 and, every 2^`shift` iterations, enters its CPL0
/// service handler (UD2) to report the number of reports so far (1, 2, 3, ...). Progress is visible in
/// `vm.counters`, so a test can tell whether the vCPU runs.
pub fn long_mode_ticker(shift: u32) -> Vec<u8> {
    long_mode("long-mode ticker guest", |a| {
        let mut user = a.create_label();
        let mut handler = a.create_label();
        enter_user_mode(a, user, handler)?;

        a.set_label(&mut user)?;
        a.xor(ebx, ebx)?;
        a.xor(edi, edi)?;
        let mut spin = a.create_label();
        a.set_label(&mut spin)?;
        a.inc(rbx)?;
        a.mov(rax, rbx)?;
        a.shl(rax, 64 - shift)?;
        a.jnz(spin)?;
        a.inc(edi)?;
        a.ud2()?;
        a.jmp(spin)?;

        // CPL0: report, then return past the 2-byte UD2 to CPL3.
        a.set_label(&mut handler)?;
        a.mov(eax, edi)?;
        a.out(TEST_REPORT_PORT as u32, eax)?;
        a.add(qword_ptr(rsp), 2)?;
        a.iretq()?;
        Ok(())
    })
}

/// Where [`long_mode_memory_counter`] keeps its count (a u64, guest-physical), with
/// [`MEMORY_COUNTER_MARK`] in the next u64.
pub const MEMORY_COUNTER_ADDR: u64 = WORKLOAD_BASE;
/// What [`long_mode_memory_counter`] writes beside its count, so a test can find it in a file
/// that backs guest RAM.
pub const MEMORY_COUNTER_MARK: u64 = 0x3045_4e4f_5a5f_5452; // "RT_ZONE0", little endian

/// 64-bit guest like [`long_mode_ticker`] whose count lives in guest memory, not in a
/// register: it writes [`MEMORY_COUNTER_MARK`] at [`MEMORY_COUNTER_ADDR`] + 8, then counts at
/// CPL3 and every 2^`shift` iterations increments the u64 at [`MEMORY_COUNTER_ADDR`] and
/// reports it (its low 32 bits) from its CPL0 handler. A clone continues the count it finds in
/// memory; a file that backs the guest's RAM shows it.
pub fn long_mode_memory_counter(shift: u32) -> Vec<u8> {
    long_mode("long-mode memory counter guest", |a| {
        let mut user = a.create_label();
        let mut handler = a.create_label();
        enter_user_mode(a, user, handler)?;

        a.set_label(&mut user)?;
        a.mov(rdi, MEMORY_COUNTER_ADDR)?;
        a.mov(rax, MEMORY_COUNTER_MARK)?;
        a.mov(qword_ptr(rdi + 8), rax)?;
        a.xor(ebx, ebx)?;
        let mut spin = a.create_label();
        a.set_label(&mut spin)?;
        a.inc(rbx)?;
        a.mov(rax, rbx)?;
        a.shl(rax, 64 - shift)?;
        a.jnz(spin)?;
        a.inc(qword_ptr(rdi))?;
        a.ud2()?;
        a.jmp(spin)?;

        // CPL0: report the count from memory, then return past the 2-byte UD2 to CPL3.
        a.set_label(&mut handler)?;
        a.mov(rax, MEMORY_COUNTER_ADDR)?;
        a.mov(eax, dword_ptr(rax))?;
        a.out(TEST_REPORT_PORT as u32, eax)?;
        a.add(qword_ptr(rsp), 2)?;
        a.iretq()?;
        Ok(())
    })
}

/// Guest-physical address of the FACS (`revenant_acpi::platform::FACS_ADDR`), where a guest
/// sets its firmware waking vector before sleeping.
const FACS_ADDR: u32 = 0x000e_0040;
const SLEEP_CONTROL_PORT: u16 = 0x600;
const SLEEP_STATUS_PORT: u16 = 0x601;
const SLP_EN: u32 = 1 << 5;
const WAK_STS: u32 = 1 << 7;
const SLP_TYP_S3: u32 = 1;
const SLP_TYP_S5: u32 = 5;

/// Real mode: counts how often it has started (the counter lives in guest RAM, so it survives
/// S3), prints `W` if WAK_STS is set (clearing it) and the count with a newline, points the
/// FACS waking vector at its own entry and asks for S3. On its `rounds`-th start it asks for
/// S5 (power off) instead. So a VM woken twice prints `1\nW2\nW3\n` with rounds = 3.
pub fn real_mode_sleeper(rounds: u8) -> Vec<u8> {
    let mut a = CodeAssembler::new(16).expect("16-bit assembler");
    let build = |a: &mut CodeAssembler| -> Result<(), IcedError> {
        let mut not_woken = a.create_label();
        let mut power_off = a.create_label();
        let mut forever = a.create_label();
        a.mov(bx, 0x1000u32)?; // counter at DS:0x1000, past the image
        a.inc(byte_ptr(bx))?;
        a.mov(dx, SLEEP_STATUS_PORT as u32)?;
        a.in_(al, dx)?;
        a.test(al, WAK_STS)?;
        a.jz(not_woken)?;
        a.out(dx, al)?; // write WAK_STS back: clears it
        a.mov(dx, COM1 as u32)?;
        a.mov(al, b'W' as u32)?;
        a.out(dx, al)?;
        a.set_label(&mut not_woken)?;
        a.mov(dx, COM1 as u32)?;
        a.mov(al, byte_ptr(bx))?;
        a.add(al, b'0' as u32)?;
        a.out(dx, al)?;
        a.mov(al, b'\n' as u32)?;
        a.out(dx, al)?;
        a.cmp(byte_ptr(bx), rounds as u32)?;
        a.jae(power_off)?;
        // FACS.firmware_waking_vector = 0x10000 (this image's entry: CS=0x1000, IP=0).
        a.mov(ax, FACS_ADDR >> 4)?;
        a.mov(es, ax)?;
        a.mov(di, (FACS_ADDR & 0xf) + 12)?;
        a.mov(dword_ptr(di).es(), 0x1_0000u32)?;
        a.mov(dx, SLEEP_CONTROL_PORT as u32)?;
        a.mov(al, (SLP_TYP_S3 << 2) | SLP_EN)?;
        a.out(dx, al)?;
        a.jmp(forever)?;
        a.set_label(&mut power_off)?;
        a.mov(dx, SLEEP_CONTROL_PORT as u32)?;
        a.mov(al, (SLP_TYP_S5 << 2) | SLP_EN)?;
        a.out(dx, al)?;
        a.set_label(&mut forever)?;
        a.hlt()?;
        a.jmp(forever)?;
        Ok(())
    };
    build(&mut a).expect("real-mode sleeper");
    assemble(&mut a, 0)
}

/// Writes [`pattern`]`(i)` to word `i` for `i` in `0..R12`, from RSI, with R8 holding the
/// pattern multiplier (clobbers RAX, RCX).
fn write_pattern(a: &mut CodeAssembler) -> Result<(), IcedError> {
    a.xor(ecx, ecx)?;
    let mut write = a.create_label();
    a.set_label(&mut write)?;
    a.mov(rax, rcx)?;
    a.imul_2(rax, r8)?;
    a.add(rax, PATTERN_OFFSET)?;
    a.mov(qword_ptr(rsi + rcx * 8), rax)?;
    a.inc(rcx)?;
    a.cmp(rcx, r12)?;
    a.jb(write)
}

/// CPL3 code writing one u64 of the pattern to each word of `pages` pages from
/// [`WORKLOAD_BASE`] (clobbers RAX, RCX, RSI).
fn fill_pages(a: &mut CodeAssembler, pages: u64) -> Result<(), IcedError> {
    if pages == 0 {
        return Ok(());
    }
    a.mov(rsi, WORKLOAD_BASE)?;
    a.mov(rcx, pages * 512)?;
    a.mov(rax, PATTERN_MULTIPLIER)?;
    let mut fill = a.create_label();
    a.set_label(&mut fill)?;
    a.mov(qword_ptr(rsi), rax)?;
    a.add(rsi, 8)?;
    a.dec(rcx)?;
    a.jnz(fill)
}

/// Installs one IDT gate (64-bit interrupt gate, DPL0) for `vector` pointing at `handler`
/// and loads the IDT.
fn install_gate(a: &mut CodeAssembler, vector: u64, handler: CodeLabel) -> Result<(), IcedError> {
    // 64-bit interrupt gate: offset 15:0, selector, type 0x8e (present, DPL0), offset
    // 31:16, offset 63:32, reserved.
    a.lea(rax, ptr(handler))?;
    a.mov(rbx, IDT_BASE + vector * 16)?;
    a.mov(word_ptr(rbx), ax)?;
    a.mov(word_ptr(rbx + 2), 0x10u32)?;
    a.mov(word_ptr(rbx + 4), 0x8e00u32)?;
    a.shr(rax, 16)?;
    a.mov(word_ptr(rbx + 6), ax)?;
    a.shr(rax, 16)?;
    a.mov(dword_ptr(rbx + 8), eax)?;
    a.mov(dword_ptr(rbx + 12), 0u32)?;
    a.mov(rbx, IDTR_ADDR)?;
    a.mov(word_ptr(rbx), (256 * 16 - 1) as u32)?;
    a.mov(qword_ptr(rbx + 2), IDT_BASE as i32)?;
    a.lidt(ptr(rbx))?;
    Ok(())
}

fn report(a: &mut CodeAssembler, value: u32) -> Result<(), IcedError> {
    a.mov(eax, value)?;
    a.out(TEST_REPORT_PORT as u32, eax)
}

/// 64-bit guest, all at CPL0, that runs instructions this host's KVM refuses to emulate
/// (shared/PVM.md) and Revenant handles as fallbacks. Reports, in order: 0xa0; 0xb0 from its
/// #BP handler after INT3; 8 = POPCNT of 0xf0f0; 0xa1 after FWAIT. Then it resets, or, with
/// `halt_at_end`, halts forever (so the VM stays up for its counters to be read).
pub fn long_mode_fallbacks(halt_at_end: bool) -> Vec<u8> {
    long_mode("long-mode fallback guest", |a| {
        let mut breakpoint = a.create_label();
        let mut start = a.create_label();
        a.jmp(start)?;
        a.set_label(&mut breakpoint)?;
        report(a, 0xb0)?;
        a.iretq()?;
        a.set_label(&mut start)?;
        install_gate(a, 3, breakpoint)?;
        report(a, 0xa0)?;
        a.int3()?;
        a.mov(rbx, 0xf0f0u64)?;
        a.popcnt(rax, rbx)?;
        a.out(TEST_REPORT_PORT as u32, eax)?;
        a.wait()?;
        report(a, 0xa1)?;
        if halt_at_end {
            let mut forever = a.create_label();
            a.set_label(&mut forever)?;
            a.hlt()?;
            a.jmp(forever)
        } else {
            reset(a)
        }
    })
}

/// 64-bit guest that executes XGETBV at CPL0, which this host's KVM refuses and Revenant does
/// not emulate: the VM must stop with a message naming it. Reports 0xa0 first.
pub fn long_mode_unsupported_instruction() -> Vec<u8> {
    long_mode("long-mode unsupported guest", |a| {
        report(a, 0xa0)?;
        a.xor(ecx, ecx)?;
        a.xgetbv()?;
        report(a, 0xa1)?;
        reset(a)
    })
}

/// 64-bit guest that reports CPUID leaf 1 ECX, leaf 7.0 EBX, leaf 0x8000_0001 ECX and leaf
/// 0x4000_0001 EAX, then halts (so the VM stays up).
pub fn long_mode_cpuid() -> Vec<u8> {
    long_mode("long-mode cpuid guest", |a| {
        for (leaf, pick) in [
            (1u32, 'c'),
            (7, 'b'),
            (0x8000_0001, 'c'),
            (0x4000_0001, 'a'),
        ] {
            a.mov(eax, leaf)?;
            a.xor(ecx, ecx)?;
            a.cpuid()?;
            match pick {
                'c' => a.mov(eax, ecx)?,
                'b' => a.mov(eax, ebx)?,
                _ => {}
            }
            a.out(TEST_REPORT_PORT as u32, eax)?;
        }
        let mut forever = a.create_label();
        a.set_label(&mut forever)?;
        a.hlt()?;
        a.jmp(forever)
    })
}

/// Guest-physical address of the VMGenID buffer (`revenant_acpi::platform::VMGENID_ADDR`).
pub const VMGENID_ADDR: u64 = 0x000e_ff00;
/// What [`long_mode_vmgenid_watcher`] reports when it sees a new generation ID.
pub const VMGENID_CHANGED: u32 = 0x6e_e7;

/// 64-bit guest that first fills `fill_pages` pages from [`WORKLOAD_BASE`] (so a snapshot of
/// it has that much data), then watches the VMGenID buffer at CPL3. Each time the ID changes
/// (every clone gets a new one at restore) it reports [`VMGENID_CHANGED`] through its #UD
/// handler and goes on watching. A clone's first report therefore marks the moment it ran.
pub fn long_mode_vmgenid_watcher(fill_pages_count: u64) -> Vec<u8> {
    long_mode_vmgenid_toucher(fill_pages_count, 0)
}

/// [`long_mode_vmgenid_watcher`] that, on seeing a new ID, first reads one word from each of
/// `touch_pages` pages from [`WORKLOAD_BASE`] (a clone's first work after a fork, whose pages
/// an on-demand restore must fault in) and only then reports.
pub fn long_mode_vmgenid_toucher(fill_pages_count: u64, touch_pages: u64) -> Vec<u8> {
    long_mode("vmgenid watcher guest", |a| {
        let mut user = a.create_label();
        let mut service = a.create_label();
        enter_user_mode(a, user, service)?;

        a.set_label(&mut user)?;
        a.nop()?; // iced allows one label per instruction
        fill_pages(a, fill_pages_count)?;
        let mut watch = a.create_label();
        let mut wait = a.create_label();
        let mut changed = a.create_label();
        a.set_label(&mut watch)?;
        a.mov(rdi, VMGENID_ADDR)?;
        a.mov(rbx, qword_ptr(rdi))?;
        a.mov(r12, qword_ptr(rdi + 8))?;
        a.set_label(&mut wait)?;
        a.pause()?;
        a.cmp(qword_ptr(rdi), rbx)?;
        a.jne(changed)?;
        a.cmp(qword_ptr(rdi + 8), r12)?;
        a.je(wait)?;
        a.set_label(&mut changed)?;
        if touch_pages > 0 {
            a.mov(rsi, WORKLOAD_BASE)?;
            a.mov(rcx, touch_pages)?;
            let mut touch = a.create_label();
            a.set_label(&mut touch)?;
            a.add(rax, qword_ptr(rsi))?;
            a.add(rsi, 4096)?;
            a.dec(rcx)?;
            a.jnz(touch)?;
        }
        a.ud2()?;
        a.jmp(watch)?;

        // CPL0: report, return past the UD2.
        a.set_label(&mut service)?;
        report(a, VMGENID_CHANGED)?;
        a.add(qword_ptr(rsp), 2)?;
        a.iretq()?;
        Ok(())
    })
}

/// 64-bit guest that fills `fill_pages` pages from [`WORKLOAD_BASE`] at CPL3, reports 0x1d1e
/// through its #UD handler and then halts there with interrupts off: an idle VM that costs no
/// CPU (the vCPU sleeps in the in-kernel LAPIC), for density measurements.
pub fn long_mode_fill_then_idle(fill_pages_count: u64) -> Vec<u8> {
    long_mode("fill-then-idle guest", |a| {
        let mut user = a.create_label();
        let mut service = a.create_label();
        enter_user_mode(a, user, service)?;
        a.set_label(&mut user)?;
        a.nop()?; // iced allows one label per instruction
        fill_pages(a, fill_pages_count)?;
        a.ud2()?;
        a.set_label(&mut service)?;
        report(a, 0x1d1e)?;
        let mut idle = a.create_label();
        a.set_label(&mut idle)?;
        a.hlt()?;
        a.jmp(idle)
    })
}

/// Guest-physical address of the Generic Event Device's event register
/// (`revenant_acpi::platform::GED_MMIO_BASE`).
pub const GED_MMIO_BASE: u64 = 0xf000_0000;

/// 64-bit guest (CPL0) that reports 0xa0, then polls the GED event register until it reads
/// a non-zero value, reports that value and resets.
pub fn long_mode_ged_poller() -> Vec<u8> {
    long_mode("GED poller guest", |a| {
        report(a, 0xa0)?;
        a.mov(rbx, GED_MMIO_BASE)?;
        let mut poll = a.create_label();
        a.set_label(&mut poll)?;
        a.mov(eax, dword_ptr(rbx))?;
        a.test(eax, eax)?;
        a.jz(poll)?;
        a.out(TEST_REPORT_PORT as u32, eax)?;
        reset(a)
    })
}

/// Guest-physical address of the CPU hotplug controller
/// (`revenant_acpi::platform::CPU_HOTPLUG_MMIO_BASE`): selector at +0, status byte at +4
/// (bit 0 enabled, 1 inserting, 2 removing, 3 eject).
pub const CPU_HOTPLUG_MMIO_BASE: u64 = 0xf000_1000;

/// 64-bit guest (CPL0) doing what a guest OS's CPU hotplug handler does, for `cpus` possible
/// vCPUs: wait for a GED event, report the GED bits, then for each vCPU report
/// `cpu << 8 | status`, acknowledge an insert, and acknowledge and eject a removal; repeat.
/// Reports 0xa0 first.
pub fn long_mode_cpu_hotplug_handler(cpus: u32) -> Vec<u8> {
    long_mode("CPU hotplug handler guest", |a| {
        report(a, 0xa0)?;
        a.mov(rbx, GED_MMIO_BASE)?;
        a.mov(rdi, CPU_HOTPLUG_MMIO_BASE)?;
        let mut poll = a.create_label();
        let mut cpu_loop = a.create_label();
        let mut no_insert = a.create_label();
        let mut no_remove = a.create_label();
        a.set_label(&mut poll)?;
        a.mov(eax, dword_ptr(rbx))?;
        a.test(eax, eax)?;
        a.jz(poll)?;
        a.out(TEST_REPORT_PORT as u32, eax)?;
        a.xor(ecx, ecx)?;
        a.set_label(&mut cpu_loop)?;
        a.mov(dword_ptr(rdi), ecx)?;
        a.movzx(esi, byte_ptr(rdi + 4))?;
        a.mov(eax, ecx)?;
        a.shl(eax, 8)?;
        a.or(eax, esi)?;
        a.out(TEST_REPORT_PORT as u32, eax)?;
        a.test(esi, 2)?;
        a.jz(no_insert)?;
        a.mov(byte_ptr(rdi + 4), 2)?;
        a.set_label(&mut no_insert)?;
        a.test(esi, 4)?;
        a.jz(no_remove)?;
        a.mov(byte_ptr(rdi + 4), 0xc)?;
        a.set_label(&mut no_remove)?;
        a.inc(ecx)?;
        a.cmp(ecx, cpus)?;
        a.jb(cpu_loop)?;
        a.jmp(poll)
    })
}

/// 64-bit guest that writes [`pattern`] to `pages` pages from [`WORKLOAD_BASE`] once at CPL3,
/// then verifies all of them over and over, reporting after each pass how many words were
/// wrong (0 expected). Memory that leaves the host and comes back must still verify.
pub fn long_mode_fill_and_verify(pages: u64) -> Vec<u8> {
    long_mode_fill_and_verify_hot(pages, pages)
}

/// Like [`long_mode_fill_and_verify`], but after writing all `pages` pages the passes verify
/// only the first `hot_pages` of them: a hot working set with a cold part that is written once
/// and never touched again (what a RAM extension can move out for free).
pub fn long_mode_fill_and_verify_hot(pages: u64, hot_pages: u64) -> Vec<u8> {
    long_mode("fill-and-verify guest", |a| {
        let mut user = a.create_label();
        let mut service = a.create_label();
        enter_user_mode(a, user, service)?;
        a.set_label(&mut user)?;
        a.mov(r8, PATTERN_MULTIPLIER)?;
        a.mov(rsi, WORKLOAD_BASE)?;
        a.mov(r12, pages * 512)?;
        write_pattern(a)?;
        a.mov(r12, hot_pages.min(pages) * 512)?;
        let mut pass = a.create_label();
        let mut check = a.create_label();
        let mut same = a.create_label();
        a.set_label(&mut pass)?;
        a.xor(ecx, ecx)?;
        a.xor(r10d, r10d)?;
        a.set_label(&mut check)?;
        a.mov(rdx, rcx)?;
        a.imul_2(rdx, r8)?;
        a.add(rdx, PATTERN_OFFSET)?;
        a.cmp(qword_ptr(rsi + rcx * 8), rdx)?;
        a.je(same)?;
        a.inc(r10)?;
        a.set_label(&mut same)?;
        a.inc(rcx)?;
        a.cmp(rcx, r12)?;
        a.jb(check)?;
        a.ud2()?;
        a.jmp(pass)?;
        a.set_label(&mut service)?;
        a.mov(eax, r10d)?;
        a.out(TEST_REPORT_PORT as u32, eax)?;
        a.add(qword_ptr(rsp), 2)?;
        a.iretq()
    })
}

/// Where the balloon driver guest keeps its queues and page-number buffer, and the pages
/// it offers to the balloon (from [`WORKLOAD_BASE`]).
const BALLOON_QUEUES: u64 = 0x30_0000;
const BALLOON_PFNS: u64 = 0x30_8000;
/// The most pages the balloon driver guest marks and can inflate.
pub const BALLOON_GUEST_PAGES: u32 = 8;

/// 64-bit guest (CPL0) with a minimal virtio-balloon driver for the virtio-mmio device at
/// `mmio_base`: it negotiates VERSION_1 only (inflate and deflate queues), writes a marker
/// to the first word of [`BALLOON_GUEST_PAGES`] pages from [`WORKLOAD_BASE`], reports 0xa0,
/// then waits for the host to ask for pages (`num_pages` in the configuration space,
/// `vm.resize`'s `desired_balloon`), reports that number, inflates that many of its pages
/// (at most [`BALLOON_GUEST_PAGES`]), waits for the device to return the chain, reports how
/// many of its pages now read as zero (given back to the host), writes `actual`, reports
/// 0xd0 and idles.
pub fn long_mode_balloon_driver(mmio_base: u64) -> Vec<u8> {
    long_mode("balloon driver guest", |a| {
        let (desc, avail, used) = (
            BALLOON_QUEUES,
            BALLOON_QUEUES + 0x1000,
            BALLOON_QUEUES + 0x2000,
        );
        // Queues 0 (inflate) and 1 (deflate).
        virtio_bring_up(a, mmio_base, BALLOON_QUEUES, 2)?;
        // Mark the pages.
        a.mov(rdi, WORKLOAD_BASE)?;
        a.mov(ecx, BALLOON_GUEST_PAGES)?;
        let mut mark = a.create_label();
        a.set_label(&mut mark)?;
        a.mov(qword_ptr(rdi), 0x5a5a)?;
        a.add(rdi, 0x1000)?;
        a.dec(ecx)?;
        a.jnz(mark)?;
        report(a, 0xa0)?;
        // Wait for num_pages (config space at 0x100).
        let mut wait = a.create_label();
        a.set_label(&mut wait)?;
        a.mov(esi, dword_ptr(rbx + 0x100))?;
        a.test(esi, esi)?;
        a.jz(wait)?;
        a.mov(eax, esi)?;
        a.out(TEST_REPORT_PORT as u32, eax)?;
        a.cmp(esi, BALLOON_GUEST_PAGES)?;
        let mut capped = a.create_label();
        a.jbe(capped)?;
        a.mov(esi, BALLOON_GUEST_PAGES)?;
        a.set_label(&mut capped)?;
        // Page numbers.
        a.mov(rdi, BALLOON_PFNS)?;
        a.mov(eax, (WORKLOAD_BASE >> 12) as u32)?;
        a.xor(ecx, ecx)?;
        let mut pfn = a.create_label();
        a.set_label(&mut pfn)?;
        a.mov(dword_ptr(rdi + rcx * 4), eax)?;
        a.inc(eax)?;
        a.inc(ecx)?;
        a.cmp(ecx, esi)?;
        a.jb(pfn)?;
        // Descriptor 0: the page numbers, device-readable; avail ring: head 0, idx 1.
        a.mov(rdi, desc)?;
        a.mov(rax, BALLOON_PFNS)?;
        a.mov(qword_ptr(rdi), rax)?;
        a.lea(eax, dword_ptr(rsi * 4))?;
        a.mov(dword_ptr(rdi + 8), eax)?;
        a.mov(dword_ptr(rdi + 12), 0)?;
        a.mov(rdi, avail)?;
        a.mov(word_ptr(rdi + 4), 0)?;
        a.mov(word_ptr(rdi + 2), 1)?;
        a.mov(dword_ptr(rbx + 0x50), 0)?;
        // Wait for the used ring's index to reach 1.
        a.mov(rdi, used)?;
        let mut returned = a.create_label();
        a.set_label(&mut returned)?;
        a.movzx(eax, word_ptr(rdi + 2))?;
        a.cmp(eax, 1)?;
        a.jne(returned)?;
        // Count marked pages that now read as zero.
        a.mov(rdi, WORKLOAD_BASE)?;
        a.mov(ecx, BALLOON_GUEST_PAGES)?;
        a.xor(edx, edx)?;
        let mut count = a.create_label();
        let mut nonzero = a.create_label();
        a.set_label(&mut count)?;
        a.cmp(qword_ptr(rdi), 0)?;
        a.jne(nonzero)?;
        a.inc(edx)?;
        a.set_label(&mut nonzero)?;
        a.add(rdi, 0x1000)?;
        a.dec(ecx)?;
        a.jnz(count)?;
        a.mov(eax, edx)?;
        a.out(TEST_REPORT_PORT as u32, eax)?;
        // actual = the pages inflated.
        a.mov(dword_ptr(rbx + 0x104), esi)?;
        report(a, 0xd0)?;
        let mut idle = a.create_label();
        a.set_label(&mut idle)?;
        a.hlt()?;
        a.jmp(idle)
    })
}

/// Brings up the virtio-mmio device at `mmio_base` as a driver does, negotiating VERSION_1
/// only, with `queues` queues of 16 entries, queue `q`'s descriptor table, available ring
/// and used ring on the three pages from `rings + q * 0x3000`. Leaves the base in `rbx`.
fn virtio_bring_up(
    a: &mut CodeAssembler,
    mmio_base: u64,
    rings: u64,
    queues: u32,
) -> Result<(), IcedError> {
    a.mov(rbx, mmio_base)?;
    // Status: ACKNOWLEDGE, DRIVER; features: VERSION_1 (bit 32) only; FEATURES_OK.
    a.mov(dword_ptr(rbx + 0x70), 1)?;
    a.mov(dword_ptr(rbx + 0x70), 3)?;
    a.mov(dword_ptr(rbx + 0x24), 1)?;
    a.mov(dword_ptr(rbx + 0x20), 1)?;
    a.mov(dword_ptr(rbx + 0x24), 0)?;
    a.mov(dword_ptr(rbx + 0x20), 0)?;
    a.mov(dword_ptr(rbx + 0x70), 0xb)?;
    for q in 0..queues {
        let base = rings + u64::from(q) * 0x3000;
        a.mov(dword_ptr(rbx + 0x30), q)?;
        a.mov(dword_ptr(rbx + 0x38), 16)?;
        for (reg, addr) in [(0x80, base), (0x90, base + 0x1000), (0xa0, base + 0x2000)] {
            a.mov(dword_ptr(rbx + reg), addr as u32)?;
            a.mov(dword_ptr(rbx + reg + 4), 0)?;
        }
        a.mov(dword_ptr(rbx + 0x44), 1)?;
    }
    a.mov(dword_ptr(rbx + 0x70), 0xf)
}

/// Where the virtio-mem driver guest keeps its queue, request and response.
const MEM_QUEUE: u64 = 0x30_0000;
const MEM_REQUEST: u64 = 0x30_8000;
const MEM_RESPONSE: u64 = 0x30_8100;

/// 64-bit guest (CPL0) with a minimal virtio-mem driver for the device at `mmio_base`: it
/// reports 0xa0, then forever compares the device's `requested_size` with its
/// `plugged_size` and, when they differ, plugs the blocks after the plugged ones or unplugs
/// the last ones in one request, then reports the response type (0 = ACK) and the plugged
/// size in MiB. (The plugged memory itself is not touched.)
pub fn long_mode_virtio_mem_driver(mmio_base: u64) -> Vec<u8> {
    long_mode("virtio-mem driver guest", |a| {
        virtio_bring_up(a, mmio_base, MEM_QUEUE, 1)?;
        report(a, 0xa0)?;
        // Descriptors 0 (request, readable, NEXT -> 1) and 1 (response, writable).
        a.mov(rdi, MEM_QUEUE)?;
        a.mov(rax, MEM_REQUEST)?;
        a.mov(qword_ptr(rdi), rax)?;
        a.mov(dword_ptr(rdi + 8), 24)?;
        a.mov(dword_ptr(rdi + 12), 0x0001_0001)?; // flags NEXT, next 1
        a.mov(rax, MEM_RESPONSE)?;
        a.mov(qword_ptr(rdi + 16), rax)?;
        a.mov(dword_ptr(rdi + 24), 10)?;
        a.mov(dword_ptr(rdi + 28), 2)?; // flags WRITE, next 0
        a.xor(r12d, r12d)?; // requests made
        let mut poll = a.create_label();
        let mut shrink = a.create_label();
        let mut send = a.create_label();
        let mut wait = a.create_label();
        a.set_label(&mut poll)?;
        a.mov(rax, qword_ptr(rbx + 0x100 + 48))?; // requested_size
        a.mov(rcx, qword_ptr(rbx + 0x100 + 40))?; // plugged_size
        a.mov(rdx, qword_ptr(rbx + 0x100 + 16))?; // region address
        a.cmp(rax, rcx)?;
        a.je(poll)?;
        a.mov(rdi, MEM_REQUEST)?;
        a.jb(shrink)?;
        // Plug (requested - plugged) bytes after the plugged blocks.
        a.mov(word_ptr(rdi), 0)?;
        a.sub(rax, rcx)?;
        a.add(rdx, rcx)?;
        a.jmp(send)?;
        a.set_label(&mut shrink)?;
        // Unplug (plugged - requested) bytes from the requested size on.
        a.mov(word_ptr(rdi), 1)?;
        a.sub(rcx, rax)?;
        a.add(rdx, rax)?;
        a.mov(rax, rcx)?;
        a.set_label(&mut send)?;
        a.mov(qword_ptr(rdi + 8), rdx)?;
        a.shr(rax, 21)?; // 2 MiB blocks
        a.mov(word_ptr(rdi + 16), ax)?;
        // Publish head 0 at avail[r12 % 16], avail.idx = r12 + 1, notify queue 0.
        a.mov(rdi, MEM_QUEUE + 0x1000)?;
        a.mov(eax, r12d)?;
        a.and(eax, 15)?;
        a.mov(word_ptr(rdi + rax * 2 + 4), 0)?;
        a.inc(r12d)?;
        a.mov(word_ptr(rdi + 2), r12w)?;
        a.mov(dword_ptr(rbx + 0x50), 0)?;
        a.mov(rdi, MEM_QUEUE + 0x2000)?;
        a.set_label(&mut wait)?;
        a.movzx(eax, word_ptr(rdi + 2))?;
        a.cmp(eax, r12d)?;
        a.jne(wait)?;
        a.mov(rdi, MEM_RESPONSE)?;
        a.movzx(eax, word_ptr(rdi))?;
        a.out(TEST_REPORT_PORT as u32, eax)?;
        a.mov(rax, qword_ptr(rbx + 0x100 + 40))?;
        a.shr(rax, 20)?;
        a.out(TEST_REPORT_PORT as u32, eax)?;
        a.jmp(poll)
    })
}

/// Where the virtio-net driver guest keeps its queues (rx, then tx) and buffers.
const NET_QUEUES: u64 = 0x30_0000;
const NET_TX_BUF: u64 = 0x31_0000;
const NET_RX_BUF: u64 = 0x31_1000;
const NET_RX_BUF_LEN: u32 = 2048;
/// The EtherType the net guest and its test use (IEEE local experimental), so frames the
/// host's own stack sends on the tap are told apart.
pub const NET_TEST_ETHERTYPE: u16 = 0x88b5;
/// First four payload bytes of the frame the net guest sends.
pub const NET_GUEST_PAYLOAD: u32 = 0x544e_5652; // "RVNT" little endian
/// Length of the frame the net guest sends, without its 12-byte virtio-net header.
pub const NET_GUEST_FRAME_LEN: usize = 60;

/// 64-bit guest (CPL0) with a minimal virtio-net driver for the virtio-mmio device at
/// `mmio_base` (VERSION_1 only, rx queue 0, tx queue 1): it posts one rx buffer, sends one
/// broadcast frame of [`NET_GUEST_FRAME_LEN`] bytes from its MAC (read from the
/// configuration space) with EtherType [`NET_TEST_ETHERTYPE`] and payload starting with
/// [`NET_GUEST_PAYLOAD`], reports 0xa0, waits for the device to return the tx chain and
/// reports 0xa1; then takes received frames (reposting the buffer for any other EtherType)
/// until one with [`NET_TEST_ETHERTYPE`] arrives, reports its first payload dword and its
/// used length (header included), reports 0xd0 and idles.
pub fn long_mode_net_driver(mmio_base: u64) -> Vec<u8> {
    long_mode("virtio-net driver guest", |a| {
        let (rx_desc, rx_avail, rx_used) = (NET_QUEUES, NET_QUEUES + 0x1000, NET_QUEUES + 0x2000);
        let tx = NET_QUEUES + 0x3000;
        let (tx_desc, tx_avail, tx_used) = (tx, tx + 0x1000, tx + 0x2000);
        virtio_bring_up(a, mmio_base, NET_QUEUES, 2)?;
        // rx descriptor 0: the buffer, device-writable; avail ring: head 0, idx 1.
        a.mov(rdi, rx_desc)?;
        a.mov(rax, NET_RX_BUF)?;
        a.mov(qword_ptr(rdi), rax)?;
        a.mov(dword_ptr(rdi + 8), NET_RX_BUF_LEN)?;
        a.mov(dword_ptr(rdi + 12), 2)?; // VIRTQ_DESC_F_WRITE
        a.mov(rdi, rx_avail)?;
        a.mov(word_ptr(rdi + 4), 0)?;
        a.mov(word_ptr(rdi + 2), 1)?;
        a.mov(dword_ptr(rbx + 0x50), 0)?;
        // The tx frame: a zero virtio-net header, then broadcast, src patched below.
        let mut frame = vec![0u8; 12];
        frame.extend_from_slice(&[0xff; 6]);
        frame.extend_from_slice(&[0; 6]);
        frame.extend_from_slice(&NET_TEST_ETHERTYPE.to_be_bytes());
        frame.extend_from_slice(&NET_GUEST_PAYLOAD.to_le_bytes());
        frame.resize(12 + NET_GUEST_FRAME_LEN, 0x5a);
        a.mov(rdi, NET_TX_BUF)?;
        for (i, chunk) in frame.chunks(8).enumerate() {
            let mut q = [0u8; 8];
            q[..chunk.len()].copy_from_slice(chunk);
            a.mov(rax, u64::from_le_bytes(q))?;
            a.mov(qword_ptr(rdi + (i * 8) as i32), rax)?;
        }
        // Source MAC from the configuration space (0x100: mac[6]).
        a.mov(eax, dword_ptr(rbx + 0x100))?;
        a.mov(dword_ptr(rdi + 18), eax)?;
        a.movzx(eax, word_ptr(rbx + 0x104))?;
        a.mov(word_ptr(rdi + 22), ax)?;
        // tx descriptor 0: the frame, device-readable; avail: head 0, idx 1; notify queue 1.
        a.mov(rdi, tx_desc)?;
        a.mov(rax, NET_TX_BUF)?;
        a.mov(qword_ptr(rdi), rax)?;
        a.mov(dword_ptr(rdi + 8), frame.len() as u32)?;
        a.mov(dword_ptr(rdi + 12), 0)?;
        a.mov(rdi, tx_avail)?;
        a.mov(word_ptr(rdi + 4), 0)?;
        a.mov(word_ptr(rdi + 2), 1)?;
        a.mov(dword_ptr(rbx + 0x50), 1)?;
        report(a, 0xa0)?;
        a.mov(rdi, tx_used)?;
        let mut sent = a.create_label();
        a.set_label(&mut sent)?;
        a.movzx(eax, word_ptr(rdi + 2))?;
        a.cmp(eax, 1)?;
        a.jne(sent)?;
        report(a, 0xa1)?;
        // r12: the used index that means "the posted buffer came back".
        a.mov(r12d, 1)?;
        let mut wait = a.create_label();
        let mut ours = a.create_label();
        a.set_label(&mut wait)?;
        a.mov(rdi, rx_used)?;
        a.movzx(eax, word_ptr(rdi + 2))?;
        a.cmp(eax, r12d)?;
        a.jb(wait)?;
        // EtherType, as read little-endian from the wire's big-endian bytes.
        a.mov(rsi, NET_RX_BUF)?;
        a.movzx(eax, word_ptr(rsi + 24))?;
        a.cmp(eax, u32::from(NET_TEST_ETHERTYPE.swap_bytes()))?;
        a.je(ours)?;
        // Someone else's frame: post the buffer again (avail ring slot r12 % 16).
        a.mov(rdi, rx_avail)?;
        a.mov(eax, r12d)?;
        a.and(eax, 15)?;
        a.mov(word_ptr(rdi + rax * 2 + 4), 0)?;
        a.inc(r12d)?;
        a.mov(word_ptr(rdi + 2), r12w)?;
        a.mov(dword_ptr(rbx + 0x50), 0)?;
        a.jmp(wait)?;
        a.set_label(&mut ours)?;
        a.mov(eax, dword_ptr(rsi + 26))?;
        a.out(TEST_REPORT_PORT as u32, eax)?;
        // The used element of index r12 - 1: len at used + 4 + 8 * slot + 4.
        a.mov(eax, r12d)?;
        a.dec(eax)?;
        a.and(eax, 15)?;
        a.mov(rdi, rx_used)?;
        a.mov(eax, dword_ptr(rdi + rax * 8 + 8))?;
        a.out(TEST_REPORT_PORT as u32, eax)?;
        report(a, 0xd0)?;
        let mut idle = a.create_label();
        a.set_label(&mut idle)?;
        a.hlt()?;
        a.jmp(idle)
    })
}

/// Guest-physical address of the PCI hot-plug controller
/// (`revenant_acpi::platform::PCI_HOTPLUG_MMIO_BASE`): PCIU at +0, PCID at +4 (each read
/// clears), B0EJ at +8.
pub const PCI_HOTPLUG_MMIO_BASE: u64 = 0xf000_2000;
/// GED event bit of PCI hot-plug (`revenant_acpi::platform::GED_EVENT_PCI_HOTPLUG`).
pub const GED_EVENT_PCI_HOTPLUG: u32 = 1 << 4;

/// 64-bit guest (CPL0) doing what the DSDT's PCI hot-plug AML and Linux's acpiphp do:
/// reports 0xa0, then forever waits for the GED's PCI event; for a plugged slot (PCIU) it
/// reports the slot and the vendor/device dword read through ports 0xCF8/0xCFC; for a
/// slot the host wants unplugged (PCID) it ejects it (B0EJ), reports `0xe0 + slot` and the
/// vendor/device dword read again (all ones once the slot is empty).
pub fn long_mode_pci_hotplug_handler() -> Vec<u8> {
    long_mode("PCI hot-plug handler guest", |a| {
        report(a, 0xa0)?;
        a.mov(r13, GED_MMIO_BASE)?;
        a.mov(r14, PCI_HOTPLUG_MMIO_BASE)?;
        let mut wait = a.create_label();
        let mut check_down = a.create_label();
        a.set_label(&mut wait)?;
        a.mov(eax, dword_ptr(r13))?;
        a.test(eax, GED_EVENT_PCI_HOTPLUG)?;
        a.jz(wait)?;
        // Plugged: the lowest slot in PCIU.
        a.mov(eax, dword_ptr(r14))?;
        a.test(eax, eax)?;
        a.jz(check_down)?;
        a.bsf(ecx, eax)?;
        a.mov(eax, ecx)?;
        a.out(TEST_REPORT_PORT as u32, eax)?;
        config_read_id(a)?;
        a.set_label(&mut check_down)?;
        a.mov(eax, dword_ptr(r14 + 4))?;
        a.test(eax, eax)?;
        a.jz(wait)?;
        a.bsf(ecx, eax)?;
        a.mov(dword_ptr(r14 + 8), eax)?;
        a.lea(eax, dword_ptr(rcx + 0xe0))?;
        a.out(TEST_REPORT_PORT as u32, eax)?;
        config_read_id(a)?;
        a.jmp(wait)
    })
}

/// Reads the vendor/device dword of bus 0, slot `ecx` through configuration mechanism #1
/// and reports it.
fn config_read_id(a: &mut CodeAssembler) -> Result<(), IcedError> {
    a.mov(eax, ecx)?;
    a.shl(eax, 11)?;
    a.or(eax, 0x8000_0000u32 as i32)?;
    a.mov(dx, 0xcf8)?;
    a.out(dx, eax)?;
    a.mov(dx, 0xcfc)?;
    a.in_(eax, dx)?;
    a.out(TEST_REPORT_PORT as u32, eax)
}

/// 64-bit guest making `rounds` system calls from CPL3 with SYSCALL/SYSRETQ (on PVM hosts
/// through the VMM's SYSCALL bridge). At CPL0 it sets LSTAR to its entry and SFMASK to CF,
/// reads LSTAR back and reports 1 if it reads its own entry. The first call's entry
/// reports: the CPL it runs at (0), 1 if RCX holds the return address, R11's low byte (the
/// user RFLAGS: 0x3, CF set) and its own CF (0: masked). Back at CPL3 after the last call,
/// its #UD service reports the CPL there (3), 1 if SYSRETQ restored CF, and the number of
/// calls made. Then it halts, so the VM stays up for its counters to be read.
pub fn long_mode_syscall(rounds: u32) -> Vec<u8> {
    long_mode("long-mode syscall guest", |a| {
        let user = a.create_label();
        let mut service = a.create_label();
        let mut entry = a.create_label();
        let mut after = a.create_label();
        let mut again = a.create_label();
        let mut first_done = a.create_label();
        let out_flag = |a: &mut CodeAssembler| -> Result<(), IcedError> {
            a.sete(al)?;
            a.movzx(eax, al)?;
            a.out(TEST_REPORT_PORT as u32, eax)
        };
        a.mov(ecx, 0xc000_0082u32)?;
        a.lea(rax, ptr(entry))?;
        a.mov(rdx, rax)?;
        a.shr(rdx, 32)?;
        a.wrmsr()?;
        a.mov(ecx, 0xc000_0084u32)?;
        a.mov(eax, 1u32)?;
        a.xor(edx, edx)?;
        a.wrmsr()?;
        a.mov(ecx, 0xc000_0082u32)?;
        a.rdmsr()?;
        a.shl(rdx, 32)?;
        a.or(rax, rdx)?;
        a.lea(rbx, ptr(entry))?;
        a.cmp(rax, rbx)?;
        out_flag(a)?;
        a.xor(r15d, r15d)?;
        enter_user_mode(a, user, service)?;

        let mut user = user;
        a.set_label(&mut user)?;
        a.nop()?;
        a.set_label(&mut again)?;
        a.mov(ecx, 0x1111u32)?;
        a.mov(r11d, 0x2222u32)?;
        a.stc()?;
        a.syscall()?;
        a.set_label(&mut after)?;
        a.setc(r14b)?;
        a.inc(r15)?;
        a.cmp(r15, rounds as i32)?;
        a.jb(again)?;
        a.mov(ax, cs)?;
        a.and(eax, 3)?;
        a.mov(r13d, eax)?;
        a.ud2()?;

        // The system call entry, at CPL0.
        a.set_label(&mut entry)?;
        a.test(r15, r15)?;
        a.jnz(first_done)?;
        a.mov(ax, cs)?;
        a.and(eax, 3)?;
        a.out(TEST_REPORT_PORT as u32, eax)?;
        a.lea(rax, ptr(after))?;
        a.cmp(rax, rcx)?;
        out_flag(a)?;
        a.mov(eax, r11d)?;
        a.and(eax, 0xff)?;
        a.out(TEST_REPORT_PORT as u32, eax)?;
        a.pushfq()?;
        a.pop(rax)?;
        a.and(eax, 1)?;
        a.out(TEST_REPORT_PORT as u32, eax)?;
        a.set_label(&mut first_done)?;
        a.sysretq()?;

        // #UD service after the last call.
        a.set_label(&mut service)?;
        a.mov(eax, r13d)?;
        a.out(TEST_REPORT_PORT as u32, eax)?;
        a.movzx(eax, r14b)?;
        a.out(TEST_REPORT_PORT as u32, eax)?;
        a.mov(eax, r15d)?;
        a.out(TEST_REPORT_PORT as u32, eax)?;
        let mut forever = a.create_label();
        a.set_label(&mut forever)?;
        a.hlt()?;
        a.jmp(forever)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guests_assemble_and_start_where_the_vmm_enters() {
        let hello = real_mode_hello("hi");
        // mov dx, 0x3f8 is the very first instruction.
        assert_eq!(&hello[..3], &[0xba, 0xf8, 0x03]);
        assert!(hello.ends_with(b"hi\0"));
        assert!(!long_mode_checksum(4).is_empty());
        assert!(!long_mode_ticker(20).is_empty());
        assert_ne!(expected_checksum(1), expected_checksum(2));
    }
}
