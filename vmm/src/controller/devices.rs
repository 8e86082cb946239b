//! Adding and removing devices through the API (`vm.add-disk`, `vm.add-net`,
//! `vm.remove-device`), as kata does it. Before boot the device joins (or leaves) the VM's
//! configuration and the answer is 204. In a booted VM (running or paused) it is
//! hot-plugged on the PCI bus and the answer names it (`{id, bdf}`); removing asks the
//! guest to eject it. Either way the configuration is kept in step, so `vm.info` shows
//! what the VM has (and a reboot brings the devices back, on virtio-mmio).

use super::{ControlError, Controller, VmState};
use crate::config::{ConfigError, DiskConfig, NetConfig, VmConfig};
use crate::devices::virtio::net::MacAddr;
use crate::vm::PluggedDevice;

/// Where the VM is, for adding and removing devices.
enum Stage {
    /// Created, or shut down: devices change the configuration only.
    Unbooted,
    /// Running or paused: devices are hot-plugged.
    Booted,
}

impl Controller {
    fn stage(&self, action: &str) -> Result<Stage, ControlError> {
        match (&self.config, self.state, &self.vm) {
            (None, _, _) => Err(self.wrong_state(action)),
            (Some(_), VmState::Created | VmState::Shutdown, _) => Ok(Stage::Unbooted),
            (Some(_), VmState::Running | VmState::Paused, Some(_)) => Ok(Stage::Booted),
            (Some(_), state, _) => Err(ControlError::WrongState(format!(
                "cannot {action}: the VM is {state:?}"
            ))),
        }
    }

    /// The configuration and, once booted, the VM (`stage` checked both exist).
    fn parts(&mut self) -> Result<(&mut VmConfig, Option<&crate::vm::Vm>), ControlError> {
        let vm = self.vm.as_ref();
        match self.config.as_mut() {
            Some(config) => Ok((config, vm)),
            None => Err(ControlError::WrongState("no VM has been created".into())),
        }
    }

    /// `vm.add-disk`: the disk is checked like one in `vm.create` and gets an id of its own
    /// if it came without one. Returns where it was plugged, in a booted VM.
    pub fn add_disk(&mut self, mut disk: DiskConfig) -> Result<Added, ControlError> {
        let stage = self.stage("add a disk")?;
        let (config, vm) = self.parts()?;
        let mut candidate = config.clone();
        pin_ids(&mut candidate);
        let id = disk
            .id
            .clone()
            .unwrap_or_else(|| unused_id(&candidate, "disk"));
        disk.id = Some(id.clone());
        candidate.disks.push(disk.clone());
        candidate.validate_devices()?;
        let plugged = match (stage, vm) {
            (Stage::Booted, Some(vm)) => {
                Some(vm.hotplug_disk(candidate.disks.len() - 1, &disk, &id)?)
            }
            _ => None,
        };
        *config = candidate;
        Ok(Added { id, plugged })
    }

    /// `vm.add-net`: the network card (its tap named, or passed as an fd) is checked like
    /// one in `vm.create` and gets an id (and, hot-plugged, a MAC) of its own.
    pub fn add_net(&mut self, mut net: NetConfig) -> Result<Added, ControlError> {
        let stage = self.stage("add a network card")?;
        let (config, vm) = self.parts()?;
        let mut candidate = config.clone();
        pin_ids(&mut candidate);
        let id = net
            .id
            .clone()
            .unwrap_or_else(|| unused_id(&candidate, "net"));
        net.id = Some(id.clone());
        let plugged = match (stage, vm) {
            (Stage::Booted, Some(vm)) => {
                // Chosen here, so the configuration shows the address the guest sees.
                net.mac = Some(net.mac.unwrap_or_else(MacAddr::random_local));
                candidate.net.push(net.clone());
                candidate.validate_devices()?;
                Some(vm.hotplug_net(candidate.net.len() - 1, &net, &id)?)
            }
            _ => {
                candidate.net.push(net);
                candidate.validate_devices()?;
                None
            }
        };
        *config = candidate;
        Ok(Added { id, plugged })
    }

    /// `vm.remove-device`: before boot the device leaves the configuration; in a booted VM
    /// a hot-plugged device is ejected by the guest (asked now) and leaves the
    /// configuration. Devices the VM booted with are on virtio-mmio and stay.
    pub fn remove_device(&mut self, id: &str) -> Result<(), ControlError> {
        let stage = self.stage("remove a device")?;
        let (config, vm) = self.parts()?;
        pin_ids(config);
        let known = config.disks.iter().any(|d| d.id.as_deref() == Some(id))
            || config.net.iter().any(|n| n.id.as_deref() == Some(id));
        if let (Stage::Booted, Some(vm)) = (stage, vm) {
            if !vm.hot_unplug(id)? {
                return Err(if known {
                    ControlError::WrongState(format!(
                        "{id} was there at boot, on virtio-mmio, which has no hot-unplug; \
                         only devices added after boot (on PCI) can be removed from a booted VM"
                    ))
                } else {
                    ControlError::Config(ConfigError::new(
                        "id",
                        format!("no device with id {id:?}"),
                    ))
                });
            }
        } else if !known {
            return Err(ControlError::Config(ConfigError::new(
                "id",
                format!("no device with id {id:?}"),
            )));
        }
        config.disks.retain(|d| d.id.as_deref() != Some(id));
        config.net.retain(|n| n.id.as_deref() != Some(id));
        Ok(())
    }
}

