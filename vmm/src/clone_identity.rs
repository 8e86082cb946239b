//! What makes a clone distinct from its template and its siblings, given with `vm.restore`
//! (a Revenant extension): its own vsock context ID and socket path. Without it a clone
//! takes the template's, which only one live VM at a time can hold.
//!
//! The generation ID (ACPI VMGenID) needs no input: every restore writes a new one.
//! The guest learns a new vsock CID from the TRANSPORT_RESET event every restore sends
//! (Linux re-reads `guest_cid` then); see `docs/clone-identity.md`.

use serde::Deserialize;

use crate::config::{ConfigError, VmConfig, VsockConfig};

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct CloneIdentity {
    /// The clone's vsock device: its CID and the Unix socket its host side listens on.
    #[serde(default)]
    pub vsock: Option<VsockConfig>,
}

impl CloneIdentity {
    /// Puts the clone's identity into the template's configuration; a field the template
    /// has no device for, or a bad value, is refused naming it.
    pub fn apply(&self, config: &mut VmConfig) -> Result<(), ConfigError> {
        if let Some(vsock) = &self.vsock {
            if config.vsock.is_none() {
                return Err(ConfigError::new(
                    "vsock",
                    "the template has no vsock device to give this clone",
                ));
            }
            crate::config::validate_vsock(vsock)?;
            config.vsock = Some(vsock.clone());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_vsock_identity_replaces_the_templates_and_is_checked() {
        let dir = tempfile::tempdir().unwrap();
        let template = VsockConfig {
            cid: 3,
            socket: dir.path().join("template.sock"),
        };
        let mut config = VmConfig {
            vsock: Some(template),
            ..Default::default()
        };
        let mine = VsockConfig {
            cid: 7,
            socket: dir.path().join("clone.sock"),
        };
        let id = CloneIdentity {
            vsock: Some(mine.clone()),
        };
        id.apply(&mut config).unwrap();
        assert_eq!(config.vsock, Some(mine.clone()));
        let bad = CloneIdentity {
            vsock: Some(VsockConfig { cid: 2, ..mine }),
        };
        assert_eq!(bad.apply(&mut config).unwrap_err().field, "vsock.cid");
        let mut none = VmConfig::default();
        assert_eq!(id.apply(&mut none).unwrap_err().field, "vsock");
        CloneIdentity::default().apply(&mut none).unwrap();
    }
}
