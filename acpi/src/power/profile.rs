//! Power profile: watts per host state and the cost of moving between states, loaded from TOML or
//! JSON. Every field has a documented default and a file overrides any subset of them.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{HostState, PowerError};

/// Power drawn in each state, in watts.
///
/// Defaults: the ZombieLand paper's measured per-state watts are not available to this project (only
/// a summary of the paper is, `shared/ZOMBIELAND.md`), so the defaults are a generic 200 W server
/// shaped by the ratios that summary gives; override them with a profile file when you have
/// measurements.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StatePower {
    /// S0 at full CPU load (`P_peak`). Default 200 W: a typical 2-socket server's peak; an
    /// assumption (no paper figure available), it only scales results since the policies are
    /// compared as ratios.
    pub s0_busy: f64,
    /// S0 with nothing running (`P_idle`). Default 100 W = half of peak, per Fan, Weber, Barroso,
    /// "Power provisioning for a warehouse-sized computer", ISCA 2007 (via ZOMBIELAND.md "Energy
    /// model basics").
    pub s0_idle: f64,
    /// S3 (suspend to RAM). Default 10 W = 5% of peak: ZOMBIELAND.md says "S3 and S5 a few percent of
    /// peak"; the exact measured S3 figure of the paper is not known here.
    pub s3: f64,
    /// Sz (zombie). Default 11.5 W = S3 x 1.15: ZombieLand reports Sz costs about 15% more than S3
    /// (ZOMBIELAND.md, a summary source, not the paper's table).
    pub sz: f64,
    /// S5 (soft off). Default 6 W = 3% of peak (BMC and standby rail); "a few percent of peak"
    /// per ZOMBIELAND.md, exact figure an assumption.
    pub s5: f64,
}

impl Default for StatePower {
    fn default() -> Self {
        StatePower {
            s0_busy: 200.0,
            s0_idle: 100.0,
            s3: 10.0,
            sz: 11.5,
            s5: 6.0,
        }
    }
}

impl StatePower {
    /// Watts in `state`.
    pub fn watts(&self, state: HostState) -> f64 {
        match state {
            HostState::S0Busy => self.s0_busy,
            HostState::S0Idle => self.s0_idle,
            HostState::S3 => self.s3,
            HostState::Sz => self.sz,
            HostState::S5 => self.s5,
        }
    }

    /// Watts of a powered-on host at utilisation `u` (0..=1): the linear model of Fan et al.
    pub fn watts_at(&self, utilisation: f64) -> f64 {
        self.s0_idle + (self.s0_busy - self.s0_idle) * utilisation
    }
}

/// Time (and power while it lasts) of the transitions between S0 and a sleep state.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TransitionCosts {
    /// S0 -> S3 or S0 -> Sz: saving device state and entering sleep. Default 3 s (assumption:
    /// Linux suspend of a server, typically 1-5 s).
    pub suspend_s: f64,
    /// S3 -> S0. Default 5 s: "resume from S3 takes seconds on real servers (the Linux docs speak of
    /// a few seconds)", ZOMBIELAND.md.
    pub resume_from_s3_s: f64,
    /// Sz -> S0. Default 5 s: ZOMBIELAND.md says Sz keeps S3's resume cost.
    pub resume_from_sz_s: f64,
    /// S0 -> S5 (orderly shutdown). Default 30 s (assumption).
    pub shutdown_s: f64,
    /// S5 -> S0 (firmware POST and OS boot). Default 180 s (assumption: server POST alone is often
    /// 1-3 minutes).
    pub boot_from_s5_s: f64,
    /// Power drawn while any transition runs. Default 100 W = S0-idle power (assumption: the CPUs are
    /// on and mostly waiting on devices during suspend/resume).
    pub power_w: f64,
}

impl Default for TransitionCosts {
    fn default() -> Self {
        TransitionCosts {
            suspend_s: 3.0,
            resume_from_s3_s: 5.0,
            resume_from_sz_s: 5.0,
            shutdown_s: 30.0,
            boot_from_s5_s: 180.0,
            power_w: 100.0,
        }
    }
}

