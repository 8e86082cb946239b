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
}

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
        let cal: RamExtCalibration =
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
            if !v.is_finite() || v < 1.0 {
                return Err(SimError::InvalidField {
                    field,
                    reason: format!("{v} must be a run-time multiplier >= 1"),
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

    /// Largest remote share whose slowdown stays within `max_slowdown`.
    pub fn max_remote_fraction(&self, max_slowdown: f64, controller: bool) -> f64 {
        let per_half = self.at_half(controller) - 1.0;
        if per_half <= 0.0 {
            return 1.0;
        }
        ((max_slowdown - 1.0).max(0.0) * 0.5 / per_half).clamp(0.0, 1.0)
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
