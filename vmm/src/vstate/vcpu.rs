//! One vCPU: its KVM fd, boot-time register setup and the thread that runs it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use kvm_bindings::{
    CpuId, KVM_SYSTEM_EVENT_CRASH, KVM_SYSTEM_EVENT_RESET, KVM_SYSTEM_EVENT_SHUTDOWN,
};
use kvm_ioctls::{VcpuExit, VcpuFd, VmFd};

use super::fallback::{self, Outcome};
use super::memory::GuestMemoryMmap;
use super::persist::{PersistError, VcpuState};
use super::run_control::{Next, RunControl};
use super::syscall_bridge;
use crate::boot::entry::{boot_registers, real_mode_registers, EntryPoint};
use crate::boot::{cpuid, gdt, msrs};
use crate::devices::bus::Bus;
use crate::devices::exit::{ExitSignal, GuestExit};

/// Local APIC register offsets and values for the boot configuration Linux expects:
/// LINT0 as ExtINT (the 8259 path) and LINT1 as NMI.
const APIC_LVT0: usize = 0x350;
const APIC_LVT1: usize = 0x360;
const APIC_MODE_EXTINT: u32 = 0x7;
const APIC_MODE_NMI: u32 = 0x4;

#[derive(Debug, thiserror::Error)]
pub enum VcpuError {
    #[error("cannot create vCPU {id}: {source}")]
    Create {
        id: u8,
        #[source]
        source: kvm_ioctls::Error,
    },
    #[error("cannot set up vCPU {id} ({what}): {source}")]
    Setup {
        id: u8,
        what: &'static str,
        #[source]
        source: kvm_ioctls::Error,
    },
    #[error("vCPU {id} accepted only {set} of {total} boot MSRs")]
    PartialMsrs { id: u8, set: usize, total: usize },
    #[error(transparent)]
    Msrs(#[from] msrs::MsrError),
    #[error(transparent)]
    Entry(#[from] crate::boot::entry::EntryError),
    #[error("cannot start the vcpu{id} thread: {source}")]
    Spawn {
        id: u8,
        #[source]
        source: std::io::Error,
    },
}

/// A started, named `vcpuN` thread waiting for its vCPU. Threads are spawned at the very
/// start of a boot so their creation overlaps VM setup instead of delaying the first guest
/// instruction; kata moves threads by their `vcpuN` name into cgroups right after
/// `vm.boot` answers, so `launch` also makes sure the thread has named itself.
pub struct VcpuThread {
    id: u8,
    handle: JoinHandle<()>,
    vcpu_tx: std::sync::mpsc::Sender<SharedVcpu>,
    started_rx: std::sync::mpsc::Receiver<()>,
}

/// A vCPU its thread locks only while the guest runs on it: while the VM is paused the
/// VMM can read or write its state (snapshots).
pub type SharedVcpu = Arc<std::sync::Mutex<Vcpu>>;

impl VcpuThread {
    pub fn spawn(id: u8) -> Result<Self, VcpuError> {
        let (vcpu_tx, vcpu_rx) = std::sync::mpsc::channel::<SharedVcpu>();
        let (started_tx, started_rx) = std::sync::mpsc::sync_channel(1);
        let handle = std::thread::Builder::new()
            .name(format!("vcpu{id}"))
            .spawn(move || {
                let _ = started_tx.send(());
                // No vCPU arrives when the boot failed: the thread just ends.
                if let Ok(vcpu) = vcpu_rx.recv() {
                    Vcpu::run(&vcpu);
                }
            })
            .map_err(|source| VcpuError::Spawn { id, source })?;
        Ok(VcpuThread {
            id,
            handle,
            vcpu_tx,
            started_rx,
        })
    }

    /// Hands `vcpu` to the thread, which starts running the guest (or parks, if the run
    /// control says the VM is paused).
    pub fn launch(self, vcpu: SharedVcpu) -> Result<JoinHandle<()>, VcpuError> {
        let gone = || VcpuError::Spawn {
            id: self.id,
            source: std::io::Error::other("vCPU thread exited before it was given its vCPU"),
        };
        self.started_rx.recv().map_err(|_| gone())?;
        self.vcpu_tx.send(vcpu).map_err(|_| gone())?;
        Ok(self.handle)
    }
}

/// Exit counts shared with `vm.counters`.
#[derive(Default, Debug)]
pub struct ExitCounters {
    pub pio: AtomicU64,
    pub mmio: AtomicU64,
    pub other: AtomicU64,
    /// Guest system calls the SYSCALL bridge carried into the guest kernel.
    pub syscalls: AtomicU64,
    /// Instructions the host's KVM refused and Revenant emulated, by mnemonic.
    pub fallbacks: std::sync::Mutex<std::collections::BTreeMap<&'static str, u64>>,
}

/// KVM_INTERNAL_ERROR_EMULATION: the host could not emulate an instruction.
const INTERNAL_ERROR_EMULATION: u32 = 1;

pub struct Vcpu {
    id: u8,
    fd: VcpuFd,
    pio: Arc<Bus>,
    mmio: Arc<Bus>,
    exit: ExitSignal,
    control: Arc<RunControl>,
    counters: Arc<ExitCounters>,
    /// Guest memory, for the fallback emulator's memory operands and the SYSCALL bridge.
    memory: GuestMemoryMmap,
    /// Whether the SYSCALL bridge runs (PVM hosts, `syscall_bridge`).
    bridge: bool,
    /// The guest's own LSTAR while the bridge gives KVM the trampoline's address.
    guest_lstar: u64,
}

/// What the VMM shares with every vCPU thread.
#[derive(Clone)]
pub struct VcpuContext {
    pub pio: Arc<Bus>,
    pub mmio: Arc<Bus>,
    pub exit: ExitSignal,
    pub control: Arc<RunControl>,
    pub counters: Arc<ExitCounters>,
    /// Guest memory, for the fallback emulator's memory operands and the SYSCALL bridge.
    pub memory: GuestMemoryMmap,
    /// Whether the SYSCALL bridge runs (`syscall_bridge::enable` done).
    pub syscall_bridge: bool,
}

impl Vcpu {
    pub fn new(vm: &VmFd, id: u8, ctx: VcpuContext) -> Result<Self, VcpuError> {
        let fd = vm
            .create_vcpu(u64::from(id))
            .map_err(|source| VcpuError::Create { id, source })?;
        Ok(Vcpu {
            id,
            fd,
            pio: ctx.pio,
            mmio: ctx.mmio,
            exit: ctx.exit,
            control: ctx.control,
            counters: ctx.counters,
            memory: ctx.memory,
            bridge: ctx.syscall_bridge,
            guest_lstar: 0,
        })
    }

    fn setup<T>(
        &self,
        what: &'static str,
        r: Result<T, kvm_ioctls::Error>,
    ) -> Result<T, VcpuError> {
        r.map_err(|source| VcpuError::Setup {
            id: self.id,
            what,
            source,
        })
    }

    /// CPUID, MSRs, LAPIC and, on the boot vCPU, the entry registers. Other vCPUs stay in
    /// the wait-for-SIPI state KVM gives them until the guest starts them.
    pub fn configure(
        &self,
        supported_cpuid: &CpuId,
        count: u8,
        mem: &GuestMemoryMmap,
        entry: Option<EntryPoint>,
    ) -> Result<(), VcpuError> {
        let mut cpuid = supported_cpuid.clone();
        cpuid::filter(&mut cpuid, self.id, count);
        self.setup("CPUID", self.fd.set_cpuid2(&cpuid))?;

        let msrs = msrs::boot_msrs(gdt::STAR_MSR_VALUE)?;
        let set = self.setup("MSRs", self.fd.set_msrs(&msrs))?;
        if set != msrs.as_slice().len() {
            return Err(VcpuError::PartialMsrs {
                id: self.id,
                set,
                total: msrs.as_slice().len(),
            });
        }

        let mut lapic = self.setup("get LAPIC", self.fd.get_lapic())?;
        set_lvt_mode(&mut lapic.regs, APIC_LVT0, APIC_MODE_EXTINT);
        set_lvt_mode(&mut lapic.regs, APIC_LVT1, APIC_MODE_NMI);
        self.setup("LAPIC", self.fd.set_lapic(&lapic))?;

        if let Some(entry) = entry {
            let sregs = self.setup("get sregs", self.fd.get_sregs())?;
            let (regs, sregs, fpu) = boot_registers(mem, entry, sregs)?;
            self.setup("sregs", self.fd.set_sregs(&sregs))?;
            self.setup("regs", self.fd.set_regs(&regs))?;
            self.setup("FPU", self.fd.set_fpu(&fpu))?;
        }
        Ok(())
    }

    fn run(shared: &SharedVcpu) {
        let lock = || shared.lock().unwrap_or_else(|p| p.into_inner());
        let (control, exit) = {
            let v = lock();
            (v.control.clone(), v.exit.clone())
        };
        while control.gate() == Next::Run {
            let mut vcpu = lock();
            if vcpu.id == 0 {
                if let Some(vector) = control.take_wake_vector() {
                    if let Err(e) = vcpu.restart_at(vector) {
                        drop(vcpu);
                        exit.send(GuestExit::Crash(format!("cannot wake at {vector:#x}: {e}")));
                        control.wait_for_stop();
                        return;
                    }
                }
            }
            if let Some(stop) = vcpu.run_once() {
                tracing::info!("vcpu{}: guest stopped: {stop:?}", vcpu.id);
                drop(vcpu);
                exit.send(stop);
                control.wait_for_stop();
                return;
            }
        }
    }

    /// After a port or MMIO exit, that access's completion is still pending inside KVM,
    /// invisible in the registers. One KVM_RUN with immediate_exit set lets KVM finish it (it
    /// completes pending I/O, then returns EINTR without entering the guest). `Ok(false)`
    /// if KVM_RUN returned an exit instead, i.e. ran the guest.
    fn complete_pending_io(&mut self) -> Result<bool, kvm_ioctls::Error> {
        self.fd.set_kvm_immediate_exit(1);
        let flushed = self.fd.run().map(|_| ());
        self.fd.set_kvm_immediate_exit(0);
        match flushed {
            Ok(()) => Ok(false),
            Err(e) if e.errno() == libc::EINTR => Ok(true),
            Err(e) => Err(e),
        }
    }

    /// The vCPU's KVM state, for a snapshot (the VM must be paused). A pending port or MMIO
    /// completion is finished first, so a clone neither repeats nor loses the access.
    pub fn save_state(&mut self, kvm: &kvm_ioctls::Kvm) -> Result<VcpuState, PersistError> {
        self.complete_pending_io()
            .map_err(|source| PersistError::Kvm {
                what: "complete pending I/O",
                source,
            })?;
        let mut state = VcpuState::save(self.id, kvm, &self.fd)?;
        // Templates keep the guest's own LSTAR, not the SYSCALL bridge's trampoline.
        if self.bridge && self.guest_lstar != 0 {
            for msr in &mut state.msrs {
                if msr.index == syscall_bridge::MSR_LSTAR {
                    msr.data = self.guest_lstar;
                }
            }
        }
        Ok(state)
    }

    /// Puts saved state into this (fresh) vCPU. With the SYSCALL bridge, a guest LSTAR in
    /// the state is kept and KVM gets the trampoline, which the template's memory already
    /// maps (it was made by a bridged VM on a host of the same kind).
    pub fn restore_state(&mut self, state: &VcpuState) -> Result<(), PersistError> {
        state.restore(&self.fd)?;
        let lstar = state
            .msrs
            .iter()
            .find(|m| m.index == syscall_bridge::MSR_LSTAR)
            .map_or(0, |m| m.data);
        // Also without the bridge: the guest's filtered LSTAR reads return this.
        self.guest_lstar = lstar;
        if self.bridge && lstar != 0 {
            syscall_bridge::set_msr(
                &self.fd,
                syscall_bridge::MSR_LSTAR,
                syscall_bridge::TRAMPOLINE_VA,
            )
            .map_err(|e| PersistError::Bridge(e.to_string()))?;
        }
        Ok(())
    }

    /// One KVM_RUN and the handling of its exit; `Some` when the guest can't go on.
    fn run_once(&mut self) -> Option<GuestExit> {
        let exit = match self.fd.run() {
            Ok(exit) => exit,
            Err(e) if e.errno() == libc::EINTR => {
                // Kicked by the run control: go back to the gate.
                self.fd.set_kvm_immediate_exit(0);
                return None;
            }
            Err(e) if e.errno() == libc::EAGAIN => return None,
            Err(e) => return Some(GuestExit::Crash(format!("KVM_RUN failed: {e}"))),
        };
        match exit {
            VcpuExit::IoOut(port, data) => {
                self.counters.pio.fetch_add(1, Ordering::Relaxed);
                if !self.pio.write(u64::from(port), data) {
                    tracing::trace!("unhandled port write {port:#x} {data:x?}");
                }
                None
            }
            VcpuExit::IoIn(port, data) => {
                self.counters.pio.fetch_add(1, Ordering::Relaxed);
                // Ports nobody decodes float high on real hardware.
                data.fill(0xff);
                self.pio.read(u64::from(port), data);
                None
            }
            VcpuExit::MmioWrite(syscall_bridge::DOORBELL_GPA, _) if self.bridge => {
                self.enter_syscall().err().map(GuestExit::Crash)
            }
            VcpuExit::X86Wrmsr(exit) => {
                let (index, data) = (exit.index, exit.data);
                // Only LSTAR is filtered; its writes always succeed for the guest.
                *exit.error = u8::from(index != syscall_bridge::MSR_LSTAR);
                if index == syscall_bridge::MSR_LSTAR {
                    self.on_lstar_write(data);
                }
                None
            }
            VcpuExit::X86Rdmsr(exit) => {
                *exit.error = u8::from(exit.index != syscall_bridge::MSR_LSTAR);
                *exit.data = self.guest_lstar;
                None
            }
            VcpuExit::MmioWrite(addr, data) => {
                self.counters.mmio.fetch_add(1, Ordering::Relaxed);
                if !self.mmio.write(addr, data) {
                    tracing::debug!("unhandled MMIO write {addr:#x} {data:x?}");
                }
                None
            }
            VcpuExit::MmioRead(addr, data) => {
                self.counters.mmio.fetch_add(1, Ordering::Relaxed);
                data.fill(0xff);
                self.mmio.read(addr, data);
                None
            }
            VcpuExit::Hlt => {
                // Only reached without an in-kernel LAPIC; nothing will ever wake the vCPU.
                Some(GuestExit::PowerOff)
            }
            VcpuExit::Shutdown => Some(GuestExit::Crash(format!(
                "triple fault at {}",
                self.where_()
            ))),
            VcpuExit::SystemEvent(kind, _) => Some(match kind {
                KVM_SYSTEM_EVENT_SHUTDOWN => GuestExit::PowerOff,
                KVM_SYSTEM_EVENT_RESET => GuestExit::Reset,
                KVM_SYSTEM_EVENT_CRASH => GuestExit::Crash("guest reported a crash".into()),
                other => GuestExit::Crash(format!("unknown system event {other}")),
            }),
            VcpuExit::InternalError => self.on_internal_error(),
            VcpuExit::FailEntry(reason, cpu) => Some(GuestExit::Crash(format!(
                "KVM entry failure, hardware reason {reason:#x} on cpu {cpu}"
            ))),
            other => {
                self.counters.other.fetch_add(1, Ordering::Relaxed);
                tracing::debug!("vcpu{}: ignored exit {other:?}", self.id);
                None
            }
        }
    }

    /// The guest set its system call entry: keep it and route SYSCALL through the bridge's
    /// trampoline, or, when the trampoline can't be mapped, hand the value to KVM as is.
    fn on_lstar_write(&mut self, lstar: u64) {
        self.guest_lstar = lstar;
        if !self.bridge {
            // Filtered without the bridge (every VM on a PVM host is): the guest's value
            // goes to KVM as the plain write would have.
            if let Err(e) = syscall_bridge::set_msr(&self.fd, syscall_bridge::MSR_LSTAR, lstar) {
                tracing::warn!("vcpu{}: cannot set LSTAR: {e}", self.id);
            }
            return;
        }
        match syscall_bridge::install(&self.fd, &self.memory) {
            Ok(()) => tracing::info!(
                "vcpu{}: SYSCALL bridge: guest LSTAR {lstar:#x}, trampoline {:#x}",
                self.id,
                syscall_bridge::TRAMPOLINE_VA
            ),
            Err(e) => {
                tracing::warn!(
                    "vcpu{}: SYSCALL bridge off, guest system calls from user mode will fail \
                     on this host: {e}",
                    self.id
                );
                if let Err(e) = syscall_bridge::set_msr(&self.fd, syscall_bridge::MSR_LSTAR, lstar)
                {
                    tracing::warn!("vcpu{}: cannot set LSTAR: {e}", self.id);
                }
            }
        }
    }

    /// The trampoline rang the doorbell: once KVM finished the store, enter the guest kernel
    /// the way SYSCALL would have.
    fn enter_syscall(&mut self) -> Result<(), String> {
        self.counters.syscalls.fetch_add(1, Ordering::Relaxed);
        match self.complete_pending_io() {
            Ok(true) => {}
            Ok(false) => {
                return Err("SYSCALL bridge: KVM_RUN with immediate_exit ran the guest".into())
            }
            Err(e) => return Err(format!("SYSCALL bridge: cannot complete the doorbell: {e}")),
        }
        syscall_bridge::enter_kernel(&self.fd, self.guest_lstar)
            .map_err(|e| format!("SYSCALL bridge: {e}"))
    }

    /// Restarts the vCPU in real mode at an ACPI firmware waking vector, as firmware does on
    /// resume from S3. The vCPU may have been halted in the in-kernel LAPIC, so it is made
    /// runnable too.
    fn restart_at(&mut self, vector: u64) -> Result<(), String> {
        let entry = EntryPoint::waking_vector(vector).ok_or("waking vector above 1 MiB")?;
        let sregs = self.fd.get_sregs().map_err(|e| e.to_string())?;
        let (regs, sregs, fpu) = real_mode_registers(entry, sregs);
        self.fd.set_sregs(&sregs).map_err(|e| e.to_string())?;
        self.fd.set_regs(&regs).map_err(|e| e.to_string())?;
        self.fd.set_fpu(&fpu).map_err(|e| e.to_string())?;
        let runnable = kvm_bindings::kvm_mp_state {
            mp_state: kvm_bindings::KVM_MP_STATE_RUNNABLE,
        };
        self.fd.set_mp_state(runnable).map_err(|e| e.to_string())
    }

    fn where_(&self) -> String {
        match self.fd.get_regs() {
            Ok(r) => format!("rip={:#x}", r.rip),
            Err(_) => "unknown rip".into(),
        }
    }

    /// An emulation failure gets the fallback emulator; any other internal error ends the VM.
    fn on_internal_error(&mut self) -> Option<GuestExit> {
        let run = self.fd.get_kvm_run();
        // SAFETY: KVM_RUN just returned KVM_EXIT_INTERNAL_ERROR, so `internal` is the active
        // member of the exit union; ndata is clamped to the array length before use.
        let internal = unsafe { run.__bindgen_anon_1.internal };
        let data = &internal.data[..(internal.ndata as usize).min(internal.data.len())];
        if internal.suberror == INTERNAL_ERROR_EMULATION {
            if let Some(bytes) = fallback::instruction_bytes(data) {
                return self.emulate_fallback(&bytes).err().map(GuestExit::Crash);
            }
        }
        Some(GuestExit::Crash(format!(
            "KVM internal error (suberror {}, data {data:x?}) at {}",
            internal.suberror,
            self.where_()
        )))
    }

    /// Carries out an instruction the host refused; `Err` explains why the VM must stop.
    fn emulate_fallback(&mut self, bytes: &[u8]) -> Result<(), String> {
        let fail =
            |what: &str, e: kvm_ioctls::Error| format!("fallback emulation: cannot {what}: {e}");
        let mut regs = self.fd.get_regs().map_err(|e| fail("read registers", e))?;
        let sregs = self
            .fd
            .get_sregs()
            .map_err(|e| fail("read segment registers", e))?;
        let bitness = match (sregs.cs.l, sregs.cs.db) {
            (1, _) => 64,
            (_, 1) => 32,
            _ => 16,
        };
        let at = format!("rip {:#x} (CPL {}, {bitness}-bit)", regs.rip, sregs.cs.dpl);
        let Some(instr) = fallback::decode(bytes, bitness, regs.rip) else {
            return Err(format!(
                "the host's KVM could not emulate undecodable bytes {bytes:02x?} at {at}"
            ));
        };
        let mut fpu = self.fd.get_fpu().map_err(|e| fail("read FPU state", e))?;
        let mut mem = VcpuMemory {
            fd: &self.fd,
            memory: &self.memory,
        };
        let outcome = fallback::emulate(&instr, &mut regs, &sregs, &mut fpu, &mut mem).map_err(|why| {
            format!(
                "guest executed `{}` (bytes {:02x?}) at {at}, which this host's KVM cannot emulate: {why}",
                fallback::describe(&instr),
                &bytes[..instr.len().min(bytes.len())]
            )
        })?;
        self.fd
            .set_regs(&regs)
            .map_err(|e| fail("write registers", e))?;
        let name = match outcome {
            Outcome::Emulated(name) => name,
            Outcome::EmulatedFpu(name) => {
                self.fd
                    .set_fpu(&fpu)
                    .map_err(|e| fail("write FPU state", e))?;
                name
            }
            Outcome::InjectTrap(name, vector) => {
                let mut events = self
                    .fd
                    .get_vcpu_events()
                    .map_err(|e| fail("read events", e))?;
                events.exception.injected = 1;
                events.exception.nr = vector;
                events.exception.has_error_code = 0;
                self.fd
                    .set_vcpu_events(&events)
                    .map_err(|e| fail("inject an exception", e))?;
                name
            }
        };
        let mut counts = self
            .counters
            .fallbacks
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let count = counts.entry(name).or_default();
        *count += 1;
        // The first of each kind is worth a line; Linux runs some on every process start.
        if *count == 1 {
            tracing::info!(
                "vcpu{}: fallback {name} at {at} (first; later ones at debug level)",
                self.id
            );
        } else {
            tracing::debug!("vcpu{}: fallback {name} at {at}", self.id);
        }
        Ok(())
    }
}

fn set_lvt_mode(regs: &mut [std::os::raw::c_char; 1024], offset: usize, mode: u32) {
    let mut raw = [0u8; 4];
    for (i, b) in raw.iter_mut().enumerate() {
        *b = regs[offset + i] as u8;
    }
    let value = (u32::from_le_bytes(raw) & !0x700) | (mode << 8);
    for (i, b) in value.to_le_bytes().iter().enumerate() {
        regs[offset + i] = *b as std::os::raw::c_char;
    }
}

/// Guest-virtual memory of a vCPU, for the fallback emulator's memory operands: each page
/// is translated by KVM (the guest's page tables) and accessed in guest memory.
struct VcpuMemory<'a> {
    fd: &'a VcpuFd,
    memory: &'a GuestMemoryMmap,
}

impl VcpuMemory<'_> {
    /// Calls `access` with the guest-physical address and length of each page-bounded piece
    /// of `len` bytes at `gva`.
    fn pieces(
        &self,
        gva: u64,
        len: usize,
        write: bool,
        mut access: impl FnMut(&GuestMemoryMmap, u64, std::ops::Range<usize>) -> Result<(), String>,
    ) -> Result<(), String> {
        let mut done = 0;
        while done < len {
            let at = gva.wrapping_add(done as u64);
            let in_page = (0x1000 - (at & 0xfff)) as usize;
            let n = in_page.min(len - done);
            let t = self
                .fd
                .translate_gva(at)
                .map_err(|e| format!("cannot translate {at:#x}: {e}"))?;
            if t.valid == 0 || (write && t.writeable == 0) {
                return Err(format!(
                    "guest address {at:#x} is not mapped{} (a #PF, which is not emulated)",
                    if write { " writable" } else { "" }
                ));
            }
            access(self.memory, t.physical_address, done..done + n)?;
            done += n;
        }
        Ok(())
    }
}

impl fallback::GuestAccess for VcpuMemory<'_> {
    fn read(&mut self, gva: u64, buf: &mut [u8]) -> Result<(), String> {
        use vm_memory::Bytes;
        let len = buf.len();
        self.pieces(gva, len, false, |m, gpa, r| {
            m.read_slice(&mut buf[r], vm_memory::GuestAddress(gpa))
                .map_err(|e| format!("cannot read guest memory at {gpa:#x}: {e}"))
        })
    }

    fn write(&mut self, gva: u64, data: &[u8]) -> Result<(), String> {
        use vm_memory::Bytes;
        self.pieces(gva, data.len(), true, |m, gpa, r| {
            m.write_slice(&data[r], vm_memory::GuestAddress(gpa))
                .map_err(|e| format!("cannot write guest memory at {gpa:#x}: {e}"))
        })
    }
}
