//! Adding and removing devices through the API (`vm.add-disk`, `vm.add-net`,
//! `vm.remove-device`), as kata does it: before boot the device joins (or leaves) the VM's configuration and the answer
//! is 204; a booted VM would need virtio-pci hot-plug, which is refused clearly until it
//! exists.

use super::{ControlError, Controller, VmState};
use crate::config::{DiskConfig, NetConfig, VmConfig};

impl Controller {
    /// The configuration of a VM that has not been booted (or has shut down), which devices
    /// can still join or leave; `action` names the request for the error otherwise.
    fn unbooted_config(&mut self, action: &str) -> Result<&mut VmConfig, ControlError> {
        let booted = self.vm.is_some() && self.state != VmState::Shutdown;
        if self.config.is_none() {
            return Err(self.wrong_state(action));
        }
        match (self.config.as_mut(), self.state) {
            (Some(config), VmState::Created | VmState::Shutdown) if !booted => Ok(config),
            (_, state) => Err(ControlError::WrongState(format!(
                "cannot {action}: the VM is {state:?}, and hot-plug into a booted VM needs \
                 virtio-pci, which Revenant does not have yet"
            ))),
        }
    }

    /// `vm.add-disk` before boot: the disk is checked like one in `vm.create` and added to
    /// the configuration, with an id of its own if it came without one.
    pub fn add_disk(&mut self, mut disk: DiskConfig) -> Result<String, ControlError> {
        let config = self.unbooted_config("add a disk")?;
        let mut candidate = config.clone();
        pin_ids(&mut candidate);
        let id = match &disk.id {
            Some(id) => id.clone(),
            None => unused_id(&candidate, "disk"),
        };
        disk.id = Some(id.clone());
        candidate.disks.push(disk);
        candidate.validate()?;
        *config = candidate;
        Ok(id)
    }

    /// `vm.add-net` before boot: the network card (its tap named, or passed as an fd) is
    /// checked like one in `vm.create` and added, with an id of its own.
    pub fn add_net(&mut self, mut net: NetConfig) -> Result<String, ControlError> {
        let config = self.unbooted_config("add a network card")?;
        let mut candidate = config.clone();
        pin_ids(&mut candidate);
        let id = match &net.id {
            Some(id) => id.clone(),
            None => unused_id(&candidate, "net"),
        };
        net.id = Some(id.clone());
        candidate.net.push(net);
        candidate.validate()?;
        *config = candidate;
        Ok(id)
    }

    /// `vm.remove-device` before boot: the device with `id` leaves the configuration.
    pub fn remove_device(&mut self, id: &str) -> Result<(), ControlError> {
        let config = self.unbooted_config("remove a device")?;
        pin_ids(config);
        let before = config.disks.len() + config.net.len();
        config.disks.retain(|d| d.id.as_deref() != Some(id));
        config.net.retain(|n| n.id.as_deref() != Some(id));
        if config.disks.len() + config.net.len() == before {
            return Err(ControlError::Config(crate::config::ConfigError::new(
                "id",
                format!("no device with id {id:?}"),
            )));
        }
        Ok(())
    }
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
        let id = c.add_disk(image(dir.path(), "added")).unwrap();
        assert_eq!(id, "disk2");
        c.remove_device("disk0").unwrap();
        // disk1 keeps its name although it is now first.
        assert_eq!(disk_ids(&c), ["disk1", "disk2"]);
        let again = c.add_disk(image(dir.path(), "again")).unwrap();
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
        assert_eq!(c.add_net(net.clone()).unwrap(), "net0");
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
