//! Calibration of remote-memory slowdown from Revenant's RAM-ext benchmark
//! (`scripts/bench ram-ext` writes the JSON; until it exists, `acpi/data/ram-ext-example.json` is an
//! EXAMPLE with made-up but plausible numbers, not a measurement).

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::SimError;

/// RAM-ext benchmark results the Revenant-calibrated policy uses.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RamExtCalibration {
    /// Median remote page-fault latency, microseconds.
    pub remote_fault_p50_us: f64,
    /// 99th percentile remote page-fault latency, microseconds.
    pub remote_fault_p99_us: f64,
    /// Run-time multiplier of the benchmark workload with 50% of its memory local, fixed budget
    /// (e.g. 1.3 = 30% slower).
    pub slowdown_at_50pct_local: f64,
    /// Same with the pressure-driven (Senpai-like) controller choosing the budget.
    pub slowdown_at_50pct_local_controller: f64,
    /// Where the controller left the budget, in % of the workload's touched memory (written
    /// by `scripts/bench ram-ext` since 2026-12-02). When present, the controller point is
    /// read as "this much must stay local": a VM under the controller keeps at least this
    /// share local. Absent: the controller is taken to hold 50% local.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub controller_final_local_pct: Option<f64>,
}

/// Measured run-time ratios this far below 1.0 are noise of a same-speed run, read as 1.0.
const NOISE_BELOW_ONE: f64 = 0.05;

