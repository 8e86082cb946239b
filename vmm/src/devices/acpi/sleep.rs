//! The FADT's sleep control, sleep status and reset registers.
//!
//! Writing `SLP_TYP | SLP_EN` to the control register puts the machine to sleep: S5 (and S4,
//! whose image the guest has already written) powers the VM off; S3 stops the vCPUs with
//! memory kept, and the VM's sleep mode decides whether that is S3 or Sz. The writing vCPU
//! parks itself before running another guest instruction, as a real CPU stops; the VM's owner
//! stops the others and records the state. On wake the VMM sets WAK_STS, which the guest
//! clears by writing it back.

use std::sync::Arc;

use revenant_acpi::platform::{
    RESET_PORT, RESET_VALUE, SLEEP_CONTROL_PORT, SLEEP_STATUS_PORT, SLP_EN, SLP_TYP_MASK,
    SLP_TYP_S3, SLP_TYP_S4, SLP_TYP_S5, SLP_TYP_SHIFT, WAK_STS,
};

use crate::devices::bus::BusDevice;
use crate::devices::exit::{ExitSignal, GuestExit};
use crate::vstate::run_control::RunControl;

/// Register offsets from the device's base port, SLEEP_CONTROL_PORT.
const CONTROL_OFFSET: u64 = 0;
const STATUS_OFFSET: u64 = (SLEEP_STATUS_PORT - SLEEP_CONTROL_PORT) as u64;
const RESET_OFFSET: u64 = (RESET_PORT - SLEEP_CONTROL_PORT) as u64;

pub struct SleepDevice {
    wake_status: Arc<std::sync::atomic::AtomicBool>,
    exit: ExitSignal,
    control: Arc<RunControl>,
}

impl SleepDevice {
    /// `wake_status` is set by the VMM when it wakes the VM (WAK_STS).
    pub fn new(
        exit: ExitSignal,
        control: Arc<RunControl>,
        wake_status: Arc<std::sync::atomic::AtomicBool>,
    ) -> Self {
        SleepDevice {
            wake_status,
            exit,
            control,
        }
    }

    fn control_write(&mut self, value: u8) {
        if value & SLP_EN == 0 {
            return;
        }
        match (value & SLP_TYP_MASK) >> SLP_TYP_SHIFT {
            SLP_TYP_S3 => {
                tracing::info!("guest requested S3");
                self.control.request_pause();
                self.exit.send(GuestExit::SleepRequested);
            }
            SLP_TYP_S4 | SLP_TYP_S5 => {
                tracing::info!(
                    "guest requested power off (SLP_TYP {:#x})",
                    (value & SLP_TYP_MASK) >> SLP_TYP_SHIFT
                );
                self.control.request_pause();
                self.exit.send(GuestExit::PowerOff);
            }
            other => tracing::warn!("guest wrote unknown SLP_TYP {other:#x} with SLP_EN; ignored"),
        }
    }
}

impl BusDevice for SleepDevice {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        data.fill(0);
        if offset == STATUS_OFFSET {
            if let Some(b) = data.first_mut() {
                if self.wake_status.load(std::sync::atomic::Ordering::SeqCst) {
                    *b = WAK_STS;
                }
            }
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        let Some(&value) = data.first() else { return };
        match offset {
            CONTROL_OFFSET => self.control_write(value),
            STATUS_OFFSET if value & WAK_STS != 0 => {
                self.wake_status
                    .store(false, std::sync::atomic::Ordering::SeqCst);
            }
            RESET_OFFSET if value == RESET_VALUE => {
                tracing::info!("guest reset through the ACPI reset register");
                self.control.request_pause();
                self.exit.send(GuestExit::Reset);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    fn device() -> (
        SleepDevice,
        std::sync::mpsc::Receiver<(u64, GuestExit)>,
        Arc<AtomicBool>,
    ) {
        let (tx, rx) = std::sync::mpsc::channel();
        let wak = Arc::new(AtomicBool::new(false));
        let dev = SleepDevice::new(
            ExitSignal::new(tx, 1),
            Arc::new(RunControl::default()),
            wak.clone(),
        );
        (dev, rx, wak)
    }

    #[test]
    fn sleep_types_map_to_events() {
        let (mut dev, rx, _) = device();
        dev.write(0, &[SLP_TYP_S3 << SLP_TYP_SHIFT]); // no SLP_EN: nothing happens
        assert!(rx.try_recv().is_err());
        dev.write(0, &[(SLP_TYP_S3 << SLP_TYP_SHIFT) | SLP_EN]);
        assert_eq!(rx.try_recv().unwrap().1, GuestExit::SleepRequested);
        dev.write(0, &[(SLP_TYP_S5 << SLP_TYP_SHIFT) | SLP_EN]);
        assert_eq!(rx.try_recv().unwrap().1, GuestExit::PowerOff);
        dev.write(0, &[(7 << SLP_TYP_SHIFT) | SLP_EN]);
        assert!(rx.try_recv().is_err());
        dev.write(2, &[RESET_VALUE]);
        assert_eq!(rx.try_recv().unwrap().1, GuestExit::Reset);
    }

    #[test]
    fn wake_status_is_write_one_to_clear() {
        let (mut dev, _rx, wak) = device();
        let mut b = [0u8];
        dev.read(1, &mut b);
        assert_eq!(b[0], 0);
        wak.store(true, Ordering::SeqCst);
        dev.read(1, &mut b);
        assert_eq!(b[0], WAK_STS);
        dev.write(1, &[0]);
        assert!(wak.load(Ordering::SeqCst));
        dev.write(1, &[WAK_STS]);
        assert!(!wak.load(Ordering::SeqCst));
    }
}
