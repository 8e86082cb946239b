//! Just enough of the i8042 keyboard controller for Linux's `reboot=k` and test guests:
//! writing 0xfe (pulse reset line) to the command port ends the VM.

use crate::devices::bus::BusDevice;
use crate::devices::exit::{ExitSignal, GuestExit};

pub const I8042_BASE: u64 = 0x60;
/// Data port 0x60 through command/status port 0x64.
pub const I8042_LEN: u64 = 5;
const COMMAND_OFFSET: u64 = 4;
const CMD_PULSE_RESET: u8 = 0xfe;

pub struct I8042 {
    exit: ExitSignal,
}

impl I8042 {
    pub fn new(exit: ExitSignal) -> Self {
        I8042 { exit }
    }
}

impl BusDevice for I8042 {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        // Status 0: output buffer empty, input buffer empty, so drivers never wait on us.
        data.fill(0);
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if offset == COMMAND_OFFSET && data.first() == Some(&CMD_PULSE_RESET) {
            tracing::info!("guest requested a reset through the i8042");
            self.exit.send(GuestExit::Reset);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_command_ends_the_vm() {
        let (tx, rx) = std::sync::mpsc::channel();
        let mut dev = I8042::new(ExitSignal::new(tx, 7));
        dev.write(0, &[CMD_PULSE_RESET]);
        dev.write(COMMAND_OFFSET, &[0xaa]);
        assert!(rx.try_recv().is_err());
        dev.write(COMMAND_OFFSET, &[CMD_PULSE_RESET]);
        assert_eq!(rx.try_recv(), Ok((7, GuestExit::Reset)));
    }
}
