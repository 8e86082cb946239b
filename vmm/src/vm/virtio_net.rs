//! Wiring virtio-net into a VM: each `net` entry's device on its virtio-mmio slot (after
//! the entropy device), in front of its tap.

use std::os::fd::OwnedFd;

use revenant_acpi::tables::MmioDevice;

use super::virtio::{attach, slot_of, Slot, VirtioMmio, Wiring};
use super::VmError;
use crate::config::{ConfigError, NetConfig, VmConfig};
use crate::devices::virtio::net::{Net, NetError, NetOptions, Tap, VirtioNetSnapshot};

pub(crate) type VirtioNet = VirtioMmio<Net>;

impl VirtioNet {
    pub(crate) fn snapshot(&self) -> VirtioNetSnapshot {
        let (transport, device) = self.states(Net::state);
        VirtioNetSnapshot { transport, device }
    }
}

/// Builds the config's network devices; `saved` (a snapshot's, one per device in config
/// order) restores their transports and queues in front of the config's taps.
pub(crate) fn build(
    config: &VmConfig,
    layout: &[MmioDevice],
    w: &mut Wiring<'_>,
    saved: Option<&[VirtioNetSnapshot]>,
) -> Result<Vec<VirtioNet>, VmError> {
    if let Some(saved) = saved.filter(|s| s.len() != config.net.len()) {
        return Err(VmError::Snapshot(format!(
            "the template saved {} virtio-net devices but its configuration has {}",
            saved.len(),
            config.net.len()
        )));
    }
    let mut out = Vec::with_capacity(config.net.len());
    for (i, cfg) in config.net.iter().enumerate() {
        let id = cfg.id_or_default(i);
        let slot = slot_of(config, layout, Slot::Net(i))
            .ok_or_else(|| VmError::Virtio(format!("no virtio-mmio slot for net[{i}]")))?;
        let tap = open_tap(i, cfg)?;
        let field = |name: &str| format!("net[{i}].{name}");
        let device = match saved.and_then(|s| s.get(i)) {
            Some(s) if s.device.id != id => {
                return Err(VmError::Snapshot(format!(
                    "the template saved virtio-net device {:?} where its configuration has net[{i}] {id:?}",
                    s.device.id
                )))
            }
            Some(s) => Net::from_state(&s.device, tap, cfg.mac),
            None => Net::new(NetOptions { id, mac: cfg.mac }, tap),
        }
        .map_err(|e| match e {
            NetError::Mac { .. } => VmError::from(ConfigError::new(&field("mac"), e.to_string())),
            NetError::State(_) => VmError::Snapshot(e.to_string()),
            e => VmError::Virtio(e.to_string()),
        })?;
        let saved = saved
            .and_then(|s| s.get(i))
            .map(|s| (&s.transport, s.device.running_queues()));
        out.push(attach(device, slot, w, "virtio-net", saved)?);
    }
    Ok(out)
}

/// The device's tap: a duplicate of the fd passed with `vm.add-net` (the config keeps the
/// original for the next boot), or the named interface, opened now.
pub(super) fn open_tap(i: usize, cfg: &NetConfig) -> Result<Tap, VmError> {
    let field = format!("net[{i}].tap");
    let bad = |e: String| VmError::from(ConfigError::new(&field, e));
    match (&cfg.fd, cfg.tap_name()) {
        (Some(fd), _) => {
            let dup: OwnedFd = fd
                .0
                .try_clone()
                .map_err(|e| bad(format!("cannot duplicate the passed tap fd: {e}")))?;
            Tap::from_fd(dup).map_err(|e| bad(e.to_string()))
        }
        (None, Some(name)) => Tap::open(name).map_err(|e| bad(e.to_string())),
        // A template's card on a passed fd: the fd is not in the template.
        (None, None) => Err(bad(
            "no tap name and no tap fd; a clone of a template gets its own with vm.restore's net [{id, tap}]".into(),
        )),
    }
}