impl TransitionCosts {
    /// Seconds to go from sleep `state` back to S0 (zero if already on).
    pub fn wake_s(&self, state: HostState) -> f64 {
        match state {
            HostState::S0Busy | HostState::S0Idle => 0.0,
            HostState::S3 => self.resume_from_s3_s,
            HostState::Sz => self.resume_from_sz_s,
            HostState::S5 => self.boot_from_s5_s,
        }
    }

    /// Seconds to go from S0 to `state` (zero for S0 itself).
    pub fn sleep_s(&self, state: HostState) -> f64 {
        match state {
            HostState::S0Busy | HostState::S0Idle => 0.0,
            HostState::S3 | HostState::Sz => self.suspend_s,
            HostState::S5 => self.shutdown_s,
        }
    }
}

/// A host's power profile: watts per state and transition costs.
///
/// File format (TOML; JSON with the same structure also works when the file ends in `.json`), every
/// field optional:
///
/// ```toml
/// [power_w]
/// s0_busy = 200.0
/// s0_idle = 100.0
/// s3 = 10.0
/// sz = 11.5
/// s5 = 6.0
///
/// [transitions]
/// suspend_s = 3.0
/// resume_from_s3_s = 5.0
/// resume_from_sz_s = 5.0
/// shutdown_s = 30.0
/// boot_from_s5_s = 180.0
/// power_w = 100.0
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PowerProfile {
    /// Watts per state.
    pub power_w: StatePower,
    /// Transition latencies and power.
    pub transitions: TransitionCosts,
}

