//! What makes a clone distinct from its template and its siblings, given with `vm.restore`
//! (a Revenant extension): its own vsock context ID and socket path, and for each network
//! card its own tap and MAC address, and where its serial console goes. Without them a clone takes the template's, which only
//! one live VM at a time can hold.
//!
//! The generation ID (ACPI VMGenID) needs no input: every restore writes a new one.
//! The guest learns a new vsock CID from the TRANSPORT_RESET event every restore sends
//! (Linux re-reads `guest_cid` then); see `docs/clone-identity.md`.

use serde::Deserialize;

use crate::config::{ConfigError, ConsoleConfig, VmConfig, VsockConfig};
use crate::devices::virtio::net::tap::check_name;
use crate::devices::virtio::net::MacAddr;

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct CloneIdentity {
    /// The clone's vsock device: its CID and the Unix socket its host side listens on.
    #[serde(default)]
    pub vsock: Option<VsockConfig>,
    /// The clone's network cards, by id: each one's tap, and optionally a new MAC (which
    /// the guest only learns when it probes the card again; see `docs/clone-identity.md`).
    #[serde(default)]
    pub net: Vec<NetIdentity>,
    /// Where the clone's serial port goes (as `serial` in vm.create): clones of one template
    /// otherwise all write to the template's console file.
    #[serde(default)]
    pub serial: Option<ConsoleConfig>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct NetIdentity {
    pub id: String,
    pub tap: String,
    #[serde(default)]
    pub mac: Option<MacAddr>,
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
        for (k, n) in self.net.iter().enumerate() {
            let field = |name: &str| format!("net[{k}].{name}");
            let card = (config.net.iter_mut().enumerate())
                .find(|(i, c)| c.id_or_default(*i) == n.id)
                .map(|(_, c)| c)
                .ok_or_else(|| {
                    ConfigError::new(
                        &field("id"),
                        format!("the template has no network card {:?}", n.id),
                    )
                })?;
            check_name(&n.tap).map_err(|e| ConfigError::new(&field("tap"), e.to_string()))?;
            if let Some(mac) = &n.mac {
                mac.check_unicast()
                    .map_err(|e| ConfigError::new(&field("mac"), e.to_string()))?;
                card.mac = Some(*mac);
            }
            card.tap = Some(n.tap.clone());
            card.fd = None;
        }
        if let Some(serial) = &self.serial {
            crate::config::validate_console("serial", serial, true)?;
            config.serial = serial.clone();
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
            ..Default::default()
        };
        id.apply(&mut config).unwrap();
        assert_eq!(config.vsock, Some(mine.clone()));
        let bad = CloneIdentity {
            vsock: Some(VsockConfig { cid: 2, ..mine }),
            ..Default::default()
        };
        assert_eq!(bad.apply(&mut config).unwrap_err().field, "vsock.cid");
        let mut none = VmConfig::default();
        assert_eq!(id.apply(&mut none).unwrap_err().field, "vsock");
        CloneIdentity::default().apply(&mut none).unwrap();
    }

    #[test]
    fn a_network_identity_gives_a_card_its_own_tap_and_mac() {
        let mut config = VmConfig {
            net: vec![crate::config::NetConfig {
                tap: Some("tap-template".into()),
                mac: Some("52:54:00:00:00:01".parse().unwrap()),
                num_queues: 2,
                ..Default::default()
            }],
            ..Default::default()
        };
        let mine = NetIdentity {
            id: "net0".into(),
            tap: "tap-clone1".into(),
            mac: Some("52:54:00:00:00:02".parse().unwrap()),
        };
        let id = CloneIdentity {
            net: vec![mine.clone()],
            ..Default::default()
        };
        id.apply(&mut config).unwrap();
        assert_eq!(config.net[0].tap.as_deref(), Some("tap-clone1"));
        assert_eq!(config.net[0].mac, mine.mac);
        let wrong = |n: NetIdentity| {
            let id = CloneIdentity {
                net: vec![n],
                ..Default::default()
            };
            id.apply(&mut config.clone()).unwrap_err().field
        };
        let unknown = NetIdentity {
            id: "eth9".into(),
            ..mine.clone()
        };
        assert_eq!(wrong(unknown), "net[0].id");
        let bad_tap = NetIdentity {
            tap: "no/slash".into(),
            ..mine.clone()
        };
        assert_eq!(wrong(bad_tap), "net[0].tap");
        let multicast = NetIdentity {
            mac: Some("03:00:00:00:00:01".parse().unwrap()),
            ..mine
        };
        assert_eq!(wrong(multicast), "net[0].mac");
    }

    #[test]
    fn a_serial_identity_replaces_the_templates_and_is_checked() {
        use crate::config::ConsoleMode;
        let mut config = VmConfig::default();
        let mine = ConsoleConfig {
            mode: ConsoleMode::File,
            file: Some("/tmp/clone1.log".into()),
            socket: None,
        };
        let id = CloneIdentity {
            serial: Some(mine.clone()),
            ..Default::default()
        };
        id.apply(&mut config).unwrap();
        assert_eq!(config.serial, mine);
        let no_file = CloneIdentity {
            serial: Some(ConsoleConfig { file: None, ..mine }),
            ..Default::default()
        };
        assert_eq!(no_file.apply(&mut config).unwrap_err().field, "serial.file");
    }
}
