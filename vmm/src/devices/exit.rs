//! How a device or vCPU tells the VMM that the guest stopped.

use std::sync::mpsc::Sender;

/// Why a guest stopped running on its own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GuestExit {
    /// ACPI/PSCI power off, or a test guest's reset used as "done".
    PowerOff,
    /// The guest asked for a reset (i8042 pulse, `reboot=k`). Revenant stops the VM.
    Reset,
    /// Unrecoverable guest or VMM failure: triple fault, emulation failure, KVM error.
    Crash(String),
    /// The guest asked for S3 through the ACPI sleep control register. Its vCPUs stop but the
    /// VM lives on: the owner records S3 (or Sz, in sleep mode sz) until a wake.
    SleepRequested,
}

impl GuestExit {
    /// Process exit status in direct-boot mode: 0 for an orderly stop.
    pub fn exit_code(&self) -> i32 {
        match self {
            GuestExit::PowerOff | GuestExit::Reset | GuestExit::SleepRequested => 0,
            GuestExit::Crash(_) => 1,
        }
    }
}

/// Cloned into every party that can end the VM; the receiver is the VM's owner.
#[derive(Clone)]
pub struct ExitSignal {
    tx: Sender<(u64, GuestExit)>,
    generation: u64,
}

impl ExitSignal {
    /// `generation` identifies the boot the signal belongs to.
    pub fn new(tx: Sender<(u64, GuestExit)>, generation: u64) -> Self {
        ExitSignal { tx, generation }
    }

    pub fn send(&self, exit: GuestExit) {
        // The receiver only goes away while the VMM is exiting, when nobody needs to hear
        // about the stop any more.
        let _ = self.tx.send((self.generation, exit));
    }
}
