//! Energy accounting: integrates a host's (or VM's) time and energy per power state from a sequence
//! of state changes. Event-driven: callers report *changes* with their time, never ticks.

use serde::Serialize;

use super::{HostState, PowerError, PowerProfile};

/// What the account is accruing right now.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Occupancy {
    /// Powered on at a utilisation in 0..=1 (split between S0-busy and S0-idle).
    On(f64),
    /// In a sleep state (S3, Sz or S5).
    Asleep(HostState),
    /// Suspending, resuming or booting, at the profile's transition power.
    Transition,
}

/// Seconds and joules per state, plus transitions.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct StateTotals {
    /// Seconds per state, indexed by [`HostState::index`].
    pub seconds: [f64; 5],
    /// Joules per state, indexed by [`HostState::index`].
    pub joules: [f64; 5],
    /// Seconds spent in transitions.
    pub transition_seconds: f64,
    /// Joules spent in transitions.
    pub transition_joules: f64,
    /// Number of transitions started.
    pub transitions: u64,
}

impl StateTotals {
    /// Seconds in `state`.
    pub fn seconds_in(&self, state: HostState) -> f64 {
        self.seconds[state.index()]
    }

    /// Joules in `state`.
    pub fn joules_in(&self, state: HostState) -> f64 {
        self.joules[state.index()]
    }

    /// All joules, states and transitions.
    pub fn total_joules(&self) -> f64 {
        self.joules.iter().sum::<f64>() + self.transition_joules
    }

    /// All seconds accounted, states and transitions.
    pub fn total_seconds(&self) -> f64 {
        self.seconds.iter().sum::<f64>() + self.transition_seconds
    }

    /// Adds `other` into `self` (e.g. to sum servers into a datacenter).
    pub fn add(&mut self, other: &StateTotals) {
        for i in 0..5 {
            self.seconds[i] += other.seconds[i];
            self.joules[i] += other.joules[i];
        }
        self.transition_seconds += other.transition_seconds;
        self.transition_joules += other.transition_joules;
        self.transitions += other.transitions;
    }
}

/// Time and energy per state of one host (or one VM).
///
/// ```
/// use revenant_acpi::power::{EnergyAccount, HostState, PowerProfile};
/// let mut acct = EnergyAccount::new(&PowerProfile::default(), HostState::S0Idle, 0.0);
/// acct.enter(HostState::Sz, 10.0).unwrap();
/// let t = acct.totals_at(60.0).unwrap();
/// // 10 s at 100 W + 50 s at 11.5 W
/// assert!((t.total_joules() - 1575.0).abs() < 1e-9);
/// ```
#[derive(Debug, Clone)]
pub struct EnergyAccount {
    profile: PowerProfile,
    occupancy: Occupancy,
    since_s: f64,
    totals: StateTotals,
}

impl EnergyAccount {
    /// Starts an account in `state` at time `at_s` (seconds, any origin).
    pub fn new(profile: &PowerProfile, state: HostState, at_s: f64) -> Self {
        EnergyAccount {
            profile: *profile,
            occupancy: occupancy_of(state),
            since_s: at_s,
            totals: StateTotals::default(),
        }
    }

    /// Switches to `state` at `at_s`. S0-busy means utilisation 1, S0-idle utilisation 0.
    pub fn enter(&mut self, state: HostState, at_s: f64) -> Result<(), PowerError> {
        self.switch(occupancy_of(state), at_s)
    }

    /// Switches to S0 at utilisation `utilisation` (0..=1) at `at_s`.
    pub fn enter_on(&mut self, utilisation: f64, at_s: f64) -> Result<(), PowerError> {
        if !(0.0..=1.0).contains(&utilisation) {
            return Err(PowerError::BadUtilisation(utilisation));
        }
        self.switch(Occupancy::On(utilisation), at_s)
    }

    /// Starts a transition (suspend, resume, boot) at `at_s`; it lasts until the next `enter*`.
    pub fn begin_transition(&mut self, at_s: f64) -> Result<(), PowerError> {
        self.switch(Occupancy::Transition, at_s)?;
        self.totals.transitions += 1;
        Ok(())
    }

    /// Whether the account is in a transition.
    pub fn in_transition(&self) -> bool {
        self.occupancy == Occupancy::Transition
    }

    /// Totals up to `at_s` (the current interval is included but not closed).
    pub fn totals_at(&self, at_s: f64) -> Result<StateTotals, PowerError> {
        let mut copy = self.clone();
        copy.accrue(at_s)?;
        Ok(copy.totals)
    }

    fn switch(&mut self, next: Occupancy, at_s: f64) -> Result<(), PowerError> {
        self.accrue(at_s)?;
        self.occupancy = next;
        Ok(())
    }

