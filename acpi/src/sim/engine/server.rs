//! One simulated server: its free capacity, what it lends, and its power phase and energy account.

use crate::power::{EnergyAccount, HostState, PowerProfile};

/// Where a server is in its power life cycle.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Phase {
    /// S0, running VMs or idle.
    On,
    /// Resuming; VMs placed on it wait until `ready_at`.
    Waking {
        /// When it reaches S0.
        ready_at: f64,
    },
    /// Suspending into S3 or Sz.
    Suspending,
    /// S3 -> Sz switch (resume then suspend into Sz); its memory is already promised to lenders.
    Converting,
    /// In a sleep state.
    Asleep(HostState),
}

impl Phase {
    /// Whether VMs may be placed on it without waking it.
    pub fn takes_vms(self) -> bool {
        matches!(self, Phase::On | Phase::Waking { .. })
    }
}

/// A server's simulation state.
#[derive(Debug, Clone)]
pub struct Server {
    /// Power phase.
    pub phase: Phase,
    /// Cores not used by VMs.
    pub cpu_free: f64,
    /// Own DRAM used neither by its VMs nor lent out, GiB.
    pub mem_free: f64,
    /// DRAM lent to other servers' VMs, GiB.
    pub lent: f64,
    /// VMs running on it.
    pub vms: u32,
    /// Bumped at each placement so that a stale idle timer does nothing.
    pub token: u64,
    /// Time and energy per state.
    pub account: EnergyAccount,
}

impl Server {
    /// An empty server asleep in S3 at time 0.
    pub fn asleep(profile: &PowerProfile, cpus: f64, mem_gib: f64) -> Self {
        Server {
            phase: Phase::Asleep(HostState::S3),
            cpu_free: cpus,
            mem_free: mem_gib,
            lent: 0.0,
            vms: 0,
            token: 0,
            account: EnergyAccount::new(profile, HostState::S3, 0.0),
        }
    }
}
