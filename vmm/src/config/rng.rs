//! `rng`: the virtio entropy device in the VM config (Cloud Hypervisor's `rng.src`, which
//! kata always sends), and its validation.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::ConfigError;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RngConfig {
    /// The host file entropy is read from.
    #[serde(default = "default_src")]
    pub src: PathBuf,
}

fn default_src() -> PathBuf {
    PathBuf::from("/dev/urandom")
}

impl Default for RngConfig {
    fn default() -> Self {
        RngConfig { src: default_src() }
    }
}

/// The source must be a readable file or character device.
pub(super) fn validate(rng: &RngConfig) -> Result<(), ConfigError> {
    std::fs::File::open(&rng.src)
        .map(drop)
        .map_err(|e| ConfigError::new("rng.src", format!("cannot open {}: {e}", rng.src.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_source_must_be_readable() {
        assert!(validate(&RngConfig::default()).is_ok());
        let e = validate(&RngConfig {
            src: "/nonexistent/rng".into(),
        })
        .unwrap_err();
        assert_eq!(e.field, "rng.src");
        let parsed: RngConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(parsed, RngConfig::default());
    }
}
