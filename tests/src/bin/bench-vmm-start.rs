//! `scripts/bench vmm-start`: VMM process start to the guest's first serial byte (p50 over
//! N runs, real-mode test guest whose first instructions write to COM1), and the VMM's RSS
//! beyond guest-touched memory with an idle 256 MiB guest. Progress on stderr; the last
//! stdout line is one JSON object.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use revenant_tests::bench::{idle_vmm, percentile};
use revenant_tests::bins::binary;
use revenant_tests::guests;
use revenant_tests::vmm_process::wait_with_timeout;

fn main() {
    let runs: usize = std::env::var("RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let dir = tempfile::tempdir().expect("tempdir");
    let image = dir.path().join("hello.bin");
    std::fs::write(&image, guests::real_mode_hello("R")).expect("write guest");
    let revenant = binary("revenant");

    let mut samples = Vec::with_capacity(runs);
    for i in 0..runs {
        let start = Instant::now();
        let mut child = Command::new(&revenant)
            .args(["--test-guest", image.to_str().unwrap(), "--memory", "256M"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn revenant");
        let mut first = [0u8; 1];
        child
            .stdout
            .as_mut()
            .unwrap()
            .read_exact(&mut first)
            .expect("first serial byte");
        let elapsed = start.elapsed().as_secs_f64() * 1e3;
        assert_eq!(&first, b"R");
        let status =
            wait_with_timeout(&mut child, Duration::from_secs(10)).expect("revenant exits");
        assert!(status.success());
        eprintln!("run {i}: {elapsed:.3} ms");
        samples.push(elapsed);
    }
    let min = samples.iter().copied().fold(f64::INFINITY, f64::min);
    let (p50, p90) = (percentile(samples.clone(), 0.5), percentile(samples, 0.9));

    let (rss_kib, anon_kib, (guest_kib, guest_anon_kib)) = idle_rss(&revenant, dir.path());
    let overhead_mib = rss_kib.saturating_sub(guest_kib) as f64 / 1024.0;
    // File-backed pages (the binary's text, libc) are shared by every VMM on a host; what
    // each VMM adds on its own is its anonymous memory outside guest RAM (which is anonymous
    // or, by default, a /dev/shm file).
    let private_mib = anon_kib.saturating_sub(guest_anon_kib) as f64 / 1024.0;
    eprintln!(
        "start p50 {p50:.3} ms, p90 {p90:.3} ms, min {min:.3} ms; idle 256 MiB guest: RSS {rss_kib} KiB (anonymous {anon_kib} KiB), guest-touched {guest_kib} KiB"
    );
    println!(
        "{{\"start_to_first_insn_p50_ms\": {p50:.3}, \"start_to_first_insn_p90_ms\": {p90:.3}, \"runs\": {runs}, \"rss_overhead_mib\": {overhead_mib:.3}, \"private_anon_mib\": {private_mib:.3}, \"rss_total_mib\": {:.3}}}",
        rss_kib as f64 / 1024.0
    );
}

/// Boots a 256 MiB guest that halts, and returns (process RSS, anonymous RSS, (RSS, anonymous
/// RSS) of the guest RAM mapping) in KiB.
fn idle_rss(revenant: &std::path::Path, dir: &std::path::Path) -> (u64, u64, (u64, u64)) {
    let mut vmm = idle_vmm(revenant, dir);
    let pid = vmm.child.id();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} missing from /proc/PID/status"))
    };
    let (rss, anon) = (field("VmRSS:"), field("RssAnon:"));
    let guest = guest_mapping_rss(pid, 256 << 20);
    let _ = vmm.client.request("PUT", "vmm.shutdown", None);
    let _ = wait_with_timeout(&mut vmm.child, Duration::from_secs(5));
    (rss, anon, guest)
}

/// (Rss, Anonymous) in KiB of the mapping of exactly `size` bytes: the guest's RAM.
fn guest_mapping_rss(pid: u32, size: u64) -> (u64, u64) {
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).expect("smaps");
    let kib = |v: &str| v.trim().trim_end_matches("kB").trim().parse().unwrap_or(0);
    let (mut in_guest, mut rss) = (false, None);
    for line in smaps.lines() {
        if let Some((range, _)) = line.split_once(' ') {
            if let Some((a, b)) = range.split_once('-') {
                if let (Ok(a), Ok(b)) = (u64::from_str_radix(a, 16), u64::from_str_radix(b, 16)) {
                    in_guest = b - a == size;
                    continue;
                }
            }
        }
        if in_guest {
            if let Some(v) = line.strip_prefix("Rss:") {
                rss = Some(kib(v));
            } else if let Some(v) = line.strip_prefix("Anonymous:") {
                return (rss.unwrap_or(0), kib(v));
            }
        }
    }
    (0, 0)
}
