//! Pressure-driven budget (TMO/Senpai, ASPLOS'22, at VMM level): instead of a fixed local
//! ratio, the budget shrinks while the time the guest spends waiting for remote pages stays
//! under a target share of wall time, and grows when it goes over.

use serde::{Deserialize, Serialize};

/// Controller settings (`memory.remote.controller` in `vm.create`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControllerConfig {
    /// Stall share of wall time the controller aims for, in percent (Senpai uses 0.1% of
    /// PSI "some" time for a whole host; a single VM can take more).
    #[serde(default = "default_target")]
    pub stall_target_pct: f64,
    /// How often the budget is adjusted, in milliseconds.
    #[serde(default = "default_interval")]
    pub interval_ms: u64,
    /// The budget never goes below this many bytes.
    #[serde(default)]
    pub min_budget: u64,
}

fn default_target() -> f64 {
    1.0
}

fn default_interval() -> u64 {
    100
}

impl Default for ControllerConfig {
    fn default() -> Self {
        ControllerConfig {
            stall_target_pct: default_target(),
            interval_ms: default_interval(),
            min_budget: 0,
        }
    }
}

impl ControllerConfig {
    /// Checks the settings; the error is (field, reason).
    pub fn validate(&self) -> Result<(), (&'static str, &'static str)> {
        if !(self.stall_target_pct > 0.0 && self.stall_target_pct < 100.0) {
            return Err(("stall_target_pct", "must be between 0 and 100"));
        }
        if !(10..=60_000).contains(&self.interval_ms) {
            return Err(("interval_ms", "must be between 10 and 60000"));
        }
        Ok(())
    }
}

/// Shrink step: a small fraction of the budget per calm interval, as Senpai's probe.
const SHRINK_FRACTION: f64 = 0.02;
/// Grow step: back off faster than probing, so a working-set jump is absorbed quickly.
const GROW_FRACTION: f64 = 0.10;

/// The next budget (pages) from the current one and the stall share measured over the
/// last interval (0..=1), between `min` and `max` pages.
pub fn next_budget(
    cfg: &ControllerConfig,
    budget: u64,
    stall_share: f64,
    min: u64,
    max: u64,
) -> u64 {
    let target = cfg.stall_target_pct / 100.0;
    let next = if stall_share > target {
        // Over target: grow in proportion to how far over, at least one step.
        let over = (stall_share / target).min(4.0);
        budget as f64 * (1.0 + GROW_FRACTION * over)
    } else {
        budget as f64 * (1.0 - SHRINK_FRACTION)
    };
    let step_min = 16.0; // pages: always move a little, even from tiny budgets
    let next = if next >= budget as f64 {
        next.max(budget as f64 + step_min)
    } else {
        next.min(budget as f64 - step_min)
    };
    (next.max(0.0) as u64).clamp(min.min(max), max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shrinks_when_calm_and_grows_under_pressure() {
        let cfg = ControllerConfig::default(); // 1% target
        assert_eq!(next_budget(&cfg, 10_000, 0.0, 0, 65_536), 9_800);
        // 2% stall: twice the target, grows by 20%.
        assert_eq!(next_budget(&cfg, 10_000, 0.02, 0, 65_536), 12_000);
        // Far over: the growth is capped at 40% per interval.
        assert_eq!(next_budget(&cfg, 10_000, 0.9, 0, 65_536), 14_000);
    }

    #[test]
    fn stays_within_its_bounds() {
        let cfg = ControllerConfig::default();
        assert_eq!(next_budget(&cfg, 1_000, 0.0, 990, 65_536), 990);
        assert_eq!(next_budget(&cfg, 65_000, 0.5, 0, 65_536), 65_536);
        assert_eq!(next_budget(&cfg, 10, 0.0, 0, 65_536), 0);
        assert_eq!(next_budget(&cfg, 0, 0.5, 0, 65_536), 16);
    }

    #[test]
    fn bad_settings_name_the_field() {
        let mut cfg = ControllerConfig {
            stall_target_pct: 0.0,
            ..Default::default()
        };
        assert_eq!(cfg.validate().unwrap_err().0, "stall_target_pct");
        cfg.stall_target_pct = 1.0;
        cfg.interval_ms = 1;
        assert_eq!(cfg.validate().unwrap_err().0, "interval_ms");
    }
}
