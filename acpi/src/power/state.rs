//! The host power states the model distinguishes.

use serde::{Deserialize, Serialize};

/// A host's power state. S0 is split into busy and idle because server power is modelled as
/// `P(u) = P_idle + (P_peak - P_idle) * u` (Fan, Weber, Barroso, ISCA 2007): a host at utilisation
/// `u` for `t` seconds is accounted as `u*t` seconds of S0-busy and `(1-u)*t` seconds of S0-idle,
/// which gives exactly that linear model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HostState {
    /// S0, CPUs fully busy (peak power).
    S0Busy,
    /// S0, powered on with nothing to run (idle power).
    S0Idle,
    /// S3, suspend to RAM: DRAM in self-refresh, everything else off.
    S3,
    /// Sz, ZombieLand's zombie state: like S3 but DRAM stays active and the NIC on, so other hosts
    /// use this host's memory remotely.
    Sz,
    /// S5, soft off.
    S5,
}

impl HostState {
    /// All states, in the order reports list them.
    pub const ALL: [HostState; 5] = [
        HostState::S0Busy,
        HostState::S0Idle,
        HostState::S3,
        HostState::Sz,
        HostState::S5,
    ];

    /// Index into per-state arrays (same order as [`HostState::ALL`]).
    pub fn index(self) -> usize {
        self as usize
    }

    /// Short name used in reports and JSON keys.
    pub fn name(self) -> &'static str {
        match self {
            HostState::S0Busy => "s0_busy",
            HostState::S0Idle => "s0_idle",
            HostState::S3 => "s3",
            HostState::Sz => "sz",
            HostState::S5 => "s5",
        }
    }

    /// Whether the host's CPUs are on (it can run VMs).
    pub fn is_on(self) -> bool {
        matches!(self, HostState::S0Busy | HostState::S0Idle)
    }
}
