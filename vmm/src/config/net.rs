//! `net`: virtio-net devices in the VM config (Cloud Hypervisor's `NetConfig` field names),
//! and their validation. A device's host end is a tap: named (`tap`, opened at boot) or an
//! fd kata passed with `vm.add-net` (kept beside the config, never serialized).

use std::os::fd::OwnedFd;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::ConfigError;
use crate::devices::virtio::net::tap::check_name;
use crate::devices::virtio::net::MacAddr;

/// One virtio-net device: one rx and one tx queue on a tap.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct NetConfig {
    /// The host tap interface, created if missing (needs CAP_NET_ADMIN) and attached at
    /// boot. kata sends `""` with an fd instead: an empty name counts as none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tap: Option<String>,
    /// The guest's address; a random locally administered one when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<MacAddr>,
    /// Name in `vm.info`, logs and `vm.remove-device`; `net<N>` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Queues, rx and tx counted separately (Cloud Hypervisor's meaning): only 2, one pair.
    #[serde(default = "default_num_queues")]
    pub num_queues: usize,
    /// A tap fd passed with `vm.add-net` (SCM_RIGHTS). Not part of the JSON: `vm.info`
    /// and templates never carry it.
    #[serde(skip)]
    pub fd: Option<TapFd>,
}

fn default_num_queues() -> usize {
    2
}

/// A tap fd shared by copies of the config; the VM attaches a duplicate of it at each
/// boot, so a VM that shut down can boot again on the same tap.
#[derive(Clone, Debug)]
pub struct TapFd(pub Arc<OwnedFd>);

impl PartialEq for TapFd {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl NetConfig {
    /// The device's id: the configured one, else `net<index>`.
    pub fn id_or_default(&self, index: usize) -> String {
        self.id.clone().unwrap_or_else(|| format!("net{index}"))
    }

    /// The tap name, if one was given (kata's `""` is none).
    pub fn tap_name(&self) -> Option<&str> {
        self.tap.as_deref().filter(|t| !t.is_empty())
    }
}

/// Each device has exactly one host end (a tap name or a passed fd), a unicast MAC, one
/// queue pair, and an id no other device (disk or network) uses.
pub(super) fn validate(nets: &[NetConfig], disk_ids: &[String]) -> Result<(), ConfigError> {
    let mut ids: std::collections::HashSet<String> = disk_ids.iter().cloned().collect();
    for (i, n) in nets.iter().enumerate() {
        let field = |name: &str| format!("net[{i}].{name}");
        match (n.tap_name(), &n.fd) {
            (None, None) => {
                return Err(ConfigError::new(
                    &field("tap"),
                    "a tap interface name is required (or a tap fd passed with vm.add-net)",
                ))
            }
            (Some(_), Some(_)) => {
                return Err(ConfigError::new(
                    &field("tap"),
                    "give a tap name or pass a tap fd, not both",
                ))
            }
            (Some(name), None) => {
                check_name(name).map_err(|e| ConfigError::new(&field("tap"), e.to_string()))?
            }
            (None, Some(_)) => {}
        }
        if let Some(mac) = &n.mac {
            mac.check_unicast()
                .map_err(|e| ConfigError::new(&field("mac"), e.to_string()))?;
        }
        if n.num_queues != 2 {
            return Err(ConfigError::new(
                &field("num_queues"),
                format!(
                    "{} queues asked for; Revenant's virtio-net has one rx/tx pair (2)",
                    n.num_queues
                ),
            ));
        }
        if !ids.insert(n.id_or_default(i)) {
            return Err(ConfigError::new(
                &field("id"),
                format!("{:?} is already used by another device", n.id_or_default(i)),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(nets: &[NetConfig]) -> String {
        validate(nets, &["disk0".into()]).unwrap_err().field
    }

    fn named(tap: &str) -> NetConfig {
        NetConfig {
            tap: Some(tap.into()),
            num_queues: 2,
            ..Default::default()
        }
    }

    #[test]
    fn kata_s_body_parses_and_its_extra_fields_are_left_out() {
        let body = r#"{"tap":"","mac":"52:54:00:12:34:56","num_queues":2}"#;
        let n: NetConfig = serde_json::from_str(body).unwrap();
        assert_eq!(n.tap_name(), None);
        assert_eq!(n.mac.unwrap().to_string(), "52:54:00:12:34:56");
        let n: NetConfig = serde_json::from_str(r#"{"tap":"tap0"}"#).unwrap();
        assert_eq!((n.tap_name(), n.num_queues), (Some("tap0"), 2));
        assert!(serde_json::from_str::<NetConfig>(r#"{"mac":"01:00:5e:00:00:01x"}"#).is_err());
    }

    #[test]
    fn each_device_needs_one_tap_a_unicast_mac_one_queue_pair_and_its_own_id() {
        assert!(validate(&[named("tap0"), named("tap1")], &[]).is_ok());
        assert_eq!(field_of(&[NetConfig::default()]), "net[0].tap");
        assert_eq!(field_of(&[named("bad/name")]), "net[0].tap");
        assert_eq!(field_of(&[named("a-name-longer-than-15")]), "net[0].tap");
        let mut multicast = named("tap0");
        multicast.mac = Some("01:00:5e:00:00:01".parse().unwrap());
        assert_eq!(field_of(&[multicast]), "net[0].mac");
        let mut four = named("tap0");
        four.num_queues = 4;
        assert_eq!(field_of(&[four]), "net[0].num_queues");
        let mut clash = named("tap1");
        clash.id = Some("disk0".into());
        assert_eq!(field_of(&[named("tap0"), clash]), "net[1].id");
        let both = NetConfig {
            fd: Some(TapFd(Arc::new(tempfile::tempfile().unwrap().into()))),
            ..named("tap0")
        };
        assert_eq!(field_of(&[both]), "net[0].tap");
    }
}