/// A device added through the API: its id, and where it was plugged in a booted VM.
#[derive(Debug)]
pub struct Added {
    pub id: String,
    pub plugged: Option<PluggedDevice>,
}

/// Gives every disk and network card its default id (`disk<N>`, `net<N>`, N its position)
/// explicitly, so removing one does not rename the ones after it.
fn pin_ids(config: &mut VmConfig) {
    for (i, d) in config.disks.iter_mut().enumerate() {
        if d.id.is_none() {
            d.id = Some(format!("disk{i}"));
        }
    }
    for (i, n) in config.net.iter_mut().enumerate() {
        if n.id.is_none() {
            n.id = Some(format!("net{i}"));
        }
    }
}

/// `<prefix><N>` with the smallest N no device of `config` uses.
fn unused_id(config: &VmConfig, prefix: &str) -> String {
    let taken: std::collections::HashSet<&str> = (config.disks.iter().map(|d| &d.id))
        .chain(config.net.iter().map(|n| &n.id))
        .filter_map(|id| id.as_deref())
        .collect();
    (0..)
        .map(|n| format!("{prefix}{n}"))
        .find(|id| !taken.contains(id.as_str()))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc::channel;

    use super::*;

    fn created_with_disks(dir: &std::path::Path, n: usize) -> Controller {
        let (tx, _rx) = channel();
        let mut c = Controller::new(tx);
        // A payload is only needed at boot.
        let mut config: VmConfig = serde_json::from_str("{}").unwrap();
        for i in 0..n {
            config.disks.push(image(dir, &format!("boot{i}")));
        }
        c.create(config).unwrap();
        c
    }

    fn image(dir: &std::path::Path, name: &str) -> DiskConfig {
        let path = dir.join(name);
        std::fs::write(&path, vec![0u8; 4096]).unwrap();
        DiskConfig {
            path: Some(path),
            ..Default::default()
        }
    }

    fn disk_ids(c: &Controller) -> Vec<String> {
        let config = c.config.as_ref().unwrap();
        config
            .disks
            .iter()
            .enumerate()
            .map(|(i, d)| d.id_or_default(i))
            .collect()
    }

    #[test]
    fn disks_added_before_boot_join_the_config_with_ids_that_stay() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = created_with_disks(dir.path(), 2);
        let id = c.add_disk(image(dir.path(), "added")).unwrap().id;
        assert_eq!(id, "disk2");
        c.remove_device("disk0").unwrap();
        // disk1 keeps its name although it is now first.
        assert_eq!(disk_ids(&c), ["disk1", "disk2"]);
        let again = c.add_disk(image(dir.path(), "again")).unwrap().id;
        assert_eq!(again, "disk0", "the smallest free id is reused");
        let e = c.remove_device("nosuch").unwrap_err();
        assert!(
            matches!(&e, ControlError::Config(c) if c.field == "id"),
            "{e}"
        );
    }

    #[test]
    fn a_bad_disk_is_refused_and_leaves_the_config_alone() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = created_with_disks(dir.path(), 1);
        let bad = DiskConfig {
            path: Some(dir.path().join("missing.img")),
            ..Default::default()
        };
        let e = c.add_disk(bad).unwrap_err();
        assert!(
            matches!(&e, ControlError::Config(c) if c.field == "disks[1].path"),
            "{e}"
        );
        let mut dup = image(dir.path(), "dup");
        dup.id = Some("disk0".into());
        assert!(c.add_disk(dup).is_err(), "ids stay unique");
        assert_eq!(disk_ids(&c), ["disk0"]);
    }

    #[test]
    fn network_cards_share_the_id_space_with_disks() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = created_with_disks(dir.path(), 1);
        let fd: std::os::fd::OwnedFd = tempfile::tempfile().unwrap().into();
        let net = NetConfig {
            num_queues: 2,
            fd: Some(crate::config::TapFd(std::sync::Arc::new(fd))),
            ..Default::default()
        };
        assert_eq!(c.add_net(net.clone()).unwrap().id, "net0");
        let mut clash = net.clone();
        clash.id = Some("disk0".into());
        let e = c.add_net(clash).unwrap_err();
        assert!(
            matches!(&e, ControlError::Config(c) if c.field == "net[1].id"),
            "{e}"
        );
        let no_tap = NetConfig {
            num_queues: 2,
            ..Default::default()
        };
        let e = c.add_net(no_tap).unwrap_err();
        assert!(
            matches!(&e, ControlError::Config(c) if c.field == "net[1].tap"),
            "{e}"
        );
        c.remove_device("net0").unwrap();
        assert!(c.config.as_ref().unwrap().net.is_empty());
    }

    #[test]
    fn devices_cannot_be_added_without_a_vm() {
        let (tx, _rx) = channel();
        let mut c = Controller::new(tx);
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            c.add_disk(image(dir.path(), "x")),
            Err(ControlError::WrongState(_))
        ));
        assert!(matches!(
            c.remove_device("disk0"),
            Err(ControlError::WrongState(_))
        ));
    }
}
