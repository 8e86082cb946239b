//! Linux guests (lean kernel and busybox initramfs from images/) for tier-3 tests and
//! benchmarks: their `vm.create` body, and waiting for a line on their console.

use std::path::Path;
use std::time::{Duration, Instant};

/// What a tier-3 Linux VM differs in; [`LinuxVm::body`] is its `vm.create` body, with one
/// boot vCPU and the serial console in a file.
pub struct LinuxVm<'a> {
    pub kernel: &'a Path,
    pub initramfs: &'a Path,
    /// Kernel arguments after `console=ttyS0 reboot=k panic=-1`, e.g. `revenant.test=swap`.
    pub args: &'a str,
    pub console: &'a Path,
    pub memory: u64,
    /// Memory virtio-mem may plug later (0: none).
    pub hotplug: u64,
    pub max_vcpus: u32,
    /// More top-level `vm.create` members (e.g. `"rng":{"src":"/dev/urandom"}`), or "".
    pub devices: &'a str,
}

impl LinuxVm<'_> {
    pub fn body(&self) -> String {
        let hotplug = match self.hotplug {
            0 => String::new(),
            n => format!(r#","hotplug_size":{n}"#),
        };
        let devices = match self.devices {
            "" => String::new(),
            d => format!(",{d}"),
        };
        format!(
            r#"{{"cpus":{{"boot_vcpus":1,"max_vcpus":{}}},"memory":{{"size":{}{hotplug}}},"payload":{{"kernel":"{}","initramfs":"{}","cmdline":"console=ttyS0 reboot=k panic=-1 {}"}},"serial":{{"mode":"File","file":"{}"}}{devices}}}"#,
            self.max_vcpus,
            self.memory,
            self.kernel.display(),
            self.initramfs.display(),
            self.args,
            self.console.display()
        )
    }
}

/// Waits until `console` (from byte `from` on) holds a line containing `marker`; returns it.
pub fn wait_for_line(console: &Path, from: usize, marker: &str, limit: Duration) -> String {
    let start = Instant::now();
    loop {
        let text = std::fs::read(console).unwrap_or_default();
        let text = String::from_utf8_lossy(text.get(from..).unwrap_or_default()).into_owned();
        if let Some(line) = text.lines().find(|l| l.contains(marker)) {
            return line.to_string();
        }
        assert!(
            start.elapsed() < limit,
            "no `{marker}` within {limit:?}; console:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
