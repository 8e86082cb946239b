//! `disks`: virtio-blk disks in the VM config, and their validation.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::ConfigError;
use crate::devices::virtio::blk::ID_BYTES;
use crate::devices::virtio::VIRTIO_GSIS;
use crate::vstate::memory::PAGE_SIZE;

/// One interrupt line each, from the pool virtio-mmio devices share.
pub const MAX_DISKS: usize = (*VIRTIO_GSIS.end() - *VIRTIO_GSIS.start() + 1) as usize;

/// One virtio-blk disk: exactly one of `path` and `remote_swap`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DiskConfig {
    /// A raw image file (or host block device).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    #[serde(default)]
    pub readonly: bool,
    /// Name in `vm.info` and logs; `disk<N>` (N = position in `disks`) when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// What the guest reads as the disk's serial (at most 20 bytes); the id when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    /// Revenant extension: the explicit swap device, whose sectors live on memory servers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_swap: Option<RemoteSwapConfig>,
}

/// A disk of `size` bytes in `revenant-memd` slabs, allocated as the guest writes it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RemoteSwapConfig {
    pub size: u64,
    /// memd endpoints, e.g. `["tcp://10.0.0.2:7600", "tcp://10.0.0.3:7600"]` (a
    /// comma-separated string is accepted too, as in `memory.remote.servers`).
    #[serde(deserialize_with = "super::server_list::list")]
    pub servers: Vec<String>,
    /// File holding the memd shared-secret token.
    pub token_file: PathBuf,
    /// Replicas per slab (default: 2 with two or more servers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<usize>,
}

impl DiskConfig {
    /// The disk's id: the configured one, else `disk<index>`.
    pub fn id_or_default(&self, index: usize) -> String {
        self.id.clone().unwrap_or_else(|| format!("disk{index}"))
    }
}

/// Checks what `vm.create` can check: each disk has one backend, files open with the access
/// they need, ids are unique, remote-swap parameters make sense.
pub(super) fn validate(disks: &[DiskConfig]) -> Result<(), ConfigError> {
    if disks.len() > MAX_DISKS {
        return Err(ConfigError::new(
            "disks",
            format!("{} disks; at most {MAX_DISKS} are supported", disks.len()),
        ));
    }
    let mut ids = std::collections::HashSet::new();
    for (i, d) in disks.iter().enumerate() {
        let field = |name: &str| format!("disks[{i}].{name}");
        match (&d.path, &d.remote_swap) {
            (Some(path), None) => check_image(&field("path"), path, d.readonly)?,
            (None, Some(swap)) => {
                if d.readonly {
                    return Err(ConfigError::new(
                        &field("readonly"),
                        "a remote swap device cannot be read-only",
                    ));
                }
                validate_swap(&field("remote_swap"), swap)?;
            }
            (None, None) => {
                return Err(ConfigError::new(
                    &field("path"),
                    "required (or remote_swap for a swap device in remote memory)",
                ))
            }
            (Some(_), Some(_)) => {
                return Err(ConfigError::new(
                    &field("remote_swap"),
                    "cannot be combined with path",
                ))
            }
        }
        if d.serial.as_ref().is_some_and(|s| s.len() > ID_BYTES) {
            return Err(ConfigError::new(
                &field("serial"),
                format!("at most {ID_BYTES} bytes"),
            ));
        }
        if !ids.insert(d.id_or_default(i)) {
            return Err(ConfigError::new(
                &field("id"),
                format!("{:?} is used by another disk", d.id_or_default(i)),
            ));
        }
    }
    Ok(())
}

fn check_image(field: &str, path: &Path, readonly: bool) -> Result<(), ConfigError> {
    let opened = std::fs::OpenOptions::new()
        .read(true)
        .write(!readonly)
        .open(path);
    match opened {
        Ok(f) => match f.metadata() {
            Ok(m) if m.is_dir() => Err(ConfigError::new(
                field,
                format!("{} is a directory", path.display()),
            )),
            _ => Ok(()),
        },
        Err(e) => Err(ConfigError::new(
            field,
            format!(
                "cannot open {} for {}: {e}",
                path.display(),
                if readonly {
                    "reading"
                } else {
                    "reading and writing"
                }
            ),
        )),
    }
}