impl RamExtCalibration {
    /// Loads and validates the JSON; errors name the field.
    pub fn load(path: &Path) -> Result<Self, SimError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| SimError::Io {
            path: shown.clone(),
            source,
        })?;
        Self::from_json_str(&text).map_err(|e| match e {
            SimError::Parse { message, .. } => SimError::Parse {
                path: shown,
                message,
            },
            other => other,
        })
    }

    /// Parses and validates the JSON text.
    pub fn from_json_str(text: &str) -> Result<Self, SimError> {
        let mut de = serde_json::Deserializer::from_str(text);
        let mut cal: RamExtCalibration =
            serde_path_to_error::deserialize(&mut de).map_err(|e| SimError::Parse {
                path: "<ram-ext json>".into(),
                message: format!("field `{}`: {}", e.path(), e.inner()),
            })?;
        for (field, v) in [
            ("remote_fault_p50_us", cal.remote_fault_p50_us),
            ("remote_fault_p99_us", cal.remote_fault_p99_us),
        ] {
            if !v.is_finite() || v < 0.0 {
                return Err(SimError::InvalidField {
                    field,
                    reason: format!("{v} must be a finite number >= 0"),
                });
            }
        }
        for (field, v) in [
            ("slowdown_at_50pct_local", cal.slowdown_at_50pct_local),
            (
                "slowdown_at_50pct_local_controller",
                cal.slowdown_at_50pct_local_controller,
            ),
        ] {
            if !v.is_finite() || v < 1.0 - NOISE_BELOW_ONE {
                return Err(SimError::InvalidField {
                    field,
                    reason: format!(
                        "{v} must be a run-time multiplier >= 1 (>= {} as measurement noise)",
                        1.0 - NOISE_BELOW_ONE
                    ),
                });
            }
        }
        cal.slowdown_at_50pct_local = cal.slowdown_at_50pct_local.max(1.0);
        cal.slowdown_at_50pct_local_controller = cal.slowdown_at_50pct_local_controller.max(1.0);
        if let Some(p) = cal.controller_final_local_pct {
            if !p.is_finite() || p < 0.0 {
                return Err(SimError::InvalidField {
                    field: "controller_final_local_pct",
                    reason: format!("{p} must be a percentage >= 0"),
                });
            }
        }
        Ok(cal)
    }

    /// Run-time multiplier for a VM whose memory is partly remote.
    ///
    /// Model: the slowdown grows linearly with the share of the VM's memory that is remote, through
    /// the measured point at 50% remote: `slowdown_at_50pct_local_controller` when Revenant's
    /// pressure-driven controller sets the local budget (`controller = true`), else the fixed-budget
    /// `slowdown_at_50pct_local`. Linear is the simplest curve through the one measured point; it
    /// overestimates small remote shares of cold memory and is meant as a conservative bound.
    pub fn slowdown(&self, remote_fraction: f64, controller: bool) -> f64 {
        let r = remote_fraction.clamp(0.0, 1.0);
        1.0 + (self.at_half(controller) - 1.0) * (r / 0.5)
    }

    /// Largest remote share whose slowdown stays within `max_slowdown`; under the controller
    /// also no more than it left remote in the benchmark (`controller_final_local_pct`).
    pub fn max_remote_fraction(&self, max_slowdown: f64, controller: bool) -> f64 {
        let cap = match (controller, self.controller_final_local_pct) {
            (true, Some(local_pct)) => (1.0 - local_pct / 100.0).clamp(0.0, 1.0),
            _ => 1.0,
        };
        let per_half = self.at_half(controller) - 1.0;
        if per_half <= 0.0 {
            return cap;
        }
        ((max_slowdown - 1.0).max(0.0) * 0.5 / per_half).clamp(0.0, cap)
    }

    fn at_half(&self, controller: bool) -> f64 {
        if controller {
            self.slowdown_at_50pct_local_controller
        } else {
            self.slowdown_at_50pct_local
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: &str = r#"{"remote_fault_p50_us": 20, "remote_fault_p99_us": 80,
        "slowdown_at_50pct_local": 1.4, "slowdown_at_50pct_local_controller": 1.1}"#;

    #[test]
    fn slowdown_is_linear_through_measured_point() {
        let c = RamExtCalibration::from_json_str(OK).unwrap();
        assert!((c.slowdown(0.0, true) - 1.0).abs() < 1e-12);
        assert!((c.slowdown(0.5, true) - 1.1).abs() < 1e-12);
        assert!((c.slowdown(0.25, true) - 1.05).abs() < 1e-12);
        assert!((c.max_remote_fraction(1.05, true) - 0.25).abs() < 1e-12);
        // Fixed budget: 1.4x at half local.
        assert!((c.slowdown(0.25, false) - 1.2).abs() < 1e-12);
        assert!((c.max_remote_fraction(1.2, false) - 0.25).abs() < 1e-12);
    }

    #[test]
    fn the_controllers_final_local_share_caps_the_remote_fraction() {
        // Measured on a scanning guest: the controller gave the budget back (97% local) and
        // ran at full speed (0.98 is noise).
        let c = RamExtCalibration::from_json_str(&OK.replace(
            "\"slowdown_at_50pct_local_controller\": 1.1",
            "\"slowdown_at_50pct_local_controller\": 0.98, \"controller_final_local_pct\": 97.0",
        ))
        .unwrap();
        assert_eq!(c.slowdown_at_50pct_local_controller, 1.0);
        assert!((c.max_remote_fraction(1.05, true) - 0.03).abs() < 1e-9);
        // The fixed budget is not capped by the controller's choice.
        assert!((c.max_remote_fraction(1.2, false) - 0.25).abs() < 1e-12);
        let e = RamExtCalibration::from_json_str(
            &OK.replace("1.1}", "1.1, \"controller_final_local_pct\": -1}"),
        )
        .unwrap_err();
        assert!(e.to_string().contains("controller_final_local_pct"), "{e}");
    }

    #[test]
    fn bad_json_names_the_field() {
        let e = RamExtCalibration::from_json_str(r#"{"remote_fault_p50_us": "x"}"#).unwrap_err();
        assert!(e.to_string().contains("remote_fault_p50_us"), "{e}");
        let e = RamExtCalibration::from_json_str(&OK.replace("1.1}", "0.5}")).unwrap_err();
        assert!(
            e.to_string().contains("slowdown_at_50pct_local_controller"),
            "{e}"
        );
    }
}