impl PowerProfile {
    /// Loads a profile from `path` (JSON if it ends in `.json`, TOML otherwise) and validates it.
    pub fn load(path: &Path) -> Result<Self, PowerError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| PowerError::Read {
            path: shown.clone(),
            source,
        })?;
        let is_json = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("json"));
        let profile = if is_json {
            Self::from_json_str(&text)
        } else {
            Self::from_toml_str(&text)
        };
        profile.map_err(|e| match e {
            PowerError::Parse { message, .. } => PowerError::Parse {
                path: shown,
                message,
            },
            other => other,
        })
    }

    /// Parses and validates a TOML profile.
    pub fn from_toml_str(text: &str) -> Result<Self, PowerError> {
        let profile: PowerProfile = toml::from_str(text).map_err(|e| PowerError::Parse {
            path: "<toml>".into(),
            message: e.to_string(),
        })?;
        profile.validate()?;
        Ok(profile)
    }

    /// Parses and validates a JSON profile; the error names the field's path.
    pub fn from_json_str(text: &str) -> Result<Self, PowerError> {
        let mut de = serde_json::Deserializer::from_str(text);
        let profile: PowerProfile =
            serde_path_to_error::deserialize(&mut de).map_err(|e| PowerError::Parse {
                path: "<json>".into(),
                message: format!("field `{}`: {}", e.path(), e.inner()),
            })?;
        profile.validate()?;
        Ok(profile)
    }

    /// Checks every figure is finite and non-negative, and that the states are ordered the way the
    /// policies rely on (on > zombie/sleep, busy >= idle).
    pub fn validate(&self) -> Result<(), PowerError> {
        let p = &self.power_w;
        let t = &self.transitions;
        let fields: [(&'static str, f64); 11] = [
            ("power_w.s0_busy", p.s0_busy),
            ("power_w.s0_idle", p.s0_idle),
            ("power_w.s3", p.s3),
            ("power_w.sz", p.sz),
            ("power_w.s5", p.s5),
            ("transitions.suspend_s", t.suspend_s),
            ("transitions.resume_from_s3_s", t.resume_from_s3_s),
            ("transitions.resume_from_sz_s", t.resume_from_sz_s),
            ("transitions.shutdown_s", t.shutdown_s),
            ("transitions.boot_from_s5_s", t.boot_from_s5_s),
            ("transitions.power_w", t.power_w),
        ];
        for (field, value) in fields {
            if !value.is_finite() || value < 0.0 {
                return Err(PowerError::Invalid {
                    field,
                    reason: format!("{value} must be a finite number >= 0"),
                });
            }
        }
        if p.s0_busy <= 0.0 {
            return Err(PowerError::Invalid {
                field: "power_w.s0_busy",
                reason: "peak power must be > 0".into(),
            });
        }
        if p.s0_idle > p.s0_busy {
            return Err(PowerError::Invalid {
                field: "power_w.s0_idle",
                reason: format!("idle {} W exceeds busy {} W", p.s0_idle, p.s0_busy),
            });
        }
        for (field, watts) in [
            ("power_w.s3", p.s3),
            ("power_w.sz", p.sz),
            ("power_w.s5", p.s5),
        ] {
            if watts > p.s0_idle {
                return Err(PowerError::Invalid {
                    field,
                    reason: format!("sleep power {watts} W exceeds S0-idle {} W", p.s0_idle),
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_profile_matches_documented_ratios() {
        let p = PowerProfile::default();
        p.validate().unwrap();
        assert_eq!(p.power_w.s0_idle / p.power_w.s0_busy, 0.5);
        assert!((p.power_w.sz / p.power_w.s3 - 1.15).abs() < 1e-12);
    }

    #[test]
    fn shipped_default_profile_file_matches_code() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/power-profile-default.toml");
        assert_eq!(PowerProfile::load(&path).unwrap(), PowerProfile::default());
    }

    #[test]
    fn toml_overrides_only_given_fields() {
        let p = PowerProfile::from_toml_str(
            "[power_w]\nsz = 12.0\n[transitions]\nresume_from_sz_s = 2.5\n",
        )
        .unwrap();
        assert_eq!(p.power_w.sz, 12.0);
        assert_eq!(p.power_w.s3, 10.0);
        assert_eq!(p.transitions.resume_from_sz_s, 2.5);
        assert_eq!(p.transitions.suspend_s, 3.0);
    }

    #[test]
    fn malformed_toml_names_the_field() {
        let err = PowerProfile::from_toml_str("[power_w]\nsz = \"lots\"\n").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("sz"), "{msg}");
        let err = PowerProfile::from_toml_str("[power_w]\nzz = 1.0\n").unwrap_err();
        assert!(err.to_string().contains("zz"), "{err}");
    }

    #[test]
    fn malformed_json_names_the_field_path() {
        let err =
            PowerProfile::from_json_str(r#"{"transitions": {"suspend_s": "x"}}"#).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("transitions.suspend_s"), "{msg}");
    }

    #[test]
    fn negative_or_inconsistent_values_are_rejected_with_field() {
        let err = PowerProfile::from_toml_str("[power_w]\ns3 = -1.0\n").unwrap_err();
        assert!(err.to_string().contains("power_w.s3"), "{err}");
        let err = PowerProfile::from_toml_str("[power_w]\ns0_idle = 300.0\n").unwrap_err();
        assert!(err.to_string().contains("power_w.s0_idle"), "{err}");
        let err = PowerProfile::from_toml_str("[power_w]\nsz = 150.0\n").unwrap_err();
        assert!(err.to_string().contains("power_w.sz"), "{err}");
    }

    #[test]
    fn load_reads_file_by_extension() {
        let dir = tempfile::tempdir().unwrap();
        let json = dir.path().join("p.json");
        std::fs::write(&json, r#"{"power_w": {"s5": 4.0}}"#).unwrap();
        assert_eq!(PowerProfile::load(&json).unwrap().power_w.s5, 4.0);
        let toml = dir.path().join("p.toml");
        std::fs::write(&toml, "[power_w]\ns5 = 3.0\n").unwrap();
        assert_eq!(PowerProfile::load(&toml).unwrap().power_w.s5, 3.0);
        let err = PowerProfile::load(&dir.path().join("missing.toml")).unwrap_err();
        assert!(err.to_string().contains("missing.toml"));
    }
}