fn validate_swap(field: &str, swap: &RemoteSwapConfig) -> Result<(), ConfigError> {
    let sub = |name: &str| format!("{field}.{name}");
    if swap.size == 0 || swap.size % PAGE_SIZE != 0 {
        return Err(ConfigError::new(
            &sub("size"),
            "must be a non-zero multiple of 4096 bytes",
        ));
    }
    if swap.servers.is_empty() {
        return Err(ConfigError::new(
            &sub("servers"),
            "at least one memd endpoint is needed",
        ));
    }
    for (j, s) in swap.servers.iter().enumerate() {
        revenant_remote_mem::endpoint::Endpoint::parse(s)
            .map_err(|e| ConfigError::new(&format!("{field}.servers[{j}]"), e.0))?;
    }
    if let Some(r) = swap.replicas {
        if r == 0 || r > swap.servers.len() {
            return Err(ConfigError::new(
                &sub("replicas"),
                format!(
                    "must be between 1 and the number of servers ({})",
                    swap.servers.len()
                ),
            ));
        }
    }
    std::fs::File::open(&swap.token_file).map_err(|e| {
        ConfigError::new(
            &sub("token_file"),
            format!("cannot open {}: {e}", swap.token_file.display()),
        )
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(disks: Vec<DiskConfig>) -> String {
        validate(&disks).unwrap_err().field
    }

    #[test]
    fn names_the_bad_disk_field() {
        let img = tempfile::NamedTempFile::new().unwrap();
        let good = DiskConfig {
            path: Some(img.path().into()),
            ..Default::default()
        };
        validate(std::slice::from_ref(&good)).unwrap();
        assert_eq!(field_of(vec![DiskConfig::default()]), "disks[0].path");
        let missing = DiskConfig {
            path: Some("/nonexistent/disk.img".into()),
            ..Default::default()
        };
        assert_eq!(field_of(vec![good.clone(), missing]), "disks[1].path");
        let dup = DiskConfig {
            id: Some("disk0".into()),
            ..good.clone()
        };
        assert_eq!(field_of(vec![good.clone(), dup]), "disks[1].id");
        let long_serial = DiskConfig {
            serial: Some("x".repeat(21)),
            ..good.clone()
        };
        assert_eq!(field_of(vec![long_serial]), "disks[0].serial");
        let swap = RemoteSwapConfig {
            size: 1 << 20,
            servers: vec!["127.0.0.1:7600".into()],
            token_file: img.path().into(),
            replicas: None,
        };
        let remote = |s: RemoteSwapConfig| DiskConfig {
            remote_swap: Some(s),
            ..Default::default()
        };
        validate(&[remote(swap.clone())]).unwrap();
        let bad_size = RemoteSwapConfig {
            size: 1000,
            ..swap.clone()
        };
        assert_eq!(
            field_of(vec![remote(bad_size)]),
            "disks[0].remote_swap.size"
        );
        let bad_server = RemoteSwapConfig {
            servers: vec!["127.0.0.1:7600".into(), "nope://x".into()],
            ..swap.clone()
        };
        assert_eq!(
            field_of(vec![remote(bad_server)]),
            "disks[0].remote_swap.servers[1]"
        );
        let bad_replicas = RemoteSwapConfig {
            replicas: Some(2),
            ..swap.clone()
        };
        assert_eq!(
            field_of(vec![remote(bad_replicas)]),
            "disks[0].remote_swap.replicas"
        );
        let both = DiskConfig {
            path: Some(img.path().into()),
            remote_swap: Some(swap),
            ..Default::default()
        };
        assert_eq!(field_of(vec![both]), "disks[0].remote_swap");
        assert_eq!(field_of(vec![good; MAX_DISKS + 1]), "disks");
    }
}
