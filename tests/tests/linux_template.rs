//! Tier 3: a running Linux guest (lean kernel, busybox initramfs from images/) becomes a
//! template and its clones carry on. The guest (`revenant.test=ticker`) prints
//! `REVENANT-TICK n` every second from a new process; it is paused and snapshotted, the
//! template's VMM goes away, and clones restored in `cow` and `ondemand` modes must print
//! later ticks: user space, its system calls (through the SYSCALL bridge on PVM hosts),
//! process creation and timers all work after a restore.

use std::path::Path;
use std::time::{Duration, Instant};

use revenant_tests::images::linux_guest;
use revenant_tests::skip::host_is_pvm;
use revenant_tests::vmm_process::ApiVmm;

const LIMIT: Duration = Duration::from_secs(240);

/// The highest tick in `text`.
fn last_tick(text: &str) -> Option<u64> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("REVENANT-TICK ")?.parse().ok())
        .max()
}

/// Waits until the console, from byte `from` on, shows a tick above `above`.
fn wait_for_tick(console: &Path, from: usize, above: u64, what: &str) -> u64 {
    let start = Instant::now();
    loop {
        let text = std::fs::read(console).unwrap_or_default();
        let new = String::from_utf8_lossy(text.get(from..).unwrap_or_default());
        if let Some(n) = last_tick(&new).filter(|n| *n > above) {
            return n;
        }
        assert!(
            start.elapsed() < LIMIT,
            "{what}: no tick above {above} within {LIMIT:?}; console from byte {from}:\n{new}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_running_linux_guest_forks_into_clones_that_keep_running() {
    let name = "a_running_linux_guest_forks_into_clones_that_keep_running";
    let Some((kernel, initramfs)) = linux_guest(name) else {
        return;
    };
    let mut source = ApiVmm::start();
    let console = source.dir.path().join("console.log");
    let body = format!(
        r#"{{"cpus":{{"boot_vcpus":1,"max_vcpus":1}},"memory":{{"size":{}}},"payload":{{"kernel":"{}","initramfs":"{}","cmdline":"console=ttyS0 reboot=k panic=-1 revenant.test=ticker"}},"serial":{{"mode":"File","file":"{}"}}}}"#,
        128u64 << 20,
        kernel.display(),
        initramfs.display(),
        console.display()
    );
    assert_eq!(source.client.put("vm.create", Some(&body)).status, 204);
    assert_eq!(source.client.put("vm.boot", None).status, 204);
    wait_for_tick(&console, 0, 1, "template");
    assert_eq!(source.client.put("vm.pause", None).status, 204);
    let templates = tempfile::tempdir().unwrap();
    let template = templates.path().join("linux");
    let url = format!(r#"{{"destination_url":"file://{}"}}"#, template.display());
    let r = source.client.put("vm.snapshot", Some(&url));
    assert_eq!(r.status, 204, "{}", String::from_utf8_lossy(&r.body));
    let _ = source.client.request("PUT", "vmm.shutdown", None);
    let _ = source.child.wait();
    let text = std::fs::read(&console).unwrap();
    let at = last_tick(&String::from_utf8_lossy(&text)).unwrap();
    let mut from = text.len();
    for mode in ["cow", "ondemand"] {
        let mut clone = ApiVmm::start();
        let body = format!(
            r#"{{"source_url":"file://{}","memory_restore_mode":"{mode}"}}"#,
            template.display()
        );
        let r = clone.client.put("vm.restore", Some(&body));
        assert_eq!(
            r.status,
            204,
            "{mode}: {}",
            String::from_utf8_lossy(&r.body)
        );
        assert_eq!(clone.client.put("vm.resume", None).status, 204);
        let tick = wait_for_tick(&console, from, at, mode);
        eprintln!("{mode} clone: template stopped at tick {at}, clone reached {tick}");
        let counters = clone.client.get("vm.counters").json();
        if host_is_pvm() {
            assert!(
                counters["syscalls"].as_u64().unwrap_or(0) > 0,
                "{mode}: no system calls bridged in the clone: {counters}"
            );
        }
        let _ = clone.client.request("PUT", "vmm.shutdown", None);
        let _ = clone.child.wait();
        from = std::fs::metadata(&console).unwrap().len() as usize;
    }
}
