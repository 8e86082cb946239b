//! The memd host's power state: which requests each state serves. The energy of each state
//! comes from the acpi crate's power model (STAT's `joules_in_state`).

use serde::{Deserialize, Serialize};

/// Power state of the host that runs memd.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum PowerState {
    /// Fully on: every request is served.
    S0,
    /// Zombie (ZombieLand): CPUs off, DRAM and NIC on. Reads and writes of
    /// existing slabs are served (the "NIC-only" path); allocation and freeing,
    /// which need the host CPU, are refused.
    Sz,
    /// Suspend to RAM: DRAM in self-refresh, NIC off: no data requests.
    S3,
}

impl PowerState {
    /// Wire code (used in HELLO replies and SET_POWER's `offset`).
    pub fn code(self) -> u8 {
        match self {
            Self::S0 => 0,
            Self::Sz => 1,
            Self::S3 => 2,
        }
    }

    /// Decodes a wire code; `None` if unknown.
    pub fn from_code(c: u64) -> Option<Self> {
        Some(match c {
            0 => Self::S0,
            1 => Self::Sz,
            2 => Self::S3,
            _ => return None,
        })
    }

    /// Whether reads and writes of existing slabs are served.
    pub fn serves_io(self) -> bool {
        matches!(self, Self::S0 | Self::Sz)
    }

    /// Whether slabs may be allocated or freed.
    pub fn serves_alloc(self) -> bool {
        self == Self::S0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_rules_hold() {
        for s in [PowerState::S0, PowerState::Sz, PowerState::S3] {
            assert_eq!(PowerState::from_code(s.code().into()), Some(s));
        }
        assert_eq!(PowerState::from_code(9), None);
        assert!(PowerState::Sz.serves_io() && !PowerState::Sz.serves_alloc());
        assert!(!PowerState::S3.serves_io() && !PowerState::S3.serves_alloc());
    }
}
