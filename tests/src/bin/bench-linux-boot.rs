//! `scripts/bench linux-boot`: boots the lean kernel and busybox initramfs (images/) through
//! the API with the default CPU profile and `revenant.test=userloop`. Measures seconds from
//! VMM process start to the guest's `REVENANT-READY` line, the fallback emulations (and
//! system calls bridged) by then, and the guest's timing of a CPU-bound busybox shell loop
//! against the same loop run by the host's busybox. Progress on stderr; the last stdout line
//! is one JSON object.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use revenant_tests::bench::BenchVmm;
use revenant_tests::images::guest_images;

const LOOP: &str = "i=0; while [ $i -lt 3000000 ]; do i=$((i + 1)); done";
const LIMIT: Duration = Duration::from_secs(300);

fn wait_for(console: &Path, marker: &str, since: Instant) -> String {
    loop {
        let text = std::fs::read_to_string(console).unwrap_or_default();
        if let Some(line) = text.lines().find(|l| l.contains(marker)) {
            return line.to_string();
        }
        assert!(
            since.elapsed() < LIMIT,
            "no {marker} within {LIMIT:?}; console:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `key=value` from a marker line, as seconds.
fn field(line: &str, key: &str) -> f64 {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {key}= in {line:?}"))
}

fn main() {
    let images = guest_images().unwrap_or_else(|e| panic!("{e}"));
    let (kernel, initramfs) = (&images["KERNEL_VMLINUX"], &images["INITRAMFS"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let console = dir.path().join("console.log");
    let t0 = Instant::now();
    let mut vmm = BenchVmm::spawn(dir.path(), "linux");
    let body = format!(
        r#"{{"cpus":{{"boot_vcpus":1,"max_vcpus":1}},"memory":{{"size":{}}},"payload":{{"kernel":"{}","initramfs":"{}","cmdline":"console=ttyS0 reboot=k panic=-1 revenant.test=userloop"}},"serial":{{"mode":"File","file":"{}"}}}}"#,
        256u64 << 20,
        kernel.display(),
        initramfs.display(),
        console.display()
    );
    assert_eq!(vmm.client.put("vm.create", Some(&body)).status, 204);
    assert_eq!(vmm.client.put("vm.boot", None).status, 204);
    eprintln!("booting {} ...", kernel.display());
    let ready = wait_for(&console, "REVENANT-READY", t0);
    let boot_s = t0.elapsed().as_secs_f64();
    let counters = vmm.client.get("vm.counters").json();
    let fallbacks: u64 = counters["fallback_emulations"]
        .as_object()
        .map_or(0, |m| m.values().filter_map(|v| v.as_u64()).sum());
    let syscalls = counters["syscalls"].as_u64().unwrap_or(0);
    eprintln!(
        "{ready} after {boot_s:.2} s; fallbacks {} ; {syscalls} system calls bridged",
        counters["fallback_emulations"]
    );
    let looped = wait_for(&console, "REVENANT-LOOP", t0);
    let guest_s = field(&looped, "end") - field(&looped, "start");
    let h0 = Instant::now();
    let status = Command::new("/bin/busybox")
        .args(["sh", "-c", LOOP])
        .status()
        .expect("run the host's busybox");
    assert!(status.success());
    let host_s = h0.elapsed().as_secs_f64();
    eprintln!("user loop: guest {guest_s:.2} s, host {host_s:.2} s");
    let _ = vmm.client.request("PUT", "vmm.shutdown", None);
    println!(
        "{{\"boot_to_marker_s\": {boot_s:.2}, \"fallback_emulations\": {fallbacks}, \"user_loop_ratio_vs_host\": {:.3}, \"guest_loop_s\": {guest_s:.2}, \"host_loop_s\": {host_s:.2}, \"syscalls\": {syscalls}}}",
        host_s / guest_s
    );
}
