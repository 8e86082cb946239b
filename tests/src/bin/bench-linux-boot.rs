//! `scripts/bench linux-boot`: boots the lean kernel and busybox initramfs (images/) through
//! the API with the default CPU profile and `revenant.test=userloop`. Measures seconds from
//! VMM process start to the guest's `REVENANT-READY` line, the fallback emulations (and
//! system calls bridged) by then, and the guest's timing of a CPU-bound busybox shell loop
//! against the same loop run by the host's busybox. Progress on stderr; the last stdout line
//! is one JSON object.

use std::process::Command;
use std::time::{Duration, Instant};

use revenant_tests::bench::BenchVmm;
use revenant_tests::images::guest_images;
use revenant_tests::linux_vm::{wait_for_line, LinuxVm};

const LOOP: &str = "i=0; while [ $i -lt 3000000 ]; do i=$((i + 1)); done";
const LIMIT: Duration = Duration::from_secs(300);

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
    let body = LinuxVm {
        kernel,
        initramfs,
        args: "revenant.test=userloop",
        console: &console,
        memory: 256 << 20,
        hotplug: 0,
        max_vcpus: 1,
        devices: "",
    }
    .body();
    assert_eq!(vmm.client.put("vm.create", Some(&body)).status, 204);
    assert_eq!(vmm.client.put("vm.boot", None).status, 204);
    eprintln!("booting {} ...", kernel.display());
    // Both waits end LIMIT after the VMM started.
    let wait_for = |marker| wait_for_line(&console, 0, marker, LIMIT.saturating_sub(t0.elapsed()));
    let ready = wait_for("REVENANT-READY");
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
    let looped = wait_for("REVENANT-LOOP");
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