    fn accrue(&mut self, at_s: f64) -> Result<(), PowerError> {
        // NaN is rejected too, so it cannot poison the totals.
        if at_s.is_nan() || at_s < self.since_s {
            return Err(PowerError::TimeWentBack {
                at_s,
                last_s: self.since_s,
            });
        }
        let dt = at_s - self.since_s;
        self.since_s = at_s;
        if dt == 0.0 {
            return Ok(());
        }
        let w = &self.profile.power_w;
        let t = &mut self.totals;
        match self.occupancy {
            Occupancy::On(u) => {
                let busy = HostState::S0Busy.index();
                let idle = HostState::S0Idle.index();
                t.seconds[busy] += u * dt;
                t.joules[busy] += u * dt * w.s0_busy;
                t.seconds[idle] += (1.0 - u) * dt;
                t.joules[idle] += (1.0 - u) * dt * w.s0_idle;
            }
            Occupancy::Asleep(state) => {
                t.seconds[state.index()] += dt;
                t.joules[state.index()] += dt * w.watts(state);
            }
            Occupancy::Transition => {
                t.transition_seconds += dt;
                t.transition_joules += dt * self.profile.transitions.power_w;
            }
        }
        Ok(())
    }
}

fn occupancy_of(state: HostState) -> Occupancy {
    match state {
        HostState::S0Busy => Occupancy::On(1.0),
        HostState::S0Idle => Occupancy::On(0.0),
        other => Occupancy::Asleep(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn idle_then_zombie_gives_hand_computed_joules() {
        // 10 s S0-idle (100 W) + 50 s Sz (11.5 W) = 1000 + 575 = 1575 J.
        let mut a = EnergyAccount::new(&PowerProfile::default(), HostState::S0Idle, 0.0);
        a.enter(HostState::Sz, 10.0).unwrap();
        let t = a.totals_at(60.0).unwrap();
        assert!(close(t.seconds_in(HostState::S0Idle), 10.0));
        assert!(close(t.seconds_in(HostState::Sz), 50.0));
        assert!(close(t.joules_in(HostState::S0Idle), 1000.0));
        assert!(close(t.joules_in(HostState::Sz), 575.0));
        assert!(close(t.total_joules(), 1575.0));
    }

    #[test]
    fn partial_utilisation_follows_linear_model() {
        // 100 s at u=0.25: 100 W + 0.25*100 W = 125 W -> 12_500 J; split 25 s busy / 75 s idle.
        let mut a = EnergyAccount::new(&PowerProfile::default(), HostState::S0Idle, 0.0);
        a.enter_on(0.25, 0.0).unwrap();
        let t = a.totals_at(100.0).unwrap();
        assert!(close(t.total_joules(), 12_500.0));
        assert!(close(t.seconds_in(HostState::S0Busy), 25.0));
        assert!(close(t.seconds_in(HostState::S0Idle), 75.0));
    }

    #[test]
    fn transitions_are_counted_at_transition_power() {
        // busy 20 s (4000 J), suspend 3 s at 100 W (300 J), S3 77 s at 10 W (770 J) = 5070 J.
        let mut a = EnergyAccount::new(&PowerProfile::default(), HostState::S0Busy, 0.0);
        a.begin_transition(20.0).unwrap();
        assert!(a.in_transition());
        a.enter(HostState::S3, 23.0).unwrap();
        let t = a.totals_at(100.0).unwrap();
        assert_eq!(t.transitions, 1);
        assert!(close(t.transition_seconds, 3.0));
        assert!(close(t.total_joules(), 5070.0));
        assert!(close(t.total_seconds(), 100.0));
    }

    #[test]
    fn time_going_back_or_bad_utilisation_is_an_error() {
        let mut a = EnergyAccount::new(&PowerProfile::default(), HostState::S5, 10.0);
        assert!(matches!(
            a.enter(HostState::S3, 5.0),
            Err(PowerError::TimeWentBack { .. })
        ));
        assert!(a.enter(HostState::S3, f64::NAN).is_err());
        assert!(matches!(
            a.enter_on(1.5, 11.0),
            Err(PowerError::BadUtilisation(_))
        ));
    }

    #[test]
    fn totals_add_sums_hosts() {
        let p = PowerProfile::default();
        let a = EnergyAccount::new(&p, HostState::S3, 0.0)
            .totals_at(10.0)
            .unwrap();
        let b = EnergyAccount::new(&p, HostState::S5, 0.0)
            .totals_at(10.0)
            .unwrap();
        let mut sum = a;
        sum.add(&b);
        assert!(close(sum.total_joules(), 100.0 + 60.0));
    }
}
