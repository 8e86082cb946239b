//! `vsock`: the hybrid virtio-vsock device in the VM config (Cloud Hypervisor's `cid` and
//! `socket`), and its validation.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::ConfigError;
use crate::devices::virtio::vsock::uds::{path_status, PathStatus};
use crate::devices::virtio::vsock::MIN_GUEST_CID;

/// One virtio-vsock device whose host end is the Unix socket `socket`: host clients connect
/// there and send `CONNECT <port>\n`; guest connections to host port P reach `<socket>_P`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VsockConfig {
    /// The guest's context ID: at least 3 (0-2 are reserved) and below u32::MAX
    /// (VMADDR_CID_ANY).
    pub cid: u64,
    pub socket: PathBuf,
}

/// The CID range and what is at the socket path: nothing, or a socket nobody listens on
/// any more (replaced at boot), in an existing directory.
pub fn validate(vsock: &VsockConfig) -> Result<(), ConfigError> {
    if vsock.cid < MIN_GUEST_CID || vsock.cid >= u64::from(u32::MAX) {
        return Err(ConfigError::new(
            "vsock.cid",
            format!(
                "{} is reserved or out of range: use {MIN_GUEST_CID} to {}",
                vsock.cid,
                u32::MAX - 1
            ),
        ));
    }
    let path = &vsock.socket;
    let bad = |reason: String| Err(ConfigError::new("vsock.socket", reason));
    if path.as_os_str().is_empty() {
        return bad("required".into());
    }
    // sun_path holds 108 bytes with the NUL, and guest connections add `_<port>`.
    if path.as_os_str().len() > 96 {
        return bad(format!("{} is longer than 96 bytes", path.display()));
    }
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() && !dir.is_dir() => {
            return bad(format!("directory {} does not exist", dir.display()))
        }
        _ => {}
    }
    match path_status(path) {
        Ok(PathStatus::Free | PathStatus::StaleSocket) => Ok(()),
        Ok(PathStatus::LiveSocket) => bad(format!(
            "{} is a socket another process listens on",
            path.display()
        )),
        Ok(PathStatus::NotASocket) => bad(format!("{} exists and is not a socket", path.display())),
        Err(e) => bad(format!("cannot check {}: {e}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::net::UnixListener;

    use super::*;

    fn field_of(v: &VsockConfig) -> Option<String> {
        validate(v).err().map(|e| e.field)
    }

    #[test]
    fn names_the_bad_vsock_field() {
        let dir = tempfile::tempdir().unwrap();
        let good = VsockConfig {
            cid: 3,
            socket: dir.path().join("v.sock"),
        };
        assert_eq!(field_of(&good), None);
        for cid in [0, 1, 2, u64::from(u32::MAX), u64::MAX] {
            let v = VsockConfig {
                cid,
                ..good.clone()
            };
            assert_eq!(field_of(&v).as_deref(), Some("vsock.cid"), "cid {cid}");
        }
        let v = VsockConfig {
            cid: u64::from(u32::MAX) - 1,
            ..good.clone()
        };
        assert_eq!(field_of(&v), None);
        let socket = |p: PathBuf| VsockConfig {
            socket: p,
            ..good.clone()
        };
        let file = dir.path().join("file");
        std::fs::write(&file, b"").unwrap();
        let live = dir.path().join("live.sock");
        let listener = UnixListener::bind(&live).unwrap();
        for p in [
            PathBuf::new(),
            dir.path().join("missing/v.sock"),
            file,
            live.clone(),
            dir.path().join("x".repeat(100)),
        ] {
            assert_eq!(
                field_of(&socket(p.clone())).as_deref(),
                Some("vsock.socket"),
                "{p:?}"
            );
        }
        drop(listener);
        assert_eq!(field_of(&socket(live)), None, "a stale socket is fine");
    }
}
