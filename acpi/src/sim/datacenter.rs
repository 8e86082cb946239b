//! Datacenter description: how many servers, their size, racks and memory blades.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::SimError;

/// The simulated datacenter. Load from TOML with [`Datacenter::load`] (every field optional) or build
/// from CLI flags; [`Datacenter::validate`] rejects zero/negative capacities naming the field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Datacenter {
    /// Number of servers. Default 1000.
    pub servers: u32,
    /// Cores per server. Default 32 (assumption: a common 2-socket server).
    pub cpus_per_server: f64,
    /// Memory per server, GiB. Default 128 (4 GiB per core, the usual cloud ratio).
    pub mem_gib_per_server: f64,
    /// Servers per rack (rack-scale policy: one memory blade per rack). Default 40.
    pub servers_per_rack: u32,
    /// Memory blade capacity per rack, GiB (rack-scale policy). Default 10240 = twice the rack's
    /// server memory (assumption: the paper compares against *ideal* rack-scale disaggregation, where
    /// blade capacity is not what limits placement, even for memory-heavy workloads).
    pub blade_gib_per_rack: f64,
    /// Blade power independent of use, watts. Default 0: ZombieLand compares against *ideal*
    /// rack-scale disaggregation, whose blades cost nothing when unused (assumption on our side;
    /// the paper's blade model is not known here).
    pub blade_base_w: f64,
    /// Blade power per GiB in use, watts. Default 0.07 W/GiB: a zombie's Sz watts (11.5 W) spread
    /// over its 128 GiB, less the board/NIC share ~ a quarter (assumption, so that an ideal blade's
    /// memory costs slightly less than the same memory in Sz, as the paper's ranking implies).
    pub blade_w_per_gib: f64,
    /// How long a server must stay empty before it is put to sleep, seconds. Default 300 (assumption:
    /// avoids suspend/resume thrash between close arrivals).
    pub idle_before_sleep_s: f64,
}

impl Default for Datacenter {
    fn default() -> Self {
        Datacenter {
            servers: 1000,
            cpus_per_server: 32.0,
            mem_gib_per_server: 128.0,
            servers_per_rack: 40,
            blade_gib_per_rack: 10240.0,
            blade_base_w: 0.0,
            blade_w_per_gib: 0.07,
            idle_before_sleep_s: 300.0,
        }
    }
}

fn invalid(field: &'static str, reason: impl Into<String>) -> SimError {
    SimError::InvalidField {
        field,
        reason: reason.into(),
    }
}

impl Datacenter {
    /// Loads a TOML datacenter description and validates it.
    pub fn load(path: &Path) -> Result<Self, SimError> {
        let text = std::fs::read_to_string(path).map_err(|source| SimError::Io {
            path: path.display().to_string(),
            source,
        })?;
        let dc: Datacenter = toml::from_str(&text).map_err(|e| SimError::Parse {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        dc.validate()?;
        Ok(dc)
    }

    /// Rejects zero or negative capacities and non-finite numbers, naming the field.
    pub fn validate(&self) -> Result<(), SimError> {
        if self.servers == 0 {
            return Err(invalid("servers", "must be > 0"));
        }
        if self.servers_per_rack == 0 {
            return Err(invalid("servers_per_rack", "must be > 0"));
        }
        for (field, v) in [
            ("cpus_per_server", self.cpus_per_server),
            ("mem_gib_per_server", self.mem_gib_per_server),
        ] {
            if !v.is_finite() || v <= 0.0 {
                return Err(invalid(field, format!("{v} must be a finite number > 0")));
            }
        }
        for (field, v) in [
            ("blade_gib_per_rack", self.blade_gib_per_rack),
            ("blade_base_w", self.blade_base_w),
            ("blade_w_per_gib", self.blade_w_per_gib),
            ("idle_before_sleep_s", self.idle_before_sleep_s),
        ] {
            if !v.is_finite() || v < 0.0 {
                return Err(invalid(field, format!("{v} must be a finite number >= 0")));
            }
        }
        Ok(())
    }

    /// Number of racks (the last one may be partial).
    pub fn racks(&self) -> u32 {
        self.servers.div_ceil(self.servers_per_rack)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_or_negative_capacities_name_the_field() {
        let mut dc = Datacenter {
            servers: 0,
            ..Datacenter::default()
        };
        assert!(dc.validate().unwrap_err().to_string().contains("servers"));
        dc.servers = 2;
        dc.cpus_per_server = -1.0;
        assert!(dc
            .validate()
            .unwrap_err()
            .to_string()
            .contains("cpus_per_server"));
        dc.cpus_per_server = 4.0;
        dc.mem_gib_per_server = 0.0;
        assert!(dc
            .validate()
            .unwrap_err()
            .to_string()
            .contains("mem_gib_per_server"));
        dc.mem_gib_per_server = 8.0;
        dc.blade_w_per_gib = f64::NAN;
        assert!(dc
            .validate()
            .unwrap_err()
            .to_string()
            .contains("blade_w_per_gib"));
    }

    #[test]
    fn shipped_default_datacenter_file_matches_code() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/datacenter-default.toml");
        assert_eq!(Datacenter::load(&path).unwrap(), Datacenter::default());
    }

    #[test]
    fn loads_partial_toml_and_rejects_unknown_field() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("dc.toml");
        std::fs::write(&p, "servers = 7\nservers_per_rack = 3\n").unwrap();
        let dc = Datacenter::load(&p).unwrap();
        assert_eq!(dc.servers, 7);
        assert_eq!(dc.racks(), 3);
        std::fs::write(&p, "servrs = 7\n").unwrap();
        assert!(Datacenter::load(&p)
            .unwrap_err()
            .to_string()
            .contains("servrs"));
    }
}
