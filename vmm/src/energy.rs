//! Time and energy a VM spends in each power state, with `revenant_acpi::power`'s model.
//!
//! A VM is accounted like a small host: Running is S0 at the utilisation its vCPU threads
//! actually had (their CPU time over wall time, sampled at every state change and counter
//! read), Paused is S0-idle, a sleeping VM is in S3 or Sz, a stopped one in S5.

use std::time::Instant;

use revenant_acpi::power::{EnergyAccount, HostState, PowerProfile, StateTotals};
use serde::Serialize;

/// What the VM is doing, as far as power goes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum PowerPhase {
    Running,
    Idle,
    Sleeping(HostState),
    Off,
}

pub struct VmEnergy {
    account: EnergyAccount,
    origin: Instant,
    phase: PowerPhase,
    last_s: f64,
    last_cpu_s: f64,
}

impl VmEnergy {
    pub fn new(profile: &PowerProfile) -> Self {
        VmEnergy {
            account: EnergyAccount::new(profile, HostState::S0Idle, 0.0),
            origin: Instant::now(),
            phase: PowerPhase::Running,
            last_s: 0.0,
            last_cpu_s: 0.0,
        }
    }

    /// Closes the interval since the last sample at the measured utilisation.
    /// `cpu_s` is the vCPU threads' total CPU time, `vcpus` their number.
    fn sample(&mut self, cpu_s: f64, vcpus: usize) {
        let now = self.origin.elapsed().as_secs_f64();
        let wall = now - self.last_s;
        let state = match self.phase {
            PowerPhase::Running if wall > 0.0 && vcpus > 0 => {
                let u = ((cpu_s - self.last_cpu_s) / (wall * vcpus as f64)).clamp(0.0, 1.0);
                // Charge [last, now] at u: set the occupancy at `last` (nothing accrued since),
                // then accrue up to `now`.
                let _ = self.account.enter_on(u, self.last_s);
                None
            }
            PowerPhase::Running | PowerPhase::Idle => Some(HostState::S0Idle),
            PowerPhase::Sleeping(s) => Some(s),
            PowerPhase::Off => Some(HostState::S5),
        };
        if let Some(s) = state {
            let _ = self.account.enter(s, self.last_s);
        }
        // Time only moves forward and utilisation is clamped, so these calls cannot fail.
        let _ = self.account.enter(HostState::S0Idle, now);
        self.last_s = now;
        self.last_cpu_s = cpu_s;
    }

    pub fn set_phase(&mut self, phase: PowerPhase, cpu_s: f64, vcpus: usize) {
        self.sample(cpu_s, vcpus);
        self.phase = phase;
    }

    pub fn report(&mut self, cpu_s: f64, vcpus: usize) -> EnergyReport {
        self.sample(cpu_s, vcpus);
        let totals = self.account.totals_at(self.last_s).unwrap_or_default();
        EnergyReport::from(&totals)
    }
}

/// Seconds and joules per state, as `vm.counters` shows them.
#[derive(Debug, Default, Serialize)]
pub struct EnergyReport {
    pub seconds: std::collections::BTreeMap<&'static str, f64>,
    pub joules: std::collections::BTreeMap<&'static str, f64>,
    pub total_joules: f64,
}

impl From<&StateTotals> for EnergyReport {
    fn from(t: &StateTotals) -> Self {
        EnergyReport {
            seconds: HostState::ALL
                .iter()
                .map(|s| (s.name(), t.seconds_in(*s)))
                .collect(),
            joules: HostState::ALL
                .iter()
                .map(|s| (s.name(), t.joules_in(*s)))
                .collect(),
            total_joules: t.total_joules(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sleeping_time_is_charged_at_the_sleep_state() {
        let profile = PowerProfile::default();
        let mut e = VmEnergy::new(&profile);
        e.set_phase(PowerPhase::Sleeping(HostState::Sz), 0.0, 1);
        std::thread::sleep(std::time::Duration::from_millis(30));
        let r = e.report(0.0, 1);
        let sz = r.seconds["sz"];
        assert!((0.03..1.0).contains(&sz), "{sz}");
        assert!((r.joules["sz"] - sz * profile.power_w.watts(HostState::Sz)).abs() < 1e-9);
    }

    #[test]
    fn running_is_charged_at_measured_utilisation() {
        let profile = PowerProfile::default();
        let mut e = VmEnergy::new(&profile);
        std::thread::sleep(std::time::Duration::from_millis(20));
        // The vCPU was busy for the whole interval: all of it counts as S0-busy.
        let wall = e.origin.elapsed().as_secs_f64();
        let r = e.report(wall * 10.0, 1);
        assert!(r.seconds["s0_busy"] > 0.0);
        assert!(r.seconds["s0_idle"] < 1e-3, "{:?}", r.seconds);
    }
}
