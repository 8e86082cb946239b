//! "Boot once, fork forever" for tier-3 tests: the lean kernel boots to `REVENANT-READY` once,
//! is snapshotted into `~/.cache/revenant/templates/<key>` (key: the kernel, the initramfs
//! and the `revenant` binary), and tests fork clones from it in milliseconds instead of
//! booting (~35 s on this project's PVM hosts). A clone gets its own console file, and its
//! work as a hot-plugged disk holding a script: with `revenant.runner=1` the initramfs's init
//! runs every disk that starts with `#!/bin/sh` and `# revenant-run` (images/initramfs/init).

use std::fs::File;
use std::hash::Hasher;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::bins::binary;
use crate::images::linux_guest;
use crate::linux_vm::{wait_for_line, LinuxVm};
use crate::vmm_process::ApiVmm;

const BOOT_LIMIT: Duration = Duration::from_secs(300);
/// First two lines of a script disk, as the initramfs's init looks for them.
pub const SCRIPT_HEADER: &str = "#!/bin/sh\n# revenant-run\n";

fn cache_base() -> PathBuf {
    match std::env::var_os("REVENANT_CACHE") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/tmp".into()))
            .join(".cache/revenant"),
    }
}

/// A stable hash of the files' contents (the cache key).
fn content_key(files: &[&Path]) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    let mut buf = vec![0u8; 1 << 20];
    for path in files {
        let mut f = File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
        loop {
            let n = f.read(&mut buf).expect("read for the cache key");
            if n == 0 {
                break;
            }
            hasher.write(&buf[..n]);
        }
        hasher.write_u8(0xff);
    }
    hasher.finish()
}

/// The snapshot of the cached Linux template for the current images and binary, made now if
/// it is missing; None (after printing `SKIP:`) when there are no images or no KVM.
pub fn linux_template(test: &str) -> Option<PathBuf> {
    let (kernel, initramfs) = linux_guest(test)?;
    let key = content_key(&[&kernel, &initramfs, &binary("revenant")]);
    let base = cache_base().join("templates");
    std::fs::create_dir_all(&base).expect("template cache dir");
    let dir = base.join(format!("{key:016x}"));
    // Tests run in parallel: one makes the template, the others wait for it.
    let lock = File::create(base.join(".lock")).expect("template cache lock");
    // SAFETY: flock on a file descriptor we own; it is released when `lock` is closed.
    let locked = unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) };
    assert_eq!(locked, 0, "lock the template cache");
    if !dir.join("complete").exists() {
        prune_other_templates(&base, &dir);
        make_template(&kernel, &initramfs, &dir);
    }
    Some(dir.join("vm"))
}

/// Deletes the templates of other images or binaries (named by their 16-hex-digit key): a
/// template is only used by the build that made it, so the cache would otherwise grow by one
/// (~30 MB, sparse) with every rebuild.
fn prune_other_templates(base: &Path, keep: &Path) {
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        let is_key = name.len() == 16 && name.bytes().all(|b| b.is_ascii_hexdigit());
        if is_key && path != keep {
            let _ = std::fs::remove_dir_all(&path);
        }
    }
}

/// Boots the guest to `REVENANT-READY`, pauses it and snapshots it into `dir`.
fn make_template(kernel: &Path, initramfs: &Path, dir: &Path) {
    eprintln!(
        "making the cached Linux template {} (one boot)",
        dir.display()
    );
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).expect("template dir");
    let mut vmm = ApiVmm::start();
    let console = dir.join("boot-console.log");
    let body = LinuxVm {
        kernel,
        initramfs,
        args: "revenant.runner=1",
        console: &console,
        memory: 128 << 20,
        hotplug: 256 << 20,
        max_vcpus: 2,
        devices: r#""rng":{"src":"/dev/urandom"}"#,
    }
    .body();
    let r = vmm.client.put("vm.create", Some(&body));
    assert_eq!(r.status, 204, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(vmm.client.put("vm.boot", None).status, 204);
    wait_for_line(&console, 0, "REVENANT-IDLE", BOOT_LIMIT);
    snapshot_and_stop(&mut vmm, &dir.join("vm"));
    std::fs::write(dir.join("complete"), b"").expect("mark the template complete");
}

/// Pauses the VM, snapshots it into `snapshot` and shuts its VMM down (its directory, with
/// the console, stays until `vmm` is dropped).
pub fn snapshot_and_stop(vmm: &mut ApiVmm, snapshot: &Path) {
    assert_eq!(vmm.client.put("vm.pause", None).status, 204);
    let url = format!(r#"{{"destination_url":"file://{}"}}"#, snapshot.display());
    let r = vmm.client.put("vm.snapshot", Some(&url));
    assert_eq!(r.status, 204, "{}", String::from_utf8_lossy(&r.body));
    let _ = vmm.client.request("PUT", "vmm.shutdown", None);
    let _ = vmm.child.wait();
}

/// A clone of a Linux template: its own VMM process and console.
pub struct LinuxClone {
    pub vmm: ApiVmm,
    pub console: PathBuf,
    scripts: usize,
}

impl LinuxClone {
    /// Restores the snapshot in `snapshot` (`mode`: cow, ondemand, copy) into a fresh VMM,
    /// with its own console, and resumes it.
    pub fn fork(snapshot: &Path, mode: &str) -> LinuxClone {
        let mut vmm = ApiVmm::start();
        let console = vmm.dir.path().join("console.log");
        let body = format!(
            r#"{{"source_url":"file://{}","memory_restore_mode":"{mode}","serial":{{"mode":"File","file":"{}"}}}}"#,
            snapshot.display(),
            console.display()
        );
        let r = vmm.client.put("vm.restore", Some(&body));
        assert_eq!(
            r.status,
            204,
            "{mode}: {}",
            String::from_utf8_lossy(&r.body)
        );
        assert_eq!(vmm.client.put("vm.resume", None).status, 204);
        LinuxClone {
            vmm,
            console,
            scripts: 0,
        }
    }

    /// Hands the guest `script` (shell) on a hot-plugged disk; it runs once, its output goes
    /// to the console, followed by `REVENANT-RUN <disk> EXIT <status>`.
    pub fn run_script(&mut self, script: &str) {
        self.scripts += 1;
        let n = self.scripts;
        let disk = self.vmm.dir.path().join(format!("script{n}.img"));
        let mut data = format!("{SCRIPT_HEADER}{script}\n").into_bytes();
        data.resize(data.len().next_multiple_of(4096), 0);
        std::fs::write(&disk, &data).expect("write the script disk");
        let body = format!(
            r#"{{"path":"{}","id":"script{n}","serial":"script{n}","readonly":true}}"#,
            disk.display(),
        );
        let r = self.vmm.client.put("vm.add-disk", Some(&body));
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    }

    /// The first console line containing `marker`, waiting up to `limit` for it.
    pub fn wait_for(&self, marker: &str, limit: Duration) -> String {
        wait_for_line(&self.console, 0, marker, limit)
    }
}

impl Drop for LinuxClone {
    fn drop(&mut self) {
        let _ = self.vmm.client.request("PUT", "vmm.shutdown", None);
    }
}
