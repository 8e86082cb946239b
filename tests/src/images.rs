//! Finding the guest images built by `images/build` (kernel, initramfs), for tier-3 tests.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// `KEY=PATH` lines from `images/build --print`, or why there are none.
pub fn guest_images() -> Result<HashMap<String, PathBuf>, String> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../images/build");
    if !script.exists() {
        return Err("images/build does not exist".into());
    }
    let out = Command::new(&script)
        .arg("--print")
        .output()
        .map_err(|e| format!("cannot run images/build --print: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "guest images are not built (run images/build): {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), PathBuf::from(v.trim())))
        .filter(|(_, p)| p.exists())
        .collect())
}

/// The lean kernel (ELF vmlinux) and busybox initramfs for a tier-3 test, or None after
/// printing why the test is skipped: no KVM, or images not built. (On PVM hosts Linux user
/// space runs through the VMM's SYSCALL bridge, `vmm/src/vstate/syscall_bridge.rs`.)
pub fn linux_guest(test: &str) -> Option<(PathBuf, PathBuf)> {
    use crate::skip::{kvm_available, skip};
    if !kvm_available(test) {
        return None;
    }
    let images = match guest_images() {
        Ok(i) => i,
        Err(reason) => {
            skip(test, &reason);
            return None;
        }
    };
    match (images.get("KERNEL_VMLINUX"), images.get("INITRAMFS")) {
        (Some(k), Some(i)) => Some((k.clone(), i.clone())),
        _ => {
            skip(
                test,
                "images/build --print names no KERNEL_VMLINUX and INITRAMFS",
            );
            None
        }
    }
}
