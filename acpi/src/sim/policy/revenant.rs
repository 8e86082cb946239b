//! (d) Revenant-calibrated ZombieLand: the same placement, but remote memory slows a VM down by the
//! amount measured with Revenant's RAM-ext engine ([`RamExtCalibration`]), and a VM is never given
//! more remote memory than keeps it within `max_slowdown`. The engine stretches each VM's lifetime
//! by its slowdown, so the energy saving is weighed against the extra CPU time.

use super::{Policy, RemoteSource};
use crate::sim::ramext::RamExtCalibration;
use crate::sim::trace::Request;

/// Revenant-calibrated ZombieLand policy.
#[derive(Debug, Clone, Copy)]
pub struct RevenantCalibrated {
    calibration: RamExtCalibration,
    controller: bool,
    max_remote_fraction: f64,
}

impl RevenantCalibrated {
    /// Policy using `calibration` with RAM-ext's pressure-driven controller, capping each VM's
    /// slowdown at `max_slowdown` (e.g. 1.05).
    pub fn new(calibration: RamExtCalibration, max_slowdown: f64) -> Self {
        Self::with_budget(calibration, max_slowdown, true)
    }

    /// Like [`RevenantCalibrated::new`]; `controller = false` uses the fixed-budget measurement.
    pub fn with_budget(
        calibration: RamExtCalibration,
        max_slowdown: f64,
        controller: bool,
    ) -> Self {
        RevenantCalibrated {
            calibration,
            controller,
            max_remote_fraction: calibration.max_remote_fraction(max_slowdown, controller),
        }
    }
}

impl Policy for RevenantCalibrated {
    fn name(&self) -> &'static str {
        "revenant"
    }

    fn min_local_gib(&self, req: &Request) -> f64 {
        let local_share = req.hot_fraction.max(1.0 - self.max_remote_fraction);
        req.mem_gib * local_share
    }

    fn remote_source(&self) -> RemoteSource {
        RemoteSource::Zombies
    }

    fn slowdown(&self, remote_fraction: f64) -> f64 {
        self.calibration.slowdown(remote_fraction, self.controller)
    }
}
